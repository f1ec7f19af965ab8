/* test_tuning_db_fault.c: the tuning database when the disk fails, the way SQLite's own *fault.test
 * suites test SQLite. A VFS shim in front of the default one fails the Nth write, sync or truncate of
 * any file SQLite touches (the database, its WAL, its shared-memory index): once (a transient I/O
 * error) or from then on (a full disk). A tuner's workload (open, record trials, recompute a winner,
 * claim and release, import, prune, close) runs against a database that already holds results, for N
 * = 1, 2, ... until the workload runs through without reaching the Nth. Each time every call must
 * return (an error or FJ_OK, never a crash or an abort), and once the disk is healthy again the
 * database the library reopens must hold every earlier trial and winner and every trial whose record
 * call said FJ_OK, pass integrity_check, not have been moved aside, and take new trials. */
#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "check.h"
#include "core/error.h"
#include "core/log.h"
#include "test_files.h"
#include "tuning_dump.h"

/* ---- the fault VFS -------------------------------------------------------------------------------- */

typedef struct fault_file {
  sqlite3_file base;
  sqlite3_file *real;  /* the default VFS's file, in the same allocation right after this struct */
} fault_file;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;

static struct {
  long fail_at;    /* the write/sync/truncate that fails, counted from arming; 0: disarmed */
  long seen;       /* writes, syncs and truncates since arming */
  int persistent;  /* after the first fault every later one fails too (a full disk) */
  int tripped;     /* the fault happened */
} fault;

static void fault_arm(long fail_at, int persistent) {
  fault.fail_at = fail_at;
  fault.seen = 0;
  fault.persistent = persistent;
  fault.tripped = 0;
}
static void fault_disarm(void) { fault.fail_at = 0; }

static int fault_hit(void) {
  if (fault.fail_at == 0) return 0;
  if (++fault.seen == fault.fail_at) fault.tripped = 1;
  return fault.seen == fault.fail_at || (fault.persistent && fault.tripped);
}

static sqlite3_file *real_of(sqlite3_file *file) { return ((fault_file *)file)->real; }

static int fault_close(sqlite3_file *file) {
  sqlite3_file *real = real_of(file);
  return real->pMethods ? real->pMethods->xClose(real) : SQLITE_OK;
}
static int fault_read(sqlite3_file *file, void *buffer, int amount, sqlite3_int64 offset) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xRead(real, buffer, amount, offset);
}
static int fault_write(sqlite3_file *file, const void *buffer, int amount, sqlite3_int64 offset) {
  if (fault_hit()) return fault.persistent ? SQLITE_FULL : SQLITE_IOERR_WRITE;
  sqlite3_file *real = real_of(file);
  return real->pMethods->xWrite(real, buffer, amount, offset);
}
static int fault_truncate(sqlite3_file *file, sqlite3_int64 size) {
  if (fault_hit()) return SQLITE_IOERR_TRUNCATE;
  sqlite3_file *real = real_of(file);
  return real->pMethods->xTruncate(real, size);
}
static int fault_sync(sqlite3_file *file, int flags) {
  if (fault_hit()) return SQLITE_IOERR_FSYNC;
  sqlite3_file *real = real_of(file);
  return real->pMethods->xSync(real, flags);
}
static int fault_file_size(sqlite3_file *file, sqlite3_int64 *size) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xFileSize(real, size);
}
static int fault_lock(sqlite3_file *file, int level) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xLock(real, level);
}
static int fault_unlock(sqlite3_file *file, int level) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xUnlock(real, level);
}
static int fault_check_reserved(sqlite3_file *file, int *out) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xCheckReservedLock(real, out);
}
static int fault_file_control(sqlite3_file *file, int op, void *arg) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xFileControl(real, op, arg);
}
static int fault_sector_size(sqlite3_file *file) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xSectorSize(real);
}
static int fault_device_characteristics(sqlite3_file *file) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xDeviceCharacteristics(real);
}
static int fault_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xShmMap(real, region, size, extend, out);
}
static int fault_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xShmLock(real, offset, n, flags);
}
static void fault_shm_barrier(sqlite3_file *file) {
  sqlite3_file *real = real_of(file);
  real->pMethods->xShmBarrier(real);
}
static int fault_shm_unmap(sqlite3_file *file, int delete_flag) {
  sqlite3_file *real = real_of(file);
  return real->pMethods->xShmUnmap(real, delete_flag);
}

