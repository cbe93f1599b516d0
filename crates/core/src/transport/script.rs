//! A [`Transport`] that answers from a script and records what it was
//! asked: for unit tests of orchestration (which node is asked what, in
//! which order, and what is done with the answers) in milliseconds, and for
//! embedders who test their own flows the same way.
//!
//! Commands are answered by the last rule whose text the command contains;
//! Engine API requests (through a real bollard client over an in-memory
//! HTTP/1 connection served by hyper) by the last rule whose method and path
//! prefix match. Anything unanswered fails loudly (exit 127, or HTTP 404)
//! and is recorded, so a test sees what it did not expect.
//!
//! ```
//! use clusterkit_core::transport::script::Scripted;
//! use clusterkit_core::transport::{Cmd, Transport};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let node = Scripted::new("node1");
//! node.on("hostname", "node1\n");
//! node.on_engine("GET", "/info", 200, r#"{"Name": "node1"}"#);
//! assert_eq!(node.exec(&Cmd::new("hostname")).await.unwrap().stdout_str(), "node1\n");
//! let info = node.docker().await.unwrap().info().await.unwrap();
//! assert_eq!(info.name.as_deref(), Some("node1"));
//! assert_eq!(node.asked(), ["hostname", "GET /info"]);
//! # });
//! ```

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use super::{Cmd, ExecOutput, Transport, TransportError};

/// An answer to a command.
#[derive(Debug, Clone)]
struct ExecRule {
    contains: String,
    answer: ExecOutput,
    /// Answers left (`None`: any number).
    left: Option<usize>,
}

/// An answer to an Engine API request.
#[derive(Debug, Clone)]
struct EngineRule {
    method: String,
    path: String,
    status: u16,
    body: String,
    /// Answers left (`None`: any number).
    left: Option<usize>,
}

/// What a scripted node was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A command (secrets redacted) and the size of its stdin, if any.
    Command {
        /// The command, as [`Cmd::redacted`] shows it.
        script: String,
        /// Bytes given on stdin.
        stdin: Option<usize>,
    },
    /// An Engine API request: method, path with query, body.
    Engine {
        /// `GET`, `POST`, ...
        method: String,
        /// Path and query, without the API version (`/swarm/join`).
        path: String,
        /// The request's body (JSON), empty when none.
        body: String,
    },
}

impl std::fmt::Display for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Asked::Command { script, .. } => f.write_str(script),
            Asked::Engine { method, path, .. } => write!(f, "{method} {path}"),
        }
    }
}

#[derive(Default)]
struct Script {
    exec: Vec<ExecRule>,
    engine: Vec<EngineRule>,
    streams: Vec<(String, String)>,
    asked: Vec<Asked>,
    /// What commands were given on stdin, with the command as run.
    stdins: Vec<(String, Vec<u8>)>,
    open: usize,
}

/// A node answering from a script (see the module's documentation).
#[derive(Clone)]
pub struct Scripted {
    node: String,
    script: Arc<Mutex<Script>>,
}

