//! Boots a Linux guest and attaches this terminal to its serial console.
//!
//! ```text
//! cargo run --example boot                 # the project's test guest
//! cargo run --example boot -- --arch arm64 # its arm64 twin (qemu-system-aarch64)
//! cargo run --example boot -- --kernel K --initrd I --cmdline "console=hvc0" \
//!     --cpus 2 --memory 512 --no-net --accel tcg --fast-boot
//! cargo run --example boot -- --disk data.img --disk ro:base.img \
//!     --share ~/src:src --share ro:/usr/share/doc:doc
//! ```
//!
//! In the test guest: `disks` lists the disks, `share-mount src` mounts a
//! share on /mnt/src (see scripts/guest-init.sh for the other commands).
//!
//! With no `--kernel`, it boots the guest that `scripts/make-guest.sh`
//! builds (and runs that script first if the guest is missing); with
//! `--arch arm64`, the one of `scripts/make-guest.sh --arch arm64`.
//! Lines typed here go to the guest's console. Ctrl-C asks the guest to
//! stop (ACPI power button); a second Ctrl-C forces the stop.
//!
//! Exit status: 0 the guest stopped by itself, 1 an error, 2 forced stop,
//! 64 bad usage.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vmz::{Accelerator, Config, Disk, Exit, GuestArchitecture, Machine, Share};

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
}

struct Args {
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    cmdline: Option<String>,
    cpus: u32,
    memory_mib: u64,
    nat: bool,
    accel: Accelerator,
    fast_boot: bool,
    arch: GuestArchitecture,
    disks: Vec<Disk>,
    shares: Vec<Share>,
}

const USAGE: &str = "usage: boot [--kernel PATH] [--initrd PATH] [--cmdline TEXT] \
[--cpus N] [--memory MIB] [--no-net] [--accel auto|hardware|software] [--fast-boot] \
[--arch host|x86_64|arm64] [--disk [ro:]IMAGE]... [--share [ro:]DIR:TAG]...";

