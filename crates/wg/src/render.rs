//! Rendering of standard wg-quick files (pure).

use crate::model::NodeMesh;

/// The `[Interface]` part: a change here needs the interface restarted;
/// a change in the peers alone is applied live.
pub fn interface_section(m: &NodeMesh) -> String {
    format!(
        "[Interface]\n\
         Address = {addr}/{prefix}\n\
         ListenPort = {port}\n\
         MTU = {mtu}\n\
         # The private key stays in its own file (0600), never in this one.\n\
         PostUp = wg set %i private-key {key}\n",
        addr = m.address,
        prefix = m.prefix,
        port = m.listen_port,
        mtu = m.mtu,
        key = m.key_file(),
    )
}

/// The whole `/etc/wireguard/IFACE.conf`. It holds no private key.
///
/// ```
/// # use clusterkit_wg::model::*;
/// let m = NodeMesh { node: "node1".into(), interface: "wg0".into(), address: "10.0.0.1".parse().unwrap(),
///     prefix: 24, listen_port: 51820, mtu: 1420, peers: vec![] };
/// assert!(clusterkit_wg::render::wg_quick(&m).contains("Address = 10.0.0.1/24"));
/// ```
pub fn wg_quick(m: &NodeMesh) -> String {
    let mut out = format!(
        "# {}: WireGuard mesh of node {}, written by clusterkit. Do not edit.\n",
        m.conf_file(),
        m.node
    );
    out.push_str(&interface_section(m));
    for p in &m.peers {
        out.push_str(&format!(
            "\n[Peer]\n# {name}\nPublicKey = {key}\nAllowedIPs = {ip}/32\nEndpoint = {endpoint}\n",
            name = p.name,
            key = p.public_key,
            ip = p.mesh_address,
            endpoint = p.endpoint,
        ));
        if p.keepalive > 0 {
            out.push_str(&format!("PersistentKeepalive = {}\n", p.keepalive));
        }
    }
    out
}

/// Shell that makes the live interface's peers exactly `m.peers`, without
/// restarting it: unwanted peers are removed, missing ones added, and a peer
/// whose settings differ is removed and added again. A peer already right is
/// not touched, so its session goes on. (boringtun 0.7 cannot modify a peer in
/// place: it panics and its configuration socket hangs; removing and adding
/// works on both backends.)
pub fn sync_peers_script(m: &NodeMesh) -> String {
    let wanted: Vec<&str> = m.peers.iter().map(|p| p.public_key.as_str()).collect();
    let mut s = format!(
        "set -e\nIF={iface}\n\
         cur=$(wg show \"$IF\" dump | tail -n +2)\n\
         for p in $(printf '%s\\n' \"$cur\" | cut -f1); do case \" {keys} \" in *\" $p \"*) ;; *) wg set \"$IF\" peer \"$p\" remove ;; esac; done\n\
         want() {{\n\
         \x20 line=$(printf '%s\\n' \"$cur\" | awk -F'\\t' -v k=\"$1\" '$1 == k {{ print $3 \" \" $4 \" \" $8 }}')\n\
         \x20 [ \"$line\" = \"$3 $2 $4\" ] && return 0\n\
         \x20 [ -n \"$line\" ] && wg set \"$IF\" peer \"$1\" remove\n\
         \x20 wg set \"$IF\" peer \"$1\" allowed-ips \"$2\" endpoint \"$3\" persistent-keepalive \"$4\"\n\
         }}\n",
        iface = m.interface,
        keys = wanted.join(" "),
    );
    for p in &m.peers {
        s.push_str(&format!(
            "want {key} {ip}/32 {endpoint} {ka}\n",
            key = p.public_key,
            ip = p.mesh_address,
            endpoint = p.endpoint,
            ka = if p.keepalive == 0 {
                "off".to_string()
            } else {
                p.keepalive.to_string()
            },
        ));
    }
    s
}

/// Ports the cluster uses that must be reachable over the mesh only:
/// Swarm (2377/tcp, 7946/tcp+udp, 4789/udp), Garage (3900-3903/tcp), MinIO (9000-9001/tcp),
/// node-exporter (9100), cAdvisor (8080), Prometheus (9090), Alertmanager
/// (9093), Grafana (3000).
pub const MESH_ONLY_TCP: &[u16] = &[
    2377, 7946, 3900, 3901, 3902, 3903, 9000, 9001, 9100, 8080, 9090, 9093, 3000,
];
/// UDP ports reachable over the mesh only.
pub const MESH_ONLY_UDP: &[u16] = &[7946, 4789];

