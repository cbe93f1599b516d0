//! `clusterkit wg ...`: the WireGuard mesh.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;
use clusterkit_ops::Session;
use clusterkit_wg::PairStatus;

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

/// The userspace implementation to upload: `CLUSTERKIT_WG_USERSPACE`, else
/// `clusterkit-wg-userspace` beside this executable.
pub fn userspace_binary() -> Option<Vec<u8>> {
    let path = std::env::var_os("CLUSTERKIT_WG_USERSPACE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("clusterkit-wg-userspace")))
        })?;
    std::fs::read(path).ok()
}

fn print_pairs(pairs: &[PairStatus]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<10} {:<10} {:>10} {:>10}",
        "FROM", "TO", "HANDSHAKE", "PING"
    )?;
    for p in pairs {
        writeln!(
            out,
            "{:<10} {:<10} {:>10} {:>10}",
            p.from,
            p.to,
            p.handshake_age_s
                .map_or("never".into(), |s| format!("{s} s ago")),
            p.ping_ms
                .map_or("no answer".into(), |ms| format!("{ms:.2} ms"))
        )?;
    }
    Ok(())
}

/// Runs a `wg` command through [`clusterkit_ops::mesh`].
pub fn run(loaded: &Loaded, cmd: WgCmd) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
    let session = Session::new(loaded, crate::remote::options(), &notices);
    let spec = &loaded.built.spec;
    let all_answer = |pairs: &[PairStatus]| {
        if pairs.iter().all(|p| p.ping_ms.is_some()) {
            exit::OK
        } else {
            exit::FAILURE
        }
    };
    match cmd {
        WgCmd::Up => {
            let lines = Lines::stderr();
            let session = crate::up::capability_session(loaded, &lines);
            let r = crate::block_on(clusterkit_ops::mesh::up(&session, userspace_binary()))?;
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
                print_pairs(&r.after)?;
            }
            Ok(code)
        }
        WgCmd::Status { json } => {
            let pairs = crate::block_on(clusterkit_ops::mesh::status(&session))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&pairs)?);
            } else {
                print_pairs(&pairs)?;
            }
            Ok(all_answer(&pairs))
        }
        WgCmd::Rotate { node } => {
            let report = crate::block_on(clusterkit_ops::mesh::rotate(&session, node.as_deref()))?;
            print_pairs(&report.pairs)?;
            Ok(all_answer(&report.pairs))
        }
    }
}
