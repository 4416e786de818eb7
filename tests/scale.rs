//! Scale, opt-in (heavy): many idle guests at once from one process, each
//! reaching userspace, then all stopped gracefully; reports the time to
//! boot them all and the host memory each one costs (QEMU's resident set).
//!
//! ```sh
//! cargo test --test scale -- --ignored --nocapture
//! VMZ_SCALE_TB_SIZE=64 cargo test --test scale -- --ignored --nocapture
//! ```
//!
//! `VMZ_SCALE_GUESTS` (default 32) guests of `VMZ_SCALE_MEMORY_MIB` (default
//! 128) MiB; `VMZ_SCALE_CONSOLE=ttyS0` for the 8250 console instead of hvc0. `VMZ_SCALE_TB_SIZE=<MiB>` runs QEMU through a wrapper that
//! turns `-accel tcg` into `-accel tcg,tb-size=<MiB>` (TCG's translation
//! buffer; QEMU's own default otherwise), to compare the two. Results:
//! BENCHMARKS.md.

// These tests boot test guests under QEMU (scripts/make-guest.sh): Linux
// only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{Console, Resources, TempDir, MARKER};
use vmz::{Exit, Machine};

fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process in KiB (VmRSS), 0 if it is gone.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A QEMU wrapper that adds `tb-size=<mib>` to `-accel tcg`.
fn tb_size_wrapper(dir: &std::path::Path, mib: u64) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let wrapper = dir.join("qemu-system-x86_64");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  shift\n  if [ \"$a\" = tcg ]; then set -- \"$@\" \"tcg,tb-size={mib}\"; \
             else set -- \"$@\" \"$a\"; fi\ndone\nexec '{}' \"$@\"\n",
            common::real_qemu().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    wrapper
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let pick = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "min {:.1} / median {:.1} / max {:.1}",
        pick(0.0),
        pick(0.5),
        pick(1.0)
    )
}

#[test]
#[ignore = "heavy (32 guests): cargo test --test scale -- --ignored --nocapture"]
fn many_idle_guests_from_one_process() {
    // Alone in its binary; bounded as a whole, more generously than the
    // other VM tests (`common::serial`).
    let _bound = common::Watchdog::arm("the scale test", Duration::from_secs(1500));
    let g = common::guest();
    let guests = env_number("VMZ_SCALE_GUESTS", 32) as usize;
    let memory = env_number("VMZ_SCALE_MEMORY_MIB", 128);
    let tb_size = std::env::var("VMZ_SCALE_TB_SIZE").ok().map(|v| {
        v.parse::<u64>()
            .expect("VMZ_SCALE_TB_SIZE is a number of MiB")
    });
    // VMZ_SCALE_CONSOLE=ttyS0: the 8250 instead of hvc0, which prints
    // nothing before its driver loads (to see early boot failures).
    let serial_console = std::env::var("VMZ_SCALE_CONSOLE").is_ok_and(|v| v == "ttyS0");
    let dir = TempDir(std::env::temp_dir().join(format!("vmz-scale-{}", std::process::id())));
    if let Some(mib) = tb_size {
        std::env::set_var("VMZ_QEMU", tb_size_wrapper(&dir.0, mib));
    }
    let before = Resources::now();
    let host_rss_before = rss_kib(std::process::id());
    {
        let mut vms = Vec::new();
        for _ in 0..guests {
            let (console, input, output) = Console::new();
            let mut builder = common::guest_builder(&g.kernel);
            if serial_console {
                builder = builder
                    .console(vmz::ConsoleDevice::Serial)
                    .command_line(g.cmdline.replace("console=hvc0", "console=ttyS0"));
            }
            // no_timer_check (in the opt-in boot options): with 32 guests
            // emulated at once on 2 host CPUs the kernel's IO-APIC timer
            // check sees too few ticks and panics ("IO-APIC + timer doesn't
            // work!"), measured here without it.
            let config = builder
                .fast_boot_options(true)
                .memory_mib(memory)
                .nat(false)
                .serial_input(input)
                .serial_output(output)
                .build()
                .unwrap();
            vms.push((Machine::new(&config).unwrap(), console));
        }
        let t0 = Instant::now();
        for (vm, _) in &vms {
            vm.start_with(|r| r.expect("start")).unwrap();
        }
        // Poll every console; note when each guest reached userspace.
        let bound = Duration::from_secs(900);
        let mut booted: Vec<Option<Duration>> = vec![None; guests];
        while booted.iter().any(Option::is_none) {
            for (i, (vm, console)) in vms.iter().enumerate() {
                if booted[i].is_none() && console.text().contains(MARKER) {
                    booted[i] = Some(t0.elapsed());
                }
                if let Some(exit) = vm.exit() {
                    panic!(
                        "guest {i} ended before its marker: {exit:?}\n{}",
                        console.text()
                    );
                }
            }
            assert!(
                t0.elapsed() < bound,
                "not all guests booted within {bound:?}: {} of {guests}",
                booted.iter().flatten().count()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let all_up = t0.elapsed();
        // Idle a moment, then measure each QEMU's resident memory.
        std::thread::sleep(Duration::from_secs(5));
        let qemus = common::children();
        assert_eq!(qemus.len(), guests, "one QEMU per guest");
        let rss: Vec<f64> = qemus.iter().map(|&p| rss_kib(p) as f64 / 1024.0).collect();
        let total: f64 = rss.iter().sum();
        let host_rss = rss_kib(std::process::id()) as f64 / 1024.0;
        println!(
            "SCALE {guests} guests x {memory} MiB, tb-size {}: all in userspace after {:.1} s \
             (per guest, s since start: {}); QEMU RSS per guest MiB: {} (total {:.0} MiB); \
             this process's RSS {:.0} MiB ({:.0} MiB before)",
            tb_size.map_or("QEMU's default".to_string(), |m| format!("{m} MiB")),
            all_up.as_secs_f64(),
            summary(booted.iter().flatten().map(Duration::as_secs_f64).collect()),
            summary(rss),
            total,
            host_rss,
            host_rss_before as f64 / 1024.0,
        );
        // All stopped cleanly: each honours the power button.
        let t1 = Instant::now();
        std::thread::scope(|s| {
            for (vm, _) in &vms {
                s.spawn(move || {
                    let exit = common::stop(vm, Duration::from_secs(120)).unwrap();
                    assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
                });
            }
        });
        println!(
            "SCALE all stopped by the guests in {:.1} s",
            t1.elapsed().as_secs_f64()
        );
        for (vm, console) in vms {
            common::release(vm);
            console.close();
        }
    }
    std::env::remove_var("VMZ_QEMU");
    before.assert_restored();
}
