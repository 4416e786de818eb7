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

    // State, touched only on `queue`.
    private var state = VMZ_STATE_CREATED
    private var released = false
    private var startCompletion: (VMZCompletionCallback, UnsafeMutableRawPointer?)?
    private var stopCompletions: [(VMZCompletionCallback?, UnsafeMutableRawPointer?)] = []
    private var forcing = false
    /// Signalled when the VM has ended (for `release` to wait on).
    private let ended = DispatchSemaphore(value: 0)
    private var endedSignalled = false

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

    /// On the queue: whether vmz_release has begun (callbacks are silenced).
    var isReleased: Bool { released }

    func start(_ completion: @escaping VMZCompletionCallback, _ context: UnsafeMutableRawPointer?) throws {
        try sync {
            guard !released else { throw BridgeError(VMZ_ERROR_INVALID_STATE, "the VM was released") }
            guard state == VMZ_STATE_CREATED else {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "cannot start: the VM is \(stateName(state))")
            }
            state = VMZ_STATE_STARTING
            startCompletion = (completion, context)
            log(.info, "\(name): starting")
            engine.start { [self] error in
                if let error {
                    log(.warn, "\(name): start failed: \(error.message)")
                    state = VMZ_STATE_ERROR
                    finishStart(error)
                    signalEnded()
                } else if state == VMZ_STATE_STARTING {
                    log(.info, "\(name): running")
                    state = VMZ_STATE_RUNNING
                    finishStart(nil)
                }
            }
        }
    }

    func requestStop() throws {
        try sync {
            guard state == VMZ_STATE_RUNNING || state == VMZ_STATE_STOPPING else {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "cannot request a stop: the VM is \(stateName(state))")
            }
            try engine.requestStop()
            log(.info, "\(name): stop requested")
        }
    }

    func forceStop(_ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?) throws {
        try sync {
            guard isActive else {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "cannot force a stop: the VM is \(stateName(state))")
            }
            stopCompletions.append((completion, context))
            beginForceStop()
        }
    }

    private var isActive: Bool {
        state == VMZ_STATE_STARTING || state == VMZ_STATE_RUNNING || state == VMZ_STATE_STOPPING
    }

    private func beginForceStop() {
        if !forcing {
            forcing = true
            state = VMZ_STATE_STOPPING
            log(.info, "\(name): force stop")
            engine.forceStop()
        }
    }

    /// Stops the VM if it runs, waits for its end (unless called from inside
    /// one of its callbacks), answers pending completions, and silences
    /// every callback. Then calls release_context.
    func release() {
        // From inside one of this VM's callbacks the queue cannot wait for
        // itself: the engine then finishes on its own, silenced.
        let onQueue = onOwnQueue
        let wait: Bool = sync {
            released = true
            if isActive {
                beginForceStop()
                return !onQueue
            }
            return false
        }
        if wait { ended.wait() }
        sync {
            let error = { BridgeError(VMZ_ERROR_INVALID_STATE, "the VM was released before the operation completed") }
            if startCompletion != nil { finishStart(error()) }
            let pending = stopCompletions
            stopCompletions = []
            for (cb, ctx) in pending { cb?(ctx, isActive ? error().toC() : nil) }
            if let release = callbacks.release_context {
                release(callbacks.context)
            }
            log(.debug, "\(name): released")
        }
    }

    /// Called when vmz_create fails after the callbacks were accepted.
    static func releaseContext(of callbacks: VMZCallbacks) {
        callbacks.release_context?(callbacks.context)
    }

    private func finishStart(_ error: BridgeError?) {
        guard let (cb, ctx) = startCompletion else { return }
        startCompletion = nil
        cb(ctx, error?.toC())
    }

    private func signalEnded() {
        if !endedSignalled {
            endedSignalled = true
            ended.signal()
        }
    }

    // MARK: EngineDelegate

    func engineDidStop(_ how: EngineStop) {
        // Not `state == STARTING`: a force stop moves the state to STOPPING.
        let wasStarting = startCompletion != nil
        let forced = forcing
        switch how {
        case .guest, .forced:
            state = VMZ_STATE_STOPPED
        case .error:
            // A VM the caller was force-stopping ended; how is not news.
            state = forced ? VMZ_STATE_STOPPED : VMZ_STATE_ERROR
        }
        log(.info, "\(name): ended (\(describe(how)))")

        if wasStarting {
            let error: BridgeError
            switch how {
            case .error(let e): error = forced ? stoppedWhileStarting() : e
            case .guest: error = BridgeError(VMZ_ERROR_START_FAILED, "the guest stopped before the VM finished starting")
            case .forced: error = stoppedWhileStarting()
            }
            finishStart(error)
        }
        let pending = stopCompletions
        stopCompletions = []
        for (cb, ctx) in pending { cb?(ctx, nil) }

        if !forced && !wasStarting && !released {
            switch how {
            case .guest:
                callbacks.guest_did_stop?(callbacks.context)
            case .error(let e):
                if let cb = callbacks.did_stop_with_error {
                    cb(callbacks.context, e.toC())
                }
            case .forced:
                break
            }
        }
        signalEnded()
    }

    private func stoppedWhileStarting() -> BridgeError {
        BridgeError(VMZ_ERROR_START_FAILED, "the VM was force-stopped while starting")
    }

    private func describe(_ how: EngineStop) -> String {
        switch how {
        case .guest: return "guest stopped"
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
    case VMZ_STATE_STOPPING: return "stopping"
    case VMZ_STATE_STOPPED: return "stopped"
    default: return "in error"
    }
}
