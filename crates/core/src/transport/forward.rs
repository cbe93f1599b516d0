//! Local port forwarding over a node's connection: a client on this machine
//! (an S3 client, a browser) reaches an address only the node can reach, such
//! as a service on the mesh, as `ssh -L` would do, without a second SSH login.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Transport, TransportError};

/// A local port that forwards every connection to `host:port` as seen from a
/// node. Stops when dropped.
#[derive(Debug)]
pub struct Forward {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Forward {
    /// Listens on `bind` (`127.0.0.1:0` picks a free port) and forwards every
    /// connection through `node` to `host:port`.
    pub async fn start(
        node: Arc<dyn Transport>,
        bind: SocketAddr,
        host: &str,
        port: u16,
    ) -> Result<Self, TransportError> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| TransportError::Local {
                what: format!("listening on {bind} to forward to {host}:{port}"),
                source: e,
            })?;
        let local = listener.local_addr().map_err(|e| TransportError::Local {
            what: "reading the forwarded port".into(),
            source: e,
        })?;
        let host = host.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let node = node.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    // A failed tunnel closes the client's connection: the
                    // client sees a reset and reports it.
                    if let Ok(mut remote) = node.connect_tcp(&host, port).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut remote).await;
                    }
                });
            }
        });
        Ok(Self { local, task })
    }

    /// The local address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
