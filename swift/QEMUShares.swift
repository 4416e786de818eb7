// The Linux engine's virtio-fs shares: one virtiofsd per shared directory
// (Virtiofsd.swift), each connected to QEMU by a socket pair made here:
// the bridge listens on a socket in the VM's private directory (0700),
// connects to it itself (the connection waits in the backlog), hands the
// listener to virtiofsd (--fd) and the connected end to QEMU (a chardev
// `fd=`), then removes the name. No path is shared with anyone, and
// nothing can connect in between.

#if os(Linux)
import Glibc
import Dispatch

enum QEMUShares {
    /// Starts a virtiofsd for each share, in order; returns the daemons and
    /// QEMU's ends of their sockets (the caller closes those once QEMU has
    /// its copies). On failure, stops what it started.
    static func start(
        _ shares: [Share], binary: String, directory: String, stderr: Int32, queue: DispatchQueue,
        onExit: @escaping (Virtiofsd) -> Void
    ) throws -> (daemons: [Virtiofsd], clientFDs: [Int32]) {
        var daemons: [Virtiofsd] = []
        var clients: [Int32] = []
        do {
            for share in shares {
                let path = "\(directory)/fs\(share.index).sock"
                let listener = try listenUnix(path, backlog: 1, what: "virtiofsd socket of \(share.name)")
                defer {
                    close(listener)
                    unlink(path)
                }
                clients.append(try connectUnix(path, what: share.name))
                daemons.append(try Virtiofsd(
                    binary: binary, share: share, listener: listener, stderr: stderr, queue: queue, onExit: onExit))
            }
        } catch {
            for d in daemons { d.stop() }
            for fd in clients { close(fd) }
            throw error
        }
        return (daemons, clients)
    }

    private static func connectUnix(_ path: String, what: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw BridgeError.system("socket", errno, what) }
        let rc = withUnixAddress(path) { connect(fd, $0, $1) } ?? -1
        if rc != 0 {
            let e = errno
            close(fd)
            throw BridgeError.system("connect", e, what)
        }
        return fd
    }

    /// QEMU's arguments for `shares`, whose connected sockets are
    /// `childFDs` (descriptor numbers in the QEMU process), in order. The
    /// guest memory must be shareable (QEMUSharedMemory.swift).
    static func arguments(_ shares: [Share], childFDs: [Int32]) -> [String] {
        var args: [String] = []
        for (share, fd) in zip(shares, childFDs) {
            let id = "vmz-fs\(share.index)"
            // The tag holds only A-Z a-z 0-9 . _ - (ShareConfig): no
            // escaping needed in QEMU's key=value syntax.
            args += ["-chardev", "socket,id=\(id),fd=\(fd)"]
            args += ["-device", "vhost-user-fs-pci,chardev=\(id),tag=\(share.tag),id=\(id)-device"]
        }
        return args
    }
}
#endif