/// The firewall script: the cluster's ports are dropped unless they arrive on
/// the mesh interface, loopback, or `docker_gwbridge` (the node's own swarm
/// containers reaching its mesh address, e.g. Prometheus scraping the local
/// node-exporter); SSH and the WireGuard port stay open. Ports that containers
/// publish (Prometheus, Grafana, Alertmanager in host mode, or through the
/// ingress routing mesh) are DNAT-ed by the engine and *forwarded*, so the
/// INPUT chain never sees them: a second chain, jumped to from `DOCKER-USER`
/// (the chain the engine leaves to its users), drops connections whose
/// original destination port is one of the cluster's unless they came over
/// the mesh. The same rules for IPv6 (`ip6tables`) wherever the kernel has
/// IPv6: a node with a public IPv6 address is closed there too, and a failure
/// to close it fails the script (and so the engine's start, see
/// [`ENGINE_DROPIN`]).
/// Idempotent: the chains are rebuilt each time. iptables where present, else
/// nftables (an `inet` table: both families).
pub fn firewall_script(interface: &str) -> String {
    let tcp = MESH_ONLY_TCP.iter().map(u16::to_string).collect::<Vec<_>>();
    let udp = MESH_ONLY_UDP.iter().map(u16::to_string).collect::<Vec<_>>();
    format!(
        "#!/bin/sh\n\
         # Written by clusterkit: the cluster's ports answer over the mesh ({iface}) only, IPv4 and IPv6.\n\
         set -e\n\
         rules() {{\n\
         \x20 t=$1\n\
         \x20 $t -N CLUSTERKIT-MESH 2>/dev/null || $t -F CLUSTERKIT-MESH\n\
         \x20 $t -A CLUSTERKIT-MESH -i lo -j RETURN\n\
         \x20 $t -A CLUSTERKIT-MESH -i {iface} -j RETURN\n\
         \x20 $t -A CLUSTERKIT-MESH -i docker_gwbridge -j RETURN\n\
         \x20 $t -A CLUSTERKIT-MESH -p tcp -m multiport --dports {tcp} -j DROP\n\
         \x20 $t -A CLUSTERKIT-MESH -p udp -m multiport --dports {udp} -j DROP\n\
         \x20 $t -C INPUT -j CLUSTERKIT-MESH 2>/dev/null || $t -I INPUT -j CLUSTERKIT-MESH\n\
         \x20 # Ports published by containers are DNAT-ed and forwarded: INPUT never sees them.\n\
         \x20 $t -N CLUSTERKIT-FWD 2>/dev/null || $t -F CLUSTERKIT-FWD\n\
         \x20 for i in lo {iface} docker_gwbridge docker0; do $t -A CLUSTERKIT-FWD -i \"$i\" -j RETURN; done\n\
         \x20 for p in {tcp_s}; do $t -A CLUSTERKIT-FWD -p tcp -m conntrack --ctstate DNAT --ctorigdstport \"$p\" -j DROP; done\n\
         \x20 for p in {udp_s}; do $t -A CLUSTERKIT-FWD -p udp -m conntrack --ctstate DNAT --ctorigdstport \"$p\" -j DROP; done\n\
         \x20 $t -N DOCKER-USER 2>/dev/null || true\n\
         \x20 $t -C DOCKER-USER -j CLUSTERKIT-FWD 2>/dev/null || $t -I DOCKER-USER -j CLUSTERKIT-FWD\n\
         }}\n\
         if command -v iptables >/dev/null 2>&1; then\n\
         \x20 rules iptables\n\
         \x20 if [ -e /proc/net/if_inet6 ]; then rules ip6tables; fi\n\
         else\n\
         \x20 nft add table inet clusterkit\n\
         \x20 nft 'add chain inet clusterkit input {{ type filter hook input priority -10 ; }}'\n\
         \x20 nft flush chain inet clusterkit input\n\
         \x20 nft add rule inet clusterkit input iifname != {{ lo, {iface}, docker_gwbridge }} tcp dport {{ {tcp_n} }} drop\n\
         \x20 nft add rule inet clusterkit input iifname != {{ lo, {iface}, docker_gwbridge }} udp dport {{ {udp_n} }} drop\n\
         \x20 nft 'add chain inet clusterkit forward {{ type filter hook forward priority -10 ; }}'\n\
         \x20 nft flush chain inet clusterkit forward\n\
         \x20 nft add rule inet clusterkit forward iifname != {{ lo, {iface}, docker_gwbridge, docker0 }} ct status dnat meta l4proto tcp ct original proto-dst {{ {tcp_n} }} drop\n\
         \x20 nft add rule inet clusterkit forward iifname != {{ lo, {iface}, docker_gwbridge, docker0 }} ct status dnat meta l4proto udp ct original proto-dst {{ {udp_n} }} drop\n\
         fi\n",
        iface = interface,
        tcp = tcp.join(","),
        udp = udp.join(","),
        tcp_n = tcp.join(", "),
        tcp_s = tcp.join(" "),
        udp_s = udp.join(" "),
        udp_n = udp.join(", "),
    )
}

