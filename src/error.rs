//! Errors: the bridge's own error objects, owned in Rust, and the crate's
//! error type.

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::sys;

/// What kind of failure an [`Error`] is: the bridge's error code
/// (`VMZErrorCode` in `libvmz.h`), plus `Unknown` for codes a newer bridge
/// may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A NULL pointer, a non-UTF-8 string, an interior NUL, a bad handle.
    InvalidArgument,
    /// The kernel is missing, not a regular file, unreadable or of an
    /// unsupported format.
    Kernel,
    /// The initial ramdisk is missing, not a regular file or unreadable.
    Initrd,
    /// The kernel command line is too long.
    CommandLine,
    /// The CPU count is outside the engine's limits.
    CpuCount,
    /// The memory size is outside the limits or not a whole MiB.
    MemorySize,
    /// A serial descriptor is not open, or open in the wrong direction.
    SerialFd,
    /// The requested accelerator is unknown or not usable here.
    Accelerator,
    /// The operation is not allowed in the VM's current state.
    InvalidState,
    /// The engine cannot run here (no QEMU, no Virtualization.framework
    /// support, missing entitlement).
    EngineUnavailable,
    /// The engine failed to start the VM.
    StartFailed,
    /// The VM stopped because of an error at run time.
    Runtime,
    /// An operating system call failed.
    Io,
    /// A bug in the bridge.
    Internal,
    /// A device in the configuration is invalid (a serial port's name or
    /// socket, ...); the message names it.
    Device,
    /// The engine did not answer within its bound: QEMU stopped or frozen,
    /// or the start took longer than
    /// [`start_timeout`](crate::ConfigBuilder::start_timeout).
    Timeout,
    /// A disk is missing, a directory, unreadable, not writable although
    /// asked read-write, empty, of a format vmz or the engine does not
    /// take, given twice, or has an invalid setting; or there are more than
    /// [`MAX_DISKS`](crate::MAX_DISKS). The message names the disk.
    Disk,
    /// A disk is in use by another running VM (read-write there, or asked
    /// read-write here while another VM has it open).
    DiskInUse,
    /// Nobody listens on the guest's vsock port (or the guest did not
    /// answer in time).
    ConnectionRefused,
    /// The host already listens on this vsock port of the VM.
    PortInUse,
    /// A shared directory is missing, not a directory or unreadable, its
    /// tag is invalid, too long or used twice, or there are more than
    /// [`MAX_SHARES`](crate::MAX_SHARES). (A missing `virtiofsd` on Linux
    /// is [`EngineUnavailable`](ErrorCode::EngineUnavailable).)
    Share,
    /// A code this version of the crate does not know.
    Unknown(i32),
}

impl ErrorCode {
    /// The code for a raw `VMZErrorCode` value.
    pub fn from_raw(code: i32) -> ErrorCode {
        let Ok(raw) = u32::try_from(code) else {
            return ErrorCode::Unknown(code);
        };
        match raw {
            sys::VMZ_ERROR_INVALID_ARGUMENT => ErrorCode::InvalidArgument,
            sys::VMZ_ERROR_KERNEL => ErrorCode::Kernel,
            sys::VMZ_ERROR_INITRD => ErrorCode::Initrd,
            sys::VMZ_ERROR_COMMAND_LINE => ErrorCode::CommandLine,
            sys::VMZ_ERROR_CPU_COUNT => ErrorCode::CpuCount,
            sys::VMZ_ERROR_MEMORY_SIZE => ErrorCode::MemorySize,
            sys::VMZ_ERROR_SERIAL_FD => ErrorCode::SerialFd,
            sys::VMZ_ERROR_ACCELERATOR => ErrorCode::Accelerator,
            sys::VMZ_ERROR_INVALID_STATE => ErrorCode::InvalidState,
            sys::VMZ_ERROR_ENGINE_UNAVAILABLE => ErrorCode::EngineUnavailable,
            sys::VMZ_ERROR_START_FAILED => ErrorCode::StartFailed,
            sys::VMZ_ERROR_RUNTIME => ErrorCode::Runtime,
            sys::VMZ_ERROR_IO => ErrorCode::Io,
            sys::VMZ_ERROR_INTERNAL => ErrorCode::Internal,
            sys::VMZ_ERROR_DEVICE => ErrorCode::Device,
            sys::VMZ_ERROR_TIMEOUT => ErrorCode::Timeout,
            sys::VMZ_ERROR_DISK => ErrorCode::Disk,
            sys::VMZ_ERROR_DISK_IN_USE => ErrorCode::DiskInUse,
            sys::VMZ_ERROR_CONNECTION_REFUSED => ErrorCode::ConnectionRefused,
            sys::VMZ_ERROR_PORT_IN_USE => ErrorCode::PortInUse,
            sys::VMZ_ERROR_SHARE => ErrorCode::Share,
            _ => ErrorCode::Unknown(code),
        }
    }
}

/// The pointer, freed with `vmz_error_free` when the last clone of the
/// [`BridgeError`] that holds it goes.
struct RawError(NonNull<sys::VMZError>);

impl Drop for RawError {
    fn drop(&mut self) {
        // SAFETY: we own this error (the bridge handed it to us) and this is
        // the only place it is freed, once, when the last owner goes.
        unsafe { sys::vmz_error_free(self.0.as_ptr()) }
    }
}

