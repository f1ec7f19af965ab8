/* test_tuner.c: the tuner as a library, on small shapes (b1 h2 s256 d64, fp32 and bf16) and a restricted
 * space so that each run takes seconds: exhaustive and seeded random runs are reproducible (the same
 * candidates, and the same winner or one tied with it within timing noise); the winner is never slower
 * than the default measured in the same run; every trial is in the database; a candidate made to crash,
 * hang or give a wrong result is recorded as such and never wins, and the run still ends with a
 * winner; budgets stop a run and say so; the device lock refuses a second tuner; and afterwards a fresh
 * context uses the tuned config (exact key), the nearest bucket's, or the default, and says which. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/json_reader.h"
#include "cache/tuning_db.h"
#include "core/dtype.h"
#include "runtime/runtime.h"
#include "tuner/tune_internal.h"
#include "tuner/tuner.h"
#include "check.h"
#include "test_files.h"
#include "tuning_dump.h"

static char root[256];

/* A fresh cache folder under this run's scratch folder. */
static const char *fresh_dir(const char *name) {
  static char paths[16][320];
  static int used;
  char *path = paths[used++ % 16];
  snprintf(path, 320, "%s/%s", root, name);
  mkdir(path, 0755);
  return path;
}

/* The restricted space: 32 points (bf16_dot 0 and 1), 12 valid on an AVX-512 host for fp32 (the 4 of
 * block_m=64 vector=8 need more registers, the 16 of bf16_dot=1 need bf16 inputs), the default config among them; for bf16 the
 * 8 of bf16_dot=1 and vector=16 are valid too where the CPU has AVX512-BF16 (space_valid). */
#define SPACE "block_m=32,64 block_n=12,24 unroll=2 pv_rows=6 pv_vectors=2,4 pack_gqa=0"
#define SPACE_POINTS 32

static int space_valid(dtype_id dtype) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) return -1;
  int pairs = runtime_target(context)->has_avx512bf16 && runtime_target(context)->vector_bits >= 512;
  fj_context_destroy(context);
  return dtype == DTYPE_BF16 && pairs ? 20 : 12;
}

static fj_problem_shape small_shape(dtype_id dtype) {
  fj_problem_shape s;
  fj_problem_shape_init(&s);
  s.dtype = core_dtype_to_dlpack(dtype);
  s.heads = s.kv_heads = 2;
  s.seqlen_q = s.seqlen_kv = 256;
  s.head_dim = 64;
  return s;
}

static fj_context *open_context(const char *dir) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.cache_dir = dir;
  options.num_threads = 1;
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) {
    printf("FAIL context: %s\n", fj_last_error());
    exit(1);
  }
  return context;
}

static void base_options(tune_options *o) {
  tune_options_init(o);
  o->space = SPACE;
  o->repeats = 10;
  o->batch = 8;
  /* One thread: the other core is free for whatever else the machine runs, which keeps timings of
   * these tiny kernels far steadier than two threads that must both be scheduled. */
  o->measure_threads = 1;
}

/* ---- reading the database back ------------------------------------------------------------------- */

typedef struct db_trial {
  char problem[256], config[128], timing[32], outcome[24];
  double median_ms, min_ms;
} db_trial;

typedef struct db_dump {
  db_trial *trials;
  int count;
} db_dump;

static db_dump read_db(const char *dir) {
  db_dump dump = {0};
  json_value *json = tuning_dump_json(dir);
  if (json) {
    const json_value *trials = json_get(json, "trials");
    if (trials && trials->type == JSON_ARRAY) {
      dump.trials = calloc(trials->count + 1, sizeof *dump.trials);
      for (size_t i = 0; i < trials->count; i++) {
        const json_value *t = &trials->items[i];
        db_trial *d = &dump.trials[dump.count++];
        const json_value *v;
        if ((v = json_get(t, "problem")) && v->type == JSON_STRING) snprintf(d->problem, sizeof d->problem, "%s", v->string);
        if ((v = json_get(t, "config")) && v->type == JSON_STRING) snprintf(d->config, sizeof d->config, "%s", v->string);
        if ((v = json_get(t, "timing_method")) && v->type == JSON_STRING) snprintf(d->timing, sizeof d->timing, "%s", v->string);
        if ((v = json_get(t, "outcome")) && v->type == JSON_STRING) snprintf(d->outcome, sizeof d->outcome, "%s", v->string);
        const json_value *timings = json_get(t, "timings");
        if (timings && (v = json_get(timings, "median_ms")) && v->type == JSON_NUMBER) d->median_ms = v->number;
        if (timings && (v = json_get(timings, "min_ms")) && v->type == JSON_NUMBER) d->min_ms = v->number;
      }
    }
  }
  json_free(json);
  return dump;
}

static const db_trial *find_trial(const db_dump *dump, const char *problem, const char *config, const char *timing) {
  for (int i = 0; i < dump->count; i++)
    if (strcmp(dump->trials[i].problem, problem) == 0 && strcmp(dump->trials[i].config, config) == 0 &&
        strcmp(dump->trials[i].timing, timing) == 0)
      return &dump->trials[i];
  return NULL;
}

static int count_timing(const db_dump *dump, const char *timing) {
  int n = 0;
  for (int i = 0; i < dump->count; i++) n += strcmp(dump->trials[i].timing, timing) == 0;
  return n;
}

/* The winner of run b is the winner of run a, or the two are tied. On this shared machine ties are
 * real (several configs within 2%) and a busy neighbour can flip them, so disagreement is accepted only
 * where one of the runs itself timed the two winners within 25% of each other; by their fastest runs,
 * since interference only ever adds time and a candidate that lost was often timed only a few times.
 * (25%, not less: a CI machine's neighbour can stretch a whole burst of runs; what must never happen,
 * a clearly slower config winning, stays caught.) */
