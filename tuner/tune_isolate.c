/* tune_isolate.c: candidates run in child processes so that one that crashes, hangs or corrupts its
 * context loses itself and nothing else. The parent forks a child per batch of candidates; the child
 * builds its own context (never the parent's pool, locks or database handle, which fork does not carry
 * over in a usable state), reports START before and DONE after each candidate through a pipe, and the
 * parent watches the pipe with a deadline per candidate. A child that dies or overstays is reaped, the
 * candidate it was on is recorded as crash or timeout, and a fresh child takes the rest of the batch.
 *
 * Compiles run in a child too (several threads in it): LLVM aborts the process on some internal
 * errors, and that must cost one candidate, not the night's run. When a compile child with several
 * compiles in flight dies, the culprit is unknown, so the rest of that batch is compiled one at a time.
 *
 * Everything a child needs (inputs, the float64 reference) is computed by the parent before forking
 * and read from the child's copy of memory. Children leave with _exit: the parent's atexit handlers,
 * stdio buffers and LLVM's static destructors are not theirs to run.
 *
 * A GPU driver does not survive fork (CUDA's state is undefined in a forked child until it execs), so
 * for devices other than the CPU each child execs the tuner's program again (bench->child_exe, entry
 * tune_child_exec_main) and gets its work through a memory file: the scalars, the jobs and the
 * reference; it rebuilds the inputs from their seeds. A measuring child copies the inputs to the
 * device once, times each launch with the backend's timer, and after a launch error on a GPU reports
 * the candidate and exits, since a fault leaves its context unusable: the parent starts a fresh child
 * for the rest, so one faulting candidate costs only itself. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/reference.h"
#include "core/threadpool.h"
#include "runtime/runtime.h"
#include "tuner/tune_device.h"
#include "tuner/tune_internal.h"

double tune_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the child ----------------------------------------------------------------------------------- */

typedef struct tune_child {
  const tune_bench *bench;
  tune_mode mode;
  const tune_job *jobs;
  const int *list;          /* indices into jobs, in the order to run them */
  int count;
  int fd;                   /* the pipe's write end */
  fj_context *context;
  double best_ms;           /* the slow cutoff's reference, improved by this child's own results */
  /* Measuring: the inputs on the device (the host tensors themselves on the CPU) and the problems
   * whose views point at them. Checks read the host problems after a download. */
  tune_mirror q, k, v, o, table, lens, cu, sinks, cq, ck, cv, co, ctable, clens, ccu, csinks;
  attention_problem device_problem, device_check;
  host_tensor work_host;    /* split-KV: the workspace's host side (zeros) and its device twin */
  tune_mirror work;
  int context_lost;         /* a launch failed on a device whose context may be dead */
} tune_child;

static void tune_child_send(int fd, const tune_report *report) {
  /* One write of less than PIPE_BUF bytes is atomic, so compile threads need no lock here. A failed
   * write means the parent is gone; PDEATHSIG ends us soon anyway. */
  ssize_t n;
  do n = write(fd, report, sizeof *report);
  while (n < 0 && errno == EINTR);
}

static void tune_report_message(tune_report *report, const char *format, const char *detail) {
  snprintf(report->message, sizeof report->message, format, detail);
}

/* FLASHJIT_TUNE_FAULT="crash:<substr>;hang:<substr>;wrong:<substr>;fault:<substr>;lost:<substr>":
 * test-only faults, applied in the measuring child to candidates whose config text contains substr.
 * "fault" launches the candidate with q at address 0x8, a real invalid access by the kernel: on a GPU an
 * illegal-address error that kills the child's context, on the CPU a SIGSEGV. "lost" makes a good
 * launch report a driver error and the child leave as after a GPU fault, so the CPU tests cover that
 * path too. 1 when `kind` applies to config. */
static int tune_fault(const char *spec, const char *kind, const char *config) {
  if (spec == NULL) return 0;
  size_t kind_len = strlen(kind);
  const char *p = spec;
  while (*p) {
    size_t len = strcspn(p, ";");
    if (len > kind_len && strncmp(p, kind, kind_len) == 0 && p[kind_len] == ':') {
      char needle[200];
      size_t n = len - kind_len - 1;
      if (n >= sizeof needle) n = sizeof needle - 1;
      memcpy(needle, p + kind_len + 1, n);
      needle[n] = '\0';
      if (strstr(config, needle) != NULL) return 1;
    }
    p += len;
    if (*p == ';') p++;
  }
  return 0;
}

static int tune_compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* 1 when every element of the problem's o view is finite: a poisoned output that still holds a NaN
 * was not (fully) written. */
static int tune_output_finite(const attention_problem *problem) {
  const tensor_view *o = &problem->o;
  dtype_id dtype = (dtype_id)problem->key.dtype;
  for (int64_t b = 0; b < o->shape[0]; b++)
    for (int64_t s = 0; s < o->shape[1]; s++)
      for (int64_t h = 0; h < o->shape[2]; h++)
        for (int64_t d = 0; d < o->shape[3]; d++) {
          int64_t index = b * o->stride[0] + s * o->stride[1] + h * o->stride[2] + d * o->stride[3];
          if (!isfinite(core_load_as_f32(o->data, dtype, index))) return 0;
        }
  return 1;
}

