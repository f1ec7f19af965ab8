/* test_fuzz_args.c: fj_attention_forward on the CPU with random calls, each a valid call of random
 * features (dtypes, fp8 caches, GQA, layouts, LSE, causal, windows, paged caches, per-sequence key
 * counts, ragged queries, packed keys, sinks, ALiBi, soft-capping, MLA's own v head dim, workspaces)
 * with none, one or two of the mistakes a caller makes applied to it (a shape or stride off, a wrong
 * dtype, device or ndim, NULL data, an output overlapping an input, a bad scale, offsets and lengths out
 * of range, ...). Every caller buffer sits between guard bytes. Whatever the call returns:
 * - an error leaves every byte of every buffer as it was and says something in fj_last_error();
 * - FJ_OK leaves every byte outside o's and lse's views (and the workspace) as it was, and o and lse
 *   match the float64 reference of the call as the validator describes it;
 * - a mistake that cannot be a valid call (an inconsistent shape, a NaN scale, an out-of-range entry) is
 *   refused.
 * Then fj_context_warmup with shapes of which one may have a field wrong: refused with the shape named,
 * the shapes before it loaded at most. fj_attention_workspace_size must judge each call as the call does.
 * The seed is new each run (FJ_FUZZ_SEED=N repeats one; FJ_FUZZ_ITERS=N for more calls) and every
 * failure prints the call. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "flashjit.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/problem.h"
#include "core/reference.h"
#include "check.h"

/* ---- random numbers (splitmix64: the seed alone decides every call) ------------------------------- */

static uint64_t rng_state;
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static int64_t rnd(int64_t lo, int64_t hi) { return lo + (int64_t)(rng_next() % (uint64_t)(hi - lo + 1)); }
static int chance(int percent) { return rnd(0, 99) < percent; }
static float rnd_unit(void) { return (float)(rng_next() >> 40) / (float)(1 << 24) * 2.0f - 1.0f; }

/* ---- caller buffers between guards ------------------------------------------------------------------ */

#define GUARD 64
#define MAX_REGIONS 16
#define MAX_DIMS 6

/* One malloc'd buffer: GUARD bytes, `bytes` of the caller's, GUARD bytes. `writable` marks the bytes a
 * successful call may write (o's and lse's views, the workspace). */
typedef struct region {
  unsigned char *base;
  size_t bytes;
  unsigned char *snapshot;
  unsigned char *writable;
} region;

typedef struct tensor {
  DLTensor t;
  int64_t shape[MAX_DIMS];
  int64_t strides[MAX_DIMS];
  int region;
} tensor;

enum { T_Q, T_K, T_V, T_O, T_LSE, T_SEQLENS, T_TABLE, T_CUQ, T_CUK, T_SINKS, T_ALIBI, T_BIAS, T_WORK, T_COUNT };
static const char *const tensor_names[T_COUNT] = {"q",            "k",           "v",            "o",
                                                  "lse",          "seqlens_kv",  "block_table",  "cu_seqlens_q",
                                                  "cu_seqlens_k", "sinks",       "alibi_slopes", "attn_bias",
                                                  "workspace"};

/* The call: what was drawn, its buffers and tensors, and the args. */
typedef struct call {
  dtype_id dtype, kv_dtype;
  int64_t batch, seqlen_q, seqlen_kv, heads, kv_heads, head_dim, head_dim_v;
  int causal, with_lse, paged, page_size, varlen, ragged_q, packed_k, qkv_packed;
  int64_t pages, max_pages, total_q, total_k;
  region regions[MAX_REGIONS];
  int num_regions;
  tensor t[T_COUNT];
  int present[T_COUNT];
  fj_attention_args args;
  char features[512];
  char mistakes[512];
  int must_refuse;   /* a mistake that no valid call makes */
  int dtype_changed; /* q's, k's, v's or o's dtype is another attention or fp8 dtype */
} call;

static void say(char *buffer, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void say(char *buffer, const char *format, ...) {
  size_t used = strlen(buffer);
  if (used + 2 >= 512) return;
  va_list ap;
  va_start(ap, format);
  vsnprintf(buffer + used, 512 - used, format, ap);
  va_end(ap);
}

static int new_region(call *c, size_t bytes) {
  if (c->num_regions == MAX_REGIONS) {
    printf("FAIL: more than %d buffers in one call\n", MAX_REGIONS);
    exit(1);
  }
  region *r = &c->regions[c->num_regions];
  r->bytes = bytes;
  r->base = malloc(bytes + 2 * GUARD);
  r->snapshot = malloc(bytes + 2 * GUARD);
  r->writable = calloc(bytes + 2 * GUARD, 1);
  if (r->base == NULL || r->snapshot == NULL || r->writable == NULL) {
    printf("FAIL: no memory for a buffer of %zu bytes\n", bytes);
    exit(1);
  }
  for (size_t i = 0; i < bytes + 2 * GUARD; i++) r->base[i] = (unsigned char)(0xa5 ^ (i * 31));
  return c->num_regions++;
}

static unsigned char *region_data(const call *c, int region_index) { return c->regions[region_index].base + GUARD; }

static void call_free(call *c) {
  for (int i = 0; i < c->num_regions; i++) {
    free(c->regions[i].base);
    free(c->regions[i].snapshot);
    free(c->regions[i].writable);
  }
}

/* A DLTensor's element strides (NULL: compact row-major). */
static void strides_of(const DLTensor *t, int64_t *strides) {
  int64_t stride = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    strides[i] = t->strides ? t->strides[i] : stride;
    if (__builtin_mul_overflow(stride, t->shape[i], &stride)) stride = INT64_MAX; /* a huge shape: view_span says so */
  }
}

/* The element offsets a view reaches, [low, high]: 1, or 0 when it has no element, or -1 when a shape or
 * stride is past 2^32 (no buffer of a test holds it). */
static int view_span(const DLTensor *t, int64_t *low, int64_t *high) {
  int64_t strides[MAX_DIMS];
  strides_of(t, strides);
  *low = *high = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] <= 0) return 0;
    if (t->shape[i] > ((int64_t)1 << 32) || strides[i] > ((int64_t)1 << 32) || strides[i] < -((int64_t)1 << 32)) return -1;
    int64_t span = (t->shape[i] - 1) * strides[i];
    if (span < 0)
      *low += span;
    else
      *high += span;
  }
  return 1;
}

static int dtype_bytes_of(DLDataType type) { return (type.bits * type.lanes + 7) / 8; }

/* A tensor over a region of its own: the logical shape, laid out in `order` (outermost first; the last
 * dim is innermost with stride `inner`), each dim padded by `pad` elements. */
