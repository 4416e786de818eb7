//! vsock: stream connections between the host and the guest, without a
//! network. Enable the device with
//! [`ConfigBuilder::vsock`](crate::ConfigBuilder::vsock); then the host
//! connects to the guest's ports with [`Machine::vsock_connect`] and accepts
//! the guest's connections with [`Machine::vsock_listen`]. Both hand out a
//! [`VsockStream`]: a connected stream socket, blocking by default, with its
//! raw descriptor for async runtimes (set it non-blocking and register it,
//! e.g. with tokio's `AsyncFd` or `UnixStream::from_std`).
//! [`Machine::vsock_connect_async`] connects without blocking: a future
//! woken by the bridge (no thread, no runtime of its own), for any
//! executor; the blocking [`Machine::vsock_connect`] runs the same future.
//!
//! On Linux the device is the kernel's vhost-vsock where `/dev/vhost-vsock`
//! is usable, else the user-space `vhost-device-vsock` daemon (one per VM,
//! never outliving this process); on macOS Virtualization.framework's
//! virtio socket device.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{bridge_call, BridgeError, Error, Result};
use crate::wait::{block_on, Answer};
use crate::{sys, Machine};

/// A connected vsock stream (host side). Reads and writes block unless
/// [`set_nonblocking`](VsockStream::set_nonblocking) is set.
#[derive(Debug)]
pub struct VsockStream {
    inner: UnixStream,
    port: u32,
}

impl VsockStream {
    fn from_fd(fd: OwnedFd, port: u32) -> VsockStream {
        // Any stream socket: the Linux backends hand out Unix or vsock
        // sockets, macOS its own; only read/write/shutdown are used.
        VsockStream {
            inner: UnixStream::from(fd),
            port,
        }
    }

    /// The vsock port: the guest's for [`Machine::vsock_connect`], the
    /// host's for [`Machine::vsock_listen`].
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Makes reads and writes non-blocking (for async runtimes).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// Bounds every read (None: block).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    /// Bounds every write (None: block).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// Shuts down reading, writing or both (the guest reads end-of-file
    /// after `Shutdown::Write`). On Linux with the user-space backend
    /// (`vhost-device-vsock`), `Shutdown::Write` closes the whole
    /// connection: the guest's answer after it never arrives (README,
    /// "vsock").
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// A second handle on the same connection (e.g. one thread reads, one
    /// writes).
    pub fn try_clone(&self) -> io::Result<VsockStream> {
        Ok(VsockStream {
            inner: self.inner.try_clone()?,
            port: self.port,
        })
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for &VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.inner).read(buf)
    }
}

impl Write for &VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.inner).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for VsockStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for VsockStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl IntoRawFd for VsockStream {
    fn into_raw_fd(self) -> RawFd {
        self.inner.into_raw_fd()
    }
}

impl From<VsockStream> for OwnedFd {
    fn from(s: VsockStream) -> OwnedFd {
        s.inner.into()
    }
}

/// Accepts the guest's connections to one port of the host, until dropped.
/// Borrows its [`Machine`]. Blocking ([`accept`](VsockListener::accept))
/// or not ([`accept_async`](VsockListener::accept_async)): one
/// implementation, a future woken by the bridge.
#[derive(Debug)]
pub struct VsockListener<'m> {
    machine: &'m Machine,
    port: u32,
    /// Connections not yet accepted; the bridge holds one reference (its
    /// context) until it stopped listening.
    backlog: Arc<Mutex<Backlog>>,
}

/// The guest's connections waiting for `accept`, and who waits for them.
#[derive(Debug, Default)]
struct Backlog {
    connections: VecDeque<OwnedFd>,
    waker: Option<Waker>,
}

fn lock(backlog: &Mutex<Backlog>) -> MutexGuard<'_, Backlog> {
    backlog.lock().unwrap_or_else(|p| p.into_inner())
}

