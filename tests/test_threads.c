/* test_threads.c: one context used by four threads at once, as an inference server would. The
 * threads start together on the same new key (its first call races: one build, one table entry),
 * then run different shapes and dtypes, some shared between pairs of threads, then race once more on
 * another new key. Every result is checked against the reference. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flashjit.h"
#include "core/host_tensor.h"
#include "core/log.h"
#include "core/problem.h"
#include "core/reference.h"
#include "runtime/runtime.h"
#include "check.h"

#define THREADS 4

typedef struct shape {
  dtype_id dtype;
  int64_t batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim;
  int causal, lse;
} shape;

static const shape race_first = {DTYPE_F16, 1, 4, 2, 100, 100, 64, 1, 1};
static const shape race_last = {DTYPE_BF16, 2, 2, 1, 33, 65, 128, 0, 1};
/* Per thread: its own shapes, with [1] shared by threads 0/2 and 1/3 to race in the table too. */
static const shape own[THREADS][3] = {
    {{DTYPE_F32, 1, 2, 2, 90, 90, 128, 0, 1}, {DTYPE_F16, 1, 2, 1, 64, 130, 96, 1, 1}, {DTYPE_F32, 2, 2, 2, 31, 31, 64, 1, 0}},
    {{DTYPE_BF16, 1, 3, 1, 70, 70, 80, 1, 1}, {DTYPE_F32, 1, 4, 4, 50, 50, 64, 0, 0}, {DTYPE_BF16, 1, 2, 2, 120, 60, 64, 1, 1}},
    {{DTYPE_F16, 2, 4, 2, 40, 80, 64, 0, 1}, {DTYPE_F16, 1, 2, 1, 64, 130, 96, 1, 1}, {DTYPE_F32, 1, 8, 1, 20, 20, 256, 1, 1}},
    {{DTYPE_F32, 1, 2, 1, 100, 7, 64, 1, 1}, {DTYPE_F32, 1, 4, 4, 50, 50, 64, 0, 0}, {DTYPE_F16, 1, 1, 1, 200, 200, 8, 0, 1}},
};

static fj_context *context;
static pthread_barrier_t barrier;
static uint64_t base_seed;
static runtime_kernel *first_kernels[THREADS], *last_kernels[THREADS];

/* Counts the runtime's "kernel ... compiled" debug lines that name a given problem key: a race that
 * compiled twice would show two. Called from every thread. */
static char race_key_text[2][256];
static int race_compiles[2];
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;

static void count_compiles(log_level level, const char *line, void *user) {
  pthread_mutex_lock(&sink_lock);
  if (strstr(line, " compiled in ") != NULL)
    for (int i = 0; i < 2; i++)
      if (strstr(line, race_key_text[i]) != NULL) race_compiles[i]++;
  pthread_mutex_unlock(&sink_lock);
  if (level <= LOG_WARN) fprintf(stderr, "%s\n", line);
}

/* The key text of a shape, as the runtime logs it. */
static void shape_key_text(const shape *sh, char *buffer, size_t size) {
  attention_key key;
  memset(&key, 0, sizeof key);
  key.kind = PROBLEM_ATTENTION_FWD;
  key.dtype = (int)sh->dtype;
  key.head_dim = (int)sh->head_dim;
  key.heads = (int)sh->heads;
  key.kv_heads = (int)sh->kv_heads;
  key.causal = sh->causal;
  key.has_lse = sh->lse;
  key.d_contiguous = 1;
  key.seqlen_bucket = core_seqlen_bucket(sh->seqlen_q);
  core_attention_key_string(&key, buffer, size);
}

