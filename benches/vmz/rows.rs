//! The rows and scenarios: each measures vmz against its reference, run by run.

use super::*;

/// vmz boots `guest`'s bzImage (optionally with the opt-in kernel
/// options); its times go under `key`; the VM is stopped on return.
pub(crate) fn boot_bzimage(
    samples: &mut Samples,
    guest: &Guest,
    fast_boot: bool,
    key: &str,
) -> BenchResult<()> {
    let (_run, boot) = VmzRun::boot_kernel(guest, &guest.vmlinuz, 256, fast_boot)?;
    samples.add_boot(key, boot);
    Ok(())
}

/// Plain QEMU boots with `args`; its times go under `key`; killed, then a
/// pause (`settle`).
pub(crate) fn boot_plain(samples: &mut Samples, args: &[String], key: &str) -> BenchResult<()> {
    let (q, boot) = QemuRun::boot(args, None)?;
    samples.add_boot(key, boot);
    drop(q);
    settle();
    Ok(())
}

/// A pause after a plain QEMU run. The boot right after one was 0.1-0.15 s
/// slower than elsewhere in the sequence (whichever row came next; not
/// seen after vmz's or the reference's runs, cause not found), so the
/// next row is not measured in its wake.
pub(crate) fn settle() {
    std::thread::sleep(Duration::from_secs(1));
}

/// The 64-byte lines of the host-to-guest row; the last one is unique.
pub(crate) fn echo_payload(lines: usize) -> (Vec<u8>, String) {
    let mut out = Vec::with_capacity(lines * 64);
    for i in 0..lines.saturating_sub(1) {
        let _ = writeln!(ByteWriter(&mut out), "h{i:06}-{}", "y".repeat(55));
    }
    let last = format!("h-last-{}", "z".repeat(56));
    let _ = writeln!(ByteWriter(&mut out), "{last}");
    (out, last)
}

/// `fmt::Write` into a byte vector.
pub(crate) struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Guest-to-host and host-to-guest serial throughput on a booted console,
/// in MB/s (10^6 bytes per second).
pub(crate) fn throughput(
    console: &mut Console,
    opts: &Options,
    samples: &mut Samples,
    prefix: &str,
) -> BenchResult<()> {
    if opts.cat_bytes > 0 {
        let dt = console.time_cat_bytes(opts.cat_bytes)?.as_secs_f64();
        samples.add(
            &format!("{prefix}.serial_out_mbps"),
            opts.cat_bytes as f64 / dt / 1e6,
        );
    }
    let (payload, last) = echo_payload(opts.echo_lines);
    let from = console.len();
    let t0 = Instant::now();
    console.send(&payload)?;
    console.wait_for(format!("echo: {last}").as_bytes(), from, STEP_TIMEOUT)?;
    let dt = t0.elapsed().as_secs_f64();
    let answered = console.count(b"echo: h", from);
    samples.add(
        &format!("{prefix}.serial_in_mbps"),
        payload.len() as f64 / dt / 1e6,
    );
    samples.add(
        &format!("{prefix}.serial_in_lost_lines"),
        (opts.echo_lines - answered.min(opts.echo_lines)) as f64,
    );
    Ok(())
}

