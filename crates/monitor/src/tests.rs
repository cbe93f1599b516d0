use clusterkit_core::inventory::{Format, Inventory};
use clusterkit_core::source::SourceFile;
use clusterkit_core::spec::build;
use clusterkit_core::state::State;
use clusterkit_core::Problems;

use crate::render::*;
use clusterkit_core::ClusterSpec;

fn spec() -> ClusterSpec {
    let mut p = Problems::default();
    let inv = Inventory::parse(
        SourceFile::new(
            "hosts.ini",
            "[servers]\nnode1 ansible_host=192.168.1.1\nnode2 ansible_host=192.168.1.2\nnode3 ansible_host=192.168.1.3\n".to_string(),
        ),
        Format::Ini,
        &mut p,
    );
    build(None, Some(&inv), &State::default(), &|_| None)
        .unwrap()
        .spec
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
