//! The swarm's orchestration against scripted nodes (a real bollard client
//! speaking to scripted Engine answers): who is asked what, in which order,
//! and what is refused before anything changes.

use std::sync::Arc;

use clusterkit_core::transport::script::Scripted;
use clusterkit_core::transport::Transport;

use super::*;

/// One entry of `GET /nodes`.
fn entry(id: &str, host: &str, addr: &str, manager: Option<(bool, &str)>) -> String {
    let manager = manager.map_or(String::new(), |(leader, reach)| {
        format!(
            r#", "ManagerStatus": {{"Leader": {leader}, "Reachability": "{reach}", "Addr": "{addr}:2377"}}"#
        )
    });
    let role = if manager.is_empty() {
        "worker"
    } else {
        "manager"
    };
    format!(
        r#"{{"ID": "{id}", "Version": {{"Index": 41}}, "Description": {{"Hostname": "{host}"}},
            "Status": {{"State": "ready", "Addr": "{addr}"}},
            "Spec": {{"Role": "{role}", "Availability": "active"}}{manager}}}"#
    )
}

fn three_managers(third: &str) -> String {
    format!(
        "[{}, {}, {}]",
        entry("id1", "node1", "10.0.0.1", Some((true, "reachable"))),
        entry("id2", "node2", "10.0.0.2", Some((false, "reachable"))),
        entry("id3", "node3", "10.0.0.3", Some((false, third))),
    )
}

fn nodes(list: &[&Scripted]) -> Vec<Arc<dyn Transport>> {
    list.iter()
        .map(|s| Arc::new((*s).clone()) as Arc<dyn Transport>)
        .collect()
}

#[tokio::test]
async fn status_reads_leader_quorum_and_losses_tolerated_from_one_manager() {
    let n1 = Scripted::new("node1");
    n1.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 3}}"#);
    n1.on_engine("GET", "/nodes", 200, &three_managers("unreachable"));
    let st = status(&nodes(&[&n1])).await.unwrap();
    assert_eq!(st.leader.as_deref(), Some("node1"));
    assert_eq!((st.quorum, st.tolerates, st.has_quorum), (2, 0, true));
    assert_eq!(st.answered_by.as_deref(), Some("node1"));
    assert!(!st.managers[2].reachable);
}

#[tokio::test]
async fn status_without_any_answer_says_how_many_managers_decide() {
    let n1 = Scripted::new("node1");
    n1.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 3}}"#);
    n1.on_engine(
        "GET",
        "/nodes",
        503,
        r#"{"message": "rpc error: The swarm does not have a leader"}"#,
    );
    let e = status(&nodes(&[&n1])).await.unwrap_err().to_string();
    assert!(e.contains("has 3 manager(s) and needs 2 to decide"), "{e}");
    assert!(e.contains("clusterkit swarm recover"), "{e}");
}

#[tokio::test]
async fn a_lost_manager_is_demoted_then_deleted_through_one_that_stays() {
    let (n1, n2) = (Scripted::new("node1"), Scripted::new("node2"));
    for n in [&n1, &n2] {
        n.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 3}}"#);
        n.on_engine("GET", "/nodes", 200, &three_managers("unreachable"));
        n.on_engine("POST", "/nodes/id3/update", 200, "");
        n.on_engine("DELETE", "/nodes/id3", 200, "");
    }
    let r = remove_node(&nodes(&[&n1, &n2]), "node3", "10.0.0.3".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        r,
        NodeRemoval {
            entries: 1,
            was_manager: true,
            managers_left: 2,
            reachable_left: 2
        }
    );
    let asked = n1.asked();
    let demote = asked
        .iter()
        .position(|a| a.starts_with("POST /nodes/id3/update?version=41"));
    let delete = asked
        .iter()
        .position(|a| a.starts_with("DELETE /nodes/id3?force=true"));
    assert!(demote.is_some() && delete > demote, "{asked:?}");
    let spec = &n1.engine_bodies("POST", "/nodes/id3/update")[0];
    assert!(spec.contains(r#""Role":"worker""#), "{spec}");
    assert!(
        n2.log()
            .iter()
            .all(|a| !a.to_string().starts_with("DELETE")),
        "one manager does it"
    );
}

#[tokio::test]
async fn removing_a_manager_that_would_lose_the_majority_changes_nothing() {
    // node2 is down too: node1 alone of the two that stay is no majority.
    let n1 = Scripted::new("node1");
    n1.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 3}}"#);
    n1.on_engine(
        "GET",
        "/nodes",
        200,
        &format!(
            "[{}, {}, {}]",
            entry("id1", "node1", "10.0.0.1", Some((true, "reachable"))),
            entry("id2", "node2", "10.0.0.2", Some((false, "unreachable"))),
            entry("id3", "node3", "10.0.0.3", Some((false, "unreachable"))),
        ),
    );
    let e = remove_node(&nodes(&[&n1]), "node3", "10.0.0.3".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("would leave 2 manager(s), 1 of them reachable"),
        "{e}"
    );
    assert!(
        n1.asked().iter().all(|a| a.starts_with("GET ")),
        "{:?}",
        n1.asked()
    );
}