/* Version 2: the shared-memory calls WAL needs; no memory-mapped fetches (SQLite then reads). */
static const sqlite3_io_methods fault_methods = {
    .iVersion = 2,
    .xClose = fault_close,
    .xRead = fault_read,
    .xWrite = fault_write,
    .xTruncate = fault_truncate,
    .xSync = fault_sync,
    .xFileSize = fault_file_size,
    .xLock = fault_lock,
    .xUnlock = fault_unlock,
    .xCheckReservedLock = fault_check_reserved,
    .xFileControl = fault_file_control,
    .xSectorSize = fault_sector_size,
    .xDeviceCharacteristics = fault_device_characteristics,
    .xShmMap = fault_shm_map,
    .xShmLock = fault_shm_lock,
    .xShmBarrier = fault_shm_barrier,
    .xShmUnmap = fault_shm_unmap,
};

static int fault_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
  (void)vfs;
  fault_file *f = (fault_file *)file;
  f->real = (sqlite3_file *)(f + 1);
  memset(f->real, 0, (size_t)real_vfs->szOsFile);
  int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
  /* SQLite closes a file whose pMethods is set even when the open failed: mirror the real one. */
  f->base.pMethods = f->real->pMethods ? &fault_methods : NULL;
  return rc;
}
static int fault_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
  (void)vfs;
  return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int fault_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
  (void)vfs;
  return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int fault_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
  (void)vfs;
  return real_vfs->xFullPathname(real_vfs, name, size, out);
}

/* The shim becomes the default VFS, so the library's sqlite3_open_v2(..., NULL) goes through it. */
static int fault_install(void) {
  real_vfs = sqlite3_vfs_find(NULL);
  if (real_vfs == NULL) return -1;
  fault_vfs = *real_vfs;
  fault_vfs.pNext = NULL;
  fault_vfs.zName = "flashjit-fault";
  fault_vfs.szOsFile = (int)sizeof(fault_file) + real_vfs->szOsFile;
  fault_vfs.xOpen = fault_open;
  fault_vfs.xDelete = fault_delete;
  fault_vfs.xAccess = fault_access;
  fault_vfs.xFullPathname = fault_full_pathname;
  return sqlite3_vfs_register(&fault_vfs, 1) == SQLITE_OK ? 0 : -1;
}

/* ---- fixtures -------------------------------------------------------------------------------------- */

#define KEY_EARLIER "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=0 lse=0 dcontig=1 sq<=2^11"
#define KEY_NEW "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=1 lse=0 dcontig=1 sq<=2^12"
#define FAMILY "attention_fwd_cpu"
#define TIMING "cpu-wall"
#define FINGERPRINT "cpu:x86_64:fault-test:16:v1"

static const tuning_device test_device = {
    .fingerprint = FINGERPRINT, .backend = "cpu", .name = "Test CPU", .arch = "x86-64-v3",
    .driver_version = "none", .compute_units = 16, .memory_bytes = 64ULL << 30};

static tuning_trial make_trial(const char *key, const char *config, trial_outcome outcome, double median) {
  tuning_trial t = {.problem_key = key, .family = FAMILY, .config = config, .timing_method = TIMING,
                    .batch = 1, .seqlen_q = 2048, .seqlen_kv = 2048, .outcome = outcome,
                    .median_ms = outcome == TRIAL_OK ? median : 0, .min_ms = outcome == TRIAL_OK ? median * 0.9 : 0,
                    .max_ms = outcome == TRIAL_OK ? median * 1.2 : 0, .repeats = 10, .rel_err = 1e-3,
                    .message = outcome == TRIAL_OK ? "" : "boom", .library_version = tuning_db_library_version(),
                    .llvm_version = tuning_db_llvm_version(), .generator_version = 1};
  return t;
}

static fj_status update_winner(tuning_db *db, const char *key) {
  return tuning_db_update_winner(db, FINGERPRINT, key, FAMILY, TIMING, tuning_db_library_version(),
                                 tuning_db_llvm_version(), 1);
}

/* The results every round starts from: three timed configs and a crash of KEY_EARLIER, winner
 * block_m=32 (1.5 ms). */
static const struct {
  const char *config;
  trial_outcome outcome;
  double median;
} earlier[] = {
    {"block_m=16 block_n=8", TRIAL_OK, 2.5},
    {"block_m=32 block_n=8", TRIAL_OK, 1.5},
    {"block_m=64 block_n=8", TRIAL_OK, 3.0},
    {"block_m=64 block_n=16", TRIAL_CRASH, 0},
};
#define EARLIER_COUNT ((int)(sizeof earlier / sizeof earlier[0]))
#define EARLIER_WINNER "block_m=32 block_n=8"

