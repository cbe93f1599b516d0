use super::*;

#[test]
fn nodes_get_fixed_addresses_and_names() {
    let mut cfg = SandboxConfig::new("ck");
    cfg.subnet = "172.29.5.0/24".parse().unwrap();
    let n = cfg.node_infos();
    assert_eq!(n.len(), 3);
    assert_eq!(n[0].container, "ck-node1");
    assert_eq!(n[0].hostname, "node1");
    assert_eq!(n[2].address, Ipv4Addr::new(172, 29, 5, 13));
}

#[test]
fn written_files() {
    let cfg = SandboxConfig::new("ck");
    let nodes = cfg.node_infos();
    insta::assert_snapshot!(files::hosts_ini(
        "ck",
        "172.29.0.0/24",
        "/k/id_ed25519",
        &nodes
    ));
    let keys: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                n.clone(),
                format!("ssh-ed25519 AAAA{} root@{}", n.index, n.hostname),
            )
        })
        .collect();
    assert_eq!(
        files::known_hosts(&keys).lines().next(),
        Some("172.29.0.11 ssh-ed25519 AAAA1")
    );
}

#[test]
fn recipe_hash_follows_the_recipe() {
    let mut other = image::NODE.clone();
    assert_eq!(other.hash(), image::NODE.hash());
    other.packages = &["systemd"];
    assert_ne!(other.hash(), image::NODE.hash());
    assert!(image::NODE.tag().starts_with("clusterkit/node:"));
}
