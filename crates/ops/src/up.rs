//! `up`: every phase through the engine of clusterkit-core (facts, Docker,
//! mesh, swarm, storage, monitoring, stacks, rebalancing), and `deploy` of
//! one application stack.

use std::path::Path;

use clusterkit_core::engine::{
    engine_agreement, BoxError, Change, Context, DockerPhase, Engine, EngineAgreement, EngineError,
    FactsPhase, Outcome,
};
use clusterkit_core::state::State;
use clusterkit_ingress::phase::IngressPhase;
use clusterkit_monitor::phase::MonitoringPhase;
use clusterkit_storage::phase::StoragePhase;
use clusterkit_swarm::phase::{RebalancePhase, StacksPhase, SwarmPhase};
use clusterkit_wg::phase::MeshPhase;
use serde::Serialize;

use crate::session::Session;
use crate::OpsError;

/// The phases of `up`, in order (facts always run first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Docker Engine on every node.
    Docker,
    /// The WireGuard mesh and its firewall.
    Mesh,
    /// The swarm on the mesh.
    Swarm,
    /// Distributed storage and the volume driver.
    Storage,
    /// The monitoring stack.
    Monitoring,
    /// The application stacks listed under `[[stacks]]`.
    Stacks,
    /// The HTTPS ingress (`[ingress]`).
    Ingress,
    /// Replicated services spread over the ready nodes again.
    Rebalance,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 8] = [
        Phase::Docker,
        Phase::Mesh,
        Phase::Swarm,
        Phase::Storage,
        Phase::Monitoring,
        Phase::Stacks,
        Phase::Ingress,
        Phase::Rebalance,
    ];

    /// What the phase does, in a line (`--only`'s help).
    pub fn about(self) -> &'static str {
        match self {
            Phase::Docker => "Docker Engine on every node",
            Phase::Mesh => "The WireGuard mesh and its firewall",
            Phase::Swarm => "The swarm on the mesh",
            Phase::Storage => "Distributed storage and the volume driver",
            Phase::Monitoring => "The monitoring stack",
            Phase::Stacks => "The application stacks listed under [[stacks]]",
            Phase::Ingress => {
                "The HTTPS ingress: Caddy on every node, certificates once for the cluster"
            }
            Phase::Rebalance => "Replicated services spread over the ready nodes again",
        }
    }

    /// The engine's name of the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Docker => "docker",
            Phase::Mesh => "mesh",
            Phase::Swarm => "swarm",
            Phase::Storage => "storage",
            Phase::Monitoring => "monitoring",
            Phase::Stacks => "stacks",
            Phase::Ingress => "ingress",
            Phase::Rebalance => "rebalance",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Phase {
    type Err = clusterkit_core::Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::by_name(&Phase::ALL, Phase::name, "phase", s)
    }
}

/// What `up` does.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// One phase alone (after the facts), or all.
    pub only: Option<Phase>,
    /// Spread replicated services over the ready nodes again at the end.
    pub rebalance: bool,
    /// Say what would change, change nothing (no lock is taken).
    pub dry_run: bool,
    /// The userspace WireGuard executable to install where the kernel has
    /// none (`None`: such nodes fail with the way out).
    pub userspace: Option<Vec<u8>>,
    /// The volume driver's front (`clusterkit-volumes`) to install where a
    /// node's differs (`None`: nodes keep theirs, a node with none fails
    /// with the way out); [`clusterkit_storage::phase::local_front_binary`]
    /// finds the one beside the running executable.
    pub volumes: Option<Vec<u8>>,
    /// clusterkit's executable, which the ingress's route watcher and the
    /// scheduled backup's service run (`None`: a cluster with `[ingress]`
    /// on is refused at that phase, with the way out). The scheduled backup:
    /// after a whole run, a schedule the swarm runs is set again with it so
    /// that it follows the cluster ([`crate::schedule::refresh`]). `None`:
    /// a schedule is left as it is.
    pub clusterkit_exe: Option<std::path::PathBuf>,
}

impl UpOptions {
    /// `phase` alone (after the facts), nothing else asked: what each
    /// capability's own `up` runs ([`crate::swarm::up`], ...).
    pub fn only(phase: Phase) -> Self {
        Self {
            only: Some(phase),
            ..Self::default()
        }
    }
}

