//! One change at a time on the shared sandbox: a run holding the cluster's
//! lock (another operator's, held through a real SSH session on a node) makes
//! a changing command refuse naming it, or wait and then run; a holder whose
//! connection dies lets go at once; this machine's state directory has a lock
//! of its own; two operators' runs started together both end well.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit::core::lock::{node_script, Holder, LocalLock};

use crate::sandbox::{calm, ck, cluster_change, config, shared, wait_for, NAME};

/// Another operator's run: the lock's own script on `node` through a real
/// SSH session (the sandbox's key and known_hosts), holding the lock for as
/// long as its stdin stays open.
fn hold(node: &str, holder: &Holder) -> Child {
    let dir = &shared().dir;
    let i: u8 = node.trim_start_matches("node").parse().unwrap();
    let mut child = Command::new("ssh")
        .arg("-i")
        .arg(dir.join("id_ed25519"))
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            dir.join("known_hosts").display()
        ))
        .arg(format!("root@172.29.250.{}", 10 + i))
        .arg(node_script(holder).script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ssh");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "locked", "{node}: the test's own hold");
    child
}

/// Runs `clusterkit ARGS` in the background, its stderr lines sent back as
/// they come.
fn start(
    dir: Option<&std::path::Path>,
    args: &[&str],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(crate::bin::clusterkit());
    cmd.arg("--color=never").args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("clusterkit");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits for `child` at most `bound`; its exit code (killed and failed after).
fn finish(child: &mut Child, what: &str, bound: Duration) -> i32 {
    let until = Instant::now() + bound;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("{what}: not ended within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn other_operator() -> Holder {
    Holder {
        who: "ops@other-desk".into(),
        pid: 4242,
        since: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        command: "upgrade".into(),
    }
}

#[test]
fn one_change_at_a_time_the_holder_named_and_a_dead_holder_forgotten() {
    shared();
    let _g = calm();
    crate::swarm::swarm_up();
    let _one = cluster_change();
    let cfg = config();
    let swarm_up = |wait: &str| ck(&["swarm", "up", "--lock-wait", wait, "-c", &cfg]);

    // Another operator holds the cluster: refused at once with --lock-wait 0,
    // naming the holder, what it runs and since when; nothing was done.
    let mut other = hold("node1", &other_operator());
    let r = swarm_up("0");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "node1: another clusterkit run holds the cluster's lock: \
             `clusterkit upgrade` by ops@other-desk (pid 4242) since "
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("swarm unchanged"), "{}", r.stderr);

    // By default it waits, says for whom, and runs once the holder is done.
    let (mut waiting, said) = start(None, &["swarm", "up", "-c", &cfg]);
    let line = said
        .recv_timeout(Duration::from_secs(60))
        .expect("a line from the waiting run");
    assert!(
        line.contains("`clusterkit upgrade` by ops@other-desk (pid 4242)")
            && line.contains("waiting for it (at most 10m"),
        "{line}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(waiting.try_wait().unwrap().is_none(), "it did not wait");
    drop(other.stdin.take()); // the other operator's run ends
    assert_eq!(
        finish(&mut waiting, "the waiting run", Duration::from_secs(120)),
        0
    );
    let rest: Vec<String> = said.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("swarm unchanged")),
        "{rest:?}"
    );
    assert!(other.wait().unwrap().success());

    // A holder whose machine dies mid-run (its SSH client killed, its
    // connection closed): the node lets go at once, nobody waits for it.
    let mut dead = hold("node2", &other_operator());
    dead.kill().unwrap();
    dead.wait().unwrap();
    let started = Instant::now();
    let r = swarm_up("30s");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("waiting for it"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(25));

    // This machine's state directory: a second run beside a first is refused
    // before it reaches any node, naming the first.
    let state_dir = shared().dir.join(".clusterkit");
    let local = LocalLock::acquire(&state_dir, &other_operator()).unwrap();
    let r = swarm_up("0");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "another clusterkit run on this machine holds {}: `clusterkit upgrade` by ops@other-desk (pid 4242)",
            state_dir.join("lock").display()
        )),
        "{}",
        r.stderr
    );
    drop(local);

    // Two operators, each with a copy of the description and state, start
    // `up` together: both end well, one after the other, and the cluster is
    // whole (every node's lock free, the swarm's three managers ready).
    let second = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", shared().dir.display()))
        .arg(second.path())
        .status()
        .unwrap();
    assert!(copy.success());
    let (mut a, a_said) = start(None, &["up", "--only", "swarm", "-c", &cfg]);
    let (mut b, b_said) = start(Some(second.path()), &["up", "--only", "swarm"]);
    let a_code = finish(&mut a, "operator a", Duration::from_secs(300));
    let b_code = finish(&mut b, "operator b", Duration::from_secs(300));
    let a_said: Vec<String> = a_said.try_iter().collect();
    let b_said: Vec<String> = b_said.try_iter().collect();
    assert_eq!((a_code, b_code), (0, 0), "a: {a_said:?}\nb: {b_said:?}");
    eprintln!(
        "two operators at once: a waited {}, b waited {}",
        a_said.iter().any(|l| l.contains("waiting for it")),
        b_said.iter().any(|l| l.contains("waiting for it"))
    );
    // Every node's lock is free again.
    wait_for("every node's lock free", Duration::from_secs(30), || {
        (1..=3).all(|i| {
            let out = crate::sandbox::docker(&[
                "exec",
                &format!("{NAME}-node{i}"),
                "sh",
                "-c",
                "flock -n /run/clusterkit/cluster.lock true && echo free",
            ]);
            String::from_utf8_lossy(&out.stdout).contains("free")
        })
    });
    let st = ck(&["swarm", "status", "-c", &cfg]);
    assert!(
        st.stdout.contains("3 of 3 managers reachable, quorum 2"),
        "{}{}",
        st.stdout,
        st.stderr
    );
}
