use super::facts::{parse, problems, FactProblem};
use super::*;

#[test]
fn secrets_are_redacted_even_when_quoted() {
    let c = Cmd::new("printf %s ")
        .secret("p@ss word")
        .push(" | docker secret create x -");
    assert_eq!(
        c.script(),
        "printf %s 'p@ss word' | docker secret create x -"
    );
    assert_eq!(
        c.redacted(),
        "printf %s <redacted> | docker secret create x -"
    );
    assert_eq!(
        c.redact("error: p@ss word rejected"),
        "error: <redacted> rejected"
    );
}

#[test]
fn quoting() {
    assert_eq!(quote("plain"), "plain");
    assert_eq!(quote("it's"), "\"it's\"");
    assert_eq!(quote("a b"), "'a b'");
}

const SAMPLE: &str = "time=1000.5\nos_id=debian\nos_version=12\ncodename=bookworm\narch=x86_64\nkernel=6.1.0\nwg=no\n\
docker=20.10.24\nswarm=inactive\ndisk_kib=1048576\ninit=systemd\nsudo=no\nports=22 51820 \nmesh=no\n";

#[test]
fn facts_parse_and_judge() {
    let f = parse(SAMPLE, 999.0, 1000.0);
    assert_eq!(f.codename, "bookworm");
    assert_eq!(f.disk_free_mib, 1024);
    assert!((f.clock_offset_s - 0.5).abs() < 1e-9);
    assert_eq!(f.ports_in_use, vec![51820]);
    assert!(!f.docker_held);
    assert!(parse("docker_held=yes\n", 0.0, 0.0).docker_held);
    let p: Vec<String> = problems(&f, "root", false)
        .into_iter()
        .map(|p| p.message)
        .collect();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("only 1024 MiB free"));
    assert!(p[1].starts_with("port 51820 is already in use"));
    // A non-root user needs become and sudo.
    let p = problems(&f, "deploy", true);
    assert!(p
        .iter()
        .any(|p| p.blocking && p.message.starts_with("sudo is not installed")));
    // Once the mesh is up, 51820 is ours.
    let mut up = f.clone();
    up.mesh_up = true;
    up.disk_free_mib = 10_000;
    assert!(problems(&up, "root", false).is_empty());
}

#[test]
fn a_clock_read_inside_the_round_trip_is_no_skew_however_slow() {
    let inside = parse("time=100.5\n", 100.0, 104.0);
    assert_eq!(inside.clock_offset_s, 0.0);
    assert!(problems(&inside, "root", false)
        .iter()
        .all(|p| !p.message.contains("clock")));
    assert_eq!(parse("time=90\n", 100.0, 104.0).clock_offset_s, -10.0);
    let ahead = parse("time=107\n", 100.0, 104.0);
    assert_eq!(ahead.clock_offset_s, 3.0);
    assert!(problems(&ahead, "root", false)
        .iter()
        .any(|p| p.message.contains("clock is +3.0 s off")));
}

#[test]
fn swarm_ports_the_engine_holds_are_not_a_conflict() {
    // Just after leaving a swarm the engine still holds 7946: its own port.
    let engine = SAMPLE.replace("ports=22 51820 ", "ports=22 7946 \nengine_ports=7946 ");
    let f = parse(&engine, 1000.0, 1001.0);
    assert_eq!(f.engine_ports, vec![7946]);
    assert!(problems(&f, "root", false)
        .iter()
        .all(|p| !p.message.contains("port 7946")));
    // Held by another program, it is one.
    let other = SAMPLE.replace("ports=22 51820 ", "ports=22 7946 ");
    let f = parse(&other, 1000.0, 1001.0);
    assert!(problems(&f, "root", false)
        .iter()
        .any(|p| p.blocking && p.message.contains("port 7946 is already in use")));
}

