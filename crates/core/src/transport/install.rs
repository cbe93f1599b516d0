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

/// The distribution's Docker Engine package, the one a pinned version names.
pub const ENGINE_PACKAGE: &str = "docker.io";

/// The shell command printing the installed engine package's version (empty when absent).
pub const INSTALLED_VERSION: &str = "dpkg-query -W -f='${Version}' docker.io 2>/dev/null || true";

/// The install script for a source and the node's facts (pure, for `--dry-run` and tests).
pub fn install_script(source: DockerSource, f: &Facts) -> Result<String, crate::Invalid> {
    install_script_pinned(source, f, None).map_err(crate::Invalid)
}

/// The install script, with the distribution's package at `version` (held,
/// so that the system's own upgrades leave it) when one is pinned. `version`
/// is checked ([`crate::spec::package_version`]): it goes on a command line.
pub fn install_script_pinned(
    source: DockerSource,
    f: &Facts,
    version: Option<&str>,
) -> Result<String, String> {
    if !super::facts::SUPPORTED_OS.contains(&f.os_id.as_str()) {
        return Err(format!(
            "cannot install Docker on `{}`: clusterkit installs onto Debian and Ubuntu",
            f.os_id
        ));
    }
    if let (DockerSource::Distribution, Some(v)) = (source, version) {
        let v = crate::spec::package_version(v)?;
        return Ok(format!(
            "{}; systemctl enable --now docker >/dev/null 2>&1 || service docker start",
            engine_package_script_checked(v, true)
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

/// Installs (or replaces) the engine package at `version` and holds it: an
/// upgrade or a downgrade alike; stops at the first failure. The package's
/// own scripts may or may not restart the engine (a roll restarts it).
/// `version` goes on the command line as it is: check it first
/// ([`crate::spec::package_version`]; the spec's is checked).
pub fn engine_package_script(version: &str) -> String {
    engine_package_script_checked(version, false)
}

/// The shell test that apt offers the engine package at `version`: status 1
/// when it does not (`apt-cache show` of a version apt does not know prints
/// nothing, with status 0). `version` is checked first, as for
/// [`engine_package_script`].
pub fn engine_offered(version: &str) -> String {
    format!("apt-cache show {ENGINE_PACKAGE}={version} 2>/dev/null | grep -q '^Package:'")
}

/// What a node installing the cluster's pinned engine says when its package
/// sources no longer offer that version (Debian keeps only a suite's newest
/// `docker.io`): apt's own "Version … was not found" names no way on.
const PINNED_MISSING: &str = "is in none of the package sources of this node (`apt-cache policy docker.io` lists \
those it can install). It is the engine of the cluster: engine_version under [swarm], else the version the nodes \
run, recorded in .clusterkit/state.toml. Pin one this node can install under [swarm] engine_version, roll \
the other nodes to it with `clusterkit upgrade --component docker`, then run again";

/// [`engine_package_script`], which first stops with [`PINNED_MISSING`]
/// when apt does not offer the version, if `check`.
fn engine_package_script_checked(version: &str, check: bool) -> String {
    let check = if check {
        format!(
            "{} || {{ echo '{ENGINE_PACKAGE} {version} {PINNED_MISSING}' >&2; exit 3; }}; ",
            engine_offered(version)
        )
    } else {
        String::new()
    };
    format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; {check}\
         apt-get install -y -q --allow-downgrades --allow-change-held-packages \
         -o Dpkg::Options::=--force-confold {ENGINE_PACKAGE}={version}; apt-mark hold {ENGINE_PACKAGE} >/dev/null"
    )
}

/// The engine package's installed version on `t`, if it is installed.
pub async fn installed_engine_package(t: &dyn Transport) -> Result<Option<String>, TransportError> {
    let v = t.exec(&Cmd::new(INSTALLED_VERSION)).await?.stdout_str();
    let v = v.trim();
    Ok((!v.is_empty()).then(|| v.to_string()))
}

/// Makes sure a recent enough Docker Engine runs on the node; idempotent.
pub async fn ensure_docker(
    t: &dyn Transport,
    f: &Facts,
    source: DockerSource,
    progress: &(dyn for<'l> Fn(&'l str) + Send + Sync),
) -> Result<DockerAction, TransportError> {
    ensure_docker_pinned(t, f, source, None, progress).await
}

/// [`ensure_docker`], installing the distribution's package at `version`
/// (held) when one is pinned. An engine already running is left as it is:
/// changing it is a roll (`clusterkit upgrade --component docker`), never
/// every node at once.
pub async fn ensure_docker_pinned(
    t: &dyn Transport,
    f: &Facts,
    source: DockerSource,
    version: Option<&str>,
    progress: &(dyn for<'l> Fn(&'l str) + Send + Sync),
) -> Result<DockerAction, TransportError> {
    if let Some(v) = f.docker.as_deref().filter(|v| recent_enough(v)) {
        return Ok(DockerAction::Present(v.to_string()));
    }
    let script =
        install_script_pinned(source, f, version).map_err(|reason| TransportError::Failed {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> Facts {
        crate::transport::facts::parse("os_id=debian\ncodename=bookworm\n", 0.0, 0.0)
    }

    #[test]
    fn a_pinned_engine_is_installed_at_its_version_and_held() {
        let s = install_script_pinned(
            DockerSource::Distribution,
            &debian(),
            Some("20.10.24+dfsg1-1+deb12u1+b6"),
        )
        .unwrap();
        assert!(s.starts_with("set -e;"), "{s}");
        assert!(s.contains("docker.io=20.10.24+dfsg1-1+deb12u1+b6"), "{s}");
        assert!(s.contains("apt-mark hold docker.io"), "{s}");
        // A version apt no longer offers stops before apt, with the way on.
        let check = s.find("apt-cache show docker.io=20.10.24").expect(&s);
        assert!(check < s.find("apt-get install").unwrap(), "{s}");
        assert!(s.contains("upgrade --component docker"), "{s}");
        // The message sits in single quotes: the script parses.
        let parsed = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .status()
            .unwrap();
        assert!(parsed.success(), "{s}");
        // Unpinned: the distribution's current package, not held.
        let s = install_script_pinned(DockerSource::Distribution, &debian(), None).unwrap();
        assert!(
            s.contains("install -y -q docker.io;") && !s.contains("hold"),
            "{s}"
        );
    }

    #[test]
    fn a_version_that_is_not_one_never_reaches_the_shell() {
        for bad in ["1.0; rm -rf /", "$(id)", "latest", "1.0 2.0", ""] {
            let e = install_script_pinned(DockerSource::Distribution, &debian(), Some(bad))
                .unwrap_err();
            assert!(e.contains("is not a package version"), "{bad}: {e}");
        }
        assert!(crate::spec::package_version("1:2.3~rc1+b2-4").is_ok());
    }
}
