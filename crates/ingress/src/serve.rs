//! The route watcher: what the edges and the issuer load, kept current.
//!
//! One task on a manager (the swarm's API answers there only) reads every
//! service's labels, turns them into routes ([`crate::route::routes`]), looks
//! in the shared storage for the certificates the issuer stored, and serves
//! the two Caddy configurations over the ingress stack's own overlay:
//!
//! - `GET /edge`: what every edge runs ([`crate::caddy::edge`]), the stored
//!   certificates' fingerprints in it, so that a certificate obtained or
//!   renewed changes the configuration and the edges load it;
//! - `GET /issuer`: what the issuer runs ([`crate::caddy::issuer`]);
//! - `GET /status`: the routes, the services refused and why, and which
//!   routed host has a certificate stored ([`Status`]).
//!
//! Every Caddy pulls its configuration ([`crate::caddy::pulling`]): a
//! service deployed with `clusterkit deploy` or a plain `docker stack
//! deploy` is routed within [`WATCH_EVERY`] plus the edges' pull period, a
//! removed one goes, and an unchanged configuration is not reloaded. When
//! this task is away (its node lost, until the swarm starts it elsewhere),
//! the Caddies keep the configuration they run.
//!
//! [`render`] is pure (tested on hostile labels and missing files); [`run`]
//! (feature `serve`) is the task itself.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::caddy::{self, certificate_files, CertificateFiles, EdgeOptions, Tls};
use crate::route::{routes, Refused, Route, Service};

/// The port the route watcher serves on, on the ingress stack's overlay.
pub const PORT: u16 = 9390;

/// How often the swarm's services are read again.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// What the route watcher is told (a file the ingress stack mounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeOptions {
    /// Who issues the certificates.
    pub tls: Tls,
    /// The shared storage's root, in this task and in the Caddies alike.
    pub storage_root: String,
    /// The issuer's address on the overlay (`tasks.SERVICE:80`).
    pub issuer: String,
    /// The URL the Caddies pull from, without the path
    /// (`http://tasks.SERVICE:9390`).
    pub url: String,
    /// How often the Caddies pull (a Go duration).
    pub pull_every: String,
    /// The address this task listens on.
    #[serde(default = "any_address")]
    pub listen: String,
    /// The edges' name on the overlay (`tasks.SERVICE`, every running
    /// edge's address), asked in a handshake for the certificate each
    /// serves; `None`: not asked.
    #[serde(default)]
    pub edges: Option<String>,
}

fn any_address() -> String {
    format!("0.0.0.0:{PORT}")
}

/// A routed host and its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// The host.
    pub host: String,
    /// The stored certificate's SHA-256 (hex); `None` while the issuer has
    /// not stored one.
    pub certificate: Option<String>,
    /// Who issued it (its issuer's name, RFC 4514).
    #[serde(default)]
    pub issued_by: Option<String>,
    /// When it expires (RFC 3339, UTC); the issuer renews it before.
    #[serde(default)]
    pub expires: Option<String>,
    /// The stored certificate's own SHA-256 (hex, of its DER): what an edge
    /// that loaded it shows in its handshake.
    #[serde(default)]
    pub leaf: Option<String>,
    /// How many edges show it, asked by the route watcher in a handshake
    /// with each; `None` until asked (or without a certificate).
    #[serde(default)]
    pub edges: Option<EdgeCount>,
}

/// How many of the running edges serve a host's stored certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeCount {
    /// Edges whose handshake showed the stored certificate.
    pub serving: usize,
    /// The edges the swarm's DNS listed (running tasks).
    pub of: usize,
}

/// `2 of 3 edges`.
impl std::fmt::Display for EdgeCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} edges", self.serving, self.of)
    }
}

/// What to say when fewer edges show a host's stored certificate than run
/// (an edge that could not load it keeps the one it had, or none); `None`
/// when every one shows it.
pub fn edges_problem(host: &str, c: EdgeCount) -> Option<String> {
    (c.serving < c.of).then(|| {
        format!(
            "{host}: {c} show the stored certificate (an edge loads it within seconds of its storing; \
             one that still does not a minute later could not: `docker service logs clusterkit-ingress_edge` says why)"
        )
    })
}

