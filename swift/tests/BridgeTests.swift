// Unit tests of the bridge's Swift internals that need no VM: the QMP JSON
// reader, quoting, the engine-independent config checks (disk formats and
// ABI arrays included), the QEMU engine's vsock backend choice and
// arguments (Linux) and the kernel
// cache (both engines' paths: bzImage payloads and gzip-compressed files). Built and run
// by scripts/swift-tests.sh (swiftc, no package manager); never part of the
// library (build.rs compiles only swift/*.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

var passed = 0
var failed = 0

func check(_ condition: @autoclosure () -> Bool, _ what: String, line: Int = #line) {
    if condition() {
        passed += 1
    } else {
        failed += 1
        print("FAILED (line \(line)): \(what)")
    }
}

func parse(_ s: String) -> JSON? { JSON.parse(Array(s.utf8)) }

func testJSON() {
    let greeting = parse(#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}"#)
    check(greeting?["QMP"]?["version"]?["qemu"]?["major"] == .number(7), "nested objects and numbers")
    let event = parse(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#)
    check(event?["event"]?.string == "SHUTDOWN", "event name")
    check(event?["data"]?["guest"]?.bool == true, "booleans")
    check(event?["data"]?["reason"]?.string == "guest-shutdown", "strings")
    check(parse(#"{"return": {}}"#)?["return"] == .object([:]), "empty object")
    check(parse(#"[1, -2.5e3, null, false, "x"]"#) == .array([.number(1), .number(-2500), .null, .bool(false), .string("x")]), "arrays and literals")
    check(parse(#""a\"b\\c\n\tA\u00e9\u20ac""#) == .string("a\"b\\c\n\tA\u{e9}\u{20ac}"), "escapes")
    check(parse("  {\"a\" : 1 }  ") == .object(["a": .number(1)]), "white space")
    for bad in ["", "{", "}", "{\"a\"}", "{\"a\":}", "[1,]", "[1 2]", "\"open", "tru", "{\"a\":1}x", "{1:2}", "\"\\u12\""] {
        check(parse(bad) == nil, "rejects \(bad.debugDescription)")
    }
    let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
    check(parse(deep) == nil, "nesting depth is bounded")
    let ok = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
    check(parse(ok) != nil, "moderate nesting is fine")
}

func testQuoting() {
    for s in ["plain", "quote \" and \\ backslash", "new\nline\ttab\r", "\u{1}\u{1f}\u{7f}", "é€😀"] {
        check(parse(quoted(s)) == .string(s), "quoted round trip of \(s.debugDescription)")
    }
    check(quoted("a\"b\n") == "\"a\\\"b\\n\"", "quoted escapes quotes and newlines")
    check(quoted("\u{7}\u{7f}") == "\"\\u0007\\u007f\"", "quoted escapes control characters and DEL")
}

func testConfig() {
    let limits = Limits(minCPUs: 1, maxCPUs: 4, minMemory: 64 * mib, maxMemory: 1024 * mib, maxCommandLine: 16)
    let kernel = strdup("/proc/self/exe")!
    defer { free(kernel) }
    func config(_ edit: (inout VMZConfig) -> Void) -> VMZConfig {
        var c = VMZConfig()
        c.struct_size = UInt32(MemoryLayout<VMZConfig>.size)
        c.kernel_path = UnsafePointer(kernel)
        c.read_pipe_fd = VMZ_FD_DEFAULT
        c.write_pipe_fd = VMZ_FD_DEFAULT
        c.cpu_count = 1
        c.memory_size = 64 * mib
        edit(&c)
        return c
    }
    func code(_ c: VMZConfig) -> VMZErrorCode? {
        var c = c
        do {
            _ = try ParsedConfig(&c, limits: limits)
            return nil
        } catch let e as BridgeError {
            return e.code
        } catch {
            return VMZ_ERROR_INTERNAL
        }
    }
    check(code(config { _ in }) == nil, "a valid config")
    check(code(config { $0.struct_size = 8 }) == VMZ_ERROR_INVALID_ARGUMENT, "short struct")
    check(code(config { $0.cpu_count = 0 }) == VMZ_ERROR_CPU_COUNT, "0 CPUs")
    check(code(config { $0.cpu_count = 4 }) == nil, "max CPUs")
    check(code(config { $0.cpu_count = 5 }) == VMZ_ERROR_CPU_COUNT, "max+1 CPUs")
    check(code(config { $0.memory_size = 63 * mib }) == VMZ_ERROR_MEMORY_SIZE, "below min memory")
    check(code(config { $0.memory_size = 64 * mib + 1 }) == VMZ_ERROR_MEMORY_SIZE, "not whole MiB")
    check(code(config { $0.memory_size = 1024 * mib }) == nil, "max memory")
    check(code(config { $0.accelerator = 7 }) == VMZ_ERROR_ACCELERATOR, "unknown accelerator")
    check(code(config { $0.read_pipe_fd = -3 }) == VMZ_ERROR_SERIAL_FD, "negative descriptor")
    let long = strdup(String(repeating: "x", count: 17))!
    defer { free(long) }
    check(code(config { $0.command_line = UnsafePointer(long) }) == VMZ_ERROR_COMMAND_LINE, "command line limit")
    check(code(config { $0.kernel_path = nil }) == VMZ_ERROR_INVALID_ARGUMENT, "NULL kernel")
    let dir = strdup("/")!
    defer { free(dir) }
    check(code(config { $0.kernel_path = UnsafePointer(dir) }) == VMZ_ERROR_KERNEL, "a directory as kernel")
    check(code(config { $0.boot_options = 2 }) == VMZ_ERROR_INVALID_ARGUMENT, "unknown boot option bits")
    check(code(config { $0.struct_size = UInt32(VMZ_CONFIG_SIZE_V1); $0.boot_options = 2 }) == nil,
          "an ABI 1 struct: boot_options is beyond it and not read")
    var plain = config { _ in }
    var fast = config { $0.boot_options = UInt32(VMZ_BOOT_FAST_OPTIONS) }
    var roomy = limits
    roomy.maxCommandLine = 2047
    check((try? ParsedConfig(&plain, limits: roomy))?.effectiveCommandLine == "", "no options unasked")
    check((try? ParsedConfig(&fast, limits: roomy))?.effectiveCommandLine == "cryptomgr.notests no_timer_check",
          "fast options appended")
    let short = strdup("0123456789")!
    defer { free(short) }
    check(code(config { $0.command_line = UnsafePointer(short) }) == nil, "10 bytes fit in 16")
    check(code(config { $0.command_line = UnsafePointer(short); $0.boot_options = UInt32(VMZ_BOOT_FAST_OPTIONS) })
          == VMZ_ERROR_COMMAND_LINE, "the limit counts the appended options")
    check(Registry.errors.count == 0, "no error was handed to C")
}

func testDiskFormats() {
    func header(_ bytes: [UInt8], at offset: Int = 0) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        h.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        return h
    }
    check(Disk.detectFormat(header([])) == nil, "zeros are raw")
    check(Disk.detectFormat(header(Array("QFI".utf8) + [0xfb, 0, 0, 0, 3])) == "qcow2", "qcow2")
    check(Disk.detectFormat(header(Array("QFI".utf8))) == nil, "a partial qcow2 magic is raw")
    check(Disk.detectFormat(header(Array("KDMV".utf8))) == "VMDK", "VMDK sparse extent")
    check(Disk.detectFormat(header(Array("# Disk DescriptorFile".utf8))) == "VMDK", "VMDK descriptor")
    check(Disk.detectFormat(header([0x7f, 0x10, 0xda, 0xbe], at: 0x40)) == "VDI", "VDI")
    check(Disk.detectFormat(header(Array("vhdxfile".utf8))) == "VHDX", "VHDX")
    check(Disk.detectFormat(header(Array("QED".utf8) + [0])) == "QED", "QED")
    check(Disk.detectFormat(Array("QF".utf8)) == nil, "a short file is raw")
}

func testABIArray() {
    // An older caller's element (8 bytes: struct_size and a 4-byte field)
    // read as a bigger struct: the rest is zero.
    struct Wide { var size: UInt32; var a: UInt32; var b: UInt64 }
    var old: [UInt32] = [8, 7, 8, 9]
    let wide = old.withUnsafeBytes { try? readABIArray($0.baseAddress, count: 2, as: Wide.self, minimumSize: 8, what: "x") }
    check(wide?.map(\.a) == [7, 9] && wide?.map(\.b) == [0, 0], "older elements: stepped by struct_size, tail zero")
    old[2] = 12
    let mixed = old.withUnsafeBytes { try? readABIArray($0.baseAddress, count: 2, as: Wide.self, minimumSize: 8, what: "x") }
    check(mixed == nil, "elements of different sizes are refused")
    let none = try? readABIArray(nil, count: 0, as: Wide.self, minimumSize: 8, what: "x")
    check(none?.isEmpty == true, "NULL with count 0 is empty")
    check((try? readABIArray(nil, count: 1, as: Wide.self, minimumSize: 8, what: "x")) == nil, "NULL with a count is refused")
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let f = fopen(path, "wb")!
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

func readBytes(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
        if n == 0 { return out }
        out += buf[0..<n]
    }
}

func shell(_ command: String) -> Bool { system(command) == 0 }

/// The files in `dir`, without the kernel cache's bookkeeping (entry
/// records `*.rec` and source pointers `*.ptr`).
func filesIn(_ dir: String) -> [String] {
    guard let d = opendir(dir) else { return [] }
    defer { closedir(d) }
    var names = [String]()
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." && !name.hasSuffix(".rec") && !name.hasSuffix(".ptr") { names.append(name) }
    }
    return names.sorted()
}

func inode(_ path: String) -> UInt64? {
    var st = stat()
    return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
}

func testKernelCache() {
    var template = Array("/tmp/vmz-kcache-test-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { return check(false, "mkdtemp") }
    let root = String(cString: made)
    defer { _ = shell("rm -rf '\(root)'") }
    let cache = root + "/cache/kernels"
    setenv("VMZ_KERNEL_CACHE", cache, 1)
    defer { unsetenv("VMZ_KERNEL_CACHE") }

    // The macOS engine's path: a gzip-compressed arm64 Image (whole file).
    var image = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
    image.replaceSubrange(0x38..<0x3c, with: Array("ARM".utf8) + [0x64])
    writeFile(root + "/Image", image)
    check(shell("gzip -n -c '\(root)/Image' > '\(root)/Image.gz'"), "gzip the fake Image")
    let first = try? KernelCache.gunzipped(root + "/Image.gz")
    check(first != nil && readBytes(first!) == image, "gunzipped: the cached copy is the original Image")
    check(first?.hasPrefix(cache + "/") == true && first?.hasSuffix(".Image") == true, "gunzipped: in the cache dir")
    let second = try? KernelCache.gunzipped(root + "/Image.gz")
    check(second == first && inode(second ?? "") == inode(first ?? "-"), "gunzipped: the second call reuses the entry")
    check(filesIn(cache).count == 1, "gunzipped: one entry, no leftovers")
    // The process remembers the file, but not an entry that is gone.
    if let first { unlink(first) }
    let again = try? KernelCache.gunzipped(root + "/Image.gz")
    check(again == first && readBytes(again ?? "") == image, "gunzipped: a deleted entry is made again")
    // A new version of the file is a new entry.
    var changed = image
    changed[0x1000] ^= 0xff
    writeFile(root + "/Image", changed)
    check(shell("gzip -n -c '\(root)/Image' > '\(root)/Image.gz.new' && mv '\(root)/Image.gz.new' '\(root)/Image.gz'"),
          "gzip the changed Image")
    let third = try? KernelCache.gunzipped(root + "/Image.gz")
    check(third != nil && third != first && readBytes(third!) == changed, "gunzipped: a changed file, a new entry")
    unlink(third ?? "")

    // Broken input: a typed error, nothing left in the cache.
    let gz = readBytes(root + "/Image.gz") ?? []
    writeFile(root + "/broken.gz", Array(gz.prefix(gz.count / 2)))
    do {
        _ = try KernelCache.gunzipped(root + "/broken.gz")
        check(false, "a truncated gzip file is refused")
    } catch let e as BridgeError {
        check(e.code == VMZ_ERROR_KERNEL && e.message.contains("cannot be decompressed"), "truncated gzip: \(e.message)")
    } catch { check(false, "unexpected error \(error)") }
    check(filesIn(cache).count == 1, "a failed decompression leaves no file behind")
    check((try? KernelCache.gunzipped(root + "/Image")) == nil, "an uncompressed file is not gunzipped")
    check((try? KernelCache.gunzipped(root + "/missing")) == nil, "a missing file is an error")

    // The Linux engine's path: a bzImage whose payload is an ELF file.
    func bzImage(payload: [UInt8], name: String, padTo size: Int = 0) -> String {
        var setup = [UInt8](repeating: 0, count: 5 * 512)  // boot sector + 4 setup sectors
        setup[0x1f1] = 4
        setup.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        func put32(_ at: Int, _ v: Int) { for i in 0..<4 { setup[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        put32(0x248, 0x40)  // payload offset from the protected-mode code
        put32(0x24c, payload.count)
        let path = root + "/" + name
        var file = setup + [UInt8](repeating: 0x90, count: 0x40) + payload + [0, 0, 0, 0]
        if file.count < size { file += [UInt8](repeating: 0, count: size - file.count) }
        writeFile(path, file)
        return path
    }
    let elf = [0x7f, 0x45, 0x4c, 0x46] + image
    writeFile(root + "/vmlinux", elf)
    check(shell("gzip -n -c '\(root)/vmlinux' > '\(root)/vmlinux.gz'"), "gzip the fake vmlinux")
    let bz = bzImage(payload: readBytes(root + "/vmlinux.gz") ?? [], name: "bzImage")
    let unpacked = KernelCache.uncompressed(for: bz)
    check(unpacked != nil && readBytes(unpacked!) == elf, "uncompressed(for:): the payload, unpacked")
    check(unpacked?.hasSuffix(".vmlinux") == true && filesIn(cache).count == 2, "uncompressed(for:): a second entry")
    check(KernelCache.uncompressed(for: bz) == unpacked, "uncompressed(for:): reused")
    let notELF = bzImage(payload: gz, name: "bzImage-not-elf")
    check(KernelCache.uncompressed(for: notELF) == nil, "a payload that is not ELF boots as it is (nil)")
    check(KernelCache.uncompressed(for: root + "/vmlinux") == nil, "an ELF vmlinux needs nothing (nil)")
    check(filesIn(cache).count == 2, "no leftovers after the refusals")

    // arm64's EFI zboot image: the header's payload, gzip (as is) or zstd
    // (with the 4-byte size Linux appends), unpacked to the Image.
    func zboot(payload: [UInt8], compression: String, name: String) -> String {
        var header = [UInt8](repeating: 0, count: 64)
        header.replaceSubrange(0..<2, with: Array("MZ".utf8))
        header.replaceSubrange(4..<8, with: Array("zimg".utf8))
        func put32(_ at: Int, _ v: Int) { for i in 0..<4 { header[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        put32(8, 64)
        put32(12, payload.count)
        header.replaceSubrange(24..<24 + compression.utf8.count, with: Array(compression.utf8))
        let path = root + "/" + name
        writeFile(path, header + payload + [UInt8](repeating: 0, count: 512))  // the EFI stub's code follows
        return path
    }
    let zGzip = zboot(payload: readBytes(root + "/Image.gz") ?? [], compression: "gzip", name: "vmlinuz-gzip.efi")
    check((try? KernelFormat(path: zGzip)) == .efiZboot, "zboot: recognised")
    let fromGzip = try? KernelCache.unzbooted(zGzip)
    check(fromGzip != nil && readBytes(fromGzip!) == changed, "unzbooted: the gzip payload, unpacked")
    check(shell("zstd -q -c '\(root)/Image' > '\(root)/Image.zst'"), "zstd the fake Image")
    let zZstd = zboot(
        payload: (readBytes(root + "/Image.zst") ?? []) + [0, 0, 0, 0], compression: "zstd22", name: "vmlinuz-zstd.efi")
    let fromZstd = try? KernelCache.unzbooted(zZstd)
    check(fromZstd != nil && readBytes(fromZstd!) == changed, "unzbooted: the zstd payload (size appended), unpacked")
    let before = filesIn(cache).count
    writeFile(root + "/short.efi", Array((readBytes(zGzip) ?? []).prefix(100)))
    do {
        _ = try KernelCache.unzbooted(root + "/short.efi")
        check(false, "a zboot image whose payload is cut off is refused")
    } catch let e as BridgeError {
        check(e.code == VMZ_ERROR_KERNEL && e.message.contains("is not inside the file"), "cut zboot: \(e.message)")
    } catch { check(false, "unexpected error \(error)") }
    check((try? KernelCache.unzbooted(root + "/Image")) == nil, "an Image is not a zboot image")
    check(filesIn(cache).count == before, "no leftovers after the zboot refusals")

    // The key is the content, not the size: two kernels of the same size
    // are two entries, each with its own payload.
    func gzipped(_ bytes: [UInt8], _ name: String) -> [UInt8] {
        writeFile(root + "/" + name, bytes)
        check(shell("gzip -n -f '\(root)/\(name)'"), "gzip \(name)")
        return readBytes(root + "/" + name + ".gz") ?? []
    }
    var elfB = elf
    elfB[0x2000] ^= 0x5a
    let (gzA, gzB) = (gzipped(elf, "a.vmlinux"), gzipped(elfB, "b.vmlinux"))
    let size = max(gzA.count, gzB.count) + 5 * 512 + 0x40 + 4 + 64
    let sameSizeA = bzImage(payload: gzA, name: "bzImage-a", padTo: size)
    let sameSizeB = bzImage(payload: gzB, name: "bzImage-b", padTo: size)
    let entryA = KernelCache.uncompressed(for: sameSizeA)
    let entryB = KernelCache.uncompressed(for: sameSizeB)
    check(entryA != nil && entryB != nil && entryA != entryB,
          "same size, different content: two entries (\(entryA ?? "nil"), \(entryB ?? "nil"))")
    check(readBytes(entryA ?? "") == elf && readBytes(entryB ?? "") == elfB, "each entry holds its own kernel")

    // Another process's entry is used as it is: made by a child process
    // (this binary, `--uncompressed PATH`), then found here, where this
    // process has never seen the file (no in-process memo): same file, not
    // unpacked again (same inode; a new unpack would rename a new file in).
    var elfC = elf
    elfC[0x3000] ^= 0xa5
    let other = bzImage(payload: gzipped(elfC, "c.vmlinux"), name: "bzImage-c")
    let entriesBefore = filesIn(cache)
    let childOut = root + "/child-entry"
    let ran = shell("'\(CommandLine.arguments[0])' --uncompressed '\(other)' > '\(childOut)'")
    let childEntry = String(decoding: readBytes(childOut) ?? [], as: UTF8.self)
        .split(separator: "\n").first.map(String.init) ?? ""
    check(ran && childEntry.hasPrefix(cache + "/") && filesIn(cache).count == entriesBefore.count + 1,
          "the child process made an entry: \(childEntry.debugDescription)")
    let childInode = inode(childEntry)
    let here = KernelCache.uncompressed(for: other)
    check(here == childEntry && childInode != nil && inode(here ?? "") == childInode,
          "this process reuses the other process's entry (inode \(childInode ?? 0) -> \(inode(here ?? "") ?? 0))")
}

func testRandomMAC() {
    var seen = Set<String>()
    for _ in 0..<100 {
        let mac = Network.randomMAC()
        seen.insert(mac)
        let first = UInt8(mac.prefix(2), radix: 16) ?? 0xff
        check(first & 0x03 == 0x02, "\(mac): locally administered unicast")
        check((try? Network.parseMAC(mac, what: "test")) == mac, "\(mac): a MAC the config accepts, as written")
    }
    check(seen.count == 100, "random MACs differ (\(seen.count) of 100)")
}

#if os(Linux)
/// The QEMU engine's vsock choices and arguments. The kernel backend
/// (vhost-vsock) cannot run on our machines (no /dev/vhost-vsock): these
/// checks are all it gets here.
func testVsockBackend() {
    func backend(_ openErrno: Int32?, _ daemon: String?) -> String {
        do {
            switch try QEMUVsock.chooseBackend(kernelOpenErrno: openErrno, daemon: daemon) {
            case .kernel: return "kernel"
            case .user(let d): return "user \(d)"
            }
        } catch let e as BridgeError {
            return "error \(e.code.rawValue): \(e.message)"
        } catch {
            return "other"
        }
    }
    check(backend(nil, "/bin/vhd") == "kernel", "a usable /dev/vhost-vsock wins over the daemon")
    check(backend(nil, nil) == "kernel", "a usable /dev/vhost-vsock needs no daemon")
    check(backend(ENOENT, "/bin/vhd") == "user /bin/vhd", "no device: the daemon")
    check(backend(EACCES, "/bin/vhd") == "user /bin/vhd", "a device we may not open: the daemon")
    let none = backend(ENOENT, nil)
    check(none.hasPrefix("error \(VMZ_ERROR_ENGINE_UNAVAILABLE.rawValue)") && none.contains("No such file or directory")
          && none.contains("cargo install vhost-device-vsock"), "neither: says why and how to fix it (\(none))")

    check(QEMUVsock.qemuArguments(backend: .kernel, cid: 42, dir: "/x")
          == ["-device", "vhost-vsock-pci,guest-cid=42"], "kernel backend: vhost-vsock-pci with the guest's cid")
    check(QEMUVsock.qemuArguments(backend: .user(daemon: "/bin/vhd"), cid: 42, dir: "/run/vm")
          == ["-chardev", "socket,id=vsock0,path=/run/vm/vhost.sock", "-device", "vhost-user-vsock-pci,chardev=vsock0"],
          "user backend: vhost-user-vsock-pci on the daemon's socket")
    check(QEMUVsock.daemonArguments(daemon: "/bin/vhd", cid: 7, dir: "/run/vm")
          == ["/bin/vhd", "--guest-cid", "7", "--socket", "/run/vm/vhost.sock", "--uds-path", "/run/vm/vsock"],
          "the daemon's command line")

    var cids = Set<UInt32>()
    for pid: pid_t in [1, 2, 4_194_304, Int32.max] {
        for vm: UInt32 in 1...50 { cids.insert(QEMUVsock.automaticCID(pid: pid, vm: vm)) }
    }
    check(cids.count == 200, "automatic cids differ between VMs and processes (\(cids.count) of 200)")
    check(cids.allSatisfy { $0 >= 3 && $0 < 0xffff_ffff }, "automatic cids avoid 0-2 and VMADDR_CID_ANY")
    check(QEMUVsock.automaticCID(pid: 0x7fff_ffff, vm: UInt32.max) >= 3, "no overflow trap at the extremes")

    check(QEMUVsockKernel.sockaddrSize == 16, "struct sockaddr_vm is 16 bytes")
    for e in [ECONNREFUSED, ECONNRESET, ETIMEDOUT, EAGAIN] {
        check(QEMUVsockKernel.connectError(port: 5, errno: e).code == VMZ_ERROR_CONNECTION_REFUSED,
              "connect errno \(e): nobody listens")
    }
    check(QEMUVsockKernel.connectError(port: 5, errno: EACCES).code != VMZ_ERROR_CONNECTION_REFUSED,
          "other errnos are system errors")
}
#endif
func testUserNamespaceRefusal() {
    #if os(Linux)
    func refusal(_ euid: uid_t, _ files: [String: String]) -> String? {
        Virtiofsd.userNamespaceRefusal(euid: euid, read: { files[$0] })
    }
    let forbidding = [
        "/proc/sys/user/max_user_namespaces": "0",
        "/proc/sys/kernel/unprivileged_userns_clone": "0",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1",
    ]
    for (file, value) in forbidding {
        check(refusal(1000, [file: value]) == "\(file) is \(value)", "a user is refused where \(file) is \(value)")
        check(refusal(0, [file: value]) == nil, "root needs no user namespace (\(file) is \(value))")
    }
    check(refusal(1000, [:]) == nil, "a user where no sysctl forbids them")
    check(refusal(1000, [
        "/proc/sys/user/max_user_namespaces": "15000",
        "/proc/sys/kernel/unprivileged_userns_clone": "1",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "0",
    ]) == nil, "a user where every sysctl allows them")
    #endif
}

@main
struct BridgeTests {
    static func main() {
        // The child process of testKernelCache: prints the entry it finds
        // or makes for a kernel.
        if CommandLine.arguments.count == 3 && CommandLine.arguments[1] == "--uncompressed" {
            print(KernelCache.uncompressed(for: CommandLine.arguments[2]) ?? "nil")
            exit(0)
        }
        testJSON()
        testQuoting()
        testConfig()
        testDiskFormats()
        testABIArray()
        testRandomMAC()
        #if os(Linux)
        testVsockBackend()
        #endif
        testUserNamespaceRefusal()
        // Under valgrind 3.19 no process can be started (it lacks pidfd_open):
        // scripts/valgrind.sh sets VMZ_SWIFT_TESTS_NO_SPAWN.
        if getenv("VMZ_SWIFT_TESTS_NO_SPAWN") == nil {
            testKernelCache()
        } else {
            print("skipped: the kernel cache tests (they start gzip)")
        }
        print("\(passed) passed, \(failed) failed")
        exit(failed == 0 ? 0 : 1)
    }
}
