//! The transport at scale: `clusterkit check` on sandboxes of sshd-only
//! hosts (no init, no engine; `sandbox up --sshd-only`) of 10, 50 and 100
//! nodes. For each size: the median wall time of `check`, the CPU it took on
//! this machine (the controller), and the CPU it took on the hosts (their
//! containers' cgroups), next to what OpenSSH's `ssh HOST true` costs the
//! hosts: sshd's own share, which no client can lower.
//!
//! Every host shares this machine's cores with the others and with the
//! controller, so the wall time here is bounded below by the hosts' CPU
//! divided by the cores; on real servers each host has its own.
//!
//! `cargo bench -p clusterkit-cli --bench check` (root, a Docker Engine,
//! debootstrap; about 3 minutes). `CK_BENCH_NODES` (a list, `100`) picks
//! the sizes, `CK_BENCH_RUNS` the runs of each (default 5). Each sandbox
//! `ck-bench-check-N` is removed after its size.

use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_clusterkit");

/// This process's waited-for children's CPU time (user + system), seconds:
/// fields 16 and 17 of `/proc/self/stat`, in clock ticks of 1/100 s.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3: cutime is field 16, cstime 17.
    let ticks: f64 = f[13].parse::<f64>().unwrap() + f[14].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The CPU time the sandbox's containers used so far, seconds (cgroup v1's
/// `cpuacct.usage`, or v2's `cpu.stat`); none where neither is found.
fn hosts_cpu(containers: &[String]) -> Option<f64> {
    let mut total = 0.0;
    for c in containers {
        let v1 = format!("/sys/fs/cgroup/cpuacct/docker/{c}/cpuacct.usage");
        let v2 = format!("/sys/fs/cgroup/system.slice/docker-{c}.scope/cpu.stat");
        if let Ok(ns) = std::fs::read_to_string(&v1) {
            total += ns.trim().parse::<f64>().ok()? / 1e9;
        } else {
            let stat = std::fs::read_to_string(&v2).ok()?;
            let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?;
            total += usec.trim().parse::<f64>().ok()? / 1e6;
        }
    }
    Some(total)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("running docker");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn down(sandbox: &str) {
    let _ = Command::new(BIN)
        .args(["sandbox", "down", "--name", sandbox])
        .output();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What one run cost: wall, controller CPU, hosts' CPU (seconds).
fn measured(containers: &[String], run: impl FnOnce()) -> (f64, f64, Option<f64>) {
    let (cpu0, hosts0) = (children_cpu(), hosts_cpu(containers));
    let started = Instant::now();
    run();
    let wall = started.elapsed().as_secs_f64();
    let hosts = hosts_cpu(containers).zip(hosts0).map(|(b, a)| b - a);
    (wall, children_cpu() - cpu0, hosts)
}

fn measure(nodes: usize, runs: usize, index: usize) -> (f64, f64, Option<f64>, Option<f64>) {
    let name = format!("ck-bench-check-{nodes}");
    let dir = tempfile::tempdir().expect("tempdir");
    down(&name);
    let (n, subnet) = (nodes.to_string(), format!("172.29.{}.0/24", 220 + index));
    let d = dir.path().to_str().unwrap();
    let up = Command::new(BIN)
        .args([
            "sandbox",
            "up",
            "--sshd-only",
            "--name",
            &name,
            "--nodes",
            &n,
        ])
        .args(["--subnet", &subnet, "--dir", d])
        .output()
        .expect("running clusterkit");
    if !up.status.success() {
        eprintln!(
            "sandbox up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        );
        down(&name);
        std::process::exit(1);
    }
    let ids = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=io.clusterkit.sandbox={name}"),
    ]);
    let containers: Vec<String> = ids.lines().map(String::from).collect();
    let cfg = dir.path().join("clusterkit.toml");
    let cfg = cfg.to_str().unwrap();
    let (mut walls, mut cpus, mut hosts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (wall, cpu, host) = measured(&containers, || {
            let out = Command::new(BIN)
                .args(["check", "--json", "-c", cfg])
                .stderr(Stdio::null())
                .output()
                .expect("running clusterkit");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let answered = v["nodes"].as_array().map_or(0, Vec::len);
            assert_eq!(answered, nodes, "every node answers");
        });
        walls.push(wall);
        cpus.push(cpu);
        hosts.extend(host);
    }
    // sshd's own share: OpenSSH's client, one process a host, `true`.
    let key = dir.path().join("id_ed25519");
    let known = dir.path().join("known_hosts");
    let (_, _, sshd) = measured(&containers, || {
        let children: Vec<_> = (1..=nodes)
            .map(|i| {
                let host = format!("root@{}", subnet.replace(".0/24", &format!(".{}", 10 + i)));
                Command::new("ssh")
                    .args(["-i", key.to_str().unwrap(), "-o", "BatchMode=yes"])
                    .args(["-o", &format!("UserKnownHostsFile={}", known.display())])
                    .args([&host, "true"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("running ssh")
            })
            .collect();
        for mut c in children {
            let _ = c.wait();
        }
    });
    down(&name);
    let per_node = |t: f64| t / nodes as f64 * 1000.0;
    let host = (!hosts.is_empty()).then(|| median(hosts));
    let (wall, cpu) = (median(walls), median(cpus));
    println!(
        "{nodes:>4} nodes: check {wall:.2} s (median of {runs}); this machine's CPU {cpu:.2} s; \
         the hosts' CPU {} ({} ms a node), of which sshd alone {}",
        host.map_or("n/a".into(), |h| format!("{h:.2} s")),
        host.map_or("n/a".into(), |h| format!("{:.0}", per_node(h))),
        sshd.map_or("n/a".into(), |s| format!("{:.0} ms a node", per_node(s))),
    );
    (wall, cpu, host, sshd)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (a filter) is ignored.
    let sizes: Vec<usize> = std::env::var("CK_BENCH_NODES")
        .unwrap_or_else(|_| "10,50,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = std::env::var("CK_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("check on sshd-only hosts, {cores} core(s) shared by the hosts and this machine");
    let results: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, measure(n, runs, i)))
        .collect();
    if let (Some(first), Some(last)) = (results.first(), results.last()) {
        if first.0 != last.0 {
            println!(
                "{}/{} nodes: check {:.2}x the time for {:.0}x the nodes",
                last.0,
                first.0,
                last.1 .0 / first.1 .0,
                last.0 as f64 / first.0 as f64
            );
        }
    }
}
