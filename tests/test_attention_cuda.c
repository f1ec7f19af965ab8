/* test_attention_cuda.c: the foundation correctness suite on cuda:0, through the public API with device
 * memory. Each case fills host tensors with fresh random values (the seed is printed), poisons o and
 * lse, copies everything to the device, runs the forward, copies o and lse back and compares them with
 * the float64 reference by relative norm error; it also checks that no byte of o's or lse's
 * allocations outside their elements changed and that fully masked rows are exactly 0 (lse -inf). The
 * cases cover fp16 and bf16, causal and not with seqlen_q != seqlen_kv both ways, GQA 1/2/4/8 and MQA,
 * lengths 1, 7, 1000, 1023, 4097, head dims 64/80/96/128/256, packed QKV, a strided head dim and a
 * strided lse. Then two threads share the context, each on its own non-blocking stream, at once.
 * Exits 77 (skipped) with the reason when no CUDA device is found or no NVPTX kernel family is built. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flashjit.h"
#include "backends/backend.h"
#include "backends/cuda/cuda_driver.h"
#include "core/dtype.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "core/reference.h"
#include "kernels/kernel_family.h"
#include "runtime/runtime.h"
#include "check.h"

typedef enum layout {
  LAYOUT_CONTIGUOUS,  /* row-major, NULL strides */
  LAYOUT_PACKED_QKV,  /* one allocation [b, s, h + 2 hk, d] viewed as q, k and v */
  LAYOUT_D_STRIDE2,   /* every tensor with stride 2 along head_dim */
  LAYOUT_LSE_STRIDED, /* lse stored [b, s, h] and viewed as [b, h, s] */
} layout;

static const char *layout_name(layout l) {
  switch (l) {
    case LAYOUT_CONTIGUOUS: return "contiguous";
    case LAYOUT_PACKED_QKV: return "packed-qkv";
    case LAYOUT_D_STRIDE2: return "d-stride-2";
    case LAYOUT_LSE_STRIDED: return "lse-strided";
  }
  return "?";
}

typedef struct test_case {
  dtype_id dtype;
  int64_t batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim;
  int causal, lse;
  layout layout;
} test_case;

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

/* Byte mask of the elements a view reaches inside its allocation. */
static unsigned char *element_mask(const host_tensor *t, int element_size) {
  unsigned char *mask = calloc(t->allocation_bytes, 1);
  if (mask == NULL) return NULL;
  int64_t shape[4] = {1, 1, 1, 1}, stride[4] = {0, 0, 0, 0};
  int off = 4 - t->t.ndim;
  for (int i = 0; i < t->t.ndim; i++) {
    shape[off + i] = t->t.shape[i];
    stride[off + i] = t->t.strides[i];
  }
  size_t base = (size_t)((const char *)t->t.data - (const char *)t->allocation);
  for (int64_t a = 0; a < shape[0]; a++)
    for (int64_t b = 0; b < shape[1]; b++)
      for (int64_t c = 0; c < shape[2]; c++)
        for (int64_t d = 0; d < shape[3]; d++) {
          int64_t e = a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3];
          memset(mask + base + (size_t)e * (size_t)element_size, 1, (size_t)element_size);
        }
  return mask;
}

static int only_elements_written(const host_tensor *t, const unsigned char *before, int element_size) {
  unsigned char *mask = element_mask(t, element_size);
  if (mask == NULL) return 0;
  const unsigned char *after = t->allocation;
  int ok = 1;
  for (size_t i = 0; i < t->allocation_bytes && ok; i++)
    if (!mask[i] && after[i] != before[i]) ok = 0;
  free(mask);
  return ok;
}

static int masked_rows_exact(const attention_problem *p) {
  if (!p->key.causal || p->seqlen_q <= p->seqlen_kv) return 1;
  int64_t masked = p->seqlen_q - p->seqlen_kv;
  for (int64_t b = 0; b < p->batch; b++)
    for (int64_t i = 0; i < masked; i++)
      for (int64_t h = 0; h < p->key.heads; h++) {
        for (int64_t d = 0; d < p->key.head_dim; d++) {
          int64_t e = b * p->o.stride[0] + i * p->o.stride[1] + h * p->o.stride[2] + d * p->o.stride[3];
          if (core_load_as_f32(p->o.data, (dtype_id)p->key.dtype, e) != 0.0f) return 0;
        }
        if (p->lse.data != NULL) {
          float value = ((const float *)(const void *)p->lse.data)[b * p->lse.stride[0] + h * p->lse.stride[1] +
                                                                   i * p->lse.stride[2]];
          if (!(isinf(value) && value < 0)) return 0;
        }
      }
  return 1;
}

