//! Host-guest channels on the real test guest: the console on hvc0 (the
//! default) and on ttyS0, a named virtio-console port, the entropy device,
//! vsock both ways; their errors; nothing left behind. One boot checks the
//! devices that do not depend on each other.

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{guest, guest_builder, Resources, BOOT_TIMEOUT};
use vmz::{ConsoleDevice, ErrorCode, Machine};

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

/// The QEMU child of this test process.
fn vm_pid() -> u32 {
    common::children()
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("qemu"))
        })
        .expect("a QEMU child")
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024
}

/// The guest's MemTotal, in MiB, asked over the console.
fn guest_mem_total_mib(console: &mut common::Console) -> u64 {
    let before = console.text().len();
    console.send_line("run grep MemTotal /proc/meminfo");
    console.expect_after(before, "vmz-guest: run done", BOOT_TIMEOUT);
    let text = console.text()[before..].to_string();
    let kb: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {text:?}"));
    kb / 1024
}

/// Polls `f` every 250 ms until it is true, at most `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    f()
}

/// Free page reporting gives memory the guest freed back to the host (QEMU's
/// RSS drops), and a balloon target shrinks the guest.
fn balloon_checks(vm: &Machine, console: &mut common::Console) {
    let pid = vm_pid();
    let before = console.text().len();
    console.send_line("run dd if=/dev/zero of=/tmp/fill bs=1M count=120 2>/dev/null; sync");
    console.expect_after(before, "vmz-guest: run done", BOOT_TIMEOUT);
    let full = rss_mib(pid);
    let before = console.text().len();
    console.send_line("run rm /tmp/fill");
    console.expect_after(before, "vmz-guest: run done", BOOT_TIMEOUT);
    let mut now = full;
    let dropped = eventually(Duration::from_secs(30), || {
        now = rss_mib(pid);
        now + 60 <= full
    });
    eprintln!(
        "balloon: QEMU RSS {full} MiB with 120 MiB filled, {now} MiB after the guest freed it"
    );
    assert!(dropped, "QEMU's RSS stayed at {now} MiB (was {full} MiB)");

    // A target: the guest hands pages to the balloon, its MemTotal drops.
    let total = guest_mem_total_mib(console);
    vm.set_memory_target(128 << 20).unwrap();
    let mut shrunk = total;
    let ok = eventually(Duration::from_secs(30), || {
        shrunk = guest_mem_total_mib(console);
        shrunk + 100 <= total
    });
    eprintln!("balloon: guest MemTotal {total} MiB, {shrunk} MiB with a 128 MiB target");
    assert!(
        ok,
        "the guest's MemTotal stayed at {shrunk} MiB (was {total} MiB)"
    );
    vm.set_memory_target(256 << 20).unwrap();
    let e = vm
        .set_memory_target(257 << 20)
        .expect_err("above the memory size");
    assert_eq!(e.code(), ErrorCode::MemorySize, "{e}");
    let e = vm
        .set_memory_target((128 << 20) + 1)
        .expect_err("not whole MiB");
    assert_eq!(e.code(), ErrorCode::MemorySize, "{e}");
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

/// One round trip on a vsock stream: `payload` out, the same bytes back.
fn echo_round_trip(stream: &mut vmz::VsockStream, payload: &[u8]) {
    stream.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
    let writer = {
        let mut w = stream.try_clone().unwrap();
        let data = payload.to_vec();
        std::thread::spawn(move || w.write_all(&data).unwrap())
    };
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).expect("the echo comes back");
    writer.join().unwrap();
    assert!(back == payload, "echoed bytes differ");
}

