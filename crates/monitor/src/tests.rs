use crate::render::*;
use clusterkit_core::ClusterSpec;

fn spec() -> ClusterSpec {
    clusterkit_core::spec::example(3)
}

#[test]
fn prometheus_finds_everything_through_the_swarm() {
    let s = spec();
    let yml = prometheus_yml(&s, Options::default());
    insta::assert_snapshot!("prometheus_yml", yml);
    assert!(
        !yml.contains("static_configs:\n      - targets: [\"10."),
        "no static host list"
    );
    for job in [
        "job_name: node",
        "job_name: cadvisor",
        "job_name: storage",
        "job_name: services",
    ] {
        assert!(yml.contains(job), "{job}");
    }
    let without = prometheus_yml(&s, Options { cadvisor: false });
    assert!(!without.contains("job_name: cadvisor"));
}

#[test]
fn every_rule_has_an_expression_and_annotations() {
    let s = spec();
    let rules = rules_yml(&s, Options::default());
    insta::assert_snapshot!("rules_yml", rules);
    let exprs = rule_expressions(&rules);
    assert_eq!(exprs.len(), rules.matches("- alert: ").count());
    assert_eq!(exprs.len(), 8);
    assert_eq!(rules.matches("summary: ").count(), exprs.len());
    // Templates meant for Prometheus survive rendering.
    assert!(rules.contains("{{ $labels.node }}"));
}

#[test]
fn grafana_is_provisioned_with_prometheus_and_every_dashboard_parses() {
    use crate::grafana::*;
    let ds = datasource_yml();
    assert!(
        ds.contains("type: prometheus")
            && ds.contains("url: http://tasks.prometheus:9090")
            && ds.contains("isDefault: true")
    );
    assert!(dashboards_yml().contains("path: /etc/grafana/dashboards"));
    let all = dashboards();
    let titles: Vec<&str> = all.iter().map(|(d, _)| d.title).collect();
    assert_eq!(
        titles,
        [
            "Cluster overview",
            "WireGuard mesh",
            "Swarm services",
            "Containers",
            "Storage"
        ]
    );
    for (d, _) in &all {
        let text = serde_json::to_string_pretty(&to_json(d)).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["uid"], d.uid);
        for panel in back["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "prometheus");
            assert!(
                !panel["targets"].as_array().unwrap().is_empty(),
                "{}",
                panel["title"]
            );
        }
    }
    insta::assert_json_snapshot!("overview_dashboard", to_json(&all[0].0));
    assert_eq!(
        expressions().len(),
        all.iter()
            .map(|(d, _)| d.panels.iter().map(|p| p.queries.len()).sum::<usize>())
            .sum::<usize>()
    );
}
