/* test_reference.c: the float64 reference every kernel is judged by, judged in turn against answers
 * worked out by hand: a two-key softmax, uniform keys (the output is the mean of the visible values),
 * the bottom-right causal mask in all three shapes (rows with no key give exact zeros and -inf), the
 * GQA head mapping, strided inputs, and the relative-error functions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "flashjit.h"
#include "core/error.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "core/reference.h"
#include "check.h"

/* Row-major q, k, v, o and lse tensors for one problem, and the reference's outputs. */
typedef struct setup {
  host_tensor q, k, v, o, lse;
  fj_attention_args args;
  attention_problem p;
  double *ref_o, *ref_lse;
  int64_t b, sq, skv, h, hk, d;
} setup;

static int setup_init(setup *s, dtype_id dtype, int64_t b, int64_t sq, int64_t skv, int64_t h, int64_t hk,
                      int64_t d, int causal, float scale) {
  memset(s, 0, sizeof *s);
  s->b = b, s->sq = sq, s->skv = skv, s->h = h, s->hk = hk, s->d = d;
  int64_t qs[4] = {b, sq, h, d}, ks[4] = {b, skv, hk, d}, ls[3] = {b, h, sq};
  if (host_tensor_alloc(&s->q, dtype, 4, qs, NULL) || host_tensor_alloc(&s->k, dtype, 4, ks, NULL) ||
      host_tensor_alloc(&s->v, dtype, 4, ks, NULL) || host_tensor_alloc(&s->o, dtype, 4, qs, NULL) ||
      host_tensor_alloc(&s->lse, DTYPE_F32, 3, ls, NULL))
    return -1;
  host_tensor_fill_random(&s->q, 11);
  host_tensor_fill_random(&s->k, 12);
  host_tensor_fill_random(&s->v, 13);
  host_tensor_poison(&s->o);
  host_tensor_poison(&s->lse);
  memset(&s->args, 0, sizeof s->args);
  s->args.struct_size = sizeof s->args;
  s->args.q = &s->q.t;
  s->args.k = &s->k.t;
  s->args.v = &s->v.t;
  s->args.o = &s->o.t;
  s->args.lse = &s->lse.t;
  s->args.causal = causal;
  s->args.softmax_scale = scale;
  s->ref_o = calloc((size_t)(b * sq * h * d) + 1, sizeof(double));
  s->ref_lse = calloc((size_t)(b * h * sq) + 1, sizeof(double));
  return 0;
}

static fj_status setup_run(setup *s) {
  fj_status st = core_validate_attention(&s->args, &s->p);
  if (st != FJ_OK) {
    printf("validation failed: %s\n", fj_last_error());
    return st;
  }
  return core_reference_attention(&s->p, s->ref_o, s->ref_lse);
}

static void setup_free(setup *s) {
  host_tensor_free(&s->q);
  host_tensor_free(&s->k);
  host_tensor_free(&s->v);
  host_tensor_free(&s->o);
  host_tensor_free(&s->lse);
  free(s->ref_o);
  free(s->ref_lse);
}

static void set4(host_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d, float value) {
  dtype_id dtype;
  core_dtype_from_dlpack(t->t.dtype, &dtype);
  core_store_from_f32(t->t.data, dtype, a * t->strides[0] + b * t->strides[1] + c * t->strides[2] + d * t->strides[3],
                      value);
}

static float get4(const host_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) {
  dtype_id dtype;
  core_dtype_from_dlpack(t->t.dtype, &dtype);
  return core_load_as_f32(t->t.data, dtype,
                          a * t->strides[0] + b * t->strides[1] + c * t->strides[2] + d * t->strides[3]);
}

static double ref_o_at(const setup *s, int64_t b, int64_t i, int64_t h, int64_t d) {
  return s->ref_o[((b * s->sq + i) * s->h + h) * s->d + d];
}

static double ref_lse_at(const setup *s, int64_t b, int64_t h, int64_t i) {
  return s->ref_lse[(b * s->h + h) * s->sq + i];
}

/* Makes every key row equal, so every visible key gets the same weight. */
static void uniform_keys(setup *s) {
  for (int64_t b = 0; b < s->b; b++)
    for (int64_t j = 0; j < s->skv; j++)
      for (int64_t h = 0; h < s->hk; h++)
        for (int64_t d = 0; d < s->d; d++) set4(&s->k, b, j, h, d, get4(&s->k, 0, 0, 0, d));
}

