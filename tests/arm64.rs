//! arm64 guests on the QEMU engine (qemu-system-aarch64, `virt`): the test
//! guest of `scripts/make-guest.sh --arch arm64` (Debian's cloud arm64
//! kernel) booted through the public API. Under TCG on an x86_64 host one
//! boot takes seconds, so each boot checks several things; together they
//! cover the marker, the console both ways (hvc0 and the PL011), the
//! guest's poweroff, the graceful stop (the GPIO power key), the force
//! stop, a kernel panic, the gzip-compressed Image and an EFI zboot image
//! through the kernel cache, the entropy device, a named port, vsock both
//! ways, a virtio-blk disk and a virtio-fs share, and what vmz asks of QEMU.

// These tests boot test guests under QEMU (scripts/make-guest.sh): Linux
// only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{
    machine_with_events, release, start, wait, Console, RecordingQemu, Resources, BOOT_TIMEOUT,
    MARKER,
};
use vmz::{ConsoleDevice, ErrorCode, Event, Exit, GuestArchitecture, Machine, State};

/// The arm64 test guest's config with this console.
fn arm64_builder(kernel: &std::path::Path) -> vmz::ConfigBuilder {
    let g = common::arm64_guest();
    vmz::Config::builder(kernel)
        .guest_architecture(GuestArchitecture::Arm64)
        .initrd(&g.initrd)
        .command_line(&g.cmdline)
        .memory_mib(256)
        .nat(false)
}

/// Boots `builder` with a console and waits for the marker.
fn boot(builder: vmz::ConfigBuilder) -> (Machine, std::sync::mpsc::Receiver<Event>, Console) {
    let (console, input, output) = Console::new();
    let config = builder
        .serial_input(input)
        .serial_output(output)
        .build()
        .unwrap();
    let (vm, events) = machine_with_events(&config);
    drop(config);
    start(&vm).expect("start the arm64 guest");
    console.expect(MARKER, BOOT_TIMEOUT);
    (vm, events, console)
}

/// The kernel cache's entries in `cache` (each comes with a `.rec` record
/// and a `.ptr` source pointer, KernelCacheStore.swift): exactly one
/// unpacked Image, and nothing else than its record and pointer.
fn cached_images(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    let files: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let images: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".Image"))
        .cloned()
        .collect();
    assert_eq!(images.len(), 1, "one cached kernel: {files:?}");
    assert_eq!(
        files.len(),
        3,
        "the kernel, its record and pointer: {files:?}"
    );
    images
}

/// The gzip-compressed Image (as distributions ship it) is decompressed
/// once into the kernel cache and boots from there on QEMU's `virt` with
/// the arguments chosen for TCG; on hvc0 the guest echoes, has an entropy
/// device and a named port, and it stops gracefully on the GPIO power key.
#[test]
fn gzip_image_boots_through_the_cache_and_stops_on_the_power_key() {
    let _serial = common::serial();
    let g = common::arm64_guest();
    let dir =
        common::TempDir(std::env::temp_dir().join(format!("vmz-arm64-{}", std::process::id())));
    let cache = dir.0.join("kernels");
    let qemu = RecordingQemu::named(&dir.0.join("qemu"), "qemu-system-aarch64");
    // VM tests of this binary run one at a time (`serial`).
    std::env::set_var("VMZ_KERNEL_CACHE", &cache);
    let before = Resources::now();
    {
        let (host_end, vm_end) = UnixStream::pair().unwrap();
        let builder = arm64_builder(&g.bzimage)
            .serial_port("vmz.arm64", vm_end)
            .vsock(true);
        let (vm, events, mut console) = qemu.with(|| boot(builder));
        assert_eq!(
            common::event_names(&events, 2, "the start"),
            ["State(Starting)", "State(Running)"]
        );

        let cached = cached_images(&cache);
        assert!(
            std::fs::read(&cached[0]).unwrap() == std::fs::read(&g.kernel).unwrap(),
            "the cached kernel is Image.gz decompressed"
        );

        // What vmz asked of QEMU: the arm64 machine under TCG (the host is
        // x86_64 here; on an arm64 host with working KVM, kvm and host).
        let args = qemu.args();
        let arg = |o: &str| {
            qemu.value_of(o)
                .unwrap_or_else(|| panic!("{o} in {args:?}"))
        };
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arg("-accel"), "tcg");
            assert_eq!(arg("-machine"), "virt,gic-version=3");
            assert_eq!(arg("-cpu"), "cortex-a57");
        }
        assert!(args.iter().any(|a| a == "pvpanic-pci"), "{args:?}");

        console.send_line("cmdline");
        console.expect(&format!("vmz-guest: cmdline [{}]", g.cmdline), BOOT_TIMEOUT);
        console.send_line("hello arm64");
        console.expect("echo: hello arm64", BOOT_TIMEOUT);
        console.send_line("hwrng 64");
        console.expect("vmz-guest: hwrng 64 bytes", BOOT_TIMEOUT);
        console.send_line("port vmz.arm64");
        console.expect("vmz-guest: port vmz.arm64 is /dev/vport", BOOT_TIMEOUT);
        let mut port = BufReader::new(host_end.try_clone().unwrap());
        (&host_end).write_all(b"ping\n").unwrap();
        let mut line = String::new();
        common::within("the port's answer", BOOT_TIMEOUT, || {
            port.read_line(&mut line)
        })
        .unwrap();
        assert_eq!(line.trim_end(), "port vmz.arm64: ping");

        // vsock both ways (scripts/guest-vsock.c, cross-compiled).
        console.send_line("vsock-listen 5000 echo");
        console.expect("vmz-guest: vsock listening on 5000", BOOT_TIMEOUT);
        let mut s = vm.vsock_connect(5000).expect("connect to the guest");
        s.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
        s.write_all(b"over vsock\n").unwrap();
        let mut back = [0u8; 11];
        std::io::Read::read_exact(&mut s, &mut back).expect("the echo");
        assert_eq!(&back, b"over vsock\n");
        drop(s);
        let listener = vm.vsock_listen(6000).unwrap();
        console.send_line("vsock-connect 6000 hi-from-arm64");
        let mut conn = listener
            .accept_timeout(BOOT_TIMEOUT)
            .unwrap()
            .expect("the guest connects");
        conn.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
        let mut line = String::new();
        BufReader::new(conn.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "hi-from-arm64\n");
        conn.write_all(b"hello arm64").unwrap();
        drop(conn);
        console.expect("vmz-guest: vsock reply [hello arm64]", BOOT_TIMEOUT);
        drop(listener);

        vm.request_stop().expect("request stop");
        let exit = wait(&vm, Duration::from_secs(10));
        assert!(
            matches!(exit, Exit::PoweredOff),
            "{exit:?}; console:\n{}",
            console.text()
        );
        assert_eq!(
            common::events_until_end(&events).last().unwrap(),
            "Ended(PoweredOff)"
        );
        assert!(console.text().contains("vmz-guest: power button"));
        release(vm);
        console.close();
    }
    std::env::remove_var("VMZ_KERNEL_CACHE");
    before.assert_restored();
}

