//! clusterkit-ops: clusterkit's operations as library calls, each taking
//! typed options and a [`Reporter`](clusterkit_core::engine::Reporter) and
//! returning a typed report. The `clusterkit` command line is a thin layer
//! over these; another tool embeds them the same way.
//!
//! A [`Session`] holds the loaded description, how to reach its nodes and
//! the locks an operation that changes the cluster takes (held until the
//! session ends):
//!
//! ```no_run
//! use clusterkit_core::engine::Lines;
//! use clusterkit_ops::{up, Options, Session, UpOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = clusterkit_core::spec::load(Some("clusterkit.toml".as_ref()), None)?;
//! let lines = Lines::stderr();
//! let session = Session::new(&loaded, Options::default(), &lines);
//! let report = up::up(&session, &UpOptions::default()).await?;
//! println!("changed: {}", report.changed);
//! let status = clusterkit_ops::status::status(&session).await;
//! println!("healthy: {}", status.healthy);
//! # Ok(())
//! # }
//! ```
//!
//! Operations here: [`check`](check::check), [`up`](up::up) (the standard
//! phase list, [`up::Phase`]), [`deploy`](up::deploy), [`status`](status::status),
//! [`doctor`](doctor::doctor), [`down`](down::down), [`node`] (add and remove),
//! [`upgrade`](upgrade::upgrade), [`backup`] (take, list, copy), [`restore`],
//! [`schedule`] (the scheduled backup), [`images`] (push), and each capability alone:
//! [`mesh`], [`swarm`], [`storage`], [`monitoring`], [`ingress`].

pub mod backup;
pub mod check;
pub mod doctor;
pub mod down;
pub mod images;
pub mod ingress;
pub mod mesh;
pub mod monitoring;
pub mod node;
pub mod restore;
pub mod schedule;
pub mod session;
pub mod status;
pub mod storage;
pub mod swarm;
pub mod up;
pub mod upgrade;

pub use session::{Connected, Options, Reach, Session, Unreachable};
pub use up::{Phase, UpOptions, UpReport};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Nodes did not answer, and the operation needs every one.
    #[error("{} node(s) unreachable: nothing was changed ({})", .0.len(), .0.iter().map(|u| format!("{}: {}", u.node, u.error)).collect::<Vec<_>>().join("; "))]
    Unreachable(Vec<Unreachable>),
    /// No node answered.
    #[error("no node is reachable: nothing was done")]
    NoneReachable,
    /// A lock is held by another run (or could not be taken).
    #[error(transparent)]
    Lock(#[from] clusterkit_core::lock::LockError),
    /// A phase of the engine failed (its message says how to resume).
    #[error(transparent)]
    Engine(#[from] clusterkit_core::engine::EngineError),
    /// The nodes have problems that block a run: nothing was changed.
    #[error(transparent)]
    Blocked(clusterkit_core::engine::Blocked),
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] clusterkit_core::SpecError),
    /// A node answered with an error.
    #[error(transparent)]
    Transport(#[from] clusterkit_core::transport::TransportError),
    /// The mesh failed.
    #[error(transparent)]
    Mesh(#[from] clusterkit_wg::WgError),
    /// The swarm failed.
    #[error(transparent)]
    Swarm(#[from] clusterkit_swarm::SwarmError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] clusterkit_storage::StorageError),
    /// Monitoring failed.
    #[error(transparent)]
    Monitoring(Box<clusterkit_monitor::MonitorError>),
    /// The ingress failed.
    #[error(transparent)]
    Ingress(#[from] clusterkit_ingress::phase::IngressError),
    /// A file of this machine could not be read or written.
    #[error("{what}: {source}")]
    Local {
        /// What was being done, naming the file.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A roll to new images did not end.
    #[error(transparent)]
    Roll(Box<clusterkit_core::stack::roll::RollError>),
    /// A backup could not be read, or a destination is not one.
    #[error(transparent)]
    Backup(#[from] clusterkit_core::backup::BackupError),
    /// Something a capability refused (an application stack's file, ...).
    #[error("{0}")]
    Refused(String),
}

impl OpsError {
    /// Maps an I/O error on this machine to [`OpsError::Local`], `what`
    /// naming the file: `std::fs::read(p).map_err(OpsError::local(...))`.
    pub fn local(what: String) -> impl FnOnce(std::io::Error) -> OpsError {
        move |source| OpsError::Local { what, source }
    }
}

impl From<clusterkit_core::stack::roll::RollError> for OpsError {
    fn from(e: clusterkit_core::stack::roll::RollError) -> Self {
        OpsError::Roll(Box::new(e))
    }
}

impl From<clusterkit_monitor::MonitorError> for OpsError {
    fn from(e: clusterkit_monitor::MonitorError) -> Self {
        OpsError::Monitoring(Box::new(e))
    }
}

/// What the unit tests of operations share: a description of `n` nodes and
/// the facts of a ready node.
/// The one of `all` whose `name` is `s`, else an error listing every name
/// ("there is no phase `x`: the phases are docker, mesh, ..."): the
/// `FromStr` of the library's named choices ([`Phase`], [`upgrade::Component`]).
pub(crate) fn by_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    kind: &str,
    s: &str,
) -> Result<T, clusterkit_core::Invalid> {
    all.iter().copied().find(|c| name(*c) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|c| name(*c)).collect();
        clusterkit_core::Invalid(format!(
            "there is no {kind} `{s}`: the {kind}s are {}",
            names.join(", ")
        ))
    })
}

#[cfg(test)]
mod testkit {
    use clusterkit_core::inventory::{Format, Inventory};
    use clusterkit_core::source::SourceFile;
    use clusterkit_core::spec::Loaded;
    use clusterkit_core::state::State;
    use clusterkit_core::transport::script::Scripted;
    use clusterkit_core::transport::Transport;
    use std::sync::Arc;

    pub const FACTS: &str = "os_id=debian\nos_version=12\ncodename=bookworm\narch=x86_64\n\
        kernel=6.1.0\nwg=no\ndocker=20.10.24\nswarm=inactive\ndisk_kib=10485760\ninit=systemd\n\
        sudo=no\nports=22 \nmesh=no\n";

    /// Scripted nodes as the transports a session is given.
    pub fn transports<'a>(
        nodes: impl IntoIterator<Item = &'a Scripted>,
    ) -> Vec<Arc<dyn Transport>> {
        nodes
            .into_iter()
            .map(|n| Arc::new(n.clone()) as Arc<dyn Transport>)
            .collect()
    }

    pub fn loaded(n: usize, dir: &std::path::Path) -> Loaded {
        let text: String = (1..=n)
            .map(|i| format!("node{i} ansible_host=192.168.1.{i}\n"))
            .collect();
        let file = SourceFile::new("hosts.ini", format!("[servers]\n{text}"));
        let mut problems = clusterkit_core::Problems::default();
        let inv = Inventory::parse(file, Format::Ini, &mut problems);
        let built =
            clusterkit_core::spec::build(None, Some(&inv), &State::default(), &|_| None).unwrap();
        Loaded {
            built,
            state_path: dir.join("state.toml"),
            state_changed: false,
        }
    }
}
