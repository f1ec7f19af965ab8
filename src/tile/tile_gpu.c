/* tile_gpu.c: the warp-level tile vocabulary lowered for NVIDIA tensor cores: shared tiles filled by
 * cp.async (zero-filled past the end) and read by ldmatrix, dot products as mma.sync m16n8k16, row
 * statistics with quad shuffles, exp2 as ex2.approx. Every instruction comes from the CUDA backend's
 * codegen hooks; this file decides only who holds what, following the layout rules at its top. Tiles
 * are unrolled at generation time (sizes are compile-time), so fragments are plain SSA values and only
 * what crosses a loop lives in stack slots, which SROA turns back into registers. */
#include "tile/tile_gpu.h"

#include <math.h>
#include <string.h>

/* ---- layout rules ------------------------------------------------------------------------------- */

void tile_gpu_acc_coord(int lane, int reg, int *row, int *col) {
  *row = lane / 4 + 8 * (reg / 2);
  *col = 2 * (lane % 4) + reg % 2;
}

void tile_gpu_a_coord(int lane, int reg, int half, int *row, int *k) {
  *row = lane / 4 + 8 * (reg % 2);
  *k = 2 * (lane % 4) + half + 8 * (reg / 2);
}

void tile_gpu_b_coord(int lane, int reg, int half, int *k, int *n) {
  *k = 2 * (lane % 4) + half + 8 * reg;
  *n = lane / 4;
}

void tile_gpu_ldmatrix_provider(int lane, int *matrix, int *row) {
  *matrix = lane / 8;
  *row = lane % 8;
}

void tile_gpu_ldmatrix_element(int lane, int half, int transpose, int *row, int *col) {
  if (transpose) {
    *row = 2 * (lane % 4) + half;
    *col = lane / 4;
  } else {
    *row = lane / 4;
    *col = 2 * (lane % 4) + half;
  }
}

/* Matrix m of an x4 load sits at (row block, chunk) = (m & 1, m >> 1) for TILE_GPU_LD_A (the order of
 * a0..a3) and at (m >> 1, m & 1) for TILE_GPU_LD_B (b0, b1 of one n-tile, then of the next). */
void tile_gpu_ldmatrix_source(int lane, int kind, int *row, int *chunk) {
  int matrix = lane / 8;
  int row_block = kind == TILE_GPU_LD_A ? matrix & 1 : matrix >> 1;
  *row = lane % 8 + 8 * row_block;
  *chunk = kind == TILE_GPU_LD_A ? matrix >> 1 : matrix & 1;
}

/* The xor mask of a tail group of `width` chunks (4 or 2) in rows of chunks_per_row: its row bits, from
 * `shift`. Rows 8 apart start in the same bank group; rows of 12 mod 16 chunks pair rows 2 apart, rows of
 * 6 mod 8 chunks (a tail of 4 + 2) rows 4 apart: each such pair differs in the bit the mask takes, and
 * across pairs the groups' bases already differ (verified for every width in test_tile_gpu). */
static void swizzle_tail_mask(int width, int chunks_per_row, int *shift, int *bits) {
  int six = chunks_per_row % 8 == 6;
  *shift = width == 4 && !six ? 1 : 2;
  *bits = width == 4 && !six ? 3 : 1;
}

int tile_gpu_swizzle_chunk(int row, int chunk, int chunks_per_row, int swizzle) {
  if (!swizzle) return chunk;
  int full = chunks_per_row & ~7;
  if (chunk < full) return chunk ^ (row & 7);
  int base = full, rest = chunks_per_row - full;
  for (int width = 4; width >= 2; width /= 2) {
    if (!(rest & width)) continue;
    int shift, bits;
    swizzle_tail_mask(width, chunks_per_row, &shift, &bits);
    if (chunk < base + width) return base + ((chunk - base) ^ ((row >> shift) & bits));
    base += width;
  }
  return chunk;
}

int tile_gpu_swizzle_group(int chunk, int chunks_per_row) {
  int full = chunks_per_row & ~7;
  if (chunk < full) return chunk & ~7;
  int base = full;
  if (((chunks_per_row - full) & 4) && chunk >= base + 4) base += 4;
  return base;
}

/* ---- small IR helpers ---------------------------------------------------------------------------- */

LLVMValueRef tile_gpu_i32(tile_gpu *tg, int value) {
  return LLVMConstInt(tg->tb.i32, (unsigned long long)(long long)value, 1);
}

static LLVMBuilderRef B(tile_gpu *tg) { return tg->tb.b; }

static LLVMValueRef call_f32(tile_gpu *tg, const char *name, LLVMValueRef *args, unsigned count) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef types[1] = {tg->tb.f32};
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(tg->tb.module, id, types, 1);
  return LLVMBuildCall2(B(tg), LLVMIntrinsicGetType(tg->tb.ctx, id, types, 1), fn, args, count, "");
}
static LLVMValueRef fmax32(tile_gpu *tg, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef args[2] = {a, b};
  return call_f32(tg, "llvm.maxnum", args, 2);
}
static LLVMValueRef fmin32(tile_gpu *tg, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef args[2] = {a, b};
  return call_f32(tg, "llvm.minnum", args, 2);
}
static LLVMValueRef fma32(tile_gpu *tg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  return call_f32(tg, "llvm.fma", args, 3);
}

static LLVMValueRef shared_address(tile_gpu *tg, LLVMValueRef byte_offset) {
  return LLVMBuildGEP2(B(tg), LLVMInt8TypeInContext(tg->tb.ctx), tg->shared, &byte_offset, 1, "");
}

static LLVMTypeRef operand_type(tile_gpu *tg) {
  return tg->bf16 ? LLVMBFloatTypeInContext(tg->tb.ctx) : tg->tb.f16;
}

LLVMValueRef tile_gpu_element_address(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index) {
  return LLVMBuildGEP2(B(tg), tg->tb.i16, base, &index, 1, "");
}

LLVMValueRef tile_gpu_fp8_element_address(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index) {
  return LLVMBuildGEP2(B(tg), LLVMInt8TypeInContext(tg->tb.ctx), base, &index, 1, "");
}

/* An fp8 element's bits (i8) as the operand dtype's bits (i16): exact, every fp8 value being an fp16 and
 * a bf16 value (tile_fp8_to_f32 needs only sm_80's instructions; sm_89's cvt from e4m3x2 is not used). */
static LLVMValueRef fp8_to_operand_bits(tile_gpu *tg, LLVMValueRef bits, dtype_id dtype) {
  LLVMValueRef value = tile_fp8_to_f32(&tg->tb, bits, dtype);
  return LLVMBuildBitCast(B(tg), LLVMBuildFPTrunc(B(tg), value, operand_type(tg), ""), tg->tb.i16, "");
}

/* The swizzle rule of tile_gpu_swizzle_chunk on i32 values, each group's xor mask and'ed with `keep`
 * (-1: the rule itself; ~1: chunk pairs kept whole and in order); chunk may be a run-time value. */
static LLVMValueRef swizzle_ir_keeping(tile_gpu *tg, LLVMValueRef row, LLVMValueRef chunk, int chunks_per_row,
                                       int swizzle, int keep) {
  if (!swizzle) return chunk;
  LLVMBuilderRef b = B(tg);
  int full = chunks_per_row & ~7;
  LLVMValueRef result = chunk;
  if (full > 0) {
    LLVMValueRef x = LLVMBuildXor(b, chunk, LLVMBuildAnd(b, row, tile_gpu_i32(tg, 7 & keep), ""), "");
    if (full == chunks_per_row) return x;
    result = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, chunk, tile_gpu_i32(tg, full), ""), x, chunk, "");
  }
  int base = full, rest = chunks_per_row - full;
  for (int width = 4; width >= 2; width /= 2) {
    if (!(rest & width)) continue;
    int shift, bits;
    swizzle_tail_mask(width, chunks_per_row, &shift, &bits);
    if ((bits & keep) == 0) {  /* nothing of this group's mask is kept: it stays in place */
      base += width;
      continue;
    }
    LLVMValueRef mask = LLVMBuildAnd(b, LLVMBuildLShr(b, row, tile_gpu_i32(tg, shift), ""),
                                     tile_gpu_i32(tg, bits & keep), "");
    LLVMValueRef local = LLVMBuildSub(b, chunk, tile_gpu_i32(tg, base), "");
    LLVMValueRef moved = LLVMBuildAdd(b, LLVMBuildXor(b, local, mask, ""), tile_gpu_i32(tg, base), "");
    LLVMValueRef inside = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntSGE, chunk, tile_gpu_i32(tg, base), ""),
                                       LLVMBuildICmp(b, LLVMIntSLT, chunk, tile_gpu_i32(tg, base + width), ""), "");
    result = LLVMBuildSelect(b, inside, moved, result, "");
    base += width;
  }
  return result;
}

static LLVMValueRef swizzle_ir(tile_gpu *tg, LLVMValueRef row, LLVMValueRef chunk, int chunks_per_row,
                               int swizzle) {
  return swizzle_ir_keeping(tg, row, chunk, chunks_per_row, swizzle, -1);
}

/* Bytes from one row of a shared tile to the next. */
static int row_bytes_of(const tile_gpu_shared *t) { return (t->row_cols ? t->row_cols : t->cols) * 2; }

