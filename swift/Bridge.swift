// The engine-independent core of the bridge: errors, locks, registries of
// live objects, logging, and the parsed configuration. Nothing here is
// exported; libvmz.swift holds the @_cdecl functions.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

// MARK: - Locks

/// A mutex usable from any thread (pthread, so the same on Linux and macOS).
final class Lock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

// MARK: - Errors

/// The bridge's error object: what a `VMZErrorRef` points to. Immutable once
/// made; handed to C retained, released by `vmz_error_free`.
final class BridgeError: Error, @unchecked Sendable, CustomStringConvertible {
    let code: VMZErrorCode
    let message: String
    /// The message as a C string, owned by this object.
    let cMessage: UnsafeMutablePointer<CChar>

    init(_ code: VMZErrorCode, _ message: String) {
        self.code = code
        self.message = message
        cMessage = strdup(message)!
    }

    deinit { free(cMessage) }

    var description: String { "\(code.rawValue): \(message)" }

    /// An error that names a failed system call and its errno.
    static func system(_ call: String, _ err: Int32 = errno, _ what: String = "") -> BridgeError {
        let detail = String(cString: strerror(err))
        let prefix = what.isEmpty ? "" : "\(what): "
        return BridgeError(VMZ_ERROR_IO, "\(prefix)\(call) failed: \(detail) (errno \(err))")
    }

    /// Hands the error to C: the receiver owns one retain and frees it with
    /// `vmz_error_free`. Counted in the live-error registry.
    func toC() -> VMZErrorRef {
        let ref = VMZErrorRef(Unmanaged.passRetained(self).toOpaque())
        Registry.errors.insert(ref)
        return ref
    }

    /// Stores the error in a caller's out-parameter if it gave one (the
    /// caller then owns it); otherwise the error is simply dropped.
    func store(into out: UnsafeMutablePointer<VMZErrorRef?>?) {
        guard let out else {
            log(.debug, "error not returned (no out-parameter): \(message)")
            return
        }
        out.pointee = toC()
    }
}

// MARK: - Registries of live objects

/// The set of live pointers of one kind handed to C: counts them for leak
/// checks and recognises pointers that are not (or no longer) live.
final class Registry: @unchecked Sendable {
    static let errors = Registry()
    static let handles = Registry()

    private let lock = Lock()
    private var live = Set<UnsafeMutableRawPointer>()

    func insert(_ p: OpaquePointer) {
        _ = lock.withLock { live.insert(UnsafeMutableRawPointer(p)) }
    }

    /// Removes `p`; false if it was not live (never handed out, or already
    /// removed).
    func remove(_ p: OpaquePointer) -> Bool {
        lock.withLock { live.remove(UnsafeMutableRawPointer(p)) != nil }
    }

    /// The object behind a live pointer, retained while the registry's
    /// lock is held: a concurrent `remove` + release cannot free it between
    /// the check and the retain.
    func object<T: AnyObject>(_ p: OpaquePointer, as _: T.Type) -> T? {
        lock.withLock {
            guard live.contains(UnsafeMutableRawPointer(p)) else { return nil }
            return Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
        }
    }

    var count: Int { lock.withLock { live.count } }
}

// MARK: - Logging

enum LogLevel: UInt32 {
    case error = 1, warn, info, debug, trace
}

/// The process-wide log sink set by `vmz_set_log_callback`.
final class LogSink: @unchecked Sendable {
    static let shared = LogSink()
    private let lock = Lock()
    private var callback: VMZLogCallback?
    private var context: UnsafeMutableRawPointer?
    private var maxLevel: UInt32 = 0

    func set(_ callback: VMZLogCallback?, _ context: UnsafeMutableRawPointer?, _ level: UInt32) {
        lock.withLock {
            self.callback = callback
            self.context = context
            self.maxLevel = callback == nil ? 0 : level
        }
    }

    func enabled(_ level: LogLevel) -> Bool {
        lock.withLock { level.rawValue <= maxLevel }
    }

