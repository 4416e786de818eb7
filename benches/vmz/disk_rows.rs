//! Disks and shares (`cargo bench --bench vmz -- disks`): the same guest
//! workload through vmz and through QEMU and virtiofsd started alone with
//! exactly vmz's arguments, alternating run by run, a fresh disk image set
//! and share for every run.
//!
//! One boot per run and side, with three fresh sparse raw images of the
//! run's own (`/dev/vda` with `DiskSync::Full`, `vdb` with `Fsync`, `vdc`
//! with `Off`) and one fresh read-write share (tag `bench`). The guest's
//! tool (scripts/guest-disk-bench.c) times itself with the guest's clock:
//!
//! - on vda, with O_DIRECT: a sequential write of `VMZ_BENCH_DISK_SEQ_MIB`
//!   (default 128) in 1 MiB blocks ending with an fdatasync, the same read
//!   back; 4 KiB random reads, then writes (no sync), over that span, for
//!   `VMZ_BENCH_DISK_RAND_SECONDS` (default 2) or
//!   `VMZ_BENCH_DISK_RAND_OPS` (default 50000) each;
//! - on vda, vdb and vdc: 4 KiB write + fdatasync, repeated for
//!   `VMZ_BENCH_DISK_FSYNC_SECONDS` (default 2) or
//!   `VMZ_BENCH_DISK_FSYNC_OPS` (default 20000);
//! - on the share: unpacking the bench's tarball (`VMZ_BENCH_SHARE_FILES`
//!   files of 0.5-16 KiB, default 2000, and `VMZ_BENCH_SHARE_LARGE` of 1
//!   MiB, default 4; copied to the guest's tmpfs first, untimed) into the
//!   share with busybox tar, then reading every file back (nftw + read),
//!   the guest's page cache dropped before each.
//!
//! `VMZ_BENCH_DISK_CALIBRATE=1` makes an A/A run: the reference in the vmz
//! column too, to see the ratios the harness gives two identical sides.
//!
//! Output: a table like the main one (per-pair ratios in the notes), raw
//! samples and the per-pair ratios (`disks.pair_ratio.*`) in
//! `target/vmz-bench/disks.json` (and `disks.csv`, `disks-table.md`).

use super::*;

use std::os::unix::net::UnixListener;

use vmz::{Disk, DiskSync, Share};

/// The guest's memory in these runs.
const MEMORY_MIB: u64 = 256;
/// The share's tag.
const TAG: &str = "bench";
/// A guest step (one benchmark command); generous for a loaded machine.
const DISK_STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// The disks, in order, by sync setting: (setting, row name, what it
/// means in BENCHMARKS.md's words).
const SYNCS: [(DiskSync, &str, &str); 3] = [
    (
        DiskSync::Full,
        "full",
        "`DiskSync::Full` (durable, the default)",
    ),
    (
        DiskSync::Fsync,
        "fsync",
        "`DiskSync::Fsync` (without barriers)",
    ),
    (DiskSync::Off, "off", "`DiskSync::Off` (flushes ignored)"),
];

/// What to run, from the environment.
pub(crate) struct DiskOptions {
    runs: usize,
    seq_mib: usize,
    rand_ops: usize,
    rand_seconds: usize,
    fsync_ops: usize,
    fsync_seconds: usize,
    share_files: usize,
    share_large: usize,
    calibrate: bool,
    out_dir: PathBuf,
}

impl DiskOptions {
    /// A file of the output directory, for messages.
    pub(crate) fn out_dir_display(&self, file: &str) -> String {
        self.out_dir.join(file).display().to_string()
    }

