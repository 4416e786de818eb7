// The Machine object behind a VMZHandle.
//
// A Machine owns one engine (QEMU on Linux, Virtualization.framework on
// macOS) and one serial queue. Every engine call and every engine report
// happens on that queue; the Machine turns the reports into the ABI's
// callbacks, each at most once, and keeps the state machine.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// The object behind a VMZHandle.
final class Machine: EngineDelegate {
    private let queue: DispatchQueue
    private static let queueKey = DispatchSpecificKey<ObjectIdentifier>()
    private var engine: VMEngine!
    private let callbacks: VMZCallbacks
    private let name: String

    typealias Completion = (VMZCompletionCallback?, UnsafeMutableRawPointer?)

    // State, touched only on `queue`.
    private var state = VMZ_STATE_CREATED
    private var released = false
    private var startCompletion: Completion?
    private var stopCompletions: [Completion] = []
    private var pauseCompletion: Completion?
    private var resumeCompletion: Completion?
    private var forcing = false
    /// Counts `stop` calls, so that a grace period that ran out belongs to
    /// the current one.
    private var graceGeneration = 0
    /// Set by a `release` from inside a callback: this object keeps itself
    /// alive until the VM has ended, then releases the caller's context.
    private var selfRetain: Machine?
    /// A release from inside a callback came while the VM was active: the
    /// VM's end finishes it.
    private var releaseAfterEnd = false
    /// release_context was called (exactly once).
    private var contextReleased = false
    /// Signalled when the VM has ended (for `release` to wait on).
    private let ended = DispatchSemaphore(value: 0)
    private var endedSignalled = false
    /// vmz_vsock_connect_async calls not yet answered (Vsock.swift).
    let vsockConnects = PendingVsockConnects()

    private static let counterLock = Lock()
    private static var counter = 0

    init(config: ParsedConfig, callbacks: VMZCallbacks) throws {
        let n = Machine.counterLock.withLock { () -> Int in
            Machine.counter += 1
            return Machine.counter
        }
        name = "vm\(n)"
        queue = DispatchQueue(label: "vmz.\(name)")
        self.callbacks = callbacks
        queue.setSpecific(key: Machine.queueKey, value: ObjectIdentifier(self))
        engine = try PlatformEngine(config: config, queue: queue, delegate: self)
        log(.debug, "\(name): created")
    }

    deinit { log(.trace, "\(name): freed") }

    /// Runs `body` on the queue and waits, or inline when already on it
    /// (calls made from inside a callback).
    private var onOwnQueue: Bool {
        DispatchQueue.getSpecific(key: Machine.queueKey) == ObjectIdentifier(self)
    }

    private func sync<T>(_ body: () throws -> T) rethrows -> T {
        if onOwnQueue {
            return try body()
        }
        return try queue.sync(execute: body)
    }

    var currentState: VMZState { sync { state } }

    /// For device code in other files (Vsock.swift): runs `body` on the
    /// queue with the engine and the state; a released VM is refused.
    func withEngine<T>(_ body: (VMEngine, VMZState) throws -> T) throws -> T {
        try sync {
            guard !released else { throw BridgeError(VMZ_ERROR_INVALID_STATE, "the VM was released") }
            return try body(engine, state)
        }
    }

    /// Whether the caller runs on this VM's queue (inside its callback).
    var isOnOwnQueue: Bool { onOwnQueue }

    /// Runs `body` later on the VM's queue (for device code in other files).
    func onQueueLater(_ body: @escaping @Sendable () -> Void) { queue.async(execute: body) }

    /// On the queue: whether vmz_release has begun (callbacks are silenced).
    var isReleased: Bool { released }
    /// Moves to `next` and tells the caller (every transition once).
    private func setState(_ next: VMZState) {
        guard next != state else { return }
        log(.debug, "\(name): \(stateName(state)) -> \(stateName(next))")
        state = next
        callbacks.state_did_change?(callbacks.context, next)
    }

    private func refused(_ what: String) -> BridgeError {
        if released { return BridgeError(VMZ_ERROR_INVALID_STATE, "the VM was released") }
        return BridgeError(VMZ_ERROR_INVALID_STATE, "cannot \(what): the VM is \(stateName(state))")
    }

    func start(_ completion: @escaping VMZCompletionCallback, _ context: UnsafeMutableRawPointer?) throws {
        try sync {
            guard !released, state == VMZ_STATE_CREATED else { throw refused("start") }
            startCompletion = (completion, context)
            log(.info, "\(name): starting")
            setState(VMZ_STATE_STARTING)
            engine.start { [self] error in
                if let error {
                    log(.warn, "\(name): start failed: \(error.message)")
                    setState(VMZ_STATE_ERROR)
                    finishStart(error)
                    callDidEnd(VMZ_END_START_FAILED, 0, error)
                    lifeEnded()
                } else if state == VMZ_STATE_STARTING {
                    log(.info, "\(name): running")
                    setState(VMZ_STATE_RUNNING)
                    finishStart(nil)
                }
            }
        }
    }