/* Runs one shape with fresh inputs, checks it, and returns the kernel the table holds for it. */
static runtime_kernel *run_shape(int thread, const char *label, const shape *sh, uint64_t seed) {
  int64_t q_shape[4] = {sh->batch, sh->seqlen_q, sh->heads, sh->head_dim};
  int64_t kv_shape[4] = {sh->batch, sh->seqlen_kv, sh->kv_heads, sh->head_dim};
  int64_t lse_shape[3] = {sh->batch, sh->heads, sh->seqlen_q};
  host_tensor q = {0}, k = {0}, v = {0}, o = {0}, lse = {0};
  runtime_kernel *kernel = NULL;
  char name[160];
  snprintf(name, sizeof name, "thread %d %s: %s b=%lld h=%lld hk=%lld sq=%lld skv=%lld d=%lld causal=%d",
           thread, label, core_dtype_name(sh->dtype), (long long)sh->batch, (long long)sh->heads,
           (long long)sh->kv_heads, (long long)sh->seqlen_q, (long long)sh->seqlen_kv,
           (long long)sh->head_dim, sh->causal);
  if (host_tensor_alloc(&q, sh->dtype, 4, q_shape, NULL) || host_tensor_alloc(&k, sh->dtype, 4, kv_shape, NULL) ||
      host_tensor_alloc(&v, sh->dtype, 4, kv_shape, NULL) || host_tensor_alloc(&o, sh->dtype, 4, q_shape, NULL) ||
      (sh->lse && host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL))) {
    check(0, "%s: allocation failed", name);
    goto out;
  }
  host_tensor_fill_random(&q, seed);
  host_tensor_fill_random(&k, seed + 1);
  host_tensor_fill_random(&v, seed + 2);
  host_tensor_poison(&o);
  if (sh->lse) host_tensor_poison(&lse);
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.lse = sh->lse ? &lse.t : NULL;
  args.causal = sh->causal;
  fj_status s = fj_attention_forward(context, &args);
  if (s != FJ_OK) {
    check(0, "%s: %s %s", name, fj_status_string(s), fj_last_error());
    goto out;
  }
  attention_problem problem;
  size_t n_o = (size_t)(sh->batch * sh->seqlen_q * sh->heads * sh->head_dim);
  size_t n_lse = (size_t)(sh->batch * sh->heads * sh->seqlen_q);
  double *ref_o = malloc(n_o * sizeof(double) + 8), *ref_lse = malloc(n_lse * sizeof(double) + 8);
  if (core_validate_attention(&args, &problem) != FJ_OK || ref_o == NULL || ref_lse == NULL ||
      core_reference_attention(&problem, ref_o, ref_lse) != FJ_OK) {
    check(0, "%s: reference failed", name);
  } else {
    double tol = core_dtype_tolerance(sh->dtype);
    double err_o = core_relative_error_o(&problem, ref_o);
    double err_lse = sh->lse ? core_relative_error_lse(&problem, ref_lse) : 0.0;
    check(err_o <= tol && err_lse <= tol, "%s: err_o=%.2e err_lse=%.2e", name, err_o, err_lse);
    if (runtime_get_kernel(context, &problem, NULL, &kernel) != FJ_OK) kernel = NULL;
  }
  free(ref_o);
  free(ref_lse);
out:
  host_tensor_free(&q);
  host_tensor_free(&k);
  host_tensor_free(&v);
  host_tensor_free(&o);
  host_tensor_free(&lse);
  return kernel;
}

static void *thread_main(void *arg) {
  int t = (int)(intptr_t)arg;
  uint64_t seed = base_seed + (uint64_t)t * 7919u;
  pthread_barrier_wait(&barrier);
  first_kernels[t] = run_shape(t, "race", &race_first, seed);
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 3; i++) run_shape(t, "own", &own[t][i], seed + 100 * (uint64_t)(round * 3 + i + 1));
  pthread_barrier_wait(&barrier);
  last_kernels[t] = run_shape(t, "race again", &race_last, seed + 5000);
  return NULL;
}

int main(void) {
  base_seed = (uint64_t)time(NULL);
  printf("seed %llu\n", (unsigned long long)base_seed);
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  /* More workers than this machine's cores, and an odd count: every scratch slot gets used. */
  options.num_threads = 5;
  options.disable_disk_cache = 1;  /* every first call compiles: the widest race window */
  fj_status s = fj_context_create(&options, &context);
  check(s == FJ_OK, "fj_context_create: %s %s", fj_status_string(s), fj_last_error());
  if (s != FJ_OK) {
    return check_summary();  /* the check above failed: exits 1 */
  }
  shape_key_text(&race_first, race_key_text[0], sizeof race_key_text[0]);
  shape_key_text(&race_last, race_key_text[1], sizeof race_key_text[1]);
  core_log_set_level(LOG_DEBUG);
  core_log_set_sink(count_compiles, NULL);
  pthread_barrier_init(&barrier, NULL, THREADS);
  pthread_t threads[THREADS];
  int started = 0;
  for (int t = 0; t < THREADS; t++)
    if (pthread_create(&threads[t], NULL, thread_main, (void *)(intptr_t)t) == 0) started++;
  check(started == THREADS, "started %d threads", started);
  if (started != THREADS) {
    /* The barrier would never open; nothing sensible is left to do. */
    return check_summary();  /* the check above failed: exits 1 */
  }
  for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  pthread_barrier_destroy(&barrier);
  core_log_set_sink(NULL, NULL);
  core_log_set_level(-1);

  int same_first = first_kernels[0] != NULL, same_last = last_kernels[0] != NULL;
  for (int t = 1; t < THREADS; t++) {
    same_first = same_first && first_kernels[t] == first_kernels[0];
    same_last = same_last && last_kernels[t] == last_kernels[0];
  }
  check(same_first && strcmp(first_kernels[0]->source, "jit") == 0,
        "racing first calls share one table entry (%s, %.1f ms)", same_first ? first_kernels[0]->source : "-",
        same_first ? first_kernels[0]->compile_ms : 0.0);
  check(same_last, "the second race shares one table entry too");
  check(race_compiles[0] == 1 && race_compiles[1] == 1,
        "each racing key compiled exactly once (%d and %d compiles)", race_compiles[0], race_compiles[1]);
  fj_context_destroy(context);
  return check_summary();
}
