//! The memory balloon: shrinking a running guest.

use crate::error::{bridge_call, Result};
use crate::{sys, Machine};

impl Machine {
    /// Asks the guest to give memory back until it has `bytes` (whole MiB,
    /// from [`Limits`](crate::Limits)' minimum up to the configured size,
    /// which gives everything back). Returns once the request is delivered;
    /// the guest's balloon driver acts in its own time. Errors:
    /// [`ErrorCode::InvalidState`](crate::ErrorCode::InvalidState) when not
    /// running, [`ErrorCode::Device`](crate::ErrorCode::Device) without a
    /// balloon, [`ErrorCode::MemorySize`](crate::ErrorCode::MemorySize) out
    /// of range.
    ///
    /// ```no_run
    /// # fn f(vm: &vmz::Machine) -> vmz::Result<()> {
    /// vm.set_memory_target(256 << 20)?; // the guest shrinks to 256 MiB
    /// # Ok(()) }
    /// ```
    pub fn set_memory_target(&self, bytes: u64) -> Result<()> {
        // SAFETY: the handle is live while `self` is; the out-parameter goes
        // to the bridge as it is.
        unsafe {
            bridge_call(|err| {
                sys::vmz_set_memory_target(self.raw_handle(), bytes, err).then_some(())
            })
        }
    }
}
