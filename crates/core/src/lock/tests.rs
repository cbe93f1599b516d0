use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

fn holder() -> Holder {
    Holder {
        who: "ops@desk".into(),
        pid: 4242,
        since: 1_790_000_000,
        command: "up".into(),
    }
}

#[test]
fn a_holder_line_reads_back() {
    let h = holder();
    assert_eq!(
        h.line(),
        "who=ops@desk pid=4242 since=1790000000 command=up"
    );
    assert_eq!(Holder::parse(&h.line()), Some(h.clone()));
    assert_eq!(Holder::parse(&format!("{}\n", h.line())), Some(h));
}

#[test]
fn a_hostile_holder_line_is_tamed_or_refused() {
    // A value written on a node by anyone with root there: no control
    // character, space or shell character survives into a message.
    let h = Holder::parse("who=a;rm$(x)\u{1b}[31m pid=1 since=2 command=up`x`").unwrap();
    assert_eq!(h.who, "armx31m");
    assert_eq!(h.command, "upx");
    assert_eq!(Holder::parse("who=a pid=-1 since=2 command=up"), None);
    assert_eq!(
        Holder::parse("who=a pid=1 since=2 command=up extra=1"),
        None
    );
    assert_eq!(Holder::parse("hello"), None);
    assert_eq!(
        Said::read("\u{1b}]0;owned\u{7}").to_string(),
        "unrecognised holder `\\u{1b}]0;owned\\u{7}`"
    );
    assert_eq!(
        Said::read("\n").to_string(),
        "a run that has not said who it is yet"
    );
    assert!(Holder::here("up; reboot")
        .line()
        .ends_with("command=upreboot"));
}

#[test]
fn a_holder_is_shown_with_its_command_and_time() {
    let shown = holder().to_string();
    assert!(
        shown.starts_with("`clusterkit up` by ops@desk (pid 4242) since 2026-09-21T"),
        "{shown}"
    );
    assert!(shown.contains(" ago)"), "{shown}");
}

#[test]
fn answers_are_read() {
    assert_eq!(answer("locked\n"), Answer::Locked);
    assert_eq!(
        answer("busy\nwho=a pid=1 since=2 command=up\n"),
        Answer::Busy("who=a pid=1 since=2 command=up\n".into())
    );
    assert_eq!(answer("noflock\n"), Answer::NoFlock);
    assert_eq!(
        answer("sh: 1: cannot create\n"),
        Answer::Other("sh: 1: cannot create\n".into())
    );
    assert_eq!(answer(""), Answer::Other(String::new()));
}

