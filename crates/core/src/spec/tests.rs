use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use proptest::prelude::*;

use super::*;
use crate::alloc::{allocate, capacity};

fn ini(text: &str) -> Result<Built, Problems> {
    let mut problems = Problems::default();
    let inv = Inventory::parse(
        SourceFile::new("hosts.ini", text),
        Format::Ini,
        &mut problems,
    );
    assert!(!problems.has_errors(), "{problems:?}");
    build(None, Some(&inv), &State::default(), &|_| None)
}

#[test]
fn seed_inventory_builds_with_defaults() {
    let b = ini("[servers]\nnode1 ansible_host=192.168.1.1 ansible_user=root\nnode2 ansible_host=192.168.1.2 ansible_user=root\nnode3 ansible_host=192.168.1.3 ansible_user=root\n").unwrap();
    let s = &b.spec;
    assert_eq!(s.nodes.len(), 3);
    assert!(s.nodes.iter().all(|n| n.role == SwarmRole::Manager));
    assert_eq!(s.mesh.cidr.to_string(), "10.0.0.0/24");
    assert_eq!(s.swarm.default_addr_pool.to_string(), "10.200.0.0/16");
    assert_eq!(s.storage.replication, 3);
    assert_eq!(b.state.mesh_addresses["node3"], Ipv4Addr::new(10, 0, 0, 3));
}

#[test]
fn managers_capped_and_even_count_warned() {
    let hosts: String = (1..=9)
        .map(|i| format!("n{i} ansible_host=10.9.0.{i}\n"))
        .collect();
    let b = ini(&format!("[s]\n{hosts}")).unwrap();
    assert_eq!(b.spec.managers().count(), 7);
    assert!(b.warnings.0.is_empty());
    let b = ini("[s]\na ansible_host=10.9.0.1\nb ansible_host=10.9.0.2\n").unwrap();
    assert_eq!(b.warnings.warnings().count(), 1);
    assert!(b.warnings.0[0].message.contains("tolerate 0 loss"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = ini("[s]\na ansible_host=10.9.0.1 ansible_port=0\nb ansible_host=10.9.0.1 ansible_port=0\nc ansible_host=bad_host\n").unwrap_err();
    assert_eq!(e.errors().count(), 4, "{e:?}");
}

fn name(i: usize) -> NodeName {
    NodeName::new(&format!("n{i}")).unwrap()
}

proptest! {
    /// Adding and removing nodes never moves the nodes that stay, and never
    /// hands out the network, the broadcast address or a duplicate.
    #[test]
    fn allocation_is_stable(
        prefix in 24u8..=29,
        first in proptest::collection::btree_set(0usize..40, 1..12),
        second in proptest::collection::btree_set(0usize..40, 1..12),
    ) {
        let cidr = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), prefix).unwrap();
        let round = |set: &std::collections::BTreeSet<usize>, prev: &BTreeMap<NodeName, Ipv4Addr>| {
            let nodes: Vec<_> = set.iter().map(|i| (name(*i), None)).collect();
            allocate(cidr, &nodes, prev)
        };
        let Ok(a) = round(&first, &BTreeMap::new()) else {
            prop_assert!((first.len() as u64) > capacity(cidr));
            return Ok(());
        };
        let Ok(b) = round(&second, &a.addresses) else {
            prop_assert!((second.len() as u64) > capacity(cidr));
            return Ok(());
        };
        for alloc in [&a, &b] {
            let addrs: Vec<_> = alloc.addresses.values().collect();
            let unique: std::collections::HashSet<_> = addrs.iter().collect();
            prop_assert_eq!(unique.len(), addrs.len());
            for ip in addrs {
                prop_assert!(cidr.contains(ip));
                prop_assert_ne!(*ip, cidr.network());
                prop_assert_ne!(*ip, cidr.broadcast());
            }
        }
        prop_assert!(b.renumbered.is_empty());
        for (n, ip) in &b.addresses {
            if let Some(old) = a.addresses.get(n) {
                prop_assert_eq!(old, ip, "{} moved", n);
            }
        }
        // Deterministic: the same input gives the same output.
        prop_assert_eq!(round(&second, &a.addresses).unwrap(), b);
    }
}

