/* tile.h: the vocabulary kernel generators are written in, lowered here for vector CPUs (and, through
 * the same names, for other targets later). A kernel speaks of loops, element loads and stores in its
 * tensors' dtype, register tiles of fp32 vectors, broadcasts, fused multiply-adds, row statistics and
 * exp2; this layer turns them into LLVM IR. Loop counters and register tiles live in stack slots that
 * LLVM's SROA/mem2reg promote to registers, so the generator never builds phi nodes by hand. */
#ifndef FJ_TILE_H
#define FJ_TILE_H
#include <stdint.h>
#include <llvm-c/Core.h>
#include "core/dtype.h"
#include "jit/jit.h"

typedef struct tile_builder {
  LLVMContextRef ctx;
  LLVMModuleRef module;
  LLVMBuilderRef b;
  LLVMValueRef function;
  LLVMBasicBlockRef entry;  /* stack slots are created here so they promote to registers */
  int lanes;                /* fp32 lanes of one vector register */
  LLVMTypeRef f32, f16, i1, i8, i16, i32, i64, ptr, vec, void_type;
} tile_builder;

/* The types every lowering uses, in the module's context; vec is `lanes` fp32 lanes (a lowering whose
 * thread holds one lane sets vec to f32 after). */
void tile_builder_init(tile_builder *tb, LLVMModuleRef module, int lanes);
/* Makes fn the function being built: the target's cpu/features attributes, nounwind, an entry block for
 * stack slots, and a builder positioned in its body. */
void tile_function_open(tile_builder *tb, LLVMValueRef fn, const jit_target *target);
/* Creates `name` (void(ptr, i64, ptr) with the C calling convention) for a vector CPU and opens it. */
LLVMValueRef tile_function_begin(tile_builder *tb, LLVMModuleRef module, const jit_target *target,
                                 const char *name, int lanes);
/* Returns from the function and releases the builder. */
void tile_function_end(tile_builder *tb);

