/* tune_run.c: a tuning run from start to end. It takes the device's lock, opens the database, reads
 * what is already recorded (so a rerun resumes), and for each problem: builds its inputs and the float64
 * reference once, enumerates the space, settles the default config, lets the strategy pick the rest,
 * and recomputes the winner. Candidates are settled in batches: a compile child builds their binaries
 * into the disk cache, a measuring child checks and times them (tune_isolate.c), and the parent records
 * each result the moment it arrives, so a kill -9 loses at most the candidates in flight.
 *
 * Budgets are checked before each batch and by the children before each candidate: nothing new starts
 * once the problem's share of the time budget or the run's trial budget is spent. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/json_reader.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/reference.h"
#include "core/threadpool.h"
#include "runtime/runtime.h"
#include "tuner/tune_device.h"
#include "tuner/tune_internal.h"

#define TUNE_DEFAULT_BATCH 16
#define TUNE_CLAIM_STALE_S 3600
#define TUNE_COMPILE_TIMEOUT_S 300.0
/* Above this many FLOPs the float64 reference of the problem itself costs seconds; candidates are then
 * checked on a small problem with the same generated code instead. */
#define TUNE_CHECK_MAX_FLOPS 2.5e8

/* A trial the database already holds for this device and these versions (from its export). */
typedef struct tune_known {
  char *problem_key, *config, *timing;
  int64_t batch, seqlen_q, seqlen_kv;
  trial_outcome outcome;
  double median_ms;
} tune_known;

typedef struct tune_state {
  fj_context *context;
  const tune_options *options;
  const kernel_family *family;
  const fj_backend *backend;
  int device_index;
  backend_device_info info;
  tuning_device device;
  char device_id[64];
  const char *timing;          /* the runtime's timing method: winners are looked up under it */
  char screen_timing[64];      /* one-run screening measurements: recorded, never winners */
  char confirm_timing[64];     /* the confirmation round's (TUNING_CONFIRM_SUFFIX) */
  tuning_db *db;
  int lock_fd;
  double start;
  double budget_end;           /* monotonic; 0 = none */
  int64_t trials_run;
  tune_known *known;
  size_t known_count;
  const char *fault;
} tune_state;

struct tune_problem_run {
  tune_state *s;
  int index, count;
  tune_result *result;
  const fj_problem_shape *shape;
  char key[512];
  tune_inputs in;
  double *ref;
  tune_bench bench;
  double deadline;
  double started;
  int64_t planned, settled;
  double best_ms;
  /* The best ok configs under the main method (known and new), best first: the confirmation round's. */
  struct tune_leader {
    kernel_config config;
    double median_ms;
  } leaders[TUNE_CONFIRM_MAX];
  int leader_count;
  const char *phase;
  double new_seconds;          /* time spent on new trials, for the ETA */
  int64_t new_count;
  /* per evaluation in progress */
  tune_eval *evals;
  int screen;
  int *claimed;                /* per eval: we hold its claim */
  int *stage_index;            /* where tune_gather puts the batch's eval indices */
  int64_t in_flight;           /* queued in an earlier batch, not yet recorded (overlap) */
  /* The database refused a write: the run stops (a trial that cannot be recorded would be lost). */
  fj_status io_error;
  char io_message[512];
};

/* ---- the trials already recorded ---------------------------------------------------------------- */

static char *tune_strdup(const char *text) {
  size_t n = strlen(text) + 1;
  char *copy = malloc(n);
  if (copy) memcpy(copy, text, n);
  return copy;
}

static void tune_known_free(tune_state *s) {
  for (size_t i = 0; i < s->known_count; i++) {
    free(s->known[i].problem_key);
    free(s->known[i].config);
    free(s->known[i].timing);
  }
  free(s->known);
  s->known = NULL;
  s->known_count = 0;
}

static const char *tune_json_text(const json_value *object, const char *key) {
  const json_value *v = json_get(object, key);
  return v && v->type == JSON_STRING ? v->string : NULL;
}

static double tune_json_number(const json_value *object, const char *key, double fallback) {
  const json_value *v = json_get(object, key);
  return v && v->type == JSON_NUMBER ? v->number : fallback;
}

/* Reads the trials of this device, family and versions from the database's own export: the values of
 * recorded trials are what lets a resumed run rank them without running them again. */
static fj_status tune_load_known(tune_state *s) {
  char *text = NULL;
  size_t size = 0;
  FILE *memory = open_memstream(&text, &size);
  if (memory == NULL) return core_error(FJ_OUT_OF_MEMORY, "tune: no memory to read the database");
  fj_status status = tuning_db_export(s->db, memory, 1);
  fclose(memory);
  if (status != FJ_OK) {
    free(text);
    return status;
  }
  json_value *root = NULL;
  status = json_parse(text, size, &root);
  free(text);
  if (status != FJ_OK) {
    core_error_prefix("tune: reading the database's export: ");
    return status;
  }
  const json_value *trials = json_get(root, "trials");
  if (trials != NULL && trials->type == JSON_ARRAY && trials->count > 0) {
    s->known = calloc(trials->count, sizeof *s->known);
    if (s->known == NULL) {
      json_free(root);
      return core_error(FJ_OUT_OF_MEMORY, "tune: no memory for %zu recorded trials", trials->count);
    }
    char generator[16];
    snprintf(generator, sizeof generator, "%d", s->family->generator_version);
    for (size_t i = 0; i < trials->count; i++) {
      const json_value *t = &trials->items[i];
      const json_value *device = json_get(t, "device"), *sizes = json_get(t, "sizes");
      const json_value *timings = json_get(t, "timings");
      const char *fingerprint = tune_json_text(device, "fingerprint");
      const char *family = tune_json_text(t, "family"), *library = tune_json_text(t, "library_version");
      const char *llvm = tune_json_text(t, "llvm_version"), *outcome = tune_json_text(t, "outcome");
      const char *key = tune_json_text(t, "problem"), *config = tune_json_text(t, "config");
      const char *timing = tune_json_text(t, "timing_method");
      if (!fingerprint || !family || !library || !llvm || !outcome || !key || !config || !timing || !sizes)
        continue;
      if (strcmp(fingerprint, s->info.fingerprint) != 0 || strcmp(family, s->family->name) != 0 ||
          strcmp(library, fj_version_string()) != 0 || strcmp(llvm, jit_llvm_version()) != 0 ||
          (int)tune_json_number(t, "generator_version", -1) != s->family->generator_version)
        continue;
      tune_known *k = &s->known[s->known_count];
      if (!tuning_outcome_parse(outcome, &k->outcome)) continue;
      k->problem_key = tune_strdup(key);
      k->config = tune_strdup(config);
      k->timing = tune_strdup(timing);
      k->batch = (int64_t)tune_json_number(sizes, "batch", -1);
      k->seqlen_q = (int64_t)tune_json_number(sizes, "seqlen_q", -1);
      k->seqlen_kv = (int64_t)tune_json_number(sizes, "seqlen_kv", -1);
      k->median_ms = timings ? tune_json_number(timings, "median_ms", 0.0) : 0.0;
      s->known_count++;
      if (!k->problem_key || !k->config || !k->timing) {
        json_free(root);
        return core_error(FJ_OUT_OF_MEMORY, "tune: no memory for recorded trials");
      }
    }
  }
  json_free(root);
  core_log(LOG_INFO, "tune: %zu trials of this device and versions already recorded", s->known_count);
  return FJ_OK;
}

