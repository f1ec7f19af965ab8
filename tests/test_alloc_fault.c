/* test_alloc_fault.c: the library when memory runs out, the way SQLite's malloc fault tests test
 * SQLite. This program replaces malloc, calloc, realloc and free (glibc allows it; the replacements
 * call glibc's own) so that the Nth allocation made by flashjit, SQLite or libc on flashjit's behalf
 * fails: once, or from then on. LLVM's and libstdc++'s allocations never fail (LLVM aborts when memory
 * runs out, by design) and are not counted; most runs keep LLVM out of the way, their kernels coming
 * from the disk cache, which a clean run fills first. For N = 1, 2, ... until the workload runs
 * through without reaching the Nth allocation, it creates a CPU context, runs two attention calls
 * (the first reads its tuned config from the tuning database: SQLite's allocations count too) and
 * destroys the context; then once more with one call that compiles its kernel and writes it to the
 * disk cache.
 * Every call must return; an error must come with a message; a call that says FJ_OK must have
 * written the right result; and once the context is destroyed, every allocation made since it was
 * created must be freed (no leak on any error path). Skips (77) under AddressSanitizer, which replaces
 * malloc itself, and where LLVM is linked into this program (its allocations could not be told apart). */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "check.h"
#include "core/dtype.h"
#include "core/problem.h"
#include "core/reference.h"
#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "flashjit.h"
#include "kernels/kernel_family.h"
#include "runtime/runtime.h"
#include "test_files.h"

#if defined(__SANITIZE_ADDRESS__)
#define FJ_ALLOC_FAULT_SKIP "built with AddressSanitizer, which owns malloc"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FJ_ALLOC_FAULT_SKIP "built with AddressSanitizer, which owns malloc"
#endif
#endif

#ifndef FJ_ALLOC_FAULT_SKIP
/* ---- the allocator ------------------------------------------------------------------------------- */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void __libc_free(void *pointer);

/* Code whose allocations never fail and are not tracked: LLVM and the C++ runtime. */
#define MAX_EXEMPT 16
static struct {
  uintptr_t begin, end;
} exempt[MAX_EXEMPT];
static int exempt_count;
static int llvm_is_shared;

static int exempt_object(const char *name) {
  return strstr(name, "libLLVM") || strstr(name, "libstdc++") || strstr(name, "libgcc_s");
}

static int note_object(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size, (void)data;
  if (info->dlpi_name == NULL || !exempt_object(info->dlpi_name)) return 0;
  for (int i = 0; i < info->dlpi_phnum && exempt_count < MAX_EXEMPT; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    exempt[exempt_count].begin = info->dlpi_addr + ph->p_vaddr;
    exempt[exempt_count].end = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    exempt_count++;
  }
  if (strstr(info->dlpi_name, "libLLVM")) llvm_is_shared = 1;
  return 0;
}

static int is_exempt(const void *caller) {
  uintptr_t at = (uintptr_t)caller;
  for (int i = 0; i < exempt_count; i++)
    if (at >= exempt[i].begin && at < exempt[i].end) return 1;
  return 0;
}

/* The allocations made by the code under test and not yet freed: an open-addressing set of pointers. */
#define TRACK_SLOTS (1 << 18)
static void *tracked[TRACK_SLOTS];
static long tracked_count;
static int tracking;  /* set once the exempt ranges are known */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(const void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 46); }

static void track_add(void *p) {
  size_t i = slot_of(p);
  while (tracked[i] != NULL) i = (i + 1) & (TRACK_SLOTS - 1);
  tracked[i] = p;
  tracked_count++;
}

/* Removes p if tracked (backward-shift deletion keeps every probe chain whole). */
static void track_remove(void *p) {
  size_t i = slot_of(p);
  while (tracked[i] != NULL && tracked[i] != p) i = (i + 1) & (TRACK_SLOTS - 1);
  if (tracked[i] == NULL) return;
  tracked[i] = NULL;
  tracked_count--;
  for (size_t j = (i + 1) & (TRACK_SLOTS - 1); tracked[j] != NULL; j = (j + 1) & (TRACK_SLOTS - 1)) {
    size_t home = slot_of(tracked[j]);
    /* tracked[j] may move into the hole at i when its home is not cyclically in (i, j] */
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      tracked[i] = tracked[j];
      tracked[j] = NULL;
      i = j;
    }
  }
}

