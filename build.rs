//! Builds the Swift bridge and the raw bindings.
//!
//! 1. find `swiftc` (`SWIFTC`, then `PATH`) and ask it for the target's
//!    runtime paths (`swiftc -print-target-info`);
//! 2. compile `swift/*.swift` into a static library in `OUT_DIR`, importing
//!    `include/libvmz.h` so the exports use the ABI's own types;
//! 3. Linux: compile the C helpers; link the Swift runtime the bridge's
//!    objects ask for (`swift-autolink-extract` lists it: cargo, not the
//!    Swift driver, links, so Swift's autolinking does not happen):
//!    statically from the toolchain's `lib/swift_static` by default, so that
//!    any binary depending on vmz links and runs with nothing else to do,
//!    or dynamically with the `dynamic-swift-runtime` feature; and
//!    `swiftrt.o` (it registers the image's Swift metadata; without it
//!    protocol casts fail silently);
//!    macOS: link Virtualization and Foundation, the runtime search paths;
//! 4. run bindgen on `include/libvmz.h` into `OUT_DIR/bindings.rs`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest macOS the bridge supports: `VZGenericPlatformConfiguration`
/// and `VZVirtualMachine.stop(completionHandler:)` are macOS 12 APIs.
const MACOS_MIN_VERSION: &str = "12.0";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap();
    let header = manifest.join("include/libvmz.h");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-changed=swift");
    println!("cargo:rerun-if-env-changed=SWIFTC");

    let swift_sources = sources(&manifest.join("swift"), "swift");
    for s in &swift_sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }

    let swiftc = find_swiftc();
    let info = TargetInfo::query(&swiftc, &target_os);
    compile_swift(&swiftc, &info, &manifest, &out, &swift_sources, &target_os);

    compile_c_helpers(&manifest);
    match target_os.as_str() {
        "linux" => link_linux(&out, &info),
        "macos" => link_macos(&info),
        other => panic!("vmz supports Linux and macOS, not {other}"),
    }

    generate_bindings(&header, &out);
}

/// Every file with the extension in `dir` (not recursive), sorted.
fn sources(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn find_swiftc() -> PathBuf {
    if let Some(p) = env::var_os("SWIFTC").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            missing_swiftc(&format!("SWIFTC={} is not a file", p.display()));
        }
        return p;
    }
    let found = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|d| d.join("swiftc"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| missing_swiftc("it is not on PATH and SWIFTC is not set"))
}

fn missing_swiftc(why: &str) -> ! {
    panic!(
        "\n\nvmz needs the Swift compiler `swiftc`: {why}.\n\
         - Debian/Ubuntu: run `sudo scripts/setup-debian.sh` from the vmz sources\n\
           (it installs Debian 13's `swiftlang` package, QEMU and libclang).\n\
         - macOS: install Xcode or the Command Line Tools (`xcode-select --install`).\n\n"
    )
}

/// What `swiftc -print-target-info` says about the target.
struct TargetInfo {
    triple: String,
    runtime_library_paths: Vec<String>,
    runtime_resource_path: String,
}

impl TargetInfo {
    fn query(swiftc: &Path, target_os: &str) -> TargetInfo {
        let mut cmd = Command::new(swiftc);
        cmd.arg("-print-target-info");
        if target_os == "macos" {
            cmd.args(["-target", &macos_triple()]);
        }
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", swiftc.display()));
        assert!(
            output.status.success(),
            "`{} -print-target-info` failed: {}",
            swiftc.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let json = String::from_utf8_lossy(&output.stdout);
        TargetInfo {
            triple: json_strings(&json, "triple")
                .into_iter()
                .next()
                .expect("target triple"),
            runtime_library_paths: json_strings(&json, "runtimeLibraryPaths"),
            runtime_resource_path: json_strings(&json, "runtimeResourcePath")
                .into_iter()
                .next()
                .expect("runtime resource path"),
        }
    }
}

fn macos_triple() -> String {
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "aarch64" => "arm64".to_string(),
        a => a.to_string(),
    };
    format!("{arch}-apple-macosx{MACOS_MIN_VERSION}")
}

