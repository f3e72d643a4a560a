//! traefik-openstack: OpenStack instances to Traefik dynamic configuration.
//!
//! One-way data path, one module per stage:
//! `openstack` (Keystone, Nova, Neutron) -> `inventory` (snapshot, changes-since)
//! -> `engine` (route component) -> `publish` (last good config) -> `server` (hyper),
//! driven by `sync`. Off that path: `offline` reads and writes instances as
//! files (`render --instances`, `inventory`) and `policy_test` runs golden
//! cases for route modules (`test`).

pub mod config;
pub mod engine;
mod events;
pub mod inventory;
pub mod metrics;
pub mod offline;
pub mod openstack;
pub mod policy_test;
pub mod publish;
pub mod server;
pub mod sync;
pub mod wit;

#[cfg(feature = "test-support")]
pub mod testing;