/* Byte offset (i32) in dynamic shared memory of the chunk stored at place `physical` of row `row`. */
static LLVMValueRef slot_offset(tile_gpu *tg, const tile_gpu_shared *t, LLVMValueRef row, LLVMValueRef physical) {
  LLVMBuilderRef b = B(tg);
  LLVMValueRef offset = LLVMBuildAdd(b, t->offset, LLVMBuildMul(b, row, tile_gpu_i32(tg, row_bytes_of(t)), ""), "");
  return LLVMBuildAdd(b, offset, LLVMBuildShl(b, physical, tile_gpu_i32(tg, 4), ""), "");
}

/* Byte offset (i32) in dynamic shared memory of chunk `chunk` of row `row` of a shared tile. */
static LLVMValueRef chunk_offset(tile_gpu *tg, const tile_gpu_shared *t, LLVMValueRef row, LLVMValueRef chunk) {
  return slot_offset(tg, t, row, swizzle_ir(tg, row, chunk, t->cols / 8, t->swizzle));
}

tile_gpu_shared tile_gpu_shared_columns(tile_gpu *tg, const tile_gpu_shared *t, LLVMValueRef col0, int cols) {
  tile_gpu_shared view = *t;
  view.offset = LLVMBuildAdd(B(tg), t->offset, LLVMBuildShl(B(tg), col0, tile_gpu_i32(tg, 1), ""), "");
  view.cols = cols;
  view.row_cols = t->row_cols ? t->row_cols : t->cols;
  return view;
}

/* ---- kernel ---------------------------------------------------------------------------------------- */

static void add_enum_attribute(tile_gpu *tg, LLVMValueRef fn, unsigned index, const char *name, uint64_t value) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, index, LLVMCreateEnumAttribute(tg->tb.ctx, kind, value));
}

void tile_gpu_begin(tile_gpu *tg, LLVMModuleRef module, const jit_target *target, const char *name,
                    size_t param_bytes, dtype_id dtype, int warps) {
  memset(tg, 0, sizeof *tg);
  tile_builder *tb = &tg->tb;
  tile_builder_init(tb, module, 32);
  tb->vec = tb->f32;  /* a thread holds one lane of the warp */
  tg->target = target;
  tg->bf16 = dtype == DTYPE_BF16;
  tg->warps = warps;
  tg->global_ptr = LLVMPointerTypeInContext(tb->ctx, CUDA_AS_GLOBAL);
  tg->shared_ptr = LLVMPointerTypeInContext(tb->ctx, CUDA_AS_SHARED);

  LLVMTypeRef param_types[1] = {tb->ptr};
  LLVMValueRef fn = LLVMAddFunction(module, name, LLVMFunctionType(tb->void_type, param_types, 1, 0));
  tg->ir.ctx = tb->ctx;
  tg->ir.module = module;
  cuda_ir_kernel(&tg->ir, fn, warps * 32);
  /* By value: `.param .align 8 .b8 name[param_bytes]`, read with ld.param. */
  LLVMTypeRef block = LLVMArrayType2(tb->i64, param_bytes / 8);
  unsigned byval = LLVMGetEnumAttributeKindForName("byval", 5);
  LLVMAddAttributeAtIndex(fn, 1, LLVMCreateTypeAttribute(tb->ctx, byval, block));
  add_enum_attribute(tg, fn, 1, "align", 8);
  tile_function_open(tb, fn, target);
  tg->ir.b = tb->b;

  tg->params = LLVMGetParam(fn, 0);
  tg->shared = cuda_ir_dynamic_shared(&tg->ir);
  tg->thread_root = cuda_ir_thread_index(&tg->ir);
  tile_gpu_refresh_lanes(tg);
}

void tile_gpu_refresh_lanes(tile_gpu *tg) {
  tile_builder *tb = &tg->tb;
  tg->thread = cuda_ir_opaque(&tg->ir, tg->thread_root);
  tg->lane = LLVMBuildAnd(tb->b, tg->thread, tile_gpu_i32(tg, 31), "lane");
  tg->warp = LLVMBuildLShr(tb->b, tg->thread, tile_gpu_i32(tg, 5), "warp");
  tg->group_row = LLVMBuildLShr(tb->b, tg->lane, tile_gpu_i32(tg, 2), "");
  tg->quad_col = LLVMBuildShl(tb->b, LLVMBuildAnd(tb->b, tg->lane, tile_gpu_i32(tg, 3), ""), tile_gpu_i32(tg, 1), "");
  /* tile_gpu_ldmatrix_source in IR: lane % 8 + 8 * row_block, chunk. */
  LLVMValueRef low = LLVMBuildAnd(tb->b, tg->lane, tile_gpu_i32(tg, 7), "");
  LLVMValueRef bit3 = LLVMBuildAnd(tb->b, LLVMBuildLShr(tb->b, tg->lane, tile_gpu_i32(tg, 3), ""), tile_gpu_i32(tg, 1), "");
  LLVMValueRef bit4 = LLVMBuildLShr(tb->b, tg->lane, tile_gpu_i32(tg, 4), "");
  tg->ld_row[TILE_GPU_LD_A] = LLVMBuildOr(tb->b, low, LLVMBuildShl(tb->b, bit3, tile_gpu_i32(tg, 3), ""), "");
  tg->ld_chunk[TILE_GPU_LD_A] = bit4;
  tg->ld_row[TILE_GPU_LD_B] = LLVMBuildOr(tb->b, low, LLVMBuildShl(tb->b, bit4, tile_gpu_i32(tg, 3), ""), "");
  tg->ld_chunk[TILE_GPU_LD_B] = bit3;
}

void tile_gpu_end(tile_gpu *tg) { tile_function_end(&tg->tb); }

static LLVMValueRef param_address(tile_gpu *tg, size_t offset) {
  LLVMValueRef index = tile_i64(&tg->tb, (int64_t)offset);
  return LLVMBuildGEP2(B(tg), LLVMInt8TypeInContext(tg->tb.ctx), tg->params, &index, 1, "");
}
LLVMValueRef tile_gpu_param_i64(tile_gpu *tg, size_t offset) {
  return LLVMBuildLoad2(B(tg), tg->tb.i64, param_address(tg, offset), "");
}
LLVMValueRef tile_gpu_param_i32(tile_gpu *tg, size_t offset) {
  return LLVMBuildLoad2(B(tg), tg->tb.i32, param_address(tg, offset), "");
}
LLVMValueRef tile_gpu_param_f32(tile_gpu *tg, size_t offset) {
  return LLVMBuildLoad2(B(tg), tg->tb.f32, param_address(tg, offset), "");
}
LLVMValueRef tile_gpu_param_global(tile_gpu *tg, size_t offset) {
  return LLVMBuildIntToPtr(B(tg), tile_gpu_param_i64(tg, offset), tg->global_ptr, "");
}
LLVMValueRef tile_gpu_block_index(tile_gpu *tg) {
  return LLVMBuildZExt(B(tg), cuda_ir_block_index(&tg->ir), tg->tb.i64, "");
}
LLVMValueRef tile_gpu_block_index_opaque(tile_gpu *tg) {
  return LLVMBuildZExt(B(tg), cuda_ir_opaque(&tg->ir, cuda_ir_block_index(&tg->ir)), tg->tb.i64, "");
}
LLVMValueRef tile_gpu_lg2(tile_gpu *tg, LLVMValueRef x) { return cuda_ir_lg2(&tg->ir, x); }
LLVMValueRef tile_gpu_exp2(tile_gpu *tg, LLVMValueRef x) { return cuda_ir_ex2(&tg->ir, x); }

void tile_gpu_store_element(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index, LLVMValueRef value) {
  LLVMValueRef narrow = LLVMBuildFPTrunc(B(tg), value, operand_type(tg), "");
  LLVMBuildStore(B(tg), LLVMBuildBitCast(B(tg), narrow, tg->tb.i16, ""), tile_gpu_element_address(tg, base, index));
}

LLVMValueRef tile_gpu_divide(tile_gpu *tg, LLVMValueRef n, LLVMValueRef magic, LLVMValueRef shift) {
  LLVMBuilderRef b = B(tg);
  LLVMValueRef product = LLVMBuildMul(b, LLVMBuildZExt(b, n, tg->tb.i64, ""), LLVMBuildZExt(b, magic, tg->tb.i64, ""), "");
  LLVMValueRef high = LLVMBuildTrunc(b, LLVMBuildLShr(b, product, tile_i64(&tg->tb, 32), ""), tg->tb.i32, "");
  /* high <= n < 2^31: the sum fits in 32 bits */
  return LLVMBuildLShr(b, LLVMBuildNUWAdd(b, high, n, ""), shift, "");
}

/* ---- global -> shared ------------------------------------------------------------------------------ */

/* The vector copies' element size: 2-byte elements, or an fp8 view's 1-byte ones; 16-byte cp.async of
 * either needs 16-byte aligned rows. */
static LLVMValueRef stride_bytes(tile_gpu *tg, LLVMValueRef elements, int fp8) {
  return fp8 ? elements : LLVMBuildShl(B(tg), elements, tile_i64(&tg->tb, 1), "");
}
/* bytes (i64) a multiple of alignment */
static LLVMValueRef copy_aligned(tile_gpu *tg, LLVMValueRef bytes, int alignment) {
  LLVMBuilderRef b = B(tg);
  return LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildAnd(b, bytes, tile_i64(&tg->tb, alignment - 1), ""),
                       tile_i64(&tg->tb, 0), "");
}

/* A view's vector copies need every row start aligned (the base address and the row stride, in bytes,
 * both multiples of the alignment) and contiguous columns. */
