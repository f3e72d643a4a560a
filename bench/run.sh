#!/usr/bin/env bash
# The benchmark run: builds what it needs, runs every benchmark once and
# writes bench/results.md and bench/results.json. See bench/README.md.
#
#   bench/run.sh            # everything (about 10-15 minutes on 2 cores)
#   bench/run.sh --no-lab   # skip the Keystone/Nova/Traefik lab (targets 3 and 4)
#   BENCH_ONLY="generate serving" bench/run.sh   # a subset, merged into the last results
#   BENCH_ONLY=policies bench/run.sh              # 6. the example policies (Python, JS)
#   BENCH_ONLY=abuse bench/run.sh                 # 12. idle, slowloris, big-header and connection floods
#   BENCH_ONLY=lab BENCH_LAB_SERVERS=10000 bench/run.sh  # 3./4. and the fleet (etcd + Redis) at 10k VMs
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
LAB=1
for a in "$@"; do
  case "$a" in
    --no-lab) LAB=0 ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done
ONLY="${BENCH_ONLY:-generate serving abuse footprint footprint100k policies lab}"
[ "$LAB" = 1 ] || ONLY="${ONLY//lab/}"
want() { [[ " $ONLY " == *" $1 "* ]]; }

for tool in wrk nginx taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (apt-get install -y wrk nginx-light util-linux python3)" >&2; exit 1; }
done

# The native side of the generate bench is built like the guest component
# ([profile.guest]: opt-level 3, one codegen unit) as far as a bench build
# can: the policy crate gets one codegen unit; see bench/README.md.
FAIR=(--config 'profile.bench.package.traefik-openstack-guest.codegen-units=1')
JOBS=(-j "${BENCH_JOBS:-2}")

echo "== build" >&2
# Only what the chosen benchmarks run: a subset need not wait for the rest.
if want footprint || want footprint100k || want policies; then
  cargo build "${JOBS[@]}" --release -p traefik-openstack --bin traefik-openstack >&2
fi
FIXTURE=
if want generate || want serving || want abuse; then
  BENCHES=()
  want generate || BENCHES=(--bench serve_fixture)
  cargo bench "${JOBS[@]}" -p traefik-openstack --no-run "${BENCHES[@]}" "${FAIR[@]}" >&2
  FIXTURE="$(cargo bench "${JOBS[@]}" -p traefik-openstack --no-run "${BENCHES[@]}" "${FAIR[@]}" --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="serve_fixture" and m.get("executable"): print(m["executable"])')"
fi
if want lab; then
  cargo build "${JOBS[@]}" --release -p traefik-openstack-e2e --bin bench_openstack >&2
fi

if want generate; then
  echo "== 1. generate (criterion)" >&2
  rm -rf "$ROOT/target/criterion/generate"
  cargo bench -p traefik-openstack --bench generate "${FAIR[@]}" -- --noplot >&2
  python3 bench/report.py criterion "$ROOT/target/criterion/generate" > "$OUT/generate.json"
fi

if want serving; then
  echo "== 2. serving (wrk: host vs nginx)" >&2
  python3 bench/serving.py --fixture "$FIXTURE" --instances 10000 --duration 10 --connections 64 \
    --rounds "${BENCH_SERVING_ROUNDS:-2}" --workdir "$OUT/serving" > "$OUT/serving.json"
fi

if want abuse; then
  echo "== 12. abuse: idle, slowloris, big headers, connection flood vs Traefik's poll" >&2
  python3 bench/abuse.py --fixture "$FIXTURE" --instances 10000 --phase-seconds "${BENCH_ABUSE_SECONDS:-10}" \
    --connections 2000 --workdir "$OUT/abuse" > "$OUT/abuse.json"
fi

if want footprint; then
  echo "== 5. footprint and start-up" >&2
  python3 bench/footprint.py --bin "$ROOT/target/release/traefik-openstack" --instances 10000 \
    --rounds 3 --workdir "$OUT/footprint" > "$OUT/footprint.json"
fi

if want footprint100k; then
  echo "== 5b. 100k instances on the default engine settings: first config, memory, one change" >&2
  python3 bench/footprint.py --bin "$ROOT/target/release/traefik-openstack" --instances 100000 \
    --engine-timeout 1s --only-warm --change --steady 4 --rounds "${BENCH_100K_ROUNDS:-2}" \
    --workdir "$OUT/footprint100k" > "$OUT/footprint100k.json"
fi

if want policies; then
  echo "== 6. route policies in other languages (built-in, Python, JS)" >&2
  bench/policies.sh --bin "$ROOT/target/release/traefik-openstack" --instances 1000 --rounds 5 > "$OUT/policies.json"
fi

if want lab; then
  echo "== 3./4. OpenStack cost and freshness (lab)" >&2
  "$ROOT/target/release/bench_openstack" --servers "${BENCH_LAB_SERVERS:-2000}" --changes 20 > "$OUT/lab.json"
fi

python3 bench/report.py report "$OUT" "$ROOT/bench/results.json" "$ROOT/bench/results.md"
echo "wrote bench/results.md and bench/results.json" >&2