    func emit(_ level: LogLevel, _ message: String) {
        let (cb, ctx) = lock.withLock { (callback, context) }
        guard let cb else { return }
        message.withCString { cb(ctx, VMZLogLevel(rawValue: level.rawValue), $0) }
    }
}

/// Logs through the caller's sink; the message is built only when enabled.
func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
    let sink = LogSink.shared
    if sink.enabled(level) { sink.emit(level, message()) }
}

// MARK: - Configuration

/// How the guest's CPUs run, after parsing.
enum Accelerator: UInt32 {
    case auto = 0, hardware = 1, software = 2
}

/// The engine's limits on this host.
struct Limits {
    var minCPUs: Int
    var maxCPUs: Int
    var minMemory: UInt64
    var maxMemory: UInt64
    var maxCommandLine: Int
}

let mib: UInt64 = 1 << 20

/// A `VMZConfig` checked for everything that does not depend on the engine:
/// pointers, UTF-8, files, descriptors, limits.
struct ParsedConfig {
    var kernelPath: String
    var initrdPath: String?
    var commandLine: String
    /// The caller's descriptors (borrowed); -1 for the default.
    var inputFD: Int32
    var outputFD: Int32
    var cpuCount: Int
    var memorySize: UInt64
    var enableNAT: Bool
    var accelerator: Accelerator
    var fastBootOptions: Bool

    /// The kernel options VMZ_BOOT_FAST_OPTIONS appends.
    static let fastOptions = "cryptomgr.notests no_timer_check"

    /// The command line the guest gets: the caller's, plus the fast boot
    /// options only when asked for.
    var effectiveCommandLine: String {
        guard fastBootOptions else { return commandLine }
        return commandLine.isEmpty ? ParsedConfig.fastOptions : commandLine + " " + ParsedConfig.fastOptions
    }

    /// The smallest `struct_size` accepted (ABI 1's). Fields past a
    /// caller's `struct_size` read as zero.
    static let minimumStructSize = Int(VMZ_CONFIG_SIZE_V1)