static const tune_known *tune_find_known(const tune_problem_run *run, const tuning_trial *trial) {
  const tune_state *s = run->s;
  for (size_t i = 0; i < s->known_count; i++) {
    const tune_known *k = &s->known[i];
    if (k->batch == trial->batch && k->seqlen_q == trial->seqlen_q && k->seqlen_kv == trial->seqlen_kv &&
        strcmp(k->config, trial->config) == 0 && strcmp(k->timing, trial->timing_method) == 0 &&
        strcmp(k->problem_key, trial->problem_key) == 0)
      return k;
  }
  return NULL;
}

/* ---- small helpers the strategies use ---------------------------------------------------------- */

double tune_best_ms(const tune_problem_run *run) { return run->best_ms; }

uint64_t tune_problem_seed(const tune_problem_run *run) {
  return core_hash64_update(run->s->options->seed * 0x9e3779b97f4a7c15ull, run->key, strlen(run->key));
}

int64_t tune_trials_left(const tune_problem_run *run) {
  if (run->s->options->max_trials <= 0) return INT64_MAX;
  int64_t left = run->s->options->max_trials - run->result->run;
  return left > 0 ? left : 0;
}

void tune_plan_more(tune_problem_run *run, int64_t more) { run->planned += more; }

uint64_t tune_random_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* ---- settling candidates ----------------------------------------------------------------------- */

static void tune_fill_trial(const tune_problem_run *run, const char *config_text, int screen,
                            tuning_trial *trial) {
  memset(trial, 0, sizeof *trial);
  trial->problem_key = run->key;
  trial->family = run->s->family->name;
  trial->config = config_text;
  trial->timing_method = screen ? run->s->screen_timing : run->s->timing;
  trial->batch = run->bench.problem.batch;
  trial->seqlen_q = run->bench.problem.seqlen_q;
  trial->seqlen_kv = run->bench.problem.seqlen_kv;
  trial->rel_err = -1.0;
  trial->message = "";
  trial->library_version = fj_version_string();
  trial->llvm_version = jit_llvm_version();
  trial->generator_version = run->s->family->generator_version;
}

static void tune_progress_report(tune_problem_run *run, const char *config, trial_outcome outcome, double ms,
                                 int recorded) {
  const tune_options *o = run->s->options;
  if (o->progress == NULL) return;
  tune_progress p;
  memset(&p, 0, sizeof p);
  p.problem = run->index;
  p.problems = run->count;
  p.problem_key = run->key;
  p.phase = run->phase;
  p.done = run->settled;
  p.total = run->planned > run->settled ? run->planned : run->settled;
  p.trials_run = run->s->trials_run;
  double now = tune_now_s();
  p.elapsed_s = now - run->s->start;
  p.eta_s = -1.0;
  if (run->new_count > 0) {
    int64_t left = p.total - p.done;
    p.eta_s = run->new_seconds / (double)run->new_count * (double)left;
    if (run->deadline > 0.0 && p.eta_s > run->deadline - now) p.eta_s = run->deadline - now;
  }
  p.best_ms = run->best_ms;
  p.last_config = config;
  p.last_outcome = outcome;
  p.last_ms = ms;
  p.last_recorded = recorded;
  o->progress(&p, o->progress_user);
}

/* Keeps config among the problem's best few (options->confirm of them) by its median. */
static void tune_offer_leader(tune_problem_run *run, const kernel_config *config, double median_ms) {
  int want = run->s->options->confirm < TUNE_CONFIRM_MAX ? run->s->options->confirm : TUNE_CONFIRM_MAX;
  if (want < 2 || !(median_ms > 0.0)) return;
  struct tune_leader *leaders = run->leaders;
  int at = run->leader_count;
  for (int i = 0; i < run->leader_count; i++)
    if (tune_same_config(run->s->family, &leaders[i].config, config)) {
      if (leaders[i].median_ms <= median_ms) return;
      at = i;  /* measured faster again (a resumed trial seen twice): moves up */
      break;
    }
  if (at == run->leader_count) {
    if (run->leader_count == want && median_ms >= leaders[want - 1].median_ms) return;
    at = run->leader_count < want ? run->leader_count++ : want - 1;
  }
  while (at > 0 && leaders[at - 1].median_ms > median_ms) {
    leaders[at] = leaders[at - 1];
    at--;
  }
  leaders[at].config = *config;
  leaders[at].median_ms = median_ms;
}

/* Records one settled candidate: the database first (so that it survives a kill at any later point),
 * then the winner when it is an ok main-method trial (a kill then still leaves the best so far). */
static void tune_record(tune_problem_run *run, int i, const tune_report *report) {
  tune_state *s = run->s;
  tune_eval *e = &run->evals[i];
  char config_text[256];
  kernel_config_string(s->family, &e->config, config_text, sizeof config_text);
  tuning_trial trial;
  tune_fill_trial(run, config_text, run->screen, &trial);
  trial.outcome = (trial_outcome)report->outcome;
  if (trial.outcome == TRIAL_OK) {
    trial.median_ms = report->median_ms;
    trial.min_ms = report->min_ms;
    trial.max_ms = report->max_ms;
    trial.repeats = report->repeats;
  }
  trial.rel_err = report->rel_err;
  trial.message = report->message;
  int inserted = 0;
  fj_status status = tuning_db_record_trial(s->db, &s->device, &trial, &inserted);
  if (status != FJ_OK) {
    if (run->io_error == FJ_OK) {
      run->io_error = status;
      snprintf(run->io_message, sizeof run->io_message, "recording %s: %s", config_text, fj_last_error());
    }
    core_log(LOG_ERROR, "tune: recording %s: %s", config_text, fj_last_error());
    core_error_clear();
    return;  /* not recorded, so not settled: a rerun runs it again */
  }
  if (run->claimed[i]) {
    tuning_db_release(s->db, s->info.fingerprint, &trial);
    run->claimed[i] = 0;
  }
  e->state = TUNE_EVAL_NEW;
  e->outcome = trial.outcome;
  e->median_ms = trial.outcome == TRIAL_OK ? trial.median_ms : 0.0;
  s->trials_run++;
  run->result->run++;
  run->result->outcomes[trial.outcome]++;
  run->settled++;
  if (trial.outcome == TRIAL_OK && !run->screen) tune_offer_leader(run, &e->config, e->median_ms);
  /* Only a new best can change the winner: the others need no write. */
  if (trial.outcome == TRIAL_OK && !run->screen && (run->best_ms <= 0.0 || e->median_ms < run->best_ms)) {
    run->best_ms = e->median_ms;
    if (tuning_db_update_winner(s->db, s->info.fingerprint, run->key, s->family->name, s->timing,
                                fj_version_string(), jit_llvm_version(), s->family->generator_version) != FJ_OK) {
      core_log(LOG_ERROR, "tune: updating the winner of %s: %s", run->key, fj_last_error());
      core_error_clear();
    }
  }
  if (trial.outcome != TRIAL_OK)
    core_log(LOG_INFO, "tune: %s: %s: %s", config_text, tuning_outcome_name(trial.outcome), report->message);
  tune_progress_report(run, config_text, trial.outcome, e->median_ms, 1);
}

