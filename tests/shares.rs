//! Shared directories (virtio-fs) with the real test guest: a file the host
//! wrote is read by the guest and the other way round, a read-only share
//! refuses writes, bad shares are typed errors, a missing virtiofsd says
//! how to install it, and no virtiofsd, QEMU or descriptor is left after
//! any test, including after the host process is SIGKILLed.

// These tests boot test guests under QEMU (scripts/make-guest.sh): Linux
// only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{guest_builder, Console, Resources, TempDir, BOOT_TIMEOUT, MARKER};
use vmz::{ErrorCode, Exit, Machine, Share};

fn temp_dir(name: &str) -> TempDir {
    let dir =
        TempDir(std::env::temp_dir().join(format!("vmz-shares-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    dir
}

fn subdir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Processes (any parent) whose command line mentions `needle`: a
/// virtiofsd serving a directory of this test, wherever it was reparented.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// The virtiofsd vmz would run: `$VMZ_VIRTIOFSD`, else `virtiofsd` on
/// PATH, else /usr/libexec/virtiofsd.
fn real_virtiofsd() -> PathBuf {
    if let Some(p) = std::env::var_os("VMZ_VIRTIOFSD") {
        return p.into();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("virtiofsd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "/usr/libexec/virtiofsd".into())
}

/// A virtiofsd that does not end by itself: a script in `dir` that runs
/// the real one, then stays alive as `sleep` (the same process, so that
/// only vmz's kill ends it). The real virtiofsd exits when QEMU
/// disconnects; this one must be killed by vmz, once QEMU has ended, or
/// by its parent-death signal when the host process dies.
fn lingering_virtiofsd(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = real_virtiofsd();
    let real = real.to_str().unwrap();
    assert!(!real.contains('\''), "{real}");
    let script = dir.join("lingering-virtiofsd");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = --version ]; then exec '{real}' --version; fi\n\
             '{real}' \"$@\"\n\
             exec sleep 600\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The children of this process running `script` (a shell script: its
/// path is the second word of the command line; `/dev/fd/N` when it was
/// run from a descriptor, as for a multi-directory share).
fn children_running(script: &Path) -> Vec<u32> {
    let needle = script.to_str().unwrap();
    common::children()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains(needle) || (c.starts_with("/bin/sh\0/dev/fd/") && c.contains("--fd=3"))
            })
        })
        .collect()
}

fn shares_config(
    shares: &[Share],
    console: (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
) -> vmz::Config {
    let mut builder = guest_builder(&common::guest().kernel).nat(false);
    for s in shares {
        builder = builder.share(s.clone());
    }
    builder
        .serial_input(console.0)
        .serial_output(console.1)
        .build()
        .unwrap()
}

#[test]
fn host_and_guest_exchange_files_and_a_read_only_share_refuses_writes() {
    let _serial = common::serial();
    common::guest();
    let dir = temp_dir("exchange");
    let work = subdir(&dir.0, "work");
    let docs = subdir(&dir.0, "docs");
    std::fs::write(work.join("host.txt"), "from-the-host").unwrap();
    std::fs::write(docs.join("ro.txt"), "read-only-file").unwrap();
    // Two directories under one tag: one read-write, one read-only.
    let multi_rw = subdir(&dir.0, "multi-rw");
    let multi_ro = subdir(&dir.0, "multi-ro");
    std::fs::write(multi_rw.join("a.txt"), "in-the-rw-directory").unwrap();
    std::fs::write(multi_ro.join("b.txt"), "in-the-ro-directory").unwrap();
    // Daemons that stay alive after QEMU disconnects: only vmz's kill
    // ends them before the VM's end is reported.
    let lingering = lingering_virtiofsd(&dir.0);
    let before = Resources::now();
    common::with_env("VMZ_VIRTIOFSD", &lingering, || {
        let (mut console, input, output) = Console::new();
        let config = shares_config(
            &[
                Share::new(&work, "work"),
                Share::new(&docs, "docs").read_only(true),
                Share::directories("multi")
                    .directory("rw", &multi_rw, false)
                    .directory("ro", &multi_ro, true),
            ],
            (input, output),
        );
        let vm = Machine::new(&config).unwrap();
        drop(config);
        vm.start().unwrap();
        console.expect(MARKER, BOOT_TIMEOUT);
        // QEMU and one virtiofsd per share, all children of this process.
        assert_eq!(common::children().len(), 4, "QEMU and three virtiofsd");
        assert_eq!(children_running(&lingering).len(), 3, "the daemons run");

        console.send_line("share-mount work");
        console.expect("vmz-guest: share-mount work ok", BOOT_TIMEOUT);
        console.send_line("share-read work host.txt");
        console.expect(
            "vmz-guest: share-read work/host.txt [from-the-host]",
            BOOT_TIMEOUT,
        );
        console.send_line("share-write work guest.txt from-the-guest");
        console.expect("vmz-guest: share-write work/guest.txt ok", BOOT_TIMEOUT);
        assert_eq!(
            std::fs::read_to_string(work.join("guest.txt")).unwrap(),
            "from-the-guest"
        );
        // A file the host writes now is seen too (no stale cache on open).
        std::fs::write(work.join("later.txt"), "written-while-running").unwrap();
        console.send_line("share-read work later.txt");
        console.expect(
            "vmz-guest: share-read work/later.txt [written-while-running]",
            BOOT_TIMEOUT,
        );

        console.send_line("share-mount docs");
        console.expect("vmz-guest: share-mount docs ok", BOOT_TIMEOUT);
        console.send_line("share-read docs ro.txt");
        console.expect(
            "vmz-guest: share-read docs/ro.txt [read-only-file]",
            BOOT_TIMEOUT,
        );
        console.send_line("share-write docs new.txt nope");
        console.expect("vmz-guest: share-write docs/new.txt failed", BOOT_TIMEOUT);
        console.send_line("share-write docs ro.txt overwritten");
        console.expect("vmz-guest: share-write docs/ro.txt failed", BOOT_TIMEOUT);
        assert!(
            !docs.join("new.txt").exists(),
            "the read-only share was written"
        );
        assert_eq!(
            std::fs::read_to_string(docs.join("ro.txt")).unwrap(),
            "read-only-file"
        );

        check_multi_directory_share(&mut console, &multi_rw, &multi_ro, &dir.0);

        // These daemons would never end by themselves.
        power_off_with_daemons_reaped(vm, console);
    });
    assert!(
        processes_mentioning(dir.0.to_str().unwrap()).is_empty(),
        "a virtiofsd is left"
    );
    assert_eq!(
        share_mounts(&dir.0),
        Vec::<String>::new(),
        "a mount is left"
    );
    before.assert_restored();
}

/// The lines of this process's mountinfo that are a multi-directory
/// share's (its tmpfs, "vmz-share", or a bind of a directory below
/// `dir`): none ever, on the host's side. (Not the whole table: other
/// processes of this machine may mount things meanwhile.)
fn share_mounts(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("vmz-share") || l.contains(dir))
        .map(String::from)
        .collect()
}

/// Has the guest power off, and checks that the VM's end was reported
/// after its daemons were killed and reaped.
fn power_off_with_daemons_reaped(vm: Machine, mut console: Console) {
    console.send_line("poweroff");
    let exit = common::wait(&vm, BOOT_TIMEOUT);
    assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
    assert!(common::children().is_empty(), "a virtiofsd outlived its VM");
    drop(vm);
    console.close();
}

/// The share "multi" of the exchange test: its two directories under one
/// tag, the read-only one and the share's root refusing writes, its bind
/// mounts in the daemon's own mount namespace only.
fn check_multi_directory_share(console: &mut Console, rw: &Path, ro: &Path, dir: &Path) {
    console.ask("share-mount multi", "vmz-guest: share-mount multi ok");
    console.ask(
        "share-read multi rw/a.txt",
        "vmz-guest: share-read multi/rw/a.txt [in-the-rw-directory]",
    );
    console.ask(
        "share-read multi ro/b.txt",
        "vmz-guest: share-read multi/ro/b.txt [in-the-ro-directory]",
    );
    console.ask(
        "share-write multi rw/new.txt from-the-guest",
        "vmz-guest: share-write multi/rw/new.txt ok",
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("new.txt")).unwrap(),
        "from-the-guest"
    );
    console.ask(
        "share-write multi ro/new.txt nope",
        "vmz-guest: share-write multi/ro/new.txt failed",
    );
    console.ask(
        "share-write multi ro/b.txt overwritten",
        "vmz-guest: share-write multi/ro/b.txt failed",
    );
    console.ask(
        "share-write multi root.txt nope",
        "vmz-guest: share-write multi/root.txt failed",
    );
    assert!(
        !ro.join("new.txt").exists(),
        "the read-only directory was written"
    );
    assert_eq!(
        std::fs::read_to_string(ro.join("b.txt")).unwrap(),
        "in-the-ro-directory"
    );
    // The bind mounts exist in the daemon's mount namespace only.
    assert_eq!(
        share_mounts(dir),
        Vec::<String>::new(),
        "the share's mounts are visible to the host"
    );
}

