//! Monitoring (issue [G], in progress): the generated Prometheus
//! configuration and rules pass Prometheus's own checker, from the image
//! built from Debian's package.

use crate::bin::{run, Scratch};
use crate::sandbox::docker;

#[test]
fn generated_config_and_rules_pass_promtool() {
    let built = crate::sandbox::build_images();
    assert_eq!(built.code, 0, "{}", built.stderr);
    let inventory =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hosts.ini"))
            .unwrap();
    let scratch = Scratch::new(&[("hosts.ini", &inventory)]);
    let out_dir = scratch.path().join("monitoring");
    let r = run(
        Some(scratch.path()),
        &[
            "monitor",
            "render",
            "-i",
            "hosts.ini",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let mount = |f: &str| format!("{}:/etc/prometheus/{f}:ro", out_dir.join(f).display());
    let check = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "promtool",
        "-v",
        &mount("prometheus.yml"),
        "-v",
        &mount("rules.yml"),
        "clusterkit/prometheus:bookworm",
        "check",
        "config",
        "/etc/prometheus/prometheus.yml",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("is valid prometheus config file syntax"),
        "{text}"
    );
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
}
