//! How a VM life ended: [`Exit`] and the host [`Signal`] that may have
//! ended it.

use std::fmt;

use crate::error::{BridgeError, Error};
use crate::sys;

/// How a VM life ended: what the VM did, never what a caller did wrong
/// (usage mistakes are [`Error`]s of the call that made them).
///
/// What each engine can tell apart: QEMU (Linux) reports every variant.
/// Virtualization.framework (macOS) reports [`PoweredOff`](Exit::PoweredOff)
/// for any stop of the guest's own (it does not say whether the guest
/// powered off or rebooted, and has no panic device), an error end as
/// [`EngineError`](Exit::EngineError), and never [`Killed`](Exit::Killed).
///
/// ```no_run
/// # fn demo(vm: &vmz::Machine) -> vmz::Result<()> {
/// use vmz::Exit;
/// match vm.wait()? {
///     Exit::PoweredOff => println!("the guest powered off"),
///     Exit::Rebooted => println!("the guest rebooted (a reboot ends the VM)"),
///     Exit::Panicked => println!("the guest kernel panicked"),
///     Exit::Killed(signal) => println!("QEMU was killed by {signal}"),
///     Exit::ForceStopped => println!("we stopped it"),
///     Exit::StartFailed(e) | Exit::EngineError(e) => println!("failed: {e}"),
///     other => println!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Exit {
    /// The guest powered off, possibly honouring a stop request.
    PoweredOff,
    /// The guest rebooted or reset itself; a reboot ends the VM. A guest
    /// kernel that panics without its pvpanic driver loaded and reboots on
    /// panic (`panic=N`) ends this way too: vmz cannot tell it from a reboot.
    Rebooted,
    /// The guest kernel panicked, as its pvpanic driver reported (Linux
    /// engine; the guest needs the driver, `pvpanic` / `pvpanic-pci`).
    Panicked,
    /// The engine process (QEMU) was killed or stopped by a host signal
    /// that vmz did not send.
    Killed(Signal),
    /// The caller stopped the VM: [`Machine::force_stop`](crate::Machine::force_stop),
    /// a [`Machine::stop`](crate::Machine::stop) whose grace period ran
    /// out, or dropping a running [`Machine`](crate::Machine).
    ForceStopped,
    /// The VM never ran: the start failed.
    StartFailed(Error),
    /// The engine failed at run time (it crashed or exited by itself).
    EngineError(Error),
}

impl Exit {
    /// The error that came with this end, for the error variants.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Exit::StartFailed(e) | Exit::EngineError(e) => Some(e),
            _ => None,
        }
    }

    /// True when the guest ended its own life in an orderly way: it powered
    /// off or rebooted.
    pub fn is_guest_stop(&self) -> bool {
        matches!(self, Exit::PoweredOff | Exit::Rebooted)
    }

    /// The exit of a `did_end` callback's arguments; `error` is owned.
    pub(crate) fn from_raw(reason: u32, signal: i32, error: Option<BridgeError>) -> Exit {
        let error_or = |what: &str| {
            Error::Bridge(
                error
                    .clone()
                    .unwrap_or_else(|| panic!("the bridge ended a VM with {what} but no error")),
            )
        };
        match reason {
            sys::VMZ_END_POWERED_OFF => Exit::PoweredOff,
            sys::VMZ_END_REBOOTED => Exit::Rebooted,
            sys::VMZ_END_PANICKED => Exit::Panicked,
            sys::VMZ_END_KILLED_BY_SIGNAL => Exit::Killed(Signal(signal)),
            sys::VMZ_END_FORCED => Exit::ForceStopped,
            sys::VMZ_END_START_FAILED => Exit::StartFailed(error_or("START_FAILED")),
            sys::VMZ_END_ENGINE_ERROR => Exit::EngineError(error_or("ENGINE_ERROR")),
            other => {
                log::warn!("unknown end reason {other} from the bridge");
                Exit::EngineError(error_or("an unknown reason"))
            }
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::PoweredOff => f.write_str("the guest powered off"),
            Exit::Rebooted => f.write_str("the guest rebooted"),
            Exit::Panicked => f.write_str("the guest kernel panicked"),
            Exit::Killed(s) => write!(f, "the engine was killed by {s}"),
            Exit::ForceStopped => f.write_str("force-stopped"),
            Exit::StartFailed(e) => write!(f, "the start failed: {e}"),
            Exit::EngineError(e) => write!(f, "the engine failed: {e}"),
        }
    }
}

/// A host signal, by number (Linux numbering: the Linux engine's QEMU is
/// the only process that reports one).
///
/// ```
/// let s = vmz::Signal::from_number(9);
/// assert_eq!(s.name(), Some("SIGKILL"));
/// assert_eq!(s.to_string(), "SIGKILL (9)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// The signal with this number.
    pub fn from_number(number: i32) -> Signal {
        Signal(number)
    }

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The signal's name (`"SIGTERM"`), if it is a standard one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGXCPU => "SIGXCPU",
            libc::SIGXFSZ => "SIGXFSZ",
            libc::SIGSYS => "SIGSYS",
            _ => return None,
        })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "signal {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_names() {
        assert_eq!(Signal(libc::SIGTERM).name(), Some("SIGTERM"));
        assert_eq!(Signal(libc::SIGTERM).to_string(), "SIGTERM (15)");
        assert_eq!(Signal(64).name(), None);
        assert_eq!(Signal(64).to_string(), "signal 64");
    }

    #[test]
    fn reasons_map_to_exits() {
        assert!(matches!(
            Exit::from_raw(sys::VMZ_END_POWERED_OFF, 0, None),
            Exit::PoweredOff
        ));
        assert!(matches!(
            Exit::from_raw(sys::VMZ_END_KILLED_BY_SIGNAL, 15, None),
            Exit::Killed(s) if s.number() == 15
        ));
        assert!(Exit::from_raw(sys::VMZ_END_REBOOTED, 0, None).is_guest_stop());
        assert!(!Exit::from_raw(sys::VMZ_END_FORCED, 0, None).is_guest_stop());
    }
}