static void describe(const test_case *c, char *buffer, size_t size) {
  snprintf(buffer, size, "%s b=%lld h=%lld hk=%lld sq=%lld skv=%lld d=%lld causal=%d lse=%d %s",
           core_dtype_name(c->dtype), (long long)c->batch, (long long)c->heads, (long long)c->kv_heads,
           (long long)c->seqlen_q, (long long)c->seqlen_kv, (long long)c->head_dim, c->causal, c->lse,
           layout_name(c->layout));
}

static fj_status to_device(const host_tensor *t, void **out) {
  *out = NULL;
  if (t->allocation == NULL) return FJ_OK;
  fj_status s = backend->memory_alloc(device, t->allocation_bytes, out);
  if (s == FJ_OK) s = backend->copy_to_device(device, *out, t->allocation, t->allocation_bytes);
  return s;
}

static void run_case(const test_case *c, uint64_t seed, void *stream, const char *who) {
  char name[256];
  describe(c, name, sizeof name);
  int64_t b = c->batch, h = c->heads, hk = c->kv_heads, sq = c->seqlen_q, skv = c->seqlen_kv, d = c->head_dim;
  int es = core_dtype_size(c->dtype);
  host_tensor qkv = {0}, q = {0}, k = {0}, v = {0}, o = {0}, lse = {0};
  void *d_qkv = NULL, *d_q = NULL, *d_k = NULL, *d_v = NULL, *d_o = NULL, *d_lse = NULL;
  unsigned char *o_before = NULL, *lse_before = NULL;
  double *ref_o = NULL, *ref_lse = NULL;
  int ok = 1;

  int64_t q_shape[4] = {b, sq, h, d}, kv_shape[4] = {b, skv, hk, d};
  if (c->layout == LAYOUT_PACKED_QKV) {
    int64_t all = h + 2 * hk;
    int64_t packed_shape[4] = {b, sq, all, d};
    int64_t strides[4] = {sq * all * d, all * d, d, 1};
    ok &= host_tensor_alloc(&qkv, c->dtype, 4, packed_shape, NULL) == 0;
    if (ok) {
      host_tensor_view(&q, &qkv, c->dtype, 4, q_shape, strides, 0);
      host_tensor_view(&k, &qkv, c->dtype, 4, kv_shape, strides, h * d);
      host_tensor_view(&v, &qkv, c->dtype, 4, kv_shape, strides, (h + hk) * d);
      host_tensor_fill_random(&qkv, seed);
    }
  } else {
    int stride2 = c->layout == LAYOUT_D_STRIDE2;
    int64_t qs[4] = {sq * h * d * 2, h * d * 2, d * 2, 2}, kvs[4] = {skv * hk * d * 2, hk * d * 2, d * 2, 2};
    ok &= host_tensor_alloc(&q, c->dtype, 4, q_shape, stride2 ? qs : NULL) == 0;
    ok &= host_tensor_alloc(&k, c->dtype, 4, kv_shape, stride2 ? kvs : NULL) == 0;
    ok &= host_tensor_alloc(&v, c->dtype, 4, kv_shape, stride2 ? kvs : NULL) == 0;
    if (ok) {
      host_tensor_fill_random(&q, seed);
      host_tensor_fill_random(&k, seed + 1);
      host_tensor_fill_random(&v, seed + 2);
    }
  }
  int64_t os[4] = {sq * h * d * 2, h * d * 2, d * 2, 2};
  ok &= host_tensor_alloc(&o, c->dtype, 4, q_shape, c->layout == LAYOUT_D_STRIDE2 ? os : NULL) == 0;
  if (c->lse) {
    int64_t lse_shape[3] = {b, h, sq}, lse_strides[3] = {sq * h, 1, h};
    ok &= host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, c->layout == LAYOUT_LSE_STRIDED ? lse_strides : NULL) == 0;
  }
  if (!ok) {
    check(0, "%s%s: host allocation failed", who, name);
    goto done;
  }
  host_tensor_poison(&o);
  if (c->lse) host_tensor_poison(&lse);
  o_before = malloc(o.allocation_bytes);
  if (o_before) memcpy(o_before, o.allocation, o.allocation_bytes);
  if (c->lse) {
    lse_before = malloc(lse.allocation_bytes);
    if (lse_before) memcpy(lse_before, lse.allocation, lse.allocation_bytes);
  }

  fj_status s = FJ_OK;
  if (c->layout == LAYOUT_PACKED_QKV) {
    s = to_device(&qkv, &d_qkv);
  } else {
    if (s == FJ_OK) s = to_device(&q, &d_q);
    if (s == FJ_OK) s = to_device(&k, &d_k);
    if (s == FJ_OK) s = to_device(&v, &d_v);
  }
  if (s == FJ_OK) s = to_device(&o, &d_o);
  if (s == FJ_OK && c->lse) s = to_device(&lse, &d_lse);
  /* A copy from pageable memory may return before its DMA lands; it runs on the legacy stream. */
  if (s == FJ_OK) s = backend->synchronize(device, NULL);
  if (s != FJ_OK) {
    check(0, "%s%s: device memory: %s", who, name, fj_last_error());
    goto done;
  }
  device_view dq, dk, dv, dout, dlse;
  make_device_view(&q, c->layout == LAYOUT_PACKED_QKV ? &qkv : &q, c->layout == LAYOUT_PACKED_QKV ? d_qkv : d_q, &dq);
  make_device_view(&k, c->layout == LAYOUT_PACKED_QKV ? &qkv : &k, c->layout == LAYOUT_PACKED_QKV ? d_qkv : d_k, &dk);
  make_device_view(&v, c->layout == LAYOUT_PACKED_QKV ? &qkv : &v, c->layout == LAYOUT_PACKED_QKV ? d_qkv : d_v, &dv);
  make_device_view(&o, &o, d_o, &dout);
  if (c->lse) make_device_view(&lse, &lse, d_lse, &dlse);

  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &dq.t;
  args.k = &dk.t;
  args.v = &dv.t;
  args.o = &dout.t;
  args.lse = c->lse ? &dlse.t : NULL;
  args.causal = c->causal;
  args.stream = stream;
  s = fj_attention_forward(context, &args);
  if (s == FJ_OK) s = backend->synchronize(device, stream);
  if (s == FJ_OK) s = backend->copy_to_host(device, o.allocation, d_o, o.allocation_bytes);
  if (s == FJ_OK && c->lse) s = backend->copy_to_host(device, lse.allocation, d_lse, lse.allocation_bytes);
  if (s != FJ_OK) {
    check(0, "%s%s: %s (%s)", who, name, fj_status_string(s), fj_last_error());
    goto done;
  }

  /* the host tensors now hold what the device computed */
  fj_attention_args host_args;
  fj_attention_args_init(&host_args);
  host_args.q = &q.t;
  host_args.k = &k.t;
  host_args.v = &v.t;
  host_args.o = &o.t;
  host_args.lse = c->lse ? &lse.t : NULL;
  host_args.causal = c->causal;
  attention_problem problem;
  s = core_validate_attention(&host_args, &problem);
  ref_o = malloc(sizeof(double) * (size_t)(b * sq * h * d) + 8);
  ref_lse = malloc(sizeof(double) * (size_t)(b * h * sq) + 8);
  if (s != FJ_OK || ref_o == NULL || ref_lse == NULL || core_reference_attention(&problem, ref_o, ref_lse) != FJ_OK) {
    check(0, "%s%s: reference failed (%s)", who, name, fj_last_error());
    goto done;
  }
  /* lse is fp32 whatever the inputs, but on a GPU it comes from ex2.approx and tensor-core sums */
  double tol = core_dtype_tolerance(c->dtype), tol_lse = 1e-3;
  double err_o = core_relative_error_o(&problem, ref_o);
  double err_lse = c->lse ? core_relative_error_lse(&problem, ref_lse) : 0.0;
  int masked_ok = masked_rows_exact(&problem);
  int outside_o = o_before ? only_elements_written(&o, o_before, es) : 0;
  int outside_lse = c->lse ? (lse_before ? only_elements_written(&lse, lse_before, 4) : 0) : 1;
  check(err_o <= tol && err_lse <= tol_lse && masked_ok && outside_o && outside_lse,
        "%s%s: err_o=%.2e err_lse=%.2e (tol %.0e, %.0e)%s%s%s", who, name, err_o, err_lse, tol, tol_lse,
        masked_ok ? "" : " MASKED ROW NOT EXACT (or NaN)", outside_o ? "" : " WROTE OUTSIDE o's ELEMENTS",
        outside_lse ? "" : " WROTE OUTSIDE lse's ELEMENTS");

