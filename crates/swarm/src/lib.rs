//! clusterkit-swarm: Docker Swarm where every node is a manager (up to
//! `swarm.max_managers`), bound to the WireGuard mesh, driven through each
//! node's Docker API over SSH ([`clusterkit_core::transport::Transport::docker`]).
//!
//! [`up`] initialises or completes the swarm idempotently; [`status`] reports
//! managers, leader and quorum from the engines' own answers; [`recover`]
//! re-forms a swarm that lost its majority from a survivor.
//!
//! Any [`Transport`] will do: SSH in production, a scripted node here.
//!
//! ```
//! use std::sync::Arc;
//! use clusterkit_core::transport::{script::Scripted, Transport};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let node = Scripted::new("node1");
//! node.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 1}}"#);
//! node.on_engine("GET", "/nodes", 200, r#"[{"ID": "a", "Description": {"Hostname": "node1"},
//!     "ManagerStatus": {"Leader": true, "Reachability": "reachable", "Addr": "10.0.0.1:2377"}}]"#);
//! let nodes: Vec<Arc<dyn Transport>> = vec![Arc::new(node)];
//! let st = clusterkit_swarm::status(&nodes).await.unwrap();
//! assert_eq!(st.leader.as_deref(), Some("node1"));
//! assert!(st.has_quorum);
//! # });
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard::models::{
    LocalNodeState, NetworkCreateRequest, NodeSpec, NodeSpecRoleEnum, Reachability,
    SwarmInitRequest, SwarmJoinRequest,
};
use bollard::query_parameters::{
    DeleteNodeOptions, LeaveSwarmOptions, ListNetworksOptions, UpdateNodeOptions,
};
use clusterkit_core::spec::{ClusterSpec, Node, SwarmRole};
use clusterkit_core::transport::{fan_out, Cmd, Transport, TransportError, Upload, UploadOutcome};
use serde::Serialize;

/// The attachable overlay network for the cluster's own services.
pub const NETWORK: &str = "clusterkit";
/// VXLAN's overhead: the overlay's containers get the mesh MTU minus 50.
/// The engine subtracts it itself from the network's `mtu` option (measured:
/// `com.docker.network.driver.mtu=1370` gave the VXLAN device and the
/// containers 1320), so the option is set to the mesh MTU.
pub const VXLAN_OVERHEAD: u16 = 50;

/// Errors of the swarm.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// A remote operation failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The engine refused a request.
    #[error("{node}: docker engine: {what}: {reason}")]
    Engine {
        /// Node.
        node: String,
        /// What was asked.
        what: String,
        /// The engine's answer.
        reason: String,
    },
    /// A node belongs to a swarm that is not this cluster's.
    #[error("{node} is already in another swarm (cluster {other}, this cluster is {ours}): if that is an old swarm, run `docker swarm leave --force` on {node} (its services there stop), then run again")]
    OtherSwarm {
        /// Node.
        node: String,
        /// Its swarm.
        other: String,
        /// This cluster's swarm.
        ours: String,
    },
    /// A node is in the swarm but bound to an address that is not its mesh address.
    #[error("{node} is in the swarm at {addr}, not at its mesh address {mesh}: run `docker swarm leave --force` on {node}, then run again")]
    WrongAddress {
        /// Node.
        node: String,
        /// Where it is bound.
        addr: String,
        /// Where it should be.
        mesh: String,
    },
    /// No manager could answer: the swarm has lost its majority.
    #[error("no manager answers with a majority: {0}")]
    NoQuorum(String),
    /// A roll ([`roll::roll`]) stopped at a node.
    #[error("{node}: {reason}\nthe roll stopped at {node} ({done} of {total} node(s) done). Fix the cause, then run it again \
             (`clusterkit upgrade --component {component}`): nodes already done are skipped. \
             If {node} stays drained: `docker node update --availability active {node}` on a manager")]
    RollStopped {
        /// The node it stopped at.
        node: String,
        /// Why.
        reason: String,
        /// Nodes done before it.
        done: usize,
        /// Nodes to do in all.
        total: usize,
        /// The component rolled.
        component: String,
    },
    /// An application stack's compose file is unusable.
    #[error("{file}: {reason}")]
    StackFile {
        /// The compose file.
        file: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An application stack's services did not converge.
    #[error("stack {stack} did not converge within {secs} s:\n{why}\n(fix the service, then deploy again; `docker service ps --no-trunc SERVICE` on a manager shows more)")]
    StackNotRunning {
        /// Stack.
        stack: String,
        /// Patience.
        secs: u64,
        /// The failing tasks' own errors.
        why: String,
    },
}

pub mod backup;
pub mod phase;
pub mod rebalance;
pub mod roll;
pub mod stacks;

fn engine(node: &str, what: &str, e: impl std::fmt::Display) -> SwarmError {
    SwarmError::Engine {
        node: node.into(),
        what: what.into(),
        reason: e.to_string(),
    }
}

/// What [`up`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SwarmChange {
    /// The node the swarm was initialised on, if it was.
    pub initialized: Option<String>,
    /// Nodes that joined.
    pub joined: Vec<String>,
    /// Nodes whose role or labels were updated.
    pub updated: Vec<String>,
    /// The overlay network was created.
    pub network_created: bool,
    /// Nodes whose engine now starts after the mesh at boot.
    pub boot_order: Vec<String>,
    /// Nodes that now give up on a dead peer's connections within about
    /// 100 s ([`DEAD_PEER_SYSCTL`]).
    pub dead_peers: Vec<String>,
    /// What an earlier swarm's overlay had left on a node, removed before it
    /// joined (by node: VXLAN devices and the engine's overlay namespaces,
    /// [`overlay_leftovers_script`]).
    pub overlay_cleared: BTreeMap<String, Vec<String>>,
}

