//! What needs a node: secrets, `docker stack deploy`, waiting for services,
//! volume archives (feature `remote`).

use std::sync::Arc;

use crate::spec::ClusterSpec;
use crate::transport::{fan_out, Cmd, Transport, TransportError, Upload};

/// The connected managers, in inventory order: stacks, secrets and the
/// swarm's view go through them.
pub fn managers<'a>(
    nodes: &'a [Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Vec<&'a Arc<dyn Transport>> {
    spec.managers()
        .filter_map(|n| nodes.iter().find(|t| t.node() == n.name.as_str()))
        .collect()
}

/// The first of the connected managers (in inventory order) whose engine
/// answers for the swarm: `docker node ls` needs a leader it knows. A
/// manager back from a restart may not know the leader yet while the others
/// do, and an election takes seconds. Asked again every second for up to
/// `patience`; then the last refusal, naming its manager. `Ok(None)`: no
/// manager is connected.
pub async fn answering_manager<'a>(
    nodes: &'a [Arc<dyn Transport>],
    spec: &ClusterSpec,
    patience: std::time::Duration,
) -> Result<Option<&'a Arc<dyn Transport>>, TransportError> {
    let mgrs = managers(nodes, spec);
    let started = std::time::Instant::now();
    loop {
        let mut last = None;
        for t in &mgrs {
            match t.exec(&Cmd::new("docker node ls -q >/dev/null")).await {
                Ok(_) => return Ok(Some(*t)),
                Err(e) => last = Some(e),
            }
        }
        match last {
            None => return Ok(None),
            Some(e) if started.elapsed() >= patience => return Err(e),
            Some(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}

/// How long a stack's phase waits for a manager that answers for the swarm
/// ([`answering_manager`]): an election after a manager's restart, on a
/// loaded machine.
pub const LEADER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// clusterkit's own executable could not be put where a task runs it.
#[derive(Debug, thiserror::Error)]
pub enum ExecutableError {
    /// A node is not the machine this clusterkit was built for.
    #[error("{node} is a Linux {arch} machine and this clusterkit was built for {os} {built}: {runs} runs this very executable on the managers; run `{command}` from a clusterkit built for Linux {arch}")]
    Arch {
        /// The node.
        node: String,
        /// Its architecture (`uname -m`).
        arch: String,
        /// This build's OS.
        os: &'static str,
        /// This build's architecture.
        built: &'static str,
        /// What runs the executable there (`the route watcher`).
        runs: &'static str,
        /// The command that puts it there (`up`).
        command: &'static str,
    },
    /// The executable could not be read here.
    #[error("reading clusterkit's executable {}: {source}", path.display())]
    Read {
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A node's answer.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Refuses when a node of `nodes` is not a Linux machine of this build's
/// architecture: a task there would run this very executable ([`install_executable`]).
/// `runs` and `command` name what runs it and what puts it there, for the message.
pub async fn check_arch(
    nodes: &[Arc<dyn Transport>],
    runs: &'static str,
    command: &'static str,
) -> Result<(), ExecutableError> {
    for (n, r) in fan_out(
        nodes,
        16,
        |t| async move { t.exec(&Cmd::new("uname -m")).await },
    )
    .await
    {
        let arch = r?.stdout_str().trim().to_string();
        if std::env::consts::OS != "linux" || arch != std::env::consts::ARCH {
            return Err(ExecutableError::Arch {
                node: n,
                arch,
                os: std::env::consts::OS,
                built: std::env::consts::ARCH,
                runs,
                command,
            });
        }
    }
    Ok(())
}

/// clusterkit's executable `exe` at [`crate::schedule::BINARY`] on every node of
/// `nodes` (mounted from there into the tasks that run it), written only
/// where it differs. Returns the nodes it was written on.
pub async fn install_executable(
    nodes: &[Arc<dyn Transport>],
    exe: &std::path::Path,
) -> Result<Vec<String>, ExecutableError> {
    let bytes = std::fs::read(exe).map_err(|source| ExecutableError::Read {
        path: exe.to_path_buf(),
        source,
    })?;
    let bytes = &bytes;
    let mut written = Vec::new();
    for (n, r) in fan_out(nodes, 4, |t| async move {
        t.upload(&Upload {
            content: bytes,
            path: crate::schedule::BINARY,
            mode: 0o755,
            owner: None,
        })
        .await
    })
    .await
    {
        if r? == crate::transport::UploadOutcome::Written {
            written.push(n);
        }
    }
    Ok(written)
}

/// The first node of `nodes` where volume driver `driver` does not answer
/// (no `/run/docker/plugins/DRIVER.sock`), if any: a task with a volume of
/// that driver would never start there.
pub async fn without_volume_driver(
    nodes: &[Arc<dyn Transport>],
    driver: &str,
) -> Result<Option<String>, TransportError> {
    for (n, r) in fan_out(nodes, 16, |t| {
        let probe = Cmd::new(format!("test -S /run/docker/plugins/{driver}.sock"));
        async move { t.exec_raw(&probe, None).await.map(|o| o.status == 0) }
    })
    .await
    {
        if !r? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// Where a secret's value comes from.
#[derive(Clone, Copy)]
pub enum SecretValue<'a> {
    /// Given by clusterkit: sent on stdin, never in a command line.
    Given(&'a str),
    /// Made on the manager from its random source (`bytes` random bytes, hex):
    /// it never leaves the cluster.
    RandomHex(usize),
}

impl std::fmt::Debug for SecretValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given(_) => f.write_str("Given(<redacted>)"),
            Self::RandomHex(n) => write!(f, "RandomHex({n})"),
        }
    }
}

/// Whether the swarm holds the secret `name`, asked through manager `t`.
/// Only the engine's "no such secret" is an answer of absence: any other
/// refusal (no leader, say) is an error, not a reason to create it again.
pub async fn secret_exists(t: &dyn Transport, name: &str) -> Result<bool, TransportError> {
    let cmd = Cmd::new("docker secret inspect --format . ").arg(name);
    let out = t.exec_raw(&cmd, None).await?;
    if out.status == 0 {
        return Ok(true);
    }
    let said = out.tail();
    if said.contains("No such secret") || said.contains("not found") {
        return Ok(false);
    }
    Err(TransportError::Failed {
        node: t.node().to_string(),
        addr: t.addr(),
        cmd: cmd.redacted(),
        status: out.status,
        stderr: said,
    })
}

/// Creates the Swarm secret `name` on manager `t` unless it exists.
/// Returns whether it created it. Swarm secrets are immutable: a new value
/// needs a new name.
pub async fn ensure_secret(
    t: &dyn Transport,
    name: &str,
    value: SecretValue<'_>,
) -> Result<bool, TransportError> {
    if secret_exists(t, name).await? {
        return Ok(false);
    }
    match value {
        SecretValue::Given(v) => {
            t.exec_with_input(
                &Cmd::new("docker secret create ")
                    .arg(name)
                    .push(" - >/dev/null"),
                Some(v.as_bytes()),
            )
            .await?;
        }
        SecretValue::RandomHex(bytes) => {
            t.exec(
                &Cmd::new(format!(
                    "head -c {bytes} /dev/urandom | od -An -v -tx1 | tr -d ' \\n' | docker secret create "
                ))
                .arg(name)
                .push(" - >/dev/null"),
            )
            .await?;
        }
    }
    Ok(true)
}

/// A stack to deploy: its name, the directory its files go to on the
/// manager, and the files (the compose file named `docker-compose.yml`).
#[derive(Debug, Clone)]
pub struct StackDeploy<'a> {
    /// Stack name.
    pub name: &'a str,
    /// Directory on the manager.
    pub dir: &'a str,
    /// (file name, content) pairs.
    pub files: Vec<(String, String)>,
    /// How many services the stack has once deployed.
    pub services: usize,
}

/// Uploads the stack's files to manager `mgr` and deploys the stack when a
/// file changed or the swarm does not run the expected number of services.
/// Returns whether it deployed. Images are not resolved against a registry
/// (`--resolve-image never`): nodes use the images they hold.
pub async fn deploy(
    mgr: &dyn Transport,
    stack: &StackDeploy<'_>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<bool, TransportError> {
    // Every file at once: each upload is a round trip (compare, maybe write)
    // on its own channel of the one connection.
    let paths: Vec<String> = stack
        .files
        .iter()
        .map(|(name, _)| format!("{}/{name}", stack.dir))
        .collect();
    let uploads: Vec<Upload<'_>> = stack
        .files
        .iter()
        .zip(&paths)
        .map(|((_, content), path)| Upload {
            content: content.as_bytes(),
            path,
            mode: 0o644,
            owner: None,
        })
        .collect();
    let written = !mgr.upload_all(&uploads).await?.is_empty();
    let running = mgr
        .exec(
            &Cmd::new("docker stack services -q ")
                .arg(stack.name)
                .push(" 2>/dev/null | wc -l"),
        )
        .await?
        .stdout_str()
        .trim()
        .parse::<usize>()
        .unwrap_or(0);
    if !written && running == stack.services {
        return Ok(false);
    }
    progress(&format!(
        "deploying stack {} ({} service(s)) from {}",
        stack.name,
        stack.services,
        mgr.node()
    ));
    mgr.exec(
        &Cmd::new("cd ")
            .arg(stack.dir)
            .push(" && docker stack deploy --prune --resolve-image never -c docker-compose.yml ")
            .arg(stack.name),
    )
    .await?;
    Ok(true)
}

/// Waits until every service of stack `name` runs all its replicas (global
/// services: one per eligible node), up to `patience`. Returns `None` once
/// they do, or a description of what does not run and why when patience
/// runs out.
///
/// A service runs when Swarm counts all its replicas running *and* none of
/// the tasks it wants now (desired state other than shutdown), on a node
/// that is up, is rejected or failed: a global service whose task on one
/// node is rejected and waiting for its restart is counted "2/2" by
/// `docker stack services` (measured,
/// Docker 20.10: the waiting task is not counted), so the count alone
/// would let it pass. Tasks Swarm has replaced are history: they are
/// neither waited for nor named.
pub async fn wait_running(
    mgr: &dyn Transport,
    name: &str,
    patience: std::time::Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Option<String>, TransportError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut said = false;
    loop {
        let out = mgr
            .exec(
                &Cmd::new("docker stack services --format '{{.Name}} {{.Replicas}}' ")
                    .arg(name)
                    .push(" && echo -- && docker stack ps --no-trunc --format '{{.Name}}|{{.Node}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}' ")
                    .arg(name)
                    .push(" && echo -- && docker node ls --format '{{.Hostname}} {{.Status}}'")
                    .within(POLL_PATIENCE),
            )
            .await?
            .stdout_str();
        let pending = pending(&out);
        if pending.is_empty() {
            return Ok(None);
        }
        if tokio::time::Instant::now() >= deadline {
            let mut why = Vec::new();
            for (svc, tasks) in &pending {
                let logs = mgr
                    .exec_raw(
                        &Cmd::new("docker service logs --raw --tail 5 ")
                            .arg(svc)
                            .push(" 2>&1 | tail -n 5")
                            .within(POLL_PATIENCE),
                        None,
                    )
                    .await?
                    .stdout_str();
                let logs = logs.trim();
                why.push(format!(
                    "{svc}: {tasks}{}",
                    if logs.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "\n  its last log lines:\n    {}",
                            logs.replace('\n', "\n    ")
                        )
                    }
                ));
            }
            return Ok(Some(why.join("\n")));
        }
        if !said {
            let names: Vec<&str> = pending.iter().map(|(s, _)| s.as_str()).collect();
            progress(&format!("waiting for {} to run", names.join(", ")));
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Bound on one question a wait asks again and again (`docker stack
/// services`, `docker stack ps`): a second when all is well.
const POLL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// The services that do not run yet, each with what its current tasks say,
/// from `docker stack services --format '{{.Name}} {{.Replicas}}'`, a line
/// `--`, `docker stack ps --format
/// '{{.Name}}|{{.Node}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}'`,
/// `--`, then `docker node ls --format '{{.Hostname}} {{.Status}}'`.
///
/// Only tasks on nodes that are up (or on no node yet) are judged: one on a
/// node that is down or gone (a restored swarm's old members) is Swarm's to
/// replace, and Swarm's count leaves it out too. A counted service still
/// waits while one of its tasks is rejected or failed and being restarted.
fn pending(listing: &str) -> Vec<(String, String)> {
    let (services, rest) = listing.split_once("\n--\n").unwrap_or((listing, ""));
    let (tasks, nodes) = rest.split_once("\n--\n").unwrap_or((rest, ""));
    let up: std::collections::HashSet<&str> = nodes
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.trim() == "Ready")
        .map(|(host, _)| host)
        .collect();
    let mut out = Vec::new();
    for l in services.lines() {
        let Some((svc, replicas)) = l.split_once(' ') else {
            continue;
        };
        // "1/1", "3/3", or "0/1 (max 1 per node)".
        let count = replicas
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('/'))
            .and_then(|(have, want)| {
                Some((have.parse::<usize>().ok()?, want.parse::<usize>().ok()?))
            });
        // A global service's tasks wanted on nodes that are not up: Swarm
        // may still count them (seen on a restored swarm, its old members
        // not yet marked down: "3/4"), but they belong to those nodes and
        // run nowhere else: not waited for. (A replica is moved: waited for.)
        let mut away = 0;
        let (mut running, mut not, mut failing) = (0, Vec::new(), false);
        for t in tasks.lines() {
            let mut f = t.splitn(5, '|');
            let (task, node, desired, state, error) = (
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default().trim(),
                f.next().unwrap_or_default().trim().trim_matches('"'),
            );
            // `stack_service.1` (a replica) or `stack_service.<node id>` (global).
            let Some((of, slot)) = task.rsplit_once('.') else {
                continue;
            };
            if of != svc || matches!(desired, "Shutdown" | "Remove" | "Complete" | "Orphaned") {
                continue;
            }
            if !node.is_empty() && !up.contains(node) {
                if slot.parse::<u64>().is_err() && !state.starts_with("Running") {
                    away += 1;
                }
                continue;
            }
            if state.starts_with("Running") {
                running += 1;
                continue;
            }
            // Rejected or failed, and wanted again: Swarm keeps restarting it there.
            failing |= state.starts_with("Rejected") || state.starts_with("Failed");
            let node = if node.is_empty() { "no node yet" } else { node };
            not.push(if error.is_empty() {
                format!("{node}: {state}")
            } else {
                format!("{node}: {state}: {error}")
            });
        }
        // Counted, and no task wanted now failing on a node that is up. (A
        // task merely starting beside a counted service is not waited for:
        // two entries of one node's name, an old one down and the new one
        // up, would show the old one's stale state under the live name.)
        let counted =
            count.is_some_and(|(have, want)| have == want || (have + away == want && running > 0));
        if counted && !failing {
            continue;
        }
        let why = match (not.is_empty(), running) {
            (true, 0) => format!(
                "{replicas} running; no task wanted now (a placement constraint no node meets?)"
            ),
            (true, _) => format!("{replicas} running"),
            (false, n) => format!("{} ({n} other task(s) running)", not.join("; ")),
        };
        out.push((svc.to_string(), why));
    }
    out
}

/// Where volume archives are made and unpacked on a node (root only).
const VOLUME_ARCHIVES: &str = "/var/lib/clusterkit";

/// Archives (tar + gzip) a volume's files as `t` sees them at the volume's
/// mount point, `sub` limiting it to a directory inside; `None` when `t` has
/// no such volume. Files changing while read (a live database) are taken as
/// they are: pause the writer first for a consistent copy.
pub async fn archive_volume(
    t: &dyn Transport,
    volume: &str,
    sub: Option<&str>,
) -> Result<Option<Vec<u8>>, TransportError> {
    let probe = t
        .exec_raw(
            &Cmd::new("docker volume inspect -f '{{.Mountpoint}}' ").arg(volume),
            None,
        )
        .await?;
    if probe.status != 0 {
        return Ok(None);
    }
    let mount = probe.stdout_str().trim().to_string();
    let dir = match sub {
        Some(s) => format!("{mount}/{s}"),
        None => mount,
    };
    let tmp = format!("{VOLUME_ARCHIVES}/volume-{volume}.tar.gz");
    // GNU tar exits 1 when a file changed while read: the copy is still made.
    t.exec(
        &Cmd::new(format!(
            "set -e; umask 077; mkdir -p {VOLUME_ARCHIVES}; tar -C "
        ))
        .arg(&dir)
        .push(" -czf ")
        .arg(&tmp)
        .push(" . || [ $? -eq 1 ]"),
    )
    .await?;
    let bytes = t.download(&tmp).await;
    let _ = t.exec(&Cmd::new("rm -f ").arg(&tmp)).await;
    bytes.map(Some)
}

/// Unpacks an archive made by [`archive_volume`] into `volume` on `t`,
/// creating it (local driver, labelled as `stack`'s, as `docker stack deploy`
/// would) when missing. Nothing may be using the volume.
pub async fn unpack_volume(
    t: &dyn Transport,
    volume: &str,
    stack: &str,
    archive: &[u8],
) -> Result<(), TransportError> {
    let tmp = format!("{VOLUME_ARCHIVES}/volume-{volume}.tar.gz");
    t.exec(&Cmd::new(format!(
        "mkdir -p {VOLUME_ARCHIVES} && chmod 700 {VOLUME_ARCHIVES}"
    )))
    .await?;
    t.upload(&Upload {
        content: archive,
        path: &tmp,
        mode: 0o600,
        owner: None,
    })
    .await?;
    t.exec(
        &Cmd::new("set -e; docker volume inspect ")
            .arg(volume)
            .push(" >/dev/null 2>&1 || docker volume create --label ")
            .arg(&format!("com.docker.stack.namespace={stack}"))
            .push(" ")
            .arg(volume)
            .push(" >/dev/null; d=$(docker volume inspect -f '{{.Mountpoint}}' ")
            .arg(volume)
            .push("); tar -C \"$d\" -xzf ")
            .arg(&tmp)
            .push("; rm -f ")
            .arg(&tmp),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod wait_tests {
    use super::*;

    #[test]
    fn a_service_runs_when_counted_and_no_current_task_is_elsewhere() {
        // Measured on Docker 20.10: node3's task rejected ("No such image")
        // and waiting for its restart, yet the service is counted 2/2.
        let rejected = "mon_node-exporter 2/2\nmon_prometheus 1/1\n--\n\
            mon_node-exporter.kjotz|node2|Running|Running 39 seconds ago|\n\
            mon_node-exporter.l8028|node3|Ready|Rejected 4 seconds ago|\"No such image: clusterkit/node-exporter:bookworm\"\n\
            mon_node-exporter.l8028|node3|Shutdown|Rejected 9 seconds ago|\"No such image: clusterkit/node-exporter:bookworm\"\n\
            mon_node-exporter.rmtwm|node1|Running|Running 39 seconds ago|\n\
            mon_prometheus.1|node1|Running|Running 1 minute ago|\n\
            --\nnode1 Ready\nnode2 Ready\nnode3 Ready\n";
        assert_eq!(
            pending(rejected),
            [(
                "mon_node-exporter".to_string(),
                "node3: Rejected 4 seconds ago: No such image: clusterkit/node-exporter:bookworm \
                 (2 other task(s) running)"
                    .to_string()
            )]
        );
        // Once it runs there, the rejected tasks before it are history.
        let back = "mon_node-exporter 3/3\n--\n\
            mon_node-exporter.l8028|node3|Running|Running 1 second ago|\n\
            mon_node-exporter.l8028|node3|Shutdown|Rejected 11 seconds ago|\"No such image: x\"\n\
            mon_node-exporter.kjotz|node2|Running|Running 51 seconds ago|\n\
            mon_node-exporter.rmtwm|node1|Running|Running 51 seconds ago|\n\
            --\nnode1 Ready\nnode2 Ready\nnode3 Ready\n";
        assert!(pending(back).is_empty());
        // A task stuck on a node that is down, or on one a restore removed
        // (shown by its ID), is Swarm's to replace: not waited for.
        let gone = "mon_node-exporter 2/2\n--\n\
            mon_node-exporter.kjotz|node2|Running|Running 9 minutes ago|\n\
            mon_node-exporter.l8028|node3|Running|Preparing 9 minutes ago|\n\
            mon_node-exporter.rmtwm|rmtwmp94z4zhwf1op7sgcz6a1|Running|Assigned 9 minutes ago|\n\
            mon_node-exporter.xx|node1|Running|Running 1 minute ago|\n\
            --\nnode1 Ready\nnode2 Ready\nnode3 Down\n";
        assert!(pending(gone).is_empty(), "{:?}", pending(gone));
        // A restored swarm whose old member is not marked down yet: Swarm
        // counts its global task (3/4); the three on nodes that are up run.
        let restored = "mon_node-exporter 3/4\n--\n\
            mon_node-exporter.a1|node1|Running|Running 2 minutes ago|\n\
            mon_node-exporter.b2|node2|Running|Running 2 minutes ago|\n\
            mon_node-exporter.c3|node3|Running|Running 2 minutes ago|\n\
            mon_node-exporter.d4|q8wmvbq2k6x1z0old0member0|Running|Assigned 9 minutes ago|\n\
            --\nnode1 Ready\nnode2 Ready\nnode3 Ready\nnode2 Unknown\n";
        assert!(pending(restored).is_empty(), "{:?}", pending(restored));
        // A replica on such a node is moved by Swarm: waited for.
        let replica = "app_web 1/2\n--\n\
            app_web.1|node1|Running|Running 2 minutes ago|\n\
            app_web.2|q8wmvbq2k6x1z0old0member0|Running|Assigned 9 minutes ago|\n\
            --\nnode1 Ready\n";
        assert_eq!(
            pending(replica),
            [("app_web".to_string(), "1/2 running".to_string())]
        );
    }

    #[test]
    fn a_service_short_of_its_replicas_is_pending() {
        let listing = "app_web 1/2\napp_db 0/1 (max 1 per node)\n--\n\
            app_web.1|node1|Running|Running 5 seconds ago|\n\
            app_web.2||Running|Pending 5 seconds ago|no suitable node (max replicas per node limit exceed)\n\
            --\nnode1 Ready\n";
        assert_eq!(
            pending(listing),
            [
                (
                    "app_web".to_string(),
                    "no node yet: Pending 5 seconds ago: no suitable node (max replicas per node limit exceed) \
                     (1 other task(s) running)"
                        .to_string()
                ),
                (
                    "app_db".to_string(),
                    "0/1 (max 1 per node) running; no task wanted now (a placement constraint no node meets?)"
                        .to_string()
                ),
            ]
        );
        // A service whose name another one's starts with is told apart.
        let two = "app_web 1/1\napp_web-admin 1/1\n--\n\
            app_web.1|node1|Running|Running 5 seconds ago|\n\
            app_web-admin.1|node2|Ready|Rejected 1 second ago|\"No such image: admin:1\"\n\
            --\nnode1 Ready\nnode2 Ready\n";
        assert_eq!(pending(two).len(), 1);
        assert_eq!(pending(two)[0].0, "app_web-admin");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::script::Scripted;

    fn nodes(n: &[&Scripted]) -> Vec<Arc<dyn Transport>> {
        n.iter()
            .map(|s| Arc::new((*s).clone()) as Arc<dyn Transport>)
            .collect()
    }

    #[tokio::test]
    async fn a_node_of_another_architecture_is_named_with_what_runs_the_executable() {
        let (a, b) = (Scripted::new("node1"), Scripted::new("node2"));
        a.on("uname -m", &format!("{}\n", std::env::consts::ARCH));
        b.on("uname -m", "riscv64\n");
        assert!(check_arch(&nodes(&[&a]), "the route watcher", "up")
            .await
            .is_ok());
        let e = check_arch(&nodes(&[&a, &b]), "the route watcher", "up")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("node2 is a Linux riscv64 machine")
                && e.contains("the route watcher runs this very executable")
                && e.contains("run `up` from a clusterkit built for Linux riscv64"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_executable_is_written_where_it_differs_and_a_missing_one_is_named() {
        let exe = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(exe.path(), b"\x7fELF clusterkit").unwrap();
        let (a, b) = (Scripted::new("node1"), Scripted::new("node2"));
        a.on(crate::schedule::BINARY, "written\n");
        b.on(crate::schedule::BINARY, "unchanged\n");
        assert_eq!(
            install_executable(&nodes(&[&a, &b]), exe.path())
                .await
                .unwrap(),
            ["node1"]
        );
        let gone = exe.path().with_extension("gone");
        let e = install_executable(&nodes(&[&a]), &gone)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("reading clusterkit's executable"), "{e}");
    }

    #[tokio::test]
    async fn the_first_node_without_the_volume_driver_is_named() {
        let (a, b) = (Scripted::new("node1"), Scripted::new("node2"));
        a.on("test -S /run/docker/plugins/clusterkit.sock", "");
        b.on_exit("test -S /run/docker/plugins/clusterkit.sock", 1, "", "");
        assert_eq!(
            without_volume_driver(&nodes(&[&a]), "clusterkit")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            without_volume_driver(&nodes(&[&a, &b]), "clusterkit")
                .await
                .unwrap()
                .as_deref(),
            Some("node2")
        );
    }

    const NO_LEADER: &str = "Error response from daemon: rpc error: code = Unknown desc = The swarm does not have a leader.";

    #[tokio::test]
    async fn a_manager_that_knows_no_leader_is_passed_over_for_one_that_answers() {
        let spec = crate::spec::example(2);
        let (a, b) = (Scripted::new("node1"), Scripted::new("node2"));
        a.on_exit("docker node ls", 1, "", NO_LEADER);
        b.on("docker node ls", "");
        let all = nodes(&[&a, &b]);
        let m = answering_manager(&all, &spec, std::time::Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.node(), "node2");
        // None answers: the last refusal, once the patience is spent.
        let (a, b) = (Scripted::new("node1"), Scripted::new("node2"));
        a.on_exit("docker node ls", 1, "", NO_LEADER);
        b.on_exit("docker node ls", 1, "", NO_LEADER);
        let all = nodes(&[&a, &b]);
        let Err(e) = answering_manager(&all, &spec, std::time::Duration::from_millis(1500)).await
        else {
            panic!("no manager answers, yet one was chosen");
        };
        let e = e.to_string();
        assert!(
            e.starts_with("node2") && e.contains("does not have a leader"),
            "{e}"
        );
        assert!(a.asked().len() >= 2, "asked again: {:?}", a.asked());
        // No manager connected.
        assert!(answering_manager(&[], &spec, std::time::Duration::ZERO)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn only_no_such_secret_means_absent() {
        let a = Scripted::new("node1");
        a.on("docker secret inspect --format . here", ".\n");
        a.on_exit(
            "docker secret inspect --format . gone",
            1,
            "",
            "Error response from daemon: secret gone not found\n",
        );
        a.on_exit("docker secret inspect --format . unsure", 1, "", NO_LEADER);
        assert!(secret_exists(&a, "here").await.unwrap());
        assert!(!secret_exists(&a, "gone").await.unwrap());
        let e = secret_exists(&a, "unsure").await.unwrap_err().to_string();
        assert!(
            e.starts_with("node1") && e.contains("does not have a leader"),
            "{e}"
        );
        // An unsure answer never leads to a second secret of the same name.
        let e = ensure_secret(&a, "unsure", SecretValue::RandomHex(32))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not have a leader"), "{e}");
        assert!(
            !a.asked().iter().any(|c| c.contains("secret create")),
            "{:?}",
            a.asked()
        );
    }
}
