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

fn whole(cfg: &str, what: &str) -> String {
    crate::sandbox::whole(cfg, what, Duration::from_secs(180))
}

/// Whether the example app answers `/metrics` on `addr` (port 8000).
fn get_metrics(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(sock) = format!("{addr}:8000").parse() else {
        return false;
    };
    let Ok(mut c) = std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(500)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    if c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    c.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// Runs `f` while a client sends requests to the app: an external one with
/// failover (as a load balancer with health checks), so that a request fails
/// only when no node answers it. Returns `f`'s result, the requests answered
/// and those failed.
fn counted<T>(addrs: &[String], f: impl FnOnce() -> T) -> (T, u32, u32) {
    let addrs = addrs.to_vec();
    let mut i = 0usize;
    crate::sandbox::while_asking(
        Duration::from_millis(50),
        move || {
            i += 1;
            (0..addrs.len()).any(|k| get_metrics(&addrs[(i + k) % addrs.len()]))
        },
        f,
    )
}

/// Makes a second version of the nodes' Docker Engine package: the same
/// `docker.io` from Debian, repackaged as VERSION+ck1, in a local package
/// source on every node (a flat repository). Returns the new version.
fn second_engine_package() -> String {
    let build = docker(&[
        "exec",
        &format!("{S}-node1"),
        "sh",
        "-c",
        "set -e; export DEBIAN_FRONTEND=noninteractive; v=$(dpkg-query -W -f='${Version}' docker.io); \
         rm -rf /tmp/ckdeb && mkdir -p /tmp/ckdeb /var/local/ck-repo && cd /tmp/ckdeb; \
         apt-get update -qq; apt-get download -q docker.io >/dev/null; dpkg-deb -R docker.io_*.deb x; \
         sed -i \"s/^Version: .*/Version: $v+ck1/\" x/DEBIAN/control; \
         dpkg-deb -Zgzip -z1 -b x /var/local/ck-repo/docker.io_ck1.deb >/dev/null; cd /var/local/ck-repo; \
         { dpkg-deb -f docker.io_ck1.deb; echo \"Filename: ./docker.io_ck1.deb\"; \
           echo \"Size: $(stat -c %s docker.io_ck1.deb)\"; \
           echo \"SHA256: $(sha256sum docker.io_ck1.deb | cut -d' ' -f1)\"; echo; } > Packages; \
         rm -rf /tmp/ckdeb; echo $v+ck1",
    ]);
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let version = String::from_utf8_lossy(&build.stdout).trim().to_string();
    let host = tempfile::tempdir().unwrap();
    let repo = host.path().join("ck-repo");
    let out = docker(&[
        "cp",
        &format!("{S}-node1:/var/local/ck-repo"),
        repo.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in ["node2", "node3"] {
        let out = docker(&[
            "cp",
            repo.to_str().unwrap(),
            &format!("{S}-{n}:/var/local/ck-repo"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for n in ["node1", "node2", "node3"] {
        sh(
            n,
            "echo 'deb [trusted=yes] file:/var/local/ck-repo ./' > /etc/apt/sources.list.d/ck-repo.list",
        );
    }
    version
}

/// Finds `steps` in `out` in that order from byte `at`; returns where the
/// last one ends. Fails naming the first step missing.
fn in_order(out: &str, mut at: usize, steps: &[String]) -> usize {
    for step in steps {
        let found = out[at..]
            .find(step.as_str())
            .unwrap_or_else(|| panic!("{step} after byte {at}: {out}"));
        at += found + step.len();
    }
    at
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_roll_keeps_serving_monitoring_survives_a_lost_node_removed_then_replaced() {
    let _one = crate::sandbox::own_cluster();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let dir_s = dir.to_str().unwrap().to_string();
    let sandbox_up = || crate::sandbox::own_sandbox_up(S, "172.29.249.0/24", &dir_s);
    let result = std::panic::catch_unwind(|| {
        let built = crate::sandbox::build_images();
        assert_eq!(built.code, 0, "{}", built.stderr);
        sandbox_up();
        // Two copies of every object: two nodes still hold a healthy store.
        // A config of its own: `sandbox up` rewrites clusterkit.toml.
        let config = dir.join("day2.toml");
        let text = std::fs::read_to_string(dir.join("clusterkit.toml")).unwrap();
        assert!(
            text.contains("[storage]\n") && !text.contains("[swarm]"),
            "{text}"
        );
        let text = text.replacen("[storage]\n", "[storage]\nreplication = 2\n", 1);
        std::fs::write(&config, &text).unwrap();
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
                    && replicas.iter().all(|n| {
                        sh(
                        n,
                        "curl -sf -K /etc/clusterkit/monitoring/api.curl localhost:9090/-/ready",
                    )
                    .contains("Ready")
                    })
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
                    "curl -s -G -K /etc/clusterkit/monitoring/api.curl localhost:9090/api/v1/query --data-urlencode 'query=up{job=\"node\"} == 1'",
                ))
                .unwrap_or_default();
                v["status"] == "success"
                    && v["data"]["result"].as_array().is_some_and(|r| r.len() >= 2)
            },
        );

        // Alerting too: the lost node's NodeDown (firing after a minute)
        // reaches an Alertmanager on a node that is left.
        let took = wait_for(
            "NodeDown for the lost node in an Alertmanager on a node left",
            Duration::from_secs(240),
            || {
                ["node1", "node2", "node3"]
                    .iter()
                    .filter(|n| **n != victim)
                    .any(|n| {
                        let alerts = sh(n, "curl -sf -K /etc/clusterkit/monitoring/api.curl localhost:9093/api/v2/alerts");
                        alerts.contains("\"alertname\":\"NodeDown\"")
                            && alerts.contains(&format!("\"{victim}\""))
                    })
            },
        );
        eprintln!("NodeDown for {victim} in an Alertmanager left after {took:?}");

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
        let last = whole(cfg, "a healthy 2-node cluster");
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
        let last = whole(cfg, "3 nodes again");
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

        // A rolling upgrade of the userspace WireGuard binary while the
        // example app keeps answering. The client is an external one with
        // failover (as a load balancer with health checks): a request fails
        // only when no node answers it. Stated bound: at most 1% failed.
        let addrs: Vec<String> = (1..=3).map(|i| format!("172.29.249.{}", 10 + i)).collect();
        wait_for(
            "the app answers on two nodes",
            Duration::from_secs(60),
            || addrs.iter().filter(|a| get_metrics(a)).count() == 2,
        );
        let v1 = crate::bin::clusterkit().with_file_name("clusterkit-wg-userspace");
        let v2 = dir.join("clusterkit-wg-userspace-v2");
        let mut bytes = std::fs::read(&v1).unwrap();
        // A second build: the same program with another identity (a trailer
        // the ELF loader ignores): another SHA-256 on every node.
        bytes.extend_from_slice(b"\0clusterkit-wg-userspace build 2\0");
        std::fs::write(&v2, &bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&v2, std::fs::Permissions::from_mode(0o755)).unwrap();
        let v2_hash = sha256_hex(&bytes);
        let v1_hash = sha256_hex(&std::fs::read(&v1).unwrap());
        // `up` does not restart every tunnel at once for a new binary: it says so.
        let up_v2 = crate::bin::run_env(
            None,
            &["up", "--only", "mesh", "-c", cfg],
            &[("CLUSTERKIT_WG_USERSPACE", v2.to_str().unwrap())],
        );
        assert_eq!(up_v2.code, 0, "{}", up_v2.stderr);
        assert!(
            up_v2
                .stderr
                .contains("node2: another userspace wireguard runs: left running"),
            "{}",
            up_v2.stderr
        );
        assert!(up_v2.stdout.contains("nothing changed"), "{}", up_v2.stdout);
        assert_eq!(
            sh(
                "node2",
                "sha256sum /usr/local/bin/clusterkit-wg-userspace | cut -d' ' -f1"
            )
            .trim(),
            v1_hash
        );
        let (roll, ok, failed) = counted(&addrs, || {
            crate::bin::run_env(
                None,
                &["upgrade", "--component", "mesh", "-c", cfg],
                &[("CLUSTERKIT_WG_USERSPACE", v2.to_str().unwrap())],
            )
        });
        eprintln!("during the roll: {ok} requests answered, {failed} failed");
        assert_eq!(roll.code, 0, "{}{}", roll.stdout, roll.stderr);
        // One node at a time, in order: each is back before the next drains.
        let mut at = 0;
        for n in ["node1", "node2", "node3"] {
            at = in_order(
                &roll.stderr,
                at,
                &[format!("{n}: draining"), format!("{n}: back: ready")],
            );
            assert_eq!(
                sh(
                    n,
                    "sha256sum /usr/local/bin/clusterkit-wg-userspace | cut -d' ' -f1"
                )
                .trim(),
                v2_hash,
                "{n}"
            );
        }
        assert!(ok >= 100, "the client ran through the roll: {ok}");
        assert!(
            failed * 100 <= ok + failed,
            "{failed} of {} requests failed during the roll",
            ok + failed
        );
        let st = ck(&["status", "-c", cfg]);
        assert!(
            st.stdout.contains("ok   mesh      6/6 pairs answer"),
            "{}",
            st.stdout
        );
        // Every component current: a re-run is a no-op.
        let nothing_to_upgrade = || {
            let again = crate::bin::run_env(
                None,
                &["upgrade", "-c", cfg],
                &[("CLUSTERKIT_WG_USERSPACE", v2.to_str().unwrap())],
            );
            assert_eq!(again.code, 0, "{}", again.stderr);
            assert!(
                again.stdout.contains("nothing to upgrade"),
                "{}",
                again.stdout
            );
        };
        nothing_to_upgrade();

        // Unset in the config, the engine is pinned at the version the nodes
        // run: held on every node (the replacement too), recorded in the state.
        let state_file = dir.join(".clusterkit/state.toml");
        let v1_engine = sh("node1", "dpkg-query -W -f='${Version}' docker.io");
        for n in ["node1", "node2", "node3"] {
            assert_eq!(
                sh(
                    n,
                    "dpkg-query -W -f='${Version}' docker.io; echo; apt-mark showhold docker.io"
                ),
                format!("{v1_engine}\ndocker.io\n"),
                "{n}: the cluster's engine, held"
            );
        }
        let recorded = |v: &str| {
            let state = std::fs::read_to_string(&state_file).unwrap();
            assert!(
                state.contains(&format!("engine_version = \"{v}\"")),
                "{v} recorded: {state}"
            );
        };
        recorded(&v1_engine);
        let unpinned = ck(&["upgrade", "--component", "docker", "-c", cfg]);
        assert_eq!(unpinned.code, 0, "{}", unpinned.stderr);
        assert!(
            unpinned.stderr.contains(&format!(
                "docker: every node runs docker.io {v1_engine}: nothing to upgrade"
            )),
            "{}",
            unpinned.stderr
        );

        // A rolling upgrade of Docker Engine, a second version of Debian's
        // package: refused while not installable, then rolled while the app
        // keeps answering (the same bound).
        let v2_engine = second_engine_package();
        let pin = |v: &str| {
            std::fs::write(
                &config,
                format!("{text}\n[swarm]\nengine_version = \"{v}\"\n"),
            )
            .unwrap()
        };
        pin("99.0-absent");
        let absent = ck(&["upgrade", "--component", "docker", "-c", cfg]);
        assert_ne!(absent.code, 0);
        assert!(
            absent
                .stderr
                .contains("docker.io 99.0-absent cannot be installed on node1, node2, node3")
                && absent.stderr.contains("nothing was changed"),
            "{}",
            absent.stderr
        );
        assert!(!absent.stderr.contains("draining"), "{}", absent.stderr);
        pin(&v2_engine);
        // `up` never replaces running engines (all at once): it says so.
        let up_pinned = ck(&["up", "-c", cfg]);
        assert_eq!(
            up_pinned.code, 0,
            "{}{}",
            up_pinned.stdout, up_pinned.stderr
        );
        assert!(
            up_pinned.stdout.contains(&format!(
                "docker.io on node1, node2, node3 is not engine_version {v2_engine}: `clusterkit upgrade --component docker` rolls it"
            )) && up_pinned.stdout.contains("nothing changed"),
            "{}",
            up_pinned.stdout
        );
        let pids = |n: &str| sh(n, "pidof dockerd").trim().to_string();
        let before: Vec<String> = ["node1", "node2", "node3"]
            .iter()
            .map(|n| pids(n))
            .collect();
        let (roll, ok, failed) = counted(&addrs, || {
            ck(&["upgrade", "--component", "docker", "-c", cfg])
        });
        eprintln!("during the engine roll: {ok} requests answered, {failed} failed");
        assert_eq!(roll.code, 0, "{}{}", roll.stdout, roll.stderr);
        let mut at = 0;
        for (k, n) in ["node1", "node2", "node3"].into_iter().enumerate() {
            at = in_order(
                &roll.stderr,
                at,
                &[
                    format!("{n}: draining"),
                    format!("{n}: installing docker.io {v2_engine}"),
                    format!("{n}: back: ready"),
                ],
            );
            assert_eq!(
                sh(
                    n,
                    "dpkg-query -W -f='${Version}' docker.io; echo; apt-mark showhold"
                ),
                format!("{v2_engine}\ndocker.io\n"),
                "{n}: the new package, held"
            );
            assert_ne!(pids(n), before[k], "{n}: the engine was restarted");
        }
        assert!(ok >= 100, "the client ran through the engine roll: {ok}");
        assert!(
            failed * 100 <= ok + failed,
            "{failed} of {} requests failed during the engine roll",
            ok + failed
        );
        whole(cfg, "the cluster whole after the engine roll");
        recorded(&v2_engine);
        nothing_to_upgrade();

        // A manager cut off from the others: the roll is refused, nothing changes.
        let cut = ck(&["sandbox", "partition", "--name", S, "node3"]);
        assert_eq!(cut.code, 0, "{}", cut.stderr);
        wait_for(
            "node3 is unreachable for the swarm",
            Duration::from_secs(60),
            || {
                sh(
                    "node1",
                    "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'",
                )
                .contains("node3 Unreachable")
            },
        );
        let refused = ck(&["upgrade", "-c", cfg]);
        assert_ne!(refused.code, 0, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("manager node3 is not reachable")
                && refused.stderr.contains("without a majority"),
            "{}",
            refused.stderr
        );
        assert!(!refused.stderr.contains("draining"), "{}", refused.stderr);
        assert_eq!(
            sh(
                "node1",
                "sha256sum /usr/local/bin/clusterkit-wg-userspace | cut -d' ' -f1"
            )
            .trim(),
            v2_hash
        );
        let healed = ck(&["sandbox", "heal", "--name", S, "node3"]);
        assert_eq!(healed.code, 0, "{}", healed.stderr);
        whole(cfg, "the cluster whole again after the heal");
    });
    let down = ck(&["sandbox", "down", "--name", S]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(down.code, 0, "{}", down.stderr);
}
