/* cmd_bench.c: `flashjit bench`: times the attention forward for one shape on one device. It builds the
 * kernel first (reporting how: compiled or loaded from the disk cache, and how long that took), then
 * times warmup + repeat calls and reports the median and the minimum; --check compares the output (and
 * the LSE) with the float64 reference and times that naive reference too, as a sanity scale. Every flag
 * is checked before anything is allocated, so a bad invocation is one line on stderr, never a crash. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "bench/cli.h"
#include "bench/json.h"
#include "core/dtype.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "core/reference.h"
#include "core/threadpool.h"
#include "flashjit.h"
#include "kernels/kernel_family.h"
#include "runtime/runtime.h"

#define BENCH_COMMAND "bench"
#define BENCH_MAX_HOST_BYTES (16.0 * 1024 * 1024 * 1024)
#define BENCH_GIB (1024.0 * 1024.0 * 1024.0)

void cmd_bench_help(FILE *out) {
  fprintf(out,
          "usage: flashjit bench [options]\n"
          "\n"
          "Times the attention forward o = softmax(q k^T / sqrt(d)) v for one shape on one device:\n"
          "the kernel is built first (compiled, or loaded from the disk cache), then timed over\n"
          "--warmup + --repeat calls; the median and the minimum are reported, and GFLOP/s from the\n"
          "median.\n"
          "\n"
          "  --device NAME        auto (the best device found), cpu, cuda:N, hip:N; default\n"
          "                       FLASHJIT_DEVICE, else auto\n"
          "  --batch N            default 1\n"
          "  --heads N            query heads, default 8\n"
          "  --kv-heads N         key/value heads (GQA/MQA), default = --heads; must divide --heads\n"
          "  --seqlen N           query length, default 2048\n"
          "  --seqlen-kv N        key/value length, default = --seqlen\n"
          "  --head-dim N         a multiple of 8 from 8 to 256, default 128\n"
          "  --dtype T            fp32, fp16 or bf16 (default)\n"
          "  --causal             causal mask aligned to the bottom-right corner\n"
          "  --check              compare o and the LSE with the float64 reference; exit 1 when the\n"
          "                       error is over the dtype's bound; also times the naive reference\n"
          "  --json               one JSON object instead of text\n"
          "  --warmup N           untimed calls before timing, default 2\n"
          "  --repeat N           timed calls, default 10\n"
          "  --config \"K=V ...\"   run this kernel config instead of the tuned or default one,\n"
          "                       e.g. the config string a previous run printed\n"
          "  --threads N          CPU worker threads, default 0 = one per core\n"
          "  --cache-dir DIR      compiled kernels; default FLASHJIT_CACHE_DIR or ~/.cache/flashjit\n"
          "\n"
          "exit status: 0 done (and checked, with --check), 1 failed or over the error bound, 2 bad usage\n");
}

typedef struct bench_options {
  const char *device;       /* NULL: FLASHJIT_DEVICE, else auto (what the library does with NULL) */
  char device_flag[256];    /* "--device=cpu" or "FLASHJIT_DEVICE=cpu": how messages name it */
  int64_t batch, heads, kv_heads, seqlen, seqlen_kv, head_dim;
  const char *dtype_name;
  int causal, check, json;
  int64_t warmup, repeat, threads;
  const char *config;
  const char *cache_dir;
  int kv_heads_set, seqlen_kv_set, config_set;
  dtype_id dtype;
} bench_options;

/* Everything a run produces, for the report. */
typedef struct bench_result {
  char device_name[256];
  char device_id[64];
  const char *backend;
  int threads;
  char family[64];
  char config[256];
  const char *config_from;  /* "--config", or "runtime": the tuned winner or the family's default */
  char kernel_source[16];
  double compile_ms;      /* as the runtime recorded it */
  double get_kernel_ms;   /* wall time of the lookup that built or loaded it */
  double first_call_ms;
  double ms_median, ms_min, ms_max;
  double flops, gflops;
  uint64_t seed;
  int checked;
  double rel_err, rel_err_lse, tolerance;
  double reference_ms;
  int check_passed;
} bench_result;

