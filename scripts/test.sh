#!/usr/bin/env bash
# The project's test command (README, CI): formatting, lints, the macOS
# engine's type-check against the Virtualization stub, then every test,
# which boots real guests (the test guest is built on first use by
# scripts/make-guest.sh and cached in target/vmz-guest).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
if [ -x scripts/typecheck-macos.sh ]; then
    echo "== macOS engine type-check (against swift/stubs/Virtualization)"
    scripts/typecheck-macos.sh
fi
echo "== Swift unit tests (swift/tests)"
scripts/swift-tests.sh
echo "== building the test guest"
scripts/make-guest.sh
echo "== cargo test"
cargo test --all-targets
cargo test --doc
