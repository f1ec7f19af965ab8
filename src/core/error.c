/* error.c: the thread-local message behind fj_last_error(). Each thread has its own fixed buffer, so
 * recording a failure never allocates (it must work when memory has run out) and never races with
 * another thread's call. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "core/error.h"
#include "core/log.h"

#define CORE_ERROR_CAPACITY 1024

static _Thread_local char core_error_buffer[CORE_ERROR_CAPACITY];

fj_status core_error(fj_status status, const char *format, ...) {
  /* Format into a temporary first: callers often pass fj_last_error() itself as an argument. */
  char message[CORE_ERROR_CAPACITY];
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(message, sizeof message, format, ap);
  va_end(ap);
  if (n < 0) message[0] = '\0';
  memcpy(core_error_buffer, message, sizeof message);
  if (core_log_enabled(LOG_DEBUG))
    core_log(LOG_DEBUG, "%s: %s", fj_status_string(status), core_error_buffer);
  return status;
}

void core_error_prefix(const char *format, ...) {
  char prefix[CORE_ERROR_CAPACITY];
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(prefix, sizeof prefix, format, ap);
  va_end(ap);
  if (n < 0) return;
  /* Truncation keeps the prefix whole and cuts the tail of the old message, the least useful end. */
  size_t head = strlen(prefix);
  size_t tail = strlen(core_error_buffer);
  if (head + tail > CORE_ERROR_CAPACITY - 1) tail = CORE_ERROR_CAPACITY - 1 - head;
  memmove(core_error_buffer + head, core_error_buffer, tail);
  memcpy(core_error_buffer, prefix, head);
  core_error_buffer[head + tail] = '\0';
}

void core_error_clear(void) { core_error_buffer[0] = '\0'; }

const char *core_error_message(void) { return core_error_buffer; }
