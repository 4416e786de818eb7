//! Boots the real test guest (scripts/make-guest.sh) under the platform's
//! engine and checks the whole path: start, serial both ways, the three
//! ways a VM ends, and that nothing is left behind.

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{
    event_names, events_until_end, guest_config, machine_with_events, Console, Resources,
    BOOT_TIMEOUT, MARKER,
};
use vmz::{ErrorCode, Exit, Machine, State};

#[test]
fn boots_echoes_serial_and_powers_off() {
    let _serial = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (mut console, input, output) = Console::new();
        // Copies sharing the caller's open file descriptions: QEMU must not
        // change their flags (it makes its own stdin/stdout non-blocking).
        let probes = [input.try_clone().unwrap(), output.try_clone().unwrap()];
        let config = guest_config(input, output);
        let (vm, events) = machine_with_events(&config);
        drop(config);
        assert_eq!(vm.state(), State::Created);

        common::start(&vm).expect("start");
        assert_eq!(
            event_names(&events, 2, "the start"),
            ["State(Starting)", "State(Running)"]
        );
        assert_eq!(vm.state(), State::Running);
        console.expect(MARKER, BOOT_TIMEOUT);
        for fd in &probes {
            // SAFETY: fcntl(F_GETFL) on a descriptor we own.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
            assert_eq!(
                flags & libc::O_NONBLOCK,
                0,
                "the caller's descriptor turned non-blocking"
            );
        }
        drop(probes);

        console.expect(MARKER, BOOT_TIMEOUT);
        // The guest gets the command line exactly as given.
        console.send_line("cmdline");
        console.expect(
            &format!("vmz-guest: cmdline [{}]", common::guest().cmdline),
            BOOT_TIMEOUT,
        );
        // NAT (on by default): the guest's virtio NIC gets an address from
        // QEMU's user-mode network (DHCP on the host's side, no outside
        // traffic).
        console.send_line("net");
        console.expect("vmz-guest: net 10.0.2.", BOOT_TIMEOUT);
        console.send_line("hello from the host");
        console.expect("echo: hello from the host", BOOT_TIMEOUT);
        assert!(
            !console.text().contains("\nhello from the host"),
            "the guest should not echo raw input: {}",
            console.text()
        );

        // The guest's own poweroff ends the VM with "powered off".
        console.send_line("poweroff");
        let exit = common::wait(&vm, BOOT_TIMEOUT);
        assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
        assert_eq!(
            events_until_end(&events),
            ["State(Stopped)", "Ended(PoweredOff)"]
        );
        assert_eq!(vm.state(), State::Stopped);
        common::release(vm);
        console.close();
    }
    before.assert_restored();
}

#[test]
fn graceful_stop_request_ends_a_running_guest_within_10s() {
    common::with_booted_guest(|vm, events, console| {
        vm.request_stop().expect("request stop");
        let exit = vm
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "the guest did not stop within 10 s; console:\n{}",
                    console.text()
                )
            });
        assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
        assert_eq!(
            events_until_end(events),
            [
                "State(Starting)",
                "State(Running)",
                "State(Stopped)",
                "Ended(PoweredOff)"
            ]
        );
        assert!(console.text().contains("vmz-guest: power button"));
    });
}

#[test]
fn force_stop_ends_it_and_a_stopped_vm_refuses_more() {
    common::with_booted_guest(|vm, events, _console| {
        // Starting twice is refused, and the VM keeps running.
        let again = common::start(vm).unwrap_err();
        assert_eq!(again.code(), ErrorCode::InvalidState, "{again}");
        assert_eq!(vm.state(), State::Running);

        common::force_stop(vm).expect("force stop");
        assert!(matches!(vm.exit(), Some(Exit::ForceStopped)));
        assert_eq!(vm.state(), State::Stopped);
        assert_eq!(
            events_until_end(events),
            [
                "State(Starting)",
                "State(Running)",
                "State(Stopping)",
                "State(Stopped)",
                "Ended(ForceStopped)"
            ]
        );

        let e = vm.request_stop().unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState);
        let e = common::force_stop(vm).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState);
    });
}

