/* test_attention_cuda.c: the foundation correctness suite on cuda:0, through the public API with device
 * memory. Each case fills host tensors with fresh random values (the seed is printed), poisons o and
 * lse, copies everything to the device, runs the forward, copies o and lse back and compares them with
 * the float64 reference by relative norm error; it also checks that no byte of o's or lse's
 * allocations outside their elements changed and that fully masked rows are exactly 0 (lse -inf). The
 * cases cover fp16 and bf16, causal and not with seqlen_q != seqlen_kv both ways, GQA 1/2/4/8 and MQA,
 * lengths 1, 7, 1000, 1023, 4097, head dims 64/80/96/128/256, packed QKV, a strided head dim and a
 * strided lse. A case whose call would split its keys given a workspace (fj_attention_workspace_size:
 * the decode steps with enough keys) runs again with one (split-KV: parts and the combine kernel). Then
 * two threads share the context, each on its own non-blocking stream (and workspace), at once.
 * Exits 77 (skipped) with the reason when no CUDA device is found or no NVPTX kernel family is built. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attention_cases.h"
#include "backends/backend.h"
#include "backends/cuda/cuda_driver.h"
#include "kernels/kernel_family.h"
#include "runtime/runtime.h"
#include "check.h"

static uint64_t base_seed;
static fj_context *context;
static const fj_backend *backend;
static backend_device *device;

/* A device copy of a host tensor (or of a view into one): the same shape and strides, the data at the
 * same offset inside a device allocation of the same size. */
typedef struct device_view {
  DLTensor t;
  int64_t shape[4], strides[4];
} device_view;

static void make_device_view(const host_tensor *view, const host_tensor *owner, void *owner_device,
                             device_view *out) {
  out->t = view->t;
  for (int i = 0; i < view->t.ndim; i++) {
    out->shape[i] = view->t.shape[i];
    out->strides[i] = view->t.strides ? view->t.strides[i] : 0;
  }
  out->t.shape = out->shape;
  out->t.strides = view->t.strides ? out->strides : NULL;
  size_t offset = (size_t)((const char *)view->t.data - (const char *)owner->allocation);
  out->t.data = (char *)owner_device + offset;
  out->t.device.device_type = kDLCUDA;
  out->t.device.device_id = 0;
}

static fj_status to_device(const host_tensor *t, void **out) {
  *out = NULL;
  if (t->allocation == NULL) return FJ_OK;
  fj_status s = backend->memory_alloc(device, t->allocation_bytes, out);
  if (s == FJ_OK) s = backend->copy_to_device(device, *out, t->allocation, t->allocation_bytes);
  return s;
}

/* A host tensor's description (shape, dtype) over its copy on cuda:0. */
static DLTensor on_device(DLTensor host, void *data) {
  host.data = data;
  host.device = (DLDevice){kDLCUDA, 0};
  return host;
}

/* A GPU runs a case on device copies of the host tensors (same offsets inside same-sized allocations,
 * so the write check covers the device's whole allocation), then copies o and lse back for the shared
 * verdict. */
/* split: give the call the workspace fj_attention_workspace_size asks for (split-KV; 2: with parts of a
 * fixed size, kv_split_keys), and skip a case that asks for none (it ran without). */