    pub(crate) fn from_env() -> BenchResult<DiskOptions> {
        Ok(DiskOptions {
            runs: env_usize("VMZ_BENCH_RUNS", 10)?.max(1),
            seq_mib: env_usize("VMZ_BENCH_DISK_SEQ_MIB", 128)?.max(1),
            rand_ops: env_usize("VMZ_BENCH_DISK_RAND_OPS", 50_000)?.max(1),
            rand_seconds: env_usize("VMZ_BENCH_DISK_RAND_SECONDS", 2)?.max(1),
            fsync_ops: env_usize("VMZ_BENCH_DISK_FSYNC_OPS", 20_000)?.max(1),
            fsync_seconds: env_usize("VMZ_BENCH_DISK_FSYNC_SECONDS", 2)?.max(1),
            share_files: env_usize("VMZ_BENCH_SHARE_FILES", 2000)?,
            share_large: env_usize("VMZ_BENCH_SHARE_LARGE", 4)?,
            calibrate: env_usize("VMZ_BENCH_DISK_CALIBRATE", 0)? != 0,
            out_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-bench"),
        })
    }
}

/// One run's files: fresh images and a fresh share holding the tarball;
/// removed on drop.
struct Workspace {
    dir: PathBuf,
    images: Vec<PathBuf>,
    share: PathBuf,
}

impl Workspace {
    fn create(
        root: &Path,
        name: &str,
        opts: &DiskOptions,
        tree: &ShareTree,
    ) -> BenchResult<Workspace> {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let share = dir.join("share");
        std::fs::create_dir_all(&share).context("create the run's directory")?;
        let mut images = Vec::new();
        for (i, (_, name, _)) in SYNCS.iter().enumerate() {
            let path = dir.join(format!("{name}.img"));
            // vda holds the sequential span; vdb and vdc only the fsync
            // loop's first MiB.
            let mib = if i == 0 { opts.seq_mib.max(16) } else { 16 };
            std::fs::File::create(&path)
                .and_then(|f| f.set_len(mib as u64 * 1024 * 1024))
                .context(&format!("create {}", path.display()))?;
            images.push(path);
        }
        std::fs::copy(&tree.tarball, share.join("tree.tar")).context("copy the tarball")?;
        Ok(Workspace { dir, images, share })
    }

    /// vmz's config for this run's disks and share.
    fn attach(&self, mut builder: ConfigBuilder) -> ConfigBuilder {
        for (path, (sync, _, _)) in self.images.iter().zip(SYNCS) {
            builder = builder.disk(Disk::new(path).sync(sync));
        }
        builder.share(Share::new(&self.share, TAG))
    }

    /// The images opened as vmz's bridge opens them (read-write,
    /// close-on-exec, no controlling terminal, an exclusive flock).
    fn open_images(&self) -> BenchResult<Vec<OwnedFd>> {
        use std::os::unix::fs::OpenOptionsExt;
        self.images
            .iter()
            .map(|p| {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open(p)
                    .context(&format!("open {}", p.display()))?;
                // SAFETY: flock on a descriptor we own.
                if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                    return Err(format!(
                        "flock {}: {}",
                        p.display(),
                        std::io::Error::last_os_error()
                    ));
                }
                Ok(OwnedFd::from(f))
            })
            .collect()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The virtiofsd vmz runs: `$VMZ_VIRTIOFSD`, else `virtiofsd` on `PATH`,
/// else `/usr/libexec/virtiofsd` (the Rust one; vmz checks which).
fn real_virtiofsd() -> BenchResult<PathBuf> {
    if let Some(p) = std::env::var_os("VMZ_VIRTIOFSD") {
        return Ok(PathBuf::from(p));
    }
    common::on_path("virtiofsd")
        .or_else(|| {
            let p = PathBuf::from("/usr/libexec/virtiofsd");
            p.is_file().then_some(p)
        })
        .ok_or_else(|| "no virtiofsd (scripts/setup-debian.sh installs it)".to_string())
}

/// The reference: vmz's QEMU and virtiofsd command lines, run alone.
struct DiskReference {
    qemu: QemuArgs,
    /// QEMU's descriptor number for each disk (its `-add-fd fd=N`).
    disk_fds: Vec<i32>,
    /// QEMU's descriptor number for the share's socket (`-chardev
    /// socket,id=vmz-fs0,fd=N`).
    share_fd: i32,
    /// virtiofsd's arguments as vmz gave them, the shared directory
    /// replaced by [`SHARE_PLACEHOLDER`].
    virtiofsd: Vec<String>,
    /// virtiofsd's descriptor number for its listening socket (`--fd=N`).
    listener_fd: i32,
}

/// Replaced by each run's share in [`DiskReference::virtiofsd`].
const SHARE_PLACEHOLDER: &str = "@SHARE@";

impl DiskReference {
    /// Boots vmz once through recording wrappers of QEMU and virtiofsd with
    /// a workspace like the runs', and derives the reference from what it
    /// ran.
    fn capture(guest: &Guest, ws: &Workspace) -> BenchResult<DiskReference> {
        let real = real_virtiofsd()?;
        let (qemu, recorded) = capture_args_recording(
            guest,
            MEMORY_MIB,
            |b| ws.attach(b),
            ("VMZ_VIRTIOFSD", "virtiofsd", &real),
        )?;
        DiskReference::new(qemu, real, recorded, ws)
    }

