/* tile_gpu.h: the warp-level tile vocabulary GPU kernels are written in, lowered for NVIDIA tensor
 * cores through the CUDA backend's codegen hooks. A kernel speaks of tiles in shared memory (filled
 * asynchronously from global memory, rows past the end read as zeros), fp32 accumulator tiles owned
 * by a warp (16 rows per m-tile, 8 columns per n-tile), operand fragments, dot products, row
 * statistics (max, sum) and exp2 over rows, and masked stores. Which lane holds which element, how
 * shared memory is swizzled, and which instruction moves what is this layer's business: the layout
 * rules are plain C functions below (unit-tested on the CPU against the PTX ISA's figures) and the IR
 * emitters follow them. The scalar and control-flow words of tile.h (tile_i64, tile_for, tile_var,
 * tile_if, ...) work on the builder inside a tile_gpu unchanged. */
#ifndef FJ_TILE_GPU_H
#define FJ_TILE_GPU_H
#include <stddef.h>
#include <llvm-c/Core.h>
#include "backends/cuda/cuda_codegen.h"
#include "core/dtype.h"
#include "jit/jit.h"
#include "tile/tile.h"

/* ---- layout rules (plain C; lane 0..31) -------------------------------------------------------- */

/* mma.m16n8k16 with f16/bf16 operands and f32 accumulators (PTX ISA, "Matrix Fragments for
 * mma.m16n8k16 with floating point type"). groupID = lane / 4, threadID_in_group = lane % 4. */
/* Accumulator C/D (16 x 8): register reg (0..3) of lane holds (row, col). */
void tile_gpu_acc_coord(int lane, int reg, int *row, int *col);
/* A (16 x 16, row-major): half (0, 1) of 32-bit register reg (0..3) of lane holds (row, k). */
void tile_gpu_a_coord(int lane, int reg, int half, int *row, int *k);
/* B (16 x 8, "col"): half of register reg (0, 1) of lane holds (k, n). */
void tile_gpu_b_coord(int lane, int reg, int half, int *k, int *n);

/* ldmatrix.m8n8.x4.b16: lane gives the address of row `row` of matrix `matrix`; result register i
 * is matrix i, and half `half` of it holds element (row, col) of that 8 x 8 matrix (transposed with
 * .trans). */
void tile_gpu_ldmatrix_provider(int lane, int *matrix, int *row);
void tile_gpu_ldmatrix_element(int lane, int half, int transpose, int *row, int *col);

/* Which row and 16-byte chunk (8 elements) of a 16 x 16 block a lane addresses for one ldmatrix.x4:
 *  - TILE_GPU_LD_A: an A operand m16 x k16 stored row-major (also a B operand stored k-major, read
 *    with .trans: V in P V); registers 0..3 are the mma's a0..a3, or b0,b1 of n-tile 0 then n-tile 1.
 *  - TILE_GPU_LD_B: a B operand stored n-major (K in Q K^T: rows are n): registers are b0,b1 of
 *    n-tile 0 then b0,b1 of n-tile 1. */
enum { TILE_GPU_LD_A = 0, TILE_GPU_LD_B = 1 };
void tile_gpu_ldmatrix_source(int lane, int kind, int *row, int *chunk);

/* Shared tiles are rows of chunks_per_row 16-byte chunks. With swizzle, logical chunk c of row r
 * lives at a permuted chunk of the same row: c ^ (r & 7) within each whole group of 8 chunks, and a
 * narrower xor for a tail of 4 and of 2 chunks (head dims 80, 96, 112, ...), chosen so that the 8 rows
 * one ldmatrix phase reads (same logical chunk, 8 consecutive rows from a multiple of 8) fall on 8
 * different 16-byte bank groups (the tail's masks take other row bits when chunks_per_row % 8 == 6). A
 * bijection on each row for any even chunks_per_row. */
int tile_gpu_swizzle_chunk(int row, int chunk, int chunks_per_row, int swizzle);
/* The first chunk of the swizzle group (8, 4 or 2 chunks) that holds `chunk`: inside a group the
 * swizzle is an xor of the chunk's place with a mask of the row. */
int tile_gpu_swizzle_group(int chunk, int chunks_per_row);

/* ---- IR ------------------------------------------------------------------------------------------ */

#define TILE_GPU_MAX_M_TILES 4   /* m16 tiles per warp */
#define TILE_GPU_MAX_N_TILES 32  /* n8 tiles: 256 columns */
#define TILE_GPU_MAX_K_STEPS 16  /* k16 steps: 256 */

