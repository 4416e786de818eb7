// The QEMU engine's vsock device.
//
// This machine class has no /dev/vhost-vsock, so vsock is the user-space
// vhost-user backend `vhost-device-vsock` (rust-vmm; `cargo install
// vhost-device-vsock`, as scripts/setup-debian.sh does), one daemon per VM,
// started by vmz_spawn (it gets SIGKILL when the process that started it
// dies, however it dies) and killed when QEMU ends. QEMU talks to it
// through `vhost-user-vsock-pci` on a Unix socket, and guest memory must be
// shareable (QEMUSharedMemory.swift). Every socket lives in the VM's
// private directory (0700), removed when the VM ends:
//   vhost.sock   QEMU <-> daemon (vhost-user control)
//   vsock        the host side: connect, send "CONNECT <port>\n", read
//                "OK <n>\n", then the stream is the guest's connection
//   vsock_<P>    the host listens on port P: the daemon connects here for
//                each connection the guest makes to CID 2, port P
// Where /dev/vhost-vsock is usable, QEMU's in-kernel `vhost-vsock-pci` is
// used instead (QEMUVsockKernel below): AF_VSOCK sockets on the host.
// UNTESTED here (no such device on our machines).

#if os(Linux)
import Glibc
import Dispatch

/// How a VM's vsock device is backed.
enum QEMUVsockBackend {
    /// vhost-device-vsock at this path.
    case user(daemon: String)
    /// The kernel's vhost-vsock.
    case kernel
}

final class QEMUVsock {
    let cid: UInt32
    let backend: QEMUVsockBackend
    private let queue: DispatchQueue
    /// The private directory of the sockets (user backend).
    private var dir: String?
    private var daemonPid: pid_t = -1
    private var daemonPidfd: Int32 = -1
    /// Listening sockets by port, each watched on `queue`.
    private var listeners: [UInt32: DispatchSourceRead] = [:]

    private static let counterLock = Lock()
    private static var counter: UInt32 = 0

    /// How long the daemon may take to listen on its socket.
    private static let daemonStartTimeout = 10.0

    // MARK: Choice of backend (validation)

