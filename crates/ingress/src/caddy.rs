//! The Caddy configurations (Caddy's native JSON) of the ingress.
//!
//! Two roles, so that a name is ordered once for the whole cluster however
//! many nodes serve it:
//!
//! - the **issuer** ([`issuer`]), one task for the cluster: Caddy managing
//!   the certificates of every routed host (ACME, or its internal CA for
//!   private clusters), its storage (the ACME account, keys, certificates)
//!   on the cluster's shared storage. It is the only writer there, so no
//!   lock is needed between nodes, and any node may run it: rescheduled
//!   elsewhere, it finds its account and certificates where it left them.
//! - the **edges** ([`edge`]), one on every ingress node, listening on 80
//!   and 443 in host mode: TLS ended with the certificates the issuer
//!   stored (read, never written), each request passed to the service's
//!   tasks over the overlay; on port 80, the CA's HTTP-01 challenges passed
//!   to the issuer (whichever node the CA reaches answers) and everything
//!   else redirected to HTTPS.
//!
//! Storage keys follow Caddy's own layout (certmagic's `StorageKeys`), so an
//! edge finds a certificate where the issuer wrote it: [`certificate_files`].

use serde_json::{json, Value};

use crate::route::Routes;

/// Let's Encrypt's production directory: the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How long browsers keep to HTTPS once told (`Strict-Transport-Security`):
/// one year.
pub const HSTS_MAX_AGE: u32 = 31_536_000;

/// How often an edge resolves `tasks.NAME` again: a task started elsewhere
/// is reached within this.
pub const RESOLVE_EVERY: &str = "5s";

/// Who issues the certificates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "issuer", rename_all = "lowercase")]
pub enum Tls {
    /// An ACME CA (Let's Encrypt by default), validated by HTTP-01.
    Acme {
        /// The CA's directory URL.
        ca: String,
        /// The account's contact, if any.
        email: Option<String>,
        /// A PEM file of roots the issuer trusts for the CA's own API (a
        /// private CA such as Pebble); `None` for the system's roots.
        trusted_roots: Option<String>,
    },
    /// Caddy's internal CA (private clusters): its root is kept in the
    /// shared storage, so every edge serves certificates of one root.
    Internal,
}

impl Tls {
    /// The directory under `certificates/` where this issuer's certificates
    /// are stored (certmagic's issuer key, made safe as a storage key).
    pub fn issuer_key(&self) -> String {
        match self {
            Tls::Internal => "local".into(),
            Tls::Acme { ca, .. } => safe_key(&acme_issuer_key(ca)),
        }
    }
}

/// certmagic's `ACMEIssuer.issuerKey`: the CA URL's host, then its path
/// with slashes made hyphens.
fn acme_issuer_key(ca: &str) -> String {
    let rest = ca.split_once("://").map_or(ca, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.replace(['/', '\\'], "-");
    let path = path.trim_matches('-');
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}-{path}")
    }
}

/// certmagic's `KeyBuilder.Safe`: lower case, a few characters replaced,
/// every character but word characters, `@`, `.` and `-` dropped.
fn safe_key(s: &str) -> String {
    s.trim()
        .to_lowercase()
        .replace(' ', "_")
        .replace('+', "_plus_")
        .replace('*', "wildcard_")
        .replace(':', "-")
        .replace("..", "")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '@' || *c == '.' || *c == '-')
        .collect()
}

/// A certificate and its key, as storage keys (relative to the storage's
/// root).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateFiles {
    /// The host it is for.
    pub host: String,
    /// The certificate chain (PEM).
    pub certificate: String,
    /// Its private key (PEM).
    pub key: String,
    /// The stored certificate's SHA-256, once read: carried as a tag in the
    /// edges' configuration, so that a renewed certificate changes it and
    /// the edges load the new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Where the issuer stores `host`'s certificate and key.
pub fn certificate_files(tls: &Tls, host: &str) -> CertificateFiles {
    let site = safe_key(host);
    let dir = format!("certificates/{}/{site}", tls.issuer_key());
    CertificateFiles {
        host: host.to_string(),
        certificate: format!("{dir}/{site}.crt"),
        key: format!("{dir}/{site}.key"),
        fingerprint: None,
    }
}

/// Caddy's `admin` section for a Caddy that pulls its configuration from
/// `url` (`admin.config.load`, Caddy's HTTP config loader): asked again
/// `every` (a Go duration) after each load; an unchanged answer changes
/// nothing, a changed one is applied as a reload (listeners kept, open
/// connections finish), an unanswered one keeps the running configuration.
/// The admin API itself listens on a Unix socket inside the container only,
/// and nothing is persisted. Every configuration served to such a Caddy
/// carries this section again, or it would stop pulling.
pub fn pulling(url: &str, every: &str) -> Value {
    json!({
        "listen": "unix//tmp/caddy-admin.sock",
        "config": {
            "persist": false,
            "load": { "module": "http", "url": url, "timeout": "10s" },
            "load_delay": every
        }
    })
}

