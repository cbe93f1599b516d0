//! `clusterkit-volumes`: the front of clusterkit's volume driver on a node
//! (see the library's documentation): listens where Docker looks for the
//! `clusterkit` driver and passes every request on to rclone's socket, a
//! create without a remote given its own.
//!
//! Written on hyper (HTTP/1.1 over Unix sockets both ways); one connection
//! to rclone per request, as Docker's plugin client asks little and rarely.

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// Docker's volume plugin protocol for the `clusterkit` driver, passed on
/// to `rclone serve docker`; a volume created with no remote gets
/// `PREFIX` + its name.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Example (what the clusterkit-volumes-front unit runs):\n  clusterkit-volumes --listen /run/docker/plugins/clusterkit.sock --upstream /run/clusterkit/volumes-rclone.sock"
)]
struct Args {
    /// The socket Docker finds the driver on.
    #[arg(long, default_value = "/run/docker/plugins/clusterkit.sock")]
    listen: PathBuf,
    /// rclone's socket (`rclone serve docker --socket-addr`).
    #[arg(long, default_value = "/run/clusterkit/volumes-rclone.sock")]
    upstream: PathBuf,
    /// What a volume's name is appended to when it names no remote.
    #[arg(long, default_value = "clusterkit:volumes/")]
    remote_prefix: String,
}

/// The largest request body taken (Docker's are a few hundred bytes).
const MAX_BODY: usize = 1 << 20;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clusterkit-volumes: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clusterkit-volumes: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    if let Some(dir) = args.listen.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // A socket left by an earlier run would refuse the bind.
    let _ = std::fs::remove_file(&args.listen);
    let listener = UnixListener::bind(&args.listen)
        .map_err(|e| format!("listening on {}: {e}", args.listen.display()))?;
    eprintln!(
        "clusterkit-volumes: serving {} for rclone on {}",
        args.listen.display(),
        args.upstream.display()
    );
    let shared = Arc::new(args);
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accepting on {}: {e}", shared.listen.display()))?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("clusterkit-volumes: a connection from Docker: {e}");
            }
        });
    }
}

/// Docker's plugin protocol says an error as `{"Err": "…"}`.
fn plugin_error(message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "Err": message }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.docker.plugins.v1+json"),
    );
    r
}

async fn handle(req: Request<Incoming>, args: &Args) -> Response<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return plugin_error(&format!(
                "clusterkit volume driver: reading the request: {e}"
            ))
        }
    };
    let body = if parts.uri.path() == "/VolumeDriver.Create" {
        match clusterkit_volumes::with_default_remote(&body, &args.remote_prefix) {
            Ok(Some(rewritten)) => Bytes::from(rewritten),
            Ok(None) => body,
            Err(why) => return plugin_error(&why),
        }
    } else {
        body
    };
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("close"));
    match forward(Request::from_parts(parts, Full::new(body)), &args.upstream).await {
        Ok(r) => r,
        Err(e) => plugin_error(&format!(
            "clusterkit volume driver: rclone does not answer on {} ({e}): systemctl status clusterkit-volumes",
            args.upstream.display()
        )),
    }
}

async fn forward(
    req: Request<Full<Bytes>>,
    upstream: &std::path::Path,
) -> Result<Response<Full<Bytes>>, String> {
    let stream = UnixStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (mut parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(Response::from_parts(parts, Full::new(body)))
}
