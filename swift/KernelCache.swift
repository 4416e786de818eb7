// Host-side decompression of x86 bzImages (Linux engine).
//
// A bzImage decompresses itself inside the guest, which under emulation
// costs seconds for an xz-compressed kernel. The bridge instead unpacks the
// payload once on the host, with the system's own decompressor, and keeps
// the uncompressed ELF vmlinux (which QEMU boots through its PVH entry) in a
// cache keyed by the bzImage's content. Any failure falls back to booting
// the bzImage as it is.
//
// Cache directory: $VMZ_KERNEL_CACHE, else $XDG_CACHE_HOME/vmz/kernels,
// else $HOME/.cache/vmz/kernels.

#if os(Linux)
import Glibc

enum KernelCache {
    /// The uncompressed kernel for `path` if it is a bzImage whose payload
    /// can be unpacked here; nil to boot `path` as it is.
    static func uncompressed(for path: String) -> String? {
        guard let data = readFile(path), data.count > 0x250,
            data[0x202..<0x206] == Array("HdrS".utf8)[...]
        else { return nil }
        guard let dir = directory() else { return nil }
        let key = String(vmz_fnv1a64(data, UInt(data.count)), radix: 16) + "-" + String(data.count)
        let target = "\(dir)/\(key).vmlinux"
        if access(target, R_OK) == 0 {
            log(.debug, "kernel cache: \(quoted(path)) -> \(quoted(target))")
            return target
        }
        do {
            try unpack(data, into: target, directory: dir)
            log(.info, "kernel cache: unpacked \(quoted(path)) into \(quoted(target))")
            return target
        } catch let e as BridgeError {
            log(.warn, "kernel cache: booting \(quoted(path)) as it is: \(e.message)")
        } catch {}
        return nil
    }

    /// The cache directory, created (0700) if needed; nil if impossible.
    private static func directory() -> String? {
        let dir: String
        if let d = environment("VMZ_KERNEL_CACHE") {
            dir = d
        } else if let x = environment("XDG_CACHE_HOME") {
            dir = x + "/vmz/kernels"
        } else if let h = environment("HOME") {
            dir = h + "/.cache/vmz/kernels"
        } else {
            return nil
        }
        var prefix = ""
        for part in dir.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                log(.debug, "kernel cache: cannot create \(quoted(prefix))")
                return nil
            }
        }
        return dir
    }

    private static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0, st.st_size < 512 << 20 else { return nil }
        var data = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < data.count {
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            done += n
        }
        return data
    }

    private static func le32(_ d: [UInt8], _ at: Int) -> Int {
        Int(d[at]) | Int(d[at + 1]) << 8 | Int(d[at + 2]) << 16 | Int(d[at + 3]) << 24
    }

    /// Writes `bytes` to a new file; returns its descriptor, rewound.
    private static func temporary(_ dir: String, _ bytes: ArraySlice<UInt8>?) throws -> (Int32, String) {
        var template = Array("\(dir)/.unpack-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        if fd < 0 { throw BridgeError.system("mkstemp", errno, dir) }
        let name = String(cString: template)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        if let bytes {
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    let e = errno
                    close(fd)
                    unlink(name)
                    throw BridgeError.system("write", e, name)
                }
                done += n
            }
            lseek(fd, 0, SEEK_SET)
        }
        return (fd, name)
    }

    private static func unpack(_ data: [UInt8], into target: String, directory dir: String) throws {
        let setupSects = data[0x1f1] == 0 ? 4 : Int(data[0x1f1])
        let start = (setupSects + 1) * 512 + le32(data, 0x248)
        let length = le32(data, 0x24c)
        guard length > 4, start + length <= data.count else {
            throw BridgeError(VMZ_ERROR_KERNEL, "no compressed payload found in the bzImage")
        }
        var payload = data[start..<start + length]
        let magic = Array(payload.prefix(6))
        let tool: String
        if magic.starts(with: [0x1f, 0x8b]) {
            tool = "gzip"
        } else if magic.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            tool = "xz"
        } else if magic.starts(with: [0x02, 0x21, 0x4c, 0x18]) {
            tool = "lz4"
        } else if magic.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) {
            tool = "zstd"
        } else {
            throw BridgeError(VMZ_ERROR_KERNEL, "unsupported payload compression")
        }
        // xz, lz4 and zstd payloads end with the kernel's 4-byte size,
        // which is not part of the compressed stream.
        if tool != "gzip" { payload = payload.dropLast(4) }
        guard let binary = findExecutable(tool) else {
            throw BridgeError(VMZ_ERROR_KERNEL, "\(tool) is not installed")
        }

        let (input, inputName) = try temporary(dir, payload)
        defer {
            close(input)
            unlink(inputName)
        }
        let (output, outputName) = try temporary(dir, nil)
        var keep = false
        defer {
            close(output)
            if !keep { unlink(outputName) }
        }
        let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { if devnull >= 0 { close(devnull) } }

        let argv: [String] = [binary, "-dc"]
        var args: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        args.append(nil)
        defer { for p in args { free(p) } }
        var pid: pid_t = -1
        var pidfd: Int32 = -1
        let rc = vmz_spawn(binary, &args, [input, output, devnull], 3, &pid, &pidfd)
        if rc != 0 { throw BridgeError.system("spawn \(tool)", rc) }
        close(pidfd)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { throw BridgeError(VMZ_ERROR_KERNEL, "\(tool) failed (status \(status))") }

        var head = [UInt8](repeating: 0, count: 4)
        let n = head.withUnsafeMutableBytes { pread(output, $0.baseAddress, 4, 0) }
        guard n == 4, head == [0x7f, 0x45, 0x4c, 0x46] else {
            throw BridgeError(VMZ_ERROR_KERNEL, "the unpacked kernel is not an ELF file")
        }
        // Complete files only: another process may be unpacking the same
        // kernel; rename() makes whichever finishes first the cached one.
        guard rename(outputName, target) == 0 else { throw BridgeError.system("rename", errno, target) }
        keep = true
    }
}
#endif
