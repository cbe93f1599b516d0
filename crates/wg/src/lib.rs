//! clusterkit-wg: the WireGuard full mesh between the nodes of a
//! [`clusterkit_core::ClusterSpec`], usable alone.
//!
//! - [`model`]: keys, peers, interfaces; [`render`]: wg-quick files, the
//!   peer-sync script, the firewall (pure, snapshot-tested);
//! - [`ensure_key`] makes each node's private key on the node (only the public
//!   key travels); [`plan`] computes every node's interface and peers;
//!   [`apply_node`] installs and converges one node; [`up`] does the whole mesh
//!   and proves it with pings between every pair; [`status`] and [`rotate`].
//!
//! Without the default feature `remote`, the crate is [`model`] and [`render`]
//! alone: a node's configuration rendered offline, no SSH or async runtime.
//!
//! Kernel WireGuard is used where the module is present; elsewhere wg-quick
//! falls back to `clusterkit-wg-userspace` (boringtun), which clusterkit uploads.

pub mod model;
#[cfg(feature = "remote")]
pub mod phase;
#[cfg(feature = "remote")]
mod remote;
pub mod render;

pub use model::{endpoint, plan};
#[cfg(feature = "remote")]
pub use remote::*;

#[cfg(all(test, feature = "remote"))]
mod tests;
