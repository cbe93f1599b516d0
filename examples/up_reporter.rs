//! `up` from a program, with a reporter of its own: every event of the run
//! arrives typed (a phase started, a step, a phase done with what it
//! changed); this one prints them as JSON lines and counts the steps, then
//! prints the run's report.
//!
//! ```sh
//! cargo run --example up_reporter -- clusterkit.toml [USERSPACE_BINARY [PHASE]]
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use clusterkit::core::engine::{Event, Reporter};
use clusterkit::ops::{up, Options, Session, UpOptions};

/// Prints each event as one JSON line; counts the steps.
#[derive(Default)]
struct JsonLines {
    steps: AtomicUsize,
}

impl Reporter for JsonLines {
    fn event(&self, e: &Event) {
        if let Event::Step { .. } = e {
            self.steps.fetch_add(1, Ordering::Relaxed);
        }
        // Events serialise as {"event": "phase_done", ...}.
        eprintln!("{}", serde_json::to_string(e).unwrap_or_default());
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(config) = args.next().map(PathBuf::from) else {
        eprintln!("usage: up_reporter CONFIG [USERSPACE_BINARY [PHASE]]");
        std::process::exit(2);
    };
    let userspace = args.next().map(std::fs::read).transpose()?;
    // One phase alone (`mesh`, `swarm`, ...), or all of them.
    let only = args.next().map(|p| p.parse()).transpose()?;
    let loaded = clusterkit::core::spec::load(Some(&config), None)?;
    let reporter = JsonLines::default();
    let session = Session::new(&loaded, Options::default(), &reporter);
    let report = up::up(
        &session,
        &UpOptions {
            only,
            userspace,
            ..UpOptions::default()
        },
    )
    .await?;
    for p in &report.phases {
        println!(
            "{:<10} {:>6.1}s {}",
            p.phase,
            p.seconds,
            if p.outcome.changed() {
                "changed"
            } else {
                "unchanged"
            }
        );
    }
    println!(
        "{} ({} steps reported)",
        report.summary,
        reporter.steps.load(Ordering::Relaxed)
    );
    Ok(())
}