#[test]
fn a_virtiofsd_that_dies_ends_its_vm_with_an_error_naming_the_share() {
    let _serial = common::serial();
    common::guest();
    let dir = temp_dir("daemon-dies");
    let before = Resources::now();
    {
        let (console, input, output) = Console::new();
        // Beside the share whose daemon dies, a multi-directory one: its
        // daemon, started in a mount namespace of its own, runs and keeps
        // its name (also through the descriptor path on Linux >= 6.14).
        let config = shares_config(
            &[
                Share::new(&dir.0, "work"),
                Share::directories("multi").directory("d", &dir.0, true),
            ],
            (input, output),
        );
        let vm = Machine::new(&config).unwrap();
        drop(config);
        vm.start().unwrap();
        console.expect(MARKER, BOOT_TIMEOUT);
        let comm =
            |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let daemons: Vec<u32> = common::children()
            .into_iter()
            .filter(|&p| comm(p).starts_with("virtiofsd"))
            .collect();
        assert_eq!(daemons.len(), 2, "two virtiofsd by name: {daemons:?}");
        let daemon = processes_mentioning(dir.0.to_str().unwrap())
            .into_iter()
            .find(|p| daemons.contains(p))
            .expect("the virtiofsd of share 0");
        // SAFETY: kill has no memory preconditions; the pid is our child.
        assert_eq!(unsafe { libc::kill(daemon as i32, libc::SIGKILL) }, 0);
        let exit = common::wait(&vm, BOOT_TIMEOUT);
        let Exit::EngineError(e) = exit else {
            panic!("expected an error, got {exit:?}")
        };
        assert_eq!(e.code(), ErrorCode::Runtime, "{e}");
        assert!(
            e.to_string().contains("virtiofsd for share 0 \"work\""),
            "{e}"
        );
        assert!(e.to_string().contains("signal 9"), "{e}");
        assert!(common::children().is_empty());
        drop(vm);
        console.close();
    }
    before.assert_restored();
}

