//! The swarm and the application stacks as phases of `clusterkit up`
//! ([`clusterkit_core::engine`]).

use std::path::Path;
use std::sync::Arc;

use clusterkit_core::engine::{
    compare_files, BoxError, Change, Context, ImageNeed, Outcome, Phase,
};
use clusterkit_core::spec::ClusterSpec;
use clusterkit_core::transport::{fan_out, images, Cmd, Transport};

/// Every node in the swarm on its mesh address, roles and labels as the
/// spec says, the `clusterkit` overlay network.
pub struct SwarmPhase;

#[async_trait::async_trait]
impl Phase for SwarmPhase {
    fn name(&self) -> &'static str {
        "swarm"
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let mut out = Vec::new();
        let mut in_swarm = false;
        let cmd = Cmd::new("docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null");
        for (n, r) in fan_out(cx.nodes, 16, |t| t.exec_raw(&cmd, None)).await {
            match r?.stdout_str().trim() {
                "active" => in_swarm = true,
                other => out.push(Change {
                    phase: "swarm",
                    node: Some(n),
                    what: format!(
                        "would join the swarm on its mesh address (now: {})",
                        if other.is_empty() { "no engine" } else { other }
                    ),
                    diff: None,
                }),
            }
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

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        let c = crate::up(cx.nodes, cx.spec).await?;
        let mut out = Outcome::default();
        if let Some(n) = &c.initialized {
            cx.say(&format!("initialised on {n}"));
            out.node(n.clone());
        }
        for n in &c.joined {
            let role = cx
                .spec
                .node(n)
                .map(|x| format!("{:?}", x.role).to_lowercase())
                .unwrap_or_default();
            cx.say_on(n, &format!("joined as {role}"));
            out.node(n.clone());
        }
        for n in &c.updated {
            cx.say_on(n, "role or labels updated");
            out.node(n.clone());
        }
        for n in &c.boot_order {
            cx.say_on(n, "the engine now starts after the mesh");
            out.node(n.clone());
        }
        for n in &c.dead_peers {
            cx.say_on(
                n,
                "connections to a node that lost power are given up after about 100 s (net.ipv4.tcp_retries2 = 8)",
            );
            out.node(n.clone());
        }
        for (n, removed) in &c.overlay_cleared {
            cx.say_on(
                n,
                &format!(
                    "removed what an earlier swarm's overlay had left on it before it joined: {}",
                    removed.join(", ")
                ),
            );
            out.node(n.clone());
        }
        if c.network_created {
            cx.say("overlay network `clusterkit` created");
            out.cluster = true;
        }
        let s = crate::status(cx.nodes).await?;
        cx.say(&format!(
            "leader {}, {} managers, tolerates {} loss(es)",
            s.leader.as_deref().unwrap_or("none"),
            s.managers.len(),
            s.tolerates
        ));
        out.summary = Some(format!("a swarm of {} manager(s)", s.managers.len()));
        Ok(out)
    }
}

/// Checks a stack file, sends the images this machine has to the nodes that
/// lack them, deploys it and waits until it runs. Returns whether it changed
/// anything (deployed, or images sent).
pub async fn deploy_file(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    file: &Path,
    name: &str,
    say: &(dyn Fn(&str) + Sync),
) -> Result<bool, BoxError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("reading the stack file {}: {e}", file.display()))?;
    let stack = crate::stacks::inspect(name, &file.display().to_string(), &text)?;
    for w in &stack.warnings {
        say(&format!("{name}: warning: {w}"));
    }
    let needs: Vec<(String, Vec<Arc<dyn Transport>>)> = stack
        .images
        .iter()
        .map(|i| (i.clone(), nodes.to_vec()))
        .collect();
    let sent = images::provide(&needs, say).await?;
    let deployed = crate::stacks::deploy(nodes, spec, &stack, say).await?;
    if deployed {
        say(&format!(
            "{name}: {} service(s) running",
            stack.services.len()
        ));
    }
    Ok(deployed || !sent.is_empty())
}

/// The application stacks listed under `[[stacks]]`, each deployed and
/// running.
pub struct StacksPhase;

#[async_trait::async_trait]
impl Phase for StacksPhase {
    fn name(&self) -> &'static str {
        "stacks"
    }

    fn enabled(&self, spec: &ClusterSpec) -> bool {
        !spec.stacks.is_empty()
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let Some(mgr) = cx.manager() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in &cx.spec.stacks {
            let text = std::fs::read_to_string(&s.file)
                .map_err(|e| format!("reading the stack file {}: {e}", s.file.display()))?;
            out.extend(
                compare_files(
                    mgr.as_ref(),
                    "stacks",
                    &crate::stacks::stack_dir(&s.name),
                    &[("docker-compose.yml".to_string(), text)],
                    "redeploy",
                )
                .await?,
            );
        }
        Ok(out)
    }

    async fn images(&self, cx: &Context<'_>) -> Result<Vec<ImageNeed>, BoxError> {
        let mut out = Vec::new();
        for s in &cx.spec.stacks {
            let text = std::fs::read_to_string(&s.file)
                .map_err(|e| format!("reading the stack file {}: {e}", s.file.display()))?;
            let stack = crate::stacks::inspect(&s.name, &s.file.display().to_string(), &text)?;
            out.extend(stack.images.into_iter().map(|i| (i, cx.nodes.to_vec())));
        }
        Ok(out)
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        let mut out = Outcome::default();
        for st in &cx.spec.stacks {
            let say = |m: &str| cx.say(m);
            if deploy_file(cx.nodes, cx.spec, &st.file, &st.name, &say).await? {
                out.cluster = true;
            } else {
                cx.say(&format!("{} unchanged", st.name));
            }
        }
        out.summary = Some(format!(
            "stack(s) {}",
            cx.spec
                .stacks
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(out)
    }
}

/// Replicated services spread over the ready nodes again (after a node came
/// back), one service and one task at a time, never below their replica
/// count ([`crate::rebalance`]).
pub struct RebalancePhase;

fn spread_text(per_node: &std::collections::BTreeMap<String, usize>) -> String {
    per_node
        .iter()
        .map(|(n, c)| format!("{n}: {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait::async_trait]
impl Phase for RebalancePhase {
    fn name(&self) -> &'static str {
        "rebalance"
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let Some(mgr) = cx.manager() else {
            return Ok(Vec::new());
        };
        // A swarm not built yet has nothing to spread.
        let Ok(spreads) = crate::rebalance::spreads(mgr.as_ref()).await else {
            return Ok(Vec::new());
        };
        Ok(spreads
            .into_iter()
            .filter(|s| s.uneven() && s.replicas >= 2)
            .map(|s| Change {
                phase: "rebalance",
                node: None,
                what: format!(
                    "would spread {} ({} replicas; now {})",
                    s.service,
                    s.replicas,
                    spread_text(&s.per_node)
                ),
                diff: None,
            })
            .collect())
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        // Not merely the first manager: one that just came back (its power
        // restored) may not know the leader for a while.
        let mgr = clusterkit_core::stack::answering_manager(
            cx.nodes,
            cx.spec,
            clusterkit_core::stack::LEADER_PATIENCE,
        )
        .await?
        .ok_or_else(|| crate::SwarmError::NoQuorum("no manager is connected".into()))?;
        let say = |m: &str| cx.say(m);
        let moved = crate::rebalance::rebalance(mgr.as_ref(), &say).await?;
        let mut out = Outcome::default();
        for m in &moved {
            cx.say(&format!(
                "{}: {} → {}",
                m.service,
                spread_text(&m.before),
                spread_text(&m.after)
            ));
            out.cluster = true;
        }
        Ok(out)
    }
}
