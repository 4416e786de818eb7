// vsock as the C ABI offers it (vmz_vsock_connect, vmz_vsock_connect_async,
// vmz_vsock_listen, vmz_vsock_stop_listening): the Machine's side, over the
// engine's (QEMUVsock.swift, VZVsock.swift).

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

/// The vmz_vsock_connect_async calls of one VM not yet answered, touched
/// only on the VM's queue. Each is answered exactly once: by the engine's
/// result, or by the VM's end or release (`failAll`), whichever comes
/// first; a result that comes after has its descriptor closed.
final class PendingVsockConnects {
    private var next: UInt64 = 0
    private var waiting: [UInt64: (VMZVsockConnectCallback, UnsafeMutableRawPointer?)] = [:]

    func add(_ callback: @escaping VMZVsockConnectCallback, _ context: UnsafeMutableRawPointer?) -> UInt64 {
        next += 1
        waiting[next] = (callback, context)
        return next
    }

    /// Forgets `id` without calling it (the call was refused).
    func remove(_ id: UInt64) { waiting[id] = nil }

    /// Hands `result` to `id`'s callback, or closes the descriptor nobody
    /// waits for any more.
    func answer(_ id: UInt64, _ result: Result<Int32, BridgeError>) {
        guard let (callback, context) = waiting.removeValue(forKey: id) else {
            if case .success(let fd) = result { close(fd) }
            return
        }
        switch result {
        case .success(let fd): callback(context, Machine.handOut(fd), nil)
        case .failure(let e): callback(context, -1, e.toC())
        }
    }

    /// Answers every waiting call with `error()` (each gets its own).
    func failAll(_ error: () -> BridgeError) {
        let all = waiting.sorted { $0.key < $1.key }
        waiting = [:]
        for (_, (callback, context)) in all { callback(context, -1, error().toC()) }
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
        return Machine.handOut(try result.get())
    }

    /// The caller gets a blocking, close-on-exec descriptor.
    static func handOut(_ fd: Int32) -> Int32 {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// Connects to the guest's `port` without waiting: `callback` once, on
    /// the queue, later (never from inside this call). A refusal known at
    /// once (not running, no device) is thrown instead.
    func vsockConnectAsync(
        port: UInt32, timeoutMS: UInt32, callback: @escaping VMZVsockConnectCallback, context: UnsafeMutableRawPointer?
    ) throws {
        let timeout = timeoutMS == 0 ? Machine.vsockConnectTimeout : Double(timeoutMS) / 1000
        try withEngine { engine, state in
            guard state == VMZ_STATE_RUNNING else {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "cannot connect over vsock: the VM is \(stateName(state))")
            }
            let id = vsockConnects.add(callback, context)
            // The engine answers on the queue: during this call for what it
            // refuses at once, later otherwise.
            var inCall = true
            var refusal: BridgeError?
            engine.vsockConnect(port: port, timeout: timeout) { [weak self] result in
                if inCall, case .failure(let e) = result {
                    refusal = e
                    return
                }
                guard let self else {
                    if case .success(let fd) = result { close(fd) }
                    return
                }
                if inCall {
                    self.onQueueLater { self.vsockConnects.answer(id, self.endedFailure(result)) }
                } else {
                    self.vsockConnects.answer(id, self.endedFailure(result))
                }
            }
            inCall = false
            if let refusal {
                vsockConnects.remove(id)
                throw refusal
            }
        }
    }

    /// A connect that failed while the VM is ending or has ended failed
    /// because of that (a dying backend answers before the end is
    /// reported): INVALID_STATE, as for the connects the end answers.
    private func endedFailure(_ result: Result<Int32, BridgeError>) -> Result<Int32, BridgeError> {
        guard case .failure(let e) = result else { return result }
        let state = currentState
        guard state == VMZ_STATE_STOPPING || state == VMZ_STATE_STOPPED || state == VMZ_STATE_ERROR else { return result }
        return .failure(BridgeError(VMZ_ERROR_INVALID_STATE, "the VM ended (\(stateName(state))) before the vsock connect completed: \(e.message)"))
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