    fn new(
        qemu: QemuArgs,
        virtiofsd: PathBuf,
        recorded: Vec<String>,
        ws: &Workspace,
    ) -> BenchResult<DiskReference> {
        let number = |s: &str, what: &str| -> BenchResult<i32> {
            s.parse()
                .map_err(|_| format!("{what}: {s:?} is not a descriptor number"))
        };
        // QEMU: every descriptor vmz passed must be one the reference
        // passes the same way.
        let mut disk_fds = vec![None; ws.images.len()];
        let mut share_fd = None;
        for (i, a) in qemu.reference.iter().enumerate() {
            let option = i.checked_sub(1).map(|j| qemu.reference[j].as_str());
            let keys: BTreeMap<&str, &str> =
                a.split(',').filter_map(|kv| kv.split_once('=')).collect();
            match (option, keys.get("fd")) {
                (Some("-add-fd"), Some(fd)) => {
                    let disk = keys
                        .get("opaque")
                        .and_then(|o| o.strip_prefix("vmz-disk"))
                        .and_then(|k| k.parse::<usize>().ok())
                        .filter(|k| *k < disk_fds.len())
                        .ok_or_else(|| format!("-add-fd of no known disk: {a}"))?;
                    disk_fds[disk] = Some(number(fd, "-add-fd")?);
                }
                (Some("-chardev"), Some(fd)) if a.starts_with("socket,id=vmz-fs0,") => {
                    share_fd = Some(number(fd, "the share's chardev")?);
                }
                (_, Some(_)) => {
                    return Err(format!(
                        "vmz passed QEMU a descriptor the bench does not know: {a}"
                    ))
                }
                _ => {}
            }
        }
        let disk_fds = disk_fds
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("not every disk is in an fd set: {:?}", qemu.vmz))?;
        let share_fd = share_fd.ok_or("no vmz-fs0 chardev on QEMU's command line")?;

        // virtiofsd: the listener's number, the shared directory.
        let share = path_string(&ws.share)?;
        let mut listener_fd = None;
        let mut args = vec![path_string(&virtiofsd)?];
        for a in &recorded {
            if let Some(fd) = a.strip_prefix("--fd=") {
                listener_fd = Some(number(fd, "virtiofsd --fd")?);
            }
            args.push(if *a == share {
                SHARE_PLACEHOLDER.into()
            } else {
                a.clone()
            });
        }
        let listener_fd =
            listener_fd.ok_or_else(|| format!("virtiofsd without --fd: {recorded:?}"))?;
        if !args.iter().any(|a| a == SHARE_PLACEHOLDER) {
            return Err(format!(
                "virtiofsd's arguments do not name the share {share}: {recorded:?}"
            ));
        }
        Ok(DiskReference {
            qemu,
            disk_fds,
            share_fd,
            virtiofsd: args,
            listener_fd,
        })
    }

    /// virtiofsd's command line for `share`.
    fn virtiofsd_for(&self, share: &Path) -> BenchResult<Vec<String>> {
        let share = path_string(share)?;
        Ok(self
            .virtiofsd
            .iter()
            .map(|a| {
                if a == SHARE_PLACEHOLDER {
                    share.clone()
                } else {
                    a.clone()
                }
            })
            .collect())
    }

