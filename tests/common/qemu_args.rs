//! QEMU run through a wrapper that records its arguments: tests check what
//! vmz asks of QEMU (observable behaviour of the engine) without reading
//! the engine's code.

use std::path::{Path, PathBuf};

/// The real `qemu-system-x86_64` on `PATH`, resolved.
pub fn real_qemu() -> PathBuf {
    real_qemu_named("qemu-system-x86_64")
}

/// The real `name` (a `qemu-system-*`) on `PATH`, resolved.
pub fn real_qemu_named(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|q| q.is_file())
        })
        .unwrap_or_else(|| panic!("{name} on PATH"))
        .canonicalize()
        .unwrap()
}

/// A `<prefix>/bin/qemu-system-x86_64` script that writes its arguments,
/// one per line, to `<prefix>/args` (each run replaces the file) and then
/// runs the real QEMU with them.
pub struct RecordingQemu {
    pub prefix: PathBuf,
    pub binary: PathBuf,
    args_file: PathBuf,
}

impl RecordingQemu {
    /// Creates the wrapper under `prefix` (which the caller removes).
    pub fn new(prefix: &Path) -> RecordingQemu {
        RecordingQemu::named(prefix, "qemu-system-x86_64")
    }

    /// The same for another QEMU binary (`qemu-system-aarch64`).
    pub fn named(prefix: &Path, name: &str) -> RecordingQemu {
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        let args_file = prefix.join("args");
        let binary = prefix.join("bin").join(name);
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        std::fs::write(
            &binary,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexec {} \"$@\"\n",
                quote(&args_file),
                quote(&real_qemu_named(name))
            ),
        )
        .unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        RecordingQemu {
            prefix: prefix.to_path_buf(),
            binary,
            args_file,
        }
    }

    /// Runs `f` with `VMZ_QEMU` pointing at the wrapper. Call it only while
    /// holding [`crate::common::serial`]: nothing else of this test binary
    /// reads the environment meanwhile.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        super::with_env("VMZ_QEMU", &self.binary, f)
    }

    /// The arguments of the last run (argv[1..]; lines of the record, so an
    /// argument with a newline spans two).
    pub fn args(&self) -> Vec<String> {
        std::fs::read_to_string(&self.args_file)
            .expect("QEMU was run through the wrapper")
            .lines()
            .map(String::from)
            .collect()
    }

    /// The value after `option` in the last run's arguments.
    pub fn value_of(&self, option: &str) -> Option<String> {
        let args = self.args();
        args.iter()
            .position(|a| a == option)
            .and_then(|i| args.get(i + 1).cloned())
    }
}