/* An export of another tuner's results for KEY_NEW, as `flashjit cache import` reads it. */
static char import_json[8192];

static char root[64], db_path[128];

/* 1 when a file was moved aside as corrupt (remove: and those files are deleted). */
static int moved_aside(int remove) {
  DIR *d = opendir(root);
  int found = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (strstr(e->d_name, ".corrupt-") == NULL) continue;
    found = 1;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, e->d_name);
    if (remove) remove_tree(path);
  }
  if (d) closedir(d);
  return found;
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *text = NULL;
  size_t size = 0;
  FILE *memory = open_memstream(&text, &size);
  char buffer[4096];
  size_t n;
  while (memory && (n = fread(buffer, 1, sizeof buffer, f)) > 0) fwrite(buffer, 1, n, memory);
  fclose(f);
  if (memory) fclose(memory);
  return text;
}

/* Messages the library logs about the failures: counted, not printed (hundreds of rounds). */
static int logged;
static void count_log(log_level level, const char *line, void *user) {
  (void)level, (void)line, (void)user;
  logged++;
}

/* The database files of db_path, gone. */
static void remove_database(void) {
  char side[160];
  remove_tree(db_path);
  snprintf(side, sizeof side, "%s-wal", db_path);
  remove_tree(side);
  snprintf(side, sizeof side, "%s-shm", db_path);
  remove_tree(side);
}

static void make_earlier_results(void) {
  remove_database();
  tuning_db *db = NULL;
  fj_status s = tuning_db_open(db_path, &db);
  for (int i = 0; s == FJ_OK && i < EARLIER_COUNT; i++) {
    tuning_trial t = make_trial(KEY_EARLIER, earlier[i].config, earlier[i].outcome, earlier[i].median);
    s = tuning_db_record_trial(db, &test_device, &t, NULL);
  }
  if (s == FJ_OK) s = update_winner(db, KEY_EARLIER);
  tuning_db_close(db);
  if (s != FJ_OK) {
    fprintf(stderr, "cannot make the earlier results: %s\n", fj_last_error());
    exit(1);
  }
}

/* What one round's workload recorded with FJ_OK, to be found afterwards. */
typedef struct round_record {
  char configs[8][64];
  int count;
} round_record;

/* The tuner's side of a night: every call may fail; none may crash. */
static void workload(long round, round_record *recorded) {
  recorded->count = 0;
  tuning_db *db = NULL;
  if (tuning_db_open(db_path, &db) != FJ_OK) return;
  for (int i = 0; i < 4; i++) {
    char config[64];
    snprintf(config, sizeof config, "block_m=%d block_n=%ld", 16 << (i % 3), 8 + round);
    tuning_trial t = make_trial(KEY_NEW, config, i == 3 ? TRIAL_WRONG_RESULT : TRIAL_OK, 1.0 + i);
    if (tuning_db_claim(db, FINGERPRINT, &t, 600) == 1) {
      if (tuning_db_record_trial(db, &test_device, &t, NULL) == FJ_OK)
        snprintf(recorded->configs[recorded->count++], sizeof recorded->configs[0], "%s", config);
      tuning_db_release(db, FINGERPRINT, &t);
    }
  }
  (void)update_winner(db, KEY_NEW);
  int imported = 0, skipped = 0, rejected = 0;
  (void)tuning_db_import(db, import_json, NULL, &imported, &skipped, &rejected, NULL);
  tuning_winner w;
  (void)tuning_db_lookup_winner(db, FINGERPRINT, KEY_EARLIER, FAMILY, TIMING, &w);
  int removed = 0;
  (void)tuning_db_prune(db, 0, 1, &removed);
  tuning_db_close(db);
}

