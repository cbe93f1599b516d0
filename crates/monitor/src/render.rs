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
