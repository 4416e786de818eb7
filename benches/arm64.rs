//! The arm64 guest's boot under TCG (BENCHMARKS.md, "arm64 guests"): the
//! test guest of `scripts/make-guest.sh --arch arm64` booted
//!
//! - by vmz (`GuestArchitecture::Arm64`, its defaults: hvc0, NAT, entropy),
//! - by QEMU alone with exactly vmz's arguments (recorded from vmz's run
//!   through a wrapper; files by path instead of inherited descriptors,
//!   QMP on a socket path instead of a passed listener),
//! - by a plain `qemu-system-aarch64 -M virt -cpu max -kernel Image ...
//!   -nographic` (the usual recipe; QEMU's virt has no 64-bit default CPU),
//!
//! in rotating order, VMZ_BENCH_RUNS rounds (default 20); each time to the
//! guest's first userspace line and to its marker. Then
//! VMZ_BENCH_ARM64_RELIABILITY more vmz boots (default 100; 0 skips them)
//! are counted: a boot that does not reach the marker within 60 s fails.
//!
//! `cargo bench --bench arm64`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vmz::{Config, GuestArchitecture, Machine};

#[path = "vmz/tied.rs"]
mod tied;

const USERSPACE: &str = "VMZ-GUEST-USERSPACE";
const MARKER: &str = "VMZ-GUEST-READY";
const TIMEOUT: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, String>;

/// What a console printed so far.
#[derive(Clone, Default)]
struct Output(Arc<(Mutex<String>, Condvar)>);

impl Output {
    /// Collects everything `reader` yields, in a thread.
    fn collect(mut reader: impl Read + Send + 'static) -> Output {
        let out = Output::default();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (text, cond) = &*sink.0;
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
                cond.notify_all();
            }
        });
        out
    }

    /// Seconds from `t0` until `needle` appeared.
    fn wait_for(&self, needle: &str, t0: Instant) -> Result<f64> {
        let (text, cond) = &*self.0;
        let mut g = text.lock().unwrap();
        while !g.contains(needle) {
            let left = (t0 + TIMEOUT).saturating_duration_since(Instant::now());
            if left.is_zero() {
                let tail: String = g
                    .chars()
                    .rev()
                    .take(600)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(format!(
                    "no {needle} within {TIMEOUT:?}; console tail:\n{tail}"
                ));
            }
            g = cond.wait_timeout(g, left).unwrap().0;
        }
        Ok(t0.elapsed().as_secs_f64())
    }
}

struct Guest {
    image: PathBuf,
    initrd: PathBuf,
    cmdline: String,
}

fn guest() -> Result<Guest> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/vmz-guest-arm64");
    let ok = Command::new(root.join("scripts/make-guest.sh"))
        .args(["--arch", "arm64"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("scripts/make-guest.sh: {e}"))?
        .success();
    if !ok {
        return Err("scripts/make-guest.sh --arch arm64 failed".into());
    }
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).map_err(|e| e.to_string())?;
    Ok(Guest {
        image: dir.join("Image"),
        initrd: dir.join("initrd.img"),
        cmdline: cmdline.trim().to_string(),
    })
}

/// One vmz boot: (to userspace, to the marker), force-stopped after.
fn boot_vmz(g: &Guest) -> Result<(f64, f64)> {
    let (out_r, out_w) = std::io::pipe().map_err(|e| e.to_string())?;
    let (in_r, in_w) = std::io::pipe().map_err(|e| e.to_string())?;
    let config = Config::builder(&g.image)
        .guest_architecture(GuestArchitecture::Arm64)
        .initrd(&g.initrd)
        .command_line(&g.cmdline)
        .memory_mib(256)
        .serial_input(in_r)
        .serial_output(out_w)
        .build()
        .map_err(|e| e.to_string())?;
    let out = Output::collect(out_r);
    let t0 = Instant::now();
    let vm = Machine::new(&config).map_err(|e| e.to_string())?;
    drop(config);
    vm.start().map_err(|e| e.to_string())?;
    let times = out
        .wait_for(USERSPACE, t0)
        .and_then(|u| Ok((u, out.wait_for(MARKER, t0)?)));
    let _ = vm.force_stop();
    drop(vm);
    drop(in_w);
    times
}

/// One QEMU run of `args` (argv[0] first): (to userspace, to the marker),
/// killed after.
fn boot_qemu(args: &[String]) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child: Child = tied::spawn_tied(cmd).map_err(|e| format!("{}: {e}", args[0]))?;
    let out = Output::collect(child.stdout.take().unwrap());
    let times = out
        .wait_for(USERSPACE, t0)
        .and_then(|u| Ok((u, out.wait_for(MARKER, t0)?)));
    let _ = child.kill();
    let _ = child.wait();
    times
}