#[test]
fn a_vxlan_port_no_process_holds_is_an_earlier_swarms_leftover_or_another_overlays() {
    // 4789/udp held by the kernel (no process), the engine in no swarm.
    let held = SAMPLE.replace(
        "ports=22 51820 ",
        "ports=22 4789 \nengine_ports=\nkernel_udp_ports=4789 ",
    );
    // With an earlier swarm's overlay left on the node: a warning, `swarm up` clears it.
    let left = format!(
        "{held}overlay=/sys/class/net/vx-001000-abcde /run/docker/netns/1-neqgazr0v0 /etc/passwd /run/docker/netns/$(reboot) \n"
    );
    let f = parse(&left, 1000.0, 1001.0);
    assert_eq!(f.kernel_udp_ports, vec![4789]);
    // Only the engine's names are kept from the node's answer.
    assert_eq!(
        f.overlay,
        [
            "/sys/class/net/vx-001000-abcde",
            "/run/docker/netns/1-neqgazr0v0"
        ]
    );
    let p = problems(&f, "root", false);
    let port: Vec<&FactProblem> = p.iter().filter(|p| p.message.contains("4789")).collect();
    assert_eq!(port.len(), 1, "{p:?}");
    assert!(!port[0].blocking, "{p:?}");
    assert!(
        port[0].message.contains("earlier swarm")
            && port[0].message.contains("/run/docker/netns/1-neqgazr0v0")
            && port[0].message.contains("clusterkit swarm up"),
        "{p:?}"
    );
    // Without any: another overlay's VXLAN, which would collide.
    let f = parse(&held, 1000.0, 1001.0);
    assert!(f.overlay.is_empty());
    assert!(problems(&f, "root", false).iter().any(|p| p.blocking
        && p.message
            .contains("4789/udp is held by a VXLAN device of another overlay")));
    // Held by a process: something else.
    let f = parse(
        &SAMPLE.replace("ports=22 51820 ", "ports=22 4789 \nkernel_udp_ports=\n"),
        1000.0,
        1001.0,
    );
    assert!(problems(&f, "root", false)
        .iter()
        .any(|p| p.blocking && p.message.contains("port 4789 is already in use")));
    // In a swarm, the overlay is the swarm's own.
    let mut active = parse(&left, 1000.0, 1001.0);
    active.swarm = Some("active".into());
    assert!(problems(&active, "root", false)
        .iter()
        .all(|p| !p.message.contains("4789")));
}

fn spec_with(mesh: &str) -> crate::spec::ClusterSpec {
    let inv = crate::inventory::Inventory::parse(
        crate::source::SourceFile::new("h.ini", "[s]\nn1 ansible_host=192.0.2.1\n"),
        crate::inventory::Format::Ini,
        &mut Default::default(),
    );
    let mut spec = crate::spec::build(None, Some(&inv), &Default::default(), &|_| None)
        .unwrap()
        .spec;
    spec.mesh.cidr = mesh.parse().unwrap();
    spec
}

#[test]
fn the_address_plan_refuses_overlaps_with_routes_bridges_and_engine_pools() {
    use super::facts::address_problems;
    // A node on a LAN, with the engine's bridge, its configured pools, the
    // mesh up and a VPN route into 10.200.5.0/24.
    let text = format!(
        "{SAMPLE}route=192.168.1.0/24 eth0\nroute=172.17.0.0/16 docker0\nroute=10.0.0.0/24 wg0\n\
         route=10.200.5.0/24 tun7\nroute=10.0.0.9 eth0\npools=172.20.0.0/14 \n"
    );
    let f = parse(&text, 999.0, 1000.0);
    assert_eq!(f.routes.len(), 5);
    assert_eq!(f.routes[4].dst.to_string(), "10.0.0.9/32");
    assert_eq!(f.engine_pools.len(), 1);
    let msgs: Vec<String> = address_problems(&f, &spec_with("10.0.0.0/24"))
        .into_iter()
        .inspect(|p| assert!(p.blocking))
        .map(|p| p.message)
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert!(msgs[0].starts_with("the route to 10.200.5.0/24 (dev tun7) overlaps the swarm address pool 10.200.0.0/16 (swarm.default_addr_pool)"), "{}", msgs[0]);
    assert!(
        msgs[1].starts_with(
            "the route to 10.0.0.9/32 (dev eth0) overlaps the mesh 10.0.0.0/24 (mesh.cidr)"
        ),
        "{}",
        msgs[1]
    );
    // A mesh inside the engine's bridge and its pools.
    let msgs: Vec<String> = address_problems(&f, &spec_with("172.21.0.0/24"))
        .into_iter()
        .map(|p| p.message)
        .collect();
    assert!(msgs.iter().any(|m| m.starts_with("the engine's local address pool 172.20.0.0/14 (default-address-pools in /etc/docker/daemon.json) overlaps the mesh 172.21.0.0/24")), "{msgs:#?}");
    let msgs: Vec<String> = address_problems(&f, &spec_with("172.17.3.0/24"))
        .into_iter()
        .map(|p| p.message)
        .collect();
    assert!(
        msgs.iter().any(|m| m
            .starts_with("the engine's bridge network 172.17.0.0/16 (docker0) overlaps the mesh")),
        "{msgs:#?}"
    );
    // Without configured pools, Docker's own defaults count.
    let bare = parse(SAMPLE, 999.0, 1000.0);
    let msgs: Vec<String> = address_problems(&bare, &spec_with("192.168.50.0/24"))
        .into_iter()
        .map(|p| p.message)
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(msgs[0].contains("192.168.0.0/16 (Docker's built-in default)"));
    // A clean plan.
    assert!(address_problems(&bare, &spec_with("10.0.0.0/24")).is_empty());
}

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJqEmhb7uNMgKKdwGUa/4mZMiB7Yb5obhjD64cvmrNb7";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDFFq2EBqd6GgFJxFcj5QzRnB45xBf4mGqXoK6FbzhxDcQ90eHRM25qEsvxmh+vz3/HoDIqDJfRFVaKlcHf14gVNRrSUW+dMoJ1NWEnnBVPxeFY+rfWH941dKuTnm7d0WpVYdKia3BSIIx8JQttBDMeBQ2w59qPRaFr/AxdNRmWVQ==";

