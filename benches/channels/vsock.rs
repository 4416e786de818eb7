//! vsock throughput both ways and its round-trip latency, against the test guest's scripts/guest-vsock.c listeners.

use super::*;

/// Guest ports of the three listeners.
const SOURCE: u32 = 7000;
const SINK: u32 = 7001;
const ECHO: u32 = 7002;

/// The guest's listeners, started on its console.
pub(crate) struct VsockPorts;

impl VsockPorts {
    /// Starts a source of `bytes`, a sink of `bytes` and an echo server in
    /// the guest, and waits until all three listen.
    pub(crate) fn listen(console: &mut Console, bytes: usize) -> BenchResult<VsockPorts> {
        let from = console.len();
        console.send(format!("vsock-listen {SOURCE} source {bytes}\n").as_bytes())?;
        // The user-space backend turns the host's half-close into a full
        // close: the sink counts the bytes instead of waiting for the end.
        console.send(format!("vsock-listen {SINK} sink {bytes}\n").as_bytes())?;
        console.send(format!("vsock-listen {ECHO} echo\n").as_bytes())?;
        for port in [SOURCE, SINK, ECHO] {
            let line = format!("vsock listening on {port}");
            console.wait_for(line.as_bytes(), from, STEP_TIMEOUT)?;
        }
        Ok(VsockPorts)
    }

    /// Reads `bytes` from the guest's source: the time from the connected
    /// stream's first read to the last byte.
    pub(crate) fn guest_to_host(&self, vm: &Booted, bytes: usize) -> BenchResult<Duration> {
        let mut s = vm.vsock_connect(SOURCE)?;
        let mut buf = vec![0u8; 1 << 16];
        let (t0, mut got) = (Instant::now(), 0);
        while got < bytes {
            let n = s.read(&mut buf).context("vsock read")?;
            if n == 0 {
                return Err(format!("vsock source ended after {got} of {bytes} bytes"));
            }
            got += n;
        }
        Ok(t0.elapsed())
    }

    /// Writes `bytes` to the guest's sink: the time to its answer
    /// `got <bytes>`.
    pub(crate) fn host_to_guest(&self, vm: &Booted, bytes: usize) -> BenchResult<Duration> {
        let mut s = vm.vsock_connect(SINK)?;
        let buf = vec![0x5a; 1 << 16];
        let t0 = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            s.write_all(&buf[..n]).context("vsock write")?;
            left -= n;
        }
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while answer.last() != Some(&b'\n') {
            if s.read(&mut byte).context("the sink's answer")? == 0 {
                break;
            }
            answer.push(byte[0]);
        }
        let took = t0.elapsed();
        let expected = format!("got {bytes}\n");
        if answer != expected.as_bytes() {
            return Err(format!(
                "the vsock sink answered {:?}, not {expected:?}",
                String::from_utf8_lossy(&answer)
            ));
        }
        Ok(took)
    }

    /// `n` one-byte round trips through the guest's echo server on one
    /// connection: their median in µs, and the time they all took.
    pub(crate) fn round_trips(&self, vm: &Booted, n: usize) -> BenchResult<(f64, Duration)> {
        let mut s = vm.vsock_connect(ECHO)?;
        let mut rtts = Vec::with_capacity(n);
        let t0 = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            s.write_all(b"x").context("vsock write")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).context("vsock echo")?;
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let took = t0.elapsed();
        let (_, median, _) = stats(&rtts).ok_or("no round trip")?;
        Ok((median, took))
    }
}
