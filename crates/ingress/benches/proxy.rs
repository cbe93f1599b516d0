//! The ingress's cost: requests per second and latency of the example app
//! reached through an edge (TLS ended by Caddy with the configuration
//! `caddy::edge` renders, the request passed to `tasks.app_web:8000`)
//! against the same app reached directly over plain HTTP, from this machine,
//! with the same client, alternating rounds. The issuer (Caddy's internal
//! CA, `caddy::issuer`) stores the certificate first, on a volume the edge
//! reads, as on a cluster; no mesh or overlay is in the path (a bridge
//! network of the bench's own, 172.29.229.0/24), so this is the proxy's
//! cost alone.
//!
//! `cargo bench -p clusterkit-ingress --bench proxy` (root, a Docker Engine,
//! the sandbox's images: `clusterkit sandbox build-images`). `CK_BENCH_CONNS`
//! (default 8) connections, each sending its next request when the last is
//! answered, for `CK_BENCH_SECS` (default 10) seconds a round; `CK_BENCH_RUNS`
//! (default 3) rounds of each. Prints each round, then the medians and the
//! ratios (through the ingress / direct).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clusterkit_ingress::caddy::{self, certificate_files, EdgeOptions, Tls};
use clusterkit_ingress::route::{routes, Service, HOST_LABEL, PORT_LABEL};
use http_body_util::{BodyExt, Empty};

