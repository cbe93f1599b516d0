//! `clusterkit backup` and `clusterkit restore`: the swarm's state (as Docker
//! documents it: one manager's engine stopped, quorum kept), a Prometheus
//! snapshot, Grafana's data and clusterkit's own state, with a manifest and
//! checksums; and a swarm brought back from them on fresh nodes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use clusterkit_core::backup::{
    check_archive, rfc3339, stamp, BackupError, Location, Manifest, SealKey,
    GRAFANA_FILE as GRAFANA, MANIFEST, PROMETHEUS_FILE as PROMETHEUS, SEAL, SEAL_KEY_FILE,
    STATE_FILE as STATE, SWARM_FILE as SWARM,
};
use clusterkit_core::engine::{Context, Lines};
use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::Transport;

use crate::exit;
use crate::remote::{connect, state_dir};
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

/// Where backups go when no `--to` is given: the cluster's own S3.
pub const DEFAULT_TO: &str = "s3://clusterkit/backups";

/// The seal key backups of this cluster are opened with: this machine's, or
/// an error saying where it must be.
pub fn seal_key(loaded: &Loaded) -> anyhow::Result<SealKey> {
    let dir = state_dir(loaded);
    SealKey::load(&dir)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no backup seal key in {}: backups are sealed with the {SEAL_KEY_FILE} made by the first backup \
             of this cluster, in the state directory of the machine that took it. Copy it here (mode 0600) \
             to read its backups",
            dir.display()
        )
    })
}

const ENGINE_PATIENCE: Duration = Duration::from_secs(120);
const DRAIN_PATIENCE: Duration = Duration::from_secs(180);

fn say(start: Instant, m: &str) {
    eprintln!("[{:>6.1}s] {m}", start.elapsed().as_secs_f64());
}

fn by_name<'a>(nodes: &'a [Arc<dyn Transport>], name: &str) -> Option<&'a Arc<dyn Transport>> {
    nodes.iter().find(|t| t.node() == name)
}

/// How a backup is taken: by hand, or by the scheduled service.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Host keys must be known already (the service's `known_hosts`).
    pub strict: bool,
    /// Managers never taken out (the service's own node).
    pub never: Vec<String>,
    /// The key that seals the backup (the service's, from its secret);
    /// `None`: this machine's, made on first use.
    pub seal: Option<SealKey>,
}

/// Takes a backup and writes it to every location of `to` (default: the
/// cluster's S3). Prints where it went.
pub fn backup(loaded: &Loaded, to: &[String]) -> anyhow::Result<u8> {
    backup_with(loaded, to, &Options::default())
}

