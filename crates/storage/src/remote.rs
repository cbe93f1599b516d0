//! What reaches the nodes (feature `remote`).

use clusterkit_core::stack::{deploy, ensure_secret, SecretValue, StackDeploy};
use clusterkit_core::transport::forward::Forward;
use clusterkit_core::transport::{fan_out, quote, Cmd, Transport, TransportError, Upload};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clusterkit_core::spec::{ClusterSpec, StorageBackend};

use crate::*;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A remote operation failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server image is not on a node.
    #[error("{node}: image {image} is not there and the node could not pull it ({reason}): copy it from a machine that has it with `clusterkit images push {image}` (the sandbox builds its own: `clusterkit sandbox build-images`), or set storage.image")]
    ImageMissing {
        /// Node.
        node: String,
        /// Image.
        image: String,
        /// The pull's last words.
        reason: String,
    },
    /// The storage servers did not start.
    #[error("storage did not start on {nodes} within {secs} s: look at `docker service ps {stack}_garage-<node> --no-trunc` on a manager")]
    NotRunning {
        /// Nodes.
        nodes: String,
        /// Bound.
        secs: u64,
        /// Stack.
        stack: String,
    },
    /// Garage refused or failed a request.
    #[error("{node}: garage {endpoint}: {reason}")]
    Garage {
        /// Node asked.
        node: String,
        /// Admin API endpoint.
        endpoint: String,
        /// Garage's answer.
        reason: String,
    },
    /// An S3 request failed.
    #[error("S3: {what}: {reason}")]
    S3 {
        /// What was asked.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// Storage is configured off, or for a backend this operation does not drive.
    #[error("{0}")]
    Unsupported(String),
    /// The cluster is not in a state this operation can start from.
    #[error("{0}")]
    NotReady(String),
}

/// What [`up`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StorageChange {
    /// Swarm secrets created.
    pub secrets_created: Vec<String>,
    /// Whether the stack was (re)deployed.
    pub deployed: bool,
    /// Nodes given a role in the storage layout.
    pub layout_added: Vec<String>,
    /// Zones (node names) of roles removed from the layout.
    pub layout_removed: Vec<String>,
    /// The new layout version, if one was applied.
    pub layout_applied: Option<u64>,
    /// Whether the S3 key was created.
    pub key_created: bool,
    /// Buckets created.
    pub buckets_created: Vec<String>,
    /// Nodes whose volume driver was installed or reconfigured.
    pub driver_changed: Vec<String>,
    /// Garage's health at the end of the run (asked alongside the last
    /// checks; `None` for other backends).
    pub health: Option<garage::Health>,
    /// Storage nodes left on another image than the spec's: `clusterkit
    /// upgrade --component storage` rolls them (see [`roll`]).
    pub image_behind: Vec<String>,
}

impl StorageChange {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        !self.secrets_created.is_empty()
            || self.deployed
            || !self.layout_added.is_empty()
            || !self.layout_removed.is_empty()
            || self.layout_applied.is_some()
            || self.key_created
            || !self.buckets_created.is_empty()
            || !self.driver_changed.is_empty()
    }
}

fn by_name<'a>(nodes: &'a [Arc<dyn Transport>], name: &str) -> Option<&'a Arc<dyn Transport>> {
    nodes.iter().find(|t| t.node() == name)
}

/// The transports of the storage nodes, in spec order; all must be connected.
fn storage_transports<'a>(
    nodes: &'a [Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Vec<&'a Arc<dyn Transport>>, StorageError> {
    storage_nodes(spec)
        .map(|n| {
            by_name(nodes, n.name.as_str()).ok_or_else(|| {
                StorageError::NotReady(format!(
                    "storage node {} is not connected: bring it back, or set `storage = false` for it",
                    n.name
                ))
            })
        })
        .collect()
}

/// A manager that answers for the swarm (see
/// [`clusterkit_core::stack::answering_manager`]).
async fn manager<'a>(
    nodes: &'a [Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<&'a Arc<dyn Transport>, StorageError> {
    clusterkit_core::stack::answering_manager(nodes, spec, clusterkit_core::stack::LEADER_PATIENCE)
        .await?
        .ok_or_else(|| {
            StorageError::NotReady(
                "no manager is connected: storage is deployed through the swarm".into(),
            )
        })
}

