/* split_kv.c: split-KV. A decode step has few jobs (batch x KV heads, one tile of rows each), often
 * fewer than the CPU's worker threads or a GPU's SMs; cutting each job's keys into parts gives every
 * thread (SM) a part, each part leaving its own output and LSE, which are then combined:
 *     O = sum_i 2^(lse_i - m) O_i / sum_i 2^(lse_i - m),   LSE = (m + log2 sum_i 2^(lse_i - m)) ln 2,
 * with m the largest lse_i (base 2), exactly the online softmax's merge of two partial results. On the
 * CPU this file combines them; on a GPU it plans the parts, and the kernel module's combine kernel
 * merges them on the device. */
#include <math.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "runtime/runtime_internal.h"

/* Parts of at least this many keys: below it the parts' fixed costs (Q packing, the epilogue, the
 * combine) outweigh what the extra threads bring. */
#define SPLIT_KV_MIN_KEYS 512
#define SPLIT_KV_MAX 64

/* Parts per worker: the pool hands jobs out as threads come for them, so a worker that wakes late
 * still finds parts left (with one part each, a late worker left the caller's thread to run both:
 * half the calls of a 2-thread decode ran serially on a 2-vCPU VM). */
#define SPLIT_KV_PARTS_PER_WORKER 4

int64_t runtime_job_keys(const attention_problem *problem, int block_n) {
  if (!problem->key.window || !problem->key.causal) return problem->seqlen_kv;
  /* a job's queries sit at most seqlen_q - 1 positions apart; each sees window_left + 1 + window_right
   * keys, and its first tile starts up to block_n - 1 keys before its first key */
  int64_t span = problem->seqlen_q + problem->window_left + problem->window_right + block_n - 1;
  return span < problem->seqlen_kv ? span : problem->seqlen_kv;
}

int64_t runtime_fixed_split_tiles(const attention_problem *problem, int block_n) {
  if (problem->kv_split_keys <= 0 || block_n < 1) return 0;
  return (problem->kv_split_keys + block_n - 1) / block_n;
}

/* Queries at most this many (a decode step, or a few speculated tokens) are what fixed parts cut: a longer
 * block of queries has jobs enough for every thread or SM uncut, and cut it would need a partial result
 * for each of its many rows (the GPU's split kernels are decode keys' only, the same bound). */
#define FIXED_SPLIT_MAX_QUERIES 16

int64_t runtime_fixed_splits(const attention_problem *problem, int block_n) {
  int64_t per_part = runtime_fixed_split_tiles(problem, block_n);
  if (per_part == 0) return 1;  /* -1: never; 0 is the planner's, not asked here */
  if (problem->seqlen_q > FIXED_SPLIT_MAX_QUERIES) return 1;  /* never cut: batch-invariant too */
  int64_t tiles = (runtime_job_keys(problem, block_n) + block_n - 1) / block_n;
  int64_t splits = (tiles + per_part - 1) / per_part;
  return splits < 2 ? 1 : splits;
}

int64_t runtime_kv_splits(int workers, int64_t jobs, int64_t job_keys, int block_n) {
  if (jobs < 1 || workers < 2 || jobs >= workers || block_n < 1) return 1;
  int64_t splits = (SPLIT_KV_PARTS_PER_WORKER * (int64_t)workers + jobs - 1) / jobs;
  int64_t by_keys = job_keys / SPLIT_KV_MIN_KEYS;
  if (splits > by_keys) splits = by_keys;
  if (splits > SPLIT_KV_MAX) splits = SPLIT_KV_MAX;
  return splits < 2 ? 1 : splits;
}

fj_status runtime_combine_kv_splits(const attention_problem *problem, int64_t splits, const float *o_partial,
                                    const float *lse_partial) {
  if (splits < 1 || splits > SPLIT_KV_MAX)
    return core_error(FJ_INTERNAL, "split-KV: %lld parts; 1 to %d", (long long)splits, SPLIT_KV_MAX);
  const int64_t batch = problem->batch, heads = problem->key.heads, seqlen = problem->seqlen_q;
  const int64_t d = core_key_head_dim_v(&problem->key), rows = batch * heads * seqlen;
  const tensor_view *o = &problem->o, *lse = &problem->lse;
  for (int64_t b = 0; b < batch; b++) {
    int64_t start, queries;  /* the parts' rows keep seqlen positions per sequence; o's are its own */
    core_sequence_queries(problem, b, &start, &queries);
    for (int64_t h = 0; h < heads; h++)
      for (int64_t s = 0; s < queries; s++) {
        int64_t row = (b * heads + h) * seqlen + s;
        float max = -INFINITY;
        for (int64_t i = 0; i < splits; i++)
          if (lse_partial[i * rows + row] > max) max = lse_partial[i * rows + row];
        /* a part that saw no key (lse -inf) weighs 0; a row no part saw stays 0 */
        double weight[SPLIT_KV_MAX] = {0}, sum = 0.0;
        if (max != -INFINITY)
          for (int64_t i = 0; i < splits; i++) sum += weight[i] = exp2((double)lse_partial[i * rows + row] - max);
        int64_t out = b * o->stride[0] + (start + s) * o->stride[1] + h * o->stride[2];
        for (int64_t c = 0; c < d; c++) {
          double value = 0.0;
          for (int64_t i = 0; i < splits; i++)
            if (weight[i] > 0.0) value += weight[i] * o_partial[(i * rows + row) * d + c];
          core_store_from_f32(o->data, (dtype_id)problem->key.dtype, out + c * o->stride[3],
                              sum > 0.0 ? (float)(value / sum) : 0.0f);
        }
        if (lse->data != NULL) {
          float value = sum > 0.0 ? (float)(((double)max + log2(sum)) * 0.69314718055994531) : -INFINITY;
          ((float *)(void *)lse->data)[b * lse->stride[0] + h * lse->stride[1] + (start + s) * lse->stride[2]] = value;
        }
      }
  }
  return FJ_OK;
}

