//! Driving Garage on the nodes: its CLI's `json-api` (the admin API v2 over
//! Garage's own RPC) run in the node's Garage container through `docker
//! exec`, so the admin token never leaves the cluster.

use std::time::{Duration, Instant};

use clusterkit_core::transport::{Cmd, Transport};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{StorageError, STACK};

/// The service running Garage on `node`.
pub fn service(node: &str) -> String {
    format!("{STACK}_garage-{node}")
}

fn container(node: &str) -> String {
    format!(
        "c=$(docker ps -q --filter label=com.docker.swarm.service.name={} --filter status=running | head -n1); \
         if [ -z \"$c\" ]; then echo \"no running Garage container on this node (docker service ps {}): is the storage stack deployed?\" >&2; exit 3; fi; ",
        service(node),
        service(node)
    )
}

/// Whether Garage's container runs on the node.
pub async fn running(t: &dyn Transport) -> Result<bool, StorageError> {
    let out = t
        .exec(&Cmd::new(format!(
            "docker ps -q --filter label=com.docker.swarm.service.name={} --filter status=running",
            service(t.node())
        )))
        .await?;
    Ok(!out.stdout_str().trim().is_empty())
}

/// Waits until Garage runs on every node given.
pub async fn wait_running(nodes: &[&dyn Transport], within: Duration) -> Result<(), StorageError> {
    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        let answers = futures::future::join_all(
            nodes
                .iter()
                .map(|t| async move { (t.node().to_string(), running(*t).await) }),
        )
        .await;
        for (n, r) in answers {
            if !r? {
                missing.push(n);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > within {
            return Err(StorageError::NotRunning {
                nodes: missing.join(", "),
                secs: within.as_secs(),
                stack: STACK.into(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether `text` is what `garage node id -q` prints: 64 hex digits, `@`,
/// an address and port. It is written into the peers file and sent to
/// Garage's API: a node's answer is checked before either.
pub fn is_node_id(text: &str) -> bool {
    text.split_once('@').is_some_and(|(id, addr)| {
        id.len() == 64
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && addr.parse::<std::net::SocketAddr>().is_ok()
    })
}

/// `garage node id -q`: `<id>@<addr>`. A server that just started may not
/// have written its key yet: asked again for up to 30 s.
pub async fn node_id(t: &dyn Transport) -> Result<String, StorageError> {
    let cmd = Cmd::new(format!(
        "{}docker exec \"$c\" {} node id -q",
        container(t.node()),
        crate::GARAGE_IN_CONTAINER
    ));
    let start = Instant::now();
    loop {
        let out = t.exec_raw(&cmd, None).await?;
        if out.status == 0 {
            let id = out.stdout_str().trim().to_string();
            if !is_node_id(&id) {
                return Err(StorageError::Garage {
                    node: t.node().to_string(),
                    endpoint: "node id".into(),
                    reason: format!(
                        "`{}` is not a Garage node id (64 hex digits @ address:port)",
                        id.chars()
                            .take(80)
                            .flat_map(char::escape_debug)
                            .collect::<String>()
                    ),
                });
            }
            return Ok(id);
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(StorageError::Garage {
                node: t.node().to_string(),
                endpoint: "node id".into(),
                reason: out.tail(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Calls an admin API endpoint; `payload` goes on stdin (secrets stay out of
/// the process list).
pub async fn api<T: DeserializeOwned>(
    t: &dyn Transport,
    endpoint: &str,
    payload: Option<&serde_json::Value>,
) -> Result<T, StorageError> {
    let mut script = format!(
        "{}docker exec -i \"$c\" {} json-api {endpoint}",
        container(t.node()),
        crate::GARAGE_IN_CONTAINER
    );
    let body = payload.map(|p| p.to_string());
    if body.is_some() {
        script.push_str(" -");
    }
    // A server that just started may not have written its node key yet (the
    // CLI needs it to speak to the server), or not be listening on its RPC
    // port yet: asked again for up to 30 s.
    let start = Instant::now();
    let out = loop {
        let out = t
            .exec_raw(
                &Cmd::new(script.clone()),
                body.as_deref().map(str::as_bytes),
            )
            .await?;
        if out.status == 0
            || !just_started(&out.tail())
            || start.elapsed() > Duration::from_secs(30)
        {
            break out;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if out.status != 0 {
        return Err(StorageError::Garage {
            node: t.node().to_string(),
            endpoint: endpoint.to_string(),
            reason: out.tail(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| StorageError::Garage {
        node: t.node().to_string(),
        endpoint: endpoint.to_string(),
        reason: format!(
            "unexpected answer ({e}): {}",
            out.stdout_str().chars().take(300).collect::<String>()
        ),
    })
}

/// Whether the CLI's error is one of a server that has just started: its node
/// key not written yet, or its RPC port not open yet (the CLI speaks to its
/// own node's server first).
pub(crate) fn just_started(tail: &str) -> bool {
    tail.contains("Unable to read node key")
        || (tail.contains("Unable to connect to destination RPC host")
            && tail.contains("Connection refused"))
}

/// `GetClusterHealth`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `healthy`, `degraded` or `unavailable`.
    pub status: String,
    /// Nodes this node is connected to.
    pub connected_nodes: usize,
    /// Storage nodes in the layout.
    pub storage_nodes: usize,
    /// Of those, the connected ones.
    pub storage_nodes_up: usize,
    /// Partitions (256).
    pub partitions: usize,
    /// Partitions with a write quorum.
    pub partitions_quorum: usize,
    /// Partitions with every copy reachable.
    pub partitions_all_ok: usize,
}

/// One node of `GetClusterStatus`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Node id.
    pub id: String,
    /// RPC address.
    pub addr: Option<String>,
    /// Connected.
    pub is_up: bool,
    /// Its role in the layout.
    pub role: Option<Role>,
    /// Space on its data partition.
    pub data_partition: Option<Space>,
}

/// A node's role.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Zone (clusterkit: the node's name).
    pub zone: String,
    /// Capacity in bytes.
    pub capacity: Option<u64>,
}

/// Free and total bytes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Space {
    /// Available bytes.
    pub available: u64,
    /// Total bytes.
    pub total: u64,
}

/// `GetClusterStatus`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Layout version.
    pub layout_version: u64,
    /// Known nodes.
    pub nodes: Vec<NodeStatus>,
}

/// `GetClusterLayout` (the parts clusterkit reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    /// Version.
    pub version: u64,
    /// Nodes with a role.
    pub roles: Vec<LayoutRole>,
    /// Changes staged for the next version.
    pub staged_role_changes: Vec<serde_json::Value>,
}

/// A node with a role.
#[derive(Debug, Clone, Deserialize)]
pub struct LayoutRole {
    /// Node id.
    pub id: String,
    /// Zone.
    pub zone: String,
}

/// `GetBucketInfo` (the parts clusterkit reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Bucket id.
    pub id: String,
    /// Bytes stored.
    #[serde(default)]
    pub bytes: u64,
    /// Objects stored.
    #[serde(default)]
    pub objects: u64,
}

/// `GetKeyInfo` (the parts clusterkit reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    /// The buckets the key may use.
    #[serde(default)]
    pub buckets: Vec<KeyBucket>,
}

/// A bucket a key may use, with its permissions.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyBucket {
    /// Bucket id.
    pub id: String,
    /// Its global names.
    #[serde(default)]
    pub global_aliases: Vec<String>,
    /// What the key may do.
    pub permissions: KeyBucketPerm,
}

/// Read, write, owner.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct KeyBucketPerm {
    /// Read objects.
    #[serde(default)]
    pub read: bool,
    /// Write objects.
    #[serde(default)]
    pub write: bool,
    /// Manage the bucket.
    #[serde(default)]
    pub owner: bool,
}

impl KeyInfo {
    /// Whether the key has every permission on the bucket called `alias`.
    pub fn owns(&self, alias: &str) -> bool {
        self.buckets.iter().any(|b| {
            b.global_aliases.iter().any(|a| a == alias)
                && b.permissions.read
                && b.permissions.write
                && b.permissions.owner
        })
    }
}
