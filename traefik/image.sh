#!/bin/sh
# Builds the container image `traefik-openstack:dev` on a machine that
# reaches only the language and Debian package registries (no container
# registry): a static (musl) binary in an image FROM scratch: no shell, no
# package manager, a non-root uid, meant to run with a read-only root.
# traefik/Dockerfile makes the same image where a registry is reachable.
#
#   traefik/image.sh [TAG]          (default traefik-openstack:dev)
#
# Needs podman (Debian's podman; in this sandbox kind of machine with
# `runtime = "runc"` and `default_ulimits = []` in containers.conf, see
# CONTAINERS_CONF), and what traefik/image-rootfs.sh lists. Prints the
# image's size and where its SBOM is.
set -eu

tag=${1:-traefik-openstack:dev}
root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
context=$target_dir/image

command -v podman >/dev/null 2>&1 || { echo "podman is missing: apt-get install podman runc" >&2; exit 1; }
if command -v rustup >/dev/null 2>&1; then
    rustup target add "$(uname -m)-unknown-linux-musl" wasm32-wasip2 >/dev/null
fi

sh "$root/traefik/image-rootfs.sh" "$context/rootfs"
cp "$root/traefik/Dockerfile" "$context/Dockerfile"
# The Dockerfile's `local` stage takes the root filesystem from the context;
# the stage that compiles in a Rust image is not used (nor pulled).
podman build --format docker --build-arg ROOTFS=local -t "$tag" -f "$context/Dockerfile" "$context" >&2
cp "$context/rootfs/usr/share/doc/traefik-openstack/sbom.cdx.json" "$context/sbom.cdx.json"
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "image $tag: $size bytes; SBOM: $context/sbom.cdx.json" >&2
echo "$tag"
