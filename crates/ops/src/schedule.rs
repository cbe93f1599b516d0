//! The scheduled backup: a Swarm service that takes a backup every period
//! ([`set`], removed with [`off`]), kept following the cluster by `up`
//! ([`refresh`]: its nodes, their host keys, its key lines). The service
//! runs clusterkit's own executable (`backup run-schedule`), which the
//! caller names: this library cannot know where it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterkit_core::schedule::{self as sched, labels, Runner, Schedule};
use clusterkit_core::spec::{Loaded, StorageBackend};
use clusterkit_core::stack::{self, SecretValue, StackDeploy};
use clusterkit_core::transport::{fan_out, Cmd, Transport};
use serde::Serialize;

use crate::session::Session;
use crate::OpsError;

/// How long the service's task may take to start.
const START_PATIENCE: Duration = Duration::from_secs(180);

fn refused(m: impl Into<String>) -> OpsError {
    OpsError::Refused(m.into())
}

/// A schedule to set.
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// How often (`6h`, `1d`...).
    pub every: String,
    /// Destinations on the cluster's S3 (empty: [`crate::backup::DEFAULT_TO`]).
    pub to: Vec<String>,
    /// The image the service runs clusterkit in (it must hold the C library
    /// clusterkit was built against).
    pub image: String,
    /// clusterkit's executable, copied to the managers for the service.
    pub exe: PathBuf,
}

/// A schedule set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleReport {
    /// The schedule the service runs.
    pub schedule: Schedule,
    /// The service's name.
    pub service: &'static str,
    /// Whether anything changed.
    pub changed: bool,
}

/// Every node connected and the cluster's lock held, or an error naming the
/// unreachable nodes (or the lock's holder).
async fn connect_every(session: &Session<'_>) -> Result<Vec<Arc<dyn Transport>>, OpsError> {
    let nodes = session
        .connect_every(
            "the scheduled backup's key goes to every node. Bring them back, or take a dead one out \
             (`clusterkit node remove NODE`); nothing was changed",
        )
        .await?;
    session.lock(&nodes, "backup").await?;
    Ok(nodes)
}

/// Sets the scheduled backup: the service's key (kept when the swarm has
/// it), its public half on every node (usable from the mesh only),
/// clusterkit's executable on the managers, the runner document, the stack.
pub async fn set(
    session: &Session<'_>,
    options: &ScheduleOptions,
) -> Result<ScheduleReport, OpsError> {
    let loaded = session.loaded();
    sched::parse_every(&options.every).map_err(|e| refused(e.to_string()))?;
    let to: Vec<String> = if options.to.is_empty() {
        vec![crate::backup::DEFAULT_TO.to_string()]
    } else {
        options.to.clone()
    };
    sched::check_to(&to).map_err(|e| refused(e.to_string()))?;
    if loaded.built.spec.storage.backend == StorageBackend::None {
        return Err(refused(
            "this cluster has no storage ([storage] backend = \"none\"): a scheduled backup is written to its S3",
        ));
    }
    let schedule = Schedule {
        every: options.every.trim().to_string(),
        to,
        image: options.image.clone(),
    };
    let nodes = connect_every(session).await?;
    let known = current(manager(&nodes, loaded).await?.as_ref())
        .await?
        .map(|(_, k, _)| (k, None));
    let changed = apply(session, &nodes, &schedule, known, &options.exe).await?;
    Ok(ScheduleReport {
        schedule,
        service: sched::SERVICE,
        changed,
    })
}

/// What [`off`] removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OffReport {
    /// The nodes whose key line was removed.
    pub keys_removed: Vec<String>,
}

/// Removes the scheduled backup: the stack, its secrets and the nodes' key
/// lines go; backups taken stay, and so does the seal key.
pub async fn off(session: &Session<'_>) -> Result<OffReport, OpsError> {
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let nodes = connect_every(session).await?;
    let mgr = manager(&nodes, loaded).await?;
    remove_stack(mgr.as_ref()).await?;
    remove_key_secret(mgr.as_ref()).await?;
    remove_seal_secrets(mgr.as_ref()).await?;
    let mut keys_removed = Vec::new();
    for (n, r) in fan_out(&nodes, 16, |t| authorize(t, None, spec)).await {
        if r? {
            session.notice(Some(&n), "the backup service's key removed");
            keys_removed.push(n);
        }
    }
    Ok(OffReport { keys_removed })
}

