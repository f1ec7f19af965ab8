/* nvptx_emu_module.c: turns an NVPTX kernel module into host code the emulator runs. Optionally first
 * the NVPTX O3 pipeline (what production hands to llc), then a rewrite with the LLVM C API: every call
 * of an llvm.nvvm.* intrinsic becomes a call of an emulator hook (struct results come back through a
 * stack slot: the C ABI of x86-64 has no four-member aggregate returns), the opaque `mov.b32` inline
 * asm becomes its operand, every load and store through an addrspace(1) or addrspace(3) pointer is
 * preceded by a check hook, and the kernel gets the C calling convention and a wrapper
 * `emu_entry(ptr params)` that passes the parameter block by value. Anything the emulator cannot give
 * a meaning to (an unknown intrinsic, other inline asm, atomics or memory intrinsics on device memory,
 * calls of external functions) fails the build with its name rather than being guessed at. The host
 * module is then retargeted, optimized, emitted and linked with ORC LLJIT, its hooks and
 * fj_dynamic_shared (the block's shared memory) resolved as absolute symbols. Addrspace(1) and (3)
 * pointers stay 64-bit plain host pointers: the host data layout gives every address space below 256
 * the default 64-bit pointer (the build checks the sizes) and X86 treats casts among them as no-ops
 * (the test's hand-written kernels check that in emitted code: they read and write through both). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "core/error.h"
#include "jit/jit_internal.h"
#include "nvptx_emu_banks.h"
#include "nvptx_emu_internal.h"

#define EMU_AS_GLOBAL 1
#define EMU_AS_SHARED 3
#define EMU_SHARED_SYMBOL "fj_dynamic_shared"
#define EMU_SITE_KINDS 32

typedef struct emu_rewriter {
  emu_kernel *kernel;
  LLVMModuleRef module;
  LLVMContextRef ctx;
  LLVMBuilderRef b;
  LLVMTargetDataRef layout;
  LLVMTypeRef i32, i64, f32, ptr, void_type;
  LLVMValueRef function;     /* the function being rewritten, and its result slots */
  LLVMValueRef f32x4_slot, i32x4_slot;
  const char *kinds[EMU_SITE_KINDS];  /* site numbering per kind of instruction */
  int kind_count[EMU_SITE_KINDS];
  char *why;
  size_t why_size;
  int failed;
} emu_rewriter;