/* Largest |ref - mean of v over keys [0, visible)| over every element of a (b, h, i) row. */
static double mean_error(const setup *s, int64_t b, int64_t i, int64_t h, int64_t visible) {
  double worst = 0;
  int64_t hk = h / (s->h / s->hk);
  for (int64_t d = 0; d < s->d; d++) {
    double mean = 0;
    for (int64_t j = 0; j < visible; j++) mean += get4(&s->v, b, j, hk, d);
    mean /= (double)visible;
    double e = fabs(ref_o_at(s, b, i, h, d) - mean);
    if (e > worst) worst = e;
  }
  return worst;
}

static void test_two_keys(void) {
  /* one query, two keys, scale 1: scores 0 and ln 3 -> weights 1/4 and 3/4 */
  setup s;
  setup_init(&s, DTYPE_F32, 1, 1, 2, 1, 1, 8, 0, 1.0f);
  memset(s.q.t.data, 0, 8 * 4);
  memset(s.k.t.data, 0, 16 * 4);
  float ln3 = logf(3.0f);
  set4(&s.q, 0, 0, 0, 0, 1.0f);
  set4(&s.k, 0, 1, 0, 0, ln3);
  for (int d = 0; d < 8; d++) {
    set4(&s.v, 0, 0, 0, d, 1.0f + (float)d);
    set4(&s.v, 0, 1, 0, d, 5.0f - (float)d);
  }
  CHECK(setup_run(&s) == FJ_OK, "reference runs on 1x2");
  double w1 = exp((double)ln3); /* 3, up to ln 3's rounding to fp32 */
  double p0 = 1.0 / (1.0 + w1), p1 = w1 / (1.0 + w1);
  double worst = 0;
  for (int d = 0; d < 8; d++) {
    double want = p0 * (1.0 + d) + p1 * (5.0 - d);
    if (fabs(ref_o_at(&s, 0, 0, 0, d) - want) > worst) worst = fabs(ref_o_at(&s, 0, 0, 0, d) - want);
  }
  CHECK(worst < 1e-12, "o = 1/4 v0 + 3/4 v1 (max error %.2e; o[0] = %.6f, want 4)", worst, ref_o_at(&s, 0, 0, 0, 0));
  CHECK(fabs(ref_lse_at(&s, 0, 0, 0) - log(1.0 + w1)) < 1e-12, "lse = ln 4 (%.9f)", ref_lse_at(&s, 0, 0, 0));
  /* scale 0 means 1/sqrt(8): the scores become 0 and ln3/sqrt(8) */
  s.args.softmax_scale = 0;
  CHECK(setup_run(&s) == FJ_OK, "reference runs with the default scale");
  double sc = 1.0 / sqrt(8.0), e1 = exp(sc * (double)ln3);
  CHECK(fabs(ref_lse_at(&s, 0, 0, 0) - log(1.0 + e1)) < 1e-7 &&
            fabs(ref_o_at(&s, 0, 0, 0, 0) - (1.0 + 5.0 * e1) / (1.0 + e1)) < 1e-7,
        "default scale 1/sqrt(head_dim): lse %.9f, o[0] %.9f", ref_lse_at(&s, 0, 0, 0), ref_o_at(&s, 0, 0, 0, 0));
  /* large scores must not overflow: the max is subtracted */
  s.args.softmax_scale = 1000.0f;
  CHECK(setup_run(&s) == FJ_OK && isfinite(ref_o_at(&s, 0, 0, 0, 0)) && fabs(ref_o_at(&s, 0, 0, 0, 0) - 5.0) < 1e-9 &&
            fabs(ref_lse_at(&s, 0, 0, 0) - 1000.0 * (double)ln3) < 1e-9,
        "scale 1000: o = v1 exactly enough, lse = 1000 ln3 (no overflow)");
  setup_free(&s);
}

static void test_uniform(void) {
  setup s;
  setup_init(&s, DTYPE_F32, 2, 5, 37, 3, 3, 16, 0, 0);
  uniform_keys(&s);
  CHECK(setup_run(&s) == FJ_OK, "reference runs on uniform keys");
  double worst = 0;
  for (int64_t b = 0; b < 2; b++)
    for (int64_t h = 0; h < 3; h++)
      for (int64_t i = 0; i < 5; i++) worst = fmax(worst, mean_error(&s, b, i, h, 37));
  CHECK(worst < 1e-12, "uniform keys: o is the mean of v (max error %.2e)", worst);
  setup_free(&s);
}

