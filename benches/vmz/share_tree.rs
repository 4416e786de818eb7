//! The share rows' test data: a synthetic source tree made by the
//! benchmark (never committed), packed once into an uncompressed tarball
//! that each run's guest unpacks into its share.

use super::*;

/// The tarball and what it holds.
pub(crate) struct ShareTree {
    pub(crate) tarball: PathBuf,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

impl ShareTree {
    /// Writes `small` files of 512 B to 16 KiB in 50 directories (sizes
    /// spread like a source tree's, 8.25 KiB on average) and `large` files
    /// of 1 MiB, all of pseudo-random bytes, under `dir/tree`, and packs
    /// them into `dir/tree.tar` with the host's `tar`.
    pub(crate) fn make(dir: &Path, small: u64, large: u64) -> BenchResult<ShareTree> {
        let tree = dir.join("tree");
        let _ = std::fs::remove_dir_all(&tree);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut bytes = 0;
        let mut write = |path: PathBuf, size: u64| -> BenchResult<()> {
            let data: Vec<u8> = (0..size.div_ceil(8))
                .flat_map(|_| next().to_le_bytes())
                .take(size as usize)
                .collect();
            bytes += size;
            std::fs::write(&path, data).context(&format!("write {}", path.display()))
        };
        for i in 0..small {
            let sub = tree.join(format!("src{:02}", i % 50));
            if i < 50 {
                std::fs::create_dir_all(&sub).context("create the tree")?;
            }
            // 512 B to 16 KiB in 512 B steps.
            write(
                sub.join(format!("file{i:05}.c")),
                512 * (1 + (i * 7919) % 32),
            )?;
        }
        if large > 0 {
            std::fs::create_dir_all(tree.join("data")).context("create the tree")?;
        }
        for i in 0..large {
            write(tree.join(format!("data/blob{i}.bin")), 1 << 20)?;
        }
        let tarball = dir.join("tree.tar");
        let status = Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tree)
            .arg(".")
            .status()
            .context("run tar")?;
        if !status.success() {
            return Err(format!("tar -cf {} failed: {status}", tarball.display()));
        }
        std::fs::remove_dir_all(&tree).context("remove the tree")?;
        Ok(ShareTree {
            tarball,
            files: small + large,
            bytes,
        })
    }
}
