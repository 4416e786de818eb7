//! The C ABI itself, called through the raw bindings as a C caller would:
//! every bad input gives a clear error, starts nothing and leaks nothing.

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::{c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::ptr::{null, null_mut};

use common::{Console, Resources, BOOT_TIMEOUT, MARKER};
use vmz::sys::{self, VMZConfig, VMZErrorRef};
use vmz::ErrorCode;

const MIB: u64 = 1 << 20;

/// Owned C strings for one config, kept alive while it is used.
struct Strings {
    kernel: Option<CString>,
    initrd: Option<CString>,
    cmdline: Option<CString>,
}

fn cstr(bytes: &[u8]) -> CString {
    CString::new(bytes).unwrap()
}

fn guest_strings() -> Strings {
    let g = common::guest();
    Strings {
        kernel: Some(cstr(g.kernel.as_os_str().as_bytes())),
        initrd: Some(cstr(g.initrd.as_os_str().as_bytes())),
        cmdline: Some(cstr(g.cmdline.as_bytes())),
    }
}

fn config(s: &Strings) -> VMZConfig {
    VMZConfig {
        struct_size: std::mem::size_of::<VMZConfig>() as u32,
        kernel_path: s.kernel.as_ref().map_or(null(), |c| c.as_ptr()),
        initrd_path: s.initrd.as_ref().map_or(null(), |c| c.as_ptr()),
        command_line: s.cmdline.as_ref().map_or(null(), |c| c.as_ptr()),
        read_pipe_fd: -1,
        write_pipe_fd: -1,
        cpu_count: 1,
        memory_size: 256 * MIB,
        enable_nat: false,
        accelerator: sys::VMZ_ACCEL_AUTO,
        boot_options: 0,
        // ABI 3's fields: hvc0, every default device, no serial ports, no
        // disks.
        ..Default::default()
    }
}

/// Takes an out-parameter error: (code, message), freeing it.
fn take(err: VMZErrorRef) -> (ErrorCode, String) {
    assert!(!err.is_null(), "an error object");
    // SAFETY: the bridge handed us this error; we free it once, below.
    let e = unsafe { vmz::BridgeError::from_raw(err) }.unwrap();
    (e.code(), e.message().to_string())
}

/// Validate and create must both refuse `cfg` with `code`, mentioning
/// `words`; nothing starts, nothing leaks.
fn refused(what: &str, cfg: *const VMZConfig, code: ErrorCode, words: &str) {
    let before = Resources::now();
    let mut err: VMZErrorRef = null_mut();
    // SAFETY: `cfg` is NULL or points to a config whose strings outlive the
    // call; `err` is a valid out-parameter.
    let ok = unsafe { sys::vmz_validate_config(cfg, &mut err) };
    assert!(!ok, "{what}: validate");
    let (c, m) = take(err);
    assert_eq!(c, code, "{what}: {m}");
    assert!(m.contains(words), "{what}: {m:?} should mention {words:?}");

    let mut err: VMZErrorRef = null_mut();
    // SAFETY: as above; NULL callbacks are allowed.
    let h = unsafe { sys::vmz_create(cfg, null(), &mut err) };
    assert!(h.is_null(), "{what}: no handle");
    assert_eq!(take(err).0, code, "{what}: create");
    assert!(common::children().is_empty(), "{what}: nothing started");
    before.assert_restored();
}

fn with(s: &Strings, f: impl FnOnce(&mut VMZConfig)) -> VMZConfig {
    let mut c = config(s);
    f(&mut c);
    c
}

#[test]
fn the_base_config_is_valid() {
    let _s = common::serial();
    let s = guest_strings();
    let mut err: VMZErrorRef = null_mut();
    // SAFETY: valid config and out-parameter.
    assert!(unsafe { sys::vmz_validate_config(&config(&s), &mut err) });
    assert!(err.is_null());
}

/// A caller built against ABI 1 passes the smaller struct: the fields it
/// does not have are never read (here they hold garbage) and count as zero.
#[test]
fn an_abi_1_caller_is_still_served() {
    let _s = common::serial();
    assert!((sys::VMZ_CONFIG_SIZE_V1 as usize) < std::mem::size_of::<VMZConfig>());
    let s = guest_strings();
    let sized = |size: u32| {
        with(&s, |c| {
            c.struct_size = size;
            c.boot_options = 0xdead_beef; // beyond the ABI 1 struct
        })
    };
    let mut err: VMZErrorRef = null_mut();
    // SAFETY: valid config and out-parameter.
    let ok = unsafe { sys::vmz_validate_config(&sized(sys::VMZ_CONFIG_SIZE_V1), &mut err) };
    assert!(ok, "{:?}", (!ok).then(|| take(err)));
    refused(
        "ABI 2 struct with garbage options",
        &sized(sys::VMZ_CONFIG_SIZE_V2),
        ErrorCode::InvalidArgument,
        "unknown boot option bits",
    );
}

/// A caller built against ABI 2 passes VMZ_CONFIG_SIZE_V2 bytes: the ABI 3
/// fields (console, devices, serial ports, disks) are never read; with the
/// full size the same garbage is refused.
#[test]
fn an_abi_2_caller_is_still_served() {
    let _s = common::serial();
    let s = guest_strings();
    let sized = |size: u32| {
        with(&s, |c| {
            c.struct_size = size;
            c.console = 0xdead_beef;
            c.serial_ports = std::ptr::dangling(); // never read
            c.serial_port_count = 3;
            c.guest_architecture = 0xdead_beef;
            c.disks = std::ptr::dangling(); // never read
            c.disk_count = 7;
        })
    };
    let mut err: VMZErrorRef = null_mut();
    // SAFETY: valid config and out-parameter; the bad pointer lies beyond
    // the struct_size the bridge may read.
    let ok = unsafe { sys::vmz_validate_config(&sized(sys::VMZ_CONFIG_SIZE_V2), &mut err) };
    assert!(ok, "{:?}", (!ok).then(|| take(err)));
    refused(
        "ABI 3 struct with a garbage console",
        &with(&s, |c| c.console = 7),
        ErrorCode::Device,
        "unknown console device value 7",
    );
    refused(
        "ABI 3 struct with an unknown guest architecture",
        &with(&s, |c| c.guest_architecture = 3),
        ErrorCode::InvalidArgument,
        "unknown guest architecture value 3",
    );
    refused(
        "ABI 3 struct with disks NULL and a count",
        &with(&s, |c| c.disk_count = 1),
        ErrorCode::InvalidArgument,
        "disks is NULL",
    );
}

#[test]
fn null_pointers_and_struct_sizes() {
    let _s = common::serial();
    let s = guest_strings();
    refused(
        "NULL config",
        null(),
        ErrorCode::InvalidArgument,
        "config is NULL",
    );
    for size in [0, 4, sys::VMZ_CONFIG_SIZE_V1 - 1] {
        let c = with(&s, |c| c.struct_size = size);
        refused(
            "small struct_size",
            &c,
            ErrorCode::InvalidArgument,
            "struct_size",
        );
    }
    let c = with(&s, |c| c.boot_options = 0x6);
    refused(
        "unknown boot options",
        &c,
        ErrorCode::InvalidArgument,
        "0x6",
    );
    let no_kernel = Strings {
        kernel: None,
        ..guest_strings()
    };
    refused(
        "NULL kernel",
        &config(&no_kernel),
        ErrorCode::InvalidArgument,
        "kernel path is NULL",
    );
    let empty = Strings {
        kernel: Some(cstr(b"")),
        ..guest_strings()
    };
    refused(
        "empty kernel",
        &config(&empty),
        ErrorCode::InvalidArgument,
        "empty",
    );

    // NULL initrd and NULL command line mean "none" and "empty".
    let optional = Strings {
        initrd: None,
        cmdline: None,
        ..guest_strings()
    };
    let mut err: VMZErrorRef = null_mut();
    // SAFETY: valid config and out-parameter.
    assert!(unsafe { sys::vmz_validate_config(&config(&optional), &mut err) });
}

#[test]
fn strings_that_are_not_utf8() {
    let _s = common::serial();
    for (field, words) in [
        ("kernel", "kernel path is not valid UTF-8"),
        ("initrd", "initrd path is not valid UTF-8"),
        ("cmdline", "command line is not valid UTF-8"),
    ] {
        let mut s = guest_strings();
        let bad = Some(cstr(b"/tmp/\xff\xfe-not-utf8"));
        match field {
            "kernel" => s.kernel = bad,
            "initrd" => s.initrd = bad,
            _ => s.cmdline = bad,
        }
        refused(field, &config(&s), ErrorCode::InvalidArgument, words);
    }
}

#[test]
fn a_one_mib_command_line() {
    let _s = common::serial();
    let s = Strings {
        cmdline: Some(cstr(&vec![b'x'; 1 << 20])),
        ..guest_strings()
    };
    refused(
        "1 MiB",
        &config(&s),
        ErrorCode::CommandLine,
        "1048576 bytes",
    );
}

#[test]
fn descriptors_out_of_range() {
    let _s = common::serial();
    let s = guest_strings();
    for fd in [-2, i32::MIN, i32::MAX, 1_000_000, 65535] {
        let c = with(&s, |c| c.read_pipe_fd = fd);
        refused(
            "read fd",
            &c,
            ErrorCode::SerialFd,
            "serial input descriptor",
        );
        let c = with(&s, |c| c.write_pipe_fd = fd);
        refused(
            "write fd",
            &c,
            ErrorCode::SerialFd,
            "serial output descriptor",
        );
    }
}

/// The message names the descriptor and what is wrong with it (moved here
/// from tests/validation.rs, which goes through the Rust API).
#[test]
fn descriptor_messages_name_the_descriptor() {
    let _s = common::serial();
    let s = guest_strings();
    for (read_fd, write_fd, words) in [
        (1_000_000, -1, "serial input descriptor 1000000 is not open"),
        (
            -1,
            1_000_000,
            "serial output descriptor 1000000 is not open",
        ),
        (-7, -1, "is negative"),
    ] {
        let c = with(&s, |c| {
            c.read_pipe_fd = read_fd;
            c.write_pipe_fd = write_fd;
        });
        refused("descriptor", &c, ErrorCode::SerialFd, words);
    }
}

#[test]
fn cpu_and_memory_at_and_beyond_every_bound() {
    let _s = common::serial();
    let s = guest_strings();
    let l = common::documented_limits();
    let valid = |c: &VMZConfig| {
        let mut err: VMZErrorRef = null_mut();
        // SAFETY: valid config and out-parameter.
        let ok = unsafe { sys::vmz_validate_config(c, &mut err) };
        if !ok {
            panic!("should be valid: {:?}", take(err));
        }
    };
    valid(&with(&s, |c| c.cpu_count = l.min_cpus));
    valid(&with(&s, |c| c.cpu_count = l.max_cpus));
    for cpus in [0, l.max_cpus + 1, u32::MAX] {
        let c = with(&s, |c| c.cpu_count = cpus);
        refused("cpus", &c, ErrorCode::CpuCount, "CPU count");
    }
    valid(&with(&s, |c| c.memory_size = l.min_memory));
    valid(&with(&s, |c| c.memory_size = l.max_memory));
    for (bytes, words) in [
        (0, "outside the allowed range"),
        (l.min_memory - MIB, "outside the allowed range"),
        (l.min_memory + 1, "not a whole number of MiB"),
        (l.max_memory + MIB, "outside the allowed range"),
        (u64::MAX, "not a whole number of MiB"),
        (u64::MAX / MIB * MIB, "outside the allowed range"),
    ] {
        let c = with(&s, |c| c.memory_size = bytes);
        refused("memory", &c, ErrorCode::MemorySize, words);
    }
    for accel in [3, u32::MAX] {
        let c = with(&s, |c| c.accelerator = accel);
        refused(
            "accelerator",
            &c,
            ErrorCode::Accelerator,
            "unknown accelerator",
        );
    }
}

/// Paths that would be options, separators or quoting in a command line
/// are only ever file names: missing ones are reported by name...
#[test]
fn hostile_paths_that_do_not_exist() {
    let _s = common::serial();
    for path in [
        "/tmp/vmz-no,such,file",
        "/tmp/vmz no such file",
        "/tmp/vmz-\"quoted'\"",
        "/tmp/vmz-new\nline",
        "-kernel",
        "--help",
        "file=/etc/passwd,if=none",
        "/tmp/vmz-x -append init=/bin/sh",
    ] {
        let s = Strings {
            kernel: Some(cstr(path.as_bytes())),
            ..guest_strings()
        };
        let quoted_start = &path[..path.len().min(6)].replace('\n', "\\n");
        refused(path, &config(&s), ErrorCode::Kernel, quoted_start);
        refused(path, &config(&s), ErrorCode::Kernel, "does not exist");
    }
}

/// ...and existing ones boot the guest they name, nothing else: QEMU gets
/// the files as inherited descriptors (`/dev/fd/N`), never their names
/// (QEMU run through a wrapper that records its arguments).
#[test]
fn hostile_paths_that_exist_boot_normally() {
    let _s = common::serial();
    let g = common::guest();
    let before = Resources::now();
    let dir = std::env::temp_dir().join(format!("vmz,abi test {}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("-kernel,file=x \"q'\nvmlinux");
    let initrd = dir.join("--initrd=passwd,if=none -append init=sh");
    std::os::unix::fs::symlink(&g.kernel, &kernel).unwrap();
    std::os::unix::fs::symlink(&g.initrd, &initrd).unwrap();
    let wrapper =
        common::TempDir(std::env::temp_dir().join(format!("vmz-abi-qemu-{}", std::process::id())));
    let qemu = common::RecordingQemu::new(&wrapper.0);
    qemu.with(|| {
        let (mut console, input, output) = Console::new();
        let config = vmz::Config::builder(&kernel)
            .initrd(&initrd)
            .command_line(format!("{} vmz.test=a,b", g.cmdline))
            .memory_mib(256)
            .nat(false)
            .serial_input(input)
            .serial_output(output)
            .build()
            .unwrap();
        let vm = vmz::Machine::new(&config).unwrap();
        common::start(&vm).unwrap();
        console.expect(MARKER, BOOT_TIMEOUT);
        // No network device without NAT: the guest has no eth0.
        console.send_line("net");
        console.expect("vmz-guest: net failed", BOOT_TIMEOUT);
        common::force_stop(&vm).unwrap();
        common::release(vm);
        drop(config); // it holds the console's write end
        console.close();
    });
    let args = qemu.args();
    for line in &args {
        for part in ["abi test", "-kernel,file", "q'", "passwd", "init=sh"] {
            assert!(
                !line.contains(part),
                "a caller's path reached QEMU's arguments: {line:?} in {args:?}"
            );
        }
    }
    for option in ["-kernel", "-initrd"] {
        let value = qemu.value_of(option).unwrap_or_default();
        assert!(
            value.starts_with("/dev/fd/"),
            "{option} {value:?}: {args:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    before.assert_restored();
}

unsafe extern "C" fn ignore(_: *mut c_void, err: VMZErrorRef) {
    // SAFETY: the completion owns its error.
    unsafe { sys::vmz_error_free(err) }
}

#[test]
fn handles_and_errors_misused() {
    let _s = common::serial();
    let before = Resources::now();
    // SAFETY: (the whole test) every call is made with arguments the header
    // allows, including the NULLs and repeated frees it promises to detect.
    unsafe {
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_start(
            null_mut(),
            Some(ignore),
            null_mut(),
            &mut err
        ));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_request_stop(null_mut(), &mut err));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_force_stop(null_mut(), None, null_mut(), &mut err));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);
        assert_eq!(sys::vmz_get_state(null_mut()), sys::VMZ_STATE_ERROR);
        sys::vmz_release(null_mut());

        // A failed call with no out-parameter: the error is dropped inside.
        assert!(!sys::vmz_validate_config(null(), null_mut()));

        // Errors: NULL is harmless; a second free is detected and ignored.
        assert_eq!(sys::vmz_error_code(null_mut()), 0);
        assert!(sys::vmz_error_message(null_mut()).is_null());
        sys::vmz_error_free(null_mut());
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_validate_config(null(), &mut err));
        let msg = CStr::from_ptr(sys::vmz_error_message(err))
            .to_str()
            .unwrap();
        assert_eq!(msg, "config is NULL");
        assert_eq!(vmz::live_objects().errors, 1);
        sys::vmz_error_free(err);
        sys::vmz_error_free(err);
        assert_eq!(vmz::live_objects().errors, 0);

        // A handle: NULL completion refused; released twice is detected.
        let s = guest_strings();
        let mut err: VMZErrorRef = null_mut();
        let h = sys::vmz_create(&config(&s), null(), &mut err);
        assert!(!h.is_null());
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_start(h, None, null_mut(), &mut err));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);
        assert_eq!(sys::vmz_get_state(h), sys::VMZ_STATE_CREATED);
        sys::vmz_release(h);
        sys::vmz_release(h);
        assert_eq!(sys::vmz_get_state(h), sys::VMZ_STATE_ERROR);
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_start(h, Some(ignore), null_mut(), &mut err));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);

        // Limits: NULL and a short struct.
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_get_limits(null_mut(), &mut err));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);
        let mut limits = sys::VMZLimits {
            struct_size: 4,
            ..Default::default()
        };
        let mut err: VMZErrorRef = null_mut();
        assert!(!sys::vmz_get_limits(&mut limits, &mut err));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);

        // Callbacks with a bad struct_size are refused before anything.
        let cbs = sys::VMZCallbacks {
            struct_size: 3,
            ..Default::default()
        };
        let mut err: VMZErrorRef = null_mut();
        assert!(sys::vmz_create(&config(&s), &cbs, &mut err).is_null());
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);
    }
    before.assert_restored();
}

