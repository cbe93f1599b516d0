//! Ansible inventories (INI and YAML), read with the location of every value.
//!
//! Both formats are read into one [`Inventory`]: hosts, groups and variables
//! with their locations. [`Inventory::hosts_in`] then resolves each host's
//! variables with Ansible's precedence (`all` < parent groups < child groups <
//! the host itself) and [`Inventory::nodes`] turns the `ansible_*` variables
//! clusterkit understands into [`NodeInput`]s.

mod ini;
mod range;
mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::diag::{did_you_mean, Problem, Problems};
use crate::source::{Located, SourceFile};
use crate::spec::NodeInput;

pub use range::expand_host_pattern;

/// A variable as written: `key=value` with both locations.
#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    /// The variable's name.
    pub key: Located<String>,
    /// Its value as text (Ansible INI values are text; YAML scalars are read as text).
    pub value: Located<String>,
}

/// A group of hosts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Variables set on the group (`[name:vars]` or `vars:`).
    pub vars: Vec<Var>,
    /// Names of its child groups (`[name:children]` or `children:`).
    pub children: Vec<Located<String>>,
    /// Names of the hosts listed directly in it.
    pub hosts: Vec<String>,
}

/// A host, with the variables written on its own line or entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The host's name (after range expansion).
    pub name: Located<String>,
    /// An SSH port written as `name:port`.
    pub port: Option<Located<String>>,
    /// Its own variables.
    pub vars: Vec<Var>,
}

/// An Ansible inventory as read, before any clusterkit meaning is given to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The file it was read from.
    pub file: Arc<SourceFile>,
    /// Hosts in order of first appearance, each once.
    pub hosts: Vec<Host>,
    /// Groups in order of first appearance; `all` and `ungrouped` included.
    pub groups: Vec<Group>,
    /// Where each host and group is in the lists above, and which hosts each
    /// group lists: reading stays linear in the inventory's size.
    index: Index,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Index {
    host: HashMap<String, usize>,
    group: HashMap<String, usize>,
    listed: HashSet<(usize, usize)>,
    /// The host cap was reported.
    capped: bool,
}

/// The most hosts an inventory may expand to (ranges included): clusterkit
/// reads 100,000 in well under 2 s; a range or file past it is refused at
/// the line that crosses it rather than read for minutes.
pub const MAX_HOSTS: usize = 100_000;

/// How deep groups may nest (`children:` within `children:`): past it a
/// located error, not a stack overflow.
pub const MAX_DEPTH: usize = 64;

/// Inventory formats clusterkit reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Ansible's INI inventory (`hosts.ini`).
    Ini,
    /// Ansible's YAML inventory (`hosts.yml`).
    Yaml,
}

impl Format {
    /// Guesses the format from the file name, then from the text.
    pub fn guess(name: &str, text: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".yml") || lower.ends_with(".yaml") {
            return Self::Yaml;
        }
        if lower.ends_with(".ini") {
            return Self::Ini;
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
        match first {
            Some(l) if l == "---" || (l.ends_with(':') && !l.starts_with('[')) => Self::Yaml,
            _ => Self::Ini,
        }
    }
}

/// The `ansible_*` variables clusterkit uses; every other `ansible_*` variable
/// is kept and reported as ignored.
pub const KNOWN_ANSIBLE_VARS: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

/// clusterkit's own host variables, usable in an Ansible inventory.
pub const CLUSTERKIT_VARS: &[&str] = &[
    "clusterkit_mesh_address",
    "clusterkit_swarm_role",
    "clusterkit_storage",
    "clusterkit_ingress",
];

impl Inventory {
    /// Reads an inventory in the given format; problems are added to `problems`
    /// and what could be read is returned.
    pub fn parse(file: Arc<SourceFile>, format: Format, problems: &mut Problems) -> Self {
        let mut inv = Self {
            file,
            hosts: Vec::new(),
            groups: Vec::new(),
            index: Index::default(),
        };
        match format {
            Format::Ini => ini::parse(&mut inv, problems),
            Format::Yaml => yaml::parse(&mut inv, problems),
        }
        inv
    }

    pub(crate) fn group_mut(&mut self, name: &str) -> &mut Group {
        let i = self.group_index(name);
        &mut self.groups[i]
    }

