/* tile_cpu.c: the tile vocabulary lowered to LLVM IR for vector CPUs. Everything is target-independent
 * IR (vector types, llvm.fma, llvm.floor-style intrinsics), so the X86 backend picks AVX-512 or AVX2
 * from the function's cpu/features attributes; nothing here names an x86 instruction but the bf16 pair
 * dot (LLVM has no target-independent form of it), and nothing emits a libm call (exp2 is a polynomial)
 * so the generated code never depends on symbols at load time. */
#include "tile/tile.h"

#include <string.h>

#include <llvm-c/DebugInfo.h> /* LLVMTemporaryMDNode: a loop's self-referencing metadata */

/* overload: the type an overloaded intrinsic is declared for, NULL for one that is not overloaded */
static LLVMValueRef call_intrinsic(tile_builder *tb, const char *name, LLVMTypeRef overload,
                                   LLVMValueRef *args, unsigned count) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef types[1] = {overload};
  size_t overloads = overload != NULL ? 1 : 0;
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(tb->module, id, types, overloads);
  LLVMTypeRef fn_type = LLVMIntrinsicGetType(tb->ctx, id, types, overloads);
  return LLVMBuildCall2(tb->b, fn_type, fn, args, count, "");
}

/* insertelement + shufflevector with a zero mask: what LLVM's own vector splat builds. */
static LLVMValueRef splat_value(tile_builder *tb, LLVMValueRef scalar) {
  LLVMTypeRef type = LLVMVectorType(LLVMTypeOf(scalar), (unsigned)tb->lanes);
  LLVMValueRef one = LLVMBuildInsertElement(tb->b, LLVMGetPoison(type), scalar,
                                            LLVMConstInt(tb->i32, 0, 0), "");
  LLVMTypeRef mask_type = LLVMVectorType(tb->i32, (unsigned)tb->lanes);
  return LLVMBuildShuffleVector(tb->b, one, LLVMGetPoison(type), LLVMConstNull(mask_type), "");
}

void tile_builder_init(tile_builder *tb, LLVMModuleRef module, int lanes) {
  memset(tb, 0, sizeof *tb);
  tb->module = module;
  tb->ctx = LLVMGetModuleContext(module);
  tb->lanes = lanes;
  tb->f32 = LLVMFloatTypeInContext(tb->ctx);
  tb->f16 = LLVMHalfTypeInContext(tb->ctx);
  tb->i1 = LLVMInt1TypeInContext(tb->ctx);
  tb->i8 = LLVMInt8TypeInContext(tb->ctx);
  tb->i16 = LLVMInt16TypeInContext(tb->ctx);
  tb->i32 = LLVMInt32TypeInContext(tb->ctx);
  tb->i64 = LLVMInt64TypeInContext(tb->ctx);
  tb->ptr = LLVMPointerTypeInContext(tb->ctx, 0);
  tb->vec = LLVMVectorType(tb->f32, (unsigned)lanes);
  tb->void_type = LLVMVoidTypeInContext(tb->ctx);
}

void tile_function_open(tile_builder *tb, LLVMValueRef fn, const jit_target *target) {
  tb->function = fn;
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(tb->ctx, "target-cpu", 10, target->cpu,
                                                    (unsigned)strlen(target->cpu)));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(tb->ctx, "target-features", 15, target->features,
                                                    (unsigned)strlen(target->features)));
  unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(tb->ctx, nounwind, 0));
  tb->b = LLVMCreateBuilderInContext(tb->ctx);
  tb->entry = LLVMAppendBasicBlockInContext(tb->ctx, fn, "entry");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(tb->ctx, fn, "body");
  LLVMPositionBuilderAtEnd(tb->b, tb->entry);
  LLVMBuildBr(tb->b, body);
  LLVMPositionBuilderAtEnd(tb->b, body);
}

