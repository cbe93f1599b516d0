//! The address plan is checked on every node before anything changes: a
//! mesh inside the engine's address pools, or a route into the swarm's pool,
//! is refused with both ranges, where each comes from and the key to change.

use crate::sandbox::{calm, ck, cluster_change, config, docker, shared, NAME};

/// Removes the route it was given when dropped, even if the test fails.
struct Route(&'static str);

impl Drop for Route {
    fn drop(&mut self) {
        docker(&[
            "exec",
            &format!("{NAME}-node2"),
            "ip",
            "route",
            "del",
            self.0,
        ]);
    }
}

fn wg_conf(node: &str) -> String {
    let o = docker(&[
        "exec",
        &format!("{NAME}-{node}"),
        "sh",
        "-c",
        "cat /etc/wireguard/*.conf 2>/dev/null; ls /etc/wireguard 2>/dev/null",
    ]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn overlaps_with_engine_pools_and_node_routes_are_refused_before_any_change() {
    let s = shared();
    let _g = calm();
    // No `up` of another test may write the mesh while this one checks that
    // nothing was written.
    let _one = cluster_change();
    let before: Vec<String> = ["node1", "node2", "node3"].map(wg_conf).to_vec();
    let state = s.dir.join(".clusterkit").join("state.toml");
    let state_before = std::fs::read_to_string(&state).ok();

    // The sandbox's engines take bridges from 172.20.0.0/14 (their daemon.json):
    // a mesh inside it is refused, by `check`, `up --dry-run` and `up`.
    let cfg = std::fs::read_to_string(config()).unwrap();
    let variant = s.dir.join("inside-pools.toml");
    let text = if cfg.contains("[mesh]\n") {
        cfg.replace("[mesh]\n", "[mesh]\ncidr = \"172.21.0.0/24\"\n")
    } else {
        format!("{cfg}\n[mesh]\ncidr = \"172.21.0.0/24\"\n")
    };
    std::fs::write(&variant, text).unwrap();
    let variant = variant.to_str().unwrap();
    let want = "the engine's local address pool 172.20.0.0/14 (default-address-pools in /etc/docker/daemon.json) overlaps the mesh 172.21.0.0/24 (mesh.cidr)";
    for args in [
        vec!["check", "-c", variant],
        vec!["up", "--dry-run", "-c", variant],
        vec!["up", "--progress", "plain", "-c", variant],
    ] {
        let out = ck(&args);
        assert_ne!(out.code, 0, "{args:?} accepted it: {}", out.stdout);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains(want), "{args:?}: {all}");
        assert!(all.contains("node1") && all.contains("node3"), "{all}");
    }

    // A route on node2 into the swarm's address pool (a VPN, say).
    let out = docker(&[
        "exec",
        &format!("{NAME}-node2"),
        "ip",
        "route",
        "add",
        "10.200.77.0/24",
        "dev",
        "eth0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let route = Route("10.200.77.0/24");
    let out = ck(&["up", "--progress", "plain", "-c", &config()]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("node2: error: the route to 10.200.77.0/24 (dev eth0) overlaps the swarm address pool 10.200.0.0/16 (swarm.default_addr_pool)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    drop(route);

    // Nothing was written anywhere.
    let after: Vec<String> = ["node1", "node2", "node3"].map(wg_conf).to_vec();
    assert_eq!(before, after, "a refused run changed the mesh");
    assert_eq!(
        std::fs::read_to_string(&state).ok(),
        state_before,
        "a refused run recorded addresses"
    );
}
