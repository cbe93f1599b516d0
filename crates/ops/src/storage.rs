//! The distributed storage alone (`clusterkit storage`): [`up`] and
//! [`status`]. `up`'s whole run builds it as its `storage` phase.

use clusterkit_storage::StorageStatus;
use serde::Serialize;

use crate::session::{Reach, Session};
use crate::up::{CapabilityReport, Phase, UpOptions};
use crate::{OpsError, Unreachable};

/// Sends the storage image where it is missing, deploys the S3 servers
/// and the volume driver on every node (each must answer), `volumes` the
/// driver's front to install ([`UpOptions::volumes`]). The engine's
/// `storage` phase after the facts, as `up --only storage`; its steps are
/// reported as the engine's events.
pub async fn up(
    session: &Session<'_>,
    volumes: Option<Vec<u8>>,
) -> Result<CapabilityReport<StorageStatus>, OpsError> {
    if session.loaded().built.spec.storage.backend == clusterkit_core::spec::StorageBackend::None {
        return Err(OpsError::Refused(
            "storage is off in this cluster's config ([storage] backend = \"none\")".into(),
        ));
    }
    let only = UpOptions {
        volumes,
        ..UpOptions::only(Phase::Storage)
    };
    let up = crate::up::run(session, &only, "storage").await?;
    let nodes = session.connect_all().await?;
    let after = clusterkit_storage::status(&nodes, &session.loaded().built.spec).await?;
    Ok(CapabilityReport { up, after })
}

/// The storage as the nodes that answer at once see it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Per node health and capacity, the probe object.
    pub status: StorageStatus,
    /// Nodes that did not answer.
    pub unreachable: Vec<Unreachable>,
}

/// The storage's table, then the nodes that did not answer.
impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        self.unreachable.iter().try_for_each(|u| writeln!(f, "{u}"))
    }
}

impl StatusReport {
    /// Every node up, every driver serving, the probe written and read back,
    /// every node answered.
    pub fn healthy(&self) -> bool {
        let s = &self.status;
        s.nodes.iter().all(|n| n.up)
            && s.drivers_down().is_empty()
            && s.probe_ms.is_some()
            && self.unreachable.is_empty()
    }
}

/// Reads the storage's health through the nodes that answer. Writes and
/// reads back the probe object, nothing else.
pub async fn status(session: &Session<'_>) -> Result<StatusReport, OpsError> {
    let c = session.connect(Reach::Quick).await;
    let status = clusterkit_storage::status(&c.nodes, &session.loaded().built.spec).await?;
    Ok(StatusReport {
        status,
        unreachable: c.unreachable,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;
    use clusterkit_core::transport::Transport;

    use super::*;
    use crate::testkit::loaded;
    use crate::Options;

    #[tokio::test]
    async fn storage_up_without_a_backend_is_refused_before_any_node_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = loaded(3, dir.path());
        loaded.built.spec.storage.backend = clusterkit_core::spec::StorageBackend::None;
        let n1 = Scripted::new("node1");
        let lines = Lines::to_string();
        let given = vec![Arc::new(n1.clone()) as Arc<dyn Transport>];
        let session = Session::with_transports(&loaded, Options::default(), &lines, given);
        let e = up(&session, None).await.unwrap_err().to_string();
        assert!(e.contains("backend = \"none\""), "{e}");
        assert!(n1.asked().is_empty());
    }

    #[tokio::test]
    async fn storage_up_with_a_node_missing_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let n1 = Scripted::new("node1");
        let lines = Lines::to_string();
        let given = vec![Arc::new(n1.clone()) as Arc<dyn Transport>];
        let session = Session::with_transports(&loaded, Options::default(), &lines, given);
        let e = up(&session, None).await.unwrap_err();
        assert!(
            matches!(&e, OpsError::Unreachable(u) if u.len() == 2),
            "{e}"
        );
        assert!(n1.asked().is_empty());
    }
}
