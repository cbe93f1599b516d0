//! `doctor`: one report of what operators of such clusters trip on, each
//! problem with its fix. Read-only. The checks come from the libraries
//! (facts and the address plan from clusterkit-core, the mesh and its MTU
//! from clusterkit-wg, quorum from clusterkit-swarm, storage from
//! clusterkit-storage); the ports probe is a shell loop run on the nodes.

use clusterkit_core::spec::StorageBackend;
use clusterkit_core::transport::{facts, fan_out, Cmd};
use serde::Serialize;

use crate::session::{Reach, Session};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but one more loss or change would hurt.
    Warn,
    /// Broken: the message says the fix.
    Fail,
}

/// One finding of `doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub level: Level,
    /// What it is about: `ssh`, `node`, `mesh`, `mtu`, `ports`, `quorum`, `storage`.
    pub section: &'static str,
    /// What was found, with the fix when something is wrong.
    pub message: String,
}

/// What `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The cluster's name.
    pub cluster: String,
    /// No finding failed.
    pub healthy: bool,
    /// Every finding, in the order checked.
    pub checks: Vec<Finding>,
}

/// Checks the nodes, the mesh and its MTU, the ports outside the mesh, the
/// swarm's quorum and storage. Never fails: what cannot be checked is a
/// failed finding.
pub async fn doctor(session: &Session<'_>) -> DoctorReport {
    let spec = &session.loaded().built.spec;
    let mut out: Vec<Finding> = Vec::new();
    let mut add = |level, section, message: String| {
        out.push(Finding {
            level,
            section,
            message,
        })
    };
    let connected = session.connect(Reach::Patient).await;
    let nodes = connected.nodes;
    for u in &connected.unreachable {
        add(Level::Fail, "ssh", format!("{}: {}", u.node, u.error));
    }
    if connected.unreachable.is_empty() {
        add(
            Level::Ok,
            "ssh",
            format!("{} node(s) reachable, host keys checked", nodes.len()),
        );
    }

    // Facts: OS, clocks, disk, ports held by others, the address plan.
    let mut facts_ok = true;
    for (n, r) in fan_out(&nodes, 16, facts::gather).await {
        let f = match r {
            Ok(f) => f,
            Err(e) => {
                add(Level::Fail, "facts", format!("{n}: {e}"));
                facts_ok = false;
                continue;
            }
        };
        let Some(node) = spec.node(&n) else { continue };
        for p in facts::judge(&f, node, spec) {
            facts_ok = false;
            let level = if p.blocking { Level::Fail } else { Level::Warn };
            add(level, "node", format!("{n}: {}", p.message));
        }
    }
    if facts_ok {
        add(
            Level::Ok,
            "node",
            "OS, clocks, disk, ports and the address plan are fine on every node".into(),
        );
    }

    // The mesh: every pair answers, and the MTU fits the path.
    match clusterkit_wg::status(&nodes, spec).await {
        Ok(pairs) => {
            let down: Vec<String> = pairs
                .iter()
                .filter(|p| p.ping_ms.is_none())
                .map(|p| format!("{} → {}", p.from, p.to))
                .collect();
            if down.is_empty() {
                add(
                    Level::Ok,
                    "mesh",
                    format!("{}/{} pairs answer", pairs.len(), pairs.len()),
                );
            } else {
                add(Level::Fail, "mesh", format!(
                    "no answer over the mesh: {} (UDP {} must pass between the nodes' addresses; `clusterkit up --only mesh` converges the configuration)",
                    down.join(", "),
                    spec.mesh.port
                ));
            }
        }
        Err(e) => add(
            Level::Fail,
            "mesh",
            format!("{e} (`clusterkit up --only mesh` builds it)"),
        ),
    }
    match clusterkit_wg::mtu_check(&nodes, spec).await {
        Ok(pairs) => {
            let mut bad: Vec<String> = pairs
                .iter()
                .filter_map(|p| p.problem(spec.mesh.mtu))
                .collect();
            bad.dedup();
            if bad.is_empty() {
                add(
                    Level::Ok,
                    "mtu",
                    format!(
                    "a {}-byte don't-fragment packet passes between every pair; overlays use {}",
                    spec.mesh.mtu,
                    spec.mesh.mtu - clusterkit_swarm::VXLAN_OVERHEAD
                ),
                );
            }
            for b in bad {
                add(Level::Fail, "mtu", b);
            }
        }
        Err(e) => add(Level::Fail, "mtu", e.to_string()),
    }

    // Ports: the cluster's answer over the mesh, not on the nodes' own addresses.
    let ports = clusterkit_wg::render::MESH_ONLY_TCP;
    let mut exposed = Vec::new();
    let mut mesh_closed = false;
    let names: Vec<String> = nodes.iter().map(|t| t.node().to_string()).collect();
    // Each node's global IPv6 addresses: probed too, the firewall must
    // close the ports there as on the address clusterkit reaches.
    let mut v6: std::collections::BTreeMap<String, Vec<std::net::Ipv6Addr>> = Default::default();
    for (n, r) in fan_out(&nodes, 16, |t| async move {
        t.exec_raw(
            &Cmd::new("ip -6 -o addr show scope global 2>/dev/null | awk '{print $4}'"),
            None,
        )
        .await
    })
    .await
    {
        let found = r.map(|o| {
            o.stdout_str()
                .split_whitespace()
                .filter_map(|a| a.split('/').next()?.parse().ok())
                .collect()
        });
        v6.insert(n, found.unwrap_or_default());
    }
    // Whether any node has an IPv6 address other than the one clusterkit reaches.
    let probed_v6 = v6.iter().any(|(n, addrs)| {
        addrs
            .iter()
            .any(|a| spec.node(n).is_some_and(|x| x.ssh.host != a.to_string()))
    });
    let v6 = &v6;
    let probes = fan_out(&nodes, 16, |t| {
        // Each node probes its neighbour's own address, every port at once.
        let i = names.iter().position(|n| n == t.node()).unwrap_or(0);
        let target = names
            .get((i + 1) % names.len())
            .filter(|n| n.as_str() != t.node())
            .and_then(|n| spec.node(n))
            .cloned();
        async move {
            let Some(target) = target else {
                return Ok(None);
            };
            // Its address and its IPv6 ones; the swarm's own ports must
            // answer over the mesh.
            let mut addrs = vec![target.ssh.host.clone()];
            for a in v6.get(target.name.as_str()).into_iter().flatten() {
                if !addrs.contains(&a.to_string()) {
                    addrs.push(a.to_string());
                }
            }
            let script = format!(
                "command -v bash >/dev/null || exit 3; for a in {}; do for p in {}; do ( timeout 2 bash -c \"</dev/tcp/$a/$p\" 2>/dev/null && echo \"$a|$p\" ) & done; done; \
                 for p in 2377 7946; do ( timeout 2 bash -c \"</dev/tcp/{}/$p\" 2>/dev/null || echo mesh-closed:$p ) & done; wait",
                addrs.iter().map(|a| clusterkit_core::transport::quote(a)).collect::<Vec<_>>().join(" "),
                ports.iter().map(u16::to_string).collect::<Vec<_>>().join(" "),
                target.mesh_address
            );
            t.exec_raw(&Cmd::new(script), None)
                .await
                .map(|o| Some((target, o)))
        }
    })
    .await;
    for (n, r) in probes {
        match r {
            Ok(None) => {}
            Ok(Some((_, o))) if o.status == 3 => add(
                Level::Warn,
                "ports",
                format!("{n}: no bash to probe ports from"),
            ),
            Ok(Some((target, o))) => {
                for p in o.stdout_str().split_whitespace() {
                    match p.strip_prefix("mesh-closed:") {
                        Some(port) => {
                            mesh_closed = true;
                            add(Level::Fail, "ports", format!(
                            "{}:{port} ({}) does not answer over the mesh from {n}: the swarm needs it (is the engine running there? `clusterkit up --only swarm`)",
                            target.mesh_address, target.name
                        ))
                        }
                        None => {
                            let (a, port) = p.split_once('|').unwrap_or((p, ""));
                            exposed.push(format!(
                                "{} ({})",
                                clusterkit_core::names::host_port(a, port),
                                target.name
                            ))
                        }
                    }
                }
            }
            Err(e) => add(Level::Fail, "ports", e.to_string()),
        }
    }
    if exposed.is_empty() && !mesh_closed {
        let families = if probed_v6 { " (IPv4 and IPv6)" } else { "" };
        add(Level::Ok, "ports", format!("the cluster's TCP ports ({} in all) are closed outside the mesh{families}; 2377 and 7946 answer over it", ports.len()));
    } else if !exposed.is_empty() {
        add(
            Level::Fail,
            "ports",
            format!(
            "answering outside the mesh: {} (`clusterkit up --only mesh` re-applies the firewall)",
            exposed.join(", ")
        ),
        );
    }

    // Quorum.
    match clusterkit_swarm::status(&nodes).await {
        Ok(s) if s.has_quorum && s.tolerates > 0 => add(Level::Ok, "quorum", format!(
            "leader {}, {} manager(s), tolerates {} loss(es)",
            s.leader.as_deref().unwrap_or("none"),
            s.managers.len(),
            s.tolerates
        )),
        Ok(s) if s.has_quorum => add(Level::Warn, "quorum", format!(
            "{} manager(s), quorum {}: losing one more manager stops the swarm (add nodes, or bring the missing ones back)",
            s.managers.len(),
            s.quorum
        )),
        Ok(s) => add(Level::Fail, "quorum", format!(
            "no majority of managers ({} needed): bring managers back, or `clusterkit swarm recover --node NODE` from a survivor",
            s.quorum
        )),
        Err(e) => add(Level::Fail, "quorum", e.to_string()),
    }

    // Storage and the volume driver.
    // Garage through its admin API, MinIO through its health endpoints.
    if spec.storage.backend != StorageBackend::None {
        match clusterkit_storage::status(&nodes, spec).await {
            Ok(st) => {
                let level = match st.health.as_str() {
                    "healthy" => Level::Ok,
                    "degraded" => Level::Warn,
                    _ => Level::Fail,
                };
                add(
                    level,
                    "storage",
                    format!(
                        "{} on {} node(s), tolerates {} loss(es)",
                        st.health,
                        st.nodes.len(),
                        st.tolerates
                    ),
                );
                for n in st.drivers_down() {
                    add(Level::Fail, "storage", format!(
                        "{}: the `{}` volume driver is not running (`systemctl restart clusterkit-volumes clusterkit-volumes-front` there, or `clusterkit up --only storage`)",
                        n,
                        clusterkit_storage::DRIVER
                    ));
                }
                if let Some(e) = st.probe_error {
                    add(Level::Fail, "storage", format!("S3 probe: {e}"));
                }
                for n in st.notes {
                    add(Level::Warn, "storage", n);
                }
            }
            Err(e) => add(
                Level::Fail,
                "storage",
                format!("{e} (`clusterkit up --only storage`)"),
            ),
        }
    }

    if spec.ingress.enabled {
        ingress(&nodes, spec, &mut add).await;
    }

    DoctorReport {
        cluster: spec.name.to_string(),
        healthy: !out.iter().any(|f| f.level == Level::Fail),
        checks: out,
    }
}

