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
