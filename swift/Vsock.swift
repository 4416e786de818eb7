// vsock as the C ABI offers it (vmz_vsock_connect, vmz_vsock_listen,
// vmz_vsock_stop_listening): the Machine's side, over the engine's
// (QEMUVsock.swift, VZVsock.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// The outcome of one connect, handed from the VM's queue to the caller's
/// thread; whoever comes second (a late result, or the caller giving up)
/// closes the descriptor nobody will use.
private final class ConnectOutcome: @unchecked Sendable {
    private let lock = Lock()
    private var result: Result<Int32, BridgeError>?
    private var abandoned = false

    /// From the queue; false when the caller already gave up.
    func deliver(_ r: Result<Int32, BridgeError>) {
        let keep = lock.withLock { () -> Bool in
            if abandoned { return false }
            result = r
            return true
        }
        if !keep, case .success(let fd) = r { close(fd) }
    }

    /// The result, or nil after marking it abandoned.
    func take(abandon: Bool) -> Result<Int32, BridgeError>? {
        lock.withLock {
            if result == nil && abandon { abandoned = true }
            return result
        }
    }
}

extension Machine {
    /// The default wait of vmz_vsock_connect.
    static let vsockConnectTimeout = 10.0

    /// Connects to the guest's `port` (blocking, bounded); the caller owns
    /// the descriptor.
    func vsockConnect(port: UInt32, timeoutMS: UInt32) throws -> Int32 {
        guard !isOnOwnQueue else {
            throw BridgeError(VMZ_ERROR_INVALID_STATE, "vmz_vsock_connect cannot be called from a callback of the same VM (it waits for the VM's queue)")
        }
        let timeout = timeoutMS == 0 ? Machine.vsockConnectTimeout : Double(timeoutMS) / 1000
        let outcome = ConnectOutcome()
        let done = DispatchSemaphore(value: 0)
        try withEngine { engine, state in
            guard state == VMZ_STATE_RUNNING else {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "cannot connect over vsock: the VM is \(stateName(state))")
            }
            engine.vsockConnect(port: port, timeout: timeout) { result in
                outcome.deliver(result)
                done.signal()
            }
        }
        // The engine bounds its own wait; the margin covers a busy queue.
        let waited = done.wait(timeout: .now() + timeout + 5)
        guard let result = outcome.take(abandon: waited == .timedOut) else {
            throw BridgeError(VMZ_ERROR_CONNECTION_REFUSED, "vsock port \(port): no answer within \(timeout) s")
        }
        let fd = try result.get()
        // The caller gets a blocking, close-on-exec descriptor.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    func vsockListen(port: UInt32, callback: @escaping VMZVsockAcceptCallback, context: UnsafeMutableRawPointer?) throws {
        try withEngine { engine, state in
            guard state == VMZ_STATE_CREATED || state == VMZ_STATE_STARTING || state == VMZ_STATE_RUNNING else {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "cannot listen on vsock: the VM is \(stateName(state))")
            }
            try engine.vsockListen(port: port) { [weak self] fd in
                guard let self, !self.isReleased else {
                    close(fd)
                    return
                }
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
                callback(context, port, fd)
            }
        }
    }

    func vsockStopListening(port: UInt32) throws {
        try withEngine { engine, _ in try engine.vsockStopListening(port: port) }
    }
}