/* One batch of candidates on its way through compile and measurement. Job ids index `index`, which
 * maps them back to the evals being settled. */
typedef struct tune_stage {
  tune_problem_run *run;
  int count;
  int index[64];               /* eval indices of the batch */
  tune_job jobs[64];
  unsigned char compiled[64];
  tune_job measure[64];
  int measure_index[64];
  int measured;
} tune_stage;

#define TUNE_MAX_BATCH 64

static void tune_on_compiled(void *user, const tune_job *job, const tune_report *report) {
  tune_stage *stage = user;
  if (report->outcome == TRIAL_OK) {
    stage->compiled[job->id] = 1;
    return;
  }
  /* A compile error, crash or timeout is the candidate's trial: it is recorded and never measured. */
  tune_record(stage->run, stage->index[job->id], report);
}

static void tune_on_measured(void *user, const tune_job *job, const tune_report *report) {
  tune_stage *stage = user;
  tune_record(stage->run, stage->measure_index[job->id], report);
}

static double tune_measure_timeout(const tune_problem_run *run) {
  const tune_options *o = run->s->options;
  if (o->timeout_s > 0.0) return o->timeout_s;
  /* A candidate may be a few times slower than the default; allow that many calls many times over. */
  double per_call_s = run->result->default_ms > 0.0 ? 3.0 * run->result->default_ms * 1e-3
                                                    : core_attention_flops(&run->bench.problem) / 1e9;
  double calls = (double)(o->repeats + o->warmup + 3);
  return 30.0 + 5.0 * per_call_s * calls;
}

static tune_batch tune_compile_batch(tune_stage *stage) {
  for (int j = 0; j < stage->count; j++) {
    stage->jobs[j].id = j;
    stage->jobs[j].config = stage->run->evals[stage->index[j]].config;
    stage->compiled[j] = 0;
  }
  tune_batch b = {.mode = TUNE_MODE_COMPILE, .jobs = stage->jobs, .count = stage->count,
                  .timeout_s = TUNE_COMPILE_TIMEOUT_S, .on_result = tune_on_compiled, .user = stage};
  return b;
}

static tune_batch tune_measure_batch(tune_stage *stage) {
  stage->measured = 0;
  for (int j = 0; j < stage->count; j++)
    if (stage->compiled[j]) {
      stage->measure[stage->measured].id = stage->measured;
      stage->measure[stage->measured].config = stage->jobs[j].config;
      stage->measure_index[stage->measured] = stage->index[j];
      stage->measured++;
    }
  tune_batch b = {.mode = TUNE_MODE_MEASURE, .jobs = stage->measure, .count = stage->measured,
                  .timeout_s = tune_measure_timeout(stage->run), .on_result = tune_on_measured, .user = stage};
  return b;
}

/* Hands back the claims of a stage's candidates that were not settled (a deadline stopped them);
 * 1 when there were any. */
static int tune_stage_release(tune_stage *stage) {
  tune_problem_run *run = stage->run;
  int unsettled = 0;
  for (int q = 0; q < stage->count; q++) {
    int k = stage->index[q];
    if (!run->claimed[k]) continue;
    char config_text[256];
    kernel_config_string(run->s->family, &run->evals[k].config, config_text, sizeof config_text);
    tuning_trial trial;
    tune_fill_trial(run, config_text, run->screen, &trial);
    tuning_db_release(run->s->db, run->s->info.fingerprint, &trial);
    run->claimed[k] = 0;
    if (run->evals[k].state == TUNE_EVAL_UNRUN) unsettled = 1;
  }
  return unsettled;
}

/* Runs child batches and keeps the pace figures for the ETA. */
static fj_status tune_children(tune_problem_run *run, tune_batch *batches, int count) {
  double t0 = tune_now_s();
  int64_t before = run->result->run;
  run->bench.best_ms = run->best_ms;
  fj_status status = tune_run_batches(&run->bench, batches, count);
  /* Where a run's time goes (compiling or timing), for whoever sizes budgets or batches. */
  if (core_log_enabled(LOG_DEBUG))
    for (int i = 0; i < count; i++)
      core_log(LOG_DEBUG, "tune: %s %d candidates in %.2f s%s",
               batches[i].mode == TUNE_MODE_COMPILE ? "compiled" : "measured", batches[i].count,
               tune_now_s() - t0, count > 1 ? " (overlapped)" : "");
  run->new_seconds += tune_now_s() - t0;
  run->new_count += run->result->run - before;
  return status;
}

/* Gathers the next batch from evals[*next..n): recorded ones settle at once, others are claimed and
 * queued. Returns how many were queued; *stop says why gathering ended early (2: trial budget). */
static int tune_gather(tune_problem_run *run, tune_eval *evals, int n, int *next, int batch_size, int *stop) {
  tune_state *s = run->s;
  int queued = 0;
  int64_t left = tune_trials_left(run) - run->in_flight;
  for (; *next < n && queued < batch_size; (*next)++) {
    int i = *next;
    tune_eval *e = &evals[i];
    if (e->state != TUNE_EVAL_UNRUN) continue;
    char config_text[256];
    kernel_config_string(s->family, &e->config, config_text, sizeof config_text);
    tuning_trial trial;
    tune_fill_trial(run, config_text, run->screen, &trial);
    if (tuning_db_has_trial(s->db, s->info.fingerprint, &trial) == 1) {
      const tune_known *k = tune_find_known(run, &trial);
      e->state = TUNE_EVAL_KNOWN;
      e->outcome = k ? k->outcome : TRIAL_LAUNCH_ERROR;
      e->median_ms = k && k->outcome == TRIAL_OK ? k->median_ms : 0.0;
      run->result->skipped++;
      run->settled++;
      if (!run->screen && e->outcome == TRIAL_OK && (run->best_ms <= 0.0 || e->median_ms < run->best_ms))
        run->best_ms = e->median_ms;
      if (!run->screen && e->outcome == TRIAL_OK) tune_offer_leader(run, &e->config, e->median_ms);
      tune_progress_report(run, config_text, e->outcome, e->median_ms, 0);
      continue;
    }
    if (queued >= left) {
      *stop = 2;
      break;
    }
    int claim = tuning_db_claim(s->db, s->info.fingerprint, &trial, TUNE_CLAIM_STALE_S);
    if (claim < 0) {
      run->io_error = FJ_IO;
      snprintf(run->io_message, sizeof run->io_message, "claiming %s: %s", config_text, fj_last_error());
      *stop = 3;
      break;
    }
    if (claim == 0) {
      e->state = TUNE_EVAL_CLAIMED;
      run->result->claimed++;
      run->settled++;
      continue;
    }
    run->claimed[i] = 1;
    run->stage_index[queued++] = i;
  }
  return queued;
}

