// The disks of a config (VMZConfig.disks): parsed, and checked for
// everything that does not depend on the engine (files, formats, settings,
// duplicates, another VM holding the image). The engines' own checks (the
// formats each takes) are in their `validate`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How an image file is laid out (VMZDiskFormat).
enum DiskFormat: UInt32 {
    case raw = 0, qcow2 = 1
}

/// What a guest's flush does on the host (VMZDiskSync).
enum DiskSync: UInt32 {
    case full = 0, fsync = 1, off = 2
}

/// One virtio-blk disk, checked.
struct Disk {
    /// Position in the config: the guest sees disk 0 as /dev/vda.
    var index: Int
    var path: String
    var format: DiskFormat
    var sync: DiskSync
    var readOnly: Bool
    /// The serial number / block device identifier; nil for none.
    var serial: String?
    /// A block device rather than an image file.
    var isBlockDevice: Bool
    /// The file's identity when it was checked: the engine opens the same
    /// file or refuses to start.
    var device: UInt64
    var inode: UInt64

    static let maxCount = Int(VMZ_MAX_DISKS)
    static let maxSerialLength = Int(VMZ_DISK_SERIAL_MAX)

    /// "disk 1 "/path"", for messages.
    var name: String { "disk \(index) \(quoted(path))" }

    /// The disks of a config (already copied to the ABI's full size).
    static func parse(_ c: VMZConfig) throws -> [Disk] {
        guard c.disk_count <= UInt32(maxCount) else {
            throw BridgeError(VMZ_ERROR_DISK, "\(c.disk_count) disks; a VM may have at most \(maxCount)")
        }
        let minimumSize = MemoryLayout<VMZDisk>.offset(of: \VMZDisk.serial)! + MemoryLayout<UnsafePointer<CChar>?>.size
        let raw = try readABIArray(
            UnsafeRawPointer(c.disks), count: c.disk_count, as: VMZDisk.self,
            minimumSize: minimumSize, what: "disks")
        var disks: [Disk] = []
        for (i, r) in raw.enumerated() {
            let disk = try Disk(r, index: i)
            if let same = disks.first(where: { $0.device == disk.device && $0.inode == disk.inode }) {
                throw BridgeError(
                    VMZ_ERROR_DISK, "\(disk.name) is the same file as \(same.name): a file can back one disk only")
            }
            disks.append(disk)
        }
        return disks
    }

    private init(_ r: VMZDisk, index: Int) throws {
        self.index = index
        let path = try cString(r.path, VMZ_ERROR_DISK, "disk \(index): path", required: true)!
        self.path = path
        let name = "disk \(index) \(quoted(path))"
        guard let format = DiskFormat(rawValue: r.format) else {
            throw BridgeError(VMZ_ERROR_DISK, "\(name): unknown format value \(r.format) (VMZ_DISK_FORMAT_RAW or VMZ_DISK_FORMAT_QCOW2)")
        }
        self.format = format
        guard let sync = DiskSync(rawValue: r.sync) else {
            throw BridgeError(VMZ_ERROR_DISK, "\(name): unknown sync value \(r.sync) (VMZ_DISK_SYNC_FULL, _FSYNC or _OFF)")
        }
        self.sync = sync
        readOnly = r.read_only
        serial = try cString(r.serial, VMZ_ERROR_DISK, "\(name): serial", required: false)
        if let serial { try Disk.checkSerial(serial, name) }

        var st = stat()
        if stat(path, &st) != 0 {
            let err = errno
            let reason = err == ENOENT ? "does not exist" : String(cString: strerror(err))
            throw BridgeError(VMZ_ERROR_DISK, "\(name) \(reason)")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            isBlockDevice = false
        case S_IFBLK:
            isBlockDevice = true
        case S_IFDIR:
            throw BridgeError(VMZ_ERROR_DISK, "\(name) is a directory (a disk is an image file or a block device; to give the guest a directory, share it)")
        default:
            throw BridgeError(VMZ_ERROR_DISK, "\(name) is neither a regular file nor a block device")
        }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        if !isBlockDevice && st.st_size == 0 {
            throw BridgeError(VMZ_ERROR_DISK, "\(name) is empty (0 bytes): give it a size first, e.g. `truncate -s 1G \(path)`")
        }
        // Opening checks the access mode, the format and that no other VM
        // holds the image; the lock is released at once by the close.
        let fd = try openLocked()
        defer { close(fd) }
        if isBlockDevice { try checkBlockDevice(fd) }
        try checkFormat(fd)
    }