/// Rows 1, 2 and 4 (boot, stop, throughput), and the event latency of 3,
/// alternating vmz and its references run by run.
pub(crate) fn guest_rows(
    guest: &Guest,
    standard: Option<&Guest>,
    args: &QemuArgs,
    opts: &Options,
    samples: &mut Samples,
) -> BenchResult<()> {
    let plain = plain_args(guest)?;
    let plain_standard = standard.map(plain_args).transpose()?;
    for i in 0..opts.runs {
        eprintln!("guest rows: run {}/{}", i + 1, opts.runs);
        let pair = |samples: &mut Samples,
                    vmz: &dyn Fn(&mut Samples) -> BenchResult<()>,
                    reference: &dyn Fn(&mut Samples) -> BenchResult<()>| {
            in_turn(i, samples, vmz, reference)
        };

        // Boot, throughput, guest poweroff: vmz and QEMU with vmz's args.
        pair(
            samples,
            &|samples| {
                let (mut run, boot) = VmzRun::boot(guest, 256)?;
                samples.add_boot("boot.vmz", boot);
                throughput(&mut run.console, opts, samples, "vmz")?;
                let watch = ExitWatch::new(run.qemu_pid()?)?;
                let t0 = Instant::now();
                run.console.send(b"poweroff\n")?;
                let (at, what) = run.ended()?;
                let qemu_exit = watch.exited_at()?;
                if what != "guest-stopped" {
                    return Err(format!("poweroff ended the vmz VM as {what}"));
                }
                samples.add("stop.poweroff.vmz_ms", ms(at - t0));
                samples.add(
                    "event.exit_to_handler_us",
                    at.saturating_duration_since(qemu_exit).as_secs_f64() * 1e6,
                );
                samples.add("stop.poweroff.vmz_qemu_exit_ms", ms(qemu_exit - t0));
                Ok(())
            },
            &|samples| {
                let (mut q, boot) = QemuRun::boot_reference(args, "a")?;
                samples.add_boot("boot.qemu_same_args", boot);
                throughput(&mut q.console, opts, samples, "qemu")?;
                let t0 = Instant::now();
                q.console.send(b"poweroff\n")?;
                q.wait()?;
                samples.add("stop.poweroff.qemu_ms", ms(t0.elapsed()));
                Ok(())
            },
        )?;

        // Plain QEMU against vmz given the same bzImage (the kernel cache,
        // warmed before the first run, serves the unpacked vmlinux), and
        // the same with the opt-in kernel options.
        pair(
            samples,
            &|samples| {
                boot_bzimage(samples, guest, false, "boot.vmz_bzimage")?;
                boot_bzimage(samples, guest, true, "boot.vmz_bzimage_fast")
            },
            &|samples| boot_plain(samples, &plain, "boot.qemu_plain"),
        )?;

        // Debian's standard kernel (xz bzImage): vmz given the bzImage, with
        // and without the options, and plain QEMU booting it.
        if let (Some(std), Some(plain_std)) = (standard, &plain_standard) {
            pair(
                samples,
                &|samples| {
                    boot_bzimage(samples, std, false, "boot.std.vmz")?;
                    boot_bzimage(samples, std, true, "boot.std.vmz_fast")
                },
                &|samples| boot_plain(samples, plain_std, "boot.std.qemu_plain"),
            )?;
        }

        // request_stop vs QMP system_powerdown.
        pair(
            samples,
            &|samples| {
                let (run, boot) = VmzRun::boot(guest, 256)?;
                samples.add("boot.vmz_extra_ms", ms(boot.ready));
                let t0 = Instant::now();
                run.vm.request_stop().context("request_stop")?;
                let (at, what) = run.ended()?;
                let exit = run.vm.wait().context("wait")?;
                let waited = t0.elapsed();
                if !matches!(exit, Exit::PoweredOff) || what != "guest-stopped" {
                    return Err(format!("request_stop ended the VM as {what} / {exit:?}"));
                }
                samples.add("stop.request.vmz_ms", ms(at - t0));
                samples.add("stop.request.vmz_wait_ms", ms(waited));
                Ok(())
            },
            &|samples| {
                let (mut q, boot) = QemuRun::boot_reference(args, "b")?;
                samples.add("boot.qemu_same_args_extra_ms", ms(boot.ready));
                let mut qmp = q.qmp()?;
                let t0 = Instant::now();
                qmp.send("system_powerdown")?;
                q.wait()?;
                samples.add("stop.request.qemu_ms", ms(t0.elapsed()));
                Ok(())
            },
        )?;

        // force_stop vs SIGKILL.
        pair(
            samples,
            &|samples| {
                let (run, boot) = VmzRun::boot(guest, 256)?;
                samples.add("boot.vmz_extra_ms", ms(boot.ready));
                let t0 = Instant::now();
                run.vm.force_stop().context("force_stop")?;
                samples.add("stop.force.vmz_ms", ms(t0.elapsed()));
                Ok(())
            },
            &|samples| {
                let (mut q, boot) = QemuRun::boot_reference(args, "c")?;
                samples.add("boot.qemu_same_args_extra_ms", ms(boot.ready));
                let t0 = Instant::now();
                q.child.kill().context("kill QEMU")?;
                q.wait()?;
                samples.add("stop.force.qemu_ms", ms(t0.elapsed()));
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// The same checks as the bridge's validation, in plain Rust: the
/// reference for `Config::validate`.
pub(crate) fn native_validate(guest: &Guest, fds: &[&OwnedFd]) -> BenchResult<()> {
    let mut header = [0u8; 0x210];
    let mut f = std::fs::File::open(&guest.vmlinux).context("kernel")?;
    if !f.metadata().context("kernel")?.is_file() {
        return Err("kernel is not a file".into());
    }
    let n = f.read(&mut header).context("kernel")?;
    if !(n >= 4 && header[..4] == *b"\x7fELF" || n >= 0x206 && header[0x202..0x206] == *b"HdrS") {
        return Err("kernel format".into());
    }
    let f = std::fs::File::open(&guest.initrd).context("initrd")?;
    if !f.metadata().context("initrd")?.is_file() {
        return Err("initrd is not a file".into());
    }
    for fd in fds {
        // SAFETY: F_GETFL on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } < 0 {
            return Err("fcntl".into());
        }
    }
    // SAFETY: sysconf has no preconditions.
    let _ = unsafe {
        libc::sysconf(libc::_SC_NPROCESSORS_ONLN)
            + libc::sysconf(libc::_SC_PHYS_PAGES)
            + libc::sysconf(libc::_SC_PAGESIZE)
    };
    let _ = std::env::var_os("VMZ_ACCEL");
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
        && !Path::new("/sys/module/kvm_pvm").exists()
    {
        let _ = std::fs::read_to_string("/proc/cpuinfo");
    }
    Ok(())
}

/// Row 3: Config::validate and Machine::new + drop, in microseconds per
/// call (each sample averages a batch of calls).
pub(crate) fn call_rows(guest: &Guest, opts: &Options, samples: &mut Samples) -> BenchResult<()> {
    const VALIDATE_BATCH: u32 = 200;
    const CREATE_BATCH: u32 = 50;
    let (_console, input, output) = Console::pipes()?;
    let (in2, out2) = (
        input.try_clone().context("dup")?,
        output.try_clone().context("dup")?,
    );
    let config = vmz_builder(guest, &guest.vmlinux, 256, input, output, false)
        .build()
        .context("Config::build")?;
    for _ in 0..opts.runs {
        let t0 = Instant::now();
        for _ in 0..VALIDATE_BATCH {
            config.validate().context("Config::validate")?;
        }
        samples.add(
            "call.validate_us",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(VALIDATE_BATCH),
        );

        let t0 = Instant::now();
        for _ in 0..VALIDATE_BATCH {
            native_validate(guest, &[&in2, &out2])?;
        }
        samples.add(
            "call.native_validate_us",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(VALIDATE_BATCH),
        );

        let t0 = Instant::now();
        for _ in 0..CREATE_BATCH {
            drop(Machine::new(&config).context("Machine::new")?);
        }
        samples.add(
            "call.new_drop_us",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(CREATE_BATCH),
        );
    }
    Ok(())
}

/// Row 5: `n` guests of 64 MiB started together; time until every marker
/// is seen, this process's RSS and each QEMU's RSS, with everything up.
pub(crate) fn scaling_rows(
    guest: &Arc<Guest>,
    args: &QemuArgs,
    opts: &Options,
    samples: &mut Samples,
) -> BenchResult<()> {
    for i in 0..opts.scaling_runs {
        for &n in &opts.scaling {
            eprintln!("scaling: run {}/{}, {n} guests", i + 1, opts.scaling_runs);
            // vmz
            let mib = opts.scaling_mib;
            let t0 = Instant::now();
            let threads: Vec<_> = (0..n)
                .map(|_| {
                    let guest = guest.clone();
                    std::thread::spawn(move || VmzRun::boot(&guest, mib))
                })
                .collect();
            let mut runs = Vec::new();
            for t in threads {
                runs.push(t.join().map_err(|_| "boot thread panicked")??.0);
            }
            let all_up = t0.elapsed();
            record_scaling(samples, "vmz", n, all_up)?;
            drop(runs);

            // QEMU directly, same arguments
            let t0 = Instant::now();
            let threads: Vec<_> = (0..n)
                .map(|k| {
                    let args = args.clone();
                    std::thread::spawn(move || QemuRun::boot_reference(&args, &format!("s{k}")))
                })
                .collect();
            let mut runs = Vec::new();
            for t in threads {
                runs.push(t.join().map_err(|_| "boot thread panicked")??.0);
            }
            let all_up = t0.elapsed();
            record_scaling(samples, "qemu", n, all_up)?;
            drop(runs);
        }
    }
    Ok(())
}

/// Records one scaling sample: time to all up, own RSS, QEMU RSS per guest.
pub(crate) fn record_scaling(
    samples: &mut Samples,
    who: &str,
    n: usize,
    all_up: Duration,
) -> BenchResult<()> {
    samples.add(&format!("scale.{n}.{who}_all_up_ms"), ms(all_up));
    samples.add(
        &format!("scale.{n}.{who}_host_rss_mib"),
        rss_kib("self")? as f64 / 1024.0,
    );
    let kids = children();
    if kids.len() != n {
        return Err(format!("expected {n} QEMU children, found {}", kids.len()));
    }
    let mut total = 0;
    for pid in &kids {
        total += rss_kib(&pid.to_string())?;
    }
    samples.add(
        &format!("scale.{n}.{who}_qemu_rss_mib"),
        total as f64 / 1024.0 / n as f64,
    );
    Ok(())
}
