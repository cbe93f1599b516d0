//! What reaches the nodes (feature `remote`): keys made there, the mesh
//! converged, its status, key rotation, the userspace binary's upgrade.

use std::collections::BTreeMap;
use std::sync::Arc;

use clusterkit_core::spec::{ClusterSpec, WgBackend};
use clusterkit_core::transport::facts::Facts;
use clusterkit_core::transport::{fan_out, Cmd, Transport, TransportError, Upload, UploadOutcome};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{plan, NodeMesh, WgPublicKey};
use crate::render;

/// Where the userspace implementation is installed on a node.
pub const USERSPACE_PATH: &str = "/usr/local/bin/clusterkit-wg-userspace";
const FIREWALL_SCRIPT: &str = "/usr/local/lib/clusterkit/firewall.sh";
const FIREWALL_UNIT_PATH: &str = "/etc/systemd/system/clusterkit-firewall.service";
const ENGINE_DROPIN_PATH: &str = "/etc/systemd/system/docker.service.d/clusterkit-firewall.conf";
/// The node's mesh address, one line, readable by all: what the host-network
/// exporters bind to (their entrypoints read it), so they listen on the mesh
/// only, not on every address the node has.
pub const MESH_ADDRESS_PATH: &str = "/etc/clusterkit/mesh-address";

/// Errors of the mesh.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// A remote operation failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A node printed something that is not a public key.
    #[error("{node}: `wg pubkey` printed `{text}`, not a public key: is wireguard-tools installed (apt-get install wireguard-tools)?")]
    BadKey {
        /// Node.
        node: String,
        /// What it printed.
        text: String,
    },
    /// The node needs the userspace implementation and none fits.
    #[error("{node}: its kernel has no WireGuard and no userspace binary is at hand for {arch}: load the wireguard module, or build clusterkit-wg-userspace for {arch} and set CLUSTERKIT_WG_USERSPACE to it")]
    NoUserspaceBinary {
        /// Node.
        node: String,
        /// Its architecture.
        arch: String,
    },
    /// `mesh.backend = "kernel"` but the node has no module.
    #[error("{node}: mesh.backend is `kernel` but the kernel has no WireGuard module: set mesh.backend = \"auto\" to use the userspace implementation")]
    KernelMissing {
        /// Node.
        node: String,
    },
    /// The node has no key yet: the mesh was never built there.
    #[error("{node} has no WireGuard key yet: build the mesh first with `clusterkit wg up`")]
    NoKey {
        /// Node.
        node: String,
    },
    /// Some pairs of nodes cannot reach each other over the mesh.
    #[error("the mesh is not full: {}", .0.join("; "))]
    Unreachable(Vec<String>),
    /// Several nodes failed; each is listed.
    #[error("{} node(s) failed:\n{}", .0.len(), .0.iter().map(|(n, e)| format!("  {n}: {e}")).collect::<Vec<_>>().join("\n"))]
    Nodes(Vec<(String, WgError)>),
}

/// Collects per-node results: all values, or every failure.
fn all_ok<T>(results: Vec<(String, Result<T, WgError>)>) -> Result<BTreeMap<String, T>, WgError> {
    let mut ok = BTreeMap::new();
    let mut failed = Vec::new();
    for (n, r) in results {
        match r {
            Ok(v) => {
                ok.insert(n, v);
            }
            Err(e) => failed.push((n, e)),
        }
    }
    if failed.is_empty() {
        Ok(ok)
    } else {
        Err(WgError::Nodes(failed))
    }
}

/// Makes the node's private key unless it exists (mode 0600, on the node) and
/// returns the public key. The private key is never read by clusterkit.
pub async fn ensure_key(t: &dyn Transport, interface: &str) -> Result<WgPublicKey, WgError> {
    let key = format!("/etc/wireguard/{interface}.key");
    let cmd = Cmd::new(format!(
        "umask 077; mkdir -p /etc/wireguard; [ -s {key} ] || wg genkey > {key}; chmod 600 {key}; wg pubkey < {key}"
    ));
    let out = t.exec(&cmd).await?.stdout_str();
    WgPublicKey::parse(&out).map_err(|_| WgError::BadKey {
        node: t.node().into(),
        text: out.trim().into(),
    })
}