/// Called at the end of a whole `up` (and so of a restore): a schedule the
/// swarm runs is set again, so that its nodes, their host keys and the key
/// lines follow the cluster. Nothing happens without one. Returns whether
/// anything changed.
pub async fn refresh(
    session: &Session<'_>,
    nodes: &[Arc<dyn Transport>],
    exe: &Path,
) -> Result<bool, OpsError> {
    let Ok(mgr) = manager(nodes, session.loaded()).await else {
        return Ok(false);
    };
    match current(mgr.as_ref()).await? {
        Some((schedule, key, seal)) => {
            apply(session, nodes, &schedule, Some((key, seal)), exe).await
        }
        None => Ok(false),
    }
}

/// The description the scheduled service works with, from its runner
/// document: the cluster as it was when the schedule was set, its state and
/// the nodes' host keys written into `dir` (private), where a
/// [`Session`] finds them.
pub fn runner_loaded(runner: &Runner, dir: &Path) -> Result<Loaded, OpsError> {
    let state_path = clusterkit_core::state::State::path_in(dir);
    let state_dir = state_path
        .parent()
        .expect("the state file is in a directory")
        .to_path_buf();
    clusterkit_core::state::ensure_private_dir(&state_dir)
        .map_err(OpsError::local(format!("creating {}", state_dir.display())))?;
    std::fs::write(&state_path, &runner.state)
        .map_err(OpsError::local(format!("writing {}", state_path.display())))?;
    let known = crate::session::known_hosts_path_in(&state_dir);
    std::fs::write(&known, &runner.known_hosts)
        .map_err(OpsError::local(format!("writing {}", known.display())))?;
    let state = clusterkit_core::state::State::load(&state_path)?;
    Ok(Loaded {
        built: clusterkit_core::spec::Built {
            spec: runner.spec.clone(),
            warnings: Default::default(),
            state,
        },
        state_path,
        state_changed: false,
    })
}

/// What the scheduled backup's task is given: the runner document at
/// `runner` and the seal key at [`sched::SEAL_IN_TASK`] (its Swarm secret),
/// each checked.
pub fn read_task_files(
    runner: &Path,
) -> Result<(Runner, clusterkit_core::backup::SealKey), OpsError> {
    let text =
        std::fs::read(runner).map_err(OpsError::local(format!("reading {}", runner.display())))?;
    let r: Runner = serde_json::from_slice(&text).map_err(|e| {
        OpsError::Refused(format!(
            "{}: not a runner document of this clusterkit: {e}",
            runner.display()
        ))
    })?;
    let seal = std::fs::read_to_string(sched::SEAL_IN_TASK).map_err(OpsError::local(format!(
        "reading the backup seal key at {}",
        sched::SEAL_IN_TASK
    )))?;
    let seal = clusterkit_core::backup::SealKey::from_hex(&seal)
        .map_err(|e| OpsError::Refused(format!("{}: {e}", sched::SEAL_IN_TASK)))?;
    Ok((r, seal))
}

/// What the scheduled backup's service does, for ever (`clusterkit backup
/// run-schedule`): it lists the backups under the schedule's S3
/// destinations sealed with `seal`, sleeps until the newest is `every` old
/// (looking again within the hour: one may have been taken by hand), then
/// takes one, never draining `me` (the node it runs on). A failed listing
/// or backup is said and tried again after [`sched::RETRY`]. Everything it
/// has to say goes to `log`, one line each; `dir` (private) receives the
/// runner's state and host keys ([`runner_loaded`]).
pub async fn serve(
    runner: &Runner,
    dir: &Path,
    me: &str,
    seal: &clusterkit_core::backup::SealKey,
    options: crate::Options,
    log: &(dyn Fn(&str) + Sync),
) -> Result<std::convert::Infallible, OpsError> {
    let loaded = runner_loaded(runner, dir)?;
    let reporter = LogLines {
        start: Instant::now(),
        log,
    };
    let every = runner.schedule.period();
    log(&format!(
        "backup every {} to {}, from {me}",
        runner.schedule.every,
        runner.schedule.to.join(", ")
    ));
    loop {
        // A session per round: its connections and lock go with it.
        let session = Session::new(&loaded, options.clone(), &reporter);
        let wait = match newest(&session, &runner.schedule.to, seal).await {
            Ok(n) => sched::wait(n, std::time::SystemTime::now(), every),
            Err(e) => {
                log(&format!(
                    "listing the backups failed: {e}; again in {}",
                    humantime::format_duration(sched::RETRY)
                ));
                drop(session);
                tokio::time::sleep(sched::RETRY).await;
                continue;
            }
        };
        if !wait.is_zero() {
            let wait = Duration::from_secs(wait.as_secs() + 1);
            log(&format!(
                "next backup in {}",
                humantime::format_duration(wait)
            ));
            drop(session);
            tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
            continue;
        }
        log("taking a backup");
        let backup = crate::backup::BackupOptions {
            to: runner.schedule.to.clone(),
            never: vec![me.to_string()],
            seal: Some(seal.clone()),
        };
        let taken = crate::backup::take(&session, &backup).await;
        drop(session);
        match taken {
            Ok(report) => log(&format!("backup taken: {}", report.written.join(", "))),
            Err(e) => {
                log(&format!(
                    "backup failed: {e}; again in {}",
                    humantime::format_duration(sched::RETRY)
                ));
                tokio::time::sleep(sched::RETRY).await;
            }
        }
    }
}