static void make_tensor(call *c, int which, DLDataType type, int ndim, const int64_t *shape, const int *order,
                        int64_t inner, int pad) {
  tensor *t = &c->t[which];
  memset(t, 0, sizeof *t);
  int64_t stride = inner;
  for (int j = ndim - 1; j >= 0; j--) {
    int dim = order ? order[j] : j;
    t->strides[dim] = stride;
    stride *= shape[dim] + (j < ndim - 1 ? pad : 0);
  }
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->t.ndim = ndim;
  t->t.shape = t->shape;
  t->t.strides = t->strides;
  t->t.dtype = type;
  t->t.device = (DLDevice){kDLCPU, 0};
  int64_t low, high;
  size_t bytes = view_span(&t->t, &low, &high) == 1 ? (size_t)(high + 1) * (size_t)dtype_bytes_of(type) : 0;
  /* Twice what the view needs, so that a view a mistake stretches a little still reads memory that
   * exists (the library cannot know where a caller's buffer ends; what it writes is its business). */
  t->region = new_region(c, bytes * 2 + 16);
  t->t.data = region_data(c, t->region);
  c->present[which] = 1;
  /* Every element of the buffer holds a value of the dtype, not only the view's: a mistake that changes
   * the view (strides dropped, a stride swapped) then reads numbers, as the reference does. */
  dtype_id id;
  unsigned char *data = region_data(c, t->region);
  size_t elements = c->regions[t->region].bytes / (size_t)dtype_bytes_of(type);
  if (!core_kv_dtype_from_dlpack(type, &id)) {
    memset(data, 0, c->regions[t->region].bytes);
    return;
  }
  for (size_t i = 0; i < elements; i++) {
    float value = rnd_unit();
    if (id == DTYPE_E4M3)
      data[i] = core_f32_to_e4m3(value * 8.0f);
    else if (id == DTYPE_E5M2)
      data[i] = core_f32_to_e5m2(value * 8.0f);
    else
      core_store_from_f32(data, id, (int64_t)i, value);
  }
}

static DLDataType dl_of(dtype_id id) { return core_dtype_to_dlpack(id); }
static const DLDataType dl_int32 = {kDLInt, 32, 1};
static const DLDataType dl_f32 = {kDLFloat, 32, 1};

/* Scales a contiguous fp32 tensor's values (sinks, slopes: [-1, 1) is not their range). */
static void scale_values(call *c, int which, float scale) {
  int64_t count = 1;
  for (int i = 0; i < c->t[which].t.ndim; i++) count *= c->t[which].shape[i];
  for (int64_t i = 0; i < count; i++) ((float *)c->t[which].t.data)[i] *= scale;
}

/* Element i of an int32 tensor's buffer (through the buffer, not t.data, which a mistake may move). */
static int32_t *int32_at(call *c, int which, int64_t i) { return (int32_t *)region_data(c, c->t[which].region) + i; }
static void set_int32(call *c, int which, int64_t i, int64_t value) { *int32_at(c, which, i) = (int32_t)value; }

/* ---- a valid call of random features --------------------------------------------------------------- */

static void random_layout(int ndim, int *order, int64_t *inner, int *pad) {
  for (int i = 0; i < ndim; i++) order[i] = i;
  if (chance(30)) { /* [b, h, s, d] in memory, as torch's transposed views */
    int a = (int)rnd(0, ndim - 2), b = (int)rnd(0, ndim - 2), tmp = order[a];
    order[a] = order[b];
    order[b] = tmp;
  }
  *inner = chance(10) ? 2 : 1;
  *pad = chance(25) ? (int)rnd(1, 3) : 0;
}

/* cu_seqlens_q or _k: [batch + 1] offsets of sequences of 0 to max_length rows each, packed end to end
 * after 0 to 2 spare rows; returns the rows in all (0 to 2 spare after them), *longest the longest. */
static int64_t make_offsets(call *c, int which, int64_t max_length, int64_t *longest) {
  int64_t cu_shape[1] = {c->batch + 1};
  make_tensor(c, which, dl_int32, 1, cu_shape, NULL, 1, 0);
  int64_t offset = rnd(0, 2);
  *longest = 0;
  set_int32(c, which, 0, offset);
  for (int64_t b = 0; b < c->batch; b++) {
    int64_t length = rnd(0, max_length);
    if (length > *longest) *longest = length;
    offset += length;
    set_int32(c, which, b + 1, offset);
  }
  return offset + rnd(0, 2);
}

