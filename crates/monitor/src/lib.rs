//! clusterkit-monitor: Prometheus with Swarm service discovery, node-exporter,
//! cAdvisor and a provisioned Grafana, ready on first launch.
//!
//! In progress (issue [G]): [`render`] produces Prometheus's configuration
//! and alert rules from the spec (pure, snapshotted) and lists every PromQL
//! expression they hold, so that a test can run each on a real Prometheus.
//! The stack, Grafana's provisioning and dashboards, and `monitor up` follow.

pub mod render;

use clusterkit_core::ClusterSpec;

/// Whether the monitoring stack is to be deployed.
pub fn enabled(spec: &ClusterSpec) -> bool {
    spec.monitoring.enabled
}

#[cfg(test)]
mod tests;
