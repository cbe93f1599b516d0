//! clusterkit: turn a handful of Linux servers reachable over SSH into an
//! egalitarian, highly available cluster.
//!
//! This umbrella crate re-exports the workspace's crates; each is usable alone.

pub use clusterkit_core as core;
pub use clusterkit_ingress as ingress;
pub use clusterkit_monitor as monitor;
pub use clusterkit_ops as ops;
pub use clusterkit_storage as storage;
pub use clusterkit_swarm as swarm;
pub use clusterkit_wg as wg;
