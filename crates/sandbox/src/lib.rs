//! clusterkit-sandbox: a local cluster of real Linux hosts for users and for
//! every integration test, in containers on the local Docker Engine.
//!
//! Each node is a container running systemd, sshd and its own dockerd (its
//! `/var/lib/docker` on a volume), with `/dev/net/tun` and `/dev/fuse`, on a
//! user-defined bridge network with fixed addresses. The node image is built
//! from Debian packages ([`image::NODE`]): no registry is needed.
//!
//! ```no_run
//! use clusterkit_sandbox::{up, SandboxConfig};
//! let cfg = SandboxConfig::new("demo");
//! let summary = up(&cfg, &|msg| eprintln!("{msg}"))?;
//! println!("inventory: {}", summary.hosts_ini.display());
//! # Ok::<(), clusterkit_sandbox::Error>(())
//! ```

mod docker;
pub mod files;
pub mod image;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crate::docker::{docker, exists, inspect, labelled};

/// Label carried by every container, volume and network of a sandbox: its name.
pub const LABEL: &str = "io.clusterkit.sandbox";
const LABEL_NODE: &str = "io.clusterkit.node";
const LABEL_ADDRESS: &str = "io.clusterkit.address";
const LABEL_DIR: &str = "io.clusterkit.dir";
const LABEL_KIND: &str = "io.clusterkit.kind";
const PARTITION_CHAIN: &str = "CLUSTERKIT-PARTITION";

/// How long a node may take to answer on SSH and Docker after it starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The local Docker Engine does not answer.
    #[error("the Docker Engine does not answer ({detail}): start it (e.g. `systemctl start docker`) and check `docker info`")]
    EngineUnavailable {
        /// What the client said.
        detail: String,
    },
    /// A program the sandbox needs is not installed.
    #[error("`{tool}` is not installed: {install}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// How to install it.
        install: String,
    },
    /// A command failed.
    #[error("{command}: {status}: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A local I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A node did not become ready in time.
    #[error("{node}: {what} did not answer within {secs} s; look at `docker logs {container}` or `clusterkit sandbox ssh {node}`")]
    NotReady {
        /// Node name.
        node: String,
        /// Container name.
        container: String,
        /// What did not answer.
        what: String,
        /// How long we waited.
        secs: u64,
    },
    /// The request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// No such node in the sandbox.
    #[error("sandbox `{sandbox}` has no node `{node}`; its nodes: {nodes}")]
    UnknownNode {
        /// Sandbox name.
        sandbox: String,
        /// The node asked for.
        node: String,
        /// The nodes there are.
        nodes: String,
    },
    /// No such sandbox.
    #[error("there is no sandbox `{0}`: create it with `clusterkit sandbox up --name {0}`")]
    NoSandbox(String),
    /// Several nodes failed; each is listed.
    #[error("{} node(s) failed:\n{}", .0.len(), .0.iter().map(|(n, e)| format!("  {n}: {e}")).collect::<Vec<_>>().join("\n"))]
    Nodes(Vec<(String, Error)>),
}

/// What a sandbox's nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeKind {
    /// A server: systemd, sshd and its own Docker Engine (up to 50).
    #[default]
    Server,
    /// sshd alone (no init, no engine), a few MiB each: enough for `check`
    /// and the transport at scale (up to 200), not for building a cluster.
    SshdOnly,
}

impl NodeKind {
    /// The most nodes of this kind a sandbox holds.
    pub fn max_nodes(self) -> usize {
        match self {
            NodeKind::Server => 50,
            NodeKind::SshdOnly => 200,
        }
    }

    fn label(self) -> &'static str {
        match self {
            NodeKind::Server => "server",
            NodeKind::SshdOnly => "sshd",
        }
    }
}

/// What a sandbox looks like.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Its name: prefixes containers (`NAME-node1`), volumes and the network.
    pub name: String,
    /// Number of nodes.
    pub nodes: usize,
    /// The bridge network's subnet; node N gets address .(10+N).
    pub subnet: Ipv4Net,
    /// Where the key, `hosts.ini`, `clusterkit.toml` and `known_hosts` are written.
    pub dir: PathBuf,
    /// What the nodes run.
    pub kind: NodeKind,
    /// Run the sandbox's ACME CA beside the nodes ([`ca_up`]) and turn the
    /// ingress on in its `clusterkit.toml` (needs the service images).
    pub ca: bool,
}

impl SandboxConfig {
    /// Defaults: 3 nodes on 172.29.0.0/24, files under
    /// `$XDG_DATA_HOME/clusterkit/sandboxes/NAME` (or `~/.local/share/...`).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            nodes: 3,
            subnet: "172.29.0.0/24".parse().expect("valid"),
            dir: default_dir(name),
            kind: NodeKind::Server,
            ca: false,
        }
    }

    /// The nodes this config describes.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        (1..=self.nodes)
            .map(|i| NodeInfo {
                index: i,
                hostname: format!("node{i}"),
                container: format!("{}-node{i}", self.name),
                address: Ipv4Addr::from(u32::from(self.subnet.network()) + 10 + i as u32),
                kind: self.kind,
            })
            .collect()
    }

    fn network(&self) -> String {
        format!("{}-net", self.name)
    }
}

