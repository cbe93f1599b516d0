//! Renders the monitoring stack for an existing cluster description, with
//! the library alone: Prometheus's configuration (Swarm service discovery),
//! alert rules, Grafana's provisioning and dashboards, the compose file.
//! Nothing is contacted.
//!
//! ```sh
//! cargo run --example monitoring_config -- examples/hosts.ini out/
//! ```

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: monitoring_config INVENTORY_OR_CONFIG OUT_DIR");
        std::process::exit(2);
    };
    let input = PathBuf::from(input);
    // A `.toml` is clusterkit's own config; anything else an Ansible inventory.
    let loaded = clusterkit::core::spec::load_path(&input)?;
    let spec = &loaded.built.spec;
    let stack = clusterkit::monitor::render::stack(spec);
    std::fs::create_dir_all(&out)?;
    for (name, content) in stack.all() {
        std::fs::write(PathBuf::from(&out).join(&name), content)?;
        println!("{out}/{name}");
    }
    eprintln!(
        "{} services for cluster {}: {}",
        clusterkit::monitor::render::services(spec).len(),
        spec.name,
        clusterkit::monitor::render::services(spec).join(", ")
    );
    Ok(())
}
