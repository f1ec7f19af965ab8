/* cuda_codegen.c: the NVPTX hooks as LLVM NVVM intrinsics (names and signatures as LLVM 22's
 * IntrinsicsNVVM.td has them, each checked through llc and ptxas for sm_80 and sm_90a). Intrinsics
 * rather than inline asm: LLVM then knows their operands, schedules around them and allocates their
 * registers, and ptxas sees ordinary instructions. */
#include "backends/cuda/cuda_codegen.h"

#include <stdio.h>
#include <string.h>

/* An intrinsic call; `overload` is the one overloaded type where the intrinsic has one, else NULL. A
 * name LLVM does not know is a programming error caught by the first test that generates the kernel
 * (LLVMGetIntrinsicDeclaration would return NULL and the module fail to verify). */
static LLVMValueRef cuda_call(cuda_ir *ir, const char *name, LLVMTypeRef overload, LLVMValueRef *args,
                              unsigned count) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef types[1] = {overload};
  size_t type_count = overload ? 1 : 0;
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(ir->module, id, types, type_count);
  LLVMTypeRef fn_type = LLVMIntrinsicGetType(ir->ctx, id, types, type_count);
  return LLVMBuildCall2(ir->b, fn_type, fn, args, count, "");
}

void cuda_ir_kernel(cuda_ir *ir, LLVMValueRef fn, int max_threads) {
  LLVMSetFunctionCallConv(fn, 71 /* CallingConv::PTX_Kernel */);
  char threads[16];
  int n = snprintf(threads, sizeof threads, "%d", max_threads);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(ir->ctx, "nvvm.maxntid", 12, threads, (unsigned)n));
  /* Without .maxnreg, ptxas 13 caps some 256-thread kernels at 128 registers and spills rather than
   * use the 255 a single resident block may have. */
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(ir->ctx, "nvvm.maxnreg", 12, "255", 3));
}

LLVMValueRef cuda_ir_opaque(cuda_ir *ir, LLVMValueRef value_i32) {
  LLVMTypeRef i32 = LLVMInt32TypeInContext(ir->ctx);
  LLVMTypeRef type = LLVMFunctionType(i32, &i32, 1, 0);
  static const char code[] = "mov.b32 $0, $1;", constraints[] = "=r,r";
  LLVMValueRef asm_value = LLVMGetInlineAsm(type, (char *)code, sizeof code - 1, (char *)constraints,
                                            sizeof constraints - 1, 1 /* side effects */, 0,
                                            LLVMInlineAsmDialectATT, 0);
  return LLVMBuildCall2(ir->b, type, asm_value, &value_i32, 1, "");
}

LLVMValueRef cuda_ir_thread_index(cuda_ir *ir) {
  return cuda_call(ir, "llvm.nvvm.read.ptx.sreg.tid.x", NULL, NULL, 0);
}

LLVMValueRef cuda_ir_block_index(cuda_ir *ir) {
  return cuda_call(ir, "llvm.nvvm.read.ptx.sreg.ctaid.x", NULL, NULL, 0);
}

void cuda_ir_barrier(cuda_ir *ir) {
  LLVMValueRef zero = LLVMConstInt(LLVMInt32TypeInContext(ir->ctx), 0, 0);
  cuda_call(ir, "llvm.nvvm.barrier.cta.sync.aligned.all", NULL, &zero, 1);
}

LLVMValueRef cuda_ir_shfl_xor(cuda_ir *ir, LLVMValueRef value_f32, int lane_mask) {
  LLVMTypeRef i32 = LLVMInt32TypeInContext(ir->ctx);
  /* Members: the whole warp; clamp 0x1f: a butterfly never leaves the warp. */
  LLVMValueRef args[4] = {LLVMConstInt(i32, 0xffffffffu, 0), value_f32,
                          LLVMConstInt(i32, (unsigned)lane_mask, 0), LLVMConstInt(i32, 0x1f, 0)};
  return cuda_call(ir, "llvm.nvvm.shfl.sync.bfly.f32", NULL, args, 4);
}

LLVMValueRef cuda_ir_vote_any(cuda_ir *ir, LLVMValueRef predicate) {
  LLVMValueRef args[2] = {LLVMConstInt(LLVMInt32TypeInContext(ir->ctx), 0xffffffffu, 0), predicate};
  return cuda_call(ir, "llvm.nvvm.vote.any.sync", NULL, args, 2);
}

LLVMValueRef cuda_ir_ex2(cuda_ir *ir, LLVMValueRef x) {
  return cuda_call(ir, "llvm.nvvm.ex2.approx.ftz", LLVMFloatTypeInContext(ir->ctx), &x, 1);
}

LLVMValueRef cuda_ir_lg2(cuda_ir *ir, LLVMValueRef x) {
  return cuda_call(ir, "llvm.nvvm.lg2.approx.f", NULL, &x, 1);
}

/* LLVM 22 has no nvvm tanh intrinsic (it upgrades llvm.nvvm.tanh.approx.f32 to this): llvm.tanh with the
 * approximate-function flag is what the NVPTX backend selects tanh.approx.f32 for. */
LLVMValueRef cuda_ir_tanh(cuda_ir *ir, LLVMValueRef x) {
  LLVMValueRef call = cuda_call(ir, "llvm.tanh", LLVMFloatTypeInContext(ir->ctx), &x, 1);
  LLVMSetFastMathFlags(call, LLVMFastMathApproxFunc);
  return call;
}

