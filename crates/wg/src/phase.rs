//! The mesh as a phase of `clusterkit up` ([`clusterkit_core::engine`]).

use std::collections::BTreeMap;

use clusterkit_core::engine::{file_diff, read_file, BoxError, Change, Context, Outcome, Phase};
use clusterkit_core::transport::fan_out;

use crate::UserspaceBinary;

/// Keys, configuration, interface and firewall on every node, proved by a
/// ping between every pair.
pub struct MeshPhase {
    /// The userspace WireGuard executable to install where the kernel has
    /// none (`None`: such nodes fail with the way out).
    pub userspace: Option<Vec<u8>>,
    /// `uname -m` of the machines the executable runs on.
    pub arch: &'static str,
}

#[async_trait::async_trait]
impl Phase for MeshPhase {
    fn name(&self) -> &'static str {
        "mesh"
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let mut out = Vec::new();
        let iface = &cx.spec.mesh.interface;
        let mut keys = BTreeMap::new();
        for (n, r) in fan_out(cx.nodes, 16, |t| crate::public_key(t, iface)).await {
            match r {
                Ok(k) => {
                    keys.insert(n, k);
                }
                Err(_) => out.push(Change {
                    phase: "mesh",
                    node: Some(n),
                    what: format!("would make a WireGuard key (it stays in /etc/wireguard/{iface}.key) and bring {iface} up"),
                    diff: None,
                }),
            }
        }
        if keys.len() < cx.nodes.len() {
            out.push(Change {
                phase: "mesh",
                node: None,
                what: "every node's configuration would gain the new keys (shown once they exist)"
                    .into(),
                diff: None,
            });
            return Ok(out);
        }
        for m in crate::plan(cx.spec, &keys) {
            let Some(t) = cx.nodes.iter().find(|t| t.node() == m.node) else {
                continue;
            };
            let path = m.conf_file();
            let wanted = crate::render::wg_quick(&m);
            match read_file(t.as_ref(), &path).await? {
                Some(now) if now == wanted => {}
                Some(now) => out.push(Change {
                    phase: "mesh",
                    node: Some(m.node.clone()),
                    what: format!("would update {path} and sync the live peers"),
                    diff: Some(file_diff(&path, &now, &wanted)),
                }),
                None => out.push(Change {
                    phase: "mesh",
                    node: Some(m.node.clone()),
                    what: format!("would write {path} and bring {} up", m.interface),
                    diff: None,
                }),
            }
        }
        Ok(out)
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        let binary = self.userspace.as_deref().map(|bytes| UserspaceBinary {
            bytes,
            arch: self.arch,
            replace_running: false,
        });
        let report = crate::up(cx.nodes, &cx.facts(), cx.spec, binary).await?;
        let mut out = Outcome::default();
        for (n, c) in &report.changes {
            if c.any() || c.userspace_outdated {
                cx.say_on(n, &c.what().join(", "));
            }
            if c.any() {
                out.node(n.clone());
            }
        }
        cx.say(&format!("{} pairs answer", report.pairs.len()));
        out.summary = Some(format!("mesh {}", cx.spec.mesh.cidr));
        Ok(out)
    }
}
