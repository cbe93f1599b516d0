//! `upgrade`: a component replaced node by node while the swarm keeps
//! serving (drain, upgrade, back, next); never with a manager down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use clusterkit_core::roll::Work;
use clusterkit_core::spec::{ClusterSpec, StorageBackend, WgBackend};
use clusterkit_core::state::State;
use clusterkit_core::transport::install::installed_engine_package;
use clusterkit_core::transport::{fan_out, images, Cmd, Transport, TransportError};
use clusterkit_storage::roll::ImageRoll;
use clusterkit_swarm::roll::{roll, EnginePackage};
use clusterkit_wg::UserspaceBinary;
use serde::Serialize;

use crate::session::Session;
use crate::up::{Phase, UpOptions};
use crate::OpsError;

/// What `upgrade` can roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// The userspace WireGuard binary (boringtun) on the nodes without
    /// kernel WireGuard.
    Mesh,
    /// Docker Engine: the distribution's `docker.io` package at
    /// `[swarm] engine_version` (else at the version the nodes last ran
    /// together, recorded by `up`).
    Docker,
    /// Garage, the storage server: its image at `[storage] image`.
    Storage,
    /// The monitoring services' images: Swarm's own rolling update, one
    /// task at a time within a service.
    Monitoring,
    /// The ingress's images (`[ingress] image`, `routes_image`): Swarm's
    /// rolling update, the edges node by node, each stopped before its
    /// successor binds the node's ports (a client that knows every node
    /// tries the next one).
    Ingress,
}

impl Component {
    /// Every component, in the order a whole upgrade rolls them.
    pub const ALL: [Component; 5] = [
        Component::Mesh,
        Component::Docker,
        Component::Storage,
        Component::Monitoring,
        Component::Ingress,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Mesh => "mesh",
            Component::Docker => "docker",
            Component::Storage => "storage",
            Component::Monitoring => "monitoring",
            Component::Ingress => "ingress",
        }
    }

    /// What rolling it replaces, in a line (`--component`'s help).
    pub fn about(self) -> &'static str {
        match self {
            Component::Mesh => "The userspace WireGuard binary (restarts each node's tunnel)",
            Component::Docker => "Docker Engine (the node is drained and its tasks move)",
            Component::Storage => "Garage, the storage server, at [storage] image",
            Component::Monitoring => "The monitoring services' images, one task at a time",
            Component::Ingress => {
                "The ingress's Caddy and route watcher images, the edges node by node"
            }
        }
    }
}

impl std::str::FromStr for Component {
    type Err = clusterkit_core::Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::by_name(&Component::ALL, Component::name, "component", s)
    }
}

/// A line per component rolled ("nothing to upgrade" when none).
impl std::fmt::Display for UpgradeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.upgraded.is_empty() {
            return writeln!(f, "nothing to upgrade");
        }
        for u in &self.upgraded {
            let what = match u.component {
                Component::Monitoring | Component::Ingress => {
                    format!("{} service(s), one task at a time", u.count)
                }
                _ => format!("{} node(s), one at a time", u.count),
            };
            let (name, s) = (u.component.name(), self.seconds);
            writeln!(f, "{name} upgraded on {what}, in {s:.0} s")?;
        }
        Ok(())
    }
}

/// What `upgrade` rolls.
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// The components (none: every one).
    pub components: Vec<Component>,
    /// The userspace WireGuard executable to roll out (the mesh's component).
    pub userspace: Option<Vec<u8>>,
    /// clusterkit's executable, for the ingress's route watcher (the
    /// ingress's component redeploys its stack, which runs it).
    pub clusterkit_exe: Option<std::path::PathBuf>,
}

/// One component rolled.
#[derive(Debug, Clone, Serialize)]
pub struct Upgraded {
    /// The component.
    pub component: Component,
    /// Nodes (services, for monitoring) replaced, one at a time.
    pub count: usize,
}

/// What `upgrade` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    /// The components that needed it (none: nothing to upgrade).
    pub upgraded: Vec<Upgraded>,
    /// How long it took.
    pub seconds: f64,
}

