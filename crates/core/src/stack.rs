//! Swarm stacks deployed by clusterkit's own layers (storage, monitoring):
//! files uploaded to a manager, secrets made once, `docker stack deploy` only
//! when something changed. Application stacks use the same path.
//!
//! Without the `remote` feature: the rendered files ([`StackFiles`]) and the
//! YAML renderer ([`yaml_templates`]) only.

/// A rendered stack: its compose file and the files it refers to (Swarm
/// configs), to be put side by side on a manager and deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFiles {
    /// `docker-compose.yml`.
    pub compose: String,
    /// Other files: name (relative to the compose file) and content.
    pub files: Vec<(String, String)>,
}

/// A rendered file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {}: {source}", path.display())]
pub struct WriteError {
    /// The file.
    pub path: std::path::PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl StackFiles {
    /// Every file, the compose file first, named relative to the stack's directory.
    pub fn all(&self) -> Vec<(String, String)> {
        std::iter::once(("docker-compose.yml".to_string(), self.compose.clone()))
            .chain(self.files.iter().cloned())
            .collect()
    }

    /// Writes every file under `dir` (made when missing) and returns their
    /// paths, for review or for `docker stack deploy` by hand.
    pub fn write_to(&self, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, WriteError> {
        let mut written = Vec::new();
        for (name, content) in self.all() {
            let path = dir.join(&name);
            let parent = path.parent().unwrap_or(dir);
            std::fs::create_dir_all(parent)
                .and_then(|()| std::fs::write(&path, content))
                .map_err(|source| WriteError {
                    path: path.clone(),
                    source,
                })?;
            written.push(path);
        }
        Ok(written)
    }

    /// The file called `name` (not the compose file).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
    }

    /// A short hash of everything, to tell whether a deployed stack is current.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(&self.compose);
        for (n, c) in &self.files {
            h.update(n);
            h.update(c);
        }
        hex::encode(&h.finalize()[..6])
    }
}

#[cfg(feature = "remote")]
mod remote;
#[cfg(feature = "remote")]
pub mod roll;
#[cfg(feature = "remote")]
pub use remote::*;

/// The template environment every YAML file clusterkit renders goes
/// through (compose files, Prometheus's and Alertmanager's configuration):
/// a string value with anything but letters, digits and `. _ - / : @ + =`
/// is written as a quoted YAML (JSON) string, its line breaks and quotes
/// escaped, so that no value can add a key or a line, whatever the checks
/// before it let through. Values meant as YAML already go in marked safe
/// ([`minijinja::Value::from_safe_string`]).
pub fn yaml_templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_formatter(|out, state, value| {
        if let Some(s) = value.as_str() {
            if !value.is_safe() && !yaml_plain(s) {
                let quoted = serde_json::to_string(s).expect("a string serialises");
                return out.write_str(&quoted).map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
                });
            }
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

/// Whether `s` reads the same as a plain YAML scalar wherever a template
/// puts it (a value, part of one, an item of a flow list).
fn yaml_plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+=".contains(c))
        && !s.contains("::")
        && !s.ends_with(':')
}

#[cfg(test)]
mod template_tests {
    #[test]
    fn a_value_cannot_add_a_key_or_a_line_to_a_rendered_yaml_file() {
        let env = super::yaml_templates();
        let render = |v: &str| {
            env.render_str(
                "image: {{ v }}\nflag: --x={{ v }}\n",
                minijinja::context! { v => v },
            )
            .unwrap()
        };
        // What the checks let through reads as it is.
        assert_eq!(
            render("prom/prometheus:v3.5.0"),
            "image: prom/prometheus:v3.5.0\nflag: --x=prom/prometheus:v3.5.0"
        );
        // Anything else is one quoted string.
        for hostile in [
            "x\nprivileged: true",
            "x: y",
            "x # comment",
            "\"quoted\"",
            "a, b]",
            "x:",
            "",
        ] {
            // A whole value: read back as it was.
            let text = env
                .render_str(
                    "image: {{ v }}\nuser: root",
                    minijinja::context! { v => hostile },
                )
                .unwrap();
            assert_eq!(text.lines().count(), 2, "{hostile:?}: {text}");
            let doc = marked_yaml::parse_yaml(0, &text).unwrap();
            let map = doc.as_mapping().unwrap();
            assert_eq!(map.len(), 2, "{hostile:?}: {text}");
            assert_eq!(map.get_scalar("image").unwrap().as_str(), hostile, "{text}");
            // Part of a value: the file may no longer read, but gains no key or line.
            let text = render(hostile);
            assert_eq!(text.lines().count(), 2, "{hostile:?}: {text}");
            if let Ok(doc) = marked_yaml::parse_yaml(0, &text) {
                assert_eq!(doc.as_mapping().unwrap().len(), 2, "{hostile:?}: {text}");
            }
        }
        // Values already written as YAML go through marked safe.
        let pre = env
            .render_str(
                "user: {{ v }}\n",
                minijinja::context! { v => minijinja::Value::from_safe_string("\"a b\"".into()) },
            )
            .unwrap();
        assert_eq!(pre, "user: \"a b\"");
    }
}
