//! The sandbox test bed: one 3-node sandbox shared by every integration test
//! of a run (created once, removed when the test process exits), and the
//! tests of the sandbox itself.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::bin::{clusterkit, Output, Scratch};

/// The shared sandbox's name and subnet: distinct from a user's default sandbox.
pub const NAME: &str = "ck-it";
const SUBNET: &str = "172.29.250.0/24";

/// The shared sandbox.
pub struct Shared {
    /// Its files (key, inventory, config, known_hosts).
    pub dir: PathBuf,
    _scratch: tempfile::TempDir,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static DISRUPT: RwLock<()> = RwLock::new(());

/// Runs `docker ARGS` on this machine (a node's shell is `docker exec`);
/// one that has not ended after 10 minutes fails the test, naming it.
pub fn docker(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let bound = std::time::Duration::from_secs(600);
    crate::bin::output_within(cmd, bound).unwrap_or_else(|(out, err)| {
        panic!(
            "`docker {}` gave no answer within {} s and was killed\nits stdout so far:\n{out}\nits stderr so far:\n{err}",
            args.join(" "),
            bound.as_secs()
        )
    })
}

/// Runs `clusterkit ARGS` from anywhere.
pub fn ck(args: &[&str]) -> Output {
    if args.first() == Some(&"sandbox") {
        this_run_only();
    }
    crate::bin::run(None, args)
}

/// The shared sandbox, created on first use. A missing engine is a failure
/// with a clear message, never a skip.
pub fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        this_run_only();
        let v = docker(&["version", "--format", "{{.Server.Version}}"]);
        assert!(
            v.status.success(),
            "the integration tests need a running Docker Engine: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        // Containers, or what they leave when removed by hand (volumes, the network).
        let leftovers = ["ps -a", "volume ls", "network ls"].iter().any(|list| {
            let mut args: Vec<&str> = list.split(' ').collect();
            let filter = format!("label=io.clusterkit.sandbox={NAME}");
            args.extend(["-q", "--filter", &filter]);
            !docker(&args).stdout.is_empty()
        });
        if leftovers {
            eprintln!("removing sandbox `{NAME}` left over by an earlier, interrupted run");
            let out = ck(&["sandbox", "down", "--name", NAME]);
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = scratch.path().join("sandbox");
        let out = ck(&[
            "sandbox",
            "up",
            "--name",
            NAME,
            "--subnet",
            SUBNET,
            "--dir",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(
            out.code, 0,
            "sandbox up failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        Shared {
            dir,
            _scratch: scratch,
        }
    })
}

/// Powers nodes back on when dropped (those that are off), so that a
/// failing disruptive test does not leave a sandbox broken for the others.
pub struct PowerBack {
    sandbox: &'static str,
    nodes: Vec<String>,
}

impl PowerBack {
    /// For nodes of the shared sandbox.
    pub fn shared(nodes: impl IntoIterator<Item = impl ToString>) -> PowerBack {
        PowerBack::of(NAME, nodes)
    }

    /// For nodes of the sandbox `sandbox`.
    pub fn of(sandbox: &'static str, nodes: impl IntoIterator<Item = impl ToString>) -> PowerBack {
        PowerBack {
            sandbox,
            nodes: nodes.into_iter().map(|n| n.to_string()).collect(),
        }
    }
}

impl Drop for PowerBack {
    fn drop(&mut self) {
        for n in &self.nodes {
            let running = docker(&[
                "inspect",
                "--format",
                "{{.State.Running}}",
                &format!("{}-{n}", self.sandbox),
            ]);
            if String::from_utf8_lossy(&running.stdout).trim() != "true" {
                let _ = ck(&["sandbox", "start", "--name", self.sandbox, n]);
            }
        }
    }
}

/// Held while a command changes the shared cluster (`wg up`, `swarm up`,
/// `up`): two runs on the same nodes at once race, as they would for a user.
/// `clusterkit sandbox build-images`, run once for every test that needs the
/// service images (two builds at once would race for Garage's cargo build).
pub fn build_images() -> &'static Output {
    static BUILT: OnceLock<Output> = OnceLock::new();
    BUILT.get_or_init(|| ck(&["sandbox", "build-images"]))
}

/// The shared sandbox's clusterkit.toml.
pub fn config() -> String {
    shared()
        .dir
        .join("clusterkit.toml")
        .to_str()
        .unwrap()
        .to_string()
}

/// Polls `f` every half second until it holds; fails naming `what` after `limit`.
pub fn wait_for(
    what: &str,
    limit: std::time::Duration,
    f: impl FnMut() -> bool,
) -> std::time::Duration {
    wait_for_else(what, limit, f, String::new)
}

/// [`wait_for`], and when `limit` passes, `evidence` (what tells why) in the
/// failure's message.
pub fn wait_for_else(
    what: &str,
    limit: std::time::Duration,
    mut f: impl FnMut() -> bool,
    evidence: impl FnOnce() -> String,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !f() {
        if start.elapsed() >= limit {
            panic!("{what}: not within {limit:?}\n{}", evidence());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    start.elapsed()
}

/// Waits until `status` reports the nodes, mesh, swarm and storage ok, and
/// monitoring too where it runs (Prometheus found targets, every one up), up to
/// `limit`; fails with its last answer (a target down with Prometheus's own
/// words on why).
pub fn whole(cfg: &str, what: &str, limit: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let st = ck(&["status", "-c", cfg]);
        let parts_ok = ["nodes", "mesh", "swarm", "storage"].iter().all(|part| {
            st.stdout
                .lines()
                .any(|l| l.starts_with(&format!("ok   {part} ")))
        });
        let monitor_ok = st
            .stdout
            .lines()
            .filter(|l| l.contains(" monitor "))
            .all(|l| l.starts_with("ok   monitor "));
        if parts_ok && monitor_ok {
            return st.stdout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}:\n{}{}",
            st.stdout,
            st.stderr
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// Runs `f` while a client thread asks `answered` every `every` (an
/// answer within it counts as one success). Returns `f`'s result, the
/// questions answered and those not.
pub fn while_asking<T>(
    every: std::time::Duration,
    mut answered: impl FnMut() -> bool + Send + 'static,
    f: impl FnOnce() -> T,
) -> (T, u32, u32) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if answered() {
                    ok += 1
                } else {
                    failed += 1
                }
                std::thread::sleep(every);
            }
            (ok, failed)
        })
    };
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.join().unwrap();
    (out, ok, failed)
}

