//! How clusterkit's costs grow with the node count: on sandboxes of 3, 6
//! and 9 nodes of its own (past 7, nodes are workers), a cold `up` from bare
//! nodes (node image and service images cached on this machine) with the
//! time of each phase, then no-op re-runs of `up`, `status` and `doctor` on
//! the converged cluster, the controller's peak memory during `up` and each
//! node's memory by program (clusterkit's services and the engine's own).
//! Ends with the ratios of the largest size to the smallest.
//!
//! `cargo build --release -p clusterkit-wg-userspace -p clusterkit-volumes`
//! first (the helpers `up` sends), then `cargo bench -p clusterkit-cli --bench
//! up` (root, a Docker Engine, debootstrap; about 25 minutes on 2 cores). `CK_BENCH_NODES=3` (a list,
//! `3,9`) picks the sizes; `CK_BENCH_RUNS` the re-runs of each no-op
//! (default 5). Each sandbox `ck-bench-N` is removed after its size.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clusterkit");

/// One run: its wall time, stdout, and the peak resident memory of the
/// clusterkit process (its `VmHWM`, read every 20 ms until it ends: the last
/// reading is at most 20 ms short of its end).
struct Run {
    wall: f64,
    stdout: String,
    peak_kib: u64,
}

fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_checked(args: &[&str], must_succeed: bool, sandbox: &str) -> Run {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running clusterkit");
    let pid = child.id();
    let reader = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).ok();
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped")));
    let err = reader(Box::new(child.stderr.take().expect("piped")));
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(s) = child.try_wait().expect("waiting for clusterkit") {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed().as_secs_f64();
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    if must_succeed && !status.success() {
        eprintln!("clusterkit {}: failed\n{stdout}{stderr}", args.join(" "));
        down(sandbox);
        std::process::exit(1);
    }
    Run {
        wall,
        stdout,
        peak_kib: peak,
    }
}

fn down(sandbox: &str) {
    let _ = Command::new(BIN)
        .args(["sandbox", "down", "--name", sandbox])
        .output();
}

