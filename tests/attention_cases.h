/* attention_cases.h: what the attention correctness suites (test_attention_cpu, test_attention_cuda)
 * share, so that each of them reads as its list of cases plus how its device runs one. A case names a
 * problem and a memory layout; case_tensors_create builds its host tensors with fresh random inputs and
 * poisoned outputs (snapshotted, to catch writes outside o's and lse's elements), and case_compare
 * holds the outputs against the float64 reference. The verdict line stays in each suite: the devices
 * differ in what they report (timing, thread, input checks). */
#ifndef FJ_TESTS_ATTENTION_CASES_H
#define FJ_TESTS_ATTENTION_CASES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flashjit.h"
#include "core/dtype.h"
#include "core/hash.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "core/reference.h"

typedef enum layout {
  LAYOUT_CONTIGUOUS,  /* row-major, NULL strides */
  LAYOUT_PACKED_QKV,  /* one allocation [b, s, h + 2 hk, d] viewed as q, k and v */
  LAYOUT_D_STRIDE2,   /* every tensor with stride 2 along head_dim (and o too) */
  LAYOUT_LSE_STRIDED, /* contiguous q/k/v/o, lse stored [b, s, h] and viewed as [b, h, s] */
  LAYOUT_MISALIGNED,  /* contiguous q, k, v one after another in one allocation, k one element off:
                         unit head-dim strides everywhere, but k's rows are not 16-byte aligned, so a
                         GPU kernel copies q and v with 16-byte moves and k another way, chosen at run
                         time */
} layout;

static inline const char *layout_name(layout l) {
  switch (l) {
    case LAYOUT_CONTIGUOUS: return "contiguous";
    case LAYOUT_PACKED_QKV: return "packed-qkv";
    case LAYOUT_D_STRIDE2: return "d-stride-2";
    case LAYOUT_LSE_STRIDED: return "lse-strided";
    case LAYOUT_MISALIGNED: return "misaligned";
  }
  return "?";
}

typedef struct test_case {
  dtype_id dtype;
  int64_t batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim;
  int causal, lse;
  layout layout;
  float scale;  /* 0: the default 1/sqrt(d) */
  int varlen;   /* 1: seqlens_kv gives each sequence its own key count (case_sequence_keys) */
  /* > 0: a paged cache (block_table) of pages of this many keys, the pages of all sequences shuffled in
   * one pool with spares; seqlen_kv is then the pages per sequence times page_size (a multiple of it) */
  int page_size;
  /* fj_attention_args.window_left and window_right: -1 for no window on that side */
  int window_left, window_right;
  /* 1: ragged queries (cu_seqlens_q): sequence b has case_sequence_queries(c, b) of them, packed end to
   * end after CASE_RAGGED_BEFORE spare rows and before one more (rows no call may write); q and o are
   * [total_q, heads, head_dim], lse [heads, total_q]; seqlen_q is max_seqlen_q. Contiguous, d-stride-2
   * and lse-strided layouts only (k and v keep their batch dimension). */
  int ragged_q;
  /* 1: attention sinks (fj_attention_args.sinks), case_sink(c, h) for head h */
  int sinks;
  float softcap;  /* fj_attention_args.softcap: 0 for none */
  /* 1: packed keys (cu_seqlens_k): sequence b has case_sequence_keys(c, b) keys, packed end to end in k
   * and v ([total_k, kv_heads, head_dim]) after CASE_RAGGED_BEFORE spare rows and before one more, all
   * NaN (rows no call may read); seqlen_kv is max_seqlen_k. Contiguous and d-stride-2 layouts only, not
   * with varlen or a paged cache. */
  int packed_k;
  /* ALiBi (alibi_slopes, case_alibi_slope): 1 one slope per head ([heads]), 2 per sequence and head
   * ([batch, heads]) */
  int alibi;
  /* 0, or DTYPE_E4M3 / DTYPE_E5M2: k and v of that fp8, an fp8 KV cache read with case_k_scale and
   * case_v_scale (contiguous, d-stride-2 and lse-strided layouts only) */
  int kv_fp8;
  /* 0: v and o have head_dim; else their own head dim (DeepSeek's MLA prefill: q, k 192 and v, o 128);
   * not with packed-qkv or misaligned layouts */
  int64_t head_dim_v;
  /* An additive bias (attn_bias, case_bias_value): CASE_BIAS_FULL fp32 [batch, heads, seqlen_q, seqlen_kv];
   * CASE_BIAS_PADDING fp32 [batch, 1, 1, seqlen_kv], a padding mask of 0 and -inf (broadcast by size 1);
   * CASE_BIAS_DTYPE q's dtype [batch, heads, seqlen_q, seqlen_kv] over the memory of one sequence (batch
   * stride 0) */
  int bias;
} test_case;

enum { CASE_BIAS_NONE = 0, CASE_BIAS_FULL = 1, CASE_BIAS_PADDING = 2, CASE_BIAS_DTYPE = 3 };

/* An additive-bias case's stride along the keys: 2 in the layouts of strided tensors (d-stride-2,
 * lse-strided; not for the padding mask), else 1. */
static inline int64_t case_bias_key_stride(const test_case *c) {
  return (c->layout == LAYOUT_D_STRIDE2 || c->layout == LAYOUT_LSE_STRIDED) && c->bias != CASE_BIAS_PADDING ? 2 : 1;
}

