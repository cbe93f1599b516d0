//! Node facts, gathered in one round trip per node.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use serde::Serialize;

use super::{Cmd, Transport, TransportError};
use crate::spec::ClusterSpec;

/// What clusterkit needs to know about a node before changing it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    /// `ID` of /etc/os-release (`debian`, `ubuntu`...).
    pub os_id: String,
    /// `VERSION_ID`.
    pub os_version: String,
    /// `VERSION_CODENAME` (`bookworm`, `jammy`...).
    pub codename: String,
    /// `uname -m`.
    pub arch: String,
    /// `uname -r`.
    pub kernel: String,
    /// Kernel WireGuard available (module loaded or loadable).
    pub wireguard_kernel: bool,
    /// Docker Engine version, if it runs.
    pub docker: Option<String>,
    /// The `docker.io` package's version, if it is installed.
    pub docker_package: Option<String>,
    /// The `docker.io` package is held (`apt-mark hold`): apt leaves its version.
    pub docker_held: bool,
    /// Swarm state (`inactive`, `active`, `pending`...), if Docker runs.
    pub swarm: Option<String>,
    /// Free space on / in MiB.
    pub disk_free_mib: u64,
    /// How far the node's clock is at least off this machine's, in seconds
    /// (negative: behind). The node read its clock somewhere inside the
    /// round trip, so this is the distance from the round trip's window, and
    /// 0 when the reading falls inside it: a slow link or a loaded machine
    /// widens the window instead of inventing a skew.
    pub clock_offset_s: f64,
    /// The init system (`systemd`, ...).
    pub init: String,
    /// `sudo` is installed.
    pub sudo: bool,
    /// IPv4 routes (every table), but the default route.
    pub routes: Vec<Route>,
    /// The engine's local address pools from `/etc/docker/daemon.json`
    /// (empty: Docker's built-in ones, [`docker_default_pools`]).
    pub engine_pools: Vec<Ipv4Net>,
    /// Which of the cluster's ports (2377, 7946, 4789, 51820) something listens on.
    pub ports_in_use: Vec<u16>,
    /// Which of them the Docker Engine itself holds (known when the SSH user
    /// may see other users' sockets' processes, as root does).
    pub engine_ports: Vec<u16>,
    /// Which of them are UDP sockets no process holds: the kernel's own,
    /// as a VXLAN device's (known when the SSH user may see every socket's
    /// process, as root does).
    pub kernel_udp_ports: Vec<u16>,
    /// The mesh interface exists.
    pub mesh_up: bool,
    /// Traces of a swarm's overlay networks: VXLAN devices in the node's own
    /// namespace (`/sys/class/net/vx-*`) and the engine's overlay
    /// namespaces (`/run/docker/netns/1-*`, `lb_*`, `ingress_sbox`). The
    /// swarm's own while the engine is in one; an earlier swarm's, left
    /// behind, when it is not (an engine stopped before it could clean up,
    /// then reinstalled): they hold 4789/udp and the network ids a new swarm
    /// hands out again.
    pub overlay: Vec<String>,
}

/// Ports the cluster needs on every node.
pub const CLUSTER_PORTS: &[u16] = &[2377, 7946, 4789, 51820];

