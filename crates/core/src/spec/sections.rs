//! The validators of `clusterkit.toml`'s sections, one function each:
//! what a section says, checked, with every problem located; defaults
//! where nothing is said. [`super::build`] calls them in order, then checks
//! the nodes, their roles and addresses against what they return.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::{
    check, checks, defaults, image_of, in_range, is_duration, package_version, parse_cidr, Checked,
    IngressSpec, IngressTls, Jump, MonitoringHosts, MonitoringImages, MonitoringSpec, NodeInput,
    SshTarget, StackSpec, StorageBackend, SwarmRole, WgBackend,
};
use crate::alloc::{self, allocate};
use crate::config::{
    located, opt, IngressSection, MeshSection, MonitoringSection, StackEntry, StorageSection,
    SwarmSection,
};
use crate::diag::{did_you_mean, Problem, Problems};
use crate::names::{check_address, NodeName, Port};
use crate::source::{Located, SourceFile};
use crate::state::State;

/// `[mesh]`, checked.
pub(super) struct Mesh {
    pub mesh_cidr_v: Located<String>,
    pub mesh_cidr: Option<Ipv4Net>,
    pub mesh_port: Port,
    pub mtu: u16,
    pub keepalive: u16,
    pub interface: String,
    pub backend: WgBackend,
}