/* Copies the measuring inputs to the device once per child: candidates only rewrite o. */
static fj_status tune_child_upload(tune_child *child) {
  const tune_bench *bench = child->bench;
  const tune_inputs *in = bench->inputs;
  fj_context *ctx = child->context;
  fj_status status = FJ_OK;
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->q, "q", &child->q);
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->k, "k", &child->k);
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->v, "v", &child->v);
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->o, "o", &child->o);
  if (status == FJ_OK && in->table.allocation)
    status = tune_mirror_upload(ctx, &in->table, "the block table", &child->table);
  if (status == FJ_OK && in->lens.allocation) status = tune_mirror_upload(ctx, &in->lens, "seqlens_kv", &child->lens);
  if (status == FJ_OK && in->cu.allocation) status = tune_mirror_upload(ctx, &in->cu, "cu_seqlens_q", &child->cu);
  if (status == FJ_OK && in->sinks.allocation) status = tune_mirror_upload(ctx, &in->sinks, "sinks", &child->sinks);
  if (status == FJ_OK)
    status = tune_device_problem(&child->q, &child->k, &child->v, &child->o, NULL,
                                 in->table.allocation ? &child->table : NULL, in->lens.allocation ? &child->lens : NULL,
                                 in->cu.allocation ? &child->cu : NULL, in->sinks.allocation ? &child->sinks : NULL,
                                 &in->problem, &child->device_problem);
  if (status != FJ_OK || in->check_is_problem) {
    child->device_check = child->device_problem;
    return status;
  }
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->cq, "the check problem's q", &child->cq);
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->ck, "the check problem's k", &child->ck);
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->cv, "the check problem's v", &child->cv);
  if (status == FJ_OK) status = tune_mirror_upload(ctx, &in->co, "the check problem's o", &child->co);
  if (status == FJ_OK && in->ctable.allocation)
    status = tune_mirror_upload(ctx, &in->ctable, "the check problem's block table", &child->ctable);
  if (status == FJ_OK && in->clens.allocation)
    status = tune_mirror_upload(ctx, &in->clens, "the check problem's seqlens_kv", &child->clens);
  if (status == FJ_OK && in->ccu.allocation)
    status = tune_mirror_upload(ctx, &in->ccu, "the check problem's cu_seqlens_q", &child->ccu);
  if (status == FJ_OK && in->csinks.allocation)
    status = tune_mirror_upload(ctx, &in->csinks, "the check problem's sinks", &child->csinks);
  if (status == FJ_OK)
    status = tune_device_problem(&child->cq, &child->ck, &child->cv, &child->co, NULL,
                                 in->ctable.allocation ? &child->ctable : NULL,
                                 in->clens.allocation ? &child->clens : NULL, in->ccu.allocation ? &child->ccu : NULL,
                                 in->csinks.allocation ? &child->csinks : NULL, &in->check, &child->device_check);
  return status;
}

/* Split-KV: a candidate whose launch would cut its keys into parts gets the workspace an inference
 * engine would give it (the child's one, grown when a candidate needs more), so that the tuner times
 * what calls will run (on a GPU, without one, a split_kv config would run unsplit). The children exit
 * rather than free their device memory. */
static fj_status tune_child_workspace(tune_child *child, const runtime_kernel *kernel, attention_problem *problem) {
  int64_t splits = 1;
  size_t bytes = 0;
  runtime_split_plan(child->context, kernel, problem, SIZE_MAX, &splits, &bytes);
  problem->workspace = NULL;
  problem->workspace_bytes = 0;
  if (bytes == 0) return FJ_OK;
  void *data = NULL;
  fj_status status = tune_workspace_ensure(child->context, bytes, &child->work_host, &child->work, &data);
  if (status != FJ_OK) return status;
  problem->workspace = data;
  problem->workspace_bytes = (int64_t)bytes;
  return FJ_OK;
}

/* The mirror of a host output tensor: the problem's o or the check problem's. */
static tune_mirror *tune_child_output(tune_child *child, const host_tensor *host) {
  return host == &child->bench->inputs->o ? &child->o : &child->co;
}

/* A launch failed: on a device with its own context (a GPU) that context may be dead (faults are
 * sticky), so the child reports this candidate and then leaves for a fresh one. */
static void tune_child_launch_error(tune_child *child, tune_report *r, const char *what) {
  r->outcome = TRIAL_LAUNCH_ERROR;
  snprintf(r->message, sizeof r->message, "%s: %s", what, fj_last_error());
  if (!tune_device_is_host(child->context)) child->context_lost = 1;
}

/* One launch, timed by itself: events around it on a GPU, the wall clock on the CPU. */
static fj_status tune_timed_launch(fj_context *ctx, const runtime_kernel *kernel,
                                   const attention_problem *problem, double *ms) {
  tune_timer timer;
  fj_status status = tune_timer_start(ctx, NULL, &timer);
  if (status != FJ_OK) return status;
  status = runtime_launch_attention(ctx, kernel, problem, NULL);
  fj_status stop = tune_timer_stop(ctx, NULL, &timer, ms);
  return status == FJ_OK ? stop : status;
}

