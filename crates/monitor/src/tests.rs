use crate::render::*;
use clusterkit_core::ClusterSpec;

fn spec() -> ClusterSpec {
    clusterkit_core::spec::example(3)
}

#[test]
fn prometheus_finds_everything_through_the_swarm() {
    let s = spec();
    let yml = prometheus_yml(&s);
    insta::assert_snapshot!("prometheus_yml", yml);
    assert!(
        !yml.contains("static_configs:\n      - targets: [\"10."),
        "no static host list"
    );
    for job in [
        "job_name: node",
        "job_name: cadvisor",
        "job_name: storage",
        "job_name: services",
    ] {
        assert!(yml.contains(job), "{job}");
    }
    assert!(!yml.contains("alerting:"), "no Alertmanager by default");
    let mut s = s;
    s.monitoring.cadvisor = false;
    s.monitoring.alertmanager = true;
    let other = prometheus_yml(&s);
    assert!(!other.contains("job_name: cadvisor"));
    assert!(other.contains(
        "alerting:\n  alertmanagers:\n    - basic_auth:\n        username: clusterkit\n        password_file: /run/secrets/monitoring-api-password\n      dns_sd_configs:\n        - names: [tasks.alertmanager]"
    ));
}

#[test]
fn the_monitoring_apis_ask_for_a_password_everyone_of_ours_has() {
    // Prometheus's and Alertmanager's web configuration: one user, a bcrypt
    // hash that the password verifies against.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = web_config(&hash);
    let doc = marked_yaml::parse_yaml(0, &web).unwrap();
    let kept = doc
        .as_mapping()
        .and_then(|m| m.get_mapping("basic_auth_users"))
        .and_then(|u| u.get_scalar("clusterkit"))
        .unwrap()
        .as_str()
        .to_string();
    let kept = kept.as_str();
    assert!(bcrypt::verify("s3cret", kept).unwrap());
    assert!(!web.contains("s3cret"));
    // Both services read it, and Prometheus, Grafana log in with the password.
    let mut s = spec();
    s.monitoring.alertmanager = true;
    s.monitoring.grafana = true;
    let compose = stack(&s).compose;
    assert_eq!(
        compose
            .matches("--web.config.file=/run/secrets/web.yml")
            .count(),
        2
    );
    assert_eq!(
        compose
            .matches("source: monitoring-web, target: web.yml")
            .count(),
        2
    );
    assert_eq!(
        compose
            .matches("source: monitoring-api, target: monitoring-api-password")
            .count(),
        2
    );
    let prom = prometheus_yml(&s);
    assert_eq!(
        prom.matches("password_file: /run/secrets/monitoring-api-password")
            .count(),
        2
    );
    let ds = crate::grafana::datasource_yml();
    assert!(
        ds.contains("basicAuth: true\n    basicAuthUser: clusterkit\n"),
        "{ds}"
    );
    assert!(
        ds.contains("basicAuthPassword: $__file{/run/secrets/monitoring-api-password}"),
        "{ds}"
    );
    // clusterkit's own questions: the password from a root-only file, never
    // on the command line.
    let get = crate::api_get(9090, "/api/v1/targets?state=active")
        .script()
        .to_string();
    assert_eq!(
        get,
        "curl -sf -K /etc/clusterkit/monitoring/api.curl 'http://127.0.0.1:9090/api/v1/targets?state=active' 2>/dev/null \
         || wget -qO- --config=/etc/clusterkit/monitoring/api.wgetrc 'http://127.0.0.1:9090/api/v1/targets?state=active'"
    );
}

#[test]
fn every_rule_has_an_expression_and_annotations() {
    let s = spec();
    let rules = rules_yml(&s);
    insta::assert_snapshot!("rules_yml", rules);
    let exprs = rule_expressions(&rules);
    assert_eq!(exprs.len(), rules.matches("- alert: ").count());
    assert_eq!(exprs.len(), 9);
    assert!(rules.contains("alert: Watchdog\n        expr: vector(1)"));
    assert_eq!(rules.matches("summary: ").count(), exprs.len());
    // Templates meant for Prometheus survive rendering.
    assert!(rules.contains("{{ $labels.node }}"));
}

