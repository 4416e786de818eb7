//! The host process around the VMs (issue 10): its signals, its stdout, its
//! SIGCHLD disposition, its descriptor limit. Each scenario changes
//! something process-wide or ends the process, so it runs in a child
//! process: this test binary again, running one role (tests/common/child.rs).

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::child;
use vmz::{Exit, Machine};

#[test]
#[ignore = "entry point of the child processes of the other tests (VMZ_TEST_ROLE)"]
fn child_role() {
    child::dispatch(&[
        ("vm_then_wait", role_vm_then_wait),
        ("stdout_socket", role_stdout_socket),
        ("sigchld_ignored", role_sigchld_ignored),
        ("low_fd_limit", role_low_fd_limit),
    ]);
}

/// The test guest with its output discarded (a regular file: relayed).
fn quiet_guest() -> vmz::ConfigBuilder {
    let null: OwnedFd = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap()
        .into();
    common::guest_builder(&common::guest().kernel)
        .nat(false)
        .serial_output(null)
}

fn nonblocking(fd: i32) -> bool {
    // SAFETY: F_GETFL on a descriptor number; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "fcntl({fd})");
    flags & libc::O_NONBLOCK != 0
}

/// Signals the process catches (`SigCgt` in /proc/<pid>/status).
fn caught_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .unwrap();
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// Role: starts a VM, prints "READY <qemu pid>", then waits to be killed.
fn role_vm_then_wait() {
    let vm = Machine::new(&quiet_guest().build().unwrap()).unwrap();
    vm.start().unwrap();
    let kids = common::children();
    println!("READY {}", kids[0]);
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
    panic!("not killed within 120 s");
}