impl SwarmChange {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// The systemd drop-in that starts the engine after the mesh: the engine binds
/// the swarm to the mesh address, which exists only once the mesh is up.
pub fn boot_order_dropin(interface: &str) -> String {
    format!(
        "# Written by clusterkit: the swarm listens on the mesh address, so the engine starts after the mesh.\n\
         [Unit]\nAfter=wg-quick@{interface}.service\nWants=wg-quick@{interface}.service\n"
    )
}

/// Where [`DEAD_PEER_SYSCTL`] is written on each node.
pub const DEAD_PEER_SYSCTL_PATH: &str = "/etc/sysctl.d/60-clusterkit-swarm.conf";

/// How long a node keeps retransmitting to a peer that stopped answering:
/// `net.ipv4.tcp_retries2 = 8`, about 100 s (RFC 1122's lower bound), where
/// Linux's default, 15, is about 15 minutes.
///
/// Measured on the sandbox: when the leader loses power, a manager's engine
/// has a task status report in flight to it (forwarded by its local manager
/// over the raft connection, with no deadline). The report, and every later
/// one from that node, waits until the kernel gives that connection up: the
/// replica started in place of the lost one runs but stays `Assigned` in
/// `docker service ps` for 15 minutes.
pub const DEAD_PEER_SYSCTL: &str =
    "# Written by clusterkit: a connection to a node that lost power is given up after\n\
# about 100 s of unanswered retransmissions (the kernel default: 15 minutes).\n\
# Swarm managers forward task status reports over such connections.\n\
net.ipv4.tcp_retries2 = 8\n";

/// Writes [`DEAD_PEER_SYSCTL`] where it differs (read at boot) and sets the
/// running value where it differs (a file written by an interrupted run, a
/// value set by hand; through `/proc/sys`, which needs no `sysctl` binary);
/// prints `changed` when it did either.
fn dead_peer_script() -> String {
    format!(
        "f={DEAD_PEER_SYSCTL_PATH}\nwant={}\nc=\n\
         if [ \"$(cat \"$f\" 2>/dev/null)\" != \"$(printf '%s' \"$want\")\" ]; then printf '%s' \"$want\" > \"$f\"; c=1; fi\n\
         if [ \"$(cat /proc/sys/net/ipv4/tcp_retries2)\" != 8 ]; then echo 8 > /proc/sys/net/ipv4/tcp_retries2; c=1; fi\n\
         [ -z \"$c\" ] || echo changed",
        clusterkit_core::transport::quote(DEAD_PEER_SYSCTL)
    )
}

/// The labels clusterkit puts on each swarm node.
pub fn labels(n: &Node) -> HashMap<String, String> {
    HashMap::from([
        ("clusterkit.node".to_string(), n.name.to_string()),
        ("clusterkit.storage".to_string(), n.storage.to_string()),
        // Where the ingress's edges run (`clusterkit_ingress`).
        ("clusterkit.ingress".to_string(), n.ingress.to_string()),
    ])
}

struct Local {
    state: LocalNodeState,
    /// The engine's own node ID in the swarm, if it has one.
    node_id: Option<String>,
    /// The swarm's ID as the engine answers it; none (or empty) when it
    /// cannot tell: a manager whose managers elect no leader.
    cluster: Option<String>,
    addr: Option<String>,
    control: bool,
    /// The addresses (`ip:port`) of the managers the engine knows.
    remote_managers: Vec<String>,
    /// What the engine says went wrong with its swarm (a join it keeps
    /// retrying), if anything.
    error: Option<String>,
}

/// Whether an active node is in another swarm than `ours`, by the swarm ID
/// it answers or, when it cannot tell (its old managers elect no leader: a
/// manager back from a power cut after a recover), by its managers'
/// addresses: all of them among `members` (`ip:2377`) is our swarm as it
/// was. Returns how to name the other swarm.
fn other_swarm(l: &Local, ours: &str, members: &[String]) -> Option<String> {
    match l.cluster.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => (c != ours).then(|| c.to_string()),
        None => {
            let foreign: Vec<&str> = l
                .remote_managers
                .iter()
                .filter(|a| !members.contains(a))
                .map(String::as_str)
                .collect();
            (!foreign.is_empty()).then(|| {
                format!(
                    "unknown: its managers, at {}, elect no leader",
                    foreign.join(", ")
                )
            })
        }
    }
}

async fn local(t: &dyn Transport) -> Result<Local, SwarmError> {
    let info = t
        .docker()
        .await?
        .info()
        .await
        .map_err(|e| engine(t.node(), "info", e))?;
    let s = info.swarm.unwrap_or_default();
    Ok(Local {
        state: s.local_node_state.unwrap_or(LocalNodeState::INACTIVE),
        node_id: s.node_id.filter(|i| !i.is_empty()),
        cluster: s.cluster.and_then(|c| c.id),
        addr: s.node_addr,
        control: s.control_available.unwrap_or(false),
        remote_managers: s
            .remote_managers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.addr)
            .collect(),
        error: s.error.filter(|e| !e.trim().is_empty()),
    })
}

/// How long `up` waits for a swarm's managers to elect a leader before it
/// decides what to do.
const ELECTION_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether the swarm may still be electing a leader, from each reachable
/// engine's `(local state, is a manager)`, whether one of them answered for
/// the swarm, and how many managers the cluster has: managers are active but
/// none answers, and enough of them are reachable to elect one (without a
/// majority reachable, waiting cannot help: the quorum is lost).
fn electing(states: &[(LocalNodeState, bool)], answered: bool, managers: usize) -> bool {
    let active = states
        .iter()
        .filter(|(s, control)| *s == LocalNodeState::ACTIVE && *control)
        .count();
    !answered && active > 0 && active * 2 > managers
}

/// Which of the managers that answer for the swarm, each `(its node ID, the
/// node IDs it lists)`, speaks for it: the first of those that list the
/// fewest of the others. They all list each other in one swarm; after a
/// recover, managers that were away may answer for the old swarm among
/// themselves and list the recovered one, which no longer lists them.
fn pick_answer(answers: &[(&str, &[String])]) -> Option<usize> {
    (0..answers.len()).min_by_key(|&i| {
        answers
            .iter()
            .enumerate()
            .filter(|&(j, (id, _))| j != i && answers[i].1.iter().any(|x| x == id))
            .count()
    })
}

/// How long a member coming back (restarted, powered on) may take to be seen
/// ready by the swarm.
const RETURN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