/* Two winners tie when their fastest runs, the best of what either run measured for each, are within
 * 25%: one run's noisy measurement of a config (this VM once timed the same config 0.21 ms in one run
 * and 0.29 ms in the other, so that each run's winner beat the other's by 37%) is not a difference
 * between the configs. */
/* Two configs of shape's problem timed again here, alternating: 6 rounds of 10 calls each on one thread,
 * and each one's fastest call in ms (-1 where it could not run). */
static void retime(const fj_problem_shape *shape, const char *config_a, const char *config_b, double best[2]) {
  best[0] = best[1] = -1.0;
  fj_context *context = open_context(fresh_dir("retime"));
  const kernel_family *family = kernel_family_for_backend("cpu");
  tune_inputs in;
  const char *texts[2] = {config_a, config_b};
  runtime_kernel *kernels[2] = {NULL, NULL};
  int ready = family != NULL && tune_inputs_build(shape, 0, &in) == FJ_OK;
  for (int i = 0; ready && i < 2; i++) {
    kernel_config config;
    char why[256];
    ready = kernel_config_parse(family, texts[i], &config, why, sizeof why) == 0 &&
            runtime_get_kernel(context, &in.problem, &config, &kernels[i]) == FJ_OK;
  }
  for (int round = 0; ready && round < 6; round++)
    for (int i = 0; ready && i < 2; i++)
      for (int call = 0; ready && call < 10; call++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ready = runtime_launch_attention(context, kernels[i], &in.problem, NULL) == FJ_OK;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ready && (best[i] < 0.0 || ms < best[i])) best[i] = ms;
      }
  if (!ready) best[0] = best[1] = -1.0;
  if (family != NULL) tune_inputs_free(&in);
  fj_context_destroy(context);
}

static int same_or_tied(const fj_problem_shape *shape, const tune_result *a, const tune_result *b,
                        const db_dump *a_dump, const db_dump *b_dump) {
  if (strcmp(a->best_config, b->best_config) == 0) return 1;
  const db_dump *dumps[2] = {a_dump, b_dump};
  double tx = -1.0, ty = -1.0;
  for (int i = 0; i < 2; i++) {
    const db_trial *x = find_trial(dumps[i], a->problem_key, a->best_config, "cpu-wall");
    const db_trial *y = find_trial(dumps[i], a->problem_key, b->best_config, "cpu-wall");
    printf("     run %d: fastest runs %s %.4f ms, %s %.4f ms\n", i + 1, a->best_config, x ? x->min_ms : -1.0,
           b->best_config, y ? y->min_ms : -1.0);
    if (x && (tx < 0.0 || x->min_ms < tx)) tx = x->min_ms;
    if (y && (ty < 0.0 || y->min_ms < ty)) ty = y->min_ms;
  }
  if (tx > 0.0 && ty > 0.0 && fabs(tx - ty) <= 0.25 * fmin(tx, ty)) return 1;
  /* This VM's timings are bimodal (a whole trial at 0.22 ms or at 0.29 ms, whatever the config), so a
   * config can draw the slow mode in both runs: the two winners are timed again, alternating, and judged
   * by what they do now. */
  double again[2];
  retime(shape, a->best_config, b->best_config, again);
  printf("     timed again, alternating: %.4f ms and %.4f ms\n", again[0], again[1]);
  return again[0] > 0.0 && again[1] > 0.0 && fabs(again[0] - again[1]) <= 0.25 * fmin(again[0], again[1]);
}

/* The winner is no slower than the default. Where both were confirmed, by their confirmations (the
 * search timed each once, so the winner's search time may be the higher); where the default was not, it
 * was slower in the search than every confirmed config, and the winner's search time is within 5% of it. */
static int winner_not_slower(const db_dump *dump, const tune_result *r) {
  const char *confirm = "cpu-wall" TUNING_CONFIRM_SUFFIX;
  const db_trial *winner = find_trial(dump, r->problem_key, r->best_config, confirm);
  const db_trial *fallback = find_trial(dump, r->problem_key, r->default_config, confirm);
  if (winner && fallback) {
    printf("     confirmed: the winner %.4f ms, the default %.4f ms\n", winner->median_ms, fallback->median_ms);
    return winner->median_ms <= fallback->median_ms;
  }
  const db_trial *searched = find_trial(dump, r->problem_key, r->best_config, "cpu-wall");
  double searched_ms = searched ? searched->median_ms : 0.0;
  printf("     searched: the winner %.4f ms, the default %.4f ms (not confirmed)\n", searched_ms, r->default_ms);
  return r->default_ms > 0.0 && searched_ms > 0.0 && searched_ms <= r->default_ms * 1.05 && !r->default_confirmed;
}

/* ---- the tests ------------------------------------------------------------------------------------ */

