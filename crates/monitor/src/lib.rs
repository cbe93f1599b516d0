//! clusterkit-monitor: Prometheus with Swarm service discovery, node-exporter,
//! cAdvisor and a provisioned Grafana, ready on first launch.
//!
//! Not built yet (issue [G]).

use clusterkit_core::ClusterSpec;

/// Whether the monitoring stack is to be deployed.
pub fn enabled(spec: &ClusterSpec) -> bool {
    spec.monitoring.enabled
}
