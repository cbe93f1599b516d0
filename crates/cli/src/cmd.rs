//! The commands and their arguments.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use clusterkit_core::plan::{plan, ClusterPlan};
use clusterkit_core::spec::{self, Loaded};
use clusterkit_core::{Problems, SpecError};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use crate::exit;
use crate::output::{color_stderr, print_problems};

const AFTER_HELP: &str = "\
Exit codes:
  0  success (warnings may have been printed)
  1  failure while running (unreadable file, unreachable node, ...)
  2  bad command-line usage
  3  the cluster description has errors (each printed with file:line:col and a fix)

Start here:
  clusterkit init -i hosts.ini     # a commented clusterkit.toml for your Ansible inventory
  clusterkit validate              # check it, touching no server
  clusterkit plan                  # what every node will get";

/// clusterkit turns a handful of Linux servers reachable over SSH into an
/// egalitarian, highly available cluster: a WireGuard mesh, Docker Swarm with
/// every node a manager, distributed S3 storage and monitoring.
#[derive(Debug, Parser)]
#[command(name = "clusterkit", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    /// Show every command run on the nodes (secrets redacted), on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Refuse any node (or jump host) whose host key is not recorded yet
    /// (also `[ssh] strict_host_keys = true` in clusterkit.toml). A recorded
    /// key is always enforced, whatever its type.
    #[arg(long, global = true)]
    strict_host_keys: bool,
    /// How long a command that changes the cluster waits for another run
    /// holding the cluster's lock (another operator, a scheduled backup)
    /// before giving up, e.g. `30s`, `10m`; `0` gives up at once.
    #[arg(long, global = true, default_value = "10m", value_parser = humantime::parse_duration)]
    lock_wait: std::time::Duration,
}