LLVMValueRef tile_function_begin(tile_builder *tb, LLVMModuleRef module, const jit_target *target,
                                 const char *name, int lanes) {
  tile_builder_init(tb, module, lanes);
  LLVMTypeRef params[3] = {tb->ptr, tb->i64, tb->ptr};
  LLVMValueRef fn = LLVMAddFunction(module, name, LLVMFunctionType(tb->void_type, params, 3, 0));
  /* Wide vectors are the point: without this, X86 prefers 256-bit vectors on some AVX-512 parts. */
  if (target->vector_bits >= 512)
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(tb->ctx, "prefer-vector-width", 19, "512", 3));
  unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
  LLVMAddAttributeAtIndex(fn, 3, LLVMCreateEnumAttribute(tb->ctx, noalias, 0)); /* scratch */
  tile_function_open(tb, fn, target);
  return fn;
}

void tile_function_end(tile_builder *tb) {
  LLVMBuildRetVoid(tb->b);
  LLVMDisposeBuilder(tb->b);
  tb->b = NULL;
}

/* ---- scalars ---- */
LLVMValueRef tile_i64(tile_builder *tb, int64_t value) {
  return LLVMConstInt(tb->i64, (unsigned long long)value, 1);
}
LLVMValueRef tile_f32(tile_builder *tb, float value) { return LLVMConstReal(tb->f32, value); }
LLVMValueRef tile_add(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildAdd(tb->b, a, b, "");
}
LLVMValueRef tile_sub(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSub(tb->b, a, b, "");
}
LLVMValueRef tile_mul(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildMul(tb->b, a, b, "");
}
LLVMValueRef tile_lt(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildICmp(tb->b, LLVMIntSLT, a, b, "");
}
LLVMValueRef tile_min(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(tb->b, tile_lt(tb, a, b), a, b, "");
}
LLVMValueRef tile_max(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(tb->b, tile_lt(tb, a, b), b, a, "");
}

LLVMValueRef tile_var(tile_builder *tb, LLVMTypeRef type, LLVMValueRef initial, const char *name) {
  LLVMBasicBlockRef here = LLVMGetInsertBlock(tb->b);
  LLVMPositionBuilderBefore(tb->b, LLVMGetBasicBlockTerminator(tb->entry));
  LLVMValueRef slot = LLVMBuildAlloca(tb->b, type, name);
  LLVMPositionBuilderAtEnd(tb->b, here);
  if (initial) LLVMBuildStore(tb->b, initial, slot);
  return slot;
}
LLVMValueRef tile_get(tile_builder *tb, LLVMValueRef var) {
  return LLVMBuildLoad2(tb->b, LLVMGetAllocatedType(var), var, "");
}
void tile_set(tile_builder *tb, LLVMValueRef var, LLVMValueRef value) { LLVMBuildStore(tb->b, value, var); }

/* ---- control flow ---- */
LLVMValueRef tile_for(tile_builder *tb, tile_loop *loop, LLVMValueRef begin, LLVMValueRef end,
                      LLVMValueRef step, const char *name) {
  loop->rolled = 0;
  loop->counter = tile_var(tb, tb->i64, begin, name);
  loop->end = end;
  loop->step = step;
  loop->test = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "for.test");
  loop->body = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "for.body");
  loop->done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "for.done");
  LLVMBuildBr(tb->b, loop->test);
  LLVMPositionBuilderAtEnd(tb->b, loop->test);
  LLVMValueRef i = tile_get(tb, loop->counter);
  LLVMBuildCondBr(tb->b, tile_lt(tb, i, end), loop->body, loop->done);
  LLVMPositionBuilderAtEnd(tb->b, loop->body);
  return tile_get(tb, loop->counter);
}

