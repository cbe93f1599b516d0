//! `clusterkit up` (the engine of clusterkit-core over every capability's
//! phase) and `clusterkit deploy`.

use std::io::IsTerminal;

use clusterkit_core::engine::{ChangeList, Lines};
use clusterkit_core::spec::Loaded;
use clusterkit_ops::UpOptions;

use clusterkit_core::reporters::{JsonLines, LiveTable};

use crate::progress::Progress;

use crate::exit;

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

/// Runs every phase (or `only` one) through [`clusterkit_ops::up::up`]
/// and prints its progress and summary; after a whole run, the scheduled
/// backup follows the cluster.
pub fn run(
    loaded: &Loaded,
    only: Option<clusterkit_ops::Phase>,
    json: bool,
    dry_run: bool,
    progress: ProgressMode,
    rebalance: bool,
) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    let options = UpOptions {
        only,
        rebalance,
        dry_run,
        userspace: clusterkit_wg::local_userspace_binary(),
        volumes: clusterkit_storage::phase::local_front_binary(),
        clusterkit_exe: std::env::current_exe().ok(),
    };
    let names: Vec<String> = spec.nodes.iter().map(|n| n.name.to_string()).collect();
    let live = match progress {
        ProgressMode::Live => true,
        ProgressMode::Plain => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    };
    let reporter = if json && !dry_run {
        Progress::Json(JsonLines::new())
    } else if live && !dry_run {
        Progress::Live(LiveTable::start(
            format!("clusterkit up · cluster {}", spec.name),
            &names,
            clusterkit_ops::up::phase_names(&options),
        ))
    } else {
        Progress::Lines(Lines::stderr())
    };
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &reporter);
    let result = crate::block_on(clusterkit_ops::up::up(&session, &options));
    drop(session);
    let json_out = reporter.finish();
    let report = match result {
        Ok(r) => r,
        Err(clusterkit_ops::OpsError::Blocked(b)) => {
            eprintln!("{b}");
            return Ok(exit::FAILURE);
        }
        Err(clusterkit_ops::OpsError::Unreachable(u)) => {
            for n in &u {
                eprintln!("{}: {}", n.node, n.error);
            }
            anyhow::bail!("{} node(s) unreachable: nothing was changed", u.len());
        }
        Err(e) => return Err(e.into()),
    };
    if dry_run {
        // What the phases' checks found; nothing written. Secrets never
        // appear: the files compared hold none.
        match json {
            true => println!("{}", serde_json::to_string_pretty(&report.changes)?),
            false => print!("{}", ChangeList(&report.changes)),
        }
        return Ok(exit::OK);
    }
    match json_out {
        Some(j) => j.done(report.changed, &report.summary),
        None => println!("{}", report.summary),
    }
    Ok(exit::OK)
}

/// A session for a capability's own `up` (`swarm up`, ...): the engine's
/// steps as log lines on stderr, as `up --only` prints them.
pub fn capability_session<'a>(loaded: &'a Loaded, lines: &'a Lines) -> clusterkit_ops::Session<'a> {
    clusterkit_ops::Session::new(loaded, crate::remote::options(), lines)
}

/// Prints what a capability's own `up` did: the run's summary, and
/// `{what} unchanged` when nothing changed.
pub fn print_capability(up: &clusterkit_ops::UpReport, what: &str) {
    eprintln!("{}", up.summary);
    if !up.changed {
        eprintln!("{what} unchanged");
    }
}

/// `clusterkit deploy FILE [--name NAME]`.
pub fn deploy_file(
    loaded: &Loaded,
    file: &std::path::Path,
    name: Option<&str>,
) -> anyhow::Result<u8> {
    let lines = Lines::stderr();
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &lines);
    let report = crate::block_on(clusterkit_ops::up::deploy(&session, file, name))?;
    println!(
        "stack {} runs on cluster {}{}",
        report.stack,
        loaded.built.spec.name,
        if report.changed {
            ""
        } else {
            "; nothing changed"
        }
    );
    Ok(exit::OK)
}
