/* tune_internal.h: what the tuner's own files share and nothing else includes: the bench a candidate is
 * measured on (built by the parent before any fork, inherited by the children), the fixed-size report
 * a child writes per candidate, and the child runner that isolates compiles and measurements. */
#ifndef FJ_TUNE_INTERNAL_H
#define FJ_TUNE_INTERNAL_H
#include <stdint.h>
#include <sys/types.h>
#include "backends/backend.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "tuner/tuner.h"

/* The inputs of one problem: the timed problem's tensors and, when its float64 reference would cost
 * seconds, a small check problem with the same generated code. Built from (shape, index) alone with
 * fixed seeds, so that an exec'd child rebuilds exactly the parent's bytes instead of being sent them.
 * Holds host_tensors: build it in place, never copy it by value. */
typedef struct tune_inputs {
  host_tensor q, k, v, o;
  host_tensor table, lens;     /* a paged shape's block table, a varlen shape's seqlens_kv; else unused */
  host_tensor cu;              /* a ragged shape's (varlen_q) cu_seqlens_q; else unused */
  host_tensor sinks;           /* a shape with sinks: [heads] fp32 logits; else unused */
  host_tensor cq, ck, cv, co;  /* the check problem's; unused when check_is_problem */
  host_tensor ctable, clens, ccu, csinks;
  attention_problem problem, check;
  int check_is_problem;
} tune_inputs;
fj_status tune_inputs_build(const fj_problem_shape *shape, int index, tune_inputs *out);
void tune_inputs_free(tune_inputs *inputs);  /* NULL-safe */

/* Everything a child needs to compile or measure candidates of one problem. Built in the parent; a
 * forked child reads it (and the tensors and reference it points to) from its copy of the memory; an
 * exec'd child (child_exe set: a GPU driver does not survive fork) gets its scalars and the reference
 * through a memory file and rebuilds the inputs with tune_inputs_build. */
typedef struct tune_bench {
  const fj_backend *backend;
  int device_index;
  const char *cache_dir;
  const kernel_family *family;
  int measure_threads;
  int compile_threads;
  attention_problem problem;   /* the timed problem, on host tensors */
  host_tensor *problem_o;
  attention_problem check;     /* what the result is checked on: the problem itself when its reference
                                  is cheap, else a small problem with the same generated code */
  host_tensor *check_o;
  const double *check_ref;     /* float64 reference output of `check` */
  int check_is_problem;
  double tolerance;
  int warmup, repeats;
  double slow_factor;
  double best_ms;              /* best median known when the child starts (for the slow cutoff) */
  double deadline;             /* monotonic seconds; a child starts no candidate after it; 0 none */
  int close_fd;                /* the lock's descriptor: a child must not keep the device locked */
  const char *fault;           /* FLASHJIT_TUNE_FAULT, test-only fault injection */
  const tune_inputs *inputs;   /* where problem and check come from (their q, k, v for device copies) */
  const fj_problem_shape *shape;
  int problem_index;           /* with shape, what tune_inputs_build needs */
  size_t check_ref_count;      /* doubles in check_ref */
  /* NULL: children are forked and run in the parent's memory image (the CPU). Else the executable a
   * child execs right after fork, which hands `__tune-child FD FD` to tune_child_exec_main. */
  const char *child_exe;
} tune_bench;

/* Exit status of a measuring child that reported a launch error on a device whose context may now be
 * unusable (a GPU fault is sticky): the parent starts a fresh child for the rest of the batch. */
#define TUNE_CHILD_EXIT_CONTEXT_LOST 5

typedef enum tune_mode { TUNE_MODE_COMPILE = 0, TUNE_MODE_MEASURE = 1 } tune_mode;

/* One candidate as a child handles it. */
typedef struct tune_job {
  int id;                      /* the caller's own number, handed back with the result */
  kernel_config config;
} tune_job;

/* The result of one candidate. In a child's pipe it is one write() of a fixed size, so reports from
 * several compile threads never interleave. */
typedef struct tune_report {
  int32_t kind;                /* TUNE_REPORT_* */
  int32_t job;                 /* index into the batch's jobs */
  int32_t outcome;             /* trial_outcome */
  int32_t repeats;
  double median_ms, min_ms, max_ms;
  double rel_err;              /* -1 when not checked */
  double compile_ms;           /* compile (or disk load) time, compile mode */
  char message[184];
} tune_report;

enum { TUNE_REPORT_START = 1, TUNE_REPORT_DONE = 2, TUNE_REPORT_SETUP_FAILED = 3 };

/* Called in the parent for every settled candidate of a batch (crash and timeout included). */
typedef void (*tune_result_fn)(void *user, const tune_job *job, const tune_report *report);

/* Runs jobs[0..n) in child processes, one child at a time per mode (overlap: a compile batch and a
 * measure batch at once), restarting after a crash or timeout so that only the culprit is lost.
 * Candidates not started before bench->deadline are left unsettled (the callback is not called);
 * *settled counts the others. FJ_INTERNAL when children cannot even start. */
typedef struct tune_batch {
  tune_mode mode;
  const tune_job *jobs;
  int count;
  double timeout_s;
  tune_result_fn on_result;
  void *user;
  int settled;                 /* out */
} tune_batch;
fj_status tune_run_batches(const tune_bench *bench, tune_batch *batches, int count);

double tune_now_s(void);

/* ---- between the run (tune_run.c) and the strategies (tune_search.c) ---- */

typedef struct tune_problem_run tune_problem_run;

typedef enum tune_eval_state {
  TUNE_EVAL_UNRUN = 0,   /* a budget ran out before it started */
  TUNE_EVAL_KNOWN,       /* already in the database: not run again */
  TUNE_EVAL_NEW,         /* run and recorded now */
  TUNE_EVAL_CLAIMED,     /* another live tuner holds it */
} tune_eval_state;

/* One config to settle in a phase, and how it went. */
typedef struct tune_eval {
  kernel_config config;
  tune_eval_state state;
  trial_outcome outcome;
  double median_ms;      /* ok only; 0 when unknown */
} tune_eval;

/* Settles evals[0..n): found recorded, or compiled, checked, timed and recorded now. `screen` times
 * with one run under the screening timing method (never a winner). Returns 1 when a budget (time or
 * trials) stopped it, leaving the rest TUNE_EVAL_UNRUN; 0 when all were settled; -1 on a hard error
 * (fj_last_error() says). */
int tune_evaluate(tune_problem_run *run, tune_eval *evals, int n, const char *phase, int screen);
/* Best ok median of the problem so far (main timing method); 0 when none. */
double tune_best_ms(const tune_problem_run *run);
/* The seed for this problem's samples: the option's seed mixed with the problem key. */
uint64_t tune_problem_seed(const tune_problem_run *run);
/* New trials this run may still record; INT64_MAX without a limit. */
int64_t tune_trials_left(const tune_problem_run *run);
/* Adds to the planned count the progress line shows. */
void tune_plan_more(tune_problem_run *run, int64_t more);

/* tune_search.c: runs the strategy over the space; the default config has been settled already.
 * Same returns as tune_evaluate. */
int tune_search(tune_problem_run *run, const tune_options *options, const kernel_family *family,
                const tune_space *space, const kernel_config *default_config);
uint64_t tune_random_next(uint64_t *state);
int tune_same_config(const kernel_family *family, const kernel_config *a, const kernel_config *b);
#endif
