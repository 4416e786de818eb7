#!/usr/bin/env bash
# Build times of vmz (BENCHMARKS.md, "Build"), in a scratch copy with a
# fresh CARGO_TARGET_DIR (dependencies come from the local registry cache):
#   cold     `cargo build` (debug, the Swift bridge included)
#   rust     `cargo build` after touching src/lib.rs
#   swift    `cargo build` after touching a Swift source (whole bridge)
#   tests    `cargo test --no-run` after touching src/lib.rs (relinks every
#            test, example and bench binary: the link cost of the runtime)
# Usage: scripts/bench-build.sh [REV] [OUT.json]
#   REV: a git revision to measure (git archive of it), default the working
#   tree; VMZ_BENCH_BUILD_RUNS warm runs per kind (default 3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-}
json=${2:-}
scratch=$(mktemp -d /tmp/vmz-build-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
if [ -n "$rev" ]; then
    git -C "$root" archive "$rev" | tar -C "$scratch" -xf -
else
    tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -C "$scratch" -xf -
fi
swift_file=$(cd "$scratch" && ls swift/*.swift | head -1)
now() { date +%s.%N; }
cargo_in() { (cd "$scratch" && CARGO_TARGET_DIR="$scratch/target" cargo "$@" --quiet >/dev/null 2>&1); }
timed() { local t0 t1; t0=$(now); cargo_in "$@"; t1=$(now); printf '%.2f' "$(echo "$t1 - $t0" | bc)"; }

cold=$(timed build)
cargo_in test --no-run
rust=() swift=() tests=()
for _ in $(seq "${VMZ_BENCH_BUILD_RUNS:-3}"); do
    touch "$scratch/src/lib.rs"
    rust+=("$(timed build)")
    touch "$scratch/$swift_file"
    swift+=("$(timed build)")
    touch "$scratch/src/lib.rs"
    tests+=("$(timed test --no-run)")
done
size=$(stat -c %s "$scratch"/target/debug/deps/boot-* 2>/dev/null | sort -n | tail -1 || echo 0)
join() { local IFS=,; echo "$*"; }
result=$(cat <<JSON
{
  "revision": "${rev:-working tree}",
  "cold_debug_s": $cold,
  "warm_touch_rust_s": [$(join "${rust[@]}")],
  "warm_touch_swift_s": [$(join "${swift[@]}")],
  "warm_test_no_run_s": [$(join "${tests[@]}")],
  "tests_boot_binary_bytes": $size,
  "load_average_after": "$(cut -d' ' -f1-3 /proc/loadavg)"
}
JSON
)
echo "$result"
[ -z "$json" ] || echo "$result" >"$json"
