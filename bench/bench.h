/* bench.h: what `flashjit bench`'s two modes share: the options, one measured shape (inputs made on the
 * host, copied to the device, each call timed by the backend's timer or the wall clock, optionally checked
 * against the float64 reference after copying the output back), and the grid mode built on it
 * (bench_grid.c), which adds the peers' figures from bench/peers/peers.py. */
#ifndef FJ_BENCH_BENCH_H
#define FJ_BENCH_BENCH_H
#include <stdint.h>
#include "core/dtype.h"
#include "flashjit.h"
#include "kernels/kernel_family.h"

#define BENCH_COMMAND "bench"

#define BENCH_PEER_COUNT 6
#define BENCH_MAX_SEQUENCES 4096 /* --seqlens-q */

typedef struct bench_options {
  const char *device;       /* NULL: FLASHJIT_DEVICE, else auto (what the library does with NULL) */
  const char *device_list;  /* "all" or a comma list ("cpu,cuda:0"), from --device or FLASHJIT_DEVICE:
                             * bench_devices_run measures on each; NULL: one device */
  char device_flag[256];    /* "--device=cpu" or "FLASHJIT_DEVICE=cpu": how messages name it */
  int device_auto;          /* the device was chosen by "auto" (no flag, no environment, or "auto") */
  int64_t batch, heads, kv_heads, seqlen, seqlen_kv, head_dim;
  int64_t head_dim_v;       /* --head-dim-v: v's and o's head dim (after parsing: head_dim where not given) */
  int64_t page_size;        /* --page-size: k and v a paged cache of pages of this many keys; 0 none */
  const char *dtype_name;
  int causal, check, json;
  int64_t window_left, window_right; /* --window-left, --window-right: -1 (default) leaves that side open */
  int windowed;                      /* either was given */
  int varlen_q;             /* --varlen-q: ragged queries (cu_seqlens_q), every sequence seqlen of them */
  const char *seqlens_q;    /* --seqlens-q as given: each sequence's own query count (varlen_q; batch and
                             * seqlen follow from it); NULL when not given */
  int32_t query_counts[BENCH_MAX_SEQUENCES];  /* with seqlens_q: the counts, batch of them */
  int packed_kv;            /* --packed-kv: packed keys (cu_seqlens_k), k and v [total_k, kv_heads, head_dim] */
  int sinks;                /* --sinks: attention sinks, one logit per head (gpt-oss's) */
  int alibi;                /* --alibi: ALiBi with BLOOM's slopes, one per head */
  const char *attn_bias_name; /* --attn-bias: an additive bias [batch, 1, seqlen_q, seqlen_kv] of this dtype */
  int attn_bias;            /* --attn-bias given; of attn_bias_dtype (fp32 or dtype) */
  dtype_id attn_bias_dtype;
  const char *kv_dtype_name; /* --kv-dtype: k and v of an fp8 cache (NULL: --dtype's) */
  dtype_id kv_dtype;        /* k's and v's dtype: dtype, or an fp8 */
  float softcap;            /* --softcap: logit soft-capping (0: none) */
  int no_split_kv;          /* --no-split-kv: no workspace (a GPU launch then never splits its keys) */
  int64_t kv_split_keys;    /* --kv-split-keys: fj_attention_args.kv_split_keys (0: the library's split) */
  int64_t warmup, repeat, threads;
  const char *config;
  const char *cache_dir;
  int kv_heads_set, seqlen_kv_set, config_set, dtype_set, warmup_set, repeat_set;
  int shape_flags;          /* a flag that sizes one problem was given (refused with --grid) */
  dtype_id dtype;
  /* --grid */
  const char *grid;
  int64_t tokens, width;
  int tokens_set, width_set;
  const char *seqlens, *head_dims, *mask;
  const char *batches;      /* --batches (the decode grid's) */
  int peers, csv;
  const char *peers_script;
  const char *peer_list;    /* --peer-list as given, or NULL: every peer of the device */
  const char *plot;         /* --plot: the grid drawn into this SVG file, or NULL */
  const char *baseline;     /* --baseline: an earlier grid's --json output, or NULL */
  struct bench_baseline *baseline_data;  /* its points (bench_baseline.c), read before measuring */
  int peer_chosen[BENCH_PEER_COUNT];  /* with --peer-list: 1 for the peers it names */
} bench_options;

