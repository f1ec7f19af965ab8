/* tuner.h: the offline tuner. For each problem it enumerates the kernel family's parameter space
 * (pruned by the family's own validity check), picks candidates by a strategy, checks each against the
 * float64 reference and times it in a child process (a crash or hang loses that candidate, not the
 * run), records every trial in <cache_dir>/tuning.db and keeps the winner there for the runtime to
 * use. A rerun with the same arguments skips what is recorded, so a run killed at any point resumes.
 * Everything it knows about kernels comes through kernel_family.h. */
#ifndef FJ_TUNER_H
#define FJ_TUNER_H
#include <stdint.h>
#include "cache/tuning_db.h"
#include "flashjit.h"
#include "kernels/kernel_family.h"

typedef enum tune_strategy {
  TUNE_EXHAUSTIVE = 0, /* every valid config, the default first, then in enumeration order */
  TUNE_RANDOM,         /* N configs drawn without replacement with the seed (N = max_trials, or 64) */
  TUNE_HALVING,        /* screen a seeded sample with one timed run each, keep the best quarter, time
                          those fully, then refine around the leaders (see tune_search.c) */
  TUNE_STRATEGY_COUNT
} tune_strategy;

const char *tune_strategy_name(tune_strategy strategy); /* "exhaustive", "random", "halving" */
int tune_strategy_parse(const char *name, tune_strategy *out); /* 1 on success */

/* "8h", "90m", "120s", "1h30m", "30d", "45" (seconds): 0 and *seconds on success, -1 otherwise. */
int tune_parse_duration(const char *text, double *seconds);

/* Reported after every candidate (run or skipped) and at each problem's start and end. */
typedef struct tune_progress {
  int problem, problems;      /* which problem (0-based) of how many */
  const char *problem_key;
  const char *phase;          /* "default", "exhaustive", "random", "screen", "final", "refine", "done" */
  int64_t done, total;        /* candidates settled / planned in this problem (total grows in refine) */
  int64_t trials_run;         /* new trials this run, all problems so far */
  double elapsed_s;           /* since tune_run started */
  double eta_s;               /* this problem's remaining time, from the pace so far; < 0 unknown */
  double best_ms;             /* best ok median of this problem so far; 0 when none */
  const char *last_config;    /* NULL at a phase boundary */
  trial_outcome last_outcome;
  double last_ms;
  int last_recorded;          /* 0: it was already in the database (resume), nothing new was run */
} tune_progress;
typedef void (*tune_progress_fn)(const tune_progress *progress, void *user);

typedef struct tune_options {
  tune_strategy strategy;
  /* New trials this run may record per problem; 0 = no limit. For random it is also N (default 64),
   * for halving the whole search's size (default a sixth of the space). */
  int64_t max_trials;
  /* Wall-clock budget for the whole run in seconds; 0 = none. Shared out over the problems: each gets
   * what is left divided by the problems left. No candidate starts after its problem's share. */
  double budget_s;
  uint64_t seed;              /* random and halving samples */
  /* Allowed values per parameter, e.g. "block_m=16,32 unroll=2"; parameters not named keep all their
   * values. NULL or "": the whole space. */
  const char *space;
  int warmup, repeats;        /* per timed candidate; defaults 1 and 10 */
  /* A candidate stops being timed as soon as its fastest run is slower than slow_factor times the best
   * median so far (interference only adds time, so it cannot win); it is recorded with the runs it got.
   * Default 1.1; <= 1 times every candidate fully. */
  double slow_factor;
  double timeout_s;           /* per candidate in a child; 0 = automatic from the default's time */
  /* After the search, the best `confirm` configs (at most TUNE_CONFIRM_MAX) whose confirmation is not
   * yet recorded are timed again in turn, TUNE_CONFIRM_ROUNDS rounds of a child each, and the median of
   * their rounds is recorded under "<timing>-confirm": the winner is the best confirmed config (see
   * tuning_db_update_winner). Default 3; 0 or 1: none. */
  int confirm;
  int compile_threads;        /* 0 = one per online core */
  int batch;                  /* candidates per child process; 0 = 16 */
  /* Compile the next batch while this one is timed: -1 (default) only for devices other than the
   * CPU, where the compiler would share the cores being measured. */
  int overlap;
  int measure_threads;        /* threads of the context the candidates run in; 0 = every core */
  /* How children start. NULL: fork, the child working in a copy of the parent's memory; the CPU only,
   * because a GPU driver initialised in the parent is unusable in a forked child. Else an executable
   * whose main hands argv to tune_child_exec_main when argv[1] is "__tune-child" (the flashjit command
   * does): each child is forked and at once execs it, and gets its work through a memory file. Devices
   * other than the CPU need it (FJ_UNSUPPORTED otherwise). */
  const char *child_exe;
  tune_progress_fn progress;
  void *progress_user;
} tune_options;

