//! The WireGuard mesh alone, with the library: connect to every node over
//! SSH (host keys checked against a known_hosts file), gather facts, build
//! or converge the mesh, and print each pair's handshake and ping.
//!
//! ```sh
//! cargo run --example mesh -- clusterkit.toml [USERSPACE_BINARY]
//! ```
//!
//! Without kernel WireGuard on the nodes, pass the path of the
//! `clusterkit-wg-userspace` binary (boringtun) built for them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clusterkit::core::transport::facts;
use clusterkit::core::transport::ssh::{connect_all, SshOptions};
use clusterkit::core::transport::{fan_out, Transport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(config) = args.next().map(PathBuf::from) else {
        eprintln!("usage: mesh CONFIG [USERSPACE_BINARY]");
        std::process::exit(2);
    };
    let binary = args.next().map(std::fs::read).transpose()?;
    let loaded = clusterkit::core::spec::load(Some(&config), None)?;
    let spec = &loaded.built.spec;

    // Host keys: the file clusterkit's CLI keeps beside the config.
    let known_hosts = loaded
        .state_path
        .parent()
        .map(|d| d.join("known_hosts"))
        .unwrap_or_else(|| PathBuf::from(".clusterkit/known_hosts"));
    let opts = SshOptions::new(known_hosts);
    let mut nodes: Vec<Arc<dyn Transport>> = Vec::new();
    for (name, r) in connect_all(&spec.ssh_targets(), &opts).await {
        nodes.push(Arc::new(r.map_err(|e| format!("{name}: {e}"))?));
    }

    let mut all_facts = BTreeMap::new();
    for (n, f) in fan_out(&nodes, 16, facts::gather).await {
        all_facts.insert(n, f?);
    }
    let bin = binary
        .as_deref()
        .map(|bytes| clusterkit::wg::UserspaceBinary {
            bytes,
            arch: std::env::consts::ARCH,
            replace_running: false,
        });
    let report = clusterkit::wg::up(&nodes, &all_facts, spec, bin).await?;
    for p in &report.pairs {
        println!(
            "{} -> {}: handshake {} s ago, ping {}",
            p.from,
            p.to,
            p.handshake_age_s.map_or("never".into(), |s| s.to_string()),
            p.ping_ms.map_or("none".into(), |ms| format!("{ms:.2} ms"))
        );
    }
    let changed: Vec<&String> = report
        .changes
        .iter()
        .filter(|(_, c)| c.any())
        .map(|(n, _)| n)
        .collect();
    eprintln!("mesh {}: changed on {:?}", spec.mesh.cidr, changed);
    Ok(())
}
