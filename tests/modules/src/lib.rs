//! The variants of `test-policy/`, one misbehaviour each, built for
//! wasm32-wasip2 by build.rs (once per target directory).
//!
//! ```no_run
//! let trap = traefik_openstack_test_modules::path("trap");
//! assert!(trap.ends_with("trap.wasm"));
//! ```

#![deny(missing_docs)]

use std::path::Path;

mod built {
    //! Written by build.rs: `(variant, path)` of every built module.
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/modules.rs"));
}

/// Every variant, `good` (the well-behaved one: a `swapped-<n>` router per
/// instance and a `swapped` one) first; the others misbehave as named:
/// `trap`, `loop`, `notjson`, `array`, `memory`, `wasi`, `print`, `flood`,
/// `settings-error` and `future-version` (a contract version the host does
/// not accept).
pub fn variants() -> impl Iterator<Item = &'static str> {
    built::MODULES.iter().map(|(name, _)| *name)
}

/// The built module of `variant` (one of [`variants`]).
///
/// # Panics
///
/// On a variant that does not exist.
pub fn path(variant: &str) -> &'static Path {
    built::MODULES
        .iter()
        .find(|(name, _)| *name == variant)
        .map(|(_, path)| Path::new(*path))
        .unwrap_or_else(|| panic!("unknown test-policy variant {variant}"))
}
