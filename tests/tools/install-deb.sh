#!/bin/sh
# Installs a Debian package pinned to a version pattern (e.g. chromium
# `156.*`: Debian ships security fixes as new revisions of the same upstream
# version, so the pin names the upstream version and accepts its revisions)
# and prints the path of one of its binaries. Idempotent: an installed
# package of that version is reused; parallel callers wait on a lock. Needs
# root (apt-get), as CI and the dev machines have.
#
#   tests/tools/install-deb.sh PACKAGE 'VERSION-PATTERN' BINARY [TARGET_DIR]
set -eu

package=$1
pattern=$2
binary=$3
here=$(cd "$(dirname "$0")" && pwd)
target=${4:-${CARGO_TARGET_DIR:-$here/../../target}}
mkdir -p "$target/tools"

installed() {
    version=$(dpkg-query -W -f '${Status} ${Version}' "$package" 2>/dev/null) || return 1
    case "$version" in
        "install ok installed "$pattern) command -v "$binary" >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

if ! installed; then
    exec 9>"$target/tools/apt.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if ! installed; then
        if [ "$(id -u)" != 0 ]; then
            echo "$package $pattern is not installed, and installing it needs root: apt-get install '$package=$pattern'" >&2
            exit 1
        fi
        log=$target/tools/apt-$package.log
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y --no-install-recommends "$package=$pattern" >"$log" 2>&1; then
            # A fresh machine has no package lists yet.
            apt-get update >>"$log" 2>&1 || true
            if ! apt-get install -y --no-install-recommends "$package=$pattern" >>"$log" 2>&1; then
                echo "installing $package=$pattern with apt-get failed (log: $log); available:" >&2
                apt-cache policy "$package" >&2 || true
                exit 1
            fi
        fi
        installed || { echo "$package installed, but not version $pattern with $binary" >&2; exit 1; }
    fi
fi
command -v "$binary"
