/* test_disk_cache.c: the compiled-kernel cache seen from the runtime. A first context compiles and
 * stores; a second context (and a second process) loads from disk; a corrupted file is reported,
 * replaced by a fresh compile, and never crashes or gives wrong results; disable_disk_cache writes
 * nothing; an explicit config is a separate cache entry; and config text round-trips. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flashjit.h"
#include "core/host_tensor.h"
#include "core/log.h"
#include "core/problem.h"
#include "core/reference.h"
#include "runtime/runtime.h"
#include "check.h"
#include "test_files.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- one problem, fresh inputs per run ---- */

typedef struct instance {
  host_tensor q, k, v, o, lse;
  fj_attention_args args;
  attention_problem problem;
} instance;

static int instance_make(instance *x, uint64_t seed) {
  memset(x, 0, sizeof *x);
  int64_t q_shape[4] = {2, 200, 4, 64}, kv_shape[4] = {2, 150, 2, 64}, lse_shape[3] = {2, 4, 200};
  if (host_tensor_alloc(&x->q, DTYPE_F16, 4, q_shape, NULL) ||
      host_tensor_alloc(&x->k, DTYPE_F16, 4, kv_shape, NULL) ||
      host_tensor_alloc(&x->v, DTYPE_F16, 4, kv_shape, NULL) ||
      host_tensor_alloc(&x->o, DTYPE_F16, 4, q_shape, NULL) ||
      host_tensor_alloc(&x->lse, DTYPE_F32, 3, lse_shape, NULL))
    return -1;
  host_tensor_fill_random(&x->q, seed);
  host_tensor_fill_random(&x->k, seed + 1);
  host_tensor_fill_random(&x->v, seed + 2);
  host_tensor_poison(&x->o);
  host_tensor_poison(&x->lse);
  fj_attention_args_init(&x->args);
  x->args.q = &x->q.t;
  x->args.k = &x->k.t;
  x->args.v = &x->v.t;
  x->args.o = &x->o.t;
  x->args.lse = &x->lse.t;
  x->args.causal = 1;
  return core_validate_attention(&x->args, &x->problem) == FJ_OK ? 0 : -1;
}

static void instance_free(instance *x) {
  host_tensor_free(&x->q);
  host_tensor_free(&x->k);
  host_tensor_free(&x->v);
  host_tensor_free(&x->o);
  host_tensor_free(&x->lse);
}

/* Relative errors of o and lse against the float64 reference; 1 when within the fp16 tolerance. */
static int instance_correct(instance *x, double *err_o, double *err_lse) {
  const attention_problem *p = &x->problem;
  size_t n_o = (size_t)(p->batch * p->seqlen_q * p->key.heads * p->key.head_dim);
  size_t n_lse = (size_t)(p->batch * p->key.heads * p->seqlen_q);
  double *ref_o = malloc(n_o * sizeof(double)), *ref_lse = malloc(n_lse * sizeof(double));
  int ok = ref_o && ref_lse && core_reference_attention(p, ref_o, ref_lse) == FJ_OK;
  *err_o = ok ? core_relative_error_o(p, ref_o) : INFINITY;
  *err_lse = ok ? core_relative_error_lse(p, ref_lse) : INFINITY;
  free(ref_o);
  free(ref_lse);
  double tol = core_dtype_tolerance(DTYPE_F16);
  return ok && *err_o <= tol && *err_lse <= tol;
}

/* Gets the kernel (reporting where it came from), runs the public call, and checks the result. */
static void run_and_check(fj_context *context, const char *label, uint64_t seed, const char *expect_source) {
  instance x;
  if (instance_make(&x, seed) != 0) {
    check(0, "%s: setup failed: %s", label, fj_last_error());
    instance_free(&x);
    return;
  }
  runtime_kernel *kernel = NULL;
  double start = now_ms();
  fj_status s = runtime_get_kernel(context, &x.problem, NULL, &kernel);
  double ms = now_ms() - start;
  check(s == FJ_OK && kernel != NULL && strcmp(kernel->source, expect_source) == 0,
        "%s: kernel from \"%s\" (expected \"%s\"), %.1f ms in the call, compile_ms=%.1f", label,
        kernel ? kernel->source : "(none)", expect_source, ms, kernel ? kernel->compile_ms : 0.0);
  s = fj_attention_forward(context, &x.args);
  double err_o = 0, err_lse = 0;
  int ok = s == FJ_OK && instance_correct(&x, &err_o, &err_lse);
  check(ok, "%s: forward %s, err_o=%.2e err_lse=%.2e %s", label, fj_status_string(s), err_o, err_lse,
        fj_last_error());
  instance_free(&x);
}