void tile_end_for(tile_builder *tb, tile_loop *loop) {
  LLVMValueRef i = tile_get(tb, loop->counter);
  tile_set(tb, loop->counter, LLVMBuildNSWAdd(tb->b, i, loop->step, ""));
  LLVMValueRef back = LLVMBuildBr(tb->b, loop->test);
  if (loop->rolled) {  /* !llvm.loop !{!self, !{!"llvm.loop.unroll.disable"}} */
    LLVMMetadataRef self = LLVMTemporaryMDNode(tb->ctx, NULL, 0);
    LLVMMetadataRef disable = LLVMMDStringInContext2(tb->ctx, "llvm.loop.unroll.disable", 24);
    LLVMMetadataRef fields[2] = {self, LLVMMDNodeInContext2(tb->ctx, &disable, 1)};
    LLVMMetadataRef id = LLVMMDNodeInContext2(tb->ctx, fields, 2);
    LLVMMetadataReplaceAllUsesWith(self, id);
    LLVMSetMetadata(back, LLVMGetMDKindIDInContext(tb->ctx, "llvm.loop", 9), LLVMMetadataAsValue(tb->ctx, id));
  }
  LLVMPositionBuilderAtEnd(tb->b, loop->done);
}

void tile_if_begin(tile_builder *tb, tile_if *branch, LLVMValueRef condition) {
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "if.then");
  branch->done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "if.done");
  LLVMBuildCondBr(tb->b, condition, then, branch->done);
  LLVMPositionBuilderAtEnd(tb->b, then);
}

void tile_if_end(tile_builder *tb, tile_if *branch) {
  LLVMBuildBr(tb->b, branch->done);
  LLVMPositionBuilderAtEnd(tb->b, branch->done);
}

void tile_return_unless(tile_builder *tb, LLVMValueRef go_on) {
  LLVMBasicBlockRef stop = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "return");
  LLVMBasicBlockRef rest = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "go_on");
  LLVMBuildCondBr(tb->b, go_on, rest, stop);
  LLVMPositionBuilderAtEnd(tb->b, stop);
  LLVMBuildRetVoid(tb->b);
  LLVMPositionBuilderAtEnd(tb->b, rest);
}

/* ---- memory ---- */
static LLVMValueRef byte_address(tile_builder *tb, LLVMValueRef base, size_t offset) {
  LLVMValueRef index = tile_i64(tb, (int64_t)offset);
  return LLVMBuildGEP2(tb->b, LLVMInt8TypeInContext(tb->ctx), base, &index, 1, "");
}

LLVMValueRef tile_load_param_ptr(tile_builder *tb, LLVMValueRef block, size_t offset) {
  return LLVMBuildLoad2(tb->b, tb->ptr, byte_address(tb, block, offset), "");
}
LLVMValueRef tile_load_param_i64(tile_builder *tb, LLVMValueRef block, size_t offset) {
  return LLVMBuildLoad2(tb->b, tb->i64, byte_address(tb, block, offset), "");
}
LLVMValueRef tile_load_param_f32(tile_builder *tb, LLVMValueRef block, size_t offset) {
  return LLVMBuildLoad2(tb->b, tb->f32, byte_address(tb, block, offset), "");
}

static LLVMTypeRef storage_type(tile_builder *tb, dtype_id dtype) {
  switch (dtype) {
  case DTYPE_F16: return tb->f16;
  case DTYPE_BF16: return tb->i16; /* converted by bit manipulation: no bf16 instructions needed */
  case DTYPE_E4M3:
  case DTYPE_E5M2: return tb->i8;  /* likewise */
  default: return tb->f32;
  }
}

static LLVMValueRef element_address(tile_builder *tb, LLVMValueRef base, LLVMValueRef index,
                                    LLVMTypeRef type) {
  return LLVMBuildInBoundsGEP2(tb->b, type, base, &index, 1, "");
}

/* bf16 -> f32 is exact: the bf16 bits become the high half of the f32. Works lane-wise on vectors. */
static LLVMValueRef bf16_bits_to_f32(tile_builder *tb, LLVMValueRef bits, LLVMTypeRef int_type,
                                     LLVMTypeRef float_type, LLVMValueRef sixteen) {
  LLVMValueRef wide = LLVMBuildZExt(tb->b, bits, int_type, "");
  return LLVMBuildBitCast(tb->b, LLVMBuildShl(tb->b, wide, sixteen, ""), float_type, "");
}

