//! What reaches the nodes (feature `remote`).

use clusterkit_core::stack::{deploy, ensure_secret, wait_running, SecretValue, StackDeploy};
use clusterkit_core::transport::{fan_out, images, Cmd, Transport, TransportError, Upload};
use std::sync::Arc;

use crate::*;

/// A command that asks Prometheus (port 9090) or Alertmanager (9093) on the
/// node it runs on for `path`, as the monitoring API's user: its answer on
/// stdout.
pub fn api_get(port: u16, path: &str) -> Cmd {
    let url = format!("http://127.0.0.1:{port}{path}");
    Cmd::new("curl -sf -K ")
        .push(API_CURL_PATH)
        .push(" ")
        .arg(&url)
        .push(" 2>/dev/null || wget -qO- --config=")
        .push(API_WGET_PATH)
        .push(" ")
        .arg(&url)
}

/// [`api_get`] with a POST.
pub fn api_post(port: u16, path: &str) -> Cmd {
    let url = format!("http://127.0.0.1:{port}{path}");
    Cmd::new("curl -s -XPOST -K ")
        .push(API_CURL_PATH)
        .push(" ")
        .arg(&url)
        .push(" 2>/dev/null || wget -qO- --post-data= --config=")
        .push(API_WGET_PATH)
        .push(" ")
        .arg(&url)
}

/// Errors of the monitoring layer.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A remote operation failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An image is missing on nodes and could not be pulled.
    #[error("image {image} is missing on {nodes} and could not be pulled: {fix}")]
    ImageMissing {
        /// Image.
        image: String,
        /// Nodes.
        nodes: String,
        /// What to do.
        fix: String,
    },
    /// No manager is connected.
    #[error("no manager is connected: monitoring is deployed through the swarm")]
    NoManager,
    /// A password file is gone but its secret is there, and could not be read back.
    #[error("{what}'s password file {path} is on no manager and the secret {secret} could not be \
             read back into it ({why}): remove the stack and the secret (`docker stack rm clusterkit-monitoring; docker secret rm {secret}` \
             on a manager) and re-run to make a new password")]
    PasswordLost {
        /// Whose password.
        what: &'static str,
        /// Its file on the managers.
        path: &'static str,
        /// Its Swarm secret.
        secret: &'static str,
        /// What the read-back said.
        why: String,
    },
    /// A password file on a manager holds something clusterkit never writes.
    #[error("{node}: {path} is not a password clusterkit made (letters and digits): remove it and re-run")]
    BadPassword {
        /// The manager.
        node: String,
        /// The file.
        path: &'static str,
    },
    /// The data volumes' driver does not run.
    #[error("the volume driver `{driver}` for monitoring data does not run on {node}: deploy storage first \
             (`clusterkit storage up`), or keep the data on each node with `volume_driver = \"local\"` in [monitoring]")]
    NoVolumeDriver {
        /// Driver.
        driver: String,
        /// Node.
        node: String,
    },
    /// Services did not start.
    #[error("the monitoring services do not run after {patience} s:\n{0}\n(`docker service ps --no-trunc SERVICE` on a manager shows more; fix and re-run)", patience = RUN_PATIENCE.as_secs())]
    NotRunning(String),
    /// A roll to new images did not end (Swarm stopped it, or it made no progress).
    #[error(transparent)]
    Roll(Box<clusterkit_core::stack::roll::RollError>),
    /// A backup or restore step failed.
    #[error("{node}: {reason}")]
    Snapshot {
        /// Node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Local randomness failed.
    #[error("reading /dev/urandom: {0}")]
    Random(std::io::Error),
}

impl From<clusterkit_core::stack::roll::RollError> for MonitorError {
    fn from(e: clusterkit_core::stack::roll::RollError) -> Self {
        MonitorError::Roll(Box::new(e))
    }
}

use clusterkit_core::stack::managers;

