// What the kernel cache trusts, and how a lookup stays cheap (KernelCache.swift
// decides what to unpack; this file keeps the directory and its entries).
//
// Trust: an entry boots only if it was written by this user through the
// cache and is unchanged since.
// - The directory must be an absolute path, owned by this user and not
//   writable by group or others, and so must every directory above it
//   (owned by root or this user, not group/other-writable unless sticky,
//   like /tmp): nobody else can put, replace or rename anything in it.
//   Otherwise the cache is not used (a warning; on Linux the bzImage then
//   boots as it is).
// - Each entry `K.vmlinux` has a record `K.vmlinux.rec`, written after the
//   entry (both fsync'd, then renamed into place, then the directory
//   fsync'd): the entry's inode, size, modification and change times. Any
//   write to the entry after that (truncation, zeroing, a corrupted middle)
//   changes its change time, which no unprivileged process can set back;
//   an entry whose metadata differs from its record, or that has none
//   (planted, or left by an older vmz), is removed and rebuilt, with a
//   warning. The entry must also be a regular file owned by this user that
//   starts with the expected magic.
// - Cost: a warm lookup reads no kernel. A source pointer
//   `src-<dev>-<ino>.<suffix>.ptr` maps the caller's kernel file version
//   (device, inode, size, modification and change times) to its entry, so
//   the next process finds the entry with a few stats and two small reads
//   instead of reading and hashing the whole bzImage (26 ms for Debian's).
// - Not detected: bit rot inside an entry that leaves its metadata alone
//   (the same holds for any file the kernel boots from), and root.
//
// Stale temporaries (`.unpack-<pid>-*` of a process that died while
// unpacking) are removed once per process when the directory is first used.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum KernelCacheStore {
    /// The cache directory: resolved, created (0700) and checked.
    static func directory() throws -> String {
        let dir: String
        if let d = environment("VMZ_KERNEL_CACHE") {
            guard d.hasPrefix("/") else {
                throw BridgeError(
                    VMZ_ERROR_KERNEL, "VMZ_KERNEL_CACHE=\(quoted(d)) is not an absolute path: kernel cache not used")
            }
            dir = d
        } else if let x = environment("XDG_CACHE_HOME"), x.hasPrefix("/") {
            // (A relative XDG_CACHE_HOME is invalid by the XDG spec: ignored.)
            dir = x + "/vmz/kernels"
        } else if let h = environment("HOME"), h.hasPrefix("/") {
            #if os(macOS)
            dir = h + "/Library/Caches/vmz/kernels"
            #else
            dir = h + "/.cache/vmz/kernels"
            #endif
        } else {
            throw BridgeError(
                VMZ_ERROR_KERNEL, "no cache directory: none of VMZ_KERNEL_CACHE, XDG_CACHE_HOME, HOME is an absolute path")
        }
        var prefix = ""
        for part in dir.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw BridgeError.system("mkdir", errno, quoted(prefix))
            }
        }
        try checkTrusted(dir)
        cleanOnce(dir)
        return dir
    }

    /// Refuses a directory that someone else could write into.
    private static func checkTrusted(_ dir: String) throws {
        guard let real = realpath(dir, nil) else { throw BridgeError.system("realpath", errno, quoted(dir)) }
        let path = String(cString: real)
        free(real)
        let me = geteuid()
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw BridgeError(VMZ_ERROR_KERNEL, "kernel cache \(quoted(dir)) is not a directory")
        }
        guard st.st_uid == me else {
            throw BridgeError(
                VMZ_ERROR_KERNEL,
                "kernel cache \(quoted(dir)) belongs to uid \(st.st_uid), not to this user (uid \(me)): not used; remove it or set VMZ_KERNEL_CACHE")
        }
        guard st.st_mode & 0o022 == 0 else {
            throw BridgeError(
                VMZ_ERROR_KERNEL,
                "kernel cache \(quoted(dir)) is writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8))): not used; chmod 700 it")
        }
        var parent = path
        while let slash = parent.lastIndex(of: "/"), parent != "/" {
            parent = slash == parent.startIndex ? "/" : String(parent[..<slash])
            guard stat(parent, &st) == 0 else { break }
            let sticky = st.st_mode & S_ISVTX != 0
            guard st.st_uid == 0 || st.st_uid == me, st.st_mode & 0o022 == 0 || sticky else {
                throw BridgeError(
                    VMZ_ERROR_KERNEL,
                    "kernel cache \(quoted(dir)): \(quoted(parent)) above it can be changed by another user (uid \(st.st_uid), mode \(String(st.st_mode & 0o7777, radix: 8))): not used")
            }
        }
    }

    private static let cleanedLock = Lock()
    nonisolated(unsafe) private static var cleaned = Set<String>()

    /// Removes temporaries of processes that died while unpacking.
    private static func cleanOnce(_ dir: String) {
        let first = cleanedLock.withLock { cleaned.insert(dir).inserted }
        guard first, let d = opendir(dir) else { return }
        defer { closedir(d) }
        let now = time(nil)
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasPrefix(".unpack-") else { continue }
            let path = "\(dir)/\(name)"
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            #if os(Linux)
            let age = now - st.st_mtim.tv_sec
            #else
            let age = now - st.st_mtimespec.tv_sec
            #endif
            let owner = name.dropFirst(8).split(separator: "-").first.flatMap { pid_t($0) }
            let ownerGone = owner.map { kill($0, 0) != 0 && errno == ESRCH } ?? false
            // A live unpack writes its files within seconds; an hour-old one
            // belongs to a process that died (its pid reused since).
            if ownerGone || age > 3600 {
                if unlink(path) == 0 { log(.info, "kernel cache: removed stale \(quoted(path))") }
            }
        }
    }

    /// A new temporary file in `dir` (named after this process, so a later
    /// process can tell it stale), open for writing.
    static func temporary(_ dir: String) throws -> (Int32, String) {
        var template = Array("\(dir)/.unpack-\(getpid())-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        if fd < 0 { throw BridgeError.system("mkstemp", errno, dir) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return (fd, String(cString: template))
    }

    /// Makes the written temporary `fd`/`name` the file `target`, durably:
    /// fsync, rename, fsync of the directory.
    static func commit(_ fd: Int32, _ name: String, as target: String, in dir: String) throws {
        guard fsync(fd) == 0 else { throw BridgeError.system("fsync", errno, name) }
        guard rename(name, target) == 0 else { throw BridgeError.system("rename", errno, target) }
        let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 {
            _ = fsync(d)
            close(d)
        }
    }

    /// Writes `text` as `target` atomically and durably.
    private static func writeSmall(_ text: String, as target: String, in dir: String) throws {
        let (fd, name) = try temporary(dir)
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            let e = errno
            unlink(name)
            throw BridgeError.system("write", e, name)
        }
        do { try commit(fd, name, as: target, in: dir) } catch {
            unlink(name)
            throw error
        }
    }

    /// The content of a small file of ours (regular, this user's, not a
    /// symlink), or nil.
    private static func readSmall(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid(), st.st_size < 4096 else {
            return nil
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    /// What a record says of an entry: inode, size, times.
    private static func signature(_ st: stat) -> String {
        #if os(Linux)
        let (m, c) = (st.st_mtim, st.st_ctim)
        #else
        let (m, c) = (st.st_mtimespec, st.st_ctimespec)
        #endif
        return "\(st.st_ino) \(st.st_size) \(m.tv_sec).\(m.tv_nsec) \(c.tv_sec).\(c.tv_nsec)"
    }

    private static let recordHeader = "vmz-kernel-cache-entry 1 "

    /// Records the entry `target` as it is now (after its rename).
    static func record(_ target: String, in dir: String) throws {
        var st = stat()
        guard lstat(target, &st) == 0 else { throw BridgeError.system("stat", errno, target) }
        try writeSmall(recordHeader + signature(st) + "\n", as: target + ".rec", in: dir)
    }

    /// Whether `target` may boot: absent (false, quietly), or present and
    /// exactly as the cache recorded it (true); otherwise it is removed with
    /// a warning (false) so that it is rebuilt.
    static func verified(_ target: String, magic: [UInt8]?) -> Bool {
        var st = stat()
        guard lstat(target, &st) == 0 else { return false }
        var why: String?
        if st.st_mode & S_IFMT != S_IFREG {
            why = "it is \(fileKind(st.st_mode)), not a regular file"
        } else if st.st_uid != geteuid() {
            why = "it belongs to uid \(st.st_uid)"
        } else if let rec = readSmall(target + ".rec"), rec == recordHeader + signature(st) + "\n" {
            if let magic, !startsWith(target, magic) {
                why = "it does not start with the expected magic"
            }
        } else {
            why = readSmall(target + ".rec") == nil
                ? "it has no record (not written by this cache)"
                : "it changed after it was written (size or times differ from its record)"
        }
        guard let why else { return true }
        log(.warn, "kernel cache: entry \(quoted(target)) is not used, \(why): rebuilding it")
        unlink(target)
        unlink(target + ".rec")
        return false
    }

    private static func startsWith(_ path: String, _ magic: [UInt8]) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: magic.count)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        return n == magic.count && head == magic
    }

    /// The source pointer's name for a kernel file version.
    private static func pointerName(_ st: stat, _ suffix: String, _ dir: String) -> String {
        "\(dir)/src-\(st.st_dev)-\(st.st_ino).\(suffix).ptr"
    }

    private static func sourceSignature(_ st: stat) -> String {
        let s = signature(st)
        return "vmz-kernel-cache-source 1 " + s[s.index(after: s.firstIndex(of: " ")!)...]
    }

    /// The verified entry the pointer for this kernel file version names,
    /// or nil (then the file is read and hashed).
    static func pointed(_ source: stat, _ suffix: String, magic: [UInt8]?) -> String? {
        guard let dir = try? directory(),
            let text = readSmall(pointerName(source, suffix, dir)),
            let nl = text.lastIndex(of: " ")
        else { return nil }
        guard String(text[..<nl]) == sourceSignature(source) else { return nil }
        let entry = String(text[text.index(after: nl)...]).trimmingNewline
        guard !entry.contains("/"), verified("\(dir)/\(entry)", magic: magic) else { return nil }
        return "\(dir)/\(entry)"
    }

    /// Points this kernel file version at `target` (an entry in `dir`).
    static func point(_ source: stat, _ suffix: String, at target: String, in dir: String) {
        let entry = target.split(separator: "/").last.map(String.init) ?? target
        do {
            try writeSmall(sourceSignature(source) + " " + entry + "\n", as: pointerName(source, suffix, dir), in: dir)
        } catch let e as BridgeError {
            log(.debug, "kernel cache: no source pointer: \(e.message)")
        } catch {}
    }
}

private extension String {
    var trimmingNewline: String {
        var s = self
        while s.last == "\n" { s.removeLast() }
        return s
    }
}