/* Checks, then times one candidate in the child's context. */
static void tune_child_measure(tune_child *child, const tune_job *job, tune_report *r) {
  const tune_bench *bench = child->bench;
  fj_context *ctx = child->context;
  char config_text[256];
  kernel_config_string(bench->family, &job->config, config_text, sizeof config_text);
  r->rel_err = -1.0;

  runtime_kernel *kernel = NULL;
  fj_status status = runtime_get_kernel(ctx, &child->device_check, &job->config, &kernel);
  if (status != FJ_OK) {
    r->outcome = status == FJ_COMPILE_FAILED ? TRIAL_COMPILE_ERROR : TRIAL_LAUNCH_ERROR;
    tune_report_message(r, "loading: %s", fj_last_error());
    return;
  }
  if (tune_fault(bench->fault, "crash", config_text)) raise(SIGSEGV);
  if (tune_fault(bench->fault, "hang", config_text))
    for (;;) pause();

  tune_mirror *check_o = tune_child_output(child, bench->check_o);
  host_tensor_poison(bench->check_o);
  status = tune_child_workspace(child, kernel, &child->device_check);
  if (status == FJ_OK && bench->check_is_problem) {
    child->device_problem.workspace = child->device_check.workspace;
    child->device_problem.workspace_bytes = child->device_check.workspace_bytes;
  }
  if (status == FJ_OK) status = tune_mirror_refresh(ctx, check_o);
  if (status == FJ_OK) {
    attention_problem launched = child->device_check;
    if (tune_fault(bench->fault, "fault", config_text)) launched.q.data = (char *)(uintptr_t)0x8;
    status = runtime_launch_attention(ctx, kernel, &launched, NULL);
  }
  /* A GPU reports a fault in the kernel when the queue is next waited for: the download waits. */
  if (status == FJ_OK) status = tune_mirror_download(ctx, check_o);
  if (status == FJ_OK && tune_fault(bench->fault, "lost", config_text)) {
    /* What a GPU fault looks like to the child, on any device: an error, then a context to leave. */
    status = core_error(FJ_DRIVER, "injected device fault (FLASHJIT_TUNE_FAULT lost): illegal address");
    child->context_lost = 1;
  }
  if (status != FJ_OK) {
    tune_child_launch_error(child, r, "launch");
    return;
  }
  if (tune_fault(bench->fault, "wrong", config_text))
    core_store_from_f32(bench->check.o.data, (dtype_id)bench->check.key.dtype, 0, 100.0f);
  double err = core_relative_error_o(&bench->check, bench->check_ref);
  r->rel_err = isfinite(err) ? err : 1e30;
  if (!(err <= bench->tolerance)) {
    r->outcome = TRIAL_WRONG_RESULT;
    snprintf(r->message, sizeof r->message, "relative error %.3g over the %s bound %.3g%s", err,
             core_dtype_name((dtype_id)bench->check.key.dtype), bench->tolerance,
             bench->check_is_problem ? "" : " (on the check problem)");
    return;
  }

  /* The timed problem: the same binary (same generated code), a table entry of its own. Its first
   * run doubles as a warmup and as a check that every output element was written, and is timed:
   * when even this cold run is over twice the cutoff's margin it counts as one of the slow runs the
   * cutoff below waits for (most of a space is far slower than the best; this saves them a run). */
  double first_ms = 0.0;
  if (!bench->check_is_problem) {
    status = runtime_get_kernel(ctx, &child->device_problem, &job->config, &kernel);
    if (status == FJ_OK) status = tune_child_workspace(child, kernel, &child->device_problem);
    if (status == FJ_OK) {
      host_tensor_poison(bench->problem_o);
      status = tune_mirror_refresh(ctx, &child->o);
    }
    if (status == FJ_OK) status = tune_timed_launch(ctx, kernel, &child->device_problem, &first_ms);
    if (status == FJ_OK) status = tune_mirror_download(ctx, &child->o);
    if (status != FJ_OK) {
      tune_child_launch_error(child, r, "launch");
      return;
    }
    if (!tune_output_finite(&bench->problem)) {
      r->outcome = TRIAL_WRONG_RESULT;
      snprintf(r->message, sizeof r->message, "output of the timed problem is not all finite");
      return;
    }
  }
  for (int i = 1; i < bench->warmup && status == FJ_OK; i++)
    status = runtime_launch_attention(ctx, kernel, &child->device_problem, NULL);
  if (status == FJ_OK) status = tune_device_synchronize(ctx, NULL);
  if (status != FJ_OK) {
    tune_child_launch_error(child, r, "warmup");
    return;
  }

  int repeats = bench->repeats < 1 ? 1 : bench->repeats;
  double *times = calloc((size_t)repeats, sizeof *times);
  if (times == NULL) {
    r->outcome = TRIAL_LAUNCH_ERROR;
    snprintf(r->message, sizeof r->message, "no memory for %d timings", repeats);
    return;
  }
  int done = 0;
  double fastest = INFINITY;
  /* One run can be hit by a context switch (on a busy machine a 0.2 ms kernel then takes twice as
   * long); two or three are rarely all hit, so the cutoff waits for them. */
  int min_runs = child->best_ms > 0.0 && child->best_ms < 1.0 ? 3 : 2;
  if (bench->slow_factor > 1.0 && child->best_ms > 0.0 &&
      first_ms > (2.0 * bench->slow_factor - 1.0) * child->best_ms)
    min_runs--;
  for (int i = 0; i < repeats && status == FJ_OK; i++) {
    /* Each launch timed on its own, so that the median and minimum are of single launches, as the
     * slow cutoff needs. */
    double ms = 0.0;
    status = tune_timed_launch(ctx, kernel, &child->device_problem, &ms);
    if (status != FJ_OK) break;
    times[done++] = ms;
    if (ms < fastest) fastest = ms;
    /* Interference only ever adds time, so a candidate whose fastest run is already slower than the
     * best median by the margin cannot win: stop timing it. Most of a space goes after a few runs. */
    if (done >= min_runs && bench->slow_factor > 1.0 && child->best_ms > 0.0 &&
        fastest > bench->slow_factor * child->best_ms)
      break;
  }
  if (status != FJ_OK) {
    free(times);
    tune_child_launch_error(child, r, "timed launch");
    return;
  }
  qsort(times, (size_t)done, sizeof *times, tune_compare_doubles);
  r->outcome = TRIAL_OK;
  r->repeats = done;
  r->median_ms = done % 2 ? times[done / 2] : 0.5 * (times[done / 2 - 1] + times[done / 2]);
  r->min_ms = times[0];
  r->max_ms = times[done - 1];
  free(times);
  if (child->best_ms <= 0.0 || r->median_ms < child->best_ms) child->best_ms = r->median_ms;
}

