/* attention_merge_nvptx.c: fj_attention_merge on NVIDIA devices. Each warp takes one (batch, query,
 * head) row: both LSEs (natural log), m the larger, the weights w = e^(lse - m) (-inf weighs 0), then
 *     o = (w_a o_a + w_b o_b) / (w_a + w_b),   lse = m + ln(w_a + w_b),
 * its lanes over the head dim (consecutive lanes, consecutive columns: coalesced), in fp32. A row both
 * sides saw no key of ends as 0 and -inf. o may be o_a or o_b itself: each lane reads its columns before
 * writing them. The same arithmetic as the host's merge for the CPU (runtime/merge.c). */
#include "kernels/attention_merge_nvptx.h"

#include <math.h>
#include <stddef.h>

#include "kernels/attention_merge_gpu_abi.h"
#include "tile/tile_gpu.h"

#define M_OFF(field) offsetof(gpu_merge_params, field)

static LLVMValueRef stride_of(tile_gpu *tg, size_t strides, int i) {
  return tile_gpu_param_i64(tg, strides + (size_t)i * sizeof(int64_t));
}

/* element (b, s, h, column) of a [batch, seqlen, heads, head_dim] view's strides, i64 */
static LLVMValueRef o_index(tile_gpu *tg, size_t strides, LLVMValueRef b, LLVMValueRef s, LLVMValueRef h,
                            LLVMValueRef column) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef at = tile_add(tb, tile_mul(tb, b, stride_of(tg, strides, 0)), tile_mul(tb, s, stride_of(tg, strides, 1)));
  at = tile_add(tb, at, tile_mul(tb, h, stride_of(tg, strides, 2)));
  return tile_add(tb, at, tile_mul(tb, column, stride_of(tg, strides, 3)));
}

/* element (b, h, s) of a [batch, heads, seqlen] LSE */
static LLVMValueRef lse_index(tile_gpu *tg, size_t strides, LLVMValueRef b, LLVMValueRef s, LLVMValueRef h) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef at = tile_add(tb, tile_mul(tb, b, stride_of(tg, strides, 0)), tile_mul(tb, h, stride_of(tg, strides, 1)));
  return tile_add(tb, at, tile_mul(tb, s, stride_of(tg, strides, 2)));
}

static LLVMValueRef load_f32(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index) {
  tile_builder *tb = &tg->tb;
  return LLVMBuildLoad2(tb->b, tb->f32, LLVMBuildGEP2(tb->b, tb->f32, base, &index, 1, ""), "");
}

/* An element of dtype, widened to f32 (fp16 and bf16 are exact in it). */
static LLVMValueRef load_element(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index, dtype_id dtype) {
  tile_builder *tb = &tg->tb;
  if (dtype == DTYPE_F32) return load_f32(tg, base, index);
  LLVMValueRef bits = LLVMBuildLoad2(tb->b, tb->i16, tile_gpu_element_address(tg, base, index), "");
  if (dtype == DTYPE_F16) return LLVMBuildFPExt(tb->b, LLVMBuildBitCast(tb->b, bits, LLVMHalfTypeInContext(tb->ctx), ""), tb->f32, "");
  LLVMValueRef wide = LLVMBuildShl(tb->b, LLVMBuildZExt(tb->b, bits, tb->i32, ""), tile_gpu_i32(tg, 16), "");
  return LLVMBuildBitCast(tb->b, wide, tb->f32, "");
}

static void store_element(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index, LLVMValueRef value, dtype_id dtype) {
  tile_builder *tb = &tg->tb;
  if (dtype == DTYPE_F32)
    LLVMBuildStore(tb->b, value, LLVMBuildGEP2(tb->b, tb->f32, base, &index, 1, ""));
  else
    tile_gpu_store_element(tg, base, index, value);  /* rounded to nearest even in the operand dtype */
}

