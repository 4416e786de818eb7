//! virtio-blk disks with the real test guest: data written by the guest
//! stays (read back from the host and in a second boot), a read-only disk
//! stays untouched, host block devices (loop devices) work the same way, disks appear in order with their serials, qcow2 works,
//! a disk another VM uses is refused, and every bad disk is a typed error
//! that starts nothing and leaves nothing behind.

// These tests boot the test guest under QEMU (scripts/make-guest.sh): Linux
// only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{guest_builder, Console, Resources, TempDir, BOOT_TIMEOUT, MARKER};
use vmz::{Disk, DiskFormat, DiskSync, ErrorCode, Exit, Machine};

const MIB: u64 = 1 << 20;

fn temp_dir(name: &str) -> TempDir {
    let dir =
        TempDir(std::env::temp_dir().join(format!("vmz-disks-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    dir
}

/// A raw image of `size` bytes starting with `head`.
fn raw_image(path: &Path, size: u64, head: &[u8]) -> PathBuf {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, head, 0).unwrap();
    path.to_path_buf()
}

/// A qcow2 image made by qemu-img (scripts/setup-debian.sh installs it).
fn qcow2_image(path: &Path, size: u64, backing: Option<&Path>) -> PathBuf {
    let mut cmd = std::process::Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2"]);
    if let Some(b) = backing {
        cmd.args(["-F", "raw", "-b"]).arg(b);
    }
    let status = cmd
        .arg(path)
        .arg(size.to_string())
        .status()
        .expect("run qemu-img (apt-get install qemu-utils)");
    assert!(status.success());
    path.to_path_buf()
}

fn head(path: &Path, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(path).unwrap(), &mut buf, 0)
        .unwrap();
    buf
}

/// A loop device over an image, detached when dropped (however the test
/// ends). Needs root (or a user allowed to use `losetup`).
struct LoopDevice(PathBuf);

impl LoopDevice {
    /// `losetup -f --show [-r] image`, or None (with a visible `SKIPPED:`
    /// line) where this process cannot make loop devices.
    fn attach(image: &Path, kernel_read_only: bool) -> Option<LoopDevice> {
        let mut cmd = std::process::Command::new("losetup");
        if kernel_read_only {
            cmd.arg("-r");
        }
        match cmd.args(["-f", "--show"]).arg(image).output() {
            Ok(out) if out.status.success() => {
                let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
                Some(LoopDevice(PathBuf::from(dev)))
            }
            other => {
                eprintln!("SKIPPED: block-device disks (cannot make a loop device: {other:?})");
                None
            }
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let ok = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok && !std::thread::panicking() {
            panic!("losetup -d {} failed", self.0.display());
        }
    }
}

/// Boots the test guest with `disks`, runs `body` with its console, then
/// has the guest power off (and checks that it did).
fn boot_with_disks(disks: &[Disk], body: impl FnOnce(&mut Console)) {
    let (mut console, input, output) = Console::new();
    let mut builder = guest_builder(&common::guest().kernel).nat(false);
    for d in disks {
        builder = builder.disk(d.clone());
    }
    let config = builder
        .serial_input(input)
        .serial_output(output)
        .build()
        .unwrap();
    let vm = Machine::new(&config).unwrap();
    drop(config);
    vm.start().unwrap();
    console.expect(MARKER, BOOT_TIMEOUT);
    body(&mut console);
    console.send_line("poweroff");
    let exit = common::wait(&vm, BOOT_TIMEOUT);
    assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
    drop(vm);
    console.close();
}

#[test]
fn guest_writes_persist_read_only_disks_stay_untouched_and_disks_keep_their_order() {
    let _serial = common::serial();
    common::guest();
    let dir = temp_dir("persist");
    let data = raw_image(&dir.0.join("data.img"), 8 * MIB, b"written-by-host");
    let ro = raw_image(&dir.0.join("ro.img"), 4 * MIB, b"read-only-disk!");
    let qcow = qcow2_image(&dir.0.join("q.qcow2"), 2 * MIB, None);
    let ro_before = std::fs::read(&ro).unwrap();
    let mut disks = vec![
        Disk::new(&data).serial("data"),
        Disk::new(&ro).read_only(true).serial("ro-disk"),
        Disk::new(&qcow)
            .format(DiskFormat::Qcow2)
            .sync(DiskSync::Off),
    ];
    let mut expected = vec![
        "vmz-guest: disk vda ro=0 size=16384 serial=data",
        "vmz-guest: disk vdb ro=1 size=8192 serial=ro-disk",
        "vmz-guest: disk vdc ro=0 size=4096 serial=",
    ];
    // Host block devices: loop devices over scratch images, one
    // read-write (vdd), one read-only (vde). Detached by their guards
    // however the test ends.
    let block_rw_image = raw_image(&dir.0.join("block-rw.img"), 2 * MIB, b"block-by-host");
    let block_ro_image = raw_image(&dir.0.join("block-ro.img"), MIB, b"block-read-only");
    let block_ro_before = std::fs::read(&block_ro_image).unwrap();
    let loops =
        LoopDevice::attach(&block_rw_image, false).zip(LoopDevice::attach(&block_ro_image, false));
    if let Some((rw, ro)) = &loops {
        disks.push(Disk::new(&rw.0).serial("block-rw"));
        disks.push(Disk::new(&ro.0).read_only(true).serial("block-ro"));
        expected.push("vmz-guest: disk vdd ro=0 size=4096 serial=block-rw");
        expected.push("vmz-guest: disk vde ro=1 size=2048 serial=block-ro");
    }
    let before = Resources::now();

    boot_with_disks(&disks, |console| {
        // In order, with their sizes (512-byte sectors), modes and serials.
        console.ask("disks", "vmz-guest: disks done");
        let text = console.text();
        let listed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("vmz-guest: disk vd"))
            .collect();
        assert_eq!(listed, expected, "{text}");
        console.ask(
            "disk-read vda 15",
            "vmz-guest: disk-read vda [written-by-host]",
        );
        console.ask(
            "disk-write vda written-by-guest",
            "vmz-guest: disk-write vda ok",
        );
        console.ask(
            "disk-write vdc qcow2-by-guest",
            "vmz-guest: disk-write vdc ok",
        );
        console.ask(
            "disk-read vdb 15",
            "vmz-guest: disk-read vdb [read-only-disk!]",
        );
        console.ask(
            "disk-write vdb overwritten",
            "vmz-guest: disk-write vdb failed",
        );

        // While this VM runs, its disks are in use: a read-write disk for
        // every other use, a read-only one for writing.
        let other = |disk: Disk| {
            guest_builder(&common::guest().kernel)
                .disk(disk)
                .build()
                .unwrap()
        };
        for (disk, what) in [
            (Disk::new(&data), "read-write, held read-write"),
            (
                Disk::new(&data).read_only(true),
                "read-only, held read-write",
            ),
            (Disk::new(&ro), "read-write, held read-only"),
        ] {
            let e = other(disk).validate().unwrap_err();
            assert_eq!(e.code(), ErrorCode::DiskInUse, "{what}: {e}");
            assert!(e.to_string().contains("in use"), "{e}");
        }
        let e = Machine::new(&other(Disk::new(&data))).unwrap_err();
        assert_eq!(e.code(), ErrorCode::DiskInUse, "{e}");
        // Two readers share a disk.
        other(Disk::new(&ro).read_only(true)).validate().unwrap();

        if let Some((rw, ro)) = &loops {
            console.ask(
                "disk-read vdd 13",
                "vmz-guest: disk-read vdd [block-by-host]",
            );
            console.ask(
                "disk-write vdd block-by-guest",
                "vmz-guest: disk-write vdd ok",
            );
            console.ask(
                "disk-read vde 15",
                "vmz-guest: disk-read vde [block-read-only]",
            );
            console.ask(
                "disk-write vde overwritten",
                "vmz-guest: disk-write vde failed",
            );
            // A block device is locked like an image file.
            let e = other(Disk::new(&rw.0)).validate().unwrap_err();
            assert_eq!(e.code(), ErrorCode::DiskInUse, "{e}");
            other(Disk::new(&ro.0).read_only(true)).validate().unwrap();
        }
    });

    // After the VM: the guest's write is in the image, the read-only image
    // is byte for byte what it was, and the disks are free again.
    assert_eq!(head(&data, 16), b"written-by-guest");
    assert_eq!(
        std::fs::read(&ro).unwrap(),
        ro_before,
        "the read-only image changed"
    );
    guest_builder(&common::guest().kernel)
        .disk(Disk::new(&data))
        .build()
        .unwrap()
        .validate()
        .unwrap();
    if let Some((rw, _)) = &loops {
        // Through the device and in the file behind it.
        assert_eq!(head(&rw.0, 14), b"block-by-guest");
        assert_eq!(head(&block_rw_image, 14), b"block-by-guest");
        assert_eq!(
            std::fs::read(&block_ro_image).unwrap(),
            block_ro_before,
            "the read-only block device changed"
        );
    }

    // A second boot sees what the first one wrote, raw and qcow2.
    boot_with_disks(&disks, |console| {
        console.ask(
            "disk-read vda 16",
            "vmz-guest: disk-read vda [written-by-guest]",
        );
        console.ask(
            "disk-read vdc 14",
            "vmz-guest: disk-read vdc [qcow2-by-guest]",
        );
        if loops.is_some() {
            console.ask(
                "disk-read vdd 14",
                "vmz-guest: disk-read vdd [block-by-guest]",
            );
        }
    });
    before.assert_restored();
}

/// `disks` on the test guest are refused (common::assert_rejected).
fn assert_disk_rejected(disks: Vec<Disk>, code: ErrorCode, words: &str) {
    let mut builder = guest_builder(&common::guest().kernel);
    for d in disks {
        builder = builder.disk(d);
    }
    common::assert_rejected(builder.build().unwrap(), code, words);
}

#[test]
fn bad_disks_are_typed_errors_that_start_nothing() {
    let _serial = common::serial();
    let dir = temp_dir("bad");
    let ok = raw_image(&dir.0.join("ok.img"), MIB, b"");

    assert_disk_rejected(
        vec![Disk::new(dir.0.join("missing.img"))],
        ErrorCode::Disk,
        "does not exist",
    );
    assert_disk_rejected(vec![Disk::new(&dir.0)], ErrorCode::Disk, "is a directory");
    assert_disk_rejected(
        vec![Disk::new("/dev/null")],
        ErrorCode::Disk,
        "neither a regular file nor a block device",
    );
    let empty = raw_image(&dir.0.join("empty.img"), 0, b"");
    assert_disk_rejected(vec![Disk::new(&empty)], ErrorCode::Disk, "is empty");

    // Block devices: one that cannot be opened (no driver behind the
    // node), one the kernel marks read-only asked read-write, and one
    // with no medium (a loop device with no file attached).
    let no_driver = dir.0.join("no-driver");
    // 240: a major number of the "local/experimental" range, unused here.
    let node = std::ffi::CString::new(no_driver.to_str().unwrap()).unwrap();
    // SAFETY: mknod reads a NUL-terminated path; it creates a node only.
    if unsafe { libc::mknod(node.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(240, 0)) } == 0 {
        assert_disk_rejected(
            vec![Disk::new(&no_driver)],
            ErrorCode::Disk,
            "cannot be opened: No such device or address",
        );
    } else {
        eprintln!("SKIPPED: a block device node that cannot be opened (mknod needs root)");
    }
    let kernel_ro = raw_image(&dir.0.join("kernel-ro.img"), MIB, b"");
    if let Some(dev) = LoopDevice::attach(&kernel_ro, true) {
        assert_disk_rejected(
            vec![Disk::new(&dev.0)],
            ErrorCode::Disk,
            "cannot be opened for writing (the block device is read-only)",
        );
        guest_builder(&common::guest().kernel)
            .disk(Disk::new(&dev.0).read_only(true))
            .build()
            .unwrap()
            .validate()
            .unwrap();
        // The same device twice, by another name: refused like a file.
        let link = dir.0.join("dev-link");
        std::os::unix::fs::symlink(&dev.0, &link).unwrap();
        assert_disk_rejected(
            vec![
                Disk::new(&dev.0).read_only(true),
                Disk::new(&link).read_only(true),
            ],
            ErrorCode::Disk,
            "is the same file as disk 0",
        );
    }
    let free = std::process::Command::new("losetup").arg("-f").output();
    match free {
        Ok(out) if out.status.success() => {
            let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
            assert_disk_rejected(
                vec![Disk::new(&dev).read_only(true)],
                ErrorCode::Disk,
                "is a block device of size 0",
            );
        }
        other => eprintln!("SKIPPED: a loop device with no file ({other:?})"),
    }

    // Formats: vmz never guesses, and takes raw and qcow2 only.
    let vmdk = raw_image(&dir.0.join("x.vmdk"), MIB, b"KDMV\x01\x00\x00\x00");
    assert_disk_rejected(vec![Disk::new(&vmdk)], ErrorCode::Disk, "is a VMDK image");
    let vdi = dir.0.join("x.vdi");
    raw_image(&vdi, MIB, b"");
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::File::options().write(true).open(&vdi).unwrap(),
        &[0x7f, 0x10, 0xda, 0xbe],
        0x40,
    )
    .unwrap();
    assert_disk_rejected(vec![Disk::new(&vdi)], ErrorCode::Disk, "is a VDI image");
    let qcow = qcow2_image(&dir.0.join("q.qcow2"), MIB, None);
    assert_disk_rejected(
        vec![Disk::new(&qcow)],
        ErrorCode::Disk,
        "declare its format as qcow2",
    );
    assert_disk_rejected(
        vec![Disk::new(&ok).format(DiskFormat::Qcow2)],
        ErrorCode::Disk,
        "is not a qcow2 image",
    );
    let overlay = qcow2_image(&dir.0.join("overlay.qcow2"), MIB, Some(&ok));
    assert_disk_rejected(
        vec![Disk::new(&overlay).format(DiskFormat::Qcow2)],
        ErrorCode::Disk,
        "with a backing file",
    );

    // The same file twice, also through a symbolic link.
    let link = dir.0.join("link.img");
    std::os::unix::fs::symlink(&ok, &link).unwrap();
    assert_disk_rejected(
        vec![Disk::new(&ok), Disk::new(&ok).read_only(true)],
        ErrorCode::Disk,
        "is the same file as disk 0",
    );
    assert_disk_rejected(
        vec![Disk::new(&ok), Disk::new(&link)],
        ErrorCode::Disk,
        "is the same file as disk 0",
    );

    // Too many.
    let many = (0..=vmz::MAX_DISKS)
        .map(|i| Disk::new(raw_image(&dir.0.join(format!("{i}.img")), MIB, b"")))
        .collect();
    assert_disk_rejected(many, ErrorCode::Disk, "at most 16");

    // Serials: length and characters.
    assert_disk_rejected(
        vec![Disk::new(&ok).serial("")],
        ErrorCode::Disk,
        "1 to 20 bytes",
    );
    assert_disk_rejected(
        vec![Disk::new(&ok).serial("a".repeat(21))],
        ErrorCode::Disk,
        "1 to 20 bytes",
    );
    assert_disk_rejected(
        vec![Disk::new(&ok).serial("a,b=c")],
        ErrorCode::Disk,
        "may hold only",
    );

    // A file the process cannot write, asked read-write (read-only is fine).
    let locked = raw_image(&dir.0.join("locked.img"), MIB, b"");
    let _unwritable = Unwritable::new(&locked);
    assert_disk_rejected(
        vec![Disk::new(&locked)],
        ErrorCode::Disk,
        "cannot be opened for writing",
    );
    guest_builder(&common::guest().kernel)
        .disk(Disk::new(&locked).read_only(true))
        .build()
        .unwrap()
        .validate()
        .unwrap();
}

