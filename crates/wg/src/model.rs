//! The mesh as values: keys, peers, interfaces. Types validate on construction.

use std::fmt;

use std::collections::BTreeMap;

use clusterkit_core::spec::ClusterSpec;
use serde::Serialize;

/// A WireGuard public key: 32 bytes, base64 (44 characters). Private keys
/// never leave their node and have no type here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct WgPublicKey(String);

impl WgPublicKey {
    /// Checks the text of a public key, as `wg pubkey` prints it.
    pub fn parse(text: &str) -> Result<Self, clusterkit_core::Invalid> {
        let t = text.trim();
        let ok = t.len() == 44
            && t.ends_with('=')
            && t[..43]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
        if ok {
            Ok(Self(t.to_string()))
        } else {
            Err((format!("`{t}` is not a WireGuard public key (44 base64 characters)")).into())
        }
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One peer of a node's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// The peer's node name (a comment in the file).
    pub name: String,
    /// Its public key.
    pub public_key: WgPublicKey,
    /// Its mesh address; AllowedIPs is this /32.
    pub mesh_address: clusterkit_core::MeshAddr,
    /// `host:port` it listens on.
    pub endpoint: String,
    /// PersistentKeepalive seconds, 0 for none.
    pub keepalive: u16,
}

/// A node's interface and its peers: what `/etc/wireguard/IFACE.conf` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeMesh {
    /// The node's name.
    pub node: String,
    /// Interface name (`wg0`).
    pub interface: String,
    /// The node's mesh address.
    pub address: clusterkit_core::MeshAddr,
    /// Prefix length of the mesh network.
    pub prefix: u8,
    /// UDP listen port.
    pub listen_port: u16,
    /// Interface MTU.
    pub mtu: u16,
    /// Every other node.
    pub peers: Vec<Peer>,
}

impl NodeMesh {
    /// The private key file on the node (mode 0600; never read by clusterkit).
    pub fn key_file(&self) -> String {
        format!("/etc/wireguard/{}.key", self.interface)
    }

    /// The wg-quick file on the node.
    pub fn conf_file(&self) -> String {
        format!("/etc/wireguard/{}.conf", self.interface)
    }
}

/// A peer's `Endpoint`: `host:port`, an IPv6 address in brackets
/// (`[2001:db8::1]:51820`), as wg and wg-quick read it.
pub fn endpoint(host: &str, port: u16) -> String {
    clusterkit_core::names::host_port(host, port)
}

/// Every node's interface and peers, from the spec and the nodes' public keys (pure).
pub fn plan(spec: &ClusterSpec, keys: &BTreeMap<String, WgPublicKey>) -> Vec<NodeMesh> {
    let peers: Vec<Peer> = spec
        .nodes
        .iter()
        .filter_map(|n| {
            keys.get(n.name.as_str()).map(|k| Peer {
                name: n.name.to_string(),
                public_key: k.clone(),
                mesh_address: n.mesh_address,
                endpoint: endpoint(&n.ssh.host, spec.mesh.port.get()),
                keepalive: spec.mesh.keepalive,
            })
        })
        .collect();
    spec.nodes
        .iter()
        .map(|n| NodeMesh {
            node: n.name.to_string(),
            interface: spec.mesh.interface.clone(),
            address: n.mesh_address,
            prefix: spec.mesh.cidr.prefix_len(),
            listen_port: spec.mesh.port.get(),
            mtu: spec.mesh.mtu,
            peers: peers
                .iter()
                .filter(|p| p.name != n.name.as_str())
                .cloned()
                .collect(),
        })
        .collect()
}