static struct {
  long fail_at;    /* the eligible allocation that fails, counted from arming; 0: disarmed */
  long seen;
  int persistent;  /* every later one fails too */
  int tripped;
} fault;

/* Decides for one eligible allocation (under the lock): 1 when it must fail. */
static int fault_hit(void) {
  if (fault.fail_at == 0) return 0;
  if (++fault.seen == fault.fail_at) fault.tripped = 1;
  return fault.seen == fault.fail_at || (fault.persistent && fault.tripped);
}

static void *allocated(void *p, const void *caller) {
  if (p != NULL && tracking && !is_exempt(caller)) {
    pthread_mutex_lock(&lock);
    track_add(p);
    pthread_mutex_unlock(&lock);
  }
  return p;
}

static int refuse(const void *caller) {
  if (!tracking || is_exempt(caller)) return 0;
  pthread_mutex_lock(&lock);
  int fail = fault_hit();
  pthread_mutex_unlock(&lock);
  return fail;
}

void *malloc(size_t size) {
  const void *caller = __builtin_return_address(0);
  if (refuse(caller)) {
    errno = ENOMEM;
    return NULL;
  }
  return allocated(__libc_malloc(size), caller);
}

void *calloc(size_t count, size_t size) {
  const void *caller = __builtin_return_address(0);
  if (refuse(caller)) {
    errno = ENOMEM;
    return NULL;
  }
  return allocated(__libc_calloc(count, size), caller);
}

void *realloc(void *pointer, size_t size) {
  const void *caller = __builtin_return_address(0);
  if (pointer == NULL) {
    if (refuse(caller)) {
      errno = ENOMEM;
      return NULL;
    }
    return allocated(__libc_realloc(NULL, size), caller);
  }
  if (size != 0 && refuse(caller)) {
    errno = ENOMEM;
    return NULL;  /* the block stays as it was */
  }
  void *moved = __libc_realloc(pointer, size);
  if (moved != NULL || size == 0) {
    pthread_mutex_lock(&lock);
    track_remove(pointer);
    if (moved != NULL && tracking && !is_exempt(caller)) track_add(moved);
    pthread_mutex_unlock(&lock);
  }
  return moved;
}

void free(void *pointer) {
  if (pointer == NULL) return;
  if (tracking) {
    pthread_mutex_lock(&lock);
    track_remove(pointer);
    pthread_mutex_unlock(&lock);
  }
  __libc_free(pointer);
}

static long outstanding(void) {
  pthread_mutex_lock(&lock);
  long n = tracked_count;
  pthread_mutex_unlock(&lock);
  return n;
}

static void fault_arm(long fail_at, int persistent) {
  pthread_mutex_lock(&lock);
  fault.fail_at = fail_at;
  fault.seen = 0;
  fault.persistent = persistent;
  fault.tripped = 0;
  pthread_mutex_unlock(&lock);
}

static int fault_disarm(void) {
  pthread_mutex_lock(&lock);
  int tripped = fault.tripped;
  fault.fail_at = 0;
  pthread_mutex_unlock(&lock);
  return tripped;
}

/* ---- the workload -------------------------------------------------------------------------------- */

/* One attention problem with its tensors, its float64 reference and room for the result. */
typedef struct case_data {
  const char *name;
  dtype_id dtype;
  int64_t q_shape[4], kv_shape[4], lse_shape[3];
  int causal;
  void *q, *k, *v, *o;
  float *lse;
  double *ref_o, *ref_lse;
  DLTensor tq, tk, tv, to, tlse;
  fj_attention_args args;
} case_data;

static DLDataType dl_type(dtype_id dtype) {
  DLDataType t = {kDLFloat, 32, 1};
  if (dtype == DTYPE_F16) t.bits = 16;
  if (dtype == DTYPE_BF16) t = (DLDataType){kDLBfloat, 16, 1};
  return t;
}

static int64_t elements(const int64_t *shape, int n) {
  int64_t count = 1;
  for (int i = 0; i < n; i++) count *= shape[i];
  return count;
}

