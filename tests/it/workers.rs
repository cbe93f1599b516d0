//! Workers: a node past `swarm.max_managers` joins as a worker, and taking
//! a manager out promotes the first worker, so the managers stay at the cap.
//! On a 4-node sandbox of its own with a cap of 3 (the default cap, 7, needs
//! 8 nodes: the bench builds 9), the mesh and the swarm only.

use crate::sandbox::{ck, docker};

const S: &str = "ck-it-workers";

fn sh(node: &str, script: &str) -> String {
    let o = docker(&["exec", &format!("{S}-{node}"), "sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Each node's host name and manager status (empty for a worker), as the
/// swarm lists them, sorted.
fn roles(from: &str) -> Vec<String> {
    let mut v: Vec<String> = sh(
        from,
        "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'",
    )
    .lines()
    .map(|l| l.trim().to_string())
    .collect();
    v.sort();
    v
}

fn swarm_status(config: &str) -> serde_json::Value {
    let out = ck(&["swarm", "status", "--json", "-c", config]);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr))
}

#[test]
fn a_node_past_the_cap_is_a_worker_and_is_promoted_when_a_manager_is_removed() {
    let _one = crate::sandbox::own_cluster();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let _down = crate::sandbox::DownOnDrop(S);
    crate::sandbox::own_sandbox_up_nodes(S, 4, "172.29.246.0/24", dir.to_str().unwrap());
    let config = dir.join("clusterkit.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"{S}\"\ninventory = \"hosts.ini\"\n\n[swarm]\nmax_managers = 3\n\n\
             [storage]\nbackend = \"none\"\n\n[monitoring]\nenabled = false\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let up = ck(&["up", "-c", config]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    assert!(
        up.stderr.contains("node4: joined as worker"),
        "{}",
        up.stderr
    );
    let r = roles("node1");
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(r.contains(&"node4".to_string()), "node4 a worker: {r:?}");
    let s = swarm_status(config);
    assert_eq!(s["managers"].as_array().unwrap().len(), 3, "{s}");
    assert_eq!(s["workers"], 1, "{s}");
    // The worker is on the mesh like the others, and the cluster is healthy.
    assert!(sh("node4", "ip -4 addr show wg0").contains("10.0.0.4/"));
    let status = ck(&["status", "-c", config]);
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);

    // A manager taken out: the worker takes its place, 3 managers again.
    let out = ck(&["node", "remove", "node2", "--yes", "-c", config]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("node2 removed from the swarm (demoted first)"),
        "{}",
        out.stderr
    );
    // The run waits for the promotion: what it reports is the swarm after it
    // (it said 2 managers, tolerating no loss, before it waited).
    assert!(
        out.stderr.contains("node4: role or labels updated"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("a swarm of 3 manager(s)"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let r = roles("node1");
    assert_eq!(r.len(), 3, "node2 gone: {r:?}");
    assert!(
        r.iter()
            .all(|l| l.ends_with("Leader") || l.ends_with("Reachable")),
        "every node a manager: {r:?}"
    );
    assert!(r.iter().any(|l| l.starts_with("node4 ")), "{r:?}");
    let s = swarm_status(config);
    assert_eq!(s["managers"].as_array().unwrap().len(), 3, "{s}");
    assert_eq!(s["workers"], 0, "{s}");
    assert_eq!(s["tolerates"], 1, "{s}");
    // Again: nothing to do.
    let again = ck(&["up", "-c", config]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(
        again.stderr.contains("swarm      unchanged"),
        "{}",
        again.stderr
    );
}
