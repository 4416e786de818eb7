// The shared directories of a config (VMZConfig.shares): parsed, and
// checked for everything that does not depend on the engine (directories,
// tags, duplicates). The engines' own checks are in their `validate`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One host directory shared with the guest over virtio-fs, checked.
struct Share {
    /// Position in the config.
    var index: Int
    /// The host directory, as given.
    var path: String
    /// What the guest mounts: `mount -t virtiofs TAG /mnt`.
    var tag: String
    var readOnly: Bool

    static let maxCount = Int(VMZ_MAX_SHARES)
    static let maxTagLength = Int(VMZ_SHARE_TAG_MAX)

    /// "share 0 "tag" ("/path")", for messages.
    var name: String { "share \(index) \(quoted(tag)) (\(quoted(path)))" }

    /// The shares of a config (already copied to the ABI's full size).
    static func parse(_ c: VMZConfig) throws -> [Share] {
        guard c.share_count <= UInt32(maxCount) else {
            throw BridgeError(VMZ_ERROR_SHARE, "\(c.share_count) shared directories; a VM may have at most \(maxCount)")
        }
        let minimumSize = MemoryLayout<VMZShare>.offset(of: \VMZShare.read_only)! + MemoryLayout<Bool>.size
        let raw = try readABIArray(
            UnsafeRawPointer(c.shares), count: c.share_count, as: VMZShare.self,
            minimumSize: minimumSize, what: "shares")
        var shares: [Share] = []
        for (i, r) in raw.enumerated() {
            let share = try Share(r, index: i)
            if let same = shares.first(where: { $0.tag == share.tag }) {
                throw BridgeError(
                    VMZ_ERROR_SHARE, "share \(i): the tag \(quoted(share.tag)) is already used by \(same.name); tags must be unique")
            }
            shares.append(share)
        }
        return shares
    }

    private init(_ r: VMZShare, index: Int) throws {
        self.index = index
        path = try cString(r.path, VMZ_ERROR_SHARE, "share \(index): path", required: true)!
        tag = try cString(r.tag, VMZ_ERROR_SHARE, "share \(index): tag", required: true)!
        readOnly = r.read_only
        let bytes = Array(tag.utf8)
        guard bytes.count <= Share.maxTagLength else {
            throw BridgeError(
                VMZ_ERROR_SHARE,
                "share \(index): the tag \(quoted(tag)) is \(bytes.count) bytes; the limit is \(Share.maxTagLength) (Virtualization.framework takes fewer than 36)")
        }
        guard bytes.allSatisfy(isNameByte) else {
            throw BridgeError(VMZ_ERROR_SHARE, "share \(index): the tag \(quoted(tag)) may hold only A-Z a-z 0-9 . _ -")
        }

        var st = stat()
        if stat(path, &st) != 0 {
            let err = errno
            let reason = err == ENOENT ? "does not exist" : String(cString: strerror(err))
            throw BridgeError(VMZ_ERROR_SHARE, "\(name): the directory \(reason)")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw BridgeError(VMZ_ERROR_SHARE, "\(name) is not a directory (share the directory that holds it; a file can be a disk)")
        }
        if access(path, R_OK | X_OK) != 0 {
            throw BridgeError(VMZ_ERROR_SHARE, "\(name) cannot be read: \(String(cString: strerror(errno)))")
        }
    }
}