int tune_evaluate(tune_problem_run *run, tune_eval *evals, int n, const char *phase, int screen) {
  tune_state *s = run->s;
  const tune_options *o = s->options;
  run->phase = phase;
  run->evals = evals;
  run->screen = screen;
  int saved_repeats = run->bench.repeats;
  double saved_slow = run->bench.slow_factor;
  if (screen) {
    run->bench.repeats = 1;
    run->bench.slow_factor = 0.0;
  }
  run->claimed = calloc((size_t)(n > 0 ? n : 1), sizeof *run->claimed);
  tune_stage *stages = calloc(2, sizeof *stages);
  if (!run->claimed || !stages) {
    free(run->claimed);
    free(stages);
    core_error(FJ_OUT_OF_MEMORY, "tune: no memory for %d candidates", n);
    return -1;
  }
  int batch_size = o->batch > 0 ? o->batch : TUNE_DEFAULT_BATCH;
  if (batch_size > TUNE_MAX_BATCH) batch_size = TUNE_MAX_BATCH;
  /* On a GPU the compiler works on CPU threads while the device times the previous batch; on the CPU
   * they would share the cores being timed, so by default they take turns. */
  int overlap = o->overlap >= 0 ? o->overlap : s->backend->device_type != kDLCPU;
  int stop = 0, failed = 0, next = 0;
  tune_stage *waiting = NULL;  /* compiled, not yet measured (overlap only) */
  int turn = 0;
  for (;;) {
    tune_stage *stage = &stages[turn];
    stage->run = run;
    stage->count = 0;
    if (!stop && !failed && next < n) {
      run->stage_index = stage->index;
      run->in_flight = waiting ? waiting->count : 0;
      stage->count = tune_gather(run, evals, n, &next, batch_size, &stop);
      if (stage->count > 0 && run->deadline > 0.0 && tune_now_s() > run->deadline) {
        stop = 1;
        tune_stage_release(stage);
        stage->count = 0;
      }
    }
    if (run->io_error != FJ_OK || failed) {
      failed = 1;
      tune_stage_release(stage);
      if (waiting != NULL) tune_stage_release(waiting);
      break;
    }
    if (stage->count == 0 && waiting == NULL) break;
    tune_batch batches[2];
    int k = 0;
    if (stage->count > 0) batches[k++] = tune_compile_batch(stage);
    if (waiting != NULL) batches[k++] = tune_measure_batch(waiting);
    if (overlap || stage->count == 0) {
      if (tune_children(run, batches, k) != FJ_OK) failed = 1;
    } else {
      /* Taking turns: compile this batch, then time it. */
      if (tune_children(run, batches, 1) != FJ_OK) failed = 1;
      if (!failed) {
        batches[0] = tune_measure_batch(stage);
        if (batches[0].count > 0 && tune_children(run, batches, 1) != FJ_OK) failed = 1;
      }
      if (tune_stage_release(stage)) stop = stop ? stop : 1;
      continue;  /* stages[turn] is free again */
    }
    if (waiting != NULL && tune_stage_release(waiting)) stop = stop ? stop : 1;
    waiting = stage->count > 0 ? stage : NULL;
    turn ^= 1;
    if (failed && waiting != NULL) {
      tune_stage_release(waiting);
      waiting = NULL;
    }
  }
  free(run->claimed);
  run->claimed = NULL;
  free(stages);
  run->bench.repeats = saved_repeats;
  run->bench.slow_factor = saved_slow;
  if (run->io_error != FJ_OK) {
    core_error(run->io_error, "tune: the tuning database refused a write, stopping: %s", run->io_message);
    return -1;
  }
  if (failed) return -1;
  if (stop) {
    tune_stop why = stop == 2 ? TUNE_STOPPED_TRIALS : TUNE_STOPPED_TIME;
    if (run->result->stopped == TUNE_COMPLETE) run->result->stopped = why;
    return 1;
  }
  return 0;
}

/* ---- the confirmation round ------------------------------------------------------------------- */

/* The leaders' configs once the database knows them from earlier runs too (so that a rerun that times
 * nothing new still confirms the best of what was timed before). */
static void tune_offer_known_leaders(tune_problem_run *run) {
  const tune_state *s = run->s;
  for (size_t i = 0; i < s->known_count; i++) {
    const tune_known *k = &s->known[i];
    kernel_config config;
    char why[128];
    if (k->outcome == TRIAL_OK && strcmp(k->problem_key, run->key) == 0 && strcmp(k->timing, s->timing) == 0 &&
        k->batch == run->bench.problem.batch && k->seqlen_q == run->bench.problem.seqlen_q &&
        k->seqlen_kv == run->bench.problem.seqlen_kv &&
        kernel_config_parse(s->family, k->config, &config, why, sizeof why) == 0)
      tune_offer_leader(run, &config, k->median_ms);
  }
}

typedef struct tune_confirm_round {
  int leader[TUNE_CONFIRM_MAX * TUNE_CONFIRM_ROUNDS];    /* per job: its leader */
  tune_report reports[TUNE_CONFIRM_MAX][TUNE_CONFIRM_ROUNDS];
  int settled[TUNE_CONFIRM_MAX];
} tune_confirm_round;

/* The identity of config's confirmation: this run's sizes and versions, under <method>-confirm. */
static void tune_fill_confirmation(const tune_problem_run *run, const char *config, tuning_trial *trial) {
  tune_fill_trial(run, config, 0, trial);
  trial->timing_method = run->s->confirm_timing;
}

static void tune_on_confirmed(void *user, const tune_job *job, const tune_report *report) {
  tune_confirm_round *round = user;
  int i = round->leader[job->id];
  if (round->settled[i] < TUNE_CONFIRM_ROUNDS) round->reports[i][round->settled[i]++] = *report;
}

/* Records leader i's confirmation from its rounds: ok with the median of their medians when every
 * round was ok, else the first failure. Returns -1 when the database refused it. */