/* Causal with uniform keys: row i is the mean of v[0 .. i + skv - sq]; rows seeing nothing are 0. */
static void check_causal(int64_t sq, int64_t skv) {
  setup s;
  setup_init(&s, DTYPE_F32, 1, sq, skv, 2, 2, 8, 1, 0);
  uniform_keys(&s);
  if (setup_run(&s) != FJ_OK) {
    CHECK(0, "causal sq=%lld skv=%lld runs", (long long)sq, (long long)skv);
    setup_free(&s);
    return;
  }
  double worst = 0;
  int masked_ok = 1, masked_rows = 0;
  for (int64_t h = 0; h < 2; h++)
    for (int64_t i = 0; i < sq; i++) {
      int64_t visible = i + skv - sq + 1;
      if (visible > skv) visible = skv;
      if (visible <= 0) {
        masked_rows++;
        for (int64_t d = 0; d < 8; d++)
          if (ref_o_at(&s, 0, i, h, d) != 0.0 || signbit(ref_o_at(&s, 0, i, h, d))) masked_ok = 0;
        if (!(isinf(ref_lse_at(&s, 0, h, i)) && ref_lse_at(&s, 0, h, i) < 0)) masked_ok = 0;
      } else {
        worst = fmax(worst, mean_error(&s, 0, i, h, visible));
        if (!isfinite(ref_lse_at(&s, 0, h, i))) masked_ok = 0;
      }
    }
  CHECK(worst < 1e-12, "causal sq=%lld skv=%lld: row i averages keys 0..i+skv-sq (max error %.2e)",
        (long long)sq, (long long)skv, worst);
  CHECK(masked_ok, "causal sq=%lld skv=%lld: %d fully masked rows are exact +0 with lse -inf, others finite",
        (long long)sq, (long long)skv, masked_rows);
  setup_free(&s);
}

static void test_causal(void) {
  /* sq == skv: the first row sees only key 0, so it is v[0] itself, and its lse is its one score */
  setup s;
  setup_init(&s, DTYPE_F32, 1, 6, 6, 1, 1, 8, 1, 0.5f);
  CHECK(setup_run(&s) == FJ_OK, "causal 6x6 runs");
  double worst = 0, score = 0;
  for (int d = 0; d < 8; d++) {
    worst = fmax(worst, fabs(ref_o_at(&s, 0, 0, 0, d) - get4(&s.v, 0, 0, 0, d)));
    score += (double)get4(&s.q, 0, 0, 0, d) * get4(&s.k, 0, 0, 0, d);
  }
  CHECK(worst == 0, "causal sq == skv: row 0 is exactly v[0] (max error %.2e)", worst);
  CHECK(fabs(ref_lse_at(&s, 0, 0, 0) - 0.5 * score) < 1e-12, "row 0 lse is its single scaled score");
  /* and it does not depend on later keys: change key 5 and value 5, row 0..4 stay */
  double before[5];
  for (int i = 0; i < 5; i++) before[i] = ref_o_at(&s, 0, i, 0, 3);
  for (int d = 0; d < 8; d++) {
    set4(&s.k, 0, 5, 0, d, 100.0f);
    set4(&s.v, 0, 5, 0, d, -100.0f);
  }
  setup_run(&s);
  int same = 1;
  for (int i = 0; i < 5; i++) same &= before[i] == ref_o_at(&s, 0, i, 0, 3);
  CHECK(same && ref_o_at(&s, 0, 5, 0, 3) < -50, "rows 0..4 ignore key 5; row 5 sees it");
  setup_free(&s);
  check_causal(6, 6);
  check_causal(3, 5);   /* sq < skv: row 0 sees keys 0..2 */
  check_causal(5, 3);   /* sq > skv: rows 0 and 1 see nothing */
  check_causal(7, 1);
  check_causal(1, 9);   /* decode: one query sees everything */
  check_causal(4, 0);   /* no keys at all */

  /* skv = 0 without causal: zeros and -inf too */
  setup_init(&s, DTYPE_F32, 2, 3, 0, 2, 1, 8, 0, 0);
  CHECK(setup_run(&s) == FJ_OK, "skv = 0 runs");
  int zero = 1;
  for (int64_t i = 0; i < 2 * 3 * 2 * 8; i++) zero &= s.ref_o[i] == 0.0;
  for (int64_t i = 0; i < 2 * 2 * 3; i++) zero &= isinf(s.ref_lse[i]) && s.ref_lse[i] < 0;
  CHECK(zero, "skv = 0: o all zero, lse all -inf");
  setup_free(&s);
}