static void run_case(const test_case *c, uint64_t seed, void *stream, const char *who, int split) {
  char name[300];
  describe(c, name, sizeof name);
  if (split) strncat(name, split == 2 ? " split-KV in fixed parts" : " split-KV", sizeof name - strlen(name) - 1);
  case_tensors t;
  void *d_qkv = NULL, *d_q = NULL, *d_k = NULL, *d_v = NULL, *d_o = NULL, *d_lse = NULL, *d_lens = NULL,
       *d_table = NULL, *d_work = NULL, *d_cu = NULL, *d_sinks = NULL, *d_cu_k = NULL, *d_slopes = NULL,
       *d_bias = NULL;
  int packed = layout_shares_allocation(c->layout);
  if (!case_tensors_create(c, seed, &t)) {
    check(0, "%s%s: host allocation failed", who, name);
    goto done;
  }

  fj_status s = FJ_OK;
  if (packed) {
    s = to_device(&t.qkv, &d_qkv);
  } else {
    if (s == FJ_OK) s = to_device(&t.q, &d_q);
    if (s == FJ_OK) s = to_device(&t.k, &d_k);
    if (s == FJ_OK) s = to_device(&t.v, &d_v);
  }
  if (s == FJ_OK) s = to_device(&t.o, &d_o);
  if (s == FJ_OK && c->lse) s = to_device(&t.lse, &d_lse);
  size_t lens_bytes = (size_t)c->batch * sizeof *t.seqlens;
  if (s == FJ_OK && c->varlen) s = backend->memory_alloc(device, lens_bytes, &d_lens);
  if (s == FJ_OK && c->varlen) s = backend->copy_to_device(device, d_lens, t.seqlens, lens_bytes);
  size_t table_bytes = c->page_size > 0 ? (size_t)(c->batch * case_table_width(c)) * sizeof *t.table : 0;
  if (s == FJ_OK && c->page_size > 0) s = backend->memory_alloc(device, table_bytes, &d_table);
  if (s == FJ_OK && c->page_size > 0) s = backend->copy_to_device(device, d_table, t.table, table_bytes);
  size_t cu_bytes = (size_t)(c->batch + 1) * sizeof *t.cu;
  if (s == FJ_OK && c->ragged_q) s = backend->memory_alloc(device, cu_bytes, &d_cu);
  if (s == FJ_OK && c->ragged_q) s = backend->copy_to_device(device, d_cu, t.cu, cu_bytes);
  if (s == FJ_OK && c->packed_k) s = backend->memory_alloc(device, cu_bytes, &d_cu_k);
  if (s == FJ_OK && c->packed_k) s = backend->copy_to_device(device, d_cu_k, t.cu_k, cu_bytes);
  size_t slopes_bytes = (size_t)((c->alibi == 2 ? c->batch : 1) * c->heads) * sizeof *t.slopes;
  if (s == FJ_OK && c->alibi) s = backend->memory_alloc(device, slopes_bytes, &d_slopes);
  if (s == FJ_OK && c->alibi) s = backend->copy_to_device(device, d_slopes, t.slopes, slopes_bytes);
  if (s == FJ_OK && c->bias) s = backend->memory_alloc(device, case_bias_bytes(c), &d_bias);
  if (s == FJ_OK && c->bias) s = backend->copy_to_device(device, d_bias, t.bias, case_bias_bytes(c));
  size_t sinks_bytes = (size_t)c->heads * sizeof *t.sinks;
  if (s == FJ_OK && c->sinks) s = backend->memory_alloc(device, sinks_bytes, &d_sinks);
  if (s == FJ_OK && c->sinks) s = backend->copy_to_device(device, d_sinks, t.sinks, sinks_bytes);
  /* A copy from pageable memory may return before its DMA lands; it runs on the legacy stream. */
  if (s == FJ_OK) s = backend->synchronize(device, NULL);
  if (s != FJ_OK) {
    check(0, "%s%s: device memory: %s", who, name, fj_last_error());
    goto done;
  }
  device_view dq, dk, dv, dout, dlse;
  make_device_view(&t.q, packed ? &t.qkv : &t.q, packed ? d_qkv : d_q, &dq);
  make_device_view(&t.k, packed ? &t.qkv : &t.k, packed ? d_qkv : d_k, &dk);
  make_device_view(&t.v, packed ? &t.qkv : &t.v, packed ? d_qkv : d_v, &dv);
  make_device_view(&t.o, &t.o, d_o, &dout);
  if (c->lse) make_device_view(&t.lse, &t.lse, d_lse, &dlse);

  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &dq.t;
  args.k = &dk.t;
  args.v = &dv.t;
  args.o = &dout.t;
  args.lse = c->lse ? &dlse.t : NULL;
  args.causal = c->causal;
  args.softcap = c->softcap;
  args.softmax_scale = c->scale;
  args.stream = stream;
  /* the index tensors and sinks: the host tensors' descriptions over their device copies */
  DLTensor d_seqlens = on_device(t.seqlens_t, d_lens), d_block_table = on_device(t.table_t, d_table);
  DLTensor d_cu_seqlens_q = on_device(t.cu_t, d_cu), d_cu_seqlens_k = on_device(t.cu_k_t, d_cu_k);
  DLTensor d_sink_logits = on_device(t.sinks_t, d_sinks), d_alibi_slopes = on_device(t.slopes_t, d_slopes);
  if (c->varlen) args.seqlens_kv = &d_seqlens;
  if (c->page_size > 0) args.block_table = &d_block_table;
  if (c->ragged_q) {
    args.cu_seqlens_q = &d_cu_seqlens_q;
    args.max_seqlen_q = c->seqlen_q;
  }
  if (c->packed_k) {
    args.cu_seqlens_k = &d_cu_seqlens_k;
    args.max_seqlen_k = c->seqlen_kv;
  }
  if (c->sinks) args.sinks = &d_sink_logits;
  if (c->alibi) args.alibi_slopes = &d_alibi_slopes;
  DLTensor d_attn_bias = on_device(t.bias_t, d_bias);
  if (c->bias) args.attn_bias = &d_attn_bias;
  if (c->kv_fp8) {
    args.k_scale = case_k_scale(c);
    args.v_scale = case_v_scale(c);
  }
  size_t work_bytes = 0;
  int64_t work_shape[1] = {0};
  DLTensor d_workspace = {.device = {kDLCUDA, 0}, .ndim = 1, .dtype = {kDLUInt, 8, 1}, .shape = work_shape};
  /* split 2: parts of a fixed size (kv_split_keys, at least 256 keys and at most 64 parts) */
  if (split == 2) args.kv_split_keys = c->seqlen_kv / 64 + 1 > 256 ? c->seqlen_kv / 64 + 1 : 256;
  if (split) {
    s = fj_attention_workspace_size(context, &args, &work_bytes);
    if (s == FJ_OK && work_bytes == 0) goto done;  /* no split for this case: it ran without */
    if (s == FJ_OK) s = backend->memory_alloc(device, work_bytes, &d_work);
    if (s != FJ_OK) {
      check(0, "%s%s: workspace of %zu bytes: %s", who, name, work_bytes, fj_last_error());
      goto done;
    }
    work_shape[0] = (int64_t)work_bytes;
    d_workspace.data = d_work;
    args.workspace = &d_workspace;
  }
  s = fj_attention_forward(context, &args);
  if (s == FJ_OK) s = backend->synchronize(device, stream);
  if (s == FJ_OK) s = backend->copy_to_host(device, t.o.allocation, d_o, t.o.allocation_bytes);
  if (s == FJ_OK && c->lse) s = backend->copy_to_host(device, t.lse.allocation, d_lse, t.lse.allocation_bytes);
  if (s != FJ_OK) {
    check(0, "%s%s: %s (%s)", who, name, fj_status_string(s), fj_last_error());
    goto done;
  }

  /* the host tensors now hold what the device computed; lse is fp32 whatever the inputs, but on a GPU
   * it comes from ex2.approx and tensor-core sums */
  case_result r;
  if (!case_compare(c, &t, 1e-3, &r)) {
    check(0, "%s%s: reference failed (%s)", who, name, fj_last_error());
    goto done;
  }
  check(case_result_ok(&r), "%s%s: err_o=%.2e err_lse=%.2e (tol %.0e, %.0e)%s%s%s", who, name, r.err_o,
        r.err_lse, r.tol, r.tol_lse, r.masked_ok ? "" : " MASKED ROW NOT EXACT (or NaN)",
        r.outside_o ? "" : " WROTE OUTSIDE o's ELEMENTS", r.outside_lse ? "" : " WROTE OUTSIDE lse's ELEMENTS");

done:
  backend->memory_free(device, d_qkv);
  backend->memory_free(device, d_q);
  backend->memory_free(device, d_k);
  backend->memory_free(device, d_v);
  backend->memory_free(device, d_o);
  backend->memory_free(device, d_lse);
  backend->memory_free(device, d_lens);
  backend->memory_free(device, d_table);
  backend->memory_free(device, d_work);
  backend->memory_free(device, d_cu);
  backend->memory_free(device, d_sinks);
  backend->memory_free(device, d_cu_k);
  backend->memory_free(device, d_slopes);
  backend->memory_free(device, d_bias);
  case_tensors_free(c, &t);
}

