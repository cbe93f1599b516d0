//! The ingress as a phase of `clusterkit up` ([`clusterkit_core::engine`]),
//! and what `status` asks of it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clusterkit_core::engine::{
    compare_files, BoxError, Change, Context, ImageNeed, Outcome, Phase,
};
use clusterkit_core::spec::ClusterSpec;
use clusterkit_core::stack::{
    check_arch, deploy, install_executable, managers, wait_running, without_volume_driver,
    StackDeploy,
};
use clusterkit_core::transport::{images, Cmd, Transport};

use crate::serve::{Status, PORT};
use crate::stack::{self, BINARY, DIR, SERVICES, STACK};

/// How long `up` waits for the stack's services to run.
pub const RUN_PATIENCE: Duration = Duration::from_secs(240);
/// How long `up` waits for every routed host's certificate before it says
/// which are missing (and goes on: a name whose DNS does not point at the
/// cluster yet is not a failed `up`).
pub const CERTIFICATE_PATIENCE: Duration = Duration::from_secs(150);

/// What went wrong bringing the ingress up.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A file of the description could not be read.
    #[error("reading {}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA root file is not PEM.
    #[error("{} is not a PEM file of certificates (no `-----BEGIN CERTIFICATE-----`): give [ingress] acme_ca_root the CA's root certificate", .0.display())]
    NotPem(PathBuf),
    /// The volume driver does not answer on a node.
    #[error("the storage's volume driver does not answer on {0} (no /run/docker/plugins/clusterkit.sock): the certificates live on it; run `clusterkit up` (storage phase) first, or `clusterkit doctor`")]
    NoVolumeDriver(String),
    /// The stack's services do not run.
    #[error("the ingress's services do not run: {0}")]
    NotRunning(String),
    /// No clusterkit executable was given for the route watcher.
    #[error("the ingress's route watcher runs clusterkit's executable on the managers, and none was given: set UpOptions::clusterkit_exe (the clusterkit CLI passes itself)")]
    NoExecutable,
    /// No manager answers.
    #[error("no manager answers: the ingress is deployed through one")]
    NoManager,
    /// Swarm nodes whose `clusterkit.ingress` label is not what the
    /// description says (the swarm phase labels them).
    #[error("the swarm's labels do not say which nodes serve the ingress as the description does ({}): run `clusterkit up --only swarm` (it labels the nodes), then again", .0.join("; "))]
    Labels(Vec<String>),
    /// A node's answer.
    #[error(transparent)]
    Transport(#[from] clusterkit_core::transport::TransportError),
}

/// The CA root's content, when `[ingress] acme_ca_root` is set.
pub fn ca_root(spec: &ClusterSpec) -> Result<Option<String>, IngressError> {
    let Some(path) = &spec.ingress.acme_ca_root else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| IngressError::Local {
        path: path.clone(),
        source,
    })?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(IngressError::NotPem(path.clone()));
    }
    Ok(Some(text))
}

/// The ingress: the stack deployed, clusterkit's executable on the
/// managers for the route watcher, every routed host's certificate waited
/// for.
pub struct IngressPhase {
    /// The clusterkit executable mounted into the route watcher (the CLI
    /// passes itself; an embedder passes the path of a clusterkit binary).
    /// `None`: an enabled ingress is refused with the way out.
    pub clusterkit: Option<PathBuf>,
}

/// The nodes whose `clusterkit.ingress` label differs from the
/// description's `ingress`, from `NAME VALUE` lines (a node's
/// `clusterkit.node` and `clusterkit.ingress` labels); nodes not in the
/// swarm's answer are not judged.
pub fn label_mismatches(spec: &ClusterSpec, text: &str) -> Vec<String> {
    let labelled: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next().unwrap_or("")))
        })
        .collect();
    spec.nodes
        .iter()
        .filter_map(|n| {
            let (_, got) = labelled.iter().find(|(name, _)| *name == n.name.as_str())?;
            let want = n.ingress.to_string();
            (*got != want).then(|| {
                format!(
                    "{} is labelled clusterkit.ingress={}, the description says {want}",
                    n.name,
                    if got.is_empty() { "(none)" } else { got }
                )
            })
        })
        .collect()
}

/// The images the stack runs and where: Caddy everywhere, the route
/// watcher's image on the managers.
pub fn image_targets(nodes: &[Arc<dyn Transport>], spec: &ClusterSpec) -> Vec<ImageNeed> {
    let mgrs: Vec<Arc<dyn Transport>> = managers(nodes, spec).into_iter().cloned().collect();
    let mut out = vec![(spec.ingress.image.clone(), nodes.to_vec())];
    if spec.ingress.routes_image != spec.ingress.image {
        out.push((spec.ingress.routes_image.clone(), mgrs));
    }
    out
}

