//! Test support, the one home of it: what the host's unit tests, its
//! integration tests (`host/tests/`) and its benches share. Compiled only
//! with the `test-support` feature, which the host's dev-dependency on
//! itself turns on for its own tests and benches.
//!
//! - [`fake_cloud`]: a local Keystone + Nova + Neutron made of real API
//!   samples, recording every request and answering with injected faults.
//! - [`synthetic`]: made-up instances in bulk, and settings to route them.
//! - [`test_policy`]: the misbehaving route modules of
//!   `tests/modules/test-policy`, built once per target directory by the
//!   `traefik-openstack-test-modules` crate (which the e2e tests use too).

pub mod fake_cloud;
pub mod synthetic;

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding `host/`, `guest/` and `wit/`).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
}

/// A variant of `tests/modules/test-policy`: `None` is the well-behaved
/// one, `Some(feature)` misbehaves as named (`trap`, `loop`, `notjson`,
/// `array`, `memory`, `wasi`, `print`, `flood`, `settings-error`,
/// `future-version`).
pub fn test_policy(feature: Option<&str>) -> PathBuf {
    traefik_openstack_test_modules::path(feature.unwrap_or("good")).to_owned()
}
