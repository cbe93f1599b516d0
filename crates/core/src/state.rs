//! clusterkit's state directory, `.clusterkit/` beside the config: what must
//! stay stable between runs (mesh addresses). It never holds a secret.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diag::SpecError;

/// The name of the state directory, created beside the config or inventory.
pub const STATE_DIR: &str = ".clusterkit";

/// Creates a directory (and its parents) readable by its owner only: the state
/// directory holds known_hosts and, later, files that must not be world-readable.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Replaces `path` with `bytes` all at once (mode `mode`): a temporary file
/// of a unique name beside it, written and synced, then renamed over it,
/// and the directory synced. Two runs writing at once, or a run killed
/// midway, leave the old file or the new one, never half of one and never
/// each other's temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".clusterkit-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What `.clusterkit/state.toml` records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The mesh CIDR the addresses were allocated in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_cidr: Option<String>,
    /// Each node's mesh address, by node name.
    #[serde(default)]
    pub mesh_addresses: BTreeMap<String, Ipv4Addr>,
    /// Nodes removed by `clusterkit node remove`, with the mesh address each
    /// had: left out of the cluster even while the inventory still lists
    /// them, until `clusterkit node add`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed: BTreeMap<String, Ipv4Addr>,
    /// The storage's number of copies, fixed when the storage was made
    /// (Garage cannot change it on a running cluster): the default from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_replication: Option<u8>,
    /// The Docker Engine package (`docker.io`) version every node ran when
    /// clusterkit last saw them agree: the engine's pin when `[swarm]
    /// engine_version` is not set, so a node added later gets the same engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
}

impl State {
    /// The state file inside `dir` (the directory holding the config).
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(STATE_DIR).join("state.toml")
    }

    /// Reads a state file's text, checking the values that reach the nodes
    /// (node names, the engine's version): a state may come from a backup.
    pub fn parse(text: &str) -> Result<Self, crate::Invalid> {
        let state: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        for name in state.mesh_addresses.keys().chain(state.removed.keys()) {
            crate::names::NodeName::new(name)
                .map_err(|e| format!("node `{}`: {e}", crate::names::shown(name)))?;
        }
        if let Some(v) = &state.engine_version {
            let ok = |c: char| c.is_ascii_alphanumeric() || ".+~:-".contains(c);
            if v.is_empty() || v.len() > 64 || !v.chars().all(ok) {
                return Err((format!(
                    "engine_version `{}` is not a package version",
                    crate::names::shown(v)
                ))
                .into());
            }
        }
        Ok(state)
    }

    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| SpecError::Read {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{e}; the file is clusterkit's own: move it away to start afresh (mesh addresses may change)"),
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(SpecError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Records `version` as the `docker.io` the nodes run together, in the
    /// state file as saved (other fields as they are there); writes only
    /// when it changes.
    pub fn record_engine(path: &Path, version: &str) -> Result<(), SpecError> {
        let mut state = Self::load(path)?;
        if state.engine_version.as_deref() != Some(version) {
            state.engine_version = Some(version.to_string());
            state.save(path)?;
        }
        Ok(())
    }

    /// Writes the state file atomically ([`write_atomic`], mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), SpecError> {
        let err = |source| SpecError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir).map_err(err)?;
        }
        let text = format!(
            "# written by clusterkit: mesh addresses stay stable across runs.\n# no secrets here.\n{}",
            toml::to_string(self).expect("state serializes")
        );
        write_atomic(path, text.as_bytes(), 0o600).map_err(err)
    }
}
