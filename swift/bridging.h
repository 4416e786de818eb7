/* Imported into the Swift bridge with -import-objc-header: the public ABI
 * (so the @_cdecl exports use exactly its types) and the bridge's small C
 * helpers (the Linux engine's fork/exec, the kernel cache's hash). */
#include "../include/libvmz.h"
#include "csupport/vmz_spawn.h"
#include "csupport/vmz_relay.h"
#include "csupport/vmz_signals.h"
#include "csupport/vmz_hash.h"