/// vsock and the balloon on one boot: host -> guest round trips, 8 connections at once, a
/// refused port, guest -> host through a listener set before the start,
/// a port already listened on, connect before the start and after the
/// end, accept after the end; the daemon and its sockets gone after.
#[test]
fn vsock_both_ways_and_its_errors() {
    let _serial = common::serial();
    let g = guest();
    let before = Resources::now();
    {
        let (mut console, input, output) = common::Console::new();
        let config = guest_builder(&g.kernel)
            .nat(false)
            .vsock(true)
            .serial_input(input)
            .serial_output(output)
            .build()
            .unwrap();
        let vm = Machine::new(&config).unwrap();
        drop(config);
        let e = vm
            .vsock_connect(5000)
            .expect_err("connect before the start");
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        // Listening works before the start.
        let early = vm.vsock_listen(6000).unwrap();
        let e = vm.vsock_listen(6000).expect_err("the same port twice");
        assert_eq!(e.code(), ErrorCode::PortInUse, "{e}");

        common::start(&vm).unwrap();
        console.expect(common::MARKER, BOOT_TIMEOUT);

        // Host -> guest.
        console.send_line("vsock-listen 5000 echo");
        console.expect("vmz-guest: vsock listening on 5000", BOOT_TIMEOUT);
        let mut s = vm.vsock_connect(5000).expect("connect to the guest");
        assert_eq!(s.port(), 5000);
        echo_round_trip(&mut s, b"hello over vsock\n");
        echo_round_trip(&mut s, &vec![0xa5; 256 * 1024]);
        drop(s);

        // Many at once.
        std::thread::scope(|scope| {
            let vm = &vm;
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    scope.spawn(move || {
                        let mut s = vm.vsock_connect(5000).expect("one of many");
                        let payload: Vec<u8> = (0..32 * 1024).map(|j| (j as u8) ^ i).collect();
                        echo_round_trip(&mut s, &payload);
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        });

        // Nobody listens on 5001.
        let e = vm.vsock_connect(5001).expect_err("refused");
        assert_eq!(e.code(), ErrorCode::ConnectionRefused, "{e}");

        // Guest -> host, on the listener made before the start.
        console.send_line("vsock-connect 6000 hi-from-the-guest");
        let mut conn = early
            .accept_timeout(BOOT_TIMEOUT)
            .unwrap()
            .expect("the guest connects");
        assert_eq!(conn.port(), 6000);
        conn.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
        let mut line = String::new();
        BufReader::new(conn.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "hi-from-the-guest\n");
        conn.write_all(b"hello guest").unwrap();
        drop(conn);
        console.expect("vmz-guest: vsock reply [hello guest]", BOOT_TIMEOUT);

        // A guest connection to a port nobody listens on is refused.
        console.send_line("vsock-connect 6001 nobody");
        console.expect("vmz-guest: vsock connect failed", BOOT_TIMEOUT);

        balloon_checks(&vm, &mut console);

        // A connect still waiting when the VM ends (the guest's vsock
        // driver unloaded, so nobody answers) is answered at the end, at
        // once, with InvalidState: not by its 60 s timeout, nor as refused
        // (the dying daemon's answer may come before the end is reported).
        let before = console.text().len();
        console.send_line("run rmmod vmw_vsock_virtio_transport");
        console.expect_after(before, "vmz-guest: run done rc=0", BOOT_TIMEOUT);
        let pending = vm.vsock_connect_async_timeout(5000, Duration::from_secs(60));
        let mut pending = Box::pin(pending);
        use std::future::Future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        let t = std::time::Instant::now();
        common::force_stop(&vm).unwrap();
        let e = common::within("a connect pending at the VM's end", BOOT_TIMEOUT, || {
            pollster::block_on(pending)
        })
        .expect_err("the VM ended");
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        assert!(t.elapsed() < Duration::from_secs(30), "{e}");

        // After the end: typed errors, no hang.
        let e = vm.set_memory_target(128 << 20).expect_err("after the end");
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        let e = vm.vsock_connect(5000).expect_err("connect after the end");
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        let e = early
            .accept_timeout(BOOT_TIMEOUT)
            .expect_err("accept after the end");
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        let e = vm.vsock_listen(6002).expect_err("listen after the end");
        assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
        drop(early);
        common::release(vm);
        console.close();
    }
    // No daemon left (a child), no descriptor; no private directory.
    before.assert_restored();
}

/// A VM without a vsock device says so.
#[test]
fn vsock_without_the_device_is_a_device_error() {
    let _serial = common::serial();
    let g = guest();
    let config = guest_builder(&g.kernel).build().unwrap();
    let vm = Machine::new(&config).unwrap();
    let e = vm.vsock_listen(1).expect_err("no device");
    assert_eq!(e.code(), ErrorCode::Device, "{e}");
    let e = vm.set_memory_target(128 << 20).expect_err("not running");
    assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
    let e = config_with_cid(2).validate().expect_err("reserved cid");
    assert_eq!(e.code(), ErrorCode::Device, "{e}");
}

fn config_with_cid(cid: u32) -> vmz::Config {
    guest_builder(&guest().kernel)
        .vsock_cid(cid)
        .build()
        .unwrap()
}

/// The C ABI's vsock calls refuse a NULL handle and a NULL callback.
#[test]
fn vsock_abi_refuses_null_handles_and_callbacks() {
    use vmz::sys;
    let take = |err: sys::VMZErrorRef| {
        // SAFETY: the bridge stored an error we own.
        unsafe { vmz::BridgeError::from_raw(err) }
            .expect("an error")
            .code()
    };
    // Each call gets a valid out-parameter and must fail with it set.
    let refused = |call: &dyn Fn(*mut sys::VMZErrorRef) -> bool| {
        let mut err: sys::VMZErrorRef = std::ptr::null_mut();
        assert!(!call(&mut err));
        assert_eq!(take(err), ErrorCode::InvalidArgument);
    };
    let null = std::ptr::null_mut();
    // SAFETY: NULL handles are allowed and refused; `err` is valid.
    refused(&|err| unsafe { sys::vmz_vsock_connect(null, 1, 0, err) } >= 0);
    // SAFETY: as above; a NULL callback is refused too.
    refused(&|err| unsafe { sys::vmz_vsock_listen(null, 1, None, null.cast(), err) });
    // SAFETY: as above.
    refused(&|err| unsafe { sys::vmz_vsock_stop_listening(null, 1, err) });
    // SAFETY: as above; no callback is called on a refusal.
    refused(&|err| unsafe { sys::vmz_vsock_connect_async(null, 1, 0, None, null.cast(), err) });
}

/// Networks on one boot, plus a second small VM: a datagram-socket network
/// between the two VMs (each one's first NIC, eth0, no MAC chosen: the
/// two must still differ; one `UnixDatagram::pair`): pings both ways and a
/// TCP stream whose content arrives; NAT (eth1) with a TCP and a UDP port
/// forward reaching servers in the guest; a datagram-socket network (eth2,
/// a caller-chosen MAC) carrying frames both ways between the guest and
/// this test: the guest's ARP request arrives from its MAC, the test's ARP
/// reply lets the guest send its IP packet. Isolated links use link-local
/// addresses only.
#[test]
fn port_forwards_and_socket_networks_to_the_test_and_between_two_vms() {
    let _serial = common::serial();
    let g = guest();
    let before = Resources::now();
    {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let port = free_port();
        let udp_port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (harness, vm_end) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let (link_a, link_b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        // The second VM: only the link to the first.
        let (mut console_b, input, output) = common::Console::new();
        let config_b = guest_builder(&g.kernel)
            .fast_boot_options(true)
            .network(vmz::Network::socket(link_b))
            .serial_input(input)
            .serial_output(output)
            .build()
            .unwrap();
        let vm_b = Machine::new(&config_b).unwrap();
        drop(config_b);
        common::start(&vm_b).unwrap();

        let guest_mac = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02];
        let my_mac = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01];
        let builder = guest_builder(&g.kernel)
            .fast_boot_options(true)
            .network(vmz::Network::socket(link_a))
            .network(
                vmz::Network::nat()
                    .forward(vmz::Protocol::Tcp, port, 8080)
                    .forward(vmz::Protocol::Udp, udp_port, 5353),
            )
            .network(vmz::Network::socket(vm_end).mac("52:54:00:AA:BB:02"));
        common::boot_with(builder, |console| {
            // The TCP forward: 127.0.0.1:port -> an echo server in the guest.
            let before = console.text().len();
            console.send_line(
                "run ip link set lo up && ip link set eth1 up && udhcpc -q -n -t 5 -i eth1 -s /bin/udhcpc-script >/dev/null 2>&1 && ip -4 -o addr show eth1",
            );
            console.expect_after(before, "10.0.2.15/24", BOOT_TIMEOUT);
            console.expect_after(before, "vmz-guest: run done rc=0", BOOT_TIMEOUT);
            console.send_line("run nc -ll -p 8080 -e /bin/cat &");
            console.expect("vmz-guest: run done", BOOT_TIMEOUT);
            let mut s = None;
            let mut reply = [0u8; 5];
            // (slirp accepts at once; the guest's server may still start)
            assert!(eventually(Duration::from_secs(20), || {
                let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let ok = c.write_all(b"ping\n").is_ok() && c.read_exact(&mut reply).is_ok();
                s = Some(c);
                ok
            }));
            drop(s);
            assert_eq!(&reply, b"ping\n");

            udp_forward_checks(console, udp_port);
            harness_link_checks(console, &harness, guest_mac, my_mac);

            // The link between the two VMs.
            console_b.expect(common::MARKER, BOOT_TIMEOUT);
            let run = |console: &mut common::Console, command: &str, expect: &str| {
                let before = console.text().len();
                console.send_line(&format!("run {command}"));
                console.expect_after(before, expect, BOOT_TIMEOUT);
            };
            // Unchosen MACs: random, locally administered, different (a
            // switch between several VMs needs them apart; a direct pair
            // works even with equal ones).
            let mac_of = |console: &mut common::Console| {
                let before = console.text().len();
                console.send_line("run echo \"mac [$(cat /sys/class/net/eth0/address)]\"");
                console.expect_after(before, "vmz-guest: run done rc=0", BOOT_TIMEOUT);
                let text = console.text()[before..].to_string();
                let mac = text
                    .split_once("mac [")
                    .and_then(|(_, rest)| rest.split_once(']'))
                    .map(|(mac, _)| mac.to_string())
                    .unwrap_or_else(|| panic!("no MAC in {text:?}"));
                let first = u8::from_str_radix(&mac[..2], 16).unwrap();
                assert_eq!(first & 3, 2, "{mac} is not locally administered unicast");
                mac
            };
            let (mac_a, mac_b) = (mac_of(console), mac_of(&mut console_b));
            assert_ne!(mac_a, mac_b, "the two VMs' NICs share a MAC");
            run(
                console,
                "ip link set eth0 up && ip addr add 169.254.2.1/24 dev eth0",
                "vmz-guest: run done rc=0",
            );
            run(
                &mut console_b,
                "ip link set eth0 up && ip addr add 169.254.2.2/24 dev eth0",
                "vmz-guest: run done rc=0",
            );
            run(
                console,
                "ping -c 1 -W 20 169.254.2.2",
                "vmz-guest: run done rc=0",
            );
            run(
                &mut console_b,
                "ping -c 1 -W 20 169.254.2.1",
                "vmz-guest: run done rc=0",
            );
            // TCP across the link, both directions: B listens, A sends a
            // line and reads B's answer.
            run(
                &mut console_b,
                "(timeout 60 nc -l -p 7000 -e sh -c 'read l; echo \"B got [$l]\"' &)",
                "vmz-guest: run done rc=0",
            );
            let mut answered = false;
            for _ in 0..10 {
                let before = console.text().len();
                console.send_line("run echo hello-from-A | timeout 20 nc -w 5 169.254.2.2 7000");
                console.expect_after(before, "vmz-guest: run done", BOOT_TIMEOUT);
                if console.text()[before..].contains("B got [hello-from-A]") {
                    answered = true;
                    break;
                }
                // B's server may not be listening yet.
                std::thread::sleep(Duration::from_millis(500));
            }
            assert!(answered, "A never read B's answer:\n{}", console.text());
        });
        common::force_stop(&vm_b).unwrap();
        common::release(vm_b);
        console_b.close();
    }
    before.assert_restored();
}

/// A UDP datagram from this host to the forwarded port comes back from the
/// guest's echo server (scripts/guest-udp-echo.c), through slirp.
fn udp_forward_checks(console: &mut common::Console, udp_port: u16) {
    console.send_line("udp-echo 5353");
    console.expect("vmz-guest: udp echo on 5353", BOOT_TIMEOUT);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 128];
    let mut echoed = None;
    // Datagrams may be lost: a few tries, each bounded.
    for i in 0..10 {
        let payload = format!("udp datagram {i}");
        socket
            .send_to(payload.as_bytes(), ("127.0.0.1", udp_port))
            .unwrap();
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            assert_eq!(from.port(), udp_port, "the answer comes from the forward");
            echoed = Some((payload, String::from_utf8_lossy(&buf[..n]).into_owned()));
            break;
        }
    }
    let (sent, back) = echoed.expect("no UDP answer through the forward");
    assert_eq!(back, format!("echo:{sent}"));
}

