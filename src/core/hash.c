/* hash.c: FNV-1a 64, chosen because it is tiny, has no dependencies and is stable across platforms and
 * releases: its values are stored on disk in cache keys, so it must never change. */
#include <stdio.h>
#include "core/hash.h"

#define CORE_FNV_OFFSET 0xcbf29ce484222325ULL
#define CORE_FNV_PRIME 0x100000001b3ULL

uint64_t core_hash64_update(uint64_t hash, const void *data, size_t size) {
  const unsigned char *p = data;
  for (size_t i = 0; i < size; i++) {
    hash ^= p[i];
    hash *= CORE_FNV_PRIME;
  }
  return hash;
}

uint64_t core_hash64(const void *data, size_t size) {
  return core_hash64_update(CORE_FNV_OFFSET, data, size);
}

void core_hash64_hex(uint64_t hash, char out[17]) {
  snprintf(out, 17, "%016llx", (unsigned long long)hash);
}
