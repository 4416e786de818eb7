/* Imported into the Swift bridge with -import-objc-header: the public ABI
 * (so the @_cdecl exports use exactly its types) and, on Linux, the small C
 * helper that forks QEMU. */
#include "../include/libvmz.h"
#ifdef __linux__
#include "csupport/vmz_spawn.h"
#endif
