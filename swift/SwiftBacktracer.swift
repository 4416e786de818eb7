// The Swift runtime's crash handler (backtracer), switched off for library
// use by csupport/vmz_signals.c before the runtime starts; see there.

enum SwiftBacktracer {
    /// Logs, once, what was done (and links vmz_signals.o, whose pre-init
    /// function does the work, into the host).
    static let noted: Void = {
        switch vmz_swift_backtracer_state() {
        case 0: log(.debug, "Swift backtracer off (SWIFT_BACKTRACE=enable=no for the runtime only); set SWIFT_BACKTRACE to choose")
        case 2: log(.debug, "Swift backtracer: SWIFT_BACKTRACE set by the host, kept")
        default: break
        }
    }()
}
