//! A node's WireGuard configuration and firewall rendered offline, with the
//! model and renderers alone (clusterkit-wg without its `remote` feature
//! needs no SSH, Docker or async runtime). Public keys are made on the
//! nodes; give the ones you know as `NODE=KEY`, the others are shown as
//! placeholders.
//!
//! ```sh
//! cargo run --example mesh_config -- examples/hosts.ini node1 [node2=KEY ...]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use clusterkit::wg::model::WgPublicKey;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(node)) = (args.next().map(PathBuf::from), args.next()) else {
        eprintln!("usage: mesh_config INVENTORY_OR_CONFIG NODE [NODE=PUBLIC_KEY ...]");
        std::process::exit(2);
    };
    // A `.toml` is clusterkit's own config; anything else an Ansible inventory.
    let loaded = clusterkit::core::spec::load_path(&input)?;
    let spec = &loaded.built.spec;
    // Every node's key: given, or a placeholder (32 zero bytes) until the
    // node has made its own.
    let placeholder = WgPublicKey::parse(&format!("{}=", "A".repeat(43)))?;
    let mut keys: BTreeMap<String, WgPublicKey> = spec
        .nodes
        .iter()
        .map(|n| (n.name.to_string(), placeholder.clone()))
        .collect();
    for pair in args {
        let (name, key) = pair.split_once('=').ok_or("keys are given as NODE=KEY")?;
        keys.insert(name.to_string(), WgPublicKey::parse(key)?);
    }
    let meshes = clusterkit::wg::plan(spec, &keys);
    let Some(mesh) = meshes.iter().find(|m| m.node == node) else {
        return Err(format!("no node `{node}` in {}", input.display()).into());
    };
    print!("{}", clusterkit::wg::render::wg_quick(mesh));
    println!("\n# the firewall: the cluster's ports answer over the mesh only");
    print!(
        "{}",
        clusterkit::wg::render::firewall_script(&spec.mesh.interface)
    );
    Ok(())
}
