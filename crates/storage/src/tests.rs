use super::*;

#[test]
fn write_quorums_are_garages() {
    // 2 copies: both written; 3: two of them; 1: the one.
    assert_eq!(write_quorum(1), 1);
    assert_eq!(write_quorum(2), 2);
    assert_eq!(write_quorum(3), 2);
    assert_eq!(write_quorum(5), 3);
}

#[test]
fn tolerance_follows_the_quorum() {
    assert_eq!(tolerates(3, 0), 1);
    assert_eq!(tolerates(3, 1), 0);
    assert_eq!(tolerates(5, 1), 1);
    assert_eq!(tolerates(2, 0), 0);
    assert_eq!(tolerates(1, 0), 0);
}

#[test]
fn a_key_round_trips_and_its_debug_hides_the_secret() {
    let k = S3Key::generate().unwrap();
    assert!(k.id.starts_with("GK") && k.id.len() == 26);
    assert_eq!(k.secret.len(), 64);
    assert_eq!(S3Key::parse(&k.to_file()), Some(k.clone()));
    assert!(!format!("{k:?}").contains(&k.secret));
    assert_eq!(S3Key::parse("short\n"), None);
    // A node's file cannot add a line or a key to rclone's configuration.
    for hostile in [
        "GK0123456789ab\n0123456789abcdef = x\n",
        "GK0123456789ab\n0123456789abcdef\r[evil]\n",
        "GK0123456789ab]\n0123456789abcdef0123\n",
        "GK01234567 89ab\n0123456789abcdef0123\n",
    ] {
        assert_eq!(S3Key::parse(hostile), None, "{hostile:?}");
    }
}

use clusterkit_core::spec::StorageBackend;

fn spec(n: usize) -> ClusterSpec {
    clusterkit_core::spec::example(n)
}

#[test]
fn garage_stack_pins_one_service_per_node_with_content_named_configs() {
    let s = spec(3);
    let stack = render::garage_stack(&s);
    insta::assert_snapshot!("garage_stack", stack.compose);
    assert_eq!(stack.files.len(), 3);
    insta::assert_snapshot!("garage_node1_toml", stack.files[0].1);
    // A node's configuration changes its config's name, and only its own.
    let mut s2 = s.clone();
    s2.storage.replication = 2;
    let other = render::garage_stack(&s2);
    assert_ne!(stack.compose, other.compose);
    assert_ne!(stack.hash(), other.hash());
    // Nothing secret is rendered: secrets are files the swarm provides.
    assert!(stack.compose.contains("external: true"));
    assert!(!stack.files[0].1.contains("rpc_secret ="));
}

#[test]
fn minio_stack_lists_every_endpoint_and_takes_credentials_from_secrets() {
    let mut s = spec(3);
    s.storage.backend = StorageBackend::Minio;
    s.storage.image = "pgsty/minio:latest".into();
    let stack = render::stack(&s).unwrap();
    insta::assert_snapshot!("minio_stack", stack.compose);
    for i in 1..=3 {
        assert_eq!(
            stack
                .compose
                .matches(&format!("http://10.0.0.{i}:9000/data"))
                .count(),
            3
        );
    }
}

#[test]
fn the_driver_uploads_on_close_and_keeps_its_key_out_of_the_unit() {
    let s = spec(3);
    let cfg = DriverConfig::for_node(&s, s.nodes[1].mesh_address);
    let key = S3Key {
        id: "GKexampleexampleexample0".into(),
        secret: "example-secret-not-real-0000000000".into(),
    };
    let unit = cfg.unit();
    insta::assert_snapshot!("driver_unit", unit);
    assert!(unit.contains("--vfs-write-back 0s"));
    assert!(!unit.contains(&key.secret));
    insta::assert_snapshot!("rclone_conf", render::rclone_conf(&cfg, &key));
    insta::assert_json_snapshot!("driver_config", cfg);
    assert_eq!(cfg.remote("app_data"), "clusterkit:volumes/app_data");
    insta::assert_snapshot!("docker_dropin", cfg.docker_dropin());
    // Docker reaches rclone through the front, which gives a volume created
    // with no remote the prefix clusterkit's own stacks name.
    let front = cfg.front_unit();
    insta::assert_snapshot!("driver_front_unit", front);
    assert!(front.contains(&format!(
        "--listen {} --upstream {} --remote-prefix clusterkit:volumes/\n",
        cfg.socket(),
        DriverConfig::RCLONE_SOCKET
    )));
    assert!(unit.contains(&format!("--socket-addr {} ", DriverConfig::RCLONE_SOCKET)));
    assert!(!unit.contains(&cfg.socket()));
}

