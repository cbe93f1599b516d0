//! Images from this machine to the nodes (`clusterkit images push`): for
//! clusters whose nodes cannot pull, as the sandbox's.

use clusterkit_core::transport::{fan_out, images};
use serde::Serialize;

use crate::session::{Reach, Session};
use crate::{OpsError, Unreachable};

/// What [`push`] did on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// The node.
    pub node: String,
    /// The images it lacked and now has (empty: it had every one), or why
    /// they could not be loaded.
    pub loaded: Result<Vec<String>, String>,
}

/// What [`push`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// Each node that answered.
    pub nodes: Vec<Pushed>,
    /// The nodes that did not.
    pub unreachable: Vec<Unreachable>,
}

impl PushReport {
    /// Every node answered and has every image.
    pub fn complete(&self) -> bool {
        self.unreachable.is_empty() && self.nodes.iter().all(|n| n.loaded.is_ok())
    }
}

/// Sends `names` (images of this machine's engine, saved once with `docker
/// save`) to every node that lacks one of them, four nodes at a time.
pub async fn push(session: &Session<'_>, names: &[String]) -> Result<PushReport, OpsError> {
    let archive = images::save_local(names).map_err(|e| OpsError::Refused(e.to_string()))?;
    let c = session.connect(Reach::Patient).await;
    let nodes = fan_out(&c.nodes, 4, |t| images::push(t, archive.path(), names))
        .await
        .into_iter()
        .map(|(node, r)| Pushed {
            node,
            loaded: r.map_err(|e| e.to_string()),
        })
        .collect();
    Ok(PushReport {
        nodes,
        unreachable: c.unreachable,
    })
}