/// Where the shared storage is, as each container sees it.
fn storage(root: &str) -> Value {
    json!({ "module": "file_system", "root": root })
}

/// What an edge needs besides the routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeOptions {
    /// The shared storage's root inside the edge's container.
    pub storage_root: String,
    /// The issuer's address on the overlay (`tasks.SERVICE:80`), where the
    /// CA's challenges go.
    pub issuer: String,
    /// The certificates present in the storage: only those are loaded (a
    /// missing file would fail the whole configuration). A routed host
    /// without one is not served over HTTPS until the issuer has stored it.
    pub certificates: Vec<CertificateFiles>,
}

fn dynamic_upstream(upstream: &str) -> Value {
    let (name, port) = upstream.rsplit_once(':').unwrap_or((upstream, "80"));
    json!({
        "handler": "reverse_proxy",
        "dynamic_upstreams": {
            "source": "a",
            "name": name,
            "port": port,
            "refresh": RESOLVE_EVERY,
            "versions": { "ipv4": true }
        },
        // A task on a lost node stays in the swarm's DNS until the swarm
        // notices: a request that cannot reach one task is tried on
        // another (for up to 5 s), and a task that failed is left alone
        // for 30 s.
        "load_balancing": { "try_duration": "5s", "try_interval": "250ms" },
        "health_checks": { "passive": { "fail_duration": "30s" } },
        "transport": { "protocol": "http", "dial_timeout": "2s" }
    })
}

fn not_found(what: &str) -> Value {
    json!({
        "handle": [{
            "handler": "static_response",
            "status_code": 404,
            "body": format!("{what}\n")
        }]
    })
}

/// An edge's configuration: HTTPS for every routed host with a stored
/// certificate, HSTS on, requests to the service's tasks; HTTP-01
/// challenges to the issuer; plain HTTP redirected (308) to HTTPS.
pub fn edge(routes: &Routes, o: &EdgeOptions) -> Value {
    let mut https_routes: Vec<Value> = routes
        .routes
        .iter()
        .map(|r| {
            let mut m = json!({ "host": [r.host] });
            if let Some(p) = &r.path {
                m["path"] = json!([p, format!("{p}/*")]);
            }
            json!({
                "match": [m],
                "handle": [
                    {
                        "handler": "headers",
                        "response": {
                            "set": {
                                "Strict-Transport-Security": [format!("max-age={HSTS_MAX_AGE}")]
                            }
                        }
                    },
                    dynamic_upstream(&r.upstream())
                ],
                "terminal": true
            })
        })
        .collect();
    https_routes.push(not_found(
        "clusterkit ingress: no route for this host and path",
    ));
    let http_routes = vec![
        json!({
            "match": [{ "path": ["/.well-known/acme-challenge/*"] }],
            "handle": [dynamic_upstream(&o.issuer)],
            "terminal": true
        }),
        json!({
            "handle": [{
                "handler": "static_response",
                "status_code": 308,
                "headers": { "Location": ["https://{http.request.host}{http.request.uri}"] }
            }]
        }),
    ];
    let pairs: Vec<Value> = o
        .certificates
        .iter()
        .map(|c| {
            let mut tags = vec!["clusterkit".to_string()];
            tags.extend(c.fingerprint.iter().map(|f| format!("sha256:{f}")));
            json!({ "certificate": c.certificate, "key": c.key, "tags": tags })
        })
        .collect();
    let mut tls = json!({});
    if !pairs.is_empty() {
        tls["certificates"] = json!({ "load_storage": { "pairs": pairs } });
    }
    json!({
        "storage": storage(&o.storage_root),
        "apps": {
            "http": {
                "http_port": 80,
                "https_port": 443,
                "servers": {
                    "https": {
                        "listen": [":443"],
                        "routes": https_routes,
                        "tls_connection_policies": [{}],
                        "automatic_https": { "disable": true }
                    },
                    "http": {
                        "listen": [":80"],
                        "routes": http_routes,
                        "automatic_https": { "disable": true }
                    }
                }
            },
            "tls": tls
        }
    })
}

