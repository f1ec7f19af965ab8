/* problem.c: everything between a caller's fj_attention_args and a kernel: argument validation (the
 * library's front door; a bad call must fail here with a message naming the argument and the values,
 * before anything touches memory), the problem key that selects kernels and tuning results, its
 * sequence-length bucket, and the FLOP count the benchmarks report. Validation only reads the DLTensor
 * descriptors, never the tensors' data, which may live on a device. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "core/error.h"
#include "core/problem.h"
#include "core/tensor_arg.h"

int core_head_dim_valid(int64_t head_dim) { return head_dim >= 8 && head_dim <= CORE_HEAD_DIM_MAX && head_dim % 8 == 0; }

int core_seqlen_bucket(int64_t seqlen) {
  int bucket = 0;
  while (bucket < 63 && ((int64_t)1 << bucket) < seqlen) bucket++;
  return bucket;
}

void core_attention_key_string(const attention_key *key, char *buffer, size_t size) {
  if (buffer == NULL || size == 0) return;
  /* window, varlen, varlen_q, page and sinks only where set, so that every key stored before they existed still reads
   * the same */
  char extra[96];
  core_key_extra_text(key, extra, sizeof extra);
  snprintf(buffer, size, "attention_fwd dtype=%s d=%d h=%d hk=%d causal=%d%s lse=%d dcontig=%d%s%s%s sq<=2^%d",
           core_dtype_name((dtype_id)key->dtype), key->head_dim, key->heads, key->kv_heads,
           key->causal, key->window ? " window=1" : "", key->has_lse, key->d_contiguous,
           key->varlen ? " varlen=1" : "", key->varlen_q ? " varlen_q=1" : "", extra, key->seqlen_bucket);
}

dtype_id core_key_kv_dtype(const attention_key *key) {
  return key->kv_fp8 ? (dtype_id)key->kv_fp8 : (dtype_id)key->dtype;
}

int core_key_head_dim_v(const attention_key *key) { return key->head_dim_v ? key->head_dim_v : key->head_dim; }

void core_key_extra_text(const attention_key *key, char *buffer, size_t size) {
  if (buffer == NULL || size == 0) return;
  char page[24] = "", kv[24] = "", dv[16] = "", bias[24] = "";
  if (key->page_size > 0) snprintf(page, sizeof page, " page=%d", key->page_size);
  if (key->kv_fp8) snprintf(kv, sizeof kv, " kv=%s", core_dtype_name((dtype_id)key->kv_fp8));
  if (key->head_dim_v) snprintf(dv, sizeof dv, " dv=%d", key->head_dim_v);
  if (key->bias)
    snprintf(bias, sizeof bias, " bias=%s%s", core_dtype_name(core_key_bias_dtype(key)),
             key->bias & KEY_BIAS_STRIDED_KEYS ? "/strided" : "");
  snprintf(buffer, size, "%s%s%s%s%s%s%s%s", page, key->sinks ? " sinks=1" : "", key->softcap ? " softcap=1" : "",
           key->varlen_k ? " varlen_k=1" : "", key->alibi ? " alibi=1" : "", kv, dv, bias);
}

dtype_id core_key_bias_dtype(const attention_key *key) {
  return (key->bias & KEY_BIAS_DTYPE_MASK) == KEY_BIAS_DTYPE ? (dtype_id)key->dtype : DTYPE_F32;
}

void core_visible_keys(const attention_problem *problem, int64_t i, int64_t queries, int64_t keys, int64_t *first,
                       int64_t *end) {
  int64_t diagonal = i + keys - queries;
  int64_t lo = problem->key.window ? diagonal - problem->window_left : 0;
  int64_t hi = problem->key.causal ? diagonal + problem->window_right + 1 : keys;
  if (lo < 0) lo = 0;
  if (hi > keys) hi = keys;
  if (hi < lo) hi = lo;
  *first = lo;
  *end = hi;
}

/* Query-key pairs one sequence with `queries` queries and `keys` keys computes: each query's visible
 * keys, counted row by row from the one definition the reference uses (a bench's or a tuner's figure,
 * never on a call's path). */
static double core_sequence_pairs(const attention_problem *problem, int64_t queries, int64_t keys) {
  double pairs = 0;
  for (int64_t i = 0; i < queries; i++) {
    int64_t first, end;
    core_visible_keys(problem, i, queries, keys, &first, &end);
    pairs += (double)(end - first);
  }
  return pairs;
}

int64_t core_sequence_keys(const attention_problem *problem, int64_t b) {
  if (problem->cu_seqlens_k != NULL) {
    const int32_t *offsets = problem->cu_seqlens_k;
    return offsets[(b + 1) * problem->cu_seqlens_k_stride] - offsets[b * problem->cu_seqlens_k_stride];
  }
  if (problem->seqlens_kv == NULL) return problem->seqlen_kv;
  return problem->seqlens_kv[b * problem->seqlens_kv_stride];
}

void core_sequence_queries(const attention_problem *problem, int64_t b, int64_t *start, int64_t *count) {
  *start = 0;
  *count = problem->seqlen_q;
  if (problem->cu_seqlens_q == NULL) return;
  *start = problem->cu_seqlens_q[b * problem->cu_seqlens_q_stride];
  *count = problem->cu_seqlens_q[(b + 1) * problem->cu_seqlens_q_stride] - *start;
}

/* The FLOP and byte counts read each sequence's counts (seqlens_kv, cu_seqlens_q) only in host memory;
 * on a device every sequence counts seqlen_kv keys and seqlen_q queries. */
static void core_counted_sequence(const attention_problem *problem, int64_t b, int64_t *queries, int64_t *keys) {
  int64_t start;
  *queries = problem->seqlen_q;
  *keys = problem->seqlen_kv;
  if (problem->device.device_type != kDLCPU) return;
  core_sequence_queries(problem, b, &start, queries);
  *keys = core_sequence_keys(problem, b);
}

double core_attention_flops(const attention_problem *problem) {
  double pairs = 0;
  for (int64_t b = 0; b < problem->batch; b++) {
    int64_t queries, keys;
    core_counted_sequence(problem, b, &queries, &keys);
    pairs += core_sequence_pairs(problem, queries, keys);
  }
  /* q.k and p.v: 2 d and 2 dv FLOPs per visible pair */
  return 2.0 * (double)problem->key.heads * pairs *
         (double)(problem->key.head_dim + core_key_head_dim_v(&problem->key));
}

void core_key_place(const attention_problem *problem, int64_t b, int64_t j, int64_t *outer, int64_t *row) {
  if (problem->block_table == NULL) {
    *outer = b;
    *row = problem->cu_seqlens_k != NULL ? problem->cu_seqlens_k[b * problem->cu_seqlens_k_stride] + j : j;
    return;
  }
  int64_t page_size = problem->key.page_size;
  *outer = problem->block_table[b * problem->block_table_stride[0] + (j / page_size) * problem->block_table_stride[1]];
  *row = j % page_size;
}

double core_attention_bytes(const attention_problem *problem) {
  double element = (double)core_dtype_size((dtype_id)problem->key.dtype);
  double kv_element = (double)core_dtype_size(core_key_kv_dtype(&problem->key));
  double d = (double)problem->key.head_dim, dv = (double)core_key_head_dim_v(&problem->key);
  double queries = 0, keys = 0;
  for (int64_t i = 0; i < problem->batch; i++) {
    int64_t sequence_queries, sequence_keys;
    core_counted_sequence(problem, i, &sequence_queries, &sequence_keys);
    queries += (double)sequence_queries;
    keys += (double)sequence_keys;
  }
  double q_rows = queries * (double)problem->key.heads;
  double kv_rows = keys * (double)problem->key.kv_heads;
  double bytes = q_rows * (d + dv) * element + kv_rows * (d + dv) * kv_element;
  if (problem->lse.data != NULL) bytes += q_rows * 4.0;
  return bytes;
}

/* ---- validation ------------------------------------------------------------------------------------ */