#[test]
fn bad_shares_are_typed_errors_that_start_nothing() {
    let _serial = common::serial();
    let dir = temp_dir("bad");
    let ok = subdir(&dir.0, "ok");
    let file = dir.0.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let rejected = |shares: Vec<Share>, code: ErrorCode, words: &str| {
        let mut builder = guest_builder(&common::guest().kernel);
        for s in shares {
            builder = builder.share(s);
        }
        common::assert_rejected(builder.build().unwrap(), code, words);
    };
    rejected(
        vec![Share::new(dir.0.join("missing"), "t")],
        ErrorCode::Share,
        "does not exist",
    );
    rejected(
        vec![Share::new(&file, "t")],
        ErrorCode::Share,
        "is not a directory",
    );
    rejected(vec![Share::new(&ok, "")], ErrorCode::Share, "tag is empty");
    rejected(
        vec![Share::new(&ok, "a b")],
        ErrorCode::Share,
        "may hold only",
    );
    rejected(
        vec![Share::new(&ok, "x,id=y")],
        ErrorCode::Share,
        "may hold only",
    );
    let longest = "t".repeat(vmz::MAX_SHARE_TAG_LEN);
    rejected(
        vec![Share::new(&ok, longest.clone() + "t")],
        ErrorCode::Share,
        "the limit is 35",
    );
    rejected(
        vec![Share::new(&ok, "same"), Share::new(&dir.0, "same")],
        ErrorCode::Share,
        "is already used",
    );
    let many = (0..=vmz::MAX_SHARES)
        .map(|i| Share::new(&ok, format!("t{i}")))
        .collect();
    rejected(many, ErrorCode::Share, "at most 8");
    // At the limits: fine.
    guest_builder(&common::guest().kernel)
        .share(Share::new(&ok, longest))
        .build()
        .unwrap()
        .validate()
        .unwrap();

    // Several directories under one tag.
    let multi = || Share::directories("m");
    rejected(vec![multi()], ErrorCode::Share, "has no directory");
    rejected(
        vec![Share::new(&ok, "m").directory("a", &ok, false)],
        ErrorCode::Share,
        "has both a path and directories",
    );
    rejected(
        vec![multi()
            .directory("a", &ok, false)
            .directory("a", &dir.0, true)],
        ErrorCode::Share,
        "the directory name \"a\" is used twice",
    );
    let long_name = "n".repeat(vmz::MAX_SHARE_DIRECTORY_NAME_LEN);
    rejected(
        vec![multi().directory("", &ok, false)],
        ErrorCode::Share,
        "directory 0: name is empty",
    );
    for bad in [".", "..", "a/b", "a b", &(long_name.clone() + "n")] {
        rejected(
            vec![multi().directory(bad, &ok, false)],
            ErrorCode::Share,
            "must be 1 to 64 bytes of A-Z a-z 0-9 . _ -",
        );
    }
    rejected(
        vec![multi()
            .directory("a", &ok, false)
            .directory("b", dir.0.join("missing"), true)],
        ErrorCode::Share,
        "directory \"b\" (",
    );
    rejected(
        vec![multi().directory("f", &file, false)],
        ErrorCode::Share,
        "is not a directory",
    );
    let too_many = (0..=vmz::MAX_SHARE_DIRECTORIES)
        .fold(multi(), |s, i| s.directory(format!("d{i}"), &ok, false));
    rejected(vec![too_many], ErrorCode::Share, "at most 16");
    // At the limits, and one directory under two names: fine.
    let full = (1..vmz::MAX_SHARE_DIRECTORIES)
        .fold(multi().directory(long_name, &ok, true), |s, i| {
            s.directory(format!("d{i}"), &ok, false)
        });
    guest_builder(&common::guest().kernel)
        .share(full)
        .build()
        .unwrap()
        .validate()
        .unwrap();
}

