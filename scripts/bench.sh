#!/usr/bin/env bash
# vmz's benchmarks (BENCHMARKS.md): builds the test guests, runs
# `cargo bench --bench vmz` (boot, stop, bridge calls, serial throughput,
# scaling; vmz and its references alternating), measures build times in a
# scratch copy, and draws docs/bench-boot.png and docs/bench-scaling.png.
#
# Environment: VMZ_BENCH_RUNS (default 10) and the other VMZ_BENCH_* knobs of
# benches/vmz.rs; VMZ_BENCH_BUILD_RUNS incremental rebuilds per kind
# (default 3); VMZ_BENCH_SKIP_BUILD=1 skips the build-time step.
# Output: target/vmz-bench/{samples.json,samples.csv,table.md,build.json,
# bench.log,machine.txt} and the two plots.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/vmz-bench
mkdir -p "$out"

echo "== machine" | tee "$out/machine.txt"
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores: $(nproc)"
    echo "ram: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "qemu: $(qemu-system-x86_64 --version | head -1)"
    echo "swift: $(swiftc --version 2>&1 | grep -m1 'Swift version')"
    echo "rustc: $(rustc --version)"
    echo "kvm_pvm loaded: $([ -e /sys/module/kvm_pvm ] && echo yes || echo no)"
} | tee -a "$out/machine.txt"

echo "== building the test guest, and the same with Debian's standard kernel"
scripts/make-guest.sh
scripts/make-guest.sh --standard

echo "== cargo bench --bench vmz (VMZ_BENCH_RUNS=${VMZ_BENCH_RUNS:-10})"
cargo bench --bench vmz 2>&1 | tee "$out/bench.log"

if [ "${VMZ_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "== build times (scratch copy, fresh CARGO_TARGET_DIR)"
    scripts/bench-build.sh "" "$out/build.json"
fi

echo "== plots"
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    pip install matplotlib
fi
python3 scripts/bench_plot.py "$out/samples.json" docs
echo "done: $out, docs/bench-boot.png, docs/bench-scaling.png"