/* ---- scalars ---- */
LLVMValueRef tile_i64(tile_builder *tb, int64_t value);
LLVMValueRef tile_f32(tile_builder *tb, float value);
LLVMValueRef tile_add(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef tile_sub(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef tile_mul(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef tile_min(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);  /* signed i64 */
LLVMValueRef tile_max(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);  /* signed i64 */
LLVMValueRef tile_lt(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);   /* signed i64 */

/* A named mutable value (i64, float, vector): a stack slot promoted to a register. */
LLVMValueRef tile_var(tile_builder *tb, LLVMTypeRef type, LLVMValueRef initial, const char *name);
LLVMValueRef tile_get(tile_builder *tb, LLVMValueRef var);
void tile_set(tile_builder *tb, LLVMValueRef var, LLVMValueRef value);

/* ---- control flow ---- */
typedef struct tile_loop {
  LLVMValueRef counter, end, step;
  LLVMBasicBlockRef test, body, done;
  int rolled;  /* set before tile_end_for: LLVM must not unroll it (code size, compile time) */
} tile_loop;
/* for (i = begin; i < end; i += step): returns i, valid inside the body. */
LLVMValueRef tile_for(tile_builder *tb, tile_loop *loop, LLVMValueRef begin, LLVMValueRef end,
                      LLVMValueRef step, const char *name);
void tile_end_for(tile_builder *tb, tile_loop *loop);

typedef struct tile_if {
  LLVMBasicBlockRef done;
} tile_if;
void tile_if_begin(tile_builder *tb, tile_if *branch, LLVMValueRef condition);
void tile_if_end(tile_builder *tb, tile_if *branch);
/* Returns from the function here unless go_on (i1) holds; code after it runs only when it does. */
void tile_return_unless(tile_builder *tb, LLVMValueRef go_on);

/* ---- memory: element indices are in elements of the stated dtype ---- */
LLVMValueRef tile_load_param_ptr(tile_builder *tb, LLVMValueRef block, size_t offset);
LLVMValueRef tile_load_param_i64(tile_builder *tb, LLVMValueRef block, size_t offset);
LLVMValueRef tile_load_param_f32(tile_builder *tb, LLVMValueRef block, size_t offset);
/* One element of a tensor in its dtype, as fp32 (and back, rounding to nearest even; the fp8 dtypes,
 * an fp8 KV cache's, are only loaded). */
LLVMValueRef tile_load_element(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype);
void tile_store_element(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype,
                        LLVMValueRef value);
/* `lanes` consecutive elements as one fp32 vector (converted from the dtype). */
LLVMValueRef tile_load_vector(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype);
/* The elements at indices[l] + offset (indices a vector of `lanes` i64, offset an i64) as one fp32 vector
 * (converted from the dtype: fp32, fp16 or bf16), by one gather. */
LLVMValueRef tile_gather(tile_builder *tb, LLVMValueRef base, LLVMValueRef indices, LLVMValueRef offset,
                         dtype_id dtype);
/* A hint to bring the cache line of element `index` in soon; never faults, so it may point past the end. */
void tile_prefetch(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype);
/* A vector of fp32 scratch (index in floats). */
void tile_store_vector(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, LLVMValueRef value);
LLVMValueRef tile_load_f32(tile_builder *tb, LLVMValueRef base, LLVMValueRef index);
void tile_store_f32(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, LLVMValueRef value);

/* ---- bf16 pairs: the operands of tile_pair_dot, kept as raw bf16 bits (i16) ---- */
/* `count` consecutive bf16 elements' bits from a bf16 tensor or scratch (index in 2-byte elements): an
 * i16 for count 1, else a vector of count i16. */
LLVMValueRef tile_load_bits(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, int count);
void tile_store_bits(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, LLVMValueRef bits);
/* The bf16 pair at index, index + 1, repeated for every fp32 lane (2 x lanes i16). */
LLVMValueRef tile_splat_pair(tile_builder *tb, LLVMValueRef base, LLVMValueRef index);
/* Two vectors of the same type, interleaved: even[0], odd[0], even[1], odd[1], ... */
LLVMValueRef tile_interleave(tile_builder *tb, LLVMValueRef even, LLVMValueRef odd);
/* fp8 bits (i8, scalar or vector; DTYPE_E4M3 or DTYPE_E5M2) as fp32, exactly, with integer shifts and the
 * fp16 conversion every target here has (no fp8 instructions): an fp8 KV cache's elements. */
LLVMValueRef tile_fp8_to_f32(tile_builder *tb, LLVMValueRef bits, dtype_id dtype);
/* The bf16 bits of fp32 values (scalar or vector) that bf16 holds exactly (an fp8 element's): the high
 * half of each, no rounding. */
LLVMValueRef tile_exact_bf16_bits(tile_builder *tb, LLVMValueRef value);
/* Two fp32 vectors rounded to bf16 (to nearest even) and interleaved: 2 x lanes i16. */
LLVMValueRef tile_bf16_pairs(tile_builder *tb, LLVMValueRef even, LLVMValueRef odd);
/* acc + the dot product of each lane's bf16 pair in a and b (2 x lanes i16 each): acc[l] + a[2l] b[2l]
 * + a[2l+1] b[2l+1], with fp32 sums. Twice the products of an FMA per instruction; needs AVX512-BF16
 * (jit_target.has_avx512bf16) and 16 lanes. Like the instruction it is, it reads bf16 subnormals as
 * zero. */
LLVMValueRef tile_pair_dot(tile_builder *tb, LLVMValueRef acc, LLVMValueRef a, LLVMValueRef b);

/* ---- vectors ---- */
LLVMValueRef tile_splat(tile_builder *tb, LLVMValueRef scalar);  /* float -> vector */
LLVMValueRef tile_splat_f32(tile_builder *tb, float value);
LLVMValueRef tile_lane_index(tile_builder *tb, LLVMValueRef first);  /* i64 vector first, first+1, ... */
LLVMValueRef tile_fma(tile_builder *tb, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c); /* a*b+c */
LLVMValueRef tile_vmax(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef tile_vmul(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef tile_vadd(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef tile_vsub(tile_builder *tb, LLVMValueRef a, LLVMValueRef b);
/* 2^x for every lane; exactly 0 for x <= -127 (so -inf gives 0, never NaN); relative error ~1e-7. */
LLVMValueRef tile_exp2(tile_builder *tb, LLVMValueRef x);
/* tanh of a vector, through tile_exp2 of a non-positive argument (no overflow; absolute error ~1e-7). */
LLVMValueRef tile_tanh(tile_builder *tb, LLVMValueRef x);
LLVMValueRef tile_log2(tile_builder *tb, LLVMValueRef x);  /* scalar float, llvm.log2 */
LLVMValueRef tile_exp2_f32(tile_builder *tb, LLVMValueRef x);  /* scalar float, llvm.exp2 */
LLVMValueRef tile_extract(tile_builder *tb, LLVMValueRef vector, int lane);

/* ---- register tiles: rows x cols fp32 held as rows x (cols / lanes) vectors ---- */
typedef struct tile_regs {
  int rows, vectors;
  LLVMValueRef slot;
} tile_regs;
tile_regs tile_regs_new(tile_builder *tb, int rows, int vectors, const char *name);
LLVMValueRef tile_regs_get(tile_builder *tb, const tile_regs *t, int row, int vector);
void tile_regs_set(tile_builder *tb, const tile_regs *t, int row, int vector, LLVMValueRef value);
void tile_regs_fill(tile_builder *tb, const tile_regs *t, LLVMValueRef vector_value);
#endif
