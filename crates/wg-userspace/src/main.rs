//! `clusterkit-wg-userspace IFACE`: a WireGuard interface in userspace, built on
//! boringtun's `device` module, for nodes whose kernel has no WireGuard.
//!
//! It behaves as wg-quick expects of a userspace implementation
//! (`WG_QUICK_USERSPACE_IMPLEMENTATION`): it creates the TUN interface and the
//! configuration socket `/var/run/wireguard/IFACE.sock` (so `wg` and `wg-quick`
//! configure it as they would the kernel's), goes to the background, and
//! returns only once the interface exists, with a non-zero status if it could
//! not be created.

use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;

use boringtun::device::{DeviceConfig, DeviceHandle};
use clap::Parser;

/// A userspace WireGuard interface (boringtun), configured with `wg`/`wg-quick`.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Example (what wg-quick does):\n  WG_QUICK_USERSPACE_IMPLEMENTATION=/usr/local/bin/clusterkit-wg-userspace wg-quick up wg0"
)]
struct Args {
    /// Interface to create (e.g. wg0).
    interface: String,
    /// Stay in the foreground and log to stderr.
    #[arg(short, long)]
    foreground: bool,
    /// Worker threads.
    #[arg(long, env = "WG_THREADS", default_value_t = 2)]
    threads: usize,
    /// Log file when in the background.
    #[arg(
        long,
        env = "WG_LOG_FILE",
        default_value = "/var/log/clusterkit-wg-userspace.log"
    )]
    log: std::path::PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.interface.is_empty() || args.interface.len() > 15 {
        eprintln!(
            "clusterkit-wg-userspace: `{}` is not an interface name (1 to 15 characters)",
            args.interface
        );
        return ExitCode::from(2);
    }
    // The child tells the waiting parent whether the interface came up.
    let (parent_end, child_end) = match UnixDatagram::pair() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("clusterkit-wg-userspace: socketpair: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.foreground {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .init();
    } else {
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.log)
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "clusterkit-wg-userspace: cannot open {}: {e}",
                    args.log.display()
                );
                return ExitCode::FAILURE;
            }
        };
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(log))
            .with_ansi(false)
            .init();
        let iface = args.interface.clone();
        let daemon = daemonize::Daemonize::new()
            .working_directory("/")
            .privileged_action(|| ());
        // `execute` forks: the parent waits for the child's word, then exits.
        match daemon.execute() {
            daemonize::Outcome::Parent(Ok(_)) => {
                let mut b = [0u8; 1];
                return match parent_end.recv(&mut b) {
                    Ok(1) if b[0] == 1 => ExitCode::SUCCESS,
                    _ => {
                        eprintln!(
                            "clusterkit-wg-userspace: {iface} did not come up; see {}",
                            args.log.display()
                        );
                        ExitCode::FAILURE
                    }
                };
            }
            daemonize::Outcome::Parent(Err(e)) => {
                eprintln!("clusterkit-wg-userspace: cannot go to the background: {e}");
                return ExitCode::FAILURE;
            }
            daemonize::Outcome::Child(Err(e)) => {
                eprintln!("clusterkit-wg-userspace: cannot go to the background: {e}");
                let _ = child_end.send(&[0]);
                return ExitCode::FAILURE;
            }
            daemonize::Outcome::Child(Ok(_)) => {}
        }
    }
    let config = DeviceConfig {
        n_threads: args.threads.max(1),
        use_connected_socket: true,
        use_multi_queue: true,
        uapi_fd: -1,
    };
    let mut device = match DeviceHandle::new(&args.interface, config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "clusterkit-wg-userspace: cannot create {}: {e:?}",
                args.interface
            );
            let _ = child_end.send(&[0]);
            return ExitCode::FAILURE;
        }
    };
    let _ = child_end.send(&[1]);
    drop(child_end);
    device.wait();
    ExitCode::SUCCESS
}
