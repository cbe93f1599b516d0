//! Mesh address allocation: deterministic, and stable across runs.
//!
//! A node keeps the address it had (from the state file) as long as it stays in
//! the CIDR; a pinned address always wins; new nodes get the lowest free
//! addresses, never the network or broadcast address.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::names::NodeName;

/// The result of [`allocate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    /// Each node's mesh address.
    pub addresses: BTreeMap<NodeName, Ipv4Addr>,
    /// Nodes whose earlier address could not be kept (outside a changed CIDR, or
    /// taken by a pin), with that earlier address.
    pub renumbered: Vec<(NodeName, Ipv4Addr)>,
}

/// Not enough addresses in the mesh CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cidr} holds {capacity} node addresses, {needed} are needed")]
pub struct Exhausted {
    /// The CIDR.
    pub cidr: Ipv4Net,
    /// How many node addresses it holds.
    pub capacity: u64,
    /// How many nodes need one.
    pub needed: usize,
}

/// How many node addresses `cidr` holds (network and broadcast excluded).
pub fn capacity(cidr: Ipv4Net) -> u64 {
    match cidr.prefix_len() {
        32 => 1,
        31 => 2,
        p => (1u64 << (32 - p)) - 2,
    }
}

/// Whether `addr` can be a node's address in `cidr`.
pub fn usable(cidr: Ipv4Net, addr: Ipv4Addr) -> bool {
    cidr.contains(&addr)
        && (cidr.prefix_len() >= 31 || (addr != cidr.network() && addr != cidr.broadcast()))
}

/// Gives every node a mesh address.
///
/// `nodes` are in inventory order, each with its pinned address if any (pins are
/// assumed usable and distinct: [`crate::spec`] checks them first). `previous`
/// is what the state file recorded.
pub fn allocate(
    cidr: Ipv4Net,
    nodes: &[(NodeName, Option<Ipv4Addr>)],
    previous: &BTreeMap<NodeName, Ipv4Addr>,
) -> Result<Allocation, Exhausted> {
    if capacity(cidr) < nodes.len() as u64 {
        return Err(Exhausted {
            cidr,
            capacity: capacity(cidr),
            needed: nodes.len(),
        });
    }
    let pinned: HashSet<Ipv4Addr> = nodes.iter().filter_map(|(_, p)| *p).collect();
    let mut used: HashSet<Ipv4Addr> = pinned.clone();
    let mut out = Allocation::default();
    let mut waiting = Vec::new();
    for (name, pin) in nodes {
        if let Some(p) = pin {
            out.addresses.insert(name.clone(), *p);
            continue;
        }
        match previous.get(name) {
            Some(prev) if usable(cidr, *prev) && !pinned.contains(prev) && used.insert(*prev) => {
                out.addresses.insert(name.clone(), *prev);
            }
            Some(prev) => {
                out.renumbered.push((name.clone(), *prev));
                waiting.push(name);
            }
            None => waiting.push(name),
        }
    }
    let mut free = cidr.hosts().filter(|a| usable(cidr, *a));
    for name in waiting {
        let addr = free.by_ref().find(|a| !used.contains(a)).ok_or(Exhausted {
            cidr,
            capacity: capacity(cidr),
            needed: nodes.len(),
        })?;
        used.insert(addr);
        out.addresses.insert(name.clone(), addr);
    }
    Ok(out)
}