/// The script: `key=value` lines, nothing that needs root.
///
/// Every process it starts costs a node a few milliseconds (4 to 10 ms each,
/// measured on the sandbox's hosts), so it reads files and shell builtins
/// where they say the same: 10 processes on a node without an engine, where
/// the first version started about 30 (120 ms of a node's CPU; 38 ms now).
pub const SCRIPT: &str = concat!(
    r#"echo "time=$(date +%s.%N)"
. /etc/os-release 2>/dev/null
echo "os_id=$ID"; echo "os_version=$VERSION_ID"; echo "codename=$VERSION_CODENAME"
echo "arch=$(uname -m)"; read -r k < /proc/sys/kernel/osrelease; echo "kernel=$k"
if [ -d /sys/module/wireguard ] || modprobe -n wireguard >/dev/null 2>&1; then echo wg=yes; else echo wg=no; fi
if [ -S /var/run/docker.sock ] && d=$(docker info --format '{{.ServerVersion}} {{.Swarm.LocalNodeState}}' 2>/dev/null); then echo "docker=${d%% *}"; echo "swarm=${d#* }"; else echo docker=; echo swarm=; fi
p=$(dpkg-query -W -f='${Version} ${Status}' docker.io 2>/dev/null); echo "docker_package=${p%% *}"
case " $p " in *" hold "*) echo docker_held=yes;; *) echo docker_held=no;; esac
s=$(stat -f -c '%a %S' / 2>/dev/null) && echo "disk_kib=$(( ${s% *} * ${s#* } / 1024 ))"
read -r i < /proc/1/comm; echo "init=$i"
if command -v sudo >/dev/null 2>&1; then echo sudo=yes; else echo sudo=no; fi
ss -Hlntup 2>/dev/null | awk '{n = split($5, a, ":"); all[a[n]] = 1; if ($0 ~ /"dockerd"/) eng[a[n]] = 1; if ($1 == "udp" && $0 !~ /users:/) kern[a[n]] = 1} END {printf "ports="; for (p in all) printf "%s ", p; print ""; printf "engine_ports="; for (p in eng) printf "%s ", p; print ""; printf "kernel_udp_ports="; for (p in kern) printf "%s ", p; print ""}'
if [ -e /sys/class/net/wg0 ]; then echo mesh=yes; else echo mesh=no; fi
o=; for x in "#,
    overlay_traces!(),
    r#"; do [ -e "$x" ] && o="$o$x "; done; echo "overlay=$o"
ip -4 route show table all 2>/dev/null | awk '$1 != "default" && $1 != "broadcast" && $1 != "local" && $1 != "unreachable" {d=""; for (i = 2; i < NF; i++) if ($i == "dev") d = $(i+1); print "route=" $1 " " d}'
if [ -r /etc/docker/daemon.json ]; then echo "pools=$(tr -d ' \n\t' < /etc/docker/daemon.json | grep -o '"default-address-pools":\[[^]]*\]' | grep -o '"base":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ')"; else echo pools=; fi"#
);

/// The shell globs of what a swarm's overlay leaves on a node: VXLAN devices
/// in the node's own namespace and the engine's overlay namespaces. One list
/// for [`SCRIPT`] (a literal, so a macro) and [`OVERLAY_TRACES`].
macro_rules! overlay_traces {
    () => {
        "/sys/class/net/vx-* /run/docker/netns/1-* /run/docker/netns/lb_* /run/docker/netns/ingress_sbox"
    };
}
use overlay_traces;

/// What a swarm's overlay leaves on a node, as shell globs: VXLAN devices in
/// the node's own namespace (`/sys/class/net/vx-*`) and the engine's overlay
/// namespaces under `/run/docker/netns`. [`SCRIPT`] lists those present;
/// the swarm crate removes them before a join.
pub const OVERLAY_TRACES: &str = overlay_traces!();

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How far `t` lies outside `[before, after]` (signed; 0 inside).
fn outside(t: f64, before: f64, after: f64) -> f64 {
    if t < before {
        t - before
    } else if t > after {
        t - after
    } else {
        0.0
    }
}

