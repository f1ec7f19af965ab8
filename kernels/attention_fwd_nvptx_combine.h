/* attention_fwd_nvptx_combine.h: the kernel that merges a split-KV launch's parts (see the .c file). */
#ifndef FJ_ATTENTION_FWD_NVPTX_COMBINE_H
#define FJ_ATTENTION_FWD_NVPTX_COMBINE_H
#include <llvm-c/Core.h>
#include "flashjit.h"
#include "core/problem.h"
#include "jit/jit.h"

/* Appends kernel `name` (GPU_COMBINE_WARPS warps per block, no shared memory; the parameter block of
 * kernels/attention_fwd_gpu_abi.h) merging the parts of o and lse for key's dtype, head dim and LSE. */
fj_status attention_fwd_nvptx_generate_combine(LLVMModuleRef module, const attention_key *key,
                                               const jit_target *target, const char *name);
#endif