static LLVMValueRef rows_vector_ok(tile_gpu *tg, const tile_gpu_global *view, int fp8, int alignment) {
  LLVMBuilderRef b = B(tg);
  LLVMValueRef address = LLVMBuildPtrToInt(b, view->base, tg->tb.i64, "");
  LLVMValueRef aligned =
      copy_aligned(tg, LLVMBuildOr(b, address, stride_bytes(tg, view->row_stride, fp8), ""), alignment);
  LLVMValueRef unit = LLVMBuildICmp(b, LLVMIntEQ, view->col_stride, tile_i64(&tg->tb, 1), "");
  return LLVMBuildAnd(b, aligned, unit, fp8 ? "fp8_async_ok" : "vector_ok");
}

void tile_gpu_global_init(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef base, LLVMValueRef row_stride,
                          LLVMValueRef col_stride, LLVMValueRef rows, int cols, int allow_vector) {
  view->base = base;
  view->row_stride = row_stride;
  view->col_stride = col_stride;
  view->rows = rows;
  view->cols = cols;
  view->vector_ok = NULL;
  view->group = view->group_stride = view->group_magic = view->group_shift = NULL;
  view->page_size = 0;
  view->table = view->table_stride = view->page_stride = view->pages = NULL;
  view->f32 = 0;
  view->fp8_async_ok = NULL;
  if (!allow_vector) return;
  view->vector_ok = rows_vector_ok(tg, view, 0, 16);
}

void tile_gpu_global_fp8(tile_gpu *tg, tile_gpu_global *view, int contiguous) {
  view->vector_ok = NULL;  /* staged raw by tile_gpu_copy_fp8_raw, never tile_gpu_copy */
  view->fp8_async_ok = contiguous ? rows_vector_ok(tg, view, 1, 16) : NULL;
}

/* The vector copies of a view whose rows also step by `stride` elements: only where that step keeps
 * every row start 16-byte aligned. */
static void vector_ok_needs_aligned(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef stride) {
  LLVMBuilderRef b = B(tg);
  if (view->vector_ok != NULL)
    view->vector_ok = LLVMBuildAnd(b, view->vector_ok, copy_aligned(tg, stride_bytes(tg, stride, 0), 16), "vector_ok");
  if (view->fp8_async_ok != NULL)
    view->fp8_async_ok =
        LLVMBuildAnd(b, view->fp8_async_ok, copy_aligned(tg, stride_bytes(tg, stride, 1), 16), "fp8_async_ok");
}

void tile_gpu_global_group_rows(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef group, LLVMValueRef group_stride,
                                LLVMValueRef magic, LLVMValueRef shift) {
  view->group = group;
  view->group_stride = group_stride;
  view->group_magic = magic;
  view->group_shift = shift;
  vector_ok_needs_aligned(tg, view, group_stride);  /* the rows inside a group */
}

void tile_gpu_global_page_rows(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef table, LLVMValueRef table_stride,
                               int page_size, LLVMValueRef page_stride, LLVMValueRef pages) {
  view->page_size = page_size;
  view->table = table;
  view->table_stride = table_stride;
  view->page_stride = page_stride;
  view->pages = pages;
  vector_ok_needs_aligned(tg, view, page_stride);  /* every page's start */
}

/* A paged view's row: its page from the table (an entry out of range reads page 0, so that no address
 * leaves the pool), then its row inside the page. */
static LLVMValueRef paged_row_offset(tile_gpu *tg, const tile_gpu_global *view, LLVMValueRef row) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  row = LLVMBuildSelect(b, tile_lt(tb, row, view->rows), row, tile_i64(tb, 0), "");
  LLVMValueRef page_size = tile_i64(tb, view->page_size);
  LLVMValueRef at = LLVMBuildMul(b, LLVMBuildUDiv(b, row, page_size, ""), view->table_stride, "");
  LLVMValueRef page = LLVMBuildLoad2(b, tb->i32, LLVMBuildGEP2(b, tb->i32, view->table, &at, 1, ""), "page");
  page = LLVMBuildSExt(b, page, tb->i64, "");
  /* one unsigned compare against the parameter: a negative entry is a large unsigned one */
  page = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntULT, page, view->pages, ""), page, tile_i64(tb, 0), "");
  return LLVMBuildAdd(b, LLVMBuildMul(b, page, view->page_stride, ""),
                      LLVMBuildMul(b, LLVMBuildURem(b, row, page_size, ""), view->row_stride, ""), "");
}

/* Elements from the view's base to the start of row `row` (i64, below 2^31 when grouped). */
static LLVMValueRef row_offset(tile_gpu *tg, const tile_gpu_global *view, LLVMValueRef row) {
  LLVMBuilderRef b = B(tg);
  if (view->page_size > 0) return paged_row_offset(tg, view, row);
  if (view->group == NULL) return LLVMBuildMul(b, row, view->row_stride, "");
  LLVMValueRef row32 = LLVMBuildTrunc(b, row, tg->tb.i32, "");
  LLVMValueRef outer = tile_gpu_divide(tg, row32, view->group_magic, view->group_shift);
  LLVMValueRef inner = LLVMBuildSub(b, row32, LLVMBuildMul(b, outer, view->group, ""), "");
  return LLVMBuildAdd(b, LLVMBuildMul(b, LLVMBuildZExt(b, outer, tg->tb.i64, ""), view->row_stride, ""),
                      LLVMBuildMul(b, LLVMBuildZExt(b, inner, tg->tb.i64, ""), view->group_stride, ""), "");
}

/* The pieces of a rows x per_row grid shared out over the block's threads: the piece in place i (row
 * i / per_row, place i % per_row of the row) goes to thread i % threads, so consecutive threads take
 * consecutive places. Calls visit for each of this thread's pieces, in passes of `threads` (the last
 * one guarded where partial), with the row, the piece's column and its place. The grid is laid out as
 * `swizzled` is (NULL: column = place): a swizzled tile's place holds the column the swizzle puts
 * there, so that consecutive threads write consecutive 16 bytes of it, 8 of them (a phase of a
 * 16-byte store or cp.async) on 8 different bank groups whatever the row pitch (one row's columns
 * permuted in any order read the same global sectors). */
typedef void (*piece_visit)(tile_gpu *tg, LLVMValueRef row, LLVMValueRef column, LLVMValueRef place,
                            const void *state);

static void for_each_piece(tile_gpu *tg, int rows, int per_row, const tile_gpu_shared *swizzled, piece_visit visit,
                           const void *state) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  int threads = tg->warps * 32, total = rows * per_row;
  for (int start = 0; start < total; start += threads) {
    LLVMValueRef i = LLVMBuildAdd(b, tg->thread, tile_gpu_i32(tg, start), "");
    tile_if partial;
    int guarded = start + threads > total;
    if (guarded) tile_if_begin(tb, &partial, LLVMBuildICmp(b, LLVMIntULT, i, tile_gpu_i32(tg, total), ""));
    LLVMValueRef row = LLVMBuildUDiv(b, i, tile_gpu_i32(tg, per_row), "");
    LLVMValueRef place = LLVMBuildURem(b, i, tile_gpu_i32(tg, per_row), "");
    /* the swizzle is an xor within each group of a row: its own inverse */
    LLVMValueRef column = swizzled ? swizzle_ir(tg, row, place, per_row, swizzled->swizzle) : place;
    visit(tg, row, column, place, state);
    if (guarded) tile_if_end(tb, &partial);
  }
}

/* One pass over the tile's chunks (for_each_piece), asynchronous (cp.async) or not: consecutive threads
 * read consecutive 16 bytes. */
typedef struct copy_pass {
  const tile_gpu_shared *dst;
  const tile_gpu_global *src;
  LLVMValueRef first_row;
  int asynchronous;
} copy_pass;

static void copy_chunk(tile_gpu *tg, LLVMValueRef row, LLVMValueRef chunk, LLVMValueRef place, const void *state) {
  const copy_pass *pass = state;
  const tile_gpu_shared *dst = pass->dst;
  const tile_gpu_global *src = pass->src;
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  LLVMValueRef global_row = LLVMBuildAdd(b, pass->first_row, LLVMBuildZExt(b, row, tb->i64, ""), "");
  LLVMValueRef valid = LLVMBuildAnd(b, tile_lt(tb, global_row, src->rows),
                                    LLVMBuildICmp(b, LLVMIntULT, chunk, tile_gpu_i32(tg, src->cols / 8), ""), "");
  LLVMValueRef column = LLVMBuildZExt(b, LLVMBuildShl(b, chunk, tile_gpu_i32(tg, 3), ""), tb->i64, "");
  LLVMValueRef index = LLVMBuildAdd(b, row_offset(tg, src, global_row), LLVMBuildMul(b, column, src->col_stride, ""), "");
  /* A missing row or column still gets an address inside the tensor (element 0): nothing is read
   * from it, but no address is ever formed outside the caller's buffer. */
  index = LLVMBuildSelect(b, valid, index, tile_i64(tb, 0), "");
  /* asynchronous passes go in the tile's order (place: where the chunk is stored), the others in the
   * rows' (copy_chunks) */
  LLVMValueRef to = shared_address(tg, pass->asynchronous ? slot_offset(tg, dst, row, place)
                                                          : chunk_offset(tg, dst, row, chunk));
  if (pass->asynchronous) {
    LLVMValueRef bytes = LLVMBuildSelect(b, valid, tile_gpu_i32(tg, 16), tile_gpu_i32(tg, 0), "");
    cuda_ir_cp_async_16(&tg->ir, to, tile_gpu_element_address(tg, src->base, index), bytes);
    return;
  }
  LLVMTypeRef v8 = LLVMVectorType(tb->i16, 8);
  LLVMValueRef packed = LLVMGetPoison(v8);
  for (int e = 0; e < 8; e++) {
    LLVMValueRef at = LLVMBuildAdd(b, index, LLVMBuildMul(b, tile_i64(tb, e), src->col_stride, ""), "");
    LLVMValueRef x = LLVMBuildLoad2(b, tb->i16, tile_gpu_element_address(tg, src->base, at), "");
    x = LLVMBuildSelect(b, valid, x, LLVMConstInt(tb->i16, 0, 0), "");
    packed = LLVMBuildInsertElement(b, packed, x, tile_gpu_i32(tg, e), "");
  }
  LLVMSetAlignment(LLVMBuildStore(b, packed, to), 16);
}

