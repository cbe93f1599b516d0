//! `status` read as data from a program: the cluster's health as typed
//! values (the swarm's leader and quorum, storage, monitoring targets,
//! stacks), to feed a dashboard or a check of your own. Exits 1 when the
//! cluster is not healthy.
//!
//! ```sh
//! cargo run --example status_data -- clusterkit.toml
//! ```

use std::path::PathBuf;

use clusterkit::core::engine::Lines;
use clusterkit::ops::{status, Options, Session};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(config) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: status_data CONFIG");
        std::process::exit(2);
    };
    let loaded = clusterkit::core::spec::load(Some(&config), None)?;
    let lines = Lines::stderr();
    let session = Session::new(&loaded, Options::default(), &lines);
    let st = status::status(&session).await;
    println!("cluster {}: healthy {}", st.cluster, st.healthy);
    println!("mesh pairs up: {}/{}", st.mesh_pairs_up, st.mesh_pairs);
    if let Some(s) = &st.swarm {
        println!(
            "swarm leader: {}; managers: {}; tolerates {} loss(es)",
            s.leader.as_deref().unwrap_or("none"),
            s.managers.len(),
            s.tolerates
        );
    }
    if let Some(s) = &st.storage {
        println!("storage: {} on {} node(s)", s.health, s.nodes.len());
    }
    if let Some(m) = &st.monitoring {
        println!("monitoring targets up: {}/{}", m.up, m.total);
    }
    for u in &st.unreachable {
        println!("unreachable: {}: {}", u.node, u.error);
    }
    std::process::exit(if st.healthy { 0 } else { 1 });
}
