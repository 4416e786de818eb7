#!/usr/bin/env bash
# Runs the tests that boot no guest under valgrind (memcheck): the Swift
# unit tests, the Rust unit tests, the validation tests and the C ABI table. Any invalid read/write,
# use of uninitialised memory or bad free fails the run.
#
# Leak checking is left to the tests themselves (they count the bridge's
# live handles and errors, descriptors and child processes): the Swift
# runtime keeps its metadata caches for the process's life, which memcheck
# would list as "still reachable".
#
# valgrind 3.19 (Debian 12) does not know the pidfd_open syscall, so the
# bridge cannot start QEMU under it: the one validation test that starts
# QEMU then sees the spawn fail, and the boot of hostile paths is skipped;
# so are the Swift kernel cache tests, which start gzip.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind.sh: apt-get install valgrind" >&2; exit 1; }
scripts/make-guest.sh

echo "== valgrind swift/tests"
VMZ_SWIFT_TESTS_NO_SPAWN=1 \
    VMZ_SWIFT_TESTS_UNDER="valgrind --quiet --error-exitcode=99 --track-origins=yes" scripts/swift-tests.sh

bins=$(cargo test --no-run --lib --test validation --test c_abi --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
for bin in $bins; do
    echo "== valgrind $(basename "$bin")"
    valgrind --quiet --error-exitcode=99 --track-origins=yes "$bin" --test-threads=1 \
        --skip hostile_paths_that_exist_boot_normally \
        --skip a_kernel_qemu_cannot_boot_fails_to_start_with_qemus_message
done
