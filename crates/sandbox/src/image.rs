//! Images built from Debian packages: no registry is needed, only Debian's
//! package mirror. `debootstrap` makes a root filesystem, a few files and
//! commands finish it, and `docker import` turns it into an image tagged by a
//! hash of its recipe, so an unchanged recipe is never rebuilt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::docker::{docker, exists, run, tail};
use crate::Error;

/// Debian release every image is built from.
pub const SUITE: &str = "bookworm";

/// How to build one image.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Repository name, e.g. `clusterkit/node`.
    pub repo: &'static str,
    /// A stable tag given besides the hash tag, e.g. `bookworm`; the name stacks use.
    pub alias: &'static str,
    /// The Debian suite its packages come from ([`SUITE`] unless a package
    /// is only in another: cAdvisor in bullseye).
    pub suite: &'static str,
    /// Debian packages to install (dependencies follow; recommends do not).
    pub packages: &'static [&'static str],
    /// Files written into the root filesystem: path, mode, content.
    pub files: &'static [(&'static str, u32, &'static str)],
    /// Shell run in the root filesystem (chroot) after the files are written.
    pub script: &'static str,
    /// `docker import --change` instructions (CMD, ENTRYPOINT, ENV, LABEL...).
    pub changes: &'static [&'static str],
    /// Programs with no Debian package, built from their published crate.
    pub binaries: &'static [CargoBinary],
}

/// A program built with `cargo install` from crates.io (version pinned,
/// `--locked`), cached by version so it is built once per machine.
#[derive(Debug, Clone, Copy)]
pub struct CargoBinary {
    /// The crate.
    pub krate: &'static str,
    /// Its exact version.
    pub version: &'static str,
    /// The binary's name.
    pub bin: &'static str,
    /// Where it goes in the image.
    pub dest: &'static str,
    /// How long a build takes here, for the progress line.
    pub expect: &'static str,
}

impl Recipe {
    /// The hash of everything that makes the image, first 12 hex digits.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "v1\n{}\n{}\n{:?}\n{:?}\n{}\n{:?}",
            self.suite, self.repo, self.packages, self.files, self.script, self.changes
        ));
        // Recipes without binaries keep the hash they always had.
        for b in self.binaries {
            h.update(format!("\n{}@{}:{}->{}", b.krate, b.version, b.bin, b.dest));
        }
        let digest = h.finalize();
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// `repo:hash`, the tag that identifies this exact recipe.
    pub fn tag(&self) -> String {
        format!("{}:{}", self.repo, self.hash())
    }

    /// `repo:alias`, the name generated stacks use.
    pub fn alias_tag(&self) -> String {
        format!("{}:{}", self.repo, self.alias)
    }
}

const SSHD_CONF: &str = "# clusterkit sandbox: keys only\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n";

const HOSTKEYS_UNIT: &str = "[Unit]\nDescription=Generate this node's own SSH host keys\nBefore=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n[Install]\nWantedBy=multi-user.target\n";

/// A sandbox node: a Debian server with systemd, sshd and Docker Engine, as
/// clusterkit expects a real server to be (systemd as init, so services are
/// ordered and restarted as on a server).
pub const NODE: Recipe = Recipe {
    repo: "clusterkit/node",
    alias: SUITE,
    suite: SUITE,
    packages: &[
        "systemd", "systemd-sysv", "dbus", "openssh-server", "docker.io", "containerd", "runc",
        "iproute2", "iptables", "nftables", "wireguard-tools", "ca-certificates", "procps",
        "python3", "iputils-ping", "fuse3", "kmod", "curl", "iperf3", "sudo", "rclone", "sqlite3",
    ],
    files: &[
        ("/etc/ssh/sshd_config.d/clusterkit.conf", 0o644, SSHD_CONF),
        ("/etc/systemd/system/clusterkit-hostkeys.service", 0o644, HOSTKEYS_UNIT),
    ],
    // Host keys are made on each node at first boot, never baked into the
    // image; units that cannot work in a container are masked (as kind does).
    script: "set -e\n\
        rm -f /etc/ssh/ssh_host_*\n\
        mkdir -p -m 0700 /root/.ssh\n\
        systemctl enable clusterkit-hostkeys.service ssh.service docker.service containerd.service\n\
        systemctl mask systemd-udevd.service systemd-udevd-kernel.socket systemd-udevd-control.socket \
          getty.target console-getty.service systemd-modules-load.service sys-kernel-config.mount \
          sys-kernel-debug.mount sys-kernel-tracing.mount systemd-remount-fs.service systemd-firstboot.service\n\
        echo ReadKMsg=no >> /etc/systemd/journald.conf\n\
        : > /etc/machine-id\n\
        apt-get clean\n",
    changes: &["CMD [\"/sbin/init\"]", "ENV container=docker"],
    binaries: &[],
};

