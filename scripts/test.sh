#!/usr/bin/env bash
# The project's test command (README, CI): formatting, lints, the macOS
# engine's type-check against the Virtualization stub, then every test,
# which boots real guests (the test guest is built on first use by
# scripts/make-guest.sh and cached in target/vmz-guest).
set -euo pipefail
cd "$(dirname "$0")/.."

# One bound on the whole command (VMZ_TEST_TIMEOUT seconds): a hang fails
# the run and says so instead of stalling CI. Each test also bounds its own
# waits (tests/common/bounded.rs).
if [ -z "${VMZ_TEST_SH_BOUNDED:-}" ]; then
    limit="${VMZ_TEST_TIMEOUT:-1800}"
    rc=0
    VMZ_TEST_SH_BOUNDED=1 timeout -k 30 "$limit" "$0" "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "test.sh: FAILED: the test command did not finish within ${limit} s (VMZ_TEST_TIMEOUT)" >&2
    fi
    exit "$rc"
fi
started=$SECONDS

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== every integration test is gated to Linux or says it runs anywhere"
# A Mac must not build the amd64 Debian guest or run QEMU under `cargo test`
# (README, "What runs where").
ungated=$(grep -L -e '^#!\[cfg(target_os = "linux")\]' -e '^// vmz: runs on every host' tests/*.rs || true)
if [ -n "$ungated" ]; then
    echo "test.sh: FAILED: add #![cfg(target_os = \"linux\")] after the //! header of:" $ungated >&2
    echo "  (or the line '// vmz: runs on every host' if the file needs no guest and no QEMU)" >&2
    exit 1
fi
echo "== raw bindings up to date (scripts/bindings.sh --check)"
scripts/bindings.sh --check
echo "== docs as docs.rs builds them: no swiftc, no libclang (scripts/docs.sh)"
scripts/docs.sh
echo "== what cargo package would publish (scripts/package-check.sh)"
scripts/package-check.sh
echo "== macOS engine type-check (against swift/stubs/Virtualization)"
# Run through its run bit, so that losing the bit fails here, loudly.
if [ ! -x scripts/typecheck-macos.sh ]; then
    echo "test.sh: FAILED: scripts/typecheck-macos.sh is not executable (git update-index --chmod=+x)" >&2
    exit 1
fi
scripts/typecheck-macos.sh
echo "== Swift unit tests (swift/tests)"
scripts/swift-tests.sh
echo "== building the test guests (x86_64, arm64)"
scripts/make-guest.sh
scripts/make-guest.sh --arch arm64
echo "== cargo test"
cargo test --all-targets
cargo test --doc
echo "== vmz as a dependency (tests/dependents)"
scripts/dependents.sh
echo "== reliability: ${VMZ_RELIABILITY_RUNS:-20} boots of the default path, every one must reach userspace"
# The benchmark's short form (benches/reliability.rs; 100 boots in
# BENCHMARKS.md), built by `cargo test --all-targets` above.
VMZ_RELIABILITY_RUNS="${VMZ_RELIABILITY_RUNS:-20}" cargo test -q --bench reliability -- --bench
echo "== fuzz target (fuzz/): build, then ${VMZ_FUZZ_SECONDS:-5} s of fuzzing"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "test.sh: FAILED: cargo-fuzz is missing (scripts/setup-debian.sh installs it)" >&2
    exit 1
fi
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s address config &&
    RUSTC_BOOTSTRAP=1 cargo fuzz run -s address config -- \
        -max_total_time="${VMZ_FUZZ_SECONDS:-5}" -print_final_stats=1 2>&1 | tail -n 12)
echo "== valgrind (scripts/valgrind.sh)"
scripts/valgrind.sh
echo "== test.sh: all passed in $((SECONDS - started)) s"
