//! The swarm's state saved and brought back as Docker documents it ("Back up
//! the swarm" in Docker's administration guide): the engine stopped on one
//! manager only (the others keep the quorum), its `/var/lib/docker/swarm`
//! archived, the engine started again; to restore, the archive is unpacked on
//! a node outside any swarm, its engine started, then
//! `swarm init --force-new-cluster` ([`crate::recover`]) makes it the first
//! manager of the swarm it remembers: services, networks, configs and secrets.
//!
//! The archive holds the Raft log, where secrets are encrypted with a key kept
//! in the same directory (unless the swarm is autolocked): it must be guarded
//! like a manager's disk.

use std::time::Duration;

use bollard::models::LocalNodeState;
use bollard::query_parameters::{ListConfigsOptions, ListSecretsOptions, ListServicesOptions};
use clusterkit_core::transport::{Cmd, Transport, Upload};
use serde::{Deserialize, Serialize};

use crate::{engine, local, SwarmError, SwarmStatus};

/// The engine's swarm state directory.
pub const SWARM_DIR: &str = "/var/lib/docker/swarm";
/// Where the archive is made (and unpacked from) on the node, mode 0600.
const ARCHIVE: &str = "/var/lib/clusterkit/swarm-state.tar.gz";
/// Stops the engine (its socket too, or the next API call would start it again).
const STOP: &str =
    "systemctl stop docker.socket docker.service 2>/dev/null || systemctl stop docker";
/// Starts it again.
const START: &str =
    "systemctl start docker.socket docker.service 2>/dev/null || systemctl start docker";

