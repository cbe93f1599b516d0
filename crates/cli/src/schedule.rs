//! `clusterkit backup --schedule`: the recurring backup as a Swarm service
//! (set, refreshed by `up` and `restore`, removed), and the loop that service
//! runs (`backup run-schedule`, hidden).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use clusterkit_core::backup::Location;
use clusterkit_core::schedule::{self as sched, labels, Runner, Schedule};
use clusterkit_core::spec::{Built, Loaded};
use clusterkit_core::stack::{self, SecretValue, StackDeploy};
use clusterkit_core::transport::{fan_out, Cmd, Transport, Upload};
use clusterkit_ops::Session;

use crate::exit;
use crate::remote::connect;

/// How long the service's task may take to start.
const START_PATIENCE: Duration = Duration::from_secs(180);

/// `backup --schedule EVERY [--to s3://…]... [--image IMAGE]`, or `--schedule off`.
pub fn set(loaded: &Loaded, every: &str, to: &[String], image: &str) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    if every == "off" {
        return off(loaded);
    }
    sched::parse_every(every).map_err(anyhow::Error::msg)?;
    let to: Vec<String> = if to.is_empty() {
        vec![crate::backup::DEFAULT_TO.to_string()]
    } else {
        to.to_vec()
    };
    sched::check_to(&to).map_err(anyhow::Error::msg)?;
    if spec.storage.backend == clusterkit_core::spec::StorageBackend::None {
        anyhow::bail!(
            "this cluster has no storage ([storage] backend = \"none\"): a scheduled backup is written to its S3"
        );
    }
    let schedule = Schedule {
        every: every.trim().to_string(),
        to,
        image: image.to_string(),
    };
    let start = Instant::now();
    let say = |m: &str| eprintln!("[{:>6.1}s] {m}", start.elapsed().as_secs_f64());
    crate::block_on(async {
        let (nodes, _lock) = connect_every(loaded).await?;
        let known_key = current(manager(&nodes, loaded)?.as_ref())
            .await?
            .map(|(_, k, _)| k);
        apply(&nodes, loaded, &schedule, known_key, None, &say).await
    })?;
    println!(
        "backup every {} to {} (service {}); `clusterkit backup list` shows them, \
         `docker service logs {}` on a manager what it did",
        schedule.every,
        schedule.to.join(", "),
        sched::SERVICE,
        sched::SERVICE
    );
    Ok(exit::OK)
}

/// Every node connected and the cluster's lock held, or an error naming the
/// unreachable nodes (or the lock's holder).
async fn connect_every(
    loaded: &Loaded,
) -> anyhow::Result<(Vec<Arc<dyn Transport>>, clusterkit_core::lock::ClusterLock)> {
    let (nodes, failed) = connect(loaded, false).await;
    if !failed.is_empty() {
        for (n, e) in &failed {
            eprintln!("{n}: {e}");
        }
        anyhow::bail!(
            "{} node(s) unreachable: the scheduled backup's key goes to every node. Bring them back, \
             or take a dead one out (`clusterkit node remove NODE`); nothing was changed",
            failed.len()
        );
    }
    let lock = crate::remote::lock_cluster(loaded, &nodes, "backup").await?;
    Ok((nodes, lock))
}

/// The first connected manager.
fn manager<'a>(
    nodes: &'a [Arc<dyn Transport>],
    loaded: &Loaded,
) -> anyhow::Result<&'a Arc<dyn Transport>> {
    stack::managers(nodes, &loaded.built.spec)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no manager is connected"))
}

