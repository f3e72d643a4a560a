#!/usr/bin/env bash
# Builds the Python route policy (app.py) into a WebAssembly component with
# componentize-py and prints the component's path on stdout.
#
#   examples/policies/python/build.sh            # -> target/policies/python/policy.wasm
#
# componentize-py is pinned and installed once into a venv under
# target/tools/ (re-created only when the pin changes), so a rebuild needs
# no network.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$TARGET/tools/componentize-py-$COMPONENTIZE_PY_VERSION"
OUT="$TARGET/policies/python"
mkdir -p "$TARGET/tools" "$OUT"

# Parallel builds (the e2e tests, bench) share one venv: install under a lock
# and mark it complete only at the end, so a half-made venv is never used.
(
  flock 9
  if [ ! -f "$VENV/.complete" ]; then
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --disable-pip-version-check -q "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    touch "$VENV/.complete"
  fi
) 9>"$TARGET/tools/componentize-py.lock"

CPY=("$VENV/bin/componentize-py" -d "$ROOT/wit" -w route-policy)
# Bindings are not needed to build (componentize generates its own); they are
# written for editors and type checkers: `wit_world` in $OUT/bindings.
rm -rf "$OUT/bindings"
"${CPY[@]}" bindings "$OUT/bindings" >&2
# Built into a temporary file and renamed, so a host watching the output path
# never loads a half-written component.
"${CPY[@]}" componentize -p "$HERE" app -o "$OUT/policy.wasm.tmp" >&2
mv "$OUT/policy.wasm.tmp" "$OUT/policy.wasm"
echo "$OUT/policy.wasm"
