//! The local Docker Engine, driven through the `docker` CLI (as kind does):
//! the sandbox is a tool for a machine that has Docker, and the CLI's
//! `import`, `cp`, `save` and `exec -i` are exactly the operations it needs.

use std::process::{Command, Stdio};

use crate::Error;

/// The last lines of a command's stderr, for error messages.
pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

/// Runs `docker ARGS`, returning stdout; a failure names the command and its stderr.
pub(crate) fn docker(args: &[&str]) -> Result<String, Error> {
    run(
        Command::new("docker").args(args),
        &format!("docker {}", args.join(" ")),
    )
}

/// Runs a command, returning stdout.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<String, Error> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(&program, e))?;
    finish(out, what)
}

fn finish(out: std::process::Output, what: &str) -> Result<String, Error> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: what.to_string(),
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr)),
        })
    }
}

fn spawn_error(program: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::ToolMissing {
            tool: program.to_string(),
            install: match program {
                "docker" => "install Docker Engine (Debian: apt-get install docker.io)",
                "debootstrap" => "apt-get install debootstrap",
                "ssh" => "apt-get install openssh-client",
                _ => "install it with your package manager",
            }
            .to_string(),
        }
    } else {
        Error::Io {
            what: format!("running {program}"),
            source: e,
        }
    }
}

/// Whether an object (`container`, `network`, `volume`, `image`) exists.
pub(crate) fn exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([
            kind,
            "inspect",
            "--format",
            if kind == "volume" {
                "{{.Name}}"
            } else {
                "{{.Id}}"
            },
            name,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `docker inspect --format FORMAT NAME` for any object kind, trimmed.
pub(crate) fn inspect(kind: &str, name: &str, format: &str) -> Result<String, Error> {
    docker(&[kind, "inspect", "--format", format, name]).map(|s| s.trim().to_string())
}

/// Names of the objects of a kind carrying `label=value`.
pub(crate) fn labelled(kind: &str, label: &str, value: &str) -> Result<Vec<String>, Error> {
    let filter = format!("label={label}={value}");
    let out = match kind {
        "container" => docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])?,
        "volume" => docker(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"])?,
        "network" => docker(&[
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ])?,
        _ => unreachable!("kind {kind}"),
    };
    let mut names: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    names.sort();
    Ok(names)
}

/// Checks that the engine answers, with a way out when it does not.
pub(crate) fn check_engine() -> Result<String, Error> {
    match docker(&["version", "--format", "{{.Server.Version}}"]) {
        Ok(v) => Ok(v.trim().to_string()),
        Err(Error::Command { stderr, .. }) => Err(Error::EngineUnavailable { detail: stderr }),
        Err(e) => Err(e),
    }
}
