//! [`SshSession`]: one russh connection per node, reused by every step of a
//! run; exec channels for commands, a direct-streamlocal channel to
//! `/var/run/docker.sock` per Docker API request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;

use super::known_hosts::{self, HostKeyCheck, HostKeyPolicy};
use super::{Cmd, ExecOutput, Transport, TransportError};
use crate::spec::SshTarget;

/// How to connect.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// clusterkit's known_hosts file.
    pub known_hosts: PathBuf,
    /// What to do with unknown host keys.
    pub policy: HostKeyPolicy,
    /// Bound on one connection attempt (TCP, key exchange, authentication).
    pub connect_timeout: Duration,
    /// Attempts before giving up; waits 0.5 s, 1 s, 2 s... between them.
    pub attempts: u32,
    /// Keepalive interval; a node silent for 3 intervals is dropped.
    pub keepalive: Duration,
    /// Bound on one command.
    pub command_timeout: Duration,
    /// Print every command run to stderr (`node$ script`), secrets redacted.
    pub verbose: bool,
    /// The ssh client configuration consulted for each target
    /// (`~/.ssh/config`, or `$CLUSTERKIT_SSH_CONFIG`; an empty value turns it off).
    pub ssh_config: Option<std::sync::Arc<ssh2_config::SshConfig>>,
}

impl SshOptions {
    /// Defaults with the known_hosts file at `known_hosts`.
    pub fn new(known_hosts: impl Into<PathBuf>) -> Self {
        Self {
            known_hosts: known_hosts.into(),
            policy: HostKeyPolicy::AcceptNew,
            connect_timeout: Duration::from_secs(10),
            attempts: 3,
            keepalive: Duration::from_secs(5),
            command_timeout: Duration::from_secs(600),
            verbose: false,
            ssh_config: default_ssh_config(),
        }
    }
}

/// `$CLUSTERKIT_SSH_CONFIG` (empty: none), else `~/.ssh/config` if it exists
/// and parses (one that does not is left aside rather than blocking).
fn default_ssh_config() -> Option<std::sync::Arc<ssh2_config::SshConfig>> {
    let path = match std::env::var_os("CLUSTERKIT_SSH_CONFIG") {
        Some(p) if p.is_empty() => return None,
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".ssh")
            .join("config"),
    };
    super::ssh_config::load(&path)
        .ok()
        .flatten()
        .map(std::sync::Arc::new)
}

/// Something worth telling the user about a connection (first contact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectEvent {
    /// A host key was recorded at first contact.
    HostKeyLearned {
        /// Node.
        node: String,
        /// Its fingerprint.
        fingerprint: String,
    },
}

struct Client {
    node: String,
    host: String,
    port: u16,
    opts: SshOptions,
    outcome: Arc<Mutex<Option<HostKeyCheck>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let check = known_hosts::check(
            &self.opts.known_hosts,
            &self.host,
            self.port,
            key,
            self.opts.policy,
        );
        let accepted = matches!(
            check,
            Ok(HostKeyCheck::Known | HostKeyCheck::Learned { .. })
        );
        let _ = &self.node;
        *self.outcome.lock().expect("not poisoned") = check.ok();
        Ok(accepted)
    }
}

/// One SSH connection to one node.
pub struct SshSession {
    node: String,
    target: SshTarget,
    handle: Arc<Handle<Client>>,
    command_timeout: Duration,
    verbose: bool,
    /// What happened at connection (a learned host key), for the caller to print.
    pub events: Vec<ConnectEvent>,
    /// The jump host's session, kept open while this one lives.
    _via: Option<Arc<SshSession>>,
    /// Session channels open at once, at most [`MAX_SESSIONS`].
    sessions: Arc<tokio::sync::Semaphore>,
}

/// Session channels clusterkit opens at once on one connection: well below
/// OpenSSH's default `MaxSessions` (10), which refuses the eleventh
/// ("Failed to open channel (ConnectFailed)", seen with Grafana's eleven
/// stack files uploaded in parallel, and with 24 steps at once even when 8
/// were allowed: closed channels linger on sshd's side for a moment).
pub const MAX_SESSIONS: usize = 6;

