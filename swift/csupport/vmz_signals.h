/* The Swift runtime's crash handler, switched off for library use
 * (internal, not ABI).
 *
 * On Linux the Swift runtime (5.9+) installs handlers for SIGABRT, SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGQUIT at load time, to print a
 * backtrace through swift-backtrace. For a library that changes its host's
 * signal behaviour: such a signal sent with kill() (a watchdog's SIGABRT)
 * left the host alive, one thread spinning. vmz_signals.c sets
 * SWIFT_BACKTRACE=enable=no before the runtime reads it (an ELF pre-init
 * function of the executable) and removes it from the environment again
 * right after, so the host keeps the signal behaviour it would have without
 * vmz. A host that wants Swift's backtraces sets SWIFT_BACKTRACE itself
 * (e.g. SWIFT_BACKTRACE=enable=yes): vmz then leaves it alone. */
#ifndef VMZ_SIGNALS_H
#define VMZ_SIGNALS_H

#ifdef __cplusplus
extern "C" {
#endif

/* 0: vmz disabled the backtracer; 2: SWIFT_BACKTRACE was set by the user
 * and kept; 1: nothing done (not an ELF platform). Calling it also links
 * vmz_signals.o (and its pre-init function) into the executable. */
int vmz_swift_backtracer_state(void);

#ifdef __cplusplus
}
#endif

#endif
