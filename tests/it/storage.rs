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

/// Tests that stopped nodes or re-formed the swarm may have run since
/// storage came up: converged again, as an operator would, until healthy.
fn converge() {
    {
        let _one = crate::sandbox::cluster_change();
        for cmd in ["swarm", "storage"] {
            let o = ck(&[cmd, "up", "-c", &config()]);
            if o.code != 0 {
                // What each manager saw (a manager that knew no leader after
                // a power cut was seen in CI, not reproduced here).
                let seen: String = ["node1", "node2", "node3"]
                    .iter()
                    .map(|n| {
                        format!(
                            "--- {n}\n{}",
                            out(&exec(
                                n,
                                "docker node ls; journalctl -u docker --no-pager -n 400 | grep -i raft | tail -n 15; wg show wg0 latest-handshakes",
                            ))
                        )
                    })
                    .collect();
                panic!("{cmd} up:\n{}\n{}\n{seen}", o.stdout, o.stderr);
            }
        }
    }
    wait_for("storage is healthy", Duration::from_secs(120), || {
        let s = ck(&["storage", "status", "-c", &config()]);
        s.code == 0 && s.stdout.contains("Garage healthy")
    });
}

#[test]
fn a_volume_follows_its_service_to_another_node_when_its_node_dies() {
    shared();
    // Alone first: another disruptive test may have a node powered off.
    let _g = disrupt();
    storage_up();
    tools_image();
    converge();
    let status = ck(&["storage", "status", "-c", &config()]);
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    assert!(
        status
            .stdout
            .contains("Garage healthy: replication 3, tolerates 1 more node loss(es)"),
        "{}",
        status.stdout
    );

    plain_volumes();

    // The service names the driver alone, as users of every other driver
    // write it: the volume's remote comes from its name.
    let svc = "ck-volume";
    let _ = exec("node1", &format!("docker service rm {svc}"));
    let o = exec(
        "node1",
        &format!(
            "docker service create -d --name {svc} --restart-condition any \
             --mount type=volume,source=ck-data,target=/data,volume-driver=clusterkit \
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

    let _power = PowerBack::shared([&from]);
    let stop = ck(&["sandbox", "stop", "--name", NAME, &from]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let alive = if from == "node1" { "node2" } else { "node1" };
    let mut moved = None;
    let mut seen = String::new();
    let begin = Instant::now();
    while moved.is_none() {
        if begin.elapsed() > Duration::from_secs(180) {
            // What each surviving manager saw (a leaderless swarm was seen
            // once in CI with one of three managers down, not reproduced).
            let others: String = ["node1", "node2", "node3"]
                .iter()
                .filter(|n| **n != from)
                .map(|n| {
                    out(&exec(
                        n,
                        "docker node ls; journalctl -u docker --no-pager -n 400 | grep -i raft | tail -n 15; wg show wg0 latest-handshakes",
                    ))
                })
                .collect();
            panic!(
                "the service was not rescheduled with its file within 180 s; last seen:\n{seen}\n{others}"
            );
        }
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
    // Its volume driver serves again: the volume was mounted there when the
    // power went (rclone 1.60 hung for ever remounting it, measured), and
    // `storage status` counts a driver that does not serve.
    let mut last = None;
    wait_for("storage is healthy again", Duration::from_secs(120), || {
        let s = ck(&["storage", "status", "-c", &config()]);
        let ok = s.code == 0 && s.stdout.contains("Garage healthy");
        last = Some(s);
        ok
    });
    let last = last.unwrap();
    assert!(
        last.stdout
            .lines()
            .any(|l| l.starts_with(from.as_str()) && l.ends_with("running")),
        "{}",
        last.stdout
    );
    let o = exec(
        &from,
        "docker run --rm --mount type=volume,source=ck-data,target=/data,volume-driver=clusterkit \
         ck/tools:1 sh -c 'cd /data && sha256sum -c blob.sha >/dev/null && cat blob.sha'",
    );
    assert!(
        out(&o).starts_with(&sum),
        "the volume on {from}, back: {}",
        out(&o)
    );
    let _ = exec(alive, &format!("docker service rm {svc}"));
}

/// `driver: clusterkit` alone in a compose file, and `docker volume create
/// -d clusterkit NAME` with no option, as every other driver is called
/// (rclone alone refuses a volume with no remote): a stack writes a file in
/// its volume on one node, the file is in the cluster's S3 under the
/// volume's name, and another node's plain volume of that name reads it.
fn plain_volumes() {
    let stack = "version: \"3.8\"\nservices:\n  w:\n    image: ck/tools:1\n    command: [\"sh\", \"-c\", \"echo written-by-a-stack > /d/hello; sleep 100000\"]\n    volumes: [\"data:/d\"]\n    deploy:\n      placement:\n        constraints: [node.hostname == node2]\nvolumes:\n  data:\n    driver: clusterkit\n";
    let o = exec(
        "node1",
        &format!(
            "docker stack rm ckplain >/dev/null 2>&1; mkdir -p /tmp/ckplain && printf '%s' '{stack}' > /tmp/ckplain/stack.yml \
             && docker stack deploy --resolve-image never -c /tmp/ckplain/stack.yml ckplain"
        ),
    );
    assert!(o.status.success(), "{}", out(&o));
    let rclone = "rclone --config /etc/clusterkit/storage/rclone.conf";
    wait_for(
        "the stack's file in S3 under its volume's name",
        Duration::from_secs(90),
        || {
            String::from_utf8_lossy(
                &exec(
                    "node1",
                    &format!("{rclone} cat clusterkit:volumes/ckplain_data/hello"),
                )
                .stdout,
            )
            .contains("written-by-a-stack")
        },
    );
    let o = exec(
        "node3",
        "docker volume rm ckplain_data >/dev/null 2>&1; docker volume create -d clusterkit ckplain_data \
         && docker run --rm -v ckplain_data:/d ck/tools:1 cat /d/hello",
    );
    assert!(out(&o).contains("written-by-a-stack"), "{}", out(&o));
    let o = exec(
        "node1",
        "docker stack rm ckplain; for i in $(seq 60); do [ -z \"$(docker service ls -q --filter label=com.docker.stack.namespace=ckplain)\" ] && break; sleep 1; done",
    );
    assert!(o.status.success(), "{}", out(&o));
    for n in ["node2", "node3"] {
        wait_for(
            &format!("the plain volume released on {n}"),
            Duration::from_secs(60),
            || {
                exec(n, "docker volume rm ckplain_data >/dev/null 2>&1; ! docker volume inspect ckplain_data >/dev/null 2>&1").status.success()
            },
        );
    }
    let _ = exec(
        "node1",
        &format!("{rclone} purge clusterkit:volumes/ckplain_data"),
    );
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
    // The engine's own validation: deployed (no task really starts: see
    // below), every service and its placement checked, removed.
    let cp = docker(&[
        "cp",
        rendered.join("docker-compose.yml").to_str().unwrap(),
        &format!("{NAME}-node1:/root/minio.yml"),
    ]);
    assert!(cp.status.success(), "{}", out(&cp));
    // Each node holds an image under MinIO's name (one file, no program):
    // the tasks fail to start instead of pulling, so no node asks a
    // registry it must not reach.
    for n in ["node1", "node2", "node3"] {
        let o = exec(
            n,
            "[ -n \"$(docker images -q pgsty/minio:latest)\" ] || tar -C /etc -cf - hostname | docker import - pgsty/minio:latest >/dev/null",
        );
        assert!(o.status.success(), "{n}: {}", out(&o));
    }
    // node1 may be back from a disruptive test's power cut, not knowing the
    // leader yet: as an operator would, wait until it answers for the swarm.
    wait_for(
        "node1 to know the swarm's leader",
        Duration::from_secs(120),
        || exec("node1", "docker node ls -q").status.success(),
    );
    let o = exec(
        "node1",
        "for s in clusterkit-minio-user clusterkit-minio-password; do docker secret inspect $s >/dev/null 2>&1 || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' | docker secret create $s - >/dev/null; done; \
         docker stack deploy --resolve-image never -c /root/minio.yml ck-minio-check && \
         docker service inspect ck-minio-check_minio-node2 --format '{{json .Spec.TaskTemplate.Placement.Constraints}} {{json .Spec.TaskTemplate.ContainerSpec.Secrets}}'",
    );
    let text = out(&o);
    let _ = exec("node1", "docker stack rm ck-minio-check; sleep 2; docker secret rm clusterkit-minio-user clusterkit-minio-password");
    for n in ["node1", "node2", "node3"] {
        let _ = exec(
            n,
            "sleep 2; docker image rm -f pgsty/minio:latest >/dev/null 2>&1",
        );
    }
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("node.labels.clusterkit.node == node2"),
        "{text}"
    );
    assert!(text.contains("minio-root-password"), "{text}");
    assert!(compose.contains("MINIO_ROOT_PASSWORD_FILE"), "{compose}");
}

/// Garage's container image on `node`, as its running container has it.
fn garage_container(node: &str) -> String {
    let o = exec(
        node,
        &format!(
            "docker ps --filter label=com.docker.swarm.service.name=clusterkit-storage_garage-{node} \
             --filter status=running --format '{{{{.ID}}}} {{{{.Image}}}}'"
        ),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Writes one object after another through the nodes' own S3 endpoints
/// (rclone, as the volume driver uses it), failing over to the next node
/// when one does not take it, until `stop`. Returns the objects acknowledged
/// and the writes no node took.
fn counted_writes(stop: &std::sync::atomic::AtomicBool) -> (Vec<u32>, u32) {
    let (mut acked, mut failed) = (Vec::new(), 0);
    let mut k = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        k += 1;
        let mut why = Vec::new();
        let took = (0..3).any(|i| {
            let node = format!("node{}", (k as usize + i) % 3 + 1);
            let o = exec(
                &node,
                &format!(
                    "echo object-{k} | timeout 15 rclone --config /etc/clusterkit/storage/rclone.conf \
                     --retries 1 --low-level-retries 1 --contimeout 3s --timeout 10s rcat clusterkit:clusterkit/roll-test/{k}"
                ),
            );
            if !o.status.success() {
                let text = out(&o);
                why.push(format!("{node}: {}", text.lines().last().unwrap_or_default()));
            }
            o.status.success()
        });
        if took {
            acked.push(k);
        } else {
            // Said, to learn what a write no node took ran into.
            eprintln!("write {k} taken by no node: {why:?}");
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (acked, failed)
}

#[test]
fn garage_is_upgraded_node_by_node_while_writes_go_on() {
    shared();
    // Alone: nodes are drained one after the other.
    let _g = disrupt();
    storage_up();
    converge();

    // A second build of the server: the same program, another image.
    let second = format!("{GARAGE}-ck1");
    let _ = docker(&["rm", "-f", "ck-garage-second"]);
    let made = docker(&["create", "--name", "ck-garage-second", GARAGE]);
    assert!(made.status.success(), "{}", out(&made));
    let committed = docker(&[
        "commit",
        "--change",
        "LABEL io.clusterkit.test=second-build",
        "ck-garage-second",
        &second,
    ]);
    let _ = docker(&["rm", "-f", "ck-garage-second"]);
    assert!(committed.status.success(), "{}", out(&committed));

    // A config naming it, beside the shared one (same inventory, same keys).
    let shared_cfg = config();
    let text = std::fs::read_to_string(&shared_cfg).unwrap();
    // The sandbox's config names its own build: that line now names the second.
    let current = format!("[storage]\nimage = \"{GARAGE}\"\n");
    assert!(text.contains(&current), "{text}");
    let pinned = text.replacen(&current, &format!("[storage]\nimage = \"{second}\"\n"), 1);
    let cfg_path = std::path::Path::new(&shared_cfg).with_file_name("storage-roll.toml");
    std::fs::write(&cfg_path, pinned).unwrap();
    let cfg = cfg_path.to_str().unwrap();
    let nodes = ["node1", "node2", "node3"];
    let before: Vec<String> = nodes.iter().map(|n| garage_container(n)).collect();
    assert!(before.iter().all(|c| c.ends_with(GARAGE)), "{before:?}");

    // `up` with the new image sends it to the nodes and replaces no running
    // server: it names the roll.
    let up = ck(&["storage", "up", "-c", cfg]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    assert!(
        up.stderr.contains(&format!(
            "{second} missing on node1, node2, node3: sending it from this machine"
        )),
        "{}",
        up.stderr
    );
    assert!(
        up.stderr.contains(
            "Garage on node1, node2, node3 runs another image than the spec's: `clusterkit upgrade --component storage` rolls it"
        ),
        "{}",
        up.stderr
    );
    let after_up: Vec<String> = nodes.iter().map(|n| garage_container(n)).collect();
    assert_eq!(after_up, before, "up restarted a Garage server");

    // The roll, while objects are written through the nodes' S3 endpoints.
    let _ = exec(
        "node1",
        "rclone --config /etc/clusterkit/storage/rclone.conf purge clusterkit:clusterkit/roll-test",
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (roll, (acked, failed)) = std::thread::scope(|s| {
        let writer = s.spawn(|| counted_writes(&stop));
        std::thread::sleep(Duration::from_secs(3));
        let roll = ck(&["upgrade", "--component", "storage", "-c", cfg]);
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (roll, writer.join().unwrap())
    });
    assert_eq!(roll.code, 0, "{}{}", roll.stdout, roll.stderr);
    eprintln!(
        "storage roll: {} writes acknowledged, {failed} taken by no node",
        acked.len()
    );
    assert!(
        acked.len() >= 30,
        "too few writes to judge: {}",
        acked.len()
    );
    // Stated bound: at most 1 % of the writes taken by no node (3 copies,
    // one server out at a time, the client fails over; measured: 1 of 399
    // in one run, 0 of 373 in another).
    assert!(
        failed as usize * 100 <= acked.len() + failed as usize,
        "{failed} of {} writes taken by no node during the roll",
        acked.len() + failed as usize
    );
    // One node at a time, in inventory order, each back before the next.
    let mut at = 0;
    for n in nodes {
        for step in [
            format!("{n}: draining"),
            format!("{n}: Garage's service to {second}"),
            format!("{n}: Garage runs {second}; every server connected, every partition whole"),
        ] {
            at += roll.stderr[at..]
                .find(&step)
                .unwrap_or_else(|| panic!("{step} after byte {at}: {}", roll.stderr))
                + step.len();
        }
    }
    assert!(
        roll.stdout
            .contains("storage upgraded on 3 node(s), one at a time"),
        "{}",
        roll.stdout
    );
    // Every acknowledged object is there, with what was written.
    let listed = exec(
        "node2",
        "rclone --config /etc/clusterkit/storage/rclone.conf lsf clusterkit:clusterkit/roll-test",
    );
    let listed: std::collections::BTreeSet<u32> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost: Vec<&u32> = acked.iter().filter(|k| !listed.contains(k)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged, not found after the roll: {lost:?}"
    );
    for k in [acked[0], acked[acked.len() / 2], acked[acked.len() - 1]] {
        let o = exec(
            "node3",
            &format!("rclone --config /etc/clusterkit/storage/rclone.conf cat clusterkit:clusterkit/roll-test/{k}"),
        );
        assert_eq!(out(&o).trim(), format!("object-{k}"));
    }
    let rolled: Vec<String> = nodes.iter().map(|n| garage_container(n)).collect();
    assert!(rolled.iter().all(|c| c.ends_with(&second)), "{rolled:?}");
    // Each server started in its own step, none again at the end (the
    // stack deployed again after the roll must restart nothing).
    let started: Vec<u64> = nodes
        .iter()
        .map(|n| {
            let o = exec(
                n,
                &format!(
                    "date -d \"$(docker inspect -f '{{{{.State.StartedAt}}}}' {})\" +%s",
                    garage_container(n)
                        .split_whitespace()
                        .next()
                        .unwrap_or("none")
                ),
            );
            out(&o)
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{n}: {}", out(&o)))
        })
        .collect();
    assert!(
        started[0] + 5 < started[1] && started[1] + 5 < started[2],
        "Garage started at {started:?} (node1..node3): not one step after the other\n{}",
        roll.stderr
    );

    // Converged: `up` changes nothing, restarts nothing; a re-run rolls nothing.
    let up = ck(&["storage", "up", "-c", cfg]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    assert!(up.stderr.contains("storage unchanged"), "{}", up.stderr);
    assert!(!up.stderr.contains("another image"), "{}", up.stderr);
    let again: Vec<String> = nodes.iter().map(|n| garage_container(n)).collect();
    assert_eq!(again, rolled, "up restarted a Garage server");
    let re = ck(&["upgrade", "--component", "storage", "-c", cfg]);
    assert_eq!(re.code, 0, "{}{}", re.stdout, re.stderr);
    assert!(re.stdout.contains("nothing to upgrade"), "{}", re.stdout);

    // Back to the shared sandbox's image, the same way.
    let back = ck(&["upgrade", "--component", "storage", "-c", &shared_cfg]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    let restored: Vec<String> = nodes.iter().map(|n| garage_container(n)).collect();
    assert!(restored.iter().all(|c| c.ends_with(GARAGE)), "{restored:?}");
    let _ = exec(
        "node1",
        "rclone --config /etc/clusterkit/storage/rclone.conf purge clusterkit:clusterkit/roll-test",
    );
}

/// Unpauses a node's Garage container when dropped, whatever the test did.
struct Unpause(&'static str, String);

impl Drop for Unpause {
    fn drop(&mut self) {
        let _ = exec(self.0, &format!("docker unpause {}", self.1));
    }
}

#[test]
fn an_s3_server_that_stops_answering_is_passed_over_within_seconds() {
    shared();
    storage_up();
    let _g = disrupt();
    converge();
    let cfg = config();
    let list = || {
        let start = Instant::now();
        let l = ck(&[
            "backup",
            "list",
            "s3://clusterkit/deadline-test",
            "-c",
            &cfg,
        ]);
        (l, start.elapsed())
    };
    // Nothing is under that prefix: S3 answered when the command says so
    // (exit 1, "no backup under").
    let answered = |l: &crate::bin::Output| {
        l.stderr
            .contains("no backup under s3://clusterkit/deadline-test")
    };
    let (before, _) = list();
    assert!(answered(&before), "{}{}", before.stdout, before.stderr);
    // node1's Garage frozen: its port still takes connections (the kernel
    // answers the handshake), nothing answers a request: what a server that
    // stops mid-request looks like from the client.
    let id = garage_container("node1");
    let id = id
        .split_whitespace()
        .next()
        .expect("Garage runs on node1")
        .to_string();
    let paused = exec("node1", &format!("docker pause {id}"));
    assert!(paused.status.success(), "{}", out(&paused));
    let _back = Unpause("node1", id);
    let (l, took) = list();
    assert!(answered(&l), "{}{}", l.stdout, l.stderr);
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}:\n{}",
        l.stderr
    );
}