static void draw_call(call *c) {
  memset(c, 0, sizeof *c);
  static const dtype_id dtypes[3] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
  c->dtype = dtypes[rnd(0, 2)];
  c->kv_dtype = chance(15) ? (chance(50) ? DTYPE_E4M3 : DTYPE_E5M2) : c->dtype;
  static const int dims[] = {8, 16, 24, 32, 64};
  c->head_dim = dims[rnd(0, 4)];
  c->head_dim_v = chance(12) ? dims[rnd(0, 4)] : c->head_dim;
  c->batch = rnd(1, 3);
  c->kv_heads = rnd(1, 3);
  c->heads = c->kv_heads * rnd(1, 3);
  c->seqlen_q = chance(5) ? 0 : rnd(1, 20);
  c->seqlen_kv = chance(5) ? 0 : rnd(1, 40);
  c->causal = chance(40);
  c->with_lse = chance(50);
  int windowed = chance(15);
  c->ragged_q = chance(15);
  int paged_or_packed = (int)rnd(0, 9); /* 0-1 paged, 2 packed keys, else plain */
  c->paged = paged_or_packed <= 1;
  c->packed_k = paged_or_packed == 2;
  c->varlen = !c->packed_k && chance(c->paged ? 70 : 20);
  int sinks = chance(12), alibi = chance(12), bias = chance(12);
  c->qkv_packed = !c->paged && !c->packed_k && !c->ragged_q && c->kv_dtype == c->dtype &&
                  c->head_dim_v == c->head_dim && c->seqlen_q == c->seqlen_kv && chance(25);
  snprintf(c->features, sizeof c->features, "%s kv=%s b=%lld sq=%lld skv=%lld h=%lld hk=%lld d=%lld dv=%lld%s%s",
           core_dtype_name(c->dtype), core_dtype_name(c->kv_dtype), (long long)c->batch, (long long)c->seqlen_q,
           (long long)c->seqlen_kv, (long long)c->heads, (long long)c->kv_heads, (long long)c->head_dim,
           (long long)c->head_dim_v, c->causal ? " causal" : "", c->with_lse ? " lse" : "");

  fj_attention_args *a = &c->args;
  fj_attention_args_init(a);
  int order[4];
  int64_t inner;
  int pad;

  /* q and o: [b, sq, h, d], or [total_q, h, d] packed end to end */
  int64_t q_rows = c->batch * c->seqlen_q;
  if (c->ragged_q) {
    int64_t longest;
    c->total_q = make_offsets(c, T_CUQ, c->seqlen_q, &longest);
    a->cu_seqlens_q = &c->t[T_CUQ].t;
    a->max_seqlen_q = longest;
    say(c->features, " ragged_q(total %lld, max %lld)", (long long)c->total_q, (long long)longest);
    q_rows = c->total_q;
  }
  if (c->qkv_packed) {
    /* one buffer [b, s, h + 2 hk, d]: q, k and v are views into it, as a fused projection gives them */
    int64_t shape[4] = {c->batch, c->seqlen_q, c->heads + 2 * c->kv_heads, c->head_dim};
    random_layout(4, order, &inner, &pad);
    make_tensor(c, T_Q, dl_of(c->dtype), 4, shape, order, inner, pad);
    c->t[T_K] = c->t[T_Q];
    c->t[T_V] = c->t[T_Q];
    c->present[T_K] = c->present[T_V] = 1;
    for (int which = T_Q; which <= T_V; which++) {
      tensor *t = &c->t[which];
      t->t.shape = t->shape;
      t->t.strides = t->strides;
      t->shape[2] = which == T_Q ? c->heads : c->kv_heads;
      int64_t first_head = which == T_Q ? 0 : which == T_K ? c->heads : c->heads + c->kv_heads;
      t->t.data = (char *)t->t.data + first_head * t->strides[2] * core_dtype_size(c->dtype);
    }
    say(c->features, " qkv_packed");
  } else {
    int64_t shape4[4] = {c->batch, c->seqlen_q, c->heads, c->head_dim};
    int64_t shape3[3] = {q_rows, c->heads, c->head_dim};
    random_layout(c->ragged_q ? 3 : 4, order, &inner, &pad);
    make_tensor(c, T_Q, dl_of(c->dtype), c->ragged_q ? 3 : 4, c->ragged_q ? shape3 : shape4, order, inner, pad);
  }
  {
    int64_t shape4[4] = {c->batch, c->seqlen_q, c->heads, c->head_dim_v};
    int64_t shape3[3] = {q_rows, c->heads, c->head_dim_v};
    random_layout(c->ragged_q ? 3 : 4, order, &inner, &pad);
    make_tensor(c, T_O, dl_of(c->dtype), c->ragged_q ? 3 : 4, c->ragged_q ? shape3 : shape4, order, inner, pad);
  }

  /* k and v: [b, skv, hk, d], pages [pages, page_size, hk, d], or packed [total_k, hk, d] */
  int64_t kv_shape[4] = {c->batch, c->seqlen_kv, c->kv_heads, c->head_dim};
  int kv_ndim = 4;
  if (c->paged) {
    static const int page_sizes[] = {1, 2, 4, 8, 16};
    c->page_size = page_sizes[rnd(0, 4)];
    c->max_pages = rnd(1, 4);
    c->pages = rnd(1, 6);
    int64_t table_shape[2] = {c->batch, c->max_pages};
    make_tensor(c, T_TABLE, dl_int32, 2, table_shape, NULL, 1, 0);
    for (int64_t i = 0; i < c->batch * c->max_pages; i++) set_int32(c, T_TABLE, i, rnd(0, c->pages - 1));
    a->block_table = &c->t[T_TABLE].t;
    c->seqlen_kv = c->max_pages * c->page_size;
    kv_shape[0] = c->pages;
    kv_shape[1] = c->page_size;
    say(c->features, " paged(%lld pages of %d, %lld a sequence)", (long long)c->pages, c->page_size,
        (long long)c->max_pages);
  } else if (c->packed_k) {
    int64_t longest;
    c->total_k = make_offsets(c, T_CUK, c->seqlen_kv, &longest);
    a->cu_seqlens_k = &c->t[T_CUK].t;
    a->max_seqlen_k = longest;
    kv_ndim = 3;
    kv_shape[0] = c->total_k;
    kv_shape[1] = c->kv_heads;
    kv_shape[2] = c->head_dim;
    say(c->features, " packed_k(total %lld, max %lld)", (long long)c->total_k, (long long)longest);
  }
  if (!c->qkv_packed) {
    random_layout(kv_ndim, order, &inner, &pad);
    make_tensor(c, T_K, dl_of(c->kv_dtype), kv_ndim, kv_shape, order, inner, pad);
    kv_shape[kv_ndim - 1] = c->head_dim_v;
    random_layout(kv_ndim, order, &inner, &pad);
    make_tensor(c, T_V, dl_of(c->kv_dtype), kv_ndim, kv_shape, order, inner, pad);
  }
  if (c->varlen) {
    int64_t shape[1] = {c->batch};
    make_tensor(c, T_SEQLENS, dl_int32, 1, shape, NULL, 1, 0);
    for (int64_t b = 0; b < c->batch; b++) set_int32(c, T_SEQLENS, b, rnd(0, c->seqlen_kv));
    a->seqlens_kv = &c->t[T_SEQLENS].t;
    say(c->features, " seqlens_kv");
  }
  if (c->with_lse) {
    int64_t shape3[3] = {c->batch, c->heads, c->seqlen_q};
    int64_t shape2[2] = {c->heads, q_rows};
    random_layout(c->ragged_q ? 2 : 3, order, &inner, &pad);
    make_tensor(c, T_LSE, dl_f32, c->ragged_q ? 2 : 3, c->ragged_q ? shape2 : shape3, order, inner, pad);
    a->lse = &c->t[T_LSE].t;
  }
  if (sinks) {
    int64_t shape[1] = {c->heads};
    make_tensor(c, T_SINKS, dl_f32, 1, shape, NULL, 1, 0);
    scale_values(c, T_SINKS, 2.0f);
    a->sinks = &c->t[T_SINKS].t;
    say(c->features, " sinks");
  }
  if (alibi) {
    int64_t shape[2] = {c->batch, c->heads};
    int two_dims = chance(50);
    make_tensor(c, T_ALIBI, dl_f32, two_dims ? 2 : 1, two_dims ? shape : shape + 1, NULL, 1, 0);
    scale_values(c, T_ALIBI, 0.5f);
    a->alibi_slopes = &c->t[T_ALIBI].t;
    say(c->features, " alibi%s", two_dims ? "[b,h]" : "[h]");
  }
  if (bias) {  /* [b, h, sq, skv] of the call's lengths, each dimension maybe 1 (broadcast), fp32 or q's dtype */
    int64_t queries = c->ragged_q ? a->max_seqlen_q : c->seqlen_q, keys = c->packed_k ? a->max_seqlen_k : c->seqlen_kv;
    int64_t shape[4] = {chance(30) ? 1 : c->batch, chance(50) ? 1 : c->heads, chance(20) ? 1 : queries,
                        chance(10) ? 1 : keys};
    int f32 = c->dtype == DTYPE_F32 || chance(50);
    random_layout(4, order, &inner, &pad);
    make_tensor(c, T_BIAS, f32 ? dl_f32 : dl_of(c->dtype), 4, shape, order, inner, pad);
    a->attn_bias = &c->t[T_BIAS].t;
    say(c->features, " attn_bias[%lld,%lld,%lld,%lld] %s", (long long)shape[0], (long long)shape[1],
        (long long)shape[2], (long long)shape[3], f32 ? "fp32" : core_dtype_name(c->dtype));
  }
  if (chance(15)) {
    int64_t shape[1] = {rnd(0, 1 << 16)};
    make_tensor(c, T_WORK, (DLDataType){kDLUInt, 8, 1}, 1, shape, NULL, 1, 0);
    /* 16-byte aligned: the region's data is (malloc's alignment + GUARD) */
    a->workspace = &c->t[T_WORK].t;
    say(c->features, " workspace(%lld)", (long long)shape[0]);
  }
  if (windowed) {
    a->windowed = 1;
    a->window_left = chance(30) ? -1 : rnd(0, 12);
    a->window_right = c->causal ? (chance(50) ? -1 : 0) : (chance(30) ? -1 : rnd(0, 6));
    say(c->features, " window(%lld,%lld)", (long long)a->window_left, (long long)a->window_right);
  }
  if (chance(15)) {
    a->softcap = 1.0f + 20.0f * (rnd_unit() + 1.0f);
    say(c->features, " softcap %g", (double)a->softcap);
  }
  if (chance(15)) {  /* a fixed split or none: results as with the library's own split */
    static const int64_t splits[4] = {-1, 4, 8, 4096};  /* keys here are at most 64: 16 parts at most */
    a->kv_split_keys = splits[rnd(0, 3)];
    say(c->features, " kv_split_keys %lld", (long long)a->kv_split_keys);
  }
  if (chance(30)) {
    a->softmax_scale = 0.05f + 0.5f * (rnd_unit() + 1.0f);
    say(c->features, " scale %g", (double)a->softmax_scale);
  }
  if (core_dtype_is_fp8(c->kv_dtype)) {
    a->k_scale = chance(30) ? 0.0f : 0.03f + 0.1f * (rnd_unit() + 1.0f);
    a->v_scale = chance(30) ? 0.0f : 0.03f + 0.1f * (rnd_unit() + 1.0f);
    say(c->features, " k_scale %g v_scale %g", (double)a->k_scale, (double)a->v_scale);
  }
  a->causal = c->causal;
  a->q = &c->t[T_Q].t;
  a->k = &c->t[T_K].t;
  a->v = &c->t[T_V].t;
  a->o = &c->t[T_O].t;
}

