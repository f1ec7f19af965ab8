/* attention_fwd_nvptx_combine.c: the second kernel of a split-KV launch. Each part of a row's keys left
 * its output O_i (normalized by its own sum) and its base-2 LSE lse_i; the row's result is the online
 * softmax's merge of them, with m the largest lse_i:
 *     O = sum_i 2^(lse_i - m) O_i / sum_i 2^(lse_i - m),   LSE = (m + log2 sum_i 2^(lse_i - m)) ln 2.
 * A part that saw no key (lse_i = -inf) weighs 0, and a row no part saw ends as 0 (LSE -inf), as
 * everywhere else. One warp per row, its lanes over the head dim (consecutive lanes, consecutive
 * columns: the parts' rows are read coalesced); the few parts' LSEs are read by every lane. */
#include "kernels/attention_fwd_nvptx_combine.h"

#include <math.h>
#include <stddef.h>

#include "kernels/attention_fwd_gpu_abi.h"
#include "tile/tile_gpu.h"

#define P_OFF(field) offsetof(gpu_attention_params, field)
#define MAX_COLUMN_STEPS ((CORE_HEAD_DIM_MAX + 31) / 32) /* head dims up to 576 over 32 lanes */

static LLVMValueRef divide_by(tile_gpu *tg, LLVMValueRef n, size_t divider) {
  return tile_gpu_divide(tg, n, tile_gpu_param_i32(tg, divider + offsetof(gpu_divider, magic)),
                         tile_gpu_param_i32(tg, divider + offsetof(gpu_divider, shift)));
}

/* stride[i] of a parameter array of four int64 strides */
static LLVMValueRef stride_of(tile_gpu *tg, size_t strides, int i) {
  return tile_gpu_param_i64(tg, strides + (size_t)i * sizeof(int64_t));
}

/* (Both kernels of the module.) A ragged sequence's queries (key.varlen_q) or a packed sequence's keys
 * (key.varlen_k): rows [*start, *start + *count), from offsets[b] and [b + 1] (cu_seqlens_q or cu_seqlens_k),
 * read once per block and clamped into [0, total] and to `most` (the host cannot check device values), so
 * that no access leaves the tensors. */
static void sequence_rows(tile_gpu *tg, size_t offsets_at, size_t stride_at, size_t total_at, LLVMValueRef b,
                          LLVMValueRef most, LLVMValueRef *start, LLVMValueRef *count) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef offsets = LLVMBuildIntToPtr(tb->b, tile_gpu_param_i64(tg, offsets_at), tg->global_ptr, "");
  LLVMValueRef stride = tile_gpu_param_i64(tg, stride_at);
  LLVMValueRef total = tile_gpu_param_i64(tg, total_at);
  LLVMValueRef bound[2];
  for (int i = 0; i < 2; i++) {
    LLVMValueRef at = tile_mul(tb, tile_add(tb, b, tile_i64(tb, i)), stride);
    LLVMValueRef n = LLVMBuildLoad2(tb->b, tb->i32, LLVMBuildGEP2(tb->b, tb->i32, offsets, &at, 1, ""), "offset");
    bound[i] = tile_min(tb, tile_max(tb, LLVMBuildSExt(tb->b, n, tb->i64, ""), tile_i64(tb, 0)), total);
  }
  *start = bound[0];
  *count = tile_min(tb, tile_max(tb, tile_sub(tb, bound[1], bound[0]), tile_i64(tb, 0)), most);
}

void attention_fwd_nvptx_sequence_queries(tile_gpu *tg, LLVMValueRef b, LLVMValueRef max_queries, LLVMValueRef *start,
                                          LLVMValueRef *count) {
  sequence_rows(tg, P_OFF(cu_seqlens_q), P_OFF(cu_seqlens_q_stride), P_OFF(total_q), b, max_queries, start, count);
}

void attention_fwd_nvptx_sequence_keys(tile_gpu *tg, LLVMValueRef b, LLVMValueRef max_keys, LLVMValueRef *start,
                                       LLVMValueRef *count) {
  sequence_rows(tg, P_OFF(cu_seqlens_k), P_OFF(cu_seqlens_k_stride), P_OFF(total_k), b, max_keys, start, count);
}

/* Part `part`'s base-2 LSE of row `row`: lse_partial[part * rows + row]. */
static LLVMValueRef part_lse(tile_builder *tb, LLVMValueRef lse_partial, LLVMValueRef part, LLVMValueRef rows,
                             LLVMValueRef row) {
  LLVMValueRef at = tile_add(tb, tile_mul(tb, part, rows), row);
  return LLVMBuildLoad2(tb->b, tb->f32, LLVMBuildGEP2(tb->b, tb->f32, lse_partial, &at, 1, ""), "");
}