static void test_gqa(void) {
  /* 4 heads over 2 kv heads: heads 0,1 read kv head 0 (v = 1), heads 2,3 read kv head 1 (v = 2) */
  setup s;
  setup_init(&s, DTYPE_F16, 2, 3, 5, 4, 2, 8, 0, 0);
  for (int64_t b = 0; b < 2; b++)
    for (int64_t j = 0; j < 5; j++)
      for (int64_t d = 0; d < 8; d++) {
        set4(&s.v, b, j, 0, d, 1.0f + (float)b * 10);
        set4(&s.v, b, j, 1, d, 2.0f + (float)b * 10);
      }
  CHECK(setup_run(&s) == FJ_OK, "GQA 4/2 runs");
  int ok = 1;
  for (int64_t b = 0; b < 2; b++)
    for (int64_t i = 0; i < 3; i++)
      for (int64_t h = 0; h < 4; h++)
        for (int64_t d = 0; d < 8; d++)
          ok &= fabs(ref_o_at(&s, b, i, h, d) - ((h < 2 ? 1.0 : 2.0) + 10.0 * (double)b)) < 1e-12;
  CHECK(ok, "GQA: head h reads kv head h / 2 (and batch b its own)");
  /* MQA: every head reads kv head 0; and the scores use the query head's own q */
  setup_free(&s);
  setup_init(&s, DTYPE_BF16, 1, 2, 4, 3, 1, 16, 0, 0);
  CHECK(setup_run(&s) == FJ_OK, "MQA 3/1 runs");
  double lse0 = ref_lse_at(&s, 0, 0, 0);
  /* recompute head 2, row 1 by hand */
  double scores[4], m = -INFINITY, sum = 0, o0 = 0;
  for (int j = 0; j < 4; j++) {
    double dot = 0;
    for (int d = 0; d < 16; d++) dot += (double)get4(&s.q, 0, 1, 2, d) * get4(&s.k, 0, j, 0, d);
    scores[j] = dot * (double)(1.0f / sqrtf(16.0f));
    m = fmax(m, scores[j]);
  }
  for (int j = 0; j < 4; j++) {
    sum += exp(scores[j] - m);
    o0 += exp(scores[j] - m) * get4(&s.v, 0, j, 0, 0);
  }
  CHECK(fabs(ref_o_at(&s, 0, 1, 2, 0) - o0 / sum) < 1e-12 && fabs(ref_lse_at(&s, 0, 2, 1) - (m + log(sum))) < 1e-12 &&
            isfinite(lse0),
        "MQA head 2 row 1 matches a hand recomputation from bf16 inputs");
  setup_free(&s);
}

static void test_strided(void) {
  /* The same numbers in a packed QKV buffer and in compact tensors give the same reference. */
  setup s;
  setup_init(&s, DTYPE_F16, 2, 7, 7, 2, 2, 16, 1, 0);
  CHECK(setup_run(&s) == FJ_OK, "compact 2x7x2x16 runs");
  int64_t packed_shape[3] = {2, 7, 3 * 2 * 16};
  host_tensor qkv, views[3];
  host_tensor_alloc(&qkv, DTYPE_F16, 3, packed_shape, NULL);
  int64_t shape[4] = {2, 7, 2, 16}, strides[4] = {7 * 96, 96, 16, 1};
  host_tensor *src[3] = {&s.q, &s.k, &s.v};
  for (int i = 0; i < 3; i++) {
    host_tensor_view(&views[i], &qkv, DTYPE_F16, 4, shape, strides, i * 32);
    for (int64_t b = 0; b < 2; b++)
      for (int64_t j = 0; j < 7; j++)
        for (int64_t h = 0; h < 2; h++)
          for (int64_t d = 0; d < 16; d++) set4(&views[i], b, j, h, d, get4(src[i], b, j, h, d));
  }
  double *compact = malloc(2 * 7 * 2 * 16 * sizeof(double));
  memcpy(compact, s.ref_o, 2 * 7 * 2 * 16 * sizeof(double));
  s.args.q = &views[0].t;
  s.args.k = &views[1].t;
  s.args.v = &views[2].t;
  CHECK(setup_run(&s) == FJ_OK, "packed QKV runs");
  CHECK(memcmp(compact, s.ref_o, 2 * 7 * 2 * 16 * sizeof(double)) == 0, "packed QKV gives bit-identical results");
  free(compact);
  host_tensor_free(&qkv);
  setup_free(&s);
}

