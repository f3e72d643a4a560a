#!/usr/bin/env bash
# traefik-openstack with no cloud account: a local Keystone + Nova (real
# OpenStack code on sqlite) with sample VMs whose backends listen on their
# own 127.x.y.z addresses, traefik-openstack with its built-in route module,
# and Traefik; prints the curl that reaches a VM through Traefik, and runs
# until Ctrl-C, which stops exactly the processes it started.
#
# Needs: cargo (rustup), python3 >= 3.9, gcc. Traefik and the OpenStack lab
# are installed, pinned, under target/ on first use (about a minute), and the
# same harness as the end-to-end tests runs it (tests/src/bin/demo.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in rustup cargo python3; do
  command -v "$tool" >/dev/null || { echo "demo.sh: $tool is required" >&2; exit 1; }
done

# the pinned toolchain and its wasm32-wasip2 target (rust-toolchain.toml)
rustup toolchain install >/dev/null
echo "demo.sh: building traefik-openstack and the demo (release)" >&2
cargo build --release -p traefik-openstack -p traefik-openstack-e2e --bins

target_dir=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
export TRAEFIK_OPENSTACK_BIN="$target_dir/release/traefik-openstack"
exec "$target_dir/release/demo"
