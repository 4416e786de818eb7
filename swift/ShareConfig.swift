// The shared directories of a config (VMZConfig.shares): parsed, and
// checked for everything that does not depend on the engine (directories,
// tags, duplicates). The engines' own checks are in their `validate`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One directory of a multi-directory share (VMZShareDirectory), checked.
struct ShareDirectory {
    /// What the guest sees under the share's root.
    var name: String
    var path: String
    var readOnly: Bool

    static let maxCount = Int(VMZ_MAX_SHARE_DIRECTORIES)
    static let maxNameLength = Int(VMZ_SHARE_DIRECTORY_NAME_MAX)
}

/// One host directory, or several under one tag, shared with the guest over
/// virtio-fs, checked.
struct Share {
    /// Position in the config.
    var index: Int
    /// The host directory, as given; empty for a multi-directory share.
    var path: String
    /// What the guest mounts: `mount -t virtiofs TAG /mnt`.
    var tag: String
    var readOnly: Bool
    /// Several directories under the tag instead of `path`, in order.
    var directories: [ShareDirectory]

    static let maxCount = Int(VMZ_MAX_SHARES)
    static let maxTagLength = Int(VMZ_SHARE_TAG_MAX)

    /// "share 0 "tag" ("/path")" or "share 0 "tag" (2 directories)", for
    /// messages.
    var name: String {
        let what = directories.isEmpty ? quoted(path) : "\(directories.count) directories"
        return "share \(index) \(quoted(tag)) (\(what))"
    }

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
        let what = "share \(index) \(quoted(tag))"
        if r.directory_count == 0 {
            guard r.path != nil else {
                throw BridgeError(VMZ_ERROR_SHARE, "\(what) has no directory: give it a path, or several directories")
            }
            path = try cString(r.path, VMZ_ERROR_SHARE, "share \(index): path", required: true)!
            directories = []
            try Share.checkDirectory(path, "share \(index) \(quoted(tag)) (\(quoted(path)))")
            return
        }
        guard r.path == nil else {
            throw BridgeError(VMZ_ERROR_SHARE, "\(what) has both a path and directories: give one or the other")
        }
        path = ""
        directories = try Share.parseDirectories(r, what)
    }

    private static func parseDirectories(_ r: VMZShare, _ what: String) throws -> [ShareDirectory] {
        guard r.directory_count <= UInt32(ShareDirectory.maxCount) else {
            throw BridgeError(
                VMZ_ERROR_SHARE, "\(what): \(r.directory_count) directories; a share may hold at most \(ShareDirectory.maxCount)")
        }
        let minimumSize = MemoryLayout<VMZShareDirectory>.offset(of: \VMZShareDirectory.read_only)! + MemoryLayout<Bool>.size
        let raw = try readABIArray(
            UnsafeRawPointer(r.directories), count: r.directory_count, as: VMZShareDirectory.self,
            minimumSize: minimumSize, what: "\(what): directories")
        var out: [ShareDirectory] = []
        for (i, d) in raw.enumerated() {
            let name = try cString(d.name, VMZ_ERROR_SHARE, "\(what): directory \(i): name", required: true)!
            let path = try cString(d.path, VMZ_ERROR_SHARE, "\(what): directory \(i): path", required: true)!
            let bytes = Array(name.utf8)
            guard bytes.count <= ShareDirectory.maxNameLength, bytes.allSatisfy(isNameByte), name != ".", name != ".." else {
                throw BridgeError(
                    VMZ_ERROR_SHARE,
                    "\(what): the directory name \(quoted(name)) must be 1 to \(ShareDirectory.maxNameLength) bytes of A-Z a-z 0-9 . _ -, not \".\" or \"..\"")
            }
            if out.contains(where: { $0.name == name }) {
                throw BridgeError(VMZ_ERROR_SHARE, "\(what): the directory name \(quoted(name)) is used twice; names must be unique in a share")
            }
            try checkDirectory(path, "\(what): directory \(quoted(name)) (\(quoted(path)))")
            out.append(ShareDirectory(name: name, path: path, readOnly: d.read_only))
        }
        return out
    }

    /// `path` must be a directory this process can read; `name` says which
    /// in messages.
    private static func checkDirectory(_ path: String, _ name: String) throws {
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
