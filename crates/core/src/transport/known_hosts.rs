//! clusterkit's own known_hosts file (OpenSSH format) in the state directory.
//! Lookups and recording use russh's known_hosts functions.

use std::path::Path;
use std::sync::Mutex;

use russh::keys::ssh_key::HashAlg;
use russh::keys::PublicKey;

/// How unknown host keys are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Record a host's key at first contact and print its fingerprint (trust on first use).
    #[default]
    AcceptNew,
    /// Refuse hosts whose key is not recorded yet.
    Strict,
}

/// What checking a host key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The recorded key matches.
    Known,
    /// No key was recorded; it has been recorded now (policy AcceptNew).
    Learned {
        /// Its fingerprint.
        fingerprint: String,
    },
    /// No key was recorded and the policy is strict.
    Unknown {
        /// Its fingerprint.
        fingerprint: String,
    },
    /// A different key is recorded.
    Changed {
        /// The recorded key's fingerprint.
        old: String,
        /// The key shown now.
        new: String,
    },
}

/// The SHA-256 fingerprint, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A key's fingerprint and type, as messages show it: `SHA256:… (ssh-ed25519)`.
pub fn describe(key: &PublicKey) -> String {
    format!("{} ({})", fingerprint(key), key.algorithm().as_str())
}

/// The keys recorded for `host:port` in `path` (none when the file does not exist).
pub fn recorded(path: &Path, host: &str, port: u16) -> Result<Vec<PublicKey>, crate::Invalid> {
    russh::keys::known_hosts::known_host_keys_path(host, port, path)
        .map(|keys| keys.into_iter().map(|(_, k)| k).collect())
        .map_err(|e| crate::Invalid(format!("reading {}: {e}", path.display())))
}

/// The host-key algorithms to offer `host:port`: every one russh knows,
/// those of the recorded keys first, so that a server holding a key of
/// several types shows the recorded one (and any other is a changed key).
pub fn preferred_algorithms(recorded: &[PublicKey]) -> Vec<russh::keys::Algorithm> {
    let all = russh::Preferred::DEFAULT.key.to_vec();
    let family = |a: &russh::keys::Algorithm, b: &russh::keys::Algorithm| {
        a == b || (a.clone().is_rsa() && b.clone().is_rsa())
    };
    let (mut first, rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|a| recorded.iter().any(|k| family(a, &k.algorithm())));
    first.extend(rest);
    first
}

// Several nodes may record their keys at once: one writer at a time.
static WRITE: Mutex<()> = Mutex::new(());

/// Checks `key` for `host:port` against `path`, recording it when unknown and
/// the policy allows.
pub fn check(
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
    policy: HostKeyPolicy,
) -> Result<HostKeyCheck, String> {
    let _guard = WRITE.lock().unwrap_or_else(|e| e.into_inner());
    let recorded = recorded(path, host, port)?;
    // A recorded key binds the host, whatever its algorithm: a node (or a
    // man in the middle) offering a key of another type is not a first
    // contact but a changed key.
    if recorded.iter().any(|k| k.key_data() == key.key_data()) {
        return Ok(HostKeyCheck::Known);
    }
    if !recorded.is_empty() {
        return Ok(HostKeyCheck::Changed {
            old: recorded.iter().map(describe).collect::<Vec<_>>().join(", "),
            new: describe(key),
        });
    }
    if policy == HostKeyPolicy::Strict {
        return Ok(HostKeyCheck::Unknown {
            fingerprint: fingerprint(key),
        });
    }
    if let Some(dir) = path.parent() {
        crate::state::ensure_private_dir(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let openssh = key
        .to_openssh()
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    // Algorithm and key, without the comment a server may not send.
    let bare: Vec<&str> = openssh.split_whitespace().take(2).collect();
    text.push_str(&format!("{} {}\n", host_field(host, port), bare.join(" ")));
    crate::state::write_atomic(path, text.as_bytes(), 0o600)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(HostKeyCheck::Learned {
        fingerprint: fingerprint(key),
    })
}

/// Removes every recorded key of `host:port`; returns how many lines went.
pub fn forget(path: &Path, host: &str, port: u16) -> std::io::Result<usize> {
    let _guard = WRITE.lock().unwrap_or_else(|e| e.into_inner());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let name = host_field(host, port);
    let mut removed = 0;
    let kept: String = text
        .lines()
        .filter(|l| {
            let hit = l
                .split_whitespace()
                .next()
                .is_some_and(|hosts| hosts.split(',').any(|h| h == name));
            removed += usize::from(hit);
            !hit
        })
        .map(|l| format!("{l}\n"))
        .collect();
    crate::state::write_atomic(path, kept.as_bytes(), 0o600)?;
    Ok(removed)
}

/// How known_hosts names `host:port`: the host alone on port 22, else `[host]:port`.
fn host_field(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}