static void copy_chunks(tile_gpu *tg, const tile_gpu_shared *dst, const tile_gpu_global *src,
                        LLVMValueRef first_row, int asynchronous) {
  copy_pass pass = {dst, src, first_row, asynchronous};
  /* cp.async in the swizzled tile's order; the synchronous path (strided or misaligned rows, already
   * slow by 8 loads a chunk) in the rows' order, whose simpler addresses its register budget counts on */
  for_each_piece(tg, dst->rows, dst->cols / 8, asynchronous ? dst : NULL, copy_chunk, &pass);
}

/* The threads one row of chunks takes in copy_whole_rows: chunks_per_row rounded up to a power of two
 * (at most 32), so that it divides the block's threads; the lanes past the row's end idle. */
static int lanes_per_row(const tile_gpu_shared *dst) {
  int lanes = 1;
  while (lanes < dst->cols / 8) lanes *= 2;
  return lanes;
}

/* Whether copy_whole_rows can move dst: no pass is partial, no column is padding, and rows are evenly
 * spaced (not grouped, not paged). */
static int whole_rows_fit(const tile_gpu *tg, const tile_gpu_shared *dst, const tile_gpu_global *src) {
  int threads = tg->warps * 32, lanes = lanes_per_row(dst);
  return src->cols == dst->cols && lanes <= 32 && (dst->rows * lanes) % threads == 0 && src->group == NULL &&
         src->page_size == 0;
}

/* copy_chunks' asynchronous pass for a tile whose rows all exist: a thread keeps one chunk column
 * and its first row in every pass, so its source address only steps by a row stride times the rows
 * per pass and its destination by a constant; no bounds, no selects. */
static void copy_whole_rows(tile_gpu *tg, const tile_gpu_shared *dst, const tile_gpu_global *src,
                            LLVMValueRef first_row) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  int chunks_per_row = dst->cols / 8, threads = tg->warps * 32, lanes = lanes_per_row(dst);
  int rows_per_pass = threads / lanes;
  LLVMValueRef row = LLVMBuildUDiv(b, tg->thread, tile_gpu_i32(tg, lanes), "");
  LLVMValueRef chunk = LLVMBuildURem(b, tg->thread, tile_gpu_i32(tg, lanes), "");
  tile_if in_row;
  if (lanes != chunks_per_row)
    tile_if_begin(tb, &in_row, LLVMBuildICmp(b, LLVMIntULT, chunk, tile_gpu_i32(tg, chunks_per_row), ""));
  LLVMValueRef global_row = LLVMBuildAdd(b, first_row, LLVMBuildZExt(b, row, tb->i64, ""), "");
  LLVMValueRef column = LLVMBuildZExt(b, LLVMBuildShl(b, chunk, tile_gpu_i32(tg, 3), ""), tb->i64, "");
  LLVMValueRef index = LLVMBuildAdd(b, LLVMBuildMul(b, global_row, src->row_stride, ""), column, "");
  LLVMValueRef from = tile_gpu_element_address(tg, src->base, index);
  /* bytes from one pass's source row to the next */
  LLVMValueRef step = LLVMBuildMul(b, src->row_stride, tile_i64(tb, 2 * rows_per_pass), "");
  LLVMValueRef sixteen = tile_gpu_i32(tg, 16);
  for (int pass = 0; pass * rows_per_pass < dst->rows; pass++) {
    if (pass > 0) from = LLVMBuildGEP2(b, LLVMInt8TypeInContext(tb->ctx), from, &step, 1, "");
    LLVMValueRef pass_row = LLVMBuildAdd(b, row, tile_gpu_i32(tg, pass * rows_per_pass), "");
    LLVMValueRef to = shared_address(tg, chunk_offset(tg, dst, pass_row, chunk));
    cuda_ir_cp_async_16(&tg->ir, to, from, sixteen);
  }
  if (lanes != chunks_per_row) tile_if_end(tb, &in_row);
}

void tile_gpu_copy(tile_gpu *tg, const tile_gpu_shared *dst, const tile_gpu_global *src, LLVMValueRef first_row) {
  if (!src->vector_ok) {
    copy_chunks(tg, dst, src, first_row, 0);
    return;
  }
  tile_builder *tb = &tg->tb;
  LLVMBasicBlockRef fast = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "copy.async");
  LLVMBasicBlockRef slow = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "copy.sync");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "copy.done");
  LLVMBuildCondBr(B(tg), src->vector_ok, fast, slow);
  LLVMPositionBuilderAtEnd(B(tg), fast);
  if (whole_rows_fit(tg, dst, src)) {
    /* Every tile but a sequence's last is whole: it takes the short path (a uniform branch). */
    LLVMValueRef end = tile_add(tb, first_row, tile_i64(tb, dst->rows));
    LLVMBasicBlockRef whole = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "copy.whole");
    LLVMBasicBlockRef partial = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "copy.edge");
    LLVMBuildCondBr(B(tg), tile_lt(tb, src->rows, end), partial, whole);
    LLVMPositionBuilderAtEnd(B(tg), whole);
    copy_whole_rows(tg, dst, src, first_row);
    LLVMBuildBr(B(tg), done);
    LLVMPositionBuilderAtEnd(B(tg), partial);
  }
  copy_chunks(tg, dst, src, first_row, 1);
  LLVMBuildBr(B(tg), done);
  LLVMPositionBuilderAtEnd(B(tg), slow);
  copy_chunks(tg, dst, src, first_row, 0);
  LLVMBuildBr(B(tg), done);
  LLVMPositionBuilderAtEnd(B(tg), done);
}

/* ---- fp8 tiles staged raw, then widened in shared memory ---- */

/* A staging tile's byte offset of element (row, column): one byte an element, rows `cols` bytes apart.
 * column is where the bytes are stored: see staging_slot. */
static LLVMValueRef staging_offset(tile_gpu *tg, const tile_gpu_shared *staging, LLVMValueRef row, LLVMValueRef column) {
  LLVMBuilderRef b = B(tg);
  return LLVMBuildAdd(b, staging->offset,
                      LLVMBuildAdd(b, LLVMBuildMul(b, row, tile_gpu_i32(tg, staging->cols), ""), column, ""), "");
}

/* Where a swizzled staging tile keeps the 8 raw bytes of operand chunk `chunk` of row `row` (an i32 slot of
 * 8 bytes; its own inverse): the operand tile's swizzle with the lowest bit of each mask cleared, so
 * that a chunk pair (one 16-byte cp.async) stays whole and in order, while the chunk the widening writes
 * at place j is read from slot j or its pair's other half: 16 lanes of 8-byte reads cover the same 128
 * bytes as in order, with no bank conflict, whatever the row pitch. Unswizzled: the chunk itself. */
static LLVMValueRef staging_slot(tile_gpu *tg, const tile_gpu_shared *staging, LLVMValueRef row, LLVMValueRef chunk) {
  return swizzle_ir_keeping(tg, row, chunk, staging->cols / 8, staging->swizzle, ~1);
}

/* One piece of `piece` bytes (16: cp.async; 8: byte loads) of the staging tile, for_each_piece's: the
 * thread fills the piece-th `piece` bytes of its row in the order they are stored, with the raw bytes of
 * the chunks staging_slot puts there. */
typedef struct raw_pass {
  const tile_gpu_shared *staging;
  const tile_gpu_global *src;
  LLVMValueRef first_row;
  int piece;
} raw_pass;