#[tokio::test]
async fn a_node_the_swarm_does_not_list_is_removed_already() {
    let n1 = Scripted::new("node1");
    n1.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 2}}"#);
    n1.on_engine(
        "GET",
        "/nodes",
        200,
        &format!(
            "[{}, {}]",
            entry("id1", "node1", "10.0.0.1", Some((true, "reachable"))),
            entry("id2", "node2", "10.0.0.2", Some((false, "reachable"))),
        ),
    );
    let r = remove_node(&nodes(&[&n1]), "node3", "10.0.0.3".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(r.entries, 0);
    assert!(n1.asked().iter().all(|a| a.starts_with("GET ")));
}

#[tokio::test]
async fn a_swarm_state_is_unpacked_only_on_a_node_outside_any_swarm() {
    let n = Scripted::new("node1");
    n.on_engine(
        "GET",
        "/info",
        200,
        r#"{"Swarm": {"LocalNodeState": "active", "NodeID": "x", "ControlAvailable": true}}"#,
    );
    let e = backup::unpack(&n, b"archive", std::time::Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("in a swarm already (state active)"), "{e}");
    assert_eq!(n.asked(), ["GET /info"], "nothing touched");
}

#[tokio::test]
async fn a_failed_archive_says_the_engine_was_started_again() {
    let n = Scripted::new("node1");
    n.on_exit(
        "tar -C /var/lib/docker -czf",
        2,
        "",
        "tar: swarm: Cannot stat",
    );
    let e = backup::archive(&n, std::time::Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Cannot stat (the engine was started again)"),
        "{e}"
    );
    let script = &n.asked()[0];
    let (stop, trap, tar) = (
        script.find("systemctl stop").unwrap_or(usize::MAX),
        script.find("trap ").unwrap(),
        script.find("tar -C").unwrap(),
    );
    assert!(
        stop < trap && trap < tar,
        "the engine stops, its restart is trapped, then tar: {script}"
    );
    assert_eq!(n.asked().len(), 1, "nothing downloaded: {:?}", n.asked());
}

