//! `clusterkit node remove` and `clusterkit node add`: a node leaves the
//! cluster for good (dead or retired), or joins it (new, or replacing one).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use clap::Subcommand;
use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::known_hosts;

use crate::exit;
use crate::remote::{connect, connect_with, known_hosts_path};
use crate::up::ProgressMode;

/// `clusterkit node` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Take a node out of the cluster for good: a dead server, or one leaving.
    #[command(
        after_help = "What happens, in order (each step idempotent: run it again if it stops):\n\
        1. The node is recorded as removed in .clusterkit/state.toml: from now on every command\n\
        \x20  leaves it out, even while the inventory still lists it (a warning says so).\n\
        2. Through a manager that stays, the node is demoted and deleted from the swarm. Refused\n\
        \x20  when the managers that stay would not hold a majority.\n\
        3. If the node still answers, it leaves the swarm and takes its mesh interface down.\n\
        4. `up` runs on the nodes that stay: the node leaves every WireGuard peer list, the\n\
        \x20  storage layout (its copies are made again on the others, when enough nodes are left)\n\
        \x20  and Prometheus's targets; its recorded host key is forgotten.\n\n\
        Examples:\n  clusterkit node remove node3 --yes\n  clusterkit node add node3       # a fresh machine under the same name"
    )]
    Remove {
        /// The node (its inventory name).
        node: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Add a node listed in the inventory: the same as `up`, and takes back a removed node.
    #[command(
        after_help = "Write the node in the inventory first (`node4 ansible_host=192.0.2.14`), then run this:\n\
        it clears a removal recorded by `clusterkit node remove` for that name and runs `up`,\n\
        which gives the node its key and mesh address, the swarm, storage and monitoring.\n\n\
        Example:\n  clusterkit node add node4"
    )]
    Add {
        /// The node (its inventory name).
        node: String,
    },
}

/// Runs a `node` subcommand; `reload` loads the description again (with
/// the state just written), printing its warnings.
pub fn run(
    loaded: &Loaded,
    reload: &dyn Fn() -> anyhow::Result<Option<Loaded>>,
    cmd: NodeCmd,
) -> anyhow::Result<u8> {
    match cmd {
        NodeCmd::Remove { node, yes } => remove(loaded, reload, &node, yes),
        NodeCmd::Add { node } => add(loaded, reload, &node),
    }
}

fn remove(
    loaded: &Loaded,
    reload: &dyn Fn() -> anyhow::Result<Option<Loaded>>,
    node: &str,
    yes: bool,
) -> anyhow::Result<u8> {
    let state = &loaded.built.state;
    // The recorded state too: a node already deleted from the inventory is
    // no longer in the state just built.
    let recorded = clusterkit_core::state::State::load(&loaded.state_path)?;
    let Some(addr) = [state, &recorded]
        .iter()
        .find_map(|s| s.mesh_addresses.get(node).or(s.removed.get(node)))
        .copied()
    else {
        let known: Vec<&str> = state.mesh_addresses.keys().map(String::as_str).collect();
        let hint = clusterkit_core::diag::did_you_mean(node, known.iter().copied())
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        anyhow::bail!(
            "`{node}` is not a node of cluster {}{hint}: its nodes are {}",
            loaded.built.spec.name,
            known.join(", ")
        );
    };
    let spec = &loaded.built.spec;
    if !yes {
        let what = format!(
            "This takes {node} ({addr}) out of cluster {} for good: out of the swarm, the mesh, the storage layout and monitoring.",
            spec.name
        );
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("{what}\nrefusing without confirmation: pass --yes");
        }
        eprintln!("{what}\nType the node's name ({node}) to go on:");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != node {
            eprintln!("not confirmed: nothing was changed");
            return Ok(exit::FAILURE);
        }
    }
    // The node itself, while the description still has it (to learn whether
    // it answers, and to forget its host key).
    let mut leaving = loaded.clone();
    leaving.built.spec.nodes.retain(|n| n.name.as_str() == node);
    let target = leaving.built.spec.nodes.first().map(|n| n.ssh.clone());

    if !state.removed.contains_key(node) {
        let mut recorded = state.clone();
        recorded.mesh_addresses.remove(node);
        recorded.removed.insert(node.to_string(), addr);
        recorded.save(&loaded.state_path)?;
        eprintln!(
            "{node}: recorded as removed in {}",
            loaded.state_path.display()
        );
    }
    let Some(after) = reload()? else {
        return Ok(exit::INVALID);
    };
    crate::block_on(async {
        let own = if target.is_some() {
            connect_with(&leaving, false, true)
                .await
                .0
                .into_iter()
                .next()
        } else {
            None
        };
        match &own {
            Some(_) => eprintln!("{node} answers: it leaves the swarm and the mesh by itself"),
            None => eprintln!("{node} does not answer: treated as lost"),
        }
        let (nodes, failed) = connect(&after, false).await;
        if !failed.is_empty() {
            for (n, e) in &failed {
                eprintln!("{n}: {e}");
            }
            anyhow::bail!(
                "{} other node(s) unreachable: bring them back (or remove them too, one at a time), then run `clusterkit node remove {node}` again",
                failed.len()
            );
        }
        let _lock = crate::remote::lock_cluster(&after, &nodes, "node").await?;
        let r = clusterkit_swarm::remove_node(&nodes, node, addr).await?;
        if r.entries == 0 {
            eprintln!("{node} is not in the swarm (already removed)");
        } else {
            eprintln!(
                "{node} removed from the swarm{}: {} manager(s) left, {} reachable",
                if r.was_manager {
                    " (demoted first)"
                } else {
                    ""
                },
                r.managers_left,
                r.reachable_left
            );
        }
        if let Some(t) = own {
            clusterkit_monitor::keeper::remove(t.as_ref()).await?;
            clusterkit_swarm::leave(t.as_ref()).await?;
            clusterkit_wg::down(t.as_ref(), &spec.mesh.interface, false).await?;
            eprintln!("{node}: left the swarm, mesh interface down");
        }
        anyhow::Ok(())
    })?;
    if let Some(ssh) = target {
        let path = known_hosts_path(loaded);
        let n = known_hosts::forget(&path, &ssh.host, ssh.port.get())
            .with_context(|| format!("updating {}", path.display()))?;
        if n > 0 {
            eprintln!(
                "{node}: forgot its recorded host key (a machine that takes its name is a new one)"
            );
        }
    }
    // The nodes that stay converge without it: peers, layout, targets.
    let code = crate::up::run(&after, None, false, false, ProgressMode::Plain, true)?;
    if code == exit::OK {
        eprintln!("{node} removed: `clusterkit node add {node}` takes it (or a fresh machine of that name) back; delete it from the inventory otherwise");
    }
    Ok(code)
}

fn add(
    loaded: &Loaded,
    reload: &dyn Fn() -> anyhow::Result<Option<Loaded>>,
    node: &str,
) -> anyhow::Result<u8> {
    let mut state = loaded.built.state.clone();
    if state.removed.remove(node).is_some() {
        state.save(&loaded.state_path)?;
        eprintln!("{node}: its removal is cleared");
    }
    let Some(after) = reload()? else {
        return Ok(exit::INVALID);
    };
    if after.built.spec.node(node).is_none() {
        let names: Vec<&str> = after
            .built
            .spec
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        anyhow::bail!(
            "`{node}` is not in the cluster's description (nodes: {}): add it to the inventory first, e.g. `{node} ansible_host=ADDRESS`, then run again",
            names.join(", ")
        );
    }
    crate::up::run(&after, None, false, false, ProgressMode::Auto, true)
}
