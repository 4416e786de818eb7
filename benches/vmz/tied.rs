//! Children that never outlive the bench, as vmz's own spawner does for
//! QEMU and its helpers: spawned from one thread that lives as long as the
//! process, with `PR_SET_PDEATHSIG(SIGKILL)`. (The signal follows the
//! thread that forked, so a child forked by a short-lived thread, as the
//! scaling rows' threads are, would die with that thread.) No `super::*`:
//! every bench includes this file.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Request = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd`; the kernel sends its child SIGKILL when this process
/// dies, however it dies (a SIGKILLed or crashed bench leaves no QEMU,
/// virtiofsd or vsock daemon behind).
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let gone = || io::Error::other("the bench's spawner thread is gone");
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        // (if the thread cannot start, every spawn reports `gone`)
        let _ = std::thread::Builder::new()
            .name("bench-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only prctl, getppid and _exit (async-signal-safe), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The bench died before the prctl: nothing will signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = channel();
    spawner
        .lock()
        .map_err(|_| gone())?
        .send((cmd, tx))
        .map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}