/// What one phase did.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// The phase's name (`facts`, `docker`, ...).
    pub phase: &'static str,
    /// How long it took.
    pub seconds: f64,
    /// What it changed.
    pub outcome: Outcome,
}

/// What `up` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// Each phase run, in order (empty for a dry run).
    pub phases: Vec<PhaseReport>,
    /// What would change (a dry run only).
    pub changes: Vec<Change>,
    /// Whether anything changed.
    pub changed: bool,
    /// One line: the cluster and what it is now.
    pub summary: String,
}

/// What a capability's own `up` did (`clusterkit swarm up`, ...): the
/// engine's run of the facts and that one phase, exactly as `up --only`
/// runs them, and the capability as it is after it.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityReport<S> {
    /// The engine's run.
    pub up: UpReport,
    /// The capability after it (its status, its endpoints, its pairs).
    pub after: S,
}

/// Every phase `up` knows, in order (rebalancing last, if asked for).
pub fn engine(
    rebalance: bool,
    userspace: Option<Vec<u8>>,
    volumes: Option<Vec<u8>>,
    clusterkit: Option<std::path::PathBuf>,
) -> Engine {
    let mut phases: Vec<Box<dyn clusterkit_core::engine::Phase>> = vec![
        Box::new(FactsPhase),
        Box::new(DockerPhase),
        Box::new(MeshPhase {
            userspace,
            arch: std::env::consts::ARCH,
        }),
        Box::new(SwarmPhase),
        Box::new(StoragePhase {
            front: volumes.map(std::sync::Arc::new),
        }),
        Box::new(MonitoringPhase),
        Box::new(StacksPhase),
        Box::new(IngressPhase { clusterkit }),
    ];
    if rebalance {
        phases.push(Box::new(RebalancePhase));
    }
    Engine::new(phases)
}

/// The phases a run of `options` goes through, by name, in order.
pub fn phase_names(options: &UpOptions) -> Vec<&'static str> {
    let only = options.only.map(Phase::name);
    engine(
        options.rebalance || options.only == Some(Phase::Rebalance),
        None,
        None,
        None,
    )
    .names()
    .into_iter()
    .filter(|p| only.is_none_or(|o| o == *p || *p == "facts"))
    .collect()
}

/// Runs every phase (or `options.only`) on every node, each idempotent: a
/// re-run on a converged cluster changes nothing and says so. Every node
/// must answer; the cluster's lock is taken (not for a dry run). The
/// addresses allocated are recorded in the state file once the facts allow
/// going on, and the Docker Engine version the nodes agree on after the
/// docker phase.
pub async fn up(session: &Session<'_>, options: &UpOptions) -> Result<UpReport, OpsError> {
    run(session, options, "up").await
}

/// [`up`], the cluster's lock taken in the name of `command` (what another
/// run waiting for it is told: `clusterkit swarm`, ...).
pub(crate) async fn run(
    session: &Session<'_>,
    options: &UpOptions,
    command: &str,
) -> Result<UpReport, OpsError> {
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let only = options.only.map(Phase::name);
    let engine = engine(
        options.rebalance || options.only == Some(Phase::Rebalance),
        options.userspace.clone(),
        options.volumes.clone(),
        options.clusterkit_exe.clone(),
    );
    let nodes = session.connect_all().await?;
    let cx = Context::new(&nodes, spec, session.reporter());
    if options.dry_run {
        let changes = engine.check(&cx, only).await?;
        return Ok(UpReport {
            phases: Vec::new(),
            changed: !changes.is_empty(),
            summary: format!(
                "cluster {}: {} change(s) to make (dry run: nothing changed)",
                spec.name,
                changes.len()
            ),
            changes,
        });
    }
    session.lock(&nodes, command).await?;
    // A refused run leaves no trace: the state is written after the facts.
    let save = |phase: &str| -> Result<(), BoxError> {
        if phase == "facts" {
            loaded.save_state()?;
        }
        Ok(())
    };
    let report = match engine.apply_then(&cx, only, &save).await {
        Ok(r) => r,
        Err(EngineError::Phase {
            phase: "facts",
            source,
        }) if source.is::<clusterkit_core::engine::Blocked>() => {
            let blocked = source
                .downcast::<clusterkit_core::engine::Blocked>()
                .expect("checked just above");
            return Err(OpsError::Blocked(*blocked));
        }
        Err(e) => return Err(e.into()),
    };
    if only.is_none_or(|o| o == "docker") {
        // The version every node runs, when they agree: the engine's pin
        // from then on while `[swarm] engine_version` is not set.
        if let EngineAgreement::Same(v) = engine_agreement(&cx.facts()) {
            State::record_engine(&loaded.state_path, &v)?;
        }
    }
    let mut changed = report.changed();
    if let (None, Some(exe)) = (only, &options.clusterkit_exe) {
        // A scheduled backup follows the cluster (its nodes, host keys, key lines).
        changed |= crate::schedule::refresh(session, &nodes, exe).await?;
    }
    let tail = if changed { "" } else { "; nothing changed" };
    let summary = match only {
        Some(p) => match report.summaries().first() {
            Some(s) => format!("cluster {}: phase {p} done: {s}{tail}", spec.name),
            None => format!("cluster {}: phase {p} done{tail}", spec.name),
        },
        None => format!(
            "cluster {} is up: {}{tail}",
            spec.name,
            report.summaries().join(", ")
        ),
    };
    Ok(UpReport {
        phases: report
            .phases
            .into_iter()
            .map(|(phase, seconds, outcome)| PhaseReport {
                phase,
                seconds,
                outcome,
            })
            .collect(),
        changes: Vec::new(),
        changed,
        summary,
    })
}

