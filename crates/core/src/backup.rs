//! Backups: what one holds (its [`Manifest`], with a SHA-256 per file), where
//! it goes ([`Location`]: a directory of this machine or a bucket of the
//! cluster's S3), and why a backup read back can be trusted: the manifest is
//! sealed with a key kept off the cluster ([`SealKey`], HMAC-SHA-256), it may
//! name only the files a backup holds ([`KNOWN_FILES`]), and every archive
//! is read member by member before it reaches a node ([`check_archive`]).
//! Anyone who can write the cluster's S3 can write a backup there; only the
//! holder of the seal key can make one that `restore` accepts. The capability
//! crates make the files, the CLI moves them.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name, written last: a backup without it is incomplete.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's seal (HMAC-SHA-256 of its bytes), written just before it.
pub const SEAL: &str = "manifest.seal";
/// The manifest format this version writes and reads.
pub const FORMAT: u32 = 1;

/// The swarm's state: `swarm/` of `/var/lib/docker` on one manager.
pub const SWARM_FILE: &str = "swarm.tar.gz";
/// A Prometheus snapshot.
pub const PROMETHEUS_FILE: &str = "prometheus.tar.gz";
/// Grafana's data directory.
pub const GRAFANA_FILE: &str = "grafana.tar.gz";
/// clusterkit's state file.
pub const STATE_FILE: &str = "state.toml";
/// Every file a backup may hold: a manifest naming any other is refused.
pub const KNOWN_FILES: &[&str] = &[SWARM_FILE, PROMETHEUS_FILE, GRAFANA_FILE, STATE_FILE];

/// The seal key's file in the state directory.
pub const SEAL_KEY_FILE: &str = "backup-seal.key";

/// Errors reading or checking a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination or source is malformed.
    #[error("{given}: {why}")]
    Location {
        /// What was given.
        given: String,
        /// What is wrong and how to write it.
        why: String,
    },
    /// The manifest cannot be used.
    #[error("{path}: {why}")]
    Manifest {
        /// Where it was read.
        path: String,
        /// Why.
        why: String,
    },
    /// A file differs from what the manifest says.
    #[error("{file}: {why}: the backup is damaged or incomplete; use another one")]
    Damaged {
        /// The file.
        file: String,
        /// What differs.
        why: String,
    },
}