static void copy_raw_piece(tile_gpu *tg, LLVMValueRef row, LLVMValueRef piece_index, LLVMValueRef place,
                           const void *state) {
  (void)place;  /* the staging tile's order is staging_slot's, for_each_piece's rows and places */
  const raw_pass *pass = state;
  const tile_gpu_global *src = pass->src;
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  LLVMTypeRef i8 = LLVMInt8TypeInContext(tb->ctx);
  int piece = pass->piece;
  LLVMValueRef stored = LLVMBuildMul(b, piece_index, tile_gpu_i32(tg, piece), "");
  LLVMValueRef first_chunk = staging_slot(tg, pass->staging, row, LLVMBuildLShr(b, stored, tile_gpu_i32(tg, 3), ""));
  LLVMValueRef column = LLVMBuildShl(b, first_chunk, tile_gpu_i32(tg, 3), "");
  LLVMValueRef global_row = LLVMBuildAdd(b, pass->first_row, LLVMBuildZExt(b, row, tb->i64, ""), "");
  /* the piece's bytes that exist: all, the head dim's last 8 (a dim of 8 mod 16), or none */
  LLVMValueRef left = LLVMBuildSub(b, tile_gpu_i32(tg, src->cols), column, "");
  LLVMValueRef bytes = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, left, tile_gpu_i32(tg, piece), ""), left,
                                       tile_gpu_i32(tg, piece), "");
  bytes = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGT, bytes, tile_gpu_i32(tg, 0), ""), bytes, tile_gpu_i32(tg, 0), "");
  bytes = LLVMBuildSelect(b, tile_lt(tb, global_row, src->rows), bytes, tile_gpu_i32(tg, 0), "");
  LLVMValueRef valid = LLVMBuildICmp(b, LLVMIntSGT, bytes, tile_gpu_i32(tg, 0), "");
  LLVMValueRef index = LLVMBuildAdd(b, row_offset(tg, src, global_row),
                                    LLVMBuildMul(b, LLVMBuildZExt(b, column, tb->i64, ""), src->col_stride, ""), "");
  /* a missing piece still points inside the tensor (element 0): nothing is read from it */
  index = LLVMBuildSelect(b, valid, index, tile_i64(tb, 0), "");
  LLVMValueRef to = shared_address(tg, staging_offset(tg, pass->staging, row, stored));
  if (piece == 16) {
    cuda_ir_cp_async_16(&tg->ir, to, tile_gpu_fp8_element_address(tg, src->base, index), bytes);
    return;
  }
  LLVMValueRef packed = LLVMGetPoison(LLVMVectorType(i8, 8));
  for (int e = 0; e < 8; e++) {
    LLVMValueRef at = LLVMBuildAdd(b, index, LLVMBuildMul(b, tile_i64(tb, e), src->col_stride, ""), "");
    LLVMValueRef x = LLVMBuildLoad2(b, i8, tile_gpu_fp8_element_address(tg, src->base, at), "");
    x = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, tile_gpu_i32(tg, e), bytes, ""), x, LLVMConstInt(i8, 0, 0), "");
    packed = LLVMBuildInsertElement(b, packed, x, tile_gpu_i32(tg, e), "");
  }
  LLVMSetAlignment(LLVMBuildStore(b, packed, to), 8);
}

static void copy_fp8_raw_pieces(tile_gpu *tg, const tile_gpu_shared *staging, const tile_gpu_global *src,
                                LLVMValueRef first_row, int piece) {
  raw_pass pass = {staging, src, first_row, piece};
  for_each_piece(tg, staging->rows, staging->cols / piece, NULL, copy_raw_piece, &pass);
}

void tile_gpu_copy_fp8_raw(tile_gpu *tg, const tile_gpu_shared *staging, const tile_gpu_global *src,
                           LLVMValueRef first_row) {
  if (src->fp8_async_ok == NULL) {
    copy_fp8_raw_pieces(tg, staging, src, first_row, 8);
    return;
  }
  tile_builder *tb = &tg->tb;
  LLVMBasicBlockRef fast = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "stage.async");
  LLVMBasicBlockRef slow = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "stage.sync");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "stage.done");
  LLVMBuildCondBr(B(tg), src->fp8_async_ok, fast, slow);  /* uniform: the same for every thread */
  LLVMPositionBuilderAtEnd(B(tg), fast);
  copy_fp8_raw_pieces(tg, staging, src, first_row, 16);
  LLVMBuildBr(B(tg), done);
  LLVMPositionBuilderAtEnd(B(tg), slow);
  copy_fp8_raw_pieces(tg, staging, src, first_row, 8);
  LLVMBuildBr(B(tg), done);
  LLVMPositionBuilderAtEnd(B(tg), done);
}

/* One 8-element chunk widened from the staging tile into the operand tile, for_each_piece's. */
typedef struct widen_pass {
  const tile_gpu_shared *dst, *staging;
  dtype_id fp8;
} widen_pass;

static void widen_chunk(tile_gpu *tg, LLVMValueRef row, LLVMValueRef chunk, LLVMValueRef place, const void *state) {
  const widen_pass *pass = state;
  LLVMBuilderRef b = B(tg);
  LLVMValueRef stored = LLVMBuildShl(b, staging_slot(tg, pass->staging, row, chunk), tile_gpu_i32(tg, 3), "");
  LLVMValueRef bytes = LLVMBuildLoad2(b, LLVMVectorType(LLVMInt8TypeInContext(tg->tb.ctx), 8),
                                      shared_address(tg, staging_offset(tg, pass->staging, row, stored)), "");
  LLVMSetAlignment(bytes, 8);
  LLVMValueRef packed = LLVMGetPoison(LLVMVectorType(tg->tb.i16, 8));
  for (int e = 0; e < 8; e++) {
    LLVMValueRef x = LLVMBuildExtractElement(b, bytes, tile_gpu_i32(tg, e), "");
    packed = LLVMBuildInsertElement(b, packed, fp8_to_operand_bits(tg, x, pass->fp8), tile_gpu_i32(tg, e), "");
  }
  LLVMSetAlignment(LLVMBuildStore(b, packed, shared_address(tg, slot_offset(tg, pass->dst, row, place))), 16);
}

void tile_gpu_convert_fp8(tile_gpu *tg, const tile_gpu_shared *dst, const tile_gpu_shared *staging, dtype_id fp8) {
  widen_pass pass = {dst, staging, fp8};
  for_each_piece(tg, dst->rows, dst->cols / 8, dst, widen_chunk, &pass);
}

void tile_gpu_commit(tile_gpu *tg) { cuda_ir_cp_async_commit(&tg->ir); }
void tile_gpu_wait(tile_gpu *tg, int pending) { cuda_ir_cp_async_wait(&tg->ir, pending); }
void tile_gpu_sync(tile_gpu *tg) { cuda_ir_barrier(&tg->ir); }

/* ---- accumulators and rows ---------------------------------------------------------------------- */

static int acc_count(const tile_gpu_acc *acc) { return acc->m_tiles * acc->n_tiles * 4; }

void tile_gpu_acc_init(tile_gpu *tg, tile_gpu_acc *acc, int m_tiles, int n_tiles, float value) {
  acc->m_tiles = m_tiles;
  acc->n_tiles = n_tiles;
  for (int i = 0; i < acc_count(acc); i++) {
    acc->v[i] = tile_f32(&tg->tb, value);
    acc->slot[i] = NULL;
  }
}
void tile_gpu_acc_make_var(tile_gpu *tg, tile_gpu_acc *acc) {
  for (int i = 0; i < acc_count(acc); i++) acc->slot[i] = tile_var(&tg->tb, tg->tb.f32, acc->v[i], "acc");
}
void tile_gpu_acc_load(tile_gpu *tg, tile_gpu_acc *acc) {
  for (int i = 0; i < acc_count(acc); i++) acc->v[i] = tile_get(&tg->tb, acc->slot[i]);
}
void tile_gpu_acc_store(tile_gpu *tg, tile_gpu_acc *acc) {
  for (int i = 0; i < acc_count(acc); i++) tile_set(&tg->tb, acc->slot[i], acc->v[i]);
}

void tile_gpu_rows_init(tile_gpu *tg, tile_gpu_rows *rows, int m_tiles, LLVMValueRef value) {
  (void)tg;
  rows->m_tiles = m_tiles;
  for (int i = 0; i < 2 * m_tiles; i++) {
    rows->v[i] = value;
    rows->slot[i] = NULL;
  }
}
void tile_gpu_rows_make_var(tile_gpu *tg, tile_gpu_rows *rows) {
  for (int i = 0; i < 2 * rows->m_tiles; i++)
    rows->slot[i] = tile_var(&tg->tb, LLVMTypeOf(rows->v[i]), rows->v[i], "row");
}
void tile_gpu_rows_load(tile_gpu *tg, tile_gpu_rows *rows) {
  for (int i = 0; i < 2 * rows->m_tiles; i++) rows->v[i] = tile_get(&tg->tb, rows->slot[i]);
}
void tile_gpu_rows_store(tile_gpu *tg, tile_gpu_rows *rows) {
  for (int i = 0; i < 2 * rows->m_tiles; i++) tile_set(&tg->tb, rows->slot[i], rows->v[i]);
}

void tile_gpu_rows_index(tile_gpu *tg, tile_gpu_rows *out, int m_tiles, LLVMValueRef warp_row0) {
  LLVMBuilderRef b = B(tg);
  out->m_tiles = m_tiles;
  LLVMValueRef group = LLVMBuildZExt(b, tg->group_row, tg->tb.i64, "");
  for (int m = 0; m < m_tiles; m++)
    for (int h = 0; h < 2; h++) {
      out->v[2 * m + h] = LLVMBuildAdd(b, warp_row0, LLVMBuildAdd(b, group, tile_i64(&tg->tb, m * 16 + h * 8), ""), "");
      out->slot[2 * m + h] = NULL;
    }
}

/* ---- dot ---------------------------------------------------------------------------------------------- */

/* One ldmatrix.x4 of the 16 x 16 block at (row0 + row, chunk) of t, for the lane pattern `kind`.
 * row0 + row is a multiple of 8 (blocks are 16-row aligned) and chunk is even. */