static int tune_record_confirmation(tune_problem_run *run, const tune_confirm_round *round, int i) {
  tune_state *s = run->s;
  char config_text[256];
  kernel_config_string(s->family, &run->leaders[i].config, config_text, sizeof config_text);
  tuning_trial trial;
  tune_fill_confirmation(run, config_text, &trial);
  trial.outcome = TRIAL_OK;
  double medians[TUNE_CONFIRM_ROUNDS];
  for (int r = 0; r < TUNE_CONFIRM_ROUNDS; r++) {
    const tune_report *report = &round->reports[i][r];
    if (report->outcome != TRIAL_OK) {
      trial.outcome = (trial_outcome)report->outcome;
      trial.rel_err = report->rel_err;
      trial.message = report->message;
      break;
    }
    medians[r] = report->median_ms;
    trial.min_ms = r == 0 || report->min_ms < trial.min_ms ? report->min_ms : trial.min_ms;
    trial.max_ms = report->max_ms > trial.max_ms ? report->max_ms : trial.max_ms;
    trial.repeats += report->repeats;
    trial.rel_err = report->rel_err > trial.rel_err ? report->rel_err : trial.rel_err;
  }
  if (trial.outcome == TRIAL_OK) {
    for (int a = 1; a < TUNE_CONFIRM_ROUNDS; a++)  /* a few values: an insertion sort */
      for (int b = a; b > 0 && medians[b - 1] > medians[b]; b--) {
        double t = medians[b];
        medians[b] = medians[b - 1];
        medians[b - 1] = t;
      }
    trial.median_ms = TUNE_CONFIRM_ROUNDS % 2 ? medians[TUNE_CONFIRM_ROUNDS / 2]
                                              : 0.5 * (medians[TUNE_CONFIRM_ROUNDS / 2 - 1] + medians[TUNE_CONFIRM_ROUNDS / 2]);
  } else {
    trial.min_ms = trial.max_ms = 0.0;
    trial.repeats = 0;
  }
  if (tuning_db_record_trial(s->db, &s->device, &trial, NULL) != FJ_OK) {
    run->io_error = FJ_IO;
    snprintf(run->io_message, sizeof run->io_message, "recording the confirmation of %s: %s", config_text,
             fj_last_error());
    return -1;
  }
  run->result->confirmed++;
  run->settled++;
  tune_progress_report(run, config_text, trial.outcome, trial.median_ms, 1);
  if (trial.outcome != TRIAL_OK)
    core_log(LOG_WARN, "tune: %s passed the search but not its confirmation: %s: %s", config_text,
             tuning_outcome_name(trial.outcome), trial.message);
  return 0;
}

/* The search timed each candidate once, and its best few were picked for being fast in that one try:
 * on a machine whose speed drifts (a neighbour, a clock) one of them may have drawn a fast moment. The
 * leaders not yet confirmed are timed again, in turn (each round in another order and another child),
 * with no slow cutoff; tuning_db_update_winner then ranks the confirmed ones by these times. */
static int tune_confirm(tune_problem_run *run) {
  tune_state *s = run->s;
  if (run->leader_count < 2 || (run->deadline > 0.0 && tune_now_s() > run->deadline)) return 0;
  int todo[TUNE_CONFIRM_MAX], n = 0;
  for (int i = 0; i < run->leader_count; i++) {
    char config_text[256];
    kernel_config_string(s->family, &run->leaders[i].config, config_text, sizeof config_text);
    tuning_trial trial;
    tune_fill_confirmation(run, config_text, &trial);
    if (tuning_db_has_trial(s->db, s->info.fingerprint, &trial) != 1) todo[n++] = i;
  }
  if (n == 0) return 0;
  tune_confirm_round *round = calloc(1, sizeof *round);
  tune_job *jobs = calloc((size_t)(n * TUNE_CONFIRM_ROUNDS), sizeof *jobs);
  if (round == NULL || jobs == NULL) {
    free(round);
    free(jobs);
    core_error(FJ_OUT_OF_MEMORY, "tune: no memory for the confirmation round");
    return -1;
  }
  for (int r = 0; r < TUNE_CONFIRM_ROUNDS; r++)
    for (int j = 0; j < n; j++) {
      int id = r * n + j;
      round->leader[id] = todo[(j + r) % n];
      jobs[id].id = id;
      jobs[id].config = run->leaders[round->leader[id]].config;
    }
  run->phase = "confirm";
  tune_plan_more(run, n);
  double saved_slow = run->bench.slow_factor;
  run->bench.slow_factor = 0.0;
  /* A round per child: a process of its own loads each kernel anew (on a CPU where the code lands
   * changes its speed; a fresh process is a fresh draw). */
  int rc = 0;
  for (int r = 0; r < TUNE_CONFIRM_ROUNDS && rc == 0; r++) {
    tune_batch batch = {.mode = TUNE_MODE_MEASURE, .jobs = jobs + r * n, .count = n,
                        .timeout_s = tune_measure_timeout(run), .on_result = tune_on_confirmed, .user = round};
    rc = tune_children(run, &batch, 1) == FJ_OK ? 0 : -1;
  }
  run->bench.slow_factor = saved_slow;
  /* A leader whose rounds a deadline cut short stays unconfirmed. */
  for (int j = 0; j < n && rc == 0; j++)
    if (round->settled[todo[j]] == TUNE_CONFIRM_ROUNDS) rc = tune_record_confirmation(run, round, todo[j]);
  free(round);
  free(jobs);
  return rc;
}

/* ---- one problem ------------------------------------------------------------------------------ */

static void tune_problem_free(tune_problem_run *run) {
  tune_inputs_free(&run->in);
  free(run->ref);
  run->ref = NULL;
}

/* A problem's host tensors: q, k, v, o, and for a paged or varlen shape its block table and key counts,
 * for a ragged one (varlen_q) its query offsets, for one with sinks its heads' logits. */
typedef struct tune_tensors {
  host_tensor *q, *k, *v, *o, *table, *lens, *cu, *sinks;
} tune_tensors;

/* Allocates the tensors for sizes and validates them into *problem (packed, row-major). A paged shape's
 * k and v are a pool of every sequence's ceil(seqlen_kv / page_size) pages, shuffled (as bench
 * --page-size lays them out); a varlen shape gives every sequence seqlen_kv keys; a paged one that is
 * not varlen has its keys rounded up to whole pages (the key a call of it derives has no seqlens_kv). */