/* A problem's tensors and the path it runs through. */
typedef struct bench_run {
  fj_context *context;
  host_tensor q, k, v, o, lse;
  fj_attention_args args;
  attention_problem problem;
  const kernel_config *config;  /* NULL: the public fj_attention_forward path */
  runtime_kernel *kernel;
} bench_run;

static double bench_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int bench_compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* "--batch=1 --heads=8 ...": names every flag that sizes the problem, for messages about its size. */
static void bench_shape_flags(const bench_options *o, char *buffer, size_t size) {
  snprintf(buffer, size,
           "--batch=%" PRId64 " --heads=%" PRId64 " --kv-heads=%" PRId64 " --seqlen=%" PRId64
           " --seqlen-kv=%" PRId64 " --head-dim=%" PRId64 " --dtype=%s",
           o->batch, o->heads, o->kv_heads, o->seqlen, o->seqlen_kv, o->head_dim,
           core_dtype_name(o->dtype));
}

/* Host bytes the run needs: q, k, v, o (+ the LSE and the float64 reference with --check). In double
 * so that absurd sizes are compared, not overflowed. */
static double bench_host_bytes(const bench_options *o) {
  double elem = core_dtype_size(o->dtype);
  double d = (double)o->head_dim;
  double q_elems = (double)o->batch * (double)o->seqlen * (double)o->heads * d;
  double kv_elems = (double)o->batch * (double)o->seqlen_kv * (double)o->kv_heads * d;
  double rows = (double)o->batch * (double)o->heads * (double)o->seqlen;
  double bytes = (2.0 * q_elems + 2.0 * kv_elems) * elem;
  if (o->check) bytes += rows * 4.0 + q_elems * 8.0 + rows * 8.0;
  return bytes;
}

static double bench_memory_limit(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  double limit = BENCH_MAX_HOST_BYTES;
  if (pages > 0 && page > 0 && 0.75 * (double)pages * (double)page < limit)
    limit = 0.75 * (double)pages * (double)page;
  return limit;
}

