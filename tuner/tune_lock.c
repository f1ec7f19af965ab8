/* tune_lock.c: one tuner per device. The lock is a non-blocking flock on a file in the cache folder:
 * it belongs to the open file, so it goes away with the process however the process ends (kill -9
 * included) and no stale lock can outlive a tuner. The holder's pid is written into the file only so
 * that the refusal can say who holds it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/error.h"
#include "tuner/tuner.h"

static void tune_lock_path(const char *cache_dir, const char *device_id, char *buffer, size_t size) {
  char name[128];
  snprintf(name, sizeof name, "%s", device_id);
  for (char *c = name; *c; c++)
    if (*c == ':' || *c == '/' || *c == ' ') *c = '-';
  snprintf(buffer, size, "%s/tune-%s.lock", cache_dir, name);
}

int tune_lock_acquire(const char *cache_dir, const char *device_id) {
  char path[PATH_MAX + 160];
  tune_lock_path(cache_dir, device_id, path, sizeof path);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    core_error(FJ_IO, "cannot open the tuner lock %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char holder[32] = "";
    ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    close(fd);
    if (err == EWOULDBLOCK)
      core_error(FJ_IO, "another tuner holds %s (pid %s); one tuner per device at a time",
                 path, holder[0] ? holder : "unknown");
    else
      core_error(FJ_IO, "cannot lock %s: %s", path, strerror(err));
    return -1;
  }
  char pid[32];
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) != len) {
    /* the pid is only for the message above; the lock holds either way */
  }
  return fd;
}

void tune_lock_release(int fd) {
  if (fd < 0) return;
  flock(fd, LOCK_UN);
  close(fd);
}