/// Where a backup is written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine.
    Dir(PathBuf),
    /// A bucket (and a key prefix) on the cluster's S3.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl Location {
    /// Reads `s3://bucket/prefix` or a directory path.
    pub fn parse(given: &str) -> Result<Self, BackupError> {
        let Some(rest) = given.strip_prefix("s3://") else {
            if given.contains("://") {
                return Err(BackupError::Location {
                    given: given.into(),
                    why:
                        "only s3://BUCKET/PREFIX (the cluster's S3) or a directory of this machine"
                            .into(),
                });
            }
            if given.is_empty() {
                return Err(BackupError::Location {
                    given: given.into(),
                    why: "empty: give a directory or s3://BUCKET/PREFIX".into(),
                });
            }
            return Ok(Self::Dir(PathBuf::from(given)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Err(BackupError::Location {
                given: given.into(),
                why: format!(
                    "`{bucket}` is not a bucket name (3 to 63 lower-case letters, digits, `-` or `.`): \
                     write s3://BUCKET/PREFIX, e.g. s3://clusterkit/backups"
                ),
            });
        }
        Ok(Self::S3 {
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
        })
    }

    /// The same location, one level down (`name` inside it).
    pub fn join(&self, name: &str) -> Self {
        match self {
            Self::Dir(d) => Self::Dir(d.join(name)),
            Self::S3 { bucket, prefix } => Self::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    name.into()
                } else {
                    format!("{prefix}/{name}")
                },
            },
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the backup.
    pub name: String,
    /// What it holds.
    pub what: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What a backup holds, written beside its files as `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format ([`FORMAT`]).
    pub format: u32,
    /// The clusterkit version that wrote it.
    pub clusterkit: String,
    /// The cluster's name.
    pub cluster: String,
    /// When it was taken (RFC 3339, UTC).
    pub created: String,
    /// The manager the swarm's state was read from.
    pub swarm_source: String,
    /// The nodes at the time, as `name mesh-address`.
    pub nodes: Vec<String>,
    /// The swarm's services, as `name (image)`.
    pub services: Vec<String>,
    /// The swarm's secrets, by name: their values are inside the swarm's
    /// state, encrypted by the swarm (see `secrets_note`).
    pub secrets: Vec<String>,
    /// How the secrets are kept.
    pub secrets_note: String,
    /// The swarm's configs, by name (Grafana's dashboards among them).
    pub configs: Vec<String>,
    /// The files, each with its checksum.
    pub files: Vec<FileEntry>,
    /// What a backup leaves out, and why.
    pub excluded: Vec<String>,
}

/// SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Manifest {
    /// A manifest of this format and version, with nothing listed yet.
    pub fn new(cluster: &str, created: &str, swarm_source: &str) -> Self {
        Self {
            format: FORMAT,
            clusterkit: env!("CARGO_PKG_VERSION").into(),
            cluster: cluster.into(),
            created: created.into(),
            swarm_source: swarm_source.into(),
            nodes: Vec::new(),
            services: Vec::new(),
            secrets: Vec::new(),
            secrets_note: String::new(),
            configs: Vec::new(),
            files: Vec::new(),
            excluded: Vec::new(),
        }
    }

    /// Records a file (its size and checksum).
    pub fn add(&mut self, name: &str, what: &str, bytes: &[u8]) {
        self.files.push(FileEntry {
            name: name.into(),
            what: what.into(),
            bytes: bytes.len() as u64,
            sha256: sha256(bytes),
        });
    }

    /// The entry for `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Checks `bytes` against the entry for `name`.
    pub fn verify(&self, name: &str, bytes: &[u8]) -> Result<(), BackupError> {
        let damaged = |why: String| BackupError::Damaged {
            file: name.into(),
            why,
        };
        let f = self
            .file(name)
            .ok_or_else(|| damaged("not listed in the manifest".into()))?;
        if f.bytes != bytes.len() as u64 {
            return Err(damaged(format!(
                "{} bytes, the manifest says {}",
                bytes.len(),
                f.bytes
            )));
        }
        let sum = sha256(bytes);
        if sum != f.sha256 {
            return Err(damaged(format!(
                "SHA-256 {sum}, the manifest says {}",
                f.sha256
            )));
        }
        Ok(())
    }

    /// Reads a manifest and checks every value in it that reaches a file
    /// name, a path or a message: the cluster's name (a DNS label), the
    /// swarm's source (a node name), the files (known names, once each, a
    /// SHA-256 each). `path` names it in errors.
    pub fn parse(path: &str, text: &[u8]) -> Result<Self, BackupError> {
        let bad = |why: String| BackupError::Manifest {
            path: path.into(),
            why,
        };
        let m: Self = serde_json::from_slice(text)
            .map_err(|e| bad(format!("not a clusterkit backup manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(bad(format!(
                "format {} (written by clusterkit {}); this clusterkit reads format {FORMAT}: \
                 restore with the version that wrote it",
                m.format,
                crate::names::shown(&m.clusterkit)
            )));
        }
        crate::spec::checks::cluster_name(&m.cluster).map_err(|e| bad(e.into()))?;
        crate::names::NodeName::new(&m.swarm_source)
            .map_err(|e| bad(format!("swarm source: {e}")))?;
        humantime::parse_rfc3339(&m.created).map_err(|e| {
            bad(format!(
                "created `{}`: {e}",
                crate::names::shown(&m.created)
            ))
        })?;
        let mut seen = std::collections::BTreeSet::new();
        for f in &m.files {
            if !KNOWN_FILES.contains(&f.name.as_str()) {
                return Err(bad(format!(
                    "lists a file `{}`: a backup holds only {}",
                    crate::names::shown(&f.name),
                    KNOWN_FILES.join(", ")
                )));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(bad(format!("lists `{}` twice", f.name)));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "`{}`: its SHA-256 is not 64 hex digits",
                    f.name
                )));
            }
        }
        Ok(m)
    }

    /// Reads a sealed manifest: the seal is checked with `key` first, then
    /// the manifest as [`Manifest::parse`] does.
    pub fn open(
        path: &str,
        text: &[u8],
        seal: Option<&[u8]>,
        key: &SealKey,
    ) -> Result<Self, BackupError> {
        let seal = seal.ok_or_else(|| BackupError::Manifest {
            path: path.into(),
            why: format!(
                "no {SEAL} beside it: an unsealed backup (taken by another tool or an older clusterkit, or \
                 tampered with) is not restored"
            ),
        })?;
        key.check(text, seal).map_err(|why| BackupError::Manifest {
            path: path.into(),
            why: why.into(),
        })?;
        Self::parse(path, text)
    }

    /// The manifest as written (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        v.push(b'\n');
        v
    }
}

