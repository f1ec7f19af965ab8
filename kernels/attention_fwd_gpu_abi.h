/* attention_fwd_gpu_abi.h: the parameter block of the generated GPU forward kernels (NVPTX now, AMDGPU
 * later). The kernel takes it by value as its one parameter (in PTX: `.param .align 8 .b8 p[N]`), so
 * cuLaunchKernel's kernelParams is {&block}. The generator mirrors this layout in IR (five pointers as
 * i64, then the int64s, then the float), so change both together. Grid: 1-D, one block per job, job =
 * (b * heads + h) * q_tiles + tile as on the CPU (the kernel may visit tiles in any order it likes,
 * e.g. longest causal tiles first). */
#ifndef FJ_ATTENTION_FWD_GPU_ABI_H
#define FJ_ATTENTION_FWD_GPU_ABI_H
#include <stdint.h>

typedef struct gpu_attention_params {
  uint64_t q, k, v, o;        /* device addresses */
  uint64_t lse;               /* 0 when no LSE is asked for */
  /* strides in elements, in the order batch, seq, head, dim (lse: batch, head, seq, unused) */
  int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4], lse_stride[4];
  int64_t batch, seqlen_q, seqlen_kv, heads, kv_heads;
  int64_t q_tiles;            /* ceil(seqlen_q / block_m) */
  float scale_log2;           /* softmax_scale * log2(e) */
  float pad_;
} gpu_attention_params;

#define GPU_ATTENTION_PARAM_POINTERS 5
#define GPU_ATTENTION_PARAM_INT64S 26
_Static_assert(sizeof(gpu_attention_params) == 8 * (5 + 26 + 1), "gpu_attention_params layout");
#endif