/* After the fault: what must hold with the disk healthy again. 1 when all of it does. */
static int verify(const char *mode, long round, const round_record *recorded) {
  char what[256];
  tuning_db *db = NULL;
  fj_status s = tuning_db_open(db_path, &db);
  int ok = s == FJ_OK;
  snprintf(what, sizeof what, "%s fault at I/O call %ld: the database reopens", mode, round);
  if (!ok) {
    check_detail(0, what, fj_last_error());
    return 0;
  }
  for (int i = 0; i < EARLIER_COUNT; i++) {
    tuning_trial t = make_trial(KEY_EARLIER, earlier[i].config, earlier[i].outcome, earlier[i].median);
    if (tuning_db_has_trial(db, FINGERPRINT, &t) != 1) {
      snprintf(what, sizeof what, "%s fault at I/O call %ld: earlier trial '%s' kept", mode, round, earlier[i].config);
      check_detail(0, what, "missing");
      ok = 0;
    }
  }
  tuning_winner w;
  if (tuning_db_lookup_winner(db, FINGERPRINT, KEY_EARLIER, FAMILY, TIMING, &w) != 1 ||
      strcmp(w.config, EARLIER_WINNER) != 0) {
    snprintf(what, sizeof what, "%s fault at I/O call %ld: the earlier winner kept", mode, round);
    check_detail(0, what, "missing or changed");
    ok = 0;
  }
  for (int i = 0; i < recorded->count; i++) {
    tuning_trial t = make_trial(KEY_NEW, recorded->configs[i], TRIAL_OK, 1.0);
    if (tuning_db_has_trial(db, FINGERPRINT, &t) != 1) {
      snprintf(what, sizeof what, "%s fault at I/O call %ld: trial '%s' (recorded: FJ_OK) kept", mode, round,
               recorded->configs[i]);
      check_detail(0, what, "missing");
      ok = 0;
    }
  }
  char integrity[256];
  tuning_sql_text(db_path, "PRAGMA integrity_check", integrity, sizeof integrity);
  if (strcmp(integrity, "ok") != 0) {
    snprintf(what, sizeof what, "%s fault at I/O call %ld: integrity_check", mode, round);
    check_detail(0, what, integrity);
    ok = 0;
  }
  if (moved_aside(0)) {
    snprintf(what, sizeof what, "%s fault at I/O call %ld: the database stays in place", mode, round);
    check_detail(0, what, "moved aside as corrupt");
    ok = 0;
  }
  tuning_trial fresh = make_trial(KEY_NEW, "block_m=128 block_n=128", TRIAL_OK, 0.5);
  fresh.seqlen_q = 1000 + (int64_t)round;  /* a trial no round recorded */
  if (tuning_db_record_trial(db, &test_device, &fresh, NULL) != FJ_OK) {
    snprintf(what, sizeof what, "%s fault at I/O call %ld: a new trial is recorded afterwards", mode, round);
    check_detail(0, what, fj_last_error());
    ok = 0;
  }
  tuning_db_close(db);
  return ok;
}

/* N = 1, 2, ... until the workload no longer reaches the Nth I/O call. */
static void run_mode(const char *mode, int persistent) {
  long round, failing_rounds = 0;
  const long limit = 2000;
  for (round = 1; round <= limit; round++) {
    make_earlier_results();
    fault_arm(round, persistent);
    round_record recorded;
    workload(round, &recorded);
    int tripped = fault.tripped;
    fault_disarm();
    if (!verify(mode, round, &recorded)) failing_rounds++;
    if (!tripped) break;
  }
  char what[200];
  snprintf(what, sizeof what, "%s faults: the workload runs through once no fault is reached (%ld rounds)", mode,
           round);
  check(round <= limit && round > 10, "%s", what);
  check(failing_rounds == 0, "%s faults: after each of the %ld faults every earlier result, every recorded trial and "
                             "the file's integrity kept (%ld rounds failed)",
        mode, round - 1, failing_rounds);
}

static void make_import_json(void) {
  char other_path[160];
  snprintf(other_path, sizeof other_path, "%s/other.db", root);
  tuning_db *other = NULL;
  if (tuning_db_open(other_path, &other) != FJ_OK) {
    fprintf(stderr, "cannot make the import: %s\n", fj_last_error());
    exit(1);
  }
  tuning_trial a = make_trial(KEY_NEW, "block_m=16 block_n=4", TRIAL_OK, 0.9);
  tuning_trial b = make_trial(KEY_NEW, "block_m=32 block_n=4", TRIAL_TIMEOUT, 0);
  char *text = NULL;
  size_t size = 0;
  FILE *memory = open_memstream(&text, &size);
  if (tuning_db_record_trial(other, &test_device, &a, NULL) != FJ_OK ||
      tuning_db_record_trial(other, &test_device, &b, NULL) != FJ_OK || memory == NULL ||
      tuning_db_export(other, memory, 1) != FJ_OK) {
    fprintf(stderr, "cannot export the import: %s\n", fj_last_error());
    exit(1);
  }
  fclose(memory);
  tuning_db_close(other);
  if (size >= sizeof import_json) {
    fprintf(stderr, "the export is %zu bytes, over %zu\n", size, sizeof import_json);
    exit(1);
  }
  memcpy(import_json, text, size + 1);
  free(text);
}

