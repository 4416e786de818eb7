//! The VM: an owned handle of the bridge.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{bridge_call, Result};
use crate::events::{self, Event, Exit, Phase, Shared, StartContext};
use crate::sys;

/// The life cycle of a VM, as the bridge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Created, not started.
    Created,
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped (final).
    Stopped,
    /// Stopped because of an error, or failed to start (final).
    Error,
}

/// A virtual machine, owned: dropping it stops the VM (at once, if it still
/// runs), waits for the engine to finish, and releases the bridge's handle.
/// No event handler runs after `drop` returns.
///
/// A `Machine` runs one VM life: create, start, run, stop. It is `Send` and
/// `Sync`: every method takes `&self` and may be called from any thread.
///
/// On Linux no thread of yours needs to run a loop: the bridge runs each VM
/// on its own queue. (macOS: the same holds; `vmz_run_loop` exists only for
/// C callers that want main-queue style.)
///
/// ```no_run
/// use vmz::{Config, Event, Machine};
/// use std::sync::mpsc;
///
/// let config = Config::builder("target/vmz-guest/vmlinux")
///     .initrd("target/vmz-guest/initrd.img")
///     .command_line("console=hvc0")
///     .build()?;
/// let (tx, rx) = mpsc::channel();
/// let vm = Machine::with_event_handler(&config, move |event| {
///     let _ = tx.send(event);
/// })?;
/// vm.start()?;
/// assert!(matches!(rx.recv().unwrap(), Event::Started));
/// vm.request_stop()?;
/// let exit = vm.wait();
/// println!("the VM ended: {exit:?}");
/// # Ok::<(), vmz::Error>(())
/// ```
pub struct Machine {
    handle: NonNull<sys::VMZMachine>,
    shared: Arc<Shared>,
}

