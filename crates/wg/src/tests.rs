use std::collections::BTreeMap;

use super::model::WgPublicKey;
use super::*;
use clusterkit_core::spec::ClusterSpec;

fn spec(n: usize) -> ClusterSpec {
    clusterkit_core::spec::example(n)
}

/// Public keys made up for the tests (any 32 bytes are a valid public key).
fn keys(n: usize) -> BTreeMap<String, WgPublicKey> {
    (1..=n)
        .map(|i| {
            let b64 = format!("{}{i}=", "A".repeat(42));
            (format!("node{i}"), WgPublicKey::parse(&b64).unwrap())
        })
        .collect()
}

#[test]
fn every_node_has_every_other_as_peer() {
    let s = spec(3);
    let meshes = plan(&s, &keys(3));
    assert_eq!(meshes.len(), 3);
    for m in &meshes {
        assert_eq!(m.peers.len(), 2);
        assert!(m.peers.iter().all(|p| p.name != m.node));
    }
    insta::assert_snapshot!(render::wg_quick(&meshes[0]));
}

#[test]
fn sync_script_removes_unwanted_and_never_modifies_in_place() {
    let s = spec(2);
    let m = &plan(&s, &keys(2))[0];
    let script = render::sync_peers_script(m);
    insta::assert_snapshot!(script);
}

#[test]
fn firewall_script() {
    insta::assert_snapshot!(render::firewall_script("wg0"));
}

