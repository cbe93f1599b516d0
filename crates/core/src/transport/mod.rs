//! Reaching the nodes: the [`Transport`] trait every capability crate takes,
//! its SSH implementation ([`ssh::SshSession`], russh), commands with secrets
//! ([`Cmd`]), idempotent uploads, fan-out over nodes, node facts, and each
//! node's Docker Engine API through the same connection ([`Transport::docker`]).

pub mod facts;
pub mod forward;
pub mod images;
pub mod install;
pub mod known_hosts;
pub mod script;
pub mod ssh;
pub mod ssh_config;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// A shell command for a node, with the parts that are secret.
///
/// The command runs as given (a `sh` script); [`Cmd::redacted`] replaces every
/// secret with `<redacted>`, and errors, logs and progress use only that.
///
/// ```
/// use clusterkit_core::transport::Cmd;
/// let c = Cmd::new("docker swarm join --token ").secret("SWMTKN-1-abc").push(" 10.0.0.1:2377");
/// assert_eq!(c.redacted(), "docker swarm join --token <redacted> 10.0.0.1:2377");
/// assert!(c.script().contains("SWMTKN-1-abc"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Cmd {
    script: String,
    secrets: Vec<String>,
    deadline: Option<std::time::Duration>,
}

impl Cmd {
    /// A command from shell text.
    pub fn new(script: impl Into<String>) -> Self {
        Self {
            script: script.into(),
            secrets: Vec::new(),
            deadline: None,
        }
    }

    /// Bounds this command's run on the node to `bound` (below the
    /// transport's own bound for every command): a question asked again and
    /// again in a wait, which answers in a second when all is well, fails
    /// naming itself instead of holding the wait past its patience.
    pub fn within(mut self, bound: std::time::Duration) -> Self {
        self.deadline = Some(bound);
        self
    }

    /// The bound set with [`Cmd::within`], if any.
    pub fn deadline(&self) -> Option<std::time::Duration> {
        self.deadline
    }

    /// Appends shell text.
    pub fn push(mut self, text: &str) -> Self {
        self.script.push_str(text);
        self
    }

    /// Appends one argument, quoted for the shell.
    pub fn arg(mut self, arg: &str) -> Self {
        self.script.push_str(&quote(arg));
        self
    }

    /// Appends a secret argument, quoted; it never appears in any output.
    pub fn secret(mut self, secret: &str) -> Self {
        self.script.push_str(&quote(secret));
        if !secret.is_empty() {
            self.secrets.push(secret.to_string());
        }
        self
    }

    /// Marks text already in the script (or in its output) as secret.
    pub fn with_secret(mut self, secret: &str) -> Self {
        if !secret.is_empty() {
            self.secrets.push(secret.to_string());
        }
        self
    }

    /// The script as it runs on the node.
    pub fn script(&self) -> &str {
        &self.script
    }

