//! Ansible's INI inventory format.
//!
//! Written by hand: the INI crates do not know Ansible's dialect (host lines
//! with `key=value` pairs, `[group:children]`, host ranges), and none gives the
//! byte spans our diagnostics need.

use super::{expand_host_pattern, Host, Inventory, Var};
use crate::diag::{did_you_mean, Problem, Problems};
use crate::source::{Loc, Located, Span};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Hosts,
    Vars,
    Children,
}

/// A whitespace-separated token with its span; quotes group words.
struct Token<'a> {
    text: &'a str,
    span: Span,
}

/// Splits a line into tokens; an unquoted `#` at a token start ends the line.
fn tokenize(line: &str, base: usize) -> Result<Vec<Token<'_>>, (Span, String)> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if bytes[i] == b'#' || bytes[i] == b';' {
            break;
        }
        let start = i;
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None if b == b'"' || b == b'\'' => quote = Some(b),
                None if b.is_ascii_whitespace() => break,
                None => {}
            }
            i += 1;
        }
        if let Some(q) = quote {
            return Err((
                Span::new(base + start, i - start),
                format!("unclosed quote `{}`", q as char),
            ));
        }
        out.push(Token {
            text: &line[start..i],
            span: Span::new(base + start, i - start),
        });
    }
    Ok(out)
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

pub(super) fn parse(inv: &mut Inventory, problems: &mut Problems) {
    let file = inv.file.clone();
    let loc = |span: Span| Some(Loc::new(&file, span));
    let mut group = "ungrouped".to_string();
    let mut kind = Kind::Hosts;
    inv.group_mut("all");
    let mut offset = 0;
    for raw_line in file.text.split_inclusive('\n') {
        let base = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim_start();
        let lead = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let whole = Span::new(base + lead, trimmed.trim_end().len());
        if trimmed.starts_with('[') {
            let header = trimmed.split(['#', ';']).next().unwrap_or("").trim_end();
            let Some(inner) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) else {
                problems.push(
                    Problem::error("section header is not closed")
                        .at(loc(whole).as_ref(), "expected `]` at the end")
                        .help("write a group as `[servers]`, its variables as `[servers:vars]`"),
                );
                continue;
            };
            let (name, suffix) = match inner.split_once(':') {
                Some((n, s)) => (n.trim(), Some(s.trim())),
                None => (inner.trim(), None),
            };
            kind =
                match suffix {
                    None | Some("hosts") => Kind::Hosts,
                    Some("vars") => Kind::Vars,
                    Some("children") => Kind::Children,
                    Some(other) => {
                        let mut p = Problem::error(format!("unknown section type `:{other}`"))
                            .at(loc(whole).as_ref(), "not vars or children");
                        p = p.help(did_you_mean(other, ["vars", "children"]).unwrap_or_else(
                            || "use `[group]`, `[group:vars]` or `[group:children]`".into(),
                        ));
                        problems.push(p);
                        continue;
                    }
                };
            if name.is_empty() || name.contains(char::is_whitespace) {
                problems.push(
                    Problem::error(format!("`{inner}` is not a group name"))
                        .at(loc(whole).as_ref(), "bad group name")
                        .help(
                            "group names are one word of letters, digits and `_`, e.g. `[servers]`",
                        ),
                );
                continue;
            }
            group = name.to_string();
            inv.group_mut(&group);
            continue;
        }
        match kind {
            Kind::Vars => {
                let text = line.split(" #").next().unwrap_or(line);
                let Some((k, v)) = text.split_once('=') else {
                    problems.push(
                        Problem::error(format!("expected `key=value` in [{group}:vars]"))
                            .at(loc(whole).as_ref(), "no `=` here")
                            .help("write one variable per line, e.g. `ansible_user=root`"),
                    );
                    continue;
                };
                let key = k.trim();
                let key_at = base + text.find(key).unwrap_or(0);
                let value = v.trim();
                let value_at = base + k.len() + 1 + (v.len() - v.trim_start().len());
                if key.is_empty() {
                    problems.push(
                        Problem::error("variable without a name")
                            .at(loc(whole).as_ref(), "nothing before `=`")
                            .help("write `name=value`"),
                    );
                    continue;
                }
                if key.contains(char::is_whitespace) {
                    problems.push(
                        Problem::error(format!("`{key}` is not a variable name"))
                            .at(loc(Span::new(key_at, key.len())).as_ref(), "a space in a variable name")
                            .help(format!(
                                "[{group}:vars] holds one `name=value` per line; is this a host? hosts go under a group such as [servers]"
                            )),
                    );
                    continue;
                }
                let var = Var {
                    key: Located {
                        value: key.to_string(),
                        loc: loc(Span::new(key_at, key.len())),
                    },
                    value: Located {
                        value: unquote(value).to_string(),
                        loc: loc(Span::new(value_at, value.len())),
                    },
                };
                inv.group_mut(&group).vars.push(var);
            }
            Kind::Children => {
                let tokens = match tokenize(line, base) {
                    Ok(t) => t,
                    Err((span, msg)) => {
                        problems.push(Problem::error(msg).at(loc(span).as_ref(), "here"));
                        continue;
                    }
                };
                if tokens.len() != 1 {
                    problems.push(
                        Problem::error(format!(
                            "expected one group name per line in [{group}:children]"
                        ))
                        .at(loc(whole).as_ref(), "more than one word")
                        .help("list each child group on its own line"),
                    );
                    continue;
                }
                let child = Located {
                    value: tokens[0].text.to_string(),
                    loc: loc(tokens[0].span),
                };
                if child.value == group {
                    problems.push(
                        Problem::error(format!("group `{group}` lists itself as a child"))
                            .at(child.loc.as_ref(), "here"),
                    );
                    continue;
                }
                inv.group_mut(&child.value);
                inv.group_mut(&group).children.push(child);
            }
            Kind::Hosts => host_line(inv, &group, line, base, problems),
        }
    }
}

