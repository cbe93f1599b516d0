//! `clusterkit sandbox ...`: a local cluster of real Linux hosts in containers.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use clusterkit_sandbox as sb;

use crate::exit;

/// `clusterkit sandbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxCmd {
    /// Create the sandbox (or complete it, or just check it) and write its inventory.
    #[command(
        after_help = "The first run builds the node image from Debian packages (about a minute, needs\n\
        root and debootstrap); later runs reuse it. Re-running is safe: running nodes are kept.\n\n\
        Examples:\n  clusterkit sandbox up\n  clusterkit sandbox up --nodes 5 --subnet 172.29.7.0/24\n  \
        clusterkit sandbox up --name hundred --sshd-only --nodes 100 --subnet 172.29.8.0/24"
    )]
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Subnet of the sandbox's bridge network; node N gets address .(10+N).
        #[arg(long, default_value = "172.29.0.0/24")]
        subnet: ipnet::Ipv4Net,
        /// Where to write the key, hosts.ini, clusterkit.toml and known_hosts
        /// [default: ~/.local/share/clusterkit/sandboxes/NAME].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Also build the service images (Prometheus, node-exporter, rclone) and load them into the nodes.
        #[arg(long, conflicts_with = "sshd_only")]
        images: bool,
        /// Nodes that run sshd alone (no systemd, no engine; a few MiB each, up to 200):
        /// for `clusterkit check` and the transport at scale, not for building a cluster.
        #[arg(long)]
        sshd_only: bool,
        /// Also run the sandbox's ACME CA (Pebble, validating for real, its resolver answering
        /// *.clusterkit.test with every node) and turn the HTTPS ingress on in clusterkit.toml.
        /// Needs the service images (`sandbox build-images`, or --images).
        #[arg(long, conflicts_with = "sshd_only")]
        ca: bool,
    },
    /// Show every node: container state, address, sshd, dockerd, partition.
    Status,
    /// Remove every container, volume and network of the sandbox, and its files.
    Down,
    /// Open a shell on a node (or run a command), with the sandbox's key and checked host key.
    #[command(
        after_help = "Examples:\n  clusterkit sandbox ssh node1\n  clusterkit sandbox ssh node2 -- docker info"
    )]
    Ssh {
        /// The node (node1, node2, ...).
        node: String,
        /// A command to run instead of a shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Cut a node's power (its container is killed).
    Stop {
        /// The node.
        node: String,
    },
    /// Power a node on and wait until sshd and dockerd answer.
    Start {
        /// The node.
        node: String,
    },
    /// Cut a node off from the other nodes (this machine still reaches it).
    Partition {
        /// The node.
        node: String,
    },
    /// Reconnect a partitioned node.
    Heal {
        /// The node.
        node: String,
    },
    /// Copy images from this machine's engine into every node's engine.
    #[command(after_help = "Example:\n  clusterkit sandbox load-image clusterkit/prometheus:sid")]
    LoadImage {
        /// Images (name:tag).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Build the service images from Debian packages (cached by recipe).
    BuildImages,
}

/// A progress sink printing `[  12.3s] message` lines to stderr.
fn progress() -> impl Fn(&str) + Sync {
    let start = Instant::now();
    move |msg: &str| eprintln!("[{:>6.1}s] {msg}", start.elapsed().as_secs_f64())
}

/// Runs a sandbox command.
pub fn run(name: &str, cmd: SandboxCmd) -> anyhow::Result<u8> {
    let p = progress();
    match cmd {
        SandboxCmd::Up {
            nodes,
            subnet,
            dir,
            images,
            sshd_only,
            ca,
        } => {
            let mut cfg = sb::SandboxConfig::new(name);
            cfg.nodes = nodes;
            cfg.ca = ca;
            if ca && images {
                // The CA's image first: it starts with the nodes.
                sb::build_service_images(&p)?;
            }
            if sshd_only {
                cfg.kind = sb::NodeKind::SshdOnly;
            }
            cfg.subnet = subnet;
            if let Some(d) = dir {
                cfg.dir = d;
            }
            let s = sb::up(&cfg, &p)?;
            if images {
                let built = sb::build_service_images(&p)?;
                sb::load_images(name, &built, &p)?;
            }
            println!(
                "sandbox `{name}` is up: {} node(s), image {}\n{s}\nnext:\n  clusterkit plan -c {}\n  \
                 clusterkit sandbox ssh node1\n  clusterkit sandbox down --name {name}",
                s.nodes.len(),
                s.image,
                s.config.display()
            );
            Ok(exit::OK)
        }
        SandboxCmd::Status => {
            let st = sb::status(name)?;
            print!("{}", sb::StatusTable(&st));
            Ok(if sb::StatusTable(&st).healthy() {
                exit::OK
            } else {
                exit::FAILURE
            })
        }
        SandboxCmd::Down => {
            let r = sb::down(name, None)?;
            println!("removed sandbox `{name}`: {r}");
            Ok(exit::OK)
        }
        SandboxCmd::Ssh { node, command } => {
            let mut cmd = sb::ssh_command(name, &node, &command)?;
            if command.is_empty() {
                cmd.arg("-t");
            }
            // Replaces this process: the terminal belongs to ssh.
            let err = cmd.exec();
            Err(err).context("running ssh (apt-get install openssh-client)")
        }
        SandboxCmd::Stop { node } => {
            sb::stop(name, &node)?;
            p(&format!("{node}: powered off"));
            Ok(exit::OK)
        }
        SandboxCmd::Start { node } => {
            sb::start(name, &node, &p)?;
            Ok(exit::OK)
        }
        SandboxCmd::Partition { node } => {
            sb::partition(name, &node)?;
            p(&format!("{node}: cut off from the other nodes (`clusterkit sandbox heal {node}` reconnects it)"));
            Ok(exit::OK)
        }
        SandboxCmd::Heal { node } => {
            sb::heal(name, &node)?;
            p(&format!("{node}: reconnected"));
            Ok(exit::OK)
        }
        SandboxCmd::LoadImage { images } => {
            sb::load_images(name, &images, &p)?;
            Ok(exit::OK)
        }
        SandboxCmd::BuildImages => {
            for i in sb::build_service_images(&p)? {
                println!("{i}");
            }
            Ok(exit::OK)
        }
    }
}