/// Prometheus 3 from Debian sid's package (3.5 when written), the family
/// of the default image (`prom/prometheus:v3.x`): the version the sandbox
/// runs, so the generated configuration, rules and flags are proven on it.
pub const PROMETHEUS: Recipe = Recipe {
    repo: "clusterkit/prometheus",
    alias: "sid",
    suite: "sid",
    packages: &["prometheus", "ca-certificates"],
    files: &[],
    script: "set -e\nmkdir -p /prometheus\napt-get clean\nrm -rf /var/lib/apt/lists/*\n",
    changes: &[
        "ENTRYPOINT [\"/usr/bin/prometheus\"]",
        "CMD [\"--config.file=/etc/prometheus/prometheus.yml\", \"--storage.tsdb.path=/prometheus\"]",
        "EXPOSE 9090",
    ],
    binaries: &[],
};

/// Prometheus 2.42 from bookworm's package: the previous major version, the
/// one a rolling upgrade to [`PROMETHEUS`] starts from in the tests. Its
/// recipe is the one the sandbox ran before Prometheus 3 (same hash).
pub const PROMETHEUS_PREVIOUS: Recipe = Recipe {
    repo: "clusterkit/prometheus",
    alias: SUITE,
    suite: SUITE,
    packages: &["prometheus", "ca-certificates"],
    files: &[],
    script: "set -e\nmkdir -p /prometheus\napt-get clean\n",
    changes: &[
        "ENTRYPOINT [\"/usr/bin/prometheus\"]",
        "CMD [\"--config.file=/etc/prometheus/prometheus.yml\", \"--storage.tsdb.path=/prometheus\"]",
        "EXPOSE 9090",
    ],
    binaries: &[],
};

/// prometheus-node-exporter 1.9 from trixie's package (sid's is 1.11; the
/// default image is 1.9.x).
pub const NODE_EXPORTER: Recipe = Recipe {
    repo: "clusterkit/node-exporter",
    alias: "trixie",
    suite: "trixie",
    packages: &["prometheus-node-exporter"],
    files: &[],
    script: "set -e\napt-get clean\nrm -rf /var/lib/apt/lists/*\n",
    changes: &[
        "ENTRYPOINT [\"/usr/bin/prometheus-node-exporter\"]",
        "EXPOSE 9100",
    ],
    binaries: &[],
};

/// prometheus-alertmanager 0.28 from trixie's package, the default image's
/// version (sid's is 0.33).
pub const ALERTMANAGER: Recipe = Recipe {
    repo: "clusterkit/alertmanager",
    alias: "trixie",
    suite: "trixie",
    packages: &["prometheus-alertmanager"],
    files: &[],
    script: "set -e\nmkdir -p /alertmanager\napt-get clean\nrm -rf /var/lib/apt/lists/*\n",
    changes: &[
        "ENTRYPOINT [\"/usr/bin/prometheus-alertmanager\"]",
        "EXPOSE 9093",
    ],
    binaries: &[],
};

/// Caddy 2 from Debian sid's package (2.11 when written), the family of the
/// ingress's default image (`caddy:2`): the edges and the issuer of the
/// HTTPS ingress. It reads its configuration (JSON) from
/// `/etc/caddy/caddy.json`.
pub const CADDY: Recipe = Recipe {
    repo: "clusterkit/caddy",
    alias: "sid",
    suite: "sid",
    packages: &["caddy", "ca-certificates"],
    files: &[],
    script: "set -e\nmkdir -p /data /etc/caddy\napt-get clean\nrm -rf /var/lib/apt/lists/*\n",
    changes: &[
        "ENTRYPOINT [\"/usr/bin/caddy\"]",
        "CMD [\"run\", \"--config\", \"/etc/caddy/caddy.json\"]",
        "ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config",
        "EXPOSE 80 443",
    ],
    binaries: &[],
};

