//! Events from the bridge, and the C callbacks that deliver them.
//!
//! The bridge calls the trampolines below on the VM's own serial queue. Each
//! trampoline turns the C arguments into owned Rust values, updates the
//! machine's shared status, and runs the user's handler inside
//! `catch_unwind`: a panic in user code is logged and never unwinds into the
//! bridge.

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{BridgeError, Error, Result};
use crate::sys;

/// Something that happened to a VM. Delivered, in order, to the handler
/// given to [`Machine::with_event_handler`](crate::Machine::with_event_handler),
/// on a thread of the bridge (the VM's queue), never concurrently for one VM.
///
/// The handler sees each event before the blocking calls that wait for it
/// ([`Machine::start`](crate::Machine::start), [`Machine::wait`](crate::Machine::wait), ...)
/// return.
///
/// Every VM life ends with exactly one of [`StartFailed`](Event::StartFailed),
/// [`GuestStopped`](Event::GuestStopped),
/// [`StoppedWithError`](Event::StoppedWithError) or
/// [`ForceStopped`](Event::ForceStopped), except that a force stop while
/// starting reports `StartFailed` and then `ForceStopped`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The VM is running.
    Started,
    /// The VM could not start.
    StartFailed(Error),
    /// The guest stopped by itself: it powered off or rebooted, or honoured
    /// a graceful stop request.
    GuestStopped,
    /// The VM stopped because of an error (the engine died, the guest
    /// panicked where detectable, ...).
    StoppedWithError(Error),
    /// [`Machine::force_stop`](crate::Machine::force_stop) stopped the VM.
    ForceStopped,
}

/// How a VM life ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Exit {
    /// The guest stopped by itself (poweroff, reboot, honoured stop request).
    GuestStopped,
    /// The caller forced the stop.
    ForceStopped,
    /// The VM failed to start, or stopped because of an error.
    Error(Error),
}

impl Exit {
    /// True for [`Exit::GuestStopped`].
    pub fn is_guest_stop(&self) -> bool {
        matches!(self, Exit::GuestStopped)
    }
}

pub(crate) type Handler = Box<dyn FnMut(Event) + Send>;

/// Where the VM is, as the Rust side has seen it.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Created,
    Starting,
    Running,
    /// Ended; how is in `Shared::exit`.
    Ended,
}

/// What a machine and its callbacks share. Lives until both the `Machine`
/// and the bridge's reference (released by `release_context`) are gone.
pub(crate) struct Shared {
    /// What waiters see: changed after the handler has seen the event.
    phase: Mutex<Phase>,
    /// How the VM ended, recorded before the handler sees the end event, so
    /// that the handler (and anyone it tells) finds `Machine::exit` set.
    recorded: Mutex<Option<Exit>>,
    changed: Condvar,
    handler: Mutex<Option<Handler>>,
}

thread_local! {
    /// Set while this thread runs a vmz callback (it is the VM's queue).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Fails when called from inside a callback, where blocking deadlocks.
pub(crate) fn check_may_block(what: &'static str) -> Result<()> {
    if IN_CALLBACK.with(Cell::get) {
        Err(Error::CalledFromHandler(what))
    } else {
        Ok(())
    }
}

impl Shared {
    pub(crate) fn new(handler: Option<Handler>) -> Arc<Shared> {
        Arc::new(Shared {
            phase: Mutex::new(Phase::Created),
            recorded: Mutex::new(None),
            changed: Condvar::new(),
            handler: Mutex::new(handler),
        })
    }

    pub(crate) fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        let mut p = self.phase();
        // The first end is the end.
        if !matches!(*p, Phase::Ended) {
            *p = phase;
        }
        drop(p);
        self.changed.notify_all();
    }

    /// Records how the VM ended (the first end is the end), then tells the
    /// handler; waiters are released by the `set_phase` that follows.
    pub(crate) fn end(&self, exit: Exit, event: Event) {
        {
            let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            if recorded.is_none() {
                *recorded = Some(exit);
            }
        }
        self.emit(event);
        self.set_phase(Phase::Ended);
    }

    /// How the VM ended, once the end is known.
    pub(crate) fn exit(&self) -> Option<Exit> {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Blocks until `done` holds for the phase, or the timeout passes.
    pub(crate) fn wait_until(
        &self,
        timeout: Option<std::time::Duration>,
        done: impl Fn(&Phase) -> bool,
    ) -> MutexGuard<'_, Phase> {
        let guard = self.phase();
        match timeout {
            None => self
                .changed
                .wait_while(guard, |p| !done(p))
                .unwrap_or_else(|p| p.into_inner()),
            Some(t) => {
                self.changed
                    .wait_timeout_while(guard, t, |p| !done(p))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        }
    }

    /// Runs the user's handler, if any, containing panics.
    pub(crate) fn emit(&self, event: Event) {
        log::debug!("event: {event:?}");
        let mut handler = self.handler.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = handler.as_mut() {
            if catch_unwind(AssertUnwindSafe(|| h(event))).is_err() {
                log::error!("a vmz event handler panicked; the panic was contained");
            }
        }
    }
}

/// Runs a trampoline body with the callback flag set, containing panics
/// (of this crate's own code too: nothing may unwind into C).
fn guarded(what: &str, body: impl FnOnce()) {
    IN_CALLBACK.with(|c| c.set(true));
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log::error!("panic in vmz callback {what}; contained");
    }
    IN_CALLBACK.with(|c| c.set(false));
}

