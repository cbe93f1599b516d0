//! `clusterkit backup` (take, list, copy) and `clusterkit restore`: the
//! commands over [`clusterkit_ops::backup`] and [`clusterkit_ops::restore`].

use std::path::{Path, PathBuf};

use clusterkit_core::backup::SEAL_KEY_FILE;
use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;
use clusterkit_ops::backup::{BackupOptions, S3Source};
use clusterkit_ops::Session;

use crate::exit;

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

/// `clusterkit backup [--to ...]`: takes a backup through
/// [`clusterkit_ops::backup::take`] and prints where it went.
pub fn backup(loaded: &Loaded, to: &[String]) -> anyhow::Result<u8> {
    let options = BackupOptions {
        to: to.to_vec(),
        ..BackupOptions::default()
    };
    let lines = Lines::stderr();
    let session = Session::new(loaded, crate::remote::options(), &lines);
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

/// The S3 server of `restore --s3-endpoint`, its key from the environment
/// (never from the command line, where `ps` shows it).
pub fn s3_source(endpoint: &str, region: Option<&str>) -> anyhow::Result<S3Source> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        anyhow::bail!(
            "--s3-endpoint {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key that may read the bucket"
        );
    };
    let region = region
        .map(str::to_string)
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let source = S3Source::new(endpoint, &region, clusterkit_storage::S3Key { id, secret })?;
    if source.is_plain_http() {
        eprintln!(
            "--s3-endpoint {endpoint}: plain http: the backup (the swarm's secrets among it) crosses the network unencrypted"
        );
    }
    Ok(source)
}

/// `clusterkit restore --from DIR|s3://…`: the backup checked, its state
/// put in place, the description loaded again, then
/// [`clusterkit_ops::restore::apply`].
pub fn restore(
    loaded: &Loaded,
    reload: &dyn Fn() -> anyhow::Result<Option<Loaded>>,
    from: &str,
    source: Option<&S3Source>,
    unsealed: bool,
) -> anyhow::Result<u8> {
    if unsealed {
        eprintln!(
            "--unsealed: the backup's seal is not checked (its files, names and archives are)"
        );
    }
    let checked = {
        let lines = Lines::stderr();
        let session = Session::new(loaded, crate::remote::options(), &lines);
        crate::block_on(clusterkit_ops::restore::fetch(
            &session, from, source, unsealed,
        ))?
    };
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
    let options = clusterkit_ops::restore::RestoreOptions {
        userspace: clusterkit_wg::local_userspace_binary(),
        volumes: clusterkit_storage::phase::local_front_binary(),
        clusterkit_exe: std::env::current_exe().ok(),
    };
    let lines = Lines::stderr();
    let session = Session::new(&loaded, crate::remote::options(), &lines);
    let report = crate::block_on(clusterkit_ops::restore::apply(&session, &checked, &options))
        .map_err(|e| match e {
            // Refused before anything changed, or past the swarm with its own way out.
            clusterkit_ops::OpsError::Refused(_) => anyhow::Error::from(e),
            e => {
                // The same source again (its key stays in the environment).
                let source = source.map_or(String::new(), |s| {
                    format!(" --s3-endpoint {} --s3-region {}", s.endpoint, s.region)
                });
                anyhow::anyhow!(
                    "{e}\nrestore stopped: fix the cause above and run `clusterkit restore --from {from}{source}` again"
                )
            }
        })?;
    println!("{}", report.up.summary);
    eprintln!(
        "restored from {} in {:.0} s: the swarm's services, secrets and configs are back; \
         storage was made afresh (its data was not in the backup)",
        checked.from, report.seconds
    );
    Ok(exit::OK)
}

/// `clusterkit backup list [FROM]`: the backups kept there, oldest first.
pub fn list(loaded: &Loaded, from: Option<&str>) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
    let session = Session::new(loaded, crate::remote::options(), &notices);
    let listing = crate::block_on(clusterkit_ops::backup::list(&session, from))?;
    if !listing.seals_checked {
        eprintln!(
            "seals not checked: no {SEAL_KEY_FILE} in {} (restore needs it)",
            session.state_dir().display()
        );
    }
    for l in &listing.left_out {
        eprintln!("left out: {l}");
    }
    if listing.found.is_empty() {
        eprintln!("no backup under {}", listing.from);
        return Ok(exit::FAILURE);
    }
    listing.found.iter().for_each(|f| println!("{f}"));
    Ok(exit::OK)
}

/// `clusterkit backup copy FROM DIR`: one backup out of the cluster's S3
/// into a new directory, every file checked. Prints the directory.
pub fn copy(loaded: &Loaded, from: &str, dir: &Path) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
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
