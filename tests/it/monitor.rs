//! Monitoring: the generated Prometheus and Alertmanager configurations and
//! rules pass Prometheus's own checkers (images built from Debian's
//! packages); on the shared sandbox, Prometheus
//! finds every node-exporter and a labelled service, every rule's and
//! dashboard's expression runs, and an alert reaches Alertmanager.

use std::time::Duration;

use crate::bin::{run, Scratch};
use crate::sandbox::{calm, ck, config, docker, shared, wait_for, NAME};

#[test]
fn generated_config_and_rules_pass_promtool() {
    let built = crate::sandbox::build_images();
    assert_eq!(built.code, 0, "{}", built.stderr);
    let inventory =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hosts.ini"))
            .unwrap();
    let scratch = Scratch::new(&[("hosts.ini", &inventory)]);
    let out_dir = scratch.path().join("monitoring");
    let r = run(
        Some(scratch.path()),
        &[
            "monitor",
            "render",
            "-i",
            "hosts.ini",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let mount = |f: &str| format!("{}:/etc/prometheus/{f}:ro", out_dir.join(f).display());
    // Prometheus 3 (the sandbox's and the default image's family) and the
    // previous 2.42 a rolling upgrade starts from both take them.
    for image in [
        "clusterkit/prometheus:sid",
        "clusterkit/prometheus:bookworm",
    ] {
        let check = docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "promtool",
            "-v",
            &mount("prometheus.yml"),
            "-v",
            &mount("rules.yml"),
            image,
            "check",
            "config",
            "/etc/prometheus/prometheus.yml",
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(check.status.success(), "{image}: {text}");
        assert!(
            text.contains("is valid prometheus config file syntax"),
            "{image}: {text}"
        );
        assert!(text.contains("SUCCESS: 9 rules found"), "{image}: {text}");
    }

    // Alertmanager's configuration, with its own checker.
    std::fs::write(
        scratch.path().join("clusterkit.toml"),
        "name = \"x\"\ninventory = \"hosts.ini\"\n[monitoring]\nalertmanager = true\n",
    )
    .unwrap();
    let am_dir = scratch.path().join("am");
    let r = run(
        Some(scratch.path()),
        &[
            "monitor",
            "render",
            "-c",
            "clusterkit.toml",
            "--out",
            am_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let check = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "amtool",
        "-v",
        &format!(
            "{}:/etc/alertmanager.yml:ro",
            am_dir.join("alertmanager.yml").display()
        ),
        "clusterkit/alertmanager:trixie",
        "check-config",
        "/etc/alertmanager.yml",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

fn exec(node: &str, script: &str) -> String {
    let o = docker(&["exec", &format!("{NAME}-{node}"), "sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asks the Prometheus API on the node running it.
fn api(node: &str, path: &str) -> serde_json::Value {
    let body = exec(
        node,
        &format!("curl -sf -K /etc/clusterkit/monitoring/api.curl 'http://localhost:9090{path}'"),
    );
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// The `label` of every healthy target of `job`.
fn up_targets(node: &str, job: &str, label: &str) -> Vec<String> {
    let v = api(node, "/api/v1/targets?state=active");
    v["data"]["activeTargets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["labels"]["job"] == job && t["health"] == "up")
                .map(|t| t["labels"][label].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Taken by the tests that read or change the monitoring stack of the
/// shared sandbox: the roll removes Prometheus for a while, which the
/// memory test beside it would count.
fn monitoring_alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn prometheus_discovers_every_node_and_a_labelled_service() {
    shared();
    // Calm first: a disruptive test may not break the swarm after it is converged.
    let _g = calm();
    let _m = monitoring_alone();
    crate::swarm::swarm_up();
    let built = crate::sandbox::build_images();
    assert_eq!(built.code, 0, "{}", built.stderr);
    // The images come from this machine's engine (`monitor up` sends them).
    let first = ck(&["monitor", "up", "-c", &config()]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(
        first.stderr.contains("sending it from this machine")
            || first.stderr.contains("monitoring unchanged")
            || first.stderr.contains("deploying stack"),
        "{}",
        first.stderr
    );
    let again = ck(&["monitor", "up", "-c", &config()]);
    assert!(
        again.stderr.contains("monitoring unchanged"),
        "{}",
        again.stderr
    );
    // The data volumes are local to the node running the service (the
    // default: see the README on Prometheus's TSDB and S3-backed volumes).
    for svc in ["prometheus", "alertmanager"] {
        let drivers = exec(
            "node1",
            &format!("docker service inspect -f '{{{{range .Spec.TaskTemplate.ContainerSpec.Mounts}}}}{{{{if .VolumeOptions}}}}{{{{.VolumeOptions.DriverConfig.Name}}}} {{{{end}}}}{{{{end}}}}' clusterkit-monitoring_{svc}"),
        );
        assert_eq!(drivers.trim(), "local", "{svc}");
    }

    let mut prom = String::new();
    wait_for("prometheus runs", Duration::from_secs(90), || {
        prom = exec(
            "node1",
            "docker service ps clusterkit-monitoring_prometheus --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' | grep Running | cut -d' ' -f1 | head -n1",
        )
        .trim()
        .to_string();
        !prom.is_empty()
            && exec(
                &prom,
                "curl -sf -K /etc/clusterkit/monitoring/api.curl localhost:9090/-/ready",
            )
            .contains("Ready")
    });
    let took = wait_for(
        "every node-exporter is an up target",
        Duration::from_secs(120),
        || {
            let mut nodes = up_targets(&prom, "node", "node");
            nodes.sort();
            nodes == ["node1", "node2", "node3"]
        },
    );
    eprintln!("3 node-exporters up in Prometheus {took:?} after it was ready");
    // Each listens on its node's mesh address only, not on every address.
    for i in 1..=3 {
        let listening = exec(
            &format!("node{i}"),
            "ss -Hltn 'sport = :9100' | awk '{print $4}'",
        );
        assert_eq!(listening.trim(), format!("10.0.0.{i}:9100"), "node{i}");
    }

    // A service with the scrape labels is found with no change to the config.
    // Served as `text/plain` (a `.txt` file): Prometheus 3 refuses a scrape
    // whose Content-Type is no metrics format, which Prometheus 2 took
    // (python's server says `application/octet-stream` of a bare name).
    crate::swarm::web_image();
    let _ = exec("node1", "docker service rm ck-metrics >/dev/null 2>&1");
    let created = exec(
        "node1",
        "docker service create -d --name ck-metrics --network clusterkit \
         --label prometheus.io/scrape=true --label prometheus.io/port=8000 --label prometheus.io/path=/metrics.txt \
         ck/py:1 sh -c 'mkdir -p /srv && printf \"ck_test_up 1\\n\" > /srv/metrics.txt && cd /srv && exec python3 -m http.server 8000' && echo created",
    );
    assert!(created.contains("created"), "{created}");
    let took = wait_for(
        "the labelled service is an up target",
        Duration::from_secs(120),
        || {
            up_targets(&prom, "services", "service")
                .iter()
                .any(|s| s == "ck-metrics")
        },
    );
    eprintln!("labelled service up in Prometheus after {took:?}");
    let v = api(&prom, "/api/v1/query?query=ck_test_up");
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");

    // cAdvisor (bullseye's package, 0.38) on every node, an up target each;
    // the labelled service's container has its series, labelled with the
    // swarm's own labels only (the stack's --whitelisted_container_labels).
    let took = wait_for(
        "every cAdvisor is an up target",
        Duration::from_secs(120),
        || {
            let mut nodes = up_targets(&prom, "cadvisor", "node");
            nodes.sort();
            nodes == ["node1", "node2", "node3"]
        },
    );
    eprintln!("3 cAdvisors up in Prometheus after {took:?}");
    let query = |e: &str| -> Vec<serde_json::Value> {
        let q = exec(
            &prom,
            &format!("curl -s -G -K /etc/clusterkit/monitoring/api.curl localhost:9090/api/v1/query --data-urlencode 'query={e}'"),
        );
        let v: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let mut series = Vec::new();
    wait_for(
        "cAdvisor's series of the labelled service's container",
        Duration::from_secs(120),
        || {
            series = query(
                "container_memory_usage_bytes{container_label_com_docker_swarm_service_name=\"ck-metrics\"}",
            );
            !series.is_empty()
        },
    );
    let allowed = [
        "container_label_com_docker_swarm_service_name",
        "container_label_com_docker_swarm_task_name",
        "container_label_com_docker_stack_namespace",
    ];
    for s in &series {
        for label in s["metric"].as_object().unwrap().keys() {
            assert!(
                !label.starts_with("container_label_") || allowed.contains(&label.as_str()),
                "{label}: {s}"
            );
        }
    }

    // An application container on the same overlay can neither read nor
    // delete Prometheus's series (it asks for the monitoring API's password,
    // which clusterkit's own questions above had) nor silence Alertmanager
    // (on the monitoring stack's own overlay: not even its name resolves).
    let _ = exec("node1", "docker service rm ck-probe >/dev/null 2>&1");
    let probe = exec(
        "node1",
        "docker service create -d --quiet --name ck-probe --network clusterkit --mode replicated-job \
         --restart-condition none ck/py:1 python3 -c \"import base64; exec(base64.b64decode('aW1wb3J0IHVybGxpYi5yZXF1ZXN0IGFzIHUsIHVybGxpYi5lcnJvciBhcyBlCmRlZiBjb2RlKG1ldGhvZCwgdXJsLCBib2R5PU5vbmUpOgogICAgdHJ5OgogICAgICAgIHIgPSB1LnVybG9wZW4odS5SZXF1ZXN0KHVybCwgZGF0YT1ib2R5LCBtZXRob2Q9bWV0aG9kLCBoZWFkZXJzPXsiQ29udGVudC1UeXBlIjogImFwcGxpY2F0aW9uL2pzb24ifSksIHRpbWVvdXQ9MTApCiAgICAgICAgcmV0dXJuIHIuc3RhdHVzCiAgICBleGNlcHQgZS5IVFRQRXJyb3IgYXMgeDoKICAgICAgICByZXR1cm4geC5jb2RlCiAgICBleGNlcHQgRXhjZXB0aW9uIGFzIHg6CiAgICAgICAgcmV0dXJuIHR5cGUoeCkuX19uYW1lX18KcHJpbnQoInF1ZXJ5IiwgY29kZSgiR0VUIiwgImh0dHA6Ly90YXNrcy5wcm9tZXRoZXVzOjkwOTAvYXBpL3YxL3F1ZXJ5P3F1ZXJ5PXVwIikpCnByaW50KCJkZWxldGUiLCBjb2RlKCJQT1NUIiwgImh0dHA6Ly90YXNrcy5wcm9tZXRoZXVzOjkwOTAvYXBpL3YxL2FkbWluL3RzZGIvZGVsZXRlX3Nlcmllcz9tYXRjaFtdPXVwIiwgYiIiKSkKcHJpbnQoInNpbGVuY2UiLCBjb2RlKCJQT1NUIiwgImh0dHA6Ly90YXNrcy5hbGVydG1hbmFnZXI6OTA5My9hcGkvdjIvc2lsZW5jZXMiLCBiJ3sibWF0Y2hlcnMiOlt7Im5hbWUiOiJhbGVydG5hbWUiLCJ2YWx1ZSI6IldhdGNoZG9nIiwiaXNSZWdleCI6ZmFsc2V9XSwic3RhcnRzQXQiOiIyMDIwLTAxLTAxVDAwOjAwOjAwWiIsImVuZHNBdCI6IjIwOTktMDEtMDFUMDA6MDA6MDBaIiwiY3JlYXRlZEJ5IjoiYXBwIiwiY29tbWVudCI6ImFwcCJ9JykpCnByaW50KCJkb25lIikK'))\" >/dev/null && echo created",
    );
    assert!(probe.contains("created"), "{probe}");
    let mut said = String::new();
    wait_for("the probe's answers", Duration::from_secs(120), || {
        said = exec("node1", "docker service logs --raw ck-probe 2>/dev/null");
        said.contains("done")
    });
    let _ = exec("node1", "docker service rm ck-probe >/dev/null 2>&1");
    assert_eq!(
        said.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        ["query 401", "delete 401", "silence URLError", "done"],
        "{said}"
    );
    let pw = exec(&prom, "cat /etc/clusterkit/monitoring/api-password");
    let shown = ck(&["monitor", "password", "--api", "-c", &config()]);
    assert_eq!(shown.stdout.trim(), pw.trim());
    assert_eq!(
        exec(&prom, "stat -c %a /etc/clusterkit/monitoring/api-password /etc/clusterkit/monitoring/api.curl"),
        "600\n600\n"
    );
    for out in [&first.stdout, &first.stderr, &again.stdout, &again.stderr] {
        assert!(
            !out.contains(pw.trim()),
            "the monitoring API's password was printed"
        );
    }

    // Every rule's expression runs; the node ones return series.
    // The files `monitor up` deployed, from the manager it deployed from.
    let rules = exec(
        "node1",
        "cat /etc/clusterkit/stacks/clusterkit-monitoring/rules.yml",
    );
    let exprs: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .collect();
    assert!(exprs.len() >= 6, "{rules}");
    for e in exprs {
        let q = exec(
            &prom,
            &format!("curl -s -G -K /etc/clusterkit/monitoring/api.curl localhost:9090/api/v1/query --data-urlencode 'query={e}'"),
        );
        let v: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
        assert_eq!(v["status"], "success", "{e}: {q}");
    }
    for series in [
        "up{job=\"node\"}",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes{mountpoint=\"/\"}",
    ] {
        let q = exec(
            &prom,
            &format!("curl -s -G -K /etc/clusterkit/monitoring/api.curl localhost:9090/api/v1/query --data-urlencode 'query={series}'"),
        );
        let v: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
        assert_eq!(
            v["data"]["result"].as_array().map(Vec::len),
            Some(3),
            "{series}: {q}"
        );
    }
    // Watchdog, always firing, reaches Alertmanager: the whole alert path
    // works. Two Alertmanagers on two nodes, one gossip cluster: Prometheus
    // sends to both, and each knows the other (silences shared, one notifies).
    let took = wait_for(
        "Prometheus knows both Alertmanagers",
        Duration::from_secs(90),
        || {
            api(&prom, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        },
    );
    eprintln!("Alertmanagers discovered after {took:?}");
    let ams: Vec<String> = exec(
        "node1",
        "docker service ps clusterkit-monitoring_alertmanager --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' | grep Running | cut -d' ' -f1",
    )
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(ams.len(), 2, "two alertmanagers run: {ams:?}");
    assert_ne!(ams[0], ams[1], "on two nodes: {ams:?}");
    for am in &ams {
        let took = wait_for(
            &format!("Watchdog reaches the Alertmanager on {am}, in a cluster of 2"),
            Duration::from_secs(120),
            || {
                let status: serde_json::Value = serde_json::from_str(&exec(
                    am,
                    "curl -sf -K /etc/clusterkit/monitoring/api.curl localhost:9093/api/v2/status",
                ))
                .unwrap_or_default();
                status["cluster"]["status"] == "ready"
                    && status["cluster"]["peers"]
                        .as_array()
                        .is_some_and(|p| p.len() == 2)
                    && exec(am, "curl -sf -K /etc/clusterkit/monitoring/api.curl localhost:9093/api/v2/alerts")
                        .contains("\"alertname\":\"Watchdog\"")
            },
        );
        eprintln!("Watchdog in the Alertmanager on {am} (cluster of 2) after {took:?}");
    }

    // Every dashboard's expression runs too (Grafana's own image cannot be
    // fetched here: its files are checked by the unit tests).
    // Rendered with Grafana on (the sandbox's config has it off: no image).
    let with_grafana = std::fs::read_to_string(config())
        .unwrap()
        .replace("grafana = false", "grafana = true");
    let scratch = Scratch::new(&[("clusterkit.toml", &with_grafana)]);
    for f in ["hosts.ini", "app.yml"] {
        let from = std::path::Path::new(&config()).with_file_name(f);
        std::fs::copy(&from, scratch.path().join(f)).unwrap();
    }
    let r = ck(&[
        "monitor",
        "render",
        "-c",
        scratch.path().join("clusterkit.toml").to_str().unwrap(),
        "--out",
        scratch.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The Containers dashboard (cAdvisor's series) shows data: its rates need
    // two samples of each container.
    let containers: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            scratch
                .path()
                .join("out/dashboard-clusterkit-containers.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for panel in containers["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            wait_for(
                &format!("data for the Containers dashboard's {:?}", panel["title"]),
                Duration::from_secs(180),
                || {
                    query(e).iter().any(|s| {
                        s["metric"]["container_label_com_docker_swarm_service_name"] == "ck-metrics"
                    })
                },
            );
        }
    }
    // What cAdvisor costs a node, as it measures itself (the README's budget).
    let cadvisor =
        "container_label_com_docker_swarm_service_name=\"clusterkit-monitoring_cadvisor\"";
    let worst = |e: &str| {
        query(e)
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .fold(0.0, f64::max)
    };
    let memory =
        worst(&format!("container_memory_working_set_bytes{{{cadvisor}}}")) / (1u64 << 20) as f64;
    let cpu = worst(&format!(
        "rate(container_cpu_usage_seconds_total{{{cadvisor}}}[2m])"
    ));
    eprintln!("cAdvisor per node, the most of 3: {memory:.0} MiB working set, {cpu:.3} CPU");
    assert!(memory > 0.0 && memory < 64.0, "{memory} MiB");
    assert!(cpu < 0.05, "{cpu} CPU");
    let mut dashboards = 0;
    for entry in std::fs::read_dir(scratch.path().join("out")).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("dashboard-")
        {
            continue;
        }
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        dashboards += 1;
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let e = t["expr"].as_str().unwrap();
                let q = exec(
                    &prom,
                    &format!("curl -s -G -K /etc/clusterkit/monitoring/api.curl localhost:9090/api/v1/query --data-urlencode 'query={e}'"),
                );
                let v: serde_json::Value = serde_json::from_str(&q).unwrap_or_default();
                assert_eq!(v["status"], "success", "{}: {e}: {q}", d["title"]);
            }
        }
    }
    assert_eq!(dashboards, 5);
    let _ = exec("node1", "docker service rm ck-metrics >/dev/null 2>&1");

    // `monitor open` prints the ssh command and, with --forward, holds the
    // forwards through clusterkit's own connection.
    let open = ck(&["monitor", "open", "-c", &config()]);
    assert_eq!(open.code, 0, "{}{}", open.stdout, open.stderr);
    // Either Prometheus replica's node.
    let replicas = exec(
        "node1",
        "docker service ps clusterkit-monitoring_prometheus --filter desired-state=running --format '{{.Node}}'",
    );
    assert!(
        open.stdout.starts_with("ssh -N -L 9090:")
            && replicas.lines().any(|n| {
                open.stdout
                    .contains(&format!("-L 9090:10.0.0.{}:9090", &n.trim()[4..]))
            })
            && open.stdout.contains("UserKnownHostsFile="),
        "{}",
        open.stdout
    );
    // Killed when dropped, so that a failure here does not leave it holding
    // the ports for the next run (seen: every later run failed to bind).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let fwd = Killed(
        std::process::Command::new(crate::bin::clusterkit())
            .args([
                "monitor",
                "open",
                "--forward",
                "--offset",
                "31000",
                "-c",
                &config(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Prometheus asks for the monitoring API's login there too.
    let pw = ck(&["monitor", "password", "--api", "-c", &config()]);
    let login = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf 'clusterkit:%s' \"$0\" | base64 -w0")
        .arg(pw.stdout.trim())
        .output()
        .unwrap();
    let login = String::from_utf8(login.stdout).unwrap();
    let ask = |auth: &str| {
        std::net::TcpStream::connect("127.0.0.1:40090")
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(format!("GET /-/ready HTTP/1.0\r\n{auth}\r\n").as_bytes())
                    .ok()?;
                let mut body = String::new();
                s.read_to_string(&mut body).ok()?;
                Some(body)
            })
            .unwrap_or_default()
    };
    let took = wait_for(
        "Prometheus answers on the forwarded port",
        Duration::from_secs(30),
        || ask(&format!("Authorization: Basic {login}\r\n")).contains("Ready"),
    );
    assert!(ask("").starts_with("HTTP/1.0 401"), "{}", ask(""));
    eprintln!("Prometheus through `monitor open --forward` after {took:?}");
    drop(fwd);

    grafana_plumbing();
    monitoring_roll();
}

/// A real rolling upgrade of Prometheus from 2 to 3 by `upgrade --component
/// monitoring`: Prometheus 2.42 (bookworm's) runs on fresh volumes and
/// scrapes a while, then Swarm replaces its two replicas one at a time with
/// the sandbox's Prometheus 3; a client that tries each node keeps getting
/// answers, and each new replica on a node that held a 2.42 replica answers
/// the samples 2.42 wrote (the TSDB is kept). An image whose task does not
/// run is stopped by Swarm's rollback and named. The sandbox is left on its
/// own image, as found.
fn monitoring_roll() {
    let current = {
        let text = std::fs::read_to_string(config()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("prometheus_image = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("the sandbox config pins prometheus_image")
            .to_string()
    };
    let previous = "clusterkit/prometheus:bookworm".to_string();
    let broken = format!("{current}-broken");
    let _ = docker(&["rm", "-f", "ck-prom-build"]);
    assert!(docker(&["create", "--name", "ck-prom-build", &current])
        .status
        .success());
    let made = docker(&[
        "commit",
        "--change",
        "ENTRYPOINT [\"/bin/false\"]",
        "ck-prom-build",
        &broken,
    ]);
    let _ = docker(&["rm", "-f", "ck-prom-build"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let with_image = |image: &str| {
        let text = std::fs::read_to_string(config()).unwrap().replace(
            &format!("prometheus_image = \"{current}\""),
            &format!("prometheus_image = \"{image}\""),
        );
        let path = std::path::Path::new(&config()).with_file_name("clusterkit-roll.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    // `image node` of each running replica.
    let replicas = || {
        let mut v: Vec<(String, String)> = exec(
            "node1",
            "docker service ps clusterkit-monitoring_prometheus --filter desired-state=running --format '{{.Image}} {{.Node}} {{.CurrentState}}' | grep Running | cut -d' ' -f1,2",
        )
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(i, n)| (i.to_string(), n.to_string()))
        .collect();
        v.sort();
        v
    };
    let running_images = || replicas().into_iter().map(|(i, _)| i).collect::<Vec<_>>();
    // One instant query on the Prometheus of `node`: the first result's value.
    let value = |node: &str, query: &str| -> Option<f64> {
        let body = exec(
            node,
            &format!(
                "curl -sf -m 5 -G -K /etc/clusterkit/monitoring/api.curl --data-urlencode 'query={query}' http://localhost:9090/api/v1/query"
            ),
        );
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let version = |node: &str| {
        let body = exec(
            node,
            "curl -sf -m 5 -K /etc/clusterkit/monitoring/api.curl http://localhost:9090/api/v1/status/buildinfo",
        );
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["data"]["version"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    // A client asking every 100 ms, trying each node in turn.
    let queried = |f: &dyn Fn() -> crate::bin::Output| {
        crate::sandbox::while_asking(
            Duration::from_millis(100),
            || {
                ["node1", "node2", "node3"].iter().any(|n| {
                    exec(
                        n,
                        "curl -sf -m 2 -K /etc/clusterkit/monitoring/api.curl 'http://localhost:9090/api/v1/query?query=up'",
                    )
                    .contains("\"status\":\"success\"")
                })
            },
            f,
        )
    };

    // Prometheus 2.42 on fresh volumes: a storage Prometheus 3 wrote cannot
    // be read by a Prometheus 2 older than 2.55 (Prometheus's migration
    // guide), so the sandbox's 3 does not roll back to it.
    let rm = exec(
        "node1",
        "docker service rm clusterkit-monitoring_prometheus >/dev/null && echo removed",
    );
    assert_eq!(rm.trim(), "removed");
    for n in ["node1", "node2", "node3"] {
        wait_for(
            &format!("Prometheus's volume gone from {n}"),
            Duration::from_secs(90),
            || {
                exec(
                    n,
                    "docker volume rm clusterkit-monitoring_prometheus-data >/dev/null 2>&1; \
                     docker volume inspect clusterkit-monitoring_prometheus-data >/dev/null 2>&1 || echo gone",
                )
                .trim()
                    == "gone"
            },
        );
    }
    let old = ck(&["monitor", "up", "-c", &with_image(&previous)]);
    assert_eq!(old.code, 0, "{}{}", old.stdout, old.stderr);
    wait_for(
        "two Prometheus 2.42 replicas answering",
        Duration::from_secs(240),
        || {
            let r = replicas();
            r.len() == 2
                && r.iter()
                    .all(|(i, n)| *i == previous && version(n).starts_with("2.42."))
        },
    );
    // History: every replica has scraped itself a few times.
    const OLD_SAMPLES: &str = "count_over_time(prometheus_build_info{version=~\"2[.].*\"}[1h])";
    let mut before = Vec::new();
    wait_for(
        "three samples on each Prometheus 2.42",
        Duration::from_secs(180),
        || {
            before = replicas()
                .into_iter()
                .map(|(_, n)| {
                    let c = value(&n, OLD_SAMPLES).unwrap_or(0.0);
                    (n, c)
                })
                .collect();
            before.len() == 2 && before.iter().all(|(_, c)| *c >= 3.0)
        },
    );

    // The roll, 2 → 3, under counted queries.
    let roll_to = |from: &str, image: &str| {
        let cfg = with_image(image);
        let (roll, ok, failed) =
            queried(&|| ck(&["upgrade", "--component", "monitoring", "-c", &cfg]));
        eprintln!("while Prometheus rolled to {image}: {ok} queries answered, {failed} not");
        assert_eq!(roll.code, 0, "{}{}", roll.stdout, roll.stderr);
        let mut at = 0;
        for step in [
            format!("prometheus: {from} → {image}"),
            format!("prometheus: every task (2) on {image}, Swarm's update completed"),
        ] {
            at += roll.stderr[at..]
                .find(&step)
                .unwrap_or_else(|| panic!("{step}: {}", roll.stderr));
        }
        assert!(
            roll.stdout.contains("monitoring upgraded on 1 service(s)"),
            "{}",
            roll.stdout
        );
        assert!(ok >= 20, "the client ran through the roll: {ok}");
        assert!(
            failed * 100 <= ok + failed,
            "{failed} of {} queries failed",
            ok + failed
        );
        assert_eq!(running_images(), vec![image.to_string(), image.to_string()]);
        let again = ck(&["upgrade", "--component", "monitoring", "-c", &cfg]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert!(
            again.stdout.contains("nothing to upgrade"),
            "{}{}",
            again.stdout,
            again.stderr
        );
    };
    roll_to(&previous, &current);

    // Prometheus 3 everywhere; where a 2.42 replica ran (at least one of the
    // two new replicas: 3 managers, 2 of them held one), its samples are
    // answered by Prometheus 3.
    let after = replicas();
    let mut kept = 0;
    for (_, n) in &after {
        let v = version(n);
        assert!(v.starts_with("3."), "{n}: Prometheus {v}");
        if let Some((_, c)) = before.iter().find(|(b, _)| b == n) {
            let now = value(n, OLD_SAMPLES).unwrap_or(0.0);
            assert!(
                now >= *c,
                "{n}: {now} samples of Prometheus 2.42 after the roll, {c} before"
            );
            kept += 1;
        }
    }
    assert!(kept >= 1, "before {before:?}, after {after:?}");
    eprintln!(
        "Prometheus 2 → 3: samples of 2.42 before {before:?}, answered by 3 on {kept} node(s)"
    );

    // Swarm rolls a task that does not run back: the upgrade stops and says so.
    let cfg = with_image(&broken);
    let refused = ck(&["upgrade", "--component", "monitoring", "-c", &cfg]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains(&format!(
            "Swarm stopped the update of clusterkit-monitoring_prometheus to {broken}"
        )) && refused
            .stderr
            .contains("docker service ps --no-trunc clusterkit-monitoring_prometheus"),
        "{}",
        refused.stderr
    );
    wait_for(
        "Prometheus back on the image before",
        Duration::from_secs(180),
        || running_images() == vec![current.clone(), current.clone()],
    );
    let up = ck(&["monitor", "up", "-c", &config()]);
    assert_eq!(up.code, 0, "{}", up.stderr);
}

/// Grafana's image cannot be fetched here, so a stand-in image runs in its
/// place to prove the plumbing Grafana relies on: the generated password
/// reaches the service as a secret, equals what `monitor password` prints,
/// never shows in any output, sits in a root-only file, and the provisioning
/// files are where Grafana reads them. Turning Grafana off removes it.
fn grafana_plumbing() {
    let with = std::fs::read_to_string(config()).unwrap().replace(
        "grafana = false",
        "grafana = true\ngrafana_image = \"clusterkit/prometheus:sid\"",
    );
    let path = std::path::Path::new(&config()).with_file_name("clusterkit-grafana.toml");
    std::fs::write(&path, with).unwrap();
    let cfg = path.to_str().unwrap();
    let up = ck(&["monitor", "up", "-c", cfg]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    assert!(up.stderr.contains("password made"), "{}", up.stderr);
    let pw = ck(&["monitor", "password", "-c", cfg]);
    assert_eq!(pw.code, 0, "{}", pw.stderr);
    let password = pw.stdout.trim().to_string();
    assert_eq!(password.len(), 18, "{password}");
    assert!(!up.stdout.contains(&password) && !up.stderr.contains(&password));
    assert!(!pw.stderr.contains(&password));
    for n in ["node1", "node2", "node3"] {
        assert_eq!(
            exec(n, "stat -c %a /etc/clusterkit/monitoring/grafana-admin").trim(),
            "600",
            "{n}"
        );
    }
    let again = ck(&["monitor", "up", "-c", cfg]);
    assert!(
        again.stderr.contains("monitoring unchanged"),
        "{}",
        again.stderr
    );
    // Inside the running task.
    let node = exec(
        "node1",
        "docker service ps clusterkit-monitoring_grafana --filter desired-state=running --format '{{.Node}}' | head -1",
    );
    let inside = |file: &str| {
        exec(
            node.trim(),
            &format!("docker exec $(docker ps -q -f label=com.docker.swarm.service.name=clusterkit-monitoring_grafana) cat {file}"),
        )
    };
    assert_eq!(inside("/run/secrets/grafana-admin-password"), password);
    assert!(
        inside("/etc/grafana/provisioning/datasources/prometheus.yml").contains("type: prometheus")
    );
    assert!(
        inside("/etc/grafana/provisioning/dashboards/clusterkit.yml")
            .contains("path: /etc/grafana/dashboards")
    );
    let overview: serde_json::Value =
        serde_json::from_str(&inside("/etc/grafana/dashboards/clusterkit-overview.json")).unwrap();
    assert_eq!(overview["title"], "Cluster overview");
    // Off again: the service goes, the password stays for next time.
    let off = ck(&["monitor", "up", "-c", &config()]);
    assert_eq!(off.code, 0, "{}{}", off.stdout, off.stderr);
    assert!(exec("node1", "docker service ls --format '{{.Name}}'")
        .find("grafana")
        .is_none());
}

#[test]
fn the_exporters_read_the_address_file_the_mesh_writes() {
    assert_eq!(
        clusterkit::wg::MESH_ADDRESS_PATH,
        clusterkit::monitor::render::MESH_ADDRESS_FILE
    );
}

/// What clusterkit's own services cost a node in memory, with storage and
/// monitoring up on the shared sandbox: each swarm task as its engine counts
/// it (`docker stats`: the cgroup's usage less its page cache), each host
/// process by its resident set (rclone, the volume driver's front, the
/// userspace WireGuard). Every one stays within the README's budget, and so
/// does each node's sum; the firewall and the keepers hold no process.
#[test]
fn clusterkit_services_stay_within_their_memory_budget() {
    shared();
    let _g = calm();
    let _m = monitoring_alone();
    crate::storage::storage_up();
    let up = ck(&["monitor", "up", "-c", &config()]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    // The component a task or process belongs to, and its budget in MiB.
    const BUDGETS: [(&str, f64); 9] = [
        ("garage", 128.0),
        ("prometheus", 256.0),
        ("alertmanager", 64.0),
        ("node-exporter", 32.0),
        ("cadvisor", 64.0),
        ("rclone", 96.0),
        ("volumes-front", 16.0),
        ("wg-userspace", 32.0),
        ("grafana", 256.0),
    ];
    // A node's sum, and the same without the stack's services that run on
    // some managers only (Prometheus, Alertmanager, Grafana): the README's.
    const NODE_BUDGET: f64 = 300.0;
    const EVERY_NODE_BUDGET: f64 = 150.0;
    const SOME_MANAGERS: [&str; 3] = ["prometheus", "alertmanager", "grafana"];
    let component = |name: &str| -> Option<&'static str> {
        let service = name.split('.').next().unwrap_or(name);
        BUDGETS.iter().map(|(c, _)| *c).find(|c| match *c {
            "garage" => service.starts_with("clusterkit-storage_garage"),
            "rclone" => name.contains("rclone serve docker"),
            "volumes-front" => name.contains("/usr/local/bin/clusterkit-volumes "),
            "wg-userspace" => name.contains("clusterkit-wg-userspace"),
            c => service == format!("clusterkit-monitoring_{c}"),
        })
    };
    let mib = |v: &str| -> Option<f64> {
        let v = v.trim();
        let at = v.find(|c: char| c.is_ascii_alphabetic())?;
        let n: f64 = v[..at].parse().ok()?;
        Some(match &v[at..] {
            "B" => n / 1048576.0,
            "KiB" | "kB" => n / 1024.0,
            "MiB" | "MB" => n,
            "GiB" | "GB" => n * 1024.0,
            _ => return None,
        })
    };
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for node in ["node1", "node2", "node3"] {
        let text = exec(
            node,
            "docker stats --no-stream --format '{{.Name}}\t{{.MemUsage}}'; echo ---; ps -eo rss=,args=",
        );
        let (tasks, processes) = text.split_once("---\n").expect("both listings");
        let mut costs: Vec<(&str, f64)> = Vec::new();
        for l in tasks.lines() {
            let (name, usage) = l.split_once('\t').unwrap_or((l, ""));
            if let Some(c) = component(name) {
                let m = mib(usage.split('/').next().unwrap_or(""))
                    .unwrap_or_else(|| panic!("{node}: {l}"));
                costs.push((c, m));
            }
        }
        for l in processes.lines() {
            let l = l.trim();
            let (rss, args) = l.split_once(' ').unwrap_or((l, ""));
            if let Some(c) = component(&format!("{args} ")) {
                costs.push((c, rss.parse::<f64>().unwrap_or(0.0) / 1024.0));
            }
        }
        let total: f64 = costs.iter().map(|(_, m)| m).sum();
        eprintln!(
            "{node}: {total:.0} MiB: {}",
            costs
                .iter()
                .map(|(c, m)| format!("{c} {m:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (c, m) in &costs {
            *seen.entry(c).or_default() += 1;
            let budget = BUDGETS.iter().find(|(b, _)| b == c).unwrap().1;
            assert!(
                *m > 0.0 && *m <= budget,
                "{node}: {c} {m:.1} MiB, budget {budget}"
            );
        }
        assert!(
            total <= NODE_BUDGET,
            "{node}: {total:.0} MiB, budget {NODE_BUDGET}"
        );
        let everywhere: f64 = costs
            .iter()
            .filter(|(c, _)| !SOME_MANAGERS.contains(c))
            .map(|(_, m)| m)
            .sum();
        assert!(
            everywhere <= EVERY_NODE_BUDGET,
            "{node}: {everywhere:.0} MiB on every node, budget {EVERY_NODE_BUDGET}"
        );
    }
    // Everything measured was found: Garage, the exporters, rclone, the
    // front and the mesh on every node; Prometheus's two replicas, and the
    // two Alertmanagers.
    for (c, n) in [
        ("garage", 3),
        ("node-exporter", 3),
        ("cadvisor", 3),
        ("rclone", 3),
        ("volumes-front", 3),
        ("wg-userspace", 3),
        ("prometheus", 2),
        ("alertmanager", 2),
    ] {
        assert_eq!(seen.get(c).copied().unwrap_or(0), n, "{c}: {seen:?}");
    }
}
