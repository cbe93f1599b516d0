//! The ingress's Caddy configurations on real Caddy (the sandbox's image,
//! Debian's Caddy 2), with no cluster: on a bridge network of the test's
//! own, a backend reached as `tasks.app_web` (a network alias, as the
//! swarm's DNS names a service's tasks), the issuer writing certificates to
//! a volume, and edges loading them from there. Requests go from this
//! machine to each edge's address.
//!
//! The first test uses Caddy's internal CA; the second Pebble, Let's
//! Encrypt's test CA, validating for real: its HTTP-01 requests reach
//! whichever edge the name resolves to (two edges share it, as DNS round
//! robin gives it), which pass them to the issuer.

use std::path::Path;
use std::time::Duration;

use clusterkit::ingress::caddy::{self, certificate_files, CertificateFiles, EdgeOptions, Tls};
use clusterkit::ingress::route::{routes, Routes, Service, HOST_LABEL, PORT_LABEL};

use crate::sandbox::{docker, wait_for, wait_for_else};

const HOST: &str = "app.clusterkit.test";
const CADDY_IMAGE: &str = "clusterkit/caddy:sid";
const PEBBLE_IMAGE: &str = "clusterkit/pebble:sid";

fn ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A bridge network, a volume (the shared storage) and the containers on
/// them, all named after `net`; removed when dropped (and, first, what a
/// killed run left).
struct Bed {
    net: &'static str,
    containers: Vec<String>,
}

impl Bed {
    fn new(net: &'static str, subnet: &str) -> Bed {
        let built = crate::sandbox::build_images();
        assert_eq!(built.code, 0, "{}", built.stderr);
        drop(Bed {
            net,
            containers: ["app", "issuer", "edge", "edge2", "pebble"]
                .iter()
                .map(|c| format!("{net}-{c}"))
                .collect(),
        });
        ok(&["network", "create", "--subnet", subnet, net]);
        let mut bed = Bed {
            net,
            containers: Vec::new(),
        };
        bed.run(
            "app",
            &["tasks.app_web"],
            &[],
            "clusterkit/example-app:bookworm",
        );
        bed
    }

    fn name(&self, c: &str) -> String {
        format!("{}-{c}", self.net)
    }

    /// Creates `c` with its aliases and extra `docker create` arguments,
    /// copies `files` (path inside, content) in, starts it.
    fn start(
        &mut self,
        c: &str,
        aliases: &[&str],
        extra: &[&str],
        image: &str,
        files: &[(&str, &[u8])],
    ) {
        let name = self.name(c);
        self.containers.push(name.clone());
        let mut args = vec!["create", "--name", &name, "--network", self.net];
        for a in aliases {
            args.extend(["--network-alias", a]);
        }
        args.extend(extra);
        args.push(image);
        ok(&args);
        let dir = tempfile::tempdir().unwrap();
        for (i, (path, content)) in files.iter().enumerate() {
            let f = dir.path().join(i.to_string());
            std::fs::write(&f, content).unwrap();
            ok(&["cp", f.to_str().unwrap(), &format!("{name}:{path}")]);
        }
        ok(&["start", &name]);
    }

    fn run(&mut self, c: &str, aliases: &[&str], extra: &[&str], image: &str) {
        self.start(c, aliases, extra, image, &[]);
    }

    /// Starts Caddy as `c` with `config`, the shared volume at /data.
    fn caddy(
        &mut self,
        c: &str,
        aliases: &[&str],
        config: &serde_json::Value,
        files: &[(&str, &[u8])],
    ) {
        let volume = format!("{}-data:/data", self.net);
        let json = serde_json::to_vec_pretty(config).unwrap();
        let mut all: Vec<(&str, &[u8])> = vec![("/etc/caddy/caddy.json", &json)];
        all.extend(files);
        self.start(c, aliases, &["-v", &volume], CADDY_IMAGE, &all);
    }

