//! The WireGuard mesh on sandboxes (the userspace path: this kernel has no module).

use std::time::{Duration, Instant};

use crate::sandbox::{calm, ck, disrupt, docker, shared, NAME};

fn exec(container: &str, script: &str) -> std::process::Output {
    docker(&["exec", container, "sh", "-c", script])
}

fn pings(container: &str, ip: &str) -> bool {
    exec(container, &format!("ping -c1 -W1 {ip} >/dev/null"))
        .status
        .success()
}

/// Brings the shared sandbox's mesh up (idempotent) and returns the captured output.
pub fn mesh_up() -> String {
    let _one = crate::sandbox::cluster_change();
    mesh_up_held()
}

/// [`mesh_up`] for a caller that holds [`crate::sandbox::cluster_change`].
pub fn mesh_up_held() -> String {
    let s = shared();
    let out = ck(&[
        "wg",
        "up",
        "-c",
        s.dir.join("clusterkit.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "wg up failed:\n{}\n{}", out.stdout, out.stderr);
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn the_mesh_is_full_fresh_and_a_rerun_changes_nothing() {
    let s = shared();
    let _g = calm();
    let mut captured = mesh_up();
    let again = mesh_up();
    assert!(
        again.contains("mesh unchanged") && again.contains("; nothing changed"),
        "{again}"
    );
    captured.push_str(&again);
    for i in 1..=3 {
        for j in 1..=3 {
            if i != j {
                assert!(
                    pings(&format!("{NAME}-node{i}"), &format!("10.0.0.{j}")),
                    "node{i} -> 10.0.0.{j}"
                );
            }
        }
    }
    let config = s.dir.join("clusterkit.toml");
    let out = ck(&["wg", "status", "--json", "-c", config.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    captured.push_str(&out.stdout);
    let pairs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let pairs = pairs.as_array().unwrap();
    assert_eq!(pairs.len(), 6);
    for p in pairs {
        let age = p["handshake_age_s"].as_u64().unwrap_or(u64::MAX);
        assert!(age < 180, "stale handshake: {p}");
        assert!(p["ping_ms"].as_f64().is_some(), "{p}");
    }
    let plan = ck(&["plan", "--json", "-c", config.to_str().unwrap()]);
    captured.push_str(&plan.stdout);
    // Private keys stay on their node, in a 0600 file, and appear nowhere else.
    for i in 1..=3 {
        let c = format!("{NAME}-node{i}");
        let key = String::from_utf8(exec(&c, "cat /etc/wireguard/wg0.key").stdout).unwrap();
        let key = key.trim();
        assert_eq!(key.len(), 44, "node{i} key");
        assert!(
            !captured.contains(key),
            "node{i}'s private key leaked into clusterkit's output"
        );
        let conf = String::from_utf8(exec(&c, "cat /etc/wireguard/wg0.conf").stdout).unwrap();
        assert!(!conf.contains(key), "node{i}: private key in wg0.conf");
        assert!(conf.contains("PostUp = wg set %i private-key /etc/wireguard/wg0.key"));
        let modes = String::from_utf8(
            exec(
                &c,
                "stat -c %a /etc/wireguard/wg0.key /etc/wireguard/wg0.conf",
            )
            .stdout,
        )
        .unwrap();
        assert_eq!(modes, "600\n600\n", "node{i}");
        // The interface is the userspace one here.
        assert!(
            exec(&c, "test -S /var/run/wireguard/wg0.sock")
                .status
                .success(),
            "node{i}: no userspace socket"
        );
    }
}

#[test]
fn cluster_ports_answer_over_the_mesh_only() {
    shared();
    let _g = calm();
    mesh_up();
    let node1 = format!("{NAME}-node1");
    let node2 = format!("{NAME}-node2");
    // Separate calls: a pattern given to pkill would match the shell running both.
    let _ = exec(&node1, "pkill -f 'http.server 9100'");
    let _ = exec(
        &node1,
        "(python3 -m http.server 9100 --bind 0.0.0.0 >/dev/null 2>&1 &)",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exec(&node2, "curl -sf -m 2 -o /dev/null http://10.0.0.1:9100/")
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "port 9100 never answered over the mesh"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let direct = exec(
        &node2,
        "curl -sf -m 2 -o /dev/null http://172.29.250.11:9100/",
    );
    assert!(
        !direct.status.success(),
        "port 9100 answers on the sandbox's bridge network"
    );
    // SSH stays open outside the mesh.
    assert!(exec(
        &node2,
        "curl -s -m 2 telnet://172.29.250.11:22 </dev/null | head -c 4 | grep -q SSH-"
    )
    .status
    .success());
    let _ = exec(&node1, "pkill -f '[h]ttp.server 9100'");
}

#[test]
fn the_mesh_comes_back_after_a_power_cut_without_a_rerun() {
    shared();
    let _g = disrupt();
    mesh_up();
    assert_eq!(ck(&["sandbox", "stop", "--name", NAME, "node2"]).code, 0);
    assert!(!pings(&format!("{NAME}-node1"), "10.0.0.2"));
    let out = ck(&["sandbox", "start", "--name", NAME, "node2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(pings(&format!("{NAME}-node1"), "10.0.0.2")
        && pings(&format!("{NAME}-node2"), "10.0.0.3"))
    {
        assert!(
            Instant::now() < deadline,
            "the mesh did not come back after node2 restarted"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The firewall came back too, for IPv4 and IPv6.
    let node2 = format!("{NAME}-node2");
    let sh = |script: &str| {
        let out = exec(&node2, script);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert!(
        std::path::Path::new("/proc/net/if_inet6").exists(),
        "this machine's kernel has no IPv6: the IPv6 rules cannot be shown"
    );
    for family in ["iptables", "ip6tables"] {
        let rules = sh(&format!(
            "{family} -S INPUT; {family} -S DOCKER-USER; {family} -S CLUSTERKIT-MESH"
        ));
        for rule in [
            "-A INPUT -j CLUSTERKIT-MESH",
            "-A DOCKER-USER -j CLUSTERKIT-FWD",
            "-A CLUSTERKIT-MESH -i wg0 -j RETURN",
            "-A CLUSTERKIT-MESH -p tcp -m multiport --dports 2377,7946,3900,3901,3902,3903,9000,9001,9100,8080,9090,9093,3000 -j DROP",
        ] {
            assert!(rules.contains(rule), "{family}: {rule}:\n{rules}");
        }
    }
    // The engine starts only behind the firewall: with the firewall's script
    // failing, a restart of the engine fails and leaves it stopped.
    assert!(
        sh("systemctl show docker -p ExecStartPre")
            .contains("/usr/local/lib/clusterkit/firewall.sh"),
        "{}",
        sh("systemctl cat docker")
    );
    let fw = "/usr/local/lib/clusterkit/firewall.sh";
    sh(&format!(
        "cp {fw} /root/firewall.sh.kept && printf '#!/bin/sh\\nexit 1\\n' > {fw}"
    ));
    let restart = exec(&node2, "systemctl restart docker");
    let state = sh("systemctl is-active docker.service; true");
    sh(&format!("cp /root/firewall.sh.kept {fw} && systemctl reset-failed docker.service; systemctl start docker.service"));
    assert!(
        !restart.status.success(),
        "the engine started with its firewall failing"
    );
    assert_ne!(state.trim(), "active");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sh("docker info -f '{{.ServerVersion}}' 2>&1; true")
        .trim()
        .starts_with(|c: char| c.is_ascii_digit())
    {
        assert!(
            Instant::now() < deadline,
            "node2's engine did not start again"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn nodes_join_leave_and_rotate_keys_without_breaking_the_mesh() {
    const S: &str = "ck-it-wg";
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let dir_s = dir.to_str().unwrap();
    let up = |n: &str| {
        ck(&[
            "sandbox",
            "up",
            "--name",
            S,
            "--nodes",
            n,
            "--subnet",
            "172.29.252.0/24",
            "--dir",
            dir_s,
        ])
    };
    let config = dir.join("clusterkit.toml");
    let cfg = config.to_str().unwrap();
    let result = std::panic::catch_unwind(|| {
        assert_eq!(up("3").code, 0);
        let out = ck(&["wg", "up", "-c", cfg]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let tunnel_pid = |i: u8| {
            String::from_utf8(exec(&format!("{S}-node{i}"), "pidof clusterkit-wg-userspace").stdout)
                .unwrap()
        };
        let before = tunnel_pid(1);

        // A fourth node: added everywhere, live.
        let out = up("4");
        assert_eq!(out.code, 0, "{}", out.stderr);
        let out = ck(&["wg", "up", "-c", cfg]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr
                .contains("node1: config written, peers updated live"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("node4: userspace wireguard installed"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.contains("12 directed pairs"), "{}", out.stdout);
        assert_eq!(tunnel_pid(1), before, "node1's tunnel was restarted");

        // A key rotated: the mesh stays full.
        let old = String::from_utf8(
            exec(&format!("{S}-node2"), "wg pubkey < /etc/wireguard/wg0.key").stdout,
        )
        .unwrap();
        let out = ck(&["wg", "rotate", "node2", "-c", cfg]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let new = String::from_utf8(
            exec(&format!("{S}-node2"), "wg pubkey < /etc/wireguard/wg0.key").stdout,
        )
        .unwrap();
        assert_ne!(old, new);
        assert!(!out.stdout.contains("no answer"), "{}", out.stdout);
        let peers1 =
            String::from_utf8(exec(&format!("{S}-node1"), "wg show wg0 peers").stdout).unwrap();
        assert!(
            peers1.contains(new.trim()) && !peers1.contains(old.trim()),
            "{peers1}"
        );

        // node3 leaves the inventory: its peer entries disappear everywhere.
        let hosts = std::fs::read_to_string(dir.join("hosts.ini")).unwrap();
        let without: String = hosts
            .lines()
            .filter(|l| !l.starts_with("node3 "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.join("hosts.ini"), without).unwrap();
        let out = ck(&["wg", "up", "-c", cfg]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("6 directed pairs"), "{}", out.stdout);
        for i in [1u8, 2, 4] {
            let peers = String::from_utf8(
                exec(&format!("{S}-node{i}"), "wg show wg0 peers | wc -l").stdout,
            )
            .unwrap();
            assert_eq!(peers.trim(), "2", "node{i}");
            let conf = String::from_utf8(
                exec(
                    &format!("{S}-node{i}"),
                    "grep -c '^\\[Peer\\]' /etc/wireguard/wg0.conf",
                )
                .stdout,
            )
            .unwrap();
            assert_eq!(conf.trim(), "2", "node{i}");
        }
    });
    let _ = ck(&["sandbox", "down", "--name", S]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
