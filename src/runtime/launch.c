/* launch.c: turns a validated problem and a loaded kernel into a launch: the kernel's parameter block
 * (the CPU ABI of kernels/attention_fwd_cpu_abi.h, or the GPU one of kernels/attention_fwd_gpu_abi.h,
 * chosen by the family's backend), its job count, block size and scratch, handed to the backend (and
 * on a GPU, for a split-KV launch, the combine kernel after it). Runs on every call: it fills structs
 * on the stack and allocates nothing, but for the workspace of a CPU split-KV launch (a few outputs'
 * worth, freed before it returns; a GPU launch uses the caller's) and a ragged CPU launch's job map. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/attention_fwd_cpu_abi.h"
#include "kernels/attention_fwd_gpu_abi.h"
#include "runtime/runtime_internal.h"

#define RUNTIME_LOG2E 1.4426950408889634

/* The value of a named parameter: configs are positional, but the launch must not depend on the
 * order in which a family happens to list its parameters. -1 when the family has no such parameter. */
static int runtime_config_value(const kernel_family *family, const kernel_config *config,
                                const char *name) {
  for (int i = 0; i < family->num_params && i < KERNEL_MAX_PARAMS; i++)
    if (strcmp(family->params[i].name, name) == 0) return config->values[i];
  return -1;
}

static void runtime_copy_strides(int64_t out[4], const tensor_view *view) {
  for (int i = 0; i < 4; i++) out[i] = i < view->ndim ? view->stride[i] : 0;
}

/* What multiplies a raw q.k into a score: the softmax scale, and an fp8 cache's k_scale (its stored
 * keys are k / k_scale). */
static double runtime_score_scale(const attention_problem *problem) {
  return (double)problem->softmax_scale * (problem->key.kv_fp8 ? (double)problem->k_scale : 1.0);
}

static fj_status runtime_cpu_params(const runtime_kernel *kernel, const attention_problem *problem,
                                    cpu_attention_params *params) {
  int block_m = runtime_config_value(kernel->family, &kernel->config, "block_m");
  if (block_m < 1)
    return core_error(FJ_INTERNAL, "%s has no usable block_m parameter (%d)", kernel->family->name,
                      block_m);
  memset(params, 0, sizeof *params);
  params->q = problem->q.data;
  params->k = problem->k.data;
  params->v = problem->v.data;
  params->o = problem->o.data;
  params->lse = (float *)problem->lse.data;
  runtime_copy_strides(params->q_stride, &problem->q);
  runtime_copy_strides(params->k_stride, &problem->k);
  runtime_copy_strides(params->v_stride, &problem->v);
  runtime_copy_strides(params->o_stride, &problem->o);
  if (problem->lse.data != NULL) runtime_copy_strides(params->lse_stride, &problem->lse);
  params->batch = problem->batch;
  params->seqlen_q = problem->seqlen_q;
  params->seqlen_kv = problem->seqlen_kv;
  params->heads = problem->key.heads;
  params->kv_heads = problem->key.kv_heads;
  int pack_gqa = runtime_config_value(kernel->family, &kernel->config, "pack_gqa") == 1;
  params->q_tiles = (kernel_slot_rows(problem, pack_gqa) + block_m - 1) / block_m;
  /* one part: the whole sequence (split launches change both, see runtime_launch_cpu) */
  params->kv_splits = 1;
  params->kv_split_keys = problem->seqlen_kv > 0 ? problem->seqlen_kv : 1;
  params->seqlens_kv = problem->seqlens_kv;
  params->seqlens_kv_stride = problem->seqlens_kv_stride;
  params->block_table = problem->block_table;
  params->block_table_stride[0] = problem->block_table_stride[0];
  params->block_table_stride[1] = problem->block_table_stride[1];
  params->pages = problem->pages;
  params->window_left = problem->key.window ? problem->window_left : 0;
  params->window_right = problem->key.causal ? problem->window_right : 0;
  params->cu_seqlens_q = problem->cu_seqlens_q;
  params->cu_seqlens_q_stride = problem->cu_seqlens_q_stride;
  params->total_q = problem->total_q;
  params->sinks = problem->sinks;
  params->sinks_stride = problem->sinks_stride;
  params->cu_seqlens_k = problem->cu_seqlens_k;
  params->cu_seqlens_k_stride = problem->cu_seqlens_k_stride;
  params->total_k = problem->total_k;
  params->alibi = problem->alibi;
  params->alibi_stride[0] = problem->alibi_stride[0];
  params->alibi_stride[1] = problem->alibi_stride[1];
  params->attn_bias = problem->attn_bias;
  memcpy(params->attn_bias_stride, problem->attn_bias_stride, sizeof params->attn_bias_stride);
  params->scale_log2 = (float)(runtime_score_scale(problem) * RUNTIME_LOG2E);
  params->v_scale = problem->key.kv_fp8 ? problem->v_scale : 1.0f;
  if (problem->key.softcap) {
    params->softcap_out = (float)((double)problem->softcap * RUNTIME_LOG2E);
    params->softcap_in = (float)(1.0 / ((double)problem->softcap * RUNTIME_LOG2E));
  }
  return FJ_OK;
}

