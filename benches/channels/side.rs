//! The two sides (vmz; QEMU and the vsock daemon run alone with vmz's recorded arguments) and one booted guest of either.

use super::*;

/// Who runs the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Vmz,
    /// The engine (and the vsock backend) alone, with vmz's arguments.
    Reference,
}

/// The two guest configurations of a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Channels {
    /// The 8250 console (`console=ttyS0`), no network.
    Ttys0,
    /// hvc0 (vmz's default console), vsock, NAT with a TCP forward from
    /// 127.0.0.1:`Setup::forward_port` to the guest's port 8080.
    Hvc0VsockForward,
}

/// The guest's port behind the host's forward.
pub(crate) const GUEST_FORWARD_PORT: u16 = 8080;

/// vmz's command lines for both configurations, recorded once.
pub(crate) struct Setup {
    guest: Guest,
    pub(crate) forward_port: u16,
    ttys0: QemuArgs,
    hvc0: QemuArgs,
    daemon: DaemonArgs,
}

impl Setup {
    /// Boots each configuration once through vmz with QEMU and the vsock
    /// daemon run through recording wrappers.
    pub(crate) fn record(guest: Guest) -> BenchResult<Setup> {
        let forward_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("pick a free port")?
            .port();
        let ttys0 = capture_args_with(&guest, MEMORY_MIB, |b| {
            configure(b, &guest, Channels::Ttys0, forward_port)
        })?;
        let real = real_daemon()?;
        let (hvc0, recorded) = capture_args_recording(
            &guest,
            MEMORY_MIB,
            |b| configure(b, &guest, Channels::Hvc0VsockForward, forward_port),
            ("VMZ_VHOST_DEVICE_VSOCK", "vhost-device-vsock", &real),
        )?;
        let daemon = DaemonArgs::new(&real, recorded)?;
        for args in [&ttys0, &hvc0] {
            if let Some(a) = args
                .reference
                .iter()
                .find(|a| a.contains("/dev/fd/") || a.starts_with("-add-fd") || a.contains("fd="))
            {
                return Err(format!(
                    "vmz now passes QEMU a descriptor the bench does not replace ({a:?}): teach QemuArgs::new its path"
                ));
            }
        }
        Ok(Setup {
            guest,
            forward_port,
            ttys0,
            hvc0,
            daemon,
        })
    }

    /// Boots `channels` on `side` (not timed: only transfers are).
    pub(crate) fn boot(&self, side: Side, channels: Channels) -> BenchResult<Booted> {
        match side {
            Side::Vmz => {
                let (run, _) = vmz_boot(&self.guest, channels, self.forward_port)?;
                Ok(Booted::Vmz(run))
            }
            Side::Reference if channels == Channels::Ttys0 => {
                let (qemu, _) = QemuRun::boot_reference(&self.ttys0, "ttys0")?;
                Ok(Booted::Reference(qemu, None))
            }
            Side::Reference => {
                // The daemon first, listening, as vmz starts it; QEMU's
                // chardev then points into the daemon's directory.
                let daemon = VsockDaemon::start(&self.daemon)?;
                let args = self.daemon.rewrite_qemu(&self.hvc0, daemon.dir());
                let (qemu, _) = QemuRun::boot_reference(&args, "hvc0")?;
                Ok(Booted::Reference(qemu, Some(daemon)))
            }
        }
    }

    /// The recorded command lines, for the report.
    pub(crate) fn meta(&self) -> BenchResult<Vec<(&'static str, String)>> {
        let qmp = Path::new("/tmp/vmz-bench-PID-TAG.qmp");
        let dir = Path::new("/tmp/vmz-chbench-PID-N");
        Ok(vec![
            ("vmz_qemu_args_ttys0", quote_args(&self.ttys0.vmz)),
            (
                "reference_qemu_args_ttys0",
                quote_args(&self.ttys0.reference_with(qmp)?),
            ),
            ("vmz_qemu_args_hvc0", quote_args(&self.hvc0.vmz)),
            (
                "reference_qemu_args_hvc0",
                quote_args(
                    &self
                        .daemon
                        .rewrite_qemu(&self.hvc0, dir)
                        .reference_with(qmp)?,
                ),
            ),
            ("vmz_daemon_args", quote_args(&self.daemon.vmz)),
            (
                "reference_daemon_args",
                quote_args(&self.daemon.rewritten(dir)),
            ),
        ])
    }
}

/// Guest memory of both configurations.
const MEMORY_MIB: u64 = 256;

/// Boots `channels` through vmz: the vmz bench's config (1 vCPU), the
/// devices of `channels` added.
fn vmz_boot(guest: &Guest, channels: Channels, forward_port: u16) -> BenchResult<(VmzRun, Boot)> {
    VmzRun::boot_with(guest, &guest.vmlinux, MEMORY_MIB, false, |b| {
        configure(b, guest, channels, forward_port)
    })
}

/// The devices and console of `channels` on the vmz bench's config.
fn configure(
    b: ConfigBuilder,
    guest: &Guest,
    channels: Channels,
    forward_port: u16,
) -> ConfigBuilder {
    match channels {
        Channels::Ttys0 => b
            .command_line(guest.cmdline.replace("console=hvc0", "console=ttyS0"))
            .console(vmz::ConsoleDevice::Serial)
            .nat(false),
        Channels::Hvc0VsockForward => b.vsock(true).network(vmz::Network::nat().forward(
            vmz::Protocol::Tcp,
            forward_port,
            GUEST_FORWARD_PORT,
        )),
    }
}

/// A booted guest; dropping it stops it (vmz: the `Machine`; the
/// reference: QEMU killed, then the daemon).
pub(crate) enum Booted {
    Vmz(VmzRun),
    Reference(QemuRun, Option<VsockDaemon>),
}

/// A connected vsock stream of either side.
pub(crate) trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl Booted {
    pub(crate) fn console(&mut self) -> &mut Console {
        match self {
            Booted::Vmz(run) => &mut run.console,
            Booted::Reference(qemu, _) => &mut qemu.console,
        }
    }

    /// Connects to the guest's vsock `port`: vmz's `vsock_connect`, or the
    /// daemon's host-side protocol spoken by the bench.
    pub(crate) fn vsock_connect(&self, port: u32) -> BenchResult<Box<dyn Stream>> {
        match self {
            Booted::Vmz(run) => Ok(Box::new(
                run.vm.vsock_connect(port).context("vsock_connect")?,
            )),
            Booted::Reference(_, Some(daemon)) => Ok(Box::new(daemon.connect(port)?)),
            Booted::Reference(_, None) => Err("this guest has no vsock".into()),
        }
    }
}
