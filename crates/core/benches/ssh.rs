//! SSH transport against a running sandbox: a no-op on 3 nodes over warm
//! connections, and 20 sequential steps on 3 nodes over reused connections
//! versus a new connection per step (Ansible's way).
//!
//! `clusterkit sandbox up` first, then `cargo bench -p clusterkit-core --bench ssh`
//! (`CLUSTERKIT_SANDBOX_CONFIG` names another sandbox's clusterkit.toml).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterkit_core::spec::load;
use clusterkit_core::transport::known_hosts::HostKeyPolicy;
use clusterkit_core::transport::ssh::{SshOptions, SshSession};
use clusterkit_core::transport::{fan_out, Cmd, Transport};

fn stats(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.2} ms, min {:.2} ms, max {:.2} ms ({} runs)",
        ms(xs[xs.len() / 2]),
        ms(xs[0]),
        ms(xs[xs.len() - 1]),
        xs.len()
    )
}

fn main() {
    let config = std::env::var_os("CLUSTERKIT_SANDBOX_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".local/share/clusterkit/sandboxes/clusterkit/clusterkit.toml")
        });
    let loaded = match load(Some(&config), None) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "cannot load {}: {e}\nstart a sandbox first: clusterkit sandbox up",
                config.display()
            );
            std::process::exit(1);
        }
    };
    let mut opts = SshOptions::new(loaded.state_path.parent().unwrap().join("known_hosts"));
    opts.policy = HostKeyPolicy::Strict;
    let nodes = loaded.built.spec.ssh_targets();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut warm: Vec<Arc<dyn Transport>> = Vec::new();
        for (name, t) in &nodes {
            warm.push(Arc::new(
                SshSession::connect(name, t, &opts).await.expect("connect"),
            ));
        }
        let noop = Cmd::new("true");
        let mut samples = Vec::new();
        for _ in 0..100 {
            let t0 = Instant::now();
            for (_, r) in fan_out(&warm, 16, |t| t.exec(&noop)).await {
                r.unwrap();
            }
            samples.push(t0.elapsed());
        }
        println!(
            "no-op on {} nodes, warm connections: {}",
            warm.len(),
            stats(samples)
        );

        let steps = 20;
        let mut reused = Vec::new();
        let mut fresh = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            for _ in 0..steps {
                for (_, r) in fan_out(&warm, 16, |t| t.exec(&noop)).await {
                    r.unwrap();
                }
            }
            reused.push(t0.elapsed());
            let t0 = Instant::now();
            for _ in 0..steps {
                let runs = nodes.iter().map(|(name, t)| {
                    let opts = &opts;
                    let noop = &noop;
                    async move {
                        let s = SshSession::connect(name, t, opts).await.expect("connect");
                        s.exec(noop).await.unwrap();
                        s.close().await;
                    }
                });
                futures::future::join_all(runs).await;
            }
            fresh.push(t0.elapsed());
        }
        println!(
            "{steps} steps on {} nodes, reused connections: {}",
            nodes.len(),
            stats(reused)
        );
        println!(
            "{steps} steps on {} nodes, a new connection per step: {}",
            nodes.len(),
            stats(fresh)
        );
    });
}
