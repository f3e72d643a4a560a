//! Builds the default route component from `guest/` so the binary can embed
//! it and needs no other file at run time.
//!
//! The nested cargo uses its own target directory, so it never waits on the
//! lock of the outer build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = std::env::var_os("TRAEFIK_OPENSTACK_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target").join("guest"));

    for path in [
        "guest/src",
        "guest/Cargo.toml",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=TRAEFIK_OPENSTACK_GUEST_TARGET_DIR");

    // Packagers (and a Docker stage) may hand in a component built elsewhere.
    println!("cargo:rerun-if-env-changed=TRAEFIK_OPENSTACK_GUEST_WASM");
    if let Some(prebuilt) = std::env::var_os("TRAEFIK_OPENSTACK_GUEST_WASM") {
        let prebuilt = PathBuf::from(prebuilt);
        assert!(
            prebuilt.exists(),
            "TRAEFIK_OPENSTACK_GUEST_WASM: {} not found",
            prebuilt.display()
        );
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        println!(
            "cargo:rustc-env=TRAEFIK_OPENSTACK_DEFAULT_MODULE={}",
            prebuilt.display()
        );
        return;
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--package",
            "traefik-openstack-guest",
            "--lib",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "guest",
            "--target-dir",
        ])
        .arg(&target_dir);
    // Flags meant for the host build (coverage, sanitizers, target-cpu) must
    // not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the guest component");
    assert!(status.success(), "building guest/ for wasm32-wasip2 failed");

    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("guest")
        .join("traefik_openstack_guest.wasm");
    assert!(
        wasm.exists(),
        "guest component not found at {}",
        wasm.display()
    );
    println!(
        "cargo:rustc-env=TRAEFIK_OPENSTACK_DEFAULT_MODULE={}",
        wasm.display()
    );
}
