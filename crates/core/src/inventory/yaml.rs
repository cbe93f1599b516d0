//! Ansible's YAML inventory format, read with marked-yaml for locations.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node};

use super::{expand_host_pattern, Host, Inventory, Var};
use crate::diag::{did_you_mean, Problem, Problems};
use crate::source::{Loc, Located, SourceFile, Span};

fn marker_loc(file: &std::sync::Arc<SourceFile>, m: &marked_yaml::Marker, len: usize) -> Loc {
    Loc::new(file, Span::new(file.offset_of(m.line(), m.column()), len))
}

fn scalar_loc(file: &std::sync::Arc<SourceFile>, s: &MarkedScalarNode) -> Option<Loc> {
    s.span()
        .start()
        .map(|m| marker_loc(file, m, s.as_str().len()))
}

fn node_loc(file: &std::sync::Arc<SourceFile>, n: &Node) -> Option<Loc> {
    n.span().start().map(|m| marker_loc(file, m, 1))
}

fn text(file: &std::sync::Arc<SourceFile>, s: &MarkedScalarNode) -> Located<String> {
    Located {
        value: s.as_str().to_string(),
        loc: scalar_loc(file, s),
    }
}

fn is_null(n: &Node) -> bool {
    matches!(
        n.as_scalar().map(|s| s.as_str()),
        Some("" | "~" | "null" | "Null" | "NULL")
    )
}

/// How deep YAML may nest before it is parsed at all: each level of groups
/// is two (the group's name, then `children:`), and a host and its
/// variables add a few more. The parser builds (and drops) nested nodes
/// recursively: 1,500 nested groups overflowed the stack (signal 6).
const MAX_YAML_DEPTH: usize = 2 * super::MAX_DEPTH + 8;

/// The first line (1-based) whose nesting passes [`MAX_YAML_DEPTH`], the
/// column where its text starts, and its depth: block nesting by
/// indentation, flow nesting by brackets.
fn too_deep(text: &str) -> Option<(usize, usize, usize)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches([' ', '-']);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if flow == 0 {
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|i| *i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let (mut quote, mut max) = (None, flow);
        for c in body.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    max = max.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        let depth = indents.len() + max;
        if depth > MAX_YAML_DEPTH {
            return Some((n + 1, line.len() - body.len() + 1, depth));
        }
    }
    None
}

pub(super) fn parse(inv: &mut Inventory, problems: &mut Problems) {
    let file = inv.file.clone();
    if let Some((line, column, depth)) = too_deep(&file.text) {
        let at = Loc::new(&file, Span::new(file.offset_of(line, column), 1));
        problems.push(
            Problem::error(format!(
                "this YAML nests {depth} levels deep, more than the {MAX_YAML_DEPTH} clusterkit reads (groups up to {} deep)",
                super::MAX_DEPTH
            ))
            .at(Some(&at), "too deep")
            .help("flatten the groups: list hosts in fewer levels of `children:`"),
        );
        return;
    }
    let opts = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, &file.text, opts) {
        Ok(root) => root,
        Err(e) => {
            problems.push(load_error(&file, &e));
            return;
        }
    };
    inv.group_mut("all");
    let Some(map) = root.as_mapping() else { return };
    for (name, node) in map.iter() {
        group(inv, name, node, problems, 0);
    }
}

fn load_error(file: &std::sync::Arc<SourceFile>, e: &LoadError) -> Problem {
    let (marker, what) = match e {
        LoadError::TopLevelMustBeMapping(m) => (
            Some(m),
            "the top level must be a mapping of groups, e.g. `all:`".to_string(),
        ),
        LoadError::UnexpectedAnchor(m) => (
            Some(m),
            "anchors are not supported in inventories".to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (Some(m), "mapping keys must be plain names".to_string())
        }
        LoadError::UnexpectedTag(m) => (
            Some(m),
            "YAML tags are not supported in inventories".to_string(),
        ),
        LoadError::ScanError(m, err) => (Some(m), format!("YAML syntax error: {}", err.info())),
        LoadError::DuplicateKey(d) => {
            let p = Problem::error(format!(
                "`{}` appears twice in the same mapping",
                d.key.as_str()
            ))
            .at(scalar_loc(file, &d.key).as_ref(), "again here")
            .at(scalar_loc(file, &d.prev_key).as_ref(), "first here")
            .help("merge the two entries into one");
            return p;
        }
        other => (None, other.to_string()),
    };
    Problem::error(what)
        .at(marker.map(|m| marker_loc(file, m, 1)).as_ref(), "here")
        .help("check the indentation: a group holds `hosts:`, `vars:` and `children:`")
}

