//! Distributed storage on the shared sandbox: Garage on every node, the
//! `clusterkit` volume driver, a volume that follows its service when the
//! node it ran on dies, S3 with a node down, and the MinIO stack checked by
//! the engine.

use std::sync::Once;
use std::time::{Duration, Instant};

use crate::sandbox::{calm, ck, config, disrupt, docker, shared, wait_for, PowerBack, NAME};

const GARAGE: &str = "clusterkit/garage:2.5.0";

fn exec(node: &str, script: &str) -> std::process::Output {
    docker(&["exec", &format!("{NAME}-{node}"), "sh", "-c", script])
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Mesh, swarm, the Garage image on the nodes, and storage: once per run.
pub fn storage_up() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::swarm::swarm_up();
        let _one = crate::sandbox::cluster_change();
        let built = crate::sandbox::build_images();
        assert_eq!(built.code, 0, "{}", built.stderr);
        assert!(built.stdout.contains(GARAGE), "{}", built.stdout);
        let pushed = ck(&["images", "push", "-c", &config(), GARAGE]);
        assert_eq!(pushed.code, 0, "{}{}", pushed.stdout, pushed.stderr);
        let first = ck(&["storage", "up", "-c", &config()]);
        assert_eq!(
            first.code, 0,
            "storage up:\n{}\n{}",
            first.stdout, first.stderr
        );
        // Secrets never reach the output.
        let key = exec("node1", "cat /etc/clusterkit/storage/s3-key");
        let secret = String::from_utf8_lossy(&key.stdout)
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        assert_eq!(secret.len(), 64, "{}", out(&key));
        assert!(!first.stdout.contains(&secret) && !first.stderr.contains(&secret));
        let again = ck(&["storage", "up", "-c", &config()]);
        assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
        assert!(
            again.stderr.contains("storage unchanged"),
            "{}",
            again.stderr
        );
    });
}

/// An image with a shell and the coreutils the volume test needs, made from
/// each node's own files (nothing can be pulled).
pub fn tools_image() {
    for i in 1..=3 {
        let o = exec(
            &format!("node{i}"),
            "docker image inspect ck/tools:1 >/dev/null 2>&1 && exit 0; \
             bins='/usr/bin/dash /usr/bin/head /usr/bin/sha256sum /usr/bin/sleep /usr/bin/cat /usr/bin/ls /usr/bin/test'; \
             libs=$(for b in $bins; do ldd $b | grep -o '/[^ ]*'; done | sort -u | sed 's|^/||'); \
             tar -C / -ch $(echo $bins | sed 's|/usr|usr|g') $libs bin/sh 2>/dev/null | docker import -c 'CMD [\"/bin/sh\"]' - ck/tools:1 >/dev/null",
        );
        assert!(o.status.success(), "{}", out(&o));
    }
}

fn task_node(service: &str) -> Option<String> {
    let o = exec(
        "node1",
        &format!("docker service ps {service} --filter desired-state=running --format '{{{{.Node}}}} {{{{.CurrentState}}}}'"),
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.contains("Running"))
        .and_then(|l| l.split_whitespace().next())
        .map(String::from)
}

fn checksum_in_task(node: &str, service: &str) -> Option<String> {
    let o = exec(
        node,
        &format!(
            "c=$(docker ps -q --filter label=com.docker.swarm.service.name={service} | head -n1); \
             [ -n \"$c\" ] && docker exec $c sh -c 'cd /data && sha256sum -c blob.sha >/dev/null && cat blob.sha'"
        ),
    );
    o.status
        .success()
        .then(|| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|s| s.len() == 64)
}

