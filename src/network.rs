//! Network devices beyond the default NAT: a caller-chosen MAC address,
//! host port forwards (Linux), and "bring your own network" over a
//! datagram socket.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use crate::config::cstring;
use crate::error::Result;
use crate::sys;

/// A port forward's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

#[derive(Debug, Clone)]
struct Forward {
    protocol: Protocol,
    host: Ipv4Addr,
    host_port: u16,
    guest_port: u16,
}

#[derive(Debug, Clone)]
enum Kind {
    Nat,
    Socket(Arc<OwnedFd>),
}

/// A virtio network device, added with
/// [`ConfigBuilder::network`](crate::ConfigBuilder::network). Adding one
/// replaces the default NAT device; the guest sees them in order (`eth0`,
/// `eth1`, ...).
///
/// ```no_run
/// use std::os::unix::net::UnixDatagram;
/// use vmz::{Network, Protocol};
/// let (mine, vms) = UnixDatagram::pair().expect("socketpair");
/// let config = vmz::Config::builder("target/vmz-guest/vmlinux")
///     .network(Network::nat().forward(Protocol::Tcp, 8080, 80)) // 127.0.0.1:8080 -> guest:80
///     .network(Network::socket(vms).mac("52:54:00:00:00:02"))   // frames on `mine`
///     .build()?;
/// # drop(mine);
/// # Ok::<(), vmz::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Network {
    kind: Kind,
    mac: Option<String>,
    forwards: Vec<Forward>,
}

impl Network {
    /// NAT to the host's network (QEMU user-mode networking on Linux,
    /// Virtualization.framework's NAT on macOS).
    pub fn nat() -> Network {
        Network {
            kind: Kind::Nat,
            mac: None,
            forwards: Vec::new(),
        }
    }

    /// Ethernet frames over a connected datagram socket, one frame per
    /// datagram (one end of `UnixDatagram::pair()`): a user-space network
    /// stack, a test harness or another VM at the other end.
    pub fn socket(socket: impl Into<OwnedFd>) -> Network {
        Network {
            kind: Kind::Socket(Arc::new(socket.into())),
            mac: None,
            forwards: Vec::new(),
        }
    }

    /// The device's MAC address, `"xx:xx:xx:xx:xx:xx"` (unicast); default:
    /// a random locally administered one for each VM (both engines).
    pub fn mac(mut self, mac: impl Into<String>) -> Network {
        self.mac = Some(mac.into());
        self
    }

    /// NAT only, Linux only: forwards `host_port` on 127.0.0.1 (this
    /// machine only) to `guest_port` on the guest's NAT address.
    pub fn forward(self, protocol: Protocol, host_port: u16, guest_port: u16) -> Network {
        self.forward_on(protocol, Ipv4Addr::LOCALHOST, host_port, guest_port)
    }

    /// Like [`forward`](Network::forward), listening on `host` (e.g.
    /// `0.0.0.0` to open the port to the network).
    pub fn forward_on(
        mut self,
        protocol: Protocol,
        host: Ipv4Addr,
        host_port: u16,
        guest_port: u16,
    ) -> Network {
        self.forwards.push(Forward {
            protocol,
            host,
            host_port,
            guest_port,
        });
        self
    }
}

/// The C views of some networks, valid while this value lives.
pub(crate) struct RawNetworks {
    _strings: Vec<CString>,
    _forwards: Vec<Vec<sys::VMZPortForward>>,
    pub(crate) networks: Vec<sys::VMZNetwork>,
}

impl RawNetworks {
    pub(crate) fn new(networks: &[Network]) -> Result<RawNetworks> {
        let mut strings = Vec::new();
        let mut all_forwards = Vec::new();
        let mut raw = Vec::new();
        for n in networks {
            let mac = n
                .mac
                .as_deref()
                .map(|m| cstring("MAC address", m.as_bytes()))
                .transpose()?;
            let mut forwards = Vec::new();
            for f in &n.forwards {
                let host = cstring("host address", f.host.to_string().as_bytes())?;
                forwards.push(sys::VMZPortForward {
                    struct_size: std::mem::size_of::<sys::VMZPortForward>() as u32,
                    protocol: match f.protocol {
                        Protocol::Tcp => sys::VMZ_PROTOCOL_TCP,
                        Protocol::Udp => sys::VMZ_PROTOCOL_UDP,
                    },
                    host_address: host.as_ptr(),
                    host_port: f.host_port,
                    guest_port: f.guest_port,
                });
                strings.push(host);
            }
            raw.push(sys::VMZNetwork {
                struct_size: std::mem::size_of::<sys::VMZNetwork>() as u32,
                kind: match n.kind {
                    Kind::Nat => sys::VMZ_NETWORK_NAT,
                    Kind::Socket(_) => sys::VMZ_NETWORK_SOCKET,
                },
                mac_address: mac.as_ref().map_or(std::ptr::null(), |m| m.as_ptr()),
                fd: match &n.kind {
                    Kind::Socket(fd) => fd.as_raw_fd(),
                    Kind::Nat => -1,
                },
                port_forwards: if forwards.is_empty() {
                    std::ptr::null()
                } else {
                    forwards.as_ptr()
                },
                port_forward_count: forwards.len() as u32,
            });
            // The Vec's buffer does not move when the Vec itself does.
            all_forwards.push(forwards);
            strings.extend(mac);
        }
        Ok(RawNetworks {
            _strings: strings,
            _forwards: all_forwards,
            networks: raw,
        })
    }
}