    /// The backend on this host, or why there is none.
    static func backend() throws -> QEMUVsockBackend {
        let fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC)
        let openErrno: Int32? = fd >= 0 ? nil : errno
        if fd >= 0 { close(fd) }
        // The daemon is looked for only when the kernel's device is not
        // usable (as before: no PATH search when it is not needed).
        return try chooseBackend(kernelOpenErrno: openErrno, daemon: openErrno == nil ? nil : findDaemon())
    }

    /// The choice, given how opening /dev/vhost-vsock went (nil: it
    /// opened) and the daemon found, if any: the kernel's device first.
    /// Pure, for the unit tests (swift/tests).
    static func chooseBackend(kernelOpenErrno: Int32?, daemon: String?) throws -> QEMUVsockBackend {
        guard let openErrno = kernelOpenErrno else { return .kernel }
        if let daemon { return .user(daemon: daemon) }
        throw BridgeError(
            VMZ_ERROR_ENGINE_UNAVAILABLE,
            "vsock needs /dev/vhost-vsock (not usable here: \(String(cString: strerror(openErrno)))) or the user-space backend vhost-device-vsock, which was not found on PATH nor in ~/.cargo/bin (install it with `cargo install vhost-device-vsock`, as scripts/setup-debian.sh does, or set VMZ_VHOST_DEVICE_VSOCK)"
        )
    }

    /// VMZ_VHOST_DEVICE_VSOCK, else vhost-device-vsock on PATH, else in
    /// cargo's bin directory (where `cargo install` puts it).
    private static func findDaemon() -> String? {
        if let env = environment("VMZ_VHOST_DEVICE_VSOCK") {
            return access(env, X_OK) == 0 ? env : nil
        }
        if let found = findExecutable("vhost-device-vsock") { return found }
        let cargoHome = environment("CARGO_HOME") ?? (environment("HOME").map { $0 + "/.cargo" } ?? "")
        let candidate = cargoHome + "/bin/vhost-device-vsock"
        return !cargoHome.isEmpty && access(candidate, X_OK) == 0 ? candidate : nil
    }

    static func validate(_ config: ParsedConfig) throws {
        guard config.vsockCID != 0 else { return }
        _ = try backend()
    }

    // MARK: Life cycle

    init(config: ParsedConfig, queue: DispatchQueue) throws {
        backend = try QEMUVsock.backend()
        self.queue = queue
        // Made now, so that the host can listen before the VM starts.
        if case .user = backend { dir = try makePrivateDirectory() }
        if config.vsockCID != VMZ_VSOCK_CID_AUTO {
            cid = config.vsockCID
        } else {
            let n = QEMUVsock.counterLock.withLock { () -> UInt32 in
                QEMUVsock.counter &+= 1
                return QEMUVsock.counter
            }
            cid = QEMUVsock.automaticCID(pid: getpid(), vm: n)
        }
    }

    /// The context id of this process's `vm`-th VM: each VM of a process
    /// its own (the kernel backend needs them unique host-wide: the process
    /// id keeps processes apart), never 0-2 (reserved) nor 0xffffffff.
    static func automaticCID(pid: pid_t, vm: UInt32) -> UInt32 {
        3 + (UInt32(truncatingIfNeeded: pid) &* 1024 &+ vm) % 0x7fff_0000
    }

    deinit { shutdown() }

    /// Whether guest memory must be shareable (a vhost-user backend).
    var needsSharedMemory: Bool {
        if case .user = backend { return true }
        return false
    }

    /// QEMU's arguments for the device (after `start`).
    var qemuArguments: [String] { QEMUVsock.qemuArguments(backend: backend, cid: cid, dir: dir ?? "") }

    /// QEMU's arguments for a device of `backend` (the user backend's
    /// sockets in `dir`). Pure, for the unit tests.
    static func qemuArguments(backend: QEMUVsockBackend, cid: UInt32, dir: String) -> [String] {
        switch backend {
        case .kernel:
            return ["-device", "vhost-vsock-pci,guest-cid=\(cid)"]
        case .user:
            return [
                "-chardev", "socket,id=vsock0,path=\(dir + "/vhost.sock")",
                "-device", "vhost-user-vsock-pci,chardev=vsock0",
            ]
        }
    }

    /// The user backend's command line. Pure, for the unit tests.
    static func daemonArguments(daemon: String, cid: UInt32, dir: String) -> [String] {
        [daemon, "--guest-cid", "\(cid)", "--socket", dir + "/vhost.sock", "--uds-path", dir + "/vsock"]
    }

    /// Starts the daemon (user backend) and waits until it listens.
    func start() throws {
        guard case .user(let daemon) = backend else { return }
        guard let dir else { throw BridgeError(VMZ_ERROR_INVALID_STATE, "the vsock device was shut down") }
        let logPath = dir + "/daemon.log"
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            if logFD >= 0 { close(logFD) }
            if devnull >= 0 { close(devnull) }
        }
        guard logFD >= 0, devnull >= 0 else { throw BridgeError.system("open", errno, "vsock daemon's log") }
        let args = QEMUVsock.daemonArguments(daemon: daemon, cid: cid, dir: dir)
        log(.debug, "spawning: \(args.map(quoted).joined(separator: " "))")
        var cArgs = args.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        let rc = vmz_spawn(daemon, &cArgs, [devnull, logFD, logFD], 3, &daemonPid, &daemonPidfd)
        if rc != 0 {
            throw BridgeError(VMZ_ERROR_START_FAILED, "cannot run the vsock daemon \(daemon): \(String(cString: strerror(rc)))")
        }
        log(.info, "vsock daemon started, pid \(daemonPid), guest cid \(cid)")
        // QEMU connects once, at start: the socket must be listening first.
        let deadline = monotonicSeconds() + QEMUVsock.daemonStartTimeout
        while !QEMUVsock.isListening(dir + "/vhost.sock") {
            var status: Int32 = 0
            if waitpid(daemonPid, &status, WNOHANG) == daemonPid {
                daemonPid = -1
                throw BridgeError(VMZ_ERROR_START_FAILED, "the vsock daemon \(daemon) exited at start: \(daemonLog())")
            }
            if monotonicSeconds() > deadline {
                throw BridgeError(
                    VMZ_ERROR_START_FAILED,
                    "the vsock daemon \(daemon) did not listen within \(Int(QEMUVsock.daemonStartTimeout)) s: \(daemonLog())")
            }
            usleep(5_000)
        }
    }

    private func daemonLog() -> String {
        guard let dir, let f = fopen(dir + "/daemon.log", "re") else { return "(no output)" }
        defer { fclose(f) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = fread(&buf, 1, buf.count, f)
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        return text.isEmpty ? "(no output)" : text
    }

    /// Whether a Unix socket is bound at `path` and listening
    /// (/proc/net/unix: flags 00010000 is __SO_ACCEPTCON).
    private static func isListening(_ path: String) -> Bool {
        var found = false
        forEachLine(ofFile: "/proc/net/unix") { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            found = fields.count >= 8 && fields[7].hasPrefix(path) && fields[7].count <= path.count + 1
                && fields[3] == "00010000"
            return !found
        }
        return found
    }

    /// Kills the daemon, closes the listeners, removes the directory.
    /// Idempotent; on the queue (or from deinit).
    func shutdown() {
        for (_, source) in listeners { source.cancel() }
        listeners = [:]
        if daemonPid > 0 {
            kill(daemonPid, SIGKILL)
            var status: Int32 = 0
            while waitpid(daemonPid, &status, 0) < 0 && errno == EINTR {}
            log(.debug, "vsock daemon pid \(daemonPid) ended")
            daemonPid = -1
        }
        if daemonPidfd >= 0 {
            close(daemonPidfd)
            daemonPidfd = -1
        }
        if let dir {
            removeDirectory(dir)
            self.dir = nil
        }
    }

    /// Removes the private directory and the sockets in it.
    private func removeDirectory(_ dir: String) {
        if let d = opendir(dir) {
            while let entry = readdir(d) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
                }
                if name != "." && name != ".." { unlink(dir + "/" + name) }
            }
            closedir(d)
        }
        rmdir(dir)
    }

    // MARK: Connections

    /// Connects to the guest's `port`; `completion` once, on the queue.
    /// The handshake runs off the queue.
    func connect(port: UInt32, timeout: Double, completion: @escaping (Result<Int32, BridgeError>) -> Void) {
        let queue = self.queue
        let work: () -> Result<Int32, BridgeError>
        switch backend {
        case .kernel:
            let cid = self.cid
            work = { QEMUVsockKernel.connect(cid: cid, port: port, timeout: timeout) }
        case .user:
            guard let dir else {
                completion(.failure(BridgeError(VMZ_ERROR_INVALID_STATE, "the vsock device is not running")))
                return
            }
            let path = dir + "/vsock"
            work = { QEMUVsock.handshake(path: path, port: port, timeout: timeout) }
        }
        DispatchQueue.global().async {
            let result = work()
            queue.async { completion(result) }
        }
    }

    /// The user backend's connection protocol (blocking, bounded).
    private static func handshake(path: String, port: UInt32, timeout: Double) -> Result<Int32, BridgeError> {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .failure(BridgeError.system("socket", errno, "vsock")) }
        let connected = withUnixAddress(path) { Glibc.connect(fd, $0, $1) } ?? -1
        if connected != 0 {
            let e = errno
            close(fd)
            return .failure(BridgeError.system("connect", e, "the vsock daemon's socket"))
        }
        let request = Array("CONNECT \(port)\n".utf8)
        if !writeAll(fd, request) {
            let e = errno
            close(fd)
            return .failure(BridgeError.system("write", e, "vsock CONNECT"))
        }
        // The answer, byte by byte: what follows its newline is the guest's.
        var answer = [UInt8]()
        let deadline = monotonicSeconds() + timeout
        while answer.last != 0x0a {
            let left = deadline - monotonicSeconds()
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = left > 0 ? poll(&pfd, 1, Int32(left * 1000) + 1) : 0
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 {
                close(fd)
                return .failure(BridgeError(
                    VMZ_ERROR_CONNECTION_REFUSED,
                    "vsock port \(port): the guest did not answer within \(timeout) s (is its vsock driver loaded?)"))
            }
            var byte: UInt8 = 0
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || answer.count > 64 {
                close(fd)
                return .failure(BridgeError(VMZ_ERROR_CONNECTION_REFUSED, "vsock port \(port): nobody listens there in the guest"))
            }
            answer.append(byte)
        }
        guard answer.starts(with: Array("OK ".utf8)) else {
            close(fd)
            let text = String(decoding: answer, as: UTF8.self).trimmingSuffix()
            return .failure(BridgeError(VMZ_ERROR_CONNECTION_REFUSED, "vsock port \(port): the daemon answered \(quoted(text))"))
        }
        return .success(fd)
    }

    /// Accepts the guest's connections to the host's `port`.
    func listen(port: UInt32, accept: @escaping (Int32) -> Void) throws {
        guard listeners[port] == nil else {
            throw BridgeError(VMZ_ERROR_PORT_IN_USE, "the host already listens on vsock port \(port) of this VM")
        }
        let fd: Int32
        var path: String?
        switch backend {
        case .kernel:
            fd = try QEMUVsockKernel.listen(port: port)
        case .user:
            guard let dir else { throw BridgeError(VMZ_ERROR_INVALID_STATE, "the vsock device is not running") }
            let p = dir + "/vsock_\(port)"
            unlink(p)
            fd = try listenUnix(p, backlog: 64, what: "vsock port \(port)")
            path = p
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        let cid = self.cid
        let isKernel: Bool
        if case .kernel = backend { isKernel = true } else { isKernel = false }
        source.setEventHandler {
            while true {
                let conn = Glibc.accept(fd, nil, nil)
                if conn < 0 {
                    if errno == EINTR { continue }
                    return
                }
                // (accept4 is not in Swift's Glibc; a child spawned
                // meanwhile gets no copy: vmz_spawn closes what it does
                // not pass.)
                _ = fcntl(conn, F_SETFD, FD_CLOEXEC)
                if isKernel && !QEMUVsockKernel.peerIs(cid, conn) {
                    close(conn)  // another VM's guest
                    continue
                }
                accept(conn)
            }
        }
        source.setCancelHandler {
            close(fd)
            if let path { unlink(path) }
        }
        listeners[port] = source
        source.resume()
    }

    func stopListening(port: UInt32) throws {
        guard let source = listeners.removeValue(forKey: port) else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "the host does not listen on vsock port \(port) of this VM")
        }
        source.cancel()
    }
}