/// What `deploy` did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The stack's name.
    pub stack: String,
    /// Whether anything changed.
    pub changed: bool,
    /// The nodes that did not answer (the stack is deployed through the others).
    pub unreachable: Vec<crate::Unreachable>,
}

/// Deploys the compose file `file` as the stack `name` (its file name's
/// stem, lower-cased, when `None`) and waits until every service runs.
/// Nothing is redeployed when nothing changed.
pub async fn deploy(
    session: &Session<'_>,
    file: &Path,
    name: Option<&str>,
) -> Result<DeployReport, OpsError> {
    let name = match name {
        Some(n) => n.to_string(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .ok_or_else(|| {
                OpsError::Refused("the stack file has no name: give one with --name".into())
            })?,
    };
    let connected = session.connect(crate::Reach::Patient).await;
    for u in &connected.unreachable {
        session.notice(Some(&u.node), format!("error: {}", u.error));
    }
    if connected.nodes.is_empty() {
        return Err(OpsError::NoneReachable);
    }
    session.lock(&connected.nodes, "deploy").await?;
    let say = |m: &str| session.notice(None, m);
    let changed = clusterkit_swarm::phase::deploy_file(
        &connected.nodes,
        &session.loaded().built.spec,
        file,
        &name,
        &say,
    )
    .await
    .map_err(|e| OpsError::Refused(e.to_string()))?;
    Ok(DeployReport {
        stack: name,
        changed,
        unreachable: connected.unreachable,
    })
}

#[cfg(test)]
mod tests {

    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;
    use clusterkit_core::transport::Transport;

    use super::*;
    use crate::testkit::{loaded, transports, FACTS};
    use crate::Options;

    fn scripted(n: usize) -> Vec<Scripted> {
        (1..=n)
            .map(|i| {
                let s = Scripted::new(&format!("node{i}"));
                s.on("os_id=", FACTS);
                s.on_stream("flock -n 9", "locked\n");
                s
            })
            .collect()
    }

    #[tokio::test]
    async fn a_blocking_problem_stops_up_after_the_lock_and_the_facts_changing_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = loaded(3, dir.path());
        loaded.state_changed = true;
        let nodes = scripted(3);
        nodes[1].on("os_id=", &FACTS.replace("ports=22 ", "ports=22 2377 "));
        let lines = Lines::to_string();
        let session =
            Session::with_transports(&loaded, Options::default(), &lines, transports(&nodes));
        let e = up(&session, &UpOptions::default()).await.unwrap_err();
        let OpsError::Blocked(b) = e else {
            panic!("{e}")
        };
        assert_eq!(b.nodes, ["node2"]);
        for n in &nodes {
            let asked = n.asked();
            assert_eq!(asked.len(), 2, "{}: {asked:?}", n.node());
            assert!(asked[0].contains("flock -n 9"), "the lock first: {asked:?}");
            assert!(asked[1].contains("os_id="), "then the facts: {asked:?}");
        }
        assert!(
            !loaded.state_path.exists(),
            "a refused run records no address"
        );
        assert!(lines.text().contains("facts"), "{}", lines.text());
        drop(session);
    }

    #[tokio::test]
    async fn each_capabilitys_own_up_runs_the_facts_first_under_its_own_name() {
        // `swarm up`, `storage up`, `wg up`: the engine's facts before the
        // phase, so a blocking problem stops each before it changes anything;
        // the lock says which command holds it.
        for which in ["swarm", "storage", "wg"] {
            let dir = tempfile::tempdir().unwrap();
            let mut loaded = loaded(3, dir.path());
            loaded.state_changed = true;
            let nodes = scripted(3);
            nodes[2].on("os_id=", &FACTS.replace("ports=22 ", "ports=22 7946 "));
            let lines = Lines::to_string();
            let session =
                Session::with_transports(&loaded, Options::default(), &lines, transports(&nodes));
            let e = match which {
                "swarm" => crate::swarm::up(&session).await.map(|_| ()),
                "storage" => crate::storage::up(&session, None).await.map(|_| ()),
                _ => crate::mesh::up(&session, None).await.map(|_| ()),
            }
            .unwrap_err();
            let OpsError::Blocked(b) = e else {
                panic!("{which}: {e}")
            };
            assert_eq!(b.nodes, ["node3"], "{which}");
            for n in &nodes {
                let asked = n.asked();
                assert_eq!(asked.len(), 2, "{which} {}: {asked:?}", n.node());
                assert!(
                    asked[0].contains("flock -n 9")
                        && asked[0].contains(&format!("command={which}'")),
                    "{which}: the lock first, in the command's name: {asked:?}"
                );
                assert!(asked[1].contains("os_id="), "then the facts: {asked:?}");
            }
            assert!(!loaded.state_path.exists(), "{which}: no address recorded");
            drop(session);
        }
    }

    #[tokio::test]
    async fn a_node_without_a_transport_stops_up_before_anything_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let nodes = scripted(2);
        let lines = Lines::to_string();
        let session =
            Session::with_transports(&loaded, Options::default(), &lines, transports(&nodes));
        let e = up(&session, &UpOptions::default()).await.unwrap_err();
        assert!(
            matches!(&e, OpsError::Unreachable(u) if u.len() == 1 && u[0].node == "node3"),
            "{e}"
        );
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        assert!(nodes.iter().all(|n| n.asked().is_empty()));
    }

    #[tokio::test]
    async fn the_cluster_lock_is_held_for_the_session_and_let_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let nodes = scripted(3);
        let lines = Lines::to_string();
        let session =
            Session::with_transports(&loaded, Options::default(), &lines, transports(&nodes));
        let all = session.connect_all().await.unwrap();
        session.lock(&all, "test").await.unwrap();
        session.lock(&all, "test").await.unwrap();
        assert_eq!(
            nodes.iter().map(Scripted::open_streams).sum::<usize>(),
            3,
            "taken once, on every node"
        );
        drop(all);
        drop(session);
        for _ in 0..100 {
            if nodes.iter().all(|n| n.open_streams() == 0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the lock was not let go with the session");
    }

    #[tokio::test]
    async fn deploy_names_a_missing_stack_file_and_deploys_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(3, dir.path());
        let nodes = scripted(3);
        let lines = Lines::to_string();
        let session =
            Session::with_transports(&loaded, Options::default(), &lines, transports(&nodes));
        let missing = dir.path().join("Web-App.yml");
        let e = deploy(&session, &missing, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Web-App.yml"), "{e}");
        for n in &nodes {
            assert!(
                n.asked().iter().all(|a| a.contains("flock -n 9")),
                "only the lock: {:?}",
                n.asked()
            );
        }
    }

    #[test]
    fn phases_read_back_from_their_names() {
        for p in Phase::ALL {
            assert_eq!(p.name().parse::<Phase>().unwrap(), p);
        }
        let e = "mesh2".parse::<Phase>().unwrap_err();
        assert!(
            e.contains("there is no phase `mesh2`: the phases are docker, mesh"),
            "{e}"
        );
        assert_eq!(
            phase_names(&UpOptions {
                only: Some(Phase::Storage),
                ..UpOptions::default()
            }),
            ["facts", "storage"]
        );
    }
}