    init(_ pointer: UnsafePointer<VMZConfig>?, limits: Limits) throws {
        guard let pointer else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "config is NULL")
        }
        let size = Int(pointer.pointee.struct_size)
        guard size >= ParsedConfig.minimumStructSize else {
            throw BridgeError(
                VMZ_ERROR_INVALID_ARGUMENT,
                "config struct_size is \(size), expected at least \(ParsedConfig.minimumStructSize)"
            )
        }
        // Only the bytes the caller's struct has; the rest stays zero.
        var c = VMZConfig()
        withUnsafeMutableBytes(of: &c) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: min(size, dst.count)))
        }

        kernelPath = try ParsedConfig.string(c.kernel_path, "kernel path", required: true)!
        initrdPath = try ParsedConfig.string(c.initrd_path, "initrd path", required: false)
        commandLine = try ParsedConfig.string(c.command_line, "command line", required: false) ?? ""
        inputFD = c.read_pipe_fd
        outputFD = c.write_pipe_fd
        cpuCount = Int(c.cpu_count)
        memorySize = c.memory_size
        enableNAT = c.enable_nat
        guard let accel = Accelerator(rawValue: c.accelerator) else {
            throw BridgeError(VMZ_ERROR_ACCELERATOR, "unknown accelerator value \(c.accelerator)")
        }
        accelerator = accel
        let knownOptions = UInt32(VMZ_BOOT_FAST_OPTIONS)
        guard c.boot_options & ~knownOptions == 0 else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "unknown boot option bits 0x\(String(c.boot_options & ~knownOptions, radix: 16))")
        }
        fastBootOptions = c.boot_options & knownOptions != 0

        try ParsedConfig.checkFile(kernelPath, VMZ_ERROR_KERNEL, "kernel")
        if let initrdPath {
            try ParsedConfig.checkFile(initrdPath, VMZ_ERROR_INITRD, "initrd")
        }
        let length = effectiveCommandLine.utf8.count
        if length > limits.maxCommandLine {
            let with = fastBootOptions ? " with the fast boot options" : ""
            throw BridgeError(
                VMZ_ERROR_COMMAND_LINE,
                "kernel command line\(with) is \(length) bytes, the limit is \(limits.maxCommandLine)"
            )
        }
        if cpuCount < limits.minCPUs || cpuCount > limits.maxCPUs {
            throw BridgeError(
                VMZ_ERROR_CPU_COUNT,
                "CPU count \(cpuCount) is outside the allowed range \(limits.minCPUs)...\(limits.maxCPUs)"
            )
        }
        if memorySize % mib != 0 {
            throw BridgeError(
                VMZ_ERROR_MEMORY_SIZE, "memory size \(memorySize) bytes is not a whole number of MiB")
        }
        if memorySize < limits.minMemory || memorySize > limits.maxMemory {
            throw BridgeError(
                VMZ_ERROR_MEMORY_SIZE,
                "memory size \(memorySize / mib) MiB is outside the allowed range \(limits.minMemory / mib)...\(limits.maxMemory / mib) MiB"
            )
        }
        try ParsedConfig.checkFD(inputFD, reading: true)
        try ParsedConfig.checkFD(outputFD, reading: false)
    }

    private static func string(
        _ p: UnsafePointer<CChar>?, _ what: String, required: Bool
    ) throws -> String? {
        guard let p else {
            if required { throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "\(what) is NULL") }
            return nil
        }
        guard let s = String(validatingCString: p) else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "\(what) is not valid UTF-8")
        }
        if required && s.isEmpty {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "\(what) is empty")
        }
        return s
    }

    /// The file must exist, be a regular file (after symlinks) and readable.
    private static func checkFile(_ path: String, _ code: VMZErrorCode, _ what: String) throws {
        var st = stat()
        if stat(path, &st) != 0 {
            let err = errno
            let reason = err == ENOENT ? "does not exist" : String(cString: strerror(err))
            throw BridgeError(code, "\(what) \(quoted(path)) \(reason)")
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            let kind = (st.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "not a regular file"
            throw BridgeError(code, "\(what) \(quoted(path)) is \(kind)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            throw BridgeError(code, "\(what) \(quoted(path)) cannot be read: \(String(cString: strerror(errno)))")
        }
        close(fd)
    }

    /// -1 means "default"; anything else must be an open descriptor usable in
    /// the given direction.
    private static func checkFD(_ fd: Int32, reading: Bool) throws {
        let what = reading ? "serial input descriptor" : "serial output descriptor"
        if fd == VMZ_FD_DEFAULT { return }
        if fd < 0 {
            throw BridgeError(VMZ_ERROR_SERIAL_FD, "\(what) \(fd) is negative (use \(VMZ_FD_DEFAULT) for the default)")
        }
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 {
            throw BridgeError(VMZ_ERROR_SERIAL_FD, "\(what) \(fd) is not open")
        }
        let mode = flags & O_ACCMODE
        if reading && mode == O_WRONLY {
            throw BridgeError(VMZ_ERROR_SERIAL_FD, "\(what) \(fd) is open for writing only")
        }
        if !reading && mode == O_RDONLY {
            throw BridgeError(VMZ_ERROR_SERIAL_FD, "\(what) \(fd) is open for reading only")
        }
    }
}

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

/// A path quoted for messages, with control characters escaped.
func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default:
            if u.value < 0x20 || u.value == 0x7f {
                out += "\\x" + String(u.value, radix: 16)
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// Duplicates a descriptor, close-on-exec, above stdio.
func duplicate(_ fd: Int32) throws -> Int32 {
    let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
    if copy < 0 { throw BridgeError.system("fcntl(F_DUPFD_CLOEXEC)", errno, "descriptor \(fd)") }
    return copy
}
