//! Bringing a cluster back from a backup onto nodes outside any swarm, in
//! two steps around the caller's reload of the description: [`check`] (a
//! directory) or [`fetch`] (a directory or S3) reads the backup and checks
//! every file of it (nothing touched),
//! [`put_state`] puts its clusterkit state in place; the caller then loads
//! the description again (the mesh addresses and the storage's copies as
//! they were) and brings the nodes back with it: [`apply`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clusterkit_core::backup::{
    Location, Manifest, GRAFANA_FILE as GRAFANA, PROMETHEUS_FILE as PROMETHEUS,
    STATE_FILE as STATE, SWARM_FILE as SWARM,
};
use clusterkit_core::engine::Context;
use clusterkit_core::spec::{Loaded, SwarmRole};
use clusterkit_core::transport::Cmd;
use serde::Serialize;

use clusterkit_core::backup::SealKey;

use crate::backup::{cluster_s3, read_dir, read_s3, seal_key, Files, S3Source};
use crate::session::{Reach, Session};
use crate::up::{Phase, UpOptions, UpReport};
use crate::OpsError;

/// How long a node's engine may take to stop or start around the unpacking.
const ENGINE_PATIENCE: Duration = Duration::from_secs(120);

/// A backup read from a directory or S3, every file checked against its
/// manifest (and its seal, unless asked otherwise), archives read member by
/// member.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Where it was read from: a directory, or `s3://BUCKET/PREFIX`.
    pub from: String,
    /// Its manifest.
    pub manifest: Manifest,
    files: Files,
}

