//! Monitoring alone (`clusterkit monitor`): [`up`], the [`endpoints`] of
//! its web UIs, its [`password`]s. `up`'s whole run deploys it as its
//! `monitoring` phase.

use std::sync::Arc;

use clusterkit_core::transport::Transport;
use clusterkit_monitor::Endpoint;

use crate::session::{Reach, Session};
use crate::up::{CapabilityReport, Phase, UpOptions};
use crate::OpsError;

fn enabled(session: &Session<'_>) -> Result<(), OpsError> {
    if clusterkit_monitor::enabled(&session.loaded().built.spec) {
        Ok(())
    } else {
        Err(OpsError::Refused(
            "monitoring is off in this cluster's config ([monitoring] enabled = false)".into(),
        ))
    }
}

/// Sends the images a node misses, then deploys the monitoring stack (every
/// node must answer), and says where each web UI answers. The engine's
/// `monitoring` phase after the facts, as `up --only monitoring`; its steps
/// are reported as the engine's events.
pub async fn up(session: &Session<'_>) -> Result<CapabilityReport<Vec<Endpoint>>, OpsError> {
    enabled(session)?;
    let up = crate::up::run(session, &UpOptions::only(Phase::Monitoring), "monitor").await?;
    let nodes = session.connect_all().await?;
    let after = clusterkit_monitor::endpoints(&nodes, &session.loaded().built.spec).await?;
    Ok(CapabilityReport { up, after })
}

/// The nodes that answer, and where each running web UI answers.
pub async fn endpoints(
    session: &Session<'_>,
) -> Result<(Vec<Arc<dyn Transport>>, Vec<Endpoint>), OpsError> {
    enabled(session)?;
    let nodes = session.connect(Reach::Patient).await.nodes;
    let endpoints = clusterkit_monitor::endpoints(&nodes, &session.loaded().built.spec).await?;
    Ok((nodes, endpoints))
}

/// The web UIs brought to this machine ([`open`]).
pub struct Opened {
    /// The node the forwards go through (it reaches every mesh address).
    pub via: String,
    /// The `ssh -N -L ...` command that forwards the same ports without
    /// clusterkit.
    pub ssh_command: String,
    /// Each web UI and the port on this machine it answers on.
    pub local: Vec<(Endpoint, u16)>,
    /// The forwards held (none unless asked for): dropping them closes them.
    pub forwards: Vec<clusterkit_core::transport::forward::Forward>,
}

/// Brings every running web UI to this machine, through the first node that
/// answers: each on its own port plus `offset` on 127.0.0.1, held open while
/// the [`Opened`] lives when `forward`, and as the `ssh` command that does
/// the same otherwise.
pub async fn open(session: &Session<'_>, offset: u16, forward: bool) -> Result<Opened, OpsError> {
    let (nodes, endpoints) = endpoints(session).await?;
    if endpoints.is_empty() {
        return Err(OpsError::Refused(
            "no monitoring service is running: deploy it with `clusterkit monitor up`".into(),
        ));
    }
    let via = nodes.first().ok_or(OpsError::NoneReachable)?;
    let n = session
        .loaded()
        .built
        .spec
        .node(via.node())
        .expect("connected nodes are in the spec");
    let mut local = Vec::new();
    for e in endpoints {
        let port = e.port.checked_add(offset).ok_or_else(|| {
            OpsError::Refused(format!(
                "offset {offset} takes port {} past 65535: choose a smaller one",
                e.port
            ))
        })?;
        local.push((e, port));
    }
    // Every argument quoted for a shell: a key's path may hold a space.
    let mut ssh: Vec<String> = vec!["ssh".into(), "-N".into()];
    for (e, port) in &local {
        ssh.push("-L".into());
        ssh.push(format!("{port}:{}:{}", e.address, e.port));
    }
    ssh.extend(["-p".into(), n.ssh.port.get().to_string()]);
    if let Some(k) = &n.ssh.key {
        ssh.extend(["-i".into(), k.display().to_string()]);
    }
    ssh.extend([
        "-o".into(),
        format!(
            "UserKnownHostsFile={}",
            session.known_hosts_path().display()
        ),
        format!("{}@{}", n.ssh.user, n.ssh.host),
    ]);
    let ssh_command = ssh
        .iter()
        .map(|a| clusterkit_core::transport::quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut forwards = Vec::new();
    if forward {
        for (e, port) in &local {
            let bind = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
            let f = clusterkit_core::transport::forward::Forward::start(
                Arc::clone(via),
                bind,
                &e.address.to_string(),
                e.port,
            )
            .await
            .map_err(|err| {
                OpsError::Refused(format!(
                    "forwarding {bind}: {err} (choose other ports with an offset)"
                ))
            })?;
            forwards.push(f);
        }
    }
    Ok(Opened {
        via: via.node().to_string(),
        ssh_command,
        local,
        forwards,
    })
}

/// Which password [`password`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    /// Grafana's administrator's.
    Grafana,
    /// The monitoring API's (Prometheus, Alertmanager; user
    /// [`clusterkit_monitor::render::API_USER`]).
    Api,
}

