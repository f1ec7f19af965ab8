/* cmd_tune.c: `flashjit tune`: the tuner as a command an operator runs by hand or from cron. It reads
 * the problems (a shapes file, a preset, or one problem from bench's flags), runs tune_run on the
 * device, shows progress (a bar with an ETA on a terminal, plain lines in a log), and ends with a table
 * per problem (default time, tuned time, speedup) and one line per problem saying what changed in the
 * database, so that a morning glance at the cron log says whether anything moved. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/cli.h"
#include "bench/json.h"
#include "bench/presets.h"
#include "core/dtype.h"
#include "core/log.h"
#include "runtime/runtime.h"
#include "tuner/tuner.h"

#define TUNE_COMMAND "tune"

void cmd_tune_help(FILE *out) {
  fprintf(out,
          "usage: flashjit tune [--device D] (--shapes FILE | --preset NAME | --served | problem flags)\n"
          "                     [options]\n"
          "\n"
          "Searches the kernel family's parameter space for each problem on the device, checks every\n"
          "candidate against the float64 reference, times it in a child process (a crash or hang loses\n"
          "that candidate only), and records every trial and the winner in <cache>/tuning.db, which\n"
          "every later call on this device uses. Killed at any point, a rerun with the same arguments\n"
          "continues where it stopped. One tuner per device: a second one exits at once (status 1).\n"
          "\n"
          "problems:\n"
          "  --shapes FILE        problems from a file (format below)\n"
          "  --preset NAME        a preset (below); --list-presets prints them\n"
          "  --served             the problems this device served: every context notes the first\n"
          "                       call of each problem key in <cache>/served-<device>.txt (e.g.\n"
          "                       served-cuda-0.txt), a shapes file; the nightly run tunes them\n"
          "  --batch --heads --kv-heads --seqlen --seqlen-kv --head-dim --dtype --causal\n"
          "                       one problem, as flashjit bench takes it (same defaults)\n"
          "  --head-dim-v N       v's and o's head dim, where it differs (MLA: 128 beside --head-dim 192)\n"
          "  --varlen             the calls give seqlens_kv (each sequence its own key count)\n"
          "  --varlen-q           the calls give cu_seqlens_q (ragged queries; --seqlen their most)\n"
          "  --sinks              the calls give attention sinks (one logit per head)\n"
          "  --softcap X          the calls soft-cap their logits at X (Gemma 2's 50)\n"
          "  --page-size N        the calls read a paged cache of pages of N keys (block_table)\n"
          "  --window-left N --window-right N\n"
          "                       the calls use a sliding window, as flashjit bench takes it\n"
          "search:\n"
          "  --strategy S         exhaustive (every valid config; of configs that compile to the same\n"
          "                       kernel, one), random (--trials N of them, seeded),\n"
          "                       halving (default: screen a sample with one run each, time the best\n"
          "                       quarter in full, refine around the leaders; a sixth of the space)\n"
          "  --budget T           stop starting candidates after T (8h, 90m, 120s, 1h30m) for the\n"
          "                       whole run, shared over the problems\n"
          "  --trials N           at most N new trials per problem (random: N itself)\n"
          "  --seed N             the seed of random and halving samples, default 1\n"
          "  --space \"P=V,V ...\"  only these values of the named parameters, e.g.\n"
          "                       \"block_m=16,32 unroll=2\"\n"
          "measurement:\n"
          "  --warmup N           untimed runs per candidate, default 1 (the checked run is one)\n"
          "  --repeat N           timed runs per candidate, default 10; a candidate stops as soon as\n"
          "                       its fastest run is 10%% slower than the best median (it cannot win;\n"
          "                       two runs must say so, or one when the warmup was 20%% slower)\n"
          "  --confirm N          at the end, time the N best configs again, in turn, 3 rounds (a\n"
          "                       process each), and crown the best of those times (not one lucky\n"
          "                       run); default 3, at most 8, 0 none. A rerun confirms only what is\n"
          "                       not yet confirmed\n"
          "  --timeout S          seconds per candidate before its child is killed; default from the\n"
          "                       default config's time\n"
          "  --threads N          CPU threads the kernels run with, default 0 = every core\n"
          "  --compile-threads N  compiler threads, default one per core\n"
          "  --child-batch N      candidates per child process, default 16\n"
          "  --isolation M        how candidate children start: fork (in a copy of this process; the\n"
          "                       CPU only), exec (each child re-runs this program: needed for GPUs,\n"
          "                       whose driver does not survive fork) or auto (default: fork on the\n"
          "                       CPU, exec elsewhere)\n"
          "other:\n"
          "  --device NAME        auto, cpu, cuda:N, hip:N; default FLASHJIT_DEVICE, else auto\n"
          "  --cache-dir DIR      default FLASHJIT_CACHE_DIR or ~/.cache/flashjit\n"
          "  --json               the final table as one JSON object on stdout\n"
          "  --quiet              no progress, only the table\n"
          "\n");
  presets_help(out);
  fprintf(out,
          "\n"
          "test-only: FLASHJIT_TUNE_FAULT=\"crash:S;hang:S;wrong:S;fault:S;lost:S\" makes the measuring child\n"
          "crash, hang, corrupt the output of, launch with an invalid input pointer (a device fault), or\n"
          "report a device fault and leave, for candidates whose config text contains S.\n"
          "\n"
          "exit status: 0 done (also when a budget stopped it, or a problem no kernel config can run on\n"
          "the device was skipped; it says so), 1 failed or another tuner holds the device, 2 bad usage\n");
}

typedef struct tune_cli {
  const char *device, *shapes, *preset, *strategy, *budget, *space, *cache_dir, *dtype_name, *isolation;
  int64_t batch, heads, kv_heads, seqlen, seqlen_kv, head_dim;
  int64_t head_dim_v;  /* --head-dim-v: 0 when not given (head_dim's) */
  int causal, json, quiet, list_presets, varlen, varlen_q, sinks;
  int served;  /* --served: the problems noted in the device's served file */
  float softcap;
  int64_t page_size;
  int64_t window_left, window_right;
  int windowed;
  int64_t trials, seed, warmup, repeat, threads, compile_threads, child_batch, confirm;
  int64_t timeout;
  int kv_heads_set, seqlen_kv_set, problem_flags;
  int seen_batch, seen_heads, seen_seqlen, seen_head_dim, seen_dtype, seen_causal;
} tune_cli;

