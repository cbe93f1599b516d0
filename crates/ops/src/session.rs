//! A session: one loaded description, how to reach its nodes, who hears
//! what happens, and the locks a changing operation holds until the session
//! ends.

use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterkit_core::engine::{Event, Reporter};
use clusterkit_core::lock::{ClusterLock, Holder, LocalLock, LockError};
use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::known_hosts::HostKeyPolicy;
use clusterkit_core::transport::ssh::{connect_all, ConnectEvent, SshOptions};
use clusterkit_core::transport::Transport;
use serde::Serialize;

use crate::OpsError;

/// How a session reaches the nodes and waits for locks.
#[derive(Debug, Clone)]
pub struct Options {
    /// Refuse a host key not recorded yet (also when the description's
    /// `[ssh] strict_host_keys` says so).
    pub strict_host_keys: bool,
    /// Every command run on the nodes is reported (secrets redacted).
    pub verbose: bool,
    /// How long a changing operation waits for a lock another run holds
    /// (`Duration::ZERO`: refuse at once).
    pub lock_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            strict_host_keys: false,
            verbose: false,
            lock_wait: Duration::from_secs(600),
        }
    }
}

/// How patient a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Retries until the SSH options' bound: for operations that need every node.
    Patient,
    /// One short attempt per node: for reports, where a node that does not
    /// answer is an answer, not something to wait for.
    Quick,
}

/// A node that could not be reached, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    /// The node's name.
    pub node: String,
    /// What failed, with the way out.
    pub error: String,
}

/// "NODE: not reachable over SSH: ERROR".
impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: not reachable over SSH: {}", self.node, self.error)
    }
}

/// The nodes reached by [`Session::connect`].
pub struct Connected {
    /// One transport per node reached, in the order they answered.
    pub nodes: Vec<Arc<dyn Transport>>,
    /// The nodes not reached.
    pub unreachable: Vec<Unreachable>,
}

/// One loaded description, its options and reporter, and the locks taken
/// for it. Locks are held from the first operation that takes them to the
/// end of the session, so that an operation made of others (restore, node
/// removal) holds them once.
pub struct Session<'a> {
    loaded: &'a Loaded,
    options: Options,
    reporter: &'a dyn Reporter,
    nodes: tokio::sync::Mutex<Option<Vec<Arc<dyn Transport>>>>,
    supplied: Option<Vec<Arc<dyn Transport>>>,
    cluster: tokio::sync::Mutex<Option<ClusterLock>>,
}

impl<'a> Session<'a> {
    /// A session on `loaded`; `reporter` hears every event of its operations.
    pub fn new(loaded: &'a Loaded, options: Options, reporter: &'a dyn Reporter) -> Self {
        Self {
            loaded,
            options,
            reporter,
            nodes: tokio::sync::Mutex::new(None),
            supplied: None,
            cluster: tokio::sync::Mutex::new(None),
        }
    }

    /// A session whose nodes are reached through `nodes` (a transport of
    /// the embedder's, or scripted ones in tests) instead of SSH: a node of
    /// the description without one is unreachable.
    pub fn with_transports(
        loaded: &'a Loaded,
        options: Options,
        reporter: &'a dyn Reporter,
        nodes: Vec<Arc<dyn Transport>>,
    ) -> Self {
        let mut s = Self::new(loaded, options, reporter);
        s.supplied = Some(nodes);
        s
    }