pub fn cluster_change() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Taken by a test that stops, starts or cuts off nodes of the shared sandbox:
/// it runs alone.
pub fn disrupt() -> RwLockWriteGuard<'static, ()> {
    DISRUPT.write().unwrap_or_else(|e| e.into_inner())
}

/// Taken by a test that needs every node up: it runs beside other such tests,
/// never during a disruptive one.
pub fn calm() -> RwLockReadGuard<'static, ()> {
    DISRUPT.read().unwrap_or_else(|e| e.into_inner())
}

/// Makes this test process the only one using the `ck-it*` sandboxes, for
/// as long as it runs (a lock file held open): a second run started beside
/// it (one test run by hand during the suite) would take this run's
/// sandbox for one left over by an interrupted run and remove it. The
/// second run fails at once instead, naming the one that holds them.
fn this_run_only() {
    static LOCK: OnceLock<std::fs::File> = OnceLock::new();
    LOCK.get_or_init(|| {
        use std::io::{Read, Seek, Write};
        let path = std::env::temp_dir().join(format!("clusterkit-it-{NAME}.lock"));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        if f.try_lock().is_err() {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            panic!(
                "another test run (pid {}) uses the `{NAME}` sandboxes: wait for it to end \
                 (the lock is {})",
                holder.trim(),
                path.display()
            );
        }
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "{}", std::process::id());
        f
    });
}

/// Removes the shared sandbox when the test process ends (unless
/// CLUSTERKIT_KEEP_SANDBOX is set, to look at it after a failure).
#[dtor::dtor]
#[allow(unsafe_code)]
unsafe fn teardown() {
    if SHARED.get().is_some() && std::env::var_os("CLUSTERKIT_KEEP_SANDBOX").is_none() {
        let _ = Command::new(clusterkit())
            .args(["sandbox", "down", "--name", NAME])
            .output();
    }
}

