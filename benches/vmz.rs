//! vmz benchmarks: boot, stop, bridge calls, serial throughput, scaling.
//!
//! Run with `cargo bench --bench vmz` (needs `[[bench]] name = "vmz"
//! harness = false` in Cargo.toml). Without `--bench` on its command line
//! (as under `cargo test --all-targets`) it prints a note and exits, so the
//! test suite does not boot dozens of guests.
//!
//! Every row is measured `VMZ_BENCH_RUNS` times (default 10) against a
//! reference measured in the same process, A and B alternating run by run,
//! so that load from other processes on the machine hits both alike. The
//! reference for a guest-level row is QEMU started directly with exactly the
//! arguments vmz uses (read from the bridge's debug log line `spawning: ...`),
//! except that the kernel and initrd are given as paths instead of inherited
//! `/dev/fd/N` descriptors, and QMP is a `-qmp unix:PATH,server=on,wait=off`
//! socket instead of an inherited listening descriptor.
//!
//! Environment:
//! - `VMZ_BENCH_RUNS`: runs per row (default 10).
//! - `VMZ_BENCH_SCALING_RUNS`: runs per guest count in the scaling rows
//!   (default: `VMZ_BENCH_RUNS`).
//! - `VMZ_BENCH_SCALING`: guest counts, comma-separated (default `1,2,4,8`).
//! - `VMZ_BENCH_SCALING_MIB`: memory per guest in the scaling rows (default
//!   80; the test guest's kernel runs out of memory at boot with 64).
//! - `VMZ_BENCH_CAT_BYTES`: bytes for the guest-to-host row (default 262144).
//! - `VMZ_BENCH_ECHO_LINES`: 64-byte lines for the host-to-guest row
//!   (default 256).
//! - `VMZ_GUEST_DIR`: the test guest (default `target/vmz-guest`, built by
//!   `scripts/make-guest.sh`).
//!
//! Output: a Markdown table on stdout, raw samples in
//! `target/vmz-bench/samples.json` and `target/vmz-bench/samples.csv`.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmz::{Config, Event, Exit, Machine};

/// Errors of the benchmark: a message with context.
type BenchResult<T> = Result<T, String>;

/// Adds context to errors of any displayable type.
trait Context<T> {
    /// Maps the error to `"{what}: {error}"`.
    fn context(self, what: &str) -> BenchResult<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> BenchResult<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The line the test guest's init prints once it runs.
const MARKER: &[u8] = b"VMZ-GUEST-READY";
/// The test guest's first line: /init's first act.
const USERSPACE: &[u8] = b"VMZ-GUEST-USERSPACE";

/// The times of one boot, from the start of the timed call.
#[derive(Clone, Copy, Debug)]
struct Boot {
    /// To the first line of /init on the console (`VMZ-GUEST-USERSPACE`,
    /// once /init has loaded the console's modules and opened hvc0).
    userspace: Duration,
    /// To the marker (`VMZ-GUEST-READY`): modules loaded, acpid running.
    ready: Duration,
}

impl Boot {
    /// Waits for both markers on `console`, timing from `t0`.
    fn wait(console: &Console, t0: Instant) -> BenchResult<Boot> {
        let at = console.wait_for(USERSPACE, 0, BOOT_TIMEOUT)?;
        let userspace = t0.elapsed();
        console.wait_for(MARKER, at, BOOT_TIMEOUT)?;
        Ok(Boot {
            userspace,
            ready: t0.elapsed(),
        })
    }
}
/// Generous: emulated guests on a small, possibly busy machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// For everything after the boot.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Options and the guest

/// What to run, from the environment.
struct Options {
    runs: usize,
    scaling_runs: usize,
    scaling: Vec<usize>,
    scaling_mib: u64,
    cat_bytes: usize,
    echo_lines: usize,
    out_dir: PathBuf,
}

/// Reads a number from the environment.
fn env_usize(name: &str, default: usize) -> BenchResult<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().context(name),
        _ => Ok(default),
    }
}

impl Options {
    fn from_env() -> BenchResult<Options> {
        let runs = env_usize("VMZ_BENCH_RUNS", 10)?.max(1);
        let scaling = match std::env::var("VMZ_BENCH_SCALING") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|s| s.trim().parse::<usize>().context("VMZ_BENCH_SCALING"))
                .collect::<BenchResult<Vec<_>>>()?,
            _ => vec![1, 2, 4, 8],
        };
        Ok(Options {
            runs,
            scaling_runs: env_usize("VMZ_BENCH_SCALING_RUNS", runs)?.max(1),
            scaling,
            scaling_mib: env_usize("VMZ_BENCH_SCALING_MIB", 80)? as u64,
            cat_bytes: env_usize("VMZ_BENCH_CAT_BYTES", 256 * 1024)?,
            echo_lines: env_usize("VMZ_BENCH_ECHO_LINES", 256)?.max(1),
            out_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-bench"),
        })
    }
}

/// The test guest of scripts/make-guest.sh.
struct Guest {
    /// Uncompressed PVH kernel: what vmz boots.
    vmlinux: PathBuf,
    /// bzImage: what the plain-QEMU reference boots.
    vmlinuz: PathBuf,
    initrd: PathBuf,
    cmdline: String,
}

impl Guest {
    /// The test guest: $VMZ_GUEST_DIR or target/vmz-guest.
    fn load() -> BenchResult<Guest> {
        let dir = std::env::var_os("VMZ_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-guest"));
        Guest::load_from(&dir)
    }

    /// The same guest with Debian's standard kernel (`scripts/make-guest.sh
    /// --standard`): $VMZ_BENCH_STANDARD_GUEST_DIR or
    /// target/vmz-guest-standard; None (rows skipped) if it is not built.
    fn load_standard() -> BenchResult<Option<Guest>> {
        let dir = std::env::var_os("VMZ_BENCH_STANDARD_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-guest-standard")
            });
        if !dir.join("cmdline").is_file() {
            eprintln!(
                "no standard-kernel guest in {}: its rows are skipped (scripts/make-guest.sh --standard)",
                dir.display()
            );
            return Ok(None);
        }
        Guest::load_from(&dir).map(Some)
    }

    fn load_from(dir: &Path) -> BenchResult<Guest> {
        let cmdline = std::fs::read_to_string(dir.join("cmdline"))
            .context(&format!(
                "{}/cmdline (build the guest with scripts/make-guest.sh)",
                dir.display()
            ))?
            .trim()
            .to_string();
        let guest = Guest {
            vmlinux: dir.join("vmlinux"),
            vmlinuz: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            cmdline,
        };
        for p in [&guest.vmlinux, &guest.vmlinuz, &guest.initrd] {
            if !p.is_file() {
                return Err(format!(
                    "{} is missing (run scripts/make-guest.sh)",
                    p.display()
                ));
            }
        }
        Ok(guest)
    }
}

