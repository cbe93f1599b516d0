//! `clusterkit up` on a 3-node sandbox of its own: a cold run from bare
//! nodes (node image and service images cached on this machine), with the
//! time of each phase, then no-op re-runs on the converged cluster.
//!
//! `cargo bench -p clusterkit-cli --bench up` (root, a Docker Engine,
//! debootstrap; about 3 minutes). The sandbox `ck-bench` is removed at the end.

use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_clusterkit");
const NAME: &str = "ck-bench";

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running clusterkit");
    if !out.status.success() {
        eprintln!(
            "clusterkit {}: failed\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = Command::new(BIN)
            .args(["sandbox", "down", "--name", NAME])
            .output();
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    run(&["sandbox", "build-images"]);
    let _ = Command::new(BIN)
        .args(["sandbox", "down", "--name", NAME])
        .output();
    run(&[
        "sandbox",
        "up",
        "--name",
        NAME,
        "--subnet",
        "172.29.252.0/24",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let cfg = dir.path().join("clusterkit.toml");
    let cfg = cfg.to_str().unwrap();

    let started = Instant::now();
    let cold = run(&["up", "--json", "-c", cfg]);
    let wall = started.elapsed().as_secs_f64();
    let (p, total) = phases(&cold);
    println!("cold up on 3 bare nodes: {total:.1} s ({wall:.1} s wall, connecting included)");
    for (name, secs) in &p {
        println!("  {name:<11} {secs:>6.2} s");
    }

    let mut noop = Vec::new();
    let mut last = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = run(&["up", "--json", "-c", cfg]);
        noop.push(started.elapsed().as_secs_f64());
        assert!(
            out.contains("\"changed\":false"),
            "a re-run changed something:\n{out}"
        );
        last = phases(&out).0;
    }
    noop.sort_by(f64::total_cmp);
    println!(
        "no-op up on 3 nodes (5 runs, wall): min {:.2} s, median {:.2} s, max {:.2} s",
        noop[0], noop[2], noop[4]
    );
    for (name, secs) in &last {
        println!("  {name:<11} {secs:>6.2} s");
    }
    let _ = Command::new(BIN)
        .args(["sandbox", "down", "--name", NAME])
        .output();
}
