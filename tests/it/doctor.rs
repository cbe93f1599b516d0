//! `clusterkit doctor` on the shared sandbox: all ok on a built cluster, and
//! an MTU too large for the path flagged with the value that fits.

use crate::sandbox::{calm, ck, config, shared, wait_for};

#[test]
fn doctor_finds_a_built_cluster_healthy_and_flags_an_mtu_too_large_for_the_path() {
    let s = shared();
    let _g = calm();
    crate::storage::storage_up();
    let mut last = String::new();
    // A disruptive test may have just powered a node back on: give storage a moment.
    wait_for("doctor all ok", std::time::Duration::from_secs(120), || {
        let out = ck(&["doctor", "-c", &config()]);
        last = format!("{}{}", out.stdout, out.stderr);
        out.code == 0
    });
    for line in [
        "ok   ssh      3 node(s) reachable, host keys checked",
        "ok   node     OS, clocks, disk, ports and the address plan are fine on every node",
        "ok   mesh     6/6 pairs answer",
        "ok   mtu      a 1420-byte don't-fragment packet passes between every pair; overlays use 1370",
        "ok   ports    the cluster's TCP ports (13 in all) are closed outside the mesh (IPv4 and IPv6); 2377 and 7946 answer over it",
        "ok   quorum   leader ",
        "ok   storage  healthy on 3 node(s), tolerates 1 loss(es)",
    ] {
        assert!(last.contains(line), "{line}: {last}");
    }

    // Something on a cluster port of node2 (3000: Grafana's, free here) on
    // every address: the firewall keeps it off IPv6 as off IPv4. Its IPv6
    // rules flushed by hand: doctor names the port on node2's IPv6 address,
    // and `up --only mesh` sees the drift and applies them again.
    let node2 = format!("{}-node2", crate::sandbox::NAME);
    let sh = |script: &str| {
        let o = crate::sandbox::docker(&["exec", &node2, "sh", "-c", script]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let v6 = sh("ip -6 -o addr show dev eth0 scope global | awk '{print $4}' | cut -d/ -f1");
    let v6 = v6.trim();
    assert!(
        v6.starts_with("fd00:172:29:250::"),
        "node2 has no IPv6 address: {v6}"
    );
    crate::sandbox::docker(&[
        "exec",
        "-d",
        &node2,
        "python3",
        "-m",
        "http.server",
        "3000",
        "--bind",
        "::",
    ]);
    sh("ip6tables -F CLUSTERKIT-MESH");
    let mut drifted = String::new();
    wait_for(
        "doctor sees port 3000 open on IPv6",
        std::time::Duration::from_secs(60),
        || {
            let out = ck(&["doctor", "-c", &config()]);
            drifted = out.stdout;
            out.code == 1
        },
    );
    assert!(
        drifted.contains(&format!(
            "FAIL ports    answering outside the mesh: [{v6}]:3000 (node2)"
        )),
        "{drifted}"
    );
    let mesh = {
        let _one = crate::sandbox::cluster_change();
        ck(&["up", "--only", "mesh", "-c", &config()])
    };
    assert_eq!(mesh.code, 0, "{}{}", mesh.stdout, mesh.stderr);
    let again = ck(&["doctor", "-c", &config()]);
    sh("pkill -f 'http.server 3000'");
    assert!(
        again.stdout.contains("ok   ports    the cluster's TCP ports (13 in all) are closed outside the mesh (IPv4 and IPv6)"),
        "{}{}",
        again.stdout,
        mesh.stderr
    );

    let json = ck(&["doctor", "--json", "-c", &config()]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["healthy"], true, "{}", json.stdout);
    assert!(v["checks"].as_array().is_some_and(|c| c.len() >= 7));

    // The same cluster described with a mesh MTU the bridge cannot carry.
    let cfg = std::fs::read_to_string(config()).unwrap();
    let variant = s.dir.join("mtu-too-large.toml");
    std::fs::write(&variant, format!("{cfg}\n[mesh]\nmtu = 1460\n")).unwrap();
    let bad = ck(&["doctor", "-c", variant.to_str().unwrap()]);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stdout.contains("FAIL mtu      node1 → node2: the mesh MTU 1460 plus WireGuard's 60 bytes exceeds eth0's MTU 1500: set [mesh] mtu to 1440 or less"),
        "{}",
        bad.stdout
    );
}

/// An image with `ping` and `sleep`, made from each node's own files.
fn pinger_image() {
    for i in 1..=3 {
        let o = crate::sandbox::docker(&[
            "exec",
            &format!("{}-node{i}", crate::sandbox::NAME),
            "sh",
            "-c",
            "docker image inspect ck/pinger:1 >/dev/null 2>&1 && exit 0; \
             bins='/usr/bin/ping /usr/bin/sleep'; \
             libs=$(for b in $bins; do ldd $b | grep -o '/[^ ]*'; done | sort -u | sed 's|^/||'); \
             tar -C / -ch usr/bin/ping usr/bin/sleep $libs 2>/dev/null | docker import -c 'CMD [\"/usr/bin/sleep\",\"infinity\"]' - ck/pinger:1 >/dev/null",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn overlay_traffic_between_nodes_passes_at_the_full_overlay_mtu_without_fragmenting() {
    shared();
    let _g = calm();
    crate::swarm::swarm_up();
    pinger_image();
    let sh = |node: &str, script: &str| {
        let o = crate::sandbox::docker(&[
            "exec",
            &format!("{}-{node}", crate::sandbox::NAME),
            "sh",
            "-c",
            script,
        ]);
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    for n in ["node1", "node2"] {
        let (ok, out) = sh(
            n,
            "docker rm -f ck-mtu >/dev/null 2>&1; docker run -d --name ck-mtu --network clusterkit ck/pinger:1 >/dev/null",
        );
        assert!(ok, "{n}: {out}");
    }
    let (_, mtu) = sh("node1", "docker network inspect clusterkit -f '{{index .Options \"com.docker.network.driver.mtu\"}}'");
    // The engine takes VXLAN's 50 bytes off the option itself.
    assert_eq!(
        mtu.trim(),
        "1420",
        "the overlay is sized on the mesh's 1420"
    );
    let (_, inner) = sh(
        "node2",
        // The container's interface on the overlay (the one with the pool's
        // address), read through netlink in its network namespace.
        "p=$(docker inspect ck-mtu -f '{{.State.Pid}}'); \
         d=$(nsenter -t $p -n ip -o -4 addr show | awk '$4 ~ /^10\\.200\\./ {print $2}'); \
         nsenter -t $p -n ip -o link show dev \"$d\" | sed -n 's/.* mtu \\([0-9]*\\).*/\\1/p'",
    );
    assert_eq!(
        inner.trim(),
        "1370",
        "the containers get the mesh MTU less VXLAN's 50"
    );
    let (_, ip) = sh(
        "node2",
        "docker inspect ck-mtu -f '{{(index .NetworkSettings.Networks \"clusterkit\").IPAddress}}'",
    );
    let ip = ip.trim().to_string();
    // The largest packet the overlay allows, don't-fragment, node1 → node2.
    let mut last = String::new();
    wait_for(
        "a full-size DF ping over the overlay",
        std::time::Duration::from_secs(30),
        || {
            let (ok, out) = sh(
                "node1",
                &format!("docker exec ck-mtu ping -M do -s 1342 -c 1 -W 2 {ip}"),
            );
            last = out;
            ok
        },
    );
    assert!(last.contains("1350 bytes from"), "{last}");
    // One byte more is refused, not fragmented.
    let (ok, out) = sh(
        "node1",
        &format!("docker exec ck-mtu ping -M do -s 1343 -c 1 -W 2 {ip}"),
    );
    assert!(!ok, "a packet over the overlay MTU passed: {out}");
    for n in ["node1", "node2"] {
        sh(n, "docker rm -f ck-mtu >/dev/null 2>&1");
    }
}
