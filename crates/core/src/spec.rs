//! [`ClusterSpec`]: the validated model of the cluster that every other crate takes.
//!
//! [`build`] turns what was read (a `clusterkit.toml`, an Ansible inventory, or
//! both) into a spec, finding every problem at once; [`load`] does the same from
//! files and the state directory.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::{located, opt, ConfigFile};
use crate::diag::{Problem, Problems, SpecError};
use crate::inventory::{Format, Inventory};
use crate::names::{MeshAddr, NodeName, Port};
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
    /// Serves the ingress (`true`/`false` as text).
    pub ingress: Option<Located<String>>,
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
    pub mesh_address: MeshAddr,
    /// Its swarm role.
    pub role: SwarmRole,
    /// Whether it holds storage.
    pub storage: bool,
    /// Whether it serves the ingress (an edge on 80 and 443) when
    /// `[ingress]` is on.
    #[serde(default = "yes")]
    pub ingress: bool,
}

fn yes() -> bool {
    true
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

/// Who issues the ingress's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressTls {
    /// An ACME CA, validated by HTTP-01 through any ingress node.
    Acme,
    /// Caddy's internal CA (private clusters).
    Internal,
}

/// The HTTPS ingress (`[ingress]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressSpec {
    /// Whether it runs.
    pub enabled: bool,
    /// Who issues the certificates.
    pub tls: IngressTls,
    /// The ACME CA's directory URL.
    pub acme_ca: String,
    /// The ACME account's contact.
    pub acme_email: Option<String>,
    /// A PEM file of roots trusted for the CA's API, resolved against the
    /// config's directory.
    pub acme_ca_root: Option<PathBuf>,
    /// Caddy's image.
    pub image: String,
    /// The route watcher's image (clusterkit is mounted into it).
    pub routes_image: String,
    /// The monitoring UIs served by name, when asked for.
    pub monitoring: MonitoringHosts,
}

/// The monitoring UIs the ingress serves by name (`grafana_host`,
/// `prometheus_host`, `alertmanager_host`): each a validated, lower-cased
/// DNS name; `None`: not routed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringHosts {
    /// Grafana's (its own login).
    pub grafana: Option<String>,
    /// Prometheus's (the monitoring API's user).
    pub prometheus: Option<String>,
    /// Alertmanager's (the monitoring API's user).
    pub alertmanager: Option<String>,
}

impl Default for IngressSpec {
    fn default() -> Self {
        IngressSpec {
            enabled: false,
            tls: IngressTls::Acme,
            acme_ca: defaults::ACME_CA.into(),
            acme_email: None,
            acme_ca_root: None,
            image: defaults::CADDY_IMAGE.into(),
            routes_image: defaults::ROUTES_IMAGE.into(),
            monitoring: MonitoringHosts::default(),
        }
    }
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
    /// The HTTPS ingress.
    #[serde(default)]
    pub ingress: IngressSpec,
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
    /// Garage's own image, as Garage publishes it (a static `/garage` and
    /// nothing else): nodes that can reach Docker Hub pull it. The sandbox
    /// builds the same layout from the crate as `clusterkit/garage:2.5.0`.
    pub const GARAGE_IMAGE: &str = "dxflrs/garage:v2.5.0";
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
    /// The ingress's ACME CA: Let's Encrypt's production directory.
    pub const ACME_CA: &str = "https://acme-v02.api.letsencrypt.org/directory";
    /// Caddy's image for the ingress.
    pub const CADDY_IMAGE: &str = "caddy:2.10.2";
    /// The ingress's route watcher's image: only the C library clusterkit
    /// was built against is needed (Debian 12's or newer).
    pub const ROUTES_IMAGE: &str = "debian:bookworm-slim";
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
    ingress: bool,
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
    let mut inputs = sections::inputs(
        file,
        has_config,
        cfg.inventory_group,
        cfg.nodes,
        inventory,
        &mut problems,
    );

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