/// Pebble (Let's Encrypt's test CA) from Debian sid's package (2.10 when
/// written): the sandbox's ACME CA, validating for real. Its API's key is
/// made at first start (`assets/pebble-start.sh`); the root to trust for
/// that API is `/var/lib/pebble/api-root.pem`, the root of what it issues is
/// on its management port (`https://HOST:15000/roots/0`).
pub const PEBBLE: Recipe = Recipe {
    repo: "clusterkit/pebble",
    alias: "sid",
    suite: "sid",
    packages: &["pebble", "openssl", "dnsmasq-base"],
    files: &[
        (
            "/usr/local/bin/pebble-start",
            0o755,
            include_str!("../assets/pebble-start.sh"),
        ),
        (
            "/usr/local/bin/sandbox-dns",
            0o755,
            include_str!("../assets/sandbox-dns.sh"),
        ),
    ],
    script: "set -e\napt-get clean\nrm -rf /var/lib/apt/lists/*\n",
    changes: &[
        "ENTRYPOINT [\"/usr/local/bin/pebble-start\"]",
        "ENV PEBBLE_WFE_NONCEREJECT=0",
        "EXPOSE 14000 15000",
    ],
    binaries: &[],
};

/// clusterkit's example application (`assets/example-app.py`: a web service
/// with a `/metrics` endpoint) on Debian's python3.
pub const EXAMPLE_APP: Recipe = Recipe {
    repo: "clusterkit/example-app",
    alias: SUITE,
    suite: SUITE,
    packages: &["python3"],
    files: &[(
        "/usr/local/bin/example-app",
        0o755,
        include_str!("../assets/example-app.py"),
    )],
    script: "set -e\napt-get clean\nrm -rf /var/lib/apt/lists/*\n",
    changes: &[
        "ENTRYPOINT [\"/usr/bin/python3\", \"/usr/local/bin/example-app\"]",
        "EXPOSE 8000",
    ],
    binaries: &[],
};

/// rclone (and FUSE) from Debian's packages, for the volume driver.
pub const RCLONE: Recipe = Recipe {
    repo: "clusterkit/rclone",
    alias: SUITE,
    suite: SUITE,
    packages: &["rclone", "fuse3", "ca-certificates"],
    files: &[],
    script: "set -e\napt-get clean\n",
    changes: &["ENTRYPOINT [\"/usr/bin/rclone\"]"],
    binaries: &[],
};

/// The Garage version clusterkit builds and tests.
pub const GARAGE_VERSION: &str = "2.5.0";

/// Garage, the storage backend, built from its crate: the spec's default is
/// Garage's own image (`dxflrs/garage:v2.5.0`), which cannot be pulled here
/// or in an air-gapped cluster. Tagged `clusterkit/garage:2.5.0` and laid
/// out as Garage's is: the server at `/garage`, started by `CMD`, no entry
/// point and no shell (the build links Debian's libc, so the rest of the
/// system stays): what clusterkit runs in it works in Garage's image too.
pub const GARAGE: Recipe = Recipe {
    repo: "clusterkit/garage",
    alias: GARAGE_VERSION,
    suite: SUITE,
    packages: &["ca-certificates"],
    files: &[],
    script: "set -e\napt-get clean\nrm -rf /var/lib/apt/lists/*\n\
             rm -f /usr/bin/sh /usr/bin/dash /usr/bin/bash /usr/bin/rbash\n",
    changes: &["CMD [\"/garage\", \"server\"]", "EXPOSE 3900 3901 3903"],
    binaries: &[CargoBinary {
        krate: "garage",
        version: GARAGE_VERSION,
        bin: "garage",
        dest: "/garage",
        expect: "about 6 minutes on 2 cores, 1.4 GB of memory",
    }],
};

/// cAdvisor from Debian's package, which only bullseye has (0.38.7; later
/// suites dropped it).
pub const CADVISOR: Recipe = Recipe {
    repo: "clusterkit/cadvisor",
    alias: "bullseye",
    suite: "bullseye",
    packages: &["cadvisor"],
    files: &[],
    script: "set -e\napt-get clean\nrm -rf /var/lib/apt/lists/*\n",
    changes: &["ENTRYPOINT [\"/usr/bin/cadvisor\"]", "EXPOSE 8080"],
    binaries: &[],
};