const NET: &str = "ck-bench-ingress";
const SUBNET: &str = "172.29.229.0/24";
const HOST: &str = "app.bench.test";
/// A backend that keeps connections open and answers at once (Caddy's
/// static response): what is left is the proxy's own cost.
const STATIC: &str = "static.bench.test";
const CADDY: &str = "clusterkit/caddy:sid";
const APP: &str = "clusterkit/example-app:bookworm";

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker");
    assert!(
        o.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn clean() {
    for c in ["app", "static", "issuer", "edge"] {
        let _ = Command::new("docker")
            .args(["rm", "-f", &format!("{NET}-{c}")])
            .output();
    }
    let _ = Command::new("docker").args(["network", "rm", NET]).output();
    let _ = Command::new("docker")
        .args(["volume", "rm", "-f", &format!("{NET}-data")])
        .output();
}

/// Starts `c` (config copied in as /etc/caddy/caddy.json when given).
fn start(c: &str, aliases: &[&str], image: &str, config: Option<&serde_json::Value>) -> String {
    let name = format!("{NET}-{c}");
    let volume = format!("{NET}-data:/data");
    let mut args = vec!["create", "--name", &name, "--network", NET, "-v", &volume];
    for a in aliases {
        args.extend(["--network-alias", a]);
    }
    args.push(image);
    docker(&args);
    if let Some(config) = config {
        let dir = std::env::temp_dir().join(format!("{name}.json"));
        std::fs::write(&dir, serde_json::to_vec(config).unwrap()).unwrap();
        docker(&[
            "cp",
            dir.to_str().unwrap(),
            &format!("{name}:/etc/caddy/caddy.json"),
        ]);
    }
    docker(&["start", &name]);
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ])
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A connection ready to send, over TLS when `tls` is given.
async fn connect(
    addr: std::net::SocketAddr,
    host: &'static str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).ok();
    match tls {
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from(host).unwrap();
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            let (s, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("HTTP handshake");
            tokio::spawn(conn);
            s
        }
        None => {
            let (s, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .expect("HTTP handshake");
            tokio::spawn(conn);
            s
        }
    }
}

/// One round: `conns` connections asking for `secs`; every answer's
/// latency, a new connection counted in it when the server closed the last
/// (the example app, Python's `http.server`, closes after each answer;
/// Caddy keeps the client's connection).
async fn round(
    addr: std::net::SocketAddr,
    host: &'static str,
    tls: Option<Arc<rustls::ClientConfig>>,
    conns: usize,
    secs: u64,
) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr, host, tls.clone()).await;
            let mut times = Vec::new();
            loop {
                let t = Instant::now();
                if sender.ready().await.is_err() {
                    sender = connect(addr, host, tls.clone()).await;
                }
                let req = hyper::Request::get("/")
                    .header("host", host)
                    .body(Empty::new())
                    .unwrap();
                let res = sender.send_request(req).await.expect("request");
                assert_eq!(res.status(), 200);
                res.into_body().collect().await.expect("body");
                times.push(t.elapsed());
                if Instant::now() >= deadline {
                    break;
                }
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a connection"));
    }
    all
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let conns = env("CK_BENCH_CONNS", 8) as usize;
    let secs = env("CK_BENCH_SECS", 10);
    let runs = env("CK_BENCH_RUNS", 3);
    clean();
    docker(&["network", "create", "--subnet", SUBNET, NET]);
    let app = start("app", &["tasks.app_web"], APP, None);
    let backend = serde_json::json!({ "apps": { "http": { "servers": { "s": {
        "listen": [":8000"],
        "routes": [{ "handle": [{ "handler": "static_response", "body": "hello\n" }] }]
    }}}}});
    let fixed = start("static", &["tasks.static_web"], CADDY, Some(&backend));
    let service = |name: &str, host: &str| Service {
        name: name.into(),
        labels: [
            (HOST_LABEL.to_string(), host.to_string()),
            (PORT_LABEL.to_string(), "8000".to_string()),
        ]
        .into(),
    };
    let found = routes(&[service("app_web", HOST), service("static_web", STATIC)]);
    start(
        "issuer",
        &["tasks.ck-issuer"],
        CADDY,
        Some(&caddy::issuer(&found.hosts(), &Tls::Internal, "/data")),
    );
    let files = vec![
        certificate_files(&Tls::Internal, HOST),
        certificate_files(&Tls::Internal, STATIC),
    ];
    let issuer = format!("{NET}-issuer");
    let waited = Instant::now();
    while !files.iter().all(|f| {
        Command::new("docker")
            .args(["exec", &issuer, "test", "-s", &format!("/data/{}", f.key)])
            .status()
            .is_ok_and(|s| s.success())
    }) {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the issuer stored no certificate"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let edge = start(
        "edge",
        &[],
        CADDY,
        Some(&caddy::edge(
            &found,
            &EdgeOptions {
                storage_root: "/data".into(),
                issuer: "tasks.ck-issuer:80".into(),
                certificates: files,
            },
        )),
    );
    let root = docker(&[
        "exec",
        &issuer,
        "cat",
        "/data/pki/authorities/local/root.crt",
    ]);
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(root.as_bytes()) {
        roots.add(c.expect("the root is PEM")).expect("a root");
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let direct: std::net::SocketAddr = format!("{app}:8000").parse().unwrap();
    let direct_static: std::net::SocketAddr = format!("{fixed}:8000").parse().unwrap();
    let through: std::net::SocketAddr = format!("{edge}:443").parse().unwrap();
    // The edge answers (its certificate loaded) before anything is counted.
    let ready = Instant::now();
    loop {
        let ok = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(3),
                round(through, STATIC, Some(Arc::clone(&tls)), 1, 0),
            )
            .await
            .is_ok()
        });
        if ok {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "the edge does not answer"
        );
    }
    println!("{conns} connection(s), {secs} s a round, {runs} round(s) each, alternating");
    for (backend, host, direct) in [
        ("a static answer (Caddy, keep-alive)", STATIC, direct_static),
        (
            "the example app (Python, a connection per answer)",
            HOST,
            direct,
        ),
    ] {
        println!("backend: {backend}");
        let (mut rps_d, mut rps_t, mut p50_d, mut p50_t, mut p99_d, mut p99_t) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for r in 1..=runs {
            for (what, addr, tls) in [
                ("direct (HTTP)", direct, None),
                ("ingress (HTTPS)", through, Some(Arc::clone(&tls))),
            ] {
                let mut t = rt.block_on(round(addr, host, tls.clone(), conns, secs));
                t.sort();
                let rps = t.len() as f64 / secs as f64;
                let (p50, p99) = (quantile(&t, 0.5), quantile(&t, 0.99));
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                println!(
                    "  round {r} {what:<16} {rps:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                    ms(p50),
                    ms(p99)
                );
                if tls.is_some() {
                    rps_t.push(rps);
                    p50_t.push(ms(p50));
                    p99_t.push(ms(p99));
                } else {
                    rps_d.push(rps);
                    p50_d.push(ms(p50));
                    p99_d.push(ms(p99));
                }
                // Connections closed by the last round settle.
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        let (rd, rt_, d50, t50, d99, t99) = (
            median(rps_d),
            median(rps_t),
            median(p50_d),
            median(p50_t),
            median(p99_d),
            median(p99_t),
        );
        println!(
            "  medians: direct {rd:.0} req/s, p50 {d50:.2} ms, p99 {d99:.2} ms; ingress {rt_:.0} req/s, p50 {t50:.2} ms, p99 {t99:.2} ms"
        );
        println!(
            "  ratios (ingress / direct): throughput {:.2}, p50 {:.2}, p99 {:.2}",
            rt_ / rd,
            t50 / d50,
            t99 / d99
        );
    }
    clean();
}