static void test_parsers(void) {
  double s = 0;
  check(tune_parse_duration("8h", &s) == 0 && s == 8 * 3600, "duration 8h");
  check(tune_parse_duration("90m", &s) == 0 && s == 5400, "duration 90m");
  check(tune_parse_duration("1h30m", &s) == 0 && s == 5400, "duration 1h30m");
  check(tune_parse_duration("120s", &s) == 0 && s == 120, "duration 120s");
  check(tune_parse_duration("45", &s) == 0 && s == 45, "duration 45 (seconds)");
  check(tune_parse_duration("", &s) != 0 && tune_parse_duration("8x", &s) != 0 && tune_parse_duration("-1h", &s) != 0 &&
            tune_parse_duration("1h30", &s) != 0 && tune_parse_duration("0s", &s) != 0,
        "bad durations refused");
  tune_strategy st;
  check(tune_strategy_parse("halving", &st) && st == TUNE_HALVING && !tune_strategy_parse("greedy", &st),
        "strategy names");

  fj_context *context = open_context(fresh_dir("space"));
  const kernel_family *family = kernel_family_for_backend("cpu");
  attention_problem problem;
  fj_problem_shape shape = small_shape(DTYPE_F32);
  runtime_problem_from_shape(&shape, "shape", &problem);
  tune_space space;
  fj_status built = tune_space_build(family, &problem.key, runtime_target(context), NULL, &space);
  check(built == FJ_OK && space.total == 6 * 9 * 3 * 2 * 5 * 3 * 2 * 2 &&
            space.count + space.pruned + space.duplicates == space.total && space.count > 0 && space.duplicates > 0,
        "whole space: %lld points, %lld pruned, %lld the same kernel as another, %lld candidates",
        (long long)space.total, (long long)space.pruned, (long long)space.duplicates, (long long)space.count);
  for (int64_t i = 0; i < space.count; i++) {
    char why[256];
    kernel_config twin;
    if (!family->config_valid(&problem.key, runtime_target(context), &space.configs[i], why, sizeof why)) {
      check(0, "every listed config is valid (%s)", why);
      break;
    }
    if (family->same_kernel_as(&problem.key, runtime_target(context), &space.configs[i], &twin, why, sizeof why)) {
      check(0, "no listed config compiles as another (%s)", why);
      break;
    }
  }
  tune_space_free(&space);
  /* unroll=1 compiles as unroll=2 at d = 64: with both in the space, only unroll=2 is tried; alone, it is */
  const char *twins = "block_m=32 block_n=12 unroll=1,2 vector=16 pv_rows=6 pv_vectors=2 pack_gqa=0 bf16_dot=0";
  char kept[256] = "";
  built = tune_space_build(family, &problem.key, runtime_target(context), twins, &space);
  if (built == FJ_OK && space.count == 1) kernel_config_string(family, &space.configs[0], kept, sizeof kept);
  check(built == FJ_OK && space.total == 2 && space.duplicates == 1 && strstr(kept, " unroll=2 ") != NULL &&
            strstr(space.duplicate_reason, "unroll=1") != NULL,
        "unroll=1,2: %lld candidate(s) (%s), %lld the same kernel (%s)", (long long)space.count, kept,
        (long long)space.duplicates, space.duplicate_reason);
  tune_space_free(&space);
  built = tune_space_build(family, &problem.key, runtime_target(context),
                           "block_m=32 block_n=12 unroll=1 vector=16 pv_rows=6 pv_vectors=2 pack_gqa=0 bf16_dot=0", &space);
  kept[0] = '\0';
  if (built == FJ_OK && space.count == 1) kernel_config_string(family, &space.configs[0], kept, sizeof kept);
  check(built == FJ_OK && space.duplicates == 0 && strstr(kept, " unroll=1 ") != NULL,
        "unroll=1 alone is still tried (%s)", kept);
  tune_space_free(&space);
  built = tune_space_build(family, &problem.key, runtime_target(context), SPACE, &space);
  check(built == FJ_OK && space.total == SPACE_POINTS && space.count == space_valid(DTYPE_F32),
        "restricted space: %lld points, %lld valid", (long long)space.total, (long long)space.count);
  tune_space_free(&space);
  built = tune_space_build(family, &problem.key, runtime_target(context), "block_q=16", &space);
  check(built == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "block_q") != NULL,
        "unknown parameter refused: %s", fj_last_error());
  built = tune_space_build(family, &problem.key, runtime_target(context), "block_m=17", &space);
  check(built == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "block_m=17") != NULL,
        "unlisted value refused: %s", fj_last_error());
  fj_context_destroy(context);
}

static int run_tuner(const char *dir, const fj_problem_shape *shapes, int count, const tune_options *o,
                     tune_result *results) {
  fj_context *context = open_context(dir);
  fj_status status = tune_run(context, shapes, count, o, results);
  if (status != FJ_OK) printf("     tune_run: %s: %s\n", fj_status_string(status), fj_last_error());
  fj_context_destroy(context);
  return status;
}