/* The GPU block carries the CPU block's fields, with device addresses as integers (the kernel reads
 * them as i64): derived once, in runtime_cpu_params, and only re-typed here. */
fj_status runtime_gpu_params(const runtime_kernel *kernel, const attention_problem *problem,
                             gpu_attention_params *params) {
  cpu_attention_params fields;
  fj_status status = runtime_cpu_params(kernel, problem, &fields);
  if (status != FJ_OK) return status;
  memset(params, 0, sizeof *params);
  params->q = (uint64_t)(uintptr_t)fields.q;
  params->k = (uint64_t)(uintptr_t)fields.k;
  params->v = (uint64_t)(uintptr_t)fields.v;
  params->o = (uint64_t)(uintptr_t)fields.o;
  params->lse = (uint64_t)(uintptr_t)fields.lse;
  memcpy(params->q_stride, fields.q_stride, sizeof params->q_stride);
  memcpy(params->k_stride, fields.k_stride, sizeof params->k_stride);
  memcpy(params->v_stride, fields.v_stride, sizeof params->v_stride);
  memcpy(params->o_stride, fields.o_stride, sizeof params->o_stride);
  memcpy(params->lse_stride, fields.lse_stride, sizeof params->lse_stride);
  params->batch = fields.batch;
  params->seqlen_q = fields.seqlen_q;
  params->seqlen_kv = fields.seqlen_kv;
  params->heads = fields.heads;
  params->kv_heads = fields.kv_heads;
  params->q_tiles = fields.q_tiles;
  params->scale_log2 = fields.scale_log2;
  params->seqlens_kv = (uint64_t)(uintptr_t)fields.seqlens_kv;
  params->seqlens_kv_stride = fields.seqlens_kv_stride;
  params->block_table = (uint64_t)(uintptr_t)fields.block_table;
  memcpy(params->block_table_stride, fields.block_table_stride, sizeof params->block_table_stride);
  params->pages = fields.pages;
  params->window_left = fields.window_left;
  params->window_right = fields.window_right;
  params->cu_seqlens_q = (uint64_t)(uintptr_t)fields.cu_seqlens_q;
  params->cu_seqlens_q_stride = fields.cu_seqlens_q_stride;
  params->total_q = fields.total_q;
  params->sinks = (uint64_t)(uintptr_t)fields.sinks;
  params->sinks_stride = fields.sinks_stride;
  params->cu_seqlens_k = (uint64_t)(uintptr_t)fields.cu_seqlens_k;
  params->cu_seqlens_k_stride = fields.cu_seqlens_k_stride;
  params->total_k = fields.total_k;
  params->alibi = (uint64_t)(uintptr_t)fields.alibi;
  params->alibi_stride[0] = fields.alibi_stride[0];
  params->alibi_stride[1] = fields.alibi_stride[1];
  params->attn_bias = (uint64_t)(uintptr_t)fields.attn_bias;
  memcpy(params->attn_bias_stride, fields.attn_bias_stride, sizeof params->attn_bias_stride);
  params->bias_unit = (float)(1.0 / runtime_score_scale(problem));
  params->v_scale = fields.v_scale;
  if (problem->key.softcap) {  /* in the raw q.k's units (an fp8 cache's stored keys'): the kernel scales by
                                * scale_log2 after the cap */
    double scale = runtime_score_scale(problem);
    params->softcap_in = (float)(scale / (double)problem->softcap);
    params->softcap_out = (float)((double)problem->softcap / scale);
  }
  int64_t group = fields.kv_heads > 0 ? fields.heads / fields.kv_heads : 1;
  params->group = (uint32_t)group;
  int pack = runtime_config_value(kernel->family, &kernel->config, "pack_gqa") == 1;
  /* A packed tile's rows are divided by the group in 32 bits: (position, head) rows below 2^31. */
  if (pack && fields.seqlen_q * group > INT32_MAX)
    return core_error(FJ_INVALID_ARGUMENT, "pack_gqa=1: seqlen_q=%lld x %lld query heads per KV head is %lld rows; "
                      "at most 2^31 - 1 (use pack_gqa=0)", (long long)fields.seqlen_q, (long long)group,
                      (long long)(fields.seqlen_q * group));
  /* Divisors of a block index below 2^31 (the backend refuses larger grids); 1 stands in for an
   * empty problem's 0, which launches nothing. */
  int64_t divisors[5] = {fields.q_tiles, pack ? fields.kv_heads : fields.heads, group, fields.seqlen_q, fields.heads};
  for (int i = 0; i < 5; i++)
    if (divisors[i] < 1 || divisors[i] > INT32_MAX) divisors[i] = 1;
  params->q_tiles_divider = gpu_divider_for((uint32_t)divisors[0]);
  params->heads_divider = gpu_divider_for((uint32_t)divisors[1]);
  params->group_divider = gpu_divider_for((uint32_t)divisors[2]);
  params->seqlen_q_divider = gpu_divider_for((uint32_t)divisors[3]);
  params->query_heads_divider = gpu_divider_for((uint32_t)divisors[4]);
  /* one part, all of a job's tiles (runtime_gpu_split_params cuts them) */
  params->kv_splits = 1;
  params->kv_split_tiles = INT32_MAX;
  params->kv_splits_divider = gpu_divider_for(1);
  return FJ_OK;
}

