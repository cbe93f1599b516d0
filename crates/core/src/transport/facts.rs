//! Node facts, gathered in one round trip per node.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Cmd, Transport, TransportError};

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
    /// Which of the cluster's ports (2377, 7946, 4789, 51820) something listens on.
    pub ports_in_use: Vec<u16>,
    /// Which of them the Docker Engine itself holds (known when the SSH user
    /// may see other users' sockets' processes, as root does).
    pub engine_ports: Vec<u16>,
    /// The mesh interface exists.
    pub mesh_up: bool,
}

/// Ports the cluster needs on every node.
pub const CLUSTER_PORTS: &[u16] = &[2377, 7946, 4789, 51820];

/// The script: `key=value` lines, nothing that needs root.
pub const SCRIPT: &str = r#"echo "time=$(date +%s.%N)"
. /etc/os-release 2>/dev/null
echo "os_id=$ID"; echo "os_version=$VERSION_ID"; echo "codename=$VERSION_CODENAME"
echo "arch=$(uname -m)"; echo "kernel=$(uname -r)"
if [ -d /sys/module/wireguard ] || modprobe -n wireguard >/dev/null 2>&1; then echo wg=yes; else echo wg=no; fi
if d=$(docker info --format '{{.ServerVersion}} {{.Swarm.LocalNodeState}}' 2>/dev/null); then echo "docker=${d%% *}"; echo "swarm=${d#* }"; else echo docker=; echo swarm=; fi
echo "disk_kib=$(df -Pk / | awk 'NR==2 {print $4}')"
echo "init=$(cat /proc/1/comm 2>/dev/null)"
if command -v sudo >/dev/null 2>&1; then echo sudo=yes; else echo sudo=no; fi
echo "ports=$(ss -Hlntu 2>/dev/null | awk '{print $5}' | sed 's/.*://' | sort -un | tr '\n' ' ')"
echo "engine_ports=$(ss -Hlntup 2>/dev/null | grep '"dockerd"' | awk '{print $5}' | sed 's/.*://' | sort -un | tr '\n' ' ')"
if ip link show wg0 >/dev/null 2>&1; then echo mesh=yes; else echo mesh=no; fi"#;

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
        swarm: opt("swarm"),
        disk_free_mib: get("disk_kib").parse::<u64>().unwrap_or(0) / 1024,
        clock_offset_s: get("time")
            .parse::<f64>()
            .map_or(0.0, |t| outside(t, before, after)),
        init: get("init"),
        sudo: get("sudo") == "yes",
        ports_in_use: get("ports")
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| CLUSTER_PORTS.contains(p))
            .collect(),
        engine_ports: get("engine_ports")
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| CLUSTER_PORTS.contains(p))
            .collect(),
        mesh_up: get("mesh") == "yes",
    }
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
        if !ours {
            add(true, format!("port {p} is already in use by something else: the cluster needs it (free it, or change mesh.port for 51820)"));
        }
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