#[test]
fn the_node_script_quotes_the_holder_and_parses() {
    let h = Holder {
        who: "x".into(),
        pid: 1,
        since: 2,
        command: "up".into(),
    };
    let script = node_script(&h);
    assert!(
        script
            .script()
            .contains("printf '%s\\n' 'who=x pid=1 since=2 command=up' > \"$d/cluster.holder\""),
        "{}",
        script.script()
    );
    let out = std::process::Command::new("sh")
        .args(["-n", "-c", script.script()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_local_lock_refuses_a_second_holder_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalLock::acquire(dir.path(), &holder()).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(first.path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // A second open file description: what another process would have.
    let err = LocalLock::acquire(dir.path(), &Holder::here("down")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("another clusterkit run on this machine holds"),
        "{msg}"
    );
    assert!(
        msg.contains("`clusterkit up` by ops@desk (pid 4242)"),
        "{msg}"
    );
    drop(first);
    let again = LocalLock::acquire(dir.path(), &Holder::here("down")).unwrap();
    let text = std::fs::read_to_string(again.path()).unwrap();
    assert!(text.ends_with("command=down\n"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn a_patient_local_run_waits_for_the_first_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalLock::acquire(dir.path(), &holder()).unwrap();
    let path = dir.path().to_path_buf();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let second = std::thread::spawn(move || {
        LocalLock::acquire_within(&path, &Holder::here("up"), Duration::from_secs(30), &|e| {
            h.lock().unwrap().push(e.to_string())
        })
        .map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(1200));
    drop(first);
    second.join().unwrap().unwrap();
    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(
        heard[0].contains("`clusterkit up` by ops@desk (pid 4242)"),
        "{heard:?}"
    );
    // Out of patience: refused naming the holder.
    let _first = LocalLock::acquire(dir.path(), &holder()).unwrap();
    let e = LocalLock::acquire_within(dir.path(), &holder(), Duration::from_millis(600), &|_| {})
        .unwrap_err();
    assert!(matches!(e, LockError::Local { .. }), "{e}");
}

/// A node that answers the lock's script, ask after ask, with the texts of
/// `says` (the last one again once they run out; `unreachable`: no
/// connection) and, when it locked, keeps what it hears until its stream is
/// closed (then `|`).
struct Node {
    name: &'static str,
    says: Vec<String>,
    heard: Arc<Mutex<Vec<u8>>>,
    asked: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for Node {
    fn node(&self) -> &str {
        self.name
    }
    fn addr(&self) -> String {
        format!("{}:22", self.name)
    }
    async fn exec_raw(
        &self,
        _: &Cmd,
        _: Option<&[u8]>,
    ) -> Result<crate::transport::ExecOutput, TransportError> {
        unreachable!("the lock holds its command open")
    }
    async fn docker(&self) -> Result<bollard::Docker, TransportError> {
        unreachable!("the lock needs no engine")
    }
    async fn exec_stream(&self, cmd: &Cmd) -> Result<Box<dyn TunnelStream>, TransportError> {
        assert!(cmd.script().contains("flock -n 9"));
        let n = self.asked.fetch_add(1, Ordering::SeqCst);
        let says = self.says[n.min(self.says.len() - 1)].clone();
        if says == "unreachable" {
            return Err(TransportError::Ssh {
                node: self.name.into(),
                addr: self.addr(),
                reason: "connection reset".into(),
            });
        }
        let (ours, mut theirs) = tokio::io::duplex(1024);
        theirs.write_all(says.as_bytes()).await.unwrap();
        let heard = self.heard.clone();
        if says.starts_with("locked") {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                while let Ok(n) = theirs.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    heard.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                heard.lock().unwrap().push(b'|');
            });
        }
        // Otherwise the script ended: dropping `theirs` ends the stream.
        Ok(Box::new(ours))
    }
}

struct Fleet {
    ts: Vec<Arc<dyn Transport>>,
    heard: Vec<Arc<Mutex<Vec<u8>>>>,
    asked: Vec<Arc<AtomicUsize>>,
}

fn fleet(says: &[(&'static str, &'static str)]) -> Fleet {
    fleet_of(
        says.iter()
            .map(|(n, s)| (*n, vec![s.to_string()]))
            .collect(),
    )
}

/// [`fleet`] with a sequence of answers per node.
fn fleet_of(says: Vec<(&'static str, Vec<String>)>) -> Fleet {
    let mut f = Fleet {
        ts: Vec::new(),
        heard: Vec::new(),
        asked: Vec::new(),
    };
    for (name, s) in says {
        let h = Arc::new(Mutex::new(Vec::new()));
        let a = Arc::new(AtomicUsize::new(0));
        f.ts.push(Arc::new(Node {
            name,
            says: s,
            heard: h.clone(),
            asked: a.clone(),
        }));
        f.heard.push(h);
        f.asked.push(a);
    }
    f
}

impl Fleet {
    fn heard(&self, i: usize) -> Vec<u8> {
        self.heard[i].lock().unwrap().clone()
    }
    fn asked(&self, i: usize) -> usize {
        self.asked[i].load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn the_lock_holds_every_node_speaks_to_them_and_lets_go_when_dropped() {
    let f = fleet(&[
        ("node2", "locked\n"),
        ("node1", "locked\n"),
        ("node3", "locked\n"),
    ]);
    let lock = ClusterLock::acquire(&f.ts, 3, &holder()).await.unwrap();
    assert_eq!(lock.nodes(), ["node1", "node2", "node3"]);
    tokio::time::sleep(HEARTBEAT * 2 + Duration::from_millis(100)).await;
    for i in 0..3 {
        assert_eq!(f.heard(i), b"..");
    }
    drop(lock);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        assert_eq!(f.heard(i), b"..|");
    }
}

#[tokio::test]
async fn a_busy_first_node_stops_the_run_before_the_others_are_asked() {
    let f = fleet(&[
        (
            "node1",
            "busy\nwho=ops@other pid=7 since=1790000000 command=upgrade\n",
        ),
        ("node2", "locked\n"),
        ("node3", "locked\n"),
    ]);
    let msg = ClusterLock::acquire(&f.ts, 3, &holder())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(
            "node1: another clusterkit run holds the cluster's lock: \
             `clusterkit upgrade` by ops@other (pid 7) since 2026-09-21T"
        ),
        "{msg}"
    );
    assert_eq!([f.asked(1), f.asked(2)], [0, 0]);
}

#[tokio::test]
async fn a_busy_later_node_lets_go_of_the_others() {
    let f = fleet(&[
        ("node1", "locked\n"),
        ("node2", "locked\n"),
        ("node3", "busy\n"),
    ]);
    let msg = ClusterLock::acquire(&f.ts, 3, &holder())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(
            "node3: another clusterkit run holds the cluster's lock: \
             a run that has not said who it is yet"
        ),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.heard(0), b"|");
    assert_eq!(f.heard(1), b"|");
}

#[tokio::test]
async fn an_unreachable_first_node_passes_the_turn_and_a_majority_is_enough() {
    let f = fleet(&[
        ("node1", "unreachable"),
        ("node2", "locked\n"),
        ("node3", "locked\n"),
    ]);
    let lock = ClusterLock::acquire(&f.ts, 3, &holder()).await.unwrap();
    assert_eq!(lock.nodes(), ["node2", "node3"]);
    assert_eq!(f.asked(0), 1);
}

#[tokio::test]
async fn fewer_than_a_majority_is_refused_with_what_the_others_said() {
    let f = fleet(&[
        ("node1", "unreachable"),
        ("node2", "locked\n"),
        ("node3", "noflock\n"),
        ("node4", "locked\n"),
    ]);
    let err = ClusterLock::acquire(&f.ts, 4, &holder()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the cluster's lock needs a majority of its 4 nodes and 2 could be locked: \
         node1 (node1:22): ssh: connection reset; \
         node3: taking the cluster's lock: no `flock` command (install util-linux)"
    );
    // Nodes the run could not reach count against it.
    let f = fleet(&[("node1", "locked\n")]);
    assert!(matches!(
        ClusterLock::acquire(&f.ts, 3, &holder()).await,
        Err(LockError::NoMajority {
            locked: 1,
            of: 3,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_node_still_held_by_this_very_run_is_waited_for_another_run_is_not() {
    let me = Holder::here("up");
    // This very run's lock, let go of a moment ago, not yet released there.
    let mine = || {
        fleet_of(vec![
            (
                "node1",
                vec![
                    format!("busy\n{}\n", me.line()),
                    format!("busy\n{}\n", me.line()),
                    "locked\n".into(),
                ],
            ),
            ("node2", vec!["locked\n".into()]),
        ])
    };
    let f = mine();
    let lock = ClusterLock::acquire(&f.ts, 2, &me).await.unwrap();
    assert_eq!(lock.nodes(), ["node1", "node2"]);
    assert_eq!(f.asked(0), 3);
    // The same line from another process is someone else's run.
    let f = mine();
    let mut other = me.clone();
    other.pid += 1;
    let err = ClusterLock::acquire(&f.ts, 2, &other).await.unwrap_err();
    assert!(matches!(err, LockError::Busy { .. }), "{err}");
    assert_eq!(f.asked(0), 1);
}

#[tokio::test(start_paused = true)]
async fn a_patient_run_waits_for_the_holder_and_says_so_once() {
    let busy = "busy\nwho=ops@other pid=7 since=1790000000 command=backup\n".to_string();
    let f = fleet_of(vec![(
        "node1",
        vec![busy.clone(), busy.clone(), busy.clone(), "locked\n".into()],
    )]);
    let heard = Mutex::new(Vec::new());
    let lock = ClusterLock::acquire_within(&f.ts, 1, &holder(), Duration::from_secs(60), &|e| {
        heard.lock().unwrap().push(e.to_string())
    })
    .await
    .unwrap();
    assert_eq!(lock.nodes(), ["node1"]);
    assert_eq!(f.asked(0), 4);
    let heard = heard.into_inner().unwrap();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(
        heard[0].contains("`clusterkit backup` by ops@other (pid 7)"),
        "{heard:?}"
    );
    // Out of patience: the holder's refusal.
    let f = fleet_of(vec![("node1", vec![busy])]);
    let err = ClusterLock::acquire_within(&f.ts, 1, &holder(), Duration::from_secs(10), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Busy { .. }), "{err}");
    assert_eq!(f.asked(0), 6);
}
