//! VM configuration: a builder, validation, and the engine's limits.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::architecture::GuestArchitecture;
use crate::console::{ConsoleDevice, RawPorts, SerialPort};
use crate::disk::{Disk, RawDisks};
use crate::error::{bridge_call, Error, Result};
use crate::share::{RawShares, Share};
use crate::sys;

const MIB: u64 = 1 << 20;

/// How the guest's CPUs are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Accelerator {
    /// Hardware virtualization where it really works, otherwise software
    /// emulation. On Linux the environment variable `VMZ_ACCEL` (`kvm`,
    /// `tcg` or `auto`) overrides this choice, and only this one. KVM is
    /// picked only when `/dev/kvm` opens, the CPU advertises `vmx`/`svm`, and
    /// no software-only KVM module (`kvm_pvm`) is loaded.
    #[default]
    Auto,
    /// KVM on Linux, Hypervisor.framework on macOS.
    Hardware,
    /// Software emulation (QEMU TCG). Linux only.
    Software,
}

impl Accelerator {
    fn to_raw(self) -> u32 {
        match self {
            Accelerator::Auto => sys::VMZ_ACCEL_AUTO,
            Accelerator::Hardware => sys::VMZ_ACCEL_HARDWARE,
            Accelerator::Software => sys::VMZ_ACCEL_SOFTWARE,
        }
    }
}

/// A VM's configuration. Build one with [`Config::builder`].
///
/// Cheap to clone; serial descriptors are shared between clones and the
/// bridge duplicates them when a [`Machine`](crate::Machine) is created, so
/// the `Config` may be dropped right after.
///
/// ```no_run
/// let config = vmz::Config::builder("target/vmz-guest/vmlinux")
///     .initrd("target/vmz-guest/initrd.img")
///     .command_line("console=hvc0")
///     .cpus(2)
///     .memory_mib(512)
///     .build()?;
/// config.validate()?;
/// # Ok::<(), vmz::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    command_line: String,
    serial_input: Option<Arc<OwnedFd>>,
    serial_output: Option<Arc<OwnedFd>>,
    cpus: u32,
    memory: u64,
    nat: bool,
    accelerator: Accelerator,
    fast_boot_options: bool,
    console: ConsoleDevice,
    entropy: bool,
    balloon: bool,
    serial_ports: Vec<SerialPort>,
    guest_architecture: GuestArchitecture,
    start_timeout: Option<Duration>,
    disks: Vec<Disk>,
    vsock_cid: u32,
    shares: Vec<Share>,
    networks: Vec<crate::network::Network>,
}

