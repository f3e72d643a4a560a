// Shared helpers of the host's tests; also `include!`d by unit tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[allow(dead_code)]
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Every variant of `tests/modules/test-policy`, built once per test binary:
/// `None` is the well-behaved one, `Some(feature)` misbehaves as named.
pub fn test_policy(feature: Option<&str>) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(build_test_policies);
    dir.join(format!("{}.wasm", feature.unwrap_or("good")))
}

fn build_test_policies() -> PathBuf {
    let crate_dir = workspace().join("tests/modules/test-policy");
    let target = workspace().join("target/test-policy-host");
    let out = target.join("variants");
    std::fs::create_dir_all(&out).unwrap();
    let variants = [
        None,
        Some("trap"),
        Some("loop"),
        Some("notjson"),
        Some("array"),
        Some("memory"),
        Some("wasi"),
        Some("print"),
        Some("flood"),
        Some("settings-error"),
        Some("future-version"),
    ];
    for feature in variants {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(&crate_dir)
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR");
        if let Some(f) = feature {
            cmd.args(["--features", f]);
        }
        let status = cmd.status().expect("running cargo for test-policy");
        assert!(status.success(), "building test-policy {feature:?} failed");
        std::fs::copy(
            target.join("wasm32-wasip2/release/test_policy.wasm"),
            out.join(format!("{}.wasm", feature.unwrap_or("good"))),
        )
        .unwrap();
    }
    out
}