/// vmz's QEMU arguments, recorded by a wrapper script (VMZ_QEMU) during one
/// vmz boot, turned into a command line QEMU runs alone: the kernel and
/// initrd by path, QMP on `qmp` (a socket path).
fn vmz_arguments(g: &Guest, scratch: &Path, qmp: &Path) -> Result<Vec<String>> {
    let real = Command::new("sh")
        .args(["-c", "command -v qemu-system-aarch64"])
        .output()
        .map_err(|e| e.to_string())?;
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    if real.is_empty() {
        return Err("qemu-system-aarch64 is not on PATH (scripts/setup-debian.sh)".into());
    }
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let wrapper = scratch.join("qemu-system-aarch64");
    let record = scratch.join("args");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexec '{real}' \"$@\"\n",
            record.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| e.to_string())?;
    std::env::set_var("VMZ_QEMU", &wrapper);
    let warm_up = boot_vmz(g);
    std::env::remove_var("VMZ_QEMU");
    warm_up?;
    let recorded = std::fs::read_to_string(&record).map_err(|e| e.to_string())?;
    let mut args = vec![real];
    let mut lines = recorded.lines();
    while let Some(a) = lines.next() {
        match a {
            "-kernel" | "-initrd" => {
                lines.next();
                args.push(a.into());
                let file = if a == "-kernel" { &g.image } else { &g.initrd };
                args.push(file.display().to_string());
            }
            "-chardev" => {
                let spec = lines.next().unwrap_or_default();
                if spec.starts_with("socket,id=qmp,") {
                    continue;
                }
                args.extend([a.to_string(), spec.to_string()]);
            }
            "-mon" => {
                lines.next();
                args.extend([
                    "-qmp".into(),
                    format!("unix:{},server=on,wait=off", qmp.display()),
                ]);
            }
            _ => args.push(a.into()),
        }
    }
    if args
        .iter()
        .any(|a| a.contains("/dev/fd/") || a.contains("fd="))
    {
        return Err(format!(
            "vmz's arguments pass descriptors this bench does not replace: {args:?}"
        ));
    }
    Ok(args)
}

/// min / median / max.
fn stats(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{:.2} / {:.2} / {:.2}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !cfg!(target_os = "linux") {
        println!("vmz arm64 boot bench: Linux only (it runs QEMU and the test guest)");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("vmz arm64 boot bench: run it with `cargo bench --bench arm64`");
        return;
    }
    if let Err(e) = run() {
        eprintln!("arm64 bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let g = guest()?;
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-bench-arm64");
    let qmp = scratch.join("qmp.sock");
    let same = vmz_arguments(&g, &scratch, &qmp)?;
    let plain: Vec<String> = [
        "qemu-system-aarch64",
        "-M",
        "virt",
        "-cpu",
        "max",
        "-m",
        "256",
        "-accel",
        "tcg",
        "-nographic",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        g.image.display().to_string(),
        "-initrd".into(),
        g.initrd.display().to_string(),
        "-append".into(),
        // -nographic's console is the PL011.
        g.cmdline.replace("console=hvc0", "console=ttyAMA0"),
    ])
    .collect();
    println!("QEMU alone with vmz's arguments: {}", same.join(" "));
    println!("plain QEMU: {}", plain.join(" "));

    let runs = env_usize("VMZ_BENCH_RUNS", 20);
    let names = [
        "vmz",
        "QEMU alone, vmz's arguments",
        "plain qemu-system-aarch64 -cpu max",
    ];
    let mut to_user: [Vec<f64>; 3] = Default::default();
    let mut to_marker: [Vec<f64>; 3] = Default::default();
    for round in 0..runs {
        for k in 0..3 {
            // Rotating order: each row comes first, second and third
            // equally often.
            let row = (round + k) % 3;
            let _ = std::fs::remove_file(&qmp);
            let (u, m) = match row {
                0 => boot_vmz(&g)?,
                1 => boot_qemu(&same)?,
                _ => boot_qemu(&plain)?,
            };
            to_user[row].push(u);
            to_marker[row].push(m);
        }
        eprintln!(
            "round {}/{runs}: vmz {:.2} s, alone {:.2} s, plain {:.2} s",
            round + 1,
            to_user[0].last().unwrap(),
            to_user[1].last().unwrap(),
            to_user[2].last().unwrap()
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!("\n| arm64 guest, TCG, {runs} runs each (s) | to userspace min / median / max | to the marker min / median / max |");
    println!("|---|---|---|");
    for row in 0..3 {
        println!(
            "| {} | {} | {} |",
            names[row],
            stats(&mut to_user[row]),
            stats(&mut to_marker[row])
        );
    }
    let (v, a, p) = (
        median(&mut to_user[0]),
        median(&mut to_user[1]),
        median(&mut to_user[2]),
    );
    println!(
        "\nvmz / QEMU alone (medians, to userspace): {:.3}; plain / vmz: {:.2}x",
        v / a,
        p / v
    );

    let n = env_usize("VMZ_BENCH_ARM64_RELIABILITY", 100);
    if n > 0 {
        let mut times = Vec::new();
        let mut failures = Vec::new();
        for i in 0..n {
            match boot_vmz(&g) {
                Ok((_, m)) => times.push(m),
                Err(e) => {
                    eprintln!("boot {}: FAILED: {e}", i + 1);
                    failures.push(i + 1);
                }
            }
            if (i + 1) % 10 == 0 {
                eprintln!(
                    "reliability: {}/{n} boots, {} failed",
                    i + 1,
                    failures.len()
                );
            }
        }
        println!(
            "\nreliability: {}/{n} vmz boots of the arm64 guest reached the marker (to the marker min / median / max: {} s); failed: {failures:?}",
            times.len(),
            stats(&mut times)
        );
        if !failures.is_empty() {
            return Err(format!("{} of {n} boots failed", failures.len()));
        }
    }
    std::io::stdout().flush().ok();
    Ok(())
}
