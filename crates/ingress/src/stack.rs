//! The ingress's Swarm stack, `clusterkit-ingress` (pure, snapshotted):
//!
//! - `edge`: Caddy on every node (a global service), 80 and 443 published
//!   in host mode (the routing mesh needs IPVS, which is not assumed), on
//!   the `clusterkit` overlay to reach applications' tasks and on the
//!   stack's own overlay `control`; the shared certificates read-only;
//! - `issuer`: one Caddy task for the cluster, the only writer of the
//!   shared storage (the ACME account, keys and certificates on a
//!   `clusterkit` volume, so it survives its node);
//! - `routes`: the route watcher ([`crate::serve`]) on a manager:
//!   clusterkit itself, mounted from the node into a plain image, with the
//!   engine's socket.
//!
//! The Caddies start with a configuration that only pulls
//! ([`crate::serve::bootstrap`]); everything else comes from the route
//! watcher. Each file is a Swarm config named after its content, so a
//! change rolls the services that use it and nothing else.

use clusterkit_core::spec::{ClusterSpec, IngressTls};
use clusterkit_core::stack::StackFiles;

use crate::caddy::Tls;
use crate::serve::{bootstrap, ServeOptions, PORT};

/// The stack's name.
pub const STACK: &str = "clusterkit-ingress";
/// Its directory on the manager that deploys it.
pub const DIR: &str = "/etc/clusterkit/ingress";
/// The shared storage's root in every container of the stack.
pub const STORAGE_ROOT: &str = "/certs";
/// Where the issuer finds the roots it trusts for a private CA's API.
pub const CA_ROOT_IN_TASK: &str = "/etc/clusterkit/acme-ca-root.pem";
/// Where the route watcher finds its options.
pub const OPTIONS_IN_TASK: &str = "/etc/clusterkit/ingress-serve.json";
/// clusterkit's executable on each manager, mounted into the route watcher.
pub const BINARY: &str = clusterkit_core::schedule::BINARY;
/// How often the Caddies pull their configuration.
pub const PULL_EVERY: &str = "3s";
/// The services, in the order they are listed.
pub const SERVICES: [&str; 3] = ["routes", "issuer", "edge"];

