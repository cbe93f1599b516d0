//! Sequential throughput through a `clusterkit` driver volume next to the
//! node's local disk, on a running sandbox with storage up
//! (`clusterkit up --sandbox`, or a sandbox named by `CLUSTERKIT_BENCH_SANDBOX`).
//!
//! `cargo bench -p clusterkit-storage --bench volume`
//!
//! Each figure is from inside a container on the node, 64 MiB of random data:
//! - local write / read: a bind mount of the node's disk (read after the page
//!   cache is dropped is not possible in a container; the local read is cached);
//! - volume write: until the file is closed (buffered on the node's disk);
//! - volume durable: until the object is complete in S3 (what survives the node);
//! - volume read: on another node, fresh mount, so every byte comes from S3.

use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 64;

fn sh(container: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("docker CLI");
    if !out.status.success() {
        eprintln!(
            "{container}: {script}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `script` in a tools container with the volume at /v and the node's
/// disk at /l; the script prints nanoseconds.
fn timed(node: &str, script: &str) -> Duration {
    let ns = sh(
        node,
        &format!(
            "mkdir -p /var/lib/ck-bench && docker run --rm \
             --mount type=volume,source=ck-bench,target=/v,volume-driver=clusterkit,volume-opt=remote=clusterkit:volumes/ck-bench \
             -v /var/lib/ck-bench:/l ck/bench:1 sh -c '{script}'"
        ),
    );
    Duration::from_nanos(ns.lines().last().unwrap_or("0").trim().parse().unwrap_or(0))
}

fn rate(d: Duration) -> String {
    format!(
        "{:>7.1} MiB/s ({:.2} s)",
        MIB as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

fn main() {
    let name = std::env::var("CLUSTERKIT_BENCH_SANDBOX").unwrap_or_else(|_| "clusterkit".into());
    let (n1, n2) = (format!("{name}-node1"), format!("{name}-node2"));
    for n in [&n1, &n2] {
        sh(
            n,
            "docker image inspect ck/bench:1 >/dev/null 2>&1 && exit 0; \
             bins='/usr/bin/dash /usr/bin/head /usr/bin/cat /usr/bin/date /usr/bin/rm /usr/bin/sync'; \
             libs=$(for b in $bins; do ldd $b | grep -o '/[^ ]*'; done | sort -u | sed 's|^/||'); \
             tar -C / -ch $(echo $bins | sed 's|/usr|usr|g') $libs bin/sh 2>/dev/null | docker import - ck/bench:1 >/dev/null",
        );
        sh(n, "systemctl is-active --quiet clusterkit-volumes.service");
    }
    let rclone = "rclone --config /etc/clusterkit/storage/rclone.conf";
    sh(&n1, &format!("{rclone} purge clusterkit:volumes/ck-bench 2>/dev/null; docker volume rm ck-bench >/dev/null 2>&1; rm -f /var/lib/ck-bench/f /var/lib/ck-bench/src; true"));
    sh(&n2, "docker volume rm ck-bench >/dev/null 2>&1; true");
    let make = format!("set -e; head -c {} /dev/urandom > /l/src", MIB << 20);
    let local_write = timed(
        &n1,
        &format!("{make}; t=$(date +%s%N); cat /l/src > /l/f; sync; echo $(( $(date +%s%N) - t ))"),
    );
    let local_read = timed(
        &n1,
        "set -e; t=$(date +%s%N); cat /l/f > /dev/null; echo $(( $(date +%s%N) - t ))",
    );
    let start = Instant::now();
    let vol_write = timed(
        &n1,
        &format!("{make}; t=$(date +%s%N); cat /l/src > /v/f; echo $(( $(date +%s%N) - t ))"),
    );
    // Durable: the object complete in S3, seen from another node.
    let size = (MIB << 20).to_string();
    loop {
        let l = sh(
            &n2,
            &format!("{rclone} lsl clusterkit:volumes/ck-bench 2>/dev/null || true"),
        );
        if l.split_whitespace().next() == Some(size.as_str()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the object never completed in S3: {l}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The container start is in `start`'s span: subtract what a run costs with nothing to do.
    let empty = Instant::now();
    timed(&n1, "echo 0");
    let overhead = empty.elapsed();
    let durable = start.elapsed().saturating_sub(overhead);
    let vol_read = timed(
        &n2,
        "set -e; t=$(date +%s%N); cat /v/f > /dev/null; echo $(( $(date +%s%N) - t ))",
    );
    println!("{MIB} MiB sequential, sandbox `{name}`:");
    println!("  local disk write (+sync)          {}", rate(local_write));
    println!("  local disk read (page cache)      {}", rate(local_read));
    println!("  volume write, until closed        {}", rate(vol_write));
    println!("  volume write, until durable in S3 {}", rate(durable));
    println!("  volume read on another node       {}", rate(vol_read));
    sh(&n1, &format!("docker volume rm ck-bench >/dev/null 2>&1; {rclone} purge clusterkit:volumes/ck-bench; rm -f /var/lib/ck-bench/f /var/lib/ck-bench/src"));
    sh(&n2, "docker volume rm ck-bench >/dev/null 2>&1; true");
}
