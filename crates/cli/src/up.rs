//! `clusterkit up`: the phases built so far, in order, on every node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clusterkit_core::spec::{Loaded, StorageBackend};
use clusterkit_core::transport::facts::{self, Facts};
use clusterkit_core::transport::install::{ensure_docker, DockerAction, DockerSource};
use clusterkit_core::transport::{fan_out, images, Transport};
use clusterkit_wg::UserspaceBinary;

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
}

/// Runs every phase (or `only` one): facts, docker, mesh, swarm, storage,
/// monitoring, stacks. Each is idempotent: a re-run on a converged cluster
/// changes nothing and says so.
pub fn run(loaded: &Loaded, only: Option<Phase>, json: bool, dry_run: bool) -> anyhow::Result<u8> {
    let want = |p: Phase| only.is_none_or(|o| o == p);
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let log = Log::new(json);
        let say = |phase: &str, msg: &str| log.say(phase, msg);
        let spec = &loaded.built.spec;
        let (nodes, failed) = connect(loaded, false).await;
        if !failed.is_empty() {
            for (n, e) in &failed {
                say("ssh", &format!("{n}: {e}"));
            }
            anyhow::bail!("{} node(s) unreachable: nothing was changed", failed.len());
        }
        say("ssh", &format!("connected to {} node(s)", nodes.len()));

        let mut all_facts: BTreeMap<String, Facts> = BTreeMap::new();
        let mut blocking = false;
        for (n, r) in fan_out(&nodes, 16, facts::gather).await {
            let f = r?;
            let t = &spec.node(&n).expect("from the spec").ssh;
            for p in facts::problems(&f, &t.user, t.become_) {
                // Docker missing is what the next phase is for.
                if p.message.starts_with("Docker Engine is not running") {
                    continue;
                }
                blocking |= p.blocking;
                say(
                    "facts",
                    &format!(
                        "{n}: {}: {}",
                        if p.blocking { "error" } else { "warning" },
                        p.message
                    ),
                );
            }
            all_facts.insert(n, f);
        }
        if blocking {
            say(
                "facts",
                "blocking problems: nothing was changed (see `clusterkit check`)",
            );
            return Ok(exit::FAILURE);
        }
        say("facts", "every node is ready");
        log.done("facts");
        if dry_run {
            let all = crate::dryrun::changes(&nodes, spec, &all_facts).await?;
            let wanted: Vec<crate::dryrun::Change> = all
                .into_iter()
                .filter(|c| only.is_none_or(|p| format!("{p:?}").to_lowercase() == c.phase))
                .collect();
            crate::dryrun::print(&wanted, json)?;
            return Ok(exit::OK);
        }

        let mut changed = false;
        if want(Phase::Docker) {
            for (n, r) in fan_out(&nodes, 16, |t| {
                let f = all_facts.get(t.node()).cloned();
                let node = t.node().to_string();
                async move {
                    let progress = move |line: &str| say("docker", &format!("{node}: {line}"));
                    ensure_docker(
                        t,
                        f.as_ref().expect("gathered"),
                        DockerSource::Distribution,
                        &progress,
                    )
                    .await
                }
            })
            .await
            {
                if let DockerAction::Installed(v) = r? {
                    changed = true;
                    say("docker", &format!("{n}: installed Docker Engine {v}"));
                    if let Some(f) = all_facts.get_mut(&n) {
                        f.docker = Some(v);
                    }
                }
            }
            if !changed {
                say("docker", "unchanged");
            }
            log.done("docker");
        }

        if loaded.state_changed {
            loaded.built.state.save(&loaded.state_path)?;
        }
        if want(Phase::Mesh) {
            let bytes = crate::mesh::userspace_binary();
            let binary = bytes.as_deref().map(|b| UserspaceBinary {
                bytes: b,
                arch: std::env::consts::ARCH,
            });
            let report = clusterkit_wg::up(&nodes, &all_facts, spec, binary).await?;
            let mesh_changed: Vec<&String> = report
                .changes
                .iter()
                .filter(|(_, c)| c.any())
                .map(|(n, _)| n)
                .collect();
            say(
                "mesh",
                &if mesh_changed.is_empty() {
                    format!("unchanged; {} pairs answer", report.pairs.len())
                } else {
                    format!(
                        "converged on {}; {} pairs answer",
                        mesh_changed
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        report.pairs.len()
                    )
                },
            );
            changed |= !mesh_changed.is_empty();
            log.done("mesh");
        }

        if want(Phase::Swarm) {
            let c = clusterkit_swarm::up(&nodes, spec).await?;
            changed |= c.any();
            if let Some(n) = &c.initialized {
                say("swarm", &format!("initialised on {n}"));
            }
            for n in &c.joined {
                say("swarm", &format!("{n} joined"));
            }
            if !c.any() {
                say("swarm", "unchanged");
            }
            log.done("swarm");
        }
        let s = clusterkit_swarm::status(&nodes).await?;
        say(
            "swarm",
            &format!(
                "leader {}, {} managers, tolerates {} loss(es)",
                s.leader.as_deref().unwrap_or("none"),
                s.managers.len(),
                s.tolerates
            ),
        );
        let mut storage_line = String::new();
        if spec.storage.backend != StorageBackend::None && want(Phase::Storage) {
            let storage: Vec<Arc<dyn Transport>> = nodes
                .iter()
                .filter(|t| spec.node(t.node()).is_some_and(|n| n.storage))
                .cloned()
                .collect();
            changed |= provide_images(&[(spec.storage.image.clone(), storage)], &|m: &str| {
                say("images", m)
            })
            .await?;
            let c = clusterkit_storage::up(&nodes, spec, &|m: &str| say("storage", m)).await?;
            changed |= c.any();
            if !c.any() {
                say("storage", "unchanged");
            }
            // Health comes from Garage's admin API; MinIO's probe was `up`'s last step.
            let health = if spec.storage.backend == StorageBackend::Garage {
                let st = clusterkit_storage::status(&nodes, spec).await?;
                say(
                    "storage",
                    &format!(
                        "{} on {} node(s), tolerates {} loss(es)",
                        st.health,
                        st.nodes.len(),
                        st.tolerates
                    ),
                );
                st.health
            } else {
                "probed".to_string()
            };
            log.done("storage");
            storage_line = format!(
                ", {:?} storage ({health}) with the `{}` volume driver",
                spec.storage.backend,
                clusterkit_storage::DRIVER
            )
            .to_lowercase();
        }
        let mut monitor_line = String::new();
        if spec.monitoring.enabled && want(Phase::Monitoring) {
            changed |= provide_images(&crate::monitor::monitor_images(&nodes, spec), &|m: &str| {
                say("images", m)
            })
            .await?;
            let c = clusterkit_monitor::up(&nodes, spec, &|m: &str| say("monitor", m)).await?;
            changed |= c.any();
            if !c.any() {
                say("monitor", "unchanged");
            }
            let running = clusterkit_monitor::endpoints(&nodes, spec).await?;
            for e in &running {
                say(
                    "monitor",
                    &format!(
                        "{} on {}: http://{}:{}",
                        e.service, e.node, e.address, e.port
                    ),
                );
            }
            log.done("monitoring");
            monitor_line = format!(
                ", monitoring ({}; `clusterkit monitor open` to browse it)",
                clusterkit_monitor::render::services(spec).join(", ")
            );
        }
        let mut stacks_line = String::new();
        if want(Phase::Stacks) && !spec.stacks.is_empty() {
            for st in &spec.stacks {
                let c = deploy_stack(&nodes, spec, &st.file, &st.name, &|m: &str| say("stacks", m)).await?;
                changed |= c;
                if !c {
                    say("stacks", &format!("{} unchanged", st.name));
                }
            }
            log.done("stacks");
            stacks_line = format!(
                ", stack(s) {}",
                spec.stacks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        let summary = if let Some(p) = only {
            format!(
                "cluster {}: phase {p:?} done{}",
                spec.name,
                if changed { "" } else { "; nothing changed" }
            )
        } else {
            format!(
                "cluster {} is up: mesh {}, a swarm of {} manager(s){storage_line}{monitor_line}{stacks_line}{}",
                spec.name,
                spec.mesh.cidr,
                s.managers.len(),
                if changed { "" } else { "; nothing changed" }
            )
        };
        log.finish(&summary, changed);
        Ok(exit::OK)
    })
}

