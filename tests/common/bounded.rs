//! Every wait of a test is bounded: a call that may block (start, wait,
//! force stop, drop, an event, a console's end) runs under a watchdog that,
//! when the bound passes, prints what the test was waiting for and aborts
//! the test binary. A hang in the code under test becomes a failure that
//! says where, instead of a CI job stuck until its own timeout.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use vmz::{Event, Exit, Machine};

/// How long a VM may take to start (QEMU's start, the QMP handshake) or to
/// reach its marker: generous under emulation on a busy 2-core machine.
pub const START_BOUND: Duration = Duration::from_secs(60);
/// How long a stop (forced, or a release by `drop`) may take.
pub const STOP_BOUND: Duration = Duration::from_secs(30);
/// How long a test waits for an event that must come.
pub const EVENT_BOUND: Duration = Duration::from_secs(60);
/// The bound of a whole VM test (see [`crate::common::serial`]).
pub const TEST_BOUND: Duration = Duration::from_secs(480);

/// Runs `f`, which must return within `limit`; otherwise prints
/// "`what` did not return within `limit`" and aborts this test binary
/// (a thread stuck in the code under test cannot be unwound).
pub fn within<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let watchdog = Watchdog::arm(what, limit);
    let out = f();
    watchdog.disarm();
    out
}

/// Aborts the process if not disarmed (or dropped) within its limit.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(what: &str, limit: Duration) -> Watchdog {
        let (done, disarmed) = mpsc::channel::<()>();
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        let what = what.to_string();
        let armed = Instant::now();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                    eprintln!(
                        "\nBOUND EXCEEDED in {test}: {what} did not return within {limit:?} \
                         (waited {:?}); aborting the test binary",
                        armed.elapsed()
                    );
                    std::process::abort();
                }
            })
            .expect("spawn the watchdog thread");
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }

    pub fn disarm(self) {}
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with `Disconnected`; joining
        // keeps the process's thread count what it was (tests count threads).
        self.done.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `vm.start()`, bounded.
pub fn start(vm: &Machine) -> vmz::Result<()> {
    within("Machine::start", START_BOUND, || vm.start())
}

/// `vm.force_stop()`, bounded.
pub fn force_stop(vm: &Machine) -> vmz::Result<()> {
    within("Machine::force_stop", STOP_BOUND, || vm.force_stop())
}

/// `vm.stop(grace)`, bounded by the grace and a stop.
pub fn stop(vm: &Machine, grace: Duration) -> vmz::Result<Exit> {
    within("Machine::stop", grace + STOP_BOUND, || vm.stop(grace))
}

/// The VM's end, which must come within `limit`.
pub fn wait(vm: &Machine, limit: Duration) -> Exit {
    within("Machine::wait_timeout", limit + STOP_BOUND, || {
        vm.wait_timeout(limit)
    })
    .expect("wait_timeout outside a handler")
    .unwrap_or_else(|| {
        panic!(
            "the VM did not end within {limit:?} (state {:?})",
            vm.state()
        )
    })
}

/// Drops (releases) the machine, bounded: release stops a running VM and
/// waits for it.
pub fn release(vm: Machine) {
    within(
        "dropping the Machine (vmz_release)",
        STOP_BOUND,
        move || drop(vm),
    )
}

/// The next event, which must come within [`EVENT_BOUND`]; `what` says
/// which event the test waits for.
pub fn recv(events: &mpsc::Receiver<Event>, what: &str) -> Event {
    events
        .recv_timeout(EVENT_BOUND)
        .unwrap_or_else(|e| panic!("no event ({what} expected) within {EVENT_BOUND:?}: {e}"))
}