/// The kernel backend's host sockets (AF_VSOCK). UNTESTED: our machines
/// have no /dev/vhost-vsock.
enum QEMUVsockKernel {
    private static let afVsock: Int32 = 40
    private static let hostCID: UInt32 = 2
    private static let anyCID: UInt32 = 0xffff_ffff

    /// struct sockaddr_vm (linux/vm_sockets.h), 16 bytes.
    private struct SockaddrVM {
        var family = sa_family_t(40)
        var reserved1: UInt16 = 0
        var port: UInt32
        var cid: UInt32
        var flags: UInt8 = 0
        var zero: (UInt8, UInt8, UInt8) = (0, 0, 0)
    }

    static func connect(cid: UInt32, port: UInt32, timeout: Double) -> Result<Int32, BridgeError> {
        let fd = socket(afVsock, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .failure(BridgeError.system("socket(AF_VSOCK)")) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = SockaddrVM(port: port, cid: cid)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<SockaddrVM>.size))
            }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            return .failure(connectError(port: port, errno: e))
        }
        tv = timeval(tv_sec: 0, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return .success(fd)
    }

    /// What a failed connect(AF_VSOCK) means: nobody listens (or the
    /// guest does not answer in time), or a system error.
    static func connectError(port: UInt32, errno e: Int32) -> BridgeError {
        if e == ECONNRESET || e == ECONNREFUSED || e == ETIMEDOUT || e == EAGAIN {
            return BridgeError(VMZ_ERROR_CONNECTION_REFUSED, "vsock port \(port): nobody listens there in the guest (\(String(cString: strerror(e))))")
        }
        return BridgeError.system("connect(AF_VSOCK)", e)
    }

    /// The size of struct sockaddr_vm as the kernel wants it (16 bytes).
    static var sockaddrSize: Int { MemoryLayout<SockaddrVM>.size }

    static func listen(port: UInt32) throws -> Int32 {
        let fd = socket(afVsock, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw BridgeError.system("socket(AF_VSOCK)") }
        var addr = SockaddrVM(port: port, cid: anyCID)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<SockaddrVM>.size))
            }
        }
        if rc != 0 || Glibc.listen(fd, 64) != 0 {
            let e = errno
            close(fd)
            if e == EADDRINUSE {
                throw BridgeError(VMZ_ERROR_PORT_IN_USE, "vsock port \(port) of the host is in use (by another VM or process)")
            }
            throw BridgeError.system("bind/listen(AF_VSOCK)", e)
        }
        return fd
    }

    static func peerIs(_ cid: UInt32, _ fd: Int32) -> Bool {
        var addr = SockaddrVM(port: 0, cid: 0)
        var len = socklen_t(MemoryLayout<SockaddrVM>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        return rc == 0 && addr.cid == cid
    }
}

/// Writes all of `bytes`; false on error.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

/// Seconds of the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

extension String {
    func trimmingSuffix() -> String {
        var s = self
        while let last = s.last, last == "\n" || last == "\r" || last == " " { s.removeLast() }
        return s
    }
}
#endif

#if os(Linux)
extension QEMUEngine {
    private func vsockDevice() throws -> QEMUVsock {
        guard let vsock else {
            throw BridgeError(VMZ_ERROR_DEVICE, "the VM has no vsock device (enable vsock in its config)")
        }
        return vsock
    }

    func vsockConnect(port: UInt32, timeout: Double, completion: @escaping (Result<Int32, BridgeError>) -> Void) {
        do {
            try vsockDevice().connect(port: port, timeout: timeout, completion: completion)
        } catch let e as BridgeError {
            completion(.failure(e))
        } catch {
            completion(.failure(BridgeError(VMZ_ERROR_INTERNAL, "\(error)")))
        }
    }

    func vsockListen(port: UInt32, accept: @escaping (Int32) -> Void) throws {
        try vsockDevice().listen(port: port, accept: accept)
    }

    func vsockStopListening(port: UInt32) throws {
        try vsockDevice().stopListening(port: port)
    }
}
#endif
