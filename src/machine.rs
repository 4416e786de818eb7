//! The VM: an owned handle of the bridge.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{bridge_call, Result};
use crate::events::{self, Event, Shared, StartContext};
use crate::exit::Exit;
use crate::stream::EventStream;
use crate::sys;
use crate::wait::{block_on, Completion, Ended, Started};

/// The life cycle of a VM, as the bridge reports it.
///
/// ```text
///   Created ──start──▶ Starting ──▶ Running ──pause──▶ Pausing ──▶ Paused
///                         │           ▲  │                            │
///                         │           │  └───resume── Resuming ◀──────┘
///                         │           │
///                         │   (any active state) ──force_stop/drop──▶ Stopping
///                         ▼                                              │
///   Error ◀── start failed, guest panic, engine killed or failed         ▼
///   Stopped ◀── guest powered off or rebooted, ──────────────────── Stopped
///               or the caller's force stop
/// ```
///
/// `Stopped` and `Error` are final: a `Machine` runs one life. Every
/// transition reaches the event handler once, in order, as
/// [`Event::State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Created, not started.
    Created,
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// [`pause`](Machine::pause) was called; the vCPUs are being stopped.
    Pausing,
    /// Paused: the vCPUs are stopped, memory and devices kept.
    Paused,
    /// [`resume`](Machine::resume) was called; the vCPUs are restarting.
    Resuming,
    /// Being stopped (forced).
    Stopping,
    /// Ended in an orderly way (final): the guest powered off or rebooted,
    /// or the caller stopped it.
    Stopped,
    /// Ended because of an error, or failed to start (final).
    Error,
}

impl State {
    pub(crate) fn from_raw(raw: sys::VMZState) -> State {
        match raw {
            sys::VMZ_STATE_CREATED => State::Created,
            sys::VMZ_STATE_STARTING => State::Starting,
            sys::VMZ_STATE_RUNNING => State::Running,
            sys::VMZ_STATE_PAUSING => State::Pausing,
            sys::VMZ_STATE_PAUSED => State::Paused,
            sys::VMZ_STATE_RESUMING => State::Resuming,
            sys::VMZ_STATE_STOPPING => State::Stopping,
            sys::VMZ_STATE_STOPPED => State::Stopped,
            _ => State::Error,
        }
    }
}

