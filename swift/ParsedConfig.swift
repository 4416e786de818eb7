// The configuration as the bridge sees it: a VMZConfig parsed and checked
// for everything that does not depend on the engine.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    /// The network devices: the enable_nat one, then VMZConfig.networks.
    /// Network.swift.
    var networks: [Network]
    var accelerator: Accelerator
    var fastBootOptions: Bool
    /// The console device; nil for a caller of ABI 1 or 2 (the engine's
    /// old default). Console.swift.
    var console: ConsoleDevice?
    /// A virtio entropy device (on unless VMZ_OMIT_ENTROPY).
    var entropy: Bool
    /// A memory balloon (on unless VMZ_OMIT_BALLOON). Balloon.swift.
    var balloon: Bool
    /// Extra named virtio-console ports. Console.swift.
    var serialPorts: [SerialPort]
    /// The guest's architecture (the host's unless asked). GuestArchitecture.swift.
    var guestArchitecture: GuestArchitecture
    /// Seconds `start` may take (ABI 3: start_timeout_ms, 0 = the default).
    var startTimeout: Double
    static let defaultStartTimeout: Double = 30
    /// The disks, in the order the guest sees them. DiskConfig.swift.
    var disks: [Disk] = []
    /// The guest's vsock context id: 0 none, VMZ_VSOCK_CID_AUTO any.
    var vsockCID: UInt32
    /// The shared directories. ShareConfig.swift.
    var shares: [Share] = []

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

        kernelPath = try cString(c.kernel_path, VMZ_ERROR_INVALID_ARGUMENT, "kernel path", required: true)!
        initrdPath = try cString(c.initrd_path, VMZ_ERROR_INVALID_ARGUMENT, "initrd path", required: false)
        commandLine = try cString(c.command_line, VMZ_ERROR_INVALID_ARGUMENT, "command line", required: false) ?? ""
        inputFD = c.read_pipe_fd
        outputFD = c.write_pipe_fd
        cpuCount = Int(c.cpu_count)
        memorySize = c.memory_size
        enableNAT = c.enable_nat
        networks = try Network.parse(c)
        guard let accel = Accelerator(rawValue: c.accelerator) else {
            throw BridgeError(VMZ_ERROR_ACCELERATOR, "unknown accelerator value \(c.accelerator)")
        }
        accelerator = accel
        let knownOptions = UInt32(VMZ_BOOT_FAST_OPTIONS)
        guard c.boot_options & ~knownOptions == 0 else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "unknown boot option bits 0x\(String(c.boot_options & ~knownOptions, radix: 16))")
        }
        fastBootOptions = c.boot_options & knownOptions != 0
        console = try ConsoleDevice.parse(c, size: size)
        let knownOmit = UInt32(VMZ_OMIT_ENTROPY | VMZ_OMIT_BALLOON)
        guard c.omit_devices & ~knownOmit == 0 else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "unknown omit_devices bits 0x\(String(c.omit_devices & ~knownOmit, radix: 16))")
        }
        entropy = c.omit_devices & UInt32(VMZ_OMIT_ENTROPY) == 0
        balloon = c.omit_devices & UInt32(VMZ_OMIT_BALLOON) == 0
        serialPorts = try SerialPort.parse(c)
        guestArchitecture = try GuestArchitecture(raw: c.guest_architecture)
        startTimeout = c.start_timeout_ms == 0 ? ParsedConfig.defaultStartTimeout : Double(c.start_timeout_ms) / 1000
        vsockCID = c.vsock_cid
        if vsockCID == 1 || vsockCID == 2 {
            throw BridgeError(VMZ_ERROR_DEVICE, "vsock context id \(vsockCID) is reserved (1: local, 2: the host); use 3 or more, or VMZ_VSOCK_CID_AUTO")
        }

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
        disks = try Disk.parse(c)
        shares = try Share.parse(c)
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

/// A string the caller passed through the ABI, checked: NULL is an error
/// when `required` (nil otherwise), the bytes must be UTF-8, and a required
/// string must not be empty. Messages start with `what` ("disk 0: path").
func cString(
    _ p: UnsafePointer<CChar>?, _ code: VMZErrorCode, _ what: String, required: Bool
) throws -> String? {
    guard let p else {
        if required { throw BridgeError(code, "\(what) is NULL") }
        return nil
    }
    guard let s = String(validatingCString: p) else {
        throw BridgeError(code, "\(what) is not valid UTF-8")
    }
    if required && s.isEmpty {
        throw BridgeError(code, "\(what) is empty")
    }
    return s
}