    /// The loaded description.
    pub fn loaded(&self) -> &'a Loaded {
        self.loaded
    }

    /// The reporter.
    pub fn reporter(&self) -> &'a dyn Reporter {
        self.reporter
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Reports a message of an operation.
    pub fn notice(&self, node: Option<&str>, message: impl Into<String>) {
        self.reporter.event(&Event::Notice {
            node: node.map(str::to_string),
            message: message.into(),
        });
    }

    /// The state directory: the state file's, where `known_hosts`, the
    /// lock and the backup seal key live.
    pub fn state_dir(&self) -> PathBuf {
        state_dir(self.loaded)
    }

    /// The known_hosts file host keys are checked against.
    pub fn known_hosts_path(&self) -> PathBuf {
        known_hosts_path(self.loaded)
    }

    /// Connects to every node of the description at once. A host key
    /// recorded at first contact is reported.
    pub async fn connect(&self, reach: Reach) -> Connected {
        if let Some(given) = &self.supplied {
            let spec = &self.loaded.built.spec;
            let nodes: Vec<Arc<dyn Transport>> = given
                .iter()
                .filter(|t| spec.node(t.node()).is_some())
                .cloned()
                .collect();
            let unreachable = spec
                .nodes
                .iter()
                .filter(|n| !nodes.iter().any(|t| t.node() == n.name.as_str()))
                .map(|n| Unreachable {
                    node: n.name.to_string(),
                    error: "no transport given for it".into(),
                })
                .collect();
            return Connected { nodes, unreachable };
        }
        let mut opts = SshOptions::new(self.known_hosts_path());
        opts.verbose = self.options.verbose;
        if self.options.strict_host_keys || self.loaded.built.spec.ssh.strict_host_keys {
            opts.policy = HostKeyPolicy::Strict;
        }
        if reach == Reach::Quick {
            opts.attempts = 1;
            opts.connect_timeout = Duration::from_secs(3);
        }
        let targets = self.loaded.built.spec.ssh_targets();
        let mut nodes = Vec::new();
        let mut unreachable = Vec::new();
        for (name, r) in connect_all(&targets, &opts).await {
            match r {
                Ok(s) => {
                    for e in &s.events {
                        let ConnectEvent::HostKeyLearned { node, fingerprint } = e;
                        self.notice(
                            Some(node),
                            format!(
                                "first contact, recorded host key {fingerprint} in {}",
                                opts.known_hosts.display()
                            ),
                        );
                    }
                    nodes.push(Arc::new(s) as Arc<dyn Transport>);
                }
                Err(e) => unreachable.push(Unreachable {
                    node: name,
                    error: e.to_string(),
                }),
            }
        }
        Connected { nodes, unreachable }
    }

    /// One short attempt at `node` of `other` (a description that still
    /// lists it, such as the one before a node's removal), with this
    /// session's options; a session given its transports looks among them.
    pub async fn reach_node(&self, other: &Loaded, node: &str) -> Option<Arc<dyn Transport>> {
        if let Some(given) = &self.supplied {
            return given.iter().find(|t| t.node() == node).cloned();
        }
        let mut alone = other.clone();
        alone.built.spec.nodes.retain(|n| n.name.as_str() == node);
        let s = Session::new(&alone, self.options.clone(), self.reporter);
        s.connect(Reach::Quick).await.nodes.into_iter().next()
    }

    /// [`Session::connect`], failing unless every node answered. The
    /// connections are kept: the session's later operations use them.
    pub async fn connect_all(&self) -> Result<Vec<Arc<dyn Transport>>, OpsError> {
        let mut kept = self.nodes.lock().await;
        if let Some(nodes) = kept.as_ref() {
            return Ok(nodes.clone());
        }
        let c = self.connect(Reach::Patient).await;
        if c.unreachable.is_empty() {
            *kept = Some(c.nodes.clone());
            Ok(c.nodes)
        } else {
            Err(OpsError::Unreachable(c.unreachable))
        }
    }

    /// [`Session::connect_all`] for an operation that needs every node: an
    /// unreachable one is refused with each node's error and `why` (what the
    /// operation needs them for, and the way out).
    pub async fn connect_every(&self, why: &str) -> Result<Vec<Arc<dyn Transport>>, OpsError> {
        self.connect_all().await.map_err(|e| match e {
            OpsError::Unreachable(u) => OpsError::Refused(format!(
                "{}\n{} node(s) unreachable: {why}",
                u.iter()
                    .map(|u| format!("{}: {}", u.node, u.error))
                    .collect::<Vec<_>>()
                    .join("\n"),
                u.len()
            )),
            e => e,
        })
    }

    /// Says, once per holder, who holds a lock this session waits for.
    fn waiting(&self, e: &LockError) {
        self.notice(
            None,
            format!(
                "{e}; waiting for it (at most {}, `--lock-wait` sets it)",
                humantime::format_duration(self.options.lock_wait)
            ),
        );
    }

    /// Takes this machine's lock on the state directory for the rest of
    /// the process ([`hold_state_dir`]).
    pub fn hold_state_dir(&self, command: &str) -> Result<(), OpsError> {
        hold_state_dir(&self.state_dir(), command, self.options.lock_wait, &|e| {
            self.waiting(e)
        })
    }

    /// Takes the locks an operation that changes the cluster holds: the
    /// state directory's, then the cluster's on a majority of its nodes
    /// (two operators on two machines cannot change one cluster together).
    /// Held until the session ends; taking them again is free.
    pub async fn lock(&self, nodes: &[Arc<dyn Transport>], command: &str) -> Result<(), OpsError> {
        self.lock_among(nodes, self.loaded.built.spec.nodes.len(), command)
            .await
    }

    /// [`Session::lock`] on every reachable node, however few: for a swarm's
    /// recovery, whose very case is a majority lost.
    pub async fn lock_reachable(
        &self,
        nodes: &[Arc<dyn Transport>],
        command: &str,
    ) -> Result<(), OpsError> {
        self.lock_among(nodes, nodes.len(), command).await
    }

    async fn lock_among(
        &self,
        nodes: &[Arc<dyn Transport>],
        cluster_size: usize,
        command: &str,
    ) -> Result<(), OpsError> {
        self.hold_state_dir(command)?;
        let mut held = self.cluster.lock().await;
        if held.is_none() {
            *held = Some(
                ClusterLock::acquire_within(
                    nodes,
                    cluster_size,
                    &Holder::here(command),
                    self.options.lock_wait,
                    &|e| self.waiting(e),
                )
                .await?,
            );
        }
        Ok(())
    }

    /// Lets the cluster's lock go before the session ends (an operation
    /// that hands the cluster to another process, or reconnects).
    pub async fn unlock_cluster(&self) {
        self.cluster.lock().await.take();
    }
}