/// A virtual machine, owned: dropping it stops the VM (at once, if it still
/// runs; the handler then gets [`Event::Ended`] with
/// [`Exit::ForceStopped`]), waits for the engine to finish, and releases the
/// bridge's handle. No event handler runs after `drop` returns.
///
/// A `Machine` runs one VM life: create, start, run (pause and resume),
/// stop. It is `Send` and `Sync`: every method takes `&self` and may be
/// called from any thread.
///
/// **From inside its own event handler** (which runs on the VM's queue)
/// everything that does not wait may be called: [`state`](Machine::state),
/// [`exit`](Machine::exit), [`request_stop`](Machine::request_stop), the
/// `*_async` methods (their futures resolve later; they may be dropped),
/// [`start_with`](Machine::start_with), and dropping the `Machine` itself
/// (it then returns at once; the VM is force-stopped and its
/// [`Event::Ended`] reaches the handler after the running call returns).
/// The blocking methods ([`start`](Machine::start), [`wait`](Machine::wait),
/// [`stop`](Machine::stop), [`force_stop`](Machine::force_stop),
/// [`pause`](Machine::pause), ...) would wait for the queue they run on:
/// they return [`Error::CalledFromHandler`](crate::Error::CalledFromHandler) instead.
///
/// No thread of yours needs to run a loop: the bridge runs each VM on its
/// own queue; the async API needs no runtime and no thread per VM.
///
/// ```no_run
/// use vmz::{Config, Event, Exit, Machine, State};
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
/// assert!(matches!(rx.recv().unwrap(), Event::State(State::Starting)));
/// assert!(matches!(rx.recv().unwrap(), Event::State(State::Running)));
/// let exit = vm.stop(std::time::Duration::from_secs(10))?;
/// println!("the VM ended: {exit}");
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
    /// [`wait`](Machine::wait), [`with_event_handler`](Machine::with_event_handler)
    /// or [`with_event_stream`](Machine::with_event_stream).
    pub fn new(config: &Config) -> Result<Machine> {
        Machine::create(config, None)
    }

    /// Like [`new`](Machine::new), with a handler that receives every
    /// [`Event`] of this VM, on a bridge thread (see [`Machine`] for what
    /// the handler may call). A panic in it is logged and contained. The
    /// handler is dropped after its last call, once the bridge lets go of
    /// the VM.
    pub fn with_event_handler<F>(config: &Config, handler: F) -> Result<Machine>
    where
        F: FnMut(Event) + Send + 'static,
    {
        Machine::create(config, Some(Box::new(handler)))
    }

    /// Like [`new`](Machine::new), with the VM's events delivered to an
    /// asynchronous [`EventStream`].
    pub fn with_event_stream(config: &Config) -> Result<(Machine, EventStream)> {
        let (stream, handler) = EventStream::new();
        Ok((Machine::with_event_handler(config, handler)?, stream))
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

    /// Starts the VM and waits until it runs (or failed to start: the
    /// error is then also the VM's [`Exit::StartFailed`]).
    pub fn start(&self) -> Result<()> {
        events::check_may_block("Machine::start")?;
        Machine::block(self.start_async())
    }

    /// Starts the VM; the future resolves once it runs (`Ok`) or failed to
    /// start. The start begins at this call, whether or not the future is
    /// polled. Needs no particular executor.
    pub fn start_async(&self) -> Started {
        Started::new(self.shared.clone(), self.begin_start(None).err())
    }

    /// Starts the VM without waiting; `done` runs on a bridge thread once it
    /// runs or failed to start (after the event handler has seen the
    /// state). Returns an error, and never calls `done`, when the VM cannot
    /// start now (for example it was started before).
    pub fn start_with<F>(&self, done: F) -> Result<()>
    where
        F: FnOnce(Result<()>) + Send + 'static,
    {
        self.begin_start(Some(Box::new(done)))
    }

    fn begin_start(&self, then: Option<Box<dyn FnOnce(Result<()>) + Send>>) -> Result<()> {
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
        }
        result
    }

    /// Asks the guest to stop (the ACPI power button). Returns once the
    /// request is delivered; the guest decides whether and when to stop,
    /// and the end is reported as [`Exit::PoweredOff`].
    pub fn request_stop(&self) -> Result<()> {
        // SAFETY: the handle is live while `self` is; the out-parameter goes
        // to the bridge as it is.
        unsafe { bridge_call(|err| sys::vmz_request_stop(self.handle.as_ptr(), err).then_some(())) }
    }

    /// Stops the VM at once (the guest gets no say) and waits until it has
    /// stopped. Its exit is then [`Exit::ForceStopped`] (or how it ended if
    /// it ended by itself first).
    pub fn force_stop(&self) -> Result<()> {
        events::check_may_block("Machine::force_stop")?;
        // SAFETY: the handle is live; the out-parameter goes to the bridge
        // as it is; no completion (the end is reported by `did_end`, which
        // `ended` waits for).
        unsafe {
            bridge_call(|err| {
                sys::vmz_force_stop(self.handle.as_ptr(), None, std::ptr::null_mut(), err)
                    .then_some(())
            })
        }?;
        Machine::block(self.ended()).map(drop)
    }

    /// Stops the VM the polite way first: asks the guest (as
    /// [`request_stop`](Machine::request_stop)), waits up to `grace` for it
    /// to stop, then forces the stop; a VM that cannot take the request
    /// (still starting, paused) is forced at once. Returns how the VM ended
    /// ([`Exit::PoweredOff`] if the guest complied in time,
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
        Machine::block(self.stop_async(grace))
    }

    /// [`stop`](Machine::stop) as a future: the stop begins at this call
    /// (the grace period is timed by the bridge, on the VM's queue), the
    /// future resolves to the VM's exit.
    pub fn stop_async(&self, grace: Duration) -> Ended {
        if self.exit().is_some() {
            return self.ended();
        }
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: the handle is live; the out-parameter goes to the bridge
        // as it is; no completion (the end is reported by `did_end`).
        let result = unsafe {
            bridge_call(|err| {
                sys::vmz_stop(
                    self.handle.as_ptr(),
                    grace_ms,
                    None,
                    std::ptr::null_mut(),
                    err,
                )
                .then_some(())
            })
        };
        match result {
            Ok(()) => self.ended(),
            // It ended between the check and the call.
            Err(_) if self.exit().is_some() => self.ended(),
            Err(e) => Ended::new(self.shared.clone(), Some(e)),
        }
    }

    /// Pauses the running VM (its vCPUs stop; memory, devices and console
    /// stay) and waits until it is [`State::Paused`].
    pub fn pause(&self) -> Result<()> {
        events::check_may_block("Machine::pause")?;
        Machine::block(self.pause_async())
    }

    /// [`pause`](Machine::pause) as a future (the pause begins at this call).
    pub fn pause_async(&self) -> Completion {
        self.call_with_completion(sys::vmz_pause)
    }

    /// Resumes the paused VM and waits until it runs again.
    pub fn resume(&self) -> Result<()> {
        events::check_may_block("Machine::resume")?;
        Machine::block(self.resume_async())
    }

    /// [`resume`](Machine::resume) as a future (the resume begins at this
    /// call).
    pub fn resume_async(&self) -> Completion {
        self.call_with_completion(sys::vmz_resume)
    }

    /// A bridge operation of the shape `op(handle, completion, context,
    /// error)`, as a future of its completion.
    fn call_with_completion(
        &self,
        op: unsafe extern "C" fn(
            sys::VMZHandle,
            sys::VMZCompletionCallback,
            *mut c_void,
            *mut sys::VMZErrorRef,
        ) -> bool,
    ) -> Completion {
        Completion::call(|cb, ctx| {
            // SAFETY: the handle is live while `self` is; the out-parameter
            // goes to the bridge as it is; on success the bridge calls `cb`
            // exactly once with `ctx`.
            unsafe { bridge_call(|err| op(self.handle.as_ptr(), cb, ctx, err).then_some(())) }
        })
    }

    /// Blocks until the VM has ended and says how. Returns at once if it
    /// already has. Do not call it before [`start`](Machine::start): a VM
    /// that never starts never ends. Fails only when called from inside
    /// the VM's own event handler ([`Error::CalledFromHandler`](crate::Error::CalledFromHandler)).
    pub fn wait(&self) -> Result<Exit> {
        events::check_may_block("Machine::wait")?;
        Machine::block(self.ended())
    }

    /// Like [`wait`](Machine::wait), for at most `timeout`; `Ok(None)` if
    /// the VM still runs.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<Exit>> {
        events::check_may_block("Machine::wait_timeout")?;
        block_on(self.ended(), Some(Instant::now() + timeout)).transpose()
    }

    /// A future of the VM's end: resolves to its [`Exit`] (at once if it
    /// has ended). It does not start or stop anything, and does not borrow
    /// the `Machine`.
    pub fn ended(&self) -> Ended {
        Ended::new(self.shared.clone(), None)
    }

    /// How the VM ended, if it has. Set before the event handler sees
    /// [`Event::Ended`].
    pub fn exit(&self) -> Option<Exit> {
        self.shared.exit()
    }

    /// What the machine shares with its callbacks (its end, for vsock).
    pub(crate) fn shared(&self) -> &crate::events::Shared {
        &self.shared
    }

    /// The bridge's handle, for device code in other modules (vsock).
    pub(crate) fn raw_handle(&self) -> *mut sys::VMZMachine {
        self.handle.as_ptr()
    }

    /// The VM's current state, from the bridge.
    pub fn state(&self) -> State {
        // SAFETY: the handle is live while `self` is.
        State::from_raw(unsafe { sys::vmz_get_state(self.handle.as_ptr()) })
    }

    fn block<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        block_on(future, None).expect("no deadline")
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        log::debug!("releasing VM ({:?})", self.state());
        // SAFETY: we own the handle and release it once. The bridge stops
        // the VM, waits for it (unless called from this VM's own callback:
        // then it finishes later on the VM's queue), and calls no callback
        // of ours after this returns, except in that case.
        unsafe { sys::vmz_release(self.handle.as_ptr()) }
    }
}
