//! traefik-openstack: OpenStack instances to Traefik dynamic configuration.
//!
//! One-way data path, one module per stage:
//! `openstack` (Keystone, Nova, Neutron) -> `inventory` (snapshot, changes-since)
//! -> `engine` (route component) -> `publish` (last good config) -> `server` (hyper).

pub mod config;
pub mod engine;
pub mod inventory;
pub mod metrics;
pub mod openstack;
pub mod publish;
pub mod server;
pub mod sync;
pub mod wit;