/* Ragged queries on the CPU (cu_seqlens_q in host memory): the jobs of the grid (job = (b * slots +
 * slot) * q_tiles + tile, q_tiles from the longest sequence) whose tile holds rows of its own sequence,
 * written to map when it is not NULL; their count. The others would only return, and there are many:
 * a batch of one long prompt and many one-token decode steps sizes every sequence's tiles by the prompt. */
static int64_t runtime_cpu_ragged_jobs(const runtime_kernel *kernel, const attention_problem *problem, int64_t *map) {
  int block_m = runtime_config_value(kernel->family, &kernel->config, "block_m");
  int pack = runtime_config_value(kernel->family, &kernel->config, "pack_gqa") == 1;
  int64_t per_position = pack ? problem->key.heads / problem->key.kv_heads : 1;
  int64_t slots = pack ? problem->key.kv_heads : problem->key.heads;
  int64_t q_tiles = (kernel_slot_rows(problem, pack) + block_m - 1) / block_m, count = 0;
  for (int64_t b = 0; b < problem->batch; b++) {
    int64_t start, queries;
    core_sequence_queries(problem, b, &start, &queries);
    int64_t tiles = (queries * per_position + block_m - 1) / block_m;
    for (int64_t slot = 0; slot < slots; slot++)
      for (int64_t tile = 0; tile < tiles; tile++, count++)
        if (map != NULL) map[count] = (b * slots + slot) * q_tiles + tile;
  }
  return count;
}

/* The jobs a CPU launch runs: the family's grid, or with ragged queries those that hold rows. */
static int64_t runtime_cpu_jobs(const runtime_kernel *kernel, const attention_problem *problem) {
  if (problem->cu_seqlens_q == NULL) return kernel->family->job_count(problem, &kernel->config);
  return runtime_cpu_ragged_jobs(kernel, problem, NULL);
}

