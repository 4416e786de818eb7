//! Waiting for a VM, asynchronously or not, with one implementation: the
//! futures below are woken by the bridge's callbacks (no thread, no
//! runtime), and the blocking calls run the same futures with
//! [`block_on`], which parks the calling thread.

use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use crate::error::{BridgeError, Error, Result};
use crate::events::{Shared, Status};
use crate::exit::Exit;
use crate::sys;

/// Resolves when the VM's start has been answered: `Ok` once it runs, or
/// the start's error. Returned by [`Machine::start_async`](crate::Machine::start_async).
#[derive(Clone)]
#[must_use = "futures do nothing unless polled"]
pub struct Started {
    shared: Arc<Shared>,
    /// The call itself failed (nothing was started).
    refused: Option<Error>,
}

impl Started {
    pub(crate) fn new(shared: Arc<Shared>, refused: Option<Error>) -> Started {
        Started { shared, refused }
    }
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

impl Future for Started {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = self.refused.take() {
            return Poll::Ready(Err(e));
        }
        poll_status(&self.shared, cx, |s| s.started.clone())
    }
}

/// Resolves to how the VM ended, once it has. Returned by
/// [`Machine::ended`](crate::Machine::ended) and
/// [`Machine::stop_async`](crate::Machine::stop_async). Holds no
/// reference to the [`Machine`](crate::Machine): it may outlive it (a VM
/// dropped while running ends [`ForceStopped`](Exit::ForceStopped)).
#[derive(Clone)]
#[must_use = "futures do nothing unless polled"]
pub struct Ended {
    shared: Arc<Shared>,
    refused: Option<Error>,
}

impl Ended {
    pub(crate) fn new(shared: Arc<Shared>, refused: Option<Error>) -> Ended {
        Ended { shared, refused }
    }
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ended").finish_non_exhaustive()
    }
}

impl Future for Ended {
    type Output = Result<Exit>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Exit>> {
        if let Some(e) = self.refused.take() {
            return Poll::Ready(Err(e));
        }
        poll_status(&self.shared, cx, |s| s.exit.clone().map(Ok))
    }
}

/// Ready when `ready` finds a value in the status; otherwise registers the
/// task's waker under the same lock (no change can slip in between).
fn poll_status<T>(
    shared: &Shared,
    cx: &mut Context<'_>,
    ready: impl Fn(&Status) -> Option<T>,
) -> Poll<T> {
    let mut status = shared.status();
    match ready(&status) {
        Some(v) => Poll::Ready(v),
        None => {
            status.wake_on_change(cx.waker());
            Poll::Pending
        }
    }
}

/// The answer to one bridge operation with a completion callback
/// (`vmz_pause`, `vmz_resume`): resolves when the bridge calls it.
#[must_use = "futures do nothing unless polled"]
pub struct Completion {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    result: Option<Result<()>>,
    waker: Option<Waker>,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

impl Completion {
    /// Calls `op` with the C completion and its context; an error returned
    /// by the call itself resolves the future at once.
    pub(crate) fn call(
        op: impl FnOnce(sys::VMZCompletionCallback, *mut c_void) -> Result<()>,
    ) -> Completion {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let ctx = Arc::into_raw(slot.clone()) as *mut c_void;
        if let Err(e) = op(Some(complete), ctx) {
            // SAFETY: the bridge refused the call and did not take `ctx`.
            drop(unsafe { Arc::from_raw(ctx as *const Mutex<Slot>) });
            slot.lock().unwrap_or_else(|p| p.into_inner()).result = Some(Err(e));
        }
        Completion { slot }
    }
}

/// The C completion: `ctx` is `Arc::into_raw` of a `Mutex<Slot>`.
unsafe extern "C" fn complete(ctx: *mut c_void, error: sys::VMZErrorRef) {
    // SAFETY: the bridge calls this exactly once with our context, and
    // hands us `error` (maybe NULL).
    let (slot, error) = unsafe {
        (
            Arc::from_raw(ctx as *const Mutex<Slot>),
            BridgeError::from_raw(error),
        )
    };
    let waker = {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        s.result = Some(error.map_or(Ok(()), |e| Err(Error::Bridge(e))));
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

impl Future for Completion {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` on this thread until it resolves or `deadline` passes
/// (then `None`).
pub(crate) fn block_on<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return Some(v);
        }
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                std::thread::park_timeout(left);
            }
        }
    }
}