/// A PEM certificate chain's first certificate's SHA-256 (hex, of its DER),
/// as a handshake shows it; `None` when it does not parse.
pub fn leaf_fingerprint(pem: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    use x509_cert::der::Encode;
    let der = first_certificate(pem)?.to_der().ok()?;
    Some(hex::encode(Sha256::digest(der)))
}

/// A PEM certificate chain's first certificate, parsed; `None` when it
/// does not parse.
fn first_certificate(pem: &[u8]) -> Option<x509_cert::Certificate> {
    use x509_cert::der::DecodePem;
    let text = std::str::from_utf8(pem).ok()?;
    let end = text.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    x509_cert::Certificate::from_pem(&text[..end]).ok()
}

/// A PEM certificate chain's first certificate: its issuer and expiry.
/// `None` when it does not parse (a foreign file is not trusted to say).
pub fn certificate_facts(pem: &[u8]) -> Option<(String, String)> {
    let cert = first_certificate(pem)?;
    let tbs = &cert.tbs_certificate;
    let until = std::time::UNIX_EPOCH + tbs.validity.not_after.to_unix_duration();
    Some((
        tbs.issuer.to_string(),
        humantime::format_rfc3339_seconds(until).to_string(),
    ))
}

/// What `GET /status` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The routes served.
    pub routes: Vec<RouteStatus>,
    /// The routed hosts and their certificates.
    pub hosts: Vec<HostStatus>,
    /// The services whose labels asked for a route that was not made.
    pub refused: Vec<RefusedStatus>,
}

impl Status {
    /// The routed hosts without a certificate stored yet.
    pub fn missing_certificates(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|h| h.certificate.is_none())
            .map(|h| h.host.as_str())
            .collect()
    }

    /// The hosts whose stored certificate not every running edge shows
    /// yet (or that the route watcher has not asked the edges about yet).
    pub fn not_shown_everywhere(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|h| h.certificate.is_some())
            .filter(|h| h.edges.is_none_or(|c| c.serving < c.of))
            .map(|h| h.host.as_str())
            .collect()
    }
}

/// A route, as `GET /status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// The host.
    pub host: String,
    /// The path prefix, if any.
    pub path: Option<String>,
    /// The service.
    pub service: String,
    /// Its port.
    pub port: u16,
}

/// A refused service, as `GET /status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedStatus {
    /// The service.
    pub service: String,
    /// Why.
    pub reason: String,
}

impl From<&Route> for RouteStatus {
    fn from(r: &Route) -> Self {
        RouteStatus {
            host: r.host.clone(),
            path: r.path.clone(),
            service: r.service.clone(),
            port: r.port,
        }
    }
}

impl From<&Refused> for RefusedStatus {
    fn from(r: &Refused) -> Self {
        RefusedStatus {
            service: r.service.clone(),
            reason: r.reason.clone(),
        }
    }
}

/// What the route watcher serves, rendered from one reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The edges' configuration.
    pub edge: Value,
    /// The issuer's configuration.
    pub issuer: Value,
    /// The status.
    pub status: Status,
}

/// The storage as the route watcher reads it: a file's content by its key
/// (relative to the root), `None` when it is not there.
pub trait Storage {
    /// The file's content.
    fn read(&self, key: &str) -> Option<Vec<u8>>;
}

/// A directory: the shared storage mounted in the task.
pub struct Directory(pub std::path::PathBuf);

impl Storage for Directory {
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        // Keys come from `certificate_files`: made safe, no `..`, relative.
        std::fs::read(self.0.join(key)).ok()
    }
}