/* ---- the mistakes ------------------------------------------------------------------------------------ */

static tensor *pick_tensor(call *c, int *which, int floating_only) {
  for (int tries = 0; tries < 100; tries++) {
    int i = (int)rnd(0, T_COUNT - 1);
    if (!c->present[i]) continue;
    if (floating_only && (i == T_SEQLENS || i == T_TABLE || i == T_CUQ || i == T_CUK || i == T_WORK)) continue;
    *which = i;
    return &c->t[i];
  }
  *which = T_Q;
  return &c->t[T_Q];
}

/* Applies one mistake; returns 0 where it does not apply to this call (the caller draws another). */
static int apply_mistake(call *c) {
  fj_attention_args *a = &c->args;
  int which;
  tensor *t;
  switch (rnd(0, 29)) {
  case 0: { /* one dim of one tensor that the others pin: off by one, zero, negative or huge */
    t = pick_tensor(c, &which, 1);
    int dim = (int)rnd(0, t->t.ndim - 1);
    static const int64_t values[] = {-1, 0, INT64_MAX, (int64_t)1 << 40, (int64_t)1 << 31};
    int64_t old = t->shape[dim];
    t->shape[dim] = chance(50) ? old + (chance(50) ? 1 : -1) : values[rnd(0, 4)];
    if (t->shape[dim] == old) return 0;
    /* q's and o's dims may grow together only where nothing else pins them; refused is not certain
     * for a dim that is the same in every tensor (batch with no offsets), so only claim "refused" for
     * values no tensor may hold */
    if (t->shape[dim] < 0 || t->shape[dim] > ((int64_t)1 << 40) - 1) c->must_refuse = 1;
    say(c->mistakes, " %s.shape[%d]=%lld (was %lld)", tensor_names[which], dim, (long long)t->shape[dim], (long long)old);
    return 1;
  }
  case 1: { /* a different ndim (not ALiBi's, whose [h] and [b, h] may both fit) */
    t = pick_tensor(c, &which, 0);
    if (which == T_ALIBI) return 0;
    int old = t->t.ndim;
    t->t.ndim = (int)rnd(0, MAX_DIMS);
    if (t->t.ndim == old) return 0;
    for (int i = old; i < t->t.ndim; i++) {
      t->shape[i] = 1;
      t->strides[i] = 1;
    }
    c->must_refuse = 1;
    say(c->mistakes, " %s.ndim=%d (was %d)", tensor_names[which], t->t.ndim, old);
    return 1;
  }
  case 2: { /* a wrong dtype */
    t = pick_tensor(c, &which, 0);
    static const DLDataType wrong[] = {{kDLFloat, 64, 1}, {kDLInt, 8, 1},  {kDLFloat, 16, 2}, {kDLBfloat, 32, 1},
                                       {kDLUInt, 32, 1},  {kDLFloat, 8, 1}, {kDLInt, 64, 1},  {kDLComplex, 32, 1}};
    DLDataType old = t->t.dtype;
    t->t.dtype = wrong[rnd(0, 7)];
    c->must_refuse = 1;
    say(c->mistakes, " %s.dtype={%d,%d,%d} (was {%d,%d,%d})", tensor_names[which], t->t.dtype.code, t->t.dtype.bits,
        t->t.dtype.lanes, old.code, old.bits, old.lanes);
    return 1;
  }
  case 3: { /* one of the attention dtypes, but another one */
    t = pick_tensor(c, &which, 1);
    if (which == T_LSE || which == T_SINKS || which == T_ALIBI || which == T_BIAS) return 0;
    dtype_id id = (dtype_id)rnd(0, DTYPE_KV_COUNT - 1);
    DLDataType old = t->t.dtype;
    t->t.dtype = dl_of(id);
    if (memcmp(&old, &t->t.dtype, sizeof old) == 0) return 0;
    say(c->mistakes, " %s.dtype=%s", tensor_names[which], core_dtype_name(id));
    c->dtype_changed = 1; /* refused or not: dtypes_valid says, once every mistake is made */
    return 1;
  }
  case 4: { /* another device */
    t = pick_tensor(c, &which, 0);
    static const DLDeviceType types[] = {kDLCUDA, kDLCUDAHost, kDLROCM, kDLVulkan, kDLOpenCL, (DLDeviceType)99};
    t->t.device.device_type = types[rnd(0, 5)];
    c->must_refuse = 1;
    say(c->mistakes, " %s.device.device_type=%d", tensor_names[which], (int)t->t.device.device_type);
    return 1;
  }
  case 5: /* NULL data */
    t = pick_tensor(c, &which, 0);
    t->t.data = NULL;
    say(c->mistakes, " %s.data=NULL", tensor_names[which]);
    return 1;
  case 6: /* NULL shape */
    t = pick_tensor(c, &which, 0);
    if (t->t.ndim == 0) return 0;
    t->t.shape = NULL;
    c->must_refuse = 1;
    say(c->mistakes, " %s.shape=NULL", tensor_names[which]);
    return 1;
  case 7: /* NULL strides: DLPack's compact row-major, valid when the buffer is that large */
    t = pick_tensor(c, &which, 0);
    t->t.strides = NULL;
    say(c->mistakes, " %s.strides=NULL", tensor_names[which]);
    return 1;
  case 8: { /* a stride set to 0 or negated or swapped with another's */
    t = pick_tensor(c, &which, 0);
    if (t->t.ndim == 0 || t->t.strides == NULL) return 0;
    int dim = (int)rnd(0, t->t.ndim - 1), other = (int)rnd(0, t->t.ndim - 1);
    int64_t old = t->strides[dim];
    int kind = (int)rnd(0, 2);
    if (kind == 0)
      t->strides[dim] = 0;
    else if (kind == 1)
      t->strides[dim] = -old;
    else {
      t->strides[dim] = t->strides[other];
      t->strides[other] = old;
    }
    say(c->mistakes, " %s.strides[%d] %s", tensor_names[which], dim, kind == 0 ? "=0" : kind == 1 ? "negated" : "swapped");
    /* a zero stride of an output dim over 1 makes it overlap itself, unless the output is empty (a batch
     * of no queries: no element is written, so none can overlap another) */
    int64_t elements = 1;
    for (int i = 0; i < t->t.ndim; i++) elements *= t->shape[i];
    if (kind == 0 && (which == T_O || which == T_LSE) && t->shape[dim] > 1 && elements > 0) c->must_refuse = 1;
    return 1;
  }
  case 9: { /* data moved by a few bytes (misaligned for its dtype) or by whole elements */
    t = pick_tensor(c, &which, 0);
    if (chance(50)) {
      t->t.byte_offset = (uint64_t)rnd(1, 3);
      say(c->mistakes, " %s.byte_offset=%llu", tensor_names[which], (unsigned long long)t->t.byte_offset);
    } else {
      t->t.data = (char *)t->t.data + rnd(1, 3);
      say(c->mistakes, " %s.data moved by a few bytes", tensor_names[which]);
    }
    return 1;
  }
  case 10: { /* o over q's or k's memory: refused where both hold elements */
    int over = chance(50) ? T_Q : T_K;
    c->t[T_O].t.data = c->t[over].t.data;
    say(c->mistakes, " o.data=%s.data", tensor_names[over]);
    int64_t o_elements = 1, other_elements = 1;
    for (int i = 0; i < c->t[T_O].t.ndim; i++) o_elements *= c->t[T_O].shape[i];
    for (int i = 0; i < c->t[over].t.ndim; i++) other_elements *= c->t[over].shape[i];
    if (o_elements > 0 && other_elements > 0) c->must_refuse = 1;
    return 1;
  }
  case 11: /* lse over o's memory */
    if (!c->present[T_LSE]) return 0;
    c->t[T_LSE].t.data = c->t[T_O].t.data;
    c->must_refuse = c->batch * c->seqlen_q > 0 && !c->ragged_q;
    say(c->mistakes, " lse.data=o.data");
    return 1;
  case 12: /* a scale that is not a number */
    a->softmax_scale = chance(50) ? NAN : INFINITY;
    c->must_refuse = 1;
    say(c->mistakes, " softmax_scale=%g", (double)a->softmax_scale);
    return 1;
  case 13: { /* a softcap that is not one */
    static const float values[] = {-1.0f, NAN, INFINITY, -INFINITY, 1e-38f, 1e38f};
    a->softcap = values[rnd(0, 5)];
    c->must_refuse = 1;
    say(c->mistakes, " softcap=%g", (double)a->softcap);
    return 1;
  }
  case 14: { /* fp8 scales */
    if (!core_dtype_is_fp8(c->kv_dtype)) return 0;
    static const float values[] = {-1.0f, NAN, INFINITY};
    float value = values[rnd(0, 2)];
    if (chance(50))
      a->k_scale = value;
    else
      a->v_scale = value;
    c->must_refuse = 1;
    say(c->mistakes, " %s=%g", a->k_scale == value || isnan(value) ? "k_scale or v_scale" : "v_scale", (double)value);
    return 1;
  }
  case 15: /* a key count out of range */
    if (!c->present[T_SEQLENS]) return 0;
    set_int32(c, T_SEQLENS, rnd(0, c->batch - 1), chance(50) ? -1 : c->seqlen_kv + rnd(1, 1000));
    c->must_refuse = 1;
    say(c->mistakes, " a seqlens_kv entry out of range");
    return 1;
  case 16: { /* a page out of range: refused where its sequence reads it (ceil(keys / page_size) pages) */
    if (!c->present[T_TABLE]) return 0;
    int64_t slot = rnd(0, c->batch * c->max_pages - 1), b = slot / c->max_pages, page = slot % c->max_pages;
    set_int32(c, T_TABLE, slot, chance(50) ? -1 : c->pages + rnd(0, 5));
    int64_t keys = c->present[T_SEQLENS] ? *int32_at(c, T_SEQLENS, b) : c->seqlen_kv;
    int read = page < (keys + c->page_size - 1) / c->page_size;
    if (read) c->must_refuse = 1;
    say(c->mistakes, " block_table[%lld][%lld] out of range (%s)", (long long)b, (long long)page, read ? "read" : "not read");
    return 1;
  }
  case 17: { /* ragged offsets that decrease or pass the end */
    int cu = chance(50) ? T_CUQ : T_CUK;
    if (!c->present[cu]) return 0;
    int64_t i = rnd(0, c->batch);
    int64_t total = cu == T_CUQ ? c->total_q : c->total_k;
    int64_t value = chance(50) ? -rnd(1, 5) : total + rnd(1, 5);
    set_int32(c, cu, i, value);
    c->must_refuse = 1;
    say(c->mistakes, " %s[%lld]=%lld", tensor_names[cu], (long long)i, (long long)value);
    return 1;
  }
  case 18: /* a max_seqlen shorter than a sequence, or negative */
    if (c->ragged_q) {
      a->max_seqlen_q = chance(50) ? -1 : a->max_seqlen_q - 1;
      c->must_refuse = 1;
      say(c->mistakes, " max_seqlen_q=%lld", (long long)a->max_seqlen_q);
      return 1;
    }
    if (c->packed_k) {
      a->max_seqlen_k = chance(50) ? -1 : a->max_seqlen_k - 1;
      c->must_refuse = 1;
      say(c->mistakes, " max_seqlen_k=%lld", (long long)a->max_seqlen_k);
      return 1;
    }
    return 0;
  case 19: { /* a window no call has */
    a->windowed = 1;
    int kind = (int)rnd(0, 2);
    if (kind == 0) a->window_left = -rnd(2, 100);
    if (kind == 1) a->window_right = -rnd(2, 100);
    if (kind == 2) {
      a->causal = 1;
      a->window_right = rnd(1, 5);
    }
    c->must_refuse = 1;
    say(c->mistakes, " window(%lld,%lld)%s", (long long)a->window_left, (long long)a->window_right,
        a->causal ? " causal" : "");
    return 1;
  }
  case 20: { /* sinks or slopes that are not numbers */
    int which2 = chance(50) ? T_SINKS : T_ALIBI;
    if (!c->present[which2]) return 0;
    *(float *)region_data(c, c->t[which2].region) = chance(50) ? NAN : INFINITY;
    c->must_refuse = 1;
    say(c->mistakes, " %s[0] not finite", tensor_names[which2]);
    return 1;
  }
  case 21: /* seqlens_kv beside packed keys */
    if (!c->packed_k) return 0;
    {
      int64_t shape[1] = {c->batch};
      make_tensor(c, T_SEQLENS, dl_int32, 1, shape, NULL, 1, 0);
      a->seqlens_kv = &c->t[T_SEQLENS].t;
    }
    c->must_refuse = 1;
    say(c->mistakes, " seqlens_kv with cu_seqlens_k");
    return 1;
  case 22: /* struct_size */
    a->struct_size = chance(50) ? (uint32_t)rnd(0, 7) : (uint32_t)rnd(9, 40);
    c->must_refuse = a->struct_size < 8;
    say(c->mistakes, " struct_size=%u", a->struct_size);
    return 1;
  case 23: /* heads not a multiple of kv heads: q and o both change */
    if (c->ragged_q || c->kv_heads < 2) return 0;
    c->t[T_Q].shape[2] += 1;
    c->t[T_O].shape[2] += 1;
    c->must_refuse = 1;
    say(c->mistakes, " heads=%lld with kv_heads=%lld", (long long)c->t[T_Q].shape[2], (long long)c->kv_heads);
    return 1;
  case 24: /* a workspace that is misaligned, of another dtype or device */
    if (!c->present[T_WORK]) return 0;
    if (chance(50)) {
      c->t[T_WORK].t.data = (char *)c->t[T_WORK].t.data + rnd(1, 15);
      say(c->mistakes, " workspace misaligned");
    } else {
      c->t[T_WORK].t.dtype = dl_f32;
      say(c->mistakes, " workspace of fp32");
    }
    c->must_refuse = 1;
    return 1;
  case 25: /* an argument tensor dropped */
    if (chance(50)) {
      a->o = NULL;
      say(c->mistakes, " o=NULL");
    } else {
      a->k = NULL;
      say(c->mistakes, " k=NULL");
    }
    c->must_refuse = 1;
    return 1;
  case 26: /* the head dim of all four changed together (not a multiple of 8, or too wide) */
    if (c->qkv_packed) return 0;
    {
      int64_t d = chance(50) ? c->head_dim + rnd(1, 7) : 584;
      int last = c->t[T_Q].t.ndim - 1, kv_last = c->t[T_K].t.ndim - 1;
      c->t[T_Q].shape[last] = d;
      c->t[T_K].shape[kv_last] = d;
      c->must_refuse = 1;
      say(c->mistakes, " q and k head dim %lld", (long long)d);
    }
    return 1;
  case 27: /* a workspace over o's or lse's memory */
    if (!c->present[T_WORK] || c->t[T_WORK].shape[0] == 0) return 0;
    which = c->present[T_LSE] && chance(50) ? T_LSE : T_O;
    c->t[T_WORK].t.data = c->t[which].t.data;
    c->t[T_WORK].shape[0] = 16;
    {
      int64_t elements = 1;
      for (int i = 0; i < c->t[which].t.ndim; i++) elements *= c->t[which].shape[i];
      c->must_refuse = elements > 0;
    }
    say(c->mistakes, " workspace.data=%s.data", tensor_names[which]);
    return 1;
  case 28: /* a split that means nothing */
    a->kv_split_keys = -rnd(2, 100);
    c->must_refuse = 1;
    say(c->mistakes, " kv_split_keys=%lld", (long long)a->kv_split_keys);
    return 1;
  default: /* a block table of another shape */
    if (!c->present[T_TABLE]) return 0;
    c->t[T_TABLE].shape[0] += 1;
    c->must_refuse = 1;
    say(c->mistakes, " block_table.shape[0]=%lld", (long long)c->t[T_TABLE].shape[0]);
    return 1;
  }
}