static void case_make(case_data *c, const char *name, dtype_id dtype, int64_t batch, int64_t seqlen_q,
                      int64_t seqlen_kv, int64_t heads, int64_t kv_heads, int64_t head_dim, int causal,
                      unsigned seed) {
  memset(c, 0, sizeof *c);
  c->name = name;
  c->dtype = dtype;
  c->causal = causal;
  int64_t qs[4] = {batch, seqlen_q, heads, head_dim}, kvs[4] = {batch, seqlen_kv, kv_heads, head_dim};
  int64_t ls[3] = {batch, heads, seqlen_q};
  memcpy(c->q_shape, qs, sizeof qs);
  memcpy(c->kv_shape, kvs, sizeof kvs);
  memcpy(c->lse_shape, ls, sizeof ls);
  size_t bytes = (size_t)core_dtype_size(dtype);
  c->q = malloc((size_t)elements(qs, 4) * bytes);
  c->k = malloc((size_t)elements(kvs, 4) * bytes);
  c->v = malloc((size_t)elements(kvs, 4) * bytes);
  c->o = malloc((size_t)elements(qs, 4) * bytes);
  c->lse = malloc((size_t)elements(ls, 3) * sizeof(float));
  c->ref_o = malloc((size_t)elements(qs, 4) * sizeof(double));
  c->ref_lse = malloc((size_t)elements(ls, 3) * sizeof(double));
  if (!c->q || !c->k || !c->v || !c->o || !c->lse || !c->ref_o || !c->ref_lse) {
    fprintf(stderr, "out of memory before the test began\n");
    exit(1);
  }
  srand(seed);
  void *inputs[3] = {c->q, c->k, c->v};
  int64_t counts[3] = {elements(qs, 4), elements(kvs, 4), elements(kvs, 4)};
  for (int t = 0; t < 3; t++)
    for (int64_t i = 0; i < counts[t]; i++)
      core_store_from_f32(inputs[t], dtype, i, (float)rand() / (float)RAND_MAX * 2.0f - 1.0f);
  DLTensor base = {.device = {kDLCPU, 0}, .ndim = 4, .dtype = dl_type(dtype)};
  c->tq = base;
  c->tq.data = c->q;
  c->tq.shape = c->q_shape;
  c->tk = base;
  c->tk.data = c->k;
  c->tk.shape = c->kv_shape;
  c->tv = c->tk;
  c->tv.data = c->v;
  c->to = c->tq;
  c->to.data = c->o;
  c->tlse = (DLTensor){.data = c->lse, .device = {kDLCPU, 0}, .ndim = 3, .dtype = {kDLFloat, 32, 1},
                       .shape = c->lse_shape};
  fj_attention_args_init(&c->args);
  c->args.q = &c->tq;
  c->args.k = &c->tk;
  c->args.v = &c->tv;
  c->args.o = &c->to;
  c->args.lse = &c->tlse;
  c->args.causal = causal;
  attention_problem problem;
  if (core_validate_attention(&c->args, &problem) != FJ_OK ||
      core_reference_attention(&problem, c->ref_o, c->ref_lse) != FJ_OK) {
    fprintf(stderr, "%s: the reference failed: %s\n", name, fj_last_error());
    exit(1);
  }
}

static void case_free(case_data *c) {
  free(c->q), free(c->k), free(c->v), free(c->o), free(c->lse), free(c->ref_o), free(c->ref_lse);
}

/* The worse of o's and the LSE's relative errors against the reference (NaN when o is unreadable). */
static double case_error(case_data *c) {
  attention_problem problem;
  if (core_validate_attention(&c->args, &problem) != FJ_OK) return NAN;
  double e_o = core_relative_error_o(&problem, c->ref_o), e_lse = core_relative_error_lse(&problem, c->ref_lse);
  return e_o > e_lse || isnan(e_o) ? e_o : e_lse;
}

static void case_poison(case_data *c) {
  memset(c->o, 0xFF, (size_t)elements(c->q_shape, 4) * (size_t)core_dtype_size(c->dtype));
  memset(c->lse, 0xFF, (size_t)elements(c->lse_shape, 3) * sizeof(float));
}

#define CASES 3
static case_data cases[CASES];
static char cache_dir[64];

/* What one run of the workload saw: a description of the first thing that broke the contract, or "". */
typedef struct run_report {
  char broken[512];
  int calls_ok;  /* calls that returned FJ_OK */
} run_report;

