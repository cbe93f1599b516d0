//! Backups: [`take`] one (the swarm's state, as Docker documents it: one
//! manager's engine stopped, quorum kept; a Prometheus snapshot; Grafana's
//! data; clusterkit's own state; a sealed manifest with checksums), [`list`]
//! those kept under a directory or an S3 prefix, [`copy`] one out of the
//! cluster's S3. Bringing one back is [`crate::restore`].
//!
//! The steps are said through the session's reporter as notices; what was
//! done comes back as a report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clusterkit_core::backup::{
    check_archive, rfc3339, stamp, BackupError, Location, Manifest, SealKey,
    GRAFANA_FILE as GRAFANA, MANIFEST, PROMETHEUS_FILE as PROMETHEUS, SEAL, SEAL_KEY_FILE,
    STATE_FILE as STATE, SWARM_FILE as SWARM,
};
use clusterkit_core::spec::{ClusterSpec, Loaded, StorageBackend};
use clusterkit_core::transport::forward::Forward;
use clusterkit_core::transport::Transport;
use serde::Serialize;

use crate::session::{state_dir, Reach, Session};
use crate::OpsError;

/// Where backups go when no destination is given: the cluster's own S3.
pub const DEFAULT_TO: &str = "s3://clusterkit/backups";

/// How long a manager's engine may take to stop or start for the copy.
const ENGINE_PATIENCE: Duration = Duration::from_secs(120);
/// How long a drain (or the activation after it) may take.
const DRAIN_PATIENCE: Duration = Duration::from_secs(180);

fn refused(m: impl Into<String>) -> OpsError {
    OpsError::Refused(m.into())
}

fn by_name<'a>(nodes: &'a [Arc<dyn Transport>], name: &str) -> Option<&'a Arc<dyn Transport>> {
    nodes.iter().find(|t| t.node() == name)
}

/// The seal key backups of this cluster are opened with: this machine's, or
/// an error saying where it must be.
pub fn seal_key(loaded: &Loaded) -> Result<SealKey, OpsError> {
    let dir = state_dir(loaded);
    SealKey::load(&dir)?.ok_or_else(|| {
        refused(format!(
            "no backup seal key in {}: backups are sealed with the {SEAL_KEY_FILE} made by the first backup \
             of this cluster, in the state directory of the machine that took it. Copy it here (mode 0600) \
             to read its backups",
            dir.display()
        ))
    })
}

/// How a backup is taken.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Destinations: directories of this machine or `s3://BUCKET/PREFIX` on
    /// the cluster's S3 (empty: [`DEFAULT_TO`]).
    pub to: Vec<String>,
    /// Managers never taken out for the copy (the scheduled service's own
    /// node).
    pub never: Vec<String>,
    /// The key that seals the backup (the scheduled service's, from its
    /// secret); `None`: this machine's, made on first use.
    pub seal: Option<SealKey>,
}

/// A backup taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupReport {
    /// Its name: the time it was taken (`20261126T043000Z`).
    pub name: String,
    /// Where it was written, one entry per destination.
    pub written: Vec<String>,
    /// The manager whose swarm state was copied.
    pub source: String,
    /// Its files and their sizes in bytes.
    pub files: Vec<(String, u64)>,
    /// What is not in it, and why.
    pub excluded: Vec<String>,
    /// The seal key, when this backup made it (the first of the cluster):
    /// keep a copy off the cluster.
    pub seal_key_made: Option<PathBuf>,
    /// Seconds it took.
    pub seconds: f64,
}