    /// Gives the running Caddy `c` a new configuration through its admin
    /// API (as a reload: open connections are not dropped).
    fn reload(&self, c: &str, config: &serde_json::Value) {
        let name = self.name(c);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("caddy.json");
        std::fs::write(&f, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        ok(&[
            "cp",
            f.to_str().unwrap(),
            &format!("{name}:/etc/caddy/caddy.json"),
        ]);
        ok(&[
            "exec",
            &name,
            "caddy",
            "reload",
            "--config",
            "/etc/caddy/caddy.json",
        ]);
    }

    fn address(&self, c: &str) -> String {
        ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &self.name(c),
        ])
    }

    fn exec(&self, c: &str, args: &[&str]) -> std::process::Output {
        let name = self.name(c);
        let mut a = vec!["exec", name.as_str()];
        a.extend(args);
        docker(&a)
    }

    /// The last lines `c` logged.
    fn logs(&self, c: &str) -> String {
        let o = docker(&["logs", "--tail", "40", &self.name(c)]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    /// Waits until the issuer has stored `files` (key and certificate).
    fn wait_stored(
        &self,
        files: &CertificateFiles,
        within: Duration,
        why: impl FnOnce() -> String,
    ) {
        let stored = |path: &str| {
            self.exec("issuer", &["test", "-s", &format!("/data/{path}")])
                .status
                .success()
        };
        wait_for_else(
            &format!("the issuer stored {}'s certificate", files.host),
            within,
            || stored(&files.key) && stored(&files.certificate),
            why,
        );
    }

    /// The serial of the certificate stored in `files`.
    fn stored_serial(&self, files: &CertificateFiles) -> String {
        let pem = self
            .exec("issuer", &["cat", &format!("/data/{}", files.certificate)])
            .stdout;
        openssl(&["x509", "-noout", "-serial"], &pem)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = docker(&["network", "rm", self.net]);
        let _ = docker(&["volume", "rm", "-f", &format!("{}-data", self.net)]);
    }
}

/// `openssl ARGS` reading `input`: what it printed, trimmed.
fn openssl(args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    c.stdin.take().unwrap().write_all(input).unwrap();
    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout)
        .trim()
        .to_string()
}

/// The certificate `addr`:443 serves for [`HOST`]: its serial and issuer.
fn served(addr: &str) -> String {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo | openssl s_client -connect {addr}:443 -servername {HOST} 2>/dev/null | openssl x509 -noout -serial -issuer"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// curl from this machine, [`HOST`] resolved to `addr`: headers and body,
/// and curl's own complaints.
fn curl(url: &str, addr: &str, cacert: &Path) -> (String, String) {
    let port = if url.starts_with("https") { 443 } else { 80 };
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "10",
            "-D",
            "-",
            "--resolve",
            &format!("{HOST}:{port}:{addr}"),
            "--cacert",
            cacert.to_str().unwrap(),
            url,
        ])
        .output()
        .expect("curl");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn app_routes() -> Routes {
    let found = routes(&[Service {
        name: "app_web".into(),
        labels: [
            (HOST_LABEL.to_string(), HOST.to_string()),
            (PORT_LABEL.to_string(), "8000".to_string()),
        ]
        .into(),
    }]);
    assert!(found.refused.is_empty(), "{:?}", found.refused);
    found
}

fn edge_options(certificates: Vec<CertificateFiles>) -> EdgeOptions {
    EdgeOptions {
        storage_root: "/data".into(),
        issuer: "tasks.ck-issuer:80".into(),
        certificates,
    }
}