#[test]
fn a_missing_or_wrong_virtiofsd_says_how_to_install_it() {
    let _serial = common::serial();
    let dir = temp_dir("novirtiofsd");
    let config = guest_builder(&common::guest().kernel)
        .share(Share::new(&dir.0, "t"))
        .build()
        .unwrap();
    let check = |value: &str, words: &str| {
        common::with_env("VMZ_VIRTIOFSD", value, || {
            let before = Resources::now();
            {
                let e = config.validate().unwrap_err();
                assert_eq!(e.code(), ErrorCode::EngineUnavailable, "{e}");
                assert!(e.to_string().contains(words), "{e}");
                assert!(e.to_string().contains("cargo install virtiofsd"), "{e}");
                let e = Machine::new(&config).unwrap_err();
                assert_eq!(e.code(), ErrorCode::EngineUnavailable, "{e}");
            }
            assert!(common::children().is_empty());
            before.assert_restored();
        });
    };
    check("/nonexistent/virtiofsd", "is not an executable file");
    // An executable that is not the Rust virtiofsd (like QEMU 7.2's C one).
    check("/bin/true", "is not the Rust virtiofsd");
    // Without shares, no virtiofsd is needed.
    common::with_env("VMZ_VIRTIOFSD", "/nonexistent/virtiofsd", || {
        guest_builder(&common::guest().kernel)
            .build()
            .unwrap()
            .validate()
            .unwrap();
    });
}

