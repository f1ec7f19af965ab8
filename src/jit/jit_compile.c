/* jit_compile.c: turns a kernel generator's module into bytes a device can take: verify (a broken
 * module is an ordinary failure, never a crash), the O3 pipeline with the target's cost model, then an
 * object file for the host and AMD, PTX text for NVIDIA. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "core/error.h"
#include "core/log.h"
#include "jit/jit_internal.h"

void jit_buffer_free(jit_buffer *buffer) {
  if (!buffer)
    return;
  free(buffer->data);
  buffer->data = NULL;
  buffer->size = 0;
}

char *jit_module_ir(LLVMModuleRef module) {
  if (!module)
    return NULL;
  char *text = LLVMPrintModuleToString(module);
  char *copy = text ? strdup(text) : NULL;
  LLVMDisposeMessage(text);
  return copy;
}

static double jit_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* LLVM's verifier message ends in a newline and may run to many lines; keep it whole but tidy. */
static void jit_trim(char *text) {
  size_t n = strlen(text);
  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
    text[--n] = '\0';
}

static fj_status jit_verify(LLVMModuleRef module, const char *what) {
  char *message = NULL;
  if (!LLVMVerifyModule(module, LLVMReturnStatusAction, &message)) {
    LLVMDisposeMessage(message);
    return FJ_OK;
  }
  if (message)
    jit_trim(message);
  fj_status status = core_error(FJ_COMPILE_FAILED, "compiling %s: the generated module is invalid: %s",
                                what, message && *message ? message : "(no message)");
  LLVMDisposeMessage(message);
  return status;
}

static fj_status jit_optimize(LLVMModuleRef module, LLVMTargetMachineRef machine, const char *what) {
  LLVMPassBuilderOptionsRef options = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(options, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(options, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(options, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(options, 1);
  LLVMErrorRef err = LLVMRunPasses(module, "default<O3>", machine, options);
  LLVMDisposePassBuilderOptions(options);
  if (!err)
    return FJ_OK;
  fj_status status = jit_error_from_llvm(FJ_COMPILE_FAILED, err, "running the O3 pipeline");
  core_error_prefix("compiling %s: ", what);
  return status;
}

/* The copy carries one extra NUL after size bytes: PTX is handed to cuModuleLoadData as a C string,
 * and an object file does not mind. */
static fj_status jit_emit(LLVMModuleRef module, LLVMTargetMachineRef machine, const jit_target *target,
                          const char *what, jit_buffer *out) {
  LLVMCodeGenFileType kind = jit_triple_is_nvptx(target->triple) ? LLVMAssemblyFile : LLVMObjectFile;
  LLVMMemoryBufferRef emitted = NULL;
  char *message = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(machine, module, kind, &message, &emitted)) {
    fj_status status = core_error(FJ_COMPILE_FAILED, "compiling %s: code generation for %s failed: %s",
                                  what, target->triple, message ? message : "(no message)");
    LLVMDisposeMessage(message);
    return status;
  }
  LLVMDisposeMessage(message);
  size_t size = LLVMGetBufferSize(emitted);
  char *data = malloc(size + 1);
  if (!data) {
    LLVMDisposeMemoryBuffer(emitted);
    return core_error(FJ_OUT_OF_MEMORY, "compiling %s: no memory for %zu bytes of output", what, size);
  }
  memcpy(data, LLVMGetBufferStart(emitted), size);
  data[size] = '\0';
  LLVMDisposeMemoryBuffer(emitted);
  out->data = data;
  out->size = size;
  return FJ_OK;
}

fj_status jit_compile_module(LLVMModuleRef module, const jit_target *target, const char *what,
                             jit_buffer *out) {
  if (out) {
    out->data = NULL;
    out->size = 0;
  }
  if (!module || !target || !out)
    return core_error(FJ_INVALID_ARGUMENT, "jit_compile_module: %s is NULL",
                      !module ? "module" : !target ? "target" : "out");
  if (!what)
    what = "(unnamed module)";
  fj_status status = jit_init();
  if (status != FJ_OK)
    return status;

  double start = jit_now_ms();
  jit_set_current_what(what);
  status = jit_verify(module, what);
  LLVMTargetMachineRef machine = NULL;
  if (status == FJ_OK)
    status = jit_create_target_machine(target, &machine);
  if (status == FJ_OK) {
    /* A module built without jit_module_set_target still gets the right layout for the passes. */
    const char *triple = LLVMGetTarget(module);
    if (!triple || !*triple)
      LLVMSetTarget(module, target->triple);
    const char *layout = LLVMGetDataLayoutStr(module);
    if (!layout || !*layout) {
      LLVMTargetDataRef data = LLVMCreateTargetDataLayout(machine);
      LLVMSetModuleDataLayout(module, data);
      LLVMDisposeTargetData(data);
    }
    status = jit_optimize(module, machine, what);
  }
  double optimized = jit_now_ms();
  if (status == FJ_OK)
    status = jit_emit(module, machine, target, what, out);
  jit_set_current_what(NULL);
  LLVMDisposeTargetMachine(machine);
  if (status == FJ_OK && core_log_enabled(LOG_DEBUG)) {
    double end = jit_now_ms();
    core_log(LOG_DEBUG, "jit: %s for %s/%s: O3 %.1f ms, codegen %.1f ms, %zu bytes", what,
             target->triple, target->cpu, optimized - start, end - optimized, out->size);
  }
  return status;
}
