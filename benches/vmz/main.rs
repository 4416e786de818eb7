//! vmz benchmarks: boot, stop, bridge calls, serial throughput, scaling.
//!
//! Run with `cargo bench --bench vmz` (needs `[[bench]] name = "vmz"
//! harness = false` in Cargo.toml); `cargo bench --bench vmz -- disks` runs
//! the disk and share rows instead (disk_rows.rs). Without `--bench` on its command line
//! (as under `cargo test --all-targets`) it prints a note and exits, so the
//! test suite does not boot dozens of guests.
//!
//! Every row is measured `VMZ_BENCH_RUNS` times (default 10) against a
//! reference measured in the same process, A and B alternating run by run,
//! so that load from other processes on the machine hits both alike. The
//! reference for a guest-level row is QEMU started directly with exactly the
//! arguments vmz uses (recorded by the tests' QEMU wrapper, `tests/common`),
//! except that the kernel and initrd are given as paths instead of inherited
//! `/dev/fd/N` descriptors, and QMP is a `-qmp unix:PATH,server=on,wait=off`
//! socket instead of an inherited listening descriptor.
//!
//! Environment:
//! - `VMZ_BENCH_RUNS`: runs per row (default 10).
//! - `VMZ_BENCH_SCALING_RUNS`: runs per guest count in the scaling rows
//!   (default: `VMZ_BENCH_RUNS`).
//! - `VMZ_BENCH_SCALING`: guest counts, comma-separated (default `1,2,4,8`).
//! - `VMZ_BENCH_SCALING_MIB`: memory per guest in the scaling rows (default
//!   80; the test guest's kernel runs out of memory at boot with 64).
//! - `VMZ_BENCH_CAT_BYTES`: bytes for the guest-to-host row (default 262144).
//! - `VMZ_BENCH_ECHO_LINES`: 64-byte lines for the host-to-guest row
//!   (default 256).
//! - `VMZ_GUEST_DIR`: the test guest (default `target/vmz-guest`, built by
//!   `scripts/make-guest.sh`).
//!
//! Output: a Markdown table on stdout, raw samples in
//! `target/vmz-bench/samples.json` and `target/vmz-bench/samples.csv`.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmz::{Config, ConfigBuilder, Event, Exit, Machine};

/// Shared with the integration tests: the QEMU argument-recording wrapper,
/// the child-process listing.
#[path = "../../tests/common/mod.rs"]
mod common;

mod boot;
mod console;
mod context;
mod disk_rows;
mod guest;
mod in_turn;
mod inherit;
mod process;
mod reference;
mod report;
mod rows;
mod share_tree;
mod stats;
mod table_rows;
mod tied;
mod vmz_run;

use boot::*;
use console::*;
use context::*;
use disk_rows::*;
use guest::*;
use in_turn::*;
use inherit::*;
use process::*;
use reference::*;
use report::*;
use rows::*;
use share_tree::*;
use stats::*;
use table_rows::*;
use vmz_run::*;

/// What to run, from the environment.
struct Options {
    runs: usize,
    scaling_runs: usize,
    scaling: Vec<usize>,
    scaling_mib: u64,
    cat_bytes: usize,
    echo_lines: usize,
    out_dir: PathBuf,
}

impl Options {
    fn from_env() -> BenchResult<Options> {
        let runs = env_usize("VMZ_BENCH_RUNS", 10)?.max(1);
        let scaling = match std::env::var("VMZ_BENCH_SCALING") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|s| s.trim().parse::<usize>().context("VMZ_BENCH_SCALING"))
                .collect::<BenchResult<Vec<_>>>()?,
            _ => vec![1, 2, 4, 8],
        };
        Ok(Options {
            runs,
            scaling_runs: env_usize("VMZ_BENCH_SCALING_RUNS", runs)?.max(1),
            scaling,
            scaling_mib: env_usize("VMZ_BENCH_SCALING_MIB", 80)? as u64,
            cat_bytes: env_usize("VMZ_BENCH_CAT_BYTES", 256 * 1024)?,
            echo_lines: env_usize("VMZ_BENCH_ECHO_LINES", 256)?.max(1),
            out_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-bench"),
        })
    }
}