/// Takes a backup and writes it to every destination of `options`. Every
/// destination is checked, and every node reached, before anything is
/// touched; the manager copied is drained first (its tasks start elsewhere)
/// and made active again whatever the copy gave.
pub async fn take(
    session: &Session<'_>,
    options: &BackupOptions,
) -> Result<BackupReport, OpsError> {
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let start = Instant::now();
    let say = |m: String| session.notice(None, m);
    let mut seal_key_made = None;
    let seal = match &options.seal {
        Some(k) => k.clone(),
        None => {
            let dir = session.state_dir();
            let (k, made) = SealKey::load_or_create(&dir)?;
            if made {
                let path = dir.join(SEAL_KEY_FILE);
                session.notice(
                    None,
                    format!(
                        "made the backup seal key {}: restore accepts only backups sealed with it. Keep a copy \
                         off the cluster with your other secrets; every machine that restores needs it",
                        path.display()
                    ),
                );
                seal_key_made = Some(path);
            }
            k
        }
    };
    let created = SystemTime::now();
    let name = stamp(created);
    let to: Vec<String> = if options.to.is_empty() {
        vec![DEFAULT_TO.to_string()]
    } else {
        options.to.clone()
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
        && spec.storage.backend == StorageBackend::None
    {
        return Err(refused(
            "this cluster has no storage ([storage] backend = \"none\"): give a directory, e.g. `--to /srv/backups`",
        ));
    }
    let nodes = session
        .connect_every(
            "a backup stops one manager's engine for a moment and needs the other managers up to keep \
             the majority. Bring them back, or take a dead one out (`clusterkit node remove NODE`); \
             nothing was changed",
        )
        .await?;
    session.lock(&nodes, "backup").await?;
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
        refused(format!(
            "the swarm's manager {source} is no node of this description: its engine's hostname must be \
             its inventory name"
        ))
    })?;
    // Another manager speaks for the swarm while the source's engine stops.
    let mgr = st
        .managers
        .iter()
        .filter(|m| m.hostname != source)
        .find_map(|m| by_name(&nodes, &m.hostname))
        .unwrap_or(source_t);

    let contents = clusterkit_swarm::backup::contents(mgr.as_ref()).await?;
    say(format!(
        "swarm: {} services, {} secrets, {} configs",
        contents.services.len(),
        contents.secrets.len(),
        contents.configs.len()
    ));
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
                say(format!(
                    "prometheus: snapshot taken on {n} ({} KiB)",
                    bytes.len() / 1024
                ));
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
                say(format!(
                    "grafana: data directory read on {n} ({} KiB)",
                    bytes.len() / 1024
                ));
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
        say(format!(
            "swarm: {source} is the only manager: its engine stops for the copy (services on it pause)"
        ));
    } else {
        say(format!(
            "swarm: draining {source} (not the leader; its tasks start elsewhere first)"
        ));
        clusterkit_swarm::roll::drain(mgr.as_ref(), &source, DRAIN_PATIENCE).await?;
        say(format!(
            "swarm: stopping {source}'s engine, copying its swarm state, starting it"
        ));
    }
    let archived = clusterkit_swarm::backup::archive(source_t.as_ref(), ENGINE_PATIENCE).await;
    let bytes = if single {
        archived?
    } else {
        // Back in service whatever the copy gave.
        let back = clusterkit_swarm::roll::activate(mgr.as_ref(), &source, DRAIN_PATIENCE).await;
        let bytes = archived?;
        back?;
        say(format!(
            "swarm: {source} active again ({} KiB of state)",
            bytes.len() / 1024
        ));
        bytes
    };
    files.push((
        SWARM,
        bytes,
        format!("/var/lib/docker/swarm of {source}, engine stopped"),
    ));
    // What the nodes sent is read as a restore will read it: a backup that
    // could not be restored is refused now, not found out on the bad day.
    for (name, bytes, what) in files.iter().filter(|(n, _, _)| n.ends_with(".tar.gz")) {
        check_archive(name, bytes).map_err(|e| {
            refused(format!(
                "{what}: {e}. Nothing was written; look at the node's disk and engine, then back up again"
            ))
        })?;
    }
    match std::fs::read(&loaded.state_path) {
        Ok(bytes) => files.push((
            STATE,
            bytes,
            "clusterkit's state (.clusterkit/state.toml)".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(OpsError::local(format!(
                "reading {}",
                loaded.state_path.display()
            ))(e))
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
        excluded: excluded.clone(),
        ..Manifest::new(spec.name.as_str(), &rfc3339(created), &source)
    };
    for (n, bytes, what) in &files {
        manifest.add(n, what, bytes);
    }
    let manifest_bytes = manifest.to_json();
    let seal_bytes = seal.seal(&manifest_bytes);

    let mut written = Vec::new();
    // One client of the cluster's S3 for every S3 destination (its forward
    // kept while it is used).
    let mut cluster = None;
    for dest in &dests {
        match dest {
            Location::Dir(dir) => write_dir(dir, &files, &manifest_bytes, &seal_bytes)?,
            Location::S3 { bucket, prefix } => {
                let (_fwd, s3) = match &cluster {
                    Some(c) => c,
                    None => cluster.insert(cluster_s3(&nodes, spec, bucket).await?),
                };
                s3.ensure_bucket(bucket).await?;
                for (name, bytes, _) in &files {
                    s3.put(bucket, &format!("{prefix}/{name}"), bytes.clone())
                        .await?;
                }
                s3.put(bucket, &format!("{prefix}/{SEAL}"), seal_bytes.clone())
                    .await?;
                s3.put(
                    bucket,
                    &format!("{prefix}/{MANIFEST}"),
                    manifest_bytes.clone(),
                )
                .await?;
            }
        }
        say(format!("written: {dest}"));
        written.push(dest.to_string());
    }
    Ok(BackupReport {
        name,
        written,
        source,
        files: files
            .iter()
            .map(|(n, b, _)| (n.to_string(), b.len() as u64))
            .collect(),
        excluded,
        seal_key_made,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Refuses an existing `dir` (a backup goes into a new one) and makes its parent.
fn prepare_new_dir(dir: &Path) -> Result<(), OpsError> {
    if dir.exists() {
        return Err(refused(format!(
            "{}: exists already: a backup goes into a new directory",
            dir.display()
        )));
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(OpsError::local(format!("creating {}", parent.display())))?;
    }
    Ok(())
}

/// Writes the files, the seal, then the manifest into a new directory (0700,
/// files 0600).
pub(crate) fn write_dir(
    dir: &Path,
    files: &[(&str, Vec<u8>, String)],
    manifest: &[u8],
    seal: &[u8],
) -> Result<(), OpsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    prepare_new_dir(dir)?;
    clusterkit_core::state::ensure_private_dir(dir)
        .map_err(OpsError::local(format!("creating {}", dir.display())))?;
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
            .map_err(OpsError::local(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// An S3 client of the cluster's storage (keep the forward alive while using it).
pub(crate) async fn cluster_s3(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    bucket: &str,
) -> Result<(Forward, clusterkit_storage::s3::S3), OpsError> {
    let key = clusterkit_storage::read_key(nodes).await?.ok_or_else(|| {
        refused("no node holds the S3 key: run `clusterkit up --only storage` first")
    })?;
    let (fwd, s3, _) = clusterkit_storage::connect_s3_any(nodes, spec, &key, bucket).await?;
    Ok((fwd, s3))
}

/// A backup's files, by name.
pub(crate) type Files = Vec<(String, Vec<u8>)>;

/// Reads a backup directory: its sealed manifest (opened with `key`) and
/// every file, each checked against it; archives read member by member and
/// the state parsed, all before anything is touched.
pub(crate) fn read_dir(dir: &Path, key: Option<&SealKey>) -> Result<(Manifest, Files), OpsError> {
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
                return Err(refused(format!(
                    "{}: no {MANIFEST} here: not a clusterkit backup (or an incomplete one: the manifest is written last)",
                    dir.display()
                )));
            }
            return Err(refused(format!(
                "{}: a directory of backups; restore one of them, e.g. the newest:\n  {}",
                dir.display(),
                inside.join("\n  ")
            )));
        }
        Err(e) => return Err(OpsError::local(format!("reading {}", mpath.display()))(e)),
    };
    let seal = std::fs::read(dir.join(SEAL)).ok();
    let at = mpath.display().to_string();
    let manifest = match key {
        Some(key) => Manifest::open(&at, &text, seal.as_deref(), key).map_err(|e| match seal {
            None => refused(format!(
                "{e}\n(a backup taken before backups were sealed: `restore --unsealed` accepts it, \
                 if you are sure nobody changed it)"
            )),
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
        check_file(&dir.display().to_string(), &manifest, &f.name, &bytes)?;
        files.push((f.name.clone(), bytes));
    }
    Ok((manifest, files))
}

/// Checks one file of a backup read from `at` against its manifest; an
/// archive is read member by member, the state parsed.
fn check_file(at: &str, manifest: &Manifest, name: &str, bytes: &[u8]) -> Result<(), OpsError> {
    let here = |e: &dyn std::fmt::Display| refused(format!("{at}: {e}"));
    manifest.verify(name, bytes).map_err(|e| here(&e))?;
    if name.ends_with(".tar.gz") {
        check_archive(name, bytes).map_err(|e| here(&e))?;
    } else if name == STATE {
        let text = std::str::from_utf8(bytes).map_err(|_| here(&format!("{STATE}: not text")))?;
        clusterkit_core::state::State::parse(text).map_err(|e| here(&format!("{STATE}: {e}")))?;
    }
    Ok(())
}

/// A backup read from S3 by [`read_s3`]: its manifest (and the text it was
/// read from, with its seal) and every file, checked.
pub(crate) struct FromS3 {
    pub(crate) manifest: Manifest,
    pub(crate) text: Vec<u8>,
    pub(crate) seal: Option<Vec<u8>>,
    pub(crate) files: Files,
}

/// Reads the backup at `s3://bucket/prefix` through `s3`: its manifest,
/// opened with `key` (`None`: not sealed-checked), then every file it lists,
/// each checked as [`read_dir`] checks a directory's, before anything is
/// touched.
pub(crate) async fn read_s3(
    s3: &clusterkit_storage::s3::S3,
    bucket: &str,
    prefix: &str,
    key: Option<&SealKey>,
) -> Result<FromS3, OpsError> {
    let from = format!("s3://{bucket}/{prefix}");
    let mkey = format!("{prefix}/{MANIFEST}");
    let text = s3.get(bucket, &mkey).await.map_err(|e| {
        refused(format!(
            "{e}\n{from}: no backup there? `clusterkit backup list --from s3://{bucket}/PREFIX` shows them"
        ))
    })?;
    let seal = s3.get(bucket, &format!("{prefix}/{SEAL}")).await.ok();
    let at = format!("s3://{bucket}/{mkey}");
    let manifest = match key {
        Some(key) => Manifest::open(&at, &text, seal.as_deref(), key)?,
        None => Manifest::parse(&at, &text)?,
    };
    let mut files = Vec::new();
    for f in &manifest.files {
        let bytes = s3.get(bucket, &format!("{prefix}/{}", f.name)).await?;
        check_file(&from, &manifest, &f.name, &bytes)?;
        files.push((f.name.clone(), bytes));
    }
    Ok(FromS3 {
        manifest,
        text,
        seal,
        files,
    })
}

/// An S3 server outside the cluster that holds backups (copied there to
/// survive the cluster): where `restore --from s3://…` reads when the
/// cluster's own S3 is gone.
#[derive(Debug, Clone)]
pub struct S3Source {
    /// Its URL (`https://s3.example.net`; `http://` only on a network you
    /// trust: a backup holds the swarm's secrets).
    pub endpoint: String,
    /// The region it expects in signatures (`us-east-1` for most; Garage's
    /// own is `garage`).
    pub region: String,
    /// A key that may read the bucket.
    pub key: clusterkit_storage::S3Key,
}

impl S3Source {
    /// Checks the endpoint's URL: `http://` or `https://`, a host, nothing
    /// that could smuggle credentials (`user@`).
    pub fn new(
        endpoint: &str,
        region: &str,
        key: clusterkit_storage::S3Key,
    ) -> Result<Self, OpsError> {
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"));
        let host_ok = rest
            .map(|r| r.split('/').next().unwrap_or_default())
            .is_some_and(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            });
        if !host_ok {
            return Err(refused(format!(
                "{endpoint:?} is not an S3 endpoint: give its URL, e.g. https://s3.example.net or http://10.0.0.5:3900"
            )));
        }
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(refused(format!(
                "{region:?} is not an S3 region: letters, digits and `-` (us-east-1, garage)"
            )));
        }
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            key,
        })
    }

    /// Whether what it sends travels unencrypted.
    pub fn is_plain_http(&self) -> bool {
        self.endpoint.starts_with("http://")
    }
}

/// One backup found by [`find`].
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Where it is: a directory, or `s3://BUCKET/PREFIX`.
    pub at: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its files' size.
    pub bytes: u64,
}

