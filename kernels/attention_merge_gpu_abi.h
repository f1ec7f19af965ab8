/* attention_merge_gpu_abi.h: the parameter block of the generated GPU merge kernel (fj_attention_merge),
 * taken by value as its one parameter like the forward kernels' (attention_fwd_gpu_abi.h). Grid: 1-D,
 * GPU_MERGE_WARPS rows a block, a warp per (batch, query, head) row, row = (b * seqlen + s) * heads + h. */
#ifndef FJ_ATTENTION_MERGE_GPU_ABI_H
#define FJ_ATTENTION_MERGE_GPU_ABI_H
#include <stdint.h>

#define GPU_MERGE_WARPS 4

typedef struct gpu_merge_params {
  uint64_t o_a, o_b, o;                  /* [batch, seqlen, heads, head_dim] of the kernel's dtype */
  uint64_t lse_a, lse_b, lse;            /* fp32 [batch, heads, seqlen]; lse 0: not written */
  int64_t o_a_stride[4], o_b_stride[4], o_stride[4];  /* elements */
  int64_t lse_a_stride[3], lse_b_stride[3], lse_stride[3];
  int64_t batch, seqlen, heads, head_dim;
} gpu_merge_params;
#endif
