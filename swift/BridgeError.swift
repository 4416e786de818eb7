// The bridge's error object, what a VMZErrorRef points to.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The bridge's error object: what a `VMZErrorRef` points to. Immutable once
/// made; handed to C retained, released by `vmz_error_free`.
final class BridgeError: Error, @unchecked Sendable, CustomStringConvertible {
    let code: VMZErrorCode
    let message: String
    /// The message as a C string, owned by this object.
    let cMessage: UnsafeMutablePointer<CChar>

    init(_ code: VMZErrorCode, _ message: String) {
        self.code = code
        self.message = message
        cMessage = strdup(message)!
    }

    deinit { free(cMessage) }

    var description: String { "\(code.rawValue): \(message)" }

    /// An error that names a failed system call and its errno.
    static func system(_ call: String, _ err: Int32 = errno, _ what: String = "") -> BridgeError {
        let detail = String(cString: strerror(err))
        let prefix = what.isEmpty ? "" : "\(what): "
        return BridgeError(VMZ_ERROR_IO, "\(prefix)\(call) failed: \(detail) (errno \(err))\(descriptorLimitNote(err))")
    }

    /// Hands the error to C: the receiver owns one retain and frees it with
    /// `vmz_error_free`. Counted in the live-error registry.
    func toC() -> VMZErrorRef {
        let ref = VMZErrorRef(Unmanaged.passRetained(self).toOpaque())
        Registry.errors.insert(ref)
        return ref
    }

    /// Stores the error in a caller's out-parameter if it gave one (the
    /// caller then owns it); otherwise the error is simply dropped.
    func store(into out: UnsafeMutablePointer<VMZErrorRef?>?) {
        guard let out else {
            log(.debug, "error not returned (no out-parameter): \(message)")
            return
        }
        out.pointee = toC()
    }
}