#[test]
fn grafana_is_provisioned_with_prometheus_and_every_dashboard_parses() {
    use crate::grafana::*;
    let ds = datasource_yml();
    assert!(
        ds.contains("type: prometheus")
            && ds.contains("url: http://tasks.prometheus:9090")
            && ds.contains("isDefault: true")
    );
    assert!(dashboards_yml().contains("path: /etc/grafana/dashboards"));
    let all = dashboards();
    let titles: Vec<&str> = all.iter().map(|(d, _)| d.title).collect();
    assert_eq!(
        titles,
        [
            "Cluster overview",
            "WireGuard mesh",
            "Swarm services",
            "Containers",
            "Storage"
        ]
    );
    for (d, _) in &all {
        let text = serde_json::to_string_pretty(&to_json(d)).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["uid"], d.uid);
        for panel in back["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "prometheus");
            assert!(
                !panel["targets"].as_array().unwrap().is_empty(),
                "{}",
                panel["title"]
            );
        }
    }
    insta::assert_json_snapshot!("overview_dashboard", to_json(&all[0].0));
    assert_eq!(
        expressions().len(),
        all.iter()
            .map(|(d, _)| d.panels.iter().map(|p| p.queries.len()).sum::<usize>())
            .sum::<usize>()
    );
}

fn yaml(text: &str) -> marked_yaml::Node {
    marked_yaml::parse_yaml(0, text).expect("valid YAML")
}

fn get<'a>(n: &'a marked_yaml::Node, path: &[&str]) -> Option<&'a marked_yaml::Node> {
    path.iter()
        .try_fold(n, |n, k| n.as_mapping().and_then(|m| m.get_node(k)))
}

fn scalar(n: &marked_yaml::Node, path: &[&str]) -> String {
    get(n, path)
        .and_then(|n| n.as_scalar())
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| panic!("no scalar at {path:?}"))
}

#[test]
fn the_stack_delivers_every_file_as_a_content_named_config() {
    let s = spec();
    let st = stack(&s);
    insta::assert_snapshot!("stack_compose", st.compose);
    let c = yaml(&st.compose);
    let configs = get(&c, &["configs"]).and_then(|n| n.as_mapping()).unwrap();
    // One config per file, each from a file of the stack, named by its content.
    assert_eq!(configs.len(), st.files.len());
    for (key, v) in configs.iter() {
        let file = scalar(v, &["file"]);
        let file = file.trim_start_matches("./");
        let content = st
            .get(file)
            .unwrap_or_else(|| panic!("{}: {file} is not in the stack", key.as_str()));
        assert_eq!(
            scalar(v, &["name"]),
            format!(
                "clusterkit-{}-{}",
                key.as_str(),
                clusterkit_core::names::content_hash(content)
            )
        );
    }
    // A change in a file renames its config (so the service rolls); the others keep theirs.
    let mut s2 = s.clone();
    s2.monitoring.retention = "30d".into();
    s2.name = "other".parse().unwrap();
    let st2 = stack(&s2);
    assert_ne!(st.get("prometheus.yml"), st2.get("prometheus.yml"));
    let name = |st: &StackFiles, k: &str| scalar(&yaml(&st.compose), &["configs", k, "name"]);
    assert_ne!(name(&st, "prometheus"), name(&st2, "prometheus"));
    assert_eq!(
        name(&st, "grafana-datasource"),
        name(&st2, "grafana-datasource")
    );
    // Services, placement, ports.
    let svcs = get(&c, &["services"]).and_then(|n| n.as_mapping()).unwrap();
    let names: Vec<&str> = svcs.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, services(&s));
    for svc in ["prometheus", "grafana"] {
        let sv = get(&c, &["services", svc]).unwrap();
        let placement = get(sv, &["deploy", "placement", "constraints"]).unwrap();
        assert_eq!(
            placement.as_sequence().unwrap()[0]
                .as_scalar()
                .unwrap()
                .as_str(),
            "node.role == manager"
        );
    }
    for svc in ["node-exporter", "cadvisor"] {
        assert_eq!(scalar(&c, &["services", svc, "deploy", "mode"]), "global");
    }
    assert_eq!(
        scalar(&c, &["volumes", "prometheus-data", "driver"]),
        "local"
    );
    assert!(get(&c, &["volumes", "prometheus-data", "driver_opts"]).is_none());
    // On the storage's driver, each volume names its place in the bucket.
    let mut s3 = s.clone();
    s3.monitoring.volume_driver = "clusterkit".into();
    let c3 = yaml(&stack(&s3).compose);
    assert_eq!(
        scalar(&c3, &["volumes", "grafana-data", "driver"]),
        "clusterkit"
    );
    assert_eq!(
        scalar(&c3, &["volumes", "grafana-data", "driver_opts", "remote"]),
        "clusterkit:volumes/clusterkit-monitoring_grafana-data"
    );
}

