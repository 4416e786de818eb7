//! The vsock backend run alone: vhost-device-vsock started by the bench with the arguments vmz gave it, and its host-side protocol spoken by the bench.

use super::*;
use std::os::unix::fs::DirBuilderExt;

/// The daemon's command line as vmz ran it.
pub(crate) struct DaemonArgs {
    /// The real daemon's path, then vmz's arguments exactly as recorded.
    pub(crate) vmz: Vec<String>,
    /// vmz's private directory of the sockets (`--socket`'s parent), which
    /// the reference replaces by its own.
    dir: String,
}

impl DaemonArgs {
    /// From the arguments recorded of vmz's run of `real`.
    pub(crate) fn new(real: &Path, args: Vec<String>) -> BenchResult<DaemonArgs> {
        let socket = args
            .iter()
            .position(|a| a == "--socket")
            .and_then(|i| args.get(i + 1))
            .ok_or_else(|| format!("no --socket in vmz's daemon arguments {args:?}"))?;
        let dir = Path::new(socket)
            .parent()
            .and_then(Path::to_str)
            .ok_or_else(|| format!("--socket {socket} has no directory"))?
            .to_string();
        let mut vmz = vec![path_string(real)?];
        vmz.extend(args);
        Ok(DaemonArgs { vmz, dir })
    }

    /// vmz's arguments with its private directory replaced by `dir`.
    pub(crate) fn rewritten(&self, dir: &Path) -> Vec<String> {
        self.replace_dir(&self.vmz, dir)
    }

    /// QEMU's reference arguments `args` with vmz's socket directory
    /// replaced by `dir` (the vhost-user chardev's path).
    pub(crate) fn rewrite_qemu(&self, args: &QemuArgs, dir: &Path) -> QemuArgs {
        QemuArgs {
            vmz: args.vmz.clone(),
            reference: self.replace_dir(&args.reference, dir),
        }
    }

    fn replace_dir(&self, args: &[String], dir: &Path) -> Vec<String> {
        let to = dir.display().to_string();
        args.iter().map(|a| a.replace(&self.dir, &to)).collect()
    }
}

/// The daemon vmz runs: `$VMZ_VHOST_DEVICE_VSOCK`, else on `PATH`, else
/// in cargo's bin directory (where vmz looks, in that order).
pub(crate) fn real_daemon() -> BenchResult<PathBuf> {
    if let Some(p) = std::env::var_os("VMZ_VHOST_DEVICE_VSOCK") {
        return Ok(PathBuf::from(p));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    common::on_path("vhost-device-vsock")
        .or_else(|| {
            let p = cargo_home?.join("bin/vhost-device-vsock");
            p.is_file().then_some(p)
        })
        .ok_or_else(|| "no vhost-device-vsock (scripts/setup-debian.sh installs it)".into())
}

/// A daemon started by the bench in a directory of its own; killed (and
/// the directory removed) on drop.
pub(crate) struct VsockDaemon {
    child: Child,
    dir: PathBuf,
}

impl VsockDaemon {
    /// Starts the daemon with vmz's arguments (the sockets in a new 0700
    /// directory; output to a log file there, as vmz does) and waits until
    /// its vhost-user socket listens, as vmz does before starting QEMU.
    pub(crate) fn start(args: &DaemonArgs) -> BenchResult<VsockDaemon> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vmz-chbench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .context(&format!("create {}", dir.display()))?;
        let argv = args.rewritten(&dir);
        let log = std::fs::File::create(dir.join("daemon.log")).context("daemon.log")?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("daemon.log")?)
            .stderr(log);
        let child = tied::spawn_tied(cmd).context(&format!("spawn {}", argv[0]));
        let mut daemon = VsockDaemon { child: child?, dir };
        let socket = daemon.dir.join("vhost.sock");
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !is_listening(&socket) {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                let log =
                    std::fs::read_to_string(daemon.dir.join("daemon.log")).unwrap_or_default();
                return Err(format!(
                    "the vsock daemon exited at start ({status}): {log}"
                ));
            }
            if Instant::now() > deadline {
                return Err("the vsock daemon did not listen in time".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(daemon)
    }

    /// The directory of its sockets.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connects to the guest's `port` through the daemon's host socket:
    /// `CONNECT <port>\n`, answered `OK <n>\n`; then the stream is the
    /// guest's connection.
    pub(crate) fn connect(&self, port: u32) -> BenchResult<UnixStream> {
        let mut s = UnixStream::connect(self.dir.join("vsock")).context("connect to the daemon")?;
        s.write_all(format!("CONNECT {port}\n").as_bytes())
            .context("CONNECT")?;
        s.set_read_timeout(Some(STEP_TIMEOUT))
            .context("read timeout")?;
        // Byte by byte: what follows the newline is the guest's.
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while answer.last() != Some(&b'\n') && answer.len() < 64 {
            if s.read(&mut byte).context("the daemon's answer")? == 0 {
                return Err(format!(
                    "vsock port {port}: the daemon closed the connection"
                ));
            }
            answer.push(byte[0]);
        }
        if !answer.starts_with(b"OK ") {
            return Err(format!(
                "vsock port {port}: the daemon answered {:?}",
                String::from_utf8_lossy(&answer)
            ));
        }
        s.set_read_timeout(None).context("read timeout")?;
        Ok(s)
    }
}

impl Drop for VsockDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a Unix socket is bound at `path` and listening (/proc/net/unix:
/// flags 00010000 is __SO_ACCEPTCON), as vmz checks it.
fn is_listening(path: &Path) -> bool {
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8 && f[3] == "00010000" && f[7] == path
        })
}
