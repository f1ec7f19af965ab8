/* nvptx_emu.h: a warp-accurate CPU emulator for the NVPTX kernels flashjit generates, so that tests
 * check the real generated kernel's numbers on machines without a GPU. The kernel's LLVM module (as
 * the family generated it, optionally after the NVPTX O3 pipeline production runs) is rewritten into a
 * host module whose NVVM intrinsics call the emulator, JIT-compiled for the host, and run block after
 * block with every GPU thread a fiber: barriers, warp collectives (mma.sync, ldmatrix, shfl.sync) and
 * asynchronous cp.async groups behave as on hardware, and the emulator reports what hardware would
 * only silently get wrong: reads of shared memory a cp.async may still be writing, shared-memory
 * races across a missing barrier, reads of shared bytes never written, global accesses outside the
 * buffers the test registered, copies still in flight at exit, diverged warps, deadlocks.
 * Files: nvptx_emu_module.c (rewrite + JIT), nvptx_emu_block.c (scheduler and the instructions'
 * effects), nvptx_emu_warp.c (the ISA's warp-wide arithmetic and layouts), nvptx_emu_fiber.c. */
#ifndef FJ_TESTS_NVPTX_EMU_H
#define FJ_TESTS_NVPTX_EMU_H
#include <stddef.h>
#include <stdint.h>
#include <llvm-c/Core.h>
#include "jit/jit.h"

typedef struct emu_kernel emu_kernel;

/* What one launch did, for the test's report. */
typedef struct emu_stats {
  int64_t blocks, switches, barriers, warp_ops, copies;
} emu_stats;

/* Shared memory's bank conflicts (nvptx_emu_banks.c): a warp's request is served in wavefronts, each
 * reading or writing at most one 4-byte word per bank (32 banks, words interleaved), a word shared by
 * several lanes once. Requests of 16 bytes a lane (and cp.async's 16-byte writes, and ldmatrix's rows,
 * 8 per matrix) go in phases of 8 lanes, of 8 bytes in phases of 16, narrower ones in one phase of 32;
 * a phase takes as many wavefronts as its most loaded bank has distinct words. `ideal` is what the same
 * bytes would take with no bank used twice (the distinct words of a phase over 32, rounded up):
 * wavefronts == ideal is conflict-free. */
enum { EMU_BANKS_LDMATRIX, EMU_BANKS_CP_ASYNC, EMU_BANKS_LOAD, EMU_BANKS_STORE, EMU_BANKS_KINDS };
typedef struct emu_bank_summary {
  int64_t requests, wavefronts, ideal;  /* over the kind's instructions, since the last reset */
  double worst;                         /* the worst instruction's wavefronts / ideal (1: no conflict) */
  char worst_site[192];                 /* which one ("" where none conflicts) */
} emu_bank_summary;

/* Builds the emulator's host version of kernel `name` in `module` (an NVPTX module for `nvptx`, in a
 * context of the caller's; rewritten in place, the caller still disposes it) for blocks of
 * block_threads threads with shared_bytes of dynamic shared memory. With nvptx_o3 the module first
 * goes through the O3 pipeline for the NVPTX target, as production compiles it, so what runs is what
 * llc would be handed. 0, or -1 with the reason in why (an intrinsic the emulator does not know is
 * named there). */
int emu_kernel_build(LLVMModuleRef module, const jit_target *nvptx, const char *name, int block_threads,
                     size_t shared_bytes, int nvptx_o3, emu_kernel **out, char *why, size_t why_size);
void emu_kernel_free(emu_kernel *kernel);  /* NULL-safe */

/* Global memory the kernel may touch: loads and cp.async sources anywhere inside a registered region,
 * stores only inside writable ones. Up to 16 regions; 0, or -1 when full. */
int emu_kernel_add_region(emu_kernel *kernel, const void *base, size_t bytes, int writable);
void emu_kernel_clear_regions(emu_kernel *kernel);

/* The bank conflicts of the launches since the kernel was built or last reset, by kind. */
void emu_kernel_banks(const emu_kernel *kernel, emu_bank_summary out[EMU_BANKS_KINDS]);
void emu_kernel_banks_reset(emu_kernel *kernel);

/* Runs blocks 0 .. grid - 1 one after another (ctaid.x = block) with params as the kernel's by-value
 * parameter block. 0, or -1 with the first error in why (the remaining blocks are not run). */
int emu_kernel_launch(emu_kernel *kernel, int64_t grid, const void *params, size_t params_size,
                      emu_stats *stats, char *why, size_t why_size);
#endif
