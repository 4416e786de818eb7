//! A guest's boot as the benchmarks time it: the two console markers, and the bounds of every wait.

use super::*;

/// The line the test guest's init prints once it runs.
pub(crate) const MARKER: &[u8] = b"VMZ-GUEST-READY";
/// The test guest's first line: /init's first act.
pub(crate) const USERSPACE: &[u8] = b"VMZ-GUEST-USERSPACE";

/// The times of one boot, from the start of the timed call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Boot {
    /// To the first line of /init on the console (`VMZ-GUEST-USERSPACE`,
    /// once /init has loaded the console's modules and opened hvc0).
    pub(crate) userspace: Duration,
    /// To the marker (`VMZ-GUEST-READY`): modules loaded, acpid running.
    pub(crate) ready: Duration,
}

impl Boot {
    /// Waits for both markers on `console`, timing from `t0`.
    pub(crate) fn wait(console: &Console, t0: Instant) -> BenchResult<Boot> {
        let at = console.wait_for(USERSPACE, 0, BOOT_TIMEOUT)?;
        let userspace = t0.elapsed();
        console.wait_for(MARKER, at, BOOT_TIMEOUT)?;
        Ok(Boot {
            userspace,
            ready: t0.elapsed(),
        })
    }
}

/// Generous: emulated guests on a small, possibly busy machine.
pub(crate) const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// For everything after the boot.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(60);
