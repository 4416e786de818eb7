//! Linux: the Swift runtime (static by default) and `swiftrt.o`. Cargo, not
//! the Swift driver, links, so Swift's autolinking does not happen:
//! `swift-autolink-extract` lists what the bridge's objects ask for.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;
use crate::swift::TargetInfo;

/// Links the bridge's Swift runtime and `swiftrt.o` (the bridge's static
/// library itself is already named by `main`).
pub fn link(out: &Path, info: &TargetInfo) {
    let libs = swift_runtime_libraries(out, info);
    if cfg!(feature = "dynamic-swift-runtime") {
        link_runtime_dynamic(info, &libs);
    } else {
        link_runtime_static(info, &libs);
    }
    link_swiftrt(out, info);
}

/// The Swift runtime libraries the bridge's objects ask for, as
/// `swift-autolink-extract` lists them (cargo, not the Swift driver, links,
/// so Swift's autolinking does not happen by itself).
fn swift_runtime_libraries(out: &Path, info: &TargetInfo) -> Vec<String> {
    let autolink = toolchain_bin(info, "swift-autolink-extract");
    let output = Command::new(&autolink)
        .arg(out.join("libvmz_swift.a"))
        .args(["-o", "-"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", autolink.display()));
    assert!(
        output.status.success(),
        "swift-autolink-extract failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut libs: Vec<String> = Vec::new();
    for flag in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        if let Some(name) = flag.strip_prefix("-l") {
            if !libs.iter().any(|l| l == name) {
                libs.push(name.to_string());
            }
        }
    }
    libs
}

/// A tool next to the toolchain's `swiftc` (`<usr>/bin/<name>`), else `name`
/// from `PATH`.
fn toolchain_bin(info: &TargetInfo, name: &str) -> PathBuf {
    Path::new(&info.runtime_resource_path)
        .parent()
        .and_then(Path::parent)
        .map(|usr| usr.join("bin").join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The default: the toolchain's static runtime (`lib/swift_static/linux`)
/// goes into the binary, so any binary that depends on vmz, directly or
/// through other crates, links and runs with no build script of its own and
/// on a machine without Swift. The archives are linked in dependency order
/// (a static archive only resolves what the objects before it need), and
/// are not bundled into vmz's rlib: rustc names them at the final link,
/// where cargo passes this search path to every dependent.
fn link_runtime_static(info: &TargetInfo, libs: &[String]) {
    let dir = Path::new(&info.runtime_resource_path)
        .parent()
        .expect("runtime resource path has a parent")
        .join("swift_static/linux");
    assert!(
        dir.join("libswiftCore.a").is_file(),
        "{} has no libswiftCore.a: this Swift toolchain has no static runtime; \
         build with the `dynamic-swift-runtime` feature instead",
        dir.display()
    );
    println!("cargo:rustc-link-search=native={}", dir.display());
    for lib in static_link_order(libs) {
        if dir.join(format!("lib{lib}.a")).is_file() {
            println!("cargo:rustc-link-lib=static:-bundle={lib}");
        } else {
            // System libraries (m, pthread, dl, util) stay shared.
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    // What the static runtime needs from the system (the toolchain's
    // static-stdlib-args.lnk): the C++ runtime under swiftCore.
    println!("cargo:rustc-link-lib=dylib=stdc++");
}

/// `libs` in an order a one-pass static link accepts: each library before
/// the ones it uses. The Swift runtime's layering (overlays, then
/// Concurrency, then Core, then libdispatch and BlocksRuntime) is fixed;
/// Swift libraries not named here go first, system libraries last.
fn static_link_order(libs: &[String]) -> Vec<String> {
    const LAYERS: [&str; 9] = [
        "swiftSwiftOnoneSupport",
        "swiftDispatch",
        "swift_StringProcessing",
        "swift_RegexParser",
        "swiftGlibc",
        "swift_Concurrency",
        "swiftCore",
        "dispatch",
        "BlocksRuntime",
    ];
    let rank = |l: &String| match LAYERS.iter().position(|x| x == l) {
        Some(r) => r + 1,
        None if l.starts_with("swift") => 0,
        None => LAYERS.len() + 1,
    };
    let mut v = libs.to_vec();
    v.sort_by_key(rank);
    v
}

/// Opt-in (`dynamic-swift-runtime`): the toolchain's shared runtime. The
/// binary is smaller and links faster, but needs the toolchain's libraries at
/// run time at their path: vmz's own tests and examples get an rpath;
/// dependents get the path as `DEP_VMZ_SWIFT_RUNTIME_PATH` and add the rpath
/// in their own build script (the README shows how).
fn link_runtime_dynamic(info: &TargetInfo, libs: &[String]) {
    for dir in &info.runtime_library_paths {
        println!("cargo:rustc-link-search=native={dir}");
    }
    for lib in libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    let rpath = info.runtime_library_paths.join(":");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    println!("cargo:swift_runtime_path={rpath}");
}

/// swiftrt.o registers the image's Swift metadata sections with the runtime
/// (without it protocol casts fail silently). It goes in as a one-member
/// archive linked whole: a plain archive member nobody references would be
/// dropped, and rustc-link-arg does not reach the binaries of crates that
/// depend on vmz.
fn link_swiftrt(out: &Path, info: &TargetInfo) {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let swiftrt = Path::new(&info.runtime_resource_path).join(format!("linux/{arch}/swiftrt.o"));
    assert!(
        swiftrt.is_file(),
        "{} is missing: is the Swift toolchain complete?",
        swiftrt.display()
    );
    let archive = out.join("libvmz_swiftrt.a");
    let _ = fs::remove_file(&archive);
    let ar = cc::Build::new().get_archiver();
    let mut ar = Command::new(ar.get_program());
    ar.arg("crs").arg(&archive).arg(&swiftrt);
    run(&mut ar, "archiving swiftrt.o");
    println!("cargo:rustc-link-lib=static:+whole-archive=vmz_swiftrt");
}
