//! The HTTPS ingress alone (`clusterkit ingress`): [`up`] and [`status`].
//! `up`'s whole run builds it as its `ingress` phase.

use clusterkit_ingress::serve::Status;
use serde::Serialize;

use crate::session::Session;
use crate::up::{CapabilityReport, Phase, UpOptions};
use crate::OpsError;

/// Deploys the ingress (the engine's `ingress` phase after the facts, as
/// `up --only ingress`); `clusterkit` is the executable the route watcher
/// runs ([`UpOptions::clusterkit_exe`]).
pub async fn up(
    session: &Session<'_>,
    clusterkit: std::path::PathBuf,
) -> Result<CapabilityReport<IngressStatus>, OpsError> {
    refuse_when_off(session)?;
    let only = UpOptions {
        clusterkit_exe: Some(clusterkit),
        ..UpOptions::only(Phase::Ingress)
    };
    let up = crate::up::run(session, &only, "ingress").await?;
    let after = status(session).await?;
    Ok(CapabilityReport { up, after })
}

/// The ingress as its route watcher sees it.
#[derive(Debug, Clone, Serialize)]
pub struct IngressStatus {
    /// The routes, the hosts and their certificates, the services refused;
    /// `None` while the route watcher runs nowhere or does not answer.
    pub watcher: Option<Status>,
}

impl IngressStatus {
    /// Every routed host has its certificate, and the watcher answers.
    pub fn healthy(&self) -> bool {
        self.watcher
            .as_ref()
            .is_some_and(|s| s.missing_certificates().is_empty())
    }
}

impl std::fmt::Display for IngressStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(s) = &self.watcher else {
            return writeln!(
                f,
                "the ingress's route watcher does not answer (is the ingress deployed? `clusterkit up --only ingress`)"
            );
        };
        if s.routes.is_empty() {
            writeln!(
                f,
                "no route: give a service `clusterkit.ingress.host: NAME` in its deploy.labels"
            )?;
        }
        for r in &s.routes {
            writeln!(
                f,
                "https://{}{} -> {}:{}",
                r.host,
                r.path.as_deref().unwrap_or(""),
                r.service,
                r.port
            )?;
        }
        for h in &s.hosts {
            match &h.certificate {
                Some(fp) => writeln!(
                    f,
                    "{}: certificate stored (sha256 {}), issued by {}, expires {}{}",
                    h.host,
                    &fp[..16.min(fp.len())],
                    h.issued_by.as_deref().unwrap_or("an issuer it does not name"),
                    h.expires.as_deref().unwrap_or("at a date it does not say"),
                    match h.edges {
                        Some(c) => format!("; shown by {c}"),
                        None => String::new(),
                    }
                )?,

                None => writeln!(
                    f,
                    "{}: no certificate yet (the issuer keeps asking; its DNS must point at the ingress nodes)",
                    h.host
                )?,
            }
        }
        for r in &s.refused {
            writeln!(f, "not routed: {}: {}", r.service, r.reason)?;
        }
        Ok(())
    }
}

fn refuse_when_off(session: &Session<'_>) -> Result<(), OpsError> {
    if !session.loaded().built.spec.ingress.enabled {
        return Err(OpsError::Refused(
            "the ingress is off in this cluster's config: set `enabled = true` under [ingress]"
                .into(),
        ));
    }
    Ok(())
}

/// Asks the route watcher (through the node that runs it) for the routes
/// and certificates.
pub async fn status(session: &Session<'_>) -> Result<IngressStatus, OpsError> {
    refuse_when_off(session)?;
    let nodes = session.connect_all().await?;
    let watcher = clusterkit_ingress::phase::status(&nodes, &session.loaded().built.spec).await?;
    Ok(IngressStatus { watcher })
}