/* Everything one measured shape produces, for the reports. */
typedef struct bench_result {
  char device_name[256];
  char device_id[64];
  const char *backend;
  const char *timing;       /* the runtime's timing method: "cpu-wall", "cuda-event" */
  int threads;
  char family[64];
  char config[256];
  const char *config_from;  /* "--config", or "runtime": the tuned winner or the family's default */
  char config_source[16];   /* the runtime's word: "tuned", "tuned-nearest", "default", "explicit" */
  char kernel_source[16];
  double compile_ms;      /* as the runtime recorded it */
  int64_t kv_splits;      /* parts each job's keys were cut into (split-KV); 1: none */
  size_t workspace_bytes; /* the workspace given to the calls for them */
  double get_kernel_ms;   /* wall time of the lookup that built or loaded it */
  double first_call_ms;
  double ms_median, ms_min, ms_max;
  /* A GPU call's host side: the mean wall time of fj_attention_forward (validation, the kernel's lookup,
   * the launch) over calls enqueued back to back; 0 on the CPU, where the call is the work. */
  double host_us_per_call;
  double flops, gflops;
  double bytes, gbps;       /* the least bytes a call moves (core_attention_bytes), and GB/s from the median */
  uint64_t seed;
  int checked;
  double rel_err, rel_err_lse, tolerance;
  double reference_ms;
  int check_passed;
} bench_result;

/* Opens a context on the device o names (o->device, with o->cache_dir and o->threads); CLI_EXIT_OK or the
 * exit code after the one-line error naming the flag. */
int bench_open(const bench_options *o, fj_context **context);

/* flashjit's CPU thread count for o: --threads, else one per core (what the context does with 0). */
int bench_threads(const bench_options *o);

/* Measures the shape o names on the open context (forced: a parsed --config, or NULL). Prints its own
 * one-line error; returns an exit code (CLI_EXIT_OK when measured, even if the check failed: see
 * r->check_passed). */
int bench_measure(fj_context *context, const bench_options *o, const kernel_config *forced, bench_result *r);

/* One shape on the device o names (o->device): opens it, measures, runs the peers when asked and reports,
 * as text on stdout or, when json is given, as one object written into it; r holds the figures. Returns
 * the exit code (CLI_EXIT_FAILURE also when the check failed). */
struct json_writer;
int bench_device(bench_options *o, bench_result *r, struct json_writer *json);

/* bench_devices.c: the shape on every device o->device_list names, in turn, each reported as
 * bench_device does, then side by side. Returns the worst exit code. */
int bench_devices_run(bench_options *o);

/* ---- grid points and peers ---- */

/* The names peers.py reports under: "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "triton-fa2" (CUDA),
 * then "torch-sdpa", "torch-eager" (CPU). */
extern const char *const bench_peer_names[BENCH_PEER_COUNT];

typedef struct bench_grid_point {
  dtype_id dtype;
  int64_t batch, heads, kv_heads, seqlen, seqlen_kv, head_dim;
  int causal;
  double flops;             /* the caller's count: the grid's 4*b*h*s*s*d halved when causal, one shape's exact one */
  double bytes;             /* q, k, v and o once (core_attention_bytes): what a decode step's GB/s count */
  int measured;             /* flashjit's figures below are valid */
  double ms, ms_min;
  char config[256];
  char config_source[16];
  int peer_measured[BENCH_PEER_COUNT];
  double peer_ms[BENCH_PEER_COUNT], peer_ms_min[BENCH_PEER_COUNT];
  int peer_unavailable[BENCH_PEER_COUNT];  /* peer_error says why it was not run here (n/a, not an error) */
  char peer_error[BENCH_PEER_COUNT][160];
  double baseline_ms;       /* --baseline: the same point's median there; 0 where it has none */
} bench_grid_point;

typedef struct bench_peers_status {
  int ran;                  /* the script ran and measured (else note says why not) */
  char note[512];           /* why the peer columns are n/a, or "" */
  char info[256];           /* torch version and device the script reported */
  char unavailable[BENCH_PEER_COUNT][200];  /* per peer: why it was not measured, or "" */
} bench_peers_status;

