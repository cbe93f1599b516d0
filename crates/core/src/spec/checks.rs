//! The checks of values that reach a root shell, a file name or a rendered
//! file on the nodes (compose files, prometheus.yml, authorized_keys):
//! each says what is wrong with the value. [`super::build`] runs them on
//! every such value, so nothing a description says can add a command, a key
//! or a line. Values are still quoted (`crate::transport::Cmd::arg`) or
//! serialized where they are used: these checks are the first wall, not the
//! only one.
//!
//! Written by hand: the grammars are small (Docker's image reference, a
//! POSIX user name, a DNS label) and no well-kept crate checks them without
//! bringing a registry client with it.

use crate::names::{char_name, shown};

/// A cluster's name: it names the swarm's networks and stacks, the S3 prefix
/// of its backups and a comment in authorized_keys. A DNS label: lowercase
/// letters, digits and `-`, 1 to 63 characters, starting and ending with a
/// letter or digit.
pub fn cluster_name(s: &str) -> Result<String, crate::Invalid> {
    dns_label(s).map_err(|why| crate::Invalid(format!("cluster name `{}` {why}", shown(s))))
}

/// A stack's name: it names a Swarm stack and a directory on the managers.
/// A DNS label, as a cluster's name.
pub fn stack_name(s: &str) -> Result<String, crate::Invalid> {
    dns_label(s).map_err(|why| crate::Invalid(format!("stack name `{}` {why}", shown(s))))
}

fn dns_label(s: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 63 {
        return Err("is longer than 63 characters".into());
    }
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "contains {}: use lowercase letters, digits and `-`",
            char_name(c)
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or a digit".into());
    }
    Ok(s.to_string())
}

/// A container image reference, by Docker's grammar:
/// `[host[:port]/]path[:tag][@algorithm:hex]`, path components of lowercase
/// letters and digits joined by `.`, `_`, `__` or dashes.
pub fn image(s: &str) -> Result<String, crate::Invalid> {
    let bad = |why: &str| Err((format!("image `{}` {why}", shown(s))).into());
    if s.is_empty() {
        return bad("is empty");
    }
    if s.len() > 255 {
        return bad("is longer than 255 characters");
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return bad(&format!("contains {}", char_name(c)));
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return bad("has a digest that is not `sha256:` and 64 hex digits");
        }
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry's port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return bad("has a tag that is not 1 to 128 letters, digits, `_`, `.` or `-`");
        }
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    // The first part is a registry when it looks like a host (a `.` or a `:`, or `localhost`).
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        let host = parts.remove(0);
        let (h, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !host_ok || !port_ok {
            return bad("names a registry that is not a host name with an optional port");
        }
    }
    for p in &parts {
        if !path_component(p) {
            return bad(&format!(
                "has a path part `{}` that is not lowercase letters and digits joined by `.`, `_` or `-`",
                shown(p)
            ));
        }
    }
    Ok(s.to_string())
}

fn path_component(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or one or more `-`, between alphanumerics.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// The system directories a data path may not be, or be inside: clusterkit
/// `chmod`s its data path and `down --purge` removes it.
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/docker",
];

/// Directories a data path may be inside of, but not be.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib",
    "/var/log", "/var/tmp",
];

/// A directory on the nodes for data clusterkit owns: absolute, normalised
/// (no `.`, `..`, `//` or trailing `/`), of letters, digits, `.`, `_`, `-`
/// and `/`, and neither a system directory nor inside one.
pub fn data_path(s: &str) -> Result<String, crate::Invalid> {
    let bad = |why: String| Err((format!("storage.data_path `{}` {why}", shown(s))).into());
    if !s.starts_with('/') {
        return bad("must be an absolute path on the nodes".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c)))
    {
        return bad(format!(
            "contains {}: use letters, digits, `.`, `_`, `-` and `/`",
            char_name(c)
        ));
    }
    if s.len() > 1
        && (s.ends_with('/')
            || s.contains("//")
            || s.split('/').any(|part| part == "." || part == ".."))
    {
        return bad("is not normalised: no `.` or `..` parts, no `//`, no trailing `/`".into());
    }
    if SYSTEM_DIRS.contains(&s) {
        return bad("is a system directory: give one of clusterkit's own, such as /var/lib/clusterkit/storage".into());
    }
    if let Some(t) = SYSTEM_TREES
        .iter()
        .find(|t| s == **t || s.starts_with(&format!("{t}/")))
    {
        return bad(format!(
            "is in {t}, which belongs to the system: give a directory such as /var/lib/clusterkit/storage"
        ));
    }
    Ok(s.to_string())
}