/// The newest backup under the S3 destinations `to` sealed with `seal`
/// (where `backup` writes for this cluster: DEST/CLUSTER/TIME), by its
/// manifest's time. What was left out is said.
async fn newest(
    session: &Session<'_>,
    to: &[String],
    seal: &clusterkit_core::backup::SealKey,
) -> Result<Option<std::time::SystemTime>, OpsError> {
    let cluster = &session.loaded().built.spec.name;
    let mut newest = None;
    for t in to {
        let from = clusterkit_core::backup::Location::parse(t)?.join(cluster);
        if !matches!(from, clusterkit_core::backup::Location::S3 { .. }) {
            continue;
        }
        let listing = crate::backup::find(session, &from.to_string(), Some(seal)).await?;
        for l in &listing.left_out {
            session.notice(None, format!("left out: {l}"));
        }
        for f in &listing.found {
            if let Ok(at) = humantime::parse_rfc3339(&f.manifest.created) {
                newest = newest.max(Some(at));
            }
        }
    }
    Ok(newest)
}

/// A [`clusterkit_core::engine::Reporter`] handing each event's line
/// ([`clusterkit_core::engine::Lines::line`]) to a function.
struct LogLines<'a> {
    start: Instant,
    log: &'a (dyn Fn(&str) + Sync),
}

impl clusterkit_core::engine::Reporter for LogLines<'_> {
    fn event(&self, e: &clusterkit_core::engine::Event) {
        if let Some(line) =
            clusterkit_core::engine::Lines::line(e, self.start.elapsed().as_secs_f64())
        {
            (self.log)(&line);
        }
    }
}

/// A connected manager that answers for the swarm.
async fn manager<'a>(
    nodes: &'a [Arc<dyn Transport>],
    loaded: &Loaded,
) -> Result<&'a Arc<dyn Transport>, OpsError> {
    stack::answering_manager(nodes, &loaded.built.spec, stack::LEADER_PATIENCE)
        .await?
        .ok_or_else(|| refused("no manager is connected"))
}

/// The schedule the swarm runs now, from its service's labels: the
/// schedule, the service's public key, the seal key's secret (when a valid
/// name).
async fn current(
    mgr: &dyn Transport,
) -> Result<Option<(Schedule, String, Option<String>)>, OpsError> {
    let out = mgr
        .exec_raw(
            &Cmd::new("docker service inspect --format '{{json .Spec.Labels}}' ")
                .arg(sched::SERVICE),
            None,
        )
        .await?;
    if out.status != 0 {
        return Ok(None);
    }
    let l: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&out.stdout).unwrap_or_default();
    let get = |k: &str| l.get(k).cloned().unwrap_or_default();
    let schedule = Schedule {
        every: get(labels::EVERY),
        to: get(labels::TO)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        image: get(labels::IMAGE),
    };
    if schedule.every.is_empty() || schedule.to.is_empty() || schedule.image.is_empty() {
        return Ok(None);
    }
    let seal = Some(get(labels::SEAL)).filter(|s| sched::is_seal_secret(s));
    Ok(Some((schedule, get(labels::PUBLIC_KEY), seal)))
}

