#!/bin/sh
# Installs a cargo tool pinned to one version (its own lock file:
# `cargo install --locked`) under <target>/tools/<crate>-<version>/ and
# prints the binary's path. Idempotent; parallel callers wait on a lock.
#
#   tests/tools/install-crate.sh CRATE VERSION BINARY [TARGET_DIR]
set -eu

crate=$1
version=$2
binary=$3
here=$(cd "$(dirname "$0")" && pwd)
target=${4:-${CARGO_TARGET_DIR:-$here/../../target}}
mkdir -p "$target/tools"
target=$(cd "$target" && pwd)
dest=$target/tools/$crate-$version
bin=$dest/bin/$binary

if [ ! -x "$bin" ]; then
    exec 9>"$target/tools/$crate.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if [ ! -x "$bin" ]; then
        log=$target/tools/$crate-$version.log
        # Its own build directory: the caller's may be locked by a running cargo.
        if ! CARGO_TARGET_DIR=$target/tools/build-$crate cargo install --locked --quiet \
            "$crate@$version" --root "$dest" >"$log" 2>&1; then
            echo "cargo install $crate@$version failed; log: $log" >&2
            tail -20 "$log" >&2
            exit 1
        fi
        rm -rf "$target/tools/build-$crate"
    fi
fi
echo "$bin"
