//! Builds every variant of `test-policy/` for wasm32-wasip2, as wasmtime's
//! test-programs artifacts do: cargo runs this once per target directory and
//! again only when the policy or the contract changes, so each test binary
//! finds the modules ready instead of building its own.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// `good` is the well-behaved module; every other variant is the cargo
/// feature of `test-policy/` that misbehaves as named.
const VARIANTS: &[&str] = &[
    "good",
    "trap",
    "loop",
    "notjson",
    "array",
    "memory",
    "wasi",
    "print",
    "flood",
    "settings-error",
    "future-version",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let crate_dir = manifest_dir.join("test-policy");
    let workspace = manifest_dir.join("../..");
    for path in [
        crate_dir.join("src"),
        crate_dir.join("build.rs"),
        crate_dir.join("Cargo.toml"),
        crate_dir.join("Cargo.lock"),
        workspace.join("wit"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target = out_dir.join("target");
    let modules = out_dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut paths = String::new();
    for variant in VARIANTS {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&crate_dir)
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target);
        // Flags meant for the workspace build must not leak into this one.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        if *variant != "good" {
            cmd.args(["--features", variant]);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("running {cargo} for test-policy: {e}"));
        assert!(
            status.success(),
            "building test-policy ({variant}) for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
        );
        let module = modules.join(format!("{variant}.wasm"));
        std::fs::copy(
            target.join("wasm32-wasip2/release/test_policy.wasm"),
            &module,
        )
        .unwrap_or_else(|e| panic!("copying test-policy ({variant}): {e}"));
        writeln!(
            paths,
            "    ({variant:?}, {:?}),",
            module.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(
        out_dir.join("modules.rs"),
        format!("pub const MODULES: &[(&str, &str)] = &[\n{paths}];\n"),
    )
    .unwrap();
}
