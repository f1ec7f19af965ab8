/* binary_cache.c: compiled kernels on disk, one self-checking file per key. A reader trusts nothing it
 * did not verify (magic, version, key, sizes, checksum) and turns anything wrong into a logged miss;
 * a writer publishes only complete files (temp file in the same folder, fsync, rename), so any number
 * of processes can share a cache folder without locks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cache/binary_cache.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"

static const unsigned char bincache_magic[8] = {'F', 'J', 'B', 'I', 'N', 0, 0, 1};
enum { BINCACHE_VERSION = 1, BINCACHE_HEADER = 8 + 4 + 4 + 8 + 8 };
/* A writer that died between mkstemp and rename leaves its temp file; one this old is certainly dead. */
enum { BINCACHE_STALE_TEMP_SECONDS = 3600 };
static const char bincache_temp_prefix[] = ".tmp-";

static const char *bincache_strerror(int code, char *buffer, size_t size) {
  /* GNU strerror_r (the build defines _GNU_SOURCE): may return a static string instead of buffer. */
  return strerror_r(code, buffer, size);
}

/* The header is little-endian whatever the host, so a cache folder on a shared disk stays readable. */
static void bincache_put(unsigned char *p, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; i++)
    p[i] = (unsigned char)(value >> (8 * i));
}
static uint64_t bincache_get(const unsigned char *p, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; i++)
    value |= (uint64_t)p[i] << (8 * i);
  return value;
}

static int bincache_kind_ok(const char *kind) {
  if (!kind || !*kind || strlen(kind) > 16)
    return 0;
  for (const char *p = kind; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
      return 0;
  return 1;
}

fj_status bincache_default_dir(char *buffer, size_t size) {
  if (!buffer || size == 0)
    return core_error(FJ_INVALID_ARGUMENT, "bincache_default_dir: buffer is NULL or empty");
  const char *env = getenv("FLASHJIT_CACHE_DIR");
  const char *xdg = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  int n;
  if (env && *env)
    n = snprintf(buffer, size, "%s", env);
  else if (xdg && xdg[0] == '/') /* the XDG spec says to ignore a relative value */
    n = snprintf(buffer, size, "%s/flashjit", xdg);
  else if (home && *home)
    n = snprintf(buffer, size, "%s/.cache/flashjit", home);
  else
    n = snprintf(buffer, size, "/tmp/flashjit-%lu", (unsigned long)getuid());
  if (n < 0 || (size_t)n >= size) {
    buffer[0] = '\0';
    return core_error(FJ_IO, "binary cache: the default cache folder needs %d bytes, the buffer has %zu",
                      n + 1, size);
  }
  return FJ_OK;
}

/* mkdir -p for one path; on failure names the component that could not be made. */
static fj_status bincache_mkdirs(const char *dir) {
  char path[4096];
  size_t length = strlen(dir);
  if (length == 0 || length >= sizeof path)
    return core_error(FJ_IO, "binary cache: folder path '%s' is empty or too long", dir);
  memcpy(path, dir, length + 1);
  for (size_t i = 1; i <= length; i++) {
    if (path[i] != '/' && path[i] != '\0')
      continue;
    char saved = path[i];
    path[i] = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
      char text[128];
      int code = errno;
      return core_error(FJ_IO, "binary cache: cannot create folder %s (at %s): %s", dir, path,
                        bincache_strerror(code, text, sizeof text));
    }
    path[i] = saved;
  }
  /* mkdir's EEXIST also covers a regular file of that name. */
  struct stat st;
  int code = stat(dir, &st) != 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
  if (code != 0) {
    char text[128];
    return core_error(FJ_IO, "binary cache: %s is not a usable folder: %s", dir,
                      bincache_strerror(code, text, sizeof text));
  }
  return FJ_OK;
}

