//! Fuzzes the configuration path of the C ABI: arbitrary `VMZConfig`s
//! (sizes, strings, descriptors, limits) through `vmz_validate_config` and
//! `vmz_create` (+ `vmz_release`). Nothing is ever started. The oracle,
//! beyond "no crash": validate and create agree, every error has a code and
//! a UTF-8 message, and no handle or error outlives the iteration.
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run config -- -max_total_time=60`
#![no_main]

use std::ffi::{CStr, CString};
use std::ptr::{null, null_mut};

use libfuzzer_sys::fuzz_target;
use vmz::sys;

/// Reads little-endian integers off the front of the input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// A C string from arbitrary bytes (cut at the first NUL), or NULL.
fn string(bytes: Option<&[u8]>) -> Option<CString> {
    bytes.map(|b| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        CString::new(&b[..end]).unwrap()
    })
}

fn check_error(err: sys::VMZErrorRef) -> i32 {
    assert!(!err.is_null(), "a failure without an error object");
    // SAFETY: the bridge handed us this live error; freed below, once.
    unsafe {
        let code = sys::vmz_error_code(err);
        assert!(code > 0, "error code {code}");
        let msg = sys::vmz_error_message(err);
        assert!(!msg.is_null());
        assert!(CStr::from_ptr(msg).to_str().is_ok(), "message is UTF-8");
        sys::vmz_error_free(err);
        code
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let size = match flags & 3 {
        0 => input.u32(),
        _ => std::mem::size_of::<sys::VMZConfig>() as u32,
    };
    // Numbers: mostly near the interesting bounds, sometimes raw.
    let cpus = if flags & 4 != 0 { input.u32() } else { u32::from(input.u8() % 4) };
    let memory = if flags & 8 != 0 {
        input.u64()
    } else {
        u64::from(input.u8()) << 20
    };
    let read_fd = if flags & 16 != 0 { input.u32() as i32 } else { -1 };
    let write_fd = if flags & 32 != 0 { input.u32() as i32 } else { -1 };
    let accel = u32::from(input.u8() % 5);
    let nat = flags & 64 != 0;

    // The rest: kernel, initrd, command line, separated by 0xff.
    let mut parts = input.0.split(|&b| b == 0xff);
    let mut kernel = string(parts.next());
    if flags & 128 != 0 {
        // A real, readable ELF file, so that the checks after the kernel's
        // are reached too.
        kernel = Some(CString::new("/proc/self/exe").unwrap());
    }
    let initrd = string(parts.next());
    let cmdline = string(parts.next());

    let config = sys::VMZConfig {
        struct_size: size,
        kernel_path: kernel.as_ref().map_or(null(), |s| s.as_ptr()),
        initrd_path: initrd.as_ref().map_or(null(), |s| s.as_ptr()),
        command_line: cmdline.as_ref().map_or(null(), |s| s.as_ptr()),
        read_pipe_fd: read_fd,
        write_pipe_fd: write_fd,
        cpu_count: cpus,
        memory_size: memory,
        enable_nat: nat,
        accelerator: accel,
        boot_options: u32::from(input.u8() % 3),
        ..Default::default()
    };

    // SAFETY: the config and its strings are valid for both calls; the
    // handle, if any, is released once; errors are freed once.
    unsafe {
        let mut err = null_mut();
        let valid = sys::vmz_validate_config(&config, &mut err);
        let validate_code = if valid { 0 } else { check_error(err) };

        let mut err = null_mut();
        let handle = sys::vmz_create(&config, null(), &mut err);
        if handle.is_null() {
            let code = check_error(err);
            assert_eq!(code, validate_code, "create and validate disagree");
        } else {
            assert!(valid, "created a VM from a config validate refused");
            assert_eq!(sys::vmz_get_state(handle), sys::VMZ_STATE_CREATED);
            sys::vmz_release(handle);
        }
        let live = sys::vmz_live_objects();
        assert_eq!((live.handles, live.errors), (0, 0), "leaked bridge objects");
    }
});