    fn group_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.group.get(name) {
            return *i;
        }
        self.groups.push(Group {
            name: name.to_owned(),
            ..Group::default()
        });
        self.index
            .group
            .insert(name.to_owned(), self.groups.len() - 1);
        self.groups.len() - 1
    }

    /// Adds a host to a group, merging with an earlier mention of the same host.
    pub(crate) fn add_host(&mut self, group: &str, host: Host, problems: &mut Problems) {
        let g = self.group_index(group);
        let known = self.index.host.get(&host.name.value).copied();
        if known.is_none() && self.hosts.len() >= MAX_HOSTS {
            if !self.index.capped {
                self.index.capped = true;
                problems.push(
                    Problem::error(format!(
                        "{} lists more than {MAX_HOSTS} hosts",
                        self.file.name
                    ))
                    .at(host.name.loc.as_ref(), format!("host {} and after", MAX_HOSTS + 1))
                    .help("split the cluster: clusterkit manages at most 100000 hosts in one description"),
                );
            }
            return;
        }
        if let Some(h) = known.filter(|h| self.index.listed.contains(&(g, *h))) {
            let earlier = self.hosts[h].name.loc.clone();
            problems.push(
                Problem::error(format!(
                    "host `{}` is listed twice in group `{group}`",
                    host.name.value
                ))
                .at(host.name.loc.as_ref(), "listed again here")
                .at(earlier.as_ref(), "first listed here")
                .help("remove one of the two lines, or give the hosts different names"),
            );
            return;
        }
        self.groups[g].hosts.push(host.name.value.clone());
        match known {
            Some(h) => {
                let existing = &mut self.hosts[h];
                existing.vars.extend(host.vars);
                if host.port.is_some() {
                    existing.port = host.port;
                }
                self.index.listed.insert((g, h));
            }
            None => {
                self.index
                    .host
                    .insert(host.name.value.clone(), self.hosts.len());
                self.index.listed.insert((g, self.hosts.len()));
                self.hosts.push(host);
            }
        }
    }

    /// Every group `name` contains, directly or through children, itself included.
    fn descendants<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        let mut out = vec![];
        let mut seen = HashSet::new();
        let mut todo = vec![name];
        while let Some(g) = todo.pop() {
            if !seen.insert(g) {
                continue;
            }
            out.push(g);
            if let Some(group) = self.index.group.get(g).map(|i| &self.groups[*i]) {
                todo.extend(group.children.iter().map(|c| c.value.as_str()));
            }
        }
        out
    }

    /// The depth of each group below `all` (its longest chain of parents):
    /// variables of deeper groups win. A group in a cycle counts from where
    /// the cycle is entered; a chain deeper than [`MAX_DEPTH`] is a problem.
    fn depths(&self, problems: &mut Problems) -> HashMap<&str, usize> {
        let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
        for g in &self.groups {
            for c in &g.children {
                parents.entry(c.value.as_str()).or_default().push(&g.name);
            }
        }
        let mut depth: HashMap<&str, usize> = HashMap::new();
        let mut open: HashSet<&str> = HashSet::new();
        for g in &self.groups {
            // Iterative: a chain of thousands of groups must not overflow the stack.
            let mut stack = vec![g.name.as_str()];
            while let Some(&top) = stack.last() {
                if depth.contains_key(top) {
                    stack.pop();
                    continue;
                }
                open.insert(top);
                let ps = parents.get(top).map(Vec::as_slice).unwrap_or_default();
                if let Some(next) = ps
                    .iter()
                    .find(|p| !depth.contains_key(**p) && !open.contains(**p))
                {
                    stack.push(next);
                    continue;
                }
                let d = if top == "all" {
                    0
                } else {
                    ps.iter()
                        .filter_map(|p| depth.get(p))
                        .map(|d| d + 1)
                        .max()
                        .unwrap_or(1)
                };
                depth.insert(top, d);
                open.remove(top);
                stack.pop();
            }
        }
        if let Some((deep, d)) = depth.iter().max_by_key(|(_, d)| **d) {
            if *d > MAX_DEPTH {
                let at = self
                    .groups
                    .iter()
                    .flat_map(|g| g.children.iter())
                    .find(|c| c.value == *deep)
                    .and_then(|c| c.loc.as_ref());
                problems.push(
                    Problem::error(format!(
                        "groups nest {d} deep (`{deep}`), more than the {MAX_DEPTH} clusterkit reads"
                    ))
                    .at(at, "too deep")
                    .help("flatten the groups: a group may list hosts and children of its own at any depth up to 64"),
                );
            }
        }
        depth
    }

    /// The hosts of `group` (all hosts when `None`) with their variables resolved
    /// by Ansible's precedence. An unknown group is an error naming the groups there are.
    pub fn hosts_in(
        &self,
        group: Option<&Located<String>>,
        problems: &mut Problems,
    ) -> Vec<(Host, BTreeMap<String, Var>)> {
        let members: Option<&str> = match group {
            None => None,
            Some(g) if g.value == "all" => None,
            Some(g) => {
                if !self.index.group.contains_key(&g.value) {
                    let names: Vec<&str> = self.groups.iter().map(|x| x.name.as_str()).collect();
                    let mut p =
                        Problem::error(format!("group `{}` is not in {}", g.value, self.file.name))
                            .at(g.loc.as_ref(), "no such group");
                    p = p.help(match did_you_mean(&g.value, names.iter().copied()) {
                        Some(dym) => dym,
                        None => format!("groups there: {}", names.join(", ")),
                    });
                    problems.push(p);
                    return Vec::new();
                }
                Some(g.value.as_str())
            }
        };
        let before = problems.errors().count();
        let depths = self.depths(problems);
        if problems.errors().count() > before {
            return Vec::new();
        }
        // Each group's hosts, its children's included: computed once, not per host.
        let contains: HashMap<&str, HashSet<&str>> = self
            .groups
            .iter()
            .map(|g| {
                let hosts = self
                    .descendants(&g.name)
                    .into_iter()
                    .filter_map(|d| self.index.group.get(d).map(|i| &self.groups[*i]))
                    .flat_map(|x| x.hosts.iter().map(String::as_str))
                    .collect();
                (g.name.as_str(), hosts)
            })
            .collect();
        // For each host, the groups whose variables apply to it, shallow
        // first (then in file order): only the groups that hold it, not
        // every group for every host.
        let mut applying: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (i, g) in self.groups.iter().enumerate() {
            if g.vars.is_empty() || g.name == "all" {
                continue;
            }
            let d = *depths.get(g.name.as_str()).unwrap_or(&1);
            for h in contains.get(g.name.as_str()).into_iter().flatten() {
                applying.entry(h).or_default().push((d, i));
            }
        }
        let all = self.index.group.get("all").map(|i| &self.groups[*i]);

        self.hosts
            .iter()
            .filter(|h| {
                members.is_none_or(|m| {
                    contains
                        .get(m)
                        .is_some_and(|hosts| hosts.contains(h.name.value.as_str()))
                })
            })
            .map(|h| {
                let mut vars = BTreeMap::new();
                for v in all.iter().flat_map(|g| g.vars.iter()) {
                    vars.insert(v.key.value.clone(), v.clone());
                }
                let mut groups = applying
                    .get(h.name.value.as_str())
                    .cloned()
                    .unwrap_or_default();
                groups.sort_unstable();
                for (_, i) in groups {
                    for v in &self.groups[i].vars {
                        vars.insert(v.key.value.clone(), v.clone());
                    }
                }
                for v in &h.vars {
                    vars.insert(v.key.value.clone(), v.clone());
                }
                (h.clone(), vars)
            })
            .collect()
    }

    /// Warns once for every `ansible_*` variable clusterkit does not use, at the
    /// place it is written.
    pub fn warn_ignored_vars(&self, problems: &mut Problems) {
        let all_vars = self
            .groups
            .iter()
            .flat_map(|g| g.vars.iter())
            .chain(self.hosts.iter().flat_map(|h| h.vars.iter()));
        let mut seen = std::collections::HashSet::new();
        for v in all_vars {
            let k = v.key.value.as_str();
            if k.starts_with("ansible_") && !KNOWN_ANSIBLE_VARS.contains(&k) && seen.insert(k) {
                let why = match k {
                    "ansible_python_interpreter" => {
                        "clusterkit runs no Python on the nodes".to_string()
                    }
                    _ => "clusterkit does not use it".to_string(),
                };
                problems.push(
                    Problem::warning(format!("`{k}` is ignored: {why}"))
                        .at(v.key.loc.as_ref(), "ignored")
                        .help(format!(
                            "clusterkit reads {}; remove the others to silence this warning",
                            KNOWN_ANSIBLE_VARS.join(", ")
                        )),
                );
            }
            if k.starts_with("clusterkit_") && !CLUSTERKIT_VARS.contains(&k) {
                let mut p = Problem::error(format!("unknown clusterkit variable `{k}`"))
                    .at(v.key.loc.as_ref(), "unknown");
                p = p.help(
                    did_you_mean(k, CLUSTERKIT_VARS.iter().copied())
                        .unwrap_or_else(|| format!("known: {}", CLUSTERKIT_VARS.join(", "))),
                );
                problems.push(p);
            }
        }
    }

    /// The cluster nodes this inventory describes: the hosts of `group` (all
    /// when `None`) with the variables clusterkit understands, checked.
    pub fn nodes(
        &self,
        group: Option<&Located<String>>,
        problems: &mut Problems,
    ) -> Vec<NodeInput> {
        self.warn_ignored_vars(problems);
        let hosts = self.hosts_in(group, problems);
        if hosts.is_empty() && !problems.has_errors() {
            problems.push(
                Problem::error(format!("{} lists no hosts", self.file.name)).help(
                    "add one line per server under a group, e.g. `[servers]` then `node1 ansible_host=192.168.1.1`",
                ),
            );
        }
        hosts
            .into_iter()
            .map(|(host, vars)| node_from_vars(host, &vars, problems))
            .collect()
    }
}

