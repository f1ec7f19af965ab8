/* attention_fwd_cpu_abi.h: the parameter block the generated CPU forward kernel reads. The generator
 * mirrors this layout in IR (pointers, then int64s, then the float), so change both together. */
#ifndef FJ_ATTENTION_FWD_CPU_ABI_H
#define FJ_ATTENTION_FWD_CPU_ABI_H
#include <stdint.h>

typedef struct cpu_attention_params {
  const void *q, *k, *v;
  void *o;
  float *lse;                 /* NULL when no LSE is asked for */
  /* strides in elements, in the order batch, seq, head, dim (lse: batch, head, seq, unused) */
  int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4], lse_stride[4];
  int64_t batch, seqlen_q, seqlen_kv, heads, kv_heads;
  int64_t q_tiles;            /* ceil(rows / block_m): job = (b * slots + slot) * q_tiles + tile, where a
                               * slot is a query head with rows = seqlen_q, or with pack_gqa a KV head
                               * with rows = seqlen_q * heads / kv_heads */
  float scale_log2;           /* softmax_scale * log2(e): scores are exponentiated in base 2 */
} cpu_attention_params;

/* The generated function: one job = one tile of query rows of one (batch, head slot). scratch is this
 * thread's, 64-byte aligned, of the family's scratch_bytes. */
typedef void (*cpu_attention_fn)(const cpu_attention_params *params, int64_t job, float *scratch);

#define CPU_ATTENTION_PARAM_POINTERS 5
#define CPU_ATTENTION_PARAM_INT64S 26
#endif
