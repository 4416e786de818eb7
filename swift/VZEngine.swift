// The macOS engine: Apple's Virtualization.framework.
//
// Same contract as QEMUEngine behind the same protocol (Engine.swift): the
// Machine calls every method on the VM's serial queue, and the engine
// reports on that queue, each report at most once.
//
// Virtualization.framework raises Objective-C exceptions (which Swift cannot
// catch) for some invalid input, so everything the framework would reject is
// checked first: ParsedConfig (files, limits, descriptors), then `validate`
// here (kernel format, accelerator, host support), then the framework's own
// `VZVirtualMachineConfiguration.validate()`.
//
// Threading: the VM is created with `VZVirtualMachine(configuration:queue:)`
// on the Machine's queue, so every framework call, property read, completion
// and delegate callback happens on that one queue (macOS 14 asserts it).
//
// STATUS: type-checked on Linux against swift/stubs/Virtualization (see
// scripts/typecheck-macos.sh); not yet compiled against Apple's SDK nor run.

#if canImport(Virtualization)
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Virtualization

final class VZEngine: VMEngine {
    let queue: DispatchQueue
    private weak var delegate: EngineDelegate?
    /// Receives the framework's delegate calls (VZVirtualMachine.delegate is
    /// weak: this reference keeps it alive).
    private let observer = VZEngineObserver()
    var vm: VZVirtualMachine?
    /// The disks' images, open and locked (DiskConfig.swift) until the VM
    /// ends or the engine goes.
    private var diskLocks: [Int32] = []
    /// The host's vsock listeners by port (VZVsock.swift).
    var vsockListeners: [UInt32: VZVsockListener] = [:]
    /// The configured memory size (the balloon's upper bound).
    private var memorySize: UInt64 = 0

    // Run time, on `queue`.
    private var startCompletion: ((BridgeError?) -> Void)?
    private var starting = false
    private var forcing = false
    private var stopIssued = false
    /// The VM's end (or its failed start) was reported: nothing more is.
    private var reported = false

    // MARK: Limits and validation

    static func limits() throws -> Limits {
        let minMemory = VZVirtualMachineConfiguration.minimumAllowedMemorySize
        let maxMemory = VZVirtualMachineConfiguration.maximumAllowedMemorySize
        return Limits(
            minCPUs: max(1, VZVirtualMachineConfiguration.minimumAllowedCPUCount),
            maxCPUs: VZVirtualMachineConfiguration.maximumAllowedCPUCount,
            // Whole MiB inside the framework's range (ParsedConfig accepts
            // whole MiB only).
            minMemory: (minMemory + mib - 1) / mib * mib,
            maxMemory: maxMemory / mib * mib,
            // COMMAND_LINE_SIZE of arm64 and x86 Linux is 2048, NUL included.
            maxCommandLine: 2047
        )
    }