/// # Safety
/// `ctx` must come from [`callbacks`] and not have been released.
unsafe fn shared_ref<'a>(ctx: *mut c_void) -> &'a Shared {
    // SAFETY: `ctx` is `Arc::into_raw` of a `Shared`, kept alive until
    // `release_context`, which the bridge calls after every other callback.
    unsafe { &*(ctx as *const Shared) }
}

unsafe extern "C" fn guest_did_stop(ctx: *mut c_void) {
    guarded("guest_did_stop", || {
        // SAFETY: the bridge passes back the context from `callbacks`.
        let shared = unsafe { shared_ref(ctx) };
        shared.end(Exit::GuestStopped, Event::GuestStopped);
    });
}

unsafe extern "C" fn did_stop_with_error(ctx: *mut c_void, error: sys::VMZErrorRef) {
    // SAFETY: the bridge hands us ownership of `error` (outside the guard, so
    // that a panic cannot leak it).
    let error = unsafe { BridgeError::from_raw(error) };
    guarded("did_stop_with_error", || {
        // SAFETY: as in `guest_did_stop`.
        let shared = unsafe { shared_ref(ctx) };
        let error = Error::Bridge(error.expect("did_stop_with_error without an error"));
        shared.end(Exit::Error(error.clone()), Event::StoppedWithError(error));
    });
}

unsafe extern "C" fn release_context(ctx: *mut c_void) {
    guarded("release_context", || {
        // SAFETY: `ctx` is the `Arc::into_raw` of `callbacks`; the bridge
        // calls this exactly once, after the last callback.
        drop(unsafe { Arc::from_raw(ctx as *const Shared) });
    });
}

/// The VM-level callbacks for a machine; the bridge keeps one reference to
/// `shared` until it calls `release_context`.
pub(crate) fn callbacks(shared: &Arc<Shared>) -> sys::VMZCallbacks {
    sys::VMZCallbacks {
        struct_size: std::mem::size_of::<sys::VMZCallbacks>() as u32,
        context: Arc::into_raw(shared.clone()) as *mut c_void,
        guest_did_stop: Some(guest_did_stop),
        did_stop_with_error: Some(did_stop_with_error),
        release_context: Some(release_context),
    }
}

/// What a start completion needs: the shared status and an optional
/// callback of the caller's.
pub(crate) struct StartContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) then: Option<Box<dyn FnOnce(Result<()>) + Send>>,
}

/// The completion of `vmz_start`; `ctx` is a `Box<StartContext>`.
pub(crate) unsafe extern "C" fn start_completion(ctx: *mut c_void, error: sys::VMZErrorRef) {
    // SAFETY: `ctx` is `Box::into_raw` of a `StartContext` and the bridge
    // calls this exactly once; `error` (maybe NULL) is ours.
    let (context, error) = unsafe {
        (
            Box::from_raw(ctx as *mut StartContext),
            BridgeError::from_raw(error),
        )
    };
    guarded("start completion", move || {
        let StartContext { shared, then } = *context;
        let result = match error {
            None => {
                shared.emit(Event::Started);
                shared.set_phase(Phase::Running);
                Ok(())
            }
            Some(e) => {
                let e = Error::Bridge(e);
                shared.end(Exit::Error(e.clone()), Event::StartFailed(e.clone()));
                Err(e)
            }
        };
        if let Some(then) = then {
            then(result);
        }
    });
}

/// The completion of `vmz_force_stop`; `ctx` is `Arc::into_raw(shared)`.
pub(crate) unsafe extern "C" fn force_stop_completion(ctx: *mut c_void, error: sys::VMZErrorRef) {
    // SAFETY: the bridge calls this exactly once with the context we gave
    // and hands us `error` (maybe NULL).
    let (shared, error) = unsafe {
        (
            Arc::from_raw(ctx as *const Shared),
            BridgeError::from_raw(error),
        )
    };
    guarded("force-stop completion", move || match error {
        None => {
            shared.end(Exit::ForceStopped, Event::ForceStopped);
        }
        Some(e) => log::warn!("force stop did not complete: {e}"),
    });
}
