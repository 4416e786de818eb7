//! Child processes of a test: the test binary run again as a "host" for
//! scenarios that change process-wide things (signal dispositions, the
//! environment, limits, stdout) or that end the process.
//!
//! A test file that uses this has one ignored test, the entry point,
//! which runs the role named by `VMZ_TEST_ROLE`:
//!
//! ```ignore
//! #[test]
//! #[ignore = "entry point of child processes (VMZ_TEST_ROLE)"]
//! fn child_role() {
//!     common::child::dispatch(&[("name", role_fn)]);
//! }
//! ```

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The name of the entry point test.
pub const ENTRY: &str = "child_role";

/// Runs the role named in `VMZ_TEST_ROLE` (nothing when unset).
pub fn dispatch(roles: &[(&str, fn())]) {
    let Ok(role) = std::env::var("VMZ_TEST_ROLE") else {
        return;
    };
    let (_, f) = roles
        .iter()
        .find(|(name, _)| *name == role)
        .unwrap_or_else(|| panic!("no role {role:?}"));
    f();
}

/// A command that runs `role` in a new process of this test binary.
pub fn command(role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        ENTRY,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("VMZ_TEST_ROLE", role)
    .stdin(Stdio::null());
    c
}

/// What a finished child printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Collects a child's piped stdout and stderr on threads.
pub struct Running {
    pub child: Child,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn collect(r: Option<impl Read + Send + 'static>) -> Option<std::thread::JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

impl Running {
    /// Spawns `cmd` with stdout and stderr piped (unless set otherwise).
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd.spawn().expect("spawn the test binary");
        let out = collect(child.stdout.take());
        let err = collect(child.stderr.take());
        Running { child, out, err }
    }

    /// Waits until the child ends; after `timeout` kills it and panics,
    /// naming `what` it was waiting for and what the child printed.
    pub fn finish(mut self, timeout: Duration, what: &str) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self
            .out
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "{what}: not done within {timeout:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}"
            );
        };
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

/// Runs `role` to its end (bounded); panics unless it succeeded.
pub fn run_ok(role: &str, configure: impl FnOnce(&mut Command), timeout: Duration) -> Finished {
    let mut cmd = command(role);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    configure(&mut cmd);
    let done = Running::spawn(&mut cmd).finish(timeout, &format!("child role {role}"));
    assert!(
        done.status.success(),
        "child role {role} failed ({:?})\n--- stdout:\n{}\n--- stderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    done
}

/// A logger for child roles: every record of vmz on stderr, so the parent
/// can check the warnings.
pub fn log_to_stderr() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, r: &log::Record) {
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Debug);
}