#define CASE_RAGGED_BEFORE 2

/* k's and v's dtype; an fp8 case's scales (not 1, and not powers of two for E4M3, so that a kernel that
 * drops or swaps them shows; the stored values are the random ones, the attended ones these times them) */
static inline dtype_id case_kv_dtype(const test_case *c) { return c->kv_fp8 ? (dtype_id)c->kv_fp8 : c->dtype; }
static inline float case_k_scale(const test_case *c) { return c->kv_fp8 == DTYPE_E4M3 ? 1.75f : 0.5f; }
static inline float case_v_scale(const test_case *c) { return c->kv_fp8 == DTYPE_E4M3 ? 0.375f : 3.0f; }
/* v's and o's head dim */
static inline int64_t case_head_dim_v(const test_case *c) { return c->head_dim_v ? c->head_dim_v : c->head_dim; }

/* Short names for the case tables. */
#define F32 DTYPE_F32
#define F16 DTYPE_F16
#define BF16 DTYPE_BF16
#define E4M3 DTYPE_E4M3
#define E5M2 DTYPE_E5M2
#define CONTIG LAYOUT_CONTIGUOUS
#define PACKED LAYOUT_PACKED_QKV
#define DSTRIDE2 LAYOUT_D_STRIDE2
#define LSESTRIDED LAYOUT_LSE_STRIDED
#define MISALIGNED LAYOUT_MISALIGNED

/* 1 when q, k and v are views into one allocation (case_tensors.qkv). */
static inline int layout_shares_allocation(layout l) {
  return l == LAYOUT_PACKED_QKV || l == LAYOUT_MISALIGNED;
}

static inline void describe(const test_case *c, char *buffer, size_t size) {
  snprintf(buffer, size, "%s b=%lld h=%lld hk=%lld sq=%lld skv=%lld d=%lld causal=%d lse=%d %s%s",
           core_dtype_name(c->dtype), (long long)c->batch, (long long)c->heads, (long long)c->kv_heads,
           (long long)c->seqlen_q, (long long)c->seqlen_kv, (long long)c->head_dim, c->causal, c->lse,
           layout_name(c->layout), c->scale != 0.0f ? " scale=custom" : "");
  if (c->varlen) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " varlen");
  }
  if (c->page_size > 0) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " page=%d", c->page_size);
  }
  if (c->window_left >= 0 || c->window_right >= 0) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " window=(%d,%d)", c->window_left, c->window_right);
  }
  if (c->ragged_q) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " ragged-q");
  }
  if (c->sinks) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " sinks");
  }
  if (c->softcap > 0.0f) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " softcap=%g", (double)c->softcap);
  }
  if (c->packed_k) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " packed-k");
  }
  if (c->alibi) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " alibi%s", c->alibi == 2 ? "[b,h]" : "");
  }
  if (c->kv_fp8) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " kv=%s", core_dtype_name((dtype_id)c->kv_fp8));
  }
  if (c->head_dim_v) {
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " dv=%lld", (long long)c->head_dim_v);
  }
  if (c->bias) {
    static const char *const kinds[4] = {"", "[b,h,sq,skv]", "padding[b,1,1,skv]", "dtype[0-stride b]"};
    size_t used = strlen(buffer);
    snprintf(buffer + used, size > used ? size - used : 0, " bias=%s%s", kinds[c->bias & 3],
             case_bias_key_stride(c) > 1 ? "/strided" : "");
  }
}

/* An additive-bias case's element [b][h][i][j]: a padding mask keeps sequence b's first keys (all for the
 * first, fewer for later ones) but every 7th (from key b % 7) and masks the rest with -inf; the others are
 * multiples of 0.5 from -2 to 2 (exact in every dtype), -inf for about one in eleven, and -inf for every key
 * of head 0's query 1 (a row the bias masks whole: 0 and LSE -inf). A CASE_BIAS_DTYPE bias is the same for
 * every sequence. */
static inline float case_bias_value(const test_case *c, int64_t b, int64_t h, int64_t i, int64_t j) {
  if (c->bias == CASE_BIAS_PADDING) {  /* a tail past each sequence's length, and every 7th key (holes) */
    int64_t keep = c->seqlen_kv - (b * 5) % (c->seqlen_kv / 2 + 1);
    return j < keep && j % 7 != b % 7 ? 0.0f : -INFINITY;
  }
  if (c->bias == CASE_BIAS_DTYPE) b = 0;
  if (h == 0 && i == 1) return -INFINITY;
  uint64_t u = (uint64_t)(b * 1009 + h * 131 + i * 31 + j * 7) * 2654435761u;
  u ^= u >> 13;
  if (u % 11 == 0) return -INFINITY;
  return 0.5f * (float)((int)(u % 9) - 4);
}

/* An ALiBi case's slope for sequence b's head h: BLOOM's geometric 2^(-8 (h + 1) / heads) for [heads];
 * per sequence, that slope times 1, 0.5, 2, ... so that a kernel reading another sequence's row shows. */
static inline float case_alibi_slope(const test_case *c, int64_t b, int64_t h) {
  double slope = pow(2.0, -8.0 * (double)(h + 1) / (double)c->heads);
  if (c->alibi == 2) slope *= (b % 3 == 0) ? 1.0 : (b % 3 == 1) ? 0.5 : 2.0;
  return (float)slope;
}

