#!/usr/bin/env python3
"""Plots of vmz's benchmark (scripts/bench.sh).

Usage: bench_plot.py SAMPLES_JSON OUT_DIR

Reads the raw samples that `cargo bench --bench vmz` wrote
(target/vmz-bench/samples.json) and writes:
  OUT_DIR/bench-boot.png     boot time to userspace (the first line of the
                             guest's /init): vmz, QEMU with vmz's arguments,
                             plain QEMU; Debian's cloud kernel and, if it was
                             measured, its standard kernel (box + every sample)
  OUT_DIR/bench-scaling.png  guests started together: time until all are up,
                             and memory (bench process, QEMU per guest)
"""

import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def boot_plot(samples, meta, path):
    """Box plot with the individual runs drawn over it."""
    series = [
        ("cloud kernel:\nvmz (vmlinux)", samples.get("boot.vmz_userspace_ms", []), "tab:blue"),
        ("cloud:\nvmz (bzImage,\ncache warm)", samples.get("boot.vmz_bzimage_userspace_ms", []), "tab:cyan"),
        ("cloud:\nQEMU, vmz's args", samples.get("boot.qemu_same_args_userspace_ms", []), "tab:orange"),
        ("cloud:\nplain QEMU\n(bzImage)", samples.get("boot.qemu_plain_userspace_ms", []), "tab:gray"),
        ("standard kernel:\nvmz (bzImage,\ncache warm)", samples.get("boot.std.vmz_userspace_ms", []), "tab:green"),
        ("standard:\nvmz, fast_boot\noptions (opt-in)", samples.get("boot.std.vmz_fast_userspace_ms", []), "tab:olive"),
        ("standard:\nplain QEMU\n(bzImage)", samples.get("boot.std.qemu_plain_userspace_ms", []), "tab:red"),
    ]
    series = [s for s in series if s[1]]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    data = [[v / 1000 for v in s[1]] for s in series]
    ax.boxplot(data, widths=0.5, showfliers=False)
    for i, (s, d) in enumerate(zip(series, data), start=1):
        jitter = [i + 0.12 * ((k % 5) - 2) / 2 for k in range(len(d))]
        ax.scatter(jitter, d, s=16, color=s[2], alpha=0.8, zorder=3)
    ax.set_xticks(range(1, len(series) + 1), [s[0] for s in series])
    ax.set_ylim(bottom=0)
    ax.set_ylabel("seconds to the first line of /init")
    runs = meta.get("runs", "?")
    ax.set_title(f"Boot to userspace under TCG, {runs} alternating runs each")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def median(values):
    s = sorted(values)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def scaling_plot(samples, meta, path):
    """Time to all-up and RSS against the number of guests (medians,
    min-max as error bars)."""
    counts = sorted(
        {int(m.group(1)) for k in samples for m in [re.match(r"scale\.(\d+)\.", k)] if m}
    )
    if not counts:
        print("no scaling samples; skipping", path)
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))

    def series(ax, key, label, color, scale=1.0, marker="o"):
        meds, lo, hi = [], [], []
        for n in counts:
            v = [x * scale for x in samples.get(f"scale.{n}.{key}", [])]
            m = median(v)
            meds.append(m)
            lo.append(m - min(v) if v else 0)
            hi.append(max(v) - m if v else 0)
        ax.errorbar(counts, meds, yerr=[lo, hi], label=label, color=color, marker=marker, capsize=3)

    series(left, "vmz_all_up_ms", "vmz", "tab:blue", 1 / 1000)
    series(left, "qemu_all_up_ms", "QEMU directly, same args", "tab:orange", 1 / 1000, "s")
    left.set_xlabel("guests started together")
    left.set_ylabel("seconds until every marker is seen")
    left.set_xscale("log", base=2)
    left.set_xticks(counts, [str(n) for n in counts])
    left.set_ylim(bottom=0)
    left.set_title("Time to all up")
    left.grid(alpha=0.3)
    left.legend()

    series(right, "vmz_qemu_rss_mib", "QEMU RSS per guest (vmz)", "tab:blue")
    series(right, "qemu_qemu_rss_mib", "QEMU RSS per guest (direct)", "tab:orange", marker="s")
    series(right, "vmz_host_rss_mib", "host process RSS (vmz)", "tab:green", marker="^")
    series(right, "qemu_host_rss_mib", "host process RSS (direct)", "tab:olive", marker="v")
    right.set_ylim(bottom=0)
    right.set_xlabel("guests")
    right.set_ylabel("MiB (VmRSS)")
    right.set_xscale("log", base=2)
    right.set_xticks(counts, [str(n) for n in counts])
    mib = meta.get("scaling_mib", "?")
    right.set_title(f"Memory, {mib} MiB guests")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)

    runs = meta.get("scaling_runs", "?")
    fig.suptitle(f"Scaling under TCG on {os.cpu_count()} cores, median and min-max of {runs} runs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    samples, meta = doc["samples"], doc.get("meta", {})
    os.makedirs(sys.argv[2], exist_ok=True)
    boot = os.path.join(sys.argv[2], "bench-boot.png")
    scaling = os.path.join(sys.argv[2], "bench-scaling.png")
    boot_plot(samples, meta, boot)
    scaling_plot(samples, meta, scaling)
    print("wrote", boot, "and", scaling)


if __name__ == "__main__":
    main()