static void broke(run_report *r, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void broke(run_report *r, const char *format, ...) {
  if (r->broken[0]) return;
  va_list ap;
  va_start(ap, format);
  vsnprintf(r->broken, sizeof r->broken, format, ap);
  va_end(ap);
}

/* An error status must come with a message that says why. */
static void check_status(run_report *r, fj_status s, const char *what) {
  if (s == FJ_OK) {
    r->calls_ok++;
    return;
  }
  const char *message = fj_last_error();
  if (message == NULL || message[0] == '\0') broke(r, "%s: %s with no message", what, fj_status_string(s));
}

/* How many cases a workload runs (the compiling mode runs the first alone: each compile takes LLVM a
 * few hundred milliseconds), and whether it empties the disk cache's kernels first. */
static int workload_cases = CASES, workload_compiles;

static void workload(run_report *r) {
  memset(r, 0, sizeof *r);
  if (workload_compiles) {
    char kernels[128];
    snprintf(kernels, sizeof kernels, "%s/kernels", cache_dir);
    remove_tree(kernels);
  }
  for (int i = 0; i < CASES; i++) case_poison(&cases[i]);
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.cache_dir = cache_dir;
  options.num_threads = 2;
  fj_context *context = (fj_context *)&options;  /* a wrong value the call must overwrite */
  fj_status s = fj_context_create(&options, &context);
  check_status(r, s, "fj_context_create");
  if (s != FJ_OK) {
    if (context != NULL) broke(r, "fj_context_create failed (%s) but left *out set", fj_status_string(s));
    return;
  }
  for (int i = 0; i < workload_cases; i++) {
    s = fj_attention_forward(context, &cases[i].args);
    check_status(r, s, cases[i].name);
    if (s == FJ_OK) {
      double error = case_error(&cases[i]);
      if (!(error <= core_dtype_tolerance(cases[i].dtype)))
        broke(r, "%s said FJ_OK with a wrong result (rel err %.3g)", cases[i].name, error);
    }
  }
  fj_context_destroy(context);
}

/* N = 1, 2, ... until the workload no longer reaches the Nth allocation. */
static void run_mode(const char *mode, int persistent, long baseline) {
  const long limit = 5000;
  long n, broken_runs = 0, leaking_runs = 0, failed_calls = 0;
  for (n = 1; n <= limit; n++) {
    run_report report;
    fault_arm(n, persistent);
    workload(&report);
    int tripped = fault_disarm();
    failed_calls += workload_cases + 1 - report.calls_ok;
    long left = outstanding() - baseline;
    if (report.broken[0]) {
      broken_runs++;
      check(0, "%s failure of allocation %ld: %s", mode, n, report.broken);
    }
    if (left != 0) {
      leaking_runs++;
      check(0, "%s failure of allocation %ld: %ld allocation(s) never freed", mode, n, left);
      baseline += left;  /* count each leak once */
    }
    if (!tripped) break;
  }
  check(n <= limit && n > 10, "%s failures: the workload runs through once no failure is reached (%ld allocations)", mode,
        n - 1);
  check(broken_runs == 0 && leaking_runs == 0,
        "%s failures of each of the %ld allocations: every call returned, each error with a message, every FJ_OK with "
        "the right result, nothing leaked (%ld calls failed cleanly; %ld runs broke the contract, %ld leaked)",
        mode, n - 1, failed_calls, broken_runs, leaking_runs);
}

/* A tuning database whose winner for the first case is the family's default config (so the calls
 * read SQLite and still load the cached kernel). */
static void make_tuning_db(void) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.cache_dir = cache_dir;
  fj_context *context = NULL;
  attention_problem problem;
  backend_device_info info;
  const kernel_family *family = kernel_family_for_backend("cpu");
  fj_status s = fj_context_create(&options, &context);
  if (s == FJ_OK) s = runtime_backend(context)->device_info(runtime_device_index(context), &info);
  if (s == FJ_OK) s = core_validate_attention(&cases[0].args, &problem);
  char key[256], config_text[256], path[128];
  kernel_config config;
  if (s == FJ_OK && family != NULL) {
    core_attention_key_string(&problem.key, key, sizeof key);
    family->default_config(&problem.key, runtime_target(context), &config);
    kernel_config_string(family, &config, config_text, sizeof config_text);
    snprintf(path, sizeof path, "%s/tuning.db", cache_dir);
    tuning_db *db = NULL;
    s = tuning_db_open(path, &db);
    tuning_device device = {.fingerprint = info.fingerprint, .backend = "cpu", .name = info.name, .arch = info.arch,
                            .driver_version = info.driver_version, .compute_units = info.compute_units,
                            .memory_bytes = info.memory_bytes};
    tuning_trial trial = {.problem_key = key, .family = family->name, .config = config_text,
                          .timing_method = runtime_timing_method(context), .batch = 1, .seqlen_q = 33,
                          .seqlen_kv = 47, .outcome = TRIAL_OK, .median_ms = 0.1, .min_ms = 0.1, .max_ms = 0.1,
                          .repeats = 1, .rel_err = 1e-6, .message = "",
                          .library_version = tuning_db_library_version(), .llvm_version = tuning_db_llvm_version(),
                          .generator_version = family->generator_version};
    if (s == FJ_OK) s = tuning_db_record_trial(db, &device, &trial, NULL);
    if (s == FJ_OK)
      s = tuning_db_update_winner(db, info.fingerprint, key, family->name, trial.timing_method,
                                  trial.library_version, trial.llvm_version, trial.generator_version);
    tuning_db_close(db);
  }
  fj_context_destroy(context);
  if (s != FJ_OK || family == NULL) {
    fprintf(stderr, "cannot make the tuning database: %s\n", fj_last_error());
    exit(1);
  }
}