static fj_status tune_make_problem(const fj_problem_shape *shape, int64_t batch, int heads, int kv_heads,
                                   int64_t seqlen_q, int64_t seqlen_kv, uint64_t seed, const tune_tensors *t,
                                   attention_problem *problem) {
  dtype_id dtype;
  core_dtype_from_dlpack(shape->dtype, &dtype);
  int kv_fp8 = 0;  /* checked by tune_run */
  runtime_shape_kv_fp8(shape, "shape", &kv_fp8);
  dtype_id kv_dtype = kv_fp8 ? (dtype_id)kv_fp8 : dtype;
  int varlen, page_size;  /* page_size >= 0: runtime_problem_from_shape refused the shape otherwise */
  runtime_shape_kv_layout(shape, &varlen, &page_size);
  /* ragged queries: every sequence's seqlen_q queries end to end, q and o [batch x seqlen_q, heads, d] */
  int ragged = runtime_shape_varlen_q(shape), q_dims = ragged ? 3 : 4;
  int64_t q_shape[4] = {batch, seqlen_q, heads, shape->head_dim};
  if (ragged) {
    q_shape[0] = batch * seqlen_q;
    q_shape[1] = heads;
    q_shape[2] = shape->head_dim;
  }
  int64_t kv_shape[4] = {batch, seqlen_kv, kv_heads, shape->head_dim};
  int64_t pages = 0;
  const int head_dim_v = runtime_shape_head_dim_v(shape);
  if (page_size > 0) {
    pages = (seqlen_kv + page_size - 1) / page_size;
    if (pages < 1) pages = 1;
    kv_shape[0] = batch * pages;
    kv_shape[1] = page_size;
  }
  /* v and o: v's head dim last */
  int64_t v_shape[4] = {kv_shape[0], kv_shape[1], kv_shape[2], head_dim_v}, o_shape[4];
  memcpy(o_shape, q_shape, sizeof o_shape);
  o_shape[q_dims - 1] = head_dim_v;
  int sinks = runtime_shape_sinks(shape);
  int64_t lens_shape[1] = {batch}, cu_shape[1] = {batch + 1};
  if (host_tensor_alloc(t->q, dtype, q_dims, q_shape, NULL) != 0 ||
      host_tensor_alloc(t->k, kv_dtype, 4, kv_shape, NULL) != 0 || host_tensor_alloc(t->v, kv_dtype, 4, v_shape, NULL) != 0 ||
      host_tensor_alloc(t->o, dtype, q_dims, o_shape, NULL) != 0 ||
      (page_size > 0 && host_block_table_alloc(t->table, batch, pages) != 0) ||
      (varlen && host_tensor_alloc_int32(t->lens, 1, lens_shape) != 0) ||
      (ragged && host_tensor_alloc_int32(t->cu, 1, cu_shape) != 0) ||
      (sinks && tune_sinks_alloc(t->sinks, heads) != 0))
    return core_error(FJ_OUT_OF_MEMORY, "tune: no memory for the tensors of b=%" PRId64 " sq=%" PRId64
                      " skv=%" PRId64 " h=%d d=%d", batch, seqlen_q, seqlen_kv, heads, shape->head_dim);
  host_tensor_fill_random(t->q, seed);
  host_tensor_fill_random(t->k, seed + 1);
  host_tensor_fill_random(t->v, seed + 2);
  host_tensor_poison(t->o);
  if (varlen)
    for (int64_t b = 0; b < batch; b++) ((int32_t *)t->lens->t.data)[b] = (int32_t)seqlen_kv;
  if (ragged)
    for (int64_t b = 0; b <= batch; b++) ((int32_t *)t->cu->t.data)[b] = (int32_t)(b * seqlen_q);
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &t->q->t;
  args.k = &t->k->t;
  args.v = &t->v->t;
  args.o = &t->o->t;
  args.causal = shape->causal;
  args.windowed = 1;
  runtime_shape_window(shape, &args.window_left, &args.window_right);
  if (page_size > 0) args.block_table = &t->table->t;
  if (varlen) args.seqlens_kv = &t->lens->t;
  if (ragged) {
    args.cu_seqlens_q = &t->cu->t;
    args.max_seqlen_q = seqlen_q;
  }
  if (sinks) args.sinks = &t->sinks->t;
  args.softcap = runtime_shape_softcap(shape);
  return core_validate_attention(&args, problem);
}

void tune_inputs_free(tune_inputs *in) {
  if (in == NULL) return;
  host_tensor *all[] = {&in->q,  &in->k,  &in->v,  &in->o,  &in->table,  &in->lens,  &in->cu,  &in->sinks,
                        &in->cq, &in->ck, &in->cv, &in->co, &in->ctable, &in->clens, &in->ccu, &in->csinks};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_tensor_free(all[i]);
}

fj_status tune_inputs_build(const fj_problem_shape *shape, int index, tune_inputs *in) {
  memset(in, 0, sizeof *in);
  tune_tensors measured = {&in->q, &in->k, &in->v, &in->o, &in->table, &in->lens, &in->cu, &in->sinks};
  tune_tensors check = {&in->cq, &in->ck, &in->cv, &in->co, &in->ctable, &in->clens, &in->ccu, &in->csinks};
  fj_status status = tune_make_problem(shape, shape->batch, shape->heads, shape->kv_heads, shape->seqlen_q,
                                       shape->seqlen_kv, 0x5eed0001u + (uint64_t)index, &measured, &in->problem);
  if (status != FJ_OK) return status;
  if (core_attention_flops(&in->problem) <= TUNE_CHECK_MAX_FLOPS) {
    in->check = in->problem;
    in->check_is_problem = 1;
    return FJ_OK;
  }
  /* Same generated code (dtype, head dim, causal, layout), sizes that make the reference cheap and
   * still cross several tiles with a ragged end; the causal diagonal keeps its side. */
  int kv = shape->kv_heads < 2 ? shape->kv_heads : 2;
  int heads = shape->heads / shape->kv_heads * kv;
  int64_t skv = shape->seqlen_kv < 263 ? shape->seqlen_kv : 263;
  int64_t sq = shape->seqlen_q < 131 ? shape->seqlen_q : 131;
  if (shape->seqlen_q > shape->seqlen_kv) {
    int64_t over = shape->seqlen_q - shape->seqlen_kv;
    sq = skv + (over < 64 ? over : 64);
  } else if (sq > skv) {
    sq = skv;
  }
  return tune_make_problem(shape, 1, heads, kv, sq, skv, 0x5eed1001u + (uint64_t)index, &check, &in->check);
}

/* The inputs, the check problem and its reference, and the bench the children read. */
static fj_status tune_problem_setup(tune_problem_run *run) {
  tune_state *s = run->s;
  const fj_problem_shape *shape = run->shape;
  const tune_options *o = s->options;
  tune_bench *b = &run->bench;
  memset(b, 0, sizeof *b);
  fj_status status = tune_inputs_build(shape, run->index, &run->in);
  if (status != FJ_OK) return status;
  b->problem = run->in.problem;
  b->check = run->in.check;
  b->check_is_problem = run->in.check_is_problem;
  b->problem_o = &run->in.o;
  b->check_o = run->in.check_is_problem ? &run->in.o : &run->in.co;
  b->inputs = &run->in;
  b->shape = shape;
  b->problem_index = run->index;
  core_attention_key_string(&b->problem.key, run->key, sizeof run->key);

  size_t elements =
      (size_t)(b->check.batch * b->check.seqlen_q * b->check.key.heads * core_key_head_dim_v(&b->check.key));
  run->ref = malloc((elements ? elements : 1) * sizeof *run->ref);
  if (run->ref == NULL) return core_error(FJ_OUT_OF_MEMORY, "tune: no memory for the reference");
  status = core_reference_attention(&b->check, run->ref, NULL);
  if (status != FJ_OK) return status;
  b->check_ref_count = elements;

  b->backend = s->backend;
  b->device_index = s->device_index;
  b->cache_dir = runtime_cache_dir(s->context);
  b->family = s->family;
  b->measure_threads = o->measure_threads;
  b->compile_threads = o->compile_threads;
  b->check_ref = run->ref;
  b->tolerance = core_dtype_tolerance((dtype_id)b->problem.key.dtype);
  b->warmup = o->warmup > 0 ? o->warmup : 1;
  b->repeats = o->repeats > 0 ? o->repeats : 10;
  b->slow_factor = o->slow_factor;
  b->close_fd = s->lock_fd;
  b->fault = s->fault;
  b->deadline = run->deadline;
  b->child_exe = o->child_exe;
  return FJ_OK;
}