impl Checked {
    /// One of its files, by name (`swarm.tar.gz`...).
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// Reads the backup at `from` (a directory of this machine) for the cluster
/// of `loaded`, its seal checked with this machine's key unless `unsealed`.
/// Nothing is touched.
pub fn check(loaded: &Loaded, from: &str, unsealed: bool) -> Result<Checked, OpsError> {
    let dir = match Location::parse(from)? {
        Location::Dir(d) => d,
        Location::S3 { .. } => {
            return Err(OpsError::Refused(format!(
            "{from}: `check` reads a directory of this machine; a backup on S3 is read by `fetch`"
        )))
        }
    };
    let key = key_unless(loaded, unsealed)?;
    let (manifest, files) = read_dir(&dir, key.as_ref())?;
    checked(loaded, dir.display().to_string(), manifest, files)
}

fn key_unless(loaded: &Loaded, unsealed: bool) -> Result<Option<SealKey>, OpsError> {
    Ok(if unsealed {
        None
    } else {
        Some(seal_key(loaded)?)
    })
}

/// The backup as read, refused when it is another cluster's or holds no
/// swarm state.
fn checked(
    loaded: &Loaded,
    from: String,
    manifest: Manifest,
    files: Files,
) -> Result<Checked, OpsError> {
    let spec = &loaded.built.spec;
    if manifest.cluster != spec.name.as_str() {
        return Err(OpsError::Refused(format!(
            "{from}: a backup of cluster `{}`, and this description is of cluster `{}`: restore it with that \
             cluster's description (or set `name = \"{}\"` in clusterkit.toml)",
            manifest.cluster, spec.name, manifest.cluster
        )));
    }
    let checked = Checked {
        from,
        manifest,
        files,
    };
    if checked.file(SWARM).is_none() {
        return Err(OpsError::Refused(format!(
            "{}: no {SWARM} in this backup",
            checked.from
        )));
    }
    Ok(checked)
}

/// Reads the backup at `from` as [`check`] does, and also from S3:
/// `s3://BUCKET/PREFIX` (one backup, as `clusterkit backup list` names it)
/// is read from `source` when given (an S3 outside the cluster), else from
/// the cluster's own S3, which answers only while the cluster runs (a
/// restore's nodes are outside any swarm: its S3 is gone). Every file is
/// read into memory and checked before anything is touched; nothing is
/// written on this machine.
pub async fn fetch(
    session: &Session<'_>,
    from: &str,
    source: Option<&S3Source>,
    unsealed: bool,
) -> Result<Checked, OpsError> {
    let loaded = session.loaded();
    let (bucket, prefix) = match Location::parse(from)? {
        Location::Dir(_) => return check(loaded, from, unsealed),
        Location::S3 { bucket, prefix } => (bucket, prefix),
    };
    if prefix.is_empty() {
        return Err(OpsError::Refused(format!(
            "{from}: name one backup, s3://{bucket}/PREFIX/CLUSTER-TIME (`clusterkit backup list --from {from}` shows them)"
        )));
    }
    let key = key_unless(loaded, unsealed)?;
    let read = match source {
        Some(src) => {
            let s3 = clusterkit_storage::s3::S3::new(&src.endpoint, &src.region, &src.key);
            read_s3(&s3, &bucket, &prefix, key.as_ref())
                .await
                .map_err(|e| OpsError::Refused(format!("{e}\n(read from {})", src.endpoint)))?
        }
        None => {
            let nodes = session.connect(Reach::Patient).await.nodes;
            let spec = &loaded.built.spec;
            let (_fwd, s3) = cluster_s3(&nodes, spec, &bucket).await.map_err(|e| {
                OpsError::Refused(format!(
                    "{from}: the cluster's S3 does not answer ({e}).\n\
                     A restore's nodes are outside any swarm, where the cluster's S3 is gone: name the S3 that \
                     holds the backup with `--s3-endpoint URL` (its key in AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY), or copy the backup into a directory first"
                ))
            })?;
            read_s3(&s3, &bucket, &prefix, key.as_ref()).await?
        }
    };
    checked(loaded, from.to_string(), read.manifest, read.files)
}

/// Puts the backup's clusterkit state (if it holds one) in place of the
/// state file of `loaded`. A different local one is kept beside it; its
/// path is returned. Load the description again afterwards.
pub fn put_state(loaded: &Loaded, backup: &Checked) -> Result<Option<PathBuf>, OpsError> {
    match backup.file(STATE) {
        Some(state) => put_state_file(&loaded.state_path, state),
        None => Ok(None),
    }
}

fn put_state_file(path: &Path, state: &[u8]) -> Result<Option<PathBuf>, OpsError> {
    let current = std::fs::read(path).ok();
    if current.as_deref() == Some(state) {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        clusterkit_core::state::ensure_private_dir(dir)
            .map_err(OpsError::local(format!("creating {}", dir.display())))?;
    }
    let mut kept = None;
    if current.is_some() {
        let keep = path.with_extension("toml.before-restore");
        std::fs::rename(path, &keep)
            .map_err(OpsError::local(format!("keeping {}", keep.display())))?;
        kept = Some(keep);
    }
    std::fs::write(path, state).map_err(OpsError::local(format!("writing {}", path.display())))?;
    Ok(kept)
}

/// How the nodes are brought back.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// As [`UpOptions::userspace`].
    pub userspace: Option<Vec<u8>>,
    /// As [`UpOptions::volumes`].
    pub volumes: Option<Vec<u8>>,
    /// As [`UpOptions::clusterkit_exe`]: a scheduled backup in the backup
    /// runs again.
    pub clusterkit_exe: Option<PathBuf>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The node the swarm was brought back on (`--force-new-cluster`).
    pub swarm_on: String,
    /// The nodes that joined it.
    pub joined: Vec<String>,
    /// Monitoring data put back (`prometheus`, `grafana`), or why not.
    pub monitoring: Result<Vec<String>, String>,
    /// Services whose pending tasks were given a new start.
    pub restarted: Vec<String>,
    /// The last step: `up` for the rest (storage, monitoring, stacks).
    pub up: UpReport,
    /// Seconds it took.
    pub seconds: f64,
}

