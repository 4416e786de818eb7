//! The NAT port forward: bytes echoed by busybox `nc -e cat` in the guest, through the host's forwarded port.

use super::*;

/// Configures the guest's network and starts the echo server on
/// [`GUEST_FORWARD_PORT`].
pub(crate) fn start_echo_server(console: &mut Console) -> BenchResult<()> {
    let net = console.command("net", "vmz-guest: net ", STEP_TIMEOUT)?;
    if net.contains("vmz-guest: net failed") {
        return Err("the guest's DHCP failed".into());
    }
    console.command(
        &format!("run nc -ll -p {GUEST_FORWARD_PORT} -e /bin/cat &"),
        "vmz-guest: run done",
        STEP_TIMEOUT,
    )?;
    Ok(())
}

/// Sends `bytes` through 127.0.0.1:`port` (a writer thread) and reads
/// them back: the time from the first byte written to the last read.
/// Waits first (bounded) until the echo answers: slirp accepts on the host
/// before anything listens in the guest.
pub(crate) fn forward_echo(port: u16, bytes: usize) -> BenchResult<Duration> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !echoes(port) {
        if Instant::now() > deadline {
            return Err(format!("nothing echoes through 127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).context("connect")?;
    s.set_read_timeout(Some(STEP_TIMEOUT))
        .context("read timeout")?;
    let mut w = s.try_clone().context("clone")?;
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let buf = vec![0x5a; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            w.write_all(&buf[..n])?;
            left -= n;
        }
        Ok(())
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < bytes {
        let n = s.read(&mut buf).context("forward read")?;
        if n == 0 {
            return Err(format!("the echo ended after {got} of {bytes} bytes"));
        }
        got += n;
    }
    let took = t0.elapsed();
    writer
        .join()
        .map_err(|_| "the writer panicked".to_string())?
        .context("forward write")?;
    Ok(took)
}

/// Whether one byte comes back through the forward within a second.
fn echoes(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut b = [0u8; 1];
    s.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && s.write_all(b"x").is_ok()
        && s.read_exact(&mut b).is_ok()
}
