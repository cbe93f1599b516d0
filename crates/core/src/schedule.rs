//! The recurring backup (`clusterkit backup --schedule`): a Swarm service on
//! a manager that runs clusterkit's own `backup` when the newest backup under
//! its destination is older than the period. Pure: what the service is made
//! of. The CLI deploys it and runs inside it.
//!
//! The service reaches the nodes as clusterkit does, over SSH, from inside the
//! mesh: its own key (a Swarm secret; its public half in each node's
//! `authorized_keys`, usable from the mesh's addresses only), the nodes'
//! host keys checked against a `known_hosts` of their mesh addresses.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::spec::ClusterSpec;
use crate::stack::StackFiles;

/// The stack's name.
pub const STACK: &str = "clusterkit-backup";
/// Its one service, as the swarm names it.
pub const SERVICE: &str = "clusterkit-backup_runner";
/// The Swarm secret holding the service's SSH private key.
pub const KEY_SECRET: &str = "clusterkit-backup-ssh";
/// Where the task finds that key.
pub const KEY_IN_TASK: &str = "/run/secrets/clusterkit-backup-ssh";
/// Where the task finds the key that seals its backups
/// ([`crate::backup::SealKey`], from the Swarm secret [`seal_secret`] names).
pub const SEAL_IN_TASK: &str = "/run/secrets/clusterkit-backup-seal";
/// The start of the seal key's secret's name; [`seal_secret`] adds a hash.
pub const SEAL_SECRET_PREFIX: &str = "clusterkit-backup-seal-";

/// The Swarm secret holding `key` for the service: named after the key, so a
/// new key makes a new secret (secrets cannot be changed) and the service rolls.
pub fn seal_secret(key: &crate::backup::SealKey) -> String {
    format!(
        "{SEAL_SECRET_PREFIX}{}",
        crate::names::content_hash(&key.to_hex())
    )
}

/// `image` pinned by its registry digest, `REPO@sha256:…`, when the
/// manager's engine knows one (`repo_digests`: `docker image inspect`'s
/// `RepoDigests`, one a line); else as given (an image built or loaded
/// locally has none). A line that is not a digest of this repository is
/// passed over (it comes from a server).
pub fn pinned(image: &str, repo_digests: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    let repo = match image.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => image,
    };
    let names = [
        repo.to_string(),
        format!("docker.io/library/{repo}"),
        format!("docker.io/{repo}"),
    ];
    repo_digests
        .lines()
        .filter_map(|l| l.trim().split_once("@sha256:"))
        .find(|(r, hex)| {
            names.iter().any(|n| n == r)
                && hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .map_or_else(
            || image.to_string(),
            |(_, hex)| format!("{repo}@sha256:{hex}"),
        )
}

/// Whether `name` (read from a service's labels) is a name [`seal_secret`] makes.
pub fn is_seal_secret(name: &str) -> bool {
    name.strip_prefix(SEAL_SECRET_PREFIX).is_some_and(|h| {
        h.len() == 8
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// Where the task finds its [`Runner`] document.
pub const RUNNER_IN_TASK: &str = "/etc/clusterkit/runner.json";
/// The clusterkit executable on each manager, mounted read-only in the task.
pub const BINARY: &str = "/usr/local/lib/clusterkit/clusterkit";
/// The stack's directory on the manager that deploys it.
pub const DIR: &str = "/etc/clusterkit/backup-schedule";
/// The image the task runs in unless told: it only needs the C library
/// clusterkit was built against (Debian 12's or newer).
pub const DEFAULT_IMAGE: &str = "debian:bookworm-slim";
/// The shortest period accepted: a backup stops a manager's engine briefly.
pub const MIN_EVERY: Duration = Duration::from_secs(10 * 60);
/// How long the task waits after a failed backup before it tries again.
pub const RETRY: Duration = Duration::from_secs(10 * 60);

/// The service labels that carry a [`Schedule`], so that `up` and `restore`
/// can set the same schedule again.
pub mod labels {
    /// The period, as written (`6h`).
    pub const EVERY: &str = "io.clusterkit.backup.every";
    /// The destinations, space-separated.
    pub const TO: &str = "io.clusterkit.backup.to";
    /// The image, as given.
    pub const IMAGE: &str = "io.clusterkit.backup.image";
    /// The service's SSH public key (OpenSSH format).
    pub const PUBLIC_KEY: &str = "io.clusterkit.backup.public-key";
    /// The Swarm secret holding the key that seals its backups.
    pub const SEAL: &str = "io.clusterkit.backup.seal";
}

/// What `backup --schedule` sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The period, as written (`6h`, `1d`).
    pub every: String,
    /// Destinations: `s3://BUCKET/PREFIX` on the cluster's S3.
    pub to: Vec<String>,
    /// The image the task runs in.
    pub image: String,
}

impl Schedule {
    /// The period.
    pub fn period(&self) -> Duration {
        parse_every(&self.every).unwrap_or(MIN_EVERY)
    }
}

/// What the task reads: the cluster as seen from inside the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    /// The schedule.
    pub schedule: Schedule,
    /// The cluster, each node reached at its mesh address with the
    /// service's key ([`runner_spec`]).
    pub spec: ClusterSpec,
    /// `known_hosts` lines for the mesh addresses.
    pub known_hosts: String,
    /// clusterkit's state file (copied into each backup).
    pub state: String,
}

/// Reads a period: a duration as `humantime` writes it (`30m`, `6h`, `1d`),
/// at least [`MIN_EVERY`].
pub fn parse_every(text: &str) -> Result<Duration, crate::Invalid> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a period ({e}): write e.g. `6h`, `1d` or `30m`, or `off`")
    })?;
    if d < MIN_EVERY {
        return Err((format!(
            "`{text}` is shorter than {}: each backup stops a manager's engine for a moment",
            humantime::format_duration(MIN_EVERY)
        ))
        .into());
    }
    Ok(d)
}