/* A sinks case's logit for head h: from -3 to 5, so that some heads' sinks take most of the weight
 * (the scores of unit-variance inputs are of order 1) and some almost none. */
static inline float case_sink(const test_case *c, int64_t h) {
  (void)c;
  return -3.0f + (float)((h * 5) % 9);
}

/* A ragged case's query count for sequence b: seqlen_q (the most) for the first, none for the second
 * when there are three or more, and spread over [1, seqlen_q] for the rest. */
static inline int64_t case_sequence_queries(const test_case *c, int64_t b) {
  if (b == 0 || c->seqlen_q == 0) return c->seqlen_q;
  if (b == 1 && c->batch > 2) return 0;
  return 1 + (b * 104729) % c->seqlen_q;
}

/* A ragged case's cu_seqlens_q[b] (b from 0 to batch), and its total_q: the rows of every sequence and
 * the spares around them. */
static inline int64_t case_query_offset(const test_case *c, int64_t b) {
  int64_t offset = CASE_RAGGED_BEFORE;
  for (int64_t i = 0; i < b; i++) offset += case_sequence_queries(c, i);
  return offset;
}
static inline int64_t case_total_q(const test_case *c) { return case_query_offset(c, c->batch) + 1; }

/* A paged case's pages per sequence, and the pool's pages: every sequence's plus three spares. */
static inline int64_t case_table_width(const test_case *c) { return c->seqlen_kv / c->page_size; }
static inline int64_t case_pool_pages(const test_case *c) { return c->batch * case_table_width(c) + 3; }

/* A varlen case's key count for sequence b: all of them for the first, none for the second, and
 * spread over [1, seqlen_kv) for the rest. */
static inline int32_t case_sequence_keys(const test_case *c, int64_t b) {
  if (b == 0 || c->seqlen_kv == 0) return (int32_t)c->seqlen_kv;
  if (b == 1) return 0;
  return (int32_t)(1 + (b * 7919) % c->seqlen_kv);
}

/* A packed-keys case's cu_seqlens_k[b] (b from 0 to batch), and its total_k: the rows of every sequence
 * and the spares around them. */
static inline int64_t case_key_offset(const test_case *c, int64_t b) {
  int64_t offset = CASE_RAGGED_BEFORE;
  for (int64_t i = 0; i < b; i++) offset += case_sequence_keys(c, i);
  return offset;
}
static inline int64_t case_total_k(const test_case *c) { return case_key_offset(c, c->batch) + 1; }

/* One case's host tensors. For packed QKV and misaligned, q, k and v are views into qkv (which owns the
 * memory). The *_before copies are o's and lse's poisoned allocations, taken before the call. */
typedef struct case_tensors {
  host_tensor qkv, q, k, v, o, lse;
  unsigned char *o_before, *lse_before;
  int32_t *seqlens;  /* varlen cases: [batch] key counts, seen through seqlens_t */
  int64_t seqlens_shape[1];
  DLTensor seqlens_t;
  int32_t *table;    /* paged cases: [batch, pages per sequence] page numbers, seen through table_t */
  int64_t table_shape[2];
  DLTensor table_t;
  int32_t *cu;       /* ragged cases: [batch + 1] query offsets, seen through cu_t */
  int64_t cu_shape[1];
  DLTensor cu_t;
  int32_t *cu_k;     /* packed-keys cases: [batch + 1] key offsets, seen through cu_k_t */
  int64_t cu_k_shape[1];
  DLTensor cu_k_t;
  float *sinks;      /* sinks cases: [heads] logits, seen through sinks_t */
  int64_t sinks_shape[1];
  DLTensor sinks_t;
  float *slopes;     /* ALiBi cases: [heads] or [batch, heads] slopes, seen through slopes_t */
  int64_t slopes_shape[2];
  DLTensor slopes_t;
  void *bias;        /* additive-bias cases: the stored elements (case_bias_bytes), seen through bias_t */
  int64_t bias_shape[4], bias_strides[4];
  DLTensor bias_t;
} case_tensors;

/* The bytes an additive-bias case stores: a padding mask's batch x seqlen_kv floats, one sequence's
 * heads x seqlen_q x seqlen_kv elements for CASE_BIAS_DTYPE, every sequence's for CASE_BIAS_FULL (each row
 * twice as long with strided keys). */
static inline size_t case_bias_bytes(const test_case *c) {
  int64_t sq = c->seqlen_q, skv = c->seqlen_kv * case_bias_key_stride(c), h = c->heads;
  if (c->bias == CASE_BIAS_PADDING) return (size_t)(c->batch * skv) * 4;
  if (c->bias == CASE_BIAS_DTYPE) return (size_t)(h * sq * skv) * (size_t)core_dtype_size(c->dtype);
  return (size_t)(c->batch * h * sq * skv) * 4;
}