#[async_trait::async_trait]
impl Phase for IngressPhase {
    fn name(&self) -> &'static str {
        "ingress"
    }

    fn enabled(&self, spec: &ClusterSpec) -> bool {
        spec.ingress.enabled
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let Some(mgr) = cx.manager() else {
            return Ok(Vec::new());
        };
        let st = stack::stack(cx.spec, ca_root(cx.spec)?.as_deref());
        Ok(compare_files(mgr.as_ref(), "ingress", DIR, &st.all(), "redeploy").await?)
    }

    async fn images(&self, cx: &Context<'_>) -> Result<Vec<ImageNeed>, BoxError> {
        Ok(image_targets(cx.nodes, cx.spec))
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        let say = |m: &str| cx.say(m);
        let mut out = Outcome::default();
        let root = ca_root(cx.spec)?;
        // The certificates live on a `clusterkit` volume: the driver must
        // answer wherever an edge or the issuer may run.
        if let Some(n) = without_volume_driver(cx.nodes, "clusterkit").await? {
            return Err(IngressError::NoVolumeDriver(n).into());
        }
        out.nodes
            .extend(images::provide(&image_targets(cx.nodes, cx.spec), &say).await?);
        let new_exe = self.put_executable(cx).await?;
        out.nodes.extend(new_exe.iter().cloned());
        let mgr = clusterkit_core::stack::answering_manager(
            cx.nodes,
            cx.spec,
            clusterkit_core::stack::LEADER_PATIENCE,
        )
        .await?
        .ok_or(IngressError::NoManager)?;
        // The edges run where the swarm's labels say: the swarm phase wrote
        // them from the description (`ingress up` alone may come before it).
        let labels = mgr
            .exec(&Cmd::new(
                "docker node inspect -f '{{index .Spec.Labels \"clusterkit.node\"}} {{index .Spec.Labels \"clusterkit.ingress\"}}' $(docker node ls -q)",
            ))
            .await?;
        let wrong = label_mismatches(cx.spec, &labels.stdout_str());
        if !wrong.is_empty() {
            return Err(IngressError::Labels(wrong).into());
        }
        let st = stack::stack(cx.spec, root.as_deref());
        let deployed = deploy(
            mgr.as_ref(),
            &StackDeploy {
                name: STACK,
                dir: DIR,
                files: st.all(),
                services: SERVICES.len(),
            },
            &say,
        )
        .await?;
        out.cluster |= deployed;
        if !deployed && !new_exe.is_empty() {
            // A running route watcher keeps the executable it started with.
            cx.say("restarting the route watcher on the new clusterkit executable");
            mgr.exec(
                &Cmd::new("docker service update --force --detach --quiet ")
                    .arg(&format!("{STACK}_routes"))
                    .push(" >/dev/null"),
            )
            .await?;
            out.cluster = true;
        }
        if let Some(why) = wait_running(mgr.as_ref(), STACK, RUN_PATIENCE, &say).await? {
            return Err(IngressError::NotRunning(why).into());
        }
        let status = wait_certificates(cx.nodes, cx.spec, CERTIFICATE_PATIENCE, &say).await?;
        let missing = status.missing_certificates();
        for r in &status.refused {
            cx.say(&format!("service {} not routed: {}", r.service, r.reason));
        }
        if !missing.is_empty() {
            cx.say(&format!(
                "no certificate yet for {}: the issuer keeps asking; check that each name's DNS points at the ingress nodes (`clusterkit doctor`)",
                missing.join(", ")
            ));
        }
        for h in status.hosts.iter().filter(|h| h.certificate.is_some()) {
            if let Some(p) = h
                .edges
                .and_then(|c| crate::serve::edges_problem(&h.host, c))
            {
                cx.say(&p);
            }
        }
        let serving: Vec<&str> = cx
            .spec
            .nodes
            .iter()
            .filter(|n| n.ingress)
            .map(|n| n.name.as_str())
            .collect();
        out.summary = Some(format!(
            "HTTPS ingress on {} ({} route(s), {} of {} host(s) with a certificate)",
            if serving.len() == cx.spec.nodes.len() {
                "every node".to_string()
            } else {
                serving.join(", ")
            },
            status.routes.len(),
            status.hosts.len() - missing.len(),
            status.hosts.len()
        ));
        Ok(out)
    }
}