/// Checks `[mesh]`.
pub(super) fn mesh(file: &Arc<SourceFile>, c: MeshSection, problems: &mut Problems) -> Mesh {
    let mesh_cidr_v =
        opt(file, c.cidr).unwrap_or_else(|| Located::default_value(defaults::MESH_CIDR.into()));
    let mesh_cidr = check(
        &mesh_cidr_v,
        problems,
        "bad network",
        "write a private IPv4 network such as 10.0.0.0/24",
        |t| parse_cidr(t),
    );
    let mesh_port = opt(file, c.port)
        .and_then(|p| {
            check(
                &p,
                problems,
                "bad port",
                "WireGuard's usual port is 51820",
                |n| Port::new(*n),
            )
        })
        .unwrap_or(Port::new(defaults::MESH_PORT.into()).expect("valid"));
    let mtu = opt(file, c.mtu)
        .and_then(|m| {
            check(
                &m,
                problems,
                "bad MTU",
                "1420 fits a 1500-byte path; WireGuard needs at least 1280",
                in_range(1280, 9000, "mesh.mtu"),
            )
        })
        .map_or(defaults::MESH_MTU, |m| m as u16);
    let keepalive = opt(file, c.keepalive)
        .and_then(|k| {
            check(
                &k,
                problems,
                "bad keepalive",
                "25 seconds keeps NAT mappings open; 0 turns keepalives off",
                in_range(0, 65535, "mesh.keepalive"),
            )
        })
        .map_or(defaults::KEEPALIVE, |k| k as u16);
    let interface = opt(file, c.interface)
        .and_then(|i| {
            check(
                &i,
                problems,
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
    let backend = opt(file, c.backend)
        .and_then(|b| {
            check(
                &b,
                problems,
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
    Mesh {
        mesh_cidr_v,
        mesh_cidr,
        mesh_port,
        mtu,
        keepalive,
        interface,
        backend,
    }
}

/// `[swarm]`, checked.
pub(super) struct Swarm {
    pub pool: Option<Ipv4Net>,
    pub subnet_size: u8,
    pub max_managers: usize,
    pub engine_version: Option<String>,
}

/// Checks `[swarm]`, its address pool against the mesh's network.
pub(super) fn swarm(
    file: &Arc<SourceFile>,
    c: SwarmSection,
    mesh_cidr: Option<Ipv4Net>,
    mesh_cidr_v: &Located<String>,
    problems: &mut Problems,
) -> Swarm {
    let pool_v = opt(file, c.default_addr_pool)
        .unwrap_or_else(|| Located::default_value(defaults::ADDR_POOL.into()));
    let pool = check(
        &pool_v,
        problems,
        "bad network",
        "write an IPv4 network such as 10.200.0.0/16",
        |t| parse_cidr(t),
    );
    let subnet_size = opt(file, c.subnet_size)
        .and_then(|s| {
            check(
                &s,
                problems,
                "bad subnet size",
                "24 gives each overlay network 254 addresses",
                in_range(16, 29, "swarm.subnet_size"),
            )
        })
        .map_or(defaults::SUBNET_SIZE, |s| s as u8);
    let max_managers = opt(file, c.max_managers)
        .and_then(|m| {
            check(
                &m,
                problems,
                "bad count",
                "Raft advises 3, 5 or 7 managers",
                in_range(1, 99, "swarm.max_managers"),
            )
        })
        .map_or(defaults::MAX_MANAGERS, |m| m as usize);
    let engine_version = opt(file, c.engine_version).and_then(|v| {
        check(
            &v,
            problems,
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
    Swarm {
        pool,
        subnet_size,
        max_managers,
        engine_version,
    }
}

/// `[storage]`, checked.
pub(super) struct Storage {
    pub storage_backend: StorageBackend,
    pub image: String,
    pub data_path: String,
    pub replication_v: Option<Located<i64>>,
    pub replication: Option<i64>,
}

/// Checks `[storage]`.
pub(super) fn storage(
    file: &Arc<SourceFile>,
    c: StorageSection,
    problems: &mut Problems,
) -> Storage {
    let storage_backend = opt(file, c.backend)
        .and_then(|b| {
            check(
                &b,
                problems,
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
    let image = opt(file, c.image)
        .and_then(|i| image_of(&i, problems))
        .unwrap_or_else(|| {
            match storage_backend {
                StorageBackend::Minio => defaults::MINIO_IMAGE,
                _ => defaults::GARAGE_IMAGE,
            }
            .into()
        });
    let data_path = opt(file, c.data_path)
        .and_then(|d| {
            check(
                &d,
                problems,
                "bad data path",
                "write a directory of clusterkit's own, such as /var/lib/clusterkit/storage",
                |s: &String| checks::data_path(s),
            )
        })
        .unwrap_or_else(|| defaults::DATA_PATH.into());
    let replication_v = opt(file, c.replication);
    let replication = replication_v.as_ref().and_then(|r| {
        check(
            r,
            problems,
            "bad count",
            "3 copies survive the loss of any node",
            in_range(1, 7, "storage.replication"),
        )
    });
    Storage {
        storage_backend,
        image,
        data_path,
        replication_v,
        replication,
    }
}

/// `[monitoring]`, checked (its Prometheus replicas settled later, against
/// the managers).
pub(super) struct Monitoring {
    pub prometheus_replicas_v: Option<Located<i64>>,
    pub prometheus_replicas: Option<i64>,
    pub monitoring: MonitoringSpec,
}

/// Checks `[monitoring]`; its volume driver against the storage backend.
pub(super) fn monitoring(
    file: &Arc<SourceFile>,
    c: MonitoringSection,
    storage_backend: StorageBackend,
    problems: &mut Problems,
) -> Monitoring {
    let prometheus_replicas_v = opt(file, c.prometheus_replicas);
    let prometheus_replicas = prometheus_replicas_v.as_ref().and_then(|r| {
        check(
            r,
            problems,
            "bad count",
            "2 replicas keep Prometheus answering when a node is lost",
            in_range(1, 7, "monitoring.prometheus_replicas"),
        )
    });
    let monitoring = MonitoringSpec {
        enabled: opt(file, c.enabled).is_none_or(|e| e.value),
        retention: opt(file, c.retention)
            .and_then(|r| {
                check(
                    &r,
                    problems,
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
        grafana_admin_user: opt(file, c.grafana_admin_user)
            .and_then(|u| {
                check(
                    &u,
                    problems,
                    "bad login",
                    "give Grafana's administrator a login such as admin",
                    |s: &String| checks::login(s),
                )
            })
            .unwrap_or_else(|| "admin".into()),
        grafana: opt(file, c.grafana).is_none_or(|e| e.value),
        cadvisor: opt(file, c.cadvisor).is_none_or(|e| e.value),
        alertmanager: opt(file, c.alertmanager).is_some_and(|e| e.value),
        volume_driver: opt(file, c.volume_driver)
            .and_then(|d| {
                check(
                    &d,
                    problems,
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
            prometheus: opt(file, c.prometheus_image)
                .and_then(|i| image_of(&i, problems))
                .unwrap_or_else(|| defaults::PROMETHEUS_IMAGE.into()),
            node_exporter: opt(file, c.node_exporter_image)
                .and_then(|i| image_of(&i, problems))
                .unwrap_or_else(|| defaults::NODE_EXPORTER_IMAGE.into()),
            cadvisor: opt(file, c.cadvisor_image)
                .and_then(|i| image_of(&i, problems))
                .unwrap_or_else(|| defaults::CADVISOR_IMAGE.into()),
            grafana: opt(file, c.grafana_image)
                .and_then(|i| image_of(&i, problems))
                .unwrap_or_else(|| defaults::GRAFANA_IMAGE.into()),
            alertmanager: opt(file, c.alertmanager_image)
                .and_then(|i| image_of(&i, problems))
                .unwrap_or_else(|| defaults::ALERTMANAGER_IMAGE.into()),
        },
    };
    Monitoring {
        prometheus_replicas_v,
        prometheus_replicas,
        monitoring,
    }
}

/// Checks `[ingress]`: it needs storage (the certificates live there); the
/// CA's URL is https, the contact an address, the root file exists.
pub(super) fn ingress(
    file: &Arc<SourceFile>,
    c: IngressSection,
    storage_backend: StorageBackend,
    monitoring: &MonitoringSpec,
    file_exists: &dyn Fn(&str) -> Option<PathBuf>,
    problems: &mut Problems,
) -> IngressSpec {
    let d = IngressSpec::default();
    let enabled_v = opt(file, c.enabled);
    let enabled = enabled_v.as_ref().is_some_and(|e| e.value);
    if enabled && storage_backend == StorageBackend::None {
        problems.push(
            Problem::error("the ingress needs storage, but storage.backend is `none`")
                .at(enabled_v.as_ref().and_then(|e| e.loc.as_ref()), "turned on here")
                .help("its certificates and ACME account are kept on the cluster's storage: set storage.backend to garage or minio, or leave the ingress off"),
        );
    }
    let tls = opt(file, c.tls)
        .and_then(|t| {
            check(
                &t,
                problems,
                "unknown issuer",
                "choose acme (Let's Encrypt or the CA of acme_ca) or internal (Caddy's own CA)",
                |s: &String| match s.as_str() {
                    "acme" => Ok(IngressTls::Acme),
                    "internal" => Ok(IngressTls::Internal),
                    other => Err(format!("ingress.tls `{other}` is not acme or internal")),
                },
            )
        })
        .unwrap_or(d.tls);
    let acme_ca = opt(file, c.acme_ca)
        .and_then(|u| {
            check(
                &u,
                problems,
                "bad CA URL",
                "write the ACME directory's https URL, such as https://acme-v02.api.letsencrypt.org/directory",
                |s: &String| checks::https_url(s).map(|()| s.clone()),
            )
        })
        .unwrap_or(d.acme_ca);
    let acme_email = opt(file, c.acme_email).and_then(|e| {
        check(
            &e,
            problems,
            "bad address",
            "write the address the CA may write to, such as ops@example.com",
            |s: &String| checks::email(s).map(|()| s.clone()),
        )
    });
    let acme_ca_root = opt(file, c.acme_ca_root).and_then(|r| match file_exists(&r.value) {
        Some(p) => Some(p),
        None => {
            problems.push(
                Problem::error(format!("CA root file `{}` does not exist", r.value))
                    .at(r.loc.as_ref(), "not found")
                    .help("paths are relative to the directory of clusterkit.toml"),
            );
            None
        }
    });
    // The monitoring UIs by name: each a name a certificate can be had
    // for, of a UI that runs, on a ingress that runs.
    let mut host = |v: Option<toml::Spanned<String>>, key: &str, runs: bool, turn_on: &str| {
        let v = opt(file, v)?;
        let name = check(
            &v,
            problems,
            "bad name",
            "write the DNS name the UI is served at, such as grafana.example.com",
            |s: &String| {
                checks::certificate_name(s)
                    .map_err(|why| format!("ingress.{key} `{}` is {why}", crate::names::shown(s)))
            },
        )?;
        let missing = if !enabled {
            Some("the ingress is off (ingress.enabled)".to_string())
        } else if !monitoring.enabled {
            Some("monitoring is off (monitoring.enabled)".to_string())
        } else if !runs {
            Some(format!("it does not run ({turn_on} = false)"))
        } else {
            None
        };
        if let Some(why) = missing {
            problems.push(
                Problem::error(format!(
                    "ingress.{key} names a UI that is not served: {why}"
                ))
                .at(v.loc.as_ref(), "asked for here")
                .help(format!("turn it on, or remove ingress.{key}")),
            );
            return None;
        }
        Some(name)
    };
    let monitoring_hosts = MonitoringHosts {
        grafana: host(
            c.grafana_host,
            "grafana_host",
            monitoring.grafana,
            "monitoring.grafana",
        ),
        prometheus: host(
            c.prometheus_host,
            "prometheus_host",
            true,
            "monitoring.enabled",
        ),
        alertmanager: host(
            c.alertmanager_host,
            "alertmanager_host",
            monitoring.alertmanager,
            "monitoring.alertmanager",
        ),
    };
    let named: Vec<&String> = [
        &monitoring_hosts.grafana,
        &monitoring_hosts.prometheus,
        &monitoring_hosts.alertmanager,
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(twice) = named
        .iter()
        .enumerate()
        .find(|(i, h)| named[..*i].contains(h))
        .map(|(_, h)| h)
    {
        problems.push(
            Problem::error(format!("`{twice}` names two monitoring UIs in [ingress]"))
                .help("give each UI its own name (a name serves one UI)"),
        );
    }
    IngressSpec {
        monitoring: monitoring_hosts,
        enabled,
        tls,
        acme_ca,
        acme_email,
        acme_ca_root,
        image: opt(file, c.image)
            .and_then(|i| image_of(&i, problems))
            .unwrap_or(d.image),
        routes_image: opt(file, c.routes_image)
            .and_then(|i| image_of(&i, problems))
            .unwrap_or(d.routes_image),
    }
}

/// Checks `[[stacks]]`: names, duplicates, files that exist.
pub(super) fn stacks(
    file: &Arc<SourceFile>,
    c: Vec<StackEntry>,
    stack_exists: &dyn Fn(&str) -> Option<PathBuf>,
    problems: &mut Problems,
) -> Vec<StackSpec> {
    let mut stacks: Vec<StackSpec> = Vec::new();
    let mut stack_names: HashMap<String, Located<String>> = HashMap::new();
    for s in c {
        let (name, path) = (located(file, s.name), located(file, s.file));
        if check(
            &name,
            problems,
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
    stacks
}

/// Checks each node: its name, address and SSH settings, role, storage,
/// pinned mesh address (inside the mesh, not pinned twice), jump host; two
/// nodes of one name or one address are refused.
pub(super) fn nodes(
    inputs: &[NodeInput],
    mesh_cidr: Option<Ipv4Net>,
    mesh_cidr_v: &Located<String>,
    problems: &mut Problems,
) -> Vec<Checked> {
    let mut nodes: Vec<Checked> = Vec::new();
    let mut by_name: HashMap<String, &NodeInput> = HashMap::new();
    let mut by_endpoint: HashMap<(String, u16), &NodeInput> = HashMap::new();
    let mut by_pin: HashMap<Ipv4Addr, &NodeInput> = HashMap::new();
    for n in inputs {
        let name = check(
            &n.name,
            problems,
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
        let addr_ok = check(&n.address, problems, "not an address", "give the server's IP address or DNS name (`ansible_host=` in an inventory, `address =` in clusterkit.toml)", |s: &String| check_address(s)).is_some();
        let port = n
            .port
            .as_ref()
            .and_then(|p| {
                check(
                    p,
                    problems,
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
                problems,
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
                problems,
                "unknown role",
                "a node is a `manager` or a `worker`",
                |s: &String| match s.as_str() {
                    "manager" => Ok(SwarmRole::Manager),
                    "worker" => Ok(SwarmRole::Worker),
                    other => Err(format!("swarm role `{other}` is not manager or worker")),
                },
            )
        });
        let flag = |v: &Option<Located<String>>, what: &str, problems: &mut Problems| {
            v.as_ref()
                .and_then(|s| {
                    check(
                        s,
                        problems,
                        "not a boolean",
                        "write true or false",
                        |t: &String| match t.to_ascii_lowercase().as_str() {
                            "true" | "yes" | "1" => Ok(true),
                            "false" | "no" | "0" => Ok(false),
                            other => Err(format!("{what} must be true or false, not `{other}`")),
                        },
                    )
                })
                .unwrap_or(true)
        };
        let storage = flag(&n.storage, "storage", problems);
        let ingress = flag(&n.ingress, "ingress", problems);
        let pin = n.mesh_address.as_ref().and_then(|m| {
            let addr = check(m, problems, "not an IPv4 address", "write an address inside mesh.cidr, e.g. 10.0.0.5", |t: &String| t.parse::<Ipv4Addr>().map_err(|_| format!("mesh address `{t}` is not an IPv4 address")))?;
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
                problems,
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
                ingress,
            });
        }
    }
    nodes
}

/// The storage's number of copies: the one asked for, else the one the store
/// was made with, else up to 3 (one per storage node). A running store's
/// number cannot change; more copies than storage nodes is an error, or a
/// warning for a store that lost nodes.
pub(super) fn replication(
    nodes: &[Checked],
    previous: &State,
    storage_backend: StorageBackend,
    replication: Option<i64>,
    replication_v: Option<&Located<i64>>,
    problems: &mut Problems,
) -> u8 {
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
                    replication_v.and_then(|l| l.loc.as_ref()),
                    "changed",
                )
                .help(format!(
                    "the number of copies of a running store cannot change: put back {m} (or remove the line); \
                     a new number needs a new store (`clusterkit down --purge`, then `up`)"
                )),
            );
        }
    }
    match replication.or(made.map(i64::from)) {
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
                    replication_v.and_then(|l| l.loc.as_ref()),
                    "too many copies",
                )
                .help("lower storage.replication, or let more nodes hold storage"),
            );
            r as u8
        }
        Some(r) => r as u8,
        None => storage_nodes.clamp(1, 3) as u8,
    }
}

/// Every node's mesh address (recorded ones kept, pins honoured, the others
/// allocated; a renumbering is a warning, a mesh too small an error) and
/// the state to record: the addresses, the mesh, the storage's copies.
pub(super) fn addresses(
    nodes: &[Checked],
    previous: &State,
    mesh_cidr: Option<Ipv4Net>,
    mesh_cidr_v: &Located<String>,
    replication: Option<u8>,
    problems: &mut Problems,
) -> (BTreeMap<NodeName, Ipv4Addr>, State) {
    let mut state = previous.clone();
    if let (Some(r), false) = (replication, nodes.is_empty()) {
        state.storage_replication = Some(r);
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
    (addresses, state)
}

/// The nodes as written: from the inventory (its group `inventory_group`),
/// or from `[[nodes]]`; both, or neither, is an error.
pub(super) fn inputs(
    file: &Arc<SourceFile>,
    has_config: bool,
    inventory_group: Option<toml::Spanned<String>>,
    nodes: Vec<crate::config::NodeEntry>,
    inventory: Option<&crate::inventory::Inventory>,
    problems: &mut Problems,
) -> Vec<NodeInput> {
    let group = opt(file, inventory_group);
    let mut inputs: Vec<NodeInput> = Vec::new();
    if let Some(inv) = inventory {
        if let Some(first) = nodes.into_iter().next() {
            let first = located(file, first.name);
            problems.push(
                Problem::error("nodes are given twice: by an inventory and by [[nodes]]")
                    .at(first.loc.as_ref(), "[[nodes]] here")
                    .help("keep one: remove the [[nodes]] tables, or the inventory"),
            );
        } else {
            inputs = inv.nodes(group.as_ref(), problems);
        }
    } else if has_config {
        for n in nodes {
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
                ingress: opt(file, n.ingress).map(|s| Located {
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
    inputs
}