// SAFETY: a bridge error is immutable after creation and the bridge's
// accessors and free function may be called from any thread.
unsafe impl Send for RawError {}
// SAFETY: as above; `&RawError` only allows the read-only accessors.
unsafe impl Sync for RawError {}

/// An error object of the bridge (`VMZErrorRef`), owned by Rust.
///
/// It keeps the bridge's code and message; the foreign object is freed with
/// `vmz_error_free` exactly once, when the last clone is dropped (clones
/// share it, like `Arc`).
#[derive(Clone)]
pub struct BridgeError {
    raw: Arc<RawError>,
}

impl BridgeError {
    /// Takes ownership of an error the bridge handed out; `None` for NULL.
    ///
    /// # Safety
    /// `ptr` must be NULL or a live `VMZErrorRef` that the caller owns and
    /// gives up: nothing else may free it.
    pub unsafe fn from_raw(ptr: sys::VMZErrorRef) -> Option<BridgeError> {
        NonNull::new(ptr).map(|p| BridgeError {
            raw: Arc::new(RawError(p)),
        })
    }

    /// The bridge's error code.
    pub fn code(&self) -> ErrorCode {
        // SAFETY: the pointer is live while `self` exists.
        ErrorCode::from_raw(unsafe { sys::vmz_error_code(self.raw.0.as_ptr()) })
    }

    /// The bridge's message (UTF-8, owned by the error).
    pub fn message(&self) -> &str {
        // SAFETY: the message belongs to the error, which lives as long as
        // `self` (the returned borrow is tied to it).
        let ptr = unsafe { sys::vmz_error_message(self.raw.0.as_ptr()) };
        if ptr.is_null() {
            return "<no message>";
        }
        // SAFETY: non-NULL messages are NUL-terminated and live as long as
        // the error.
        let text = unsafe { CStr::from_ptr(ptr) };
        text.to_str().unwrap_or("<message is not UTF-8>")
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl fmt::Debug for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeError")
            .field("code", &self.code())
            .field("message", &self.message())
            .finish()
    }
}

impl std::error::Error for BridgeError {}

/// The error type of every fallible call in this crate.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bridge reported an error: its code and message.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// A string of the configuration holds a NUL byte, which C cannot carry.
    #[error("{field} contains a NUL byte at offset {offset}")]
    InteriorNul {
        /// Which setting.
        field: &'static str,
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// A path of the configuration is not valid UTF-8, which the bridge
    /// requires.
    #[error("{field} is not valid UTF-8: {path:?}")]
    NonUtf8Path {
        /// Which setting.
        field: &'static str,
        /// The path.
        path: std::path::PathBuf,
    },
    /// A blocking call was made from inside an event handler, which runs on
    /// the VM's own queue: waiting there would wait forever.
    #[error("{0} cannot block inside a vmz event handler (it would deadlock the VM's queue)")]
    CalledFromHandler(&'static str),
    /// [`VsockListener::accept`](crate::VsockListener::accept): the VM has
    /// ended, no connection will come.
    #[error("vsock port {0}: the VM has ended, no guest connection will come")]
    VsockEnded(u32),
}

impl Error {
    /// What kind of failure this is.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Bridge(e) => e.code(),
            Error::InteriorNul { .. } | Error::NonUtf8Path { .. } => ErrorCode::InvalidArgument,
            Error::CalledFromHandler(_) | Error::VsockEnded(_) => ErrorCode::InvalidState,
        }
    }
}

/// Calls a bridge function that follows the ABI's failure convention: it
/// returns `false` (or NULL) and stores an error object, which the caller
/// then owns, in its error out-parameter. `call` gets that out-parameter
/// (NULL before the call) and returns `Some(value)` on success, `None` on
/// failure; the error becomes [`Error::Bridge`].
///
/// # Safety
/// `call` must hand the out-parameter to the bridge function and leave it as
/// the bridge left it: after a failure it holds an error this takes over.
pub(crate) unsafe fn bridge_call<T>(
    call: impl FnOnce(&mut sys::VMZErrorRef) -> Option<T>,
) -> Result<T> {
    let mut err: sys::VMZErrorRef = std::ptr::null_mut();
    if let Some(value) = call(&mut err) {
        return Ok(value);
    }
    // SAFETY: after a failure `err` is NULL or an error object we now own
    // (the caller's promise).
    let error = unsafe { BridgeError::from_raw(err) };
    Err(Error::Bridge(error.expect(
        "the vmz bridge reported a failure without an error object",
    )))
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_from_raw() {
        assert_eq!(
            ErrorCode::from_raw(sys::VMZ_ERROR_KERNEL as i32),
            ErrorCode::Kernel
        );
        assert_eq!(
            ErrorCode::from_raw(sys::VMZ_ERROR_INTERNAL as i32),
            ErrorCode::Internal
        );
        assert_eq!(ErrorCode::from_raw(999), ErrorCode::Unknown(999));
        assert_eq!(ErrorCode::from_raw(-1), ErrorCode::Unknown(-1));
    }

    #[test]
    fn null_is_no_error() {
        // SAFETY: NULL is allowed and owns nothing.
        assert!(unsafe { BridgeError::from_raw(std::ptr::null_mut()) }.is_none());
    }

    #[test]
    fn interior_nul_is_an_invalid_argument() {
        let e = Error::InteriorNul {
            field: "command line",
            offset: 3,
        };
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        assert_eq!(
            e.to_string(),
            "command line contains a NUL byte at offset 3"
        );
    }
}