/// Waits until the swarm (through `leader`) sees the member `id` ready.
async fn wait_seen_ready(
    docker: &bollard::Docker,
    leader: &str,
    name: &str,
    id: &str,
) -> Result<(), SwarmError> {
    let deadline = tokio::time::Instant::now() + RETURN_PATIENCE;
    loop {
        let listed = docker
            .list_nodes(None)
            .await
            .map_err(|e| engine(leader, "node ls", e))?;
        let state = listed
            .iter()
            .find(|x| x.id.as_deref() == Some(id))
            .and_then(|x| x.status.as_ref().and_then(|s| s.state));
        if state == Some(bollard::models::NodeState::READY) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(engine(
                name,
                "swarm membership",
                format!(
                    "{name} is a member of the swarm but has not been seen ready for {} s (state: {}): \
                     it may still be starting; run again in a minute (`clusterkit swarm status` shows it). \
                     If it is gone for good, `clusterkit node remove {name}`",
                    RETURN_PATIENCE.as_secs(),
                    state.map_or("not listed".to_string(), |s| s.to_string())
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// How long a join the engine continues in the background may take.
const JOIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until `t`'s engine reports itself an active swarm member.
async fn wait_joined(t: &dyn Transport, patience: std::time::Duration) -> Result<(), SwarmError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let l = local(t).await?;
        match l.state {
            LocalNodeState::ACTIVE => return Ok(()),
            LocalNodeState::PENDING if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await
            }
            state => {
                return Err(engine(
                    t.node(),
                    "swarm join",
                    format!(
                        "the join did not complete within {} s (node state: {state}{}); \
                         check the mesh to the leader with `clusterkit check`, then re-run",
                        patience.as_secs(),
                        l.error
                            .as_deref()
                            .map(|e| format!("; the engine says: {e}"))
                            .unwrap_or_default()
                    ),
                ))
            }
        }
    }
}

/// The entries of `listed` that no engine ever registered and no member
/// holds: a join whose certificate the swarm issued (which makes the entry:
/// no hostname, state unknown) but whose engine then gave up and asked again
/// under a new ID. Seen after a restore's `--force-new-cluster` on a loaded
/// machine; the entry stays unknown, counted as a node, until removed. Each
/// reachable member is asked its own ID only when there is such an entry, so
/// that a join still under way is never taken for one.
async fn never_registered<'a>(
    listed: &'a [bollard::models::Node],
    nodes: &[Arc<dyn Transport>],
) -> Vec<&'a bollard::models::Node> {
    let nameless: Vec<&bollard::models::Node> = listed
        .iter()
        .filter(|x| {
            let host = x.description.as_ref().and_then(|d| d.hostname.as_deref());
            let state = x.status.as_ref().and_then(|s| s.state);
            host.is_none_or(str::is_empty)
                && matches!(state, None | Some(bollard::models::NodeState::UNKNOWN))
        })
        .collect();
    if nameless.is_empty() {
        return nameless;
    }
    let mut held = Vec::new();
    for t in nodes {
        match local(t.as_ref()).await {
            Ok(l) => held.extend(l.node_id),
            // A member that does not answer may be the one joining: keep all.
            Err(_) => return Vec::new(),
        }
    }
    nameless
        .into_iter()
        .filter(|x| x.id.as_ref().is_some_and(|id| !held.contains(id)))
        .collect()
}