#[test]
fn the_layout_gains_new_nodes_and_loses_stale_identities() {
    let layout: garage::Layout = serde_json::from_value(serde_json::json!({
        "version": 1,
        "roles": [
            {"id": "aaa", "zone": "node1"},
            {"id": "bbb", "zone": "node2"},
            {"id": "old3", "zone": "node3"}
        ],
        "stagedRoleChanges": [{"id": "ddd", "zone": "node4", "capacity": 1, "tags": []}]
    }))
    .unwrap();
    let wanted: Vec<(String, String)> = [
        ("node1", "aaa"),
        ("node2", "bbb"),
        ("node3", "new3"),
        ("node4", "ddd"),
    ]
    .iter()
    .map(|(n, i)| (n.to_string(), i.to_string()))
    .collect();
    let d = layout_diff(&layout, &wanted);
    // node3 was reinstalled: its new identity joins, its old one goes; node4 is already staged.
    assert_eq!(d.add, vec![("node3".to_string(), "new3".to_string())]);
    assert_eq!(d.remove, vec![("node3".to_string(), "old3".to_string())]);
    assert_eq!(
        layout_diff(
            &layout,
            &wanted[..3]
                .iter()
                .cloned()
                .chain([("node4".into(), "ddd".into())])
                .collect::<Vec<_>>()
        )
        .add
        .len(),
        1
    );
}

#[test]
fn the_boot_time_reconnect_script_names_the_nodes_garage_and_parses() {
    let s = crate::render::garage_peers_script("node2");
    assert!(s.contains("com.docker.swarm.service.name=clusterkit-storage_garage-node2"));
    assert!(
        s.contains("docker exec \"$c\" /proc/1/exe node connect"),
        "{s}"
    );
    let check = std::process::Command::new("sh")
        .args(["-n", "-c", &s])
        .status()
        .unwrap();
    assert!(check.success());
    assert!(crate::render::GARAGE_PEERS_UNIT_TEXT.contains("After=docker.service"));
}

#[test]
fn only_a_just_started_servers_errors_are_asked_again() {
    // Seen in CI: the CLI run right after the container started.
    assert!(garage::just_started(
        "Error: Unable to read node key from /var/lib/garage/meta/node_key"
    ));
    assert!(garage::just_started(
        "Error: Unable to connect to destination RPC host. Check that you are using the \
         same value of rpc_secret as them, and that you have their correct full-length \
         node ID (public key).\nIO error: Connection refused (os error 111)"
    ));
    // A wrong secret or a real refusal by the API is not waited on.
    assert!(!garage::just_started(
        "Error: Unable to connect to destination RPC host. Check that you are using the \
         same value of rpc_secret as them\nIO error: Handshake error"
    ));
    assert!(!garage::just_started("Error: Bad request: no such key"));
}

#[test]
fn a_garage_node_id_is_checked_before_it_is_written_anywhere() {
    let id = "a".repeat(64);
    assert!(crate::garage::is_node_id(&format!("{id}@10.0.0.1:3901")));
    assert!(crate::garage::is_node_id(&format!("{id}@[fd00::1]:3901")));
    for bad in [
        format!("{id}@10.0.0.1:3901\nevil@1.2.3.4:1"),
        id.clone(),
        format!("{}@10.0.0.1:3901", "a".repeat(63)),
        format!("{}@10.0.0.1:3901", "g".repeat(64)),
        format!("{id}@host name:3901"),
    ] {
        assert!(!crate::garage::is_node_id(&bad), "{bad:?}");
    }
}

#[test]
fn the_default_image_is_garages_own_at_the_version_tested() {
    assert_eq!(
        clusterkit_core::spec::defaults::GARAGE_IMAGE,
        format!("dxflrs/garage:v{}", crate::GARAGE_VERSION)
    );
}

