//! Backups: what one holds (its [`Manifest`], with a SHA-256 per file) and
//! where it goes ([`Location`]: a directory of this machine or a bucket of the
//! cluster's S3). Pure: the capability crates make the files, the CLI moves them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name, written last: a backup without it is incomplete.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this version writes and reads.
pub const FORMAT: u32 = 1;

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

    /// Reads a manifest; `path` names it in errors.
    pub fn parse(path: &str, text: &[u8]) -> Result<Self, BackupError> {
        let m: Self = serde_json::from_slice(text).map_err(|e| BackupError::Manifest {
            path: path.into(),
            why: format!("not a clusterkit backup manifest: {e}"),
        })?;
        if m.format != FORMAT {
            return Err(BackupError::Manifest {
                path: path.into(),
                why: format!(
                    "format {} (written by clusterkit {}); this clusterkit reads format {FORMAT}: \
                     restore with the version that wrote it",
                    m.format, m.clusterkit
                ),
            });
        }
        Ok(m)
    }

    /// The manifest as written (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        v.push(b'\n');
        v
    }
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
        let mut m = Manifest::new("c", "t", "node2");
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

    #[test]
    fn stamps_sort_by_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(stamp(t), "20270115T080000Z");
        assert_eq!(rfc3339(t), "2027-01-15T08:00:00Z");
    }
}