impl IngressPhase {
    /// clusterkit's executable on every manager (where the route watcher
    /// may run), written only where it differs.
    async fn put_executable(&self, cx: &Context<'_>) -> Result<Vec<String>, BoxError> {
        let mgrs: Vec<Arc<dyn Transport>> =
            managers(cx.nodes, cx.spec).into_iter().cloned().collect();
        check_arch(&mgrs, "the route watcher", "up").await?;
        let exe = self.clusterkit.as_ref().ok_or(IngressError::NoExecutable)?;
        let written = install_executable(&mgrs, exe).await?;
        for n in &written {
            cx.say(&format!("{n}: clusterkit's executable copied to {BINARY}"));
        }
        Ok(written)
    }
}

/// Asks the route watcher for its status, through the node that runs it
/// (its port is on the stack's own overlay only): `None` while it runs
/// nowhere or does not answer yet.
pub async fn status(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Option<Status>, IngressError> {
    let mgr = clusterkit_core::stack::answering_manager(nodes, spec, std::time::Duration::ZERO)
        .await?
        .ok_or(IngressError::NoManager)?;
    let on = mgr
        .exec(
            &Cmd::new("docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' ")
                .arg(&format!("{STACK}_routes"))
                .push(" 2>/dev/null || true"),
        )
        .await?
        .stdout_str();
    let Some(node) = on
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("Running"))
        .and_then(|l| l.split_whitespace().next())
    else {
        return Ok(None);
    };
    let Some(t) = nodes.iter().find(|t| t.node() == node) else {
        return Ok(None);
    };
    // bash's /dev/tcp: the route watcher's image needs nothing else.
    let ask = format!(
        "c=$(docker ps -q --filter label=com.docker.swarm.service.name={STACK}_routes | head -n 1); \
         [ -n \"$c\" ] && docker exec \"$c\" bash -c 'exec 3<>/dev/tcp/127.0.0.1/{PORT}; \
         printf \"GET /status HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3' 2>/dev/null || true"
    );
    let answer = t
        .exec(&Cmd::new(ask).within(Duration::from_secs(20)))
        .await?
        .stdout_str();
    Ok(parse_status(&answer))
}

/// The status in an HTTP answer: the body of a `200`, read as [`Status`];
/// anything else (not answering yet, a foreign body) is `None`.
pub fn parse_status(answer: &str) -> Option<Status> {
    let (head, body) = answer.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// Waits until every routed host has a certificate stored and every
/// running edge shows it (the route watcher asks them), up to `patience`;
/// returns the last status (with the hosts still missing one, or not shown
/// everywhere).
pub async fn wait_certificates(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    patience: Duration,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Status, IngressError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut said = false;
    loop {
        let st = status(nodes, spec).await?;
        let done = st.as_ref().is_some_and(|s| {
            s.missing_certificates().is_empty() && s.not_shown_everywhere().is_empty()
        });
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(st.unwrap_or_default());
        }
        if !said {
            if let Some(s) = st.as_ref().filter(|s| !s.missing_certificates().is_empty()) {
                say(&format!(
                    "waiting for the certificates of {} (the issuer orders each once for the cluster)",
                    s.missing_certificates().join(", ")
                ));
                said = true;
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_read_from_a_200_only() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"routes\":[],\"hosts\":[{\"host\":\"a.example.com\",\"certificate\":null}],\"refused\":[]}";
        let st = parse_status(ok).unwrap();
        assert_eq!(st.hosts[0].host, "a.example.com");
        assert!(parse_status("HTTP/1.1 503 Service Unavailable\r\n\r\nnot yet").is_none());
        assert!(parse_status("").is_none());
        assert!(parse_status("HTTP/1.1 200 OK\r\n\r\n<html>").is_none());
    }

    #[test]
    fn a_node_labelled_otherwise_than_described_is_named() {
        let mut spec = clusterkit_core::spec::example(3);
        spec.nodes[2].ingress = false;
        assert!(label_mismatches(&spec, "node1 true\nnode2 true\nnode3 false\n").is_empty());
        // A node not in the swarm's answer is not judged.
        assert!(label_mismatches(&spec, "node1 true\nnode3 false\n").is_empty());
        assert_eq!(
            label_mismatches(&spec, "node1 true\nnode2 \nnode3 true\n"),
            [
                "node2 is labelled clusterkit.ingress=(none), the description says true",
                "node3 is labelled clusterkit.ingress=true, the description says false"
            ]
        );
    }
}
