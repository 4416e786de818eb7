//! Descriptors a child process inherits at given numbers, the way vmz hands
//! QEMU and its helpers theirs (disk images in fd sets, sockets), for the
//! references that run the same command lines alone.

use super::*;

use std::os::unix::process::CommandExt;

/// close_range's flag: mark close-on-exec instead of closing (linux/close_range.h).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Descriptors for a child, each at its number there. They stay open here
/// until this is dropped (after the spawn). As vmz's spawner does, the
/// child gets no other descriptor above 2 (a runner's leaked ones, such as
/// cargo's jobserver pipe, would otherwise reach it).
#[derive(Default)]
pub(crate) struct Inherit {
    fds: Vec<(OwnedFd, i32)>,
}

impl Inherit {
    /// The child gets `fd` as descriptor `target` (0-2 replace the standard
    /// stream the `Command` set up).
    pub(crate) fn add(&mut self, fd: OwnedFd, target: i32) -> &mut Inherit {
        self.fds.push((fd, target));
        self
    }

    /// Arranges for `cmd`'s child to get the descriptors.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        let pairs: Vec<(i32, i32)> = self
            .fds
            .iter()
            .map(|(fd, target)| (fd.as_raw_fd(), *target))
            .collect();
        // Parked above every number involved, so that moving one into place
        // never closes another still to be moved.
        let park = pairs.iter().map(|&(a, b)| a.max(b)).max().unwrap_or(2) + 1;
        let mut targets: Vec<u32> = pairs.iter().map(|&(_, t)| t as u32).collect();
        targets.sort_unstable();
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only dup2 and close (async-signal-safe), allocating nothing.
        unsafe {
            cmd.pre_exec(move || {
                for (k, &(fd, _)) in pairs.iter().enumerate() {
                    if libc::dup2(fd, park + k as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (k, &(_, target)) in pairs.iter().enumerate() {
                    // dup2 leaves the new descriptor without FD_CLOEXEC.
                    if libc::dup2(park + k as i32, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(park + k as i32);
                }
                // Every other descriptor above 2 closes at exec (close-on-
                // exec, not closed now: the spawn's own error pipe must
                // live until the exec). Linux 5.11+; older kernels leave
                // them as they are.
                let mut from = 3u32;
                for &t in targets.iter().chain(std::iter::once(&u32::MAX)) {
                    if t > from {
                        libc::syscall(libc::SYS_close_range, from, t - 1, CLOSE_RANGE_CLOEXEC);
                    }
                    from = t.saturating_add(1);
                }
                Ok(())
            });
        }
    }
}
