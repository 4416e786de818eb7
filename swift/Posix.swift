// Small POSIX helpers shared by the engines, the QMP client and the
// kernel cache: environment, executables, quoting for messages,
// descriptors, Unix socket addresses.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An environment variable; nil when unset or empty.
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let s = String(cString: value)
    return s.isEmpty ? nil : s
}

/// The first executable file `name` in the directories of $PATH.
func findExecutable(_ name: String) -> String? {
    let path = environment("PATH") ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") where !dir.isEmpty {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// Duplicates a descriptor, close-on-exec, above stdio.
func duplicate(_ fd: Int32) throws -> Int32 {
    let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
    if copy < 0 { throw BridgeError.system("fcntl(F_DUPFD_CLOEXEC)", errno, "descriptor \(fd)") }
    return copy
}

/// Calls `body` with a Unix socket address for `path`; nil (without calling
/// it) when the path does not fit in `sockaddr_un`.
func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let fits = withUnsafeMutableBytes(of: &addr.sun_path) { raw -> Bool in
        let bytes = Array(path.utf8)
        guard bytes.count < raw.count else { return false }
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
        return true
    }
    guard fits else { return nil }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}

/// Opens `path` for reading if it is a regular file; otherwise throws
/// `code` saying what it is. The open itself never blocks (O_NONBLOCK,
/// cleared again afterwards): a FIFO swapped in for a validated file would
/// otherwise hang the open until a writer comes.
func openRegularFile(_ path: String, _ code: VMZErrorCode, _ what: String) throws -> Int32 {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
    if fd < 0 {
        let e = errno
        throw BridgeError(code, "\(what) \(quoted(path)) cannot be opened: \(String(cString: strerror(e)))\(descriptorLimitNote(e))")
    }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
        let kind = fileKind(st.st_mode)
        close(fd)
        throw BridgeError(code, "\(what) \(quoted(path)) is not a regular file (it is \(kind))")
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    return fd
}

/// "a FIFO", "a directory", ... for messages.
func fileKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFREG: return "a regular file"
    case S_IFDIR: return "a directory"
    case S_IFIFO: return "a FIFO"
    case S_IFSOCK: return "a socket"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFLNK: return "a symbolic link"
    default: return "of an unknown kind"
    }
}

/// For an error that means "out of descriptors": which limit, its value,
/// and what a VM needs; "" for other errors.
func descriptorLimitNote(_ err: Int32) -> String {
    guard err == EMFILE || err == ENFILE else { return "" }
    if err == ENFILE { return " (the system-wide open file limit is reached)" }
    var limit = rlimit()
    getrlimit(RLIMIT_NOFILE_VALUE, &limit)
    return " (RLIMIT_NOFILE, this process's open-descriptor limit (`ulimit -n`), is \(limit.rlim_cur): "
        + "each VM keeps \(descriptorsPerVM) descriptors open in this process, \(descriptorsWhileStarting) more while "
        + "it starts, and its QEMU needs about \(descriptorsForQEMU) of its own: raise the limit)"
}

/// Descriptors a VM keeps in this process: serial input and output copies,
/// the QMP connection, the pidfd, QEMU's stderr.
let descriptorsPerVM = 5
/// Opened only while a VM starts: kernel, initrd, /dev/null, the stderr
/// pipe's write end, the QMP listener, the spawner's report pipe.
let descriptorsWhileStarting = 7
/// Descriptors QEMU itself opens: 13 measured (q35, TCG, one CPU, no
/// network, QEMU 7.2), plus a margin for CPUs and devices.
let descriptorsForQEMU = 20

#if os(Linux)
private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
#else
private let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
#endif

/// `text` with every occurrence of `target` replaced by `replacement`
/// (the Linux engine does without Foundation).
func replacingAll(_ text: String, _ target: String, _ replacement: String) -> String {
    guard !target.isEmpty else { return text }
    let t = Array(target.utf8), src = Array(text.utf8)
    var out = [UInt8]()
    out.reserveCapacity(src.count)
    var i = 0
    while i < src.count {
        if i + t.count <= src.count && src[i] == t[0] && Array(src[i..<i + t.count]) == t {
            out.append(contentsOf: replacement.utf8)
            i += t.count
        } else {
            out.append(src[i])
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Calls `body` with each line of a file (newline included) until it
/// returns false; nothing when the file cannot be opened.
func forEachLine(ofFile path: String, _ body: (String) -> Bool) {
    guard let f = fopen(path, "re") else { return }
    defer { fclose(f) }
    var line: UnsafeMutablePointer<CChar>?
    var cap = 0
    defer { free(line) }
    while getline(&line, &cap, f) > 0 {
        if !body(String(cString: line!)) { return }
    }
}

/// `fd` must be an open, connected socket of the given type (stream, or
/// datagram: Ethernet frames one per datagram).
func checkConnectedSocket(_ fd: Int32, datagram: Bool, what: String) throws {
    let kind = datagram ? "datagram" : "stream"
    let example = datagram ? "socketpair(AF_UNIX, SOCK_DGRAM)" : "socketpair(AF_UNIX, SOCK_STREAM)"
    var type: Int32 = 0
    var len = socklen_t(MemoryLayout<Int32>.size)
    if getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 {
        let e = errno
        let why = e == EBADF ? "is not open" : e == ENOTSOCK ? "is not a socket" : String(cString: strerror(e))
        throw BridgeError(VMZ_ERROR_DEVICE, "\(what): descriptor \(fd) \(why) (pass a connected \(kind) socket, e.g. from \(example))")
    }
    #if canImport(Glibc)
    let wanted = datagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
    #else
    let wanted = datagram ? SOCK_DGRAM : SOCK_STREAM
    #endif
    guard type == wanted else {
        throw BridgeError(VMZ_ERROR_DEVICE, "\(what): descriptor \(fd) is not a \(kind) socket")
    }
    var addr = sockaddr_storage()
    var alen = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let connected = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &alen) }
    }
    guard connected == 0 else {
        throw BridgeError(VMZ_ERROR_DEVICE, "\(what): socket \(fd) is not connected")
    }
}

#if os(Linux)
/// A new private directory (0700) for a VM's sockets, with a short path
/// (sockaddr_un holds 108 bytes).
func makePrivateDirectory() throws -> String {
    var base = environment("TMPDIR") ?? "/tmp"
    if base.utf8.count > 60 { base = "/tmp" }
    var template = Array("\(base)/vmz-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw BridgeError.system("mkdtemp", errno, base) }
    return String(cString: p)
}

/// A listening Unix stream socket bound at `path`, close-on-exec.
func listenUnix(_ path: String, backlog: Int32, what: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { throw BridgeError.system("socket", errno, what) }
    let bound = withUnixAddress(path) { bind(fd, $0, $1) } ?? -1
    if bound != 0 || listen(fd, backlog) != 0 {
        let e = errno
        close(fd)
        throw BridgeError.system("bind/listen", e, what)
    }
    return fd
}
#endif

/// Microseconds on the monotonic clock (for measurements in log lines).
func monotonicMicroseconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int(ts.tv_sec) * 1_000_000 + Int(ts.tv_nsec) / 1000
}
