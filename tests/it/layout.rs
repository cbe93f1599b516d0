//! The layout's dependency rules, checked on the lockfile: the model and the
//! renderers embed without the transport.

use std::process::Command;

/// What only the transport may bring in.
const TRANSPORT: &[&str] = &["russh", "bollard", "hyper", "tokio"];

/// `cargo tree -e normal` of `package`, with or without its default
/// features: every package it builds with, one name per line.
fn tree(package: &str, defaults: bool) -> Vec<String> {
    let o = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args((!defaults).then_some("--no-default-features"))
        .args(["-p", package])
        .output()
        .expect("running cargo tree");
    assert!(
        o.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_model_and_renderers_build_without_ssh_docker_http_or_tokio() {
    for package in [
        "clusterkit-core",
        "clusterkit-wg",
        "clusterkit-storage",
        "clusterkit-monitor",
        "clusterkit-ingress",
    ] {
        let deps = tree(package, false);
        assert!(deps.iter().any(|d| d == package), "{package}: {deps:?}");
        assert!(deps.iter().any(|d| d == "serde"), "{package}: {deps:?}");
        let bad: Vec<&String> = deps
            .iter()
            .filter(|d| {
                TRANSPORT
                    .iter()
                    .any(|t| d == t || d.starts_with(&format!("{t}-")))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{package} without its `remote` feature builds with {bad:?}"
        );
    }
    // With it (the default), the transport is there: the check above can fail.
    let with = tree("clusterkit-core", true);
    assert!(with.iter().any(|d| d == "russh"), "{with:?}");
}