/* ---- the checks -------------------------------------------------------------------------------------- */

/* The region holding byte p, or -1. */
static int region_of(const call *c, const unsigned char *p) {
  for (int i = 0; i < c->num_regions; i++)
    if (p >= c->regions[i].base && p < c->regions[i].base + c->regions[i].bytes + 2 * GUARD) return i;
  return -1;
}

/* 1 when every byte the view reaches lies in the caller's part of one region (an empty view: yes). */
static int view_inside(const call *c, const DLTensor *t) {
  if (t == NULL || t->shape == NULL || t->ndim < 0 || t->ndim > MAX_DIMS || t->data == NULL) return 1;
  int64_t low, high;
  int span = view_span(t, &low, &high);
  if (span <= 0) return span == 0;
  int bytes = dtype_bytes_of(t->dtype);
  const unsigned char *start = (const unsigned char *)t->data + t->byte_offset;
  int r = region_of(c, start);
  if (r < 0) return 0;
  const unsigned char *first = region_data(c, r), *end = first + c->regions[r].bytes;
  return start + low * bytes >= first && start + (high + 1) * bytes <= end;
}

/* Marks the bytes a view reaches as writable; with ragged queries only the rows that belong to a
 * sequence (row_dim: the dim that counts rows). Only for views inside their buffer (view_inside). */
