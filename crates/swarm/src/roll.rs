//! Work done on one node at a time while the swarm keeps serving: the node
//! is drained (its tasks start elsewhere first), the work is done, the node
//! is made active again and its global tasks come back. [`roll`] goes over
//! the nodes with these, doing each capability's [`Work`] (`clusterkit
//! upgrade`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{NodeSpecAvailabilityEnum, NodeState, Reachability, TaskState};
use clusterkit_core::roll::{Say, Work};
use clusterkit_core::transport::Transport;

use crate::{engine, SwarmError};

/// The swarm's entry for a node, by its `clusterkit.node` label.
async fn entry(mgr: &dyn Transport, node: &str) -> Result<bollard::models::Node, SwarmError> {
    let docker = mgr.docker().await?;
    let listed = docker
        .list_nodes(None)
        .await
        .map_err(|e| engine(mgr.node(), "node ls", e))?;
    listed
        .into_iter()
        .find(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.labels.as_ref())
                .and_then(|l| l.get("clusterkit.node"))
                .is_some_and(|v| v == node)
                && n.status.as_ref().and_then(|s| s.state) != Some(NodeState::DOWN)
        })
        .ok_or_else(|| SwarmError::Engine {
            node: mgr.node().to_string(),
            what: format!("finding {node}"),
            reason: format!("{node} is not a ready member of the swarm: run `clusterkit up` first"),
        })
}

async fn set_availability(
    mgr: &dyn Transport,
    node: &str,
    availability: NodeSpecAvailabilityEnum,
) -> Result<String, SwarmError> {
    let n = entry(mgr, node).await?;
    let id = n.id.clone().unwrap_or_default();
    if n.spec.as_ref().and_then(|s| s.availability) != Some(availability) {
        crate::update_node_spec(
            &mgr.docker().await?,
            mgr.node(),
            &id,
            &format!("node update {node}"),
            |current| {
                (current.availability != Some(availability)).then(|| bollard::models::NodeSpec {
                    availability: Some(availability),
                    ..current.clone()
                })
            },
        )
        .await?;
    }
    Ok(id)
}

/// Every service and every task, through a manager.
async fn services_and_tasks(
    mgr: &dyn Transport,
) -> Result<(Vec<bollard::models::Service>, Vec<bollard::models::Task>), SwarmError> {
    let docker = mgr.docker().await?;
    let services = docker
        .list_services(None)
        .await
        .map_err(|e| engine(mgr.node(), "service ls", e))?;
    let tasks = docker
        .list_tasks(None)
        .await
        .map_err(|e| engine(mgr.node(), "task ls", e))?;
    Ok((services, tasks))
}

/// Replicated services short of their replicas, as `name (running/wanted)`
/// (services pinned to named nodes aside unless `with_pinned`), and the
/// tasks still running on node `id`.
async fn census(
    mgr: &dyn Transport,
    id: &str,
    with_pinned: bool,
) -> Result<(Vec<String>, usize), SwarmError> {
    let (services, tasks) = services_and_tasks(mgr).await?;
    let running = |t: &&bollard::models::Task| {
        t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
    };
    let mut per_service: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tasks
        .iter()
        .filter(running)
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
    {
        *per_service
            .entry(t.service_id.as_deref().unwrap_or_default())
            .or_default() += 1;
    }
    let short = services
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            // A service pinned to named nodes (Garage's per-node services)
            // cannot run elsewhere: it waits for its node to come back.
            let pinned = spec
                .task_template
                .as_ref()
                .and_then(|t| t.placement.as_ref())
                .and_then(|p| p.constraints.as_ref())
                .is_some_and(|c| c.iter().any(|c| crate::rebalance::pinned(c)));
            if pinned && !with_pinned {
                return None;
            }
            let wanted = spec.mode.as_ref()?.replicated.as_ref()?.replicas? as usize;
            let have = per_service
                .get(s.id.as_deref().unwrap_or_default())
                .copied()
                .unwrap_or(0);
            (have < wanted).then(|| {
                format!(
                    "{} ({have}/{wanted})",
                    spec.name.clone().unwrap_or_default()
                )
            })
        })
        .collect();
    let on_node = tasks
        .iter()
        .filter(running)
        .filter(|t| t.node_id.as_deref() == Some(id))
        .count();
    Ok((short, on_node))
}

/// Makes `node` active through `mgr` without waiting for anything (a node
/// a backup was taken from comes back drained in the restored swarm).
pub async fn undrain(mgr: &dyn Transport, node: &str) -> Result<(), SwarmError> {
    set_availability(mgr, node, NodeSpecAvailabilityEnum::ACTIVE)
        .await
        .map(|_| ())
}