/// Renders what is served from the services' labels and the storage.
///
/// A routed host's certificate is loaded by the edges only when both its
/// certificate and its key are stored (a missing file would fail the whole
/// configuration): until then it is listed without one and the edges refuse
/// its handshakes, while the issuer obtains it.
pub fn render(o: &ServeOptions, services: &[Service], storage: &dyn Storage) -> Served {
    let found = routes(services);
    let mut certificates: Vec<CertificateFiles> = Vec::new();
    let mut hosts = Vec::new();
    for host in found.hosts() {
        let mut files = certificate_files(&o.tls, host);
        let (mut stored, mut facts, mut leaf) = (None, None, None);
        if let (Some(cert), Some(key)) =
            (storage.read(&files.certificate), storage.read(&files.key))
        {
            if looks_pem(&cert) && looks_pem(&key) {
                use sha2::{Digest, Sha256};
                stored = Some(hex::encode(Sha256::digest(&cert)));
                facts = certificate_facts(&cert);
                leaf = leaf_fingerprint(&cert);
            }
        }
        if let Some(f) = &stored {
            files.fingerprint = Some(f.clone());
            certificates.push(files);
        }
        let (issued_by, expires) = facts.unzip();
        hosts.push(HostStatus {
            host: host.to_string(),
            certificate: stored,
            issued_by,
            expires,
            leaf,
            edges: None,
        });
    }
    let admin = |path: &str| caddy::pulling(&format!("{}/{path}", o.url), &o.pull_every);
    let mut edge = caddy::edge(
        &found,
        &EdgeOptions {
            storage_root: o.storage_root.clone(),
            issuer: o.issuer.clone(),
            certificates,
        },
    );
    edge["admin"] = admin("edge");
    let mut issuer = caddy::issuer(&found.hosts(), &o.tls, &o.storage_root);
    issuer["admin"] = admin("issuer");
    Served {
        edge,
        issuer,
        status: Status {
            routes: found.routes.iter().map(RouteStatus::from).collect(),
            hosts,
            refused: found.refused.iter().map(RefusedStatus::from).collect(),
        },
    }
}

/// A file the issuer wrote is PEM, not a half-written or foreign file.
fn looks_pem(b: &[u8]) -> bool {
    b.starts_with(b"-----BEGIN ")
}

/// What a Caddy runs before its first pull: nothing but the pulling.
pub fn bootstrap(url: &str, every: &str) -> Value {
    serde_json::json!({ "admin": caddy::pulling(url, every) })
}

#[cfg(feature = "serve")]
pub use task::{run, ServeError};