/// `--color`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Color {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Where the cluster is described.
#[derive(Debug, clap::Args)]
struct Input {
    /// clusterkit.toml (default: ./clusterkit.toml when it exists).
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// An Ansible inventory, INI or YAML (replaces the config's `inventory`).
    #[arg(short, long, value_name = "FILE", global = true)]
    inventory: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented clusterkit.toml with every setting at its default.
    #[command(
        after_help = "Examples:\n  clusterkit init                   # nodes listed in the file, to fill in\n  clusterkit init -i hosts.ini      # nodes taken from an Ansible inventory\n  clusterkit init -o prod.toml --force"
    )]
    Init {
        /// Take the nodes from this Ansible inventory (checked first).
        #[arg(short, long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// Where to write.
        #[arg(short, long, value_name = "FILE", default_value = "clusterkit.toml")]
        output: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Build the cluster, or converge it: facts, Docker Engine, WireGuard mesh, Swarm, storage, monitoring, stacks.
    #[command(
        after_help = "Every phase is idempotent: a re-run on a converged cluster changes nothing and says so;\n\
        a run stopped at any point is completed by the next one. Phases run in order; --only runs\n\
        one of them (facts are always gathered), for a cluster already built up to it.\n\n\
        Two helper programs go onto the nodes that lack them: the userspace WireGuard\n\
        (clusterkit-wg-userspace, where the kernel has none) and the volume driver's front\n\
        (clusterkit-volumes), each found beside this clusterkit or named by\n\
        $CLUSTERKIT_WG_USERSPACE / $CLUSTERKIT_VOLUMES; nodes that run them keep theirs.\n\n\
        Examples:\n  clusterkit up -i hosts.ini\n  clusterkit up --dry-run      # what would change, as diffs; nothing is changed\n  clusterkit up --sandbox      # a local 3-node sandbox, then the cluster on it\n  clusterkit up --only monitoring"
    )]
    Up {
        #[command(flatten)]
        input: Input,
        /// Bring up the local sandbox first (`clusterkit sandbox up`) and build the cluster on it.
        #[arg(long, conflicts_with_all = ["config", "inventory"])]
        sandbox: bool,
        /// Run this phase only.
        #[arg(long, value_parser = choices(clusterkit_ops::Phase::ALL, |p| (p.name(), p.about())))]
        only: Option<clusterkit_ops::Phase>,
        /// One JSON object per line on stdout (steps, phase timings, the summary), for tools.
        #[arg(long)]
        json: bool,
        /// Show what would change (file diffs, keys, installs, joins) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How to show progress: `live` is a table (a row per node, a column per phase) redrawn
        /// in place; `plain` is one line per step; `auto` is live on a terminal.
        #[arg(long, value_enum, default_value = "auto")]
        progress: crate::up::ProgressMode,
        /// Leave replicated services where they run (by default `up` ends by spreading those
        /// piled on some nodes, as `clusterkit rebalance` does).
        #[arg(long)]
        no_rebalance: bool,
    },
    /// Spread replicated services over the ready nodes again, e.g. after a node came back.
    #[command(
        after_help = "Swarm does not move running tasks when a node returns: services stay piled on the nodes\n\
        that survived. rebalance takes one service at a time, scales it to one more replica (the\n\
        scheduler starts it on the emptiest node), waits until it runs, then back (the swarm removes\n\
        a copy from the fullest node): a service never runs fewer replicas than it asks for. Services\n\
        pinned to a node (node.hostname, node.id or node.labels.clusterkit.node constraints) and\n\
        global services are left alone. `up` does the same as its last phase.\n\n\
        Examples:\n  clusterkit rebalance\n  clusterkit up --no-rebalance   # converge, but leave services where they run"
    )]
    Rebalance {
        #[command(flatten)]
        input: Input,
    },
    /// Deploy an application stack (compose file format 3) onto the swarm and wait until it runs.
    #[command(
        after_help = "The file is checked first (services, images, scrape labels: a service Prometheus will not\n\
        scrape is a warning); images this machine has are sent to the nodes that lack them; then\n\
        `docker stack deploy` runs on a manager, so `docker stack ls` shows the stack. It waits until\n\
        every service runs, or fails with the failing task's own error. Deploying an unchanged\n\
        file again changes nothing. Stacks listed under [[stacks]] are deployed by `up`.\n\n\
        Examples:\n  clusterkit deploy examples/stacks/app.yml --name app\n  clusterkit deploy stack.yml     # named after the file: `stack`"
    )]
    Deploy {
        #[command(flatten)]
        input: Input,
        /// The compose file.
        file: PathBuf,
        /// Stack name (default: the file's name without extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// Check the cluster description without touching any server.
    #[command(
        after_help = "Every problem is shown at once, with file:line:col, what is wrong and how to fix it.\n\nExamples:\n  clusterkit validate\n  clusterkit validate -i hosts.ini\n  clusterkit validate -c clusterkit.toml"
    )]
    Validate {
        #[command(flatten)]
        input: Input,
    },
    /// A local cluster of real Linux hosts (systemd, sshd, dockerd) in containers.
    #[command(
        after_help = "Examples:\n  clusterkit sandbox up               # 3 nodes; prints how to use them\n  clusterkit sandbox status\n  clusterkit sandbox partition node2  # cut node2 off from the others\n  clusterkit sandbox down"
    )]
    Sandbox {
        /// The sandbox's name (prefixes its containers, volumes and network).
        #[arg(long, default_value = "clusterkit", global = true)]
        name: String,
        #[command(subcommand)]
        cmd: crate::sandbox::SandboxCmd,
    },
    /// Connect to every node and show its facts and the problems found.
    #[command(
        after_help = "Connects over SSH (host keys recorded in .clusterkit/known_hosts beside the config at\nfirst contact, checked afterwards), gathers each node's facts in one round trip, and\nexits non-zero when a node is unreachable or has a blocking problem.\n\nExamples:\n  clusterkit check -i hosts.ini\n  clusterkit check --strict-host-keys --json"
    )]
    Check {
        #[command(flatten)]
        input: Input,
        /// Print facts and problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Look for what clusters like this trip on, each problem with its fix: address plan, MTU, ports, clocks, quorum, storage.
    #[command(
        after_help = "Read-only. Checks, on every node: SSH and host keys; OS, disk, clocks and ports held by other\n\
programs; the address plan (routes, the engine's bridges and pools against the mesh and the swarm\n\
pool); every mesh pair answering; the MTU (a don't-fragment packet of the mesh MTU between every\n\
pair, and the mesh MTU plus WireGuard's 60 bytes within the underlay interface's); the cluster's TCP\n\
ports closed on the nodes' own addresses and the swarm's open over the mesh (probed from a neighbour); quorum and losses tolerated;\n\
storage health, the volume driver on each node and an S3 probe. Lines start with ok, warn or FAIL;\n\
the exit code is 1 when one is FAIL.\n\n\
Examples:\n  clusterkit doctor\n  clusterkit doctor --json | jq '.checks[] | select(.level != \"ok\")'"
    )]
    Doctor {
        #[command(flatten)]
        input: Input,
        /// The findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One screen: nodes, mesh, swarm quorum and leader, storage, monitoring targets, stacks.
    #[command(
        after_help = "Read-only. Each line starts with ok or FAIL; the exit code is 0 only when everything is
ok (nodes reachable, every mesh pair answering, quorum held, storage healthy, every
monitoring target up, every stack's services at their replica count).

Examples:
  clusterkit status
  clusterkit status --json | jq .swarm.leader"
    )]
    Status {
        #[command(flatten)]
        input: Input,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take the cluster apart: stacks, volume driver, swarm, mesh (data kept unless --purge).
    #[command(
        after_help = "Asks for the cluster's name on a terminal; elsewhere it needs --yes. Without --purge the
        nodes keep the storage's data, the mesh keys and the stacks' volumes, and `clusterkit up`
        builds the cluster again on them. Docker Engine stays installed. Unreachable nodes are
        left as they are (and the exit code says so).

        Examples:
  clusterkit down
  clusterkit down --purge --yes"
    )]
    Down {
        #[command(flatten)]
        input: Input,
        /// Also delete the data: storage, volumes, keys, /etc/clusterkit.
        #[arg(long)]
        purge: bool,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Replace a component node by node while the swarm keeps serving (drain, upgrade, back).
    #[command(
        after_help = "For each node that runs another version than the one wanted, in inventory order:\n\
        every manager must answer (refused otherwise: quorum is never put at risk); the node is\n\
        drained through another manager (its replicated tasks start elsewhere first); the component\n\
        is replaced and checked (the mesh: every pair to and from the node answers again; docker:\n\
        the engine answers and the swarm sees the node ready; storage: the node's Garage service\n\
        gets the new image); the node is made active and waits until it is ready, reachable and\n\
        runs its global tasks (storage: until Garage runs the new image and reports every server\n\
        connected and every partition whole); then the next. Nodes already\n\
        current are skipped, so a stopped roll resumes where it stopped. Replicated services are\n\
        spread again at the end.\n\n\
        Components and their versions: `mesh` is the userspace WireGuard binary that sits beside\n\
        this clusterkit (or $CLUSTERKIT_WG_USERSPACE). `docker` is the distribution's docker.io\n\
        package at `engine_version` under [swarm] (installed as that version and held; every node\n\
        must find it in its package sources before any is drained; unset: the version the nodes\n\
        ran together at the last `up` or roll, which `up` holds and installs on a new node). `storage`\n\
        is Garage's image at `image` under [storage] (every server must be connected and every\n\
        partition whole before one is taken out; `up` never replaces a running server's image, it\n\
        names the nodes behind; MinIO does not run mixed versions: `up` changes it everywhere at\n\
        once). `monitoring` is the images pinned under [monitoring] (`*_image`): they reach every\n\
        node first, then Swarm's own rolling update replaces each changed service's tasks one at\n\
        a time (Prometheus's two replicas never together), followed until every task runs the new\n\
        image; an update Swarm pauses or rolls back stops the upgrade, naming the service and why\n\
        (`up` applies a changed image the same way without waiting for it).\n\n\
        Examples:\n  CLUSTERKIT_WG_USERSPACE=./clusterkit-wg-userspace-new clusterkit upgrade --component mesh\n  \
        clusterkit upgrade --component docker     # after changing [swarm] engine_version\n  \
        clusterkit upgrade --component storage    # after changing [storage] image\n  \
        clusterkit upgrade --component monitoring # after changing an image under [monitoring]"
    )]
    Upgrade {
        #[command(flatten)]
        input: Input,
        /// The component to roll (default: every one).
        #[arg(long, value_parser = choices(clusterkit_ops::upgrade::Component::ALL, |c| (c.name(), c.about())))]
        component: Option<clusterkit_ops::upgrade::Component>,
    },
    /// Back up the swarm's state, Prometheus, Grafana and clusterkit's state (manifest, checksums).
    #[command(
        after_help = "What is taken, in order:\n\
        - Prometheus: a snapshot through its admin API (consistent; on the mesh only).\n\
        - Grafana: its data directory (users, folders, dashboards made in the UI), where it runs.\n\
        - The swarm's state, as Docker documents it: on one manager that is not the leader, drained\n\
        \x20 first, the engine stops, /var/lib/docker/swarm is copied, the engine starts again and the\n\
        \x20 node is made active. Services, networks, configs (Grafana's provisioned dashboards among\n\
        \x20 them) and secrets are in it. Refused while any manager is unreachable (quorum).\n\
        - clusterkit's own state (.clusterkit/state.toml).\n\
        A manifest lists every file with its SHA-256, the services, the secrets by name and what a\n\
        backup leaves out (storage data, WireGuard private keys). Secrets stay encrypted by the swarm,\n\
        but its key is in the same archive: guard a backup like a manager's disk. Directories are\n\
        made mode 0700, files 0600.\n\n\
        Destinations (--to, repeatable): s3://BUCKET/PREFIX on the cluster's own S3 (the default:\n\
        s3://clusterkit/backups/CLUSTER/TIME/), or a directory of this machine (DIR/CLUSTER-TIME/).\n\
        The cluster's S3 goes down with the cluster: keep a copy off it for `restore`.\n\n\
        `clusterkit backup list` shows the backups kept; `clusterkit backup copy` brings one out\n\
        of the cluster's S3 into a directory, checked, ready for `restore`.\n\n\
        Recurring backups (--schedule EVERY): a Swarm service on a manager takes one whenever the\n\
        newest under its destinations (the cluster's S3 only) is EVERY old, at once when there is\n\
        none; never draining its own node. It reaches the nodes over SSH from inside the mesh with\n\
        a key of its own (a Swarm secret; its public half in each node's authorized_keys, accepted\n\
        from mesh addresses only), host keys checked; `up` and `restore` keep it current.\n\
        `--schedule off` removes the service, its key and the key lines.\n\n\
        Examples:\n  clusterkit backup\n  clusterkit backup --to /srv/backups --to s3://clusterkit/backups\n  \
        clusterkit backup --schedule 6h\n  clusterkit backup --schedule off\n  \
        clusterkit backup list\n  clusterkit backup copy s3://clusterkit/backups/prod/20261126T043000Z /srv/backups",
        args_conflicts_with_subcommands = true
    )]
    Backup {
        #[command(flatten)]
        input: Input,
        /// Where to write it: a directory, or s3://BUCKET/PREFIX on the cluster's S3 (repeatable).
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        to: Vec<String>,
        /// Take one every EVERY (`6h`, `1d`; at least 10m) from a Swarm service, or `off`.
        #[arg(long, value_name = "EVERY|off")]
        schedule: Option<String>,
        /// The image the scheduled service runs in (it needs Debian 12's C library or newer).
        #[arg(long, value_name = "IMAGE", requires = "schedule", default_value = clusterkit_core::schedule::DEFAULT_IMAGE)]
        image: String,
        #[command(subcommand)]
        cmd: Option<crate::backup::BackupCmd>,
    },
    /// Bring a cluster back from a backup onto nodes outside any swarm (fresh ones, or after `down`).
    #[command(
        after_help = "Every file is checked against the manifest before anything is touched, and every\n\
        node must answer and be outside any swarm. Then:\n\
        1. clusterkit's state from the backup (mesh addresses; a different local one is kept\n\
        \x20  as state.toml.before-restore), Docker Engine and the WireGuard mesh (new keys).\n\
        2. Prometheus's and Grafana's data into their volumes on every manager.\n\
        3. The swarm's state on the node it was copied from (else the first manager), its engine\n\
        \x20  restarted, then `swarm init --force-new-cluster` on its mesh address: the old nodes'\n\
        \x20  entries go, the other nodes join.\n\
        4. `up` for the rest: storage (made afresh: its data is not in a backup), the volume driver,\n\
        \x20  monitoring (Grafana's password is read back from its restored secret), stacks, and a\n\
        \x20  scheduled backup the swarm held (set again: the new nodes' host keys and key lines).\n\
        Images of stacks deployed with `clusterkit deploy` must be sent again (`deploy` does it).\n\n\
        A backup on S3 (copied there to outlive the cluster) is read into memory and checked,\n\
        never written on this machine: give the server with --s3-endpoint and its key in\n\
        AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (never on the command line). Without\n\
        --s3-endpoint, the cluster's own S3 is read, which answers only while the cluster runs.\n\n\
        Examples:\n  clusterkit restore --from /srv/backups/prod-20261126T043000Z\n  \
        AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… clusterkit restore \\\n  \
        \x20   --from s3://offsite/clusterkit/prod-20261126T043000Z --s3-endpoint https://s3.example.net"
    )]
    Restore {
        #[command(flatten)]
        input: Input,
        /// The backup: the directory `backup --to DIR` printed, or
        /// s3://BUCKET/PREFIX/CLUSTER-TIME (as `backup list` names it).
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        from: String,
        /// The S3 server holding the backup (`https://…`), when it is not the
        /// cluster's own; its key is read from AWS_ACCESS_KEY_ID and
        /// AWS_SECRET_ACCESS_KEY.
        #[arg(long, value_name = "URL")]
        s3_endpoint: Option<String>,
        /// The region that server expects (default: AWS_REGION, else
        /// us-east-1; Garage's own is `garage`).
        #[arg(long, value_name = "REGION", requires = "s3_endpoint")]
        s3_region: Option<String>,
        /// Accept a backup without a seal (taken before backups were sealed):
        /// every other check still applies. Anyone who could write where it
        /// was kept could have changed it.
        #[arg(long)]
        unsealed: bool,
    },
    /// Day two: take a node out of the cluster for good, or add one.
    Node {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: crate::node::NodeCmd,
    },
    /// The WireGuard mesh: build it, check every pair, rotate keys.
    Wg {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: crate::mesh::WgCmd,
    },
    /// Docker Swarm on the mesh: build it, check quorum and leader, recover it.
    Swarm {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: crate::swarm::SwarmCmd,
    },
    /// Distributed S3 storage (Garage or MinIO) and the `clusterkit` volume driver.
    Storage {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: crate::storage::StorageCmd,
    },
    /// Monitoring: Prometheus, node-exporter, cAdvisor, Alertmanager and a provisioned Grafana.
    Monitor {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: crate::monitor::MonitorCmd,
    },
    /// The HTTPS ingress: applications reached by name, certificates once for the cluster.
    Ingress {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: crate::ingress::IngressCmd,
    },
    /// Send images to the nodes (for clusters that cannot pull).
    Images {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: ImagesCmd,
    },
    /// Manage recorded SSH host keys.
    KnownHosts {
        #[command(flatten)]
        input: Input,
        #[command(subcommand)]
        cmd: KnownHostsCmd,
    },
    /// Show what each node gets: mesh address, peers, swarm role, services.
    #[command(
        after_help = "Mesh addresses are allocated here and recorded in .clusterkit/state.toml beside the\nconfig, so that adding or removing a node never renumbers the others.\n\nExamples:\n  clusterkit plan -i examples/hosts.ini\n  clusterkit plan --json | jq '.nodes[].mesh_address'"
    )]
    Plan {
        #[command(flatten)]
        input: Input,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `clusterkit images` subcommands.
#[derive(Debug, Subcommand)]
enum ImagesCmd {
    /// Copy images from this machine's engine to every node that lacks them.
    #[command(
        after_help = "The images are saved once (`docker save`) and loaded over each node's SSH\nconnection; nodes that already have them get nothing.\n\nExample:\n  clusterkit images push -i hosts.ini clusterkit/prometheus:sid"
    )]
    Push {
        /// Images (name:tag).
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// `clusterkit known-hosts` subcommands.
#[derive(Debug, Subcommand)]
enum KnownHostsCmd {
    /// Forget a node's recorded host key (after a reinstall); the next connection records the new one.
    Forget {
        /// The node.
        node: String,
    },
}

/// Runs a command; the return value is the exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let color = color_stderr(cli.color);
    // The description, loaded; its problems printed and exit code 3 when
    // it has errors.
    macro_rules! loaded {
        ($input:expr) => {
            match load(&$input, color)? {
                Some(l) => l,
                None => return Ok(exit::INVALID),
            }
        };
    }
    crate::remote::VERBOSE.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    crate::remote::STRICT.store(cli.strict_host_keys, std::sync::atomic::Ordering::Relaxed);
    crate::remote::LOCK_WAIT.store(
        cli.lock_wait.as_secs(),
        std::sync::atomic::Ordering::Relaxed,
    );
    match cli.command {
        Command::Init {
            inventory,
            output,
            force,
        } => match spec::init(inventory.as_deref(), &output, force) {
            Ok(warnings) => {
                print_problems(&warnings, color);
                let o = output.display();
                println!("wrote {o}: edit it, then run `clusterkit validate -c {o}`");
                Ok(exit::OK)
            }
            Err(SpecError::Invalid(problems)) => Ok(invalid(&problems, color)),
            Err(e) => Err(e.into()),
        },
        Command::Sandbox { name, cmd } => crate::sandbox::run(&name, cmd),
        Command::Check { input, json } => crate::remote::check(&loaded!(input), false, json),
        Command::Down { input, purge, yes } => crate::down::run(&loaded!(input), purge, yes),
        Command::Doctor { input, json } => crate::doctor::run(&loaded!(input), json),
        Command::Status { input, json } => crate::status::run(&loaded!(input), json),
        Command::Rebalance { input } => {
            let loaded = loaded!(input);
            crate::up::run(
                &loaded,
                Some(clusterkit_ops::Phase::Rebalance),
                false,
                false,
                crate::up::ProgressMode::Plain,
                true,
            )
        }
        Command::Deploy { input, file, name } => {
            crate::up::deploy_file(&loaded!(input), &file, name.as_deref())
        }
        Command::Up {
            input,
            sandbox,
            only,
            json,
            dry_run,
            progress,
            no_rebalance,
        } => {
            let input = if sandbox {
                let mut cfg = clusterkit_sandbox::SandboxConfig::new("clusterkit");
                // The ACME CA beside the nodes, the ingress on: the example
                // app ends served at https://app.clusterkit.test.
                cfg.ca = true;
                let p = |m: &str| eprintln!("[sandbox] {m}");
                // The storage, monitoring, ingress and CA images: built here
                // from Debian's packages (cached), sent to the nodes that lack
                // them by `up`; the CA starts with the nodes.
                clusterkit_sandbox::build_service_images(&p)?;
                let summary = clusterkit_sandbox::up(&cfg, &p)?;
                Input {
                    config: Some(summary.config),
                    inventory: None,
                }
            } else {
                input
            };
            let loaded = loaded!(input);
            crate::up::run(&loaded, only, json, dry_run, progress, !no_rebalance)
        }
        Command::Upgrade { input, component } => crate::upgrade::run(&loaded!(input), component),
        Command::Backup {
            cmd: Some(crate::backup::BackupCmd::RunSchedule { runner }),
            ..
        } => crate::schedule::run(&runner),
        Command::Backup {
            input,
            to,
            schedule,
            image,
            cmd,
        } => {
            let loaded = loaded!(input);
            match cmd {
                None => match schedule {
                    Some(every) => crate::schedule::set(&loaded, &every, &to, &image),
                    None => crate::backup::backup(&loaded, &to),
                },
                Some(crate::backup::BackupCmd::RunSchedule { .. }) => {
                    unreachable!("handled above")
                }
                Some(crate::backup::BackupCmd::List { from }) => {
                    crate::backup::list(&loaded, from.as_deref())
                }
                Some(crate::backup::BackupCmd::Copy { from, dir }) => {
                    crate::backup::copy(&loaded, &from, &dir)
                }
            }
        }
        Command::Restore {
            input,
            from,
            s3_endpoint,
            s3_region,
            unsealed,
        } => {
            let source = s3_endpoint
                .map(|e| crate::backup::s3_source(&e, s3_region.as_deref()))
                .transpose()?;
            let loaded = loaded!(input);
            // The state is written from the backup before any node is reached.
            crate::remote::hold_state_dir(&loaded, "restore")?;
            crate::backup::restore(
                &loaded,
                &|| load(&input, color),
                &from,
                source.as_ref(),
                unsealed,
            )
        }
        Command::Node { input, cmd } => {
            let loaded = loaded!(input);
            // The state records the node's removal before any node is reached.
            crate::remote::hold_state_dir(&loaded, "node")?;
            crate::node::run(&loaded, &|| load(&input, color), cmd)
        }
        Command::Swarm { input, cmd } => crate::swarm::run(&loaded!(input), cmd),
        Command::Monitor { input, cmd } => crate::monitor::run(&loaded!(input), cmd),
        Command::Ingress {
            cmd: crate::ingress::IngressCmd::Serve { options },
            ..
        } => crate::ingress::serve(&options),
        Command::Ingress { input, cmd } => crate::ingress::run(&loaded!(input), cmd),
        Command::Storage { input, cmd } => crate::storage::run(&loaded!(input), cmd),
        Command::Wg { input, cmd } => crate::mesh::run(&loaded!(input), cmd),
        Command::Images {
            input,
            cmd: ImagesCmd::Push { images },
        } => crate::remote::push_images(&loaded!(input), &images),
        Command::KnownHosts {
            input,
            cmd: KnownHostsCmd::Forget { node },
        } => crate::remote::forget(&loaded!(input), &node),
        Command::Validate { input } => {
            let loaded = loaded!(input);
            let s = &loaded.built.spec;
            let p = plan(s);
            println!(
                "ok: {} node(s), {} manager(s) (tolerates {} loss(es)), mesh {}, {} warning(s)",
                s.nodes.len(),
                p.swarm.managers,
                p.swarm.tolerates,
                s.mesh.cidr,
                loaded.built.warnings.0.len()
            );
            Ok(exit::OK)
        }
        Command::Plan { input, json } => {
            let loaded = loaded!(input);
            let p = plan(&loaded.built.spec);
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &p)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", table(&p))?;
            }
            if loaded.save_state()? {
                eprintln!("recorded mesh addresses in {}", loaded.state_path.display());
            }
            Ok(exit::OK)
        }
    }
}