/// Spawns `role_vm_then_wait` (with `env`), waits for READY; returns the
/// child and its QEMU's pid.
fn host_with_a_vm(env: &[(&str, &str)]) -> (std::process::Child, i32) {
    let mut cmd = child::command("vm_then_wait");
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut host = cmd.spawn().unwrap();
    let out = host.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // libtest prints "test child_role ... " on the same line.
            if let Some((_, pid)) = line.split_once("READY ") {
                let _ = tx.send(pid.trim().parse::<i32>().unwrap());
            }
        }
    });
    let Ok(qemu) = rx.recv_timeout(Duration::from_secs(90)) else {
        let _ = host.kill();
        let _ = host.wait();
        panic!("the child host did not start its VM within 90 s");
    };
    (host, qemu)
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Fault 5: the Swift runtime's crash handler kept a host alive that was
/// sent SIGABRT (a watchdog), SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGTRAP
/// with kill(). Each of them now ends the host as it would without vmz
/// (Rust's own SIGSEGV/SIGBUS handler lets the first of those pass, as in
/// any Rust program, so the signal is repeated), and its QEMU dies with it.
#[test]
fn each_fatal_signal_sent_with_kill_ends_the_host_and_its_qemu() {
    let _s = common::serial();
    common::guest();
    for sig in [
        libc::SIGABRT,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
    ] {
        let (mut host, qemu) = host_with_a_vm(&[]);
        let pid = host.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, sig) };
            std::thread::sleep(Duration::from_millis(300));
            if let Some(status) = host.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = host.kill();
                let _ = host.wait();
                panic!("the host survived signal {sig} sent with kill() for 10 s");
            }
        };
        assert_eq!(
            status.signal(),
            Some(sig),
            "ended by signal {sig}: {status:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(qemu) {
            assert!(
                Instant::now() < deadline,
                "QEMU {qemu} outlived its host by 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Fault 5: the Swift runtime's backtracer handlers (SIGABRT, SIGFPE,
/// SIGILL, SIGTRAP, SIGQUIT) are not left installed in a host that did not
/// ask for them. (The default static runtime installs none; the shared one,
/// feature `dynamic-swift-runtime`, does, and vmz removes them unless the
/// host set SWIFT_BACKTRACE itself.)
#[test]
fn the_swift_backtracer_is_off_unless_the_host_asks_for_it() {
    let _s = common::serial();
    common::guest();
    let bits = [
        libc::SIGABRT,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGQUIT,
    ]
    .iter()
    .fold(0u64, |m, s| m | 1 << (s - 1));
    let (mut host, _) = host_with_a_vm(&[]);
    let mask = caught_signals(host.id());
    let _ = host.kill();
    let _ = host.wait();
    assert_eq!(mask & bits, 0, "SigCgt {mask:016x}");
}

/// Role: the default serial output is this process's stdout, a socket (as
/// under systemd's journal). Checks its O_NONBLOCK flag before, during
/// (after writing more than a socket buffer holds) and after the VM.
fn role_stdout_socket() {
    assert!(!nonblocking(1), "stdout starts blocking");
    let (input, mut to_guest) = std::io::pipe().unwrap();
    let config = common::guest_builder(&common::guest().kernel)
        .nat(false)
        .serial_input(input)
        .build()
        .unwrap();
    let vm = Machine::new(&config).unwrap();
    vm.start().unwrap();
    assert!(!nonblocking(1), "stdout blocking while QEMU runs");
    // The parent has seen the guest's marker on the socket.
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    for i in 0..2000 {
        println!("host line {i} {}", "x".repeat(1000));
    }
    assert!(!nonblocking(1), "stdout blocking after the host wrote 2 MB");
    to_guest.write_all(b"poweroff\n").unwrap();
    let exit = vm.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(matches!(exit, Some(Exit::PoweredOff)), "{exit:?}");
    drop(vm);
    assert!(!nonblocking(1), "stdout blocking after the VM");
    println!("host done");
}

/// Fault 4: the host's stdout is a socket; QEMU used to set O_NONBLOCK on
/// it (shared description), so the host's println! panicked with EAGAIN.
#[test]
fn a_socket_as_the_hosts_stdout_keeps_its_flags() {
    let _s = common::serial();
    common::guest();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut cmd = child::command("stdout_socket");
    cmd.stdout(Stdio::from(OwnedFd::from(theirs)))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut running = child::Running::spawn(&mut cmd);
    drop(cmd); // its copy of the socket's other end: EOF when the child ends
    let mut stdin = running.child.stdin.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut told = false;
    ours.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    loop {
        // Slowly: the socket's buffer fills up while the host writes.
        std::thread::sleep(Duration::from_millis(1));
        let n = ours.read(&mut buf).unwrap_or_else(|e| {
            let text = String::from_utf8_lossy(&seen);
            panic!(
                "the child's stdout, within 120 s: {e} (go sent: {told}); so far:\n{}",
                &text[text.len().saturating_sub(1500)..]
            )
        });
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if !told && String::from_utf8_lossy(&seen).contains(common::MARKER) {
            writeln!(stdin, "go").unwrap();
            told = true;
        }
    }
    let done = running.finish(Duration::from_secs(60), "the stdout_socket host");
    let text = String::from_utf8_lossy(&seen);
    assert!(
        done.status.success(),
        "{:?}\n{}\n{}",
        done.status,
        done.stderr,
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(
        text.contains(common::MARKER),
        "the guest's output reached the socket"
    );
    assert!(text.contains("host line 1999"));
    assert!(text.contains("host done"));
    let _ = ours.as_raw_fd();
}

/// Role: SIGCHLD ignored (the kernel then reaps children by itself);
/// QEMU SIGKILLed must still be reported as killed by signal 9.
fn role_sigchld_ignored() {
    common::guest(); // (runs make-guest.sh, which needs SIGCHLD)
    child::log_to_stderr();
    // SAFETY: setting a disposition; no handler code is involved.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let vm = Machine::new(&quiet_guest().build().unwrap()).unwrap();
    vm.start().unwrap();
    let qemu = common::children()[0] as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    let exit = vm
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the VM ends");
    let Exit::Killed(signal) = exit else {
        panic!("expected Killed, got {exit:?}");
    };
    assert_eq!(signal.number(), libc::SIGKILL);
}

/// Fault 9: a host that ignores SIGCHLD.
#[test]
fn a_host_that_ignores_sigchld_still_learns_how_qemu_ended() {
    let _s = common::serial();
    common::guest();
    child::run_ok("sigchld_ignored", |_| {}, Duration::from_secs(120));
}

/// Role: descriptor limits just above what this process has open: a VM
/// either starts, or its error names RLIMIT_NOFILE and what a VM needs.
fn role_low_fd_limit() {
    child::log_to_stderr();
    let config = quiet_guest().build().unwrap();
    let open = common::open_fds() as u64;
    let mut failures = 0;
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-parameter.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    assert_eq!(got, 0);
    for extra in [1, 3, 6, 10, 16, 24, 40, 64] {
        let limit = libc::rlimit {
            rlim_cur: open + extra,
            rlim_max: hard.rlim_max,
        };
        // SAFETY: a valid rlimit for this process.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let result = Machine::new(&config).and_then(|vm| {
            vm.start()?;
            vm.force_stop()
        });
        match result {
            Ok(()) => println!("limit {}: started", open + extra),
            Err(e) => {
                failures += 1;
                println!("limit {}: {e}", open + extra);
                assert!(
                    e.to_string().contains("RLIMIT_NOFILE"),
                    "names the limit: {e}"
                );
            }
        }
    }
    assert!(failures > 0, "no limit was low enough to fail");
}

/// Fault 13: a low RLIMIT_NOFILE used to fail with "Invalid argument" or
/// QEMU's "Too many open files"; the error names the limit.
#[test]
fn a_low_descriptor_limit_is_named_in_the_error() {
    let _s = common::serial();
    common::guest();
    let done = child::run_ok("low_fd_limit", |_| {}, Duration::from_secs(180));
    eprintln!("{}", done.stdout);
}
