#!/bin/sh
# Builds the static (musl) binary and assembles the image's whole root
# filesystem in OUT: the binary, a passwd entry for the non-root uid, the
# CA bundle, an example configuration, an empty /tmp and the SBOM of the
# binary's crates. Shared by traefik/image.sh (on this machine) and
# traefik/Dockerfile (in a build container), so both make the same image.
#
#   traefik/image-rootfs.sh OUT
#
# Needs: cargo with the `<arch>-unknown-linux-musl` and `wasm32-wasip2`
# targets, musl-gcc (Debian's musl-tools: ring and aws-lc carry C), Debian's
# ca-certificates, and cargo-cyclonedx (CARGO_CYCLONEDX, default: on PATH).
set -eu

out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
triple=$(uname -m)-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-$root/target}
cyclonedx=${CARGO_CYCLONEDX:-cargo-cyclonedx}
ca=/etc/ssl/certs/ca-certificates.crt

command -v musl-gcc >/dev/null 2>&1 || { echo "musl-gcc is missing: apt-get install musl-tools" >&2; exit 1; }
[ -s "$ca" ] || { echo "$ca is missing: apt-get install ca-certificates" >&2; exit 1; }
command -v "$cyclonedx" >/dev/null 2>&1 || { echo "$cyclonedx is missing: cargo install --locked cargo-cyclonedx@0.5.9" >&2; exit 1; }

cd "$root"
cargo build --release --locked --target "$triple" -p traefik-openstack
bin=$target_dir/$triple/release/traefik-openstack
# No interpreter and no shared library: nothing in the image to load them.
if readelf -l "$bin" | grep -q INTERP || readelf -d "$bin" | grep -q NEEDED; then
    echo "$bin is not static" >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/etc/traefik-openstack" \
    "$out/usr/share/doc/traefik-openstack" "$out/tmp"
chmod 1777 "$out/tmp"
install -m 0755 "$bin" "$out/usr/local/bin/traefik-openstack"
strip "$out/usr/local/bin/traefik-openstack" 2>/dev/null || true
install -m 0644 "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
install -m 0644 traefik/traefik-openstack.toml "$out/etc/traefik-openstack/config.toml"
printf 'root:x:0:0:root:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$out/etc/group"

# The SBOM: every crate compiled into the binary for this target, without
# build-only and dev-only dependencies.
"$cyclonedx" cyclonedx --manifest-path host/Cargo.toml --format json \
    --target "$triple" --no-build-deps --override-filename sbom.cdx --quiet
mv host/sbom.cdx.json "$out/usr/share/doc/traefik-openstack/sbom.cdx.json"
# It writes one beside every member of the workspace.
find . -path ./target -prune -o -name sbom.cdx.json -print | xargs rm -f