static void ldmatrix_block(tile_gpu *tg, const tile_gpu_shared *t, LLVMValueRef row0, int row, int chunk,
                           int kind, int transpose, LLVMValueRef out[4]) {
  LLVMBuilderRef b = B(tg);
  int row_bytes = row_bytes_of(t), chunks_per_row = t->cols / 8;
  LLVMValueRef offset;
  if (t->swizzle) {
    /* Inside its swizzle group a row's chunks are permuted by an xor with a mask of the row (the
     * place the rule gives the group's first chunk). The lane's row is ld_row mod 8, and ld_chunk (0
     * or 1) and chunk - base (even) share no bit, so the lane's chunk is base + ((ld_chunk ^ mask) ^
     * (chunk - base)): a per-lane value xor'ed with a constant, one or two instructions per distinct
     * chunk instead of the swizzle worked out for every ldmatrix. */
    int base = tile_gpu_swizzle_group(chunk, chunks_per_row);
    LLVMValueRef lane_row = LLVMBuildAnd(b, tg->lane, tile_gpu_i32(tg, 7), "");
    LLVMValueRef mask = LLVMBuildSub(b, swizzle_ir(tg, lane_row, tile_gpu_i32(tg, base), chunks_per_row, 1),
                                     tile_gpu_i32(tg, base), "");
    LLVMValueRef lane_chunk = LLVMBuildXor(b, tg->ld_chunk[kind], mask, "");
    LLVMValueRef lane_row_bytes = LLVMBuildMul(b, tg->ld_row[kind], tile_gpu_i32(tg, row_bytes), "");
    LLVMValueRef lane_part;
    if (row_bytes % 128 == 0)  /* chunk bits (4..6) and row bits apart: the xor applies to the sum */
      lane_part = LLVMBuildXor(b, LLVMBuildOr(b, lane_row_bytes, LLVMBuildShl(b, lane_chunk, tile_gpu_i32(tg, 4), ""), ""),
                               tile_gpu_i32(tg, (chunk - base) * 16), "");
    else
      lane_part = LLVMBuildAdd(b, lane_row_bytes,
                               LLVMBuildShl(b, LLVMBuildXor(b, lane_chunk, tile_gpu_i32(tg, chunk - base), ""),
                                            tile_gpu_i32(tg, 4), ""), "");
    LLVMValueRef block = LLVMBuildAdd(b, t->offset, LLVMBuildMul(b, row0, tile_gpu_i32(tg, row_bytes), ""), "");
    offset = LLVMBuildAdd(b, LLVMBuildAdd(b, lane_part, block, ""), tile_gpu_i32(tg, row * row_bytes + base * 16), "");
  } else {
    LLVMValueRef r = LLVMBuildAdd(b, row0, LLVMBuildAdd(b, tg->ld_row[kind], tile_gpu_i32(tg, row), ""), "");
    LLVMValueRef c = LLVMBuildAdd(b, tg->ld_chunk[kind], tile_gpu_i32(tg, chunk), "");
    offset = chunk_offset(tg, t, r, c);
  }
  cuda_ir_ldmatrix_x4(&tg->ir, shared_address(tg, offset), transpose, out);
}

static LLVMValueRef row0_i32(tile_gpu *tg, LLVMValueRef row0) {
  if (!row0) return tile_gpu_i32(tg, 0);
  return LLVMTypeOf(row0) == tg->tb.i32 ? row0 : LLVMBuildTrunc(B(tg), row0, tg->tb.i32, "");
}

void tile_gpu_load_a(tile_gpu *tg, tile_gpu_afrag *out, const tile_gpu_shared *src, LLVMValueRef row0,
                     int m_tiles) {
  out->m_tiles = m_tiles;
  out->k_steps = src->cols / 16;
  LLVMValueRef r0 = row0_i32(tg, row0);
  for (int m = 0; m < m_tiles; m++)
    for (int k = 0; k < out->k_steps; k++)
      ldmatrix_block(tg, src, r0, m * 16, 2 * k, TILE_GPU_LD_A, 0, &out->v[(m * out->k_steps + k) * 4]);
}

void tile_gpu_dot(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_afrag *a, const tile_gpu_shared *a_shared,
                  LLVMValueRef a_row0, const tile_gpu_shared *b_shared, int b_n_major, int k_steps) {
  LLVMValueRef a_r0 = a ? NULL : row0_i32(tg, a_row0);
  LLVMValueRef zero = tile_gpu_i32(tg, 0);
  for (int k = 0; k < k_steps; k++) {
    LLVMValueRef a_regs[TILE_GPU_MAX_M_TILES][4];
    for (int m = 0; m < acc->m_tiles; m++) {
      if (a)
        memcpy(a_regs[m], &a->v[(m * a->k_steps + k) * 4], sizeof a_regs[m]);
      else
        ldmatrix_block(tg, a_shared, a_r0, m * 16, 2 * k, TILE_GPU_LD_A, 0, a_regs[m]);
    }
    for (int n = 0; n < acc->n_tiles; n += 2) {
      LLVMValueRef b_regs[4];
      if (b_n_major)  /* rows n, chunks k: plain ldmatrix gives the "col" B fragment */
        ldmatrix_block(tg, b_shared, zero, n * 8, 2 * k, TILE_GPU_LD_B, 0, b_regs);
      else            /* rows k, chunks n: .trans turns k-major rows into the same fragment */
        ldmatrix_block(tg, b_shared, zero, k * 16, n, TILE_GPU_LD_A, 1, b_regs);
      for (int m = 0; m < acc->m_tiles; m++)
        for (int half = 0; half < 2; half++) {
          LLVMValueRef *c = &acc->v[(m * acc->n_tiles + n + half) * 4];
          LLVMValueRef d[4];
          cuda_ir_mma_m16n8k16(&tg->ir, tg->bf16, a_regs[m], &b_regs[2 * half], c, d);
          memcpy(c, d, sizeof d);
        }
    }
  }
}

void tile_gpu_acc_to_a(tile_gpu *tg, const tile_gpu_acc *acc, tile_gpu_afrag *out) {
  out->m_tiles = acc->m_tiles;
  out->k_steps = acc->n_tiles / 2;
  for (int m = 0; m < acc->m_tiles; m++)
    for (int k = 0; k < out->k_steps; k++)
      for (int r = 0; r < 4; r++) {
        /* a_r holds row (r & 1) * 8 + lane/4, k 8 * (r >> 1) + 2 (lane % 4) + {0, 1}: accumulator
         * registers 2 (r & 1) and 2 (r & 1) + 1 of n-tile 2k + (r >> 1). */
        const LLVMValueRef *c = &acc->v[(m * acc->n_tiles + 2 * k + (r >> 1)) * 4 + 2 * (r & 1)];
        out->v[(m * out->k_steps + k) * 4 + r] = cuda_ir_pack2(&tg->ir, tg->bf16, c[0], c[1]);
      }
}

/* ---- elementwise and rows ------------------------------------------------------------------------- */

/* Row slot (0 .. 2*m_tiles-1) of element i of an accumulator. */
static int row_of(const tile_gpu_acc *acc, int i) {
  int m = i / 4 / acc->n_tiles, reg = i % 4;
  return 2 * m + reg / 2;
}

/* At the join of a uniform branch whose two ways end in blocks first_end and second_end with acc's
 * values first and second (one way may leave acc as it was: first = acc->v): acc becomes one phi per
 * element. */
static void join_acc(tile_gpu *tg, tile_gpu_acc *acc, const LLVMValueRef *first, LLVMBasicBlockRef first_end,
                     const LLVMValueRef *second, LLVMBasicBlockRef second_end) {
  for (int i = 0; i < acc_count(acc); i++) {
    LLVMValueRef phi = LLVMBuildPhi(B(tg), tg->tb.f32, "");
    LLVMValueRef values[2] = {first[i], second[i]};
    LLVMBasicBlockRef blocks[2] = {first_end, second_end};
    LLVMAddIncoming(phi, values, blocks, 2);
    acc->v[i] = phi;
  }
}

void tile_gpu_scale_rows_unless_one(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_rows *f) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  LLVMValueRef changes = LLVMConstInt(LLVMInt1TypeInContext(tb->ctx), 0, 0);
  for (int r = 0; r < 2 * acc->m_tiles; r++)
    changes = LLVMBuildOr(b, changes, LLVMBuildFCmp(b, LLVMRealUNE, f->v[r], tile_f32(tb, 1.0f), ""), "");
  LLVMBasicBlockRef before = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef scale = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "rescale");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "rescale.done");
  LLVMBuildCondBr(b, cuda_ir_vote_any(&tg->ir, changes), scale, done);
  LLVMPositionBuilderAtEnd(b, scale);
  LLVMValueRef scaled[TILE_GPU_MAX_M_TILES * TILE_GPU_MAX_N_TILES * 4];
  for (int i = 0; i < acc_count(acc); i++) scaled[i] = LLVMBuildFMul(b, acc->v[i], f->v[row_of(acc, i)], "");
  LLVMBuildBr(b, done);
  LLVMPositionBuilderAtEnd(b, done);
  join_acc(tg, acc, acc->v, before, scaled, scale);
}

/* A row's column bound (i64) as the i32 the constant part of a column is compared with: clamped to
 * [-1, width], minus this lane's 2 (lane % 4). */
static LLVMValueRef column_bound(tile_gpu *tg, LLVMValueRef bound, int width) {
  tile_builder *tb = &tg->tb;
  LLVMValueRef v = tile_min(tb, tile_max(tb, bound, tile_i64(tb, -1)), tile_i64(tb, width));
  return LLVMBuildSub(B(tg), LLVMBuildTrunc(B(tg), v, tb->i32, ""), tg->quad_col, "");
}

