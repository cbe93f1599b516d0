use super::facts::{parse, problems};
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
