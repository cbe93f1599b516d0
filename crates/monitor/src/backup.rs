//! Monitoring's part of a backup: a Prometheus snapshot (taken through its
//! admin API, which the stack turns on; it answers on the mesh only) and
//! Grafana's data directory; and their way back into a restored cluster's
//! volumes, before the services start.

use std::sync::Arc;

use clusterkit_core::stack::{archive_volume, managers, unpack_volume};
use clusterkit_core::transport::{fan_out, Cmd, Transport};
use clusterkit_core::ClusterSpec;

use crate::{render, running_on, MonitorError};

/// Prometheus's data volume, as the stack names it.
pub fn prometheus_volume() -> String {
    format!("{}_prometheus-data", render::STACK)
}

/// Grafana's data volume, as the stack names it.
pub fn grafana_volume() -> String {
    format!("{}_grafana-data", render::STACK)
}

/// The replica holding the longest history: each replica keeps its own data
/// (a replica moved to another node, by a drain for instance, starts empty
/// there), and says in its own metrics the oldest sample it holds.
async fn oldest_replica<'a>(
    nodes: &'a [Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Option<&'a Arc<dyn Transport>>, MonitorError> {
    let mgrs: Vec<Arc<dyn Transport>> = managers(nodes, spec).into_iter().cloned().collect();
    let mut best: Option<(f64, String)> = None;
    for (n, r) in fan_out(&mgrs, 16, |t| async move {
        t.exec_raw(
            &Cmd::new("{ ")
                .push(crate::api_get(9090, "/metrics").script())
                .push(
                    "; } | awk '$1 == \"prometheus_tsdb_lowest_timestamp_seconds\" { print $2 }'",
                ),
            None,
        )
        .await
    })
    .await
    {
        let lowest = r?.stdout_str().trim().parse::<f64>().ok();
        if let Some(v) = lowest.filter(|v| *v > 0.0) {
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, n));
            }
        }
    }
    Ok(best.and_then(|(_, n)| nodes.iter().find(|t| t.node() == n)))
}

/// Takes a snapshot of a running Prometheus (a consistent copy of its
/// blocks), from the replica holding the longest history, and returns the
/// node it ran on and the snapshot archived (its blocks at the archive's
/// root, as a data directory holds them); the snapshot is then deleted
/// there. `None` when Prometheus does not run.
pub async fn prometheus_snapshot(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Option<(String, Vec<u8>)>, MonitorError> {
    let t = match oldest_replica(nodes, spec).await? {
        Some(t) => t,
        // No replica told its history: the one the swarm names, if any.
        None => match running_on(nodes, spec, "prometheus").await? {
            Some((_, t)) => t,
            None => return Ok(None),
        },
    };
    let node = t.node().to_string();
    let out = t
        .exec_raw(&crate::api_post(9090, "/api/v1/admin/tsdb/snapshot"), None)
        .await?;
    let answer: serde_json::Value =
        serde_json::from_str(out.stdout_str().trim()).unwrap_or_default();
    let Some(name) = answer["data"]["name"]
        .as_str()
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    else {
        return Err(MonitorError::Snapshot {
            node: node.clone(),
            reason: format!(
                "{} (a Prometheus started before clusterkit turned its admin API on: `clusterkit up --only monitoring` \
                 rolls it)",
                answer["error"].as_str().unwrap_or("no snapshot name in its answer")
            ),
        });
    };
    let sub = format!("snapshots/{name}");
    let archive = archive_volume(t.as_ref(), &prometheus_volume(), Some(&sub)).await;
    // The snapshot's hard links would keep old blocks on disk: it goes.
    let _ = t
        .exec(
            &Cmd::new("d=$(docker volume inspect -f '{{.Mountpoint}}' ")
                .arg(&prometheus_volume())
                .push(") && rm -rf \"$d\"/")
                .arg(&sub),
        )
        .await;
    match archive? {
        Some(bytes) => Ok(Some((node, bytes))),
        None => Err(MonitorError::Snapshot {
            node,
            reason: format!("no volume {} there", prometheus_volume()),
        }),
    }
}

/// Grafana's data directory (its database: users, folders, dashboards made
/// in the UI), read where Grafana runs. `None` without Grafana.
pub async fn grafana_data(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Option<(String, Vec<u8>)>, MonitorError> {
    if !spec.monitoring.grafana {
        return Ok(None);
    }
    let Some((e, t)) = running_on(nodes, spec, "grafana").await? else {
        return Ok(None);
    };
    Ok(archive_volume(t.as_ref(), &grafana_volume(), None)
        .await?
        .map(|b| (e.node, b)))
}

/// Puts Prometheus's and Grafana's backed-up data into their volumes on
/// every manager (where their tasks may start), before the monitoring stack
/// runs there. Only for volumes on each node's disk (`volume_driver =
/// "local"`): returns the volumes restored, as `volume on node`.
pub async fn restore_volumes(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    prometheus: Option<&[u8]>,
    grafana: Option<&[u8]>,
) -> Result<Vec<String>, MonitorError> {
    if spec.monitoring.volume_driver != "local" {
        return Err(MonitorError::Snapshot {
            node: "restore".into(),
            reason: format!(
                "monitoring's volumes use the `{}` driver: restoring them is done for `local` volumes only",
                spec.monitoring.volume_driver
            ),
        });
    }
    let wanted: Vec<(String, &[u8])> = [
        prometheus.map(|b| (prometheus_volume(), b)),
        grafana.map(|b| (grafana_volume(), b)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mgrs: Vec<Arc<dyn Transport>> = managers(nodes, spec).into_iter().cloned().collect();
    let mut done = Vec::new();
    for (n, r) in fan_out(&mgrs, 16, |t| {
        let wanted = wanted.clone();
        async move {
            for (volume, bytes) in &wanted {
                unpack_volume(t, volume, render::STACK, bytes).await?;
            }
            Ok::<_, MonitorError>(wanted.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>())
        }
    })
    .await
    {
        done.extend(r?.into_iter().map(|v| format!("{v} on {n}")));
    }
    Ok(done)
}