/// The default directory of a sandbox's files.
pub fn default_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("clusterkit/sandboxes").join(name)
}

/// One node of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// 1-based index.
    pub index: usize,
    /// Host name inside the node, and its name in the inventory (`node1`).
    pub hostname: String,
    /// Container name (`NAME-node1`).
    pub container: String,
    /// Address on the sandbox network.
    pub address: Ipv4Addr,
    /// What it runs.
    pub kind: NodeKind,
}

/// What `up` made.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// The node image.
    pub image: String,
    /// The private key authorised on every node (mode 0600).
    pub key: PathBuf,
    /// The Ansible inventory.
    pub hosts_ini: PathBuf,
    /// The clusterkit config.
    pub config: PathBuf,
    /// The nodes' host keys.
    pub known_hosts: PathBuf,
}

/// The nodes (name, address, container) and the files written.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for n in &self.nodes {
            writeln!(
                f,
                "  {:<8} {:<16} container {}",
                n.hostname, n.address, n.container
            )?;
        }
        writeln!(
            f,
            "\nfiles:\n  {}\n  {}\n  {} (mode 0600)\n  {}",
            self.config.display(),
            self.hosts_ini.display(),
            self.key.display(),
            self.known_hosts.display()
        )
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Capabilities the engine cannot grant (missing from our bounding set), to
/// drop after `--cap-add ALL`: `--privileged` fails on engines whose own
/// bounding set lacks one (CAP_SYS_RESOURCE here).
fn caps_to_drop() -> Vec<String> {
    let Ok(bounding) = caps::read(None, caps::CapSet::Bounding) else {
        return Vec::new();
    };
    let mut drop: Vec<String> = caps::all()
        .difference(&bounding)
        .map(|c| c.to_string().trim_start_matches("CAP_").to_string())
        .collect();
    drop.sort();
    drop
}

fn daemon_json(index: usize) -> String {
    // Each inner engine gets its own bridge subnet, and local networks from a
    // pool clear of the sandbox network, the default mesh and the swarm pool.
    format!(
        "{{\n  \"bip\": \"172.31.{index}.1/24\",\n  \"default-address-pools\": [{{\"base\": \"172.20.0.0/14\", \"size\": 24}}],\n  \"storage-driver\": \"overlay2\",\n  \"log-opts\": {{\"max-size\": \"10m\", \"max-file\": \"3\"}}\n}}\n"
    )
}

/// Runs `f` for every node at once; every failure is reported, none hides another.
fn each_node<T: Send>(
    nodes: &[NodeInfo],
    f: impl Fn(&NodeInfo) -> Result<T, Error> + Sync,
) -> Result<Vec<T>, Error> {
    let results: Vec<Result<T, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes.iter().map(|n| s.spawn(|| f(n))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("node thread panicked"))
            .collect()
    });
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (n, r) in nodes.iter().zip(results) {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => failed.push((n.hostname.clone(), e)),
        }
    }
    if failed.is_empty() {
        Ok(ok)
    } else {
        Err(Error::Nodes(failed))
    }
}

/// The sandbox network's IPv6 subnet: a unique local /64 made of the IPv4
/// subnet's numbers, `172.29.250.0/24` → `fd00:172:29:250::/64`.
pub fn ipv6_subnet(v4: ipnet::Ipv4Net) -> String {
    let [a, b, c, _] = v4.network().octets();
    format!("fd00:{a}:{b}:{c}::/64")
}