#[test]
fn dropping_a_running_machine_stops_its_guest() {
    let _serial = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (console, input, output) = Console::new();
        let (vm, log) = common::machine_with_event_log(&guest_config(input, output));
        common::start(&vm).expect("start");
        console.expect(MARKER, BOOT_TIMEOUT);
        assert_eq!(common::children().len(), 1, "one QEMU runs");
        // Drop waits for the end: QEMU is gone after it; the handler saw
        // exactly one end event, the forced one, none after the drop, and
        // was freed.
        let seen = common::release_checked(vm, log);
        assert!(common::children().is_empty());
        let seen: Vec<String> = seen.iter().map(common::event_name).collect();
        assert_eq!(
            seen,
            [
                "State(Starting)",
                "State(Running)",
                "State(Stopping)",
                "State(Stopped)",
                "Ended(ForceStopped)"
            ]
        );
        console.close();
    }
    before.assert_restored();
}

#[test]
fn a_panicking_handler_does_not_cross_into_the_bridge() {
    let _serial = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (console, input, output) = Console::new();
        let vm = Machine::with_event_handler(&guest_config(input, output), |e| {
            panic!("handler panics on {e:?}");
        })
        .unwrap();
        common::start(&vm).expect("start despite the panicking handler");
        console.expect(MARKER, BOOT_TIMEOUT);
        common::force_stop(&vm).unwrap();
        assert!(matches!(
            common::wait(&vm, common::STOP_BOUND),
            Exit::ForceStopped
        ));
        common::release(vm);
        console.close();
    }
    before.assert_restored();
}

/// The VM host of `qemu_dies_with_the_process_that_started_it`: boots a
/// guest, prints QEMU's pid, and waits to be killed.
#[test]
#[ignore = "helper process, run by qemu_dies_with_the_process_that_started_it"]
fn orphan_host() {
    let (console, input, output) = Console::new();
    let vm = Machine::new(&guest_config(input, output)).unwrap();
    common::start(&vm).unwrap();
    console.expect(MARKER, BOOT_TIMEOUT);
    println!("QEMU-PID {}", common::children()[0]);
    std::thread::sleep(Duration::from_secs(120));
    unreachable!("the parent test kills this process");
}

#[test]
fn qemu_dies_with_the_process_that_started_it() {
    use std::io::BufRead;
    let _serial = common::serial();
    common::guest();
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "orphan_host", "--nocapture"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(host.stdout.take().unwrap());
    let qemu_pid: i32 = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("QEMU-PID ").map(|p| p.parse().unwrap()))
        .expect("the host printed QEMU's pid");
    let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(qemu_pid));

    host.kill().unwrap(); // SIGKILL: no destructor runs in the host
    host.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(qemu_pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // QEMU was the host's child: once dead it is reaped by init, so its
    // /proc entry goes away.
    assert!(!alive(qemu_pid), "QEMU {qemu_pid} outlived its host");
}

#[test]
fn fast_boot_options_are_appended_only_when_asked_for() {
    let _serial = common::serial();
    let g = common::guest();
    let before = Resources::now();
    let fast = common::guest_builder(&g.kernel).fast_boot_options(true);
    common::boot_with(fast, |console| {
        console.send_line("cmdline");
        console.expect(
            &format!(
                "vmz-guest: cmdline [{} cryptomgr.notests no_timer_check]",
                g.cmdline
            ),
            BOOT_TIMEOUT,
        );
    });
    before.assert_restored();
}

/// A bzImage is unpacked once on the host into the kernel cache and boots
/// from there: the cached file is exactly the uncompressed kernel.
#[test]
fn a_bzimage_is_unpacked_once_into_the_kernel_cache() {
    let _serial = common::serial();
    let g = common::guest();
    let cache = common::TempDir(
        std::env::temp_dir().join(format!("vmz-kernel-cache-{}", std::process::id())),
    );
    // Only this test boots a bzImage, and VM tests run one at a time.
    std::env::set_var("VMZ_KERNEL_CACHE", &cache.0);
    let before = Resources::now();
    let boot = || common::boot_with(common::guest_builder(&g.bzimage), |_| {});
    boot();
    // The entry, its record (.rec) and the pointer from the bzImage's
    // file version to it (.ptr): KernelCacheStore.swift.
    let mut cached: Vec<_> = std::fs::read_dir(&cache.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cached.sort_by_key(|p| !p.to_string_lossy().ends_with(".vmlinux"));
    assert_eq!(
        cached.len(),
        3,
        "one cached kernel, its record and pointer, no leftovers: {cached:?}"
    );
    assert!(cached[0].to_string_lossy().ends_with(".vmlinux"));
    assert!(
        std::fs::read(&cached[0]).unwrap() == std::fs::read(&g.kernel).unwrap(),
        "the cached kernel is the bzImage's payload, uncompressed"
    );
    let made = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    boot();
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        made,
        "the second boot used the cache"
    );
    std::env::remove_var("VMZ_KERNEL_CACHE");
    before.assert_restored();
}

