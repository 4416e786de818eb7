// The macOS engine's shared directories: a VZVirtioFileSystemDeviceConfiguration
// per share (ShareConfig.swift), each with a VZSingleDirectoryShare, or a
// VZMultipleDirectoryShare for several directories under one tag (each
// VZSharedDirectory read-only when its directory or the whole share is).
// The guest mounts them as on Linux: `mount -t virtiofs TAG /mnt`.
//
// STATUS: type-checked on Linux against swift/stubs/Virtualization; not yet
// compiled against Apple's SDK nor run.

#if canImport(Virtualization)
import Foundation
import Virtualization

enum VZShares {
    /// Tags the framework refuses, found before anything is built.
    static func validate(_ shares: [Share]) throws {
        for share in shares {
            do {
                try VZVirtioFileSystemDeviceConfiguration.validateTag(share.tag)
            } catch {
                throw BridgeError(
                    VMZ_ERROR_SHARE,
                    "\(share.name): Virtualization.framework refuses the tag: \((error as NSError).localizedDescription)")
            }
            for d in share.directories {
                do {
                    try VZMultipleDirectoryShare.validateName(d.name)
                } catch {
                    throw BridgeError(
                        VMZ_ERROR_SHARE,
                        "\(share.name): Virtualization.framework refuses the directory name \(quoted(d.name)): \((error as NSError).localizedDescription)")
                }
            }
        }
    }

    /// The virtio-fs devices for `shares`.
    static func devices(_ shares: [Share]) -> [VZDirectorySharingDeviceConfiguration] {
        shares.map { share in
            let device = VZVirtioFileSystemDeviceConfiguration(tag: share.tag)
            if share.directories.isEmpty {
                let directory = VZSharedDirectory(url: URL(fileURLWithPath: share.path), readOnly: share.readOnly)
                device.share = VZSingleDirectoryShare(directory: directory)
            } else {
                // Names were checked (validateName): the initializer raises
                // an Objective-C exception on an invalid key.
                var directories: [String: VZSharedDirectory] = [:]
                for d in share.directories {
                    directories[d.name] = VZSharedDirectory(
                        url: URL(fileURLWithPath: d.path), readOnly: d.readOnly || share.readOnly)
                }
                device.share = VZMultipleDirectoryShare(directories: directories)
            }
            return device
        }
    }
}
#endif