static int64_t split_rows(const attention_problem *problem) {
  return problem->batch * problem->key.heads * problem->seqlen_q;
}

/* The parts' layout, the same for both devices: o_partial [splits][rows][head_dim_v], then lse_partial
 * [splits][rows], fp32. */
size_t runtime_split_lse_offset(const attention_problem *problem, int64_t splits) {
  return (size_t)splits * (size_t)split_rows(problem) * (size_t)core_key_head_dim_v(&problem->key) * sizeof(float);
}

size_t runtime_split_bytes(const attention_problem *problem, int64_t splits) {
  return runtime_split_lse_offset(problem, splits) + (size_t)splits * (size_t)split_rows(problem) * sizeof(float);
}

/* ---- GPU: the parts are blocks of their own, merged by the module's combine kernel ---- */

/* Parts of at least this many keys (each part pays for its Q tile, its epilogue and its share of the
 * combine), and at most this many parts (the workspace grows with them). */
#define GPU_SPLIT_MIN_KEYS 256
#define GPU_SPLIT_MAX 128 /* flashjit.h promises this bound (fj_attention_workspace_size); the CPU stays under it */

int64_t runtime_gpu_kv_splits(int sms, int64_t jobs, const attention_problem *problem, int block_n,
                              size_t workspace_bytes) {
  /* the caller's parts, whatever the batch (the launch checks that they fit the workspace) */
  if (problem->kv_split_keys != 0) return split_rows(problem) > INT32_MAX ? 1 : runtime_fixed_splits(problem, block_n);
  if (sms < 2 || jobs < 1 || jobs >= sms || block_n < 1) return 1;
  int64_t job_keys = runtime_job_keys(problem, block_n);
  if (job_keys < 2 * GPU_SPLIT_MIN_KEYS) return 1;
  /* the combine divides its rows in 32 bits (the grid, under sms x GPU_SPLIT_MAX blocks, stays far below) */
  if (split_rows(problem) > INT32_MAX) return 1;
  /* one wave: every SM gets a block (a decode step of batch x KV heads blocks leaves most idle) */
  int64_t splits = (sms + jobs - 1) / jobs;
  int64_t by_keys = job_keys / GPU_SPLIT_MIN_KEYS;
  if (splits > by_keys) splits = by_keys;
  if (splits > GPU_SPLIT_MAX) splits = GPU_SPLIT_MAX;
  size_t per_part = runtime_split_bytes(problem, 1);
  if (per_part == 0) return 1;
  if ((size_t)splits > workspace_bytes / per_part) splits = (int64_t)(workspace_bytes / per_part);
  if (splits < 2) return 1;
  /* whole tiles shared evenly: the parts runtime_gpu_split_params will cut (no more than these) */
  int64_t tiles = (job_keys + block_n - 1) / block_n, per_tiles = (tiles + splits - 1) / splits;
  splits = (tiles + per_tiles - 1) / per_tiles;
  return splits < 2 ? 1 : splits;
}

int64_t runtime_gpu_split_params(const attention_problem *problem, int block_n, int64_t splits, uint64_t workspace,
                                 gpu_attention_params *params) {
  int64_t tiles = (runtime_job_keys(problem, block_n) + block_n - 1) / block_n;
  if (splits < 2 || tiles < 2) return 1;
  /* the caller's part size as it is (its boundaries must not move with the batch's longest sequence),
   * else the tiles shared evenly */
  int64_t per_part = problem->kv_split_keys > 0 ? runtime_fixed_split_tiles(problem, block_n) : (tiles + splits - 1) / splits;
  splits = (tiles + per_part - 1) / per_part;
  if (splits < 2) return 1;
  params->kv_splits = splits;
  params->kv_split_tiles = per_part;
  params->kv_splits_divider = gpu_divider_for((uint32_t)splits);
  params->o_partial = workspace;
  params->lse_partial = workspace + runtime_split_lse_offset(problem, splits);
  return splits;
}

int64_t runtime_gpu_combine_blocks(const attention_problem *problem) {
  return (split_rows(problem) + GPU_COMBINE_WARPS - 1) / GPU_COMBINE_WARPS;
}