/// Exits non-zero when the firewall's rules are not in place (a chain
/// flushed or a jump deleted by hand, another tool's restart): `up` then
/// applies them again even though its files did not change.
pub const FIREWALL_CHECK: &str = "if command -v iptables >/dev/null 2>&1; then\n\
    \x20 iptables -C INPUT -j CLUSTERKIT-MESH 2>/dev/null && iptables -C DOCKER-USER -j CLUSTERKIT-FWD 2>/dev/null \
    && iptables -S CLUSTERKIT-MESH 2>/dev/null | grep -q -- '-j DROP' || exit 1\n\
    \x20 if [ -e /proc/net/if_inet6 ]; then ip6tables -C INPUT -j CLUSTERKIT-MESH 2>/dev/null && ip6tables -C DOCKER-USER -j CLUSTERKIT-FWD 2>/dev/null \
    && ip6tables -S CLUSTERKIT-MESH 2>/dev/null | grep -q -- '-j DROP' || exit 1; fi\n\
    else\n\
    \x20 nft list chain inet clusterkit input 2>/dev/null | grep -q drop || exit 1\n\
    fi\n";

/// Takes the firewall down (both families, both chains and their jumps, the
/// nftables table): what `wg down` runs.
pub const FIREWALL_DOWN: &str = "for t in iptables ip6tables; do\n\
    \x20 command -v $t >/dev/null 2>&1 || continue\n\
    \x20 while $t -D INPUT -j CLUSTERKIT-MESH 2>/dev/null; do :; done\n\
    \x20 while $t -D DOCKER-USER -j CLUSTERKIT-FWD 2>/dev/null; do :; done\n\
    \x20 for c in CLUSTERKIT-MESH CLUSTERKIT-FWD; do $t -F $c 2>/dev/null || true; $t -X $c 2>/dev/null || true; done\n\
    done\n\
    if command -v nft >/dev/null 2>&1; then nft delete table inet clusterkit 2>/dev/null || true; fi\n";

/// The systemd unit applying [`firewall_script`] at every boot, before the mesh and the engine.
pub const FIREWALL_UNIT: &str = "[Unit]\n\
    Description=clusterkit firewall: cluster ports over the mesh only\n\
    DefaultDependencies=no\n\
    After=local-fs.target\n\
    Before=network-pre.target wg-quick.target docker.service\n\
    Wants=network-pre.target\n\n\
    [Service]\n\
    Type=oneshot\n\
    RemainAfterExit=yes\n\
    ExecStart=/usr/local/lib/clusterkit/firewall.sh\n\n\
    [Install]\n\
    WantedBy=multi-user.target\n";

/// The Docker Engine's drop-in: the firewall is applied again right before
/// the engine starts, and a failure stops the engine from starting, so it
/// never listens on the cluster's ports with them open to the world (a unit
/// `Requires=` would also restart the engine each time the firewall's rules
/// change; this does not).
pub const ENGINE_DROPIN: &str =
    "# Written by clusterkit: the engine starts only behind the mesh's firewall.\n\
    [Unit]\n\
    Wants=clusterkit-firewall.service\n\
    After=clusterkit-firewall.service\n\n\
    [Service]\n\
    ExecStartPre=/usr/local/lib/clusterkit/firewall.sh\n";

/// The drop-in that lets wg-quick fall back to clusterkit's userspace implementation.
pub fn userspace_dropin(binary: &str) -> String {
    format!(
        "# Written by clusterkit: where the kernel has no WireGuard, wg-quick runs this instead.\n\
         [Service]\nEnvironment=WG_QUICK_USERSPACE_IMPLEMENTATION={binary}\n"
    )
}
