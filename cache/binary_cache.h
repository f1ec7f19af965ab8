/* binary_cache.h: compiled kernels on disk, one file per cache key under <cache_dir>/kernels/.
 * A file holds a header (magic, format version, the full key text, payload size and checksum) and the
 * payload. Writes go to a temporary file in the same folder and are renamed into place, so concurrent
 * processes see either no file or a whole one, and no lock file is ever needed. A file that fails any
 * check (short, wrong magic, other key, bad checksum) is reported in the log, removed, and treated as a
 * miss. Knows nothing of LLVM or kernels: keys are opaque text. */
#ifndef FJ_CACHE_BINARY_CACHE_H
#define FJ_CACHE_BINARY_CACHE_H
#include <stddef.h>
#include "flashjit.h"

/* The default cache folder: FLASHJIT_CACHE_DIR, else $XDG_CACHE_HOME/flashjit, else ~/.cache/flashjit
 * (else /tmp/flashjit-<uid>). Writes into buffer; FJ_IO if it does not fit. */
fj_status bincache_default_dir(char *buffer, size_t size);
/* Creates dir/kernels (and parents) if missing; FJ_IO with the path and errno's text on failure. */
fj_status bincache_prepare(const char *dir);
/* The file a key maps to: dir/kernels/<hash of key>.<kind> (kind: "o", "cubin", ...). */
fj_status bincache_path(const char *dir, const char *key, const char *kind, char *buffer, size_t size);
/* 1 and a malloc'd copy of the payload when a valid entry exists; 0 for a miss (including a corrupt
 * entry, which is logged at warn level and removed). Never fails hard: I/O trouble is a miss. */
int bincache_load(const char *dir, const char *key, const char *kind, void **data, size_t *size);
/* Stores atomically (temp file + fsync + rename). FJ_IO with the path on failure; the cache stays
 * as it was. */
fj_status bincache_store(const char *dir, const char *key, const char *kind, const void *data,
                         size_t size);
#endif
