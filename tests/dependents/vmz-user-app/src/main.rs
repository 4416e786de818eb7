//! A binary that reaches vmz only through `vmz-user`, with no build script.
//! `vmz-user-app [GUEST_DIR]`: calls into the bridge, checks a typed error,
//! and with a guest directory boots it to its ready marker.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    println!("vmz-user-app: bridge ABI {}", vmz_user::abi_version());
    let code = vmz_user::missing_kernel_error("/nonexistent/vmlinux".as_ref());
    if code.is_none() {
        eprintln!("vmz-user-app: a missing kernel was accepted");
        return ExitCode::FAILURE;
    }
    println!("vmz-user-app: missing kernel -> {code:?}");
    if let Some(dir) = std::env::args_os().nth(1) {
        match vmz_user::boot_until(dir.as_ref(), "VMZ-GUEST-READY", Duration::from_secs(120)) {
            Ok(t) => println!("vmz-user-app: guest ready after {} ms", t.as_millis()),
            Err(e) => {
                eprintln!("vmz-user-app: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
