//! Disks: virtio-blk devices backed by image files or block devices.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::config::{c_array, cstring, path_cstring};
use crate::error::Result;
use crate::sys;

/// The most disks one VM may have.
pub const MAX_DISKS: usize = sys::VMZ_MAX_DISKS as usize;

/// How a disk image is laid out. vmz never guesses: an image declared raw
/// whose first bytes are another format's header is refused
/// ([`ErrorCode::Disk`](crate::ErrorCode::Disk)), because a guest can write
/// any header into a raw disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DiskFormat {
    /// A plain image, byte for byte the guest's disk. Both engines.
    #[default]
    Raw,
    /// QEMU's qcow2. Linux only: Virtualization.framework takes raw images
    /// only. Images with a backing file or an external data file are
    /// refused (vmz opens no file it was not given).
    Qcow2,
}

/// What a flush from the guest (its `fsync`, a journal commit) does on the
/// host.
///
/// | | Linux (QEMU) | macOS (Virtualization.framework) |
/// |---|---|---|
/// | [`Full`](DiskSync::Full) | `fdatasync` of the image (flushes the drive's cache too) | `F_FULLFSYNC` (`.full`) |
/// | [`Fsync`](DiskSync::Fsync) | the same as `Full`: Linux has no cheaper middle ground | `fsync` without a drive cache flush (`.fsync`) |
/// | [`Off`](DiskSync::Off) | ignored (`cache.no-flush=on`) | ignored (`.none`), host caching on |
///
/// See BENCHMARKS.md for what each costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DiskSync {
    /// Durable, the default: when the guest's flush completes, the data is
    /// on stable storage and survives a power loss.
    #[default]
    Full,
    /// Flushed data survives a crash of the guest, of the host process or
    /// of the host's OS, but maybe not a power loss (the drive's own cache
    /// is not flushed). Cheaper than `Full` on macOS only.
    Fsync,
    /// Flushes are ignored: for throwaway disks (scratch space, build
    /// caches). A host crash can lose or tear anything the guest wrote.
    Off,
}

/// A virtio-blk disk. The guest sees a VM's disks in the order they were
/// added: `/dev/vda`, `/dev/vdb`, ...
///
/// The bridge opens the image itself (QEMU gets the open file, never its
/// path) and locks it while the VM runs: a second VM asking for an image
/// another VM has open read-write, or asking read-write for an image
/// another VM has open, gets [`ErrorCode::DiskInUse`](crate::ErrorCode::DiskInUse).
///
/// ```no_run
/// use vmz::{Config, Disk, DiskSync};
///
/// let config = Config::builder("guest/vmlinux")
///     .disk(Disk::new("root.img").serial("root"))                      // /dev/vda
///     .disk(Disk::new("data.img").read_only(true))                     // /dev/vdb
///     .disk(Disk::new("scratch.img").sync(DiskSync::Off))              // /dev/vdc
///     .build()?;
/// config.validate()?;
/// # Ok::<(), vmz::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Disk {
    path: PathBuf,
    read_only: bool,
    format: DiskFormat,
    sync: DiskSync,
    serial: Option<String>,
}

impl Disk {
    /// A read-write raw disk with durable flushes ([`DiskSync::Full`]) and
    /// no serial, from an image file or (Linux; macOS 14+) a block device.
    pub fn new(path: impl Into<PathBuf>) -> Disk {
        Disk {
            path: path.into(),
            read_only: false,
            format: DiskFormat::Raw,
            sync: DiskSync::Full,
            serial: None,
        }
    }

    /// The guest cannot write to the disk (it sees a read-only device), and
    /// the image is opened read-only on the host.
    pub fn read_only(mut self, read_only: bool) -> Disk {
        self.read_only = read_only;
        self
    }

    /// The image's format (default [`DiskFormat::Raw`]).
    pub fn format(mut self, format: DiskFormat) -> Disk {
        self.format = format;
        self
    }

    /// What the guest's flushes do (default [`DiskSync::Full`]).
    pub fn sync(mut self, sync: DiskSync) -> Disk {
        self.sync = sync;
        self
    }

