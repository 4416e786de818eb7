// Logging through the caller's vmz_set_log_callback sink.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