/* A constant of `like`'s shape: the scalar itself, or a vector of it as wide as `like`. */
static LLVMValueRef shaped_constant(LLVMValueRef like, LLVMValueRef scalar) {
  LLVMTypeRef type = LLVMTypeOf(like);
  if (LLVMGetTypeKind(type) != LLVMVectorTypeKind) return scalar;
  LLVMValueRef copies[64];  /* the widest vector this layer builds: 2 x 16 lanes of bf16 pairs */
  unsigned n = LLVMGetVectorSize(type);
  if (n > 64) n = 64;
  for (unsigned i = 0; i < n; i++) copies[i] = scalar;
  return LLVMConstVector(copies, n);
}

/* The type of `like`'s shape with elements of `element`. */
static LLVMTypeRef shaped_type(LLVMValueRef like, LLVMTypeRef element) {
  LLVMTypeRef type = LLVMTypeOf(like);
  return LLVMGetTypeKind(type) == LLVMVectorTypeKind ? LLVMVectorType(element, LLVMGetVectorSize(type)) : element;
}

/* fp8 bits (i8, scalar or vector) -> fp32, exactly and with no fp8 instructions, through the fp16
 * conversion every target has (F16C on x86, cvt.f32.f16 on NVIDIA GPUs). E5M2 is the high byte of an fp16. E4M3 ("fn", bias 7, no
 * infinities) shifted into an fp16's exponent and mantissa (sign to bit 15, the 7 magnitude bits to
 * bits 13..7) is its value times 2^-8, subnormals included (fp16's range holds them all as normals or
 * subnormals of the same spacing), so one multiply by 2^8 after the conversion gives it; its
 * S.1111.111 is NaN. */
LLVMValueRef tile_fp8_to_f32(tile_builder *tb, LLVMValueRef bits, dtype_id dtype) {
  LLVMTypeRef f32 = shaped_type(bits, tb->f32), f16 = shaped_type(bits, tb->f16);
  /* sign-extended and shifted by 7, the sign lands on bits 15 and 14: bit 14 cleared leaves the fp16 */
  LLVMValueRef x = LLVMBuildSExt(tb->b, bits, shaped_type(bits, tb->i16), "");
#define I16(v) shaped_constant(x, LLVMConstInt(tb->i16, (v), 0))
  if (dtype == DTYPE_E5M2)
    return LLVMBuildFPExt(tb->b, LLVMBuildBitCast(tb->b, LLVMBuildShl(tb->b, x, I16(8), ""), f16, ""), f32, "");
  LLVMValueRef half = LLVMBuildAnd(tb->b, LLVMBuildShl(tb->b, x, I16(7), ""), I16(0xbfff), "");
  LLVMValueRef is_nan = LLVMBuildICmp(tb->b, LLVMIntEQ, LLVMBuildAnd(tb->b, x, I16(0x7f), ""), I16(0x7f), "");
  half = LLVMBuildSelect(tb->b, is_nan, I16(0x7e00), half, "");
#undef I16
  LLVMValueRef value = LLVMBuildFPExt(tb->b, LLVMBuildBitCast(tb->b, half, f16, ""), f32, "");
  return LLVMBuildFMul(tb->b, value, shaped_constant(value, tile_f32(tb, 256.0f)), "");
}

LLVMValueRef tile_load_element(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype) {
  LLVMTypeRef type = storage_type(tb, dtype);
  LLVMValueRef value = LLVMBuildLoad2(tb->b, type, element_address(tb, base, index, type), "");
  if (dtype == DTYPE_F16) return LLVMBuildFPExt(tb->b, value, tb->f32, "");
  if (dtype == DTYPE_BF16)
    return bf16_bits_to_f32(tb, value, tb->i32, tb->f32, LLVMConstInt(tb->i32, 16, 0));
  if (core_dtype_is_fp8(dtype)) return tile_fp8_to_f32(tb, value, dtype);
  return value;
}

