/* test_readme_example.c: the usage example in README.md, compiled and run. The code between the markers
 * below must appear verbatim in README.md (checked here, so the two cannot drift apart); its output is
 * compared with the float64 reference. */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/dtype.h"
#include "core/problem.h"
#include "core/reference.h"

/* README example: begin */
#include <flashjit.h>
#include <stdio.h>

/* o = causal attention(q, k, v) for fp32 host tensors laid out [batch, seqlen, heads, head_dim]. */
static int attention_fp32(fj_context *ctx, float *q, float *k, float *v, float *o, int64_t batch,
                          int64_t seqlen, int64_t heads, int64_t head_dim) {
  int64_t shape[4] = {batch, seqlen, heads, head_dim};
  DLTensor tq = {.data = q, .device = {kDLCPU, 0}, .ndim = 4, .dtype = {kDLFloat, 32, 1},
                 .shape = shape, .strides = NULL};  /* NULL strides: row-major */
  DLTensor tk = tq, tv = tq, to = tq;
  tk.data = k;
  tv.data = v;
  to.data = o;

  fj_attention_args args;
  fj_attention_args_init(&args);  /* scale 0 = 1/sqrt(head_dim), no LSE */
  args.q = &tq;
  args.k = &tk;
  args.v = &tv;
  args.o = &to;
  args.causal = 1;
  fj_status status = fj_attention_forward(ctx, &args);  /* compiles on first use, then reuses */
  if (status != FJ_OK) fprintf(stderr, "flashjit: %s: %s\n", fj_status_string(status), fj_last_error());
  return status == FJ_OK ? 0 : -1;
}

static int example(float *q, float *k, float *v, float *o) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";  /* the tensors are in host memory */
  fj_context *ctx = NULL;  /* create once and keep: it holds the compiled kernels */
  if (fj_context_create(&options, &ctx) != FJ_OK) {
    fprintf(stderr, "flashjit: %s\n", fj_last_error());
    return -1;
  }
  int rc = attention_fp32(ctx, q, k, v, o, 1, 256, 8, 64);  /* batch 1, 256 tokens, 8 heads, d 64 */
  fj_context_destroy(ctx);
  return rc;
}
/* README example: end */

#define EX_ELEMS (1 * 256 * 8 * 64)

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
  if (text && fread(text, 1, (size_t)size, f) != (size_t)size) {
    free(text);
    text = NULL;
  }
  if (text) text[size] = '\0';
  fclose(f);
  return text;
}

/* The example's source, from the line after the begin marker to the line before the end marker. */
static char *example_source(void) {
  char *self = read_text(FJ_TEST_SOURCE_DIR "/tests/test_readme_example.c");
  if (self == NULL) return NULL;
  const char *begin_marker = "/* README example: begin */\n", *end_marker = "/* README example: end */";
  /* The literals here hold a backslash-n, not a newline, so the first match is the real marker. */
  char *begin = strstr(self, begin_marker), *end = begin ? strstr(begin, end_marker) : NULL;
  char *block = NULL;
  if (begin && end) {
    begin += strlen(begin_marker);
    block = strndup(begin, (size_t)(end - begin));
  }
  free(self);
  return block;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

int main(void) {
  int failed = 0, passed = 0;
  char *readme = read_text(FJ_TEST_SOURCE_DIR "/README.md");
  char *block = example_source();
  int same = readme && block && block[0] && strstr(readme, block) != NULL;
  printf("%s README.md contains the example verbatim (%zu characters)\n", same ? "ok  " : "FAIL",
         block ? strlen(block) : 0);
  same ? passed++ : failed++;
  free(readme);
  free(block);

  char cache[] = "/tmp/fj_test_readme_XXXXXX";
  if (mkdtemp(cache) == NULL) return 1;
  setenv("FLASHJIT_CACHE_DIR", cache, 1);

  float *q = malloc(EX_ELEMS * sizeof *q), *k = malloc(EX_ELEMS * sizeof *k);
  float *v = malloc(EX_ELEMS * sizeof *v), *o = malloc(EX_ELEMS * sizeof *o);
  double *ref = malloc(EX_ELEMS * sizeof *ref);
  if (!q || !k || !v || !o || !ref) return 1;
  srand(12345);
  for (int i = 0; i < EX_ELEMS; i++) {
    q[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    k[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    v[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    o[i] = NAN;
  }
  int rc = example(q, k, v, o);
  printf("%s the example runs (rc %d)\n", rc == 0 ? "ok  " : "FAIL", rc);
  rc == 0 ? passed++ : failed++;

  /* The same problem through the validator, for the reference. */
  int64_t shape[4] = {1, 256, 8, 64};
  DLTensor tq = {.data = q, .device = {kDLCPU, 0}, .ndim = 4, .dtype = {kDLFloat, 32, 1}, .shape = shape};
  DLTensor tk = tq, tv = tq, to = tq;
  tk.data = k;
  tv.data = v;
  to.data = o;
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &tq;
  args.k = &tk;
  args.v = &tv;
  args.o = &to;
  args.causal = 1;
  attention_problem problem;
  double err = NAN;
  if (core_validate_attention(&args, &problem) == FJ_OK &&
      core_reference_attention(&problem, ref, NULL) == FJ_OK)
    err = core_relative_error_o(&problem, ref);
  int close = err <= core_dtype_tolerance(DTYPE_F32);
  printf("%s the example's output matches the float64 reference: rel_err %.3g (bound %.3g)\n",
         close ? "ok  " : "FAIL", err, core_dtype_tolerance(DTYPE_F32));
  close ? passed++ : failed++;

  free(q);
  free(k);
  free(v);
  free(o);
  free(ref);
  nftw(cache, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
