//! Routes read from services' labels.
//!
//! Every value comes from a label anyone who deploys a stack may write, and
//! ends up in Caddy's configuration and in a DNS name Caddy resolves: each
//! is checked here, and a service whose labels fail is left out with the
//! reason, never half-routed. Two services claiming the same host and path
//! are both left out: neither may take the other's traffic by deploying
//! after it.

use std::collections::BTreeMap;

use serde::Serialize;

/// The label naming the host a service is reached at.
pub const HOST_LABEL: &str = "clusterkit.ingress.host";
/// The label naming the port the service's tasks listen on (80 by default).
pub const PORT_LABEL: &str = "clusterkit.ingress.port";
/// The label limiting the route to a path and what is under it.
pub const PATH_LABEL: &str = "clusterkit.ingress.path";
/// The port a route goes to when [`PORT_LABEL`] is not given.
pub const DEFAULT_PORT: u16 = 80;

/// A service and its labels (`deploy.labels`, the service's own, not its
/// containers').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service's name as the swarm knows it (`STACK_SERVICE`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A host (and a path under it) served by a service's tasks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Route {
    /// The host name, lower case.
    pub host: String,
    /// The path prefix (`/api`: `/api` and what is under it); `None` for
    /// every path.
    pub path: Option<String>,
    /// The service, reached as `tasks.SERVICE` over the overlay.
    pub service: String,
    /// The port its tasks listen on.
    pub port: u16,
}

impl Route {
    /// Where Caddy sends the requests: every task of the service, by the
    /// swarm's DNS (`tasks.NAME` answers each task's address).
    pub fn upstream(&self) -> String {
        format!("tasks.{}:{}", self.service, self.port)
    }
}

/// A service whose labels asked for a route that was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// The service.
    pub service: String,
    /// Why, and what to write instead.
    pub reason: String,
}

/// What [`routes`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Routes {
    /// The routes, most specific first for each host (the order Caddy must
    /// try them in): by host, then longer paths before shorter ones, then
    /// the route for every path.
    pub routes: Vec<Route>,
    /// The services left out, by name.
    pub refused: Vec<Refused>,
}

impl Routes {
    /// The hosts routed, each once, sorted.
    pub fn hosts(&self) -> Vec<&str> {
        let mut h: Vec<&str> = self.routes.iter().map(|r| r.host.as_str()).collect();
        h.dedup();
        h
    }
}

