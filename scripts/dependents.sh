#!/usr/bin/env bash
# vmz as a dependency (tests/dependents): a crate that depends on vmz and a
# binary that depends on that crate, neither with a build script, build,
# test and run. Then checks that the binary carries the Swift runtime
# (`ldd` lists no Swift library) and runs with the Swift toolchain hidden
# from it (a private mount namespace with an empty directory over the
# toolchain's lib/, where unshare is allowed). With a test guest in
# target/vmz-guest (scripts/make-guest.sh) it also boots it.
# Shares target/ with vmz's own build, so vmz is not compiled twice.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=tests/dependents
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# The same dependency versions as vmz's own build (so its artifacts are
# reused); cargo adds the two local crates.
cp Cargo.lock "$dir/Cargo.lock"

cargo test --manifest-path "$dir/Cargo.toml" --workspace
cargo build --manifest-path "$dir/Cargo.toml" -p vmz-user-app
bin="$CARGO_TARGET_DIR/debug/vmz-user-app"

if ldd "$bin" | grep -i swift; then
    echo "dependents: FAILED: $bin loads Swift libraries (above)" >&2
    exit 1
fi

guest="$root/target/vmz-guest"
args=()
[ -f "$guest/vmlinux" ] && [ -f "$guest/initrd.img" ] && args=("$guest")

# The toolchain's lib/ (e.g. /usr/libexec/swift/lib), hidden under an empty
# tmpfs in a private mount namespace.
toolchain_lib=$(dirname "$(swiftc -print-target-info | sed -n 's/.*"runtimeResourcePath": *"\(.*\)".*/\1/p')")
if unshare -m true 2>/dev/null; then
    unshare -m sh -c '
        mount -t tmpfs -o ro,size=4k vmz-hidden "$1" || exit 3
        if ls "$1"/swift/linux/libswiftCore.so 2>/dev/null; then exit 4; fi
        shift; exec "$@"' sh "$toolchain_lib" "$bin" "${args[@]}"
    echo "dependents: OK: $bin ran with $toolchain_lib hidden; ldd lists no Swift library"
else
    "$bin" "${args[@]}"
    echo "dependents: OK (unshare not permitted here: ran with the toolchain visible); ldd lists no Swift library"
fi