/// A work that counts its calls.
struct Counting(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl clusterkit_core::roll::Work for Counting {
    async fn replace(
        &self,
        _t: &Arc<dyn Transport>,
        _via: Option<&Arc<dyn Transport>>,
        _say: clusterkit_core::roll::Say<'_>,
    ) -> Result<(), clusterkit_core::engine::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_roll_never_takes_a_node_out_while_a_manager_is_unreachable() {
    let (n1, n2) = (Scripted::new("node1"), Scripted::new("node2"));
    for n in [&n1, &n2] {
        n.on_engine("GET", "/info", 200, r#"{"Swarm": {"Managers": 3}}"#);
        n.on_engine("GET", "/nodes", 200, &three_managers("unreachable"));
    }
    let all = nodes(&[&n1, &n2]);
    let work = Counting(Default::default());
    let said = std::sync::Mutex::new(Vec::<String>::new());
    let say = |m: &str| said.lock().unwrap().push(m.to_string());
    let todo: Vec<(
        Arc<dyn Transport>,
        Box<dyn clusterkit_core::roll::Work + '_>,
    )> = vec![
        (all[1].clone(), Box::new(Counting(Default::default()))),
        (all[0].clone(), Box::new(work)),
    ];
    let e = roll::roll(&all, "docker", todo, &say)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("manager node3 is not reachable"), "{e}");
    assert!(e.contains("2 of 3 managers needed"), "{e}");
    for n in [&n1, &n2] {
        assert!(
            n.asked().iter().all(|a| a.starts_with("GET ")),
            "nothing drained or changed: {:?}",
            n.asked()
        );
    }
    assert!(
        said.lock().unwrap().is_empty(),
        "{:?}",
        said.lock().unwrap()
    );
}

/// A swarm of node1 alone (the leader), node2 and node3 outside any swarm;
/// node3 a worker. Every node's boot-order drop-in is in place already.
fn one_manager_and_two_fresh(spec: &ClusterSpec) -> Vec<Scripted> {
    let addr = |i: usize| spec.nodes[i].mesh_address.to_string();
    let nodes: Vec<Scripted> = (1..=3)
        .map(|i| Scripted::new(&format!("node{i}")))
        .collect();
    for n in &nodes {
        n.on("clusterkit-mesh.conf", "unchanged\n");
        n.on("tcp_retries2", "");
        n.on_engine(
            "GET",
            "/info",
            200,
            r#"{"Swarm": {"LocalNodeState": "inactive"}}"#,
        );
    }
    // Once joined, a manager knows the leader.
    for n in &nodes[1..] {
        n.on_engine("GET", "/nodes", 200, "[]");
    }
    let n1 = &nodes[0];
    n1.on_engine(
        "GET",
        "/info",
        200,
        &format!(
            r#"{{"Swarm": {{"NodeID": "id1", "LocalNodeState": "active", "ControlAvailable": true,
                "NodeAddr": "{}", "Cluster": {{"ID": "c1"}}, "Managers": 1}}}}"#,
            addr(0)
        ),
    );
    n1.on_engine(
        "GET",
        "/nodes",
        200,
        &format!(
            "[{}]",
            entry("id1", "node1", &addr(0), Some((true, "reachable")))
        ),
    );
    n1.on_engine(
        "GET",
        "/swarm",
        200,
        r#"{"ID": "c1", "JoinTokens": {"Worker": "SWMTKN-worker", "Manager": "SWMTKN-manager"}}"#,
    );
    n1.on_engine(
        "GET",
        "/nodes/id1",
        200,
        &entry("id1", "node1", &addr(0), Some((true, "reachable"))),
    );
    n1.on_engine("POST", "/nodes/id1/update", 200, "");
    n1.on_engine("GET", "/networks", 200, "[]");
    n1.on_engine(
        "POST",
        "/networks/create",
        201,
        r#"{"Id": "net1", "Warning": ""}"#,
    );
    for n in &nodes[1..] {
        n.on_engine("POST", "/swarm/join", 200, "");
        // No earlier swarm's overlay left on them.
        n.on("/sys/class/net/vx-", "");
    }
    nodes
}

#[tokio::test]
async fn fresh_nodes_join_the_leader_on_its_mesh_address_each_with_its_roles_token() {
    let mut spec = clusterkit_core::spec::example(3);
    spec.nodes[2].role = SwarmRole::Worker;
    let scripted = one_manager_and_two_fresh(&spec);
    let refs: Vec<&Scripted> = scripted.iter().collect();
    let change = up(&nodes(&refs), &spec).await.unwrap();
    assert_eq!(
        change.initialized, None,
        "the swarm exists: joined, not made"
    );
    assert_eq!(change.joined, ["node2", "node3"]);
    assert!(change.network_created);
    assert!(change.dead_peers.is_empty(), "{:?}", change.dead_peers);
    let leader = format!("{}:2377", spec.nodes[0].mesh_address);
    for (i, token) in [(1, "SWMTKN-manager"), (2, "SWMTKN-worker")] {
        let body: serde_json::Value =
            serde_json::from_str(&scripted[i].engine_bodies("POST", "/swarm/join")[0]).unwrap();
        let own = format!("{}:2377", spec.nodes[i].mesh_address);
        assert_eq!(body["RemoteAddrs"], serde_json::json!([leader]), "{body}");
        assert_eq!(body["ListenAddr"], own.as_str(), "{body}");
        assert_eq!(body["AdvertiseAddr"], own.as_str(), "{body}");
        assert_eq!(body["JoinToken"], token, "{body}");
    }
    // Once each, the leader asked nothing of the kind.
    assert_eq!(scripted[1].engine_bodies("POST", "/swarm/join").len(), 1);
    assert_eq!(scripted[2].engine_bodies("POST", "/swarm/join").len(), 1);
    assert!(scripted[0].engine_bodies("POST", "/swarm/").is_empty());
    // The overlay network fits inside the mesh: its MTU is the mesh's.
    let net = &scripted[0].engine_bodies("POST", "/networks/create")[0];
    assert!(
        net.contains(&format!(
            r#""com.docker.network.driver.mtu":"{}""#,
            spec.mesh.mtu
        )),
        "{net}"
    );
}