/// An SSH user: a POSIX portable user name (letters, digits, `.`, `_`, `-`,
/// not starting with `-`), at most 32 characters.
pub fn ssh_user(s: &str) -> Result<String, crate::Invalid> {
    let bad = |why: String| Err((format!("SSH user `{}` {why}", shown(s))).into());
    if s.is_empty() {
        return bad("is empty".into());
    }
    if s.len() > 32 {
        return bad("is longer than 32 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return bad(format!(
            "contains {}: a user name has letters, digits, `.`, `_` and `-`",
            char_name(c)
        ));
    }
    if s.starts_with('-') {
        return bad("starts with `-`".into());
    }
    Ok(s.to_string())
}

/// A login written into a rendered file (Grafana's administrator): letters,
/// digits, `.`, `_`, `-` and `@`, 1 to 64 characters.
pub fn login(s: &str) -> Result<String, crate::Invalid> {
    if s.is_empty() || s.len() > 64 {
        return Err((format!("login `{}` must have 1 to 64 characters", shown(s))).into());
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-@".contains(*c)))
    {
        Some(c) => Err((format!(
            "login `{}` contains {}: use letters, digits, `.`, `_`, `-` and `@`",
            shown(s),
            char_name(c)
        ))
        .into()),
        None => Ok(s.to_string()),
    }
}

/// An https URL written into the ingress's configuration (an ACME CA's
/// directory): `https://`, a host, then only URL characters (no quote,
/// space, backslash or control character), at most 2048 characters.
pub fn https_url(s: &str) -> Result<(), crate::Invalid> {
    let bad = |why: &str| Err(format!("URL `{}` {why}", shown(s)).into());
    let Some(rest) = s.strip_prefix("https://") else {
        return bad("does not start with https:// (the CA is reached over TLS only)");
    };
    if s.len() > 2048 {
        return bad("is longer than 2048 characters");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return bad("has no host");
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&()*+,;=%".contains(*c)))
    {
        return bad(&format!("contains {}", char_name(c)));
    }
    Ok(())
}

/// A name the ingress serves and obtains a certificate for (a route's
/// host, `grafana_host`): lower-cased, a trailing dot dropped; else why
/// not, to follow the name (`is a wildcard ...`).
pub fn certificate_name(host: &str) -> Result<String, &'static str> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() || h.len() > 253 {
        return Err("not 1 to 253 characters");
    }
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Err("an address, not a name (no certificate is issued for it by HTTP-01)");
    }
    if h.starts_with("*.") {
        return Err("a wildcard (the HTTP-01 challenge cannot prove one)");
    }
    let labels: Vec<&str> = h.split('.').collect();
    if labels.len() < 2 {
        return Err("a single label (a public CA issues only for a name with a domain)");
    }
    for l in &labels {
        if l.is_empty() || l.len() > 63 {
            return Err("a label empty or longer than 63 characters");
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("a character other than letters, digits, `-` and `.`");
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err("a label starting or ending with `-`");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("an all-numeric last label");
    }
    Ok(h)
}