/// Picks the manager a backup is taken from, never one in `never` (the node
/// the scheduled backup itself runs on: drained, it would stop mid-backup).
/// Preferred: a follower, so that stopping its engine triggers no election,
/// and not in `avoid` (a node whose service keeps its data on a local volume:
/// drained, it would start elsewhere without it); then the leader (an
/// election among the others, who keep the majority), then a follower in
/// `avoid`. Refused while any manager is unreachable: with it, stopping
/// another could leave no majority.
pub fn source(st: &SwarmStatus, avoid: &[&str], never: &[&str]) -> Result<String, SwarmError> {
    if let Some(down) = st.managers.iter().find(|m| !m.reachable) {
        return Err(SwarmError::NoQuorum(format!(
            "manager {} is not reachable: stopping another manager's engine for the backup could leave \
             the swarm without a majority ({} of {} managers needed). Bring {} back, or take it out \
             (`clusterkit node remove {}`), then back up",
            down.hostname,
            st.quorum,
            st.managers.len(),
            down.hostname,
            down.hostname
        )));
    }
    let allowed = || {
        st.managers
            .iter()
            .filter(|m| !never.contains(&m.hostname.as_str()))
    };
    let avoided = |m: &&crate::ManagerInfo| avoid.contains(&m.hostname.as_str());
    allowed()
        .find(|m| !m.leader && !avoided(m))
        .or_else(|| allowed().find(|m| !avoided(m)))
        .or_else(|| allowed().next())
        .map(|m| m.hostname.clone())
        .ok_or_else(|| {
            SwarmError::NoQuorum(format!(
                "no manager can be taken out for the backup: {} only, and the backup runs there; \
                 with one manager more the swarm can copy its state elsewhere",
                st.managers
                    .iter()
                    .map(|m| m.hostname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// What the swarm holds, by name: listed in a backup's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// Services, as `name (image)`.
    pub services: Vec<String>,
    /// Secrets' names (their values stay encrypted in the Raft log).
    pub secrets: Vec<String>,
    /// Configs' names.
    pub configs: Vec<String>,
}

/// Lists the swarm's services, secrets and configs through a manager.
pub async fn contents(mgr: &dyn Transport) -> Result<Contents, SwarmError> {
    let docker = mgr.docker().await?;
    let node = mgr.node();
    let mut c = Contents::default();
    for s in docker
        .list_services(None::<ListServicesOptions>)
        .await
        .map_err(|e| engine(node, "service ls", e))?
    {
        let spec = s.spec.unwrap_or_default();
        let image = spec
            .task_template
            .and_then(|t| t.container_spec)
            .and_then(|c| c.image)
            .unwrap_or_default();
        // Without the digest the engine pins: the name the user gave.
        let image = image.split('@').next().unwrap_or_default().to_string();
        c.services
            .push(format!("{} ({image})", spec.name.unwrap_or_default()));
    }
    for s in docker
        .list_secrets(None::<ListSecretsOptions>)
        .await
        .map_err(|e| engine(node, "secret ls", e))?
    {
        c.secrets
            .push(s.spec.and_then(|s| s.name).unwrap_or_default());
    }
    for s in docker
        .list_configs(None::<ListConfigsOptions>)
        .await
        .map_err(|e| engine(node, "config ls", e))?
    {
        c.configs
            .push(s.spec.and_then(|s| s.name).unwrap_or_default());
    }
    c.services.sort();
    c.secrets.sort();
    c.configs.sort();
    Ok(c)
}

/// Archives `t`'s swarm state with its engine stopped (drain the node first:
/// its containers stop with the engine), starts the engine again and waits
/// until it is back in the swarm. Returns the archive (tar + gzip of `swarm/`).
pub async fn archive(t: &dyn Transport, patience: Duration) -> Result<Vec<u8>, SwarmError> {
    // The engine is started again whatever happens to tar (the trap).
    let script = format!(
        "set -e; umask 077; mkdir -p /var/lib/clusterkit; rm -f {ARCHIVE}\n\
         {STOP}\n\
         trap '{START}' EXIT\n\
         tar -C /var/lib/docker -czf {ARCHIVE} swarm"
    );
    let out = t.exec_raw(&Cmd::new(script), None).await?;
    if out.status != 0 {
        return Err(engine(
            t.node(),
            "archiving the swarm state",
            format!("{} (the engine was started again)", out.tail()),
        ));
    }
    let bytes = t.download(ARCHIVE).await;
    let _ = t.exec(&Cmd::new(format!("rm -f {ARCHIVE}"))).await;
    let bytes = bytes?;
    wait_engine(t, |s| s == LocalNodeState::ACTIVE, patience).await?;
    Ok(bytes)
}

/// Unpacks a swarm state archive on `t`, a node outside any swarm, with its
/// engine stopped, then starts the engine: it comes up remembering the old
/// swarm. [`crate::recover`] on `t` then makes that swarm live again.
pub async fn unpack(
    t: &dyn Transport,
    archive: &[u8],
    patience: Duration,
) -> Result<(), SwarmError> {
    let l = local(t).await?;
    if l.state != LocalNodeState::INACTIVE {
        return Err(engine(
            t.node(),
            "restoring the swarm state",
            format!(
                "the node is in a swarm already (state {}): a restore builds the swarm from the backup on \
                 nodes outside any swarm. Take the old one apart first (`clusterkit down`, which keeps data)",
                l.state
            ),
        ));
    }
    t.exec(&Cmd::new(
        "mkdir -p /var/lib/clusterkit && chmod 700 /var/lib/clusterkit",
    ))
    .await?;
    t.upload(&Upload {
        content: archive,
        path: ARCHIVE,
        mode: 0o600,
        owner: None,
    })
    .await?;
    let script = format!(
        "set -e\n\
         {STOP}\n\
         trap '{START}' EXIT\n\
         rm -rf {SWARM_DIR}\n\
         tar -C /var/lib/docker -xzf {ARCHIVE}\n\
         rm -f {ARCHIVE}"
    );
    let out = t.exec_raw(&Cmd::new(script), None).await?;
    if out.status != 0 {
        return Err(engine(
            t.node(),
            "unpacking the swarm state",
            format!("{} (the engine was started again)", out.tail()),
        ));
    }
    // Remembering a swarm whose other managers are gone, it has no quorum:
    // any state but inactive says the state was read.
    wait_engine(t, |s| s != LocalNodeState::INACTIVE, patience).await
}

/// Gives a new task to every service whose task waits unassigned ("no
/// suitable node"): a swarm restored from a state copied off a drained node
/// keeps such tasks pending even once the node is active again (measured:
/// the scheduler did not look at them again within minutes). Returns the
/// services' names.
pub async fn reschedule_pending(mgr: &dyn Transport) -> Result<Vec<String>, SwarmError> {
    let out = mgr
        .exec(&Cmd::new(
            "for s in $(docker service ls -q); do \
               if docker service ps --filter desired-state=running --format '{{.Node}}|{{.CurrentState}}' \"$s\" \
                  | grep -q '^|Pending'; then \
                 docker service update --force --detach --quiet \"$s\" >/dev/null && \
                 docker service inspect -f '{{.Spec.Name}}' \"$s\"; \
               fi; \
             done",
        ))
        .await?;
    Ok(out.stdout_str().lines().map(str::to_string).collect())
}

/// Waits until the engine answers and its swarm state satisfies `ok`.
async fn wait_engine(
    t: &dyn Transport,
    ok: impl Fn(LocalNodeState) -> bool,
    patience: Duration,
) -> Result<(), SwarmError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let last = match local(t).await {
            Ok(l) if ok(l.state) => return Ok(()),
            Ok(l) => format!("swarm state {}", l.state),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(engine(
                t.node(),
                "engine restart",
                format!(
                    "not back within {} s ({last}): look at `journalctl -u docker` there",
                    patience.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManagerInfo;

    fn status(managers: &[(&str, bool, bool)]) -> SwarmStatus {
        SwarmStatus {
            managers: managers
                .iter()
                .map(|(h, reachable, leader)| ManagerInfo {
                    hostname: h.to_string(),
                    addr: String::new(),
                    reachable: *reachable,
                    leader: *leader,
                })
                .collect(),
            workers: 0,
            leader: None,
            quorum: managers.len() / 2 + 1,
            has_quorum: true,
            tolerates: 0,
            answered_by: None,
        }
    }

    #[test]
    fn the_status_table_names_the_way_out_of_a_lost_quorum() {
        let mut lost = status(&[
            ("node1", false, false),
            ("node2", true, false),
            ("node3", false, false),
        ]);
        lost.has_quorum = false;
        let text = lost.to_string();
        assert!(
            text.starts_with(
                "MANAGER    ADDRESS      REACHABLE    LEADER\nnode1                   no"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "quorum lost: 1 of 3 managers reachable, 2 needed to decide. Bring the stopped managers back; \
                 if they are gone for good, run `clusterkit swarm recover` (see its --help)"
            ),
            "{text}"
        );
        let mut held = status(&[("node1", true, true), ("node2", true, false)]);
        held.leader = Some("node1".into());
        let text = held.to_string();
        assert!(
            text.contains("leader: node1; 2 of 2 managers reachable"),
            "{text}"
        );
        assert!(!text.contains("quorum lost"), "{text}");
    }

    #[test]
    fn the_backup_comes_from_a_follower_never_with_a_manager_down() {
        let three = status(&[
            ("node1", true, true),
            ("node2", true, false),
            ("node3", true, false),
        ]);
        assert_eq!(source(&three, &[], &[]).unwrap(), "node2");
        // Not where Grafana keeps its data, when another follower will do.
        assert_eq!(source(&three, &["node2"], &[]).unwrap(), "node3");
        // Then the leader rather than Grafana's node.
        assert_eq!(source(&three, &["node2", "node3"], &[]).unwrap(), "node1");
        // Never the scheduled backup's own node.
        assert_eq!(source(&three, &["node2"], &["node3"]).unwrap(), "node1");
        assert_eq!(source(&three, &["node1"], &["node3"]).unwrap(), "node2");
        assert_eq!(
            source(&three, &["node2"], &["node1", "node3"]).unwrap(),
            "node2"
        );
        // A single manager: itself (the caller warns that the swarm pauses).
        let one = status(&[("node1", true, true)]);
        assert_eq!(source(&one, &[], &[]).unwrap(), "node1");
        let e = source(&one, &[], &["node1"]).unwrap_err().to_string();
        assert!(e.contains("no manager can be taken out"), "{e}");
        let e = source(
            &status(&[
                ("node1", true, true),
                ("node2", true, false),
                ("node3", false, false),
            ]),
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("manager node3 is not reachable"), "{e}");
        assert!(e.contains("node remove node3"), "{e}");
    }
}
