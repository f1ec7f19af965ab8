/* check.h: the pass/fail bookkeeping the test programs share, so that every suite reports the same way
 * ("ok   ..." or "FAIL ..." per assertion, then "N passed, M failed"; exit 0, or 1 on any failure; 77,
 * ctest's skip code, is each test's own business). Header-only with static functions so that each test
 * stays one .c file and the CMake glob needs no support library. */
#ifndef FJ_TESTS_CHECK_H
#define FJ_TESTS_CHECK_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

/* Plain ints, not atomics: tests read them directly (a child's own summary line, early exits), and the
 * lock in check_report is what makes updates from worker threads safe. */
static int passed, failed;

/* Put before "ok"/"FAIL" on every line; a test that re-executes itself as a second process sets it
 * ("child: ") so that the two processes' lines can be told apart in one log. */
static const char *check_prefix = "";

/* Threads report concurrently (test_threads, test_attention_cuda): one lock keeps each line whole and the
 * counters exact. Tests that fork exec right away, so a lock held at fork time never matters. */
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;

/* One line: prefix, the verdict word, the message. Flushed at once so that the line is out before a
 * crash, a fork, or a child's output on the same pipe. */
static inline void check_report(int ok, const char *ok_word, const char *fail_word, const char *format,
                                va_list ap) {
  pthread_mutex_lock(&check_lock);
  printf("%s%s", check_prefix, ok ? ok_word : fail_word);
  vprintf(format, ap);
  printf("\n");
  fflush(stdout);
  if (ok)
    passed++;
  else
    failed++;
  pthread_mutex_unlock(&check_lock);
}

/* "ok   <message>" or "FAIL <message>". */
static inline void check(int ok, const char *format, ...) __attribute__((format(printf, 2, 3)));
static inline void check(int ok, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  check_report(ok, "ok   ", "FAIL ", format, ap);
  va_end(ap);
}

/* For checks phrased as a name plus what went wrong: "ok   <name>" or "FAIL <name>: <detail>". */
static inline void check_detail(int ok, const char *name, const char *detail) {
  if (ok)
    check(1, "%s", name);
  else
    check(0, "%s: %s", name, detail ? detail : "");
}

/* CHECK(cond, format, ...): "ok: <message>" or "FAIL (file:line): <message>", for the suites of many
 * small assertions where the line number is the quickest way to the failing one. The condition is
 * evaluated before the message's arguments, as a statement of its own: they may read what it set. */
static inline void check_at(int ok, const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
static inline void check_at(int ok, const char *file, int line, const char *format, ...) {
  char fail_word[512];
  snprintf(fail_word, sizeof fail_word, "FAIL (%s:%d): ", file, line);
  va_list ap;
  va_start(ap, format);
  check_report(ok, "ok: ", fail_word, format, ap);
  va_end(ap);
}
#define CHECK(cond, ...)                               \
  do {                                                 \
    int check_ok_ = (cond) ? 1 : 0;                    \
    check_at(check_ok_, __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

/* The last line of every suite, and its exit status. */
static inline int check_summary(void) {
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

#endif