/* Opening under a fault: a v1 file being migrated to v2 (its rows must survive a failed migration and
 * migrate on the next open), or a database being created (the next open must give a working one). */
static void run_open_mode(const char *what, const char *v1_sql, int persistent) {
  long round;
  int failures = 0;
  const long limit = 2000;
  for (round = 1; round <= limit; round++) {
    remove_database();
    sqlite3 *h = NULL;
    if (v1_sql != NULL && (sqlite3_open(db_path, &h) != SQLITE_OK || sqlite3_exec(h, v1_sql, NULL, NULL, NULL) != SQLITE_OK)) {
      fprintf(stderr, "cannot build the v1 file: %s\n", sqlite3_errmsg(h));
      exit(1);
    }
    sqlite3_close(h);
    fault_arm(round, persistent);
    tuning_db *db = NULL;
    (void)tuning_db_open(db_path, &db);
    tuning_db_close(db);
    int tripped = fault.tripped;
    fault_disarm();
    char detail[512] = "";
    fj_status s = tuning_db_open(db_path, &db);
    if (s != FJ_OK) snprintf(detail, sizeof detail, "reopening: %s", fj_last_error());
    else if (tuning_db_schema_version(db) != TUNING_DB_SCHEMA_VERSION) snprintf(detail, sizeof detail, "schema %d", tuning_db_schema_version(db));
    tuning_db_close(db);
    char trials[32], winners[32], integrity[256];
    tuning_sql_text(db_path, "SELECT count(*) FROM trials", trials, sizeof trials);
    tuning_sql_text(db_path, "SELECT count(*) FROM winners", winners, sizeof winners);
    tuning_sql_text(db_path, "PRAGMA integrity_check", integrity, sizeof integrity);
    if (!detail[0] && v1_sql != NULL && (strcmp(trials, "3") != 0 || strcmp(winners, "1") != 0))
      snprintf(detail, sizeof detail, "%s trials and %s winners after the migration, not 3 and 1", trials, winners);
    if (!detail[0] && strcmp(integrity, "ok") != 0) snprintf(detail, sizeof detail, "integrity_check: %s", integrity);
    if (!detail[0] && moved_aside(0)) snprintf(detail, sizeof detail, "the file was moved aside as corrupt");
    if (detail[0]) {
      char name[200];
      snprintf(name, sizeof name, "%s, %s fault at I/O call %ld", what, persistent ? "persistent" : "transient", round);
      check_detail(0, name, detail);
      failures++;
      moved_aside(1);
    }
    if (!tripped) break;
  }
  check(round <= limit && failures == 0, "%s under %s faults: after each of the %ld, the next open gives a working v%d "
        "database%s (%d failed)", what, persistent ? "persistent" : "transient", round - 1, TUNING_DB_SCHEMA_VERSION,
        v1_sql ? " with every v1 row" : "", failures);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/fj-dbfault-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(db_path, sizeof db_path, "%s/tuning.db", root);
  make_import_json();
  check(fault_install() == 0, "the fault VFS is the default VFS");

  /* The shim itself: a fault it is armed for reaches the library as FJ_IO and a message. */
  make_earlier_results();
  fault_arm(1, 1);
  tuning_db *db = NULL;
  fj_status s = tuning_db_open(db_path, &db);
  tuning_trial t = make_trial(KEY_NEW, "block_m=16 block_n=8", TRIAL_OK, 1.0);
  if (s == FJ_OK) s = tuning_db_record_trial(db, &test_device, &t, NULL);
  int tripped = fault.tripped;
  fault_disarm();
  tuning_db_close(db);
  check(tripped && s == FJ_IO && fj_last_error()[0] != '\0',
        "a full disk from the first write: recording fails with FJ_IO and says why (%s)", fj_last_error());

  core_log_set_sink(count_log, NULL);
  run_mode("transient", 0);
  run_mode("persistent", 1);
  char fixture[512];
  snprintf(fixture, sizeof fixture, "%s/tests/fixtures/tuning_db_v1.sql", FJ_TEST_SOURCE_DIR);
  char *v1_sql = read_text(fixture);
  check(v1_sql != NULL, "the v1 fixture %s is readable", fixture);
  for (int persistent = 0; persistent <= 1; persistent++) {
    run_open_mode("creating a database", NULL, persistent);
    if (v1_sql) run_open_mode("migrating a v1 database", v1_sql, persistent);
  }
  free(v1_sql);
  core_log_set_sink(NULL, NULL);
  printf("(the library logged %d messages about the faults)\n", logged);

  remove_tree(root);
  return check_summary();
}
