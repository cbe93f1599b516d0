//! `check`: every node's facts, judged against the description. Read-only.

use clusterkit_core::transport::facts::{self, FactProblem, Facts};
use clusterkit_core::transport::fan_out;
use serde::Serialize;

use crate::session::{Reach, Session, Unreachable};

/// One node's facts and what is wrong with them.
#[derive(Debug, Clone, Serialize)]
pub struct NodeCheck {
    /// The node.
    pub node: String,
    /// What it runs.
    pub facts: Facts,
    /// Its problems, each blocking or not.
    pub problems: Vec<FactProblem>,
}

/// What `check` found, in the description's node order.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The nodes that answered.
    pub nodes: Vec<NodeCheck>,
    /// The nodes that did not.
    pub unreachable: Vec<Unreachable>,
}

impl CheckReport {
    /// Whether something stops a run: a node unreachable or a blocking problem.
    pub fn blocking(&self) -> bool {
        !self.unreachable.is_empty()
            || self
                .nodes
                .iter()
                .any(|n| n.problems.iter().any(|p| p.blocking))
    }
}

impl std::fmt::Display for CheckReport {
    /// The table `clusterkit check` prints: a line of facts per node that
    /// answered, then every problem (and every node that did not answer),
    /// or that there are none.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<10} {:<18} {:<8} {:<22} {:<10} {:<15} {:<9} {:>9} {:>7}",
            "NODE", "OS", "ARCH", "KERNEL", "WIREGUARD", "DOCKER", "SWARM", "DISK MiB", "CLOCK"
        )?;
        for n in &self.nodes {
            let x = &n.facts;
            writeln!(
                f,
                "{:<10} {:<18} {:<8} {:<22} {:<10} {:<15} {:<9} {:>9} {:>+6.2}s",
                n.node,
                format!("{} {} {}", x.os_id, x.os_version, x.codename),
                x.arch,
                x.kernel,
                if x.wireguard_kernel {
                    "kernel"
                } else {
                    "userspace"
                },
                x.docker.as_deref().unwrap_or("-"),
                x.swarm.as_deref().unwrap_or("-"),
                x.disk_free_mib,
                x.clock_offset_s
            )?;
        }
        let mut problems: Vec<String> = Vec::new();
        for n in &self.nodes {
            for p in &n.problems {
                problems.push(format!(
                    "  {}: {}: {}",
                    n.node,
                    if p.blocking { "error" } else { "warning" },
                    p.message
                ));
            }
        }
        for u in &self.unreachable {
            problems.push(format!("  {}: error: {}", u.node, u.error));
        }
        if problems.is_empty() {
            writeln!(f, "\nno problems: every node is ready")?;
        } else {
            writeln!(f, "\nproblems:")?;
            for p in problems {
                writeln!(f, "{p}")?;
            }
        }
        Ok(())
    }
}

/// Connects to every node, gathers its facts in one round trip and judges them.
pub async fn check(session: &Session<'_>) -> CheckReport {
    let spec = &session.loaded().built.spec;
    let connected = session.connect(Reach::Patient).await;
    let mut unreachable = connected.unreachable;
    let mut nodes = Vec::new();
    for (node, r) in fan_out(&connected.nodes, 16, facts::gather).await {
        match r {
            Ok(f) => {
                let problems = spec
                    .node(&node)
                    .map(|n| facts::judge(&f, n, spec))
                    .unwrap_or_default();
                nodes.push(NodeCheck {
                    node,
                    facts: f,
                    problems,
                });
            }
            Err(e) => unreachable.push(Unreachable {
                node,
                error: e.to_string(),
            }),
        }
    }
    // The description's order, whatever finished first.
    let order = |n: &str| spec.nodes.iter().position(|x| x.name.as_str() == n);
    nodes.sort_by_key(|n| order(&n.node));
    unreachable.sort_by_key(|n| order(&n.node));
    CheckReport { nodes, unreachable }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;
    use clusterkit_core::transport::Transport;

    use super::*;
    use crate::testkit::{loaded, FACTS};
    use crate::Options;

    #[tokio::test]
    async fn check_judges_every_node_in_order_and_names_the_ones_missing() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let (n1, n2) = (Scripted::new("node1"), Scripted::new("node2"));
        n1.on("os_id=", FACTS);
        // Another program holds the swarm's port on node2.
        n2.on("os_id=", &FACTS.replace("ports=22 ", "ports=22 2377 "));
        let lines = Lines::to_string();
        // Answers in the other order: the report is in the description's.
        let nodes: Vec<Arc<dyn Transport>> = vec![Arc::new(n2.clone()), Arc::new(n1.clone())];
        let session = Session::with_transports(&loaded, Options::default(), &lines, nodes);
        let r = check(&session).await;
        assert_eq!(
            r.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
            ["node1", "node2"]
        );
        assert!(
            r.nodes[0].problems.iter().all(|p| !p.blocking),
            "{:?}",
            r.nodes[0]
        );
        assert!(
            r.nodes[1]
                .problems
                .iter()
                .any(|p| p.blocking && p.message.contains("2377")),
            "{:?}",
            r.nodes[1].problems
        );
        assert_eq!(r.unreachable.len(), 1);
        assert_eq!(r.unreachable[0].node, "node3");
        assert!(r.blocking());
        assert_eq!(n1.asked().len(), 1, "one round trip per node");
        // The table `clusterkit check` prints: a line per node, then the problems.
        let text = r.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NODE       OS"), "{text}");
        assert!(
            lines[1].starts_with("node1 ") && lines[2].starts_with("node2 "),
            "{text}"
        );
        assert!(text.contains("\nproblems:\n"), "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("  node2: error: ") && l.contains("2377")),
            "{text}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("  node3: error: ")),
            "{text}"
        );
    }
}