typedef struct tile_gpu {
  tile_builder tb;  /* the generic words of tile.h run on this */
  cuda_ir ir;
  const jit_target *target;
  int bf16;         /* operand dtype: bf16 (1) or fp16 (0) */
  int warps;
  LLVMValueRef params;             /* the kernel's by-value parameter block (a pointer to it) */
  LLVMValueRef thread, lane, warp; /* i32, as of the last tile_gpu_refresh_lanes */
  LLVMValueRef thread_root;        /* %tid.x read once in the entry */
  LLVMValueRef shared;             /* dynamic shared memory, ptr addrspace(3) */
  LLVMTypeRef global_ptr, shared_ptr;
  /* per-lane constants of the layouts, computed once: lane / 4, 2 * (lane % 4), and the row and
   * chunk offsets a lane addresses for each tile_gpu_ldmatrix_source kind */
  LLVMValueRef group_row, quad_col, ld_row[2], ld_chunk[2];
} tile_gpu;

/* Creates kernel `name(params byval [param_bytes] align 8)` for warps*32 threads and positions the
 * builder in its body. dtype: DTYPE_F16 or DTYPE_BF16. */
void tile_gpu_begin(tile_gpu *tg, LLVMModuleRef module, const jit_target *target, const char *name,
                    size_t param_bytes, dtype_id dtype, int warps);
void tile_gpu_end(tile_gpu *tg);
/* Re-derives the per-lane values (lane, warp, layout offsets) at the builder's position from a copy of
 * the thread index LLVM cannot hoist. Call at the top of a long loop body, and again after the loop
 * (values made inside the body do not reach past it): every address derived from them is then
 * recomputed in the loop instead of being held in registers across it. */
void tile_gpu_refresh_lanes(tile_gpu *tg);

LLVMValueRef tile_gpu_param_i64(tile_gpu *tg, size_t offset);
LLVMValueRef tile_gpu_param_i32(tile_gpu *tg, size_t offset);
LLVMValueRef tile_gpu_param_f32(tile_gpu *tg, size_t offset);
LLVMValueRef tile_gpu_param_global(tile_gpu *tg, size_t offset);  /* a u64 device address */
LLVMValueRef tile_gpu_block_index(tile_gpu *tg);                  /* i64 */
/* The block index again, through a value LLVM cannot merge with the first read: what is derived from
 * it is computed anew here instead of being held in registers since the first read (across a loop). */
LLVMValueRef tile_gpu_block_index_opaque(tile_gpu *tg);
LLVMValueRef tile_gpu_i32(tile_gpu *tg, int value);

/* A rows x cols tile of the operand dtype in dynamic shared memory at byte `offset` (i32, may be a
 * runtime value: a ring stage). cols is a multiple of 16. row_cols (0: cols) is the row pitch in
 * elements when the tile is a view of columns of a wider one (tile_gpu_shared_columns): only the dot
 * reads such views. */
typedef struct tile_gpu_shared {
  LLVMValueRef offset;
  int rows, cols, swizzle;
  int row_cols;
} tile_gpu_shared;

/* Columns [col0, col0 + cols) of t as a tile of its own, col0 (i32, may be a runtime value: a warp's
 * slice) a multiple of 64 elements (whole swizzle groups of 8 chunks), cols too, and t's columns a
 * multiple of 64: the view's swizzle is then the same permutation of the same chunks. */
tile_gpu_shared tile_gpu_shared_columns(tile_gpu *tg, const tile_gpu_shared *t, LLVMValueRef col0, int cols);

/* A 2-D view of a global tensor: element (r, c) at base + r * row_stride + c * col_stride (elements,
 * i64). Rows at or past `rows` (i64) and columns at or past `cols` read as zeros. vector_ok (i1):
 * rows are 16-byte aligned and contiguous, so 16-byte cp.async may move them; NULL: never.
 * Grouped rows (group != NULL, tile_gpu_global_group_rows): row r is at (r / group) * row_stride +
 * (r % group) * group_stride instead, e.g. the (position, query head) rows of a packed GQA tile. */
typedef struct tile_gpu_global {
  LLVMValueRef base, row_stride, col_stride, rows, vector_ok;
  int cols;
  LLVMValueRef group, group_stride, group_magic, group_shift;  /* i32, i64, i32, i32 */
  /* Paged rows (page_size > 0, tile_gpu_global_page_rows): row r is row r % page_size of page
   * table[(r / page_size) * table_stride], pages page_stride elements apart. */
  int page_size;
  LLVMValueRef table, table_stride, page_stride, pages;        /* ptr addrspace(1) to i32, i64 x 3 */
  /* 1: the elements are fp32 (a split-KV part's output), stored unrounded; 0: the operand dtype */
  int f32;
  /* fp8 views (tile_gpu_global_fp8; i1, NULL: never): rows are 16-byte aligned and contiguous, so 16 raw
   * bytes move by one cp.async into a staging tile */
  LLVMValueRef fp8_async_ok;
} tile_gpu_global;

