//! Nine nodes, past the manager cap: a sandbox of its own with the default
//! cap (7 managers) and so 2 workers, built from bare nodes by one `up` with
//! everything on (mesh, swarm, storage, the volume driver, monitoring, the
//! example app). Then the leader's node loses power (a new leader, every
//! replica back, a volume written on it read intact on a worker), a worker
//! loses power (its tasks move to the other), both come back and `rebalance`
//! spreads them again; last, a manager taken out promotes the first worker.

use std::time::Duration;

use crate::sandbox::{ck, docker, wait_for, whole};

const S: &str = "ck-it-nine";

/// Runs `script` on `node`: whether it succeeded, and what it printed.
fn sh(node: &str, script: &str) -> (bool, String) {
    let o = docker(&["exec", &format!("{S}-{node}"), "sh", "-c", script]);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Each node's host name and manager status (empty for a worker), as the
/// swarm lists them from `from`, sorted.
fn roles(from: &str) -> Vec<String> {
    let mut v: Vec<String> = sh(
        from,
        "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'",
    )
    .1
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

/// The replicated services with fewer tasks running on nodes other than
/// `lost` than they want, seen from `from` (`NAME: have of want`). The
/// swarm's own count would still hold the lost node's tasks until it is
/// declared down. A service placed on `lost` alone (each node's Garage)
/// cannot move and is not counted.
fn short_services(from: &str, lost: &str) -> Vec<String> {
    let (_, specs) = sh(
        from,
        "docker service inspect -f '{{.Spec.Name}} {{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{else}}global{{end}} {{json .Spec.TaskTemplate.Placement.Constraints}}' $(docker service ls -q)",
    );
    let (_, tasks) = sh(
        from,
        "docker service ps --filter desired-state=running --format '{{.Name}} {{.Node}} {{.CurrentState}}' $(docker service ls -q)",
    );
    let pinned = [
        format!("node.hostname=={lost}\""),
        format!("node.labels.clusterkit.node=={lost}\""),
    ];
    let mut short = Vec::new();
    let mut replicated = 0;
    for l in specs.lines() {
        let mut f = l.splitn(3, ' ');
        let (Some(name), Some(want), constraints) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(want) = want.parse::<usize>() else {
            continue;
        };
        replicated += 1;
        if constraints.is_some_and(|c| {
            let c = c.replace(' ', "");
            pinned.iter().any(|p| c.contains(p.as_str()))
        }) {
            continue;
        }
        let have = tasks
            .lines()
            .filter(|t| {
                let mut f = t.split_whitespace();
                let task = f.next().unwrap_or_default();
                let node = f.next().unwrap_or_default();
                task.rsplit_once('.').is_some_and(|(svc, _)| svc == name)
                    && node != lost
                    && t.contains(" Running")
            })
            .count();
        if have < want {
            short.push(format!("{name}: {have} of {want}"));
        }
    }
    if replicated == 0 {
        short.push(format!("no replicated service listed: {specs}"));
    }
    short
}

/// Where the running tasks of `service` are, seen from `from`, sorted.
fn running_on(from: &str, service: &str) -> Vec<String> {
    let mut v: Vec<String> = sh(
        from,
        &format!(
            "docker service ps {service} --filter desired-state=running --format '{{{{.Node}}}} {{{{.CurrentState}}}}'"
        ),
    )
    .1
    .lines()
    .filter(|l| l.contains(" Running"))
    .filter_map(|l| l.split_whitespace().next().map(String::from))
    .collect();
    v.sort();
    v
}

/// A small image made on each node from its own files (nothing can be
/// pulled): a shell, `head`, `sha256sum` and `sleep`.
fn tools_image(nodes: &[String]) {
    std::thread::scope(|scope| {
        for n in nodes {
            scope.spawn(move || {
                let (ok, out) = sh(
                    n,
                    "docker image inspect ck/tools:1 >/dev/null 2>&1 && exit 0; \
                     bins='/usr/bin/dash /usr/bin/head /usr/bin/sha256sum /usr/bin/sleep /usr/bin/cat'; \
                     libs=$(for b in $bins; do ldd $b | grep -o '/[^ ]*'; done | sort -u | sed 's|^/||'); \
                     tar -C / -ch $(echo $bins | sed 's|/usr|usr|g') $libs bin/sh 2>/dev/null | docker import -c 'CMD [\"/bin/sh\"]' - ck/tools:1 >/dev/null",
                );
                assert!(ok, "{n}: {out}");
            });
        }
    });
}

/// A service of `replicas` tasks that only sleep, on the nodes of `role`.
fn sleepers(name: &str, replicas: u8, role: &str) {
    let (ok, out) = sh(
        "node1",
        &format!(
            "docker service create -d --name {name} --replicas {replicas} \
             --constraint node.role=={role} ck/tools:1 sleep 100000 >/dev/null"
        ),
    );
    assert!(ok, "{name}: {out}");
}

#[test]
fn nine_nodes_seven_managers_and_two_workers_survive_the_leader_and_a_worker() {
    let _one = crate::sandbox::own_cluster();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let _down = crate::sandbox::DownOnDrop(S);
    let built = crate::sandbox::build_images();
    assert_eq!(built.code, 0, "{}", built.stderr);
    crate::sandbox::own_sandbox_up_nodes(S, 9, "172.29.246.0/24", dir.to_str().unwrap());
    let config = dir.join("clusterkit.toml");
    let config = config.to_str().unwrap();
    let nodes: Vec<String> = (1..=9).map(|i| format!("node{i}")).collect();

    // From bare nodes, with everything the sandbox turns on.
    let begin = std::time::Instant::now();
    let up = ck(&["up", "-c", config]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    eprintln!("cold up of 9 nodes: {:?}", begin.elapsed());
    for w in ["node8", "node9"] {
        assert!(
            up.stderr.contains(&format!("{w}: joined as worker")),
            "{}",
            up.stderr
        );
    }
    let s = swarm_status(config);
    assert_eq!(s["managers"].as_array().unwrap().len(), 7, "{s}");
    assert_eq!(s["workers"], 2, "{s}");
    assert_eq!(s["tolerates"], 3, "{s}");
    // Every part ok, every monitoring target up; and the workers are in
    // it: on the mesh, in Garage's layout, scraped (node-exporter and
    // cAdvisor), with the volume driver.
    whole(config, "the 9-node cluster", Duration::from_secs(300));
    for (i, w) in [(8, "node8"), (9, "node9")] {
        let (_, wg) = sh(w, "ip -4 addr show wg0");
        assert!(wg.contains(&format!("10.0.0.{i}/")), "{w}: {wg}");
        let (ok, driver) = sh(
            w,
            "test -S /run/docker/plugins/clusterkit.sock && echo front",
        );
        assert!(ok && driver.contains("front"), "{w}: {driver}");
    }
    let (_, layout) = sh(
        "node1",
        "docker exec $(docker ps -q -f label=com.docker.swarm.service.name=clusterkit-storage_garage-node1) \
         /proc/1/exe status 2>&1",
    );
    for n in &nodes {
        assert!(
            layout.contains(n.as_str()),
            "{n} in Garage's layout:\n{layout}"
        );
    }
    // Asked where a Prometheus replica runs (2 of the 7 managers).
    let prometheus = running_on("node1", "clusterkit-monitoring_prometheus");
    assert_eq!(prometheus.len(), 2, "{prometheus:?}");
    let scraped = |job: &str| -> usize {
        let (_, out) = sh(
            &prometheus[0],
            &format!(
                "curl -s -G -K /etc/clusterkit/monitoring/api.curl localhost:9090/api/v1/query \
                 --data-urlencode 'query=up{{job=\"{job}\"}} == 1'"
            ),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v["data"]["result"].as_array().map_or(0, Vec::len)
    };
    wait_for(
        "node-exporter and cAdvisor scraped on all 9 nodes",
        Duration::from_secs(120),
        || scraped("node") == 9 && scraped("cadvisor") == 9,
    );

    // A volume written on the leader's node, then that node's power cut.
    tools_image(&nodes);
    let leader = s["leader"].as_str().expect("a leader").to_string();
    let (ok, out) = sh(
        &leader,
        "docker volume create -d clusterkit ck-nine >/dev/null && \
         docker run --rm -v ck-nine:/data ck/tools:1 sh -c \
         'head -c 1048576 /dev/urandom > /data/blob && cd /data && sha256sum blob > blob.sha && cat blob.sha'",
    );
    assert!(ok, "{out}");
    let sum = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(sum.len(), 64, "{out}");
    // Two replicas on the workers, one each (the swarm spreads them).
    sleepers("keeper", 2, "worker");
    wait_for("keeper on both workers", Duration::from_secs(90), || {
        running_on("node1", "keeper") == ["node8", "node9"]
    });
    // And one replica on every manager, the leader's node included: the
    // power cut takes one of them for sure.
    sleepers("spread", 7, "manager");
    wait_for("spread on all 7 managers", Duration::from_secs(90), || {
        let on = running_on("node1", "spread");
        let mut distinct = on.clone();
        distinct.dedup();
        on.len() == 7 && distinct.len() == 7
    });

    let back = crate::sandbox::PowerBack::of(S, [leader.as_str(), "node8"]);
    assert_eq!(ck(&["sandbox", "stop", "--name", S, &leader]).code, 0);
    let alive = if leader == "node1" { "node2" } else { "node1" };
    let took = wait_for("a new leader", Duration::from_secs(120), || {
        let (_, ls) = sh(
            alive,
            "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'",
        );
        ls.lines()
            .any(|l| l.ends_with(" Leader") && !l.starts_with(&format!("{leader} ")))
    });
    eprintln!("new leader after {took:?}");
    // Every replicated service runs all its replicas again, on the others.
    let took = wait_for(
        "every replica back on the 8 others",
        Duration::from_secs(300),
        || short_services(alive, &leader).is_empty(),
    );
    eprintln!("replicas back after {took:?}");
    let (ok, read) = sh(
        "node9",
        "docker volume create -d clusterkit ck-nine >/dev/null && \
         docker run --rm -v ck-nine:/data ck/tools:1 sh -c 'cd /data && sha256sum -c blob.sha >/dev/null && cat blob.sha'",
    );
    assert!(ok, "the volume read on node9: {read}");
    assert_eq!(read.split_whitespace().next(), Some(sum.as_str()));

    // A worker's power cut: its replica moves to the other worker.
    assert_eq!(ck(&["sandbox", "stop", "--name", S, "node8"]).code, 0);
    let took = wait_for(
        "keeper's replicas both on node9",
        Duration::from_secs(240),
        || running_on(alive, "keeper") == ["node9", "node9"],
    );
    eprintln!("the worker's task moved after {took:?}");

    // Both back; rebalance spreads the replicas again.
    for n in [leader.as_str(), "node8"] {
        assert_eq!(ck(&["sandbox", "start", "--name", S, n]).code, 0);
    }
    drop(back);
    wait_for("all 9 nodes ready", Duration::from_secs(180), || {
        let (_, ls) = sh(alive, "docker node ls --format '{{.Status}}'");
        ls.lines().filter(|l| l.trim() == "Ready").count() == 9
    });
    let r = ck(&["rebalance", "-c", config]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        running_on(alive, "keeper"),
        ["node8", "node9"],
        "{}",
        r.stderr
    );
    whole(
        config,
        "the cluster after both came back",
        Duration::from_secs(300),
    );
    let _ = sh(alive, "docker service rm keeper spread");

    // A manager taken out: the first worker takes its place, 7 managers again.
    // Neither the node the test looks from nor the first leader.
    let gone = if leader == "node3" { "node4" } else { "node3" };
    let out = ck(&["node", "remove", gone, "--yes", "-c", config]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{gone} removed from the swarm (demoted first)")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("node8: role or labels updated"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("a swarm of 7 manager(s)"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let r = roles(alive);
    assert_eq!(r.len(), 8, "{gone} gone: {r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("node8 ") && l.len() > "node8 ".len()),
        "node8 a manager: {r:?}"
    );
    assert_eq!(
        r.iter().filter(|l| !l.contains(' ')).count(),
        1,
        "one worker left: {r:?}"
    );
    let s = swarm_status(config);
    assert_eq!(s["managers"].as_array().unwrap().len(), 7, "{s}");
    assert_eq!(s["workers"], 1, "{s}");
}
