//! The plan/apply engine: a cluster is built by [`Phase`]s run in order
//! (facts, docker, mesh, swarm, storage, monitoring, stacks). Each phase knows
//! how to *check* (read-only: what it would change, as [`Change`]s with file
//! diffs) and how to *apply* (converge, every node at once inside the phase,
//! and say what changed as an [`Outcome`]). Applying a converged cluster
//! changes nothing and says so; a run stopped anywhere is completed by the
//! next one, because every phase starts from what the nodes hold.
//!
//! The engine reports as it goes through a [`Reporter`]: a phase starting, a
//! step (attributed to a node when it names one), a phase done with its time
//! and the nodes it changed, a phase failed. The CLI turns these into a live
//! table on a terminal, log lines, or a JSON event stream.
//!
//! Capability crates implement [`Phase`] for their layer (`clusterkit-wg`'s
//! mesh, `clusterkit-swarm`'s swarm and stacks, ...); [`FactsPhase`] and
//! [`DockerPhase`] live here.
//!
//! ```
//! use clusterkit_core::engine::{Context, Engine, Lines, Outcome, Phase, Change, BoxError};
//! struct Hello;
//! #[async_trait::async_trait]
//! impl Phase for Hello {
//!     fn name(&self) -> &'static str { "hello" }
//!     async fn check(&self, _cx: &Context<'_>) -> Result<Vec<Change>, BoxError> { Ok(vec![]) }
//!     async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
//!         cx.say("nothing to do");
//!         Ok(Outcome::default())
//!     }
//! }
//! # let spec = clusterkit_core::spec::build(None, Some(&clusterkit_core::inventory::Inventory::parse(
//! #     clusterkit_core::source::SourceFile::new("h.ini", "[s]\nn1 ansible_host=192.0.2.1\n"),
//! #     clusterkit_core::inventory::Format::Ini, &mut Default::default())),
//! #     &Default::default(), &|_| None).unwrap().spec;
//! let engine = Engine::new(vec![Box::new(Hello)]);
//! let reporter = Lines::to_string();
//! let cx = Context::new(&[], &spec, &reporter);
//! let report = tokio::runtime::Runtime::new().unwrap().block_on(engine.apply(&cx, None)).unwrap();
//! assert!(!report.changed());
//! assert!(reporter.text().contains("hello      nothing to do"));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::spec::ClusterSpec;
use crate::transport::facts::{self, Facts};
use crate::transport::install::{
    ensure_docker_pinned, installed_engine_package, DockerAction, DockerSource,
};
use crate::transport::{fan_out, Cmd, Transport};

/// Any phase's error: each capability crate has its own error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One thing a phase would change (`up --dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// A dry run's changes as text: a line per change (`PHASE NODE: WHAT`), its
/// diff indented below, then the count ("nothing would change" when none).
#[derive(Debug, Clone, Copy)]
pub struct ChangeList<'a>(pub &'a [Change]);

impl std::fmt::Display for ChangeList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0 {
            let node = c.node.as_deref().map(|n| format!("{n}: "));
            writeln!(f, "{:<10} {}{}", c.phase, node.unwrap_or_default(), c.what)?;
            for l in c.diff.iter().flat_map(|d| d.lines()) {
                writeln!(f, "           {l}")?;
            }
        }
        match self.0.len() {
            0 => writeln!(f, "nothing would change"),
            n => writeln!(f, "{n} change(s) would be made; nothing was changed"),
        }
    }
}

/// What a phase did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The nodes it changed something on.
    pub nodes: BTreeSet<String>,
    /// It changed something that belongs to no one node (a stack, a layout).
    pub cluster: bool,
    /// What the cluster looks like after it, for the run's summary
    /// (`a swarm of 3 manager(s)`); empty when the phase has nothing to add.
    pub summary: Option<String>,
}

impl Outcome {
    /// Whether the phase changed anything.
    pub fn changed(&self) -> bool {
        self.cluster || !self.nodes.is_empty()
    }