/// Reads the routes the services' labels ask for. Services without
/// [`HOST_LABEL`] are not routed and not reported; a [`PORT_LABEL`] or
/// [`PATH_LABEL`] without it is refused (a forgotten host, not a wish to stay
/// private).
pub fn routes(services: &[Service]) -> Routes {
    let mut out = Routes::default();
    let mut wanted: Vec<Route> = Vec::new();
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    for s in services {
        match route_of(s) {
            Ok(Some(r)) => wanted.push(r),
            Ok(None) => {}
            Err(reason) => out.refused.push(Refused {
                service: shown(&s.name),
                reason,
            }),
        }
    }
    // The same host and path claimed twice: neither is served.
    let mut claims: BTreeMap<(String, Option<String>), Vec<String>> = BTreeMap::new();
    for r in &wanted {
        claims
            .entry((r.host.clone(), r.path.clone()))
            .or_default()
            .push(r.service.clone());
    }
    for r in wanted {
        let claimants = &claims[&(r.host.clone(), r.path.clone())];
        if claimants.len() > 1 {
            let others: Vec<&str> = claimants
                .iter()
                .filter(|c| **c != r.service)
                .map(String::as_str)
                .collect();
            out.refused.push(Refused {
                service: r.service.clone(),
                reason: format!(
                    "{}{} is also claimed by {}: neither is routed until one of them changes its {HOST_LABEL} or {PATH_LABEL}",
                    r.host,
                    r.path.as_deref().unwrap_or(""),
                    others.join(", ")
                ),
            });
        } else {
            out.routes.push(r);
        }
    }
    out.routes.sort_by(|a, b| {
        a.host.cmp(&b.host).then_with(|| match (&a.path, &b.path) {
            (Some(x), Some(y)) => y.len().cmp(&x.len()).then_with(|| x.cmp(y)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
    });
    out.refused.sort_by(|a, b| a.service.cmp(&b.service));
    out
}

/// A value as it may be shown in a message: printable, at most 80
/// characters.
fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(80).flat_map(char::escape_debug).collect();
    if v.chars().count() > 80 {
        s.push('…');
    }
    s
}

fn route_of(s: &Service) -> Result<Option<Route>, String> {
    let host = s.labels.get(HOST_LABEL);
    let port = s.labels.get(PORT_LABEL);
    let path = s.labels.get(PATH_LABEL);
    let Some(host) = host else {
        return match (port, path) {
            (None, None) => Ok(None),
            _ => Err(format!(
                "{PORT_LABEL} or {PATH_LABEL} without {HOST_LABEL}: add {HOST_LABEL}=NAME (the name clients use)"
            )),
        };
    };
    check_service(&s.name)?;
    let host = check_host(host)?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => check_port(p)?,
    };
    let path = path.map(|p| check_path(p)).transpose()?;
    Ok(Some(Route {
        host,
        path,
        service: s.name.clone(),
        port,
    }))
}

/// A service name as Docker allows it, which `tasks.NAME` then resolves.
fn check_service(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the service's name `{}` cannot be resolved as tasks.NAME (letters, digits, `_`, `-`, `.`; at most 63)",
            shown(name)
        ))
    }
}

/// A DNS name a public CA issues for: lower-cased, letters, digits and
/// hyphens in labels of at most 63, at least two labels, no wildcard (the
/// HTTP-01 challenge cannot prove one), no address.
pub fn check_host(host: &str) -> Result<String, String> {
    clusterkit_core::spec::checks::certificate_name(host).map_err(|why| {
        format!(
            "{HOST_LABEL}=`{}`: {why}; write a DNS name such as app.example.com",
            shown(host)
        )
    })
}

fn check_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "{PORT_LABEL}=`{}`: not a port (1 to 65535), the port the service's tasks listen on",
            shown(p)
        )),
    }
}

