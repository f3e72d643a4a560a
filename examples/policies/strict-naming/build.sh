#!/bin/sh
# Builds the strict-naming policy component with the repository's pinned
# toolchain (rust-toolchain.toml at the root) and prints the .wasm's path.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=$here/../../../target/examples/strict-naming
cd "$here"
# Flags meant for a native build must not leak into the wasm one (as in
# host/build.rs).
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_TARGET_DIR \
    CARGO_BUILD_TARGET RUSTC_WORKSPACE_WRAPPER CARGO_PROFILE_RELEASE_DEBUG
cargo build --quiet --locked --lib --release --target wasm32-wasip2 --target-dir "$target"
wasm=$(cd "$target/wasm32-wasip2/release" && pwd)/strict_naming_policy.wasm
test -f "$wasm"
echo "$wasm"