/// Bound on opening one channel (a command's session, a tunnel, a Docker
/// API request): sshd confirms a tunnel only once its own TCP connection
/// is made, and one to an address that drops packets would take minutes.
pub const CHANNEL_OPEN_PATIENCE: Duration = Duration::from_secs(15);

/// Bound on one Docker Engine API request until its answer's headers, and on
/// its answer's body with no byte arriving (an engine stopped mid-request
/// closes the socket at once; one that hangs is given up on after this).
pub const ENGINE_PATIENCE: Duration = Duration::from_secs(120);

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SshSession({} {})", self.node, self.target)
    }
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

impl SshSession {
    /// Connects and authenticates, retrying with backoff on network failures
    /// (never on a host-key or authentication refusal).
    pub async fn connect(
        node: &str,
        target: &SshTarget,
        opts: &SshOptions,
    ) -> Result<Self, TransportError> {
        let resolved = opts
            .ssh_config
            .as_ref()
            .map(|c| super::ssh_config::apply(target, c));
        let target = resolved.as_ref().unwrap_or(target);
        let addr = crate::names::host_port(&target.host, target.port);
        let mut last = String::new();
        for attempt in 1..=opts.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(500 << (attempt - 2).min(4))).await;
            }
            match tokio::time::timeout(opts.connect_timeout, Self::connect_once(node, target, opts))
                .await
            {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(Retry::No(e))) => return Err(e),
                Ok(Err(Retry::Yes(reason))) => last = reason,
                Err(_) => last = format!("no answer within {} s", opts.connect_timeout.as_secs()),
            }
        }
        Err(TransportError::Connect {
            node: node.to_string(),
            addr,
            attempts: opts.attempts.max(1),
            reason: last,
        })
    }

    async fn connect_once(
        node: &str,
        target: &SshTarget,
        opts: &SshOptions,
    ) -> Result<Self, Retry> {
        let addr = crate::names::host_port(&target.host, target.port);
        // The recorded key's type first (a server with several keys shows
        // that one); an unreadable file is reported by the key check itself.
        let recorded = known_hosts::recorded(&opts.known_hosts, &target.host, target.port.get())
            .unwrap_or_default();
        let config = Arc::new(client::Config {
            preferred: russh::Preferred {
                key: std::borrow::Cow::Owned(known_hosts::preferred_algorithms(&recorded)),
                ..russh::Preferred::default()
            },
            keepalive_interval: Some(opts.keepalive),
            keepalive_max: 3,
            inactivity_timeout: None,
            // Small request/response exchanges: Nagle plus delayed ACKs would add ~40 ms to each.
            nodelay: true,
            ..Default::default()
        });
        let outcome = Arc::new(Mutex::new(None));
        let handler = Client {
            node: node.to_string(),
            host: target.host.clone(),
            port: target.port.get(),
            opts: opts.clone(),
            outcome: outcome.clone(),
        };
        // Through a jump host: the connection to the node is carried in a
        // `direct-tcpip` channel of one to the jump host (checked the same way).
        let mut via = None;
        let connected = match &target.jump {
            None => {
                client::connect(config, (target.host.as_str(), target.port.get()), handler).await
            }
            Some(j) => {
                let jump_target = SshTarget {
                    host: j.host.clone(),
                    port: j.port,
                    user: j.user.clone(),
                    key: target.key.clone(),
                    become_: false,
                    jump: None,
                    user_given: true,
                    port_given: true,
                };
                // The jump host's own Host block applies too (one hop only).
                let jump_target = match &opts.ssh_config {
                    Some(c) => SshTarget {
                        jump: None,
                        ..super::ssh_config::apply(&jump_target, c)
                    },
                    None => jump_target,
                };
                let jump_node = format!("{node} (jump host {})", j.host);
                let jump = Box::pin(Self::connect_once(&jump_node, &jump_target, opts)).await?;
                let channel = jump
                    .handle
                    .channel_open_direct_tcpip(target.host.as_str(), target.port.get().into(), "127.0.0.1", 0)
                    .await
                    .map_err(|e| {
                        Retry::Yes(format!(
                            "the jump host {} could not reach {addr} (is AllowTcpForwarding on there, and {addr} reachable from it?): {e}",
                            j.host
                        ))
                    })?;
                via = Some(Arc::new(jump));
                client::connect_stream(config, channel.into_stream(), handler).await
            }
        };
        let check = outcome.lock().expect("not poisoned").clone();
        let known_hosts = opts.known_hosts.display().to_string();
        let mut handle = match (connected, check) {
            (Ok(h), _) => h,
            (Err(_), Some(HostKeyCheck::Changed { old, new })) => {
                return Err(Retry::No(TransportError::HostKeyChanged {
                    node: node.into(),
                    addr,
                    old,
                    new,
                    known_hosts,
                }))
            }
            (Err(_), Some(HostKeyCheck::Unknown { fingerprint })) => {
                return Err(Retry::No(TransportError::HostKeyUnknown {
                    node: node.into(),
                    addr,
                    fingerprint,
                    known_hosts,
                }))
            }
            (Err(e), _) => return Err(Retry::Yes(e.to_string())),
        };
        let mut events = Vec::new();
        if let Some(HostKeyCheck::Learned { fingerprint }) =
            outcome.lock().expect("not poisoned").clone()
        {
            events.push(ConnectEvent::HostKeyLearned {
                node: node.to_string(),
                fingerprint,
            });
        }
        authenticate(&mut handle, node, target).await?;
        Ok(Self {
            node: node.to_string(),
            target: target.clone(),
            handle: Arc::new(handle),
            command_timeout: opts.command_timeout,
            verbose: opts.verbose,
            events,
            _via: via,
            sessions: Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS)),
        })
    }

    /// The target this session reaches.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    fn timeout(&self, what: &str, bound: Duration) -> TransportError {
        TransportError::Timeout {
            node: self.node.clone(),
            addr: self.addr(),
            what: what.to_string(),
            secs: bound.as_secs(),
        }
    }

    fn ssh_error(&self, e: impl std::fmt::Display) -> TransportError {
        TransportError::Ssh {
            node: self.node.clone(),
            addr: self.addr(),
            reason: e.to_string(),
        }
    }

    /// The script as sent: through `sudo` when the target asks to become root.
    fn script_of(&self, cmd: &Cmd) -> String {
        if self.target.become_ && self.target.user != "root" {
            format!("sudo -n sh -c {}", super::quote(cmd.script()))
        } else {
            cmd.script().to_string()
        }
    }

    /// Opens a session channel, retrying a refused open briefly: a channel
    /// just closed on our side can still count on sshd's for a moment.
    async fn open_session(&self) -> Result<russh::Channel<russh::client::Msg>, TransportError> {
        let mut attempt = 0u64;
        loop {
            match within(CHANNEL_OPEN_PATIENCE, self.handle.channel_open_session()).await {
                Some(Ok(c)) => return Ok(c),
                Some(Err(russh::Error::ChannelOpenFailure(_))) if attempt < 40 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt.min(10))).await;
                }
                Some(Err(e)) => return Err(self.ssh_error(e)),
                None => {
                    return Err(self.timeout("opening a session channel", CHANNEL_OPEN_PATIENCE))
                }
            }
        }
    }

    /// Runs a command on a new channel of the connection; with `on_line`, each
    /// complete line of output is handed over (redacted) as it arrives.
    async fn run(
        &self,
        cmd: &Cmd,
        stdin: Option<&[u8]>,
        on_line: Option<&(dyn for<'l> Fn(&'l str) + Send + Sync)>,
    ) -> Result<ExecOutput, TransportError> {
        if self.verbose {
            eprintln!(
                "{}$ {}",
                self.node,
                cmd.redacted().trim_end().replace('\n', "\n    ")
            );
        }
        let script = self.script_of(cmd);
        let emit = |buf: &[u8], from: &mut usize| {
            if let Some(f) = on_line {
                while let Some(nl) = buf[*from..].iter().position(|b| *b == b'\n') {
                    f(&cmd.redact(&String::from_utf8_lossy(&buf[*from..*from + nl])));
                    *from += nl + 1;
                }
            }
        };
        let run = async {
            // sshd refuses session channels beyond its MaxSessions (10 by
            // default) on one connection: parallel steps queue here instead.
            let _slot = self
                .sessions
                .acquire()
                .await
                .map_err(|e| self.ssh_error(e))?;
            let mut channel = self.open_session().await?;
            channel
                .exec(true, script.as_bytes())
                .await
                .map_err(|e| self.ssh_error(e))?;
            if let Some(data) = stdin {
                channel.data(data).await.map_err(|e| self.ssh_error(e))?;
            }
            channel.eof().await.map_err(|e| self.ssh_error(e))?;
            let mut out = ExecOutput {
                status: 255,
                ..Default::default()
            };
            let (mut out_at, mut err_at) = (0, 0);
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        out.stdout.extend_from_slice(&data);
                        emit(&out.stdout, &mut out_at);
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data);
                        emit(&out.stderr, &mut err_at);
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = exit_status,
                    _ => {}
                }
            }
            Ok(out)
        };
        let bound = cmd
            .deadline()
            .map_or(self.command_timeout, |d| d.min(self.command_timeout));
        match tokio::time::timeout(bound, run).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout(&cmd.redacted(), bound)),
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