/// A contact address written into the ingress's configuration: one `@`,
/// a local part of letters, digits and `.!#$%&'*+/=?^_`{|}~-`, a domain of
/// DNS labels; at most 254 characters.
pub fn email(s: &str) -> Result<(), crate::Invalid> {
    let bad = |why: &str| Err(format!("address `{}` {why}", shown(s)).into());
    if s.len() > 254 {
        return bad("is longer than 254 characters");
    }
    let Some((local, domain)) = s.split_once('@') else {
        return bad("has no `@`");
    };
    if local.is_empty() || domain.is_empty() {
        return bad("needs a name before and a domain after `@`");
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(*c)))
    {
        return bad(&format!("contains {} before `@`", char_name(c)));
    }
    if !domain.contains('.') || !domain.split('.').all(crate::names::host_label_ok) {
        return bad("has a domain that is not a DNS name (letters, digits, `-`, dotted)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_urls_are_https_and_plain() {
        assert!(https_url("https://acme-v02.api.letsencrypt.org/directory").is_ok());
        assert!(https_url("https://172.29.253.250:14000/dir").is_ok());
        for (bad, why) in [
            ("http://ca.example/dir", "does not start with https://"),
            ("https:///dir", "has no host"),
            ("https://ca.example/dir\"", "contains"),
            ("https://ca.example/ dir", "contains"),
            ("https://ca.example/\ndir", "contains"),
        ] {
            let e = https_url(bad).unwrap_err().0;
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn contacts_are_addresses() {
        assert!(email("ops@example.com").is_ok());
        assert!(email("a.b+c@mail.example.org").is_ok());
        for bad in [
            "ops",
            "@example.com",
            "ops@",
            "ops@localhost",
            "o\"ps@example.com",
            "ops@exa mple.com",
            "ops@-x.example",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_dns_labels() {
        for ok in ["clusterkit", "ck-it-backup", "prod1", "a"] {
            assert_eq!(cluster_name(ok).as_deref(), Ok(ok));
        }
        for (bad, why) in [
            ("", "is empty"),
            ("Prod", "contains `P`"),
            ("a\nb", "contains a line break"),
            ("../../x", "contains `.`"),
            ("a b", "contains a space"),
            ("-a", "must start and end"),
            ("a_b", "contains `_`"),
        ] {
            let e = stack_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(cluster_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn images_follow_dockers_grammar() {
        for ok in [
            "clusterkit/garage:2.5.0",
            "prom/prometheus:v3.5.0",
            "gcr.io/cadvisor/cadvisor:v0.49.1",
            "localhost:5000/a/b_c__d.e-f:1",
            "registry.example.com:443/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "busybox",
            "my--image:latest",
        ] {
            assert_eq!(image(ok).as_deref(), Ok(ok), "{ok}");
        }
        for (bad, why) in [
            ("", "is empty"),
            (
                "prom/prometheus:v3\n    privileged: true",
                "contains a line break",
            ),
            ("Prom/prometheus", "path part `Prom`"),
            ("a b", "contains a space"),
            ("x:tag with space", "contains a space"),
            ("x:-bad", "tag"),
            ("x@sha256:123", "digest"),
            ("a/../b", "path part `..`"),
            ("$(id)", "path part"),
            ("host:99x/a", "registry"),
        ] {
            let e = image(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn data_paths_are_clusterkits_own() {
        for ok in [
            "/var/lib/clusterkit/storage",
            "/srv/ck",
            "/data",
            "/home/ck/data",
        ] {
            assert_eq!(data_path(ok).as_deref(), Ok(ok));
        }
        for (bad, why) in [
            ("srv/ck", "absolute"),
            ("/srv/ck; touch /tmp/x #", "contains `;`"),
            ("/", "system directory"),
            ("/var", "system directory"),
            ("/etc/ssh", "is in /etc"),
            ("/usr", "is in /usr"),
            ("/var/lib/docker/volumes", "is in /var/lib/docker"),
            ("/srv/../etc", "not normalised"),
            ("/srv//x", "not normalised"),
            ("/srv/x/", "not normalised"),
            ("/srv/$HOME", "contains `$`"),
            ("/srv/a\nb", "contains a line break"),
        ] {
            let e = data_path(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn users_and_logins_are_plain_names() {
        for ok in ["root", "ubuntu", "ops.team", "deploy_1", "a-b"] {
            assert_eq!(ssh_user(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "root;id",
            "$(id)",
            "a b",
            "-oProxyCommand=x",
            "r\noot",
            "`id`",
        ] {
            assert!(ssh_user(bad).is_err(), "{bad:?}");
        }
        assert!(login("admin").is_ok() && login("ops@example.com").is_ok());
        assert!(login("admin\n  GF_X: 1").is_err() && login("a'b").is_err());
    }

    #[test]
    fn errors_show_control_characters_escaped() {
        let e = cluster_name("a\nb").unwrap_err();
        assert!(e.starts_with("cluster name `a\\nb`"), "{e}");
    }
}