/* Fills the bias of an additive-bias case (its elements and view); 0 when out of memory. */
static inline int case_bias_create(const test_case *c, case_tensors *t) {
  int64_t b = c->batch, h = c->heads, sq = c->seqlen_q, skv = c->seqlen_kv;
  dtype_id dtype = c->bias == CASE_BIAS_DTYPE ? c->dtype : DTYPE_F32;
  t->bias = calloc(case_bias_bytes(c) + 4, 1);
  if (t->bias == NULL) return 0;
  int64_t ks = case_bias_key_stride(c);
  int64_t shape[4] = {b, h, sq, skv}, strides[4] = {h * sq * skv * ks, sq * skv * ks, skv * ks, ks};
  if (c->bias == CASE_BIAS_PADDING) {
    shape[1] = shape[2] = 1;
    strides[0] = skv;
    strides[1] = 12345;  /* a dimension of size 1 is broadcast: its stride is never used */
    strides[2] = 0;
  }
  if (c->bias == CASE_BIAS_DTYPE) strides[0] = 0;
  for (int64_t bb = 0; bb < shape[0]; bb++)
    for (int64_t hh = 0; hh < shape[1]; hh++)
      for (int64_t i = 0; i < shape[2]; i++)
        for (int64_t j = 0; j < shape[3]; j++)
          core_store_from_f32(t->bias, dtype, bb * strides[0] + hh * strides[1] + i * strides[2] + j * strides[3],
                              case_bias_value(c, bb, hh, i, j));
  memcpy(t->bias_shape, shape, sizeof shape);
  memcpy(t->bias_strides, strides, sizeof strides);
  t->bias_t = (DLTensor){.data = t->bias, .device = {kDLCPU, 0}, .ndim = 4, .dtype = core_dtype_to_dlpack(dtype),
                         .shape = t->bias_shape, .strides = t->bias_strides};
  return 1;
}

/* 1 when every tensor was allocated; fills the inputs from seed, poisons and snapshots the outputs. On 0,
 * case_tensors_free is still the way out. */
