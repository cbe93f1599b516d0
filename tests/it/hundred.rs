//! The transport at scale: `check` on 100 sshd-only sandbox hosts (no init,
//! no engine: a few MiB each), on a sandbox of its own. How fast is the
//! bench's to say (`cargo bench -p clusterkit-cli --bench check`); this test
//! holds what must be true at any speed.

use std::time::{Duration, Instant};

use crate::sandbox::{ck, docker};

const S: &str = "ck-it-hundred";
const NODES: usize = 100;

#[test]
fn check_reaches_a_hundred_nodes_and_names_each_that_does_not_answer_after_its_own_bound() {
    // 100 containers made at once: not beside another test's cluster build.
    let _one = crate::sandbox::own_cluster();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let _down = crate::sandbox::DownOnDrop(S);
    let nodes = NODES.to_string();
    let up = ck(&[
        "sandbox",
        "up",
        "--name",
        S,
        "--sshd-only",
        "--nodes",
        &nodes,
        "--subnet",
        "172.29.247.0/24",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert!(up.stdout.contains("100 node(s)"), "{}", up.stdout);
    let config = dir.join("clusterkit.toml");
    let config = config.to_str().unwrap();

    // Every node answers with its facts: none forgotten, none twice.
    let out = ck(&["check", "--json", "-c", config]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr));
    let answered: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    let all: Vec<String> = (1..=NODES).map(|i| format!("node{i}")).collect();
    assert_eq!(answered, all, "{}", out.stderr);
    assert_eq!(report["unreachable"].as_array().unwrap().len(), 0);
    for n in report["nodes"].as_array().unwrap() {
        assert_eq!(n["facts"]["os_id"], "debian", "{n}");
        assert_eq!(n["facts"]["init"], "sshd", "{n}");
    }

    // Five nodes frozen: their TCP handshake completes (the kernel answers)
    // but sshd never speaks. Each is named after its own bound (3 attempts
    // of 10 s); the run is not the sum of theirs (5 x 31.5 s), and the 95
    // others still answer.
    let frozen = ["node7", "node23", "node50", "node77", "node100"];
    for n in frozen {
        let c = format!("{S}-{n}");
        assert!(docker(&["pause", &c]).status.success(), "pause {c}");
    }
    let began = Instant::now();
    let out = ck(&["check", "--json", "-c", config]);
    let took = began.elapsed();
    for n in frozen {
        let _ = docker(&["unpause", &format!("{S}-{n}")]);
    }
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr));
    assert_ne!(out.code, 0, "unreachable nodes fail the check");
    let unreachable: Vec<(&str, &str)> = report["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["node"].as_str().unwrap(), u["error"].as_str().unwrap()))
        .collect();
    assert_eq!(
        unreachable.iter().map(|u| u.0).collect::<Vec<_>>(),
        frozen,
        "{unreachable:?}"
    );
    for (n, e) in &unreachable {
        assert!(e.contains("no answer within 10 s"), "{n}: {e}");
    }
    assert_eq!(
        report["nodes"].as_array().unwrap().len(),
        NODES - frozen.len()
    );
    assert!(
        took < Duration::from_secs(75),
        "5 silent nodes held the run {took:?}: their bounds were added up"
    );
}
