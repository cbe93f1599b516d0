//! The native configuration file, `clusterkit.toml`, as written (before validation).
//!
//! Every field is optional; [`crate::spec`] fills in the defaults documented here
//! and checks the values. `clusterkit init` writes [`starter`], a commented file
//! with every field at its default.

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{did_you_mean, Problem, Problems};
use crate::source::{Loc, Located, SourceFile, Span};

/// The whole `clusterkit.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The cluster's name, used to name its networks and stacks. Default: `clusterkit`.
    pub name: Option<Spanned<String>>,
    /// An Ansible inventory (INI or YAML) to take the nodes from, relative to this
    /// file; instead of `[[nodes]]`.
    pub inventory: Option<Spanned<String>>,
    /// Only the hosts of this inventory group (and its children). Default: every host.
    pub inventory_group: Option<Spanned<String>>,
    /// The servers, in order: `[[nodes]]` tables.
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
    /// The WireGuard mesh.
    #[serde(default)]
    pub mesh: MeshSection,
    /// Docker Swarm.
    #[serde(default)]
    pub swarm: SwarmSection,
    /// Distributed S3 storage and the volume driver.
    #[serde(default)]
    pub storage: StorageSection,
    /// Prometheus, Grafana and the exporters.
    #[serde(default)]
    pub monitoring: MonitoringSection,
    /// HTTPS ingress: applications reached by name.
    #[serde(default)]
    pub ingress: IngressSection,
    /// Application stacks to deploy: `[[stacks]]` tables.
    #[serde(default)]
    pub stacks: Vec<StackEntry>,
    /// How clusterkit reaches the nodes.
    #[serde(default)]
    pub ssh: SshSection,
}

/// `[ssh]`: how clusterkit reaches the nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    /// Refuse any node (or jump host) whose host key is not recorded yet in
    /// `.clusterkit/known_hosts`, on every command: as `--strict-host-keys`.
    /// Default: false (a first contact records the key and prints it).
    pub strict_host_keys: Option<Spanned<bool>>,
}

/// One server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// Its name (hostname in the mesh and the swarm). Required.
    pub name: Spanned<String>,
    /// Address or host name clusterkit reaches it at over SSH. Required.
    pub address: Spanned<String>,
    /// SSH user. Default: `root`.
    pub user: Option<Spanned<String>>,
    /// SSH port. Default: 22.
    pub port: Option<Spanned<i64>>,
    /// SSH private key file. Default: the SSH agent, then `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`.
    pub key: Option<Spanned<String>>,
    /// Run commands through `sudo` (needed when `user` is not root). Default: false.
    #[serde(rename = "become")]
    pub become_: Option<Spanned<bool>>,
    /// Its mesh address, pinned. Default: allocated from `mesh.cidr` and then kept.
    pub mesh_address: Option<Spanned<String>>,
    /// `manager` or `worker`. Default: manager, up to `swarm.max_managers`.
    pub role: Option<Spanned<String>>,
    /// Whether it holds a share of the distributed storage. Default: true.
    pub storage: Option<Spanned<bool>>,
    /// Whether it serves the ingress (Caddy on 80 and 443) when `[ingress]` is
    /// on. Default: true.
    pub ingress: Option<Spanned<bool>>,
    /// A jump host the node is reached through, `[user@]host[:port]` (as
    /// ssh's ProxyJump). Default: none, the node is reached directly.
    pub jump: Option<Spanned<String>>,
}

/// `[mesh]`: the WireGuard network between the nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSection {
    /// Private IPv4 network of the mesh. Default: `10.0.0.0/24`.
    pub cidr: Option<Spanned<String>>,
    /// UDP port WireGuard listens on. Default: 51820.
    pub port: Option<Spanned<i64>>,
    /// MTU of the mesh interface. Default: 1420.
    pub mtu: Option<Spanned<i64>>,
    /// Seconds between keepalives (0 turns them off). Default: 25.
    pub keepalive: Option<Spanned<i64>>,
    /// Interface name. Default: `wg0`.
    pub interface: Option<Spanned<String>>,
    /// `auto` (kernel WireGuard where present, else userspace), `kernel` or `userspace`. Default: `auto`.
    pub backend: Option<Spanned<String>>,
}