done:
  free(ref_o);
  free(ref_lse);
  free(o_before);
  free(lse_before);
  backend->memory_free(device, d_qkv);
  backend->memory_free(device, d_q);
  backend->memory_free(device, d_k);
  backend->memory_free(device, d_v);
  backend->memory_free(device, d_o);
  backend->memory_free(device, d_lse);
  host_tensor_free(&qkv);
  if (c->layout != LAYOUT_PACKED_QKV) {
    host_tensor_free(&q);
    host_tensor_free(&k);
    host_tensor_free(&v);
  }
  host_tensor_free(&o);
  host_tensor_free(&lse);
}

#define F16 DTYPE_F16
#define BF16 DTYPE_BF16
#define CONTIG LAYOUT_CONTIGUOUS
#define PACKED LAYOUT_PACKED_QKV
#define DSTRIDE2 LAYOUT_D_STRIDE2
#define LSESTRIDED LAYOUT_LSE_STRIDED

/* dtype, batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim, causal, lse, layout */
static const test_case cases[] = {
    /* both dtypes, causal and not, GQA 2, batch > 1, a length no tile divides */
    {F16, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG},
    {F16, 2, 4, 2, 257, 257, 64, 1, 1, CONTIG},
    {BF16, 2, 4, 2, 257, 257, 128, 0, 1, CONTIG},
    {BF16, 2, 4, 2, 257, 257, 128, 1, 0, CONTIG},
    /* GQA ratios 1, 2, 4, 8 and MQA */
    {F16, 1, 8, 8, 130, 130, 64, 0, 1, CONTIG},
    {BF16, 1, 8, 4, 130, 130, 128, 1, 1, CONTIG},
    {F16, 1, 8, 2, 130, 200, 64, 1, 1, CONTIG},
    {BF16, 1, 8, 1, 130, 130, 64, 1, 1, CONTIG},
    {F16, 2, 16, 2, 100, 300, 96, 0, 1, CONTIG},
    {BF16, 1, 4, 1, 66, 66, 128, 0, 0, CONTIG},
    /* seqlen_q != seqlen_kv both ways; causal with sq > skv leaves rows with no visible key */
    {F16, 1, 2, 2, 7, 1000, 64, 0, 1, CONTIG},
    {F16, 1, 2, 2, 7, 1000, 64, 1, 1, CONTIG},
    {BF16, 1, 2, 1, 1000, 7, 64, 0, 1, CONTIG},
    {BF16, 1, 2, 1, 1000, 7, 64, 1, 1, CONTIG},
    {F16, 2, 2, 2, 1000, 7, 128, 1, 1, CONTIG},
    {BF16, 1, 2, 2, 33, 17, 80, 1, 0, CONTIG},
    /* no keys at all: every row is fully masked (zeros, lse -inf) */
    {F16, 1, 2, 2, 65, 0, 64, 0, 1, CONTIG},
    {BF16, 1, 2, 1, 65, 0, 128, 1, 1, CONTIG},
    /* lengths 1, 7, 1000, 1023, 4097 */
    {F16, 1, 2, 2, 1, 1, 64, 0, 1, CONTIG},
    {BF16, 1, 2, 2, 1, 1, 64, 1, 1, CONTIG},
    {BF16, 3, 2, 1, 7, 7, 64, 1, 1, CONTIG},
    {F16, 1, 4, 4, 1, 4097, 128, 1, 1, CONTIG},
    {BF16, 1, 2, 1, 1023, 1023, 128, 1, 1, CONTIG},
    {F16, 1, 2, 2, 1000, 1000, 96, 0, 1, CONTIG},
    {F16, 1, 1, 1, 4097, 4097, 64, 1, 1, CONTIG},
    {BF16, 1, 1, 1, 1023, 4097, 128, 0, 0, CONTIG},
    /* head dims 80, 96, 256 (64 and 128 above) */
    {F16, 1, 3, 1, 150, 170, 80, 1, 1, CONTIG},
    {BF16, 1, 2, 2, 150, 150, 80, 0, 1, CONTIG},
    {BF16, 1, 2, 2, 150, 150, 96, 0, 1, CONTIG},
    {F16, 1, 2, 2, 120, 150, 96, 1, 0, CONTIG},
    {F16, 1, 2, 1, 150, 150, 256, 0, 1, CONTIG},
    {BF16, 1, 2, 2, 150, 120, 256, 1, 1, CONTIG},
    {F16, 1, 2, 2, 1023, 1023, 256, 1, 1, CONTIG},
    /* packed QKV (one allocation viewed three times), with and without GQA */
    {F16, 2, 4, 4, 300, 300, 64, 1, 1, PACKED},
    {BF16, 1, 8, 2, 200, 200, 128, 0, 1, PACKED},
    {F16, 1, 2, 2, 77, 77, 80, 0, 0, PACKED},
    /* head_dim stride 2 on every tensor; lse stored [b, s, h] */
    {F16, 2, 4, 2, 100, 50, 128, 1, 1, DSTRIDE2},
    {BF16, 1, 2, 1, 60, 90, 96, 1, 0, DSTRIDE2},
    {F16, 2, 4, 2, 65, 65, 64, 1, 1, LSESTRIDED},
    {BF16, 1, 2, 1, 90, 45, 128, 1, 1, LSESTRIDED},
};
#define NUM_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- two threads, two streams, one context ---- */

typedef struct worker {
  int id;
  const cuda_driver *driver;
  CUdevice handle;
} worker;

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
    run_case(&cases[i], base_seed + 777u * (uint64_t)(i + 1) + (uint64_t)w->id, stream, who);
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

  for (int i = 0; i < NUM_CASES; i++) run_case(&cases[i], base_seed + 1000003u * (uint64_t)i, NULL, "");

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
