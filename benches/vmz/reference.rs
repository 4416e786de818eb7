//! The reference runner: QEMU started directly, with the arguments vmz used (captured through the tests' recording wrapper) or with a plain user's command line.

use super::*;

/// The QEMU command line vmz uses, as a template for the reference runs.
#[derive(Clone)]
pub(crate) struct QemuArgs {
    /// vmz's arguments exactly as recorded, after the real QEMU's path.
    pub(crate) vmz: Vec<String>,
    /// The same with real kernel/initrd paths and QMP on
    /// [`QMP_PLACEHOLDER`].
    pub(crate) reference: Vec<String>,
}

/// Replaced by a per-run socket path in [`QemuArgs::reference`].
pub(crate) const QMP_PLACEHOLDER: &str = "@QMP@";

impl QemuArgs {
    /// Derives the reference arguments from vmz's.
    pub(crate) fn new(vmz: Vec<String>, guest: &Guest) -> BenchResult<QemuArgs> {
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
    pub(crate) fn reference_with(&self, socket: &Path) -> BenchResult<Vec<String>> {
        let s = path_string(socket)?;
        Ok(self
            .reference
            .iter()
            .map(|a| a.replace(QMP_PLACEHOLDER, &s))
            .collect())
    }
}

/// A path as UTF-8.
pub(crate) fn path_string(p: &Path) -> BenchResult<String> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
}

/// Boots one vmz VM with QEMU run through the tests' argument-recording
/// wrapper (tests/common/qemu_args.rs) to learn vmz's QEMU arguments, and
/// stops it. Doubles as a warm-up.
pub(crate) fn capture_args(guest: &Guest, memory_mib: u64) -> BenchResult<QemuArgs> {
    capture_args_with(guest, memory_mib, |b| b)
}

/// `capture_args` for the benchmark's config with more devices (`extra`
/// adds them). Helper programs vmz starts for them can be recorded too:
/// call this inside their wrappers' `with`.
pub(crate) fn capture_args_with(
    guest: &Guest,
    memory_mib: u64,
    extra: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> BenchResult<QemuArgs> {
    let dir = std::env::temp_dir().join(format!("vmz-bench-args-{}", std::process::id()));
    let wrapper = common::RecordingQemu::new(&dir);
    let booted =
        wrapper.with(|| VmzRun::boot_with(guest, &guest.vmlinux, memory_mib, false, extra));
    let recorded = booted.and_then(|(run, _)| {
        run.vm.force_stop().context("force_stop")?;
        Ok(wrapper.args())
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut argv = vec![path_string(&common::real_qemu())?];
    argv.extend(recorded?);
    QemuArgs::new(argv, guest)
}

/// `capture_args_with`, and also the arguments vmz gave a helper program
/// it starts (virtiofsd, the vsock daemon): `(var, name, real)` runs the
/// VM with environment variable `var` on a recording wrapper `name` of
/// the `real` program.
pub(crate) fn capture_args_recording(
    guest: &Guest,
    memory_mib: u64,
    extra: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    (var, name, real): (&str, &str, &Path),
) -> BenchResult<(QemuArgs, Vec<String>)> {
    let dir = std::env::temp_dir().join(format!("vmz-bench-{name}-{}", std::process::id()));
    let wrapper = common::RecordingProgram::new(&dir, name, real);
    let qemu = wrapper.with(var, || capture_args_with(guest, memory_mib, extra));
    let recorded = std::fs::read_to_string(dir.join("args"))
        .map(|s| s.lines().map(String::from).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
    let qemu = qemu?;
    let recorded = recorded.context(&format!("{name} was not run through its wrapper"))?;
    Ok((qemu, recorded))
}

/// The plain command line a user would type (bzImage, QEMU's defaults).
pub(crate) fn plain_args(guest: &Guest) -> BenchResult<Vec<String>> {
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

/// A QEMU process started by the benchmark, killed on drop.
pub(crate) struct QemuRun {
    pub(crate) child: Child,
    pub(crate) console: Console,
    pub(crate) qmp_socket: Option<PathBuf>,
}

impl QemuRun {
    /// Times spawning `args` until the marker is on the console.
    pub(crate) fn boot(
        args: &[String],
        qmp_socket: Option<PathBuf>,
    ) -> BenchResult<(QemuRun, Boot)> {
        QemuRun::boot_inheriting(args, qmp_socket, Inherit::default())
    }

    /// `boot`, QEMU inheriting `fds` (closed here once it runs).
    pub(crate) fn boot_inheriting(
        args: &[String],
        qmp_socket: Option<PathBuf>,
        fds: Inherit,
    ) -> BenchResult<(QemuRun, Boot)> {
        let (program, rest) = args.split_first().ok_or("empty QEMU command line")?;
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        fds.apply(&mut cmd);
        let t0 = Instant::now();
        let spawned = tied::spawn_tied(cmd);
        drop(fds);
        let mut child = spawned.context(&format!("spawn {program}"))?;
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
    pub(crate) fn boot_reference(args: &QemuArgs, tag: &str) -> BenchResult<(QemuRun, Boot)> {
        QemuRun::boot_reference_inheriting(args, tag, Inherit::default())
    }

    /// `boot_reference`, QEMU inheriting `fds`.
    pub(crate) fn boot_reference_inheriting(
        args: &QemuArgs,
        tag: &str,
        fds: Inherit,
    ) -> BenchResult<(QemuRun, Boot)> {
        let socket =
            std::env::temp_dir().join(format!("vmz-bench-{}-{tag}.qmp", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let argv = args.reference_with(&socket)?;
        QemuRun::boot_inheriting(&argv, Some(socket), fds)
    }

    /// Connects to QMP and finishes the handshake.
    pub(crate) fn qmp(&self) -> BenchResult<Qmp> {
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
    pub(crate) fn wait(&mut self) -> BenchResult<()> {
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
pub(crate) struct Qmp {
    pub(crate) reader: BufReader<UnixStream>,
    pub(crate) writer: UnixStream,
}

impl Qmp {
    pub(crate) fn send(&mut self, command: &str) -> BenchResult<()> {
        self.writer
            .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
            .context("QMP write")
    }

    pub(crate) fn read_until(&mut self, needle: &str) -> BenchResult<()> {
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
