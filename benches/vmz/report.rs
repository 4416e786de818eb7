//! The results table and the raw outputs (JSON, CSV, Markdown).

use super::*;

/// One line of the results table.
pub(crate) struct TableRow {
    pub(crate) what: String,
    pub(crate) unit: &'static str,
    pub(crate) row: String,
    pub(crate) reference: Option<(String, String)>,
    pub(crate) note: String,
}

/// Builds the Markdown table.
pub(crate) fn table(samples: &Samples, rows: &[TableRow]) -> String {
    let mut out = String::new();
    out.push_str(
        "| measurement | unit | vmz min / median / max | reference | reference min / median / max | ratio vmz/ref (medians) | n | note |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let v = samples.get(&r.row);
        if v.is_empty() {
            continue; // e.g. the standard-kernel rows without that guest
        }
        let (ref_name, ref_triple, ratio) = match &r.reference {
            Some((name, key)) => {
                let rv = samples.get(key);
                let ratio = match (stats(v), stats(rv)) {
                    (Some((_, a, _)), Some((_, b, _))) if b != 0.0 => format!("{:.3}", a / b),
                    _ => "n/a".into(),
                };
                (name.clone(), triple(rv), ratio)
            }
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.what,
            r.unit,
            triple(v),
            ref_name,
            ref_triple,
            ratio,
            v.len(),
            r.note
        );
    }
    out
}

/// Escapes a string for JSON.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An argument vector as a shell-quoted line (for the report).
pub(crate) fn quote_args(v: &[String]) -> String {
    v.iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the outputs (as [`write_outputs`]) and returns the report: the
/// metadata as a list, then the table.
pub(crate) fn finish(
    out_dir: &Path,
    names: (&str, &str),
    samples: &Samples,
    meta: &[(&str, String)],
    table: &str,
) -> BenchResult<String> {
    write_outputs(out_dir, names, samples, meta, table)?;
    let mut report = String::new();
    for (k, v) in meta {
        let _ = writeln!(report, "- {k}: `{v}`");
    }
    report.push('\n');
    report.push_str(table);
    Ok(report)
}

/// Writes `{stem}.json` and `{stem}.csv` (the samples) and `{table_stem}.md`
/// (the table) into `out_dir`.
pub(crate) fn write_outputs(
    out_dir: &Path,
    (stem, table_stem): (&str, &str),
    samples: &Samples,
    meta: &[(&str, String)],
    table: &str,
) -> BenchResult<()> {
    std::fs::create_dir_all(out_dir).context("create target/vmz-bench")?;
    let mut json = String::from("{\n  \"meta\": {");
    for (i, (k, v)) in meta.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(json, "{sep}\n    {}: {}", json_str(k), json_str(v));
    }
    json.push_str("\n  },\n  \"samples\": {");
    for (i, row) in samples.order.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let values: Vec<String> = samples.get(row).iter().map(|v| format!("{v}")).collect();
        let _ = write!(
            json,
            "{sep}\n    {}: [{}]",
            json_str(row),
            values.join(", ")
        );
    }
    json.push_str("\n  }\n}\n");
    std::fs::write(out_dir.join(format!("{stem}.json")), json).context("write the JSON samples")?;

    let mut csv = String::from("row,run,value\n");
    for row in &samples.order {
        for (i, v) in samples.get(row).iter().enumerate() {
            let _ = writeln!(csv, "{row},{i},{v}");
        }
    }
    std::fs::write(out_dir.join(format!("{stem}.csv")), csv).context("write the CSV samples")?;
    std::fs::write(out_dir.join(format!("{table_stem}.md")), table).context("write the table")?;
    Ok(())
}

/// The rows of the table, in order.
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