/* f32 -> bf16 with round-to-nearest-even; NaN stays a (quiet) NaN. */
static LLVMValueRef f32_to_bf16_bits(tile_builder *tb, LLVMValueRef value) {
  LLVMValueRef bits = LLVMBuildBitCast(tb->b, value, tb->i32, "");
  LLVMValueRef lsb = LLVMBuildAnd(tb->b, LLVMBuildLShr(tb->b, bits, LLVMConstInt(tb->i32, 16, 0), ""),
                                  LLVMConstInt(tb->i32, 1, 0), "");
  LLVMValueRef bias = LLVMBuildAdd(tb->b, lsb, LLVMConstInt(tb->i32, 0x7FFF, 0), "");
  LLVMValueRef rounded = LLVMBuildLShr(tb->b, LLVMBuildAdd(tb->b, bits, bias, ""),
                                       LLVMConstInt(tb->i32, 16, 0), "");
  LLVMValueRef is_nan = LLVMBuildFCmp(tb->b, LLVMRealUNO, value, value, "");
  LLVMValueRef result = LLVMBuildSelect(tb->b, is_nan, LLVMConstInt(tb->i32, 0x7FC0, 0), rounded, "");
  return LLVMBuildTrunc(tb->b, result, tb->i16, "");
}

void tile_store_element(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype,
                        LLVMValueRef value) {
  LLVMTypeRef type = storage_type(tb, dtype);
  LLVMValueRef stored = value;
  if (dtype == DTYPE_F16) stored = LLVMBuildFPTrunc(tb->b, value, tb->f16, "");
  if (dtype == DTYPE_BF16) stored = f32_to_bf16_bits(tb, value);
  LLVMBuildStore(tb->b, stored, element_address(tb, base, index, type));
}

LLVMValueRef tile_gather(tile_builder *tb, LLVMValueRef base, LLVMValueRef indices, LLVMValueRef offset,
                         dtype_id dtype) {
  LLVMTypeRef element = storage_type(tb, dtype);
  indices = LLVMBuildAdd(tb->b, indices, splat_value(tb, offset), "");
  LLVMTypeRef type = LLVMVectorType(element, (unsigned)tb->lanes);
  LLVMValueRef pointers = LLVMBuildInBoundsGEP2(tb->b, element, base, &indices, 1, "");
  /* llvm.masked.gather(pointers, mask, passthru), overloaded on the result and the pointer vector */
  const char *name = "llvm.masked.gather";
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef types[2] = {type, LLVMTypeOf(pointers)};
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(tb->module, id, types, 2);
  LLVMTypeRef fn_type = LLVMIntrinsicGetType(tb->ctx, id, types, 2);
  LLVMValueRef all = splat_value(tb, LLVMConstInt(tb->i1, 1, 0));
  LLVMValueRef args[3] = {pointers, all, LLVMGetPoison(type)};
  LLVMValueRef load = LLVMBuildCall2(tb->b, fn_type, fn, args, 3, "");
  if (dtype == DTYPE_F16) return LLVMBuildFPExt(tb->b, load, tb->vec, "");
  if (dtype == DTYPE_BF16) {
    LLVMTypeRef ivec = LLVMVectorType(tb->i32, (unsigned)tb->lanes);
    return bf16_bits_to_f32(tb, load, ivec, tb->vec, splat_value(tb, LLVMConstInt(tb->i32, 16, 0)));
  }
  return load;
}

LLVMValueRef tile_load_vector(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype) {
  LLVMTypeRef element = storage_type(tb, dtype);
  LLVMTypeRef type = LLVMVectorType(element, (unsigned)tb->lanes);
  LLVMValueRef load = LLVMBuildLoad2(tb->b, type, element_address(tb, base, index, element), "");
  LLVMSetAlignment(load, (unsigned)core_dtype_size(dtype));
  if (dtype == DTYPE_F16) return LLVMBuildFPExt(tb->b, load, tb->vec, "");
  if (dtype == DTYPE_BF16) {
    LLVMTypeRef ivec = LLVMVectorType(tb->i32, (unsigned)tb->lanes);
    LLVMValueRef sixteen = splat_value(tb, LLVMConstInt(tb->i32, 16, 0));
    return bf16_bits_to_f32(tb, load, ivec, tb->vec, sixteen);
  }
  if (core_dtype_is_fp8(dtype)) return tile_fp8_to_f32(tb, load, dtype);
  return load;
}