    /// Records a change on `node`.
    pub fn node(&mut self, node: impl Into<String>) {
        self.nodes.insert(node.into());
    }
}

/// What the engine reports while it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase began.
    PhaseStarted {
        /// Its name.
        phase: &'static str,
    },
    /// A phase's progress message.
    Step {
        /// The phase.
        phase: &'static str,
        /// The node it is about, when the message names one.
        node: Option<String>,
        /// The message (without the node's name).
        message: String,
    },
    /// A phase ended well.
    PhaseDone {
        /// The phase.
        phase: &'static str,
        /// How long it took.
        seconds: f64,
        /// What it did.
        outcome: Outcome,
    },
    /// A phase failed: the run stops there.
    PhaseFailed {
        /// The phase.
        phase: &'static str,
        /// The error, with its fix.
        error: String,
    },
    /// Something an operation (not a phase) says: a host key recorded at
    /// first contact, a lock another run holds, a step of a backup.
    Notice {
        /// The node it is about, when the message names one.
        node: Option<String>,
        /// The message (without the node's name).
        message: String,
    },
}

/// Receives the engine's events. Implementations must be cheap: they are
/// called from inside the phases.
pub trait Reporter: Send + Sync {
    /// One event.
    fn event(&self, e: &Event);
}

/// A [`Reporter`] writing one line per event, `[  12.3s] phase      message`,
/// to stderr or to a string (tests).
pub struct Lines {
    start: Instant,
    buffer: Option<Mutex<String>>,
}

impl Lines {
    /// Lines on stderr.
    pub fn stderr() -> Self {
        Self {
            start: Instant::now(),
            buffer: None,
        }
    }

    /// Lines kept in memory; read them with [`Lines::text`].
    #[allow(clippy::should_implement_trait)]
    pub fn to_string() -> Self {
        Self {
            start: Instant::now(),
            buffer: Some(Mutex::new(String::new())),
        }
    }

    /// What was written, when kept in memory.
    pub fn text(&self) -> String {
        self.buffer
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The line an event prints as, if any (`elapsed` in seconds).
    pub fn line(e: &Event, elapsed: f64) -> Option<String> {
        let body = match e {
            Event::PhaseStarted { .. } => return None,
            Event::Step {
                phase,
                node,
                message,
            } => format!(
                "{phase:<10} {}{message}",
                node.as_deref()
                    .map(|n| format!("{n}: "))
                    .unwrap_or_default()
            ),
            Event::PhaseDone {
                phase,
                seconds,
                outcome,
            } => format!(
                "{phase:<10} {} in {seconds:.1}s",
                if outcome.changed() {
                    let mut what: Vec<&str> = outcome.nodes.iter().map(|s| s.as_str()).collect();
                    if outcome.cluster {
                        what.push("the cluster");
                    }
                    format!("changed {}", what.join(", "))
                } else {
                    "unchanged".to_string()
                }
            ),
            Event::PhaseFailed { phase, error } => format!("{phase:<10} FAILED: {error}"),
            Event::Notice { node, message } => format!(
                "{}{message}",
                node.as_deref()
                    .map(|n| format!("{n}: "))
                    .unwrap_or_default()
            ),
        };
        Some(format!("[{elapsed:>6.1}s] {body}"))
    }
}

impl Reporter for Lines {
    fn event(&self, e: &Event) {
        let Some(line) = Self::line(e, self.start.elapsed().as_secs_f64()) else {
            return;
        };
        match &self.buffer {
            Some(b) => {
                let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
                b.push_str(&line);
                b.push('\n');
            }
            None => eprintln!("{line}"),
        }
    }
}

/// What phases share: the connected nodes, the spec, the facts gathered
/// first, and where to report.
pub struct Context<'a> {
    /// The connected nodes.
    pub nodes: &'a [Arc<dyn Transport>],
    /// The cluster wanted.
    pub spec: &'a ClusterSpec,
    facts: Mutex<BTreeMap<String, Facts>>,
    reporter: &'a dyn Reporter,
    phase: Mutex<&'static str>,
}