/* Fills *view for the tensor at base (ptr addrspace(1), already offset to element (0, 0)); vector_ok
 * is computed at run time from the address and strides when allow_vector (the key promises unit
 * column strides), else NULL. */
void tile_gpu_global_init(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef base, LLVMValueRef row_stride,
                          LLVMValueRef col_stride, LLVMValueRef rows, int cols, int allow_vector);
/* Makes the view (just initialized, without vector copies) one of fp8 elements (E4M3 or E5M2, one byte
 * each): base and strides count bytes; tile_gpu_copy_fp8_raw moves it, by cp.async with
 * `contiguous` (unit column strides promised) where the rows are 16-byte aligned (checked at run time).
 * Before tile_gpu_global_page_rows. */
void tile_gpu_global_fp8(tile_gpu *tg, tile_gpu_global *view, int contiguous);
/* The address of element `index` (i64) of a global tensor of the operand dtype, or with fp8 of bytes. */
LLVMValueRef tile_gpu_fp8_element_address(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index);
/* Groups the view's rows: `group` (i32, >= 1) consecutive rows share a row_stride step and lie
 * group_stride (i64) apart; magic and shift divide by group (kernels/attention_fwd_gpu_abi.h's
 * gpu_divider). Row indices must stay below 2^31. */
void tile_gpu_global_group_rows(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef group, LLVMValueRef group_stride,
                                LLVMValueRef magic, LLVMValueRef shift);
/* Pages the view's rows (a paged KV cache): row r is row r % page_size (a constant) of page
 * table[(r / page_size) * table_stride] (i32 entries in global memory; one outside [0, pages) reads page 0),
 * pages page_stride (i64) elements apart from the view's base. The table is read for existing rows
 * only (those below rows; others stand in row 0), so it needs ceil(rows / page_size) entries. */
void tile_gpu_global_page_rows(tile_gpu *tg, tile_gpu_global *view, LLVMValueRef table, LLVMValueRef table_stride,
                               int page_size, LLVMValueRef page_stride, LLVMValueRef pages);
/* base + index elements of the operand dtype (i64 index). */
LLVMValueRef tile_gpu_element_address(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index);

/* Copies rows [first_row, first_row + dst->rows) of src into dst, all threads of the block sharing
 * the work: cp.async (asynchronous: complete after tile_gpu_wait + tile_gpu_sync) when vector_ok,
 * else ordinary loads and stores. */
void tile_gpu_copy(tile_gpu *tg, const tile_gpu_shared *dst, const tile_gpu_global *src,
                   LLVMValueRef first_row);
/* An fp8 cache's tiles are staged: the raw bytes of rows [first_row, first_row + staging->rows) of src (an
 * fp8 view) go into `staging`, a tile of one byte an element (cols: the operand tile's padded columns,
 * which arrive as zeros; swizzled as the operand tile is, by 8-byte slots with chunk pairs kept whole), by 16-byte cp.async where the rows are 16-byte aligned and contiguous
 * (checked at run time), else by byte loads and 8-byte stores; missing rows and columns are zeros.
 * tile_gpu_convert_fp8 then widens a landed staging tile into the operand tile dst, exactly. */
void tile_gpu_copy_fp8_raw(tile_gpu *tg, const tile_gpu_shared *staging, const tile_gpu_global *src,
                           LLVMValueRef first_row);
void tile_gpu_convert_fp8(tile_gpu *tg, const tile_gpu_shared *dst, const tile_gpu_shared *staging, dtype_id fp8);
void tile_gpu_commit(tile_gpu *tg);              /* closes this thread's group of copies */
void tile_gpu_wait(tile_gpu *tg, int pending);   /* until at most `pending` groups are in flight */
void tile_gpu_sync(tile_gpu *tg);                /* block barrier */

/* A per-warp fp32 accumulator tile of 16*m_tiles x 8*n_tiles; v[(m * n_tiles + n) * 4 + reg]. With
 * slots, the values live in stack slots that survive loops (tile_gpu_acc_load/store). */
typedef struct tile_gpu_acc {
  int m_tiles, n_tiles;
  LLVMValueRef v[TILE_GPU_MAX_M_TILES * TILE_GPU_MAX_N_TILES * 4];
  LLVMValueRef slot[TILE_GPU_MAX_M_TILES * TILE_GPU_MAX_N_TILES * 4];
} tile_gpu_acc;

