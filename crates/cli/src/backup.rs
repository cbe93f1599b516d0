//! `clusterkit backup` and `clusterkit restore`: the swarm's state (as Docker
//! documents it: one manager's engine stopped, quorum kept), a Prometheus
//! snapshot, Grafana's data and clusterkit's own state, with a manifest and
//! checksums; and a swarm brought back from them on fresh nodes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clusterkit_core::backup::{
    SealKey, GRAFANA_FILE as GRAFANA, PROMETHEUS_FILE as PROMETHEUS, SEAL_KEY_FILE,
    SWARM_FILE as SWARM,
};
use clusterkit_core::engine::{Context, Lines};
use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::Transport;
use clusterkit_ops::backup::BackupOptions;
use clusterkit_ops::Session;

use crate::exit;
use crate::progress::Timed;
use crate::remote::connect;
use crate::up::{Phase, ProgressMode};

/// `clusterkit backup` subcommands (without one, `backup` takes a backup).
#[derive(Debug, clap::Subcommand)]
pub enum BackupCmd {
    /// The backups kept under a directory or an S3 prefix, oldest first.
    #[command(
        after_help = "Default: this cluster's backups on its S3 (s3://clusterkit/backups/CLUSTER).\n\n\
        Examples:\n  clusterkit backup list\n  clusterkit backup list /srv/backups"
    )]
    List {
        /// A directory of backups, or s3://BUCKET/PREFIX.
        from: Option<String>,
    },
    /// Copy a backup from the cluster's S3 into a new directory, every file checked.
    #[command(
        after_help = "The directory made is DIR/CLUSTER-TIME (mode 0700, files 0600): `clusterkit restore\n\
        --from` takes it. Do it while the cluster runs: its S3 goes down with it.\n\n\
        Example:\n  clusterkit backup copy s3://clusterkit/backups/prod/20261126T043000Z /srv/backups"
    )]
    Copy {
        /// The backup, as `backup list` shows it (s3://BUCKET/PREFIX).
        from: String,
        /// The directory to copy it under.
        dir: PathBuf,
    },
    /// What the scheduled backup's service runs (set by `backup --schedule`).
    #[command(hide = true)]
    RunSchedule {
        /// Its runner document.
        #[arg(long)]
        runner: PathBuf,
    },
}

pub use clusterkit_ops::backup::DEFAULT_TO;

const ENGINE_PATIENCE: Duration = Duration::from_secs(120);

fn by_name<'a>(nodes: &'a [Arc<dyn Transport>], name: &str) -> Option<&'a Arc<dyn Transport>> {
    nodes.iter().find(|t| t.node() == name)
}

/// `clusterkit backup [--to ...]`: takes a backup through
/// [`clusterkit_ops::backup::take`] and prints where it went.
pub fn backup(loaded: &Loaded, to: &[String]) -> anyhow::Result<u8> {
    let options = BackupOptions {
        to: to.to_vec(),
        ..BackupOptions::default()
    };
    let timed = Timed::start();
    let session = Session::new(loaded, crate::remote::options(), &timed);
    let report = crate::block_on(clusterkit_ops::backup::take(&session, &options))?;
    for w in &report.written {
        println!("{w}");
    }
    let how = if report.written.iter().any(|w| !w.starts_with("s3://")) {
        "restore on fresh nodes with `clusterkit restore --from DIR`"
    } else {
        "`clusterkit backup copy` brings it out of the cluster's S3 for `clusterkit restore --from DIR`"
    };
    eprintln!(
        "backup {} of cluster {} taken in {:.0} s; {how}",
        report.name, loaded.built.spec.name, report.seconds
    );
    Ok(exit::OK)
}

