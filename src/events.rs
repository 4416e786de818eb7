//! Events from the bridge, and the C callbacks that deliver them.
//!
//! The bridge calls the trampolines below on the VM's own serial queue. Each
//! trampoline holds its own reference to the machine's shared status for as
//! long as it runs (the `Machine` may be dropped inside the handler, and the
//! bridge's reference released right after), turns the C arguments into
//! owned Rust values, updates the status, and runs the user's handler
//! inside `catch_unwind`: a panic in user code is logged and never unwinds
//! into the bridge.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use crate::error::{BridgeError, Error, Result};
use crate::exit::Exit;
use crate::machine::State;
use crate::sys;

/// Something that happened to a VM. Delivered, in order, to the handler
/// given to [`Machine::with_event_handler`](crate::Machine::with_event_handler)
/// (or to an [`EventStream`](crate::EventStream)), on a thread of the
/// bridge (the VM's queue), never concurrently for one VM.
///
/// A started VM's events are its states, each once and in order
/// (`State(Starting)`, `State(Running)`, ... see [`State`] for the
/// diagram), and last of all exactly one [`Ended`](Event::Ended), however
/// the life ended: a failed start, the guest, an error, a force stop, or
/// dropping the running [`Machine`](crate::Machine). The handler sees each
/// event before the blocking calls and futures that wait for it
/// ([`Machine::start`](crate::Machine::start),
/// [`Machine::wait`](crate::Machine::wait), ...) return.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The VM entered this state. [`Machine::state`](crate::Machine::state)
    /// agrees with the last one delivered.
    State(State),
    /// The VM's life ended, and how; the last event of the VM.
    Ended(Exit),
    /// A network device's host side went away; the VM keeps running
    /// (macOS engine; `device` counts the VM's network devices from 0).
    NetworkDisconnected {
        /// Which network device.
        device: u32,
        /// What the engine said.
        error: Error,
    },
}

pub(crate) type Handler = Box<dyn FnMut(Event) + Send>;

/// What waiters wait for; changed under one lock, with the wakers of the
/// futures waiting on it.
#[derive(Default)]
pub(crate) struct Status {
    /// The answer of `vmz_start`, once it came.
    pub(crate) started: Option<Result<()>>,
    /// How the VM ended, recorded before the handler sees the end event,
    /// so that the handler (and anyone it tells) finds `Machine::exit` set.
    pub(crate) exit: Option<Exit>,
    wakers: Vec<Waker>,
}

impl Status {
    /// Wakes `waker` at the next change.
    pub(crate) fn wake_on_change(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|w| w.will_wake(waker)) {
            self.wakers.push(waker.clone());
        }
    }
}