static void test_exhaustive(void) {
  fj_problem_shape shapes[2] = {small_shape(DTYPE_F32), small_shape(DTYPE_BF16)};
  tune_options o;
  base_options(&o);
  o.strategy = TUNE_EXHAUSTIVE;
  tune_result first[2], second[2];
  const char *dir_a = fresh_dir("exhaustive-a"), *dir_b = fresh_dir("exhaustive-b");
  check(run_tuner(dir_a, shapes, 2, &o, first) == FJ_OK, "exhaustive run 1 (fp32 and bf16)");
  check(run_tuner(dir_b, shapes, 2, &o, second) == FJ_OK, "exhaustive run 2 in a fresh database");
  db_dump a = read_db(dir_a), b = read_db(dir_b);
  for (int p = 0; p < 2; p++) {
    tune_result *r = &first[p];
    check(r->best_config[0] != '\0' && r->best_ms > 0.0, "[%d] a winner: %s (%.4f ms)", p, r->best_config, r->best_ms);
    int valid = space_valid(p == 0 ? DTYPE_F32 : DTYPE_BF16);
    check(r->space == SPACE_POINTS && r->pruned == SPACE_POINTS - valid && r->run == valid &&
              r->candidates == valid && r->skipped == 0,
          "[%d] exhaustive ran the %d valid configs (space %lld, pruned %lld, new %lld)", p, valid, (long long)r->space,
          (long long)r->pruned, (long long)r->run);
    int in_db = 0, confirmed = 0;
    const db_trial *best_confirmed = NULL;
    for (int i = 0; i < a.count; i++) {
      const db_trial *t = &a.trials[i];
      if (strcmp(t->problem, r->problem_key) != 0) continue;
      in_db += strcmp(t->timing, "cpu-wall") == 0;
      if (strcmp(t->timing, "cpu-wall" TUNING_CONFIRM_SUFFIX) != 0) continue;
      confirmed++;
      if (strcmp(t->outcome, "ok") == 0 && (best_confirmed == NULL || t->median_ms < best_confirmed->median_ms))
        best_confirmed = t;
    }
    check(in_db == valid, "[%d] every trial is in the database (%d rows)", p, in_db);
    check(r->confirmed == 3 && confirmed == 3 && best_confirmed && strcmp(best_confirmed->config, r->best_config) == 0,
          "[%d] the 3 best timed again (%d recorded): the winner %s is the best of them (%s, %.4f ms)", p, confirmed,
          r->best_config, best_confirmed ? best_confirmed->config : "none", best_confirmed ? best_confirmed->median_ms : 0.0);
    check(winner_not_slower(&a, r), "[%d] the winner is no slower than the default", p);
    check(r->best_confirmed && best_confirmed && fabs(r->best_ms - best_confirmed->median_ms) <= 1e-9 * r->best_ms,
          "[%d] the report gives the winner's confirmed time (%.4f ms; confirmed %.4f)", p, r->best_ms,
          best_confirmed ? best_confirmed->median_ms : 0.0);
    check(same_or_tied(&shapes[p], &first[p], &second[p], &a, &b), "[%d] the same winner twice (or tied)", p);
  }
  free(a.trials);
  free(b.trials);

  /* A rerun on the same database runs nothing: everything is recorded. */
  tune_result again[2];
  int status = run_tuner(dir_a, shapes, 2, &o, again);
  check(status == FJ_OK && again[0].run == 0 && again[0].skipped == 12 && again[0].confirmed == 0 &&
            again[1].run == 0 && again[1].confirmed == 0 && strcmp(again[0].best_config, first[0].best_config) == 0,
        "rerun: nothing run or confirmed again (%lld new, %lld known, %lld confirmed), same winner",
        (long long)again[0].run, (long long)again[0].skipped, (long long)again[0].confirmed);

  /* After tuning, a fresh context uses the winner and says where its config came from. */
  fj_context *context = open_context(dir_a);
  attention_problem problem;
  runtime_kernel *kernel = NULL;
  char config[256];
  runtime_problem_from_shape(&shapes[0], "shape", &problem);
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && strcmp(kernel->config_source, "tuned") == 0,
        "fresh context: config source \"%s\" for the tuned key", kernel ? kernel->config_source : "?");
  if (kernel) kernel_config_string(kernel->family, &kernel->config, config, sizeof config);
  check(kernel && strcmp(config, first[0].best_config) == 0, "fresh context runs the winner (%s)", kernel ? config : "?");
  fj_problem_shape longer = shapes[0];
  longer.seqlen_q = longer.seqlen_kv = 1000;  /* bucket 2^10, tuned at 2^8 */
  runtime_problem_from_shape(&longer, "shape", &problem);
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && strcmp(kernel->config_source, "tuned-nearest") == 0,
        "nearest bucket: config source \"%s\"", kernel ? kernel->config_source : "?");
  fj_problem_shape other = shapes[0];
  other.heads = other.kv_heads = 4;  /* never tuned */
  runtime_problem_from_shape(&other, "shape", &problem);
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && strcmp(kernel->config_source, "default") == 0,
        "untuned key: config source \"%s\"", kernel ? kernel->config_source : "?");
  kernel_config explicit_config;
  runtime_problem_from_shape(&shapes[0], "shape", &problem);
  kernel_family_for_backend("cpu")->default_config(&problem.key, runtime_target(context), &explicit_config);
  status = runtime_get_kernel(context, &problem, &explicit_config, &kernel);
  check(status == FJ_OK && strcmp(kernel->config_source, "explicit") == 0,
        "explicit config: config source \"%s\"", kernel ? kernel->config_source : "?");

  /* Warmup loads the winners; a bad shape is named. */
  size_t loaded = 0;
  check(fj_context_warmup(context, shapes, 2, &loaded) == FJ_OK && loaded == 2, "warmup loads 2 shapes");
  fj_problem_shape bad[2] = {shapes[0], shapes[1]};
  bad[1].head_dim = 60;
  status = fj_context_warmup(context, bad, 2, &loaded);
  check(status == FJ_INVALID_ARGUMENT && loaded == 1 &&
            strstr(fj_last_error(), "shapes[1].head_dim=60") != NULL,
        "warmup names a bad shape: %s", fj_last_error());
  check(fj_context_warmup(context, NULL, 0, NULL) == FJ_OK && fj_context_warmup(NULL, shapes, 1, NULL) == FJ_INVALID_ARGUMENT &&
            fj_context_warmup(context, NULL, 1, NULL) == FJ_INVALID_ARGUMENT,
        "warmup argument checks");
  fj_context_destroy(context);
}

/* A paged, varlen shape (a decode step against a paged cache with per-sequence key counts) is tuned
 * on tensors laid out as such: its trials and winner are filed under its own key, which a call of that
 * shape (and a warmup) then finds; the same shape unpaged stays untuned. */