static inline int case_tensors_create(const test_case *c, uint64_t seed, case_tensors *t) {
  memset(t, 0, sizeof *t);
  int64_t b = c->batch, h = c->heads, hk = c->kv_heads, sq = c->seqlen_q, skv = c->seqlen_kv, d = c->head_dim;
  const int64_t dv = case_head_dim_v(c);
  int ok = 1;
  int64_t q_shape[4] = {b, sq, h, d}, kv_shape[4] = {b, skv, hk, d};
  if (dv != d && layout_shares_allocation(c->layout)) return 0;
  /* ragged: q and o [total_q, h, d], lse [h, total_q]; the *_dims below say how many dimensions */
  int q_dims = c->ragged_q ? 3 : 4, lse_dims = c->ragged_q ? 2 : 3;
  if (c->ragged_q) {
    if (layout_shares_allocation(c->layout)) return 0;
    q_shape[0] = case_total_q(c);
    q_shape[1] = h;
    q_shape[2] = d;
  }
  const int64_t *q_strided = c->ragged_q ? (const int64_t[]){h * d * 2, d * 2, 2}
                                         : (const int64_t[]){sq * h * d * 2, h * d * 2, d * 2, 2};
  const int64_t *o_strided = c->ragged_q ? (const int64_t[]){h * dv * 2, dv * 2, 2}
                                         : (const int64_t[]){sq * h * dv * 2, h * dv * 2, dv * 2, 2};
  if (c->page_size > 0) {  /* k and v are pools of pages */
    kv_shape[0] = case_pool_pages(c);
    kv_shape[1] = skv = c->page_size;
  }
  /* packed keys: k and v [total_k, hk, d] */
  int kv_dims = c->packed_k ? 3 : 4;
  if (c->packed_k) {
    if (layout_shares_allocation(c->layout) || c->varlen || c->page_size > 0) return 0;
    kv_shape[0] = case_total_k(c);
    kv_shape[1] = hk;
    kv_shape[2] = d;
  }
  /* v and o: k's and q's shapes with v's head dim last */
  int64_t v_shape[4], o_shape[4];
  memcpy(v_shape, kv_shape, sizeof v_shape);
  memcpy(o_shape, q_shape, sizeof o_shape);
  v_shape[c->packed_k ? 2 : 3] = dv;
  o_shape[c->ragged_q ? 2 : 3] = dv;
  const dtype_id kv_dtype = case_kv_dtype(c);
  if (c->kv_fp8 && layout_shares_allocation(c->layout)) return 0;
  if (c->layout == LAYOUT_PACKED_QKV) {
    int64_t all = h + 2 * hk;
    int64_t packed_shape[4] = {b, sq, all, d};
    int64_t strides[4] = {sq * all * d, all * d, d, 1};
    ok &= host_tensor_alloc(&t->qkv, c->dtype, 4, packed_shape, NULL) == 0;
    if (ok) {
      host_tensor_view(&t->q, &t->qkv, c->dtype, 4, q_shape, strides, 0);
      host_tensor_view(&t->k, &t->qkv, c->dtype, 4, kv_shape, strides, h * d);
      host_tensor_view(&t->v, &t->qkv, c->dtype, 4, kv_shape, strides, (h + hk) * d);
      host_tensor_fill_random(&t->qkv, seed);
    }
  } else if (c->layout == LAYOUT_MISALIGNED) {
    int64_t nq = b * sq * h * d, nkv = b * skv * hk * d;
    int64_t flat[1] = {nq + 8 + 2 * nkv};  /* nq and nkv are multiples of 8 (the head dim is) */
    ok &= host_tensor_alloc(&t->qkv, c->dtype, 1, flat, NULL) == 0;
    if (ok) {
      host_tensor_view(&t->q, &t->qkv, c->dtype, 4, q_shape, NULL, 0);
      host_tensor_view(&t->k, &t->qkv, c->dtype, 4, kv_shape, NULL, nq + 1);
      host_tensor_view(&t->v, &t->qkv, c->dtype, 4, kv_shape, NULL, nq + 8 + nkv);
      host_tensor_fill_random(&t->qkv, seed);
    }
  } else {
    int stride2 = c->layout == LAYOUT_D_STRIDE2;
    int64_t kvs[4] = {skv * hk * d * 2, hk * d * 2, d * 2, 2}, vs[4] = {skv * hk * dv * 2, hk * dv * 2, dv * 2, 2};
    const int64_t *kv_strided = c->packed_k ? kvs + 1 : kvs, *v_strided = c->packed_k ? vs + 1 : vs;
    ok &= host_tensor_alloc(&t->q, c->dtype, q_dims, q_shape, stride2 ? q_strided : NULL) == 0;
    ok &= host_tensor_alloc(&t->k, kv_dtype, kv_dims, kv_shape, stride2 ? kv_strided : NULL) == 0;
    ok &= host_tensor_alloc(&t->v, kv_dtype, kv_dims, v_shape, stride2 ? v_strided : NULL) == 0;
    if (ok) {
      host_tensor_fill_random(&t->q, seed);
      host_tensor_fill_random(&t->k, seed + 1);
      host_tensor_fill_random(&t->v, seed + 2);
    }
    if (ok && c->packed_k) {  /* the spare rows before and after the sequences: NaN, never to be read */
      host_tensor *kv[2] = {&t->k, &t->v};
      for (int i = 0; i < 2; i++) {
        host_tensor spare;
        int64_t row = i == 0 ? d : dv;
        int64_t before[3] = {CASE_RAGGED_BEFORE, hk, row}, after[3] = {1, hk, row};
        const int64_t *strides = kv[i]->t.strides;
        host_tensor_view(&spare, kv[i], kv_dtype, 3, before, strides, 0);
        host_tensor_poison(&spare);
        host_tensor_view(&spare, kv[i], kv_dtype, 3, after, strides, (kv_shape[0] - 1) * (strides ? strides[0] : hk * row));
        host_tensor_poison(&spare);
      }
    }
  }
  ok &= host_tensor_alloc(&t->o, c->dtype, q_dims, o_shape, c->layout == LAYOUT_D_STRIDE2 ? o_strided : NULL) == 0;
  if (c->lse) {
    int64_t lse_shape[3] = {b, h, sq};
    int64_t lse_strides[3] = {sq * h, 1, h};  /* memory [b, s, h] */
    if (c->ragged_q) {  /* [h, total_q], strided: memory [total_q, h] */
      lse_shape[0] = h;
      lse_shape[1] = q_shape[0];
      lse_strides[0] = 1;
      lse_strides[1] = h;
    }
    ok &= host_tensor_alloc(&t->lse, DTYPE_F32, lse_dims, lse_shape,
                            c->layout == LAYOUT_LSE_STRIDED ? lse_strides : NULL) == 0;
  }
  if (c->ragged_q) {
    t->cu = malloc((size_t)(b + 1) * sizeof *t->cu);
    ok &= t->cu != NULL;
    for (int64_t i = 0; ok && i <= b; i++) t->cu[i] = (int32_t)case_query_offset(c, i);
    t->cu_shape[0] = b + 1;
    t->cu_t = (DLTensor){.data = t->cu, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLInt, 32, 1},
                         .shape = t->cu_shape};
  }
  if (c->packed_k) {
    t->cu_k = malloc((size_t)(b + 1) * sizeof *t->cu_k);
    ok &= t->cu_k != NULL;
    for (int64_t i = 0; ok && i <= b; i++) t->cu_k[i] = (int32_t)case_key_offset(c, i);
    t->cu_k_shape[0] = b + 1;
    t->cu_k_t = (DLTensor){.data = t->cu_k, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLInt, 32, 1},
                           .shape = t->cu_k_shape};
  }
  if (c->alibi) {
    int64_t rows = c->alibi == 2 ? b : 1;
    t->slopes = malloc((size_t)(rows * h) * sizeof *t->slopes);
    ok &= t->slopes != NULL;
    for (int64_t i = 0; ok && i < rows * h; i++) t->slopes[i] = case_alibi_slope(c, i / h, i % h);
    t->slopes_shape[0] = c->alibi == 2 ? b : h;
    t->slopes_shape[1] = h;
    t->slopes_t = (DLTensor){.data = t->slopes, .device = {kDLCPU, 0}, .ndim = c->alibi == 2 ? 2 : 1,
                             .dtype = {kDLFloat, 32, 1}, .shape = t->slopes_shape};
  }
  if (c->bias) ok &= case_bias_create(c, t);
  if (c->sinks) {
    t->sinks = malloc((size_t)h * sizeof *t->sinks);
    ok &= t->sinks != NULL;
    for (int64_t i = 0; ok && i < h; i++) t->sinks[i] = case_sink(c, i);
    t->sinks_shape[0] = h;
    t->sinks_t = (DLTensor){.data = t->sinks, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLFloat, 32, 1},
                            .shape = t->sinks_shape};
  }
  if (c->varlen) {
    t->seqlens = malloc((size_t)b * sizeof *t->seqlens);
    ok &= t->seqlens != NULL;
    for (int64_t i = 0; ok && i < b; i++) t->seqlens[i] = case_sequence_keys(c, i);
    t->seqlens_shape[0] = b;
    t->seqlens_t = (DLTensor){.data = t->seqlens, .device = {kDLCPU, 0}, .ndim = 1,
                              .dtype = {kDLInt, 32, 1}, .shape = t->seqlens_shape};
  }
  if (c->page_size > 0) {
    /* Sequence b's page i is a shuffle of the pool (a multiplier prime to the pool size); the entries a
     * varlen sequence does not reach are -1, which only a read past its keys would notice. */
    int64_t width = case_table_width(c), pool = case_pool_pages(c), multiplier = 7;
    while (pool % multiplier == 0) multiplier += 2;
    t->table = malloc((size_t)(b * width + 1) * sizeof *t->table);
    ok &= t->table != NULL;
    for (int64_t i = 0; ok && i < b; i++) {
      int64_t keys = c->varlen ? case_sequence_keys(c, i) : c->seqlen_kv;
      for (int64_t j = 0; j < width; j++)
        t->table[i * width + j] = j * c->page_size < keys ? (int32_t)(((i * width + j) * multiplier + 1) % pool) : -1;
    }
    t->table_shape[0] = b;
    t->table_shape[1] = width;
    t->table_t = (DLTensor){.data = t->table, .device = {kDLCPU, 0}, .ndim = 2,
                            .dtype = {kDLInt, 32, 1}, .shape = t->table_shape};
  }
  if (!ok) return 0;
  host_tensor_poison(&t->o);
  if (c->lse) host_tensor_poison(&t->lse);
  /* A failed snapshot is not an error here: the comparison then reports the write check as failed. */
  t->o_before = malloc(t->o.allocation_bytes);
  if (t->o_before) memcpy(t->o_before, t->o.allocation, t->o.allocation_bytes);
  if (c->lse) {
    t->lse_before = malloc(t->lse.allocation_bytes);
    if (t->lse_before) memcpy(t->lse_before, t->lse.allocation, t->lse.allocation_bytes);
  }
  return 1;
}

