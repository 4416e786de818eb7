// Host-side decompression of compressed kernels, for both engines.
//
// - Linux engine (x86_64): a bzImage decompresses itself inside the guest,
//   which under emulation costs seconds for an xz-compressed kernel. Its
//   payload is unpacked here instead, and the uncompressed ELF vmlinux boots
//   through its PVH entry. Any failure falls back to booting the bzImage as
//   it is (`uncompressed(for:)` never fails).
// - arm64 guests (macOS engine; QEMU engine, QEMUMachineType.swift):
//   Virtualization.framework boots only an uncompressed arm64 Image, and
//   QEMU 7.2 no EFI zboot image; distributions ship the Image
//   gzip-compressed (`vmlinuz`) or inside an EFI zboot image
//   (`vmlinuz.efi`). Both are decompressed here (`gunzipped(_:)`,
//   `unzbooted(_:)`, which fail with the reason).
//
// Either way the system's own decompressor (gzip, xz, lz4, zstd) runs once
// per kernel, natively, and the result is kept in a cache keyed by the
// compressed file's content (FNV-1a 64 and size), so the next VM with the
// same kernel, from any process, starts with no decompression at all.
// What the cache trusts (the directory's owner and mode, a record per entry),
// how entries are made durable, and why a warm lookup reads no kernel:
// KernelCacheStore.swift.
//
// Cache directory: $VMZ_KERNEL_CACHE (absolute), else
// $XDG_CACHE_HOME/vmz/kernels, else ~/Library/Caches/vmz/kernels (macOS) or
// ~/.cache/vmz/kernels.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if !os(Linux) || VMZ_TYPECHECK_VZ
import Foundation
#endif

enum KernelCache {
    /// The uncompressed kernel for `path` if it is an x86 bzImage whose
    /// payload can be unpacked here; nil to boot `path` as it is.
    static func uncompressed(for path: String) -> String? {
        // The header first: an ELF vmlinux (tens of MB) is not read whole.
        guard (try? KernelFormat(path: path)) == .bzImage, let found = lookup(path, "vmlinux") else { return nil }
        let data: [UInt8], identity: stat
        switch found {
        case .hit(let target): return target
        case .content(let d, let i): (data, identity) = (d, i)
        }
        guard data.count > 0x250 else { return nil }
        do {
            let (payload, tool) = try bzImagePayload(data)
            return try cached(data, identity, source: path, suffix: "vmlinux", stream: payload, tool: tool, expect: elfMagic)
        } catch let e as BridgeError {
            log(.warn, "kernel cache: booting \(quoted(path)) as it is: \(e.message)")
        } catch {}
        return nil
    }

    /// The decompressed copy of the gzip-compressed kernel at `path` (the
    /// whole file is one gzip stream, like arm64 distributions' `vmlinuz`).
    static func gunzipped(_ path: String) throws -> String {
        try unpackedImage(path, as: "gzip") { data in
            guard data.starts(with: [0x1f, 0x8b]) else {
                throw BridgeError(VMZ_ERROR_KERNEL, "it is not gzip-compressed")
            }
            return (data[...], "gzip")
        }
    }

    /// The arm64 Image inside the EFI zboot image at `path` (Linux's
    /// CONFIG_EFI_ZBOOT `vmlinuz.efi`: "zimg" at offset 4, then the
    /// compressed payload's offset and size, little-endian 32-bit, at 8 and
    /// 12; the compression's name at 24), decompressed.
    static func unzbooted(_ path: String) throws -> String {
        try unpackedImage(path, as: "an EFI zboot image") { data in
            guard data.count > 32, Array(data[4..<8]) == Array("zimg".utf8) else {
                throw BridgeError(VMZ_ERROR_KERNEL, "it is not an EFI zboot image")
            }
            let start = le32(data, 8), length = le32(data, 12)
            guard length > 4, start >= 16, start + length <= data.count else {
                throw BridgeError(VMZ_ERROR_KERNEL, "its payload (offset \(start), \(length) bytes) is not inside the file")
            }
            return try compressedStream(data[start..<start + length])
        }
    }