enum Retry {
    Yes(String),
    No(TransportError),
}

async fn authenticate(
    handle: &mut Handle<Client>,
    node: &str,
    target: &SshTarget,
) -> Result<(), Retry> {
    let addr = crate::names::host_port(&target.host, target.port);
    let mut tried = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let files: Vec<PathBuf> = match &target.key {
        Some(k) => vec![expand_home(k)],
        None => {
            // The agent first, as ssh does.
            if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
                if let Ok(ids) = agent.request_identities().await {
                    for id in ids {
                        let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = id
                        else {
                            continue;
                        };
                        tried.push(format!("agent key {comment}"));
                        let hash = if key.algorithm().is_rsa() {
                            rsa_hash
                        } else {
                            None
                        };
                        if let Ok(r) = handle
                            .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                            .await
                        {
                            if r.success() {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            ["~/.ssh/id_ed25519", "~/.ssh/id_rsa", "~/.ssh/id_ecdsa"]
                .iter()
                .map(|p| expand_home(Path::new(p)))
                .filter(|p| p.exists())
                .collect()
        }
    };
    for file in files {
        tried.push(file.display().to_string());
        let key = match russh::keys::load_secret_key(&file, None) {
            Ok(k) => k,
            Err(e) => {
                return Err(Retry::No(TransportError::Auth {
                    node: node.into(),
                    addr,
                    user: target.user.clone(),
                    tried: format!("{} (unreadable: {e})", file.display()),
                }))
            }
        };
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        match handle
            .authenticate_publickey(
                &target.user,
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
        {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(Retry::Yes(e.to_string())),
        }
    }
    Err(Retry::No(TransportError::Auth {
        node: node.into(),
        addr,
        user: target.user.clone(),
        tried: if tried.is_empty() {
            "no key (none given, no agent, no ~/.ssh/id_*)".into()
        } else {
            tried.join(", ")
        },
    }))
}

#[async_trait]
impl Transport for SshSession {
    fn node(&self) -> &str {
        &self.node
    }

    fn addr(&self) -> String {
        crate::names::host_port(&self.target.host, self.target.port)
    }

    async fn exec_raw(
        &self,
        cmd: &Cmd,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, TransportError> {
        self.run(cmd, stdin, None).await
    }

    async fn exec_streaming(
        &self,
        cmd: &Cmd,
        on_line: &(dyn for<'l> Fn(&'l str) + Send + Sync),
    ) -> Result<ExecOutput, TransportError> {
        let out = self.run(cmd, None, Some(on_line)).await?;
        if out.status != 0 {
            return Err(TransportError::Failed {
                node: self.node.clone(),
                addr: self.addr(),
                cmd: cmd.redacted(),
                status: out.status,
                stderr: cmd.redact(&out.tail()),
            });
        }
        Ok(out)
    }

    async fn exec_stream(&self, cmd: &Cmd) -> Result<Box<dyn super::TunnelStream>, TransportError> {
        if self.verbose {
            eprintln!("{}$ {} (held open)", self.node, cmd.redacted().trim_end());
        }
        // The channel keeps its place among the connection's sessions for
        // as long as it is held.
        let slot = self
            .sessions
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| self.ssh_error(e))?;
        let channel = self.open_session().await?;
        channel
            .exec(true, self.script_of(cmd).as_bytes())
            .await
            .map_err(|e| self.ssh_error(e))?;
        Ok(Box::new(Held {
            stream: channel.into_stream(),
            _slot: slot,
        }))
    }

    async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Box<dyn super::TunnelStream>, TransportError> {
        let channel = within(
            CHANNEL_OPEN_PATIENCE,
            self.handle
                .channel_open_direct_tcpip(host, port.into(), "127.0.0.1", 0),
        )
        .await
        .ok_or_else(|| {
            self.timeout(
                &format!("opening a tunnel to {host}:{port} (does anything answer there?)"),
                CHANNEL_OPEN_PATIENCE,
            )
        })?
        .map_err(|e| TransportError::Ssh {
            node: self.node.clone(),
            addr: self.addr(),
            reason: format!(
                "opening a tunnel to {host}:{port} (is AllowTcpForwarding on in sshd?): {e}"
            ),
        })?;
        Ok(Box::new(channel.into_stream()))
    }

    async fn docker(&self) -> Result<bollard::Docker, TransportError> {
        let handle = self.handle.clone();
        let node = self.node.clone();
        let transport = move |mut req: bollard::BollardRequest| {
            // A raw HTTP/1 connection sends no Host header by itself; the engine requires one.
            req.headers_mut().insert(
                hyper::header::HOST,
                hyper::header::HeaderValue::from_static("docker"),
            );
            let handle = handle.clone();
            let node = node.clone();
            async move {
                let io_err =
                    |what: &str, e: &dyn std::fmt::Display| bollard::errors::Error::IOError {
                        err: std::io::Error::other(format!("{node}: {what}: {e}")),
                    };
                let what = "opening /var/run/docker.sock over ssh";
                let channel = within(
                    CHANNEL_OPEN_PATIENCE,
                    handle.channel_open_direct_streamlocal("/var/run/docker.sock"),
                )
                .await
                .ok_or_else(|| {
                    io_err(
                        what,
                        &format!("no answer within {} s", CHANNEL_OPEN_PATIENCE.as_secs()),
                    )
                })?
                .map_err(|e| io_err(what, &e))?;
                // bollard bounds the wait for the answer's headers; the body
                // is read under the same bound for each byte that comes.
                let mut io = tokio_io_timeout::TimeoutStream::new(channel.into_stream());
                io.set_read_timeout(Some(ENGINE_PATIENCE));
                let io = hyper_util::rt::TokioIo::new(Box::pin(io));
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| io_err("http handshake with the engine", &e))?;
                tokio::spawn(conn);
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| io_err("engine request", &e))
            }
        };
        // API 1.41 is Docker 20.10's, the oldest engine clusterkit accepts; newer engines serve it too.
        let api = bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        bollard::Docker::connect_with_custom_transport(
            transport,
            Some("http://docker"),
            ENGINE_PATIENCE.as_secs(),
            &api,
        )
        .map_err(|e| TransportError::Docker {
            node: self.node.clone(),
            addr: self.addr(),
            reason: e.to_string(),
        })
    }
}

/// A command held open ([`Transport::exec_stream`]) with its session slot.
struct Held {
    stream: russh::ChannelStream<russh::client::Msg>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Held {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Held {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// `fut`'s result, or `None` when it takes longer than `bound`.
async fn within<T>(bound: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(bound, fut).await.ok()
}

/// How many connections [`connect_all`] opens at once, at most: past it,
/// nodes wait for a slot (their connect timeout starts with the attempt,
/// not the wait), so a hundred nodes are not a hundred handshakes and file
/// descriptors in flight on this machine and on a jump host. A node that
/// does not answer holds one slot for its timeout; the others go on.
pub const CONNECTING_AT_ONCE: usize = 32;

/// Connects to every node, [`CONNECTING_AT_ONCE`] at a time; each node's
/// result is reported, in the order given.
pub async fn connect_all(
    nodes: &[(String, SshTarget)],
    opts: &SshOptions,
) -> Vec<(String, Result<SshSession, TransportError>)> {
    let slots = tokio::sync::Semaphore::new(CONNECTING_AT_ONCE);
    let futures = nodes.iter().map(|(name, target)| {
        let slots = &slots;
        async move {
            let _slot = slots.acquire().await.expect("semaphore open");
            (name.clone(), SshSession::connect(name, target, opts).await)
        }
    });
    futures::future::join_all(futures).await
}