static inline void case_tensors_free(const test_case *c, case_tensors *t) {
  free(t->seqlens);
  free(t->table);
  free(t->cu);
  free(t->cu_k);
  free(t->slopes);
  free(t->bias);
  free(t->sinks);
  free(t->o_before);
  free(t->lse_before);
  host_tensor_free(&t->qkv);
  if (!layout_shares_allocation(c->layout)) {
    host_tensor_free(&t->q);
    host_tensor_free(&t->k);
    host_tensor_free(&t->v);
  }
  host_tensor_free(&t->o);
  host_tensor_free(&t->lse);
}

/* The arguments of the case over its host tensors (for the CPU the call itself, for a GPU what the
 * reference reads once the outputs are copied back). */
static inline void case_host_args(const test_case *c, case_tensors *t, fj_attention_args *args) {
  fj_attention_args_init(args);
  args->q = &t->q.t;
  args->k = &t->k.t;
  args->v = &t->v.t;
  args->o = &t->o.t;
  args->lse = c->lse ? &t->lse.t : NULL;
  args->causal = c->causal;
  args->softmax_scale = c->scale;
  if (c->varlen) args->seqlens_kv = &t->seqlens_t;
  if (c->page_size > 0) args->block_table = &t->table_t;
  args->windowed = c->window_left >= 0 || c->window_right >= 0;
  args->window_left = c->window_left;
  args->window_right = c->window_right;
  if (c->ragged_q) {
    args->cu_seqlens_q = &t->cu_t;
    args->max_seqlen_q = c->seqlen_q;
  }
  if (c->sinks) args->sinks = &t->sinks_t;
  args->softcap = c->softcap;
  if (c->packed_k) {
    args->cu_seqlens_k = &t->cu_k_t;
    args->max_seqlen_k = c->seqlen_kv;
  }
  if (c->alibi) args->alibi_slopes = &t->slopes_t;
  if (c->bias) args->attn_bias = &t->bias_t;
  if (c->kv_fp8) {
    args->k_scale = case_k_scale(c);
    args->v_scale = case_v_scale(c);
  }
}

static inline uint64_t allocation_hash(const host_tensor *t) {
  return core_hash64(t->allocation, t->allocation_bytes);
}

/* Every fp8 code through a kernel's conversion: a case of `batch` 256 sequences of one query and one key
 * (seqlen_q = seqlen_kv = 1), softmax_scale 1, an LSE and a contiguous layout, whose sequence b has query
 * e_0, K row code b then zeros (0 for a code that is not a finite value: its score would be none) and V
 * row code b throughout, NaN and infinities included. Then the LSE is K's value times k_scale (one score)
 * and o V's times v_scale, in o's dtype. */
