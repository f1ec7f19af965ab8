/* test_attention_cpu.c: the correctness suite of the CPU forward through the public API. Every case
 * uses fresh random inputs (the seed is printed), poisons o and lse first, and compares against the
 * float64 reference by relative norm error; it also checks that nothing outside o's and lse's elements
 * is written and that the inputs are untouched. The cases cover every dtype, causal and not, GQA and
 * MQA, unequal sequence lengths both ways (fully masked rows), odd lengths up to 4097, head dims 8 to
 * 256, packed QKV and strided head dims, with and without lse; not the full cross product, which
 * would take far too long on two cores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flashjit.h"
#include "core/dtype.h"
#include "core/hash.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "core/reference.h"
#include "check.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

typedef enum layout {
  LAYOUT_CONTIGUOUS,  /* row-major, NULL strides */
  LAYOUT_PACKED_QKV,  /* one allocation [b, s, h + 2 hk, d] viewed as q, k and v */
  LAYOUT_D_STRIDE2,   /* every tensor with stride 2 along head_dim (and o too) */
  LAYOUT_LSE_STRIDED, /* contiguous q/k/v/o, lse stored [b, s, h] and viewed as [b, h, s] */
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
  float scale;  /* 0: the default 1/sqrt(d) */
} test_case;

static uint64_t base_seed;
static int case_counter;

static uint64_t allocation_hash(const host_tensor *t) {
  return core_hash64(t->allocation, t->allocation_bytes);
}

/* Byte mask of the elements a view reaches inside its allocation, to tell writes to o's elements from
 * writes anywhere else in the same allocation. */
