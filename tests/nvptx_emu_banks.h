/* nvptx_emu_banks.h: shared-memory bank conflicts of emulated launches (nvptx_emu_banks.c). The block
 * reports each thread's shared access as it happens; the lanes of a warp that reach the same
 * instruction the same time (their n-th pass through it since the last barrier) make one request, whose
 * wavefronts are counted when the block passes its next barrier or ends. */
#ifndef FJ_TESTS_NVPTX_EMU_BANKS_H
#define FJ_TESTS_NVPTX_EMU_BANKS_H
#include <stdint.h>
#include "nvptx_emu.h"

typedef struct emu_banks emu_banks;

/* For blocks of `threads` threads and a module of `sites` numbered instructions; NULL without memory. */
emu_banks *emu_banks_create(int threads, int sites);
void emu_banks_free(emu_banks *banks);  /* NULL-safe */
void emu_banks_reset(emu_banks *banks); /* forgets the counts (and any request still gathering) */

/* One thread's access of `bytes` at shared offset `offset` by instruction `site`. */
void emu_banks_thread_access(emu_banks *banks, int thread, int site, int kind, uint32_t offset, int bytes);
/* A warp's ldmatrix.x4: each lane's 16-byte row. */
void emu_banks_ldmatrix(emu_banks *banks, int site, const uint32_t offsets[32]);
/* Every request gathered so far is complete (a barrier, the block's end): count them. */
void emu_banks_flush(emu_banks *banks);

#endif