    func requestStop() throws {
        try sync {
            guard !released, state == VMZ_STATE_RUNNING || state == VMZ_STATE_STOPPING else {
                throw refused("request a stop")
            }
            try engine.requestStop()
            log(.info, "\(name): stop requested")
        }
    }

    func forceStop(_ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?) throws {
        try sync {
            guard !released, isActive else { throw refused("force a stop") }
            stopCompletions.append((completion, context))
            beginForceStop()
        }
    }

    /// A stop request, then a force stop if the VM still runs `grace` later
    /// (at once when the guest cannot take the request now).
    func stop(grace: DispatchTimeInterval, _ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?) throws {
        try sync {
            guard !released, isActive else { throw refused("stop") }
            stopCompletions.append((completion, context))
            if forcing { return }
            do {
                guard state == VMZ_STATE_RUNNING else { throw refused("request a stop") }
                try engine.requestStop()
            } catch let e as BridgeError {
                log(.debug, "\(name): no graceful stop (\(e.message)); forcing")
                beginForceStop()
                return
            }
            log(.info, "\(name): stop requested, forced after \(grace)")
            graceGeneration += 1
            let generation = graceGeneration
            queue.asyncAfter(deadline: .now() + grace) { [weak self] in
                guard let self, generation == self.graceGeneration, self.isActive, !self.forcing else { return }
                log(.info, "\(self.name): the guest did not stop within the grace period; forcing")
                self.beginForceStop()
            }
        }
    }

    func pause(_ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?) throws {
        try transition("pause", from: VMZ_STATE_RUNNING, via: VMZ_STATE_PAUSING, to: VMZ_STATE_PAUSED,
                       engine.pause, \.pauseCompletion, (completion, context))
    }

    func resume(_ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?) throws {
        try transition("resume", from: VMZ_STATE_PAUSED, via: VMZ_STATE_RESUMING, to: VMZ_STATE_RUNNING,
                       engine.resume, \.resumeCompletion, (completion, context))
    }

    /// Pause or resume: `from` -> `via` now, then `to` when the engine is
    /// done (back to `from` if it failed), unless the VM ended meanwhile.
    private func transition(
        _ what: String, from: VMZState, via: VMZState, to: VMZState,
        _ operation: (@escaping (BridgeError?) -> Void) -> Void,
        _ slot: ReferenceWritableKeyPath<Machine, Completion?>, _ completion: Completion
    ) throws {
        try sync {
            guard !released, state == from else { throw refused(what) }
            self[keyPath: slot] = completion
            setState(via)
            operation { [self] error in
                guard state == via else { return }
                setState(error == nil ? to : from)
                finish(slot, error)
            }
        }
    }

    private var isActive: Bool {
        switch state {
        case VMZ_STATE_CREATED, VMZ_STATE_STOPPED, VMZ_STATE_ERROR: return false
        default: return true
        }
    }

    private func beginForceStop() {
        if !forcing {
            forcing = true
            setState(VMZ_STATE_STOPPING)
            log(.info, "\(name): force stop")
            engine.forceStop()
        }
    }

    /// Stops the VM if it runs and waits for its end (did_end reports it),
    /// answers pending completions, calls release_context; nothing is
    /// called after that. From inside one of this VM's callbacks the queue
    /// cannot wait for itself: the rest then happens on the queue after the
    /// running callback has returned (this object keeps itself alive).
    func release() {
        let onQueue = onOwnQueue
        let wait: Bool = sync {
            released = true
            if isActive {
                beginForceStop()
                return true
            }
            return false
        }
        if onQueue {
            selfRetain = self
            if wait {
                releaseAfterEnd = true
            } else {
                queue.async { self.finishRelease() }
            }
            return
        }
        if wait { ended.wait() }
        sync { finishRelease() }
    }

    private func finishRelease() {
        guard !contextReleased else { return }
        contextReleased = true
        let error = { BridgeError(VMZ_ERROR_INVALID_STATE, "the VM was released before the operation completed") }
        if startCompletion != nil { finishStart(error()) }
        let pending = stopCompletions
        stopCompletions = []
        for (cb, ctx) in pending { cb?(ctx, isActive ? error().toC() : nil) }
        finish(\.pauseCompletion, error())
        finish(\.resumeCompletion, error())
        vsockConnects.failAll(error)
        if let release = callbacks.release_context {
            release(callbacks.context)
        }
        log(.debug, "\(name): released")
        selfRetain = nil
    }

    /// Called when vmz_create fails after the callbacks were accepted.
    static func releaseContext(of callbacks: VMZCallbacks) {
        callbacks.release_context?(callbacks.context)
    }

    private func finishStart(_ error: BridgeError?) {
        finish(\.startCompletion, error)
    }

    /// Calls the completion in `slot` once (the slot is emptied first, so a
    /// callback that calls back in finds it answered).
    private func finish(_ slot: ReferenceWritableKeyPath<Machine, Completion?>, _ error: BridgeError?) {
        guard let (cb, ctx) = self[keyPath: slot] else { return }
        self[keyPath: slot] = nil
        cb?(ctx, error?.toC())
    }