/// What converging one node changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeChange {
    /// The userspace binary or its drop-in was written.
    pub userspace_installed: bool,
    /// The running interface's userspace binary is not the one wanted and
    /// was left running (not a change: `clusterkit upgrade` rolls it).
    pub userspace_outdated: bool,
    /// The firewall script or unit was (re)written and applied.
    pub firewall: bool,
    /// The wg-quick file was written.
    pub conf_written: bool,
    /// The interface was started (it was down).
    pub started: bool,
    /// The interface was restarted (its own settings changed).
    pub restarted: bool,
    /// Peers were changed live, without a restart.
    pub peers_synced: bool,
}

impl NodeChange {
    /// Whether anything changed on the node.
    pub fn any(&self) -> bool {
        Self {
            userspace_outdated: false,
            ..self.clone()
        } != Self::default()
    }

    /// What changed, in words (`config written`, `peers updated live`...).
    pub fn what(&self) -> Vec<&'static str> {
        [
            (self.userspace_installed, "userspace wireguard installed"),
            (
                self.userspace_outdated,
                "another userspace wireguard runs: left running (`clusterkit upgrade --component mesh` rolls it node by node)",
            ),
            (self.firewall, "firewall applied"),
            (self.conf_written, "config written"),
            (self.started, "interface started"),
            (self.restarted, "interface restarted"),
            (self.peers_synced, "peers updated live"),
        ]
        .into_iter()
        .filter(|(done, _)| *done)
        .map(|(_, w)| w)
        .collect()
    }
}

/// This machine's userspace implementation, to upload: the file named by
/// `CLUSTERKIT_WG_USERSPACE`, else `clusterkit-wg-userspace` beside the
/// running executable; `None` when neither is there (nodes that already run
/// one keep it).
pub fn local_userspace_binary() -> Option<Vec<u8>> {
    clusterkit_core::transport::local_helper("CLUSTERKIT_WG_USERSPACE", "clusterkit-wg-userspace")
}

/// The userspace binary to upload, and the architecture it was built for.
#[derive(Debug, Clone, Copy)]
pub struct UserspaceBinary<'a> {
    /// The executable.
    pub bytes: &'a [u8],
    /// `uname -m` of the machines it runs on (`x86_64`).
    pub arch: &'a str,
    /// Whether a running interface's different binary is replaced (and the
    /// interface restarted) here. `up` leaves it (every node at once would cut
    /// the whole mesh for a moment); `upgrade` rolls it node by node.
    pub replace_running: bool,
}

impl UserspaceBinary<'_> {
    /// The executable's SHA-256 (hex), as `sha256sum` prints it on a node.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.bytes))
    }
}

