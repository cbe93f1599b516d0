//! Spreading replicated services again after a node came back.
//!
//! Swarm does not move running tasks when a node returns: a service that
//! fell back onto the survivors stays piled there. clusterkit rebalances one
//! service at a time with the scheduler's own rules and never runs fewer
//! replicas than asked: it scales the service to one more replica (the
//! scheduler puts it on the node with the fewest), waits until it runs, then
//! back (swarmkit removes a task from the node with the most copies).

use std::collections::BTreeMap;
use std::time::Duration;

use clusterkit_core::transport::{Cmd, Transport};

use crate::SwarmError;

/// Where a service's running tasks are, per ready node (0 included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spread {
    /// The service.
    pub service: String,
    /// Replicas asked.
    pub replicas: usize,
    /// Running tasks per ready, active node (its `clusterkit.node` label or hostname).
    pub per_node: BTreeMap<String, usize>,
}

impl Spread {
    /// Whether moving a task would even the spread: a node holds at least two
    /// more than another (pure).
    pub fn uneven(&self) -> bool {
        let max = self.per_node.values().max().copied().unwrap_or(0);
        let min = self.per_node.values().min().copied().unwrap_or(0);
        max >= min + 2
    }
}

/// What [`rebalance`] did for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The service.
    pub service: String,
    /// Its spread before.
    pub before: BTreeMap<String, usize>,
    /// Its spread after.
    pub after: BTreeMap<String, usize>,
}

/// Every unpinned replicated service's spread over the ready, active nodes,
/// from three Engine API calls on a manager (nodes, services, tasks).
pub async fn spreads(mgr: &dyn Transport) -> Result<Vec<Spread>, SwarmError> {
    use bollard::models::{NodeSpecAvailabilityEnum, NodeState, TaskState};
    let docker = mgr.docker().await?;
    let engine = |what: &str, e: bollard::errors::Error| SwarmError::Engine {
        node: mgr.node().to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    };
    let nodes = docker
        .list_nodes(None)
        .await
        .map_err(|e| engine("listing nodes", e))?;
    let services = docker
        .list_services(None)
        .await
        .map_err(|e| engine("listing services", e))?;
    let tasks = docker
        .list_tasks(None)
        .await
        .map_err(|e| engine("listing tasks", e))?;
    // A node's name: its clusterkit.node label, else its hostname.
    let names: BTreeMap<String, String> = nodes
        .iter()
        .filter_map(|n| {
            let label = n
                .spec
                .as_ref()
                .and_then(|s| s.labels.as_ref())
                .and_then(|l| l.get("clusterkit.node").cloned());
            let host = n.description.as_ref().and_then(|d| d.hostname.clone());
            Some((n.id.clone()?, label.or(host)?))
        })
        .collect();
    let ready: Vec<String> = nodes
        .iter()
        .filter(|n| {
            n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY)
                && n.spec.as_ref().and_then(|s| s.availability)
                    == Some(NodeSpecAvailabilityEnum::ACTIVE)
        })
        .filter_map(|n| names.get(n.id.as_ref()?).cloned())
        .collect();
    let mut out = Vec::new();
    for s in &services {
        let Some(spec) = &s.spec else { continue };
        let Some(replicas) = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
        else {
            continue;
        };
        let pinned = spec
            .task_template
            .as_ref()
            .and_then(|t| t.placement.as_ref())
            .and_then(|p| p.constraints.as_ref())
            .is_some_and(|c| c.iter().any(|c| pinned(c)));
        if pinned {
            continue;
        }
        let mut per_node: BTreeMap<String, usize> = ready.iter().map(|n| (n.clone(), 0)).collect();
        for t in tasks.iter().filter(|t| {
            t.service_id == s.id
                && t.desired_state == Some(TaskState::RUNNING)
                && t.status.as_ref().and_then(|x| x.state) == Some(TaskState::RUNNING)
        }) {
            if let Some(n) = t.node_id.as_ref().and_then(|id| names.get(id)) {
                *per_node.entry(n.clone()).or_insert(0) += 1;
            }
        }
        out.push(Spread {
            service: spec.name.clone().unwrap_or_default(),
            replicas: replicas as usize,
            per_node,
        });
    }
    Ok(out)
}