static void test_relative_error(void) {
  setup s;
  setup_init(&s, DTYPE_F32, 1, 9, 11, 2, 2, 8, 1, 0);
  setup_run(&s);
  /* write the reference into o as fp32: only fp32 rounding remains */
  for (int64_t i = 0; i < 9; i++)
    for (int64_t h = 0; h < 2; h++)
      for (int64_t d = 0; d < 8; d++) set4(&s.o, 0, i, h, d, (float)ref_o_at(&s, 0, i, h, d));
  double e = core_relative_error_o(&s.p, s.ref_o);
  CHECK(e < 1e-7, "o = reference rounded to fp32: error %.2e < 1e-7", e);
  for (int64_t i = 0; i < 9; i++)
    for (int64_t h = 0; h < 2; h++)
      for (int64_t d = 0; d < 8; d++) set4(&s.o, 0, i, h, d, (float)(ref_o_at(&s, 0, i, h, d) * 1.001));
  e = core_relative_error_o(&s.p, s.ref_o);
  CHECK(fabs(e - 1e-3) < 1e-6, "o = 1.001 * reference: error %.6e is 1e-3", e);
  set4(&s.o, 0, 4, 1, 3, NAN);
  e = core_relative_error_o(&s.p, s.ref_o);
  CHECK(isinf(e) && e > 0, "a NaN in o gives +inf, never NaN (error %g)", e);
  host_tensor_poison(&s.o);
  CHECK(isinf(core_relative_error_o(&s.p, s.ref_o)), "a poisoned (unwritten) o gives +inf");

  float *lse = s.lse.t.data;
  for (int64_t i = 0; i < 2 * 9; i++) lse[i] = (float)s.ref_lse[i];
  e = core_relative_error_lse(&s.p, s.ref_lse);
  CHECK(e < 1e-7, "lse = reference rounded: error %.2e", e);
  lse[3] = lse[3] + 1e-3f * fabsf(lse[3]);
  e = core_relative_error_lse(&s.p, s.ref_lse);
  CHECK(e > 1e-6 && e < 1e-3, "one lse entry off by 1e-3 relative: error %.2e", e);
  lse[3] = (float)s.ref_lse[3];
  lse[5] = -INFINITY; /* row 5 of head 0 has keys: -inf is wrong */
  e = core_relative_error_lse(&s.p, s.ref_lse);
  CHECK(e >= 1.0, "-inf where the reference is finite counts as 1 (error %g)", e);
  lse[5] = (float)s.ref_lse[5];
  lse[0] = NAN;
  CHECK(isinf(core_relative_error_lse(&s.p, s.ref_lse)), "a NaN lse gives +inf");
  setup_free(&s);

  /* fully masked rows: -inf on both sides agrees */
  setup_init(&s, DTYPE_F32, 1, 5, 2, 1, 1, 8, 1, 0);
  setup_run(&s);
  lse = s.lse.t.data;
  for (int i = 0; i < 5; i++) lse[i] = (float)s.ref_lse[i];
  CHECK(isinf(s.ref_lse[0]) && core_relative_error_lse(&s.p, s.ref_lse) < 1e-7, "-inf matching -inf is no error");
  lse[0] = 0.0f;
  CHECK(core_relative_error_lse(&s.p, s.ref_lse) >= 1.0, "finite where the reference is -inf counts as 1");
  setup_free(&s);
}

static void test_long(void) {
  /* Big enough that a slow reference would hurt every kernel test; speed is printed, not asserted. */
  setup s;
  setup_init(&s, DTYPE_BF16, 1, 1024, 1024, 2, 1, 128, 1, 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fj_status st = setup_run(&s);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  int finite = 1;
  for (int64_t i = 0; i < 1024 * 2 * 128; i++) finite &= isfinite(s.ref_o[i]);
  CHECK(st == FJ_OK && finite, "causal bf16 1024x1024 h2/1 d128: finite everywhere (%.2f s)", seconds);
  setup_free(&s);
}

int main(void) {
  test_two_keys();
  test_uniform();
  test_causal();
  test_gqa();
  test_strided();
  test_relative_error();
  test_long();
  return check_summary();
}