/// `[swarm]`: Docker Swarm.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmSection {
    /// Where Swarm takes overlay subnets from; must not overlap the mesh. Default: `10.200.0.0/16`.
    pub default_addr_pool: Option<Spanned<String>>,
    /// Prefix length of each overlay subnet. Default: 24.
    pub subnet_size: Option<Spanned<i64>>,
    /// Nodes beyond this many join as workers (Raft works best with at most 7 managers). Default: 7.
    pub max_managers: Option<Spanned<i64>>,
    /// The Docker Engine package version every node runs (`docker.io`, as `apt-cache policy
    /// docker.io` shows it), installed as that version and held; `clusterkit upgrade
    /// --component docker` rolls a change node by node. Default: none (the distribution's
    /// package when Docker is missing, never changed by clusterkit).
    pub engine_version: Option<Spanned<String>>,
}

/// `[storage]`: distributed S3 storage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `garage`, `minio` or `none`. Default: `garage`.
    pub backend: Option<Spanned<String>>,
    /// Server image. Default: `dxflrs/garage:v2.5.0` (garage) or `pgsty/minio:latest` (minio).
    pub image: Option<Spanned<String>>,
    /// Directory on each node holding its share of the data. Default: `/var/lib/clusterkit/storage`.
    pub data_path: Option<Spanned<String>>,
    /// Copies kept of each object. Default: 3 (or the number of storage nodes, if fewer).
    pub replication: Option<Spanned<i64>>,
}

/// `[monitoring]`: Prometheus, Grafana, node-exporter, cAdvisor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSection {
    /// Deploy the monitoring stack. Default: true.
    pub enabled: Option<Spanned<bool>>,
    /// How long Prometheus keeps data (Prometheus duration). Default: `15d`.
    pub retention: Option<Spanned<String>>,
    /// Prometheus replicas, each on its own manager and each scraping everything, so that
    /// queries and alerts survive the loss of a node. Default: 2 (1 with a single manager).
    pub prometheus_replicas: Option<Spanned<i64>>,
    /// Grafana administrator's login; the password is generated and kept as a Swarm secret. Default: `admin`.
    pub grafana_admin_user: Option<Spanned<String>>,
    /// Run Grafana (on a manager, port 3000 over the mesh). Default: true.
    pub grafana: Option<Spanned<bool>>,
    /// Run cAdvisor on every node (per-container metrics). Default: true.
    pub cadvisor: Option<Spanned<bool>>,
    /// Run Alertmanager (on a manager, port 9093 over the mesh) and send it the alerts. Default: false.
    pub alertmanager: Option<Spanned<bool>>,
    /// Where Prometheus's, Grafana's and Alertmanager's data live: `local` (a volume on the
    /// node running the service) or `clusterkit` (the storage's volume driver; not safe for
    /// Prometheus's TSDB, see the README). Default: `local`.
    pub volume_driver: Option<Spanned<String>>,
    /// Prometheus image. Default: `prom/prometheus:v3.5.0`.
    pub prometheus_image: Option<Spanned<String>>,
    /// node-exporter image. Default: `prom/node-exporter:v1.9.1`.
    pub node_exporter_image: Option<Spanned<String>>,
    /// cAdvisor image. Default: `gcr.io/cadvisor/cadvisor:v0.49.1`.
    pub cadvisor_image: Option<Spanned<String>>,
    /// Grafana image. Default: `grafana/grafana:11.6.0`.
    pub grafana_image: Option<Spanned<String>>,
    /// Alertmanager image. Default: `prom/alertmanager:v0.28.1`.
    pub alertmanager_image: Option<Spanned<String>>,
}