/* Parses and checks every flag; CLI_EXIT_OK, or the exit code after printing the error (-1 for help). */
static int bench_parse(int argc, char **argv, bench_options *o) {
  memset(o, 0, sizeof *o);
  o->batch = 1;
  o->heads = 8;
  o->seqlen = 2048;
  o->head_dim = 128;
  o->dtype_name = "bf16";
  o->warmup = 2;
  o->repeat = 10;
  const cli_option options[] = {
      {"--device", CLI_STRING, &o->device, 0, 0, NULL},
      {"--batch", CLI_INT, &o->batch, 1, INT32_MAX, NULL},
      {"--heads", CLI_INT, &o->heads, 1, INT32_MAX, NULL},
      {"--kv-heads", CLI_INT, &o->kv_heads, 1, INT32_MAX, &o->kv_heads_set},
      {"--seqlen", CLI_INT, &o->seqlen, 1, INT32_MAX, NULL},
      {"--seqlen-kv", CLI_INT, &o->seqlen_kv, 0, INT32_MAX, &o->seqlen_kv_set},
      /* checked below, so that any out-of-range value gets the message that states the rule */
      {"--head-dim", CLI_INT, &o->head_dim, INT64_MIN, INT64_MAX, NULL},
      {"--dtype", CLI_STRING, &o->dtype_name, 0, 0, NULL},
      {"--causal", CLI_FLAG, &o->causal, 0, 0, NULL},
      {"--check", CLI_FLAG, &o->check, 0, 0, NULL},
      {"--json", CLI_FLAG, &o->json, 0, 0, NULL},
      {"--warmup", CLI_INT, &o->warmup, 0, 1000000, NULL},
      {"--repeat", CLI_INT, &o->repeat, 1, 1000000, NULL},
      {"--config", CLI_STRING, &o->config, 0, 0, &o->config_set},
      {"--threads", CLI_INT, &o->threads, 0, 4096, NULL},
      {"--cache-dir", CLI_STRING, &o->cache_dir, 0, 0, NULL},
  };
  switch (cli_parse(BENCH_COMMAND, argc, argv, options, (int)(sizeof options / sizeof options[0]))) {
    case CLI_PARSE_HELP: return -1;
    case CLI_PARSE_ERROR: return CLI_EXIT_USAGE;
    case CLI_PARSE_OK: break;
  }
  if (!o->kv_heads_set) o->kv_heads = o->heads;
  if (!o->seqlen_kv_set) o->seqlen_kv = o->seqlen;

  if (!core_dtype_parse(o->dtype_name, &o->dtype)) {
    cli_error(BENCH_COMMAND, "--dtype=%s: unknown dtype (fp32, fp16 or bf16)", o->dtype_name);
    return CLI_EXIT_USAGE;
  }
  if (o->head_dim < 8 || o->head_dim > 256 || o->head_dim % 8 != 0) {
    cli_error(BENCH_COMMAND, "--head-dim=%" PRId64 ": must be a multiple of 8 from 8 to 256", o->head_dim);
    return CLI_EXIT_USAGE;
  }
  if (o->heads % o->kv_heads != 0) {
    cli_error(BENCH_COMMAND, "--heads=%" PRId64 " --kv-heads=%" PRId64 ": heads must be a multiple of kv-heads",
              o->heads, o->kv_heads);
    return CLI_EXIT_USAGE;
  }
  const char *env_device = getenv("FLASHJIT_DEVICE");
  if (o->device != NULL)
    snprintf(o->device_flag, sizeof o->device_flag, "--device=%s", o->device);
  else if (env_device != NULL && env_device[0] != '\0')
    snprintf(o->device_flag, sizeof o->device_flag, "FLASHJIT_DEVICE=%s", env_device);
  else
    snprintf(o->device_flag, sizeof o->device_flag, "--device=auto");
  if (o->device != NULL && o->device[0] == '\0') {
    cli_error(BENCH_COMMAND, "--device=: empty device name (auto, cpu, cuda:N, hip:N)");
    return CLI_EXIT_USAGE;
  }
  if (o->cache_dir != NULL && o->cache_dir[0] == '\0') {
    cli_error(BENCH_COMMAND, "--cache-dir=: empty path");
    return CLI_EXIT_USAGE;
  }
  double bytes = bench_host_bytes(o), limit = bench_memory_limit();
  if (bytes > limit) {
    char shape[512];
    bench_shape_flags(o, shape, sizeof shape);
    cli_error(BENCH_COMMAND, "%s%s: needs %.1f GiB of host memory, over the limit of %.1f GiB", shape,
              o->check ? " --check" : "", bytes / BENCH_GIB, limit / BENCH_GIB);
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

/* One call of the kernel being measured. */
static fj_status bench_call(bench_run *run) {
  if (run->config == NULL) return fj_attention_forward(run->context, &run->args);
  return runtime_launch_attention(run->context, run->kernel, &run->problem, NULL);
}

/* q, k, v allocated and filled from seed, o allocated and poisoned. 0, or -1 after the error. */
static int bench_alloc(const bench_options *o, bench_run *run, uint64_t seed) {
  int64_t q_shape[4] = {o->batch, o->seqlen, o->heads, o->head_dim};
  int64_t kv_shape[4] = {o->batch, o->seqlen_kv, o->kv_heads, o->head_dim};
  struct {
    host_tensor *t;
    const char *name;
    const int64_t *shape;
  } tensors[] = {{&run->q, "q", q_shape}, {&run->k, "k", kv_shape}, {&run->v, "v", kv_shape},
                 {&run->o, "o", q_shape}};
  for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
    if (host_tensor_alloc(tensors[i].t, o->dtype, 4, tensors[i].shape, NULL) != 0) {
      char shape[512];
      bench_shape_flags(o, shape, sizeof shape);
      cli_error(BENCH_COMMAND, "%s: cannot allocate %s [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "]",
                shape, tensors[i].name, tensors[i].shape[0], tensors[i].shape[1], tensors[i].shape[2],
                tensors[i].shape[3]);
      return -1;
    }
  }
  host_tensor_fill_random(&run->q, seed);
  host_tensor_fill_random(&run->k, seed + 1);
  host_tensor_fill_random(&run->v, seed + 2);
  host_tensor_poison(&run->o);
  fj_attention_args_init(&run->args);
  run->args.q = &run->q.t;
  run->args.k = &run->k.t;
  run->args.v = &run->v.t;
  run->args.o = &run->o.t;
  run->args.causal = o->causal;
  return 0;
}