static void bincache_remove_stale_temps(const char *kernels) {
  DIR *folder = opendir(kernels);
  if (!folder)
    return;
  time_t now = time(NULL);
  struct dirent *entry;
  while ((entry = readdir(folder)) != NULL) {
    if (strncmp(entry->d_name, bincache_temp_prefix, sizeof bincache_temp_prefix - 1) != 0)
      continue;
    struct stat st;
    if (fstatat(dirfd(folder), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        now - st.st_mtime > BINCACHE_STALE_TEMP_SECONDS) {
      if (unlinkat(dirfd(folder), entry->d_name, 0) == 0)
        core_log(LOG_INFO, "binary cache: removed %s/%s left by a writer that died", kernels,
                 entry->d_name);
    }
  }
  closedir(folder);
}

fj_status bincache_prepare(const char *dir) {
  if (!dir || !*dir)
    return core_error(FJ_INVALID_ARGUMENT, "bincache_prepare: dir is NULL or empty");
  char kernels[4096];
  int n = snprintf(kernels, sizeof kernels, "%s/kernels", dir);
  if (n < 0 || (size_t)n >= sizeof kernels)
    return core_error(FJ_IO, "binary cache: folder path '%s' is too long", dir);
  fj_status status = bincache_mkdirs(kernels);
  if (status == FJ_OK)
    bincache_remove_stale_temps(kernels);
  return status;
}

fj_status bincache_path(const char *dir, const char *key, const char *kind, char *buffer, size_t size) {
  if (buffer && size)
    buffer[0] = '\0';
  if (!dir || !key || !buffer || size == 0)
    return core_error(FJ_INVALID_ARGUMENT, "bincache_path: %s is NULL",
                      !dir ? "dir" : !key ? "key" : "buffer");
  if (!bincache_kind_ok(kind))
    return core_error(FJ_INVALID_ARGUMENT,
                      "bincache_path: kind '%s' must be 1-16 characters of [a-z0-9_]", kind ? kind : "(null)");
  char hex[17];
  core_hash64_hex(core_hash64(key, strlen(key)), hex);
  int n = snprintf(buffer, size, "%s/kernels/%s.%s", dir, hex, kind);
  if (n < 0 || (size_t)n >= size) {
    buffer[0] = '\0';
    return core_error(FJ_IO, "binary cache: path under %s needs %d bytes, the buffer has %zu", dir, n + 1,
                      size);
  }
  return FJ_OK;
}

/* ---- load ------------------------------------------------------------------------------------- */

static int bincache_read_all(int fd, void *buffer, size_t size) {
  char *p = buffer;
  while (size > 0) {
    ssize_t got = read(fd, p, size);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return -1;
    p += got;
    size -= (size_t)got;
  }
  return 0;
}

/* Removes a corrupt entry, unless a writer has replaced it since we opened it: that file is new and
 * whole, and removing it would only cost a rebuild. */
static void bincache_discard(const char *path, int fd, const char *reason) {
  core_log(LOG_WARN, "binary cache: %s is corrupt (%s); removed, will rebuild", path, reason);
  struct stat opened, current;
  if (fstat(fd, &opened) == 0 && stat(path, &current) == 0 && opened.st_dev == current.st_dev &&
      opened.st_ino == current.st_ino)
    unlink(path);
}

/* Returns the payload (malloc'd) or NULL with *reason set when the file is not a valid entry for key. */
static void *bincache_read_entry(int fd, const char *key, size_t *size, char *reason, size_t reason_size) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    snprintf(reason, reason_size, "cannot stat");
    return NULL;
  }
  unsigned char header[BINCACHE_HEADER];
  if ((size_t)st.st_size < sizeof header || bincache_read_all(fd, header, sizeof header) != 0) {
    snprintf(reason, reason_size, "shorter than a header: %lld bytes", (long long)st.st_size);
    return NULL;
  }
  if (memcmp(header, bincache_magic, sizeof bincache_magic) != 0) {
    snprintf(reason, reason_size, "wrong magic");
    return NULL;
  }
  uint32_t version = (uint32_t)bincache_get(header + 8, 4);
  uint64_t key_length = bincache_get(header + 12, 4);
  uint64_t payload_size = bincache_get(header + 16, 8);
  uint64_t checksum = bincache_get(header + 24, 8);
  if (version != BINCACHE_VERSION) {
    snprintf(reason, reason_size, "format version %u, expected %d", version, BINCACHE_VERSION);
    return NULL;
  }
  size_t want_key = strlen(key);
  if (key_length != want_key) {
    snprintf(reason, reason_size, "holds another key (%llu bytes, expected %zu)",
             (unsigned long long)key_length, want_key);
    return NULL;
  }
  /* Compared before any addition so a forged size cannot overflow. */
  uint64_t file_size = (uint64_t)st.st_size;
  if (payload_size > file_size || sizeof header + key_length + payload_size != file_size) {
    snprintf(reason, reason_size, "size mismatch: header says %llu payload bytes, the file has %llu bytes",
             (unsigned long long)payload_size, (unsigned long long)file_size);
    return NULL;
  }
  char *stored_key = malloc(want_key + 1);
  void *payload = malloc(payload_size ? payload_size : 1);
  if (!stored_key || !payload) {
    free(stored_key);
    free(payload);
    snprintf(reason, reason_size, "no memory");
    return NULL;
  }
  const char *problem = NULL;
  if (bincache_read_all(fd, stored_key, want_key) != 0 ||
      bincache_read_all(fd, payload, payload_size) != 0)
    problem = "short read";
  else if (memcmp(stored_key, key, want_key) != 0)
    problem = "holds another key";
  else if (core_hash64(payload, payload_size) != checksum)
    problem = "payload checksum mismatch";
  free(stored_key);
  if (problem) {
    free(payload);
    snprintf(reason, reason_size, "%s", problem);
    return NULL;
  }
  *size = payload_size;
  return payload;
}