/// Sends each image from this machine's engine to the nodes (of its list)
/// that lack it, when this machine has it; nodes that still lack an image
/// pull it themselves in the phase that needs it. Returns whether it sent any.
pub async fn provide_images(
    needs: &[(String, Vec<Arc<dyn Transport>>)],
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<bool> {
    // What each node lacks, of the images this machine has.
    let mut send: Vec<(String, Vec<String>)> = Vec::new();
    let mut targets: Vec<Arc<dyn Transport>> = Vec::new();
    for (image, on) in needs {
        let wanted = [image.clone()];
        let mut lacking = Vec::new();
        for (n, r) in fan_out(on, 16, |t| images::missing(t, &wanted)).await {
            if !r?.is_empty() {
                lacking.push(n);
            }
        }
        if lacking.is_empty() {
            continue;
        }
        let here = std::process::Command::new("docker")
            .args(["image", "inspect", "-f", ".", image])
            .output()
            .is_ok_and(|o| o.status.success());
        if !here {
            continue;
        }
        say(&format!(
            "{image} missing on {}: sending it from this machine",
            lacking.join(", ")
        ));
        for t in on.iter().filter(|t| lacking.iter().any(|n| n == t.node())) {
            if !targets.iter().any(|x| x.node() == t.node()) {
                targets.push(Arc::clone(t));
            }
        }
        send.push((image.clone(), lacking));
    }
    if send.is_empty() {
        return Ok(false);
    }
    // One archive for them all (layers shared between images travel once),
    // loaded once per node.
    let all: Vec<String> = send.iter().map(|(i, _)| i.clone()).collect();
    let archive = crate::remote::save_images(&all)?;
    let send = &send;
    let archive = &archive;
    for (n, r) in fan_out(&targets, 4, |t| async move {
        let mine: Vec<String> = send
            .iter()
            .filter(|(_, on)| on.iter().any(|n| n == t.node()))
            .map(|(i, _)| i.clone())
            .collect();
        images::push(t, archive, &mine).await
    })
    .await
    {
        let loaded = r?;
        if !loaded.is_empty() {
            say(&format!("{n}: loaded {}", loaded.join(", ")));
        }
    }
    Ok(true)
}

/// Checks a stack file, sends the images this machine has to the nodes that
/// lack them, deploys it and waits until it runs. Returns whether it deployed.
pub async fn deploy_stack(
    nodes: &[Arc<dyn Transport>],
    spec: &clusterkit_core::ClusterSpec,
    file: &std::path::Path,
    name: &str,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the stack file {}", file.display()))?;
    let stack = clusterkit_swarm::stacks::inspect(name, &file.display().to_string(), &text)?;
    for w in &stack.warnings {
        say(&format!("{name}: warning: {w}"));
    }
    let needs: Vec<(String, Vec<Arc<dyn Transport>>)> = stack
        .images
        .iter()
        .map(|i| (i.clone(), nodes.to_vec()))
        .collect();
    let sent = provide_images(&needs, say).await?;
    let deployed = clusterkit_swarm::stacks::deploy(nodes, spec, &stack, say).await?;
    if deployed {
        say(&format!(
            "{name}: {} service(s) running",
            stack.services.len()
        ));
    }
    Ok(deployed || sent)
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
        let start = Instant::now();
        let say = |m: &str| eprintln!("[{:>6.1}s] {m}", start.elapsed().as_secs_f64());
        let changed = deploy_stack(&nodes, &loaded.built.spec, file, &name, &say).await?;
        println!(
            "stack {name} runs on cluster {}{}",
            loaded.built.spec.name,
            if changed { "" } else { "; nothing changed" }
        );
        Ok(exit::OK)
    })
}

