// The macOS engine's shared directories: a VZVirtioFileSystemDeviceConfiguration
// per share (ShareConfig.swift), each with a VZSingleDirectoryShare. The
// guest mounts them as on Linux: `mount -t virtiofs TAG /mnt`.
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
        }
    }

    /// The virtio-fs devices for `shares`.
    static func devices(_ shares: [Share]) -> [VZDirectorySharingDeviceConfiguration] {
        shares.map { share in
            let device = VZVirtioFileSystemDeviceConfiguration(tag: share.tag)
            let directory = VZSharedDirectory(url: URL(fileURLWithPath: share.path), readOnly: share.readOnly)
            device.share = VZSingleDirectoryShare(directory: directory)
            return device
        }
    }
}
#endif
