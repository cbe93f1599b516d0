//! `clusterkit monitor ...` (issue [G], in progress: rendering only).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use clusterkit_core::spec::Loaded;
use clusterkit_monitor::render::{self, Options};

use crate::exit;

/// `clusterkit monitor` subcommands.
#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Write Prometheus's configuration and alert rules for this cluster to a directory.
    #[command(
        after_help = "Nothing is contacted. Check them with Prometheus's own tool:\n  promtool check config DIR/prometheus.yml   (rules.yml is expected at /etc/prometheus/rules.yml)\n\nExample:\n  clusterkit monitor render --out ./monitoring"
    )]
    Render {
        /// Directory to write into (created).
        #[arg(long, default_value = "clusterkit-monitoring")]
        out: PathBuf,
        /// Leave cAdvisor out (its image is not on the nodes).
        #[arg(long)]
        no_cadvisor: bool,
    },
}

/// Runs a `monitor` command.
pub fn run(loaded: &Loaded, cmd: MonitorCmd) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    match cmd {
        MonitorCmd::Render { out, no_cadvisor } => {
            let opts = Options {
                cadvisor: !no_cadvisor,
            };
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for (name, content) in [
                ("prometheus.yml", render::prometheus_yml(spec, opts)),
                ("rules.yml", render::rules_yml(spec, opts)),
            ] {
                let p = out.join(name);
                std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
                println!("{}", p.display());
            }
            Ok(exit::OK)
        }
    }
}