// SAFETY: the handle is opaque and every bridge function taking it may be
// called from any thread (the bridge serialises on the VM's queue); the
// shared state is behind mutexes.
unsafe impl Send for Machine {}
// SAFETY: as above; all methods take `&self` and are thread-safe.
unsafe impl Sync for Machine {}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// Validates `config` and creates the VM; nothing runs until
    /// [`start`](Machine::start). Events are not delivered anywhere; use
    /// [`wait`](Machine::wait) or [`with_event_handler`](Machine::with_event_handler).
    pub fn new(config: &Config) -> Result<Machine> {
        Machine::create(config, None)
    }

    /// Like [`new`](Machine::new), with a handler that receives every
    /// [`Event`] of this VM, on a bridge thread. The handler must not block
    /// on this VM (blocking methods called from it return
    /// [`Error::CalledFromHandler`]); a panic in it is logged and contained.
    pub fn with_event_handler<F>(config: &Config, handler: F) -> Result<Machine>
    where
        F: FnMut(Event) + Send + 'static,
    {
        Machine::create(config, Some(Box::new(handler)))
    }

    fn create(config: &Config, handler: Option<events::Handler>) -> Result<Machine> {
        crate::log_bridge::init();
        let shared = Shared::new(handler);
        let handle = config.with_raw(|raw| {
            let callbacks = events::callbacks(&shared);
            // SAFETY: `raw`, its strings and `callbacks` are valid for the
            // call; the out-parameter goes to the bridge as it is. The
            // bridge owns one reference to `shared` (the context) and
            // releases it through `release_context`, also on failure.
            unsafe { bridge_call(|err| NonNull::new(sys::vmz_create(raw, &callbacks, err))) }
        })??;
        log::debug!("created VM for kernel {}", config.kernel().display());
        Ok(Machine { handle, shared })
    }

    /// Starts the VM and waits until it runs (or failed to start). The
    /// handler, if any, gets [`Event::Started`] or [`Event::StartFailed`]
    /// first.
    pub fn start(&self) -> Result<()> {
        events::check_may_block("Machine::start")?;
        self.begin_start(None)?;
        drop(
            self.shared
                .wait_until(None, |p| !matches!(p, Phase::Starting)),
        );
        match self.shared.exit() {
            Some(Exit::Error(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Starts the VM without waiting; `done` runs on a bridge thread once it
    /// runs or failed to start (after the event handler). Returns an error,
    /// and never calls `done`, when the VM cannot start now (for example it
    /// was started before).
    pub fn start_with<F>(&self, done: F) -> Result<()>
    where
        F: FnOnce(Result<()>) + Send + 'static,
    {
        self.begin_start(Some(Box::new(done)))
    }

    fn begin_start(&self, then: Option<Box<dyn FnOnce(Result<()>) + Send>>) -> Result<()> {
        {
            let mut phase = self.shared.phase();
            if matches!(*phase, Phase::Created) {
                *phase = Phase::Starting;
            }
        }
        let ctx = Box::into_raw(Box::new(StartContext {
            shared: self.shared.clone(),
            then,
        }));
        // SAFETY: the handle is live while `self` is; the out-parameter goes
        // to the bridge as it is. On success the bridge calls
        // `start_completion` exactly once with `ctx`, which frees it.
        let result = unsafe {
            bridge_call(|err| {
                sys::vmz_start(
                    self.handle.as_ptr(),
                    Some(events::start_completion),
                    ctx as *mut c_void,
                    err,
                )
                .then_some(())
            })
        };
        if result.is_err() {
            // SAFETY: the bridge did not take `ctx`: free it here.
            drop(unsafe { Box::from_raw(ctx) });
            let mut phase = self.shared.phase();
            if matches!(*phase, Phase::Starting) && self.state() == State::Created {
                *phase = Phase::Created;
            }
        }
        result
    }

    /// Asks the guest to stop (the ACPI power button). Returns once the
    /// request is delivered; the guest decides whether and when to stop,
    /// and the end is reported as [`Event::GuestStopped`].
    pub fn request_stop(&self) -> Result<()> {
        // SAFETY: the handle is live while `self` is; the out-parameter goes
        // to the bridge as it is.
        unsafe { bridge_call(|err| sys::vmz_request_stop(self.handle.as_ptr(), err).then_some(())) }
    }

    /// Stops the VM at once (the guest gets no say) and waits until it has
    /// stopped.
    pub fn force_stop(&self) -> Result<()> {
        events::check_may_block("Machine::force_stop")?;
        let ctx = Arc::into_raw(self.shared.clone()) as *mut c_void;
        // SAFETY: the handle is live; the out-parameter goes to the bridge
        // as it is. On success the bridge calls `force_stop_completion`
        // exactly once with `ctx`, which frees it.
        let result = unsafe {
            bridge_call(|err| {
                sys::vmz_force_stop(
                    self.handle.as_ptr(),
                    Some(events::force_stop_completion),
                    ctx,
                    err,
                )
                .then_some(())
            })
        };
        if let Err(e) = result {
            // SAFETY: the bridge did not take `ctx`.
            drop(unsafe { Arc::from_raw(ctx as *const Shared) });
            return Err(e);
        }
        drop(self.shared.wait_until(None, |p| matches!(p, Phase::Ended)));
        Ok(())
    }

    /// Stops the VM the polite way first: asks the guest (as
    /// [`request_stop`](Machine::request_stop)), waits up to `grace` for it
    /// to stop, then forces the stop. Returns how the VM ended
    /// ([`Exit::GuestStopped`] if the guest complied in time,
    /// [`Exit::ForceStopped`] otherwise). A VM that already ended returns
    /// its exit at once.
    ///
    /// ```no_run
    /// # fn demo(vm: &vmz::Machine) -> vmz::Result<()> {
    /// let exit = vm.stop(std::time::Duration::from_secs(5))?;
    /// # Ok(()) }
    /// ```
    pub fn stop(&self, grace: Duration) -> Result<Exit> {
        events::check_may_block("Machine::stop")?;
        if let Some(exit) = self.exit() {
            return Ok(exit);
        }
        if let Err(e) = self.request_stop() {
            // Not running (yet, or any more): it may have just ended.
            if let Some(exit) = self.exit() {
                return Ok(exit);
            }
            log::debug!("graceful stop not possible ({e}); forcing");
        } else if let Some(exit) = self.wait_timeout(grace) {
            return Ok(exit);
        } else {
            log::info!("the guest did not stop within {grace:?}; forcing");
        }
        match self.force_stop() {
            Ok(()) => {}
            // It ended between the request and the force.
            Err(e) if self.exit().is_some() => log::debug!("force stop: {e}"),
            Err(e) => return Err(e),
        }
        Ok(self.wait())
    }

    /// Blocks until the VM has ended and says how. Returns at once if it
    /// already has. Do not call it before [`start`](Machine::start): a VM
    /// that never starts never ends.
    pub fn wait(&self) -> Exit {
        if let Err(e) = events::check_may_block("Machine::wait") {
            return Exit::Error(e);
        }
        drop(self.shared.wait_until(None, |p| matches!(p, Phase::Ended)));
        self.shared
            .exit()
            .expect("the exit is recorded before the phase ends")
    }

    /// Like [`wait`](Machine::wait), for at most `timeout`; `None` if the
    /// VM still runs.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Exit> {
        if let Err(e) = events::check_may_block("Machine::wait_timeout") {
            return Some(Exit::Error(e));
        }
        let ended = matches!(
            *self
                .shared
                .wait_until(Some(timeout), |p| matches!(p, Phase::Ended)),
            Phase::Ended
        );
        if ended {
            self.shared.exit()
        } else {
            None
        }
    }

    /// How the VM ended, if it has. Set before the event handler sees the
    /// end event.
    pub fn exit(&self) -> Option<Exit> {
        self.shared.exit()
    }

    /// The bridge's handle, for device code in other modules (vsock).
    pub(crate) fn raw_handle(&self) -> *mut sys::VMZMachine {
        self.handle.as_ptr()
    }

    /// The VM's current state, from the bridge.
    pub fn state(&self) -> State {
        // SAFETY: the handle is live while `self` is.
        match unsafe { sys::vmz_get_state(self.handle.as_ptr()) } {
            sys::VMZ_STATE_CREATED => State::Created,
            sys::VMZ_STATE_STARTING => State::Starting,
            sys::VMZ_STATE_RUNNING => State::Running,
            sys::VMZ_STATE_STOPPING => State::Stopping,
            sys::VMZ_STATE_STOPPED => State::Stopped,
            _ => State::Error,
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        log::debug!("releasing VM ({:?})", self.state());
        // SAFETY: we own the handle and release it once. The bridge stops
        // the VM, waits for it (unless called from this VM's own callback),
        // and calls no callback of ours after this returns.
        unsafe { sys::vmz_release(self.handle.as_ptr()) }
    }
}
