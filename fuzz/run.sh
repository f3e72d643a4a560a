#!/bin/sh
# Builds every fuzz target once, runs each for SECONDS_PER_TARGET (default
# 60) and writes fuzz/results.md from libFuzzer's final figures. Not part of
# CI; see fuzz/README.md.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Environment: FUZZ_TOOLCHAIN (default `nightly`: cargo-fuzz needs one),
# FUZZ_RSS_MB (default 2048), FUZZ_TIMEOUT (seconds per input, default 10),
# FUZZ_NO_HOST=1 (only the route policy's targets: no wasmtime to build).
# results.md keeps one row per target: those run now replace their old row.
# Exits non-zero when a target crashed, timed out or ran out of memory; the
# input is kept under fuzz/artifacts/<target>/.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
toolchain=${FUZZ_TOOLCHAIN:-nightly}
rss_mb=${FUZZ_RSS_MB:-2048}
timeout=${FUZZ_TIMEOUT:-10}
target_dir=$here/target
guest_targets="labels templates constraints settings"
features=
if [ -n "${FUZZ_NO_HOST:-}" ]; then
    features=--no-default-features
    target_dir=$here/target/no-host
fi
cd "$root"

if ! rustc "+$toolchain" -V >/dev/null 2>&1; then
    echo "fuzz/run.sh: the Rust toolchain '$toolchain' is missing (rustup toolchain install $toolchain)" >&2
    exit 1
fi
# cargo-fuzz itself builds with the project's toolchain.
cargo_fuzz=$(tests/tools/install-crate.sh cargo-fuzz 0.13.1 cargo-fuzz "$root/target")
PATH=$(dirname "$cargo_fuzz"):$PATH

# The host embeds the built-in route component; nightly has no wasm target
# installed, so it is built here with the project's toolchain, as
# host/build.rs would, and handed over.
nice -n 19 cargo build --quiet --locked -p traefik-openstack-guest --lib \
    --target wasm32-wasip2 --profile guest --target-dir "$root/target/guest"
TRAEFIK_OPENSTACK_GUEST_WASM=$root/target/guest/wasm32-wasip2/guest/traefik_openstack_guest.wasm
export TRAEFIK_OPENSTACK_GUEST_WASM

# No sanitizer: the code under test is safe Rust, and ASan would halve the
# executions; debug assertions turn on overflow checks.
nice -n 19 cargo "+$toolchain" fuzz build --sanitizer none --debug-assertions $features \
    --target-dir "$target_dir" --fuzz-dir "$here"

all=$(cargo "+$toolchain" fuzz list --fuzz-dir "$here")
if [ -n "$features" ]; then
    targets=${*:-$guest_targets}
else
    targets=${*:-$all}
fi
bin_dir=$target_dir/$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')/release
results=$here/results.md
status=0
rows=$target_dir/rows
mkdir -p "$rows"
for t in $targets; do
    work=$target_dir/corpus/$t
    artifacts=$here/artifacts/$t
    log=$target_dir/logs/$t.log
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    echo "fuzz/run.sh: $t for ${seconds}s" >&2
    started=$(date -u +%Y-%m-%dT%H:%MZ)
    # The checked-in seeds are read, never written: new inputs go to $work.
    set +e
    nice -n 19 "$bin_dir/$t" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" \
        -timeout="$timeout" -print_final_stats=1 \
        -artifact_prefix="$artifacts/" "$work" "$here/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    corpus=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' "$log" | tail -1)
    crashes=$(find "$artifacts" -name 'crash-*' | wc -l)
    timeouts=$(find "$artifacts" -name 'timeout-*' | wc -l)
    ooms=$(find "$artifacts" -name 'oom-*' | wc -l)
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ] || [ "$timeouts" -ne 0 ] || [ "$ooms" -ne 0 ]; then
        echo "fuzz/run.sh: $t failed (exit $rc); log: $log; inputs: $artifacts" >&2
        status=1
    fi
    echo "| $t | ${runs:-?} | ${secs:-?} | ${rate:-?} | ${corpus:-?} | $crashes | $timeouts | $ooms | $started |" >"$rows/$t"
done

# This run's rows, and the previous results' rows of the targets not run
# (under a lock: runs of different targets may finish together).
exec 8>"$here/target/results.lock"
if command -v flock >/dev/null 2>&1; then flock 8; fi
{
    echo "# Fuzzing results"
    echo
    echo "Written by \`fuzz/run.sh\` (see README.md): $(rustc "+$toolchain" -V), cargo-fuzz 0.13.1, no"
    echo "sanitizer, debug assertions on, one process per target, \`-rss_limit_mb=$rss_mb -timeout=$timeout\`,"
    echo "$(nproc) cores, at \`nice -n 19\` beside other builds. One row per target, from its latest run."
    echo
    echo "| target | executions | seconds | exec/s | corpus | crashes | timeouts | OOMs | run (UTC) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    total=0
    for t in $all; do
        case " $targets " in
        *" $t "*) row=$(cat "$rows/$t") ;;
        *) row=$(grep "^| $t |" "$results" 2>/dev/null || true) ;;
        esac
        [ -n "$row" ] || continue
        echo "$row"
        runs=$(echo "$row" | cut -d'|' -f3 | tr -d ' ?')
        total=$((total + ${runs:-0}))
    done
    echo
    echo "Total: $total executions."
} >"$results.tmp"
mv "$results.tmp" "$results"
cat "$results"
exit $status