static void emu_reject(emu_rewriter *rw, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void emu_reject(emu_rewriter *rw, const char *format, ...) {
  if (rw->failed) return;
  rw->failed = 1;
  va_list ap;
  va_start(ap, format);
  vsnprintf(rw->why, rw->why_size, format, ap);
  va_end(ap);
}

static int emu_starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* name is base or base plus an overload suffix (".p3"). */
static int emu_is(const char *name, const char *base) {
  size_t n = strlen(base);
  return strncmp(name, base, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

/* A numbered site for error messages: "<what> #<n> in block '<block>'", n counting sites of one kind. */
static int emu_new_site(emu_rewriter *rw, const char *what, LLVMValueRef instruction) {
  emu_kernel *k = rw->kernel;
  if (k->site_count == k->site_capacity) {
    int capacity = k->site_capacity ? 2 * k->site_capacity : 256;
    emu_site *grown = realloc(k->sites, (size_t)capacity * sizeof *grown);
    if (!grown) {
      emu_reject(rw, "out of memory numbering call sites");
      return 0;
    }
    k->sites = grown;
    k->site_capacity = capacity;
  }
  int kind = 0;
  while (kind < EMU_SITE_KINDS && rw->kinds[kind] && strcmp(rw->kinds[kind], what) != 0) kind++;
  int number = 0;
  if (kind < EMU_SITE_KINDS) {
    rw->kinds[kind] = what;
    number = rw->kind_count[kind]++;
  }
  const char *block = LLVMGetBasicBlockName(LLVMGetInstructionParent(instruction));
  snprintf(k->sites[k->site_count].text, sizeof k->sites[0].text, "%s #%d in block '%s'", what, number,
           block && *block ? block : "?");
  return k->site_count++;
}

static LLVMValueRef emu_i32(emu_rewriter *rw, long long value) {
  return LLVMConstInt(rw->i32, (unsigned long long)value, 1);
}

/* Declares (once) the hook `name` with the given C-compatible signature. */
static LLVMValueRef emu_hook(emu_rewriter *rw, const char *name, LLVMTypeRef result, LLVMTypeRef *params,
                             unsigned count, LLVMTypeRef *type_out) {
  LLVMTypeRef type = LLVMFunctionType(result, params, count, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(rw->module, name);
  if (!fn) fn = LLVMAddFunction(rw->module, name, type);
  *type_out = type;
  return fn;
}

static LLVMValueRef emu_call(emu_rewriter *rw, const char *name, LLVMTypeRef result, LLVMTypeRef *params,
                             LLVMValueRef *args, unsigned count) {
  LLVMTypeRef type;
  LLVMValueRef fn = emu_hook(rw, name, result, params, count, &type);
  return LLVMBuildCall2(rw->b, type, fn, args, count, "");
}

/* A device pointer as the plain host pointer it is. */
static LLVMValueRef emu_as_host_pointer(emu_rewriter *rw, LLVMValueRef pointer) {
  if (LLVMGetPointerAddressSpace(LLVMTypeOf(pointer)) == 0) return pointer;
  return LLVMBuildAddrSpaceCast(rw->b, pointer, rw->ptr, "");
}

/* A stack slot of 16 bytes in the function's entry block, shared by every struct-returning call of one
 * kind in it: each call's results are loaded right after it. */
static LLVMValueRef emu_result_slot(emu_rewriter *rw, int floats) {
  LLVMValueRef *slot = floats ? &rw->f32x4_slot : &rw->i32x4_slot;
  if (*slot) return *slot;
  LLVMBuilderRef entry = LLVMCreateBuilderInContext(rw->ctx);
  LLVMBasicBlockRef first = LLVMGetEntryBasicBlock(rw->function);
  LLVMValueRef at = LLVMGetFirstInstruction(first);
  if (at)
    LLVMPositionBuilderBefore(entry, at);
  else
    LLVMPositionBuilderAtEnd(entry, first);
  *slot = LLVMBuildAlloca(entry, LLVMArrayType2(floats ? rw->f32 : rw->i32, 4), floats ? "emu.f32x4" : "emu.i32x4");
  LLVMSetAlignment(*slot, 16);
  LLVMDisposeBuilder(entry);
  return *slot;
}

/* The struct of four the intrinsic returned, rebuilt from the slot the hook filled. */
static LLVMValueRef emu_struct_from_slot(emu_rewriter *rw, LLVMValueRef call, LLVMValueRef slot, LLVMTypeRef element) {
  LLVMValueRef result = LLVMGetPoison(LLVMTypeOf(call));
  LLVMTypeRef array = LLVMArrayType2(element, 4);
  for (unsigned i = 0; i < 4; i++) {
    LLVMValueRef indices[2] = {LLVMConstInt(rw->i64, 0, 0), LLVMConstInt(rw->i64, i, 0)};
    LLVMValueRef at = LLVMBuildInBoundsGEP2(rw->b, array, slot, indices, 2, "");
    result = LLVMBuildInsertValue(rw->b, result, LLVMBuildLoad2(rw->b, element, at, ""), i, "");
  }
  return result;
}

static void emu_replace(LLVMValueRef call, LLVMValueRef value) {
  if (value) LLVMReplaceAllUsesWith(call, value);
  LLVMInstructionEraseFromParent(call);
}

static const struct {
  const char *name;
  int code;
} emu_sregs[] = {
    {"llvm.nvvm.read.ptx.sreg.tid.x", EMU_SREG_TID_X},       {"llvm.nvvm.read.ptx.sreg.tid.y", EMU_SREG_TID_Y},
    {"llvm.nvvm.read.ptx.sreg.tid.z", EMU_SREG_TID_Z},       {"llvm.nvvm.read.ptx.sreg.ntid.x", EMU_SREG_NTID_X},
    {"llvm.nvvm.read.ptx.sreg.ntid.y", EMU_SREG_NTID_Y},     {"llvm.nvvm.read.ptx.sreg.ntid.z", EMU_SREG_NTID_Z},
    {"llvm.nvvm.read.ptx.sreg.ctaid.x", EMU_SREG_CTAID_X},   {"llvm.nvvm.read.ptx.sreg.ctaid.y", EMU_SREG_CTAID_Y},
    {"llvm.nvvm.read.ptx.sreg.ctaid.z", EMU_SREG_CTAID_Z},   {"llvm.nvvm.read.ptx.sreg.nctaid.x", EMU_SREG_NCTAID_X},
    {"llvm.nvvm.read.ptx.sreg.nctaid.y", EMU_SREG_NCTAID_Y}, {"llvm.nvvm.read.ptx.sreg.nctaid.z", EMU_SREG_NCTAID_Z},
    {"llvm.nvvm.read.ptx.sreg.laneid", EMU_SREG_LANEID},     {"llvm.nvvm.read.ptx.sreg.warpsize", EMU_SREG_WARPSIZE},
};

/* One call of an llvm.nvvm.* intrinsic. */
static void emu_rewrite_nvvm(emu_rewriter *rw, LLVMValueRef call, const char *name) {
  LLVMPositionBuilderBefore(rw->b, call);
  LLVMValueRef arg[10];
  unsigned argc = (unsigned)LLVMGetNumArgOperands(call);
  for (unsigned i = 0; i < argc && i < 10; i++) arg[i] = LLVMGetOperand(call, i);
  LLVMTypeRef i32 = rw->i32, f32 = rw->f32, ptr = rw->ptr, v = rw->void_type;

  for (size_t i = 0; i < sizeof emu_sregs / sizeof emu_sregs[0]; i++)
    if (strcmp(name, emu_sregs[i].name) == 0) {
      LLVMValueRef code = emu_i32(rw, emu_sregs[i].code);
      emu_replace(call, emu_call(rw, "emu_hook_sreg", i32, &i32, &code, 1));
      return;
    }
  if (strcmp(name, "llvm.nvvm.barrier.cta.sync.aligned.all") == 0 || strcmp(name, "llvm.nvvm.barrier0") == 0) {
    LLVMValueRef args[2] = {emu_i32(rw, emu_new_site(rw, "bar.sync", call)), argc ? arg[0] : emu_i32(rw, 0)};
    LLVMTypeRef types[2] = {i32, i32};
    (void)emu_call(rw, "emu_hook_barrier", v, types, args, 2);
    emu_replace(call, NULL);
    return;
  }
  if (strcmp(name, "llvm.nvvm.shfl.sync.bfly.f32") == 0 || strcmp(name, "llvm.nvvm.shfl.sync.bfly.i32") == 0) {
    int is_float = strcmp(name, "llvm.nvvm.shfl.sync.bfly.f32") == 0;
    LLVMValueRef value = is_float ? LLVMBuildBitCast(rw->b, arg[1], i32, "") : arg[1];
    LLVMValueRef args[5] = {emu_i32(rw, emu_new_site(rw, "shfl.sync.bfly", call)), arg[0], value, arg[2], arg[3]};
    LLVMTypeRef types[5] = {i32, i32, i32, i32, i32};
    LLVMValueRef result = emu_call(rw, "emu_hook_shfl_bfly", i32, types, args, 5);
    emu_replace(call, is_float ? LLVMBuildBitCast(rw->b, result, f32, "") : result);
    return;
  }
  if (strcmp(name, "llvm.nvvm.vote.any.sync") == 0) {
    LLVMValueRef args[3] = {emu_i32(rw, emu_new_site(rw, "vote.sync.any", call)), arg[0],
                            LLVMBuildZExt(rw->b, arg[1], i32, "")};
    LLVMTypeRef types[3] = {i32, i32, i32};
    LLVMValueRef result = emu_call(rw, "emu_hook_vote_any", i32, types, args, 3);
    emu_replace(call, LLVMBuildICmp(rw->b, LLVMIntNE, result, emu_i32(rw, 0), ""));
    return;
  }
  if (strcmp(name, "llvm.nvvm.ex2.approx.ftz.f32") == 0 || strcmp(name, "llvm.nvvm.lg2.approx.f") == 0 ||
      strcmp(name, "llvm.nvvm.lg2.approx.ftz.f") == 0) {
    const char *hook = emu_starts_with(name, "llvm.nvvm.ex2") ? "emu_hook_ex2_approx_ftz"
                       : strstr(name, "ftz")                 ? "emu_hook_lg2_approx_ftz"
                                                             : "emu_hook_lg2_approx";
    emu_replace(call, emu_call(rw, hook, f32, &f32, &arg[0], 1));
    return;
  }
  int bf16_mma = strcmp(name, "llvm.nvvm.mma.m16n8k16.row.col.bf16") == 0;
  if (bf16_mma || strcmp(name, "llvm.nvvm.mma.m16n8k16.row.col.f32.f32") == 0) {
    /* f16 operands come as <2 x half>, bf16 ones as i32: the same 32 bits either way. */
    LLVMValueRef args[15];
    LLVMTypeRef types[15];
    args[0] = emu_i32(rw, emu_new_site(rw, bf16_mma ? "mma.m16n8k16.bf16" : "mma.m16n8k16.f16", call));
    args[1] = emu_i32(rw, bf16_mma);
    types[0] = types[1] = i32;
    for (int i = 0; i < 6; i++) {
      args[2 + i] = LLVMTypeOf(arg[i]) == i32 ? arg[i] : LLVMBuildBitCast(rw->b, arg[i], i32, "");
      types[2 + i] = i32;
    }
    for (int i = 0; i < 4; i++) {
      args[8 + i] = arg[6 + i];
      types[8 + i] = f32;
    }
    args[12] = emu_result_slot(rw, 1);
    types[12] = ptr;
    (void)emu_call(rw, "emu_hook_mma_m16n8k16", v, types, args, 13);
    emu_replace(call, emu_struct_from_slot(rw, call, args[12], f32));
    return;
  }
  int trans = emu_is(name, "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.trans.b16");
  if (trans || emu_is(name, "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16")) {
    if (LLVMGetPointerAddressSpace(LLVMTypeOf(arg[0])) != EMU_AS_SHARED) {
      emu_reject(rw, "%s on a pointer in address space %u: only .shared ldmatrix is emulated", name,
                 LLVMGetPointerAddressSpace(LLVMTypeOf(arg[0])));
      return;
    }
    LLVMValueRef args[4] = {emu_i32(rw, emu_new_site(rw, trans ? "ldmatrix.x4.trans" : "ldmatrix.x4", call)),
                            emu_i32(rw, trans), emu_as_host_pointer(rw, arg[0]), emu_result_slot(rw, 0)};
    LLVMTypeRef types[4] = {i32, i32, ptr, ptr};
    (void)emu_call(rw, "emu_hook_ldmatrix_x4", v, types, args, 4);
    emu_replace(call, emu_struct_from_slot(rw, call, args[3], i32));
    return;
  }
  if (strcmp(name, "llvm.nvvm.cp.async.cg.shared.global.16.s") == 0 ||
      strcmp(name, "llvm.nvvm.cp.async.cg.shared.global.16") == 0) {
    int sized = strcmp(name, "llvm.nvvm.cp.async.cg.shared.global.16.s") == 0;
    LLVMValueRef args[4] = {emu_i32(rw, emu_new_site(rw, "cp.async.cg.16", call)), emu_as_host_pointer(rw, arg[0]),
                            emu_as_host_pointer(rw, arg[1]), sized ? arg[2] : emu_i32(rw, 16)};
    LLVMTypeRef types[4] = {i32, ptr, ptr, i32};
    (void)emu_call(rw, "emu_hook_cp_async_16", v, types, args, 4);
    emu_replace(call, NULL);
    return;
  }
  if (strcmp(name, "llvm.nvvm.cp.async.commit.group") == 0 || strcmp(name, "llvm.nvvm.cp.async.wait.all") == 0) {
    int all = strcmp(name, "llvm.nvvm.cp.async.wait.all") == 0;
    LLVMValueRef site = emu_i32(rw, emu_new_site(rw, all ? "cp.async.wait_all" : "cp.async.commit_group", call));
    (void)emu_call(rw, all ? "emu_hook_cp_async_wait_all" : "emu_hook_cp_async_commit", v, &i32, &site, 1);
    emu_replace(call, NULL);
    return;
  }
  if (strcmp(name, "llvm.nvvm.cp.async.wait.group") == 0) {
    LLVMValueRef args[2] = {emu_i32(rw, emu_new_site(rw, "cp.async.wait_group", call)), arg[0]};
    LLVMTypeRef types[2] = {i32, i32};
    (void)emu_call(rw, "emu_hook_cp_async_wait", v, types, args, 2);
    emu_replace(call, NULL);
    return;
  }
  emu_reject(rw, "the kernel calls %s, which the emulator does not know (add its semantics to tests/nvptx_emu_*.c "
                 "from the PTX ISA rather than guessing)", name);
}

/* A load or store through a device pointer: the matching check hook right before it, with the
 * alignment the instruction promises (the NVPTX backend emits vector accesses on that promise, and a
 * GPU faults on a misaligned one). */
static void emu_check_access(emu_rewriter *rw, LLVMValueRef instruction, LLVMValueRef pointer, LLVMTypeRef type,
                             int is_store) {
  unsigned space = LLVMGetPointerAddressSpace(LLVMTypeOf(pointer));
  if (space == 0) return;  /* the parameter block and the stack */
  if (space != EMU_AS_GLOBAL && space != EMU_AS_SHARED) {
    emu_reject(rw, "a %s through an addrspace(%u) pointer: the emulator knows only global (1) and shared (3)",
               is_store ? "store" : "load", space);
    return;
  }
  LLVMPositionBuilderBefore(rw->b, instruction);
  int shared = space == EMU_AS_SHARED;
  LLVMValueRef args[5] = {emu_i32(rw, emu_new_site(rw, shared ? (is_store ? "st.shared" : "ld.shared")
                                                              : (is_store ? "st.global" : "ld.global"),
                                                   instruction)),
                          emu_as_host_pointer(rw, pointer),
                          LLVMConstInt(rw->i64, LLVMStoreSizeOfType(rw->layout, type), 0),
                          emu_i32(rw, is_store), emu_i32(rw, (long long)LLVMGetAlignment(instruction))};
  LLVMTypeRef types[5] = {rw->i32, rw->ptr, rw->i64, rw->i32, rw->i32};
  (void)emu_call(rw, shared ? "emu_hook_shared_access" : "emu_hook_global_access", rw->void_type, types, args, 5);
}

static int emu_device_pointer(LLVMValueRef value) {
  LLVMTypeRef type = LLVMTypeOf(value);
  return LLVMGetTypeKind(type) == LLVMPointerTypeKind && LLVMGetPointerAddressSpace(type) != 0;
}

static void emu_rewrite_instruction(emu_rewriter *rw, LLVMValueRef inst) {
  LLVMOpcode op = LLVMGetInstructionOpcode(inst);
  if (op == LLVMLoad) {
    emu_check_access(rw, inst, LLVMGetOperand(inst, 0), LLVMTypeOf(inst), 0);
    return;
  }
  if (op == LLVMStore) {
    emu_check_access(rw, inst, LLVMGetOperand(inst, 1), LLVMTypeOf(LLVMGetOperand(inst, 0)), 1);
    return;
  }
  if (op == LLVMAtomicRMW || op == LLVMAtomicCmpXchg) {
    if (emu_device_pointer(LLVMGetOperand(inst, 0)))
      emu_reject(rw, "the kernel has an atomic on device memory, which the emulator does not model");
    return;
  }
  if (op != LLVMCall) return;
  LLVMValueRef callee = LLVMGetCalledValue(inst);
  if (LLVMIsAInlineAsm(callee)) {
    size_t length = 0, constraint_length = 0;
    const char *code = LLVMGetInlineAsmAsmString(callee, &length);
    const char *constraints = LLVMGetInlineAsmConstraintString(callee, &constraint_length);
    /* cuda_ir_opaque: an i32 copy LLVM cannot see through; on the host, the value itself. */
    if (length == 15 && memcmp(code, "mov.b32 $0, $1;", 15) == 0 && constraint_length == 4 &&
        memcmp(constraints, "=r,r", 4) == 0) {
      emu_replace(inst, LLVMGetOperand(inst, 0));
      return;
    }
    emu_reject(rw, "the kernel has inline asm \"%.*s\" (\"%.*s\"), which the emulator does not know", (int)length,
               code, (int)constraint_length, constraints);
    return;
  }
  if (!LLVMIsAFunction(callee)) {
    emu_reject(rw, "the kernel makes an indirect call, which the emulator does not model");
    return;
  }
  size_t length = 0;
  const char *name = LLVMGetValueName2(callee, &length);
  if (emu_starts_with(name, "llvm.nvvm.")) {
    emu_rewrite_nvvm(rw, inst, name);
    return;
  }
  if (strcmp(name, "llvm.tanh.f32") == 0) {  /* tanh.approx.f32 on the device (cuda_ir_tanh) */
    LLVMValueRef x = LLVMGetOperand(inst, 0);
    LLVMPositionBuilderBefore(rw->b, inst);
    emu_replace(inst, emu_call(rw, "emu_hook_tanh_approx", rw->f32, &rw->f32, &x, 1));
    return;
  }
  if (emu_starts_with(name, "llvm.mem")) {
    /* memcpy/memmove/memset on device memory would bypass the access checks. */
    for (unsigned i = 0; i < (unsigned)LLVMGetNumArgOperands(inst); i++)
      if (emu_device_pointer(LLVMGetOperand(inst, i)))
        emu_reject(rw, "the kernel calls %s on device memory, which the emulator does not check", name);
    return;
  }
  if (emu_starts_with(name, "llvm.")) return;  /* target-independent: maxnum, smin, fma, lifetime, ... */
  if (LLVMIsDeclaration(callee))
    emu_reject(rw, "the kernel calls the external function %s, which the emulator does not provide", name);
}

static void emu_strip_device_attributes(LLVMValueRef fn) {
  static const char *const names[] = {"target-cpu", "target-features", "nvvm.maxntid", "nvvm.maxnreg",
                                      "nvvm.reqntid", "nvvm.minctasm"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    LLVMRemoveStringAttributeAtIndex(fn, LLVMAttributeFunctionIndex, names[i], (unsigned)strlen(names[i]));
}

static void emu_rewrite_function(emu_rewriter *rw, LLVMValueRef fn) {
  rw->function = fn;
  rw->f32x4_slot = rw->i32x4_slot = NULL;
  /* Instructions are collected first: the rewrite inserts and erases around them. */
  size_t count = 0, capacity = 1024;
  LLVMValueRef *list = malloc(capacity * sizeof *list);
  for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb && list; bb = LLVMGetNextBasicBlock(bb))
    for (LLVMValueRef inst = LLVMGetFirstInstruction(bb); inst && list; inst = LLVMGetNextInstruction(inst)) {
      if (count == capacity) {
        capacity *= 2;
        LLVMValueRef *grown = realloc(list, capacity * sizeof *grown);
        if (!grown) free(list);
        list = grown;
      }
      if (list) list[count++] = inst;
    }
  if (!list) {
    emu_reject(rw, "out of memory listing instructions");
    return;
  }
  for (size_t i = 0; i < count && !rw->failed; i++) emu_rewrite_instruction(rw, list[i]);
  free(list);
  LLVMSetFunctionCallConv(fn, LLVMCCallConv);
  emu_strip_device_attributes(fn);
}

/* void emu_entry(ptr params): calls the kernel with the parameter block by value, as a launch does. */
static LLVMValueRef emu_add_entry(emu_rewriter *rw, LLVMValueRef kernel) {
  unsigned byval = LLVMGetEnumAttributeKindForName("byval", 5);
  LLVMAttributeRef attribute = LLVMGetEnumAttributeAtIndex(kernel, 1, byval);
  if (LLVMCountParams(kernel) != 1 || !attribute) {
    emu_reject(rw, "the kernel does not take one byval parameter block");
    return NULL;
  }
  LLVMTypeRef block = LLVMGetTypeAttributeValue(attribute);
  rw->kernel->param_bytes = (size_t)LLVMABISizeOfType(rw->layout, block);
  LLVMTypeRef type = LLVMFunctionType(rw->void_type, &rw->ptr, 1, 0);
  LLVMValueRef entry = LLVMAddFunction(rw->module, "emu_entry", type);
  LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(rw->ctx, entry, "entry");
  LLVMPositionBuilderAtEnd(rw->b, bb);
  LLVMValueRef param = LLVMGetParam(entry, 0);
  LLVMValueRef call = LLVMBuildCall2(rw->b, LLVMGlobalGetValueType(kernel), kernel, &param, 1, "");
  LLVMAddCallSiteAttribute(call, 1, LLVMCreateTypeAttribute(rw->ctx, byval, block));
  unsigned align = LLVMGetEnumAttributeKindForName("align", 5);
  LLVMAddCallSiteAttribute(call, 1, LLVMCreateEnumAttribute(rw->ctx, align, 8));
  LLVMBuildRetVoid(rw->b);
  return entry;
}

/* ---- NVPTX O3, the rewrite, host code ------------------------------------------------------------ */

static int emu_verify(LLVMModuleRef module, const char *when, char *why, size_t why_size) {
  char *message = NULL;
  if (!LLVMVerifyModule(module, LLVMReturnStatusAction, &message)) {
    LLVMDisposeMessage(message);
    return 0;
  }
  snprintf(why, why_size, "the module %s is invalid: %s", when, message ? message : "?");
  LLVMDisposeMessage(message);
  return -1;
}

static int emu_run_passes(LLVMModuleRef module, LLVMTargetMachineRef machine, const char *passes, char *why,
                          size_t why_size) {
  LLVMPassBuilderOptionsRef options = LLVMCreatePassBuilderOptions();
  LLVMErrorRef err = LLVMRunPasses(module, passes, machine, options);
  LLVMDisposePassBuilderOptions(options);
  if (!err) return 0;
  char *message = LLVMGetErrorMessage(err);
  snprintf(why, why_size, "%s: %s", passes, message ? message : "?");
  LLVMDisposeErrorMessage(message);
  return -1;
}

static int emu_nvptx_o3(LLVMModuleRef module, const jit_target *nvptx, char *why, size_t why_size) {
  LLVMTargetMachineRef machine = NULL;
  if (jit_create_target_machine(nvptx, &machine) != FJ_OK) {
    snprintf(why, why_size, "NVPTX target machine: %s", fj_last_error());
    return -1;
  }
  int rc = emu_run_passes(module, machine, "default<O3>", why, why_size);
  LLVMDisposeTargetMachine(machine);
  return rc;
}

/* The host module becomes an object file: O1 and the fast code generator keep the compile of these
 * fully unrolled kernels short, and what the emulator checks is the device IR, not host speed. */
static int emu_emit_host(LLVMModuleRef module, const jit_target *host, LLVMMemoryBufferRef *object, char *why,
                         size_t why_size) {
  LLVMTargetRef target = NULL;
  char *message = NULL;
  if (LLVMGetTargetFromTriple(host->triple, &target, &message)) {
    snprintf(why, why_size, "host target %s: %s", host->triple, message ? message : "?");
    LLVMDisposeMessage(message);
    return -1;
  }
  LLVMTargetMachineRef machine = LLVMCreateTargetMachine(target, host->triple, host->cpu, host->features,
                                                         LLVMCodeGenLevelLess, LLVMRelocPIC, LLVMCodeModelDefault);
  if (!machine) {
    snprintf(why, why_size, "no host target machine for %s", host->triple);
    return -1;
  }
  int rc = emu_run_passes(module, machine, "default<O1>", why, why_size);
  if (rc == 0 && LLVMTargetMachineEmitToMemoryBuffer(machine, module, LLVMObjectFile, &message, object)) {
    snprintf(why, why_size, "host code generation: %s", message ? message : "?");
    rc = -1;
  }
  LLVMDisposeMessage(message);
  LLVMDisposeTargetMachine(machine);
  return rc;
}

typedef void (*emu_function)(void);

static int emu_link(emu_kernel *k, LLVMMemoryBufferRef object, char *why, size_t why_size) {
  static const struct {
    const char *name;
    emu_function address;
  } hooks[] = {
      {"emu_hook_sreg", (emu_function)emu_hook_sreg},
      {"emu_hook_barrier", (emu_function)emu_hook_barrier},
      {"emu_hook_shfl_bfly", (emu_function)emu_hook_shfl_bfly},
      {"emu_hook_vote_any", (emu_function)emu_hook_vote_any},
      {"emu_hook_ex2_approx_ftz", (emu_function)emu_hook_ex2_approx_ftz},
      {"emu_hook_tanh_approx", (emu_function)emu_hook_tanh_approx},
      {"emu_hook_lg2_approx", (emu_function)emu_hook_lg2_approx},
      {"emu_hook_lg2_approx_ftz", (emu_function)emu_hook_lg2_approx_ftz},
      {"emu_hook_mma_m16n8k16", (emu_function)emu_hook_mma_m16n8k16},
      {"emu_hook_ldmatrix_x4", (emu_function)emu_hook_ldmatrix_x4},
      {"emu_hook_cp_async_16", (emu_function)emu_hook_cp_async_16},
      {"emu_hook_cp_async_commit", (emu_function)emu_hook_cp_async_commit},
      {"emu_hook_cp_async_wait", (emu_function)emu_hook_cp_async_wait},
      {"emu_hook_cp_async_wait_all", (emu_function)emu_hook_cp_async_wait_all},
      {"emu_hook_shared_access", (emu_function)emu_hook_shared_access},
      {"emu_hook_global_access", (emu_function)emu_hook_global_access},
      {"__truncsfhf2", (emu_function)emu_libcall_truncsfhf2},
      {"__truncsfbf2", (emu_function)emu_libcall_truncsfbf2},
  };
  enum { HOOKS = sizeof hooks / sizeof hooks[0] };
  LLVMErrorRef err = LLVMOrcCreateLLJIT(&k->jit, NULL);
  if (err) {
    k->jit = NULL;
    LLVMDisposeMemoryBuffer(object);
    char *message = LLVMGetErrorMessage(err);
    snprintf(why, why_size, "creating an LLJIT: %s", message ? message : "?");
    LLVMDisposeErrorMessage(message);
    return -1;
  }
  LLVMOrcJITDylibRef dylib = LLVMOrcLLJITGetMainJITDylib(k->jit);
  LLVMOrcCSymbolMapPair symbols[HOOKS + 1];
  for (int i = 0; i < HOOKS + 1; i++) {
    symbols[i].Name = LLVMOrcLLJITMangleAndIntern(k->jit, i < HOOKS ? hooks[i].name : EMU_SHARED_SYMBOL);
    symbols[i].Sym.Address = i < HOOKS ? (LLVMOrcExecutorAddress)(uintptr_t)hooks[i].address
                                       : (LLVMOrcExecutorAddress)(uintptr_t)k->shared;
    symbols[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported |
                                        (i < HOOKS ? LLVMJITSymbolGenericFlagsCallable : 0);
    symbols[i].Sym.Flags.TargetFlags = 0;
  }
  err = LLVMOrcJITDylibDefine(dylib, LLVMOrcAbsoluteSymbols(symbols, HOOKS + 1));
  /* libm and libc for what the host code generator may call (memset, exp2f, ...). */
  LLVMOrcDefinitionGeneratorRef generator = NULL;
  if (!err)
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&generator, LLVMOrcLLJITGetGlobalPrefix(k->jit), NULL,
                                                               NULL);
  if (!err) {
    LLVMOrcJITDylibAddGenerator(dylib, generator);
    err = LLVMOrcLLJITAddObjectFile(k->jit, dylib, object);
  } else {
    LLVMDisposeMemoryBuffer(object);
  }
  LLVMOrcExecutorAddress entry = 0;
  if (!err) err = LLVMOrcLLJITLookup(k->jit, &entry, "emu_entry");
  if (err) {
    char *message = LLVMGetErrorMessage(err);
    snprintf(why, why_size, "linking the host kernel: %s", message ? message : "?");
    LLVMDisposeErrorMessage(message);
    return -1;
  }
  k->entry = (void (*)(void *))(uintptr_t)entry;
  return 0;
}

int emu_kernel_build(LLVMModuleRef module, const jit_target *nvptx, const char *name, int block_threads,
                     size_t shared_bytes, int nvptx_o3, emu_kernel **out, char *why, size_t why_size) {
  *out = NULL;
  snprintf(why, why_size, "?");
  if (emu_verify(module, "as generated", why, why_size) != 0) return -1;
  if (nvptx_o3 && emu_nvptx_o3(module, nvptx, why, why_size) != 0) return -1;
  jit_target host;
  if (jit_host_target(&host) != FJ_OK) {
    snprintf(why, why_size, "host target: %s", fj_last_error());
    return -1;
  }
  emu_kernel *k = calloc(1, sizeof *k);
  if (!k) {
    snprintf(why, why_size, "out of memory");
    return -1;
  }
  k->block_threads = block_threads;
  k->shared_bytes = shared_bytes;
  /* 128-byte aligned, as a GPU's shared window is at least: the kernel's 16-byte rules then hold. */
  k->shared_allocation = calloc(1, shared_bytes + 256);
  if (!k->shared_allocation) {
    free(k);
    snprintf(why, why_size, "out of memory for %zu bytes of shared memory", shared_bytes);
    return -1;
  }
  k->shared = (unsigned char *)(((uintptr_t)k->shared_allocation + 127) & ~(uintptr_t)127);

  LLVMValueRef kernel = LLVMGetNamedFunction(module, name);
  if (!kernel || LLVMIsDeclaration(kernel)) {
    snprintf(why, why_size, "the module has no kernel named %s", name);
    emu_kernel_free(k);
    return -1;
  }
  if (jit_module_set_target(module, &host) != FJ_OK) {
    snprintf(why, why_size, "retargeting to the host: %s", fj_last_error());
    emu_kernel_free(k);
    return -1;
  }
  emu_rewriter rw;
  memset(&rw, 0, sizeof rw);
  rw.kernel = k;
  rw.module = module;
  rw.ctx = LLVMGetModuleContext(module);
  rw.b = LLVMCreateBuilderInContext(rw.ctx);
  rw.layout = LLVMGetModuleDataLayout(module);
  rw.i32 = LLVMInt32TypeInContext(rw.ctx);
  rw.i64 = LLVMInt64TypeInContext(rw.ctx);
  rw.f32 = LLVMFloatTypeInContext(rw.ctx);
  rw.ptr = LLVMPointerTypeInContext(rw.ctx, 0);
  rw.void_type = LLVMVoidTypeInContext(rw.ctx);
  rw.why = why;
  rw.why_size = why_size;
  /* Device pointers must stay plain 64-bit host pointers under the host layout. */
  for (unsigned space = 0; space <= EMU_AS_SHARED; space++)
    if (LLVMPointerSizeForAS(rw.layout, space) != sizeof(void *))
      emu_reject(&rw, "the host data layout makes addrspace(%u) pointers %u bytes", space,
                 LLVMPointerSizeForAS(rw.layout, space));
  /* Functions added by the rewrite (hook declarations) come after the existing ones: stop at the last. */
  LLVMValueRef last = LLVMGetLastFunction(module);
  for (LLVMValueRef fn = LLVMGetFirstFunction(module); fn && !rw.failed; fn = LLVMGetNextFunction(fn)) {
    if (!LLVMIsDeclaration(fn)) emu_rewrite_function(&rw, fn);
    if (fn == last) break;
  }
  /* The intrinsics' declarations are unused now. */
  for (LLVMValueRef fn = LLVMGetFirstFunction(module), next; fn && !rw.failed; fn = next) {
    next = LLVMGetNextFunction(fn);
    size_t length = 0;
    if (emu_starts_with(LLVMGetValueName2(fn, &length), "llvm.nvvm.") && !LLVMGetFirstUse(fn)) LLVMDeleteFunction(fn);
  }
  if (!rw.failed) emu_add_entry(&rw, kernel);
  LLVMDisposeBuilder(rw.b);
  /* FJ_EMU_DUMP=dir keeps each rewritten host module (before host optimization) for a look. */
  const char *dump = getenv("FJ_EMU_DUMP");
  if (dump && *dump && !rw.failed) {
    static int dumped;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%d.host.ll", dump, name, dumped++);
    char *message = NULL;
    if (LLVMPrintModuleToFile(module, path, &message)) fprintf(stderr, "FJ_EMU_DUMP: %s: %s\n", path, message);
    LLVMDisposeMessage(message);
  }
  LLVMMemoryBufferRef object = NULL;
  if (rw.failed || emu_verify(module, "after the rewrite", why, why_size) != 0 ||
      emu_emit_host(module, &host, &object, why, why_size) != 0 || emu_link(k, object, why, why_size) != 0) {
    emu_kernel_free(k);
    return -1;
  }
  *out = k;
  return 0;
}

void emu_kernel_free(emu_kernel *k) {
  if (!k) return;
  if (k->jit) {
    LLVMErrorRef err = LLVMOrcDisposeLLJIT(k->jit);
    if (err) LLVMConsumeError(err);
  }
  free(k->shared_allocation);
  emu_banks_free(k->banks);
  free(k->sites);
  free(k);
}

int emu_kernel_add_region(emu_kernel *k, const void *base, size_t bytes, int writable) {
  if (k->region_count == EMU_MAX_REGIONS) return -1;
  k->regions[k->region_count++] = (emu_region){base, bytes, writable};
  return 0;
}

void emu_kernel_clear_regions(emu_kernel *k) { k->region_count = 0; }
