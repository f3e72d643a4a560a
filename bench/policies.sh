#!/usr/bin/env bash
# Route policies in other languages (examples/policies/): for the built-in
# module (as a file), the Python one and the JavaScript one, what a policy
# costs the host. Prints one JSON object; bench/run.sh writes it to
# target/bench/policies.json and report.py turns it into a table.
#
#   bench/policies.sh [--bin target/release/traefik-openstack] [--instances 1000] [--rounds 5]
#
# Every figure is the wall time of one `traefik-openstack render --instances
# FILE` process (median of --rounds; cold compiles: of BENCH_POLICY_COLD_ROUNDS,
# 1 by default, as a Python component takes tens of seconds):
#   cold_ms      compile cache disabled, no instances: start + compile + load
#   warm_ms      warm compile cache, no instances: start + load from the cache
#   render_ms    warm compile cache, N instances
#   generate_ms  render_ms - warm_ms: reading N instances, generate, printing
# BENCH_POLICIES="builtin js" measures a subset.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/traefik-openstack"
N=1000
ROUNDS=5
COLD_ROUNDS="${BENCH_POLICY_COLD_ROUNDS:-1}"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --instances) N="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "bench/policies.sh: no host binary at $BIN (cargo build --release -p traefik-openstack)" >&2; exit 1; }
BUILTIN="$ROOT/target/guest/wasm32-wasip2/guest/traefik_openstack_guest.wasm"
[ -f "$BUILTIN" ] || { echo "bench/policies.sh: $BUILTIN is missing (building the host builds it)" >&2; exit 1; }

WORK="$ROOT/target/bench/policies"
rm -rf "$WORK"
mkdir -p "$WORK"
ONLY=" ${BENCH_POLICIES:-builtin python js} "
echo "== building the example policies" >&2
PYTHON="" JS=""
[[ "$ONLY" != *" python "* ]] || PYTHON="$("$ROOT/examples/policies/python/build.sh")"
[[ "$ONLY" != *" js "* ]] || JS="$("$ROOT/examples/policies/js/build.sh")"

echo '[]' > "$WORK/none.json"
# The inventory format (what `traefik-openstack inventory` prints): ACTIVE
# VMs with a fixed and a floating address each.
python3 - "$N" > "$WORK/instances.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps([{
    "id": "00000000-0000-4000-8000-%012d" % i,
    "name": "vm-%05d" % i,
    "status": "ACTIVE",
    "project_id": "p-bench",
    "created": "2026-01-01T00:00:00Z",
    "updated": "2026-01-01T00:00:00Z",
    "addresses": [
        {"network": "bench", "ip": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255), "version": 4, "kind": "fixed"},
        {"network": "bench", "ip": "100.%d.%d.%d" % (64 + (i >> 16 & 63), i >> 8 & 255, i & 255), "version": 4, "kind": "floating"},
    ],
} for i in range(n)], indent=1))
PY

# config NAME CACHE_DIR: the [routes] each policy wants, equivalent routes
config() {
  local name="$1" cache="$2" f="$WORK/$1-$(basename "$2").toml"
  {
    printf '[engine]\ncache_dir = "%s"\ntimeout = "30s"\n\n[routes]\n' "$cache"
    if [ "$name" = builtin ]; then
      printf 'default_rule = "Host(`{{ .Name }}.bench.example.com`)"\naddress = "floating"\nentry_points = ["web"]\n'
    else
      printf 'domain = "bench.example.com"\nport = 80\nentry_points = ["web"]\n'
    fi
  } > "$f"
  echo "$f"
}

# run_ms CONFIG MODULE INSTANCES: wall milliseconds of one render
run_ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$BIN" render --config "$1" --module "$2" --instances "$3" > "$WORK/out.json" 2> "$WORK/err.txt" || {
    echo "bench/policies.sh: render failed for $2:" >&2; tail -20 "$WORK/err.txt" >&2; exit 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

results=()
for entry in "builtin:$BUILTIN" "python:$PYTHON" "js:$JS"; do
  name="${entry%%:*}" module="${entry#*:}"
  [[ "$ONLY" == *" $name "* ]] || continue
  echo "== $name ($module)" >&2
  nocache="$(config "$name" "")"
  warm="$(config "$name" "$WORK/cache-$name")"
  cold=(); for _ in $(seq "$COLD_ROUNDS"); do cold+=("$(run_ms "$nocache" "$module" "$WORK/none.json")"); done
  run_ms "$warm" "$module" "$WORK/none.json" > /dev/null   # fills the cache
  warm_ms=(); render_ms=()
  for _ in $(seq "$ROUNDS"); do
    warm_ms+=("$(run_ms "$warm" "$module" "$WORK/none.json")")
    render_ms+=("$(run_ms "$warm" "$module" "$WORK/instances.json")")
  done
  routers="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("http",{}).get("routers",{})))' "$WORK/out.json")"
  c="$(echo "${cold[*]}" | median)" w="$(echo "${warm_ms[*]}" | median)" r="$(echo "${render_ms[*]}" | median)"
  echo "   cold ${cold[*]} / warm ${warm_ms[*]} / render ${render_ms[*]} ms; $routers routers" >&2
  results+=("$(printf '"%s": {"module": "%s", "bytes": %d, "cold_ms": %d, "warm_ms": %d, "render_ms": %d, "generate_ms": %d, "routers": %d}' \
    "$name" "${module#"$ROOT"/}" "$(stat -c %s "$module")" "$c" "$w" "$r" "$((r - w))" "$routers")")
done

printf '{"instances": %d, "rounds": %d, "cold_rounds": %d, "modules": {%s}}\n' \
  "$N" "$ROUNDS" "$COLD_ROUNDS" "$(IFS=,; echo "${results[*]}")" | python3 -m json.tool
