#!/bin/sh
# Installs Debian's chromium, pinned to one major version, for the status
# page's headless-browser test, and prints the binary's path. Idempotent:
# an installed chromium of that version is reused; parallel callers wait on
# a lock. Needs root (apt-get), as CI and the dev machines have.
#
#   tests/tools/install-chromium.sh [TARGET_DIR]    (default: <repo>/target)
set -eu

# Debian ships security updates of chromium as new revisions of the same
# major version: pin the major, accept its revisions.
MAJOR=156

here=$(cd "$(dirname "$0")" && pwd)
target=${1:-${CARGO_TARGET_DIR:-$here/../../target}}
mkdir -p "$target/tools"

installed() {
    command -v chromium >/dev/null 2>&1 &&
        chromium --version 2>/dev/null | grep -q "^Chromium $MAJOR\."
}

if ! installed; then
    exec 9>"$target/tools/chromium.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if ! installed; then
        if [ "$(id -u)" != 0 ]; then
            echo "chromium $MAJOR is not installed and installing it needs root: apt-get install 'chromium=$MAJOR.*'" >&2
            exit 1
        fi
        log=$target/tools/chromium-apt.log
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y --no-install-recommends "chromium=$MAJOR.*" >"$log" 2>&1; then
            # A fresh machine has no package lists yet.
            apt-get update >>"$log" 2>&1 || true
            if ! apt-get install -y --no-install-recommends "chromium=$MAJOR.*" >>"$log" 2>&1; then
                echo "installing chromium $MAJOR.* with apt-get failed (log: $log); available:" >&2
                apt-cache policy chromium >&2 || true
                exit 1
            fi
        fi
        installed || { echo "chromium installed but not version $MAJOR: $(chromium --version)" >&2; exit 1; }
    fi
fi
command -v chromium
