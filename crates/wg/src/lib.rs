//! clusterkit-wg: the WireGuard full mesh between the nodes of a
//! [`clusterkit_core::ClusterSpec`], usable alone.
//!
//! - [`model`]: keys, peers, interfaces; [`render`]: wg-quick files, the
//!   peer-sync script, the firewall (pure, snapshot-tested);
//! - `ensure_key` makes each node's private key on the node (only the public
//!   key travels); [`plan`] computes every node's interface and peers;
//!   `apply_node` installs and converges one node; `up` does the whole mesh
//!   and proves it with pings between every pair; `status` and `rotate`.
//!
//! Without the default feature `remote`, the crate is [`model`] and [`render`]
//! alone: a node's configuration rendered offline, no SSH or async runtime.
//!
//! Kernel WireGuard is used where the module is present; elsewhere wg-quick
//! falls back to `clusterkit-wg-userspace` (boringtun), which clusterkit uploads.
//!
//! Every node's interface and peers, from the spec and the public keys the
//! nodes made, rendered as wg-quick files:
//!
//! ```
//! use std::collections::BTreeMap;
//! use clusterkit_wg::model::WgPublicKey;
//!
//! let spec = clusterkit_core::spec::example(3);
//! let keys: BTreeMap<String, WgPublicKey> = (1..=3)
//!     .map(|i| (format!("node{i}"), WgPublicKey::parse(&format!("{}{i}=", "A".repeat(42))).unwrap()))
//!     .collect();
//! let meshes = clusterkit_wg::plan(&spec, &keys);
//! let conf = clusterkit_wg::render::wg_quick(&meshes[0]);
//! assert!(conf.contains("Address = 10.0.0.1/24"));
//! assert_eq!(meshes[0].peers.len(), 2);
//! ```

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