/// Brings a cluster back from a backup directory onto nodes outside any
/// swarm: clusterkit's state, Docker and the mesh, the swarm's state on the
/// first manager (then `--force-new-cluster`), the monitoring volumes, then
/// `up` for the rest.
pub fn restore(
    loaded: &Loaded,
    reload: &dyn Fn() -> anyhow::Result<Option<Loaded>>,
    from: &str,
    unsealed: bool,
) -> anyhow::Result<u8> {
    let timed = Timed::start();
    let say = |m: &str| timed.say(m);
    if unsealed {
        eprintln!(
            "--unsealed: the backup's seal is not checked (its files, names and archives are)"
        );
    }
    let checked = clusterkit_ops::restore::check(loaded, from, unsealed)?;
    let (manifest, dir) = (&checked.manifest, &checked.dir);
    let file = |n: &str| checked.file(n);
    let swarm = file(SWARM).expect("checked");
    say(&format!(
        "backup {} of cluster {}: {} files checked; {} services, {} secrets, {} configs",
        manifest.created,
        manifest.cluster,
        manifest.files.len(),
        manifest.services.len(),
        manifest.secrets.len(),
        manifest.configs.len()
    ));

    // clusterkit's state: mesh addresses and the storage's copies as they were.
    if let Some(kept) = clusterkit_ops::restore::put_state(loaded, &checked)? {
        eprintln!(
            "{}: the backup's state replaces it; the old one is {}",
            loaded.state_path.display(),
            kept.display()
        );
    }
    let Some(loaded) = reload()? else {
        return Ok(exit::INVALID);
    };
    let spec = &loaded.built.spec;
    // The swarm comes back on the node it was copied from when the cluster
    // still has it (its state names that node's addresses), else on the
    // first manager.
    let managers: Vec<&str> = spec
        .nodes
        .iter()
        .filter(|n| n.role == clusterkit_core::spec::SwarmRole::Manager)
        .map(|n| n.name.as_str())
        .collect();
    let first = managers
        .iter()
        .find(|n| **n == manifest.swarm_source)
        .or(managers.first())
        .map(|n| n.to_string())
        .ok_or_else(|| anyhow::anyhow!("no manager in this description"))?;
    // Nothing is touched while any node is already in a swarm.
    crate::block_on(async {
        let (nodes, failed) = connect(&loaded, false).await;
        if !failed.is_empty() {
            for (n, e) in &failed {
                eprintln!("{n}: {e}");
            }
            anyhow::bail!(
                "{} node(s) unreachable: a restore needs every node; nothing was changed",
                failed.len()
            );
        }
        let _lock = crate::remote::lock_cluster(&loaded, &nodes, "restore").await?;
        let mut inside = Vec::new();
        for t in &nodes {
            let out = t
                .exec_raw(
                    &clusterkit_core::transport::Cmd::new(
                        "docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo no-engine",
                    ),
                    None,
                )
                .await?;
            let s = out.stdout_str().trim().to_string();
            if s != "inactive" && s != "no-engine" {
                inside.push(format!("{} ({s})", t.node()));
            }
        }
        if !inside.is_empty() {
            anyhow::bail!(
                "{} already in a swarm: a restore builds the swarm from the backup on nodes outside any swarm. \
                 On a cluster that still runs, take it apart first (`clusterkit down --yes`, which keeps data); \
                 nothing was changed",
                inside.join(", ")
            );
        }
        anyhow::Ok(())
    })?;

    say("restore 1/4: Docker Engine and the WireGuard mesh");
    for phase in [Phase::Docker, Phase::Mesh] {
        let code = crate::up::run(
            &loaded,
            Some(phase),
            false,
            false,
            ProgressMode::Plain,
            false,
        )?;
        if code != exit::OK {
            eprintln!("restore stopped: fix the cause above and run `clusterkit restore --from {from}` again");
            return Ok(code);
        }
    }
    crate::block_on(async {
        let (nodes, failed) = connect(&loaded, false).await;
        if let Some((n, e)) = failed.first() {
            anyhow::bail!("{n}: {e}");
        }
        let _lock = crate::remote::lock_cluster(&loaded, &nodes, "restore").await?;
        let restored_monitoring = [file(PROMETHEUS), file(GRAFANA)];
        if clusterkit_monitor::enabled(spec) && restored_monitoring.iter().any(Option::is_some) {
            say("restore 2/4: Prometheus's and Grafana's data into their volumes on the managers");
            match clusterkit_monitor::backup::restore_volumes(
                &nodes,
                spec,
                restored_monitoring[0],
                restored_monitoring[1],
            )
            .await
            {
                Ok(done) => say(&format!("restored: {}", done.join(", "))),
                Err(e) => say(&format!("not restored: {e}")),
            }
        }
        // The swarm starts the backup's services as soon as it is back: the
        // images they run go first, or their first tasks are rejected on
        // fresh nodes ("No such image") until `up` sends them.
        let lines = Lines::stderr();
        let cx = Context::new(&nodes, spec, &lines);
        let needs = clusterkit_ops::up::engine(false, None).images(&cx).await?;
        clusterkit_core::transport::images::provide(&needs, &|m: &str| say(m)).await?;
        let t = by_name(&nodes, &first).expect("connected");
        say(&format!("restore 3/4: the swarm's state on {first}, then a new cluster from it (--force-new-cluster)"));
        clusterkit_swarm::backup::unpack(t.as_ref(), swarm, ENGINE_PATIENCE).await?;
        let change = clusterkit_swarm::recover(&nodes, spec, &first).await?;
        // The backup was copied from a drained node: the swarm remembers it so.
        clusterkit_swarm::roll::undrain(t.as_ref(), &first).await?;
        let moved = clusterkit_swarm::backup::reschedule_pending(t.as_ref()).await?;
        if !moved.is_empty() {
            say(&format!(
                "pending tasks given a new start: {}",
                moved.join(", ")
            ));
        }
        say(&format!(
            "swarm restored on {first}{}",
            if change.joined.is_empty() {
                String::new()
            } else {
                format!("; joined: {}", change.joined.join(", "))
            }
        ));
        anyhow::Ok(())
    })?;
    say("restore 4/4: `up` for the rest (storage, monitoring, stacks)");
    let code = crate::up::run(&loaded, None, false, false, ProgressMode::Plain, true)?;
    if code == exit::OK {
        eprintln!(
            "restored from {} in {:.0} s: the swarm's services, secrets and configs are back; \
             storage was made afresh (its data was not in the backup)",
            dir.display(),
            timed.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "the swarm is restored; finish with `clusterkit up` once the cause above is fixed"
        );
    }
    Ok(code)
}

