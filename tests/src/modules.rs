//! Route modules for the swap cases: the variants of
//! `tests/modules/test-policy` (one misbehaviour per cargo feature), built
//! once by `traefik-openstack-test-modules` for the host's tests and these.

use std::path::PathBuf;

/// The variants the e2e cases use; `good` is the well-behaved one (routers
/// `swapped` / `swapped-<n>` with rules ``Host(`swapped.test`)`` ...).
pub const VARIANTS: &[&str] = &["good", "trap", "loop", "notjson"];

/// Path of the built `variant` (one of [`VARIANTS`]).
pub fn test_policy(variant: &str) -> PathBuf {
    assert!(
        VARIANTS.contains(&variant),
        "unknown test-policy variant {variant}"
    );
    traefik_openstack_test_modules::path(variant).to_owned()
}

/// Replaces `dest` by `src` atomically (copy beside it, then rename), as a
/// deployment would.
pub fn swap_in(src: &std::path::Path, dest: &std::path::Path) -> std::io::Result<()> {
    let tmp = dest.with_extension("wasm.tmp");
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dest)
}
