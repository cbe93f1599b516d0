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
                "/proc/1/exe node id -q",
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

/// Storage nodes without the server image, every other command quiet;
/// `docker pull` exits with `pull` and says `said`.
fn lacking_the_image(spec: &ClusterSpec, pull: u32, said: &str) -> Vec<Scripted> {
    spec.nodes
        .iter()
        .map(|node| {
            let s = Scripted::new(node.name.as_str());
            s.on("", "");
            s.on_exit(
                "docker image inspect -f . ",
                1,
                "",
                "Error: No such image\n",
            );
            s.on_exit("docker pull -q ", pull, "", said);
            s
        })
        .collect()
}

#[tokio::test]
async fn a_missing_server_image_is_pulled_by_each_node_and_named_with_the_pulls_words_when_it_cannot_be(
) {
    let spec = clusterkit_core::spec::example(3);
    // The default is Garage's own image, which nodes that reach Docker Hub pull.
    assert_eq!(spec.storage.image, "dxflrs/garage:v2.5.0");
    let arcs = |nodes: &[Scripted]| -> Vec<Arc<dyn Transport>> {
        nodes
            .iter()
            .map(|n| Arc::new(n.clone()) as Arc<dyn Transport>)
            .collect()
    };
    // No registry: refused before anything is deployed, with the pull's words and the way on.
    let offline = lacking_the_image(
        &spec,
        1,
        "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host\n",
    );
    let e = crate::up(&arcs(&offline), &spec, None, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("image dxflrs/garage:v2.5.0 is not there and the node could not pull it (Error response from daemon")
            && e.contains("no such host)")
            && e.contains("clusterkit images push dxflrs/garage:v2.5.0"),
        "{e}"
    );
    for n in &offline {
        let asked = n.asked().join("\n");
        assert!(
            asked.contains("docker pull -q dxflrs/garage:v2.5.0"),
            "{asked}"
        );
        assert!(!asked.contains("stack deploy"), "{asked}");
    }
    // Pulled: each node got it itself and storage went on to its next step
    // (its stack, which this scripted manager refuses, to end here).
    let online = lacking_the_image(&spec, 0, "");
    for n in &online {
        n.on_exit("docker secret create", 1, "", "next step reached\n");
        n.on_exit("stack deploy", 1, "", "next step reached\n");
    }
    let e = crate::up(&arcs(&online), &spec, None, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("next step reached"), "{e}");
    for n in &online {
        assert!(
            n.asked()
                .join("\n")
                .contains("docker pull -q dxflrs/garage:v2.5.0"),
            "{:?}",
            n.asked()
        );
    }
}

#[tokio::test]
async fn minio_status_reads_each_servers_health_endpoints_on_its_own_node() {
    use clusterkit_core::spec::StorageBackend;
    let mut spec = clusterkit_core::spec::example(3);
    spec.storage.backend = StorageBackend::Minio;
    // Recorded answers: node1 and node2 online, each seeing write and read
    // quorum but refusing to go down (412); node3's server does not answer;
    // node2 heals a drive.
    let answer = |live: &str, maintenance: &str, healing: &str| {
        format!(
            "== live\n{live}== write\nHTTP/1.1 200 OK\r\nX-Minio-Write-Quorum: 2\r\n{healing}\r\ncode=200\n\
             == read\nHTTP/1.1 200 OK\r\nX-Minio-Read-Quorum: 2\r\n\r\ncode=200\n\
             == maintenance\n{maintenance}"
        )
    };
    let nodes: Vec<Scripted> = spec
        .nodes
        .iter()
        .map(|n| {
            let s = Scripted::new(n.name.as_str());
            s.on("", ""); // no S3 key on the nodes: the probe says so
            s.on("systemctl is-active --quiet", "");
            s
        })
        .collect();
    nodes[0].on(
        "/minio/health/",
        &answer(
            "HTTP/1.1 200 OK\r\n\r\ncode=200\n",
            "HTTP/1.1 412 Precondition Failed\r\n\r\ncode=412\n",
            "",
        ),
    );
    nodes[1].on(
        "/minio/health/",
        &answer(
            "HTTP/1.1 200 OK\r\n\r\ncode=200\n",
            "HTTP/1.1 412 Precondition Failed\r\n\r\ncode=412\n",
            "X-Minio-Healing-Drives: 1\r\n",
        ),
    );
    nodes[2].on(
        "/minio/health/",
        "== live\ncode=000\n== write\ncode=000\n== read\ncode=000\n== maintenance\ncode=000\n",
    );
    let given: Vec<Arc<dyn Transport>> = nodes
        .iter()
        .map(|n| Arc::new(n.clone()) as Arc<dyn Transport>)
        .collect();
    let st = crate::status(&given, &spec).await.unwrap();
    assert_eq!(st.health, "degraded");
    assert_eq!(st.tolerates, 0);
    assert_eq!(
        st.nodes
            .iter()
            .map(|n| (n.node.as_str(), n.up))
            .collect::<Vec<_>>(),
        [("node1", true), ("node2", true), ("node3", false)]
    );
    assert_eq!(st.notes, ["node2: 1 drive(s) healing"]);
    assert!(
        st.probe_error
            .as_deref()
            .unwrap()
            .contains("no node holds the S3 key"),
        "{st:?}"
    );
    assert!(!st.whole());
    // Each node asked its own server, on its own mesh address.
    for (n, s) in spec.nodes.iter().zip(&nodes) {
        let asked = s.asked().join("\n");
        assert!(
            asked.contains(&format!(
                "http://{}:9000/minio/health/cluster",
                n.mesh_address
            )),
            "{asked}"
        );
    }
    let shown = st.to_string();
    assert!(shown.contains("Minio degraded"), "{shown}");
    assert!(shown.contains("node2: 1 drive(s) healing"), "{shown}");
}

