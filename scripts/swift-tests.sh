#!/usr/bin/env bash
# Builds and runs the Swift unit tests (swift/tests/): the bridge's sources
# that need no VM, compiled with the test file into one executable.
# VMZ_SWIFT_TESTS_UNDER="valgrind --error-exitcode=99 --quiet" runs it under
# a checker.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -c -fPIC -o "$out/vmz_spawn.o" swift/csupport/vmz_spawn.c
cc -c -fPIC -o "$out/vmz_hash.o" swift/csupport/vmz_hash.c
swiftc -swift-version 5 -Onone -g -module-name VMZBridgeTests \
    -import-objc-header swift/bridging.h -module-cache-path "$out/cache" \
    swift/Lock.swift swift/BridgeError.swift swift/Registry.swift swift/Log.swift \
    swift/ParsedConfig.swift swift/Console.swift swift/GuestArchitecture.swift swift/KernelFormat.swift \
    swift/ABIArray.swift swift/DiskConfig.swift swift/ShareConfig.swift swift/Network.swift swift/Posix.swift swift/Quoting.swift swift/QMP.swift swift/KernelCache.swift swift/KernelCacheStore.swift swift/ChildExit.swift \
    swift/tests/BridgeTests.swift "$out/vmz_spawn.o" "$out/vmz_hash.o" \
    -o "$out/bridge-tests"
${VMZ_SWIFT_TESTS_UNDER:-} "$out/bridge-tests"
