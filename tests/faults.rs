//! Faults: QEMU killed, guest panics, serial ends closed, a guest that
//! ignores the stop request, machines dropped at every point. Each with the
//! real test guest; each must end in a clean state.

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{guest_config, machine_with_events, Console, Resources, BOOT_TIMEOUT, MARKER};
use vmz::{ErrorCode, Event, Exit, Machine, State};

fn the_qemu() -> i32 {
    let kids = common::children();
    assert_eq!(kids.len(), 1, "exactly one QEMU: {kids:?}");
    kids[0] as i32
}

/// SIGKILL to QEMU at the point `ready` reaches: the "stopped with error"
/// event arrives within 2 s and says what happened.
fn kill_qemu(wait_for_marker: bool) {
    let before = Resources::now();
    {
        let (console, input, output) = Console::new();
        let (vm, events) = machine_with_events(&guest_config(input, output));
        common::start(&vm).unwrap();
        assert!(matches!(common::recv(&events, "Started"), Event::Started));
        if wait_for_marker {
            console.expect(MARKER, BOOT_TIMEOUT);
        } else {
            assert!(!console.text().contains(MARKER), "still booting");
        }
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(the_qemu(), libc::SIGKILL) }, 0);
        let killed = Instant::now();

        let event = events
            .recv_timeout(Duration::from_secs(2))
            .expect("an event within 2 s");
        let Event::StoppedWithError(e) = event else {
            panic!("expected StoppedWithError, got {event:?}");
        };
        assert!(killed.elapsed() < Duration::from_secs(2));
        assert_eq!(e.code(), ErrorCode::Runtime);
        assert!(e.to_string().contains("killed by signal 9"), "{e}");
        assert!(matches!(vm.exit(), Some(Exit::Error(_))));
        assert_eq!(vm.state(), State::Error, "stopped, in error");
        assert!(common::children().is_empty());
        common::release(vm);
        console.close();
    }
    before.assert_restored();
}

#[test]
fn qemu_killed_while_the_guest_boots() {
    let _s = common::serial();
    common::guest();
    kill_qemu(false);
}

#[test]
fn qemu_killed_while_the_guest_runs() {
    let _s = common::serial();
    common::guest();
    kill_qemu(true);
}

#[test]
fn a_guest_kernel_panic_ends_the_vm_with_an_error() {
    common::with_booted_guest(|vm, events, console| {
        console.send_line("panic");
        let exit = common::wait(vm, BOOT_TIMEOUT);
        let Exit::Error(e) = exit else {
            panic!("expected an error, got {exit:?}");
        };
        assert_eq!(e.code(), ErrorCode::Runtime);
        assert!(e.to_string().contains("panicked"), "{e}");
        // The handler is told the same, once.
        assert!(matches!(common::recv(events, "Started"), Event::Started));
        match common::recv(events, "StoppedWithError") {
            Event::StoppedWithError(e) => {
                assert_eq!(e.code(), ErrorCode::Runtime);
                assert!(e.to_string().contains("panicked"), "{e}");
            }
            other => panic!("expected StoppedWithError, got {other:?}"),
        }
        assert!(events.try_recv().is_err(), "exactly one end event");
    });
}

#[test]
fn closing_the_serial_input_leaves_the_guest_running() {
    common::with_booted_guest(|vm, events, console| {
        console.close_input();
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(vm.state(), State::Running);
        assert!(vm.exit().is_none());
        // It still honours a graceful stop, and reports it.
        vm.request_stop().unwrap();
        assert!(matches!(
            vm.wait_timeout(Duration::from_secs(10)),
            Some(Exit::GuestStopped)
        ));
        assert!(matches!(common::recv(events, "Started"), Event::Started));
        assert!(matches!(
            common::recv(events, "GuestStopped"),
            Event::GuestStopped
        ));
    });
}

#[test]
fn a_vanished_serial_reader_neither_kills_the_host_nor_the_vm() {
    let _s = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (mut console, input, _) = Console::new();
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let (vm, events) = machine_with_events(&guest_config(input, out_w.into()));
        common::start(&vm).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(MARKER) {
            let n = out_r.read(&mut buf).unwrap();
            assert!(n > 0, "output ended before the marker");
            seen.extend_from_slice(&buf[..n]);
        }
        drop(out_r); // nobody reads the guest's output any more: EPIPE
        console.send_line("cat-bytes 200000");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(vm.state(), State::Running, "the VM survives EPIPE");
        // This process survived too (no SIGPIPE death), and the guest still
        // takes commands and reports its end.
        console.send_line("poweroff");
        assert!(matches!(
            vm.wait_timeout(BOOT_TIMEOUT),
            Some(Exit::GuestStopped)
        ));
        assert!(matches!(common::recv(&events, "Started"), Event::Started));
        assert!(matches!(
            common::recv(&events, "GuestStopped"),
            Event::GuestStopped
        ));
        common::release(vm);
        console.close();
    }
    before.assert_restored();
}

