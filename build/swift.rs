//! The Swift step: find `swiftc`, ask it about the target, compile the
//! bridge into `OUT_DIR/libvmz_swift.a`, and the C helpers beside it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, sources};

/// The oldest macOS the bridge supports: `VZGenericPlatformConfiguration`
/// and `VZVirtualMachine.stop(completionHandler:)` are macOS 12 APIs.
const MACOS_MIN_VERSION: [u32; 3] = [12, 0, 0];

/// Compiles the bridge (Swift, then C) for the target; returns what
/// `swiftc` said about the target, for linking.
pub fn build_bridge(manifest: &Path, out: &Path, target_os: &str) -> TargetInfo {
    let swift_sources = sources(&manifest.join("swift"), "swift");
    for s in &swift_sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    let swiftc = find_swiftc();
    let macos_version = (target_os == "macos").then(macos_deployment_target);
    let info = TargetInfo::query(&swiftc, macos_version.as_deref());
    compile_swift(&swiftc, &info, manifest, out, &swift_sources, target_os);
    compile_c_helpers(manifest, macos_version.as_deref());
    info
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
pub struct TargetInfo {
    /// The target triple (macOS: with the deployment target).
    pub triple: String,
    /// Where the shared runtime libraries are.
    pub runtime_library_paths: Vec<String>,
    /// `<toolchain>/lib/swift`.
    pub runtime_resource_path: String,
}

impl TargetInfo {
    /// `macos_version`: the deployment target when building for macOS.
    fn query(swiftc: &Path, macos_version: Option<&str>) -> TargetInfo {
        let mut cmd = Command::new(swiftc);
        cmd.arg("-print-target-info");
        if let Some(version) = macos_version {
            cmd.args(["-target", &macos_triple(version)]);
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

/// The macOS version the bridge is built for: `MACOSX_DEPLOYMENT_TARGET`
/// (what rustc links the final binary for) when it is 12.0 or later, else
/// 12.0. Below 12 the final link would claim an older macOS than the
/// bridge's objects need (ld warns, and the binary would start where it
/// cannot run): say so, since a build script cannot change how dependents
/// link.
fn macos_deployment_target() -> String {
    let requested = env::var("MACOSX_DEPLOYMENT_TARGET").ok();
    let parsed = requested.as_deref().and_then(parse_version);
    match parsed {
        Some(v) if v >= MACOS_MIN_VERSION => requested.unwrap(),
        _ => {
            println!(
                "cargo:warning=vmz's bridge needs macOS 12: set MACOSX_DEPLOYMENT_TARGET=12.0 \
                 or later (e.g. `[env]` in .cargo/config.toml; now {}), or the binary is \
                 linked for an older macOS than the bridge is built for",
                requested.as_deref().unwrap_or("unset")
            );
            let [major, minor, _] = MACOS_MIN_VERSION;
            format!("{major}.{minor}")
        }
    }
}

/// "13", "13.1", "12.0.1" -> [13, 0, 0], [13, 1, 0], [12, 0, 1].
fn parse_version(text: &str) -> Option<[u32; 3]> {
    let mut v = [0u32; 3];
    for (i, part) in text.trim().split('.').enumerate() {
        *v.get_mut(i)? = part.parse().ok()?;
    }
    Some(v)
}

fn macos_triple(version: &str) -> String {
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "aarch64" => "arm64".to_string(),
        a => a.to_string(),
    };
    format!("{arch}-apple-macosx{version}")
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

/// The bridge's C helpers (`swift/csupport/*.c`), for the same target.
fn compile_c_helpers(manifest: &Path, macos_version: Option<&str>) {
    let dir = manifest.join("swift/csupport");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut build = cc::Build::new();
    build.files(sources(&dir, "c")).warnings(true);
    if let Some(version) = macos_version {
        build.flag(format!("-mmacosx-version-min={version}"));
    }
    build.compile("vmz_csupport");
}
