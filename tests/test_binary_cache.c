/* test_binary_cache.c: checks cache/binary_cache against its contract: round trips, keys kept apart,
 * every kind of damaged file turned into a logged miss that removes the file, clean failure in an
 * unusable folder, concurrent writers and readers in several processes that never see a partial file
 * nor leave temp files, and the default folder's environment variables. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cache/binary_cache.h"
#include "core/error.h"
#include "core/log.h"
#include "check.h"
#include "test_files.h"

static uint64_t rng_state;
static uint64_t random_u64(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}
static void random_bytes(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(random_u64() >> 56);
}

/* Warnings captured from the log: each damaged file must produce exactly one that names it. */
static char captured[8192];
static int captured_warnings;
static void capture_sink(log_level level, const char *line, void *user) {
  (void)user;
  if (level != LOG_WARN)
    return;
  captured_warnings++;
  size_t used = strlen(captured);
  snprintf(captured + used, sizeof captured - used, "%s\n", line);
}
static void capture_reset(void) {
  captured[0] = '\0';
  captured_warnings = 0;
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static int count_entries(const char *folder, int *temps) {
  DIR *d = opendir(folder);
  int count = 0;
  *temps = 0;
  if (!d)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    count++;
    if (strstr(e->d_name, "tmp"))
      (*temps)++;
  }
  closedir(d);
  return count;
}

static int read_file(const char *path, unsigned char **data, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *data = malloc((size_t)n + 1);
  *size = fread(*data, 1, (size_t)n, f);
  fclose(f);
  return *size == (size_t)n ? 0 : -1;
}

static int write_file(const char *path, const unsigned char *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t n = fwrite(data, 1, size, f);
  return fclose(f) == 0 && n == size ? 0 : -1;
}

/* ---- checks ----------------------------------------------------------------------------------- */

static void check_round_trip(const char *dir, const unsigned char *payload, size_t size) {
  const char *key = "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=1 | cpu znver5 | llvm 22.1.8";
  fj_status status = bincache_store(dir, key, "o", payload, size);
  check_detail(status == FJ_OK, "store a random payload", fj_last_error());
  void *data = NULL;
  size_t got = 0;
  int hit = bincache_load(dir, key, "o", &data, &got);
  check_detail(hit == 1 && got == size && data && memcmp(data, payload, size) == 0,
        "load returns the same bytes", "payload differs");
  free(data);

  /* The same key under another kind is another file. */
  hit = bincache_load(dir, key, "cubin", &data, &got);
  check_detail(hit == 0 && data == NULL && got == 0, "same key, other kind is a miss", NULL);

  /* A second key never returns the first's payload. */
  const char *key2 = "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=0 | cpu znver5 | llvm 22.1.8";
  hit = bincache_load(dir, key2, "o", &data, &got);
  check_detail(hit == 0 && data == NULL, "a second key misses before it is stored", NULL);
  unsigned char other[100];
  random_bytes(other, sizeof other);
  check_detail(bincache_store(dir, key2, "o", other, sizeof other) == FJ_OK, "store a second key", fj_last_error());
  hit = bincache_load(dir, key2, "o", &data, &got);
  check_detail(hit == 1 && got == sizeof other && memcmp(data, other, sizeof other) == 0,
        "the second key returns its own payload", NULL);
  free(data);
  hit = bincache_load(dir, key, "o", &data, &got);
  check_detail(hit == 1 && got == size && memcmp(data, payload, size) == 0, "the first key still returns its own",
        NULL);
  free(data);

  /* Overwriting replaces; an empty payload is a valid entry. */
  check_detail(bincache_store(dir, key2, "o", "", 0) == FJ_OK, "store an empty payload over an entry", fj_last_error());
  hit = bincache_load(dir, key2, "o", &data, &got);
  check_detail(hit == 1 && got == 0, "an empty payload loads as a hit of size 0", NULL);
  free(data);

  char path[4096];
  check_detail(bincache_path(dir, key, "../x", path, sizeof path) == FJ_INVALID_ARGUMENT,
        "a kind with '/' or '.' is refused", fj_last_error());
  check_detail(bincache_path(dir, key, "o", path, 10) != FJ_OK && path[0] == '\0', "a short path buffer is an error",
        fj_last_error());
}

