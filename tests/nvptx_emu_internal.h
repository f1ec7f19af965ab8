/* nvptx_emu_internal.h: what the emulator's files share and the test never sees: the kernel object,
 * the numbered call sites of the rewritten module (so that an error names the instruction), and the
 * hooks the rewritten module calls in place of each NVVM intrinsic, with the C signatures the rewrite
 * (nvptx_emu_module.c) declares them with in IR. */
#ifndef FJ_TESTS_NVPTX_EMU_INTERNAL_H
#define FJ_TESTS_NVPTX_EMU_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <llvm-c/LLJIT.h>
#include "nvptx_emu.h"

#define EMU_MAX_REGIONS 16

typedef struct emu_region {
  const unsigned char *base;
  size_t bytes;
  int writable;
} emu_region;

/* One rewritten instruction: "ldmatrix.x4.trans #3 (llvm.nvvm.ldmatrix...) in kv.body". */
typedef struct emu_site {
  char text[192];
} emu_site;

struct emu_kernel {
  LLVMOrcLLJITRef jit;
  void (*entry)(void *params);
  int block_threads;
  size_t param_bytes;           /* the size of the kernel's by-value parameter block */
  size_t shared_bytes;
  unsigned char *shared;        /* what fj_dynamic_shared resolves to; 128-byte aligned */
  void *shared_allocation;
  emu_site *sites;
  int site_count, site_capacity;
  emu_region regions[EMU_MAX_REGIONS];
  int region_count;
  struct emu_banks *banks;      /* bank conflicts, made at the first launch (nvptx_emu_banks.c) */
};

/* The special registers a module may read (llvm.nvvm.read.ptx.sreg.*). */
enum {
  EMU_SREG_TID_X, EMU_SREG_TID_Y, EMU_SREG_TID_Z, EMU_SREG_NTID_X, EMU_SREG_NTID_Y, EMU_SREG_NTID_Z,
  EMU_SREG_CTAID_X, EMU_SREG_CTAID_Y, EMU_SREG_CTAID_Z, EMU_SREG_NCTAID_X, EMU_SREG_NCTAID_Y,
  EMU_SREG_NCTAID_Z, EMU_SREG_LANEID, EMU_SREG_WARPSIZE, EMU_SREG_COUNT
};

/* ---- hooks: called by the generated code, on a fiber, for the current GPU thread ---- */
uint32_t emu_hook_sreg(int32_t which);
void emu_hook_barrier(int32_t site, int32_t barrier);
uint32_t emu_hook_shfl_bfly(int32_t site, uint32_t member_mask, uint32_t value, uint32_t b, uint32_t c);
uint32_t emu_hook_vote_any(int32_t site, uint32_t member_mask, uint32_t predicate);
float emu_hook_ex2_approx_ftz(float x);
float emu_hook_tanh_approx(float x);
float emu_hook_lg2_approx(float x);
float emu_hook_lg2_approx_ftz(float x);
void emu_hook_mma_m16n8k16(int32_t site, int32_t bf16, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                           uint32_t b0, uint32_t b1, float c0, float c1, float c2, float c3, float *d);
void emu_hook_ldmatrix_x4(int32_t site, int32_t transpose, const void *address, uint32_t *out);
void emu_hook_cp_async_16(int32_t site, void *shared_dst, const void *global_src, int32_t src_size);
void emu_hook_cp_async_commit(int32_t site);
void emu_hook_cp_async_wait(int32_t site, int32_t pending);
void emu_hook_cp_async_wait_all(int32_t site);
/* Before every load (is_store 0) or store (1) of `bytes` through an addrspace(3) / addrspace(1)
 * pointer that the instruction says is `align`-byte aligned. */
void emu_hook_shared_access(int32_t site, const void *address, int64_t bytes, int32_t is_store, int32_t align);
void emu_hook_global_access(int32_t site, const void *address, int64_t bytes, int32_t is_store, int32_t align);
/* fptrunc float -> half / bfloat where the host has no instruction for it: the compiler-rt libcalls,
 * which return the 16 bits in the low half of xmm0, as a float return does. */
float emu_libcall_truncsfhf2(float x);
float emu_libcall_truncsfbf2(float x);
#endif
