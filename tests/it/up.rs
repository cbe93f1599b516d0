//! `clusterkit up`: every phase built so far, in order, idempotent. On a
//! sandbox of its own, so that it starts from bare nodes (without even the
//! storage and monitoring images, which `up` sends from this machine).

use crate::sandbox::ck;

#[test]
fn up_builds_mesh_swarm_storage_and_monitoring_from_bare_nodes_and_a_rerun_changes_nothing() {
    const S: &str = "ck-it-up";
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let result = std::panic::catch_unwind(|| {
        let built = crate::sandbox::build_images();
        assert_eq!(built.code, 0, "{}", built.stderr);
        let out = ck(&[
            "sandbox",
            "up",
            "--name",
            S,
            "--subnet",
            "172.29.253.0/24",
            "--dir",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let config = dir.join("clusterkit.toml");
        let first = ck(&["up", "-c", config.to_str().unwrap()]);
        assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
        assert!(
            first.stdout.starts_with(
                "cluster ck-it-up is up: mesh 10.0.0.0/24, a swarm of 3 manager(s), garage storage (healthy) with the `clusterkit` volume driver"
            ),
            "{}",
            first.stdout
        );
        assert!(
            first
                .stdout
                .contains(", monitoring (prometheus, node-exporter, alertmanager;"),
            "{}",
            first.stdout
        );
        for step in [
            "swarm  initialised on node1",
            "images clusterkit/garage:2.5.0 missing on node1, node2, node3",
            "storage layout version 1 applied: 3 node(s), replication 3",
            "storage healthy on 3 node(s), tolerates 1 loss(es)",
            "images clusterkit/prometheus:bookworm missing on node1, node2, node3",
            "monitor deploying stack clusterkit-monitoring (3 service(s))",
            "monitor prometheus on node",
            "monitor alertmanager on node",
        ] {
            assert!(first.stderr.contains(step), "{step}: {}", first.stderr);
        }
        let again = ck(&["up", "-c", config.to_str().unwrap()]);
        assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
        assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
        for phase in [
            "docker unchanged",
            "mesh   unchanged",
            "swarm  unchanged",
            "storage unchanged",
            "monitor unchanged",
        ] {
            assert!(again.stderr.contains(phase), "{phase}: {}", again.stderr);
        }
    });
    let _ = ck(&["sandbox", "down", "--name", S]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
