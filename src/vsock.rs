//! vsock: stream connections between the host and the guest, without a
//! network. Enable the device with
//! [`ConfigBuilder::vsock`](crate::ConfigBuilder::vsock); then the host
//! connects to the guest's ports with [`Machine::vsock_connect`] and accepts
//! the guest's connections with [`Machine::vsock_listen`]. Both hand out a
//! [`VsockStream`]: a connected stream socket, blocking by default, with its
//! raw descriptor for async runtimes (set it non-blocking and register it,
//! e.g. with tokio's `AsyncFd` or `UnixStream::from_std`).
//!
//! On Linux the device is the kernel's vhost-vsock where `/dev/vhost-vsock`
//! is usable, else the user-space `vhost-device-vsock` daemon (one per VM,
//! never outliving this process); on macOS Virtualization.framework's
//! virtio socket device.

use std::ffi::c_void;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{bridge_call, Error, Result};
use crate::{sys, Machine, State};

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
    /// after `Shutdown::Write`).
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
/// Borrows its [`Machine`].
#[derive(Debug)]
pub struct VsockListener<'m> {
    machine: &'m Machine,
    port: u32,
    connections: mpsc::Receiver<OwnedFd>,
    /// The bridge's context: freed after the bridge stopped listening.
    context: *mut mpsc::Sender<OwnedFd>,
}

// SAFETY: `context` is only touched by the bridge (on the VM's queue) and
// by Drop after the bridge stopped using it; the receiver is Send.
unsafe impl Send for VsockListener<'_> {}

/// How often a blocked `accept` looks whether the VM has ended.
const STATE_POLL: Duration = Duration::from_millis(100);

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
        loop {
            let mut wait = STATE_POLL;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                wait = wait.min(left);
            }
            match self.connections.recv_timeout(wait) {
                Ok(fd) => return Ok(Some(VsockStream::from_fd(fd, self.port))),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("the sender lives in the context")
                }
            }
            if matches!(self.machine.state(), State::Stopped | State::Error) {
                if let Ok(fd) = self.connections.try_recv() {
                    return Ok(Some(VsockStream::from_fd(fd, self.port)));
                }
                return Err(Error::VsockEnded(self.port));
            }
        }
    }
}

impl Drop for VsockListener<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle is live (the listener borrows the machine);
        // when the call returns no callback uses `context` any more; the
        // out-parameter goes to the bridge as it is. If the VM ended, the
        // bridge no longer listens and says so: only logged.
        let stopped = unsafe {
            bridge_call(|err| {
                sys::vmz_vsock_stop_listening(self.machine.raw_handle(), self.port, err)
                    .then_some(())
            })
        };
        if let Err(e) = stopped {
            log::debug!("vsock port {}: {e}", self.port);
        }
        // SAFETY: made by Box::into_raw in vsock_listen; the bridge no
        // longer uses it (above).
        drop(unsafe { Box::from_raw(self.context) });
    }
}

/// The bridge's accept callback: hands the descriptor to the listener.
extern "C" fn on_accept(context: *mut c_void, _port: u32, fd: i32) {
    // SAFETY: the bridge passes a descriptor the receiver owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `context` is the listener's sender, alive until it stopped
    // listening (Drop), which waits for this callback.
    let sender = unsafe { &*(context as *const mpsc::Sender<OwnedFd>) };
    // A listener being dropped: the descriptor closes with the message.
    let _ = sender.send(fd);
}

impl Machine {
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
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
        // SAFETY: the handle is live while `self` is; the out-parameter
        // goes to the bridge as it is.
        let fd = unsafe {
            bridge_call(|err| {
                let fd = sys::vmz_vsock_connect(self.raw_handle(), port, ms, err);
                (fd >= 0).then_some(fd)
            })
        }?;
        // SAFETY: the bridge hands out a descriptor we own.
        Ok(VsockStream::from_fd(
            unsafe { OwnedFd::from_raw_fd(fd) },
            port,
        ))
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
        let (tx, rx) = mpsc::channel();
        let context = Box::into_raw(Box::new(tx));
        // SAFETY: the handle is live; `context` stays valid until the
        // listener's Drop stopped listening; `on_accept` matches the
        // callback type; the out-parameter goes to the bridge as it is.
        let listening = unsafe {
            bridge_call(|err| {
                sys::vmz_vsock_listen(
                    self.raw_handle(),
                    port,
                    Some(on_accept),
                    context.cast(),
                    err,
                )
                .then_some(())
            })
        };
        if let Err(e) = listening {
            // SAFETY: the bridge refused, so it never uses `context`.
            drop(unsafe { Box::from_raw(context) });
            return Err(e);
        }
        Ok(VsockListener {
            machine: self,
            port,
            connections: rx,
            context,
        })
    }
}
