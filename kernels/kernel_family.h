/* kernel_family.h: what a kernel family declares so that the runtime can compile it and the tuner can
 * search it without knowing how it is written: its parameter space, the validity constraints, the
 * default heuristic, the IR generator, and the per-thread scratch its launch needs. */
#ifndef FJ_KERNEL_FAMILY_H
#define FJ_KERNEL_FAMILY_H
#include <stddef.h>
#include <stdint.h>
#include <llvm-c/Core.h>
#include "flashjit.h"
#include "core/problem.h"
#include "jit/jit.h"

#define KERNEL_MAX_PARAMS 10
#define KERNEL_MAX_VALUES 16

typedef struct kernel_param {
  const char *name;              /* "block_m" */
  const char *help;              /* one line for `flashjit tune --help` and docs */
  int num_values;
  int values[KERNEL_MAX_VALUES]; /* the values the tuner may try, ascending */
  /* 1 for a parameter added after configs were stored: a config text that omits it (a tuning
   * database's winner, a --config string written earlier) means values[0], the old behaviour. */
  int optional;
} kernel_param;

/* One point of a family's space: values in the order of the family's params. */
typedef struct kernel_config {
  int values[KERNEL_MAX_PARAMS];
} kernel_config;

typedef struct kernel_family {
  const char *name;           /* "attention_fwd_cpu" */
  const char *backend;        /* the backend it generates for: "cpu" */
  int generator_version;      /* bump when generated code changes: it is in every cache key */
  /* sizeof the parameter block its kernels read (cpu_attention_params, gpu_attention_params): in every
   * cache key too, so that a binary built for another layout of the block (a field added) is never
   * loaded, whether or not generator_version was bumped with it */
  size_t params_bytes;
  int num_params;
  const kernel_param *params;

  /* (optional, NULL: every valid problem) 1 when the family generates kernels for this problem at all;
   * else 0 and why (a dtype its hardware path lacks): the call gets FJ_UNSUPPORTED before any config is
   * chosen. */
  int (*problem_supported)(const attention_key *key, char *why, size_t why_size);
  /* 1 when the config can run this problem on this target; else 0 and a reason in why. */
  int (*config_valid)(const attention_key *key, const jit_target *target, const kernel_config *config,
                      char *why, size_t why_size);
  /* (optional, NULL: every valid config is its own kernel) 1 when another config is known to compile to
   * the same kernel as `config` for this problem and target: that config in *out, and why in `why`.
   * The tuner then tries only that one (`config` stays valid: --config and stored winners still run). */
  int (*same_kernel_as)(const attention_key *key, const jit_target *target, const kernel_config *config,
                        kernel_config *out, char *why, size_t why_size);
  /* The heuristic used when there is no tuning result. Always valid. */
  void (*default_config)(const attention_key *key, const jit_target *target, kernel_config *out);
  /* Appends the kernel function `function_name` for key+config to module (target already set). */
  fj_status (*generate)(LLVMModuleRef module, const attention_key *key, const jit_target *target,
                        const kernel_config *config, const char *function_name);
  /* The part of the key the generated code depends on (dtype, head dim, causal, ...), as text for the
   * compiled-binary cache key: kernels shared by keys that differ only in sizes compile once. */
  void (*codegen_key)(const attention_key *key, char *buffer, size_t size);
  /* Number of independent jobs (CPU work items, GPU blocks) and the scratch a launch of this problem
   * needs: per-thread scratch bytes on the CPU, dynamic shared memory bytes per block on a GPU. */
  int64_t (*job_count)(const attention_problem *problem, const kernel_config *config);
  size_t (*scratch_bytes)(const attention_key *key, const kernel_config *config);
  /* (optional, NULL: 1) GPU threads per block. */
  int (*block_threads)(const attention_key *key, const kernel_config *config);
  /* (optional, NULL: never) 1 when the config's kernel may cut each job's keys over several blocks
   * (split-KV, GPU ABI): its module then also holds the kernel named with GPU_COMBINE_SUFFIX that
   * merges the parts, launched after it when the launch splits. */
  int (*splits_kv)(const kernel_config *config);
  /* (optional, NULL: the runtime merges on the host, whose memory the CPU's tensors are) Appends kernel
   * function_name, which merges two results of the same queries by their LSEs (fj_attention_merge) for
   * o's dtype: GPU_MERGE_WARPS warps a block, the parameter block of kernels/attention_merge_gpu_abi.h. */
  fj_status (*generate_merge)(LLVMModuleRef module, dtype_id dtype, const jit_target *target,
                              const char *function_name);
} kernel_family;

/* "block_m=32 block_n=12 unroll=2 vector=16" */
void kernel_config_string(const kernel_family *family, const kernel_config *config, char *buffer,
                          size_t size);
/* Parses that form back (any order; every param required except optional ones, which default to their
 * first value); 0 on success, -1 with why. */
int kernel_config_parse(const kernel_family *family, const char *text, kernel_config *out, char *why,
                        size_t why_size);
/* The points of the family's whole space, and point n of it (0 <= n < that), in the tuner's order: the
 * last parameter fastest. */
int64_t kernel_space_points(const kernel_family *family);
void kernel_space_point(const kernel_family *family, int64_t n, kernel_config *out);
/* The valid config of the family's space (config_valid for this key and target) that differs from
 * `preferred` in the fewest parameters, the earliest in the space's order on a tie: where a default
 * heuristic's pick cannot run a problem that another config can (a wide head dim's registers, a small
 * shared memory). Returns 1 with *out, or 0 when no config of the space can run the problem. */
int kernel_config_nearest_valid(const kernel_family *family, const attention_key *key, const jit_target *target,
                                const kernel_config *preferred, kernel_config *out);
/* The config a call without a tuned winner runs (and a tune's baseline): the family's default heuristic's
 * pick, or where that cannot run the problem, the valid config nearest it. Returns 0 (the default), 1
 * (the nearest; why: the default's reason) or -1 when no config can run the problem (why: the default's
 * reason; *out the default). */
int kernel_config_default(const kernel_family *family, const attention_key *key, const jit_target *target,
                          kernel_config *out, char *why, size_t why_size);
/* The rows one (batch, head slot) holds: seqlen_q of one query head, or with pack_gqa the
 * seqlen_q * heads / kv_heads (position, query head) rows of one KV head's group, position-major. */
int64_t kernel_slot_rows(const attention_problem *problem, int pack_gqa);
/* batch x slots x ceil(slot rows / block_m): the jobs of a family whose job is one tile of rows. */
int64_t kernel_row_tile_jobs(const attention_problem *problem, int block_m, int pack_gqa);
/* The family for a backend ("cpu"), NULL if none. */
const kernel_family *kernel_family_for_backend(const char *backend);

extern const kernel_family attention_fwd_cpu_family;
extern const kernel_family attention_fwd_nvptx_family; /* backend "cuda" */
#endif
