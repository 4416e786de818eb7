#!/usr/bin/env bash
# Type-checks the macOS engine (swift/VZEngine.swift) on any host, against
# the Virtualization signature stub in swift/stubs/Virtualization (a module
# of Apple's declarations only; never linked into the library).
#
#  1. builds the stub module twice: as written (it must compile), and with
#     -D VMZ_STUB_NO_DEFAULTS, which drops the default implementations that
#     stand in for the delegate's `@objc optional` requirements: a delegate
#     method whose signature does not match Apple's (and would silently never
#     be called on macOS) is then an error;
#  2. type-checks the whole bridge, swift/*.swift, with -D VMZ_TYPECHECK_VZ,
#     which makes Engine.swift pick VZEngine as PlatformEngine on Linux too
#     (`#if os(Linux) && !VMZ_TYPECHECK_VZ`).
#
# This checks the engine against the stub, not against Apple's SDK: see
# the README (section macOS) for what that does not prove.
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFTC="${SWIFTC:-swiftc}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/vmz-typecheck.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

stub=swift/stubs/Virtualization/Virtualization.swift
mkdir -p "$tmp/stub" "$tmp/strict" "$tmp/cache"

"$SWIFTC" -emit-module -module-name Virtualization -parse-as-library \
    -module-cache-path "$tmp/cache" \
    "$stub" -emit-module-path "$tmp/stub/Virtualization.swiftmodule"
"$SWIFTC" -emit-module -module-name Virtualization -parse-as-library \
    -module-cache-path "$tmp/cache" -D VMZ_STUB_NO_DEFAULTS \
    "$stub" -emit-module-path "$tmp/strict/Virtualization.swiftmodule"

# A probe compiled with the bridge: VZEngine must exist (canImport saw the
# stub) and conform to VMEngine, and with VMZ_TYPECHECK_VZ the engine the
# bridge runs (PlatformEngine) must be VZEngine: if Engine.swift stops
# honouring the flag, this fails instead of checking the QEMU engine again.
probe="$tmp/probe.swift"
cat >"$probe" <<'PROBE'
let vmzTypecheckProbe: VMEngine.Type = VZEngine.self
let vmzTypecheckPlatformProbe: VZEngine.Type = PlatformEngine.self
PROBE
selection="PlatformEngine = VZEngine"

out="$tmp/typecheck.log"
if ! "$SWIFTC" -typecheck -swift-version 5 -parse-as-library \
    -module-name VMZBridge -module-cache-path "$tmp/cache" \
    -D VMZ_TYPECHECK_VZ -I "$tmp/strict" \
    -import-objc-header swift/bridging.h \
    swift/*.swift "$probe" >"$out" 2>&1; then
    cat "$out" >&2
    echo "typecheck-macos: FAILED" >&2
    exit 1
fi
# Warnings fail the check too (the bridge is warning-free).
if grep -q "warning:" "$out"; then
    cat "$out" >&2
    echo "typecheck-macos: FAILED (warnings)" >&2
    exit 1
fi

echo "typecheck-macos: OK: swift/VZEngine.swift and the bridge type-check against the Virtualization stub, not Apple's SDK ($selection)"