/// Creates (or completes, or just checks) a sandbox and writes its files.
///
/// Idempotent: existing nodes are kept (started if stopped), missing ones are
/// created, the key is reused. Waits until sshd and dockerd answer on every node.
pub fn up(cfg: &SandboxConfig, progress: &(dyn Fn(&str) + Sync)) -> Result<Summary, Error> {
    let max = cfg.kind.max_nodes();
    if cfg.nodes == 0 || cfg.nodes > max {
        return Err(Error::Conflict(format!(
            "a sandbox of this kind has 1 to {max} nodes, not {}",
            cfg.nodes
        )));
    }
    if cfg.subnet.prefix_len() > 26 {
        return Err(Error::Conflict(format!(
            "sandbox subnet {} is too small: use a /24",
            cfg.subnet
        )));
    }
    docker::check_engine()?;
    let existing = labelled("container", LABEL, &cfg.name)?;
    let wanted: Vec<NodeInfo> = cfg.node_infos();
    if let Some(extra) = existing
        .iter()
        .find(|c| !wanted.iter().any(|n| &n.container == *c))
    {
        return Err(Error::Conflict(format!(
            "sandbox `{}` already has {} node(s) ({extra} among them): pass --nodes {} or run `clusterkit sandbox down --name {}` first",
            cfg.name,
            existing.len(),
            existing.len(),
            cfg.name
        )));
    }
    if !existing.is_empty() {
        if let Some(other) = nodes(&cfg.name)?.iter().find(|n| n.kind != cfg.kind) {
            return Err(Error::Conflict(format!(
                "sandbox `{}` has nodes of the other kind ({} among them): run `clusterkit sandbox down --name {}` first",
                cfg.name, other.hostname, cfg.name
            )));
        }
    }
    let image = image::ensure(&image::NODE, progress)?;

    std::fs::create_dir_all(&cfg.dir).map_err(io(format!("creating {}", cfg.dir.display())))?;
    let dir =
        std::fs::canonicalize(&cfg.dir).map_err(io(format!("resolving {}", cfg.dir.display())))?;
    let key = dir.join("id_ed25519");
    let public = ensure_key(&key)?;

    let network = cfg.network();
    if exists("network", &network) {
        let subnet = inspect(
            "network",
            &network,
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        )?;
        let subnet = subnet
            .split_whitespace()
            .find(|s| !s.contains(':'))
            .unwrap_or_default()
            .to_string();
        if subnet != cfg.subnet.to_string() {
            return Err(Error::Conflict(format!(
                "network {network} exists with subnet {subnet}, not {}: pass --subnet {subnet}, or `clusterkit sandbox down --name {}` first",
                cfg.subnet, cfg.name
            )));
        }
    } else {
        let v6 = ipv6_subnet(cfg.subnet);
        progress(&format!(
            "creating network {network} ({}, {v6})",
            cfg.subnet
        ));
        let gateway = Ipv4Addr::from(u32::from(cfg.subnet.network()) + 1);
        // IPv6 too (a unique local prefix made of the IPv4 subnet's numbers):
        // nodes have an address of each family, as servers often do, so the
        // firewall and `doctor` are tried on both.
        docker(&[
            "network", "create", "--driver", "bridge",
            "--subnet", &cfg.subnet.to_string(), "--gateway", &gateway.to_string(),
            "--ipv6", "--subnet", &v6,
            "--label", &format!("{LABEL}={}", cfg.name), &network,
        ])
        .map_err(|e| match e {
            Error::Command { stderr, .. } if stderr.contains("overlap") => Error::Conflict(format!(
                "subnet {} overlaps a network of this engine ({stderr}): pick another with --subnet",
                cfg.subnet
            )),
            e => e,
        })?;
    }

    let drop = caps_to_drop();
    each_node(&wanted, |n| match cfg.kind {
        NodeKind::Server => create_or_start(cfg, n, &image, &dir, &public, &drop, progress),
        NodeKind::SshdOnly => create_sshd_only(cfg, n, &image, &dir, &public, progress),
    })?;
    each_node(&wanted, |n| wait_ready(n, progress))?;

    // Host keys, read through the engine, recorded for strict checking.
    let host_keys = each_node(&wanted, |n| {
        let key = docker(&[
            "exec",
            &n.container,
            "cat",
            "/etc/ssh/ssh_host_ed25519_key.pub",
        ])?;
        Ok((n.clone(), key.trim().to_string()))
    })?;
    let known_hosts = dir.join("known_hosts");
    write(&known_hosts, &files::known_hosts(&host_keys), 0o644)?;
    // clusterkit's own known_hosts beside the config: strict checking works from the first run.
    let state = dir.join(clusterkit_core::state::STATE_DIR);
    clusterkit_core::state::ensure_private_dir(&state)
        .map_err(io(format!("creating {}", state.display())))?;
    write(
        &state.join("known_hosts"),
        &files::known_hosts(&host_keys),
        0o600,
    )?;
    let hosts_ini = dir.join("hosts.ini");
    write(
        &hosts_ini,
        &files::hosts_ini(
            &cfg.name,
            &cfg.subnet.to_string(),
            &key.display().to_string(),
            &wanted,
        ),
        0o644,
    )?;
    write(&dir.join("app.yml"), files::EXAMPLE_STACK, 0o644)?;
    let ca = if cfg.ca {
        Some(ca_up(cfg, &dir, progress)?)
    } else {
        None
    };
    let config = dir.join("clusterkit.toml");
    write(
        &config,
        &files::clusterkit_toml(&cfg.name, ca.as_ref()),
        0o644,
    )?;
    // The files must describe a valid cluster: check them with clusterkit's own validation.
    if let Err(e) = clusterkit_core::spec::load(Some(&config), None) {
        return Err(Error::Conflict(format!(
            "internal error: the sandbox's clusterkit.toml does not validate: {e:?}"
        )));
    }
    Ok(Summary {
        nodes: wanted,
        image,
        key,
        hosts_ini,
        config,
        known_hosts,
    })
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {}", tmp.display())))
}

