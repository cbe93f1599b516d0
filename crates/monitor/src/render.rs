//! Prometheus's configuration and alert rules, rendered from the spec.
//!
//! Where Prometheus finds what: node-exporter (9100), cAdvisor (8080) and
//! Garage (3903) run on each node's host network, bound to its mesh address,
//! and are found with `dockerswarm_sd_configs` role `nodes` (the swarm's node
//! addresses are the mesh addresses). Application services labelled
//! `prometheus.io/scrape=true` are found with role `tasks` and scraped on the
//! overlay network they share with Prometheus (`clusterkit`), one target per
//! running task; a service on other networks only is not reachable and is
//! dropped rather than reported down.

use clusterkit_core::names::content_hash;
use clusterkit_core::spec::{ClusterSpec, StorageBackend};
use serde::Serialize;

use crate::grafana;

/// The stack holding the monitoring services.
pub const STACK: &str = "clusterkit-monitoring";
/// The Swarm secret holding Grafana's administrator password.
pub const GRAFANA_SECRET: &str = "clusterkit-grafana-admin";

pub use clusterkit_core::stack::StackFiles;

#[derive(Serialize)]
struct ConfigRef {
    key: String,
    name: String,
    file: String,
    uid: String,
}

/// The services the stack runs (compose names), in order.
pub fn services(spec: &ClusterSpec) -> Vec<&'static str> {
    let m = &spec.monitoring;
    let mut s = vec!["prometheus", "node-exporter"];
    if m.cadvisor {
        s.push("cadvisor");
    }
    if m.alertmanager {
        s.push("alertmanager");
    }
    if m.grafana {
        s.push("grafana");
    }
    s
}

/// Each service the stack runs (compose name) with the image the spec pins for it.
pub fn service_images(spec: &ClusterSpec) -> Vec<(&'static str, String)> {
    let i = &spec.monitoring.images;
    services(spec)
        .into_iter()
        .map(|s| {
            let image = match s {
                "prometheus" => &i.prometheus,
                "node-exporter" => &i.node_exporter,
                "cadvisor" => &i.cadvisor,
                "alertmanager" => &i.alertmanager,
                _ => &i.grafana,
            };
            (s, image.clone())
        })
        .collect()
}

/// The images the stack needs, each with whether every node needs it (a
/// global service) or the managers only.
pub fn images(spec: &ClusterSpec) -> Vec<(String, bool)> {
    let m = &spec.monitoring;
    let mut v = vec![
        (m.images.prometheus.clone(), false),
        (m.images.node_exporter.clone(), true),
    ];
    if m.cadvisor {
        v.push((m.images.cadvisor.clone(), true));
    }
    if m.alertmanager {
        v.push((m.images.alertmanager.clone(), false));
    }
    if m.grafana {
        v.push((m.images.grafana.clone(), false));
    }
    // One image may serve two services: listed once, everywhere if either needs it.
    let mut out: Vec<(String, bool)> = Vec::new();
    for (image, everywhere) in v {
        match out.iter_mut().find(|(i, _)| *i == image) {
            Some(seen) => seen.1 |= everywhere,
            None => out.push((image, everywhere)),
        }
    }
    out
}