/// Makes sure every node holds the images it runs; a missing one is pulled
/// on the node (a registry it can reach), and an error says what to do when
/// that fails.
pub async fn ensure_images(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), MonitorError> {
    let wanted = render::images(spec);
    let mgrs: Vec<String> = managers(nodes, spec)
        .iter()
        .map(|t| t.node().to_string())
        .collect();
    for (n, r) in fan_out(nodes, 16, |t| {
        let w: Vec<String> = wanted
            .iter()
            .filter(|(_, everywhere)| *everywhere || mgrs.iter().any(|m| m == t.node()))
            .map(|(i, _)| i.clone())
            .collect();
        async move {
            let mut failed = Vec::new();
            for image in images::missing(t, &w).await? {
                progress(&format!("{}: pulling {image}", t.node()));
                let pulled = t
                    .exec_raw(
                        &Cmd::new("docker pull -q ").arg(&image).push(" >/dev/null"),
                        None,
                    )
                    .await?;
                if pulled.status != 0 {
                    failed.push(image);
                }
            }
            Ok::<_, TransportError>(failed)
        }
    })
    .await
    {
        if let Some(image) = r?.into_iter().next() {
            let off = match image {
                ref i if *i == spec.monitoring.images.grafana => "grafana = false",
                ref i if *i == spec.monitoring.images.cadvisor => "cadvisor = false",
                ref i if *i == spec.monitoring.images.alertmanager => "alertmanager = false",
                _ => "another image in `[monitoring]`",
            };
            return Err(MonitorError::ImageMissing {
                fix: format!(
                    "copy it from a machine that has it (`clusterkit images push {image}`), or set {off} in the config's [monitoring]"
                ),
                image,
                nodes: n,
            });
        }
    }
    Ok(())
}

