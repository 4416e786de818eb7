//! Samples and their statistics.

use super::*;

/// Seconds as f64 milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// All samples, by row name, in insertion order of rows.
#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) rows: BTreeMap<String, Vec<f64>>,
    pub(crate) order: Vec<String>,
}

impl Samples {
    pub(crate) fn add(&mut self, row: &str, value: f64) {
        if !self.rows.contains_key(row) {
            self.order.push(row.to_string());
        }
        self.rows.entry(row.to_string()).or_default().push(value);
    }

    /// Adds both times of a boot: `{prefix}_ms` (to the marker) and
    /// `{prefix}_userspace_ms`.
    pub(crate) fn add_boot(&mut self, prefix: &str, boot: Boot) {
        self.add(&format!("{prefix}_ms"), ms(boot.ready));
        self.add(&format!("{prefix}_userspace_ms"), ms(boot.userspace));
    }

    pub(crate) fn get(&self, row: &str) -> &[f64] {
        self.rows.get(row).map(Vec::as_slice).unwrap_or_default()
    }
}

/// min, median, max.
pub(crate) fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((s[0], median, s[n - 1]))
}

/// Formats a number with sensible precision.
pub(crate) fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// "min / median / max" of a row.
pub(crate) fn triple(v: &[f64]) -> String {
    match stats(v) {
        Some((a, b, c)) => format!("{} / {} / {}", num(a), num(b), num(c)),
        None => "n/a".into(),
    }
}

/// min, median, max of the ratios `a[i] / b[i]`: run i of one side against
/// run i of the other, next to each other in time.
pub(crate) fn pair_ratios(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    stats(&ratios(a, b))
}

/// The ratios `a[i] / b[i]`, run by run (pairs with a zero `b[i]` left
/// out).
pub(crate) fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(_, y)| **y != 0.0)
        .map(|(x, y)| x / y)
        .collect()
}

/// The table note's tail for a pair of rows: "; pairs min / median / max"
/// of their [`pair_ratios`], or nothing without samples.
pub(crate) fn pairs_note(samples: &Samples, a: &str, b: &str) -> String {
    match pair_ratios(samples.get(a), samples.get(b)) {
        Some((lo, mid, hi)) => format!("; pairs {lo:.3} / {mid:.3} / {hi:.3}"),
        None => String::new(),
    }
}
