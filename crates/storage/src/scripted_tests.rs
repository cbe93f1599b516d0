//! Garage's layout decisions against scripted nodes: what `up` asks the
//! admin API, in which order, and what it leaves alone.

use std::sync::Arc;

use clusterkit_core::transport::script::Scripted;
use clusterkit_core::transport::Transport;
use clusterkit_core::ClusterSpec;

use crate::remote::garage_up;
use crate::{S3Key, StorageChange, BUCKET, INTERNAL_BUCKET};

/// A node's Garage id: its digit repeated, at its mesh address.
fn id(i: usize) -> String {
    format!("{}", i).repeat(64)
}

fn key() -> S3Key {
    S3Key {
        id: "GK0123456789abcdef01234567".into(),
        secret: "f".repeat(64),
    }
}

/// Storage nodes whose Garage runs, every node up and connected, the key
/// owning both buckets; node1 answers the layout `layout` first and
/// `after` once it was changed.
fn garages(spec: &ClusterSpec, layout: &str, after: &str) -> Vec<Scripted> {
    let n = spec.nodes.len();
    let status = format!(
        r#"{{"layoutVersion": 1, "nodes": [{}]}}"#,
        (1..=n)
            .map(|i| format!(r#"{{"id": "{}", "isUp": true}}"#, id(i)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let owned = format!(
        r#"{{"buckets": [{{"id": "b1", "globalAliases": ["{BUCKET}"], "permissions": {{"read": true, "write": true, "owner": true}}}},
                         {{"id": "b2", "globalAliases": ["{INTERNAL_BUCKET}"], "permissions": {{"read": true, "write": true, "owner": true}}}}]}}"#
    );
    spec.nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let s = Scripted::new(node.name.as_str());
            // Lowest first: Garage runs; files in place; the free space.
            s.on(
                "docker ps -q --filter label=com.docker.swarm.service.name=",
                "c0ffee\n",
            );
            s.on("sha256sum", "unchanged\n");
            s.on("df -PB1", "53687091200\n");
            s.on(
                "garage node id -q",
                &format!("{}@{}:3901\n", id(i + 1), node.mesh_address),
            );
            s.on("json-api GetClusterStatus", &status);
            s.on("json-api GetClusterLayout", after);
            s.on_times("json-api GetClusterLayout", 1, layout);
            s.on("json-api GetKeyInfo", &owned);
            s.on("json-api UpdateClusterLayout", "{}");
            s.on("json-api ApplyClusterLayout", "{}");
            s.on("json-api ClusterLayoutSkipDeadNodes", "{}");
            s
        })
        .collect()
}

async fn run(spec: &ClusterSpec, nodes: &[Scripted]) -> (StorageChange, Vec<String>) {
    let given: Vec<Arc<dyn Transport>> = nodes
        .iter()
        .map(|n| Arc::new(n.clone()) as Arc<dyn Transport>)
        .collect();
    let refs: Vec<&Arc<dyn Transport>> = given.iter().collect();
    let said = std::sync::Mutex::new(Vec::new());
    let mut change = StorageChange::default();
    garage_up(&refs, spec, &key(), &mut change, &|m: &str| {
        said.lock().unwrap().push(m.to_string())
    })
    .await
    .unwrap();
    (change, said.into_inner().unwrap())
}

fn layout(version: u64, roles: &[usize], staged: &[usize]) -> String {
    let role = |i: &usize| format!(r#"{{"id": "{}", "zone": "node{i}"}}"#, id(*i));
    format!(
        r#"{{"version": {version}, "roles": [{}], "stagedRoleChanges": [{}]}}"#,
        roles.iter().map(role).collect::<Vec<_>>().join(", "),
        staged
            .iter()
            .map(|i| format!(r#"{{"id": "{}"}}"#, id(*i)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn payloads(node: &Scripted, endpoint: &str) -> Vec<serde_json::Value> {
    node.stdins(&format!("json-api {endpoint}"))
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

#[tokio::test]
async fn a_new_storage_node_gets_a_zone_of_its_own_and_the_next_layout_version() {
    let spec = clusterkit_core::spec::example(3);
    let nodes = garages(&spec, &layout(1, &[1, 2], &[]), &layout(1, &[1, 2], &[3]));
    let (change, said) = run(&spec, &nodes).await;
    assert_eq!(change.layout_added, ["node3"]);
    assert_eq!(change.layout_applied, Some(2));
    let update = payloads(&nodes[0], "UpdateClusterLayout");
    assert_eq!(
        update,
        [serde_json::json!({"roles": [{"id": id(3), "zone": "node3",
            "capacity": 53687091200u64, "tags": ["node3"]}]})]
    );
    assert_eq!(
        payloads(&nodes[0], "ApplyClusterLayout"),
        [serde_json::json!({"version": 2})]
    );
    assert!(
        said.iter().any(|m| m.contains("layout version 2 applied")),
        "{said:?}"
    );
    // Through the first node only, and the key already owns its buckets.
    for n in &nodes[1..] {
        assert!(n.stdins("json-api").is_empty(), "{:?}", n.asked());
    }
    assert!(nodes[0].stdins("json-api CreateBucket").is_empty());
}

#[tokio::test]
async fn a_converged_layout_is_left_alone() {
    let spec = clusterkit_core::spec::example(3);
    let converged = layout(4, &[1, 2, 3], &[]);
    let nodes = garages(&spec, &converged, &converged);
    let (change, _) = run(&spec, &nodes).await;
    assert_eq!(change, StorageChange::default());
    assert!(nodes[0].stdins("json-api UpdateClusterLayout").is_empty());
    assert!(nodes[0].stdins("json-api ApplyClusterLayout").is_empty());
}

#[tokio::test]
async fn a_node_gone_keeps_its_place_while_too_few_are_left_for_every_copy() {
    // Three copies wanted, node3 gone from the description: two nodes
    // cannot hold three copies, so its role stays (its copies missing).
    let mut spec = clusterkit_core::spec::example(3);
    spec.nodes.truncate(2);
    let nodes = garages(
        &spec,
        &layout(2, &[1, 2, 3], &[]),
        &layout(2, &[1, 2, 3], &[]),
    );
    let (change, said) = run(&spec, &nodes).await;
    assert!(change.layout_removed.is_empty());
    assert!(nodes[0].stdins("json-api UpdateClusterLayout").is_empty());
    assert!(
        said.iter().any(
            |m| m.contains("node3 stay(s) in the layout, lost: 2 node(s) cannot hold 3 copies")
        ),
        "{said:?}"
    );
}
