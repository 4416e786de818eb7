/* vmz_relay_start: copies bytes from one descriptor to another on a
 * detached thread of its own, for a serial descriptor of the caller's that
 * QEMU must not get (internal, not ABI; Linux only).
 *
 * Why: QEMU sets O_NONBLOCK on its stdin and stdout. A pipe or terminal is
 * reopened for it (a description of its own), but a socket, a regular file
 * or anything else that cannot be reopened would share that flag with the
 * caller (a host whose stdout is the journal's socket then fails its own
 * writes with EAGAIN). Such a descriptor stays in the bridge: QEMU gets a
 * pipe, and this thread copies between the two without ever changing the
 * caller's flags (EAGAIN on a non-blocking descriptor of the caller's is
 * waited out with poll).
 *
 * The thread owns both descriptors and closes them when it ends: when
 * `from` ends (end of file or error), when writing to `to` fails, or when
 * `to` reports an error or hang-up (a pipe whose reader, QEMU, is gone).
 * Returns 0, or an errno value (then the descriptors are still the
 * caller's). */
#ifndef VMZ_RELAY_H
#define VMZ_RELAY_H

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __linux__
int vmz_relay_start(int from, int to);
#endif

#ifdef __cplusplus
}
#endif

#endif