static void bench_free(bench_run *run) {
  host_tensor_free(&run->q);
  host_tensor_free(&run->k);
  host_tensor_free(&run->v);
  host_tensor_free(&run->o);
  host_tensor_free(&run->lse);
}

/* Prints "flashjit bench: <what>: <status>: <fj_last_error()>". */
static int bench_fail(const char *what, fj_status status) {
  const char *detail = fj_last_error();
  cli_error(BENCH_COMMAND, "%s: %s%s%s", what, fj_status_string(status), detail[0] ? ": " : "", detail);
  return CLI_EXIT_FAILURE;
}

/* Poisons o and the LSE, runs once, and measures both against the reference. */
static int bench_check(const bench_options *o, bench_run *run, bench_result *r) {
  int64_t lse_shape[3] = {o->batch, o->heads, o->seqlen};
  if (host_tensor_alloc(&run->lse, DTYPE_F32, 3, lse_shape, NULL) != 0) {
    cli_error(BENCH_COMMAND, "--check: cannot allocate the LSE [%" PRId64 ", %" PRId64 ", %" PRId64 "]",
              lse_shape[0], lse_shape[1], lse_shape[2]);
    return CLI_EXIT_FAILURE;
  }
  size_t q_elems = (size_t)(o->batch * o->seqlen * o->heads * o->head_dim);
  size_t rows = (size_t)(o->batch * o->heads * o->seqlen);
  double *ref_o = malloc((q_elems ? q_elems : 1) * sizeof *ref_o);
  double *ref_lse = malloc((rows ? rows : 1) * sizeof *ref_lse);
  if (ref_o == NULL || ref_lse == NULL) {
    free(ref_o);
    free(ref_lse);
    cli_error(BENCH_COMMAND, "--check: cannot allocate the float64 reference (%.1f GiB)",
              (double)(q_elems + rows) * 8.0 / BENCH_GIB);
    return CLI_EXIT_FAILURE;
  }

  /* The run being timed (no LSE) is checked as it was timed; a second run with the LSE checks that
   * path too, with the same config when one was forced. */
  int exit_code = CLI_EXIT_OK;
  fj_attention_args with_lse = run->args;
  with_lse.lse = &run->lse.t;
  attention_problem problem_lse;
  fj_status status = core_validate_attention(&with_lse, &problem_lse);
  double t0 = bench_now_ms();
  if (status == FJ_OK) status = core_reference_attention(&problem_lse, ref_o, ref_lse);
  r->reference_ms = bench_now_ms() - t0;
  if (status != FJ_OK) {
    exit_code = bench_fail("--check: reference", status);
    goto done;
  }

  host_tensor_poison(&run->o);
  status = bench_call(run);
  if (status != FJ_OK) {
    exit_code = bench_fail("--check: forward", status);
    goto done;
  }
  double err_o = core_relative_error_o(&run->problem, ref_o);

  host_tensor_poison(&run->o);
  host_tensor_poison(&run->lse);
  if (run->config == NULL) {
    status = fj_attention_forward(run->context, &with_lse);
  } else {
    runtime_kernel *kernel = NULL;
    status = runtime_get_kernel(run->context, &problem_lse, run->config, &kernel);
    if (status == FJ_OK) status = runtime_launch_attention(run->context, kernel, &problem_lse, NULL);
  }
  if (status != FJ_OK) {
    exit_code = bench_fail("--check: forward with LSE", status);
    goto done;
  }
  double err_o_lse = core_relative_error_o(&problem_lse, ref_o);
  r->rel_err_lse = core_relative_error_lse(&problem_lse, ref_lse);
  /* NaN-safe: a NaN error must read as a failure, and fmax would drop it */
  r->rel_err = (isnan(err_o) || err_o > err_o_lse) ? err_o : err_o_lse;
  r->tolerance = core_dtype_tolerance(o->dtype);
  r->checked = 1;
  r->check_passed = r->rel_err <= r->tolerance && r->rel_err_lse <= r->tolerance;

done:
  free(ref_o);
  free(ref_lse);
  return exit_code;
}