    /// The cached Image unpacked from the file at `path` by `stream` (the
    /// file's content -> the compressed stream and its tool).
    private static func unpackedImage(
        _ path: String, as packing: String, _ stream: ([UInt8]) throws -> (ArraySlice<UInt8>, String)
    ) throws -> String {
        guard let found = lookup(path, "Image") else {
            throw BridgeError(VMZ_ERROR_KERNEL, "kernel \(quoted(path)) cannot be read")
        }
        let data: [UInt8], identity: stat
        switch found {
        case .hit(let target): return target
        case .content(let d, let i): (data, identity) = (d, i)
        }
        do {
            let (compressed, tool) = try stream(data)
            return try cached(data, identity, source: path, suffix: "Image", stream: compressed, tool: tool, expect: nil)
        } catch let e as BridgeError {
            throw BridgeError(
                VMZ_ERROR_KERNEL, "kernel \(quoted(path)) cannot be decompressed as \(packing): \(e.message)")
        }
    }

    private static let elfMagic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]

    /// The cached decompression of `stream` (part of `data`, the file's
    /// content) by `tool`, made now if it is not there yet.
    private static func cached(
        _ data: [UInt8], _ identity: stat, source: String, suffix: String, stream: ArraySlice<UInt8>, tool: String,
        expect: [UInt8]?
    ) throws -> String {
        let dir = try KernelCacheStore.directory()
        let key = String(vmz_fnv1a64(data, UInt(data.count)), radix: 16) + "-" + String(data.count)
        let target = "\(dir)/\(key).\(suffix)"
        if KernelCacheStore.verified(target, magic: expect) {
            log(.debug, "kernel cache: \(quoted(source)) -> \(quoted(target))")
        } else {
            try unpack(stream, tool: tool, into: target, directory: dir, expect: expect)
            try KernelCacheStore.record(target, in: dir)
            log(.info, "kernel cache: decompressed \(quoted(source)) into \(quoted(target))")
        }
        KernelCacheStore.point(identity, suffix, at: target, in: dir)
        return target
    }

    /// The magic an entry of `suffix` starts with (nil: not checked).
    private static func magic(_ suffix: String) -> [UInt8]? { suffix == "vmlinux" ? elfMagic : nil }

    /// The compressed payload of a bzImage and the tool that unpacks it.
    private static func bzImagePayload(_ data: [UInt8]) throws -> (ArraySlice<UInt8>, String) {
        let setupSects = data[0x1f1] == 0 ? 4 : Int(data[0x1f1])
        let start = (setupSects + 1) * 512 + le32(data, 0x248)
        let length = le32(data, 0x24c)
        guard length > 4, start + length <= data.count else {
            throw BridgeError(VMZ_ERROR_KERNEL, "no compressed payload found in the bzImage")
        }
        return try compressedStream(data[start..<start + length])
    }

    /// A kernel's compressed payload (of a bzImage or an EFI zboot image)
    /// as the stream its tool reads, and the tool.
    private static func compressedStream(_ payload: ArraySlice<UInt8>) throws -> (ArraySlice<UInt8>, String) {
        let magic = Array(payload.prefix(6))
        if magic.starts(with: [0x1f, 0x8b]) { return (payload, "gzip") }
        // xz, lz4 and zstd payloads end with the kernel's 4-byte size,
        // which is not part of the compressed stream.
        if magic.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) { return (payload.dropLast(4), "xz") }
        if magic.starts(with: [0x02, 0x21, 0x4c, 0x18]) { return (payload.dropLast(4), "lz4") }
        if magic.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { return (payload.dropLast(4), "zstd") }
        // lzma "alone" (arm64 zboot's CONFIG_KERNEL_LZMA): xz reads it too.
        if magic.starts(with: [0x5d, 0x00, 0x00]) { return (payload.dropLast(4), "xz") }
        throw BridgeError(VMZ_ERROR_KERNEL, "unsupported payload compression")
    }

    /// The cache directory, created (0700) if needed.
    private enum Lookup {
        /// The entry this process made or found for this version of the file.
        case hit(String)
        /// The file's content, to find or make its entry from.
        case content([UInt8], stat)
    }

    /// The remembered entry (`suffix`) for the file at `path`, else its
    /// content and identity, both from one open descriptor; nil if it
    /// cannot be read.
    private static func lookup(_ path: String, _ suffix: String) -> Lookup? {
        guard let fd = try? openRegularFile(path, VMZ_ERROR_KERNEL, "kernel") else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0, st.st_size < 512 << 20 else { return nil }
        let t0 = monotonicMicroseconds()
        if let target = KernelCacheStore.pointed(st, suffix, magic: magic(suffix)) {
            log(.debug, "kernel cache: \(quoted(path)) -> \(quoted(target)) (warm lookup: \(monotonicMicroseconds() - t0) us)")
            return .hit(target)
        }
        var data = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < data.count {
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            done += n
        }
        return .content(data, st)
    }

    private static func le32(_ d: [UInt8], _ at: Int) -> Int {
        Int(d[at]) | Int(d[at + 1]) << 8 | Int(d[at + 2]) << 16 | Int(d[at + 3]) << 24
    }

    /// Writes `bytes` to a new temporary file; returns its descriptor,
    /// rewound.
    private static func temporary(_ dir: String, _ bytes: ArraySlice<UInt8>?) throws -> (Int32, String) {
        let (fd, name) = try KernelCacheStore.temporary(dir)
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

    /// Decompresses `stream` with `tool -dc` into `target`; `expect`: the
    /// magic the result must start with, if any.
    private static func unpack(
        _ stream: ArraySlice<UInt8>, tool: String, into target: String, directory dir: String, expect: [UInt8]?
    ) throws {
        guard let binary = findExecutable(tool) else {
            throw BridgeError(VMZ_ERROR_KERNEL, "\(tool) is not installed")
        }
        let (input, inputName) = try temporary(dir, stream)
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
        try run(binary, ["-dc"], stdin: input, stdout: output, what: tool)

        var st = stat()
        guard fstat(output, &st) == 0, st.st_size > 0 else {
            throw BridgeError(VMZ_ERROR_KERNEL, "\(tool) produced nothing")
        }
        if let expect {
            var head = [UInt8](repeating: 0, count: expect.count)
            let n = head.withUnsafeMutableBytes { pread(output, $0.baseAddress, $0.count, 0) }
            guard n == expect.count, head == expect else {
                throw BridgeError(VMZ_ERROR_KERNEL, "the decompressed kernel is not in the expected format")
            }
        }
        // Complete, durable files only: another process may be unpacking
        // the same kernel; rename() makes whichever finishes last the
        // cached one (its record follows).
        try KernelCacheStore.commit(output, outputName, as: target, in: dir)
        keep = true
    }

    /// Runs `binary args` with the given stdin and stdout (stderr: the null
    /// device) and waits for it; throws unless it exits with status 0.
    private static func run(_ binary: String, _ args: [String], stdin: Int32, stdout: Int32, what: String) throws {
        #if os(Linux) && !VMZ_TYPECHECK_VZ
        // The bridge's spawner: every other descriptor closed in the child.
        let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { if devnull >= 0 { close(devnull) } }
        var argv: [UnsafeMutablePointer<CChar>?] = ([binary] + args).map { strdup($0) }
        argv.append(nil)
        defer { for p in argv { free(p) } }
        var pid: pid_t = -1
        var pidfd: Int32 = -1
        let rc = vmz_spawn(binary, &argv, [stdin, stdout, devnull], 3, &pid, &pidfd)
        if rc != 0 { throw BridgeError.system("spawn \(what)", rc) }
        close(pidfd)
        let exit = ChildExit.reap(pid)
        guard exit.exitedCleanly else { throw BridgeError(VMZ_ERROR_KERNEL, "\(what) \(exit.description)") }
        #else
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = args
        process.standardInput = FileHandle(fileDescriptor: stdin, closeOnDealloc: false)
        process.standardOutput = FileHandle(fileDescriptor: stdout, closeOnDealloc: false)
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw BridgeError(VMZ_ERROR_KERNEL, "\(binary) cannot be run: \((error as NSError).localizedDescription)")
        }
        process.waitUntilExit()
        guard process.terminationReason == .exit && process.terminationStatus == 0 else {
            let how = process.terminationReason == .exit
                ? "exited with status \(process.terminationStatus)"
                : "was killed by signal \(process.terminationStatus)"
            throw BridgeError(VMZ_ERROR_KERNEL, "\(what) \(how)")
        }
        #endif
    }
}
