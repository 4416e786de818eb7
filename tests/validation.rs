//! Bad input gives a clear, typed error, starts nothing and leaks nothing.

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::OwnedFd;
use std::path::Path;

use common::{assert_rejected, documented_limits, Resources};
use vmz::{Config, ErrorCode, Limits, Machine};

fn guest_builder() -> vmz::ConfigBuilder {
    let g = common::guest();
    Config::builder(&g.kernel)
        .initrd(&g.initrd)
        .command_line(&g.cmdline)
        .memory_mib(256)
}

#[test]
fn the_test_guest_itself_is_valid() {
    let _s = common::serial();
    guest_builder().build().unwrap().validate().unwrap();
}

#[test]
fn missing_kernel() {
    let _s = common::serial();
    let c = Config::builder("/nonexistent/vmlinux").build().unwrap();
    assert_rejected(c, ErrorCode::Kernel, "does not exist");
}

#[test]
fn missing_initrd() {
    let _s = common::serial();
    let c = guest_builder()
        .initrd("/nonexistent/initrd")
        .build()
        .unwrap();
    assert_rejected(c, ErrorCode::Initrd, "does not exist");
}

#[test]
fn a_directory_as_kernel() {
    let _s = common::serial();
    let c = Config::builder(std::env::temp_dir()).build().unwrap();
    assert_rejected(c, ErrorCode::Kernel, "is a directory");
}

#[test]
fn a_kernel_of_unknown_format() {
    let _s = common::serial();
    let c = Config::builder(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .build()
        .unwrap();
    assert_rejected(c, ErrorCode::Kernel, "of an unknown format");
}

#[test]
fn zero_cpus() {
    let _s = common::serial();
    let c = guest_builder().cpus(0).build().unwrap();
    assert_rejected(c, ErrorCode::CpuCount, "CPU count 0");
}

/// `Limits::query()` (the code under test) says what the README documents;
/// the bounds tests use the documented values, not the queried ones.
#[test]
fn the_limits_are_the_documented_ones() {
    let l = Limits::query().unwrap();
    let d = documented_limits();
    assert_eq!(
        (
            l.min_cpus,
            l.max_cpus,
            l.min_memory,
            l.max_memory,
            l.max_command_line
        ),
        (
            d.min_cpus,
            d.max_cpus,
            d.min_memory,
            d.max_memory,
            d.max_command_line
        )
    );
}

#[test]
fn a_2047_byte_command_line_fits_and_2048_bytes_do_not() {
    let _s = common::serial();
    guest_builder()
        .command_line("x".repeat(2047))
        .build()
        .unwrap()
        .validate()
        .expect("2047 bytes (2048 with the NUL) fit");
    let c = guest_builder()
        .command_line("x".repeat(2048))
        .build()
        .unwrap();
    assert_rejected(c, ErrorCode::CommandLine, "the limit is");
}

/// `memory_mib` saturates: a MiB count whose byte count overflows u64 must
/// not wrap around into a small, valid size.
#[test]
fn memory_mib_saturates_instead_of_wrapping() {
    let _s = common::serial();
    // (2^44 + 256) MiB = 2^64 + 256 MiB: wrapped, that is 256 MiB.
    let c = guest_builder()
        .memory_mib((1u64 << 44) + 256)
        .build()
        .unwrap();
    assert_eq!(c.memory_bytes(), u64::MAX);
    assert_rejected(c, ErrorCode::MemorySize, "");
}

#[test]
fn more_cpus_than_allowed() {
    let _s = common::serial();
    let max = documented_limits().max_cpus;
    let c = guest_builder().cpus(max + 1).build().unwrap();
    assert_rejected(c, ErrorCode::CpuCount, "outside the allowed range");
    let c = guest_builder().cpus(u32::MAX).build().unwrap();
    assert_rejected(c, ErrorCode::CpuCount, "outside the allowed range");
}

#[test]
fn memory_below_the_minimum() {
    let _s = common::serial();
    let min = documented_limits().min_memory;
    let c = guest_builder()
        .memory_bytes(min - (1 << 20))
        .build()
        .unwrap();
    assert_rejected(c, ErrorCode::MemorySize, "outside the allowed range");
    let c = guest_builder().memory_bytes(0).build().unwrap();
    assert_rejected(c, ErrorCode::MemorySize, "outside the allowed range");
}

#[test]
fn memory_above_the_maximum() {
    let _s = common::serial();
    let max = documented_limits().max_memory;
    let c = guest_builder()
        .memory_bytes(max + (1 << 20))
        .build()
        .unwrap();
    assert_rejected(c, ErrorCode::MemorySize, "outside the allowed range");
}

#[test]
fn memory_not_a_whole_mib() {
    let _s = common::serial();
    let c = guest_builder()
        .memory_bytes((256 << 20) + 4096)
        .build()
        .unwrap();
    assert_rejected(c, ErrorCode::MemorySize, "not a whole number of MiB");
}

#[test]
fn a_command_line_that_is_too_long() {
    let _s = common::serial();
    let max = documented_limits().max_command_line as usize;
    let c = guest_builder()
        .command_line("x".repeat(max + 1))
        .build()
        .unwrap();
    assert_rejected(c, ErrorCode::CommandLine, "the limit is");
}

#[test]
fn interior_nul_in_a_string() {
    for e in [
        Config::builder("vm\0linux").build().unwrap_err(),
        Config::builder("k").initrd("in\0itrd").build().unwrap_err(),
        Config::builder("k")
            .command_line("a\0b")
            .build()
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        assert!(e.to_string().contains("NUL"), "{e}");
    }
}

#[test]
fn serial_descriptors_open_in_the_wrong_direction() {
    let _s = common::serial();
    let (r, w) = std::io::pipe().unwrap();
    let w2 = w.try_clone().unwrap();
    let c = guest_builder().serial_input(w).build().unwrap();
    assert_rejected(c, ErrorCode::SerialFd, "open for writing only");
    let c = guest_builder().serial_output(r).build().unwrap();
    assert_rejected(c, ErrorCode::SerialFd, "open for reading only");
    drop(w2);
}

#[test]
fn stop_before_start() {
    let _s = common::serial();
    let before = Resources::now();
    {
        let vm = Machine::new(&guest_builder().build().unwrap()).unwrap();
        let e = vm.request_stop().unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState);
        assert!(e.to_string().contains("not started"), "{e}");
        let e = common::force_stop(&vm).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState);
        assert_eq!(vm.state(), vmz::State::Created);
        assert!(common::children().is_empty());
    }
    before.assert_restored();
}

