//! `clusterkit node remove` and `clusterkit node add`: a node leaves the
//! cluster for good (dead or retired), or joins it (new, or replacing one).

use std::io::{BufRead, IsTerminal, Write};

use clap::Subcommand;
use clusterkit_core::spec::Loaded;
use clusterkit_ops::node as ops;

use crate::exit;
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
    let addr = ops::removed_address(loaded, node)?;
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
    if ops::record_removal(loaded, node, addr)? {
        eprintln!(
            "{node}: recorded as removed in {}",
            loaded.state_path.display()
        );
    }
    let Some(after) = reload()? else {
        return Ok(exit::INVALID);
    };
    {
        let notices = clusterkit_core::reporters::Notices;
        let session = clusterkit_ops::Session::new(&after, crate::remote::options(), &notices);
        crate::block_on(ops::remove(loaded, &session, node, addr))?;
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
    if ops::clear_removal(loaded, node)? {
        eprintln!("{node}: its removal is cleared");
    }
    let Some(after) = reload()? else {
        return Ok(exit::INVALID);
    };
    ops::check_listed(&after, node)?;
    crate::up::run(&after, None, false, false, ProgressMode::Auto, true)
}