/// The string value(s) of the first `"key":` in a JSON text: a string, or
/// an array of strings. Enough for `-print-target-info`, whose keys are
/// unique and whose values here are plain paths.
fn json_strings(json: &str, key: &str) -> Vec<String> {
    let needle = format!("\"{key}\"");
    let Some(start) = json.find(&needle) else {
        return Vec::new();
    };
    let rest = json[start + needle.len()..].trim_start();
    let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
    let body = if let Some(arr) = rest.strip_prefix('[') {
        &arr[..arr.find(']').unwrap_or(arr.len())]
    } else {
        let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
        &rest[..end]
    };
    body.split('"')
        .skip(1)
        .step_by(2)
        .map(|s| s.replace("\\/", "/"))
        .collect()
}

fn compile_swift(
    swiftc: &Path,
    info: &TargetInfo,
    manifest: &Path,
    out: &Path,
    sources: &[PathBuf],
    target_os: &str,
) {
    let lib = out.join("libvmz_swift.a");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let mut cmd = Command::new(swiftc);
    cmd.args(["-emit-library", "-static", "-parse-as-library"])
        .args(["-module-name", "VMZBridge", "-swift-version", "5"])
        .arg("-import-objc-header")
        .arg(manifest.join("swift/bridging.h"))
        .arg("-module-cache-path")
        .arg(out.join("swift-module-cache"))
        .args(["-target", &info.triple])
        .arg("-o")
        .arg(&lib)
        .args(sources);
    if release {
        cmd.args(["-O", "-whole-module-optimization"]);
    } else {
        cmd.args(["-Onone", "-g"]);
    }
    if target_os == "linux" {
        // Rust links position-independent executables.
        cmd.args(["-Xcc", "-fPIC"]);
    }
    run(&mut cmd, "compiling the Swift bridge");
}

/// The bridge's C helpers: the Linux engine's fork/exec (C: nothing but
/// async-signal-safe calls may run between fork and exec) and the kernel
/// cache's content hash (both engines).
fn compile_c_helpers(manifest: &Path) {
    let helper = manifest.join("swift/csupport/vmz_spawn.c");
    println!("cargo:rerun-if-changed={}", helper.display());
    cc::Build::new()
        .file(&helper)
        .warnings(true)
        .compile("vmz_spawn");
}

fn link_linux(out: &Path, info: &TargetInfo) {
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=vmz_swift");

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

#[cfg(target_os = "macos")]
fn link_macos(_info: &TargetInfo) {
    // swift-rs emits the toolchain's runtime search paths for the target.
    swift_rs::SwiftLinker::new(MACOS_MIN_VERSION).link();
    println!(
        "cargo:rustc-link-search=native={}",
        env::var("OUT_DIR").unwrap()
    );
    println!("cargo:rustc-link-lib=static=vmz_swift");
    println!("cargo:rustc-link-lib=framework=Virtualization");
    println!("cargo:rustc-link-lib=framework=Foundation");
    println!("cargo:rustc-link-arg=-Wl,-rpath,/usr/lib/swift");
}

#[cfg(not(target_os = "macos"))]
fn link_macos(info: &TargetInfo) {
    // Building for macOS from another host: link what the macOS linker
    // needs; the runtime search paths come from swiftc's target info.
    println!(
        "cargo:rustc-link-search=native={}",
        env::var("OUT_DIR").unwrap()
    );
    println!("cargo:rustc-link-lib=static=vmz_swift");
    for dir in &info.runtime_library_paths {
        println!("cargo:rustc-link-search=native={dir}");
    }
    println!("cargo:rustc-link-lib=framework=Virtualization");
    println!("cargo:rustc-link-lib=framework=Foundation");
    println!("cargo:rustc-link-arg=-Wl,-rpath,/usr/lib/swift");
}

fn generate_bindings(header: &Path, out: &Path) {
    // bindgen panics when it cannot load libclang: say how to get it.
    let generated = std::panic::catch_unwind(|| builder(header).generate());
    let Ok(bindings) = generated else {
        panic!(
            "\n\nbindgen could not load libclang (see the message above).\n\
             - Debian/Ubuntu: `sudo scripts/setup-debian.sh`, or `apt-get install libclang-dev`.\n\
             - macOS: install Xcode or the Command Line Tools.\n\
             - Elsewhere: set LIBCLANG_PATH to the directory holding libclang.so / libclang.dylib.\n\n"
        )
    };
    let bindings =
        bindings.unwrap_or_else(|e| panic!("bindgen could not process {}: {e}", header.display()));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

fn builder(header: &Path) -> bindgen::Builder {
    bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_function("vmz_.*")
        .allowlist_type("VMZ.*")
        .allowlist_var("VMZ_.*")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_debug(true)
        .derive_default(true)
        .layout_tests(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
    assert!(status.success(), "{what} failed: {cmd:?}");
}