static void mark_writable(call *c, const DLTensor *t, int row_dim, const int32_t *cu, int64_t batch) {
  if (t == NULL || t->shape == NULL || t->data == NULL || t->ndim < 1 || t->ndim > MAX_DIMS) return;
  int64_t strides[MAX_DIMS], index[MAX_DIMS] = {0}, count = 1;
  strides_of(t, strides);
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] <= 0) return;
    count *= t->shape[i];
  }
  if (count > ((int64_t)1 << 24)) return;
  int bytes = dtype_bytes_of(t->dtype);
  for (int64_t n = 0; n < count; n++) {
    int in_sequence = cu == NULL;
    for (int64_t b = 0; cu != NULL && b < batch; b++)
      if (index[row_dim] >= cu[b] && index[row_dim] < cu[b + 1]) in_sequence = 1;
    if (in_sequence) {
      int64_t offset = 0;
      for (int i = 0; i < t->ndim; i++) offset += index[i] * strides[i];
      const unsigned char *p = (const unsigned char *)t->data + t->byte_offset + offset * bytes;
      int r = region_of(c, p);
      for (int k = 0; r >= 0 && k < bytes; k++) {
        size_t at = (size_t)(p + k - c->regions[r].base);
        if (at < c->regions[r].bytes + 2 * GUARD) c->regions[r].writable[at] = 1;
      }
    }
    for (int i = t->ndim - 1; i >= 0; i--) {
      if (++index[i] < t->shape[i]) break;
      index[i] = 0;
    }
  }
}