/* 1 and its median when config has an ok confirmation at this run's sizes and versions. */
static int tune_confirmed_ms(tune_problem_run *run, const char *config, double *ms) {
  tuning_trial trial;
  tune_fill_confirmation(run, config, &trial);
  return tuning_db_trial_median(run->s->db, run->s->info.fingerprint, &trial, ms);
}

/* The winner's config and time: its confirmation's median where it has one (the search's own time of
 * the config it crowned is its luckiest; the confirmation's is the fair one), else its trial's. */
static void tune_winner(tune_problem_run *run, char *config, size_t size, double *ms, int *confirmed) {
  tuning_winner w;
  memset(&w, 0, sizeof w);
  config[0] = '\0';
  *ms = 0.0;
  *confirmed = 0;
  if (tuning_db_lookup_winner(run->s->db, run->s->info.fingerprint, run->key, run->s->family->name,
                              run->s->timing, &w) == 1 &&
      w.exact && w.current_versions) {
    snprintf(config, size, "%s", w.config);
    *ms = w.median_ms;
    *confirmed = tune_confirmed_ms(run, w.config, ms);
  }
}

static fj_status tune_problem(tune_problem_run *run) {
  tune_state *s = run->s;
  tune_result *r = run->result;
  const tune_options *o = s->options;
  double now = tune_now_s();
  run->started = now;
  if (s->budget_end > 0.0) {
    double left = s->budget_end - now;
    run->deadline = now + (left > 0.0 ? left : 0.0) / (double)(run->count - run->index);
  }
  fj_status status = tune_problem_setup(run);
  if (status != FJ_OK) return status;
  snprintf(r->problem_key, sizeof r->problem_key, "%s", run->key);
  int previous_confirmed;
  tune_winner(run, r->previous_config, sizeof r->previous_config, &r->previous_ms, &previous_confirmed);
  tune_offer_known_leaders(run);

  tune_space space;
  status = tune_space_build(s->family, &run->bench.problem.key, runtime_target(s->context), o->space, &space);
  if (status != FJ_OK) return status;
  r->space = space.total;
  r->pruned = space.pruned;
  r->duplicates = space.duplicates;
  core_log(LOG_INFO, "tune: %s: %" PRId64 " points, %" PRId64 " pruned by %s's constraints%s%s%s, %" PRId64
           " the same kernel as another%s%s%s, %" PRId64 " candidates", run->key, space.total, space.pruned,
           s->family->name, space.pruned ? " (e.g. " : "", space.example_reason, space.pruned ? ")" : "",
           space.duplicates, space.duplicates ? " (e.g. " : "", space.duplicate_reason, space.duplicates ? ")" : "",
           space.count);

  /* the config a call would run: the heuristic's, or where that cannot run the problem the valid one
   * nearest it */
  kernel_config default_config;
  char why[256];
  if (kernel_config_default(s->family, &run->bench.problem.key, runtime_target(s->context), &default_config, why,
                            sizeof why) < 0) {
    /* Nothing to measure; one such shape in an operator's list must not stop the others. */
    core_log(LOG_WARN, "tune: %s: no config of %s can run it on %s (the default's reason: %s); skipped", run->key,
             s->family->name, runtime_target(s->context)->cpu, why);
    r->stopped = TUNE_UNSUPPORTED;
    tune_space_free(&space);
    return FJ_OK;
  }
  kernel_config_string(s->family, &default_config, r->default_config, sizeof r->default_config);

  /* The default first: it is the baseline of the report, and its time sets the slow cutoff and the
   * timeouts for everything after it. */
  tune_eval first;
  memset(&first, 0, sizeof first);
  first.config = default_config;
  run->planned = 1;
  int rc = tune_evaluate(run, &first, 1, "default", 0);
  if (rc < 0) {
    tune_space_free(&space);
    return run->io_error != FJ_OK ? run->io_error : FJ_INTERNAL;
  }
  if (first.outcome == TRIAL_OK && first.state != TUNE_EVAL_UNRUN) r->default_ms = first.median_ms;
  if (rc == 0) rc = tune_search(run, o, s->family, &space, &default_config);
  tune_space_free(&space);
  if (rc >= 0) rc = tune_confirm(run);
  if (rc < 0) return run->io_error != FJ_OK ? run->io_error : FJ_INTERNAL;

  if (tuning_db_update_winner(s->db, s->info.fingerprint, run->key, s->family->name, s->timing,
                              fj_version_string(), jit_llvm_version(), s->family->generator_version) != FJ_OK)
    return FJ_IO;
  tune_winner(run, r->best_config, sizeof r->best_config, &r->best_ms, &r->best_confirmed);
  double default_confirmed_ms;
  if (r->default_ms > 0.0 && tune_confirmed_ms(run, r->default_config, &default_confirmed_ms)) {
    r->default_ms = default_confirmed_ms;
    r->default_confirmed = 1;
  }
  r->candidates = run->settled - r->confirmed;
  r->seconds = tune_now_s() - run->started;
  run->phase = "done";
  tune_progress_report(run, NULL, TRIAL_OK, 0.0, 0);
  return FJ_OK;
}

/* ---- the run ----------------------------------------------------------------------------------- */

static fj_status tune_run_shapes(fj_context *context, const fj_problem_shape *problems, int count,
                                 const tune_options *options, tune_result *results);

/* Packed keys' calls use the winner of the problem with seqlens_kv, ALiBi's that of the problem
 * without it (runtime_tuned_config): that problem is what is tuned. An fp8 cache is tuned as itself (its
 * kernels stage and widen the raw bytes, so its best tiles may differ; its calls fall back on the
 * winner of k and v in q's dtype where it has none); its kv_dtype is checked first. */