static void test_paged_shape(void) {
  fj_problem_shape shape = small_shape(DTYPE_F32);
  shape.batch = 3;
  shape.heads = 4;
  shape.kv_heads = 2;
  shape.seqlen_q = 2;
  shape.seqlen_kv = 203;
  shape.causal = 1;
  shape.varlen = 1;
  shape.page_size = 5;
  tune_options o;
  base_options(&o);
  o.strategy = TUNE_RANDOM;
  o.max_trials = 4;
  tune_result result;
  const char *dir = fresh_dir("paged");
  check(run_tuner(dir, &shape, 1, &o, &result) == FJ_OK, "paged varlen shape tuned (random N=4)");
  check(strstr(result.problem_key, " varlen=1 page=5 ") != NULL && result.best_config[0] != '\0' &&
            result.outcomes[TRIAL_OK] == result.run && result.run > 0,
        "its key \"%s\", winner %s, all %lld new trials ok (each checked against the reference)",
        result.problem_key, result.best_config, (long long)result.run);
  db_dump db = read_db(dir);
  int filed = db.count > 0;
  for (int i = 0; i < db.count; i++) filed = filed && strcmp(db.trials[i].problem, result.problem_key) == 0;
  check(filed, "its %d trials are filed under that key", db.count);
  free(db.trials);

  fj_context *context = open_context(dir);
  attention_problem problem;
  runtime_kernel *kernel = NULL;
  runtime_problem_from_shape(&shape, "shape", &problem);
  fj_status status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && strcmp(kernel->config_source, "tuned") == 0 && problem.key.page_size == 5 &&
            problem.key.varlen == 1,
        "a call of the shape: config source \"%s\"", kernel ? kernel->config_source : "?");
  fj_problem_shape dense = shape;
  dense.varlen = 0;
  dense.page_size = 0;
  runtime_problem_from_shape(&dense, "shape", &problem);
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && strcmp(kernel->config_source, "default") == 0,
        "the same shape unpaged: config source \"%s\"", kernel ? kernel->config_source : "?");
  size_t loaded = 0;
  check(fj_context_warmup(context, &shape, 1, &loaded) == FJ_OK && loaded == 1, "warmup loads the paged shape");
  fj_problem_shape bad = shape;
  bad.page_size = -1;
  status = fj_context_warmup(context, &bad, 1, &loaded);
  check(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "shapes[0].page_size=-1") != NULL,
        "a negative page size is named: %s", fj_last_error());
  bad = shape;
  bad.softcap = -2.0f;
  status = fj_context_warmup(context, &bad, 1, &loaded);
  check(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "shapes[0].softcap=-2: must be finite") != NULL,
        "a negative softcap is named: %s", fj_last_error());
  bad.softcap = 1e35f;
  status = fj_context_warmup(context, &bad, 1, &loaded);
  check(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "shapes[0].softcap=1e+35 with softmax_scale") != NULL,
        "a softcap past 1e30 is named: %s", fj_last_error());
  /* the same calls over an fp8 cache: a kernel of their own, with the winner tuned for k and v of fp32 */
  fj_problem_shape fp8 = shape;
  fp8.kv_dtype = (DLDataType){FJ_DLPACK_FLOAT8_E4M3FN, 8, 1};
  runtime_problem_from_shape(&fp8, "shape", &problem);
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && problem.key.kv_fp8 == DTYPE_E4M3 && strcmp(kernel->config_source, "tuned") == 0,
        "the shape over an E4M3 cache: kv_fp8=%d, config source \"%s\"", problem.key.kv_fp8,
        kernel ? kernel->config_source : "?");
  check(fj_context_warmup(context, &fp8, 1, &loaded) == FJ_OK && loaded == 1, "warmup loads the fp8 shape");
  bad = fp8;
  bad.kv_dtype = (DLDataType){kDLInt, 8, 1};
  status = fj_context_warmup(context, &bad, 1, &loaded);
  check(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "shapes[0].kv_dtype=(code 0, bits 8, lanes 1)") != NULL,
        "an int8 kv_dtype is named: %s", fj_last_error());
  fj_context_destroy(context);
}

/* A shape whose calls give packed keys and ALiBi slopes over an fp8 cache is tuned as the problem its
 * calls take their winner from (seqlens_kv, no ALiBi; the fp8 cache kept); a call of the shape then
 * finds that winner and warmup loads its kernel; packed keys with a page size are named. */
static void test_shape_tuned_as_its_base(void) {
  fj_problem_shape shape = small_shape(DTYPE_F32);
  shape.batch = 2;
  shape.heads = 4;
  shape.kv_heads = 2;
  shape.seqlen_q = 40;
  shape.seqlen_kv = 90;
  shape.causal = 1;
  shape.packed_k = shape.alibi = 1;
  shape.attn_bias_dtype = (DLDataType){kDLFloat, 32, 1};
  shape.kv_dtype = (DLDataType){FJ_DLPACK_FLOAT8_E5M2, 8, 1};
  tune_options o;
  base_options(&o);
  o.strategy = TUNE_RANDOM;
  o.max_trials = 3;
  tune_result result;
  const char *dir = fresh_dir("base");
  check(run_tuner(dir, &shape, 1, &o, &result) == FJ_OK && result.best_config[0] != '\0',
        "a packed-keys ALiBi fp8 shape tuned (random N=3): winner %s", result.best_config);
  check(strstr(result.problem_key, " varlen=1 ") != NULL && strstr(result.problem_key, "varlen_k") == NULL &&
            strstr(result.problem_key, "alibi") == NULL && strstr(result.problem_key, "bias") == NULL &&
            strstr(result.problem_key, " kv=fp8_e5m2") != NULL,
        "tuned under its base problem's key \"%s\"", result.problem_key);
  fj_context *context = open_context(dir);
  attention_problem problem;
  runtime_kernel *kernel = NULL;
  runtime_problem_from_shape(&shape, "shape", &problem);
  fj_status status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && problem.key.varlen_k && problem.key.alibi && problem.key.bias == KEY_BIAS_F32 &&
            problem.key.kv_fp8 == DTYPE_E5M2 &&
            strcmp(kernel->config_source, "tuned") == 0,
        "a call of the shape: config source \"%s\"", kernel ? kernel->config_source : "?");
  size_t loaded = 0;
  check(fj_context_warmup(context, &shape, 1, &loaded) == FJ_OK && loaded == 1, "warmup loads the shape");
  fj_problem_shape bad = shape;
  bad.page_size = 16;
  status = fj_context_warmup(context, &bad, 1, &loaded);
  check(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "shapes[0].packed_k with page_size=16") != NULL,
        "packed keys with a page size are named: %s", fj_last_error());
  fj_context_destroy(context);
}

