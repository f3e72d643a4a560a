#!/usr/bin/env bash
# Builds the JavaScript route policy (policy.js) into a WebAssembly component
# with componentize-js and prints the component's path on stdout.
#
#   examples/policies/js/build.sh            # -> target/policies/js/policy.wasm
#
# componentize-js is pinned by package.json and package-lock.json beside this
# script and installed once with `npm ci` under target/tools/ (again only
# when the lockfile changes), so a rebuild needs no network.
set -euo pipefail

COMPONENTIZE_JS_VERSION=0.23.0

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
TOOLS="$TARGET/tools/componentize-js-$COMPONENTIZE_JS_VERSION"
OUT="$TARGET/policies/js"
mkdir -p "$TARGET/tools" "$OUT"

# Parallel builds (the e2e tests, bench) share one install: under a lock, and
# stamped with the lockfile it was made from.
(
  flock 9
  if ! cmp -s "$HERE/package-lock.json" "$TOOLS/.installed-lock.json"; then
    echo "installing componentize-js $COMPONENTIZE_JS_VERSION into $TOOLS" >&2
    rm -rf "$TOOLS"
    mkdir -p "$TOOLS"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$TOOLS/"
    npm ci --prefix "$TOOLS" --no-audit --no-fund --loglevel=error >&2
    cp "$HERE/package-lock.json" "$TOOLS/.installed-lock.json"
  fi
) 9>"$TARGET/tools/componentize-js.lock"

# Every feature stays on: the host links a WASI that grants nothing, so
# stdio (console.log), random and clocks cost nothing there, and wasi:http,
# which http (fetch) and fetch-event import, links as traps that a policy
# never reaches.
# Built into a temporary file and renamed, so a host watching the output path
# never loads a half-written component.
"$TOOLS/node_modules/.bin/componentize-js" "$HERE/policy.js" \
  --wit "$ROOT/wit" --world-name route-policy -o "$OUT/policy.wasm.tmp" >&2
mv "$OUT/policy.wasm.tmp" "$OUT/policy.wasm"
echo "$OUT/policy.wasm"
