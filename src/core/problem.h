/* problem.h: an attention call after validation. The key is what selects a kernel and a tuning result
 * (it names no sizes that only change the launch); the problem adds the sizes, pointers and strides. */
#ifndef FJ_CORE_PROBLEM_H
#define FJ_CORE_PROBLEM_H
#include <stddef.h>
#include <stdint.h>
#include "flashjit.h"
#include "core/dtype.h"

typedef enum problem_kind { PROBLEM_ATTENTION_FWD = 0 } problem_kind;

typedef struct attention_key {
  int kind;          /* problem_kind */
  int dtype;         /* dtype_id of q, k, v and o */
  int head_dim;
  int heads;
  int kv_heads;
  int causal;        /* keys past a diagonal are masked: causal, or window_right >= 0 */
  int has_lse;
  int d_contiguous;  /* layout: q, k, v and o all have stride 1 along head_dim */
  int seqlen_bucket; /* core_seqlen_bucket(seqlen_q) */
  int varlen;        /* seqlens_kv or cu_seqlens_k given: each sequence has its own number of keys */
  int page_size;     /* block_table given: k and v are pools of pages of this many keys; else 0 */
  int window;        /* keys before a diagonal are masked: window_left >= 0 (a sliding window) */
  int varlen_q;      /* cu_seqlens_q given: ragged queries, each sequence its own query count */
  int sinks;         /* sinks given: each head's softmax has one more term, of a zero value */
  int softcap;       /* softcap > 0: scores pass through softcap x tanh(score / softcap) */
  int varlen_k;      /* cu_seqlens_k given: packed keys, each sequence its own rows of k and v (varlen too) */
  int alibi;         /* alibi_slopes given: each score gets -slope x its distance from the query's diagonal */
  int kv_fp8;        /* 0: k and v are of dtype; else an fp8 KV cache's dtype_id (read with k/v_scale) */
  /* 0: v and o have head_dim too; else their own head dim, which differs from head_dim (DeepSeek's MLA
   * prefill: q and k 192, v and o 128). Never head_dim itself, so that a key has one form. */
  int head_dim_v;
  /* attn_bias given: KEY_BIAS_F32 (fp32) or KEY_BIAS_DTYPE (q's dtype, fp16 or bf16), plus
   * KEY_BIAS_STRIDED_KEYS where its keys are not consecutive elements (a stride other than 1); 0 none */
  int bias;
} attention_key;

enum { KEY_BIAS_NONE = 0, KEY_BIAS_F32 = 1, KEY_BIAS_DTYPE = 2, KEY_BIAS_DTYPE_MASK = 3, KEY_BIAS_STRIDED_KEYS = 4 };

/* A view of a 4-d (or 3-d, for lse) tensor: the address of element [0,0,0,0] and strides in elements. */
typedef struct tensor_view {
  char *data;
  int ndim;
  int64_t shape[4];
  int64_t stride[4];
} tensor_view;