static const char *core_device_type_name(int type, char *scratch, size_t size) {
  switch (type) {
  case kDLCPU: return "cpu";
  case kDLCUDA: return "cuda";
  case kDLCUDAHost: return "cuda_host";
  case kDLOpenCL: return "opencl";
  case kDLVulkan: return "vulkan";
  case kDLMetal: return "metal";
  case kDLVPI: return "vpi";
  case kDLROCM: return "rocm";
  case kDLROCMHost: return "rocm_host";
  case kDLExtDev: return "ext_dev";
  case kDLCUDAManaged: return "cuda_managed";
  default: snprintf(scratch, size, "type%d", type); return scratch;
  }
}

void core_format_dlpack_type(DLDataType type, char *buffer, size_t size) {
  dtype_id ours;
  if (core_kv_dtype_from_dlpack(type, &ours)) {
    snprintf(buffer, size, "%s", core_dtype_name(ours));
    return;
  }
  const char *code = type.code == kDLInt            ? "int"
                     : type.code == kDLUInt         ? "uint"
                     : type.code == kDLFloat        ? "float"
                     : type.code == kDLOpaqueHandle ? "handle"
                     : type.code == kDLBfloat       ? "bfloat"
                     : type.code == kDLComplex      ? "complex"
                                                    : NULL;
  if (code != NULL)
    snprintf(buffer, size, "%s%ux%u", code, (unsigned)type.bits, (unsigned)type.lanes);
  else
    snprintf(buffer, size, "code%u:%ux%u", (unsigned)type.code, (unsigned)type.bits,
             (unsigned)type.lanes);
}

/* "[2,8,128]" from n values. */
static void core_format_list(const int64_t *values, int n, char *buffer, size_t size) {
  size_t used = 0;
  buffer[0] = '\0';
  for (int i = 0; i < n && used < size; i++) {
    int w = snprintf(buffer + used, size - used, "%s%" PRId64, i == 0 ? "[" : ",", values[i]);
    if (w < 0) return;
    used += (size_t)w;
  }
  if (used < size) snprintf(buffer + used, size - used, n == 0 ? "[]" : "]");
}

/* An argument's shape and strides as messages print them, into two buffers of 128 bytes. */
static void core_format_layout(const core_arg *arg, char *shape_text, char *stride_text) {
  core_format_list(arg->t->shape, arg->t->ndim, shape_text, 128);
  core_format_list(arg->stride, arg->t->ndim, stride_text, 128);
}

fj_status core_check_present(const char *name, const DLTensor *t, int ndim, const char *dims) {
  if (t == NULL) return core_error(FJ_INVALID_ARGUMENT, "args.%s is NULL", name);
  if (t->ndim != ndim)
    return core_error(FJ_INVALID_ARGUMENT, "%s.ndim=%d, expected %d (%s)", name, t->ndim, ndim, dims);
  if (t->shape == NULL) return core_error(FJ_INVALID_ARGUMENT, "%s.shape is NULL", name);
  for (int i = 0; i < ndim; i++)
    if (t->shape[i] < 0)
      return core_error(FJ_INVALID_ARGUMENT, "%s.shape[%d]=%" PRId64 " is negative", name, i,
                        t->shape[i]);
  return FJ_OK;
}

/* q's and o's dtype: fp32, fp16 or bf16; k's and v's (kv non-zero) may also be fp8. */
fj_status core_check_dtype(core_arg *arg, int kv) {
  if (!(kv ? core_kv_dtype_from_dlpack : core_dtype_from_dlpack)(arg->t->dtype, &arg->dtype)) {
    char text[48];
    core_format_dlpack_type(arg->t->dtype, text, sizeof text);
    return core_error(FJ_INVALID_ARGUMENT, "%s.dtype is %s; expected fp32, fp16 or bf16%s", arg->name, text,
                      kv ? " (or fp8_e4m3 / fp8_e5m2, a KV cache)" : "");
  }
  return FJ_OK;
}

/* An fp8 cache's scale: 0 selects 1; else finite and not negative. */
static fj_status core_resolve_kv_scale(const char *name, float given, float *out) {
  if (!(isfinite(given) && given >= 0.0f))
    return core_error(FJ_INVALID_ARGUMENT, "%s=%g: must be finite and not negative (0: 1)", name, (double)given);
  *out = given != 0.0f ? given : 1.0f;
  return FJ_OK;
}

/* Resolves strides and the byte range the tensor's elements occupy, refusing anything whose extent
 * does not fit in int64 or the address space. */
fj_status core_check_layout(core_arg *arg) {
  const DLTensor *t = arg->t;
  const char *name = arg->name;
  int ndim = t->ndim;
  int64_t elem = core_dtype_size(arg->dtype);
  if (t->strides == NULL) {
    int64_t running = 1;
    for (int i = ndim - 1; i >= 0; i--) {
      arg->stride[i] = running;
      /* Only used as a stride when the dimensions before it are non-empty; saturate to stay defined. */
      if (t->shape[i] > 0 && __builtin_mul_overflow(running, t->shape[i], &running)) running = INT64_MAX;
    }
  } else {
    for (int i = 0; i < ndim; i++) {
      if (t->strides[i] < 0)
        return core_error(FJ_INVALID_ARGUMENT,
                          "%s.strides[%d]=%" PRId64 " is negative; negative strides are not supported",
                          name, i, t->strides[i]);
      arg->stride[i] = t->strides[i];
    }
  }
  for (int i = ndim; i < 4; i++) arg->stride[i] = 0;

  /* The count only feeds messages and the empty test, so it saturates instead of failing: a read-only
   * input may broadcast a huge shape with stride 0. */
  int64_t elements = 1;
  for (int i = 0; i < ndim; i++)
    if (t->shape[i] == 0) elements = 0;
    else if (elements != 0 && __builtin_mul_overflow(elements, t->shape[i], &elements)) elements = INT64_MAX;
  arg->elements = elements;
  if (t->byte_offset > (uint64_t)INT64_MAX)
    return core_error(FJ_INVALID_ARGUMENT, "%s.byte_offset=%" PRIu64 " does not fit in int64", name,
                      t->byte_offset);
  if (elements == 0) {
    arg->first = arg->end = 0;
    return FJ_OK;
  }
  int overflow = 0;
  int64_t last = 0; /* largest element index reached */
  /* The texts are formatted only for a message: a valid call (the hot path) formats nothing. */
  char shape_text[128], stride_text[128];
  for (int i = 0; i < ndim && !overflow; i++) {
    int64_t reach;
    if (__builtin_mul_overflow(t->shape[i] - 1, arg->stride[i], &reach) ||
        __builtin_add_overflow(last, reach, &last))
      overflow = 1;
  }
  int64_t bytes = 0, total = 0;
  if (overflow || __builtin_add_overflow(last, (int64_t)1, &bytes) ||
      __builtin_mul_overflow(bytes, elem, &bytes) ||
      __builtin_add_overflow(bytes, (int64_t)t->byte_offset, &total)) {
    core_format_layout(arg, shape_text, stride_text);
    return core_error(FJ_INVALID_ARGUMENT,
                      "%s: shape %s with strides %s (and byte_offset %" PRIu64
                      ") reaches beyond 2^63 bytes",
                      name, shape_text, stride_text, t->byte_offset);
  }
  if (t->data == NULL) {
    core_format_layout(arg, shape_text, stride_text);
    return core_error(FJ_INVALID_ARGUMENT, "%s.data is NULL but %s has %" PRId64 " elements (shape %s)",
                      name, name, elements, shape_text);
  }
  uintptr_t base = (uintptr_t)t->data;
  if (base > UINTPTR_MAX - (uintptr_t)total) {
    core_format_layout(arg, shape_text, stride_text);
    return core_error(FJ_INVALID_ARGUMENT,
                      "%s: data=%p + %" PRId64 " bytes (byte_offset %" PRIu64
                      ", shape %s, strides %s) wraps around the address space",
                      name, t->data, total, t->byte_offset, shape_text, stride_text);
  }
  arg->first = base + (uintptr_t)t->byte_offset;
  arg->end = base + (uintptr_t)total;
  /* Kernels load whole elements (and vectors of them); a misaligned element faults on GPUs. */
  if (arg->first % (uintptr_t)elem != 0)
    return core_error(FJ_INVALID_ARGUMENT,
                      "%s.data + byte_offset = %p + %" PRIu64 " is not aligned to %" PRId64
                      " bytes (one %s element)",
                      name, t->data, t->byte_offset, elem, core_dtype_name(arg->dtype));
  return FJ_OK;
}

