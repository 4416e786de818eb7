//! Shared helpers of the integration tests: the test guest, a serial
//! console over pipes, serialisation of VM tests and leak checks.

#![allow(dead_code)]

mod bounded;
mod qemu_args;
#[allow(unused_imports)] // not every test binary uses every helper
pub use bounded::*;
#[allow(unused_imports)]
pub use qemu_args::*;
pub mod child;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The guest built by scripts/make-guest.sh.
pub struct Guest {
    /// The uncompressed kernel (x86_64: the PVH vmlinux; arm64: the Image).
    pub kernel: PathBuf,
    /// The same kernel compressed (x86_64: the bzImage Debian ships;
    /// arm64: Image.gz, as most distributions ship it).
    pub bzimage: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// Builds the test guest once (cached on disk by the script itself).
pub fn guest() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(|| {
        make_guest(
            &[],
            "VMZ_GUEST_DIR",
            "target/vmz-guest",
            ["vmlinux", "vmlinuz"],
        )
    })
}

/// Builds the arm64 test guest once (`scripts/make-guest.sh --arch arm64`).
pub fn arm64_guest() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(|| {
        make_guest(
            &["--arch", "arm64"],
            "VMZ_GUEST_DIR_ARM64",
            "target/vmz-guest-arm64",
            ["Image", "Image.gz"],
        )
    })
}

fn make_guest(args: &[&str], env: &str, default: &str, [kernel, compressed]: [&str; 2]) -> Guest {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(default));
    let status = Command::new(root.join("scripts/make-guest.sh"))
        .args(args)
        .arg(&dir)
        .status()
        .expect("run scripts/make-guest.sh");
    assert!(status.success(), "scripts/make-guest.sh {args:?} failed");
    let cmdline = std::fs::read_to_string(dir.join("cmdline"))
        .expect("guest cmdline")
        .trim()
        .to_string();
    Guest {
        kernel: dir.join(kernel),
        bzimage: dir.join(compressed),
        initrd: dir.join("initrd.img"),
        cmdline,
    }
}

/// One VM test at a time per test binary: guests are emulated (TCG) on a
/// small machine, and the leak checks count process-wide resources. The
/// test, once it holds the lock, is bounded by [`TEST_BOUND`] as a whole.
pub fn serial() -> Serial {
    static LOCK: Mutex<()> = Mutex::new(());
    let lock = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    Serial {
        _watchdog: Watchdog::arm("the whole test", TEST_BOUND),
        _lock: lock,
    }
}

/// Held by a VM test: the lock of [`serial`] and the test's watchdog.
pub struct Serial {
    _watchdog: Watchdog,
    _lock: MutexGuard<'static, ()>,
}

/// The guest's console seen from the host: a pipe into the guest and a
/// thread collecting everything it prints.
pub struct Console {
    input: Option<std::io::PipeWriter>,
    output: Arc<(Mutex<String>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Console {
    /// Returns the console and the two descriptors to give the config
    /// (serial input, serial output).
    pub fn new() -> (Console, OwnedFd, OwnedFd) {
        let (in_r, in_w) = std::io::pipe().unwrap();
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let output = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let sink = output.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match out_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (text, cond) = &*sink;
                        text.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                        cond.notify_all();
                    }
                }
            }
        });
        (
            Console {
                input: Some(in_w),
                output,
                reader: Some(reader),
            },
            in_r.into(),
            out_w.into(),
        )
    }

    /// Sends one line to the guest.
    pub fn send_line(&mut self, line: &str) {
        let w = self.input.as_mut().expect("console input open");
        w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Closes the guest's input (the guest reads end-of-file).
    pub fn close_input(&mut self) {
        self.input.take();
    }

    /// Like [`expect`](Console::expect), looking only at the output after
    /// byte `offset` (from [`text`](Console::text)`.len()` before a command).
    pub fn expect_after(&self, offset: usize, needle: &str, timeout: Duration) {
        let (text, cond) = &*self.output;
        let deadline = Instant::now() + timeout;
        let mut guard = text.lock().unwrap();
        while !guard.get(offset..).is_some_and(|t| t.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} not seen on the console within {timeout:?}; output:\n{}",
                *guard
            );
            guard = cond.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Waits until the output contains `needle`; panics with the output so
    /// far after `timeout`.
    pub fn expect(&self, needle: &str, timeout: Duration) {
        self.expect_after(0, needle, timeout)
    }

    /// Sends `line`, then waits (up to [`BOOT_TIMEOUT`]) until the output
    /// contains `reply`.
    pub fn ask(&mut self, line: &str, reply: &str) {
        self.send_line(line);
        self.expect(reply, BOOT_TIMEOUT);
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.output.0.lock().unwrap().clone()
    }

    /// Closes the input and waits for the output's end (all writers gone:
    /// the config's copy, QEMU's), bounded.
    pub fn close(mut self) -> String {
        self.input.take();
        if let Some(r) = self.reader.take() {
            within(
                "the console's end (every writer of the serial output closed)",
                STOP_BOUND,
                || r.join().unwrap(),
            );
        }
        self.text()
    }
}

/// Threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Counts of process-wide resources that a test must give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub fds: usize,
    pub children: Vec<u32>,
    pub live: vmz::LiveObjects,
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What each open descriptor points to (for leak reports).
pub fn fd_targets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{}->{}", e.file_name().to_string_lossy(), target.display())
        })
        .collect()
}

/// Child processes of this process (QEMU, if any was left).
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == me {
            out.push(pid);
        }
    }
    out
}

/// A machine whose events arrive on a channel.
pub fn machine_with_events(
    config: &vmz::Config,
) -> (vmz::Machine, std::sync::mpsc::Receiver<vmz::Event>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let vm = vmz::Machine::with_event_handler(config, move |e| {
        let _ = tx.send(e);
    })
    .expect("create");
    (vm, rx)
}

/// A machine's events as its handler saw them, for checks around its
/// release: made by [`machine_with_event_log`], checked by
/// [`release_checked`].
pub struct EventLog {
    events: std::sync::mpsc::Receiver<vmz::Event>,
    released: Arc<std::sync::atomic::AtomicBool>,
    late: Arc<Mutex<Vec<String>>>,
}

/// A machine whose handler sends its events to an [`EventLog`] and notes
/// any that arrives after the machine was released.
pub fn machine_with_event_log(config: &vmz::Config) -> (vmz::Machine, EventLog) {
    use std::sync::atomic::Ordering;
    let (tx, rx) = std::sync::mpsc::channel();
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let late = Arc::new(Mutex::new(Vec::new()));
    let (r, l) = (released.clone(), late.clone());
    let vm = vmz::Machine::with_event_handler(config, move |e| {
        if r.load(Ordering::SeqCst) {
            l.lock().unwrap().push(format!("{e:?}"));
        }
        let _ = tx.send(e);
    })
    .expect("create");
    (
        vm,
        EventLog {
            events: rx,
            released,
            late,
        },
    )
}

/// Drops the machine (bounded) and checks the release's promises: no
/// event reaches the handler afterwards, and the handler itself is freed
/// (its channel disconnects: the bridge called `release_context`). Returns
/// the events the handler saw before.
pub fn release_checked(vm: vmz::Machine, log: EventLog) -> Vec<vmz::Event> {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::RecvTimeoutError;
    release(vm);
    log.released.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match log
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(e) => seen.push(e),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!(
                "the event handler was not freed within 5 s of the release \
                 (release_context not called?); events: {seen:?}"
            ),
        }
    }
    let late = log.late.lock().unwrap();
    assert!(late.is_empty(), "events after the release: {late:?}");
    seen
}

