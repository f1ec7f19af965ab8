/* reference.c: the float64 attention every kernel is judged by. It is a direct transcription of the
 * definition (scores, max-subtracted softmax, weighted sum of V) with no tiling or online softmax, so
 * that a disagreement points at the kernel. Inputs are converted to double once per head, which keeps
 * it fast enough for long sequences in tests without making the arithmetic any less plain. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/reference.h"

/* Copies rows [first, first + rows) of one (batch b, head h) slice of a 4-d view into doubles. */
static void core_gather_rows(const tensor_view *view, dtype_id dtype, int64_t b, int64_t h,
                             int64_t first, int64_t rows, int64_t head_dim, double *out) {
  for (int64_t r = 0; r < rows; r++) {
    int64_t base = b * view->stride[0] + (first + r) * view->stride[1] + h * view->stride[2];
    for (int64_t d = 0; d < head_dim; d++)
      out[r * head_dim + d] = core_load_as_f32(view->data, dtype, base + d * view->stride[3]);
  }
}

static double core_dot(const double *a, const double *b, int64_t n) {
  /* Four partial sums let the compiler keep several multiply-adds in flight. */
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; i++) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

fj_status core_reference_attention(const attention_problem *problem, double *out_o, double *out_lse) {
  const attention_key *key = &problem->key;
  dtype_id dtype = (dtype_id)key->dtype;
  int64_t B = problem->batch, SQ = problem->seqlen_q, SKV = problem->seqlen_kv;
  int64_t H = key->heads, HK = key->kv_heads, D = key->head_dim, DV = core_key_head_dim_v(key);
  int64_t group = H / HK;
  double scale = problem->softmax_scale, softcap = problem->softcap;
  dtype_id bias_dtype = core_key_bias_dtype(key);
  /* an fp8 cache holds k / k_scale and v / v_scale */
  dtype_id kv_dtype = core_key_kv_dtype(key);
  double k_scale = key->kv_fp8 ? problem->k_scale : 1.0, v_scale = key->kv_fp8 ? problem->v_scale : 1.0;

  size_t keys_held = (size_t)(SKV > 0 ? SKV : 1);
  double *kmat = malloc(keys_held * (size_t)D * sizeof(double));
  double *vmat = malloc(keys_held * (size_t)DV * sizeof(double));
  double *qrow = malloc((size_t)D * sizeof(double));
  double *acc = malloc((size_t)DV * sizeof(double));
  double *p = malloc((size_t)(SKV > 0 ? SKV : 1) * sizeof(double));
  fj_status status = FJ_OK;
  if (kmat == NULL || vmat == NULL || qrow == NULL || acc == NULL || p == NULL) {
    status = core_error(FJ_OUT_OF_MEMORY, "reference: no memory for %lld x %lld keys and values",
                        (long long)SKV, (long long)D);
    goto done;
  }

  for (int64_t b = 0; b < B; b++) {
    /* this sequence's keys: all SKV, or its seqlens_kv entry; its queries: all SQ from row 0, or its
     * cu_seqlens_q range */
    int64_t keys = core_sequence_keys(problem, b), start, queries;
    core_sequence_queries(problem, b, &start, &queries);
    for (int64_t hk = 0; hk < HK; hk++) {
      for (int64_t j = 0; j < keys; j++) {
        /* key j's place: (b, j), or its page and its row there */
        int64_t outer, row;
        core_key_place(problem, b, j, &outer, &row);
        core_gather_rows(&problem->k, kv_dtype, outer, hk, row, 1, D, kmat + j * D);
        core_gather_rows(&problem->v, kv_dtype, outer, hk, row, 1, DV, vmat + j * DV);
        for (int64_t d = 0; d < D; d++) kmat[j * D + d] *= k_scale;
        for (int64_t d = 0; d < DV; d++) vmat[j * DV + d] *= v_scale;
      }
      for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
        for (int64_t i = 0; i < queries; i++) {
          /* The masks align to the bottom-right corner: query i sees keys [first, end). */
          int64_t first, end;
          core_visible_keys(problem, i, queries, keys, &first, &end);
          double *o_row = out_o + ((b * SQ + i) * H + h) * DV;
          /* A sink is one more term of the denominator, a key of that score and a zero value. */
          double sink = problem->sinks != NULL ? problem->sinks[h * problem->sinks_stride] : -INFINITY;
          /* ALiBi: -slope x the key's distance from the query's diagonal, i + keys - queries */
          double slope = problem->alibi != NULL
                             ? problem->alibi[b * problem->alibi_stride[0] + h * problem->alibi_stride[1]] : 0.0;
          double lse = sink;
          /* the additive bias's row of this query (strides of 0 where broadcast) */
          const void *bias = problem->attn_bias;
          int64_t bias_row = b * problem->attn_bias_stride[0] + h * problem->attn_bias_stride[1] +
                             i * problem->attn_bias_stride[2];
          if (end == first) {
            memset(o_row, 0, (size_t)DV * sizeof(double));
          } else {
            core_gather_rows(&problem->q, dtype, b, h, start + i, 1, D, qrow);
            double m = sink;
            for (int64_t j = first; j < end; j++) {
              p[j] = scale * core_dot(qrow, kmat + j * D, D);
              if (softcap > 0) p[j] = softcap * tanh(p[j] / softcap);
              p[j] -= slope * fabs((double)(i + keys - queries - j));
              if (bias != NULL) p[j] += core_load_as_f32(bias, bias_dtype, bias_row + j * problem->attn_bias_stride[3]);
              if (p[j] > m) m = p[j];
            }
            if (m == -INFINITY) {  /* the bias masked every key it sees (and there is no sink) */
              memset(o_row, 0, (size_t)DV * sizeof(double));
              if (out_lse != NULL) out_lse[(b * H + h) * SQ + i] = -INFINITY;
              continue;
            }
            double sum = exp(sink - m);
            memset(acc, 0, (size_t)DV * sizeof(double));
            for (int64_t j = first; j < end; j++) {
              double w = exp(p[j] - m);
              sum += w;
              const double *vj = vmat + j * DV;
              for (int64_t d = 0; d < DV; d++) acc[d] += w * vj[d];
            }
            for (int64_t d = 0; d < DV; d++) o_row[d] = acc[d] / sum;
            lse = m + log(sum);
          }
          if (out_lse != NULL) out_lse[(b * H + h) * SQ + i] = lse;
        }
      }
    }
  }