/// A node for the volume driver: every upload answers `uploads`
/// (`written` or `unchanged`), both units `active` or not, the front
/// installed or not.
fn driver_node(uploads: &str, active: bool, front_installed: bool) -> Scripted {
    let s = Scripted::new("node2");
    s.on("mktemp", &format!("{uploads}\n"));
    s.on_exit("systemctl is-active", if active { 0 } else { 3 }, "", "");
    s.on_exit("test -x", if front_installed { 0 } else { 1 }, "", "");
    s.on("systemctl daemon-reload", "");
    s.on("systemctl restart clusterkit-volumes.service", "");
    s.on("systemctl restart clusterkit-volumes-front.service", "");
    s.on("for c in $(docker ps -q)", "");
    s
}

fn driver_config() -> crate::DriverConfig {
    let spec = clusterkit_core::spec::example(3);
    crate::DriverConfig::for_node(&spec, spec.nodes[1].mesh_address)
}

#[tokio::test]
async fn the_driver_front_is_uploaded_and_started_after_rclone() {
    let node = driver_node("written", false, false);
    let front = b"\x7fELF the front".to_vec();
    let changed = crate::install_driver(&node, &driver_config(), &key(), Some(&front))
        .await
        .unwrap();
    assert!(changed);
    let asked = node.asked();
    let at = |what: &str| {
        asked
            .iter()
            .position(|c| c.contains(what))
            .unwrap_or_else(|| panic!("{what}: {asked:#?}"))
    };
    // The executable, as given, executable; rclone before the front (an
    // rclone of before served Docker's socket and removes it as it stops);
    // the containers using the driver restarted after rclone was.
    let sent = node.stdins(crate::DriverConfig::FRONT_PATH);
    assert_eq!(sent, vec![front], "{asked:#?}");
    assert!(asked[at(crate::DriverConfig::FRONT_PATH)].contains("chmod 755"));
    assert!(
        at("systemctl restart clusterkit-volumes.service")
            < at("systemctl restart clusterkit-volumes-front.service")
    );
    assert!(
        at("systemctl restart clusterkit-volumes-front.service") < at("for c in $(docker ps -q)")
    );
}

#[tokio::test]
async fn a_converged_driver_is_left_running_and_a_front_of_its_own_kept() {
    let node = driver_node("unchanged", true, true);
    let changed = crate::install_driver(&node, &driver_config(), &key(), None)
        .await
        .unwrap();
    assert!(!changed);
    let asked = node.asked();
    assert!(
        !asked
            .iter()
            .any(|c| c.contains("systemctl restart") || c.contains("docker ps -q")),
        "{asked:#?}"
    );
    assert!(node.stdins(crate::DriverConfig::FRONT_PATH).is_empty());
}

#[tokio::test]
async fn a_node_without_a_front_and_none_at_hand_is_refused_with_the_way_out() {
    let node = driver_node("written", false, false);
    let e = crate::install_driver(&node, &driver_config(), &key(), None)
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "node2",
        crate::DriverConfig::FRONT_PATH,
        "cargo build --release --bins",
        "CLUSTERKIT_VOLUMES",
    ] {
        assert!(e.contains(part), "{part}: {e}");
    }
    // Nothing written, nothing restarted.
    let asked = node.asked();
    assert!(
        !asked
            .iter()
            .any(|c| c.contains("mktemp") || c.contains("systemctl restart")),
        "{asked:#?}"
    );
}