/// Reads the S3 key from the first node that holds it.
pub async fn read_key(nodes: &[Arc<dyn Transport>]) -> Result<Option<S3Key>, StorageError> {
    for t in nodes {
        let out = t
            .exec_raw(&Cmd::new(format!("cat {KEY_PATH} 2>/dev/null")), None)
            .await?;
        if let Some(k) = S3Key::parse(&out.stdout_str()) {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// Deploys storage (see the crate's documentation); idempotent: a re-run on a
/// converged cluster changes nothing and says so. `front` is the volume
/// driver's front executable (`clusterkit-volumes`) to install, see
/// [`install_driver`]. `progress` gets one line per step.
pub async fn up(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    front: Option<&[u8]>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<StorageChange, StorageError> {
    let mut change = StorageChange::default();
    if spec.storage.backend == StorageBackend::None {
        return Ok(change);
    }
    let storage = storage_transports(nodes, spec)?;
    let mgr = manager(nodes, spec).await?;
    // Running Garage servers keep their image: see [`roll`].
    let running = roll::running_images(mgr.as_ref(), spec).await?;
    change.image_behind = roll::behind(spec, &running);
    let Some(stack) = render::stack_keeping(spec, &running) else {
        return Ok(change);
    };
    // Validated in spec::build (absolute, safe characters, no system
    // directory) and quoted here all the same.
    let data = quote(&spec.storage.data_path);
    let data = &data;

    // Every storage node: its directories, and the image it will run.
    let storage_arcs: Vec<Arc<dyn Transport>> = storage.iter().map(|t| Arc::clone(t)).collect();
    let running_ref = &running;
    for (n, r) in fan_out(&storage_arcs, 16, |t| async move {
        let image = running_ref
            .get(t.node())
            .unwrap_or(&spec.storage.image)
            .clone();
        t.exec(&Cmd::new(format!(
            "mkdir -p {data}/meta {data}/data && chmod 700 {data}"
        )))
        .await?;
        let has = t
            .exec_raw(&Cmd::new("docker image inspect -f . ").arg(&image), None)
            .await?
            .status
            == 0;
        if has {
            return Ok::<(Option<String>, String), StorageError>((None, image));
        }
        // Pulled where the node reaches a registry (the default is Garage's
        // own image), as monitoring's images are.
        let pulled = t
            .exec_raw(&Cmd::new("docker pull -q ").arg(&image), None)
            .await?;
        let failed = (pulled.status != 0).then(|| pulled.tail().replace('\n', "; "));
        Ok((failed, image))
    })
    .await
    {
        let (failed, image) = r?;
        if let Some(reason) = failed {
            return Err(StorageError::ImageMissing {
                node: n,
                image,
                reason,
            });
        }
    }

    // The key: the one the nodes hold, else a new one.
    let key = match read_key(nodes).await? {
        Some(k) => k,
        None => S3Key::generate().map_err(|e| {
            StorageError::Transport(TransportError::Local {
                what: "reading /dev/urandom for the S3 key".into(),
                source: e,
            })
        })?,
    };

    // Secrets, on a manager.
    let secrets: Vec<(&str, SecretValue)> = match spec.storage.backend {
        StorageBackend::Garage => vec![
            (render::GARAGE_RPC_SECRET, SecretValue::RandomHex(32)),
            (render::GARAGE_ADMIN_SECRET, SecretValue::RandomHex(32)),
        ],
        StorageBackend::Minio => vec![
            (render::MINIO_USER_SECRET, SecretValue::Given(&key.id)),
            (
                render::MINIO_PASSWORD_SECRET,
                SecretValue::Given(&key.secret),
            ),
        ],
        StorageBackend::None => vec![],
    };
    let made = futures::future::join_all(
        secrets
            .iter()
            .map(|(name, value)| ensure_secret(mgr.as_ref(), name, *value)),
    )
    .await;
    for ((name, _), made) in secrets.iter().zip(made) {
        if made? {
            progress(&format!("secret {name} created on {}", mgr.node()));
            change.secrets_created.push(name.to_string());
        }
    }

    // The stack.
    change.deployed = deploy(
        mgr.as_ref(),
        &StackDeploy {
            name: STACK,
            dir: STACK_DIR,
            files: stack.all(),
            services: storage.len(),
        },
        progress,
    )
    .await?;

    match spec.storage.backend {
        StorageBackend::Garage => garage_up(&storage, spec, &key, &mut change, progress).await?,
        StorageBackend::Minio => {
            progress("MinIO: creating buckets through the S3 API");
            let (fwd, s3) = connect_s3(storage[0], spec, &key).await?;
            for b in [BUCKET, INTERNAL_BUCKET] {
                if s3.ensure_bucket(b).await? {
                    change.buckets_created.push(b.into());
                }
            }
            drop(fwd);
        }
        StorageBackend::None => {}
    }

    // The key on every node, and the volume driver.
    let storage_mesh: Vec<clusterkit_core::MeshAddr> =
        storage_nodes(spec).map(|n| n.mesh_address).collect();
    let key_ref = &key;
    for (n, r) in fan_out(nodes, 16, |t| {
        let node = spec.node(t.node()).cloned();
        let storage_mesh = storage_mesh.clone();
        async move {
            let node = node.ok_or_else(|| {
                StorageError::NotReady(format!("{} is not in the spec", t.node()))
            })?;
            // A node without storage uses a storage node's S3, spread by index.
            let mesh = if node.storage {
                node.mesh_address
            } else {
                let i = spec
                    .nodes
                    .iter()
                    .position(|m| m.name == node.name)
                    .unwrap_or(0);
                storage_mesh[i % storage_mesh.len().max(1)]
            };
            install_driver(t, &DriverConfig::for_node(spec, mesh), key_ref, front).await
        }
    })
    .await
    {
        if r? {
            change.driver_changed.push(n);
        }
    }
    if !change.driver_changed.is_empty() {
        progress(&format!(
            "volume driver `{DRIVER}` (re)started on {}",
            change.driver_changed.join(", ")
        ));
    }
    // The swarm sees the driver everywhere; an object written and read back
    // through S3; Garage's health: asked at once.
    // Right after a layout change, Garage may refuse writes for a moment
    // (no quorum in the old layout's sets until it is retired): asked again.
    let patience = Duration::from_secs(if change.layout_applied.is_some() {
        90
    } else {
        0
    });
    let probe = async {
        let (fwd, s3) = connect_s3(storage[0], spec, &key).await?;
        let started = std::time::Instant::now();
        let took = loop {
            match s3.probe(INTERNAL_BUCKET, storage[0].node()).await {
                Err(e)
                    if started.elapsed() < patience
                        && e.to_string().contains("ServiceUnavailable") =>
                {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                r => break r?,
            }
        };
        drop(fwd);
        Ok::<_, StorageError>(took)
    };
    let health = async {
        if spec.storage.backend == StorageBackend::Garage {
            health(nodes, spec).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (announced, took, health) = tokio::join!(
        wait_announced(nodes, mgr.as_ref(), Duration::from_secs(90), progress),
        probe,
        health
    );
    announced?;
    let took = took?;
    change.health = health?;
    progress(&format!(
        "S3 probe object written and read back through {} in {} ms",
        storage[0].node(),
        took.as_millis()
    ));
    Ok(change)
}

/// An S3 client of `node`'s storage server, through a local forward over its
/// SSH connection. Keep the [`Forward`] alive while the client is used.
pub async fn connect_s3(
    node: &Arc<dyn Transport>,
    spec: &ClusterSpec,
    key: &S3Key,
) -> Result<(Forward, s3::S3), StorageError> {
    let n = spec
        .node(node.node())
        .ok_or_else(|| StorageError::NotReady(format!("{} is not in the spec", node.node())))?;
    let port = match spec.storage.backend {
        StorageBackend::Minio => 9000,
        _ => S3_PORT,
    };
    let fwd = Forward::start(
        Arc::clone(node),
        "127.0.0.1:0".parse().expect("literal"),
        &n.mesh_address.to_string(),
        port,
    )
    .await?;
    let s3 = s3::S3::new(&format!("http://{}", fwd.local_addr()), S3_REGION, key);
    Ok((fwd, s3))
}

/// An S3 client of the storage node whose server answers first for `bucket`
/// ([`s3::S3::answers`]), with that node's name: every storage node is
/// asked at once, so a node powered off, whose engine is stopped (a
/// backup's copy) or whose server froze costs nothing. The question needs
/// no peer, so a node whose peer froze answers at once; the calls that
/// follow wait at most [`GARAGE_RPC_TIMEOUT_MS`] per read quorum on that
/// peer, until Garage drops it (five missed pings, about 75 s). Keep the
/// [`Forward`] alive while the client is used.
pub async fn connect_s3_any(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    key: &S3Key,
    bucket: &str,
) -> Result<(Forward, s3::S3, String), StorageError> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut tried: BTreeMap<usize, String> = BTreeMap::new();
    let mut asking = FuturesUnordered::new();
    for (i, n) in storage_nodes(spec).enumerate() {
        let Some(t) = nodes.iter().find(|t| t.node() == n.name.as_str()) else {
            tried.insert(i, format!("{}: not connected", n.name));
            continue;
        };
        let name = n.name.to_string();
        asking.push(async move {
            let asked = async {
                let (fwd, s3) = connect_s3(t, spec, key).await?;
                s3.answers(bucket, S3_ANSWER_PATIENCE).await?;
                Ok::<_, StorageError>((fwd, s3))
            };
            (i, name, asked.await)
        });
    }
    while let Some((i, name, asked)) = asking.next().await {
        match asked {
            Ok((fwd, s3)) => return Ok((fwd, s3, name)),
            Err(e) => {
                tried.insert(i, format!("{name}: {e}"));
            }
        }
    }
    Err(StorageError::NotReady(format!(
        "no storage node's S3 answers (`clusterkit storage status` says more):\n  {}",
        tried.into_values().collect::<Vec<_>>().join("\n  ")
    )))
}

/// How long a storage node's S3 may take to answer the probe. The probe
/// needs no peer, but the patience stays longer than Garage's own bound on
/// a request to a peer: a server busy with such requests is slow, not gone.
const S3_ANSWER_PATIENCE: Duration = Duration::from_millis(GARAGE_RPC_TIMEOUT_MS + 4_000);

pub(crate) async fn garage_up(
    storage: &[&Arc<dyn Transport>],
    spec: &ClusterSpec,
    key: &S3Key,
    change: &mut StorageChange,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), StorageError> {
    let refs: Vec<&dyn Transport> = storage.iter().map(|t| t.as_ref()).collect();
    garage::wait_running(&refs, Duration::from_secs(180)).await?;
    let first = refs[0];

    // Everything there is to know, asked at once (each question is a
    // `docker exec` of about 150 ms): every node's id, the first node's view
    // of who is connected, the layout, the key and its buckets.
    let ask_ids = futures::future::join_all(
        refs.iter()
            .map(|t| async move { (t.node().to_string(), garage::node_id(*t).await) }),
    );
    let key_query = json!({"id": key.id});
    let (asked, status, layout, info) = tokio::join!(
        ask_ids,
        garage::api::<garage::ClusterStatus>(first, "GetClusterStatus", None),
        garage::api::<garage::Layout>(first, "GetClusterLayout", None),
        garage::api::<garage::KeyInfo>(first, "GetKeyInfo", Some(&key_query)),
    );
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (n, id) in asked {
        ids.insert(n, id?);
    }
    let (status, layout) = (status?, layout?);

    // Connect every node to the first, unless it already sees every one up.
    let others: Vec<&String> = ids
        .iter()
        .filter(|(n, _)| n.as_str() != first.node())
        .map(|(_, id)| id)
        .collect();
    let all_up = ids.values().all(|id| {
        let hex = id.split('@').next().unwrap_or_default();
        status.nodes.iter().any(|s| s.id == hex && s.is_up)
    });
    if !others.is_empty() && !all_up {
        let _: serde_json::Value =
            garage::api(first, "ConnectClusterNodes", Some(&json!(others))).await?;
    }

    // Every node keeps its peers' addresses for the boot-time reconnect.
    let peers: Vec<(String, String)> = ids
        .iter()
        .map(|(n, id)| {
            let addr = spec.node(n).map(|x| {
                format!(
                    "{}@{}:3901",
                    id.split('@').next().unwrap_or(id),
                    x.mesh_address
                )
            });
            (n.clone(), addr.unwrap_or_default())
        })
        .collect();
    let installed = futures::future::join_all(refs.iter().map(|t| {
        let list: String = peers
            .iter()
            .filter(|(n, _)| n != t.node())
            .map(|(_, a)| format!("{a}\n"))
            .collect();
        async move { install_peers_unit(*t, &list).await }
    }))
    .await;
    for r in installed {
        r?;
    }

    // Layout: every storage node in a zone of its own, its free space as
    // capacity; roles of servers that are no longer storage nodes (removed
    // from the spec, or reinstalled: a new Garage identity) are removed.
    let wanted: Vec<(String, String)> = refs
        .iter()
        .map(|t| {
            let id = ids[t.node()]
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string();
            (t.node().to_string(), id)
        })
        .collect();
    let diff = layout_diff(&layout, &wanted);
    let mut roles = Vec::new();
    for (node, id) in &diff.add {
        let t = refs.iter().find(|t| t.node() == node).expect("from refs");
        let free = t
            .exec(
                &Cmd::new("df -PB1 ")
                    .arg(&spec.storage.data_path)
                    .push(" | awk 'NR==2 {print $4}'"),
            )
            .await?
            .stdout_str()
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            .max(1 << 30);
        roles.push(json!({"id": id, "zone": node, "capacity": free, "tags": [node]}));
        change.layout_added.push(node.clone());
    }
    if !diff.remove.is_empty() && wanted.len() < spec.storage.replication as usize {
        // Garage needs as many nodes as copies in its layout: the nodes gone
        // keep their place (their copies missing) until others take it.
        progress(&format!(
            "{} stay(s) in the layout, lost: {} node(s) cannot hold {} copies; add a node to make the missing copies again",
            diff.remove.iter().map(|(z, _)| z.as_str()).collect::<Vec<_>>().join(", "),
            wanted.len(),
            spec.storage.replication
        ));
    } else if !diff.remove.is_empty() {
        for (zone, id) in &diff.remove {
            roles.push(json!({"id": id, "remove": true}));
            change.layout_removed.push(zone.clone());
        }
        progress(&format!(
            "removing from the layout: {} (Garage moves their copies to the remaining nodes)",
            change.layout_removed.join(", ")
        ));
    }
    let layout = if roles.is_empty() {
        layout
    } else {
        let _: serde_json::Value =
            garage::api(first, "UpdateClusterLayout", Some(&json!({"roles": roles}))).await?;
        garage::api(first, "GetClusterLayout", None).await?
    };
    if !layout.staged_role_changes.is_empty() {
        let version = layout.version + 1;
        let _: serde_json::Value = garage::api(
            first,
            "ApplyClusterLayout",
            Some(&json!({"version": version})),
        )
        .await?;
        progress(&format!(
            "layout version {version} applied: {} node(s), replication {}",
            refs.len(),
            spec.storage.replication
        ));
        change.layout_applied = Some(version);
    }
    // Garage keeps writing to the old layout's nodes until each has synced
    // the new one: a dead node never will, and its partitions (with fewer
    // live copies than a write quorum) refuse writes: the dead nodes are
    // skipped, also when a run stopped after the apply.
    let dead = status
        .nodes
        .iter()
        .filter(|n| {
            !n.is_up
                && !ids
                    .values()
                    .any(|id| id.split('@').next() == Some(n.id.as_str()))
        })
        .count();
    if !change.layout_removed.is_empty() || dead > 0 {
        let version = change.layout_applied.unwrap_or(layout.version);
        // Measured: with 2 copies and one node dead, the live nodes never
        // finish syncing the old layout unless missing data is allowed. None
        // is missing when fewer nodes died than a write quorum: every
        // acknowledged write reached a live node (Garage's quorums: read
        // (r+1)/2, write r - read + 1).
        let skipped: Result<serde_json::Value, _> = garage::api(
            first,
            "ClusterLayoutSkipDeadNodes",
            Some(&json!({"version": version, "allowMissingData": dead < write_quorum(spec.storage.replication)})),
        )
        .await;
        match skipped {
            Ok(v) => {
                let acked = v["ackUpdated"].as_array().map_or(0, Vec::len)
                    + v["syncUpdated"].as_array().map_or(0, Vec::len);
                if acked > 0 {
                    progress(&format!(
                        "layout version {version}: the nodes gone are no longer waited for"
                    ));
                }
            }
            // Nothing left to skip is not news on a later run.
            Err(e) if !change.layout_removed.is_empty() => progress(&format!(
                "layout version {version}: nodes gone not skipped: {e}"
            )),
            Err(_) => {}
        }
    }

    // The key: a missing one is an answer (404); anything else (no layout
    // yet, or the key table without a quorum for a moment after nodes came
    // back) is asked again now that the layout is applied.
    let mut info = info;
    let asked = std::time::Instant::now();
    let info = loop {
        match info {
            Ok(i) => break Some(i),
            Err(StorageError::Garage { ref reason, .. })
                if reason.contains("(404)") || reason.contains("NoSuch") =>
            {
                break None
            }
            Err(e) if asked.elapsed() > std::time::Duration::from_secs(60) => return Err(e),
            Err(_) => {
                info = garage::api::<garage::KeyInfo>(first, "GetKeyInfo", Some(&key_query)).await;
                if info.is_err() {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    };
    // The key and the buckets.
    if info.is_none() {
        let imported: Result<serde_json::Value, _> = garage::api(
            first,
            "ImportKey",
            Some(&json!({"accessKeyId": key.id, "secretAccessKey": key.secret, "name": "clusterkit"})),
        )
        .await;
        match imported {
            Ok(_) => {
                progress(&format!("S3 key {} made", key.id));
                change.key_created = true;
            }
            // The key's id and secret come from the nodes' own key file: a key
            // with that id is ours. GetKeyInfo can fail for a moment after
            // nodes came back (no quorum yet for the key table): it exists.
            Err(StorageError::Garage { reason, .. }) if reason.contains("KeyAlreadyExists") => {}
            Err(e) => return Err(e),
        }
    }
    for b in [BUCKET, INTERNAL_BUCKET] {
        if info.as_ref().is_some_and(|i| i.owns(b)) {
            continue;
        }
        let bucket = match garage::api::<garage::Bucket>(
            first,
            "GetBucketInfo",
            Some(&json!({"globalAlias": b})),
        )
        .await
        {
            Ok(x) => x,
            Err(_) => {
                change.buckets_created.push(b.into());
                progress(&format!("bucket {b} created"));
                garage::api::<garage::Bucket>(
                    first,
                    "CreateBucket",
                    Some(&json!({"globalAlias": b})),
                )
                .await?
            }
        };
        let _: serde_json::Value = garage::api(
            first,
            "AllowBucketKey",
            Some(&json!({"bucketId": bucket.id, "accessKeyId": key.id, "permissions": {"read": true, "write": true, "owner": true}})),
        )
        .await?;
    }
    Ok(())
}

/// Writes the node's peer list, the reconnect script and its unit, and
/// enables the unit (it runs at the next boot; `up` connects the nodes
/// itself). Idempotent.
async fn install_peers_unit(t: &dyn Transport, peers: &str) -> Result<(), StorageError> {
    let script = render::garage_peers_script(t.node());
    let written = t
        .upload_all(&[
            Upload {
                content: peers.as_bytes(),
                path: render::GARAGE_PEERS_PATH,
                mode: 0o644,
                owner: None,
            },
            Upload {
                content: script.as_bytes(),
                path: render::GARAGE_PEERS_SCRIPT_PATH,
                mode: 0o755,
                owner: None,
            },
            Upload {
                content: render::GARAGE_PEERS_UNIT_TEXT.as_bytes(),
                path: render::GARAGE_PEERS_UNIT_PATH,
                mode: 0o644,
                owner: None,
            },
        ])
        .await?;
    let unit_written = written.iter().any(|p| p == render::GARAGE_PEERS_UNIT_PATH);
    if unit_written {
        t.exec(&Cmd::new(format!(
            "systemctl daemon-reload && systemctl enable {} >/dev/null 2>&1",
            render::GARAGE_PEERS_UNIT
        )))
        .await?;
    }
    Ok(())
}

/// Whether the volume driver runs on the node and serves its sockets,
/// rclone's and the front's Docker finds (a driver stuck before serving, as
/// rclone 1.60 was on stale mounts, is not running).
pub async fn driver_active(t: &dyn Transport) -> Result<bool, StorageError> {
    let cmd = Cmd::new(format!(
        "systemctl is-active --quiet {} {} && [ -S {} ] && [ -S {} ]",
        DriverConfig::UNIT,
        DriverConfig::FRONT_UNIT,
        DriverConfig::RCLONE_SOCKET,
        DriverConfig::socket_of(DRIVER),
    ));
    Ok(t.exec_raw(&cmd, None).await?.status == 0)
}

/// What the layout must gain and lose (pure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutDiff {
    /// Storage nodes (name, Garage id) with no role, assigned or staged.
    pub add: Vec<(String, String)>,
    /// Roles (zone, id) held by an id that is no storage node now.
    pub remove: Vec<(String, String)>,
}

/// Compares the layout with the storage nodes (`wanted`: name and Garage id).
pub fn layout_diff(layout: &garage::Layout, wanted: &[(String, String)]) -> LayoutDiff {
    let staged = |id: &str| layout.staged_role_changes.iter().any(|c| c["id"] == id);
    LayoutDiff {
        add: wanted
            .iter()
            .filter(|(_, id)| !layout.roles.iter().any(|r| &r.id == id) && !staged(id))
            .cloned()
            .collect(),
        remove: layout
            .roles
            .iter()
            .filter(|r| !wanted.iter().any(|(_, id)| id == &r.id) && !staged(&r.id))
            .map(|r| (r.zone.clone(), r.id.clone()))
            .collect(),
    }
}

/// Installs the volume driver on a node: the key (0600), rclone's
/// configuration (0600), its unit, the engine drop-in, and the driver's
/// front (`clusterkit-volumes`, `front`: its executable, uploaded where it
/// differs; `None` keeps the node's own, and a node with none is refused
/// with the way out). rclone is restarted only when its unit or
/// configuration changed (or it was not running); a restart cuts the FUSE
/// mounts of running containers, so the containers using its volumes on the
/// node are restarted too, and remount. The front holds no mount: it is
/// restarted whenever it changed. Returns whether anything changed.
pub async fn install_driver(
    t: &dyn Transport,
    cfg: &DriverConfig,
    key: &S3Key,
    front: Option<&[u8]>,
) -> Result<bool, StorageError> {
    let key_file = key.to_file();
    let conf = render::rclone_conf(cfg, key);
    let unit = cfg.unit();
    let front_unit = cfg.front_unit();
    let dropin = cfg.docker_dropin();
    let mut files = vec![
        Upload {
            content: key_file.as_bytes(),
            path: KEY_PATH,
            mode: 0o600,
            owner: None,
        },
        Upload {
            content: conf.as_bytes(),
            path: DriverConfig::CONF_PATH,
            mode: 0o600,
            owner: None,
        },
        Upload {
            content: unit.as_bytes(),
            path: DriverConfig::UNIT_PATH,
            mode: 0o644,
            owner: None,
        },
        Upload {
            content: front_unit.as_bytes(),
            path: DriverConfig::FRONT_UNIT_PATH,
            mode: 0o644,
            owner: None,
        },
        Upload {
            content: dropin.as_bytes(),
            path: DriverConfig::DOCKER_DROPIN_PATH,
            mode: 0o644,
            owner: None,
        },
    ];
    match front {
        Some(bytes) => files.push(Upload {
            content: bytes,
            path: DriverConfig::FRONT_PATH,
            mode: 0o755,
            owner: None,
        }),
        None => {
            let has = t
                .exec_raw(&Cmd::new("test -x ").arg(DriverConfig::FRONT_PATH), None)
                .await?;
            if has.status != 0 {
                return Err(StorageError::NotReady(format!(
                    "{}: the volume driver's front ({}) is not installed and no clusterkit-volumes is at hand to upload: \
                     build it beside clusterkit (`cargo build --release --bins`) or set CLUSTERKIT_VOLUMES to it",
                    t.node(),
                    DriverConfig::FRONT_PATH
                )));
            }
        }
    }
    // Every file at once, each on its own channel.
    let written = t.upload_all(&files).await?;
    let wrote = |p: &str| written.iter().any(|w| w == p);
    if wrote(DriverConfig::UNIT_PATH)
        || wrote(DriverConfig::FRONT_UNIT_PATH)
        || wrote(DriverConfig::DOCKER_DROPIN_PATH)
    {
        t.exec(&Cmd::new("systemctl daemon-reload")).await?;
    }
    let rclone_active = t
        .exec_raw(
            &Cmd::new(format!(
                "systemctl is-active --quiet {} && [ -S {} ]",
                DriverConfig::UNIT,
                DriverConfig::RCLONE_SOCKET
            )),
            None,
        )
        .await?
        .status
        == 0;
    let restart =
        !rclone_active || wrote(DriverConfig::UNIT_PATH) || wrote(DriverConfig::CONF_PATH);
    let restart_front = restart
        || wrote(DriverConfig::FRONT_UNIT_PATH)
        || wrote(DriverConfig::FRONT_PATH)
        || !driver_active(t).await?;
    if restart {
        // rclone first: an rclone of before the front served Docker's
        // socket itself and removes it as it stops.
        t.exec(&Cmd::new(format!(
            "command -v rclone >/dev/null || {{ echo 'rclone is not installed: apt-get install rclone fuse3' >&2; exit 1; }}; \
             systemctl enable {u} >/dev/null 2>&1; systemctl restart {u}",
            u = DriverConfig::UNIT
        )))
        .await?;
    }
    if restart_front {
        // Docker finds the driver by the front's socket; looking it up makes
        // the engine announce it to the swarm (see `DriverConfig::docker_dropin`).
        t.exec(&Cmd::new(format!(
            "systemctl enable {f} >/dev/null 2>&1; systemctl restart {f}; \
             for i in $(seq 1 100); do [ -S {r} ] && [ -S {s} ] && docker volume ls >/dev/null && break; sleep 0.1; done; \
             if ! [ -S {r} ]; then echo 'the volume driver (rclone) did not open {r}:' >&2; journalctl -u {u} -n 5 --no-pager >&2; exit 1; fi; \
             if ! [ -S {s} ]; then echo 'the volume driver front did not open {s}:' >&2; journalctl -u {f} -n 5 --no-pager >&2; exit 1; fi",
            s = cfg.socket(),
            r = DriverConfig::RCLONE_SOCKET,
            u = DriverConfig::UNIT,
            f = DriverConfig::FRONT_UNIT,
        )))
        .await?;
    }
    if restart {
        // Containers that had its volumes mounted lost them: restart them.
        t.exec(&Cmd::new(format!(
            "for c in $(docker ps -q); do \
               docker inspect $c --format '{{{{range .Mounts}}}}{{{{.Driver}}}} {{{{end}}}}' | grep -qw {d} && docker restart $c >/dev/null; \
             done; true",
            d = cfg.driver,
        )))
        .await?;
    }
    Ok(!written.is_empty() || restart || restart_front)
}

/// The nodes whose description, as the swarm sees it, lacks the driver.
pub async fn unannounced(mgr: &dyn Transport) -> Result<Vec<String>, StorageError> {
    let out = mgr
        .exec(&Cmd::new(format!(
            "for n in $(docker node ls -q); do docker node inspect $n --format '{{{{index .Spec.Labels \"clusterkit.node\"}}}} {{{{range .Description.Engine.Plugins}}}}{{{{.Type}}}}/{{{{.Name}}}} {{{{end}}}}' \
             | grep -v ' Volume/{DRIVER} ' || true; done"
        )))
        .await?;
    Ok(out
        .stdout_str()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect())
}

/// Waits until the swarm lists the driver on every connected node (the
/// engines report it within about 20 s), so a service with a volume of the
/// driver can be placed anywhere right after `up`.
async fn wait_announced(
    nodes: &[Arc<dyn Transport>],
    mgr: &dyn Transport,
    within: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), StorageError> {
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        let missing = unannounced(mgr).await?;
        if missing.is_empty() {
            return Ok(());
        }
        // An engine lists a socket plugin once something asked for it: a
        // volume listing there does (seen in CI: a node back from a power
        // cut whose engine had not listed it after 90 s).
        if start.elapsed() > Duration::from_secs(10) {
            let poke = Cmd::new("docker volume ls -q >/dev/null 2>&1 || true");
            futures::future::join_all(
                nodes
                    .iter()
                    .filter(|t| missing.iter().any(|m| m == t.node()))
                    .map(|t| t.exec_raw(&poke, None)),
            )
            .await;
        }
        if !said {
            progress(&format!(
                "waiting for {} to announce the volume driver to the swarm (up to 20 s)",
                missing.join(", ")
            ));
            said = true;
        }
        if start.elapsed() > within {
            return Err(StorageError::NotReady(format!(
                "the swarm does not list the `{DRIVER}` volume driver on {} after {} s, so it would not place a task with such a volume there: \
                 check `systemctl status {}` and run `docker volume ls` on those nodes",
                missing.join(", "),
                within.as_secs(),
                DriverConfig::UNIT
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One storage node's state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeHealth {
    /// Node.
    pub node: String,
    /// Its storage server answers (as seen from the cluster).
    pub up: bool,
    /// Bytes free on its data partition.
    pub available: Option<u64>,
    /// Bytes on its data partition.
    pub total: Option<u64>,
    /// The volume driver runs on it.
    pub driver: Option<bool>,
}

/// The storage's state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StorageStatus {
    /// Backend.
    pub backend: StorageBackend,
    /// `healthy`, `degraded` or `unavailable`.
    pub health: String,
    /// Per storage node.
    pub nodes: Vec<NodeHealth>,
    /// Copies of each object.
    pub replication: u8,
    /// More node losses the data survives now (reads and writes go on).
    pub tolerates: usize,
    /// The probe object's round trip, when it succeeded.
    pub probe_ms: Option<u128>,
    /// Why the probe failed, when it did.
    pub probe_error: Option<String>,
    /// Bytes in the volumes bucket.
    pub volumes_bytes: Option<u64>,
    /// What else the servers said (MinIO: drives healing, a node it could
    /// not ask).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl std::fmt::Display for StorageStatus {
    /// The table `clusterkit storage status` prints: each node's server and
    /// volume driver, then the health, the replication and what it
    /// tolerates, the probe.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        writeln!(
            f,
            "{:<10} {:<6} {:>10} {:>10}  DRIVER",
            "NODE", "UP", "FREE GiB", "SIZE GiB"
        )?;
        for n in &s.nodes {
            writeln!(
                f,
                "{:<10} {:<6} {:>10} {:>10}  {}",
                n.node,
                if n.up { "yes" } else { "no" },
                gib_text(n.available),
                gib_text(n.total),
                match n.driver {
                    Some(true) => "running",
                    Some(false) => "not serving",
                    None => "?",
                }
            )?;
        }
        writeln!(
            f,
            "\n{:?} {}: replication {}, tolerates {} more node loss(es)",
            s.backend, s.health, s.replication, s.tolerates
        )?;
        match (&s.probe_ms, &s.probe_error) {
            (Some(ms), _) => writeln!(f, "probe object written and read back in {ms} ms")?,
            (None, Some(e)) => writeln!(f, "probe failed: {e}")?,
            _ => {}
        }
        if let Some(b) = s.volumes_bytes {
            writeln!(f, "volumes hold {:.1} MiB", b as f64 / (1u64 << 20) as f64)?;
        }
        for n in &s.notes {
            writeln!(f, "{n}")?;
        }
        Ok(())
    }
}

fn gib_text(b: Option<u64>) -> String {
    b.map(|b| format!("{:.1}", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|| "?".into())
}

impl StorageStatus {
    /// The nodes whose volume driver does not serve: a task with a volume of
    /// the driver cannot run there.
    pub fn drivers_down(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.driver == Some(false))
            .map(|n| n.node.as_str())
            .collect()
    }

    /// Healthy storage (every copy reachable) and a driver serving on every
    /// node that answered.
    pub fn whole(&self) -> bool {
        self.health == "healthy" && self.drivers_down().is_empty()
    }
}

/// Garage's write quorum for `replication` copies (its default consistency:
/// reads need (r+1)/2 copies, writes r - read + 1).
pub fn write_quorum(replication: u8) -> usize {
    let r = replication as usize;
    r - r.div_ceil(2) + 1
}

/// Losses still tolerated with `down` storage nodes out: each object has
/// `replication` copies and needs a majority of them.
pub fn tolerates(replication: u8, down: usize) -> usize {
    let r = replication as usize;
    let quorum = r / 2 + 1;
    (r - quorum).saturating_sub(down)
}

/// Garage's own health summary (`GetClusterHealth`), asked of the first
/// storage node that answers: one round trip, for `up`'s summary.
pub async fn health(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<garage::Health, StorageError> {
    let mut last = StorageError::NotReady("no storage node is connected".into());
    for n in storage_nodes(spec) {
        let Some(t) = by_name(nodes, n.name.as_str()) else {
            continue;
        };
        match garage::api::<garage::Health>(t.as_ref(), "GetClusterHealth", None).await {
            Ok(h) => return Ok(h),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reports the storage's health from the first storage node that answers:
/// health, each node, the drivers, an S3 probe.
pub async fn status(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<StorageStatus, StorageError> {
    match spec.storage.backend {
        StorageBackend::Garage => {}
        StorageBackend::Minio => return minio_status(nodes, spec).await,
        StorageBackend::None => {
            return Err(StorageError::Unsupported(
                "storage is off (storage.backend = \"none\"): there is no status to read".into(),
            ))
        }
    }
    let names: Vec<String> = storage_nodes(spec).map(|n| n.name.to_string()).collect();
    let reachable: Vec<&Arc<dyn Transport>> =
        names.iter().filter_map(|n| by_name(nodes, n)).collect();
    let mut asked = None;
    let mut last_err = None;
    for t in &reachable {
        match garage::api::<garage::Health>(t.as_ref(), "GetClusterHealth", None).await {
            Ok(h) => {
                asked = Some((*t, h));
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let Some((t, health)) = asked else {
        return Err(last_err
            .unwrap_or_else(|| StorageError::NotReady("no storage node is connected".into())));
    };
    let cluster: garage::ClusterStatus = garage::api(t.as_ref(), "GetClusterStatus", None).await?;
    let drivers: BTreeMap<String, bool> = fan_out(nodes, 16, driver_active)
        .await
        .into_iter()
        .filter_map(|(n, r)| r.ok().map(|v| (n, v)))
        .collect();
    let node_health: Vec<NodeHealth> = names
        .iter()
        .map(|name| {
            let s = cluster
                .nodes
                .iter()
                .find(|s| s.role.as_ref().is_some_and(|r| &r.zone == name));
            NodeHealth {
                node: name.clone(),
                up: s.is_some_and(|s| s.is_up),
                available: s.and_then(|s| s.data_partition).map(|p| p.available),
                total: s.and_then(|s| s.data_partition).map(|p| p.total),
                driver: drivers.get(name).copied(),
            }
        })
        .collect();
    let down = health.storage_nodes.saturating_sub(health.storage_nodes_up);
    let key = read_key(nodes).await?;
    let (mut probe_ms, mut probe_error, mut volumes_bytes) = (None, None, None);
    if let Some(key) = key {
        match probe_through(t, spec, &key).await {
            Ok(ms) => probe_ms = Some(ms),
            Err(e) => probe_error = Some(e),
        }
        if let Ok(b) = garage::api::<garage::Bucket>(
            t.as_ref(),
            "GetBucketInfo",
            Some(&json!({"globalAlias": BUCKET})),
        )
        .await
        {
            volumes_bytes = Some(b.bytes);
        }
    } else {
        probe_error = Some("no node holds the S3 key: run `clusterkit storage up`".into());
    }
    Ok(StorageStatus {
        backend: spec.storage.backend,
        tolerates: if health.status == "unavailable" {
            0
        } else {
            tolerates(spec.storage.replication, down)
        },
        health: health.status,
        nodes: node_health,
        replication: spec.storage.replication,
        probe_ms,
        probe_error,
        volumes_bytes,
        notes: Vec::new(),
    })
}

/// The probe object written and read back through node `t`'s S3 server:
/// its round trip in milliseconds, or why it failed.
async fn probe_through(
    t: &Arc<dyn Transport>,
    spec: &ClusterSpec,
    key: &S3Key,
) -> Result<u128, String> {
    let (fwd, s3) = connect_s3(t, spec, key).await.map_err(|e| e.to_string())?;
    let took = s3.probe(INTERNAL_BUCKET, t.node()).await;
    drop(fwd);
    took.map(|d| d.as_millis()).map_err(|e| e.to_string())
}

/// [`status`] for MinIO: each storage node asks its own server's health
/// endpoints ([`crate::minio`]), the probe object goes through the first
/// server online.
async fn minio_status(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<StorageStatus, StorageError> {
    let storage: Vec<&Node> = storage_nodes(spec).collect();
    let mut servers = Vec::new();
    let mut node_health = Vec::new();
    let mut notes = Vec::new();
    let drivers: BTreeMap<String, bool> = fan_out(nodes, 16, driver_active)
        .await
        .into_iter()
        .filter_map(|(n, r)| r.ok().map(|v| (n, v)))
        .collect();
    let asked: BTreeMap<String, Result<crate::minio::ServerHealth, StorageError>> = fan_out(
        &storage
            .iter()
            .filter_map(|n| by_name(nodes, n.name.as_str()).cloned())
            .collect::<Vec<_>>(),
        16,
        |t| {
            let mesh = spec
                .node(t.node())
                .map(|n| n.mesh_address.to_string())
                .unwrap_or_default();
            async move {
                let out = t
                    .exec(&Cmd::new(crate::minio::health_script(&mesh)))
                    .await?;
                Ok::<_, StorageError>(crate::minio::parse_health(&out.stdout_str()))
            }
        },
    )
    .await
    .into_iter()
    .collect();
    for n in &storage {
        let name = n.name.to_string();
        let h = match asked.get(&name) {
            Some(Ok(h)) => h.clone(),
            Some(Err(e)) => {
                notes.push(format!("{name}: {e}"));
                Default::default()
            }
            None => {
                notes.push(format!("{name}: not connected"));
                Default::default()
            }
        };
        if let Some(why) = &h.unasked {
            notes.push(format!("{name}: {why}"));
        }
        if h.healing_drives > 0 {
            notes.push(format!("{name}: {} drive(s) healing", h.healing_drives));
        }
        node_health.push(NodeHealth {
            node: name.clone(),
            up: h.live,
            available: None,
            total: None,
            driver: drivers.get(&name).copied(),
        });
        servers.push(h);
    }
    let (health, tolerates) = crate::minio::judge(&servers);
    let (mut probe_ms, mut probe_error) = (None, None);
    let first_live = storage
        .iter()
        .zip(&servers)
        .find(|(_, h)| h.live)
        .and_then(|(n, _)| by_name(nodes, n.name.as_str()));
    match (read_key(nodes).await?, first_live) {
        (Some(key), Some(t)) => match probe_through(t, spec, &key).await {
            Ok(ms) => probe_ms = Some(ms),
            Err(e) => probe_error = Some(e),
        },
        (None, _) => {
            probe_error = Some("no node holds the S3 key: run `clusterkit storage up`".into())
        }
        (_, None) => probe_error = Some("no MinIO server is online".into()),
    }
    Ok(StorageStatus {
        backend: spec.storage.backend,
        health: health.into(),
        nodes: node_health,
        replication: spec.storage.replication,
        tolerates,
        probe_ms,
        probe_error,
        volumes_bytes: None,
        notes,
    })
}

/// Removes the volume driver from one node (its unit and the engine's
/// drop-in). `purge` also deletes the storage's data, its S3 key, and the
/// driver's configuration and cache.
/// Idempotent; the storage stack itself goes with the swarm's stacks.
pub async fn down(t: &dyn Transport, spec: &ClusterSpec, purge: bool) -> Result<(), StorageError> {
    let mut script = format!(
        "systemctl disable --now {front} {unit} {peers} >/dev/null 2>&1 || true\n\
         systemctl reset-failed {front} {unit} >/dev/null 2>&1 || true\n\
         rm -f {front_path} {front_exe} {unit_path} {dropin} {peers_path} {socket}\n\
         systemctl daemon-reload\n\
         for m in $(awk '$2 ~ \"^{base}/\" {{print $2}}' /proc/mounts); do umount -l \"$m\" 2>/dev/null || true; done\n",
        unit = render::DriverConfig::UNIT,
        unit_path = render::DriverConfig::UNIT_PATH,
        front = render::DriverConfig::FRONT_UNIT,
        front_path = render::DriverConfig::FRONT_UNIT_PATH,
        front_exe = render::DriverConfig::FRONT_PATH,
        socket = render::DriverConfig::socket_of(DRIVER),
        dropin = render::DriverConfig::DOCKER_DROPIN_PATH,
        base = VOLUMES_BASE,
        peers = render::GARAGE_PEERS_UNIT,
        peers_path = render::GARAGE_PEERS_UNIT_PATH,
    );
    if purge {
        script.push_str(&format!(
            "rm -rf {data} {base} /var/cache/clusterkit/rclone /etc/clusterkit/storage\n",
            data = quote(&spec.storage.data_path),
            base = VOLUMES_BASE,
        ));
    }
    t.exec(&Cmd::new(script)).await?;
    Ok(())
}
