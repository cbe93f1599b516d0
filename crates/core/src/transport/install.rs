//! Installing what a node needs before clusterkit can use it: Docker Engine.

use super::facts::Facts;
use super::{Cmd, Transport, TransportError};

/// Where Docker Engine comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DockerSource {
    /// The distribution's package (`docker.io`): no third-party repository.
    #[default]
    Distribution,
    /// Docker's own repository (`docker-ce`), as the seed does, for the node's
    /// own distribution, codename and architecture.
    DockerCe,
}

/// The oldest engine clusterkit accepts (swarm `--data-path-addr`, `--default-addr-pool`).
pub const MIN_DOCKER: (u32, u32) = (20, 10);

/// Whether a `docker version` string is at least [`MIN_DOCKER`].
pub fn recent_enough(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= MIN_DOCKER
}

/// What [`ensure_docker`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerAction {
    /// A recent enough engine runs: nothing done.
    Present(String),
    /// Installed (or upgraded) and started.
    Installed(String),
}

/// The install script for a source and the node's facts (pure, for `--dry-run` and tests).
pub fn install_script(source: DockerSource, f: &Facts) -> Result<String, String> {
    if !super::facts::SUPPORTED_OS.contains(&f.os_id.as_str()) {
        return Err(format!(
            "cannot install Docker on `{}`: clusterkit installs onto Debian and Ubuntu",
            f.os_id
        ));
    }
    let apt = "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq";
    Ok(match source {
        DockerSource::Distribution => format!(
            "set -e; {apt}; apt-get install -y -q docker.io; systemctl enable --now docker >/dev/null 2>&1 || service docker start"
        ),
        DockerSource::DockerCe => format!(
            "set -e; {apt}; apt-get install -y -qq ca-certificates curl >/dev/null; install -m 0755 -d /etc/apt/keyrings; \
             curl -fsSL https://download.docker.com/linux/{os}/gpg -o /etc/apt/keyrings/docker.asc; chmod a+r /etc/apt/keyrings/docker.asc; \
             echo \"deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/{os} {codename} stable\" \
             > /etc/apt/sources.list.d/docker.list; apt-get update -qq; \
             apt-get install -y -qq docker-ce docker-ce-cli containerd.io >/dev/null; systemctl enable --now docker >/dev/null",
            os = f.os_id,
            codename = f.codename,
        ),
    })
}

/// Makes sure a recent enough Docker Engine runs on the node; idempotent.
pub async fn ensure_docker(
    t: &dyn Transport,
    f: &Facts,
    source: DockerSource,
    progress: &(dyn for<'l> Fn(&'l str) + Send + Sync),
) -> Result<DockerAction, TransportError> {
    if let Some(v) = f.docker.as_deref().filter(|v| recent_enough(v)) {
        return Ok(DockerAction::Present(v.to_string()));
    }
    let script = install_script(source, f).map_err(|reason| TransportError::Failed {
        node: t.node().to_string(),
        addr: t.addr(),
        cmd: "install docker".into(),
        status: 1,
        stderr: reason,
    })?;
    progress("installing Docker Engine");
    t.exec_streaming(&Cmd::new(script), progress).await?;
    let v = t
        .exec(&Cmd::new("docker version --format '{{.Server.Version}}'"))
        .await?
        .stdout_str();
    Ok(DockerAction::Installed(v.trim().to_string()))
}