static unsigned char *element_mask(const host_tensor *t, int element_size) {
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

static void describe(const test_case *c, char *buffer, size_t size) {
  snprintf(buffer, size, "%s b=%lld h=%lld hk=%lld sq=%lld skv=%lld d=%lld causal=%d lse=%d %s%s",
           core_dtype_name(c->dtype), (long long)c->batch, (long long)c->heads, (long long)c->kv_heads,
           (long long)c->seqlen_q, (long long)c->seqlen_kv, (long long)c->head_dim, c->causal, c->lse,
           layout_name(c->layout), c->scale != 0.0f ? " scale=custom" : "");
}

/* Rows that see no key under the bottom-right causal mask must be exactly 0 and have lse -inf. */
static int masked_rows_exact(const attention_problem *p, long long *bad_row) {
  if (!p->key.causal || p->seqlen_q <= p->seqlen_kv) return 1;
  int64_t masked = p->seqlen_q - p->seqlen_kv;  /* rows i with i + skv - sq < 0 */
  for (int64_t b = 0; b < p->batch; b++)
    for (int64_t i = 0; i < masked; i++)
      for (int64_t h = 0; h < p->key.heads; h++) {
        for (int64_t d = 0; d < p->key.head_dim; d++) {
          int64_t e = b * p->o.stride[0] + i * p->o.stride[1] + h * p->o.stride[2] + d * p->o.stride[3];
          float value = core_load_as_f32(p->o.data, (dtype_id)p->key.dtype, e);
          if (value != 0.0f || isnan(value)) {
            *bad_row = (long long)i;
            return 0;
          }
        }
        if (p->lse.data != NULL) {
          int64_t e = b * p->lse.stride[0] + h * p->lse.stride[1] + i * p->lse.stride[2];
          float value = ((const float *)(const void *)p->lse.data)[e];
          if (!(isinf(value) && value < 0)) {
            *bad_row = (long long)i;
            return 0;
          }
        }
      }
  return 1;
}

static void run_case(fj_context *context, const test_case *c) {
  char name[256];
  describe(c, name, sizeof name);
  uint64_t seed = base_seed + (uint64_t)(case_counter++) * 1000003u;
  int64_t b = c->batch, h = c->heads, hk = c->kv_heads, sq = c->seqlen_q, skv = c->seqlen_kv,
          d = c->head_dim;
  int es = core_dtype_size(c->dtype);
  host_tensor qkv = {0}, q = {0}, k = {0}, v = {0}, o = {0}, lse = {0};
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
  {
    int64_t os[4] = {sq * h * d * 2, h * d * 2, d * 2, 2};
    ok &= host_tensor_alloc(&o, c->dtype, 4, q_shape, c->layout == LAYOUT_D_STRIDE2 ? os : NULL) == 0;
  }
  if (c->lse) {
    int64_t lse_shape[3] = {b, h, sq};
    int64_t lse_strides[3] = {sq * h, 1, h};  /* memory [b, s, h] */
    ok &= host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape,
                            c->layout == LAYOUT_LSE_STRIDED ? lse_strides : NULL) == 0;
  }
  if (!ok) {
    check(0, "%s: allocation failed", name);
    goto done;
  }
  host_tensor_poison(&o);
  if (c->lse) host_tensor_poison(&lse);
  unsigned char *o_before = malloc(o.allocation_bytes);
  unsigned char *lse_before = c->lse ? malloc(lse.allocation_bytes) : NULL;
  if (o_before) memcpy(o_before, o.allocation, o.allocation_bytes);
  if (lse_before) memcpy(lse_before, lse.allocation, lse.allocation_bytes);
  const host_tensor *inputs = c->layout == LAYOUT_PACKED_QKV ? &qkv : NULL;
  uint64_t in_hash = inputs ? allocation_hash(inputs)
                            : allocation_hash(&q) ^ (allocation_hash(&k) * 3) ^ (allocation_hash(&v) * 7);

  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.lse = c->lse ? &lse.t : NULL;
  args.causal = c->causal;
  args.softmax_scale = c->scale;

  double start = now_ms();
  fj_status status = fj_attention_forward(context, &args);
  double ms = now_ms() - start;
  if (status != FJ_OK) {
    check(0, "%s: fj_attention_forward = %s (%s)", name, fj_status_string(status), fj_last_error());
    free(o_before);
    free(lse_before);
    goto done;
  }

  attention_problem problem;
  status = core_validate_attention(&args, &problem);
  double *ref_o = malloc(sizeof(double) * (size_t)(b * sq * h * d) + 8);
  double *ref_lse = malloc(sizeof(double) * (size_t)(b * h * sq) + 8);
  if (status != FJ_OK || ref_o == NULL || ref_lse == NULL ||
      core_reference_attention(&problem, ref_o, ref_lse) != FJ_OK) {
    check(0, "%s: reference failed (%s)", name, fj_last_error());
  } else {
    double tol = core_dtype_tolerance(c->dtype);
    double err_o = core_relative_error_o(&problem, ref_o);
    double err_lse = c->lse ? core_relative_error_lse(&problem, ref_lse) : 0.0;
    /* lse is fp32 whatever the inputs, and the reference reads the same rounded inputs, so its
     * error stays at fp32's level even for fp16/bf16. */
    double tol_lse = core_dtype_tolerance(DTYPE_F32);
    long long bad_row = -1;
    int masked_ok = masked_rows_exact(&problem, &bad_row);
    int outside_o = o_before ? only_elements_written(&o, o_before, es) : 0;
    int outside_lse = c->lse ? (lse_before ? only_elements_written(&lse, lse_before, 4) : 0) : 1;
    uint64_t in_after = inputs ? allocation_hash(inputs)
                               : allocation_hash(&q) ^ (allocation_hash(&k) * 3) ^ (allocation_hash(&v) * 7);
    check(err_o <= tol && err_lse <= tol_lse && masked_ok && outside_o && outside_lse &&
              in_after == in_hash,
          "%s: err_o=%.2e err_lse=%.2e (tol %.0e, %.0e)%s%s%s%s [%.1f ms]", name, err_o, err_lse, tol, tol_lse,
          masked_ok ? "" : " MASKED ROW NOT EXACT",
          outside_o ? "" : " WROTE OUTSIDE o's ELEMENTS", outside_lse ? "" : " WROTE OUTSIDE lse's ELEMENTS",
          in_after == in_hash ? "" : " INPUTS CHANGED", ms);
    if (!masked_ok) printf("     first bad fully-masked row: %lld\n", bad_row);
  }
  free(ref_o);
  free(ref_lse);
  free(o_before);
  free(lse_before);
done:
  host_tensor_free(&qkv);
  if (c->layout != LAYOUT_PACKED_QKV) {
    host_tensor_free(&q);
    host_tensor_free(&k);
    host_tensor_free(&v);
  }
  host_tensor_free(&o);
  host_tensor_free(&lse);
}

