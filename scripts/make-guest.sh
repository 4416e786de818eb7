#!/usr/bin/env bash
# Builds vmz's test guest, cached, never committed:
#   OUT/vmlinuz     Debian's linux-image-cloud-amd64 kernel as shipped (bzImage;
#                   with --standard: linux-image-amd64, Debian's standard kernel)
#   OUT/vmlinux     the same kernel uncompressed (ELF with a PVH entry: boots fastest)
#   OUT/initrd.img  busybox initramfs (uncompressed newc) running scripts/guest-init.sh
#   OUT/cmdline     the kernel command line for it
# With --arch arm64, the arm64 guest (booted by qemu-system-aarch64):
#   OUT/Image       Debian's linux-image-cloud-arm64 kernel (an uncompressed Image)
#   OUT/Image.gz    the same, gzip-compressed (as most distributions ship it)
#   OUT/initrd.img  the same initramfs with busybox-static:arm64
#   OUT/cmdline     its command line (the same)
# Usage: scripts/make-guest.sh [--standard | --arch x86_64|arm64] [OUT]
#   default OUT: $VMZ_GUEST_DIR or target/vmz-guest; with --standard
#   target/vmz-guest-standard (the benchmarks' second guest: an xz bzImage);
#   with --arch arm64: $VMZ_GUEST_DIR_ARM64 or target/vmz-guest-arm64.
# Cached: nothing is done while the scripts, busybox and the kernel .deb in
# OUT/cache are unchanged (no apt call either); `rm -r OUT/cache` picks up a
# newer kernel. Needs: apt-get (download only: nothing is installed),
# dpkg-deb, busybox-static, cpio, python3, gzip, lz4/xz/zstd as the kernel
# needs. The arm64 packages come through apt-get with a private state in
# OUT/cache/apt (arm64 package lists of the system's sources): the system's
# apt configuration, architectures and lists stay as they are.
# A C compiler with a static libc (gcc, libc6-dev) builds the guest's tools
# (scripts/guest-*.c: vsock, disk-bench, udp-echo).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=x86_64
meta=linux-image-cloud-amd64
if [ "${1:-}" = --arch ]; then
    case "${2:-}" in
    arm64 | aarch64) arch=arm64 meta=linux-image-cloud-arm64 ;;
    x86_64 | amd64) ;;
    *) echo "make-guest: --arch takes x86_64 or arm64, not '${2:-}'" >&2; exit 2 ;;
    esac
    shift 2
fi
products="vmlinuz vmlinux initrd.img cmdline"
if [ $arch = arm64 ]; then
    out=${1:-${VMZ_GUEST_DIR_ARM64:-$root/target/vmz-guest-arm64}}
    products="Image Image.gz initrd.img cmdline"
elif [ "${1:-}" = --standard ]; then
    meta=linux-image-amd64
    shift
    out=${1:-$root/target/vmz-guest-standard}
else
    out=${1:-${VMZ_GUEST_DIR:-$root/target/vmz-guest}}
fi
mkdir -p "$out/cache"
out=$(cd "$out" && pwd)

# apt for the guest's packages: the system's own for x86_64; for arm64 the
# same sources with a private state (lists, cache, an empty dpkg status).
# (As root, apt's _apt sandbox user cannot write into the private $work.)
apt_opts=(-o APT::Sandbox::User=root)
if [ $arch = arm64 ]; then
    a="$out/cache/apt"
    apt_opts+=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
        -o Dir::State::Lists="$a/lists" -o Dir::Cache="$a" -o Dir::State::status="$a/status")
fi
newest_deb() { find "$out/cache" -maxdepth 1 -name "$1_*.deb" | sort -V | tail -n1; }