fn host_line(inv: &mut Inventory, group: &str, line: &str, base: usize, problems: &mut Problems) {
    let file = inv.file.clone();
    let loc = |span: Span| Some(Loc::new(&file, span));
    let tokens = match tokenize(line, base) {
        Ok(t) => t,
        Err((span, msg)) => {
            problems.push(
                Problem::error(msg)
                    .at(loc(span).as_ref(), "quote opened here")
                    .help("close the quote, or remove it"),
            );
            return;
        }
    };
    let Some((first, rest)) = tokens.split_first() else {
        return;
    };
    if first.text.contains('=') {
        problems.push(
            Problem::error(format!("expected a host name, found `{}`", first.text))
                .at(loc(first.span).as_ref(), "a variable where a host name should be")
                .help(format!(
                    "a line under [{group}] starts with the host's name; group variables go under [{group}:vars]"
                )),
        );
        return;
    }
    let mut vars = Vec::new();
    let mut ok = true;
    for t in rest {
        let Some((k, v)) = t.text.split_once('=') else {
            let mut p = Problem::error(format!("expected `key=value`, found `{}`", t.text))
                .at(loc(t.span).as_ref(), "no `=` here");
            p = p.help(match t.text.parse::<std::net::IpAddr>() {
                Ok(_) => format!("write `ansible_host={}`", t.text),
                Err(_) => format!("write `{}=VALUE`, without spaces around `=`", t.text),
            });
            problems.push(p);
            ok = false;
            continue;
        };
        if k.is_empty() {
            problems.push(
                Problem::error("variable without a name")
                    .at(loc(t.span).as_ref(), "nothing before `=`")
                    .help("write `name=value`"),
            );
            ok = false;
            continue;
        }
        vars.push(Var {
            key: Located {
                value: k.to_string(),
                loc: loc(Span::new(t.span.offset, k.len())),
            },
            value: Located {
                value: unquote(v).to_string(),
                loc: loc(Span::new(t.span.offset + k.len() + 1, v.len())),
            },
        });
    }
    if !ok {
        return;
    }
    // `name:port`, but not an IPv6 address.
    let (pattern, port) = match first.text.rsplit_once(':') {
        Some((h, p))
            if !outside_brackets(h).contains(':')
                && !p.is_empty()
                && p.chars().all(|c| c.is_ascii_digit()) =>
        {
            let at = first.span.offset + h.len() + 1;
            (
                h,
                Some(Located {
                    value: p.to_string(),
                    loc: loc(Span::new(at, p.len())),
                }),
            )
        }
        _ => (first.text, None),
    };
    let pattern_span = Span::new(first.span.offset, pattern.len());
    let names = match expand_host_pattern(pattern) {
        Ok(n) => n,
        Err(msg) => {
            problems.push(
                Problem::error(msg)
                    .at(loc(pattern_span).as_ref(), "bad host pattern")
                    .help("ranges look like `node[1:3]` or `node[01:10]` (both ends included)"),
            );
            return;
        }
    };
    for name in names {
        let host = Host {
            name: Located {
                value: name,
                loc: loc(pattern_span),
            },
            port: port.clone(),
            vars: vars.clone(),
        };
        inv.add_host(group, host, problems);
    }
}

/// The text with every `[...]` range removed, to tell `host:port` from IPv6.
fn outside_brackets(s: &str) -> String {
    let mut depth = 0;
    s.chars()
        .filter(|c| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect()
}
