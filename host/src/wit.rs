//! Host-side bindings of the route contract (`wit/routes.wit`).
//!
//! The generated record types are the host's model of what a module gives
//! back; an instance is the host's own compact record (`instance.rs`),
//! which lowers to the contract's `instance` without a conversion.
//! The engine finds and calls the exports itself (see `engine`), so that a
//! module exporting only `policy` (any 0.1.x) and one that also exports
//! `phases` (0.1.1+) are both served, and so that instances shared behind
//! an `Arc` are lowered without a copy.

mod bindings {
    //! Everything wasmtime generates; only the contract's types leave.
    #![allow(missing_docs)]

    wasmtime::component::bindgen!({
        path: "../wit",
        world: "phased-route-policy",
        additional_derives: [PartialEq, Eq, serde::Serialize],
    });
}

pub use crate::instance::{Address, Instance};
pub use bindings::exports::traefik_openstack::routes::phases::{Entry, Merged, Part};
pub use bindings::traefik_openstack::routes::types::{
    AddressKind, Diagnostic, InstanceRoutes, Level, Output,
};

/// The contract's package, as exported by modules.
pub const PACKAGE: &str = "traefik-openstack:routes";
/// The contract version this host was built against. Modules exporting any
/// `0.1.x` are accepted (semver: minor bumps before 1.0 break).
pub const VERSION: &str = "0.1.1";
