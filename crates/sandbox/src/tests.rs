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

#[test]
fn the_status_table_says_each_node_and_whether_all_are_healthy() {
    let node = |i: usize| NodeInfo {
        index: i,
        hostname: format!("node{i}"),
        container: format!("x-node{i}"),
        address: Ipv4Addr::new(172, 29, 0, 10 + i as u8),
        kind: NodeKind::Server,
    };
    let ok = NodeStatus {
        node: node(1),
        state: "running".into(),
        ssh: true,
        docker: true,
        partitioned: false,
    };
    let cut = NodeStatus {
        node: node(2),
        partitioned: true,
        ..ok.clone()
    };
    let all = [ok.clone(), cut];
    let table = StatusTable(&all).to_string();
    assert_eq!(
        table,
        "NODE     ADDRESS          STATE      SSH   DOCKER  PARTITIONED\n\
         node1    172.29.0.11      running    yes   yes     no\n\
         node2    172.29.0.12      running    yes   yes     yes\n"
    );
    assert!(!StatusTable(&all).healthy());
    assert!(StatusTable(&[ok]).healthy());
    let removed = Removed {
        containers: vec!["a".into(), "b".into()],
        ..Removed::default()
    };
    assert_eq!(
        removed.to_string(),
        "2 container(s), 0 volume(s), 0 network(s)"
    );
}
