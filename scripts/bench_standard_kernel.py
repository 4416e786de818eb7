#!/usr/bin/env python3
"""Boot to userspace with Debian's *standard* kernel (xz-compressed bzImage):
vmz (`cargo run --release --example boot`, which unpacks the bzImage once
on the host and boots it through PVH) against a plain
`qemu-system-x86_64 -kernel vmlinuz ... -nographic` as a user would type it,
alternating runs. The initramfs is a one-line busybox init that prints the
marker at once, so the kernel's own boot is what is measured.

Usage: scripts/bench_standard_kernel.py [RUNS] [--fast-boot]
Needs: apt-get (download only), dpkg-deb, busybox-static, cpio; QEMU.
"""
import os, signal, shutil, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
runs = int(next((a for a in sys.argv[1:] if a.isdigit()), "8"))
fast = "--fast-boot" in sys.argv
work = os.path.join(root, "target", "vmz-bench", "standard-kernel")
os.makedirs(work, exist_ok=True)

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True, **kw).stdout

# The kernel: linux-image-amd64's dependency, downloaded and unpacked (not installed).
if not [f for f in os.listdir(work) if f.startswith("vmlinuz-")]:
    pkg = sh("apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'").strip()
    with tempfile.TemporaryDirectory() as t:
        sh(f"apt-get download -q -o APT::Sandbox::User=root {pkg}", cwd=t)
        sh(f"dpkg-deb --fsys-tarfile {t}/*.deb | tar -x -C {t} ./boot/")
        for f in os.listdir(f"{t}/boot"):
            if f.startswith("vmlinuz-"):
                shutil.copy(f"{t}/boot/{f}", work)
kernel = os.path.join(work, next(f for f in os.listdir(work) if f.startswith("vmlinuz-")))

# A minimal initramfs: print the marker, then wait.
initrd = os.path.join(work, "marker-initrd.img")
if not os.path.exists(initrd):
    with tempfile.TemporaryDirectory() as t:
        os.makedirs(f"{t}/bin")
        shutil.copy("/bin/busybox", f"{t}/bin/busybox")
        os.symlink("busybox", f"{t}/bin/sh")
        with open(f"{t}/init", "w") as f:
            f.write("#!/bin/sh\n/bin/busybox echo VMZ-GUEST-READY\nexec /bin/busybox sleep 100000\n")
        os.chmod(f"{t}/init", 0o755)
        sh(f"cd {t} && find . | cpio -o -H newc --quiet > {initrd}")

cmdline = "console=ttyS0 panic=-1"
sh(f"cd {root} && cargo build -q --release --example boot")
vmz = [f"{root}/target/release/examples/boot", "--kernel", kernel, "--initrd", initrd,
       "--cmdline", cmdline, "--memory", "256"] + (["--fast-boot"] if fast else [])
plain = ["qemu-system-x86_64", "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
         "-nographic", "-m", "256", "-accel", "tcg"]

def boot(cmd):
    t = time.time()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    seen = b""
    while b"VMZ-GUEST-READY" not in seen and time.time() - t < 60:
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    dt = time.time() - t
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    if b"VMZ-GUEST-READY" not in seen:
        sys.exit(f"no marker from {cmd[0]}")
    return dt

boot(vmz)  # the first vmz boot unpacks the kernel into the cache
a, b = [], []
for _ in range(runs):
    a.append(boot(vmz))
    b.append(boot(plain))
fmt = lambda xs: f"min {min(xs):.2f} / median {statistics.median(xs):.2f} / max {max(xs):.2f} s"
print(f"kernel: {os.path.basename(kernel)}; {runs} alternating runs each")
print(f"vmz{' --fast-boot' if fast else ''} (bzImage unpacked once, cached): {fmt(a)}")
print(f"plain qemu-system-x86_64 -kernel vmlinuz -nographic: {fmt(b)}")
print(f"vmz is {statistics.median(b) / statistics.median(a):.2f}x faster (median ratio vmz/plain {statistics.median(a) / statistics.median(b):.3f})")
