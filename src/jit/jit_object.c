/* jit_object.c: loads an emitted host object (fresh from jit_compile_module or read back from the disk
 * cache) into this process with ORC LLJIT, finds its functions, and frees all of it on unload.
 *
 * One LLJIT per loaded object, not one shared LLJIT with a JITDylib per object. Measured on the
 * reference host (znver5, LLVM 22.1): creating an LLJIT costs about 0.5 ms and adding a small object
 * plus the first lookup about 0.1 ms, far inside the 20 ms budget for a cache hit. In exchange each
 * object gets its own symbol namespace (every kernel may export the same entry name), unload is one
 * dispose that returns all code and data memory and eh-frame registrations, and objects share no
 * session lock. The shared-session design is faster to add (about 0.01 ms) but the C API cannot remove
 * a JITDylib, so a long-running tuner that loads thousands of candidates would grow without bound. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include "core/error.h"
#include "core/log.h"
#include "jit/jit_internal.h"

struct jit_object {
  LLVMOrcLLJITRef jit;
  /* The linker's own complaint (an unresolved external, a bad relocation) reaches the session's error
   * reporter, while the failing lookup only says "failed to materialize"; keep the former to explain
   * the latter. Lookups may come from several threads. */
  pthread_mutex_t lock;
  char *session_error;
  char name[96];
};

static void jit_object_session_error(void *context, LLVMErrorRef err) {
  struct jit_object *object = context;
  char *message = LLVMGetErrorMessage(err);
  core_log(LOG_DEBUG, "jit: linking %s: %s", object->name, message ? message : "(no message)");
  char *copy = message ? strdup(message) : NULL;
  LLVMDisposeErrorMessage(message);
  pthread_mutex_lock(&object->lock);
  free(object->session_error);
  object->session_error = copy;
  pthread_mutex_unlock(&object->lock);
}

static void jit_object_free(jit_object *object) {
  if (object->jit) {
    LLVMErrorRef err = LLVMOrcDisposeLLJIT(object->jit);
    if (err) {
      char *message = LLVMGetErrorMessage(err);
      core_log(LOG_WARN, "jit: unloading %s: %s", object->name, message ? message : "(no message)");
      LLVMDisposeErrorMessage(message);
    }
  }
  pthread_mutex_destroy(&object->lock);
  free(object->session_error);
  free(object);
}

fj_status jit_object_load(const void *data, size_t size, const char *name, jit_object **out) {
  if (out)
    *out = NULL;
  if (!data || size == 0 || !out)
    return core_error(FJ_INVALID_ARGUMENT, "jit_object_load: %s",
                      !out ? "out is NULL" : !data ? "object is NULL" : "object size is 0");
  fj_status status = jit_init();
  if (status != FJ_OK)
    return status;
  jit_object *object = calloc(1, sizeof *object);
  if (!object)
    return core_error(FJ_OUT_OF_MEMORY, "jit_object_load: no memory");
  snprintf(object->name, sizeof object->name, "%s", name ? name : "jit object");
  pthread_mutex_init(&object->lock, NULL);

  LLVMErrorRef err = LLVMOrcCreateLLJIT(&object->jit, NULL);
  if (err) {
    object->jit = NULL;
    status = jit_error_from_llvm(FJ_INTERNAL, err, "creating an LLJIT");
    goto fail;
  }
  LLVMOrcExecutionSessionSetErrorReporter(LLVMOrcLLJITGetExecutionSession(object->jit),
                                          jit_object_session_error, object);
  LLVMOrcJITDylibRef dylib = LLVMOrcLLJITGetMainJITDylib(object->jit);

  /* Generated code may call memset/memcpy/expf; the prefix is stripped before dlsym on platforms that
   * mangle C names ('_' on Mach-O), '\0' on ELF. */
  LLVMOrcDefinitionGeneratorRef generator = NULL;
  err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
      &generator, LLVMOrcLLJITGetGlobalPrefix(object->jit), NULL, NULL);
  if (err) {
    status = jit_error_from_llvm(FJ_INTERNAL, err, "making process symbols visible to JIT code");
    goto fail;
  }
  LLVMOrcJITDylibAddGenerator(dylib, generator); /* the dylib owns it now */

  /* ORC keeps the buffer for as long as the object is loaded, and the caller's bytes may be a cache
   * read that is freed right after this call. */
  LLVMMemoryBufferRef buffer = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, size, object->name);
  if (!buffer) {
    status = core_error(FJ_OUT_OF_MEMORY, "jit_object_load: no memory to copy %zu bytes", size);
    goto fail;
  }
  err = LLVMOrcLLJITAddObjectFile(object->jit, dylib, buffer); /* takes the buffer, even on error */
  if (err) {
    status = jit_error_from_llvm(FJ_COMPILE_FAILED, err, "adding the object");
    goto fail;
  }
  *out = object;
  return FJ_OK;

fail:
  core_error_prefix("loading %s (%zu bytes): ", object->name, size);
  jit_object_free(object);
  return status;
}

fj_status jit_object_symbol(jit_object *object, const char *symbol, void **address) {
  if (address)
    *address = NULL;
  if (!object || !symbol || !address)
    return core_error(FJ_INVALID_ARGUMENT, "jit_object_symbol: %s is NULL",
                      !object ? "object" : !symbol ? "symbol" : "address");
  /* LLJIT's lookup mangles the name itself (adds the global prefix where there is one). */
  LLVMOrcExecutorAddress found = 0;
  LLVMErrorRef err = LLVMOrcLLJITLookup(object->jit, &found, symbol);
  if (err) {
    char *message = LLVMGetErrorMessage(err);
    pthread_mutex_lock(&object->lock);
    fj_status status = core_error(FJ_INTERNAL, "symbol '%s' not found in %s: %s%s%s", symbol,
                                  object->name, message ? message : "(no message)",
                                  object->session_error ? "; linker: " : "",
                                  object->session_error ? object->session_error : "");
    pthread_mutex_unlock(&object->lock);
    LLVMDisposeErrorMessage(message);
    return status;
  }
  if (found == 0)
    return core_error(FJ_INTERNAL, "symbol '%s' in %s has address 0", symbol, object->name);
  *address = (void *)(uintptr_t)found;
  return FJ_OK;
}

void jit_object_unload(jit_object *object) {
  if (object)
    jit_object_free(object);
}