/// The hash `sha256sum` printed, when the command succeeded.
fn printed_sha256(out: &clusterkit_core::transport::ExecOutput) -> Option<String> {
    (out.status == 0)
        .then(|| {
            out.stdout_str()
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .flatten()
}

/// Converges one node: userspace implementation where needed, firewall, the
/// wg-quick file, the service; a peer change is applied live, an interface
/// change restarts the interface, nothing changed touches nothing.
pub async fn apply_node(
    t: &dyn Transport,
    m: &NodeMesh,
    facts: &Facts,
    backend: WgBackend,
    binary: Option<UserspaceBinary<'_>>,
) -> Result<NodeChange, WgError> {
    let mut change = NodeChange::default();
    let iface = &m.interface;
    let unit = format!("wg-quick@{iface}");
    let mut reload = false;
    let needs_userspace = match backend {
        WgBackend::Kernel if !facts.wireguard_kernel => {
            return Err(WgError::KernelMissing {
                node: t.node().into(),
            })
        }
        WgBackend::Kernel => false,
        WgBackend::Auto => !facts.wireguard_kernel,
        WgBackend::Userspace => true,
    };
    if needs_userspace {
        let a = match binary.filter(|b| b.arch == facts.arch) {
            // A node that already has a userspace binary keeps it when this
            // machine has none to give (a CLI installed alone): replacing it
            // is `upgrade`'s.
            None if installed_userspace(t).await?.is_some() => UploadOutcome::Unchanged,
            None => {
                return Err(WgError::NoUserspaceBinary {
                    node: t.node().into(),
                    arch: facts.arch.clone(),
                })
            }
            Some(bin) => {
                if !bin.replace_running {
                    let out = t
                        .exec_raw(
                            &Cmd::new(format!(
                                "systemctl is-active --quiet {unit} && sha256sum {USERSPACE_PATH}"
                            )),
                            None,
                        )
                        .await?;
                    change.userspace_outdated =
                        printed_sha256(&out).is_some_and(|h| h != bin.sha256());
                }
                if change.userspace_outdated {
                    UploadOutcome::Unchanged
                } else {
                    t.upload(&Upload {
                        content: bin.bytes,
                        path: USERSPACE_PATH,
                        mode: 0o755,
                        owner: None,
                    })
                    .await?
                }
            }
        };
        let dropin = render::userspace_dropin(USERSPACE_PATH);
        let path = format!("/etc/systemd/system/{unit}.service.d/clusterkit.conf");
        let b = t
            .upload(&Upload {
                content: dropin.as_bytes(),
                path: &path,
                mode: 0o644,
                owner: None,
            })
            .await?;
        change.userspace_installed = a == UploadOutcome::Written || b == UploadOutcome::Written;
        reload |= b == UploadOutcome::Written;
    }
    let script = render::firewall_script(iface);
    let a = t
        .upload(&Upload {
            content: script.as_bytes(),
            path: FIREWALL_SCRIPT,
            mode: 0o755,
            owner: None,
        })
        .await?;
    let b = t
        .upload(&Upload {
            content: render::FIREWALL_UNIT.as_bytes(),
            path: FIREWALL_UNIT_PATH,
            mode: 0o644,
            owner: None,
        })
        .await?;
    let c = t
        .upload(&Upload {
            content: render::ENGINE_DROPIN.as_bytes(),
            path: ENGINE_DROPIN_PATH,
            mode: 0o644,
            owner: None,
        })
        .await?;
    change.firewall = [a, b, c].contains(&UploadOutcome::Written);
    reload |= b == UploadOutcome::Written || c == UploadOutcome::Written;
    if reload {
        t.exec(&Cmd::new("systemctl daemon-reload")).await?;
    }
    if !change.firewall {
        // Files unchanged: the rules themselves may not be (drift).
        let check = t.exec_raw(&Cmd::new(render::FIREWALL_CHECK), None).await?;
        change.firewall = check.status != 0;
    }
    if change.firewall {
        t.exec(&Cmd::new("systemctl enable clusterkit-firewall.service >/dev/null 2>&1; systemctl restart clusterkit-firewall.service")).await?;
    }

    let address = format!("{}\n", m.address);
    t.upload(&Upload {
        content: address.as_bytes(),
        path: MESH_ADDRESS_PATH,
        mode: 0o644,
        owner: None,
    })
    .await?;

    let conf = render::wg_quick(m);
    let old = t
        .exec_raw(&Cmd::new("cat ").arg(&m.conf_file()), None)
        .await?
        .stdout_str();
    let written = t
        .upload(&Upload {
            content: conf.as_bytes(),
            path: &m.conf_file(),
            mode: 0o600,
            owner: None,
        })
        .await?
        == UploadOutcome::Written;
    change.conf_written = written;
    let state = t
        .exec_raw(
            &Cmd::new(format!(
                "systemctl is-active {unit}; systemctl is-enabled {unit}"
            )),
            None,
        )
        .await?
        .stdout_str();
    let mut lines = state.lines();
    let active = lines.next() == Some("active");
    let enabled = lines.next() == Some("enabled");
    if !enabled {
        t.exec(&Cmd::new(format!("systemctl enable {unit} 2>/dev/null")))
            .await?;
    }
    let start_cmd = |verb: &str| {
        Cmd::new(format!(
            "systemctl {verb} {unit} || {{ journalctl -u {unit} -n 15 --no-pager >&2; exit 1; }}"
        ))
    };
    if !active {
        // An interface left by a hand-run wg-quick would make the service fail: remove it first.
        t.exec(&Cmd::new(format!(
            "ip link show {iface} >/dev/null 2>&1 && ip link delete {iface}; true"
        )))
        .await?;
        t.exec(&start_cmd("start")).await?;
        change.started = true;
    } else if written || change.userspace_installed {
        let old_iface = old.split("\n[Peer]").next().unwrap_or("");
        if !old_iface.contains(&render::interface_section(m)) || change.userspace_installed {
            t.exec(&start_cmd("restart")).await?;
            change.restarted = true;
        } else {
            t.exec(&Cmd::new(render::sync_peers_script(m))).await?;
            change.peers_synced = true;
        }
    }
    Ok(change)
}

/// One directed pair of the mesh as `wg status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairStatus {
    /// The node asked.
    pub from: String,
    /// Its peer.
    pub to: String,
    /// Seconds since the latest handshake; `None`: never.
    pub handshake_age_s: Option<u64>,
    /// Ping round trip over the mesh in ms; `None`: no answer.
    pub ping_ms: Option<f64>,
}

/// The mesh's pairs as a table, a line per directed pair:
/// `FROM TO HANDSHAKE PING`.
///
/// ```
/// # use clusterkit_wg::{PairStatus, PairTable};
/// let pair = PairStatus { from: "node1".into(), to: "node2".into(), handshake_age_s: Some(4), ping_ms: None };
/// let table = PairTable(&[pair]).to_string();
/// assert!(table.lines().nth(1).unwrap().contains("4 s ago  no answer"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PairTable<'a>(pub &'a [PairStatus]);

impl PairTable<'_> {
    /// Every pair answered its ping.
    pub fn all_answer(&self) -> bool {
        self.0.iter().all(|p| p.ping_ms.is_some())
    }
}

