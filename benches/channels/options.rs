//! What the channels bench runs (from the environment) and the rows of its table.

use super::*;

/// Runs and transfer sizes.
pub(crate) struct Options {
    pub(crate) runs: usize,
    pub(crate) ttys0_bytes: usize,
    pub(crate) hvc0_bytes: usize,
    pub(crate) vsock_bytes: usize,
    pub(crate) vsock_round_trips: usize,
    pub(crate) forward_bytes: usize,
    /// An A/A run: the reference in both columns.
    pub(crate) calibrate: bool,
    pub(crate) out_dir: PathBuf,
}

impl Options {
    pub(crate) fn from_env() -> BenchResult<Options> {
        Ok(Options {
            runs: env_usize("VMZ_CHANNEL_RUNS", 10)?.max(1),
            ttys0_bytes: env_usize("VMZ_CHANNEL_TTYS0_BYTES", 512 << 10)?.max(1),
            hvc0_bytes: env_usize("VMZ_CHANNEL_HVC0_BYTES", 16 << 20)?.max(1),
            vsock_bytes: env_usize("VMZ_CHANNEL_VSOCK_BYTES", 256 << 20)?.max(1),
            vsock_round_trips: env_usize("VMZ_CHANNEL_VSOCK_ROUND_TRIPS", 3000)?.max(1),
            forward_bytes: env_usize("VMZ_CHANNEL_FORWARD_BYTES", 32 << 20)?.max(1),
            calibrate: env_usize("VMZ_CHANNEL_CALIBRATE", 0)? != 0,
            out_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-bench"),
        })
    }

    /// The options, for the report and channels.json.
    pub(crate) fn meta(&self) -> Vec<(&'static str, String)> {
        vec![
            ("runs", self.runs.to_string()),
            ("ttys0_bytes", self.ttys0_bytes.to_string()),
            ("hvc0_bytes", self.hvc0_bytes.to_string()),
            ("vsock_bytes", self.vsock_bytes.to_string()),
            ("vsock_round_trips", self.vsock_round_trips.to_string()),
            ("forward_bytes", self.forward_bytes.to_string()),
            (
                "calibration",
                if self.calibrate {
                    "yes: the vmz column is the reference too (A/A)".into()
                } else {
                    "no".into()
                },
            ),
        ]
    }
}

/// The rows of the table, in order, with per-pair ratios in the notes.
pub(crate) fn table_rows(opts: &Options, samples: &Samples) -> Vec<TableRow> {
    let row = |what: String, unit: &'static str, key: &str, note: &str| {
        let (a, b) = (
            format!("{key}.vmz_{}", unit_key(unit)),
            format!("{key}.reference_{}", unit_key(unit)),
        );
        TableRow {
            what,
            unit,
            note: format!("{note}{}", pairs_note(samples, &a, &b)),
            row: a,
            reference: Some(("the engine alone, vmz's args".to_string(), b)),
        }
    };
    let mib = |n: usize| match n % (1 << 20) {
        0 => format!("{} MiB", n >> 20),
        _ => format!("{n} B"),
    };
    vec![
        row(
            format!(
                "console `ttyS0` (8250), guest→host, `cat-bytes` {} KiB",
                opts.ttys0_bytes >> 10
            ),
            "MB/s",
            "console_ttys0",
            "goal ratio ≥ 0.97",
        ),
        row(
            format!(
                "console `hvc0` (virtio-console), guest→host, `cat-bytes` {}",
                mib(opts.hvc0_bytes)
            ),
            "MB/s",
            "console_hvc0",
            "goal ratio ≥ 0.97",
        ),
        row(
            format!(
                "vsock guest→host (`vhost-device-vsock`), {}",
                mib(opts.vsock_bytes)
            ),
            "MB/s",
            "vsock_g2h",
            "goal ratio ≥ 0.97",
        ),
        row(
            format!("vsock host→guest, {}", mib(opts.vsock_bytes)),
            "MB/s",
            "vsock_h2g",
            "goal ratio ≥ 0.97",
        ),
        row(
            format!(
                "vsock round trip, 1 byte, median of {} per run",
                opts.vsock_round_trips
            ),
            "µs",
            "vsock_rtt",
            "lower is better: goal ratio ≤ 1.03",
        ),
        row(
            format!(
                "NAT port forward (TCP, slirp), {} echoed by busybox `nc -e cat`",
                mib(opts.forward_bytes)
            ),
            "MB/s",
            "forward",
            "each way; goal ratio ≥ 0.97",
        ),
    ]
}

/// The suffix of a row's sample keys for its unit.
fn unit_key(unit: &str) -> &'static str {
    if unit == "µs" {
        "us"
    } else {
        "mbps"
    }
}
