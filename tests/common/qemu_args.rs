//! QEMU (or another helper program vmz starts) run through a wrapper that
//! records its arguments: tests check what vmz asks of QEMU (observable
//! behaviour of the engine) without reading the engine's code, and the
//! benchmarks run the same command lines alone.

use std::path::{Path, PathBuf};

/// The real `qemu-system-x86_64` on `PATH`, resolved.
pub fn real_qemu() -> PathBuf {
    real_qemu_named("qemu-system-x86_64")
}

/// The real `name` (a `qemu-system-*`) on `PATH`, resolved.
pub fn real_qemu_named(name: &str) -> PathBuf {
    on_path(name).unwrap_or_else(|| panic!("{name} on PATH"))
}

/// The first `name` on `PATH`, resolved; None if there is none.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|q| q.is_file())
            .and_then(|q| q.canonicalize().ok())
    })
}

/// A `<prefix>/bin/<name>` script that writes its arguments, one per
/// line, to `<prefix>/args` (each run replaces the file) and then runs the
/// real program with them (descriptors and environment pass through
/// `exec`). For any helper program vmz starts (QEMU, virtiofsd, a vsock
/// backend), pointed to by its environment variable.
pub struct RecordingProgram {
    pub prefix: PathBuf,
    pub binary: PathBuf,
    args_file: PathBuf,
}

impl RecordingProgram {
    /// Creates the wrapper of `real` under `prefix` (which the caller
    /// removes).
    pub fn new(prefix: &Path, name: &str, real: &Path) -> RecordingProgram {
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        let args_file = prefix.join("args");
        let binary = prefix.join("bin").join(name);
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        std::fs::write(
            &binary,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexec {} \"$@\"\n",
                quote(&args_file),
                quote(real)
            ),
        )
        .unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        RecordingProgram {
            prefix: prefix.to_path_buf(),
            binary,
            args_file,
        }
    }

    /// Runs `f` with the environment variable `var` pointing at the
    /// wrapper. Call it only while holding [`crate::common::serial`]:
    /// nothing else of this test binary reads the environment meanwhile.
    pub fn with<T>(&self, var: &str, f: impl FnOnce() -> T) -> T {
        super::with_env(var, &self.binary, f)
    }

    /// The arguments of the last run (argv[1..]; lines of the record, so an
    /// argument with a newline spans two).
    pub fn args(&self) -> Vec<String> {
        std::fs::read_to_string(&self.args_file)
            .expect("the program was run through the wrapper")
            .lines()
            .map(String::from)
            .collect()
    }
}

/// A `<prefix>/bin/qemu-system-x86_64` [`RecordingProgram`] of the real
/// QEMU, for `VMZ_QEMU`.
pub struct RecordingQemu {
    pub prefix: PathBuf,
    pub binary: PathBuf,
    program: RecordingProgram,
}

impl RecordingQemu {
    /// Creates the wrapper under `prefix` (which the caller removes).
    pub fn new(prefix: &Path) -> RecordingQemu {
        RecordingQemu::named(prefix, "qemu-system-x86_64")
    }

    /// The same for another QEMU binary (`qemu-system-aarch64`).
    pub fn named(prefix: &Path, name: &str) -> RecordingQemu {
        let program = RecordingProgram::new(prefix, name, &real_qemu_named(name));
        RecordingQemu {
            prefix: program.prefix.clone(),
            binary: program.binary.clone(),
            program,
        }
    }

    /// Runs `f` with `VMZ_QEMU` pointing at the wrapper. Call it only while
    /// holding [`crate::common::serial`]: nothing else of this test binary
    /// reads the environment meanwhile.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        self.program.with("VMZ_QEMU", f)
    }

    /// The arguments of the last run (argv[1..]; lines of the record, so an
    /// argument with a newline spans two).
    pub fn args(&self) -> Vec<String> {
        self.program.args()
    }

    /// The value after `option` in the last run's arguments.
    pub fn value_of(&self, option: &str) -> Option<String> {
        let args = self.args();
        args.iter()
            .position(|a| a == option)
            .and_then(|i| args.get(i + 1).cloned())
    }
}