/// Rolls each component over the nodes that need it, one node at a time,
/// quorum checked before each; every node must answer. Then records the
/// engine version, deploys the storage stack again when Garage was rolled
/// (no restart: its services match already), and spreads the replicated
/// services over the nodes again (drained nodes came back empty).
pub async fn upgrade(
    session: &Session<'_>,
    options: &UpgradeOptions,
) -> Result<UpgradeReport, OpsError> {
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let components = if options.components.is_empty() {
        Component::ALL.to_vec()
    } else {
        options.components.clone()
    };
    if options.components == [Component::Docker] && engine_wanted(spec).is_none() {
        return Err(OpsError::Refused(
            "no Docker Engine version is pinned yet: `clusterkit up` pins the one the nodes run (or set \
             `engine_version` under [swarm] in the cluster's config; `apt-cache policy docker.io` on a node \
             lists the versions it can install), then run again"
                .into(),
        ));
    }
    let start = Instant::now();
    let say = |m: &str| session.notice(None, m);
    let nodes = session
        .connect_every(
            "an upgrade takes one node out at a time and needs every other one up. Bring them back, \
             or take a dead one out (`clusterkit node remove NODE`); nothing was changed",
        )
        .await?;
    session.lock(&nodes, "upgrade").await?;
    let mut upgraded = Vec::new();
    for c in components {
        let count = match c {
            Component::Mesh => mesh(&nodes, spec, options.userspace.as_deref(), &say).await?,
            Component::Docker => docker(&nodes, spec, &say).await?,
            Component::Storage => storage(&nodes, spec, &say).await?,
            Component::Monitoring => monitoring(&nodes, spec, &say).await?,
            Component::Ingress => {
                ingress(
                    session,
                    &nodes,
                    spec,
                    options.clusterkit_exe.as_deref(),
                    &say,
                )
                .await?
            }
        };
        if count > 0 {
            upgraded.push(Upgraded {
                component: c,
                count,
            });
        }
    }
    let rolled = |c: Component| upgraded.iter().any(|u| u.component == c);
    if !upgraded.is_empty() {
        // Every node runs the wanted engine now: the cluster's engine from
        // here on, even if `engine_version` leaves the config.
        if let (true, Some(v)) = (rolled(Component::Docker), engine_wanted(spec)) {
            State::record_engine(&loaded.state_path, v)?;
        }
        // The storage stack's files now name the image every server runs.
        if rolled(Component::Storage) {
            crate::up::up(
                session,
                &UpOptions {
                    only: Some(Phase::Storage),
                    ..UpOptions::default()
                },
            )
            .await?;
        }
        crate::up::up(
            session,
            &UpOptions {
                only: Some(Phase::Rebalance),
                rebalance: true,
                ..UpOptions::default()
            },
        )
        .await?;
    }
    Ok(UpgradeReport {
        upgraded,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The mesh: the nodes running the userspace implementation with another binary.
async fn mesh(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    userspace: Option<&[u8]>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<usize, OpsError> {
    let bytes = userspace.ok_or_else(|| {
        OpsError::Refused("no clusterkit-wg-userspace beside this clusterkit: build it (`cargo build --release --bins`) or set CLUSTERKIT_WG_USERSPACE".into())
    })?;
    let binary = UserspaceBinary {
        bytes,
        arch: std::env::consts::ARCH,
        replace_running: true,
    };
    let wanted = binary.sha256();
    let facts = crate::mesh::gather(nodes).await?;
    let mut todo = Vec::new();
    for t in nodes {
        let f = &facts[t.node()];
        let userspace = spec.mesh.backend == WgBackend::Userspace || !f.wireguard_kernel;
        if !userspace {
            continue;
        }
        let installed = clusterkit_wg::installed_userspace(t.as_ref()).await?;
        if installed.as_deref() != Some(wanted.as_str()) {
            say(&format!(
                "{}: userspace wireguard {} → {}",
                t.node(),
                installed.as_deref().map_or("none", |h| &h[..12]),
                &wanted[..12]
            ));
            todo.push((
                t.clone(),
                Box::new(clusterkit_wg::BinaryRoll {
                    nodes,
                    spec,
                    facts: f,
                    binary,
                }) as Box<dyn Work>,
            ));
        }
    }
    if todo.is_empty() {
        say(&format!(
            "mesh: every node runs userspace wireguard {} (or kernel wireguard): nothing to upgrade",
            &wanted[..12]
        ));
        return Ok(0);
    }
    Ok(roll(nodes, Component::Mesh.name(), todo, say).await?)
}

/// A connected manager, through which `what` is rolled.
async fn a_manager(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    what: &str,
) -> Result<Arc<dyn Transport>, OpsError> {
    clusterkit_core::stack::answering_manager(nodes, spec, clusterkit_core::stack::LEADER_PATIENCE)
        .await?
        .map(Arc::clone)
        .ok_or_else(|| {
            OpsError::Refused(format!(
                "no manager is connected: {what} is rolled through the swarm"
            ))
        })
}

/// The engine version a roll brings every node to: `[swarm] engine_version`,
/// else the one the nodes last ran together.
pub fn engine_wanted(spec: &ClusterSpec) -> Option<&str> {
    spec.swarm
        .engine_version
        .as_deref()
        .or(spec.swarm.engine_recorded.as_deref())
}

/// Docker Engine: the nodes whose `docker.io` package is another version
/// than the pinned one. Every node must be able to install it before the
/// first one is drained.
async fn docker(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    say: &(dyn Fn(&str) + Sync),
) -> Result<usize, OpsError> {
    let Some(wanted) = engine_wanted(spec) else {
        say("docker: no engine pinned yet (`clusterkit up` pins the one the nodes run): the engines are left as they are");
        return Ok(0);
    };
    let mut installed = BTreeMap::new();
    for (n, r) in fan_out(
        nodes,
        16,
        |t| async move { installed_engine_package(t).await },
    )
    .await
    {
        installed.insert(n, r?);
    }
    let todo_nodes: Vec<Arc<dyn Transport>> = nodes
        .iter()
        .filter(|t| installed[t.node()].as_deref() != Some(wanted))
        .cloned()
        .collect();
    if todo_nodes.is_empty() {
        say(&format!(
            "docker: every node runs docker.io {wanted}: nothing to upgrade"
        ));
        return Ok(0);
    }
    // Nothing is drained unless every node can install the version.
    let probe = format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null 2>&1; {}",
        clusterkit_core::transport::install::engine_offered(wanted)
    );
    let mut missing = Vec::new();
    for (n, r) in fan_out(&todo_nodes, 16, |t| {
        let probe = probe.clone();
        async move { t.exec(&Cmd::new(probe)).await }
    })
    .await
    {
        match r {
            Ok(_) => {}
            // grep found no `Package:`: apt does not know the version.
            Err(TransportError::Failed { status: 1, .. }) => missing.push(n),
            Err(e) => return Err(e.into()),
        }
    }
    if !missing.is_empty() {
        return Err(OpsError::Refused(format!(
            "docker.io {wanted} cannot be installed on {}: it is in none of its package sources \
             (`apt-cache policy docker.io` there lists those it can install). Fix engine_version under [swarm] \
             or the node's sources, then run again; nothing was changed",
            missing.join(", ")
        )));
    }
    let mut todo = Vec::new();
    for t in todo_nodes {
        say(&format!(
            "{}: docker.io {} → {wanted}",
            t.node(),
            installed[t.node()].as_deref().unwrap_or("none")
        ));
        todo.push((
            t,
            Box::new(EnginePackage { version: wanted }) as Box<dyn Work>,
        ));
    }
    Ok(roll(nodes, Component::Docker.name(), todo, say).await?)
}

/// Storage: the Garage servers whose service runs another image than
/// `[storage] image`. Every server must be connected and every partition
/// whole before the first one is taken out.
async fn storage(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    say: &(dyn Fn(&str) + Sync),
) -> Result<usize, OpsError> {
    use clusterkit_storage::roll;
    match spec.storage.backend {
        StorageBackend::Garage => {}
        StorageBackend::Minio => {
            say("storage: MinIO does not run mixed versions: `clusterkit up` replaces its image on every server at once");
            return Ok(0);
        }
        StorageBackend::None => return Ok(0),
    }
    let image = spec.storage.image.as_str();
    let mgr = a_manager(nodes, spec, "storage").await?;
    let running = roll::running_images(mgr.as_ref(), spec).await?;
    let behind = roll::behind(spec, &running);
    if behind.is_empty() {
        say(&format!(
            "storage: every Garage server runs {image}: nothing to upgrade"
        ));
        return Ok(0);
    }
    let h = clusterkit_storage::health(nodes, spec).await?;
    if !roll::all_ok(&h) {
        return Err(OpsError::Refused(format!(
            "storage is {}: {}/{} servers connected, {}/{} partitions with every copy. A roll takes one server \
             out at a time and needs every other one whole: bring the missing ones back \
             (`clusterkit storage status` names them), then run again; nothing was changed",
            h.status,
            h.storage_nodes_up,
            h.storage_nodes,
            h.partitions_all_ok,
            h.partitions
        )));
    }
    let r = spec.storage.replication;
    if clusterkit_storage::write_quorum(r) >= usize::from(r) {
        say(&format!(
            "storage keeps {r} cop(ies) and needs all of them for a write: writes to objects with a copy on a \
             server pause while it restarts (3 copies keep writes going)"
        ));
    }
    let todo_nodes: Vec<Arc<dyn Transport>> = nodes
        .iter()
        .filter(|t| behind.iter().any(|b| b == t.node()))
        .cloned()
        .collect();
    // The image is on every node before the first one is taken out.
    images::provide(&[(image.to_string(), todo_nodes.clone())], say).await?;
    let mut todo = Vec::new();
    for t in todo_nodes {
        say(&format!(
            "{}: Garage {} → {image}",
            t.node(),
            running.get(t.node()).map_or("?", String::as_str)
        ));
        todo.push((t, Box::new(ImageRoll { image, spec }) as Box<dyn Work>));
    }
    Ok(roll(nodes, Component::Storage.name(), todo, say).await?)
}

/// Monitoring: the services whose image is not the one under [monitoring].
/// The images reach the nodes first; the stack is deployed again and Swarm
/// replaces each changed service's tasks one at a time (Prometheus's two
/// replicas never together), followed until every task runs its new image.
async fn monitoring(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    say: &(dyn Fn(&str) + Sync),
) -> Result<usize, OpsError> {
    if !spec.monitoring.enabled {
        return Ok(0);
    }
    let mgr = a_manager(nodes, spec, "monitoring").await?;
    let behind = clusterkit_monitor::roll::behind(mgr.as_ref(), spec).await?;
    let deploy = async {
        clusterkit_monitor::up(nodes, spec, say).await?;
        Ok(())
    };
    let targets = clusterkit_monitor::phase::image_targets(nodes, spec);
    roll_services(
        "monitoring",
        "[monitoring]",
        mgr.as_ref(),
        &behind,
        &targets,
        deploy,
        say,
    )
    .await
}

/// The ingress: the services whose image is not the one under [ingress].
/// The images reach the nodes first; the ingress is deployed again (the
/// ingress phase of `up`) and Swarm replaces the edges node by node, each
/// stopped before its successor binds the node's ports, followed until
/// every task runs its new image.
async fn ingress(
    session: &Session<'_>,
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    exe: Option<&std::path::Path>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<usize, OpsError> {
    use clusterkit_core::stack::roll;
    if !spec.ingress.enabled {
        return Ok(0);
    }
    let mgr = a_manager(nodes, spec, "the ingress").await?;
    let wanted = clusterkit_ingress::stack::service_images(spec);
    let behind = roll::behind(mgr.as_ref(), clusterkit_ingress::stack::STACK, &wanted).await?;
    if !behind.is_empty() && exe.is_none() {
        return Err(OpsError::Refused(
            "the ingress's route watcher runs clusterkit's executable: set UpgradeOptions::clusterkit_exe (the CLI passes itself)"
                .into(),
        ));
    }
    let deploy = async {
        crate::up::up(
            session,
            &UpOptions {
                only: Some(Phase::Ingress),
                clusterkit_exe: exe.map(std::path::Path::to_path_buf),
                ..UpOptions::default()
            },
        )
        .await?;
        Ok(())
    };
    let targets = clusterkit_ingress::phase::image_targets(nodes, spec);
    roll_services(
        "ingress",
        "[ingress]",
        mgr.as_ref(),
        &behind,
        &targets,
        deploy,
        say,
    )
    .await
}

/// A stack's services rolled by Swarm to the images under `section`:
/// `behind` named (nothing to do when empty), every node given the images
/// (`targets`) before the first task is replaced, the stack deployed again
/// (`deploy`), Swarm's update followed until every task runs its new image.
/// Returns how many services were rolled.
async fn roll_services(
    what: &str,
    section: &'static str,
    mgr: &dyn Transport,
    behind: &[clusterkit_core::stack::roll::Behind],
    targets: &[clusterkit_core::engine::ImageNeed],
    deploy: impl std::future::Future<Output = Result<(), OpsError>>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<usize, OpsError> {
    if behind.is_empty() {
        say(&format!(
            "{what}: every service runs the image under {section}: nothing to upgrade"
        ));
        return Ok(0);
    }
    for b in behind {
        say(&format!("{}: {} → {}", b.service, b.running, b.wanted));
    }
    images::provide(targets, say).await?;
    deploy.await?;
    clusterkit_core::stack::roll::wait_updated(mgr, behind, section, say).await?;
    Ok(behind.len())
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

    #[test]
    fn components_parse_by_name_and_a_report_says_each_roll() {
        assert_eq!("storage".parse::<Component>().unwrap(), Component::Storage);
        let e = "garage".parse::<Component>().unwrap_err().to_string();
        assert!(
            e.contains("the components are mesh, docker, storage, monitoring, ingress"),
            "{e}"
        );
        let none = UpgradeReport {
            upgraded: vec![],
            seconds: 1.0,
        };
        assert_eq!(none.to_string(), "nothing to upgrade\n");
        let two = UpgradeReport {
            upgraded: vec![
                Upgraded {
                    component: Component::Docker,
                    count: 3,
                },
                Upgraded {
                    component: Component::Monitoring,
                    count: 4,
                },
            ],
            seconds: 61.4,
        };
        assert_eq!(
            two.to_string(),
            "docker upgraded on 3 node(s), one at a time, in 61 s\n\
             monitoring upgraded on 4 service(s), one task at a time, in 61 s\n"
        );
    }

    #[tokio::test]
    async fn an_upgrade_without_a_version_or_with_a_node_missing_asks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let (n1, n2) = (Scripted::new("node1"), Scripted::new("node2"));
        let given: Vec<Arc<dyn Transport>> = vec![Arc::new(n1.clone()), Arc::new(n2.clone())];
        let lines = Lines::to_string();
        let session = Session::with_transports(&loaded, Options::default(), &lines, given);
        let docker = UpgradeOptions {
            components: vec![Component::Docker],
            ..UpgradeOptions::default()
        };
        let e = upgrade(&session, &docker).await.unwrap_err().to_string();
        assert!(e.contains("no Docker Engine version is pinned yet"), "{e}");
        let e = upgrade(&session, &UpgradeOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 node(s) unreachable"), "{e}");
        assert!(e.contains("nothing was changed"), "{e}");
        assert!(e.contains("node3: no transport given for it"), "{e}");
        assert!(n1.asked().is_empty() && n2.asked().is_empty());
    }
}
