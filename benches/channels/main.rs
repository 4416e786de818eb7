//! Host-guest channels through vmz, side by side with the same engine and
//! backend run alone (BENCHMARKS.md, "Host-guest channels"): the console on
//! hvc0 and on ttyS0 (guest -> host), vsock both ways and its round-trip
//! latency, a NAT port forward (echoed).
//!
//! The reference is QEMU started directly with exactly the arguments vmz
//! gives it, recorded through the tests' wrapper (`VMZ_QEMU`), and for
//! vsock `vhost-device-vsock` started directly with exactly the arguments
//! vmz gives it, recorded the same way (`VMZ_VHOST_DEVICE_VSOCK`). What vmz
//! passes as descriptors becomes what the bench opens itself: kernel and
//! initrd by path, the console on QEMU's stdio pipes (as vmz does), QMP on
//! a socket path, the daemon's sockets in a directory of the bench's
//! instead of vmz's private one; the bench then speaks the daemon's
//! host-side protocol itself (`CONNECT <port>\n`, `OK <n>\n`). The data
//! path is the same on both sides: the same guest commands (`cat-bytes`,
//! scripts/guest-vsock.c, busybox `nc -e cat`), the same host code.
//!
//! Each run boots both sides afresh, twice (a ttyS0 guest; an hvc0 guest
//! with vsock and the forward), vmz first in even runs and the reference
//! first in odd ones. `cargo bench --bench channels`; without `--bench` (as
//! under `cargo test --all-targets`) it exits at once.
//!
//! Environment (sizes: each transfer should last 0.5 s or more; the bench
//! warns when one did not):
//! - `VMZ_CHANNEL_RUNS`: runs (default 10).
//! - `VMZ_CHANNEL_TTYS0_BYTES` (default 524288), `VMZ_CHANNEL_HVC0_BYTES`
//!   (16 MiB): `cat-bytes` on each console.
//! - `VMZ_CHANNEL_VSOCK_BYTES`: each vsock direction (default 256 MiB).
//! - `VMZ_CHANNEL_VSOCK_ROUND_TRIPS`: 1-byte round trips (default 3000).
//! - `VMZ_CHANNEL_FORWARD_BYTES`: echoed through the forward (32 MiB).
//! - `VMZ_CHANNEL_CALIBRATE=1`: an A/A run: the reference in the vmz
//!   column too, to see the ratios the harness gives two identical sides.
//!
//! Output: the table on stdout (per-pair ratios in the notes); raw samples
//! in `target/vmz-bench/channels.json` (and `channels.csv`, the table in
//! `channels.md`).

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmz::{Config, ConfigBuilder, Event, Exit, Machine};

// Shared with the integration tests and the vmz bench (each shared module
// has helpers this bench does not call).
#[allow(dead_code)]
#[path = "../vmz/boot.rs"]
mod boot;
#[path = "../../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../vmz/console.rs"]
mod console;
#[allow(dead_code)]
#[path = "../vmz/context.rs"]
mod context;
#[allow(dead_code)]
#[path = "../vmz/guest.rs"]
mod guest;
#[allow(dead_code)]
#[path = "../vmz/in_turn.rs"]
mod in_turn;
#[allow(dead_code)]
#[path = "../vmz/inherit.rs"]
mod inherit;
#[allow(dead_code)]
#[path = "../vmz/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../vmz/reference.rs"]
mod reference;
#[allow(dead_code)]
#[path = "../vmz/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../vmz/stats.rs"]
mod stats;
#[path = "../vmz/tied.rs"]
mod tied;
#[allow(dead_code)]
#[path = "../vmz/vmz_run.rs"]
mod vmz_run;

mod daemon;
mod forward;
mod options;
mod side;
mod vsock;

use boot::*;
use console::*;
use context::*;
use daemon::*;
use forward::*;
use guest::*;
use in_turn::*;
use inherit::*;
use options::*;
use process::*;
use reference::*;
use report::*;
use side::*;
use stats::*;
use vmz_run::*;
use vsock::*;