/// Makes a file unwritable for this process until dropped: mode 0444, and
/// for root (whom modes do not stop) the immutable attribute.
struct Unwritable(PathBuf);

const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

fn set_immutable(path: &Path, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one long through a
    // valid pointer, on a descriptor we own.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        flags = if on {
            flags | FS_IMMUTABLE_FL
        } else {
            flags & !FS_IMMUTABLE_FL
        };
        if libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Unwritable {
    fn new(path: &Path) -> Unwritable {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            set_immutable(path, true)
                .expect("root: set the immutable attribute (chattr +i) on the test file");
        }
        assert!(
            std::fs::File::options().write(true).open(path).is_err(),
            "the file is still writable"
        );
        Unwritable(path.to_path_buf())
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        let _ = set_immutable(&self.0, false);
    }
}

#[test]
fn the_c_abi_steps_through_disks_by_their_struct_size() {
    let _serial = common::serial();
    let dir = temp_dir("abi");
    let a = raw_image(&dir.0.join("a.img"), MIB, b"");
    let b = raw_image(&dir.0.join("b.img"), MIB, b"");
    let g = common::guest();
    let kernel = std::ffi::CString::new(g.kernel.to_str().unwrap()).unwrap();
    let paths = [a, b].map(|p| std::ffi::CString::new(p.to_str().unwrap()).unwrap());

    // A caller of a later ABI whose VMZDisk has grown by 8 bytes: the
    // bridge must step by struct_size and ignore the tail.
    #[repr(C)]
    struct Bigger {
        disk: vmz::sys::VMZDisk,
        extra: u64,
    }
    let disk = |path: &std::ffi::CString, size: usize| vmz::sys::VMZDisk {
        struct_size: size as u32,
        path: path.as_ptr(),
        ..Default::default()
    };
    let big = std::mem::size_of::<Bigger>();
    let disks = [
        Bigger {
            disk: disk(&paths[0], big),
            extra: u64::MAX,
        },
        Bigger {
            disk: disk(&paths[1], big),
            extra: u64::MAX,
        },
    ];
    let validate = |ptr: *const vmz::sys::VMZDisk, count: u32| {
        let config = vmz::sys::VMZConfig {
            struct_size: std::mem::size_of::<vmz::sys::VMZConfig>() as u32,
            kernel_path: kernel.as_ptr(),
            cpu_count: 1,
            memory_size: 256 * MIB,
            read_pipe_fd: -1,
            write_pipe_fd: -1,
            disks: ptr,
            disk_count: count,
            ..Default::default()
        };
        let mut err = std::ptr::null_mut();
        // SAFETY: the config and everything it points to live for the call.
        let ok = unsafe { vmz::sys::vmz_validate_config(&config, &mut err) };
        // SAFETY: on failure we own the error.
        let e = unsafe { vmz::BridgeError::from_raw(err) };
        (ok, e)
    };
    let (ok, e) = validate(disks.as_ptr().cast(), 2);
    assert!(ok, "{e:?}");

    // Elements must agree on their size.
    let mixed = [
        Bigger {
            disk: disk(&paths[0], big),
            extra: 0,
        },
        Bigger {
            disk: disk(&paths[1], std::mem::size_of::<vmz::sys::VMZDisk>()),
            extra: 0,
        },
    ];
    let (ok, e) = validate(mixed.as_ptr().cast(), 2);
    assert!(!ok);
    let e = e.unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(
        e.message().contains("all elements must have the same"),
        "{e}"
    );

    // NULL with a count, and a struct_size too small.
    let (ok, e) = validate(std::ptr::null(), 1);
    assert!(!ok && e.unwrap().code() == ErrorCode::InvalidArgument);
    let small = [disk(&paths[0], 8)];
    let (ok, e) = validate(small.as_ptr(), 1);
    assert!(!ok && e.unwrap().message().contains("struct_size is 8"));
}
