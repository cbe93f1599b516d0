//! `clusterkit wg ...`: the WireGuard mesh.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::facts::{self, Facts};
use clusterkit_core::transport::{fan_out, Transport};
use clusterkit_wg::{PairStatus, UserspaceBinary};

use crate::exit;
use crate::remote::connect;

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

pub(crate) async fn gather(
    nodes: &[Arc<dyn Transport>],
) -> anyhow::Result<BTreeMap<String, Facts>> {
    let mut out = BTreeMap::new();
    for (n, r) in fan_out(nodes, 16, facts::gather).await {
        out.insert(n, r?);
    }
    Ok(out)
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

/// Runs a `wg` command.
pub fn run(loaded: &Loaded, cmd: WgCmd) -> anyhow::Result<u8> {
    crate::block_on(async {
        let (nodes, failed) = connect(loaded, false).await;
        if !failed.is_empty() {
            for (n, e) in &failed {
                eprintln!("{n}: error: {e}");
            }
            anyhow::bail!("{} node(s) unreachable: nothing was changed", failed.len());
        }
        let _lock = match cmd {
            WgCmd::Status { .. } => None,
            _ => Some(crate::remote::lock_cluster(loaded, &nodes, "wg").await?),
        };
        let spec = &loaded.built.spec;
        match cmd {
            WgCmd::Up => {
                if loaded.state_changed {
                    loaded.built.state.save(&loaded.state_path)?;
                }
                let facts = gather(&nodes).await?;
                let bytes = userspace_binary();
                let binary = bytes.as_deref().map(|b| UserspaceBinary {
                    bytes: b,
                    arch: std::env::consts::ARCH,
                    replace_running: false,
                });
                let report = clusterkit_wg::up(&nodes, &facts, spec, binary).await?;
                for (node, c) in &report.changes {
                    let what = c.what();
                    eprintln!(
                        "{node}: {}",
                        if what.is_empty() {
                            "unchanged".to_string()
                        } else {
                            what.join(", ")
                        }
                    );
                }
                let n = report.pairs.len();
                println!(
                    "mesh {} is full: {n} directed pairs answer over {}",
                    spec.mesh.cidr, spec.mesh.interface
                );
                Ok(exit::OK)
            }
            WgCmd::Status { json } => {
                let pairs = clusterkit_wg::status(&nodes, spec).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&pairs)?);
                } else {
                    print_pairs(&pairs)?;
                }
                Ok(if pairs.iter().all(|p| p.ping_ms.is_some()) {
                    exit::OK
                } else {
                    exit::FAILURE
                })
            }
            WgCmd::Rotate { node } => {
                let targets: Vec<String> = match node {
                    Some(n) => vec![n],
                    None => spec.nodes.iter().map(|n| n.name.to_string()).collect(),
                };
                for n in targets {
                    if spec.node(&n).is_none() {
                        anyhow::bail!("no node `{n}` in the cluster description");
                    }
                    let key = clusterkit_wg::rotate(&nodes, spec, &n).await?;
                    eprintln!("{n}: new public key {key}");
                }
                let pairs = clusterkit_wg::status(&nodes, spec).await?;
                print_pairs(&pairs)?;
                Ok(if pairs.iter().all(|p| p.ping_ms.is_some()) {
                    exit::OK
                } else {
                    exit::FAILURE
                })
            }
        }
    })
}