/// A path prefix: `/` then segments of unreserved characters (RFC 3986:
/// letters, digits, `-`, `.`, `_`, `~`), no `..`, no trailing `/` (the route
/// covers the prefix and what is under it), at most 256 characters.
fn check_path(p: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "{PATH_LABEL}=`{}`: {why}; write a prefix such as /api (it covers /api and /api/...)",
            shown(p)
        ))
    };
    if !p.starts_with('/') || p.len() > 256 {
        return bad("not a path starting with `/` (at most 256 characters)");
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return bad("the whole site: leave the label out for every path");
    }
    for seg in trimmed[1..].split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("an empty, `.` or `..` segment");
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return bad("a character other than letters, digits, `-`, `.`, `_`, `~` and `/`");
        }
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A service with these labels.
    pub(crate) fn svc(name: &str, labels: &[(&str, &str)]) -> Service {
        Service {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn labels_make_routes_most_specific_first() {
        let found = routes(&[
            svc("web", &[(HOST_LABEL, "app.example.com")]),
            svc(
                "api",
                &[
                    (HOST_LABEL, "APP.example.com."),
                    (PATH_LABEL, "/api/"),
                    (PORT_LABEL, "8080"),
                ],
            ),
            svc(
                "v2",
                &[(HOST_LABEL, "app.example.com"), (PATH_LABEL, "/api/v2")],
            ),
            svc("plain", &[("com.example.other", "x")]),
            svc("blog", &[(HOST_LABEL, "blog.example.com")]),
        ]);
        assert_eq!(found.refused, []);
        let got: Vec<(String, Option<String>, String)> = found
            .routes
            .iter()
            .map(|r| (r.host.clone(), r.path.clone(), r.upstream()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "app.example.com".into(),
                    Some("/api/v2".into()),
                    "tasks.v2:80".into()
                ),
                (
                    "app.example.com".into(),
                    Some("/api".into()),
                    "tasks.api:8080".into()
                ),
                ("app.example.com".into(), None, "tasks.web:80".into()),
                ("blog.example.com".into(), None, "tasks.blog:80".into()),
            ]
        );
        assert_eq!(found.hosts(), ["app.example.com", "blog.example.com"]);
    }

    #[test]
    fn hostile_labels_are_refused_with_the_reason_and_the_others_stay() {
        let long = format!("{}.com", "a".repeat(64));
        // (service, its labels, what the reason must say)
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            ("s1", vec![(HOST_LABEL, "")], "not 1 to 253"),
            ("s2", vec![(HOST_LABEL, "localhost")], "a single label"),
            ("s3", vec![(HOST_LABEL, "10.0.0.1")], "an address"),
            ("s4", vec![(HOST_LABEL, "*.example.com")], "a wildcard"),
            ("s5", vec![(HOST_LABEL, "a b.example.com")], "a character"),
            (
                "s6",
                vec![(HOST_LABEL, "x.example.com\"}],\"admin")],
                "a character",
            ),
            (
                "s7",
                vec![(HOST_LABEL, "-x.example.com")],
                "starting or ending",
            ),
            ("s8", vec![(HOST_LABEL, &long)], "longer than 63"),
            ("s9", vec![(HOST_LABEL, "a..example.com")], "empty"),
            (
                "s10",
                vec![(HOST_LABEL, "app.example.com"), (PORT_LABEL, "0")],
                "not a port",
            ),
            (
                "s11",
                vec![(HOST_LABEL, "app.example.com"), (PORT_LABEL, "65536")],
                "not a port",
            ),
            (
                "s12",
                vec![(HOST_LABEL, "app.example.com"), (PORT_LABEL, "+80")],
                "not a port",
            ),
            (
                "s13",
                vec![(HOST_LABEL, "app.example.com"), (PATH_LABEL, "api")],
                "starting with `/`",
            ),
            (
                "s14",
                vec![(HOST_LABEL, "app.example.com"), (PATH_LABEL, "/a/../admin")],
                "`..`",
            ),
            (
                "s15",
                vec![(HOST_LABEL, "app.example.com"), (PATH_LABEL, "/a*")],
                "a character",
            ),
            (
                "s16",
                vec![(HOST_LABEL, "app.example.com"), (PATH_LABEL, "/")],
                "the whole site",
            ),
            (
                "s17",
                vec![(PORT_LABEL, "80")],
                "without clusterkit.ingress.host",
            ),
            ("s18", vec![(HOST_LABEL, "1.2.3.4.5")], "all-numeric"),
            ("s19", vec![(HOST_LABEL, "ex\u{e9}mple.com")], "a character"),
            ("s 20", vec![(HOST_LABEL, "good.example.com")], "tasks.NAME"),
        ];
        let mut services: Vec<Service> = cases.iter().map(|(n, l, _)| svc(n, l)).collect();
        services.push(svc("ok", &[(HOST_LABEL, "ok.example.com")]));
        let found = routes(&services);
        assert_eq!(found.routes.len(), 1, "{found:?}");
        assert_eq!(found.routes[0].service, "ok");
        for (name, _, why) in &cases {
            let r = found
                .refused
                .iter()
                .find(|r| r.service == *name)
                .unwrap_or_else(|| panic!("{name} not refused: {found:?}"));
            assert!(r.reason.contains(why), "{name}: {}", r.reason);
            assert!(!r.reason.contains('\n'), "{name}: {}", r.reason);
        }
    }

    #[test]
    fn two_services_claiming_one_host_are_both_refused() {
        let found = routes(&[
            svc("first", &[(HOST_LABEL, "app.example.com")]),
            svc("second", &[(HOST_LABEL, "app.example.com")]),
            svc(
                "third",
                &[(HOST_LABEL, "app.example.com"), (PATH_LABEL, "/x")],
            ),
        ]);
        assert_eq!(found.routes.len(), 1);
        assert_eq!(found.routes[0].service, "third");
        assert_eq!(found.refused.len(), 2);
        assert!(found.refused[0].reason.contains("also claimed by second"));
        assert!(found.refused[1].reason.contains("also claimed by first"));
    }

    #[test]
    fn a_long_hostile_value_is_shown_cut_and_escaped() {
        let v = format!("\u{1b}[2J{}", "x".repeat(100));
        let found = routes(&[svc("s", &[(HOST_LABEL, &v)])]);
        let reason = &found.refused[0].reason;
        assert!(
            reason.contains('…') && !reason.contains('\u{1b}'),
            "{reason}"
        );
    }
}

