//! `clusterkit up` (the engine of clusterkit-core over every capability's
//! phase) and `clusterkit deploy`.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Context as _;
use clusterkit_core::engine::{
    Blocked, Context, DockerPhase, Engine, EngineError, FactsPhase, Lines,
};
use clusterkit_core::spec::Loaded;
use clusterkit_monitor::phase::MonitoringPhase;
use clusterkit_storage::phase::StoragePhase;
use clusterkit_swarm::phase::{RebalancePhase, StacksPhase, SwarmPhase};
use clusterkit_wg::phase::MeshPhase;

use crate::progress::{Json, Live, Progress};

use crate::exit;
use crate::remote::connect;

/// The phases of `up`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
    /// The application stacks listed under [[stacks]].
    Stacks,
    /// Replicated services spread over the ready nodes again.
    Rebalance,
}

/// How `up` shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// The live table on a terminal, log lines otherwise.
    Auto,
    /// A table (one row per node, one column per phase) redrawn in place.
    Live,
    /// One line per step.
    Plain,
}

/// Every phase `up` knows, in order (rebalancing last, unless left out).
pub fn engine(rebalance: bool) -> Engine {
    let userspace = crate::mesh::userspace_binary();
    let mut phases: Vec<Box<dyn clusterkit_core::engine::Phase>> = vec![
        Box::new(FactsPhase),
        Box::new(DockerPhase),
        Box::new(MeshPhase {
            userspace,
            arch: std::env::consts::ARCH,
        }),
        Box::new(SwarmPhase),
        Box::new(StoragePhase),
        Box::new(MonitoringPhase),
        Box::new(StacksPhase),
    ];
    if rebalance {
        phases.push(Box::new(RebalancePhase));
    }
    Engine::new(phases)
}

/// Runs every phase (or `only` one) through the engine of clusterkit-core:
/// facts, docker, mesh, swarm, storage, monitoring, stacks. Each is
/// idempotent: a re-run on a converged cluster changes nothing and says so.
pub fn run(
    loaded: &Loaded,
    only: Option<Phase>,
    json: bool,
    dry_run: bool,
    progress: ProgressMode,
    rebalance: bool,
) -> anyhow::Result<u8> {
    let only = only.map(|p| match p {
        Phase::Docker => "docker",
        Phase::Mesh => "mesh",
        Phase::Swarm => "swarm",
        Phase::Storage => "storage",
        Phase::Monitoring => "monitoring",
        Phase::Stacks => "stacks",
        Phase::Rebalance => "rebalance",
    });
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let spec = &loaded.built.spec;
        let engine = engine(rebalance || only == Some("rebalance"));
        let (nodes, failed) = connect(loaded, false).await;
        if !failed.is_empty() {
            for (n, e) in &failed {
                eprintln!("{n}: {e}");
            }
            anyhow::bail!("{} node(s) unreachable: nothing was changed", failed.len());
        }
        if dry_run {
            let lines = Lines::stderr();
            let cx = Context::new(&nodes, spec, &lines);
            let changes = engine.check(&cx, only).await?;
            crate::dryrun::print(&changes, json)?;
            return Ok(exit::OK);
        }
        let _lock = crate::remote::lock_cluster(loaded, &nodes, "up").await?;
        let names: Vec<String> = nodes.iter().map(|t| t.node().to_string()).collect();
        let phases: Vec<&'static str> = engine
            .names()
            .into_iter()
            .filter(|p| only.is_none_or(|o| o == *p || *p == "facts"))
            .collect();
        let live = match progress {
            ProgressMode::Live => true,
            ProgressMode::Plain => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        let reporter = if json {
            Progress::Json(Json::new())
        } else if live {
            Progress::Live(Live::start(
                format!("clusterkit up · cluster {}", spec.name),
                &names,
                phases,
            ))
        } else {
            Progress::Lines(Lines::stderr())
        };
        let cx = Context::new(&nodes, spec, &reporter);
        // The addresses allocated are recorded once the facts (the address
        // plan among them) allow going on: a refused run leaves no trace.
        let save = |phase: &str| -> Result<(), clusterkit_core::engine::BoxError> {
            if phase == "facts" && loaded.state_changed {
                loaded.built.state.save(&loaded.state_path)?;
            }
            Ok(())
        };
        let result = engine.apply_then(&cx, only, &save).await;
        if result.is_ok() && only.is_none_or(|o| o == "docker") {
            record_engine(loaded, &cx.facts())?;
        }
        drop(cx);
        let json_out = reporter.finish();
        let report = match result {
            Ok(r) => r,
            Err(EngineError::Phase {
                phase: "facts",
                source,
            }) if source.is::<Blocked>() => {
                eprintln!("{source}");
                return Ok(exit::FAILURE);
            }
            Err(e) => return Err(e.into()),
        };
        let mut changed = report.changed();
        if only.is_none() {
            // A scheduled backup follows the cluster (its nodes, host keys, key lines).
            let start = Instant::now();
            let said = std::sync::atomic::AtomicBool::new(false);
            let say = |m: &str| {
                said.store(true, std::sync::atomic::Ordering::Relaxed);
                eprintln!("[{:>6.1}s] {m}", start.elapsed().as_secs_f64());
            };
            crate::schedule::refresh(&nodes, loaded, &say).await?;
            changed |= said.load(std::sync::atomic::Ordering::Relaxed);
        }
        let tail = if changed { "" } else { "; nothing changed" };
        let summary = match only {
            Some(p) => format!("cluster {}: phase {p} done{tail}", spec.name),
            None => format!(
                "cluster {} is up: {}{tail}",
                spec.name,
                report.summaries().join(", ")
            ),
        };
        match json_out {
            Some(j) => j.done(changed, &summary),
            None => println!("{summary}"),
        }
        Ok(exit::OK)
    })
}

/// Records the `docker.io` version every node runs, when they agree: the
/// engine's pin from then on while `[swarm] engine_version` is not set.
pub fn record_engine(
    loaded: &Loaded,
    facts: &std::collections::BTreeMap<String, clusterkit_core::transport::facts::Facts>,
) -> anyhow::Result<()> {
    use clusterkit_core::engine::{engine_agreement, EngineAgreement};
    if let EngineAgreement::Same(v) = engine_agreement(facts) {
        // The state as saved (the facts phase may have written it).
        clusterkit_core::state::State::record_engine(&loaded.state_path, &v)?;
    }
    Ok(())
}

/// `clusterkit deploy FILE [--name NAME]`.
pub fn deploy_file(
    loaded: &Loaded,
    file: &std::path::Path,
    name: Option<&str>,
) -> anyhow::Result<u8> {
    let name = match name {
        Some(n) => n.to_string(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .context("the stack file has no name: give one with --name")?,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let (nodes, failed) = connect(loaded, false).await;
        for (n, e) in &failed {
            eprintln!("{n}: error: {e}");
        }
        if nodes.is_empty() {
            anyhow::bail!("no node is reachable: nothing was deployed");
        }
        let _lock = crate::remote::lock_cluster(loaded, &nodes, "deploy").await?;
        let start = Instant::now();
        let say = |m: &str| eprintln!("[{:>6.1}s] {m}", start.elapsed().as_secs_f64());
        let changed =
            clusterkit_swarm::phase::deploy_file(&nodes, &loaded.built.spec, file, &name, &say)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "stack {name} runs on cluster {}{}",
            loaded.built.spec.name,
            if changed { "" } else { "; nothing changed" }
        );
        Ok(exit::OK)
    })
}
