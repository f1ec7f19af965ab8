/* test_batch_invariance.c: fj_attention_args.kv_split_keys on the CPU. A decode step cuts its keys into
 * parts for the threads when the batch is small; with kv_split_keys > 0 the parts are of that many keys
 * whatever the batch, and with -1 there are none, so a sequence's output is the same bits alone and in a
 * batch of others (of other lengths, in k and v with room for the longest: how many parts there are
 * differs, never where they end). Each result is also checked against the float64 reference, and the bad values are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_cases.h"
#include "check.h"

enum { BATCH = 4, HEADS = 8, KV_HEADS = 1, KEYS = 3000, DIM = 64 };

/* o of one decode step: sequence 0 alone (batch 1) or with three others, every sequence with its own key
 * count (seqlens_kv), sequence 0's data the same in both; its rows into row0 (HEADS x DIM floats). */
static fj_status decode(fj_context *context, dtype_id dtype, int batch, int64_t kv_split_keys, float *row0,
                        double *err) {
  test_case c;
  memset(&c, 0, sizeof c);
  c.dtype = dtype;
  /* alone, k and v hold just its keys; in the batch, room for the longest: the split's part counts differ */
  c.batch = batch, c.heads = HEADS, c.kv_heads = KV_HEADS, c.seqlen_q = 1, c.seqlen_kv = batch == 1 ? 1100 : KEYS;
  c.head_dim = DIM;
  c.varlen = 1, c.causal = 1;
  c.window_left = c.window_right = -1;
  case_tensors t;
  if (!case_tensors_create(&c, 7, &t)) return FJ_OUT_OF_MEMORY;
  /* sequence 0: the same inputs whatever the batch (the batch's first rows of a seed-7 fill of 4 would
   * differ from a fill of 1, so both are refilled from one seed here) */
  host_tensor *fill[3] = {&t.q, &t.k, &t.v};
  for (int i = 0; i < 3; i++) {
    uint64_t state = 12345 + (uint64_t)i;  /* each tensor its own stream: sequence 0 draws first in each */
    int64_t per_sequence = fill[i]->strides[0];
    for (int64_t b = 0; b < batch; b++)
      for (int64_t e = 0; e < per_sequence; e++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        float x = (float)((double)(state >> 11) / 9007199254740992.0 * 2 - 1);
        core_store_from_f32(fill[i]->t.data, dtype, b * per_sequence + e, b == 0 ? x : 0.5f * x);
      }
  }
  int32_t *lens = (int32_t *)t.seqlens_t.data;
  static const int32_t lengths[BATCH] = {1100, KEYS, 900, 1999};  /* alone 3 parts of 512, batched 6 */
  for (int b = 0; b < batch; b++) lens[b] = lengths[b];
  fj_attention_args args;
  case_host_args(&c, &t, &args);
  args.kv_split_keys = kv_split_keys;
  fj_status s = fj_attention_forward(context, &args);
  if (s == FJ_OK) {
    for (int64_t i = 0; i < HEADS * DIM; i++) row0[i] = core_load_as_f32(t.o.t.data, dtype, i);
    case_result r;
    *err = case_compare(&c, &t, 1e-5, &r) && r.outside_o ? r.err_o : INFINITY;
  }
  case_tensors_free(&c, &t);
  return s;
}

int main(void) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.num_threads = 2;  /* batch 1 (one job) would be cut over them; batch 4 not */
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) {
    printf("FAIL a CPU context: %s\n", fj_last_error());
    return 1;
  }
  static float alone[HEADS * DIM], batched[HEADS * DIM];
  static const int64_t modes[] = {512, 1000, -1, 0};
  for (int t = 0; t < 2; t++) {
    dtype_id dtype = t ? DTYPE_BF16 : DTYPE_F32;
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
      double err_alone = 0, err_batched = 0;
      fj_status s1 = decode(context, dtype, 1, modes[m], alone, &err_alone);
      fj_status s4 = s1 == FJ_OK ? decode(context, dtype, BATCH, modes[m], batched, &err_batched) : s1;
      int same = s4 == FJ_OK && memcmp(alone, batched, sizeof alone) == 0;
      double tol = core_dtype_tolerance(dtype);
      if (modes[m] != 0)
        check(s4 == FJ_OK && same && err_alone < tol && err_batched < tol,
              "%s, kv_split_keys=%lld: sequence 0 alone and in a batch of %d give the same bits (errors %.1e, %.1e) %s",
              core_dtype_name(dtype), (long long)modes[m], BATCH, err_alone, err_batched,
              s4 == FJ_OK ? "" : fj_last_error());
      else  /* the library's own split: right either way, the bits may differ (not asserted) */
        check(s4 == FJ_OK && err_alone < tol && err_batched < tol,
              "%s, kv_split_keys=0 (the library's split): right alone and batched (errors %.1e, %.1e; bits %s)",
              core_dtype_name(dtype), err_alone, err_batched, same ? "the same" : "differ, as they may");
    }
  }
  /* more than 16 queries are never cut when it is set: no partial results for a prefill's many rows */
  {
    test_case c;
    memset(&c, 0, sizeof c);
    c.dtype = DTYPE_F32, c.batch = 1, c.heads = HEADS, c.kv_heads = KV_HEADS, c.seqlen_q = 64, c.seqlen_kv = KEYS;
    c.head_dim = DIM, c.causal = 1, c.window_left = c.window_right = -1;
    case_tensors t;
    size_t need = 1;
    fj_status s = FJ_OUT_OF_MEMORY;
    case_result r;
    int right = 0;
    if (case_tensors_create(&c, 3, &t)) {
      fj_attention_args args;
      case_host_args(&c, &t, &args);
      args.kv_split_keys = 16;  /* 188 parts of 3000 keys: bound only for decode steps */
      s = fj_attention_workspace_size(context, &args, &need);
      if (s == FJ_OK) s = fj_attention_forward(context, &args);
      right = s == FJ_OK && case_compare(&c, &t, 1e-5, &r) && r.err_o < core_dtype_tolerance(c.dtype);
      case_tensors_free(&c, &t);
    }
    check(s == FJ_OK && need == 0 && right, "kv_split_keys=16 on 64 queries: no parts (workspace %zu bytes), right %s",
          need, s == FJ_OK ? "" : fj_last_error());
  }
  /* the values it refuses */
  static const struct {
    int64_t value;
    const char *want;
  } bad[] = {{-2, "kv_split_keys=-2: 0 (the library's split), -1 (none) or a key count"},
             {40, "kv_split_keys=40: 3000 keys would make 75 parts, more than 64; give at least 47"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    double err;
    fj_status s = decode(context, DTYPE_F32, BATCH, bad[i].value, batched, &err);
    check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), bad[i].want), "kv_split_keys=%lld: %s \"%s\"",
          (long long)bad[i].value, fj_status_string(s), fj_last_error());
  }
  fj_context_destroy(context);
  return check_summary();
}
