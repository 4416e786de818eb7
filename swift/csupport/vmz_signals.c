/* See vmz_signals.h. */
#include "vmz_signals.h"

#if defined(__linux__) && defined(__ELF__)
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
