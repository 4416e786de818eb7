// Why QEMU ended: what it said over QMP while it ran (SHUTDOWN with its
// reason, GUEST_PANICKED), how its process exited, and its last stderr
// words, turned into one EngineEnd.
//
// QEMU runs with -no-reboot (a guest reset ends QEMU with SHUTDOWN reason
// "guest-reset") and with a pvpanic device and -action panic=shutdown (a
// panic the guest reports through its pvpanic driver ends QEMU with
// GUEST_PANICKED, then SHUTDOWN reason "guest-panic"). A SIGTERM/SIGINT/
// SIGHUP from the host makes QEMU shut down by itself (SHUTDOWN reason
// "host-signal", exit status 0; its stderr names the signal), SIGKILL kills
// it outright.

#if os(Linux)
import Glibc

struct QEMUOutcome {
    /// The SHUTDOWN event's data, if QEMU sent one.
    private(set) var shutdown: (guest: Bool, reason: String)?
    /// GUEST_PANICKED was seen.
    private(set) var panicked = false

    /// Notes a QMP event that bears on the end.
    mutating func record(event: String, data: JSON?) {
        switch event {
        case "SHUTDOWN":
            shutdown = (data?["guest"]?.bool ?? false, data?["reason"]?.string ?? "")
        case "GUEST_PANICKED":
            panicked = true
        default:
            break
        }
    }

    /// The end, once QEMU has exited with `status`; `forced` when vmz
    /// killed it; `stderr` is the tail of what QEMU wrote there.
    func classify(_ status: ChildExit, forced: Bool, stderr: String) -> EngineEnd {
        if forced { return .forced }
        let note = stderr.isEmpty ? "" : ": \(stderr)"
        if panicked || shutdown?.reason == "guest-panic" {
            return .panicked(BridgeError(VMZ_ERROR_RUNTIME, "the guest kernel panicked (reported by its pvpanic driver)"))
        }
        if let signal = status.signal {
            return .killed(signal: signal, BridgeError(VMZ_ERROR_RUNTIME, "QEMU \(status.description)\(note)"))
        }
        switch shutdown?.reason {
        case "guest-shutdown"?:
            return .poweredOff
        case "guest-reset"?:
            return .rebooted
        case "host-signal"?:
            // "qemu-system-x86_64: terminating on signal 15 from pid 42 (...)"
            if let n = QEMUOutcome.terminatingSignal(in: stderr) {
                return .killed(signal: n, BridgeError(VMZ_ERROR_RUNTIME, "QEMU was stopped by signal \(n) (\(signalName(n))) from the host"))
            }
            return .error(BridgeError(VMZ_ERROR_RUNTIME, "QEMU was stopped by a signal from the host\(note)"))
        case let reason?:
            return .error(BridgeError(VMZ_ERROR_RUNTIME, "QEMU shut down by itself (\(reason))\(note)"))
        case nil:
            return .error(BridgeError(VMZ_ERROR_RUNTIME, "QEMU \(status.description)\(note)"))
        }
    }

    /// The signal number in QEMU's "terminating on signal N" line.
    static func terminatingSignal(in stderr: String) -> Int32? {
        let marker = "terminating on signal "
        for line in stderr.split(separator: "\n").reversed() {
            guard let at = line.firstRange(of: marker) else { continue }
            return Int32(line[at.upperBound...].prefix { $0.isNumber })
        }
        return nil
    }
}

/// "SIGKILL" for 9, and so on for the signals that end processes, or
/// "signal N".
func signalName(_ n: Int32) -> String {
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
        SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE",
        SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2",
    ]
    return names[n] ?? "signal \(n)"
}
#endif
