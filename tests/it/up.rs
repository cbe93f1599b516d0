//! `clusterkit up`: every phase built so far, in order, idempotent. On a
//! sandbox of its own, so that it starts from bare nodes (without even the
//! storage and monitoring images, which `up` sends from this machine).

use crate::sandbox::ck;

#[test]
fn up_builds_mesh_swarm_storage_and_monitoring_from_bare_nodes_and_a_rerun_changes_nothing() {
    let _one = crate::sandbox::own_cluster();
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
            "--ca",
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let config = dir.join("clusterkit.toml");
        // A dry run on bare nodes lists what `up` would do, and does none of it.
        let dry = ck(&["up", "--dry-run", "-c", config.to_str().unwrap()]);
        assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);
        for line in [
            "mesh       node1: would make a WireGuard key",
            "swarm      node3: would join the swarm on its mesh address (now: inactive)",
            "storage    node1: would write /etc/clusterkit/stacks/clusterkit-storage/docker-compose.yml and deploy",
            "monitoring node1: would write /etc/clusterkit/stacks/clusterkit-monitoring/prometheus.yml and deploy",
            "stacks     node1: would write /etc/clusterkit/stacks/apps/app/docker-compose.yml and deploy",
            "nothing was changed",
        ] {
            assert!(dry.stdout.contains(line), "{line}: {}", dry.stdout);
        }
        assert_eq!(
            node_sh("node1", "ls /etc/wireguard/ 2>/dev/null").trim(),
            "",
            "no key made"
        );
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
                .contains(", monitoring (prometheus, node-exporter, cadvisor, alertmanager;"),
            "{}",
            first.stdout
        );
        for step in [
            "swarm      initialised on node1",
            "storage    clusterkit/garage:2.5.0 missing on node1, node2, node3",
            "storage    layout version 1 applied: 3 node(s), replication 3",
            "storage    healthy on 3 node(s), tolerates 1 loss(es)",
            "monitoring clusterkit/prometheus:sid missing on node1, node2, node3",
            "monitoring deploying stack clusterkit-monitoring (4 service(s))",
            "monitoring prometheus on node",
            "monitoring alertmanager on node",
            "stacks     clusterkit/example-app:bookworm missing on node1, node2, node3",
            "stacks     app: 1 service(s) running",
            "ingress    deploying stack clusterkit-ingress (3 service(s))",
        ] {
            assert!(first.stderr.contains(step), "{step}: {}", first.stderr);
        }
        assert!(
            first.stdout.contains(
                "HTTPS ingress on every node (3 route(s), 3 of 3 host(s) with a certificate)"
            ),
            "{}",
            first.stdout
        );
        crate::up::https_everywhere(S, &dir);
        let again = ck(&["up", "-c", config.to_str().unwrap()]);
        assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
        assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
        for phase in [
            "docker     unchanged in",
            "mesh       unchanged in",
            "swarm      unchanged in",
            "storage    unchanged in",
            "monitoring unchanged in",
            "stacks     app unchanged",
            "stacks     unchanged in",
            "ingress    unchanged in",
        ] {
            assert!(again.stderr.contains(phase), "{phase}: {}", again.stderr);
        }
        let cfg = config.to_str().unwrap();
        // The same no-op run as tools see it: one JSON event per line, a
        // phase_done for every phase, nothing changed; by a clusterkit
        // installed alone (the nodes keep the userspace binary and the volume
        // driver front they run).
        let events_out = crate::bin::run_program(
            crate::bin::clusterkit_alone(),
            None,
            &["up", "--json", "-c", cfg],
            &[],
        );
        assert_eq!(events_out.code, 0, "{}", events_out.stderr);
        let events: Vec<serde_json::Value> = events_out
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        let done: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == "phase_done")
            .map(|e| e["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            done,
            [
                "facts",
                "docker",
                "mesh",
                "swarm",
                "storage",
                "monitoring",
                "stacks",
                "ingress",
                "rebalance"
            ]
        );
        let last = events.last().unwrap();
        assert_eq!(last["event"], "done");
        assert_eq!(last["changed"], false, "{last}");
        // And on a terminal: the table, one row per node, every phase ✓.
        let live = ck(&["up", "--progress", "live", "-c", cfg]);
        assert_eq!(live.code, 0, "{}", live.stderr);
        let frame = live.stderr.rsplit("\x1b[J").next().unwrap();
        assert!(
            frame.contains(
                "node  facts docker mesh swarm storage monitoring stacks ingress rebalance"
            ),
            "{frame}"
        );
        for n in ["node1", "node2", "node3"] {
            let row = frame
                .lines()
                .find(|l| l.starts_with(n))
                .unwrap_or_else(|| panic!("no row for {n}: {frame}"));
            assert_eq!(row.matches('✓').count(), 9, "{row}");
        }
        let dry = ck(&["up", "--dry-run", "-c", cfg]);
        assert_eq!(dry.stdout.trim(), "nothing would change", "{}", dry.stderr);
        // A changed setting shows as a diff of the file it changes.
        let longer = dir.join("longer.toml");
        std::fs::write(
            &longer,
            std::fs::read_to_string(&config)
                .unwrap()
                .replace("[monitoring]\n", "[monitoring]\nretention = \"30d\"\n"),
        )
        .unwrap();
        let dry = ck(&[
            "up",
            "--dry-run",
            "--only",
            "monitoring",
            "-c",
            longer.to_str().unwrap(),
        ]);
        assert!(
            dry.stdout
                .contains("-      - --storage.tsdb.retention.time=15d")
                && dry
                    .stdout
                    .contains("+      - --storage.tsdb.retention.time=30d")
                && dry.stdout.contains(
                    "would update /etc/clusterkit/stacks/clusterkit-monitoring/docker-compose.yml"
                ),
            "{}",
            dry.stdout
        );

        // The example stack is scraped, and `status` says all is well.
        let mut last = String::new();
        let mut json = crate::bin::Output {
            code: -1,
            stdout: String::new(),
            stderr: String::new(),
        };
        // 3 node-exporters, 3 cAdvisors, Prometheus, 3 Garage, 2 app
        // replicas: every one up.
        let took = crate::sandbox::wait_for(
            "status all ok, the app's replicas scraped",
            std::time::Duration::from_secs(150),
            || {
                let st = ck(&["status", "-c", cfg]);
                last = st.stdout.clone();
                json = ck(&["status", "--json", "-c", cfg]);
                let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_default();
                let t = &v["monitoring"];
                st.code == 0 && t["total"].as_u64() >= Some(12) && t["up"] == t["total"]
            },
        );
        eprintln!("status all ok, app scraped, {took:?} after up");
        // Each certificate, asked of every edge in a handshake by the route
        // watcher (every 10 s), is the stored one on all 3.
        crate::sandbox::wait_for(
            "every edge shows every stored certificate",
            std::time::Duration::from_secs(60),
            || {
                last = ck(&["status", "-c", cfg]).stdout;
                last.matches(", on 3 of 3 edges)").count() == 3
            },
        );
        for line in [
            "ok   mesh      6/6 pairs answer",
            "ok   swarm     leader node1, 3 manager(s), quorum 2 held",
            "ok   stack     app: web 2/2",
            "ok   storage   healthy",
            // node-exporter, cAdvisor and Garage on 3 nodes, the app's 2, Prometheus.
            "ok   monitor   12/12 targets up",
            "ok   ingress   https://app.clusterkit.test -> app_web:8000 (certificate until 20",
            "ok   ingress   https://prometheus.clusterkit.test -> clusterkit-monitoring_prometheus:9090 (certificate until 20",
            "ok   ingress   https://alertmanager.clusterkit.test -> clusterkit-monitoring_alertmanager:9093 (certificate until 20",
        ] {
            assert!(last.contains(line), "{line}: {last}");
        }
        // cAdvisor has the series of the example app's two containers.
        let prom = node_sh(
            "node1",
            "docker service ps clusterkit-monitoring_prometheus --filter desired-state=running --format '{{.Node}}' | head -n1",
        );
        let mut answer = String::new();
        crate::sandbox::wait_for(
            "cAdvisor's series of the app's containers",
            std::time::Duration::from_secs(120),
            || {
                answer = node_sh(
                    prom.trim(),
                    "curl -s -G -K /etc/clusterkit/monitoring/api.curl localhost:9090/api/v1/query \
                     --data-urlencode 'query=count(container_memory_usage_bytes{container_label_com_docker_swarm_service_name=\"app_web\"})'",
                );
                answer.contains(r#""value":["#) && answer.contains(r#","2"]"#)
            },
        );

        // The engine's and monitoring's ports answer over the mesh and not on
        // the sandbox's bridge network, including those containers publish
        // (forwarded, not seen by INPUT); the app's own port is the user's.
        let ports = [2377, 7946, 3900, 3901, 3903, 9100, 8080, 9090, 9093];
        let script = |addr: &str| {
            format!(
                "for p in {} 8000; do if timeout 2 bash -c \"</dev/tcp/{addr}/$p\" 2>/dev/null; then echo \"$p open\"; else echo \"$p closed\"; fi; done",
                ports.map(|p| p.to_string()).join(" ")
            )
        };
        let mut open_on_mesh = std::collections::BTreeSet::new();
        let mut app_on_bridge = 0;
        for (from, to) in [("node2", 1), ("node3", 2), ("node1", 3)] {
            let mesh = node_sh(from, &script(&format!("10.0.0.{to}")));
            let bridge = node_sh(from, &script(&format!("172.29.253.{}", 10 + to)));
            for p in ports {
                if mesh.contains(&format!("{p} open")) {
                    open_on_mesh.insert(p);
                }
                assert!(
                    bridge.contains(&format!("{p} closed")),
                    "port {p} of node{to} answers on the bridge network:\n{bridge}"
                );
            }
            app_on_bridge += usize::from(bridge.contains("8000 open"));
        }
        // The probe sees a published port when one is open: the app's two replicas.
        assert_eq!(
            app_on_bridge, 2,
            "the app's port 8000 is published on two nodes"
        );
        assert_eq!(
            open_on_mesh.len(),
            ports.len(),
            "each port answers over the mesh somewhere: {open_on_mesh:?}"
        );

        // HTTPS through the loss of the node that obtained the certificate.
        crate::up::ingress_survives_the_issuers_node(S, &dir);
        // Caddy upgraded node by node, not one request lost.
        crate::up::ingress_upgrade_drops_no_request(&dir);
        // node3 out of the ingress and back.
        crate::up::ingress_on_chosen_nodes(&dir);

        // A stack file `deploy` cannot use is explained before anything runs.
        let bad = dir.join("bad.yml");
        std::fs::write(&bad, "services:\n  web:\n    build: .\n").unwrap();
        let r = ck(&["deploy", "-c", cfg, bad.to_str().unwrap()]);
        assert_ne!(r.code, 0);
        assert!(
            r.stderr
                .contains("bad.yml: line 2: service `web` has `build:`"),
            "{}",
            r.stderr
        );
        let r = ck(&[
            "deploy",
            "-c",
            cfg,
            dir.join("app.yml").to_str().unwrap(),
            "--name",
            "app",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout
                .contains("stack app runs on cluster ck-it-up; nothing changed"),
            "{}",
            r.stdout
        );

        // No secret in anything printed: the mesh's keys, the S3 key, the
        // certificate's private key (read where the issuer keeps it).
        let cert_key = node_sh(
            &issuer_node(),
            "docker exec $(docker ps -q -f label=com.docker.swarm.service.name=clusterkit-ingress_issuer) \
             sh -c 'cat $(find /certs/certificates -name \"*.key\" | head -n 1)' | sed -n 2p",
        );
        let secrets = [
            cert_key.trim().to_string(),
            node_file("node1", "/etc/wireguard/wg0.key"),
            node_file("node2", "/etc/wireguard/wg0.key"),
            node_file("node1", "/etc/clusterkit/storage/s3-key")
                .lines()
                .nth(1)
                .unwrap_or_default()
                .to_string(),
        ];
        for secret in &secrets {
            assert!(secret.len() >= 40, "a secret was read");
            for out in [
                &first.stdout,
                &first.stderr,
                &again.stdout,
                &again.stderr,
                &json.stdout,
                &last,
                &events_out.stdout,
                &live.stderr,
            ] {
                assert!(!out.contains(secret.as_str()), "a secret was printed");
            }
        }

        // `down` asks first; with --yes it takes the cluster apart, data kept.
        let refused = ck(&["down", "-c", cfg]);
        assert_ne!(refused.code, 0);
        assert!(refused.stderr.contains("pass --yes"), "{}", refused.stderr);
        let down = ck(&["down", "--yes", "-c", cfg]);
        assert_eq!(down.code, 0, "{}{}", down.stdout, down.stderr);
        assert!(
            down.stderr.contains(
                "removed app, clusterkit-ingress, clusterkit-monitoring, clusterkit-storage"
            ),
            "{}",
            down.stderr
        );
        for n in ["node1", "node2", "node3"] {
            let state = node_sh(n, "docker info -f '{{.Swarm.LocalNodeState}}'; ip link show wg0 >/dev/null 2>&1 && echo mesh-up; systemctl is-active clusterkit-volumes; test -d /var/lib/clusterkit/storage/meta && echo data-kept");
            assert_eq!(
                state.split_whitespace().collect::<Vec<_>>(),
                ["inactive", "inactive", "data-kept"],
                "{n}: {state}"
            );
        }

        // `up` killed at two points, then run to the end: it converges.
        for secs in [3, 12] {
            let mut child = std::process::Command::new(crate::bin::clusterkit())
                .args(["up", "-c", cfg])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_secs(secs));
            let _ = child.kill();
            let _ = child.wait();
        }
        let back = ck(&["up", "-c", cfg]);
        assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
        assert!(
            back.stdout.starts_with("cluster ck-it-up is up"),
            "{}",
            back.stdout
        );
        let st = ck(&["status", "-c", cfg]);
        assert!(
            st.stdout.contains("ok   storage   healthy"),
            "{}",
            st.stdout
        );

        // --purge deletes the data too.
        let purge = ck(&["down", "--purge", "--yes", "-c", cfg]);
        assert_eq!(purge.code, 0, "{}{}", purge.stdout, purge.stderr);
        for n in ["node1", "node2", "node3"] {
            let left = node_sh(n, "ls -d /var/lib/clusterkit /etc/clusterkit /etc/wireguard/wg0.key 2>/dev/null; docker volume ls -q");
            assert_eq!(left.trim(), "", "{n}");
        }
    });
    let _ = ck(&["sandbox", "down", "--name", S]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn node_sh(node: &str, script: &str) -> String {
    let o = crate::sandbox::docker(&["exec", &format!("ck-it-up-{node}"), "sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A node's address on the test's sandbox network (node N at .10+N).
fn node_ip(node: &str) -> String {
    let n: u8 = node.trim_start_matches("node").parse().expect("nodeN");
    format!("172.29.253.{}", 10 + n)
}

/// The node running the ingress's issuer, as the swarm says.
fn issuer_node() -> String {
    node_sh(
        "node1",
        "docker service ps clusterkit-ingress_issuer --filter desired-state=running --format '{{.Node}}' | head -n1",
    )
    .trim()
    .to_string()
}

fn node_file(node: &str, path: &str) -> String {
    node_sh(node, &format!("cat {path}")).trim().to_string()
}

/// The README's promise for `up --sandbox`: `https://app.clusterkit.test`
/// through **each** node, from this machine, with the same certificate
/// issued by the sandbox's Pebble (trusted through its root, nothing
/// skipped), HSTS on, plain HTTP redirected; Pebble saw one order.
pub fn https_everywhere(sandbox: &str, dir: &std::path::Path) {
    let ca = crate::sandbox::docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &format!("{sandbox}-ca"),
    ]);
    let ca = String::from_utf8_lossy(&ca.stdout).trim().to_string();
    assert!(!ca.is_empty(), "the sandbox's CA runs");
    // Pebble's issuing root, from its management port (its API's own root
    // is the sandbox's file: nothing is fetched unchecked).
    let roots = dir.join("pebble-roots.pem");
    let got = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(dir.join("pebble-api-root.pem"))
        .arg(format!("https://{ca}:15000/roots/0"))
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    std::fs::write(&roots, &got.stdout).unwrap();
    let names = ["node1", "node2", "node3"];
    let nodes = names.map(node_ip);
    let mut serials = Vec::new();
    for (n, ip) in names.iter().zip(&nodes) {
        // The edges pull their configuration every few seconds: the one
        // with the certificate may be a moment behind `up`'s last word.
        let mut last = String::new();
        let mut served = None;
        for _ in 0..20 {
            let o = std::process::Command::new("curl")
                .args(["-sS", "-i", "--max-time", "5", "--cacert"])
                .arg(&roots)
                .args(["--resolve", &format!("app.clusterkit.test:443:{ip}")])
                .arg("https://app.clusterkit.test/")
                .output()
                .unwrap();
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            if o.status.success()
                && (last.starts_with("HTTP/2 200") || last.starts_with("HTTP/1.1 200"))
            {
                served = Some(last.clone());
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        let served = served.unwrap_or_else(|| {
            // What the node's edge says of its configuration loads.
            let logs = node_sh(
                n,
                "docker logs --tail 400 $(docker ps -q -f name=clusterkit-ingress_edge) 2>&1 | grep -v '\"level\":\"debug\"' | grep -v 'config was unchanged' | tail -n 30",
            );
            panic!("https://app.clusterkit.test through {ip}: {last}\n{n}'s edge:\n{logs}")
        });
        assert!(
            served
                .to_lowercase()
                .contains("strict-transport-security: max-age=31536000"),
            "{served}"
        );
        assert!(served.contains("hello from "), "{served}");
        // The certificate served: its serial and issuer.
        let cert = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {ip}:443 -servername app.clusterkit.test </dev/null 2>/dev/null \
                 | openssl x509 -noout -serial -issuer"
            ))
            .output()
            .unwrap();
        let cert = String::from_utf8_lossy(&cert.stdout).to_string();
        assert!(cert.contains("serial="), "{cert}");
        assert!(cert.to_lowercase().contains("pebble"), "{cert}");
        serials.push(cert.lines().next().unwrap().to_string());
        // Plain HTTP: a permanent redirect to the same URL over HTTPS.
        let http = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(["--resolve", &format!("app.clusterkit.test:80:{ip}")])
            .arg("http://app.clusterkit.test/a/b?c=d")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&http.stdout),
            "308 https://app.clusterkit.test/a/b?c=d"
        );
    }
    serials.dedup();
    assert_eq!(
        serials.len(),
        1,
        "one certificate on every node: {serials:?}"
    );
    let log = crate::sandbox::docker(&["logs", &format!("{sandbox}-ca")]);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&log.stdout),
        String::from_utf8_lossy(&log.stderr)
    );
    // One order per name for the cluster: the app, Prometheus, Alertmanager.
    assert_eq!(
        log.matches("Issued certificate serial").count(),
        3,
        "one order per name for the cluster: {log}"
    );
    monitoring_by_name(&roots, &nodes, dir);
}