// ---------------------------------------------------------------------------
// Logging: catches the bridge's "spawning: ..." line

/// A `log` logger that prints warnings and errors and remembers the last
/// QEMU command line the bridge logged.
struct BenchLogger {
    spawn_line: Mutex<Option<String>>,
}

static LOGGER: BenchLogger = BenchLogger {
    spawn_line: Mutex::new(None),
};

impl log::Log for BenchLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if record.target() == "vmz::bridge" {
            let text = record.args().to_string();
            if let Some(rest) = text.strip_prefix("spawning: ") {
                *self.spawn_line.lock().unwrap_or_else(|p| p.into_inner()) = Some(rest.to_string());
            }
        }
        if record.level() <= log::Level::Warn {
            eprintln!("[{} {}] {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Splits the bridge's quoted argument list (`"a" "b \"c\""`) into
/// arguments, undoing the bridge's escapes.
fn parse_quoted_args(line: &str) -> BenchResult<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        match chars.next() {
            None => return Ok(args),
            Some('"') => {}
            Some(c) => return Err(format!("unexpected {c:?} in spawn line {line:?}")),
        }
        let mut arg = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("unterminated argument in {line:?}")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => arg.push('\n'),
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        let v = u32::from_str_radix(&hex, 16).context("escape in spawn line")?;
                        arg.push(char::from_u32(v).unwrap_or('?'));
                    }
                    Some(c) => arg.push(c),
                    None => return Err(format!("dangling escape in {line:?}")),
                },
                Some(c) => arg.push(c),
            }
        }
        args.push(arg);
    }
}

/// The QEMU command line vmz uses, as a template for the reference runs.
#[derive(Clone)]
struct QemuArgs {
    /// vmz's arguments exactly as logged (argv[0] first).
    vmz: Vec<String>,
    /// The same with real kernel/initrd paths and QMP on
    /// [`QMP_PLACEHOLDER`].
    reference: Vec<String>,
}

/// Replaced by a per-run socket path in [`QemuArgs::reference`].
const QMP_PLACEHOLDER: &str = "@QMP@";

impl QemuArgs {
    /// Derives the reference arguments from vmz's.
    fn new(vmz: Vec<String>, guest: &Guest) -> BenchResult<QemuArgs> {
        let mut out = Vec::new();
        let mut i = 0;
        let (mut kernel, mut initrd, mut qmp) = (false, false, false);
        while i < vmz.len() {
            let a = &vmz[i];
            let next = vmz.get(i + 1).map(String::as_str);
            match (a.as_str(), next) {
                ("-kernel", Some(_)) => {
                    out.push(a.clone());
                    out.push(path_string(&guest.vmlinux)?);
                    kernel = true;
                    i += 2;
                }
                ("-initrd", Some(_)) => {
                    out.push(a.clone());
                    out.push(path_string(&guest.initrd)?);
                    initrd = true;
                    i += 2;
                }
                ("-chardev", Some(spec)) if spec.starts_with("socket,id=qmp,") => {
                    i += 2;
                }
                ("-mon", Some("chardev=qmp,mode=control")) => {
                    out.push("-qmp".into());
                    out.push(format!("unix:{QMP_PLACEHOLDER},server=on,wait=off"));
                    qmp = true;
                    i += 2;
                }
                _ => {
                    out.push(a.clone());
                    i += 1;
                }
            }
        }
        if !(kernel && initrd && qmp) {
            return Err(format!(
                "vmz's QEMU command line has changed shape (kernel {kernel}, initrd {initrd}, qmp {qmp}): {vmz:?}"
            ));
        }
        Ok(QemuArgs {
            vmz,
            reference: out,
        })
    }

    /// The reference arguments with QMP on `socket`.
    fn reference_with(&self, socket: &Path) -> BenchResult<Vec<String>> {
        let s = path_string(socket)?;
        Ok(self
            .reference
            .iter()
            .map(|a| a.replace(QMP_PLACEHOLDER, &s))
            .collect())
    }
}

/// A path as UTF-8.
fn path_string(p: &Path) -> BenchResult<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
}

// ---------------------------------------------------------------------------
// The serial console over pipes

/// What a console's reader thread collected.
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    eof: bool,
}

/// A guest console seen from the host: a writer into the guest and a thread
/// collecting everything the guest prints.
struct Console {
    input: Option<Box<dyn Write + Send>>,
    output: Arc<(Mutex<Output>, Condvar)>,
    reader: Option<JoinHandle<()>>,
}

impl Console {
    /// A console over `reader` (the guest's output) and `input`.
    fn new(mut reader: impl Read + Send + 'static, input: Box<dyn Write + Send>) -> Console {
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let sink = output.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                let (out, cond) = &*sink;
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    out.eof = true;
                } else {
                    out.bytes.extend_from_slice(&buf[..n]);
                }
                drop(out);
                cond.notify_all();
                if n == 0 {
                    break;
                }
            }
        });
        Console {
            input: Some(input),
            output,
            reader: Some(thread),
        }
    }

    /// A console over two new pipes, and the descriptors for vmz's config
    /// (serial input, serial output).
    fn pipes() -> BenchResult<(Console, OwnedFd, OwnedFd)> {
        let (in_r, in_w) = std::io::pipe().context("pipe")?;
        let (out_r, out_w) = std::io::pipe().context("pipe")?;
        Ok((
            Console::new(out_r, Box::new(in_w)),
            in_r.into(),
            out_w.into(),
        ))
    }

    /// Writes `bytes` to the guest.
    fn send(&mut self, bytes: &[u8]) -> BenchResult<()> {
        let w = self.input.as_mut().ok_or("console input closed")?;
        w.write_all(bytes).context("write to the guest console")?;
        w.flush().context("flush the guest console")
    }

    /// Bytes received so far.
    fn len(&self) -> usize {
        self.output
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bytes
            .len()
    }

    /// Waits until `needle` appears at or after offset `from`; returns the
    /// offset just past it.
    fn wait_for(&self, needle: &[u8], from: usize, timeout: Duration) -> BenchResult<usize> {
        let (out, cond) = &*self.output;
        let deadline = Instant::now() + timeout;
        let mut guard = out.lock().unwrap_or_else(|p| p.into_inner());
        let mut scan = from;
        loop {
            if guard.bytes.len() >= scan + needle.len() {
                if let Some(pos) = guard.bytes[scan..]
                    .windows(needle.len())
                    .position(|w| w == needle)
                {
                    return Ok(scan + pos + needle.len());
                }
                scan = guard.bytes.len() + 1 - needle.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || guard.eof {
                let tail_from = guard.bytes.len().saturating_sub(2000);
                return Err(format!(
                    "{:?} not seen on the console ({}); last output:\n{}",
                    String::from_utf8_lossy(needle),
                    if guard.eof { "output ended" } else { "timeout" },
                    String::from_utf8_lossy(&guard.bytes[tail_from..])
                ));
            }
            guard = cond
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Counts occurrences of `needle` from offset `from`.
    fn count(&self, needle: &[u8], from: usize) -> usize {
        let out = self.output.0.lock().unwrap_or_else(|p| p.into_inner());
        out.bytes
            .get(from..)
            .unwrap_or_default()
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.input.take();
        // The reader ends when every writer of the output is gone (the
        // guest's engine has exited); do not wait for it here.
        drop(self.reader.take());
    }
}

// ---------------------------------------------------------------------------
// Process helpers

/// Children of this process (QEMU processes).
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// VmRSS of a process in KiB (`self` or a pid).
fn rss_kib(pid: &str) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context(&format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Watches a process by pid and records the instant it exits (pidfd +
/// poll, the same mechanism the bridge uses).
struct ExitWatch {
    thread: JoinHandle<BenchResult<Instant>>,
}

impl ExitWatch {
    fn new(pid: u32) -> BenchResult<ExitWatch> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor (or -1), which we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(format!(
                "pidfd_open({pid}): {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` is a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let thread = std::thread::spawn(move || {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            loop {
                // SAFETY: one valid pollfd.
                let rc = unsafe { libc::poll(&mut pfd, 1, 120_000) };
                if rc > 0 {
                    return Ok(Instant::now());
                }
                let err = std::io::Error::last_os_error();
                if rc == 0 {
                    return Err("the process did not exit within 120 s".into());
                }
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(format!("poll on pidfd: {err}"));
                }
            }
        });
        Ok(ExitWatch { thread })
    }

    fn exited_at(self) -> BenchResult<Instant> {
        self.thread
            .join()
            .map_err(|_| "exit watch thread panicked".to_string())?
    }
}

