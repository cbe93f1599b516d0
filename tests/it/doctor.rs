//! `clusterkit doctor` on the shared sandbox: all ok on a built cluster, and
//! an MTU too large for the path flagged with the value that fits.

use crate::sandbox::{calm, ck, config, shared, wait_for};

#[test]
fn doctor_finds_a_built_cluster_healthy_and_flags_an_mtu_too_large_for_the_path() {
    let s = shared();
    let _g = calm();
    crate::storage::storage_up();
    let mut last = String::new();
    // A disruptive test may have just powered a node back on: give storage a moment.
    wait_for("doctor all ok", std::time::Duration::from_secs(120), || {
        let out = ck(&["doctor", "-c", &config()]);
        last = format!("{}{}", out.stdout, out.stderr);
        out.code == 0
    });
    for line in [
        "ok   ssh      3 node(s) reachable, host keys checked",
        "ok   node     OS, clocks, disk, ports and the address plan are fine on every node",
        "ok   mesh     6/6 pairs answer",
        "ok   mtu      a 1420-byte don't-fragment packet passes between every pair; overlays use 1370",
        "ok   ports    the cluster's TCP ports (13 in all) are closed outside the mesh",
        "ok   quorum   leader ",
        "ok   storage  healthy on 3 node(s), tolerates 1 loss(es)",
    ] {
        assert!(last.contains(line), "{line}: {last}");
    }
    let json = ck(&["doctor", "--json", "-c", &config()]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["healthy"], true, "{}", json.stdout);
    assert!(v["checks"].as_array().is_some_and(|c| c.len() >= 7));

    // The same cluster described with a mesh MTU the bridge cannot carry.
    let cfg = std::fs::read_to_string(config()).unwrap();
    let variant = s.dir.join("mtu-too-large.toml");
    std::fs::write(&variant, format!("{cfg}\n[mesh]\nmtu = 1460\n")).unwrap();
    let bad = ck(&["doctor", "-c", variant.to_str().unwrap()]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stdout.contains("FAIL mtu      node1 → node2: the mesh MTU 1460 plus WireGuard's 60 bytes exceeds eth0's MTU 1500: set [mesh] mtu to 1440 or less"),
        "{}",
        bad.stdout
    );
}