fn pick<'a>(vars: &'a BTreeMap<String, Var>, keys: &[&str]) -> Option<&'a Var> {
    keys.iter().find_map(|k| vars.get(*k))
}

fn node_from_vars(host: Host, vars: &BTreeMap<String, Var>, problems: &mut Problems) -> NodeInput {
    let address = pick(vars, &["ansible_host", "ansible_ssh_host"])
        .map(|v| v.value.clone())
        .unwrap_or_else(|| host.name.clone());
    let port = pick(vars, &["ansible_port", "ansible_ssh_port"])
        .map(|v| v.value.clone())
        .or(host.port.clone());
    let become_ = pick(vars, &["ansible_become"]).and_then(|v| {
        match v.value.value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Some(Located {
                value: true,
                loc: v.value.loc.clone(),
            }),
            "false" | "no" | "0" | "off" => Some(Located {
                value: false,
                loc: v.value.loc.clone(),
            }),
            other => {
                problems.push(
                    Problem::error(format!(
                        "ansible_become must be true or false, not `{other}`"
                    ))
                    .at(v.value.loc.as_ref(), "not a boolean")
                    .help("write ansible_become=true (or yes) or ansible_become=false (or no)"),
                );
                None
            }
        }
    });
    NodeInput {
        name: host.name,
        address,
        user: pick(vars, &["ansible_user", "ansible_ssh_user"]).map(|v| v.value.clone()),
        port,
        key: pick(
            vars,
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        )
        .map(|v| v.value.clone()),
        become_,
        mesh_address: pick(vars, &["clusterkit_mesh_address"]).map(|v| v.value.clone()),
        role: pick(vars, &["clusterkit_swarm_role"]).map(|v| v.value.clone()),
        storage: pick(vars, &["clusterkit_storage"]).map(|v| v.value.clone()),
        ingress: pick(vars, &["clusterkit_ingress"]).map(|v| v.value.clone()),
        jump: ["ansible_ssh_common_args", "ansible_ssh_extra_args"]
            .iter()
            .filter_map(|k| vars.get(*k))
            .find_map(|v| {
                proxy_jump(&v.value.value).map(|j| Located {
                    value: j,
                    loc: v.value.loc.clone(),
                })
            }),
    }
}

/// The ProxyJump in ssh arguments as Ansible inventories give them
/// (`-o ProxyJump=host`, `-o 'ProxyJump host'`, `-J host`), if any.
pub fn proxy_jump(args: &str) -> Option<String> {
    let words =
        shlex::split(args).unwrap_or_else(|| args.split_whitespace().map(String::from).collect());
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        let opt = if w == "-o" {
            it.next().map(String::as_str)
        } else if let Some(rest) = w.strip_prefix("-o") {
            Some(rest)
        } else if w == "-J" {
            return it.next().cloned();
        } else if let Some(rest) = w.strip_prefix("-J") {
            return Some(rest.to_string());
        } else {
            None
        };
        if let Some(o) = opt {
            let (k, v) = o
                .split_once('=')
                .or_else(|| o.split_once(' '))
                .unwrap_or((o, ""));
            if k.trim().eq_ignore_ascii_case("proxyjump") && !v.trim().is_empty() {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
