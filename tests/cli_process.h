/* cli_process.h: what the tests that run the `flashjit` command as a child process share: starting it
 * with its output in files, waiting for it with a time limit, and reading what it wrote. Header-only,
 * like check.h, so that each test stays one .c file. */
#ifndef FJ_TESTS_CLI_PROCESS_H
#define FJ_TESTS_CLI_PROCESS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

/* All of a stream as a NUL-terminated string ("" when nothing could be read); free() it. */
static inline char *read_stream(FILE *f) {
  size_t capacity = 4096, length = 0, n;
  char *text = malloc(capacity);
  while (f && text && (n = fread(text + length, 1, capacity - length - 1, f)) > 0) {
    length += n;
    if (capacity - length < 2) {
      char *grown = realloc(text, capacity * 2);
      if (grown == NULL) break;
      text = grown;
      capacity *= 2;
    }
  }
  if (text) text[length] = '\0';
  return text ? text : strdup("");
}

static inline char *read_text_file(const char *path) {
  FILE *f = fopen(path, "rb");
  char *text = read_stream(f);
  if (f) fclose(f);
  return text;
}

/* Starts FJ_TEST_CLI with args (NULL-terminated), stdin from /dev/null, stdout and stderr into the two
 * files; its pid, or -1 with errno set. */
static inline pid_t cli_spawn(const char *const *args, const char *out_path, const char *err_path) {
  const char *argv[64];
  int argc = 0;
  argv[argc++] = FJ_TEST_CLI;
  for (int i = 0; args[i] != NULL && argc < 63; i++) argv[argc++] = args[i];
  argv[argc] = NULL;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, FJ_TEST_CLI, &actions, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pid;
}

/* Waits for pid at most `seconds`, then kills it (and says so); 1 and its wait status in *status when
 * it ended by itself, 0 when it had to be killed. */
static inline int cli_wait(pid_t pid, int seconds, int *status) {
  *status = 0;
  for (long waited_ms = 0;; waited_ms += 10) {
    pid_t done = waitpid(pid, status, WNOHANG);
    if (done == pid) return 1;
    if (done < 0 && errno != EINTR) return 0;
    if (waited_ms > seconds * 1000L) {
      kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      printf("     (killed after %d s)\n", seconds);
      return 0;
    }
    struct timespec ten_ms = {0, 10000000};
    nanosleep(&ten_ms, NULL);
  }
}
#endif