int main(void) {
  dl_iterate_phdr(note_object, NULL);
  if (!llvm_is_shared || is_exempt((const void *)(uintptr_t)&main) || !is_exempt((const void *)(uintptr_t)&LLVMContextCreate)) {
    printf("skipped: LLVM is linked into this program (FLASHJIT_STATIC_LLVM), so its allocations cannot be told from "
           "flashjit's\n");
    return 77;
  }
  snprintf(cache_dir, sizeof cache_dir, "/tmp/fj-allocfault-XXXXXX");
  if (!mkdtemp(cache_dir)) {
    perror("mkdtemp");
    return 1;
  }
  case_make(&cases[0], "fp32 d64 causal GQA", DTYPE_F32, 1, 33, 47, 4, 2, 64, 1, 7);
  case_make(&cases[1], "bf16 d128", DTYPE_BF16, 2, 20, 20, 2, 2, 128, 0, 11);
  /* one job on two threads: split-KV, whose workspace is allocated in the call */
  case_make(&cases[2], "fp32 d64 MQA decode, split-KV", DTYPE_F32, 1, 1, 1100, 4, 1, 64, 1, 13);

  make_tuning_db();

  /* A clean run fills the disk cache (LLVM compiles here, untracked); a second one gives the
   * baseline of what stays allocated between runs (one-time initialisations). */
  tracking = 1;
  run_report report;
  workload(&report);
  check(report.broken[0] == '\0' && report.calls_ok == CASES + 1, "a clean run: %d of %d calls FJ_OK %s",
        report.calls_ok, CASES + 1, report.broken);
  workload(&report);
  long baseline = outstanding();
  workload(&report);
  check(outstanding() == baseline && report.calls_ok == CASES + 1,
        "a clean run from the disk cache leaves nothing allocated (%ld tracked before and after)", baseline);

  /* The fault machinery itself: the first allocation failing reaches the caller as an error. */
  fault_arm(1, 1);
  workload(&report);
  int tripped = fault_disarm();
  check(tripped && report.calls_ok == 0 && report.broken[0] == '\0',
        "no memory at all: fj_context_create fails with a message (%s)", fj_last_error());

  run_mode("single", 0, baseline);
  run_mode("persistent", 1, outstanding());
  /* The same with a compile and a write to the disk cache in the call, without the tuning database
   * (its allocations, tried above, would make this a thousand compiles). */
  char tuning_path[128], kept_path[128];
  snprintf(tuning_path, sizeof tuning_path, "%s/tuning.db", cache_dir);
  snprintf(kept_path, sizeof kept_path, "%s/kept.db", cache_dir);
  workload_cases = 1;
  workload_compiles = 1;
  if (rename(tuning_path, kept_path) == 0) run_mode("single (compiling)", 0, outstanding());
  else check(0, "moving %s aside: %s", tuning_path, strerror(errno));

  tracking = 0;
  for (int i = 0; i < CASES; i++) case_free(&cases[i]);
  remove_tree(cache_dir);
  return check_summary();
}
#else
/* Under AddressSanitizer this program defines no allocator of its own: ASan's must stay in charge. */
int main(void) {
  printf("skipped: %s\n", FJ_ALLOC_FAULT_SKIP);
  return 77;
}
#endif
