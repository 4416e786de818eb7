// Registries of the live objects handed to C (handles, errors).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