/* A sufficient test that no two index tuples of an output share an element: ordered by stride, each
 * dimension's stride must step over everything the smaller dimensions span. Exact for the layouts
 * anyone uses (row-major, transposed, padded); it may refuse an exotic interleaving that would be
 * safe, which only costs that caller a copy. */
fj_status core_check_no_self_overlap(const core_arg *arg) {
  const DLTensor *t = arg->t;
  if (arg->elements == 0) return FJ_OK;
  int order[4], n = 0;
  for (int i = 0; i < t->ndim; i++)
    if (t->shape[i] > 1) order[n++] = i;
  for (int a = 1; a < n; a++) /* insertion sort by stride, then by dimension for a stable blame */
    for (int b = a; b > 0 && arg->stride[order[b]] < arg->stride[order[b - 1]]; b--) {
      int swap = order[b];
      order[b] = order[b - 1];
      order[b - 1] = swap;
    }
  int64_t span = 0; /* sum of (size-1)*stride over the dimensions checked so far; fits: extent did */
  for (int k = 0; k < n; k++) {
    int d = order[k];
    if (arg->stride[d] <= span) {
      char shape_text[128], stride_text[128];
      core_format_layout(arg, shape_text, stride_text);
      return core_error(FJ_INVALID_ARGUMENT,
                        "%s.strides give overlapping elements (stride[%d]=%" PRId64
                        " with shape[%d]=%" PRId64 "; shape %s, strides %s): an output must not "
                        "alias itself",
                        arg->name, d, arg->stride[d], d, t->shape[d], shape_text, stride_text);
    }
    span += (t->shape[d] - 1) * arg->stride[d];
  }
  return FJ_OK;
}

fj_status core_check_disjoint(const core_arg *out, const core_arg *in) {
  if (out->elements == 0 || in->elements == 0) return FJ_OK;
  if (out->first < in->end && in->first < out->end)
    return core_error(FJ_INVALID_ARGUMENT,
                      "%s overlaps %s (bytes [0x%" PRIxPTR ", 0x%" PRIxPTR ") and [0x%" PRIxPTR
                      ", 0x%" PRIxPTR ")): an output must not share memory with another argument",
                      out->name, in->name, out->first, out->end, in->first, in->end);
  return FJ_OK;
}

fj_status core_check_same_device(const core_arg *arg, const core_arg *ref) {
  DLDevice a = arg->t->device, b = ref->t->device;
  if (a.device_type == b.device_type && a.device_id == b.device_id) return FJ_OK;
  char sa[16], sb[16];
  return core_error(FJ_INVALID_ARGUMENT, "%s.device=(%s,%d) but %s.device=(%s,%d)", ref->name,
                    core_device_type_name((int)b.device_type, sb, sizeof sb), b.device_id,
                    arg->name, core_device_type_name((int)a.device_type, sa, sizeof sa),
                    a.device_id);
}

/* dim of arg must equal dim of ref; `what` says which size it is. */
fj_status core_check_dim(const core_arg *arg, int dim, const core_arg *ref, int ref_dim,
                                const char *what) {
  if (arg->t->shape[dim] == ref->t->shape[ref_dim]) return FJ_OK;
  return core_error(FJ_INVALID_ARGUMENT,
                    "%s.shape[%d]=%" PRId64 " but %s.shape[%d]=%" PRId64 " (%s must match)",
                    arg->name, dim, arg->t->shape[dim], ref->name, ref_dim, ref->t->shape[ref_dim],
                    what);
}

void core_fill_view(tensor_view *view, const core_arg *arg) {
  const DLTensor *t = arg->t;
  memset(view, 0, sizeof *view);
  /* Arithmetic on a NULL pointer is undefined; an empty tensor may have one. */
  view->data = t->data == NULL ? NULL : (char *)t->data + t->byte_offset;
  view->ndim = t->ndim;
  for (int i = 0; i < t->ndim; i++) {
    view->shape[i] = t->shape[i];
    view->stride[i] = arg->stride[i];
  }
  /* lse is 3-d; a unit fourth dimension with stride 0 lets 4-d loops walk it unchanged. */
  for (int i = t->ndim; i < 4; i++) {
    view->shape[i] = 1;
    view->stride[i] = 0;
  }
}

/* Ragged queries: a view of q or o ([total_q, heads, head_dim]) or lse ([heads, total_q]) as the batched
 * one ([batch, seqlen_q, heads, head_dim], [batch, heads, seqlen_q]) with a batch stride of 0, the
 * kernels adding each sequence's first row (problem.h). */
static void core_view_add_batch(tensor_view *view, int64_t batch, int64_t seqlen_q) {
  for (int i = 3; i > 0; i--) {
    view->shape[i] = view->shape[i - 1];
    view->stride[i] = view->stride[i - 1];
  }
  view->shape[0] = batch;
  view->stride[0] = 0;
  view->ndim++;
  view->shape[view->ndim == 4 ? 1 : 2] = seqlen_q;
}

/* A tensor the call only reads beside q, k and v (an index tensor, sinks, slopes), its dtype already
 * checked (arg->dtype a 4-byte type): on q's device, a valid layout, apart from the outputs. */
static fj_status core_check_side_input(core_arg *arg, const core_arg *q, const core_arg *o, const core_arg *lse) {
  fj_status s;
  if ((s = core_check_same_device(arg, q)) != FJ_OK) return s;
  if ((s = core_check_layout(arg)) != FJ_OK) return s;
  if ((s = core_check_disjoint(o, arg)) != FJ_OK) return s;
  if (lse->t != NULL && (s = core_check_disjoint(lse, arg)) != FJ_OK) return s;
  return FJ_OK;
}

/* An int32 index tensor (seqlens_kv, block_table, cu_seqlens_q, cu_seqlens_k): its dtype, then as every
 * side input. */
static fj_status core_check_index_tensor(core_arg *arg, const core_arg *q, const core_arg *o, const core_arg *lse) {
  DLDataType type = arg->t->dtype;
  if (type.code != kDLInt || type.bits != 32 || type.lanes != 1) {
    char text[48];
    core_format_dlpack_type(type, text, sizeof text);
    return core_error(FJ_INVALID_ARGUMENT, "%s.dtype is %s; expected int32", arg->name, text);
  }
  arg->dtype = DTYPE_F32;  /* int32 is not an attention dtype; the layout check only needs its 4 bytes */
  return core_check_side_input(arg, q, o, lse);
}

static const int32_t *core_index_data(const core_arg *arg) {
  return (const int32_t *)(const void *)((const char *)arg->t->data + arg->t->byte_offset);
}

/* The batch size and where it comes from ("q.shape[0]", or "cu_seqlens_q.shape[0] - 1"), for messages. */
typedef struct core_batch {
  int64_t size;
  const char *is;
} core_batch;

/* The names a set of offsets is checked under: cu_seqlens_q's or cu_seqlens_k's. */
typedef struct core_offsets_names {
  const char *total, *total_is, *most, *rows;  /* "total_q", "q.shape[0]", "max_seqlen_q", "queries" */
} core_offsets_names;

/* cu_seqlens_q or cu_seqlens_k (`cu`): [batch + 1] int32 on q's device, apart from the outputs, and on
 * the CPU (where it can be read now) offsets that do not decrease, inside [0, total] (rows of q, or of
 * k), no two more than `most` (max_seqlen_q or max_seqlen_k) apart. */