/// Sets `schedule`: the service's key (kept when the swarm has it), its
/// public half on every node, clusterkit's executable on the managers, the
/// runner document (nodes at their mesh addresses, their host keys), the stack.
/// `known` is the public key the running service's labels carry and the
/// seal key's secret they name, kept when this machine has no seal key of
/// its own (another operator's machine runs `up`). `exe` is clusterkit's
/// executable, which the service runs. Returns whether anything changed.
async fn apply(
    session: &Session<'_>,
    nodes: &[Arc<dyn Transport>],
    schedule: &Schedule,
    known: Option<(String, Option<String>)>,
    exe: &Path,
) -> Result<bool, OpsError> {
    let loaded = session.loaded();
    let spec = &loaded.built.spec;
    let said = std::sync::atomic::AtomicBool::new(false);
    let say = |m: &str| {
        said.store(true, std::sync::atomic::Ordering::Relaxed);
        session.notice(None, m);
    };
    let say = &say;
    let (known_key, known_seal) = known.map_or((None, None), |(k, s)| (Some(k), s));
    let mgr = manager(nodes, loaded).await?;
    let dir = session.state_dir();
    let local = clusterkit_core::backup::SealKey::load(&dir)?;
    let seal_secret = match (local, known_seal) {
        (None, Some(s)) if stack::secret_exists(mgr.as_ref(), &s).await? => s,
        (local, _) => {
            let key = match local {
                Some(k) => k,
                None => {
                    let (k, _) = clusterkit_core::backup::SealKey::load_or_create(&dir)?;
                    say(&format!(
                        "backup: made the backup seal key {}: keep a copy off the cluster; restore needs it",
                        dir.join(clusterkit_core::backup::SEAL_KEY_FILE).display()
                    ));
                    k
                }
            };
            let name = sched::seal_secret(&key);
            let hex = key.to_hex();
            if stack::ensure_secret(mgr.as_ref(), &name, SecretValue::Given(&hex)).await? {
                say(&format!(
                    "backup: the seal key given to the service (secret {name})"
                ));
            }
            name
        }
    };
    let secret_exists = stack::secret_exists(mgr.as_ref(), sched::KEY_SECRET).await?;
    let public_key = match known_key.filter(|k| secret_exists && !k.is_empty()) {
        Some(k) => k,
        None => {
            if secret_exists {
                // A key whose public half is unknown: made again.
                remove_stack(mgr.as_ref()).await?;
                remove_key_secret(mgr.as_ref()).await?;
            }
            use ssh_key::{Algorithm, LineEnding, PrivateKey};
            let private = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
                .map_err(|e| refused(format!("making the backup service's SSH key: {e}")))?;
            let pem = private
                .to_openssh(LineEnding::LF)
                .map_err(|e| refused(format!("encoding the backup service's SSH key: {e}")))?;
            stack::ensure_secret(mgr.as_ref(), sched::KEY_SECRET, SecretValue::Given(&pem)).await?;
            say(&format!(
                "backup: SSH key made for the service (secret {})",
                sched::KEY_SECRET
            ));
            private
                .public_key()
                .to_openssh()
                .map_err(|e| refused(format!("encoding the public key: {e}")))?
        }
    };

    // Its public half on every node, usable from the mesh only.
    let line = sched::authorized_line(&public_key, spec);
    for (n, r) in fan_out(nodes, 16, |t| authorize(t, Some(&line), spec)).await {
        if r? {
            say(&format!(
                "backup: {n}: the service's key authorized (from the mesh only)"
            ));
        }
    }

    // clusterkit itself on every manager, mounted into the task: it must run there.
    let executable = |e: stack::ExecutableError| match e {
        stack::ExecutableError::Transport(t) => OpsError::from(t),
        stack::ExecutableError::Read { path, source } => OpsError::local(format!(
            "reading clusterkit's executable {}",
            path.display()
        ))(source),
        arch => refused(arch.to_string()),
    };
    stack::check_arch(nodes, "the backup service", "backup --schedule")
        .await
        .map_err(executable)?;
    let managers: Vec<Arc<dyn Transport>> =
        stack::managers(nodes, spec).into_iter().cloned().collect();
    for n in stack::install_executable(&managers, exe)
        .await
        .map_err(executable)?
    {
        say(&format!(
            "backup: {n}: clusterkit's executable copied to {}",
            sched::BINARY
        ));
    }
    clusterkit_core::transport::images::provide(&[(schedule.image.clone(), managers.clone())], say)
        .await?;

    // The nodes' host keys, read over checked connections, for their mesh addresses.
    let mut known_hosts = String::new();
    for (n, r) in fan_out(nodes, 16, |t| async move {
        t.exec(&Cmd::new("cat /etc/ssh/ssh_host_*_key.pub")).await
    })
    .await
    {
        let node = spec.node(&n).expect("connected nodes come from the spec");
        known_hosts.push_str(&sched::known_hosts_lines(
            &node.mesh_address.to_string(),
            node.ssh.port.get(),
            &r?.stdout_str(),
        ));
    }
    let state = match std::fs::read_to_string(&loaded.state_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(OpsError::local(format!(
                "reading {}",
                loaded.state_path.display()
            ))(e))
        }
    };
    let runner = Runner {
        schedule: schedule.clone(),
        spec: sched::runner_spec(spec),
        known_hosts,
        state,
    };
    let json = serde_json::to_string_pretty(&runner).expect("the runner document serialises");
    // The image the task runs, pinned by digest where every manager's engine
    // knows the same one (a copy sent by `docker load` has none: the task
    // could not find the pinned image there).
    let inspect = Cmd::new("docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' ")
        .arg(&schedule.image);
    let mut pins = std::collections::BTreeSet::new();
    for (_, r) in fan_out(&managers, 16, |t| {
        let inspect = inspect.clone();
        async move { t.exec_raw(&inspect, None).await }
    })
    .await
    {
        pins.insert(sched::pinned(&schedule.image, &r?.stdout_str()));
    }
    let runs = match pins.len() {
        1 => pins.into_iter().next().expect("one"),
        _ => schedule.image.clone(),
    };
    let files = sched::stack(schedule, &runs, &public_key, &seal_secret, &json);
    let deployed = stack::deploy(
        mgr.as_ref(),
        &StackDeploy {
            name: sched::STACK,
            dir: sched::DIR,
            files: files.all(),
            services: 1,
        },
        say,
    )
    .await?;
    if let Some(why) = stack::wait_running(mgr.as_ref(), sched::STACK, START_PATIENCE, say).await? {
        return Err(refused(format!(
            "the backup service does not run: {why}\nThe image {} must be on the managers \
             (or pullable) and hold the C library clusterkit was built against: give another with --image",
            schedule.image
        )));
    }
    if deployed {
        say(&format!("backup: service {} runs", sched::SERVICE));
    }
    Ok(said.load(std::sync::atomic::Ordering::Relaxed))
}

