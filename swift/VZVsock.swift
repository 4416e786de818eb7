// The macOS engine's vsock: VZVirtioSocketDevice, every call on the VM's
// queue (the framework requires it; calling setSocketListener elsewhere
// crashed in public reports). Connections reach the caller as duplicates
// of the framework's descriptors; the framework's connection object is
// closed right after (UNCONFIRMED on a Mac that the duplicate then keeps
// the connection open, as public code relies on).

#if canImport(Virtualization)
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Virtualization

/// A duplicate of the connection's descriptor (close-on-exec); the
/// connection object is closed.
private func takeDescriptor(_ connection: VZVirtioSocketConnection) -> Int32 {
    let fd = fcntl(connection.fileDescriptor, F_DUPFD_CLOEXEC, 3)
    connection.close()
    return fd
}

/// One listening port: the framework's listener and its delegate.
final class VZVsockListener: NSObject, VZVirtioSocketListenerDelegate {
    let listener = VZVirtioSocketListener()
    private let accept: (Int32) -> Void

    init(accept: @escaping (Int32) -> Void) {
        self.accept = accept
        super.init()
        listener.delegate = self
    }

    func listener(
        _ listener: VZVirtioSocketListener, shouldAcceptNewConnection connection: VZVirtioSocketConnection,
        from socketDevice: VZVirtioSocketDevice
    ) -> Bool {
        let fd = takeDescriptor(connection)
        guard fd >= 0 else {
            log(.warn, "vsock: cannot duplicate an accepted connection: \(String(cString: strerror(errno)))")
            return false
        }
        accept(fd)
        return true
    }
}

extension VZEngine {
    private func socketDevice() throws -> VZVirtioSocketDevice {
        guard let device = vm?.socketDevices.first as? VZVirtioSocketDevice else {
            throw BridgeError(VMZ_ERROR_DEVICE, "the VM has no vsock device (enable vsock in its config)")
        }
        return device
    }

    func vsockConnect(port: UInt32, timeout: Double, completion: @escaping (Result<Int32, BridgeError>) -> Void) {
        let device: VZVirtioSocketDevice
        do {
            device = try socketDevice()
        } catch let e as BridgeError {
            completion(.failure(e))
            return
        } catch {
            completion(.failure(BridgeError(VMZ_ERROR_INTERNAL, "\(error)")))
            return
        }
        // The framework may never answer when nobody listens: the first of
        // its answer and the timeout completes.
        var done = false
        let timeoutItem = DispatchWorkItem {
            guard !done else { return }
            done = true
            completion(.failure(BridgeError(
                VMZ_ERROR_CONNECTION_REFUSED, "vsock port \(port): no answer within \(timeout) s (nobody listens there?)")))
        }
        queue.asyncAfter(deadline: .now() + timeout, execute: timeoutItem)
        device.connect(toPort: port) { result in
            switch result {
            case .success(let connection):
                guard !done else {
                    connection.close()
                    return
                }
                done = true
                timeoutItem.cancel()
                let fd = takeDescriptor(connection)
                completion(fd >= 0 ? .success(fd) : .failure(BridgeError.system("fcntl(F_DUPFD_CLOEXEC)", errno, "vsock")))
            case .failure(let error):
                guard !done else { return }
                done = true
                timeoutItem.cancel()
                let ns = error as NSError
                completion(.failure(BridgeError(
                    VMZ_ERROR_CONNECTION_REFUSED,
                    "vsock port \(port): \(ns.localizedDescription) [\(ns.domain) code \(ns.code)]")))
            }
        }
    }

    func vsockListen(port: UInt32, accept: @escaping (Int32) -> Void) throws {
        guard vsockListeners[port] == nil else {
            throw BridgeError(VMZ_ERROR_PORT_IN_USE, "the host already listens on vsock port \(port) of this VM")
        }
        let device = try socketDevice()
        let entry = VZVsockListener(accept: accept)
        device.setSocketListener(entry.listener, forPort: port)
        vsockListeners[port] = entry
    }

    func vsockStopListening(port: UInt32) throws {
        guard vsockListeners.removeValue(forKey: port) != nil else {
            throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "the host does not listen on vsock port \(port) of this VM")
        }
        try socketDevice().removeSocketListener(forPort: port)
    }
}
#endif