    let sections::Mesh {
        mesh_cidr_v,
        mesh_cidr,
        mesh_port,
        mtu,
        keepalive,
        interface,
        backend,
    } = sections::mesh(file, cfg.mesh, &mut problems);
    let sections::Swarm {
        pool,
        subnet_size,
        max_managers,
        engine_version,
    } = sections::swarm(file, cfg.swarm, mesh_cidr, &mesh_cidr_v, &mut problems);
    let sections::Storage {
        storage_backend,
        image,
        data_path,
        replication_v,
        replication,
    } = sections::storage(file, cfg.storage, &mut problems);
    let sections::Monitoring {
        prometheus_replicas_v,
        prometheus_replicas,
        mut monitoring,
    } = sections::monitoring(file, cfg.monitoring, storage_backend, &mut problems);
    let stacks = sections::stacks(file, cfg.stacks, stack_exists, &mut problems);
    let ingress = sections::ingress(
        file,
        cfg.ingress,
        storage_backend,
        &monitoring,
        stack_exists,
        &mut problems,
    );

    let nodes = sections::nodes(&inputs, mesh_cidr, &mesh_cidr_v, &mut problems);

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
    let replication = sections::replication(
        &nodes,
        previous,
        storage_backend,
        replication,
        replication_v.as_ref(),
        &mut problems,
    );

    // Addresses.
    let (addresses, state) = sections::addresses(
        &nodes,
        previous,
        mesh_cidr,
        &mesh_cidr_v,
        (storage_backend != StorageBackend::None).then_some(replication),
        &mut problems,
    );

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
    if ingress.enabled && !nodes.is_empty() && !nodes.iter().any(|n| n.ingress) {
        problems.push(
            Problem::error("the ingress is on, but no node serves it (every node says ingress = false)")
                .help("let one node or more serve it (clusterkit_ingress=true, or remove the setting), or turn the ingress off"),
        );
    }
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
                        name,
                        ssh,
                        storage,
                        ingress,
                        ..
                    },
                    role,
                )| Node {
                    mesh_address: MeshAddr::new(addresses[&name]),
                    name,
                    ssh,
                    role,
                    storage,
                    ingress,
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
        ingress,
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

impl Loaded {
    /// Writes the state file when loading recorded something new in it (the
    /// mesh addresses allocated to new nodes); says whether it did.
    pub fn save_state(&self) -> Result<bool, SpecError> {
        if !self.state_changed {
            return Ok(false);
        }
        self.built.state.save(&self.state_path)?;
        Ok(true)
    }
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

/// `clusterkit init`: writes the commented starter config at `output`, its
/// nodes taken from `inventory` (checked first, named relative to `output`)
/// or three placeholders to fill in. An existing `output` is kept unless
/// `force`. Returns the inventory's warnings.
pub fn init(inventory: Option<&Path>, output: &Path, force: bool) -> Result<Problems, SpecError> {
    let write_error = |source| SpecError::Write {
        path: output.display().to_string(),
        source,
    };
    if output.exists() && !force {
        return Err(write_error(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it exists: pass --force to overwrite it",
        )));
    }
    let (text, warnings) = match inventory {
        Some(inv) => {
            let warnings = load(None, Some(inv))?.built.warnings;
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            let (inv, dir) = (abs(inv), abs(dir));
            let rel = inv.strip_prefix(&dir).unwrap_or(&inv).display().to_string();
            (crate::config::starter(Some(&rel), &[]), warnings)
        }
        None => {
            let nodes = (1..=3).map(|i| (format!("node{i}"), format!("node{i}.example.invalid")));
            let nodes: Vec<_> = nodes.collect();
            (crate::config::starter(None, &nodes), Problems::default())
        }
    };
    // The starter must itself parse (placeholders aside).
    let mut problems = Problems::default();
    let file = SourceFile::new(output.display().to_string(), text.clone());
    if ConfigFile::parse(&file, &mut problems).is_none() {
        return Err(SpecError::Invalid(problems));
    }
    std::fs::write(output, text).map_err(write_error)?;
    Ok(warnings)
}

/// [`load`] of one file: a `.toml` is clusterkit's own config, anything
/// else an Ansible inventory (INI or YAML).
pub fn load_path(path: &Path) -> Result<Loaded, SpecError> {
    if path.extension().is_some_and(|e| e == "toml") {
        load(Some(path), None)
    } else {
        load(None, Some(path))
    }
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
mod sections;

#[cfg(test)]
mod tests;