/// What a machine and its callbacks share. Lives until both the `Machine`
/// and the bridge's reference (released by `release_context`) are gone.
pub(crate) struct Shared {
    status: Mutex<Status>,
    handler: Mutex<Option<Handler>>,
    /// Events waiting for the handler: an event raised while the handler
    /// runs (a bridge call made from inside it) is delivered after it
    /// returns, never by re-entering it.
    pending: Mutex<VecDeque<Event>>,
    delivering: AtomicBool,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new(handler: Option<Handler>) -> Arc<Shared> {
        Arc::new(Shared {
            status: Mutex::new(Status::default()),
            handler: Mutex::new(handler),
            pending: Mutex::new(VecDeque::new()),
            delivering: AtomicBool::new(false),
        })
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    /// Changes the status and wakes every waiter.
    fn update(&self, change: impl FnOnce(&mut Status)) {
        let wakers = {
            let mut status = self.status();
            change(&mut status);
            std::mem::take(&mut status.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Records the answer of `vmz_start` (the first one counts).
    fn set_started(&self, result: Result<()>) {
        self.update(|s| {
            s.started.get_or_insert(result);
        });
    }

    /// Records how the VM ended (the first end is the end), tells the
    /// handler, then releases the waiters.
    fn end(&self, exit: Exit) {
        {
            let mut status = self.status();
            if status.exit.is_none() {
                status.exit = Some(exit.clone());
            }
        }
        self.emit(Event::Ended(exit));
        self.update(|s| {
            if s.started.is_none() {
                s.started = Some(match &s.exit {
                    Some(Exit::StartFailed(e)) => Err(e.clone()),
                    _ => Ok(()),
                });
            }
        });
    }

    /// How the VM ended, once the end is known.
    pub(crate) fn exit(&self) -> Option<Exit> {
        self.status().exit.clone()
    }

    /// Runs the user's handler, if any, on `event` and on every event raised
    /// while it runs, in order, containing panics.
    pub(crate) fn emit(&self, event: Event) {
        log::debug!("event: {event:?}");
        lock(&self.pending).push_back(event);
        // Only the bridge's queue emits, one callback at a time: the flag is
        // set here only when this thread is already inside the handler.
        if self.delivering.swap(true, Ordering::AcqRel) {
            return;
        }
        loop {
            let next = lock(&self.pending).pop_front();
            let Some(event) = next else { break };
            let mut handler = lock(&self.handler);
            if let Some(h) = handler.as_mut() {
                if catch_unwind(AssertUnwindSafe(|| h(event))).is_err() {
                    log::error!("a vmz event handler panicked; the panic was contained");
                }
            }
        }
        self.delivering.store(false, Ordering::Release);
    }
}

/// Runs a trampoline body with the callback flag set, containing panics
/// (of this crate's own code too: nothing may unwind into C).
pub(crate) fn guarded(what: &str, body: impl FnOnce()) {
    let outer = IN_CALLBACK.with(|c| c.replace(true));
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log::error!("panic in vmz callback {what}; contained");
    }
    IN_CALLBACK.with(|c| c.set(outer));
}

/// A reference of the trampoline's own to the shared status, so that it
/// outlives a `release_context` (and the `Machine`'s drop) that happen
/// while the trampoline runs.
///
/// # Safety
/// `ctx` must come from [`callbacks`] and not have been released.
unsafe fn shared_of(ctx: *mut c_void) -> Arc<Shared> {
    let ptr = ctx as *const Shared;
    // SAFETY: `ctx` is `Arc::into_raw` of a `Shared` whose bridge reference
    // is alive until `release_context`, which the bridge calls after every
    // other callback; we add a reference of our own and take it.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

unsafe extern "C" fn did_end(
    ctx: *mut c_void,
    reason: sys::VMZEndReason,
    signal: i32,
    error: sys::VMZErrorRef,
) {
    // SAFETY: the bridge hands us ownership of `error` (taken outside the
    // guard, so that a panic cannot leak it) and passes back our context.
    let (shared, error) = unsafe { (shared_of(ctx), BridgeError::from_raw(error)) };
    guarded("did_end", move || {
        if let Some(e) = &error {
            log::info!("VM ended: {e}");
        }
        shared.end(Exit::from_raw(reason, signal, error));
    });
}

unsafe extern "C" fn state_did_change(ctx: *mut c_void, state: sys::VMZState) {
    // SAFETY: as in `did_end`.
    let shared = unsafe { shared_of(ctx) };
    guarded("state_did_change", move || {
        shared.emit(Event::State(State::from_raw(state)));
    });
}

unsafe extern "C" fn network_did_disconnect(
    ctx: *mut c_void,
    device: u32,
    error: sys::VMZErrorRef,
) {
    // SAFETY: as in `did_end`.
    let (shared, error) = unsafe { (shared_of(ctx), BridgeError::from_raw(error)) };
    guarded("network_did_disconnect", move || {
        let error = Error::Bridge(error.expect("network_did_disconnect without an error"));
        shared.emit(Event::NetworkDisconnected { device, error });
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
/// `shared` until it calls `release_context`. The ABI 1 end callbacks are
/// left out: `did_end` reports every end.
pub(crate) fn callbacks(shared: &Arc<Shared>) -> sys::VMZCallbacks {
    sys::VMZCallbacks {
        struct_size: std::mem::size_of::<sys::VMZCallbacks>() as u32,
        context: Arc::into_raw(shared.clone()) as *mut c_void,
        guest_did_stop: None,
        did_stop_with_error: None,
        release_context: Some(release_context),
        did_end: Some(did_end),
        state_did_change: Some(state_did_change),
        network_did_disconnect: Some(network_did_disconnect),
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
            None => Ok(()),
            Some(e) => Err(Error::Bridge(e)),
        };
        shared.set_started(result.clone());
        if let Some(then) = then {
            then(result);
        }
    });
}