#[test]
fn pins_win_and_displace_an_earlier_holder() {
    let cidr: Ipv4Net = "10.0.0.0/29".parse().unwrap();
    let prev = BTreeMap::from([(name(1), Ipv4Addr::new(10, 0, 0, 1))]);
    let a = allocate(
        cidr,
        &[(name(1), None), (name(2), Some(Ipv4Addr::new(10, 0, 0, 1)))],
        &prev,
    )
    .unwrap();
    assert_eq!(a.addresses[&name(2)], Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(a.addresses[&name(1)], Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(a.renumbered, vec![(name(1), Ipv4Addr::new(10, 0, 0, 1))]);
}

#[test]
fn durations() {
    for ok in ["15d", "1y", "12h30m", "500ms"] {
        assert!(is_duration(ok), "{ok}");
    }
    for bad in ["", "15", "d", "15 days", "1x"] {
        assert!(!is_duration(bad), "{bad}");
    }
}

/// Builds from a config text and an INI inventory over a given state.
fn with_state(config: &str, hosts: &str, state: &State) -> Result<Built, Problems> {
    let mut problems = Problems::default();
    let inv = Inventory::parse(
        SourceFile::new("hosts.ini", hosts),
        Format::Ini,
        &mut problems,
    );
    let file = SourceFile::new("clusterkit.toml", config);
    let cfg = crate::config::ConfigFile::parse(&file, &mut problems).expect("parses");
    assert!(!problems.has_errors(), "{problems:?}");
    build(Some((file, cfg)), Some(&inv), state, &|_| None)
}

const THREE: &str = "[s]\nnode1 ansible_host=192.0.2.1\nnode2 ansible_host=192.0.2.2\nnode3 ansible_host=192.0.2.3\n";

#[test]
fn a_removed_node_is_left_out_with_a_warning_at_its_inventory_line() {
    let first = with_state("", THREE, &State::default()).unwrap();
    let mut state = first.state.clone();
    let addr = state.mesh_addresses.remove("node3").unwrap();
    state.removed.insert("node3".into(), addr);
    let b = with_state("", THREE, &state).unwrap();
    let names: Vec<&str> = b.spec.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2"]);
    let w: Vec<String> = b.warnings.warnings().map(|p| p.message.clone()).collect();
    assert!(
        w.iter().any(|m| m.contains("node `node3` was removed")),
        "{w:?}"
    );
    let removed = b
        .warnings
        .warnings()
        .find(|p| p.message.contains("node3"))
        .unwrap();
    assert!(
        format!("{removed:?}").contains("hosts.ini"),
        "located: {removed:?}"
    );
    // 2 managers: the quorum warning too.
    assert!(w.iter().any(|m| m.contains("tolerate 0 loss")), "{w:?}");
    // The store made with 3 copies keeps them: degraded, not an error.
    assert_eq!(b.spec.storage.replication, 3);
    assert!(w.iter().any(|m| m.contains("runs degraded")), "{w:?}");
    assert_eq!(b.state.removed["node3"], addr);
}

#[test]
fn the_storage_copies_are_fixed_once_recorded() {
    let b = with_state("", THREE, &State::default()).unwrap();
    assert_eq!(b.state.storage_replication, Some(3));
    let e = with_state("[storage]\nreplication = 2\n", THREE, &b.state).unwrap_err();
    assert!(
        e.errors()
            .any(|p| p.message.contains("the storage was made with 3 copies")),
        "{e:?}"
    );
    // Never recorded: the given value is the one, and is recorded.
    let b = with_state("[storage]\nreplication = 2\n", THREE, &State::default()).unwrap();
    assert_eq!(b.state.storage_replication, Some(2));
    // No storage, nothing recorded.
    let b = with_state("[storage]\nbackend = \"none\"\n", THREE, &State::default()).unwrap();
    assert_eq!(b.state.storage_replication, None);
}

#[test]
fn prometheus_replicas_default_to_two_on_their_own_managers() {
    let b = with_state("", THREE, &State::default()).unwrap();
    assert_eq!(b.spec.monitoring.prometheus_replicas, 2);
    let one = with_state("", "[s]\nnode1 ansible_host=192.0.2.1\n", &State::default()).unwrap();
    assert_eq!(one.spec.monitoring.prometheus_replicas, 1);
    let e = with_state(
        "[monitoring]\nprometheus_replicas = 4\n",
        THREE,
        &State::default(),
    )
    .unwrap_err();
    assert!(
        e.errors().any(|p| p
            .message
            .contains("prometheus_replicas is 4 but there are 3 manager(s)")),
        "{e:?}"
    );
}

#[test]
fn the_engine_version_is_checked_where_it_is_written() {
    let b = with_state(
        "[swarm]\nengine_version = \"20.10.24+dfsg1-1+deb12u1+b6\"\n",
        THREE,
        &State::default(),
    )
    .unwrap();
    assert_eq!(
        b.spec.swarm.engine_version.as_deref(),
        Some("20.10.24+dfsg1-1+deb12u1+b6")
    );
    let e = with_state(
        "[swarm]\nengine_version = \"latest; reboot\"\n",
        THREE,
        &State::default(),
    )
    .unwrap_err();
    let text = format!("{e:?}");
    assert!(
        text.contains("bad package version") && text.contains("apt-cache policy docker.io"),
        "{text}"
    );
}

#[test]
fn the_engine_the_nodes_ran_together_is_kept_beside_the_configured_pin() {
    let recorded = State {
        engine_version: Some("20.10.24+dfsg1-1+deb12u1+b6".into()),
        ..State::default()
    };
    let b = with_state("", THREE, &recorded).unwrap();
    assert_eq!(b.spec.swarm.engine_version, None);
    assert_eq!(
        b.spec.swarm.engine_recorded.as_deref(),
        Some("20.10.24+dfsg1-1+deb12u1+b6")
    );
    assert_eq!(b.state.engine_version, recorded.engine_version);
    // A record that is not a package version never reaches a node's shell.
    let bad = State {
        engine_version: Some("1.0; reboot".into()),
        ..State::default()
    };
    assert_eq!(
        with_state("", THREE, &bad)
            .unwrap()
            .spec
            .swarm
            .engine_recorded,
        None
    );
}

/// Reads a description the way `clusterkit validate` does (a clusterkit.toml,
/// an INI or a YAML inventory) and builds it; the problems of either step.
fn hostile(file: &str, text: &str) -> Result<Built, Problems> {
    let mut problems = Problems::default();
    let src = SourceFile::new(file, text);
    let built = if file.ends_with(".toml") {
        let Some(cfg) = crate::config::ConfigFile::parse(&src, &mut problems) else {
            return Err(problems);
        };
        build(Some((src, cfg)), None, &State::default(), &|p| {
            Some(PathBuf::from(p))
        })
    } else {
        let format = if file.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Yaml
        };
        let inv = Inventory::parse(src, format, &mut problems);
        if problems.has_errors() {
            return Err(problems);
        }
        build(None, Some(&inv), &State::default(), &|_| None)
    };
    built.map_err(|mut p| {
        p.0.splice(0..0, problems.0);
        p
    })
}

const NODES: &str = "[[nodes]]\nname = \"node1\"\naddress = \"192.0.2.1\"\n\n[[nodes]]\nname = \"node2\"\naddress = \"192.0.2.2\"\n\n[[nodes]]\nname = \"node3\"\naddress = \"192.0.2.3\"\n";

fn toml_with(extra: &str) -> String {
    format!("{extra}\n{NODES}")
}

fn toml_node(fields: &str) -> String {
    format!("[[nodes]]\nname = \"node1\"\n{fields}\n")
}

/// Descriptions an attacker (or a slip) would write: values that would run a
/// command in a root shell, add a key or a line to a rendered file, name a
/// file outside clusterkit's own, or cost minutes to read. Every one is
/// refused with its place and what is wrong, none panics, none takes long.
#[test]
fn hostile_descriptions_are_each_refused_at_their_place() {
    let cases: Vec<(&str, &str, String)> = vec![
        ("name with a line break", "clusterkit.toml", toml_with("name = \"a\\nb\"")),
        ("name in capitals", "clusterkit.toml", toml_with("name = \"Prod\"")),
        ("name climbing directories", "clusterkit.toml", toml_with("name = \"../../x\"")),
        ("name empty", "clusterkit.toml", toml_with("name = \"\"")),
        ("name with a command", "clusterkit.toml", toml_with("name = \"x$(id)\"")),
        ("data path with a command", "clusterkit.toml", toml_with("[storage]\ndata_path = \"/srv/ck; touch /tmp/x #\"")),
        ("data path the root", "clusterkit.toml", toml_with("[storage]\ndata_path = \"/\"")),
        ("data path in /etc", "clusterkit.toml", toml_with("[storage]\ndata_path = \"/etc/ssh\"")),
        ("data path climbing", "clusterkit.toml", toml_with("[storage]\ndata_path = \"/srv/../etc\"")),
        ("data path relative", "clusterkit.toml", toml_with("[storage]\ndata_path = \"srv\"")),
        ("data path docker's", "clusterkit.toml", toml_with("[storage]\ndata_path = \"/var/lib/docker/volumes\"")),
        ("storage image adding a key", "clusterkit.toml", toml_with("[storage]\nimage = \"garage\\n    privileged: true\"")),
        ("prometheus image with a command", "clusterkit.toml", toml_with("[monitoring]\nprometheus_image = \"prom/prometheus:v3;rm\"")),
        ("exporter image as a command", "clusterkit.toml", toml_with("[monitoring]\nnode_exporter_image = \"$(id)\"")),
        ("grafana image in capitals", "clusterkit.toml", toml_with("[monitoring]\ngrafana_image = \"Grafana/grafana\"")),
        ("cadvisor image bad digest", "clusterkit.toml", toml_with("[monitoring]\ncadvisor_image = \"x@sha256:zz\"")),
        ("alertmanager image empty", "clusterkit.toml", toml_with("[monitoring]\nalertmanager_image = \"\"")),
        ("grafana login adding a variable", "clusterkit.toml", toml_with("[monitoring]\ngrafana_admin_user = \"admin\\n  GF_AUTH_ANONYMOUS_ENABLED: 1\"")),
        ("retention with more", "clusterkit.toml", toml_with("[monitoring]\nretention = \"15d; x\"")),
        ("volume driver unknown", "clusterkit.toml", toml_with("[monitoring]\nvolume_driver = \"../x\"")),
        ("stack name climbing", "clusterkit.toml", toml_with("[[stacks]]\nname = \"../../x\"\nfile = \"app.yml\"")),
        ("stack name in capitals", "clusterkit.toml", toml_with("[[stacks]]\nname = \"App\"\nfile = \"app.yml\"")),
        ("stack name with a line break", "clusterkit.toml", toml_with("[[stacks]]\nname = \"a\\nb\"\nfile = \"app.yml\"")),
        ("user with a command", "clusterkit.toml", toml_node("address = \"192.0.2.1\"\nuser = \"root; id\"")),
        ("user substituted", "clusterkit.toml", toml_node("address = \"192.0.2.1\"\nuser = \"$(id)\"")),
        ("user as an ssh option", "clusterkit.toml", toml_node("address = \"192.0.2.1\"\nuser = \"-oProxyCommand=sh\"")),
        ("address out of range", "clusterkit.toml", toml_node("address = \"999.1.1.1\"")),
        ("address with a command", "clusterkit.toml", toml_node("address = \"192.0.2.1; id\"")),
        ("address with a space", "clusterkit.toml", toml_node("address = \"host name\"")),
        ("jump host with a command", "clusterkit.toml", toml_node("address = \"192.0.2.1\"\njump = \"admin@bastion;id\"")),
        ("jump user substituted", "clusterkit.toml", toml_node("address = \"192.0.2.1\"\njump = \"$(id)@bastion\"")),
        ("node name climbing", "clusterkit.toml", "[[nodes]]\nname = \"../x\"\naddress = \"192.0.2.1\"\n".to_string()),
        ("node name with a line break", "clusterkit.toml", "[[nodes]]\nname = \"node\\n1\"\naddress = \"192.0.2.1\"\n".to_string()),
        ("interface with a command", "clusterkit.toml", toml_with("[mesh]\ninterface = \"wg0;id\"")),
        ("mesh network with a line break", "clusterkit.toml", toml_with("[mesh]\ncidr = \"10.0.0.0/24\\n\"")),
        ("engine version with a command", "clusterkit.toml", toml_with("[swarm]\nengine_version = \"1; rm -rf /\"")),
        ("backend unknown", "clusterkit.toml", toml_with("[mesh]\nbackend = \"evil\"")),
        ("port out of range", "clusterkit.toml", toml_node("address = \"192.0.2.1\"\nport = 70000")),
        ("unknown key", "clusterkit.toml", toml_with("[ssh]\nstrict_host_key = true")),
        ("ini address out of range", "hosts.ini", "[s]\nnode1 ansible_host=999.1.1.1\n".into()),
        ("ini user with a command", "hosts.ini", "[s]\nnode1 ansible_host=192.0.2.1 ansible_user='root;id'\n".into()),
        ("ini jump substituted", "hosts.ini", "[s]\nnode1 ansible_host=192.0.2.1 ansible_ssh_common_args='-o ProxyJump=$(id)@b'\n".into()),
        ("ini range too large", "hosts.ini", "[s]\nnode[1:200000]\n".into()),
        ("ini mesh address with more", "hosts.ini", "[s]\nnode1 ansible_host=192.0.2.1 clusterkit_mesh_address=10.0.0.1;id\n".into()),
        ("ini node name substituted", "hosts.ini", "[s]\nnode$(id) ansible_host=192.0.2.1\n".into()),
        ("yaml address with a line break", "hosts.yml", "all:\n  hosts:\n    node1:\n      ansible_host: \"192.0.2.1\\nx\"\n".into()),
        ("yaml user with a space", "hosts.yml", "all:\n  hosts:\n    node1:\n      ansible_host: 192.0.2.1\n      ansible_user: \"a b\"\n".into()),
    ];
    assert!(cases.len() >= 40, "{}", cases.len());
    let mut table = String::new();
    for (what, file, text) in &cases {
        let start = std::time::Instant::now();
        let got = std::panic::catch_unwind(|| hostile(file, text));
        let took = start.elapsed();
        let got = got.unwrap_or_else(|_| panic!("{what}: panicked"));
        assert!(took < std::time::Duration::from_secs(2), "{what}: {took:?}");
        let problems = match got {
            Ok(_) => panic!("{what}: accepted:\n{text}"),
            Err(p) => p,
        };
        let first = problems
            .errors()
            .next()
            .unwrap_or_else(|| panic!("{what}: no error, only {problems:?}"));
        let at = first
            .location()
            .unwrap_or_else(|| panic!("{what}: no place: {first:?}"));
        table.push_str(&format!("{what}\n  {at}: {}\n", first.message));
    }
    insta::assert_snapshot!("hostile_descriptions", table);
}

#[test]
fn ipv6_hosts_are_accepted_and_written_in_brackets() {
    let b = ini("[servers]\nnode1 ansible_host=2001:db8::1\nnode2 ansible_host=2001:db8::2 ansible_port=2222\nnode3 ansible_host=192.168.1.3\n").unwrap();
    let p = crate::plan::plan(&b.spec);
    assert_eq!(p.nodes[0].endpoint, "[2001:db8::1]:51820");
    assert_eq!(p.nodes[2].endpoint, "192.168.1.3:51820");
    assert_eq!(b.spec.nodes[1].ssh.to_string(), "root@[2001:db8::2]:2222");
}

#[test]
fn the_monitoring_uis_are_named_only_where_they_run_and_each_name_is_checked() {
    let on = "[ingress]\nenabled = true\n";
    let b = hostile(
        "clusterkit.toml",
        &toml_with(&format!(
            "[monitoring]\nalertmanager = true\n{on}prometheus_host = \"Prometheus.Example.com.\"\nalertmanager_host = \"am.example.com\"\ngrafana_host = \"grafana.example.com\"\n"
        )),
    )
    .unwrap();
    let h = &b.spec.ingress.monitoring;
    assert_eq!(h.prometheus.as_deref(), Some("prometheus.example.com"));
    assert_eq!(h.alertmanager.as_deref(), Some("am.example.com"));
    assert_eq!(h.grafana.as_deref(), Some("grafana.example.com"));
    assert_eq!(
        hostile("clusterkit.toml", &toml_with(on))
            .unwrap()
            .spec
            .ingress
            .monitoring,
        crate::spec::MonitoringHosts::default()
    );
    for (what, extra, says) in [
        (
            "a UI that does not run",
            format!("[monitoring]\ngrafana = false\n{on}grafana_host = \"g.example.com\"\n"),
            "ingress.grafana_host names a UI that is not served: it does not run (monitoring.grafana = false)",
        ),
        (
            "the ingress off",
            "[ingress]\nprometheus_host = \"p.example.com\"\n".to_string(),
            "ingress.prometheus_host names a UI that is not served: the ingress is off (ingress.enabled)",
        ),
        (
            "monitoring off",
            format!("[monitoring]\nenabled = false\n{on}prometheus_host = \"p.example.com\"\n"),
            "monitoring is off (monitoring.enabled)",
        ),
        (
            "a wildcard",
            format!("{on}prometheus_host = \"*.example.com\"\n"),
            "ingress.prometheus_host `*.example.com` is a wildcard",
        ),
        (
            "a line break",
            format!("{on}prometheus_host = \"p.example.com\\n  evil: 1\"\n"),
            "ingress.prometheus_host",
        ),
        (
            "one name twice",
            format!("[monitoring]\nalertmanager = true\n{on}prometheus_host = \"m.example.com\"\nalertmanager_host = \"M.example.com\"\n"),
            "`m.example.com` names two monitoring UIs in [ingress]",
        ),
    ] {
        let e = hostile("clusterkit.toml", &toml_with(&extra)).unwrap_err();
        let text = format!("{e:?}");
        assert!(text.contains(says), "{what}: {text}");
    }
}

#[test]
fn a_node_may_stay_out_of_the_ingress_but_not_every_one() {
    let b =
        ini("[s]\nn1 ansible_host=192.0.2.1\nn2 ansible_host=192.0.2.2 clusterkit_ingress=false\n")
            .unwrap();
    let serving: Vec<bool> = b.spec.nodes.iter().map(|n| n.ingress).collect();
    assert_eq!(serving, [true, false]);
    let e = ini("[s]\nn1 ansible_host=192.0.2.1 clusterkit_ingress=perhaps\n").unwrap_err();
    assert!(
        format!("{e:?}").contains("ingress must be true or false, not `perhaps`"),
        "{e:?}"
    );
    let none = "[[nodes]]\nname = \"node1\"\naddress = \"192.0.2.1\"\ningress = false\n";
    let e = hostile(
        "clusterkit.toml",
        &format!("[ingress]\nenabled = true\n{none}"),
    )
    .unwrap_err();
    assert!(
        format!("{e:?}").contains("the ingress is on, but no node serves it"),
        "{e:?}"
    );
    // The ingress off: nothing to serve, nothing to say.
    assert!(hostile("clusterkit.toml", none).is_ok());
}