/// The key that seals backups: 32 random bytes, kept in the operator's state
/// directory ([`SEAL_KEY_FILE`], mode 0600) and given to the scheduled
/// backup's service as a Swarm secret; never written into a backup. Its
/// `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

type HmacSha256 = hmac::Hmac<Sha256>;

impl SealKey {
    /// A new key from the system's random source.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the system's random source answers");
        Self(k)
    }

    /// The key as its file holds it: 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads a key written by [`SealKey::to_hex`] (surrounding space ignored).
    pub fn from_hex(text: &str) -> Result<Self, crate::Invalid> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| "not a backup seal key (64 hex digits)".to_string())?;
        let k: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "not a backup seal key (64 hex digits)".to_string())?;
        Ok(Self(k))
    }

    /// The key in `dir` ([`SEAL_KEY_FILE`]), if there is one.
    pub fn load(dir: &Path) -> Result<Option<Self>, BackupError> {
        let path = dir.join(SEAL_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) => Self::from_hex(&t)
                .map(Some)
                .map_err(|why| BackupError::Manifest {
                    path: path.display().to_string(),
                    why: why.into(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BackupError::Manifest {
                path: path.display().to_string(),
                why: e.to_string(),
            }),
        }
    }

    /// The key in `dir`, made (mode 0600) when there is none yet; `true`
    /// when it was made now.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), BackupError> {
        if let Some(k) = Self::load(dir)? {
            return Ok((k, false));
        }
        let k = Self::generate();
        let path = dir.join(SEAL_KEY_FILE);
        crate::state::ensure_private_dir(dir)
            .and_then(|()| {
                crate::state::write_atomic(&path, format!("{}\n", k.to_hex()).as_bytes(), 0o600)
            })
            .map_err(|e| BackupError::Manifest {
                path: path.display().to_string(),
                why: e.to_string(),
            })?;
        Ok((k, true))
    }

    /// The seal of a manifest's bytes: `hmac-sha256 HEX` and a line break.
    pub fn seal(&self, manifest: &[u8]) -> Vec<u8> {
        use hmac::Mac;
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(manifest);
        format!("hmac-sha256 {}\n", hex::encode(mac.finalize().into_bytes())).into_bytes()
    }

    /// Checks a seal made by [`SealKey::seal`] (in constant time).
    pub fn check(&self, manifest: &[u8], seal: &[u8]) -> Result<(), crate::Invalid> {
        use hmac::Mac;
        let text = String::from_utf8_lossy(seal);
        let tag = text
            .trim()
            .strip_prefix("hmac-sha256 ")
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| format!("{SEAL} is not a seal of this clusterkit"))?;
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(manifest);
        mac.verify_slice(&tag).map_err(|_| {
            crate::Invalid(format!(
                "its seal does not match: it was changed after it was taken, or sealed with another key \
                 than this machine's {SEAL_KEY_FILE} (copy the key of the machine that took it into the \
                 state directory)"
            ))
        })
    }
}

