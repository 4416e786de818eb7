/* See vmz_hash.h. */
#include "vmz_hash.h"

unsigned long long vmz_fnv1a64(const void *data, unsigned long len) {
    const unsigned char *p = data;
    unsigned long long h = 0xcbf29ce484222325ULL;
    for (unsigned long i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