# The stamp: the cached .debs' names and a hash of everything else used.
busybox_src=/bin/busybox # arm64: the busybox-static:arm64 .deb
[ $arch = x86_64 ] || busybox_src=$(newest_deb busybox-static)
deb=$(newest_deb 'linux-image-[0-9]*')
stamp() { echo "${deb##*/} $(cat "$root/scripts/make-guest.sh" "$root/scripts/guest-init.sh" "$root"/scripts/guest-*.c "$busybox_src" | sha256sum | cut -c1-16)"; }
fresh() { for f in $products; do [ -f "$out/$f" ] || return 1; done; }
if [ -n "$deb" ] && [ -n "$busybox_src" ] && [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$(stamp)" ] && fresh; then
    exit 0
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP

update() {
    if [ $arch = arm64 ]; then
        mkdir -p "$a/lists/partial" "$a/archives/partial"
        [ -f "$a/status" ] || : >"$a/status"
    fi
    apt-get "${apt_opts[@]}" update -qq >&2 || true
}
download() { # PACKAGE into OUT/cache (apt-get update once if apt's lists lack it)
    get() { (cd "$work" && apt-get "${apt_opts[@]}" download -q "$1" >&2); }
    get "$1" || { update && get "$1"; }
    mv "$work/$1_"*.deb "$out/cache/"
}
# The kernel: $meta is a metapackage; download its linux-image-<abi>-...
# dependency.
if [ -z "$deb" ]; then
    resolve() { apt-cache "${apt_opts[@]}" depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true; }
    pkg=$(resolve)
    [ -n "$pkg" ] || { update; pkg=$(resolve); }
    [ -n "$pkg" ] || { echo "make-guest: cannot resolve $meta" >&2; exit 1; }
    download "$pkg"
    deb=$(newest_deb 'linux-image-[0-9]*')
fi
busybox=/bin/busybox
if [ $arch = arm64 ]; then
    if [ -z "$busybox_src" ]; then
        download busybox-static
        busybox_src=$(newest_deb busybox-static)
    fi
    dpkg-deb -x "$busybox_src" "$work/busybox"
    busybox="$work/busybox/bin/busybox"
fi
[ $arch = x86_64 ] || rm -rf "$out/cache/apt" # 50 MB of lists, needed again only without the .debs
echo "make-guest: building the $arch test guest from ${deb##*/} in $out" >&2
dpkg-deb -x "$deb" "$work/pkg"

if [ $arch = arm64 ]; then
    # Debian's arm64 vmlinuz is the uncompressed Image ("ARM\x64" at 0x38);
    # Image.gz is how most other distributions ship it.
    cp "$work"/pkg/boot/vmlinuz-* "$work/Image"
    [ "$(od -An -c -j56 -N4 "$work/Image" | tr -d ' ')" = 'ARMd' ] ||
        { echo "make-guest: ${deb##*/} holds no arm64 Image" >&2; exit 1; }
    gzip -9nc "$work/Image" >"$work/Image.gz"
else
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
fi

# The initramfs: busybox, /init, and the modules for the console, the ACPI
# power button, virtio-net, -rng, -balloon, vsock, pvpanic, virtio-blk and
# virtio-fs (with fuse), each listed after its dependencies.
ird="$work/initrd"
mkdir -p "$ird/bin" "$ird/lib/modules" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/tmp"
cp "$busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
# The guest's C tools, static: vsock (busybox has no AF_VSOCK),
# disk-bench (busybox has no IOPS tool) and udp-echo (its nc has no UDP);
# for arm64 guests with Debian's
# cross compiler (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross), without
# which the arm64 guest has none of them.
guest_tool() { # NAME SOURCE
    if [ $arch = x86_64 ]; then
        cc -static -Os -o "$ird/bin/$1" "$root/scripts/$2"
    elif command -v aarch64-linux-gnu-gcc >/dev/null; then
        aarch64-linux-gnu-gcc -static -Os -o "$ird/bin/$1" "$root/scripts/$2"
    else
        echo "make-guest: no aarch64-linux-gnu-gcc: the arm64 guest gets no $1 tool (scripts/setup-debian.sh installs it)" >&2
    fi
}
guest_tool vsock guest-vsock.c
guest_tool disk-bench guest-disk-bench.c
guest_tool udp-echo guest-udp-echo.c
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
    pvpanic_mmio pvpanic_pci virtio_blk virtiofs; do add_module "$m"; done
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
for f in $products; do mv -f "$work/$f" "$out/$f"; done
stamp >"$out/stamp"
echo "make-guest: modules: $(tr '\n' ' ' <"$ird/lib/modules/order")" >&2
for f in $products; do echo "$out/$f"; done
