//! Application stacks: a compose file (format 3) checked here, then deployed
//! with `docker stack deploy` on a manager (bollard has no stack API; the CLI
//! labels services with their stack namespace, so `docker stack ls` shows
//! them), and waited for until every service runs.

use std::sync::Arc;
use std::time::Duration;

use clusterkit_core::spec::ClusterSpec;
use clusterkit_core::stack::{deploy as deploy_files, wait_running, StackDeploy};
use clusterkit_core::transport::Transport;
use marked_yaml::Node;

use crate::{SwarmError, NETWORK};

/// Where a stack's compose file goes on the manager that deploys it.
pub fn stack_dir(name: &str) -> String {
    format!("/etc/clusterkit/stacks/apps/{name}")
}

/// What a compose file holds, as far as deploying it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStack {
    /// Stack name.
    pub name: String,
    /// The compose file's text.
    pub compose: String,
    /// Services, by name.
    pub services: Vec<String>,
    /// Every image the services use.
    pub images: Vec<String>,
    /// Things that work but probably not as meant (unscraped services...).
    pub warnings: Vec<String>,
}

/// Checks a stack name: what `docker stack deploy` accepts, lower case.
pub fn check_name(name: &str) -> Result<(), clusterkit_core::Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err((format!(
            "`{name}` is not a stack name: use lower-case letters, digits, `-` and `_` (e.g. `app`)"
        ))
        .into())
    }
}

fn scalar<'a>(n: &'a Node, key: &str) -> Option<&'a str> {
    n.as_mapping()?
        .get_node(key)?
        .as_scalar()
        .map(|s| s.as_str())
}