/// Adds one transfer: its rate under `{key}.{column}_mbps` and its
/// duration under `{key}.{column}_s`; warns when it lasted less than 0.5 s.
fn add_transfer(samples: &mut Samples, key: &str, column: &str, bytes: usize, took: Duration) {
    let s = took.as_secs_f64();
    if s < 0.5 {
        eprintln!(
            "warning: {key} ({column}) lasted {s:.2} s: raise its size (see the bench's doc)"
        );
    }
    samples.add(&format!("{key}.{column}_mbps"), bytes as f64 / s / 1e6);
    samples.add(&format!("{key}.{column}_s"), s);
}

/// One side's run: a ttyS0 boot, then an hvc0 boot with vsock and the
/// forward, each measured and stopped.
fn run_side(
    side: Side,
    column: &str,
    setup: &Setup,
    opts: &Options,
    samples: &mut Samples,
) -> BenchResult<()> {
    let mut ttys0 = setup.boot(side, Channels::Ttys0)?;
    let took = ttys0.console().time_cat_bytes(opts.ttys0_bytes)?;
    add_transfer(samples, "console_ttys0", column, opts.ttys0_bytes, took);
    drop(ttys0);

    let mut vm = setup.boot(side, Channels::Hvc0VsockForward)?;
    let took = vm.console().time_cat_bytes(opts.hvc0_bytes)?;
    add_transfer(samples, "console_hvc0", column, opts.hvc0_bytes, took);

    let ports = VsockPorts::listen(vm.console(), opts.vsock_bytes)?;
    let took = ports.guest_to_host(&vm, opts.vsock_bytes)?;
    add_transfer(samples, "vsock_g2h", column, opts.vsock_bytes, took);
    let took = ports.host_to_guest(&vm, opts.vsock_bytes)?;
    add_transfer(samples, "vsock_h2g", column, opts.vsock_bytes, took);
    let (median_us, took) = ports.round_trips(&vm, opts.vsock_round_trips)?;
    samples.add(&format!("vsock_rtt.{column}_us"), median_us);
    samples.add(&format!("vsock_rtt.{column}_s"), took.as_secs_f64());

    start_echo_server(vm.console())?;
    let took = forward_echo(setup.forward_port, opts.forward_bytes)?;
    add_transfer(samples, "forward", column, opts.forward_bytes, took);
    Ok(())
}

/// Runs everything; returns the report.
fn run(opts: &Options) -> BenchResult<String> {
    let guest = Guest::load()?;
    eprintln!("recording vmz's QEMU and vsock daemon command lines (also a warm-up)");
    let setup = Setup::record(guest)?;
    // Warm the reference's paths too (page cache, the daemon's first start).
    drop(setup.boot(Side::Reference, Channels::Ttys0)?);
    drop(setup.boot(Side::Reference, Channels::Hvc0VsockForward)?);

    // Calibration (A/A): the reference in both columns, to see what the
    // harness alone makes of two identical sides.
    let first = if opts.calibrate {
        Side::Reference
    } else {
        Side::Vmz
    };
    let mut samples = Samples::default();
    for i in 0..opts.runs {
        eprintln!("channels: run {}/{}", i + 1, opts.runs);
        in_turn(
            i,
            &mut samples,
            &|samples| run_side(first, "vmz", &setup, opts, samples),
            &|samples| run_side(Side::Reference, "reference", &setup, opts, samples),
        )?;
    }

    let mut meta = opts.meta();
    meta.extend(setup.meta()?);
    // The per-pair ratios themselves, for channels.json.
    let rows = table_rows(opts, &samples);
    add_pair_ratios(&mut samples, &rows, |k| k.replace(".vmz_", ".pair_ratio_"));
    let table = table(&samples, &rows);
    finish(
        &opts.out_dir,
        ("channels", "channels"),
        &samples,
        &meta,
        &table,
    )
}

fn main() {
    if !cfg!(target_os = "linux") || !std::env::args().any(|a| a == "--bench") {
        println!("vmz channels: Linux only; run it with `cargo bench --bench channels` (it boots many guests)");
        return;
    }
    let opts = match Options::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vmz channels: {e}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        Ok(report) => {
            println!("{report}");
            println!(
                "raw samples: {}",
                opts.out_dir.join("channels.json").display()
            );
        }
        Err(e) => {
            eprintln!("vmz channels failed: {e}");
            std::process::exit(1);
        }
    }
}
