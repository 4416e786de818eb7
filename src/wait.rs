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

/// The one answer to a bridge call with a callback, shared by the future
/// that waits for it and the trampoline that fills it (the bridge holds
/// one `Arc` reference, `Arc::into_raw`, until its callback). A future
/// dropped before the answer leaves the value to be dropped here (a
/// descriptor closed) when the bridge's reference goes.
pub(crate) struct Answer<T> {
    inner: Mutex<AnswerState<T>>,
}

struct AnswerState<T> {
    result: Option<Result<T>>,
    waker: Option<Waker>,
}

impl<T> Answer<T> {
    pub(crate) fn new() -> Arc<Answer<T>> {
        Arc::new(Answer {
            inner: Mutex::new(AnswerState {
                result: None,
                waker: None,
            }),
        })
    }

    /// Stores the answer and wakes the waiting task, if any.
    pub(crate) fn fill(&self, result: Result<T>) {
        let waker = {
            let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            s.result = Some(result);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The answer, once; else registers the task's waker.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Calls `op` with a context for the bridge (one reference); when the
    /// call itself fails, the bridge did not take it, and the error is
    /// the answer.
    pub(crate) fn call(self: &Arc<Self>, op: impl FnOnce(*mut c_void) -> Result<()>) {
        let ctx = Arc::into_raw(self.clone()) as *mut c_void;
        if let Err(e) = op(ctx) {
            // SAFETY: the bridge refused the call and did not take `ctx`.
            drop(unsafe { Arc::from_raw(ctx as *const Answer<T>) });
            self.fill(Err(e));
        }
    }

    /// In a trampoline: takes back the bridge's reference.
    ///
    /// # Safety
    /// `ctx` must come from [`call`](Answer::call) on an `Answer<T>`, and
    /// the bridge calls back once per call.
    pub(crate) unsafe fn from_context(ctx: *mut c_void) -> Arc<Answer<T>> {
        // SAFETY: as the caller promises.
        unsafe { Arc::from_raw(ctx as *const Answer<T>) }
    }
}

/// The answer to one bridge operation with a completion callback
/// (`vmz_pause`, `vmz_resume`): resolves when the bridge calls it.
#[must_use = "futures do nothing unless polled"]
pub struct Completion {
    answer: Arc<Answer<()>>,
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
        let answer = Answer::new();
        answer.call(|ctx| op(Some(complete), ctx));
        Completion { answer }
    }
}

/// The C completion: `ctx` is an `Answer<()>` of [`Completion::call`].
unsafe extern "C" fn complete(ctx: *mut c_void, error: sys::VMZErrorRef) {
    // SAFETY: the bridge calls this exactly once with our context, and
    // hands us `error` (maybe NULL).
    let (answer, error) = unsafe {
        (
            Answer::<()>::from_context(ctx),
            BridgeError::from_raw(error),
        )
    };
    crate::events::guarded("completion", || {
        answer.fill(error.map_or(Ok(()), |e| Err(Error::Bridge(e))))
    });
}

impl Future for Completion {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.answer.poll_take(cx)
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