fj_status attention_fwd_nvptx_generate_combine(LLVMModuleRef module, const attention_key *key,
                                               const jit_target *target, const char *name) {
  const int D = core_key_head_dim_v(key), steps = (D + 31) / 32;  /* o's head dim */
  tile_gpu tgs, *tg = &tgs;
  tile_gpu_begin(tg, module, target, name, sizeof(gpu_attention_params), (dtype_id)key->dtype, GPU_COMBINE_WARPS);
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;

  LLVMValueRef batch = tile_gpu_param_i64(tg, P_OFF(batch)), heads = tile_gpu_param_i64(tg, P_OFF(heads));
  LLVMValueRef seqlen_q = tile_gpu_param_i64(tg, P_OFF(seqlen_q)), parts = tile_gpu_param_i64(tg, P_OFF(kv_splits));
  LLVMValueRef rows = tile_mul(tb, tile_mul(tb, batch, heads), seqlen_q);
  LLVMValueRef row = tile_add(tb, tile_mul(tb, tile_gpu_block_index(tg), tile_i64(tb, GPU_COMBINE_WARPS)),
                              LLVMBuildZExt(ir, tg->warp, tb->i64, ""));
  tile_if inside;
  tile_if_begin(tb, &inside, tile_lt(tb, row, rows));

  LLVMValueRef lse_partial = tile_gpu_param_global(tg, P_OFF(lse_partial));
  LLVMValueRef o_partial = tile_gpu_param_global(tg, P_OFF(o_partial));
  /* m: the largest part LSE (-inf when no part saw a key) */
  LLVMValueRef max = tile_var(tb, tb->f32, tile_f32(tb, -INFINITY), "max");
  tile_loop scan;
  LLVMValueRef part = tile_for(tb, &scan, tile_i64(tb, 0), parts, tile_i64(tb, 1), "part");
  {
    LLVMValueRef lse = part_lse(tb, lse_partial, part, rows, row), m = tile_get(tb, max);
    tile_set(tb, max, LLVMBuildSelect(ir, LLVMBuildFCmp(ir, LLVMRealOGT, lse, m, ""), lse, m, ""));
  }
  tile_end_for(tb, &scan);
  LLVMValueRef m = tile_get(tb, max);
  LLVMValueRef base = LLVMBuildSelect(ir, LLVMBuildFCmp(ir, LLVMRealOEQ, m, tile_f32(tb, -INFINITY), ""),
                                      tile_f32(tb, 0.0f), m, "");

  /* sum_i w_i and sum_i w_i O_i, this lane's columns lane, lane + 32, ... */
  LLVMValueRef lane = LLVMBuildZExt(ir, tg->lane, tb->i64, "");
  LLVMValueRef sum = tile_var(tb, tb->f32, tile_f32(tb, 0.0f), "sum"), acc[MAX_COLUMN_STEPS];
  for (int c = 0; c < steps; c++) acc[c] = tile_var(tb, tb->f32, tile_f32(tb, 0.0f), "acc");
  tile_loop merge;
  part = tile_for(tb, &merge, tile_i64(tb, 0), parts, tile_i64(tb, 1), "part");
  {
    LLVMValueRef weight = tile_gpu_exp2(tg, LLVMBuildFSub(ir, part_lse(tb, lse_partial, part, rows, row), base, ""));
    tile_set(tb, sum, LLVMBuildFAdd(ir, tile_get(tb, sum), weight, ""));
    LLVMValueRef part_row = tile_mul(tb, tile_add(tb, tile_mul(tb, part, rows), row), tile_i64(tb, D));
    for (int c = 0; c < steps; c++) {
      LLVMValueRef column = tile_add(tb, lane, tile_i64(tb, 32 * c));
      tile_if in_row;
      if ((c + 1) * 32 > D) tile_if_begin(tb, &in_row, tile_lt(tb, column, tile_i64(tb, D)));
      LLVMValueRef at = tile_add(tb, part_row, column);
      LLVMValueRef x = LLVMBuildLoad2(ir, tb->f32, LLVMBuildGEP2(ir, tb->f32, o_partial, &at, 1, ""), "");
      tile_set(tb, acc[c], LLVMBuildFAdd(ir, tile_get(tb, acc[c]), LLVMBuildFMul(ir, weight, x, ""), ""));
      if ((c + 1) * 32 > D) tile_if_end(tb, &in_row);
    }
  }
  tile_end_for(tb, &merge);

  /* the row's (batch, head, position): row = (b * heads + h) * seqlen_q + position */
  LLVMValueRef row32 = LLVMBuildTrunc(ir, row, tb->i32, "");
  LLVMValueRef bh = divide_by(tg, row32, P_OFF(seqlen_q_divider));
  LLVMValueRef position = LLVMBuildSub(ir, row32, LLVMBuildMul(ir, bh, LLVMBuildTrunc(ir, seqlen_q, tb->i32, ""), ""), "");
  LLVMValueRef b = divide_by(tg, bh, P_OFF(query_heads_divider));
  LLVMValueRef h = LLVMBuildSub(ir, bh, LLVMBuildMul(ir, b, LLVMBuildTrunc(ir, heads, tb->i32, ""), ""), "");
  b = LLVMBuildZExt(ir, b, tb->i64, "");
  h = LLVMBuildZExt(ir, h, tb->i64, "");
  position = LLVMBuildZExt(ir, position, tb->i64, "");

  /* a ragged sequence's rows: only its own positions, from its first row */
  tile_if in_sequence;
  if (key->varlen_q) {
    LLVMValueRef start, count;
    attention_fwd_nvptx_sequence_queries(tg, b, seqlen_q, &start, &count);
    tile_if_begin(tb, &in_sequence, tile_lt(tb, position, count));
    position = tile_add(tb, position, start);
  }
  LLVMValueRef total = tile_get(tb, sum);
  LLVMValueRef seen = LLVMBuildFCmp(ir, LLVMRealOGT, total, tile_f32(tb, 0.0f), "");
  LLVMValueRef inverse = LLVMBuildSelect(ir, seen, LLVMBuildFDiv(ir, tile_f32(tb, 1.0f), total, ""), tile_f32(tb, 0.0f), "");
  LLVMValueRef o = tile_gpu_param_global(tg, P_OFF(o));
  LLVMValueRef o_row = tile_add(tb, tile_add(tb, tile_mul(tb, b, stride_of(tg, P_OFF(o_stride), 0)),
                                             tile_mul(tb, position, stride_of(tg, P_OFF(o_stride), 1))),
                                tile_mul(tb, h, stride_of(tg, P_OFF(o_stride), 2)));
  for (int c = 0; c < steps; c++) {
    LLVMValueRef column = tile_add(tb, lane, tile_i64(tb, 32 * c));
    tile_if in_row;
    if ((c + 1) * 32 > D) tile_if_begin(tb, &in_row, tile_lt(tb, column, tile_i64(tb, D)));
    LLVMValueRef at = tile_add(tb, o_row, tile_mul(tb, column, stride_of(tg, P_OFF(o_stride), 3)));
    tile_gpu_store_element(tg, o, at, LLVMBuildFMul(ir, tile_get(tb, acc[c]), inverse, ""));
    if ((c + 1) * 32 > D) tile_if_end(tb, &in_row);
  }
  if (key->has_lse) {
    tile_if first_lane;
    tile_if_begin(tb, &first_lane, LLVMBuildICmp(ir, LLVMIntEQ, tg->lane, tile_gpu_i32(tg, 0), ""));
    LLVMValueRef log2_sum = tile_gpu_lg2(tg, LLVMBuildSelect(ir, seen, total, tile_f32(tb, 1.0f), ""));
    LLVMValueRef value = LLVMBuildFMul(ir, LLVMBuildFAdd(ir, m, log2_sum, ""), tile_f32(tb, 0.69314718055994531f), "");
    value = LLVMBuildSelect(ir, seen, value, tile_f32(tb, -INFINITY), "");
    LLVMValueRef at = tile_add(tb, tile_add(tb, tile_mul(tb, b, stride_of(tg, P_OFF(lse_stride), 0)),
                                            tile_mul(tb, h, stride_of(tg, P_OFF(lse_stride), 1))),
                               tile_mul(tb, position, stride_of(tg, P_OFF(lse_stride), 2)));
    LLVMBuildStore(ir, value, LLVMBuildGEP2(ir, tb->f32, tile_gpu_param_global(tg, P_OFF(lse)), &at, 1, ""));
    tile_if_end(tb, &first_lane);
  }
  if (key->varlen_q) tile_if_end(tb, &in_sequence);
  tile_if_end(tb, &inside);
  tile_gpu_end(tg);
  return FJ_OK;
}