/// Puts (`Some`) or removes (`None`) the service's key line in the SSH
/// user's `authorized_keys`. Returns whether the file changed.
async fn authorize(
    t: &dyn Transport,
    line: Option<&str>,
    spec: &clusterkit_core::ClusterSpec,
) -> Result<bool, OpsError> {
    let node = spec
        .node(t.node())
        .expect("connected nodes come from the spec");
    let tag = format!(" clusterkit-backup@{}", spec.name);
    let script = Cmd::new("u=")
        .arg(&node.ssh.user)
        .push("; tag=")
        .arg(&tag)
        .push("; line=")
        .arg(line.unwrap_or(""))
        .push(
            r#"
h=$(getent passwd "$u" | cut -d: -f6); f="$h/.ssh/authorized_keys"
if [ -n "$line" ]; then
  if [ -f "$f" ] && grep -qxF -- "$line" "$f"; then exit 0; fi
else
  if [ ! -f "$f" ] || ! grep -qF -- "$tag" "$f"; then exit 0; fi
fi
mkdir -p "$h/.ssh" && chmod 700 "$h/.ssh" && touch "$f"
{ grep -vF -- "$tag" "$f" || true; [ -z "$line" ] || printf '%s\n' "$line"; } > "$f.clusterkit"
chmod 600 "$f.clusterkit" && chown "$u:" "$h/.ssh" "$f.clusterkit" && mv "$f.clusterkit" "$f"
echo changed"#,
        );
    let out = t.exec(&script).await?;
    Ok(out.stdout_str().contains("changed"))
}