// ---------------------------------------------------------------------------
// A guest run by vmz

/// How a vmz VM life ended, with the instant the handler saw it.
type EndSlot = Arc<(Mutex<Option<(Instant, &'static str)>>, Condvar)>;

/// A vmz VM with its console.
struct VmzRun {
    vm: Machine,
    console: Console,
    ended: EndSlot,
}

impl VmzRun {
    /// Builds the config (not timed), then times `Machine::with_event_handler`
    /// and `start` until the marker is on the console. Returns the run and the
    /// time to the marker.
    fn boot(guest: &Guest, memory_mib: u64) -> BenchResult<(VmzRun, Boot)> {
        VmzRun::boot_kernel(guest, &guest.vmlinux, memory_mib, false)
    }

    /// `boot` with another kernel file than the guest's vmlinux, and
    /// optionally `ConfigBuilder::fast_boot_options(true)`.
    fn boot_kernel(
        guest: &Guest,
        kernel: &Path,
        memory_mib: u64,
        fast_boot: bool,
    ) -> BenchResult<(VmzRun, Boot)> {
        let (console, input, output) = Console::pipes()?;
        let config = vmz_config(guest, kernel, memory_mib, input, output, fast_boot)?;
        let ended: EndSlot = Arc::new((Mutex::new(None), Condvar::new()));
        let slot = ended.clone();
        let t0 = Instant::now();
        let vm = Machine::with_event_handler(&config, move |event| {
            let now = Instant::now();
            let what = match event {
                Event::GuestStopped => "guest-stopped",
                Event::ForceStopped => "force-stopped",
                Event::StoppedWithError(_) => "stopped-with-error",
                Event::StartFailed(_) => "start-failed",
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
    fn qemu_pid(&self) -> BenchResult<u32> {
        match children().as_slice() {
            [pid] => Ok(*pid),
            other => Err(format!("expected one QEMU child, found {other:?}")),
        }
    }

    /// Waits for the end event; returns when the handler saw it and what.
    fn ended(&self) -> BenchResult<(Instant, &'static str)> {
        let (m, c) = &*self.ended;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = c
            .wait_timeout_while(g, STEP_TIMEOUT, |e| e.is_none())
            .unwrap_or_else(|p| p.into_inner());
        (*g).ok_or_else(|| "no end event within the timeout".to_string())
    }
}

/// The benchmark's vmz config: 1 CPU, NAT on (vmz's default), the console on
/// the given descriptors.
fn vmz_config(
    guest: &Guest,
    kernel: &Path,
    memory_mib: u64,
    input: OwnedFd,
    output: OwnedFd,
    fast_boot: bool,
) -> BenchResult<Config> {
    Config::builder(kernel)
        .fast_boot_options(fast_boot)
        .initrd(&guest.initrd)
        .command_line(&guest.cmdline)
        .cpus(1)
        .memory_mib(memory_mib)
        .nat(true)
        .serial_input(input)
        .serial_output(output)
        .build()
        .context("Config::build")
}

// ---------------------------------------------------------------------------
// A guest run by QEMU directly

/// A QEMU process started by the benchmark, killed on drop.
struct QemuRun {
    child: Child,
    console: Console,
    qmp_socket: Option<PathBuf>,
}

impl QemuRun {
    /// Times spawning `args` until the marker is on the console.
    fn boot(args: &[String], qmp_socket: Option<PathBuf>) -> BenchResult<(QemuRun, Boot)> {
        let (program, rest) = args.split_first().ok_or("empty QEMU command line")?;
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let mut child = cmd.spawn().context(&format!("spawn {program}"))?;
        let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
            return Err("QEMU child without pipes".into());
        };
        let run = QemuRun {
            child,
            console: Console::new(stdout, Box::new(stdin)),
            qmp_socket,
        };
        let boot = Boot::wait(&run.console, t0)?;
        Ok((run, boot))
    }

    /// Boots the reference: vmz's arguments, QMP on a fresh socket.
    fn boot_reference(args: &QemuArgs, tag: &str) -> BenchResult<(QemuRun, Boot)> {
        let socket =
            std::env::temp_dir().join(format!("vmz-bench-{}-{tag}.qmp", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let argv = args.reference_with(&socket)?;
        QemuRun::boot(&argv, Some(socket))
    }

    /// Connects to QMP and finishes the handshake.
    fn qmp(&self) -> BenchResult<Qmp> {
        let path = self.qmp_socket.as_ref().ok_or("no QMP socket")?;
        let stream = UnixStream::connect(path).context("connect to QMP")?;
        stream
            .set_read_timeout(Some(STEP_TIMEOUT))
            .context("QMP timeout")?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone().context("clone QMP stream")?),
            writer: stream,
        };
        qmp.read_until("\"QMP\"")?;
        qmp.send("qmp_capabilities")?;
        qmp.read_until("\"return\"")?;
        Ok(qmp)
    }

    /// Waits for QEMU to exit.
    fn wait(&mut self) -> BenchResult<()> {
        self.child.wait().context("wait for QEMU").map(drop)
    }
}

impl Drop for QemuRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(s) = &self.qmp_socket {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// A minimal QMP client.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn send(&mut self, command: &str) -> BenchResult<()> {
        self.writer
            .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
            .context("QMP write")
    }

    fn read_until(&mut self, needle: &str) -> BenchResult<()> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).context("QMP read")? == 0 {
                return Err(format!("QMP closed before {needle}"));
            }
            if line.contains(needle) {
                return Ok(());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Samples and statistics

/// All samples, by row name, in insertion order of rows.
#[derive(Default)]
struct Samples {
    rows: BTreeMap<String, Vec<f64>>,
    order: Vec<String>,
}

impl Samples {
    fn add(&mut self, row: &str, value: f64) {
        if !self.rows.contains_key(row) {
            self.order.push(row.to_string());
        }
        self.rows.entry(row.to_string()).or_default().push(value);
    }

    /// Adds both times of a boot: `{prefix}_ms` (to the marker) and
    /// `{prefix}_userspace_ms`.
    fn add_boot(&mut self, prefix: &str, boot: Boot) {
        self.add(&format!("{prefix}_ms"), ms(boot.ready));
        self.add(&format!("{prefix}_userspace_ms"), ms(boot.userspace));
    }

    fn get(&self, row: &str) -> &[f64] {
        self.rows.get(row).map(Vec::as_slice).unwrap_or_default()
    }
}

/// min, median, max.
fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((s[0], median, s[n - 1]))
}

/// Formats a number with sensible precision.
fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// "min / median / max" of a row.
fn triple(v: &[f64]) -> String {
    match stats(v) {
        Some((a, b, c)) => format!("{} / {} / {}", num(a), num(b), num(c)),
        None => "n/a".into(),
    }
}

/// One line of the results table.
struct TableRow {
    what: String,
    unit: &'static str,
    row: String,
    reference: Option<(String, String)>,
    note: String,
}

/// Builds the Markdown table.
fn table(samples: &Samples, rows: &[TableRow]) -> String {
    let mut out = String::new();
    out.push_str(
        "| measurement | unit | vmz min / median / max | reference | reference min / median / max | ratio vmz/ref (medians) | n | note |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let v = samples.get(&r.row);
        if v.is_empty() {
            continue; // e.g. the standard-kernel rows without that guest
        }
        let (ref_name, ref_triple, ratio) = match &r.reference {
            Some((name, key)) => {
                let rv = samples.get(key);
                let ratio = match (stats(v), stats(rv)) {
                    (Some((_, a, _)), Some((_, b, _))) if b != 0.0 => format!("{:.3}", a / b),
                    _ => "n/a".into(),
                };
                (name.clone(), triple(rv), ratio)
            }
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.what,
            r.unit,
            triple(v),
            ref_name,
            ref_triple,
            ratio,
            v.len(),
            r.note
        );
    }
    out
}

/// Escapes a string for JSON.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes samples.json, samples.csv and table.md.
fn write_outputs(
    opts: &Options,
    samples: &Samples,
    meta: &[(&str, String)],
    table: &str,
) -> BenchResult<()> {
    std::fs::create_dir_all(&opts.out_dir).context("create target/vmz-bench")?;
    let mut json = String::from("{\n  \"meta\": {");
    for (i, (k, v)) in meta.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(json, "{sep}\n    {}: {}", json_str(k), json_str(v));
    }
    json.push_str("\n  },\n  \"samples\": {");
    for (i, row) in samples.order.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let values: Vec<String> = samples.get(row).iter().map(|v| format!("{v}")).collect();
        let _ = write!(
            json,
            "{sep}\n    {}: [{}]",
            json_str(row),
            values.join(", ")
        );
    }
    json.push_str("\n  }\n}\n");
    std::fs::write(opts.out_dir.join("samples.json"), json).context("write samples.json")?;

    let mut csv = String::from("row,run,value\n");
    for row in &samples.order {
        for (i, v) in samples.get(row).iter().enumerate() {
            let _ = writeln!(csv, "{row},{i},{v}");
        }
    }
    std::fs::write(opts.out_dir.join("samples.csv"), csv).context("write samples.csv")?;
    std::fs::write(opts.out_dir.join("table.md"), table).context("write table.md")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The measurements

/// Seconds as f64 milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Boots one vmz VM at `log` level Debug to read its QEMU command line, and
/// stops it. Doubles as a warm-up.
fn capture_args(guest: &Guest, memory_mib: u64) -> BenchResult<QemuArgs> {
    *LOGGER.spawn_line.lock().unwrap_or_else(|p| p.into_inner()) = None;
    log::set_max_level(log::LevelFilter::Debug);
    let result = VmzRun::boot(guest, memory_mib);
    log::set_max_level(log::LevelFilter::Warn);
    let (run, _) = result?;
    run.vm.force_stop().context("force_stop")?;
    let line = LOGGER
        .spawn_line
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or("the bridge logged no \"spawning: \" line")?;
    QemuArgs::new(parse_quoted_args(&line)?, guest)
}

/// The plain command line a user would type (bzImage, QEMU's defaults).
fn plain_args(guest: &Guest) -> BenchResult<Vec<String>> {
    Ok(vec![
        "qemu-system-x86_64".into(),
        "-kernel".into(),
        path_string(&guest.vmlinuz)?,
        "-initrd".into(),
        path_string(&guest.initrd)?,
        "-append".into(),
        // -nographic's console is the 8250.
        guest.cmdline.replace("console=hvc0", "console=ttyS0"),
        "-nographic".into(),
        "-m".into(),
        "256".into(),
        "-accel".into(),
        "tcg".into(),
    ])
}

/// vmz boots `guest`'s bzImage (optionally with the opt-in kernel
/// options); its times go under `key`; the VM is stopped on return.
fn boot_bzimage(
    samples: &mut Samples,
    guest: &Guest,
    fast_boot: bool,
    key: &str,
) -> BenchResult<()> {
    let (_run, boot) = VmzRun::boot_kernel(guest, &guest.vmlinuz, 256, fast_boot)?;
    samples.add_boot(key, boot);
    Ok(())
}

/// Plain QEMU boots with `args`; its times go under `key`; killed, then a
/// pause (`settle`).
fn boot_plain(samples: &mut Samples, args: &[String], key: &str) -> BenchResult<()> {
    let (q, boot) = QemuRun::boot(args, None)?;
    samples.add_boot(key, boot);
    drop(q);
    settle();
    Ok(())
}

/// A pause after a plain QEMU run. The boot right after one was 0.1-0.15 s
/// slower than elsewhere in the sequence (whichever row came next; not
/// seen after vmz's or the reference's runs, cause not found), so the
/// next row is not measured in its wake.
fn settle() {
    std::thread::sleep(Duration::from_secs(1));
}

/// The 64-byte lines of the host-to-guest row; the last one is unique.
fn echo_payload(lines: usize) -> (Vec<u8>, String) {
    let mut out = Vec::with_capacity(lines * 64);
    for i in 0..lines.saturating_sub(1) {
        let _ = writeln!(ByteWriter(&mut out), "h{i:06}-{}", "y".repeat(55));
    }
    let last = format!("h-last-{}", "z".repeat(56));
    let _ = writeln!(ByteWriter(&mut out), "{last}");
    (out, last)
}

/// `fmt::Write` into a byte vector.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Guest-to-host and host-to-guest serial throughput on a booted console,
/// in MB/s (10^6 bytes per second).
fn throughput(
    console: &mut Console,
    opts: &Options,
    samples: &mut Samples,
    prefix: &str,
) -> BenchResult<()> {
    if opts.cat_bytes > 0 {
        let from = console.len();
        let t0 = Instant::now();
        console.send(format!("cat-bytes {}\n", opts.cat_bytes).as_bytes())?;
        console.wait_for(b"vmz-guest: cat done", from, STEP_TIMEOUT)?;
        let dt = t0.elapsed().as_secs_f64();
        samples.add(
            &format!("{prefix}.serial_out_mbps"),
            opts.cat_bytes as f64 / dt / 1e6,
        );
    }
    let (payload, last) = echo_payload(opts.echo_lines);
    let from = console.len();
    let t0 = Instant::now();
    console.send(&payload)?;
    console.wait_for(format!("echo: {last}").as_bytes(), from, STEP_TIMEOUT)?;
    let dt = t0.elapsed().as_secs_f64();
    let answered = console.count(b"echo: h", from);
    samples.add(
        &format!("{prefix}.serial_in_mbps"),
        payload.len() as f64 / dt / 1e6,
    );
    samples.add(
        &format!("{prefix}.serial_in_lost_lines"),
        (opts.echo_lines - answered.min(opts.echo_lines)) as f64,
    );
    Ok(())
}

/// Rows 1, 2 and 4 (boot, stop, throughput), and the event latency of 3,
/// alternating vmz and its references run by run.
fn guest_rows(
    guest: &Guest,
    standard: Option<&Guest>,
    args: &QemuArgs,
    opts: &Options,
    samples: &mut Samples,
) -> BenchResult<()> {
    let plain = plain_args(guest)?;
    let plain_standard = standard.map(plain_args).transpose()?;
    for i in 0..opts.runs {
        eprintln!("guest rows: run {}/{}", i + 1, opts.runs);
        // Each pair runs vmz first in even runs and the reference first in
        // odd ones, so a cost of going first (or second) falls on both.
        let vmz_first = i % 2 == 0;
        let pair = |samples: &mut Samples,
                    vmz: &dyn Fn(&mut Samples) -> BenchResult<()>,
                    reference: &dyn Fn(&mut Samples) -> BenchResult<()>|
         -> BenchResult<()> {
            if vmz_first {
                vmz(samples)?;
                reference(samples)
            } else {
                reference(samples)?;
                vmz(samples)
            }
        };

        // Boot, throughput, guest poweroff: vmz and QEMU with vmz's args.
        pair(
            samples,
            &|samples| {
                let (mut run, boot) = VmzRun::boot(guest, 256)?;
                samples.add_boot("boot.vmz", boot);
                throughput(&mut run.console, opts, samples, "vmz")?;
                let watch = ExitWatch::new(run.qemu_pid()?)?;
                let t0 = Instant::now();
                run.console.send(b"poweroff\n")?;
                let (at, what) = run.ended()?;
                let qemu_exit = watch.exited_at()?;
                if what != "guest-stopped" {
                    return Err(format!("poweroff ended the vmz VM as {what}"));
                }
                samples.add("stop.poweroff.vmz_ms", ms(at - t0));
                samples.add(
                    "event.exit_to_handler_us",
                    at.saturating_duration_since(qemu_exit).as_secs_f64() * 1e6,
                );
                samples.add("stop.poweroff.vmz_qemu_exit_ms", ms(qemu_exit - t0));
                Ok(())
            },
            &|samples| {
                let (mut q, boot) = QemuRun::boot_reference(args, "a")?;
                samples.add_boot("boot.qemu_same_args", boot);
                throughput(&mut q.console, opts, samples, "qemu")?;
                let t0 = Instant::now();
                q.console.send(b"poweroff\n")?;
                q.wait()?;
                samples.add("stop.poweroff.qemu_ms", ms(t0.elapsed()));
                Ok(())
            },
        )?;

        // Plain QEMU against vmz given the same bzImage (the kernel cache,
        // warmed before the first run, serves the unpacked vmlinux), and
        // the same with the opt-in kernel options.
        pair(
            samples,
            &|samples| {
                boot_bzimage(samples, guest, false, "boot.vmz_bzimage")?;
                boot_bzimage(samples, guest, true, "boot.vmz_bzimage_fast")
            },
            &|samples| boot_plain(samples, &plain, "boot.qemu_plain"),
        )?;

        // Debian's standard kernel (xz bzImage): vmz given the bzImage, with
        // and without the options, and plain QEMU booting it.
        if let (Some(std), Some(plain_std)) = (standard, &plain_standard) {
            pair(
                samples,
                &|samples| {
                    boot_bzimage(samples, std, false, "boot.std.vmz")?;
                    boot_bzimage(samples, std, true, "boot.std.vmz_fast")
                },
                &|samples| boot_plain(samples, plain_std, "boot.std.qemu_plain"),
            )?;
        }

        // request_stop vs QMP system_powerdown.
        pair(
            samples,
            &|samples| {
                let (run, boot) = VmzRun::boot(guest, 256)?;
                samples.add("boot.vmz_extra_ms", ms(boot.ready));
                let t0 = Instant::now();
                run.vm.request_stop().context("request_stop")?;
                let (at, what) = run.ended()?;
                let exit = run.vm.wait();
                let waited = t0.elapsed();
                if !matches!(exit, Exit::GuestStopped) || what != "guest-stopped" {
                    return Err(format!("request_stop ended the VM as {what} / {exit:?}"));
                }
                samples.add("stop.request.vmz_ms", ms(at - t0));
                samples.add("stop.request.vmz_wait_ms", ms(waited));
                Ok(())
            },
            &|samples| {
                let (mut q, boot) = QemuRun::boot_reference(args, "b")?;
                samples.add("boot.qemu_same_args_extra_ms", ms(boot.ready));
                let mut qmp = q.qmp()?;
                let t0 = Instant::now();
                qmp.send("system_powerdown")?;
                q.wait()?;
                samples.add("stop.request.qemu_ms", ms(t0.elapsed()));
                Ok(())
            },
        )?;

        // force_stop vs SIGKILL.
        pair(
            samples,
            &|samples| {
                let (run, boot) = VmzRun::boot(guest, 256)?;
                samples.add("boot.vmz_extra_ms", ms(boot.ready));
                let t0 = Instant::now();
                run.vm.force_stop().context("force_stop")?;
                samples.add("stop.force.vmz_ms", ms(t0.elapsed()));
                Ok(())
            },
            &|samples| {
                let (mut q, boot) = QemuRun::boot_reference(args, "c")?;
                samples.add("boot.qemu_same_args_extra_ms", ms(boot.ready));
                let t0 = Instant::now();
                q.child.kill().context("kill QEMU")?;
                q.wait()?;
                samples.add("stop.force.qemu_ms", ms(t0.elapsed()));
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// The same checks as the bridge's validation, in plain Rust: the
/// reference for `Config::validate`.
fn native_validate(guest: &Guest, fds: &[&OwnedFd]) -> BenchResult<()> {
    let mut header = [0u8; 0x210];
    let mut f = std::fs::File::open(&guest.vmlinux).context("kernel")?;
    if !f.metadata().context("kernel")?.is_file() {
        return Err("kernel is not a file".into());
    }
    let n = f.read(&mut header).context("kernel")?;
    if !(n >= 4 && header[..4] == *b"\x7fELF" || n >= 0x206 && header[0x202..0x206] == *b"HdrS") {
        return Err("kernel format".into());
    }
    let f = std::fs::File::open(&guest.initrd).context("initrd")?;
    if !f.metadata().context("initrd")?.is_file() {
        return Err("initrd is not a file".into());
    }
    for fd in fds {
        // SAFETY: F_GETFL on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } < 0 {
            return Err("fcntl".into());
        }
    }
    // SAFETY: sysconf has no preconditions.
    let _ = unsafe {
        libc::sysconf(libc::_SC_NPROCESSORS_ONLN)
            + libc::sysconf(libc::_SC_PHYS_PAGES)
            + libc::sysconf(libc::_SC_PAGESIZE)
    };
    let _ = std::env::var_os("VMZ_ACCEL");
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
        && !Path::new("/sys/module/kvm_pvm").exists()
    {
        let _ = std::fs::read_to_string("/proc/cpuinfo");
    }
    Ok(())
}

/// Row 3: Config::validate and Machine::new + drop, in microseconds per
/// call (each sample averages a batch of calls).
fn call_rows(guest: &Guest, opts: &Options, samples: &mut Samples) -> BenchResult<()> {
    const VALIDATE_BATCH: u32 = 200;
    const CREATE_BATCH: u32 = 50;
    let (_console, input, output) = Console::pipes()?;
    let (in2, out2) = (
        input.try_clone().context("dup")?,
        output.try_clone().context("dup")?,
    );
    let config = vmz_config(guest, &guest.vmlinux, 256, input, output, false)?;
    for _ in 0..opts.runs {
        let t0 = Instant::now();
        for _ in 0..VALIDATE_BATCH {
            config.validate().context("Config::validate")?;
        }
        samples.add(
            "call.validate_us",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(VALIDATE_BATCH),
        );

        let t0 = Instant::now();
        for _ in 0..VALIDATE_BATCH {
            native_validate(guest, &[&in2, &out2])?;
        }
        samples.add(
            "call.native_validate_us",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(VALIDATE_BATCH),
        );

        let t0 = Instant::now();
        for _ in 0..CREATE_BATCH {
            drop(Machine::new(&config).context("Machine::new")?);
        }
        samples.add(
            "call.new_drop_us",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(CREATE_BATCH),
        );
    }
    Ok(())
}

/// Row 5: `n` guests of 64 MiB started together; time until every marker
/// is seen, this process's RSS and each QEMU's RSS, with everything up.
fn scaling_rows(
    guest: &Arc<Guest>,
    args: &QemuArgs,
    opts: &Options,
    samples: &mut Samples,
) -> BenchResult<()> {
    for i in 0..opts.scaling_runs {
        for &n in &opts.scaling {
            eprintln!("scaling: run {}/{}, {n} guests", i + 1, opts.scaling_runs);
            // vmz
            let mib = opts.scaling_mib;
            let t0 = Instant::now();
            let threads: Vec<_> = (0..n)
                .map(|_| {
                    let guest = guest.clone();
                    std::thread::spawn(move || VmzRun::boot(&guest, mib))
                })
                .collect();
            let mut runs = Vec::new();
            for t in threads {
                runs.push(t.join().map_err(|_| "boot thread panicked")??.0);
            }
            let all_up = t0.elapsed();
            record_scaling(samples, "vmz", n, all_up)?;
            drop(runs);

            // QEMU directly, same arguments
            let t0 = Instant::now();
            let threads: Vec<_> = (0..n)
                .map(|k| {
                    let args = args.clone();
                    std::thread::spawn(move || QemuRun::boot_reference(&args, &format!("s{k}")))
                })
                .collect();
            let mut runs = Vec::new();
            for t in threads {
                runs.push(t.join().map_err(|_| "boot thread panicked")??.0);
            }
            let all_up = t0.elapsed();
            record_scaling(samples, "qemu", n, all_up)?;
            drop(runs);
        }
    }
    Ok(())
}

/// Records one scaling sample: time to all up, own RSS, QEMU RSS per guest.
fn record_scaling(samples: &mut Samples, who: &str, n: usize, all_up: Duration) -> BenchResult<()> {
    samples.add(&format!("scale.{n}.{who}_all_up_ms"), ms(all_up));
    samples.add(
        &format!("scale.{n}.{who}_host_rss_mib"),
        rss_kib("self")? as f64 / 1024.0,
    );
    let kids = children();
    if kids.len() != n {
        return Err(format!("expected {n} QEMU children, found {}", kids.len()));
    }
    let mut total = 0;
    for pid in &kids {
        total += rss_kib(&pid.to_string())?;
    }
    samples.add(
        &format!("scale.{n}.{who}_qemu_rss_mib"),
        total as f64 / 1024.0 / n as f64,
    );
    Ok(())
}

/// The rows of the table, in order.
fn table_rows(opts: &Options) -> Vec<TableRow> {
    let row =
        |what: &str, unit: &'static str, key: &str, reference: Option<(&str, &str)>, note: &str| {
            TableRow {
                what: what.into(),
                unit,
                row: key.into(),
                reference: reference.map(|(a, b)| (a.to_string(), b.to_string())),
                note: note.into(),
            }
        };
    let mut rows = vec![
        row(
            "1. boot to userspace (Machine::new+start → first line of /init)",
            "ms",
            "boot.vmz_userspace_ms",
            Some(("QEMU, vmz's args", "boot.qemu_same_args_userspace_ms")),
            "goal ratio ≤ 1.03",
        ),
        row(
            "1. boot to userspace",
            "ms",
            "boot.vmz_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "goal ratio ≤ 0.333 (3x faster)",
        ),
        row(
            "1. boot to userspace, vmz given the cloud bzImage (cache warm)",
            "ms",
            "boot.vmz_bzimage_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "goal ratio ≤ 0.333",
        ),
        row(
            "1. boot to userspace, standard kernel: vmz given the xz bzImage (cache warm)",
            "ms",
            "boot.std.vmz_userspace_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_userspace_ms",
            )),
            "goal ratio ≤ 0.333",
        ),
        row(
            "1. boot to userspace, cloud bzImage, `fast_boot_options(true)` (opt-in)",
            "ms",
            "boot.vmz_bzimage_fast_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "adds `cryptomgr.notests no_timer_check`",
        ),
        row(
            "1. boot to userspace, standard bzImage, `fast_boot_options(true)` (opt-in)",
            "ms",
            "boot.std.vmz_fast_userspace_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_userspace_ms",
            )),
            "adds `cryptomgr.notests no_timer_check`",
        ),
        row(
            "1. first boot of the cloud bzImage, empty kernel cache (unpack included)",
            "ms",
            "boot.vmz_bzimage_first_userspace_ms",
            Some((
                "plain QEMU (cloud bzImage, defaults)",
                "boot.qemu_plain_userspace_ms",
            )),
            "to userspace; once",
        ),
        row(
            "1. first boot of the standard bzImage, empty kernel cache (unpack included)",
            "ms",
            "boot.std.vmz_first_userspace_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_userspace_ms",
            )),
            "to userspace; once",
        ),
        row(
            "1. boot to marker (userspace + modules + acpid)",
            "ms",
            "boot.vmz_ms",
            Some(("QEMU, vmz's args", "boot.qemu_same_args_ms")),
            "goal ratio ≤ 1.03",
        ),
        row(
            "1. boot to marker",
            "ms",
            "boot.vmz_ms",
            Some(("plain QEMU (cloud bzImage, defaults)", "boot.qemu_plain_ms")),
            "",
        ),
        row(
            "1. boot to marker, standard kernel (vmz given the bzImage)",
            "ms",
            "boot.std.vmz_ms",
            Some((
                "plain QEMU (standard bzImage, defaults)",
                "boot.std.qemu_plain_ms",
            )),
            "",
        ),
        row(
            "1. boot to marker, all runs of rows 1-2",
            "ms",
            "boot.vmz_extra_ms",
            Some(("QEMU, vmz's args (rows 2)", "boot.qemu_same_args_extra_ms")),
            "the boots before request/force stop",
        ),
        row(
            "2. guest `poweroff` written → GuestStopped handler",
            "ms",
            "stop.poweroff.vmz_ms",
            Some(("same → QEMU exit (waitpid)", "stop.poweroff.qemu_ms")),
            "",
        ),
        row(
            "2. request_stop() → GuestStopped handler",
            "ms",
            "stop.request.vmz_ms",
            Some(("QMP system_powerdown → QEMU exit", "stop.request.qemu_ms")),
            "",
        ),
        row(
            "2. request_stop() → wait() returns",
            "ms",
            "stop.request.vmz_wait_ms",
            Some(("QMP system_powerdown → QEMU exit", "stop.request.qemu_ms")),
            "",
        ),
        row(
            "2. force_stop() → returns (stopped)",
            "ms",
            "stop.force.vmz_ms",
            Some(("SIGKILL → waitpid", "stop.force.qemu_ms")),
            "",
        ),
        row(
            "3. Config::validate",
            "µs",
            "call.validate_us",
            Some(("same checks in plain Rust", "call.native_validate_us")),
            "mean of 200 calls per sample",
        ),
        row(
            "3. Machine::new + drop (no start)",
            "µs",
            "call.new_drop_us",
            Some(("Config::validate", "call.validate_us")),
            "mean of 50 calls per sample",
        ),
        row(
            "3. event latency: QEMU exit → GuestStopped handler",
            "µs",
            "event.exit_to_handler_us",
            None,
            "pidfd poll in the bench vs the handler's clock",
        ),
    ];
    if opts.cat_bytes > 0 {
        rows.push(row(
            &format!("4. serial guest→host (`cat-bytes {}`)", opts.cat_bytes),
            "MB/s",
            "vmz.serial_out_mbps",
            Some(("QEMU, vmz's args", "qemu.serial_out_mbps")),
            "higher is better",
        ));
    }
    rows.push(row(
        &format!(
            "4. serial host→guest ({} lines of 64 B, echoed)",
            opts.echo_lines
        ),
        "MB/s",
        "vmz.serial_in_mbps",
        Some(("QEMU, vmz's args", "qemu.serial_in_mbps")),
        "higher is better; to the last echo",
    ));
    rows.push(row(
        "4. host→guest lines without an echo",
        "lines",
        "vmz.serial_in_lost_lines",
        Some(("QEMU, vmz's args", "qemu.serial_in_lost_lines")),
        "0 = nothing lost",
    ));
    for &n in &opts.scaling {
        rows.push(row(
            &format!("5. {n} guests × {} MiB: all markers seen", opts.scaling_mib),
            "ms",
            &format!("scale.{n}.vmz_all_up_ms"),
            Some(("QEMU × n, same args", &format!("scale.{n}.qemu_all_up_ms"))),
            "started together",
        ));
        rows.push(row(
            &format!("5. {n} guests: host process VmRSS"),
            "MiB",
            &format!("scale.{n}.vmz_host_rss_mib"),
            Some((
                "bench process running QEMU × n",
                &format!("scale.{n}.qemu_host_rss_mib"),
            )),
            "without QEMU",
        ));
        rows.push(row(
            &format!("5. {n} guests: QEMU VmRSS per guest"),
            "MiB",
            &format!("scale.{n}.vmz_qemu_rss_mib"),
            Some((
                "QEMU × n, same args",
                &format!("scale.{n}.qemu_qemu_rss_mib"),
            )),
            "",
        ));
    }
    rows
}

