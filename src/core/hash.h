/* hash.h: a 64-bit non-cryptographic hash (FNV-1a) for cache keys and file checksums. */
#ifndef FJ_CORE_HASH_H
#define FJ_CORE_HASH_H
#include <stddef.h>
#include <stdint.h>
uint64_t core_hash64(const void *data, size_t size);
/* Continues a hash: core_hash64_update(core_hash64(a, n), b, m) == hash of a followed by b. */
uint64_t core_hash64_update(uint64_t hash, const void *data, size_t size);
/* 16 lowercase hex digits and a NUL into out[17]. */
void core_hash64_hex(uint64_t hash, char out[17]);
#endif
