//! clusterkit-monitor: Prometheus with Swarm service discovery, node-exporter,
//! cAdvisor, Alertmanager and a provisioned Grafana, ready on first launch.
//!
//! [`render`] makes the stack from the spec (pure, snapshotted): Prometheus's
//! configuration finds every target through the swarm, alert rules, Grafana's
//! provisioning and [`grafana`] dashboards, all delivered as Swarm configs
//! named by their content. `up` deploys it through a manager; Grafana's
//! administrator password is generated once, kept as a Swarm secret and in a
//! root-only file on the managers (`grafana_password`).
//!
//! Without the default feature `remote`: [`render`] and [`grafana`] alone
//! (no SSH or async runtime).
//!
//! ```
//! let spec = clusterkit_core::spec::example(3);
//! let stack = clusterkit_monitor::render::stack(&spec);
//! assert!(stack.compose.contains("prometheus"));
//! assert!(stack.get("prometheus.yml").unwrap().contains("dockerswarm_sd_configs"));
//! ```

#[cfg(feature = "remote")]
pub mod backup;
pub mod grafana;
#[cfg(feature = "remote")]
pub mod keeper;
#[cfg(feature = "remote")]
pub mod phase;
#[cfg(feature = "remote")]
mod remote;
pub mod render;
#[cfg(feature = "remote")]
pub mod roll;

use clusterkit_core::ClusterSpec;

/// Whether the monitoring stack is to be deployed.
pub fn enabled(spec: &ClusterSpec) -> bool {
    spec.monitoring.enabled
}

/// Where the stack's files go on the manager that deploys them.
pub const STACK_DIR: &str = "/etc/clusterkit/stacks/clusterkit-monitoring";
/// Where each manager keeps Grafana's administrator password (mode 0600).
pub const GRAFANA_PASSWORD_PATH: &str = "/etc/clusterkit/monitoring/grafana-admin";
/// Where each manager keeps the monitoring API's password (mode 0600).
pub const API_PASSWORD_PATH: &str = "/etc/clusterkit/monitoring/api-password";
/// curl's configuration with the monitoring API's user and password (mode
/// 0600), so that the password never stands on a command line.
pub const API_CURL_PATH: &str = "/etc/clusterkit/monitoring/api.curl";
/// The same for wget.
pub const API_WGET_PATH: &str = "/etc/clusterkit/monitoring/api.wgetrc";

#[cfg(feature = "remote")]
pub use remote::*;

#[cfg(all(test, feature = "remote"))]
mod tests;