/* The per-thread share of a per-row vector of an accumulator: the rows this thread holds elements
 * of, two per m-tile (v[2m]: row m*16 + lane/4, v[2m+1]: 8 rows below). */
typedef struct tile_gpu_rows {
  int m_tiles;
  LLVMValueRef v[2 * TILE_GPU_MAX_M_TILES];
  LLVMValueRef slot[2 * TILE_GPU_MAX_M_TILES];
} tile_gpu_rows;

/* A operand fragments of a 16*m_tiles x 16*k_steps tile held in registers. */
typedef struct tile_gpu_afrag {
  int m_tiles, k_steps;
  LLVMValueRef v[TILE_GPU_MAX_M_TILES * TILE_GPU_MAX_K_STEPS * 4];
} tile_gpu_afrag;

void tile_gpu_acc_init(tile_gpu *tg, tile_gpu_acc *acc, int m_tiles, int n_tiles, float value);
/* Gives acc stack slots holding its current values; load/store move values in and out of them. */
void tile_gpu_acc_make_var(tile_gpu *tg, tile_gpu_acc *acc);
void tile_gpu_acc_load(tile_gpu *tg, tile_gpu_acc *acc);
void tile_gpu_acc_store(tile_gpu *tg, tile_gpu_acc *acc);

void tile_gpu_rows_init(tile_gpu *tg, tile_gpu_rows *rows, int m_tiles, LLVMValueRef value);
void tile_gpu_rows_make_var(tile_gpu *tg, tile_gpu_rows *rows);
void tile_gpu_rows_load(tile_gpu *tg, tile_gpu_rows *rows);
void tile_gpu_rows_store(tile_gpu *tg, tile_gpu_rows *rows);
/* The block-relative row index (i64) of each of this thread's rows for a warp whose tile starts at
 * row warp_row0 (i64) of the block. */
void tile_gpu_rows_index(tile_gpu *tg, tile_gpu_rows *out, int m_tiles, LLVMValueRef warp_row0);

/* A fragments of rows [row0, row0 + 16*m_tiles) (i64, warp-uniform) of a shared tile, all columns. */
void tile_gpu_load_a(tile_gpu *tg, tile_gpu_afrag *out, const tile_gpu_shared *src, LLVMValueRef row0,
                     int m_tiles);
/* acc += A B over k = 16 * k_steps. A: registers (a != NULL) or rows [a_row0, +16*m_tiles) of
 * a_shared. B: b_shared; with b_n_major its rows are n (K in Q K^T: acc = Q K^T), else its rows are k
 * (V in P V: acc = P V). */
void tile_gpu_dot(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_afrag *a, const tile_gpu_shared *a_shared,
                  LLVMValueRef a_row0, const tile_gpu_shared *b_shared, int b_n_major, int k_steps);
/* The accumulator rounded to the operand dtype as A fragments (its columns become k): P in P V. */
void tile_gpu_acc_to_a(tile_gpu *tg, const tile_gpu_acc *acc, tile_gpu_afrag *out);

/* Elementwise and per-row arithmetic. */
/* acc[r] *= f[r]; skipped by the whole warp (one vote) when every factor of every lane is exactly 1,
 * where it would change nothing (a running maximum that stopped growing rescales nothing). */
void tile_gpu_scale_rows_unless_one(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_rows *f);
/* acc[r][c] = fill (f32) where c >= end[r] or, with first (NULL: none), c < first[r] (i64 per row: the
 * columns [first, end) it sees), only when `when` (i1, uniform; NULL: always) holds: the branch keeps
 * unmasked tiles free of the selects. */
void tile_gpu_mask_columns(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_rows *first, const tile_gpu_rows *end,
                           LLVMValueRef when, LLVMValueRef fill);
/* out[r] = max(init[r], max_c scale * acc[r][c]) (quad shuffles across the row) without a multiply per
 * element: scale times the row's maximum, or its minimum when scale (f32, uniform) is negative. */
void tile_gpu_row_max_scaled(tile_gpu *tg, const tile_gpu_acc *acc, LLVMValueRef scale, const tile_gpu_rows *init,
                             tile_gpu_rows *out);
/* acc[r][c] = 2^(scale * acc[r][c] - sub[r]), the product and difference as one fma. */
void tile_gpu_exp2_scaled_minus_rows(tile_gpu *tg, tile_gpu_acc *acc, LLVMValueRef scale, const tile_gpu_rows *sub);
/* acc[i] = out * tanh(in * acc[i]) (tanh.approx): logit soft-capping. */
void tile_gpu_tanh_scaled(tile_gpu *tg, tile_gpu_acc *acc, LLVMValueRef in, LLVMValueRef out);
/* acc[r][c] += slope[r] |centre[r] - c| (f32 rows; c the element's column in the tile): a bias that
 * grows with a column's distance from each row's own, ALiBi's. */