static inline float case_fp8_code_value(dtype_id kv, int code) {
  return kv == DTYPE_E4M3 ? core_e4m3_to_f32((uint8_t)code) : core_e5m2_to_f32((uint8_t)code);
}
static inline void case_fill_fp8_codes(const test_case *c, case_tensors *t) {
  dtype_id kv = (dtype_id)c->kv_fp8;
  for (int64_t b = 0; b < c->batch; b++) {
    int key_code = isfinite(case_fp8_code_value(kv, (int)b)) ? (int)b : 0;
    for (int64_t d = 0; d < c->head_dim; d++) {
      core_store_from_f32(t->q.t.data, c->dtype, b * c->head_dim + d, d == 0 ? 1.0f : 0.0f);
      ((uint8_t *)t->k.t.data)[b * c->head_dim + d] = d == 0 ? (uint8_t)key_code : 0;
      ((uint8_t *)t->v.t.data)[b * c->head_dim + d] = (uint8_t)b;
    }
  }
}
/* The sequences whose o is not exactly their value times v_scale in o's dtype (fp16 takes E5M2's largest
 * codes times v_scale to infinity), or whose LSE is off their K value times k_scale by more than a
 * rounding or two (it passes through base 2 and back); *first the first. */
static inline int case_fp8_codes_wrong(const test_case *c, const case_tensors *t, int *first) {
  dtype_id kv = (dtype_id)c->kv_fp8;
  int wrong = 0;
  *first = -1;
  for (int64_t b = 0; b < c->batch; b++) {
    float value = case_fp8_code_value(kv, (int)b), key = isfinite(value) ? value : 0.0f;
    float want_lse = key * case_k_scale(c), got_lse = ((const float *)t->lse.t.data)[b];
    int bad = !(fabsf(got_lse - want_lse) <= 1e-6f * fabsf(want_lse) + 1e-30f);
    uint32_t rounded;
    core_store_from_f32(&rounded, c->dtype, 0, value * case_v_scale(c));
    float want_o = core_load_as_f32(&rounded, c->dtype, 0);
    for (int64_t d = 0; d < c->head_dim; d++) {
      float got = core_load_as_f32(t->o.t.data, c->dtype, b * c->head_dim + d);
      bad |= !(got == want_o || (isnan(got) && isnan(want_o)));
    }
    if (bad && *first < 0) *first = (int)b;
    wrong += bad;
  }
  return wrong;
}

/* A hash of every input byte, to show that the call left q, k and v alone. */
static inline uint64_t case_inputs_hash(const test_case *c, const case_tensors *t) {
  if (layout_shares_allocation(c->layout)) return allocation_hash(&t->qkv);
  return allocation_hash(&t->q) ^ (allocation_hash(&t->k) * 3) ^ (allocation_hash(&t->v) * 7);
}

/* Byte mask of the elements a view reaches inside its allocation, to tell writes to o's elements from
 * writes anywhere else in the same allocation. */
static inline unsigned char *element_mask(const host_tensor *t, int element_size) {
  unsigned char *mask = calloc(t->allocation_bytes, 1);
  if (mask == NULL) return NULL;
  const char *base = t->allocation;
  int64_t shape[4] = {1, 1, 1, 1}, stride[4] = {0, 0, 0, 0};
  int off = 4 - t->t.ndim;
  for (int i = 0; i < t->t.ndim; i++) {
    shape[off + i] = t->t.shape[i];
    stride[off + i] = t->t.strides ? t->t.strides[i] : 0;
  }
  if (t->t.strides == NULL) {
    int64_t s = 1;
    for (int i = 3; i >= 0; i--) {
      stride[i] = s;
      s *= shape[i];
    }
  }
  for (int64_t a = 0; a < shape[0]; a++)
    for (int64_t b = 0; b < shape[1]; b++)
      for (int64_t c = 0; c < shape[2]; c++)
        for (int64_t d = 0; d < shape[3]; d++) {
          int64_t e = a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3];
          size_t at = (size_t)((const char *)t->t.data - base) + (size_t)e * (size_t)element_size +
                      (size_t)t->t.byte_offset;
          memset(mask + at, 1, (size_t)element_size);
        }
  return mask;
}

/* 1 when every byte of after outside the mask equals before. */
static inline int only_elements_written(const host_tensor *t, const unsigned char *before, int element_size) {
  unsigned char *mask = element_mask(t, element_size);
  if (mask == NULL) return 0;
  const unsigned char *after = t->allocation;
  int ok = 1;
  for (size_t i = 0; i < t->allocation_bytes && ok; i++)
    if (!mask[i] && after[i] != before[i]) ok = 0;
  free(mask);
  return ok;
}

/* The byte of element `index` of a host tensor inside its allocation. */
static inline size_t element_byte(const host_tensor *t, const int64_t *index, int element_size) {
  int64_t e = 0, running = 1;
  for (int i = t->t.ndim - 1; i >= 0; i--) {
    e += index[i] * (t->t.strides ? t->t.strides[i] : running);
    running *= t->t.shape[i];
  }
  return (size_t)((const char *)t->t.data - (const char *)t->allocation) + (size_t)t->t.byte_offset +
         (size_t)e * (size_t)element_size;
}

/* A ragged case's spare rows of o ([total_q, h, d]) and lse ([h, total_q]), those before
 * cu_seqlens_q[0] and after cu_seqlens_q[batch], are as they were before the call. */