void tile_gpu_mask_columns(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_rows *first, const tile_gpu_rows *end,
                           LLVMValueRef when, LLVMValueRef fill) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  LLVMBasicBlockRef before = LLVMGetInsertBlock(b), mask = NULL, done = NULL;
  if (when) {
    mask = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "mask");
    done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "mask.done");
    LLVMBuildCondBr(b, when, mask, done);
    LLVMPositionBuilderAtEnd(b, mask);
  }
  /* Column of element (n, reg) is 8n + (reg & 1) + 2 (lane % 4): compare the constant part against
   * end - 2 (lane % 4) and first - 2 (lane % 4), clamped into i32 range first. */
  int width = acc->n_tiles * 8;
  LLVMValueRef limit[2 * TILE_GPU_MAX_M_TILES], start[2 * TILE_GPU_MAX_M_TILES];
  for (int r = 0; r < 2 * acc->m_tiles; r++) {
    limit[r] = column_bound(tg, end->v[r], width);
    if (first != NULL) start[r] = column_bound(tg, first->v[r], width);
  }
  LLVMValueRef masked[TILE_GPU_MAX_M_TILES * TILE_GPU_MAX_N_TILES * 4];
  for (int i = 0; i < acc_count(acc); i++) {
    int n = i / 4 % acc->n_tiles, reg = i % 4;
    LLVMValueRef column = tile_gpu_i32(tg, 8 * n + (reg & 1));
    LLVMValueRef seen = LLVMBuildICmp(b, LLVMIntSLT, column, limit[row_of(acc, i)], "");
    if (first != NULL)
      seen = LLVMBuildAnd(b, seen, LLVMBuildICmp(b, LLVMIntSGE, column, start[row_of(acc, i)], ""), "");
    masked[i] = LLVMBuildSelect(b, seen, acc->v[i], fill, "");
  }
  if (!when) {
    memcpy(acc->v, masked, (size_t)acc_count(acc) * sizeof masked[0]);
    return;
  }
  LLVMBasicBlockRef mask_end = LLVMGetInsertBlock(b);
  LLVMBuildBr(b, done);
  LLVMPositionBuilderAtEnd(b, done);
  join_acc(tg, acc, acc->v, before, masked, mask_end);
}

/* The maximum (or, with minimum, the minimum) of each of this thread's rows across the whole row:
 * this thread's elements, then two butterflies give the four lanes of a quad (which hold the same rows)
 * the row's result. */
static void row_extreme(tile_gpu *tg, const tile_gpu_acc *acc, int minimum, LLVMValueRef out[]) {
  LLVMValueRef (*pick)(tile_gpu *, LLVMValueRef, LLVMValueRef) = minimum ? fmin32 : fmax32;
  for (int r = 0; r < 2 * acc->m_tiles; r++) out[r] = NULL;
  for (int i = 0; i < acc_count(acc); i++) {
    int r = row_of(acc, i);
    out[r] = out[r] ? pick(tg, out[r], acc->v[i]) : acc->v[i];
  }
  for (int r = 0; r < 2 * acc->m_tiles; r++)
    for (int mask = 1; mask <= 2; mask *= 2) out[r] = pick(tg, out[r], cuda_ir_shfl_xor(&tg->ir, out[r], mask));
}

void tile_gpu_row_max_scaled(tile_gpu *tg, const tile_gpu_acc *acc, LLVMValueRef scale, const tile_gpu_rows *init,
                             tile_gpu_rows *out) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  /* A negative scale turns the row's minimum into its scaled maximum; the branch is uniform, so each
   * warp runs one reduction. */
  LLVMBasicBlockRef up = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "rowmax.up");
  LLVMBasicBlockRef down = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "rowmax.down");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "rowmax.done");
  LLVMBuildCondBr(b, LLVMBuildFCmp(b, LLVMRealOLT, scale, tile_f32(tb, 0.0f), ""), down, up);
  LLVMValueRef extreme[2][2 * TILE_GPU_MAX_M_TILES];
  LLVMBasicBlockRef ends[2];
  for (int minimum = 0; minimum < 2; minimum++) {
    LLVMPositionBuilderAtEnd(b, minimum ? down : up);
    row_extreme(tg, acc, minimum, extreme[minimum]);
    ends[minimum] = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, done);
  }
  LLVMPositionBuilderAtEnd(b, done);
  out->m_tiles = acc->m_tiles;
  LLVMValueRef joined[2 * TILE_GPU_MAX_M_TILES];
  for (int r = 0; r < 2 * acc->m_tiles; r++) {  /* the phis first: they head their block */
    joined[r] = LLVMBuildPhi(b, tb->f32, "");
    LLVMValueRef values[2] = {extreme[0][r], extreme[1][r]};
    LLVMAddIncoming(joined[r], values, ends, 2);
  }
  for (int r = 0; r < 2 * acc->m_tiles; r++) {
    LLVMValueRef scaled = LLVMBuildFMul(b, joined[r], scale, "");
    out->v[r] = init ? fmax32(tg, init->v[r], scaled) : scaled;
  }
}

void tile_gpu_exp2_scaled_minus_rows(tile_gpu *tg, tile_gpu_acc *acc, LLVMValueRef scale, const tile_gpu_rows *sub) {
  LLVMValueRef negated[2 * TILE_GPU_MAX_M_TILES];
  for (int r = 0; r < 2 * acc->m_tiles; r++) negated[r] = LLVMBuildFNeg(B(tg), sub->v[r], "");
  for (int i = 0; i < acc_count(acc); i++)
    acc->v[i] = cuda_ir_ex2(&tg->ir, fma32(tg, acc->v[i], scale, negated[row_of(acc, i)]));
}

void tile_gpu_tanh_scaled(tile_gpu *tg, tile_gpu_acc *acc, LLVMValueRef in, LLVMValueRef out) {
  for (int i = 0; i < acc_count(acc); i++)
    acc->v[i] = LLVMBuildFMul(B(tg), out, cuda_ir_tanh(&tg->ir, LLVMBuildFMul(B(tg), in, acc->v[i], "")), "");
}

void tile_gpu_add_distance(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_rows *slope, const tile_gpu_rows *centre) {
  LLVMBuilderRef b = B(tg);
  /* Column of element (n, reg) is 8n + (reg & 1) + 2 (lane % 4): the lane's part comes off each centre once. */
  LLVMValueRef lane_column = LLVMBuildUIToFP(b, tg->quad_col, tg->tb.f32, "");
  LLVMValueRef from_lane[2 * TILE_GPU_MAX_M_TILES];
  for (int r = 0; r < 2 * acc->m_tiles; r++) from_lane[r] = LLVMBuildFSub(b, centre->v[r], lane_column, "");
  for (int i = 0; i < acc_count(acc); i++) {
    int n = i / 4 % acc->n_tiles, reg = i % 4, r = row_of(acc, i);
    LLVMValueRef d = LLVMBuildFSub(b, from_lane[r], tile_f32(&tg->tb, (float)(8 * n + (reg & 1))), "");
    LLVMValueRef negative = LLVMBuildFCmp(b, LLVMRealOLT, d, tile_f32(&tg->tb, 0.0f), "");
    d = LLVMBuildSelect(b, negative, LLVMBuildFNeg(b, d, ""), d, "");
    acc->v[i] = LLVMBuildFAdd(b, acc->v[i], LLVMBuildFMul(b, slope->v[r], d, ""), "");
  }
}

/* One pass of tile_gpu_add_global: out[i] = acc->v[i] + factor * src's element of element i's row (start:
 * its offset) and column (lane_column + its place), the column clamped to last_column unless that is NULL. */
static void add_global_pass(tile_gpu *tg, const tile_gpu_acc *acc, LLVMValueRef *out, const tile_gpu_global *src,
                            const LLVMValueRef *start, LLVMValueRef lane_column, LLVMValueRef last_column,
                            LLVMValueRef factor) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  /* The tensor does not change while the kernel runs: invariant loads may take the read-only data path
   * (ld.global.nc). */
  unsigned invariant = LLVMGetMDKindIDInContext(tb->ctx, "invariant.load", 14);
  LLVMValueRef no_operands = LLVMMetadataAsValue(tb->ctx, LLVMMDNodeInContext2(tb->ctx, NULL, 0));
  for (int i = 0; i < acc_count(acc); i++) {
    int n = i / 4 % acc->n_tiles, reg = i % 4;
    LLVMValueRef column = tile_add(tb, lane_column, tile_i64(tb, 8 * n + (reg & 1)));
    if (last_column != NULL) column = tile_min(tb, column, last_column);
    LLVMValueRef index = tile_add(tb, start[row_of(acc, i)], tile_mul(tb, column, src->col_stride));
    LLVMValueRef value = src->f32 ? LLVMBuildLoad2(b, tb->f32, LLVMBuildGEP2(b, tb->f32, src->base, &index, 1, ""), "bias")
                                  : LLVMBuildLoad2(b, operand_type(tg), tile_gpu_element_address(tg, src->base, index), "bias");
    LLVMSetMetadata(value, invariant, no_operands);
    if (!src->f32) value = LLVMBuildFPExt(b, value, tb->f32, "");
    out[i] = fma32(tg, value, factor, acc->v[i]);
  }
}