void tune_options_init(tune_options *options);
#define TUNE_CONFIRM_MAX 8
#define TUNE_CONFIRM_ROUNDS 3

/* TUNE_UNSUPPORTED: no config of the family can run the problem on this device (nothing measured; the
 * run goes on with the next problem, as a call of it reports FJ_UNSUPPORTED). */
typedef enum tune_stop { TUNE_COMPLETE = 0, TUNE_STOPPED_TIME, TUNE_STOPPED_TRIALS, TUNE_UNSUPPORTED } tune_stop;

typedef struct tune_result {
  char problem_key[512];
  int duplicate_of;           /* -1, or the earlier problem with the same key (not tuned twice) */
  char default_config[256];
  double default_ms;          /* the default config's median, measured in this run; 0 when it failed */
  char best_config[256];      /* the winner in the database after the run; "" when none */
  double best_ms;
  /* 1: best_ms (default_ms) is the median of the config's confirmation round, not of its search trial */
  int best_confirmed, default_confirmed;
  char previous_config[256];  /* the winner before the run; "" when none */
  double previous_ms;
  int64_t space;              /* points of the (restricted) space */
  int64_t pruned;             /* of which config_valid refused */
  int64_t duplicates;         /* and of which another point's kernel is the same (tried once) */
  int64_t candidates;         /* distinct configs the strategy settled (measured or found recorded) */
  int64_t run;                /* new trials recorded by this run */
  int64_t skipped;            /* already recorded (resume): not run again */
  int64_t claimed;            /* held by another live tuner: left to it */
  int64_t confirmed;          /* configs timed again in the confirmation round and recorded */
  int64_t outcomes[TRIAL_OUTCOME_COUNT]; /* the new trials by outcome */
  tune_stop stopped;
  double seconds;
} tune_result;

/* Tunes count problems on the context's device; results[count] is filled (problems with the same key
 * are tuned once). Takes <cache_dir>/tune-<backend>-<index>.lock with a non-blocking flock for the
 * whole run: FJ_IO "another tuner holds ..." when a tuner already works on this device. Returns FJ_OK
 * also when budgets stopped it early (see results[i].stopped); FJ_INVALID_ARGUMENT for a bad shape or
 * option (naming it), FJ_IO for the database, FJ_UNSUPPORTED when the device has no kernel family. */
fj_status tune_run(fj_context *context, const fj_problem_shape *problems, int count,
                   const tune_options *options, tune_result *results);

/* The entry of an exec'd tuner child: argv = {any, "__tune-child", work_fd, report_fd}. Never returns
 * when argv is one (the child ends with _exit); returns 2 after a message when it is malformed. */
int tune_child_exec_main(int argc, char **argv);
#define TUNE_CHILD_COMMAND "__tune-child"

/* ---- the parameter space (tune_space.c), exposed for tests and `flashjit tune --list-space` ---- */

typedef struct tune_space {
  kernel_config *configs;     /* the valid points, in enumeration order (first parameter slowest) */
  int64_t count;
  int64_t total;              /* points before config_valid */
  int64_t pruned;
  char example_reason[256];   /* why one pruned point was refused, for the log */
  int64_t duplicates;         /* valid points left out: the family compiles them as another point here */
  char duplicate_reason[256]; /* one of them, for the log */
} tune_space;

/* FJ_INVALID_ARGUMENT when restriction names an unknown parameter or a value the family does not list. */
fj_status tune_space_build(const kernel_family *family, const attention_key *key, const jit_target *target,
                           const char *restriction, tune_space *out);
void tune_space_free(tune_space *space); /* NULL-safe */

/* ---- the lock (tune_lock.c) ---- */

/* Takes <cache_dir>/tune-<device_id>.lock (':' in device_id becomes '-') with flock(LOCK_EX|LOCK_NB):
 * the file descriptor, or -1 with FJ_IO in fj_last_error() naming the file and the holder's pid. A
 * flock dies with its process, so no stale lock outlives kill -9. */
int tune_lock_acquire(const char *cache_dir, const char *device_id);
void tune_lock_release(int fd); /* -1 accepted */
#endif
