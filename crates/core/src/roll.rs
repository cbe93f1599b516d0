//! A component replaced node by node while the swarm keeps serving. Each
//! capability crate says how its component is replaced on one node (a
//! [`Work`]); the loop that checks the managers, drains each node, runs the
//! work and brings the node back is `clusterkit_swarm::roll::roll`.

use std::sync::Arc;

use crate::engine::BoxError;
use crate::transport::Transport;

/// Where a roll's progress lines go.
pub type Say<'a> = &'a (dyn Fn(&str) + Sync);

/// What replaces one component on one node.
#[async_trait::async_trait]
pub trait Work: Send + Sync {
    /// Replaces the component on `t`. The node is drained unless it is the
    /// only one; `via`, another manager when there is one, speaks for the
    /// swarm while it is out. An error stops the roll (the node stays
    /// drained unless the work made it active again, and says so).
    async fn replace(
        &self,
        t: &Arc<dyn Transport>,
        via: Option<&Arc<dyn Transport>>,
        say: Say<'_>,
    ) -> Result<(), BoxError>;

    /// Once the node takes tasks again: waits until the component is back
    /// there (nothing by default).
    async fn back(&self, _t: &Arc<dyn Transport>, _say: Say<'_>) -> Result<(), BoxError> {
        Ok(())
    }
}
