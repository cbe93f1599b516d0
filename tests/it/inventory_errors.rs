//! Malformed inventories and configs: each must be refused with the file, line
//! and column of the culprit and a way out. The rendered output is snapshotted.

use crate::bin::Scratch;

/// Three valid nodes, to prefix TOML cases that are about something else.
const NODES: &str = "[[nodes]]\nname = \"node1\"\naddress = \"192.168.1.1\"\n\n[[nodes]]\nname = \"node2\"\naddress = \"192.168.1.2\"\n\n[[nodes]]\nname = \"node3\"\naddress = \"192.168.1.3\"\n";

fn nodes_and(rest: &str) -> String {
    format!("{NODES}\n{rest}")
}

/// (case, file name, file text). INI and YAML are passed with -i, TOML with -c.
fn cases() -> Vec<(&'static str, &'static str, String)> {
    let s = |x: &str| x.to_string();
    vec![
        // INI
        ("ini_duplicate_host", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1\nnode2 ansible_host=192.168.1.2\nnode1 ansible_host=192.168.1.3\n")),
        ("ini_duplicate_address", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1\nnode2 ansible_host=192.168.1.1\nnode3 ansible_host=192.168.1.3\n")),
        ("ini_port_out_of_range", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1 ansible_port=70000\nnode2 ansible_host=192.168.1.2\nnode3 ansible_host=192.168.1.3\n")),
        ("ini_port_not_a_number", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1\nnode2 ansible_host=192.168.1.2\nnode3 ansible_host=192.168.1.3\n\n[servers:vars]\nansible_port=ssh\n")),
        ("ini_missing_equals", "hosts.ini", s("[servers]\nnode1 192.168.1.1\n")),
        ("ini_unclosed_section", "hosts.ini", s("[servers\nnode1 ansible_host=192.168.1.1\n")),
        ("ini_unknown_section_type", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1\n\n[servers:var]\nansible_user=root\n")),
        ("ini_empty_range", "hosts.ini", s("[servers]\nnode[3:1] ansible_user=root\n")),
        ("ini_unclosed_quote", "hosts.ini", s("[servers]\nnode1 ansible_host=\"192.168.1.1 ansible_user=root\n")),
        ("ini_seed_placeholders", "hosts.ini", s("[servers]\nserver1 ansible_host=IP_SERVEUR_1 ansible_user=utilisateur\nserver2 ansible_host=IP_SERVEUR_2 ansible_user=utilisateur\nserver3 ansible_host=IP_SERVEUR_3 ansible_user=utilisateur\n\n[all:vars]\nansible_python_interpreter=/usr/bin/python3\n")),
        ("ini_bad_become", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1 ansible_become=maybe\n")),
        ("ini_vars_without_equals", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1\n\n[all:vars]\nansible_user root\n")),
        ("ini_host_under_vars", "hosts.ini", s("[all:vars]\nansible_user=root\nnode1 ansible_host=192.168.1.1\n")),
        ("ini_misspelt_clusterkit_var", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1 clusterkit_mesh_adress=10.0.0.9\n")),
        ("ini_bad_node_name", "hosts.ini", s("[servers]\nnode@1 ansible_host=192.168.1.1\n")),
        ("ini_pin_outside_mesh", "hosts.ini", s("[servers]\nnode1 ansible_host=192.168.1.1 clusterkit_mesh_address=10.9.9.9\nnode2 ansible_host=192.168.1.2\nnode3 ansible_host=192.168.1.3\n")),
        ("ini_no_hosts", "hosts.ini", s("# nothing yet\n[servers]\n")),
        ("ini_unknown_group", "clusterkit.toml", s("inventory = \"hosts.ini\"\ninventory_group = \"server\"\n")),
        // YAML
        ("yaml_misspelt_hosts", "hosts.yml", s("all:\n  children:\n    servers:\n      host:\n        node1:\n          ansible_host: 192.168.1.1\n")),
        ("yaml_syntax_error", "hosts.yml", s("all:\n  hosts:\n    node1:\n      ansible_host: [192.168.1.1\n")),
        ("yaml_duplicate_key", "hosts.yml", s("all:\n  hosts:\n    node1:\n      ansible_host: 192.168.1.1\n    node1:\n      ansible_host: 192.168.1.2\n")),
        ("yaml_hosts_as_list", "hosts.yml", s("all:\n  hosts:\n    - node1\n    - node2\n")),
        ("yaml_duplicate_address", "hosts.yml", s("all:\n  hosts:\n    node1:\n      ansible_host: 192.168.1.1\n    node2:\n      ansible_host: 192.168.1.1\n    node3:\n      ansible_host: 192.168.1.3\n")),
        // TOML
        ("toml_unknown_key", "clusterkit.toml", nodes_and("[mesh]\ncidre = \"10.0.0.0/24\"\n")),
        ("toml_cidr_too_small", "clusterkit.toml", nodes_and("[mesh]\ncidr = \"10.0.0.0/31\"\n")),
        ("toml_cidr_host_bits", "clusterkit.toml", nodes_and("[mesh]\ncidr = \"10.0.0.1/24\"\n")),
        ("toml_pool_overlaps_mesh", "clusterkit.toml", nodes_and("[swarm]\ndefault_addr_pool = \"10.0.0.0/8\"\n")),
        ("toml_duplicate_node", "clusterkit.toml", nodes_and("[[nodes]]\nname = \"node2\"\naddress = \"192.168.1.4\"\n")),
        ("toml_missing_address", "clusterkit.toml", s("[[nodes]]\nname = \"node1\"\n")),
        ("toml_port_as_text", "clusterkit.toml", s("[[nodes]]\nname = \"node1\"\naddress = \"192.168.1.1\"\nport = \"22\"\n")),
        ("toml_unknown_storage_backend", "clusterkit.toml", nodes_and("[storage]\nbackend = \"minios\"\n")),
        ("toml_replication_above_nodes", "clusterkit.toml", nodes_and("[storage]\nreplication = 5\n")),
        ("toml_bad_retention", "clusterkit.toml", nodes_and("[monitoring]\nretention = \"15 days\"\n")),
        ("toml_mtu_too_small", "clusterkit.toml", nodes_and("[mesh]\nmtu = 100\n")),
        ("toml_missing_stack_file", "clusterkit.toml", nodes_and("[[stacks]]\nname = \"app\"\nfile = \"stacks/app.yml\"\n")),
        ("toml_syntax_error", "clusterkit.toml", s("[mesh\ncidr = \"10.0.0.0/24\"\n")),
        ("toml_bad_role", "clusterkit.toml", s("[[nodes]]\nname = \"node1\"\naddress = \"192.168.1.1\"\nrole = \"leader\"\n")),
        ("toml_nodes_twice", "clusterkit.toml", format!("inventory = \"hosts.ini\"\n{NODES}")),
    ]
}

#[test]
fn every_malformed_input_is_located_and_explained() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let seed_ini = "[servers]\nnode1 ansible_host=192.168.1.1\nnode2 ansible_host=192.168.1.2\nnode3 ansible_host=192.168.1.3\n";
    for (case, name, text) in cases {
        let scratch = Scratch::new(&[
            (name, &text),
            (
                "hosts.ini",
                if name == "hosts.ini" { &text } else { seed_ini },
            ),
        ]);
        let flag = if name.ends_with(".toml") { "-c" } else { "-i" };
        let out = scratch.run(&["validate", flag, name]);
        assert_eq!(
            out.code, 3,
            "{case}: expected exit 3 (invalid), got {}:\n{}",
            out.code, out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "{case}: printed on stdout: {}",
            out.stdout
        );
        // Every case but "no hosts at all" points into the file at line:col.
        if case != "ini_no_hosts" {
            let located = out
                .stderr
                .lines()
                .any(|l| l.contains(&format!("─[{name}:")));
            let located = located || out.stderr.contains("─[hosts.ini:");
            assert!(located, "{case}: no file:line:col in\n{}", out.stderr);
        }
        assert!(
            out.stderr.contains("help:"),
            "{case}: no help in\n{}",
            out.stderr
        );
        insta::with_settings!({ prepend_module_to_snapshot => false, description => text.as_str() }, {
            insta::assert_snapshot!(case, out.stderr);
        });
    }
}

#[test]
fn seed_inventories_parse_unchanged() {
    // Annex A: valid as it is; the only remark is the Python interpreter clusterkit ignores.
    let annex_a = include_str!("../../examples/hosts.ini");
    let s = Scratch::new(&[("hosts.ini", annex_a)]);
    let out = s.run(&["validate", "-i", "hosts.ini"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("ok: 3 node(s), 3 manager(s) (tolerates 1 loss(es))"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("`ansible_python_interpreter` is ignored"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("is ignored").count(),
        1,
        "warned once: {}",
        out.stderr
    );

    // The YAML form of the same inventory reads the same.
    let yaml = "all:\n  vars:\n    ansible_python_interpreter: /usr/bin/python3\n  children:\n    servers:\n      hosts:\n        node1:\n          ansible_host: 192.168.1.1\n          ansible_user: root\n        node2:\n          ansible_host: 192.168.1.2\n          ansible_user: root\n        node3:\n          ansible_host: 192.168.1.3\n          ansible_user: root\n";
    let s = Scratch::new(&[("hosts.yml", yaml)]);
    let out = s.run(&["validate", "-i", "hosts.yml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn even_manager_count_is_a_warning_that_explains_quorum() {
    let s = Scratch::new(&[("hosts.ini", "[servers]\nnode[1:4]\n")]);
    let out = s.run(&["validate", "-i", "hosts.ini"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("4 managers: Raft needs a majority (3 of 4), so they tolerate 1 loss(es)"),
        "{}",
        out.stderr
    );
}

#[test]
fn usage_errors_and_missing_files_have_their_own_exit_codes() {
    let s = Scratch::new(&[]);
    assert_eq!(s.run(&["validate", "--bogus"]).code, 2);
    let out = s.run(&["validate"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("clusterkit init"), "{}", out.stderr);
    let out = s.run(&["validate", "-i", "missing.ini"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot read missing.ini"),
        "{}",
        out.stderr
    );
}