static void tune_child_compile(tune_child *child, const tune_job *job, tune_report *r) {
  runtime_kernel *kernel = NULL;
  double t0 = tune_now_s();
  fj_status status = runtime_get_kernel(child->context, &child->bench->problem, &job->config, &kernel);
  if (status != FJ_OK) {
    r->outcome = TRIAL_COMPILE_ERROR;
    tune_report_message(r, "%s", fj_last_error());
    r->compile_ms = (tune_now_s() - t0) * 1e3;
    return;
  }
  r->outcome = TRIAL_OK;
  r->compile_ms = kernel->compile_ms;
  snprintf(r->message, sizeof r->message, "%s", kernel->source);
}

static void tune_child_job(void *user, int64_t n, int worker) {
  tune_child *child = user;
  const tune_bench *bench = child->bench;
  int index = child->list[n];
  if (bench->deadline > 0.0 && tune_now_s() > bench->deadline) return;  /* left for a later run */
  tune_report r;
  memset(&r, 0, sizeof r);
  r.kind = TUNE_REPORT_START;
  r.job = index;
  tune_child_send(child->fd, &r);
  core_error_clear();
  if (child->mode == TUNE_MODE_COMPILE)
    tune_child_compile(child, &child->jobs[index], &r);
  else
    tune_child_measure(child, &child->jobs[index], &r);
  r.kind = TUNE_REPORT_DONE;
  r.job = index;
  tune_child_send(child->fd, &r);
  /* Measuring runs one candidate at a time, so nothing else is in flight when the child leaves. */
  if (child->context_lost) _exit(TUNE_CHILD_EXIT_CONTEXT_LOST);
}

static void tune_child_main(tune_child *child, pid_t parent, int threads) {
  /* Die with the parent: a tuner killed with -9 must not leave a child timing (or hanging) on. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(3);
  if (child->bench->close_fd >= 0) close(child->bench->close_fd);
  signal(SIGPIPE, SIG_IGN);

  const tune_bench *bench = child->bench;
  char device[64];
  snprintf(device, sizeof device, "%s:%d", bench->backend->name, bench->device_index);
  fj_context_options options;
  fj_context_options_init(&options);
  options.disable_served_log = 1;  /* what runs here is not traffic */
  options.device = device;
  options.cache_dir = bench->cache_dir;
  options.num_threads = child->mode == TUNE_MODE_COMPILE ? 1 : bench->measure_threads;
  fj_status status = fj_context_create(&options, &child->context);
  core_pool *pool = NULL;
  if (status == FJ_OK && child->mode == TUNE_MODE_COMPILE && threads > 1)
    status = core_pool_create(threads, &pool);
  if (status == FJ_OK && child->mode == TUNE_MODE_MEASURE) status = tune_child_upload(child);
  if (status != FJ_OK) {
    tune_report r;
    memset(&r, 0, sizeof r);
    r.kind = TUNE_REPORT_SETUP_FAILED;
    r.job = -1;
    snprintf(r.message, sizeof r.message, "%s", fj_last_error());
    tune_child_send(child->fd, &r);
    _exit(2);
  }
  if (pool != NULL)
    core_pool_run(pool, child->count, tune_child_job, child);
  else
    for (int i = 0; i < child->count; i++) tune_child_job(child, i, 0);
  /* No cleanup: the process ends here and the kernel frees everything at once. */
  _exit(0);
}

/* ---- exec'd children ------------------------------------------------------------------------------ */

/* What an exec'd child is sent: this header, then the batch's jobs, the indices to run and the float64
 * reference of the check problem. Everything else (the inputs) it rebuilds from the shape. */