/// The stack: compose file, Prometheus's configuration and rules,
/// Alertmanager's configuration, Grafana's provisioning and dashboards.
pub fn stack(spec: &ClusterSpec) -> StackFiles {
    let m = &spec.monitoring;
    let mut files = vec![
        ("prometheus.yml".to_string(), prometheus_yml(spec)),
        ("rules.yml".to_string(), rules_yml(spec)),
    ];
    let mut configs = vec![
        ("prometheus", "prometheus.yml".to_string(), String::new()),
        ("rules", "rules.yml".to_string(), String::new()),
    ];
    if m.alertmanager {
        files.push(("alertmanager.yml".into(), alertmanager_yml(spec)));
        configs.push(("alertmanager", "alertmanager.yml".into(), String::new()));
    }
    let mut dashboards = Vec::new();
    if m.grafana {
        files.push(("grafana-datasource.yml".into(), grafana::datasource_yml()));
        files.push(("grafana-dashboards.yml".into(), grafana::dashboards_yml()));
        configs.push((
            "grafana-datasource",
            "grafana-datasource.yml".into(),
            String::new(),
        ));
        configs.push((
            "grafana-dashboards",
            "grafana-dashboards.yml".into(),
            String::new(),
        ));
        for (d, _) in grafana::dashboards() {
            let file = format!("dashboard-{}.json", d.uid);
            let json = serde_json::to_string_pretty(&grafana::to_json(&d))
                .expect("a dashboard serialises");
            files.push((file.clone(), json));
            configs.push(("dashboard", file, d.uid.to_string()));
        }
    }
    let content = |file: &str| {
        files
            .iter()
            .find(|(n, _)| n == file)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    };
    let refs: Vec<ConfigRef> = configs
        .iter()
        .map(|(key, file, uid)| {
            let key = if uid.is_empty() {
                key.to_string()
            } else {
                format!("dashboard-{uid}")
            };
            ConfigRef {
                name: format!("clusterkit-{key}-{}", content_hash(&content(file))),
                key,
                file: file.clone(),
                uid: uid.clone(),
            }
        })
        .collect();
    for r in refs.iter().filter(|r| !r.uid.is_empty()) {
        dashboards.push(r);
    }
    let env = minijinja::Environment::new();
    let compose = env
        .render_str(
            include_str!("templates/monitor-stack.yml"),
            minijinja::context! {
                name => spec.name,
                retention => m.retention,
                prometheus_replicas => m.prometheus_replicas,
                images => minijinja::context! {
                    prometheus => m.images.prometheus,
                    node_exporter => m.images.node_exporter,
                    cadvisor => m.images.cadvisor,
                    alertmanager => m.images.alertmanager,
                    grafana => m.images.grafana,
                },
                cadvisor => m.cadvisor,
                alertmanager => m.alertmanager,
                grafana => m.grafana,
                // JSON is YAML: a quoted string whatever the login holds.
                admin_user => serde_json::to_string(&m.grafana_admin_user).expect("a string serialises"),
                grafana_secret => GRAFANA_SECRET,
                volume_driver => m.volume_driver,
                // The storage's driver takes each volume's place in its
                // bucket as the `remote` option (clusterkit-storage's
                // DriverConfig::remote): `clusterkit:volumes/<volume>`.
                stack => STACK,
                dashboards_dir => grafana::DASHBOARDS_DIR,
                dashboards => dashboards,
                configs => refs,
            },
        )
        .expect("the bundled templates render");
    StackFiles { compose, files }
}

fn render(template: &str, spec: &ClusterSpec) -> String {
    let env = minijinja::Environment::new();
    env.render_str(
        template,
        minijinja::context! {
            name => spec.name,
            cadvisor => spec.monitoring.cadvisor,
            alertmanager => spec.monitoring.alertmanager,
            garage => spec.storage.backend == StorageBackend::Garage,
            network => "clusterkit",
        },
    )
    .expect("the bundled templates render")
}

/// `prometheus.yml`.
pub fn prometheus_yml(spec: &ClusterSpec) -> String {
    render(include_str!("templates/prometheus.yml"), spec)
}

/// `rules.yml`: node down, disk almost full, memory pressure, manager
/// unreachable, quorum at risk, a service restarting in a loop (cAdvisor),
/// storage node down and storage unavailable (Garage), and Watchdog, always
/// firing, which proves the alert pipeline works end to end.
pub fn rules_yml(spec: &ClusterSpec) -> String {
    render(include_str!("templates/rules.yml"), spec)
}

/// `alertmanager.yml`: every alert grouped by name and node to one
/// receiver, `default`, with no integration: add yours (mail, webhook,
/// chat) there. Watchdog goes to `watchdog`, which drops it.
pub fn alertmanager_yml(spec: &ClusterSpec) -> String {
    render(include_str!("templates/alertmanager.yml"), spec)
}

/// Every PromQL expression of the rules (`expr:` lines), in order.
pub fn rule_expressions(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(str::to_string)
        .collect()
}