/// A monitoring password, read from a manager (made by `up`). Keep it out
/// of logs.
pub async fn password(session: &Session<'_>, which: Password) -> Result<String, OpsError> {
    enabled(session)?;
    let spec = &session.loaded().built.spec;
    if which == Password::Grafana && !spec.monitoring.grafana {
        return Err(OpsError::Refused(
            "Grafana is off in this cluster's config ([monitoring] grafana = false)".into(),
        ));
    }
    let nodes = session.connect(Reach::Patient).await.nodes;
    let (found, whose, path) = match which {
        Password::Api => (
            clusterkit_monitor::api_password(&nodes, spec).await?,
            "the monitoring API's",
            clusterkit_monitor::API_PASSWORD_PATH,
        ),
        Password::Grafana => (
            clusterkit_monitor::grafana_password(&nodes, spec).await?,
            "Grafana's",
            clusterkit_monitor::GRAFANA_PASSWORD_PATH,
        ),
    };
    found.ok_or_else(|| {
        OpsError::Refused(format!(
            "no manager holds {whose} password ({path}): deploy monitoring first (`clusterkit monitor up`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use clusterkit_core::engine::Lines;
    use clusterkit_core::transport::script::Scripted;

    use super::*;
    use crate::testkit::loaded;
    use crate::Options;

    #[test]
    fn the_edges_join_the_overlay_the_monitoring_stack_makes_for_alertmanager() {
        assert_eq!(
            clusterkit_ingress::stack::ALERTING_NETWORK,
            format!("{}_alerting", clusterkit_monitor::render::STACK)
        );
        let mut s = clusterkit_core::spec::example(3);
        s.monitoring.alertmanager = true;
        assert!(clusterkit_monitor::render::stack(&s)
            .compose
            .contains("\n  alerting:\n    driver: overlay"));
    }

    #[tokio::test]
    async fn monitoring_switched_off_is_refused_before_any_node_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = loaded(1, dir.path());
        let n1 = Scripted::new("node1");
        let lines = Lines::to_string();
        let given = || vec![Arc::new(n1.clone()) as Arc<dyn Transport>];
        loaded.built.spec.monitoring.grafana = false;
        let session = Session::with_transports(&loaded, Options::default(), &lines, given());
        let e = password(&session, Password::Grafana)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Grafana is off"), "{e}");
        loaded.built.spec.monitoring.enabled = false;
        let session = Session::with_transports(&loaded, Options::default(), &lines, given());
        for e in [
            up(&session).await.unwrap_err().to_string(),
            password(&session, Password::Api)
                .await
                .unwrap_err()
                .to_string(),
            endpoints(&session)
                .await
                .err()
                .expect("refused")
                .to_string(),
        ] {
            assert!(e.contains("[monitoring] enabled = false"), "{e}");
        }
        assert!(n1.asked().is_empty(), "{:?}", n1.asked());
    }

    #[tokio::test]
    async fn a_password_no_manager_holds_says_to_deploy_first() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded(1, dir.path());
        let n1 = Scripted::new("node1");
        n1.on_exit("monitoring", 1, "", "cat: No such file or directory");
        let lines = Lines::to_string();
        let given = vec![Arc::new(n1.clone()) as Arc<dyn Transport>];
        let session = Session::with_transports(&loaded, Options::default(), &lines, given);
        let e = password(&session, Password::Api)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no manager holds the monitoring API's password"),
            "{e}"
        );
        assert!(e.contains("clusterkit monitor up"), "{e}");
    }
}