/// The schedule the swarm runs now, from its service's labels: the
/// schedule, the service's public key, the seal key's secret (when a valid
/// name).
async fn current(
    mgr: &dyn Transport,
) -> anyhow::Result<Option<(Schedule, String, Option<String>)>> {
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
/// `known_key` is the public key the running service's labels carry, if any;
/// `known_seal` the seal key's secret they name, kept when this machine has
/// no seal key of its own (another operator's machine runs `up`).
pub async fn apply(
    nodes: &[Arc<dyn Transport>],
    loaded: &Loaded,
    schedule: &Schedule,
    known_key: Option<String>,
    known_seal: Option<String>,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let spec = &loaded.built.spec;
    let mgr = manager(nodes, loaded)?;
    let dir = crate::remote::state_dir(loaded);
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
                .map_err(|e| anyhow::anyhow!("making the backup service's SSH key: {e}"))?;
            let pem = private
                .to_openssh(LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("encoding the backup service's SSH key: {e}"))?;
            stack::ensure_secret(mgr.as_ref(), sched::KEY_SECRET, SecretValue::Given(&pem)).await?;
            say(&format!(
                "backup: SSH key made for the service (secret {})",
                sched::KEY_SECRET
            ));
            private
                .public_key()
                .to_openssh()
                .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?
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
    for (n, r) in fan_out(
        nodes,
        16,
        |t| async move { t.exec(&Cmd::new("uname -m")).await },
    )
    .await
    {
        let arch = r?.stdout_str().trim().to_string();
        if std::env::consts::OS != "linux" || arch != std::env::consts::ARCH {
            anyhow::bail!(
                "{n} is a Linux {arch} machine and this clusterkit was built for {} {}: the service runs \
                 this very executable on the managers. Run `backup --schedule` from a clusterkit built \
                 for Linux {arch}",
                std::env::consts::OS,
                std::env::consts::ARCH
            );
        }
    }
    let exe = std::env::current_exe().context("finding clusterkit's own executable")?;
    let bytes = std::fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
    let managers: Vec<Arc<dyn Transport>> =
        stack::managers(nodes, spec).into_iter().cloned().collect();
    let bytes = &bytes;
    for (n, r) in fan_out(&managers, 4, |t| async move {
        t.upload(&Upload {
            content: bytes,
            path: sched::BINARY,
            mode: 0o755,
            owner: None,
        })
        .await
    })
    .await
    {
        if r? == clusterkit_core::transport::UploadOutcome::Written {
            say(&format!(
                "backup: {n}: clusterkit's executable copied to {}",
                sched::BINARY
            ));
        }
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
            return Err(e).with_context(|| format!("reading {}", loaded.state_path.display()))
        }
    };
    let runner = Runner {
        schedule: schedule.clone(),
        spec: sched::runner_spec(spec),
        known_hosts,
        state,
    };
    let json = serde_json::to_string_pretty(&runner)?;
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
        anyhow::bail!(
            "the backup service does not run: {why}\nThe image {} must be on the managers \
             (or pullable) and hold the C library clusterkit was built against: give another with --image",
            schedule.image
        );
    }
    if deployed {
        say(&format!("backup: service {} runs", sched::SERVICE));
    }
    Ok(())
}

/// Puts (`Some`) or removes (`None`) the service's key line in the SSH
/// user's `authorized_keys`. Returns whether the file changed.
async fn authorize(
    t: &dyn Transport,
    line: Option<&str>,
    spec: &clusterkit_core::ClusterSpec,
) -> anyhow::Result<bool> {
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
async fn remove_stack(mgr: &dyn Transport) -> anyhow::Result<()> {
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
            anyhow::bail!(
                "{}: still there a minute after `docker stack rm`",
                sched::SERVICE
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes the service's key secret: once the stack's task is gone, a moment
/// after the service (asked again for up to a minute). Nothing when it is gone.
async fn remove_key_secret(mgr: &dyn Transport) -> anyhow::Result<()> {
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
            anyhow::bail!(
                "removing the secret {}: {}",
                sched::KEY_SECRET,
                out.stdout_str().trim()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Removes the seal key's secrets (one for each key ever given to the
/// service; the key itself stays in the state directory), asked again for up
/// to a minute while the stack's last task still holds one.
async fn remove_seal_secrets(mgr: &dyn Transport) -> anyhow::Result<()> {
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
            anyhow::bail!("removing the backup seal key's secrets: {}", out.trim());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `backup --schedule off`: the stack, its secrets and the key lines go.
fn off(loaded: &Loaded) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    crate::block_on(async {
        let (nodes, _lock) = connect_every(loaded).await?;
        let mgr = manager(&nodes, loaded)?;
        remove_stack(mgr.as_ref()).await?;
        remove_key_secret(mgr.as_ref()).await?;
        remove_seal_secrets(mgr.as_ref()).await?;
        for (n, r) in fan_out(&nodes, 16, |t| authorize(t, None, spec)).await {
            if r? {
                eprintln!("{n}: the backup service's key removed");
            }
        }
        anyhow::Ok(())
    })?;
    println!("no scheduled backup: the service, its key and the nodes' key lines are gone; backups taken stay");
    Ok(exit::OK)
}

/// Called at the end of `up` (and so of `restore`): a schedule the swarm
/// runs is set again, so that its nodes, their host keys and the key lines
/// follow the cluster. Nothing happens without one.
pub async fn refresh(
    nodes: &[Arc<dyn Transport>],
    loaded: &Loaded,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let Ok(mgr) = manager(nodes, loaded) else {
        return Ok(());
    };
    match current(mgr.as_ref()).await? {
        Some((schedule, key, seal)) => apply(nodes, loaded, &schedule, Some(key), seal, say).await,
        None => Ok(()),
    }
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
    let dir = std::env::temp_dir().join("clusterkit-runner");
    let state_path = clusterkit_core::state::State::path_in(&dir);
    let state_dir = state_path
        .parent()
        .expect("the state file is in a directory");
    clusterkit_core::state::ensure_private_dir(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    std::fs::write(&state_path, &r.state)?;
    std::fs::write(state_dir.join("known_hosts"), &r.known_hosts)?;
    let state = clusterkit_core::state::State::load(&state_path)?;
    let loaded = Loaded {
        built: Built {
            spec: r.spec,
            warnings: Default::default(),
            state,
        },
        state_path,
        state_changed: false,
    };
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
        let timed = crate::progress::Timed::start();
        let session = Session::new(&loaded, runner_options(), &timed);
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