/// Makes the sandbox's ed25519 key pair unless it exists; returns the public key line.
fn ensure_key(key: &Path) -> Result<String, Error> {
    use ssh_key::{Algorithm, LineEnding, PrivateKey};
    if let Ok(text) = std::fs::read_to_string(key) {
        let private = PrivateKey::from_openssh(&text).map_err(|e| {
            Error::Conflict(format!(
                "{} is not an OpenSSH private key ({e}): remove it and run `sandbox up` again",
                key.display()
            ))
        })?;
        return private
            .public_key()
            .to_openssh()
            .map_err(|e| Error::Conflict(format!("encoding the public key: {e}")));
    }
    let private = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| Error::Conflict(format!("generating a key: {e}")))?;
    let pem = private
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::Conflict(format!("encoding the key: {e}")))?;
    write(key, &pem, 0o600)?;
    let mut public = private
        .public_key()
        .to_openssh()
        .map_err(|e| Error::Conflict(format!("encoding the public key: {e}")))?;
    public.push_str(" clusterkit-sandbox\n");
    write(&key.with_extension("pub"), &public, 0o644)?;
    Ok(public.trim().to_string())
}

fn create_or_start(
    cfg: &SandboxConfig,
    n: &NodeInfo,
    image: &str,
    dir: &Path,
    public_key: &str,
    drop: &[String],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), Error> {
    if exists("container", &n.container) {
        let running = inspect("container", &n.container, "{{.State.Running}}")?;
        let current = inspect("container", &n.container, "{{.Config.Image}}")?;
        if current != image {
            progress(&format!(
                "{}: runs image {current}, not {image}; `sandbox down` and `up` to rebuild it",
                n.hostname
            ));
        }
        if running != "true" {
            progress(&format!("{}: starting", n.hostname));
            docker(&["start", &n.container])?;
        }
        return Ok(());
    }
    progress(&format!(
        "{}: creating {} at {}",
        n.hostname, n.container, n.address
    ));
    let volume = format!("{}-docker", n.container);
    let label = format!("{LABEL}={}", cfg.name);
    // A node made now starts from nothing: an engine's data left by a node of
    // the same name whose container was removed by hand (its swarm state,
    // measured, makes the new node refuse `swarm init`) goes first.
    if exists("volume", &volume) {
        progress(&format!(
            "{}: removing {volume}, left by a removed node of the same name",
            n.hostname
        ));
        docker(&["volume", "rm", "-f", &volume])?;
    }
    docker(&["volume", "create", "--label", &label, &volume])?;
    let mut args: Vec<String> = vec![
        "create".into(),
        "--name".into(),
        n.container.clone(),
        "--hostname".into(),
        n.hostname.clone(),
        "--network".into(),
        cfg.network(),
        "--ip".into(),
        n.address.to_string(),
        "--label".into(),
        label,
        "--label".into(),
        format!("{LABEL_NODE}={}", n.hostname),
        "--label".into(),
        format!("{LABEL_ADDRESS}={}", n.address),
        "--label".into(),
        format!("{LABEL_DIR}={}", dir.display()),
        "--cap-add".into(),
        "ALL".into(),
    ];
    for c in drop {
        args.extend(["--cap-drop".into(), c.clone()]);
    }
    args.extend(
        [
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--device",
            "/dev/net/tun",
            "--device",
            "/dev/fuse",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            // cgroup v1: nested dockerd needs the hierarchy writable; systemd
            // keeps to the container's own subtree.
            "--cgroupns",
            "host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--stop-signal",
            "SIGRTMIN+3",
        ]
        .map(String::from),
    );
    args.extend([
        "-v".into(),
        format!("{volume}:/var/lib/docker"),
        image.to_string(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs)?;
    // Files the node needs from its first boot: the authorised key and the
    // engine's settings, copied in before it starts.
    let staging =
        std::env::temp_dir().join(format!("clusterkit-{}-{}", n.container, std::process::id()));
    std::fs::create_dir_all(&staging).map_err(io(format!("creating {}", staging.display())))?;
    let keys = staging.join("authorized_keys");
    write(&keys, &format!("{public_key}\n"), 0o600)?;
    let daemon = staging.join("daemon.json");
    write(&daemon, &daemon_json(n.index), 0o644)?;
    let copied = docker(&[
        "cp",
        &keys.display().to_string(),
        &format!("{}:/root/.ssh/authorized_keys", n.container),
    ])
    .and_then(|_| {
        docker(&[
            "cp",
            &daemon.display().to_string(),
            &format!("{}:/etc/docker/daemon.json", n.container),
        ])
    });
    let _ = std::fs::remove_dir_all(&staging);
    copied?;
    docker(&["start", &n.container])?;
    Ok(())
}

/// What an sshd-only node runs: the authorised key from the environment
/// (a public key), its own host key made at first start, then sshd alone.
const SSHD_ONLY: &str = "set -e; mkdir -p /run/sshd /root/.ssh; \
printf '%s\\n' \"$CLUSTERKIT_KEY\" > /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys; \
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key; \
exec /usr/sbin/sshd -D -e";

/// Creates (or starts) an sshd-only node: the node image with sshd as its
/// only process, no privileges beyond a container's, no volume.
fn create_sshd_only(
    cfg: &SandboxConfig,
    n: &NodeInfo,
    image: &str,
    dir: &Path,
    public_key: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), Error> {
    if exists("container", &n.container) {
        if inspect("container", &n.container, "{{.State.Running}}")? != "true" {
            progress(&format!("{}: starting", n.hostname));
            docker(&["start", &n.container])?;
        }
        return Ok(());
    }
    let label = format!("{LABEL}={}", cfg.name);
    let node = format!("{LABEL_NODE}={}", n.hostname);
    let address = format!("{LABEL_ADDRESS}={}", n.address);
    let at = format!("{LABEL_DIR}={}", dir.display());
    let kind = format!("{LABEL_KIND}={}", n.kind.label());
    let key = format!("CLUSTERKIT_KEY={public_key}");
    let ip = n.address.to_string();
    docker(&[
        "run",
        "-d",
        "--name",
        &n.container,
        "--hostname",
        &n.hostname,
        "--network",
        &cfg.network(),
        "--ip",
        &ip,
        "--label",
        &label,
        "--label",
        &node,
        "--label",
        &address,
        "--label",
        &at,
        "--label",
        &kind,
        "--tmpfs",
        "/run",
        "-e",
        &key,
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        SSHD_ONLY,
    ])?;
    Ok(())
}

/// Refuses `what` on sshd-only nodes: they have no engine and no firewall.
fn servers_only(name: &str, nodes: &[NodeInfo], what: &str) -> Result<(), Error> {
    match nodes.iter().find(|n| n.kind == NodeKind::SshdOnly) {
        Some(n) => Err(Error::Conflict(format!(
            "{} of sandbox `{name}` runs sshd only (no engine, no firewall): cannot {what} there; \
             a sandbox of servers is `clusterkit sandbox up` without --sshd-only",
            n.hostname
        ))),
        None => Ok(()),
    }
}

/// Whether sshd answers with its banner at `addr:22`.
fn ssh_answers(addr: Ipv4Addr) -> bool {
    let sock = SocketAddr::from((addr, 22));
    let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// Whether the node's dockerd answers.
fn docker_answers(container: &str) -> bool {
    Command::new("docker")
        .args([
            "exec",
            container,
            "docker",
            "info",
            "--format",
            "{{.ServerVersion}}",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until sshd and dockerd answer on a node.
fn wait_ready(n: &NodeInfo, progress: &(dyn Fn(&str) + Sync)) -> Result<(), Error> {
    let start = Instant::now();
    let checks: &[(&str, &dyn Fn() -> bool)] = &[
        ("sshd", &|| ssh_answers(n.address)),
        ("dockerd", &|| docker_answers(&n.container)),
    ];
    let checks = match n.kind {
        NodeKind::Server => checks,
        NodeKind::SshdOnly => &checks[..1],
    };
    for (what, check) in checks {
        while !check() {
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::NotReady {
                    node: n.hostname.clone(),
                    container: n.container.clone(),
                    what: (*what).into(),
                    secs: READY_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    progress(&format!(
        "{}: ready ({}) in {:.1} s",
        n.hostname,
        checks
            .iter()
            .map(|(what, _)| *what)
            .collect::<Vec<_>>()
            .join(", "),
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The sandbox's ACME CA, as [`ca_up`] started it.
#[derive(Debug, Clone)]
pub struct Ca {
    /// Its ACME directory (`https://ADDRESS:14000/dir`).
    pub directory: String,
    /// The root of its API's certificate, copied beside the config
    /// (`pebble-api-root.pem`): what the issuer trusts to talk to it.
    pub api_root: PathBuf,
    /// Where the root of what it issues is served (`https://ADDRESS:15000/roots/0`;
    /// a new one at each start of the CA).
    pub roots: String,
    /// Its address on the sandbox network.
    pub address: Ipv4Addr,
}

/// The domain the sandbox's resolver answers for: every name under it is
/// every node's address.
pub const CA_DOMAIN: &str = "clusterkit.test";

/// Marks the CA's container (not a node: `up`'s node count ignores it).
const LABEL_CA: &str = "io.clusterkit.sandbox-ca";

/// Starts (or keeps) the sandbox's ACME CA: Pebble, validating for real
/// (HTTP-01 on port 80 of the name's addresses), resolving every name
/// under [`CA_DOMAIN`] to every node through dnsmasq, at address .250 of
/// the sandbox network. Copies its API's root beside the config.
pub fn ca_up(
    cfg: &SandboxConfig,
    dir: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Ca, Error> {
    let image = crate::image::PEBBLE.alias_tag();
    if !exists("image", &image) {
        return Err(Error::Conflict(format!(
            "the sandbox's ACME CA needs the image {image}: run `clusterkit sandbox build-images` first"
        )));
    }
    let container = format!("{}-ca", cfg.name);
    let address = Ipv4Addr::from(u32::from(cfg.subnet.network()) + 250);
    let addresses = cfg
        .node_infos()
        .iter()
        .map(|n| n.address.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let wanted_env = format!("CLUSTERKIT_TEST_ADDRESSES={addresses}");
    if exists("container", &container) {
        let env = inspect("container", &container, "{{json .Config.Env}}")?;
        if !env.contains(&wanted_env) {
            // Another node count: its resolver must answer the new set.
            docker(&["rm", "-f", &container])?;
        }
    }
    if !exists("container", &container) {
        progress(&format!(
            "starting the sandbox's ACME CA (Pebble) at {address}, resolving *.{CA_DOMAIN} to the nodes"
        ));
        let ip = address.to_string();
        docker(&[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            &cfg.network(),
            "--ip",
            &ip,
            "--label",
            &format!("{LABEL_CA}={}", cfg.name),
            "-e",
            &format!("CLUSTERKIT_TEST_DOMAIN={CA_DOMAIN}"),
            "-e",
            &wanted_env,
            "-e",
            &format!("CLUSTERKIT_PEBBLE_ADDRESS={ip}"),
            // Validate at once (Pebble waits up to 15 s by default).
            "-e",
            "PEBBLE_VA_NOSLEEP=1",
            &image,
        ])?;
    } else if inspect("container", &container, "{{.State.Running}}")? != "true" {
        docker(&["start", &container])?;
    }
    let started = std::time::Instant::now();
    let root = loop {
        match docker(&["exec", &container, "cat", "/var/lib/pebble/api-root.pem"]) {
            Ok(pem) if pem.contains("BEGIN CERTIFICATE") => break pem,
            _ if started.elapsed() > std::time::Duration::from_secs(30) => {
                let logs = docker(&["logs", "--tail", "20", &container]).unwrap_or_default();
                return Err(Error::Conflict(format!(
                    "the sandbox's ACME CA ({container}) made no API root in 30 s: {logs}"
                )));
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(300)),
        }
    };
    let api_root = dir.join("pebble-api-root.pem");
    write(&api_root, &format!("{}\n", root.trim()), 0o644)?;
    Ok(Ca {
        directory: format!("https://{address}:14000/dir"),
        api_root,
        roots: format!("https://{address}:15000/roots/0"),
        address,
    })
}

/// The nodes of an existing sandbox, from the engine's labels.
pub fn nodes(name: &str) -> Result<Vec<NodeInfo>, Error> {
    let containers = labelled("container", LABEL, name)?;
    if containers.is_empty() {
        return Err(Error::NoSandbox(name.to_string()));
    }
    let mut out = Vec::new();
    for c in containers {
        let labels = inspect(
            "container",
            &c,
            &format!("{{{{index .Config.Labels \"{LABEL_NODE}\"}}}} {{{{index .Config.Labels \"{LABEL_ADDRESS}\"}}}} {{{{index .Config.Labels \"{LABEL_KIND}\"}}}}"),
        )?;
        let mut it = labels.split_whitespace();
        let (Some(host), Some(addr)) = (it.next(), it.next()) else {
            continue;
        };
        let kind = match it.next() {
            Some("sshd") => NodeKind::SshdOnly,
            _ => NodeKind::Server,
        };
        let Ok(address) = addr.parse() else { continue };
        let index = host.trim_start_matches("node").parse().unwrap_or(0);
        out.push(NodeInfo {
            index,
            hostname: host.to_string(),
            container: c,
            address,
            kind,
        });
    }
    out.sort_by_key(|n| n.index);
    Ok(out)
}

fn find(name: &str, node: &str) -> Result<(NodeInfo, Vec<NodeInfo>), Error> {
    let all = nodes(name)?;
    match all
        .iter()
        .find(|n| n.hostname == node || n.container == node)
    {
        Some(n) => Ok((n.clone(), all)),
        None => Err(Error::UnknownNode {
            sandbox: name.to_string(),
            node: node.to_string(),
            nodes: all
                .iter()
                .map(|n| n.hostname.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Containers.
    pub containers: Vec<String>,
    /// Volumes.
    pub volumes: Vec<String>,
    /// Networks.
    pub networks: Vec<String>,
}

/// Removes every container, volume and network of the sandbox, and the files
/// `up` wrote in `dir`. Removing a sandbox that does not exist does nothing.
pub fn down(name: &str, dir: Option<&Path>) -> Result<Removed, Error> {
    docker::check_engine()?;
    let ca = labelled("container", LABEL_CA, name)?;
    if !ca.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ca.iter().map(String::as_str));
        docker(&args)?;
    }
    let containers = labelled("container", LABEL, name)?;
    let dir = dir.map(Path::to_path_buf).or_else(|| {
        containers
            .first()
            .and_then(|c| {
                inspect(
                    "container",
                    c,
                    &format!("{{{{index .Config.Labels \"{LABEL_DIR}\"}}}}"),
                )
                .ok()
            })
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    });
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        docker(&args)?;
    }
    let volumes = labelled("volume", LABEL, name)?;
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        docker(&args)?;
    }
    let networks = labelled("network", LABEL, name)?;
    for n in &networks {
        docker(&["network", "rm", n])?;
    }
    if let Some(dir) = dir {
        for f in [
            "id_ed25519",
            "id_ed25519.pub",
            "hosts.ini",
            "clusterkit.toml",
            "known_hosts",
        ] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let _ = std::fs::remove_dir_all(dir.join(clusterkit_core::state::STATE_DIR));
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(Removed {
        containers,
        volumes,
        networks,
    })
}

/// One node's state, as `sandbox status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeInfo,
    /// The container's state (`running`, `exited`...).
    pub state: String,
    /// sshd answers.
    pub ssh: bool,
    /// dockerd answers.
    pub docker: bool,
    /// Cut off from the other nodes by `partition`.
    pub partitioned: bool,
}

/// Every node's state as a table: `NODE ADDRESS STATE SSH DOCKER PARTITIONED`.
#[derive(Debug, Clone, Copy)]
pub struct StatusTable<'a>(pub &'a [NodeStatus]);

impl StatusTable<'_> {
    /// Every node answers over SSH and its engine, and none is cut off.
    pub fn healthy(&self) -> bool {
        self.0
            .iter()
            .all(|s| s.ssh && (s.docker || s.node.kind == NodeKind::SshdOnly) && !s.partitioned)
    }
}

impl std::fmt::Display for StatusTable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = |f: &mut std::fmt::Formatter<'_>, c: [&str; 6]| {
            writeln!(
                f,
                "{:<8} {:<16} {:<10} {:<5} {:<7} {}",
                c[0], c[1], c[2], c[3], c[4], c[5]
            )
        };
        row(
            f,
            ["NODE", "ADDRESS", "STATE", "SSH", "DOCKER", "PARTITIONED"],
        )?;
        let yn = |b: bool| if b { "yes" } else { "no" };
        for s in self.0 {
            let address = s.node.address.to_string();
            let (ssh, cut) = (yn(s.ssh), yn(s.partitioned));
            let docker = match s.node.kind {
                NodeKind::Server => yn(s.docker),
                NodeKind::SshdOnly => "-",
            };
            row(f, [&s.node.hostname, &address, &s.state, ssh, docker, cut])?;
        }
        Ok(())
    }
}

/// "N container(s), N volume(s), N network(s)".
impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} container(s), {} volume(s), {} network(s)",
            self.containers.len(),
            self.volumes.len(),
            self.networks.len()
        )
    }
}

/// The state of every node.
pub fn status(name: &str) -> Result<Vec<NodeStatus>, Error> {
    let all = nodes(name)?;
    each_node(&all, |n| {
        let state = inspect("container", &n.container, "{{.State.Status}}")?;
        let running = state == "running";
        Ok(NodeStatus {
            node: n.clone(),
            ssh: running && ssh_answers(n.address),
            docker: running && n.kind == NodeKind::Server && docker_answers(&n.container),
            partitioned: running
                && n.kind == NodeKind::Server
                && Command::new("docker")
                    .args(["exec", &n.container, "iptables", "-S", PARTITION_CHAIN])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
            state,
        })
    })
}

/// Cuts the power of a node: its container is killed, as a server losing power.
pub fn stop(name: &str, node: &str) -> Result<(), Error> {
    let (n, _) = find(name, node)?;
    docker(&["kill", "--signal", "KILL", &n.container])?;
    refresh_dns(name)
}

/// The sandbox's resolver (with its CA) answers the nodes that run: a
/// powered-off node leaves its names, as a health-checked DNS would.
fn refresh_dns(name: &str) -> Result<(), Error> {
    let ca = format!("{name}-ca");
    if !exists("container", &ca) || inspect("container", &ca, "{{.State.Running}}")? != "true" {
        return Ok(());
    }
    let mut args = vec!["exec".to_string(), ca, "sandbox-dns".to_string()];
    for n in nodes(name)? {
        if inspect("container", &n.container, "{{.State.Running}}")? == "true" {
            args.push(n.address.to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args)?;
    Ok(())
}

/// Powers a stopped node on and waits until sshd and dockerd answer.
pub fn start(name: &str, node: &str, progress: &(dyn Fn(&str) + Sync)) -> Result<(), Error> {
    let (n, _) = find(name, node)?;
    docker(&["start", &n.container])?;
    wait_ready(&n, progress)?;
    refresh_dns(name)
}

/// Cuts a node off from the other nodes (both directions), keeping it
/// reachable from this machine. Undone by [`heal`] or by a power cycle.
pub fn partition(name: &str, node: &str) -> Result<(), Error> {
    let (n, all) = find(name, node)?;
    servers_only(name, std::slice::from_ref(&n), "cut a node off")?;
    let mut script = format!(
        "set -e\niptables -N {PARTITION_CHAIN} 2>/dev/null || iptables -F {PARTITION_CHAIN}\n"
    );
    for other in all.iter().filter(|o| o.container != n.container) {
        script.push_str(&format!(
            "iptables -A {PARTITION_CHAIN} -s {a} -j DROP\niptables -A {PARTITION_CHAIN} -d {a} -j DROP\n",
            a = other.address
        ));
    }
    for chain in ["INPUT", "OUTPUT", "FORWARD"] {
        script.push_str(&format!(
            "iptables -C {chain} -j {PARTITION_CHAIN} 2>/dev/null || iptables -I {chain} -j {PARTITION_CHAIN}\n"
        ));
    }
    docker(&["exec", &n.container, "sh", "-c", &script])?;
    Ok(())
}

/// Undoes [`partition`]; healing a node that is not cut off does nothing.
pub fn heal(name: &str, node: &str) -> Result<(), Error> {
    let (n, _) = find(name, node)?;
    let script = format!(
        "for c in INPUT OUTPUT FORWARD; do while iptables -D $c -j {PARTITION_CHAIN} 2>/dev/null; do :; done; done\n\
         iptables -F {PARTITION_CHAIN} 2>/dev/null || true\niptables -X {PARTITION_CHAIN} 2>/dev/null || true\n"
    );
    docker(&["exec", &n.container, "sh", "-c", &script])?;
    Ok(())
}

/// The directory holding a sandbox's key and files, from its labels.
pub fn dir_of(name: &str) -> Result<PathBuf, Error> {
    let all = nodes(name)?;
    let dir = inspect(
        "container",
        &all[0].container,
        &format!("{{{{index .Config.Labels \"{LABEL_DIR}\"}}}}"),
    )?;
    Ok(PathBuf::from(dir))
}

/// An `ssh` command to a node with the sandbox's key and strict host-key
/// checking against the recorded host keys; `args` are the remote command.
pub fn ssh_command(name: &str, node: &str, args: &[String]) -> Result<Command, Error> {
    let (n, _) = find(name, node)?;
    let dir = dir_of(name)?;
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(dir.join("id_ed25519"))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            dir.join("known_hosts").display()
        ))
        .arg(format!("root@{}", n.address))
        .args(args);
    Ok(cmd)
}

/// Copies images from the local engine into every node's engine (save once,
/// load on every node at once): what an air-gapped cluster needs too.
pub fn load_images(
    name: &str,
    images: &[String],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), Error> {
    let all = nodes(name)?;
    servers_only(name, &all, "load images")?;
    for i in images {
        if !exists("image", i) {
            return Err(Error::Conflict(format!(
                "image {i} is not in the local engine: build or load it first (`docker images` lists what is there)"
            )));
        }
    }
    let archive =
        std::env::temp_dir().join(format!("clusterkit-images-{}.tar", std::process::id()));
    let mut args = vec![
        "save".to_string(),
        "-o".into(),
        archive.display().to_string(),
    ];
    args.extend(images.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    progress(&format!("saving {}", images.join(" ")));
    docker(&refs)?;
    let result = each_node(&all, |n| {
        let file =
            std::fs::File::open(&archive).map_err(io(format!("reading {}", archive.display())))?;
        let out = Command::new("docker")
            .args(["exec", "-i", &n.container, "docker", "load"])
            .stdin(Stdio::from(file))
            .output()
            .map_err(io("running docker exec"))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("docker exec -i {} docker load", n.container),
                status: out.status.to_string(),
                stderr: docker::tail(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        progress(&format!("{}: loaded {}", n.hostname, images.join(" ")));
        Ok(())
    });
    let _ = std::fs::remove_file(&archive);
    result.map(|_| ())
}

/// Builds the service images (Prometheus, node-exporter, rclone) unless
/// cached; returns their stable names (`clusterkit/prometheus:sid`...).
pub fn build_service_images(progress: &(dyn Fn(&str) + Sync)) -> Result<Vec<String>, Error> {
    docker::check_engine()?;
    image::SERVICES
        .iter()
        .map(|r| image::ensure(r, progress).map(|_| r.alias_tag()))
        .collect()
}

#[cfg(test)]
mod tests;