/// The service images the sandbox can build. Grafana and MinIO have no
/// Debian package: see ARCHITECTURE.md.
pub const SERVICES: &[&Recipe] = &[
    &PROMETHEUS,
    &PROMETHEUS_PREVIOUS,
    &CADVISOR,
    &NODE_EXPORTER,
    &ALERTMANAGER,
    &EXAMPLE_APP,
    &CADDY,
    &PEBBLE,
    &RCLONE,
    &GARAGE,
];

/// The Debian mirror: `CLUSTERKIT_DEBIAN_MIRROR`, else the one this machine's
/// apt uses, else deb.debian.org.
pub fn mirror() -> String {
    if let Ok(m) = std::env::var("CLUSTERKIT_DEBIAN_MIRROR") {
        return m;
    }
    let from_sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|t| {
            t.split("\n\n")
                .find(|stanza| {
                    stanza.lines().any(|l| {
                        l.starts_with("Suites:") && l.contains(SUITE) && !l.contains("security")
                    })
                })
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("URIs:")))
                .map(|u| u.split_whitespace().next().unwrap_or("").to_string())
        });
    let from_list = || {
        std::fs::read_to_string("/etc/apt/sources.list")
            .ok()
            .and_then(|t| {
                t.lines()
                    .filter(|l| l.starts_with("deb ") && !l.contains("security"))
                    .find_map(|l| {
                        l.split_whitespace()
                            .find(|w| w.starts_with("http"))
                            .map(String::from)
                    })
            })
    };
    from_sources
        .filter(|m| !m.is_empty())
        .or_else(from_list)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// Builds the image unless an image of this exact recipe exists; returns its tag.
pub fn ensure(recipe: &Recipe, progress: &(dyn Fn(&str) + Sync)) -> Result<String, Error> {
    let tag = recipe.tag();
    if exists("image", &tag) {
        if !exists("image", &recipe.alias_tag()) {
            docker(&["tag", &tag, &recipe.alias_tag()])?;
        }
        return Ok(tag);
    }
    // One build at a time on this machine: debootstrap's package cache and
    // cargo's build trees are shared (two at once broke each other's).
    let _lock = build_lock(progress)?;
    if exists("image", &tag) {
        // Built by whoever held the lock.
        if !exists("image", &recipe.alias_tag()) {
            docker(&["tag", &tag, &recipe.alias_tag()])?;
        }
        return Ok(tag);
    }
    progress(&format!(
        "building image {tag} from Debian packages (debootstrap, about a minute)"
    ));
    let mut built = Vec::new();
    for b in recipe.binaries {
        built.push((cargo_install(b, progress)?, b.dest));
    }
    let work = scratch_dir(recipe)?;
    let result = build_in(recipe, &work, &tag, &built);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    docker(&["tag", &tag, &recipe.alias_tag()])?;
    progress(&format!("built image {tag}"));
    Ok(tag)
}

/// Takes the machine-wide image build lock (released when the file is
/// dropped, or when the process dies), saying so when it has to wait.
fn build_lock(progress: &(dyn Fn(&str) + Sync)) -> Result<std::fs::File, Error> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    let path = dir.join("build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io {
            what: format!("opening {}", path.display()),
            source: e,
        })?;
    if file.try_lock().is_err() {
        progress(&format!(
            "waiting for another clusterkit building images on this machine (lock {})",
            path.display()
        ));
        file.lock().map_err(|e| Error::Io {
            what: format!("locking {}", path.display()),
            source: e,
        })?;
    }
    Ok(file)
}

fn scratch_dir(recipe: &Recipe) -> Result<PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!(
        "clusterkit-image-{}-{}",
        recipe.repo.replace('/', "-"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    Ok(dir)
}

/// Where debootstrap keeps downloaded packages between builds.
fn cache_dir() -> PathBuf {
    std::env::var_os("CLUSTERKIT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/clusterkit/debootstrap"))
}