/* ---- progress --------------------------------------------------------------------------------- */

typedef struct tune_view {
  int tty;
  int quiet;
  double last_draw;
  int64_t last_line_done;
  double last_line_time;
  const char *last_phase;
  int last_problem;
  double last_best;
  const preset_shapes *problems;
} tune_view;

static double tune_cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void tune_format_duration(double seconds, char *buffer, size_t size) {
  if (seconds < 0) {
    snprintf(buffer, size, "?");
    return;
  }
  long s = (long)(seconds + 0.5);
  if (s >= 3600)
    snprintf(buffer, size, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    snprintf(buffer, size, "%ldm%02lds", s / 60, s % 60);
  else
    snprintf(buffer, size, "%lds", s);
}

static void tune_progress_view(const tune_progress *p, void *user) {
  tune_view *v = user;
  if (v->quiet) return;
  double now = tune_cli_now();
  char eta[32], elapsed[32];
  tune_format_duration(p->eta_s, eta, sizeof eta);
  tune_format_duration(p->elapsed_s, elapsed, sizeof elapsed);
  const char *label = v->problems->labels[p->problem];
  if (v->tty) {
    int end = strcmp(p->phase, "done") == 0;
    if (!end && now - v->last_draw < 0.1) return;
    v->last_draw = now;
    int width = 24;
    int filled = p->total > 0 ? (int)((double)width * (double)p->done / (double)p->total) : 0;
    if (filled > width) filled = width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r\033[K[%s] %d/%d %s  %-10s %" PRId64 "/%" PRId64 "  best %.4g ms  ETA %s  (%s)", bar,
            p->problem + 1, p->problems, label, p->phase, p->done, p->total, p->best_ms, eta, elapsed);
    if (end) fputc('\n', stderr);
    fflush(stderr);
    return;
  }
  /* A log: phase changes, new bests, failures, and a heartbeat every 10% or minute. */
  if (p->problem != v->last_problem) v->last_best = 0.0;
  int phase_changed = v->last_phase == NULL || strcmp(v->last_phase, p->phase) != 0 || v->last_problem != p->problem;
  int better = p->best_ms > 0.0 && (v->last_best <= 0.0 || p->best_ms < v->last_best) && p->last_recorded;
  int failed = p->last_config != NULL && p->last_recorded && p->last_outcome != TRIAL_OK;
  int heartbeat = p->total > 0 && (p->done - v->last_line_done) * 10 >= p->total;
  heartbeat |= now - v->last_line_time > 60.0;
  if (phase_changed || better || failed || heartbeat || strcmp(p->phase, "done") == 0) {
    fprintf(stderr, "flashjit tune: [%d/%d %s] %s %" PRId64 "/%" PRId64 " best %.4g ms, ETA %s, elapsed %s", p->problem + 1,
            p->problems, label, p->phase, p->done, p->total, p->best_ms, eta, elapsed);
    if (failed)
      fprintf(stderr, "; %s: %s", p->last_config, tuning_outcome_name(p->last_outcome));
    else if (better && p->last_config)
      fprintf(stderr, "; new best %s", p->last_config);
    fputc('\n', stderr);
    fflush(stderr);
    v->last_line_done = p->done;
    v->last_line_time = now;
  }
  v->last_phase = p->phase;
  v->last_problem = p->problem;
  v->last_best = p->best_ms;
}

/* ---- flags ------------------------------------------------------------------------------------- */

static int tune_parse(int argc, char **argv, tune_cli *c) {
  memset(c, 0, sizeof *c);
  c->batch = 1;
  c->heads = 8;
  c->seqlen = 2048;
  c->head_dim = 128;
  c->dtype_name = "bf16";
  c->seed = 1;
  c->warmup = 1;
  c->repeat = 10;
  c->confirm = 3;
  int seen_kv = 0, seen_skv = 0, seen_b = 0, seen_h = 0, seen_s = 0, seen_d = 0, seen_t = 0, seen_c = 0;
  int seen_varlen = 0, seen_page = 0, seen_window_left = 0, seen_window_right = 0, seen_varlen_q = 0, seen_sinks = 0;
  int seen_softcap = 0, seen_dv = 0;
  c->window_left = c->window_right = -1;
  const cli_option options[] = {
      {"--device", CLI_STRING, &c->device, 0, 0, NULL},
      {"--shapes", CLI_STRING, &c->shapes, 0, 0, NULL},
      {"--preset", CLI_STRING, &c->preset, 0, 0, NULL},
      {"--served", CLI_FLAG, &c->served, 0, 0, NULL},
      {"--list-presets", CLI_FLAG, &c->list_presets, 0, 0, NULL},
      {"--batch", CLI_INT, &c->batch, 1, INT32_MAX, &seen_b},
      {"--heads", CLI_INT, &c->heads, 1, 65536, &seen_h},
      {"--kv-heads", CLI_INT, &c->kv_heads, 1, 65536, &seen_kv},
      {"--seqlen", CLI_INT, &c->seqlen, 1, INT32_MAX, &seen_s},
      {"--seqlen-kv", CLI_INT, &c->seqlen_kv, 1, INT32_MAX, &seen_skv},
      {"--head-dim", CLI_INT, &c->head_dim, INT64_MIN, INT64_MAX, &seen_d},
      {"--head-dim-v", CLI_INT, &c->head_dim_v, INT64_MIN, INT64_MAX, &seen_dv},
      {"--dtype", CLI_STRING, &c->dtype_name, 0, 0, &seen_t},
      {"--causal", CLI_FLAG, &c->causal, 0, 0, &seen_c},
      {"--varlen", CLI_FLAG, &c->varlen, 0, 0, &seen_varlen},
      {"--varlen-q", CLI_FLAG, &c->varlen_q, 0, 0, &seen_varlen_q},
      {"--sinks", CLI_FLAG, &c->sinks, 0, 0, &seen_sinks},
      {"--softcap", CLI_FLOAT, &c->softcap, 0, INT32_MAX, &seen_softcap},
      {"--page-size", CLI_INT, &c->page_size, 1, INT32_MAX, &seen_page},
      {"--window-left", CLI_INT, &c->window_left, -1, INT32_MAX, &seen_window_left},
      {"--window-right", CLI_INT, &c->window_right, -1, INT32_MAX, &seen_window_right},
      {"--strategy", CLI_STRING, &c->strategy, 0, 0, NULL},
      {"--budget", CLI_STRING, &c->budget, 0, 0, NULL},
      {"--trials", CLI_INT, &c->trials, 1, INT32_MAX, NULL},
      {"--seed", CLI_INT, &c->seed, 0, INT64_MAX, NULL},
      {"--space", CLI_STRING, &c->space, 0, 0, NULL},
      {"--warmup", CLI_INT, &c->warmup, 1, 1000, NULL},
      {"--repeat", CLI_INT, &c->repeat, 1, 100000, NULL},
      {"--confirm", CLI_INT, &c->confirm, 0, TUNE_CONFIRM_MAX, NULL},
      {"--timeout", CLI_INT, &c->timeout, 1, 86400, NULL},
      {"--threads", CLI_INT, &c->threads, 0, 4096, NULL},
      {"--compile-threads", CLI_INT, &c->compile_threads, 0, 4096, NULL},
      {"--child-batch", CLI_INT, &c->child_batch, 1, 4096, NULL},
      {"--isolation", CLI_STRING, &c->isolation, 0, 0, NULL},
      {"--cache-dir", CLI_STRING, &c->cache_dir, 0, 0, NULL},
      {"--json", CLI_FLAG, &c->json, 0, 0, NULL},
      {"--quiet", CLI_FLAG, &c->quiet, 0, 0, NULL},
  };
  switch (cli_parse(TUNE_COMMAND, argc, argv, options, (int)(sizeof options / sizeof options[0]))) {
    case CLI_PARSE_HELP: return -1;
    case CLI_PARSE_ERROR: return CLI_EXIT_USAGE;
    case CLI_PARSE_OK: break;
  }
  c->kv_heads_set = seen_kv;
  c->seqlen_kv_set = seen_skv;
  c->problem_flags = seen_kv || seen_skv || seen_b || seen_h || seen_s || seen_d || seen_t || seen_c || seen_varlen ||
                     seen_page || seen_window_left || seen_window_right || seen_varlen_q || seen_sinks ||
                     seen_softcap || seen_dv;
  c->windowed = seen_window_left || seen_window_right;
  if (!c->kv_heads_set) c->kv_heads = c->heads;
  if (!c->seqlen_kv_set) c->seqlen_kv = c->seqlen;
  if ((c->shapes != NULL) + (c->preset != NULL) + (c->problem_flags != 0) + (c->served != 0) > 1) {
    cli_error(TUNE_COMMAND, "%s: give one of --shapes, --preset, --served or problem flags",
              c->served ? (c->shapes ? "--served with --shapes" : c->preset ? "--served with --preset"
                                                                          : "--served with problem flags")
              : c->shapes && c->preset ? "--shapes with --preset"
              : c->shapes              ? "--shapes with problem flags"
                                       : "--preset with problem flags");
    return CLI_EXIT_USAGE;
  }
  dtype_id dtype;
  if (!core_dtype_parse(c->dtype_name, &dtype)) {
    cli_error(TUNE_COMMAND, "--dtype=%s: unknown dtype (fp32, fp16 or bf16)", c->dtype_name);
    return CLI_EXIT_USAGE;
  }
  if (!core_head_dim_valid(c->head_dim)) {
    cli_error(TUNE_COMMAND, "--head-dim=%" PRId64 ": must be a multiple of 8 from 8 to 576", c->head_dim);
    return CLI_EXIT_USAGE;
  }
  if (seen_dv && !core_head_dim_valid(c->head_dim_v)) {
    cli_error(TUNE_COMMAND, "--head-dim-v=%" PRId64 ": must be a multiple of 8 from 8 to 576", c->head_dim_v);
    return CLI_EXIT_USAGE;
  }
  if (c->heads % c->kv_heads != 0) {
    cli_error(TUNE_COMMAND, "--heads=%" PRId64 " --kv-heads=%" PRId64 ": heads must be a multiple of kv-heads",
              c->heads, c->kv_heads);
    return CLI_EXIT_USAGE;
  }
  tune_strategy strategy;
  if (c->strategy != NULL && !tune_strategy_parse(c->strategy, &strategy)) {
    cli_error(TUNE_COMMAND, "--strategy=%s: expected exhaustive, random or halving", c->strategy);
    return CLI_EXIT_USAGE;
  }
  double seconds;
  if (c->budget != NULL && tune_parse_duration(c->budget, &seconds) != 0) {
    cli_error(TUNE_COMMAND, "--budget=%s: expected a duration such as 8h, 90m, 120s or 1h30m", c->budget);
    return CLI_EXIT_USAGE;
  }
  if (c->isolation != NULL && strcmp(c->isolation, "auto") != 0 && strcmp(c->isolation, "fork") != 0 &&
      strcmp(c->isolation, "exec") != 0) {
    cli_error(TUNE_COMMAND, "--isolation=%s: expected auto, fork or exec", c->isolation);
    return CLI_EXIT_USAGE;
  }
  if (c->device != NULL && c->device[0] == '\0') {
    cli_error(TUNE_COMMAND, "--device=: empty device name (auto, cpu, cuda:N, hip:N)");
    return CLI_EXIT_USAGE;
  }
  if (c->cache_dir != NULL && c->cache_dir[0] == '\0') {
    cli_error(TUNE_COMMAND, "--cache-dir=: empty path");
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

/* The problems the flags name; CLI_EXIT_OK or the exit code after the error. */
static int tune_problems(const tune_cli *c, preset_shapes *out) {
  char why[512];
  memset(out, 0, sizeof *out);
  if (c->shapes != NULL) {
    if (presets_read_file(c->shapes, out, why, sizeof why) != 0) {
      cli_error(TUNE_COMMAND, "--shapes=%s: %s", c->shapes, why);
      return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
  }
  if (c->served) {
    if (presets_read_served(c->device, c->cache_dir, out, why, sizeof why) != 0) {
      cli_error(TUNE_COMMAND, "--served: %s", why);
      return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
  }
  if (c->preset != NULL) {
    if (presets_get(c->preset, out) != 0) {
      cli_error(TUNE_COMMAND, "--preset=%s: unknown preset (flashjit tune --list-presets)", c->preset);
      return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
  }
  fj_problem_shape s;
  fj_problem_shape_init(&s);
  dtype_id dtype = DTYPE_BF16;
  core_dtype_parse(c->dtype_name, &dtype);
  s.dtype = core_dtype_to_dlpack(dtype);
  s.batch = c->batch;
  s.heads = (int)c->heads;
  s.kv_heads = (int)c->kv_heads;
  s.seqlen_q = c->seqlen;
  s.seqlen_kv = c->seqlen_kv;
  s.head_dim = (int)c->head_dim;
  s.head_dim_v = (int)c->head_dim_v;  /* 0 when not given; head_dim's own is the plain problem */
  s.causal = c->causal;
  s.varlen = c->varlen;
  s.varlen_q = c->varlen_q;
  s.sinks = c->sinks;
  s.softcap = c->softcap;
  s.page_size = (int)c->page_size;
  s.windowed = c->windowed;
  s.window_left = c->window_left;
  s.window_right = c->window_right;
  char label[96];
  presets_describe(&s, label, sizeof label);
  if (presets_append(out, &s, label) != 0) {
    cli_error(TUNE_COMMAND, "out of memory");
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

/* ---- the report -------------------------------------------------------------------------------- */

static const char *tune_stop_text(tune_stop stop) {
  switch (stop) {
    case TUNE_STOPPED_TIME: return "stopped: time budget spent";
    case TUNE_STOPPED_TRIALS: return "stopped: trial budget spent";
    case TUNE_UNSUPPORTED: return "skipped: no config of the kernel family can run it on this device";
    default: return "";
  }
}

static void tune_print_table(const preset_shapes *problems, const tune_result *results, const char *device,
                             const tune_options *o) {
  printf("\nflashjit tune on %s: strategy %s, seed %" PRIu64 "\n", device, tune_strategy_name(o->strategy), o->seed);
  /* The problem column fits the longest label (labels name dtype and mask last: never cut them). */
  int width = 7;
  for (int i = 0; i < problems->count; i++) {
    int length = (int)strlen(problems->labels[i]);
    if (length > width) width = length;
  }
  if (width > 64) width = 64;
  printf("%-*s %11s %11s %8s %6s %6s  %s\n", width, "problem", "default ms", "tuned ms", "speedup", "new", "known",
         "tuned config");
  int any_confirmed = 0;
  for (int i = 0; i < problems->count; i++) {
    const tune_result *r = &results[i];
    char speedup[16] = "-";
    if (r->default_ms > 0.0 && r->best_ms > 0.0) snprintf(speedup, sizeof speedup, "%.2fx", r->default_ms / r->best_ms);
    char dms[24] = "-", tms[24] = "-";
    if (r->default_ms > 0.0) snprintf(dms, sizeof dms, "%.4f%s", r->default_ms, r->default_confirmed ? "*" : "");
    if (r->best_ms > 0.0) snprintf(tms, sizeof tms, "%.4f%s", r->best_ms, r->best_confirmed ? "*" : "");
    any_confirmed |= r->default_confirmed || r->best_confirmed;
    printf("%-*.*s %11s %11s %8s %6" PRId64 " %6" PRId64 "  %s\n", width, width, problems->labels[i], dms, tms, speedup, r->run,
           r->skipped, r->best_config[0] ? r->best_config : "(none)");
    if (r->duplicate_of >= 0) printf("%*s same key as problem %d: tuned once\n", width, "", r->duplicate_of + 1);
    if (r->stopped != TUNE_COMPLETE) printf("%*s %s\n", width, "", tune_stop_text(r->stopped));
    int64_t failed = r->outcomes[TRIAL_COMPILE_ERROR] + r->outcomes[TRIAL_LAUNCH_ERROR] + r->outcomes[TRIAL_TIMEOUT] +
                     r->outcomes[TRIAL_WRONG_RESULT] + r->outcomes[TRIAL_CRASH];
    if (failed > 0) {
      printf("%*s failed:", width, "");
      for (int k = 1; k < TRIAL_OUTCOME_COUNT; k++)
        if (r->outcomes[k] > 0) printf(" %" PRId64 " %s", r->outcomes[k], tuning_outcome_name((trial_outcome)k));
      printf("\n");
    }
  }
  if (any_confirmed) printf("* the median of the config's confirmation round (3 rounds), not of its one search trial\n");
  /* What changed, one line each, for the cron log. */
  printf("\n");
  for (int i = 0; i < problems->count; i++) {
    const tune_result *r = &results[i];
    if (r->duplicate_of >= 0) continue;
    if (r->best_config[0] == '\0')
      printf("no winner:  %s (%s)\n", r->problem_key, problems->labels[i]);
    else if (r->previous_config[0] == '\0')
      printf("new winner: %s: %s (%.4f ms)\n", r->problem_key, r->best_config, r->best_ms);
    else if (strcmp(r->previous_config, r->best_config) != 0)
      printf("changed:    %s: %s (%.4f ms) -> %s (%.4f ms)\n", r->problem_key, r->previous_config, r->previous_ms,
             r->best_config, r->best_ms);
    else
      printf("unchanged:  %s: %s (%.4f ms)\n", r->problem_key, r->best_config, r->best_ms);
  }
  fflush(stdout);
}

static void tune_print_json(const preset_shapes *problems, const tune_result *results, const char *device,
                            const tune_options *o) {
  json_writer w;
  json_init(&w, stdout);
  json_object_begin(&w);
  json_kv_string(&w, "device", device);
  json_kv_string(&w, "strategy", tune_strategy_name(o->strategy));
  json_kv_uint(&w, "seed", o->seed);
  json_key(&w, "problems");
  json_array_begin(&w);
  for (int i = 0; i < problems->count; i++) {
    const tune_result *r = &results[i];
    json_object_begin(&w);
    json_kv_string(&w, "label", problems->labels[i]);
    json_kv_string(&w, "problem", r->problem_key);
    json_kv_string(&w, "default_config", r->default_config);
    json_kv_double(&w, "default_ms", r->default_ms);
    json_kv_string(&w, "tuned_config", r->best_config);
    json_kv_double(&w, "tuned_ms", r->best_ms);
    json_kv_bool(&w, "tuned_confirmed", r->best_confirmed);
    json_kv_bool(&w, "default_confirmed", r->default_confirmed);
    json_kv_double(&w, "speedup", r->default_ms > 0.0 && r->best_ms > 0.0 ? r->default_ms / r->best_ms : 0.0);
    json_kv_string(&w, "previous_config", r->previous_config);
    json_kv_double(&w, "previous_ms", r->previous_ms);
    json_kv_int(&w, "space", r->space);
    json_kv_int(&w, "pruned", r->pruned);
    json_kv_int(&w, "duplicates", r->duplicates);
    json_kv_int(&w, "candidates", r->candidates);
    json_kv_int(&w, "new_trials", r->run);
    json_kv_int(&w, "known_trials", r->skipped);
    json_kv_int(&w, "confirmed", r->confirmed);
    json_key(&w, "outcomes");
    json_object_begin(&w);
    for (int k = 0; k < TRIAL_OUTCOME_COUNT; k++) json_kv_int(&w, tuning_outcome_name((trial_outcome)k), r->outcomes[k]);
    json_object_end(&w);
    json_kv_string(&w, "stopped", r->stopped == TUNE_STOPPED_TIME     ? "time"
                                  : r->stopped == TUNE_STOPPED_TRIALS ? "trials"
                                  : r->stopped == TUNE_UNSUPPORTED    ? "unsupported"
                                                                      : "");
    json_kv_int(&w, "duplicate_of", r->duplicate_of);
    json_kv_double(&w, "seconds", r->seconds);
    json_object_end(&w);
  }
  json_array_end(&w);
  json_object_end(&w);
  json_finish(&w);
}

int cmd_tune(int argc, char **argv) {
  tune_cli c;
  int code = tune_parse(argc, argv, &c);
  if (code < 0) {
    cmd_tune_help(stdout);
    return CLI_EXIT_OK;
  }
  if (code != CLI_EXIT_OK) return code;
  if (c.list_presets) {
    presets_print(stdout);
    return CLI_EXIT_OK;
  }
  preset_shapes problems;
  code = tune_problems(&c, &problems);
  if (code != CLI_EXIT_OK) return code;

  tune_options o;
  tune_options_init(&o);
  if (c.strategy != NULL)
    tune_strategy_parse(c.strategy, &o.strategy);
  else
    o.strategy = TUNE_HALVING;
  if (c.budget != NULL) tune_parse_duration(c.budget, &o.budget_s);
  o.max_trials = c.trials;
  o.seed = (uint64_t)c.seed;
  o.space = c.space;
  o.warmup = (int)c.warmup;
  o.repeats = (int)c.repeat;
  o.confirm = (int)c.confirm;
  o.timeout_s = (double)c.timeout;
  o.measure_threads = (int)c.threads;
  o.compile_threads = (int)c.compile_threads;
  o.batch = (int)c.child_batch;

  fj_context_options options;
  fj_context_options_init(&options);
  options.disable_served_log = 1;  /* what runs here is not traffic */
  options.device = c.device;
  options.cache_dir = c.cache_dir;
  options.num_threads = 1;  /* the tuner's own context only describes the device; children measure */
  fj_context *context = NULL;
  fj_status status = fj_context_create(&options, &context);
  if (status != FJ_OK) {
    cli_error(TUNE_COMMAND, "%s%s: %s: %s", c.cache_dir && status == FJ_IO ? "--cache-dir=" : "--device=",
              c.cache_dir && status == FJ_IO ? c.cache_dir : (c.device ? c.device : "auto"), fj_status_string(status),
              fj_last_error());
    presets_free(&problems);
    return status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
  }
  char device[256];
  fj_context_device_name(context, device, sizeof device);
  /* With exec isolation the children run this very program again (see tune_options.child_exe), which
   * hands them to tune_child_exec_main. */
  char self[4096];
  ssize_t self_len = readlink("/proc/self/exe", self, sizeof self - 1);
  self[self_len > 0 ? self_len : 0] = '\0';
  int use_exec = c.isolation != NULL && strcmp(c.isolation, "exec") == 0;
  if (c.isolation == NULL || strcmp(c.isolation, "auto") == 0)
    use_exec = runtime_backend(context)->device_type != kDLCPU;
  if (c.isolation != NULL && strcmp(c.isolation, "fork") == 0 && runtime_backend(context)->device_type != kDLCPU) {
    cli_error(TUNE_COMMAND, "--isolation=fork: %s's driver cannot be used in a forked child; use exec or auto",
              runtime_backend(context)->name);
    presets_free(&problems);
    fj_context_destroy(context);
    return CLI_EXIT_USAGE;
  }
  if (use_exec) {
    if (self_len <= 0) {
      cli_error(TUNE_COMMAND, "--isolation=exec: cannot find this program (/proc/self/exe)");
      presets_free(&problems);
      fj_context_destroy(context);
      return CLI_EXIT_FAILURE;
    }
    o.child_exe = self;
  }

  tune_view view;
  memset(&view, 0, sizeof view);
  view.tty = isatty(STDERR_FILENO);
  view.quiet = c.quiet;
  view.problems = &problems;
  view.last_problem = -1;
  view.last_line_time = tune_cli_now();
  o.progress = tune_progress_view;
  o.progress_user = &view;
  if (!c.quiet)
    fprintf(stderr, "flashjit tune: %d problem%s on %s, strategy %s%s%s, cache %s\n", problems.count,
            problems.count == 1 ? "" : "s", device, tune_strategy_name(o.strategy), c.budget ? ", budget " : "",
            c.budget ? c.budget : "", runtime_cache_dir(context));

  tune_result *results = calloc((size_t)problems.count, sizeof *results);
  if (results == NULL) {
    cli_error(TUNE_COMMAND, "out of memory");
    code = CLI_EXIT_FAILURE;
  } else {
    status = tune_run(context, problems.shapes, problems.count, &o, results);
    if (status != FJ_OK) {
      if (view.tty && !c.quiet) fputc('\n', stderr);
      /* The lock's refusal is an expected event in cron logs: say it plainly. */
      if (strstr(fj_last_error(), "another tuner holds") != NULL)
        cli_error(TUNE_COMMAND, "%s", fj_last_error());
      else
        cli_error(TUNE_COMMAND, "%s: %s", fj_status_string(status), fj_last_error());
      code = status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
    } else if (c.json) {
      tune_print_json(&problems, results, device, &o);
    } else {
      tune_print_table(&problems, results, device, &o);
    }
  }
  free(results);
  presets_free(&problems);
  fj_context_destroy(context);
  return code;
}
