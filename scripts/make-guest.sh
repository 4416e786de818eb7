#!/usr/bin/env bash
# Builds vmz's test guest, cached, never committed:
#   OUT/vmlinuz     Debian's linux-image-cloud-amd64 kernel as shipped (bzImage;
#                   with --standard: linux-image-amd64, Debian's standard kernel)
#   OUT/vmlinux     the same kernel uncompressed (ELF with a PVH entry: boots fastest)
#   OUT/initrd.img  busybox initramfs (uncompressed newc) running scripts/guest-init.sh
#   OUT/cmdline     the kernel command line for it
# Usage: scripts/make-guest.sh [--standard] [OUT]
#   default OUT: $VMZ_GUEST_DIR or target/vmz-guest; with --standard
#   target/vmz-guest-standard (the benchmarks' second guest: an xz bzImage).
# Cached: nothing is done while the scripts, /bin/busybox and the kernel .deb in
# OUT/cache are unchanged (no apt call either); `rm -r OUT/cache` picks up a
# newer kernel. Needs: apt-get (download only: nothing is installed),
# dpkg-deb, busybox-static, cpio, python3, lz4/xz/zstd as the kernel needs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
meta=linux-image-cloud-amd64
if [ "${1:-}" = --standard ]; then
    meta=linux-image-amd64
    shift
    out=${1:-$root/target/vmz-guest-standard}
else
    out=${1:-${VMZ_GUEST_DIR:-$root/target/vmz-guest}}
fi
mkdir -p "$out/cache"
out=$(cd "$out" && pwd)

# The stamp: the cached kernel .deb's name and a hash of everything else used.
inputs=$(cat "$root/scripts/make-guest.sh" "$root/scripts/guest-init.sh" /bin/busybox | sha256sum | cut -c1-16)
newest_deb() { find "$out/cache" -maxdepth 1 -name 'linux-image-*.deb' | sort -V | tail -n1; }
deb=$(newest_deb)
if [ -n "$deb" ] && [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "${deb##*/} $inputs" ] &&
    [ -f "$out/vmlinux" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ -f "$out/cmdline" ]; then
    exit 0
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP

# The kernel: $meta is a metapackage; download its linux-image-<abi>-...
# dependency (apt-get update once if apt's lists lack it).
if [ -z "$deb" ]; then
    resolve() { apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
    pkg=$(resolve)
    [ -n "$pkg" ] || { apt-get update -qq >&2 || true; pkg=$(resolve); }
    [ -n "$pkg" ] || { echo "make-guest: cannot resolve $meta" >&2; exit 1; }
    # (as root, apt's _apt sandbox user cannot write into the private $work)
    get() { (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); }
    get || { apt-get update -qq >&2 && get; }
    mv "$work/${pkg}_"*.deb "$out/cache/"
    deb=$(newest_deb)
fi
echo "make-guest: building the test guest from ${deb##*/} in $out" >&2
dpkg-deb -x "$deb" "$work/pkg"
cp "$work"/pkg/boot/vmlinuz-* "$work/vmlinuz"

# vmlinux: the bzImage's payload decompressed on the host (the guest would
# otherwise decompress itself under emulation, and -kernel vmlinux boots by PVH).
python3 - "$work/vmlinuz" "$work/vmlinux" <<'PY'
import gzip, lzma, struct, subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
setup_sects = data[0x1f1] or 4  # 0 means 4 (boot protocol)
offset, length = struct.unpack_from("<II", data, 0x248)
payload = data[(setup_sects + 1) * 512 + offset:][:length]
# xz, lz4 and zstd payloads end with the kernel's 4-byte size: not for the tool.
tool = lambda *cmd: subprocess.run(cmd, input=payload[:-4], capture_output=True, check=True).stdout
if payload[:2] == b"\x1f\x8b":
    raw = gzip.decompress(payload)
elif payload[:6] == b"\xfd7zXZ\x00":
    raw = lzma.LZMADecompressor().decompress(payload)
elif payload[:4] == b"\x02\x21\x4c\x18":  # lz4 legacy frame
    raw = tool("lz4", "-dc")
elif payload[:4] == b"\x28\xb5\x2f\xfd":
    raw = tool("zstd", "-qdc")
else:
    sys.exit("make-guest: unknown kernel compression %r" % payload[:6])
if raw[:4] != b"\x7fELF":
    sys.exit("make-guest: the decompressed kernel is not an ELF file")
open(dst, "wb").write(raw)
PY

# The initramfs: busybox, /init, and the modules for the console, the ACPI
# power button, virtio-net, -rng, -balloon, vsock and pvpanic,
ird="$work/initrd"
mkdir -p "$ird/bin" "$ird/lib/modules" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/tmp"
cp /bin/busybox "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cp "$root/scripts/guest-init.sh" "$ird/init"
chmod 755 "$ird/init"
add_module() { # NAME: copy it (decompressed) after its dependencies; none if built in
    local m=${1//-/_} f dep
    grep -qx "$m" "$ird/lib/modules/order" 2>/dev/null && return 0
    f=$(find "$work/pkg/lib/modules" -regex ".*/${m//_/[-_]}\.ko\(\.xz\|\.zst\)?" | head -n1)
    [ -n "$f" ] || return 0 # built in
    case "$f" in
    *.ko) cp "$f" "$ird/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" >"$ird/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$ird/lib/modules/$m.ko" ;;
    esac
    for dep in $(tr '\0' '\n' <"$ird/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep"
    done
    echo "$m" >>"$ird/lib/modules/order"
}
# The console's modules load first (init opens hvc0 before the others).
for m in virtio_pci virtio_console; do add_module "$m"; done
cp "$ird/lib/modules/order" "$ird/lib/modules/early"
for m in button evdev virtio_net virtio-rng virtio_balloon vmw_vsock_virtio_transport \
    pvpanic_mmio pvpanic_pci; do add_module "$m"; done
# udhcpc's script: apply the lease to the interface (no DNS is configured).
cat >"$ird/bin/udhcpc-script" <<'SH'
#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface" ;;
esac
exit 0
SH
chmod 755 "$ird/bin/udhcpc-script"
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$work/initrd.img"

# hvc0: the default console of both engines (VMZ_CONSOLE_VIRTIO).
echo "console=hvc0 panic=-1" >"$work/cmdline"
# Into place: the stamp goes last, so an interrupted run is redone next time.
rm -f "$out/stamp"
for f in vmlinuz vmlinux initrd.img cmdline; do mv -f "$work/$f" "$out/$f"; done
echo "${deb##*/} $inputs" >"$out/stamp"
echo "make-guest: modules: $(tr '\n' ' ' <"$ird/lib/modules/order")" >&2
for f in vmlinux vmlinuz initrd.img cmdline; do echo "$out/$f"; done
