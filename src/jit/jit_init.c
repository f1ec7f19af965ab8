/* jit_init.c: brings LLVM up once per process (targets for the host, NVIDIA and AMD, the fatal-error
 * handler), reports LLVM's version, and holds the helpers the other jit files share: the thread's note
 * of what it is compiling and the conversion of LLVM errors into flashjit's thread-local message. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <llvm-c/Core.h>
#include <llvm-c/ErrorHandling.h>
#include <llvm-c/Target.h>
#include "core/error.h"
#include "core/log.h"
#include "jit/jit_internal.h"

static pthread_once_t jit_once = PTHREAD_ONCE_INIT;
static char jit_version[32];

/* LLVM's fatal errors end the process whatever we do; the best we can leave behind is which kernel and
 * config did it, so the operator can exclude that config. Thread-local because several threads
 * compile at once and the handler runs on the thread that failed. */
static _Thread_local const char *jit_current_what;

void jit_set_current_what(const char *what) { jit_current_what = what; }

static void jit_fatal_error_handler(const char *reason) {
  const char *what = jit_current_what;
  core_log(LOG_ERROR, "LLVM fatal error while compiling %s: %s",
           what ? what : "(no kernel: outside jit_compile_module)", reason ? reason : "(no reason)");
}

static void jit_init_once(void) {
  LLVMInitializeX86TargetInfo();
  LLVMInitializeX86Target();
  LLVMInitializeX86TargetMC();
  LLVMInitializeX86AsmPrinter();
  LLVMInitializeX86AsmParser();
  /* NVPTX has no assembly parser in LLVM: PTX is only ever printed. */
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();
  LLVMInitializeAMDGPUTargetInfo();
  LLVMInitializeAMDGPUTarget();
  LLVMInitializeAMDGPUTargetMC();
  LLVMInitializeAMDGPUAsmPrinter();
  LLVMInitializeAMDGPUAsmParser();
  LLVMInstallFatalErrorHandler(jit_fatal_error_handler);

  /* The version of the library actually loaded, not the headers built against: it goes into cache
   * keys, and a distribution upgrade of libLLVM must invalidate cached binaries. */
  unsigned major = 0, minor = 0, patch = 0;
  LLVMGetVersion(&major, &minor, &patch);
  snprintf(jit_version, sizeof jit_version, "%u.%u.%u", major, minor, patch);
}

fj_status jit_init(void) {
  if (pthread_once(&jit_once, jit_init_once) != 0)
    return core_error(FJ_INTERNAL, "jit: pthread_once failed while initializing LLVM");
  return FJ_OK;
}

const char *jit_llvm_version(void) {
  jit_init();
  return jit_version;
}

fj_status jit_error_from_llvm(fj_status status, LLVMErrorRef err, const char *context) {
  if (!err)
    return core_error(status, "%s: unknown LLVM error", context);
  char *message = LLVMGetErrorMessage(err); /* consumes err */
  fj_status result = core_error(status, "%s: %s", context, message ? message : "(no message)");
  LLVMDisposeErrorMessage(message);
  return result;
}

int jit_triple_is_nvptx(const char *triple) { return triple && strncmp(triple, "nvptx", 5) == 0; }