    static func validate(_ config: ParsedConfig) throws {
        if config.guestArchitecture != .host {
            throw BridgeError(
                VMZ_ERROR_ENGINE_UNAVAILABLE,
                "Virtualization.framework boots only guests of the host's architecture (\(GuestArchitecture.host)); this config asks for an \(config.guestArchitecture) guest (the QEMU engine on Linux boots both)"
            )
        }
        _ = try checkKernel(config.kernelPath)
        if config.console == .serial {
            throw BridgeError(
                VMZ_ERROR_DEVICE,
                "the 8250 console (VMZ_CONSOLE_SERIAL, ttyS0) is Linux-only; Virtualization.framework's console is virtio (hvc0)"
            )
        }
        if config.networks.contains(where: { !$0.forwards.isEmpty }) {
            throw BridgeError(
                VMZ_ERROR_DEVICE,
                "host port forwards are Linux-only (QEMU's NAT); Virtualization.framework's NAT has none: bring your own network (a socket network) instead"
            )
        }
        if config.vsockCID != 0 && config.vsockCID != VMZ_VSOCK_CID_AUTO {
            throw BridgeError(
                VMZ_ERROR_DEVICE,
                "Virtualization.framework picks the guest's vsock context id itself: use VMZ_VSOCK_CID_AUTO"
            )
        }
        if !config.serialPorts.isEmpty {
            guard #available(macOS 13, *) else {
                throw BridgeError(VMZ_ERROR_DEVICE, "named serial ports need macOS 13 or later")
            }
        }
        if config.accelerator == .software {
            throw BridgeError(
                VMZ_ERROR_ACCELERATOR,
                "software emulation is Linux-only (QEMU TCG); on macOS use the auto or hardware accelerator"
            )
        }
        if !VZVirtualMachine.isSupported {
            throw BridgeError(
                VMZ_ERROR_ENGINE_UNAVAILABLE,
                "Virtualization.framework cannot run virtual machines on this Mac (VZVirtualMachine.isSupported is false: no hardware virtualization, e.g. inside a VM without nested virtualization)"
            )
        }
        try VZDisks.validate(config.disks)
        try VZShares.validate(config.shares)
        try checkEntitlement(config)
    }

    /// The framework's `validate()` fails for a process without the
    /// virtualization entitlement (Apple: "validate() checks for the
    /// entitlement"). A minimal configuration (boot loader, CPUs, memory)
    /// asks it here, so that `vmz_validate_config` finds what `vmz_create`
    /// would; its other complaints are left to `init`, which validates the
    /// full configuration with its devices.
    private static func checkEntitlement(_ config: ParsedConfig) throws {
        let configuration = VZVirtualMachineConfiguration()
        configuration.platform = VZGenericPlatformConfiguration()
        configuration.bootLoader = VZLinuxBootLoader(kernelURL: URL(fileURLWithPath: config.kernelPath))
        configuration.cpuCount = config.cpuCount
        configuration.memorySize = config.memorySize
        do {
            try configuration.validate()
        } catch {
            let e = bridgeError(error, .configuration)
            if e.code == VMZ_ERROR_ENGINE_UNAVAILABLE { throw e }
        }
    }

    /// Checks the kernel's format; returns it (gzip and, on Apple silicon,
    /// EFI zboot are accepted here and unpacked by `init` into the kernel
    /// cache, since validation writes no files).
    /// `decompressedFrom`: the original path when `path` is the unpacked
    /// copy of a packed kernel.
    @discardableResult
    static func checkKernel(_ path: String, decompressedFrom original: String? = nil) throws -> KernelFormat {
        let format = try KernelFormat(path: path)
        let what = original.map { "kernel \(quoted($0)) is packed, and unpacked it" }
            ?? "kernel \(quoted(path))"
        // The host's architecture only (validate): an arm64 Image on Apple
        // silicon; a bzImage or ELF vmlinux on Intel (UNCONFIRMED on a real
        // Intel Mac).
        if GuestArchitecture.host.boots(format) || original == nil && (format == .gzip || GuestArchitecture.host.unpacks(format)) {
            return format
        }
        throw BridgeError(
            VMZ_ERROR_KERNEL,
            "\(what) is \(format.description); Virtualization.framework boots \(GuestArchitecture.host.expectedKernels)")
    }

    // MARK: Life cycle

    /// Called by Machine.init on the caller's thread (never on `queue`):
    /// the VM itself is built on `queue` with `queue.sync`.
    init(config: ParsedConfig, queue: DispatchQueue, delegate: EngineDelegate) throws {
        self.queue = queue
        self.delegate = delegate
        memorySize = config.memorySize

        // A gzip-compressed kernel, or an EFI zboot image, is unpacked
        // once, natively, and kept in the kernel cache (KernelCache.swift),
        // shared with later VMs.
        var kernelPath = config.kernelPath
        let packing = try KernelFormat(path: kernelPath)
        if packing == .gzip || packing == .efiZboot {
            kernelPath = try packing == .gzip ? KernelCache.gunzipped(config.kernelPath) : KernelCache.unzbooted(config.kernelPath)
            try VZEngine.checkKernel(kernelPath, decompressedFrom: config.kernelPath)
        }

        // Our own duplicates, closed when the serial attachment is freed.
        let reading: FileHandle? = config.inputFD == VMZ_FD_DEFAULT
            ? nil
            : FileHandle(fileDescriptor: try duplicate(config.inputFD), closeOnDealloc: true)
        let writing = FileHandle(
            fileDescriptor: try duplicate(config.outputFD == VMZ_FD_DEFAULT ? STDOUT_FILENO : config.outputFD),
            closeOnDealloc: true
        )

        // The named ports' sockets, duplicated (each handle serves both
        // directions of its socket).
        let ports = try config.serialPorts.map { port -> (String, FileHandle) in
            (port.name, FileHandle(fileDescriptor: try duplicate(port.fd), closeOnDealloc: true))
        }

        diskLocks = try Disk.openAll(config.disks)
        let diskLocks = self.diskLocks
        let observer = self.observer
        vm = try queue.sync { () throws -> VZVirtualMachine in
            let configuration = VZVirtualMachineConfiguration()
            configuration.platform = VZGenericPlatformConfiguration()
            let bootLoader = VZLinuxBootLoader(kernelURL: URL(fileURLWithPath: kernelPath))
            bootLoader.commandLine = config.effectiveCommandLine
            if let initrd = config.initrdPath {
                bootLoader.initialRamdiskURL = URL(fileURLWithPath: initrd)
            }
            configuration.bootLoader = bootLoader
            configuration.cpuCount = config.cpuCount
            configuration.memorySize = config.memorySize

            let serial = VZVirtioConsoleDeviceSerialPortConfiguration()
            serial.attachment = VZFileHandleSerialPortAttachment(
                fileHandleForReading: reading, fileHandleForWriting: writing)
            configuration.serialPorts = [serial]
            configuration.networkDevices = try config.networks.map(VZEngine.networkDevice)
            if config.entropy {
                configuration.entropyDevices = [VZVirtioEntropyDeviceConfiguration()]
            }
            if config.balloon {
                configuration.memoryBalloonDevices = [VZVirtioTraditionalMemoryBalloonDeviceConfiguration()]
            }
            if config.vsockCID != 0 {
                configuration.socketDevices = [VZVirtioSocketDeviceConfiguration()]
            }
            if !ports.isEmpty, #available(macOS 13, *) {
                configuration.consoleDevices = [VZEngine.consoleDevice(ports: ports)]
            }
            configuration.storageDevices = try VZDisks.devices(config.disks, fds: diskLocks)
            configuration.directorySharingDevices = VZShares.devices(config.shares)

            do {
                try configuration.validate()
            } catch {
                throw VZEngine.bridgeError(error, .configuration)
            }
            let vm = VZVirtualMachine(configuration: configuration, queue: queue)
            vm.delegate = observer
            return vm
        }
        observer.engine = self
    }

    /// A network device: NAT, or the caller's datagram socket (a duplicate,
    /// closed with the attachment). Port forwards were refused by validate.
    private static func networkDevice(_ net: Network) throws -> VZVirtioNetworkDeviceConfiguration {
        let device = VZVirtioNetworkDeviceConfiguration()
        switch net.kind {
        case .nat:
            device.attachment = VZNATNetworkDeviceAttachment()
        case .socket:
            let handle = FileHandle(fileDescriptor: try duplicate(net.fd), closeOnDealloc: true)
            device.attachment = VZFileHandleNetworkDeviceAttachment(fileHandle: handle)
        }
        if let mac = net.mac {
            guard let address = VZMACAddress(string: mac) else {
                throw BridgeError(VMZ_ERROR_DEVICE, "MAC address \(mac) was refused by Virtualization.framework")
            }
            device.macAddress = address
        }
        return device
    }

    /// Memory balloon: the framework's target (a request; the guest acts on
    /// it in its own time).
    func setMemoryTarget(_ bytes: UInt64) throws {
        guard let balloon = vm?.memoryBalloonDevices.first as? VZVirtioTraditionalMemoryBalloonDevice else {
            throw BridgeError(VMZ_ERROR_DEVICE, "the VM has no memory balloon (it was omitted in its config)")
        }
        try checkMemoryTarget(bytes, memorySize: memorySize)
        balloon.targetVirtualMachineMemorySize = bytes
    }

    /// The named ports, on a virtio-console device of their own (the
    /// console, hvc0, is the serial port configuration above).
    @available(macOS 13, *)
    private static func consoleDevice(ports: [(String, FileHandle)]) -> VZVirtioConsoleDeviceConfiguration {
        let device = VZVirtioConsoleDeviceConfiguration()
        for (i, (name, handle)) in ports.enumerated() {
            let port = VZVirtioConsolePortConfiguration()
            port.name = name
            port.isConsole = false
            port.attachment = VZFileHandleSerialPortAttachment(
                fileHandleForReading: handle, fileHandleForWriting: handle)
            device.ports[i] = port
        }
        return device
    }

    deinit {
        releaseDisks()
        // The VM is released on its own queue, like every other access: the
        // only reference left is the one handed to the queue.
        let last = vm.map { Unmanaged.passRetained($0) }
        vm = nil
        if let last {
            queue.async { last.release() }
        }
        log(.trace, "VZ engine freed")
    }

    func start(completion: @escaping (BridgeError?) -> Void) {
        guard let vm else {
            completion(BridgeError(VMZ_ERROR_INTERNAL, "the VZ engine has no VM"))
            return
        }
        startCompletion = completion
        starting = true
        vm.start { [self] result in
            starting = false
            if reported { return }
            if forcing {
                // A force stop came while starting: the outcome of the start
                // no longer matters, only that the VM ends.
                startCompletion = nil
                switch result {
                case .success:
                    issueStop()
                case .failure(let error):
                    log(.debug, "start ended by the force stop: \((error as NSError).localizedDescription)")
                    if !stopIssued { report(.forced) }
                }
                return
            }
            guard let completion = startCompletion else { return }
            startCompletion = nil
            switch result {
            case .success:
                completion(nil)
            case .failure(let error):
                reported = true
                releaseDisks()
                completion(VZEngine.bridgeError(error, .start))
            }
        }
    }

    func requestStop() throws {
        guard let vm, !starting, !reported else {
            throw BridgeError(VMZ_ERROR_INVALID_STATE, "the VM is not running")
        }
        do {
            try vm.requestStop()
        } catch {
            throw VZEngine.bridgeError(error, .requestStop)
        }
    }

    func forceStop() {
        forcing = true
        guard !reported else { return }
        guard let vm else {
            report(.forced)
            return
        }
        if starting && !vm.canStop {
            // The start completion issues the stop.
            log(.debug, "force stop deferred until the start completes")
            return
        }
        issueStop()
    }

    /// How long a force stop keeps trying while the framework refuses it
    /// (`canStop` false: the VM is pausing, resuming or stopping).
    private static let stopRetryInterval = DispatchTimeInterval.milliseconds(50)
    private static let stopAttempts = 200
    private var stopAttemptsLeft = VZEngine.stopAttempts

    /// Stops the VM, reporting it ended only once it has: a refused stop is
    /// retried (the VM still runs, or is still on its way down), never
    /// reported as the end.
    private func issueStop() {
        guard let vm, !stopIssued, !reported else { return }
        guard vm.canStop else {
            retryStop("the framework cannot stop the VM in its current state")
            return
        }
        stopIssued = true
        vm.stop { [self] error in
            guard let error else {
                report(.forced)
                return
            }
            stopIssued = false
            retryStop(VZEngine.bridgeError(error, .stop).message)
        }
    }

    private func retryStop(_ why: String) {
        guard !reported else { return }
        stopAttemptsLeft -= 1
        if stopAttemptsLeft <= 0 {
            // The framework refused every stop for 10 s: say so rather than
            // wait forever. The VM may still run: RUNTIME, not "stopped".
            report(.error(BridgeError(VMZ_ERROR_RUNTIME, "the force stop failed: \(why)")))
            return
        }
        log(.debug, "VZ: force stop refused (\(why)); retrying")
        queue.asyncAfter(deadline: .now() + VZEngine.stopRetryInterval) { [weak self] in self?.issueStop() }
    }

    func pause(completion: @escaping (BridgeError?) -> Void) {
        guard let vm, !starting, !reported else {
            completion(BridgeError(VMZ_ERROR_INVALID_STATE, "the VM is not running"))
            return
        }
        vm.pause(completionHandler: answer(completion, .pause))
    }

    func resume(completion: @escaping (BridgeError?) -> Void) {
        guard let vm, !reported else {
            completion(BridgeError(VMZ_ERROR_INVALID_STATE, "the VM is not running"))
            return
        }
        vm.resume(completionHandler: answer(completion, .resume))
    }

    /// A framework completion handler that answers `completion`, unless the
    /// VM's end was reported first.
    private func answer(
        _ completion: @escaping (BridgeError?) -> Void, _ phase: Phase
    ) -> (Result<Void, any Error>) -> Void {
        { [self] result in
            if reported { return }
            switch result {
            case .success: completion(nil)
            case .failure(let error): completion(VZEngine.bridgeError(error, phase))
            }
        }
    }

    /// From the framework's delegate: a network attachment went away.
    fileprivate func networkDidDisconnect(_ device: VZNetworkDevice, _ error: Error) {
        let index = vm?.networkDevices.firstIndex { $0 === device } ?? 0
        delegate?.engineNetworkDidDisconnect(index: index, error: VZEngine.bridgeError(error, .network))
    }

    /// From the framework's delegate: the VM ended by itself (`error` nil:
    /// the guest stopped it).
    fileprivate func vmDidStop(_ error: Error?) {
        if let error {
            log(.debug, "VZ: stopped with error: \((error as NSError).localizedDescription)")
        }
        if forcing {
            report(.forced)
            return
        }
        if starting, let completion = startCompletion {
            // Ended before the start completed: a failed start, as QEMU.
            startCompletion = nil
            reported = true
            releaseDisks()
            let reason = error.map { VZEngine.bridgeError($0, .start).message }
                ?? "the guest stopped while the VM was starting"
            completion(BridgeError(VMZ_ERROR_START_FAILED, reason))
            return
        }
        if let error {
            report(.error(VZEngine.bridgeError(error, .runtime)))
        } else {
            // The framework does not say whether the guest powered off or
            // rebooted (a reboot stops the VM too).
            report(.poweredOff)
        }
    }

    /// Unlocks the disks: the VM no longer uses them.
    private func releaseDisks() {
        for fd in diskLocks { close(fd) }
        diskLocks = []
    }

    private func report(_ how: EngineEnd) {
        guard !reported else { return }
        reported = true
        releaseDisks()
        startCompletion = nil
        delegate?.engineDidStop(how)
    }

    // MARK: Errors

    enum Phase {
        case configuration, start, requestStop, stop, pause, resume, network, runtime

        var context: String {
            switch self {
            case .configuration: return "Virtualization.framework rejected the configuration"
            case .start: return "the VM failed to start"
            case .requestStop: return "the stop request failed"
            case .stop: return "the force stop failed"
            case .pause: return "the pause failed"
            case .resume: return "the resume failed"
            case .network: return "a network device was disconnected"
            case .runtime: return "the VM stopped with an error"
            }
        }

        var defaultCode: VMZErrorCode {
            switch self {
            case .configuration: return VMZ_ERROR_INVALID_ARGUMENT
            case .start: return VMZ_ERROR_START_FAILED
            case .requestStop, .stop, .pause, .resume, .network, .runtime: return VMZ_ERROR_RUNTIME
            }
        }
    }

    static let entitlementFix =
        "to fix it, sign the binary with vmz.entitlements (in the vmz sources): `codesign --entitlements vmz.entitlements --force -s - <binary>`, or for cargo run/test use the runner scripts/macos-sign-and-run.sh (see the README)"

    /// A framework error as a BridgeError, keeping its description.
    static func bridgeError(_ error: Error, _ phase: Phase) -> BridgeError {
        let ns = error as NSError
        var text = ns.localizedDescription
        if let reason = ns.localizedFailureReason, !text.contains(reason) {
            text += " (\(reason))"
        }
        let isVZ = ns.domain == VZErrorDomain
        let origin = isVZ ? "VZError code \(ns.code)" : "\(ns.domain) code \(ns.code)"
        let detail = "\(phase.context): \(text) [\(origin)]"

        // The framework's words vary in punctuation ("doesn’t have the
        // “com.apple.security.virtualization” entitlement", straight quotes
        // elsewhere): match the entitlement's name only. It comes with
        // code 2 from validate(), before any start.
        if text.contains("com.apple.security.virtualization") && (phase == .configuration || phase == .start) {
            return BridgeError(
                VMZ_ERROR_ENGINE_UNAVAILABLE,
                "\(detail). The process lacks the com.apple.security.virtualization entitlement: \(entitlementFix)"
            )
        }
        // The VM ended on its own: whatever the framework's code, that is a
        // run-time error of the VM, not a bug of the bridge.
        guard isVZ, phase != .runtime else { return BridgeError(phase.defaultCode, detail) }
        switch VZErrorCode(rawValue: ns.code) {
        case .internalError where phase == .start:
            // What a kernel the framework cannot boot gives at start: the
            // VM failed to start, not a bug of the bridge.
            return BridgeError(VMZ_ERROR_START_FAILED, "\(detail) (is the kernel a bootable Linux image for this Mac?)")
        case .internalError:
            return BridgeError(phase.defaultCode, detail)
        case .invalidVirtualMachineConfiguration:
            return BridgeError(phase == .configuration ? VMZ_ERROR_INVALID_ARGUMENT : phase.defaultCode, detail)
        case .invalidVirtualMachineState, .invalidVirtualMachineStateTransition:
            return BridgeError(VMZ_ERROR_INVALID_STATE, detail)
        case .virtualMachineLimitExceeded:
            return BridgeError(VMZ_ERROR_ENGINE_UNAVAILABLE, "\(detail) (too many VMs running on this Mac)")
        default:
            return BridgeError(phase.defaultCode, detail)
        }
    }
}

