//! Faults: QEMU killed, guest panics, serial ends closed, a guest that
//! ignores the stop request, machines dropped at every point. Each with the
//! real test guest; each must end in a clean state.

mod common;

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{guest_config, machine_with_events, Console, Resources, BOOT_TIMEOUT, MARKER};
use vmz::{ErrorCode, Event, Exit, State};

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
    common::with_booted_guest(|vm, _events, console| {
        console.send_line("panic");
        let exit = vm.wait_timeout(BOOT_TIMEOUT).expect("the VM ends");
        let Exit::Error(e) = exit else {
            panic!("expected an error, got {exit:?}");
        };
        assert_eq!(e.code(), ErrorCode::Runtime);
        assert!(e.to_string().contains("panicked"), "{e}");
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
