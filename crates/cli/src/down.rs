//! `clusterkit down`: the cluster taken apart, in the reverse order of `up`:
//! stacks (applications, monitoring, storage), the volume driver, the swarm,
//! the mesh. Data stay on the nodes unless `--purge`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use clusterkit_core::spec::Loaded;
use clusterkit_core::transport::{fan_out, Cmd};

use crate::exit;

/// Runs `clusterkit down`.
pub fn run(loaded: &Loaded, purge: bool, yes: bool) -> anyhow::Result<u8> {
    let spec = &loaded.built.spec;
    let names: Vec<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
    let what = format!(
        "This removes every stack (applications, monitoring, storage), makes {} leave the swarm and takes the mesh down.\n{}",
        names.join(", "),
        if purge {
            format!(
                "--purge: the storage's data ({}), the mesh keys, Grafana's password, the stacks' volumes and /etc/clusterkit are DELETED on every node.",
                spec.storage.data_path
            )
        } else {
            "Data stay on the nodes (storage, volumes, keys): `clusterkit up` builds the cluster again on them.".into()
        }
    );
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("{what}\nrefusing without confirmation: pass --yes");
        }
        eprintln!("{what}\nType the cluster's name ({}) to go on:", spec.name);
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != spec.name.as_str() {
            eprintln!("not confirmed: nothing was changed");
            return Ok(exit::FAILURE);
        }
    }
    crate::block_on(async {
        let start = Instant::now();
        let say = |phase: &str, m: &str| {
            eprintln!("[{:>6.1}s] {phase:<7} {m}", start.elapsed().as_secs_f64())
        };
        let (nodes, failed) = crate::remote::connect(loaded, false).await;
        for (n, e) in &failed {
            say("ssh", &format!("{n}: unreachable, left as it is: {e}"));
        }
        if nodes.is_empty() {
            anyhow::bail!("no node is reachable: nothing was changed");
        }
        let _lock = crate::remote::lock_cluster(loaded, &nodes, "down").await?;
        // Stacks, through a manager in the swarm (none: nothing to remove).
        let mgr = clusterkit_core::stack::managers(&nodes, spec)
            .into_iter()
            .next();
        if let Some(m) = mgr {
            let in_swarm = m
                .exec_raw(
                    &Cmd::new("docker info -f '{{.Swarm.ControlAvailable}}'"),
                    None,
                )
                .await?
                .stdout_str()
                .trim()
                == "true";
            if in_swarm {
                let removed = clusterkit_swarm::remove_stacks(m.as_ref()).await?;
                say(
                    "stacks",
                    &if removed.is_empty() {
                        "none".to_string()
                    } else {
                        format!("removed {}", removed.join(", "))
                    },
                );
            }
        }
        for (n, r) in fan_out(&nodes, 16, |t| async move {
            clusterkit_monitor::keeper::remove(t).await?;
            clusterkit_storage::down(t, spec, purge).await?;
            clusterkit_swarm::leave(t).await?;
            if purge {
                // The stacks' volumes (labelled with their stack), and
                // everything clusterkit wrote.
                t.exec(&Cmd::new(
                    "docker volume ls -q --filter label=com.docker.stack.namespace | xargs -r docker volume rm -f >/dev/null\n\
                     rm -rf /etc/clusterkit /var/lib/clusterkit /var/cache/clusterkit",
                ))
                .await?;
            }
            clusterkit_wg::down(t, &spec.mesh.interface, purge).await?;
            anyhow::Ok(())
        })
        .await
        {
            match r {
                Ok(()) => say("node", &format!("{n}: Grafana's keeper and the volume driver removed, left the swarm, mesh down")),
                Err(e) => say("node", &format!("{n}: error: {e:#}")),
            }
        }
        if purge && failed.is_empty() {
            // The store is gone: the next one may keep another number of copies.
            let mut state = clusterkit_core::state::State::load(&loaded.state_path)?;
            if state.storage_replication.take().is_some() {
                state.save(&loaded.state_path)?;
            }
        }
        println!(
            "cluster {} is down on {} node(s){}{}",
            spec.name,
            nodes.len(),
            if purge {
                ", data deleted"
            } else {
                "; data kept"
            },
            if failed.is_empty() {
                String::new()
            } else {
                format!("; {} unreachable node(s) untouched", failed.len())
            }
        );
        Ok(if failed.is_empty() {
            exit::OK
        } else {
            exit::FAILURE
        })
    })
}