fn group(
    inv: &mut Inventory,
    name: &MarkedScalarNode,
    node: &Node,
    problems: &mut Problems,
    depth: usize,
) {
    let file = inv.file.clone();
    let gname = name.as_str().to_string();
    if depth > super::MAX_DEPTH {
        problems.push(
            Problem::error(format!(
                "groups nest more than {} deep here (`{gname}`)",
                super::MAX_DEPTH
            ))
            .at(scalar_loc(&file, name).as_ref(), "too deep")
            .help("flatten the groups: clusterkit reads children of children up to 64 levels"),
        );
        return;
    }
    inv.group_mut(&gname);
    if is_null(node) {
        return;
    }
    let Some(map) = node.as_mapping() else {
        problems.push(
            Problem::error(format!(
                "group `{gname}` must be a mapping with `hosts:`, `vars:` or `children:`"
            ))
            .at(node_loc(&file, node).as_ref(), "not a mapping")
            .help("indent the group's `hosts:` under its name"),
        );
        return;
    };
    for (key, value) in map.iter() {
        match key.as_str() {
            "hosts" => hosts(inv, &gname, value, problems),
            "vars" => {
                let vars = vars_of(&file, value, problems);
                inv.group_mut(&gname).vars.extend(vars);
            }
            "children" => {
                if is_null(value) {
                    continue;
                }
                let Some(children) = value.as_mapping() else {
                    problems.push(
                        Problem::error("`children` must be a mapping of groups")
                            .at(node_loc(&file, value).as_ref(), "not a mapping"),
                    );
                    continue;
                };
                for (child, cnode) in children.iter() {
                    inv.group_mut(&gname).children.push(text(&file, child));
                    group(inv, child, cnode, problems, depth + 1);
                }
            }
            other => {
                let mut p = Problem::error(format!("unknown key `{other}` in group `{gname}`"))
                    .at(scalar_loc(&file, key).as_ref(), "unknown key");
                p = p.help(did_you_mean(other, ["hosts", "vars", "children"]).unwrap_or_else(|| {
                    "a group holds `hosts:`, `vars:` and `children:`; is this a host missing its `hosts:` line?".into()
                }));
                problems.push(p);
            }
        }
    }
}

fn hosts(inv: &mut Inventory, gname: &str, node: &Node, problems: &mut Problems) {
    let file = inv.file.clone();
    if is_null(node) {
        return;
    }
    let Some(map) = node.as_mapping() else {
        problems.push(
            Problem::error(format!(
                "`hosts` of group `{gname}` must be a mapping of host names"
            ))
            .at(node_loc(&file, node).as_ref(), "not a mapping")
            .help("write each host as `node1:` (a list with `- node1` is not Ansible's format)"),
        );
        return;
    };
    for (hname, hnode) in map.iter() {
        let name = text(&file, hname);
        let names = match expand_host_pattern(&name.value) {
            Ok(n) => n,
            Err(msg) => {
                problems.push(Problem::error(msg).at(name.loc.as_ref(), "bad host pattern"));
                continue;
            }
        };
        let vars = vars_of(&file, hnode, problems);
        for n in names {
            let host = Host {
                name: Located {
                    value: n,
                    loc: name.loc.clone(),
                },
                port: None,
                vars: vars.clone(),
            };
            inv.add_host(gname, host, problems);
        }
    }
}

fn vars_of(file: &std::sync::Arc<SourceFile>, node: &Node, problems: &mut Problems) -> Vec<Var> {
    if is_null(node) {
        return Vec::new();
    }
    let Some(map): Option<&MarkedMappingNode> = node.as_mapping() else {
        problems.push(
            Problem::error("variables must be a mapping of `name: value`")
                .at(node_loc(file, node).as_ref(), "not a mapping")
                .help("write variables as `ansible_host: 192.168.1.1`, one per line"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map.iter() {
        match v.as_scalar() {
            Some(s) => out.push(Var {
                key: text(file, k),
                value: text(file, s),
            }),
            None if k.as_str().starts_with("ansible_") || k.as_str().starts_with("clusterkit_") => {
                problems.push(
                    Problem::error(format!("`{}` must be a plain value", k.as_str()))
                        .at(node_loc(file, v).as_ref(), "a list or mapping")
                        .help("write it on one line, e.g. `ansible_port: 22`"),
                );
            }
            // Users' own structured variables are kept out of clusterkit's way.
            None => {}
        }
    }
    out
}