/* The CPU's parts of a launch of `jobs` jobs: enough for every worker thread (runtime_kv_splits), each
 * a whole number of key tiles (*split_keys keys); 1 when the jobs alone keep the threads busy. */
static int64_t runtime_cpu_split(const fj_context *context, const runtime_kernel *kernel,
                                 const attention_problem *problem, int64_t jobs, int64_t *split_keys) {
  int block_n = runtime_config_value(kernel->family, &kernel->config, "block_n");
  int64_t job_keys = runtime_job_keys(problem, block_n);
  if (problem->kv_split_keys != 0) {  /* the caller's parts, whatever the batch and the threads */
    int64_t splits = runtime_fixed_splits(problem, block_n);
    *split_keys = runtime_fixed_split_tiles(problem, block_n) * block_n;
    return splits;
  }
  int64_t splits = runtime_kv_splits(context->workers, jobs, job_keys, block_n);
  if (splits == 1) return 1;
  int64_t keys = (job_keys + splits - 1) / splits;
  *split_keys = (keys + block_n - 1) / block_n * block_n;
  return (job_keys + *split_keys - 1) / *split_keys;
}

void runtime_split_plan(const fj_context *context, const runtime_kernel *kernel, const attention_problem *problem,
                        size_t workspace_bytes, int64_t *splits, size_t *bytes) {
  *splits = 1;
  *bytes = 0;
  if (strcmp(kernel->family->backend, "cpu") == 0) {
    int64_t split_keys = 0;
    *splits = runtime_cpu_split(context, kernel, problem, runtime_cpu_jobs(kernel, problem), &split_keys);
    if (*splits > 1) *bytes = runtime_split_bytes(problem, *splits);
    return;
  }
  if (kernel->combine_function == NULL) return;
  int block_n = runtime_config_value(kernel->family, &kernel->config, "block_n");
  int64_t jobs = kernel->family->job_count(problem, &kernel->config);
  *splits = runtime_gpu_kv_splits(context->info.compute_units, jobs, problem, block_n, workspace_bytes);
  if (*splits > 1) *bytes = runtime_split_bytes(problem, *splits);
}

/* A CPU launch of params (launch->jobs jobs); with fewer jobs than worker threads (a decode step: batch x
 * KV heads jobs) each job's keys are cut into parts run as jobs of their own, into a workspace the size
 * of a few outputs (the caller's when it gave one that large, else allocated here) that split_kv.c then
 * combines. */
static fj_status runtime_launch_cpu_parts(fj_context *context, const runtime_kernel *kernel,
                                          const attention_problem *problem, cpu_attention_params *params,
                                          backend_launch *launch, void *stream) {
  int64_t split_keys = 0, splits = runtime_cpu_split(context, kernel, problem, launch->jobs, &split_keys);
  if (splits == 1) return context->backend->launch(context->device, kernel->function, launch, stream);

  params->kv_split_keys = split_keys;
  params->kv_splits = splits;
  size_t bytes = runtime_split_bytes(problem, splits);
  char *owned = NULL, *workspace = problem->workspace;
  if (workspace == NULL || (size_t)problem->workspace_bytes < bytes) {
    workspace = owned = malloc(bytes);
    if (workspace == NULL)
      return core_error(FJ_OUT_OF_MEMORY, "split-KV: no memory for %lld parts (%zu bytes)", (long long)splits, bytes);
  }
  params->o_partial = (float *)workspace;
  params->lse_partial = (float *)(workspace + runtime_split_lse_offset(problem, splits));
  launch->jobs *= splits;
  fj_status status = context->backend->launch(context->device, kernel->function, launch, stream);
  if (status == FJ_OK) status = runtime_combine_kv_splits(problem, splits, params->o_partial, params->lse_partial);
  free(owned);
  return status;
}

/* A CPU launch: the family's grid of jobs, or with ragged queries those that hold rows, through the
 * kernel's job map. */
