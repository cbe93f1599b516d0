//! A new image for a monitoring service, rolled by Swarm through core's
//! [`clusterkit_core::stack::roll`]: the stack is deployed again with the
//! spec's images and each changed service is updated one task at a time
//! (`update_config` in the stack: Prometheus's two replicas never restart
//! together, a global exporter goes node by node).

use clusterkit_core::stack::roll;
use clusterkit_core::transport::Transport;
use clusterkit_core::ClusterSpec;

pub use clusterkit_core::stack::roll::{parse_update, Behind, UpdateState};

use crate::render::{service_images, STACK};
use crate::MonitorError;

/// The monitoring services whose image differs from the spec's, from
/// `<service> <image>` lines (see [`roll::parse_behind`]).
pub fn parse_behind(spec: &ClusterSpec, text: &str) -> Vec<Behind> {
    roll::parse_behind(STACK, &service_images(spec), text)
}

/// The monitoring services running another image than the spec's, read
/// through a manager.
pub async fn behind(mgr: &dyn Transport, spec: &ClusterSpec) -> Result<Vec<Behind>, MonitorError> {
    Ok(roll::behind(mgr, STACK, &service_images(spec)).await?)
}

/// Waits until Swarm has moved every task of `services` to its wanted
/// image (see [`roll::wait_updated`]).
pub async fn wait_updated(
    mgr: &dyn Transport,
    services: &[Behind],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), MonitorError> {
    Ok(roll::wait_updated(mgr, services, "[monitoring]", progress).await?)
}