void tile_gpu_add_global(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_global *src, LLVMValueRef first_row,
                         LLVMValueRef warp_row0, LLVMValueRef col0, LLVMValueRef cols, LLVMValueRef factor) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  tile_gpu_rows rows;
  tile_gpu_rows_index(tg, &rows, acc->m_tiles, warp_row0);
  LLVMValueRef last_row = tile_sub(tb, src->rows, tile_i64(tb, 1));
  LLVMValueRef start[2 * TILE_GPU_MAX_M_TILES];
  for (int r = 0; r < 2 * acc->m_tiles; r++)
    start[r] = row_offset(tg, src, tile_min(tb, tile_add(tb, first_row, rows.v[r]), last_row));
  /* Column of element (n, reg) is col0 + 8n + (reg & 1) + 2 (lane % 4). A tile whose columns all lie
   * inside (every tile but a row's last) reads them unclamped: with a unit column stride (a constant) each
   * element is then its row's address plus a constant, folded into the load. */
  LLVMValueRef lane_column = tile_add(tb, col0, LLVMBuildZExt(b, tg->quad_col, tb->i64, ""));
  LLVMValueRef inside = LLVMBuildICmp(b, LLVMIntSLE, tile_add(tb, col0, tile_i64(tb, 8 * acc->n_tiles)), cols, "");
  LLVMBasicBlockRef whole = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "bias.whole");
  LLVMBasicBlockRef edge = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "bias.edge");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "bias.done");
  LLVMBuildCondBr(b, inside, whole, edge);
  LLVMValueRef added[2][TILE_GPU_MAX_M_TILES * TILE_GPU_MAX_N_TILES * 4];
  LLVMBasicBlockRef ends[2];
  for (int clamped = 0; clamped < 2; clamped++) {
    LLVMPositionBuilderAtEnd(b, clamped ? edge : whole);
    add_global_pass(tg, acc, added[clamped], src, start, lane_column,
                    clamped ? tile_sub(tb, cols, tile_i64(tb, 1)) : NULL, factor);
    ends[clamped] = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, done);
  }
  LLVMPositionBuilderAtEnd(b, done);
  join_acc(tg, acc, added[0], ends[0], added[1], ends[1]);
}

void tile_gpu_row_sum_partial(tile_gpu *tg, const tile_gpu_acc *acc, tile_gpu_rows *out) {
  out->m_tiles = acc->m_tiles;
  for (int r = 0; r < 2 * acc->m_tiles; r++) {
    out->v[r] = NULL;
  }
  for (int i = 0; i < acc_count(acc); i++) {
    int r = row_of(acc, i);
    out->v[r] = out->v[r] ? LLVMBuildFAdd(B(tg), out->v[r], acc->v[i], "") : acc->v[i];
  }
}

void tile_gpu_rows_reduce_sum(tile_gpu *tg, tile_gpu_rows *rows) {
  for (int r = 0; r < 2 * rows->m_tiles; r++)
    for (int mask = 1; mask <= 2; mask *= 2)
      rows->v[r] = LLVMBuildFAdd(B(tg), rows->v[r], cuda_ir_shfl_xor(&tg->ir, rows->v[r], mask), "");
}

void tile_gpu_rows_binary(tile_gpu *tg, tile_gpu_rows_op op, const tile_gpu_rows *a, const tile_gpu_rows *b,
                          tile_gpu_rows *out) {
  out->m_tiles = a->m_tiles;
  for (int r = 0; r < 2 * a->m_tiles; r++) {
    LLVMValueRef x = a->v[r], y = b->v[r];
    out->v[r] = op == TILE_GPU_ROWS_SUB   ? LLVMBuildFSub(B(tg), x, y, "")
                : op == TILE_GPU_ROWS_MUL ? LLVMBuildFMul(B(tg), x, y, "")
                                          : LLVMBuildFAdd(B(tg), x, y, "");
  }
}

void tile_gpu_rows_exp2(tile_gpu *tg, const tile_gpu_rows *in, tile_gpu_rows *out) {
  out->m_tiles = in->m_tiles;
  for (int r = 0; r < 2 * in->m_tiles; r++) {
    out->v[r] = cuda_ir_ex2(&tg->ir, in->v[r]);
  }
}

void tile_gpu_rows_reciprocal_or_zero(tile_gpu *tg, const tile_gpu_rows *in, tile_gpu_rows *out) {
  out->m_tiles = in->m_tiles;
  for (int r = 0; r < 2 * in->m_tiles; r++) {
    LLVMValueRef positive = LLVMBuildFCmp(B(tg), LLVMRealOGT, in->v[r], tile_f32(&tg->tb, 0.0f), "");
    LLVMValueRef inverse = LLVMBuildFDiv(B(tg), tile_f32(&tg->tb, 1.0f), in->v[r], "");
    out->v[r] = LLVMBuildSelect(B(tg), positive, inverse, tile_f32(&tg->tb, 0.0f), "");
  }
}

void tile_gpu_rows_replace_neg_inf(tile_gpu *tg, const tile_gpu_rows *in, float replacement, tile_gpu_rows *out) {
  out->m_tiles = in->m_tiles;
  for (int r = 0; r < 2 * in->m_tiles; r++) {
    LLVMValueRef is = LLVMBuildFCmp(B(tg), LLVMRealOEQ, in->v[r], tile_f32(&tg->tb, -INFINITY), "");
    out->v[r] = LLVMBuildSelect(B(tg), is, tile_f32(&tg->tb, replacement), in->v[r], "");
  }
}

/* ---- stores ---------------------------------------------------------------------------------------- */

/* One pass of tile_gpu_store. A lane holds columns 2q and 2q + 1 of each n-tile row: `paired` writes
 * them with one 4-byte store (packed as an mma operand is), else with two 2-byte stores. */
static void store_acc_rows(tile_gpu *tg, const tile_gpu_acc *acc, const tile_gpu_rows *row_scale,
                           const tile_gpu_global *dst, LLVMValueRef first_row, const tile_gpu_rows *rows,
                           int paired) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  LLVMValueRef quad_col = LLVMBuildZExt(b, tg->quad_col, tb->i64, "");
  for (int r = 0; r < 2 * acc->m_tiles; r++) {
    int m = r / 2, half = r % 2;
    LLVMValueRef global_row = LLVMBuildAdd(b, first_row, rows->v[r], "");
    tile_if inside;
    tile_if_begin(tb, &inside, tile_lt(tb, global_row, dst->rows));
    LLVMValueRef row_start = row_offset(tg, dst, global_row);
    for (int n = 0; n < acc->n_tiles && n * 8 < dst->cols; n++) {
      LLVMValueRef x[2];
      for (int j = 0; j < 2; j++) {
        x[j] = acc->v[(m * acc->n_tiles + n) * 4 + 2 * half + j];
        if (row_scale) x[j] = LLVMBuildFMul(b, x[j], row_scale->v[r], "");
      }
      LLVMValueRef column = LLVMBuildAdd(b, quad_col, tile_i64(tb, 8 * n), "");
      if (paired) {
        LLVMValueRef index = LLVMBuildAdd(b, row_start, column, "");
        LLVMBuildStore(b, cuda_ir_pack2(&tg->ir, tg->bf16, x[0], x[1]),
                       tile_gpu_element_address(tg, dst->base, index));
        continue;
      }
      for (int j = 0; j < 2; j++) {
        LLVMValueRef col_j = LLVMBuildAdd(b, column, tile_i64(tb, j), "");
        LLVMValueRef index = LLVMBuildAdd(b, row_start, LLVMBuildMul(b, col_j, dst->col_stride, ""), "");
        if (dst->f32) {
          LLVMBuildStore(b, x[j], LLVMBuildGEP2(b, tb->f32, dst->base, &index, 1, ""));
          continue;
        }
        LLVMValueRef narrow = LLVMBuildFPTrunc(b, x[j], operand_type(tg), "");
        LLVMBuildStore(b, LLVMBuildBitCast(b, narrow, tb->i16, ""), tile_gpu_element_address(tg, dst->base, index));
      }
    }
    tile_if_end(tb, &inside);
  }
}

void tile_gpu_store(tile_gpu *tg, const tile_gpu_acc *acc, const tile_gpu_rows *row_scale,
                    const tile_gpu_global *dst, LLVMValueRef first_row, LLVMValueRef warp_row0) {
  tile_gpu_rows rows;
  tile_gpu_rows_index(tg, &rows, acc->m_tiles, warp_row0);
  if (dst->vector_ok == NULL || dst->f32) {  /* pairs are packed to the operand dtype */
    store_acc_rows(tg, acc, row_scale, dst, first_row, &rows, 0);
    return;
  }
  /* Rows that take 16-byte copies (aligned, unit column stride) certainly take 4-byte stores. */
  tile_if paired, single;
  tile_if_begin(&tg->tb, &paired, dst->vector_ok);
  store_acc_rows(tg, acc, row_scale, dst, first_row, &rows, 1);
  tile_if_end(&tg->tb, &paired);
  tile_if_begin(&tg->tb, &single, LLVMBuildNot(B(tg), dst->vector_ok, ""));
  store_acc_rows(tg, acc, row_scale, dst, first_row, &rows, 0);
  tile_if_end(&tg->tb, &single);
}

void tile_gpu_store_rows(tile_gpu *tg, const tile_gpu_rows *values, const tile_gpu_global *dst,
                         LLVMValueRef first_row, LLVMValueRef warp_row0) {
  tile_builder *tb = &tg->tb;
  LLVMBuilderRef b = B(tg);
  tile_gpu_rows rows;
  tile_gpu_rows_index(tg, &rows, values->m_tiles, warp_row0);
  LLVMValueRef first_of_quad = LLVMBuildICmp(b, LLVMIntEQ, tg->quad_col, tile_gpu_i32(tg, 0), "");
  for (int r = 0; r < 2 * values->m_tiles; r++) {
    LLVMValueRef global_row = LLVMBuildAdd(b, first_row, rows.v[r], "");
    tile_if inside;
    tile_if_begin(tb, &inside, LLVMBuildAnd(b, first_of_quad, tile_lt(tb, global_row, dst->rows), ""));
    LLVMValueRef index = row_offset(tg, dst, global_row);
    LLVMBuildStore(b, values->v[r], LLVMBuildGEP2(b, tb->f32, dst->base, &index, 1, ""));
    tile_if_end(tb, &inside);
  }
}