/// Set by `count_call`: a callback the bridge must not have called.
static FORBIDDEN_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe extern "C" fn count_call(_: *mut c_void, _: sys::VMZState) {
    FORBIDDEN_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

unsafe extern "C" fn note_end(
    ctx: *mut c_void,
    reason: sys::VMZEndReason,
    _signal: i32,
    err: VMZErrorRef,
) {
    // SAFETY: `ctx` is the test's `AtomicU32`, alive for the whole test.
    let seen = unsafe { &*(ctx as *const std::sync::atomic::AtomicU32) };
    seen.store(reason, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the callback owns its error (maybe NULL).
    unsafe { sys::vmz_error_free(err) }
}

/// ABI 3's life-cycle calls refuse what they cannot do, typed, and an ABI 2
/// caller's shorter VMZCallbacks (VMZ_CALLBACKS_SIZE_V2) is accepted with
/// the fields it lacks read as NULL: whatever lies after it is never called.
/// A failed start ends its life with exactly one did_end(START_FAILED).
#[test]
fn abi3_life_cycle_calls_and_an_abi2_callbacks_struct() {
    let _s = common::serial();
    let before = Resources::now();
    let (kernel, _dir) = common::bogus_elf_kernel("abi3");
    let s = Strings {
        kernel: Some(cstr(kernel.as_os_str().as_bytes())),
        initrd: None,
        cmdline: None,
    };
    // SAFETY: every pointer below is valid for its call; the handles are
    // released once; the callbacks' context outlives the handles.
    unsafe {
        // Nothing to pause, resume or stop in a VM that never started.
        let mut err: VMZErrorRef = null_mut();
        let h = sys::vmz_create(&config(&s), null(), &mut err);
        assert!(!h.is_null());
        type Call = unsafe fn(sys::VMZHandle, *mut VMZErrorRef) -> bool;
        let calls: [(&str, Call); 3] = [
            ("pause", |h, e| sys::vmz_pause(h, None, null_mut(), e)),
            ("resume", |h, e| sys::vmz_resume(h, None, null_mut(), e)),
            ("stop", |h, e| sys::vmz_stop(h, 1000, None, null_mut(), e)),
        ];
        for (what, call) in calls {
            let mut err: VMZErrorRef = null_mut();
            assert!(!call(h, &mut err), "{what} of a created VM");
            assert_eq!(take(err).0, ErrorCode::InvalidState, "{what}");
        }
        sys::vmz_release(h);
        assert!(!sys::vmz_pause(h, None, null_mut(), &mut err));
        assert_eq!(take(err).0, ErrorCode::InvalidArgument);

        // An ABI 2 struct: 40 bytes, then a state_did_change pointer the
        // bridge must not read (it lies beyond the caller's struct_size).
        let mut cbs = sys::VMZCallbacks {
            struct_size: sys::VMZ_CALLBACKS_SIZE_V2,
            state_did_change: Some(count_call),
            ..Default::default()
        };
        let mut err: VMZErrorRef = null_mut();
        let h = sys::vmz_create(&config(&s), &cbs, &mut err);
        assert!(!h.is_null(), "an ABI 2 callbacks struct is accepted");
        let mut err: VMZErrorRef = null_mut();
        assert!(sys::vmz_start(h, Some(ignore), null_mut(), &mut err));
        common::within("the failed start's end", BOOT_TIMEOUT, || {
            while sys::vmz_get_state(h) != sys::VMZ_STATE_ERROR {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        sys::vmz_release(h);
        assert_eq!(
            FORBIDDEN_CALLS.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a callback beyond struct_size was called"
        );

        // The full ABI 3 struct: the same failed start ends with one
        // did_end, START_FAILED.
        let seen = std::sync::atomic::AtomicU32::new(0);
        cbs.struct_size = std::mem::size_of::<sys::VMZCallbacks>() as u32;
        cbs.state_did_change = None;
        cbs.did_end = Some(note_end);
        cbs.context = &seen as *const _ as *mut c_void;
        let mut err: VMZErrorRef = null_mut();
        let h = sys::vmz_create(&config(&s), &cbs, &mut err);
        assert!(!h.is_null());
        assert!(sys::vmz_start(h, Some(ignore), null_mut(), &mut err));
        common::within("the failed start's did_end", BOOT_TIMEOUT, || {
            while seen.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        sys::vmz_release(h);
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            sys::VMZ_END_START_FAILED
        );
    }
    before.assert_restored();
}
