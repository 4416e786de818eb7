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

/// The most directories one multi-directory share may hold.
pub const MAX_SHARE_DIRECTORIES: usize = sys::VMZ_MAX_SHARE_DIRECTORIES as usize;

/// The longest name of a directory in a multi-directory share, in bytes.
pub const MAX_SHARE_DIRECTORY_NAME_LEN: usize = sys::VMZ_SHARE_DIRECTORY_NAME_MAX as usize;

/// A host directory (or several under one tag) shared with the guest over
/// virtio-fs; the guest mounts it with `mount -t virtiofs <tag> /mnt`.
///
/// Linux: one `virtiofsd` per share, started with the VM and stopped with
/// it (never outliving the process), found as `$VMZ_VIRTIOFSD`, else
/// `virtiofsd` on `PATH`, else `/usr/libexec/virtiofsd`; it must be the
/// Rust virtiofsd (`cargo install virtiofsd`). QEMU's guest memory becomes
/// a shared memfd. macOS: `VZVirtioFileSystemDeviceConfiguration` with a
/// `VZSingleDirectoryShare` (a `VZMultipleDirectoryShare` for
/// [`Share::directories`]).
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
    directories: Vec<ShareDirectory>,
}

/// One directory of a multi-directory share ([`Share::directories`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareDirectory {
    /// The name the guest sees: `/mnt/<tag>/<name>`.
    pub name: String,
    /// The host directory.
    pub path: PathBuf,
    /// The guest can read but not change anything in it.
    pub read_only: bool,
}

impl Share {
    /// Shares `path` (a directory) read-write under `tag`: 1 to 35 bytes of
    /// `A-Z a-z 0-9 . _ -`, unique in the VM.
    pub fn new(path: impl Into<PathBuf>, tag: impl Into<String>) -> Share {
        Share {
            path: path.into(),
            tag: tag.into(),
            read_only: false,
            directories: Vec::new(),
        }
    }

    /// Several host directories under one `tag`, added with
    /// [`directory`](Share::directory): the guest that mounts the tag at
    /// `/mnt/<tag>` sees each as `/mnt/<tag>/<name>`, in a root it cannot
    /// change.
    ///
    /// Linux: virtiofsd serves a directory that holds bind mounts of them,
    /// made in the daemon's own mount namespace before it starts: as root,
    /// or else in an unprivileged user namespace, which the system must
    /// allow (`validate` says so when it does not). Mounts below these
    /// directories are not seen by the guest. macOS: a
    /// `VZMultipleDirectoryShare`.
    ///
    /// ```no_run
    /// use vmz::{Config, Share};
    ///
    /// let config = Config::builder("guest/vmlinux")
    ///     .share(
    ///         Share::directories("host")
    ///             .directory("src", "/home/me/project", false) // /mnt/host/src
    ///             .directory("doc", "/usr/share/doc", true),   // /mnt/host/doc, read-only
    ///     )
    ///     .build()?;
    /// config.validate()?;
    /// # Ok::<(), vmz::Error>(())
    /// ```
    pub fn directories(tag: impl Into<String>) -> Share {
        Share::new(PathBuf::new(), tag)
    }

    /// Adds a directory to a multi-directory share ([`Share::directories`]):
    /// `name` is 1 to 64 bytes of `A-Z a-z 0-9 . _ -`, not `.` or `..`,
    /// unique in the share; `read_only` keeps the guest from changing
    /// anything in it.
    pub fn directory(
        mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        read_only: bool,
    ) -> Share {
        self.directories.push(ShareDirectory {
            name: name.into(),
            path: path.into(),
            read_only,
        });
        self
    }

    /// The guest can read but not change anything in the directory.
    pub fn read_only(mut self, read_only: bool) -> Share {
        self.read_only = read_only;
        self
    }

    /// The host directory; empty for a multi-directory share.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directories of a multi-directory share, in order; empty for a
    /// share of one directory.
    pub fn directory_list(&self) -> &[ShareDirectory] {
        &self.directories
    }

    /// The tag the guest mounts.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Whether the whole share is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// The C view of a list of shares; the strings and directory arrays live
/// as long as this.
pub(crate) struct RawShares {
    _strings: Vec<CString>,
    _directories: Vec<Vec<sys::VMZShareDirectory>>,
    raw: Vec<sys::VMZShare>,
}

impl RawShares {
    pub(crate) fn new(shares: &[Share]) -> Result<RawShares> {
        let mut strings = Vec::new();
        let mut directories = Vec::new();
        let mut raw = Vec::with_capacity(shares.len());
        // Moving a CString or a Vec does not move its heap buffer: the
        // pointers taken below stay valid.
        for share in shares {
            let tag = cstring("share tag", share.tag.as_bytes())?;
            let mut dirs = Vec::with_capacity(share.directories.len());
            for d in &share.directories {
                let name = cstring("share directory name", d.name.as_bytes())?;
                let path = path_cstring("share directory path", &d.path)?;
                dirs.push(sys::VMZShareDirectory {
                    struct_size: std::mem::size_of::<sys::VMZShareDirectory>() as u32,
                    name: name.as_ptr(),
                    path: path.as_ptr(),
                    read_only: d.read_only,
                });
                strings.push(name);
                strings.push(path);
            }
            // A multi-directory share passes no path: one with both (made
            // with `Share::new(..).directory(..)`) is refused by the bridge,
            // and so is one with neither.
            let path = if !share.path.as_os_str().is_empty() {
                let p = path_cstring("share path", &share.path)?;
                let ptr = p.as_ptr();
                strings.push(p);
                ptr
            } else {
                std::ptr::null()
            };
            let (dirs_ptr, dir_count) = c_array(&dirs);
            raw.push(sys::VMZShare {
                struct_size: std::mem::size_of::<sys::VMZShare>() as u32,
                path,
                tag: tag.as_ptr(),
                read_only: share.read_only,
                directories: dirs_ptr,
                directory_count: dir_count,
            });
            strings.push(tag);
            directories.push(dirs);
        }
        Ok(RawShares {
            _strings: strings,
            _directories: directories,
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
    fn a_multi_directory_share_passes_its_directories_and_no_path() {
        let shares = [Share::directories("m")
            .directory("a", "/a", false)
            .directory("b", "/b", true)];
        let raw = RawShares::new(&shares).unwrap();
        let (ptr, _) = raw.as_raw();
        // SAFETY: `raw` owns one initialised element at `ptr`, and its
        // directory array of `directory_count` elements.
        let (m, b) = unsafe { (&*ptr, &*(*ptr).directories.add(1)) };
        assert!(m.path.is_null());
        assert_eq!(m.directory_count, 2);
        assert!(b.read_only);
        // SAFETY: the strings live as long as `raw`.
        let name = unsafe { std::ffi::CStr::from_ptr(b.name) };
        assert_eq!(name.to_str().unwrap(), "b");
        assert_eq!(shares[0].directory_list()[0].path, Path::new("/a"));
        assert!(shares[0].path().as_os_str().is_empty());
    }

    #[test]
    fn a_nul_in_a_tag_is_caught_before_c() {
        let e = RawShares::new(&[Share::new("/a", "a\0b")]).err().unwrap();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
    }
}
