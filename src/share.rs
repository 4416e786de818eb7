//! Shared directories: host directories the guest mounts over virtio-fs.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::config::{c_array, cstring, path_cstring};
use crate::error::Result;
use crate::sys;

/// The most shared directories one VM may have.
pub const MAX_SHARES: usize = sys::VMZ_MAX_SHARES as usize;

/// The longest tag, in bytes.
pub const MAX_SHARE_TAG_LEN: usize = sys::VMZ_SHARE_TAG_MAX as usize;

/// A host directory shared with the guest over virtio-fs; the guest mounts
/// it with `mount -t virtiofs <tag> /mnt`.
///
/// Linux: one `virtiofsd` per share, started with the VM and stopped with
/// it (never outliving the process), found as `$VMZ_VIRTIOFSD`, else
/// `virtiofsd` on `PATH`, else `/usr/libexec/virtiofsd`; it must be the
/// Rust virtiofsd (`cargo install virtiofsd`). QEMU's guest memory becomes
/// a shared memfd. macOS: `VZVirtioFileSystemDeviceConfiguration` with a
/// `VZSingleDirectoryShare`.
///
/// ```no_run
/// use vmz::{Config, Share};
///
/// let config = Config::builder("guest/vmlinux")
///     .share(Share::new("/home/me/project", "project"))
///     .share(Share::new("/usr/share/doc", "doc").read_only(true))
///     .build()?;
/// config.validate()?;
/// # Ok::<(), vmz::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Share {
    path: PathBuf,
    tag: String,
    read_only: bool,
}

impl Share {
    /// Shares `path` (a directory) read-write under `tag`: 1 to 35 bytes of
    /// `A-Z a-z 0-9 . _ -`, unique in the VM.
    pub fn new(path: impl Into<PathBuf>, tag: impl Into<String>) -> Share {
        Share {
            path: path.into(),
            tag: tag.into(),
            read_only: false,
        }
    }

    /// The guest can read but not change anything in the directory.
    pub fn read_only(mut self, read_only: bool) -> Share {
        self.read_only = read_only;
        self
    }

    /// The host directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tag the guest mounts.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Whether the share is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// The C view of a list of shares; the strings live as long as this.
pub(crate) struct RawShares {
    _strings: Vec<CString>,
    raw: Vec<sys::VMZShare>,
}

impl RawShares {
    pub(crate) fn new(shares: &[Share]) -> Result<RawShares> {
        let mut strings = Vec::new();
        let mut raw = Vec::with_capacity(shares.len());
        for share in shares {
            let path = path_cstring("share path", &share.path)?;
            let tag = cstring("share tag", share.tag.as_bytes())?;
            raw.push(sys::VMZShare {
                struct_size: std::mem::size_of::<sys::VMZShare>() as u32,
                path: path.as_ptr(),
                tag: tag.as_ptr(),
                read_only: share.read_only,
            });
            // Moving a CString does not move its heap buffer: the pointers
            // above stay valid.
            strings.push(path);
            strings.push(tag);
        }
        Ok(RawShares {
            _strings: strings,
            raw,
        })
    }

    /// (pointer, count) for `VMZConfig.shares`; NULL when empty.
    pub(crate) fn as_raw(&self) -> (*const sys::VMZShare, u32) {
        c_array(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_view_carries_every_setting() {
        let shares = [Share::new("/a", "a"), Share::new("/b", "b").read_only(true)];
        let raw = RawShares::new(&shares).unwrap();
        let (ptr, count) = raw.as_raw();
        assert_eq!(count, 2);
        // SAFETY: `raw` owns two initialised elements at `ptr`.
        let b = unsafe { &*ptr.add(1) };
        assert!(b.read_only);
        assert_eq!(b.struct_size as usize, std::mem::size_of::<sys::VMZShare>());
        // SAFETY: the strings live as long as `raw`.
        let tag = unsafe { std::ffi::CStr::from_ptr(b.tag) };
        assert_eq!(tag.to_str().unwrap(), "b");
        assert_eq!(RawShares::new(&[]).unwrap().as_raw().1, 0);
        assert!(!shares[0].is_read_only());
        assert_eq!(shares[0].tag(), "a");
        assert_eq!(shares[0].path(), Path::new("/a"));
    }

    #[test]
    fn a_nul_in_a_tag_is_caught_before_c() {
        let e = RawShares::new(&[Share::new("/a", "a\0b")]).err().unwrap();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
    }
}
