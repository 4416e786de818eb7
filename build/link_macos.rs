//! macOS: the frameworks, the Swift runtime's search paths and compiler-rt.
//!
//! Written from Apple's toolchain documentation and never run on a Mac (see
//! the README). The Swift objects name the runtime libraries they need
//! themselves (`LC_LINKER_OPTION`, honoured by ld64); the search paths come
//! from the same `swiftc` that compiled them (`SWIFTC` or `PATH`), so the
//! compiler and the libraries agree. No rpath: built for macOS 12 or later,
//! every Swift library the bridge uses is part of the OS, and the SDK's
//! stubs give them absolute install names (`/usr/lib/swift/...`); an rpath
//! was needed only for back-deployed libraries (`@rpath/...`) on older
//! systems. And rustc-link-arg would not reach dependents' binaries anyway.

use std::process::Command;

use crate::swift::TargetInfo;

/// Links the bridge's system dependencies (the bridge's static library
/// itself is already named by `main`).
pub fn link(info: &TargetInfo) {
    for dir in &info.runtime_library_paths {
        println!("cargo:rustc-link-search=native={dir}");
    }
    // `#available` compiles to a call of compiler-rt's
    // __isPlatformVersionAtLeast, which rustc's `-nodefaultlibs` link leaves
    // out: link the C compiler's own copy.
    if let Some(dir) = compiler_rt_dir() {
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rustc-link-lib=static:-bundle=clang_rt.osx");
    } else {
        println!("cargo:warning=vmz: cannot find clang's compiler-rt (libclang_rt.osx.a)");
    }
    println!("cargo:rustc-link-lib=framework=Virtualization");
    println!("cargo:rustc-link-lib=framework=Foundation");
}

/// `<clang resource dir>/lib/darwin`, from the C compiler cc-rs uses.
fn compiler_rt_dir() -> Option<String> {
    let compiler = cc::Build::new().get_compiler();
    let output = Command::new(compiler.path())
        .arg("--print-resource-dir")
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = format!("{}/lib/darwin", dir.trim());
    std::path::Path::new(&dir)
        .join("libclang_rt.osx.a")
        .is_file()
        .then_some(dir)
}
