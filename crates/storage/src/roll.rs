//! Garage's image replaced one node at a time. A deploy of the storage stack
//! never does it (each node is its own service: a new image in the stack file
//! would restart every server at once); `up` keeps each node on the image its
//! service runs ([`running_images`], [`crate::render::stack_keeping`]) and
//! names the nodes that are [`behind`]. [`ImageRoll`] is the roll's step on
//! one node (`clusterkit_swarm::roll::roll` drains the node first:
//! `clusterkit upgrade --component storage`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clusterkit_core::spec::{ClusterSpec, StorageBackend};
use clusterkit_core::transport::{Cmd, Transport};

use crate::{garage, StorageError, STACK};

/// The image each Garage node's service runs (node name → image), read
/// through a manager; empty before the stack is deployed, and for another
/// backend than Garage (nothing is kept: see [`crate::render::stack_keeping`]).
pub async fn running_images(
    mgr: &dyn Transport,
    spec: &ClusterSpec,
) -> Result<BTreeMap<String, String>, StorageError> {
    if spec.storage.backend != StorageBackend::Garage {
        return Ok(BTreeMap::new());
    }
    let out = mgr
        .exec(&Cmd::new(format!(
            "ids=$(docker service ls -q --filter label=com.docker.stack.namespace={STACK}); \
             [ -z \"$ids\" ] || docker service inspect -f '{{{{.Spec.Name}}}} {{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' $ids"
        )))
        .await?;
    Ok(parse_running(&out.stdout_str()))
}

/// Parses `<service> <image>` lines into node → image for Garage's services.
pub fn parse_running(text: &str) -> BTreeMap<String, String> {
    let prefix = format!("{STACK}_garage-");
    text.lines()
        .filter_map(|l| {
            let (name, image) = l.trim().split_once(' ')?;
            let node = name.strip_prefix(&prefix)?;
            Some((node.to_string(), image.trim().to_string()))
        })
        .collect()
}

/// The storage nodes whose Garage service runs another image than the
/// spec's, in inventory order. Nodes without a service are not behind (`up`
/// deploys them on the spec's image).
pub fn behind(spec: &ClusterSpec, running: &BTreeMap<String, String>) -> Vec<String> {
    if spec.storage.backend != StorageBackend::Garage {
        return Vec::new();
    }
    crate::storage_nodes(spec)
        .filter(|n| {
            running
                .get(n.name.as_str())
                .is_some_and(|i| *i != spec.storage.image)
        })
        .map(|n| n.name.to_string())
        .collect()
}

