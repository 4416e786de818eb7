//! Host-guest channel throughput through vmz on the test guest (absolute
//! figures; BENCHMARKS.md): the console on hvc0 and on ttyS0 (guest ->
//! host), vsock both ways and its round-trip latency, a NAT port forward
//! (echoed). Each figure is the median of `VMZ_CHANNEL_RUNS` (default 3).
//!
//! `cargo bench --bench channels` (needs `scripts/make-guest.sh` first).

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

/// The console: a pipe in, everything out collected.
struct Console {
    input: std::io::PipeWriter,
    output: Arc<(Mutex<String>, Condvar)>,
}

impl Console {
    fn new() -> (Console, std::io::PipeReader, std::io::PipeWriter) {
        let (in_r, in_w) = std::io::pipe().unwrap();
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let output = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = out_r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
                sink.1.notify_all();
            }
        });
        let console = Console {
            input: in_w,
            output,
        };
        (console, in_r, out_w)
    }

    fn len(&self) -> usize {
        self.output.0.lock().unwrap().len()
    }

    fn send(&mut self, line: &str) {
        self.input
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn expect_after(&self, offset: usize, needle: &str) {
        let end = Instant::now() + TIMEOUT;
        let mut g = self.output.0.lock().unwrap();
        while !g.get(offset..).is_some_and(|t| t.contains(needle)) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{needle:?} not seen");
            g = self.output.1.wait_timeout(g, left).unwrap().0;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn mbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e6
}

fn boot(builder: vmz::ConfigBuilder) -> (vmz::Machine, Console) {
    let (console, input, output) = Console::new();
    let config = builder
        .serial_input(input)
        .serial_output(output)
        .build()
        .unwrap();
    let vm = vmz::Machine::new(&config).unwrap();
    vm.start().unwrap();
    console.expect_after(0, "VMZ-GUEST-READY");
    (vm, console)
}

/// Guest -> host console throughput: `cat-bytes n`, timed to its end.
fn console_mbps(console: &mut Console, n: usize) -> f64 {
    let at = console.len();
    let t = Instant::now();
    console.send(&format!("cat-bytes {n}"));
    console.expect_after(at, "vmz-guest: cat done");
    mbps(n, t.elapsed())
}

fn main() {
    if !cfg!(target_os = "linux") || !std::env::args().any(|a| a == "--bench") {
        println!("vmz channels: Linux only; run it with `cargo bench --bench channels`");
        return;
    }
    let runs: usize = std::env::var("VMZ_CHANNEL_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-guest");
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).expect("run scripts/make-guest.sh");
    let builder = || {
        vmz::Config::builder(dir.join("vmlinux"))
            .initrd(dir.join("initrd.img"))
            .memory_mib(256)
    };

    // ttyS0.
    let (vm, mut console) = boot(
        builder()
            .command_line(cmdline.trim().replace("console=hvc0", "console=ttyS0"))
            .console(vmz::ConsoleDevice::Serial)
            .nat(false),
    );
    let ttys0 = median(
        (0..runs)
            .map(|_| console_mbps(&mut console, 256 * 1024))
            .collect(),
    );
    println!("console ttyS0 guest->host: {ttys0:.2} MB/s");
    drop(vm);

    // hvc0, vsock, port forward on one boot.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (vm, mut console) = boot(
        builder()
            .command_line(cmdline.trim())
            .vsock(true)
            .network(vmz::Network::nat().forward(vmz::Protocol::Tcp, port, 8080)),
    );
    let hvc0 = median(
        (0..runs)
            .map(|_| console_mbps(&mut console, 8 << 20))
            .collect(),
    );
    println!("console hvc0 guest->host: {hvc0:.2} MB/s");

    let size = 64 << 20;
    console.send(&format!("vsock-listen 7000 source {size}"));
    // (the user-space backend turns the host's half-close into a full
    // close: the guest counts the bytes instead of waiting for the end)
    console.send(&format!("vsock-listen 7001 sink {size}"));
    console.send("vsock-listen 7002 echo");
    console.expect_after(0, "vsock listening on 7002");
    let g2h = median(
        (0..runs)
            .map(|_| {
                let mut s = vm.vsock_connect(7000).unwrap();
                let mut buf = vec![0u8; 1 << 16];
                let (t, mut got) = (Instant::now(), 0);
                while got < size {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0);
                    got += n;
                }
                mbps(got, t.elapsed())
            })
            .collect(),
    );
    println!("vsock guest->host: {g2h:.1} MB/s");
    let h2g = median(
        (0..runs)
            .map(|_| {
                let mut s = vm.vsock_connect(7001).unwrap();
                let buf = vec![0x5a; 1 << 16];
                let t = Instant::now();
                for _ in 0..size / buf.len() {
                    s.write_all(&buf).unwrap();
                }
                let mut answer = [0u8; 32];
                let n = s.read(&mut answer).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&answer[..n]).trim(),
                    format!("got {size}")
                );
                mbps(size, t.elapsed())
            })
            .collect(),
    );
    println!("vsock host->guest: {h2g:.1} MB/s");
    let mut s = vm.vsock_connect(7002).unwrap();
    let mut rtts = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(s);
    println!("vsock round trip (1 byte): median {:.0} us", median(rtts));

    // Port forward: 8 MiB through an echo server in the guest.
    console.send("net");
    console.expect_after(0, "vmz-guest: net 10.0.2.15");
    let at = console.len();
    console.send("run nc -ll -p 8080 -e /bin/cat &");
    console.expect_after(at, "vmz-guest: run done");
    std::thread::sleep(Duration::from_secs(1));
    let fwd = median(
        (0..runs)
            .map(|_| {
                let total = 8 << 20;
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut w = s.try_clone().unwrap();
                let t = Instant::now();
                let writer = std::thread::spawn(move || {
                    let buf = vec![0x5a; 1 << 16];
                    for _ in 0..total / buf.len() {
                        w.write_all(&buf).unwrap();
                    }
                });
                let mut buf = vec![0u8; 1 << 16];
                let mut got = 0;
                while got < total {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0);
                    got += n;
                }
                writer.join().unwrap();
                mbps(total, t.elapsed())
            })
            .collect(),
    );
    println!("port forward (TCP, echoed, each way): {fwd:.1} MB/s");
    drop(vm);
}
