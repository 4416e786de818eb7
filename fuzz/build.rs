//! The Swift runtime's rpath, as any binary crate depending on vmz on Linux
//! adds it (see the README).
fn main() {
    if let Ok(path) = std::env::var("DEP_VMZ_SWIFT_RUNTIME_PATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{path}");
    }
}
