//! Docker Swarm on the shared sandbox's mesh: every node a manager, leader
//! failover with a replicated service, quorum loss and recovery.

use std::time::Duration;

use crate::sandbox::{calm, ck, config, disrupt, docker, shared, wait_for, NAME};

/// Mesh and swarm up, one run at a time.
pub fn swarm_up() -> crate::bin::Output {
    let _one = crate::sandbox::cluster_change();
    crate::wg::mesh_up_held();
    let out = ck(&["swarm", "up", "-c", &config()]);
    if out.code != 0 {
        // Each engine's own view and its last words on joining (a join left
        // pending was seen once in CI, right after a recover).
        let mut seen = String::new();
        for n in ["node1", "node2", "node3"] {
            seen += &format!("--- {n}\n");
            seen += &exec(n, "docker info -f '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeAddr}} managers={{.Swarm.Managers}} error={{.Swarm.Error}}' 2>&1; docker node ls 2>&1 | head -n 8; journalctl -u docker --no-pager --since '-5 min' | grep -iE 'join|raft|certificate|leader|session' | tail -n 25");
        }
        panic!("swarm up failed:\n{}\n{}\n{seen}", out.stdout, out.stderr);
    }
    out
}

fn exec(node: &str, script: &str) -> String {
    let out = docker(&["exec", &format!("{NAME}-{node}"), "sh", "-c", script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_managers_on_mesh_addresses_and_a_rerun_changes_nothing() {
    shared();
    let _g = calm();
    swarm_up();
    let again = swarm_up();
    assert!(again.stderr.contains("swarm unchanged"), "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("3 of 3 managers reachable, quorum 2; tolerates 1 more loss(es)"),
        "{}",
        again.stdout
    );
    for i in 1..=3 {
        let addrs = exec(
            &format!("node{i}"),
            "docker node inspect self --format '{{.ManagerStatus.Addr}} {{.Status.Addr}}'",
        );
        assert_eq!(
            addrs.trim(),
            format!("10.0.0.{i}:2377 10.0.0.{i}"),
            "node{i}"
        );
    }
    // Swarm's networks stay clear of the mesh.
    let subnets = exec("node1", "docker network inspect ingress clusterkit --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}'");
    assert!(
        subnets.lines().all(|l| l.starts_with("10.200.")),
        "{subnets}"
    );
    let labels = exec(
        "node2",
        "docker node inspect self --format '{{index .Spec.Labels \"clusterkit.node\"}}'",
    );
    assert_eq!(labels.trim(), "node2");
    // The engine starts after the mesh at boot.
    assert!(exec("node3", "systemctl show docker -p After").contains("wg-quick@wg0.service"));
    // Connections to a node that lost power are given up within about 100 s
    // (the failover test below depends on it); a value set by hand is put back.
    for i in 1..=3 {
        let live = exec(&format!("node{i}"), "cat /proc/sys/net/ipv4/tcp_retries2");
        assert_eq!(live.trim(), "8", "node{i}");
    }
    exec("node2", "sysctl -q -w net.ipv4.tcp_retries2=15");
    let fixed = swarm_up();
    assert!(
        fixed.stderr.contains(
            "node2: connections to a node that lost power are given up after about 100 s"
        ),
        "{}",
        fixed.stderr
    );
    assert_eq!(
        exec("node2", "cat /proc/sys/net/ipv4/tcp_retries2").trim(),
        "8"
    );
}

/// A 2 MB image made on each node from its own files: `sleep infinity`.
fn sleeper_image() {
    for i in 1..=3 {
        exec(
            &format!("node{i}"),
            "docker image inspect ck/sleeper:1 >/dev/null 2>&1 || tar -C / -c lib lib64 usr/lib64 usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
             usr/lib/x86_64-linux-gnu/libc.so.6 usr/bin/sleep 2>/dev/null | docker import -c 'CMD [\"/usr/bin/sleep\",\"infinity\"]' - ck/sleeper:1",
        );
    }
}

fn leader() -> Option<String> {
    let out = ck(&["swarm", "status", "--json", "-c", &config()]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    v["leader"].as_str().map(String::from)
}

#[test]
fn the_swarm_survives_its_leader_keeps_every_replica_and_rebalance_spreads_them_again() {
    shared();
    let _g = disrupt();
    swarm_up();
    sleeper_image();
    exec("node1", "docker service rm keeper >/dev/null 2>&1; docker service create -d --name keeper --replicas 3 ck/sleeper:1 >/dev/null");
    let running = |exclude: &str| {
        let ps = exec("node1", "docker service ps keeper --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'");
        let ps = if ps.trim().is_empty() {
            exec("node2", "docker service ps keeper --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'")
        } else {
            ps
        };
        ps.lines()
            .filter(|l| l.contains("Running") && !l.starts_with(exclude))
            .count()
    };
    wait_for("3 replicas running", Duration::from_secs(60), || {
        running("-") == 3
    });
    let old = leader().expect("a leader");
    let _back = crate::sandbox::PowerBack::shared(["node1", "node2", "node3"]);
    assert_eq!(ck(&["sandbox", "stop", "--name", NAME, &old]).code, 0);
    let took = wait_for("a new leader", Duration::from_secs(90), || {
        leader().is_some_and(|l| l != old)
    });
    eprintln!("new leader after {took:?}");
    let survivors: Vec<String> = (1..=3)
        .map(|i| format!("node{i}"))
        .filter(|n| *n != old)
        .collect();
    // Bounded for a loaded machine: the lost node must be declared down
    // before its tasks start elsewhere.
    let begin = std::time::Instant::now();
    loop {
        let ps = exec(&survivors[0], "docker service ps keeper --format '{{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}'");
        let running = ps
            .lines()
            .filter(|l| l.contains(" Running Running") && !l.starts_with(&old))
            .count();
        if running == 3 {
            break;
        }
        // Bounded for a loaded machine. Before the nodes gave a dead peer's
        // connections up within 100 s (`net.ipv4.tcp_retries2 = 8`), a
        // manager's status report to the lost leader could hang for 15
        // minutes, the new replica `Assigned` all along (twice in CI,
        // reproduced by hand with the engine's goroutine dump). What the
        // survivors saw, if it is not met:
        if begin.elapsed() > Duration::from_secs(240) {
            // The nodes' view, and on each survivor its agent's sessions and
            // every TCP connection still open to the lost node, with its
            // timers (a stream held by a dead peer shows here).
            let mut seen = exec(&survivors[0], "docker node ls");
            for n in &survivors {
                seen += &format!("--- {n}\n");
                seen += &exec(n, "journalctl -u docker --no-pager --since '-6 min' | grep -iE 'session|dispatcher|leader|heartbeat|down' | tail -n 25");
                seen += &exec(n, "ss -tnoi state established 2>/dev/null | head -n 60");
            }
            panic!("3 replicas on the survivors: not within 240 s\n{ps}\n{seen}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(ck(&["sandbox", "start", "--name", NAME, &old]).code, 0);
    wait_for(
        "the old leader back as a reachable manager",
        Duration::from_secs(120),
        || {
            exec(
                &survivors[0],
                "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'",
            )
            .contains(&format!("{old} Ready Reachable"))
        },
    );
    // Back from a power cut, the node gives dead peers up as quickly: the
    // setting is applied at boot, not only by `up`.
    assert_eq!(
        exec(&old, "cat /proc/sys/net/ipv4/tcp_retries2").trim(),
        "8"
    );
    // The replicas stay piled on the survivors until `rebalance` spreads them,
    // never running fewer than 3.
    let per_node = || {
        let ps = exec(&survivors[0], "docker service ps keeper --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'");
        let mut nodes: Vec<String> = ps
            .lines()
            .filter(|l| l.contains("Running"))
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        nodes.sort();
        nodes
    };
    assert!(!per_node().contains(&old), "{:?}", per_node());
    let r = ck(&["rebalance", "-c", &config()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("keeper: "), "{}", r.stderr);
    assert_eq!(per_node(), ["node1", "node2", "node3"], "{}", r.stderr);
    let again = ck(&["rebalance", "-c", &config()]);
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    exec(&survivors[0], "docker service rm keeper >/dev/null");
}

#[test]
fn losing_the_majority_is_reported_and_recover_brings_the_swarm_back() {
    shared();
    let _g = disrupt();
    swarm_up();
    // node2 survives: the first node in the file is not the one recovered
    // onto, so `up` has to find which swarm speaks for the cluster.
    let _back = crate::sandbox::PowerBack::shared(["node1", "node3"]);
    for n in ["node1", "node3"] {
        assert_eq!(ck(&["sandbox", "stop", "--name", NAME, n]).code, 0);
    }
    let mut status = ck(&["swarm", "status", "-c", &config()]);
    wait_for(
        "status to report the lost quorum",
        Duration::from_secs(60),
        || {
            status = ck(&["swarm", "status", "-c", &config()]);
            status.stdout.contains("quorum lost")
        },
    );
    assert_eq!(status.code, 1);
    assert!(
        status.stdout.contains("clusterkit swarm recover"),
        "{}",
        status.stdout
    );
    let no = ck(&["swarm", "recover", "-c", &config()]);
    assert_eq!(no.code, 1, "recover must ask first");
    assert!(no.stderr.contains("--yes"), "{}", no.stderr);
    let out = ck(&[
        "swarm",
        "recover",
        "--yes",
        "--node",
        "node2",
        "-c",
        &config(),
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("leader: node2"), "{}", out.stdout);
    assert!(
        exec("node2", "docker node ls >/dev/null && echo ok").contains("ok"),
        "the swarm answers again"
    );
    drop(_back);
    // The returning managers still hold the old swarm, where together they
    // are a majority: they may answer for it, listing node2, which lists
    // only itself now.
    let engine = |n: &str| {
        exec(
            n,
            "docker info -f '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} \
             cluster={{if .Swarm.Cluster}}{{.Swarm.Cluster.ID}}{{end}}' 2>/dev/null; \
             docker node ls -q 2>/dev/null | wc -l",
        )
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
    };
    // Measured: both answer for it, each listing the 3 old entries.
    let old_swarm = |n: &str| {
        let e = engine(n);
        e.starts_with("active true cluster=") && !e.contains("cluster= ")
    };
    wait_for(
        "the returning managers to answer for the old swarm",
        Duration::from_secs(120),
        || old_swarm("node1") && old_swarm("node3"),
    );
    eprintln!(
        "back (state, manager, swarm, nodes listed): node1 {}; node3 {}",
        engine("node1"),
        engine("node3")
    );
    // The returning managers rejoin with the next `up`.
    let out = swarm_up();
    assert!(
        out.stderr.contains("node1: joined as manager")
            && out.stderr.contains("node3: joined as manager"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("3 of 3 managers reachable"),
        "{}",
        out.stdout
    );
}

/// An HTTP server image made on each node from its own files (python3 -m http.server).
pub fn web_image() {
    let builds: Vec<_> = (1..=3)
        .map(|i| {
            std::thread::spawn(move || {
                exec(
                    &format!("node{i}"),
                    "docker image inspect ck/py:1 >/dev/null 2>&1 || tar -C / -c bin lib lib64 usr/bin usr/lib usr/lib64 etc 2>/dev/null \
                     | docker import -c 'CMD [\"python3\",\"-m\",\"http.server\",\"8080\"]' - ck/py:1",
                )
            })
        })
        .collect();
    for b in builds {
        b.join().unwrap();
    }
}

#[test]
fn ports_published_in_host_mode_answer_over_the_mesh_and_through_ingress_only_with_ipvs() {
    shared();
    let _g = calm();
    swarm_up();
    web_image();
    exec(
        "node1",
        "docker service rm ck-web-ingress ck-web-host >/dev/null 2>&1; \
         docker service create -d --name ck-web-host --mode global -p published=18081,target=8080,mode=host ck/py:1 >/dev/null 2>&1; \
         docker service create -d --name ck-web-ingress --constraint node.hostname==node1 -p published=18080,target=8080,mode=ingress ck/py:1 >/dev/null 2>&1",
    );
    let code = |from: &str, ip: &str, port: u16| {
        exec(
            from,
            &format!("curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{ip}:{port}/"),
        )
    };
    wait_for(
        "host-mode port on every node",
        Duration::from_secs(60),
        || (1..=3).all(|i| code("node2", &format!("10.0.0.{i}"), 18081) == "200"),
    );
    // The ingress routing mesh balances through IPVS: without it (this
    // sandbox's kernel) the port answers on no node, not even the task's own,
    // which is why generated stacks publish in host mode (README); with it,
    // on every node. The task runs before either is judged.
    wait_for(
        "the ingress service's task running",
        Duration::from_secs(60),
        || {
            exec(
            "node1",
            "docker service ps ck-web-ingress --filter desired-state=running --format '{{.CurrentState}}'",
        )
        .starts_with("Running")
        },
    );
    let ipvs = exec("node1", "[ -e /proc/net/ip_vs ] && echo yes || echo no");
    let want = if ipvs.trim() == "yes" { "200" } else { "000" };
    // Asked for a while where it works: the routing mesh takes some seconds to program.
    let mut ingress: Vec<String> = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        ingress = (1..=3)
            .map(|i| code("node2", &format!("10.0.0.{i}"), 18080))
            .collect();
        // Without IPVS nothing will change: one round says it.
        if want == "000" || ingress.iter().all(|c| c == want) {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        ingress.iter().all(|c| c == want),
        "ingress-published port 18080 from node2 to node1..3 over the mesh (IPVS: {}): {ingress:?}, want {want} everywhere (000 = refused or no answer)",
        ipvs.trim()
    );
    exec(
        "node1",
        "docker service rm ck-web-ingress ck-web-host >/dev/null 2>&1",
    );
}