#[test]
fn a_kernel_qemu_cannot_boot_fails_to_start_with_qemus_message() {
    let _s = common::serial();
    let before = Resources::now();
    let (kernel, dir) = common::bogus_elf_kernel("test");
    {
        let (r, w) = std::io::pipe().unwrap();
        let config = Config::builder(&kernel)
            .memory_mib(128)
            .serial_output(OwnedFd::from(w))
            .build()
            .unwrap();
        config.validate().unwrap(); // the format check passes; QEMU refuses
        let vm = Machine::new(&config).unwrap();
        let e = common::start(&vm).unwrap_err();
        assert_eq!(e.code(), ErrorCode::StartFailed, "{e}");
        assert!(
            e.to_string().contains("qemu-system"),
            "QEMU's own stderr belongs in the message: {e}"
        );
        assert_eq!(vm.state(), vmz::State::Error);
        drop(r);
    }
    drop(dir);
    before.assert_restored();
}

#[test]
fn errors_are_freed_exactly_once() {
    let _s = common::serial();
    let before = vmz::live_objects();
    let e = Config::builder(Path::new("/nonexistent"))
        .build()
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(vmz::live_objects().errors, before.errors + 1);
    let clone = e.clone();
    drop(e);
    assert_eq!(
        vmz::live_objects().errors,
        before.errors + 1,
        "clones share it"
    );
    assert_eq!(clone.code(), ErrorCode::Kernel);
    drop(clone);
    assert_eq!(vmz::live_objects(), before);
}

#[test]
fn an_unknown_vmz_accel_value_is_an_accelerator_error() {
    let _s = common::serial();
    let c = guest_builder().build().unwrap();
    common::with_env("VMZ_ACCEL", "warp-drive", || {
        assert_rejected(c, ErrorCode::Accelerator, "VMZ_ACCEL=warp-drive");
    });
}

#[test]
fn software_emulation_can_be_forced() {
    let _s = common::serial();
    let c = guest_builder()
        .accelerator(vmz::Accelerator::Software)
        .build()
        .unwrap();
    c.validate().unwrap();
    // An explicit choice wins over the environment.
    common::with_env("VMZ_ACCEL", "warp-drive", || c.validate()).unwrap();
}

#[test]
fn a_missing_qemu_is_engine_unavailable() {
    let _s = common::serial();
    let before = Resources::now();
    let c = guest_builder().build().unwrap();
    let (e, validated) = common::with_env("VMZ_QEMU", "/nonexistent/qemu-system-x86_64", || {
        (Machine::new(&c).unwrap_err(), c.validate().unwrap_err())
    });
    assert_eq!(e.code(), ErrorCode::EngineUnavailable, "{e}");
    assert!(e.to_string().contains("VMZ_QEMU"), "{e}");
    // validate() finds it too, before any VM is made; so it does for a
    // VMZ_QEMU that is a directory, or a file that is not executable.
    assert_eq!(
        validated.code(),
        ErrorCode::EngineUnavailable,
        "{validated}"
    );
    drop((e, validated));
    for nowhere in ["/", env!("CARGO_MANIFEST_DIR")] {
        let e = common::with_env("VMZ_QEMU", nowhere, || c.validate().unwrap_err());
        assert_eq!(e.code(), ErrorCode::EngineUnavailable, "{e}");
    }
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let e = common::with_env("VMZ_QEMU", readme, || c.validate().unwrap_err());
    assert_eq!(e.code(), ErrorCode::EngineUnavailable, "{e}");
    drop(e);
    before.assert_restored();
}

/// `Accelerator::Hardware` where KVM cannot run a guest (no /dev/kvm, or a
/// /dev/kvm that opens but is the software-only kvm_pvm, as on our CI
/// machines) is refused by validate() with a typed error that names the
/// way out; where KVM really works it validates.
#[test]
fn hardware_acceleration_where_kvm_cannot_run_guests_says_what_works() {
    let _s = common::serial();
    let c = guest_builder()
        .accelerator(vmz::Accelerator::Hardware)
        .build()
        .unwrap();
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let vmx = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .split_whitespace()
        .any(|f| f == "vmx" || f == "svm");
    if kvm_opens && !pvm && vmx {
        c.validate().expect("KVM works here");
        return;
    }
    let e = c.validate().unwrap_err();
    assert_eq!(e.code(), ErrorCode::Accelerator, "{e}");
    let text = e.to_string();
    assert!(text.contains("auto") && text.contains("software"), "{text}");
    if kvm_opens && pvm {
        assert!(text.contains("kvm_pvm"), "{text}");
    }
}
