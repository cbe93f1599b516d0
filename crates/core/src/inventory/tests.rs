use super::*;
use crate::source::SourceFile;

fn parse(name: &str, text: &str) -> (Inventory, Problems) {
    let mut problems = Problems::default();
    let file = SourceFile::new(name, text);
    let inv = Inventory::parse(file.clone(), Format::guess(name, text), &mut problems);
    (inv, problems)
}

fn names(inv: &Inventory, group: Option<&str>) -> Vec<String> {
    let g = group.map(|g| Located::default_value(g.to_string()));
    inv.hosts_in(g.as_ref(), &mut Problems::default())
        .into_iter()
        .map(|(h, _)| h.name.value)
        .collect()
}

#[test]
fn ini_groups_children_ranges_and_ports() {
    let (inv, p) = parse(
        "hosts.ini",
        "; comment\nbastion.example.com\n[web]\nweb[01:03] ansible_user=deploy\n[db]\ndb-[a:b]:2222 ansible_host=\"10.1.0.1\"  # inline\n\n[prod:children]\nweb\ndb\n",
    );
    assert!(p.0.is_empty(), "{p:?}");
    assert_eq!(
        names(&inv, None),
        [
            "bastion.example.com",
            "web01",
            "web02",
            "web03",
            "db-a",
            "db-b"
        ]
    );
    assert_eq!(names(&inv, Some("prod")).len(), 5);
    assert_eq!(names(&inv, Some("db")), ["db-a", "db-b"]);
    let db = &inv.hosts[4];
    assert_eq!(db.port.as_ref().unwrap().value, "2222");
    assert_eq!(db.vars[0].value.value, "10.1.0.1");
}

#[test]
fn ini_precedence_all_then_parents_then_children_then_host() {
    let (inv, p) = parse(
        "hosts.ini",
        "[a]\nn1\nn2 ansible_user=host\n[b:children]\na\n[b:vars]\nansible_user=parent\nansible_port=2200\n[a:vars]\nansible_user=child\n[all:vars]\nansible_user=all\nansible_port=22\n",
    );
    assert!(p.0.is_empty(), "{p:?}");
    let hosts = inv.hosts_in(None, &mut Problems::default());
    let user = |i: usize| hosts[i].1["ansible_user"].value.value.clone();
    assert_eq!(user(0), "child");
    assert_eq!(user(1), "host");
    assert_eq!(hosts[0].1["ansible_port"].value.value, "2200");
}

#[test]
fn yaml_inventory_reads_like_ini() {
    let (inv, p) = parse(
        "hosts.yml",
        "all:\n  vars:\n    ansible_user: root\n  children:\n    servers:\n      hosts:\n        node[1:3]:\n          ansible_port: 2222\n        extra:\n",
    );
    assert!(p.0.is_empty(), "{p:?}");
    assert_eq!(
        names(&inv, Some("servers")),
        ["node1", "node2", "node3", "extra"]
    );
    let hosts = inv.hosts_in(None, &mut Problems::default());
    assert_eq!(hosts[0].1["ansible_user"].value.value, "root");
    assert_eq!(hosts[2].1["ansible_port"].value.value, "2222");
    // The location points at the key as written.
    let loc = hosts[0].0.name.loc.clone().unwrap();
    assert_eq!(loc.to_string(), "hosts.yml:7:9");
}

#[test]
fn a_host_in_two_groups_is_one_host() {
    let (inv, p) = parse(
        "h.ini",
        "[a]\nn1 ansible_host=10.1.1.1\n[b]\nn1 ansible_port=2222\n",
    );
    assert!(p.0.is_empty(), "{p:?}");
    assert_eq!(inv.hosts.len(), 1);
    assert_eq!(inv.hosts[0].vars.len(), 2);
}

#[test]
fn format_guess() {
    assert_eq!(Format::guess("x", "all:\n  hosts:\n"), Format::Yaml);
    assert_eq!(Format::guess("x", "[servers]\nn1\n"), Format::Ini);
    assert_eq!(Format::guess("x.yaml", "[servers]"), Format::Yaml);
}

#[test]
fn host_patterns() {
    assert_eq!(
        expand_host_pattern("n[0:4:2]x").unwrap(),
        ["n0x", "n2x", "n4x"]
    );
    assert_eq!(
        expand_host_pattern("r[1:2]n[a:b]").unwrap(),
        ["r1na", "r1nb", "r2na", "r2nb"]
    );
    assert!(expand_host_pattern("n[1:]").is_err());
    assert!(expand_host_pattern("n[1:3").is_err());
    assert!(expand_host_pattern("n[a:3]").is_err());
}

