//! `clusterkit backup --schedule` (through [`clusterkit_ops::schedule`]),
//! and the loop the scheduled service runs (`backup run-schedule`, hidden).

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context as _;
use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;
use clusterkit_ops::Session;

use crate::exit;

/// `backup --schedule EVERY [--to s3://…]... [--image IMAGE]`, or `--schedule off`.
pub fn set(loaded: &Loaded, every: &str, to: &[String], image: &str) -> anyhow::Result<u8> {
    let lines = Lines::stderr();
    let session = Session::new(loaded, crate::remote::options(), &lines);
    if every == "off" {
        crate::block_on(clusterkit_ops::schedule::off(&session))?;
        println!("no scheduled backup: the service, its key and the nodes' key lines are gone; backups taken stay");
        return Ok(exit::OK);
    }
    let options = clusterkit_ops::schedule::ScheduleOptions {
        every: every.to_string(),
        to: to.to_vec(),
        image: image.to_string(),
        exe: std::env::current_exe().context("finding clusterkit's own executable")?,
    };
    let report = crate::block_on(clusterkit_ops::schedule::set(&session, &options))?;
    println!(
        "backup every {} to {} (service {}); `clusterkit backup list` shows them, \
         `docker service logs {}` on a manager what it did",
        report.schedule.every,
        report.schedule.to.join(", "),
        report.service,
        report.service
    );
    Ok(exit::OK)
}

fn log(m: &str) {
    eprintln!(
        "{} {m}",
        clusterkit_core::backup::rfc3339(SystemTime::now())
    );
}

/// `backup run-schedule --runner FILE`: what the service runs, for ever
/// ([`clusterkit_ops::schedule::serve`]).
pub fn run(runner: &Path) -> anyhow::Result<u8> {
    let (r, seal) = clusterkit_ops::schedule::read_task_files(runner)?;
    let me = std::env::var("CLUSTERKIT_RUNNER_NODE").unwrap_or_default();
    // The service knows its nodes' host keys already (its `known_hosts`).
    let options = clusterkit_ops::Options {
        strict_host_keys: true,
        ..crate::remote::options()
    };
    let dir = std::env::temp_dir().join("clusterkit-runner");
    match crate::block_on(clusterkit_ops::schedule::serve(
        &r, &dir, &me, &seal, options, &log,
    ))? {}
}
