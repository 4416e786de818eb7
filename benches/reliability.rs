//! Reliability of the default boot path: boots the test guest N times
//! (`VMZ_RELIABILITY_RUNS`, default 100) through vmz under the automatic
//! accelerator choice and counts the boots that reach userspace (the
//! guest's marker) within 60 s. Prints the count and the boot-time
//! distribution; exits non-zero if any boot failed.
//!
//! `VMZ_RELIABILITY_FAST=compare` alternates runs without and with
//! `ConfigBuilder::fast_boot_options` and reports both distributions.
//!
//! `cargo bench --bench reliability` (needs `scripts/make-guest.sh` first).

use std::io::Read;
use std::time::{Duration, Instant};

fn main() {
    if !cfg!(target_os = "linux") {
        println!("vmz reliability: Linux only (it runs QEMU and the amd64 test guest)");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("vmz reliability: run it with `cargo bench --bench reliability`");
        return;
    }
    let runs: usize = std::env::var("VMZ_RELIABILITY_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-guest");
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).expect("run scripts/make-guest.sh");
    let compare = std::env::var("VMZ_RELIABILITY_FAST").is_ok_and(|v| v == "compare");
    let mut times = Vec::new();
    let mut fast_times = Vec::new();
    let mut failures = Vec::new();
    for run in 0..runs {
        let fast = compare && run % 2 == 1;
        let (out_r, out_w) = std::io::pipe().expect("pipe");
        let config = vmz::Config::builder(dir.join("vmlinux"))
            .initrd(dir.join("initrd.img"))
            .command_line(cmdline.trim())
            .memory_mib(256)
            .fast_boot_options(fast)
            .serial_output(out_w)
            .build()
            .expect("config");
        let t = Instant::now();
        let vm = vmz::Machine::new(&config).expect("create");
        drop(config);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut out_r = out_r;
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = out_r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains("VMZ-GUEST-READY") {
                    let _ = tx.send(());
                }
            }
            seen
        });
        let outcome = vm.start().map_err(|e| e.to_string()).and_then(|()| {
            rx.recv_timeout(Duration::from_secs(60))
                .map_err(|_| "no marker within 60 s".to_string())
        });
        let elapsed = t.elapsed();
        let _ = vm.force_stop();
        drop(vm);
        let console = reader.join().expect("reader");
        match outcome {
            Ok(()) if fast => fast_times.push(elapsed.as_secs_f64()),
            Ok(()) => times.push(elapsed.as_secs_f64()),
            Err(e) => {
                let tail = String::from_utf8_lossy(&console);
                let tail: String = tail
                    .chars()
                    .rev()
                    .take(400)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                eprintln!("run {run}: FAILED: {e}\n{tail}");
                failures.push(run);
            }
        }
    }
    let summary = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            t.get(((t.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        format!(
            "boot s min {:.2} / median {:.2} / p95 {:.2} / max {:.2}",
            pick(0.0),
            pick(0.5),
            pick(0.95),
            pick(1.0)
        )
    };
    let ok = times.len() + fast_times.len();
    println!(
        "default boot path: {ok} of {runs} boots reached userspace; {}",
        summary(times)
    );
    if compare {
        println!(
            "  of which with fast_boot_options(true): {} boots; {}",
            fast_times.len(),
            summary(fast_times)
        );
    }
    if !failures.is_empty() {
        println!("failed runs: {failures:?}");
        std::process::exit(1);
    }
}
