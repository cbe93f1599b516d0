//! `clusterkit up`: every phase built so far, in order, idempotent.

use crate::sandbox::{calm, ck, cluster_change, shared};

#[test]
fn up_builds_mesh_and_swarm_and_a_rerun_changes_nothing() {
    let s = shared();
    let _g = calm();
    let _one = cluster_change();
    let config = s.dir.join("clusterkit.toml");
    let first = ck(&["up", "-c", config.to_str().unwrap()]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(
        first
            .stdout
            .starts_with("cluster ck-it is up: mesh 10.0.0.0/24 and a swarm of 3 manager(s)"),
        "{}",
        first.stdout
    );
    let again = ck(&["up", "-c", config.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    for phase in ["docker unchanged", "mesh   unchanged", "swarm  unchanged"] {
        assert!(again.stderr.contains(phase), "{phase}: {}", again.stderr);
    }
}