static fj_status core_check_offsets(core_arg *cu, const core_offsets_names *names, int64_t total, int64_t most,
                                    const core_arg *q, const core_arg *o, const core_arg *lse) {
  fj_status s;
  if ((s = core_check_index_tensor(cu, q, o, lse)) != FJ_OK) return s;
  if (cu->t->device.device_type != kDLCPU) return FJ_OK;
  if (cu->t->data == NULL) return core_error(FJ_INVALID_ARGUMENT, "%s.data is NULL", cu->name);
  const int32_t *offsets = core_index_data(cu);
  const char *n = cu->name;
  int32_t first = offsets[0];
  if (first < 0 || first > total)
    return core_error(FJ_INVALID_ARGUMENT, "%s[0]=%" PRId32 ": must be from 0 to %s=%" PRId64 " (%s)", n, first,
                      names->total, total, names->total_is);
  for (int64_t b = 1; b < cu->t->shape[0]; b++) {
    int64_t start = offsets[(b - 1) * cu->stride[0]], end = offsets[b * cu->stride[0]];
    if (end < start || end > total)
      return core_error(FJ_INVALID_ARGUMENT, "%s[%" PRId64 "]=%" PRId64 " after %s[%" PRId64 "]=%" PRId64
                        ": offsets must not decrease and must end by %s=%" PRId64 " (%s)",
                        n, b, end, n, b - 1, start, names->total, total, names->total_is);
    if (end - start > most)
      return core_error(FJ_INVALID_ARGUMENT, "%s[%" PRId64 "] - %s[%" PRId64 "]=%" PRId64 " %s, more than %s=%" PRId64,
                        n, b, n, b - 1, end - start, names->rows, names->most, most);
  }
  return FJ_OK;
}

/* seqlens_kv: [batch] int32 on q's device, apart from the outputs, and on the CPU (where it can be
 * read now) every value in [0, seqlen_kv]. */
static fj_status core_check_seqlens_kv(core_arg *lens, const core_arg *q, const core_batch *batch, int64_t seqlen_kv,
                                       const char *seqlen_kv_is, const core_arg *o, const core_arg *lse) {
  fj_status s;
  if ((s = core_check_present("seqlens_kv", lens->t, 1, "[batch]")) != FJ_OK) return s;
  if (lens->t->shape[0] != batch->size)
    return core_error(FJ_INVALID_ARGUMENT, "seqlens_kv.shape[0]=%" PRId64 " but %s=%" PRId64
                      " (one length per sequence of the batch)", lens->t->shape[0], batch->is, batch->size);
  if ((s = core_check_index_tensor(lens, q, o, lse)) != FJ_OK) return s;
  if (lens->t->device.device_type != kDLCPU || lens->t->shape[0] == 0) return FJ_OK;
  if (lens->t->data == NULL) return core_error(FJ_INVALID_ARGUMENT, "seqlens_kv.data is NULL");
  const int32_t *values = core_index_data(lens);
  for (int64_t b = 0; b < lens->t->shape[0]; b++) {
    int32_t n = values[b * lens->stride[0]];
    if (n < 0 || n > seqlen_kv)
      return core_error(FJ_INVALID_ARGUMENT, "seqlens_kv[%" PRId64 "]=%" PRId32 ": must be from 0 to seqlen_kv=%" PRId64
                        " (%s)", b, n, seqlen_kv, seqlen_kv_is);
  }
  return FJ_OK;
}

/* block_table: [batch, max_pages] int32 on q's device, apart from the outputs, with max_pages x
 * page_size keys at most 2^31 - 1 (k.shape[1] is the page size). */
static fj_status core_check_block_table(core_arg *table, const core_arg *q, const core_batch *batch, const core_arg *k,
                                        const core_arg *o, const core_arg *lse) {
  fj_status s;
  if ((s = core_check_present("block_table", table->t, 2, "[batch, max_pages]")) != FJ_OK) return s;
  const int64_t *ts = table->t->shape;
  if (ts[0] != batch->size)
    return core_error(FJ_INVALID_ARGUMENT, "block_table.shape[0]=%" PRId64 " but %s=%" PRId64
                      " (one row of pages per sequence of the batch)", ts[0], batch->is, batch->size);
  if (ts[1] < 1)
    return core_error(FJ_INVALID_ARGUMENT, "block_table.shape[1]=%" PRId64 ": each sequence needs at least one page",
                      ts[1]);
  if (k->t->shape[0] < 1 || k->t->shape[1] < 1)
    return core_error(FJ_INVALID_ARGUMENT, "k.shape=[%" PRId64 ",%" PRId64 ",...]: a paged cache needs at least one "
                      "page of at least one key ([pages, page_size, kv_heads, head_dim])", k->t->shape[0],
                      k->t->shape[1]);
  if (k->t->shape[1] > INT32_MAX || ts[1] > INT32_MAX / k->t->shape[1])
    return core_error(FJ_INVALID_ARGUMENT, "block_table.shape[1]=%" PRId64 " pages of k.shape[1]=%" PRId64
                      " keys: more than 2^31 - 1 keys per sequence", ts[1], k->t->shape[1]);
  return core_check_index_tensor(table, q, o, lse);
}

/* On the CPU, the entries each sequence reads (ceil(its keys / page_size)) name pages of k and v. */
static fj_status core_check_block_table_entries(const core_arg *table, const core_arg *k, const core_arg *lens) {
  if (table->t->device.device_type != kDLCPU) return FJ_OK;
  if (table->t->data == NULL) return core_error(FJ_INVALID_ARGUMENT, "block_table.data is NULL");
  const int32_t *entries = core_index_data(table);
  const int32_t *counts = lens->t != NULL ? core_index_data(lens) : NULL;
  int64_t pages = k->t->shape[0], page_size = k->t->shape[1];
  for (int64_t b = 0; b < table->t->shape[0]; b++) {
    int64_t keys = counts != NULL ? counts[b * lens->stride[0]] : table->t->shape[1] * page_size;
    int64_t used = (keys + page_size - 1) / page_size;
    for (int64_t i = 0; i < used; i++) {
      int32_t page = entries[b * table->stride[0] + i * table->stride[1]];
      if (page < 0 || page >= pages)
        return core_error(FJ_INVALID_ARGUMENT, "block_table[%" PRId64 "][%" PRId64 "]=%" PRId32 ": not a page of k "
                          "and v (k.shape[0]=%" PRId64 ": from 0 to %" PRId64 ")", b, i, page, pages, pages - 1);
    }
  }
  return FJ_OK;
}

/* sinks: [heads] fp32 on q's device, apart from the outputs, and on the CPU (where it can be read now)
 * every value finite. */
static fj_status core_check_sinks(core_arg *sinks, const core_arg *q, int64_t heads, const core_arg *o,
                                  const core_arg *lse) {
  fj_status s;
  if ((s = core_check_present("sinks", sinks->t, 1, "[heads]")) != FJ_OK) return s;
  if (sinks->t->shape[0] != heads)
    return core_error(FJ_INVALID_ARGUMENT, "sinks.shape[0]=%" PRId64 " but heads=%" PRId64
                      " (one logit per query head)", sinks->t->shape[0], heads);
  if (!core_dtype_from_dlpack(sinks->t->dtype, &sinks->dtype) || sinks->dtype != DTYPE_F32) {
    char text[48];
    core_format_dlpack_type(sinks->t->dtype, text, sizeof text);
    return core_error(FJ_INVALID_ARGUMENT, "sinks.dtype is %s; expected fp32", text);
  }
  if ((s = core_check_side_input(sinks, q, o, lse)) != FJ_OK) return s;
  if (sinks->t->device.device_type != kDLCPU) return FJ_OK;
  const float *values = (const float *)(const void *)((const char *)sinks->t->data + sinks->t->byte_offset);
  for (int64_t h = 0; h < heads; h++)
    if (!isfinite(values[h * sinks->stride[0]]))
      return core_error(FJ_INVALID_ARGUMENT, "sinks[%" PRId64 "]=%g: each must be finite", h,
                        (double)values[h * sinks->stride[0]]);
  return FJ_OK;
}

/* alibi_slopes: fp32 [heads] or [batch, heads] on q's device, apart from the outputs, and on the CPU
 * (where it can be read now) every value finite. */
