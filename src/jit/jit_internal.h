/* jit_internal.h: what the files of src/jit share and nobody outside src/jit may call: the thread's
 * "what is being compiled" note for the fatal-error handler, target-machine creation, and turning an
 * LLVMErrorRef into the thread's error message. */
#ifndef FJ_JIT_INTERNAL_H
#define FJ_JIT_INTERNAL_H
#include <llvm-c/Error.h>
#include <llvm-c/TargetMachine.h>
#include "jit/jit.h"

/* Names the kernel/config this thread is compiling (NULL: nothing); the fatal-error handler logs it. */
void jit_set_current_what(const char *what);

/* A target machine for target's triple, cpu and features at the aggressive level, PIC, default code
 * model. The caller disposes it. FJ_UNSUPPORTED when LLVM knows no such triple. */
fj_status jit_create_target_machine(const jit_target *target, LLVMTargetMachineRef *out);

/* Consumes err and records "<context>: <LLVM's message>" as the thread's error; returns status. */
fj_status jit_error_from_llvm(fj_status status, LLVMErrorRef err, const char *context);

/* 1 when the triple names an NVPTX target (emitted as PTX text rather than an object file). */
int jit_triple_is_nvptx(const char *triple);
#endif
