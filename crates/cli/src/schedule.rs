//! `clusterkit backup --schedule` (through [`clusterkit_ops::schedule`]),
//! and the loop the scheduled service runs (`backup run-schedule`, hidden).

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clusterkit_core::backup::Location;
use clusterkit_core::engine::Lines;
use clusterkit_core::schedule::{self as sched, Runner};
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

/// The newest backup under the schedule's destinations sealed with `seal`,
/// by its manifest's time.
fn newest(
    loaded: &Loaded,
    to: &[String],
    seal: &clusterkit_core::backup::SealKey,
) -> anyhow::Result<Option<SystemTime>> {
    let mut newest: Option<SystemTime> = None;
    for t in to {
        // Where `backup` writes for this cluster: DEST/CLUSTER/TIME.
        let from = Location::parse(t)?.join(&loaded.built.spec.name);
        let Location::S3 { .. } = from else {
            continue;
        };
        let session = Session::new(loaded, runner_options(), &crate::progress::Notices);
        let listing = crate::block_on(clusterkit_ops::backup::find(
            &session,
            &from.to_string(),
            Some(seal),
        ))?;
        for l in &listing.left_out {
            log(&format!("left out: {l}"));
        }
        for f in &listing.found {
            if let Ok(at) = humantime::parse_rfc3339(&f.manifest.created) {
                newest = newest.max(Some(at));
            }
        }
    }
    Ok(newest)
}

/// The service knows its nodes' host keys already (its `known_hosts`).
fn runner_options() -> clusterkit_ops::Options {
    clusterkit_ops::Options {
        strict_host_keys: true,
        ..crate::remote::options()
    }
}

fn log(m: &str) {
    eprintln!(
        "{} {m}",
        clusterkit_core::backup::rfc3339(SystemTime::now())
    );
}

/// `backup run-schedule --runner FILE`: what the service runs, for ever.
pub fn run(runner: &Path) -> anyhow::Result<u8> {
    let text = std::fs::read(runner).with_context(|| format!("reading {}", runner.display()))?;
    let r: Runner = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{}: not a runner document of this clusterkit",
            runner.display()
        )
    })?;
    let loaded = clusterkit_ops::schedule::runner_loaded(
        &r,
        &std::env::temp_dir().join("clusterkit-runner"),
    )?;
    let me = std::env::var("CLUSTERKIT_RUNNER_NODE").unwrap_or_default();
    let seal = std::fs::read_to_string(sched::SEAL_IN_TASK)
        .with_context(|| format!("reading the backup seal key at {}", sched::SEAL_IN_TASK))
        .and_then(|t| {
            clusterkit_core::backup::SealKey::from_hex(&t)
                .map_err(|e| anyhow::anyhow!("{}: {e}", sched::SEAL_IN_TASK))
        })?;
    let every = r.schedule.period();
    log(&format!(
        "backup every {} to {}, from {me}",
        r.schedule.every,
        r.schedule.to.join(", ")
    ));
    loop {
        let wait = match newest(&loaded, &r.schedule.to, &seal) {
            Ok(n) => sched::wait(n, SystemTime::now(), every),
            Err(e) => {
                log(&format!(
                    "listing the backups failed: {e:#}; again in {}",
                    humantime::format_duration(sched::RETRY)
                ));
                std::thread::sleep(sched::RETRY);
                continue;
            }
        };
        if !wait.is_zero() {
            let wait = Duration::from_secs(wait.as_secs() + 1);
            log(&format!(
                "next backup in {}",
                humantime::format_duration(wait)
            ));
            // Looked at again within the hour: another backup may have been taken by hand.
            std::thread::sleep(wait.min(Duration::from_secs(3600)));
            continue;
        }
        log("taking a backup");
        let options = clusterkit_ops::backup::BackupOptions {
            to: r.schedule.to.clone(),
            never: vec![me.clone()],
            seal: Some(seal.clone()),
        };
        // A session per backup: its lock goes with it.
        let lines = Lines::stderr();
        let session = Session::new(&loaded, runner_options(), &lines);
        match crate::block_on(clusterkit_ops::backup::take(&session, &options)) {
            Ok(report) => log(&format!("backup taken: {}", report.written.join(", "))),
            Err(e) => {
                log(&format!(
                    "backup failed: {e:#}; again in {}",
                    humantime::format_duration(sched::RETRY)
                ));
                std::thread::sleep(sched::RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runner_document_of_a_cluster_reads_back() {
        let spec = clusterkit_core::spec::example(3);
        let r = clusterkit_core::schedule::Runner {
            schedule: clusterkit_core::schedule::Schedule {
                every: "6h".into(),
                to: vec!["s3://clusterkit/backups".into()],
                image: clusterkit_core::schedule::DEFAULT_IMAGE.into(),
            },
            spec: clusterkit_core::schedule::runner_spec(&spec),
            known_hosts: "10.0.0.1 ssh-ed25519 AAAA\n".into(),
            state: String::new(),
        };
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: clusterkit_core::schedule::Runner = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(!json.contains("PRIVATE KEY"));
    }
}