    /// did_end gets its own copy of the error: the same error may also go
    /// to a completion or an ABI 1 callback, and each receiver frees its own.
    private func callDidEnd(_ reason: VMZEndReason, _ signal: Int32, _ error: BridgeError?) {
        guard let didEnd = callbacks.did_end else { return }
        didEnd(callbacks.context, reason, signal, error.map { BridgeError($0.code, $0.message).toC() })
    }

    /// The VM has ended: wakes `release`, or finishes a release that was
    /// called from inside a callback.
    private func lifeEnded() {
        if !endedSignalled {
            endedSignalled = true
            ended.signal()
        }
        if releaseAfterEnd {
            releaseAfterEnd = false
            queue.async { self.finishRelease() }
        }
    }

    // MARK: EngineDelegate

    func engineDidStop(_ how: EngineEnd) {
        // Not `state == STARTING`: a force stop moves the state to STOPPING.
        let wasStarting = startCompletion != nil
        let forced = forcing
        // A VM the caller was force-stopping ended; how is not news.
        let end: EngineEnd
        switch how {
        case .error where forced, .killed where forced: end = .forced
        default: end = how
        }
        let (reason, signal, detail) = Machine.reason(of: end)
        log(.info, "\(name): ended (\(Machine.describe(end)))")
        switch end {
        case .poweredOff, .rebooted, .forced: setState(VMZ_STATE_STOPPED)
        case .panicked, .killed, .error: setState(VMZ_STATE_ERROR)
        }

        // Ended before running: the start failed, unless the caller forced
        // the stop (the engines report a failed start through the start
        // completion, so this is mostly the forced case).
        var startError: BridgeError?
        if wasStarting {
            switch end {
            case .forced: finishStart(BridgeError(VMZ_ERROR_START_FAILED, "the VM was force-stopped while starting"))
            case .error(let e): startError = e
            default: startError = BridgeError(VMZ_ERROR_START_FAILED, "the VM ended while starting (\(Machine.describe(end)))")
            }
            if let startError { finishStart(startError) }
        }
        let pending = stopCompletions
        stopCompletions = []
        for (cb, ctx) in pending { cb?(ctx, nil) }
        let over = { BridgeError(VMZ_ERROR_INVALID_STATE, "the VM ended (\(Machine.describe(end))) before the operation completed") }
        finish(\.pauseCompletion, over())
        finish(\.resumeCompletion, over())
        vsockConnects.failAll(over)

        // The ABI 1 callbacks: a VM that ended on its own, once running.
        if !forced && startError == nil && !released {
            switch end {
            case .poweredOff, .rebooted:
                callbacks.guest_did_stop?(callbacks.context)
            case .panicked(let e), .killed(_, let e), .error(let e):
                if let cb = callbacks.did_stop_with_error { cb(callbacks.context, e.toC()) }
            case .forced:
                break
            }
        }
        if let startError {
            callDidEnd(VMZ_END_START_FAILED, 0, startError)
        } else {
            callDidEnd(reason, signal, detail)
        }
        lifeEnded()
    }

    func engineNetworkDidDisconnect(index: Int, error: BridgeError) {
        log(.warn, "\(name): network device \(index) disconnected: \(error.message)")
        callbacks.network_did_disconnect?(callbacks.context, UInt32(index), error.toC())
    }

    private static func reason(of end: EngineEnd) -> (VMZEndReason, Int32, BridgeError?) {
        switch end {
        case .poweredOff: return (VMZ_END_POWERED_OFF, 0, nil)
        case .rebooted: return (VMZ_END_REBOOTED, 0, nil)
        case .panicked(let e): return (VMZ_END_PANICKED, 0, e)
        case .killed(let signal, let e): return (VMZ_END_KILLED_BY_SIGNAL, signal, e)
        case .error(let e): return (VMZ_END_ENGINE_ERROR, 0, e)
        case .forced: return (VMZ_END_FORCED, 0, nil)
        }
    }

    private static func describe(_ end: EngineEnd) -> String {
        switch end {
        case .poweredOff: return "the guest powered off"
        case .rebooted: return "the guest rebooted"
        case .panicked(let e): return "the guest panicked: \(e.message)"
        case .killed(_, let e): return e.message
        case .forced: return "forced"
        case .error(let e): return "error: \(e.message)"
        }
    }
}

func stateName(_ s: VMZState) -> String {
    switch s {
    case VMZ_STATE_CREATED: return "created (not started)"
    case VMZ_STATE_STARTING: return "starting"
    case VMZ_STATE_RUNNING: return "running"
    case VMZ_STATE_PAUSING: return "pausing"
    case VMZ_STATE_PAUSED: return "paused"
    case VMZ_STATE_RESUMING: return "resuming"
    case VMZ_STATE_STOPPING: return "stopping"
    case VMZ_STATE_STOPPED: return "stopped"
    default: return "in error"
    }
}
