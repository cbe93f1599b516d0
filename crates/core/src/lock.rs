//! One change at a time: a lock on this machine's state directory
//! ([`LocalLock`]) and one on the cluster itself ([`ClusterLock`]), so that
//! two runs, on one machine or on two operators' machines, never change a
//! cluster together.
//!
//! Both are held by something the kernel releases when the holder dies, so a
//! lock left by a killed run is never stale: the local one is an advisory
//! lock on `STATE_DIR/lock`, the cluster's is `flock` on
//! `/run/clusterkit/cluster.lock` on each node, held by a command that lives
//! as long as its SSH channel and hears from its holder every few seconds
//! ([`HEARTBEAT`]); a holder that vanished without closing its connection
//! (a power cut) loses the lock after [`SILENCE`]. Whoever finds a lock taken
//! is told who holds it, with which command and since when.
//!
//! ```no_run
//! # async fn f(nodes: &[std::sync::Arc<dyn clusterkit_core::transport::Transport>]) -> Result<(), clusterkit_core::lock::LockError> {
//! use clusterkit_core::lock::{ClusterLock, Holder, LocalLock};
//! let me = Holder::here("up");
//! let _local = LocalLock::acquire(std::path::Path::new(".clusterkit"), &me)?;
//! let _cluster = ClusterLock::acquire(nodes, nodes.len(), &me).await?;
//! // ... change the cluster; both locks go when dropped
//! # Ok(()) }
//! ```

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::transport::{Cmd, Transport, TransportError, TunnelStream};

/// How often a holder tells each node it is still there.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long a node keeps the lock of a holder it no longer hears from.
pub const SILENCE: Duration = Duration::from_secs(20);

/// The lock file in the state directory.
pub const LOCAL_FILE: &str = "lock";

/// The lock file on every node (on `/run`: a lock does not outlive a boot,
/// and neither does the channel that holds it).
pub const NODE_FILE: &str = "/run/clusterkit/cluster.lock";

/// Who holds a lock: written beside it, shown to whoever finds it taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `user@host` of the machine that runs clusterkit.
    pub who: String,
    /// Its process id.
    pub pid: u32,
    /// Since when, in seconds since the Unix epoch.
    pub since: u64,
    /// The command it runs (`up`, `backup`, ...).
    pub command: String,
}

/// Keeps `s` to characters that are safe anywhere (a file, a shell word, a
/// message) and to 64 of them: a holder line is read back from files and
/// nodes that anyone with root there could have written.
fn tame(s: &str) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | ':' | '+'))
        .take(64)
        .collect();
    if t.is_empty() {
        "?".into()
    } else {
        t
    }
}

impl Holder {
    /// This process, running `command`.
    pub fn here(command: &str) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "root".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            who: tame(&format!("{user}@{host}")),
            pid: std::process::id(),
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command: tame(command),
        }
    }

    /// The line written beside a lock: `who=… pid=… since=… command=…`.
    pub fn line(&self) -> String {
        format!(
            "who={} pid={} since={} command={}",
            tame(&self.who),
            self.pid,
            self.since,
            tame(&self.command)
        )
    }

    /// Reads a line written by [`Holder::line`]; `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let (mut who, mut pid, mut since, mut command) = (None, None, None, None);
        for field in line.trim().split(' ') {
            let (k, v) = field.split_once('=')?;
            match k {
                "who" => who = Some(tame(v)),
                "pid" => pid = Some(v.parse().ok()?),
                "since" => since = Some(v.parse().ok()?),
                "command" => command = Some(tame(v)),
                _ => return None,
            }
        }
        Some(Self {
            who: who?,
            pid: pid?,
            since: since?,
            command: command?,
        })
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = UNIX_EPOCH + Duration::from_secs(self.since);
        write!(
            f,
            "`clusterkit {}` by {} (pid {}) since {}",
            self.command,
            self.who,
            self.pid,
            humantime::format_rfc3339_seconds(since)
        )?;
        if let Ok(ago) = SystemTime::now().duration_since(since) {
            write!(
                f,
                " ({} ago)",
                humantime::format_duration(Duration::from_secs(ago.as_secs()))
            )?;
        }
        Ok(())
    }
}

/// What a lock's file or node said of its holder: a holder, or text that is
/// not one (shown escaped and cut short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A holder line.
    Holder(Holder),
    /// Anything else, as read.
    Text(String),
}

