//! Small types that validate on construction.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A node's name: what the inventory calls the host, used as its hostname in
/// the mesh and in the swarm.
///
/// Letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most
/// 63 characters.
///
/// ```
/// use clusterkit_core::NodeName;
/// assert!(NodeName::new("node1").is_ok());
/// assert!(NodeName::new("-bad").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(Arc<str>);

impl TryFrom<String> for NodeName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0.to_string()
    }
}

impl NodeName {
    /// Checks and wraps a name; the error says what is wrong with it.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        match name.chars().next() {
            None => Err("a node name cannot be empty".into()),
            Some(c) if !c.is_ascii_alphanumeric() => Err(format!(
                "node name `{name}` must start with a letter or a digit"
            )),
            _ if name.len() > 63 => Err(format!("node name `{name}` is longer than 63 characters")),
            _ => match name.chars().find(|c| !ok_char(*c)) {
                Some(c) => Err(format!(
                    "node name `{name}` contains `{c}`: use letters, digits, `-`, `_` and `.`"
                )),
                None => Ok(Self(Arc::from(name))),
            },
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP or UDP port, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Port(u16);

impl TryFrom<u16> for Port {
    type Error = String;
    fn try_from(n: u16) -> Result<Self, String> {
        Self::new(i64::from(n))
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl Port {
    /// Parses a port from text: a number from 1 to 65535.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().parse::<u32>() {
            Ok(n) => Self::new(n.min(u32::from(u16::MAX) + 1) as i64),
            Err(_) => Err(format!("`{text}` is not a port number (1 to 65535)")),
        }
    }

    /// Checks a port number.
    pub fn new(n: i64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Self(p)),
            _ => Err(format!("{n} is not a port number (1 to 65535)")),
        }
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Checks that `host` is an IP address or a DNS host name, as an SSH target must be.
pub fn check_address(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(())
    } else if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        Err(format!("`{host}` is not a valid IPv4 address"))
    } else {
        Err(format!("`{host}` is neither an IP address nor a host name"))
    }
}

/// A short hash (8 hex digits) of `text`, for naming Swarm configs by their
/// content: configs cannot be updated, so a changed file gets a new name and
/// the service using it rolls.
pub fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}