    /// Starts virtiofsd and QEMU for `ws` as vmz does: a listening socket
    /// for virtiofsd with QEMU's connection already in its backlog, the
    /// name removed; the images opened like the bridge opens them.
    fn boot(&self, ws: &Workspace) -> BenchResult<ReferenceRun> {
        let path = ws.dir.join("fs0.sock");
        let listener = UnixListener::bind(&path).context("bind the virtiofsd socket")?;
        let client = UnixStream::connect(&path).context("connect to the virtiofsd socket")?;
        std::fs::remove_file(&path).context("remove the socket's name")?;
        // As from vmz: one pipe as both processes' stderr, read to its end.
        let (mut err_r, err_w) = std::io::pipe().context("pipe")?;
        std::thread::spawn(move || std::io::copy(&mut err_r, &mut std::io::sink()));

        let argv = self.virtiofsd_for(&ws.share)?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut fds = Inherit::default();
        fds.add(OwnedFd::from(listener), self.listener_fd);
        fds.add(err_w.try_clone().context("dup")?.into(), 2);
        fds.apply(&mut cmd);
        let spawned = tied::spawn_tied(cmd);
        drop(fds);
        let virtiofsd = Daemon(spawned.context("spawn virtiofsd")?);

        let mut fds = Inherit::default();
        for (fd, &target) in ws.open_images()?.into_iter().zip(&self.disk_fds) {
            fds.add(fd, target);
        }
        fds.add(OwnedFd::from(client), self.share_fd);
        fds.add(err_w.into(), 2);
        let (qemu, _) = QemuRun::boot_reference_inheriting(&self.qemu, "disks", fds)?;
        Ok(ReferenceRun {
            qemu,
            _virtiofsd: virtiofsd,
        })
    }
}

/// A helper process killed (and reaped) on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// QEMU and virtiofsd run alone; QEMU is stopped first.
struct ReferenceRun {
    qemu: QemuRun,
    _virtiofsd: Daemon,
}

/// One "vmz-bench: KIND key=value ..." result of the guest's tool.
fn result(output: &str, kind: &str) -> BenchResult<BTreeMap<String, f64>> {
    if let Some(line) = output.lines().find(|l| l.contains("vmz-bench: error")) {
        return Err(format!("the guest's disk-bench failed: {}", line.trim()));
    }
    let prefix = format!("vmz-bench: {kind} ");
    let line = output
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix.as_str()))
        .ok_or_else(|| format!("no {kind:?} result in the guest's output:\n{output}"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect())
}

/// A value of a result.
fn field(r: &BTreeMap<String, f64>, key: &str) -> BenchResult<f64> {
    r.get(key)
        .copied()
        .filter(|v| *v > 0.0)
        .ok_or_else(|| format!("result without a positive {key}: {r:?}"))
}

/// Runs the guest's tool with `args`; its output.
fn disk_bench(console: &mut Console, args: &str) -> BenchResult<String> {
    let out = console.command(
        &format!("disk-bench {args}"),
        "vmz-guest: disk-bench done",
        DISK_STEP_TIMEOUT,
    )?;
    if !out.contains("vmz-guest: disk-bench done rc=0") {
        return Err(format!("disk-bench {args} failed:\n{out}"));
    }
    Ok(out)
}

/// A guest command of guest-init.sh that must answer `ok`.
fn guest_step(console: &mut Console, line: &str, ok: &str) -> BenchResult<()> {
    let out = console.command(line, ok.split(' ').next().unwrap_or(ok), DISK_STEP_TIMEOUT)?;
    if !out.contains(ok) {
        return Err(format!("{line}: the guest answered:\n{out}"));
    }
    Ok(())
}

