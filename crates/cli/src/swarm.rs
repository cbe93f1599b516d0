//! `clusterkit swarm ...`.

use std::io::IsTerminal;

use clap::Subcommand;
use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;
use clusterkit_ops::Session;

use crate::exit;

/// `clusterkit swarm` subcommands.
#[derive(Debug, Subcommand)]
pub enum SwarmCmd {
    /// Initialise or complete the swarm on the mesh (every node a manager, up to swarm.max_managers).
    #[command(
        after_help = "Needs the mesh (`clusterkit wg up`). A re-run on a complete swarm changes nothing.\n\nExample:\n  clusterkit swarm up -i hosts.ini"
    )]
    Up,
    /// Managers, leader, quorum, and how many more losses the swarm tolerates now.
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-form a swarm that lost its majority for good, from a surviving manager.
    #[command(
        after_help = "What happens: the survivor runs `docker swarm init --force-new-cluster`. It keeps the\n\
        swarm's services, secrets and configs and becomes the only manager; the other reachable\n\
        nodes leave and join again; managers that come back later rejoin with the next\n\
        `clusterkit swarm up`. Do it only when the missing managers will not come back soon:\n\
        if they do, they return to a swarm that went on without them.\n\nExample:\n  clusterkit swarm recover --node node1 --yes"
    )]
    Recover {
        /// The survivor to re-form from (default: the first reachable manager).
        #[arg(long)]
        node: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a `swarm` command through [`clusterkit_ops::swarm`].
pub fn run(loaded: &Loaded, cmd: SwarmCmd) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
    let session = Session::new(loaded, crate::remote::options(), &notices);
    match cmd {
        SwarmCmd::Up => {
            let lines = Lines::stderr();
            let session = crate::up::capability_session(loaded, &lines);
            let r = crate::block_on(clusterkit_ops::swarm::up(&session))?;
            crate::up::print_capability(&r.up, "swarm");
            print!("{}", r.after);
            Ok(exit::OK)
        }
        SwarmCmd::Status { json } => {
            let r = crate::block_on(clusterkit_ops::swarm::status(&session));
            match (&r.status, json) {
                (Ok(s), true) => println!("{}", serde_json::to_string_pretty(s)?),
                _ => print!("{r}"),
            }
            Ok(if r.healthy() { exit::OK } else { exit::FAILURE })
        }
        SwarmCmd::Recover { node, yes } => {
            let survivor = match node {
                Some(n) => n,
                None => crate::block_on(clusterkit_ops::swarm::survivor(&session))?,
            };
            if !yes {
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!("recover re-forms the swarm from {survivor}: pass --yes to confirm (see --help for what happens)");
                }
                eprint!("re-form the swarm from {survivor} with --force-new-cluster? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !answer.trim().eq_ignore_ascii_case("y") {
                    eprintln!("nothing was changed");
                    return Ok(exit::FAILURE);
                }
            }
            let r = crate::block_on(clusterkit_ops::swarm::recover(&session, &survivor))?;
            eprintln!(
                "{survivor}: swarm re-formed; rejoined: {}",
                if r.change.joined.is_empty() {
                    "none yet".into()
                } else {
                    r.change.joined.join(", ")
                }
            );
            print!("{}", r.status);
            r.unreachable.iter().for_each(|u| println!("{u}"));
            Ok(exit::OK)
        }
    }
}