/// Builds a [`Config`]. Defaults: no initrd, empty command line, 1 CPU,
/// 512 MiB, NAT on, [`Accelerator::Auto`], no serial input, serial output
/// to the process's standard output, no fast boot options, the console on
/// [`ConsoleDevice::Virtio`] (`hvc0`), an entropy device, no serial ports,
/// a guest of the host's architecture, no disks, no shared directories.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl Config {
    /// Starts a configuration that boots `kernel` (x86_64: a bzImage or an
    /// uncompressed `vmlinux` with a PVH note, which boots fastest; arm64: an
    /// `Image`, uncompressed or gzip-compressed). The kernel's architecture
    /// is the host's unless [`ConfigBuilder::guest_architecture`] says
    /// otherwise.
    pub fn builder(kernel: impl Into<PathBuf>) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                kernel: kernel.into(),
                initrd: None,
                command_line: String::new(),
                serial_input: None,
                serial_output: None,
                cpus: 1,
                memory: 512 * MIB,
                nat: true,
                accelerator: Accelerator::Auto,
                fast_boot_options: false,
                console: ConsoleDevice::Virtio,
                entropy: true,
                balloon: true,
                serial_ports: Vec::new(),
                guest_architecture: GuestArchitecture::Host,
                start_timeout: None,
                disks: Vec::new(),
                vsock_cid: 0,
                shares: Vec::new(),
                networks: Vec::new(),
            },
        }
    }

    /// Checks the configuration as the engine would, without starting
    /// anything: files exist and are regular, readable files of a bootable
    /// format; CPU count and memory are within [`Limits`]; descriptors are
    /// open in the right direction; the accelerator is usable.
    ///
    /// ```no_run
    /// let err = vmz::Config::builder("/nonexistent").build()?.validate().unwrap_err();
    /// assert_eq!(err.code(), vmz::ErrorCode::Kernel);
    /// # Ok::<(), vmz::Error>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        crate::log_bridge::init();
        self.with_raw(|raw| {
            // SAFETY: `raw` and its strings are valid for this call; the
            // out-parameter goes to the bridge as it is.
            unsafe { bridge_call(|err| sys::vmz_validate_config(raw, err).then_some(())) }
        })?
    }

    /// The kernel path.
    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// The initial ramdisk path, if any.
    pub fn initrd(&self) -> Option<&Path> {
        self.initrd.as_deref()
    }

    /// The kernel command line.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Number of virtual CPUs.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Guest memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory
    }

    /// Whether the guest gets a NAT network.
    pub fn nat(&self) -> bool {
        self.nat
    }

    /// The requested accelerator.
    pub fn accelerator(&self) -> Accelerator {
        self.accelerator
    }

    /// Whether the fast boot options are appended to the command line.
    pub fn fast_boot_options(&self) -> bool {
        self.fast_boot_options
    }

    /// The console device.
    pub fn console(&self) -> ConsoleDevice {
        self.console
    }

    /// Whether the guest gets a virtio entropy device (`/dev/hwrng`).
    pub fn entropy(&self) -> bool {
        self.entropy
    }

    /// The guest's architecture as configured
    /// ([`GuestArchitecture::Host`] unless set).
    pub fn guest_architecture(&self) -> GuestArchitecture {
        self.guest_architecture
    }

    /// Whether the guest has a memory balloon.
    pub fn balloon(&self) -> bool {
        self.balloon
    }

    /// The names of the extra serial ports, in order.
    pub fn serial_port_names(&self) -> impl Iterator<Item = &str> {
        self.serial_ports.iter().map(|p| p.name.as_str())
    }

    /// The start bound set with
    /// [`ConfigBuilder::start_timeout`]; `None`: the default (30 s).
    pub fn start_timeout(&self) -> Option<Duration> {
        self.start_timeout
    }

    /// The disks, in the order the guest sees them.
    pub fn disks(&self) -> &[Disk] {
        &self.disks
    }

    /// Whether the guest has a vsock device.
    pub fn vsock(&self) -> bool {
        self.vsock_cid != 0
    }

    /// The shared directories.
    pub fn shares(&self) -> &[Share] {
        &self.shares
    }

    /// Calls `f` with the C view of this configuration, whose strings live
    /// for the duration of the call.
    pub(crate) fn with_raw<R>(&self, f: impl FnOnce(&sys::VMZConfig) -> R) -> Result<R> {
        let kernel = path_cstring("kernel path", &self.kernel)?;
        let initrd = self
            .initrd
            .as_deref()
            .map(|p| path_cstring("initrd path", p))
            .transpose()?;
        let cmdline = cstring("command line", self.command_line.as_bytes())?;
        let ports = RawPorts::new(&self.serial_ports)?;
        let networks = crate::network::RawNetworks::new(&self.networks)?;
        let disks = RawDisks::new(&self.disks)?;
        let (disks_ptr, disk_count) = disks.as_raw();
        let shares = RawShares::new(&self.shares)?;
        let (shares_ptr, share_count) = shares.as_raw();
        let raw = sys::VMZConfig {
            struct_size: std::mem::size_of::<sys::VMZConfig>() as u32,
            kernel_path: kernel.as_ptr(),
            initrd_path: initrd.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            command_line: cmdline.as_ptr(),
            read_pipe_fd: self
                .serial_input
                .as_ref()
                .map_or(sys::VMZ_FD_DEFAULT, |fd| fd.as_raw_fd()),
            write_pipe_fd: self
                .serial_output
                .as_ref()
                .map_or(sys::VMZ_FD_DEFAULT, |fd| fd.as_raw_fd()),
            cpu_count: self.cpus,
            memory_size: self.memory,
            // Networks of their own replace the default NAT device.
            enable_nat: self.nat && self.networks.is_empty(),
            accelerator: self.accelerator.to_raw(),
            boot_options: if self.fast_boot_options {
                sys::VMZ_BOOT_FAST_OPTIONS
            } else {
                0
            },
            console: self.console.to_raw(),
            omit_devices: if self.entropy {
                0
            } else {
                sys::VMZ_OMIT_ENTROPY
            } | if self.balloon {
                0
            } else {
                sys::VMZ_OMIT_BALLOON
            },
            serial_ports: if ports.ports.is_empty() {
                std::ptr::null()
            } else {
                ports.ports.as_ptr()
            },
            serial_port_count: ports.ports.len() as u32,
            guest_architecture: self.guest_architecture.to_raw(),
            start_timeout_ms: self
                .start_timeout
                .map_or(0, |d| d.as_millis().clamp(1, u64::MAX as u128) as u64),
            disks: disks_ptr,
            disk_count,
            vsock_cid: self.vsock_cid,
            networks: if networks.networks.is_empty() {
                std::ptr::null()
            } else {
                networks.networks.as_ptr()
            },
            network_count: networks.networks.len() as u32,
            shares: shares_ptr,
            share_count,
        };
        Ok(f(&raw))
    }
}