/// The state directory of a loaded description: the state file's.
pub fn state_dir(loaded: &Loaded) -> PathBuf {
    loaded.state_path.parent().map_or_else(
        || PathBuf::from(".clusterkit"),
        std::path::Path::to_path_buf,
    )
}

/// The known_hosts file of a loaded description: in its state directory.
pub fn known_hosts_path(loaded: &Loaded) -> PathBuf {
    known_hosts_path_in(&state_dir(loaded))
}

/// The known_hosts file of the state directory `dir`.
pub fn known_hosts_path_in(dir: &std::path::Path) -> PathBuf {
    dir.join("known_hosts")
}

/// The state directories this process holds the lock of. The lock is an
/// advisory `flock`, which a second open file of the same process would
/// wait for: it is taken once per directory and held until the process
/// ends, however many sessions and operations run in it.
static HELD: Mutex<Vec<(PathBuf, LocalLock)>> = Mutex::new(Vec::new());

/// Takes this machine's lock on the state directory `dir` for the rest of
/// the process, waiting at most `wait` for another run that holds it
/// (`waiting` hears who, once per holder). Taking it again is free.
pub fn hold_state_dir(
    dir: &Path,
    command: &str,
    wait: Duration,
    waiting: &dyn Fn(&LockError),
) -> Result<(), OpsError> {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if held.iter().any(|(d, _)| d == dir) {
        return Ok(());
    }
    let lock = LocalLock::acquire_within(dir, &Holder::here(command), wait, waiting)?;
    held.push((dir.to_path_buf(), lock));
    Ok(())
}