/* The config a call of `shape` gets in a context on dir, as text, and where it came from. */
static void config_of_call(const char *dir, const fj_problem_shape *shape, char *config, size_t config_size,
                           char *source, size_t source_size) {
  fj_context *context = open_context(dir);
  attention_problem problem;
  runtime_kernel *kernel = NULL;
  snprintf(config, config_size, "?");
  snprintf(source, source_size, "?");
  if (runtime_problem_from_shape(shape, "shape", &problem) == FJ_OK &&
      runtime_get_kernel(context, &problem, NULL, &kernel) == FJ_OK) {
    kernel_config_string(kernel->family, &kernel->config, config, config_size);
    snprintf(source, source_size, "%s", kernel->config_source);
  }
  fj_context_destroy(context);
}

/* An fp8 cache is tuned as itself: its trials run with k and v in fp8 (checked against the reference)
 * and are filed under its own key; a call over that cache takes its winner, one over the other fp8
 * format (not tuned) the winner of k and v in q's dtype, as does a call in q's dtype. The two winners
 * differ by construction: the problem in q's dtype is tuned in a space of one config with
 * pv_vectors=2 while every config with pv_vectors=4 (the default, which every run also times) gives
 * wrong results, the fp8 one in a space of pv_vectors=4 while those with pv_vectors=2 are wrong. */
static void test_fp8_shape_tuned_as_itself(void) {
  fj_problem_shape plain = small_shape(DTYPE_F32), e4m3 = plain, e5m2 = plain;
  plain.causal = e4m3.causal = e5m2.causal = 1;
  e4m3.kv_dtype = (DLDataType){FJ_DLPACK_FLOAT8_E4M3FN, 8, 1};
  e5m2.kv_dtype = (DLDataType){FJ_DLPACK_FLOAT8_E5M2, 8, 1};
  const char *dir = fresh_dir("fp8");
  tune_options o;
  base_options(&o);
  o.confirm = 0;
  o.space = "block_m=32 block_n=12 unroll=2 pv_rows=6 pv_vectors=2 pack_gqa=0";
  tune_result twin, own;
  setenv("FLASHJIT_TUNE_FAULT", "wrong:pv_vectors=4", 1);
  check(run_tuner(dir, &plain, 1, &o, &twin) == FJ_OK && strstr(twin.best_config, "pv_vectors=2") != NULL &&
            strstr(twin.problem_key, "kv=") == NULL,
        "the problem in q's dtype tuned: %s under \"%s\"", twin.best_config, twin.problem_key);
  o.space = "block_m=64 block_n=24 unroll=2 pv_rows=6 pv_vectors=4 pack_gqa=0";
  setenv("FLASHJIT_TUNE_FAULT", "wrong:pv_vectors=2", 1);
  check(run_tuner(dir, &e4m3, 1, &o, &own) == FJ_OK && strstr(own.best_config, "pv_vectors=4") != NULL &&
            strstr(own.problem_key, " kv=fp8_e4m3") != NULL,
        "the E4M3 cache tuned as itself: %s under \"%s\"", own.best_config, own.problem_key);
  unsetenv("FLASHJIT_TUNE_FAULT");
  db_dump db = read_db(dir);
  int own_ok = 0;
  for (int i = 0; i < db.count; i++)
    own_ok += strcmp(db.trials[i].problem, own.problem_key) == 0 && strcmp(db.trials[i].outcome, "ok") == 0;
  check(own_ok >= 1, "its trials with k and v in E4M3 pass the check against the reference: %d ok under its key",
        own_ok);
  free(db.trials);
  char config[256], source[64];
  config_of_call(dir, &e4m3, config, sizeof config, source, sizeof source);
  check(strcmp(config, own.best_config) == 0 && strcmp(source, "tuned") == 0,
        "a call over the E4M3 cache takes its own winner: %s (%s)", config, source);
  config_of_call(dir, &e5m2, config, sizeof config, source, sizeof source);
  check(strcmp(config, twin.best_config) == 0 && strcmp(source, "tuned") == 0,
        "a call over an E5M2 cache, not tuned, takes the winner in q's dtype: %s (%s)", config, source);
  config_of_call(dir, &plain, config, sizeof config, source, sizeof source);
  check(strcmp(config, twin.best_config) == 0, "a call in q's dtype takes its own: %s", config);
}

/* A shape whose v has a head dim of its own (MLA's prefill) is tuned as itself: its key names dv, its
 * trials are checked against the reference with o as wide as v, and a call of it finds the winner; the
 * same head dim given twice is the plain problem; a bad head_dim_v is named. */