/// What is wrong with a routed host's DNS, as seen from where it was
/// resolved: `None` when it points at ingress nodes only (`nodes`: the
/// nodes that serve the ingress). `resolved` is `Err` with the resolver's
/// reason when it does not resolve.
pub fn dns_problem(
    host: &str,
    resolved: &Result<Vec<std::net::IpAddr>, String>,
    nodes: &[std::net::IpAddr],
) -> Option<String> {
    let list = |a: &[std::net::IpAddr]| {
        a.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match resolved {
        Err(why) => Some(format!(
            "{host} does not resolve here ({why}): the CA cannot validate it and clients cannot reach it; give it A records for the nodes ({})",
            list(nodes)
        )),
        Ok(found) if found.iter().any(|a| nodes.contains(a)) => {
            let stray: Vec<std::net::IpAddr> =
                found.iter().filter(|a| !nodes.contains(a)).copied().collect();
            (!stray.is_empty()).then(|| {
                format!(
                    "{host} resolves to {} too, which serves no ingress (a client sent there finds no edge \
                     and must try another address): keep its A records to the ingress nodes ({})",
                    list(&stray),
                    list(nodes)
                )
            })
        }
        Ok(found) => Some(format!(
            "{host} resolves to {}, none of them a node: point its A records at the nodes ({})",
            list(found),
            list(nodes)
        )),
    }
}

#[cfg(test)]
mod dns_tests {
    use super::*;

    #[test]
    fn a_name_must_point_at_a_node() {
        let nodes: Vec<std::net::IpAddr> =
            vec!["192.0.2.11".parse().unwrap(), "192.0.2.12".parse().unwrap()];
        assert_eq!(
            dns_problem(
                "a.example.com",
                &Ok(vec!["192.0.2.12".parse().unwrap()]),
                &nodes
            ),
            None
        );
        let elsewhere = dns_problem(
            "a.example.com",
            &Ok(vec!["198.51.100.7".parse().unwrap()]),
            &nodes,
        )
        .unwrap();
        assert!(
            elsewhere.contains("resolves to 198.51.100.7, none of them a node")
                && elsewhere.contains("192.0.2.11, 192.0.2.12"),
            "{elsewhere}"
        );
        // One address of a node that serves no ingress among them.
        let stray = dns_problem(
            "a.example.com",
            &Ok(vec![
                "192.0.2.11".parse().unwrap(),
                "192.0.2.13".parse().unwrap(),
            ]),
            &nodes,
        )
        .unwrap();
        assert!(
            stray.starts_with("a.example.com resolves to 192.0.2.13 too, which serves no ingress")
                && stray.contains("(192.0.2.11, 192.0.2.12)"),
            "{stray}"
        );
        let missing = dns_problem("a.example.com", &Err("no such host".into()), &nodes).unwrap();
        assert!(
            missing.contains("does not resolve here (no such host)"),
            "{missing}"
        );
    }
}
