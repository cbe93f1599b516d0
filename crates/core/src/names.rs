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
    type Error = crate::Invalid;
    fn try_from(s: String) -> Result<Self, crate::Invalid> {
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
    pub fn new(name: &str) -> Result<Self, crate::Invalid> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        match name.chars().next() {
            None => Err("a node name cannot be empty".into()),
            Some(c) if !c.is_ascii_alphanumeric() => Err((format!(
                "node name `{}` must start with a letter or a digit",
                shown(name)
            ))
            .into()),
            _ if name.len() > 63 => {
                Err((format!("node name `{}` is longer than 63 characters", shown(name))).into())
            }
            _ => match name.chars().find(|c| !ok_char(*c)) {
                Some(c) => Err((format!(
                    "node name `{}` contains {}: use letters, digits, `-`, `_` and `.`",
                    shown(name),
                    char_name(c)
                ))
                .into()),
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
    type Error = crate::Invalid;
    fn try_from(n: u16) -> Result<Self, crate::Invalid> {
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
    pub fn parse(text: &str) -> Result<Self, crate::Invalid> {
        match text.trim().parse::<u32>() {
            Ok(n) if n <= u32::from(u16::MAX) => Self::new(i64::from(n)),
            _ => {
                Err((format!("`{}` is not a port number (1 to 65535)", shown(text.trim()))).into())
            }
        }
    }

    /// Checks a port number.
    pub fn new(n: i64) -> Result<Self, crate::Invalid> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Self(p)),
            _ => Err((format!("{n} is not a port number (1 to 65535)")).into()),
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

/// A node's address on the WireGuard mesh: an IPv4 address inside the
/// mesh's network, allocated once and kept while the node stays
/// ([`crate::alloc`]). Not the address clusterkit reaches the node at
/// ([`crate::spec::SshTarget::host`]): services bind to this one.
///
/// ```
/// use clusterkit_core::MeshAddr;
/// let a: MeshAddr = "10.0.0.3".parse().unwrap();
/// assert_eq!(a.to_string(), "10.0.0.3");
/// assert_eq!(a.ip().octets()[3], 3);
/// assert!("10.0.0".parse::<MeshAddr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshAddr(std::net::Ipv4Addr);

impl MeshAddr {
    /// The mesh address `ip`.
    pub const fn new(ip: std::net::Ipv4Addr) -> Self {
        Self(ip)
    }

    /// The IPv4 address.
    pub const fn ip(self) -> std::net::Ipv4Addr {
        self.0
    }
}

impl From<std::net::Ipv4Addr> for MeshAddr {
    fn from(ip: std::net::Ipv4Addr) -> Self {
        Self(ip)
    }
}

impl From<MeshAddr> for std::net::Ipv4Addr {
    fn from(a: MeshAddr) -> Self {
        a.0
    }
}

impl std::str::FromStr for MeshAddr {
    type Err = crate::Invalid;
    fn from_str(s: &str) -> Result<Self, crate::Invalid> {
        s.parse().map(Self).map_err(|_| {
            crate::Invalid(format!(
                "mesh address `{}` is not an IPv4 address",
                shown(s)
            ))
        })
    }
}

impl fmt::Display for MeshAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One label of a DNS host name (RFC 1123): 1 to 63 letters, digits and
/// `-`, not starting or ending with `-`.
pub(crate) fn host_label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Checks that `host` is an IP address or a DNS host name, as an SSH target must be.
pub fn check_address(host: &str) -> Result<(), crate::Invalid> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = host_label_ok;
    // All digits and dots: meant as an IPv4 address, and not one (999.1.1.1);
    // a host name's last label is never all digits (RFC 1123, 3696).
    if host.chars().all(|c| c.is_ascii_digit() || c == '.')
        || host
            .rsplit('.')
            .next()
            .is_some_and(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
    {
        return Err((format!("`{}` is not a valid IPv4 address", shown(host))).into());
    }
    if !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err((format!("`{}` is neither an IP address nor a host name", shown(host))).into())
    }
}

/// A short hash (8 hex digits) of `text`, for naming Swarm configs by their
/// content: configs cannot be updated, so a changed file gets a new name and
/// the service using it rolls.
pub fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}

/// `host:port` as addresses are written (an endpoint, an SSH target, a
/// message): an IPv6 address in brackets, `[2001:db8::1]:22`.
///
/// ```
/// assert_eq!(clusterkit_core::names::host_port("2001:db8::1", 22), "[2001:db8::1]:22");
/// assert_eq!(clusterkit_core::names::host_port("10.0.0.1", 22), "10.0.0.1:22");
/// ```
pub fn host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A value as an error shows it: control characters escaped, cut at 60.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).flat_map(char::escape_debug).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

pub(crate) fn char_name(c: char) -> String {
    match c {
        '\n' => "a line break".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        c if c.is_control() => format!("the control character {}", c.escape_unicode()),
        c => format!("`{c}`"),
    }
}
