//! clusterkit-storage: distributed S3 storage on the cluster's nodes and a
//! Docker volume driver on it, so that a volume survives the loss of the node
//! it was used on.
//!
//! - [`render`]: what goes on the nodes, from the spec (pure, snapshotted):
//!   the Garage or MinIO stack, Garage's per-node configuration, the volume
//!   driver's rclone configuration and systemd unit.
//! - `up`: deploys it idempotently over the nodes' `Transport`s: secrets
//!   made on a manager (they never pass through this machine), the stack, the
//!   Garage layout over every storage node (one zone each), the S3 key and
//!   buckets, the volume driver on every node, then a probe object.
//! - `status`: per-node health and capacity, and how many more node losses
//!   the data tolerates now.
//! - `roll`: Garage's image replaced node by node (`up` never replaces
//!   every server's image at once).
//! - `s3::S3`: an aws-sdk-s3 client of the cluster's S3 (both backends).
//!
//! Without the default feature `remote`: [`render`], the constants and
//! [`S3Key`] alone (no SSH, S3 client or async runtime).
//!
//! ```
//! use clusterkit_storage::DriverConfig;
//! let spec = clusterkit_core::spec::example(3);
//! let driver = DriverConfig::for_node(&spec, spec.nodes[1].mesh_address);
//! assert_eq!(driver.endpoint, "http://10.0.0.2:3900");
//! assert!(driver.unit().contains("rclone serve docker"));
//! ```

#[cfg(feature = "remote")]
pub mod garage;
pub mod minio;
#[cfg(feature = "remote")]
pub mod phase;
#[cfg(feature = "remote")]
mod remote;
pub mod render;
#[cfg(feature = "remote")]
pub mod roll;
#[cfg(feature = "remote")]
pub mod s3;

use clusterkit_core::spec::{ClusterSpec, Node};

pub use render::{DriverConfig, GarageConfig, StackFiles, GARAGE_RPC_TIMEOUT_MS};

/// The Garage version clusterkit deploys and tests.
pub const GARAGE_VERSION: &str = "2.5.0";
/// Garage's own binary inside its container, whatever the image calls it:
/// the container's first process is the server (the stack sets no init), so
/// its executable is Garage. That is `/garage` in Garage's image and in the
/// sandbox's, `/usr/local/bin/garage` in the images clusterkit built before
/// it followed Garage's layout (a running server keeps its image until
/// `upgrade --component storage`, so both must answer). Run directly, with
/// no shell: Garage's image has none.
pub const GARAGE_IN_CONTAINER: &str = "/proc/1/exe";
/// The stack holding the storage servers.
pub const STACK: &str = "clusterkit-storage";
/// Garage's S3 API port (on the mesh address).
pub const S3_PORT: u16 = 3900;
/// Garage's RPC port.
pub const RPC_PORT: u16 = 3901;
/// Garage's admin API port (health, metrics).
pub const ADMIN_PORT: u16 = 3903;
/// The region the servers expect.
pub const S3_REGION: &str = "garage";
/// The volume driver's name: `docker volume create -d clusterkit`.
pub const DRIVER: &str = "clusterkit";
/// The bucket holding the volumes (one prefix per volume).
pub const BUCKET: &str = "volumes";
/// The bucket for clusterkit's own objects (probes, backups).
pub const INTERNAL_BUCKET: &str = "clusterkit";
/// Where the driver mounts volumes on a node.
pub const VOLUMES_BASE: &str = "/var/lib/clusterkit/volumes";
/// Where each node keeps the S3 key (mode 0600), the copy any controller reads.
pub const KEY_PATH: &str = "/etc/clusterkit/storage/s3-key";
/// Where the stack files go on the manager that deploys them.
pub const STACK_DIR: &str = "/etc/clusterkit/stacks/clusterkit-storage";

/// The nodes that hold a share of the storage.
pub fn storage_nodes(spec: &ClusterSpec) -> impl Iterator<Item = &Node> {
    spec.nodes.iter().filter(|n| n.storage)
}

/// The S3 access key clusterkit and the volume driver use. Its `Debug` hides
/// the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Key {
    /// Access key id (`GK` and 24 hex digits, Garage's format).
    pub id: String,
    /// Secret access key (64 hex digits).
    pub secret: String,
}

impl std::fmt::Debug for S3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Key {{ id: {}, secret: <redacted> }}", self.id)
    }
}

impl S3Key {
    /// A fresh key from the system's random source.
    pub fn generate() -> std::io::Result<Self> {
        use std::io::Read;
        let mut bytes = [0u8; 44];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes))?;
        Ok(Self {
            id: format!("GK{}", hex::encode(&bytes[..12])),
            secret: hex::encode(&bytes[12..]),
        })
    }

    /// The file form: id and secret on two lines.
    pub fn to_file(&self) -> String {
        format!("{}\n{}\n", self.id, self.secret)
    }

    /// Reads the file form. It comes from a node: letters and digits only
    /// (what Garage and [`S3Key::generate`] make), so it cannot add a line or
    /// a key to rclone's configuration.
    pub fn parse(text: &str) -> Option<Self> {
        let mut l = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let (id, secret) = (l.next()?, l.next()?);
        let plain = |s: &str, min: usize| {
            (min..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        (plain(id, 8) && plain(secret, 16)).then(|| Self {
            id: id.into(),
            secret: secret.into(),
        })
    }
}

#[cfg(feature = "remote")]
pub use remote::*;

#[cfg(all(test, feature = "remote"))]
mod tests;

#[cfg(all(test, feature = "remote"))]
mod scripted_tests;
