//! [`ClusterSpec`]: the validated model of the cluster that every other crate takes.
//!
//! [`build`] turns what was read (a `clusterkit.toml`, an Ansible inventory, or
//! both) into a spec, finding every problem at once; [`load`] does the same from
//! files and the state directory.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::alloc::{self, allocate};
use crate::config::{located, opt, ConfigFile};
use crate::diag::{did_you_mean, Problem, Problems, SpecError};
use crate::inventory::{Format, Inventory};
use crate::names::{check_address, NodeName, Port};
use crate::source::{Located, SourceFile};
use crate::state::State;

/// A node as written, in an inventory or in `[[nodes]]`, before checking.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInput {
    /// Its name.
    pub name: Located<String>,
    /// SSH address (`ansible_host`, or the name).
    pub address: Located<String>,
    /// SSH user.
    pub user: Option<Located<String>>,
    /// SSH port, as text.
    pub port: Option<Located<String>>,
    /// SSH private key file.
    pub key: Option<Located<String>>,
    /// Use sudo.
    pub become_: Option<Located<bool>>,
    /// Pinned mesh address, as text.
    pub mesh_address: Option<Located<String>>,
    /// `manager` or `worker`.
    pub role: Option<Located<String>>,
    /// Holds storage (`true`/`false` as text).
    pub storage: Option<Located<String>>,
    /// A jump host, `[user@]host[:port]` (ProxyJump).
    pub jump: Option<Located<String>>,
}

/// A host the SSH connection to a node goes through (ssh's ProxyJump): the
/// connection to the node is carried inside one to the jump host, so the
/// node needs no route from this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jump {
    /// Address or host name.
    pub host: String,
    /// Port.
    pub port: Port,
    /// User (default: the node's).
    pub user: String,
}

impl Jump {
    /// Reads `[user@]host[:port]`; `user` is the default user.
    pub fn parse(text: &str, user: &str) -> Result<Self, crate::Invalid> {
        let t = text.trim();
        if t.is_empty() {
            return Err("the jump host is empty".into());
        }
        if t.contains(',') {
            return Err((format!("`{t}` chains several jump hosts: clusterkit takes one")).into());
        }
        let t = t.strip_prefix("ssh://").unwrap_or(t);
        let (user, rest) = match t.split_once('@') {
            Some((u, r)) if !u.is_empty() => (u.to_string(), r),
            _ => (user.to_string(), t),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => {
                let port = p
                    .parse::<i64>()
                    .ok()
                    .and_then(|p| Port::new(p).ok())
                    .ok_or_else(|| format!("`{p}` is not a port"))?;
                (h.to_string(), port)
            }
            _ => (rest.to_string(), Port::new(22).expect("22 is a port")),
        };
        if host.is_empty() {
            return Err((format!("`{text}` names no host")).into());
        }
        Ok(Self { host, port, user })
    }
}

/// How clusterkit reaches a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    /// Address or host name.
    pub host: String,
    /// Port.
    pub port: Port,
    /// User.
    pub user: String,
    /// Private key file; `None` means the agent, then the usual key files.
    pub key: Option<PathBuf>,
    /// Commands go through `sudo`.
    #[serde(rename = "become")]
    pub become_: bool,
    /// Reached through this host, if any.
    pub jump: Option<Jump>,
    /// The user was written in the inventory or config (else `~/.ssh/config` may set it).
    #[serde(skip)]
    pub user_given: bool,
    /// The port was written in the inventory or config.
    #[serde(skip)]
    pub port_given: bool,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}",
            self.user,
            crate::names::host_port(&self.host, self.port)
        )?;
        if let Some(j) = &self.jump {
            write!(
                f,
                " via {}@{}",
                j.user,
                crate::names::host_port(&j.host, j.port)
            )?;
        }
        Ok(())
    }
}

/// A node's part in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwarmRole {
    /// Takes part in Raft; can lead.
    Manager,
    /// Runs tasks only.
    Worker,
}

/// A server of the cluster, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its name.
    pub name: NodeName,
    /// How to reach it.
    pub ssh: SshTarget,
    /// Its address in the mesh.
    pub mesh_address: Ipv4Addr,
    /// Its swarm role.
    pub role: SwarmRole,
    /// Whether it holds storage.
    pub storage: bool,
}

/// Which WireGuard implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WgBackend {
    /// Kernel where the module is present, else userspace.
    Auto,
    /// The kernel module.
    Kernel,
    /// clusterkit's userspace implementation (boringtun).
    Userspace,
}

/// The mesh's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshSpec {
    /// Private network.
    pub cidr: Ipv4Net,
    /// UDP listen port.
    pub port: Port,
    /// Interface MTU.
    pub mtu: u16,
    /// Keepalive seconds, 0 for none.
    pub keepalive: u16,
    /// Interface name.
    pub interface: String,
    /// Implementation.
    pub backend: WgBackend,
}

/// The swarm's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmSpec {
    /// Address pool for overlay networks.
    pub default_addr_pool: Ipv4Net,
    /// Prefix length of each overlay subnet.
    pub subnet_size: u8,
    /// Most managers; further nodes are workers.
    pub max_managers: usize,
    /// The Docker Engine package version (`docker.io`) pinned on every node
    /// by `[swarm] engine_version`, if any.
    #[serde(default)]
    pub engine_version: Option<String>,
    /// The `docker.io` version the nodes ran together when clusterkit last
    /// saw them agree (`.clusterkit/state.toml`): the pin when
    /// `engine_version` is not set and the nodes differ (a node added later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_recorded: Option<String>,
}

/// Storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Garage (Rust, every node equal).
    Garage,
    /// MinIO in distributed mode (a maintained fork's image).
    Minio,
    /// No distributed storage.
    None,
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSpec {
    /// Backend.
    pub backend: StorageBackend,
    /// Server image.
    pub image: String,
    /// Data directory on each node.
    pub data_path: String,
    /// Copies of each object.
    pub replication: u8,
}

/// Monitoring settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringSpec {
    /// Whether the stack is deployed.
    pub enabled: bool,
    /// Prometheus retention.
    pub retention: String,
    /// Grafana admin login (the password is generated, never here).
    pub grafana_admin_user: String,
    /// Grafana runs.
    pub grafana: bool,
    /// cAdvisor runs on every node.
    pub cadvisor: bool,
    /// Alertmanager runs and receives the alerts.
    pub alertmanager: bool,
    /// Volume driver for the monitoring services' data (`clusterkit` or `local`).
    pub volume_driver: String,
    /// Prometheus replicas, each on its own manager, each scraping everything.
    pub prometheus_replicas: u8,
    /// The images.
    pub images: MonitoringImages,
}

/// The monitoring stack's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringImages {
    /// Prometheus.
    pub prometheus: String,
    /// node-exporter.
    pub node_exporter: String,
    /// cAdvisor.
    pub cadvisor: String,
    /// Grafana.
    pub grafana: String,
    /// Alertmanager.
    pub alertmanager: String,
}

/// An application stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSpec {
    /// Stack name.
    pub name: String,
    /// Compose file, resolved against the config's directory.
    pub file: PathBuf,
}

/// The validated cluster: the one model every clusterkit crate takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Cluster name.
    pub name: String,
    /// Servers in inventory order.
    pub nodes: Vec<Node>,
    /// WireGuard mesh.
    pub mesh: MeshSpec,
    /// Docker Swarm.
    pub swarm: SwarmSpec,
    /// Distributed storage.
    pub storage: StorageSpec,
    /// Monitoring.
    pub monitoring: MonitoringSpec,
    /// Application stacks.
    pub stacks: Vec<StackSpec>,
    /// How the nodes are reached.
    #[serde(default)]
    pub ssh: SshSpec,
}

/// How the nodes are reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSpec {
    /// Refuse a node whose host key is not recorded yet (`[ssh]
    /// strict_host_keys`), whatever the command.
    pub strict_host_keys: bool,
}

impl ClusterSpec {
    /// The managers, in inventory order.
    pub fn managers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == SwarmRole::Manager)
    }

    /// Every node's name and SSH target, in inventory order: what the transport connects to.
    pub fn ssh_targets(&self) -> Vec<(String, SshTarget)> {
        self.nodes
            .iter()
            .map(|n| (n.name.to_string(), n.ssh.clone()))
            .collect()
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }
}

/// Defaults, named so that docs, `init` and the code agree.
pub mod defaults {
    /// Mesh CIDR.
    pub const MESH_CIDR: &str = "10.0.0.0/24";
    /// WireGuard port.
    pub const MESH_PORT: u16 = 51820;
    /// Mesh MTU: 1500 less WireGuard's 80 bytes of overhead over IPv6.
    pub const MESH_MTU: u16 = 1420;
    /// Keepalive seconds.
    pub const KEEPALIVE: u16 = 25;
    /// Swarm address pool, disjoint from the default mesh.
    pub const ADDR_POOL: &str = "10.200.0.0/16";
    /// Overlay subnet size.
    pub const SUBNET_SIZE: u8 = 24;
    /// Most managers.
    pub const MAX_MANAGERS: usize = 7;
    /// Garage image built by `clusterkit sandbox` / mirrored with `images push`.
    pub const GARAGE_IMAGE: &str = "clusterkit/garage:2.5.0";
    /// A maintained MinIO fork's image.
    pub const MINIO_IMAGE: &str = "pgsty/minio:latest";
    /// Storage data directory.
    pub const DATA_PATH: &str = "/var/lib/clusterkit/storage";
    /// Prometheus retention.
    pub const RETENTION: &str = "15d";
    /// Prometheus image.
    pub const PROMETHEUS_IMAGE: &str = "prom/prometheus:v3.5.0";
    /// node-exporter image.
    pub const NODE_EXPORTER_IMAGE: &str = "prom/node-exporter:v1.9.1";
    /// cAdvisor image.
    pub const CADVISOR_IMAGE: &str = "gcr.io/cadvisor/cadvisor:v0.49.1";
    /// Grafana image.
    pub const GRAFANA_IMAGE: &str = "grafana/grafana:11.6.0";
    /// Alertmanager image.
    pub const ALERTMANAGER_IMAGE: &str = "prom/alertmanager:v0.28.1";
}

/// What [`build`] produces: the spec, the warnings, and the state to record.
#[derive(Debug, Clone)]
pub struct Built {
    /// The validated cluster.
    pub spec: ClusterSpec,
    /// Warnings (never errors).
    pub warnings: Problems,
    /// The state after allocation (to save when it differs from the one given).
    pub state: State,
}

/// A node whose fields passed their own checks.
struct Checked {
    name: NodeName,
    ssh: SshTarget,
    pin: Option<Ipv4Addr>,
    role: Option<SwarmRole>,
    storage: bool,
}