void tile_prefetch(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, dtype_id dtype) {
  /* A plain GEP: the address may lie past the tensor, which a prefetch allows and inbounds does not. */
  LLVMValueRef address = LLVMBuildGEP2(tb->b, storage_type(tb, dtype), base, &index, 1, "");
  unsigned id = LLVMLookupIntrinsicID("llvm.prefetch", strlen("llvm.prefetch"));
  LLVMTypeRef types[1] = {LLVMTypeOf(address)};
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(tb->module, id, types, 1);
  LLVMTypeRef fn_type = LLVMIntrinsicGetType(tb->ctx, id, types, 1);
  /* read, keep in all cache levels, data cache */
  LLVMValueRef args[4] = {address, LLVMConstInt(tb->i32, 0, 0), LLVMConstInt(tb->i32, 3, 0),
                          LLVMConstInt(tb->i32, 1, 0)};
  LLVMBuildCall2(tb->b, fn_type, fn, args, 4, "");
}

void tile_store_vector(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, LLVMValueRef value) {
  LLVMValueRef store = LLVMBuildStore(tb->b, value, element_address(tb, base, index, tb->f32));
  LLVMSetAlignment(store, 4);
}

LLVMValueRef tile_load_f32(tile_builder *tb, LLVMValueRef base, LLVMValueRef index) {
  return LLVMBuildLoad2(tb->b, tb->f32, element_address(tb, base, index, tb->f32), "");
}
void tile_store_f32(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, LLVMValueRef value) {
  LLVMBuildStore(tb->b, value, element_address(tb, base, index, tb->f32));
}

/* ---- bf16 pairs ---- */
LLVMValueRef tile_load_bits(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, int count) {
  LLVMTypeRef type = count == 1 ? tb->i16 : LLVMVectorType(tb->i16, (unsigned)count);
  LLVMValueRef load = LLVMBuildLoad2(tb->b, type, element_address(tb, base, index, tb->i16), "");
  LLVMSetAlignment(load, 2);
  return load;
}

void tile_store_bits(tile_builder *tb, LLVMValueRef base, LLVMValueRef index, LLVMValueRef bits) {
  LLVMValueRef store = LLVMBuildStore(tb->b, bits, element_address(tb, base, index, tb->i16));
  LLVMSetAlignment(store, 2);
}

LLVMValueRef tile_splat_pair(tile_builder *tb, LLVMValueRef base, LLVMValueRef index) {
  LLVMValueRef pair = LLVMBuildLoad2(tb->b, tb->i32, element_address(tb, base, index, tb->i16), "");
  LLVMSetAlignment(pair, 2);
  return LLVMBuildBitCast(tb->b, splat_value(tb, pair), LLVMVectorType(tb->i16, 2u * (unsigned)tb->lanes), "");
}

LLVMValueRef tile_interleave(tile_builder *tb, LLVMValueRef even, LLVMValueRef odd) {
  unsigned n = LLVMGetVectorSize(LLVMTypeOf(even));
  LLVMValueRef mask[128];
  for (unsigned i = 0; i < 2 * n; i++) mask[i] = LLVMConstInt(tb->i32, i / 2 + (i % 2) * n, 0);
  return LLVMBuildShuffleVector(tb->b, even, odd, LLVMConstVector(mask, 2 * n), "");
}

LLVMValueRef tile_exact_bf16_bits(tile_builder *tb, LLVMValueRef value) {
  LLVMValueRef bits = LLVMBuildBitCast(tb->b, value, shaped_type(value, tb->i32), "");
  bits = LLVMBuildLShr(tb->b, bits, shaped_constant(bits, LLVMConstInt(tb->i32, 16, 0)), "");
  return LLVMBuildTrunc(tb->b, bits, shaped_type(value, tb->i16), "");
}

