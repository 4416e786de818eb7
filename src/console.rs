//! The console device and extra named serial ports (virtio-console ports).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use crate::error::Result;
use crate::sys;

/// The device the guest's console is on (the descriptors of
/// [`ConfigBuilder::serial_input`](crate::ConfigBuilder::serial_input) and
/// [`serial_output`](crate::ConfigBuilder::serial_output)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ConsoleDevice {
    /// virtio-console, the guest's `hvc0` (`console=hvc0`) on both engines:
    /// 15-18 MB/s under QEMU's emulation. Needs the guest's
    /// `virtio_console` driver; nothing is printed before it loads.
    #[default]
    Virtio,
    /// The 8250 UART, the guest's `ttyS0` (`console=ttyS0`), Linux only:
    /// about 0.5 MB/s under emulation, but it prints from the kernel's first
    /// message on (early boot, panics before modules load).
    Serial,
}

impl ConsoleDevice {
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            ConsoleDevice::Virtio => sys::VMZ_CONSOLE_VIRTIO,
            ConsoleDevice::Serial => sys::VMZ_CONSOLE_SERIAL,
        }
    }
}

/// A named virtio-console port: a byte channel to the guest that is not its
/// console. Added with
/// [`ConfigBuilder::serial_port`](crate::ConfigBuilder::serial_port).
#[derive(Debug, Clone)]
pub(crate) struct SerialPort {
    pub(crate) name: String,
    pub(crate) socket: Arc<OwnedFd>,
}

/// The C views of some ports, valid while this value lives.
pub(crate) struct RawPorts {
    _names: Vec<CString>,
    pub(crate) ports: Vec<sys::VMZSerialPort>,
}

impl RawPorts {
    pub(crate) fn new(ports: &[SerialPort]) -> Result<RawPorts> {
        let names = ports
            .iter()
            .map(|p| crate::config::cstring("serial port name", p.name.as_bytes()))
            .collect::<Result<Vec<_>>>()?;
        let raw = ports
            .iter()
            .zip(&names)
            .map(|(p, name)| sys::VMZSerialPort {
                struct_size: std::mem::size_of::<sys::VMZSerialPort>() as u32,
                name: name.as_ptr(),
                fd: p.socket.as_raw_fd(),
            })
            .collect();
        Ok(RawPorts {
            _names: names,
            ports: raw,
        })
    }
}