#define TUNE_WIRE_MAGIC 0x57544a46u /* "FJTW" */
typedef struct tune_wire {
  uint32_t magic;
  uint32_t header_size;      /* sizeof(tune_wire): a child from another build refuses the file */
  int32_t mode, threads, jobs, count;
  int32_t device_index, measure_threads, warmup, repeats, problem_index;
  int32_t parent;
  double tolerance, slow_factor, best_ms, deadline;
  uint64_t ref_count;
  fj_problem_shape shape;
  char backend[32];
  char cache_dir[4096];
  char fault[512];
  int32_t has_fault;
} tune_wire;

static int tune_write_all(int fd, const void *data, size_t size) {
  const char *p = data;
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    size -= (size_t)n;
  }
  return 0;
}

/* A close-on-exec memory file holding the work of one child; -1 with errno on failure. */
static int tune_wire_write(const tune_bench *bench, const tune_batch *batch, const int *list, int n,
                           int threads, pid_t parent) {
  tune_wire *wire = calloc(1, sizeof *wire);
  int32_t *indices = malloc((size_t)(n > 0 ? n : 1) * sizeof *indices);
  if (wire == NULL || indices == NULL) {
    free(wire);
    free(indices);
    errno = ENOMEM;
    return -1;
  }
  wire->magic = TUNE_WIRE_MAGIC;
  wire->header_size = (uint32_t)sizeof *wire;
  wire->mode = (int32_t)batch->mode;
  wire->threads = threads;
  wire->jobs = batch->count;
  wire->count = n;
  wire->device_index = bench->device_index;
  wire->measure_threads = bench->measure_threads;
  wire->warmup = bench->warmup;
  wire->repeats = bench->repeats;
  wire->problem_index = bench->problem_index;
  wire->parent = (int32_t)parent;
  wire->tolerance = bench->tolerance;
  wire->slow_factor = bench->slow_factor;
  wire->best_ms = bench->best_ms;
  wire->deadline = bench->deadline;
  wire->ref_count = bench->check_ref_count;
  wire->shape = *bench->shape;
  snprintf(wire->backend, sizeof wire->backend, "%s", bench->backend->name);
  snprintf(wire->cache_dir, sizeof wire->cache_dir, "%s", bench->cache_dir);
  wire->has_fault = bench->fault != NULL;
  if (bench->fault) snprintf(wire->fault, sizeof wire->fault, "%s", bench->fault);
  for (int i = 0; i < n; i++) indices[i] = list[i];
  int fd = memfd_create("flashjit-tune-work", MFD_CLOEXEC);
  int ok = fd >= 0 && tune_write_all(fd, wire, sizeof *wire) == 0 &&
           tune_write_all(fd, batch->jobs, (size_t)batch->count * sizeof *batch->jobs) == 0 &&
           tune_write_all(fd, indices, (size_t)n * sizeof *indices) == 0 &&
           tune_write_all(fd, bench->check_ref, wire->ref_count * sizeof(double)) == 0;
  int saved = errno;
  free(wire);
  free(indices);
  if (!ok) {
    if (fd >= 0) close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

static int tune_child_usage(const char *why) {
  fprintf(stderr, "flashjit " TUNE_CHILD_COMMAND ": %s (an internal command the tuner starts; not for use by hand)\n",
          why);
  return 2;
}

int tune_child_exec_main(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[1], TUNE_CHILD_COMMAND) != 0) return tune_child_usage("expects WORK_FD REPORT_FD");
  char *end = NULL;
  long work_fd = strtol(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0' || work_fd < 0) return tune_child_usage("bad WORK_FD");
  long report_fd = strtol(argv[3], &end, 10);
  if (end == argv[3] || *end != '\0' || report_fd < 0) return tune_child_usage("bad REPORT_FD");
  struct stat st;
  if (fstat((int)work_fd, &st) != 0 || (size_t)st.st_size < sizeof(tune_wire))
    return tune_child_usage("WORK_FD is not a work file");
  size_t size = (size_t)st.st_size;
  const char *blob = mmap(NULL, size, PROT_READ, MAP_PRIVATE, (int)work_fd, 0);
  if (blob == MAP_FAILED) return tune_child_usage("cannot map the work file");
  close((int)work_fd);
  const tune_wire *wire = (const tune_wire *)(const void *)blob;
  if (wire->magic != TUNE_WIRE_MAGIC || wire->header_size != sizeof *wire || wire->jobs < 0 || wire->count < 0 ||
      wire->count > wire->jobs)
    return tune_child_usage("the work file is from another build");
  size_t need = sizeof *wire + (size_t)wire->jobs * sizeof(tune_job) + (size_t)wire->count * sizeof(int32_t) +
                (size_t)wire->ref_count * sizeof(double);
  if (size != need) return tune_child_usage("the work file is truncated");
  const tune_job *jobs = (const tune_job *)(const void *)(blob + sizeof *wire);
  const int32_t *list = (const int32_t *)(const void *)(blob + sizeof *wire + (size_t)wire->jobs * sizeof(tune_job));
  const double *ref = (const double *)(const void *)((const char *)list + (size_t)wire->count * sizeof(int32_t));
  int32_t *order = malloc((size_t)(wire->count > 0 ? wire->count : 1) * sizeof *order);
  if (order == NULL) _exit(2);
  for (int i = 0; i < wire->count; i++) {
    if (list[i] < 0 || list[i] >= wire->jobs) return tune_child_usage("a job index is out of range");
    order[i] = list[i];
  }

  static tune_bench bench;
  static tune_inputs inputs;
  memset(&bench, 0, sizeof bench);
  bench.backend = backend_find(wire->backend);
  if (bench.backend == NULL) return tune_child_usage("unknown backend");
  bench.family = kernel_family_for_backend(bench.backend->name);
  if (bench.family == NULL) return tune_child_usage("no kernel family for the backend");
  bench.device_index = wire->device_index;
  bench.cache_dir = wire->cache_dir;
  bench.measure_threads = wire->measure_threads;
  bench.compile_threads = wire->threads;
  bench.warmup = wire->warmup;
  bench.repeats = wire->repeats;
  bench.tolerance = wire->tolerance;
  bench.slow_factor = wire->slow_factor;
  bench.best_ms = wire->best_ms;
  bench.deadline = wire->deadline;
  bench.close_fd = -1;
  bench.fault = wire->has_fault ? wire->fault : NULL;
  bench.shape = &wire->shape;
  bench.problem_index = wire->problem_index;
  bench.check_ref = ref;
  bench.check_ref_count = (size_t)wire->ref_count;
  bench.child_exe = NULL;

  /* A compile child needs only the problem's key and sizes; a measuring one the very inputs the parent
   * built, which the same seeds rebuild. A failure here is the child's setup failing, reported as such. */
  fj_status status;
  if (wire->mode == TUNE_MODE_COMPILE) {
    status = runtime_problem_from_shape(&wire->shape, "problem", &inputs.problem);
    inputs.check = inputs.problem;
    inputs.check_is_problem = 1;
  } else {
    status = tune_inputs_build(&wire->shape, wire->problem_index, &inputs);
  }
  if (status == FJ_OK && wire->mode == TUNE_MODE_MEASURE) {
    size_t elements = (size_t)(inputs.check.batch * inputs.check.seqlen_q * inputs.check.key.heads *
                               core_key_head_dim_v(&inputs.check.key));
    if (elements != bench.check_ref_count)
      status = core_error(FJ_INTERNAL, "the check problem has %zu outputs but the reference %zu", elements,
                          bench.check_ref_count);
  }
  if (status != FJ_OK) {
    tune_report r;
    memset(&r, 0, sizeof r);
    r.kind = TUNE_REPORT_SETUP_FAILED;
    r.job = -1;
    snprintf(r.message, sizeof r.message, "%s", fj_last_error());
    tune_child_send((int)report_fd, &r);
    _exit(2);
  }
  bench.inputs = &inputs;
  bench.problem = inputs.problem;
  bench.check = inputs.check;
  bench.check_is_problem = inputs.check_is_problem;
  bench.problem_o = &inputs.o;
  bench.check_o = inputs.check_is_problem ? &inputs.o : &inputs.co;

  tune_child child = {.bench = &bench, .mode = (tune_mode)wire->mode, .jobs = jobs, .list = order,
                      .count = wire->count, .fd = (int)report_fd, .context = NULL, .best_ms = wire->best_ms};
  tune_child_main(&child, (pid_t)wire->parent, wire->threads);
  _exit(4);  /* not reached */
}

/* ---- the parent ---------------------------------------------------------------------------------- */

enum { TUNE_JOB_PENDING = 0, TUNE_JOB_RUNNING, TUNE_JOB_SETTLED, TUNE_JOB_SUSPECT };

typedef struct tune_worker {
  const tune_bench *bench;
  tune_batch *batch;
  unsigned char *state;
  double *started;
  pid_t pid;
  int fd;
  int solo;                 /* compile one at a time: a crash with several in flight had no culprit */
  int setup_failures;
  int progress;             /* candidates the current child settled: a child that settled some and then
                               left (a lost GPU context) is restarted, not counted as unable to start */
  int finished;
  char setup_error[200];
  unsigned char buffer[sizeof(tune_report)];
  size_t buffered;
} tune_worker;

static void tune_settle(tune_worker *w, int job, const tune_report *report) {
  if (w->state[job] == TUNE_JOB_SETTLED) return;
  w->state[job] = TUNE_JOB_SETTLED;
  w->batch->settled++;
  w->batch->on_result(w->batch->user, &w->batch->jobs[job], report);
}

static void tune_settle_failure(tune_worker *w, int job, trial_outcome outcome, const char *message) {
  tune_report r;
  memset(&r, 0, sizeof r);
  r.kind = TUNE_REPORT_DONE;
  r.job = job;
  r.outcome = outcome;
  r.rel_err = -1.0;
  snprintf(r.message, sizeof r.message, "%s", message);
  tune_settle(w, job, &r);
}

/* Forks a child for the worker's unsettled candidates. 0 started, 1 nothing to do, -1 fork failed. */
static int tune_worker_start(const tune_bench *bench, tune_worker *w) {
  tune_batch *batch = w->batch;
  int *list = malloc((size_t)(batch->count > 0 ? batch->count : 1) * sizeof *list);
  if (list == NULL) return -1;
  int n = 0;
  for (int i = 0; i < batch->count; i++)
    if (w->state[i] == TUNE_JOB_PENDING || w->state[i] == TUNE_JOB_SUSPECT) {
      w->state[i] = TUNE_JOB_PENDING;
      list[n++] = i;
    }
  if (n == 0 || (bench->deadline > 0.0 && tune_now_s() > bench->deadline)) {
    free(list);
    w->finished = 1;
    return 1;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    free(list);
    return -1;
  }
  int threads = bench->compile_threads > 0 ? bench->compile_threads : core_online_cores();
  if (w->solo) threads = 1;
  pid_t parent = getpid();
  /* Exec'd children get their work in a memory file; everything the child runs between fork and exec
   * is prepared here, because only async-signal-safe calls are allowed there. */
  int work_fd = -1;
  char work_arg[16], report_arg[16];
  char *child_argv[] = {"flashjit", TUNE_CHILD_COMMAND, work_arg, report_arg, NULL};
  if (bench->child_exe != NULL) {
    work_fd = tune_wire_write(bench, batch, list, n, threads, parent);
    if (work_fd < 0) {
      close(fds[0]);
      close(fds[1]);
      free(list);
      return -1;
    }
    snprintf(work_arg, sizeof work_arg, "%d", work_fd);
    snprintf(report_arg, sizeof report_arg, "%d", fds[1]);
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    if (work_fd >= 0) close(work_fd);
    free(list);
    return -1;
  }
  if (pid == 0 && bench->child_exe != NULL) {
    /* Both descriptors were opened close-on-exec (so other children do not inherit them); these two
     * are this child's to keep. */
    fcntl(work_fd, F_SETFD, 0);
    fcntl(fds[1], F_SETFD, 0);
    if (bench->close_fd >= 0) close(bench->close_fd);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execv(bench->child_exe, child_argv);
    _exit(127);
  }
  if (work_fd >= 0) close(work_fd);
  if (pid == 0) {
    close(fds[0]);
    tune_child child = {.bench = bench, .mode = batch->mode, .jobs = batch->jobs, .list = list,
                        .count = n, .fd = fds[1], .context = NULL, .best_ms = bench->best_ms};
    tune_child_main(&child, parent, threads);
    _exit(4);  /* not reached */
  }
  close(fds[1]);
  free(list);
  w->pid = pid;
  w->fd = fds[0];
  w->buffered = 0;
  w->progress = 0;
  return 0;
}

static const char *tune_signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    default: return "signal";
  }
}