    /// The command with every secret replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        self.redact(&self.script)
    }

    /// `text` with this command's secrets replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(&quote(s), "<redacted>");
            out = out.replace(s.as_str(), "<redacted>");
        }
        out
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cmd({:?})", self.redacted())
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Quotes a word for `sh`.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(
        |_| format!("'{}'", word.replace('\'', "'\\''")),
        |q| q.into_owned(),
    )
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (255 when killed by a signal or when none was sent).
    pub status: u32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Standard output as text.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last lines of stderr (or of stdout when stderr is empty).
    pub fn tail(&self) -> String {
        let text = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(text);
        let lines: Vec<&str> = text.trim_end().lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// Errors of the transport; each names the node and its address.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The node could not be reached.
    #[error("{node} ({addr}): cannot connect after {attempts} attempt(s): {reason}")]
    Connect {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("{node} ({addr}): {what} timed out after {secs} s")]
    Timeout {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// What was being done.
        what: String,
        /// The bound.
        secs: u64,
    },
    /// No key was accepted.
    #[error("{node} ({addr}): {user} was not let in with {tried}: authorise one of these keys for {user}, or set the key (ansible_ssh_private_key_file / key =)")]
    Auth {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// SSH user.
        user: String,
        /// The keys tried.
        tried: String,
    },
    /// The node's host key is not the one recorded: possibly a different machine.
    #[error("{node} ({addr}): HOST KEY CHANGED: recorded {old} in {known_hosts}, the node now shows {new}. If the node was reinstalled, accept the new key with `clusterkit known-hosts forget {node}` and run again; otherwise someone may be intercepting the connection")]
    HostKeyChanged {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// Fingerprint recorded.
        old: String,
        /// Fingerprint shown now.
        new: String,
        /// The known_hosts file.
        known_hosts: String,
    },
    /// Strict mode and the node's host key is not recorded.
    #[error("{node} ({addr}): unknown host key {fingerprint} and strict host-key checking is on: check it out of band, then add it to {known_hosts} (or let a first contact record it: run once without --strict-host-keys and with `[ssh] strict_host_keys` off)")]
    HostKeyUnknown {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// Its fingerprint.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: String,
    },
    /// A command exited with a failure.
    #[error("{node} ({addr}): {cmd}: exit status {status}: {stderr}")]
    Failed {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// The command, redacted.
        cmd: String,
        /// Exit status.
        status: u32,
        /// End of stderr, redacted.
        stderr: String,
    },
    /// The SSH session failed.
    #[error("{node} ({addr}): ssh: {reason}")]
    Ssh {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The Docker Engine API failed.
    #[error("{node} ({addr}): docker engine: {reason}")]
    Docker {
        /// Node name.
        node: String,
        /// `host:port`.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Local {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A file to put on a node.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// Content.
    pub content: &'a [u8],
    /// Absolute path on the node.
    pub path: &'a str,
    /// Permission bits, e.g. `0o600` for a file holding a secret.
    pub mode: u32,
    /// `user:group`, when not the connecting user.
    pub owner: Option<&'a str>,
}

/// Whether an upload changed the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The file was written (it was missing or different).
    Written,
    /// The node already had exactly this content; nothing was written.
    Unchanged,
}

/// A byte stream to a TCP port reached from a node ([`Transport::connect_tcp`]).
pub trait TunnelStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> TunnelStream for T {}

/// A connection to one node. Capability crates take `&dyn Transport`.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The node's name.
    fn node(&self) -> &str;

    /// The node's `host:port`, for messages.
    fn addr(&self) -> String;

    /// Runs a command, with `stdin` if given; a non-zero exit is not an error here.
    async fn exec_raw(&self, cmd: &Cmd, stdin: Option<&[u8]>)
        -> Result<ExecOutput, TransportError>;

    /// The node's Docker Engine API, through this connection (never over TCP).
    async fn docker(&self) -> Result<bollard::Docker, TransportError>;

    /// Opens a TCP connection from the node to `host:port` (an address only the
    /// node can reach, such as a mesh address), carried by this connection
    /// (SSH `direct-tcpip`). [`forward::Forward`] serves it on a local port.
    async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Box<dyn TunnelStream>, TransportError> {
        Err(TransportError::Ssh {
            node: self.node().to_string(),
            addr: self.addr(),
            reason: format!("this transport cannot reach {host}:{port} from the node"),
        })
    }

    /// Starts a command and hands back its stdin and stdout as one stream,
    /// for as long as the caller keeps it: writes reach the command's stdin,
    /// reads give its stdout, dropping the stream closes the command's
    /// stdin and the channel. [`crate::lock::ClusterLock`] holds a node's
    /// lock this way (released by the kernel when this process ends).
    async fn exec_stream(&self, cmd: &Cmd) -> Result<Box<dyn TunnelStream>, TransportError> {
        Err(TransportError::Ssh {
            node: self.node().to_string(),
            addr: self.addr(),
            reason: format!(
                "this transport cannot hold a command open: {}",
                cmd.redacted()
            ),
        })
    }

    /// Runs a command like [`Transport::exec`], handing each line of its output
    /// (stdout and stderr, secrets redacted) to `on_line` as it comes: for long
    /// steps whose progress the user should see.
    async fn exec_streaming(
        &self,
        cmd: &Cmd,
        on_line: &(dyn for<'l> Fn(&'l str) + Send + Sync),
    ) -> Result<ExecOutput, TransportError> {
        let out = self.exec(cmd).await?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            on_line(&cmd.redact(line));
        }
        Ok(out)
    }

    /// Runs a command and fails, naming the node, the command and the end of
    /// its stderr (secrets redacted), when it exits non-zero.
    async fn exec(&self, cmd: &Cmd) -> Result<ExecOutput, TransportError> {
        self.exec_with_input(cmd, None).await
    }

    /// [`Transport::exec`] with data on stdin.
    async fn exec_with_input(
        &self,
        cmd: &Cmd,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, TransportError> {
        let out = self.exec_raw(cmd, stdin).await?;
        if out.status != 0 {
            return Err(TransportError::Failed {
                node: self.node().to_string(),
                addr: self.addr(),
                cmd: cmd.redacted(),
                status: out.status,
                stderr: cmd.redact(&out.tail()),
            });
        }
        Ok(out)
    }

    /// Puts a file on the node in one round trip: skipped when the node's copy
    /// has the same SHA-256; otherwise written to a temporary file (umask 077,
    /// then `mode` and `owner`) and renamed over the target, so a reader never
    /// sees half a file.
    async fn upload(&self, file: &Upload<'_>) -> Result<UploadOutcome, TransportError> {
        let hash = hex::encode(Sha256::digest(file.content));
        // A large file is compared first, so that an unchanged one is not sent at all.
        if file.content.len() > 64 * 1024 {
            let current = self
                .exec_raw(&Cmd::new("sha256sum ").arg(file.path), None)
                .await?
                .stdout_str();
            if current.split_whitespace().next() == Some(hash.as_str()) {
                return Ok(UploadOutcome::Unchanged);
            }
        }
        let dir = match file.path.rsplit_once('/') {
            Some(("", _)) => "/".to_string(),
            Some((d, _)) => d.to_string(),
            None => ".".to_string(),
        };
        let chown = match file.owner {
            Some(o) => format!("chown {} \"$t\" && ", quote(o)),
            None => String::new(),
        };
        let script = format!(
            "p={path}; if [ \"$(sha256sum \"$p\" 2>/dev/null | cut -d' ' -f1)\" = {hash} ]; then cat >/dev/null; echo unchanged; exit 0; fi; \
             umask 077; mkdir -p {dir} && t=$(mktemp {dir}/.clusterkit.XXXXXX) && cat > \"$t\" && chmod {mode:o} \"$t\" && {chown}mv -f \"$t\" \"$p\" && echo written || {{ rm -f \"$t\"; exit 1; }}",
            path = quote(file.path),
            dir = quote(&dir),
            mode = file.mode,
        );
        let out = self
            .exec_with_input(&Cmd::new(script), Some(file.content))
            .await?;
        Ok(if out.stdout_str().trim() == "unchanged" {
            UploadOutcome::Unchanged
        } else {
            UploadOutcome::Written
        })
    }

    /// Puts several files at once, each [`Transport::upload`] on its own
    /// channel of the one connection; returns the paths written (the others
    /// already held what was wanted).
    async fn upload_all(&self, files: &[Upload<'_>]) -> Result<Vec<String>, TransportError> {
        let results = futures::future::join_all(files.iter().map(|f| self.upload(f))).await;
        let mut written = Vec::new();
        for (f, r) in files.iter().zip(results) {
            if r? == UploadOutcome::Written {
                written.push(f.path.to_string());
            }
        }
        Ok(written)
    }

    /// Reads a file from the node.
    async fn download(&self, path: &str) -> Result<Vec<u8>, TransportError> {
        Ok(self.exec(&Cmd::new("cat ").arg(path)).await?.stdout)
    }
}

/// A helper program this machine uploads to the nodes (the userspace
/// WireGuard, the volume driver's front): the file `env_var` names, else the
/// one called `name` beside the running executable; `None` when neither can
/// be read (nodes that already run the helper keep theirs).
pub fn local_helper(env_var: &str, name: &str) -> Option<Vec<u8>> {
    let path = std::env::var_os(env_var)
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join(name)))
        })?;
    std::fs::read(path).ok()
}

/// Runs `step` on every node at once, at most `limit` at a time, and returns
/// every node's result in the order given: one failure hides nothing.
pub async fn fan_out<'a, T, E, F, Fut>(
    nodes: &'a [Arc<dyn Transport>],
    limit: usize,
    step: F,
) -> Vec<(String, Result<T, E>)>
where
    F: Fn(&'a dyn Transport) -> Fut,
    Fut: Future<Output = Result<T, E>> + 'a,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let futures = nodes.iter().map(|t| {
        let permits = permits.clone();
        let fut = step(t.as_ref());
        async move {
            let _permit = permits.acquire().await.expect("semaphore open");
            (t.node().to_string(), fut.await)
        }
    });
    futures::future::join_all(futures).await
}

#[cfg(test)]
mod tests;