/// The workload on a booted guest; samples under `disks.{side}.*`.
fn workload(
    console: &mut Console,
    opts: &DiskOptions,
    tree: &ShareTree,
    samples: &mut Samples,
    side: &str,
) -> BenchResult<()> {
    let key = |k: &str| format!("disks.{side}.{k}");
    let out = disk_bench(console, &format!("seq vda {}", opts.seq_mib))?;
    for kind in ["seq-write", "seq-read"] {
        let r = result(&out, kind)?;
        // bytes per microsecond = MB/s
        samples.add(
            &key(&format!("{kind}_mbps")),
            field(&r, "bytes")? / field(&r, "us")?,
        );
    }
    for kind in ["read", "write"] {
        let out = disk_bench(
            console,
            &format!(
                "rand vda {kind} {} {} {}",
                opts.seq_mib, opts.rand_ops, opts.rand_seconds
            ),
        )?;
        let r = result(&out, &format!("rand-{kind}"))?;
        samples.add(
            &key(&format!("rand-{kind}_iops")),
            field(&r, "ops")? * 1e6 / field(&r, "us")?,
        );
    }
    for (i, (_, name, _)) in SYNCS.iter().enumerate() {
        let dev = format!("vd{}", (b'a' + i as u8) as char);
        let out = disk_bench(
            console,
            &format!("fsync {dev} {} {}", opts.fsync_ops, opts.fsync_seconds),
        )?;
        let r = result(&out, "fsync")?;
        samples.add(
            &key(&format!("fsync-{name}_per_s")),
            field(&r, "ops")? * 1e6 / field(&r, "us")?,
        );
    }

    let mnt = format!("/mnt/{TAG}");
    guest_step(
        console,
        &format!("share-mount {TAG}"),
        &format!("vmz-guest: share-mount {TAG} ok"),
    )?;
    guest_step(
        console,
        &format!("run cp {mnt}/tree.tar /tmp/tree.tar && mkdir {mnt}/out"),
        "vmz-guest: run done rc=0",
    )?;
    guest_step(console, "drop-caches", "vmz-guest: caches dropped")?;
    let out = disk_bench(
        console,
        &format!("time untar tar -xf /tmp/tree.tar -C {mnt}/out"),
    )?;
    let us = field(&result(&out, "untar")?, "us")?;
    samples.add(&key("untar_files_per_s"), tree.files as f64 * 1e6 / us);
    samples.add(&key("untar_mbps"), tree.bytes as f64 / us);
    guest_step(console, "drop-caches", "vmz-guest: caches dropped")?;
    let out = disk_bench(console, &format!("readtree readback {mnt}/out"))?;
    let r = result(&out, "readback")?;
    let (files, bytes) = (field(&r, "files")?, field(&r, "bytes")?);
    if files as u64 != tree.files || bytes as u64 != tree.bytes {
        return Err(format!(
            "the guest read back {files} files, {bytes} bytes; the tarball holds {} files, {} bytes",
            tree.files, tree.bytes
        ));
    }
    let us = field(&r, "us")?;
    samples.add(&key("readback_mbps"), bytes / us);
    samples.add(&key("readback_files_per_s"), files * 1e6 / us);
    Ok(())
}

/// The table's rows, with per-pair ratios in the notes.
fn disk_rows(opts: &DiskOptions, tree: &ShareTree, samples: &Samples) -> Vec<TableRow> {
    let reference = "QEMU + virtiofsd alone, vmz's args";
    let mut specs: Vec<(String, &'static str, String)> = vec![
        (
            format!("disk: sequential write, {} MiB in 1 MiB blocks + fdatasync, O_DIRECT (vda, `Full`)", opts.seq_mib),
            "MB/s",
            "seq-write_mbps".into(),
        ),
        ("disk: sequential read, the same span".into(), "MB/s", "seq-read_mbps".into()),
        ("disk: 4 KiB random reads, O_DIRECT, queue depth 1".into(), "IOPS", "rand-read_iops".into()),
        ("disk: 4 KiB random writes, O_DIRECT, no sync".into(), "IOPS", "rand-write_iops".into()),
    ];
    for (_, name, what) in SYNCS {
        specs.push((
            format!("disk: 4 KiB write + fdatasync, {what}"),
            "syncs/s",
            format!("fsync-{name}_per_s"),
        ));
    }
    let mb = tree.bytes as f64 / 1e6;
    specs.push((
        format!(
            "share: untar {} files ({mb:.1} MB) into the share",
            tree.files
        ),
        "files/s",
        "untar_files_per_s".into(),
    ));
    specs.push((
        format!("share: the same untar ({mb:.1} MB)"),
        "MB/s",
        "untar_mbps".into(),
    ));
    specs.push((
        "share: read every file back (guest cache dropped)".into(),
        "MB/s",
        "readback_mbps".into(),
    ));
    specs
        .into_iter()
        .map(|(what, unit, k)| {
            let (a, b) = (format!("disks.vmz.{k}"), format!("disks.ref.{k}"));
            let pairs = pairs_note(samples, &a, &b);
            TableRow {
                what,
                unit,
                row: a,
                reference: Some((reference.into(), b)),
                note: format!("higher is better, goal ratio ≥ 0.97{pairs}"),
            }
        })
        .collect()
}

