//! The files `sandbox up` writes for the user: inventory, config, known_hosts.
//! Pure rendering, so they can be checked in tests.

use crate::NodeInfo;

/// `hosts.ini`: an Ansible inventory of the sandbox, usable by clusterkit and by Ansible.
pub fn hosts_ini(name: &str, subnet: &str, key: &str, nodes: &[NodeInfo]) -> String {
    let mut out = format!(
        "# clusterkit sandbox `{name}`: {} node(s) on {subnet}, written by `clusterkit sandbox up`.\n[servers]\n",
        nodes.len()
    );
    for n in nodes {
        out.push_str(&format!("{} ansible_host={}\n", n.hostname, n.address));
    }
    out.push_str(&format!(
        "\n[all:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\n"
    ));
    out
}

/// `clusterkit.toml` for the sandbox: the inventory beside it, everything
/// else at its default; with the sandbox's CA, the ingress on and trusting
/// it.
pub fn clusterkit_toml(name: &str, ca: Option<&crate::Ca>) -> String {
    let ingress = match ca {
        Some(ca) => format!(
            "\n\
             # HTTPS on every node: the example app at https://app.{domain}, its certificate\n\
             # ordered once for the cluster from the sandbox's ACME CA (Pebble, validating\n\
             # through any node: its resolver answers *.{domain} with every node).\n\
             [ingress]\n\
             enabled = true\n\
             acme_ca = \"{directory}\"\n\
             acme_ca_root = \"pebble-api-root.pem\"\n\
             image = \"{caddy}\"\n\
             routes_image = \"{caddy}\"\n\
             # Prometheus and Alertmanager by name too, behind the monitoring API's user\n\
             # (`clusterkit monitor password --api`).\n\
             prometheus_host = \"prometheus.{domain}\"\n\
             alertmanager_host = \"alertmanager.{domain}\"\n",
            domain = crate::CA_DOMAIN,
            directory = ca.directory,
            caddy = crate::image::CADDY.alias_tag(),
        ),
        None => String::new(),
    };
    format!(
        "# clusterkit sandbox `{name}`, written by `clusterkit sandbox up`.\n\
         # Try: clusterkit validate -c THIS_FILE ; clusterkit plan -c THIS_FILE\n\
         name = \"{name}\"\n\
         inventory = \"hosts.ini\"\n\
         \n\
         # No registry is assumed: the images are the ones `clusterkit sandbox build-images`\n\
         # makes. Garage from its crate, laid out as Garage's own image (dxflrs/garage, the\n\
         # default where nodes can pull):\n\
         [storage]\n\
         image = \"{garage}\"\n\
         \n\
         # Monitoring from Debian's packages (cAdvisor from bullseye's). Debian has no\n\
         # Grafana; push its image (`clusterkit images push`) and turn it on to try it.\n\
         [monitoring]\n\
         prometheus_image = \"{prometheus}\"\n\
         node_exporter_image = \"{node_exporter}\"\n\
         alertmanager_image = \"{alertmanager}\"\n\
         cadvisor_image = \"{cadvisor}\"\n\
         alertmanager = true\n\
         grafana = false\n\
         cadvisor = true\n\
         \n\
         # clusterkit's example application (image built by `sandbox build-images`),\n\
         # scraped by Prometheus because of its labels.\n\
         [[stacks]]\n\
         name = \"app\"\n\
         file = \"app.yml\"\n\
         {ingress}",
        prometheus = crate::image::PROMETHEUS.alias_tag(),
        node_exporter = crate::image::NODE_EXPORTER.alias_tag(),
        alertmanager = crate::image::ALERTMANAGER.alias_tag(),
        cadvisor = crate::image::CADVISOR.alias_tag(),
        garage = crate::image::GARAGE.alias_tag(),
    )
}

/// `known_hosts` lines for the nodes' host keys, read through the engine
/// (a trusted channel), so SSH can check them strictly from the first contact.
pub fn known_hosts(nodes: &[(NodeInfo, String)]) -> String {
    nodes
        .iter()
        .map(|(n, key)| {
            format!(
                "{} {}\n",
                n.address,
                key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
            )
        })
        .collect()
}

/// The example application's stack file, written beside `clusterkit.toml`.
pub const EXAMPLE_STACK: &str = include_str!("../assets/app.yml");