/* The first byte that changed where it should not have, as "region r byte i" (i counted from the
 * caller's first byte; negative: in the guard before), or "" when none did. */
static void first_change(const call *c, int any_byte, char *where, size_t size) {
  where[0] = '\0';
  for (int r = 0; r < c->num_regions; r++) {
    const region *g = &c->regions[r];
    for (size_t i = 0; i < g->bytes + 2 * GUARD; i++)
      if (g->base[i] != g->snapshot[i] && (any_byte || !g->writable[i])) {
        int owner = -1;
        for (int t = 0; t < T_COUNT && owner < 0; t++)
          if (c->present[t] && c->t[t].region == r) owner = t;
        snprintf(where, size, "%s's buffer, byte %lld", owner >= 0 ? tensor_names[owner] : "a", (long long)i - GUARD);
        return;
      }
  }
}

/* 1 when q, k, v and o have dtypes a call may give: q and o alike and fp32, fp16 or bf16; k and v
 * alike and q's or an fp8. */
static int dtypes_valid(const call *c) {
  dtype_id q, k, v, o;
  if (!core_dtype_from_dlpack(c->t[T_Q].t.dtype, &q) || !core_dtype_from_dlpack(c->t[T_O].t.dtype, &o) ||
      !core_kv_dtype_from_dlpack(c->t[T_K].t.dtype, &k) || !core_kv_dtype_from_dlpack(c->t[T_V].t.dtype, &v))
    return 0;
  return q == o && k == v && (k == q || core_dtype_is_fp8(k));
}

/* Runs one call and checks it; returns 1 when the call was made (0: skipped, a view reached outside
 * its buffer where the library could not know it). */
static int run_call(fj_context *context, call *c, int iteration) {
  fj_attention_args *a = &c->args;
  /* dtypes changed into another valid set make another valid call of bytes that were not filled as
   * its numbers (NaNs, infinities): nothing to learn from it */
  if (c->dtype_changed && dtypes_valid(c)) return 0;
  if (c->dtype_changed) c->must_refuse = 1;
  const DLTensor *views[] = {a->q, a->k, a->v, a->o, a->lse, a->seqlens_kv, a->block_table, a->cu_seqlens_q,
                             a->cu_seqlens_k, a->sinks, a->alibi_slopes, a->attn_bias, a->workspace};
  /* Outputs always (an accepted call writes them), inputs unless the call must be refused anyway. */
  for (size_t i = 0; i < sizeof views / sizeof *views; i++)
    if ((!c->must_refuse || views[i] == a->o || views[i] == a->lse || views[i] == a->workspace) &&
        !view_inside(c, views[i]))
      return 0;
  /* What a successful call may write: o's and lse's views (the rows of sequences only, with ragged
   * queries whose offsets are in range), and the workspace. */
  const int32_t *cu = c->present[T_CUQ] ? int32_at(c, T_CUQ, 0) : NULL;
  int cu_in_range = cu != NULL;
  for (int64_t b = 0; cu != NULL && b <= c->batch; b++)
    if (cu[b] < 0 || cu[b] > c->total_q || (b > 0 && cu[b] < cu[b - 1])) cu_in_range = 0;
  if (view_inside(c, a->o)) mark_writable(c, a->o, 0, cu_in_range ? cu : NULL, c->batch);
  if (view_inside(c, a->lse)) mark_writable(c, a->lse, 1, cu_in_range ? cu : NULL, c->batch);
  if (view_inside(c, a->workspace)) mark_writable(c, a->workspace, 0, NULL, 0);
  for (int r = 0; r < c->num_regions; r++)
    memcpy(c->regions[r].snapshot, c->regions[r].base, c->regions[r].bytes + 2 * GUARD);

  /* fj_attention_workspace_size validates as the call does: the same verdict */
  size_t workspace_bytes = 0;
  core_error_clear();
  fj_status sizing = fj_attention_workspace_size(context, a, &workspace_bytes);
  char sizing_message[160];
  snprintf(sizing_message, sizeof sizing_message, "%s", fj_last_error());
  core_error_clear();
  fj_status status = fj_attention_forward(context, a);
  const char *message = fj_last_error();
  if (sizing != status)
    check(0, "call %d: %s; mistakes:%s: fj_attention_workspace_size says %s (%s), the call %s (%s)", iteration,
          c->features, c->mistakes[0] ? c->mistakes : " none", fj_status_string(sizing), sizing_message,
          fj_status_string(status), message);
  char where[160], what[2048];
  snprintf(what, sizeof what, "call %d: %.511s; mistakes:%.511s -> %s \"%.300s\"", iteration, c->features,
           c->mistakes[0] ? c->mistakes : " none", fj_status_string(status), message);

  if (status != FJ_OK) {
    first_change(c, 1, where, sizeof where);
    int named = message[0] != '\0';
    int kind_ok = status == FJ_INVALID_ARGUMENT || status == FJ_UNSUPPORTED;
    int valid_refused = c->mistakes[0] == '\0';
    check(named && kind_ok && where[0] == '\0' && !valid_refused, "%s%s%s%s%s", what, where[0] ? "; wrote " : "",
          where, named ? "" : "; no message", valid_refused ? "; a valid call refused" : "");
    return 1;
  }
  if (c->must_refuse) {
    check(0, "%s; should have been refused", what);
    return 1;
  }
  first_change(c, 0, where, sizeof where);
  attention_problem problem;
  if (core_validate_attention(a, &problem) != FJ_OK) {
    check(0, "%s; FJ_OK, but the validator now says: %s", what, fj_last_error());
    return 1;
  }
  int64_t rows = problem.batch * problem.seqlen_q * problem.key.heads;
  double *ref_o = calloc((size_t)(rows * core_key_head_dim_v(&problem.key) + 1), sizeof *ref_o);
  double *ref_lse = calloc((size_t)(rows + 1), sizeof *ref_lse);
  double err_o = INFINITY, err_lse = INFINITY;
  if (ref_o && ref_lse && core_reference_attention(&problem, ref_o, a->lse ? ref_lse : NULL) == FJ_OK) {
    err_o = core_relative_error_o(&problem, ref_o);
    err_lse = core_relative_error_lse(&problem, ref_lse);
  }
  free(ref_o);
  free(ref_lse);
  double tolerance = core_dtype_tolerance(c->dtype);
  check(where[0] == '\0' && err_o <= tolerance && err_lse <= 1e-3, "%s; o err %.2e, lse err %.2e (bound %.0e)%s%s", what,
        err_o, err_lse, tolerance, where[0] ? "; wrote outside o and lse: " : "", where);
  return 1;
}