int bincache_load(const char *dir, const char *key, const char *kind, void **data, size_t *size) {
  if (data)
    *data = NULL;
  if (size)
    *size = 0;
  if (!data || !size)
    return 0;
  char path[4096];
  if (bincache_path(dir, key, kind, path, sizeof path) != FJ_OK)
    return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) {
      char text[128];
      core_log(LOG_DEBUG, "binary cache: cannot open %s: %s", path,
               bincache_strerror(errno, text, sizeof text));
    }
    return 0;
  }
  char reason[256] = "";
  void *payload = bincache_read_entry(fd, key, size, reason, sizeof reason);
  if (!payload) {
    if (strcmp(reason, "no memory") == 0)
      core_log(LOG_WARN, "binary cache: no memory to read %s; treating it as a miss", path);
    else
      bincache_discard(path, fd, reason);
    *size = 0;
  }
  close(fd);
  *data = payload;
  return payload != NULL;
}

/* ---- store ------------------------------------------------------------------------------------ */

static int bincache_write_all(int fd, const void *data, size_t size) {
  const char *p = data;
  while (size > 0) {
    ssize_t put = write(fd, p, size);
    if (put < 0 && errno == EINTR)
      continue;
    if (put < 0)
      return -1;
    p += put;
    size -= (size_t)put;
  }
  return 0;
}

static int bincache_open_temp(const char *dir, const char *kind, char *temp, size_t size) {
  int n = snprintf(temp, size, "%s/kernels/%s%s-XXXXXX", dir, bincache_temp_prefix, kind);
  if (n < 0 || (size_t)n >= size) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return mkostemp(temp, O_CLOEXEC);
}

fj_status bincache_store(const char *dir, const char *key, const char *kind, const void *data,
                         size_t size) {
  if (!dir || !key || (!data && size > 0))
    return core_error(FJ_INVALID_ARGUMENT, "bincache_store: %s is NULL",
                      !dir ? "dir" : !key ? "key" : "data");
  if (strlen(key) > UINT32_MAX)
    return core_error(FJ_INVALID_ARGUMENT, "bincache_store: key of %zu bytes is too long", strlen(key));
  char path[4096], temp[4096];
  fj_status status = bincache_path(dir, key, kind, path, sizeof path);
  if (status != FJ_OK)
    return status;

  int fd = bincache_open_temp(dir, kind, temp, sizeof temp);
  if (fd < 0 && errno == ENOENT) {
    /* Someone removed the cache folder under a running process; make it again rather than fail. */
    if (bincache_prepare(dir) == FJ_OK)
      fd = bincache_open_temp(dir, kind, temp, sizeof temp);
    else
      errno = ENOENT;
  }
  char text[128];
  if (fd < 0) {
    int code = errno;
    return core_error(FJ_IO, "binary cache: cannot create a temporary file in %s/kernels for %s: %s", dir,
                      path, bincache_strerror(code, text, sizeof text));
  }

  unsigned char header[BINCACHE_HEADER];
  size_t key_length = strlen(key);
  memcpy(header, bincache_magic, sizeof bincache_magic);
  bincache_put(header + 8, BINCACHE_VERSION, 4);
  bincache_put(header + 12, key_length, 4);
  bincache_put(header + 16, size, 8);
  bincache_put(header + 24, core_hash64(data, size), 8);

  const char *step = NULL;
  if (fchmod(fd, 0644) != 0) /* mkstemp makes 0600; other users of a shared cache must read it */
    step = "chmod";
  else if (bincache_write_all(fd, header, sizeof header) != 0 || bincache_write_all(fd, key, key_length) != 0 ||
           bincache_write_all(fd, data, size) != 0)
    step = "write";
  else if (fsync(fd) != 0)
    step = "fsync";
  int code = errno;
  if (close(fd) != 0 && !step) {
    step = "close";
    code = errno;
  }
  if (!step && rename(temp, path) != 0) {
    step = "rename";
    code = errno;
  }
  if (step) {
    unlink(temp);
    return core_error(FJ_IO, "binary cache: cannot store %s (%s failed): %s", path, step,
                      bincache_strerror(code, text, sizeof text));
  }
  return FJ_OK;
}
