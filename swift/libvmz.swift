// The C ABI of include/libvmz.h: thin @_cdecl exports over Machine and the
// platform engine. Each function checks its pointers, converts, and hands
// errors to the caller per the header's ownership rules.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// The Machine behind a live handle, or nil (NULL, released, or never ours).
private func machine(_ handle: VMZHandle?) -> Machine? {
    guard let handle else { return nil }
    return Registry.handles.object(handle, as: Machine.self)
}

private func invalidHandle() -> BridgeError {
    BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "invalid VM handle (NULL or already released)")
}

/// Runs `body`; a thrown error goes to `out`. Returns whether it succeeded.
private func attempt(_ out: UnsafeMutablePointer<VMZErrorRef?>?, _ body: () throws -> Void) -> Bool {
    do {
        try body()
        return true
    } catch let error as BridgeError {
        error.store(into: out)
    } catch {
        BridgeError(VMZ_ERROR_INTERNAL, "\(error)").store(into: out)
    }
    return false
}

@_cdecl("vmz_abi_version")
public func vmz_abi_version() -> UInt32 {
    UInt32(VMZ_ABI_VERSION)
}

@_cdecl("vmz_get_limits")
public func vmz_get_limits(_ limits: UnsafeMutablePointer<VMZLimits>?, _ error: UnsafeMutablePointer<VMZErrorRef?>?) -> Bool {
    attempt(error) {
        guard let limits else { throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "limits is NULL") }
        let size = Int(limits.pointee.struct_size)
        guard size >= MemoryLayout<VMZLimits>.size else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "limits struct_size is \(size), expected at least \(MemoryLayout<VMZLimits>.size)")
        }
        let l = try PlatformEngine.limits()
        limits.pointee.min_cpu_count = UInt32(l.minCPUs)
        limits.pointee.max_cpu_count = UInt32(l.maxCPUs)
        limits.pointee.min_memory_size = l.minMemory
        limits.pointee.max_memory_size = l.maxMemory
        limits.pointee.max_command_line_length = UInt64(l.maxCommandLine)
    }
}

/// Parses and validates a config, generic checks then the engine's.
private func parse(_ config: UnsafePointer<VMZConfig>?) throws -> ParsedConfig {
    let parsed = try ParsedConfig(config, limits: PlatformEngine.limits())
    try PlatformEngine.validate(parsed)
    return parsed
}

@_cdecl("vmz_validate_config")
public func vmz_validate_config(_ config: UnsafePointer<VMZConfig>?, _ error: UnsafeMutablePointer<VMZErrorRef?>?) -> Bool {
    attempt(error) { _ = try parse(config) }
}

@_cdecl("vmz_create")
public func vmz_create(
    _ config: UnsafePointer<VMZConfig>?, _ callbacks: UnsafePointer<VMZCallbacks>?,
    _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> VMZHandle? {
    var cbs = VMZCallbacks()
    if let callbacks {
        let size = Int(callbacks.pointee.struct_size)
        let oldest = Int(VMZ_CALLBACKS_SIZE_V2)
        guard size >= oldest else {
            BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "callbacks struct_size is \(size), expected at least \(oldest)").store(into: error)
            // The struct cannot be trusted, so neither can its release_context.
            return nil
        }
        // An older caller's smaller struct: the fields it lacks stay NULL.
        withUnsafeMutableBytes(of: &cbs) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: callbacks, count: min(size, dst.count)))
        }
    }
    var created: Machine?
    let ok = attempt(error) {
        if ForkGuard.inForkedChild { throw ForkGuard.error("vmz_create") }
        ForkGuard.claim()
        SwiftBacktracer.noted
        created = try Machine(config: parse(config), callbacks: cbs)
    }
    guard ok, let created else {
        Machine.releaseContext(of: cbs)
        return nil
    }
    let handle = VMZHandle(Unmanaged.passRetained(created).toOpaque())
    Registry.handles.insert(handle)
    return handle
}

@_cdecl("vmz_start")
public func vmz_start(
    _ handle: VMZHandle?, _ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        if ForkGuard.inForkedChild { throw ForkGuard.error("vmz_start") }
        guard let m = machine(handle) else { throw invalidHandle() }
        guard let completion else { throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "completion is NULL") }
        try m.start(completion, context)
    }
}

@_cdecl("vmz_request_stop")
public func vmz_request_stop(_ handle: VMZHandle?, _ error: UnsafeMutablePointer<VMZErrorRef?>?) -> Bool {
    attempt(error) {
        if ForkGuard.inForkedChild { throw ForkGuard.error("vmz_request_stop") }
        guard let m = machine(handle) else { throw invalidHandle() }
        try m.requestStop()
    }
}

@_cdecl("vmz_force_stop")
public func vmz_force_stop(
    _ handle: VMZHandle?, _ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        if ForkGuard.inForkedChild { throw ForkGuard.error("vmz_force_stop") }
        guard let m = machine(handle) else { throw invalidHandle() }
        try m.forceStop(completion, context)
    }
}