typedef enum damage { DAMAGE_TRUNCATE, DAMAGE_FLIP_PAYLOAD, DAMAGE_MAGIC, DAMAGE_OTHER_KEY, DAMAGE_EMPTY } damage;
static const char *const damage_names[] = {"truncated file", "flipped payload byte", "wrong magic",
                                           "another key's file renamed onto this name", "empty file"};

static void check_damage(const char *dir, damage kind, const unsigned char *payload, size_t size) {
  char name[160], detail[8400];
  const char *key = "damage-test key";
  const char *other_key = "other key, same"; /* same length: the bytes must be compared */
  char path[4096], other_path[4096];
  bincache_path(dir, key, "o", path, sizeof path);
  bincache_path(dir, other_key, "o", other_path, sizeof other_path);
  if (bincache_store(dir, key, "o", payload, size) != FJ_OK) {
    check_detail(0, "store before damaging", fj_last_error());
    return;
  }
  unsigned char *bytes = NULL;
  size_t length = 0;
  read_file(path, &bytes, &length);
  switch (kind) {
  case DAMAGE_TRUNCATE:
    if (truncate(path, (off_t)(length - 1 - size / 2)) != 0)
      perror("truncate");
    break;
  case DAMAGE_FLIP_PAYLOAD:
    bytes[length - 1 - size / 3] ^= 0x10;
    write_file(path, bytes, length);
    break;
  case DAMAGE_MAGIC:
    bytes[2] = 'X';
    write_file(path, bytes, length);
    break;
  case DAMAGE_OTHER_KEY:
    bincache_store(dir, other_key, "o", payload, size);
    if (rename(other_path, path) != 0)
      perror("rename");
    break;
  case DAMAGE_EMPTY:
    write_file(path, bytes, 0);
    break;
  }
  free(bytes);

  capture_reset();
  core_log_set_sink(capture_sink, NULL);
  void *data = (void *)1;
  size_t got = 1;
  int hit = bincache_load(dir, key, "o", &data, &got);
  core_log_set_sink(NULL, NULL);
  snprintf(name, sizeof name, "%s: a miss, one warning naming the file, file removed", damage_names[kind]);
  snprintf(detail, sizeof detail, "hit=%d data=%p size=%zu exists=%d warnings=%d log='%s'", hit, data, got,
           file_exists(path), captured_warnings, captured);
  check_detail(hit == 0 && data == NULL && got == 0 && captured_warnings == 1 && strstr(captured, path) &&
            strstr(captured, "corrupt") && !file_exists(path),
        name, detail);
  printf("  %s", captured);

  snprintf(name, sizeof name, "%s: a store works again afterwards", damage_names[kind]);
  fj_status status = bincache_store(dir, key, "o", payload, size);
  hit = bincache_load(dir, key, "o", &data, &got);
  check_detail(status == FJ_OK && hit == 1 && got == size && memcmp(data, payload, size) == 0, name, fj_last_error());
  free(data);
}

static void check_unwritable(const char *root) {
  char file[2048], dir[4096], detail[2048];
  snprintf(file, sizeof file, "%s/regular-file", root);
  write_file(file, (const unsigned char *)"x", 1);
  snprintf(dir, sizeof dir, "%s/sub/cache", file);

  core_error_clear();
  fj_status status = bincache_store(dir, "key", "o", "abc", 3);
  snprintf(detail, sizeof detail, "status %d message '%s'", status, fj_last_error());
  check_detail(status == FJ_IO && strstr(fj_last_error(), dir), "store below a regular file is FJ_IO naming the path",
        detail);
  printf("  message: %s\n", fj_last_error());
  int temps = 0;
  check_detail(count_entries(root, &temps) == 2 && temps == 0, "a failed store leaves nothing behind", NULL);

  status = bincache_prepare(dir);
  snprintf(detail, sizeof detail, "status %d message '%s'", status, fj_last_error());
  check_detail(status == FJ_IO && strstr(fj_last_error(), dir) && strstr(fj_last_error(), "Not a directory"),
        "prepare below a regular file is FJ_IO with the path and errno's text", detail);
  void *data = NULL;
  size_t size = 0;
  check_detail(bincache_load(dir, "key", "o", &data, &size) == 0, "load below a regular file is a quiet miss", NULL);
  unlink(file);
}