/// Grafana's administrator password, from the first manager that holds it.
pub async fn grafana_password(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Option<String>, MonitorError> {
    password_on_managers(nodes, spec, GRAFANA_PASSWORD_PATH).await
}

/// The monitoring API's password (Prometheus's and Alertmanager's user
/// [`render::API_USER`]), from the first manager that holds it.
pub async fn api_password(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Option<String>, MonitorError> {
    password_on_managers(nodes, spec, API_PASSWORD_PATH).await
}

/// A password file's content from the first manager that holds it; one
/// holding anything but letters and digits (what [`new_password`] makes)
/// is refused: it goes into configuration files.
async fn password_on_managers(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    path: &'static str,
) -> Result<Option<String>, MonitorError> {
    for t in managers(nodes, spec) {
        let out = t
            .exec_raw(&Cmd::new(format!("cat {path} 2>/dev/null")), None)
            .await?;
        let pw = out.stdout_str().trim().to_string();
        if out.status == 0 && !pw.is_empty() {
            if pw.len() > 128 || !pw.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(MonitorError::BadPassword {
                    node: t.node().to_string(),
                    path,
                });
            }
            return Ok(Some(pw));
        }
    }
    Ok(None)
}

fn new_password() -> Result<String, MonitorError> {
    use std::io::Read;
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(MonitorError::Random)?;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// The one-shot service that reads a password's secret back into a file.
const RECOVERY_JOB: &str = "clusterkit-password-recovery";

/// A password kept as a Swarm secret and in a root-only file on every manager.
struct Kept {
    /// Whose (for messages).
    what: &'static str,
    /// The secret.
    secret: &'static str,
    /// The file on the managers.
    path: &'static str,
}

const GRAFANA_KEPT: Kept = Kept {
    what: "Grafana",
    secret: render::GRAFANA_SECRET,
    path: GRAFANA_PASSWORD_PATH,
};

const API_KEPT: Kept = Kept {
    what: "the monitoring API",
    secret: render::API_SECRET,
    path: API_PASSWORD_PATH,
};

/// Reads a password back from its Swarm secret (after a restore the secret
/// is there, the managers' files are not): a one-shot task on `mgr`,
/// running `image` (one the stack runs) with the secret mounted, copies it
/// into a root-only file there; nothing passes through logs or this
/// machine's disk.
async fn recover_password(
    mgr: &dyn Transport,
    kept: &Kept,
    image: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String, MonitorError> {
    progress(&format!(
        "{}'s password file is on no manager but its secret exists: reading it back from the secret",
        kept.what
    ));
    let dir = kept
        .path
        .rsplit_once('/')
        .map_or("/etc/clusterkit", |(d, _)| d);
    let tmp = "password.recovered";
    let script = Cmd::new(format!(
        "set -e; mkdir -p {dir} && chmod 700 {dir}; rm -f {dir}/{tmp}; \
         docker service rm {RECOVERY_JOB} >/dev/null 2>&1 || true; \
         docker service create --detach --quiet --name {RECOVERY_JOB} --mode replicated-job \
           --restart-condition none --constraint node.id==$(docker info -f '{{{{.Swarm.NodeID}}}}') \
           --secret source={},target=pw,mode=0400 --mount type=bind,source={dir},target=/out \
           --user 0 --entrypoint sh ",
        kept.secret
    ))
    .arg(image)
    .push(&format!(
        " -c 'umask 077; cat /run/secrets/pw > /out/{tmp}' >/dev/null; \
         for i in $(seq 180); do \
           s=$(docker service ps --format '{{{{.CurrentState}}}}' {RECOVERY_JOB} | head -n1); \
           case $s in Complete*) break;; Failed*|Rejected*) break;; esac; sleep 1; \
         done; \
         docker service ps --no-trunc --format '{{{{.CurrentState}}}} {{{{.Error}}}}' {RECOVERY_JOB} | head -n1 >&2; \
         docker service rm {RECOVERY_JOB} >/dev/null 2>&1 || true; \
         cat {dir}/{tmp}; rm -f {dir}/{tmp}"
    ));
    // Up to 3 minutes: on a swarm just restored the manager's agent may
    // leave the job Assigned for over a minute while it reconciles the
    // restored services' tasks (seen once in CI).
    let out = mgr.exec_raw(&script, None).await?;
    let pw = out.stdout_str().trim().to_string();
    if out.status != 0 || pw.is_empty() {
        return Err(MonitorError::PasswordLost {
            what: kept.what,
            path: kept.path,
            secret: kept.secret,
            why: format!(
                "{}: {}",
                mgr.node(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    if !pw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(MonitorError::BadPassword {
            node: mgr.node().to_string(),
            path: kept.path,
        });
    }
    Ok(pw)
}

/// A kept password: from the managers' files; else, on a restored swarm
/// (the secret came back, the files did not), read back from its secret by a
/// task of `image`; else a new one.
async fn kept_password(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    mgr: &dyn Transport,
    kept: &Kept,
    image: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String, MonitorError> {
    match password_on_managers(nodes, spec, kept.path).await? {
        Some(pw) => Ok(pw),
        None if clusterkit_core::stack::secret_exists(mgr, kept.secret).await? => {
            recover_password(mgr, kept, image, progress).await
        }
        None => new_password(),
    }
}

/// What [`up`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorChange {
    /// The stack was deployed.
    pub deployed: bool,
    /// Grafana's password was made (first run).
    pub password_created: bool,
    /// Managers whose Grafana keeper ([`keeper`]) was installed or changed.
    pub keeper_changed: Vec<String>,
}

impl MonitorChange {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.deployed || self.password_created || !self.keeper_changed.is_empty()
    }
}

/// Deploys the monitoring stack (idempotent: unchanged files, no deploy).
pub async fn up(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<MonitorChange, MonitorError> {
    let mut change = MonitorChange::default();
    ensure_images(nodes, spec, progress).await?;
    let mgrs = managers(nodes, spec);
    let mgr = clusterkit_core::stack::answering_manager(
        nodes,
        spec,
        clusterkit_core::stack::LEADER_PATIENCE,
    )
    .await?
    .ok_or(MonitorError::NoManager)?;
    let driver = &spec.monitoring.volume_driver;
    if driver != "local" {
        // Data volumes on the storage's driver: it must answer on the managers
        // (where the stateful services run), or their tasks would never start.
        let on: Vec<Arc<dyn Transport>> = mgrs.iter().map(|t| Arc::clone(t)).collect();
        if let Some(n) = clusterkit_core::stack::without_volume_driver(&on, driver).await? {
            return Err(MonitorError::NoVolumeDriver {
                driver: driver.clone(),
                node: n,
            });
        }
    }

    // The monitoring API's password: Prometheus's and Alertmanager's users,
    // and what Prometheus, Grafana and clusterkit log in with.
    let api_pw = kept_password(
        nodes,
        spec,
        mgr.as_ref(),
        &API_KEPT,
        &spec.monitoring.images.prometheus,
        progress,
    )
    .await?;
    let curl = format!("user = \"{}:{api_pw}\"\n", render::API_USER);
    let wget = format!("user = {}\npassword = {api_pw}\n", render::API_USER);
    for t in &mgrs {
        for (content, path) in [
            (api_pw.as_str(), API_PASSWORD_PATH),
            (curl.as_str(), API_CURL_PATH),
            (wget.as_str(), API_WGET_PATH),
        ] {
            t.upload(&Upload {
                content: content.as_bytes(),
                path,
                mode: 0o600,
                owner: None,
            })
            .await?;
        }
    }
    if ensure_secret(
        mgr.as_ref(),
        render::API_SECRET,
        SecretValue::Given(&api_pw),
    )
    .await?
    {
        progress("the monitoring API's password made (Prometheus and Alertmanager ask for it)");
        change.password_created = true;
    }
    if !clusterkit_core::stack::secret_exists(mgr.as_ref(), render::WEB_SECRET).await? {
        // Made once: a new hash (a new salt) each run would roll the services.
        let hash = bcrypt::hash(&api_pw, bcrypt::DEFAULT_COST)
            .map_err(|e| MonitorError::Random(std::io::Error::other(e.to_string())))?;
        ensure_secret(
            mgr.as_ref(),
            render::WEB_SECRET,
            SecretValue::Given(&render::web_config(&hash)),
        )
        .await?;
    }

    if spec.monitoring.grafana {
        let pw = kept_password(
            nodes,
            spec,
            mgr.as_ref(),
            &GRAFANA_KEPT,
            &spec.monitoring.images.grafana,
            progress,
        )
        .await?;
        // Every manager keeps it, so any of them can show it.
        for t in &mgrs {
            t.upload(&Upload {
                content: pw.as_bytes(),
                path: GRAFANA_PASSWORD_PATH,
                mode: 0o600,
                owner: None,
            })
            .await?;
        }
        if ensure_secret(
            mgr.as_ref(),
            render::GRAFANA_SECRET,
            SecretValue::Given(&pw),
        )
        .await?
        {
            progress(
                "Grafana's administrator password made (`clusterkit monitor password` shows it)",
            );
            change.password_created = true;
        }
    }

    let stack = render::stack(spec);
    change.deployed = deploy(
        mgr.as_ref(),
        &StackDeploy {
            name: render::STACK,
            dir: STACK_DIR,
            files: stack.all(),
            services: render::services(spec).len(),
        },
        progress,
    )
    .await?;
    if let Some(why) = wait_running(mgr.as_ref(), render::STACK, RUN_PATIENCE, progress).await? {
        return Err(MonitorError::NotRunning(why));
    }

    // Grafana's database through the loss of its node: the keeper on every
    // manager (removed where it is not wanted any more).
    let keep = keeper::wanted(spec);
    let mgr_arcs: Vec<Arc<dyn Transport>> = mgrs.iter().map(|t| Arc::clone(t)).collect();
    for (n, r) in fan_out(&mgr_arcs, 16, |t| async move {
        if keep {
            keeper::install(t).await
        } else {
            keeper::remove(t).await.map(|()| false)
        }
    })
    .await
    {
        if r? {
            change.keeper_changed.push(n);
        }
    }
    if !change.keeper_changed.is_empty() {
        progress(&format!(
            "Grafana's database kept on the cluster's S3 every {} s, warm on {} (keeper installed)",
            keeper::EVERY_SECS,
            change.keeper_changed.join(", ")
        ));
    }
    Ok(change)
}

/// How long the services may take to start after a deploy.
const RUN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Where a monitoring service answers: the node running its task and the
/// port published there (host mode, over the mesh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Service (compose name).
    pub service: &'static str,
    /// Node running it.
    pub node: String,
    /// The node's mesh address.
    pub address: clusterkit_core::MeshAddr,
    /// Port.
    pub port: u16,
}

/// The web endpoints of the running monitoring services (Prometheus,
/// Grafana, Alertmanager), found through a manager.
pub async fn endpoints(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Vec<Endpoint>, MonitorError> {
    let mgr = clusterkit_core::stack::answering_manager(nodes, spec, std::time::Duration::ZERO)
        .await?
        .ok_or(MonitorError::NoManager)?;
    let wanted: Vec<(&'static str, u16)> = [
        ("prometheus", 9090),
        ("grafana", 3000),
        ("alertmanager", 9093),
    ]
    .into_iter()
    .filter(|(service, _)| render::services(spec).contains(service))
    .collect();
    // Every service asked at once, each on its own channel.
    let asked = futures::future::join_all(wanted.iter().map(|(service, _)| {
        // The swarm node running the task, by the `clusterkit.node` label
        // (hostnames need not match the inventory's names).
        let script = format!(
            "for t in $(docker service ps -q --filter desired-state=running {}_{service}); do \
               s=$(docker inspect -f '{{{{.Status.State}}}} {{{{.NodeID}}}}' $t); \
               case $s in running*) docker node inspect -f '{{{{index .Spec.Labels \"clusterkit.node\"}}}}' ${{s#running }}; break;; esac; \
             done",
            render::STACK
        );
        async move { mgr.exec_raw(&Cmd::new(script), None).await }
    }))
    .await;
    let mut out = Vec::new();
    for ((service, port), r) in wanted.into_iter().zip(asked) {
        let node = r?.stdout_str().trim().to_string();
        let node = (!node.is_empty()).then_some(node);
        if let Some(n) = node.and_then(|h| spec.nodes.iter().find(|n| n.name.as_str() == h)) {
            out.push(Endpoint {
                service,
                node: n.name.to_string(),
                address: n.mesh_address,
                port,
            });
        }
    }
    Ok(out)
}

/// Prometheus's scrape targets, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Targets {
    /// Targets answering.
    pub up: usize,
    /// Every active target.
    pub total: usize,
    /// The ones not answering, as `job/instance`.
    pub down: Vec<String>,
    /// Alerts firing, by name (Watchdog excepted).
    pub firing: Vec<String>,
}

impl Targets {
    /// Prometheus has found targets and every one answers.
    pub fn whole(&self) -> bool {
        self.down.is_empty() && self.total > 0
    }
}

/// Where `service` runs (its endpoint) and the connection to that node;
/// `None` when it does not run on a connected node.
pub async fn running_on<'a>(
    nodes: &'a [Arc<dyn Transport>],
    spec: &ClusterSpec,
    service: &str,
) -> Result<Option<(Endpoint, &'a Arc<dyn Transport>)>, MonitorError> {
    let Some(e) = endpoints(nodes, spec)
        .await?
        .into_iter()
        .find(|e| e.service == service)
    else {
        return Ok(None);
    };
    Ok(nodes.iter().find(|t| t.node() == e.node).map(|t| (e, t)))
}

/// Asks Prometheus, on the node running it, for its targets and alerts.
/// `None` when Prometheus does not run.
pub async fn targets(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Result<Option<Targets>, MonitorError> {
    let Some((_, t)) = running_on(nodes, spec, "prometheus").await? else {
        return Ok(None);
    };
    let get = |path: &str| api_get(9090, path);
    let parse = |text: String| serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let tv = parse(
        t.exec_raw(&get("/api/v1/targets?state=active"), None)
            .await?
            .stdout_str(),
    );
    let av = parse(t.exec_raw(&get("/api/v1/alerts"), None).await?.stdout_str());
    Ok(Some(parse_targets(&tv, &av)))
}

/// At most `max` characters of `text`, control characters dropped: a
/// server's words, printed.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Reads Prometheus's answers to `/api/v1/targets?state=active` and
/// `/api/v1/alerts` (pure; a missing or malformed answer reads as nothing
/// found). A target down is named `job/instance: Prometheus's last error`,
/// the error kept short and printable.
pub fn parse_targets(tv: &serde_json::Value, av: &serde_json::Value) -> Targets {
    let mut out = Targets::default();
    for target in tv["data"]["activeTargets"].as_array().into_iter().flatten() {
        out.total += 1;
        if target["health"] == "up" {
            out.up += 1;
        } else {
            // Prometheus's own words on why, kept short and printable.
            let why = printable(target["lastError"].as_str().unwrap_or(""), 120);
            out.down.push(format!(
                "{}/{}{}",
                printable(target["labels"]["job"].as_str().unwrap_or("?"), 64),
                printable(target["labels"]["instance"].as_str().unwrap_or("?"), 64),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ));
        }
    }
    for alert in av["data"]["alerts"].as_array().into_iter().flatten() {
        let name = &printable(alert["labels"]["alertname"].as_str().unwrap_or("?"), 64);
        if alert["state"] == "firing" && name != "Watchdog" && !out.firing.iter().any(|f| f == name)
        {
            out.firing.push(name.to_string());
        }
    }
    out
}