impl std::fmt::Display for PairTable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<10} {:<10} {:>10} {:>10}",
            "FROM", "TO", "HANDSHAKE", "PING"
        )?;
        for p in self.0 {
            writeln!(
                f,
                "{:<10} {:<10} {:>10} {:>10}",
                p.from,
                p.to,
                p.handshake_age_s
                    .map_or("never".into(), |s| format!("{s} s ago")),
                p.ping_ms
                    .map_or("no answer".into(), |ms| format!("{ms:.2} ms"))
            )?;
        }
        Ok(())
    }
}

/// Shell reporting the backend, handshakes and a ping to each peer, in one round trip.
fn status_script(m: &NodeMesh) -> String {
    let mut s = format!(
        "IF={iface}\nif [ -S /var/run/wireguard/$IF.sock ]; then echo mode userspace; else echo mode kernel; fi\necho now $(date +%s)\n\
         wg show $IF latest-handshakes 2>/dev/null | sed 's/^/hs /'\n",
        iface = m.interface
    );
    for p in &m.peers {
        // A few tries: a handshake may be under way.
        s.push_str(&format!(
            "( for i in 1 2 3 4 5; do r=$(ping -c1 -W1 {ip} 2>/dev/null | sed -n 's/.*time=\\([0-9.]*\\) ms.*/\\1/p'); [ -n \"$r\" ] && break; done; echo ping {ip} ${{r:--}} ) &\n",
            ip = p.mesh_address
        ));
    }
    s.push_str("wait\n");
    s
}

