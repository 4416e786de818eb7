//! The rows of the vmz bench's main results table, in order.

use super::*;

/// The rows of the table, in order (the scaling rows as `opts` asks).
pub(crate) fn table_rows(opts: &Options) -> Vec<TableRow> {
    let row =
        |what: &str, unit: &'static str, key: &str, reference: Option<(&str, &str)>, note: &str| {
            TableRow {
                what: what.into(),
                unit,
                row: key.into(),
                reference: reference.map(|(a, b)| (a.to_string(), b.to_string())),
                note: note.into(),
            }
        };
    let mut rows = vec![
        row(
            "1. boot to userspace (Machine::new+start → first line of /init)",
            "ms",
            "boot.vmz_userspace_ms",
            Some(("QEMU, vmz's args", "boot.qemu_same_args_userspace_ms")),
            "goal ratio ≤ 1.03",
        ),
        row(
            "1. boot to userspace",
            "ms",
            "boot.vmz_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "goal ratio ≤ 0.333 (3x faster)",
        ),
        row(
            "1. boot to userspace, vmz given the cloud bzImage (cache warm)",
            "ms",
            "boot.vmz_bzimage_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "goal ratio ≤ 0.333",
        ),
        row(
            "1. boot to userspace, standard kernel: vmz given the xz bzImage (cache warm)",
            "ms",
            "boot.std.vmz_userspace_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_userspace_ms",
            )),
            "goal ratio ≤ 0.333",
        ),
        row(
            "1. boot to userspace, cloud bzImage, `fast_boot_options(true)` (opt-in)",
            "ms",
            "boot.vmz_bzimage_fast_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "adds `cryptomgr.notests no_timer_check`",
        ),
        row(
            "1. boot to userspace, standard bzImage, `fast_boot_options(true)` (opt-in)",
            "ms",
            "boot.std.vmz_fast_userspace_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_userspace_ms",
            )),
            "adds `cryptomgr.notests no_timer_check`",
        ),
        row(
            "1. first boot of the cloud bzImage, empty kernel cache (unpack included)",
            "ms",
            "boot.vmz_bzimage_first_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "to userspace; once",
        ),
        row(
            "1. first boot of the standard bzImage, empty kernel cache (unpack included)",
            "ms",
            "boot.std.vmz_first_userspace_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_userspace_ms",
            )),
            "to userspace; once",
        ),
        row(
            "1. boot to marker (userspace + modules + acpid)",
            "ms",
            "boot.vmz_ms",
            Some(("QEMU, vmz's args", "boot.qemu_same_args_ms")),
            "goal ratio ≤ 1.03",
        ),
        row(
            "1. boot to marker",
            "ms",
            "boot.vmz_ms",
            Some(("plain QEMU (cloud bzImage, defaults)", "boot.qemu_plain_ms")),
            "",
        ),
        row(
            "1. boot to marker, standard kernel (vmz given the bzImage)",
            "ms",
            "boot.std.vmz_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_ms",
            )),
            "",
        ),
        row(
            "1. boot to marker, all runs of rows 1-2",
            "ms",
            "boot.vmz_extra_ms",
            Some(("QEMU, vmz's args (rows 2)", "boot.qemu_same_args_extra_ms")),
            "the boots before request/force stop",
        ),
        row(
            "2. guest `poweroff` written → GuestStopped handler",
            "ms",
            "stop.poweroff.vmz_ms",
            Some(("same → QEMU exit (waitpid)", "stop.poweroff.qemu_ms")),
            "",
        ),
        row(
            "2. request_stop() → GuestStopped handler",
            "ms",
            "stop.request.vmz_ms",
            Some(("QMP system_powerdown → QEMU exit", "stop.request.qemu_ms")),
            "",
        ),
        row(
            "2. request_stop() → wait() returns",
            "ms",
            "stop.request.vmz_wait_ms",
            Some(("QMP system_powerdown → QEMU exit", "stop.request.qemu_ms")),
            "",
        ),
        row(
            "2. force_stop() → returns (stopped)",
            "ms",
            "stop.force.vmz_ms",
            Some(("SIGKILL → waitpid", "stop.force.qemu_ms")),
            "",
        ),
        row(
            "3. Config::validate",
            "µs",
            "call.validate_us",
            Some(("same checks in plain Rust", "call.native_validate_us")),
            "mean of 200 calls per sample",
        ),
        row(
            "3. Machine::new + drop (no start)",
            "µs",
            "call.new_drop_us",
            Some(("Config::validate", "call.validate_us")),
            "mean of 50 calls per sample",
        ),
        row(
            "3. event latency: QEMU exit → GuestStopped handler",
            "µs",
            "event.exit_to_handler_us",
            None,
            "pidfd poll in the bench vs the handler's clock",
        ),
    ];
    if opts.cat_bytes > 0 {
        rows.push(row(
            &format!("4. serial guest→host (`cat-bytes {}`)", opts.cat_bytes),
            "MB/s",
            "vmz.serial_out_mbps",
            Some(("QEMU, vmz's args", "qemu.serial_out_mbps")),
            "higher is better",
        ));
    }
    rows.push(row(
        &format!(
            "4. serial host→guest ({} lines of 64 B, echoed)",
            opts.echo_lines
        ),
        "MB/s",
        "vmz.serial_in_mbps",
        Some(("QEMU, vmz's args", "qemu.serial_in_mbps")),
        "higher is better; to the last echo",
    ));
    rows.push(row(
        "4. host→guest lines without an echo",
        "lines",
        "vmz.serial_in_lost_lines",
        Some(("QEMU, vmz's args", "qemu.serial_in_lost_lines")),
        "0 = nothing lost",
    ));
    for &n in &opts.scaling {
        rows.push(row(
            &format!("5. {n} guests × {} MiB: all markers seen", opts.scaling_mib),
            "ms",
            &format!("scale.{n}.vmz_all_up_ms"),
            Some(("QEMU × n, same args", &format!("scale.{n}.qemu_all_up_ms"))),
            "started together",
        ));
        rows.push(row(
            &format!("5. {n} guests: host process VmRSS"),
            "MiB",
            &format!("scale.{n}.vmz_host_rss_mib"),
            Some((
                "bench process running QEMU × n",
                &format!("scale.{n}.qemu_host_rss_mib"),
            )),
            "without QEMU",
        ));
        rows.push(row(
            &format!("5. {n} guests: QEMU VmRSS per guest"),
            "MiB",
            &format!("scale.{n}.vmz_qemu_rss_mib"),
            Some((
                "QEMU × n, same args",
                &format!("scale.{n}.qemu_qemu_rss_mib"),
            )),
            "",
        ));
    }
    rows
}
