//! `clusterkit wg ...`: the WireGuard mesh.

use clap::Subcommand;
use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;
use clusterkit_ops::Session;
use clusterkit_wg::{PairStatus, PairTable};

use crate::exit;

/// `clusterkit wg` subcommands.
#[derive(Debug, Subcommand)]
pub enum WgCmd {
    /// Build or converge the full mesh; prove it with a ping between every pair.
    #[command(
        after_help = "Keys are made on each node (/etc/wireguard/wg0.key, 0600); only public keys travel.\n\
        Kernel WireGuard where present, else clusterkit-wg-userspace (boringtun), uploaded.\n\
        A re-run changes nothing; peers added or removed are applied live.\n\nExample:\n  clusterkit wg up -i hosts.ini"
    )]
    Up,
    /// Every pair's latest handshake and a ping over the mesh.
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a node's key (all nodes' when none is named) without taking the mesh down.
    Rotate {
        /// The node.
        node: Option<String>,
    },
}

/// Runs a `wg` command through [`clusterkit_ops::mesh`].
pub fn run(loaded: &Loaded, cmd: WgCmd) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
    let session = Session::new(loaded, crate::remote::options(), &notices);
    let spec = &loaded.built.spec;
    let all_answer = |pairs: &[PairStatus]| {
        if PairTable(pairs).all_answer() {
            exit::OK
        } else {
            exit::FAILURE
        }
    };
    match cmd {
        WgCmd::Up => {
            let lines = Lines::stderr();
            let session = crate::up::capability_session(loaded, &lines);
            let r = crate::block_on(clusterkit_ops::mesh::up(
                &session,
                clusterkit_wg::local_userspace_binary(),
            ))?;
            crate::up::print_capability(&r.up, "mesh");
            let code = all_answer(&r.after);
            if code == exit::OK {
                println!(
                    "mesh {} is full: {} directed pairs answer over {}",
                    spec.mesh.cidr,
                    r.after.len(),
                    spec.mesh.interface
                );
            } else {
                print!("{}", PairTable(&r.after));
            }
            Ok(code)
        }
        WgCmd::Status { json } => {
            let pairs = crate::block_on(clusterkit_ops::mesh::status(&session))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&pairs)?);
            } else {
                print!("{}", PairTable(&pairs));
            }
            Ok(all_answer(&pairs))
        }
        WgCmd::Rotate { node } => {
            let report = crate::block_on(clusterkit_ops::mesh::rotate(&session, node.as_deref()))?;
            print!("{}", PairTable(&report.pairs));
            Ok(all_answer(&report.pairs))
        }
    }
}
