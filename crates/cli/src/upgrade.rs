//! `clusterkit upgrade`: a component replaced node by node while the swarm
//! keeps serving (drain, upgrade, back, next); never with a manager down.

use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;

use crate::exit;

/// What `upgrade` can roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    /// The userspace WireGuard binary (clusterkit-wg-userspace, boringtun) on the nodes
    /// without kernel WireGuard: the one beside this clusterkit, or $CLUSTERKIT_WG_USERSPACE.
    Mesh,
    /// Docker Engine: the distribution's `docker.io` package at `[swarm] engine_version`
    /// (else at the version the nodes last ran together, recorded by `up`).
    Docker,
    /// Garage, the storage server: its image at `[storage] image`.
    Storage,
    /// The monitoring services' images (`*_image` under [monitoring]): Swarm's
    /// own rolling update, one task at a time within a service.
    Monitoring,
}

impl Component {
    fn to_ops(self) -> clusterkit_ops::upgrade::Component {
        use clusterkit_ops::upgrade::Component as C;
        match self {
            Component::Mesh => C::Mesh,
            Component::Docker => C::Docker,
            Component::Storage => C::Storage,
            Component::Monitoring => C::Monitoring,
        }
    }
}

/// Rolls `component` (every component when `None`) over the nodes that
/// need it, one at a time, through [`clusterkit_ops::upgrade::upgrade`].
pub fn run(loaded: &Loaded, component: Option<Component>) -> anyhow::Result<u8> {
    use clusterkit_ops::upgrade::{upgrade, Component as C, UpgradeOptions};
    let options = UpgradeOptions {
        components: component.map(Component::to_ops).into_iter().collect(),
        userspace: if component.is_none_or(|c| c == Component::Mesh) {
            crate::mesh::userspace_binary()
        } else {
            None
        },
    };
    let lines = Lines::stderr();
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &lines);
    let report = crate::block_on(upgrade(&session, &options))?;
    if report.upgraded.is_empty() {
        println!("nothing to upgrade");
        return Ok(exit::OK);
    }
    for u in report.upgraded {
        let what = match u.component {
            C::Monitoring => format!("{} service(s), one task at a time", u.count),
            _ => format!("{} node(s), one at a time", u.count),
        };
        println!(
            "{} upgraded on {what}, in {:.0} s",
            u.component.name(),
            report.seconds
        );
    }
    Ok(exit::OK)
}