/// `ro:` before a disk or share: read-only.
fn read_only_prefix(value: &str) -> (bool, &str) {
    match value.strip_prefix("ro:") {
        Some(rest) => (true, rest),
        None => (false, value),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        kernel: None,
        initrd: None,
        cmdline: None,
        cpus: 1,
        memory_mib: 256,
        nat: true,
        accel: Accelerator::Auto,
        fast_boot: false,
        arch: GuestArchitecture::Host,
        disks: Vec::new(),
        shares: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kernel" => args.kernel = Some(value()?.into()),
            "--initrd" => args.initrd = Some(value()?.into()),
            "--cmdline" => args.cmdline = Some(value()?),
            "--cpus" => args.cpus = value()?.parse().map_err(|e| format!("--cpus: {e}"))?,
            "--memory" => {
                args.memory_mib = value()?.parse().map_err(|e| format!("--memory: {e}"))?
            }
            "--no-net" => args.nat = false,
            "--fast-boot" => args.fast_boot = true,
            "--accel" => {
                args.accel = match value()?.as_str() {
                    "auto" => Accelerator::Auto,
                    "hardware" | "kvm" => Accelerator::Hardware,
                    "software" | "tcg" => Accelerator::Software,
                    other => return Err(format!("unknown accelerator {other}")),
                }
            }
            "--arch" => {
                args.arch = match value()?.as_str() {
                    "host" => GuestArchitecture::Host,
                    "x86_64" | "amd64" => GuestArchitecture::X86_64,
                    "arm64" | "aarch64" => GuestArchitecture::Arm64,
                    other => return Err(format!("unknown architecture {other}")),
                }
            }
            "--disk" => {
                let value = value()?;
                let (ro, path) = read_only_prefix(&value);
                args.disks.push(Disk::new(path).read_only(ro));
            }
            "--share" => {
                let value = value()?;
                let (ro, spec) = read_only_prefix(&value);
                let (dir, tag) = spec
                    .rsplit_once(':')
                    .ok_or(format!("--share {value}: expected DIR:TAG"))?;
                args.shares.push(Share::new(dir, tag).read_only(ro));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The project's test guest for `arch` (its directory and kernel): built by
/// scripts/make-guest.sh if missing.
fn default_guest(arch: GuestArchitecture) -> Result<(PathBuf, PathBuf), String> {
    if !cfg!(target_os = "linux") {
        return Err(
            "the test guest (a Debian kernel, built with apt-get) is made \
             on Linux only: pass --kernel and --initrd (an arm64 Image on a Mac) and \
             --cmdline \"console=hvc0\""
                .into(),
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (env, default, kernel, flags): (_, _, _, &[&str]) = match arch.resolved() {
        GuestArchitecture::Arm64 => (
            "VMZ_GUEST_DIR_ARM64",
            "target/vmz-guest-arm64",
            "Image",
            &["--arch", "arm64"],
        ),
        _ => ("VMZ_GUEST_DIR", "target/vmz-guest", "vmlinux", &[]),
    };
    let dir = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(default));
    if !dir.join(kernel).is_file() || !dir.join("initrd.img").is_file() {
        eprintln!("boot: building the test guest with scripts/make-guest.sh {flags:?} ...");
        let status = Command::new(root.join("scripts/make-guest.sh"))
            .args(flags)
            .arg(&dir)
            .status()
            .map_err(|e| format!("cannot run scripts/make-guest.sh: {e}"))?;
        if !status.success() {
            return Err("scripts/make-guest.sh failed".into());
        }
    }
    let kernel = dir.join(kernel);
    Ok((dir, kernel))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("boot: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("boot: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let (kernel, initrd, cmdline) = match args.kernel {
        Some(k) => (k, args.initrd, args.cmdline.unwrap_or_default()),
        None => {
            let (dir, kernel) = default_guest(args.arch)?;
            let cmdline = match args.cmdline {
                Some(c) => c,
                None => std::fs::read_to_string(dir.join("cmdline"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "console=hvc0".into()),
            };
            (
                kernel,
                args.initrd.or(Some(dir.join("initrd.img"))),
                cmdline,
            )
        }
    };

    // Terminal input goes to the guest through a pipe (the bridge reads the
    // pipe; the terminal stays ours, in line mode, so Ctrl-C is ours too).
    let (reader, mut writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let mut builder = Config::builder(&kernel)
        .command_line(cmdline)
        .cpus(args.cpus)
        .memory_mib(args.memory_mib)
        .nat(args.nat)
        .accelerator(args.accel)
        .fast_boot_options(args.fast_boot)
        .guest_architecture(args.arch)
        .serial_input(reader);
    if let Some(initrd) = initrd {
        builder = builder.initrd(initrd);
    }
    for disk in args.disks {
        builder = builder.disk(disk);
    }
    for share in args.shares {
        builder = builder.share(share);
    }
    let config = builder.build().map_err(|e| e.to_string())?;

    // SAFETY: the handler only touches an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }

    let vm = Machine::new(&config).map_err(|e| format!("{e} [{:?}]", e.code()))?;
    drop(config); // the bridge holds its own copies of the descriptors
    eprintln!(
        "boot: starting {} (Ctrl-C: stop the guest, twice: force)",
        kernel.display()
    );
    vm.start()
        .map_err(|e| format!("start failed: {e} [{:?}]", e.code()))?;

    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let mut handled = 0;
    let exit = loop {
        if let Some(exit) = vm
            .wait_timeout(Duration::from_millis(100))
            .map_err(|e| e.to_string())?
        {
            break exit;
        }
        let seen = INTERRUPTS.load(Ordering::SeqCst);
        if seen > handled {
            handled = seen;
            if seen == 1 {
                eprintln!("\r\nboot: asking the guest to stop (Ctrl-C again to force)");
                if let Err(e) = vm.request_stop() {
                    eprintln!("boot: {e}; forcing");
                    vm.force_stop().map_err(|e| e.to_string())?;
                }
            } else {
                eprintln!("\r\nboot: forcing the stop");
                vm.force_stop().map_err(|e| e.to_string())?;
            }
        }
    };
    let code = match exit {
        Exit::PoweredOff => {
            eprintln!("boot: the guest powered off");
            0
        }
        Exit::ForceStopped => {
            eprintln!("boot: stopped by force");
            2
        }
        Exit::StartFailed(e) | Exit::EngineError(e) => {
            eprintln!("boot: the VM ended with an error: {e} [{:?}]", e.code());
            1
        }
        other => {
            eprintln!("boot: the VM ended: {other}");
            1
        }
    };
    Ok(ExitCode::from(code))
}