#[test]
fn grafana_gets_its_password_from_a_secret_and_its_provisioning_from_configs() {
    let s = spec();
    let c = yaml(&stack(&s).compose);
    let g = get(&c, &["services", "grafana"]).unwrap();
    assert_eq!(
        scalar(g, &["environment", "GF_SECURITY_ADMIN_PASSWORD__FILE"]),
        "/run/secrets/grafana-admin-password"
    );
    assert!(
        get(g, &["environment", "GF_SECURITY_ADMIN_PASSWORD"]).is_none(),
        "never a password in the file"
    );
    assert_eq!(
        scalar(g, &["environment", "GF_SECURITY_ADMIN_USER"]),
        "admin"
    );
    assert_eq!(
        scalar(g, &["environment", "GF_USERS_ALLOW_SIGN_UP"]),
        "false"
    );
    assert_eq!(
        scalar(&c, &["secrets", "grafana-admin", "name"]),
        GRAFANA_SECRET
    );
    assert_eq!(
        scalar(&c, &["secrets", "grafana-admin", "external"]),
        "true"
    );
    let targets: Vec<String> = get(g, &["configs"])
        .and_then(|n| n.as_sequence())
        .unwrap()
        .iter()
        .map(|m| scalar(m, &["target"]))
        .collect();
    assert!(targets.contains(&"/etc/grafana/provisioning/datasources/prometheus.yml".to_string()));
    assert!(targets.contains(&"/etc/grafana/provisioning/dashboards/clusterkit.yml".to_string()));
    for (d, _) in crate::grafana::dashboards() {
        assert!(
            targets.contains(&format!(
                "{}/{}.json",
                crate::grafana::DASHBOARDS_DIR,
                d.uid
            )),
            "dashboard {} is delivered",
            d.uid
        );
    }
    // Turned off, Grafana leaves no trace: no service, secret, volume or config.
    let mut s = s;
    s.monitoring.grafana = false;
    s.monitoring.cadvisor = false;
    let st = stack(&s);
    assert!(!st.compose.contains("grafana"), "{}", st.compose);
    assert!(!st.compose.contains("cadvisor"));
    assert_eq!(services(&s), ["prometheus", "node-exporter"]);
}