fn key(text: &str) -> russh::keys::PublicKey {
    russh::keys::PublicKey::from_openssh(text).expect("a public key")
}

#[test]
fn a_recorded_key_binds_its_host_whatever_the_algorithm_offered() {
    use super::known_hosts::{check, HostKeyCheck, HostKeyPolicy};
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    // First contact records the ed25519 key; it is known afterwards.
    let first = check(&kh, "10.9.0.1", 22, &key(ED25519), HostKeyPolicy::AcceptNew).unwrap();
    assert!(matches!(first, HostKeyCheck::Learned { .. }), "{first:?}");
    let again = check(&kh, "10.9.0.1", 22, &key(ED25519), HostKeyPolicy::AcceptNew).unwrap();
    assert_eq!(again, HostKeyCheck::Known);
    // The same host offering an RSA key (never recorded): changed, not a
    // first contact, and nothing is recorded.
    let other = check(&kh, "10.9.0.1", 22, &key(RSA), HostKeyPolicy::AcceptNew).unwrap();
    let HostKeyCheck::Changed { old, new } = other else {
        panic!("{other:?}")
    };
    assert!(
        old.starts_with("SHA256:") && old.ends_with("(ssh-ed25519)"),
        "{old}"
    );
    assert!(
        new.starts_with("SHA256:") && new.ends_with("(ssh-rsa)"),
        "{new}"
    );
    let text = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(text.lines().filter(|l| !l.is_empty()).count(), 1, "{text}");
    // Another port of the same address is another host.
    let elsewhere = check(&kh, "10.9.0.1", 2222, &key(RSA), HostKeyPolicy::Strict).unwrap();
    assert!(
        matches!(elsewhere, HostKeyCheck::Unknown { .. }),
        "{elsewhere:?}"
    );
}

#[test]
fn the_recorded_key_types_are_offered_first() {
    use super::known_hosts::preferred_algorithms;
    use russh::keys::Algorithm;
    let none = preferred_algorithms(&[]);
    assert_eq!(none, russh::Preferred::DEFAULT.key.to_vec());
    let rsa = preferred_algorithms(&[key(RSA)]);
    assert!(
        rsa[0].clone().is_rsa() && rsa[1].clone().is_rsa() && rsa[2].clone().is_rsa(),
        "{rsa:?}"
    );
    assert_eq!(rsa.len(), none.len());
    let ed = preferred_algorithms(&[key(ED25519)]);
    assert_eq!(ed[0], Algorithm::Ed25519);
}

/// Runs `script` with `sh` on this machine and returns its output.
fn sh(script: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_facts_script_reads_this_machine_as_the_tools_it_replaced() {
    // A cluster port in use: the script must see it (ss through awk).
    let listener = std::net::TcpListener::bind("0.0.0.0:4789")
        .expect("TCP port 4789 is free on a machine running the unit tests");
    let text = sh(facts::SCRIPT);
    let f = parse(&text, 0.0, f64::MAX);
    for key in [
        "time=",
        "os_id=",
        "arch=",
        "kernel=",
        "wg=",
        "docker=",
        "docker_package=",
        "docker_held=",
        "disk_kib=",
        "init=",
        "sudo=",
        "ports=",
        "engine_ports=",
        "kernel_udp_ports=",
        "mesh=",
        "overlay=",
        "pools=",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "{key} missing:\n{text}"
        );
    }
    assert_eq!(f.kernel, sh("uname -r"));
    assert_eq!(f.arch, sh("uname -m"));
    assert_eq!(f.init, sh("cat /proc/1/comm"));
    assert_eq!(
        f.docker_package.unwrap_or_default(),
        sh("dpkg-query -W -f='${Version}' docker.io 2>/dev/null")
    );
    assert_eq!(
        f.docker_held,
        sh("apt-mark showhold 2>/dev/null")
            .lines()
            .any(|l| l == "docker.io")
    );
    let df: u64 = sh("df -Pk / | awk 'NR==2 {print $4}'").parse().expect("df");
    let diff = (f.disk_free_mib as i64 - (df / 1024) as i64).abs();
    assert!(
        diff <= 1 + (df / 1024 / 100) as i64,
        "{} MiB vs df {}",
        f.disk_free_mib,
        df / 1024
    );
    assert!(f.ports_in_use.contains(&4789), "{text}");
    drop(listener);
}
