/* tune_search.c: the strategies, written only against the space (a list of valid configs) and the
 * evaluator (tune_evaluate settles a list of configs: recorded already, or run and recorded now).
 *
 *   exhaustive  every valid config.
 *   random      N configs drawn without replacement from a seed mixed with the problem key, so a rerun
 *               with the same seed draws the same ones (and resumes), while two problems differ.
 *   halving     successive halving, then a local refinement. A seeded sample is screened with a single
 *               timed run each (recorded under the "-screen" timing method: real measurements, but
 *               never a winner); the best quarter is timed in full; then the neighbours of the leaders
 *               (one parameter one step away) are timed in full until none improves or the trial budget
 *               is spent. Screening is cheap and noisy, which halving tolerates (it keeps a quarter);
 *               the refinement exploits that good configs cluster, which a sample alone does not. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "tuner/tune_internal.h"

int tune_same_config(const kernel_family *family, const kernel_config *a, const kernel_config *b) {
  for (int p = 0; p < family->num_params; p++)
    if (a->values[p] != b->values[p]) return 0;
  return 1;
}

static int64_t tune_find_config(const kernel_family *family, const tune_space *space, const kernel_config *config) {
  for (int64_t i = 0; i < space->count; i++)
    if (tune_same_config(family, &space->configs[i], config)) return i;
  return -1;
}

/* A seeded permutation of the space without the default (Fisher-Yates; only the first `want` places
 * are drawn). Returns how many it wrote. */
static int64_t tune_sample(tune_problem_run *run, const kernel_family *family, const tune_space *space,
                           const kernel_config *default_config, int64_t want, uint64_t salt, tune_eval *out) {
  int64_t n = space->count;
  int64_t *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
  if (order == NULL) return -1;
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (!tune_same_config(family, &space->configs[i], default_config)) order[m++] = i;
  if (want > m) want = m;
  uint64_t state = tune_problem_seed(run) ^ salt;
  for (int64_t i = 0; i < want; i++) {
    int64_t j = i + (int64_t)(tune_random_next(&state) % (uint64_t)(m - i));
    int64_t t = order[i];
    order[i] = order[j];
    order[j] = t;
    memset(&out[i], 0, sizeof out[i]);
    out[i].config = space->configs[order[i]];
  }
  free(order);
  return want;
}

static int tune_exhaustive(tune_problem_run *run, const kernel_family *family, const tune_space *space,
                           const kernel_config *default_config) {
  tune_eval *evals = calloc((size_t)(space->count > 0 ? space->count : 1), sizeof *evals);
  if (evals == NULL) {
    core_error(FJ_OUT_OF_MEMORY, "tune: no memory for %lld candidates", (long long)space->count);
    return -1;
  }
  int n = 0;
  for (int64_t i = 0; i < space->count; i++)
    if (!tune_same_config(family, &space->configs[i], default_config)) evals[n++].config = space->configs[i];
  tune_plan_more(run, n);
  int rc = tune_evaluate(run, evals, n, "exhaustive", 0);
  free(evals);
  return rc;
}

static int tune_random(tune_problem_run *run, const tune_options *options, const kernel_family *family,
                       const tune_space *space, const kernel_config *default_config) {
  int64_t want = (options->max_trials > 0 ? options->max_trials : 64) - 1;  /* the default is one of N */
  if (want <= 0) return 0;
  tune_eval *evals = calloc((size_t)(want > 0 ? want : 1), sizeof *evals);
  if (evals == NULL) {
    core_error(FJ_OUT_OF_MEMORY, "tune: no memory for %lld candidates", (long long)want);
    return -1;
  }
  int64_t n = tune_sample(run, family, space, default_config, want, 0x72616e646f6dull, evals);
  int rc = -1;
  if (n >= 0) {
    tune_plan_more(run, n);
    rc = tune_evaluate(run, evals, (int)n, "random", 0);
  }
  free(evals);
  return rc;
}

static int tune_compare_evals(const void *a, const void *b) {
  const tune_eval *x = a, *y = b;
  int xok = x->outcome == TRIAL_OK && x->median_ms > 0.0, yok = y->outcome == TRIAL_OK && y->median_ms > 0.0;
  if (xok != yok) return yok - xok;  /* ok ones first */
  if (!xok) return 0;
  return (x->median_ms > y->median_ms) - (x->median_ms < y->median_ms);
}

/* The configs timed in full so far (default, finals, refinement), for ranking and to avoid repeats. */
typedef struct tune_full {
  tune_eval *items;
  int64_t count, capacity;
} tune_full;

static int tune_full_add(tune_full *full, const tune_eval *e) {
  if (full->count == full->capacity) {
    int64_t capacity = full->capacity ? full->capacity * 2 : 64;
    tune_eval *grown = realloc(full->items, (size_t)capacity * sizeof *grown);
    if (grown == NULL) return -1;
    full->items = grown;
    full->capacity = capacity;
  }
  full->items[full->count++] = *e;
  return 0;
}

static int tune_full_has(const kernel_family *family, const tune_full *full, const kernel_config *config) {
  for (int64_t i = 0; i < full->count; i++)
    if (tune_same_config(family, &full->items[i].config, config)) return 1;
  return 0;
}

