//! `clusterkit upgrade`: a component replaced node by node while the swarm
//! keeps serving (drain, upgrade, back, next); never with a manager down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clusterkit_core::spec::{Loaded, WgBackend};
use clusterkit_core::transport::Transport;
use clusterkit_wg::UserspaceBinary;

use crate::exit;
use crate::remote::connect;

/// What `upgrade` can roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    /// The userspace WireGuard binary (clusterkit-wg-userspace, boringtun) on the nodes
    /// without kernel WireGuard: the one beside this clusterkit, or $CLUSTERKIT_WG_USERSPACE.
    Mesh,
}

const DRAIN_PATIENCE: Duration = Duration::from_secs(180);
const MESH_PATIENCE: Duration = Duration::from_secs(60);

/// Rolls `component` (every component when `None`) over the nodes that
/// need it, one at a time.
pub fn run(loaded: &Loaded, component: Option<Component>) -> anyhow::Result<u8> {
    let component = component.unwrap_or(Component::Mesh);
    let spec = &loaded.built.spec;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let start = Instant::now();
    let say = |m: &str| eprintln!("[{:>6.1}s] {m}", start.elapsed().as_secs_f64());
    let done = rt.block_on(async {
        let (nodes, failed) = connect(loaded, false).await;
        if !failed.is_empty() {
            for (n, e) in &failed {
                eprintln!("{n}: {e}");
            }
            anyhow::bail!(
                "{} node(s) unreachable: an upgrade takes one node out at a time and needs every other one up. \
                 Bring them back, or take a dead one out (`clusterkit node remove NODE`); nothing was changed",
                failed.len()
            );
        }
        let Component::Mesh = component;
        let bytes = crate::mesh::userspace_binary().ok_or_else(|| {
            anyhow::anyhow!("no clusterkit-wg-userspace beside this clusterkit: build it (`cargo build --release --bins`) or set CLUSTERKIT_WG_USERSPACE")
        })?;
        let binary = UserspaceBinary {
            bytes: &bytes,
            arch: std::env::consts::ARCH,
            replace_running: true,
        };
        let wanted = binary.sha256();
        let facts = crate::mesh::gather(&nodes).await?;
        // The nodes running the userspace implementation, with another binary.
        let mut todo: Vec<Arc<dyn Transport>> = Vec::new();
        for t in &nodes {
            let f = &facts[t.node()];
            let userspace = spec.mesh.backend == WgBackend::Userspace || !f.wireguard_kernel;
            if !userspace {
                continue;
            }
            let installed = clusterkit_wg::installed_userspace(t.as_ref()).await?;
            if installed.as_deref() != Some(wanted.as_str()) {
                say(&format!(
                    "{}: userspace wireguard {} → {}",
                    t.node(),
                    installed.as_deref().map_or("none", |h| &h[..12]),
                    &wanted[..12]
                ));
                todo.push(t.clone());
            }
        }
        if todo.is_empty() {
            say(&format!(
                "mesh: every node runs userspace wireguard {} (or kernel wireguard): nothing to upgrade",
                &wanted[..12]
            ));
            return anyhow::Ok(0usize);
        }
        for (i, t) in todo.iter().enumerate() {
            let node = t.node();
            let resume = |e: &dyn std::fmt::Display| {
                let e = e.to_string();
                let e = e.strip_prefix(&format!("{node}: ")).unwrap_or(&e).to_string();
                anyhow::anyhow!(
                    "{node}: {e}\nthe roll stopped at {node} ({i} of {} node(s) done). Fix the cause, then run \
                     `clusterkit upgrade --component mesh` again: nodes already upgraded are skipped. \
                     If {node} stays drained: `docker node update --availability active {node}` on a manager",
                    todo.len()
                )
            };
            // Quorum is never put at risk: every manager answers before one is taken out.
            let st = clusterkit_swarm::status(&nodes).await.map_err(|e| resume(&e))?;
            if let Some(down) = st.managers.iter().find(|m| !m.reachable) {
                return Err(resume(&format!(
                    "manager {} is not reachable: taking {node} out now could leave the swarm without a majority \
                     ({} of {} managers needed). Bring {} back first",
                    down.hostname,
                    st.quorum,
                    st.managers.len(),
                    down.hostname
                )));
            }
            // Another node speaks for the swarm while this one's tunnel restarts.
            let mgr = nodes
                .iter()
                .find(|o| o.node() != node && st.managers.iter().any(|m| m.hostname == o.node()))
                .or_else(|| nodes.iter().find(|o| o.node() != node));
            let binary = Some(binary);
            match mgr {
                Some(mgr) => {
                    say(&format!("{node}: draining (its tasks start on the other nodes first)"));
                    clusterkit_swarm::roll::drain(mgr.as_ref(), node, DRAIN_PATIENCE)
                        .await
                        .map_err(|e| resume(&e))?;
                    say(&format!("{node}: drained; replacing userspace wireguard and restarting the tunnel"));
                    clusterkit_wg::upgrade_node(&nodes, spec, node, &facts[node], binary, MESH_PATIENCE)
                        .await
                        .map_err(|e| resume(&e))?;
                    say(&format!("{node}: every pair answers; making it active again"));
                    clusterkit_swarm::roll::activate(mgr.as_ref(), node, DRAIN_PATIENCE)
                        .await
                        .map_err(|e| resume(&e))?;
                    say(&format!("{node}: back: ready, reachable, global tasks running ({}/{})", i + 1, todo.len()));
                }
                None => {
                    say(&format!("{node}: a single node: upgraded in place (nowhere to move its tasks)"));
                    clusterkit_wg::upgrade_node(&nodes, spec, node, &facts[node], binary, MESH_PATIENCE)
                        .await
                        .map_err(|e| resume(&e))?;
                }
            }
        }
        anyhow::Ok(todo.len())
    })?;
    if done == 0 {
        println!("nothing to upgrade");
        return Ok(exit::OK);
    }
    // Drained nodes came back empty: spread the replicated services again.
    let code = crate::up::run(
        loaded,
        Some(crate::up::Phase::Rebalance),
        false,
        false,
        crate::up::ProgressMode::Plain,
        true,
    )?;
    println!(
        "mesh upgraded on {done} node(s), one at a time, in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(code)
}