/// "WHERE  CREATED  N services, N secrets  SIZE MiB".
impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  {}  {} services, {} secrets  {:.1} MiB",
            self.at,
            self.manifest.created,
            self.manifest.services.len(),
            self.manifest.secrets.len(),
            self.bytes as f64 / (1u64 << 20) as f64
        )
    }
}

/// What [`list`] and [`find`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// Where they were looked for.
    pub from: String,
    /// The backups, oldest first.
    pub found: Vec<Found>,
    /// Manifests left out, and why (a seal that does not match: anyone with
    /// the S3 key could have written it, with any time in it).
    pub left_out: Vec<String>,
    /// Whether seals were checked (`false`: no seal key on this machine).
    pub seals_checked: bool,
}

/// Where [`list`] looks by default: this cluster's backups on its S3.
pub fn default_from(spec: &ClusterSpec) -> String {
    format!("{DEFAULT_TO}/{}", spec.name)
}

/// Lists the backups under `from` (a directory of backups or an S3 prefix;
/// `None`: [`default_from`]), oldest first, with their seals checked when
/// this machine has the seal key.
pub async fn list(session: &Session<'_>, from: Option<&str>) -> Result<Listing, OpsError> {
    let loaded = session.loaded();
    let from = from.map_or_else(|| default_from(&loaded.built.spec), str::to_string);
    let key = SealKey::load(&session.state_dir())?;
    find(session, &from, key.as_ref()).await
}

