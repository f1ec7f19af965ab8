/* served.c: the problems a deployment's calls served, noted in <cache>/served-<backend>-<index>.txt as
 * lines of the shapes-file format, so that the operator's nightly `flashjit tune --served` tunes exactly
 * what ran (and `flashjit cache warm --served` readies it before the next start). One line per problem
 * key, whatever sizes its first call had (the key's bucket is what a tuned winner serves); the key itself
 * ends the line as a comment, which is how processes sharing the file keep it free of repeats (under an
 * flock). Noted at a context's first call of a key, never again on the hot path after it. Best effort: a
 * folder that cannot be written, a busy lock, or a problem the format cannot say (a tensor strided along
 * the head dim) leaves no line and never fails the call. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "runtime/runtime_internal.h"

#define SERVED_MAX_BYTES (1 << 20) /* a file past this is someone else's or a runaway: noted no further */
#define SERVED_LOCK_TRIES 50       /* 1 ms apart: another process holds it only to append a line */

void runtime_served_file(const char *cache_dir, const char *backend, int index, char *buffer, size_t size) {
  snprintf(buffer, size, "%s/served-%s-%d.txt", cache_dir, backend, index);
}

void runtime_served_path(const fj_context *context, char *buffer, size_t size) {
  runtime_served_file(context->cache_dir, context->backend->name, context->device_index, buffer, size);
}

int runtime_served_line(const attention_problem *problem, char *buffer, size_t size) {
  const attention_key *key = &problem->key;
  /* the shapes format describes packed, row-major tensors only (a bias too) */
  if (!key->d_contiguous || (key->bias & KEY_BIAS_STRIDED_KEYS)) return -1;
  char words[512];
  int n = snprintf(words, sizeof words, "batch=%" PRId64 " heads=%d kv_heads=%d seqlen_q=%" PRId64
                   " seqlen_kv=%" PRId64 " head_dim=%d dtype=%s", problem->batch, key->heads, key->kv_heads,
                   problem->seqlen_q, problem->seqlen_kv, key->head_dim, core_dtype_name((dtype_id)key->dtype));
#define SERVED_WORD(...)                                                                      \
  do {                                                                                        \
    if (n >= 0 && (size_t)n < sizeof words) n += snprintf(words + n, sizeof words - (size_t)n, __VA_ARGS__); \
  } while (0)
  if (key->head_dim_v) SERVED_WORD(" head_dim_v=%d", key->head_dim_v);
  /* causal is window_right = 0; a window's right side past the diagonal is that many keys more */
  if (key->causal && problem->window_right == 0) SERVED_WORD(" causal");
  if (key->causal && problem->window_right > 0) SERVED_WORD(" window_right=%" PRId64, problem->window_right);
  if (key->window) SERVED_WORD(" window_left=%" PRId64, problem->window_left);
  if (key->has_lse) SERVED_WORD(" lse");
  if (key->varlen_k)
    SERVED_WORD(" packed_k");
  else if (key->varlen)
    SERVED_WORD(" varlen");
  if (key->varlen_q) SERVED_WORD(" varlen_q");
  if (key->page_size) SERVED_WORD(" page_size=%d", key->page_size);
  if (key->sinks) SERVED_WORD(" sinks");
  if (key->softcap) SERVED_WORD(" softcap=%.9g", (double)problem->softcap);
  if (key->kv_fp8) SERVED_WORD(" kv_dtype=%s", core_dtype_name((dtype_id)key->kv_fp8));
  if (key->alibi) SERVED_WORD(" alibi");
  if (key->bias) SERVED_WORD(" attn_bias=%s", core_dtype_name(core_key_bias_dtype(key)));
#undef SERVED_WORD
  char key_text[512];
  core_attention_key_string(key, key_text, sizeof key_text);
  if (n < 0 || (size_t)n >= sizeof words) return -1;
  int written = snprintf(buffer, size, "%s  # %s\n", words, key_text);
  return written > 0 && (size_t)written < size ? 0 : -1;
}

/* 1 when the open file (at most SERVED_MAX_BYTES) already holds a line ending in `ending`; -1 when it
 * cannot be read or is too large. *open_line: it ends without a newline (someone edited it). */
static int served_has(int fd, const char *ending, int *open_line) {
  *open_line = 0;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size > SERVED_MAX_BYTES) return -1;
  char *text = malloc((size_t)st.st_size + 1);
  if (text == NULL) return -1;
  ssize_t got = pread(fd, text, (size_t)st.st_size, 0);
  int found = -1;
  if (got == st.st_size) {
    text[got] = '\0';
    *open_line = got > 0 && text[got - 1] != '\n';
    found = 0;
    size_t len = strlen(ending);
    for (const char *at = text; !found && (at = strstr(at, ending)) != NULL; at++)
      found = at[len] == '\0' || at[len] == '\n';
  }
  free(text);
  return found;
}

void runtime_note_served(fj_context *context, const attention_problem *problem) {
  if (!context->disk_cache || !context->note_served) return;
  char line[1200];
  if (runtime_served_line(problem, line, sizeof line) != 0) return;
  char path[PATH_MAX + 64];
  runtime_served_path(context, path, sizeof path);
  int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    core_log(LOG_DEBUG, "served problems: cannot open %s: %s; not noted", path, strerror(errno));
    return;
  }
  int locked = 0;
  for (int i = 0; i < SERVED_LOCK_TRIES && !(locked = flock(fd, LOCK_EX | LOCK_NB) == 0); i++) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  const char *comment = strstr(line, "  # ");
  char ending[600];
  snprintf(ending, sizeof ending, "%.*s", (int)(strlen(comment) - 1), comment);  /* without the newline */
  int open_line = 0;
  int has = locked ? served_has(fd, ending, &open_line) : -1;
  if (has == 0) {
    struct stat st;
    char header[400] = "";
    if (open_line) snprintf(header, sizeof header, "\n");
    if (fstat(fd, &st) == 0 && st.st_size == 0)
      snprintf(header, sizeof header,
               "# flashjit: the problems served on %s:%d (%s), one line per problem key (the sizes of its first\n"
               "# call). `flashjit tune --served` tunes them, `flashjit cache warm --served` readies them.\n",
               context->backend->name, context->device_index, context->info.name);
    size_t header_size = strlen(header), line_size = strlen(line);
    char both[1600];
    snprintf(both, sizeof both, "%s%s", header, line);
    /* one write: with O_APPEND the line lands whole at the end even beside a writer that takes no lock */
    ssize_t put = write(fd, both, header_size + line_size);
    if (put != (ssize_t)(header_size + line_size))
      core_log(LOG_DEBUG, "served problems: writing %s failed: %s", path, put < 0 ? strerror(errno) : "short write");
  } else if (has < 0) {
    core_log(LOG_DEBUG, "served problems: %s is %s; not noted", path,
             locked ? "unreadable or over 1 MiB" : "locked by another process");
  }
  close(fd);  /* releases the lock */
}