/// Brings the cluster of `session` (loaded again after [`put_state`]) back
/// from `backup` onto nodes outside any swarm: Docker and the mesh, the
/// monitoring volumes, the images the backup's services run, the swarm's
/// state on the node it was copied from (else the first manager) and a new
/// cluster from it, then `up` for the rest. Nothing is touched while a node
/// is unreachable or already in a swarm. Run again after a failure: each
/// step is safe to repeat until the swarm is back; after that, `up`
/// finishes.
pub async fn apply(
    session: &Session<'_>,
    backup: &Checked,
    options: &RestoreOptions,
) -> Result<RestoreReport, OpsError> {
    let start = Instant::now();
    let say = |m: String| session.notice(None, m);
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let manifest = &backup.manifest;
    say(format!(
        "backup {} of cluster {}: {} files checked; {} services, {} secrets, {} configs",
        manifest.created,
        manifest.cluster,
        manifest.files.len(),
        manifest.services.len(),
        manifest.secrets.len(),
        manifest.configs.len()
    ));
    // The swarm comes back on the node it was copied from when the cluster
    // still has it (its state names that node's addresses), else on the
    // first manager.
    let managers: Vec<&str> = spec
        .nodes
        .iter()
        .filter(|n| n.role == SwarmRole::Manager)
        .map(|n| n.name.as_str())
        .collect();
    let first = managers
        .iter()
        .find(|n| **n == manifest.swarm_source)
        .or(managers.first())
        .map(|n| n.to_string())
        .ok_or_else(|| OpsError::Refused("no manager in this description".into()))?;
    // Every node, connected once for the whole restore.
    let nodes = session
        .connect_every("a restore needs every node; nothing was changed")
        .await?;
    session.lock(&nodes, "restore").await?;
    // Nothing is touched while any node is already in a swarm.
    let mut inside = Vec::new();
    for t in &nodes {
        let out = t
            .exec_raw(
                &Cmd::new(
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
        return Err(OpsError::Refused(format!(
            "{} already in a swarm: a restore builds the swarm from the backup on nodes outside any swarm. \
             On a cluster that still runs, take it apart first (`clusterkit down --yes`, which keeps data); \
             nothing was changed",
            inside.join(", ")
        )));
    }

    say("restore 1/4: Docker Engine and the WireGuard mesh".into());
    for phase in [Phase::Docker, Phase::Mesh] {
        let only = UpOptions {
            only: Some(phase),
            userspace: options.userspace.clone(),
            ..UpOptions::default()
        };
        crate::up::up(session, &only).await?;
    }
    let mut monitoring = Ok(Vec::new());
    let restored_monitoring = [backup.file(PROMETHEUS), backup.file(GRAFANA)];
    if clusterkit_monitor::enabled(spec) && restored_monitoring.iter().any(Option::is_some) {
        say(
            "restore 2/4: Prometheus's and Grafana's data into their volumes on the managers"
                .into(),
        );
        monitoring = clusterkit_monitor::backup::restore_volumes(
            &nodes,
            spec,
            restored_monitoring[0],
            restored_monitoring[1],
        )
        .await
        .map_err(|e| e.to_string());
        match &monitoring {
            Ok(done) => say(format!("restored: {}", done.join(", "))),
            Err(e) => say(format!("not restored: {e}")),
        }
    }
    // The swarm starts the backup's services as soon as it is back: the
    // images they run go first, or their first tasks are rejected on fresh
    // nodes ("No such image") until `up` sends them.
    let cx = Context::new(&nodes, spec, session.reporter());
    let needs = crate::up::engine(false, None, None, None)
        .images(&cx)
        .await?;
    clusterkit_core::transport::images::provide(&needs, &|m: &str| say(m.to_string())).await?;
    let t = nodes
        .iter()
        .find(|t| t.node() == first)
        .expect("every node is connected");
    say(format!(
        "restore 3/4: the swarm's state on {first}, then a new cluster from it (--force-new-cluster)"
    ));
    let swarm = backup
        .file(SWARM)
        .expect("checked: a backup holds the swarm's state");
    clusterkit_swarm::backup::unpack(t.as_ref(), swarm, ENGINE_PATIENCE).await?;
    let change = clusterkit_swarm::recover(&nodes, spec, &first).await?;
    // The backup was copied from a drained node: the swarm remembers it so.
    clusterkit_swarm::roll::undrain(t.as_ref(), &first).await?;
    let restarted = clusterkit_swarm::backup::reschedule_pending(t.as_ref()).await?;
    if !restarted.is_empty() {
        say(format!(
            "pending tasks given a new start: {}",
            restarted.join(", ")
        ));
    }
    say(format!(
        "swarm restored on {first}{}",
        if change.joined.is_empty() {
            String::new()
        } else {
            format!("; joined: {}", change.joined.join(", "))
        }
    ));
    say("restore 4/4: `up` for the rest (storage, monitoring, stacks)".into());
    let all = UpOptions {
        rebalance: true,
        userspace: options.userspace.clone(),
        volumes: options.volumes.clone(),
        clusterkit_exe: options.clusterkit_exe.clone(),
        ..UpOptions::default()
    };
    let up = crate::up::up(session, &all).await.map_err(|e| {
        OpsError::Refused(format!(
            "{e}\nthe swarm is restored; finish with `clusterkit up` once the cause above is fixed"
        ))
    })?;
    Ok(RestoreReport {
        swarm_on: first,
        joined: change.joined,
        monitoring,
        restarted,
        up,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;
    use clusterkit_core::transport::Transport;

    #[tokio::test]
    async fn a_restore_onto_a_node_in_a_swarm_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = crate::testkit::loaded(3, tmp.path());
        let backup = Checked {
            from: tmp.path().join("c-1").display().to_string(),
            manifest: Manifest::new("clusterkit", "2026-11-26T04:30:00Z", "node2"),
            files: vec![(SWARM.to_string(), b"archive".to_vec())],
        };
        let nodes: Vec<Scripted> = (1..=3)
            .map(|i| Scripted::new(&format!("node{i}")))
            .collect();
        for (n, state) in nodes.iter().zip(["inactive", "active", "no-engine"]) {
            n.on_stream("flock -n 9", "locked\n");
            n.on(
                "docker info -f '{{.Swarm.LocalNodeState}}'",
                &format!("{state}\n"),
            );
        }
        let given = crate::testkit::transports(&nodes);
        let lines = Lines::to_string();
        let session = Session::with_transports(&loaded, crate::Options::default(), &lines, given);
        let e = apply(&session, &backup, &RestoreOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("node2 (active) already in a swarm"), "{e}");
        assert!(e.contains("nothing was changed"), "{e}");
        for n in &nodes {
            // The lock, then the one question: nothing else was asked.
            let asked = n.asked();
            assert_eq!(asked.len(), 2, "{}: {asked:?}", n.node());
            assert!(asked[1].contains("Swarm.LocalNodeState"), "{asked:?}");
        }

        // A node missing: refused before any question.
        let two = crate::testkit::transports(&nodes[..2]);
        let session = Session::with_transports(&loaded, crate::Options::default(), &lines, two);
        let e = apply(&session, &backup, &RestoreOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("node3: no transport given for it"), "{e}");
        assert!(
            e.contains("1 node(s) unreachable: a restore needs every node"),
            "{e}"
        );
        assert_eq!(nodes[0].asked().len(), 2, "nothing more asked");
    }

    #[test]
    fn the_local_state_is_kept_beside_the_restored_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".clusterkit").join("state.toml");
        assert_eq!(put_state_file(&path, b"a = 1\n").unwrap(), None);
        assert_eq!(std::fs::read(&path).unwrap(), b"a = 1\n");
        assert_eq!(put_state_file(&path, b"a = 1\n").unwrap(), None);
        assert!(!path.with_extension("toml.before-restore").exists());
        let kept = put_state_file(&path, b"a = 2\n").unwrap();
        assert_eq!(kept, Some(path.with_extension("toml.before-restore")));
        assert_eq!(std::fs::read(&path).unwrap(), b"a = 2\n");
        assert_eq!(
            std::fs::read(path.with_extension("toml.before-restore")).unwrap(),
            b"a = 1\n"
        );
    }
}