static void bench_print_text(const bench_options *o, const bench_result *r) {
  printf("device      %s (%s, %d thread%s)\n", r->device_name, r->device_id, r->threads,
         r->threads == 1 ? "" : "s");
  printf("problem     batch %" PRId64 ", heads %" PRId64 " (kv %" PRId64 "), seqlen %" PRId64 " x %" PRId64
         ", head_dim %" PRId64 ", %s%s\n",
         o->batch, o->heads, o->kv_heads, o->seqlen, o->seqlen_kv, o->head_dim, core_dtype_name(o->dtype),
         o->causal ? ", causal" : "");
  printf("kernel      %s %s (%s)\n", r->family, r->config,
         o->config ? "from --config" : "the runtime's choice: tuned or default");
  printf("build       %s, %.1f ms; first call %.2f ms\n", r->kernel_source, r->compile_ms, r->first_call_ms);
  printf("time        %.3f ms median, %.3f ms min, %.3f ms max (%" PRId64 " runs after %" PRId64 " warmup)\n",
         r->ms_median, r->ms_min, r->ms_max, o->repeat, o->warmup);
  printf("rate        %.1f GFLOP/s (%.4g FLOP per call)\n", r->gflops, r->flops);
  if (r->checked) {
    printf("check       %s: rel_err %.3g, lse rel_err %.3g, bound %.3g (%s)\n",
           r->check_passed ? "ok" : "FAILED", r->rel_err, r->rel_err_lse, r->tolerance,
           core_dtype_name(o->dtype));
    printf("reference   %.1f ms (naive float64), speedup vs reference %.1fx\n", r->reference_ms,
           r->ms_median > 0.0 ? r->reference_ms / r->ms_median : 0.0);
  }
}

static void bench_print_json(const bench_options *o, const bench_result *r) {
  json_writer w;
  json_init(&w, stdout);
  json_object_begin(&w);
  json_kv_string(&w, "device", r->device_name);
  json_kv_string(&w, "device_id", r->device_id);
  json_kv_string(&w, "backend", r->backend);
  json_kv_int(&w, "threads", r->threads);
  json_kv_string(&w, "dtype", core_dtype_name(o->dtype));
  json_kv_int(&w, "batch", o->batch);
  json_kv_int(&w, "heads", o->heads);
  json_kv_int(&w, "kv_heads", o->kv_heads);
  json_kv_int(&w, "seqlen", o->seqlen);
  json_kv_int(&w, "seqlen_kv", o->seqlen_kv);
  json_kv_int(&w, "head_dim", o->head_dim);
  json_kv_bool(&w, "causal", o->causal);
  json_kv_string(&w, "family", r->family);
  json_kv_string(&w, "config", r->config);
  json_kv_string(&w, "config_from", r->config_from);
  json_kv_string(&w, "kernel_source", r->kernel_source);
  json_kv_double(&w, "compile_ms", r->compile_ms);
  json_kv_double(&w, "get_kernel_ms", r->get_kernel_ms);
  json_kv_double(&w, "first_call_ms", r->first_call_ms);
  json_kv_int(&w, "warmup", o->warmup);
  json_kv_int(&w, "repeat", o->repeat);
  json_kv_double(&w, "ms", r->ms_median);
  json_kv_double(&w, "ms_min", r->ms_min);
  json_kv_double(&w, "ms_max", r->ms_max);
  json_kv_double(&w, "flops", r->flops);
  json_kv_double(&w, "gflops", r->gflops);
  json_kv_uint(&w, "seed", r->seed);
  if (r->checked) {
    json_kv_double(&w, "rel_err", r->rel_err);
    json_kv_double(&w, "rel_err_lse", r->rel_err_lse);
    json_kv_double(&w, "tolerance", r->tolerance);
    json_kv_string(&w, "check", r->check_passed ? "pass" : "fail");
    json_kv_double(&w, "reference_ms", r->reference_ms);
    json_kv_double(&w, "speedup_vs_reference", r->ms_median > 0.0 ? r->reference_ms / r->ms_median : 0.0);
  }
  json_object_end(&w);
  json_finish(&w);
}