impl<'a> Context<'a> {
    /// A context for a run over `nodes`.
    pub fn new(
        nodes: &'a [Arc<dyn Transport>],
        spec: &'a ClusterSpec,
        reporter: &'a dyn Reporter,
    ) -> Self {
        Self {
            nodes,
            spec,
            facts: Mutex::new(BTreeMap::new()),
            reporter,
            phase: Mutex::new("-"),
        }
    }

    /// The first connected manager: stacks, secrets and the swarm's view
    /// go through it.
    pub fn manager(&self) -> Option<&'a Arc<dyn Transport>> {
        crate::stack::managers(self.nodes, self.spec)
            .into_iter()
            .next()
    }

    /// The facts gathered so far (by [`FactsPhase`], kept current by later phases).
    pub fn facts(&self) -> BTreeMap<String, Facts> {
        self.facts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a node's facts.
    pub fn set_facts(&self, node: &str, f: Facts) {
        self.facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string(), f);
    }

    /// Reports a step of the current phase. A message that starts with a
    /// node's name and `: ` is attributed to that node (the capability
    /// crates' progress callbacks speak that way).
    pub fn say(&self, message: &str) {
        let node = self
            .nodes
            .iter()
            .map(|t| t.node())
            .chain(self.spec.nodes.iter().map(|n| n.name.as_str()))
            .find(|n| {
                message
                    .strip_prefix(n)
                    .is_some_and(|rest| rest.starts_with(": "))
            });
        match node {
            Some(n) => self.say_on(n, &message[n.len() + 2..]),
            None => self.event(Event::Step {
                phase: self.phase(),
                node: None,
                message: message.to_string(),
            }),
        }
    }

    /// Reports a step of the current phase on `node`.
    pub fn say_on(&self, node: &str, message: &str) {
        self.event(Event::Step {
            phase: self.phase(),
            node: Some(node.to_string()),
            message: message.to_string(),
        });
    }

    /// The phase running.
    pub fn phase(&self) -> &'static str {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn event(&self, e: Event) {
        self.reporter.event(&e);
    }

    fn enter(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }
}

/// One layer of the cluster.
#[async_trait::async_trait]
pub trait Phase: Send + Sync {
    /// Its name (`mesh`), as `--only` takes it.
    fn name(&self) -> &'static str;

    /// Whether the spec asks for it at all (storage `none`: no storage phase).
    fn enabled(&self, _spec: &ClusterSpec) -> bool {
        true
    }

    /// Runs even under `--only` (facts every later phase needs).
    fn always(&self) -> bool {
        false
    }

    /// What applying would change, found with read-only commands.
    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError>;

    /// Converges the layer; idempotent.
    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError>;

    /// The images this layer's services run, each with the nodes that run
    /// it: what [`Phase::apply`] sends to the nodes that lack them, and what
    /// a restore sends before the swarm it brings back starts any service.
    async fn images(&self, _cx: &Context<'_>) -> Result<Vec<ImageNeed>, BoxError> {
        Ok(Vec::new())
    }
}

/// An image and the nodes that run it.
pub type ImageNeed = (String, Vec<std::sync::Arc<dyn Transport>>);

/// A run's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Each phase run: name, seconds, outcome.
    pub phases: Vec<(&'static str, f64, Outcome)>,
}

impl Report {
    /// Whether any phase changed anything.
    pub fn changed(&self) -> bool {
        self.phases.iter().any(|(_, _, o)| o.changed())
    }