/// A parser of one of the library's named choices (`--only`'s phases,
/// `--component`'s components): each listed in `--help` with its line.
fn choices<T>(
    all: impl IntoIterator<Item = T>,
    named: fn(T) -> (&'static str, &'static str),
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = all
        .into_iter()
        .map(named)
        .map(|(n, about)| PossibleValue::new(n).help(about));
    PossibleValuesParser::new(values).map(|s| s.parse().expect("one of the values listed"))
}

/// Loads the description, printing every problem; `None` when it has errors.
fn load(input: &Input, color: bool) -> anyhow::Result<Option<Loaded>> {
    let config = match (&input.config, &input.inventory) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(_)) => None,
        (None, None) => {
            let default = PathBuf::from("clusterkit.toml");
            if !default.exists() {
                bail!("no cluster description here: pass -i hosts.ini or -c clusterkit.toml, or write one with `clusterkit init`");
            }
            Some(default)
        }
    };
    match spec::load(config.as_deref(), input.inventory.as_deref()) {
        Ok(loaded) => {
            print_problems(&loaded.built.warnings, color);
            Ok(Some(loaded))
        }
        Err(SpecError::Invalid(problems)) => {
            invalid(&problems, color);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints a description's problems and the count; exit code 3.
fn invalid(problems: &Problems, color: bool) -> u8 {
    print_problems(problems, color);
    eprintln!(
        "error: {} error(s), {} warning(s): nothing was changed",
        problems.errors().count(),
        problems.warnings().count()
    );
    exit::INVALID
}

fn table(p: &ClusterPlan) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header([
        "NODE",
        "SSH",
        "MESH ADDRESS",
        "ROLE",
        "PEERS",
        "SERVICES",
    ]);
    for n in &p.nodes {
        // Every other node: named when they are few.
        let peers = if n.peers <= 4 {
            p.nodes
                .iter()
                .filter(|o| o.name != n.name)
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!("{} nodes", n.peers)
        };
        t.add_row([
            n.name.to_string(),
            n.ssh.clone(),
            n.mesh_address.to_string(),
            format!("{:?}", n.role).to_lowercase(),
            peers,
            n.services.join(", "),
        ]);
    }
    let mut out = format!(
        "cluster {}: mesh {} (udp/{}, mtu {}, {:?} backend), swarm {} manager(s) + {} worker(s), quorum {}, tolerates {} loss(es)\n",
        p.cluster,
        p.mesh.cidr,
        p.mesh.port,
        p.mesh.mtu,
        p.mesh.backend,
        p.swarm.managers,
        p.swarm.workers,
        p.swarm.quorum,
        p.swarm.tolerates
    )
    .to_lowercase();
    out.push_str(&t.to_string());
    if !p.services.is_empty() {
        out.push_str("\n\ncluster services:\n");
        for s in &p.services {
            out.push_str(&format!(
                "  {:<14} {:<11} {}\n",
                s.name, s.stack, s.placement
            ));
        }
    }
    for s in &p.stacks {
        out.push_str(&format!("  stack {:<8} {}\n", s.name, s.file));
    }
    out.trim_end().to_string()
}