fj_status attention_merge_nvptx_generate(LLVMModuleRef module, dtype_id dtype, const jit_target *target,
                                         const char *name) {
  tile_gpu tgs, *tg = &tgs;
  /* the operand dtype only matters for the 16-bit stores (fp32 is stored as it is) */
  tile_gpu_begin(tg, module, target, name, sizeof(gpu_merge_params), dtype == DTYPE_BF16 ? DTYPE_BF16 : DTYPE_F16,
                 GPU_MERGE_WARPS);
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef ir = tb->b;

  LLVMValueRef batch = tile_gpu_param_i64(tg, M_OFF(batch)), seqlen = tile_gpu_param_i64(tg, M_OFF(seqlen));
  LLVMValueRef heads = tile_gpu_param_i64(tg, M_OFF(heads)), head_dim = tile_gpu_param_i64(tg, M_OFF(head_dim));
  LLVMValueRef rows = tile_mul(tb, tile_mul(tb, batch, seqlen), heads);
  LLVMValueRef row = tile_add(tb, tile_mul(tb, tile_gpu_block_index(tg), tile_i64(tb, GPU_MERGE_WARPS)),
                              LLVMBuildZExt(ir, tg->warp, tb->i64, ""));
  tile_if inside;
  tile_if_begin(tb, &inside, tile_lt(tb, row, rows));
  /* row = (b * seqlen + s) * heads + h */
  LLVMValueRef bs = LLVMBuildUDiv(ir, row, heads, "");
  LLVMValueRef h = tile_sub(tb, row, tile_mul(tb, bs, heads));
  LLVMValueRef b = LLVMBuildUDiv(ir, bs, seqlen, "");
  LLVMValueRef s = tile_sub(tb, bs, tile_mul(tb, b, seqlen));

  LLVMValueRef lse_a = load_f32(tg, tile_gpu_param_global(tg, M_OFF(lse_a)), lse_index(tg, M_OFF(lse_a_stride), b, s, h));
  LLVMValueRef lse_b = load_f32(tg, tile_gpu_param_global(tg, M_OFF(lse_b)), lse_index(tg, M_OFF(lse_b_stride), b, s, h));
  LLVMValueRef m = LLVMBuildSelect(ir, LLVMBuildFCmp(ir, LLVMRealOGT, lse_b, lse_a, ""), lse_b, lse_a, "");
  /* with m = -inf both weigh 0 (no key on either side); else e^(lse - m) = 2^((lse - m) log2 e) */
  LLVMValueRef base = LLVMBuildSelect(ir, LLVMBuildFCmp(ir, LLVMRealOEQ, m, tile_f32(tb, -INFINITY), ""),
                                      tile_f32(tb, 0.0f), m, "");
  LLVMValueRef log2e = tile_f32(tb, 1.4426950408889634f);
  LLVMValueRef w_a = tile_gpu_exp2(tg, LLVMBuildFMul(ir, LLVMBuildFSub(ir, lse_a, base, ""), log2e, ""));
  LLVMValueRef w_b = tile_gpu_exp2(tg, LLVMBuildFMul(ir, LLVMBuildFSub(ir, lse_b, base, ""), log2e, ""));
  LLVMValueRef sum = LLVMBuildFAdd(ir, w_a, w_b, "");
  LLVMValueRef seen = LLVMBuildFCmp(ir, LLVMRealOGT, sum, tile_f32(tb, 0.0f), "");
  LLVMValueRef inverse = LLVMBuildSelect(ir, seen, LLVMBuildFDiv(ir, tile_f32(tb, 1.0f), sum, ""), tile_f32(tb, 0.0f), "");
  LLVMValueRef scale_a = LLVMBuildFMul(ir, w_a, inverse, ""), scale_b = LLVMBuildFMul(ir, w_b, inverse, "");

  LLVMValueRef o_a = tile_gpu_param_global(tg, M_OFF(o_a)), o_b = tile_gpu_param_global(tg, M_OFF(o_b));
  LLVMValueRef o = tile_gpu_param_global(tg, M_OFF(o));
  tile_loop columns;
  LLVMValueRef column = tile_for(tb, &columns, LLVMBuildZExt(ir, tg->lane, tb->i64, ""), head_dim, tile_i64(tb, 32),
                                 "column");
  {
    LLVMValueRef a = load_element(tg, o_a, o_index(tg, M_OFF(o_a_stride), b, s, h, column), dtype);
    LLVMValueRef x = load_element(tg, o_b, o_index(tg, M_OFF(o_b_stride), b, s, h, column), dtype);
    LLVMValueRef merged = LLVMBuildFAdd(ir, LLVMBuildFMul(ir, scale_a, a, ""), LLVMBuildFMul(ir, scale_b, x, ""), "");
    store_element(tg, o, o_index(tg, M_OFF(o_stride), b, s, h, column), merged, dtype);
  }
  tile_end_for(tb, &columns);

  /* lane 0 writes the LSE where one is asked for; lse_a or lse_b may be it, read above */
  LLVMValueRef lse = tile_gpu_param_i64(tg, M_OFF(lse));
  tile_if writes_lse;
  tile_if_begin(tb, &writes_lse, LLVMBuildAnd(ir, LLVMBuildICmp(ir, LLVMIntEQ, tg->lane, tile_gpu_i32(tg, 0), ""),
                                              LLVMBuildICmp(ir, LLVMIntNE, lse, tile_i64(tb, 0), ""), ""));
  LLVMValueRef ln_sum = LLVMBuildFMul(ir, tile_gpu_lg2(tg, LLVMBuildSelect(ir, seen, sum, tile_f32(tb, 1.0f), "")),
                                      tile_f32(tb, 0.69314718055994531f), "");
  LLVMValueRef value = LLVMBuildSelect(ir, seen, LLVMBuildFAdd(ir, base, ln_sum, ""), tile_f32(tb, -INFINITY), "");
  LLVMValueRef at = lse_index(tg, M_OFF(lse_stride), b, s, h);
  LLVMBuildStore(ir, value, LLVMBuildGEP2(ir, tb->f32, tile_gpu_param_global(tg, M_OFF(lse)), &at, 1, ""));
  tile_if_end(tb, &writes_lse);
  tile_if_end(tb, &inside);
  tile_gpu_end(tg);
  return FJ_OK;
}
#undef M_OFF
