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
