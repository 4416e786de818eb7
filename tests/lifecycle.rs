//! The life cycle on real guests: end reasons (reboot, panic, poweroff;
//! QEMU's SIGKILL and SIGTERM and a panic without pvpanic are in
//! tests/faults.rs), each with the machine dropped from inside its own
//! handler, also on `Running`; the state stream through pause and resume;
//! what a handler may not call.

// These tests boot test guests under QEMU (scripts/make-guest.sh): Linux
// only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{events_until_end, guest_config, Console, Resources, BOOT_TIMEOUT};
use vmz::{Error, ErrorCode, Event, Exit, Machine, State};

fn the_qemu() -> i32 {
    let kids = common::children();
    assert_eq!(kids.len(), 1, "exactly one QEMU: {kids:?}");
    kids[0] as i32
}

/// Sets its flag when dropped, then closes its channel.
struct SetOnDrop(Arc<AtomicBool>, #[allow(dead_code)] mpsc::Sender<()>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// How a test ends the guest.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// A line for the test guest's console.
    Guest(&'static str),
    /// The handler drops the machine when it sees `State(Running)`.
    DropOnRunning,
}

/// Boots a guest whose handler owns the only `Machine`, the way a tool's
/// registry does (`Mutex<Option<Machine>>`), and drops it from inside the
/// handler: on `Ended` (or on `Running` for `DropOnRunning`). Returns the
/// events the handler saw, by name, and the exit.
fn drop_from_handler(ending: Ending) -> (Vec<String>, Exit) {
    let before = Resources::now();
    let (mut console, input, output) = Console::new();
    let registry: Arc<Mutex<Option<Machine>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let handler_registry = registry.clone();
    // Dropped with the handler: tells when the bridge let go of it.
    let (alive_tx, alive_rx) = mpsc::channel::<()>();
    // Set when the handler is freed; the handler checks it right after
    // dropping the machine, through references of its own stack only.
    let freed = Arc::new(AtomicBool::new(false));
    let freed_flag = SetOnDrop(freed.clone(), alive_tx);
    let (violation_tx, violation_rx) = mpsc::channel::<&'static str>();
    let freed_in_handler = freed.clone();
    let vm = Machine::with_event_handler(&guest_config(input, output), move |event| {
        let _alive = &freed_flag;
        let drop_now = matches!(
            (&event, ending),
            (Event::Ended(_), _) | (Event::State(State::Running), Ending::DropOnRunning)
        );
        let _ = tx.send(event);
        if drop_now {
            // The drop happens here, inside the handler, on the VM's queue.
            let vm = handler_registry.lock().unwrap().take();
            let (freed, violation) = (freed_in_handler.clone(), violation_tx.clone());
            drop(vm);
            if freed.load(Ordering::SeqCst) {
                // The closure running this was freed under it (the
                // use-after-free of issue 9): only stack values are used.
                let _ = violation.send("the handler was freed while it ran");
            }
        }
    })
    .unwrap();
    vm.start_with(|r| r.expect("start")).unwrap();
    *registry.lock().unwrap() = Some(vm);

    match ending {
        Ending::Guest(line) => {
            console.expect(common::MARKER, BOOT_TIMEOUT);
            console.send_line(line);
        }
        Ending::DropOnRunning => {}
    }
    // Every event up to the end, typed; nothing after it.
    let mut names = Vec::new();
    let exit = loop {
        let event = common::recv(&rx, &format!("the end ({ending:?}) after {names:?}"));
        names.push(common::event_name(&event));
        if let Event::Ended(exit) = event {
            break exit;
        }
    };
    // The handler was dropped once the bridge let go of the VM: the
    // channel's other end closes, with no event after the end.
    match alive_rx.recv_timeout(Duration::from_secs(10)) {
        Err(mpsc::RecvTimeoutError::Disconnected) => {}
        other => panic!("the handler was not dropped within 10 s after the end: {other:?}"),
    }
    assert!(rx.try_recv().is_err(), "an event after the end");
    assert_eq!(violation_rx.try_recv().ok(), None);
    assert!(
        freed.load(Ordering::SeqCst),
        "the handler was freed in the end"
    );
    assert!(registry.lock().unwrap().is_none());
    assert!(common::children().is_empty(), "QEMU is gone");
    console.close();
    before.assert_restored();
    (names, exit)
}

/// The guest's own reboot ends the VM as `Rebooted` (QEMU runs with
/// -no-reboot), and dropping the machine from the end handler is safe.
#[test]
fn a_guest_reboot_ends_the_vm_as_rebooted() {
    let _s = common::serial();
    common::guest();
    let (names, exit) = drop_from_handler(Ending::Guest("reboot"));
    assert!(matches!(exit, Exit::Rebooted), "{exit:?}");
    assert_eq!(
        names,
        [
            "State(Starting)",
            "State(Running)",
            "State(Stopped)",
            "Ended(Rebooted)"
        ]
    );
}

/// A kernel panic the guest reports through its pvpanic driver ends the VM
/// as `Panicked`, in the Error state.
#[test]
fn a_guest_panic_with_pvpanic_ends_the_vm_as_panicked() {
    let _s = common::serial();
    common::guest();
    let (names, exit) = drop_from_handler(Ending::Guest("panic"));
    assert!(matches!(exit, Exit::Panicked), "{exit:?}");
    assert_eq!(
        names,
        [
            "State(Starting)",
            "State(Running)",
            "State(Error)",
            "Ended(Panicked)"
        ]
    );
}

/// The guest's poweroff, with the machine dropped from the end handler
/// (the pattern that crashed before: a use-after-free).
#[test]
fn a_guest_poweroff_with_the_machine_dropped_from_its_end_handler() {
    let _s = common::serial();
    common::guest();
    let (names, exit) = drop_from_handler(Ending::Guest("poweroff"));
    assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
    assert_eq!(
        names,
        [
            "State(Starting)",
            "State(Running)",
            "State(Stopped)",
            "Ended(PoweredOff)"
        ]
    );
}

/// Dropping the running machine from inside its handler (on `Running`)
/// force-stops it; the handler still gets each state and the one end event,
/// after the call that dropped it has returned, and is then freed.
#[test]
fn dropping_the_machine_from_its_running_handler_ends_it_as_forced() {
    let _s = common::serial();
    common::guest();
    let (names, exit) = drop_from_handler(Ending::DropOnRunning);
    assert!(matches!(exit, Exit::ForceStopped), "{exit:?}");
    assert_eq!(
        names,
        [
            "State(Starting)",
            "State(Running)",
            "State(Stopping)",
            "State(Stopped)",
            "Ended(ForceStopped)"
        ]
    );
}

/// Host CPU time (user + system) QEMU used so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time QEMU uses over `span`.
fn cpu_over(pid: i32, span: Duration) -> Duration {
    let t0 = cpu_time(pid);
    std::thread::sleep(span);
    cpu_time(pid) - t0
}

/// start -> pause -> resume -> stop: each state once, in order; a paused
/// guest uses no host CPU; the console works after the resume; blocking
/// calls from the handler are refused as the caller's mistake, not as the
/// VM's end.
#[test]
fn pause_and_resume_with_the_state_stream_in_order() {
    let _s = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (mut console, input, output) = Console::new();
        let (tx, rx) = mpsc::channel();
        let cell: Arc<Mutex<Option<Arc<Machine>>>> = Arc::default();
        let in_handler = cell.clone();
        let (mistake_tx, mistake_rx) = mpsc::channel();
        let vm = Arc::new(
            Machine::with_event_handler(&guest_config(input, output), move |event| {
                if let Event::State(State::Paused) = event {
                    let vm = in_handler.lock().unwrap().clone().unwrap();
                    // The handler may look, not wait.
                    assert_eq!(vm.state(), State::Paused, "state() agrees with the event");
                    let _ = mistake_tx.send((vm.wait().map(drop), vm.resume()));
                }
                let _ = tx.send(event);
            })
            .unwrap(),
        );
        *cell.lock().unwrap() = Some(vm.clone());
        vm.start().unwrap();
        console.expect(common::MARKER, BOOT_TIMEOUT);
        let qemu = the_qemu();

        console.send_line("cpu-burn");
        console.expect("vmz-guest: burning", BOOT_TIMEOUT);
        let running = cpu_over(qemu, Duration::from_secs(3));

        vm.pause().unwrap();
        assert_eq!(vm.state(), State::Paused);
        let paused = cpu_over(qemu, Duration::from_secs(3));
        eprintln!("QEMU's CPU time over 3 s: {running:?} running a busy guest, {paused:?} paused");
        assert!(
            paused <= Duration::from_millis(150),
            "a paused guest used {paused:?} of host CPU in 3 s (running: {running:?})"
        );
        assert!(
            running >= paused * 4 && running >= Duration::from_millis(600),
            "the busy guest used only {running:?} in 3 s (paused: {paused:?})"
        );
        // Nothing the guest must do is accepted while it is paused.
        let e = vm.request_stop().unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        let e = vm.pause().unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");

        let (wait, resume) = mistake_rx
            .recv_timeout(BOOT_TIMEOUT)
            .expect("the handler's calls");
        assert!(
            matches!(wait, Err(Error::CalledFromHandler("Machine::wait"))),
            "{wait:?}"
        );
        assert!(
            matches!(resume, Err(Error::CalledFromHandler(_))),
            "{resume:?}"
        );
        assert!(vm.exit().is_none(), "a usage mistake is not the VM's end");

        vm.resume().unwrap();
        assert_eq!(vm.state(), State::Running);
        console.send_line("after the pause");
        console.expect("echo: after the pause", BOOT_TIMEOUT);

        let exit = vm.stop(Duration::from_secs(30)).unwrap();
        assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
        assert_eq!(
            events_until_end(&rx),
            [
                "State(Starting)",
                "State(Running)",
                "State(Pausing)",
                "State(Paused)",
                "State(Resuming)",
                "State(Running)",
                "State(Stopped)",
                "Ended(PoweredOff)"
            ]
        );
        assert_eq!(vm.state(), State::Stopped);
        let e = vm.resume().unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        cell.lock().unwrap().take();
        drop(vm);
        console.close();
    }
    before.assert_restored();
}