impl VsockListener<'_> {
    /// The host's port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Waits for the guest's next connection. Fails with
    /// [`ErrorCode::InvalidState`](crate::ErrorCode::InvalidState) once
    /// the VM has ended (connections accepted before are still returned).
    pub fn accept(&self) -> Result<VsockStream> {
        Ok(self
            .accept_until(None)?
            .expect("no deadline, so no timeout"))
    }

    /// Like [`accept`](VsockListener::accept), giving up after `timeout`
    /// with `Ok(None)`.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Option<VsockStream>> {
        self.accept_until(Some(Instant::now() + timeout))
    }

    fn accept_until(&self, deadline: Option<Instant>) -> Result<Option<VsockStream>> {
        crate::events::check_may_block("VsockListener::accept")?;
        block_on(self.accept_async(), deadline).transpose()
    }

    /// The guest's next connection, without blocking: resolves like
    /// [`accept`](VsockListener::accept). Woken by the bridge (a
    /// connection, or the VM's end), from any executor. Dropping it
    /// loses nothing: a connection that arrives stays for the next
    /// accept.
    ///
    /// ```no_run
    /// # async fn f(vm: &vmz::Machine) -> vmz::Result<()> {
    /// use std::io::Read;
    /// let listener = vm.vsock_listen(9000)?;
    /// let mut stream = listener.accept_async().await?;
    /// let mut text = String::new();
    /// stream.read_to_string(&mut text).expect("read");
    /// # Ok(()) }
    /// ```
    pub fn accept_async(&self) -> VsockAccept<'_> {
        VsockAccept { listener: self }
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<VsockStream>> {
        // The end is looked at first, the backlog after: a connection
        // handed over before the end is still returned.
        let ended = {
            let mut status = self.machine.shared().status();
            let ended = status.exit.is_some();
            if !ended {
                status.wake_on_change(cx.waker());
            }
            ended
        };
        let mut backlog = lock(&self.backlog);
        if let Some(fd) = backlog.connections.pop_front() {
            return Poll::Ready(Ok(VsockStream::from_fd(fd, self.port)));
        }
        if ended {
            return Poll::Ready(Err(Error::VsockEnded(self.port)));
        }
        backlog.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The future of [`VsockListener::accept_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct VsockAccept<'a> {
    listener: &'a VsockListener<'a>,
}

impl Future for VsockAccept<'_> {
    type Output = Result<VsockStream>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<VsockStream>> {
        self.listener.poll_accept(cx)
    }
}

impl Drop for VsockListener<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle is live (the listener borrows the machine);
        // when the call returns no callback uses the context any more;
        // the out-parameter goes to the bridge as it is. If the VM ended,
        // the bridge no longer listens and says so: only logged.
        let stopped = unsafe {
            bridge_call(|err| {
                sys::vmz_vsock_stop_listening(self.machine.raw_handle(), self.port, err)
                    .then_some(())
            })
        };
        if let Err(e) = stopped {
            log::debug!("vsock port {}: {e}", self.port);
        }
        // SAFETY: the bridge's reference, made by Arc::into_raw in
        // vsock_listen; the bridge no longer uses it (above).
        drop(unsafe { Arc::from_raw(Arc::as_ptr(&self.backlog)) });
    }
}

/// The bridge's accept callback: hands the descriptor to the listener.
unsafe extern "C" fn on_accept(context: *mut c_void, _port: u32, fd: i32) {
    // SAFETY: the bridge passes a descriptor the receiver owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `context` is the bridge's reference to the listener's
    // backlog, alive until it stopped listening (Drop), which waits for
    // this callback.
    let backlog = unsafe { &*(context as *const Mutex<Backlog>) };
    crate::events::guarded("vsock accept", || {
        let waker = {
            let mut b = lock(backlog);
            b.connections.push_back(fd);
            b.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
}

/// Resolves to a connection to a port of the guest. Returned by
/// [`Machine::vsock_connect_async`]; holds no reference to the
/// [`Machine`]. Dropping it before it resolves cancels nothing in the
/// guest, but the connection, if one is made, is closed (nothing leaks).
#[must_use = "futures do nothing unless polled"]
pub struct VsockConnect {
    port: u32,
    answer: Arc<Answer<OwnedFd>>,
}

impl std::fmt::Debug for VsockConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsockConnect")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Future for VsockConnect {
    type Output = Result<VsockStream>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<VsockStream>> {
        let port = self.port;
        self.answer
            .poll_take(cx)
            .map(|r| r.map(|fd| VsockStream::from_fd(fd, port)))
    }
}

/// The bridge's connect callback: `context` is an `Answer<OwnedFd>`.
unsafe extern "C" fn on_connected(context: *mut c_void, fd: i32, error: sys::VMZErrorRef) {
    // SAFETY: the bridge calls this exactly once per accepted call, with
    // the context of `vsock_connect_async_timeout`; it hands us `error`
    // (NULL on success) and, on success, a descriptor (>= 0) we own.
    let (answer, result) = unsafe {
        (
            Answer::<OwnedFd>::from_context(context),
            match BridgeError::from_raw(error) {
                Some(e) => Err(Error::Bridge(e)),
                None => Ok(OwnedFd::from_raw_fd(fd)),
            },
        )
    };
    crate::events::guarded("vsock connect", || answer.fill(result));
}

impl Machine {
    /// Connects to `port` of the guest without blocking: the future
    /// resolves to the stream, or to the same errors as
    /// [`vsock_connect`](Machine::vsock_connect) (the guest has 10 s to
    /// answer). It needs no runtime (the bridge wakes it), so it works from
    /// tokio, async-std, `pollster::block_on` or a hand-written executor.
    /// It borrows nothing (`'static`, `Send`: `tokio::spawn` takes it).
    /// Dropping it early closes the connection when it arrives.
    ///
    /// ```no_run
    /// # async fn f(vm: &vmz::Machine) -> vmz::Result<()> {
    /// use std::io::Write;
    /// let mut stream = vm.vsock_connect_async(1024).await?;
    /// stream.write_all(b"hello\n").expect("write");
    /// # Ok(()) }
    /// ```
    pub fn vsock_connect_async(&self, port: u32) -> VsockConnect {
        self.vsock_connect_async_timeout(port, Duration::ZERO)
    }

    /// Like [`vsock_connect_async`](Machine::vsock_connect_async), the
    /// guest having at most `timeout` to answer (zero: the default 10 s).
    pub fn vsock_connect_async_timeout(&self, port: u32, timeout: Duration) -> VsockConnect {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
        let answer = Answer::new();
        answer.call(|ctx| {
            // SAFETY: the handle is live while `self` is; `ctx` is one
            // reference that the bridge hands back to `on_connected`
            // exactly once if the call succeeds (never if it fails); the
            // out-parameter goes to the bridge as it is.
            unsafe {
                bridge_call(|err| {
                    sys::vmz_vsock_connect_async(
                        self.raw_handle(),
                        port,
                        ms,
                        Some(on_connected),
                        ctx,
                        err,
                    )
                    .then_some(())
                })
            }
        });
        VsockConnect { port, answer }
    }

    /// Connects to `port` of the guest (blocking, at most 10 s); the guest
    /// must listen there. Errors: [`ErrorCode::ConnectionRefused`] when
    /// nobody listens, [`ErrorCode::InvalidState`] when the VM is not
    /// running, [`ErrorCode::Device`] without a vsock device.
    ///
    /// [`ErrorCode::ConnectionRefused`]: crate::ErrorCode::ConnectionRefused
    /// [`ErrorCode::InvalidState`]: crate::ErrorCode::InvalidState
    /// [`ErrorCode::Device`]: crate::ErrorCode::Device
    ///
    /// ```no_run
    /// # fn f(vm: &vmz::Machine) -> vmz::Result<()> {
    /// use std::io::Write;
    /// let mut stream = vm.vsock_connect(1024)?;
    /// stream.write_all(b"hello\n").expect("write");
    /// # Ok(()) }
    /// ```
    pub fn vsock_connect(&self, port: u32) -> Result<VsockStream> {
        self.vsock_connect_timeout(port, Duration::ZERO)
    }

    /// Like [`vsock_connect`](Machine::vsock_connect), waiting at most
    /// `timeout` for the guest's answer (zero: the default 10 s).
    pub fn vsock_connect_timeout(&self, port: u32, timeout: Duration) -> Result<VsockStream> {
        crate::events::check_may_block("Machine::vsock_connect")?;
        // The bridge answers within the timeout (or at the VM's end, or
        // its release): no deadline of our own.
        block_on(self.vsock_connect_async_timeout(port, timeout), None)
            .expect("no deadline, so no timeout")
    }

    /// Listens on `port` of the host for the guest's connections (the guest
    /// connects to context id 2, the host). Works before the VM starts, so
    /// an early guest finds it. [`ErrorCode::PortInUse`] when this VM
    /// already listens there. Stops listening when the listener is dropped.
    ///
    /// [`ErrorCode::PortInUse`]: crate::ErrorCode::PortInUse
    ///
    /// ```no_run
    /// # fn f(vm: &vmz::Machine) -> vmz::Result<()> {
    /// use std::io::Read;
    /// let listener = vm.vsock_listen(9000)?;
    /// let mut stream = listener.accept()?;
    /// let mut text = String::new();
    /// stream.read_to_string(&mut text).expect("read");
    /// # Ok(()) }
    /// ```
    pub fn vsock_listen(&self, port: u32) -> Result<VsockListener<'_>> {
        let backlog = Arc::new(Mutex::new(Backlog::default()));
        let context = Arc::into_raw(backlog.clone());
        // SAFETY: the handle is live; `context` stays valid until the
        // listener's Drop stopped listening; `on_accept` matches the
        // callback type; the out-parameter goes to the bridge as it is.
        let listening = unsafe {
            bridge_call(|err| {
                sys::vmz_vsock_listen(
                    self.raw_handle(),
                    port,
                    Some(on_accept),
                    context as *mut c_void,
                    err,
                )
                .then_some(())
            })
        };
        if let Err(e) = listening {
            // SAFETY: the bridge refused, so it never uses `context`.
            drop(unsafe { Arc::from_raw(context) });
            return Err(e);
        }
        Ok(VsockListener {
            machine: self,
            port,
            backlog,
        })
    }
}