/// Boots the test guest (one VM test at a time), waits for its marker,
/// runs `body`, then drops the machine and checks that nothing is left
/// behind: no QEMU child, descriptor, handle or error object.
pub fn with_booted_guest(
    body: impl FnOnce(&vmz::Machine, &std::sync::mpsc::Receiver<vmz::Event>, &mut Console),
) {
    let _serial = serial();
    guest();
    let before = Resources::now();
    {
        let (mut console, input, output) = Console::new();
        let (vm, events) = machine_with_events(&guest_config(input, output));
        start(&vm).expect("start");
        console.expect(MARKER, BOOT_TIMEOUT);
        body(&vm, &events, &mut console);
        release(vm);
        console.close();
    }
    before.assert_restored();
}

/// The test guest's initrd and command line with `kernel`, 256 MiB; the
/// console is attached by [`boot_with`].
pub fn guest_builder(kernel: &Path) -> vmz::ConfigBuilder {
    let g = guest();
    vmz::Config::builder(kernel)
        .initrd(&g.initrd)
        .command_line(&g.cmdline)
        .memory_mib(256)
}

/// Boots `builder` with a console, waits for the marker, runs `body`, then
/// force-stops the VM and closes the console.
pub fn boot_with(builder: vmz::ConfigBuilder, body: impl FnOnce(&mut Console)) {
    let (mut console, input, output) = Console::new();
    let config = builder
        .serial_input(input)
        .serial_output(output)
        .build()
        .unwrap();
    let vm = vmz::Machine::new(&config).unwrap();
    drop(config);
    start(&vm).unwrap();
    console.expect(MARKER, BOOT_TIMEOUT);
    body(&mut console);
    force_stop(&vm).unwrap();
    release(vm);
    console.close();
}

/// A file with an ELF magic number and nothing a loader can use: it passes
/// the bridge's format check and QEMU refuses it at start. Removed with the
/// returned directory guard.
pub fn bogus_elf_kernel(name: &str) -> (PathBuf, TempDir) {
    let dir = TempDir(std::env::temp_dir().join(format!("vmz-{name}-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let kernel = dir.0.join("bogus-vmlinux");
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(4096, 0);
    std::fs::write(&kernel, bytes).unwrap();
    (kernel, dir)
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes the bridge create its process-wide resources once (dispatch's
/// event loop descriptors, the spawner thread), so that leak checks compare
/// steady states: starts QEMU on a kernel it refuses.
pub fn warm_up() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let (kernel, dir) = bogus_elf_kernel("warm-up");
        let config = vmz::Config::builder(&kernel)
            .memory_mib(128)
            .nat(false)
            .build()
            .unwrap();
        let vm = vmz::Machine::new(&config).unwrap();
        let _ = start(&vm);
        release(vm);
        drop(dir);
        // libdispatch opens its timer descriptor lazily, just after: wait
        // until the count has been steady for a while.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = (open_fds(), Instant::now());
        while Instant::now() < deadline && last.1.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(10));
            let n = open_fds();
            if n != last.0 {
                last = (n, Instant::now());
            }
        }
    });
}

impl Resources {
    /// The current counts (after [`warm_up`]).
    pub fn now() -> Resources {
        warm_up();
        Resources {
            fds: open_fds(),
            children: children(),
            live: vmz::live_objects(),
        }
    }