#[test]
fn a_guest_that_ignores_the_stop_request_is_forced_by_stop() {
    common::with_booted_guest(|vm, _events, console| {
        console.send_line("ignore-powerbutton");
        console.expect("vmz-guest: ignoring power button", BOOT_TIMEOUT);

        vm.request_stop().expect("the request returns");
        console.expect("vmz-guest: power button ignored", BOOT_TIMEOUT);
        assert!(vm.wait_timeout(Duration::from_secs(2)).is_none());
        assert_eq!(vm.state(), State::Running, "the guest keeps running");

        let t = Instant::now();
        let exit = common::stop(vm, Duration::from_secs(2)).unwrap();
        assert!(matches!(exit, Exit::ForceStopped), "{exit:?}");
        assert!(t.elapsed() >= Duration::from_secs(2), "waited the grace");
        assert_eq!(vm.state(), State::Stopped);
    });
}

#[test]
fn stop_returns_the_guests_own_stop_when_it_complies() {
    common::with_booted_guest(|vm, _events, _console| {
        let exit = common::stop(vm, Duration::from_secs(10)).unwrap();
        assert!(matches!(exit, Exit::GuestStopped), "{exit:?}");
        // Stopping a stopped VM reports the same end.
        assert!(matches!(
            common::stop(vm, Duration::from_secs(1)).unwrap(),
            Exit::GuestStopped
        ));
    });
}

#[test]
fn dropping_a_machine_at_any_point_is_safe() {
    let _s = common::serial();
    common::guest();
    let before = Resources::now();

    // Before start: no event at all.
    {
        let (console, input, output) = Console::new();
        let (vm, log) = common::machine_with_event_log(&guest_config(input, output));
        let seen = common::release_checked(vm, log);
        assert!(seen.is_empty(), "{seen:?}");
        console.close();
    }
    // While starting (QEMU takes far longer to answer QMP than the drop
    // takes to follow): the start completion still runs, with an error.
    {
        let (console, input, output) = Console::new();
        let (vm, log) = common::machine_with_event_log(&guest_config(input, output));
        let (tx, rx) = mpsc::channel();
        vm.start_with(move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        let seen = common::release_checked(vm, log);
        assert!(common::children().is_empty());
        let result = rx.recv_timeout(Duration::from_secs(5)).expect("completion");
        let Err(e) = result else {
            panic!("a start interrupted by the release reported success ({seen:?})");
        };
        assert!(
            matches!(e.code(), ErrorCode::StartFailed | ErrorCode::InvalidState),
            "{e}"
        );
        assert!(
            !seen.iter().any(|e| matches!(e, Event::Started)),
            "{seen:?}"
        );
        console.close();
    }
    // While the guest boots, and while it stops: Started, then nothing.
    for stopping in [false, true] {
        let (console, input, output) = Console::new();
        let (vm, log) = common::machine_with_event_log(&guest_config(input, output));
        common::start(&vm).unwrap();
        if stopping {
            console.expect(MARKER, BOOT_TIMEOUT);
            vm.request_stop().unwrap();
        }
        let seen = common::release_checked(vm, log);
        assert!(common::children().is_empty());
        assert!(
            matches!(seen[0], Event::Started),
            "stopping {stopping}: {seen:?}"
        );
        console.close();
    }
    before.assert_restored();
}

/// Fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp, ...
fn proc_stat(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat.rfind(')') {
        Some(i) => stat[i + 2..].split(' ').map(String::from).collect(),
        None => Vec::new(),
    }
}

/// The blocked-signal mask of a process (`SigBlk` in `/proc/<pid>/status`).
fn blocked_signals(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .expect("SigBlk in /proc/pid/status");
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// How QEMU is spawned, seen from outside: in its own process group (so a
/// terminal's Ctrl-C to the host's group does not reach it), with no
/// signal blocked that it needs (the spawner thread blocks them all for
/// itself), so a SIGTERM ends it; and an end QEMU reports as caused by the
/// host (SHUTDOWN reason `host-signal`, guest false) is an error, never the
/// guest's own stop.
#[test]
fn qemu_runs_in_its_own_group_with_signals_open_and_a_host_signal_is_not_a_guest_stop() {
    common::with_booted_guest(|vm, events, _console| {
        let qemu = the_qemu();
        let fields = proc_stat(qemu);
        let pgrp: i32 = fields[2].parse().unwrap();
        // SAFETY: getpgrp has no preconditions.
        let ours = unsafe { libc::getpgrp() };
        assert_eq!(
            pgrp, qemu,
            "QEMU leads its own process group (ours: {ours})"
        );
        let blocked = blocked_signals(qemu);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            assert_eq!(
                blocked & (1 << (sig - 1)),
                0,
                "signal {sig} is blocked in QEMU (SigBlk {blocked:016x})"
            );
        }

        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(qemu, libc::SIGTERM) }, 0);
        let exit = common::wait(vm, Duration::from_secs(20));
        let Exit::Error(e) = &exit else {
            panic!("QEMU ended by a host signal must be an error, got {exit:?}");
        };
        assert_eq!(e.code(), ErrorCode::Runtime, "{e}");
        // QEMU's own name for the reason (its stderr alone would say
        // "terminating on signal 15" without the reason).
        assert!(e.to_string().contains("host-signal"), "says why: {e}");
        assert!(matches!(common::recv(events, "Started"), Event::Started));
        let end = common::recv(events, "StoppedWithError");
        assert!(matches!(end, Event::StoppedWithError(_)), "{end:?}");
    });
}

