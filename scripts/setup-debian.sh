#!/usr/bin/env bash
# Installs what vmz needs to build and test on Debian 12 (bookworm), as root.
# Idempotent: anything already present is left alone.
#
#   swiftc        Debian 13's `swiftlang` (Swift 6.0.3), from trixie pinned low
#   libclang      for bindgen
#   qemu-system   the Linux engine (bookworm's QEMU 7.2: 7-9% faster under TCG
#                 than backports' 10.0, measured)
#   qemu-system-arm  qemu-system-aarch64 for arm64 guests (bookworm's 7.2 too;
#                 the arm64 kernel and busybox are downloaded, not installed,
#                 by scripts/make-guest.sh --arch arm64)
#   gcc-aarch64-linux-gnu, libc6-dev-arm64-cross  the arm64 test guest's
#                 static tools (scripts/guest-*.c)
#   busybox       `busybox-static`, for the test guest's initramfs
#   cpio, lz4, zstd  to pack the initramfs and unpack the kernel
#   qemu-img      (`qemu-utils`, bookworm's 7.2 like QEMU) the disk tests make
#                 qcow2 images with it
#   valgrind      scripts/valgrind.sh (part of scripts/test.sh)
#   cargo-fuzz    `cargo install`ed: the fuzz target in scripts/test.sh
#   gcc, libc6-dev   to build the test guest's static tools (vsock, disk-bench)
#   vhost-device-vsock  the user-space vsock backend (no /dev/vhost-vsock
#                 here), by `cargo install` (crates.io), pinned to the version
#                 tested; into cargo's bin directory
#   virtiofsd     the Rust virtiofsd, for shared directories: `cargo install
#                 virtiofsd` (builds in about a minute; needs libseccomp-dev
#                 and libcap-ng-dev). Not QEMU 7.2's C /usr/lib/qemu/virtiofsd,
#                 already here: it lacks --fd (vmz hands the daemon its
#                 socket) and --readonly, and QEMU 8 dropped it. Not trixie's
#                 virtiofsd package: it upgrades QEMU to 10 and ~70 packages.
set -euo pipefail

# vhost-device-vsock needs only cargo, not apt: installed first, so that an
# 'everything is installed' exit below does not skip it.
vsock_version=0.3.0
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v vhost-device-vsock >/dev/null 2>&1 && [ ! -x "$cargo_bin/vhost-device-vsock" ]; then
    if command -v cargo >/dev/null 2>&1; then
        echo "setup-debian.sh: cargo install vhost-device-vsock $vsock_version"
        cargo install --locked --version "$vsock_version" vhost-device-vsock
    else
        echo "setup-debian.sh: no cargo: vhost-device-vsock (vsock on Linux) not installed" >&2
    fi
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-debian.sh: run as root (it calls apt-get)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

need=()
command -v swiftc >/dev/null 2>&1 || need+=(swift)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu)
command -v qemu-system-aarch64 >/dev/null 2>&1 || need+=(qemu-arm)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(cross-arm64)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox)
# bindgen loads libclang.so (not libclang-cpp, which the toolchain may bring).
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || need+=(clang)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v lz4 >/dev/null 2>&1 || need+=(lz4)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-img)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)

# cargo-fuzz, for the fuzz target that scripts/test.sh builds and runs
# briefly (a crates.io tool, installed with cargo; needs the Rust toolchain).
if command -v cargo >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/aarch64-linux-gnu/libc.a ] || need+=(libc)
rust_virtiofsd() { "${1:-virtiofsd}" --version 2>/dev/null | grep -q '^virtiofsd [0-9]'; }
rust_virtiofsd || rust_virtiofsd /usr/libexec/virtiofsd || need+=(virtiofsd)

if [ ${#need[@]} -eq 0 ]; then
    echo "setup-debian.sh: everything is installed"
    exit 0
fi
echo "setup-debian.sh: installing: ${need[*]}"

# Debian 13 (trixie) only for swiftlang, pinned below bookworm so nothing else
# is upgraded from it.
if [ ! -f /etc/apt/sources.list.d/vmz-trixie.sources ]; then
    cat >/etc/apt/sources.list.d/vmz-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat >/etc/apt/preferences.d/vmz-trixie <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
fi

# Third-party sources on the machine may be unreachable; Debian's must not be.
apt-get update -o Acquire::Retries=3 || true

pkgs=()
for n in "${need[@]}"; do
    case "$n" in
        qemu) pkgs+=(qemu-system-x86) ;;
        qemu-arm) pkgs+=(qemu-system-arm) ;;
        cross-arm64) pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
        busybox) pkgs+=(busybox-static) ;;
        clang) pkgs+=(libclang-dev) ;;
        cpio) pkgs+=(cpio) ;;
        zstd) pkgs+=(zstd) ;;
        lz4) pkgs+=(lz4) ;;
        qemu-img) pkgs+=(qemu-utils) ;;
        valgrind) pkgs+=(valgrind) ;;
        gcc) pkgs+=(gcc) ;;
        libc) pkgs+=(libc6-dev) ;;
        virtiofsd) pkgs+=(libseccomp-dev libcap-ng-dev pkg-config) ;;
    esac
done
if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get install -y --no-install-recommends "${pkgs[@]}"
fi
if [[ " ${need[*]} " == *" swift "* ]]; then
    apt-get install -y -t trixie swiftlang
fi
if [[ " ${need[*]} " == *" virtiofsd "* ]]; then
    command -v cargo >/dev/null 2>&1 || {
        echo "setup-debian.sh: cargo is needed to install virtiofsd (install Rust with rustup first)" >&2
        exit 1
    }
    cargo install --locked virtiofsd
    virtiofsd --version
fi

swiftc --version
qemu-system-x86_64 --version | head -n1
qemu-system-aarch64 --version | head -n1
