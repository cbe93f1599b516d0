//! `clusterkit status`: one screen with the mesh, the swarm's quorum and
//! leader, storage, monitoring targets and application stacks. Read-only;
//! the data is [`clusterkit_ops::status::status`]'s.

use clusterkit_core::spec::Loaded;

use crate::exit;

/// Runs `clusterkit status`.
pub fn run(loaded: &Loaded, json: bool) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &notices);
    let st = crate::block_on(clusterkit_ops::status::status(&session));
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{st}");
    }
    Ok(if st.healthy { exit::OK } else { exit::FAILURE })
}