/// The guest (eth2, 169.254.1.2) and this test (169.254.1.1, `my_mac`)
/// exchange Ethernet frames over a datagram socket.
fn harness_link_checks(
    console: &mut common::Console,
    harness: &std::os::unix::net::UnixDatagram,
    guest_mac: [u8; 6],
    my_mac: [u8; 6],
) {
    let before = console.text().len();
    console.send_line(
        "run ip link set eth2 up && ip addr add 169.254.1.2/24 dev eth2 && (ping -c 1 -W 5 169.254.1.1 >/dev/null 2>&1 &)",
    );
    console.expect_after(before, "vmz-guest: run done rc=0", BOOT_TIMEOUT);
    harness.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
    let deadline = std::time::Instant::now() + BOOT_TIMEOUT;
    let mut frame = [0u8; 2048];
    let recv = |frame: &mut [u8], what: &str| {
        assert!(std::time::Instant::now() < deadline, "{what}: only noise");
        harness.recv(frame).expect(what)
    };
    // The first ARP request for 169.254.1.1 (IPv6 noise is skipped).
    let arp = loop {
        let n = recv(&mut frame, "a frame from the guest");
        if n >= 42 && frame[12..14] == [0x08, 0x06] && frame[38..42] == [169, 254, 1, 1] {
            break frame[..n].to_vec();
        }
    };
    assert_eq!(arp[6..12], guest_mac, "the frame comes from the chosen MAC");
    let mut answer = Vec::new();
    answer.extend_from_slice(&guest_mac);
    answer.extend_from_slice(&my_mac);
    answer.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    answer.extend_from_slice(&my_mac);
    answer.extend_from_slice(&[169, 254, 1, 1]);
    answer.extend_from_slice(&guest_mac);
    answer.extend_from_slice(&[169, 254, 1, 2]);
    answer.resize(60, 0);
    harness.send(&answer).unwrap();
    // With our MAC learnt, the guest sends its ping to it.
    loop {
        let n = recv(&mut frame, "the guest's IP packet");
        if n >= 34 && frame[12..14] == [0x08, 0x00] && frame[30..34] == [169, 254, 1, 1] {
            assert_eq!(frame[..6], my_mac, "sent to the MAC the test answered with");
            break;
        }
    }
}