#[test]
fn alertmanager_is_optional_and_routes_every_alert() {
    let mut s = spec();
    assert!(!stack(&s).compose.contains("alertmanager"));
    s.monitoring.alertmanager = true;
    let st = stack(&s);
    let c = yaml(&st.compose);
    let nets = |svc: &str| -> Vec<String> {
        get(&c, &["services", svc, "networks"])
            .and_then(|n| n.as_sequence())
            .unwrap()
            .iter()
            .map(|n| n.as_scalar().unwrap().as_str().to_string())
            .collect()
    };
    // On an overlay of their own that Prometheus shares and applications
    // (on `clusterkit`) do not, sized on the mesh like `clusterkit`.
    assert_eq!(nets("alertmanager"), ["alerting"]);
    assert_eq!(nets("prometheus"), ["clusterkit", "alerting"]);
    assert_eq!(scalar(&c, &["networks", "alerting", "driver"]), "overlay");
    assert_eq!(
        scalar(
            &c,
            &[
                "networks",
                "alerting",
                "driver_opts",
                "com.docker.network.driver.mtu"
            ]
        ),
        "1420"
    );
    assert_eq!(
        scalar(&c, &["volumes", "alertmanager-data", "driver"]),
        "local"
    );
    let am = yaml(st.get("alertmanager.yml").unwrap());
    assert_eq!(scalar(&am, &["route", "receiver"]), "default");
    insta::assert_snapshot!("alertmanager_yml", st.get("alertmanager.yml").unwrap());
}

#[test]
fn the_images_follow_the_spec() {
    let mut s = spec();
    s.monitoring.images.grafana = "registry.example/grafana:1".into();
    let imgs = images(&s);
    assert!(imgs.contains(&("registry.example/grafana:1".to_string(), false)));
    assert!(imgs.contains(&(s.monitoring.images.node_exporter.clone(), true)));
    assert!(stack(&s)
        .compose
        .contains("image: registry.example/grafana:1"));
    // An image serving two services (a stand-in) is sent once.
    s.monitoring.images.grafana = s.monitoring.images.prometheus.clone();
    let imgs = images(&s);
    let n = imgs
        .iter()
        .filter(|(i, _)| *i == s.monitoring.images.prometheus)
        .count();
    assert_eq!(n, 1, "{imgs:?}");
}

#[test]
fn a_roll_changes_the_services_whose_image_differs_from_the_spec() {
    use crate::roll::{parse_behind, parse_update};
    let mut s = spec();
    let old = s.monitoring.images.prometheus.clone();
    s.monitoring.images.prometheus = "clusterkit/prometheus:new".into();
    let exporter = s.monitoring.images.node_exporter.clone();
    let text = format!(
        "clusterkit-monitoring_prometheus {old}\n\
         clusterkit-monitoring_node-exporter {exporter}@sha256:0123abcd\n\
         other-stack_prometheus {old}\n"
    );
    let b = parse_behind(&s, &text);
    // The digest a registry adds is not a difference; another stack is not ours;
    // a service not deployed yet (cAdvisor here) is up's to make.
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].service, "prometheus");
    assert_eq!(b[0].running, old);
    assert_eq!(b[0].swarm_name(), "clusterkit-monitoring_prometheus");

    let wanted = "clusterkit/prometheus:new";
    let half = parse_update(
        &format!(
            "state updating|update in progress\ntask {wanted} Running 3 seconds ago\ntask {old} Running 2 hours ago\n"
        ),
        wanted,
    );
    assert_eq!((half.done, half.tasks), (1, 2));
    assert!(!half.finished() && !half.failed());
    let starting = parse_update(
        &format!("state updating|\ntask {wanted} Starting 1 second ago\ntask {wanted}@sha256:ab Running 1 minute ago\n"),
        wanted,
    );
    assert_eq!((starting.done, starting.tasks), (1, 2));
    let done = parse_update(
        &format!("state completed|update completed\ntask {wanted} Running 3 seconds ago\ntask {wanted} Running 1 minute ago\n"),
        wanted,
    );
    assert!(done.finished());
    // Swarm's update not started yet: the old "completed" of an earlier one, old tasks.
    let not_yet = parse_update(
        &format!("state completed|\ntask {old} Running 1 hour ago\n"),
        wanted,
    );
    assert!(!not_yet.finished());
    let back = parse_update(
        &format!("state rollback_completed|rollback completed\ntask {old} Running 1 second ago\n"),
        wanted,
    );
    assert!(back.failed() && back.message == "rollback completed");
    assert!(parse_update("state paused|update paused due to failure\n", wanted).failed());
}