/// (pointer, count) of an array for the C ABI: NULL when empty.
pub(crate) fn c_array<T>(items: &[T]) -> (*const T, u32) {
    if items.is_empty() {
        (std::ptr::null(), 0)
    } else {
        (items.as_ptr(), items.len() as u32)
    }
}

pub(crate) fn cstring(field: &'static str, bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|e| Error::InteriorNul {
        field,
        offset: e.nul_position(),
    })
}

pub(crate) fn path_cstring(field: &'static str, path: &Path) -> Result<CString> {
    let s = path.to_str().ok_or_else(|| Error::NonUtf8Path {
        field,
        path: path.to_path_buf(),
    })?;
    cstring(field, s.as_bytes())
}

impl ConfigBuilder {
    /// The initial ramdisk.
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.initrd = Some(path.into());
        self
    }

    /// The kernel command line, passed to the guest as it is: vmz adds
    /// nothing. The console is `hvc0` by default on both engines (name it:
    /// `console=hvc0`); `ttyS0` with [`ConsoleDevice::Serial`].
    pub fn command_line(mut self, cmdline: impl Into<String>) -> Self {
        self.config.command_line = cmdline.into();
        self
    }

    /// Number of virtual CPUs (see [`Limits`]).
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.config.cpus = cpus;
        self
    }

    /// Guest memory in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.config.memory = mib.saturating_mul(MIB);
        self
    }

    /// Guest memory in bytes; must be a whole number of MiB.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.config.memory = bytes;
        self
    }

    /// A NAT network (one virtio NIC; QEMU user-mode networking on Linux, no
    /// host port forwards). On by default.
    pub fn nat(mut self, enabled: bool) -> Self {
        self.config.nat = enabled;
        self
    }

    /// The accelerator (default [`Accelerator::Auto`]).
    pub fn accelerator(mut self, accelerator: Accelerator) -> Self {
        self.config.accelerator = accelerator;
        self
    }

    /// Appends kernel options that shorten the boot, mostly under emulation
    /// (`cryptomgr.notests no_timer_check`: skip the kernel's crypto
    /// self-tests and its timer IRQ check) to the command line. Off by
    /// default: without it the guest gets exactly
    /// [`command_line`](ConfigBuilder::command_line). See BENCHMARKS.md for
    /// what it saves.
    pub fn fast_boot_options(mut self, enabled: bool) -> Self {
        self.config.fast_boot_options = enabled;
        self
    }

    /// How long [`Machine::start`](crate::Machine::start) may take until
    /// the VM runs (default 30 s). Past it the engine is killed and the
    /// start fails with [`ErrorCode::Timeout`](crate::ErrorCode::Timeout),
    /// saying what it waited for.
    ///
    /// ```
    /// let config = vmz::Config::builder("vmlinux")
    ///     .start_timeout(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// assert_eq!(config.start_timeout(), Some(std::time::Duration::from_secs(10)));
    /// # Ok::<(), vmz::Error>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.config.start_timeout = Some(timeout);
        self
    }

    /// Adds a disk; the guest sees disks in the order they are added
    /// (`/dev/vda`, `/dev/vdb`, ...), at most [`MAX_DISKS`](crate::MAX_DISKS).
    pub fn disk(mut self, disk: Disk) -> Self {
        self.config.disks.push(disk);
        self
    }

    /// Shares a host directory with the guest (virtio-fs), at most
    /// [`MAX_SHARES`](crate::MAX_SHARES).
    pub fn share(mut self, share: Share) -> Self {
        self.config.shares.push(share);
        self
    }

    /// Serial input: what is written to the other end of this descriptor
    /// (typically the read end of a pipe, e.g. from [`std::io::pipe`])
    /// reaches the guest's console. Default: no input.
    pub fn serial_input(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.config.serial_input = Some(Arc::new(fd.into()));
        self
    }

    /// Serial output: where the guest's console output goes (a pipe, file
    /// or socket). Default: the process's standard output.
    pub fn serial_output(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.config.serial_output = Some(Arc::new(fd.into()));
        self
    }

    /// The device the console is on (default [`ConsoleDevice::Virtio`],
    /// the guest's `hvc0`). [`ConsoleDevice::Serial`] (`ttyS0`) is Linux
    /// only.
    pub fn console(mut self, device: ConsoleDevice) -> Self {
        self.config.console = device;
        self
    }

    /// A virtio entropy device, the guest's `/dev/hwrng` (module
    /// `virtio-rng`), fed from the host's random source. On by default.
    pub fn entropy(mut self, enabled: bool) -> Self {
        self.config.entropy = enabled;
        self
    }

    /// A memory balloon (virtio-balloon; on Linux with free page reporting,
    /// so memory the guest frees goes back to the host on its own), for
    /// [`Machine::set_memory_target`](crate::Machine::set_memory_target).
    /// On by default.
    pub fn balloon(mut self, enabled: bool) -> Self {
        self.config.balloon = enabled;
        self
    }

    /// Adds a named virtio-console port: a second byte channel to the
    /// guest, apart from the console and faster (no tty layer: 500+ MB/s
    /// under QEMU's emulation). `socket` is one end of a connected stream
    /// socket; the host talks through the other end. In the guest the port
    /// is a `/dev/vportNpM` whose `/sys/class/virtio-ports/vportNpM/name`
    /// is `name` (and `/dev/virtio-ports/NAME` where udev or mdev makes
    /// links). Names: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`, unique; up to
    /// 30 ports.
    ///
    /// ```no_run
    /// use std::os::unix::net::UnixStream;
    /// let (host_end, vm_end) = UnixStream::pair().expect("socketpair");
    /// let config = vmz::Config::builder("target/vmz-guest/vmlinux")
    ///     .serial_port("org.example.agent", vm_end)
    ///     .build()?;
    /// // host_end now reads what the guest writes to the port.
    /// # drop(host_end);
    /// # Ok::<(), vmz::Error>(())
    /// ```
    pub fn serial_port(mut self, name: impl Into<String>, socket: impl Into<OwnedFd>) -> Self {
        self.config.serial_ports.push(SerialPort {
            name: name.into(),
            socket: Arc::new(socket.into()),
        });
        self
    }

    /// The guest's architecture (default [`GuestArchitecture::Host`]): the
    /// kernel's. Another than the host's runs under QEMU's emulation on
    /// Linux and is refused on macOS. See [`GuestArchitecture`].
    pub fn guest_architecture(mut self, architecture: GuestArchitecture) -> Self {
        self.config.guest_architecture = architecture;
        self
    }

    /// Adds a network device (see [`Network`](crate::Network)); the first
    /// one replaces the default NAT device ([`nat`](ConfigBuilder::nat)).
    /// Up to 8.
    pub fn network(mut self, network: crate::Network) -> Self {
        self.config.networks.push(network);
        self
    }

    /// A vsock device (see [`Machine::vsock_connect`](crate::Machine::vsock_connect)
    /// and [`Machine::vsock_listen`](crate::Machine::vsock_listen)), with a
    /// context id the engine picks, each VM its own. Off by default: on
    /// Linux without `/dev/vhost-vsock` it runs a `vhost-device-vsock`
    /// daemon per VM (`cargo install vhost-device-vsock`) and needs guest
    /// memory shared with it.
    pub fn vsock(mut self, enabled: bool) -> Self {
        self.config.vsock_cid = if enabled { sys::VMZ_VSOCK_CID_AUTO } else { 0 };
        self
    }

    /// A vsock device with the guest context id `cid` (3 or more; Linux
    /// only, macOS picks the id itself).
    pub fn vsock_cid(mut self, cid: u32) -> Self {
        self.config.vsock_cid = cid;
        self
    }

    /// Finishes the configuration. Only checks what C cannot carry (NUL
    /// bytes, non-UTF-8 paths); [`Config::validate`] and
    /// [`Machine::new`](crate::Machine::new) check the rest.
    pub fn build(self) -> Result<Config> {
        self.config.with_raw(|_| ())?;
        Ok(self.config)
    }
}