/// Checks destinations: the cluster's S3 only (a directory would be inside
/// the task, on whichever node it runs).
pub fn check_to(to: &[String]) -> Result<(), crate::Invalid> {
    for t in to {
        match crate::backup::Location::parse(t) {
            Ok(crate::backup::Location::S3 { .. }) => {}
            Ok(crate::backup::Location::Dir(_)) => {
                return Err((format!(
                "{t}: a scheduled backup is written to the cluster's S3 (s3://BUCKET/PREFIX): a \
                     directory would be inside the service's container; copy backups out with \
                     `clusterkit backup copy`"
            ))
                .into())
            }
            Err(e) => return Err((e.to_string()).into()),
        }
    }
    Ok(())
}

/// The cluster as the task reaches it: every node at its mesh address, on
/// its SSH port, with the service's key, without jump host.
pub fn runner_spec(spec: &ClusterSpec) -> ClusterSpec {
    let mut s = spec.clone();
    for n in &mut s.nodes {
        n.ssh.host = n.mesh_address.to_string();
        n.ssh.key = Some(KEY_IN_TASK.into());
        n.ssh.jump = None;
    }
    s.stacks.clear();
    s
}

/// The `authorized_keys` line for the service's key: usable from the mesh's
/// addresses only, and `restrict`ed to commands and the forwards a backup
/// uses (the S3 tunnel, the engine's socket): no terminal, agent, X11 or
/// `~/.ssh/rc`.
pub fn authorized_line(public_key: &str, spec: &ClusterSpec) -> String {
    format!(
        "restrict,port-forwarding,from=\"{}\" {} clusterkit-backup@{}",
        spec.mesh.cidr,
        public_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        spec.name
    )
}

/// `known_hosts` lines for a node's mesh address, from the host keys it
/// holds (`ssh_host_*_key.pub` lines, read over a checked connection).
pub fn known_hosts_lines(address: &str, port: u16, host_keys: &str) -> String {
    let host = if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    };
    host_keys
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            match (f.next(), f.next()) {
                (Some(kind), Some(key))
                    if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") =>
                {
                    Some(format!("{host} {kind} {key}\n"))
                }
                _ => None,
            }
        })
        .collect()
}

/// How long to wait before the next backup: zero when it is due (no backup
/// yet, or the newest is `every` old).
pub fn wait(newest: Option<SystemTime>, now: SystemTime, every: Duration) -> Duration {
    match newest {
        None => Duration::ZERO,
        Some(t) => {
            let age = now.duration_since(t).unwrap_or(Duration::ZERO);
            every.saturating_sub(age)
        }
    }
}