fj_status tune_run(fj_context *context, const fj_problem_shape *problems, int count,
                   const tune_options *options, tune_result *results) {
  if (context == NULL || (problems == NULL && count > 0) || options == NULL || (results == NULL && count > 0))
    return core_error(FJ_INVALID_ARGUMENT, "tune_run: NULL context, problems, options or results");
  if (count < 0) return core_error(FJ_INVALID_ARGUMENT, "tune_run: count=%d", count);
  fj_problem_shape *tuned = count > 0 ? malloc((size_t)count * sizeof *tuned) : NULL;
  if (count > 0 && tuned == NULL) return core_error(FJ_OUT_OF_MEMORY, "tune_run: no memory for %d shapes", count);
  for (int i = 0; i < count; i++) {
    char what[32];
    snprintf(what, sizeof what, "problems[%d]", i);
    int kv_fp8;  /* only checked here (named in the error); tune_make_problem makes k and v of it */
    int bias;
    fj_status status = runtime_shape_kv_fp8(&problems[i], what, &kv_fp8);
    if (status == FJ_OK) status = runtime_shape_bias(&problems[i], what, &bias);
    if (status != FJ_OK) {
      free(tuned);
      return status;
    }
    tuned[i] = problems[i];
    if (runtime_shape_packed_k(&problems[i])) {
      tuned[i].packed_k = 0;
      tuned[i].varlen = 1;
      core_log(LOG_INFO, "tune: %s gives packed keys: tuned with seqlens_kv, whose winner its calls use", what);
    }
    if (runtime_shape_alibi(&problems[i])) {
      tuned[i].alibi = 0;
      core_log(LOG_INFO, "tune: %s gives ALiBi slopes: tuned without them, whose winner its calls use", what);
    }
    if (bias) {
      tuned[i].attn_bias_dtype = (DLDataType){0, 0, 0};
      core_log(LOG_INFO, "tune: %s gives an additive bias: tuned without it, whose winner its calls use", what);
    }
  }
  fj_status status = tune_run_shapes(context, tuned, count, options, results);
  free(tuned);
  return status;
}

static fj_status tune_run_shapes(fj_context *context, const fj_problem_shape *problems, int count,
                                 const tune_options *options, tune_result *results) {
  tune_state s;
  memset(&s, 0, sizeof s);
  s.context = context;
  s.options = options;
  s.lock_fd = -1;
  s.backend = runtime_backend(context);
  s.device_index = runtime_device_index(context);
  s.family = kernel_family_for_backend(s.backend->name);
  if (s.family == NULL)
    return core_error(FJ_UNSUPPORTED, "no kernel family to tune for the %s backend", s.backend->name);
  if (s.backend->device_type != kDLCPU && (options->child_exe == NULL || options->child_exe[0] == '\0'))
    return core_error(FJ_UNSUPPORTED, "tuning on the %s backend needs options->child_exe: its driver cannot "
                      "be used in a forked child, so each child must exec a program that runs "
                      "tune_child_exec_main (the flashjit command does)", s.backend->name);
  fj_status status = s.backend->device_info(s.device_index, &s.info);
  if (status != FJ_OK) return status;
  s.device = (tuning_device){.fingerprint = s.info.fingerprint, .backend = s.backend->name, .name = s.info.name,
                             .arch = s.info.arch, .driver_version = s.info.driver_version,
                             .compute_units = s.info.compute_units, .memory_bytes = s.info.memory_bytes};
  snprintf(s.device_id, sizeof s.device_id, "%s:%d", s.backend->name, s.device_index);
  s.timing = runtime_timing_method(context);
  snprintf(s.screen_timing, sizeof s.screen_timing, "%s-screen", s.timing);
  snprintf(s.confirm_timing, sizeof s.confirm_timing, "%s" TUNING_CONFIRM_SUFFIX, s.timing);
  s.fault = getenv("FLASHJIT_TUNE_FAULT");
  if (s.fault != NULL && s.fault[0] == '\0') s.fault = NULL;

  /* Every shape is checked before anything runs, so a typo on line 9 does not surface at 3 am. */
  attention_problem described;
  for (int i = 0; i < count; i++) {
    char what[32];
    snprintf(what, sizeof what, "problems[%d]", i);
    status = runtime_problem_from_shape(&problems[i], what, &described);
    if (status != FJ_OK) return status;
    if (problems[i].seqlen_kv == 0)
      return core_error(FJ_INVALID_ARGUMENT, "%s.seqlen_kv=0: nothing to tune (no kernel runs)", what);
  }
  if (options->strategy < 0 || options->strategy >= TUNE_STRATEGY_COUNT)
    return core_error(FJ_INVALID_ARGUMENT, "tune_run: strategy=%d", (int)options->strategy);

  s.lock_fd = tune_lock_acquire(runtime_cache_dir(context), s.device_id);
  if (s.lock_fd < 0) return FJ_IO;
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", runtime_cache_dir(context), TUNING_DB_FILE);
  status = tuning_db_open(path, &s.db);
  if (status == FJ_OK) status = tune_load_known(&s);
  s.start = tune_now_s();
  if (options->budget_s > 0.0) s.budget_end = s.start + options->budget_s;

  for (int i = 0; i < count && status == FJ_OK; i++) {
    tune_result *r = &results[i];
    memset(r, 0, sizeof *r);
    r->duplicate_of = -1;
    attention_problem mine;
    runtime_problem_from_shape(&problems[i], "problem", &mine);
    for (int j = 0; j < i && r->duplicate_of < 0; j++) {
      attention_problem theirs;
      runtime_problem_from_shape(&problems[j], "problem", &theirs);
      if (memcmp(&mine.key, &theirs.key, sizeof mine.key) == 0) r->duplicate_of = j;
    }
    if (r->duplicate_of >= 0) {
      /* One key, one winner: two sizes of one key would compete in one ranking. */
      const tune_result *first = &results[r->duplicate_of];
      core_attention_key_string(&mine.key, r->problem_key, sizeof r->problem_key);
      snprintf(r->best_config, sizeof r->best_config, "%s", first->best_config);
      r->best_ms = first->best_ms;
      snprintf(r->default_config, sizeof r->default_config, "%s", first->default_config);
      r->default_ms = first->default_ms;
      core_log(LOG_WARN, "tune: problem %d has the key of problem %d (%s; only sizes the key does not name "
               "differ): tuned once, at problem %d's sizes", i, r->duplicate_of, r->problem_key, r->duplicate_of);
      continue;
    }
    if (s.budget_end > 0.0 && tune_now_s() >= s.budget_end) {
      r->stopped = TUNE_STOPPED_TIME;
      core_attention_key_string(&mine.key, r->problem_key, sizeof r->problem_key);
      continue;
    }
    tune_problem_run run;
    memset(&run, 0, sizeof run);
    run.s = &s;
    run.index = i;
    run.count = count;
    run.result = r;
    run.shape = &problems[i];
    status = tune_problem(&run);
    if (status != FJ_OK) core_error_prefix("tuning problem %d: ", i);
    tune_problem_free(&run);
  }
  tune_known_free(&s);
  tuning_db_close(s.db);
  tune_lock_release(s.lock_fd);
  return status;
}
