//! `status`: the mesh, the swarm's quorum and leader, storage, monitoring
//! targets and application stacks, as data. Read-only.

use clusterkit_core::spec::StorageBackend;
use clusterkit_core::transport::{Cmd, Transport, TransportError};
use serde::Serialize;

use crate::session::{Reach, Session, Unreachable};

/// One application stack, as the swarm sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StackLine {
    /// The stack's name.
    pub name: String,
    /// `(service, replicas)` pairs, replicas as Swarm writes them (`2/2`).
    pub services: Vec<(String, String)>,
}

impl StackLine {
    /// Whether every service runs as many replicas as it wants.
    pub fn converged(&self) -> bool {
        self.services.iter().all(|(_, r)| converged(r))
    }
}

/// The cluster's state, each part `None` where it could not be read (see `notes`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The cluster's name.
    pub cluster: String,
    /// The nodes that answered.
    pub reachable: Vec<String>,
    /// The nodes that did not.
    pub unreachable: Vec<Unreachable>,
    /// Mesh pairs whose ping answers.
    pub mesh_pairs_up: usize,
    /// Mesh pairs.
    pub mesh_pairs: usize,
    /// The swarm, from the engines' answers.
    pub swarm: Option<clusterkit_swarm::SwarmStatus>,
    /// Storage health (Garage).
    pub storage: Option<clusterkit_storage::StorageStatus>,
    /// Monitoring targets and alerts.
    pub monitoring: Option<clusterkit_monitor::Targets>,
    /// Application stacks.
    pub stacks: Vec<StackLine>,
    /// The ingress's routes and certificates, where it is on and its route
    /// watcher answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<clusterkit_ingress::serve::Status>,
    /// What could not be read, by part (`mesh: ...`).
    pub notes: Vec<String>,
    /// Every node reachable, every pair up, quorum held, storage whole,
    /// every target up, every stack converged.
    pub healthy: bool,
}

async fn stacks(mgr: &dyn Transport) -> Result<Vec<StackLine>, TransportError> {
    let out = mgr
        .exec(&Cmd::new(
            "for s in $(docker stack ls --format '{{.Name}}'); do \
               docker stack services --format \"$s {{.Name}} {{.Replicas}}\" $s; done",
        ))
        .await?
        .stdout_str();
    Ok(parse_stacks(&out))
}

/// `STACK SERVICE REPLICAS` lines, grouped by stack (the service's stack
/// prefix taken off).
fn parse_stacks(out: &str) -> Vec<StackLine> {
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
    lines
}

/// Whether Swarm's `have/want` (maybe followed by more) has all it wants.
pub fn converged(replicas: &str) -> bool {
    replicas
        .split_whitespace()
        .next()
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(a, b)| a == b)
}

