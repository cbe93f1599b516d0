//! MinIO's health, read from its unauthenticated health endpoints (pure:
//! the script each node runs, and what its answers mean).
//!
//! MinIO has no admin API clusterkit drives; its health endpoints say
//! enough for `storage status` and `doctor`: whether the server is online
//! (`/minio/health/live`), whether the cluster it sees has write and read
//! quorum (`/minio/health/cluster`, `/minio/health/cluster/read`: 200, else
//! 503, with the quorum in `X-Minio-Write-Quorum` / `X-Minio-Read-Quorum`),
//! and whether this server may go down without the cluster losing quorum
//! (`/minio/health/cluster?maintenance=true`: 200, else 412).

use serde::Serialize;

/// The endpoints asked, by the name the script prints before each answer.
pub const ENDPOINTS: [(&str, &str); 4] = [
    ("live", "/minio/health/live"),
    ("write", "/minio/health/cluster"),
    ("read", "/minio/health/cluster/read"),
    ("maintenance", "/minio/health/cluster?maintenance=true"),
];

/// MinIO's S3 and health port.
pub const PORT: u16 = 9000;

/// The script a storage node runs to ask its own server (on its mesh
/// address): for each endpoint, `== NAME`, the response's headers and
/// `code=NNN` (000: no answer within 5 s). Needs `curl` on the node.
pub fn health_script(mesh: &str) -> String {
    let mut s = String::from("command -v curl >/dev/null 2>&1 || { echo 'nocurl'; exit 0; }\n");
    for (name, path) in ENDPOINTS {
        s.push_str(&format!(
            "echo '== {name}'; curl -s -m 5 -o /dev/null -D - -w 'code=%{{http_code}}\\n' 'http://{mesh}:{PORT}{path}' || true\n"
        ));
    }
    s
}

/// What one MinIO server answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerHealth {
    /// The server is online (`live` answered 200).
    pub live: bool,
    /// The cluster it sees has write quorum.
    pub write: bool,
    /// The cluster it sees has read quorum.
    pub read: bool,
    /// This server may go down without the cluster losing quorum (`None`:
    /// no answer).
    pub may_go_down: Option<bool>,
    /// Drives needed for a write, as the server said.
    pub write_quorum: Option<u32>,
    /// Drives needed for a read, as the server said.
    pub read_quorum: Option<u32>,
    /// Drives healing now, as the server said.
    pub healing_drives: u32,
    /// Why nothing could be asked (no `curl` on the node).
    pub unasked: Option<String>,
}

/// Parses what [`health_script`] printed. Every value is a node's answer:
/// numbers are parsed or dropped, nothing else is kept.
pub fn parse_health(text: &str) -> ServerHealth {
    let mut h = ServerHealth::default();
    if text.lines().any(|l| l.trim() == "nocurl") {
        h.unasked = Some(
            "curl is not installed on the node: `apt-get install curl` there to read MinIO's health"
                .into(),
        );
        return h;
    }
    let mut section = "";
    let number = |l: &str| {
        l.split_once(':')
            .and_then(|(_, v)| v.trim().parse::<u32>().ok())
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("== ") {
            section = ENDPOINTS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(n, _)| *n);
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(code) = line.strip_prefix("code=") {
            let code: u16 = code.parse().unwrap_or(0);
            match section {
                "live" => h.live = code == 200,
                "write" => h.write = code == 200,
                "read" => h.read = code == 200,
                "maintenance" => {
                    h.may_go_down = match code {
                        200 => Some(true),
                        412 => Some(false),
                        _ => None,
                    }
                }
                _ => {}
            }
        } else if lower.starts_with("x-minio-write-quorum:") {
            h.write_quorum = number(line).or(h.write_quorum);
        } else if lower.starts_with("x-minio-read-quorum:") {
            h.read_quorum = number(line).or(h.read_quorum);
        } else if lower.starts_with("x-minio-healing-drives:") {
            h.healing_drives = h.healing_drives.max(number(line).unwrap_or(0));
        }
    }
    h
}

/// The cluster's health from its servers' answers: `healthy` when every
/// server is online and sees write and read quorum, `degraded` when some
/// server is not but one that is online sees write quorum, `unavailable`
/// otherwise. Returns it with the node losses still tolerated: 1 when every
/// online server may go down alone without quorum lost, else 0 (a lower
/// bound: MinIO says nothing of two at once).
pub fn judge(servers: &[ServerHealth]) -> (&'static str, usize) {
    let online: Vec<&ServerHealth> = servers.iter().filter(|s| s.live).collect();
    let writable = online.iter().any(|s| s.write);
    let all = !servers.is_empty()
        && online.len() == servers.len()
        && online.iter().all(|s| s.write && s.read);
    let health = if all {
        "healthy"
    } else if writable {
        "degraded"
    } else {
        "unavailable"
    };
    let tolerates = usize::from(
        writable && !online.is_empty() && online.iter().all(|s| s.may_go_down == Some(true)),
    );
    (health, tolerates)
}