    /// The phases' summaries, in order.
    pub fn summaries(&self) -> Vec<&str> {
        self.phases
            .iter()
            .filter_map(|(_, _, o)| o.summary.as_deref())
            .collect()
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `--only` named no phase.
    #[error("there is no phase `{given}`: the phases are {}", known.join(", "))]
    UnknownPhase {
        /// What was given.
        given: String,
        /// The phases.
        known: Vec<&'static str>,
    },
    /// A phase failed.
    #[error("phase {phase} failed: {source}\n  what the phases before it did is kept; fix the cause and run `clusterkit up` again (it resumes: finished work is checked, not redone), or `clusterkit up --only {phase}`")]
    Phase {
        /// The phase.
        phase: &'static str,
        /// Its error.
        source: BoxError,
    },
}

/// The phases, in order.
pub struct Engine {
    phases: Vec<Box<dyn Phase>>,
}

impl Engine {
    /// An engine running `phases` in this order.
    pub fn new(phases: Vec<Box<dyn Phase>>) -> Self {
        Self { phases }
    }

    /// The phases' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.phases.iter().map(|p| p.name()).collect()
    }

    fn selected<'p>(
        &'p self,
        spec: &ClusterSpec,
        only: Option<&str>,
    ) -> Result<Vec<&'p dyn Phase>, EngineError> {
        if let Some(o) = only {
            if !self.phases.iter().any(|p| p.name() == o) {
                return Err(EngineError::UnknownPhase {
                    given: o.to_string(),
                    known: self.names(),
                });
            }
        }
        Ok(self
            .phases
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.enabled(spec) && (p.always() || only.is_none_or(|o| o == p.name())))
            .collect())
    }

    /// Every change the selected phases would make. A phase marked
    /// [`Phase::always`] (facts) runs its check for the others' sake.
    pub async fn check(
        &self,
        cx: &Context<'_>,
        only: Option<&str>,
    ) -> Result<Vec<Change>, EngineError> {
        let mut out = Vec::new();
        for p in self.selected(cx.spec, only)? {
            cx.enter(p.name());
            let changes = p.check(cx).await.map_err(|source| EngineError::Phase {
                phase: p.name(),
                source,
            })?;
            out.extend(changes);
        }
        Ok(out)
    }

    /// The images of every phase the spec enables ([`Phase::images`]), in
    /// phase order.
    pub async fn images(&self, cx: &Context<'_>) -> Result<Vec<ImageNeed>, EngineError> {
        let mut out = Vec::new();
        for p in self.selected(cx.spec, None)? {
            out.extend(p.images(cx).await.map_err(|source| EngineError::Phase {
                phase: p.name(),
                source,
            })?);
        }
        Ok(out)
    }

    /// Applies the selected phases in order; stops at the first failure.
    pub async fn apply(&self, cx: &Context<'_>, only: Option<&str>) -> Result<Report, EngineError> {
        self.apply_then(cx, only, &|_| Ok(())).await
    }

    /// [`Engine::apply`], calling `after` when each phase has succeeded (the
    /// CLI records its local state once the facts allow going on); an error
    /// from `after` stops the run as the phase's own would.
    pub async fn apply_then(
        &self,
        cx: &Context<'_>,
        only: Option<&str>,
        after: &(dyn Fn(&'static str) -> Result<(), BoxError> + Sync),
    ) -> Result<Report, EngineError> {
        let mut report = Report::default();
        for p in self.selected(cx.spec, only)? {
            let phase = p.name();
            cx.enter(phase);
            cx.event(Event::PhaseStarted { phase });
            let start = Instant::now();
            match p.apply(cx).await.and_then(|o| after(phase).map(|()| o)) {
                Ok(outcome) => {
                    let seconds = start.elapsed().as_secs_f64();
                    cx.event(Event::PhaseDone {
                        phase,
                        seconds,
                        outcome: outcome.clone(),
                    });
                    report.phases.push((phase, seconds, outcome));
                }
                Err(source) => {
                    cx.event(Event::PhaseFailed {
                        phase,
                        error: source.to_string(),
                    });
                    return Err(EngineError::Phase { phase, source });
                }
            }
        }
        Ok(report)
    }
}

/// A file's content on a node, `None` when it does not exist.
pub async fn read_file(t: &dyn Transport, path: &str) -> Result<Option<String>, BoxError> {
    let out = t
        .exec_raw(&Cmd::new("cat ").arg(path).push(" 2>/dev/null"), None)
        .await?;
    Ok((out.status == 0).then(|| out.stdout_str()))
}

/// A unified diff from the file on the node to the one wanted.
pub fn file_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("{path} (on the node)"),
            &format!("{path} (wanted)"),
        )
        .to_string()
}