/// Runs the disk and share rows; returns the report.
pub(crate) fn run_disks(opts: &DiskOptions) -> BenchResult<String> {
    let guest = Guest::load()?;
    install_logger();
    let root = opts.out_dir.join("disks-work");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).context("create target/vmz-bench/disks-work")?;
    let tree = ShareTree::make(&root, opts.share_files as u64, opts.share_large as u64)?;
    eprintln!(
        "share tree: {} files, {} bytes; warm-up and command lines",
        tree.files, tree.bytes
    );
    let reference = {
        let ws = Workspace::create(&root, "capture", opts, &tree)?;
        DiskReference::capture(&guest, &ws)?
    };
    // Warm both paths once (page cache, first starts), untimed.
    {
        let ws = Workspace::create(&root, "warm-ref", opts, &tree)?;
        drop(reference.boot(&ws)?);
    }

    let mut samples = Samples::default();
    for i in 0..opts.runs {
        eprintln!("disk rows: run {}/{}", i + 1, opts.runs);
        in_turn(
            i,
            &mut samples,
            &|samples| {
                let ws = Workspace::create(&root, "vmz", opts, &tree)?;
                if opts.calibrate {
                    let mut run = reference.boot(&ws)?;
                    return workload(&mut run.qemu.console, opts, &tree, samples, "vmz");
                }
                let (mut run, _) =
                    VmzRun::boot_with(&guest, &guest.vmlinux, MEMORY_MIB, false, |b| ws.attach(b))?;
                workload(&mut run.console, opts, &tree, samples, "vmz")
            },
            &|samples| {
                let ws = Workspace::create(&root, "ref", opts, &tree)?;
                let mut run = reference.boot(&ws)?;
                workload(&mut run.qemu.console, opts, &tree, samples, "ref")
            },
        )?;
    }
    let _ = std::fs::remove_dir_all(&root);

    // The per-pair ratios themselves, for disks.json.
    let rows = disk_rows(opts, &tree, &samples);
    add_pair_ratios(&mut samples, &rows, |k| {
        k.replace("disks.vmz.", "disks.pair_ratio.")
    });
    let table = table(&samples, &rows);
    let meta = [
        ("runs", opts.runs.to_string()),
        ("seq_mib", opts.seq_mib.to_string()),
        ("rand_ops", opts.rand_ops.to_string()),
        ("rand_seconds", opts.rand_seconds.to_string()),
        ("fsync_ops", opts.fsync_ops.to_string()),
        ("fsync_seconds", opts.fsync_seconds.to_string()),
        ("share_files", tree.files.to_string()),
        ("share_bytes", tree.bytes.to_string()),
        (
            "calibrate",
            (if opts.calibrate {
                "yes: the reference in both columns (A/A)"
            } else {
                "no"
            })
            .to_string(),
        ),
        ("vmz_qemu_args", quote_args(&reference.qemu.vmz)),
        (
            "reference_qemu_args",
            quote_args(
                &reference
                    .qemu
                    .reference_with(Path::new("/tmp/vmz-bench-PID-disks.qmp"))?,
            ),
        ),
        (
            "reference_qemu_fds",
            format!(
                "disks {:?} (opened by the bench, same flags and flock), share socket {}",
                reference.disk_fds, reference.share_fd
            ),
        ),
        ("virtiofsd_args", quote_args(&reference.virtiofsd)),
        ("virtiofsd_listener_fd", reference.listener_fd.to_string()),
    ];
    finish(
        &opts.out_dir,
        ("disks", "disks-table"),
        &samples,
        &meta,
        &table,
    )
}