/// The stack: one replica on a manager, on the host's network (it speaks to
/// the nodes' mesh addresses), the executable mounted from the node, the
/// runner document as a Swarm config named by its content.
/// `runs` is the image the task runs: `schedule.image` pinned by digest
/// where known ([`pinned`]); the labels keep the image as given.
pub fn stack(
    schedule: &Schedule,
    runs: &str,
    public_key: &str,
    seal_secret: &str,
    runner_json: &str,
) -> StackFiles {
    let hash = {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(runner_json.as_bytes())[..6])
    };
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let compose = format!(
        "# Written by clusterkit (`backup --schedule`); changed by it only.\n\
version: \"3.8\"\n\
services:\n\
\x20 runner:\n\
\x20   image: {runs}\n\
\x20   entrypoint: [\"/usr/local/bin/clusterkit\"]\n\
\x20   command: [\"backup\", \"run-schedule\", \"--runner\", \"{RUNNER_IN_TASK}\"]\n\
\x20   environment:\n\
\x20     CLUSTERKIT_RUNNER_NODE: \"{{{{.Node.Hostname}}}}\"\n\
\x20     CLUSTERKIT_SSH_CONFIG: \"\"\n\
\x20   networks: [hostnet]\n\
\x20   volumes:\n\
\x20     - {{ type: bind, source: {BINARY}, target: /usr/local/bin/clusterkit, read_only: true }}\n\
\x20   secrets:\n\
\x20     - {{ source: backup-key, target: {KEY_SECRET}, mode: 0400 }}\n\
\x20     - {{ source: seal-key, target: {seal_target}, mode: 0400 }}\n\
\x20   configs:\n\
\x20     - {{ source: runner-{hash}, target: {RUNNER_IN_TASK}, mode: 0444 }}\n\
\x20   deploy:\n\
\x20     replicas: 1\n\
\x20     placement:\n\
\x20       constraints: [node.role == manager]\n\
\x20     restart_policy: {{ condition: any, delay: 30s }}\n\
\x20     labels:\n\
\x20       io.clusterkit.component: backup\n\
\x20       {every_l}: {every}\n\
\x20       {to_l}: {to}\n\
\x20       {image_l}: {image}\n\
\x20       {key_l}: {key}\n\
\x20       {seal_l}: {seal}\n\
networks:\n\
\x20 hostnet:\n\
\x20   external: true\n\
\x20   name: host\n\
secrets:\n\
\x20 backup-key:\n\
\x20   external: true\n\
\x20   name: {KEY_SECRET}\n\
\x20 seal-key:\n\
\x20   external: true\n\
\x20   name: {seal}\n\
configs:\n\
\x20 runner-{hash}:\n\
\x20   file: ./runner.json\n",
        image = q(&schedule.image),
        runs = q(runs),
        every_l = labels::EVERY,
        every = q(&schedule.every),
        to_l = labels::TO,
        to = q(&schedule.to.join(" ")),
        image_l = labels::IMAGE,
        key_l = labels::PUBLIC_KEY,
        key = q(public_key.trim()),
        seal_l = labels::SEAL,
        seal = q(seal_secret),
        seal_target = SEAL_IN_TASK.trim_start_matches("/run/secrets/"),
    );
    StackFiles {
        compose,
        files: vec![("runner.json".into(), runner_json.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_document_of_a_cluster_reads_back() {
        let spec = crate::spec::example(3);
        let r = Runner {
            schedule: Schedule {
                every: "6h".into(),
                to: vec!["s3://clusterkit/backups".into()],
                image: DEFAULT_IMAGE.into(),
            },
            spec: runner_spec(&spec),
            known_hosts: "10.0.0.1 ssh-ed25519 AAAA\n".into(),
            state: String::new(),
        };
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: Runner = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(!json.contains("PRIVATE KEY"));
    }

    #[test]
    fn periods_are_durations_of_ten_minutes_or_more() {
        assert_eq!(parse_every("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse_every(" 1d ").unwrap(), Duration::from_secs(86400));
        let e = parse_every("5m").unwrap_err();
        assert!(e.contains("shorter than 10m"), "{e}");
        let e = parse_every("daily").unwrap_err();
        assert!(e.contains("write e.g. `6h`"), "{e}");
    }

    #[test]
    fn scheduled_backups_go_to_the_clusters_s3_only() {
        assert!(check_to(&["s3://clusterkit/backups".into()]).is_ok());
        let e = check_to(&["/srv/backups".into()]).unwrap_err();
        assert!(e.contains("backup copy"), "{e}");
        let e = check_to(&["s3://X".into()]).unwrap_err();
        assert!(e.contains("not a bucket name"), "{e}");
    }

    #[test]
    fn the_runner_reaches_nodes_at_their_mesh_addresses_with_its_key() {
        let spec = crate::spec::example(3);
        let r = runner_spec(&spec);
        for (a, b) in spec.nodes.iter().zip(&r.nodes) {
            assert_eq!(b.ssh.host, a.mesh_address.to_string());
            assert_eq!(
                b.ssh.key.as_deref(),
                Some(std::path::Path::new(KEY_IN_TASK))
            );
            assert_eq!(b.ssh.port, a.ssh.port);
            assert!(b.ssh.jump.is_none());
        }
        // It survives the trip through the Swarm config.
        let json = serde_json::to_string(&r).unwrap();
        let back: ClusterSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_key_works_from_the_mesh_only_and_host_keys_are_per_address() {
        let spec = crate::spec::example(3);
        let l = authorized_line("ssh-ed25519 AAAAC3Nz comment@x\n", &spec);
        assert_eq!(
            l,
            format!(
                "restrict,port-forwarding,from=\"{}\" ssh-ed25519 AAAAC3Nz clusterkit-backup@{}",
                spec.mesh.cidr, spec.name
            )
        );
        let keys =
            "ssh-ed25519 AAAA1 root@node1\necdsa-sha2-nistp256 BBBB root@node1\n\nnot a key\n";
        assert_eq!(
            known_hosts_lines("10.0.0.1", 22, keys),
            "10.0.0.1 ssh-ed25519 AAAA1\n10.0.0.1 ecdsa-sha2-nistp256 BBBB\n"
        );
        assert_eq!(
            known_hosts_lines("10.0.0.1", 2222, "ssh-rsa CCCC\n"),
            "[10.0.0.1]:2222 ssh-rsa CCCC\n"
        );
    }

    #[test]
    fn a_backup_is_due_when_none_is_as_young_as_the_period() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100_000);
        let h = Duration::from_secs(3600);
        assert_eq!(wait(None, now, h), Duration::ZERO);
        assert_eq!(wait(Some(now - 2 * h), now, h), Duration::ZERO);
        assert_eq!(
            wait(Some(now - Duration::from_secs(600)), now, h),
            Duration::from_secs(3000)
        );
        // A clock behind the newest backup: a whole period to wait.
        assert_eq!(wait(Some(now + h), now, h), h);
    }

    #[test]
    fn the_image_is_pinned_by_a_digest_of_its_own_repository_only() {
        let d = |c: &str| c.repeat(64);
        assert_eq!(
            pinned(
                "debian:bookworm-slim",
                &format!("debian@sha256:{}\n", d("a"))
            ),
            format!("debian@sha256:{}", d("a"))
        );
        assert_eq!(
            pinned(
                "registry.local:5000/tools/ck:1",
                &format!("registry.local:5000/tools/ck@sha256:{}", d("b"))
            ),
            format!("registry.local:5000/tools/ck@sha256:{}", d("b"))
        );
        // Locally built (none), another repository's, or not a digest: as given.
        for digests in [
            String::new(),
            format!("ubuntu@sha256:{}", d("a")),
            "debian@sha256:abc".to_string(),
            format!("debian@sha256:{}", d("A")),
            format!("debian@sha256:{}\nimage: evil", "z".repeat(64)),
        ] {
            assert_eq!(
                pinned("debian:bookworm-slim", &digests),
                "debian:bookworm-slim",
                "{digests}"
            );
        }
        assert_eq!(
            pinned("registry.local:5000/ck", ""),
            "registry.local:5000/ck"
        );
        let at = format!("debian@sha256:{}", d("c"));
        assert_eq!(pinned(&at, ""), at);
    }

    #[test]
    fn the_stack_names_its_config_by_content_and_carries_the_schedule() {
        let s = Schedule {
            every: "6h".into(),
            to: vec!["s3://clusterkit/backups".into()],
            image: DEFAULT_IMAGE.into(),
        };
        let key = crate::backup::SealKey::from_hex(&"ab".repeat(32)).unwrap();
        let seal = seal_secret(&key);
        assert!(is_seal_secret(&seal), "{seal}");
        for bad in [
            "clusterkit-backup-seal-",
            "clusterkit-backup-seal-ABCDEF01",
            "x\ny: 1",
            "clusterkit-backup-seal-0123456789",
        ] {
            assert!(!is_seal_secret(bad), "{bad}");
        }
        let a = stack(&s, &s.image, "ssh-ed25519 AAAA", &seal, "{\"a\":1}");
        let b = stack(&s, &s.image, "ssh-ed25519 AAAA", &seal, "{\"a\":2}");
        let digest = format!("debian@sha256:{}", "ab".repeat(32));
        let pinned_stack = stack(&s, &digest, "ssh-ed25519 AAAA", &seal, "{\"a\":1}");
        assert!(pinned_stack
            .compose
            .contains(&format!("    image: \"{digest}\"\n")));
        assert!(pinned_stack
            .compose
            .contains("io.clusterkit.backup.image: \"debian:bookworm-slim\""));
        assert!(!a.compose.contains(&key.to_hex()));
        assert_ne!(a.compose, b.compose);
        assert_eq!(a.get("runner.json"), Some("{\"a\":1}"));
        insta::assert_snapshot!(a.compose);
    }
}
