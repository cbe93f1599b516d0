//! The swarm alone (`clusterkit swarm`): [`up`], [`status`], [`recover`].
//! `up`'s whole run builds the swarm as its `swarm` phase.

use clusterkit_swarm::{SwarmChange, SwarmStatus};
use serde::Serialize;

use crate::session::{Reach, Session};
use crate::up::{CapabilityReport, Phase, UpOptions};
use crate::{OpsError, Unreachable};

/// What [`recover`] did, and the swarm after it.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmReport {
    /// What changed.
    pub change: SwarmChange,
    /// The swarm now.
    pub status: SwarmStatus,
    /// Nodes that did not answer ([`recover`] goes on without them).
    pub unreachable: Vec<Unreachable>,
}

/// Initialises or completes the swarm on the mesh (every node must answer):
/// every node a manager up to the cap, workers past it. The engine's
/// `swarm` phase after the facts, as `up --only swarm`; its steps are
/// reported as the engine's events.
pub async fn up(session: &Session<'_>) -> Result<CapabilityReport<SwarmStatus>, OpsError> {
    let up = crate::up::run(session, &UpOptions::only(Phase::Swarm), "swarm").await?;
    let nodes = session.connect_all().await?;
    let after = clusterkit_swarm::status(&nodes).await?;
    Ok(CapabilityReport { up, after })
}

/// The swarm as the reachable managers see it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Managers, leader, quorum; or why no manager could say (quorum lost).
    pub status: Result<SwarmStatus, String>,
    /// Nodes that did not answer.
    pub unreachable: Vec<Unreachable>,
}

impl StatusReport {
    /// A leader, every manager reachable, every node answered.
    pub fn healthy(&self) -> bool {
        self.status.as_ref().is_ok_and(|s| {
            s.has_quorum && s.managers.iter().all(|m| m.reachable) && self.unreachable.is_empty()
        })
    }
}

/// The swarm's table (or "quorum lost: ..."), then the nodes that did not answer.
impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.status {
            Ok(s) => write!(f, "{s}")?,
            Err(e) => writeln!(f, "quorum lost: {e}")?,
        }
        self.unreachable.iter().try_for_each(|u| writeln!(f, "{u}"))
    }
}

/// Reads the swarm through the nodes that answer at once. Changes nothing.
pub async fn status(session: &Session<'_>) -> StatusReport {
    let c = session.connect(Reach::Quick).await;
    StatusReport {
        status: clusterkit_swarm::status(&c.nodes)
            .await
            .map_err(|e| e.to_string()),
        unreachable: c.unreachable,
    }
}

/// The manager [`recover`] re-forms from when none is named: the first of
/// the description's managers that answers.
pub async fn survivor(session: &Session<'_>) -> Result<String, OpsError> {
    let c = session.connect(Reach::Quick).await;
    session
        .loaded()
        .built
        .spec
        .managers()
        .map(|m| m.name.to_string())
        .find(|m| c.nodes.iter().any(|t| t.node() == m))
        .ok_or_else(|| {
            OpsError::Refused("no manager is reachable over SSH: nothing to recover from".into())
        })
}

/// Re-forms a swarm that lost its majority for good from `survivor`
/// (`--force-new-cluster`: it keeps the swarm's services, secrets and
/// configs); the other reachable nodes leave and join again. Takes the lock
/// on the reachable nodes only: a lost majority is this very case.
pub async fn recover(session: &Session<'_>, survivor: &str) -> Result<SwarmReport, OpsError> {
    let c = session.connect(Reach::Quick).await;
    session.lock_reachable(&c.nodes, "swarm").await?;
    let spec = &session.loaded().built.spec;
    let change = clusterkit_swarm::recover(&c.nodes, spec, survivor).await?;
    let status = clusterkit_swarm::status(&c.nodes).await?;
    Ok(SwarmReport {
        change,
        status,
        unreachable: c.unreachable,
    })
}

#[cfg(test)]
mod tests {

    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;

    use super::*;
    use crate::testkit::{loaded, transports};
    use crate::Options;

    #[tokio::test]
    async fn a_swarm_without_a_leader_is_reported_unhealthy_with_the_nodes_that_did_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let n1 = Scripted::new("node1");
        n1.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 3}}"#);
        n1.on_engine(
            "GET",
            "/nodes",
            503,
            r#"{"message": "rpc error: The swarm does not have a leader"}"#,
        );
        let lines = Lines::to_string();
        let session =
            Session::with_transports(&loaded, Options::default(), &lines, transports([&n1]));
        let r = status(&session).await;
        assert!(!r.healthy());
        let shown = r.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert!(
            lines[0].starts_with("quorum lost: ") && lines.len() == 3,
            "{shown}"
        );
        assert!(
            lines[1].starts_with("node2: not reachable over SSH: "),
            "{shown}"
        );
        let e = r.status.unwrap_err();
        assert!(e.contains("needs 2 to decide"), "{e}");
        let missing: Vec<&str> = r.unreachable.iter().map(|u| u.node.as_str()).collect();
        assert_eq!(missing, ["node2", "node3"]);
        // Recovering picks the first manager that answers; nothing changed yet.
        assert_eq!(survivor(&session).await.unwrap(), "node1");
        assert!(
            n1.asked().iter().all(|a| a.starts_with("GET ")),
            "{:?}",
            n1.asked()
        );
    }

    #[tokio::test]
    async fn swarm_up_with_a_node_missing_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let (n1, n2) = (Scripted::new("node1"), Scripted::new("node2"));
        let lines = Lines::to_string();
        let session =
            Session::with_transports(&loaded, Options::default(), &lines, transports([&n1, &n2]));
        let e = up(&session).await.unwrap_err();
        assert!(
            matches!(&e, OpsError::Unreachable(u) if u[0].node == "node3"),
            "{e}"
        );
        assert!(n1.asked().is_empty() && n2.asked().is_empty());
    }
}