/* The child's pipe closed: reap it and settle what it left behind. */
static void tune_worker_reap(tune_worker *w) {
  int wstatus = 0;
  while (waitpid(w->pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  close(w->fd);
  w->fd = -1;
  w->pid = 0;
  int running = 0, last = -1;
  for (int i = 0; i < w->batch->count; i++)
    if (w->state[i] == TUNE_JOB_RUNNING) {
      running++;
      last = i;
    }
  int clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
  if (clean && running == 0) {
    /* Done; anything still pending was left because the deadline passed. */
    w->finished = 1;
    return;
  }
  const char *mode = w->batch->mode == TUNE_MODE_COMPILE ? "compile" : "measuring";
  char why[160];
  if (WIFSIGNALED(wstatus))
    snprintf(why, sizeof why, "%s child killed by %s (%d)", mode, tune_signal_name(WTERMSIG(wstatus)),
             WTERMSIG(wstatus));
  else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127 && w->bench->child_exe != NULL)
    snprintf(why, sizeof why, "%s child could not exec %.100s", mode, w->bench->child_exe);
  else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == TUNE_CHILD_EXIT_CONTEXT_LOST)
    snprintf(why, sizeof why, "%s child left after a launch error (its device context may be lost)", mode);
  else
    snprintf(why, sizeof why, "%s child exited with status %d", mode, WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
  int progress = w->progress;
  w->progress = 0;
  if (running == 0 && progress > 0) {
    /* Between candidates: the ones it settled are recorded; a fresh child takes the rest. */
    core_log(LOG_INFO, "tune: %s after %d candidate%s; a fresh child takes the rest", why, progress,
             progress == 1 ? "" : "s");
    return;
  }
  if (running == 1) {
    tune_settle_failure(w, last, TRIAL_CRASH, why);
  } else if (running > 1) {
    for (int i = 0; i < w->batch->count; i++)
      if (w->state[i] == TUNE_JOB_RUNNING) w->state[i] = TUNE_JOB_SUSPECT;
    w->solo = 1;
    core_log(LOG_INFO, "tune: %s with %d compiles in flight; compiling the rest one at a time", why, running);
  } else if (++w->setup_failures >= 2) {
    w->finished = 1;  /* the run reports the error */
    if (w->setup_error[0] == '\0') snprintf(w->setup_error, sizeof w->setup_error, "%s", why);
  }
}

static void tune_worker_read(tune_worker *w) {
  for (;;) {
    ssize_t n = read(w->fd, w->buffer + w->buffered, sizeof w->buffer - w->buffered);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      tune_worker_reap(w);
      return;
    }
    w->buffered += (size_t)n;
    if (w->buffered < sizeof w->buffer) continue;  /* the rest of this report is on its way */
    tune_report r;
    memcpy(&r, w->buffer, sizeof r);
    w->buffered = 0;
    if (r.kind == TUNE_REPORT_SETUP_FAILED) {
      snprintf(w->setup_error, sizeof w->setup_error, "%s", r.message);
    } else if (r.job >= 0 && r.job < w->batch->count) {
      if (r.kind == TUNE_REPORT_START) {
        w->state[r.job] = TUNE_JOB_RUNNING;
        w->started[r.job] = tune_now_s();
      } else if (r.kind == TUNE_REPORT_DONE) {
        tune_settle(w, r.job, &r);
        w->progress++;
      }
    }
    return;  /* one report per poll wakeup keeps the loop simple; poll comes straight back */
  }
}

