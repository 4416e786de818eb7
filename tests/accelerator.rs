//! The accelerator choice reaches QEMU. The other tests run with `Auto`,
//! which on a machine with working KVM would test KVM only: here
//! `Accelerator::Software`, `VMZ_ACCEL=tcg` and `VMZ_ACCEL=kvm` are each
//! checked explicitly (QEMU run through a wrapper that records its
//! arguments), and the KVM boot is skipped, visibly, where KVM cannot run a
//! guest (a software-only `kvm_pvm`, no vmx/svm).

// These tests boot test guests under QEMU (scripts/make-guest.sh): Linux
// only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use common::{Console, RecordingQemu, Resources, TempDir, BOOT_TIMEOUT, MARKER};
use vmz::{Accelerator, ErrorCode};

/// Why KVM cannot run a guest on this machine, if it cannot: the test's own
/// reading of the host, independent of the engine's detection.
fn kvm_unusable() -> Option<String> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Some("/dev/kvm cannot be opened".into());
    }
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return Some("the kvm_pvm module (software-only KVM) is loaded".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    if !flags.split_whitespace().any(|f| f == "vmx" || f == "svm") {
        return Some("the CPU advertises neither vmx nor svm".into());
    }
    None
}

/// Runs `f` with `VMZ_ACCEL` set to `value`, or unset.
fn with_vmz_accel<T>(value: Option<&str>, f: impl FnOnce() -> T) -> T {
    match value {
        Some(v) => common::with_env("VMZ_ACCEL", v, f),
        None => {
            let old = std::env::var_os("VMZ_ACCEL");
            std::env::remove_var("VMZ_ACCEL");
            let out = f();
            if let Some(v) = old {
                std::env::set_var("VMZ_ACCEL", v);
            }
            out
        }
    }
}

/// Starts the test guest with `accelerator` under the recording QEMU;
/// waits for its marker if `boot`; force-stops it. Returns QEMU's `-accel`
/// value and the start's result.
fn run(
    qemu: &RecordingQemu,
    accelerator: Accelerator,
    boot: bool,
) -> (Option<String>, vmz::Result<()>) {
    let g = common::guest();
    let (console, input, output) = Console::new();
    let config = common::guest_builder(&g.kernel)
        .accelerator(accelerator)
        .nat(false)
        .serial_input(input)
        .serial_output(output)
        .build()
        .unwrap();
    // The engine finds QEMU when the machine is made.
    let vm = qemu.with(|| vmz::Machine::new(&config).expect("create"));
    drop(config);
    let started = common::start(&vm);
    if started.is_ok() {
        if boot {
            console.expect(MARKER, BOOT_TIMEOUT);
        }
        common::force_stop(&vm).unwrap();
    }
    common::release(vm);
    console.close();
    (qemu.value_of("-accel"), started)
}

fn recording_qemu(name: &str) -> (RecordingQemu, TempDir) {
    let dir =
        TempDir(std::env::temp_dir().join(format!("vmz-accel-{name}-{}", std::process::id())));
    (RecordingQemu::new(&dir.0), dir)
}

#[test]
fn software_is_tcg_and_boots_whatever_vmz_accel_says() {
    let _s = common::serial();
    let before = Resources::now();
    let (qemu, _dir) = recording_qemu("software");
    // An explicit choice wins over the environment.
    let (accel, started) = with_vmz_accel(Some("kvm"), || run(&qemu, Accelerator::Software, true));
    started.expect("start");
    assert_eq!(accel.as_deref(), Some("tcg"), "{:?}", qemu.args());
    before.assert_restored();
}

#[test]
fn vmz_accel_tcg_runs_tcg() {
    let _s = common::serial();
    let before = Resources::now();
    let (qemu, _dir) = recording_qemu("tcg");
    let (accel, started) = with_vmz_accel(Some("tcg"), || run(&qemu, Accelerator::Auto, false));
    started.expect("start");
    assert_eq!(accel.as_deref(), Some("tcg"), "{:?}", qemu.args());
    before.assert_restored();
}

#[test]
fn vmz_accel_kvm_runs_kvm_and_boots_where_kvm_can() {
    let _s = common::serial();
    let g = common::guest();
    let before = Resources::now();
    let dev_kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !dev_kvm_opens {
        // Asked for, KVM must be there: a typed error, nothing started.
        let config = common::guest_builder(&g.kernel).build().unwrap();
        let e = with_vmz_accel(Some("kvm"), || config.validate()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Accelerator, "{e}");
        eprintln!("SKIPPED: the KVM boot: /dev/kvm cannot be opened here");
        return;
    }
    let (qemu, _dir) = recording_qemu("kvm");
    match kvm_unusable() {
        None => {
            let (accel, started) =
                with_vmz_accel(Some("kvm"), || run(&qemu, Accelerator::Auto, true));
            started.expect("a KVM guest starts and boots");
            assert_eq!(accel.as_deref(), Some("kvm"), "{:?}", qemu.args());
        }
        Some(why) => {
            // Asked for where it cannot run a guest, KVM is refused up front
            // (an `Accelerator` error that says what to use instead), and no
            // QEMU is started.
            let config = common::guest_builder(&g.kernel).build().unwrap();
            let e = qemu
                .with(|| with_vmz_accel(Some("kvm"), || vmz::Machine::new(&config)))
                .unwrap_err();
            assert_eq!(e.code(), ErrorCode::Accelerator, "{e}");
            assert!(common::children().is_empty());
            eprintln!("SKIPPED: the KVM boot, because {why} (vmz refuses VMZ_ACCEL=kvm here: {e})");
        }
    }
    before.assert_restored();
}

/// `Auto` picks KVM only where it runs guests, TCG otherwise.
#[test]
fn auto_picks_kvm_only_where_it_runs_guests() {
    let _s = common::serial();
    let before = Resources::now();
    let (qemu, _dir) = recording_qemu("auto");
    let (accel, started) = with_vmz_accel(None, || run(&qemu, Accelerator::Auto, false));
    started.expect("start");
    let expected = if kvm_unusable().is_none() {
        "kvm"
    } else {
        "tcg"
    };
    assert_eq!(accel.as_deref(), Some(expected), "{:?}", qemu.args());
    before.assert_restored();
}