/// Whether `path` is one of [`OVERLAY_TRACES`], made of the characters the
/// engine names them with (a node's answer is checked before it is printed
/// or acted on).
pub fn overlay_trace(path: &str) -> bool {
    let name = ["/sys/class/net/vx-", "/run/docker/netns/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix));
    name.is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// The cluster's ports among a list the script printed (in any order,
/// maybe twice: TCP and UDP), sorted.
fn cluster_ports(list: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = list
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| CLUSTER_PORTS.contains(p))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Parses the script's output; `before` and `after` are this machine's clock
/// when the command was sent and when its output came back.
pub fn parse(text: &str, before: f64, after: f64) -> Facts {
    let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| kv.get(k).copied().unwrap_or("").trim().to_string();
    let opt = |k: &str| Some(get(k)).filter(|v| !v.is_empty());
    Facts {
        os_id: get("os_id"),
        os_version: get("os_version"),
        codename: get("codename"),
        arch: get("arch"),
        kernel: get("kernel"),
        wireguard_kernel: get("wg") == "yes",
        docker: opt("docker"),
        docker_package: opt("docker_package"),
        docker_held: get("docker_held") == "yes",
        swarm: opt("swarm"),
        disk_free_mib: get("disk_kib").parse::<u64>().unwrap_or(0) / 1024,
        clock_offset_s: get("time")
            .parse::<f64>()
            .map_or(0.0, |t| outside(t, before, after)),
        init: get("init"),
        sudo: get("sudo") == "yes",
        ports_in_use: cluster_ports(&get("ports")),
        engine_ports: cluster_ports(&get("engine_ports")),
        kernel_udp_ports: cluster_ports(&get("kernel_udp_ports")),
        mesh_up: get("mesh") == "yes",
        overlay: get("overlay")
            .split_whitespace()
            .filter(|p| overlay_trace(p))
            .map(str::to_string)
            .collect(),
        routes: text
            .lines()
            .filter_map(|l| l.strip_prefix("route="))
            .filter_map(|r| {
                let (dst, dev) = r.split_once(' ').unwrap_or((r, ""));
                let dst = if dst.contains('/') {
                    dst.to_string()
                } else {
                    format!("{dst}/32")
                };
                Some(Route {
                    dst: dst.parse().ok()?,
                    dev: dev.trim().to_string(),
                })
            })
            .collect(),
        engine_pools: get("pools")
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    }
}

/// A route in the node's tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Where it leads.
    pub dst: Ipv4Net,
    /// Through which interface.
    pub dev: String,
}

/// The engine's local address pools when `/etc/docker/daemon.json` sets
/// none: 172.17.0.0/16 to 172.31.0.0/16, and 192.168.0.0/16 (cut into /20s).
pub fn docker_default_pools() -> Vec<Ipv4Net> {
    (17..=31)
        .map(|b| Ipv4Net::new(std::net::Ipv4Addr::new(172, b, 0, 0), 16).expect("valid"))
        .chain(std::iter::once(
            Ipv4Net::new(std::net::Ipv4Addr::new(192, 168, 0, 0), 16).expect("valid"),
        ))
        .collect()
}

fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Everything wrong with a node before anything changes (pure): its own
/// facts ([`problems`]) and the address plan ([`address_problems`]).
pub fn judge(f: &Facts, node: &crate::spec::Node, spec: &ClusterSpec) -> Vec<FactProblem> {
    let mut out = problems(f, &node.ssh.user, node.ssh.become_);
    out.extend(address_problems(f, spec));
    out
}

/// The address plan, checked on one node before anything changes (pure):
/// the mesh and the swarm's address pool against the routes already there
/// (LAN, VPNs, the engine's bridges) and against the engine's local address
/// pools. Each overlap names both ranges, where each comes from and the key
/// that fixes it. The mesh's own route (on its interface) is not a conflict.
pub fn address_problems(f: &Facts, spec: &ClusterSpec) -> Vec<FactProblem> {
    let mesh = spec.mesh.cidr;
    let pool = spec.swarm.default_addr_pool;
    let iface = &spec.mesh.interface;
    let mut out = Vec::new();
    for r in &f.routes {
        if &r.dev == iface || r.dev.starts_with("veth") {
            continue;
        }
        let what = if r.dev == "docker0" || r.dev == "docker_gwbridge" || r.dev.starts_with("br-") {
            format!("the engine's bridge network {} ({})", r.dst, r.dev)
        } else {
            format!("the route to {} (dev {})", r.dst, r.dev)
        };
        if overlap(&r.dst, &mesh) {
            out.push(FactProblem {
                blocking: true,
                message: format!(
                    "{what} overlaps the mesh {mesh} (mesh.cidr): those addresses would be reached two ways; choose a mesh range this node does not use ([mesh] cidr)"
                ),
            });
        }
        // Overlay networks live in their own namespaces: only a route that is
        // not the swarm's own can clash with its pool.
        if overlap(&r.dst, &pool) {
            out.push(FactProblem {
                blocking: true,
                message: format!(
                    "{what} overlaps the swarm address pool {pool} (swarm.default_addr_pool): overlay networks would shadow it; set [swarm] default_addr_pool to a free range"
                ),
            });
        }
    }
    let (pools, from) = if f.engine_pools.is_empty() {
        (docker_default_pools(), "Docker's built-in default")
    } else {
        (
            f.engine_pools.clone(),
            "default-address-pools in /etc/docker/daemon.json",
        )
    };
    for p in pools {
        if overlap(&p, &mesh) {
            out.push(FactProblem {
                blocking: true,
                message: format!(
                    "the engine's local address pool {p} ({from}) overlaps the mesh {mesh} (mesh.cidr): the engine could give a bridge network the mesh's addresses; choose another [mesh] cidr, or set default-address-pools in /etc/docker/daemon.json"
                ),
            });
        }
        if overlap(&p, &pool) {
            out.push(FactProblem {
                blocking: true,
                message: format!(
                    "the engine's local address pool {p} ({from}) overlaps the swarm address pool {pool} (swarm.default_addr_pool): set [swarm] default_addr_pool to a free range"
                ),
            });
        }
    }
    out
}

/// A problem `clusterkit check` found on a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FactProblem {
    /// Whether clusterkit refuses to go on.
    pub blocking: bool,
    /// What is wrong and the way out.
    pub message: String,
}

