//! Host-guest channels on the real test guest: the console on hvc0 (the
//! default) and on ttyS0, a named virtio-console port, the entropy device;
//! their configuration errors; nothing left behind. One boot checks the
//! devices that do not depend on each other.

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{guest, guest_builder, Resources, BOOT_TIMEOUT};
use vmz::{ConsoleDevice, ErrorCode};

/// The default console (hvc0), a named port both ways, /dev/hwrng.
#[test]
fn hvc0_console_named_port_and_entropy_on_one_boot() {
    let _serial = common::serial();
    let g = guest();
    assert!(g.cmdline.contains("console=hvc0"), "{}", g.cmdline);
    let before = Resources::now();
    {
        let (host_end, vm_end) = UnixStream::pair().unwrap();
        let builder = guest_builder(&g.kernel)
            .nat(false)
            .serial_port("vmz.test-port_1", vm_end);
        common::boot_with(builder, |console| {
            // The marker arrived over hvc0 (boot_with waited for it).
            console.send_line("cmdline");
            console.expect("console=hvc0", BOOT_TIMEOUT);

            console.send_line("hwrng 64");
            console.expect("vmz-guest: hwrng 64 bytes", BOOT_TIMEOUT);

            console.send_line("port vmz.test-port_1");
            console.expect(
                "vmz-guest: port vmz.test-port_1 is /dev/vport",
                BOOT_TIMEOUT,
            );
            host_end.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
            let mut reader = BufReader::new(host_end.try_clone().unwrap());
            let mut writer = host_end;
            for i in 0..3 {
                writeln!(writer, "ping {i}").unwrap();
                let mut line = String::new();
                reader.read_line(&mut line).expect("the port answers");
                assert_eq!(line.trim_end(), format!("port vmz.test-port_1: ping {i}"));
            }
        });
    }
    before.assert_restored();
}

/// ttyS0 (the 8250) carries the kernel's first messages; the entropy
/// device can be left out.
#[test]
fn ttys0_console_shows_early_boot_and_entropy_can_be_omitted() {
    let _serial = common::serial();
    let g = guest();
    let cmdline = g.cmdline.replace("console=hvc0", "console=ttyS0");
    let before = Resources::now();
    {
        let builder = guest_builder(&g.kernel)
            .nat(false)
            .command_line(&cmdline)
            .console(ConsoleDevice::Serial)
            .entropy(false);
        common::boot_with(builder, |console| {
            // Printed by the kernel long before any module loads.
            console.expect("Linux version", Duration::from_secs(1));
            console.send_line("hwrng 16");
            console.expect("vmz-guest: hwrng 0 bytes", BOOT_TIMEOUT);
        });
    }
    before.assert_restored();
}

/// Every bad serial port is refused by validate (and by Machine::new)
/// with ErrorCode::Device and a message that says what to fix.
#[test]
fn bad_serial_ports_are_refused() {
    let _serial = common::serial();
    let g = guest();
    let before = Resources::now();
    let pair = || UnixStream::pair().unwrap().1;
    let unconnected = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let listener_dir = std::env::temp_dir().join(format!("vmz-port-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&listener_dir);
    std::fs::create_dir_all(&listener_dir).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(listener_dir.join("l")).unwrap();
    let (pipe_r, pipe_w) = std::io::pipe().unwrap();
    let cases: Vec<(vmz::ConfigBuilder, &str)> = vec![
        (
            guest_builder(&g.kernel).serial_port("", pair()),
            "must be 1 to 64 bytes",
        ),
        (
            guest_builder(&g.kernel).serial_port("x".repeat(65), pair()),
            "must be 1 to 64 bytes, it is 65",
        ),
        (
            guest_builder(&g.kernel).serial_port("a,b", pair()),
            "may hold only A-Z a-z 0-9 . _ -",
        ),
        (
            guest_builder(&g.kernel)
                .serial_port("same", pair())
                .serial_port("same", pair()),
            "the name \"same\" is used twice",
        ),
        (
            guest_builder(&g.kernel).serial_port("p", pipe_r),
            "is not a socket",
        ),
        (
            guest_builder(&g.kernel).serial_port("p", unconnected),
            "is not a stream socket",
        ),
        (
            guest_builder(&g.kernel).serial_port("p", listener),
            "is not connected",
        ),
    ];
    for (builder, words) in cases {
        let config = builder.build().unwrap();
        let e = config.validate().expect_err(words);
        assert_eq!(e.code(), ErrorCode::Device, "{e}");
        assert!(e.to_string().contains(words), "{words:?} not in {e}");
        let e = vmz::Machine::new(&config).expect_err(words);
        assert_eq!(e.code(), ErrorCode::Device, "{e}");
    }
    let _ = std::fs::remove_dir_all(&listener_dir);
    drop(pipe_w);
    before.assert_restored();
}