/// Prometheus and Alertmanager at their names (`prometheus_host`,
/// `alertmanager_host`) through any node, over HTTPS with Pebble's
/// certificate: refused without the monitoring API's user, answering with
/// it. Alertmanager's answer proves the edges reach its own overlay, which
/// no application shares.
fn monitoring_by_name(roots: &std::path::Path, nodes: &[String], dir: &std::path::Path) {
    let cfg = dir.join("clusterkit.toml");
    let pw = crate::sandbox::ck(&["monitor", "password", "--api", "-c", cfg.to_str().unwrap()]);
    assert_eq!(pw.code, 0, "{}", pw.stderr);
    let pw = pw
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(pw.len() >= 16, "the API password: {pw:?}");
    let status = |host: &str, ip: &str, user: Option<&str>| -> String {
        let mut c = std::process::Command::new("curl");
        c.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(roots)
        .args(["--resolve", &format!("{host}:443:{ip}")]);
        if let Some(u) = user {
            // On stdin, never in a command line.
            c.args(["--config", "-"])
                .stdin(std::process::Stdio::piped());
            let mut child = c
                .arg(format!("https://{host}/-/ready"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            writeln!(child.stdin.take().unwrap(), "user = \"{u}\"").unwrap();
            let o = child.wait_with_output().unwrap();
            return format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let o = c.arg(format!("https://{host}/-/ready")).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let user = format!("clusterkit:{pw}");
    for host in ["prometheus.clusterkit.test", "alertmanager.clusterkit.test"] {
        for ip in nodes {
            crate::sandbox::wait_for(
                &format!("https://{host} through {ip} with the API user"),
                std::time::Duration::from_secs(60),
                || status(host, ip, Some(&user)) == "200",
            );
            assert_eq!(
                status(host, ip, None),
                "401",
                "{host} through {ip} without the user"
            );
            let wrong = status(host, ip, Some("clusterkit:not-the-password"));
            assert_eq!(wrong, "401", "{host} through {ip} with a wrong password");
        }
    }
}

/// One request to `https://HOST/`, resolved to the addresses of `order`
/// in turn as curl does with several (the next one when one does not
/// answer): its time when answered 200, else what happened.
fn https_get(roots: &std::path::Path, host: &str, order: &[String]) -> Result<f64, String> {
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{remote_ip} %{time_total}s",
        ])
        // A dead node's address stalls a connection for about 3 s (the
        // kernel's ARP retries) before the client tries the next one.
        .args(["--connect-timeout", "10", "--max-time", "15", "--cacert"])
        .arg(roots)
        .args(["--resolve", &format!("{host}:443:{}", order.join(","))])
        .arg(format!("https://{host}/"))
        .output()
        .unwrap();
    let w = String::from_utf8_lossy(&o.stdout).to_string();
    match w.strip_prefix("200 ") {
        Some(rest) => Ok(rest
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.trim_end_matches('s').parse().ok())
            .unwrap_or(0.0)),
        None => Err(format!(
            "{w} (curl exit {:?}, order {order:?})",
            o.status.code()
        )),
    }
}

/// What a client asking every 50 ms saw.
struct Counted {
    /// Requests sent.
    asked: usize,
    /// The failed ones: when, and what happened.
    failed: Vec<String>,
    /// The answered ones' times, sorted.
    times: Vec<f64>,
    /// How long it asked.
    seconds: f64,
}

impl Counted {
    fn answered(&self) -> usize {
        self.asked - self.failed.len()
    }

    /// The time at quantile `q` of the answered requests.
    fn at(&self, q: f64) -> f64 {
        self.times[((self.times.len() - 1) as f64 * q) as usize]
    }
}

/// Runs `during` while a client sends a request to
/// `https://app.clusterkit.test` every 50 ms, resolving it to every node of
/// `nodes` in turn (first one node, then the next), as round-robin DNS
/// would; the client stops when `during` returns or fails.
fn counting_requests(roots: &std::path::Path, nodes: &[String], during: impl FnOnce()) -> Counted {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let (failed, asked, mut times) = std::thread::scope(|s| {
        let client = s.spawn(|| {
            let mut failed = Vec::new();
            let mut times = Vec::new();
            let mut asked = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut order = nodes.to_vec();
                order.rotate_left(asked % nodes.len());
                asked += 1;
                match https_get(roots, "app.clusterkit.test", &order) {
                    Ok(t) => times.push(t),
                    Err(why) => failed.push(format!(
                        "at {:.1} s: {why}",
                        started.elapsed().as_secs_f64()
                    )),
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            (failed, asked, times)
        });
        // The client stops whatever happens below: a failed wait must not
        // leave the scope waiting for it forever.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stopping = Stop(&stop);
        std::thread::sleep(std::time::Duration::from_secs(3));
        during();
        drop(stopping);
        client.join().unwrap()
    });
    times.sort_by(f64::total_cmp);
    Counted {
        asked,
        failed,
        times,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The node running the ingress's issuer (the one that obtained the
/// certificate) is powered off while a client sends a request every 50 ms
/// to `https://app.clusterkit.test`, resolving it to every node in turn as
/// round-robin DNS would (curl tries the next address when one does not
/// answer): at least 99 % are answered, counted. Meanwhile a stack deployed
/// with a plain `docker stack deploy` asks for a new name: it is routed and
/// gets its certificate from the issuer the swarm started elsewhere. The
/// node is powered back on and the extra stack removed before returning.
pub fn ingress_survives_the_issuers_node(sandbox: &'static str, dir: &std::path::Path) {
    let roots = dir.join("pebble-roots.pem");
    let nodes: Vec<String> = ["node1", "node2", "node3"].map(node_ip).to_vec();
    let issuer_on = issuer_node();
    assert!(
        issuer_on.starts_with("node"),
        "the issuer runs: {issuer_on}"
    );
    let survivor = if issuer_on == "node1" {
        "node2"
    } else {
        "node1"
    };
    let survivor_ip = node_ip(survivor);
    let get = |host: &str, order: &[String]| https_get(&roots, host, order);
    let c = counting_requests(&roots, &nodes, || {
        let started = std::time::Instant::now();
        let _back = crate::sandbox::PowerBack::of(sandbox, [issuer_on.clone()]);
        let off = crate::sandbox::ck(&["sandbox", "stop", "--name", sandbox, &issuer_on]);
        assert_eq!(off.code, 0, "{}", off.stderr);
        let off_at = started.elapsed();
        // A new route, deployed the plain way while the node is off.
        let app2 = std::fs::read_to_string(dir.join("app.yml"))
            .unwrap()
            .replace("app.clusterkit.test", "new.clusterkit.test")
            .replace("published: 8000", "published: 8001");
        let deployed = node_sh(
            survivor,
            &format!(
                "cat > /tmp/app2.yml <<'EOF'\n{app2}EOF\n\
                 docker stack deploy --resolve-image never -c /tmp/app2.yml app2 2>&1 && echo deployed"
            ),
        );
        assert!(deployed.contains("deployed"), "{deployed}");
        let took = crate::sandbox::wait_for(
            "https://new.clusterkit.test with its certificate, the issuer's node off",
            std::time::Duration::from_secs(240),
            || get("new.clusterkit.test", std::slice::from_ref(&survivor_ip)).is_ok(),
        );
        eprintln!("a new route served over HTTPS {took:?} after its deploy, the issuer's node off");
        // At least 30 s with the node off, then back, the client asking throughout.
        if let Some(rest) =
            std::time::Duration::from_secs(30).checked_sub(started.elapsed() - off_at)
        {
            std::thread::sleep(rest);
        }
        let on = crate::sandbox::ck(&["sandbox", "start", "--name", sandbox, &issuer_on]);
        assert_eq!(on.code, 0, "{}", on.stderr);
        crate::sandbox::wait_for(
            "every node Ready again",
            std::time::Duration::from_secs(180),
            || {
                let ls = node_sh(survivor, "docker node ls --format '{{.Status}}'");
                ls.lines().filter(|l| l.trim() == "Ready").count() == 3
            },
        );
        // Its edge back too.
        crate::sandbox::wait_for(
            "the edge serving again on the node back",
            std::time::Duration::from_secs(120),
            || get("app.clusterkit.test", &[node_ip(&issuer_on)]).is_ok(),
        );
    });
    eprintln!(
        "{} of {} requests answered while {issuer_on} (the issuer's node) was off and back, in {:.0} s; \
         answered in {:.3} s (median), {:.3} s (p99), {:.3} s (slowest: a dead address tried first)",
        c.answered(),
        c.asked,
        c.seconds,
        c.at(0.5),
        c.at(0.99),
        c.at(1.0)
    );
    assert!(c.asked >= 100, "the client asked {} times", c.asked);
    assert!(
        c.answered() * 100 >= c.asked * 99,
        "{} of {} answered, fewer than 99 %; the others:\n{}",
        c.answered(),
        c.asked,
        c.failed.join("\n")
    );
    node_sh(survivor, "docker stack rm app2 >/dev/null");
}

/// `upgrade --component ingress` to another Caddy image (the same program
/// under a new name, tagged on each node) while a client sends a request
/// every 50 ms resolving the name to every node: the edges are replaced
/// node by node and not one request fails. The edges and the issuer run
/// the new image afterwards.
pub fn ingress_upgrade_drops_no_request(dir: &std::path::Path) {
    let roots = dir.join("pebble-roots.pem");
    let nodes: Vec<String> = ["node1", "node2", "node3"].map(node_ip).to_vec();
    let old = "clusterkit/caddy:sid";
    let new = "clusterkit/caddy:sid-next";
    for n in ["node1", "node2", "node3"] {
        node_sh(n, &format!("docker tag {old} {new}"));
    }
    let cfg = std::fs::read_to_string(dir.join("clusterkit.toml")).unwrap();
    // `image`, not `routes_image`: the route watcher's image stays.
    let line = format!("\nimage = \"{old}\"\n");
    assert_eq!(cfg.matches(&line).count(), 1, "one Caddy image line: {cfg}");
    let next = dir.join("next.toml");
    std::fs::write(&next, cfg.replace(&line, &format!("\nimage = \"{new}\"\n"))).unwrap();
    let next = next.to_str().unwrap().to_string();
    let mut out = None;
    let c = counting_requests(&roots, &nodes, || {
        out = Some(crate::sandbox::ck(&[
            "upgrade",
            "--component",
            "ingress",
            "-c",
            &next,
        ]));
    });
    let out = out.unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("ingress upgraded on 2 service(s), one task at a time"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(&format!("edge: {old} → {new}")),
        "{}",
        out.stderr
    );
    eprintln!(
        "{} of {} requests answered while the ingress was upgraded, in {:.0} s; {:.3} s (median), {:.3} s (p99)",
        c.answered(),
        c.asked,
        c.seconds,
        c.at(0.5),
        c.at(0.99)
    );
    assert!(c.asked >= 100, "the client asked {} times", c.asked);
    assert!(
        c.failed.is_empty(),
        "{} of {} failed during the upgrade:\n{}",
        c.failed.len(),
        c.asked,
        c.failed.join("\n")
    );
    for svc in ["edge", "issuer"] {
        let image = node_sh(
            "node1",
            &format!(
                "docker service inspect -f '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' clusterkit-ingress_{svc}"
            ),
        );
        assert!(image.trim().starts_with(new), "{svc}: {image}");
    }
    // Run again: nothing to roll.
    let again = crate::sandbox::ck(&["upgrade", "--component", "ingress", "-c", &next]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("nothing to upgrade"),
        "{}",
        again.stdout
    );
}

/// node3 no longer serves the ingress (`clusterkit_ingress=false` in the
/// inventory): after `up`, nothing answers on its port 443 while node1 and
/// node2 serve the app, and its swarm label says so; given back, it serves
/// again.
pub fn ingress_on_chosen_nodes(dir: &std::path::Path) {
    let roots = dir.join("pebble-roots.pem");
    let hosts = std::fs::read_to_string(dir.join("hosts.ini")).unwrap();
    let node3 = node_ip("node3");
    let line = format!("node3 ansible_host={node3}\n");
    assert!(hosts.contains(&line), "{hosts}");
    std::fs::write(
        dir.join("hosts-two.ini"),
        hosts.replace(
            &line,
            &format!("node3 ansible_host={node3} clusterkit_ingress=false\n"),
        ),
    )
    .unwrap();
    // On the configuration the cluster runs now (the upgraded Caddy).
    let next = std::fs::read_to_string(dir.join("next.toml")).unwrap();
    assert!(next.contains("inventory = \"hosts.ini\""), "{next}");
    let two = dir.join("two.toml");
    std::fs::write(
        &two,
        next.replace("inventory = \"hosts.ini\"", "inventory = \"hosts-two.ini\""),
    )
    .unwrap();
    let up = crate::sandbox::ck(&["up", "-c", two.to_str().unwrap()]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    assert!(
        up.stdout.contains("HTTPS ingress on node1, node2 ("),
        "{}",
        up.stdout
    );
    let label = node_sh(
        "node1",
        "docker node inspect -f '{{index .Spec.Labels \"clusterkit.ingress\"}}' node3",
    );
    assert_eq!(label.trim(), "false");
    crate::sandbox::wait_for(
        "node3's edge gone",
        std::time::Duration::from_secs(60),
        || https_get(&roots, "app.clusterkit.test", std::slice::from_ref(&node3)).is_err(),
    );
    for n in ["node1", "node2"] {
        let ip = node_ip(n);
        https_get(&roots, "app.clusterkit.test", std::slice::from_ref(&ip))
            .unwrap_or_else(|e| panic!("{n} serves no more: {e}"));
    }
    // Given back.
    let back = crate::sandbox::ck(&["up", "-c", dir.join("next.toml").to_str().unwrap()]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert!(
        back.stdout.contains("HTTPS ingress on every node ("),
        "{}",
        back.stdout
    );
    crate::sandbox::wait_for(
        "node3's edge back",
        std::time::Duration::from_secs(90),
        || https_get(&roots, "app.clusterkit.test", std::slice::from_ref(&node3)).is_ok(),
    );
}