/// The route watcher's options for `spec` (`ca_root`: whether a CA root
/// file is mounted for the issuer).
pub fn options(spec: &ClusterSpec) -> ServeOptions {
    let i = &spec.ingress;
    let tls = match i.tls {
        IngressTls::Internal => Tls::Internal,
        IngressTls::Acme => Tls::Acme {
            ca: i.acme_ca.clone(),
            email: i.acme_email.clone(),
            trusted_roots: i.acme_ca_root.as_ref().map(|_| CA_ROOT_IN_TASK.to_string()),
        },
    };
    ServeOptions {
        tls,
        storage_root: STORAGE_ROOT.into(),
        issuer: format!("tasks.{STACK}_issuer:80"),
        url: format!("http://tasks.{STACK}_routes:{PORT}"),
        pull_every: PULL_EVERY.into(),
        listen: format!("0.0.0.0:{PORT}"),
        edges: Some(format!("tasks.{STACK}_edge")),
    }
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

/// Each service's image, by compose name (what an upgrade rolls).
pub fn service_images(spec: &ClusterSpec) -> Vec<(&'static str, String)> {
    let i = &spec.ingress;
    vec![
        ("routes", i.routes_image.clone()),
        ("issuer", i.image.clone()),
        ("edge", i.image.clone()),
    ]
}

/// The monitoring stack's own overlay, where Alertmanager listens (and
/// only Prometheus reaches it): the edges join it when `alertmanager_host`
/// is set, as no application can.
pub const ALERTING_NETWORK: &str = "clusterkit-monitoring_alerting";

/// The stack's files. `ca_root` is the content of `[ingress] acme_ca_root`
/// when set (read by the caller: this function touches no file).
pub fn stack(spec: &ClusterSpec, ca_root: Option<&str>) -> StackFiles {
    let i = &spec.ingress;
    let o = options(spec);
    let serve = serde_json::to_string_pretty(&o).expect("options serialise") + "\n";
    let boot = |path: &str| {
        serde_json::to_string_pretty(&bootstrap(&format!("{}/{path}", o.url), PULL_EVERY))
            .expect("a configuration serialises")
            + "\n"
    };
    let (edge_boot, issuer_boot) = (boot("edge"), boot("issuer"));
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut files = vec![
        ("serve.json".to_string(), serve),
        ("edge.json".to_string(), edge_boot),
        ("issuer.json".to_string(), issuer_boot),
    ];
    if let Some(root) = ca_root {
        files.push(("ca-root.pem".to_string(), root.to_string()));
    }
    let name = |file: &str, content: &str| {
        format!(
            "{STACK}-{}-{}",
            file.split('.').next().unwrap_or(file),
            short_hash(content)
        )
    };
    let config_of = |file: &str| {
        let content = &files.iter().find(|(f, _)| f == file).expect("listed").1;
        name(file, content)
    };
    let ca_mount = if ca_root.is_some() {
        format!(
            "\n\x20     - {{ source: {}, target: {CA_ROOT_IN_TASK}, mode: 0444 }}",
            config_of("ca-root.pem")
        )
    } else {
        String::new()
    };
    let caddy_env = "\x20   environment:\n\
\x20     XDG_DATA_HOME: /tmp/caddy-data\n\
\x20     XDG_CONFIG_HOME: /tmp/caddy-config\n";
    let (edge_nets, alerting_net) = if i.monitoring.alertmanager.is_some() {
        (
            "control, clusterkit, alerting",
            format!("\x20 alerting:\n\x20   external: true\n\x20   name: {ALERTING_NETWORK}\n"),
        )
    } else {
        ("control, clusterkit", String::new())
    };
    let mut configs = String::new();
    for (file, content) in &files {
        let n = name(file, content);
        configs.push_str(&format!(
            "\x20 {n}:\n\x20   name: {n}\n\x20   file: ./{file}\n"
        ));
    }
    let compose = format!(
        "# Written by clusterkit (`up`, [ingress]); changed by it only.\n\
version: \"3.8\"\n\
services:\n\
\x20 routes:\n\
\x20   image: {routes_image}\n\
\x20   entrypoint: [\"/usr/local/bin/clusterkit\"]\n\
\x20   command: [\"ingress\", \"serve\", \"--options\", \"{OPTIONS_IN_TASK}\"]\n\
\x20   networks: [control]\n\
\x20   volumes:\n\
\x20     - {{ type: bind, source: {BINARY}, target: /usr/local/bin/clusterkit, read_only: true }}\n\
\x20     - {{ type: bind, source: /var/run/docker.sock, target: /var/run/docker.sock }}\n\
\x20     - {{ type: volume, source: certs, target: {STORAGE_ROOT}, read_only: true }}\n\
\x20   configs:\n\
\x20     - {{ source: {serve}, target: {OPTIONS_IN_TASK}, mode: 0444 }}\n\
\x20   deploy:\n\
\x20     replicas: 1\n\
\x20     endpoint_mode: dnsrr\n\
\x20     placement:\n\
\x20       constraints: [node.role == manager]\n\
\x20     restart_policy: {{ condition: any, delay: 5s }}\n\
\x20     labels:\n\
\x20       io.clusterkit.component: ingress\n\
\x20 issuer:\n\
\x20   image: {image}\n\
\x20   entrypoint: [\"/usr/bin/caddy\"]\n\
\x20   command: [\"run\", \"--config\", \"/etc/clusterkit/caddy.json\"]\n\
{caddy_env}\
\x20   networks: [control]\n\
\x20   volumes:\n\
\x20     - {{ type: volume, source: certs, target: {STORAGE_ROOT} }}\n\
\x20   configs:\n\
\x20     - {{ source: {issuer_boot}, target: /etc/clusterkit/caddy.json, mode: 0444 }}{ca_mount}\n\
\x20   deploy:\n\
\x20     replicas: 1\n\
\x20     endpoint_mode: dnsrr\n\
\x20     restart_policy: {{ condition: any, delay: 5s }}\n\
\x20     # One writer of the shared storage, even during an update.\n\
\x20     update_config: {{ order: stop-first }}\n\
\x20     labels:\n\
\x20       io.clusterkit.component: ingress\n\
\x20 edge:\n\
\x20   image: {image}\n\
\x20   entrypoint: [\"/usr/bin/caddy\"]\n\
\x20   command: [\"run\", \"--config\", \"/etc/clusterkit/caddy.json\"]\n\
{caddy_env}\
\x20   ports:\n\
\x20     - {{ target: 80, published: 80, protocol: tcp, mode: host }}\n\
\x20     - {{ target: 443, published: 443, protocol: tcp, mode: host }}\n\
\x20   networks: [{edge_nets}]\n\
\x20   volumes:\n\
\x20     - {{ type: volume, source: certs, target: {STORAGE_ROOT}, read_only: true }}\n\
\x20   configs:\n\
\x20     - {{ source: {edge_boot}, target: /etc/clusterkit/caddy.json, mode: 0444 }}\n\
\x20   deploy:\n\
\x20     mode: global\n\
\x20     # The nodes that serve the ingress (`clusterkit_ingress`, true by default).\n\
\x20     placement:\n\
\x20       constraints: [node.labels.clusterkit.ingress == true]\n\
\x20     endpoint_mode: dnsrr\n\
\x20     restart_policy: {{ condition: any, delay: 2s }}\n\
\x20     # Host-mode ports: a node's new edge starts once its old one stopped.\n\
\x20     update_config: {{ parallelism: 1, order: stop-first, delay: 10s, failure_action: rollback }}\n\
\x20     labels:\n\
\x20       io.clusterkit.component: ingress\n\
networks:\n\
\x20 control:\n\
\x20   driver: overlay\n\
\x20   # Sized on the mesh, as `clusterkit` is: VXLAN's packets must fit its tunnel.\n\
\x20   driver_opts: {{ com.docker.network.driver.mtu: \"{mtu}\" }}\n\
\x20 clusterkit:\n\
\x20   external: true\n\
{alerting_net}\
volumes:\n\
\x20 certs:\n\
\x20   driver: clusterkit\n\
\x20   driver_opts: {{ remote: \"clusterkit:volumes/{STACK}_certs\" }}\n\
configs:\n\
{configs}",
        routes_image = q(&i.routes_image),
        image = q(&i.image),
        serve = config_of("serve.json"),
        issuer_boot = config_of("issuer.json"),
        edge_boot = config_of("edge.json"),
        mtu = spec.mesh.mtu,
    );
    StackFiles { compose, files }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// YAML as JSON, every scalar a string.
    fn json(n: &marked_yaml::Node) -> serde_json::Value {
        match n {
            marked_yaml::Node::Scalar(s) => s.as_str().into(),
            marked_yaml::Node::Sequence(q) => q.iter().map(json).collect(),
            marked_yaml::Node::Mapping(m) => m
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    fn spec() -> ClusterSpec {
        let mut s = clusterkit_core::spec::example(3);
        s.ingress.enabled = true;
        s
    }

    #[test]
    fn the_edges_join_alertmanagers_overlay_only_when_it_is_served_by_name() {
        let mut s = spec();
        let yaml =
            |s: &ClusterSpec| json(&marked_yaml::parse_yaml(0, &stack(s, None).compose).unwrap());
        let plain = yaml(&s);
        assert_eq!(
            plain["services"]["edge"]["networks"],
            serde_json::json!(["control", "clusterkit"])
        );
        assert!(plain["networks"]["alerting"].is_null());
        s.ingress.monitoring.alertmanager = Some("am.example.com".into());
        let with = yaml(&s);
        assert_eq!(
            with["services"]["edge"]["networks"],
            serde_json::json!(["control", "clusterkit", "alerting"])
        );
        assert_eq!(with["networks"]["alerting"]["external"], "true");
        assert_eq!(with["networks"]["alerting"]["name"], ALERTING_NETWORK);
        // Neither the issuer nor the route watcher reaches it.
        for svc in ["issuer", "routes"] {
            assert_eq!(
                with["services"][svc]["networks"],
                serde_json::json!(["control"])
            );
        }
    }

    #[test]
    fn the_stack_runs_an_edge_everywhere_one_issuer_and_the_route_watcher_on_a_manager() {
        let mut s = spec();
        s.ingress.acme_ca = "https://172.29.253.250:14000/dir".into();
        s.ingress.acme_ca_root = Some("/cfg/pebble-api-root.pem".into());
        let root = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let st = stack(&s, Some(root));
        insta::assert_snapshot!("ingress_stack", st.compose);
        let yaml = json(&marked_yaml::parse_yaml(0, &st.compose).unwrap());
        let svcs = &yaml["services"];
        assert_eq!(svcs["edge"]["deploy"]["mode"], "global");
        assert_eq!(svcs["edge"]["ports"][1]["mode"], "host");
        assert_eq!(svcs["issuer"]["deploy"]["replicas"], "1");
        assert_eq!(
            svcs["routes"]["deploy"]["placement"]["constraints"][0],
            "node.role == manager"
        );
        // Only the issuer writes the certificates.
        assert_eq!(svcs["edge"]["volumes"][0]["read_only"], "true");
        assert_eq!(svcs["routes"]["volumes"][2]["read_only"], "true");
        assert!(svcs["issuer"]["volumes"][0]["read_only"].is_null());
        // The CA root goes to the issuer, which is told where it is.
        let serve: ServeOptions = serde_json::from_str(&st.files[0].1).unwrap();
        assert_eq!(
            serve.tls,
            Tls::Acme {
                ca: "https://172.29.253.250:14000/dir".into(),
                email: None,
                trusted_roots: Some(CA_ROOT_IN_TASK.into()),
            }
        );
        assert_eq!(st.files[3], ("ca-root.pem".to_string(), root.to_string()));
        assert!(st.compose.contains(&format!("target: {CA_ROOT_IN_TASK}")));
        // A changed file is a config of another name; the others stay.
        let mut other = s.clone();
        other.ingress.acme_email = Some("ops@example.com".into());
        let st2 = stack(&other, Some(root));
        let names = |c: &str| -> Vec<String> {
            c.lines()
                .filter(|l| l.trim_start().starts_with("name: clusterkit-ingress-"))
                .map(str::to_string)
                .collect()
        };
        let (a, b) = (names(&st.compose), names(&st2.compose));
        assert_ne!(a[0], b[0], "serve.json changed");
        assert_eq!(a[1..], b[1..], "the Caddies' bootstrap did not");
    }

    #[test]
    fn hostile_images_are_written_quoted() {
        let mut s = spec();
        s.ingress.image = "caddy:2\nservices: {}".into();
        let st = stack(&s, None);
        assert!(st.compose.contains("image: \"caddy:2\\nservices: {}\""));
        assert!(!st.compose.contains("ca-root"));
    }
}