/// Makes a tiny image (one file) in the local engine.
pub fn tiny_image(tag: &str) {
    let scratch = Scratch::new(&[("hello.txt", "loaded\n")]);
    let tar = Command::new("tar")
        .args([
            "-C",
            scratch.path().to_str().unwrap(),
            "-cf",
            "-",
            "hello.txt",
        ])
        .output()
        .unwrap();
    let mut import = Command::new("docker")
        .args(["import", "-", tag])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(import.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(import.stdin.take());
    assert!(import.wait().unwrap().success());
}

/// Runs a shell command on a node over SSH (the sandbox's key, checked host key).
pub fn ssh(node: &str, cmd: &str) -> Output {
    shared();
    ck(&["sandbox", "ssh", "--name", NAME, node, "--", cmd])
}

/// Whether `from` reaches `to_addr` with one ping.
fn pings(from: &str, to_addr: &str) -> bool {
    docker(&[
        "exec",
        &format!("{NAME}-{from}"),
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        to_addr,
    ])
    .status
    .success()
}

fn addr(i: u8) -> String {
    format!("172.29.250.{}", 10 + i)
}

#[test]
fn every_node_answers_ssh_with_its_recorded_host_key_and_runs_dockerd() {
    let s = shared();
    let _g = calm();
    for i in 1..=3 {
        let node = format!("node{i}");
        let out = ssh(
            &node,
            "hostname; docker info --format '{{.ServerVersion}} {{.Driver}}'",
        );
        assert_eq!(out.code, 0, "{node}: {}", out.stderr);
        let mut lines = out.stdout.lines();
        assert_eq!(lines.next(), Some(node.as_str()));
        assert!(
            lines.next().unwrap_or("").ends_with(" overlay2"),
            "{}",
            out.stdout
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir.join("id_ed25519"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the private key must be 0600");
    let known = std::fs::read_to_string(s.dir.join("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 3, "{known}");
    // Each node made its own host key.
    let keys: std::collections::HashSet<_> = known
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(keys.len(), 3);
    // A wrong host key is refused: SSH really checks against the recorded keys.
    let bad = s.dir.join("known_hosts.bad");
    std::fs::write(
        &bad,
        known
            .replace(&addr(1), "172.29.250.99")
            .replace(&addr(2), &addr(1)),
    )
    .unwrap();
    let out = Command::new("ssh")
        .args([
            "-i",
            s.dir.join("id_ed25519").to_str().unwrap(),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg(format!("-oUserKnownHostsFile={}", bad.display()))
        .arg(format!("root@{}", addr(1)))
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The written inventory and config describe a valid cluster.
    let out = ck(&[
        "validate",
        "-c",
        s.dir.join("clusterkit.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("ok: 3 node(s)"), "{}", out.stdout);
}

#[test]
fn stop_cuts_the_power_and_start_brings_the_node_back() {
    shared();
    let _g = disrupt();
    assert!(pings("node1", &addr(3)));
    let out = ck(&["sandbox", "stop", "--name", NAME, "node3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!pings("node1", &addr(3)), "node3 still answers after stop");
    let st = ck(&["sandbox", "status", "--name", NAME]);
    assert_eq!(st.code, 1, "status must fail while a node is down");
    assert!(
        st.stdout
            .lines()
            .any(|l| l.starts_with("node3") && l.contains("exited")),
        "{}",
        st.stdout
    );
    let out = ck(&["sandbox", "start", "--name", NAME, "node3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(pings("node1", &addr(3)));
    assert_eq!(
        ssh("node3", "systemctl is-active docker ssh").stdout,
        "active\nactive\n"
    );
}

#[test]
fn partition_cuts_a_node_off_from_the_others_and_heal_reconnects_it() {
    shared();
    let _g = disrupt();
    let out = ck(&["sandbox", "partition", "--name", NAME, "node2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!pings("node1", &addr(2)));
    assert!(!pings("node3", &addr(2)));
    assert!(!pings("node2", &addr(1)));
    assert!(pings("node1", &addr(3)), "the others still see each other");
    let st = ck(&["sandbox", "status", "--name", NAME]);
    assert!(
        st.stdout
            .lines()
            .any(|l| l.starts_with("node2") && l.ends_with("yes")),
        "{}",
        st.stdout
    );
    let out = ck(&["sandbox", "heal", "--name", NAME, "node2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(pings("node1", &addr(2)));
    assert!(pings("node2", &addr(3)));
    assert_eq!(ck(&["sandbox", "status", "--name", NAME]).code, 0);
}

#[test]
fn load_image_copies_a_local_image_into_every_node() {
    shared();
    let _g = calm();
    tiny_image("ck-it/tiny:1");
    let out = ck(&["sandbox", "load-image", "--name", NAME, "ck-it/tiny:1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for i in 1..=3 {
        let out = ssh(
            &format!("node{i}"),
            "docker image inspect --format '{{.Id}}' ck-it/tiny:1",
        );
        assert_eq!(out.code, 0, "node{i}: {}", out.stderr);
    }
    let missing = ck(&["sandbox", "load-image", "--name", NAME, "ck-it/absent:1"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("not in the local engine"),
        "{}",
        missing.stderr
    );
    let _ = docker(&["rmi", "ck-it/tiny:1"]);
}

#[test]
fn up_is_idempotent_and_down_leaves_nothing_behind() {
    const OTHER: &str = "ck-it-down";
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    let args = [
        "sandbox",
        "up",
        "--name",
        OTHER,
        "--nodes",
        "1",
        "--subnet",
        "172.29.251.0/24",
        "--dir",
        dir.to_str().unwrap(),
    ];
    let first = ck(&args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let id = docker(&["inspect", "--format", "{{.Id}}", &format!("{OTHER}-node1")]).stdout;
    let again = ck(&args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        !again.stderr.contains("creating"),
        "a re-run creates nothing: {}",
        again.stderr
    );
    assert_eq!(
        docker(&["inspect", "--format", "{{.Id}}", &format!("{OTHER}-node1")]).stdout,
        id
    );
    // A node container removed by hand leaves its engine's volume: the node
    // made again starts from nothing (an empty engine), not from that state.
    let marker = docker(&[
        "exec",
        &format!("{OTHER}-node1"),
        "touch",
        "/var/lib/docker/left-by-the-old-node",
    ]);
    assert!(marker.status.success());
    assert!(docker(&["rm", "-f", &format!("{OTHER}-node1")])
        .status
        .success());
    let remade = ck(&args);
    assert_eq!(remade.code, 0, "{}", remade.stderr);
    assert!(
        remade.stderr.contains(
            "node1: removing ck-it-down-node1-docker, left by a removed node of the same name"
        ),
        "{}",
        remade.stderr
    );
    assert!(!docker(&[
        "exec",
        &format!("{OTHER}-node1"),
        "test",
        "-e",
        "/var/lib/docker/left-by-the-old-node",
    ])
    .status
    .success());
    // Asking for fewer nodes than exist is refused with the way out.
    let fewer = ck(&[
        "sandbox",
        "up",
        "--name",
        OTHER,
        "--nodes",
        "0",
        "--subnet",
        "172.29.251.0/24",
    ]);
    assert_eq!(fewer.code, 1);
    let down = ck(&["sandbox", "down", "--name", OTHER]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let label = format!("label=io.clusterkit.sandbox={OTHER}");
    assert!(
        docker(&["ps", "-aq", "--filter", &label]).stdout.is_empty(),
        "a container is left"
    );
    assert!(
        docker(&["volume", "ls", "-q", "--filter", &label])
            .stdout
            .is_empty(),
        "a volume is left"
    );
    assert!(
        docker(&["network", "ls", "-q", "--filter", &label])
            .stdout
            .is_empty(),
        "a network is left"
    );
    assert!(!dir.join("id_ed25519").exists(), "the key is left");
    // Down again: nothing to do, no error.
    assert_eq!(ck(&["sandbox", "down", "--name", OTHER]).code, 0);
}

#[test]
fn unknown_node_and_missing_sandbox_are_explained() {
    shared();
    let out = ck(&["sandbox", "stop", "--name", NAME, "node9"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("has no node `node9`; its nodes: node1, node2, node3"),
        "{}",
        out.stderr
    );
    let out = ck(&["sandbox", "status", "--name", "ck-it-absent"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("there is no sandbox `ck-it-absent`"),
        "{}",
        out.stderr
    );
}

#[test]
fn service_images_are_built_from_debian_packages_and_serve() {
    shared();
    let _g = calm();
    let out = build_images();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "clusterkit/prometheus:sid\nclusterkit/prometheus:bookworm\nclusterkit/cadvisor:bullseye\n\
         clusterkit/node-exporter:trixie\nclusterkit/alertmanager:trixie\nclusterkit/example-app:bookworm\n\
         clusterkit/caddy:sid\nclusterkit/pebble:sid\nclusterkit/rclone:bookworm\nclusterkit/garage:2.5.0\n"
    );
    let version = |image: &str, arg: &str| {
        let o = docker(&["run", "--rm", image, arg]);
        assert!(
            o.status.success(),
            "{image}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // The default images' families (Prometheus 3, node-exporter 1.9+,
    // Alertmanager 0.28+), and the previous Prometheus a roll starts from.
    let prometheus = version("clusterkit/prometheus:sid", "--version");
    assert!(
        prometheus.contains("prometheus, version 3."),
        "{prometheus}"
    );
    let previous = version("clusterkit/prometheus:bookworm", "--version");
    assert!(previous.contains("prometheus, version 2.42."), "{previous}");
    let at_least = |text: &str, prefix: &str, major: u32, minor: u32| {
        let v = text
            .split(prefix)
            .nth(1)
            .unwrap_or_else(|| panic!("no `{prefix}` in {text}"));
        let mut n = v
            .split(['.', ' ', '+', '-'])
            .map(|x| x.parse::<u32>().unwrap_or(0));
        let (a, b) = (n.next().unwrap_or(0), n.next().unwrap_or(0));
        assert!((a, b) >= (major, minor), "{text}");
    };
    at_least(
        &version("clusterkit/node-exporter:trixie", "--version"),
        "node_exporter, version ",
        1,
        9,
    );
    at_least(
        &version("clusterkit/alertmanager:trixie", "--version"),
        "alertmanager, version ",
        0,
        28,
    );
    // Caddy of the default image's family (caddy:2, 2.10 and later).
    // (Debian's build prints `2.11.4`, upstream's `v2.11.4 h1:…`.)
    let caddy = format!(
        "caddy {}",
        version("clusterkit/caddy:sid", "version")
            .trim()
            .trim_start_matches('v')
    );
    at_least(&caddy, "caddy ", 2, 10);
    assert!(version("clusterkit/rclone:bookworm", "version").contains("rclone v1."));
    assert!(version("clusterkit/cadvisor:bullseye", "--version").contains("cAdvisor version 0.38."));

    // node-exporter, loaded into the nodes' engines, serves metrics on a node.
    let out = ck(&[
        "sandbox",
        "load-image",
        "--name",
        NAME,
        "clusterkit/node-exporter:trixie",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = ssh(
        "node1",
        // On a port of its own: the cluster's node-exporter may hold the
        // node's mesh address's 9100 (and then no other may take them all).
        "docker rm -f ne >/dev/null 2>&1; docker run -d --name ne --network host clusterkit/node-exporter:trixie --web.listen-address=127.0.0.1:19100 >/dev/null \
         && for i in $(seq 50); do curl -sf localhost:19100/metrics && break; sleep 0.2; done | grep -c '^node_uname_info'; docker rm -f ne >/dev/null",
    );
    assert_eq!(out.stdout.trim(), "1", "{}{}", out.stdout, out.stderr);

    // Prometheus serves on the sandbox network, reached from a node.
    let prom = "ck-it-prometheus";
    let _ = docker(&["rm", "-f", prom]);
    let run = docker(&[
        "run",
        "-d",
        "--name",
        prom,
        "--network",
        &format!("{NAME}-net"),
        "--ip",
        "172.29.250.200",
        "clusterkit/prometheus:sid",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = ssh("node2", "for i in $(seq 100); do curl -sf http://172.29.250.200:9090/-/ready && exit 0; sleep 0.2; done; exit 1");
    let _ = docker(&["rm", "-f", prom]);
    assert_eq!(
        out.code, 0,
        "prometheus never became ready: {}{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("Ready"), "{}", out.stdout);
}

/// Taken for the whole of a test that brings up a sandbox of its own and
/// builds a cluster on it (three more nodes, Garage, Prometheus...): one such
/// test at a time, beside the shared sandbox's tests. Measured on 2 cores:
/// `backup` and `day2` side by side took 25 minutes each, while the shared
/// sandbox's tests waited behind them; `day2` beside those tests, 12.
/// `.cargo/config.toml` gives the run a third test thread for them.
pub fn own_cluster() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes a test's own sandbox when dropped, whether the test passed or not.
pub struct DownOnDrop(pub &'static str);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = ck(&["sandbox", "down", "--name", self.0]);
    }
}

/// Brings up a sandbox of a test's own (`name`, `subnet`, files in `dir`).
pub fn own_sandbox_up(name: &str, subnet: &str, dir: &str) {
    own_sandbox_up_nodes(name, 3, subnet, dir);
}

/// [`own_sandbox_up`] with `nodes` nodes.
pub fn own_sandbox_up_nodes(name: &str, nodes: usize, subnet: &str, dir: &str) {
    this_run_only();
    let n = nodes.to_string();
    let out = ck(&[
        "sandbox", "up", "--name", name, "--nodes", &n, "--subnet", subnet, "--dir", dir,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
