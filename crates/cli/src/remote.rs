//! Commands that reach the nodes: `check`, `known-hosts`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::facts::{self, Facts};
use clusterkit_core::transport::known_hosts::{self, HostKeyPolicy};
use clusterkit_core::transport::ssh::{connect_all, ConnectEvent, SshOptions};
use clusterkit_core::transport::{fan_out, Transport};

use crate::exit;

/// The known_hosts file of a loaded description: in its state directory.
/// `-v`: every command run on the nodes is shown (secrets redacted).
pub static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--lock-wait`, in seconds: how long a changing command waits for the cluster's lock.
pub static LOCK_WAIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(600);

/// `--strict-host-keys`: every connection refuses a host key not recorded yet.
pub static STRICT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn known_hosts_path(loaded: &Loaded) -> PathBuf {
    state_dir(loaded).join("known_hosts")
}

/// The state directory of a loaded description: the state file's, where
/// `known_hosts`, the lock and the backup seal key live.
pub fn state_dir(loaded: &Loaded) -> PathBuf {
    loaded.state_path.parent().map_or_else(
        || PathBuf::from(".clusterkit"),
        std::path::Path::to_path_buf,
    )
}

/// `--lock-wait`: how long a changing command waits for a lock.
fn lock_patience() -> std::time::Duration {
    std::time::Duration::from_secs(LOCK_WAIT.load(std::sync::atomic::Ordering::Relaxed))
}

/// Says, once per holder, who holds a lock this run waits for.
fn waiting_for(patience: std::time::Duration) -> impl Fn(&clusterkit_core::lock::LockError) {
    move |e| {
        eprintln!(
            "{e}; waiting for it (at most {}, `--lock-wait` sets it)",
            humantime::format_duration(patience)
        )
    }
}

/// Connects to every node; prints first-contact fingerprints; returns the
/// sessions and the failures.
pub async fn connect(
    loaded: &Loaded,
    strict: bool,
) -> (Vec<Arc<dyn Transport>>, Vec<(String, String)>) {
    connect_with(loaded, strict, false).await
}

/// [`connect`]; `quick` gives a node one short attempt (status commands,
/// where a down node is an answer, not something to wait for).
pub async fn connect_with(
    loaded: &Loaded,
    strict: bool,
    quick: bool,
) -> (Vec<Arc<dyn Transport>>, Vec<(String, String)>) {
    let mut opts = SshOptions::new(known_hosts_path(loaded));
    opts.verbose = VERBOSE.load(std::sync::atomic::Ordering::Relaxed);
    if strict
        || STRICT.load(std::sync::atomic::Ordering::Relaxed)
        || loaded.built.spec.ssh.strict_host_keys
    {
        opts.policy = HostKeyPolicy::Strict;
    }
    if quick {
        opts.attempts = 1;
        opts.connect_timeout = std::time::Duration::from_secs(3);
    }
    let nodes = loaded.built.spec.ssh_targets();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (name, r) in connect_all(&nodes, &opts).await {
        match r {
            Ok(s) => {
                for e in &s.events {
                    let ConnectEvent::HostKeyLearned { node, fingerprint } = e;
                    eprintln!(
                        "{node}: first contact, recorded host key {fingerprint} in {}",
                        opts.known_hosts.display()
                    );
                }
                ok.push(Arc::new(s) as Arc<dyn Transport>);
            }
            Err(e) => failed.push((name, e.to_string())),
        }
    }
    (ok, failed)
}

/// This machine's lock on the state directory, held from the first command
/// that changes the cluster to the end of the process (a command that runs
/// `up` for its last step takes it once).
static STATE_DIR_LOCK: std::sync::Mutex<Option<clusterkit_core::lock::LocalLock>> =
    std::sync::Mutex::new(None);

/// Takes the state directory's lock for the rest of this process, once.
pub fn hold_state_dir(loaded: &Loaded, command: &str) -> anyhow::Result<()> {
    let mut held = STATE_DIR_LOCK.lock().expect("not poisoned");
    if held.is_none() {
        let patience = lock_patience();
        *held = Some(clusterkit_core::lock::LocalLock::acquire_within(
            &state_dir(loaded),
            &clusterkit_core::lock::Holder::here(command),
            patience,
            &waiting_for(patience),
        )?);
    }
    Ok(())
}

/// The locks a command that changes the cluster holds while it runs: the
/// state directory's, then the cluster's on a majority of its nodes (two
/// operators on two machines cannot change one cluster together). The
/// cluster's goes when the value is dropped.
pub async fn lock_cluster(
    loaded: &Loaded,
    nodes: &[Arc<dyn Transport>],
    command: &str,
) -> anyhow::Result<clusterkit_core::lock::ClusterLock> {
    lock_among(loaded, nodes, loaded.built.spec.nodes.len(), command).await
}

/// [`lock_cluster`] on every reachable node, however few: for `swarm
/// recover`, whose very case is a majority lost.
pub async fn lock_reachable(
    loaded: &Loaded,
    nodes: &[Arc<dyn Transport>],
    command: &str,
) -> anyhow::Result<clusterkit_core::lock::ClusterLock> {
    lock_among(loaded, nodes, nodes.len(), command).await
}