LLVMValueRef tile_bf16_pairs(tile_builder *tb, LLVMValueRef even, LLVMValueRef odd) {
  LLVMTypeRef bf16 = LLVMVectorType(LLVMBFloatTypeInContext(tb->ctx), (unsigned)tb->lanes);
  LLVMTypeRef bits = LLVMVectorType(tb->i16, (unsigned)tb->lanes);
  LLVMValueRef e = LLVMBuildBitCast(tb->b, LLVMBuildFPTrunc(tb->b, even, bf16, ""), bits, "");
  LLVMValueRef o = LLVMBuildBitCast(tb->b, LLVMBuildFPTrunc(tb->b, odd, bf16, ""), bits, "");
  return tile_interleave(tb, e, o);
}

LLVMValueRef tile_pair_dot(tile_builder *tb, LLVMValueRef acc, LLVMValueRef a, LLVMValueRef b) {
  LLVMTypeRef pairs = LLVMVectorType(LLVMBFloatTypeInContext(tb->ctx), 2u * (unsigned)tb->lanes);
  LLVMValueRef args[3] = {acc, LLVMBuildBitCast(tb->b, a, pairs, ""), LLVMBuildBitCast(tb->b, b, pairs, "")};
  return call_intrinsic(tb, "llvm.x86.avx512bf16.dpbf16ps.512", NULL, args, 3);
}

/* ---- vectors ---- */
LLVMValueRef tile_splat(tile_builder *tb, LLVMValueRef scalar) {
  return splat_value(tb, scalar);
}
LLVMValueRef tile_splat_f32(tile_builder *tb, float value) {
  return tile_splat(tb, tile_f32(tb, value));
}

LLVMValueRef tile_lane_index(tile_builder *tb, LLVMValueRef first) {
  LLVMValueRef lanes[64];
  for (int i = 0; i < tb->lanes; i++) lanes[i] = LLVMConstInt(tb->i64, (unsigned long long)i, 0);
  LLVMValueRef steps = LLVMConstVector(lanes, (unsigned)tb->lanes);
  return LLVMBuildAdd(tb->b, splat_value(tb, first), steps, "");
}

LLVMValueRef tile_fma(tile_builder *tb, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  return call_intrinsic(tb, "llvm.fma", LLVMTypeOf(a), args, 3);
}
LLVMValueRef tile_vmax(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  /* Not maxnum: a plain compare-select lowers to one vmaxps and -inf behaves as expected. */
  return LLVMBuildSelect(tb->b, LLVMBuildFCmp(tb->b, LLVMRealOGT, a, b, ""), a, b, "");
}
LLVMValueRef tile_vmul(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFMul(tb->b, a, b, "");
}
LLVMValueRef tile_vadd(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFAdd(tb->b, a, b, "");
}
LLVMValueRef tile_vsub(tile_builder *tb, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFSub(tb->b, a, b, "");
}

/* 2^x = 2^n * 2^f with n = round(x), f in [-1/2, 1/2]; 2^f by its Taylor polynomial of degree 6
 * (truncation error (ln2/2)^7/7! ~ 1.2e-7). x is clamped to -127 first, where n + 127 = 0 makes the
 * scale's bit pattern exactly +0.0: masked scores (-inf) come out as exact zeros. */
