//! traefik-openstack: OpenStack instances to Traefik dynamic configuration.
//!
//! One-way data path, one module per stage, driven by a loop:
//!
//! 1. [`openstack`]: the client of one cloud (Keystone, Nova, Neutron).
//! 2. [`inventory`]: the instances as last seen (snapshot, changes-since),
//!    one per cloud; the sync loop merges them for the module.
//! 3. [`engine`]: the route component that turns them into configuration.
//! 4. [`publish`]: the last good configuration, the status beside it, and
//!    the state file that keeps it across restarts.
//! 5. [`server`]: what Traefik polls and operators look at (hyper).
//!
//! [`sync`] drives the path: it refreshes the inventory, runs the module,
//! publishes, and swaps modules when the file changes; what it does is
//! logged and counted by its events, in one place each, into [`metrics`].
//! [`config`] is the operator's file, [`wit`] the route contract's types and
//! [`instance`] the host's compact form of its instance record.
//! Off the path: [`offline`] reads and writes instances as files (`render
//! --instances`, `inventory`) and [`policy_test`] runs golden cases for
//! route modules (`test`).
//!
//! The public surface is what the binary, the benches and the tests use;
//! everything else is `pub(crate)`. With the `test-support` feature,
//! `testing` adds the fake cloud, synthetic instances and test modules.

#![deny(missing_docs)]

pub mod chunked;
pub mod config;
pub mod engine;
mod events;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod instance;
pub mod inventory;
pub mod memory;
pub mod metrics;
pub mod offline;
pub mod openstack;
pub mod policy_test;
pub mod publish;
pub mod server;
mod status_page;
pub mod sync;
pub mod tls;
pub mod wit;

#[cfg(feature = "test-support")]
pub mod testing;