/// `[ingress]`: HTTPS on every node for the services that ask for a route
/// (`clusterkit.ingress.host` in their `deploy.labels`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressSection {
    /// Run the ingress (needs storage: the certificates live on it). Default: false.
    pub enabled: Option<Spanned<bool>>,
    /// Who issues the certificates: `acme` (an ACME CA, Let's Encrypt by default) or
    /// `internal` (Caddy's own CA, for private clusters). Default: `acme`.
    pub tls: Option<Spanned<String>>,
    /// The ACME CA's directory URL (https). Default: Let's Encrypt's production directory.
    pub acme_ca: Option<Spanned<String>>,
    /// The ACME account's contact address. Default: none.
    pub acme_email: Option<Spanned<String>>,
    /// A PEM file of roots to trust for the ACME CA's own API (a private CA), relative to
    /// this file. Default: the system's roots.
    pub acme_ca_root: Option<Spanned<String>>,
    /// Caddy's image (edges and issuer). Default: `caddy:2.10.2`.
    pub image: Option<Spanned<String>>,
    /// The image the route watcher runs in: clusterkit itself is mounted into it, so it
    /// needs the C library clusterkit was built against. Default: `debian:bookworm-slim`.
    pub routes_image: Option<Spanned<String>>,
    /// Grafana by this name over HTTPS (its own login). Default: not routed.
    pub grafana_host: Option<Spanned<String>>,
    /// Prometheus by this name over HTTPS, behind the monitoring API's user
    /// (`clusterkit monitor password --api`). Default: not routed.
    pub prometheus_host: Option<Spanned<String>>,
    /// Alertmanager by this name over HTTPS, behind the monitoring API's
    /// user. Default: not routed.
    pub alertmanager_host: Option<Spanned<String>>,
}

/// One application stack.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackEntry {
    /// Stack name (as `docker stack ls` shows it). Required.
    pub name: Spanned<String>,
    /// Compose file (format 3), relative to this file. Required.
    pub file: Spanned<String>,
}

/// Turns a TOML span into a location in `file`.
pub(crate) fn located<T>(file: &Arc<SourceFile>, s: Spanned<T>) -> Located<T> {
    let span = s.span();
    Located::at(
        s.into_inner(),
        Loc::new(file, Span::new(span.start, span.end - span.start)),
    )
}

/// Converts an optional spanned value.
pub(crate) fn opt<T>(file: &Arc<SourceFile>, s: Option<Spanned<T>>) -> Option<Located<T>> {
    s.map(|s| located(file, s))
}

impl ConfigFile {
    /// Parses `clusterkit.toml`; a syntax or type error becomes a located problem.
    pub fn parse(file: &Arc<SourceFile>, problems: &mut Problems) -> Option<Self> {
        match toml::from_str::<ConfigFile>(&file.text) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(toml_problem(file, &e));
                None
            }
        }
    }
}

