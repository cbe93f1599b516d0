//! clusterkit-wg: the WireGuard full mesh between the nodes of a
//! [`clusterkit_core::ClusterSpec`].
//!
//! Not built yet (issue [D]): keys made on each node, `wg-quick` rendering,
//! kernel or userspace (boringtun) interface. What exists today is the peer
//! list every node gets, which `clusterkit plan` shows.

use clusterkit_core::spec::{ClusterSpec, Node};

/// The peers of `node` in the full mesh: every other node, in inventory order.
pub fn peers<'a>(spec: &'a ClusterSpec, node: &Node) -> impl Iterator<Item = &'a Node> {
    let name = node.name.clone();
    spec.nodes.iter().filter(move |n| n.name != name)
}