/// QEMU reports a guest poweroff on QMP (SHUTDOWN, guest true) just before
/// it exits. Even when the VM's queue sees the exit first (here: its only
/// thread is held in an event handler until QEMU is gone), the engine reads
/// what is left on the QMP socket before it decides how QEMU ended.
#[test]
fn a_poweroff_is_the_guests_stop_even_when_the_exit_is_seen_first() {
    let _s = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (mut console, input, output) = Console::new();
        let (entered_tx, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let vm = Machine::with_event_handler(&guest_config(input, output), move |e| {
            if matches!(e, Event::Started) {
                let _ = entered_tx.send(());
                // Holds the VM's queue (bounded: never past 2 minutes).
                let _ = released.recv_timeout(Duration::from_secs(120));
            }
        })
        .unwrap();
        vm.start_with(|r| r.expect("start")).unwrap();
        entered
            .recv_timeout(common::START_BOUND)
            .expect("Started reached the handler");
        console.expect(MARKER, BOOT_TIMEOUT);
        let qemu = the_qemu();
        console.send_line("poweroff");
        // QEMU has exited (a zombie: the engine reaps it on the held queue).
        let deadline = Instant::now() + Duration::from_secs(30);
        while proc_stat(qemu).first().map(String::as_str) != Some("Z") {
            assert!(
                Instant::now() < deadline,
                "QEMU did not exit after poweroff"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        release.send(()).unwrap();
        let exit = common::wait(&vm, Duration::from_secs(20));
        assert!(matches!(exit, Exit::GuestStopped), "{exit:?}");
        common::release(vm);
        console.close();
    }
    before.assert_restored();
}

/// A guest without the pvpanic driver cannot tell the host that it
/// panicked: `panic=-1` (the test guest's command line) reboots it, and
/// QEMU's `-no-reboot` turns that into an end, so the VM still ends by
/// itself instead of rebooting forever.
#[test]
fn a_panic_without_the_pvpanic_driver_still_ends_the_vm() {
    let _s = common::serial();
    let g = common::guest();
    let before = Resources::now();
    {
        let (mut console, input, output) = Console::new();
        let config = common::guest_builder(&g.kernel)
            .command_line(format!(
                "{} module_blacklist=pvpanic_mmio,pvpanic_pci,pvpanic",
                g.cmdline
            ))
            .serial_input(input)
            .serial_output(output)
            .build()
            .unwrap();
        let (vm, events) = machine_with_events(&config);
        drop(config);
        common::start(&vm).unwrap();
        console.expect(MARKER, BOOT_TIMEOUT);
        console.send_line("panic");
        // Without pvpanic the host cannot tell a panic from a reboot: the
        // end is the guest's (README, faults table).
        let exit = common::wait(&vm, BOOT_TIMEOUT);
        assert!(matches!(exit, Exit::GuestStopped), "{exit:?}");
        console.expect("Kernel panic", Duration::from_secs(5));
        assert!(matches!(common::recv(&events, "Started"), Event::Started));
        let end = common::recv(&events, "the end event");
        assert!(matches!(end, Event::GuestStopped), "{end:?}");
        common::release(vm);
        console.close();
    }
    before.assert_restored();
}