#define F32 DTYPE_F32
#define F16 DTYPE_F16
#define BF16 DTYPE_BF16
#define CONTIG LAYOUT_CONTIGUOUS
#define PACKED LAYOUT_PACKED_QKV
#define DSTRIDE2 LAYOUT_D_STRIDE2
#define LSESTRIDED LAYOUT_LSE_STRIDED

/* dtype, batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim, causal, lse, layout, scale */
static const test_case cases[] = {
    /* every dtype, causal and not, GQA 2, batch > 1, a length no tile divides */
    {F32, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG, 0},
    {F32, 2, 4, 2, 257, 257, 64, 1, 1, CONTIG, 0},
    {F16, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG, 0},
    {F16, 2, 4, 2, 257, 257, 64, 1, 1, CONTIG, 0},
    {BF16, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG, 0},
    {BF16, 2, 4, 2, 257, 257, 64, 1, 0, CONTIG, 0},
    /* GQA ratios 1, 2, 4, 8 and MQA */
    {F16, 1, 8, 8, 130, 130, 64, 0, 1, CONTIG, 0},
    {BF16, 1, 8, 4, 130, 130, 128, 1, 1, CONTIG, 0},
    {F32, 1, 8, 2, 130, 200, 64, 1, 1, CONTIG, 0},
    {F16, 1, 8, 1, 130, 130, 64, 1, 1, CONTIG, 0},
    {BF16, 2, 4, 1, 100, 300, 96, 0, 1, CONTIG, 0},
    {F32, 1, 4, 1, 66, 66, 128, 0, 0, CONTIG, 0},
    /* seqlen_q != seqlen_kv both ways; causal with sq > skv leaves rows with no visible key */
    {F16, 1, 2, 2, 7, 1000, 64, 0, 1, CONTIG, 0},
    {F16, 1, 2, 2, 7, 1000, 64, 1, 1, CONTIG, 0},
    {F32, 1, 2, 1, 1000, 7, 64, 0, 1, CONTIG, 0},
    {F32, 1, 2, 1, 1000, 7, 64, 1, 1, CONTIG, 0},
    {BF16, 2, 2, 2, 1000, 7, 128, 1, 1, CONTIG, 0},
    {BF16, 1, 2, 2, 33, 17, 80, 1, 0, CONTIG, 0},
    /* lengths 1, 7, 1023, 4097 */
    {F32, 1, 2, 2, 1, 1, 64, 0, 1, CONTIG, 0},
    {F16, 1, 2, 2, 1, 1, 64, 1, 1, CONTIG, 0},
    {BF16, 3, 2, 1, 7, 7, 64, 1, 1, CONTIG, 0},
    {F32, 1, 4, 4, 1, 4097, 128, 1, 1, CONTIG, 0},
    {BF16, 1, 2, 1, 1023, 1023, 128, 1, 1, CONTIG, 0},
    {F16, 1, 1, 1, 4097, 4097, 64, 1, 1, CONTIG, 0},
    {F32, 1, 1, 1, 1023, 4097, 64, 0, 0, CONTIG, 0},
    /* head dims 8, 80, 96, 256 (64 and 128 above) */
    {F32, 2, 2, 1, 150, 150, 8, 0, 1, CONTIG, 0},
    {F16, 1, 2, 2, 150, 150, 8, 1, 1, CONTIG, 0},
    {F16, 1, 3, 1, 150, 170, 80, 1, 1, CONTIG, 0},
    {F32, 1, 2, 2, 150, 150, 80, 0, 1, CONTIG, 0},
    {BF16, 1, 2, 2, 150, 150, 96, 0, 1, CONTIG, 0},
    {F32, 1, 2, 2, 120, 150, 96, 1, 0, CONTIG, 0},
    {F16, 1, 2, 1, 150, 150, 256, 0, 1, CONTIG, 0},
    {BF16, 1, 2, 2, 150, 120, 256, 1, 1, CONTIG, 0},
    {F32, 1, 2, 2, 129, 129, 256, 1, 1, CONTIG, 0},
    /* packed QKV (one allocation viewed three times), with and without GQA */
    {F16, 2, 4, 4, 300, 300, 64, 1, 1, PACKED, 0},
    {BF16, 1, 8, 2, 200, 200, 128, 0, 1, PACKED, 0},
    {F32, 1, 2, 2, 77, 77, 80, 0, 0, PACKED, 0},
    /* head_dim stride 2 on every tensor */
    {F32, 1, 2, 2, 100, 100, 64, 0, 1, DSTRIDE2, 0},
    {F16, 2, 4, 2, 100, 50, 128, 1, 1, DSTRIDE2, 0},
    {BF16, 1, 2, 1, 60, 90, 96, 1, 0, DSTRIDE2, 0},
    /* lse stored [b, s, h]; an explicit softmax scale */
    {F32, 2, 4, 2, 65, 65, 64, 1, 1, LSESTRIDED, 0},
    {F16, 1, 2, 2, 90, 90, 64, 0, 1, CONTIG, 0.3f},
    {BF16, 1, 2, 1, 90, 45, 128, 1, 1, LSESTRIDED, 1.5f},
};