/// Whether a placement constraint pins a service to named nodes (pure):
/// such a service is where its owner put it.
pub fn pinned(constraint: &str) -> bool {
    let c = constraint.replace(' ', "");
    [
        "node.hostname==",
        "node.id==",
        "node.labels.clusterkit.node==",
    ]
    .iter()
    .any(|p| c.starts_with(p))
}

/// How long one scale step may take to converge.
const STEP: Duration = Duration::from_secs(120);

async fn scale(mgr: &dyn Transport, service: &str, n: usize) -> Result<(), SwarmError> {
    // Without --detach the CLI waits until the service converged.
    let cmd = Cmd::new(format!("timeout {} docker service scale ", STEP.as_secs()))
        .arg(&format!("{service}={n}"))
        .push(" >/dev/null");
    let started = std::time::Instant::now();
    loop {
        let out = mgr.exec_raw(&cmd, None).await?;
        if out.status == 0 {
            return Ok(());
        }
        // Setting a replica count again is harmless: asked again while the
        // managers elect a leader (a node that just came back can set one off).
        if leadership_moved(&out.tail()) && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        return Err(SwarmError::Engine {
            node: mgr.node().to_string(),
            what: format!("scaling {service} to {n}"),
            reason: format!(
                "{} (the service keeps {n} or more replicas; look at `docker service ps {service}`, then run `clusterkit rebalance` again)",
                out.tail()
            ),
        });
    }
}

/// Whether the engine refused because the swarm's leadership was moving
/// (measured on the 9-node sandbox during a rebalance after the old
/// leader's node came back: "raft: failed to process the request: node lost
/// leader status"), which passes within seconds.
fn leadership_moved(answer: &str) -> bool {
    [
        "lost leader status",
        "does not have a leader",
        "leadership change",
    ]
    .iter()
    .any(|m| answer.contains(m))
}

/// Spreads every uneven, unpinned replicated service over the ready nodes,
/// one service and one task at a time, never below its replica count.
/// Returns the services moved with their spread before and after.
pub async fn rebalance(
    mgr: &dyn Transport,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Moved>, SwarmError> {
    let mut moved = Vec::new();
    for s in spreads(mgr).await? {
        if !s.uneven() || s.replicas < 2 {
            continue;
        }
        let before = s.per_node.clone();
        progress(&format!(
            "{}: {} replicas piled up, spreading them one at a time",
            s.service, s.replicas
        ));
        let mut now = s;
        // Each round moves one task; a spread can need at most `replicas` moves.
        for _ in 0..now.replicas {
            scale(mgr, &now.service, now.replicas + 1).await?;
            scale(mgr, &now.service, now.replicas).await?;
            let Some(next) = spreads(mgr)
                .await?
                .into_iter()
                .find(|x| x.service == now.service)
            else {
                break;
            };
            let progressed = next.per_node != now.per_node;
            now = next;
            if !now.uneven() || !progressed {
                break;
            }
        }
        moved.push(Moved {
            service: now.service,
            before,
            after: now.per_node,
        });
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leadership_change_is_told_from_a_refusal() {
        assert!(leadership_moved(
            "Error response from daemon: rpc error: code = Unknown desc = raft: failed to process the request: node lost leader status"
        ));
        assert!(leadership_moved(
            "rpc error: The swarm does not have a leader."
        ));
        assert!(!leadership_moved("Error: No such service: keeper"));
        assert!(!leadership_moved("verify: Service keeper converged"));
    }

    #[test]
    fn an_uneven_spread_and_a_pinned_service_are_told_apart() {
        let s = Spread {
            service: "app_web".into(),
            replicas: 3,
            per_node: BTreeMap::from([
                ("node1".into(), 2),
                ("node2".into(), 1),
                ("node3".into(), 0),
            ]),
        };
        assert!(s.uneven());
        let even = Spread {
            per_node: BTreeMap::from([
                ("node1".into(), 1),
                ("node2".into(), 1),
                ("node3".into(), 0),
            ]),
            ..s
        };
        assert!(!even.uneven());
        assert!(pinned("node.labels.clusterkit.node == node2"));
        assert!(pinned("node.hostname==a"));
        assert!(!pinned("node.role == manager"));
        assert!(!pinned("node.labels.clusterkit.storage == true"));
    }
}