/// What [`check_archive`] found in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveFacts {
    /// Members (files and directories).
    pub members: u64,
    /// Their bytes, unpacked.
    pub bytes: u64,
}

/// Reads a backup's archive (tar + gzip) member by member before anything
/// unpacks it as root on a node: only files and directories, each at a
/// relative path without `..` (under `swarm/` for [`SWARM_FILE`]), none
/// set-user-ID or set-group-ID; no links, devices or pipes.
pub fn check_archive(name: &str, bytes: &[u8]) -> Result<ArchiveFacts, BackupError> {
    let bad = |why: String| BackupError::Damaged {
        file: name.into(),
        why,
    };
    let mut facts = ArchiveFacts {
        members: 0,
        bytes: 0,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar.gz archive: {e}")))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| bad(format!("unreadable at member {}: {e}", facts.members + 1)))?;
        let header = entry.header();
        let path = entry
            .path()
            .map_err(|e| bad(format!("member {}: {e}", facts.members + 1)))?
            .into_owned();
        let shown = crate::names::shown(&path.to_string_lossy());
        let kind = header.entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(format!(
                "member `{shown}` is a {}: a backup's archives hold files and directories only",
                match kind {
                    tar::EntryType::Symlink => "symbolic link".to_string(),
                    tar::EntryType::Link => "hard link".to_string(),
                    tar::EntryType::Char | tar::EntryType::Block => "device".to_string(),
                    tar::EntryType::Fifo => "pipe".to_string(),
                    other => format!("{other:?} entry"),
                }
            )));
        }
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(bad(format!(
                "member `{shown}` leaves the directory it is unpacked in (an absolute path or `..`)"
            )));
        }
        let first = path.components().find(|c| *c != Component::CurDir);
        if name == SWARM_FILE && first.is_none_or(|c| c.as_os_str() != "swarm") {
            return Err(bad(format!(
                "member `{shown}` is outside `swarm/`: the swarm's archive holds its state only"
            )));
        }
        let mode = header.mode().unwrap_or(0);
        if mode & 0o6000 != 0 {
            return Err(bad(format!(
                "member `{shown}` is set-user-ID or set-group-ID (mode {mode:o})"
            )));
        }
        facts.members += 1;
        facts.bytes += header.size().unwrap_or(0);
    }
    Ok(facts)
}