#[tokio::test]
async fn a_node_that_keeps_a_dead_peer_for_minutes_is_set_and_reported() {
    let spec = clusterkit_core::spec::example(3);
    let scripted = one_manager_and_two_fresh(&spec);
    // node2's running value differs (set by hand, or a file never applied).
    scripted[1].on("tcp_retries2", "changed\n");
    let refs: Vec<&Scripted> = scripted.iter().collect();
    let change = up(&nodes(&refs), &spec).await.unwrap();
    assert_eq!(change.dead_peers, ["node2"]);
    // Every node was asked, with the setting's file and value.
    for s in &scripted {
        let asked = s.asked().join("\n");
        assert!(asked.contains(DEAD_PEER_SYSCTL_PATH), "{asked}");
        assert!(asked.contains("net.ipv4.tcp_retries2 = 8"), "{asked}");
    }
}

#[tokio::test]
async fn an_earlier_swarms_overlay_left_on_a_node_is_removed_before_it_joins() {
    let spec = clusterkit_core::spec::example(3);
    let scripted = one_manager_and_two_fresh(&spec);
    // node3's engine was reinstalled: its old overlay namespace and a VXLAN
    // device are still there (one line of its answer is not a name).
    scripted[2].on(
        "/sys/class/net/vx-",
        "/sys/class/net/vx-001000-abcde\n/run/docker/netns/1-neqgazr0v0\n\x1b[2Jrm -rf /\n",
    );
    let refs: Vec<&Scripted> = scripted.iter().collect();
    let change = up(&nodes(&refs), &spec).await.unwrap();
    assert_eq!(
        change.overlay_cleared,
        BTreeMap::from([(
            "node3".to_string(),
            vec![
                "vx-001000-abcde".to_string(),
                "/run/docker/netns/1-neqgazr0v0".to_string()
            ]
        )])
    );
    assert_eq!(change.joined, ["node2", "node3"]);
    // The script runs only on an engine in no swarm, and removes only the
    // engine's overlay names.
    let asked = scripted[2].asked().join("\n");
    assert!(
        asked.contains(r#"= inactive ] || exit 0"#)
            && asked.contains("ip link delete")
            && asked.contains("/run/docker/netns/1-*"),
        "{asked}"
    );
    // The leader, in the swarm, was not asked.
    assert!(!scripted[0]
        .asked()
        .join("\n")
        .contains("/sys/class/net/vx-"));
}

#[tokio::test]
async fn a_node_in_another_swarm_is_refused_before_any_join() {
    let spec = clusterkit_core::spec::example(3);
    let scripted = one_manager_and_two_fresh(&spec);
    scripted[2].on_engine(
        "GET",
        "/info",
        200,
        &format!(
            r#"{{"Swarm": {{"NodeID": "id9", "LocalNodeState": "active", "ControlAvailable": false,
                "NodeAddr": "{}", "Cluster": {{"ID": "other"}}}}}}"#,
            spec.nodes[2].mesh_address
        ),
    );
    let refs: Vec<&Scripted> = scripted.iter().collect();
    let e = up(&nodes(&refs), &spec).await.unwrap_err().to_string();
    assert!(e.contains("node3"), "{e}");
    assert!(
        scripted
            .iter()
            .all(|s| s.engine_bodies("POST", "/swarm/join").is_empty()),
        "nobody joined"
    );
}

#[tokio::test]
async fn a_join_left_pending_says_what_the_engine_says() {
    let n1 = Scripted::new("node1");
    n1.on_engine(
        "GET",
        "/info",
        200,
        r#"{"Swarm": {"LocalNodeState": "pending", "Error": "rpc error: code = Unavailable desc = connection refused"}}"#,
    );
    let e = crate::wait_joined(&n1, std::time::Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node state: pending; the engine says: rpc error: code = Unavailable"),
        "{e}"
    );
    // Without an error from the engine, none is made up.
    let n2 = Scripted::new("node2");
    n2.on_engine(
        "GET",
        "/info",
        200,
        r#"{"Swarm": {"LocalNodeState": "pending", "Error": ""}}"#,
    );
    let e = crate::wait_joined(&n2, std::time::Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("(node state: pending)"), "{e}");
}