/// The engine's limits on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Fewest virtual CPUs.
    pub min_cpus: u32,
    /// Most virtual CPUs (the host's CPU count).
    pub max_cpus: u32,
    /// Least guest memory, in bytes.
    pub min_memory: u64,
    /// Most guest memory, in bytes.
    pub max_memory: u64,
    /// Longest kernel command line, in bytes.
    pub max_command_line: u64,
}

impl Limits {
    /// Asks the engine.
    ///
    /// ```
    /// let limits = vmz::Limits::query()?;
    /// assert!(limits.min_cpus >= 1 && limits.max_cpus >= limits.min_cpus);
    /// # Ok::<(), vmz::Error>(())
    /// ```
    pub fn query() -> Result<Limits> {
        let mut raw = sys::VMZLimits {
            struct_size: std::mem::size_of::<sys::VMZLimits>() as u32,
            ..Default::default()
        };
        // SAFETY: `raw` is valid for the call; the out-parameter goes to the
        // bridge as it is.
        unsafe { bridge_call(|err| sys::vmz_get_limits(&mut raw, err).then_some(())) }?;
        Ok(Limits {
            min_cpus: raw.min_cpu_count,
            max_cpus: raw.max_cpu_count,
            min_memory: raw.min_memory_size,
            max_memory: raw.max_memory_size,
            max_command_line: raw.max_command_line_length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn builder_defaults() {
        let c = Config::builder("k").build().unwrap();
        assert_eq!(c.kernel(), Path::new("k"));
        assert_eq!(c.initrd(), None);
        assert_eq!(c.command_line(), "");
        assert_eq!(c.cpus(), 1);
        assert_eq!(c.memory_bytes(), 512 * MIB);
        assert!(c.nat());
        assert_eq!(c.accelerator(), Accelerator::Auto);
        assert!(!c.fast_boot_options());
        assert_eq!(c.console(), ConsoleDevice::Virtio);
        assert!(c.entropy());
        assert!(c.balloon());
        assert_eq!(c.serial_port_names().count(), 0);
        assert_eq!(c.guest_architecture(), GuestArchitecture::Host);
        assert!(c.disks().is_empty());
        assert!(c.shares().is_empty());
    }

    #[test]
    fn interior_nul_is_caught_before_c() {
        let e = Config::builder("k")
            .command_line("a\0b")
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            Error::InteriorNul {
                field: "command line",
                offset: 1
            }
        ));
        let e = Config::builder("ke\0rnel").build().unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn non_utf8_path_is_rejected() {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::OsStr::from_bytes(b"/tmp/\xff");
        let e = Config::builder(p).build().unwrap_err();
        assert!(matches!(
            e,
            Error::NonUtf8Path {
                field: "kernel path",
                ..
            }
        ));
    }

    #[test]
    fn limits_are_sane() {
        let l = Limits::query().unwrap();
        assert_eq!(l.min_cpus, 1);
        assert!(l.max_cpus >= 1);
        assert!(l.min_memory > 0 && l.min_memory.is_multiple_of(MIB));
        assert!(l.max_memory >= l.min_memory);
        assert!(l.max_command_line >= 255);
    }
}