/// The issuer's configuration: the certificates of `hosts` managed (obtained,
/// renewed) by `tls`, stored under `storage_root`; HTTP-01 challenges
/// answered on port 80 (the edges pass them on), nothing else served.
pub fn issuer(hosts: &[&str], tls: &Tls, storage_root: &str) -> Value {
    let issuer = match tls {
        Tls::Internal => json!({ "module": "internal" }),
        Tls::Acme {
            ca,
            email,
            trusted_roots,
        } => {
            let mut i = json!({
                "module": "acme",
                "ca": ca,
                "challenges": { "tls-alpn": { "disabled": true } }
            });
            if let Some(e) = email {
                i["email"] = json!(e);
            }
            if let Some(r) = trusted_roots {
                i["trusted_roots_pem_files"] = json!([r]);
            }
            i
        }
    };
    let mut tls_app = json!({});
    if !hosts.is_empty() {
        tls_app = json!({
            "certificates": { "automate": hosts },
            "automation": {
                "policies": [{ "subjects": hosts, "issuers": [issuer] }]
            }
        });
    }
    let mut config = json!({
        "storage": storage(storage_root),
        "apps": {
            "http": {
                "http_port": 80,
                "servers": {
                    "challenges": {
                        "listen": [":80"],
                        "routes": [not_found("clusterkit ingress issuer: ACME challenges only")],
                        "automatic_https": { "disable": true }
                    }
                }
            },
            "tls": tls_app
        }
    });
    if *tls == Tls::Internal {
        // Its root goes to the clients the operator chooses, not into the
        // container's own trust store (Caddy tries by default, and warns).
        config["apps"]["pki"] =
            json!({ "certificate_authorities": { "local": { "install_trust": false } } });
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{routes, Service, HOST_LABEL, PATH_LABEL, PORT_LABEL};

    fn example() -> Routes {
        let svc = |name: &str, labels: &[(&str, &str)]| Service {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        routes(&[
            svc(
                "app_web",
                &[(HOST_LABEL, "app.clusterkit.test"), (PORT_LABEL, "8000")],
            ),
            svc(
                "app_api",
                &[
                    (HOST_LABEL, "app.clusterkit.test"),
                    (PATH_LABEL, "/api"),
                    (PORT_LABEL, "9000"),
                ],
            ),
        ])
    }

    #[test]
    fn issuer_keys_follow_caddys_storage_layout() {
        let le = Tls::Acme {
            ca: LETS_ENCRYPT.into(),
            email: None,
            trusted_roots: None,
        };
        assert_eq!(le.issuer_key(), "acme-v02.api.letsencrypt.org-directory");
        let pebble = Tls::Acme {
            ca: "https://pebble.clusterkit.test:14000/dir".into(),
            email: None,
            trusted_roots: None,
        };
        assert_eq!(pebble.issuer_key(), "pebble.clusterkit.test-14000-dir");
        assert_eq!(
            certificate_files(&pebble, "app.clusterkit.test"),
            CertificateFiles {
                host: "app.clusterkit.test".into(),
                certificate: "certificates/pebble.clusterkit.test-14000-dir/app.clusterkit.test/app.clusterkit.test.crt".into(),
                key: "certificates/pebble.clusterkit.test-14000-dir/app.clusterkit.test/app.clusterkit.test.key".into(),
                fingerprint: None,
            }
        );
        assert_eq!(
            certificate_files(&Tls::Internal, "a.example.com").key,
            "certificates/local/a.example.com/a.example.com.key"
        );
        // Nothing in a CA's URL leaves the storage's directory.
        let odd = Tls::Acme {
            ca: "https://ca.example/../../etc/x y?q=1".into(),
            email: None,
            trusted_roots: None,
        };
        let key = odd.issuer_key();
        assert!(!key.contains('/') && !key.contains(".."), "{key}");
    }

    #[test]
    fn edge_configuration() {
        let pebble = Tls::Acme {
            ca: "https://pebble.clusterkit.test:14000/dir".into(),
            email: None,
            trusted_roots: None,
        };
        let config = edge(
            &example(),
            &EdgeOptions {
                storage_root: "/data".into(),
                issuer: "tasks.clusterkit-ingress_issuer:80".into(),
                certificates: vec![certificate_files(&pebble, "app.clusterkit.test")],
            },
        );
        insta::assert_json_snapshot!("edge", config);
        // The path route comes before the host's catch-all.
        let routes = config["apps"]["http"]["servers"]["https"]["routes"]
            .as_array()
            .unwrap();
        assert_eq!(routes[0]["match"][0]["path"][0], "/api");
        assert_eq!(
            routes[1]["handle"][1]["dynamic_upstreams"]["name"],
            "tasks.app_web"
        );
    }

    #[test]
    fn an_edge_without_certificates_yet_loads_none() {
        let config = edge(
            &example(),
            &EdgeOptions {
                storage_root: "/data".into(),
                issuer: "tasks.i:80".into(),
                certificates: vec![],
            },
        );
        assert_eq!(config["apps"]["tls"], json!({}));
    }

    #[test]
    fn issuer_configuration() {
        let tls = Tls::Acme {
            ca: "https://pebble.clusterkit.test:14000/dir".into(),
            email: Some("ops@clusterkit.test".into()),
            trusted_roots: Some("/run/secrets/acme-roots.pem".into()),
        };
        let found = example();
        insta::assert_json_snapshot!("issuer", issuer(&found.hosts(), &tls, "/data"));
        let internal = issuer(&found.hosts(), &Tls::Internal, "/data");
        assert_eq!(
            internal["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]["module"],
            "internal"
        );
        assert_eq!(
            internal["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"],
            false
        );
        assert_eq!(
            issuer(&[], &Tls::Internal, "/data")["apps"]["tls"],
            json!({})
        );
    }
}
