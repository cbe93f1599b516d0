//! The cluster plan: per node, what clusterkit will build there. Pure: spec in, value out.
//!
//! This is what `clusterkit plan` prints (as a table or as JSON). The apply
//! engine of later phases refines it into files and commands per node.

use serde::Serialize;

use crate::names::NodeName;
use crate::spec::{ClusterSpec, StorageBackend, SwarmRole, WgBackend};

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterPlan {
    /// Cluster name.
    pub cluster: String,
    /// The mesh.
    pub mesh: MeshSummary,
    /// The swarm's shape and fault tolerance.
    pub swarm: SwarmSummary,
    /// One entry per node, in inventory order.
    pub nodes: Vec<NodePlan>,
    /// Cluster services and where they run.
    pub services: Vec<ServicePlan>,
    /// Application stacks to deploy.
    pub stacks: Vec<StackPlan>,
}

/// The mesh in a few words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeshSummary {
    /// Network.
    pub cidr: String,
    /// UDP port.
    pub port: u16,
    /// MTU.
    pub mtu: u16,
    /// Interface.
    pub interface: String,
    /// Implementation.
    pub backend: WgBackend,
}

/// The swarm's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmSummary {
    /// Number of managers.
    pub managers: usize,
    /// Number of workers.
    pub workers: usize,
    /// Managers needed for a majority.
    pub quorum: usize,
    /// Managers that can be lost while keeping a majority.
    pub tolerates: usize,
    /// Overlay address pool.
    pub default_addr_pool: String,
}

/// What one node gets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePlan {
    /// Name.
    pub name: NodeName,
    /// `user@host:port`.
    pub ssh: String,
    /// Mesh address.
    pub mesh_address: crate::MeshAddr,
    /// WireGuard endpoint the peers dial: `host:port`.
    pub endpoint: String,
    /// Swarm role.
    pub role: SwarmRole,
    /// How many WireGuard peers it has: every other node (the mesh is
    /// full). A count, not the list: the lists of a full mesh grow with the
    /// square of the node count (10^10 names at 100,000 nodes).
    pub peers: usize,
    /// What runs on it.
    pub services: Vec<&'static str>,
}

/// A cluster service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePlan {
    /// Service name.
    pub name: &'static str,
    /// Stack it belongs to.
    pub stack: &'static str,
    /// Where it runs, in words.
    pub placement: String,
}

/// An application stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackPlan {
    /// Name.
    pub name: String,
    /// Compose file.
    pub file: String,
}

/// Computes the plan for a spec.
pub fn plan(spec: &ClusterSpec) -> ClusterPlan {
    let managers = spec.managers().count();
    let storage_name = match spec.storage.backend {
        StorageBackend::Garage => Some("garage"),
        StorageBackend::Minio => Some("minio"),
        StorageBackend::None => None,
    };
    let others = spec.nodes.len().saturating_sub(1);
    let nodes = spec
        .nodes
        .iter()
        .map(|n| {
            let mut services = vec!["wireguard", "dockerd"];
            services.push(match n.role {
                SwarmRole::Manager => "swarm-manager",
                SwarmRole::Worker => "swarm-worker",
            });
            if let (Some(s), true) = (storage_name, n.storage) {
                services.push(s);
            }
            if spec.monitoring.enabled {
                services.extend(["node-exporter", "cadvisor"]);
            }
            NodePlan {
                name: n.name.clone(),
                ssh: n.ssh.to_string(),
                mesh_address: n.mesh_address,
                endpoint: crate::names::host_port(&n.ssh.host, spec.mesh.port),
                role: n.role,
                peers: others,
                services,
            }
        })
        .collect();
    let mut services = Vec::new();
    if let Some(s) = storage_name {
        services.push(ServicePlan {
            name: s,
            stack: "storage",
            placement: format!(
                "one per storage node ({}), {} copies of each object",
                spec.nodes.iter().filter(|n| n.storage).count(),
                spec.storage.replication
            ),
        });
    }
    if spec.monitoring.enabled {
        let m = &spec.monitoring;
        let on_manager = "1 replica on a manager";
        let global = "every node (global)";
        for (name, on, placement) in [
            ("prometheus", true, on_manager),
            ("node-exporter", true, global),
            ("cadvisor", m.cadvisor, global),
            ("alertmanager", m.alertmanager, on_manager),
            ("grafana", m.grafana, on_manager),
        ] {
            if on {
                services.push(ServicePlan {
                    name,
                    stack: "monitoring",
                    placement: placement.into(),
                });
            }
        }
    }
    ClusterPlan {
        cluster: spec.name.clone(),
        mesh: MeshSummary {
            cidr: spec.mesh.cidr.to_string(),
            port: spec.mesh.port.get(),
            mtu: spec.mesh.mtu,
            interface: spec.mesh.interface.clone(),
            backend: spec.mesh.backend,
        },
        swarm: SwarmSummary {
            managers,
            workers: spec.nodes.len() - managers,
            quorum: managers / 2 + 1,
            tolerates: managers.saturating_sub(1) / 2,
            default_addr_pool: spec.swarm.default_addr_pool.to_string(),
        },
        nodes,
        services,
        stacks: spec
            .stacks
            .iter()
            .map(|s| StackPlan {
                name: s.name.clone(),
                file: s.file.display().to_string(),
            })
            .collect(),
    }
}
