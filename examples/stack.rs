//! An application stack deployed onto an existing clusterkit cluster with
//! the library: the compose file is checked (services, images, scrape
//! labels), deployed through a manager and waited for until it runs.
//!
//! ```sh
//! clusterkit up --sandbox        # or any cluster built by clusterkit
//! cargo run --example stack -- clusterkit.toml examples/stacks/app.yml app
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use clusterkit::core::transport::ssh::{connect_all, SshOptions};
use clusterkit::core::transport::Transport;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, file, name] = args.as_slice() else {
        eprintln!("usage: stack CONFIG COMPOSE_FILE NAME");
        std::process::exit(2);
    };
    let loaded = clusterkit::core::spec::load(Some(&PathBuf::from(config)), None)?;
    let spec = &loaded.built.spec;
    let compose = std::fs::read_to_string(file)?;
    let stack = clusterkit::swarm::stacks::inspect(name, file, &compose)?;
    for w in &stack.warnings {
        eprintln!("warning: {w}");
    }

    let known_hosts = loaded
        .state_path
        .parent()
        .map(|d| d.join("known_hosts"))
        .unwrap_or_else(|| PathBuf::from(".clusterkit/known_hosts"));
    let mut nodes: Vec<Arc<dyn Transport>> = Vec::new();
    for (node, r) in connect_all(&spec.ssh_targets(), &SshOptions::new(known_hosts)).await {
        match r {
            Ok(s) => nodes.push(Arc::new(s)),
            // A stack deploys through any manager: the others may be away.
            Err(e) => eprintln!("{node}: {e}"),
        }
    }
    let deployed =
        clusterkit::swarm::stacks::deploy(&nodes, spec, &stack, &|m: &str| eprintln!("{m}"))
            .await?;
    println!(
        "stack {name}: {} service(s) running{}",
        stack.services.len(),
        if deployed { "" } else { " (unchanged)" }
    );
    Ok(())
}
