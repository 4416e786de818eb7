//! # vmz: boot Linux virtual machines from Rust
//!
//! vmz boots a Linux guest (kernel, initial ramdisk, command line) and gives
//! you its serial console, a NAT network and its life cycle, with one API on
//! two systems:
//!
//! ```text
//! Rust (this crate) -> C ABI (include/libvmz.h) -> Swift bridge -> Virtualization.framework (macOS)
//!                                                               -> QEMU, over QMP         (Linux)
//! ```
//!
//! ```no_run
//! use vmz::{Config, Exit, Machine};
//!
//! let config = Config::builder("target/vmz-guest/vmlinux")
//!     .initrd("target/vmz-guest/initrd.img")
//!     .command_line("console=hvc0")
//!     .cpus(1)
//!     .memory_mib(256)
//!     .build()?;
//! let vm = Machine::new(&config)?;
//! vm.start()?;                 // the console goes to stdout by default
//! vm.request_stop()?;          // the ACPI power button; the guest decides
//! match vm.wait()? {
//!     Exit::PoweredOff => println!("powered off"),
//!     other => println!("ended: {other}"),
//! }
//! # Ok::<(), vmz::Error>(())
//! ```
//!
//! ## Threads
//! Each VM runs on its own queue inside the bridge; no thread of yours needs
//! to run a loop, on Linux or macOS. Event handlers run on that queue.
//! [`Machine`], [`Config`], [`Error`] and [`Event`] are `Send` and `Sync`.
//!
//! ## Ownership across the C boundary
//! The bridge owns VM handles; a [`Machine`] releases its handle in `Drop`.
//! Every error object the bridge hands out is owned by a [`BridgeError`],
//! which frees it exactly once. Strings and descriptors given to the bridge
//! are borrowed for the call; the bridge duplicates the descriptors it keeps.

#![warn(missing_docs)]

mod architecture;
mod balloon;
mod config;
mod console;
mod disk;
mod error;
mod events;
mod exit;
mod log_bridge;
mod machine;
mod network;
mod share;
mod stream;
pub mod sys;
mod vsock;
mod wait;

pub use architecture::GuestArchitecture;
pub use config::{Accelerator, Config, ConfigBuilder, Limits};
pub use console::ConsoleDevice;
pub use disk::{Disk, DiskFormat, DiskSync, MAX_DISKS};
pub use error::{BridgeError, Error, ErrorCode, Result};
pub use events::Event;
pub use exit::{Exit, Signal};
pub use machine::{Machine, State};
pub use network::{Network, Protocol};
pub use share::{
    Share, ShareDirectory, MAX_SHARES, MAX_SHARE_DIRECTORIES, MAX_SHARE_DIRECTORY_NAME_LEN,
    MAX_SHARE_TAG_LEN,
};
pub use stream::{EventStream, Recv};
pub use vsock::{VsockAccept, VsockConnect, VsockListener, VsockStream};
pub use wait::{Completion, Ended, Started};

/// Numbers of live bridge objects, for leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LiveObjects {
    /// VM handles created and not yet released.
    pub handles: u64,
    /// Error objects handed out and not yet freed.
    pub errors: u64,
}

/// Counts the bridge's live handles and errors (process-wide).
///
/// ```
/// let before = vmz::live_objects();
/// let _ = vmz::Config::builder("/nonexistent").build()?.validate();
/// assert_eq!(vmz::live_objects(), before); // the error was freed
/// # Ok::<(), vmz::Error>(())
/// ```
pub fn live_objects() -> LiveObjects {
    // SAFETY: no arguments; reads counters.
    let raw = unsafe { sys::vmz_live_objects() };
    LiveObjects {
        handles: raw.handles,
        errors: raw.errors,
    }
}

/// The ABI version of the linked bridge (`VMZ_ABI_VERSION`).
pub fn abi_version() -> u32 {
    // SAFETY: no arguments.
    unsafe { sys::vmz_abi_version() }
}

#[cfg(test)]
mod tests {
    /// The ABI this crate's Rust side is written for. An ABI change (a new
    /// header, a bridge built from another one) fails here until the Rust
    /// side is updated and this number with it.
    const ABI_THIS_CRATE_SPEAKS: u32 = 3;

    #[test]
    fn abi_version_is_the_one_this_crate_speaks() {
        assert_eq!(super::sys::VMZ_ABI_VERSION, ABI_THIS_CRATE_SPEAKS, "header");
        assert_eq!(super::abi_version(), ABI_THIS_CRATE_SPEAKS, "linked bridge");
        // Old callers' struct sizes stay what they were (LP64); the current
        // struct only grows.
        assert_eq!(super::sys::VMZ_CONFIG_SIZE_V1, 64);
        assert_eq!(super::sys::VMZ_CONFIG_SIZE_V2, 72);
        assert!(std::mem::size_of::<super::sys::VMZConfig>() > 72);
    }
}

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