#[cfg(feature = "serve")]
mod task {
    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::sync::{Arc, RwLock};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Request, Response, StatusCode};

    use super::{render, Directory, EdgeCount, ServeOptions, Served, WATCH_EVERY};
    use crate::route::Service;

    /// How often the edges are asked which certificate they serve.
    const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    /// How long one edge may take to connect and shake hands.
    const HANDSHAKE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

    /// The hosts with a stored certificate and its fingerprint (written by
    /// the watch, read by the probe).
    type Leaves = Arc<RwLock<Vec<(String, String)>>>;
    /// Per host: the fingerprint asked for and how many edges showed it.
    type Counts = Arc<RwLock<BTreeMap<String, (String, EdgeCount)>>>;

    /// The route watcher could not start.
    #[derive(Debug, thiserror::Error)]
    pub enum ServeError {
        /// The engine's socket could not be opened.
        #[error("the Docker Engine's socket: {0}")]
        Docker(#[from] bollard::errors::Error),
        /// The port could not be bound.
        #[error("listening on {0}: {1}")]
        Listen(String, std::io::Error),
    }

    type Shared = Arc<RwLock<Option<(Bytes, Bytes, Bytes)>>>;

    /// Runs the route watcher until the process ends: reads the services
    /// every [`WATCH_EVERY`], serves the last rendering. `say` receives a
    /// line for each change of routes, certificates or refusals (never a
    /// key or a certificate).
    pub async fn run(o: ServeOptions, say: impl Fn(&str) + Send + Sync) -> Result<(), ServeError> {
        // API 1.41 is Docker 20.10's, the oldest engine clusterkit accepts;
        // newer engines serve it too.
        let docker = bollard::Docker::connect_with_socket(
            "/var/run/docker.sock",
            30,
            &bollard::ClientVersion {
                major_version: 1,
                minor_version: 41,
            },
        )?;
        let listener = tokio::net::TcpListener::bind(&o.listen)
            .await
            .map_err(|e| ServeError::Listen(o.listen.clone(), e))?;
        say(&format!(
            "serving the ingress's configurations on {}",
            o.listen
        ));
        let shared: Shared = Arc::new(RwLock::new(None));
        let server = serve(listener, Arc::clone(&shared));
        let leaves: Leaves = Arc::default();
        let counts: Counts = Arc::default();
        let probe = probe_edges(o.edges.clone(), Arc::clone(&leaves), Arc::clone(&counts));
        let watch = async {
            let storage = Directory(o.storage_root.clone().into());
            let mut last_status = None;
            let mut last_error = None;
            loop {
                match services(&docker).await {
                    Ok(svcs) => {
                        last_error = None;
                        let Served {
                            edge,
                            issuer,
                            mut status,
                        } = render(&o, &svcs, &storage);
                        if last_status.as_ref() != Some(&status) {
                            say(&format!(
                                "routes: {}",
                                serde_json::to_string(&status).unwrap_or_default()
                            ));
                            last_status = Some(status.clone());
                        }
                        *leaves.write().unwrap_or_else(|e| e.into_inner()) = status
                            .hosts
                            .iter()
                            .filter_map(|h| Some((h.host.clone(), h.leaf.clone()?)))
                            .collect();
                        let counted = counts.read().unwrap_or_else(|e| e.into_inner()).clone();
                        for h in &mut status.hosts {
                            h.edges = counted
                                .get(&h.host)
                                .filter(|(leaf, _)| Some(leaf) == h.leaf.as_ref())
                                .map(|(_, c)| *c);
                        }
                        let bytes = |v: &serde_json::Value| {
                            Bytes::from(serde_json::to_vec(v).unwrap_or_default())
                        };
                        *shared.write().unwrap_or_else(|e| e.into_inner()) = Some((
                            bytes(&edge),
                            bytes(&issuer),
                            bytes(&serde_json::json!(status)),
                        ));
                    }
                    // The last rendering stays served: a Caddy pulling now
                    // gets what it runs, not an empty configuration.
                    // Said once, not every 3 s.
                    Err(e) => {
                        let e = e.to_string();
                        if last_error.as_ref() != Some(&e) {
                            say(&format!("reading the services: {e} (will retry)"));
                            last_error = Some(e);
                        }
                    }
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        };
        tokio::select! {
            r = server => r,
            () = watch => Ok(()),
            () = probe => Ok(()),
        }
    }

    /// Every [`PROBE_EVERY`]: each running edge (every address `edges`
    /// resolves to) asked in a TLS handshake, for each host with a stored
    /// certificate, which certificate it shows; counted per host against
    /// the stored one's fingerprint. Nothing is sent past the handshake, and
    /// the certificate is not verified: it is only compared.
    async fn probe_edges(edges: Option<String>, leaves: Leaves, counts: Counts) {
        let Some(edges) = edges else {
            return std::future::pending().await;
        };
        let tls = tokio_rustls::TlsConnector::from(Arc::new(see_any_certificate()));
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let wanted = leaves.read().unwrap_or_else(|e| e.into_inner()).clone();
            if wanted.is_empty() {
                continue;
            }
            let addrs: Vec<std::net::SocketAddr> =
                match tokio::net::lookup_host((edges.as_str(), 443)).await {
                    Ok(a) => a.collect(),
                    Err(_) => continue,
                };
            let mut next = BTreeMap::new();
            for (host, leaf) in wanted {
                // Every edge at once: a dead one costs its timeout, not the sum.
                let mut asked = tokio::task::JoinSet::new();
                for a in &addrs {
                    let (a, host, tls, leaf) = (*a, host.clone(), tls.clone(), leaf.clone());
                    asked.spawn(async move { shown(a, &host, &tls).await == Some(leaf) });
                }
                let serving = asked.join_all().await.into_iter().filter(|&s| s).count();
                next.insert(
                    host,
                    (
                        leaf,
                        EdgeCount {
                            serving,
                            of: addrs.len(),
                        },
                    ),
                );
            }
            *counts.write().unwrap_or_else(|e| e.into_inner()) = next;
        }
    }

    /// The SHA-256 (hex) of the certificate `addr` shows for `host`, or
    /// `None` when it does not answer in time.
    async fn shown(
        addr: std::net::SocketAddr,
        host: &str,
        tls: &tokio_rustls::TlsConnector,
    ) -> Option<String> {
        use sha2::{Digest, Sha256};
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
        let tcp = tokio::time::timeout(HANDSHAKE_PATIENCE, tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let s = tokio::time::timeout(HANDSHAKE_PATIENCE, tls.connect(name, tcp))
            .await
            .ok()?
            .ok()?;
        let der = s.get_ref().1.peer_certificates()?.first()?;
        Some(hex::encode(Sha256::digest(der.as_ref())))
    }

    /// A TLS client that accepts any certificate: it only reads which one
    /// an edge shows, to compare it with the stored one; it sends nothing.
    fn see_any_certificate() -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SeeAny(provider)))
            .with_no_client_auth()
    }

    #[derive(Debug)]
    struct SeeAny(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for SeeAny {
        fn verify_server_cert(
            &self,
            _end_entity: &rustls::pki_types::CertificateDer<'_>,
            _intermediates: &[rustls::pki_types::CertificateDer<'_>],
            _server_name: &rustls::pki_types::ServerName<'_>,
            _ocsp: &[u8],
            _now: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    async fn services(docker: &bollard::Docker) -> Result<Vec<Service>, bollard::errors::Error> {
        let list = docker.list_services(None).await?;
        Ok(list
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                Some(Service {
                    name: spec.name?,
                    labels: spec
                        .labels
                        .unwrap_or_default()
                        .into_iter()
                        .collect::<BTreeMap<_, _>>(),
                })
            })
            .collect())
    }

    async fn serve(listener: tokio::net::TcpListener, shared: Shared) -> Result<(), ServeError> {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(_) => continue,
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(answer(&req, &shared)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    fn answer(req: &Request<hyper::body::Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
        let reply = |code: StatusCode, body: Bytes, kind: &str| {
            Response::builder()
                .status(code)
                .header("content-type", kind)
                .body(Full::new(body))
                .expect("a static response")
        };
        if req.method() != hyper::Method::GET {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"GET only\n"),
                "text/plain",
            );
        }
        let now = shared.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((edge, issuer, status)) = now else {
            // Not read yet: a Caddy keeps what it runs and asks again.
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"the services are not read yet\n"),
                "text/plain",
            );
        };
        match req.uri().path() {
            "/edge" => reply(StatusCode::OK, edge, "application/json"),
            "/issuer" => reply(StatusCode::OK, issuer, "application/json"),
            "/status" => reply(StatusCode::OK, status, "application/json"),
            _ => reply(
                StatusCode::NOT_FOUND,
                Bytes::from_static(b"/edge, /issuer or /status\n"),
                "text/plain",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::route::tests::svc;
    use crate::route::{HOST_LABEL, PORT_LABEL};

    struct Files(HashMap<String, Vec<u8>>);
    impl Storage for Files {
        fn read(&self, key: &str) -> Option<Vec<u8>> {
            self.0.get(key).cloned()
        }
    }

    fn options() -> ServeOptions {
        ServeOptions {
            tls: Tls::Internal,
            storage_root: "/certs".into(),
            issuer: "tasks.clusterkit-ingress_issuer:80".into(),
            url: "http://tasks.clusterkit-ingress_routes:9390".into(),
            pull_every: "3s".into(),
            listen: any_address(),
            edges: Some("tasks.clusterkit-ingress_edge".into()),
        }
    }

    #[test]
    fn a_host_is_loaded_by_the_edges_once_its_certificate_and_key_are_stored() {
        let o = options();
        let services = [
            svc(
                "app_web",
                &[(HOST_LABEL, "app.clusterkit.test"), (PORT_LABEL, "8000")],
            ),
            svc("evil_x", &[(HOST_LABEL, "\"}],\"apps\":{")]),
        ];
        let files = certificate_files(&o.tls, "app.clusterkit.test");
        let none = render(&o, &services, &Files(HashMap::new()));
        assert_eq!(none.status.hosts[0].certificate, None);
        assert_eq!(none.edge["apps"]["tls"], serde_json::json!({}));
        assert_eq!(none.status.refused.len(), 1, "{:?}", none.status.refused);
        // Half written (the key not there yet), or not PEM: not loaded.
        let half = Files(HashMap::from([(
            files.certificate.clone(),
            b"-----BEGIN CERTIFICATE-----\n".to_vec(),
        )]));
        assert_eq!(
            render(&o, &services, &half).status.hosts[0].certificate,
            None
        );
        let garbage = Files(HashMap::from([
            (files.certificate.clone(), b"<html>".to_vec()),
            (
                files.key.clone(),
                b"-----BEGIN EC PRIVATE KEY-----\n".to_vec(),
            ),
        ]));
        assert_eq!(
            render(&o, &services, &garbage).status.hosts[0].certificate,
            None
        );
        let stored = |cert: &[u8]| {
            Files(HashMap::from([
                (files.certificate.clone(), cert.to_vec()),
                (
                    files.key.clone(),
                    b"-----BEGIN EC PRIVATE KEY-----\n".to_vec(),
                ),
            ]))
        };
        let first = render(&o, &services, &stored(b"-----BEGIN CERTIFICATE-----\nA\n"));
        let fp = first.status.hosts[0].certificate.clone().unwrap();
        let pairs = &first.edge["apps"]["tls"]["certificates"]["load_storage"]["pairs"];
        assert_eq!(pairs[0]["certificate"], files.certificate);
        assert_eq!(pairs[0]["tags"][1], format!("sha256:{fp}"));
        // A renewal changes what the edges load; the same files, nothing.
        let renewed = render(&o, &services, &stored(b"-----BEGIN CERTIFICATE-----\nB\n"));
        assert_ne!(renewed.edge, first.edge);
        let again = render(&o, &services, &stored(b"-----BEGIN CERTIFICATE-----\nA\n"));
        assert_eq!(again.edge, first.edge);
        // Both keep pulling, each from its own path.
        assert_eq!(
            first.edge["admin"]["config"]["load"]["url"],
            "http://tasks.clusterkit-ingress_routes:9390/edge"
        );
        assert_eq!(
            first.issuer["admin"]["config"]["load"]["url"],
            "http://tasks.clusterkit-ingress_routes:9390/issuer"
        );
        assert_eq!(
            first.issuer["apps"]["tls"]["certificates"]["automate"][0],
            "app.clusterkit.test"
        );
        // No key's content is ever in what is served or shown.
        let text = serde_json::to_string(&(first.edge, first.issuer, first.status)).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }

    /// A self-signed certificate made with openssl for this test (no key:
    /// only its facts are read).
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfDCCASKgAwIBAgIBBzAKBggqhkjOPQQDAjAdMRswGQYDVQQDDBJjbHVzdGVy\na2l0IHRlc3QgQ0EwHhcNMjYxMjA3MDc0NTUwWhcNMjcwMzA3MDc0NTUwWjAdMRsw\nGQYDVQQDDBJjbHVzdGVya2l0IHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMB\nBwNCAAQYShoY4M/oW5Zuf8uhW2UlaDM3q8LCzt07Aip8ax8CILXtF0yn38TSx69t\npxN1MTuzmlToN2Y1UjZ8knG6+tb7o1MwUTAdBgNVHQ4EFgQUujJfDwTvH2rCuZkD\ngoQaVgJxWQgwHwYDVR0jBBgwFoAUujJfDwTvH2rCuZkDgoQaVgJxWQgwDwYDVR0T\nAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA5C8tEMVz3r1rpLXuUoVWLagD\nfDE/23xUPeMxpUFpo9oCICROxiPrrXb/6iJuOMZNuIMH6u/sPvRL0UU0q55xLLYO\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_stored_certificate_says_who_issued_it_and_until_when() {
        assert_eq!(
            certificate_facts(CERT.as_bytes()),
            Some((
                "CN=clusterkit test CA".to_string(),
                "2027-03-07T07:45:50Z".to_string()
            ))
        );
        assert_eq!(
            certificate_facts(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            None
        );
        assert_eq!(certificate_facts(b"\xff\xfe"), None);
        // What a handshake shows: the DER's SHA-256 (`openssl x509 -outform der | sha256sum`).
        assert_eq!(
            leaf_fingerprint(CERT.as_bytes()).as_deref(),
            Some("5a683bdb3566b332802652944de03eabb095e0d38ba668b6f738bd924e1ea4c3")
        );
        assert_eq!(
            leaf_fingerprint(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            None
        );
        let o = options();
        let files = certificate_files(&o.tls, "app.clusterkit.test");
        let stored = Files(HashMap::from([
            (files.certificate.clone(), CERT.as_bytes().to_vec()),
            (files.key, b"-----BEGIN EC PRIVATE KEY-----\n".to_vec()),
        ]));
        let st = render(
            &o,
            &[svc("app_web", &[(HOST_LABEL, "app.clusterkit.test")])],
            &stored,
        )
        .status;
        assert_eq!(st.hosts[0].expires.as_deref(), Some("2027-03-07T07:45:50Z"));
        assert_eq!(
            st.hosts[0].issued_by.as_deref(),
            Some("CN=clusterkit test CA")
        );
    }

    #[test]
    fn an_edge_that_does_not_show_the_stored_certificate_is_counted_and_said() {
        assert_eq!(
            edges_problem("a.example.com", EdgeCount { serving: 3, of: 3 }),
            None
        );
        let p = edges_problem("a.example.com", EdgeCount { serving: 2, of: 3 }).unwrap();
        assert!(
            p.starts_with("a.example.com: 2 of 3 edges show the stored certificate")
                && p.contains("docker service logs clusterkit-ingress_edge"),
            "{p}"
        );
        // Waited for: a stored certificate not asked about yet, or not on every edge.
        let host = |name: &str, stored: bool, edges: Option<EdgeCount>| HostStatus {
            host: name.into(),
            certificate: stored.then(|| "ab".into()),
            issued_by: None,
            expires: None,
            leaf: stored.then(|| "cd".into()),
            edges,
        };
        let st = Status {
            hosts: vec![
                host("asked.example.com", true, None),
                host(
                    "partly.example.com",
                    true,
                    Some(EdgeCount { serving: 1, of: 3 }),
                ),
                host(
                    "everywhere.example.com",
                    true,
                    Some(EdgeCount { serving: 3, of: 3 }),
                ),
                host("missing.example.com", false, None),
            ],
            ..Status::default()
        };
        assert_eq!(
            st.not_shown_everywhere(),
            ["asked.example.com", "partly.example.com"]
        );
        assert_eq!(st.missing_certificates(), ["missing.example.com"]);
        // A status from before the count was kept still reads.
        let old = r#"{"host": "a.example.com", "certificate": null}"#;
        let h: HostStatus = serde_json::from_str(old).unwrap();
        assert_eq!((h.leaf, h.edges), (None, None));
    }

    #[test]
    fn options_read_back_as_written() {
        let o = ServeOptions {
            tls: Tls::Acme {
                ca: "https://ca.example/dir".into(),
                email: Some("ops@example.com".into()),
                trusted_roots: Some("/etc/clusterkit/acme-ca-root.pem".into()),
            },
            ..options()
        };
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<ServeOptions>(&json).unwrap(), o);
    }
}