/* A writer killed between mkstemp and rename leaves a temp file; prepare sweeps old ones only (a young
 * one may belong to a writer that is still running). */
static void check_stale_temps(const char *dir) {
  char old_temp[4096], young_temp[4096];
  snprintf(old_temp, sizeof old_temp, "%s/kernels/.tmp-o-dead01", dir);
  snprintf(young_temp, sizeof young_temp, "%s/kernels/.tmp-o-live01", dir);
  write_file(old_temp, (const unsigned char *)"partial", 7);
  write_file(young_temp, (const unsigned char *)"partial", 7);
  struct timeval two_hours_ago[2];
  gettimeofday(&two_hours_ago[0], NULL);
  two_hours_ago[0].tv_sec -= 7200;
  two_hours_ago[1] = two_hours_ago[0];
  utimes(old_temp, two_hours_ago);
  check_detail(bincache_prepare(dir) == FJ_OK && !file_exists(old_temp) && file_exists(young_temp),
        "prepare removes temp files older than an hour and keeps young ones", NULL);
  unlink(young_temp);
}

/* Four processes store and load one key 200 times each. Each stores its own payload (own length, own
 * bytes) so a reader that ever mixed two writers' files would fail; a reader that saw a partial file
 * would log "corrupt", which counts as a failure here. */
enum { WRITERS = 4, ROUNDS = 200 };
static size_t writer_size(int w) { return 3000 + (size_t)w * 1111; }
static void writer_payload(int w, unsigned char *p) {
  size_t n = writer_size(w);
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(i * 31 + (size_t)w * 97 + (i >> 8));
}

static int child_warnings;
static void child_sink(log_level level, const char *line, void *user) {
  (void)user;
  if (level <= LOG_WARN) {
    child_warnings++;
    fprintf(stderr, "child %d: %s\n", (int)getpid(), line);
  }
}

static int writer_process(const char *dir, int w) {
  core_log_set_sink(child_sink, NULL);
  unsigned char *mine = malloc(writer_size(WRITERS - 1));
  unsigned char *expected[WRITERS];
  for (int k = 0; k < WRITERS; k++) {
    expected[k] = malloc(writer_size(k));
    writer_payload(k, expected[k]);
  }
  writer_payload(w, mine);
  int bad = 0, hits = 0;
  for (int round = 0; round < ROUNDS; round++) {
    if (bincache_store(dir, "shared concurrent key", "o", mine, writer_size(w)) != FJ_OK) {
      fprintf(stderr, "child %d: store failed: %s\n", w, fj_last_error());
      bad++;
    }
    void *data = NULL;
    size_t size = 0;
    if (bincache_load(dir, "shared concurrent key", "o", &data, &size)) {
      hits++;
      int match = 0;
      for (int k = 0; k < WRITERS; k++)
        match |= size == writer_size(k) && memcmp(data, expected[k], size) == 0;
      if (!match) {
        fprintf(stderr, "child %d: loaded %zu bytes matching no writer\n", w, size);
        bad++;
      }
    }
    free(data);
  }
  for (int k = 0; k < WRITERS; k++)
    free(expected[k]);
  free(mine);
  if (hits == 0)
    bad++;
  return bad || child_warnings ? 1 : 0;
}