/// Drains `node` through the manager `mgr` (not the node itself when the
/// work will cut it off) and waits until nothing runs on it and every
/// replicated service runs all its replicas elsewhere (a service pinned to
/// the node, as Garage's are, is down until the node is active again). If that does not
/// happen within `patience`, the node is made active again and the error
/// names the services that could not move.
pub async fn drain(mgr: &dyn Transport, node: &str, patience: Duration) -> Result<(), SwarmError> {
    let id = set_availability(mgr, node, NodeSpecAvailabilityEnum::DRAIN).await?;
    let started = Instant::now();
    loop {
        let (short, on_node) = census(mgr, &id, false).await?;
        if short.is_empty() && on_node == 0 {
            return Ok(());
        }
        if started.elapsed() > patience {
            set_availability(mgr, node, NodeSpecAvailabilityEnum::ACTIVE).await?;
            return Err(SwarmError::Engine {
                node: node.to_string(),
                what: "drain".into(),
                reason: format!(
                    "after {} s, {on_node} task(s) still run on it and these services miss replicas elsewhere: {}. \
                     The node is active again; give those services room on the other nodes (placement constraints, \
                     max_replicas_per_node), then run again",
                    patience.as_secs(),
                    if short.is_empty() { "none".to_string() } else { short.join(", ") }
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits, after `t`'s engine was restarted (its package replaced), until it
/// answers as an active swarm member again and the manager `mgr` sees the
/// node ready: only then can it be made active.
pub async fn engine_back(
    mgr: &dyn Transport,
    t: &dyn Transport,
    patience: Duration,
) -> Result<(), SwarmError> {
    let started = Instant::now();
    loop {
        let last = match crate::local(t).await {
            Ok(l) if l.state == bollard::models::LocalNodeState::ACTIVE => {
                match entry(mgr, t.node()).await {
                    Ok(n) if n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY) => {
                        return Ok(())
                    }
                    Ok(_) => "the swarm does not see it ready yet".to_string(),
                    Err(e) => e.to_string(),
                }
            }
            Ok(l) => format!("its swarm state is {}", l.state),
            Err(e) => format!("the engine does not answer: {e}"),
        };
        if started.elapsed() > patience {
            return Err(SwarmError::Engine {
                node: t.node().to_string(),
                what: "engine restart".into(),
                reason: format!(
                    "not back in the swarm after {} s: {last}",
                    patience.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Makes `node` active again and waits until it is ready, reachable as a
/// manager (when it is one), runs a task of every global service, and every
/// replicated service (those pinned to it too) runs all its replicas.
pub async fn activate(
    mgr: &dyn Transport,
    node: &str,
    patience: Duration,
) -> Result<(), SwarmError> {
    let id = set_availability(mgr, node, NodeSpecAvailabilityEnum::ACTIVE).await?;
    let started = Instant::now();
    loop {
        let n = entry(mgr, node).await?;
        let ready = n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
        let reachable = n
            .manager_status
            .as_ref()
            .is_none_or(|m| m.reachability == Some(Reachability::REACHABLE));
        let (services, tasks) = services_and_tasks(mgr).await?;
        let missing: Vec<String> = services
            .iter()
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|x| x.mode.as_ref())
                    .is_some_and(|m| m.global.is_some())
            })
            .filter(|s| {
                !tasks.iter().any(|t| {
                    t.service_id == s.id
                        && t.node_id.as_deref() == Some(id.as_str())
                        && t.status.as_ref().and_then(|x| x.state) == Some(TaskState::RUNNING)
                })
            })
            .filter_map(|s| s.spec.as_ref()?.name.clone())
            .collect();
        // Every replicated service whole again, those pinned to this node
        // (its Garage) included, before the next node goes out.
        let (short, _) = census(mgr, &id, true).await?;
        if ready && reachable && missing.is_empty() && short.is_empty() {
            return Ok(());
        }
        if started.elapsed() > patience {
            return Err(SwarmError::Engine {
                node: node.to_string(),
                what: "coming back".into(),
                reason: format!(
                    "after {} s: {}{}{}{}",
                    patience.as_secs(),
                    if ready { "" } else { "not ready; " },
                    if reachable {
                        ""
                    } else {
                        "not reachable as a manager; "
                    },
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!("no running task of {}; ", missing.join(", "))
                    },
                    if short.is_empty() {
                        String::new()
                    } else {
                        format!("services short of replicas: {}", short.join(", "))
                    }
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How long a node may take to drain, and to come back once active.
pub const NODE_PATIENCE: Duration = Duration::from_secs(180);

/// Replaces `component` on each node of `todo` in turn: every manager must
/// answer (quorum is never put at risk), the node is drained through another
/// manager, the [`Work`] replaces the component, the node is made active and
/// waited for ([`activate`]), then the work's `back`. A failure stops the
/// roll with an error that says where and how to resume. Returns the number
/// of nodes done.
pub async fn roll(
    nodes: &[Arc<dyn Transport>],
    component: &str,
    todo: Vec<(Arc<dyn Transport>, Box<dyn Work + '_>)>,
    say: Say<'_>,
) -> Result<usize, SwarmError> {
    let total = todo.len();
    for (done, (t, work)) in todo.into_iter().enumerate() {
        let node = t.node();
        let stopped = |e: &dyn std::fmt::Display| {
            let e = e.to_string();
            SwarmError::RollStopped {
                node: node.to_string(),
                reason: e
                    .strip_prefix(&format!("{node}: "))
                    .unwrap_or(&e)
                    .to_string(),
                done,
                total,
                component: component.to_string(),
            }
        };
        let st = crate::status(nodes).await.map_err(|e| stopped(&e))?;
        if let Some(down) = st.managers.iter().find(|m| !m.reachable) {
            return Err(stopped(&format!(
                "manager {} is not reachable: taking {node} out now could leave the swarm without a majority \
                 ({} of {} managers needed). Bring {} back first",
                down.hostname,
                st.quorum,
                st.managers.len(),
                down.hostname
            )));
        }
        // Another node speaks for the swarm while this one is out.
        let via = nodes
            .iter()
            .find(|o| o.node() != node && st.managers.iter().any(|m| m.hostname == o.node()))
            .or_else(|| nodes.iter().find(|o| o.node() != node));
        match via {
            Some(mgr) => {
                say(&format!(
                    "{node}: draining (its tasks start on the other nodes first)"
                ));
                drain(mgr.as_ref(), node, NODE_PATIENCE)
                    .await
                    .map_err(|e| stopped(&e))?;
            }
            None => say(&format!(
                "{node}: a single node: upgraded in place (nowhere to move its tasks)"
            )),
        }
        work.replace(&t, via, say).await.map_err(|e| stopped(&e))?;
        if let Some(mgr) = via {
            activate(mgr.as_ref(), node, NODE_PATIENCE)
                .await
                .map_err(|e| stopped(&e))?;
            say(&format!(
                "{node}: back: ready, reachable, global tasks running ({}/{total})",
                done + 1
            ));
        }
        work.back(&t, say).await.map_err(|e| stopped(&e))?;
    }
    Ok(total)
}

/// Docker Engine's package replaced on a node: the distribution's
/// `docker.io` at a version, installed and held, the engine restarted; done
/// when the engine answers as a swarm member the swarm sees ready and the
/// package is that version. A failed install makes the node active again
/// (the install stops before the restart: the engine that ran still runs).
pub struct EnginePackage<'a> {
    /// The `docker.io` version.
    pub version: &'a str,
}

#[async_trait::async_trait]
impl Work for EnginePackage<'_> {
    async fn replace(
        &self,
        t: &Arc<dyn Transport>,
        via: Option<&Arc<dyn Transport>>,
        say: Say<'_>,
    ) -> Result<(), clusterkit_core::engine::BoxError> {
        use clusterkit_core::transport::install::{
            engine_package_script, installed_engine_package,
        };
        use clusterkit_core::transport::Cmd;
        let (node, version) = (t.node(), self.version);
        say(&format!(
            "{node}: installing docker.io {version} (the engine restarts)"
        ));
        // The package's scripts may or may not restart the engine: restarted
        // here, so that the new one runs.
        let script = format!(
            "{}; systemctl restart docker",
            engine_package_script(version)
        );
        if let Err(e) = t.exec(&Cmd::new(script)).await {
            if let Some(mgr) = via {
                if undrain(mgr.as_ref(), node).await.is_ok() {
                    say(&format!("{node}: the install failed: made active again"));
                }
            }
            return Err(e.into());
        }
        engine_back(via.unwrap_or(t).as_ref(), t.as_ref(), NODE_PATIENCE).await?;
        let now = installed_engine_package(t.as_ref()).await?;
        if now.as_deref() != Some(version) {
            return Err(format!(
                "docker.io is {} after installing {version}",
                now.as_deref().unwrap_or("not installed")
            )
            .into());
        }
        say(&format!("{node}: the engine answers, back in the swarm"));
        Ok(())
    }
}
