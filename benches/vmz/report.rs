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

/// Adds each compared row's per-pair ratios (run i of the row against run i
/// of its reference) to `samples`, under `key(row)`, for the JSON output.
pub(crate) fn add_pair_ratios(
    samples: &mut Samples,
    rows: &[TableRow],
    key: impl Fn(&str) -> String,
) {
    for row in rows {
        if let Some((_, reference)) = &row.reference {
            for r in ratios(samples.get(&row.row), samples.get(reference)) {
                samples.add(&key(&row.row), r);
            }
        }
    }
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
