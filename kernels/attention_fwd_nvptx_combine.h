/* attention_fwd_nvptx_combine.h: the kernel that merges a split-KV launch's parts (see the .c file). */
#ifndef FJ_ATTENTION_FWD_NVPTX_COMBINE_H
#define FJ_ATTENTION_FWD_NVPTX_COMBINE_H
#include <llvm-c/Core.h>
#include "flashjit.h"
#include "core/problem.h"
#include "jit/jit.h"
#include "tile/tile_gpu.h"

/* Appends kernel `name` (GPU_COMBINE_WARPS warps per block, no shared memory; the parameter block of
 * kernels/attention_fwd_gpu_abi.h) merging the parts of o and lse for key's dtype, head dim and LSE. */
fj_status attention_fwd_nvptx_generate_combine(LLVMModuleRef module, const attention_key *key,
                                               const jit_target *target, const char *name);
/* For both kernels: ragged sequence b's queries (key.varlen_q), rows [*start, *start + *count) of q, o and
 * lse, from the parameter block's cu_seqlens_q, clamped into [0, total_q] and to max_queries. */
void attention_fwd_nvptx_sequence_queries(tile_gpu *tg, LLVMValueRef b, LLVMValueRef max_queries, LLVMValueRef *start,
                                          LLVMValueRef *count);
/* Packed sequence b's keys (key.varlen_k), rows [*start, *start + *count) of k and v, from cu_seqlens_k,
 * clamped into [0, total_k] and to max_keys. */
void attention_fwd_nvptx_sequence_keys(tile_gpu *tg, LLVMValueRef b, LLVMValueRef max_keys, LLVMValueRef *start,
                                       LLVMValueRef *count);
#endif
