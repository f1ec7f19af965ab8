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

#include "attention_cases.h"
#include "check.h"
#include "runtime/runtime_internal.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static uint64_t base_seed;
static int case_counter;

/* The CPU runs a case on the host tensors themselves, timed; on top of the shared verdict the inputs
 * must come out unchanged. */
/* Split cases run a second time with the workspace fj_attention_workspace_size asks for, poisoned:
 * the parts must go there (and the result be the same). */
static int give_workspace;

/* Set: a case runs its default config with bf16_dot flipped (the other product for bf16 inputs), so
 * that both are checked on a CPU whose default takes the pairs. */
static int flip_bf16_dot;

static int param_index(const kernel_family *family, const char *name) {
  for (int p = 0; p < family->num_params; p++)
    if (strcmp(family->params[p].name, name) == 0) return p;
  return -1;
}

static fj_status forward(fj_context *context, const fj_attention_args *args, char *config_text, size_t size) {
  if (!flip_bf16_dot) return fj_attention_forward(context, args);
  attention_problem problem;
  runtime_kernel *kernel = NULL;
  fj_status status = core_validate_attention(args, &problem);
  if (status == FJ_OK) status = runtime_get_kernel(context, &problem, NULL, &kernel);
  if (status != FJ_OK) return status;
  kernel_config flipped = kernel->config;
  int p = param_index(kernel->family, "bf16_dot");
  if (p < 0) return FJ_INTERNAL;
  flipped.values[p] = !flipped.values[p];
  status = runtime_get_kernel(context, &problem, &flipped, &kernel);
  if (status != FJ_OK) return status;
  kernel_config_string(kernel->family, &kernel->config, config_text, size);
  return runtime_launch_attention(context, kernel, &problem, NULL);
}

static void run_case(fj_context *context, const test_case *c) {
  char name[300];
  describe(c, name, sizeof name);
  if (give_workspace) strncat(name, " +workspace", sizeof name - strlen(name) - 1);
  uint64_t seed = base_seed + (uint64_t)(case_counter++) * 1000003u;
  case_tensors t;
  if (!case_tensors_create(c, seed, &t)) {
    check(0, "%s: allocation failed", name);
    case_tensors_free(c, &t);
    return;
  }
  uint64_t in_hash = case_inputs_hash(c, &t);

  fj_attention_args args;
  case_host_args(c, &t, &args);
  size_t work_bytes = 0;
  unsigned char *work = NULL;
  int64_t work_shape[1] = {0};
  DLTensor workspace = {.device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLUInt, 8, 1}, .shape = work_shape};
  if (give_workspace) {
    fj_status asked = fj_attention_workspace_size(context, &args, &work_bytes);
    work = asked == FJ_OK && work_bytes > 0 ? aligned_alloc(64, (work_bytes + 63) / 64 * 64) : NULL;
    check(work != NULL, "%s: fj_attention_workspace_size = %s, %zu bytes (%s)", name, fj_status_string(asked),
          work_bytes, fj_last_error());
    if (work == NULL) {
      case_tensors_free(c, &t);
      return;
    }
    memset(work, 0xFF, work_bytes);
    work_shape[0] = (int64_t)work_bytes;
    workspace.data = work;
    args.workspace = &workspace;
  }
  double start = now_ms();
  char config_text[256] = "";
  fj_status status = forward(context, &args, config_text, sizeof config_text);
  double ms = now_ms() - start;
  if (config_text[0] != '\0') snprintf(name + strlen(name), sizeof name - strlen(name), " [%s]", config_text);
  if (status != FJ_OK) {
    check(0, "%s: fj_attention_forward = %s (%s)", name, fj_status_string(status), fj_last_error());
    case_tensors_free(c, &t);
    free(work);
    return;
  }
  if (work != NULL) {
    size_t written = 0;
    for (size_t i = 0; i < work_bytes; i++) written += work[i] != 0xFF;
    check(written > work_bytes / 2, "%s: the parts went to the caller's workspace (%zu of %zu bytes written)", name,
          written, work_bytes);
    free(work);
  }

  /* lse is fp32 whatever the inputs, and the reference reads the same rounded inputs, so its error
   * stays at fp32's level even for fp16/bf16. */
  case_result r;
  if (!case_compare(c, &t, core_dtype_tolerance(DTYPE_F32), &r)) {
    check(0, "%s: reference failed (%s)", name, fj_last_error());
  } else {
    uint64_t in_after = case_inputs_hash(c, &t);
    check(case_result_ok(&r) && in_after == in_hash,
          "%s: err_o=%.2e err_lse=%.2e (tol %.0e, %.0e)%s%s%s%s [%.1f ms]", name, r.err_o, r.err_lse, r.tol,
          r.tol_lse, r.masked_ok ? "" : " MASKED ROW NOT EXACT",
          r.outside_o ? "" : " WROTE OUTSIDE o's ELEMENTS", r.outside_lse ? "" : " WROTE OUTSIDE lse's ELEMENTS",
          in_after == in_hash ? "" : " INPUTS CHANGED", ms);
    if (!r.masked_ok) printf("     first bad fully-masked row: %lld\n", r.bad_row);
  }
  case_tensors_free(c, &t);
}