/// Bad networks are refused with ErrorCode::Device.
#[test]
fn bad_networks_are_refused() {
    let _serial = common::serial();
    let g = guest();
    let (_a, b) = UnixStream::pair().unwrap();
    let cases: Vec<(vmz::ConfigBuilder, &str)> = vec![
        (
            guest_builder(&g.kernel).network(vmz::Network::nat().mac("52:54:00:00:00")),
            "is not six hex octets",
        ),
        (
            guest_builder(&g.kernel).network(vmz::Network::nat().mac("01:00:5e:00:00:01")),
            "multicast",
        ),
        (
            guest_builder(&g.kernel).network(vmz::Network::socket(b)),
            "is not a datagram socket",
        ),
        (
            guest_builder(&g.kernel).network(
                vmz::Network::nat()
                    .forward(vmz::Protocol::Tcp, 2222, 22)
                    .forward(vmz::Protocol::Tcp, 2222, 23),
            ),
            "forwarded twice",
        ),
        (
            guest_builder(&g.kernel).network(vmz::Network::nat().forward(
                vmz::Protocol::Udp,
                0,
                53,
            )),
            "ports must be 1 to 65535",
        ),
    ];
    for (builder, words) in cases {
        let e = builder.build().unwrap().validate().expect_err(words);
        assert_eq!(e.code(), ErrorCode::Device, "{e}");
        assert!(e.to_string().contains(words), "{words:?} not in {e}");
    }
}
