//! A guest console seen from the host, over pipes or a QEMU child's stdio, with byte offsets for timing.

use super::*;

/// What a console's reader thread collected.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) bytes: Vec<u8>,
    pub(crate) eof: bool,
}

/// A guest console seen from the host: a writer into the guest and a thread
/// collecting everything the guest prints.
pub(crate) struct Console {
    pub(crate) input: Option<Box<dyn Write + Send>>,
    pub(crate) output: Arc<(Mutex<Output>, Condvar)>,
    pub(crate) reader: Option<JoinHandle<()>>,
}

impl Console {
    /// A console over `reader` (the guest's output) and `input`.
    pub(crate) fn new(
        mut reader: impl Read + Send + 'static,
        input: Box<dyn Write + Send>,
    ) -> Console {
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let sink = output.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                let (out, cond) = &*sink;
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    out.eof = true;
                } else {
                    out.bytes.extend_from_slice(&buf[..n]);
                }
                drop(out);
                cond.notify_all();
                if n == 0 {
                    break;
                }
            }
        });
        Console {
            input: Some(input),
            output,
            reader: Some(thread),
        }
    }

    /// A console over two new pipes, and the descriptors for vmz's config
    /// (serial input, serial output).
    pub(crate) fn pipes() -> BenchResult<(Console, OwnedFd, OwnedFd)> {
        let (in_r, in_w) = std::io::pipe().context("pipe")?;
        let (out_r, out_w) = std::io::pipe().context("pipe")?;
        Ok((
            Console::new(out_r, Box::new(in_w)),
            in_r.into(),
            out_w.into(),
        ))
    }

    /// Writes `bytes` to the guest.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> BenchResult<()> {
        let w = self.input.as_mut().ok_or("console input closed")?;
        w.write_all(bytes).context("write to the guest console")?;
        w.flush().context("flush the guest console")
    }

    /// Bytes received so far.
    pub(crate) fn len(&self) -> usize {
        self.output
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bytes
            .len()
    }

    /// Waits until `needle` appears at or after offset `from`; returns the
    /// offset just past it.
    pub(crate) fn wait_for(
        &self,
        needle: &[u8],
        from: usize,
        timeout: Duration,
    ) -> BenchResult<usize> {
        let (out, cond) = &*self.output;
        let deadline = Instant::now() + timeout;
        let mut guard = out.lock().unwrap_or_else(|p| p.into_inner());
        let mut scan = from;
        loop {
            if guard.bytes.len() >= scan + needle.len() {
                if let Some(pos) = guard.bytes[scan..]
                    .windows(needle.len())
                    .position(|w| w == needle)
                {
                    return Ok(scan + pos + needle.len());
                }
                scan = guard.bytes.len() + 1 - needle.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || guard.eof {
                let tail_from = guard.bytes.len().saturating_sub(2000);
                return Err(format!(
                    "{:?} not seen on the console ({}); last output:\n{}",
                    String::from_utf8_lossy(needle),
                    if guard.eof { "output ended" } else { "timeout" },
                    String::from_utf8_lossy(&guard.bytes[tail_from..])
                ));
            }
            guard = cond
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The output between two offsets, as text.
    pub(crate) fn text(&self, from: usize, to: usize) -> String {
        let out = self.output.0.lock().unwrap_or_else(|p| p.into_inner());
        let to = to.min(out.bytes.len());
        String::from_utf8_lossy(out.bytes.get(from..to).unwrap_or_default()).into_owned()
    }

    /// Sends `line` and waits for the line starting with `done` that
    /// answers it; returns everything the guest printed up to the end of
    /// that line.
    pub(crate) fn command(
        &mut self,
        line: &str,
        done: &str,
        timeout: Duration,
    ) -> BenchResult<String> {
        let from = self.len();
        self.send(format!("{line}\n").as_bytes())?;
        let at = self.wait_for(done.as_bytes(), from, timeout)?;
        let end = self.wait_for(b"\n", at, timeout)?;
        Ok(self.text(from, end))
    }

    /// Times the test guest's `cat-bytes n` (n bytes of `x` printed on the
    /// console) from the command's first byte written to the line after
    /// the bytes, "vmz-guest: cat done". The bytes are made first, untimed
    /// (`make-bytes n`): making them under emulation costs as much as
    /// printing them on hvc0.
    pub(crate) fn time_cat_bytes(&mut self, n: usize) -> BenchResult<Duration> {
        self.command(
            &format!("make-bytes {n}"),
            "vmz-guest: make-bytes done",
            STEP_TIMEOUT,
        )?;
        let from = self.len();
        let t0 = Instant::now();
        self.send(format!("cat-bytes {n}\n").as_bytes())?;
        self.wait_for(b"vmz-guest: cat done", from, STEP_TIMEOUT)?;
        Ok(t0.elapsed())
    }

    /// Counts occurrences of `needle` from offset `from`.
    pub(crate) fn count(&self, needle: &[u8], from: usize) -> usize {
        let out = self.output.0.lock().unwrap_or_else(|p| p.into_inner());
        out.bytes
            .get(from..)
            .unwrap_or_default()
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.input.take();
        // The reader ends when every writer of the output is gone (the
        // guest's engine has exited); do not wait for it here.
        drop(self.reader.take());
    }
}
