/* cuda_codegen.h: the NVPTX code generation hooks: every NVIDIA-specific instruction the tile layer
 * lowers to (thread and block indices, the block barrier, warp shuffles and votes, ex2/lg2,
 * tensor-core mma.sync, ldmatrix, cp.async and its groups, dynamic shared memory, packing fp32 pairs
 * into f16x2/bf16x2) and the per-arch limits kernels are sized by. Each hook emits LLVM NVVM
 * intrinsics at the builder's position; nothing here knows tiles or kernels, and nothing outside this
 * folder names an intrinsic. */
#ifndef FJ_CUDA_CODEGEN_H
#define FJ_CUDA_CODEGEN_H
#include <stddef.h>
#include <llvm-c/Core.h>

/* Address spaces of the NVPTX backend. */
#define CUDA_AS_GLOBAL 1
#define CUDA_AS_SHARED 3

typedef struct cuda_ir {
  LLVMContextRef ctx;
  LLVMModuleRef module;
  LLVMBuilderRef b;
} cuda_ir;

/* Marks fn as a kernel entry (ptx_kernel calling convention: `.entry`) launched with at most
 * max_threads threads per block (`.maxntid`), which lets ptxas budget registers for that block size. */
void cuda_ir_kernel(cuda_ir *ir, LLVMValueRef fn, int max_threads);

/* The same i32, through a `mov` LLVM may neither hoist nor merge: per-lane values derived from it
 * inside a loop are recomputed there (a few integer ops) instead of being hoisted out and held in
 * registers across the loop, which is what pushes unrolled tensor-core loops into spills. */
LLVMValueRef cuda_ir_opaque(cuda_ir *ir, LLVMValueRef value_i32);

/* i32 %tid.x and %ctaid.x. */
LLVMValueRef cuda_ir_thread_index(cuda_ir *ir);
LLVMValueRef cuda_ir_block_index(cuda_ir *ir);
/* bar.sync 0: every thread of the block arrives; shared-memory writes before it are visible after. */
void cuda_ir_barrier(cuda_ir *ir);
/* shfl.sync.bfly.b32 with the full warp: the value of lane ^ lane_mask. */
LLVMValueRef cuda_ir_shfl_xor(cuda_ir *ir, LLVMValueRef value_f32, int lane_mask);
/* vote.sync.any.pred with the full warp: true in every lane when predicate (i1) holds in any lane. */
LLVMValueRef cuda_ir_vote_any(cuda_ir *ir, LLVMValueRef predicate);
/* ex2.approx.ftz.f32 (2^x; -inf gives +0) and lg2.approx.f32. */
LLVMValueRef cuda_ir_ex2(cuda_ir *ir, LLVMValueRef x);
LLVMValueRef cuda_ir_lg2(cuda_ir *ir, LLVMValueRef x);
/* tanh.approx.f32 (sm_75 and later; relative error about 2^-11). */
LLVMValueRef cuda_ir_tanh(cuda_ir *ir, LLVMValueRef x);

/* mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32: d = a * b + c for one warp. a: four
 * i32 registers (eight f16/bf16), b: two, c and d: four floats, in the PTX ISA's fragment layouts. */
void cuda_ir_mma_m16n8k16(cuda_ir *ir, int bf16, LLVMValueRef const a[4], LLVMValueRef const b[2],
                          LLVMValueRef const c[4], LLVMValueRef d[4]);
/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: four 8x8 b16 matrices, one i32 each; the lane
 * gives the shared address of row lane % 8 of matrix lane / 8. */
void cuda_ir_ldmatrix_x4(cuda_ir *ir, LLVMValueRef shared_address, int transpose, LLVMValueRef out[4]);

/* cp.async.cg.shared.global 16 bytes, of which src_bytes (i32, 0 or 16) are read and the rest zero:
 * 0 turns an out-of-range row into zeros without a branch. Both addresses 16-byte aligned. */
void cuda_ir_cp_async_16(cuda_ir *ir, LLVMValueRef shared_address, LLVMValueRef global_address,
                         LLVMValueRef src_bytes);
void cuda_ir_cp_async_commit(cuda_ir *ir);
/* Waits until at most `pending` of this thread's committed groups are still in flight. */
void cuda_ir_cp_async_wait(cuda_ir *ir, int pending);

/* The block's dynamic shared memory (`.extern .shared .align 16 .b8 name[]`), created once per
 * module; an addrspace(3) pointer. */
LLVMValueRef cuda_ir_dynamic_shared(cuda_ir *ir);

/* Two floats rounded to nearest even into one f16x2 / bf16x2 register (cvt.rn.{f16,bf16}x2.f32), lo
 * in the low half as mma operands and little-endian memory expect. */
LLVMValueRef cuda_ir_pack2(cuda_ir *ir, int bf16, LLVMValueRef lo, LLVMValueRef hi);

/* Dynamic shared memory a block of this arch may use, in bytes (the opt-in maximum of the CUDA
 * programming guide's compute-capability table); 0 for an arch name this does not know. */
size_t cuda_ir_shared_limit(const char *arch);
#endif
