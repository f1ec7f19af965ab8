/* attention_fwd_cpu_abi.h: the parameter block the generated CPU forward kernel reads. The generator
 * mirrors this layout in IR (pointers, then int64s, then the floats), so change both together. The disk
 * cache's keys carry sizeof this block (kernel_family.params_bytes): a change that keeps its size (a
 * reordering) must bump the generator's version, or a cached kernel of the old layout would be loaded. */
#ifndef FJ_ATTENTION_FWD_CPU_ABI_H
#define FJ_ATTENTION_FWD_CPU_ABI_H
#include <stdint.h>

typedef struct cpu_attention_params {
  const void *q, *k, *v;
  void *o;
  float *lse;                 /* NULL when no LSE is asked for */
  /* Split-KV: NULL when a job covers all its keys. Else each job covers one part of them and leaves,
   * instead of o and lse, its fp32 output normalized by its own sum and its base-2 LSE, at row
   * ((part * batch + b) * heads + h) * seqlen_q + position (times v's head dim for o_partial); the
   * runtime combines the parts (src/runtime/split_kv.c). */
  float *o_partial, *lse_partial;
  /* Each sequence's key count, at seqlens_kv[b * seqlens_kv_stride]; NULL: seqlen_kv for all. */
  const int32_t *seqlens_kv;
  /* Paged kernels (key.page_size > 0) only: key j of sequence b is row j % page_size of page
   * block_table[b * block_table_stride[0] + (j / page_size) * block_table_stride[1]], a page being
   * k_stride[0] (v_stride[0]) elements; pages bounds the entries (validated on the host; one outside still reads page 0). */
  const int32_t *block_table;
  /* Ragged queries (key.varlen_q) only: sequence b's queries are rows cu_seqlens_q[b * cu_seqlens_q_stride]
   * up to (not including) cu_seqlens_q[(b + 1) * cu_seqlens_q_stride] of q, o and lse along their
   * sequence dimension (their batch strides are then 0), seqlen_q their most; validated on the host,
   * clamped into [0, total_q] and to seqlen_q queries anyway. Split parts keep the rows of seqlen_q
   * positions per sequence. */
  const int32_t *cu_seqlens_q;
  /* Ragged kernels only, NULL for none: the grid's jobs that hold rows of their sequence, job' =
   * job_map[job'] (after the split part is taken off), so that a launch runs those alone instead of a
   * grid sized by the longest sequence (whose other jobs would only return). */
  const int64_t *job_map;
  /* Kernels with sinks (key.sinks) only: head h's logit (natural log, the scaled scores' units) at
   * sinks[h * sinks_stride], one more term of each of its rows' softmax sums (of a split job's first
   * part's only, so that the combine counts it once). */
  const float *sinks;
  /* Packed keys (key.varlen_k) only: sequence b's keys are rows cu_seqlens_k[b * cu_seqlens_k_stride] up
   * to (not including) cu_seqlens_k[(b + 1) * cu_seqlens_k_stride] of k and v along their sequence
   * dimension (their batch strides are then 0), seqlen_kv their most; validated on the host, clamped
   * into [0, total_k] and to seqlen_kv keys anyway. */
  const int32_t *cu_seqlens_k;
  /* ALiBi kernels (key.alibi) only: sequence b's head h's slope (the scaled scores' units) at
   * alibi[b * alibi_stride[0] + h * alibi_stride[1]]. */
  const float *alibi;
  /* Kernels with an additive bias (key.bias) only: the bias of sequence b's query i and key j in head h
   * (the scaled scores' units; fp32, or the kernel's dtype) at attn_bias[b * attn_bias_stride[0] +
   * h * attn_bias_stride[1] + i * attn_bias_stride[2] + j * attn_bias_stride[3]], i and j within the
   * sequence. */
  const void *attn_bias;
  /* strides in elements, in the order batch, seq, head, dim (lse: batch, head, seq, unused) */
  int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4], lse_stride[4];
  int64_t batch, seqlen_q, seqlen_kv, heads, kv_heads;
  int64_t q_tiles;            /* ceil(rows / block_m): job = (b * slots + slot) * q_tiles + tile, where a
                               * slot is a query head with rows = seqlen_q, or with pack_gqa a KV head
                               * with rows = seqlen_q * heads / kv_heads */
  int64_t kv_splits;          /* parts each job's keys are cut into (1: none); job = job' * kv_splits + part */
  int64_t kv_split_keys;      /* keys per part, a multiple of block_n */
  int64_t seqlens_kv_stride;
  int64_t block_table_stride[2], pages;
  /* Windowed kernels (key.window) read window_left, causal ones window_right (0: the plain causal
   * mask): query i of a sequence of keys keys sees keys [i + keys - seqlen_q - window_left,
   * i + keys - seqlen_q + window_right]. */
  int64_t window_left, window_right;
  int64_t cu_seqlens_q_stride, total_q;
  int64_t sinks_stride;
  int64_t cu_seqlens_k_stride, total_k;
  int64_t alibi_stride[2];
  int64_t attn_bias_stride[4];
  float scale_log2;           /* softmax_scale * k_scale * log2(e): scores are exponentiated in base 2 */
  /* Soft-capped kernels (key.softcap) only: a base-2 score s becomes softcap_out * tanh(softcap_in * s),
   * softcap_out = softcap * log2(e) and softcap_in its inverse. */
  float softcap_in, softcap_out;
  /* fp8 caches (key.kv_fp8) only: o is v_scale x the attention over the stored values (k_scale is in
   * scale_log2). */
  float v_scale;
} cpu_attention_params;

/* The generated function: one job = one tile of query rows of one (batch, head slot). scratch is this
 * thread's, 64-byte aligned, of the family's scratch_bytes. */
typedef void (*cpu_attention_fn)(const cpu_attention_params *params, int64_t job, float *scratch);

#define CPU_ATTENTION_PARAM_POINTERS 15
#define CPU_ATTENTION_PARAM_INT64S 45
#endif