/// The VM host of `virtiofsd_and_qemu_die_with_a_sigkilled_host`: boots a
/// guest with a share, mounts it, prints its children's pids, and waits to
/// be killed.
#[test]
#[ignore = "helper process, run by virtiofsd_and_qemu_die_with_a_sigkilled_host"]
fn share_host() {
    let dir = PathBuf::from(std::env::var("VMZ_TEST_SHARE_DIR").unwrap());
    let (mut console, input, output) = Console::new();
    let vm = Machine::new(&shares_config(&[Share::new(&dir, "work")], (input, output))).unwrap();
    vm.start().unwrap();
    console.expect(MARKER, BOOT_TIMEOUT);
    console.send_line("share-mount work");
    console.expect("vmz-guest: share-mount work ok", BOOT_TIMEOUT);
    let pids: Vec<String> = common::children().iter().map(u32::to_string).collect();
    println!("CHILDREN {}", pids.join(" "));
    std::thread::sleep(Duration::from_secs(120));
    unreachable!("the parent test kills this process");
}

#[test]
fn virtiofsd_and_qemu_die_with_a_sigkilled_host() {
    use std::io::BufRead;
    let _serial = common::serial();
    common::guest();
    let dir = temp_dir("orphans");
    let lingering = lingering_virtiofsd(&dir.0);
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "share_host", "--nocapture"])
        .env("VMZ_TEST_SHARE_DIR", &dir.0)
        .env("VMZ_VIRTIOFSD", &lingering)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(host.stdout.take().unwrap());
    let children: Vec<i32> = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("CHILDREN ")
                .map(|p| p.split(' ').map(|x| x.parse().unwrap()).collect())
        })
        .expect("the host printed its children");
    assert_eq!(children.len(), 2, "QEMU and one virtiofsd: {children:?}");
    let needle = dir.0.to_str().unwrap().to_string();
    // The host's virtiofsd child is the lingering wrapper (which outlives
    // QEMU unless killed), and the real one runs under it.
    assert_eq!(
        processes_mentioning(lingering.to_str().unwrap()).len(),
        1,
        "the wrapper runs"
    );
    assert!(
        processes_mentioning(&needle).len() >= 2,
        "the real virtiofsd runs"
    );

    host.kill().unwrap(); // SIGKILL: no destructor runs in the host
    host.wait().unwrap();
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (children.iter().any(|&p| alive(p)) || !processes_mentioning(&needle).is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in children {
        assert!(!alive(pid), "{pid} outlived its host");
    }
    assert!(
        processes_mentioning(&needle).is_empty(),
        "a virtiofsd (or its sandboxed child) outlived its host"
    );
}