/// Reads the cluster's state through the nodes that answer (one short
/// attempt each). Never fails: what cannot be read is `None` and a note.
pub async fn status(session: &Session<'_>) -> Status {
    let spec = &session.loaded().built.spec;
    let connected = session.connect(Reach::Patient).await;
    let nodes = connected.nodes;
    let mut st = Status {
        cluster: spec.name.to_string(),
        reachable: nodes.iter().map(|t| t.node().to_string()).collect(),
        unreachable: connected.unreachable,
        mesh_pairs_up: 0,
        mesh_pairs: 0,
        swarm: None,
        storage: None,
        monitoring: None,
        stacks: Vec::new(),
        ingress: None,
        notes: Vec::new(),
        healthy: false,
    };
    if !nodes.is_empty() {
        match clusterkit_wg::status(&nodes, spec).await {
            Ok(pairs) => {
                st.mesh_pairs = pairs.len();
                st.mesh_pairs_up = pairs.iter().filter(|p| p.ping_ms.is_some()).count();
            }
            Err(e) => st.notes.push(format!("mesh: {e}")),
        }
        match clusterkit_swarm::status(&nodes).await {
            Ok(s) => st.swarm = Some(s),
            Err(e) => st.notes.push(format!("swarm: {e}")),
        }
        if st.swarm.as_ref().is_some_and(|s| s.has_quorum) {
            if spec.storage.backend != StorageBackend::None {
                match clusterkit_storage::status(&nodes, spec).await {
                    Ok(s) => st.storage = Some(s),
                    Err(e) => st.notes.push(format!("storage: {e}")),
                }
            }
            if spec.monitoring.enabled {
                match clusterkit_monitor::targets(&nodes, spec).await {
                    Ok(t) => st.monitoring = t,
                    Err(e) => st.notes.push(format!("monitoring: {e}")),
                }
            }
            let mgr = clusterkit_core::stack::managers(&nodes, spec)
                .into_iter()
                .next();
            if let Some(m) = mgr {
                match stacks(m.as_ref()).await {
                    Ok(s) => st.stacks = s,
                    Err(e) => st.notes.push(format!("stacks: {e}")),
                }
            }
            if spec.ingress.enabled {
                match clusterkit_ingress::phase::status(&nodes, spec).await {
                    Ok(Some(i)) => st.ingress = Some(i),
                    Ok(None) => st.notes.push(
                        "ingress: the route watcher does not answer (`clusterkit up --only ingress`)"
                            .into(),
                    ),
                    Err(e) => st.notes.push(format!("ingress: {e}")),
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
        && st.stacks.iter().all(StackLine::converged)
        && (!spec.ingress.enabled
            || st
                .ingress
                .as_ref()
                .is_some_and(|i| i.missing_certificates().is_empty()));
    st
}

impl std::fmt::Display for Status {
    /// The one screen `clusterkit status` prints: a line per part, each
    /// `ok` or `FAIL`, with what to do where there is a way out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self;
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        writeln!(f, "cluster {}", st.cluster)?;
        writeln!(
            f,
            "{} nodes     {} reachable{}",
            mark(st.unreachable.is_empty()),
            st.reachable.len(),
            st.unreachable
                .iter()
                .map(|u| format!("; {} unreachable: {}", u.node, u.error))
                .collect::<String>()
        )?;
        writeln!(
            f,
            "{} mesh      {}/{} pairs answer",
            mark(st.mesh_pairs > 0 && st.mesh_pairs_up == st.mesh_pairs),
            st.mesh_pairs_up,
            st.mesh_pairs
        )?;
        match &st.swarm {
            Some(s) => writeln!(
                f,
                "{} swarm     leader {}, {} manager(s), quorum {} {}, tolerates {} loss(es)",
                mark(s.has_quorum),
                s.leader.as_deref().unwrap_or("none"),
                s.managers.len(),
                s.quorum,
                if s.has_quorum { "held" } else { "LOST" },
                s.tolerates
            )?,
            None => writeln!(f, "FAIL swarm     no answer")?,
        }
        if let Some(s) = &st.storage {
            writeln!(f,
            "{} storage   {} on {} node(s), {} copies, tolerates {} loss(es){}",
            mark(s.whole()),
            s.health,
            s.nodes.len(),
            s.replication,
            s.tolerates,
            match s.drivers_down() {
                d if d.is_empty() => String::new(),
                d => format!(
                    "; volume driver not serving on {} (`systemctl restart clusterkit-volumes clusterkit-volumes-front` there, or `clusterkit up --only storage`)",
                    d.join(", ")
                ),
            }
        )?;
        }
        if let Some(m) = &st.monitoring {
            writeln!(
                f,
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
            )?;
        }
        for s in &st.stacks {
            let ok = s.converged();
            writeln!(
                f,
                "{} stack     {}: {}",
                mark(ok),
                s.name,
                s.services
                    .iter()
                    .map(|(n, r)| format!("{n} {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        if let Some(i) = &st.ingress {
            for r in &i.routes {
                let cert = i.hosts.iter().find(|h| h.host == r.host);
                let ok = cert.is_some_and(|h| h.certificate.is_some());
                writeln!(
                    f,
                    "{} ingress   https://{}{} -> {}:{}{}",
                    mark(ok),
                    r.host,
                    r.path.as_deref().unwrap_or(""),
                    r.service,
                    r.port,
                    match cert.and_then(|h| h.expires.as_deref()) {
                        Some(until) if ok => format!(
                            " (certificate until {until}{})",
                            cert.and_then(|h| h.edges)
                                .map(|c| format!(", on {c}"))
                                .unwrap_or_default()
                        ),
                        _ if ok => String::new(),
                        _ =>
                            " (no certificate yet: `clusterkit doctor` checks its DNS)".to_string(),
                    }
                )?;
            }
            for r in &i.refused {
                writeln!(f, "FAIL ingress   {} not routed: {}", r.service, r.reason)?;
            }
        }
        for n in &st.notes {
            writeln!(f, "FAIL {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;

    use super::*;
    use crate::testkit::loaded;
    use crate::Options;

    #[tokio::test]
    async fn status_reports_what_it_could_read_and_notes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let n1 = Scripted::new("node1");
        n1.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 3}}"#);
        n1.on_engine(
            "GET",
            "/nodes",
            200,
            r#"[{"ID": "a", "Description": {"Hostname": "node1"},
                 "ManagerStatus": {"Leader": true, "Reachability": "reachable", "Addr": "10.0.0.1:2377"}},
                {"ID": "b", "Description": {"Hostname": "node2"},
                 "ManagerStatus": {"Leader": false, "Reachability": "reachable", "Addr": "10.0.0.2:2377"}},
                {"ID": "c", "Description": {"Hostname": "node3"},
                 "ManagerStatus": {"Leader": false, "Reachability": "unreachable", "Addr": "10.0.0.3:2377"}}]"#,
        );
        n1.on("docker stack ls", "app app_web 2/2\napp app_db 0/1\n");
        let lines = Lines::to_string();
        let nodes: Vec<Arc<dyn Transport>> = vec![Arc::new(n1.clone())];
        let session = Session::with_transports(&loaded, Options::default(), &lines, nodes);
        let st = status(&session).await;
        assert_eq!(st.reachable, ["node1"]);
        assert_eq!(
            st.unreachable
                .iter()
                .map(|u| u.node.as_str())
                .collect::<Vec<_>>(),
            ["node2", "node3"]
        );
        let swarm = st.swarm.as_ref().expect("the swarm answered");
        assert_eq!(swarm.leader.as_deref(), Some("node1"));
        assert!(swarm.has_quorum);
        assert_eq!(st.stacks.len(), 1);
        assert!(!st.stacks[0].converged());
        // The mesh's and storage's questions got no answer: notes, not a failure.
        assert!(
            st.notes.iter().any(|n| n.starts_with("mesh: ")),
            "{:?}",
            st.notes
        );
        assert!(
            st.notes.iter().any(|n| n.starts_with("storage: ")),
            "{:?}",
            st.notes
        );
        assert!(!st.healthy);
        // The one screen, as `clusterkit status` prints it.
        let screen = st.to_string();
        let lines: Vec<&str> = screen.lines().collect();
        assert_eq!(lines[0], "cluster clusterkit", "{screen}");
        assert!(
            lines[1].starts_with("FAIL nodes     1 reachable; node2 unreachable: "),
            "{screen}"
        );
        assert!(
            screen.contains("ok   swarm     leader node1, 3 manager(s), quorum 2 held"),
            "{screen}"
        );
        assert!(
            screen.contains("FAIL stack     app: web 2/2, db 0/1"),
            "{screen}"
        );
        assert!(
            screen.lines().any(|l| l.starts_with("FAIL mesh: ")),
            "{screen}"
        );
    }

    #[test]
    fn stacks_are_grouped_and_their_prefix_taken_off() {
        let s = parse_stacks(
            "app app_web 2/2\napp app_db 0/1\nclusterkit-monitoring clusterkit-monitoring_prometheus 1/1\nbroken line\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "app");
        assert_eq!(
            s[0].services,
            vec![("web".into(), "2/2".into()), ("db".into(), "0/1".into())]
        );
        assert!(!s[0].converged());
        assert!(s[1].converged());
        assert!(converged("3/3 (max 1 per node)"));
        assert!(!converged("0/3"));
        assert!(!converged(""));
    }
}
