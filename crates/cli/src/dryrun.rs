//! `clusterkit up --dry-run`: what `up` would change, found with read-only
//! commands: Docker Engine missing, WireGuard keys to make, each node's mesh
//! configuration as a diff, swarm membership, and every stack file
//! (storage, monitoring, applications) as a diff against the one the manager
//! holds. Nothing is written. Secrets never appear: the files compared hold
//! none (keys and passwords live in files and Swarm secrets of their own).

use std::collections::BTreeMap;
use std::sync::Arc;

use clusterkit_core::spec::ClusterSpec;
use clusterkit_core::transport::facts::Facts;
use clusterkit_core::transport::{fan_out, Cmd, Transport};
use serde::Serialize;

/// One thing `up` would change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The phase that would make it.
    pub phase: &'static str,
    /// The node concerned, if one.
    pub node: Option<String>,
    /// What would happen.
    pub what: String,
    /// A unified diff of a file, when a file would change.
    pub diff: Option<String>,
}

async fn read(t: &dyn Transport, path: &str) -> anyhow::Result<Option<String>> {
    let out = t
        .exec_raw(&Cmd::new("cat ").arg(path).push(" 2>/dev/null"), None)
        .await?;
    Ok((out.status == 0).then(|| out.stdout_str()))
}

fn diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("{path} (on the node)"),
            &format!("{path} (wanted)"),
        )
        .to_string()
}

/// Compares `files` with those in `dir` on `t`; one change per file that
/// differs or is missing.
async fn compare(
    t: &dyn Transport,
    phase: &'static str,
    dir: &str,
    files: &[(String, String)],
    out: &mut Vec<Change>,
) -> anyhow::Result<()> {
    for (name, wanted) in files {
        let path = format!("{dir}/{name}");
        match read(t, &path).await? {
            Some(now) if &now == wanted => {}
            Some(now) => out.push(Change {
                phase,
                node: Some(t.node().into()),
                what: format!("would update {path} and redeploy"),
                diff: Some(diff(&path, &now, wanted)),
            }),
            None => out.push(Change {
                phase,
                node: Some(t.node().into()),
                what: format!("would write {path} and deploy"),
                diff: None,
            }),
        }
    }
    Ok(())
}

/// Everything `up` would change, phase by phase.
pub async fn changes(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    facts: &BTreeMap<String, Facts>,
) -> anyhow::Result<Vec<Change>> {
    let mut out = Vec::new();
    // Docker Engine.
    for (n, f) in facts {
        if f.docker.is_none() {
            out.push(Change {
                phase: "docker",
                node: Some(n.clone()),
                what: "would install Docker Engine from the distribution's packages".into(),
                diff: None,
            });
        }
    }
    // The mesh: keys, then each node's configuration.
    let iface = spec.mesh.interface.clone();
    let mut keys = BTreeMap::new();
    for (n, r) in fan_out(nodes, 16, |t| {
        let iface = iface.clone();
        async move { clusterkit_wg::public_key(t, &iface).await }
    })
    .await
    {
        match r {
            Ok(k) => {
                keys.insert(n, k);
            }
            Err(_) => out.push(Change {
                phase: "mesh",
                node: Some(n),
                what: format!("would make a WireGuard key (it stays in /etc/wireguard/{iface}.key) and bring {iface} up"),
                diff: None,
            }),
        }
    }
    if keys.len() == nodes.len() {
        for m in clusterkit_wg::plan(spec, &keys) {
            let Some(t) = nodes.iter().find(|t| t.node() == m.node) else {
                continue;
            };
            let path = m.conf_file();
            let wanted = clusterkit_wg::render::wg_quick(&m);
            match read(t.as_ref(), &path).await? {
                Some(now) if now == wanted => {}
                Some(now) => out.push(Change {
                    phase: "mesh",
                    node: Some(m.node.clone()),
                    what: format!("would update {path} and sync the live peers"),
                    diff: Some(diff(&path, &now, &wanted)),
                }),
                None => out.push(Change {
                    phase: "mesh",
                    node: Some(m.node.clone()),
                    what: format!("would write {path} and bring {} up", m.interface),
                    diff: None,
                }),
            }
        }
    } else {
        out.push(Change {
            phase: "mesh",
            node: None,
            what: "every node's configuration would gain the new keys (shown once they exist)"
                .into(),
            diff: None,
        });
    }
    // The swarm.
    let mut in_swarm = false;
    for t in nodes {
        let state = t
            .exec_raw(
                &Cmd::new("docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null"),
                None,
            )
            .await?
            .stdout_str();
        match state.trim() {
            "active" => in_swarm = true,
            other => out.push(Change {
                phase: "swarm",
                node: Some(t.node().into()),
                what: format!(
                    "would join the swarm on its mesh address (now: {})",
                    if other.is_empty() { "no engine" } else { other }
                ),
                diff: None,
            }),
        }
    }
    // Stacks, compared with the files a manager holds.
    let Some(mgr) = clusterkit_core::stack::managers(nodes, spec)
        .into_iter()
        .next()
    else {
        return Ok(out);
    };
    if let Some(st) = clusterkit_storage::render::stack(spec) {
        compare(
            mgr.as_ref(),
            "storage",
            clusterkit_storage::STACK_DIR,
            &st.all(),
            &mut out,
        )
        .await?;
    }
    if spec.monitoring.enabled {
        let st = clusterkit_monitor::render::stack(spec);
        compare(
            mgr.as_ref(),
            "monitoring",
            clusterkit_monitor::STACK_DIR,
            &st.all(),
            &mut out,
        )
        .await?;
    }
    for s in &spec.stacks {
        let text = std::fs::read_to_string(&s.file)
            .map_err(|e| anyhow::anyhow!("reading the stack file {}: {e}", s.file.display()))?;
        compare(
            mgr.as_ref(),
            "stacks",
            &clusterkit_swarm::stacks::stack_dir(&s.name),
            &[("docker-compose.yml".to_string(), text)],
            &mut out,
        )
        .await?;
    }
    if !in_swarm {
        out.push(Change {
            phase: "swarm",
            node: None,
            what: "no node is in a swarm yet: the first manager would initialise it".into(),
            diff: None,
        });
    }
    Ok(out)
}

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