/// `up`'s output: one line per step on stderr (time since start, phase,
/// message) and the summary on stdout; with `--json`, one JSON object per
/// line on stdout instead: `{"event":"step",...}`, `{"event":"phase",
/// "phase":..,"seconds":..}` when a phase ends, `{"event":"done",...}`.
struct Log {
    start: Instant,
    json: bool,
    phase_start: std::sync::Mutex<Instant>,
}

impl Log {
    fn new(json: bool) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            json,
            phase_start: std::sync::Mutex::new(now),
        }
    }

    fn say(&self, phase: &str, msg: &str) {
        let t = self.start.elapsed().as_secs_f64();
        if self.json {
            println!(
                "{}",
                serde_json::json!({"event": "step", "t": (t * 1000.0).round() / 1000.0, "phase": phase, "message": msg})
            );
        } else {
            eprintln!("[{t:>6.1}s] {phase:<6} {msg}");
        }
    }

    fn done(&self, phase: &str) {
        let mut since = self.phase_start.lock().unwrap_or_else(|e| e.into_inner());
        let secs = since.elapsed().as_secs_f64();
        *since = Instant::now();
        if self.json {
            println!(
                "{}",
                serde_json::json!({"event": "phase", "phase": phase, "seconds": (secs * 1000.0).round() / 1000.0})
            );
        }
    }

    fn finish(&self, summary: &str, changed: bool) {
        if self.json {
            println!(
                "{}",
                serde_json::json!({"event": "done", "changed": changed, "seconds": self.start.elapsed().as_secs_f64(), "summary": summary})
            );
        } else {
            println!("{summary}");
        }
    }
}
