//! `node remove` and `node add`: a node leaves the cluster for good (dead
//! or retired), or joins it (new, or replacing one). Each is a few steps
//! around a reload of the description (the caller's: it prints the
//! description's warnings), then `up` on the nodes of the new description.
//!
//! Removal: [`removed_address`], [`record_removal`], reload, [`remove`],
//! [`crate::up::up`]. Addition: [`clear_removal`], reload, [`check_listed`],
//! [`crate::up::up`].

use std::net::Ipv4Addr;

use clusterkit_core::spec::Loaded;
use clusterkit_core::state::State;
use clusterkit_core::transport::known_hosts;
use serde::Serialize;

use crate::session::Session;
use crate::OpsError;

/// The mesh address of `node`, a node of the cluster (or one already
/// recorded as removed): the swarm finds its entries by it.
pub fn removed_address(loaded: &Loaded, node: &str) -> Result<Ipv4Addr, OpsError> {
    let state = &loaded.built.state;
    // The recorded state too: a node already deleted from the inventory is
    // no longer in the state just built.
    let recorded = State::load(&loaded.state_path)?;
    if let Some(addr) = [state, &recorded]
        .iter()
        .find_map(|s| s.mesh_addresses.get(node).or(s.removed.get(node)))
    {
        return Ok(*addr);
    }
    let known: Vec<&str> = state.mesh_addresses.keys().map(String::as_str).collect();
    let hint = clusterkit_core::diag::did_you_mean(node, known.iter().copied())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    Err(OpsError::Refused(format!(
        "`{node}` is not a node of cluster {}{hint}: its nodes are {}",
        loaded.built.spec.name,
        known.join(", ")
    )))
}

/// Records `node` as removed in the state file: from then on every
/// operation leaves it out. Returns whether it was not recorded yet.
pub fn record_removal(loaded: &Loaded, node: &str, addr: Ipv4Addr) -> Result<bool, OpsError> {
    let state = &loaded.built.state;
    if state.removed.contains_key(node) {
        return Ok(false);
    }
    let mut recorded = state.clone();
    recorded.mesh_addresses.remove(node);
    recorded.removed.insert(node.to_string(), addr);
    recorded.save(&loaded.state_path)?;
    Ok(true)
}

/// What [`remove`] did.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRemoveReport {
    /// The node.
    pub node: String,
    /// It answered, and left the swarm and the mesh by itself.
    pub answered: bool,
    /// The swarm's side: entries removed, managers left.
    pub swarm: clusterkit_swarm::NodeRemoval,
    /// How many of its recorded host keys were forgotten.
    pub host_keys_forgotten: usize,
}

/// Takes `node` (at mesh address `addr`) out of the swarm through the nodes
/// that stay (`after`: a session on the description reloaded after
/// [`record_removal`]; every one of its nodes must answer), quorum guarded;
/// if the node itself still answers (reached through `before`, the
/// description that still has it), it leaves the swarm and takes its mesh
/// down. Its recorded host key is forgotten. Idempotent.
pub async fn remove(
    before: &Loaded,
    after: &Session<'_>,
    node: &str,
    addr: Ipv4Addr,
) -> Result<NodeRemoveReport, OpsError> {
    let spec = &before.built.spec;
    let target = spec.node(node).map(|n| n.ssh.clone());
    let own = match target {
        Some(_) => after.reach_node(before, node).await,
        None => None,
    };
    // The messages name the node as the CLI always wrote them (scripts
    // and tests read them).
    after.notice(
        None,
        if own.is_some() {
            format!("{node} answers: it leaves the swarm and the mesh by itself")
        } else {
            format!("{node} does not answer: treated as lost")
        },
    );
    let nodes = match after.connect_all().await {
        Ok(n) => n,
        Err(OpsError::Unreachable(u)) => {
            return Err(OpsError::Refused(format!(
                "{} other node(s) unreachable ({}): bring them back (or remove them too, one at a time), then run `clusterkit node remove {node}` again",
                u.len(),
                u.iter().map(|u| format!("{}: {}", u.node, u.error)).collect::<Vec<_>>().join("; ")
            )))
        }
        Err(e) => return Err(e),
    };
    after.lock(&nodes, "node").await?;
    let swarm = clusterkit_swarm::remove_node(&nodes, node, addr).await?;
    if swarm.entries == 0 {
        after.notice(
            None,
            format!("{node} is not in the swarm (already removed)"),
        );
    } else {
        after.notice(
            None,
            format!(
                "{node} removed from the swarm{}: {} manager(s) left, {} reachable",
                if swarm.was_manager {
                    " (demoted first)"
                } else {
                    ""
                },
                swarm.managers_left,
                swarm.reachable_left
            ),
        );
    }
    if let Some(t) = &own {
        clusterkit_monitor::keeper::remove(t.as_ref()).await?;
        clusterkit_swarm::leave(t.as_ref()).await?;
        clusterkit_wg::down(t.as_ref(), &spec.mesh.interface, false).await?;
        after.notice(Some(node), "left the swarm, mesh interface down");
    }
    let mut host_keys_forgotten = 0;
    if let Some(ssh) = target {
        let path = crate::session::known_hosts_path(before);
        host_keys_forgotten = known_hosts::forget(&path, &ssh.host, ssh.port.get())
            .map_err(OpsError::local(format!("updating {}", path.display())))?;
        if host_keys_forgotten > 0 {
            after.notice(
                Some(node),
                "forgot its recorded host key (a machine that takes its name is a new one)",
            );
        }
    }
    Ok(NodeRemoveReport {
        node: node.to_string(),
        answered: own.is_some(),
        swarm,
        host_keys_forgotten,
    })
}

