//! `clusterkit storage ...`.

use std::path::PathBuf;

use clap::Subcommand;
use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;

use clusterkit_ops::Session;

use crate::exit;

/// `clusterkit storage` subcommands.
#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Deploy the distributed S3 storage and the volume driver on every node.
    #[command(
        after_help = "Needs the swarm (`clusterkit swarm up`). The server image (storage.image, default\n\
        dxflrs/garage:v2.5.0) is pulled by each storage node that lacks it; nodes that cannot\n\
        reach a registry get it from this machine: `clusterkit images push IMAGE`. Garage's RPC secret and admin token\n\
        are made on a manager as Swarm secrets and never pass through this machine; the S3 key\n\
        is kept on the nodes (/etc/clusterkit/storage, mode 0600). A re-run changes nothing.\n\n\
        Then, on any node:\n  docker volume create -d clusterkit -o remote=clusterkit:volumes/data data\n\n\
        Example:\n  clusterkit storage up -i hosts.ini"
    )]
    Up,
    /// Per-node health and capacity, and how many more node losses the data tolerates.
    #[command(
        after_help = "Exit status 0 when every storage node is up and the probe object (written and read\nback through S3) succeeded, 1 otherwise.\n\nExample:\n  clusterkit storage status --json"
    )]
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the storage stack clusterkit deploys (compose file and configurations) to a directory.
    #[command(
        after_help = "Nothing is contacted: this is what `storage up` deploys, for review or for\n`docker stack deploy` by hand. No secret is in these files.\n\nExample:\n  clusterkit storage render --out ./storage-stack"
    )]
    Render {
        /// Directory to write into (created).
        #[arg(long, default_value = "clusterkit-storage")]
        out: PathBuf,
    },
}

/// Runs a `storage` command.
pub fn run(loaded: &Loaded, cmd: StorageCmd) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    if let StorageCmd::Render { out } = &cmd {
        let Some(stack) = clusterkit_storage::render::stack(spec) else {
            anyhow::bail!("storage.backend is none: there is nothing to render");
        };
        for p in stack.write_to(out)? {
            println!("{}", p.display());
        }
        return Ok(exit::OK);
    }
    let notices = clusterkit_core::reporters::Notices;
    let session = Session::new(loaded, crate::remote::options(), &notices);
    match cmd {
        StorageCmd::Up => {
            let lines = Lines::stderr();
            let session = crate::up::capability_session(loaded, &lines);
            let r = crate::block_on(clusterkit_ops::storage::up(
                &session,
                clusterkit_storage::phase::local_front_binary(),
            ))?;
            crate::up::print_capability(&r.up, "storage");
            print!("{}", r.after);
            Ok(exit::OK)
        }
        StorageCmd::Status { json } => {
            let r = crate::block_on(clusterkit_ops::storage::status(&session))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r.status)?);
            } else {
                print!("{r}");
            }
            Ok(if r.healthy() { exit::OK } else { exit::FAILURE })
        }
        StorageCmd::Render { .. } => unreachable!("handled above"),
    }
}