typedef struct attention_problem {
  attention_key key;
  int64_t batch, seqlen_q, seqlen_kv;  /* seqlen_q: max_seqlen_q with ragged queries */
  float softmax_scale;  /* resolved: never 0 */
  float softcap;        /* fj_attention_args.softcap: > 0 with key.softcap, else 0 */
  /* An fp8 cache's scales (fj_attention_args.k_scale, v_scale resolved: never 0); 1 when k and v are
   * not fp8. The scores are softmax_scale x k_scale x q.k_stored, o is v_scale x sum p v_stored / l. */
  float k_scale, v_scale;
  /* The window (fj_attention_args.window_left/right) with causal folded in: window_left counts only
   * with key.window, window_right only with key.causal (0 for a plain causal mask; a problem built
   * field by field leaves both 0). core_visible_keys says what they leave a query. */
  int64_t window_left, window_right;
  /* With ragged queries (cu_seqlens_q) q and o are still viewed [batch, seqlen_q, heads, head_dim] and
   * lse [batch, heads, seqlen_q], but with a batch stride of 0: sequence b's query i is at row
   * cu_seqlens_q[b] + i (core_sequence_queries). */
  tensor_view q, k, v, o;
  tensor_view lse;      /* lse.data == NULL when absent */
  /* Ragged queries (fj_attention_args.cu_seqlens_q; key.varlen_q): int32 offsets at
   * cu_seqlens_q[b * cu_seqlens_q_stride], b from 0 to batch, into total_q rows of q and o; NULL when
   * every sequence has seqlen_q queries. */
  const int32_t *cu_seqlens_q;
  int64_t cu_seqlens_q_stride;
  int64_t total_q;
  /* Packed keys (fj_attention_args.cu_seqlens_k; key.varlen_k): int32 offsets at
   * cu_seqlens_k[b * cu_seqlens_k_stride], b from 0 to batch, into total_k rows of k and v, whose views
   * are then [batch, seqlen_kv, kv_heads, head_dim] with a batch stride of 0 (seqlen_kv: max_seqlen_k):
   * sequence b's key j is at row cu_seqlens_k[b] + j (core_key_place). NULL when not packed. */
  const int32_t *cu_seqlens_k;
  int64_t cu_seqlens_k_stride;
  int64_t total_k;
  /* Per-sequence key counts (fj_attention_args.seqlens_kv): int32 at seqlens_kv[b * seqlens_kv_stride],
   * each in [0, seqlen_kv]; NULL when every sequence has seqlen_kv keys. */
  const int32_t *seqlens_kv;
  int64_t seqlens_kv_stride;
  /* Paged K/V (fj_attention_args.block_table; key.page_size > 0): key j of sequence b is row
   * j % page_size of page block_table[b * block_table_stride[0] + (j / page_size) * block_table_stride[1]]
   * of k and v, whose views are then [pages, page_size, kv_heads, head_dim]; seqlen_kv = max_pages *
   * page_size. NULL when k and v are [batch, seqlen_kv, ...]. */
  const int32_t *block_table;
  int64_t block_table_stride[2];
  int64_t pages;
  /* Attention sinks (fj_attention_args.sinks; key.sinks): head h's logit at sinks[h * sinks_stride], in
   * the units of the scaled scores (natural log); NULL when none. */
  const float *sinks;
  int64_t sinks_stride;
  /* ALiBi (fj_attention_args.alibi_slopes; key.alibi): sequence b's head h's slope at
   * alibi[b * alibi_stride[0] + h * alibi_stride[1]] (alibi_stride[0] = 0 for [heads]); NULL when none. */
  const float *alibi;
  int64_t alibi_stride[2];
  /* An additive bias (fj_attention_args.attn_bias; key.bias): sequence b's head h's query i and key j at
   * element b * attn_bias_stride[0] + h * [1] + i * [2] + j * [3] of attn_bias (of core_key_bias_dtype;
   * a broadcast dimension's stride 0; i and j within the sequence); NULL when none. */
  const void *attn_bias;
  int64_t attn_bias_stride[4];
  /* fj_attention_args.kv_split_keys: 0 the library's split of a decode step's keys, > 0 parts of this many
   * keys whatever the batch, -1 none */
  int64_t kv_split_keys;
  /* fj_attention_args.workspace: caller scratch on the device (NULL, 0 when none) */
  void *workspace;
  int64_t workspace_bytes;
  DLDevice device;      /* where the tensors live */
} attention_problem;

/* The largest head dim the API takes: DeepSeek's MLA decode in its absorbed form (FlashMLA's), q and k
 * 576 = the 512-wide latent + 64 rotary, v the 512 latent. */
#define CORE_HEAD_DIM_MAX 576
/* 1 for a head dim the API takes (q's and k's, or v's): a multiple of 8 from 8 to CORE_HEAD_DIM_MAX. */
int core_head_dim_valid(int64_t head_dim);
/* Power-of-two bucket of a sequence length: 0 for 0, else ceil(log2(seqlen)) (1 -> 0 too). */
int core_seqlen_bucket(int64_t seqlen);
/* k's and v's dtype: key->dtype, or the fp8 of an fp8 cache. */
dtype_id core_key_kv_dtype(const attention_key *key);
/* attn_bias's dtype (key->bias set): fp32, or the key's dtype. */
dtype_id core_key_bias_dtype(const attention_key *key);
/* v's and o's head dim: key->head_dim_v where set, else key->head_dim. */
int core_key_head_dim_v(const attention_key *key);
/* A stable, readable one-line form of the key: "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=0
 * lse=0 dcontig=1 sq<=2^11". Used in logs, cache keys and the tuning database. */