/// Compares `files` (name, content) with those in `dir` on `t`: one change
/// per file that differs (with its diff) or is missing. `then` says what
/// follows a change (`redeploy`, `sync the live peers`).
pub async fn compare_files(
    t: &dyn Transport,
    phase: &'static str,
    dir: &str,
    files: &[(String, String)],
    then: &str,
) -> Result<Vec<Change>, BoxError> {
    let mut out = Vec::new();
    for (name, wanted) in files {
        let path = format!("{dir}/{name}");
        match read_file(t, &path).await? {
            Some(now) if &now == wanted => {}
            Some(now) => out.push(Change {
                phase,
                node: Some(t.node().into()),
                what: format!("would update {path} and {then}"),
                diff: Some(file_diff(&path, &now, wanted)),
            }),
            None => out.push(Change {
                phase,
                node: Some(t.node().into()),
                what: format!(
                    "would write {path} and {}",
                    if then == "redeploy" { "deploy" } else { then }
                ),
                diff: None,
            }),
        }
    }
    Ok(out)
}

/// A problem with the nodes that stops the run before anything changes.
#[derive(Debug, thiserror::Error)]
#[error("blocking problems on {}: nothing was changed (`clusterkit check` lists them with their fixes)", nodes.join(", "))]
pub struct Blocked {
    /// The nodes with a blocking problem.
    pub nodes: Vec<String>,
}

/// Gathers every node's facts (one round trip each) and refuses to go on
/// when one has a blocking problem. Docker missing is not one: that is what
/// [`DockerPhase`] is for.
pub struct FactsPhase;