/* dtype, batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim, causal, lse, layout, scale, varlen,
 * page_size, window_left, window_right, ragged_q, sinks, softcap, packed_k, alibi, kv_fp8, head_dim_v, bias */
static const test_case cases[] = {
    /* both dtypes, causal and not, GQA 2, batch > 1, a length no tile divides */
    {F16, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 2, 257, 257, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 4, 2, 257, 257, 128, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 4, 2, 257, 257, 128, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* GQA ratios 1, 2, 4, 8 and MQA */
    {F16, 1, 8, 8, 130, 130, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 4, 130, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 8, 2, 130, 200, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 1, 130, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 16, 2, 100, 300, 96, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 4, 1, 66, 66, 128, 0, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* decode steps, which the defaults pack (pack_gqa): groups 4, 8 and 3, a strided LSE, rows past a
     * short cache's diagonal fully masked */
    {BF16, 3, 8, 2, 1, 1000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 8, 1, 3, 517, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 6, 2, 5, 3, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* seqlens_kv: each sequence its own key count (all, none, spread), decode and causal prefill */
    {BF16, 4, 8, 2, 1, 1000, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 3, 4, 1, 3, 517, 64, 1, 1, LSESTRIDED, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 5, 2, 2, 70, 300, 80, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* paged K/V (block_table, pages shuffled in a pool): decode with seqlens_kv, pages of 16 and 5;
     * causal prefill; a strided head dim */
    {BF16, 4, 8, 2, 1, 1008, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 3, 4, 1, 3, 515, 64, 1, 1, LSESTRIDED, 0, 1, 5, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 2, 300, 512, 128, 1, 1, CONTIG, 0, 0, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 2, 2, 70, 96, 64, 0, 1, DSTRIDE2, 0, 1, 32, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* seqlen_q != seqlen_kv both ways; causal with sq > skv leaves rows with no visible key */
    {F16, 1, 2, 2, 7, 1000, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 7, 1000, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 1000, 7, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 1000, 7, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 2, 2, 1000, 7, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 33, 17, 80, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* no keys at all: every row is fully masked (zeros, lse -inf) */
    {F16, 1, 2, 2, 65, 0, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 65, 0, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* lengths 1, 7, 1000, 1023, 4097 */
    {F16, 1, 2, 2, 1, 1, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 1, 1, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 2, 1, 7, 7, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 4, 4, 1, 4097, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 1023, 1023, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 1000, 1000, 96, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 1, 1, 4097, 4097, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 1, 1, 1023, 4097, 128, 0, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* head dims 80, 96, 256 (64 and 128 above) */
    {F16, 1, 3, 1, 150, 170, 80, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 150, 150, 80, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 150, 150, 96, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 120, 150, 96, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 150, 150, 256, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 150, 120, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 1023, 1023, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* packed QKV (one allocation viewed three times), with and without GQA */
    {F16, 2, 4, 4, 300, 300, 64, 1, 1, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 2, 200, 200, 128, 0, 1, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 77, 77, 80, 0, 0, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* head_dim stride 2 on every tensor; lse stored [b, s, h] */
    {F16, 2, 4, 2, 100, 50, 128, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 60, 90, 96, 1, 0, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* k one element off inside one allocation: its rows take the copy path for unaligned rows */
    {BF16, 1, 4, 2, 77, 130, 64, 1, 1, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 50, 50, 128, 0, 0, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 2, 65, 65, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 90, 45, 128, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* an explicit scale, and negative ones (the scaled row maximum is then the raw minimum) */
    {F16, 1, 2, 2, 90, 90, 64, 0, 1, CONTIG, 0.3f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 70, 130, 128, 0, 1, CONTIG, -0.1f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* sliding windows: causal local attention on the defaults, windows on both sides and of the
     * diagonal key alone, packed decode over a paged varlen cache, a split decode step */
    {BF16, 1, 4, 2, 300, 300, 64, 1, 1, CONTIG, 0, 0, 0, 100, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 130, 257, 128, 1, 1, LSESTRIDED, 0, 0, 0, 37, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 130, 200, 64, 0, 1, CONTIG, 0, 0, 0, 31, 17, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 70, 90, 128, 1, 1, CONTIG, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 4, 8, 2, 1, 320, 128, 1, 1, CONTIG, 0, 1, 16, 100, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 2, 1, 5000, 128, 1, 1, CONTIG, 0, 0, 0, 1500, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* ragged queries (cu_seqlens_q, spare rows around the sequences'): causal prefill GQA, packed
     * prefill with seqlens_kv, an engine's mixed step over a paged varlen cache, a split decode step */
    {F16, 3, 4, 2, 70, 100, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 8, 2, 33, 160, 128, 1, 1, LSESTRIDED, 0, 1, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 4, 8, 2, 5, 320, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 8, 2, 2, 5000, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    /* attention sinks (gpt-oss's shapes: d = 64, 8 query heads per KV head): causal prefill, rows past a
     * short cache's diagonal, a split decode step of a windowed layer over a paged varlen cache, ragged
     * queries */
    {BF16, 1, 16, 2, 300, 300, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {BF16, 4, 16, 2, 1, 5120, 64, 1, 1, CONTIG, 0, 1, 16, 127, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 8, 2, 33, 160, 128, 1, 1, LSESTRIDED, 0, 1, 0, -1, -1, 1, 1, 0, 0, 0, 0, 0, 0},
    /* logit soft-capping (tanh.approx): Gemma 2's layers at head dim 256 (global and a local window),
     * a negative scale with fully masked rows, a split decode step with sinks */
    {BF16, 1, 8, 4, 300, 300, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 4, 300, 300, 256, 1, 1, CONTIG, 0, 0, 0, 100, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 1.5f, 0, 0, 0, 0, 0},
    {BF16, 4, 16, 2, 1, 5120, 64, 1, 1, CONTIG, 0, 1, 16, 127, -1, 0, 1, 2.0f, 0, 0, 0, 0, 0},
    /* packed keys (cu_seqlens_k, NaN rows around the sequences'): flash_attn_varlen_func's causal
     * prefill with ragged queries, padded queries with a strided head dim, a decode step (split) */
    {F16, 3, 4, 2, 70, 100, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0},
    {BF16, 3, 8, 2, 60, 300, 128, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0, 0, 0},
    {BF16, 2, 8, 2, 2, 5000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0},
    /* ALiBi (BLOOM's slopes): causal prefill at d = 128 (BLOOM's), not causal with a negative scale, a
     * split decode step with per-sequence slopes over a varlen cache */
    {BF16, 1, 16, 16, 300, 300, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 1, 0, 0, 0},
    {F16, 2, 4, 2, 100, 130, 64, 0, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 0, 0, 1, 0, 0, 0},
    {BF16, 4, 16, 2, 1, 5120, 64, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 2, 0, 0, 0},
    /* fp8 KV caches (vLLM's): causal GQA prefill with E4M3, fp16 with E5M2 not causal, a split decode step
     * over a paged varlen E4M3 cache (Llama-3-8B's heads) */
    {BF16, 2, 8, 2, 300, 300, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0},
    {F16, 2, 4, 2, 100, 130, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0},
    {BF16, 4, 32, 8, 1, 4096, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0},
    /* an additive bias (SDPA's attn_mask): an fp32 one of every sequence and head beside causal GQA (a row
     * masked whole), a bf16 one expanded over the batch with a window, a padding mask on a split decode step
     * over a paged varlen cache */
    {BF16, 2, 8, 2, 300, 300, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL},
    {BF16, 2, 4, 4, 130, 200, 64, 0, 1, LSESTRIDED, 0, 0, 0, 50, 10, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_DTYPE},
    {F16, 4, 32, 8, 1, 4096, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_PADDING},
};
#define NUM_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- two threads, two streams, one context ---- */

typedef struct worker {
  int id;
  const cuda_driver *driver;
  CUdevice handle;
} worker;

/* kv_split_keys on the GPU: sequence 0's decode step gives the same bits alone (k and v sized to its
 * 1500 keys) and in a batch of 4 (room for 4096 keys), its keys cut into parts of 512 either way, where
 * the library's own split would follow the batch; both right against the float64 reference. */
static void invariance_case(void) {
  enum { H = 32, HK = 8, D = 128 };
  static uint16_t rows[2][H * D];
  static const int32_t lengths[4] = {1500, 4096, 3000, 2222};
  int done = 0;
  for (int pass = 0; pass < 2; pass++) {
    test_case c;
    memset(&c, 0, sizeof c);
    c.dtype = DTYPE_BF16, c.batch = pass ? 4 : 1, c.heads = H, c.kv_heads = HK, c.seqlen_q = 1;
    c.seqlen_kv = pass ? 4096 : 1500, c.head_dim = D, c.varlen = 1, c.causal = 1;
    c.window_left = c.window_right = -1;
    case_tensors t;
    if (!case_tensors_create(&c, 99, &t)) break;
    host_tensor *fill[3] = {&t.q, &t.k, &t.v};
    for (int i = 0; i < 3; i++) {  /* each tensor its own stream: sequence 0 draws first in each */
      uint64_t state = 4242 + (uint64_t)i;
      for (int64_t e = 0; e < c.batch * fill[i]->strides[0]; e++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        core_store_from_f32(fill[i]->t.data, DTYPE_BF16, e, (float)((double)(state >> 11) / 9007199254740992.0 * 2 - 1));
      }
    }
    for (int b = 0; b < c.batch; b++) t.seqlens[b] = lengths[b];
    void *d_q = NULL, *d_k = NULL, *d_v = NULL, *d_o = NULL, *d_lens = NULL, *d_work = NULL;
    fj_status s = to_device(&t.q, &d_q);
    if (s == FJ_OK) s = to_device(&t.k, &d_k);
    if (s == FJ_OK) s = to_device(&t.v, &d_v);
    if (s == FJ_OK) s = to_device(&t.o, &d_o);
    size_t lens_bytes = (size_t)c.batch * sizeof *t.seqlens;
    if (s == FJ_OK) s = backend->memory_alloc(device, lens_bytes, &d_lens);
    if (s == FJ_OK) s = backend->copy_to_device(device, d_lens, t.seqlens, lens_bytes);
    if (s == FJ_OK) s = backend->synchronize(device, NULL);
    device_view dq, dk, dv, dout;
    make_device_view(&t.q, &t.q, d_q, &dq);
    make_device_view(&t.k, &t.k, d_k, &dk);
    make_device_view(&t.v, &t.v, d_v, &dv);
    make_device_view(&t.o, &t.o, d_o, &dout);
    DLTensor d_seqlens = on_device(t.seqlens_t, d_lens);
    fj_attention_args args;
    fj_attention_args_init(&args);
    args.q = &dq.t, args.k = &dk.t, args.v = &dv.t, args.o = &dout.t, args.causal = 1, args.seqlens_kv = &d_seqlens;
    args.kv_split_keys = 512;
    size_t work_bytes = 0;
    int64_t work_shape[1] = {0};
    DLTensor d_workspace = {.device = {kDLCUDA, 0}, .ndim = 1, .dtype = {kDLUInt, 8, 1}, .shape = work_shape};
    if (s == FJ_OK) s = fj_attention_workspace_size(context, &args, &work_bytes);
    if (s == FJ_OK && work_bytes > 0) s = backend->memory_alloc(device, work_bytes, &d_work);
    work_shape[0] = (int64_t)work_bytes;
    d_workspace.data = d_work;
    if (work_bytes > 0) args.workspace = &d_workspace;
    if (s == FJ_OK) s = fj_attention_forward(context, &args);
    if (s == FJ_OK) s = backend->synchronize(device, NULL);
    if (s == FJ_OK) s = backend->copy_to_host(device, t.o.allocation, d_o, t.o.allocation_bytes);
    case_result r;
    int right = s == FJ_OK && case_compare(&c, &t, 1e-3, &r) && case_result_ok(&r);
    if (s == FJ_OK) memcpy(rows[pass], t.o.t.data, sizeof rows[pass]);  /* sequence 0's rows come first */
    check(right, "kv_split_keys=512, batch %d: sequence 0 of %d keys in %zu bytes of parts, right (err_o %.2e) %s",
          (int)c.batch, lengths[0], work_bytes, s == FJ_OK ? r.err_o : 0.0, s == FJ_OK ? "" : fj_last_error());
    done += right;
    backend->memory_free(device, d_q);
    backend->memory_free(device, d_k);
    backend->memory_free(device, d_v);
    backend->memory_free(device, d_o);
    backend->memory_free(device, d_lens);
    backend->memory_free(device, d_work);
    case_tensors_free(&c, &t);
  }
  check(done == 2 && memcmp(rows[0], rows[1], sizeof rows[0]) == 0,
        "kv_split_keys=512: sequence 0's output is the same bits alone and in a batch of 4");
}

static void *worker_main(void *arg) {
  worker *w = arg;
  const cuda_driver *d = w->driver;
  char who[32];
  snprintf(who, sizeof who, "[thread %d] ", w->id);
  /* The stream is created in the primary context, the one the library works in. */
  CUcontext primary = NULL;
  CUstream stream = NULL;
  if (d->cuDevicePrimaryCtxRetain(&primary, w->handle) != CUDA_SUCCESS ||
      d->cuCtxPushCurrent_v2(primary) != CUDA_SUCCESS ||
      d->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) {
    check(0, "%scould not create a stream", who);
    return NULL;
  }
  /* Different shapes per thread, so that kernels are built while the other thread launches. */
  for (int i = w->id; i < NUM_CASES; i += 4)
    for (int split = 0; split < 2; split++)
      run_case(&cases[i], base_seed + 777u * (uint64_t)(i + 1) + (uint64_t)w->id, stream, who, split);
  d->cuStreamDestroy_v2(stream);
  CUcontext popped;
  d->cuCtxPopCurrent_v2(&popped);
  d->cuDevicePrimaryCtxRelease_v2(w->handle);
  return NULL;
}

int main(int argc, char **argv) {
  const char *why = "";
  const cuda_driver *driver = cuda_driver_get(&why);
  if (driver == NULL) {
    printf("skipped: no CUDA device: %s\n", why);
    return 77;
  }
  if (kernel_family_for_backend("cuda") == NULL) {
    printf("skipped: no NVPTX kernel family built in\n");
    return 77;
  }
  base_seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
  if (argc > 1) base_seed = strtoull(argv[1], NULL, 0);
  printf("seed %llu (rerun with: %s %llu)\n", (unsigned long long)base_seed, argv[0],
         (unsigned long long)base_seed);

  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cuda:0";
  options.disable_disk_cache = 1;  /* today's generator, never a stale binary */
  fj_status s = fj_context_create(&options, &context);
  check(s == FJ_OK, "fj_context_create(cuda:0): %s %s", fj_status_string(s), s == FJ_OK ? "" : fj_last_error());
  if (s != FJ_OK) {
    return check_summary();  /* the check above failed: exits 1 */
  }
  char name[256];
  fj_context_device_name(context, name, sizeof name);
  printf("device %s (%s)\n", name, runtime_target(context)->cpu);
  backend = runtime_backend(context);
  device = runtime_device(context);

  for (int i = 0; i < NUM_CASES; i++)
    for (int split = 0; split < 3; split++) run_case(&cases[i], base_seed + 1000003u * (uint64_t)i, NULL, "", split);
  invariance_case();

  worker workers[2];
  pthread_t threads[2];
  CUdevice handle = 0;
  driver->cuDeviceGet(&handle, 0);
  for (int t = 0; t < 2; t++) {
    workers[t] = (worker){.id = t, .driver = driver, .handle = handle};
    if (driver->cuStreamCreate == NULL || driver->cuStreamDestroy_v2 == NULL) {
      check(0, "the driver lacks cuStreamCreate/cuStreamDestroy_v2");
      break;
    }
    pthread_create(&threads[t], NULL, worker_main, &workers[t]);
  }
  if (driver->cuStreamCreate != NULL && driver->cuStreamDestroy_v2 != NULL)
    for (int t = 0; t < 2; t++) pthread_join(threads[t], NULL);

  fj_context_destroy(context);
  return check_summary();
}