static void check_concurrency(const char *dir) {
  char kernels[4096], detail[128];
  snprintf(kernels, sizeof kernels, "%s/kernels", dir);
  fflush(stdout);
  pid_t children[WRITERS];
  for (int w = 0; w < WRITERS; w++) {
    children[w] = fork();
    if (children[w] == 0)
      _exit(writer_process(dir, w));
  }
  int failures = 0;
  for (int w = 0; w < WRITERS; w++) {
    int status = 0;
    if (children[w] < 0 || waitpid(children[w], &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
      failures++;
  }
  snprintf(detail, sizeof detail, "%d of %d processes saw a store failure, a warning or a wrong payload",
           failures, WRITERS);
  check_detail(failures == 0, "4 processes x 200 store+load of one key: every load a miss or a whole payload", detail);
  int temps = 0, entries = count_entries(kernels, &temps);
  snprintf(detail, sizeof detail, "%d entries, %d temp files", entries, temps);
  check_detail(entries == 1 && temps == 0, "concurrent writers leave one entry and no temp files", detail);
}

static void check_default_dir(void) {
  char buffer[4096], want[4096];
  char *saved[3];
  const char *names[3] = {"FLASHJIT_CACHE_DIR", "XDG_CACHE_HOME", "HOME"};
  for (int k = 0; k < 3; k++)
    saved[k] = getenv(names[k]) ? strdup(getenv(names[k])) : NULL;

  setenv("FLASHJIT_CACHE_DIR", "/some/where/fj", 1);
  setenv("XDG_CACHE_HOME", "/xdg/cache", 1);
  setenv("HOME", "/home/someone", 1);
  check_detail(bincache_default_dir(buffer, sizeof buffer) == FJ_OK && strcmp(buffer, "/some/where/fj") == 0,
        "FLASHJIT_CACHE_DIR wins", buffer);
  unsetenv("FLASHJIT_CACHE_DIR");
  check_detail(bincache_default_dir(buffer, sizeof buffer) == FJ_OK && strcmp(buffer, "/xdg/cache/flashjit") == 0,
        "then $XDG_CACHE_HOME/flashjit", buffer);
  unsetenv("XDG_CACHE_HOME");
  check_detail(bincache_default_dir(buffer, sizeof buffer) == FJ_OK &&
            strcmp(buffer, "/home/someone/.cache/flashjit") == 0,
        "then ~/.cache/flashjit", buffer);
  unsetenv("HOME");
  snprintf(want, sizeof want, "/tmp/flashjit-%lu", (unsigned long)getuid());
  check_detail(bincache_default_dir(buffer, sizeof buffer) == FJ_OK && strcmp(buffer, want) == 0,
        "then /tmp/flashjit-<uid>", buffer);
  setenv("FLASHJIT_CACHE_DIR", "/a/rather/long/path/for/a/small/buffer", 1);
  check_detail(bincache_default_dir(buffer, 8) == FJ_IO, "a buffer too small is FJ_IO", fj_last_error());

  for (int k = 0; k < 3; k++) {
    if (saved[k])
      setenv(names[k], saved[k], 1);
    else
      unsetenv(names[k]);
    free(saved[k]);
  }
}

int main(void) {
  rng_state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
  if (!rng_state)
    rng_state = 1;
  printf("seed %llu\n", (unsigned long long)rng_state);
  if (!core_log_enabled(LOG_WARN)) /* the checks read warnings and errors from the log */
    core_log_set_level(LOG_WARN);
  char root[] = "/tmp/test_binary_cache_XXXXXX";
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  char dir[2048];
  snprintf(dir, sizeof dir, "%s/cache/nested", root);
  fj_status status = bincache_prepare(dir);
  char kernels[4096];
  snprintf(kernels, sizeof kernels, "%s/kernels", dir);
  struct stat st;
  check_detail(status == FJ_OK && stat(kernels, &st) == 0 && S_ISDIR(st.st_mode), "prepare makes dir/kernels",
        fj_last_error());
  check_detail(bincache_prepare(dir) == FJ_OK, "prepare again is fine", fj_last_error());

  size_t size = 5000 + (size_t)(random_u64() % 20000);
  unsigned char *payload = malloc(size);
  random_bytes(payload, size);
  check_round_trip(dir, payload, size);
  for (int d = DAMAGE_TRUNCATE; d <= DAMAGE_EMPTY; d++)
    check_damage(dir, (damage)d, payload, size);
  free(payload);
  check_unwritable(root);
  check_stale_temps(dir);

  char shared[2048];
  snprintf(shared, sizeof shared, "%s/shared", root);
  check_detail(bincache_prepare(shared) == FJ_OK, "prepare a folder for the concurrent run", fj_last_error());
  check_concurrency(shared);
  check_default_dir();

  remove_tree(root);
  check_detail(!file_exists(root), "temporary folders removed", root);
  return check_summary();
}