/// [`backup`] with its [`Options`].
pub fn backup_with(loaded: &Loaded, to: &[String], options: &Options) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    let start = Instant::now();
    let seal = match &options.seal {
        Some(k) => k.clone(),
        None => {
            let dir = state_dir(loaded);
            let (k, made) = SealKey::load_or_create(&dir)?;
            if made {
                eprintln!(
                    "made the backup seal key {}: restore accepts only backups sealed with it. Keep a copy \
                     off the cluster with your other secrets; every machine that restores needs it",
                    dir.join(SEAL_KEY_FILE).display()
                );
            }
            k
        }
    };
    let created = SystemTime::now();
    let name = stamp(created);
    let to: Vec<String> = if to.is_empty() {
        vec![DEFAULT_TO.to_string()]
    } else {
        to.to_vec()
    };
    // Every destination is read before anything is touched.
    let mut dests = Vec::new();
    for t in &to {
        let loc = Location::parse(t)?;
        dests.push(match &loc {
            Location::Dir(_) => loc.join(&format!("{}-{name}", spec.name)),
            Location::S3 { .. } => loc.join(&spec.name).join(&name),
        });
    }
    for d in &dests {
        if let Location::Dir(dir) = d {
            // Writable before a manager's engine is stopped for nothing.
            prepare_new_dir(dir)?;
        }
    }
    if dests.iter().any(|d| matches!(d, Location::S3 { .. }))
        && spec.storage.backend == clusterkit_core::spec::StorageBackend::None
    {
        anyhow::bail!(
            "this cluster has no storage ([storage] backend = \"none\"): give a directory, e.g. `--to /srv/backups`"
        );
    }
    let written = crate::block_on(async {
        let (nodes, failed) = connect(loaded, options.strict).await;
        if !failed.is_empty() {
            for (n, e) in &failed {
                eprintln!("{n}: {e}");
            }
            anyhow::bail!(
                "{} node(s) unreachable: a backup stops one manager's engine for a moment and needs the other \
                 managers up to keep the majority. Bring them back, or take a dead one out (`clusterkit node \
                 remove NODE`); nothing was changed",
                failed.len()
            );
        }
        let _lock = crate::remote::lock_cluster(loaded, &nodes, "backup").await?;
        let st = clusterkit_swarm::status(&nodes).await?;
        // Not the node where Grafana keeps its database on a local volume:
        // drained, Grafana would start elsewhere without it.
        let grafana_on = if clusterkit_monitor::enabled(spec) && spec.monitoring.grafana {
            clusterkit_monitor::running_on(&nodes, spec, "grafana")
                .await?
                .map(|(e, _)| e.node)
        } else {
            None
        };
        let avoid: Vec<&str> = grafana_on.as_deref().into_iter().collect();
        let never: Vec<&str> = options.never.iter().map(String::as_str).collect();
        let source = clusterkit_swarm::backup::source(&st, &avoid, &never)?;
        let source_t = by_name(&nodes, &source).ok_or_else(|| {
            anyhow::anyhow!(
                "the swarm's manager {source} is no node of this description: its engine's hostname must be \
                 its inventory name"
            )
        })?;
        // Another manager speaks for the swarm while the source's engine stops.
        let mgr = st
            .managers
            .iter()
            .filter(|m| m.hostname != source)
            .find_map(|m| by_name(&nodes, &m.hostname))
            .unwrap_or(source_t);

        let contents = clusterkit_swarm::backup::contents(mgr.as_ref()).await?;
        say(
            start,
            &format!(
                "swarm: {} services, {} secrets, {} configs",
                contents.services.len(),
                contents.secrets.len(),
                contents.configs.len()
            ),
        );
        let mut files: Vec<(&str, Vec<u8>, String)> = Vec::new();
        let mut excluded = vec![
            "WireGuard private keys: they never leave their nodes; a restore makes new ones".to_string(),
            "storage data (objects, volumes on the `clusterkit` driver): Garage keeps copies on several nodes; \
             copy buckets elsewhere for a disaster copy"
                .to_string(),
            "the S3 key and Grafana's password files on the nodes: the password comes back from its Swarm \
             secret, the storage makes a new key"
                .to_string(),
        ];
        if clusterkit_monitor::enabled(spec) {
            match clusterkit_monitor::backup::prometheus_snapshot(&nodes, spec).await? {
                Some((n, bytes)) => {
                    say(
                        start,
                        &format!(
                            "prometheus: snapshot taken on {n} ({} KiB)",
                            bytes.len() / 1024
                        ),
                    );
                    files.push((
                        PROMETHEUS,
                        bytes,
                        format!("Prometheus snapshot (admin API) from {n}"),
                    ));
                }
                None => excluded.push("Prometheus data: Prometheus did not run".into()),
            }
            match clusterkit_monitor::backup::grafana_data(&nodes, spec).await? {
                Some((n, bytes)) => {
                    say(
                        start,
                        &format!(
                            "grafana: data directory read on {n} ({} KiB)",
                            bytes.len() / 1024
                        ),
                    );
                    files.push((GRAFANA, bytes, format!("Grafana's data directory from {n}")));
                }
                None if spec.monitoring.grafana => {
                    excluded.push("Grafana's data: Grafana did not run".into())
                }
                None => {}
            }
        }

        // The swarm's state, last: it takes the source out for a moment.
        let single = st.managers.len() <= 1;
        if single {
            say(start, &format!(
                "swarm: {source} is the only manager: its engine stops for the copy (services on it pause)"
            ));
        } else {
            say(
                start,
                &format!(
                    "swarm: draining {source} (not the leader; its tasks start elsewhere first)"
                ),
            );
            clusterkit_swarm::roll::drain(mgr.as_ref(), &source, DRAIN_PATIENCE).await?;
            say(
                start,
                &format!("swarm: stopping {source}'s engine, copying its swarm state, starting it"),
            );
        }
        let archived = clusterkit_swarm::backup::archive(source_t.as_ref(), ENGINE_PATIENCE).await;
        let bytes = if single {
            archived?
        } else {
            // Back in service whatever the copy gave.
            let back =
                clusterkit_swarm::roll::activate(mgr.as_ref(), &source, DRAIN_PATIENCE).await;
            let bytes = archived?;
            back?;
            say(
                start,
                &format!(
                    "swarm: {source} active again ({} KiB of state)",
                    bytes.len() / 1024
                ),
            );
            bytes
        };
        files.push((
            SWARM,
            bytes,
            format!("/var/lib/docker/swarm of {source}, engine stopped"),
        ));
        match std::fs::read(&loaded.state_path) {
            Ok(bytes) => files.push((
                STATE,
                bytes,
                "clusterkit's state (.clusterkit/state.toml)".into(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", loaded.state_path.display()))
            }
        }

        let mut manifest = Manifest {
            nodes: spec
                .nodes
                .iter()
                .map(|n| format!("{} {}", n.name, n.mesh_address))
                .collect(),
            services: contents.services,
            secrets: contents.secrets,
            secrets_note: format!(
                "values inside {SWARM}, in the swarm's Raft log, encrypted by the swarm with a key kept in the same \
                 archive (unless the swarm is autolocked): guard this backup like a manager's disk"
            ),
            configs: contents.configs,
            excluded,
            ..Manifest::new(spec.name.as_str(), &rfc3339(created), &source)
        };
        for (n, bytes, what) in &files {
            manifest.add(n, what, bytes);
        }
        let manifest_bytes = manifest.to_json();
        let seal_bytes = seal.seal(&manifest_bytes);

        let mut written = Vec::new();
        for dest in &dests {
            match dest {
                Location::Dir(dir) => write_dir(dir, &files, &manifest_bytes, &seal_bytes)?,
                Location::S3 { bucket, prefix } => {
                    write_s3(
                        &nodes,
                        spec,
                        bucket,
                        prefix,
                        &files,
                        &manifest_bytes,
                        &seal_bytes,
                    )
                    .await?
                }
            }
            say(start, &format!("written: {dest}"));
            written.push(dest.to_string());
        }
        anyhow::Ok(written)
    })?;
    for w in &written {
        println!("{w}");
    }
    let how = if written.iter().any(|w| !w.starts_with("s3://")) {
        "restore on fresh nodes with `clusterkit restore --from DIR`"
    } else {
        "`clusterkit backup copy` brings it out of the cluster's S3 for `clusterkit restore --from DIR`"
    };
    eprintln!(
        "backup {name} of cluster {} taken in {:.0} s; {how}",
        spec.name,
        start.elapsed().as_secs_f64()
    );
    Ok(exit::OK)
}

/// Refuses an existing `dir` (a backup goes into a new one) and makes its parent.
fn prepare_new_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        anyhow::bail!(
            "{}: exists already: a backup goes into a new directory",
            dir.display()
        );
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(())
}