/// Parses the status script's output for one node (pure; backend-aware
/// handshake ages: boringtun reports seconds since, the kernel a Unix time).
pub fn parse_status(m: &NodeMesh, out: &str) -> Vec<PairStatus> {
    let mut userspace = false;
    let mut now = 0u64;
    let mut hs: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ping: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["mode", m] => userspace = *m == "userspace",
            ["now", n] => now = n.parse().unwrap_or(0),
            ["hs", key, t] => {
                hs.insert(key, t.parse().unwrap_or(0));
            }
            ["ping", ip, r] => {
                ping.insert(ip, r.parse().ok());
            }
            _ => {}
        }
    }
    m.peers
        .iter()
        .map(|p| {
            let raw = hs.get(p.public_key.as_str()).copied().unwrap_or(0);
            let ping_ms = ping
                .get(p.mesh_address.to_string().as_str())
                .copied()
                .flatten();
            let age = match (raw, userspace) {
                // boringtun reports whole seconds since the handshake: 0 is
                // "never" or "under a second ago". A ping through the tunnel
                // needs a session, so with one it is the latter.
                (0, true) if ping_ms.is_some() => Some(0),
                (0, _) => None,
                (t, true) => Some(t),
                (t, false) => Some(now.saturating_sub(t)),
            };
            PairStatus {
                from: m.node.clone(),
                to: p.name.clone(),
                handshake_age_s: age,
                ping_ms,
            }
        })
        .collect()
}

/// Every node's public key, in parallel.
pub async fn keys(
    nodes: &[Arc<dyn Transport>],
    interface: &str,
) -> Result<BTreeMap<String, WgPublicKey>, WgError> {
    let results = fan_out(nodes, 16, |t| async move { ensure_key(t, interface).await }).await;
    all_ok(results)
}

/// Every pair's handshake and ping, all nodes in parallel.
pub async fn status(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Vec<PairStatus>, WgError> {
    let iface = &spec.mesh.interface;
    // Read-only: a status never makes a key.
    let results = fan_out(nodes, 16, |t| async move { public_key(t, iface).await }).await;
    let meshes = plan(spec, &all_ok(results)?);
    pair_status(nodes, &meshes).await
}

/// The node's public key, derived from its key file; an error when there is none yet.
pub async fn public_key(t: &dyn Transport, interface: &str) -> Result<WgPublicKey, WgError> {
    let key = format!("/etc/wireguard/{interface}.key");
    let out = t
        .exec_raw(&Cmd::new(format!("wg pubkey < {key}")), None)
        .await?;
    if out.status != 0 {
        return Err(WgError::NoKey {
            node: t.node().into(),
        });
    }
    let text = out.stdout_str();
    WgPublicKey::parse(&text).map_err(|_| WgError::BadKey {
        node: t.node().into(),
        text: text.trim().into(),
    })
}

/// Every pair's handshake and ping for meshes already computed, all nodes in parallel.
async fn pair_status(
    nodes: &[Arc<dyn Transport>],
    meshes: &[NodeMesh],
) -> Result<Vec<PairStatus>, WgError> {
    let results = fan_out(nodes, 16, |t| {
        let m = meshes.iter().find(|m| m.node == t.node()).cloned();
        async move {
            let Some(m) = m else { return Ok(Vec::new()) };
            let out = t.exec_raw(&Cmd::new(status_script(&m)), None).await?;
            Ok::<_, WgError>(parse_status(&m, &out.stdout_str()))
        }
    })
    .await;
    Ok(all_ok(results)?.into_values().flatten().collect())
}

/// What [`up`] did on each node.
#[derive(Debug, Clone, Serialize)]
pub struct MeshReport {
    /// Per node, what changed.
    pub changes: BTreeMap<String, NodeChange>,
    /// Every pair, after convergence.
    pub pairs: Vec<PairStatus>,
}

/// Builds or converges the whole mesh: keys, files and services on every
/// node in parallel, then proves it with a ping between every pair.
pub async fn up(
    nodes: &[Arc<dyn Transport>],
    facts: &BTreeMap<String, Facts>,
    spec: &ClusterSpec,
    binary: Option<UserspaceBinary<'_>>,
) -> Result<MeshReport, WgError> {
    let keys = keys(nodes, &spec.mesh.interface).await?;
    let meshes = plan(spec, &keys);
    let results = fan_out(nodes, 16, |t| {
        let m = meshes.iter().find(|m| m.node == t.node());
        let f = facts.get(t.node());
        async move {
            let (Some(m), Some(f)) = (m, f) else {
                return Ok(NodeChange::default());
            };
            apply_node(t, m, f, spec.mesh.backend, binary).await
        }
    })
    .await;
    let changes = all_ok(results)?;
    // The keys and meshes are known already: no second round of key reads.
    let pairs = pair_status(nodes, &meshes).await?;
    let broken: Vec<String> = pairs
        .iter()
        .filter(|p| p.ping_ms.is_none())
        .map(|p| format!("{} cannot reach {} over the mesh", p.from, p.to))
        .collect();
    if !broken.is_empty() {
        return Err(WgError::Unreachable(broken));
    }
    Ok(MeshReport { changes, pairs })
}

/// The SHA-256 (hex) of the userspace binary installed on a node; `None`
/// when there is none.
pub async fn installed_userspace(t: &dyn Transport) -> Result<Option<String>, WgError> {
    let out = t
        .exec_raw(&Cmd::new("sha256sum ").arg(USERSPACE_PATH), None)
        .await?;
    Ok(printed_sha256(&out))
}

/// A new userspace binary on one node of a running mesh, as a step of a
/// roll (`clusterkit_swarm::roll::roll`): [`upgrade_node`], waiting up to a
/// minute for every pair to and from the node.
pub struct BinaryRoll<'a> {
    /// Every node of the mesh.
    pub nodes: &'a [Arc<dyn Transport>],
    /// The cluster.
    pub spec: &'a ClusterSpec,
    /// The node's facts.
    pub facts: &'a Facts,
    /// The binary it gets.
    pub binary: UserspaceBinary<'a>,
}