/* Opens the device the flags name; CLI_EXIT_OK or the exit code after the error. */
static int bench_open(const bench_options *o, bench_run *run) {
  const fj_backend *backend = NULL;
  int index = 0;
  fj_status status = backend_select(o->device, &backend, &index);
  if (status != FJ_OK) {
    cli_error(BENCH_COMMAND, "%s: %s", o->device_flag, fj_last_error());
    return status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
  }
  if (backend->device_type != kDLCPU) {
    /* The backend table has no memory slots yet, so host tensors are all bench can make. */
    cli_error(BENCH_COMMAND, "%s: bench cannot allocate %s device memory yet", o->device_flag,
              backend->name);
    return CLI_EXIT_FAILURE;
  }
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = o->device;
  options.cache_dir = o->cache_dir;
  options.num_threads = (int)o->threads;
  status = fj_context_create(&options, &run->context);
  if (status != FJ_OK) {
    char flag[4200];
    if (status == FJ_IO && o->cache_dir)
      snprintf(flag, sizeof flag, "--cache-dir=%s", o->cache_dir);
    else
      snprintf(flag, sizeof flag, "%s", o->device_flag);
    cli_error(BENCH_COMMAND, "%s: %s: %s", flag, fj_status_string(status), fj_last_error());
    return status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

/* Warmup, then repeat timed calls into times[]; CLI_EXIT_OK or the exit code after the error. */
static int bench_time(const bench_options *o, bench_run *run, bench_result *r) {
  double t0 = bench_now_ms();
  fj_status status = bench_call(run);
  r->first_call_ms = bench_now_ms() - t0;
  if (status != FJ_OK) return bench_fail("forward", status);
  for (int64_t i = 0; i < o->warmup; i++) {
    status = bench_call(run);
    if (status != FJ_OK) return bench_fail("forward", status);
  }
  double *times = malloc((size_t)o->repeat * sizeof *times);
  if (times == NULL) {
    cli_error(BENCH_COMMAND, "--repeat=%" PRId64 ": cannot allocate the timings", o->repeat);
    return CLI_EXIT_FAILURE;
  }
  for (int64_t i = 0; i < o->repeat; i++) {
    t0 = bench_now_ms();
    status = bench_call(run);
    times[i] = bench_now_ms() - t0;
    if (status != FJ_OK) {
      free(times);
      return bench_fail("forward", status);
    }
  }
  qsort(times, (size_t)o->repeat, sizeof *times, bench_compare_doubles);
  size_t n = (size_t)o->repeat;
  r->ms_median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  r->ms_min = times[0];
  r->ms_max = times[n - 1];
  free(times);
  r->flops = core_attention_flops(&run->problem);
  r->gflops = r->ms_median > 0.0 ? r->flops / (r->ms_median * 1e-3) / 1e9 : 0.0;
  return CLI_EXIT_OK;
}

/* The family of the context's device, and the --config text parsed against it (before any tensor is
 * allocated, so a typo costs nothing). CLI_EXIT_OK or the exit code after the error. */
static int bench_family(const bench_options *o, bench_run *run, bench_result *r, kernel_config *forced) {
  const fj_backend *backend = runtime_backend(run->context);
  const kernel_family *family = kernel_family_for_backend(backend->name);
  if (family == NULL) {
    cli_error(BENCH_COMMAND, "%s: no attention kernel family for the %s backend", o->device_flag,
              backend->name);
    return CLI_EXIT_FAILURE;
  }
  snprintf(r->family, sizeof r->family, "%s", family->name);
  if (o->config == NULL) return CLI_EXIT_OK;
  char why[256] = "";
  if (kernel_config_parse(family, o->config, forced, why, sizeof why) != 0) {
    cli_error(BENCH_COMMAND, "--config=\"%s\": %s", o->config, why);
    return CLI_EXIT_USAGE;
  }
  run->config = forced;
  return CLI_EXIT_OK;
}

/* Resolves the kernel for the validated problem: the forced config (checked against this problem and
 * target) or the runtime's own choice, and records how it was obtained. */
static int bench_kernel(const bench_options *o, bench_run *run, bench_result *r) {
  if (run->config != NULL) {
    const kernel_family *family = kernel_family_for_backend(runtime_backend(run->context)->name);
    char why[256] = "";
    if (!family->config_valid(&run->problem.key, runtime_target(run->context), run->config, why,
                              sizeof why)) {
      cli_error(BENCH_COMMAND, "--config=\"%s\": not valid for this problem on %s: %s", o->config,
                r->device_id, why);
      return CLI_EXIT_USAGE;
    }
  }
  double t0 = bench_now_ms();
  fj_status status = runtime_get_kernel(run->context, &run->problem, run->config, &run->kernel);
  r->get_kernel_ms = bench_now_ms() - t0;
  if (status != FJ_OK) return bench_fail("building the kernel", status);
  kernel_config_string(run->kernel->family, &run->kernel->config, r->config, sizeof r->config);
  r->config_from = o->config ? "--config" : "runtime";
  snprintf(r->kernel_source, sizeof r->kernel_source, "%s", run->kernel->source);
  r->compile_ms = run->kernel->compile_ms;
  return CLI_EXIT_OK;
}

int cmd_bench(int argc, char **argv) {
  bench_options o;
  int code = bench_parse(argc, argv, &o);
  if (code < 0) {
    cmd_bench_help(stdout);
    return CLI_EXIT_OK;
  }
  if (code != CLI_EXIT_OK) return code;

  bench_run run;
  memset(&run, 0, sizeof run);
  bench_result r;
  memset(&r, 0, sizeof r);
  kernel_config forced;
  memset(&forced, 0, sizeof forced);

  code = bench_open(&o, &run);
  if (code != CLI_EXIT_OK) return code;
  fj_context_device_name(run.context, r.device_name, sizeof r.device_name);
  r.backend = runtime_backend(run.context)->name;
  snprintf(r.device_id, sizeof r.device_id, "%s:%d", r.backend, runtime_device_index(run.context));
  r.threads = o.threads > 0 ? (int)o.threads : core_online_cores();
  code = bench_family(&o, &run, &r, &forced);
  if (code != CLI_EXIT_OK) goto done;

  /* Fresh inputs every run, as the tests do; the seed is reported so a failure can be replayed. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  r.seed = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  if (bench_alloc(&o, &run, r.seed) != 0) {
    code = CLI_EXIT_FAILURE;
    goto done;
  }
  fj_status status = core_validate_attention(&run.args, &run.problem);
  if (status != FJ_OK) {
    cli_error(BENCH_COMMAND, "%s", fj_last_error());
    code = status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
    goto done;
  }
  code = bench_kernel(&o, &run, &r);
  if (code == CLI_EXIT_OK) code = bench_time(&o, &run, &r);
  if (code == CLI_EXIT_OK && o.check) code = bench_check(&o, &run, &r);
  if (code == CLI_EXIT_OK) {
    if (o.json)
      bench_print_json(&o, &r);
    else
      bench_print_text(&o, &r);
    if (r.checked && !r.check_passed) {
      cli_error(BENCH_COMMAND, "--check: rel_err %.3g, lse rel_err %.3g: over the %s bound %.3g", r.rel_err,
                r.rel_err_lse, core_dtype_name(o.dtype), r.tolerance);
      code = CLI_EXIT_FAILURE;
    }
  }

done:
  bench_free(&run);
  fj_context_destroy(run.context);
  return code;
}