/* fj_context_warmup with 1 to 3 shapes, one of them (or none) with a field a caller got wrong. An
 * error names the shape ("shapes[i]") and leaves at most the shapes before it loaded; a field no shape
 * may hold must be refused. */
static void fuzz_warmup(fj_context *context, int iterations) {
  static const dtype_id dtypes[3] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
  static const int dims[] = {8, 16, 32, 64};
  int made = 0;
  for (int n = 0; n < iterations; n++) {
    fj_problem_shape shapes[3];
    int count = (int)rnd(1, 3);
    for (int i = 0; i < count; i++) {
      fj_problem_shape *p = &shapes[i];
      fj_problem_shape_init(p);
      p->dtype = dl_of(dtypes[rnd(0, 2)]);
      p->batch = rnd(1, 2);
      p->seqlen_q = rnd(1, 32);
      p->seqlen_kv = rnd(0, 64);
      p->kv_heads = (int)rnd(1, 2);
      p->heads = p->kv_heads * (int)rnd(1, 2);
      p->head_dim = dims[rnd(0, 3)];
      p->causal = chance(50);
      p->with_lse = chance(50);
      p->varlen = chance(20);
      p->page_size = chance(15) ? (int)rnd(1, 16) : 0;
      p->sinks = chance(10);
      p->softcap = chance(10) ? 30.0f : 0.0f;
      if (chance(10)) p->kv_dtype = dl_of(chance(50) ? DTYPE_E4M3 : DTYPE_E5M2);
    }
    int bad = chance(20) ? -1 : (int)rnd(0, count - 1), must_refuse = 0;
    char mistake[160] = "none";
    if (bad >= 0) {
      fj_problem_shape *p = &shapes[bad];
      switch (rnd(0, 11)) {
      case 0: p->struct_size = (uint32_t)rnd(0, 3); must_refuse = 1; snprintf(mistake, sizeof mistake, "struct_size=%u", p->struct_size); break;
      case 1: p->dtype = (DLDataType){kDLInt, 8, 1}; must_refuse = 1; snprintf(mistake, sizeof mistake, "dtype int8"); break;
      case 2: p->batch = chance(50) ? 0 : -1; must_refuse = 1; snprintf(mistake, sizeof mistake, "batch=%lld", (long long)p->batch); break;
      case 3: p->seqlen_q = chance(50) ? 0 : -5; must_refuse = 1; snprintf(mistake, sizeof mistake, "seqlen_q=%lld", (long long)p->seqlen_q); break;
      case 4: p->seqlen_kv = -1; must_refuse = 1; snprintf(mistake, sizeof mistake, "seqlen_kv=-1"); break;
      case 5: p->heads = p->kv_heads * 2 + 1; p->kv_heads = 2; must_refuse = 1; snprintf(mistake, sizeof mistake, "heads=%d kv_heads=2", p->heads); break;
      case 6: p->head_dim = chance(50) ? (int)rnd(1, 7) + 8 : 584; must_refuse = 1; snprintf(mistake, sizeof mistake, "head_dim=%d", p->head_dim); break;
      case 7: p->page_size = -1; must_refuse = 1; snprintf(mistake, sizeof mistake, "page_size=-1"); break;
      case 8: p->softcap = chance(50) ? NAN : -1.0f; must_refuse = 1; snprintf(mistake, sizeof mistake, "softcap=%g", (double)p->softcap); break;
      case 9: p->kv_dtype = (DLDataType){kDLFloat, 64, 1}; must_refuse = 1; snprintf(mistake, sizeof mistake, "kv_dtype fp64"); break;
      case 10: p->windowed = 1; p->window_left = -7; must_refuse = 1; snprintf(mistake, sizeof mistake, "window_left=-7"); break;
      default: p->head_dim_v = (int)rnd(1, 7); must_refuse = 1; snprintf(mistake, sizeof mistake, "head_dim_v=%d", p->head_dim_v); break;
      }
    }
    size_t loaded = 99;
    core_error_clear();
    fj_status status = fj_context_warmup(context, shapes, (size_t)count, &loaded);
    const char *message = fj_last_error();
    char named[16];
    snprintf(named, sizeof named, "shapes[%d]", bad);
    int ok;
    if (status == FJ_OK)
      ok = !must_refuse && loaded == (size_t)count;
    else
      ok = (status == FJ_INVALID_ARGUMENT || status == FJ_UNSUPPORTED) && strstr(message, "shapes[") != NULL &&
           loaded < (size_t)count && (!must_refuse || (strstr(message, named) != NULL && loaded <= (size_t)bad)) &&
           (must_refuse || bad >= 0 || status == FJ_UNSUPPORTED);
    if (!ok)
      check(0, "warmup %d: %d shapes, shapes[%d] %s -> %s, %zu loaded: \"%s\"", n, count, bad, mistake,
            fj_status_string(status), loaded, message);
    made++;
  }
  printf("%d warmups made\n", made);
}

int main(void) {
  const char *seed_text = getenv("FJ_FUZZ_SEED"), *iters_text = getenv("FJ_FUZZ_ITERS");
  uint64_t seed = seed_text ? strtoull(seed_text, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
  int iterations = iters_text ? atoi(iters_text) : 300;
  printf("seed %llu (FJ_FUZZ_SEED=%llu repeats this run), %d calls\n", (unsigned long long)seed,
         (unsigned long long)seed, iterations);
  rng_state = seed;

  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.num_threads = 2;
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) {
    printf("FAIL: context: %s\n", fj_last_error());
    return 1;
  }
  int made = 0, valid = 0, skipped = 0;
  for (int n = 0; n < iterations; n++) {
    call c;
    draw_call(&c);
    int mistakes = chance(25) ? 0 : chance(80) ? 1 : 2;
    for (int m = 0; m < mistakes; m++)
      for (int tries = 0; tries < 20 && !apply_mistake(&c); tries++) {
      }
    if (run_call(context, &c, n)) {
      made++;
      if (c.mistakes[0] == '\0') valid++;
    } else {
      skipped++;
    }
    call_free(&c);
  }
  fuzz_warmup(context, iterations / 3);
  fj_context_destroy(context);
  printf("%d calls made (%d without a mistake), %d skipped (a view past its buffer)\n", made, valid, skipped);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
