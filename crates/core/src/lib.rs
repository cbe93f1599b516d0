//! clusterkit-core: the validated model of a cluster and what every other
//! clusterkit crate shares.
//!
//! - [`inventory`] reads Ansible inventories (INI and YAML) and [`config`] reads
//!   `clusterkit.toml`, keeping the location of every value;
//! - [`spec::build`] / [`spec::load`] check everything at once and produce a
//!   [`ClusterSpec`], or [`Problems`] that name `file:line:col`, the culprit and the fix;
//! - [`alloc`] hands out mesh addresses that stay stable, recorded by [`state`];
//! - [`plan::plan`] says what each node gets.
//!
//! ```
//! use clusterkit_core::{inventory::{Format, Inventory}, source::SourceFile, spec, state::State, Problems};
//! let file = SourceFile::new("hosts.ini", "[servers]\nnode1 ansible_host=192.168.1.1\nnode2 ansible_host=192.168.1.2\nnode3 ansible_host=192.168.1.3\n");
//! let mut problems = Problems::default();
//! let inv = Inventory::parse(file, Format::Ini, &mut problems);
//! let built = spec::build(None, Some(&inv), &State::default(), &|_| None).unwrap();
//! assert_eq!(built.spec.nodes[2].mesh_address.to_string(), "10.0.0.3");
//! ```

pub mod alloc;
pub mod backup;
pub mod config;
pub mod diag;
#[cfg(feature = "remote")]
pub mod engine;
pub mod inventory;
#[cfg(feature = "remote")]
pub mod lock;
pub mod names;
pub mod plan;
#[cfg(feature = "remote")]
pub mod reporters;
#[cfg(feature = "remote")]
pub mod roll;
pub mod schedule;
pub mod source;
pub mod spec;
pub mod stack;
pub mod state;
#[cfg(feature = "remote")]
pub mod transport;

pub use diag::{Invalid, Problem, Problems, Severity, SpecError};
pub use names::{MeshAddr, NodeName, Port};
pub use spec::ClusterSpec;
