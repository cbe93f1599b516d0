//! Prometheus's configuration and alert rules, rendered from the spec.
//!
//! Where Prometheus finds what: node-exporter (9100), cAdvisor (8080) and
//! Garage (3903) run on each node's host network, bound to its mesh address,
//! and are found with `dockerswarm_sd_configs` role `nodes` (the swarm's node
//! addresses are the mesh addresses). Application services labelled
//! `prometheus.io/scrape=true` are found with role `tasks` and scraped on the
//! overlay network they share with Prometheus (`clusterkit`), one target per
//! running task; a service on other networks only is not reachable and is
//! dropped rather than reported down.

use clusterkit_core::names::content_hash;
use clusterkit_core::spec::{ClusterSpec, StorageBackend};

/// What goes into the files besides the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// cAdvisor runs (its image exists on the nodes).
    pub cadvisor: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { cadvisor: true }
    }
}

/// Prometheus's image: Debian's package, built by `clusterkit sandbox
/// build-images` (the official `prom/prometheus` works the same).
pub const PROMETHEUS_IMAGE: &str = "clusterkit/prometheus:bookworm";
/// node-exporter's image (Debian's package; `prom/node-exporter` works the same).
pub const NODE_EXPORTER_IMAGE: &str = "clusterkit/node-exporter:bookworm";
/// cAdvisor's image (no Debian package: pulled or pushed where it exists).
pub const CADVISOR_IMAGE: &str = "gcr.io/cadvisor/cadvisor:v0.49.1";
/// The stack holding the monitoring services.
pub const STACK: &str = "clusterkit-monitoring";

/// The stack's files: `docker-compose.yml`, `prometheus.yml`, `rules.yml`.
pub fn stack(spec: &ClusterSpec, opts: Options) -> Vec<(String, String)> {
    let prom = prometheus_yml(spec, opts);
    let rules = rules_yml(spec, opts);
    let env = minijinja::Environment::new();
    let compose = env
        .render_str(
            include_str!("templates/monitor-stack.yml"),
            minijinja::context! {
                name => spec.name,
                retention => spec.monitoring.retention,
                prometheus_image => PROMETHEUS_IMAGE,
                node_exporter_image => NODE_EXPORTER_IMAGE,
                cadvisor_image => CADVISOR_IMAGE,
                cadvisor => opts.cadvisor,
                prometheus_config => format!("clusterkit-prometheus-{}", content_hash(&prom)),
                rules_config => format!("clusterkit-rules-{}", content_hash(&rules)),
            },
        )
        .expect("the bundled templates render");
    vec![
        ("docker-compose.yml".into(), compose),
        ("prometheus.yml".into(), prom),
        ("rules.yml".into(), rules),
    ]
}

fn render(template: &str, spec: &ClusterSpec, opts: Options) -> String {
    let env = minijinja::Environment::new();
    env.render_str(
        template,
        minijinja::context! {
            name => spec.name,
            cadvisor => opts.cadvisor,
            garage => spec.storage.backend == StorageBackend::Garage,
            network => "clusterkit",
        },
    )
    .expect("the bundled templates render")
}

/// `prometheus.yml`.
pub fn prometheus_yml(spec: &ClusterSpec, opts: Options) -> String {
    render(include_str!("templates/prometheus.yml"), spec, opts)
}

/// `rules.yml`: node down, disk almost full, memory pressure, manager
/// unreachable, quorum at risk, a service restarting in a loop (cAdvisor),
/// storage node down and storage unavailable (Garage).
pub fn rules_yml(spec: &ClusterSpec, opts: Options) -> String {
    render(include_str!("templates/rules.yml"), spec, opts)
}

/// Every PromQL expression of the rules (`expr:` lines), in order.
pub fn rule_expressions(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(str::to_string)
        .collect()
}
