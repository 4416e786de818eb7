/* See vmz_signals.h. */
#include "vmz_signals.h"

#if defined(__linux__) && defined(__ELF__)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static int set_by_vmz;
static int kept_by_user;

/* DT_PREINIT_ARRAY: runs in the executable before any shared library's
 * initialisers, so before the Swift runtime reads SWIFT_BACKTRACE in its
 * own (a static runtime's initialisers run after it too). */
static void vmz_preinit(int argc, char **argv, char **envp) {
    (void)argc;
    (void)argv;
    (void)envp;
    if (getenv("SWIFT_BACKTRACE") != NULL) {
        kept_by_user = 1;
        return;
    }
    if (setenv("SWIFT_BACKTRACE", "enable=no", 0) == 0)
        set_by_vmz = 1;
}

__attribute__((section(".preinit_array"), used))
static void (*const vmz_preinit_entry)(int, char **, char **) = vmz_preinit;

/* A normal constructor runs after the shared libraries' initialisers (the
 * runtime has read the variable by then): take it out of the environment
 * again, so that the host and its children (QEMU) never see it. */
__attribute__((constructor)) static void vmz_restore_environment(void) {
    if (set_by_vmz)
        unsetenv("SWIFT_BACKTRACE");
    if (kept_by_user)
        return;
    /* The shared runtime (libswiftCore.so) may have read its settings from
     * /proc/self/environ, which setenv does not change, and installed its
     * handlers anyway: put back the default for every signal whose handler
     * lives in libswiftCore (and no one else's). */
    static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) != 0)
            continue;
        void *handler = (old.sa_flags & SA_SIGINFO) ? (void *)old.sa_sigaction : (void *)old.sa_handler;
        if (handler == (void *)SIG_DFL || handler == (void *)SIG_IGN)
            continue;
        Dl_info info;
        if (dladdr(handler, &info) && info.dli_fname && strstr(info.dli_fname, "libswiftCore")) {
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            sigemptyset(&dfl.sa_mask);
            sigaction(sigs[i], &dfl, NULL);
            set_by_vmz = 1;
        }
    }
}

int vmz_swift_backtracer_state(void) {
    if (kept_by_user)
        return 2;
    return set_by_vmz ? 0 : 1;
}
#else
int vmz_swift_backtracer_state(void) {
    return 1;
}
#endif
