// The macOS engine's virtio-blk disks: Virtualization.framework's storage
// devices for the disks of a config (DiskConfig.swift).
//
// Sync settings (VMZDiskSync) on VZDiskImageStorageDeviceAttachment:
//   full   synchronizationMode .full (F_FULLFSYNC), cachingMode .automatic
//   fsync  synchronizationMode .fsync (fsync, no drive cache flush), .automatic
//   off    synchronizationMode .none, cachingMode .cached
// Block devices (macOS 14+, VZDiskBlockDeviceStorageDeviceAttachment) have
// two modes only: full for full and fsync, none for off.
//
// STATUS: type-checked on Linux against swift/stubs/Virtualization; not yet
// compiled against Apple's SDK nor run.

#if canImport(Virtualization)
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif
import Foundation
import Virtualization

enum VZDisks {
    /// What the framework cannot take, found before anything is built
    /// (some invalid input raises Objective-C exceptions, which Swift
    /// cannot catch).
    static func validate(_ disks: [Disk]) throws {
        for disk in disks {
            if disk.format == .qcow2 {
                throw BridgeError(
                    VMZ_ERROR_DISK,
                    "\(disk.name) is qcow2, and Virtualization.framework takes raw images only: convert it, e.g. `qemu-img convert -O raw \(disk.path) disk.img`")
            }
            if disk.isBlockDevice {
                guard #available(macOS 14, *) else {
                    throw BridgeError(VMZ_ERROR_DISK, "\(disk.name) is a block device, which Virtualization.framework attaches from macOS 14 on")
                }
            }
            if let serial = disk.serial, #available(macOS 12.3, *) {
                do {
                    try VZVirtioBlockDeviceConfiguration.validateBlockDeviceIdentifier(serial)
                } catch {
                    throw BridgeError(
                        VMZ_ERROR_DISK,
                        "\(disk.name): Virtualization.framework refuses the serial \(quoted(serial)): \((error as NSError).localizedDescription)")
                }
            }
        }
    }

    /// The storage devices for `disks`, whose images are open and locked
    /// as `fds` (same order; the block devices' attachments get their own
    /// duplicates).
    static func devices(_ disks: [Disk], fds: [Int32]) throws -> [VZStorageDeviceConfiguration] {
        var devices: [VZStorageDeviceConfiguration] = []
        for (disk, fd) in zip(disks, fds) {
            let attachment: VZStorageDeviceAttachment
            do {
                attachment = try makeAttachment(disk, fd: fd)
            } catch let error as BridgeError {
                throw error
            } catch {
                throw BridgeError(
                    VMZ_ERROR_DISK,
                    "\(disk.name): Virtualization.framework refuses the image: \((error as NSError).localizedDescription)")
            }
            let device = VZVirtioBlockDeviceConfiguration(attachment: attachment)
            if let serial = disk.serial {
                if #available(macOS 12.3, *) {
                    device.blockDeviceIdentifier = serial
                } else {
                    log(.warn, "\(disk.name): the serial needs macOS 12.3; the guest sees the disk without one")
                }
            }
            devices.append(device)
        }
        return devices
    }

    private static func makeAttachment(_ disk: Disk, fd: Int32) throws -> VZStorageDeviceAttachment {
        if disk.isBlockDevice {
            guard #available(macOS 14, *) else {
                throw BridgeError(VMZ_ERROR_DISK, "\(disk.name) is a block device, which Virtualization.framework attaches from macOS 14 on")
            }
            let handle = FileHandle(fileDescriptor: try duplicate(fd), closeOnDealloc: true)
            return try VZDiskBlockDeviceStorageDeviceAttachment(
                fileHandle: handle, readOnly: disk.readOnly,
                synchronizationMode: disk.sync == .off ? .none : .full)
        }
        let caching: VZDiskImageCachingMode = disk.sync == .off ? .cached : .automatic
        let sync: VZDiskImageSynchronizationMode
        switch disk.sync {
        case .full: sync = .full
        case .fsync: sync = .fsync
        case .off: sync = .none
        }
        return try VZDiskImageStorageDeviceAttachment(
            url: URL(fileURLWithPath: disk.path), readOnly: disk.readOnly,
            cachingMode: caching, synchronizationMode: sync)
    }
}
#endif