/* dtype, batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim, causal, lse, layout, scale, varlen,
 * page_size, window_left, window_right, ragged_q, sinks, softcap, packed_k, alibi, kv_fp8, head_dim_v, bias */
static const test_case cases[] = {
    /* every dtype, causal and not, GQA 2, batch > 1, a length no tile divides */
    {F32, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 2, 4, 2, 257, 257, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 2, 257, 257, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 4, 2, 257, 257, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 4, 2, 257, 257, 64, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* GQA ratios 1, 2, 4, 8 and MQA */
    {F16, 1, 8, 8, 130, 130, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 4, 130, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 8, 2, 130, 200, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 8, 1, 130, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 4, 1, 100, 300, 96, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 4, 1, 66, 66, 128, 0, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* decode steps: a few queries per KV head, which the default packs into one job's rows (groups
     * 3, 4, 8; a group that fills the rows; rows past a short cache's diagonal fully masked) */
    {BF16, 3, 8, 2, 1, 1000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 8, 1, 3, 517, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 6, 2, 2, 300, 80, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 4, 2, 5, 3, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* seqlens_kv: each sequence its own key count (all, none, and spread), decode and prefill, causal
     * aligned to each sequence's own last key */
    {BF16, 4, 8, 2, 1, 700, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 3, 4, 1, 3, 130, 64, 1, 1, LSESTRIDED, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 5, 2, 2, 37, 90, 80, 1, 1, DSTRIDE2, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 3, 2, 2, 60, 45, 64, 0, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* paged K/V (block_table): pages of every sequence shuffled in one pool; page sizes 16 (tiles
     * cross pages), 1 and 5 (odd, no tile size divides it) and 256; decode packed and not, prefill,
     * with and without seqlens_kv (entries past a sequence's keys are -1 and must not be read) */
    {BF16, 3, 8, 2, 1, 704, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 4, 3, 160, 64, 1, 1, LSESTRIDED, 0, 0, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 2, 4, 1, 1, 45, 64, 1, 1, CONTIG, 0, 1, 5, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 2, 2, 2, 37, 37, 80, 1, 0, DSTRIDE2, 0, 0, 1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 4, 2, 100, 512, 64, 1, 1, CONTIG, 0, 1, 256, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 70, 80, 256, 0, 1, CONTIG, 0, 0, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* seqlen_q != seqlen_kv both ways; causal with sq > skv leaves rows with no visible key */
    {F16, 1, 2, 2, 7, 1000, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 7, 1000, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 1, 1000, 7, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 1, 1000, 7, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 2, 2, 1000, 7, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 33, 17, 80, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* lengths 1, 7, 1023, 4097 */
    {F32, 1, 2, 2, 1, 1, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 1, 1, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 2, 1, 7, 7, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 4, 4, 1, 4097, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 1023, 1023, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 1, 1, 4097, 4097, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 1, 1, 1023, 4097, 64, 0, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* head dims 8, 80, 96, 256 (64 and 128 above) */
    {F32, 2, 2, 1, 150, 150, 8, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 150, 150, 8, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 3, 1, 150, 170, 80, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 2, 150, 150, 80, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 150, 150, 96, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 2, 120, 150, 96, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 150, 150, 256, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 150, 120, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 2, 129, 129, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* packed QKV (one allocation viewed three times), with and without GQA */
    {F16, 2, 4, 4, 300, 300, 64, 1, 1, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 2, 200, 200, 128, 0, 1, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 2, 77, 77, 80, 0, 0, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* head_dim stride 2 on every tensor */
    {F32, 1, 2, 2, 100, 100, 64, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 2, 100, 50, 128, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 60, 90, 96, 1, 0, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* k one element off inside one allocation: rows not 16-byte aligned */
    {BF16, 1, 4, 2, 77, 130, 64, 1, 1, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 1, 50, 50, 128, 0, 0, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* lse stored [b, s, h]; an explicit softmax scale, and a negative one (the row maximum of the
     * scaled scores is then the minimum of the raw ones; masked and keyless rows still give 0) */
    {F32, 2, 4, 2, 65, 65, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 90, 90, 64, 0, 1, CONTIG, 0.3f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 1, 90, 45, 128, 1, 1, LSESTRIDED, 1.5f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 2, 2, 70, 130, 128, 0, 1, CONTIG, -0.1f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* sliding windows (window_left, window_right): causal local attention (Mistral's, Gemma's) over
     * lengths no tile divides, sq != skv both ways; a window of the diagonal key alone; windows on
     * one side or both without causal; a window longer than the keys (no window); GQA packed decode
     * with windows shorter than a tile and ending mid-tile; varlen and paged caches; a negative scale */
    {F32, 2, 4, 2, 257, 257, 64, 1, 1, CONTIG, 0, 0, 0, 64, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 4, 4, 130, 300, 128, 1, 1, LSESTRIDED, 0, 0, 0, 37, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 1, 300, 130, 80, 1, 1, CONTIG, 0, 0, 0, 20, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 2, 70, 90, 64, 1, 1, CONTIG, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 2, 2, 1, 130, 200, 64, 0, 1, CONTIG, 0, 0, 0, 31, 17, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 1, 2, 2, 90, 70, 96, 0, 1, DSTRIDE2, 0, 0, 0, 25, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 2, 90, 70, 64, 0, 1, CONTIG, 0, 0, 0, -1, 5, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 2, 40, 60, 64, 1, 1, CONTIG, 0, 0, 0, 5000, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 8, 2, 1, 1000, 128, 1, 1, CONTIG, 0, 0, 0, 100, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 8, 1, 3, 517, 64, 1, 1, CONTIG, 0, 0, 0, 3, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 4, 8, 2, 2, 700, 128, 1, 1, CONTIG, 0, 1, 0, 200, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 8, 2, 1, 704, 128, 1, 1, CONTIG, 0, 1, 16, 50, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 2, 2, 2, 37, 45, 80, 1, 1, CONTIG, 0, 0, 5, 9, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 1, 100, 100, 64, 1, 1, CONTIG, -0.2f, 0, 0, 10, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* ragged queries (cu_seqlens_q; lengths case_sequence_queries: the longest, none, and spread),
     * between spare rows no call may touch: causal prefill of fewer queries than keys (a chunk of a
     * longer prompt), GQA packed and not; with seqlens_kv; a paged cache with seqlens_kv (an engine's
     * chunked prefill); decode steps of one query or none per sequence, and a mixed prefill and decode
     * batch; not causal; a window; head dim 8 and 256; a cache of no keys */
    {BF16, 4, 8, 2, 97, 97, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {F32, 3, 4, 1, 37, 130, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {F16, 5, 4, 1, 37, 90, 80, 1, 1, DSTRIDE2, 0, 1, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 8, 2, 33, 160, 128, 1, 1, LSESTRIDED, 0, 1, 16, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 4, 8, 2, 1, 700, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {F32, 3, 4, 2, 5, 300, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {F32, 2, 2, 2, 60, 45, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 4, 2, 70, 200, 64, 1, 1, CONTIG, 0, 1, 0, 31, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {F16, 3, 2, 1, 40, 40, 8, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {F32, 3, 2, 2, 30, 50, 256, 0, 0, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    /* no keys at all: each sequence's rows 0 (LSE -inf) without a kernel, the spare rows untouched */
    {F16, 3, 2, 2, 5, 0, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    /* attention sinks (case_sink: from -3 to 5 by head): causal GQA prefill; rows past a short cache's
     * diagonal (0, LSE the sink); a decode step over a varlen cache with a sequence of no keys, packed;
     * a paged cache with a window; ragged queries; strided head dim, no LSE, a custom scale; no keys at
     * all (LSE the sink, without a kernel) */
    {BF16, 2, 8, 2, 97, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {F32, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {F32, 3, 8, 2, 1, 700, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {F16, 2, 4, 1, 3, 512, 64, 1, 1, LSESTRIDED, 0, 1, 16, 50, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {BF16, 3, 4, 2, 33, 160, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 1, 1, 0, 0, 0, 0, 0, 0},
    {F16, 1, 4, 4, 90, 90, 80, 0, 0, DSTRIDE2, 0.3f, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {F16, 3, 2, 2, 5, 0, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 1, 1, 0, 0, 0, 0, 0, 0},
    /* logit soft-capping (caps of 1 to 3, where scores of order 1 bend): causal GQA prefill; a negative
     * scale with rows past a short cache's diagonal; a packed decode step over a varlen cache with
     * sinks; a local layer's window (Gemma 2's); ragged queries; head dim 256 strided, not causal */
    {BF16, 2, 4, 2, 130, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0},
    {F32, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 1.5f, 0, 0, 0, 0, 0},
    {F16, 3, 8, 2, 1, 700, 64, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 1, 2.0f, 0, 0, 0, 0, 0},
    {BF16, 1, 8, 4, 200, 200, 128, 1, 1, CONTIG, 0, 0, 0, 37, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0},
    {BF16, 3, 4, 2, 33, 160, 128, 1, 1, LSESTRIDED, 0, 1, 0, -1, -1, 1, 0, 3.0f, 0, 0, 0, 0, 0},
    {F32, 2, 4, 2, 70, 90, 256, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0},
    /* packed keys (cu_seqlens_k; lengths case_sequence_keys: the longest, none, and spread), between
     * NaN rows no call may read: ragged prefill as flash_attn_varlen_func takes it, causal GQA; padded
     * queries against packed keys, LSE strided; not causal, head dim 80 strided; decode steps, packed
     * GQA; a window; sinks and a soft cap; head dim 256 */
    {BF16, 4, 8, 2, 97, 97, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0},
    {F32, 3, 4, 1, 37, 130, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0, 0, 0},
    {F16, 3, 4, 2, 50, 60, 80, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0},
    {BF16, 4, 8, 2, 1, 700, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0, 0, 0},
    {F32, 3, 4, 2, 70, 200, 64, 1, 1, CONTIG, 0, 0, 0, 31, -1, 1, 0, 0, 1, 0, 0, 0, 0},
    {BF16, 3, 4, 2, 33, 160, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 1, 2.0f, 1, 0, 0, 0, 0},
    {F32, 3, 2, 2, 30, 50, 256, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0, 0, 0},
    /* ALiBi (case_alibi_slope: BLOOM's slopes; [batch, heads] ones differ by sequence): causal GQA
     * prefill; not causal with fewer queries than keys (distances on both sides of the diagonal); a packed
     * decode step over a varlen cache; ragged queries and packed keys with a window; sinks and a soft
     * cap; a negative scale with a strided head dim */
    {F32, 2, 4, 2, 130, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 1, 0, 0, 0},
    {BF16, 2, 4, 2, 97, 130, 128, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 1, 0, 0, 0},
    {F16, 3, 8, 2, 1, 700, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 2, 0, 0, 0},
    {F32, 3, 4, 2, 70, 200, 64, 1, 1, CONTIG, 0, 0, 0, 31, -1, 1, 0, 0, 1, 2, 0, 0, 0},
    {BF16, 2, 4, 1, 100, 100, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 1, 1.5f, 0, 1, 0, 0, 0},
    {F32, 2, 2, 2, 30, 50, 80, 0, 1, DSTRIDE2, -0.2f, 0, 0, -1, -1, 0, 0, 0, 0, 1, 0, 0, 0},
    /* fp8 KV caches (k and v E4M3 or E5M2 with case_k_scale and case_v_scale): causal GQA prefill beside
     * bf16 queries (their tiles converted to bf16 pairs, or to fp32 in the other product) and fp16 ones;
     * fp32 queries with a strided head dim (element by element), a negative scale and rows that see no
     * key; a packed decode step over a varlen cache, and over a paged one; sinks (the scale of V meets
     * the sink's term); packed keys between NaN rows; head dim 256 with a window and a soft cap */
    {BF16, 2, 4, 2, 130, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0},
    {F16, 2, 4, 2, 97, 130, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0},
    {F32, 1, 2, 1, 100, 37, 64, 1, 1, DSTRIDE2, -0.2f, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0},
    {BF16, 3, 8, 2, 1, 700, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0},
    {BF16, 3, 8, 2, 1, 704, 128, 1, 1, LSESTRIDED, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0},
    {F32, 2, 4, 2, 50, 80, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, E4M3, 0, 0},
    {F16, 3, 4, 2, 50, 60, 80, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, E5M2, 0, 0},
    {BF16, 1, 2, 2, 70, 90, 256, 1, 1, CONTIG, 0, 0, 0, 40, -1, 0, 0, 2.0f, 0, 0, E4M3, 0, 0},
    /* v (and o) with a head dim of their own: DeepSeek's MLA prefill (q, k 192, v 128; causal, each head
     * its own KV head); v wider than k with a strided head dim and a varlen cache; a packed decode step
     * over a paged cache; an fp8 cache; head dims of 8 mod 16 (24 and 40); ragged queries and packed keys
     * with sinks; ALiBi and a soft cap over a window */
    {BF16, 2, 4, 4, 130, 130, 192, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 128, 0},
    {F32, 3, 4, 2, 57, 90, 64, 0, 1, DSTRIDE2, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 128, 0},
    {F16, 3, 8, 2, 1, 704, 128, 1, 1, LSESTRIDED, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 64, 0},
    {BF16, 3, 8, 2, 1, 700, 192, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 128, 0},
    {F32, 2, 4, 2, 70, 70, 24, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 40, 0},
    {BF16, 3, 4, 2, 50, 60, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 1, 1, 0, 1, 0, 0, 256, 0},
    {F16, 2, 4, 1, 90, 120, 96, 1, 1, CONTIG, 0, 0, 0, 30, -1, 0, 0, 1.5f, 0, 1, 0, 32, 0},
    /* head dims past 256 (the CPU's alone): MLA's absorbed decode (q and k 576, v 512, all heads on one
     * KV head) over a paged varlen cache, from an fp8 cache, and a short causal prefill of it */
    {BF16, 2, 16, 1, 1, 704, 576, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 512, 0},
    {BF16, 2, 16, 1, 2, 500, 576, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 512, 0},
    {F32, 1, 4, 1, 40, 40, 576, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 512, 0},
    /* An additive bias (case_bias_value: values of order 1, keys masked by -inf, head 0's query 1 masked
     * whole; a padding mask broadcast over heads and queries; one of q's dtype broadcast over the batch by a
     * stride of 0): each dtype, causal and not, GQA; a packed decode step over a paged varlen cache (its
     * positions and heads per row); ragged queries and packed keys (within-sequence indices); ALiBi,
     * sinks and a soft cap together; a strided head dim with a negative scale; an fp8 cache; MLA's head
     * dims; head dim 256 with a window */
    {F32, 2, 4, 2, 70, 90, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL},
    {F16, 2, 4, 2, 97, 97, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_DTYPE},
    {BF16, 3, 4, 1, 60, 130, 128, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_PADDING},
    {BF16, 2, 4, 4, 33, 40, 128, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_DTYPE},
    {BF16, 3, 8, 2, 1, 704, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL},
    {F16, 3, 8, 2, 3, 300, 64, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_PADDING},
    {F32, 4, 4, 2, 40, 50, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, CASE_BIAS_FULL},
    {BF16, 2, 4, 2, 50, 70, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 2.0f, 0, 2, 0, 0, CASE_BIAS_FULL},
    {F32, 2, 2, 2, 30, 50, 80, 0, 1, DSTRIDE2, -0.2f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL},
    {BF16, 2, 4, 2, 60, 80, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, CASE_BIAS_DTYPE},
    {BF16, 2, 4, 4, 40, 40, 192, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 128, CASE_BIAS_FULL},
    {F32, 2, 2, 2, 50, 60, 256, 0, 1, CONTIG, 0, 0, 0, 20, 5, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL},
};

/* Split-KV: with more worker threads than jobs, a call cuts each job's keys into parts and combines
 * them (src/runtime/split_kv.c). A context of 64 threads makes every case below split (checked): one
 * or a few jobs against long caches, a last part shorter than the others, a strided head dim and LSE,
 * head dim 256, and causal rows past a short cache's diagonal (parts, or all of a row's parts, seeing
 * no key). */
static const test_case split_cases[] = {
    {BF16, 1, 8, 2, 1, 5000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 4, 1, 3, 2049, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F16, 2, 2, 2, 1, 1500, 80, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 1, 1, 1, 1100, 1030, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {BF16, 1, 4, 4, 16, 3000, 256, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* with seqlens_kv: parts past a short sequence's end, and a sequence of no keys */
    {F32, 3, 4, 1, 1, 4000, 64, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* an fp8 cache: each part scales its values */
    {BF16, 1, 8, 2, 1, 5000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0},
    /* v's own head dim: the parts' rows and the combine's are v's */
    {BF16, 1, 8, 2, 1, 5000, 192, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 128, 0},
    {F32, 2, 4, 1, 2, 3000, 64, 1, 1, LSESTRIDED, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 96, 0},
    {BF16, 1, 16, 1, 1, 3000, 576, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 512, 0},
    /* paged, parts starting inside a page */
    {BF16, 1, 8, 2, 1, 4000, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* sliding windows: the parts cover the window, not the cache (a short varlen sequence's window
     * starts at its key 0) */
    {BF16, 1, 8, 2, 1, 5000, 128, 1, 1, CONTIG, 0, 0, 0, 1500, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    {F32, 3, 4, 1, 2, 4000, 64, 1, 1, CONTIG, 0, 1, 0, 1100, -1, 0, 0, 0, 0, 0, 0, 0, 0},
    /* ragged queries: the parts keep seqlen_q rows per sequence, the combine writes each sequence's */
    {BF16, 2, 8, 2, 4, 4000, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    {F32, 2, 4, 4, 3, 3000, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
    /* sinks: held by the first part, counted once by the combine (a sequence of no keys: every part
     * empty but for the sink, LSE the sink) */
    {BF16, 1, 8, 2, 1, 5000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    {F32, 3, 4, 1, 1, 4000, 64, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0},
    /* soft-capped parts */
    {BF16, 1, 8, 2, 1, 5000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0},
    /* packed keys: parts past a short sequence's end, a sequence of no keys; with ragged queries */
    {F32, 3, 4, 1, 1, 4000, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0, 0, 0},
    {BF16, 3, 8, 2, 4, 3000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0},
    /* ALiBi in parts (each part its keys' own distances) */
    {BF16, 2, 8, 2, 1, 5000, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 2, 0, 0, 0},
};
#define SPLIT_WORKERS 64

static void run_split_cases(void) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.disable_disk_cache = 1;
  options.num_threads = SPLIT_WORKERS;
  fj_context *context = NULL;
  fj_status status = fj_context_create(&options, &context);
  check(status == FJ_OK, "fj_context_create(cpu, %d threads) = %s %s", SPLIT_WORKERS, fj_status_string(status),
        fj_last_error());
  if (status != FJ_OK) return;
  for (size_t i = 0; i < sizeof split_cases / sizeof split_cases[0]; i++) {
    const test_case *c = &split_cases[i];
    /* the parts the launch will use, from the kernel it will run */
    case_tensors t;
    int64_t splits = 0;
    if (case_tensors_create(c, base_seed, &t)) {
      fj_attention_args args;
      case_host_args(c, &t, &args);
      attention_problem problem;
      runtime_kernel *kernel = NULL;
      if (core_validate_attention(&args, &problem) == FJ_OK &&
          runtime_get_kernel(context, &problem, NULL, &kernel) == FJ_OK) {
        int p = param_index(kernel->family, "block_n");
        int block_n = p >= 0 ? kernel->config.values[p] : 0;
        splits = runtime_kv_splits(SPLIT_WORKERS, kernel->family->job_count(&problem, &kernel->config),
                                   runtime_job_keys(&problem, block_n), block_n);
      }
    }
    case_tensors_free(c, &t);
    char name[256];
    describe(c, name, sizeof name);
    check(splits > 1, "%s: split into %lld parts with %d threads", name, (long long)splits, SPLIT_WORKERS);
    run_case(context, c);
    give_workspace = 1;
    run_case(context, c);
    give_workspace = 0;
  }
  fj_context_destroy(context);
}

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

/* Every fp8 code through the kernel's conversion (case_fill_fp8_codes, checked exactly by
 * case_fp8_codes_wrong against core_e4m3_to_f32 / core_e5m2_to_f32, which test_core holds against the
 * formats' definitions), for fp32 queries (fp32 tiles) and bf16 ones with each product this CPU has
 * (fp32 tiles, or bf16 pairs). */
static void run_fp8_codes(fj_context *context) {
  int p = param_index(&attention_fwd_cpu_family, "bf16_dot");
  const jit_target *target = runtime_target(context);
  int has_pairs = p >= 0 && target->has_avx512bf16 && target->vector_bits >= 512;  /* both products */
  for (int kv = DTYPE_E4M3; kv <= DTYPE_E5M2; kv++)
    for (int run = 0; run < 3; run++) {
      if (run == 2 && !has_pairs) continue;
      test_case c = {run == 0 ? F32 : BF16, 256, 1, 1, 1, 1, 16, 0, 1, CONTIG, 1.0f, 0, 0, -1, -1, 0, 0, 0, 0, 0, kv, 0, 0};
      case_tensors t;
      int ok = case_tensors_create(&c, base_seed, &t), wrong = 0, first = -1;
      fj_status status = FJ_INTERNAL;
      if (ok) {
        case_fill_fp8_codes(&c, &t);
        fj_attention_args args;
        case_host_args(&c, &t, &args);
        char config_text[256] = "";
        flip_bf16_dot = run == 2;
        status = forward(context, &args, config_text, sizeof config_text);
        flip_bf16_dot = 0;
        if (status == FJ_OK) wrong = case_fp8_codes_wrong(&c, &t, &first);
      }
      check(ok && status == FJ_OK && wrong == 0, "every %s code with %s queries%s: %s; %d codes wrong (first 0x%02x)",
            core_dtype_name((dtype_id)kv), core_dtype_name(c.dtype), run == 2 ? " (the other product)" : "",
            ok ? fj_status_string(status) : "allocation failed", wrong, first < 0 ? 0 : first);
      case_tensors_free(&c, &t);
    }
}

/* The bf16 cases again with the product the default did not take, where this CPU has both: a CPU
 * whose pair dot is fast (AMD's) defaults to the pairs (bf16_dot=1), others with AVX512-BF16 to fp32
 * FMAs, and the other product must stay right too. */
static void run_other_bf16_product(fj_context *context) {
  const jit_target *target = runtime_target(context);
  int p = param_index(&attention_fwd_cpu_family, "bf16_dot");
  check(p >= 0, "attention_fwd_cpu has a bf16_dot parameter");
  if (p < 0 || !target->has_avx512bf16 || target->vector_bits < 512) {
    printf("skip: the bf16 products in pairs (bf16_dot=1) need AVX512-BF16, which this CPU lacks: its default, "
           "fp32 FMAs, ran above\n");
    return;
  }
  flip_bf16_dot = 1;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (cases[i].dtype == BF16) run_case(context, &cases[i]);
  flip_bf16_dot = 0;
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
  run_split_cases();
  run_fp8_codes(context);
  run_other_bf16_product(context);
  printf("total %.1f s\n", (now_ms() - start) / 1e3);

  fj_context_destroy(context);
  return check_summary();
}
