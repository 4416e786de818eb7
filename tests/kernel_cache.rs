//! The kernel cache's trust and repair (issue 10, faults 3, 7, 9, 11, 12):
//! each boot runs in a child process (tests/common/child.rs) with its own
//! VMZ_KERNEL_CACHE, PATH or SIGCHLD disposition, and boots the test
//! guest's bzImage far enough for QEMU to load it (start).

// These tests boot the amd64 test guest under QEMU (scripts/make-guest.sh):
// Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::child;
use vmz::Machine;

#[test]
#[ignore = "entry point of the child processes of the other tests (VMZ_TEST_ROLE)"]
fn child_role() {
    child::dispatch(&[("boot_bzimage", role_boot_bzimage)]);
}

/// Role: starts the guest's bzImage (QEMU loads the kernel before the VM
/// runs), then stops it. Every vmz log line goes to stderr.
fn role_boot_bzimage() {
    common::guest(); // (make-guest.sh needs SIGCHLD)
    child::log_to_stderr();
    if std::env::var_os("VMZ_TEST_IGNORE_SIGCHLD").is_some() {
        // SAFETY: setting a disposition; no handler code is involved.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    }
    let config = common::guest_builder(&common::guest().bzimage)
        .nat(false)
        .build()
        .unwrap();
    let vm = Machine::new(&config).unwrap();
    vm.start()
        .expect("the bzImage (or its cached vmlinux) boots");
    vm.force_stop().unwrap();
    println!("STARTED");
}

/// Boots in a child with `cache` as VMZ_KERNEL_CACHE; returns its stderr.
fn boot(cache: &Path, configure: impl FnOnce(&mut Command)) -> String {
    let done = child::run_ok(
        "boot_bzimage",
        |c| {
            c.env("VMZ_KERNEL_CACHE", cache);
            configure(c);
        },
        Duration::from_secs(120),
    );
    assert!(done.stdout.contains("STARTED"), "{}", done.stdout);
    done.stderr
}

/// The cache entries (`*.vmlinux`) in `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "vmlinux"));
    out
}

