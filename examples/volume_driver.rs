//! The volume driver's configuration for one node, rendered offline with
//! clusterkit-storage's renderers: the systemd unit that serves the Docker
//! volume plugin, Docker's drop-in, and rclone's configuration. The S3 key
//! is made on the cluster and never leaves it: a placeholder stands in here.
//!
//! ```sh
//! cargo run --example volume_driver -- examples/hosts.ini node2
//! ```

use std::path::PathBuf;

use clusterkit::storage::{render, DriverConfig, S3Key};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(node)) = (args.next().map(PathBuf::from), args.next()) else {
        eprintln!("usage: volume_driver INVENTORY_OR_CONFIG NODE");
        std::process::exit(2);
    };
    // A `.toml` is clusterkit's own config; anything else an Ansible inventory.
    let loaded = clusterkit::core::spec::load_path(&input)?;
    let spec = &loaded.built.spec;
    let n = spec
        .node(&node)
        .ok_or_else(|| format!("no node `{node}` in {}", input.display()))?;
    let cfg = DriverConfig::for_node(spec, n.mesh_address);
    let placeholder = S3Key {
        id: "GKplaceholder".into(),
        secret: "madeOnTheCluster".into(),
    };
    println!("# driver `{}`, S3 at {}", cfg.driver, cfg.endpoint);
    println!("# {}", cfg.socket());
    print!("{}", cfg.unit());
    println!("\n# docker drop-in");
    print!("{}", cfg.docker_dropin());
    println!("\n# rclone.conf (the key is the cluster's; a placeholder here)");
    print!("{}", render::rclone_conf(&cfg, &placeholder));
    println!(
        "\n# a volume `data` of this driver lives at {}",
        cfg.remote("data")
    );
    Ok(())
}
