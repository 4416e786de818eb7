// The engine protocol: what the Machine asks of an engine (QEMU on Linux,
// Virtualization.framework on macOS) and what an engine reports back.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// How a VM life ended, as an engine reports it (VMZEndReason in the ABI).
enum EngineEnd {
    /// The guest powered off (or honoured a stop request).
    case poweredOff
    /// The guest rebooted or reset itself.
    case rebooted
    /// The guest kernel panicked (pvpanic); the engine's words, if any.
    case panicked(BridgeError)
    /// The engine process was killed by a host signal.
    case killed(signal: Int32, BridgeError)
    /// The engine failed at run time.
    case error(BridgeError)
    /// `forceStop` did it.
    case forced
}

/// What an engine tells its Machine. Called on the Machine's queue.
protocol EngineDelegate: AnyObject {
    /// Once per life, after `start` was called: the VM has ended.
    func engineDidStop(_ how: EngineEnd)
    /// A network device's host side went away (the VM keeps running).
    func engineNetworkDidDisconnect(index: Int, error: BridgeError)
}

/// One virtualization engine. Every method is called on the queue given to
/// `init`, and the engine reports on that queue.
protocol VMEngine: AnyObject {
    /// The engine's limits on this host.
    static func limits() throws -> Limits
    /// Engine-specific checks of a parsed config (kernel format,
    /// accelerator availability). Starts nothing.
    static func validate(_ config: ParsedConfig) throws

    /// Prepares a VM from a config that already passed `validate` (the
    /// only way in is `vmz_create`, which validates); the engine duplicates
    /// the descriptors it keeps.
    init(config: ParsedConfig, queue: DispatchQueue, delegate: EngineDelegate) throws
    /// Starts the VM; `completion` once: nil when running, or the error
    /// (then no `engineDidStop` follows).
    func start(completion: @escaping (BridgeError?) -> Void)
    /// Delivers a graceful stop request to the guest.
    func requestStop() throws
    /// Stops the VM now; `engineDidStop(.forced)` follows (or another reason
    /// if the VM ended by itself first), never from inside this call.
    func forceStop()

    // vsock (Vsock.swift), on the queue like the rest; the engine refuses
    // with VMZ_ERROR_DEVICE when the VM has no vsock device.
    /// Connects to the guest's `port`; `completion` once, on the queue.
    func vsockConnect(port: UInt32, timeout: Double, completion: @escaping (Result<Int32, BridgeError>) -> Void)
    /// From now on the guest's connections to the host's `port` go to
    /// `accept` (on the queue), each a descriptor it owns.
    func vsockListen(port: UInt32, accept: @escaping (Int32) -> Void) throws
    /// Stops `vsockListen(port:)`; no `accept` for it runs afterwards.
    func vsockStopListening(port: UInt32) throws
    /// Stops the guest's vCPUs; `completion` once, when they are stopped
    /// (nil) or with the error, unless the VM ends first (then never).
    func pause(completion: @escaping (BridgeError?) -> Void)
    /// Restarts a paused guest's vCPUs; `completion` as for `pause`.
    func resume(completion: @escaping (BridgeError?) -> Void)

    /// Memory balloon (Balloon.swift): asks the guest to shrink to `bytes`
    /// (checked by the Machine: whole MiB, within the limits). On the queue.
    func setMemoryTarget(_ bytes: UInt64) throws
}

// VMZ_TYPECHECK_VZ: scripts/typecheck-macos.sh checks the macOS engine on
// Linux against a stub of Virtualization.framework.
#if os(Linux) && !VMZ_TYPECHECK_VZ
typealias PlatformEngine = QEMUEngine
#elseif canImport(Virtualization)
typealias PlatformEngine = VZEngine
#endif