void tile_gpu_add_distance(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_rows *slope, const tile_gpu_rows *centre);
/* acc[r][c] += factor * src(first_row + r, col0 + c) (factor f32; first_row and col0 i64; r counted from
 * warp_row0 of the block): an additive bias read from global memory, src's elements fp32 (src->f32) or of
 * the operand dtype. A row at or past src->rows reads its last row and a column at or past `cols` (i64)
 * its last column instead, so that no address leaves the tensor: the kernel masks those columns and never
 * stores those rows. src->rows and cols must be at least 1. Give src a constant column stride of 1 where
 * the columns are consecutive: a tile inside `cols` then loads each element at a constant offset. */
void tile_gpu_add_global(tile_gpu *tg, tile_gpu_acc *acc, const tile_gpu_global *src, LLVMValueRef first_row,
                         LLVMValueRef warp_row0, LLVMValueRef col0, LLVMValueRef cols, LLVMValueRef factor);
/* out[r] = this thread's part of sum_c acc[r][c] (no shuffles: a running sum reduces once, at the
 * end, with tile_gpu_rows_reduce_sum). */
void tile_gpu_row_sum_partial(tile_gpu *tg, const tile_gpu_acc *acc, tile_gpu_rows *out);
void tile_gpu_rows_reduce_sum(tile_gpu *tg, tile_gpu_rows *rows);
/* Per-row scalar maps on f32 rows. */
typedef enum { TILE_GPU_ROWS_SUB, TILE_GPU_ROWS_MUL, TILE_GPU_ROWS_ADD } tile_gpu_rows_op;
void tile_gpu_rows_binary(tile_gpu *tg, tile_gpu_rows_op op, const tile_gpu_rows *a, const tile_gpu_rows *b,
                          tile_gpu_rows *out);
void tile_gpu_rows_exp2(tile_gpu *tg, const tile_gpu_rows *in, tile_gpu_rows *out);
/* out[r] = 1 / in[r] where in[r] > 0, else 0 (a row that saw nothing stays 0, never NaN). */
void tile_gpu_rows_reciprocal_or_zero(tile_gpu *tg, const tile_gpu_rows *in, tile_gpu_rows *out);
/* out[r] = in[r] when finite-or-+inf, `replacement` where in[r] is -inf. */
void tile_gpu_rows_replace_neg_inf(tile_gpu *tg, const tile_gpu_rows *in, float replacement, tile_gpu_rows *out);

/* Stores acc[r][c] * row_scale[r] (row_scale may be NULL), rounded to the dtype (or as fp32 where
 * dst->f32), to dst element
 * (first_row + r, c) for rows < dst->rows and c < dst->cols; acc rows start at block row warp_row0.
 * Column pairs go out as one 4-byte store where dst->vector_ok holds at run time. */
void tile_gpu_store(tile_gpu *tg, const tile_gpu_acc *acc, const tile_gpu_rows *row_scale,
                    const tile_gpu_global *dst, LLVMValueRef first_row, LLVMValueRef warp_row0);
/* Stores f32 rows[r] to row first_row + r of dst (an f32 tensor; its columns unused) for rows <
 * dst->rows, one lane per row. */
void tile_gpu_store_rows(tile_gpu *tg, const tile_gpu_rows *rows, const tile_gpu_global *dst,
                         LLVMValueRef first_row, LLVMValueRef warp_row0);

/* Scalar helpers the kernel needs beside tiles. */
/* Stores f32 value, rounded to the operand dtype, at element index (i64) of base. */
void tile_gpu_store_element(tile_gpu *tg, LLVMValueRef base, LLVMValueRef index, LLVMValueRef value);
LLVMValueRef tile_gpu_exp2(tile_gpu *tg, LLVMValueRef x);  /* ex2.approx: 2^-inf is +0 */
LLVMValueRef tile_gpu_lg2(tile_gpu *tg, LLVMValueRef x);
/* n / d for i32 n in [0, 2^31) without a divide: (umulhi(n, magic) + n) >> shift, with the magic and
 * shift the host worked out for d (Granlund and Montgomery's round-up method; i32 values). */
LLVMValueRef tile_gpu_divide(tile_gpu *tg, LLVMValueRef n, LLVMValueRef magic, LLVMValueRef shift);
#endif
