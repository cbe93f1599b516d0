//! clusterkit's one integration-test crate: a module per capability, all
//! driving the real `clusterkit` binary.

mod address_plan;
mod backup;
mod bin;
mod day2;
mod doctor;
mod examples;
mod hundred;
mod ingress;
mod inventory_errors;
mod layout;
mod lock;
mod monitor;
mod nine;
mod plan;
mod reboot;
mod sandbox;
mod storage;
mod swarm;
mod transport;
mod up;
mod wg;