#[test]
fn a_volume_follows_its_service_to_another_node_when_its_node_dies() {
    shared();
    // Alone first: another disruptive test may have a node powered off.
    let _g = disrupt();
    storage_up();
    tools_image();
    // Tests that stopped nodes or re-formed the swarm may have run since
    // storage came up: converge again, as an operator would.
    {
        let _one = crate::sandbox::cluster_change();
        for cmd in ["swarm", "storage"] {
            let o = ck(&[cmd, "up", "-c", &config()]);
            assert_eq!(o.code, 0, "{cmd} up:\n{}\n{}", o.stdout, o.stderr);
        }
    }
    wait_for("storage is healthy", Duration::from_secs(120), || {
        let s = ck(&["storage", "status", "-c", &config()]);
        s.code == 0 && s.stdout.contains("Garage healthy")
    });
    let status = ck(&["storage", "status", "-c", &config()]);
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    assert!(
        status
            .stdout
            .contains("Garage healthy: replication 3, tolerates 1 more node loss(es)"),
        "{}",
        status.stdout
    );

    let svc = "ck-volume";
    let _ = exec("node1", &format!("docker service rm {svc}"));
    let o = exec(
        "node1",
        &format!(
            "docker service create -d --name {svc} --restart-condition any \
             --mount type=volume,source=ck-data,target=/data,volume-driver=clusterkit,volume-opt=remote=clusterkit:volumes/ck-data \
             ck/tools:1 sh -c 'test -f /data/blob.sha || {{ head -c 1048576 /dev/urandom > /data/blob && cd /data && sha256sum blob > blob.sha; }}; sleep 100000'"
        ),
    );
    assert!(o.status.success(), "{}", out(&o));
    let mut first = None;
    wait_for(
        "the service runs and has written its file",
        Duration::from_secs(90),
        || {
            first = task_node(svc).and_then(|n| checksum_in_task(&n, svc).map(|c| (n, c)));
            first.is_some()
        },
    );
    let (from, sum) = first.unwrap();
    // The file is in the cluster's S3 (seen from another node) before the power goes.
    let other = if from == "node1" { "node2" } else { "node1" };
    wait_for("the file reached S3", Duration::from_secs(30), || {
        let ls = exec(
            other,
            "rclone --config /etc/clusterkit/storage/rclone.conf ls clusterkit:volumes/ck-data",
        );
        let l = String::from_utf8_lossy(&ls.stdout).to_string();
        l.contains("1048576 blob") && l.contains("blob.sha")
    });

    let _power = PowerBack(vec![match from.as_str() {
        "node1" => "node1",
        "node2" => "node2",
        _ => "node3",
    }]);
    let stop = ck(&["sandbox", "stop", "--name", NAME, &from]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let alive = if from == "node1" { "node2" } else { "node1" };
    let mut moved = None;
    let mut seen = String::new();
    let begin = Instant::now();
    while moved.is_none() {
        assert!(
            begin.elapsed() < Duration::from_secs(180),
            "the service was not rescheduled with its file within 180 s; last seen:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(500));
        let o = exec(
            alive,
            &format!("docker service ps {svc} --filter desired-state=running --format '{{{{.Node}}}} {{{{.CurrentState}}}}'"),
        );
        seen = out(&o);
        let node = String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.contains("Running") && !l.starts_with(&from))
            .and_then(|l| l.split_whitespace().next())
            .map(String::from);
        if let Some(n) = node {
            let check = exec(
                &n,
                &format!(
                    "c=$(docker ps -q --filter label=com.docker.swarm.service.name={svc} | head -n1); \
                     [ -n \"$c\" ] && docker exec $c sh -c 'cd /data && ls -l && sha256sum -c blob.sha && cat blob.sha'"
                ),
            );
            seen.push_str(&out(&check));
            moved = checksum_in_task(&n, svc).map(|c| (n, c));
        }
    }
    let took = begin.elapsed();
    let (to, sum_after) = moved.unwrap();
    assert_ne!(to, from);
    assert_eq!(
        sum_after, sum,
        "the file moved with its service but changed"
    );
    eprintln!("volume moved {from} -> {to} in {took:?} with the same sha256");

    // One node down: S3 still reads and writes, and status says what is at risk.
    let o = exec(
        alive,
        "head -c 200000 /dev/urandom > /tmp/w && rclone --config /etc/clusterkit/storage/rclone.conf copyto /tmp/w clusterkit:clusterkit/test/w \
         && rclone --config /etc/clusterkit/storage/rclone.conf cat clusterkit:clusterkit/test/w | cmp - /tmp/w && echo same",
    );
    assert!(out(&o).contains("same"), "{}", out(&o));
    // Garage notices the loss within its ping timeouts.
    let mut degraded = None;
    wait_for("status reports the loss", Duration::from_secs(90), || {
        let s = ck(&["storage", "status", "-c", &config()]);
        let seen = s
            .stdout
            .contains("degraded: replication 3, tolerates 0 more node loss(es)");
        degraded = Some(s);
        seen
    });
    let degraded = degraded.unwrap();
    assert_eq!(degraded.code, 1, "{}{}", degraded.stdout, degraded.stderr);
    assert!(
        degraded.stdout.contains(&format!("{from}      no")),
        "{}",
        degraded.stdout
    );
    assert!(
        degraded
            .stdout
            .contains("probe object written and read back"),
        "{}",
        degraded.stdout
    );

    // The node comes back: healthy again, without a re-run.
    let start = ck(&["sandbox", "start", "--name", NAME, &from]);
    assert_eq!(start.code, 0, "{}", start.stderr);
    wait_for("storage is healthy again", Duration::from_secs(120), || {
        let s = ck(&["storage", "status", "-c", &config()]);
        s.code == 0 && s.stdout.contains("Garage healthy")
    });
    let _ = exec(alive, &format!("docker service rm {svc}"));
}

#[test]
fn the_minio_stack_is_accepted_by_the_engine() {
    shared();
    // Calm first: a disruptive test may not break the swarm after it is converged.
    let _g = calm();
    crate::swarm::swarm_up();
    let dir = &shared().dir;
    std::fs::write(
        dir.join("minio.toml"),
        format!("name = \"{NAME}\"\ninventory = \"hosts.ini\"\n[storage]\nbackend = \"minio\"\n"),
    )
    .unwrap();
    let rendered = dir.join("minio-stack");
    let r = ck(&[
        "storage",
        "render",
        "-c",
        dir.join("minio.toml").to_str().unwrap(),
        "--out",
        rendered.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let compose = std::fs::read_to_string(rendered.join("docker-compose.yml")).unwrap();
    // The engine's own validation: deployed (the image cannot be pulled, so
    // no task starts), every service and its placement checked, removed.
    let cp = docker(&[
        "cp",
        rendered.join("docker-compose.yml").to_str().unwrap(),
        &format!("{NAME}-node1:/root/minio.yml"),
    ]);
    assert!(cp.status.success(), "{}", out(&cp));
    let o = exec(
        "node1",
        "for s in clusterkit-minio-user clusterkit-minio-password; do docker secret inspect $s >/dev/null 2>&1 || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' | docker secret create $s - >/dev/null; done; \
         docker stack deploy --resolve-image never -c /root/minio.yml ck-minio-check && \
         docker service inspect ck-minio-check_minio-node2 --format '{{json .Spec.TaskTemplate.Placement.Constraints}} {{json .Spec.TaskTemplate.ContainerSpec.Secrets}}'",
    );
    let text = out(&o);
    let _ = exec("node1", "docker stack rm ck-minio-check; sleep 2; docker secret rm clusterkit-minio-user clusterkit-minio-password");
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("node.labels.clusterkit.node == node2"),
        "{text}"
    );
    assert!(text.contains("minio-root-password"), "{text}");
    assert!(compose.contains("MINIO_ROOT_PASSWORD_FILE"), "{compose}");
}