impl FactsPhase {
    async fn gather(cx: &Context<'_>) -> Result<(), BoxError> {
        let mut blocked = Vec::new();
        for (n, r) in fan_out(cx.nodes, 16, facts::gather).await {
            let f = r?;
            let Some(node) = cx.spec.node(&n) else {
                continue;
            };
            for p in facts::judge(&f, node, cx.spec) {
                if p.message.starts_with("Docker Engine is not running") {
                    continue;
                }
                if p.blocking && !blocked.contains(&n) {
                    blocked.push(n.clone());
                }
                cx.say_on(
                    &n,
                    &format!(
                        "{}: {}",
                        if p.blocking { "error" } else { "warning" },
                        p.message
                    ),
                );
            }
            cx.set_facts(&n, f);
        }
        if !blocked.is_empty() {
            return Err(Box::new(Blocked { nodes: blocked }));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Phase for FactsPhase {
    fn name(&self) -> &'static str {
        "facts"
    }

    fn always(&self) -> bool {
        true
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        Self::gather(cx).await?;
        Ok(Vec::new())
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        Self::gather(cx).await?;
        Ok(Outcome::default())
    }
}

/// What the nodes' `docker.io` packages have in common.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineAgreement {
    /// No node has the package (none runs Docker, or it came from elsewhere).
    Absent,
    /// Every node that has the package has this version.
    Same(String),
    /// The nodes differ: each node with its version.
    Differ(Vec<(String, String)>),
}

/// Compares the `docker.io` versions in `facts` (nodes without the package
/// are left out: an engine from elsewhere is not pinned through it).
pub fn engine_agreement(facts: &BTreeMap<String, Facts>) -> EngineAgreement {
    let with: Vec<(String, String)> = facts
        .iter()
        .filter_map(|(n, f)| f.docker_package.clone().map(|v| (n.clone(), v)))
        .collect();
    match with.first() {
        None => EngineAgreement::Absent,
        Some((_, v)) if with.iter().all(|(_, w)| w == v) => EngineAgreement::Same(v.clone()),
        Some(_) => EngineAgreement::Differ(with),
    }
}

/// The engine version every node is kept at: `[swarm] engine_version`, else
/// the one the nodes run together, else the one they last ran together
/// ([`crate::spec::SwarmSpec::engine_recorded`]).
pub fn engine_pin(spec: &ClusterSpec, facts: &BTreeMap<String, Facts>) -> Option<String> {
    spec.swarm
        .engine_version
        .clone()
        .or_else(|| match engine_agreement(facts) {
            EngineAgreement::Same(v) if crate::spec::package_version(&v).is_ok() => Some(v),
            _ => None,
        })
        .or_else(|| spec.swarm.engine_recorded.clone())
}

/// Holds `docker.io` (apt leaves its version until a roll changes it).
const HOLD_ENGINE: &str = "apt-mark hold docker.io >/dev/null";

/// Docker Engine on every node, from the distribution's packages, at one
/// version and held: the spec's `engine_version`, else the version the
/// nodes already run together (a node added later gets the same engine).
pub struct DockerPhase;

#[async_trait::async_trait]
impl Phase for DockerPhase {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let facts = cx.facts();
        let pin = engine_pin(cx.spec, &facts);
        Ok(facts
            .into_iter()
            .filter_map(|(n, f)| {
                let what = match (&pin, &f.docker, &f.docker_package) {
                    (Some(v), None, _) => format!(
                        "would install Docker Engine {v} from the distribution's packages (held)"
                    ),
                    (None, None, _) => {
                        "would install Docker Engine from the distribution's packages".into()
                    }
                    (Some(v), Some(_), Some(p)) if p == v && !f.docker_held => {
                        format!("would hold docker.io {v}, the cluster's engine (apt leaves it)")
                    }
                    _ => return None,
                };
                Some(Change {
                    phase: "docker",
                    node: Some(n),
                    what,
                    diff: None,
                })
            })
            .collect())
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        let all = cx.facts();
        let version = engine_pin(cx.spec, &all);
        let mut out = Outcome::default();
        for (n, r) in fan_out(cx.nodes, 16, |t| {
            let f = all.get(t.node()).cloned();
            let version = version.as_deref();
            async move {
                let node = t.node().to_string();
                let progress = |line: &str| cx.say_on(&node, line);
                let Some(f) = f else { return Ok(None) };
                let action =
                    ensure_docker_pinned(t, &f, DockerSource::Distribution, version, &progress)
                        .await?;
                let package = match action {
                    DockerAction::Installed(_) => installed_engine_package(t).await?,
                    DockerAction::Present(_) => f.docker_package.clone(),
                };
                Ok::<_, BoxError>(Some((action, package)))
            }
        })
        .await
        {
            if let Some((DockerAction::Installed(v), package)) = r? {
                cx.say_on(&n, &format!("installed Docker Engine {v}"));
                if let Some(mut f) = all.get(&n).cloned() {
                    f.docker = Some(v);
                    f.docker_held = version.is_some();
                    f.docker_package = package;
                    cx.set_facts(&n, f);
                }
                out.node(n);
            }
        }
        // Every node on one version (pinned, or as it came): held there.
        let now = cx.facts();
        let mut notes = Vec::new();
        if let Some(v) = engine_pin(cx.spec, &now) {
            let unheld: Vec<Arc<dyn Transport>> = cx
                .nodes
                .iter()
                .filter(|t| {
                    now.get(t.node()).is_some_and(|f| {
                        f.docker_package.as_deref() == Some(v.as_str()) && !f.docker_held
                    })
                })
                .cloned()
                .collect();
            for (n, r) in fan_out(&unheld, 16, |t| async move {
                t.exec(&Cmd::new(HOLD_ENGINE)).await
            })
            .await
            {
                r?;
                if let Some(mut f) = now.get(&n).cloned() {
                    f.docker_held = true;
                    cx.set_facts(&n, f);
                }
                out.node(n);
            }
            if !unheld.is_empty() {
                cx.say(&format!(
                    "docker.io {v} held on {} (the cluster's engine: `[swarm] engine_version` and \
                     `clusterkit upgrade --component docker` change it)",
                    unheld
                        .iter()
                        .map(|t| t.node())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            // A running engine is never replaced here (every node at once):
            // a pinned version it does not match is said, and left to the roll.
            let behind: Vec<&str> = now
                .iter()
                .filter(|(_, f)| f.docker.is_some() && f.docker_package.as_deref() != Some(&v))
                .map(|(n, _)| n.as_str())
                .collect();
            if !behind.is_empty() {
                let what = if cx.spec.swarm.engine_version.is_some() {
                    format!("engine_version {v}")
                } else {
                    format!("{v}, the version the nodes last ran together")
                };
                notes.push(format!(
                    "docker.io on {} is not {what}: `clusterkit upgrade --component docker` rolls it",
                    behind.join(", ")
                ));
            }
        } else if let EngineAgreement::Differ(versions) = engine_agreement(&now) {
            notes.push(format!(
                "docker.io differs between nodes ({}): set `engine_version` under [swarm] to one of them, \
                 then `clusterkit upgrade --component docker` rolls the others to it",
                versions
                    .iter()
                    .map(|(n, v)| format!("{n} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !notes.is_empty() {
            out.summary = Some(notes.join("; "));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_with(packages: &[(&str, Option<&str>)]) -> BTreeMap<String, Facts> {
        packages
            .iter()
            .map(|(n, v)| {
                let text = match v {
                    Some(v) => format!("docker=20.10.24\ndocker_package={v}\n"),
                    None => String::new(),
                };
                (n.to_string(), facts::parse(&text, 0.0, 0.0))
            })
            .collect()
    }

    #[test]
    fn a_dry_run_lists_each_change_with_its_diff_then_the_count() {
        assert_eq!(ChangeList(&[]).to_string(), "nothing would change\n");
        let changes = [
            Change {
                phase: "mesh",
                node: Some("node1".into()),
                what: "/etc/wireguard/wg0.conf".into(),
                diff: Some("-a\n+b\n".into()),
            },
            Change {
                phase: "storage",
                node: None,
                what: "layout: 3 node(s)".into(),
                diff: None,
            },
        ];
        assert_eq!(
            ChangeList(&changes).to_string(),
            "mesh       node1: /etc/wireguard/wg0.conf\n           -a\n           +b\n\
             storage    layout: 3 node(s)\n\
             2 change(s) would be made; nothing was changed\n"
        );
    }

    #[test]
    fn the_engine_pin_is_the_configured_one_else_the_nodes_common_one_else_the_recorded_one() {
        let mut spec = spec();
        let same = facts_with(&[("n1", Some("1.0-1")), ("n10", Some("1.0-1"))]);
        let differ = facts_with(&[("n1", Some("1.0-1")), ("n10", Some("2.0-1"))]);
        let new_node = facts_with(&[("n1", Some("1.0-1")), ("n10", None)]);
        assert_eq!(
            engine_agreement(&same),
            EngineAgreement::Same("1.0-1".into())
        );
        assert_eq!(
            engine_agreement(&differ),
            EngineAgreement::Differ(vec![
                ("n1".into(), "1.0-1".into()),
                ("n10".into(), "2.0-1".into())
            ])
        );
        // A node without the package does not break the agreement: it gets the others' version.
        assert_eq!(
            engine_agreement(&new_node),
            EngineAgreement::Same("1.0-1".into())
        );
        assert_eq!(
            engine_agreement(&facts_with(&[("n1", None)])),
            EngineAgreement::Absent
        );
        assert_eq!(engine_pin(&spec, &same).as_deref(), Some("1.0-1"));
        assert_eq!(engine_pin(&spec, &differ), None);
        spec.swarm.engine_recorded = Some("1.0-1".into());
        assert_eq!(engine_pin(&spec, &differ).as_deref(), Some("1.0-1"));
        // The nodes moved together (outside clusterkit): what they run, not the old record.
        spec.swarm.engine_recorded = Some("0.9-1".into());
        assert_eq!(engine_pin(&spec, &same).as_deref(), Some("1.0-1"));
        spec.swarm.engine_version = Some("2.0-1".into());
        assert_eq!(engine_pin(&spec, &same).as_deref(), Some("2.0-1"));
    }

    struct Fake {
        name: &'static str,
        fail: bool,
        change: bool,
    }

    #[async_trait::async_trait]
    impl Phase for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn check(&self, _cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
            Ok(vec![Change {
                phase: self.name,
                node: None,
                what: "x".into(),
                diff: None,
            }])
        }
        async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
            cx.say("n1: working");
            cx.say("n10 is not n1");
            if self.fail {
                return Err("it broke".into());
            }
            let mut o = Outcome::default();
            if self.change {
                o.node("n1");
            }
            Ok(o)
        }
    }

    fn spec() -> ClusterSpec {
        let inv = crate::inventory::Inventory::parse(
            crate::source::SourceFile::new(
                "h.ini",
                "[s]\nn1 ansible_host=192.0.2.1\nn10 ansible_host=192.0.2.10\n",
            ),
            crate::inventory::Format::Ini,
            &mut Default::default(),
        );
        crate::spec::build(None, Some(&inv), &Default::default(), &|_| None)
            .unwrap()
            .spec
    }

    fn engine(fail_second: bool) -> Engine {
        Engine::new(vec![
            Box::new(Fake {
                name: "one",
                fail: false,
                change: true,
            }),
            Box::new(Fake {
                name: "two",
                fail: fail_second,
                change: false,
            }),
            Box::new(Fake {
                name: "three",
                fail: false,
                change: false,
            }),
        ])
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn phases_run_in_order_and_steps_are_attributed_to_the_node_they_name() {
        let spec = spec();
        let r = Lines::to_string();
        let cx = Context::new(&[], &spec, &r);
        let report = run(engine(false).apply(&cx, None)).unwrap();
        assert_eq!(
            report.phases.iter().map(|p| p.0).collect::<Vec<_>>(),
            ["one", "two", "three"]
        );
        assert!(report.changed());
        let text = r.text();
        // Timings vary: compare without the elapsed column.
        let lines: Vec<&str> = text.lines().map(|l| &l[10..]).collect();
        assert_eq!(lines[0], "one        n1: working");
        assert_eq!(lines[1], "one        n10 is not n1");
        assert!(
            lines[2].starts_with("one        changed n1 in "),
            "{}",
            lines[2]
        );
        assert!(
            lines[5].starts_with("two        unchanged in "),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn a_failed_phase_stops_the_run_and_says_how_to_resume() {
        let spec = spec();
        let r = Lines::to_string();
        let cx = Context::new(&[], &spec, &r);
        let e = run(engine(true).apply(&cx, None)).unwrap_err().to_string();
        assert!(e.starts_with("phase two failed: it broke"), "{e}");
        assert!(e.contains("clusterkit up --only two"), "{e}");
        assert!(r.text().contains("two        FAILED: it broke"));
        assert!(!r.text().contains("three"), "the run stopped");
    }

    #[test]
    fn only_selects_one_phase_and_an_unknown_one_lists_them_all() {
        let spec = spec();
        let r = Lines::to_string();
        let cx = Context::new(&[], &spec, &r);
        let report = run(engine(false).apply(&cx, Some("three"))).unwrap();
        assert_eq!(report.phases.len(), 1);
        let changes = run(engine(false).check(&cx, Some("two"))).unwrap();
        assert_eq!(changes.len(), 1);
        let e = run(engine(false).apply(&cx, Some("four")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "there is no phase `four`: the phases are one, two, three"
        );
    }
}
