//! `clusterkit status`: one screen with the mesh, the swarm's quorum and
//! leader, storage, monitoring targets and application stacks. Read-only.

use anyhow::Context;
use clusterkit_core::spec::{Loaded, StorageBackend};
use clusterkit_core::transport::{Cmd, Transport};
use serde::Serialize;

use crate::exit;

/// One application stack, as the swarm sees it.
#[derive(Debug, Serialize)]
struct StackLine {
    name: String,
    /// `service replicas` pairs.
    services: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct Status {
    cluster: String,
    reachable: Vec<String>,
    unreachable: Vec<(String, String)>,
    mesh_pairs_up: usize,
    mesh_pairs: usize,
    swarm: Option<clusterkit_swarm::SwarmStatus>,
    storage: Option<clusterkit_storage::StorageStatus>,
    monitoring: Option<clusterkit_monitor::Targets>,
    stacks: Vec<StackLine>,
    healthy: bool,
}

async fn stacks(mgr: &dyn Transport) -> anyhow::Result<Vec<StackLine>> {
    let out = mgr
        .exec(&Cmd::new(
            "for s in $(docker stack ls --format '{{.Name}}'); do \
               docker stack services --format \"$s {{.Name}} {{.Replicas}}\" $s; done",
        ))
        .await?
        .stdout_str();
    let mut lines: Vec<StackLine> = Vec::new();
    for l in out.lines() {
        let mut w = l.splitn(3, ' ');
        let (Some(stack), Some(svc), Some(rep)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let short = svc.strip_prefix(&format!("{stack}_")).unwrap_or(svc);
        match lines.iter_mut().find(|s| s.name == stack) {
            Some(s) => s.services.push((short.into(), rep.into())),
            None => lines.push(StackLine {
                name: stack.into(),
                services: vec![(short.into(), rep.into())],
            }),
        }
    }
    Ok(lines)
}

fn converged(replicas: &str) -> bool {
    replicas
        .split_whitespace()
        .next()
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(a, b)| a == b)
}

/// Runs `clusterkit status`.
pub fn run(loaded: &Loaded, json: bool) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let (nodes, failed) = crate::remote::connect(loaded, false).await;
        let mut st = Status {
            cluster: spec.name.to_string(),
            reachable: nodes.iter().map(|t| t.node().to_string()).collect(),
            unreachable: failed
                .iter()
                .map(|(n, e)| (n.to_string(), e.to_string()))
                .collect(),
            mesh_pairs_up: 0,
            mesh_pairs: 0,
            swarm: None,
            storage: None,
            monitoring: None,
            stacks: Vec::new(),
            healthy: false,
        };
        let mut notes: Vec<String> = Vec::new();
        if !nodes.is_empty() {
            match clusterkit_wg::status(&nodes, spec).await {
                Ok(pairs) => {
                    st.mesh_pairs = pairs.len();
                    st.mesh_pairs_up = pairs.iter().filter(|p| p.ping_ms.is_some()).count();
                }
                Err(e) => notes.push(format!("mesh: {e}")),
            }
            match clusterkit_swarm::status(&nodes).await {
                Ok(s) => st.swarm = Some(s),
                Err(e) => notes.push(format!("swarm: {e}")),
            }
            if st.swarm.as_ref().is_some_and(|s| s.has_quorum) {
                if spec.storage.backend == StorageBackend::Garage {
                    match clusterkit_storage::status(&nodes, spec).await {
                        Ok(s) => st.storage = Some(s),
                        Err(e) => notes.push(format!("storage: {e}")),
                    }
                }
                if spec.monitoring.enabled {
                    match clusterkit_monitor::targets(&nodes, spec).await {
                        Ok(t) => st.monitoring = t,
                        Err(e) => notes.push(format!("monitoring: {e}")),
                    }
                }
                let mgr = clusterkit_core::stack::managers(&nodes, spec)
                    .into_iter()
                    .next();
                if let Some(m) = mgr {
                    match stacks(m.as_ref()).await {
                        Ok(s) => st.stacks = s,
                        Err(e) => notes.push(format!("stacks: {e}")),
                    }
                }
            }
        }
        st.healthy = st.unreachable.is_empty()
            && st.mesh_pairs > 0
            && st.mesh_pairs_up == st.mesh_pairs
            && st.swarm.as_ref().is_some_and(|s| s.has_quorum)
            && st.storage.as_ref().is_none_or(|s| s.whole())
            && st.monitoring.as_ref().is_none_or(|m| m.whole())
            && st
                .stacks
                .iter()
                .all(|s| s.services.iter().all(|(_, r)| converged(r)));
        if json {
            println!("{}", serde_json::to_string_pretty(&st)?);
        } else {
            print(&st, &notes);
        }
        Ok(if st.healthy { exit::OK } else { exit::FAILURE })
    })
}

fn print(st: &Status, notes: &[String]) {
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    println!("cluster {}", st.cluster);
    println!(
        "{} nodes     {} reachable{}",
        mark(st.unreachable.is_empty()),
        st.reachable.len(),
        st.unreachable
            .iter()
            .map(|(n, e)| format!("; {n} unreachable: {e}"))
            .collect::<String>()
    );
    println!(
        "{} mesh      {}/{} pairs answer",
        mark(st.mesh_pairs > 0 && st.mesh_pairs_up == st.mesh_pairs),
        st.mesh_pairs_up,
        st.mesh_pairs
    );
    match &st.swarm {
        Some(s) => println!(
            "{} swarm     leader {}, {} manager(s), quorum {} {}, tolerates {} loss(es)",
            mark(s.has_quorum),
            s.leader.as_deref().unwrap_or("none"),
            s.managers.len(),
            s.quorum,
            if s.has_quorum { "held" } else { "LOST" },
            s.tolerates
        ),
        None => println!("FAIL swarm     no answer"),
    }
    if let Some(s) = &st.storage {
        println!(
            "{} storage   {} on {} node(s), {} copies, tolerates {} loss(es){}",
            mark(s.whole()),
            s.health,
            s.nodes.len(),
            s.replication,
            s.tolerates,
            match s.drivers_down() {
                d if d.is_empty() => String::new(),
                d => format!(
                    "; volume driver not serving on {} (`systemctl restart clusterkit-volumes` there, or `clusterkit up --only storage`)",
                    d.join(", ")
                ),
            }
        );
    }
    if let Some(m) = &st.monitoring {
        println!(
            "{} monitor   {}/{} targets up{}{}{}",
            mark(m.whole()),
            m.up,
            m.total,
            if m.down.is_empty() {
                String::new()
            } else {
                format!(" (down: {})", m.down.join(", "))
            },
            if m.firing.is_empty() {
                String::new()
            } else {
                format!("; alerts firing: {}", m.firing.join(", "))
            },
            if m.total == 0 {
                " (Prometheus runs but has found nothing to scrape yet: it discovers the swarm's tasks within a minute)"
            } else {
                ""
            }
        );
    }
    for s in &st.stacks {
        let ok = s.services.iter().all(|(_, r)| converged(r));
        println!(
            "{} stack     {}: {}",
            mark(ok),
            s.name,
            s.services
                .iter()
                .map(|(n, r)| format!("{n} {r}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for n in notes {
        println!("FAIL {n}");
    }
}
