//! `clusterkit`: the thin command line over the clusterkit crates.
//!
//! Parsing with clap, printing, exit codes; everything else lives in the libraries.

mod backup;
mod cmd;
mod doctor;
mod down;
mod ingress;
mod mesh;
mod monitor;
mod node;
mod output;
mod progress;
mod remote;
mod sandbox;
mod schedule;
mod status;
mod storage;
mod swarm;
mod up;
mod upgrade;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Success (warnings may have been printed).
    pub const OK: u8 = 0;
    /// A failure while running (a file could not be read or written, a node failed).
    pub const FAILURE: u8 = 1;
    /// Bad command-line usage.
    pub const USAGE: u8 = 2;
    /// The cluster description (inventory, clusterkit.toml) has errors.
    pub const INVALID: u8 = 3;
}

/// The process's one async runtime, built on first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("the async runtime starts (threads and timers from the OS)")
    })
}

/// Runs `f` to its end on the process's runtime. Commands call it at their
/// top, never from inside another `block_on`.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return ExitCode::from(exit::OK);
            }
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// The error and its causes on one line, a cause left out when the message
/// before it already says it (library errors show their source themselves:
/// "cannot read F: No such file or directory" was followed by the same
/// cause again).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}