/// MinIO's answers as its documentation records them (HTTP/1.1, headers,
/// `code=` as the script prints it).
fn minio_answer(live: u16, write: u16, read: u16, maintenance: u16, extra: &str) -> String {
    let head = |code: u16, quorum: &str| {
        let reason = match code {
            200 => "OK",
            412 => "Precondition Failed",
            503 => "Service Unavailable",
            _ => "",
        };
        if code == 0 {
            "code=000\n".to_string()
        } else {
            format!(
                "HTTP/1.1 {code} {reason}\r\nAccept-Ranges: bytes\r\nContent-Length: 0\r\nServer: MinIO\r\n{quorum}{extra}Vary: Origin\r\nDate: Tue, 21 Jul 2020 00:36:14 GMT\r\n\r\ncode={code}\n"
            )
        }
    };
    format!(
        "== live\n{}== write\n{}== read\n{}== maintenance\n{}",
        head(live, ""),
        head(write, "X-Minio-Write-Quorum: 3\r\n"),
        head(read, "X-Minio-Read-Quorum: 2\r\n"),
        head(maintenance, "X-Minio-Write-Quorum: 3\r\n"),
    )
}

#[test]
fn minio_health_is_read_from_its_endpoints_answers() {
    use crate::minio::{judge, parse_health, ServerHealth};
    let ok = parse_health(&minio_answer(200, 200, 200, 200, ""));
    assert_eq!(
        ok,
        ServerHealth {
            live: true,
            write: true,
            read: true,
            may_go_down: Some(true),
            write_quorum: Some(3),
            read_quorum: Some(2),
            healing_drives: 0,
            unasked: None,
        }
    );
    // Quorum lost as the server sees it; this one may not go down; drives healing.
    let short = parse_health(&minio_answer(
        200,
        503,
        200,
        412,
        "X-Minio-Healing-Drives: 2\r\n",
    ));
    assert!(short.live && !short.write && short.read, "{short:?}");
    assert_eq!(short.may_go_down, Some(false));
    assert_eq!(short.healing_drives, 2);
    // A server that does not answer.
    let gone = parse_health(&minio_answer(0, 0, 0, 0, ""));
    assert!(!gone.live && !gone.write && gone.may_go_down.is_none());
    // No curl on the node: said, with the way on.
    let unasked = parse_health("nocurl\n");
    assert!(unasked
        .unasked
        .as_deref()
        .unwrap()
        .contains("apt-get install curl"));
    // A hostile answer: unknown sections and garbage numbers are dropped.
    let odd = parse_health("== live\ncode=200\n== evil\ncode=200\nX-Minio-Write-Quorum: $(reboot)\n== write\nX-Minio-Read-Quorum: 99999999999\ncode=abc\n");
    assert!(odd.live && !odd.write && odd.write_quorum.is_none() && odd.read_quorum.is_none());

    assert_eq!(judge(&[ok.clone(), ok.clone(), ok.clone()]), ("healthy", 1));
    // One server down, the others still write: degraded, and the others may
    // not go down too.
    let left = parse_health(&minio_answer(200, 200, 200, 412, ""));
    assert_eq!(
        judge(&[left.clone(), left.clone(), gone.clone()]),
        ("degraded", 0)
    );
    assert_eq!(
        judge(&[short.clone(), gone.clone(), gone]),
        ("unavailable", 0)
    );
    assert_eq!(judge(&[]), ("unavailable", 0));
}

#[test]
fn minio_health_script_asks_each_endpoint_on_the_mesh_address_and_parses() {
    let s = crate::minio::health_script("10.0.0.2");
    for path in [
        "/minio/health/live",
        "/minio/health/cluster'",
        "/minio/health/cluster/read",
        "/minio/health/cluster?maintenance=true",
    ] {
        assert!(
            s.contains(&format!("http://10.0.0.2:9000{path}")),
            "{path}: {s}"
        );
    }
    let check = std::process::Command::new("sh")
        .args(["-n", "-c", &s])
        .status()
        .unwrap();
    assert!(check.success());
}