/// Clears a removal recorded for `node`. Returns whether there was one.
pub fn clear_removal(loaded: &Loaded, node: &str) -> Result<bool, OpsError> {
    let mut state = loaded.built.state.clone();
    if state.removed.remove(node).is_none() {
        return Ok(false);
    }
    state.save(&loaded.state_path)?;
    Ok(true)
}

/// Refuses a node the description does not list, with the way on.
pub fn check_listed(loaded: &Loaded, node: &str) -> Result<(), OpsError> {
    let spec = &loaded.built.spec;
    if spec.node(node).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
    Err(OpsError::Refused(format!(
        "`{node}` is not in the cluster's description (nodes: {}): add it to the inventory first, e.g. `{node} ansible_host=ADDRESS`, then run again",
        names.join(", ")
    )))
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

    #[test]
    fn an_unknown_node_is_refused_with_the_likely_one() {
        let dir = tempfile::tempdir().unwrap();
        let l = loaded(3, dir.path());
        let e = removed_address(&l, "node4").unwrap_err().to_string();
        assert!(e.contains("`node4` is not a node of cluster"), "{e}");
        let e = removed_address(&l, "nod2").unwrap_err().to_string();
        assert!(e.contains("node2"), "{e}");
        assert!(check_listed(&l, "node9")
            .unwrap_err()
            .to_string()
            .contains("node9 ansible_host=ADDRESS"));
    }

    #[test]
    fn a_removal_is_recorded_once_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = loaded(3, dir.path());
        let addr = removed_address(&l, "node3").unwrap();
        assert!(record_removal(&l, "node3", addr).unwrap());
        let saved = State::load(&l.state_path).unwrap();
        assert_eq!(saved.removed.get("node3"), Some(&addr));
        assert!(!saved.mesh_addresses.contains_key("node3"));
        l.built.state = saved;
        assert!(!record_removal(&l, "node3", addr).unwrap(), "once");
        assert_eq!(removed_address(&l, "node3").unwrap(), addr, "still found");
        assert!(clear_removal(&l, "node3").unwrap());
        assert!(State::load(&l.state_path).unwrap().removed.is_empty());
    }

    #[tokio::test]
    async fn removal_needs_every_node_that_stays_and_touches_nothing_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let before = loaded(3, dir.path());
        let mut after = before.clone();
        after
            .built
            .spec
            .nodes
            .retain(|n| n.name.as_str() != "node3");
        let n1 = Scripted::new("node1");
        let lines = Lines::to_string();
        let nodes: Vec<Arc<dyn Transport>> = vec![Arc::new(n1.clone())];
        let session = Session::with_transports(&after, Options::default(), &lines, nodes);
        let e = remove(&before, &session, "node3", "10.0.0.3".parse().unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 other node(s) unreachable (node2: "), "{e}");
        assert!(
            e.contains("then run `clusterkit node remove node3` again"),
            "{e}"
        );
        assert!(n1.asked().is_empty(), "{:?}", n1.asked());
    }
}