/// A Debian package version as apt takes it after `=`: starts with a digit
/// (an epoch `N:` included), then letters, digits and `.+~:-` only (it is put
/// on an apt command line).
pub fn package_version(v: &str) -> Result<&str, crate::Invalid> {
    let v = v.trim();
    if !v.starts_with(|c: char| c.is_ascii_digit()) {
        return Err((format!("`{v}` is not a package version: it must start with a digit")).into());
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".+~:-".contains(*c)))
    {
        return Err((format!(
            "`{v}` is not a package version: `{c}` is not allowed (letters, digits and .+~:- only)"
        ))
        .into());
    }
    Ok(v)
}

/// An image reference checked by Docker's grammar, or `None` (and a problem).
fn image_of(v: &Located<String>, problems: &mut Problems) -> Option<String> {
    check(
        v,
        problems,
        "bad image",
        "write an image reference such as prom/prometheus:v3.5.0 or registry.example.com/team/app:1.2",
        |t: &String| checks::image(t),
    )
}

/// Checks a value with `check`, recording a problem at its location on failure.
fn check<T, U, E: Into<String>>(
    v: &Located<T>,
    problems: &mut Problems,
    label: &str,
    help: &str,
    check: impl FnOnce(&T) -> Result<U, E>,
) -> Option<U> {
    match check(&v.value) {
        Ok(u) => Some(u),
        Err(msg) => {
            problems.push(
                Problem::error(msg.into())
                    .at(v.loc.as_ref(), label)
                    .help(help),
            );
            None
        }
    }
}

fn in_range(lo: i64, hi: i64, what: &'static str) -> impl Fn(&i64) -> Result<i64, String> {
    move |n| {
        if (lo..=hi).contains(n) {
            Ok(*n)
        } else {
            Err(format!("{what} must be from {lo} to {hi}, not {n}"))
        }
    }
}

fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        format!(
            "`{}` is not an IPv4 network like 10.0.0.0/24",
            crate::names::shown(text)
        )
    })?;
    if net.network() != net.addr() {
        return Err(format!(
            "`{text}` has host bits set: the network is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Whether a Prometheus duration is well formed (`15d`, `1y`, `12h30m`).
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "y", "w", "d", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// Builds the spec from a parsed config (with its file) and/or an inventory.
///
/// `stack_exists` tells whether a stack file exists (the only file-system fact
/// validation needs, passed in to keep this function pure).
pub fn build(
    config: Option<(Arc<SourceFile>, ConfigFile)>,
    inventory: Option<&Inventory>,
    previous: &State,
    stack_exists: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<Built, Problems> {
    let mut problems = Problems::default();
    let has_config = config.is_some();
    let (file, cfg) =
        config.unwrap_or_else(|| (SourceFile::new("<defaults>", ""), ConfigFile::default()));
    let file = &file;
    macro_rules! o {
        ($e:expr) => {
            opt(file, $e)
        };
    }

    // Nodes, from the inventory or from [[nodes]].
    let group = o!(cfg.inventory_group);
    let mut inputs: Vec<NodeInput> = Vec::new();
    if let Some(inv) = inventory {
        if let Some(first) = cfg.nodes.into_iter().next() {
            let first = located(file, first.name);
            problems.push(
                Problem::error("nodes are given twice: by an inventory and by [[nodes]]")
                    .at(first.loc.as_ref(), "[[nodes]] here")
                    .help("keep one: remove the [[nodes]] tables, or the inventory"),
            );
        } else {
            inputs = inv.nodes(group.as_ref(), &mut problems);
        }
    } else if has_config {
        for n in cfg.nodes {
            inputs.push(NodeInput {
                name: located(file, n.name),
                address: located(file, n.address),
                user: opt(file, n.user),
                port: opt(file, n.port).map(|p| Located {
                    value: p.value.to_string(),
                    loc: p.loc,
                }),
                key: opt(file, n.key),
                become_: opt(file, n.become_),
                mesh_address: opt(file, n.mesh_address),
                role: opt(file, n.role),
                storage: opt(file, n.storage).map(|s| Located {
                    value: s.value.to_string(),
                    loc: s.loc,
                }),
                jump: opt(file, n.jump),
            });
        }
        if inputs.is_empty() {
            problems.push(
                Problem::error(format!("{} names no nodes", file.name)).help(
                    "add `inventory = \"hosts.ini\"`, or one [[nodes]] table per server with `name` and `address`",
                ),
            );
        }
    } else {
        problems.push(
            Problem::error("no nodes: give a clusterkit.toml or an inventory")
                .help("run `clusterkit init` to write a starter clusterkit.toml"),
        );
    }

    // Nodes taken out by `clusterkit node remove` stay out.
    inputs.retain(|n| {
        if !previous.removed.contains_key(&n.name.value) {
            return true;
        }
        problems.push(
            Problem::warning(format!(
                "node `{}` was removed from the cluster (`clusterkit node remove`): left out",
                n.name.value
            ))
            .at(n.name.loc.as_ref(), "removed")
            .help(format!(
                "delete it here; or, to take it (or a fresh machine of that name) back: `clusterkit node add {}`",
                n.name.value
            )),
        );
        false
    });

    // Mesh.
    let mesh_cidr_v =
        o!(cfg.mesh.cidr).unwrap_or_else(|| Located::default_value(defaults::MESH_CIDR.into()));
    let mesh_cidr = check(
        &mesh_cidr_v,
        &mut problems,
        "bad network",
        "write a private IPv4 network such as 10.0.0.0/24",
        |t| parse_cidr(t),
    );
    let mesh_port = o!(cfg.mesh.port)
        .and_then(|p| {
            check(
                &p,
                &mut problems,
                "bad port",
                "WireGuard's usual port is 51820",
                |n| Port::new(*n),
            )
        })
        .unwrap_or(Port::new(defaults::MESH_PORT.into()).expect("valid"));
    let mtu = o!(cfg.mesh.mtu)
        .and_then(|m| {
            check(
                &m,
                &mut problems,
                "bad MTU",
                "1420 fits a 1500-byte path; WireGuard needs at least 1280",
                in_range(1280, 9000, "mesh.mtu"),
            )
        })
        .map_or(defaults::MESH_MTU, |m| m as u16);
    let keepalive = o!(cfg.mesh.keepalive)
        .and_then(|k| {
            check(
                &k,
                &mut problems,
                "bad keepalive",
                "25 seconds keeps NAT mappings open; 0 turns keepalives off",
                in_range(0, 65535, "mesh.keepalive"),
            )
        })
        .map_or(defaults::KEEPALIVE, |k| k as u16);
    let interface = o!(cfg.mesh.interface)
        .and_then(|i| {
            check(
                &i,
                &mut problems,
                "bad interface name",
                "Linux interface names have 1 to 15 letters, digits, `-` or `_`",
                |s: &String| {
                    if !s.is_empty()
                        && s.len() <= 15
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        Ok(s.clone())
                    } else {
                        Err(format!("`{s}` is not a valid interface name"))
                    }
                },
            )
        })
        .unwrap_or_else(|| "wg0".into());
    let backend = o!(cfg.mesh.backend)
        .and_then(|b| {
            check(
                &b,
                &mut problems,
                "unknown backend",
                "choose auto, kernel or userspace",
                |s: &String| match s.as_str() {
                    "auto" => Ok(WgBackend::Auto),
                    "kernel" => Ok(WgBackend::Kernel),
                    "userspace" => Ok(WgBackend::Userspace),
                    other => Err(format!(
                        "mesh.backend `{other}` is not auto, kernel or userspace"
                    )),
                },
            )
        })
        .unwrap_or(WgBackend::Auto);

    // Swarm.
    let pool_v = o!(cfg.swarm.default_addr_pool)
        .unwrap_or_else(|| Located::default_value(defaults::ADDR_POOL.into()));
    let pool = check(
        &pool_v,
        &mut problems,
        "bad network",
        "write an IPv4 network such as 10.200.0.0/16",
        |t| parse_cidr(t),
    );
    let subnet_size = o!(cfg.swarm.subnet_size)
        .and_then(|s| {
            check(
                &s,
                &mut problems,
                "bad subnet size",
                "24 gives each overlay network 254 addresses",
                in_range(16, 29, "swarm.subnet_size"),
            )
        })
        .map_or(defaults::SUBNET_SIZE, |s| s as u8);
    let max_managers = o!(cfg.swarm.max_managers)
        .and_then(|m| {
            check(
                &m,
                &mut problems,
                "bad count",
                "Raft advises 3, 5 or 7 managers",
                in_range(1, 99, "swarm.max_managers"),
            )
        })
        .map_or(defaults::MAX_MANAGERS, |m| m as usize);
    let engine_version = o!(cfg.swarm.engine_version).and_then(|v| {
        check(
            &v,
            &mut problems,
            "bad package version",
            "write the version `apt-cache policy docker.io` shows on a node, e.g. 20.10.24+dfsg1-1+deb12u1+b6",
            |t| package_version(t).map(str::to_string),
        )
    });
    if let (Some(mesh), Some(pool)) = (mesh_cidr, pool) {
        if mesh.contains(&pool.network()) || pool.contains(&mesh.network()) {
            let pool_where = if pool_v.loc.is_some() {
                "swarm.default_addr_pool"
            } else {
                "the default swarm.default_addr_pool"
            };
            let mesh_where = if mesh_cidr_v.loc.is_some() {
                "mesh.cidr"
            } else {
                "the default mesh.cidr"
            };
            problems.push(
                Problem::error(format!(
                    "the swarm address pool {pool} ({pool_where}) overlaps the mesh {mesh} ({mesh_where})"
                ))
                .at(pool_v.loc.as_ref(), "swarm overlay networks come from here")
                .at(mesh_cidr_v.loc.as_ref(), "the mesh uses this")
                .help("set [swarm] default_addr_pool to a range outside the mesh, e.g. 10.200.0.0/16"),
            );
        }
        if pool.prefix_len() >= subnet_size {
            problems.push(
                Problem::error(format!(
                    "the swarm address pool {pool} cannot be cut into /{subnet_size} subnets"
                ))
                .at(pool_v.loc.as_ref(), "too small")
                .help("use a larger pool (e.g. /16) or a larger swarm.subnet_size"),
            );
        }
    }

    // Storage.
    let storage_backend = o!(cfg.storage.backend)
        .and_then(|b| {
            check(
                &b,
                &mut problems,
                "unknown backend",
                "choose garage, minio or none",
                |s: &String| match s.as_str() {
                    "garage" => Ok(StorageBackend::Garage),
                    "minio" => Ok(StorageBackend::Minio),
                    "none" => Ok(StorageBackend::None),
                    other => Err(format!(
                        "storage.backend `{other}` is not garage, minio or none{}",
                        did_you_mean(other, ["garage", "minio", "none"])
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    )),
                },
            )
        })
        .unwrap_or(StorageBackend::Garage);
    let image = o!(cfg.storage.image)
        .and_then(|i| image_of(&i, &mut problems))
        .unwrap_or_else(|| {
            match storage_backend {
                StorageBackend::Minio => defaults::MINIO_IMAGE,
                _ => defaults::GARAGE_IMAGE,
            }
            .into()
        });
    let data_path = o!(cfg.storage.data_path)
        .and_then(|d| {
            check(
                &d,
                &mut problems,
                "bad data path",
                "write a directory of clusterkit's own, such as /var/lib/clusterkit/storage",
                |s: &String| checks::data_path(s),
            )
        })
        .unwrap_or_else(|| defaults::DATA_PATH.into());
    let replication_v = o!(cfg.storage.replication);
    let replication = replication_v.as_ref().and_then(|r| {
        check(
            r,
            &mut problems,
            "bad count",
            "3 copies survive the loss of any node",
            in_range(1, 7, "storage.replication"),
        )
    });

    // Monitoring.
    let prometheus_replicas_v = o!(cfg.monitoring.prometheus_replicas);
    let prometheus_replicas = prometheus_replicas_v.as_ref().and_then(|r| {
        check(
            r,
            &mut problems,
            "bad count",
            "2 replicas keep Prometheus answering when a node is lost",
            in_range(1, 7, "monitoring.prometheus_replicas"),
        )
    });
    let mut monitoring = MonitoringSpec {
        enabled: o!(cfg.monitoring.enabled).is_none_or(|e| e.value),
        retention: o!(cfg.monitoring.retention)
            .and_then(|r| {
                check(
                    &r,
                    &mut problems,
                    "bad duration",
                    "Prometheus durations look like 15d, 12h or 1y",
                    |s: &String| {
                        if is_duration(s) {
                            Ok(s.clone())
                        } else {
                            Err(format!("monitoring.retention `{s}` is not a duration"))
                        }
                    },
                )
            })
            .unwrap_or_else(|| defaults::RETENTION.into()),
        grafana_admin_user: o!(cfg.monitoring.grafana_admin_user)
            .and_then(|u| {
                check(
                    &u,
                    &mut problems,
                    "bad login",
                    "give Grafana's administrator a login such as admin",
                    |s: &String| checks::login(s),
                )
            })
            .unwrap_or_else(|| "admin".into()),
        grafana: o!(cfg.monitoring.grafana).is_none_or(|e| e.value),
        cadvisor: o!(cfg.monitoring.cadvisor).is_none_or(|e| e.value),
        alertmanager: o!(cfg.monitoring.alertmanager).is_some_and(|e| e.value),
        volume_driver: o!(cfg.monitoring.volume_driver)
            .and_then(|d| {
                check(
                    &d,
                    &mut problems,
                    "unknown volume driver",
                    "choose clusterkit (needs storage) or local",
                    |s: &String| match (s.as_str(), storage_backend) {
                        ("local", _) => Ok(s.clone()),
                        ("clusterkit", StorageBackend::None) => Err(
                            "monitoring.volume_driver `clusterkit` needs storage, but storage.backend is `none`".into(),
                        ),
                        ("clusterkit", _) => Ok(s.clone()),
                        (other, _) => Err(format!(
                            "monitoring.volume_driver `{other}` is not clusterkit or local"
                        )),
                    },
                )
            })
            // Local by default: Prometheus's compaction renames directories of
            // fresh files, which the S3-backed volume does not do atomically
            // (measured: files left behind), and Grafana's SQLite keeps its
            // file open, so nothing would reach S3 before a crash.
            .unwrap_or_else(|| "local".into()),
        prometheus_replicas: 1,
        images: MonitoringImages {
            prometheus: o!(cfg.monitoring.prometheus_image)
                .and_then(|i| image_of(&i, &mut problems))
                .unwrap_or_else(|| defaults::PROMETHEUS_IMAGE.into()),
            node_exporter: o!(cfg.monitoring.node_exporter_image)
                .and_then(|i| image_of(&i, &mut problems))
                .unwrap_or_else(|| defaults::NODE_EXPORTER_IMAGE.into()),
            cadvisor: o!(cfg.monitoring.cadvisor_image)
                .and_then(|i| image_of(&i, &mut problems))
                .unwrap_or_else(|| defaults::CADVISOR_IMAGE.into()),
            grafana: o!(cfg.monitoring.grafana_image)
                .and_then(|i| image_of(&i, &mut problems))
                .unwrap_or_else(|| defaults::GRAFANA_IMAGE.into()),
            alertmanager: o!(cfg.monitoring.alertmanager_image)
                .and_then(|i| image_of(&i, &mut problems))
                .unwrap_or_else(|| defaults::ALERTMANAGER_IMAGE.into()),
        },
    };

    // Stacks.
    let mut stacks: Vec<StackSpec> = Vec::new();
    let mut stack_names: HashMap<String, Located<String>> = HashMap::new();
    for s in cfg.stacks {
        let (name, path) = (located(file, s.name), located(file, s.file));
        if check(
            &name,
            &mut problems,
            "bad stack name",
            "a stack's name names a Swarm stack and a directory: lowercase letters, digits and `-`",
            |t: &String| checks::stack_name(t),
        )
        .is_none()
        {
            continue;
        }
        if let Some(first) = stack_names.get(&name.value) {
            problems.push(
                Problem::error(format!("stack `{}` is declared twice", name.value))
                    .at(name.loc.as_ref(), "again here")
                    .at(first.loc.as_ref(), "first here")
                    .help("give each [[stacks]] its own name"),
            );
            continue;
        }
        match stack_exists(&path.value) {
            Some(resolved) => stacks.push(StackSpec {
                name: name.value.clone(),
                file: resolved,
            }),
            None => problems.push(
                Problem::error(format!("stack file `{}` does not exist", path.value))
                    .at(path.loc.as_ref(), "not found")
                    .help("paths are relative to the directory of clusterkit.toml"),
            ),
        }
        stack_names.insert(name.value.clone(), name);
    }

    // Each node.
    let mut nodes: Vec<Checked> = Vec::new();
    let mut by_name: HashMap<String, &NodeInput> = HashMap::new();
    let mut by_endpoint: HashMap<(String, u16), &NodeInput> = HashMap::new();
    let mut by_pin: HashMap<Ipv4Addr, &NodeInput> = HashMap::new();
    for n in &inputs {
        let name = check(
            &n.name,
            &mut problems,
            "bad name",
            "node names are used as host names: letters, digits, `-`, `_`, `.`",
            |s: &String| NodeName::new(s),
        );
        if let Some(first) = by_name.insert(n.name.value.clone(), n) {
            problems.push(
                Problem::error(format!("node `{}` is defined twice", n.name.value))
                    .at(n.name.loc.as_ref(), "again here")
                    .at(first.name.loc.as_ref(), "first here")
                    .help("each node needs its own name"),
            );
        }
        let addr_ok = check(&n.address, &mut problems, "not an address", "give the server's IP address or DNS name (`ansible_host=` in an inventory, `address =` in clusterkit.toml)", |s: &String| check_address(s)).is_some();
        let port = n
            .port
            .as_ref()
            .and_then(|p| {
                check(
                    p,
                    &mut problems,
                    "bad port",
                    "SSH listens on 22 unless configured otherwise",
                    |t: &String| Port::parse(t),
                )
            })
            .unwrap_or(Port::new(22).expect("valid"));
        if addr_ok {
            if let Some(first) = by_endpoint.insert((n.address.value.clone(), port.get()), n) {
                if first.name.value != n.name.value {
                    problems.push(
                        Problem::error(format!(
                            "nodes `{}` and `{}` have the same address {}:{port}",
                            first.name.value, n.name.value, n.address.value
                        ))
                        .at(n.address.loc.as_ref().or(n.name.loc.as_ref()), "same address")
                        .at(first.address.loc.as_ref().or(first.name.loc.as_ref()), "as this one")
                        .help("each node must be a different server: fix the address or remove the duplicate"),
                    );
                }
            }
        }
        let user = match &n.user {
            Some(u) => check(
                u,
                &mut problems,
                "bad user",
                "give the SSH login, e.g. root (`ansible_user=` in an inventory, `user =` in clusterkit.toml)",
                |s: &String| checks::ssh_user(s),
            )
            .unwrap_or_default(),
            None => "root".to_string(),
        };
        let become_ = n.become_.as_ref().is_some_and(|b| b.value);
        let role = n.role.as_ref().and_then(|r| {
            check(
                r,
                &mut problems,
                "unknown role",
                "a node is a `manager` or a `worker`",
                |s: &String| match s.as_str() {
                    "manager" => Ok(SwarmRole::Manager),
                    "worker" => Ok(SwarmRole::Worker),
                    other => Err(format!("swarm role `{other}` is not manager or worker")),
                },
            )
        });
        let storage = n
            .storage
            .as_ref()
            .and_then(|s| {
                check(
                    s,
                    &mut problems,
                    "not a boolean",
                    "write true or false",
                    |t: &String| match t.to_ascii_lowercase().as_str() {
                        "true" | "yes" | "1" => Ok(true),
                        "false" | "no" | "0" => Ok(false),
                        other => Err(format!("storage must be true or false, not `{other}`")),
                    },
                )
            })
            .unwrap_or(true);
        let pin = n.mesh_address.as_ref().and_then(|m| {
            let addr = check(m, &mut problems, "not an IPv4 address", "write an address inside mesh.cidr, e.g. 10.0.0.5", |t: &String| t.parse::<Ipv4Addr>().map_err(|_| format!("mesh address `{t}` is not an IPv4 address")))?;
            let cidr = mesh_cidr?;
            if !alloc::usable(cidr, addr) {
                let why = if cidr.contains(&addr) { "is the network or broadcast address of" } else { "is outside" };
                problems.push(
                    Problem::error(format!("mesh address {addr} of `{}` {why} the mesh {cidr}", n.name.value))
                        .at(m.loc.as_ref(), "unusable address")
                        .at(mesh_cidr_v.loc.as_ref(), "the mesh")
                        .help(format!("pick an address from {} to {}, or remove the pin to let clusterkit allocate one", cidr.hosts().next().unwrap_or(cidr.addr()), cidr.hosts().last().unwrap_or(cidr.addr()))),
                );
                return None;
            }
            if let Some(first) = by_pin.insert(addr, n) {
                problems.push(
                    Problem::error(format!("nodes `{}` and `{}` pin the same mesh address {addr}", first.name.value, n.name.value))
                        .at(m.loc.as_ref(), "again here")
                        .at(first.mesh_address.as_ref().and_then(|l| l.loc.as_ref()), "first here")
                        .help("remove one of the pins; clusterkit allocates free addresses itself"),
                );
                return None;
            }
            Some(addr)
        });
        if let Some(key) = &n.key {
            if key.value.trim().is_empty() {
                problems.push(
                    Problem::error("the SSH key path is empty")
                        .at(key.loc.as_ref(), "empty")
                        .help("give a private key file, or remove the setting to use ssh-agent"),
                );
            }
        }
        let jump = n.jump.as_ref().and_then(|j| {
            check(
                j,
                &mut problems,
                "not a jump host",
                "write [user@]host[:port], e.g. ansible_ssh_common_args='-o ProxyJump=admin@bastion:22'",
                |t: &String| {
                    let j = Jump::parse(t, &user)?;
                    check_address(&j.host).map_err(|e| format!("jump host: {e}"))?;
                    checks::ssh_user(&j.user).map_err(|e| format!("jump host: {e}"))?;
                    Ok::<_, crate::Invalid>(j)
                },
            )
        });
        if let Some(name) = name {
            nodes.push(Checked {
                name,
                ssh: SshTarget {
                    host: n.address.value.clone(),
                    port,
                    user,
                    key: n.key.as_ref().map(|k| PathBuf::from(&k.value)),
                    become_,
                    jump,
                    user_given: n.user.is_some(),
                    port_given: n.port.is_some(),
                },
                pin,
                role,
                storage,
            });
        }
    }

    // Roles: managers first in inventory order, up to max_managers.
    let mut managers = 0usize;
    let mut roles = Vec::with_capacity(nodes.len());
    for Checked { role, .. } in &nodes {
        let r = match role {
            Some(r) => *r,
            None if managers < max_managers => SwarmRole::Manager,
            None => SwarmRole::Worker,
        };
        if r == SwarmRole::Manager {
            managers += 1;
        }
        roles.push(r);
    }
    if !nodes.is_empty() && managers == 0 {
        problems.push(
            Problem::error("no node is a swarm manager")
                .help("remove `role = \"worker\"` from at least one node"),
        );
    }
    if managers > 0 && managers.is_multiple_of(2) {
        let tolerated = (managers - 1) / 2;
        problems.push(Problem::warning(format!(
            "{managers} managers: Raft needs a majority ({} of {managers}), so they tolerate {tolerated} loss(es), no more than {} managers would",
            managers / 2 + 1,
            managers - 1
        )).help("use an odd number of managers: add a node, or make one a worker (role = \"worker\")"));
    }
    // One Prometheus per manager at most (each on its own node).
    monitoring.prometheus_replicas = match prometheus_replicas {
        Some(r) if r as usize > managers && managers > 0 => {
            problems.push(
                Problem::error(format!(
                    "monitoring.prometheus_replicas is {r} but there are {managers} manager(s): each replica runs on its own manager"
                ))
                .at(
                    prometheus_replicas_v.as_ref().and_then(|l| l.loc.as_ref()),
                    "too many",
                )
                .help(format!("lower it to {managers} or fewer")),
            );
            r as u8
        }
        Some(r) => r as u8,
        None => managers.clamp(1, 2) as u8,
    };
    let storage_nodes = nodes.iter().filter(|n| n.storage).count();
    let made = previous
        .storage_replication
        .filter(|_| storage_backend != StorageBackend::None);
    if let (Some(r), Some(m)) = (replication, made) {
        if r as u8 != m {
            problems.push(
                Problem::error(format!(
                    "storage.replication is {r}, but the storage was made with {m} copies"
                ))
                .at(
                    replication_v.as_ref().and_then(|l| l.loc.as_ref()),
                    "changed",
                )
                .help(format!(
                    "the number of copies of a running store cannot change: put back {m} (or remove the line); \
                     a new number needs a new store (`clusterkit down --purge`, then `up`)"
                )),
            );
        }
    }
    let replication = match replication.or(made.map(i64::from)) {
        Some(r)
            if storage_backend != StorageBackend::None
                && r as usize > storage_nodes
                && !nodes.is_empty()
                && made.is_some() =>
        {
            // A store that lost nodes (removed) keeps its copies' count:
            // degraded until a node takes their place.
            problems.push(
                Problem::warning(format!(
                    "the storage keeps {r} copies of everything but only {storage_nodes} node(s) hold storage now: it runs degraded, without the missing copies"
                ))
                .help("add a node (`clusterkit node add NODE` once it is in the inventory): the copies are made again"),
            );
            r as u8
        }
        Some(r)
            if storage_backend != StorageBackend::None
                && r as usize > storage_nodes
                && !nodes.is_empty() =>
        {
            problems.push(
                Problem::error(format!(
                    "storage.replication is {r} but only {storage_nodes} node(s) hold storage"
                ))
                .at(
                    replication_v.as_ref().and_then(|l| l.loc.as_ref()),
                    "too many copies",
                )
                .help("lower storage.replication, or let more nodes hold storage"),
            );
            r as u8
        }
        Some(r) => r as u8,
        None => storage_nodes.clamp(1, 3) as u8,
    };

    // Addresses.
    let mut state = previous.clone();
    if storage_backend != StorageBackend::None && !nodes.is_empty() {
        state.storage_replication = Some(replication);
    }
    let mut addresses = BTreeMap::new();
    if let Some(cidr) = mesh_cidr {
        let prev: BTreeMap<NodeName, Ipv4Addr> = previous
            .mesh_addresses
            .iter()
            .filter_map(|(k, v)| NodeName::new(k).ok().map(|n| (n, *v)))
            .collect();
        let wanted: Vec<(NodeName, Option<Ipv4Addr>)> =
            nodes.iter().map(|n| (n.name.clone(), n.pin)).collect();
        match allocate(cidr, &wanted, &prev) {
            Ok(a) => {
                for (name, old) in &a.renumbered {
                    problems.push(Problem::warning(format!(
                        "node `{name}` moves from mesh address {old} to {}",
                        a.addresses[name]
                    )).help("its old address is outside the mesh now or pinned by another node; the mesh is reconfigured on the next `up`"));
                }
                addresses = a.addresses;
                state.mesh_cidr = Some(cidr.to_string());
                state.mesh_addresses = addresses.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            }
            Err(e) => problems.push(
                Problem::error(format!("the mesh {} is too small: {e}", e.cidr))
                    .at(mesh_cidr_v.loc.as_ref(), "too small")
                    .help(format!(
                        "use a larger [mesh] cidr, e.g. {}",
                        Ipv4Net::new(
                            cidr.network(),
                            (32 - (e.needed as f64 + 2.0).log2().ceil() as u8)
                                .min(cidr.prefix_len())
                        )
                        .map_or(cidr, |n| n.trunc())
                    )),
            ),
        }
    }

    let name = o!(cfg.name)
        .and_then(|n| {
            check(
                &n,
                &mut problems,
                "bad cluster name",
                "the name names the swarm's networks, stacks and backups: lowercase letters, digits and `-`",
                |t: &String| checks::cluster_name(t),
            )
        })
        .unwrap_or_else(|| "clusterkit".into());
    if problems.has_errors() {
        return Err(problems);
    }
    let spec = ClusterSpec {
        name,
        nodes: nodes
            .into_iter()
            .zip(roles)
            .map(
                |(
                    Checked {
                        name, ssh, storage, ..
                    },
                    role,
                )| Node {
                    mesh_address: addresses[&name],
                    name,
                    ssh,
                    role,
                    storage,
                },
            )
            .collect(),
        mesh: MeshSpec {
            cidr: mesh_cidr.expect("checked"),
            port: mesh_port,
            mtu,
            keepalive,
            interface,
            backend,
        },
        swarm: SwarmSpec {
            default_addr_pool: pool.expect("checked"),
            subnet_size,
            max_managers,
            engine_version,
            engine_recorded: previous
                .engine_version
                .as_deref()
                .and_then(|v| package_version(v).ok())
                .map(str::to_string),
        },
        storage: StorageSpec {
            backend: storage_backend,
            image,
            data_path,
            replication,
        },
        monitoring,
        stacks,
        ssh: SshSpec {
            strict_host_keys: o!(cfg.ssh.strict_host_keys).is_some_and(|s| s.value),
        },
    };
    Ok(Built {
        spec,
        warnings: problems,
        state,
    })
}

/// Where [`load`] found things.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The result of [`build`].
    pub built: Built,
    /// The state file used (and to be written).
    pub state_path: PathBuf,
    /// Whether the state to record differs from the file's.
    pub state_changed: bool,
}

fn read(path: &Path) -> Result<Arc<SourceFile>, SpecError> {
    std::fs::read_to_string(path)
        .map(|t| SourceFile::new(path.display().to_string(), t))
        .map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// A cluster of `n` servers `node1`..`nodeN` at 192.168.1.1..N, every setting
/// at its default: for examples and for the tests of crates built on this one.
pub fn example(n: usize) -> ClusterSpec {
    let hosts: String = (1..=n)
        .map(|i| format!("node{i} ansible_host=192.168.1.{i}\n"))
        .collect();
    let mut p = Problems::default();
    let inv = Inventory::parse(
        SourceFile::new("hosts.ini", format!("[servers]\n{hosts}")),
        Format::Ini,
        &mut p,
    );
    build(None, Some(&inv), &State::default(), &|_| None)
        .expect("a plain inventory of distinct addresses validates")
        .spec
}

/// Reads a config and/or an inventory from disk, with the state beside them, and builds the spec.
///
/// With only an inventory, the state lives beside the inventory. An inventory
/// given here replaces the config's `inventory` key.
pub fn load(config: Option<&Path>, inventory: Option<&Path>) -> Result<Loaded, SpecError> {
    let mut problems = Problems::default();
    let base = config
        .or(inventory)
        .and_then(Path::parent)
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let cfg = match config {
        Some(p) => {
            let file = read(p)?;
            ConfigFile::parse(&file, &mut problems).map(|c| (file, c))
        }
        None => None,
    };
    let inv_key = cfg
        .as_ref()
        .and_then(|(f, c)| c.inventory.clone().map(|s| located(f, s)));
    let inv_path = match (inventory, &cfg) {
        (Some(p), _) => Some(p.to_path_buf()),
        (None, Some((_, c))) => c.inventory.as_ref().map(|i| base.join(i.get_ref())),
        _ => None,
    };
    let inv = match &inv_path {
        Some(p) => {
            let file = match read(p) {
                Ok(f) => f,
                Err(e) if inventory.is_none() => {
                    problems.push(
                        Problem::error(e.to_string())
                            .at(inv_key.as_ref().and_then(|l| l.loc.as_ref()), "this file")
                            .help("the inventory path is relative to the directory of clusterkit.toml"),
                    );
                    return Err(SpecError::Invalid(problems));
                }
                Err(e) => return Err(e),
            };
            let format = Format::guess(&file.name, &file.text);
            Some(Inventory::parse(file, format, &mut problems))
        }
        None => None,
    };
    if problems.has_errors() {
        return Err(SpecError::Invalid(problems));
    }
    let state_path = State::path_in(&base);
    let previous = State::load(&state_path)?;
    let exists = |rel: &str| {
        let p = base.join(rel);
        p.is_file().then_some(p)
    };
    let mut built = build(cfg, inv.as_ref(), &previous, &exists).map_err(|mut p| {
        let mut all = problems.clone();
        all.0.append(&mut p.0);
        SpecError::Invalid(all)
    })?;
    let mut all = problems;
    all.0.append(&mut built.warnings.0);
    built.warnings = all;
    let state_changed = built.state != previous;
    Ok(Loaded {
        built,
        state_path,
        state_changed,
    })
}

pub mod checks;

#[cfg(test)]
mod tests;
