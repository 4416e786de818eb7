#!/usr/bin/env bash
# Builds the documentation as docs.rs does (DOCS_RS=1: the build script
# skips the Swift step), with no swiftc and no libclang reachable: PATH holds
# only cargo's tools and a C compiler (to link build scripts), and bindgen
# (the one user of libclang) is not built without the `bindgen` feature.
# Rustdoc warnings (broken links, ...) fail it. Own target directory
# (target/docs-rs), so the normal build is not disturbed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$(mktemp -d "${TMPDIR:-/tmp}/vmz-docs-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
for tool in cc ld; do
    ln -s "$(command -v "$tool")" "$bin/$tool"
done
cargo_bin=$(dirname "$(command -v cargo)")
path="$cargo_bin:$bin"
if PATH="$path" command -v swiftc >/dev/null || PATH="$path" command -v clang >/dev/null; then
    echo "docs.sh: swiftc or clang still on PATH ($path)" >&2
    exit 1
fi
if PATH="$path" cargo tree --quiet -e build,normal --prefix none | grep -E '^(bindgen|clang-sys) '; then
    echo "docs.sh: bindgen/clang-sys are in the build graph" >&2
    exit 1
fi
PATH="$path" DOCS_RS=1 RUSTDOCFLAGS="-D warnings" CARGO_TARGET_DIR="$root/target/docs-rs" \
    cargo doc --no-deps --lib
echo "docs.sh: OK: cargo doc passed with no swiftc and no libclang (target/docs-rs/doc/vmz)"
