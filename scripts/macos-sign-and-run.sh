#!/usr/bin/env bash
# Cargo runner for the macOS targets (.cargo/config.toml): ad-hoc signs the
# binary "$1" with the com.apple.security.virtualization entitlement
# (vmz.entitlements, or $VMZ_ENTITLEMENTS), then runs it with its arguments.
# Without the entitlement Virtualization.framework refuses to start a VM.
#
# Usable by other crates too: point their runner at this script, or run the
# same codesign line after each build:
#   codesign --entitlements vmz.entitlements --force -s - <binary>
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 <binary> [arguments...]" >&2
    exit 2
fi

entitlements="${VMZ_ENTITLEMENTS:-$(cd "$(dirname "$0")/.." && pwd)/vmz.entitlements}"
if [ ! -f "$entitlements" ]; then
    echo "macos-sign-and-run: entitlements file $entitlements not found" >&2
    exit 1
fi
if ! command -v codesign >/dev/null 2>&1; then
    echo "macos-sign-and-run: codesign not found (it comes with macOS / the Xcode Command Line Tools)" >&2
    exit 1
fi
# codesign reports "replacing existing signature" on success: only show its
# output when it fails.
if ! out="$(codesign --entitlements "$entitlements" --force -s - "$1" 2>&1)"; then
    echo "macos-sign-and-run: signing $1 failed:" >&2
    echo "$out" >&2
    exit 1
fi
exec "$@"
