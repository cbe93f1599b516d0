//! `clusterkit monitor ...` (issue [G], in progress: rendering only).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use clusterkit_core::spec::Loaded;
use clusterkit_monitor::grafana;
use clusterkit_monitor::render::{self, Options};

use crate::exit;

/// `clusterkit monitor` subcommands.
#[derive(Debug, Subcommand)]
pub enum MonitorCmd {
    /// Deploy the monitoring stack: Prometheus on a manager, node-exporter (and cAdvisor) on every node.
    #[command(
        after_help = "Needs the swarm and the images on the nodes (`clusterkit images push\nclusterkit/prometheus:bookworm clusterkit/node-exporter:bookworm`). Prometheus answers on\nport 9090 of the manager it runs on, over the mesh only. A re-run changes nothing.\n\nExample:\n  clusterkit monitor up --no-cadvisor"
    )]
    Up {
        /// Leave cAdvisor out (its image is not on the nodes).
        #[arg(long)]
        no_cadvisor: bool,
    },
    /// Write Prometheus's configuration and alert rules, and Grafana's provisioning and dashboards, to a directory.
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
        MonitorCmd::Up { no_cadvisor } => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let (nodes, failed) = crate::remote::connect(loaded, false).await;
                if !failed.is_empty() {
                    for (n, e) in &failed {
                        eprintln!("{n}: error: {e}");
                    }
                    anyhow::bail!("{} node(s) unreachable: nothing was changed", failed.len());
                }
                let opts = Options {
                    cadvisor: !no_cadvisor,
                };
                let deployed = clusterkit_monitor::up(&nodes, spec, opts, &|m: &str| {
                    eprintln!("monitor: {m}")
                })
                .await?;
                if !deployed {
                    eprintln!("monitoring unchanged");
                }
                Ok(exit::OK)
            })
        }
        MonitorCmd::Render { out, no_cadvisor } => {
            let opts = Options {
                cadvisor: !no_cadvisor,
            };
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut files = vec![
                (
                    "prometheus.yml".to_string(),
                    render::prometheus_yml(spec, opts),
                ),
                ("rules.yml".to_string(), render::rules_yml(spec, opts)),
                (
                    "grafana/provisioning/datasources/prometheus.yml".to_string(),
                    grafana::datasource_yml(),
                ),
                (
                    "grafana/provisioning/dashboards/clusterkit.yml".to_string(),
                    grafana::dashboards_yml(),
                ),
            ];
            for (d, _) in grafana::dashboards() {
                files.push((
                    format!("grafana/dashboards/{}.json", d.uid),
                    serde_json::to_string_pretty(&grafana::to_json(&d))?,
                ));
            }
            for (name, content) in files {
                let p = out.join(&name);
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
                println!("{}", p.display());
            }
            Ok(exit::OK)
        }
    }
}