/// Waits until no Garage container runs on `t` (a drained node's server
/// takes a moment to exit). Two servers on one metadata directory crash the
/// newer one (measured: Garage 2.5.0 exits with status 139), so the new image
/// is given only once the old server is gone.
pub async fn wait_stopped(t: &dyn Transport, patience: Duration) -> Result<(), StorageError> {
    let start = Instant::now();
    while garage::running(t).await? {
        if start.elapsed() > patience {
            return Err(StorageError::NotReady(format!(
                "{}: Garage still runs {} s after the node was drained (`docker ps` there shows it)",
                t.node(),
                patience.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Gives `node`'s Garage service `image`, through the manager `mgr`: the
/// storage stack deployed again with that node's image changed and every
/// other node kept on the image its service runs, so only that node's task
/// is replaced (when the node can run it).
///
/// Through the stack, not `docker service update --image`: that also
/// rewrote other fields of the spec (the mounts sorted, no DNS config, no
/// stop grace period; through the Engine API a round trip lost the health
/// check too), so the stack deployed after the roll differed from every
/// server's spec and restarted them all at once (measured: three servers
/// started in the same second, writes refused by every node).
pub async fn set_image(
    mgr: &dyn Transport,
    spec: &ClusterSpec,
    node: &str,
    image: &str,
) -> Result<(), StorageError> {
    let mut images = running_images(mgr, spec).await?;
    images.insert(node.to_string(), image.to_string());
    let stack = crate::render::stack_keeping(spec, &images).ok_or_else(|| {
        StorageError::Unsupported("storage.backend is none: no Garage service to update".into())
    })?;
    clusterkit_core::stack::deploy(
        mgr,
        &clusterkit_core::stack::StackDeploy {
            name: STACK,
            dir: crate::STACK_DIR,
            files: stack.all(),
            services: crate::storage_nodes(spec).count(),
        },
        &|_| {},
    )
    .await?;
    Ok(())
}

/// Whether Garage's health says every storage node is connected and every
/// partition has all its copies.
pub fn all_ok(h: &garage::Health) -> bool {
    h.status == "healthy"
        && h.storage_nodes_up == h.storage_nodes
        && h.partitions_all_ok == h.partitions
}

/// Waits until `t`'s Garage container runs `image` and, asked there, Garage
/// reports every node connected and every partition whole.
pub async fn wait_back(
    t: &dyn Transport,
    image: &str,
    patience: Duration,
) -> Result<garage::Health, StorageError> {
    let start = Instant::now();
    let node = t.node();
    let mut last = String::from("its container has not started");
    loop {
        let out = t
            .exec_raw(
                &Cmd::new(format!(
                    "docker ps --filter label=com.docker.swarm.service.name={} --filter status=running --format '{{{{.Image}}}}'",
                    garage::service(node)
                )),
                None,
            )
            .await?;
        // The service's update rolls back by itself when the new task fails
        // (`failure_action: rollback`): said at once, with the task's error.
        let update = t
            .exec_raw(
                &Cmd::new(format!(
                    "docker service inspect -f '{{{{if .UpdateStatus}}}}{{{{.UpdateStatus.State}}}}{{{{end}}}}' {svc}; \
                     docker service ps --no-trunc --filter desired-state=shutdown --format '{{{{.Image}}}}: {{{{.Error}}}}' {svc} | grep -v ': $' | head -n1",
                    svc = garage::service(node)
                )),
                None,
            )
            .await?;
        let text = update.stdout_str();
        let mut lines = text.lines();
        if lines
            .next()
            .is_some_and(|s| s.trim().starts_with("rollback"))
        {
            return Err(StorageError::NotReady(format!(
                "{node}: Garage on {image} did not start ({}): Swarm rolled the service back to the image it ran. \
                 `docker service ps --no-trunc {}` on a manager shows the task; `docker service logs` its output",
                lines.next().unwrap_or("no task error recorded").trim(),
                garage::service(node)
            )));
        }
        if out.stdout_str().lines().any(|l| l.trim() == image) {
            match garage::api::<garage::Health>(t, "GetClusterHealth", None).await {
                Ok(h) if all_ok(&h) => return Ok(h),
                Ok(h) => {
                    last = format!(
                        "Garage is {}: {}/{} storage nodes connected, {}/{} partitions whole",
                        h.status,
                        h.storage_nodes_up,
                        h.storage_nodes,
                        h.partitions_all_ok,
                        h.partitions
                    )
                }
                Err(e) => last = e.to_string(),
            }
        } else if !out.stdout_str().trim().is_empty() {
            last = format!("it still runs {}", out.stdout_str().trim());
        }
        if start.elapsed() > patience {
            return Err(StorageError::NotReady(format!(
                "{node}: Garage on {image} is not back within {} s: {last} \
                 (`docker service ps {}` on a manager shows its task)",
                patience.as_secs(),
                garage::service(node)
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Garage's image replaced on one node, as a step of a roll
/// (`clusterkit_swarm::roll::roll`): once the drained node's server is gone,
/// its service gets the image ([`wait_stopped`], [`set_image`]); back when
/// Garage runs it there with every server connected and every partition
/// whole ([`wait_back`]).
pub struct ImageRoll<'a> {
    /// The image.
    pub image: &'a str,
    /// The cluster's spec (the storage stack is rendered from it).
    pub spec: &'a ClusterSpec,
}

const PATIENCE: Duration = Duration::from_secs(180);

#[async_trait::async_trait]
impl clusterkit_core::roll::Work for ImageRoll<'_> {
    async fn replace(
        &self,
        t: &std::sync::Arc<dyn Transport>,
        via: Option<&std::sync::Arc<dyn Transport>>,
        say: clusterkit_core::roll::Say<'_>,
    ) -> Result<(), clusterkit_core::engine::BoxError> {
        let (node, image) = (t.node(), self.image);
        if via.is_some() {
            // Drained: its server is on its way out.
            wait_stopped(t.as_ref(), PATIENCE).await?;
        }
        say(&format!("{node}: Garage's service to {image}"));
        set_image(via.unwrap_or(t).as_ref(), self.spec, node, image).await?;
        Ok(())
    }

    async fn back(
        &self,
        t: &std::sync::Arc<dyn Transport>,
        say: clusterkit_core::roll::Say<'_>,
    ) -> Result<(), clusterkit_core::engine::BoxError> {
        // The node's server starts once the node takes tasks again.
        wait_back(t.as_ref(), self.image, PATIENCE).await?;
        say(&format!(
            "{}: Garage runs {}; every server connected, every partition whole",
            t.node(),
            self.image
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_images_are_read_per_garage_node() {
        let text = "clusterkit-storage_garage-node1 clusterkit/garage:2.5.0\n\
                    clusterkit-storage_garage-node2 clusterkit/garage:2.5.1@sha256:ab\n\
                    clusterkit-monitoring_prometheus prom/prometheus:v3\n";
        let r = parse_running(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r["node1"], "clusterkit/garage:2.5.0");
        assert_eq!(r["node2"], "clusterkit/garage:2.5.1@sha256:ab");
    }

    #[test]
    fn only_nodes_running_another_image_are_behind() {
        let mut spec = clusterkit_core::spec::example(3);
        spec.storage.image = "clusterkit/garage:new".into();
        let mut running = BTreeMap::new();
        running.insert("node1".to_string(), "clusterkit/garage:new".to_string());
        running.insert("node2".to_string(), "clusterkit/garage:old".to_string());
        assert_eq!(behind(&spec, &running), vec!["node2".to_string()]);
        // Rendered, node2 keeps its image, the others get the spec's.
        let st = crate::render::garage_stack_keeping(&spec, &running);
        let images: Vec<&str> = st
            .compose
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        assert_eq!(
            images,
            [
                "clusterkit/garage:new",
                "clusterkit/garage:old",
                "clusterkit/garage:new"
            ]
        );
        spec.storage.backend = StorageBackend::Minio;
        assert!(behind(&spec, &running).is_empty());
    }

    #[test]
    fn health_is_whole_only_with_every_node_and_partition() {
        let mut h = garage::Health {
            status: "healthy".into(),
            connected_nodes: 2,
            storage_nodes: 3,
            storage_nodes_up: 3,
            partitions: 256,
            partitions_quorum: 256,
            partitions_all_ok: 256,
        };
        assert!(all_ok(&h));
        h.partitions_all_ok = 200;
        assert!(!all_ok(&h));
        h.partitions_all_ok = 256;
        h.storage_nodes_up = 2;
        h.status = "degraded".into();
        assert!(!all_ok(&h));
    }
}