/// A time as RFC 3339 to the second, UTC: `2026-11-26T04:30:00Z`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A backup's name from its time: `YYYYMMDDTHHMMSSZ`, sortable.
pub fn stamp(t: std::time::SystemTime) -> String {
    rfc3339(t).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_directories_and_the_clusters_s3() {
        assert_eq!(
            Location::parse("/srv/backups").unwrap(),
            Location::Dir("/srv/backups".into())
        );
        assert_eq!(
            Location::parse("s3://clusterkit/backups/").unwrap(),
            Location::S3 {
                bucket: "clusterkit".into(),
                prefix: "backups".into()
            }
        );
        assert_eq!(
            Location::parse("s3://clusterkit")
                .unwrap()
                .join("c1")
                .to_string(),
            "s3://clusterkit/c1"
        );
        let e = Location::parse("s3://My_Bucket/x").unwrap_err().to_string();
        assert!(e.contains("`My_Bucket` is not a bucket name"), "{e}");
        let e = Location::parse("https://example.org/b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only s3://"), "{e}");
    }

    #[test]
    fn a_file_must_match_its_manifest_entry() {
        let mut m = Manifest::new("c", "2026-11-26T04:30:00Z", "node2");
        m.add("swarm.tar.gz", "the swarm", b"abc");
        m.verify("swarm.tar.gz", b"abc").unwrap();
        let e = m.verify("swarm.tar.gz", b"abd").unwrap_err().to_string();
        assert!(e.starts_with("swarm.tar.gz: SHA-256 "), "{e}");
        assert!(e.contains("damaged or incomplete"), "{e}");
        let e = m.verify("swarm.tar.gz", b"ab").unwrap_err().to_string();
        assert!(e.contains("2 bytes, the manifest says 3"), "{e}");
        let e = m.verify("other", b"x").unwrap_err().to_string();
        assert!(e.contains("not listed"), "{e}");
        let back = Manifest::parse("m.json", &m.to_json()).unwrap();
        assert_eq!(back, m);
        let mut old = m.clone();
        old.format = 9;
        let e = Manifest::parse("m.json", &old.to_json())
            .unwrap_err()
            .to_string();
        assert!(e.contains("format 9"), "{e}");
    }

    /// A tar.gz of `(path, kind, mode, data)` written header by header, so
    /// that paths `tar::Builder` would refuse (`..`, absolute) can be made.
    type Member<'a> = (&'a str, tar::EntryType, u32, &'a [u8]);

    fn targz(members: &[Member]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (path, kind, mode, data) in members {
            let mut h = tar::Header::new_gnu();
            let name = &mut h.as_gnu_mut().unwrap().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            h.set_cksum();
            raw.extend_from_slice(h.as_bytes());
            raw.extend_from_slice(data);
            raw.resize(raw.len().div_ceil(512) * 512, 0);
        }
        raw.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};

    #[test]
    fn archives_hold_files_and_directories_where_they_belong_and_nothing_else() {
        let swarm = targz(&[
            ("swarm/", Directory, 0o700, b""),
            ("swarm/raft/wal-v3-encrypted/0.wal", Regular, 0o600, b"raft"),
            ("swarm/docker-state.json", Regular, 0o600, b"{}"),
        ]);
        assert_eq!(
            check_archive(SWARM_FILE, &swarm).unwrap(),
            ArchiveFacts {
                members: 3,
                bytes: 6
            }
        );
        let volume = targz(&[
            ("./", Directory, 0o755, b""),
            ("./grafana.db", Regular, 0o640, b"db"),
        ]);
        check_archive(GRAFANA_FILE, &volume).unwrap();
        let refused = |name: &str, members: &[Member]| {
            check_archive(name, &targz(members))
                .unwrap_err()
                .to_string()
        };
        let cases: Vec<(&str, Vec<Member>, &str)> = vec![
            (
                SWARM_FILE,
                vec![(
                    "swarm/../../etc/cron.d/x",
                    Regular,
                    0o644,
                    b"* * * * * root sh",
                )],
                "member `swarm/../../etc/cron.d/x` leaves the directory",
            ),
            (
                GRAFANA_FILE,
                vec![("/etc/cron.d/x", Regular, 0o644, b"x")],
                "member `/etc/cron.d/x` leaves the directory",
            ),
            (
                SWARM_FILE,
                vec![("volumes/x/_data/y", Regular, 0o644, b"x")],
                "member `volumes/x/_data/y` is outside `swarm/`",
            ),
            (
                SWARM_FILE,
                vec![("./", Directory, 0o755, b"")],
                "member `./` is outside `swarm/`",
            ),
            (
                GRAFANA_FILE,
                vec![("./x", Symlink, 0o777, b"")],
                "member `./x` is a symbolic link",
            ),
            (
                GRAFANA_FILE,
                vec![("./x", Link, 0o644, b"")],
                "member `./x` is a hard link",
            ),
            (
                PROMETHEUS_FILE,
                vec![("./sda", Block, 0o600, b"")],
                "member `./sda` is a device",
            ),
            (
                PROMETHEUS_FILE,
                vec![("./mem", Char, 0o600, b"")],
                "member `./mem` is a device",
            ),
            (
                PROMETHEUS_FILE,
                vec![("./p", Fifo, 0o600, b"")],
                "member `./p` is a pipe",
            ),
            (
                GRAFANA_FILE,
                vec![("./sh", Regular, 0o4755, b"x")],
                "member `./sh` is set-user-ID or set-group-ID (mode 4755)",
            ),
        ];
        for (name, members, expected) in cases {
            let e = refused(name, &members);
            assert!(
                e.starts_with(&format!("{name}: ")) && e.contains(expected),
                "{expected}: {e}"
            );
        }
        let e = check_archive(SWARM_FILE, b"not gzip")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unreadable") || e.contains("not a tar.gz"),
            "{e}"
        );
    }

    fn manifest_with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut m = Manifest::new("c1", "2026-11-26T04:30:00Z", "node2");
        m.add(SWARM_FILE, "state", b"raft");
        let mut v = serde_json::to_value(&m).unwrap();
        edit(&mut v);
        match Manifest::parse("m.json", &serde_json::to_vec(&v).unwrap()) {
            Ok(_) => "accepted".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_manifest_names_only_known_files_and_valid_names() {
        assert_eq!(manifest_with(|_| {}), "accepted");
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|v| v["files"][0]["name"] = "../../root/.ssh/authorized_keys".into()), "lists a file `../../root/.ssh/authorized_keys`: a backup holds only swarm.tar.gz, prometheus.tar.gz, grafana.tar.gz, state.toml"),
            (Box::new(|v| { let f = v["files"][0].clone(); v["files"].as_array_mut().unwrap().push(f); }), "lists `swarm.tar.gz` twice"),
            (Box::new(|v| v["files"][0]["sha256"] = "abc".into()), "its SHA-256 is not 64 hex digits"),
            (Box::new(|v| v["cluster"] = "prod\nevil".into()), "cluster name `prod\\nevil` contains a line break"),
            (Box::new(|v| v["cluster"] = "../x".into()), "cluster name `../x` contains `.`"),
            (Box::new(|v| v["swarm_source"] = "node2; rm -rf /".into()), "swarm source: "),
            (Box::new(|v| v["created"] = "yesterday".into()), "created `yesterday`"),
        ];
        for (edit, expected) in cases {
            let e = manifest_with(edit);
            assert!(
                e.starts_with("m.json: ") && e.contains(expected),
                "{expected}: {e}"
            );
        }
    }

    #[test]
    fn a_manifest_opens_only_with_its_seal_and_key() {
        let key = SealKey::generate();
        assert_eq!(format!("{key:?}"), "SealKey(<redacted>)");
        let mut m = Manifest::new("c1", "2026-11-26T04:30:00Z", "node2");
        m.add(SWARM_FILE, "state", b"raft");
        let text = m.to_json();
        let seal = key.seal(&text);
        assert!(String::from_utf8_lossy(&seal).starts_with("hmac-sha256 "));
        assert_eq!(
            Manifest::open("m.json", &text, Some(&seal), &key).unwrap(),
            m
        );
        // A byte changed: the checksum of a file replaced along with the file.
        let forged = String::from_utf8(text.clone())
            .unwrap()
            .replace(&m.files[0].sha256, &sha256(b"evil"));
        let e = Manifest::open("m.json", forged.as_bytes(), Some(&seal), &key)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("its seal does not match: it was changed after it was taken"),
            "{e}"
        );
        let e = Manifest::open("m.json", &text, Some(&seal), &SealKey::generate())
            .unwrap_err()
            .to_string();
        assert!(e.contains("its seal does not match"), "{e}");
        let e = Manifest::open("m.json", &text, None, &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no manifest.seal beside it"), "{e}");
        let e = Manifest::open("m.json", &text, Some(b"sha1 00"), &key)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("manifest.seal is not a seal of this clusterkit"),
            "{e}"
        );
    }

    #[test]
    fn the_seal_key_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".clusterkit");
        assert_eq!(SealKey::load(&dir).unwrap(), None);
        let (k, made) = SealKey::load_or_create(&dir).unwrap();
        assert!(made);
        let path = dir.join(SEAL_KEY_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, made) = SealKey::load_or_create(&dir).unwrap();
        assert!(!made);
        assert_eq!(again, k);
        std::fs::write(&path, "not hex").unwrap();
        let e = SealKey::load(&dir).unwrap_err().to_string();
        assert!(e.contains("not a backup seal key"), "{e}");
    }

    #[test]
    fn stamps_sort_by_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(stamp(t), "20270115T080000Z");
        assert_eq!(rfc3339(t), "2027-01-15T08:00:00Z");
    }
}
