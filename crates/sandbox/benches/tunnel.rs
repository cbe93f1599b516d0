//! Throughput and latency between two sandbox nodes: over the userspace
//! WireGuard mesh, and over the plain bridge network beside it (iperf3 and
//! ping from Debian, inside the nodes).
//!
//! Needs the default sandbox with its mesh up:
//! `clusterkit sandbox up && clusterkit wg up -c ~/.local/share/clusterkit/sandboxes/clusterkit/clusterkit.toml`,
//! then `cargo bench -p clusterkit-sandbox --bench tunnel`.

use std::process::Command;

fn exec(container: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("docker");
    if !out.status.success() {
        eprintln!(
            "{container}: {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let name = std::env::var("CLUSTERKIT_SANDBOX").unwrap_or_else(|_| "clusterkit".into());
    let nodes = clusterkit_sandbox::nodes(&name).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let (a, b) = (&nodes[0], &nodes[1]);
    let mesh_b = "10.0.0.2";
    exec(
        &b.container,
        "pkill iperf3; (iperf3 -s -D >/dev/null 2>&1); sleep 0.5",
    );
    println!("{:<28} {:>14} {:>14}", "path", "throughput", "ping rtt avg");
    for (label, target) in [
        ("bridge (no WireGuard)", b.address.to_string()),
        ("userspace WireGuard mesh", mesh_b.to_string()),
    ] {
        let json = exec(&a.container, &format!("iperf3 -c {target} -t 5 -J"));
        let v: serde_json::Value = serde_json::from_str(&json).expect("iperf3 json");
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        let ping = exec(&a.container, &format!("ping -q -c 20 -i 0.05 {target}"));
        let avg = ping
            .lines()
            .find(|l| l.contains("min/avg/max"))
            .and_then(|l| l.split('=').nth(1))
            .and_then(|v| v.trim().split('/').nth(1))
            .unwrap_or("?")
            .to_string();
        println!("{label:<28} {:>9.0} Mbit/s {avg:>10} ms", bps / 1e6);
    }
    exec(&b.container, "pkill iperf3 || true");
}
