//! `clusterkit status`: one screen with the mesh, the swarm's quorum and
//! leader, storage, monitoring targets and application stacks. Read-only;
//! the data is [`clusterkit_ops::status::status`]'s.

use clusterkit_core::spec::Loaded;
use clusterkit_ops::status::Status;

use crate::exit;

/// Runs `clusterkit status`.
pub fn run(loaded: &Loaded, json: bool) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &notices);
    let st = crate::block_on(clusterkit_ops::status::status(&session));
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print(&st);
    }
    Ok(if st.healthy { exit::OK } else { exit::FAILURE })
}

fn print(st: &Status) {
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    println!("cluster {}", st.cluster);
    println!(
        "{} nodes     {} reachable{}",
        mark(st.unreachable.is_empty()),
        st.reachable.len(),
        st.unreachable
            .iter()
            .map(|u| format!("; {} unreachable: {}", u.node, u.error))
            .collect::<String>()
    );
    println!(
        "{} mesh      {}/{} pairs answer",
        mark(st.mesh_pairs > 0 && st.mesh_pairs_up == st.mesh_pairs),
        st.mesh_pairs_up,
        st.mesh_pairs
    );
    match &st.swarm {
        Some(s) => println!(
            "{} swarm     leader {}, {} manager(s), quorum {} {}, tolerates {} loss(es)",
            mark(s.has_quorum),
            s.leader.as_deref().unwrap_or("none"),
            s.managers.len(),
            s.quorum,
            if s.has_quorum { "held" } else { "LOST" },
            s.tolerates
        ),
        None => println!("FAIL swarm     no answer"),
    }
    if let Some(s) = &st.storage {
        println!(
            "{} storage   {} on {} node(s), {} copies, tolerates {} loss(es){}",
            mark(s.whole()),
            s.health,
            s.nodes.len(),
            s.replication,
            s.tolerates,
            match s.drivers_down() {
                d if d.is_empty() => String::new(),
                d => format!(
                    "; volume driver not serving on {} (`systemctl restart clusterkit-volumes` there, or `clusterkit up --only storage`)",
                    d.join(", ")
                ),
            }
        );
    }
    if let Some(m) = &st.monitoring {
        println!(
            "{} monitor   {}/{} targets up{}{}{}",
            mark(m.whole()),
            m.up,
            m.total,
            if m.down.is_empty() {
                String::new()
            } else {
                format!(" (down: {})", m.down.join(", "))
            },
            if m.firing.is_empty() {
                String::new()
            } else {
                format!("; alerts firing: {}", m.firing.join(", "))
            },
            if m.total == 0 {
                " (Prometheus runs but has found nothing to scrape yet: it discovers the swarm's tasks within a minute)"
            } else {
                ""
            }
        );
    }
    for s in &st.stacks {
        let ok = s.converged();
        println!(
            "{} stack     {}: {}",
            mark(ok),
            s.name,
            s.services
                .iter()
                .map(|(n, r)| format!("{n} {r}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for n in &st.notes {
        println!("FAIL {n}");
    }
}
