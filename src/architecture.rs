//! The guest's CPU architecture.

use crate::sys;

/// The architecture of the guest's CPUs (and so of its kernel).
///
/// Virtualization.framework (macOS) boots only the host's architecture;
/// asking it for another is refused with
/// [`ErrorCode::EngineUnavailable`](crate::ErrorCode::EngineUnavailable).
/// The QEMU engine (Linux) boots both: `qemu-system-x86_64` or
/// `qemu-system-aarch64`, with KVM where it really works for a guest of the
/// host's architecture, and by software emulation (TCG) otherwise.
///
/// ```no_run
/// use vmz::{Config, GuestArchitecture};
/// // An arm64 guest (a Mac's guest) on any Linux host.
/// let config = Config::builder("guest-arm64/Image")
///     .guest_architecture(GuestArchitecture::Arm64)
///     .initrd("guest-arm64/initrd.img")
///     .command_line("console=hvc0")
///     .build()?;
/// config.validate()?;
/// # Ok::<(), vmz::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GuestArchitecture {
    /// The host's architecture (the default).
    #[default]
    Host,
    /// x86_64: a bzImage or an ELF `vmlinux` (PVH entry); QEMU's `q35`
    /// machine.
    X86_64,
    /// arm64 (aarch64): an `Image`, or a gzip-compressed one (decompressed
    /// once on the host into the kernel cache); QEMU's `virt` machine,
    /// console `hvc0`, or the PL011 UART `ttyAMA0` with
    /// [`ConsoleDevice::Serial`](crate::ConsoleDevice::Serial).
    Arm64,
}

impl GuestArchitecture {
    /// The architecture this crate was built for.
    pub const fn host() -> GuestArchitecture {
        if cfg!(target_arch = "aarch64") {
            GuestArchitecture::Arm64
        } else {
            GuestArchitecture::X86_64
        }
    }

    /// [`Host`](GuestArchitecture::Host) replaced by what it stands for.
    pub const fn resolved(self) -> GuestArchitecture {
        match self {
            GuestArchitecture::Host => GuestArchitecture::host(),
            other => other,
        }
    }

    pub(crate) fn to_raw(self) -> u32 {
        match self {
            GuestArchitecture::Host => sys::VMZ_GUEST_ARCH_HOST,
            GuestArchitecture::X86_64 => sys::VMZ_GUEST_ARCH_X86_64,
            GuestArchitecture::Arm64 => sys::VMZ_GUEST_ARCH_ARM64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_resolves_to_the_build_target() {
        assert_eq!(GuestArchitecture::default(), GuestArchitecture::Host);
        let host = GuestArchitecture::Host.resolved();
        assert_ne!(host, GuestArchitecture::Host);
        assert_eq!(
            host == GuestArchitecture::Arm64,
            cfg!(target_arch = "aarch64")
        );
        assert_eq!(
            GuestArchitecture::Arm64.resolved(),
            GuestArchitecture::Arm64
        );
    }

    #[test]
    fn raw_values_are_the_headers() {
        assert_eq!(GuestArchitecture::Host.to_raw(), 0);
        assert_eq!(GuestArchitecture::X86_64.to_raw(), 1);
        assert_eq!(GuestArchitecture::Arm64.to_raw(), 2);
    }
}
