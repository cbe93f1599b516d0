//! Running the real `clusterkit` binary in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `clusterkit` binary, built once per test run by cargo itself.
pub fn clusterkit() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The userspace WireGuard binary and the volume driver's front are
        // found beside `clusterkit`.
        for helper in ["clusterkit-wg-userspace", "clusterkit-volumes"] {
            escargot::CargoBuild::new()
                .package(helper)
                .bin(helper)
                .run()
                .unwrap_or_else(|e| panic!("building {helper}: {e}"));
        }
        escargot::CargoBuild::new()
            .package("clusterkit-cli")
            .bin("clusterkit")
            .run()
            .expect("building the clusterkit binary")
            .path()
            .to_path_buf()
    })
}

/// A copy of `clusterkit` alone in a directory of its own, as a user who
/// installed only the CLI has it: no userspace WireGuard binary and no
/// volume driver front (`clusterkit-volumes`) beside it.
pub fn clusterkit_alone() -> &'static Path {
    static BIN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_dir, path) = BIN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clusterkit");
        std::fs::copy(clusterkit(), &path).expect("copying the clusterkit binary");
        (dir, path)
    });
    path
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A scratch directory holding the files of one test.
pub struct Scratch(pub tempfile::TempDir);

impl Scratch {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Runs `clusterkit ARGS` inside the directory, without colours.
    pub fn run(&self, args: &[&str]) -> Output {
        run(Some(self.path()), args)
    }
}

/// Runs `clusterkit ARGS` (in `dir` when given), without colours.
pub fn run(dir: Option<&Path>, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

/// [`run`] with environment variables set.
pub fn run_env(dir: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_program(clusterkit(), dir, args, env)
}

/// [`run_env`] of the binary at `program`.
pub fn run_program(
    program: &Path,
    dir: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(program);
    cmd.env_remove("CLUSTERKIT_WG_USERSPACE")
        .arg("--color=never")
        .args(args)
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let bound = bound(args);
    let out = output_within(cmd, bound).unwrap_or_else(|(so_far_out, so_far_err)| {
        panic!(
            "`clusterkit {}` gave no answer within {} s and was killed\n\
             its stdout so far:\n{so_far_out}\nits stderr so far:\n{so_far_err}",
            args.join(" "),
            bound.as_secs()
        )
    });
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// How long one run of the CLI may take before the test fails naming it:
/// a hang fails one test within minutes instead of holding CI until its
/// limit. Reading commands answer in seconds; those that build or change
/// a cluster wait on nodes for minutes; a sandbox may build its images.
fn bound(args: &[&str]) -> Duration {
    let reads = [
        "validate",
        "plan",
        "check",
        "status",
        "doctor",
        "init",
        "known-hosts",
    ];
    match args {
        ["sandbox", ..] => Duration::from_secs(45 * 60),
        [first, ..] if reads.contains(first) => Duration::from_secs(5 * 60),
        ["backup", "list", ..] | ["monitor", "password", ..] => Duration::from_secs(5 * 60),
        _ => Duration::from_secs(20 * 60),
    }
}

/// Runs `cmd` to its end, or kills it at `bound` and returns what it had
/// printed by then.
pub fn output_within(
    mut cmd: Command,
    bound: Duration,
) -> Result<std::process::Output, (String, String)> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    // Its own process group: what it started (docker, debootstrap) goes
    // with it when it is killed, and lets go of the pipes.
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the program");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the program") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(status) => Ok(std::process::Output {
            status,
            stdout,
            stderr,
        }),
        None => Err((text(stdout), text(stderr))),
    }
}