/// Runs everything; returns the table.
fn run(opts: &Options) -> BenchResult<String> {
    let guest = Arc::new(Guest::load()?);
    let standard = Guest::load_standard()?;
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if log::set_logger(&LOGGER).is_err() {
            eprintln!("another logger is installed: the QEMU command line cannot be captured");
        }
    });
    log::set_max_level(log::LevelFilter::Warn);

    eprintln!("warm-up and QEMU command lines");
    let args = capture_args(&guest, 256)?;
    let args_scaling = capture_args(&guest, opts.scaling_mib)?;
    // Warm the reference paths too (page cache, QEMU's first start).
    drop(QemuRun::boot_reference(&args, "w")?);
    drop(QemuRun::boot(&plain_args(&guest)?, None)?);

    // The first boot of each bzImage fills the (empty) kernel cache: timed
    // once, not part of the repeated rows.
    let mut samples = Samples::default();
    boot_bzimage(&mut samples, &guest, false, "boot.vmz_bzimage_first")?;
    if let Some(std) = &standard {
        boot_bzimage(&mut samples, std, false, "boot.std.vmz_first")?;
        drop(QemuRun::boot(&plain_args(std)?, None)?);
    }

    call_rows(&guest, opts, &mut samples)?;
    guest_rows(&guest, standard.as_ref(), &args, opts, &mut samples)?;
    scaling_rows(&guest, &args_scaling, opts, &mut samples)?;

    let table = table(&samples, &table_rows(opts));
    let quote = |v: &[String]| {
        v.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let meta = [
        ("runs", opts.runs.to_string()),
        ("scaling_runs", opts.scaling_runs.to_string()),
        ("cat_bytes", opts.cat_bytes.to_string()),
        ("echo_lines", opts.echo_lines.to_string()),
        ("vmz_qemu_args", quote(&args.vmz)),
        (
            "reference_qemu_args",
            quote(&args.reference_with(Path::new("/tmp/vmz-bench-PID-TAG.qmp"))?),
        ),
        ("plain_qemu_args", quote(&plain_args(&guest)?)),
        ("scaling_mib", opts.scaling_mib.to_string()),
        ("vmz_qemu_args_scaling", quote(&args_scaling.vmz)),
    ];
    write_outputs(opts, &samples, &meta, &table)?;
    let mut report = String::new();
    for (k, v) in &meta {
        let _ = writeln!(report, "- {k}: `{v}`");
    }
    report.push('\n');
    report.push_str(&table);
    Ok(report)
}

fn main() {
    if !cfg!(target_os = "linux") {
        println!("vmz bench: Linux only (it runs QEMU and the amd64 test guest)");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("vmz bench: run it with `cargo bench --bench vmz` (it boots many guests)");
        return;
    }
    let opts = match Options::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vmz bench: {e}");
            std::process::exit(2);
        }
    };
    // A kernel cache of its own, empty: the first boot of a bzImage is
    // timed with the unpacking, the others with a warm cache. (Set before
    // any thread exists: the bridge reads it with getenv.)
    let cache = opts.out_dir.join("kernel-cache");
    let _ = std::fs::remove_dir_all(&cache);
    std::env::set_var("VMZ_KERNEL_CACHE", &cache);
    match run(&opts) {
        Ok(report) => {
            println!("{report}");
            println!(
                "raw samples: {}",
                opts.out_dir.join("samples.json").display()
            );
        }
        Err(e) => {
            eprintln!("vmz bench failed: {e}");
            std::process::exit(1);
        }
    }
}