/// `docker stack rm` of the schedule's stack, waited for (its secret is in use until then).
async fn remove_stack(mgr: &dyn Transport) -> Result<(), OpsError> {
    mgr.exec(
        &Cmd::new("docker stack rm ")
            .arg(sched::STACK)
            .push(" >/dev/null 2>&1 || true"),
    )
    .await?;
    let start = Instant::now();
    loop {
        let left = mgr
            .exec(&Cmd::new("docker service ls -q --filter name=").arg(sched::SERVICE))
            .await?
            .stdout_str();
        if left.trim().is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(refused(format!(
                "{}: still there a minute after `docker stack rm`",
                sched::SERVICE
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes the service's key secret: once the stack's task is gone, a moment
/// after the service (asked again for up to a minute). Nothing when it is gone.
async fn remove_key_secret(mgr: &dyn Transport) -> Result<(), OpsError> {
    let start = Instant::now();
    while stack::secret_exists(mgr, sched::KEY_SECRET).await? {
        let out = mgr
            .exec_raw(
                &Cmd::new("docker secret rm ")
                    .arg(sched::KEY_SECRET)
                    .push(" 2>&1"),
                None,
            )
            .await?;
        if out.status == 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(refused(format!(
                "removing the secret {}: {}",
                sched::KEY_SECRET,
                out.stdout_str().trim()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Removes the seal key's secrets (one for each key ever given to the
/// service; the key itself stays in the state directory), asked again for up
/// to a minute while the stack's last task still holds one.
async fn remove_seal_secrets(mgr: &dyn Transport) -> Result<(), OpsError> {
    let start = Instant::now();
    loop {
        let out = mgr
            .exec(
                &Cmd::new("docker secret ls -q --filter name=")
                    .arg(sched::SEAL_SECRET_PREFIX)
                    .push(" | xargs -r docker secret rm 2>&1 >/dev/null; docker secret ls -q --filter name=")
                    .arg(sched::SEAL_SECRET_PREFIX),
            )
            .await?
            .stdout_str();
        if out.trim().is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(refused(format!(
                "removing the backup seal key's secrets: {}",
                out.trim()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_given_a_file_that_is_not_a_runner_document_says_which() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("runner.json");
        let e = read_task_files(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("reading {}: ", missing.display())),
            "{e}"
        );
        std::fs::write(&missing, "{\"cluster\": 3}").unwrap();
        let e = read_task_files(&missing).unwrap_err().to_string();
        assert!(
            e.contains("runner.json: not a runner document of this clusterkit: "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_schedule_that_cannot_run_is_refused_before_any_node_is_asked() {
        use clusterkit_core::engine::Lines;
        use clusterkit_core::transport::script::Scripted;
        let tmp = tempfile::tempdir().unwrap();
        let mut loaded = crate::testkit::loaded(2, tmp.path());
        let n1 = Scripted::new("node1");
        let lines = Lines::to_string();
        let given = || vec![Arc::new(n1.clone()) as Arc<dyn Transport>];
        let options = |every: &str, to: &str| ScheduleOptions {
            every: every.into(),
            to: vec![to.into()],
            image: clusterkit_core::schedule::DEFAULT_IMAGE.into(),
            exe: "/nonexistent/clusterkit".into(),
        };
        let s = Session::with_transports(&loaded, crate::Options::default(), &lines, given());
        let e = set(&s, &options("soon", "s3://clusterkit/backups"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("`soon` is not a period"), "{e}");
        let e = set(&s, &options("6h", "s3://clusterkit/backups"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 node(s) unreachable"), "{e}");
        assert!(e.contains("node2: no transport given for it"), "{e}");
        let e = off(&s).await.unwrap_err().to_string();
        assert!(e.contains("1 node(s) unreachable"), "{e}");
        loaded.built.spec.storage.backend = StorageBackend::None;
        let s = Session::with_transports(&loaded, crate::Options::default(), &lines, given());
        let e = set(&s, &options("6h", "s3://clusterkit/backups"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("this cluster has no storage"), "{e}");
        assert!(n1.asked().is_empty(), "{:?}", n1.asked());
    }

    #[test]
    fn the_runner_document_becomes_a_private_description_with_its_host_keys() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let spec = clusterkit_core::spec::example(3);
        let runner = Runner {
            schedule: Schedule {
                every: "6h".into(),
                to: vec!["s3://clusterkit/backups".into()],
                image: clusterkit_core::schedule::DEFAULT_IMAGE.into(),
            },
            spec: sched::runner_spec(&spec),
            known_hosts: "10.0.0.1 ssh-ed25519 AAAA\n".into(),
            state: String::new(),
        };
        let loaded = runner_loaded(&runner, &tmp.path().join("runner")).unwrap();
        assert_eq!(loaded.built.spec, runner.spec);
        let dir = crate::session::state_dir(&loaded);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::read_to_string(crate::session::known_hosts_path(&loaded)).unwrap(),
            runner.known_hosts
        );
    }
}