static void test_shape_with_head_dim_v(void) {
  fj_problem_shape shape = small_shape(DTYPE_F32);
  shape.heads = 4;
  shape.kv_heads = 2;
  shape.seqlen_q = shape.seqlen_kv = 70;
  shape.head_dim = 48;
  shape.head_dim_v = 24;
  shape.causal = 1;
  tune_options o;
  base_options(&o);
  o.strategy = TUNE_RANDOM;
  o.max_trials = 3;
  tune_result result;
  const char *dir = fresh_dir("head-dim-v");
  memset(&result, 0, sizeof result);
  int tuned = run_tuner(dir, &shape, 1, &o, &result) == FJ_OK;
  check(tuned && result.best_config[0] != '\0' && result.outcomes[TRIAL_OK] == result.run && result.run > 0,
        "a shape with head_dim_v 24 beside 48 tuned (random N=3), all %lld trials ok: winner %s",
        (long long)result.run, result.best_config);
  check(strstr(result.problem_key, " d=48 ") != NULL && strstr(result.problem_key, " dv=24 ") != NULL,
        "its key names both head dims: \"%s\"", result.problem_key);
  fj_context *context = open_context(dir);
  attention_problem problem;
  runtime_kernel *kernel = NULL;
  runtime_problem_from_shape(&shape, "shape", &problem);
  fj_status status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && problem.key.head_dim_v == 24 && strcmp(kernel->config_source, "tuned") == 0,
        "a call of the shape: config source \"%s\"", kernel ? kernel->config_source : "?");
  size_t loaded = 0;
  check(fj_context_warmup(context, &shape, 1, &loaded) == FJ_OK && loaded == 1, "warmup loads the shape");
  fj_problem_shape same = shape;
  same.head_dim_v = 48;  /* head_dim's own: the plain problem, untuned here */
  runtime_problem_from_shape(&same, "shape", &problem);
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  check(status == FJ_OK && problem.key.head_dim_v == 0 && strcmp(kernel->config_source, "default") == 0,
        "head_dim_v = head_dim is the plain problem: key dv %d, config source \"%s\"", problem.key.head_dim_v,
        kernel ? kernel->config_source : "?");
  fj_problem_shape bad = shape;
  bad.head_dim_v = 12;
  status = fj_context_warmup(context, &bad, 1, &loaded);
  check(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "shapes[0].head_dim_v=12 must be") != NULL,
        "a bad head_dim_v is named: %s", fj_last_error());
  fj_context_destroy(context);
}

static void test_random_and_halving(void) {
  fj_problem_shape shape = small_shape(DTYPE_F32);
  tune_options o;
  base_options(&o);
  o.strategy = TUNE_RANDOM;
  o.max_trials = 6;
  o.seed = 42;
  tune_result first, second;
  const char *dir_a = fresh_dir("random-a"), *dir_b = fresh_dir("random-b");
  check(run_tuner(dir_a, &shape, 1, &o, &first) == FJ_OK && run_tuner(dir_b, &shape, 1, &o, &second) == FJ_OK,
        "random N=6 seed 42, twice");
  db_dump a = read_db(dir_a), b = read_db(dir_b);
  int same_sample = count_timing(&a, "cpu-wall") == 6 && count_timing(&b, "cpu-wall") == 6;
  for (int i = 0; i < a.count && same_sample; i++)
    same_sample = strcmp(a.trials[i].timing, "cpu-wall") != 0 ||
                  find_trial(&b, a.trials[i].problem, a.trials[i].config, "cpu-wall") != NULL;
  check(same_sample, "the same 6 candidates both times (%d and %d trials)", count_timing(&a, "cpu-wall"),
        count_timing(&b, "cpu-wall"));
  check(same_or_tied(&shape, &first, &second, &a, &b), "the same winner twice (or tied)");
  check(winner_not_slower(&a, &first), "the random winner is no slower than the default");
  free(a.trials);
  free(b.trials);

  o.seed = 43;
  tune_result other;
  const char *dir_c = fresh_dir("random-c");
  run_tuner(dir_c, &shape, 1, &o, &other);
  db_dump c = read_db(dir_c);
  a = read_db(dir_a);
  int differs = 0;
  for (int i = 0; i < c.count; i++) differs |= find_trial(&a, c.trials[i].problem, c.trials[i].config, "cpu-wall") == NULL;
  check(differs, "another seed draws other candidates");
  free(a.trials);
  free(c.trials);

  /* Halving: screening trials are recorded under their own method and never win. */
  o.strategy = TUNE_HALVING;
  o.max_trials = 9;
  o.seed = 1;
  tune_result h;
  const char *dir_h = fresh_dir("halving");
  int status = run_tuner(dir_h, &shape, 1, &o, &h);
  check(status == FJ_OK && h.best_config[0] != '\0', "halving finds a winner: %s",
        h.best_config);
  db_dump d = read_db(dir_h);
  int screened = count_timing(&d, "cpu-wall-screen"), full = count_timing(&d, "cpu-wall");
  check(screened == 4 && full >= 2 && screened + full <= 9 && h.run == screened + full,
        "halving: %d screened + %d timed in full <= 9 trials", screened, full);
  check(find_trial(&d, h.problem_key, h.best_config, "cpu-wall") != NULL, "the halving winner was timed in full");
  free(d.trials);
}