static fj_status core_check_alibi(core_arg *slopes, const core_arg *q, const core_batch *batch, int64_t heads,
                                  const core_arg *o, const core_arg *lse) {
  fj_status s;
  const DLTensor *t = slopes->t;
  if (t->ndim != 1 && t->ndim != 2)
    return core_error(FJ_INVALID_ARGUMENT, "alibi_slopes.ndim=%d, expected 1 ([heads]) or 2 ([batch, heads])", t->ndim);
  if ((s = core_check_present("alibi_slopes", t, t->ndim, t->ndim == 1 ? "[heads]" : "[batch, heads]")) != FJ_OK)
    return s;
  if (t->shape[t->ndim - 1] != heads || (t->ndim == 2 && t->shape[0] != batch->size)) {
    char shape[48];
    if (t->ndim == 2)
      snprintf(shape, sizeof shape, "[%" PRId64 ", %" PRId64 "]", t->shape[0], t->shape[1]);
    else
      snprintf(shape, sizeof shape, "[%" PRId64 "]", t->shape[0]);
    return core_error(FJ_INVALID_ARGUMENT, "alibi_slopes.shape=%s, expected [%" PRId64 "] or [%" PRId64 ", %" PRId64
                      "] (heads; %s, heads)", shape, heads, batch->size, heads, batch->is);
  }
  if (!core_dtype_from_dlpack(t->dtype, &slopes->dtype) || slopes->dtype != DTYPE_F32) {
    char text[48];
    core_format_dlpack_type(t->dtype, text, sizeof text);
    return core_error(FJ_INVALID_ARGUMENT, "alibi_slopes.dtype is %s; expected fp32", text);
  }
  if ((s = core_check_side_input(slopes, q, o, lse)) != FJ_OK) return s;
  if (t->device.device_type != kDLCPU) return FJ_OK;
  const float *values = (const float *)(const void *)((const char *)t->data + t->byte_offset);
  int64_t rows = t->ndim == 2 ? t->shape[0] : 1, row_stride = t->ndim == 2 ? slopes->stride[0] : 0;
  int64_t head_stride = slopes->stride[t->ndim - 1];
  for (int64_t b = 0; b < rows; b++)
    for (int64_t h = 0; h < heads; h++) {
      float value = values[b * row_stride + h * head_stride];
      if (!isfinite(value)) {
        if (t->ndim == 2)
          return core_error(FJ_INVALID_ARGUMENT, "alibi_slopes[%" PRId64 "][%" PRId64 "]=%g: each must be finite", b,
                            h, (double)value);
        return core_error(FJ_INVALID_ARGUMENT, "alibi_slopes[%" PRId64 "]=%g: each must be finite", h, (double)value);
      }
    }
  return FJ_OK;
}

/* attn_bias: [batch, heads, seqlen_q, seqlen_kv], each dimension that size or 1, fp32 or q's dtype, on q's
 * device, apart from the outputs. Its values are not read (a device's may not be readable here). */
static fj_status core_check_attn_bias(core_arg *bias, const core_arg *q, const int64_t want[4], const char *const is[4],
                                      const core_arg *o, const core_arg *lse) {
  fj_status s;
  const DLTensor *t = bias->t;
  if ((s = core_check_present("attn_bias", t, 4, "[batch, heads, seqlen_q, seqlen_kv]")) != FJ_OK) return s;
  for (int d = 0; d < 4; d++)
    if (t->shape[d] != want[d] && t->shape[d] != 1)
      return core_error(FJ_INVALID_ARGUMENT, "attn_bias.shape[%d]=%" PRId64 " but %s=%" PRId64 " (each dimension of "
                        "[batch, heads, seqlen_q, seqlen_kv] must be its size or 1)", d, t->shape[d], is[d], want[d]);
  if (!core_dtype_from_dlpack(t->dtype, &bias->dtype) || (bias->dtype != DTYPE_F32 && bias->dtype != q->dtype)) {
    char text[48];
    core_format_dlpack_type(t->dtype, text, sizeof text);
    return core_error(FJ_INVALID_ARGUMENT, "attn_bias.dtype is %s; expected fp32 or q's dtype (%s)", text,
                      core_dtype_name(q->dtype));
  }
  return core_check_side_input(bias, q, o, lse);
}

/* workspace: [bytes] uint8 on q's device, contiguous, 16-byte aligned, apart from every tensor the call
 * reads or writes (others: the call's arguments; absent ones have t == NULL). */
static fj_status core_check_workspace(core_arg *work, const core_arg *q, const core_arg *const *others, int count) {
  fj_status s;
  const DLTensor *t = work->t;
  if (t->ndim != 1)
    return core_error(FJ_INVALID_ARGUMENT, "workspace.ndim=%d: expected 1 ([bytes] uint8)", t->ndim);
  if (t->shape == NULL) return core_error(FJ_INVALID_ARGUMENT, "workspace.shape is NULL");
  if (t->dtype.code != kDLUInt || t->dtype.bits != 8 || t->dtype.lanes != 1) {
    char text[48];
    core_format_dlpack_type(t->dtype, text, sizeof text);
    return core_error(FJ_INVALID_ARGUMENT, "workspace.dtype is %s; expected uint8", text);
  }
  if ((s = core_check_same_device(work, q)) != FJ_OK) return s;
  if (t->shape[0] < 0)
    return core_error(FJ_INVALID_ARGUMENT, "workspace.shape[0]=%" PRId64 " is negative", t->shape[0]);
  if (t->strides != NULL && t->shape[0] > 1 && t->strides[0] != 1)
    return core_error(FJ_INVALID_ARGUMENT, "workspace.strides[0]=%" PRId64 ": must be 1 (contiguous bytes)",
                      t->strides[0]);
  if (t->shape[0] > 0 && t->data == NULL) return core_error(FJ_INVALID_ARGUMENT, "workspace.data is NULL");
  if (t->byte_offset > (uint64_t)INT64_MAX)
    return core_error(FJ_INVALID_ARGUMENT, "workspace.byte_offset=%" PRIu64 " is too large", t->byte_offset);
  work->first = (uintptr_t)t->data + (uintptr_t)t->byte_offset;
  if (t->shape[0] > 0 && work->first % 16 != 0)
    return core_error(FJ_INVALID_ARGUMENT,
                      "workspace starts at 0x%" PRIxPTR " (data + byte_offset): must be 16-byte aligned", work->first);
  if ((uint64_t)t->shape[0] > (uint64_t)(UINTPTR_MAX - work->first))
    return core_error(FJ_INVALID_ARGUMENT, "workspace.shape[0]=%" PRId64 " bytes from 0x%" PRIxPTR " overflow the address space",
                      t->shape[0], work->first);
  work->end = work->first + (uintptr_t)t->shape[0];
  work->elements = t->shape[0];
  for (int i = 0; i < count; i++)
    if (others[i]->t != NULL && (s = core_check_disjoint(work, others[i])) != FJ_OK) return s;
  return FJ_OK;
}

fj_status core_check_softcap(const char *what, float softcap, float softmax_scale) {
  if (!(isfinite(softcap) && softcap >= 0.0f))
    return core_error(FJ_INVALID_ARGUMENT, "%ssoftcap=%g: must be finite and not negative (0: no capping)", what,
                      (double)softcap);
  /* the kernels scale by softcap / softmax_scale and its inverse (and softcap log2 e): all must be floats */
  double ratio = fabs((double)softcap / (double)softmax_scale);
  if (softcap > 0.0f && (softcap < 1e-30f || softcap > 1e30f || ratio < 1e-30 || ratio > 1e30))
    return core_error(FJ_INVALID_ARGUMENT, "%ssoftcap=%g with softmax_scale=%g: softcap and softcap / softmax_scale "
                      "must each be from 1e-30 to 1e30", what, (double)softcap, (double)softmax_scale);
  return FJ_OK;
}