/// An EFI zboot image (Linux's CONFIG_EFI_ZBOOT `vmlinuz.efi`) around
/// `gzip`, the compressed Image: the header Linux writes (`MZ`, `zimg`, the
/// payload's offset and size, the compression's name); the EFI stub's code,
/// which neither QEMU's direct boot nor vmz runs, is left out.
fn zboot_image(gzip: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
    let payload = std::fs::read(gzip).unwrap();
    let mut image = vec![0u8; 64];
    image[0..2].copy_from_slice(b"MZ");
    image[4..8].copy_from_slice(b"zimg");
    image[8..12].copy_from_slice(&64u32.to_le_bytes());
    image[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    image[24..28].copy_from_slice(b"gzip");
    image.extend_from_slice(&payload);
    let path = dir.join("vmlinuz.efi");
    std::fs::write(&path, image).unwrap();
    path
}

/// An EFI zboot image, unpacked into the kernel cache, boots with the
/// console on the PL011 (ttyAMA0), a virtio-blk disk and a virtio-fs
/// share, which the guest writes; the guest's own poweroff ends the VM as
/// `PoweredOff`, and the disk and the share hold what it wrote.
#[test]
fn zboot_image_on_the_pl011_powers_off_by_itself() {
    let _serial = common::serial();
    let g = common::arm64_guest();
    let dir = common::TempDir(
        std::env::temp_dir().join(format!("vmz-arm64-zboot-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let zboot = zboot_image(&g.bzimage, &dir.0);
    let disk = dir.0.join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let shared = dir.0.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("host.txt"), "from-the-host").unwrap();
    let cache = dir.0.join("kernels");
    std::env::set_var("VMZ_KERNEL_CACHE", &cache);
    let before = Resources::now();
    {
        let cmdline = g.cmdline.replace("console=hvc0", "console=ttyAMA0");
        assert_ne!(cmdline, g.cmdline, "the guest's console is hvc0");
        let builder = arm64_builder(&zboot)
            .console(ConsoleDevice::Serial)
            .command_line(&cmdline)
            .disk(vmz::Disk::new(&disk).serial("arm64"))
            .share(vmz::Share::new(&shared, "arm64"));
        let (vm, events, mut console) = boot(builder);
        assert_eq!(
            common::event_names(&events, 2, "the start"),
            ["State(Starting)", "State(Running)"]
        );
        // The PL011 prints from the kernel's first message on.
        assert!(
            console.text().contains("Booting Linux"),
            "{}",
            console.text()
        );
        let cached = cached_images(&cache);
        assert!(
            std::fs::read(&cached[0]).unwrap() == std::fs::read(&g.kernel).unwrap(),
            "the cached kernel is the zboot image's payload, unpacked"
        );
        console.send_line("hello pl011");
        console.expect("echo: hello pl011", BOOT_TIMEOUT);
        console.send_line("disks");
        console.expect(
            "vmz-guest: disk vda ro=0 size=16384 serial=arm64",
            BOOT_TIMEOUT,
        );
        console.send_line("disk-write vda written-on-arm64");
        console.expect("vmz-guest: disk-write vda ok", BOOT_TIMEOUT);
        console.send_line("share-mount arm64");
        console.expect("vmz-guest: share-mount arm64 ok", BOOT_TIMEOUT);
        console.send_line("share-read arm64 host.txt");
        console.expect(
            "vmz-guest: share-read arm64/host.txt [from-the-host]",
            BOOT_TIMEOUT,
        );
        console.send_line("share-write arm64 guest.txt from-arm64");
        console.expect("vmz-guest: share-write arm64/guest.txt ok", BOOT_TIMEOUT);
        assert_eq!(
            std::fs::read_to_string(shared.join("guest.txt")).unwrap(),
            "from-arm64"
        );
        console.send_line("poweroff");
        let exit = wait(&vm, BOOT_TIMEOUT);
        assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
        assert_eq!(
            common::events_until_end(&events).last().unwrap(),
            "Ended(PoweredOff)"
        );
        assert_eq!(vm.state(), State::Stopped);
        release(vm);
        console.close();
    }
    let written = std::fs::read(&disk).unwrap();
    assert!(
        written.starts_with(b"written-on-arm64"),
        "the disk holds the guest's write"
    );
    std::env::remove_var("VMZ_KERNEL_CACHE");
    before.assert_restored();
}

/// A kernel panic is reported as `Panicked` (pvpanic-pci), and a force stop
/// ends a running arm64 guest.
#[test]
fn a_panic_is_an_error_and_a_force_stop_ends_the_guest() {
    let _serial = common::serial();
    let g = common::arm64_guest();
    let before = Resources::now();
    {
        let (vm, _events, mut console) = boot(arm64_builder(&g.kernel));
        console.send_line("panic");
        let exit = wait(&vm, BOOT_TIMEOUT);
        assert!(matches!(exit, Exit::Panicked), "{exit:?}");
        release(vm);
        console.close();

        let (vm, events, console) = boot(arm64_builder(&g.kernel));
        common::force_stop(&vm).expect("force stop");
        assert!(matches!(vm.exit(), Some(Exit::ForceStopped)));
        assert_eq!(
            common::event_names(&events, 2, "the start"),
            ["State(Starting)", "State(Running)"]
        );
        assert_eq!(
            common::events_until_end(&events).last().unwrap(),
            "Ended(ForceStopped)"
        );
        release(vm);
        console.close();
    }
    before.assert_restored();
}

/// Kernels and accelerators that do not fit the guest's architecture are
/// refused by validate, before anything starts.
#[test]
fn kernels_and_accelerators_are_checked_against_the_architecture() {
    let _serial = common::serial();
    let arm = common::arm64_guest();
    let x86 = common::guest();
    let check = |builder: vmz::ConfigBuilder, code: ErrorCode, words: &[&str]| {
        let e = builder.build().unwrap().validate().unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        for w in words {
            assert!(e.to_string().contains(w), "{w:?} not in: {e}");
        }
    };
    // An x86_64 kernel for an arm64 guest, and the other way round.
    check(
        arm64_builder(&x86.kernel),
        ErrorCode::Kernel,
        &["ELF", "for x86_64 guests", "an arm64 guest boots"],
    );
    check(
        arm64_builder(&x86.bzimage),
        ErrorCode::Kernel,
        &["bzImage", "an arm64 guest boots"],
    );
    check(
        vmz::Config::builder(&arm.kernel).guest_architecture(GuestArchitecture::X86_64),
        ErrorCode::Kernel,
        &["arm64 Image", "for arm64 guests", "an x86_64 guest boots"],
    );
    // An EFI zboot image (arm64's vmlinuz.efi) for an x86_64 guest.
    let dir = common::TempDir(
        std::env::temp_dir().join(format!("vmz-arm64-formats-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let zboot = zboot_image(&arm.bzimage, &dir.0);
    check(
        vmz::Config::builder(&zboot).guest_architecture(GuestArchitecture::X86_64),
        ErrorCode::Kernel,
        &["EFI zboot", "for arm64 guests"],
    );
    // A zboot image whose payload is not inside the file: refused at start.
    let mut cut = std::fs::read(&zboot).unwrap();
    cut.truncate(4096);
    let cut_path = dir.0.join("cut.efi");
    std::fs::write(&cut_path, cut).unwrap();
    let config = arm64_builder(&cut_path).build().unwrap();
    config.validate().expect("the header passes validate");
    let vm = Machine::new(&config).unwrap();
    let e = start(&vm).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Kernel, "{e}");
    assert!(
        e.to_string()
            .contains("cannot be decompressed as an EFI zboot image"),
        "{e}"
    );
    release(vm);
    // KVM cannot run a guest of another architecture.
    let foreign = if cfg!(target_arch = "x86_64") {
        arm64_builder(&arm.kernel)
    } else {
        vmz::Config::builder(&x86.kernel).guest_architecture(GuestArchitecture::X86_64)
    };
    check(
        foreign.accelerator(vmz::Accelerator::Hardware),
        ErrorCode::Accelerator,
        &["KVM runs only guests of the host's architecture"],
    );
}
