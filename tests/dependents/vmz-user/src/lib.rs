//! A library crate that uses vmz like any other dependency: no build script,
//! no link arguments. Its test binary and the binaries of crates that use it
//! (`vmz-user-app`) get the Swift bridge and its runtime from vmz alone.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

/// The bridge's ABI version (a call into the Swift bridge).
pub fn abi_version() -> u32 {
    vmz::abi_version()
}

/// The error code the bridge gives a kernel path that does not exist (the
/// Swift side checks the path, builds an error object and hands it back).
pub fn missing_kernel_error(path: &Path) -> Option<vmz::ErrorCode> {
    match vmz::Config::builder(path)
        .build()
        .and_then(|c| c.validate())
    {
        Ok(()) => None,
        Err(e) => Some(e.code()),
    }
}

/// Boots `dir`'s `vmlinux` + `initrd.img` with its `cmdline` (vmz's test
/// guest, from `scripts/make-guest.sh`), waits for `marker` on the serial console and
/// force-stops the guest. Returns the time to the marker.
pub fn boot_until(dir: &Path, marker: &str, timeout: Duration) -> Result<Duration, String> {
    let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).map_err(|e| e.to_string())?;
    let config = vmz::Config::builder(dir.join("vmlinux"))
        .initrd(dir.join("initrd.img"))
        .command_line(cmdline.trim())
        .memory_mib(256)
        .nat(false)
        .serial_output(writer)
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let vm = vmz::Machine::new(&config).map_err(|e| e.to_string())?;
    vm.start().map_err(|e| e.to_string())?;
    drop(config); // our copy of the pipe's write end: EOF when QEMU ends
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if line.contains(&wanted) {
                let _ = tx.send(started.elapsed());
                return;
            }
        }
    });
    let result = rx
        .recv_timeout(timeout)
        .map_err(|_| format!("no {marker:?} on the console within {timeout:?}"));
    vm.force_stop().map_err(|e| e.to_string())?;
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bridge_answers_from_a_dependent_crates_test_binary() {
        assert!(super::abi_version() >= 2);
        assert_eq!(
            super::missing_kernel_error("/nonexistent/vmlinux".as_ref()),
            Some(vmz::ErrorCode::Kernel)
        );
    }
}
