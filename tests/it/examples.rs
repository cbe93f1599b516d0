//! The programs in `examples/`, built and run as a user would: the
//! monitoring files rendered for the seed's inventory; the mesh converged and
//! an application stack deployed on the shared sandbox, through the library.

use std::path::PathBuf;
use std::process::Command;

use crate::sandbox::{calm, ck, config, docker, shared, wait_for, NAME};

fn example(name: &str) -> Command {
    escargot::CargoBuild::new()
        .package("clusterkit")
        .example(name)
        .run()
        .unwrap_or_else(|e| panic!("building example {name}: {e}"))
        .command()
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn monitoring_config_renders_the_stack_for_the_seed_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hosts.ini");
    let o = example("monitoring_config")
        .args([inventory, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let compose = std::fs::read_to_string(dir.path().join("docker-compose.yml")).unwrap();
    assert!(
        compose.contains("dockerswarm") || compose.contains("prometheus:"),
        "{compose}"
    );
    let prom = std::fs::read_to_string(dir.path().join("prometheus.yml")).unwrap();
    assert!(prom.contains("dockerswarm_sd_configs"), "{prom}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("services for cluster"));
}

#[test]
fn mesh_config_renders_a_nodes_interface_and_firewall_offline() {
    let inventory = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hosts.ini");
    let key = "mH3Uk6vRFWdS9/Qp+4VbEVl0AbbcZ6k2u8H5oyTbBFk=";
    let o = example("mesh_config")
        .args([inventory, "node2", &format!("node1={key}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Address = 10.0.0.2/24"), "{text}");
    assert!(
        text.contains(&format!(
            "# node1\nPublicKey = {key}\nAllowedIPs = 10.0.0.1/32"
        )),
        "{text}"
    );
    assert!(
        text.contains("# node3\nPublicKey = AAAA"),
        "a placeholder: {text}"
    );
    assert!(!text.contains("# node2\n"), "no peer of itself: {text}");
    assert!(text.contains("CLUSTERKIT-MESH"), "the firewall: {text}");
    let bad = example("mesh_config")
        .args([inventory, "node2", "node1=not-a-key"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn volume_driver_renders_a_nodes_unit_and_rclone_configuration_offline() {
    let inventory = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hosts.ini");
    let o = example("volume_driver")
        .args([inventory, "node3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("rclone serve docker"), "{text}");
    assert!(
        text.contains("endpoint = http://10.0.0.3:3900"),
        "its own server: {text}"
    );
    assert!(text.contains("clusterkit:volumes/data"), "{text}");
    let unknown = example("volume_driver")
        .args([inventory, "node9"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        out(&unknown).contains("no node `node9`"),
        "{}",
        out(&unknown)
    );
}

#[test]
fn mesh_and_stack_examples_run_on_the_sandbox() {
    shared();
    // Calm first: a disruptive test may not break the swarm after it is converged.
    let _g = calm();
    crate::swarm::swarm_up();
    // The mesh, through the library (already built: a converged no-op).
    let userspace: PathBuf = crate::bin::clusterkit().with_file_name("clusterkit-wg-userspace");
    let o = {
        // It converges the mesh like `wg up`: one such change at a time.
        let _one = crate::sandbox::cluster_change();
        example("mesh")
            .args([config().as_str(), userspace.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("ping ") && !l.ends_with("ping none")),
        "{text}"
    );

    // `up` with a reporter of the program's own (the mesh phase: converged,
    // a no-op), and `status` read as data.
    let o = {
        let _one = crate::sandbox::cluster_change();
        example("up_reporter")
            .args([config().as_str(), userspace.to_str().unwrap(), "mesh"])
            .output()
            .unwrap()
    };
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        stdout.contains("phase mesh done: mesh ") && stdout.contains("; nothing changed"),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("facts ")), "{stdout}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(r#""event":"phase_done""#) && l.contains(r#""phase":"mesh""#)),
        "every event reaches the program's reporter: {stderr}"
    );
    let o = example("status_data").arg(config()).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("mesh pairs up: 6/6"), "{}", out(&o));
    assert!(stdout.contains("; managers: 3;"), "{}", out(&o));
    let healthy = stdout.contains("healthy true");
    assert_eq!(o.status.success(), healthy, "{}", out(&o));

    // A stack, through the library.
    let built = crate::sandbox::build_images();
    assert_eq!(built.code, 0, "{}", built.stderr);
    let pushed = ck(&[
        "images",
        "push",
        "-c",
        &config(),
        "clusterkit/example-app:bookworm",
    ]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stacks/app.yml");
    let o = example("stack")
        .args([config().as_str(), file, "example"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("stack example: 1 service(s) running"));
    let node1 = format!("{NAME}-node1");
    let ls = docker(&[
        "exec",
        &node1,
        "docker",
        "stack",
        "ls",
        "--format",
        "{{.Name}}",
    ]);
    assert!(String::from_utf8_lossy(&ls.stdout)
        .lines()
        .any(|l| l == "example"));
    // It serves its page over the mesh on every node running a replica.
    wait_for(
        "the example app answers over the mesh",
        std::time::Duration::from_secs(60),
        || {
            let o = docker(&[
                "exec",
                &node1,
                "sh",
                "-c",
                "curl -sf 10.0.0.2:8000/ || curl -sf 10.0.0.3:8000/ || curl -sf 10.0.0.1:8000/",
            ]);
            String::from_utf8_lossy(&o.stdout).starts_with("hello from")
        },
    );
    let _ = docker(&["exec", &node1, "docker", "stack", "rm", "example"]);
}