fj_status core_resolve_window(const char *what, int causal, int64_t window_left, int64_t window_right,
                              int64_t seqlen_q, int64_t seqlen_kv, attention_problem *problem) {
  if (window_left < -1 || window_right < -1)
    return core_error(FJ_INVALID_ARGUMENT,
                      "%swindow_left=%" PRId64 ", %swindow_right=%" PRId64 ": each must be -1 (no window on that "
                      "side) or at least 0",
                      what, window_left, what, window_right);
  if (causal && window_right > 0)
    return core_error(FJ_INVALID_ARGUMENT,
                      "%swindow_right=%" PRId64 " with causal: causal is window_right=0 (give -1 or 0)", what,
                      window_right);
  if (causal) window_right = 0;
  /* A side that reaches past every key bounds nothing (no kernel then masks for it): a query's
   * diagonal key is below seqlen_kv, and its last key is the diagonal plus seqlen_q - 1 at most. */
  if (window_left >= seqlen_kv) window_left = -1;
  if (!causal && window_right >= seqlen_q) window_right = -1;
  problem->key.causal = window_right >= 0;
  problem->key.window = window_left >= 0;
  problem->window_left = window_left;
  problem->window_right = window_right;
  return FJ_OK;
}

/* The end of the part of args a caller must have: every field this version reads. */
#define CORE_ARGS_MIN_SIZE (offsetof(fj_attention_args, stream) + sizeof(void *))