impl Said {
    /// Reads what a lock file or a node said.
    pub fn read(text: &str) -> Self {
        Holder::parse(text).map_or_else(|| Self::Text(text.trim().to_string()), Self::Holder)
    }
}

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Holder(h) => h.fmt(f),
            Self::Text(t) if t.is_empty() => f.write_str("a run that has not said who it is yet"),
            Self::Text(t) => write!(f, "unrecognised holder `{}`", crate::names::shown(t)),
        }
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run on this machine holds the state directory.
    #[error("another clusterkit run on this machine holds {}: {holder}; wait for it to end (its lock goes with its process)", path.display())]
    Local {
        /// The lock file.
        path: PathBuf,
        /// Who holds it.
        holder: Said,
    },
    /// Another run, from this machine or another, holds the cluster.
    #[error("{node}: another clusterkit run holds the cluster's lock: {holder}; wait for it to end (a run whose machine vanished loses the lock {} s after its last word)", SILENCE.as_secs())]
    Busy {
        /// The node that said so.
        node: String,
        /// Who holds it.
        holder: Said,
    },
    /// Fewer than a majority of the cluster's nodes could be locked: another
    /// operator's run could hold the others.
    #[error(
        "the cluster's lock needs a majority of its {of} nodes and {locked} could be locked: {why}"
    )]
    NoMajority {
        /// Nodes locked.
        locked: usize,
        /// Nodes in the cluster.
        of: usize,
        /// What the others said.
        why: String,
    },
    /// A node answered the lock's command with something else.
    #[error("{node}: taking the cluster's lock: {reason}")]
    Node {
        /// The node.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The lock file could not be opened or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The state directory's lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct LocalLock {
    _file: File,
    path: PathBuf,
}