impl Scripted {
    /// A node called `node` that knows no answer yet.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            script: Arc::new(Mutex::new(Script::default())),
        }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A command containing `contains` succeeds with `stdout`.
    pub fn on(&self, contains: &str, stdout: &str) -> &Self {
        self.on_exit(contains, 0, stdout, "")
    }

    /// A command containing `contains` succeeds with `stdout` as bytes (a
    /// file downloaded, an archive).
    pub fn on_bytes(&self, contains: &str, stdout: &[u8]) -> &Self {
        self.exec_rule(contains, 0, stdout, b"", None)
    }

    /// A command containing `contains` exits with `status`, `stdout` and `stderr`.
    pub fn on_exit(&self, contains: &str, status: u32, stdout: &str, stderr: &str) -> &Self {
        self.exec_rule(contains, status, stdout.as_bytes(), stderr.as_bytes(), None)
    }

    /// [`Scripted::on`] for the next `times` such commands only; later ones
    /// fall through to the rules given before it (an answer that changes
    /// once something was done).
    pub fn on_times(&self, contains: &str, times: usize, stdout: &str) -> &Self {
        self.exec_rule(contains, 0, stdout.as_bytes(), b"", Some(times))
    }

    fn exec_rule(
        &self,
        contains: &str,
        status: u32,
        stdout: &[u8],
        stderr: &[u8],
        left: Option<usize>,
    ) -> &Self {
        self.script().exec.push(ExecRule {
            contains: contains.to_string(),
            answer: ExecOutput {
                status,
                stdout: stdout.to_vec(),
                stderr: stderr.to_vec(),
            },
            left,
        });
        self
    }

    /// What was given on stdin to the commands containing `contains`, in
    /// order. Kept in memory as sent (an API payload; secrets included):
    /// for a test's assertions.
    pub fn stdins(&self, contains: &str) -> Vec<Vec<u8>> {
        self.script()
            .stdins
            .iter()
            .filter(|(c, _)| c.contains(contains))
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// An Engine API request `method` on a path starting with `path` (after
    /// the API version: `/info`, `/swarm/join`) answers `status` with the
    /// JSON `body`.
    pub fn on_engine(&self, method: &str, path: &str, status: u16, body: &str) -> &Self {
        self.engine_rule(method, path, status, body, None)
    }

    /// [`Scripted::on_engine`] for the next `times` such requests only;
    /// later ones fall through to the rules given before it: a node list
    /// that changes once a node is drained.
    pub fn on_engine_times(
        &self,
        method: &str,
        path: &str,
        times: usize,
        status: u16,
        body: &str,
    ) -> &Self {
        self.engine_rule(method, path, status, body, Some(times))
    }

    fn engine_rule(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &str,
        left: Option<usize>,
    ) -> &Self {
        self.script().engine.push(EngineRule {
            method: method.to_string(),
            path: path.to_string(),
            status,
            body: body.to_string(),
            left,
        });
        self
    }

    /// A command held open ([`Transport::exec_stream`]) containing
    /// `contains` answers `first` (`locked\n` for the cluster's lock), then
    /// stays open, reading what it is sent, until the caller drops it (an
    /// answer not starting with `locked` ends it at once, as a busy lock's
    /// script does).
    pub fn on_stream(&self, contains: &str, first: &str) -> &Self {
        self.script()
            .streams
            .push((contains.to_string(), first.to_string()));
        self
    }

    /// How many commands held open are still open.
    pub fn open_streams(&self) -> usize {
        self.script().open
    }

    /// Everything asked so far, in order, each as one line (commands
    /// redacted, Engine requests as `METHOD /path`).
    pub fn asked(&self) -> Vec<String> {
        self.script()
            .asked
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Everything asked so far, in order, with stdin sizes and request bodies.
    pub fn log(&self) -> Vec<Asked> {
        self.script().asked.clone()
    }

    /// The bodies of the Engine requests `method` on paths containing `path`.
    pub fn engine_bodies(&self, method: &str, path: &str) -> Vec<String> {
        self.script()
            .asked
            .iter()
            .filter_map(|a| match a {
                Asked::Engine {
                    method: m,
                    path: p,
                    body,
                } if m == method && p.contains(path) => Some(body.clone()),
                _ => None,
            })
            .collect()
    }

    fn answer(&self, method: &str, path: &str, body: String) -> (u16, String) {
        // `/v1.41/info?x` → `/info?x`
        let unversioned = path
            .strip_prefix("/v")
            .and_then(|p| p.find('/').map(|i| &p[i..]))
            .unwrap_or(path);
        let mut s = self.script();
        s.asked.push(Asked::Engine {
            method: method.to_string(),
            path: unversioned.to_string(),
            body,
        });
        s.engine
            .iter_mut()
            .rev()
            .find(|r| {
                r.method == method && unversioned.starts_with(&r.path) && r.left != Some(0)
            })
            .map(|r| {
                if let Some(n) = r.left.as_mut() {
                    *n -= 1;
                }
                &*r
            })
            .map_or_else(
                || {
                    (
                        404,
                        format!(
                            r#"{{"message": "scripted node {}: no answer for {method} {unversioned}"}}"#,
                            self.node
                        ),
                    )
                },
                |r| (r.status, r.body.clone()),
            )
    }
}

#[async_trait]
impl Transport for Scripted {
    fn node(&self) -> &str {
        &self.node
    }

    fn addr(&self) -> String {
        format!("{}:22", self.node)
    }

    async fn exec_raw(
        &self,
        cmd: &Cmd,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, TransportError> {
        let script = cmd.redacted();
        let mut s = self.script();
        s.asked.push(Asked::Command {
            script: script.clone(),
            stdin: stdin.map(<[u8]>::len),
        });
        // Matched on the command as run (secrets included), last rule first.
        let text = cmd.script();
        if let Some(input) = stdin {
            s.stdins.push((text.to_string(), input.to_vec()));
        }
        Ok(s.exec
            .iter_mut()
            .rev()
            .find(|r| text.contains(&r.contains) && r.left != Some(0))
            .map(|r| {
                if let Some(n) = r.left.as_mut() {
                    *n -= 1;
                }
                &*r
            })
            .map_or_else(
                || ExecOutput {
                    status: 127,
                    stdout: Vec::new(),
                    stderr: format!("scripted node {}: no answer for `{script}`", self.node)
                        .into_bytes(),
                },
                |r| r.answer.clone(),
            ))
    }

    async fn docker(&self) -> Result<bollard::Docker, TransportError> {
        let me = self.clone();
        let transport = move |req: bollard::BollardRequest| {
            let me = me.clone();
            async move {
                let (client, server) = tokio::io::duplex(64 * 1024);
                let serve = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req
                                .uri()
                                .path_and_query()
                                .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                                .unwrap_or_default();
                            let (status, answer) = me.answer(&method, &path, body);
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer)))
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(server), serve),
                );
                let io_err = |e: &dyn std::fmt::Display| bollard::errors::Error::IOError {
                    err: std::io::Error::other(format!("scripted engine: {e}")),
                };
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                        .await
                        .map_err(|e| io_err(&e))?;
                tokio::spawn(conn);
                let mut req = req;
                req.headers_mut().insert(
                    hyper::header::HOST,
                    hyper::header::HeaderValue::from_static("docker"),
                );
                sender.send_request(req).await.map_err(|e| io_err(&e))
            }
        };
        let api = bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        };
        bollard::Docker::connect_with_custom_transport(transport, Some("http://docker"), 10, &api)
            .map_err(|e| TransportError::Docker {
                node: self.node.clone(),
                addr: self.addr(),
                reason: e.to_string(),
            })
    }

    async fn exec_stream(&self, cmd: &Cmd) -> Result<Box<dyn super::TunnelStream>, TransportError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let first = {
            let mut s = self.script();
            s.asked.push(Asked::Command {
                script: cmd.redacted(),
                stdin: None,
            });
            s.streams
                .iter()
                .rev()
                .find(|(c, _)| cmd.script().contains(c.as_str()))
                .map(|(_, f)| f.clone())
        };
        let Some(first) = first else {
            return Err(TransportError::Ssh {
                node: self.node.clone(),
                addr: self.addr(),
                reason: format!("scripted node: no answer for `{}`", cmd.redacted()),
            });
        };
        let (ours, mut theirs) = tokio::io::duplex(1024);
        theirs
            .write_all(first.as_bytes())
            .await
            .map_err(|e| TransportError::Ssh {
                node: self.node.clone(),
                addr: self.addr(),
                reason: e.to_string(),
            })?;
        if first.starts_with("locked") {
            self.script().open += 1;
            let me = self.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while matches!(theirs.read(&mut buf).await, Ok(n) if n > 0) {}
                me.script().open -= 1;
            });
        }
        Ok(Box::new(ours))
    }

    async fn connect_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Box<dyn super::TunnelStream>, TransportError> {
        Err(TransportError::Ssh {
            node: self.node.clone(),
            addr: self.addr(),
            reason: format!("a scripted node opens no connection (to {host}:{port})"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unanswered_questions_fail_and_are_recorded() {
        let n = Scripted::new("node1");
        n.on("docker info", "active\n");
        n.on_exit("docker info -f", 1, "", "nope");
        let out = n
            .exec_raw(&Cmd::new("docker info -f x"), None)
            .await
            .unwrap();
        assert_eq!(out.status, 1, "the last rule that matches answers");
        let out = n.exec_raw(&Cmd::new("uptime"), Some(b"abc")).await.unwrap();
        assert_eq!(out.status, 127);
        assert!(String::from_utf8_lossy(&out.stderr).contains("no answer for `uptime`"));
        let e = n.docker().await.unwrap().info().await.unwrap_err();
        assert!(e.to_string().contains("no answer for GET /info"), "{e}");
        assert_eq!(
            n.log()[1],
            Asked::Command {
                script: "uptime".into(),
                stdin: Some(3)
            }
        );
        assert_eq!(n.asked(), ["docker info -f x", "uptime", "GET /info"]);
    }

    #[tokio::test]
    async fn secrets_are_matched_but_never_recorded() {
        let n = Scripted::new("node1");
        n.on("token s3cret", "ok");
        let cmd = Cmd::new("join --token ").secret("s3cret");
        assert_eq!(n.exec(&cmd).await.unwrap().stdout_str(), "ok");
        assert!(!n.asked()[0].contains("s3cret"), "{:?}", n.asked());
    }
}