/// The backups under `from` (a directory of backups or an S3 prefix),
/// oldest first. With `key`, a backup whose seal does not match is left out.
pub async fn find(
    session: &Session<'_>,
    from: &str,
    key: Option<&SealKey>,
) -> Result<Listing, OpsError> {
    let spec = &session.loaded().built.spec;
    let mut found = Vec::new();
    let mut left_out = Vec::new();
    let mut read = |at: &str, text: &[u8], seal: Option<&[u8]>| -> Option<Manifest> {
        let r = match key {
            Some(k) => Manifest::open(at, text, seal, k),
            None => Manifest::parse(at, text),
        };
        r.map_err(|e| left_out.push(e.to_string())).ok()
    };
    match Location::parse(from)? {
        Location::Dir(dir) => {
            let entries = std::fs::read_dir(&dir)
                .map_err(OpsError::local(format!("reading {}", dir.display())))?;
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
            let nodes = session.connect(Reach::Patient).await.nodes;
            let (_fwd, s3) = cluster_s3(&nodes, spec, &bucket).await?;
            let suffix = format!("/{MANIFEST}");
            for (key, _) in s3.list(&bucket, &prefix).await? {
                let Some(at) = key.strip_suffix(&suffix) else {
                    continue;
                };
                let text = s3.get(&bucket, &key).await?;
                let seal = s3.get(&bucket, &format!("{at}/{SEAL}")).await.ok();
                let Some(manifest) = read(&format!("s3://{bucket}/{key}"), &text, seal.as_deref())
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
        }
    }
    found.sort_by(|a, b| a.manifest.created.cmp(&b.manifest.created));
    Ok(Listing {
        from: from.to_string(),
        found,
        left_out,
        seals_checked: key.is_some(),
    })
}

/// A backup copied out of the cluster's S3.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyReport {
    /// The directory made (`DIR/CLUSTER-TIME`), which `restore` takes.
    pub dir: PathBuf,
    /// Files checked and written.
    pub files: usize,
}

