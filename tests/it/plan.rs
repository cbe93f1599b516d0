//! `clusterkit plan` and `clusterkit init` end to end.

use serde_json::Value;

use crate::bin::Scratch;

const SEED: &str = include_str!("../../examples/hosts.ini");

fn addresses(plan: &Value) -> Vec<(String, String)> {
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().into(),
                n["mesh_address"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn plan_json_of_the_seed_inventory() {
    let s = Scratch::new(&[("hosts.ini", SEED)]);
    let out = s.run(&["plan", "--json", "-i", "hosts.ini"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("plan_json_seed", out.stdout);
    let state = std::fs::read_to_string(s.path().join(".clusterkit/state.toml")).unwrap();
    assert!(state.contains("node3 = \"10.0.0.3\""), "{state}");
}

#[test]
fn mesh_addresses_survive_adding_and_removing_nodes() {
    let s = Scratch::new(&[("hosts.ini", "[servers]\na ansible_host=192.168.1.1\nb ansible_host=192.168.1.2\nc ansible_host=192.168.1.3\n")]);
    let first: Value =
        serde_json::from_str(&s.run(&["plan", "--json", "-i", "hosts.ini"]).stdout).unwrap();
    assert_eq!(
        addresses(&first),
        [
            ("a".into(), "10.0.0.1".into()),
            ("b".into(), "10.0.0.2".into()),
            ("c".into(), "10.0.0.3".into())
        ]
    );
    // A new node put first in the file, and b removed: a and c keep their addresses.
    std::fs::write(s.path().join("hosts.ini"), "[servers]\nz ansible_host=192.168.1.9\na ansible_host=192.168.1.1\nc ansible_host=192.168.1.3\n").unwrap();
    let out = s.run(&["plan", "--json", "-i", "hosts.ini"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        addresses(&second),
        [
            ("z".into(), "10.0.0.2".into()),
            ("a".into(), "10.0.0.1".into()),
            ("c".into(), "10.0.0.3".into())
        ]
    );
    // A re-run changes nothing and says nothing about the state.
    let again = s.run(&["plan", "--json", "-i", "hosts.ini"]);
    assert_eq!(again.stdout, out.stdout);
    assert!(!again.stderr.contains("recorded"), "{}", again.stderr);
}

#[test]
fn plan_table_shows_every_node() {
    let s = Scratch::new(&[("hosts.ini", SEED)]);
    let out = s.run(&["plan", "-i", "hosts.ini"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for n in ["node1", "node2", "node3"] {
        let row = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {n} ")))
            .expect(n);
        assert!(
            row.contains("manager") && row.contains("root@192.168."),
            "{row}"
        );
    }
    assert!(
        out.stdout.contains("quorum 2, tolerates 1 loss"),
        "{}",
        out.stdout
    );
}

#[test]
fn init_writes_a_starter_that_validates() {
    let bad = "[servers]\nnode1 ansible_host=192.0.2.1\nnode2 ansible_host=192.0.2.1\n";
    let s = Scratch::new(&[("hosts.ini", SEED), ("bad.ini", bad)]);
    // An inventory with errors: each named, nothing written, exit code 3.
    let out = s.run(&["init", "-i", "bad.ini"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("have the same address 192.0.2.1:22"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bad.ini:2:20"), "{}", out.stderr);
    assert!(!s.path().join("clusterkit.toml").exists());
    let out = s.run(&["init", "-i", "hosts.ini"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(s.path().join("clusterkit.toml")).unwrap();
    assert!(text.contains("inventory = \"hosts.ini\""), "{text}");
    let out = s.run(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Not overwritten without --force.
    let out = s.run(&["init", "-i", "hosts.ini"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    // Without an inventory: nodes listed in the file, valid as written.
    let out = s.run(&["init", "-o", "other.toml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = s.run(&["validate", "-c", "other.toml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