@_cdecl("vmz_stop")
public func vmz_stop(
    _ handle: VMZHandle?, _ graceMS: UInt64, _ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        try m.stop(grace: .milliseconds(Int(min(graceMS, UInt64(Int32.max)))), completion, context)
    }
}

@_cdecl("vmz_pause")
public func vmz_pause(
    _ handle: VMZHandle?, _ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        try m.pause(completion, context)
    }
}

@_cdecl("vmz_resume")
public func vmz_resume(
    _ handle: VMZHandle?, _ completion: VMZCompletionCallback?, _ context: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        try m.resume(completion, context)
    }
}

@_cdecl("vmz_get_state")
public func vmz_get_state(_ handle: VMZHandle?) -> VMZState {
    if ForkGuard.inForkedChild { return VMZ_STATE_ERROR }
    return machine(handle)?.currentState ?? VMZ_STATE_ERROR
}

@_cdecl("vmz_release")
public func vmz_release(_ handle: VMZHandle?) {
    guard let handle else { return }
    // The parent's VM: left alone (and its memory to the child's exit).
    if ForkGuard.inForkedChild { return }
    guard Registry.handles.remove(handle) else {
        log(.error, "vmz_release: not a live handle (released twice?); ignored")
        return
    }
    let m = Unmanaged<Machine>.fromOpaque(UnsafeRawPointer(handle))
    m.takeUnretainedValue().release()
    m.release()
}

@_cdecl("vmz_run_loop")
public func vmz_run_loop() {
    dispatchMain()
}

/// The BridgeError behind a live error reference, or nil.
private func bridgeError(_ error: VMZErrorRef?) -> BridgeError? {
    guard let error else { return nil }
    return Registry.errors.object(error, as: BridgeError.self)
}

@_cdecl("vmz_error_code")
public func vmz_error_code(_ error: VMZErrorRef?) -> Int32 {
    guard let e = bridgeError(error) else { return 0 }
    return Int32(bitPattern: e.code.rawValue)
}

@_cdecl("vmz_error_message")
public func vmz_error_message(_ error: VMZErrorRef?) -> UnsafePointer<CChar>? {
    bridgeError(error).map { UnsafePointer($0.cMessage) }
}

@_cdecl("vmz_error_free")
public func vmz_error_free(_ error: VMZErrorRef?) {
    guard let error else { return }
    guard Registry.errors.remove(error) else {
        log(.error, "vmz_error_free: not a live error (freed twice?); ignored")
        return
    }
    Unmanaged<BridgeError>.fromOpaque(UnsafeRawPointer(error)).release()
}

@_cdecl("vmz_set_log_callback")
public func vmz_set_log_callback(_ callback: VMZLogCallback?, _ context: UnsafeMutableRawPointer?, _ level: VMZLogLevel) {
    LogSink.shared.set(callback, context, level.rawValue)
}

@_cdecl("vmz_live_objects")
public func vmz_live_objects() -> VMZLiveObjects {
    VMZLiveObjects(handles: UInt64(Registry.handles.count), errors: UInt64(Registry.errors.count))
}

// MARK: vsock (Vsock.swift)

@_cdecl("vmz_vsock_connect")
public func vmz_vsock_connect(
    _ handle: VMZHandle?, _ port: UInt32, _ timeoutMS: UInt32, _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Int32 {
    var fd: Int32 = -1
    _ = attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        fd = try m.vsockConnect(port: port, timeoutMS: timeoutMS)
    }
    return fd
}

@_cdecl("vmz_vsock_connect_async")
public func vmz_vsock_connect_async(
    _ handle: VMZHandle?, _ port: UInt32, _ timeoutMS: UInt32, _ callback: VMZVsockConnectCallback?,
    _ context: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        guard let callback else { throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "callback is NULL") }
        try m.vsockConnectAsync(port: port, timeoutMS: timeoutMS, callback: callback, context: context)
    }
}

@_cdecl("vmz_vsock_listen")
public func vmz_vsock_listen(
    _ handle: VMZHandle?, _ port: UInt32, _ callback: VMZVsockAcceptCallback?, _ context: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        guard let callback else { throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "callback is NULL") }
        try m.vsockListen(port: port, callback: callback, context: context)
    }
}

@_cdecl("vmz_vsock_stop_listening")
public func vmz_vsock_stop_listening(
    _ handle: VMZHandle?, _ port: UInt32, _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        try m.vsockStopListening(port: port)
    }
}

// MARK: Memory balloon (Balloon.swift)

@_cdecl("vmz_set_memory_target")
public func vmz_set_memory_target(
    _ handle: VMZHandle?, _ bytes: UInt64, _ error: UnsafeMutablePointer<VMZErrorRef?>?
) -> Bool {
    attempt(error) {
        guard let m = machine(handle) else { throw invalidHandle() }
        try m.setMemoryTarget(bytes)
    }
}