#[tokio::test]
async fn an_entry_of_a_join_never_completed_is_removed_and_one_a_member_holds_is_kept() {
    let spec = clusterkit_core::spec::example(3);
    let scripted = one_manager_and_two_fresh(&spec);
    let addr = |i: usize| spec.nodes[i].mesh_address.to_string();
    // A nameless entry of state unknown: what the swarm keeps of a
    // certificate it issued to a join whose engine then asked again.
    let nameless = |id: &str| {
        format!(
            r#"{{"ID": "{id}", "Version": {{"Index": 7}}, "Status": {{"State": "unknown"}},
                "Spec": {{"Role": "manager", "Availability": "active"}}}}"#
        )
    };
    scripted[0].on_engine(
        "GET",
        "/nodes",
        200,
        &format!(
            "[{}, {}, {}]",
            entry("id1", "node1", &addr(0), Some((true, "reachable"))),
            nameless("ghost1"),
            nameless("id3"),
        ),
    );
    // (The list's rule matches `/nodes/id1` too: its own answer again.)
    scripted[0].on_engine(
        "GET",
        "/nodes/id1",
        200,
        &entry("id1", "node1", &addr(0), Some((true, "reachable"))),
    );
    scripted[0].on_engine("DELETE", "/nodes/ghost1", 200, "");
    // node3 holds id3 once it has joined (its join still registering).
    scripted[2].on_engine(
        "GET",
        "/info",
        200,
        r#"{"Swarm": {"NodeID": "id3", "LocalNodeState": "active"}}"#,
    );
    scripted[2].on_engine_times(
        "GET",
        "/info",
        1,
        200,
        r#"{"Swarm": {"LocalNodeState": "inactive"}}"#,
    );
    let refs: Vec<&Scripted> = scripted.iter().collect();
    let change = up(&nodes(&refs), &spec).await.unwrap();
    assert_eq!(change.joined, ["node2", "node3"]);
    assert!(
        change
            .updated
            .contains(&"entry ghost1 of a join never completed".to_string()),
        "{:?}",
        change.updated
    );
    let asked = scripted[0].asked();
    let deleted: Vec<&String> = asked.iter().filter(|a| a.starts_with("DELETE")).collect();
    assert_eq!(deleted.len(), 1, "{asked:?}");
    assert!(
        deleted[0].starts_with("DELETE /nodes/ghost1?force=true"),
        "{deleted:?}"
    );
}

#[tokio::test]
async fn a_nameless_entry_is_kept_while_a_member_does_not_answer() {
    let spec = clusterkit_core::spec::example(3);
    let scripted = one_manager_and_two_fresh(&spec);
    let addr = |i: usize| spec.nodes[i].mesh_address.to_string();
    scripted[0].on_engine(
        "GET",
        "/nodes",
        200,
        &format!(
            r#"[{}, {{"ID": "ghost1", "Status": {{"State": "unknown"}}, "Spec": {{"Role": "worker"}}}}]"#,
            entry("id1", "node1", &addr(0), Some((true, "reachable"))),
        ),
    );
    scripted[0].on_engine(
        "GET",
        "/nodes/id1",
        200,
        &entry("id1", "node1", &addr(0), Some((true, "reachable"))),
    );
    // node3's engine answers its first question, then no more.
    scripted[2].on_engine("GET", "/info", 500, r#"{"message": "engine gone"}"#);
    scripted[2].on_engine_times(
        "GET",
        "/info",
        1,
        200,
        r#"{"Swarm": {"LocalNodeState": "inactive"}}"#,
    );
    let refs: Vec<&Scripted> = scripted.iter().collect();
    let change = up(&nodes(&refs), &spec).await.unwrap();
    assert!(
        change.updated.iter().all(|u| !u.contains("ghost1")),
        "{:?}",
        change.updated
    );
    assert!(scripted[0].asked().iter().all(|a| !a.starts_with("DELETE")));
}

#[tokio::test(start_paused = true)]
async fn up_waits_for_every_manager_to_know_the_leader_and_names_one_that_never_does() {
    let spec = clusterkit_core::spec::example(3);
    let no_leader =
        r#"{"message": "rpc error: code = Unknown desc = The swarm does not have a leader."}"#;
    // node2 has just joined (or come back) and learns the leader on the third asking.
    let scripted = one_manager_and_two_fresh(&spec);
    scripted[1].on_engine_times("GET", "/nodes", 2, 500, no_leader);
    let refs: Vec<&Scripted> = scripted.iter().collect();
    up(&nodes(&refs), &spec).await.unwrap();
    let asked = scripted[1]
        .asked()
        .iter()
        .filter(|a| a.starts_with("GET") && a.contains("/nodes"))
        .count();
    assert_eq!(asked, 3, "{:?}", scripted[1].asked());
    // node3 never does: named, with where to look and the way out.
    let scripted = one_manager_and_two_fresh(&spec);
    scripted[2].on_engine("GET", "/nodes", 500, no_leader);
    let refs: Vec<&Scripted> = scripted.iter().collect();
    let e = up(&nodes(&refs), &spec).await.unwrap_err().to_string();
    assert!(
        e.starts_with("node3")
            && e.contains("does not have a leader")
            && e.contains("has not known the swarm's leader for 120 s")
            && e.contains("systemctl restart docker"),
        "{e}"
    );
}