fn temp(name: &str) -> common::TempDir {
    let dir =
        common::TempDir(std::env::temp_dir().join(format!("vmz-kc-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    dir
}

/// Fault 3 (and 7, 11): an entry boots only as the cache wrote it. Every
/// kind of damage (truncated, zeroed, a corrupted middle, planted without
/// a record, a FIFO, another owner) is detected, warned about and rebuilt
/// (the rebuilt entry equals the first one); a warm lookup reads no
/// kernel; stale temporaries of dead processes are removed.
#[test]
fn damaged_or_planted_cache_entries_are_rebuilt_never_booted() {
    let _s = common::serial();
    common::guest();
    let root = temp("damage");
    let cache = root.0.join("cache");
    let cold = boot(&cache, |_| {});
    assert!(cold.contains("decompressed"), "{cold}");
    let [entry] = &entries(&cache)[..] else {
        panic!("one entry: {:?}", entries(&cache));
    };
    let good = std::fs::read(entry).unwrap();
    let warm = boot(&cache, |_| {});
    let line = warm
        .lines()
        .find(|l| l.contains("warm lookup"))
        .unwrap_or_else(|| panic!("{warm}"));
    eprintln!("{line}");

    type Damage = fn(&Path);
    let damages: [(&str, Damage, &str); 6] = [
        (
            "truncated",
            |p| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(4096)
                    .unwrap()
            },
            "changed after it was written",
        ),
        (
            "zeroed",
            |p| {
                let n = std::fs::metadata(p).unwrap().len() as usize;
                std::fs::write(p, vec![0u8; n]).unwrap()
            },
            "changed after it was written",
        ),
        (
            "corrupted middle",
            |p| {
                use std::io::{Seek, SeekFrom, Write};
                let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                let n = f.metadata().unwrap().len();
                f.seek(SeekFrom::Start(n / 2)).unwrap();
                f.write_all(&[0xcc; 4096]).unwrap();
            },
            "changed after it was written",
        ),
        (
            "planted",
            |p| {
                std::fs::remove_file(p.with_extension("vmlinux.rec")).unwrap();
                let mut bogus = b"\x7fELF\x02\x01\x01".to_vec();
                bogus.resize(4096, 0);
                std::fs::write(p, bogus).unwrap();
            },
            "has no record",
        ),
        (
            "a FIFO",
            |p| {
                std::fs::remove_file(p).unwrap();
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid path string.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            },
            "not a regular file",
        ),
        (
            "another owner's",
            |p| {
                std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
            },
            "belongs to uid 65534",
        ),
    ];
    for (what, damage, says) in damages {
        damage(entry);
        let log = boot(&cache, |_| {});
        assert!(log.contains(says), "{what}: {log}");
        assert!(log.contains("decompressed"), "{what}: rebuilt: {log}");
        assert!(
            std::fs::read(entry).unwrap() == good,
            "{what}: the rebuilt entry is the original"
        );
    }

    // Fault 11: temporaries of a process that died while unpacking.
    let dead = (1..)
        .map(|n| 4_000_000 - n)
        // SAFETY: signal 0 only checks whether the process exists.
        .find(|&p| unsafe { libc::kill(p, 0) } != 0)
        .unwrap();
    let stale = cache.join(format!(".unpack-{dead}-abcdef"));
    let old = cache.join(".unpack-Qx3pZz");
    let live = cache.join(format!(".unpack-{}-keepme", std::process::id()));
    for p in [&stale, &old, &live] {
        std::fs::write(p, vec![7u8; 1 << 20]).unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    boot(&cache, |_| {});
    assert!(!stale.exists(), "a dead process's temporary is removed");
    assert!(!old.exists(), "an hour-old temporary is removed");
    assert!(live.exists(), "a live process's fresh temporary is kept");
}

/// Fault 3: a cache directory someone else could write into is not used
/// (the bzImage boots as it is, with a warning), nor is one whose parent
/// another user may change.
#[test]
fn an_untrusted_cache_directory_is_not_used() {
    let _s = common::serial();
    common::guest();
    let root = temp("untrusted");
    let others = root.0.join("others");
    std::fs::create_dir(&others).unwrap();
    std::os::unix::fs::chown(&others, Some(65534), Some(65534)).unwrap();
    let open = root.0.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let shared = root.0.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let below = shared.join("cache");
    for (dir, says) in [
        (&others, "belongs to uid 65534"),
        (&open, "writable by group or others"),
        (&below, "can be changed by another user"),
    ] {
        let log = boot(dir, |_| {});
        assert!(log.contains(says), "{}: {log}", dir.display());
        assert!(log.contains("as it is"), "{log}");
        assert!(
            entries(dir).is_empty(),
            "nothing written into {}",
            dir.display()
        );
    }
    assert_eq!(std::fs::metadata(&others).unwrap().uid(), 65534);
}

/// Fault 12: a relative VMZ_KERNEL_CACHE is refused (it created
/// directories at `/`); nothing is created, the bzImage boots as it is.
#[test]
fn a_relative_cache_path_is_refused() {
    let _s = common::serial();
    common::guest();
    let cwd = temp("relative");
    let name = format!("vmz-relative-{}", std::process::id());
    let log = boot(Path::new(&format!("{name}/cache")), |c| {
        c.current_dir(&cwd.0);
    });
    assert!(log.contains("not an absolute path"), "{log}");
    assert!(!cwd.0.join(&name).exists());
    assert!(!Path::new("/").join(&name).exists());
}

/// Fault 9: with SIGCHLD ignored, a decompressor that fails after writing
/// a valid-looking start (disk full) was taken for a success and the
/// truncated kernel committed. It must be seen failing: no entry, the
/// reason decoded, the bzImage boots as it is.
#[test]
fn a_failing_decompressor_is_seen_even_when_sigchld_is_ignored() {
    let _s = common::serial();
    common::guest();
    let root = temp("decompressor");
    let bin = root.0.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = ["/usr/bin/lz4", "/bin/lz4"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("lz4");
    let fake = bin.join("lz4");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\n{real} \"$@\" | head -c 1000000\nexit 70\n"),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = root.0.join("cache");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = boot(&cache, |c| {
        c.env("PATH", &path).env("VMZ_TEST_IGNORE_SIGCHLD", "1");
    });
    assert!(log.contains("lz4 exited with status 70"), "{log}");
    assert!(
        entries(&cache).is_empty(),
        "no truncated entry committed: {:?}",
        entries(&cache)
    );
}