#[async_trait::async_trait]
impl clusterkit_core::roll::Work for BinaryRoll<'_> {
    async fn replace(
        &self,
        t: &Arc<dyn Transport>,
        _via: Option<&Arc<dyn Transport>>,
        say: clusterkit_core::roll::Say<'_>,
    ) -> Result<(), clusterkit_core::engine::BoxError> {
        let node = t.node();
        say(&format!(
            "{node}: replacing userspace wireguard and restarting the tunnel"
        ));
        upgrade_node(
            self.nodes,
            self.spec,
            node,
            self.facts,
            Some(self.binary),
            std::time::Duration::from_secs(60),
        )
        .await?;
        say(&format!("{node}: every pair answers"));
        Ok(())
    }
}

/// Converges one node of a running mesh (a new userspace binary restarts
/// its interface), then waits, up to `patience`, until every pair to and
/// from it answers again. The other nodes are not touched.
pub async fn upgrade_node(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    node: &str,
    facts: &Facts,
    binary: Option<UserspaceBinary<'_>>,
    patience: std::time::Duration,
) -> Result<NodeChange, WgError> {
    let Some(t) = nodes.iter().find(|t| t.node() == node) else {
        return Err(WgError::Unreachable(vec![format!(
            "{node} is not connected"
        )]));
    };
    let meshes = plan(spec, &keys(nodes, &spec.mesh.interface).await?);
    let Some(m) = meshes.iter().find(|m| m.node == node) else {
        return Err(WgError::Unreachable(vec![format!(
            "{node} is not in the mesh"
        )]));
    };
    let change = apply_node(t.as_ref(), m, facts, spec.mesh.backend, binary).await?;
    let started = std::time::Instant::now();
    loop {
        let pairs = pair_status(nodes, &meshes).await?;
        let broken: Vec<String> = pairs
            .iter()
            .filter(|p| (p.from == node || p.to == node) && p.ping_ms.is_none())
            .map(|p| format!("{} cannot reach {} over the mesh", p.from, p.to))
            .collect();
        if broken.is_empty() {
            return Ok(change);
        }
        if started.elapsed() > patience {
            return Err(WgError::Unreachable(broken));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Replaces a node's key without taking the mesh down: a new key is made on
/// the node, the other nodes swap its peer entry live, then the node switches.
pub async fn rotate(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    node: &str,
) -> Result<WgPublicKey, WgError> {
    let iface = &spec.mesh.interface;
    let Some(target) = nodes.iter().find(|t| t.node() == node) else {
        return Err(WgError::Unreachable(vec![format!(
            "{node} is not connected"
        )]));
    };
    let key = format!("/etc/wireguard/{iface}.key");
    let out = target
        .exec(&Cmd::new(format!(
            "umask 077; wg genkey > {key}.new; wg pubkey < {key}.new"
        )))
        .await?
        .stdout_str();
    let new = WgPublicKey::parse(&out).map_err(|_| WgError::BadKey {
        node: node.into(),
        text: out.trim().into(),
    })?;
    let mut keys = keys(nodes, iface).await?;
    keys.insert(node.to_string(), new.clone());
    let meshes = plan(spec, &keys);
    // The others first: their files and live peers point at the new key.
    let others: Vec<Arc<dyn Transport>> =
        nodes.iter().filter(|t| t.node() != node).cloned().collect();
    let results = fan_out(&others, 16, |t| {
        let m = meshes.iter().find(|m| m.node == t.node()).cloned();
        async move {
            let Some(m) = m else { return Ok(()) };
            let conf = render::wg_quick(&m);
            t.upload(&Upload {
                content: conf.as_bytes(),
                path: &m.conf_file(),
                mode: 0o600,
                owner: None,
            })
            .await?;
            t.exec(&Cmd::new(render::sync_peers_script(&m))).await?;
            Ok::<_, WgError>(())
        }
    })
    .await;
    all_ok(results)?;
    // Then the node itself switches to its new key.
    target
        .exec(&Cmd::new(format!(
            "wg set {iface} private-key {key}.new && mv -f {key}.new {key}"
        )))
        .await?;
    Ok(new)
}

/// Takes the mesh down on one node: the interface stopped and disabled, the
/// firewall chain and its unit removed. `purge` also deletes the key, the
/// configuration and the userspace binary (a later `up` makes a new key).
/// Idempotent. Returns what it removed, for the caller's log.
pub async fn down(t: &dyn Transport, interface: &str, purge: bool) -> Result<(), WgError> {
    let mut script = format!(
        "systemctl disable --now wg-quick@{iface} >/dev/null 2>&1 || true\n\
         ip link del {iface} >/dev/null 2>&1 || true\n\
         rm -rf /etc/systemd/system/wg-quick@{iface}.service.d/clusterkit.conf\n\
         systemctl disable clusterkit-firewall.service >/dev/null 2>&1 || true\n\
         rm -f {unit} {fw} {dropin} {address}\n\
         {firewall_down}",
        iface = interface,
        unit = FIREWALL_UNIT_PATH,
        fw = FIREWALL_SCRIPT,
        dropin = ENGINE_DROPIN_PATH,
        address = MESH_ADDRESS_PATH,
        firewall_down = render::FIREWALL_DOWN,
    );
    if purge {
        script.push_str(&format!(
            "rm -f /etc/wireguard/{interface}.key /etc/wireguard/{interface}.conf {USERSPACE_PATH}\n"
        ));
    }
    script.push_str("systemctl daemon-reload\n");
    t.exec(&Cmd::new(script)).await?;
    Ok(())
}

/// WireGuard's own overhead on IPv4: outer IP (20), UDP (8), WireGuard (32).
pub const WG_OVERHEAD_V4: u16 = 60;

/// One pair's MTU, as seen from `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtuPair {
    /// The node asked.
    pub from: String,
    /// Its peer.
    pub to: String,
    /// The interface the encrypted packets leave by, and its MTU.
    pub underlay: Option<(String, u16)>,
    /// The mesh interface's MTU on `from`.
    pub mesh_mtu: Option<u16>,
    /// A don't-fragment ping of the spec's full mesh MTU passed.
    pub df_ok: bool,
}

impl MtuPair {
    /// What is wrong with this pair, with the fix; `None` when all is well
    /// (pure). `wanted` is the spec's mesh MTU.
    pub fn problem(&self, wanted: u16) -> Option<String> {
        if let Some((dev, mtu)) = &self.underlay {
            if wanted + WG_OVERHEAD_V4 > *mtu {
                return Some(format!(
                    "{} → {}: the mesh MTU {wanted} plus WireGuard's {WG_OVERHEAD_V4} bytes exceeds {dev}'s MTU {mtu}: set [mesh] mtu to {} or less",
                    self.from,
                    self.to,
                    mtu.saturating_sub(WG_OVERHEAD_V4)
                ));
            }
        }
        if self.mesh_mtu.is_some_and(|m| m != wanted) {
            return Some(format!(
                "{}: the mesh interface's MTU is {} but the spec says {wanted}: run `clusterkit up --only mesh`",
                self.from,
                self.mesh_mtu.unwrap_or(0)
            ));
        }
        if !self.df_ok {
            return Some(format!(
                "{} → {}: a {wanted}-byte packet marked don't-fragment does not pass over the mesh (a smaller MTU on the path?): lower [mesh] mtu",
                self.from, self.to
            ));
        }
        None
    }
}

/// Measures every pair: the underlay interface towards the peer and its
/// MTU, the mesh interface's MTU, and a don't-fragment ping of the spec's
/// mesh MTU to the peer's mesh address. Read-only.
pub async fn mtu_check(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Vec<MtuPair>, WgError> {
    let iface = &spec.mesh.interface;
    let wanted = spec.mesh.mtu;
    let results = fan_out(nodes, 16, |t| async move {
        let me = t.node().to_string();
        let mut script = format!("echo mesh $(cat /sys/class/net/{iface}/mtu 2>/dev/null)\n");
        for peer in spec.nodes.iter().filter(|n| n.name.as_str() != me) {
            script.push_str(&format!(
                "( h=$(getent ahostsv4 {host} | awk 'NR==1 {{print $1}}'); d=$(ip -4 route get \"${{h:-{host}}}\" 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'); \
                 m=$(cat /sys/class/net/$d/mtu 2>/dev/null); \
                 if ping -M do -s {size} -c1 -W2 {ip} >/dev/null 2>&1 || ping -M do -s {size} -c1 -W2 {ip} >/dev/null 2>&1; then p=ok; else p=no; fi; \
                 echo peer {name} ${{d:--}} ${{m:--}} $p ) &\n",
                host = shell_quote_host(&peer.ssh.host),
                size = wanted.saturating_sub(28),
                ip = peer.mesh_address,
                name = peer.name,
            ));
        }
        script.push_str("wait\n");
        let out = t.exec_raw(&Cmd::new(script), None).await?;
        Ok::<_, WgError>(parse_mtu(&me, &out.stdout_str()))
    })
    .await;
    Ok(all_ok(results)?.into_values().flatten().collect())
}

fn shell_quote_host(h: &str) -> String {
    clusterkit_core::transport::quote(h)
}

/// Parses [`mtu_check`]'s script output for one node (pure).
pub fn parse_mtu(from: &str, out: &str) -> Vec<MtuPair> {
    let mesh_mtu = out
        .lines()
        .find_map(|l| l.strip_prefix("mesh "))
        .and_then(|m| m.trim().parse().ok());
    out.lines()
        .filter_map(|l| l.strip_prefix("peer "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [to, dev, mtu, df] = f[..] else {
                return None;
            };
            Some(MtuPair {
                from: from.to_string(),
                to: to.to_string(),
                underlay: mtu.parse().ok().map(|m| (dev.to_string(), m)),
                mesh_mtu,
                df_ok: df == "ok",
            })
        })
        .collect()
}