done:
  free(kmat);
  free(vmat);
  free(qrow);
  free(acc);
  free(p);
  return status;
}

double core_relative_error_o(const attention_problem *problem, const double *ref_o) {
  const attention_key *key = &problem->key;
  const tensor_view *o = &problem->o;
  int64_t H = key->heads, D = core_key_head_dim_v(key), SQ = problem->seqlen_q;
  double diff2 = 0, ref2 = 0;
  for (int64_t b = 0; b < problem->batch; b++) {
    int64_t start, queries;
    core_sequence_queries(problem, b, &start, &queries);
    for (int64_t i = 0; i < queries; i++)
      for (int64_t h = 0; h < H; h++) {
        int64_t base = b * o->stride[0] + (start + i) * o->stride[1] + h * o->stride[2];
        const double *ref = ref_o + ((b * SQ + i) * H + h) * D;
        for (int64_t d = 0; d < D; d++) {
          double got = core_load_as_f32(o->data, (dtype_id)key->dtype, base + d * o->stride[3]);
          diff2 += (got - ref[d]) * (got - ref[d]);
          ref2 += ref[d] * ref[d];
        }
      }
  }
  /* NaN would slip through `err > tol` and `a > b ? a : b`; infinity fails every comparison's way. */
  double error = sqrt(diff2) / fmax(sqrt(ref2), 1e-30);
  return isnan(error) ? INFINITY : error;
}

double core_relative_error_lse(const attention_problem *problem, const double *ref_lse) {
  const tensor_view *lse = &problem->lse;
  if (lse->data == NULL) return 0.0;
  int64_t H = problem->key.heads, SQ = problem->seqlen_q;
  double diff2 = 0, ref2 = 0;
  int mismatch = 0;
  for (int64_t b = 0; b < problem->batch; b++) {
    int64_t start, queries;
    core_sequence_queries(problem, b, &start, &queries);
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < queries; i++) {
        double got = core_load_as_f32(lse->data, DTYPE_F32,
                                      b * lse->stride[0] + h * lse->stride[1] + (start + i) * lse->stride[2]);
        double ref = ref_lse[(b * H + h) * SQ + i];
        if (isnan(got)) return INFINITY; /* not NaN: see core_relative_error_o */
        if (isinf(got) || isinf(ref)) {
          /* Only the same infinity on both sides (a fully masked row) agrees. */
          if (got != ref) mismatch = 1;
          continue;
        }
        diff2 += (got - ref) * (got - ref);
        ref2 += ref * ref;
      }
  }
  double error = sqrt(diff2) / fmax(sqrt(ref2), 1e-30);
  return mismatch && error < 1.0 ? 1.0 : error;
}
