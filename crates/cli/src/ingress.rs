//! `clusterkit ingress ...`.

use std::path::PathBuf;

use clap::Subcommand;
use clusterkit_core::engine::Lines;
use clusterkit_core::spec::Loaded;
use clusterkit_ops::Session;

use crate::exit;

/// `clusterkit ingress` subcommands.
#[derive(Debug, Subcommand)]
pub enum IngressCmd {
    /// Deploy the HTTPS ingress: Caddy on every node (80 and 443), one issuer, the route watcher.
    #[command(
        after_help = "Needs the storage (the certificates, keys and ACME account live on a `clusterkit`\n\
        volume). A service is routed by the labels in its deploy.labels:\n\
        \x20 clusterkit.ingress.host: app.example.com   (required)\n\
        \x20 clusterkit.ingress.port: \"8000\"            (default 80)\n\
        \x20 clusterkit.ingress.path: /api               (default: every path)\n\
        whether deployed by `clusterkit deploy` or a plain `docker stack deploy`: picked up within\n\
        seconds. Each name's certificate is ordered once for the cluster; its DNS must point at\n\
        the nodes (any of them answers the CA).\n\n\
        Example:\n  clusterkit ingress up -c clusterkit.toml"
    )]
    Up,
    /// The routes, each routed host's certificate, the services refused and why.
    #[command(
        after_help = "Exit status 0 when every routed host has its certificate, 1 otherwise.\n\nExample:\n  clusterkit ingress status --json"
    )]
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the ingress's route watcher runs (set up by `up`).
    #[command(hide = true)]
    Serve {
        /// Its options (JSON).
        #[arg(long)]
        options: PathBuf,
    },
}

/// Runs the route watcher: no cluster description, only its options.
pub fn serve(options: &std::path::Path) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(options)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", options.display()))?;
    let o: clusterkit_ingress::serve::ServeOptions =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", options.display()))?;
    crate::block_on(clusterkit_ingress::serve::run(o, |m: &str| {
        eprintln!("{m}")
    }))?;
    Ok(exit::OK)
}

/// Runs an `ingress` command.
pub fn run(loaded: &Loaded, cmd: IngressCmd) -> anyhow::Result<u8> {
    match cmd {
        IngressCmd::Up => {
            let lines = Lines::stderr();
            let session = crate::up::capability_session(loaded, &lines);
            let r = crate::block_on(clusterkit_ops::ingress::up(
                &session,
                std::env::current_exe()?,
            ))?;
            crate::up::print_capability(&r.up, "ingress");
            print!("{}", r.after);
            Ok(exit::OK)
        }
        IngressCmd::Status { json } => {
            let notices = clusterkit_core::reporters::Notices;
            let session = Session::new(loaded, crate::remote::options(), &notices);
            let r = crate::block_on(clusterkit_ops::ingress::status(&session))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{r}");
            }
            Ok(if r.healthy() { exit::OK } else { exit::FAILURE })
        }
        IngressCmd::Serve { options } => serve(&options),
    }
}