void core_attention_key_string(const attention_key *key, char *buffer, size_t size);
/* " page=N" for a paged key, else "", then " sinks=1" for a key with sinks, " softcap=1" for a
 * soft-capped one, " varlen_k=1" for packed keys, " alibi=1" for ALiBi, " kv=fp8_e4m3" for an fp8
 * cache, " dv=N" for v's own head dim and " bias=fp32" (or the dtype; "/strided" where its keys are not
 * consecutive) for an additive bias: the part of
 * the key and codegen strings these add (constants of the kernel). 96 bytes hold the longest. */
void core_key_extra_text(const attention_key *key, char *buffer, size_t size);

/* Validates every argument of a forward call and fills *out. On failure returns FJ_INVALID_ARGUMENT
 * (or FJ_UNSUPPORTED for a valid but unsupported case) with a message naming the argument and values,
 * and touches no tensor memory. Checks: NULL pointers, ndim, dtypes (all equal, one of ours), shapes
 * (batch/heads >= 1, head_dim a multiple of 8 in [8, CORE_HEAD_DIM_MAX], k/v/o/lse consistent with q, heads a
 * multiple of kv_heads), strides (NULL means row-major; o and lse may not overlap themselves), o and lse
 * not overlapping q, k, v or each other, devices all equal, a finite scale, a NULL data pointer with
 * elements to touch, extents that overflow. */
fj_status core_validate_attention(const fj_attention_args *args, attention_problem *out);

/* FJ_OK for a call's (what: "" for args, "shapes[2]." for a shape) softcap: finite, not negative, and
 * where above 0 between 1e-30 and 1e30 as softcap and as softcap / softmax_scale (the kernels' factors). */
fj_status core_check_softcap(const char *what, float softcap, float softmax_scale);
/* Sets problem's key.causal, key.window, window_left and window_right from a call's causal flag and
 * window (-1 per open side), for seqlen_q queries against seqlen_kv keys: causal is window_right = 0,
 * and a side that reaches past every key is dropped. FJ_INVALID_ARGUMENT naming what + "window_left"
 * (what: "" for args, "shapes[2]." for a shape) for a value under -1 or window_right > 0 with causal. */
fj_status core_resolve_window(const char *what, int causal, int64_t window_left, int64_t window_right,
                              int64_t seqlen_q, int64_t seqlen_kv, attention_problem *problem);
/* Number of FLOPs of the forward (2 * b * h * sq * skv * (d + dv), 4 b h sq skv d where v's head dim is
 * d; counting only visible pairs when causal).
 * Here and in core_attention_bytes skv is each sequence's own key count where seqlens_kv is in host
 * memory, else seqlen_kv. */
double core_attention_flops(const attention_problem *problem);
/* Bytes a forward must move at least: q, k and v read once (each sequence's keys), o (and the LSE,
 * when asked for) written once. Decode steps are bound by this, not by FLOPs: GB/s = bytes / time is
 * their figure of merit. */
double core_attention_bytes(const attention_problem *problem);
/* The number of keys sequence b has: seqlens_kv[b], or cu_seqlens_k[b + 1] - cu_seqlens_k[b], when given
 * (host memory), else seqlen_kv. */
int64_t core_sequence_keys(const attention_problem *problem, int64_t b);
/* Sequence b's queries: *count of them (at most seqlen_q), query i at row *start + i along the sequence
 * dimension of q's, o's and lse's views. From cu_seqlens_q when given (host memory; validated), else
 * start 0 and count seqlen_q. */
void core_sequence_queries(const attention_problem *problem, int64_t b, int64_t *start, int64_t *count);
/* The keys query i of a sequence of `queries` queries and `keys` keys attends to: [*first, *end), inside
 * [0, keys] and empty (first = end) when it sees none. The masks align to the bottom-right corner: query
 * i's diagonal key is i + keys - queries; window_right keys after it and window_left before it are seen
 * too. */
void core_visible_keys(const attention_problem *problem, int64_t i, int64_t queries, int64_t keys, int64_t *first,
                       int64_t *end);
/* Where key j of sequence b lives in k and v (host memory): the index along their first dimension (b,
 * or its page) and along their second (j, its row in that page, or with packed keys cu_seqlens_k[b] + j). */
void core_key_place(const attention_problem *problem, int64_t b, int64_t j, int64_t *outer, int64_t *row);
#endif