/// The app answers through `edge` over HTTPS, with HSTS, trusting `root`.
fn answers_over_https(bed: &Bed, edge: &str, root: &Path) {
    let addr = bed.address(edge);
    let mut answer = (String::new(), String::new());
    wait_for(
        &format!("{edge} answers over HTTPS"),
        Duration::from_secs(60),
        || {
            answer = curl(&format!("https://{HOST}/metrics"), &addr, root);
            answer.0.starts_with("HTTP/")
        },
    );
    let (head, err) = &answer;
    assert!(
        head.starts_with("HTTP/2 200") || head.starts_with("HTTP/1.1 200"),
        "{edge}: {head}{err}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    assert!(head.contains("# HELP"), "the app's metrics: {head}");
}

#[test]
fn caddy_serves_the_routes_with_the_issuers_certificate_redirects_and_passes_challenges_on() {
    let mut bed = Bed::new("ck-it-ingress", "172.29.244.0/24");
    let found = app_routes();
    let tls = Tls::Internal;
    bed.caddy(
        "issuer",
        &["tasks.ck-issuer"],
        &caddy::issuer(&found.hosts(), &tls, "/data"),
        &[],
    );
    let files = certificate_files(&tls, HOST);
    bed.wait_stored(&files, Duration::from_secs(60), || bed.logs("issuer"));
    bed.caddy(
        "edge",
        &["edge"],
        &caddy::edge(&found, &edge_options(vec![files.clone()])),
        &[],
    );
    let edge = bed.address("edge");
    // The internal CA's root, from the shared storage, is what the client trusts.
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root.crt");
    std::fs::write(
        &root,
        bed.exec("issuer", &["cat", "/data/pki/authorities/local/root.crt"])
            .stdout,
    )
    .unwrap();
    answers_over_https(&bed, "edge", &root);
    // The certificate served is the one the issuer stored.
    let serial = bed.stored_serial(&files);
    assert!(serial.starts_with("serial="), "{serial}");
    assert!(served(&edge).starts_with(&serial), "{}", served(&edge));

    // Plain HTTP: redirected, path and query kept.
    let (head, err) = curl(&format!("http://{HOST}/a/b?c=d"), &edge, &root);
    assert!(head.starts_with("HTTP/1.1 308"), "{head}{err}");
    assert!(
        head.contains(&format!("Location: https://{HOST}/a/b?c=d")),
        "{head}"
    );
    // A CA's challenge on port 80 reaches the issuer (which has none in
    // flight here: its own 404, not the edge's redirect). Asked again for a
    // while: once, on this loaded 2-core machine, the edge's first
    // connection to the issuer failed (a 502) and the next went through.
    let mut last = (String::new(), String::new());
    let passed = std::time::Instant::now();
    while passed.elapsed() < Duration::from_secs(30) {
        last = curl(
            &format!("http://{HOST}/.well-known/acme-challenge/token"),
            &edge,
            &root,
        );
        if !last.0.starts_with("HTTP/1.1 502") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let (head, err) = &last;
    assert!(
        head.starts_with("HTTP/1.1 404") && head.contains("ACME challenges only"),
        "{head}{err}\nthe edge's log:\n{}",
        bed.logs("edge")
    );
    // A name with no route and no certificate: refused at the handshake.
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "--resolve",
            &format!("other.clusterkit.test:443:{edge}"),
            "--cacert",
            root.to_str().unwrap(),
            "https://other.clusterkit.test/",
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn pebble_validates_through_either_edge_and_the_name_is_ordered_once() {
    let mut bed = Bed::new("ck-it-acme", "172.29.243.0/24");
    bed.run(
        "pebble",
        &["pebble"],
        &["-e", "PEBBLE_VA_NOSLEEP=1"],
        PEBBLE_IMAGE,
    );
    let mut api_root = Vec::new();
    wait_for("pebble made its API's key", Duration::from_secs(30), || {
        let o = bed.exec("pebble", &["cat", "/var/lib/pebble/api-root.pem"]);
        api_root = o.stdout;
        o.status.success() && api_root.starts_with(b"-----BEGIN")
    });
    let found = app_routes();
    // Two edges answer to the name, as two ingress nodes behind DNS round
    // robin: Pebble's validation reaches either. Neither has a certificate yet.
    for e in ["edge", "edge2"] {
        bed.caddy(
            e,
            &[HOST, e],
            &caddy::edge(&found, &edge_options(vec![])),
            &[],
        );
    }
    let tls = Tls::Acme {
        ca: "https://pebble:14000/dir".into(),
        email: Some("ops@clusterkit.test".into()),
        trusted_roots: Some("/etc/caddy/acme-roots.pem".into()),
    };
    bed.caddy(
        "issuer",
        &["tasks.ck-issuer"],
        &caddy::issuer(&found.hosts(), &tls, "/data"),
        &[("/etc/caddy/acme-roots.pem", &api_root)],
    );
    let files = certificate_files(&tls, HOST);
    bed.wait_stored(&files, Duration::from_secs(120), || {
        format!(
            "issuer:\n{}\npebble:\n{}",
            bed.logs("issuer"),
            bed.logs("pebble")
        )
    });
    // The edges load it (a reload, as the ingress gives them new certificates).
    for e in ["edge", "edge2"] {
        bed.reload(e, &caddy::edge(&found, &edge_options(vec![files.clone()])));
    }
    // Pebble's root (of what it issues), from its management port, is what
    // the client trusts.
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("pebble-root.pem");
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-k",
            "--max-time",
            "10",
            &format!("https://{}:15000/roots/0", bed.address("pebble")),
        ])
        .output()
        .unwrap();
    assert!(o.stdout.starts_with(b"-----BEGIN"), "{o:?}");
    std::fs::write(&root, &o.stdout).unwrap();
    let serial = bed.stored_serial(&files);
    for e in ["edge", "edge2"] {
        answers_over_https(&bed, e, &root);
        let cert = served(&bed.address(e));
        assert!(cert.starts_with(&serial), "{e}: {cert}, stored {serial}");
        assert!(cert.contains("Pebble"), "{e}: issued by Pebble: {cert}");
    }
    // One order for the name, however many edges serve it.
    let pebble = docker(&["logs", &bed.name("pebble")]);
    let log = String::from_utf8_lossy(&pebble.stderr).into_owned()
        + &String::from_utf8_lossy(&pebble.stdout);
    assert_eq!(log.matches("Added order").count(), 1, "{log}");
    assert_eq!(log.matches("Issued certificate serial").count(), 1, "{log}");
}