/// Operating systems clusterkit installs onto.
pub const SUPPORTED_OS: &[&str] = &["debian", "ubuntu"];

/// What is wrong with a node, judged from its facts (pure).
pub fn problems(f: &Facts, user: &str, become_: bool) -> Vec<FactProblem> {
    let mut out = Vec::new();
    let mut add = |blocking: bool, message: String| out.push(FactProblem { blocking, message });
    if !SUPPORTED_OS.contains(&f.os_id.as_str()) {
        add(
            true,
            format!(
                "unsupported OS `{}` {}: clusterkit installs onto Debian and Ubuntu",
                f.os_id, f.os_version
            ),
        );
    }
    if user != "root" && !become_ {
        add(true, format!("user `{user}` is not root and ansible_become is off: set `become = true` (or ansible_become=true)"));
    }
    if user != "root" && become_ && !f.sudo {
        add(
            true,
            "sudo is not installed, but the user is not root: install sudo or connect as root"
                .into(),
        );
    }
    if f.clock_offset_s.abs() > 1.0 {
        add(false, format!("clock is {:+.1} s off this machine's: enable NTP (timedatectl set-ntp true); Raft and TLS need close clocks", f.clock_offset_s));
    }
    if f.disk_free_mib < 2048 {
        add(
            true,
            format!(
                "only {} MiB free on /: images and storage need at least 2 GiB",
                f.disk_free_mib
            ),
        );
    }
    // Any state but inactive means the engine's own swarm holds its ports
    // (pending: it is rejoining after a restart).
    let swarm_active = !matches!(f.swarm.as_deref(), None | Some("") | Some("inactive"));
    for p in &f.ports_in_use {
        let ours = match p {
            // The engine holds its gossip and control ports a moment after
            // leaving a swarm (or an interrupted join): still the engine's.
            2377 | 7946 | 4789 => swarm_active || f.engine_ports.contains(p),
            51820 => f.mesh_up,
            _ => false,
        };
        if ours {
            continue;
        }
        if *p == 4789 && f.kernel_udp_ports.contains(p) {
            // No process holds it: a VXLAN device does.
            if f.overlay.is_empty() {
                add(true, "port 4789/udp is held by a VXLAN device of another overlay network (no process holds it, and no swarm's overlay is left on this node): the swarm's overlay would collide with it; move that overlay (flannel, Calico...) to another port: `ip -d link show type vxlan` lists the devices".into());
            } else {
                add(false, format!("port 4789/udp is held by an earlier swarm's overlay, left behind on this node ({}): `clusterkit swarm up` removes it before the node joins", f.overlay.join(", ")));
            }
            continue;
        }
        add(true, format!("port {p} is already in use by something else: the cluster needs it (free it, or change mesh.port for 51820)"));
    }
    if f.docker.is_none() {
        add(
            false,
            "Docker Engine is not running: `clusterkit up` installs it".into(),
        );
    }
    out
}

/// Gathers a node's facts.
pub async fn gather(t: &dyn Transport) -> Result<Facts, TransportError> {
    // The node reads its clock between `before` and `after`, whatever the
    // load: only a reading outside that window is a skew.
    let before = now();
    let out = t.exec(&Cmd::new(SCRIPT)).await?;
    let after = now();
    Ok(parse(&out.stdout_str(), before, after))
}