fn toml_problem(file: &Arc<SourceFile>, e: &toml::de::Error) -> Problem {
    let msg = e.message().trim().to_string();
    let loc = e
        .span()
        .map(|r| Loc::new(file, Span::new(r.start, r.end.saturating_sub(r.start))));
    // serde's unknown-field message names the culprit and the known fields:
    // "unknown field `cidre`, expected one of `cidr`, `port`".
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let known: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, k)| k.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let help = did_you_mean(field, known.iter().copied())
            .unwrap_or_else(|| format!("known keys here: {}", known.join(", ")));
        return Problem::error(format!("unknown key `{field}`"))
            .at(loc.as_ref(), "unknown key")
            .help(help);
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        return Problem::error(format!("missing key `{field}`"))
            .at(loc.as_ref(), format!("this table needs `{field}`"))
            .help(format!(
                "add `{field} = ...`; `clusterkit init` writes a commented example"
            ));
    }
    let first = msg
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .replace("expected i64", "expected a whole number")
        .replace("expected a boolean", "expected true or false")
        .replace("expected a string", "expected text in quotes");
    let help = if first.contains("invalid type") {
        "check the value's type: text in quotes, numbers and true/false without"
    } else {
        "see `clusterkit init` for a valid, commented clusterkit.toml"
    };
    Problem::error(lowercase_first(&first))
        .at(loc.as_ref(), "here")
        .help(help)
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The commented starter `clusterkit.toml` that `clusterkit init` writes:
/// every field at its default; nodes listed inline or taken from `inventory`.
pub fn starter(inventory: Option<&str>, nodes: &[(String, String)]) -> String {
    let mut out = String::from(
        "# clusterkit.toml: the cluster clusterkit builds.\n\
         # Every key is optional unless marked required; the values shown are the defaults.\n\
         # Check it with `clusterkit validate`, see what would be built with `clusterkit plan`.\n\n\
         # name = \"clusterkit\"            # names the cluster's networks and stacks\n",
    );
    match inventory {
        Some(inv) => out.push_str(&format!(
            "inventory = \"{inv}\"              # nodes come from this Ansible inventory\n\
             # inventory_group = \"servers\"  # only this group's hosts (default: every host)\n"
        )),
        None => {
            out.push_str("\n# One [[nodes]] table per server.\n");
            for (name, addr) in nodes {
                out.push_str(&format!(
                    "[[nodes]]\nname = \"{name}\"                # required\naddress = \"{addr}\"      # required: SSH address\n\
                     # user = \"root\"\n# port = 22\n# key = \"~/.ssh/id_ed25519\"   # default: ssh-agent, then ~/.ssh/id_ed25519, ~/.ssh/id_rsa\n\
                     # become = false             # sudo for a non-root user\n# mesh_address = \"10.0.0.1\"  # default: allocated, then kept\n\
                     # role = \"manager\"           # or \"worker\"\n# storage = true\n# ingress = true               # false: no HTTPS edge on this node\n\n"
                ));
            }
        }
    }
    out.push_str(
        "\n[mesh]                          # WireGuard full mesh\n\
         # cidr = \"10.0.0.0/24\"\n# port = 51820\n# mtu = 1420\n# keepalive = 25             # seconds; 0 = off\n\
         # interface = \"wg0\"\n# backend = \"auto\"            # auto | kernel | userspace (boringtun)\n\
         \n[swarm]                         # every node a manager, up to max_managers\n\
         # default_addr_pool = \"10.200.0.0/16\"   # overlay subnets; must not overlap mesh.cidr\n\
         # subnet_size = 24\n# max_managers = 7\n\
         # engine_version = \"20.10.24+dfsg1-1+deb12u1+b6\"  # docker.io, held; unset: the one the nodes run\n\
         \n[storage]                       # distributed S3 behind a Docker volume driver\n\
         # backend = \"garage\"          # garage | minio | none\n# image = \"dxflrs/garage:v2.5.0\"  # pulled by the nodes; or one copied with `clusterkit images push`\n\
         # data_path = \"/var/lib/clusterkit/storage\"\n# replication = 3\n\
         \n[monitoring]                    # Prometheus, Grafana, node-exporter, cAdvisor\n\
         # enabled = true\n# retention = \"15d\"\n# prometheus_replicas = 2        # each on its own manager\n# grafana_admin_user = \"admin\"   # password generated, kept as a Swarm secret\n\
         # grafana = true\n# cadvisor = true\n# alertmanager = false\n\
         # volume_driver = \"local\"      # local | clusterkit (S3-backed: see the README first)\n\
         # prometheus_image = \"prom/prometheus:v3.5.0\"\n# node_exporter_image = \"prom/node-exporter:v1.9.1\"\n\
         # cadvisor_image = \"gcr.io/cadvisor/cadvisor:v0.49.1\"\n# grafana_image = \"grafana/grafana:11.6.0\"\n\
         # alertmanager_image = \"prom/alertmanager:v0.28.1\"\n\
         \n[ingress]                       # HTTPS on every node, routes from services' labels\n\
         # enabled = false              # needs storage: certificates are kept on it\n\
         # tls = \"acme\"                 # acme | internal (Caddy's own CA, private clusters)\n\
         # acme_ca = \"https://acme-v02.api.letsencrypt.org/directory\"\n\
         # acme_email = \"ops@example.com\"\n\
         # acme_ca_root = \"ca-root.pem\"   # a private CA's root, trusted for its API\n\
         # image = \"caddy:2.10.2\"\n# routes_image = \"debian:bookworm-slim\"\n\
         # grafana_host = \"grafana.example.com\"        # the monitoring UIs by name; Prometheus's and\n\
         # prometheus_host = \"prometheus.example.com\"  # Alertmanager's ask for the monitoring API's user\n\
         # alertmanager_host = \"alertmanager.example.com\"  # (clusterkit monitor password --api)\n\
         # A service is routed by its labels:  deploy: { labels: { clusterkit.ingress.host: app.example.com,\n\
         #                                     clusterkit.ingress.port: \"8000\", clusterkit.ingress.path: /api } }\n\
         \n[ssh]                           # how clusterkit reaches the nodes\n\
         # strict_host_keys = false     # true: refuse a node whose host key is not recorded yet\n\
         \n# [[stacks]]                    # application stacks deployed onto the swarm\n\
         # name = \"app\"\n# file = \"stacks/app.yml\"\n",
    );
    out
}