void cuda_ir_mma_m16n8k16(cuda_ir *ir, int bf16, LLVMValueRef const a[4], LLVMValueRef const b[2],
                          LLVMValueRef const c[4], LLVMValueRef d[4]) {
  LLVMValueRef args[10];
  /* The f16 form takes <2 x half> operands, the bf16 form i32: the same bits either way. */
  LLVMTypeRef half2 = LLVMVectorType(LLVMHalfTypeInContext(ir->ctx), 2);
  for (int i = 0; i < 4; i++) args[i] = bf16 ? a[i] : LLVMBuildBitCast(ir->b, a[i], half2, "");
  for (int i = 0; i < 2; i++) args[4 + i] = bf16 ? b[i] : LLVMBuildBitCast(ir->b, b[i], half2, "");
  for (int i = 0; i < 4; i++) args[6 + i] = c[i];
  LLVMValueRef result = cuda_call(ir, bf16 ? "llvm.nvvm.mma.m16n8k16.row.col.bf16"
                                           : "llvm.nvvm.mma.m16n8k16.row.col.f32.f32",
                                  NULL, args, 10);
  for (unsigned i = 0; i < 4; i++) d[i] = LLVMBuildExtractValue(ir->b, result, i, "");
}

void cuda_ir_ldmatrix_x4(cuda_ir *ir, LLVMValueRef shared_address, int transpose, LLVMValueRef out[4]) {
  LLVMTypeRef shared_ptr = LLVMPointerTypeInContext(ir->ctx, CUDA_AS_SHARED);
  LLVMValueRef result = cuda_call(ir,
                                  transpose ? "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.trans.b16"
                                            : "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16",
                                  shared_ptr, &shared_address, 1);
  for (unsigned i = 0; i < 4; i++) out[i] = LLVMBuildExtractValue(ir->b, result, i, "");
}

void cuda_ir_cp_async_16(cuda_ir *ir, LLVMValueRef shared_address, LLVMValueRef global_address,
                         LLVMValueRef src_bytes) {
  LLVMValueRef args[3] = {shared_address, global_address, src_bytes};
  cuda_call(ir, "llvm.nvvm.cp.async.cg.shared.global.16.s", NULL, args, 3);
}

void cuda_ir_cp_async_commit(cuda_ir *ir) {
  cuda_call(ir, "llvm.nvvm.cp.async.commit.group", NULL, NULL, 0);
}

void cuda_ir_cp_async_wait(cuda_ir *ir, int pending) {
  LLVMValueRef n = LLVMConstInt(LLVMInt32TypeInContext(ir->ctx), (unsigned)(pending < 0 ? 0 : pending), 0);
  cuda_call(ir, "llvm.nvvm.cp.async.wait.group", NULL, &n, 1);
}

LLVMValueRef cuda_ir_dynamic_shared(cuda_ir *ir) {
  static const char name[] = "fj_dynamic_shared";
  LLVMValueRef global = LLVMGetNamedGlobal(ir->module, name);
  if (global) return global;
  LLVMTypeRef type = LLVMArrayType2(LLVMInt8TypeInContext(ir->ctx), 0);
  global = LLVMAddGlobalInAddressSpace(ir->module, type, name, CUDA_AS_SHARED);
  LLVMSetLinkage(global, LLVMExternalLinkage);
  /* 16 bytes: cp.async and ldmatrix rows are 16-byte units. */
  LLVMSetAlignment(global, 16);
  return global;
}

LLVMValueRef cuda_ir_pack2(cuda_ir *ir, int bf16, LLVMValueRef lo, LLVMValueRef hi) {
  LLVMTypeRef f32 = LLVMFloatTypeInContext(ir->ctx), i32 = LLVMInt32TypeInContext(ir->ctx);
  LLVMTypeRef pair = LLVMVectorType(f32, 2);
  LLVMValueRef v = LLVMBuildInsertElement(ir->b, LLVMGetPoison(pair), lo, LLVMConstInt(i32, 0, 0), "");
  v = LLVMBuildInsertElement(ir->b, v, hi, LLVMConstInt(i32, 1, 0), "");
  LLVMTypeRef narrow = LLVMVectorType(bf16 ? LLVMBFloatTypeInContext(ir->ctx) : LLVMHalfTypeInContext(ir->ctx), 2);
  return LLVMBuildBitCast(ir->b, LLVMBuildFPTrunc(ir->b, v, narrow, ""), i32, "");
}

size_t cuda_ir_shared_limit(const char *arch) {
  static const struct {
    const char *arch;
    size_t kib;
  } limits[] = {
      {"sm_80", 163}, {"sm_86", 99},  {"sm_87", 163},  {"sm_89", 99},   {"sm_90", 227},  {"sm_90a", 227},
      {"sm_100", 227}, {"sm_100a", 227}, {"sm_101", 227}, {"sm_101a", 227}, {"sm_103", 227},
      {"sm_103a", 227}, {"sm_120", 99}, {"sm_120a", 99}, {"sm_121", 99}, {"sm_121a", 99},
  };
  if (!arch) return 0;
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
    if (strcmp(limits[i].arch, arch) == 0) return limits[i].kib * 1024;
  return 0;
}