#[test]
fn proxy_jump_is_found_in_ssh_arguments_as_inventories_write_them() {
    use super::proxy_jump;
    assert_eq!(
        proxy_jump("-o ProxyJump=admin@bastion:2222").as_deref(),
        Some("admin@bastion:2222")
    );
    assert_eq!(
        proxy_jump("-o StrictHostKeyChecking=no -o 'ProxyJump bastion'").as_deref(),
        Some("bastion")
    );
    assert_eq!(proxy_jump("-oProxyJump=b").as_deref(), Some("b"));
    assert_eq!(
        proxy_jump("-J root@10.1.1.1").as_deref(),
        Some("root@10.1.1.1")
    );
    assert_eq!(proxy_jump("-o ServerAliveInterval=30"), None);
    let j = crate::spec::Jump::parse("admin@bastion:2222", "root").unwrap();
    assert_eq!(
        (j.user.as_str(), j.host.as_str(), j.port.get()),
        ("admin", "bastion", 2222)
    );
    let j = crate::spec::Jump::parse("bastion", "deploy").unwrap();
    assert_eq!((j.user.as_str(), j.port.get()), ("deploy", 22));
    assert!(crate::spec::Jump::parse("a,b", "root")
        .unwrap_err()
        .contains("several jump hosts"));
    assert!(crate::spec::Jump::parse("b:x", "root")
        .unwrap_err()
        .contains("not a port"));
}

/// A YAML inventory of groups nested `depth` deep, node1 in the deepest.
fn nested_yaml(depth: usize) -> String {
    let mut out = String::from("all:\n  children:\n");
    let mut ind = String::from("    ");
    for i in 0..depth {
        out.push_str(&format!("{ind}g{i}:\n{ind}  children:\n"));
        ind.push_str("    ");
    }
    out.push_str(&format!("{ind}last:\n{ind}  hosts:\n{ind}    node1:\n"));
    out
}

#[test]
fn nesting_past_the_cap_is_a_located_error_not_a_stack_overflow() {
    // 1,500 nested groups aborted the process (signal 6) before the cap.
    let (_, p) = parse("hosts.yml", &nested_yaml(1500));
    let e = p.errors().next().expect("refused");
    assert!(
        e.message.contains("nests") && e.message.contains("deep"),
        "{}",
        e.message
    );
    // The first line past the cap, where its text starts.
    assert_eq!(
        e.location().as_deref(),
        Some("hosts.yml:137:273"),
        "{}",
        e.message
    );
    // Within the cap: read, and the host found.
    let (inv, p) = parse("hosts.yml", &nested_yaml(60));
    assert!(!p.has_errors(), "{p:?}");
    assert_eq!(names(&inv, None), ["node1"]);
    // INI children chains have no indentation to read: their depth is
    // computed without recursion and capped the same way.
    let chain: String = (0..100)
        .map(|i| format!("[g{i}:children]\ng{}\n", i + 1))
        .chain(std::iter::once("[g100]\nnode1\n".to_string()))
        .collect();
    let (inv, _) = parse("hosts.ini", &chain);
    let mut p = Problems::default();
    assert!(inv.hosts_in(None, &mut p).is_empty());
    let e = p.errors().next().expect("refused");
    assert!(e.message.contains("more than the 64"), "{}", e.message);
    assert!(e.location().is_some(), "{}", e.message);
}

#[test]
fn an_inventory_past_the_host_cap_is_refused_at_the_line_that_crosses_it() {
    let (inv, p) = parse("hosts.ini", "[a]\nx[1:100000]\n[b]\ny[1:5]\n");
    let e = p.errors().next().expect("refused");
    assert_eq!(e.message, "hosts.ini lists more than 100000 hosts");
    assert_eq!(e.location().as_deref(), Some("hosts.ini:4:1"));
    assert_eq!(inv.hosts.len(), MAX_HOSTS);
    assert_eq!(p.errors().count(), 1, "{p:?}");
}

#[test]
fn reading_is_linear_in_the_hosts() {
    // 20,000 hosts, one line each, in 200 groups with variables: a
    // quadratic step (a list searched per host) took seconds here.
    let text: String = (0..200)
        .map(|g| {
            let hosts: String = (0..100).map(|i| format!("n{g}x{i}\n")).collect();
            format!("[g{g}]\n{hosts}[g{g}:vars]\nansible_user=u{g}\n")
        })
        .collect();
    let start = std::time::Instant::now();
    let (inv, p) = parse("hosts.ini", &text);
    let hosts = inv.hosts_in(None, &mut Problems::default());
    assert!(!p.has_errors());
    assert_eq!(hosts.len(), 20_000);
    assert_eq!(hosts[19_999].1["ansible_user"].value.value, "u199");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