static fj_context *open_context(const char *dir, int disable) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.cache_dir = dir;
  options.num_threads = 2;
  options.disable_disk_cache = disable;
  fj_context *context = NULL;
  fj_status s = fj_context_create(&options, &context);
  if (s != FJ_OK) check(0, "fj_context_create(cache_dir=%s): %s %s", dir, fj_status_string(s), fj_last_error());
  return context;
}

/* Regular files in dir/kernels (the cache's entries); the first one's name into first. */
static int count_entries(const char *dir, char *first, size_t first_size) {
  char path[4096];
  snprintf(path, sizeof path, "%s/kernels", dir);
  DIR *d = opendir(path);
  if (d == NULL) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == 0 && first) snprintf(first, first_size, "%s", e->d_name);
    n++;
  }
  closedir(d);
  return n;
}

/* Everything below dir, recursively, excluding dir itself. */
static int count_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    n++;
    char child[4096];
    snprintf(child, sizeof child, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(child, &st) == 0 && S_ISDIR(st.st_mode)) n += count_tree(child);
  }
  closedir(d);
  return n;
}

/* ---- captured log lines ---- */

static char log_text[65536];
static size_t log_used;

static void capture_sink(log_level level, const char *line, void *user) {
  int w = snprintf(log_text + log_used, sizeof log_text - log_used, "[%d] %s\n", (int)level, line);
  if (w > 0) log_used = log_used + (size_t)w < sizeof log_text ? log_used + (size_t)w : sizeof log_text - 1;
}

/* ---- the second process ---- */

static int child_main(const char *dir, uint64_t seed) {
  check_prefix = "child: ";  /* this process's lines, told apart from the parent's */
  double start = now_ms();
  fj_context *context = open_context(dir, 0);
  if (context == NULL) return 1;
  double opened = now_ms();
  run_and_check(context, "second process", seed, "disk");
  printf("child: context %.1f ms, kernel load + first call %.1f ms\n", opened - start, now_ms() - opened);
  fj_context_destroy(context);
  return failed ? 1 : 0;
}