    /// A block device opens read-write even when the kernel marks it
    /// read-only (`losetup -r`, a write-protected card), and opens with no
    /// medium at all (an unbound loop device): both would reach the guest
    /// as a disk that fails later, so both are refused here.
    private func checkBlockDevice(_ fd: Int32) throws {
        #if os(Linux)
        // <linux/fs.h>: BLKROGET _IO(0x12, 94), BLKGETSIZE64 _IOR(0x12, 114, u64).
        var kernelReadOnly: Int32 = 0
        if !readOnly && ioctl(fd, 0x125e, &kernelReadOnly) == 0 && kernelReadOnly != 0 {
            throw BridgeError(
                VMZ_ERROR_DISK,
                "\(name) cannot be opened for writing (the block device is read-only): make the disk read-only, or make the device writable (`blockdev --setrw`)")
        }
        var size: UInt64 = 0
        if ioctl(fd, 0x8008_1272, &size) != 0 {
            throw BridgeError(VMZ_ERROR_DISK, "\(name): the block device's size cannot be read: \(String(cString: strerror(errno)))")
        }
        if size == 0 {
            throw BridgeError(VMZ_ERROR_DISK, "\(name) is a block device of size 0 (no medium, or a loop device with no file attached)")
        }
        #endif
    }

    /// 1 to 20 bytes of A-Z a-z 0-9 . _ -: what virtio-blk's serial field
    /// and Virtualization.framework's identifier (ASCII, at most 20 bytes)
    /// both take, and safe in a QEMU option and a /dev/disk/by-id name.
    private static func checkSerial(_ s: String, _ name: String) throws {
        let bytes = Array(s.utf8)
        guard !bytes.isEmpty, bytes.count <= maxSerialLength else {
            throw BridgeError(VMZ_ERROR_DISK, "\(name): the serial must be 1 to \(maxSerialLength) bytes, \(quoted(s)) is \(bytes.count)")
        }
        guard bytes.allSatisfy(isNameByte) else {
            throw BridgeError(VMZ_ERROR_DISK, "\(name): the serial \(quoted(s)) may hold only A-Z a-z 0-9 . _ -")
        }
    }

    /// Opens and locks every disk, in order (`openLocked`); on failure
    /// closes what it opened.
    static func openAll(_ disks: [Disk]) throws -> [Int32] {
        var fds: [Int32] = []
        do {
            for disk in disks { fds.append(try disk.openLocked()) }
        } catch {
            for fd in fds { close(fd) }
            throw error
        }
        return fds
    }

    /// Opens the disk as the VM uses it (read-only or read-write,
    /// close-on-exec), checks that it is still the file that was checked,
    /// and locks it with flock: exclusively when read-write, shared when
    /// read-only. The lock lasts as long as the open file description (the
    /// engine's copies included), so two VMs never write one image, and no
    /// VM reads an image another VM writes.
    func openLocked() throws -> Int32 {
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY)
        if fd < 0 {
            let err = errno
            let why = String(cString: strerror(err))
            if !readOnly && (err == EACCES || err == EROFS || err == EPERM || err == ETXTBSY) {
                throw BridgeError(
                    VMZ_ERROR_DISK,
                    "\(name) cannot be opened for writing (\(why)): make the disk read-only, or make the file writable")
            }
            throw BridgeError(VMZ_ERROR_DISK, "\(name) cannot be opened: \(why)")
        }
        var st = stat()
        if fstat(fd, &st) != 0 || UInt64(st.st_dev) != device || UInt64(st.st_ino) != inode {
            close(fd)
            throw BridgeError(VMZ_ERROR_DISK, "\(name) was replaced by another file since it was checked")
        }
        if flock(fd, (readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            let err = errno
            close(fd)
            if err == EWOULDBLOCK {
                let how = readOnly
                    ? "another running VM has it open read-write"
                    : "another running VM has it open"
                throw BridgeError(VMZ_ERROR_DISK_IN_USE, "\(name) is in use: \(how)")
            }
            throw BridgeError(VMZ_ERROR_DISK, "\(name) cannot be locked: \(String(cString: strerror(err)))")
        }
        return fd
    }