/// The ingress: the route watcher answers, every routed host has its
/// certificate and points at the nodes (resolved from this machine), no
/// service's route is refused.
async fn ingress(
    nodes: &[std::sync::Arc<dyn clusterkit_core::transport::Transport>],
    spec: &clusterkit_core::spec::ClusterSpec,
    add: &mut impl FnMut(Level, &'static str, String),
) {
    let st = match clusterkit_ingress::phase::status(nodes, spec).await {
        Ok(Some(st)) => st,
        Ok(None) => {
            add(
                Level::Fail,
                "ingress",
                "the route watcher does not answer: `clusterkit up --only ingress`".into(),
            );
            return;
        }
        Err(e) => {
            add(Level::Fail, "ingress", e.to_string());
            return;
        }
    };
    add(
        Level::Ok,
        "ingress",
        format!(
            "{} route(s), {} of {} host(s) with a certificate",
            st.routes.len(),
            st.hosts.len() - st.missing_certificates().len(),
            st.hosts.len()
        ),
    );
    // A name must point at the nodes that serve the ingress, not at others.
    let mut node_addrs = Vec::new();
    for n in spec.nodes.iter().filter(|n| n.ingress) {
        if let Ok(found) = tokio::net::lookup_host((n.ssh.host.as_str(), 443)).await {
            node_addrs.extend(found.map(|a| a.ip()));
        }
    }
    for h in &st.hosts {
        if h.certificate.is_none() {
            add(
                Level::Warn,
                "ingress",
                format!("{}: no certificate yet (the issuer keeps asking)", h.host),
            );
        }
        if let Some(p) = h
            .edges
            .and_then(|c| clusterkit_ingress::serve::edges_problem(&h.host, c))
        {
            add(Level::Warn, "ingress", p);
        }
        let resolved = match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((h.host.as_str(), 443)),
        )
        .await
        {
            Ok(Ok(found)) => Ok(found.map(|a| a.ip()).collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in 5 s".to_string()),
        };
        if let Some(p) = clusterkit_ingress::route::dns_problem(&h.host, &resolved, &node_addrs) {
            add(Level::Warn, "ingress", p);
        }
    }
    for r in &st.refused {
        add(
            Level::Warn,
            "ingress",
            format!("service {} not routed: {}", r.service, r.reason),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;
    use clusterkit_core::transport::Transport;

    use super::*;
    use crate::testkit::{loaded, FACTS};
    use crate::Options;

    #[tokio::test]
    async fn a_missing_node_and_a_held_port_are_failures_with_their_node_named() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let (n1, n2) = (Scripted::new("node1"), Scripted::new("node2"));
        n1.on("os_id=", FACTS);
        n2.on("os_id=", &FACTS.replace("ports=22 ", "ports=22 7946 "));
        let lines = Lines::to_string();
        let nodes: Vec<Arc<dyn Transport>> = vec![Arc::new(n1.clone()), Arc::new(n2.clone())];
        let session = Session::with_transports(&loaded, Options::default(), &lines, nodes);
        let r = doctor(&session).await;
        assert!(!r.healthy);
        let failed = |section: &str, text: &str| {
            r.checks
                .iter()
                .any(|f| f.level == Level::Fail && f.section == section && f.message.contains(text))
        };
        assert!(
            failed("ssh", "node3: no transport given"),
            "{:#?}",
            r.checks
        );
        assert!(failed("node", "node2: "), "{:#?}", r.checks);
        assert!(
            !r.checks
                .iter()
                .any(|f| f.section == "node" && f.message.starts_with("node1")),
            "{:#?}",
            r.checks
        );
        // Nothing answered the mesh's or the swarm's questions: failures, not a panic.
        assert!(r
            .checks
            .iter()
            .any(|f| f.section == "quorum" && f.level == Level::Fail));
    }
}
