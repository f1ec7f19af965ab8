/* log.c: leveled log lines on stderr, or handed to the caller's handler (fj_set_log_handler) or a sink
 * the tests and tools install. The level comes from FLASHJIT_LOG, read once on first use, unless
 * fj_set_log_level set it; a mutex keeps lines from different threads whole. */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/log.h"
#include "flashjit.h"

/* Below LOG_ERROR: nothing is printed ("off"). Above LOG_DEBUG: not read yet. */
#define CORE_LOG_OFF (-1)
#define CORE_LOG_UNREAD 100

static atomic_int core_log_level = CORE_LOG_UNREAD;
static pthread_mutex_t core_log_mutex = PTHREAD_MUTEX_INITIALIZER;
static log_sink core_log_sink_fn;
static void *core_log_sink_user;
/* The public handler (fj_set_log_handler): the message without its prefix. The tests' sink comes first. */
static fj_log_handler core_log_handler_fn;
static void *core_log_handler_user;
/* Set while this thread is inside a sink or handler: a message it logs then goes straight to stderr,
 * never back through the mutex it holds. */
static _Thread_local int core_log_inside;

static const char *const core_log_names[] = {"error", "warn", "info", "debug"};

static int core_log_equal_nocase(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return *a == *b;
}

/* An unknown value falls back to the default rather than failing: logging must never stop a call. */
static int core_log_parse(const char *text) {
  if (text == NULL || *text == '\0') return LOG_WARN;
  if (isdigit((unsigned char)text[0])) {
    long n = strtol(text, NULL, 10);
    return n > LOG_DEBUG ? LOG_DEBUG : (int)n;
  }
  if (core_log_equal_nocase(text, "off") || core_log_equal_nocase(text, "none") ||
      core_log_equal_nocase(text, "quiet"))
    return CORE_LOG_OFF;
  if (core_log_equal_nocase(text, "error")) return LOG_ERROR;
  if (core_log_equal_nocase(text, "warn") || core_log_equal_nocase(text, "warning")) return LOG_WARN;
  if (core_log_equal_nocase(text, "info")) return LOG_INFO;
  if (core_log_equal_nocase(text, "debug") || core_log_equal_nocase(text, "trace")) return LOG_DEBUG;
  return LOG_WARN;
}

static int core_log_current(void) {
  int level = atomic_load_explicit(&core_log_level, memory_order_relaxed);
  if (level == CORE_LOG_UNREAD) {
    /* Two threads may both read the environment here; they store the same value. */
    level = core_log_parse(getenv("FLASHJIT_LOG"));
    atomic_store_explicit(&core_log_level, level, memory_order_relaxed);
  }
  return level;
}

int core_log_enabled(log_level level) { return (int)level <= core_log_current(); }

void core_log_set_level(int level) {
  if (level < 0) level = CORE_LOG_UNREAD;
  else if (level > LOG_DEBUG) level = LOG_DEBUG;
  atomic_store_explicit(&core_log_level, level, memory_order_relaxed);
}

/* The mutex around a change of where lines go; a thread inside a sink or handler holds it already. */
static int core_log_lock_unless_inside(void) {
  if (core_log_inside) return 0;
  pthread_mutex_lock(&core_log_mutex);
  return 1;
}

void core_log_set_sink(log_sink sink, void *user) {
  int locked = core_log_lock_unless_inside();
  core_log_sink_fn = sink;
  core_log_sink_user = user;
  if (locked) pthread_mutex_unlock(&core_log_mutex);
}

void core_log(log_level level, const char *format, ...) {
  if (!core_log_enabled(level)) return;
  int index = level < LOG_ERROR ? LOG_ERROR : level > LOG_DEBUG ? LOG_DEBUG : (int)level;
  char stack_line[1024];
  int prefix = snprintf(stack_line, sizeof stack_line, "flashjit: %s: ", core_log_names[index]);
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(stack_line + prefix, sizeof stack_line - (size_t)prefix, format, ap);
  va_end(ap);
  if (n < 0) return;
  char *line = stack_line;
  char *heap_line = NULL;
  /* Long lines (a module dump at debug level) are printed whole rather than cut. */
  if ((size_t)n >= sizeof stack_line - (size_t)prefix) {
    heap_line = malloc((size_t)prefix + (size_t)n + 1);
    if (heap_line != NULL) {
      memcpy(heap_line, stack_line, (size_t)prefix);
      va_start(ap, format);
      vsnprintf(heap_line + prefix, (size_t)n + 1, format, ap);
      va_end(ap);
      line = heap_line;
    }
  }
  if (core_log_inside) {
    fputs(line, stderr);
    fputc('\n', stderr);
    free(heap_line);
    return;
  }
  pthread_mutex_lock(&core_log_mutex);
  core_log_inside = 1;
  if (core_log_sink_fn != NULL) {
    core_log_sink_fn(level, line, core_log_sink_user);
  } else if (core_log_handler_fn != NULL) {
    core_log_handler_fn((fj_log_level)index, line + prefix, core_log_handler_user);
  } else {
    fputs(line, stderr);
    fputc('\n', stderr);
    fflush(stderr);
  }
  core_log_inside = 0;
  pthread_mutex_unlock(&core_log_mutex);
  free(heap_line);
}

FJ_API fj_status fj_set_log_handler(fj_log_handler handler, void *user) {
  int locked = core_log_lock_unless_inside();
  core_log_handler_fn = handler;
  core_log_handler_user = user;
  if (locked) pthread_mutex_unlock(&core_log_mutex);
  return FJ_OK;
}

FJ_API fj_status fj_set_log_level(int level) {
  if (level < FJ_LOG_OFF || level > FJ_LOG_DEBUG)
    return core_error(FJ_INVALID_ARGUMENT, "fj_set_log_level: level=%d: must be from %d (FJ_LOG_OFF) to %d "
                      "(FJ_LOG_DEBUG)", level, FJ_LOG_OFF, FJ_LOG_DEBUG);
  atomic_store_explicit(&core_log_level, level == FJ_LOG_OFF ? CORE_LOG_OFF : level, memory_order_relaxed);
  return FJ_OK;
}