/// The codes of Virtualization.framework's `VZErrorDomain` errors that the
/// engine maps (Apple's `VZError.Code`; the macOS version that added each in
/// brackets). Matched by number, so that the mapping does not depend on how
/// the SDK imports the enum.
private enum VZErrorCode: Int {
    case internalError = 1
    case invalidVirtualMachineConfiguration = 2
    case invalidVirtualMachineState = 3
    case invalidVirtualMachineStateTransition = 4
    case invalidDiskImage = 5
    case virtualMachineLimitExceeded = 6  // (12)
    case networkError = 7  // (13)
    case outOfDiskSpace = 8  // (13)
    case operationCancelled = 9  // (13)
    case notSupported = 10  // (13)
}

/// VZVirtualMachine's delegate. Its methods are @objc through the protocol
/// (a signature mismatch would silently never be called: the stub type-check
/// builds the protocol without default implementations to catch that).
private final class VZEngineObserver: NSObject, VZVirtualMachineDelegate {
    weak var engine: VZEngine?

    func guestDidStop(_ virtualMachine: VZVirtualMachine) {
        engine?.vmDidStop(nil)
    }

    func virtualMachine(_ virtualMachine: VZVirtualMachine, didStopWithError error: any Error) {
        engine?.vmDidStop(error)
    }

    func virtualMachine(
        _ virtualMachine: VZVirtualMachine, networkDevice: VZNetworkDevice,
        attachmentWasDisconnectedWithError error: any Error
    ) {
        engine?.networkDidDisconnect(networkDevice, error)
    }
}

#endif
