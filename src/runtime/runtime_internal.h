/* runtime_internal.h: the layout of fj_context, shared by the runtime's own files (context.c,
 * kernel_table.c, attention.c, launch.c) and by nothing else: other layers use runtime.h's accessors.
 * The one exception is runtime_gpu_params (and the split's runtime_gpu_*), which
 * tests/test_attention_nvptx_emu.c calls so that the kernel it emulates gets exactly the parameter
 * block a launch would pass. */
#ifndef FJ_RUNTIME_INTERNAL_H
#define FJ_RUNTIME_INTERNAL_H
#include <limits.h>
#include <pthread.h>
#include "kernels/attention_fwd_gpu_abi.h"
#include "runtime/runtime.h"

#define RUNTIME_TABLE_BUCKETS 64

/* A loaded binary, keyed by the full disk-cache key text: problem keys that differ only in sizes the
 * generated code does not depend on (the sequence-length bucket) share one. */
typedef struct runtime_module {
  struct runtime_module *next;
  char *cache_key;
  void *module;
  void *function;
  void *combine_function;  /* a split-KV config's second kernel (GPU_COMBINE_SUFFIX), else NULL */
  char source[16];     /* "jit" or "disk"; a table entry that reuses it says "memory" */
  double compile_ms;
} runtime_module;

/* One table entry per (problem key, family, config or "auto"). An entry is inserted before its kernel
 * is built (state BUILDING) so that concurrent first calls wait for one build instead of racing. */
typedef enum runtime_entry_state { RUNTIME_BUILDING = 0, RUNTIME_READY = 1 } runtime_entry_state;

/* The table's key as plain integers, hashed and compared as bytes: a call formats no text to find its
 * kernel. Laid out with no padding (checked where it is built), so equal keys are equal bytes. */
typedef struct runtime_lookup {
  const kernel_family *family;
  attention_key problem;
  int given;                        /* 1: config holds the caller's config; 0: "auto" */
  int config[KERNEL_MAX_PARAMS];    /* the family's num_params values, zeros after them */
  int zero;                         /* always 0: fills what would be padding after an even count of ints */
} runtime_lookup;

typedef struct runtime_entry {
  struct runtime_entry *next;
  uint64_t hash;
  runtime_lookup lookup;
  runtime_entry_state state;
  runtime_kernel kernel;  /* stable address: handed out to callers */
} runtime_entry;

struct fj_context {
  const fj_backend *backend;
  int device_index;
  backend_device *device;
  backend_device_info info;
  jit_target target;
  const kernel_family *family;  /* NULL when the backend has no forward family yet */
  int workers;                  /* the CPU device's worker threads (num_threads, or one per core) */
  char cache_dir[PATH_MAX];
  int disk_cache;               /* 0 when disable_disk_cache was set */
  int note_served;              /* 0 when disable_served_log was set (served.c) */

  pthread_mutex_t lock;         /* guards everything below */
  pthread_cond_t built;         /* signalled whenever an entry leaves RUNTIME_BUILDING */
  runtime_entry *buckets[RUNTIME_TABLE_BUCKETS];
  runtime_module *modules;
  /* fj_attention_merge's GPU kernels (merge.c), one per o dtype, loaded on first use */
  void *merge_module[DTYPE_COUNT];
  void *merge_function[DTYPE_COUNT];
  /* The tuning database, opened on the first lookup that finds the file (kernel_table.c); read only. */
  struct tuning_db *tuning;
  int tuning_failed;            /* it could not be opened: not tried again */
};

/* served.c: notes the problem (its shapes-file line, once per key across processes) in the served file of
 * the context's device, unless the context keeps no disk cache or was told not to; never fails. */
void runtime_note_served(fj_context *context, const attention_problem *problem);
/* served.c: <cache>/served-<backend>-<index>.txt */
void runtime_served_path(const fj_context *context, char *buffer, size_t size);
/* served.c: the problem as a shapes-file line ending in "  # <its key>\n"; -1 when the format cannot say it
 * (a tensor strided along the head dim) or it does not fit. */
int runtime_served_line(const attention_problem *problem, char *buffer, size_t size);