    /// Asserts that everything went back to `self` (allowing a moment for
    /// threads that close their descriptors as they finish).
    pub fn assert_restored(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = Resources::now();
            if now == *self {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "resources leaked: before {self:?}, after {now:?}; open now: {:?}",
                    fd_targets()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Both `validate` and `Machine::new` refuse the config with `code`, the
/// message mentions `words`, nothing runs, nothing leaks.
pub fn assert_rejected(config: vmz::Config, code: vmz::ErrorCode, words: &str) {
    let before = Resources::now();
    {
        let e = config.validate().unwrap_err();
        assert_eq!(e.code(), code, "validate: {e}");
        assert!(
            e.to_string().contains(words),
            "message {:?} should mention {words:?}",
            e.to_string()
        );
        let e = vmz::Machine::new(&config).unwrap_err();
        assert_eq!(e.code(), code, "Machine::new: {e}");
    }
    assert!(children().is_empty(), "nothing was started");
    before.assert_restored();
}

/// The guest's config with this console attached.
pub fn guest_config(input: OwnedFd, output: OwnedFd) -> vmz::Config {
    let g = guest();
    vmz::Config::builder(&g.kernel)
        .initrd(&g.initrd)
        .command_line(&g.cmdline)
        .cpus(1)
        .memory_mib(256)
        .nat(true)
        .serial_input(input)
        .serial_output(output)
        .build()
        .unwrap()
}

/// The engine's limits as documented (README), from first principles
/// rather than from `Limits::query()`, the code under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentedLimits {
    pub min_cpus: u32,
    pub max_cpus: u32,
    pub min_memory: u64,
    pub max_memory: u64,
    pub max_command_line: u64,
}

/// Linux's COMMAND_LINE_SIZE is 2048 bytes with the NUL, so 2047; one CPU
/// up to the host's online CPUs (at most 255); 64 MiB (the bridge's floor)
/// up to the host's physical memory, in whole MiB.
pub fn documented_limits() -> DocumentedLimits {
    // SAFETY: sysconf has no preconditions.
    let (cpus, pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let mib = 1u64 << 20;
    DocumentedLimits {
        min_cpus: 1,
        max_cpus: (cpus as u32).min(255),
        min_memory: 64 * mib,
        max_memory: pages as u64 * page as u64 / mib * mib,
        max_command_line: 2047,
    }
}

/// The marker the test guest prints once its init runs.
pub const MARKER: &str = "VMZ-GUEST-READY";

/// Generous under emulation on a busy 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `f` with the environment variable `key` set to `value`, then
/// restores it. Only under [`serial`]: no other test of the binary creates
/// a VM (and reads the environment) meanwhile.
pub fn with_env<T>(key: &str, value: impl AsRef<std::ffi::OsStr>, f: impl FnOnce() -> T) -> T {
    let old = std::env::var_os(key);
    std::env::set_var(key, value);
    let out = f();
    match old {
        Some(v) => std::env::set_var(key, v),
        None => std::env::remove_var(key),
    }
    out
}

/// An event as a short name: `State(Running)`, `Ended(PoweredOff)`,
/// `Ended(StartFailed)` (errors left out), for comparing sequences.
pub fn event_name(event: &vmz::Event) -> String {
    match event {
        vmz::Event::Ended(vmz::Exit::StartFailed(_)) => "Ended(StartFailed)".into(),
        vmz::Event::Ended(vmz::Exit::EngineError(_)) => "Ended(EngineError)".into(),
        vmz::Event::Ended(vmz::Exit::Killed(s)) => {
            format!("Ended(Killed({}))", s.name().unwrap_or("?"))
        }
        vmz::Event::NetworkDisconnected { device, .. } => format!("NetworkDisconnected({device})"),
        other => format!("{other:?}"),
    }
}

/// The names of the next `n` events (see [`event_name`]).
pub fn event_names(
    rx: &std::sync::mpsc::Receiver<vmz::Event>,
    n: usize,
    awaiting: &str,
) -> Vec<String> {
    (0..n).map(|_| event_name(&recv(rx, awaiting))).collect()
}

/// Every event up to and including `Ended`, by name, then checks that
/// nothing follows within 200 ms.
pub fn events_until_end(rx: &std::sync::mpsc::Receiver<vmz::Event>) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        let e = recv(rx, &format!("the end event, after {names:?}"));
        let ended = matches!(e, vmz::Event::Ended(_));
        names.push(event_name(&e));
        if ended {
            break;
        }
    }
    if let Ok(e) = rx.recv_timeout(Duration::from_millis(200)) {
        panic!("an event after the end: {e:?} (before: {names:?})");
    }
    names
}
