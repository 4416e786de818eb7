// How a child process of the bridge ended (QEMU, a decompressor), read
// with waitid on our own child only (vmz_wait_child), and said in words.

#if os(Linux)
import Glibc

struct ChildExit: Equatable {
    /// CLD_EXITED, CLD_KILLED or CLD_DUMPED.
    var code: Int32
    /// The exit status, or the signal number.
    var status: Int32

    var exitedCleanly: Bool { code == Int32(CLD_EXITED) && status == 0 }
    var signal: Int32? { code == Int32(CLD_EXITED) ? nil : status }

    /// "exited with status 70", "was killed by signal 9 (Killed)".
    var description: String {
        if code == Int32(CLD_EXITED) { return "exited with status \(status)" }
        if code == -1 {
            // The host started ignoring SIGCHLD after the spawn: the kernel
            // reaped the process.
            return "ended, how is unknown (\(String(cString: strerror(status))): does this process ignore SIGCHLD?)"
        }
        let name = strsignal(status).map { String(cString: $0) } ?? "signal \(status)"
        return "was killed by signal \(status) (\(name))\(code == Int32(CLD_DUMPED) ? ", core dumped" : "")"
    }

    /// Waits for and reaps the child `pid` of vmz_spawn; it must have ended
    /// or be about to (its pidfd was readable, or it was SIGKILLed).
    static func reap(_ pid: pid_t) -> ChildExit {
        var code: Int32 = 0
        var status: Int32 = 0
        let rc = vmz_wait_child(pid, &code, &status)
        if rc != 0 {
            log(.warn, "waitid(\(pid)): \(String(cString: strerror(rc)))")
            return ChildExit(code: -1, status: rc)
        }
        return ChildExit(code: code, status: status)
    }
}
#endif