fj_status core_validate_attention(const fj_attention_args *args, attention_problem *out) {
  fj_status s;
  if (args == NULL) return core_error(FJ_INVALID_ARGUMENT, "args is NULL");
  if (out == NULL) return core_error(FJ_INVALID_ARGUMENT, "out is NULL (internal: no problem to fill)");
  if (args->struct_size < CORE_ARGS_MIN_SIZE)
    return core_error(FJ_INVALID_ARGUMENT,
                      "args.struct_size=%" PRIu32 ", expected at least %zu (initialize args with "
                      "fj_attention_args_init)",
                      args->struct_size, (size_t)CORE_ARGS_MIN_SIZE);

  /* seqlens_kv and block_table: only read where the caller's struct has them (an older header's args
   * stop before) */
  core_arg lens = {.name = "seqlens_kv", .t = NULL}, table = {.name = "block_table", .t = NULL};
  if (args->struct_size >= offsetof(fj_attention_args, seqlens_kv) + sizeof(const DLTensor *))
    lens.t = args->seqlens_kv;
  if (args->struct_size >= offsetof(fj_attention_args, block_table) + sizeof(const DLTensor *))
    table.t = args->block_table;
  core_arg work = {.name = "workspace", .t = NULL};
  if (args->struct_size >= offsetof(fj_attention_args, workspace) + sizeof(DLTensor *)) work.t = args->workspace;
  core_arg cu = {.name = "cu_seqlens_q", .t = NULL};
  if (args->struct_size >= offsetof(fj_attention_args, max_seqlen_q) + sizeof(int64_t)) cu.t = args->cu_seqlens_q;
  core_arg sinks = {.name = "sinks", .t = NULL};
  if (args->struct_size >= offsetof(fj_attention_args, sinks) + sizeof(const DLTensor *)) sinks.t = args->sinks;
  core_arg cu_k = {.name = "cu_seqlens_k", .t = NULL};
  if (args->struct_size >= offsetof(fj_attention_args, max_seqlen_k) + sizeof(int64_t)) cu_k.t = args->cu_seqlens_k;
  core_arg alibi = {.name = "alibi_slopes", .t = NULL};
  if (args->struct_size >= offsetof(fj_attention_args, alibi_slopes) + sizeof(const DLTensor *))
    alibi.t = args->alibi_slopes;
  core_arg bias = {.name = "attn_bias", .t = NULL};
  if (args->struct_size >= offsetof(fj_attention_args, attn_bias) + sizeof(const DLTensor *)) bias.t = args->attn_bias;
  int paged = table.t != NULL, ragged = cu.t != NULL, packed = cu_k.t != NULL;
  if (packed && (paged || lens.t != NULL))
    return core_error(FJ_INVALID_ARGUMENT, "cu_seqlens_k with %s: packed keys are each sequence's rows of k and v, "
                      "all of them; give one of the two", paged ? "block_table" : "seqlens_kv");

  core_arg q = {.name = "q", .t = args->q}, k = {.name = "k", .t = args->k};
  core_arg v = {.name = "v", .t = args->v}, o = {.name = "o", .t = args->o};
  core_arg lse = {.name = "lse", .t = args->lse};
  /* Ragged queries drop q's and o's batch dimension (and lse's): qh and qd are q's heads and head_dim. */
  const int q_ndim = ragged ? 3 : 4, qh = q_ndim - 2, qd = q_ndim - 1;
  const char *q_dims = ragged ? "[total_q, heads, head_dim] with cu_seqlens_q" : "[batch, seqlen_q, heads, head_dim]";
  const char *kv_dims = paged    ? "[pages, page_size, kv_heads, head_dim]"
                        : packed ? "[total_k, kv_heads, head_dim] with cu_seqlens_k"
                                 : "[batch, seqlen_kv, kv_heads, head_dim]";
  /* Packed keys drop k's and v's batch dimension: kh and kd are their kv_heads and head_dim. */
  const int kv_ndim = packed ? 3 : 4, kh = kv_ndim - 2, kd = kv_ndim - 1;
  if ((s = core_check_present("q", q.t, q_ndim, q_dims)) != FJ_OK) return s;
  if ((s = core_check_present("k", k.t, kv_ndim, kv_dims)) != FJ_OK) return s;
  if ((s = core_check_present("v", v.t, kv_ndim, kv_dims)) != FJ_OK) return s;
  if ((s = core_check_present("o", o.t, q_ndim, q_dims)) != FJ_OK) return s;
  if (lse.t != NULL &&
      (s = core_check_present("lse", lse.t, q_ndim - 1, ragged ? "[heads, total_q] with cu_seqlens_q"
                                                                : "[batch, heads, seqlen_q]")) != FJ_OK)
    return s;
  if (ragged && (s = core_check_present("cu_seqlens_q", cu.t, 1, "[batch + 1]")) != FJ_OK) return s;
  if (packed && (s = core_check_present("cu_seqlens_k", cu_k.t, 1, "[batch + 1]")) != FJ_OK) return s;

  /* dtypes: each one of ours, then all equal to q's, but for an fp8 cache's k and v (both the same fp8);
   * lse is always fp32. */
  core_arg *qkvo[4] = {&q, &k, &v, &o};
  for (int i = 0; i < 4; i++)
    if ((s = core_check_dtype(qkvo[i], qkvo[i] == &k || qkvo[i] == &v)) != FJ_OK) return s;
  if (k.dtype != q.dtype && !core_dtype_is_fp8(k.dtype))
    return core_error(FJ_INVALID_ARGUMENT, "k.dtype=%s but q.dtype=%s (k and v must be q's dtype, or fp8)",
                      core_dtype_name(k.dtype), core_dtype_name(q.dtype));
  if (v.dtype != k.dtype)
    return core_error(FJ_INVALID_ARGUMENT, "v.dtype=%s but k.dtype=%s (they must match)", core_dtype_name(v.dtype),
                      core_dtype_name(k.dtype));
  if (o.dtype != q.dtype)
    return core_error(FJ_INVALID_ARGUMENT, "o.dtype=%s but q.dtype=%s (they must match)", core_dtype_name(o.dtype),
                      core_dtype_name(q.dtype));
  float k_scale = 1.0f, v_scale = 1.0f;
  if (core_dtype_is_fp8(k.dtype) && args->struct_size >= offsetof(fj_attention_args, v_scale) + sizeof(float)) {
    if ((s = core_resolve_kv_scale("k_scale", args->k_scale, &k_scale)) != FJ_OK) return s;
    if ((s = core_resolve_kv_scale("v_scale", args->v_scale, &v_scale)) != FJ_OK) return s;
  }
  if (lse.t != NULL) {
    if (!core_dtype_from_dlpack(lse.t->dtype, &lse.dtype) || lse.dtype != DTYPE_F32) {
      char text[48];
      core_format_dlpack_type(lse.t->dtype, text, sizeof text);
      return core_error(FJ_INVALID_ARGUMENT, "lse.dtype must be fp32, got %s", text);
    }
  }

  /* shapes */
  const int64_t *qs = q.t->shape, *ks = k.t->shape;
  core_batch batch = {qs[0], "q.shape[0]"};
  int64_t seqlen_q = qs[1];
  if (ragged) {
    batch = (core_batch){cu.t->shape[0] - 1, "cu_seqlens_q.shape[0] - 1"};
    if (batch.size < 1)
      return core_error(FJ_INVALID_ARGUMENT, "cu_seqlens_q.shape[0]=%" PRId64 ": batch + 1 offsets, for a batch of "
                        "at least 1", cu.t->shape[0]);
    seqlen_q = args->max_seqlen_q;
    if (seqlen_q < 0 || seqlen_q > qs[0])
      return core_error(FJ_INVALID_ARGUMENT, "max_seqlen_q=%" PRId64 ": must be from 0 to total_q=%" PRId64
                        " (q.shape[0])", seqlen_q, qs[0]);
  } else if (qs[0] < 1) {
    return core_error(FJ_INVALID_ARGUMENT, "q.shape[0]=%" PRId64 ": batch must be at least 1", qs[0]);
  }
  if (qs[qh] < 1 || qs[qh] > INT32_MAX)
    return core_error(FJ_INVALID_ARGUMENT,
                      "q.shape[%d]=%" PRId64 ": heads must be from 1 to 2147483647", qh, qs[qh]);
  if (!core_head_dim_valid(qs[qd]))
    return core_error(FJ_INVALID_ARGUMENT,
                      "head_dim=%" PRId64 ": must be a multiple of 8 from 8 to 576 (q.shape[%d])",
                      qs[qd], qd);
  if (packed && cu_k.t->shape[0] != batch.size + 1)
    return core_error(FJ_INVALID_ARGUMENT, "cu_seqlens_k.shape[0]=%" PRId64 ", expected %s + 1 = %" PRId64
                      " (batch + 1 offsets)", cu_k.t->shape[0], batch.is, batch.size + 1);
  if (!paged && !packed && ks[0] != batch.size)
    return core_error(FJ_INVALID_ARGUMENT, "k.shape[0]=%" PRId64 " but %s=%" PRId64 " (batch must match)", ks[0],
                      batch.is, batch.size);
  if (ks[kh] < 1 || ks[kh] > INT32_MAX)
    return core_error(FJ_INVALID_ARGUMENT,
                      "k.shape[%d]=%" PRId64 ": kv_heads must be from 1 to 2147483647", kh, ks[kh]);
  if ((s = core_check_dim(&k, kd, &q, qd, "head_dim")) != FJ_OK) return s;
  static const char *const kv_what[4] = {"batch", "seqlen_kv", "kv_heads", "head_dim"};
  static const char *const page_what[4] = {"pages", "page_size", "kv_heads", "head_dim"};
  static const char *const packed_what[3] = {"total_k", "kv_heads", "head_dim"};
  static const char *const q_what[4] = {"batch", "seqlen_q", "heads", "head_dim"};
  static const char *const ragged_what[3] = {"total_q", "heads", "head_dim"};
  /* v may have a head dim of its own (MLA), and o has v's */
  for (int d = 0; d < kv_ndim - 1; d++)
    if ((s = core_check_dim(&v, d, &k, d, paged ? page_what[d] : packed ? packed_what[d] : kv_what[d])) != FJ_OK)
      return s;
  const int64_t head_dim_v = v.t->shape[kd];
  if (!core_head_dim_valid(head_dim_v))
    return core_error(FJ_INVALID_ARGUMENT,
                      "v.shape[%d]=%" PRId64 ": v's head dim must be a multiple of 8 from 8 to 576", kd, head_dim_v);
  for (int d = 0; d < q_ndim - 1; d++)
    if ((s = core_check_dim(&o, d, &q, d, ragged ? ragged_what[d] : q_what[d])) != FJ_OK) return s;
  if (o.t->shape[qd] != head_dim_v)
    return core_error(FJ_INVALID_ARGUMENT, "o.shape[%d]=%" PRId64 " but v.shape[%d]=%" PRId64 " (o has v's head dim)",
                      qd, o.t->shape[qd], kd, head_dim_v);
  if (qs[qh] % ks[kh] != 0)
    return core_error(FJ_INVALID_ARGUMENT,
                      "heads=%" PRId64 " is not a multiple of kv_heads=%" PRId64
                      " (q.shape[%d], k.shape[%d])",
                      qs[qh], ks[kh], qh, kh);
  if (lse.t != NULL && ragged) {
    const int64_t *ls = lse.t->shape;
    if (ls[0] != qs[1] || ls[1] != qs[0])
      return core_error(FJ_INVALID_ARGUMENT,
                        "lse.shape=[%" PRId64 ",%" PRId64 "], expected [%" PRId64 ",%" PRId64
                        "] ([heads, total_q] with cu_seqlens_q)", ls[0], ls[1], qs[1], qs[0]);
  } else if (lse.t != NULL) {
    const int64_t *ls = lse.t->shape;
    if (ls[0] != qs[0] || ls[1] != qs[2] || ls[2] != qs[1])
      return core_error(FJ_INVALID_ARGUMENT,
                        "lse.shape=[%" PRId64 ",%" PRId64 ",%" PRId64 "], expected [%" PRId64
                        ",%" PRId64 ",%" PRId64 "] ([batch, heads, seqlen_q])",
                        ls[0], ls[1], ls[2], qs[0], qs[2], qs[1]);
  }

  /* devices */
  for (int i = 1; i < 4; i++)
    if ((s = core_check_same_device(qkvo[i], &q)) != FJ_OK) return s;
  if (lse.t != NULL && (s = core_check_same_device(&lse, &q)) != FJ_OK) return s;

  /* memory: extents, then outputs against themselves and everything else. q, k and v may overlap
   * each other (packed QKV): they are only read. */
  for (int i = 0; i < 4; i++)
    if ((s = core_check_layout(qkvo[i])) != FJ_OK) return s;
  if (lse.t != NULL && (s = core_check_layout(&lse)) != FJ_OK) return s;
  if ((s = core_check_no_self_overlap(&o)) != FJ_OK) return s;
  if (lse.t != NULL && (s = core_check_no_self_overlap(&lse)) != FJ_OK) return s;
  for (int i = 0; i < 3; i++)
    if ((s = core_check_disjoint(&o, qkvo[i])) != FJ_OK) return s;
  if (lse.t != NULL) {
    for (int i = 0; i < 3; i++)
      if ((s = core_check_disjoint(&lse, qkvo[i])) != FJ_OK) return s;
    if ((s = core_check_disjoint(&o, &lse)) != FJ_OK) return s;
  }

  if (!isfinite(args->softmax_scale))
    return core_error(FJ_INVALID_ARGUMENT, "softmax_scale=%g must be finite",
                      (double)args->softmax_scale);
  float softcap = args->struct_size >= offsetof(fj_attention_args, softcap) + sizeof(float) ? args->softcap : 0.0f;

  /* A paged cache's keys per sequence: its pages times the page size. */
  if (paged && (s = core_check_block_table(&table, &q, &batch, &k, &o, &lse)) != FJ_OK) return s;
  int64_t seqlen_kv = paged ? table.t->shape[1] * ks[1] : packed ? args->max_seqlen_k : ks[1];
  const char *seqlen_kv_is = paged ? "block_table.shape[1] x k.shape[1]" : "k.shape[1]";
  if (packed && (seqlen_kv < 0 || seqlen_kv > ks[0]))
    return core_error(FJ_INVALID_ARGUMENT, "max_seqlen_k=%" PRId64 ": must be from 0 to total_k=%" PRId64
                      " (k.shape[0])", seqlen_kv, ks[0]);
  if (lens.t != NULL && (s = core_check_seqlens_kv(&lens, &q, &batch, seqlen_kv, seqlen_kv_is, &o, &lse)) != FJ_OK)
    return s;
  if (paged && (s = core_check_block_table_entries(&table, &k, &lens)) != FJ_OK) return s;
  static const core_offsets_names query_offsets = {"total_q", "q.shape[0]", "max_seqlen_q", "queries"};
  static const core_offsets_names key_offsets = {"total_k", "k.shape[0]", "max_seqlen_k", "keys"};
  if (ragged && (s = core_check_offsets(&cu, &query_offsets, qs[0], seqlen_q, &q, &o, &lse)) != FJ_OK) return s;
  if (packed && (s = core_check_offsets(&cu_k, &key_offsets, ks[0], seqlen_kv, &q, &o, &lse)) != FJ_OK) return s;
  if (sinks.t != NULL && (s = core_check_sinks(&sinks, &q, qs[qh], &o, &lse)) != FJ_OK) return s;
  if (alibi.t != NULL && (s = core_check_alibi(&alibi, &q, &batch, qs[qh], &o, &lse)) != FJ_OK) return s;
  if (bias.t != NULL) {
    const int64_t want[4] = {batch.size, qs[qh], seqlen_q, seqlen_kv};
    const char *const is[4] = {batch.is, ragged ? "heads (q.shape[1])" : "heads (q.shape[2])",
                               ragged ? "max_seqlen_q" : "seqlen_q (q.shape[1])",
                               paged ? "seqlen_kv (block_table.shape[1] x k.shape[1])"
                               : packed ? "max_seqlen_k" : "seqlen_kv (k.shape[1])"};
    if ((s = core_check_attn_bias(&bias, &q, want, is, &o, &lse)) != FJ_OK) return s;
  }
  if (work.t != NULL) {
    const core_arg *const others[] = {&q, &k, &v, &o, &lse, &lens, &table, &cu, &sinks, &cu_k, &alibi, &bias};
    if ((s = core_check_workspace(&work, &q, others, 12)) != FJ_OK) return s;
  }

  int windowed = args->struct_size >= offsetof(fj_attention_args, window_right) + sizeof(int64_t) && args->windowed;
  int64_t kv_split_keys =
      args->struct_size >= offsetof(fj_attention_args, kv_split_keys) + sizeof(int64_t) ? args->kv_split_keys : 0;
  if (kv_split_keys < -1)
    return core_error(FJ_INVALID_ARGUMENT, "kv_split_keys=%" PRId64 ": 0 (the library's split), -1 (none) or a key count",
                      kv_split_keys);
  /* the CPU's combine takes at most 64 parts (a GPU's 128); more than 16 queries are never cut */
  if (kv_split_keys > 0 && seqlen_q <= 16 && (seqlen_kv + kv_split_keys - 1) / kv_split_keys > 64)
    return core_error(FJ_INVALID_ARGUMENT, "kv_split_keys=%" PRId64 ": %" PRId64 " keys would make %" PRId64
                      " parts, more than 64; give at least %" PRId64, kv_split_keys, seqlen_kv,
                      (seqlen_kv + kv_split_keys - 1) / kv_split_keys, (seqlen_kv + 63) / 64);
  attention_problem p;
  memset(&p, 0, sizeof p);
  p.kv_split_keys = kv_split_keys;
  p.key.kind = PROBLEM_ATTENTION_FWD;
  p.key.dtype = (int)q.dtype;
  p.key.kv_fp8 = core_dtype_is_fp8(k.dtype) ? (int)k.dtype : 0;
  p.k_scale = k_scale;
  p.v_scale = v_scale;
  p.key.head_dim = (int)qs[qd];
  p.key.head_dim_v = head_dim_v != qs[qd] ? (int)head_dim_v : 0;
  p.key.heads = (int)qs[qh];
  p.key.kv_heads = (int)ks[kh];
  if ((s = core_resolve_window("", args->causal, windowed ? args->window_left : -1, windowed ? args->window_right : -1,
                               seqlen_q, seqlen_kv, &p)) != FJ_OK)
    return s;
  p.key.has_lse = lse.t != NULL;
  p.key.d_contiguous = q.stride[qd] == 1 && k.stride[kd] == 1 && v.stride[kd] == 1 && o.stride[qd] == 1;
  p.key.seqlen_bucket = core_seqlen_bucket(seqlen_q);
  p.batch = batch.size;
  p.seqlen_q = seqlen_q;
  p.seqlen_kv = seqlen_kv;
  p.softmax_scale = args->softmax_scale != 0.0f ? args->softmax_scale : (float)(1.0 / sqrt((double)qs[qd]));
  /* the kernels scale the stored keys' scores by softmax_scale x k_scale (log2 e), a float */
  if (!(fabs((double)p.softmax_scale * (double)k_scale * 1.4426950408889634) <= (double)FLT_MAX))
    return core_error(FJ_INVALID_ARGUMENT, "k_scale=%g with softmax_scale=%g: their product must be a finite float",
                      (double)k_scale, (double)p.softmax_scale);
  /* the soft cap's factors are in units of the stored keys' scores too */
  if ((s = core_check_softcap("", softcap, p.softmax_scale * k_scale)) != FJ_OK) return s;
  p.key.softcap = softcap > 0.0f;
  p.softcap = softcap;
  core_fill_view(&p.q, &q);
  core_fill_view(&p.k, &k);
  core_fill_view(&p.v, &v);
  core_fill_view(&p.o, &o);
  if (lse.t != NULL) core_fill_view(&p.lse, &lse);
  if (ragged) {
    p.key.varlen_q = 1;
    p.cu_seqlens_q = core_index_data(&cu);
    p.cu_seqlens_q_stride = cu.stride[0];
    p.total_q = qs[0];
    core_view_add_batch(&p.q, batch.size, seqlen_q);
    core_view_add_batch(&p.o, batch.size, seqlen_q);
    if (lse.t != NULL) core_view_add_batch(&p.lse, batch.size, seqlen_q);
  }
  if (packed) {
    p.key.varlen = p.key.varlen_k = 1;
    p.cu_seqlens_k = core_index_data(&cu_k);
    p.cu_seqlens_k_stride = cu_k.stride[0];
    p.total_k = ks[0];
    core_view_add_batch(&p.k, batch.size, seqlen_kv);
    core_view_add_batch(&p.v, batch.size, seqlen_kv);
  }
  if (lens.t != NULL) {
    p.key.varlen = 1;
    p.seqlens_kv = core_index_data(&lens);
    p.seqlens_kv_stride = lens.stride[0];
  }
  if (paged) {
    p.key.page_size = (int)ks[1];
    p.block_table = core_index_data(&table);
    p.block_table_stride[0] = table.stride[0];
    p.block_table_stride[1] = table.stride[1];
    p.pages = ks[0];
  }
  if (sinks.t != NULL) {
    p.key.sinks = 1;
    p.sinks = (const float *)(const void *)((const char *)sinks.t->data + sinks.t->byte_offset);
    p.sinks_stride = sinks.stride[0];
  }
  if (alibi.t != NULL) {
    p.key.alibi = 1;
    p.alibi = (const float *)(const void *)((const char *)alibi.t->data + alibi.t->byte_offset);
    p.alibi_stride[0] = alibi.t->ndim == 2 ? alibi.stride[0] : 0;
    p.alibi_stride[1] = alibi.stride[alibi.t->ndim - 1];
  }
  if (bias.t != NULL) {
    p.attn_bias = (const char *)bias.t->data + bias.t->byte_offset;
    for (int d = 0; d < 4; d++) p.attn_bias_stride[d] = bias.t->shape[d] == 1 ? 0 : bias.stride[d];
    /* GPU kernels address a row's consecutive keys by constant offsets; others get a kernel of their own */
    p.key.bias = (bias.dtype == DTYPE_F32 ? KEY_BIAS_F32 : KEY_BIAS_DTYPE) |
                 (p.attn_bias_stride[3] != 1 ? KEY_BIAS_STRIDED_KEYS : 0);
  }
  if (work.t != NULL && work.elements > 0) {
    p.workspace = (void *)work.first;
    p.workspace_bytes = work.elements;
  }
  p.device = q.t->device;
  *out = p;
  return FJ_OK;
}