static void run_child(const char *self, const char *dir, uint64_t seed) {
  char seed_text[32];
  snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    execl(self, self, "--child", dir, seed_text, (char *)NULL);
    perror("execl");
    _exit(127);
  }
  int status = 0;
  int waited = pid > 0 && waitpid(pid, &status, 0) == pid;
  check(waited && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "a second process loads the kernel from disk and computes correctly (exit %d)",
        waited && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ---- configs ---- */

static void test_configs(const char *dir, uint64_t seed) {
  fj_context *context = open_context(dir, 0);
  if (context == NULL) return;
  instance x;
  if (instance_make(&x, seed) != 0) {
    check(0, "config setup failed");
    instance_free(&x);
    fj_context_destroy(context);
    return;
  }
  runtime_kernel *kernel = NULL, *again = NULL;
  fj_status s = runtime_get_kernel(context, &x.problem, NULL, &kernel);
  check(s == FJ_OK, "default kernel: %s %s", fj_status_string(s), fj_last_error());
  if (s != FJ_OK) goto out;

  /* A repeated lookup is the table's fast path: same entry, no compile. */
  double start = now_ms();
  int lookups = 2000;
  for (int i = 0; i < lookups; i++) runtime_get_kernel(context, &x.problem, NULL, &again);
  double per_lookup_us = (now_ms() - start) * 1e3 / lookups;
  check(again == kernel, "repeated lookup returns the same kernel (%.2f us per lookup)", per_lookup_us);

  const kernel_family *family = kernel->family;
  char text[256], why[256];
  kernel_config_string(family, &kernel->config, text, sizeof text);
  kernel_config parsed;
  int rc = kernel_config_parse(family, text, &parsed, why, sizeof why);
  check(rc == 0 && memcmp(parsed.values, kernel->config.values, sizeof(int) * (size_t)family->num_params) == 0,
        "config \"%s\" round-trips through kernel_config_parse %s", text, why);
  static const char *const bad_texts[] = {"block_m=32", "nonsense=1", "block_m=x", "block_m",
                                          "block_m=16 block_m=16"};
  for (size_t i = 0; i < sizeof bad_texts / sizeof bad_texts[0]; i++) {
    rc = kernel_config_parse(family, bad_texts[i], &parsed, why, sizeof why);
    check(rc == -1 && why[0] != '\0', "kernel_config_parse(\"%s\") fails: %s", bad_texts[i], why);
  }
  /* A config stored before the optional parameters existed still parses, meaning their first values. */
  if (strcmp(family->name, "attention_fwd_cpu") == 0) {
    rc = kernel_config_parse(family, "block_m=32 block_n=12 unroll=2 vector=16 pv_rows=6 pv_vectors=4", &parsed,
                             why, sizeof why);
    int n = family->num_params;
    check(rc == 0 && n >= 2 && parsed.values[n - 2] == 0 && parsed.values[n - 1] == 0 &&
              strcmp(family->params[n - 2].name, "pack_gqa") == 0 && strcmp(family->params[n - 1].name, "bf16_dot") == 0,
          "a config without the optional pack_gqa and bf16_dot parses as pack_gqa=0 bf16_dot=0 %s", why);
    rc = kernel_config_parse(family, "block_m=32 block_n=12 unroll=2 vector=16 pv_rows=6", &parsed, why, sizeof why);
    check(rc == -1 && strstr(why, "pv_vectors"), "a config without a required parameter still fails: %s", why);
    /* a value the family does not list: the launch and the generator would read it differently */
    rc = kernel_config_parse(family, "block_m=32 block_n=12 unroll=2 vector=16 pv_rows=6 pv_vectors=4 pack_gqa=2",
                             &parsed, why, sizeof why);
    check(rc == -1 && strstr(why, "pack_gqa") && strstr(why, "(0,1)"), "pack_gqa=2 is refused, naming its values: %s",
          why);
    rc = kernel_config_parse(family, "block_m=32 block_n=13 unroll=2 vector=16 pv_rows=6 pv_vectors=4", &parsed, why,
                             sizeof why);
    check(rc == -1 && strstr(why, "block_n") && strstr(why, "=13"), "block_n=13 is refused: %s", why);
  }

  /* Another valid config (another value of one parameter) is its own kernel and its own file. */
  const jit_target *target = runtime_target(context);
  kernel_config other = kernel->config;
  int found = 0;
  for (int p = 0; p < family->num_params && !found; p++)
    for (int i = 0; i < family->params[p].num_values && !found; i++) {
      kernel_config candidate = kernel->config;
      candidate.values[p] = family->params[p].values[i];
      if (candidate.values[p] == kernel->config.values[p]) continue;
      if (family->config_valid(&x.problem.key, target, &candidate, why, sizeof why)) {
        other = candidate;
        found = 1;
      }
    }
  check(found, "found a second valid config for %s", family->name);
  if (found) {
    int before = count_entries(dir, NULL, 0);
    runtime_kernel *explicit_kernel = NULL;
    s = runtime_get_kernel(context, &x.problem, &other, &explicit_kernel);
    kernel_config_string(family, &other, text, sizeof text);
    check(s == FJ_OK && explicit_kernel != kernel && strcmp(explicit_kernel->source, "jit") == 0 &&
              count_entries(dir, NULL, 0) == before + 1,
          "explicit config \"%s\": %s, source \"%s\", cache entries %d -> %d", text, fj_status_string(s),
          explicit_kernel ? explicit_kernel->source : "", before, count_entries(dir, NULL, 0));
    if (s == FJ_OK) {
      s = runtime_launch_attention(context, explicit_kernel, &x.problem, NULL);
      double err_o = 0, err_lse = 0;
      int ok = s == FJ_OK && instance_correct(&x, &err_o, &err_lse);
      check(ok, "explicit config computes correctly: err_o=%.2e err_lse=%.2e", err_o, err_lse);
    }
  }

  /* A config the family refuses is the caller's error, with the family's reason. */
  kernel_config invalid = kernel->config;
  for (int p = 0; p < family->num_params; p++) invalid.values[p] = 7;
  runtime_kernel *none = NULL;
  s = runtime_get_kernel(context, &x.problem, &invalid, &none);
  check(s == FJ_INVALID_ARGUMENT && none == NULL && strstr(fj_last_error(), "cannot run") != NULL,
        "invalid explicit config: %s \"%s\"", fj_status_string(s), fj_last_error());
out:
  instance_free(&x);
  fj_context_destroy(context);
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "--child") == 0) {
    int rc = child_main(argv[2], strtoull(argv[3], NULL, 10));
    return rc;
  }
  uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  printf("seed %llu\n", (unsigned long long)seed);

  char dir[] = "/tmp/fj-test-cache-XXXXXX";
  char off_dir[] = "/tmp/fj-test-nocache-XXXXXX";
  if (mkdtemp(dir) == NULL || mkdtemp(off_dir) == NULL) {
    perror("mkdtemp");
    printf("0 passed, 1 failed\n");
    return 1;
  }
  printf("cache folder %s\n", dir);

  /* 1. A fresh folder: compiled, then stored. */
  fj_context *context = open_context(dir, 0);
  if (context != NULL) {
    run_and_check(context, "first context", seed, "jit");
    fj_context_destroy(context);
  }
  char entry[256] = "";
  int entries = count_entries(dir, entry, sizeof entry);
  check(entries == 1, "one cache entry after the first context: %d (%s)", entries, entry);

  /* 2. Same folder, new context: loaded, not compiled. */
  context = open_context(dir, 0);
  if (context != NULL) {
    run_and_check(context, "second context", seed + 10, "disk");
    fj_context_destroy(context);
  }

  /* 3. A damaged entry: a warning naming the file, a recompile, a correct result, a good entry. */
  char path[4400];
  snprintf(path, sizeof path, "%s/kernels/%s", dir, entry);
  FILE *f = fopen(path, "r+b");
  long size = 0;
  if (f != NULL) {
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    long offsets[3] = {size / 2, size / 2 + 1, size - 1};
    for (int i = 0; i < 3; i++) {
      fseek(f, offsets[i], SEEK_SET);
      int c = fgetc(f);
      fseek(f, offsets[i], SEEK_SET);
      fputc(c ^ 0x5A, f);
    }
    fclose(f);
  }
  check(f != NULL && size > 0, "corrupted 3 bytes of %s (%ld bytes)", path, size);
  log_used = 0;
  log_text[0] = '\0';
  core_log_set_sink(capture_sink, NULL);
  context = open_context(dir, 0);
  if (context != NULL) {
    run_and_check(context, "after corruption", seed + 20, "jit");
    fj_context_destroy(context);
  }
  core_log_set_sink(NULL, NULL);
  int warned = 0;
  for (char *line = log_text; line != NULL && *line;) {
    char *end = strchr(line, '\n');
    if (end) *end = '\0';
    if (strncmp(line, "[1]", 3) == 0 && strstr(line, entry) != NULL) warned = 1;
    printf("     log: %s\n", line);
    line = end ? end + 1 : NULL;
  }
  check(warned, "a warning names the corrupt file %s", entry);
  entries = count_entries(dir, NULL, 0);
  check(entries == 1, "the entry was rewritten: %d entries", entries);

  /* 4. Another process on the same folder. */
  run_child("/proc/self/exe", dir, seed + 30);

  /* 5. Explicit configs and config text. */
  test_configs(dir, seed + 40);

  /* 6. disable_disk_cache touches no file. */
  context = open_context(off_dir, 1);
  if (context != NULL) {
    run_and_check(context, "disable_disk_cache", seed + 50, "jit");
    fj_context_destroy(context);
  }
  int files = count_tree(off_dir);
  check(files == 0, "disable_disk_cache left %d files in %s", files, off_dir);

  remove_tree(dir);
  remove_tree(off_dir);
  return check_summary();
}
