//! `clusterkit up --dry-run`: prints what the phases' checks found (Docker
//! Engine missing, WireGuard keys to make, each node's mesh configuration as
//! a diff, swarm membership, every stack file as a diff against the one the
//! manager holds). Nothing is written. Secrets never appear: the files
//! compared hold none (keys and passwords live in files and Swarm secrets of
//! their own).

use clusterkit_core::engine::Change;

/// Prints the changes (text or JSON).
pub fn print(changes: &[Change], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(changes)?);
        return Ok(());
    }
    for c in changes {
        println!(
            "{:<10} {}{}",
            c.phase,
            c.node
                .as_deref()
                .map(|n| format!("{n}: "))
                .unwrap_or_default(),
            c.what
        );
        if let Some(d) = &c.diff {
            for l in d.lines() {
                println!("           {l}");
            }
        }
    }
    if changes.is_empty() {
        println!("nothing would change");
    } else {
        println!(
            "{} change(s) would be made; nothing was changed",
            changes.len()
        );
    }
    Ok(())
}