#[test]
fn the_firewall_scripts_parse_and_down_undoes_every_chain_up_makes() {
    let up = render::firewall_script("wg0");
    for script in [up.as_str(), render::FIREWALL_DOWN, render::FIREWALL_CHECK] {
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every chain and jump `rules` adds (for each family) is taken out again.
    for made in [
        "-N CLUSTERKIT-MESH",
        "-I INPUT -j CLUSTERKIT-MESH",
        "-N CLUSTERKIT-FWD",
        "-I DOCKER-USER -j CLUSTERKIT-FWD",
    ] {
        assert!(up.contains(&format!("$t {made}")), "{made}");
    }
    for undone in [
        "-D INPUT -j CLUSTERKIT-MESH",
        "-D DOCKER-USER -j CLUSTERKIT-FWD",
        "-X $c",
    ] {
        assert!(
            render::FIREWALL_DOWN.contains(&format!("$t {undone}")),
            "{undone}"
        );
    }
    assert!(render::FIREWALL_DOWN.contains("for t in iptables ip6tables"));
    assert!(up.contains("rules ip6tables"));
    assert!(render::ENGINE_DROPIN.contains("ExecStartPre=/usr/local/lib/clusterkit/firewall.sh"));
}

#[test]
fn an_ipv6_host_is_a_bracketed_endpoint() {
    assert_eq!(endpoint("2001:db8::1", 51820), "[2001:db8::1]:51820");
    assert_eq!(endpoint("192.168.1.1", 51820), "192.168.1.1:51820");
    assert_eq!(
        endpoint("node1.example.org", 51820),
        "node1.example.org:51820"
    );
    let mut s = spec(2);
    s.nodes[1].ssh.host = "2001:db8::2".into();
    let m = &plan(&s, &keys(2))[0];
    assert!(render::wg_quick(m).contains("Endpoint = [2001:db8::2]:51820\n"));
    assert!(render::sync_peers_script(m).contains(" [2001:db8::2]:51820 "));
}

#[test]
fn key_validation() {
    assert!(WgPublicKey::parse("not a key").is_err());
    assert!(WgPublicKey::parse(&format!("{}=", "A".repeat(43))).is_ok());
}

#[test]
fn handshake_ages_know_the_backend() {
    let s = spec(2);
    let m = &plan(&s, &keys(2))[0];
    let k = m.peers[0].public_key.as_str();
    let userspace = parse_status(
        m,
        &format!("mode userspace\nnow 1000\nhs {k} 12\nping 10.0.0.2 0.41\n"),
    );
    assert_eq!(userspace[0].handshake_age_s, Some(12));
    assert_eq!(userspace[0].ping_ms, Some(0.41));
    let kernel = parse_status(
        m,
        &format!("mode kernel\nnow 1000\nhs {k} 990\nping 10.0.0.2 -\n"),
    );
    assert_eq!(kernel[0].handshake_age_s, Some(10));
    assert_eq!(kernel[0].ping_ms, None);
    let never = parse_status(m, &format!("mode kernel\nnow 1000\nhs {k} 0\n"));
    assert_eq!(never[0].handshake_age_s, None);
    // boringtun's 0: never, unless a ping went through (under a second ago).
    let fresh = parse_status(
        m,
        &format!("mode userspace\nnow 1000\nhs {k} 0\nping 10.0.0.2 0.2\n"),
    );
    assert_eq!(fresh[0].handshake_age_s, Some(0));
    let silent = parse_status(
        m,
        &format!("mode userspace\nnow 1000\nhs {k} 0\nping 10.0.0.2 -\n"),
    );
    assert_eq!(silent[0].handshake_age_s, None);
}

#[test]
fn mtu_pairs_are_read_and_judged() {
    let out = "mesh 1420\npeer node2 eth0 1500 ok\npeer node3 eth0 1500 no\npeer node4 - - no\n";
    let pairs = crate::parse_mtu("node1", out);
    assert_eq!(pairs.len(), 3);
    assert_eq!(pairs[0].underlay, Some(("eth0".into(), 1500)));
    assert_eq!(pairs[0].problem(1420), None);
    assert!(pairs[1]
        .problem(1420)
        .unwrap()
        .contains("a 1420-byte packet marked don't-fragment does not pass"));
    let too_big = pairs[0].problem(1460).unwrap();
    assert!(
        too_big.contains("the mesh MTU 1460 plus WireGuard's 60 bytes exceeds eth0's MTU 1500: set [mesh] mtu to 1440 or less"),
        "{too_big}"
    );
    assert_eq!(pairs[2].underlay, None);
}

#[test]
fn a_binary_left_running_is_said_but_is_not_a_change() {
    let left = NodeChange {
        userspace_outdated: true,
        ..NodeChange::default()
    };
    assert!(!left.any());
    assert!(left.what()[0].contains("clusterkit upgrade --component mesh"));
    let synced = NodeChange {
        userspace_outdated: true,
        peers_synced: true,
        ..NodeChange::default()
    };
    assert!(synced.any());
}

/// A node's facts: x86_64, no kernel WireGuard.
#[cfg(feature = "remote")]
fn userspace_facts() -> clusterkit_core::transport::facts::Facts {
    clusterkit_core::transport::facts::parse("arch=x86_64\nwg=no\n", 0.0, 0.0)
}

#[cfg(feature = "remote")]
#[tokio::test]
async fn a_node_running_a_userspace_binary_keeps_it_when_none_is_given() {
    use clusterkit_core::transport::script::Scripted;
    let meshes = plan(&spec(2), &keys(2));
    let node = Scripted::new("node1");
    node.on("", ""); // every file written, every command quiet
    node.on(
        &format!("sha256sum {USERSPACE_PATH}"),
        &format!("{}  {USERSPACE_PATH}\n", "ab".repeat(32)),
    );
    let change = apply_node(
        &node,
        &meshes[0],
        &userspace_facts(),
        clusterkit_core::spec::WgBackend::Auto,
        None,
    )
    .await
    .unwrap();
    assert!(!change.userspace_outdated);
    let asked = node.asked();
    let sent = node.stdins(USERSPACE_PATH);
    assert!(sent.is_empty(), "no binary is sent: {asked:?}");
    assert!(
        asked
            .iter()
            .any(|a| a.contains("wg-quick@wg0.service.d/clusterkit.conf")),
        "the drop-in that runs it is still kept: {asked:?}"
    );

    // A node without one cannot get its mesh: the error says what to do.
    let bare = Scripted::new("node2");
    bare.on("", "");
    bare.on_exit(
        &format!("sha256sum {USERSPACE_PATH}"),
        1,
        "",
        "No such file",
    );
    let e = apply_node(
        &bare,
        &meshes[1],
        &userspace_facts(),
        clusterkit_core::spec::WgBackend::Auto,
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "node2: its kernel has no WireGuard and no userspace binary is at hand for x86_64"
        ),
        "{e}"
    );
    assert!(
        bare.asked().iter().all(|a| !a.contains("wg-quick")),
        "{:?}",
        bare.asked()
    );
}
