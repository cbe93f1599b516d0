//! Bringing a cluster back from a backup directory onto nodes outside any
//! swarm, in two steps around the caller's reload of the description:
//! [`check`] reads the backup and checks every file of it (nothing touched),
//! [`put_state`] puts its clusterkit state in place; the caller then loads
//! the description again (the mesh addresses and the storage's copies as
//! they were) and brings the nodes back with it.

use std::path::{Path, PathBuf};

use clusterkit_core::backup::{Location, Manifest, STATE_FILE as STATE};
use clusterkit_core::spec::Loaded;

use crate::backup::{read_dir, seal_key, Files};
use crate::OpsError;

/// A backup read from a directory, every file checked against its manifest
/// (and its seal, unless asked otherwise), archives read member by member.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    files: Files,
}

impl Checked {
    /// One of its files, by name (`swarm.tar.gz`...).
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// Reads the backup at `from` (a directory of this machine) for the cluster
/// of `loaded`, its seal checked with this machine's key unless `unsealed`.
/// Nothing is touched.
pub fn check(loaded: &Loaded, from: &str, unsealed: bool) -> Result<Checked, OpsError> {
    let dir = match Location::parse(from)? {
        Location::Dir(d) => d,
        Location::S3 { .. } => {
            return Err(OpsError::Refused(format!(
                "{from}: restore reads a directory of this machine (the cluster's own S3 is rebuilt after the swarm): \
                 take backups with `--to DIR` too, or copy one out of the bucket first"
            )))
        }
    };
    let key = if unsealed {
        None
    } else {
        Some(seal_key(loaded)?)
    };
    let (manifest, files) = read_dir(&dir, key.as_ref())?;
    let spec = &loaded.built.spec;
    if manifest.cluster != spec.name.as_str() {
        return Err(OpsError::Refused(format!(
            "{}: a backup of cluster `{}`, and this description is of cluster `{}`: restore it with that \
             cluster's description (or set `name = \"{}\"` in clusterkit.toml)",
            dir.display(),
            manifest.cluster,
            spec.name,
            manifest.cluster
        )));
    }
    let checked = Checked {
        dir,
        manifest,
        files,
    };
    if checked.file(clusterkit_core::backup::SWARM_FILE).is_none() {
        return Err(OpsError::Refused(format!(
            "{}: no {} in this backup",
            checked.dir.display(),
            clusterkit_core::backup::SWARM_FILE
        )));
    }
    Ok(checked)
}

/// Puts the backup's clusterkit state (if it holds one) in place of the
/// state file of `loaded`. A different local one is kept beside it; its
/// path is returned. Load the description again afterwards.
pub fn put_state(loaded: &Loaded, backup: &Checked) -> Result<Option<PathBuf>, OpsError> {
    match backup.file(STATE) {
        Some(state) => put_state_file(&loaded.state_path, state),
        None => Ok(None),
    }
}

fn put_state_file(path: &Path, state: &[u8]) -> Result<Option<PathBuf>, OpsError> {
    let local = |what: String| move |source| OpsError::Local { what, source };
    let current = std::fs::read(path).ok();
    if current.as_deref() == Some(state) {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        clusterkit_core::state::ensure_private_dir(dir)
            .map_err(local(format!("creating {}", dir.display())))?;
    }
    let mut kept = None;
    if current.is_some() {
        let keep = path.with_extension("toml.before-restore");
        std::fs::rename(path, &keep).map_err(local(format!("keeping {}", keep.display())))?;
        kept = Some(keep);
    }
    std::fs::write(path, state).map_err(local(format!("writing {}", path.display())))?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_state_is_kept_beside_the_restored_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".clusterkit").join("state.toml");
        assert_eq!(put_state_file(&path, b"a = 1\n").unwrap(), None);
        assert_eq!(std::fs::read(&path).unwrap(), b"a = 1\n");
        assert_eq!(put_state_file(&path, b"a = 1\n").unwrap(), None);
        assert!(!path.with_extension("toml.before-restore").exists());
        let kept = put_state_file(&path, b"a = 2\n").unwrap();
        assert_eq!(kept, Some(path.with_extension("toml.before-restore")));
        assert_eq!(std::fs::read(&path).unwrap(), b"a = 2\n");
        assert_eq!(
            std::fs::read(path.with_extension("toml.before-restore")).unwrap(),
            b"a = 1\n"
        );
    }
}
