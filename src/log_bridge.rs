//! Forwards the bridge's log lines to the `log` crate (target `vmz::bridge`).

use std::ffi::{c_char, c_void, CStr};
use std::panic::catch_unwind;

use crate::sys;

unsafe extern "C" fn forward(_ctx: *mut c_void, level: sys::VMZLogLevel, message: *const c_char) {
    let _ = catch_unwind(|| {
        if message.is_null() {
            return;
        }
        // SAFETY: the bridge passes a NUL-terminated string valid for the call.
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        let level = match level {
            sys::VMZ_LOG_ERROR => log::Level::Error,
            sys::VMZ_LOG_WARN => log::Level::Warn,
            sys::VMZ_LOG_INFO => log::Level::Info,
            sys::VMZ_LOG_DEBUG => log::Level::Debug,
            _ => log::Level::Trace,
        };
        log::log!(target: "vmz::bridge", level, "{text}");
    });
}

/// Points the bridge's log at `log`, at the currently enabled level (so the
/// bridge does not format lines nobody reads). Called by every entry point
/// that creates bridge objects; cheap.
pub(crate) fn init() {
    let level = match log::max_level() {
        log::LevelFilter::Off => 0,
        log::LevelFilter::Error => sys::VMZ_LOG_ERROR,
        log::LevelFilter::Warn => sys::VMZ_LOG_WARN,
        log::LevelFilter::Info => sys::VMZ_LOG_INFO,
        log::LevelFilter::Debug => sys::VMZ_LOG_DEBUG,
        log::LevelFilter::Trace => sys::VMZ_LOG_TRACE,
    };
    // SAFETY: `forward` is a valid callback for the process's lifetime and
    // needs no context.
    unsafe { sys::vmz_set_log_callback(Some(forward), std::ptr::null_mut(), level) }
}