/// Waits until node `id` (`name`), just promoted, is a reachable manager.
async fn wait_reachable_manager(
    docker: &bollard::Docker,
    leader: &str,
    name: &str,
    id: &str,
) -> Result<(), SwarmError> {
    let deadline = tokio::time::Instant::now() + RETURN_PATIENCE;
    loop {
        let node = docker
            .inspect_node(id)
            .await
            .map_err(|e| engine(leader, "node inspect", e))?;
        let reach = node.manager_status.as_ref().and_then(|m| m.reachability);
        if reach == Some(Reachability::REACHABLE) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(engine(
                name,
                "promotion",
                format!(
                    "{name} was made a manager but is not a reachable one after {} s (reachability: {}): \
                     check the mesh with `clusterkit check` and its engine's journal, then run again \
                     (`clusterkit swarm status` shows the managers)",
                    RETURN_PATIENCE.as_secs(),
                    reach.map_or("none yet".to_string(), |r| r.to_string())
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Changes the spec of node `id` as `change` says (`None`: nothing to
/// change), read fresh from the swarm; when another update came between the
/// read and the write (the engine answers "update out of sequence", as while
/// nodes join or after a `--force-new-cluster`), reads it again and retries,
/// for up to 30 s. Returns whether it wrote a change.
async fn update_node_spec(
    docker: &bollard::Docker,
    via: &str,
    id: &str,
    what: &str,
    change: impl Fn(&NodeSpec) -> Option<NodeSpec>,
) -> Result<bool, SwarmError> {
    let started = std::time::Instant::now();
    // A version moved between read and write, or a leader being elected
    // (a backup may just have stopped the leader's engine): asked again.
    let again = |e: &bollard::errors::Error| {
        let m = e.to_string();
        (m.contains("out of sequence") || m.contains("does not have a leader"))
            && started.elapsed() < std::time::Duration::from_secs(30)
    };
    loop {
        let node = match docker.inspect_node(id).await {
            Ok(n) => n,
            Err(e) if again(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(engine(via, what, e)),
        };
        let Some(new) = change(&node.spec.unwrap_or_default()) else {
            return Ok(false);
        };
        let version = node.version.and_then(|v| v.index).unwrap_or(0) as i64;
        match docker
            .update_node(id, new, UpdateNodeOptions { version })
            .await
        {
            Ok(()) => return Ok(true),
            Err(e) if again(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(engine(via, what, e)),
        }
    }
}

fn find<'a>(nodes: &'a [Arc<dyn Transport>], name: &str) -> Option<&'a Arc<dyn Transport>> {
    nodes.iter().find(|t| t.node() == name)
}

/// Initialises or completes the swarm: the first manager inits it on its mesh
/// address (with the spec's address pool, clear of the mesh), the others join
/// with the manager or worker token (never printed), roles and labels follow
/// the spec, the overlay network exists. A re-run on a complete swarm changes nothing.
pub async fn up(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<SwarmChange, SwarmError> {
    let mut change = SwarmChange::default();
    let dropin = boot_order_dropin(&spec.mesh.interface);
    for (node, r) in fan_out(nodes, 16, |t| {
        let dropin = dropin.clone();
        async move {
            let up = Upload {
                content: dropin.as_bytes(),
                path: "/etc/systemd/system/docker.service.d/clusterkit-mesh.conf",
                mode: 0o644,
                owner: None,
            };
            let written = t.upload(&up).await? == UploadOutcome::Written;
            if written {
                t.exec(&Cmd::new("systemctl daemon-reload")).await?;
            }
            let tuned = t.exec(&Cmd::new(dead_peer_script())).await?;
            Ok::<_, TransportError>((written, tuned.stdout_str().trim() == "changed"))
        }
    })
    .await
    {
        let (written, tuned) = r?;
        if written {
            change.boot_order.push(node.clone());
        }
        if tuned {
            change.dead_peers.push(node);
        }
    }

    let members: Vec<&Node> = spec
        .nodes
        .iter()
        .filter(|n| find(nodes, n.name.as_str()).is_some())
        .collect();
    let mesh_addr = |n: &Node| n.mesh_address.to_string();

    // Right after a manager restarted or was cut off, the others may be
    // electing a leader: tens of seconds, more on a loaded machine. Deciding
    // then would take a swarm that is healing for a lost one: wait for the
    // election while a majority of the managers is reachable.
    let managers = spec
        .nodes
        .iter()
        .filter(|n| n.role == SwarmRole::Manager)
        .count();
    let elected_by = tokio::time::Instant::now() + ELECTION_PATIENCE;
    let (locals, answering, timed_out) = loop {
        let mut locals = BTreeMap::new();
        for (node, r) in fan_out(nodes, 16, local).await {
            locals.insert(node, r?);
        }
        // A manager that really answers for the swarm. Managers back from a
        // power cut after a recover may still answer for the old swarm
        // among themselves: the recovered one is the one that does not list
        // them (the recover removed them).
        let mut answers: Vec<(&Node, String, Vec<String>)> = Vec::new();
        for n in &members {
            let Some(l) = locals.get(n.name.as_str()) else {
                continue;
            };
            let Some(id) = l.node_id.clone() else {
                continue;
            };
            if l.state != LocalNodeState::ACTIVE || !l.control {
                continue;
            }
            let t = find(nodes, n.name.as_str()).expect("member");
            if let Ok(listed) = t.docker().await?.list_nodes(None).await {
                answers.push((*n, id, listed.into_iter().filter_map(|x| x.id).collect()));
            }
        }
        let answering = pick_answer(
            &answers
                .iter()
                .map(|(_, id, listed)| (id.as_str(), listed.as_slice()))
                .collect::<Vec<_>>(),
        )
        .map(|i| answers[i].0);
        let states: Vec<(LocalNodeState, bool)> =
            locals.values().map(|l| (l.state, l.control)).collect();
        if !electing(&states, answering.is_some(), managers) {
            break (locals, answering, false);
        }
        if tokio::time::Instant::now() >= elected_by {
            break (locals, answering, true);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };

    // The cluster: the one the active nodes are in, or a new one.
    let active: Vec<(&Node, &Local)> = members
        .iter()
        .filter_map(|n| locals.get(n.name.as_str()).map(|l| (*n, l)))
        .filter(|(_, l)| l.state == LocalNodeState::ACTIVE)
        .collect();
    for (n, l) in &active {
        if let Some(a) = &l.addr {
            if *a != mesh_addr(n) {
                return Err(SwarmError::WrongAddress {
                    node: n.name.to_string(),
                    addr: a.clone(),
                    mesh: mesh_addr(n),
                });
            }
        }
    }
    let leader_node: &Node = match answering {
        Some(n) => n,
        None if active.is_empty() => {
            let first = members
                .iter()
                .find(|n| n.role == SwarmRole::Manager)
                .ok_or_else(|| {
                    SwarmError::NoQuorum("no manager among the reachable nodes".into())
                })?;
            let t = find(nodes, first.name.as_str()).expect("member");
            let cleared = clear_overlay_leftovers(t.as_ref()).await?;
            if !cleared.is_empty() {
                change
                    .overlay_cleared
                    .insert(first.name.to_string(), cleared);
            }
            let addr = mesh_addr(first);
            let req = SwarmInitRequest {
                listen_addr: Some(format!("{addr}:2377")),
                advertise_addr: Some(format!("{addr}:2377")),
                data_path_addr: Some(addr.clone()),
                default_addr_pool: Some(vec![spec.swarm.default_addr_pool.to_string()]),
                subnet_size: Some(u32::from(spec.swarm.subnet_size)),
                ..Default::default()
            };
            t.docker()
                .await?
                .init_swarm(req)
                .await
                .map_err(|e| engine(t.node(), "swarm init", e))?;
            change.initialized = Some(first.name.to_string());
            first
        }
        None => {
            let others: Vec<String> = locals
                .iter()
                .filter(|(_, l)| l.state != LocalNodeState::ACTIVE)
                .map(|(n, l)| format!("{n} is {}", l.state))
                .collect();
            let others = if others.is_empty() {
                String::new()
            } else {
                format!(" ({})", others.join(", "))
            };
            return Err(SwarmError::NoQuorum(format!(
                "{} node(s) are in the swarm but none can reach a majority of managers{}{others}: see `clusterkit swarm status`, and `clusterkit swarm recover` if the missing managers are gone for good",
                active.len(),
                if timed_out {
                    format!(" (no leader elected within {} s)", ELECTION_PATIENCE.as_secs())
                } else {
                    String::new()
                }
            )));
        }
    };
    let leader_t = find(nodes, leader_node.name.as_str()).expect("member");
    let docker = leader_t.docker().await?;
    let swarm = docker
        .inspect_swarm()
        .await
        .map_err(|e| engine(leader_t.node(), "swarm inspect", e))?;
    let ours = swarm.id.clone().unwrap_or_default();
    let member_addrs: Vec<String> = spec
        .nodes
        .iter()
        .map(|n| format!("{}:2377", n.mesh_address))
        .collect();
    for (n, l) in &active {
        if let Some(other) = other_swarm(l, &ours, &member_addrs) {
            return Err(SwarmError::OtherSwarm {
                node: n.name.to_string(),
                other,
                ours,
            });
        }
    }
    let tokens = swarm.join_tokens.unwrap_or_default();

    // Who the swarm counts as a live member (by mesh address).
    let before = docker
        .list_nodes(None)
        .await
        .map_err(|e| engine(leader_t.node(), "node ls", e))?;
    let live: Vec<String> = before
        .iter()
        .filter(|x| {
            x.status.as_ref().and_then(|s| s.state) != Some(bollard::models::NodeState::DOWN)
        })
        .filter_map(|x| x.status.as_ref().and_then(|s| s.addr.clone()))
        .collect();

    // Joins, one at a time: Raft adds managers one by one.
    for n in &members {
        let l = &locals[n.name.as_str()];
        if change.initialized.as_deref() == Some(n.name.as_str()) {
            continue;
        }
        if l.state == LocalNodeState::ACTIVE && live.contains(&mesh_addr(n)) {
            continue;
        }
        let counted = l
            .node_id
            .as_deref()
            .filter(|id| before.iter().any(|x| x.id.as_deref() == Some(*id)));
        if let (Some(id), LocalNodeState::ACTIVE | LocalNodeState::PENDING) = (counted, l.state) {
            // The swarm still counts it, as down: it is coming back (a
            // restart, a power cut), not stale. Leaving and joining again
            // would add a second Raft member for it while the first is still
            // counted (seen: a join that then timed out left 4 members, 2 of
            // them alive, and no leader).
            wait_seen_ready(&docker, leader_t.node(), n.name.as_str(), id).await?;
            continue;
        }
        let t = find(nodes, n.name.as_str()).expect("member");
        if l.state != LocalNodeState::INACTIVE {
            // A node that thinks it is in the swarm the swarm no longer counts
            // (it was away during a recover): it leaves its stale state first.
            // Forced, and asked again while the engine has not left (a
            // stale manager's leave can time out; seen in CI after a recover).
            t.exec(&Cmd::new(FORCE_LEAVE)).await?;
        }
        let cleared = clear_overlay_leftovers(t.as_ref()).await?;
        if !cleared.is_empty() {
            change.overlay_cleared.insert(n.name.to_string(), cleared);
        }
        let token = match n.role {
            SwarmRole::Manager => tokens.manager.clone(),
            SwarmRole::Worker => tokens.worker.clone(),
        };
        let addr = mesh_addr(n);
        let req = SwarmJoinRequest {
            listen_addr: Some(format!("{addr}:2377")),
            advertise_addr: Some(format!("{addr}:2377")),
            data_path_addr: Some(addr.clone()),
            remote_addrs: Some(vec![format!("{}:2377", mesh_addr(leader_node))]),
            join_token: token,
        };
        // The engine's error never contains the token; ours does not either.
        let joined = t.docker().await?.join_swarm(req).await;
        if let Err(e) = joined {
            // On a loaded machine the engine may answer 503 "the attempt to
            // join the swarm will continue in the background": wait for it.
            if !e.to_string().contains("continue in the background") {
                return Err(engine(t.node(), "swarm join", e));
            }
            wait_joined(t.as_ref(), JOIN_PATIENCE).await?;
        }
        change.joined.push(n.name.to_string());
    }

    // A node that left and joined again leaves its old entry behind, down:
    // remove it, or the swarm would count a manager that will never answer.
    let listed = docker
        .list_nodes(None)
        .await
        .map_err(|e| engine(leader_t.node(), "node ls", e))?;
    let is_down = |x: &bollard::models::Node| {
        x.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::DOWN)
    };
    let addr_of = |x: &bollard::models::Node| {
        x.status
            .as_ref()
            .and_then(|s| s.addr.clone())
            .unwrap_or_default()
    };
    for stale in listed.iter().filter(|x| {
        is_down(x)
            && listed
                .iter()
                .any(|y| !is_down(y) && addr_of(y) == addr_of(x))
    }) {
        demote_and_delete(&docker, leader_t.node(), stale, "stale entry").await?;
        change
            .updated
            .push(format!("stale entry of {}", addr_of(stale)));
    }
    for ghost in never_registered(&listed, nodes).await {
        demote_and_delete(
            &docker,
            leader_t.node(),
            ghost,
            "entry of a join never completed",
        )
        .await?;
        change.updated.push(format!(
            "entry {} of a join never completed",
            ghost.id.as_deref().unwrap_or_default()
        ));
    }

    // Roles and labels, as the spec says.
    let listed = docker
        .list_nodes(None)
        .await
        .map_err(|e| engine(leader_t.node(), "node ls", e))?;
    let mut promoted = Vec::new();
    for n in &members {
        let Some(node) = listed.iter().find(|x| {
            x.status.as_ref().and_then(|s| s.addr.as_deref()) == Some(mesh_addr(n).as_str())
                && x.status.as_ref().and_then(|s| s.state) != Some(bollard::models::NodeState::DOWN)
        }) else {
            continue;
        };
        let role = match n.role {
            SwarmRole::Manager => NodeSpecRoleEnum::MANAGER,
            SwarmRole::Worker => NodeSpecRoleEnum::WORKER,
        };
        let wanted = |current: &NodeSpec| {
            let mut want_labels = current.labels.clone().unwrap_or_default();
            want_labels.extend(labels(n));
            (current.role != Some(role) || current.labels.as_ref() != Some(&want_labels)).then(
                || NodeSpec {
                    role: Some(role),
                    labels: Some(want_labels),
                    ..current.clone()
                },
            )
        };
        // The list answers a converged swarm without another round trip.
        if wanted(&node.spec.clone().unwrap_or_default()).is_none() {
            continue;
        }
        let id = node.id.clone().unwrap_or_default();
        if update_node_spec(&docker, leader_t.node(), &id, "node update", wanted).await? {
            change.updated.push(n.name.to_string());
            let was = node.spec.as_ref().and_then(|s| s.role);
            if role == NodeSpecRoleEnum::MANAGER && was != Some(NodeSpecRoleEnum::MANAGER) {
                promoted.push((n.name.to_string(), id));
            }
        }
    }
    // A promoted worker is a manager once it holds a manager's certificate
    // and has joined the Raft group: seconds, during which the swarm counts
    // one manager fewer (measured: `node remove` of a manager, the worker
    // promoted in its place, the status read at once said 2 managers,
    // tolerating no loss). What follows, and the status, wait for it.
    for (name, id) in &promoted {
        wait_reachable_manager(&docker, leader_t.node(), name, id).await?;
    }

    // The cluster's own overlay network, its packets fitted inside the mesh's.
    let filters = HashMap::from([("name".to_string(), vec![NETWORK.to_string()])]);
    let existing = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| engine(leader_t.node(), "network ls", e))?;
    if !existing.iter().any(|n| n.name.as_deref() == Some(NETWORK)) {
        // The engine takes VXLAN's 50 bytes off this itself.
        let mtu = spec.mesh.mtu;
        let req = NetworkCreateRequest {
            name: NETWORK.into(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            options: Some(HashMap::from([(
                "com.docker.network.driver.mtu".to_string(),
                mtu.to_string(),
            )])),
            labels: Some(HashMap::from([(
                "clusterkit".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        };
        docker
            .create_network(req)
            .await
            .map_err(|e| engine(leader_t.node(), "network create", e))?;
        change.network_created = true;
    }

    // Every manager answers for the swarm before the phases after this one
    // ask one of them: a manager back from a restart may not know the
    // leader yet while the others do (seen in CI: the first manager, back
    // from a power cut, refused a secret with "The swarm does not have a
    // leader" three times in a row after this phase had converged).
    for n in members.iter().filter(|n| n.role == SwarmRole::Manager) {
        let t = find(nodes, n.name.as_str()).expect("member");
        wait_knows_leader(t.as_ref(), ELECTION_PATIENCE).await?;
    }
    Ok(change)
}

/// Waits until manager `t`'s engine lists the swarm's nodes (it knows the
/// leader), asking every 2 s for up to `patience`.
async fn wait_knows_leader(
    t: &dyn Transport,
    patience: std::time::Duration,
) -> Result<(), SwarmError> {
    let docker = t.docker().await?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let e = match docker.list_nodes(None).await {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(engine(
                t.node(),
                "node ls",
                format!(
                    "{e}: {node} is a manager but has not known the swarm's leader for {} s while another manager does; \
                     look at `journalctl -u docker | grep -i raft` on {node}, and restart its engine \
                     (`systemctl restart docker`) to make it ask the others again, then run again",
                    patience.as_secs(),
                    node = t.node()
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// One manager, as the swarm sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerInfo {
    /// Host name.
    pub hostname: String,
    /// Its swarm address (the mesh address).
    pub addr: String,
    /// Reachable from the others.
    pub reachable: bool,
    /// The current leader.
    pub leader: bool,
}

/// The swarm's health, from the engines' own answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmStatus {
    /// Managers known to the swarm.
    pub managers: Vec<ManagerInfo>,
    /// Number of workers.
    pub workers: usize,
    /// The leader's host name, if there is one.
    pub leader: Option<String>,
    /// Managers needed for a majority.
    pub quorum: usize,
    /// Whether a majority of managers is reachable.
    pub has_quorum: bool,
    /// How many more managers may be lost right now (0 when at the edge or without quorum).
    pub tolerates: usize,
    /// Which node answered.
    pub answered_by: Option<String>,
}

impl std::fmt::Display for SwarmStatus {
    /// The table `clusterkit swarm status` prints: each manager, then the
    /// leader, the quorum and what it tolerates, and the way out when the
    /// quorum is lost.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self;
        writeln!(
            f,
            "{:<10} {:<12} {:<12} LEADER",
            "MANAGER", "ADDRESS", "REACHABLE"
        )?;
        for m in &s.managers {
            writeln!(
                f,
                "{:<10} {:<12} {:<12} {}",
                m.hostname,
                m.addr,
                if m.reachable { "yes" } else { "no" },
                if m.leader { "yes" } else { "" }
            )?;
        }
        let reachable = s.managers.iter().filter(|m| m.reachable).count();
        writeln!(
        f,
        "\nleader: {}; {reachable} of {} managers reachable, quorum {}; tolerates {} more loss(es); {} worker(s)",
        s.leader.as_deref().unwrap_or("none"),
        s.managers.len(),
        s.quorum,
        s.tolerates,
        s.workers
    )?;
        if !s.has_quorum {
            writeln!(
            f,
            "quorum lost: {reachable} of {} managers reachable, {} needed to decide. Bring the stopped managers back; \
             if they are gone for good, run `clusterkit swarm recover` (see its --help)",
            s.managers.len(),
            s.quorum
        )?;
        }
        Ok(())
    }
}

/// Asks the reachable nodes, in turn, for the swarm's view; a node that cannot
/// answer (no quorum) is skipped. Without any answer, the quorum is lost.
pub async fn status(nodes: &[Arc<dyn Transport>]) -> Result<SwarmStatus, SwarmError> {
    let mut last = String::from("no node reachable");
    let mut known_managers = 0usize;
    for t in nodes {
        let docker = match t.docker().await {
            Ok(d) => d,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        if let Ok(info) = docker.info().await {
            known_managers =
                known_managers.max(info.swarm.and_then(|s| s.managers).unwrap_or(0) as usize);
        }
        match docker.list_nodes(None).await {
            Ok(list) => {
                let mut managers = Vec::new();
                let mut workers = 0;
                for n in &list {
                    match n.manager_status.as_ref() {
                        Some(m) => managers.push(ManagerInfo {
                            hostname: n
                                .description
                                .as_ref()
                                .and_then(|d| d.hostname.clone())
                                .unwrap_or_default(),
                            addr: m
                                .addr
                                .clone()
                                .unwrap_or_default()
                                .trim_end_matches(":2377")
                                .to_string(),
                            reachable: m.reachability == Some(Reachability::REACHABLE),
                            leader: m.leader.unwrap_or(false),
                        }),
                        None => workers += 1,
                    }
                }
                managers.sort_by(|a, b| a.hostname.cmp(&b.hostname));
                let total = managers.len();
                let quorum = total / 2 + 1;
                let reachable = managers.iter().filter(|m| m.reachable).count();
                return Ok(SwarmStatus {
                    leader: managers
                        .iter()
                        .find(|m| m.leader)
                        .map(|m| m.hostname.clone()),
                    has_quorum: reachable >= quorum,
                    tolerates: reachable.saturating_sub(quorum),
                    quorum,
                    managers,
                    workers,
                    answered_by: Some(t.node().to_string()),
                });
            }
            Err(e) => last = format!("{}: {e}", t.node()),
        }
    }
    let counted = if known_managers > 0 {
        format!(
            "the swarm has {known_managers} manager(s) and needs {} to decide; ",
            known_managers / 2 + 1
        )
    } else {
        String::new()
    };
    Err(SwarmError::NoQuorum(format!(
        "{last}. {counted}bring the stopped managers back, \
         or, if they are gone for good, run `clusterkit swarm recover` on a survivor (force-new-cluster)"
    )))
}

/// Re-forms the swarm from `survivor` (`--force-new-cluster`: it keeps the
/// swarm's state, services and secrets, and becomes its only manager), then
/// has the other reachable managers leave and join again. Managers that come
/// back later rejoin with the next `up`.
pub async fn recover(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    survivor: &str,
) -> Result<SwarmChange, SwarmError> {
    let Some(t) = find(nodes, survivor) else {
        return Err(SwarmError::NoQuorum(format!("{survivor} is not reachable")));
    };
    let n = spec.node(survivor).ok_or_else(|| {
        SwarmError::NoQuorum(format!("{survivor} is not in the cluster description"))
    })?;
    let addr = n.mesh_address.to_string();
    let req = SwarmInitRequest {
        listen_addr: Some(format!("{addr}:2377")),
        advertise_addr: Some(format!("{addr}:2377")),
        data_path_addr: Some(addr),
        force_new_cluster: Some(true),
        ..Default::default()
    };
    t.docker()
        .await?
        .init_swarm(req)
        .await
        .map_err(|e| engine(survivor, "swarm init --force-new-cluster", e))?;
    // The survivor is the only manager now: the old managers' entries go, and
    // those that answer leave their stale state to join afresh.
    let docker = t.docker().await?;
    let listed = docker
        .list_nodes(None)
        .await
        .map_err(|e| engine(survivor, "node ls", e))?;
    for node in listed {
        let is_self = node.status.as_ref().and_then(|s| s.addr.as_deref())
            == Some(n.mesh_address.to_string().as_str());
        if is_self {
            continue;
        }
        if let Some(id) = node.id {
            let _ = t
                .exec(
                    &Cmd::new("docker node demote ")
                        .arg(&id)
                        .push(" >/dev/null 2>&1; docker node rm --force ")
                        .arg(&id),
                )
                .await;
        }
    }
    for other in nodes.iter().filter(|o| o.node() != survivor) {
        let _ = other
            .docker()
            .await?
            .leave_swarm(Some(LeaveSwarmOptions { force: true }))
            .await;
    }
    let mut change = up(nodes, spec).await?;
    change.initialized = Some(survivor.to_string());
    Ok(change)
}

/// Removes every stack through a manager (services, their networks, configs
/// and secrets go with them) and waits until no service is left (up to a
/// minute). Returns the stacks removed.
pub async fn remove_stacks(mgr: &dyn Transport) -> Result<Vec<String>, SwarmError> {
    let names: Vec<String> = mgr
        .exec(&Cmd::new("docker stack ls --format '{{.Name}}'"))
        .await?
        .stdout_str()
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    for n in &names {
        mgr.exec(&Cmd::new("docker stack rm ").arg(n).push(" >/dev/null"))
            .await?;
    }
    // `stack rm` returns before the tasks are gone.
    mgr.exec(&Cmd::new(
        "for i in $(seq 1 60); do [ -z \"$(docker service ls -q)\" ] && break; sleep 1; done",
    ))
    .await?;
    Ok(names)
}

/// Demotes an entry of the swarm's node list (when a manager), then deletes
/// it (forced: its node may be gone). Through a manager's engine.
async fn demote_and_delete(
    docker: &bollard::Docker,
    via: &str,
    entry: &bollard::models::Node,
    what: &str,
) -> Result<(), SwarmError> {
    let id = entry.id.clone().unwrap_or_default();
    if entry.manager_status.is_some() {
        let spec = NodeSpec {
            role: Some(NodeSpecRoleEnum::WORKER),
            ..entry.spec.clone().unwrap_or_default()
        };
        let version = entry.version.as_ref().and_then(|v| v.index).unwrap_or(0) as i64;
        docker
            .update_node(&id, spec, UpdateNodeOptions { version })
            .await
            .map_err(|e| engine(via, &format!("node demote ({what})"), e))?;
    }
    docker
        .delete_node(&id, Some(DeleteNodeOptions { force: true }))
        .await
        .map_err(|e| engine(via, &format!("node rm ({what})"), e))?;
    Ok(())
}

/// What [`remove_node`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRemoval {
    /// The swarm's entries for the node that were removed (0 when it was not
    /// in the swarm; more than one when it had left and joined again).
    pub entries: usize,
    /// Whether one of them was a manager (demoted first).
    pub was_manager: bool,
    /// Managers left, and how many of them answer.
    pub managers_left: usize,
    /// Of those, the ones reachable.
    pub reachable_left: usize,
}

/// Removes a node from the swarm for good, through a manager of `nodes`
/// (the nodes that stay): its entries (found by mesh address or hostname)
/// are demoted, then deleted, so the swarm stops counting a manager that
/// will not answer again. Refuses, changing nothing, when the managers that
/// stay would not hold a majority among themselves. Idempotent: a node not in
/// the swarm is reported with `entries: 0`.
///
/// A node that still runs should leave by itself afterwards ([`leave`]); its
/// tasks were or will be rescheduled on the others by the swarm.
pub async fn remove_node(
    nodes: &[Arc<dyn Transport>],
    name: &str,
    mesh_address: std::net::Ipv4Addr,
) -> Result<NodeRemoval, SwarmError> {
    let st = status(nodes).await?;
    let via = st.answered_by.clone().unwrap_or_default();
    let Some(t) = find(nodes, &via) else {
        return Err(SwarmError::NoQuorum(format!(
            "no manager among {} answered",
            nodes
                .iter()
                .map(|t| t.node())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let docker = t.docker().await?;
    let listed = docker
        .list_nodes(None)
        .await
        .map_err(|e| engine(&via, "node ls", e))?;
    let addr = mesh_address.to_string();
    let is_it = |x: &bollard::models::Node| {
        x.status.as_ref().and_then(|s| s.addr.as_deref()) == Some(addr.as_str())
            || x.description.as_ref().and_then(|d| d.hostname.as_deref()) == Some(name)
    };
    let entries: Vec<&bollard::models::Node> = listed.iter().filter(|x| is_it(x)).collect();
    let staying: Vec<&bollard::models::Node> = listed
        .iter()
        .filter(|x| !is_it(x) && x.manager_status.is_some())
        .collect();
    let reachable_left = staying
        .iter()
        .filter(|x| {
            x.manager_status.as_ref().and_then(|m| m.reachability) == Some(Reachability::REACHABLE)
        })
        .count();
    let removal = NodeRemoval {
        entries: entries.len(),
        was_manager: entries.iter().any(|x| x.manager_status.is_some()),
        managers_left: staying.len(),
        reachable_left,
    };
    if entries.is_empty() {
        return Ok(removal);
    }
    if staying.is_empty() || reachable_left < staying.len() / 2 + 1 {
        return Err(SwarmError::NoQuorum(format!(
            "removing {name} would leave {} manager(s), {reachable_left} of them reachable: \
             fewer than the majority ({}) the swarm needs. Bring the other managers back first \
             (or, if they are gone too, `clusterkit swarm recover`)",
            staying.len(),
            staying.len() / 2 + 1
        )));
    }
    // A leader election still settling after the loss answers "lost leader
    // status" or "no leader" for a moment: the entries are read and asked
    // again (an entry half done, demoted but not deleted, has a new version).
    let started = std::time::Instant::now();
    let mut left: Vec<bollard::models::Node> = entries.into_iter().cloned().collect();
    while let Some(e) = left.first() {
        match demote_and_delete(&docker, &via, e, name).await {
            Ok(()) => {
                left.remove(0);
            }
            Err(SwarmError::Engine { reason, .. })
                if (reason.contains("leader") || reason.contains("out of sequence"))
                    && started.elapsed() < std::time::Duration::from_secs(60) =>
            {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                // Without a leader the list may not come either: the next
                // attempt will say so again, until the patience runs out.
                if let Ok(again) = docker.list_nodes(None).await {
                    left = again.into_iter().filter(|x| is_it(x)).collect();
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(removal)
}

/// Makes one node leave the swarm (forced: every node leaves, quorum is not
/// kept) and removes clusterkit's boot-order drop-in. Idempotent. A leave
/// the engine did not complete (seen under load while every node leaves at
/// once) is asked again for up to a minute, then named with the engine's answer.
pub async fn leave(t: &dyn Transport) -> Result<(), SwarmError> {
    t.exec(&Cmd::new(format!(
        "{FORCE_LEAVE}\n{FORGET_BOOT_ORDER}\n{}",
        forget_dead_peer_script()
    )))
    .await?;
    Ok(())
}

/// Makes the engine leave the swarm, asking again while it has not (a forced
/// leave can end in "context deadline exceeded" with the node half out:
/// seen under load). An engine that does not answer (or is not installed)
/// has no swarm to leave.
const FORCE_LEAVE: &str = r#"out=""
state() { docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null; }
for _ in $(seq 30); do
  s=$(state)
  [ -z "$s" ] || [ "$s" = inactive ] && break
  out=$(docker swarm leave --force 2>&1) || true
  sleep 2
done
s=$(state)
if [ -n "$s" ] && [ "$s" != inactive ]; then
  echo "the engine is still in the swarm ($s) after a minute of \`docker swarm leave --force\`: $out" >&2
  exit 1
fi"#;

/// Removes what an earlier swarm's overlay left on a node whose engine is in
/// no swarm, and prints what it removed, one a line.
///
/// An engine stopped before it could clean up, then reinstalled (its state
/// gone, so it never collects them), leaves its overlay namespaces mounted
/// under `/run/docker/netns` with their VXLAN devices in them (seen in CI:
/// 4789/udp held, no process). They hold 4789/udp and the network ids a new
/// swarm hands out again: joined as it is, the node's ingress tasks fail with
/// "error creating vxlan interface: file exists" (measured on the sandbox;
/// moby/libnetwork#1765). A `vx-*` device left in the node's own namespace
/// goes too (the engine removes one with the same id itself, but not one
/// with another). Nothing is touched while the engine is in a swarm.
pub fn overlay_leftovers_script() -> String {
    format!(
        r#"[ "$(docker info -f '{{{{.Swarm.LocalNodeState}}}}' 2>/dev/null)" = inactive ] || exit 0
for x in {}; do
  [ -e "$x" ] || continue
  case "$x" in
    /sys/class/net/*) ip link delete "${{x##*/}}" 2>/dev/null && echo "$x" ;;
    *) umount -l "$x" 2>/dev/null; rm -f "$x" && echo "$x" ;;
  esac
done
true"#,
        clusterkit_core::transport::facts::OVERLAY_TRACES
    )
}

/// Runs [`overlay_leftovers_script`] on a node and returns what it removed:
/// the VXLAN devices by name, the namespaces by path (each checked as the
/// facts check them: a node's answer is printed).
async fn clear_overlay_leftovers(t: &dyn Transport) -> Result<Vec<String>, SwarmError> {
    let out = t.exec(&Cmd::new(overlay_leftovers_script())).await?;
    Ok(out
        .stdout_str()
        .lines()
        .map(str::trim)
        .filter(|l| clusterkit_core::transport::facts::overlay_trace(l))
        .map(|l| l.strip_prefix("/sys/class/net/").unwrap_or(l).to_string())
        .collect())
}

/// Removes clusterkit's boot-order drop-in of the Docker unit.
const FORGET_BOOT_ORDER: &str = r#"rm -f /etc/systemd/system/docker.service.d/clusterkit-mesh.conf
systemctl daemon-reload"#;

/// Removes [`DEAD_PEER_SYSCTL`] and puts the kernel's default back.
fn forget_dead_peer_script() -> String {
    format!(
        "if [ -e {DEAD_PEER_SYSCTL_PATH} ]; then rm -f {DEAD_PEER_SYSCTL_PATH}; echo 15 > /proc/sys/net/ipv4/tcp_retries2; fi"
    )
}

#[cfg(test)]
mod scripted_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const A: LocalNodeState = LocalNodeState::ACTIVE;
    const P: LocalNodeState = LocalNodeState::PENDING;

    fn active(cluster: &str, managers: &[&str]) -> Local {
        Local {
            state: A,
            node_id: Some("n".into()),
            cluster: Some(cluster.into()),
            addr: None,
            control: true,
            remote_managers: managers.iter().map(|m| m.to_string()).collect(),
            error: None,
        }
    }

    #[test]
    fn a_node_that_cannot_tell_its_swarm_is_ours_when_its_managers_are_ours() {
        let members = ["10.0.0.1:2377".to_string(), "10.0.0.2:2377".to_string()];
        // It answers our swarm's ID, or another's.
        assert_eq!(other_swarm(&active("abc", &[]), "abc", &members), None);
        assert_eq!(
            other_swarm(&active("xyz", &["10.0.0.1:2377"]), "abc", &members).as_deref(),
            Some("xyz")
        );
        // It cannot tell (no leader among its managers): its managers decide.
        assert_eq!(
            other_swarm(
                &active("", &["10.0.0.1:2377", "10.0.0.2:2377"]),
                "abc",
                &members
            ),
            None
        );
        let mut none = active("", &["10.0.0.2:2377"]);
        none.cluster = None;
        assert_eq!(other_swarm(&none, "abc", &members), None);
        let foreign = other_swarm(
            &active("", &["10.0.0.2:2377", "192.0.2.9:2377"]),
            "abc",
            &members,
        )
        .expect("another swarm");
        assert!(foreign.contains("192.0.2.9:2377"), "{foreign}");
        assert!(!foreign.contains("10.0.0.2"), "{foreign}");
    }

    #[test]
    fn the_recovered_swarm_speaks_for_the_cluster_not_the_old_one() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = ids(&["a", "b", "c"]);
        // One swarm: the first that answers.
        assert_eq!(
            pick_answer(&[("a", &all), ("b", &all), ("c", &all)]),
            Some(0)
        );
        assert_eq!(pick_answer(&[]), None);
        // Recovered onto c while a and b were away; back, they answer for
        // the old swarm together (and list c), c lists only itself.
        let c_alone = ids(&["c"]);
        assert_eq!(
            pick_answer(&[("a", &all), ("b", &all), ("c", &c_alone)]),
            Some(2)
        );
        // b rejoined the recovered swarm, a still answers for the old one.
        let bc = ids(&["b", "c"]);
        assert_eq!(pick_answer(&[("a", &all), ("b", &bc), ("c", &bc)]), Some(1));
    }

    #[test]
    fn an_election_is_waited_for_only_while_a_majority_is_reachable() {
        // Two of three managers up, neither answers yet: they are electing.
        assert!(electing(&[(A, true), (A, true), (P, true)], false, 3));
        // One answers: nothing to wait for.
        assert!(!electing(&[(A, true), (A, true), (P, true)], true, 3));
        // One of three: the quorum is lost, waiting cannot help.
        assert!(!electing(&[(A, true)], false, 3));
        // Two of four: no majority either.
        assert!(!electing(&[(A, true), (A, true)], false, 4));
        // No manager active (a new cluster, or workers only): nothing to elect.
        assert!(!electing(&[(LocalNodeState::INACTIVE, false); 3], false, 3));
        assert!(!electing(&[(A, false), (A, false)], false, 1));
    }
}
