/* The kernel cache's content hash (internal, not ABI; both engines). */
#ifndef VMZ_HASH_H
#define VMZ_HASH_H

#ifdef __cplusplus
extern "C" {
#endif

/* FNV-1a, 64 bits, of `len` bytes: the kernel cache's content key (C for
 * speed in debug builds of the Swift bridge). */
unsigned long long vmz_fnv1a64(const void *data, unsigned long len);

#ifdef __cplusplus
}
#endif

#endif
