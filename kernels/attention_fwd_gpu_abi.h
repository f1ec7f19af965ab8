/* attention_fwd_gpu_abi.h: the parameter block of the generated GPU forward kernels (NVPTX now, AMDGPU
 * later). The kernel takes it by value as its one parameter (in PTX: `.param .align 8 .b8 p[N]`), so
 * cuLaunchKernel's kernelParams is {&block}. The generator mirrors this layout in IR (field offsets
 * through offsetof), so change both together. The disk cache's keys carry sizeof this block
 * (kernel_family.params_bytes): a change that keeps its size must bump the generator's version. Grid: 1-D, one block per job, job =
 * (b * slots + slot) * q_tiles + tile as on the CPU (the kernel may visit tiles in any order it likes,
 * e.g. longest causal tiles first). */
#ifndef FJ_ATTENTION_FWD_GPU_ABI_H
#define FJ_ATTENTION_FWD_GPU_ABI_H
#include <stdint.h>

/* Division by a run-time divisor d in [1, 2^31) of a numerator n in [0, 2^31) without a divide
 * instruction (Granlund and Montgomery's round-up method): with l = ceil(log2 d) and
 * magic = floor(2^32 (2^l - d) / d) + 1 (fits in 32 bits), n / d = (umulhi(n, magic) + n) >> l, the sum
 * below 2^32 because n < 2^31. The host fills one per divisor; the kernel spends a mul.hi, an add and
 * a shift where a 32-bit division costs ~20 instructions. */
typedef struct gpu_divider {
  uint32_t magic, shift;
} gpu_divider;

static inline gpu_divider gpu_divider_for(uint32_t d) {
  gpu_divider out;
  uint32_t l = 0;
  while (l < 32 && ((uint64_t)1 << l) < d) l++;
  out.shift = l;
  out.magic = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << l) - d)) / d + 1);
  return out;
}

static inline uint32_t gpu_divider_apply(gpu_divider divider, uint32_t n) {
  uint32_t high = (uint32_t)(((uint64_t)n * divider.magic) >> 32);
  return (uint32_t)(((uint64_t)high + n) >> divider.shift);
}

typedef struct gpu_attention_params {
  uint64_t q, k, v, o;        /* device addresses */
  uint64_t lse;               /* 0 when no LSE is asked for */
  /* strides in elements, in the order batch, seq, head, dim (lse: batch, head, seq, unused) */
  int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4], lse_stride[4];
  int64_t batch, seqlen_q, seqlen_kv, heads, kv_heads;
  int64_t q_tiles;            /* ceil(rows / block_m), rows as in the CPU block (pack_gqa or not) */
  float scale_log2;           /* softmax_scale * log2(e) */
  uint32_t group;             /* heads / kv_heads: query heads per KV head */
  /* the block index's divisors: q_tiles, the head slots (heads, or kv_heads with pack_gqa), and
   * heads / kv_heads */
  gpu_divider q_tiles_divider, heads_divider, group_divider;
  /* varlen kernels only: each sequence's key count (int32) at seqlens_kv + 4 * b * seqlens_kv_stride */
  uint64_t seqlens_kv;
  int64_t seqlens_kv_stride;
  /* paged kernels only: page numbers (int32) as in the CPU block (an entry outside [0, pages) reads page 0) */
  uint64_t block_table;
  int64_t block_table_stride[2], pages;
  /* Split-KV (kernels of a config with split_kv=1, when kv_splits > 1; else unread): each job's K/V
   * tiles are cut into kv_splits parts of kv_split_tiles tiles, block = job * kv_splits + part, and
   * each part leaves, instead of o and lse, its fp32 output normalized by its own sum and its base-2
   * LSE (-inf where it saw no key) at partial row ((part * batch + b) * heads + h) * seqlen_q + position
   * (times v's head dim for o_partial), as the CPU's parts do. The module's combine kernel
   * (GPU_COMBINE_SUFFIX) then merges them into o and lse: one warp per row of batch x heads x seqlen_q
   * (row order as above without the part), GPU_COMBINE_WARPS rows per block. */
  uint64_t o_partial, lse_partial;
  int64_t kv_splits, kv_split_tiles;
  /* kv_splits, and for the combine's rows seqlen_q and heads */
  gpu_divider kv_splits_divider, seqlen_q_divider, query_heads_divider;
  /* windowed kernels (key.window) read window_left, causal ones window_right, as the CPU block's */
  int64_t window_left, window_right;
  /* ragged kernels (key.varlen_q) only: query offsets (int32) at cu_seqlens_q + 4 * b * cu_seqlens_q_stride,
   * as in the CPU block (clamped into [0, total_q], each sequence to seqlen_q queries) */
  uint64_t cu_seqlens_q;
  int64_t cu_seqlens_q_stride, total_q;
  /* kernels with sinks (key.sinks) only: head h's logit (fp32, natural log) at sinks + 4 * h * sinks_stride,
   * one more term of each row's softmax sum (of a split job's first part's only: the combine counts it
   * once) */
  uint64_t sinks;
  int64_t sinks_stride;
  /* packed-key kernels (key.varlen_k) only: key offsets (int32) at cu_seqlens_k + 4 * b * cu_seqlens_k_stride,
   * as in the CPU block (clamped into [0, total_k], each sequence to seqlen_kv keys) */
  uint64_t cu_seqlens_k;
  int64_t cu_seqlens_k_stride, total_k;
  /* ALiBi kernels (key.alibi) only: slopes (fp32) at alibi + 4 * (b * alibi_stride[0] + h * alibi_stride[1]),
   * as in the CPU block */
  uint64_t alibi;
  int64_t alibi_stride[2];
  /* kernels with an additive bias (key.bias) only: element b * attn_bias_stride[0] + h * [1] + i * [2] +
   * j * [3] of attn_bias (fp32, or the kernel's dtype), as in the CPU block; bias_unit below takes it to
   * the raw scores' units */
  uint64_t attn_bias;
  int64_t attn_bias_stride[4];
  /* soft-capped kernels (key.softcap) only: a raw score q.k becomes softcap_out * tanh(softcap_in * q.k),
   * softcap_in = softmax_scale / softcap and softcap_out its inverse, so that the kernel's scaling by
   * scale_log2 afterwards gives softcap * tanh(softmax_scale q.k / softcap) in base 2 */
  float softcap_in, softcap_out;
  /* fp8 caches (key.kv_fp8) only: o is v_scale x the attention over the stored values (k_scale is in
   * scale_log2 and the soft cap's factors) */
  float v_scale;
  /* kernels with an additive bias only: 1 / (softmax_scale k_scale), so that the kernel's scaling of raw
   * scores by scale_log2 afterwards gives the bias in base 2 */
  float bias_unit;
} gpu_attention_params;

#define GPU_COMBINE_SUFFIX "_combine"
#define GPU_COMBINE_WARPS 4

_Static_assert(sizeof(gpu_attention_params) == 8 * (5 + 26 + 1 + 3 + 2 + 4 + 2 + 2 + 3 + 2 + 3 + 2 + 3 + 3 + 5 + 1 + 1), "gpu_attention_params layout");
#endif
