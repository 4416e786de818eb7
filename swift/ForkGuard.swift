// fork() without exec: a child process has a copy of every handle, but not
// the VMs' queues and threads, and the QEMU processes are its parent's.
// The bridge remembers the process that first used it; in any other (a
// forked child) every call on a VM fails with INVALID_STATE, vmz_get_state
// says ERROR, and vmz_release does nothing: the child never stops, kills or
// waits for its parent's VMs, and never blocks on a queue whose threads did
// not survive the fork. (libdispatch cannot be used after fork() in a
// process that used it, so the child cannot create VMs either; exec first.)

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum ForkGuard {
    /// The process that first used the bridge (0: not yet).
    private static var owner: pid_t = 0
    private static let lock = Lock()

    /// Records the calling process as the bridge's user, once.
    static func claim() {
        lock.withLock {
            if owner == 0 { owner = getpid() }
        }
    }

    /// True in a child forked from the process that used the bridge. Reads
    /// without the lock: after fork() the lock may be held forever by a
    /// thread that does not exist in the child. (`owner` is written once,
    /// before any VM exists.)
    static var inForkedChild: Bool {
        let o = owner
        return o != 0 && o != getpid()
    }

    static func error(_ what: String) -> BridgeError {
        BridgeError(
            VMZ_ERROR_INVALID_STATE,
            "\(what): this process (\(getpid())) is a fork() child of process \(owner), which uses vmz; "
                + "its VMs belong to the parent, and vmz cannot run in the child: exec a new program first"
        )
    }
}
