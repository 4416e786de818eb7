//! The test guests of scripts/make-guest.sh, as the benchmark boots them.

use super::*;

/// The test guest of scripts/make-guest.sh.
pub(crate) struct Guest {
    /// Uncompressed PVH kernel: what vmz boots.
    pub(crate) vmlinux: PathBuf,
    /// bzImage: what the plain-QEMU reference boots.
    pub(crate) vmlinuz: PathBuf,
    pub(crate) initrd: PathBuf,
    pub(crate) cmdline: String,
}

impl Guest {
    /// The test guest, as the integration tests get it (tests/common:
    /// $VMZ_GUEST_DIR or target/vmz-guest, built by scripts/make-guest.sh
    /// if missing).
    pub(crate) fn load() -> BenchResult<Guest> {
        let g = common::guest();
        Ok(Guest {
            vmlinux: g.kernel.clone(),
            vmlinuz: g.bzimage.clone(),
            initrd: g.initrd.clone(),
            cmdline: g.cmdline.clone(),
        })
    }

    /// The same guest with Debian's standard kernel (`scripts/make-guest.sh
    /// --standard`): $VMZ_BENCH_STANDARD_GUEST_DIR or
    /// target/vmz-guest-standard; None (rows skipped) if it is not built.
    pub(crate) fn load_standard() -> BenchResult<Option<Guest>> {
        let dir = std::env::var_os("VMZ_BENCH_STANDARD_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vmz-guest-standard")
            });
        if !dir.join("cmdline").is_file() {
            eprintln!(
                "no standard-kernel guest in {}: its rows are skipped (scripts/make-guest.sh --standard)",
                dir.display()
            );
            return Ok(None);
        }
        Guest::load_from(&dir).map(Some)
    }

    pub(crate) fn load_from(dir: &Path) -> BenchResult<Guest> {
        let cmdline = std::fs::read_to_string(dir.join("cmdline"))
            .context(&format!(
                "{}/cmdline (build the guest with scripts/make-guest.sh)",
                dir.display()
            ))?
            .trim()
            .to_string();
        let guest = Guest {
            vmlinux: dir.join("vmlinux"),
            vmlinuz: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            cmdline,
        };
        for p in [&guest.vmlinux, &guest.vmlinuz, &guest.initrd] {
            if !p.is_file() {
                return Err(format!(
                    "{} is missing (run scripts/make-guest.sh)",
                    p.display()
                ));
            }
        }
        Ok(guest)
    }
}