static void tune_worker_check_timeout(tune_worker *w, double now) {
  int oldest = -1;
  for (int i = 0; i < w->batch->count; i++)
    if (w->state[i] == TUNE_JOB_RUNNING && now - w->started[i] > w->batch->timeout_s &&
        (oldest < 0 || w->started[i] < w->started[oldest]))
      oldest = i;
  if (oldest < 0) return;
  kill(w->pid, SIGKILL);
  int wstatus;
  while (waitpid(w->pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  close(w->fd);
  w->fd = -1;
  w->pid = 0;
  char why[160];
  snprintf(why, sizeof why, "no result after %.0f s: %s child killed", w->batch->timeout_s,
           w->batch->mode == TUNE_MODE_COMPILE ? "compile" : "measuring");
  w->progress = 0;
  tune_settle_failure(w, oldest, TRIAL_TIMEOUT, why);
  /* the others in flight did nothing wrong: they run again */
  for (int i = 0; i < w->batch->count; i++)
    if (w->state[i] == TUNE_JOB_RUNNING) w->state[i] = TUNE_JOB_PENDING;
}

fj_status tune_run_batches(const tune_bench *bench, tune_batch *batches, int count) {
  tune_worker workers[4];
  if (count > 4) return core_error(FJ_INTERNAL, "tune_run_batches: %d batches at once (4 at most)", count);
  memset(workers, 0, sizeof workers);
  fj_status status = FJ_OK;
  for (int b = 0; b < count; b++) {
    tune_worker *w = &workers[b];
    w->bench = bench;
    w->batch = &batches[b];
    w->batch->settled = 0;
    w->fd = -1;
    w->state = calloc((size_t)(batches[b].count > 0 ? batches[b].count : 1), 1);
    w->started = calloc((size_t)(batches[b].count > 0 ? batches[b].count : 1), sizeof(double));
    if (w->state == NULL || w->started == NULL) status = core_error(FJ_OUT_OF_MEMORY, "no memory for a batch");
    if (batches[b].count == 0) w->finished = 1;
  }
  while (status == FJ_OK) {
    struct pollfd fds[4];
    int map[4], nfds = 0, active = 0;
    double now = tune_now_s(), wait_s = 1.0;
    for (int b = 0; b < count; b++) {
      tune_worker *w = &workers[b];
      if (w->finished) continue;
      if (w->pid == 0) {
        int started = tune_worker_start(bench, w);
        if (started < 0) {
          status = core_error(FJ_INTERNAL, "tune: cannot start a child process: %s", strerror(errno));
          break;
        }
        if (started == 1) continue;
      }
      active++;
      fds[nfds].fd = w->fd;
      fds[nfds].events = POLLIN;
      map[nfds++] = b;
      for (int i = 0; i < w->batch->count; i++)
        if (w->state[i] == TUNE_JOB_RUNNING) {
          double left = w->started[i] + w->batch->timeout_s - now;
          if (left < wait_s) wait_s = left;
        }
    }
    if (status != FJ_OK || active == 0) break;
    if (wait_s < 0.01) wait_s = 0.01;
    int ready = poll(fds, (nfds_t)nfds, (int)(wait_s * 1000.0) + 1);
    if (ready < 0 && errno != EINTR) {
      status = core_error(FJ_INTERNAL, "tune: poll: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < nfds && ready > 0; i++)
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) tune_worker_read(&workers[map[i]]);
    now = tune_now_s();
    for (int b = 0; b < count; b++)
      if (!workers[b].finished && workers[b].pid != 0) tune_worker_check_timeout(&workers[b], now);
  }
  for (int b = 0; b < count; b++) {
    tune_worker *w = &workers[b];
    if (w->pid != 0) {
      kill(w->pid, SIGKILL);
      int wstatus;
      while (waitpid(w->pid, &wstatus, 0) < 0 && errno == EINTR) {
      }
      close(w->fd);
    }
    if (status == FJ_OK && w->setup_failures >= 2)
      status = core_error(FJ_INTERNAL, "tune: %s children cannot start: %s",
                          w->batch->mode == TUNE_MODE_COMPILE ? "compile" : "measuring", w->setup_error);
    free(w->state);
    free(w->started);
  }
  return status;
}
