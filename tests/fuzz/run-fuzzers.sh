#!/usr/bin/env bash
# Explore every proto/ fuzz target for a bounded time.
#
#   tests/fuzz/run-fuzzers.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
#
# BUILD_DIR was configured with CC=clang -DBUILD_FUZZERS=ON (and usually
# -DSANITIZE=address,undefined). Each target starts from its seed corpus
# (BUILD_DIR/tests/fuzz/corpus/<target>) and keeps what it finds in
# BUILD_DIR/tests/fuzz/explore/<target>; crashes land in BUILD_DIR/tests/fuzz/crashes/.
# Targets run FUZZ_JOBS at a time (default: number of CPUs). Prints executions per target and
# exits non-zero if any target found a crash, a leak or a timeout.
set -euo pipefail
build=${1:?usage: run-fuzzers.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-30}
shift $(( $# >= 2 ? 2 : 1 ))
dir="$build/tests/fuzz"
[[ -d "$dir" ]] || { echo "no fuzz build in $dir (configure with CC=clang -DBUILD_FUZZERS=ON)" >&2; exit 2; }
if (( $# > 0 )); then
    targets=("$@")
else
    targets=()
    for exe in "$dir"/fuzz-*; do
        name=${exe##*/fuzz-}
        [[ -x "$exe" && "$name" != make-seeds ]] && targets+=("$name")
    done
fi
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
mkdir -p "$dir/explore" "$dir/crashes" "$dir/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
    local t=$1 rc=0
    mkdir -p "$dir/explore/$t"
    "$dir/fuzz-$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=16 \
        -print_final_stats=1 \
        -artifact_prefix="$dir/crashes/$t-" "$dir/explore/$t" "$dir/corpus/$t" \
        >"$dir/logs/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$dir/logs/$t.rc"
}

fail=0
running=0
for t in "${targets[@]}"; do
    rm -f "$dir/logs/$t.rc"
    if (( running >= jobs )); then wait -n || true; running=$((running - 1)); fi
    run_one "$t" &
    running=$((running + 1))
done
wait || true
for t in "${targets[@]}"; do
    if [[ "$(cat "$dir/logs/$t.rc" 2>/dev/null)" == 0 ]]; then status=ok; else status=FAILED; fail=1; fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    printf 'fuzz %-14s %-6s %10s executions in %ss\n' "$t" "$status" "$execs" "$secs"
    if [[ $status != ok ]]; then tail -30 "$dir/logs/$t.log"; fi
done
exit $fail
