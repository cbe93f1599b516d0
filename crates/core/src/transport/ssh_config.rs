//! `~/.ssh/config`, as operators have it: `HostName`, `User`, `Port`,
//! `IdentityFile` and `ProxyJump` of the `Host` blocks matching a node's
//! address fill in what the inventory left unsaid (the inventory's own values
//! win, as they do for Ansible, which passes them to ssh on its command line).
//! Parsed by the `ssh2-config` crate.

use std::path::Path;

use ssh2_config::{ParseRule, SshConfig};

use crate::spec::{Jump, SshTarget};

/// Reads an ssh client configuration; `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<SshConfig>, crate::Invalid> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err((format!("{}: {e}", path.display())).into()),
    };
    let mut reader = std::io::BufReader::new(file);
    SshConfig::default()
        .parse(&mut reader, ParseRule::ALLOW_UNKNOWN_FIELDS)
        .map(Some)
        .map_err(|e| crate::Invalid(format!("{}: {e}", path.display())))
}

/// Parses ssh client configuration text (tests, tools).
pub fn parse(text: &str) -> Result<SshConfig, crate::Invalid> {
    SshConfig::default()
        .parse(&mut text.as_bytes(), ParseRule::ALLOW_UNKNOWN_FIELDS)
        .map_err(|e| crate::Invalid(e.to_string()))
}

/// The target with what `cfg` says of its host filled in (pure).
pub fn apply(target: &SshTarget, cfg: &SshConfig) -> SshTarget {
    let p = cfg.query(&target.host);
    let mut t = target.clone();
    if let Some(h) = p.host_name.filter(|h| !h.is_empty()) {
        t.host = h;
    }
    if !target.user_given {
        if let Some(u) = p.user.filter(|u| !u.is_empty()) {
            t.user = u;
        }
    }
    if !target.port_given {
        if let Some(port) = p
            .port
            .and_then(|p| crate::names::Port::new(i64::from(p)).ok())
        {
            t.port = port;
        }
    }
    if t.key.is_none() {
        t.key = p.identity_file.and_then(|f| f.into_iter().next());
    }
    if t.jump.is_none() {
        t.jump = p
            .proxy_jump
            .and_then(|j| j.into_iter().next())
            .filter(|j| !j.eq_ignore_ascii_case("none"))
            .and_then(|j| Jump::parse(&j, &t.user).ok());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str) -> SshTarget {
        SshTarget {
            host: host.into(),
            port: crate::names::Port::new(22).unwrap(),
            user: "root".into(),
            key: None,
            become_: false,
            jump: None,
            user_given: false,
            port_given: false,
        }
    }

    #[test]
    fn host_blocks_fill_in_what_the_inventory_left_unsaid() {
        let cfg = parse(
            "Host db1\n  HostName 10.1.2.3\n  User admin\n  Port 2222\n  IdentityFile /keys/db\n  ProxyJump ops@bastion:2200\n\n\
             Host 10.9.*\n  User deploy\n\nHost *\n  ServerAliveInterval 30\n",
        )
        .unwrap();
        let t = apply(&target("db1"), &cfg);
        assert_eq!(t.host, "10.1.2.3");
        assert_eq!(t.user, "admin");
        assert_eq!(t.port.get(), 2222);
        assert_eq!(t.key.as_deref(), Some(Path::new("/keys/db")));
        let j = t.jump.unwrap();
        assert_eq!(
            (j.user.as_str(), j.host.as_str(), j.port.get()),
            ("ops", "bastion", 2200)
        );
        // The inventory's own user and port win.
        let mut given = target("db1");
        given.user = "root".into();
        given.user_given = true;
        given.port_given = true;
        let t = apply(&given, &cfg);
        assert_eq!((t.user.as_str(), t.port.get()), ("root", 22));
        // Patterns.
        assert_eq!(apply(&target("10.9.0.7"), &cfg).user, "deploy");
        assert_eq!(apply(&target("other"), &cfg), target("other"));
    }
}
