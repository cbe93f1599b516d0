//! Running the real `clusterkit` binary in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `clusterkit` binary, built once per test run by cargo itself.
pub fn clusterkit() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The userspace WireGuard binary is found beside `clusterkit`.
        escargot::CargoBuild::new()
            .package("clusterkit-wg-userspace")
            .bin("clusterkit-wg-userspace")
            .run()
            .expect("building clusterkit-wg-userspace");
        escargot::CargoBuild::new()
            .package("clusterkit-cli")
            .bin("clusterkit")
            .run()
            .expect("building the clusterkit binary")
            .path()
            .to_path_buf()
    })
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
    let mut cmd = Command::new(clusterkit());
    cmd.arg("--color=never").args(args).env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("running clusterkit");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
