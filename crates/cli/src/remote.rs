//! Commands that reach the nodes: `check`, `known-hosts`, `images push`;
//! the session options the global flags set.

use std::io::Write;

use anyhow::Context;
use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::known_hosts;

use crate::exit;

/// `-v`: every command run on the nodes is shown (secrets redacted).
pub static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--lock-wait`, in seconds: how long a changing command waits for the cluster's lock.
pub static LOCK_WAIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(600);

/// `--strict-host-keys`: every connection refuses a host key not recorded yet.
pub static STRICT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where a description's known_hosts file is: the library's answer, one for
/// every command.
pub use clusterkit_ops::session::known_hosts_path;

/// The session options the global flags set (`--strict-host-keys`, `-v`,
/// `--lock-wait`).
pub fn options() -> clusterkit_ops::Options {
    use std::sync::atomic::Ordering::Relaxed;
    clusterkit_ops::Options {
        strict_host_keys: STRICT.load(Relaxed),
        verbose: VERBOSE.load(Relaxed),
        lock_wait: std::time::Duration::from_secs(LOCK_WAIT.load(Relaxed)),
    }
}

/// Takes the state directory's lock for the rest of this process, once
/// (before a command rewrites the state and loads the description again).
pub fn hold_state_dir(loaded: &Loaded, command: &str) -> anyhow::Result<()> {
    let notices = clusterkit_core::reporters::Notices;
    clusterkit_ops::Session::new(loaded, options(), &notices).hold_state_dir(command)?;
    Ok(())
}

/// `clusterkit check`.
pub fn check(loaded: &Loaded, strict: bool, json: bool) -> anyhow::Result<u8> {
    let mut options = options();
    options.strict_host_keys |= strict;
    let notices = clusterkit_core::reporters::Notices;
    let session = clusterkit_ops::Session::new(loaded, options, &notices);
    let report = crate::block_on(clusterkit_ops::check::check(&session));
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(if report.blocking() {
        exit::FAILURE
    } else {
        exit::OK
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
    let notices = clusterkit_core::reporters::Notices;
    let session = clusterkit_ops::Session::new(loaded, options(), &notices);
    let report = crate::block_on(clusterkit_ops::images::push(&session, images))?;
    for u in &report.unreachable {
        eprintln!("{}: error: {}", u.node, u.error);
    }
    for n in &report.nodes {
        match &n.loaded {
            Ok(sent) if sent.is_empty() => println!("{}: has every image", n.node),
            Ok(sent) => println!("{}: loaded {}", n.node, sent.join(", ")),
            Err(e) => eprintln!("{}: error: {e}", n.node),
        }
    }
    Ok(if report.complete() {
        exit::OK
    } else {
        exit::FAILURE
    })
}
