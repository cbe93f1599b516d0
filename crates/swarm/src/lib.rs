//! clusterkit-swarm: Docker Swarm where every node is a manager, bound to the mesh.
//!
//! Not built yet (issue [E]). Roles are decided by [`clusterkit_core::spec`]
//! (every node a manager up to `swarm.max_managers`); this crate will init,
//! join and watch the swarm.

use clusterkit_core::ClusterSpec;

/// How many managers may be lost while the swarm keeps a Raft majority.
pub fn tolerated_losses(spec: &ClusterSpec) -> usize {
    spec.managers().count().saturating_sub(1) / 2
}
