//! clusterkit-storage: distributed S3 storage (Garage or MinIO) and Docker
//! volumes on it that survive the loss of a node.
//!
//! Not built yet (issue [F]).

use clusterkit_core::ClusterSpec;

/// The nodes that hold a share of the storage.
pub fn storage_nodes(spec: &ClusterSpec) -> impl Iterator<Item = &clusterkit_core::spec::Node> {
    spec.nodes.iter().filter(|n| n.storage)
}