/* attention.c: DLPack's name of a device type ("cuda"), for messages. */
const char *runtime_device_type_name(int type);

/* kernel_table.c: a module's generator for runtime_compile_binary: appends kernel function_name (and any
 * kernel it brings) for target to module; arg is the caller's. */
typedef fj_status (*runtime_generator)(LLVMModuleRef module, const jit_target *target, const char *function_name,
                                       const void *arg);
/* kernel_table.c: compiles what generate builds (LLVM, then the backend's finalize where it has one: PTX
 * to a cubin) into *out (malloc'd) and stores it in the disk cache under cache_key (a store that fails is
 * a warning); `what` names it in messages. */
fj_status runtime_compile_binary(fj_context *context, runtime_generator generate, const void *arg,
                                 const char *function_name, const char *what, const char *cache_key, jit_buffer *out);

/* merge.c: unloads the merge kernels (at context destruction). */
void runtime_merge_destroy(fj_context *context);

/* kernel_table.c: frees every entry and unloads every module (at context destruction). */
void runtime_table_destroy(fj_context *context);

/* split_kv.c: the most keys one job's tiles can span, from the first tile it reads (the one holding
 * its first query's first key under a sliding window, else key 0): seqlen_kv, or with a window on both
 * sides the window's keys over the job's queries and a tile more. The parts of a split cover these. */
int64_t runtime_job_keys(const attention_problem *problem, int block_n);
/* split_kv.c: with fj_attention_args.kv_split_keys > 0, the key tiles of each part (its keys rounded up to
 * the kernel's tile), else 0; and the parts that cuts each job's keys into (1: none; also for -1). */
int64_t runtime_fixed_split_tiles(const attention_problem *problem, int block_n);
int64_t runtime_fixed_splits(const attention_problem *problem, int block_n);
/* split_kv.c: how many parts to cut each job's keys into so that `jobs` jobs keep `workers` threads
 * busy (1: none), given the keys a job spans (runtime_job_keys) and the kernel's key tile. */
int64_t runtime_kv_splits(int workers, int64_t jobs, int64_t job_keys, int block_n);
/* split_kv.c: o and lse of the problem from the parts a split launch left (fp32 outputs normalized by
 * their own sums, base-2 LSEs; cpu_attention_params' layout). */
fj_status runtime_combine_kv_splits(const attention_problem *problem, int64_t splits, const float *o_partial,
                                    const float *lse_partial);

/* split_kv.c, GPU: how many parts to cut each job's keys into so that `jobs` blocks fill `sms` SMs
 * (1: none), given the kernel's key tile and at most workspace_bytes of workspace. */
int64_t runtime_gpu_kv_splits(int sms, int64_t jobs, const attention_problem *problem, int block_n,
                              size_t workspace_bytes);
/* The workspace `splits` parts of the problem take, on either device: fp32 outputs and LSEs of every
 * row of each part. */
size_t runtime_split_bytes(const attention_problem *problem, int64_t splits);
/* Where lse_partial starts in it (o_partial is first). */
size_t runtime_split_lse_offset(const attention_problem *problem, int64_t splits);
/* Makes params (runtime_gpu_params') those of a launch cut into at most `splits` parts of whole key
 * tiles, the parts' results in workspace (a device address of runtime_split_bytes(splits) bytes);
 * returns the parts it cut (tiles shared evenly may need fewer; 1: params unchanged). */
int64_t runtime_gpu_split_params(const attention_problem *problem, int block_n, int64_t splits, uint64_t workspace,
                                 gpu_attention_params *params);
/* Blocks of the combine kernel for the problem: one warp per row of batch x heads x seqlen_q. */
int64_t runtime_gpu_combine_blocks(const attention_problem *problem);

/* launch.c: the parameter block of a GPU kernel (kernels/attention_fwd_gpu_abi.h) for a validated
 * problem, unsplit; kernel->family and kernel->config are all it reads of the kernel. */
fj_status runtime_gpu_params(const runtime_kernel *kernel, const attention_problem *problem,
                             gpu_attention_params *params);

#endif