/* bench_peers.c: runs the peers script on the points (their figures land in the points) for the
 * device flashjit ran on ("cuda:0", "cpu:0"; on the CPU with bench_threads(o) threads). Never fails
 * the command: whatever goes wrong ends in st->note. */
void bench_peers_run(const bench_options *o, const char *device_id, bench_grid_point *points, int count,
                     int64_t warmup, int64_t repeat, bench_peers_status *st);
/* The peers that run on the device ("cpu:0": the CPU ones, else the CUDA ones), only those --peer-list
 * names when it was given: their indices into bench_peer_names in peers[BENCH_PEER_COUNT]; returns how
 * many. */
int bench_peers_for_device(const bench_options *o, const char *device_id, int *peers);
/* Parses --peer-list into o->peer_chosen; 0, or -1 after printing the usage error. */
int bench_peer_list_parse(bench_options *o);
/* "error" when peer k failed at point p, else "n/a" (not run there, or the script not run at all). */
const char *bench_peer_word(const bench_grid_point *p, int k);
/* Why peer k has no figure at point p ("" when it has one): the script's note, the peer's or the
 * point's reason. */
const char *bench_peer_why(const bench_peers_status *st, const bench_grid_point *p, int k);
/* flashjit's / peer k's throughput at p (above 1: flashjit faster), or 0 when either is missing. */
double bench_peer_ratio(const bench_grid_point *p, int k);

/* One device's grid: every point measured on it and its peers' figures, for the reports. */
typedef struct bench_grid_device {
  char device[256];         /* the device's name */
  char device_id[64];       /* "cuda:0" */
  const char *timing;       /* the runtime's timing method */
  bench_grid_point *points; /* count of them; NULL: the device was not measured (error says why) */
  int count;
  int failures;             /* points that failed (each one's error was printed) */
  bench_peers_status peers;
  char error[320];          /* with points NULL: the library's message, or "" */
} bench_grid_device;

/* Every point of the grid o names measured on the open context, then the peers when asked, into d (whose
 * points bench_grid_device_free frees). Returns an exit code: CLI_EXIT_OK also when points failed
 * (d->failures; bench_grid_exit says so). */
int bench_grid_measure(fj_context *context, const bench_options *o, bench_grid_device *d);
/* One device's grid as its table, its CSV, or (json given) one object written into it. */
void bench_grid_report(const bench_options *o, const bench_grid_device *d, struct json_writer *json);
/* The grid on several devices side by side: each point's rate on each device and its ratio to the first
 * measured device's. */
void bench_grid_compare(const bench_options *o, const bench_grid_device *devices, int count);
/* The devices' grids as one CSV: a header, then a row per point of each device, the peers' columns those of
 * any device; device_columns puts device_id and device first. */
void bench_grid_csv(const bench_options *o, const bench_grid_device *devices, int count, int device_columns);
/* CLI_EXIT_OK, or CLI_EXIT_FAILURE after saying how many of d's points failed. */
int bench_grid_exit(const bench_options *o, const bench_grid_device *d);
void bench_grid_device_free(bench_grid_device *d);

/* bench_baseline.c: --baseline. load reads and checks the file into o->baseline_data (CLI_EXIT_OK or the
 * exit code after the error naming it); apply sets each point's baseline_ms and returns how many matched;
 * device gives the baseline's device name (id 0) or id ("cuda:0", id 1), "" without one. */
int bench_baseline_load(bench_options *o);
int bench_baseline_apply(const bench_options *o, bench_grid_point *points, int count);
const char *bench_baseline_device(const bench_options *o, int id);
void bench_baseline_free(bench_options *o);

/* bench_plot.c: --plot. bench_plot_check refuses a path that cannot be written before anything is measured
 * (CLI_EXIT_OK or the exit code after the error); bench_plot_write draws the devices' grids into it. */
int bench_plot_check(const bench_options *o);
int bench_plot_write(const bench_options *o, const bench_grid_device *devices, int count);

/* `flashjit bench --grid NAME`: every point measured on the open context, the peers when asked, one
 * table. Returns an exit code. */
int bench_grid_run(fj_context *context, bench_options *o);
/* Checks the --grid flags (after the common ones); CLI_EXIT_OK or the exit code after the error. */
int bench_grid_parse(bench_options *o);
#endif
