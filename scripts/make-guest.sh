#!/usr/bin/env bash
# Builds vmz's test guest, cached, never committed:
#   OUT/vmlinuz     Debian's linux-image-cloud-amd64 kernel as shipped (bzImage)
#   OUT/vmlinux     the same kernel uncompressed (ELF with a PVH entry: boots fastest)
#   OUT/initrd.img  busybox initramfs running scripts/guest-init.sh
#   OUT/cmdline     the kernel command line for it
# Usage: scripts/make-guest.sh [OUT]   (default: $VMZ_GUEST_DIR or target/vmz-guest)
# Needs: apt-get (download only: nothing is installed), dpkg-deb, busybox-static,
# cpio, lz4/xz/zstd as the kernel needs; scripts/setup-debian.sh installs them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${VMZ_GUEST_DIR:-$root/target/vmz-guest}}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The kernel package: the cloud metapackage's dependency.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "make-guest: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }

stamp="$pkg $(cat "$root/scripts/make-guest.sh" "$root/scripts/guest-init.sh" /bin/busybox | sha256sum | cut -c1-16)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
    [ -f "$out/vmlinux" ] && [ -f "$out/initrd.img" ] && [ -f "$out/cmdline" ]; then
    exit 0
fi
echo "make-guest: building the test guest ($pkg) in $out" >&2

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/cache"
deb=$(ls "$out/cache/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
    (cd "$work" && apt-get download "$pkg" 2>/dev/null)
    mv "$work/${pkg}_"*.deb "$out/cache/"
    deb=$(ls "$out/cache/${pkg}_"*.deb | head -n1)
fi
dpkg-deb -x "$deb" "$work/pkg"
cp "$work"/pkg/boot/vmlinuz-* "$work/vmlinuz"

# vmlinux: the bzImage's payload, decompressed on the host (the guest would
# otherwise decompress itself under emulation).
python3 - "$work/vmlinuz" "$work/vmlinux" <<'PY'
import lzma, struct, subprocess, sys, gzip
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
setup_sects = data[0x1f1] or 4
offset, length = struct.unpack_from("<II", data, 0x248)
payload = data[(setup_sects + 1) * 512 + offset:][:length]
if payload[:2] == b"\x1f\x8b":
    raw = gzip.decompress(payload)
elif payload[:6] == b"\xfd7zXZ\x00":
    raw = lzma.LZMADecompressor().decompress(payload)
elif payload[:4] == b"\x02\x21\x4c\x18":
    raw = subprocess.run(["lz4", "-dc"], input=payload, capture_output=True).stdout
elif payload[:4] == b"\x28\xb5\x2f\xfd":
    raw = subprocess.run(["zstd", "-dc"], input=payload, capture_output=True).stdout
else:
    sys.exit("make-guest: unknown kernel compression %r" % payload[:6])
if raw[:4] != b"\x7fELF":
    sys.exit("make-guest: the decompressed kernel is not an ELF file")
open(dst, "wb").write(raw)
PY

# The initramfs: busybox, /init, the modules for virtio-net and the power button.
ird="$work/initrd"
mkdir -p "$ird/bin" "$ird/lib/modules" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/tmp"
cp /bin/busybox "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cp "$root/scripts/guest-init.sh" "$ird/init"
chmod 755 "$ird/init"
for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
    failover net_failover virtio_net button evdev pvpanic pvpanic-mmio; do
    f=$(find "$work/pkg/lib/modules" -name "$m.ko*" | head -n1)
    [ -n "$f" ] || continue # built in
    case "$f" in
    *.ko) cp "$f" "$ird/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" >"$ird/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$ird/lib/modules/$m.ko" ;;
    esac
done
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

echo "console=ttyS0 panic=-1" >"$work/cmdline"
for f in vmlinuz vmlinux initrd.img cmdline; do mv -f "$work/$f" "$out/$f"; done
echo "$stamp" >"$out/stamp"
echo "make-guest: $out/{vmlinux,vmlinuz,initrd.img,cmdline} ($pkg)" >&2