/// `clusterkit backup list [FROM]`: the backups kept there, oldest first.
pub fn list(loaded: &Loaded, from: Option<&str>) -> anyhow::Result<u8> {
    let notices = crate::progress::Notices;
    let session = Session::new(loaded, crate::remote::options(), &notices);
    if SealKey::load(&session.state_dir())?.is_none() {
        eprintln!(
            "seals not checked: no {SEAL_KEY_FILE} in {} (restore needs it)",
            session.state_dir().display()
        );
    }
    let listing = crate::block_on(clusterkit_ops::backup::list(&session, from))?;
    for l in &listing.left_out {
        eprintln!("left out: {l}");
    }
    if listing.found.is_empty() {
        eprintln!("no backup under {}", listing.from);
        return Ok(exit::FAILURE);
    }
    for f in &listing.found {
        println!(
            "{}  {}  {} services, {} secrets  {:.1} MiB",
            f.at,
            f.manifest.created,
            f.manifest.services.len(),
            f.manifest.secrets.len(),
            f.bytes as f64 / (1u64 << 20) as f64
        );
    }
    Ok(exit::OK)
}

/// `clusterkit backup copy FROM DIR`: one backup out of the cluster's S3
/// into a new directory, every file checked. Prints the directory.
pub fn copy(loaded: &Loaded, from: &str, dir: &Path) -> anyhow::Result<u8> {
    let notices = crate::progress::Notices;
    let session = Session::new(loaded, crate::remote::options(), &notices);
    let report = crate::block_on(clusterkit_ops::backup::copy(&session, from, dir))?;
    println!("{}", report.dir.display());
    eprintln!(
        "{} files checked and written; restore with `clusterkit restore --from {}`",
        report.files,
        report.dir.display()
    );
    Ok(exit::OK)
}