/// A `log` logger that prints the bridge's warnings and errors.
struct BenchLogger;

static LOGGER: BenchLogger = BenchLogger;

impl log::Log for BenchLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if record.level() <= log::Level::Warn {
            eprintln!("[{} {}] {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Prints the bridge's warnings and errors (once per process).
fn install_logger() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if log::set_logger(&LOGGER).is_err() {
            eprintln!("another logger is installed: the QEMU command line cannot be captured");
        }
    });
    log::set_max_level(log::LevelFilter::Warn);
}

/// Runs everything; returns the table.
fn run(opts: &Options) -> BenchResult<String> {
    let guest = Arc::new(Guest::load()?);
    let standard = Guest::load_standard()?;
    install_logger();

    eprintln!("warm-up and QEMU command lines");
    let args = capture_args(&guest, 256)?;
    let args_scaling = capture_args(&guest, opts.scaling_mib)?;
    // Warm the reference paths too (page cache, QEMU's first start).
    drop(QemuRun::boot_reference(&args, "w")?);
    drop(QemuRun::boot(&plain_args(&guest)?, None)?);

    // The first boot of each bzImage fills the (empty) kernel cache: timed
    // once, not part of the repeated rows.
    let mut samples = Samples::default();
    boot_bzimage(&mut samples, &guest, false, "boot.vmz_bzimage_first")?;
    if let Some(std) = &standard {
        boot_bzimage(&mut samples, std, false, "boot.std.vmz_first")?;
        drop(QemuRun::boot(&plain_args(std)?, None)?);
    }

    call_rows(&guest, opts, &mut samples)?;
    guest_rows(&guest, standard.as_ref(), &args, opts, &mut samples)?;
    scaling_rows(&guest, &args_scaling, opts, &mut samples)?;

    let table = table(&samples, &table_rows(opts));
    let meta = [
        ("runs", opts.runs.to_string()),
        ("scaling_runs", opts.scaling_runs.to_string()),
        ("cat_bytes", opts.cat_bytes.to_string()),
        ("echo_lines", opts.echo_lines.to_string()),
        ("vmz_qemu_args", quote_args(&args.vmz)),
        (
            "reference_qemu_args",
            quote_args(&args.reference_with(Path::new("/tmp/vmz-bench-PID-TAG.qmp"))?),
        ),
        ("plain_qemu_args", quote_args(&plain_args(&guest)?)),
        ("scaling_mib", opts.scaling_mib.to_string()),
        ("vmz_qemu_args_scaling", quote_args(&args_scaling.vmz)),
    ];
    finish(&opts.out_dir, ("samples", "table"), &samples, &meta, &table)
}

fn main() {
    if !cfg!(target_os = "linux") {
        println!("vmz bench: Linux only (it runs QEMU and the amd64 test guest)");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("vmz bench: run it with `cargo bench --bench vmz` (it boots many guests)");
        return;
    }
    if std::env::args().any(|a| a == "disks") {
        let report = DiskOptions::from_env().and_then(|opts| {
            let report = run_disks(&opts)?;
            Ok(format!(
                "{report}\nraw samples: {}",
                opts.out_dir_display("disks.json")
            ))
        });
        match report {
            Ok(report) => println!("{report}"),
            Err(e) => {
                eprintln!("vmz bench (disks) failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let opts = match Options::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vmz bench: {e}");
            std::process::exit(2);
        }
    };
    // A kernel cache of its own, empty: the first boot of a bzImage is
    // timed with the unpacking, the others with a warm cache. (Set before
    // any thread exists: the bridge reads it with getenv.)
    let cache = opts.out_dir.join("kernel-cache");
    let _ = std::fs::remove_dir_all(&cache);
    std::env::set_var("VMZ_KERNEL_CACHE", &cache);
    match run(&opts) {
        Ok(report) => {
            println!("{report}");
            println!(
                "raw samples: {}",
                opts.out_dir.join("samples.json").display()
            );
        }
        Err(e) => {
            eprintln!("vmz bench failed: {e}");
            std::process::exit(1);
        }
    }
}