impl LocalLock {
    /// Takes `dir/lock` (made 0600 if missing) without waiting, and writes
    /// `holder` into it; fails naming the holder when another process has it.
    pub fn acquire(dir: &Path, holder: &Holder) -> Result<Self, LockError> {
        let path = dir.join(LOCAL_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io)?;
                file.rewind().map_err(io)?;
                writeln!(file, "{}", holder.line()).map_err(io)?;
                Ok(Self { _file: file, path })
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.take(512).read_to_string(&mut text);
                Err(LockError::Local {
                    path,
                    holder: Said::read(&text),
                })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// [`LocalLock::acquire`], waiting while another process holds it, for
    /// at most `patience` (polled every half second): `waiting` hears who
    /// holds it (once per holder); the last refusal is returned when
    /// patience runs out.
    pub fn acquire_within(
        dir: &Path,
        holder: &Holder,
        patience: Duration,
        waiting: &dyn Fn(&LockError),
    ) -> Result<Self, LockError> {
        let until = std::time::Instant::now() + patience;
        let mut last: Option<Said> = None;
        loop {
            match Self::acquire(dir, holder) {
                Err(e @ LockError::Local { .. }) if std::time::Instant::now() < until => {
                    if let LockError::Local { holder: now, .. } = &e {
                        if last.as_ref() != Some(now) {
                            waiting(&e);
                            last = Some(now.clone());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                r => return r,
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The script that takes a node's lock and holds it while its holder speaks.
pub fn node_script(holder: &Holder) -> Cmd {
    let dir = Path::new(NODE_FILE)
        .parent()
        .map_or("/run/clusterkit".into(), |d| d.display().to_string());
    Cmd::new(format!(
        "d={dir}\n\
         mkdir -p \"$d\" && chmod 700 \"$d\" || exit 1\n\
         command -v flock >/dev/null 2>&1 || {{ echo noflock; exit 0; }}\n\
         exec 9>>{NODE_FILE}\n\
         if ! flock -n 9; then echo busy; head -c 512 \"$d/cluster.holder\" 2>/dev/null; exit 0; fi\n\
         printf '%s\\n' "
    ))
    .arg(&holder.line())
    .push(&format!(
        " > \"$d/cluster.holder\"\n\
         echo locked\n\
         while [ \"$(timeout {silence} head -c 1)\" = . ]; do :; done\n",
        silence = SILENCE.as_secs()
    ))
}

/// What a node answered the lock's script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The lock is ours.
    Locked,
    /// Someone else has it; what they wrote of themselves.
    Busy(String),
    /// The node has no `flock` (util-linux).
    NoFlock,
    /// Anything else (the text, for the message).
    Other(String),
}

/// Reads a node's answer (pure): its first line, and for `busy` the rest.
pub fn answer(text: &str) -> Answer {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    match first.trim() {
        "locked" => Answer::Locked,
        "busy" => Answer::Busy(rest.to_string()),
        "noflock" => Answer::NoFlock,
        _ => Answer::Other(text.to_string()),
    }
}

/// The cluster's lock: held on a majority of its nodes until dropped.
pub struct ClusterLock {
    nodes: Vec<String>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for ClusterLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterLock({})", self.nodes.join(", "))
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        // Dropping the streams closes their channels: each node's script
        // reads the end of its input and lets go of the lock.
        self.heartbeat.abort();
    }
}

impl ClusterLock {
    /// Takes the lock on `nodes` (the reachable ones of a cluster of
    /// `cluster_size`): on the first in name order that answers, then on the
    /// others at once, so two runs started together meet on that node and
    /// one of them stops there. A node held by another run fails it, naming
    /// the holder; so does locking fewer than a majority of the cluster.
    pub async fn acquire(
        nodes: &[Arc<dyn Transport>],
        cluster_size: usize,
        holder: &Holder,
    ) -> Result<Self, LockError> {
        let mut order: Vec<&Arc<dyn Transport>> = nodes.iter().collect();
        order.sort_by(|a, b| a.node().cmp(b.node()));
        let cmd = node_script(holder);
        let mut held: Vec<(String, Box<dyn TunnelStream>)> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        let mut rest = order.into_iter();
        for t in rest.by_ref() {
            match lock_patiently(t.as_ref(), &cmd, holder).await {
                Ok(s) => {
                    held.push((t.node().to_string(), s));
                    break;
                }
                Err(e @ LockError::Busy { .. }) => return Err(e),
                Err(e) => why.push(e.to_string()),
            }
        }
        let others: Vec<_> = rest.collect();
        let results = futures::future::join_all(
            others
                .iter()
                .map(|t| lock_patiently(t.as_ref(), &cmd, holder)),
        )
        .await;
        for (t, r) in others.iter().zip(results) {
            match r {
                Ok(s) => held.push((t.node().to_string(), s)),
                // The others are let go (dropped) with this return.
                Err(e @ LockError::Busy { .. }) => return Err(e),
                Err(e) => why.push(e.to_string()),
            }
        }
        if held.len() * 2 <= cluster_size {
            return Err(LockError::NoMajority {
                locked: held.len(),
                of: cluster_size,
                why: if why.is_empty() {
                    "the others are not reachable".into()
                } else {
                    why.join("; ")
                },
            });
        }
        let names = held.iter().map(|(n, _)| n.clone()).collect();
        let heartbeat = tokio::spawn(async move {
            let mut held = held;
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                for (_, s) in held.iter_mut() {
                    // A node that stopped listening has let go already; the
                    // work on it fails by itself.
                    let _ = tokio::time::timeout(HEARTBEAT, async {
                        s.write_all(b".").await?;
                        s.flush().await
                    })
                    .await;
                }
            }
        });
        Ok(Self {
            nodes: names,
            heartbeat,
        })
    }

    /// [`ClusterLock::acquire`], waiting while another run holds the lock,
    /// for at most `patience`: `waiting` hears who holds it (once per
    /// holder), and the last refusal is returned when patience runs out.
    pub async fn acquire_within(
        nodes: &[Arc<dyn Transport>],
        cluster_size: usize,
        holder: &Holder,
        patience: Duration,
        waiting: &(dyn Fn(&LockError) + Send + Sync),
    ) -> Result<Self, LockError> {
        let until = tokio::time::Instant::now() + patience;
        let mut last: Option<Said> = None;
        loop {
            match Self::acquire(nodes, cluster_size, holder).await {
                Err(e @ LockError::Busy { .. }) if tokio::time::Instant::now() < until => {
                    if let LockError::Busy { holder: now, .. } = &e {
                        if last.as_ref() != Some(now) {
                            waiting(&e);
                            last = Some(now.clone());
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                r => return r,
            }
        }
    }

    /// The nodes that hold the lock for this run.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }
}

/// [`lock_one`], waiting while the holder is this very process: a lock
/// just let go of (its channel closing) can still be held on the node for a
/// moment when the same run takes it again for its next step.
async fn lock_patiently(
    t: &dyn Transport,
    cmd: &Cmd,
    me: &Holder,
) -> Result<Box<dyn TunnelStream>, LockError> {
    let until = tokio::time::Instant::now() + SILENCE + HEARTBEAT;
    loop {
        match lock_one(t, cmd).await {
            Err(LockError::Busy {
                holder: Said::Holder(h),
                ..
            }) if h.who == me.who && h.pid == me.pid && tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

async fn lock_one(t: &dyn Transport, cmd: &Cmd) -> Result<Box<dyn TunnelStream>, LockError> {
    let mut stream = t.exec_stream(cmd).await?;
    let mut text = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        // The first line, byte by byte: nothing after it is ours to read
        // unless the node is busy, and then it ends the stream itself.
        loop {
            match stream.read(&mut byte).await {
                Ok(0) => break,
                Ok(_) => {
                    text.push(byte[0]);
                    if byte[0] == b'\n' && text.starts_with(b"locked") {
                        break;
                    }
                    if text.len() > 1024 {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    let node = t.node().to_string();
    match tokio::time::timeout(Duration::from_secs(15), read).await {
        Err(_) => {
            return Err(LockError::Node {
                node,
                reason: "no answer within 15 s".into(),
            })
        }
        Ok(Err(e)) => {
            return Err(LockError::Node {
                node,
                reason: e.to_string(),
            })
        }
        Ok(Ok(())) => {}
    }
    match answer(&String::from_utf8_lossy(&text)) {
        Answer::Locked => Ok(stream),
        Answer::Busy(holder) => Err(LockError::Busy {
            node,
            holder: Said::read(&holder),
        }),
        Answer::NoFlock => Err(LockError::Node {
            node,
            reason: "no `flock` command (install util-linux)".into(),
        }),
        Answer::Other(text) => Err(LockError::Node {
            node,
            reason: format!(
                "unexpected answer `{}` (is /run writable?)",
                crate::names::shown(text.trim())
            ),
        }),
    }
}

#[cfg(test)]
mod tests;