#[test]
fn prometheus_targets_down_are_named_with_its_own_words_on_why() {
    // Prometheus's answers as its API gives them (one up, one down, one
    // whose labels and error a hostile server filled with control bytes).
    let tv = serde_json::json!({"status": "success", "data": {"activeTargets": [
        {"labels": {"job": "node", "instance": "10.0.0.1:9100"}, "health": "up", "lastError": ""},
        {"labels": {"job": "storage", "instance": "10.0.0.2:3903"}, "health": "down",
         "lastError": "Get \"http://10.0.0.2:3903/metrics\": dial tcp 10.0.0.2:3903: connect: connection refused"},
        {"labels": {"job": "app\u{1b}[2J", "instance": "x"}, "health": "unknown", "lastError": "a\nb"}
    ]}});
    let av = serde_json::json!({"data": {"alerts": [
        {"labels": {"alertname": "Watchdog"}, "state": "firing"},
        {"labels": {"alertname": "NodeDown"}, "state": "firing"},
        {"labels": {"alertname": "NodeDown"}, "state": "firing"},
        {"labels": {"alertname": "DiskFull"}, "state": "pending"}
    ]}});
    let t = crate::parse_targets(&tv, &av);
    assert_eq!((t.up, t.total), (1, 3));
    assert_eq!(
        t.down,
        [
            "storage/10.0.0.2:3903: Get \"http://10.0.0.2:3903/metrics\": dial tcp 10.0.0.2:3903: connect: connection refused",
            "app[2J/x: ab"
        ]
    );
    assert_eq!(t.firing, ["NodeDown"]);
    assert!(!t.whole());
    // No answer (Prometheus starting): nothing found, not whole.
    let none = crate::parse_targets(&serde_json::Value::Null, &serde_json::Value::Null);
    assert_eq!((none.total, none.whole()), (0, false));
}

#[test]
fn ci_checks_the_dashboards_against_the_schema_of_the_default_grafana() {
    // `.ci/run` pins grafana-foundation-sdk to the Grafana version whose
    // schema it was generated from: the one the default image runs.
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/run"))
        .expect(".ci/run");
    let version = clusterkit_core::spec::defaults::GRAFANA_IMAGE
        .rsplit(':')
        .next()
        .unwrap();
    assert!(
        ci.lines()
            .any(|l| l.contains("grafana-foundation-sdk==") && l.contains(&format!("!{version}\""))),
        "the SDK pinned in .ci/run is not Grafana {version}'s"
    );
}

#[test]
fn the_uis_named_in_the_ingress_carry_its_labels_and_the_others_none() {
    let mut s = spec();
    s.monitoring.alertmanager = true;
    let c = yaml(&stack(&s).compose);
    for svc in ["prometheus", "alertmanager", "grafana"] {
        assert!(
            get(
                &c,
                &[
                    "services",
                    svc,
                    "deploy",
                    "labels",
                    "clusterkit.ingress.host"
                ]
            )
            .is_none(),
            "{svc} is not routed unless asked"
        );
    }
    s.ingress.enabled = true;
    s.ingress.monitoring = clusterkit_core::spec::MonitoringHosts {
        grafana: Some("grafana.example.com".into()),
        prometheus: Some("prometheus.example.com".into()),
        alertmanager: Some("alertmanager.example.com".into()),
    };
    let c = yaml(&stack(&s).compose);
    for (svc, host, port) in [
        ("prometheus", "prometheus.example.com", "9090"),
        ("alertmanager", "alertmanager.example.com", "9093"),
        ("grafana", "grafana.example.com", "3000"),
    ] {
        let labels = ["services", svc, "deploy", "labels"];
        let at = |k: &str| scalar(&c, &[labels[0], labels[1], labels[2], labels[3], k]);
        assert_eq!(at("clusterkit.ingress.host"), host);
        assert_eq!(at("clusterkit.ingress.port"), port);
        assert_eq!(at("io.clusterkit.component"), "monitoring");
    }
}
