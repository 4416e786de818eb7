#!/usr/bin/env bash
# Builds and runs the Swift unit tests (swift/tests/): the bridge's sources
# compiled with the test file into one executable.
# VMZ_SWIFT_TESTS_UNDER="valgrind --error-exitcode=99 --quiet" runs it under
# a checker.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Every Swift source and C helper, so that a new file never has to be added
# here by hand (a list broke this script twice): the engines and the
# exports compile too (the VZ engine to nothing on Linux), and the test
# file's own entry point runs.
for c in swift/csupport/*.c; do
    cc -c -fPIC -o "$out/$(basename "$c" .c).o" "$c"
done
swiftc -swift-version 5 -Onone -g -module-name VMZBridgeTests \
    -import-objc-header swift/bridging.h -module-cache-path "$out/cache" \
    swift/*.swift swift/tests/BridgeTests.swift "$out"/*.o \
    -o "$out/bridge-tests"
${VMZ_SWIFT_TESTS_UNDER:-} "$out/bridge-tests"