/// vmz boots QEMU with qboot when qboot is installed next to the QEMU
/// binary (`<prefix>/share/qemu/qboot.rom` for `<prefix>/bin/qemu-…`), and
/// with QEMU's default firmware when it is not; the guest boots either way.
/// QEMU is run through a wrapper script in a prefix of our own that records
/// its arguments.
#[test]
fn firmware_is_qboot_when_installed_next_to_qemu_else_the_default() {
    let _serial = common::serial();
    let g = common::guest();
    let real_qboot = common::real_qemu()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("share/qemu/qboot.rom");
    assert!(
        real_qboot.is_file(),
        "{} is missing (Debian: qemu-system-data, installed with qemu-system-x86)",
        real_qboot.display()
    );
    let dir =
        common::TempDir(std::env::temp_dir().join(format!("vmz-firmware-{}", std::process::id())));
    let before = Resources::now();
    for with_qboot in [true, false] {
        let qemu =
            common::RecordingQemu::new(&dir.0.join(if with_qboot { "with" } else { "without" }));
        let qboot = qemu.prefix.join("share/qemu/qboot.rom");
        if with_qboot {
            std::fs::create_dir_all(qboot.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&real_qboot, &qboot).unwrap();
        }
        qemu.with(|| common::boot_with(common::guest_builder(&g.kernel), |_| {}));
        let expected = with_qboot.then(|| qboot.to_string_lossy().into_owned());
        assert_eq!(qemu.value_of("-bios"), expected, "{:?}", qemu.args());
    }
    before.assert_restored();
}

/// Blocking calls on a VM from inside its own event handler would wait for
/// the queue the handler runs on: each returns `CalledFromHandler` instead.
/// The handler stops calling at the first wrong answer, so that a
/// regression fails here instead of deadlocking the test.
#[test]
fn blocking_calls_from_a_handler_return_called_from_handler() {
    use std::sync::{Arc, OnceLock, Weak};
    let _serial = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (console, input, output) = Console::new();
        let me: Arc<OnceLock<Weak<Machine>>> = Arc::default();
        let (tx, answers) = std::sync::mpsc::channel::<(&'static str, String)>();
        let handler_me = me.clone();
        let vm = Arc::new(
            Machine::with_event_handler(&guest_config(input, output), move |e| {
                if !matches!(e, vmz::Event::State(State::Running)) {
                    return;
                }
                let vm = handler_me.get().and_then(Weak::upgrade).expect("the VM");
                let called_from_handler =
                    |r: &vmz::Result<()>| matches!(r, Err(vmz::Error::CalledFromHandler(_)));
                // A usage mistake, not the VM's end (no Exit says it).
                let exit_is = |x: &vmz::Result<Option<Exit>>| {
                    matches!(x, Err(vmz::Error::CalledFromHandler(_)))
                };
                // Calls that fail fast without the check come first.
                let r = vm.start();
                let _ = tx.send(("start", format!("{r:?}")));
                if !called_from_handler(&r) {
                    return;
                }
                let x = vm.wait_timeout(Duration::from_millis(100));
                let _ = tx.send(("wait_timeout", format!("{x:?}")));
                if !exit_is(&x) {
                    return;
                }
                let x = vm.wait();
                let _ = tx.send(("wait", format!("{x:?}")));
                let r = vm.stop(Duration::from_millis(100)).map(|_| ());
                let _ = tx.send(("stop", format!("{r:?}")));
                if !called_from_handler(&r) {
                    return;
                }
                let r = vm.force_stop();
                let _ = tx.send(("force_stop", format!("{r:?}")));
            })
            .unwrap(),
        );
        me.set(Arc::downgrade(&vm)).unwrap();
        common::start(&vm).expect("start");
        for call in ["start", "wait_timeout", "wait", "stop", "force_stop"] {
            let (name, answer) = answers
                .recv_timeout(common::EVENT_BOUND)
                .unwrap_or_else(|_| panic!("no answer from {call} inside the handler"));
            assert_eq!(name, call);
            assert!(
                answer.contains("CalledFromHandler"),
                "{call} from inside the handler: {answer}"
            );
        }
        assert_eq!(vm.state(), State::Running, "nothing was stopped");
        common::force_stop(&vm).unwrap();
        common::release(Arc::into_inner(vm).expect("the only reference"));
        console.close();
    }
    before.assert_restored();
}