static int tune_halving(tune_problem_run *run, const tune_options *options, const kernel_family *family,
                        const tune_space *space, const kernel_config *default_config) {
  int64_t budget = options->max_trials;
  if (budget <= 0) {
    budget = space->count / 6;
    if (budget < 24) budget = 24;
  }
  budget -= 1;  /* the default, already settled */
  int64_t screen_n = budget / 2;
  if (screen_n > space->count - 1) screen_n = space->count - 1;
  int64_t keep = (screen_n + 3) / 4;
  int rc = 0;
  tune_full full = {0};
  tune_eval *screen = calloc((size_t)(screen_n > 0 ? screen_n : 1), sizeof *screen);
  tune_eval *finals = calloc((size_t)(keep > 0 ? keep : 1), sizeof *finals);
  if (screen == NULL || finals == NULL) {
    free(screen);
    free(finals);
    core_error(FJ_OUT_OF_MEMORY, "tune: no memory for the halving search");
    return -1;
  }
  tune_eval def;
  memset(&def, 0, sizeof def);
  def.config = *default_config;
  def.outcome = TRIAL_OK;
  def.median_ms = tune_best_ms(run);
  if (def.median_ms > 0.0 && tune_full_add(&full, &def) != 0) rc = -1;

  /* Rung 1: screen a sample with one timed run each. */
  int64_t n = rc == 0 ? tune_sample(run, family, space, default_config, screen_n, 0x68616c76ull, screen) : -1;
  if (n < 0) rc = -1;
  if (rc == 0) {
    tune_plan_more(run, n + keep);
    rc = tune_evaluate(run, screen, (int)n, "screen", 1);
  }
  /* Rung 2: the best quarter, timed in full. */
  int64_t finals_n = 0;
  if (rc == 0) {
    qsort(screen, (size_t)n, sizeof *screen, tune_compare_evals);
    for (int64_t i = 0; i < n && finals_n < keep; i++) {
      if (screen[i].outcome != TRIAL_OK || screen[i].median_ms <= 0.0) break;
      memset(&finals[finals_n], 0, sizeof finals[finals_n]);
      finals[finals_n++].config = screen[i].config;
    }
    rc = tune_evaluate(run, finals, (int)finals_n, "final", 0);
    for (int64_t i = 0; i < finals_n && rc >= 0; i++)
      if (finals[i].state == TUNE_EVAL_NEW || finals[i].state == TUNE_EVAL_KNOWN)
        if (tune_full_add(&full, &finals[i]) != 0) rc = -1;
  }
  /* Refinement: neighbours of the two leaders, until no neighbour improves. */
  int64_t refined = 0;
  for (int round = 0; rc == 0 && round < 64; round++) {
    qsort(full.items, (size_t)full.count, sizeof *full.items, tune_compare_evals);
    double best_before = full.count > 0 && full.items[0].outcome == TRIAL_OK ? full.items[0].median_ms : 0.0;
    tune_eval next[2 * KERNEL_MAX_PARAMS * 2];
    int m = 0;
    for (int leader = 0; leader < 2 && leader < full.count; leader++) {
      if (full.items[leader].outcome != TRIAL_OK) break;
      for (int p = 0; p < family->num_params; p++) {
        const kernel_param *kp = &family->params[p];
        int at = -1;
        for (int v = 0; v < kp->num_values; v++)
          if (kp->values[v] == full.items[leader].config.values[p]) at = v;
        for (int step = -1; step <= 1; step += 2) {
          int v = at + step;
          if (at < 0 || v < 0 || v >= kp->num_values) continue;
          kernel_config c = full.items[leader].config;
          c.values[p] = kp->values[v];
          if (tune_find_config(family, space, &c) < 0 || tune_full_has(family, &full, &c)) continue;
          int duplicate = 0;
          for (int k = 0; k < m; k++) duplicate |= tune_same_config(family, &next[k].config, &c);
          if (duplicate) continue;
          memset(&next[m], 0, sizeof next[m]);
          next[m++].config = c;
        }
      }
    }
    if (m == 0) break;
    /* The search's own size is its budget: reaching it is the end of the search, not a stop. */
    int64_t left = budget - (n + finals_n + refined);
    if (left <= 0) break;
    if (m > left) m = (int)left;
    tune_plan_more(run, m);
    rc = tune_evaluate(run, next, m, "refine", 0);
    refined += m;
    for (int k = 0; k < m && rc >= 0; k++)
      if (next[k].state == TUNE_EVAL_NEW || next[k].state == TUNE_EVAL_KNOWN) {
        if (next[k].outcome != TRIAL_OK) next[k].median_ms = 0.0;
        if (tune_full_add(&full, &next[k]) != 0) rc = -1;
      }
    qsort(full.items, (size_t)full.count, sizeof *full.items, tune_compare_evals);
    double best_after = full.count > 0 && full.items[0].outcome == TRIAL_OK ? full.items[0].median_ms : 0.0;
    if (rc == 0 && !(best_after > 0.0 && (best_before <= 0.0 || best_after < best_before))) break;
  }
  free(full.items);
  free(screen);
  free(finals);
  return rc;
}

int tune_search(tune_problem_run *run, const tune_options *options, const kernel_family *family,
                const tune_space *space, const kernel_config *default_config) {
  switch (options->strategy) {
    case TUNE_EXHAUSTIVE: return tune_exhaustive(run, family, space, default_config);
    case TUNE_RANDOM: return tune_random(run, options, family, space, default_config);
    case TUNE_HALVING: return tune_halving(run, options, family, space, default_config);
    default: break;
  }
  core_error(FJ_INVALID_ARGUMENT, "unknown strategy %d", (int)options->strategy);
  return -1;
}
