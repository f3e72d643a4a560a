//! traefik-openstack: OpenStack instances to Traefik dynamic configuration.
//!
//! One-way data path, one module per stage:
//! `openstack` (Keystone, Nova, Neutron) -> `inventory` (snapshot, changes-since)
//! -> `engine` (route component) -> `publish` (last good config) -> `server` (hyper).

pub mod wit;
pub mod config;
pub mod metrics;