/// Phase timings and the total from `up --json`.
fn phases(json_lines: &str) -> (Vec<(String, f64)>, f64) {
    let mut phases = Vec::new();
    let mut total = 0.0;
    for line in json_lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        match v["event"].as_str() {
            Some("phase_done") => phases.push((
                v["phase"].as_str().unwrap_or("?").to_string(),
                v["seconds"].as_f64().unwrap_or(0.0),
            )),
            Some("done") => total = v["seconds"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    (phases, total)
}

/// Each program's resident memory on the nodes (`ps` inside each node's
/// container, summed by command name): median and largest over the nodes,
/// largest first.
fn node_memory(sandbox: &str, nodes: usize) -> Vec<(String, f64, f64)> {
    let mut by: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for i in 1..=nodes {
        let container = format!("{sandbox}-node{i}");
        let out = Command::new("docker")
            .args(["exec", &container, "ps", "-eo", "rss=,comm="])
            .output()
            .expect("running docker exec");
        let mut here: std::collections::BTreeMap<String, f64> = Default::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.split_whitespace();
            let (Some(rss), Some(comm)) = (parts.next(), parts.next()) else {
                continue;
            };
            let kib: f64 = rss.parse().unwrap_or(0.0);
            *here.entry(comm.to_string()).or_default() += kib / 1024.0;
        }
        for (comm, mib) in here {
            by.entry(comm).or_default().push(mib);
        }
    }
    let mut rows: Vec<(String, f64, f64)> = by
        .into_iter()
        .map(|(comm, mut v)| {
            // A program absent from a node counts as 0 MiB there.
            v.resize(nodes, 0.0);
            let max = v.iter().copied().fold(0.0, f64::max);
            (comm, median(v), max)
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What one size measured.
struct Size {
    nodes: usize,
    cold: f64,
    noop: f64,
    status: f64,
    doctor: f64,
    peak_mib: f64,
}

fn measure(nodes: usize, runs: usize) -> Size {
    let name = format!("ck-bench-{nodes}");
    let dir = tempfile::tempdir().expect("tempdir");
    down(&name);
    let n = nodes.to_string();
    let subnet = format!("172.29.{}.0/24", 230 + nodes);
    let d = dir.path().to_str().unwrap();
    let sandbox_up = [
        "sandbox", "up", "--name", &name, "--nodes", &n, "--subnet", &subnet, "--dir", d,
    ];
    run_checked(&sandbox_up, true, &name);
    let cfg = dir.path().join("clusterkit.toml");
    let cfg = cfg.to_str().unwrap();

    let cold = run_checked(&["up", "--json", "-c", cfg], true, &name);
    let (p, total) = phases(&cold.stdout);
    println!(
        "\n{nodes} nodes: cold up {total:.1} s ({:.1} s wall, connecting included), peak {:.0} MiB",
        cold.wall,
        cold.peak_kib as f64 / 1024.0
    );
    for (name, secs) in &p {
        println!("  {name:<11} {secs:>6.2} s");
    }
    let mut peak = cold.peak_kib;
    let (mut noop, mut last) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let r = run_checked(&["up", "--json", "-c", cfg], true, &name);
        assert!(
            r.stdout.contains("\"changed\":false"),
            "a re-run changed something:\n{}",
            r.stdout
        );
        noop.push(r.wall);
        peak = peak.max(r.peak_kib);
        last = phases(&r.stdout).0;
    }
    let noop = median(noop);
    println!("  no-op up: median {noop:.2} s of {runs} (wall); phases of the last:");
    for (name, secs) in &last {
        println!("    {name:<11} {secs:>6.2} s");
    }
    let reads = |args: &[&str]| {
        let walls = (0..runs).map(|_| {
            let mut a = args.to_vec();
            a.extend(["-c", cfg]);
            // A status that finds a problem exits 1: measured all the same.
            run_checked(&a, false, &name).wall
        });
        median(walls.collect())
    };
    let memory = node_memory(&name, nodes);
    let sum: f64 = memory.iter().map(|r| r.1).sum();
    println!("  each node's memory by program (RSS, median over the nodes / largest), in all {sum:.0} MiB:");
    for (comm, med, max) in memory.iter().filter(|r| r.2 >= 2.0) {
        println!("    {comm:<24} {med:>6.1} MiB / {max:>6.1} MiB");
    }
    let status = reads(&["status", "--json"]);
    let doctor = reads(&["doctor", "--json"]);
    println!("  status: median {status:.2} s; doctor: median {doctor:.2} s");
    down(&name);
    Size {
        nodes,
        cold: total,
        noop,
        status,
        doctor,
        peak_mib: peak as f64 / 1024.0,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("CK_BENCH_NODES")
        .unwrap_or_else(|_| "3,6,9".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("CK_BENCH_NODES: node counts, e.g. 3,6,9")
        })
        .collect();
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    // The helpers `up` sends to the nodes are found beside the binary: a
    // release build of the bench alone does not make them.
    let missing: Vec<&str> = ["clusterkit-wg-userspace", "clusterkit-volumes"]
        .into_iter()
        .filter(|h| !std::path::Path::new(BIN).with_file_name(h).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "{} not beside {BIN}: build them first with\n  cargo build --release -p clusterkit-wg-userspace -p clusterkit-volumes",
            missing.join(" and ")
        );
        std::process::exit(1);
    }
    let built = Command::new(BIN)
        .args(["sandbox", "build-images"])
        .output()
        .expect("running clusterkit");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let measured: Vec<Size> = sizes.iter().map(|&n| measure(n, runs)).collect();
    println!("\nnodes  cold up  no-op up  status  doctor  peak memory (up)");
    for s in &measured {
        println!(
            "{:>5}  {:>6.1} s  {:>6.2} s  {:>4.2} s  {:>4.2} s  {:>5.0} MiB",
            s.nodes, s.cold, s.noop, s.status, s.doctor, s.peak_mib
        );
    }
    if let (Some(a), Some(b)) = (measured.first(), measured.last()) {
        if a.nodes != b.nodes {
            println!(
                "ratio {}/{}: cold up {:.2}x, no-op up {:.2}x, status {:.2}x, doctor {:.2}x",
                b.nodes,
                a.nodes,
                b.cold / a.cold,
                b.noop / a.noop,
                b.status / a.status,
                b.doctor / a.doctor
            );
        }
    }
}
