//! `clusterkit down`: the cluster taken apart, in the reverse order of `up`:
//! stacks (applications, monitoring, storage), the volume driver, the swarm,
//! the mesh. Data stay on the nodes unless `--purge`.

use std::io::{BufRead, IsTerminal, Write};

use clusterkit_core::spec::Loaded;

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
    let notices = clusterkit_core::reporters::Notices;
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &notices);
    let report = crate::block_on(clusterkit_ops::down::down(
        &session,
        clusterkit_ops::down::DownOptions { purge },
    ))?;
    println!(
        "cluster {} is down on {} node(s){}{}",
        spec.name,
        report.nodes.len(),
        if purge {
            ", data deleted"
        } else {
            "; data kept"
        },
        if report.unreachable.is_empty() {
            String::new()
        } else {
            format!(
                "; {} unreachable node(s) untouched",
                report.unreachable.len()
            )
        }
    );
    Ok(if report.unreachable.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}
