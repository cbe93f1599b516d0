//! The WireGuard mesh alone (`clusterkit wg`): [`up`], [`status`],
//! [`rotate`]. `up`'s whole run builds the mesh as its `mesh` phase.

use std::collections::BTreeMap;
use std::sync::Arc;

use clusterkit_core::transport::facts::{self, Facts};
use clusterkit_core::transport::{fan_out, Transport};
use clusterkit_wg::PairStatus;
use serde::Serialize;

use crate::session::Session;
use crate::up::{CapabilityReport, Phase, UpOptions};
use crate::OpsError;

/// Every node's facts, asked at once.
pub(crate) async fn gather(
    nodes: &[Arc<dyn Transport>],
) -> Result<BTreeMap<String, Facts>, OpsError> {
    let mut out = BTreeMap::new();
    for (n, r) in fan_out(nodes, 16, facts::gather).await {
        out.insert(n, r?);
    }
    Ok(out)
}

/// Builds or converges the full mesh on every node (each must answer) and
/// proves it with a ping between every pair. `userspace` is the userspace
/// WireGuard executable for nodes whose kernel has none. The engine's
/// `mesh` phase after the facts, as `up --only mesh`; its steps are
/// reported as the engine's events.
pub async fn up(
    session: &Session<'_>,
    userspace: Option<Vec<u8>>,
) -> Result<CapabilityReport<Vec<PairStatus>>, OpsError> {
    let options = UpOptions {
        userspace,
        ..UpOptions::only(Phase::Mesh)
    };
    let up = crate::up::run(session, &options, "wg").await?;
    let after = status(session).await?;
    Ok(CapabilityReport { up, after })
}

/// Every pair's latest handshake and a ping over the mesh (every node must
/// answer). Changes nothing.
pub async fn status(session: &Session<'_>) -> Result<Vec<PairStatus>, OpsError> {
    let nodes = session.connect_all().await?;
    Ok(clusterkit_wg::status(&nodes, &session.loaded().built.spec).await?)
}

/// What [`rotate`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RotateReport {
    /// Each node rotated, with its new public key.
    pub keys: Vec<(String, String)>,
    /// Every pair, after the rotation.
    pub pairs: Vec<PairStatus>,
}

/// Replaces `node`'s key (every node's when `None`) without taking the mesh
/// down: each peer learns the new key live.
pub async fn rotate(session: &Session<'_>, node: Option<&str>) -> Result<RotateReport, OpsError> {
    let spec = &session.loaded().built.spec;
    let targets: Vec<String> = match node {
        Some(n) => vec![n.to_string()],
        None => spec.nodes.iter().map(|n| n.name.to_string()).collect(),
    };
    if let Some(n) = targets.iter().find(|n| spec.node(n).is_none()) {
        return Err(OpsError::Refused(format!(
            "no node `{n}` in the cluster description"
        )));
    }
    let nodes = session.connect_all().await?;
    session.lock(&nodes, "wg").await?;
    let mut keys = Vec::new();
    for n in targets {
        let key = clusterkit_wg::rotate(&nodes, spec, &n).await?;
        session.notice(Some(&n), format!("new public key {key}"));
        keys.push((n, key.to_string()));
    }
    let pairs = clusterkit_wg::status(&nodes, spec).await?;
    Ok(RotateReport { keys, pairs })
}

#[cfg(test)]
mod tests {
    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;

    use super::*;
    use crate::testkit::loaded;
    use crate::Options;

    #[tokio::test]
    async fn a_rotation_of_an_unknown_node_or_with_a_node_missing_asks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(2, dir.path());
        let n1 = Scripted::new("node1");
        let lines = Lines::to_string();
        let given: Vec<Arc<dyn Transport>> = vec![Arc::new(n1.clone())];
        let session = Session::with_transports(&loaded, Options::default(), &lines, given);
        let e = rotate(&session, Some("node9"))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(e, "no node `node9` in the cluster description");
        let e = rotate(&session, Some("node1")).await.unwrap_err();
        assert!(
            matches!(&e, OpsError::Unreachable(u) if u[0].node == "node2"),
            "{e}"
        );
        let e = up(&session, None).await.unwrap_err();
        assert!(matches!(e, OpsError::Unreachable(_)));
        assert!(n1.asked().is_empty(), "{:?}", n1.asked());
    }
}
