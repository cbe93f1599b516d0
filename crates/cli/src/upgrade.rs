//! `clusterkit upgrade`: a component replaced node by node while the swarm
//! keeps serving (drain, upgrade, back, next); never with a manager down.

use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;

use clusterkit_ops::upgrade::{upgrade, Component, UpgradeOptions};

use crate::exit;

/// Rolls one component (or every one) through [`clusterkit_ops::upgrade`].
pub fn run(loaded: &Loaded, component: Option<Component>) -> anyhow::Result<u8> {
    let options = UpgradeOptions {
        components: component.into_iter().collect(),
        userspace: if component.is_none_or(|c| c == Component::Mesh) {
            clusterkit_wg::local_userspace_binary()
        } else {
            None
        },
        clusterkit_exe: std::env::current_exe().ok(),
    };
    let lines = Lines::stderr();
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &lines);
    print!("{}", crate::block_on(upgrade(&session, &options))?);
    Ok(exit::OK)
}
