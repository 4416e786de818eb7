//! Process helpers: resident memory and exit instants of QEMU processes.

use super::*;

pub(crate) use common::children;

/// VmRSS of a process in KiB (`self` or a pid).
pub(crate) fn rss_kib(pid: &str) -> BenchResult<u64> {
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
pub(crate) struct ExitWatch {
    pub(crate) thread: JoinHandle<BenchResult<Instant>>,
}

impl ExitWatch {
    pub(crate) fn new(pid: u32) -> BenchResult<ExitWatch> {
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

    pub(crate) fn exited_at(self) -> BenchResult<Instant> {
        self.thread
            .join()
            .map_err(|_| "exit watch thread panicked".to_string())?
    }
}