/// Writes the files, the seal, then the manifest into a new directory (0700,
/// files 0600).
fn write_dir(
    dir: &Path,
    files: &[(&str, Vec<u8>, String)],
    manifest: &[u8],
    seal: &[u8],
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    prepare_new_dir(dir)?;
    clusterkit_core::state::ensure_private_dir(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let all = files
        .iter()
        .map(|(n, b, _)| (*n, b.as_slice()))
        .chain([(SEAL, seal), (MANIFEST, manifest)]);
    for (name, bytes) in all {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// An S3 client of the cluster's storage (keep the forward alive while using it).
async fn cluster_s3(
    nodes: &[Arc<dyn Transport>],
    spec: &clusterkit_core::ClusterSpec,
) -> anyhow::Result<(
    clusterkit_core::transport::forward::Forward,
    clusterkit_storage::s3::S3,
)> {
    let key = clusterkit_storage::read_key(nodes).await?.ok_or_else(|| {
        anyhow::anyhow!("no node holds the S3 key: run `clusterkit up --only storage` first")
    })?;
    let (fwd, s3, _) = clusterkit_storage::connect_s3_any(nodes, spec, &key).await?;
    Ok((fwd, s3))
}

/// Writes the files, the seal, then the manifest under `prefix` in the
/// cluster's S3.
async fn write_s3(
    nodes: &[Arc<dyn Transport>],
    spec: &clusterkit_core::ClusterSpec,
    bucket: &str,
    prefix: &str,
    files: &[(&str, Vec<u8>, String)],
    manifest: &[u8],
    seal: &[u8],
) -> anyhow::Result<()> {
    let (_fwd, s3) = cluster_s3(nodes, spec).await?;
    s3.ensure_bucket(bucket).await?;
    for (name, bytes, _) in files {
        s3.put(bucket, &format!("{prefix}/{name}"), bytes.clone())
            .await?;
    }
    s3.put(bucket, &format!("{prefix}/{SEAL}"), seal.to_vec())
        .await?;
    s3.put(bucket, &format!("{prefix}/{MANIFEST}"), manifest.to_vec())
        .await?;
    Ok(())
}

/// A backup's files, by name.
type Files = Vec<(String, Vec<u8>)>;

/// Reads a backup directory: its sealed manifest (opened with `key`) and
/// every file, each checked against it; archives read member by member and
/// the state parsed, all before anything is touched.
fn read_dir(dir: &Path, key: Option<&SealKey>) -> anyhow::Result<(Manifest, Files)> {
    let mpath = dir.join(MANIFEST);
    let text = match std::fs::read(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A directory of backups: name them.
            let mut inside: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join(MANIFEST).exists())
                .map(|e| e.path().display().to_string())
                .collect();
            inside.sort();
            if inside.is_empty() {
                anyhow::bail!(
                    "{}: no {MANIFEST} here: not a clusterkit backup (or an incomplete one: the manifest is written last)",
                    dir.display()
                );
            }
            anyhow::bail!(
                "{}: a directory of backups; restore one of them, e.g. the newest:\n  {}",
                dir.display(),
                inside.join("\n  ")
            );
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", mpath.display())),
    };
    let seal = std::fs::read(dir.join(SEAL)).ok();
    let at = mpath.display().to_string();
    let manifest = match key {
        Some(key) => Manifest::open(&at, &text, seal.as_deref(), key)
            .map_err(|e| match seal {
                None => anyhow::anyhow!(
                    "{e}\n(a backup taken before backups were sealed: `restore --unsealed` accepts it, \
                     if you are sure nobody changed it)"
                ),
                Some(_) => e.into(),
            })?,
        None => Manifest::parse(&at, &text)?,
    };
    let mut files = Vec::new();
    for f in &manifest.files {
        let path = dir.join(&f.name);
        let bytes = std::fs::read(&path).map_err(|e| BackupError::Damaged {
            file: path.display().to_string(),
            why: e.to_string(),
        })?;
        manifest
            .verify(&f.name, &bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        if f.name.ends_with(".tar.gz") {
            check_archive(&f.name, &bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        } else if f.name == STATE {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| anyhow::anyhow!("{}: {STATE}: not text", dir.display()))?;
            clusterkit_core::state::State::parse(text)
                .map_err(|e| anyhow::anyhow!("{}: {STATE}: {e}", dir.display()))?;
        }
        files.push((f.name.clone(), bytes));
    }
    Ok((manifest, files))
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
    let start = Instant::now();
    let dir = match Location::parse(from)? {
        Location::Dir(d) => d,
        Location::S3 { .. } => anyhow::bail!(
            "{from}: restore reads a directory of this machine (the cluster's own S3 is rebuilt after the swarm): \
             take backups with `--to DIR` too, or copy one out of the bucket first"
        ),
    };
    let key = if unsealed {
        eprintln!(
            "--unsealed: the backup's seal is not checked (its files, names and archives are)"
        );
        None
    } else {
        Some(seal_key(loaded)?)
    };
    let (manifest, files) = read_dir(&dir, key.as_ref())?;
    let file = |n: &str| {
        files
            .iter()
            .find(|(f, _)| f == n)
            .map(|(_, b)| b.as_slice())
    };
    let spec = &loaded.built.spec;
    if manifest.cluster != spec.name.as_str() {
        anyhow::bail!(
            "{}: a backup of cluster `{}`, and this description is of cluster `{}`: restore it with that \
             cluster's description (or set `name = \"{}\"` in clusterkit.toml)",
            dir.display(),
            manifest.cluster,
            spec.name,
            manifest.cluster
        );
    }
    let swarm = file(SWARM)
        .ok_or_else(|| anyhow::anyhow!("{}: no {SWARM} in this backup", dir.display()))?;
    say(
        start,
        &format!(
            "backup {} of cluster {}: {} files checked; {} services, {} secrets, {} configs",
            manifest.created,
            manifest.cluster,
            manifest.files.len(),
            manifest.services.len(),
            manifest.secrets.len(),
            manifest.configs.len()
        ),
    );

    // clusterkit's state: mesh addresses and the storage's copies as they were.
    if let Some(state) = file(STATE) {
        restore_state(&loaded.state_path, state)?;
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

    say(start, "restore 1/4: Docker Engine and the WireGuard mesh");
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
            say(
                start,
                "restore 2/4: Prometheus's and Grafana's data into their volumes on the managers",
            );
            match clusterkit_monitor::backup::restore_volumes(
                &nodes,
                spec,
                restored_monitoring[0],
                restored_monitoring[1],
            )
            .await
            {
                Ok(done) => say(start, &format!("restored: {}", done.join(", "))),
                Err(e) => say(start, &format!("not restored: {e}")),
            }
        }
        // The swarm starts the backup's services as soon as it is back: the
        // images they run go first, or their first tasks are rejected on
        // fresh nodes ("No such image") until `up` sends them.
        let lines = Lines::stderr();
        let cx = Context::new(&nodes, spec, &lines);
        let needs = clusterkit_ops::up::engine(false, None).images(&cx).await?;
        clusterkit_core::transport::images::provide(&needs, &|m: &str| say(start, m)).await?;
        let t = by_name(&nodes, &first).expect("connected");
        say(start, &format!("restore 3/4: the swarm's state on {first}, then a new cluster from it (--force-new-cluster)"));
        clusterkit_swarm::backup::unpack(t.as_ref(), swarm, ENGINE_PATIENCE).await?;
        let change = clusterkit_swarm::recover(&nodes, spec, &first).await?;
        // The backup was copied from a drained node: the swarm remembers it so.
        clusterkit_swarm::roll::undrain(t.as_ref(), &first).await?;
        let moved = clusterkit_swarm::backup::reschedule_pending(t.as_ref()).await?;
        if !moved.is_empty() {
            say(
                start,
                &format!("pending tasks given a new start: {}", moved.join(", ")),
            );
        }
        say(
            start,
            &format!(
                "swarm restored on {first}{}",
                if change.joined.is_empty() {
                    String::new()
                } else {
                    format!("; joined: {}", change.joined.join(", "))
                }
            ),
        );
        anyhow::Ok(())
    })?;
    say(
        start,
        "restore 4/4: `up` for the rest (storage, monitoring, stacks)",
    );
    let code = crate::up::run(&loaded, None, false, false, ProgressMode::Plain, true)?;
    if code == exit::OK {
        eprintln!(
            "restored from {} in {:.0} s: the swarm's services, secrets and configs are back; \
             storage was made afresh (its data was not in the backup)",
            dir.display(),
            start.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "the swarm is restored; finish with `clusterkit up` once the cause above is fixed"
        );
    }
    Ok(code)
}

/// Puts the backup's state file in place; a different local one is kept
/// beside it (`state.toml.before-restore`).
fn restore_state(path: &PathBuf, state: &[u8]) -> anyhow::Result<()> {
    let current = std::fs::read(path).ok();
    if current.as_deref() == Some(state) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        clusterkit_core::state::ensure_private_dir(dir)?;
    }
    if current.is_some() {
        let keep = path.with_extension("toml.before-restore");
        std::fs::rename(path, &keep).with_context(|| format!("keeping {}", keep.display()))?;
        eprintln!(
            "{}: the backup's state replaces it; the old one is {}",
            path.display(),
            keep.display()
        );
    }
    std::fs::write(path, state).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where `backup list` looks by default: this cluster's backups on its S3.
fn default_from(spec: &clusterkit_core::ClusterSpec) -> String {
    format!("{DEFAULT_TO}/{}", spec.name)
}

/// One backup found by [`find`].
pub struct Found {
    /// Where it is.
    pub at: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its files' size.
    pub bytes: u64,
}

/// Lists the backups under `from` (a directory of backups or an S3 prefix),
/// oldest first.
pub fn list(loaded: &Loaded, from: Option<&str>) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    let from = from.map_or_else(|| default_from(spec), str::to_string);
    let key = SealKey::load(&state_dir(loaded))?;
    if key.is_none() {
        eprintln!(
            "seals not checked: no {SEAL_KEY_FILE} in {} (restore needs it)",
            state_dir(loaded).display()
        );
    }
    let found = find(loaded, &from, false, key.as_ref())?;
    if found.is_empty() {
        eprintln!("no backup under {from}");
        return Ok(exit::FAILURE);
    }
    for f in &found {
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

/// The backups under `from` (a directory of backups or an S3 prefix), oldest
/// first; `strict` as in [`Options`]. With `key`, a backup whose seal does
/// not match is left out (and named on stderr): a manifest anyone with the
/// S3 key could have written, with any time in it.
pub fn find(
    loaded: &Loaded,
    from: &str,
    strict: bool,
    key: Option<&SealKey>,
) -> anyhow::Result<Vec<Found>> {
    let spec = &loaded.built.spec;
    let mut found = Vec::new();
    let read = |at: &str, text: &[u8], seal: Option<&[u8]>| -> Option<Manifest> {
        let r = match key {
            Some(k) => Manifest::open(at, text, seal, k),
            None => Manifest::parse(at, text),
        };
        r.map_err(|e| eprintln!("left out: {e}")).ok()
    };
    match Location::parse(from)? {
        Location::Dir(dir) => {
            let entries =
                std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
            for e in entries.flatten() {
                let m = e.path().join(MANIFEST);
                if let Ok(text) = std::fs::read(&m) {
                    let seal = std::fs::read(e.path().join(SEAL)).ok();
                    let Some(manifest) = read(&m.display().to_string(), &text, seal.as_deref())
                    else {
                        continue;
                    };
                    let bytes = manifest.files.iter().map(|f| f.bytes).sum();
                    found.push(Found {
                        at: e.path().display().to_string(),
                        manifest,
                        bytes,
                    });
                }
            }
        }
        Location::S3 { bucket, prefix } => {
            crate::block_on(async {
                let (nodes, _) = connect(loaded, strict).await;
                let (_fwd, s3) = cluster_s3(&nodes, spec).await?;
                let suffix = format!("/{MANIFEST}");
                for (key, _) in s3.list(&bucket, &prefix).await? {
                    let Some(at) = key.strip_suffix(&suffix) else {
                        continue;
                    };
                    let text = s3.get(&bucket, &key).await?;
                    let seal = s3.get(&bucket, &format!("{at}/{SEAL}")).await.ok();
                    let Some(manifest) =
                        read(&format!("s3://{bucket}/{key}"), &text, seal.as_deref())
                    else {
                        continue;
                    };
                    let bytes = manifest.files.iter().map(|f| f.bytes).sum();
                    found.push(Found {
                        at: format!("s3://{bucket}/{at}"),
                        manifest,
                        bytes,
                    });
                }
                anyhow::Ok(())
            })?;
        }
    }
    found.sort_by(|a, b| a.manifest.created.cmp(&b.manifest.created));
    Ok(found)
}

/// Copies one backup from the cluster's S3 into a new directory under
/// `dir`, every file checked against the manifest. Prints the directory.
pub fn copy(loaded: &Loaded, from: &str, dir: &Path) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    let Location::S3 { bucket, prefix } = Location::parse(from)? else {
        anyhow::bail!(
            "{from}: copy reads a backup on the cluster's S3 (s3://BUCKET/PREFIX, as `clusterkit backup list` shows)"
        );
    };
    let key = seal_key(loaded)?;
    let (manifest, text, seal, files) = crate::block_on(async {
        let (nodes, _) = connect(loaded, false).await;
        let (_fwd, s3) = cluster_s3(&nodes, spec).await?;
        let mkey = format!("{prefix}/{MANIFEST}");
        let text = s3.get(&bucket, &mkey).await.map_err(|e| {
            anyhow::anyhow!("{e}\n{from}: no backup there? `clusterkit backup list` shows them")
        })?;
        let seal = s3.get(&bucket, &format!("{prefix}/{SEAL}")).await.ok();
        let manifest = Manifest::open(
            &format!("s3://{bucket}/{mkey}"),
            &text,
            seal.as_deref(),
            &key,
        )?;
        let mut files = Vec::new();
        for f in &manifest.files {
            let bytes = s3.get(&bucket, &format!("{prefix}/{}", f.name)).await?;
            manifest
                .verify(&f.name, &bytes)
                .map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
            files.push((f.name.clone(), bytes));
        }
        let seal = seal.expect("opened with its seal");
        anyhow::Ok((manifest, text, seal, files))
    })?;
    let name = prefix.rsplit('/').next().unwrap_or("backup");
    let target = dir.join(format!("{}-{name}", manifest.cluster));
    let files: Vec<(&str, Vec<u8>, String)> = files
        .into_iter()
        .map(|(n, b)| {
            let f = manifest.file(&n).expect("listed");
            (f.name.as_str(), b, f.what.clone())
        })
        .collect();
    write_dir(&target, &files, &text, &seal)?;
    println!("{}", target.display());
    eprintln!(
        "{} files checked and written; restore with `clusterkit restore --from {}`",
        files.len(),
        target.display()
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_directory_is_written_private_and_read_back_checked() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1-20261126T043000Z");
        let archive = swarm_archive();
        let mut m = Manifest::new("c1", "2026-11-26T04:30:00Z", "node2");
        m.add(SWARM, "state", &archive);
        let key = SealKey::generate();
        let files = vec![(SWARM, archive.clone(), "state".to_string())];
        let text = m.to_json();
        write_dir(&dir, &files, &text, &key.seal(&text)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(SWARM)), 0o600);
        assert_eq!(mode(&dir.join(MANIFEST)), 0o600);
        assert_eq!(mode(&dir.join(SEAL)), 0o600);
        let (back, read) = read_dir(&dir, Some(&key)).unwrap();
        assert_eq!(back, m);
        assert_eq!(read, vec![(SWARM.to_string(), archive.clone())]);
        // Another machine's key: refused.
        let e = read_dir(&dir, Some(&SealKey::generate()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("its seal does not match"), "{e}");
        // Never over an existing backup.
        let e = write_dir(&dir, &files, &text, &key.seal(&text))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exists already"), "{e}");
        // A directory of backups names them; a damaged file is named.
        let e = read_dir(tmp.path(), Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("a directory of backups") && e.contains("c1-20261126T043000Z"),
            "{e}"
        );
        std::fs::write(dir.join(SWARM), b"raff").unwrap();
        let e = read_dir(&dir, Some(&key)).unwrap_err().to_string();
        assert!(e.contains("swarm.tar.gz: 4 bytes"), "{e}");
        std::fs::remove_file(dir.join(SWARM)).unwrap();
        let e = read_dir(&dir, Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("swarm.tar.gz") && e.contains("damaged or incomplete"),
            "{e}"
        );
    }

    /// A swarm state archive as a node's tar makes it.
    fn swarm_archive() -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, "swarm/docker-state.json", &b"{}\n\n"[..])
            .unwrap();
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_sealed_backup_whose_archive_escapes_or_state_lies_is_refused_before_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SealKey::generate();
        let write = |name: &str, files: Vec<(&str, Vec<u8>, String)>| {
            let dir = tmp.path().join(name);
            let mut m = Manifest::new("c1", "2026-11-26T04:30:00Z", "node2");
            for (n, b, w) in &files {
                m.add(n, w, b);
            }
            let text = m.to_json();
            write_dir(&dir, &files, &text, &key.seal(&text)).unwrap();
            dir
        };
        // Sealed by the key's holder and still refused: what the archive holds.
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "swarm/x", "/etc/cron.d").unwrap();
        let linked = b.into_inner().unwrap().finish().unwrap();
        let dir = write("link", vec![(SWARM, linked, "state".into())]);
        let e = read_dir(&dir, Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("swarm.tar.gz: member `swarm/x` is a symbolic link"),
            "{e}"
        );
        let dir = write(
            "state",
            vec![(
                STATE,
                b"engine_version = \"1; reboot\"\n".to_vec(),
                "state".into(),
            )],
        );
        let e = read_dir(&dir, Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("state.toml: engine_version `1; reboot` is not a package version"),
            "{e}"
        );
        // Unsealed: refused, whatever it holds.
        let dir = write("unsealed", vec![(SWARM, swarm_archive(), "state".into())]);
        std::fs::remove_file(dir.join(SEAL)).unwrap();
        let e = format!("{:#}", read_dir(&dir, Some(&key)).unwrap_err());
        assert!(e.contains("no manifest.seal beside it"), "{e}");
        assert!(e.contains("`restore --unsealed` accepts it"), "{e}");
        // Accepted unsealed on request: every other check still applies.
        read_dir(&dir, None).unwrap();
        let dir = write(
            "unsealed-state",
            vec![(
                STATE,
                b"engine_version = \"1; reboot\"\n".to_vec(),
                "state".into(),
            )],
        );
        std::fs::remove_file(dir.join(SEAL)).unwrap();
        assert!(read_dir(&dir, None).is_err());
    }

    #[test]
    fn the_local_state_is_kept_beside_the_restored_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".clusterkit").join("state.toml");
        restore_state(&path, b"a = 1\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a = 1\n");
        restore_state(&path, b"a = 1\n").unwrap();
        assert!(!path.with_extension("toml.before-restore").exists());
        restore_state(&path, b"a = 2\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a = 2\n");
        assert_eq!(
            std::fs::read(path.with_extension("toml.before-restore")).unwrap(),
            b"a = 1\n"
        );
    }
}
