//! clusterkit-monitor: Prometheus with Swarm service discovery, node-exporter,
//! cAdvisor and a provisioned Grafana, ready on first launch.
//!
//! In progress (issue [G]): [`render`] produces Prometheus's configuration
//! and alert rules from the spec (pure, snapshotted) and lists every PromQL
//! expression they hold, so that a test can run each on a real Prometheus.
//! The stack, Grafana's provisioning and dashboards, and `monitor up` follow.

pub mod grafana;
pub mod render;

use std::sync::Arc;

use clusterkit_core::spec::SwarmRole;
use clusterkit_core::transport::{
    fan_out, images, Cmd, Transport, TransportError, Upload, UploadOutcome,
};
use clusterkit_core::ClusterSpec;
pub use render::Options;

/// Whether the monitoring stack is to be deployed.
pub fn enabled(spec: &ClusterSpec) -> bool {
    spec.monitoring.enabled
}

/// Where the stack's files go on the manager that deploys them.
pub const STACK_DIR: &str = "/etc/clusterkit/stacks/clusterkit-monitoring";

/// Errors of the monitoring layer.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A remote operation failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An image is missing on nodes.
    #[error(
        "image {image} is missing on {nodes}: copy it with `clusterkit images push {image}`{hint}"
    )]
    ImageMissing {
        /// Image.
        image: String,
        /// Nodes.
        nodes: String,
        /// What else to do.
        hint: String,
    },
    /// No manager is connected.
    #[error("no manager is connected: monitoring is deployed through the swarm")]
    NoManager,
}

/// Deploys the monitoring stack (idempotent: unchanged files, no deploy).
/// Returns whether it deployed.
pub async fn up(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    opts: Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<bool, MonitorError> {
    let mut wanted = vec![render::NODE_EXPORTER_IMAGE.to_string()];
    if opts.cadvisor {
        wanted.push(render::CADVISOR_IMAGE.to_string());
    }
    let managers: Vec<String> = spec
        .nodes
        .iter()
        .filter(|n| n.role == SwarmRole::Manager)
        .map(|n| n.name.to_string())
        .collect();
    let mut lacking: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (n, r) in fan_out(nodes, 16, |t| {
        let mut w = wanted.clone();
        if managers.iter().any(|m| m == t.node()) {
            w.push(render::PROMETHEUS_IMAGE.to_string());
        }
        async move { images::missing(t, &w).await }
    })
    .await
    {
        for image in r? {
            lacking.entry(image).or_default().push(n.clone());
        }
    }
    if let Some((image, on)) = lacking.into_iter().next() {
        let hint = if image == render::CADVISOR_IMAGE {
            " (or leave cAdvisor out: --no-cadvisor)".to_string()
        } else {
            " (the sandbox: `clusterkit sandbox build-images` first)".to_string()
        };
        return Err(MonitorError::ImageMissing {
            image,
            nodes: on.join(", "),
            hint,
        });
    }
    let mgr = spec
        .nodes
        .iter()
        .filter(|n| n.role == SwarmRole::Manager)
        .find_map(|n| nodes.iter().find(|t| t.node() == n.name.as_str()))
        .ok_or(MonitorError::NoManager)?;
    let mut written = false;
    for (name, content) in render::stack(spec, opts) {
        let path = format!("{STACK_DIR}/{name}");
        written |= mgr
            .upload(&Upload {
                content: content.as_bytes(),
                path: &path,
                mode: 0o644,
                owner: None,
            })
            .await?
            == UploadOutcome::Written;
    }
    let services = mgr
        .exec(&Cmd::new(format!(
            "docker stack services -q {} 2>/dev/null | wc -l",
            render::STACK
        )))
        .await?
        .stdout_str()
        .trim()
        .parse::<usize>()
        .unwrap_or(0);
    let expected = if opts.cadvisor { 3 } else { 2 };
    if written || services != expected {
        progress(&format!(
            "deploying stack {} from {}",
            render::STACK,
            mgr.node()
        ));
        mgr.exec(&Cmd::new(format!(
            "cd {STACK_DIR} && docker stack deploy --prune --resolve-image never -c docker-compose.yml {}",
            render::STACK
        )))
        .await?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