async fn lock_among(
    loaded: &Loaded,
    nodes: &[Arc<dyn Transport>],
    cluster_size: usize,
    command: &str,
) -> anyhow::Result<clusterkit_core::lock::ClusterLock> {
    hold_state_dir(loaded, command)?;
    let holder = clusterkit_core::lock::Holder::here(command);
    let patience = lock_patience();
    let waiting = waiting_for(patience);
    let lock = clusterkit_core::lock::ClusterLock::acquire_within(
        nodes,
        cluster_size,
        &holder,
        patience,
        &|e| waiting(e),
    )
    .await?;
    Ok(lock)
}

/// `clusterkit check`.
pub fn check(loaded: &Loaded, strict: bool, json: bool) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let (sessions, mut failed) = connect(loaded, strict).await;
        let mut rows: Vec<(String, Facts, Vec<facts::FactProblem>)> = Vec::new();
        for (node, r) in fan_out(&sessions, 16, facts::gather).await {
            match r {
                Ok(f) => {
                    let n = loaded.built.spec.node(&node).expect("connected nodes come from the spec");
                    let p = facts::judge(&f, n, &loaded.built.spec);
                    rows.push((node, f, p));
                }
                Err(e) => failed.push((node, e.to_string())),
            }
        }
        // Inventory order, whatever finished first.
        let order: Vec<String> = loaded.built.spec.nodes.iter().map(|n| n.name.to_string()).collect();
        rows.sort_by_key(|r| order.iter().position(|n| *n == r.0));
        failed.sort_by_key(|r| order.iter().position(|n| *n == r.0));
        let blocking = !failed.is_empty() || rows.iter().any(|r| r.2.iter().any(|p| p.blocking));
        let mut out = std::io::stdout().lock();
        if json {
            let v = serde_json::json!({
                "nodes": rows.iter().map(|(n, f, p)| serde_json::json!({"node": n, "facts": f, "problems": p})).collect::<Vec<_>>(),
                "unreachable": failed.iter().map(|(n, e)| serde_json::json!({"node": n, "error": e})).collect::<Vec<_>>(),
            });
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{:<10} {:<18} {:<8} {:<22} {:<10} {:<15} {:<9} {:>9} {:>7}", "NODE", "OS", "ARCH", "KERNEL", "WIREGUARD", "DOCKER", "SWARM", "DISK MiB", "CLOCK")?;
            for (n, f, _) in &rows {
                writeln!(
                    out,
                    "{:<10} {:<18} {:<8} {:<22} {:<10} {:<15} {:<9} {:>9} {:>+6.2}s",
                    n,
                    format!("{} {} {}", f.os_id, f.os_version, f.codename),
                    f.arch,
                    f.kernel,
                    if f.wireguard_kernel { "kernel" } else { "userspace" },
                    f.docker.as_deref().unwrap_or("-"),
                    f.swarm.as_deref().unwrap_or("-"),
                    f.disk_free_mib,
                    f.clock_offset_s
                )?;
            }
            let mut any = false;
            for (n, _, ps) in &rows {
                for p in ps {
                    if !any {
                        writeln!(out, "\nproblems:")?;
                        any = true;
                    }
                    writeln!(out, "  {n}: {}: {}", if p.blocking { "error" } else { "warning" }, p.message)?;
                }
            }
            for (n, e) in &failed {
                if !any {
                    writeln!(out, "\nproblems:")?;
                    any = true;
                }
                writeln!(out, "  {n}: error: {e}")?;
            }
            if !any {
                writeln!(out, "\nno problems: every node is ready")?;
            }
        }
        Ok(if blocking { exit::FAILURE } else { exit::OK })
    })
}

/// `clusterkit known-hosts forget NODE`.
pub fn forget(loaded: &Loaded, node: &str) -> anyhow::Result<u8> {
    let Some(n) = loaded.built.spec.node(node) else {
        anyhow::bail!("no node `{node}` in the cluster description");
    };
    let path = known_hosts_path(loaded);
    let removed = known_hosts::forget(&path, &n.ssh.host, n.ssh.port.get())
        .with_context(|| format!("updating {}", path.display()))?;
    println!("{node}: forgot {removed} recorded host key(s) in {}; the next connection records the key it shows", path.display());
    Ok(exit::OK)
}

/// `clusterkit images push IMAGE...`: local images to every node lacking them.
pub fn push_images(loaded: &Loaded, images: &[String]) -> anyhow::Result<u8> {
    let archive =
        clusterkit_core::transport::images::save_local(images).map_err(|e| anyhow::anyhow!(e))?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let (sessions, failed) = connect(loaded, false).await;
        let results = fan_out(&sessions, 4, |t| {
            clusterkit_core::transport::images::push(t, &archive, images)
        })
        .await;
        let mut code = if failed.is_empty() {
            exit::OK
        } else {
            exit::FAILURE
        };
        for (node, e) in &failed {
            eprintln!("{node}: error: {e}");
        }
        for (node, r) in results {
            match r {
                Ok(sent) if sent.is_empty() => println!("{node}: has every image"),
                Ok(sent) => println!("{node}: loaded {}", sent.join(", ")),
                Err(e) => {
                    eprintln!("{node}: error: {e}");
                    code = exit::FAILURE;
                }
            }
        }
        Ok(code)
    })
}