LLVMValueRef tile_exp2(tile_builder *tb, LLVMValueRef x) {
  static const double taylor[7] = {1.0,
                                   0.6931471805599453,
                                   0.2402265069591007,
                                   0.05550410866482158,
                                   0.009618129107628477,
                                   0.0013333558146428443,
                                   0.00015403530393381606};
  LLVMValueRef clamped = tile_vmax(tb, x, tile_splat_f32(tb, -127.0f));
  LLVMValueRef args[1] = {clamped};
  LLVMValueRef n = call_intrinsic(tb, "llvm.roundeven", tb->vec, args, 1);
  LLVMValueRef f = tile_vsub(tb, clamped, n);
  LLVMValueRef p = tile_splat_f32(tb, (float)taylor[6]);
  for (int k = 5; k >= 0; k--) p = tile_fma(tb, p, f, tile_splat_f32(tb, (float)taylor[k]));
  LLVMTypeRef ivec = LLVMVectorType(tb->i32, (unsigned)tb->lanes);
  LLVMValueRef ni = LLVMBuildFPToSI(tb->b, n, ivec, "");
  LLVMValueRef biased = LLVMBuildAdd(tb->b, ni, splat_value(tb, LLVMConstInt(tb->i32, 127, 0)), "");
  LLVMValueRef bits = LLVMBuildShl(tb->b, biased, splat_value(tb, LLVMConstInt(tb->i32, 23, 0)), "");
  return tile_vmul(tb, p, LLVMBuildBitCast(tb->b, bits, tb->vec, ""));
}

/* tanh(x) = sign(x) (1 - t) / (1 + t) with t = 2^(-2 log2(e) |x|) in (0, 1]; past |x| = 44 tile_exp2's
 * clamp makes t exactly 0 and the result +-1. */
LLVMValueRef tile_tanh(tile_builder *tb, LLVMValueRef x) {
  LLVMValueRef magnitude = call_intrinsic(tb, "llvm.fabs", tb->vec, &x, 1);
  LLVMValueRef t = tile_exp2(tb, tile_vmul(tb, magnitude, tile_splat_f32(tb, (float)(-2.0 * 1.4426950408889634))));
  LLVMValueRef one = tile_splat_f32(tb, 1.0f);
  LLVMValueRef args[2] = {LLVMBuildFDiv(tb->b, tile_vsub(tb, one, t), tile_vadd(tb, one, t), ""), x};
  return call_intrinsic(tb, "llvm.copysign", tb->vec, args, 2);
}

LLVMValueRef tile_log2(tile_builder *tb, LLVMValueRef x) {
  LLVMValueRef args[1] = {x};
  return call_intrinsic(tb, "llvm.log2", tb->f32, args, 1);
}

LLVMValueRef tile_exp2_f32(tile_builder *tb, LLVMValueRef x) {
  LLVMValueRef args[1] = {x};
  return call_intrinsic(tb, "llvm.exp2", tb->f32, args, 1);
}

LLVMValueRef tile_extract(tile_builder *tb, LLVMValueRef vector, int lane) {
  return LLVMBuildExtractElement(tb->b, vector, LLVMConstInt(tb->i32, (unsigned long long)lane, 0), "");
}

/* ---- register tiles ---- */
tile_regs tile_regs_new(tile_builder *tb, int rows, int vectors, const char *name) {
  tile_regs t = {rows, vectors, NULL};
  t.slot = tile_var(tb, LLVMArrayType2(tb->vec, (uint64_t)rows * (uint64_t)vectors), NULL, name);
  return t;
}

static LLVMValueRef regs_address(tile_builder *tb, const tile_regs *t, int row, int vector) {
  LLVMValueRef index[2] = {LLVMConstInt(tb->i64, 0, 0),
                           LLVMConstInt(tb->i64, (unsigned long long)(row * t->vectors + vector), 0)};
  return LLVMBuildInBoundsGEP2(tb->b, LLVMGetAllocatedType(t->slot), t->slot, index, 2, "");
}

LLVMValueRef tile_regs_get(tile_builder *tb, const tile_regs *t, int row, int vector) {
  return LLVMBuildLoad2(tb->b, tb->vec, regs_address(tb, t, row, vector), "");
}
void tile_regs_set(tile_builder *tb, const tile_regs *t, int row, int vector, LLVMValueRef value) {
  LLVMBuildStore(tb->b, value, regs_address(tb, t, row, vector));
}
void tile_regs_fill(tile_builder *tb, const tile_regs *t, LLVMValueRef vector_value) {
  for (int r = 0; r < t->rows; r++)
    for (int v = 0; v < t->vectors; v++) tile_regs_set(tb, t, r, v, vector_value);
}
