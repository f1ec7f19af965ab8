/* error.h: the thread-local error message behind fj_last_error(), and the helper every layer uses to
 * fail: `return core_error(FJ_INVALID_ARGUMENT, "k.shape[3]=%lld but q.shape[3]=%lld", ...)`. */
#ifndef FJ_CORE_ERROR_H
#define FJ_CORE_ERROR_H
#include "flashjit.h"

/* Records the message for this thread and returns status, so a failure is one line. */
fj_status core_error(fj_status status, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with context ("compiling attention_fwd_cpu: " + old message). */
void core_error_prefix(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* Clears this thread's message; public entry points call it first. */
void core_error_clear(void);
/* This thread's message ("" when none); what fj_last_error() returns. Never NULL. */
const char *core_error_message(void);
#endif
