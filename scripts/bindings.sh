#!/usr/bin/env bash
# Regenerates src/sys/bindings.rs, the committed raw bindings, from
# include/libvmz.h: run it after every change to the header, and commit the
# result with it. (The build fails while they disagree and names this
# script.) Needs libclang (scripts/setup-debian.sh installs it).
#   scripts/bindings.sh           write src/sys/bindings.rs
#   scripts/bindings.sh --check   only compare (the test command's drift check)
# It runs vmz's build script with the `bindgen` feature and DOCS_RS=1 (so no
# Swift is compiled), in its own target directory, target/bindgen.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
committed=src/sys/bindings.rs

out=$(DOCS_RS=1 CARGO_TARGET_DIR="$root/target/bindgen" \
    cargo check --quiet --lib --features bindgen --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "build-script-executed" and "/build/vmz-" in m["out_dir"]:
        print(m["out_dir"])')
generated="$out/bindings.rs"
[ -f "$generated" ] || { echo "bindings.sh: bindgen wrote no $generated" >&2; exit 1; }

if [ "${1:-}" = --check ]; then
    if ! diff -u "$committed" "$generated" >&2; then
        echo "bindings.sh: FAILED: $committed is stale (diff above): run scripts/bindings.sh and commit it" >&2
        exit 1
    fi
    echo "bindings.sh: OK: $committed matches include/libvmz.h"
else
    cp "$generated" "$committed"
    echo "bindings.sh: wrote $committed"
fi
