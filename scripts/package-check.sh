#!/usr/bin/env bash
# What `cargo package` would publish (README, "Using it"): everything a
# build needs (every Swift source the build script compiles, the C helpers,
# the header, the build script, the committed bindings) and nothing from
# the test, bench, guest or docs side. Fast: lists, does not build.
# (`cargo publish --dry-run` also builds the packaged crate: run it by hand.)
set -euo pipefail
cd "$(dirname "$0")/.."
list=$(cargo package --list --allow-dirty 2>/dev/null)
fail=0
need() {
    if ! grep -qxF "$1" <<<"$list"; then
        echo "package-check: FAILED: $1 is not in the package (Cargo.toml include)" >&2
        fail=1
    fi
}
for f in swift/*.swift swift/bridging.h swift/csupport/* build/*.rs include/libvmz.h \
    src/sys/bindings.rs vmz.entitlements scripts/macos-sign-and-run.sh README.md; do
    need "$f"
done
unwanted=$(grep -E '^(tests|benches|fuzz|docs|target|examples|swift/stubs|swift/tests)/|^scripts/(make-guest|guest-init|test|bench)' <<<"$list" || true)
if [ -n "$unwanted" ]; then
    echo "package-check: FAILED: not needed by a build, yet packaged:" $unwanted >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "package-check: OK: $(wc -l <<<"$list") files, what a build needs and nothing else"
exit "$fail"
