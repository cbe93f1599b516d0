//! Every node loses power at once and comes back: the cluster is whole again
//! (mesh, a swarm leader, storage, monitoring targets, a volume's data) with
//! no clusterkit command run, only read-only ones to look.

use std::time::Duration;

use crate::sandbox::{
    ck, cluster_change, config, disrupt, docker, shared, wait_for, PowerBack, NAME,
};

fn exec(node: &str, script: &str) -> (bool, String) {
    let o = docker(&["exec", &format!("{NAME}-{node}"), "sh", "-c", script]);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn the_whole_cluster_comes_back_by_itself_after_every_node_lost_power() {
    shared();
    let _g = disrupt();
    crate::storage::storage_up();
    {
        let _one = cluster_change();
        let m = ck(&["monitor", "up", "-c", &config()]);
        assert_eq!(m.code, 0, "{}{}", m.stdout, m.stderr);
    }
    crate::storage::tools_image();
    // Everything answers before the power goes (a disruptive test before
    // this one may have just powered a node back).
    wait_for("status ok before", Duration::from_secs(180), || {
        ck(&["status", "-c", &config()]).code == 0
    });
    let vol = "--mount type=volume,source=ck-reboot,target=/d,volume-driver=clusterkit,volume-opt=remote=clusterkit:volumes/ck-reboot";
    let (ok, out) = exec(
        "node1",
        &format!("docker run --rm {vol} ck/tools:1 sh -c 'echo survived > /d/proof'"),
    );
    assert!(ok, "{out}");

    let all = ["node1", "node2", "node3"];
    let _back = PowerBack::shared(all);
    for n in all {
        assert_eq!(ck(&["sandbox", "stop", "--name", NAME, n]).code, 0);
    }
    // Power back on all at once (each `sandbox start` waits for its node's sshd).
    std::thread::scope(|scope| {
        let started: Vec<_> = all
            .iter()
            .map(|n| scope.spawn(move || ck(&["sandbox", "start", "--name", NAME, n])))
            .collect();
        for s in started {
            let s = s.join().unwrap();
            assert_eq!(s.code, 0, "{}", s.stderr);
        }
    });
    let mut last = String::new();
    let took = wait_for(
        "status ok again (mesh, leader, storage, targets, stacks)",
        Duration::from_secs(360),
        || {
            let st = ck(&["status", "-c", &config()]);
            last = st.stdout.clone();
            st.code == 0
        },
    );
    eprintln!("whole again {took:?} after the nodes started:\n{last}");
    // The volume's data, read on another node.
    let (ok, out) = exec(
        "node2",
        &format!("docker run --rm {vol} ck/tools:1 cat /d/proof"),
    );
    assert!(ok && out.trim() == "survived", "{out}");
}
