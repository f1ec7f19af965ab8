/* log.h: leveled logging to stderr, filtered by FLASHJIT_LOG (error, warn (default), info, debug, or
 * 0-3; "off" prints nothing). Lines read "flashjit: <level>: <message>". Tests and tools can install a
 * sink to capture lines instead. */
#ifndef FJ_CORE_LOG_H
#define FJ_CORE_LOG_H

typedef enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level;

void core_log(log_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* 1 when a message at this level would be printed (to skip building expensive messages). */
int core_log_enabled(log_level level);
/* Replaces stderr with sink (NULL restores stderr); the level filter still applies. The sink gets the
 * whole line without its newline, called under the log mutex (it must not log itself). */
typedef void (*log_sink)(log_level level, const char *line, void *user);
void core_log_set_sink(log_sink sink, void *user);
/* Overrides FLASHJIT_LOG (for the command's --verbose); -1 re-reads the environment. */
void core_log_set_level(int level);
#endif