static fj_status runtime_launch_cpu(fj_context *context, const runtime_kernel *kernel,
                                    const attention_problem *problem, backend_launch *launch, void *stream) {
  cpu_attention_params params;
  fj_status status = runtime_cpu_params(kernel, problem, &params);
  if (status != FJ_OK) return status;
  launch->params = &params;
  launch->params_size = sizeof params;
  if (problem->cu_seqlens_q == NULL) return runtime_launch_cpu_parts(context, kernel, problem, &params, launch, stream);
  launch->jobs = runtime_cpu_ragged_jobs(kernel, problem, NULL);
  if (launch->jobs == 0) return FJ_OK;  /* no sequence has a query: nothing to write */
  int64_t *job_map = malloc((size_t)launch->jobs * sizeof *job_map);
  if (job_map == NULL)
    return core_error(FJ_OUT_OF_MEMORY, "ragged queries: no memory for the map of %lld jobs", (long long)launch->jobs);
  runtime_cpu_ragged_jobs(kernel, problem, job_map);
  params.job_map = job_map;
  status = runtime_launch_cpu_parts(context, kernel, problem, &params, launch, stream);
  free(job_map);
  return status;
}

fj_status runtime_launch_attention(fj_context *context, const runtime_kernel *kernel,
                                   const attention_problem *problem, void *stream) {
  if (context == NULL || kernel == NULL || problem == NULL)
    return core_error(FJ_INVALID_ARGUMENT, "runtime_launch_attention: NULL context, kernel or problem");
  const kernel_family *family = kernel->family;
  int64_t jobs = family->job_count(problem, &kernel->config);
  size_t scratch = family->scratch_bytes(&problem->key, &kernel->config);
  backend_launch launch = {.jobs = jobs, .block_threads = 1, .scratch_bytes = scratch};
  fj_status status;
  if (strcmp(family->backend, "cpu") == 0 && context->backend->device_type == kDLCPU)
    return runtime_launch_cpu(context, kernel, problem, &launch, stream);
  if (strcmp(family->backend, "cuda") == 0 && strcmp(context->backend->name, "cuda") == 0) {
    gpu_attention_params params;
    status = runtime_gpu_params(kernel, problem, &params);
    if (status != FJ_OK) return status;
    if (family->block_threads != NULL)
      launch.block_threads = family->block_threads(&problem->key, &kernel->config);
    if (launch.block_threads < 1)
      return core_error(FJ_INTERNAL, "%s asks for %d threads per block", family->name,
                        launch.block_threads);
    launch.params = &params;
    launch.params_size = sizeof params;
    /* Split-KV: with a workspace, a launch that would leave SMs idle runs each job's keys as parts, and
     * the combine kernel merges them after it on the same stream. */
    int64_t splits = 1;
    size_t bytes = 0;
    if (problem->workspace != NULL)
      runtime_split_plan(context, kernel, problem, (size_t)problem->workspace_bytes, &splits, &bytes);
    if (problem->kv_split_keys > 0 && bytes > (size_t)problem->workspace_bytes)
      return core_error(FJ_INVALID_ARGUMENT, "kv_split_keys=%lld: %lld parts need a workspace of %zu bytes "
                        "(fj_attention_workspace_size), workspace.shape[0]=%lld", (long long)problem->kv_split_keys,
                        (long long)splits, bytes, (long long)problem->workspace_bytes);
    if (splits > 1)
      splits = runtime_gpu_split_params(problem, runtime_config_value(family, &kernel->config, "block_n"), splits,
                                        (uint64_t)(uintptr_t)problem->workspace, &params);
    launch.jobs *= splits;
    status = context->backend->launch(context->device, kernel->function, &launch, stream);
    if (status != FJ_OK || splits == 1) return status;
    backend_launch combine = {.jobs = runtime_gpu_combine_blocks(problem), .block_threads = 32 * GPU_COMBINE_WARPS,
                              .scratch_bytes = 0, .params = &params, .params_size = sizeof params};
    return context->backend->launch(context->device, kernel->combine_function, &combine, stream);
  }
  return core_error(FJ_UNSUPPORTED, "no parameter block for %s kernels on the %s backend yet",
                    family->name, context->backend->name);
}