/// The guest side of `a_user_shares_several_directories_through_a_user_namespace`,
/// run as an unprivileged user: boots the guest named by the environment
/// (no make-guest.sh, which this user may not reach) with a share of two
/// directories, and checks them from the guest.
#[test]
#[ignore = "helper process, run by a_user_shares_several_directories_through_a_user_namespace"]
fn share_user() {
    let env = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let dir = env("VMZ_TEST_SHARE_DIR");
    let (mut console, input, output) = Console::new();
    let config = vmz::Config::builder(env("VMZ_TEST_KERNEL"))
        .initrd(env("VMZ_TEST_INITRD"))
        .command_line(std::env::var("VMZ_TEST_CMDLINE").unwrap())
        .memory_mib(256)
        .nat(false)
        .share(
            Share::directories("multi")
                .directory("rw", dir.join("rw"), false)
                .directory("ro", dir.join("ro"), true),
        )
        .serial_input(input)
        .serial_output(output)
        .build()
        .unwrap();
    config.validate().unwrap();
    let vm = Machine::new(&config).unwrap();
    drop(config);
    common::start(&vm).unwrap();
    console.expect(MARKER, BOOT_TIMEOUT);
    // The daemon runs in a user namespace of its own.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    let daemon = common::children()
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.starts_with("virtiofsd"))
        })
        .expect("a virtiofsd child");
    assert_ne!(ns(&daemon.to_string()), ns("self"), "no user namespace");
    console.ask("share-mount multi", "vmz-guest: share-mount multi ok");
    console.ask(
        "share-read multi ro/b.txt",
        "vmz-guest: share-read multi/ro/b.txt [read-only-for-the-user]",
    );
    console.ask(
        "share-write multi rw/new.txt from-a-user",
        "vmz-guest: share-write multi/rw/new.txt ok",
    );
    console.ask(
        "share-write multi ro/new.txt nope",
        "vmz-guest: share-write multi/ro/new.txt failed",
    );
    power_off_with_daemons_reaped(vm, console);
    println!("USER-SHARE-OK");
}

/// A user without root gets a multi-directory share through an
/// unprivileged user namespace. Run as root, the test drops to `nobody`
/// (setpriv) in a copy of the test binary, the guest and virtiofsd that
/// `nobody` can read; run as a user, the exchange test already takes that
/// path.
#[test]
fn a_user_shares_several_directories_through_a_user_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = common::serial();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: not root (the exchange test runs the user-namespace path itself)");
        return;
    }
    let g = common::guest();
    let dir = temp_dir("user");
    let nobody = 65534;
    let open = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(&dir.0, 0o755);
    let copy = |from: &Path, name: &str| {
        let to = dir.0.join(name);
        std::fs::copy(from, &to).unwrap();
        open(&to, 0o755);
        to
    };
    let bin = copy(&std::env::current_exe().unwrap(), "test-bin");
    let kernel = copy(&g.kernel, "vmlinux");
    let initrd = copy(&g.initrd, "initrd.img");
    let virtiofsd = copy(&real_virtiofsd(), "virtiofsd");
    let rw = subdir(&dir.0, "rw");
    let ro = subdir(&dir.0, "ro");
    std::fs::write(ro.join("b.txt"), "read-only-for-the-user").unwrap();
    for d in [&rw, &ro] {
        std::os::unix::fs::chown(d, Some(nobody), Some(nobody)).unwrap();
    }
    if !std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIPPED: no setpriv (util-linux) to run as nobody");
        return;
    }
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["share_user", "--exact", "--ignored", "--nocapture"])
        .env("VMZ_TEST_SHARE_DIR", &dir.0)
        .env("VMZ_TEST_KERNEL", &kernel)
        .env("VMZ_TEST_INITRD", &initrd)
        .env("VMZ_TEST_CMDLINE", &g.cmdline)
        .env("VMZ_VIRTIOFSD", &virtiofsd)
        .env("HOME", &dir.0)
        .current_dir(&dir.0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let done = common::child::Running::spawn(&mut cmd).finish(
        common::BOOT_TIMEOUT * 3,
        "the guest of a user's multi-directory share",
    );
    assert!(
        done.status.success() && done.stdout.contains("USER-SHARE-OK"),
        "{:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("new.txt")).unwrap(),
        "from-a-user"
    );
    assert!(!ro.join("new.txt").exists());
}