/* seqlen_kv = 0 gives o = 0 and lse = -inf without a kernel; seqlen_q = 0 writes nothing. */
static void run_empty_cases(fj_context *context) {
  for (int which = 0; which < 2; which++) {
    int64_t sq = which == 0 ? 5 : 0, skv = which == 0 ? 0 : 5;
    int64_t q_shape[4] = {2, sq, 2, 64}, kv_shape[4] = {2, skv, 2, 64}, lse_shape[3] = {2, 2, sq};
    host_tensor q = {0}, k = {0}, v = {0}, o = {0}, lse = {0};
    int ok = host_tensor_alloc(&q, DTYPE_F16, 4, q_shape, NULL) == 0 &&
             host_tensor_alloc(&k, DTYPE_F16, 4, kv_shape, NULL) == 0 &&
             host_tensor_alloc(&v, DTYPE_F16, 4, kv_shape, NULL) == 0 &&
             host_tensor_alloc(&o, DTYPE_F16, 4, q_shape, NULL) == 0 &&
             host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL) == 0;
    if (ok) {
      host_tensor_fill_random(&q, base_seed + 11);
      host_tensor_fill_random(&k, base_seed + 12);
      host_tensor_fill_random(&v, base_seed + 13);
      host_tensor_poison(&o);
      host_tensor_poison(&lse);
      fj_attention_args args;
      fj_attention_args_init(&args);
      args.q = &q.t;
      args.k = &k.t;
      args.v = &v.t;
      args.o = &o.t;
      args.lse = &lse.t;
      args.causal = which == 0;
      fj_status status = fj_attention_forward(context, &args);
      int values_ok = 1;
      for (int64_t i = 0; i < 2 * sq * 2 * 64; i++)
        if (core_load_as_f32(o.t.data, DTYPE_F16, i) != 0.0f) values_ok = 0;
      for (int64_t i = 0; i < 2 * 2 * sq; i++) {
        float x = ((float *)lse.t.data)[i];
        if (!(isinf(x) && x < 0)) values_ok = 0;
      }
      check(status == FJ_OK && values_ok, "fp16 sq=%lld skv=%lld: %s, %s", (long long)sq, (long long)skv,
            fj_status_string(status),
            sq == 0 ? "nothing to write" : (values_ok ? "o = 0, lse = -inf" : "WRONG o or lse"));
    } else {
      check(0, "empty case: allocation failed");
    }
    host_tensor_free(&q);
    host_tensor_free(&k);
    host_tensor_free(&v);
    host_tensor_free(&o);
    host_tensor_free(&lse);
  }
}

int main(int argc, char **argv) {
  base_seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
  if (argc > 1) base_seed = strtoull(argv[1], NULL, 0);
  printf("seed %llu (rerun with: %s %llu)\n", (unsigned long long)base_seed, argv[0],
         (unsigned long long)base_seed);

  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  /* Always the JIT, never a stale binary from a cache folder: this suite tests today's generator. */
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  fj_status status = fj_context_create(&options, &context);
  check(status == FJ_OK, "fj_context_create(cpu) = %s %s", fj_status_string(status), fj_last_error());
  if (status != FJ_OK) {
    return check_summary();  /* the check above failed: exits 1 */
  }
  char device[256];
  fj_context_device_name(context, device, sizeof device);
  printf("device: %s\n", device);

  double start = now_ms();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(context, &cases[i]);
  /* A second call of an already-built kernel with new inputs. */
  run_case(context, &cases[0]);
  run_case(context, &cases[3]);
  run_empty_cases(context);
  printf("total %.1f s\n", (now_ms() - start) / 1e3);

  fj_context_destroy(context);
  return check_summary();
}
