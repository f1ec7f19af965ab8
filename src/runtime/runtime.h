/* runtime.h: the call path behind the public API: a context owns an opened device and an in-memory
 * table of loaded kernels; a call validates, derives the key, finds or builds the kernel (tuning
 * database winner or the family's default -> disk cache -> JIT) and launches it. */
#ifndef FJ_RUNTIME_H
#define FJ_RUNTIME_H
#include <stdatomic.h>
#include "flashjit.h"
#include "backends/backend.h"
#include "kernels/kernel_family.h"

/* A loaded kernel, owned by its context's table. */
typedef struct runtime_kernel {
  const kernel_family *family;
  kernel_config config;
  void *module;
  void *function;
  /* (NULL unless the config may split its keys over blocks: kernel_family.splits_kv) the kernel that
   * merges the parts, from the same module */
  void *combine_function;
  char source[16];       /* how it was obtained: "jit", "disk", for logs and bench */
  char config_source[16]; /* where the config came from: "explicit" (the caller's), "tuned" (the tuning
                             database's winner for this key), "tuned-nearest" (its winner for the nearest
                             sequence-length bucket), "default" (the family's heuristic) */
  double compile_ms;     /* time spent getting it (compile or disk load) */
  atomic_int served_noted; /* a call of this entry's key was noted in the served file (served.c) */
} runtime_kernel;

/* The file where contexts note the problems device <backend>:<index> served (served.c), in cache_dir:
 * "<cache_dir>/served-cuda-0.txt", lines of the shapes-file format. */
void runtime_served_file(const char *cache_dir, const char *backend, int index, char *buffer, size_t size);

/* Finds or builds the kernel for a validated problem on the context's device, with `config` when not
 * NULL (the tuner, bench --config) else the tuned winner or the default. */
fj_status runtime_get_kernel(fj_context *context, const attention_problem *problem,
                             const kernel_config *config, runtime_kernel **out);
/* Launches a kernel on a validated problem. */
fj_status runtime_launch_attention(fj_context *context, const runtime_kernel *kernel,
                                   const attention_problem *problem, void *stream);
/* Split-KV: the parts a launch of kernel on problem cuts each job's keys into (*splits, 1: none) and the
 * workspace they take (*bytes, 0 when none). CPU: as many as its threads want (a smaller workspace
 * than that, or none, and the call allocates its own). GPU: as many as fill the SMs once, with at most
 * workspace_bytes (SIZE_MAX: the most it would take); configs without split_kv never split. */
void runtime_split_plan(const fj_context *context, const runtime_kernel *kernel, const attention_problem *problem,
                            size_t workspace_bytes, int64_t *splits, size_t *bytes);
/* Accessors the command and the tuner use. */
const fj_backend *runtime_backend(const fj_context *context);
/* The opened device, for the backend's memory, copy and timer slots. */
backend_device *runtime_device(const fj_context *context);
int runtime_device_index(const fj_context *context);
const jit_target *runtime_target(const fj_context *context);
const char *runtime_cache_dir(const fj_context *context);
/* How kernels on the context's device are timed ("cpu-wall"): tuning results are only reused under the
 * method they were measured with. */
const char *runtime_timing_method(const fj_context *context);

/* warmup.c: the problem a shape stands for (key and sizes; packed tensors, no data), enough to choose,
 * compile and load its kernel. FJ_INVALID_ARGUMENT naming `what` and the field when a value is wrong. */
fj_status runtime_problem_from_shape(const fj_problem_shape *shape, const char *what,
                                     attention_problem *out);
/* The shape's varlen flag (0 or 1) and page size, 0 where its struct predates them. */
void runtime_shape_kv_layout(const fj_problem_shape *shape, int *varlen, int *page_size);
/* The shape's window as a call's window_left and window_right: -1 for an open side, both -1 where it
 * is not windowed or its struct predates the fields. */
void runtime_shape_window(const fj_problem_shape *shape, int64_t *window_left, int64_t *window_right);
/* Whether shape's calls give cu_seqlens_q (varlen_q, read only where the caller's struct has it). */
int runtime_shape_varlen_q(const fj_problem_shape *shape);
/* Whether shape's calls give sinks (read only where the caller's struct has the field). */
int runtime_shape_sinks(const fj_problem_shape *shape);
/* shape's softcap (0 where the caller's struct has no such field). */
float runtime_shape_softcap(const fj_problem_shape *shape);
/* Whether shape's calls give cu_seqlens_k (packed keys) and alibi_slopes (0 where the caller's struct has
 * no such field). */
int runtime_shape_packed_k(const fj_problem_shape *shape);
int runtime_shape_alibi(const fj_problem_shape *shape);
/* v's head dim of a shape: head_dim_v where the caller's struct has it and it is not 0, else head_dim. */
int runtime_shape_head_dim_v(const fj_problem_shape *shape);
/* shape's fp8 cache: *kv_fp8 its dtype_id, or 0 for k and v of dtype (also where the caller's struct has
 * no kv_dtype); FJ_INVALID_ARGUMENT naming `what` for a type that is neither. */
fj_status runtime_shape_kv_fp8(const fj_problem_shape *shape, const char *what, int *kv_fp8);
/* The key.bias of a shape's attn_bias_dtype (0: none; a field past struct_size: none); FJ_INVALID_ARGUMENT
 * naming what + ".attn_bias_dtype" for a type that is neither fp32 nor the shape's dtype. */
fj_status runtime_shape_bias(const fj_problem_shape *shape, const char *what, int *bias);
#endif
