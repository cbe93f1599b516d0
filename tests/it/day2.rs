//! Day two on a sandbox of its own: monitoring that survives a node, a node
//! lost for good and removed, then replaced by a fresh machine.

use std::time::Duration;

use crate::sandbox::{ck, docker, wait_for};

const S: &str = "ck-it-day2";

/// Runs a shell command in a node's container.
fn sh(node: &str, cmd: &str) -> String {
    let out = docker(&["exec", &format!("{S}-{node}"), "sh", "-c", cmd]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The nodes running a Prometheus replica, as seen from `from`.
fn prometheus_nodes(from: &str) -> Vec<String> {
    let mut v: Vec<String> = sh(
        from,
        "docker service ps clusterkit-monitoring_prometheus --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' | grep Running | cut -d' ' -f1",
    )
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

#[test]
fn monitoring_survives_a_lost_node_which_is_removed_then_replaced() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let dir_s = dir.to_str().unwrap().to_string();
    let sandbox_up = || {
        let out = ck(&[
            "sandbox",
            "up",
            "--name",
            S,
            "--subnet",
            "172.29.249.0/24",
            "--dir",
            &dir_s,
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    };
    let result = std::panic::catch_unwind(|| {
        let built = crate::sandbox::build_images();
        assert_eq!(built.code, 0, "{}", built.stderr);
        sandbox_up();
        // Two copies of every object: two nodes still hold a healthy store.
        // A config of its own: `sandbox up` rewrites clusterkit.toml.
        let config = dir.join("day2.toml");
        let text = std::fs::read_to_string(dir.join("clusterkit.toml")).unwrap();
        assert!(!text.contains("[storage]"), "{text}");
        std::fs::write(&config, format!("{text}\n[storage]\nreplication = 2\n")).unwrap();
        let cfg = config.to_str().unwrap();
        let up = ck(&["up", "-c", cfg]);
        assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);

        // Two Prometheus replicas, on two nodes.
        let mut replicas = Vec::new();
        wait_for(
            "two prometheus replicas run",
            Duration::from_secs(120),
            || {
                replicas = prometheus_nodes("node1");
                replicas.len() == 2
                    && replicas
                        .iter()
                        .all(|n| sh(n, "curl -sf localhost:9090/-/ready").contains("Ready"))
            },
        );
        assert_ne!(replicas[0], replicas[1], "{replicas:?}");
        // The node lost: one running a replica, not node1 (the test's vantage point).
        let victim = replicas.iter().find(|n| *n != "node1").unwrap().clone();
        let other = replicas.iter().find(|n| **n != victim).unwrap().clone();
        eprintln!("prometheus on {replicas:?}; {victim} is lost for good");
        let removed = docker(&["rm", "-f", &format!("{S}-{victim}")]);
        assert!(removed.status.success());

        // The other replica answers queries about every node that is left.
        wait_for(
            "the other prometheus replica answers",
            Duration::from_secs(60),
            || {
                let v: serde_json::Value = serde_json::from_str(&sh(
                    &other,
                    "curl -s -G localhost:9090/api/v1/query --data-urlencode 'query=up{job=\"node\"} == 1'",
                ))
                .unwrap_or_default();
                v["status"] == "success"
                    && v["data"]["result"].as_array().is_some_and(|r| r.len() >= 2)
            },
        );

        // Removed: swarm, mesh and storage report a healthy 2-node cluster.
        let rm = ck(&["node", "remove", &victim, "--yes", "-c", cfg]);
        assert_eq!(rm.code, 0, "{}{}", rm.stdout, rm.stderr);
        for line in [
            format!("{victim} does not answer: treated as lost"),
            format!("{victim} removed from the swarm"),
        ] {
            assert!(rm.stderr.contains(&line), "{line}: {}", rm.stderr);
        }
        assert!(
            rm.stderr
                .contains("2 managers: Raft needs a majority (2 of 2)"),
            "the quorum warning: {}",
            rm.stderr
        );
        let survivors: Vec<&str> = ["node1", "node2", "node3"]
            .into_iter()
            .filter(|n| *n != victim)
            .collect();
        assert_eq!(
            sh("node1", "docker node ls --format '{{.Hostname}}' | sort")
                .lines()
                .collect::<Vec<_>>(),
            survivors
        );
        for n in &survivors {
            assert_eq!(sh(n, "wg show wg0 peers | wc -l").trim(), "1", "{n}");
        }
        let mut last = String::new();
        wait_for(
            "status: a healthy 2-node cluster",
            Duration::from_secs(120),
            || {
                let st = ck(&["status", "-c", cfg]);
                last = format!("{}{}", st.stdout, st.stderr);
                st.code == 0
            },
        );
        for line in [
            "ok   mesh      2/2 pairs answer",
            "ok   swarm     leader ",
            "2 manager(s), quorum 2 held",
            "ok   storage   healthy",
        ] {
            assert!(last.contains(line), "{line}: {last}");
        }
        // Removing it again changes nothing and says so.
        let again = ck(&["node", "remove", &victim, "--yes", "-c", cfg]);
        assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
        assert!(
            again
                .stderr
                .contains(&format!("{victim} is not in the swarm")),
            "{}",
            again.stderr
        );

        // A fresh machine takes its place under the same name.
        sandbox_up();
        let add = ck(&["node", "add", &victim, "-c", cfg]);
        assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
        wait_for("status: 3 nodes again", Duration::from_secs(180), || {
            let st = ck(&["status", "-c", cfg]);
            last = format!("{}{}", st.stdout, st.stderr);
            st.code == 0
        });
        for line in [
            "ok   mesh      6/6 pairs answer",
            "3 manager(s), quorum 2 held",
            "ok   storage   healthy",
        ] {
            assert!(last.contains(line), "{line}: {last}");
        }
        wait_for(
            "two prometheus replicas again",
            Duration::from_secs(120),
            || prometheus_nodes("node1").len() == 2,
        );
    });
    let down = ck(&["sandbox", "down", "--name", S]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(down.code, 0, "{}", down.stderr);
}