/// A label's value, whether labels are a mapping or a `k=v` list.
fn label<'a>(labels: Option<&'a Node>, key: &str) -> Option<&'a str> {
    let labels = labels?;
    if let Some(m) = labels.as_mapping() {
        return m.get_node(key)?.as_scalar().map(|s| s.as_str());
    }
    labels.as_sequence()?.iter().find_map(|item| {
        let kv = item.as_scalar()?.as_str();
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

fn networks(svc: &Node) -> Vec<String> {
    let Some(n) = svc.as_mapping().and_then(|m| m.get_node("networks")) else {
        return Vec::new();
    };
    if let Some(seq) = n.as_sequence() {
        seq.iter()
            .filter_map(|x| x.as_scalar().map(|s| s.as_str().to_string()))
            .collect()
    } else if let Some(m) = n.as_mapping() {
        m.keys().map(|k| k.as_str().to_string()).collect()
    } else {
        Vec::new()
    }
}

/// Reads and checks a compose file (`file` names it in errors). Pure.
pub fn inspect(name: &str, file: &str, compose: &str) -> Result<AppStack, SwarmError> {
    let bad = |reason: String| SwarmError::StackFile {
        file: file.to_string(),
        reason,
    };
    check_name(name).map_err(|e| bad(e.into()))?;
    let root =
        marked_yaml::parse_yaml(0, compose).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let services = root
        .as_mapping()
        .and_then(|m| m.get_node("services"))
        .and_then(|s| s.as_mapping())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            bad("no `services:` section: a stack file lists its services under `services:`".into())
        })?;
    // The compose file's own network names for the cluster's overlay.
    let overlay_keys: Vec<String> = root
        .as_mapping()
        .and_then(|m| m.get_node("networks"))
        .and_then(|n| n.as_mapping())
        .map(|m| {
            m.iter()
                .filter(|(k, v)| {
                    let named = scalar(v, "name").unwrap_or(k.as_str());
                    named == NETWORK
                })
                .map(|(k, _)| k.as_str().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut out = AppStack {
        name: name.to_string(),
        compose: compose.to_string(),
        services: Vec::new(),
        images: Vec::new(),
        warnings: Vec::new(),
    };
    for (key, svc) in services.iter() {
        let sname = key.as_str();
        let line = key.span().start().map(|m| m.line()).unwrap_or(0);
        if svc
            .as_mapping()
            .is_some_and(|m| m.get_node("build").is_some())
        {
            return Err(bad(format!(
                "line {line}: service `{sname}` has `build:`, which a swarm cannot do: build the image, send it with `clusterkit images push IMAGE`, and name it in `image:`"
            )));
        }
        let image = scalar(svc, "image").ok_or_else(|| {
            bad(format!(
                "line {line}: service `{sname}` has no `image:`: name the image it runs"
            ))
        })?;
        if !out.images.iter().any(|i| i == image) {
            out.images.push(image.to_string());
        }
        out.services.push(sname.to_string());
        let deploy_labels = svc
            .as_mapping()
            .and_then(|m| m.get_node("deploy"))
            .and_then(|d| d.as_mapping())
            .and_then(|d| d.get_node("labels"));
        match label(deploy_labels, "prometheus.io/scrape") {
            Some("true") => {
                if !networks(svc).iter().any(|n| overlay_keys.contains(n)) {
                    out.warnings.push(format!(
                        "service `{sname}` asks to be scraped but is not on the `{NETWORK}` network, where Prometheus reaches it: add it (declared `external: true`)"
                    ));
                }
            }
            _ => {
                let elsewhere = svc
                    .as_mapping()
                    .and_then(|m| m.get_node("labels"))
                    .and_then(|l| label(Some(l), "prometheus.io/scrape").map(|_| ()));
                out.warnings.push(if elsewhere.is_some() {
                    format!("service `{sname}` has prometheus.io/scrape under `labels:` (the container's); Prometheus reads the service's: move it under `deploy: labels:`")
                } else {
                    format!("service `{sname}` has no `prometheus.io/scrape: \"true\"` label under `deploy: labels:`: Prometheus will not scrape it")
                });
            }
        }
    }
    Ok(out)
}

/// How long services may take to converge after a deploy.
pub const CONVERGE_PATIENCE: Duration = Duration::from_secs(180);

/// Deploys `stack` through a manager and waits until every service runs
/// (or fails with the failing tasks' own errors). Returns whether it
/// deployed (an unchanged file and every service present: nothing to do).
pub async fn deploy(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
    stack: &AppStack,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<bool, SwarmError> {
    let mgr = clusterkit_core::stack::answering_manager(
        nodes,
        spec,
        clusterkit_core::stack::LEADER_PATIENCE,
    )
    .await?
    .ok_or_else(|| SwarmError::NoQuorum("no manager is connected".into()))?;
    let dir = stack_dir(&stack.name);
    let deployed = deploy_files(
        mgr.as_ref(),
        &StackDeploy {
            name: &stack.name,
            dir: &dir,
            files: vec![("docker-compose.yml".into(), stack.compose.clone())],
            services: stack.services.len(),
        },
        progress,
    )
    .await?;
    if let Some(why) = wait_running(mgr.as_ref(), &stack.name, CONVERGE_PATIENCE, progress).await? {
        return Err(SwarmError::StackNotRunning {
            stack: stack.name.clone(),
            secs: CONVERGE_PATIENCE.as_secs(),
            why,
        });
    }
    Ok(deployed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "services:\n  web:\n    image: a/b:1\n    networks: [clusterkit]\n    deploy:\n      labels:\n        prometheus.io/scrape: \"true\"\n  db:\n    image: c/d:2\n    labels: [prometheus.io/scrape=true]\nnetworks:\n  clusterkit:\n    external: true\n";

    #[test]
    fn a_compose_file_is_read_for_services_images_and_scrape_labels() {
        let s = inspect("app", "app.yml", APP).unwrap();
        assert_eq!(s.services, ["web", "db"]);
        assert_eq!(s.images, ["a/b:1", "c/d:2"]);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("`db` has prometheus.io/scrape under `labels:`"));
        // Scraped but unreachable.
        let off = APP.replace("    networks: [clusterkit]\n", "");
        let s = inspect("app", "app.yml", &off).unwrap();
        assert!(
            s.warnings
                .iter()
                .any(|w| w
                    .contains("`web` asks to be scraped but is not on the `clusterkit` network"))
        );
    }

    #[test]
    fn unusable_files_and_names_are_explained() {
        let e = inspect("App!", "app.yml", APP).unwrap_err().to_string();
        assert!(e.contains("`App!` is not a stack name"), "{e}");
        let e = inspect("app", "app.yml", "services: [")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("app.yml: not valid YAML"), "{e}");
        let e = inspect("app", "app.yml", "version: \"3\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `services:` section"), "{e}");
        let e = inspect("app", "app.yml", "services:\n  web:\n    build: .\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: service `web` has `build:`"), "{e}");
        let e = inspect("app", "app.yml", "services:\n  web:\n    command: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("service `web` has no `image:`"), "{e}");
    }
}