static void test_faults(void) {
  fj_problem_shape shape = small_shape(DTYPE_F32);
  tune_options o;
  base_options(&o);
  o.strategy = TUNE_EXHAUSTIVE;
  o.timeout_s = 2.0;
  const char *dir = fresh_dir("faults");
  /* Two crash, one hangs, two give wrong results; none of them is the default. */
  setenv("FLASHJIT_TUNE_FAULT",
         "crash:block_m=32 block_n=12 unroll=2 vector=16;hang:block_m=32 block_n=24 unroll=2 vector=16 pv_rows=6 "
         "pv_vectors=2;wrong:block_m=32 block_n=24 unroll=2 vector=8",
         1);
  tune_result r;
  int status = run_tuner(dir, &shape, 1, &o, &r);
  unsetenv("FLASHJIT_TUNE_FAULT");
  check(status == FJ_OK && r.best_config[0] != '\0', "the run finishes with a winner despite faults: %s", r.best_config);
  check(r.outcomes[TRIAL_CRASH] == 2 && r.outcomes[TRIAL_TIMEOUT] == 1 && r.outcomes[TRIAL_WRONG_RESULT] == 2 &&
            r.outcomes[TRIAL_OK] == 7 && r.run == 12,
        "outcomes: %lld ok, %lld crash, %lld timeout, %lld wrong_result", (long long)r.outcomes[TRIAL_OK],
        (long long)r.outcomes[TRIAL_CRASH], (long long)r.outcomes[TRIAL_TIMEOUT], (long long)r.outcomes[TRIAL_WRONG_RESULT]);
  db_dump d = read_db(dir);
  const db_trial *hung = find_trial(&d, r.problem_key,
                                    "block_m=32 block_n=24 unroll=2 vector=16 pv_rows=6 pv_vectors=2 pack_gqa=0 bf16_dot=0",
                                    "cpu-wall");
  check(hung && strcmp(hung->outcome, "timeout") == 0, "the hanging candidate is recorded as timeout");
  int crashes = 0, wrongs = 0;
  for (int i = 0; i < d.count; i++) {
    crashes += strcmp(d.trials[i].outcome, "crash") == 0 && strstr(d.trials[i].config, "block_m=32 block_n=12 unroll=2 vector=16") != NULL;
    wrongs += strcmp(d.trials[i].outcome, "wrong_result") == 0 && strstr(d.trials[i].config, "block_m=32 block_n=24 unroll=2 vector=8") != NULL;
  }
  check(crashes == 2 && wrongs == 2, "crashes and wrong results recorded against their configs (%d, %d)", crashes, wrongs);
  check(strstr(r.best_config, "block_m=32 block_n=24 unroll=2 vector=8") == NULL &&
            strstr(r.best_config, "block_m=32 block_n=12 unroll=2 vector=16") == NULL,
        "no faulty candidate wins (%s)", r.best_config);
  free(d.trials);
}

static void test_budgets_and_lock(void) {
  fj_problem_shape shape = small_shape(DTYPE_F32);
  tune_options o;
  base_options(&o);
  o.strategy = TUNE_EXHAUSTIVE;
  o.max_trials = 5;
  tune_result r;
  const char *dir = fresh_dir("budget");
  int status = run_tuner(dir, &shape, 1, &o, &r);
  check(status == FJ_OK && r.run == 5 && r.stopped == TUNE_STOPPED_TRIALS &&
            r.best_config[0] != '\0',
        "trial budget: 5 new trials, stopped=%d, a winner so far", (int)r.stopped);
  o.max_trials = 0;
  o.budget_s = 0.001;  /* spent before the first batch after the default */
  status = run_tuner(dir, &shape, 1, &o, &r);
  check(status == FJ_OK && r.stopped == TUNE_STOPPED_TIME && r.run < 7,
        "time budget: stopped=%d after %lld new trials", (int)r.stopped, (long long)r.run);
  o.budget_s = 0.0;
  status = run_tuner(dir, &shape, 1, &o, &r);
  check(status == FJ_OK && r.stopped == TUNE_COMPLETE && r.run + r.skipped == 12,
        "resumed without budgets: %lld new + %lld known = 12", (long long)r.run, (long long)r.skipped);

  /* Compiling the next batch while this one is timed (what GPUs do) settles the same candidates. */
  o.overlap = 1;
  o.batch = 3;
  tune_result overlapped;
  const char *dir_o = fresh_dir("overlap");
  status = run_tuner(dir_o, &shape, 1, &o, &overlapped);
  check(status == FJ_OK && overlapped.run == 12 && overlapped.outcomes[TRIAL_OK] == 12 && overlapped.best_config[0],
        "overlapped compile and measurement: %lld trials, %lld ok", (long long)overlapped.run,
        (long long)overlapped.outcomes[TRIAL_OK]);
  o.max_trials = 4;
  const char *dir_p = fresh_dir("overlap-budget");
  status = run_tuner(dir_p, &shape, 1, &o, &overlapped);
  check(status == FJ_OK && overlapped.run == 4 && overlapped.stopped == TUNE_STOPPED_TRIALS,
        "overlapped, trial budget 4: %lld trials", (long long)overlapped.run);
  o.overlap = -1;
  o.batch = 8;
  o.max_trials = 0;

  int fd = tune_lock_acquire(dir, "cpu:0");
  check(fd >= 0, "lock taken by hand");
  fj_context *context = open_context(dir);
  status = tune_run(context, &shape, 1, &o, &r);
  check(status == FJ_IO && strstr(fj_last_error(), "another tuner holds") != NULL, "a second tuner is refused: %s",
        fj_last_error());
  tune_lock_release(fd);
  fj_problem_shape bad = shape;
  bad.kv_heads = 3;
  status = tune_run(context, &bad, 1, &o, &r);
  check(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "problems[0]") != NULL, "a bad shape is named: %s",
        fj_last_error());
  fj_context_destroy(context);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/fj-test-tuner-XXXXXX");
  if (mkdtemp(root) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_parsers();
  test_exhaustive();
  test_random_and_halving();
  test_paged_shape();
  test_shape_tuned_as_its_base();
  test_fp8_shape_tuned_as_itself();
  test_shape_with_head_dim_v();
  test_faults();
  test_budgets_and_lock();
  remove_tree(root);
  return check_summary();
}
