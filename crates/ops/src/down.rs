//! `down`: the cluster taken apart, in the reverse order of `up`: stacks
//! (applications, monitoring, storage), the volume driver, the swarm, the
//! mesh. Data stay on the nodes unless purged.

use clusterkit_core::state::State;
use clusterkit_core::transport::{fan_out, Cmd};
use serde::Serialize;

use crate::session::{Reach, Session, Unreachable};
use crate::OpsError;

/// What `down` removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DownOptions {
    /// Also delete the data: storage, the mesh keys, Grafana's password,
    /// the stacks' volumes and `/etc/clusterkit` on every node.
    pub purge: bool,
}

/// One node taken down, or what failed there.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDown {
    /// The node.
    pub node: String,
    /// What failed (`None`: Grafana's keeper and the volume driver removed,
    /// left the swarm, mesh down).
    pub error: Option<String>,
}

/// What `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// The stacks removed (none when no manager was in a swarm).
    pub stacks_removed: Vec<String>,
    /// Each node reached.
    pub nodes: Vec<NodeDown>,
    /// The nodes not reached, left as they are.
    pub unreachable: Vec<Unreachable>,
}

/// The stacks' volumes (labelled with their stack) and everything
/// clusterkit wrote on a node.
const PURGE: &str = "docker volume ls -q --filter label=com.docker.stack.namespace | xargs -r docker volume rm -f >/dev/null\n\
                     docker volume ls -q --filter driver=clusterkit | xargs -r docker volume rm -f >/dev/null 2>&1 || true\n\
                     rm -rf /etc/clusterkit /var/lib/clusterkit /var/cache/clusterkit";

/// The volumes of clusterkit's volume driver, removed before the driver,
/// with any container left holding one (the stacks are gone by then: what
/// is left is an exited task's container the engine has not reaped yet);
/// asked again for up to 20 s. What is left then is left to [`PURGE`].
const PURGE_DRIVER_VOLUMES: &str = "for i in $(seq 1 20); do \
     v=$(docker volume ls -q --filter driver=clusterkit); [ -z \"$v\" ] && break; \
     for n in $v; do docker ps -aq --filter volume=\"$n\" | xargs -r docker rm -f >/dev/null 2>&1; \
     docker volume rm -f \"$n\" >/dev/null 2>&1; done; sleep 1; done; true";

/// Takes the cluster apart on every node that answers (the others are left
/// as they are and reported). Idempotent. With `purge` and every node
/// reached, the state forgets the storage's number of copies.
pub async fn down(session: &Session<'_>, options: DownOptions) -> Result<DownReport, OpsError> {
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let purge = options.purge;
    let connected = session.connect(Reach::Patient).await;
    let nodes = connected.nodes;
    for u in &connected.unreachable {
        session.notice(
            Some(&u.node),
            format!("unreachable, left as it is: {}", u.error),
        );
    }
    if nodes.is_empty() {
        return Err(OpsError::NoneReachable);
    }
    session.lock(&nodes, "down").await?;
    let mut report = DownReport {
        stacks_removed: Vec::new(),
        nodes: Vec::new(),
        unreachable: connected.unreachable,
    };
    // Stacks, through a manager in the swarm (none: nothing to remove).
    let mgr = clusterkit_core::stack::managers(&nodes, spec)
        .into_iter()
        .next();
    if let Some(m) = mgr {
        let in_swarm = m
            .exec_raw(
                &Cmd::new("docker info -f '{{.Swarm.ControlAvailable}}'"),
                None,
            )
            .await?
            .stdout_str()
            .trim()
            == "true";
        if in_swarm {
            report.stacks_removed = clusterkit_swarm::remove_stacks(m.as_ref()).await?;
            session.notice(
                None,
                if report.stacks_removed.is_empty() {
                    "stacks: none".to_string()
                } else {
                    format!("stacks: removed {}", report.stacks_removed.join(", "))
                },
            );
        }
    }
    for (n, r) in fan_out(&nodes, 16, |t| async move {
        clusterkit_monitor::keeper::remove(t).await?;
        if purge {
            // Volumes of the storage's driver (the ingress's certificates),
            // while the driver still answers: without it the engine keeps
            // listing them.
            t.exec(&Cmd::new(PURGE_DRIVER_VOLUMES)).await?;
        }
        clusterkit_storage::down(t, spec, purge).await?;
        clusterkit_swarm::leave(t).await?;
        if purge {
            t.exec(&Cmd::new(PURGE)).await?;
        }
        clusterkit_wg::down(t, &spec.mesh.interface, purge).await?;
        Ok::<_, OpsError>(())
    })
    .await
    {
        let error = r.err().map(|e| e.to_string());
        session.notice(
            Some(&n),
            match &error {
                None => "Grafana's keeper and the volume driver removed, left the swarm, mesh down"
                    .to_string(),
                Some(e) => format!("error: {e}"),
            },
        );
        report.nodes.push(NodeDown { node: n, error });
    }
    if purge && report.unreachable.is_empty() {
        // The store is gone: the next one may keep another number of copies.
        let mut state = State::load(&loaded.state_path)?;
        if state.storage_replication.take().is_some() {
            state.save(&loaded.state_path)?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;
    use clusterkit_core::transport::Transport;

    use super::*;
    use crate::testkit::loaded;
    use crate::Options;

    #[tokio::test]
    async fn down_without_any_node_is_refused_and_a_nodes_failure_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let lines = Lines::to_string();
        let none = Session::with_transports(&loaded, Options::default(), &lines, Vec::new());
        assert!(matches!(
            down(&none, DownOptions::default()).await,
            Err(OpsError::NoneReachable)
        ));

        // node1 answers nothing past the lock and the swarm question: its
        // failure is its report's; node3 is left as it is.
        let (n1, n2) = (Scripted::new("node1"), Scripted::new("node2"));
        for n in [&n1, &n2] {
            n.on_stream("flock -n 9", "locked\n");
            n.on("docker info -f '{{.Swarm.ControlAvailable}}'", "false\n");
        }
        let nodes: Vec<Arc<dyn Transport>> = vec![Arc::new(n1.clone()), Arc::new(n2.clone())];
        let session = Session::with_transports(&loaded, Options::default(), &lines, nodes);
        let r = down(&session, DownOptions { purge: true }).await.unwrap();
        assert!(
            r.stacks_removed.is_empty(),
            "not in a swarm: no stack touched"
        );
        assert_eq!(r.nodes.len(), 2);
        assert!(r.nodes.iter().all(|n| n.error.is_some()), "{:?}", r.nodes);
        assert_eq!(r.unreachable.len(), 1);
        assert_eq!(r.unreachable[0].node, "node3");
        assert!(
            lines.text().contains("node3: unreachable, left as it is"),
            "{}",
            lines.text()
        );
        assert!(
            !loaded.state_path.exists(),
            "a purge with a node unreachable keeps the state's storage copies"
        );
    }
}