static inline int ragged_spares_untouched(const test_case *c, const case_tensors *t, int element_size) {
  if (t->o_before == NULL || (c->lse && t->lse_before == NULL)) return 0;
  const unsigned char *o = t->o.allocation, *lse = t->lse.allocation;
  for (int64_t r = 0; r < case_total_q(c); r++) {
    if (r >= CASE_RAGGED_BEFORE && r < case_query_offset(c, c->batch)) continue;
    for (int64_t h = 0; h < c->heads; h++) {
      for (int64_t d = 0; d < case_head_dim_v(c); d++) {
        size_t at = element_byte(&t->o, (const int64_t[]){r, h, d}, element_size);
        if (memcmp(o + at, t->o_before + at, (size_t)element_size) != 0) return 0;
      }
      if (c->lse) {
        size_t at = element_byte(&t->lse, (const int64_t[]){h, r}, 4);
        if (memcmp(lse + at, t->lse_before + at, 4) != 0) return 0;
      }
    }
  }
  return 1;
}

/* Rows that see no key (under the bottom-right causal mask or window, or in a sequence with no keys)
 * must be exactly 0 (not NaN) and have lse -inf, or with sinks their head's sink (to fp32 rounding). */
static inline int masked_rows_exact(const attention_problem *p, long long *bad_row) {
  for (int64_t b = 0; b < p->batch; b++) {
    int64_t keys = core_sequence_keys(p, b), start, queries;
    core_sequence_queries(p, b, &start, &queries);
    for (int64_t i = 0; i < queries; i++) {
      int64_t first, end;
      core_visible_keys(p, i, queries, keys, &first, &end);
      if (first < end) continue;
      for (int64_t h = 0; h < p->key.heads; h++) {
        for (int64_t d = 0; d < core_key_head_dim_v(&p->key); d++) {
          int64_t e = b * p->o.stride[0] + (start + i) * p->o.stride[1] + h * p->o.stride[2] + d * p->o.stride[3];
          float value = core_load_as_f32(p->o.data, (dtype_id)p->key.dtype, e);
          if (value != 0.0f || isnan(value)) {
            *bad_row = (long long)i;
            return 0;
          }
        }
        if (p->lse.data != NULL) {
          int64_t e = b * p->lse.stride[0] + h * p->lse.stride[1] + (start + i) * p->lse.stride[2];
          float value = ((const float *)(const void *)p->lse.data)[e];
          int exact = p->sinks != NULL ? fabsf(value - p->sinks[h * p->sinks_stride]) <= 1e-5f * (1.0f + fabsf(value))
                                       : isinf(value) && value < 0;
          if (!exact) {
            *bad_row = (long long)i;
            return 0;
          }
        }
      }
    }
  }
  return 1;
}

/* What the host tensors' outputs came to against the float64 reference. */
typedef struct case_result {
  double err_o, err_lse;  /* relative norm errors; err_lse 0 without lse */
  double tol, tol_lse;
  int masked_ok, outside_o, outside_lse;  /* 1: fully masked rows exact, nothing written outside */
  long long bad_row;                      /* the first inexact fully masked row, else -1 */
} case_result;

/* 1 when the comparison ran; 0 when the reference could not (fj_last_error says why). tol_lse is the
 * device's: lse is fp32 whatever the inputs, but how close it gets depends on how it is summed. */
static inline int case_compare(const test_case *c, case_tensors *t, double tol_lse, case_result *r) {
  fj_attention_args args;
  case_host_args(c, t, &args);
  attention_problem problem;
  fj_status status = core_validate_attention(&args, &problem);
  int64_t b = c->batch, h = c->heads, sq = c->seqlen_q, d = case_head_dim_v(c);
  /* the reference's rows: [b][sq][h][dv] and [b][h][sq] (a ragged sequence's first rows of its own) */
  double *ref_o = malloc(sizeof(double) * (size_t)(b * sq * h * d) + 8);
  double *ref_lse = malloc(sizeof(double) * (size_t)(b * h * sq) + 8);
  int ran = status == FJ_OK && ref_o != NULL && ref_lse != NULL &&
            core_reference_attention(&problem, ref_o, ref_lse) == FJ_OK;
  if (ran) {
    int es = core_dtype_size(c->dtype);
    r->tol = core_dtype_tolerance(c->dtype);
    r->tol_lse = tol_lse;
    r->err_o = core_relative_error_o(&problem, ref_o);
    r->err_lse = c->lse ? core_relative_error_lse(&problem, ref_lse) : 0.0;
    r->bad_row = -1;
    r->masked_ok = masked_rows_exact(&problem, &r->bad_row);
    r->outside_o = t->o_before ? only_elements_written(&t->o, t->o_before, es) : 0;
    r->outside_lse = c->lse ? (t->lse_before ? only_elements_written(&t->lse, t->lse_before, 4) : 0) : 1;
    /* ragged: the rows around the sequences' are o's and lse's elements, but no sequence's */
    if (c->ragged_q && !ragged_spares_untouched(c, t, es)) r->outside_o = 0;
  }
  free(ref_o);
  free(ref_lse);
  return ran;
}

/* The verdict every device applies; a device may add conditions of its own. */
static inline int case_result_ok(const case_result *r) {
  return r->err_o <= r->tol && r->err_lse <= r->tol_lse && r->masked_ok && r->outside_o && r->outside_lse;
}

#endif
