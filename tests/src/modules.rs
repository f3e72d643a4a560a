//! Route modules for the swap cases: the variants of
//! `tests/modules/test-policy` (one misbehaviour per cargo feature), built
//! for wasm32-wasip2 into `target/e2e-modules/` once per test binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::util::{target_dir, workspace_root};

/// The variants the e2e cases use; `good` is the well-behaved one (routers
/// `swapped` / `swapped-<n>` with rules ``Host(`swapped.test`)`` ...).
pub const VARIANTS: &[&str] = &["good", "trap", "loop", "notjson"];

/// Path of the built `variant` (one of [`VARIANTS`]).
pub fn test_policy(variant: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    assert!(
        VARIANTS.contains(&variant),
        "unknown test-policy variant {variant}"
    );
    match BUILT.get_or_init(build) {
        Ok(dir) => dir.join(format!("{variant}.wasm")),
        Err(e) => panic!("{e}"),
    }
}

fn build() -> Result<PathBuf, String> {
    let crate_dir = workspace_root().join("tests/modules/test-policy");
    if !crate_dir.join("Cargo.toml").exists() {
        return Err(format!("{} is missing", crate_dir.display()));
    }
    let target = target_dir().join("e2e-modules");
    let out = target.join("variants");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for variant in VARIANTS {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&crate_dir)
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target);
        // flags meant for the workspace build must not leak into this one
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
        ] {
            cmd.env_remove(var);
        }
        if *variant != "good" {
            cmd.args(["--features", variant]);
        }
        let status = cmd
            .status()
            .map_err(|e| format!("running {cargo} for test-policy: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building test-policy ({variant}) for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
            ));
        }
        std::fs::copy(
            target.join("wasm32-wasip2/release/test_policy.wasm"),
            out.join(format!("{variant}.wasm")),
        )
        .map_err(|e| format!("copying test-policy ({variant}): {e}"))?;
    }
    Ok(out)
}

/// Replaces `dest` by `src` atomically (copy beside it, then rename), as a
/// deployment would.
pub fn swap_in(src: &std::path::Path, dest: &std::path::Path) -> std::io::Result<()> {
    let tmp = dest.with_extension("wasm.tmp");
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dest)
}
