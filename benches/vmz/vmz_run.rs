//! A guest run by vmz.

use super::*;

/// How a vmz VM life ended, with the instant the handler saw it.
pub(crate) type EndSlot = Arc<(Mutex<Option<(Instant, &'static str)>>, Condvar)>;

/// A vmz VM with its console.
pub(crate) struct VmzRun {
    pub(crate) vm: Machine,
    pub(crate) console: Console,
    pub(crate) ended: EndSlot,
}

impl VmzRun {
    /// Builds the config (not timed), then times `Machine::with_event_handler`
    /// and `start` until the marker is on the console. Returns the run and the
    /// time to the marker.
    pub(crate) fn boot(guest: &Guest, memory_mib: u64) -> BenchResult<(VmzRun, Boot)> {
        VmzRun::boot_kernel(guest, &guest.vmlinux, memory_mib, false)
    }

    /// `boot` with another kernel file than the guest's vmlinux, and
    /// optionally `ConfigBuilder::fast_boot_options(true)`.
    pub(crate) fn boot_kernel(
        guest: &Guest,
        kernel: &Path,
        memory_mib: u64,
        fast_boot: bool,
    ) -> BenchResult<(VmzRun, Boot)> {
        VmzRun::boot_with(guest, kernel, memory_mib, fast_boot, |b| b)
    }

    /// `boot_kernel` with more devices: `extra` adds them to the
    /// benchmark's config (disks, shares).
    pub(crate) fn boot_with(
        guest: &Guest,
        kernel: &Path,
        memory_mib: u64,
        fast_boot: bool,
        extra: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> BenchResult<(VmzRun, Boot)> {
        let (console, input, output) = Console::pipes()?;
        let config = extra(vmz_builder(
            guest, kernel, memory_mib, input, output, fast_boot,
        ))
        .build()
        .context("Config::build")?;
        let ended: EndSlot = Arc::new((Mutex::new(None), Condvar::new()));
        let slot = ended.clone();
        let t0 = Instant::now();
        let vm = Machine::with_event_handler(&config, move |event| {
            let now = Instant::now();
            let what = match event {
                Event::Ended(Exit::PoweredOff) => "guest-stopped",
                Event::Ended(Exit::ForceStopped) => "force-stopped",
                Event::Ended(Exit::StartFailed(_)) => "start-failed",
                Event::Ended(_) => "stopped-otherwise",
                _ => return,
            };
            let (m, c) = &*slot;
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none() {
                *g = Some((now, what));
            }
            c.notify_all();
        })
        .context("Machine::with_event_handler")?;
        // The bridge holds its own duplicates: without ours, the console
        // sees end-of-file if QEMU dies before the marker.
        drop(config);
        vm.start().context("Machine::start")?;
        let boot = Boot::wait(&console, t0)?;
        Ok((VmzRun { vm, console, ended }, boot))
    }

    /// The pid of this VM's QEMU (the only child of this process).
    pub(crate) fn qemu_pid(&self) -> BenchResult<u32> {
        match children().as_slice() {
            [pid] => Ok(*pid),
            other => Err(format!("expected one QEMU child, found {other:?}")),
        }
    }

    /// Waits for the end event; returns when the handler saw it and what.
    pub(crate) fn ended(&self) -> BenchResult<(Instant, &'static str)> {
        let (m, c) = &*self.ended;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = c
            .wait_timeout_while(g, STEP_TIMEOUT, |e| e.is_none())
            .unwrap_or_else(|p| p.into_inner());
        (*g).ok_or_else(|| "no end event within the timeout".to_string())
    }
}

/// The benchmark's vmz config, to be built: 1 CPU, NAT on (vmz's
/// default), the console on the given descriptors.
pub(crate) fn vmz_builder(
    guest: &Guest,
    kernel: &Path,
    memory_mib: u64,
    input: OwnedFd,
    output: OwnedFd,
    fast_boot: bool,
) -> ConfigBuilder {
    Config::builder(kernel)
        .fast_boot_options(fast_boot)
        .initrd(&guest.initrd)
        .command_line(&guest.cmdline)
        .cpus(1)
        .memory_mib(memory_mib)
        .nat(true)
        .serial_input(input)
        .serial_output(output)
}