    /// The image must be of the declared format: vmz never probes, because
    /// a guest can write any header into a raw disk.
    private func checkFormat(_ fd: Int32) throws {
        var h = [UInt8](repeating: 0, count: 512)
        let n = h.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            throw BridgeError(VMZ_ERROR_DISK, "\(name) cannot be read: \(String(cString: strerror(errno)))")
        }
        let header = Array(h[0..<max(0, n)])
        let found = Disk.detectFormat(header)
        switch format {
        case .raw:
            if found == "qcow2" {
                throw BridgeError(
                    VMZ_ERROR_DISK,
                    "\(name) is a qcow2 image, not raw: declare its format as qcow2 (vmz never guesses a format)")
            }
            if let found {
                throw BridgeError(
                    VMZ_ERROR_DISK,
                    "\(name) is a \(found) image; vmz takes raw and qcow2 images: convert it, e.g. `qemu-img convert -O raw \(path) disk.img`")
            }
        case .qcow2:
            guard found == "qcow2" else {
                throw BridgeError(VMZ_ERROR_DISK, "\(name) is not a qcow2 image (no \"QFI\\xfb\" magic)\(found.map { ": it is a \($0) image" } ?? "")")
            }
            try checkQcow2(header)
        }
    }

    /// Image formats recognised by their first bytes, by name; nil when
    /// none matches (a raw image).
    static func detectFormat(_ h: [UInt8]) -> String? {
        func has(_ offset: Int, _ bytes: [UInt8]) -> Bool {
            h.count >= offset + bytes.count && Array(h[offset..<offset + bytes.count]) == bytes
        }
        if has(0, Array("QFI".utf8) + [0xfb]) { return "qcow2" }
        if has(0, Array("QED".utf8) + [0]) { return "QED" }
        if has(0, Array("KDMV".utf8)) || has(0, Array("# Disk DescriptorFile".utf8)) { return "VMDK" }
        if has(0x40, [0x7f, 0x10, 0xda, 0xbe]) { return "VDI" }
        if has(0, Array("vhdxfile".utf8)) { return "VHDX" }
        if has(0, Array("conectix".utf8)) { return "VHD (dynamic)" }
        return nil
    }

    /// A qcow2 header vmz can hand to QEMU: version 2 or 3, no backing
    /// file, no external data file (QEMU would open those by the names the
    /// image holds), not marked corrupt when asked read-write.
    private func checkQcow2(_ h: [UInt8]) throws {
        func be(_ offset: Int, _ count: Int) -> UInt64 {
            guard h.count >= offset + count else { return 0 }
            return h[offset..<offset + count].reduce(0) { $0 << 8 | UInt64($1) }
        }
        let version = be(4, 4)
        guard version == 2 || version == 3 else {
            throw BridgeError(VMZ_ERROR_DISK, "\(name) is a qcow2 image of unknown version \(version)")
        }
        if be(8, 8) != 0 {
            throw BridgeError(
                VMZ_ERROR_DISK,
                "\(name) is a qcow2 image with a backing file; vmz opens only the files it is given: flatten it, e.g. `qemu-img convert -O qcow2 \(path) flat.qcow2`")
        }
        if version == 3 {
            let incompatible = be(72, 8)
            if incompatible & 0x4 != 0 {
                throw BridgeError(VMZ_ERROR_DISK, "\(name) is a qcow2 image with an external data file, which vmz does not open")
            }
            if incompatible & 0x2 != 0 && !readOnly {
                throw BridgeError(VMZ_ERROR_DISK, "\(name) is a qcow2 image marked corrupt: repair it (`qemu-img check -r all`) or use it read-only")
            }
        }
    }
}

/// A byte of the names vmz passes to engines (serials, tags): A-Z a-z 0-9 . _ -
func isNameByte(_ b: UInt8) -> Bool {
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
        || b == 0x2e || b == 0x5f || b == 0x2d
}