/// Copies one backup from the cluster's S3 (`s3://BUCKET/PREFIX`, as
/// [`list`] names it) into a new directory under `dir`, its seal and every
/// file checked against the manifest.
pub async fn copy(session: &Session<'_>, from: &str, dir: &Path) -> Result<CopyReport, OpsError> {
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let Location::S3 { bucket, prefix } = Location::parse(from)? else {
        return Err(refused(format!(
            "{from}: copy reads a backup on the cluster's S3 (s3://BUCKET/PREFIX, as `clusterkit backup list` shows)"
        )));
    };
    let key = seal_key(loaded)?;
    let nodes = session.connect(Reach::Patient).await.nodes;
    let (_fwd, s3) = cluster_s3(&nodes, spec, &bucket).await?;
    let read = read_s3(&s3, &bucket, &prefix, Some(&key)).await?;
    let files: Vec<(&str, Vec<u8>, String)> = read
        .files
        .into_iter()
        .zip(&read.manifest.files)
        .map(|((_, bytes), f)| (f.name.as_str(), bytes, f.what.clone()))
        .collect();
    let seal = read.seal.expect("opened with its seal");
    let name = prefix.rsplit('/').next().unwrap_or("backup");
    let target = dir.join(format!("{}-{name}", read.manifest.cluster));
    write_dir(&target, &files, &read.text, &seal)?;
    Ok(CopyReport {
        dir: target,
        files: files.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;

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

    #[test]
    fn an_off_site_s3_is_a_url_with_a_host_and_a_region_of_letters() {
        let key = || clusterkit_storage::S3Key {
            id: "GK0a".into(),
            secret: "c3".into(),
        };
        let s = S3Source::new("https://s3.example.net/", "us-east-1", key()).unwrap();
        assert_eq!(s.endpoint, "https://s3.example.net");
        assert!(!s.is_plain_http());
        assert!(S3Source::new("http://[fd00::5]:3900", "garage", key())
            .unwrap()
            .is_plain_http());
        for bad in [
            "s3.example.net",
            "ftp://s3.example.net",
            "https://",
            "https://user:pw@s3.example.net",
            "https://s3.example.net\nHost: evil",
        ] {
            let e = S3Source::new(bad, "us-east-1", key())
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not an S3 endpoint"), "{bad}: {e}");
        }
        let e = S3Source::new("https://s3.example.net", "us east", key())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an S3 region"), "{e}");
        // The key's secret never shows in its debug form.
        assert!(!format!("{s:?}").contains("c3"), "{s:?}");
    }

    /// One entry of the swarm's node list, a manager labelled as clusterkit
    /// labels it.
    fn entry(i: u8, leader: bool, availability: &str) -> String {
        format!(
            r#"{{"ID": "id{i}", "Version": {{"Index": 7}}, "Description": {{"Hostname": "node{i}"}},
                "Status": {{"State": "ready", "Addr": "10.0.0.{i}"}},
                "Spec": {{"Role": "manager", "Availability": "{availability}",
                          "Labels": {{"clusterkit.node": "node{i}"}}}},
                "ManagerStatus": {{"Leader": {leader}, "Reachability": "reachable",
                                   "Addr": "10.0.0.{i}:2377"}}}}"#
        )
    }

    /// Three managers (node1 leads) answering a backup's questions, node2's
    /// copy of its swarm state exiting with `archive_exit`.
    fn three_managers(archive_exit: u32, archive: &[u8]) -> Vec<Scripted> {
        let list = |second: &str| {
            format!(
                "[{}, {}, {}]",
                entry(1, true, "active"),
                entry(2, false, second),
                entry(3, false, "active")
            )
        };
        let nodes: Vec<Scripted> = (1..=3)
            .map(|i| Scripted::new(&format!("node{i}")))
            .collect();
        for n in &nodes {
            n.on_stream("flock -n 9", "locked\n");
            n.on_engine(
                "GET",
                "/info",
                200,
                r#"{"Swarm": {"Managers": 3, "LocalNodeState": "active"}}"#,
            );
        }
        let n1 = &nodes[0];
        // The list says node2 drained once its drain was asked (the swarm
        // status and the drain's lookup read it before); so does the entry.
        n1.on_engine("GET", "/nodes", 200, &list("drain"));
        n1.on_engine_times("GET", "/nodes", 2, 200, &list("active"));
        n1.on_engine("GET", "/nodes/id2", 200, &entry(2, false, "drain"));
        n1.on_engine_times("GET", "/nodes/id2", 1, 200, &entry(2, false, "active"));
        n1.on_engine("POST", "/nodes/id2/update", 200, "");
        n1.on_engine(
            "GET",
            "/services",
            200,
            r#"[{"ID": "s1", "Spec": {"Name": "app_web", "Mode": {"Replicated": {"Replicas": 1}},
                "TaskTemplate": {"ContainerSpec": {"Image": "web:1@sha256:ab"}}}}]"#,
        );
        n1.on_engine(
            "GET",
            "/secrets",
            200,
            r#"[{"ID": "x", "Spec": {"Name": "db-password"}}]"#,
        );
        n1.on_engine("GET", "/configs", 200, "[]");
        n1.on_engine(
            "GET",
            "/tasks",
            200,
            r#"[{"ServiceID": "s1", "NodeID": "id1", "DesiredState": "running",
                 "Status": {"State": "running"}}]"#,
        );
        let n2 = &nodes[1];
        n2.on_bytes("cat /var/lib/clusterkit", archive);
        n2.on("rm -f /var/lib/clusterkit", "");
        // Last: the copy's script holds the two words above too.
        n2.on_exit(
            "tar -C /var/lib/docker -czf",
            archive_exit,
            "",
            "tar: swarm: Cannot open",
        );
        nodes
    }

    fn offline(dir: &Path) -> Loaded {
        let mut loaded = crate::testkit::loaded(3, dir);
        loaded.built.spec.monitoring.enabled = false;
        loaded.built.spec.storage.backend = StorageBackend::None;
        loaded
    }

    fn session<'a>(loaded: &'a Loaded, lines: &'a Lines, nodes: &[Scripted]) -> Session<'a> {
        let given = crate::testkit::transports(nodes);
        Session::with_transports(loaded, crate::Options::default(), lines, given)
    }

    /// Where in node1's requests `what` was asked (`METHOD /path` and the
    /// availability asked for, for node updates).
    fn updates(n1: &Scripted) -> Vec<String> {
        n1.engine_bodies("POST", "/nodes/id2/update")
            .iter()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                v["Availability"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_backup_drains_a_follower_copies_its_state_then_makes_it_active_again() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = offline(&tmp.path().join("cluster"));
        let nodes = three_managers(0, &swarm_archive());
        let lines = Lines::to_string();
        let s = session(&loaded, &lines, &nodes);
        let to = tmp.path().join("backups");
        let options = BackupOptions {
            to: vec![to.display().to_string()],
            ..BackupOptions::default()
        };
        let r = take(&s, &options).await.unwrap();
        // Not the leader: node2, drained, copied, then active again.
        assert_eq!(r.source, "node2");
        assert_eq!(
            updates(&nodes[0]),
            ["drain", "active"],
            "{:?}",
            nodes[0].asked()
        );
        let asked2 = nodes[1].asked();
        assert!(
            asked2
                .iter()
                .any(|a| a.contains("tar -C /var/lib/docker -czf")),
            "{asked2:?}"
        );
        assert!(r.seal_key_made.is_some(), "the first backup makes the key");
        assert_eq!(r.written.len(), 1);
        let dir = PathBuf::from(&r.written[0]);
        assert!(dir.starts_with(&to), "{}", dir.display());
        let key = SealKey::load(&s.state_dir()).unwrap().unwrap();
        let (manifest, files) = read_dir(&dir, Some(&key)).unwrap();
        assert_eq!(manifest.swarm_source, "node2");
        assert_eq!(manifest.services, ["app_web (web:1)"]);
        assert_eq!(manifest.secrets, ["db-password"]);
        assert_eq!(files, vec![(SWARM.to_string(), swarm_archive())]);
        assert!(
            lines.text().contains("swarm: draining node2"),
            "{}",
            lines.text()
        );
    }

    #[tokio::test]
    async fn a_failed_or_unreadable_copy_leaves_the_node_active_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = offline(&tmp.path().join("cluster"));
        let to = tmp.path().join("backups");
        let options = BackupOptions {
            to: vec![to.display().to_string()],
            ..BackupOptions::default()
        };
        // The copy fails on the node; the node sends something that is no
        // archive of a swarm's state.
        for (nodes, said) in [
            (
                three_managers(2, &swarm_archive()),
                "the engine was started again",
            ),
            (
                three_managers(0, b"<html>502</html>"),
                "/var/lib/docker/swarm of node2, engine stopped: swarm.tar.gz: unreadable",
            ),
        ] {
            let lines = Lines::to_string();
            let s = session(&loaded, &lines, &nodes);
            let e = take(&s, &options).await.unwrap_err().to_string();
            assert!(e.contains(said), "{e}");
            assert_eq!(updates(&nodes[0]), ["drain", "active"]);
            assert_eq!(
                std::fs::read_dir(&to).map(|d| d.count()).unwrap_or(0),
                0,
                "no backup written"
            );
        }
    }

    #[tokio::test]
    async fn a_backup_to_the_cluster_s3_without_storage_is_refused_before_any_node_is_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = offline(tmp.path());
        let nodes = three_managers(0, &swarm_archive());
        let lines = Lines::to_string();
        let s = session(&loaded, &lines, &nodes);
        let e = take(&s, &BackupOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("give a directory, e.g. `--to /srv/backups`"),
            "{e}"
        );
        assert!(nodes.iter().all(|n| n.asked().is_empty()));
    }

    #[tokio::test]
    async fn a_directory_of_backups_is_listed_oldest_first_and_a_foreign_seal_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = offline(&tmp.path().join("cluster"));
        let lines = Lines::to_string();
        let s = session(&loaded, &lines, &[]);
        let (key, _) = SealKey::load_or_create(&s.state_dir()).unwrap();
        let kept = tmp.path().join("kept");
        let archive = swarm_archive();
        for (name, created, sealed_by) in [
            ("b-new", "2026-11-27T04:30:00Z", key.clone()),
            ("b-old", "2026-11-26T04:30:00Z", key.clone()),
            ("b-foreign", "2026-11-28T04:30:00Z", SealKey::generate()),
        ] {
            let mut m = Manifest::new("clusterkit", created, "node2");
            m.add(SWARM, "state", &archive);
            let text = m.to_json();
            let files = vec![(SWARM, archive.clone(), "state".to_string())];
            write_dir(&kept.join(name), &files, &text, &sealed_by.seal(&text)).unwrap();
        }
        let l = list(&s, Some(kept.to_str().unwrap())).await.unwrap();
        assert!(l.seals_checked);
        let at: Vec<&str> = l
            .found
            .iter()
            .map(|f| f.at.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(at, ["b-old", "b-new"]);
        assert_eq!(l.left_out.len(), 1);
        assert!(l.left_out[0].contains("b-foreign"), "{:?}", l.left_out);
        assert_eq!(l.found[0].bytes, archive.len() as u64);
        let line = l.found[0].to_string();
        assert!(
            line.ends_with("b-old  2026-11-26T04:30:00Z  0 services, 0 secrets  0.0 MiB"),
            "{line}"
        );
        // A copy reads the cluster's S3, not a directory: refused at once.
        let e = copy(&s, kept.to_str().unwrap(), tmp.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("copy reads a backup on the cluster's S3"), "{e}");
    }

    /// A swarm state archive as a node's tar makes it.
    pub(crate) fn swarm_archive() -> Vec<u8> {
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
        let e = read_dir(&dir, Some(&key)).unwrap_err().to_string();
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
}
