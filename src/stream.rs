//! A VM's events as an asynchronous stream.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::events::Event;

/// The events of one VM, received asynchronously (from any executor: it
/// is woken by the bridge's callbacks, with no thread or runtime of its
/// own). Made by [`Machine::with_event_stream`](crate::Machine::with_event_stream).
///
/// It yields every [`Event`] in order and ends (`None`) after
/// [`Event::Ended`], or when the machine is dropped without having
/// started. Unbounded: events wait here until received. It implements
/// [`futures_core::Stream`], so `StreamExt` and friends work on it too.
///
/// ```no_run
/// # async fn demo(config: vmz::Config) -> vmz::Result<()> {
/// let (vm, mut events) = vmz::Machine::with_event_stream(&config)?;
/// vm.start_async().await?;
/// while let Some(event) = events.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EventStream {
    queue: Arc<Mutex<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Event>,
    /// No more events will come.
    closed: bool,
    waker: Option<Waker>,
}

fn lock(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sending half, owned by the machine's handler: closes the stream
/// when dropped.
struct Sender(Arc<Mutex<Queue>>);

impl Sender {
    fn send(&self, event: Event) {
        let waker = {
            let mut q = lock(&self.0);
            if q.closed {
                return;
            }
            q.closed = matches!(event, Event::Ended(_));
            q.events.push_back(event);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut q = lock(&self.0);
            q.closed = true;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl EventStream {
    /// A stream and the handler that feeds it.
    pub(crate) fn new() -> (EventStream, impl FnMut(Event) + Send + 'static) {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let sender = Sender(queue.clone());
        (EventStream { queue }, move |e| sender.send(e))
    }

    /// The next event, or `None` once the stream has ended.
    pub fn recv(&mut self) -> Recv<'_> {
        Recv { stream: self }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        lock(&self.queue).events.pop_front()
    }

    fn poll_event(&self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut q = lock(&self.queue);
        if let Some(e) = q.events.pop_front() {
            return Poll::Ready(Some(e));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The future of [`EventStream::recv`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a> {
    stream: &'a mut EventStream,
}

impl Future for Recv<'_> {
    type Output = Option<Event>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.stream.poll_event(cx)
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.poll_event(cx)
    }
}