/// Builds (or finds cached) a crate's binary; returns its path.
pub fn cargo_install(b: &CargoBinary, progress: &(dyn Fn(&str) + Sync)) -> Result<PathBuf, Error> {
    let root = cache_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(cache_dir)
        .join("cargo")
        .join(format!("{}-{}", b.krate, b.version));
    let bin = root.join("bin").join(b.bin);
    if bin.is_file() {
        return Ok(bin);
    }
    if Command::new("cargo").arg("--version").output().is_err() {
        return Err(Error::ToolMissing {
            tool: "cargo".into(),
            install: format!(
                "install Rust (https://rustup.rs) to build {} {}, or load an image that has it",
                b.krate, b.version
            ),
        });
    }
    progress(&format!(
        "building {} {} from crates.io with cargo install ({}; cached in {})",
        b.krate,
        b.version,
        b.expect,
        root.display()
    ));
    let target = root.with_extension("target");
    let version = format!("={}", b.version);
    let result = run(
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                "--quiet",
                b.krate,
                "--version",
                &version,
                "--bin",
                b.bin,
                "--root",
            ])
            .arg(&root)
            .env("CARGO_TARGET_DIR", &target),
        &format!("cargo install --locked {} --version {version}", b.krate),
    );
    // The build tree is gigabytes; the binary is what is kept.
    let _ = std::fs::remove_dir_all(&target);
    result?;
    Ok(bin)
}

fn build_in(
    recipe: &Recipe,
    work: &Path,
    tag: &str,
    binaries: &[(PathBuf, &str)],
) -> Result<(), Error> {
    let rootfs = work.join("rootfs");
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|e| Error::Io {
        what: format!("creating {}", cache.display()),
        source: e,
    })?;
    let include = format!("--include={}", recipe.packages.join(","));
    let cache_arg = format!("--cache-dir={}", cache.display());
    let mirror = mirror();
    run(
        Command::new("debootstrap")
            .args(["--variant=minbase", &cache_arg, &include, recipe.suite])
            .arg(&rootfs)
            .arg(&mirror),
        &format!(
            "debootstrap --variant=minbase {include} {} {} {mirror}",
            recipe.suite,
            rootfs.display()
        ),
    )?;
    for (path, mode, content) in recipe.files {
        let p = rootfs.join(path.trim_start_matches('/'));
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                what: format!("creating {}", dir.display()),
                source: e,
            })?;
        }
        std::fs::write(&p, content).map_err(|e| Error::Io {
            what: format!("writing {}", p.display()),
            source: e,
        })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).map_err(|e| {
            Error::Io {
                what: format!("chmod {}", p.display()),
                source: e,
            }
        })?;
    }
    for (from, dest) in binaries {
        let to = rootfs.join(dest.trim_start_matches('/'));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                what: format!("creating {}", dir.display()),
                source: e,
            })?;
        }
        std::fs::copy(from, &to).map_err(|e| Error::Io {
            what: format!("copying {} to {}", from.display(), to.display()),
            source: e,
        })?;
    }
    run(
        Command::new("chroot")
            .arg(&rootfs)
            .args(["/bin/sh", "-c", recipe.script]),
        &format!(
            "chroot {} /bin/sh -c <{} script>",
            rootfs.display(),
            recipe.repo
        ),
    )?;
    let mut import: Vec<String> = vec!["import".into()];
    for c in recipe.changes {
        import.push("--change".into());
        import.push((*c).into());
    }
    import.push("--change".into());
    import.push(format!("LABEL io.clusterkit.recipe={}", recipe.hash()));
    import.push("-".into());
    import.push(tag.into());
    // tar | docker import, streamed: the root filesystem is hundreds of MB.
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io {
            what: "running tar".into(),
            source: e,
        })?;
    let out = Command::new("docker")
        .args(&import)
        .stdin(tar.stdout.take().expect("piped"))
        .output()
        .map_err(|e| Error::Io {
            what: "running docker import".into(),
            source: e,
        })?;
    let tar_status = tar.wait().map_err(|e| Error::Io {
        what: "waiting for tar".into(),
        source: e,
    })?;
    if !out.status.success() || !tar_status.success() {
        return Err(Error::Command {
            command: format!("tar -C {} -c . | docker import - {tag}", rootfs.display()),
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}