    /// A serial number, so that the guest can find the disk by name: 1 to
    /// 20 bytes of `A-Z a-z 0-9 . _ -`. The guest reads it from
    /// `/sys/block/vdX/serial`, and udev links
    /// `/dev/disk/by-id/virtio-<serial>` to the disk. (macOS 12.3+: the
    /// block device identifier.)
    pub fn serial(mut self, serial: impl Into<String>) -> Disk {
        self.serial = Some(serial.into());
        self
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the disk is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The image's format.
    pub fn image_format(&self) -> DiskFormat {
        self.format
    }

    /// The sync setting.
    pub fn sync_mode(&self) -> DiskSync {
        self.sync
    }

    /// The serial number, if any.
    pub fn serial_number(&self) -> Option<&str> {
        self.serial.as_deref()
    }
}

/// The C view of a list of disks; the strings live as long as this.
pub(crate) struct RawDisks {
    _strings: Vec<CString>,
    raw: Vec<sys::VMZDisk>,
}

impl RawDisks {
    pub(crate) fn new(disks: &[Disk]) -> Result<RawDisks> {
        let mut strings = Vec::new();
        let mut raw = Vec::with_capacity(disks.len());
        for disk in disks {
            let path = path_cstring("disk path", &disk.path)?;
            let serial = disk
                .serial
                .as_deref()
                .map(|s| cstring("disk serial", s.as_bytes()))
                .transpose()?;
            raw.push(sys::VMZDisk {
                struct_size: std::mem::size_of::<sys::VMZDisk>() as u32,
                path: path.as_ptr(),
                format: match disk.format {
                    DiskFormat::Raw => sys::VMZ_DISK_FORMAT_RAW,
                    DiskFormat::Qcow2 => sys::VMZ_DISK_FORMAT_QCOW2,
                },
                sync: match disk.sync {
                    DiskSync::Full => sys::VMZ_DISK_SYNC_FULL,
                    DiskSync::Fsync => sys::VMZ_DISK_SYNC_FSYNC,
                    DiskSync::Off => sys::VMZ_DISK_SYNC_OFF,
                },
                read_only: disk.read_only,
                serial: serial.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            });
            // Moving a CString does not move its heap buffer: the pointers
            // above stay valid.
            strings.push(path);
            strings.extend(serial);
        }
        Ok(RawDisks {
            _strings: strings,
            raw,
        })
    }

    /// (pointer, count) for `VMZConfig.disks`; NULL when empty.
    pub(crate) fn as_raw(&self) -> (*const sys::VMZDisk, u32) {
        c_array(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_durable_read_write_raw() {
        let d = Disk::new("x.img");
        assert_eq!(d.path(), Path::new("x.img"));
        assert!(!d.is_read_only());
        assert_eq!(d.image_format(), DiskFormat::Raw);
        assert_eq!(d.sync_mode(), DiskSync::Full);
        assert_eq!(d.serial_number(), None);
    }

    #[test]
    fn raw_view_carries_every_setting() {
        let disks = [
            Disk::new("a.img"),
            Disk::new("b.qcow2")
                .read_only(true)
                .format(DiskFormat::Qcow2)
                .sync(DiskSync::Off)
                .serial("data"),
        ];
        let raw = RawDisks::new(&disks).unwrap();
        let (ptr, count) = raw.as_raw();
        assert_eq!(count, 2);
        // SAFETY: `raw` owns two initialised elements at `ptr`.
        let b = unsafe { &*ptr.add(1) };
        assert_eq!(b.struct_size as usize, std::mem::size_of::<sys::VMZDisk>());
        assert_eq!(b.format, sys::VMZ_DISK_FORMAT_QCOW2);
        assert_eq!(b.sync, sys::VMZ_DISK_SYNC_OFF);
        assert!(b.read_only);
        // SAFETY: the strings live as long as `raw`.
        let serial = unsafe { std::ffi::CStr::from_ptr(b.serial) };
        assert_eq!(serial.to_str().unwrap(), "data");
        // SAFETY: as above.
        let a = unsafe { &*ptr };
        assert!(a.serial.is_null());
        assert_eq!(RawDisks::new(&[]).unwrap().as_raw().1, 0);
    }

    #[test]
    fn a_nul_in_a_serial_is_caught_before_c() {
        let e = RawDisks::new(&[Disk::new("a").serial("a\0b")])
            .err()
            .unwrap();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
    }
}
