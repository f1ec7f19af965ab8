/* attention_merge_nvptx.h: the kernel fj_attention_merge launches on NVIDIA devices (see the .c file). */
#ifndef FJ_ATTENTION_MERGE_NVPTX_H
#define FJ_ATTENTION_MERGE_NVPTX_H
#include <llvm-c/Core.h>
#include "flashjit.h"
#include "core/dtype.h"
#include "jit/jit.h"

/* Appends kernel `name` (GPU_MERGE_WARPS warps a block, no shared memory, the parameter block
 * gpu_merge_params) merging two results of dtype (fp32, fp16 or bf16) by their LSEs. */
fj_status attention_merge_nvptx_generate(LLVMModuleRef module, dtype_id dtype, const jit_target *target,
                                         const char *name);
#endif
