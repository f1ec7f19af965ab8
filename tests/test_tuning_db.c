/* test_tuning_db.c: checks cache/tuning_db against its contract: the schema it creates, recording with
 * duplicates ignored, winners (ok trials only), exact and nearest-bucket lookups, results of other
 * versions, the v1 -> v2 migration from tests/fixtures, refusal of a newer schema without touching the
 * file, corrupt and foreign files moved aside, concurrent tuners and a reader in separate processes,
 * claims across processes, export/import with bad rows and malformed JSON, prune and clear. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cache/json_reader.h"
#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "core/error.h"
#include "core/log.h"
#include "check.h"
#include "test_files.h"
#include "tuning_dump.h"

/* Warnings captured from the log, to check that moving a file aside says so. */
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
static void capture_start(void) {
  captured[0] = '\0';
  captured_warnings = 0;
  core_log_set_sink(capture_sink, NULL);
}
static void capture_stop(void) { core_log_set_sink(NULL, NULL); }

static char root[64];

static void path_in_root(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", root, name); }

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *data = malloc((size_t)n + 1);
  size_t got = fread(data, 1, (size_t)n, f);
  fclose(f);
  data[got] = '\0';
  if (size)
    *size = got;
  return data;
}

/* The first column of the first row of sql on a separate connection; -1 on any failure. */
static long long sql_int(const char *path, const char *sql) {
  sqlite3 *h = NULL;
  long long value = -1;
  if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
    sqlite3_busy_timeout(h, 10000);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
      value = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
  }
  sqlite3_close(h);
  return value;
}

static int sql_exec(const char *path, const char *sql) {
  sqlite3 *h = NULL;
  int rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
  sqlite3_close(h);
  return rc;
}

/* ---- fixtures --------------------------------------------------------------------------------- */

#define KEY_BF16_11 "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=0 lse=0 dcontig=1 sq<=2^11"
#define KEY_BF16_12 "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=0 lse=0 dcontig=1 sq<=2^12"
#define KEY_FP16_11 "attention_fwd dtype=fp16 d=128 h=8 hk=8 causal=0 lse=0 dcontig=1 sq<=2^11"
#define FAMILY "attention_fwd_cpu"
#define TIMING "cpu-wall"
#define FINGERPRINT "cpu:x86_64:test:16:v1"

static const tuning_device test_device = {
    .fingerprint = FINGERPRINT, .backend = "cpu", .name = "Test CPU", .arch = "x86-64-v3",
    .driver_version = "none", .compute_units = 16, .memory_bytes = 64ULL << 30};

/* The versions the database calls current: what this build of the library reports. */
static const char *library_now(void) { return tuning_db_library_version(); }
static const char *llvm_now(void) { return tuning_db_llvm_version(); }

static tuning_trial make_trial(const char *key, const char *config, trial_outcome outcome, double median) {
  tuning_trial t = {
      .problem_key = key, .family = FAMILY, .config = config, .timing_method = TIMING,
      .batch = 1, .seqlen_q = 2048, .seqlen_kv = 2048, .outcome = outcome,
      .median_ms = median, .min_ms = median * 0.9, .max_ms = median * 1.2, .repeats = 10,
      .rel_err = 1e-3, .message = "", .library_version = library_now(), .llvm_version = llvm_now(),
      .generator_version = 1};
  return t;
}

static int record(tuning_db *db, tuning_trial t) {
  int inserted = -1;
  fj_status s = tuning_db_record_trial(db, &test_device, &t, &inserted);
  return s == FJ_OK ? inserted : -1;
}

/* ---- schema, record, winners, lookup ---------------------------------------------------------- */

static void check_schema(void) {
  char path[256];
  path_in_root(path, sizeof path, "schema.db");
  tuning_db *db = NULL;
  fj_status s = tuning_db_open(path, &db);
  check_detail(s == FJ_OK && db, "open creates a new database", fj_last_error());
  check_detail(tuning_db_schema_version(db) == TUNING_DB_SCHEMA_VERSION, "schema version is 2", NULL);
  check_detail(sql_int(path, "PRAGMA user_version") == 2, "user_version is 2 in the file", NULL);
  long long tables = sql_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                                   "('flashjit_meta','devices','problems','trials','winners','claims')");
  check_detail(tables == 6, "tables flashjit_meta, devices, problems, trials, winners, claims exist", NULL);
  char mode[32];
  tuning_sql_text(path, "PRAGMA journal_mode", mode, sizeof mode);
  check_detail(strcmp(mode, "wal") == 0, "journal mode is WAL", mode);
  char format[64];
  tuning_sql_text(path, "SELECT value FROM flashjit_meta WHERE key = 'format'", format, sizeof format);
  check_detail(strcmp(format, "flashjit-tuning") == 0, "flashjit_meta holds the marker", format);
  tuning_db_close(db);
  tuning_db *again = NULL;
  check_detail(tuning_db_open(path, &again) == FJ_OK, "reopening an existing database", fj_last_error());
  tuning_db_close(again);
  tuning_db_close(NULL);
  check_detail(tuning_db_open(NULL, &again) == FJ_INVALID_ARGUMENT && again == NULL, "NULL path is refused", NULL);
  char missing[300];
  path_in_root(missing, sizeof missing, "no/such/folder/x.db");
  check_detail(tuning_db_open(missing, &again) == FJ_IO && strstr(fj_last_error(), missing), "missing folder: FJ_IO naming the path",
        fj_last_error());
}

static void check_record(tuning_db *db, const char *path) {
  tuning_trial t = make_trial(KEY_BF16_11, "block_m=32 block_n=64", TRIAL_OK, 2.0);
  check_detail(record(db, t) == 1, "record a trial", fj_last_error());
  check_detail(tuning_db_has_trial(db, FINGERPRINT, &t) == 1, "has_trial finds it", fj_last_error());
  check_detail(record(db, t) == 0, "recording it again succeeds with inserted=0", fj_last_error());
  check_detail(sql_int(path, "SELECT count(*) FROM trials") == 1, "the duplicate was not added", NULL);
  tuning_trial other = t;
  other.generator_version = 2;
  check_detail(tuning_db_has_trial(db, FINGERPRINT, &other) == 0, "another generator version is another trial", NULL);
  other = t;
  other.seqlen_q = 1000;
  check_detail(tuning_db_has_trial(db, FINGERPRINT, &other) == 0, "other sizes are another trial", NULL);
  check_detail(tuning_db_has_trial(db, "cpu:other", &t) == 0, "another device has no such trial", NULL);
  check_detail(sql_int(path, "SELECT seqlen_bucket FROM problems") == 11 &&
            sql_int(path, "SELECT head_dim FROM problems") == 128 && sql_int(path, "SELECT kv_heads FROM problems") == 8,
        "the key is parsed into columns (bucket 11, d 128, hk 8)", NULL);
  char base[512];
  tuning_sql_text(path, "SELECT base_key || '|' || dtype FROM problems", base, sizeof base);
  check_detail(strcmp(base, "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=0 lse=0 dcontig=1|bf16") == 0,
        "base_key is the key without its bucket", base);

  tuning_trial bad = t;
  bad.config = NULL;
  int inserted = 7;
  fj_status s = tuning_db_record_trial(db, &test_device, &bad, &inserted);
  check_detail(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "config") && inserted == 0,
        "a trial without config is refused, naming the field", fj_last_error());
  bad = t;
  bad.median_ms = NAN;
  check_detail(tuning_db_record_trial(db, &test_device, &bad, NULL) == FJ_INVALID_ARGUMENT, "a NaN time is refused",
        fj_last_error());
  bad = t;
  bad.outcome = TRIAL_OUTCOME_COUNT;
  check_detail(tuning_db_record_trial(db, &test_device, &bad, NULL) == FJ_INVALID_ARGUMENT, "an unknown outcome is refused",
        fj_last_error());
  check_detail(tuning_db_record_trial(NULL, &test_device, &t, NULL) == FJ_INVALID_ARGUMENT, "a NULL db is refused", NULL);
  trial_outcome o;
  check_detail(tuning_outcome_parse("wrong_result", &o) && o == TRIAL_WRONG_RESULT &&
            strcmp(tuning_outcome_name(TRIAL_COMPILE_ERROR), "compile_error") == 0 && !tuning_outcome_parse("fast", &o),
        "outcome names round-trip", NULL);
}

static void check_winner(tuning_db *db) {
  record(db, make_trial(KEY_BF16_11, "block_m=64 block_n=64", TRIAL_OK, 1.5));
  tuning_trial wrong = make_trial(KEY_BF16_11, "block_m=128 block_n=64", TRIAL_WRONG_RESULT, 0.5);
  wrong.rel_err = INFINITY; /* a NaN output, as core_relative_error_o reports it */
  record(db, wrong);
  record(db, make_trial(KEY_BF16_11, "block_m=16 block_n=16", TRIAL_TIMEOUT, 0));
  fj_status s = tuning_db_update_winner(db, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, library_now(), llvm_now(), 1);
  check_detail(s == FJ_OK, "update_winner", fj_last_error());
  tuning_winner w;
  int found = tuning_db_lookup_winner(db, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, &w);
  check_detail(found == 1 && strcmp(w.config, "block_m=64 block_n=64") == 0 && fabs(w.median_ms - 1.5) < 1e-12,
        "winner is the ok trial with the lowest median; the faster wrong_result never wins", w.config);
  check_detail(found && w.exact == 1 && w.current_versions == 1 && strcmp(w.problem_key, KEY_BF16_11) == 0 &&
            w.seqlen_bucket == 11 && w.generator_version == 1,
        "exact lookup: exact=1, current_versions=1", w.problem_key);
  check_detail(tuning_db_update_winner(db, FINGERPRINT, "attention_fwd never tuned sq<=2^3", FAMILY, TIMING, library_now(),
                                llvm_now(), 1) == FJ_OK,
        "update_winner of an unknown problem is fine", fj_last_error());
}

/* The tuner's confirmation round: confirmed configs rank first, by their confirmed medians; a failed or
 * other-sized confirmation does not count. */
static void check_confirmed_winner(tuning_db *db) {
  const char *key = "attention_fwd dtype=fp32 d=64 h=4 hk=4 causal=1 lse=0 dcontig=1 sq<=2^11";
  const char *confirm = TIMING TUNING_CONFIRM_SUFFIX;
  tuning_winner w;
  record(db, make_trial(key, "block_m=16", TRIAL_OK, 1.00));  /* drew a fast moment in the search */
  record(db, make_trial(key, "block_m=32", TRIAL_OK, 1.05));
  record(db, make_trial(key, "block_m=64", TRIAL_OK, 1.10));
  record(db, make_trial(key, "block_m=128", TRIAL_OK, 1.20));
  tuning_db_update_winner(db, FINGERPRINT, key, FAMILY, TIMING, library_now(), llvm_now(), 1);
  int found = tuning_db_lookup_winner(db, FINGERPRINT, key, FAMILY, TIMING, &w);
  check_detail(found == 1 && strcmp(w.config, "block_m=16") == 0, "unconfirmed: the lowest median wins", w.config);

  tuning_trial c16 = make_trial(key, "block_m=16", TRIAL_OK, 1.30), c32 = make_trial(key, "block_m=32", TRIAL_OK, 1.08);
  tuning_trial c64 = make_trial(key, "block_m=64", TRIAL_WRONG_RESULT, 0.0), c128 = make_trial(key, "block_m=128", TRIAL_OK, 0.5);
  c16.timing_method = c32.timing_method = c64.timing_method = c128.timing_method = confirm;
  c128.seqlen_q = c128.seqlen_kv = 1024;  /* another size: not a confirmation of the 2048 trial */
  check(record(db, c16) == 1 && record(db, c32) == 1 && record(db, c64) == 1 && record(db, c128) == 1,
        "confirmations recorded as trials of their own method");
  tuning_db_update_winner(db, FINGERPRINT, key, FAMILY, TIMING, library_now(), llvm_now(), 1);
  found = tuning_db_lookup_winner(db, FINGERPRINT, key, FAMILY, TIMING, &w);
  check_detail(found == 1 && strcmp(w.config, "block_m=32") == 0 && fabs(w.median_ms - 1.05) < 1e-12,
               "confirmed: the lowest confirmed median wins (its own trial), not the search's lucky one", w.config);
  found = tuning_db_lookup_winner(db, FINGERPRINT, key, FAMILY, confirm, &w);
  check(found == 0, "a confirmation is never a winner of its own method");
  double median = 0.0;
  check(tuning_db_trial_median(db, FINGERPRINT, &c32, &median) == 1 && fabs(median - 1.08) < 1e-12 &&
            tuning_db_trial_median(db, FINGERPRINT, &c64, &median) == 0,
        "trial_median reads an ok confirmation's median, and none of a failed one");
  char *listing = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&listing, &size);
  fj_status s = tuning_db_list(db, f);
  fclose(f);
  check_detail(s == FJ_OK && listing && strstr(listing, "block_m=32  1.0500 ms, confirmed 1.0800 ms"),
               "list gives the winner's confirmed time beside its own", listing);
  free(listing);
}

static void check_lookup(tuning_db *db) {
  tuning_winner w;
  int found = tuning_db_lookup_winner(db, FINGERPRINT, KEY_BF16_12, FAMILY, TIMING, &w);
  check_detail(found == 1 && w.exact == 0 && strcmp(w.problem_key, KEY_BF16_11) == 0 &&
            strcmp(w.config, "block_m=64 block_n=64") == 0,
        "bucket 12 asked, bucket 11 tuned: found with exact=0", w.problem_key);
  check_detail(tuning_db_lookup_winner(db, FINGERPRINT, KEY_FP16_11, FAMILY, TIMING, &w) == 0,
        "another dtype: not found", NULL);
  check_detail(tuning_db_lookup_winner(db, "cpu:other", KEY_BF16_11, FAMILY, TIMING, &w) == 0, "another device: not found",
        NULL);
  check_detail(tuning_db_lookup_winner(db, FINGERPRINT, KEY_BF16_11, "other_family", TIMING, &w) == 0,
        "another family: not found", NULL);
  check_detail(tuning_db_lookup_winner(db, FINGERPRINT, "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=1 lse=0 dcontig=1 "
                                "sq<=2^11", FAMILY, TIMING, &w) == 0,
        "causal differs: not found", NULL);

  /* Equally near buckets: the longer one. */
  const char *k9 = "attention_fwd dtype=fp32 d=64 h=4 hk=4 causal=0 lse=0 dcontig=1 sq<=2^9";
  const char *k13 = "attention_fwd dtype=fp32 d=64 h=4 hk=4 causal=0 lse=0 dcontig=1 sq<=2^13";
  const char *k11 = "attention_fwd dtype=fp32 d=64 h=4 hk=4 causal=0 lse=0 dcontig=1 sq<=2^11";
  record(db, make_trial(k9, "short", TRIAL_OK, 1));
  record(db, make_trial(k13, "long", TRIAL_OK, 1));
  tuning_db_update_winner(db, FINGERPRINT, k9, FAMILY, TIMING, library_now(), llvm_now(), 1);
  tuning_db_update_winner(db, FINGERPRINT, k13, FAMILY, TIMING, library_now(), llvm_now(), 1);
  found = tuning_db_lookup_winner(db, FINGERPRINT, k11, FAMILY, TIMING, &w);
  check_detail(found && strcmp(w.config, "long") == 0 && w.seqlen_bucket == 13, "a tie between buckets goes to the longer",
        w.config);
  found = tuning_db_lookup_winner(db, FINGERPRINT, "attention_fwd dtype=fp32 d=64 h=4 hk=4 causal=0 lse=0 dcontig=1 "
                                  "sq<=2^2", FAMILY, TIMING, &w);
  check_detail(found && strcmp(w.config, "short") == 0, "bucket 2 asked: the nearest is 9", w.config);
}

static void check_versions(tuning_db *db) {
  const char *key = "attention_fwd dtype=fp16 d=96 h=8 hk=2 causal=1 lse=0 dcontig=1 sq<=2^10";
  tuning_trial old = make_trial(key, "block_m=32 old", TRIAL_OK, 1.0);
  old.llvm_version = "21.1.0";
  record(db, old);
  tuning_db_update_winner(db, FINGERPRINT, key, FAMILY, TIMING, library_now(), "21.1.0", 1);
  tuning_winner w;
  int found = tuning_db_lookup_winner(db, FINGERPRINT, key, FAMILY, TIMING, &w);
  check_detail(found && w.current_versions == 0 && strcmp(w.llvm_version, "21.1.0") == 0 &&
            strcmp(w.config, "block_m=32 old") == 0,
        "a winner recorded under another LLVM is returned with current_versions=0", w.llvm_version);
  found = tuning_db_lookup_winner_at(db, FINGERPRINT, key, FAMILY, TIMING, library_now(), "21.1.0", 1, &w);
  check_detail(found && w.current_versions == 1, "lookup_winner_at with its versions: current_versions=1", NULL);
  found = tuning_db_lookup_winner_at(db, FINGERPRINT, key, FAMILY, TIMING, library_now(), "21.1.0", 2, &w);
  check_detail(found && w.current_versions == 0, "another generator version: current_versions=0", NULL);

  /* Only current-version trials compete: a slower current one replaces the faster old one. */
  record(db, make_trial(key, "block_m=64 new", TRIAL_OK, 1.4));
  tuning_db_update_winner(db, FINGERPRINT, key, FAMILY, TIMING, library_now(), llvm_now(), 1);
  found = tuning_db_lookup_winner(db, FINGERPRINT, key, FAMILY, TIMING, &w);
  check_detail(found && w.current_versions == 1 && strcmp(w.config, "block_m=64 new") == 0,
        "re-tuned under the current versions: the current winner replaces the old one", w.config);
  /* No current trial at all: the old winner stays as a hint. */
  const char *key2 = "attention_fwd dtype=fp16 d=96 h=8 hk=2 causal=1 lse=0 dcontig=1 sq<=2^14";
  old.problem_key = key2;
  record(db, old);
  tuning_db_update_winner(db, FINGERPRINT, key2, FAMILY, TIMING, library_now(), "21.1.0", 1);
  tuning_db_update_winner(db, FINGERPRINT, key2, FAMILY, TIMING, library_now(), llvm_now(), 1);
  found = tuning_db_lookup_winner(db, FINGERPRINT, key2, FAMILY, TIMING, &w);
  check_detail(found && w.current_versions == 0, "no current trial: the old winner is kept", NULL);
}

/* ---- files: migration, newer schema, corruption ----------------------------------------------- */

static void check_migration(void) {
  char fixture_path[512], path[256];
  snprintf(fixture_path, sizeof fixture_path, "%s/tests/fixtures/tuning_db_v1.sql", FJ_TEST_SOURCE_DIR);
  path_in_root(path, sizeof path, "v1.db");
  char *sql = read_file(fixture_path, NULL);
  check_detail(sql != NULL, "the v1 fixture is readable", fixture_path);
  if (!sql)
    return;
  int rc = sql_exec(path, sql);
  free(sql);
  check_detail(rc == SQLITE_OK && sql_int(path, "PRAGMA user_version") == 1, "a v1 file is built from the fixture", NULL);
  tuning_db *db = NULL;
  fj_status s = tuning_db_open(path, &db);
  check_detail(s == FJ_OK && tuning_db_schema_version(db) == 2, "open migrates v1 to v2", fj_last_error());
  if (!db)
    return;
  check_detail(sql_int(path, "PRAGMA user_version") == 2, "user_version is now 2", NULL);
  check_detail(sql_int(path, "SELECT count(*) FROM trials") == 3 && sql_int(path, "SELECT count(*) FROM devices") == 1 &&
            sql_int(path, "SELECT count(*) FROM problems") == 2 && sql_int(path, "SELECT count(*) FROM winners") == 1,
        "every row kept (3 trials, 1 device, 2 problems, 1 winner)", NULL);
  check_detail(sql_int(path, "SELECT count(*) FROM trials WHERE generator_version = 0") == 3,
        "v1 trials get generator version 0", NULL);
  check_detail(sql_int(path, "SELECT seqlen_bucket FROM problems WHERE id = 2") == 9 &&
            sql_int(path, "SELECT kv_heads FROM problems WHERE id = 2") == 4,
        "v1 keys parsed into the new columns", NULL);
  check_detail(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'claims'") == 1, "the claims table was added",
        NULL);
  check_detail(sql_int(path, "SELECT count(*) FROM flashjit_meta WHERE key = 'migrated_1_to_2'") == 1,
        "the migration is noted in flashjit_meta", NULL);
  char check_result[64];
  tuning_sql_text(path, "PRAGMA integrity_check", check_result, sizeof check_result);
  check_detail(strcmp(check_result, "ok") == 0 && sql_int(path, "SELECT count(*) FROM pragma_foreign_key_check") == 0,
        "migrated file passes integrity and foreign key checks", check_result);
  tuning_winner w;
  const char *fp = "cpu:x86_64:znver3:16:v1";
  int found = tuning_db_lookup_winner(db, fp, KEY_BF16_11, FAMILY, TIMING, &w);
  check_detail(found && strcmp(w.config, "block_m=64 block_n=64 unroll=4 vector=16") == 0 && w.current_versions == 0 &&
            w.generator_version == 0,
        "the v1 winner is found, marked as other versions", w.config);
  tuning_trial t = make_trial(KEY_BF16_11, "block_m=64 block_n=64 unroll=4 vector=16", TRIAL_OK, 3.5);
  t.library_version = "0.0.9";
  t.llvm_version = "21.1.0";
  t.generator_version = 0;
  check_detail(tuning_db_has_trial(db, fp, &t) == 1, "a v1 trial is found by has_trial (generator 0)", NULL);
  tuning_device d = test_device;
  d.fingerprint = fp;
  t.generator_version = 1;
  int inserted = 0;
  check_detail(tuning_db_record_trial(db, &d, &t, &inserted) == FJ_OK && inserted == 1, "recording into a migrated file",
        fj_last_error());
  tuning_db_close(db);
  db = NULL;
  check_detail(tuning_db_open(path, &db) == FJ_OK && tuning_db_schema_version(db) == 2, "reopening the migrated file",
        fj_last_error());
  tuning_db_close(db);
}

static void check_newer_schema(void) {
  char path[256];
  path_in_root(path, sizeof path, "newer.db");
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  record(db, make_trial(KEY_BF16_11, "block_m=32", TRIAL_OK, 1));
  tuning_db_close(db);
  check_detail(sql_exec(path, "PRAGMA user_version = 99") == SQLITE_OK, "set user_version 99", NULL);
  size_t size_before = 0, size_after = 0;
  char *before = read_file(path, &size_before);
  db = (tuning_db *)1;
  fj_status s = tuning_db_open(path, &db);
  char expected[128];
  snprintf(expected, sizeof expected, "schema version 99; this flashjit (%s) reads up to 2", fj_version_string());
  check_detail(s == FJ_UNSUPPORTED && db == NULL, "a newer schema is refused with FJ_UNSUPPORTED", fj_last_error());
  check_detail(strstr(fj_last_error(), path) && strstr(fj_last_error(), expected) &&
            strstr(fj_last_error(), "FLASHJIT_CACHE_DIR"),
        "the message names the path, the version and what to do", fj_last_error());
  char *after = read_file(path, &size_after);
  check_detail(before && after && size_before == size_after && memcmp(before, after, size_before) == 0,
        "the newer file's bytes are unchanged", NULL);
  free(before);
  free(after);
  check_detail(sql_int(path, "SELECT count(*) FROM trials") == 1, "its rows are still there", NULL);
}

/* The name of a "<base>.corrupt-*" file in root (without -wal/-shm), or "" when none. */
static void find_moved(const char *base, char *out, size_t size) {
  out[0] = '\0';
  DIR *d = opendir(root);
  struct dirent *e;
  char prefix[128];
  snprintf(prefix, sizeof prefix, "%s.corrupt-", base);
  while (d && (e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && !strstr(e->d_name, "-wal") && !strstr(e->d_name, "-shm"))
      snprintf(out, size, "%s/%s", root, e->d_name);
  }
  if (d)
    closedir(d);
}

static void check_moved_aside(const char *base, const char *what) {
  char path[256], name[160];
  path_in_root(path, sizeof path, base);
  capture_start();
  tuning_db *db = NULL;
  fj_status s = tuning_db_open(path, &db);
  capture_stop();
  snprintf(name, sizeof name, "%s: open succeeds with a fresh database", what);
  check_detail(s == FJ_OK && db && tuning_db_schema_version(db) == 2, name, fj_last_error());
  char moved[512];
  find_moved(base, moved, sizeof moved);
  snprintf(name, sizeof name, "%s: moved aside to <path>.corrupt-<time>", what);
  check_detail(moved[0] && file_exists(moved), name, moved);
  snprintf(name, sizeof name, "%s: one warning naming both paths", what);
  check_detail(captured_warnings == 1 && strstr(captured, path) && moved[0] && strstr(captured, moved), name, captured);
  snprintf(name, sizeof name, "%s: the fresh database works", what);
  check_detail(db && record(db, make_trial(KEY_BF16_11, "x", TRIAL_OK, 1)) == 1 &&
            sql_int(path, "SELECT count(*) FROM trials") == 1,
        name, fj_last_error());
  tuning_db_close(db);
}

static void check_corruption(void) {
  char path[256];
  path_in_root(path, sizeof path, "garbage.db");
  unsigned char junk[8192];
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (size_t i = 0; i < sizeof junk; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    junk[i] = (unsigned char)x;
  }
  FILE *f = fopen(path, "wb");
  fwrite(junk, 1, sizeof junk, f);
  fclose(f);
  check_moved_aside("garbage.db", "random bytes");
  char moved[512];
  find_moved("garbage.db", moved, sizeof moved);
  size_t size = 0;
  char *kept = read_file(moved, &size);
  check_detail(kept && size == sizeof junk && memcmp(kept, junk, size) == 0, "random bytes: the moved file is intact", NULL);
  free(kept);

  path_in_root(path, sizeof path, "foreign.db");
  sql_exec(path, "PRAGMA journal_mode = WAL; CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);"
                 "INSERT INTO users(name) VALUES('alice'), ('bob');");
  check_moved_aside("foreign.db", "another application's database");
  find_moved("foreign.db", moved, sizeof moved);
  check_detail(sql_int(moved, "SELECT count(*) FROM users") == 2, "foreign database: its data is kept in the moved file", NULL);

  /* A flashjit file whose pages were overwritten: damage found by quick_check or by reading. */
  path_in_root(path, sizeof path, "damaged.db");
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  for (int i = 0; i < 40; i++) {
    char config[32];
    snprintf(config, sizeof config, "c%d with some padding text", i);
    record(db, make_trial(KEY_BF16_11, config, TRIAL_OK, 1 + i));
  }
  tuning_db_close(db);
  f = fopen(path, "r+b");
  struct stat st;
  stat(path, &st);
  for (long offset = 4096; offset < st.st_size; offset += 4096) {
    fseek(f, offset + 16, SEEK_SET);
    fwrite(junk, 1, 2000, f);
  }
  fclose(f);
  check_moved_aside("damaged.db", "damaged flashjit file");
}

/* ---- processes -------------------------------------------------------------------------------- */

/* Each writer records its 300 own trials and the 100 shared ones, claiming the shared ones first:
 * together they must measure each shared trial exactly once. Writes {measured shared, errors}. */
static void writer_child(const char *path, int which, int go_fd, int result_fd) {
  char byte;
  (void)!read(go_fd, &byte, 1); /* returns at EOF, when the parent lets both go at once */
  tuning_db *db = NULL;
  int result[2] = {0, 0};
  if (tuning_db_open(path, &db) != FJ_OK) {
    fprintf(stderr, "writer %d: %s\n", which, fj_last_error());
    result[1] = 1000;
  }
  for (int i = 0; i < 400 && db; i++) {
    char config[64];
    int shared = i % 4 == 3;
    if (shared)
      snprintf(config, sizeof config, "shared=%d", i / 4);
    else
      snprintf(config, sizeof config, "own=%d writer=%d", i - i / 4, which);
    tuning_trial t = make_trial(KEY_BF16_11, config, TRIAL_OK, 1.0 + i);
    if (!shared) {
      if (record(db, t) != 1) {
        fprintf(stderr, "writer %d: record %s: %s\n", which, config, fj_last_error());
        result[1]++;
      }
      continue;
    }
    if (tuning_db_has_trial(db, FINGERPRINT, &t))
      continue;
    int claimed = tuning_db_claim(db, FINGERPRINT, &t, 3600);
    if (claimed < 0) {
      fprintf(stderr, "writer %d: claim: %s\n", which, fj_last_error());
      result[1]++;
    }
    if (claimed != 1)
      continue;
    result[0]++;
    if (record(db, t) != 1) {
      fprintf(stderr, "writer %d: record shared %s: %s\n", which, config, fj_last_error());
      result[1]++;
    }
    tuning_db_release(db, FINGERPRINT, &t);
  }
  tuning_db_close(db);
  (void)!write(result_fd, result, sizeof result);
  _exit(0);
}

static void check_concurrent_writers(void) {
  char path[256];
  path_in_root(path, sizeof path, "concurrent.db"); /* not created yet: both children create it at once */
  int go[2], results[2];
  if (pipe(go) != 0 || pipe(results) != 0) {
    check_detail(0, "pipes for the concurrent test", strerror(errno));
    return;
  }
  pid_t pids[2];
  for (int w = 0; w < 2; w++) {
    pids[w] = fork();
    if (pids[w] == 0) {
      close(go[1]);
      close(results[0]);
      writer_child(path, w, go[0], results[1]);
    }
  }
  close(go[0]);
  close(results[1]);
  close(go[1]); /* both start now */
  int measured = 0, errors = 0, clean = 1;
  for (int w = 0; w < 2; w++) {
    int result[2] = {0, 1};
    if (read(results[0], result, sizeof result) != (ssize_t)sizeof result)
      errors++;
    measured += result[0];
    errors += result[1];
    int status = 0;
    waitpid(pids[w], &status, 0);
    clean &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  close(results[0]);
  char detail[64];
  snprintf(detail, sizeof detail, "%d errors", errors);
  check_detail(clean && errors == 0, "two writer processes ran without errors (busy waits handled)", detail);
  check_detail(sql_int(path, "SELECT count(*) FROM trials") == 700, "700 trials: 2 x 300 own + 100 shared", NULL);
  check_detail(sql_int(path, "SELECT count(*) FROM trials WHERE config LIKE 'own=%'") == 600 &&
            sql_int(path, "SELECT count(*) FROM (SELECT config FROM trials GROUP BY config HAVING count(*) > 1)") == 0,
        "each own trial present exactly once", NULL);
  check_detail(sql_int(path, "SELECT count(*) FROM trials WHERE config LIKE 'shared=%'") == 100,
        "shared trials not duplicated", NULL);
  snprintf(detail, sizeof detail, "measured %d", measured);
  check_detail(measured == 100, "claims: each shared trial measured by exactly one writer", detail);
  check_detail(sql_int(path, "SELECT count(*) FROM claims") == 0, "no claims left behind", NULL);
  char integrity[64];
  tuning_sql_text(path, "PRAGMA integrity_check", integrity, sizeof integrity);
  check_detail(strcmp(integrity, "ok") == 0, "integrity_check ok after concurrent writers", integrity);
}

static void check_reader_during_writes(void) {
  char path[256], done[300];
  path_in_root(path, sizeof path, "reader.db");
  snprintf(done, sizeof done, "%s.writer-done", path);
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  record(db, make_trial(KEY_BF16_11, "first", TRIAL_OK, 100));
  tuning_db_update_winner(db, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, library_now(), llvm_now(), 1);
  tuning_db_close(db);

  pid_t writer = fork();
  if (writer == 0) {
    tuning_db *w = NULL;
    int errors = tuning_db_open(path, &w) != FJ_OK;
    for (int i = 0; i < 300 && w; i++) {
      char config[32];
      snprintf(config, sizeof config, "w%d", i);
      errors += record(w, make_trial(KEY_BF16_11, config, TRIAL_OK, 99 - i * 0.1)) != 1;
      errors += tuning_db_update_winner(w, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, library_now(), llvm_now(), 1) !=
                FJ_OK;
    }
    tuning_db_close(w);
    fclose(fopen(done, "w"));
    _exit(errors > 100 ? 100 : errors);
  }
  pid_t reader = fork();
  if (reader == 0) {
    tuning_db *r = NULL;
    int errors = tuning_db_open(path, &r) != FJ_OK, lookups = 0;
    while (r && (!file_exists(done) || lookups < 50)) {
      tuning_winner win;
      core_error_clear();
      if (tuning_db_lookup_winner(r, FINGERPRINT, KEY_BF16_12, FAMILY, TIMING, &win) != 1 || fj_last_error()[0]) {
        fprintf(stderr, "reader: lookup failed: %s\n", fj_last_error());
        errors++;
      }
      lookups++;
    }
    tuning_db_close(r);
    _exit(errors > 100 ? 100 : errors);
  }
  int writer_status = 0, reader_status = 0;
  waitpid(writer, &writer_status, 0);
  waitpid(reader, &reader_status, 0);
  check_detail(WIFEXITED(writer_status) && WEXITSTATUS(writer_status) == 0, "writer process: no errors", NULL);
  check_detail(WIFEXITED(reader_status) && WEXITSTATUS(reader_status) == 0,
        "reader process looking up while the writer records: no errors", NULL);
  tuning_winner w;
  db = NULL;
  tuning_db_open(path, &db);
  check_detail(tuning_db_lookup_winner(db, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, &w) && strcmp(w.config, "w299") == 0,
        "the final winner is the writer's fastest", w.config);
  tuning_db_close(db);
}

static void check_claims(void) {
  char path[256];
  path_in_root(path, sizeof path, "claims.db");
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  tuning_trial t = make_trial(KEY_BF16_11, "claimed", TRIAL_OK, 1);
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0)
    return;
  pid_t a = fork();
  if (a == 0) {
    tuning_db *mine = NULL;
    char reply = tuning_db_open(path, &mine) == FJ_OK && tuning_db_claim(mine, FINGERPRINT, &t, 3600) == 1 ? 'y' : 'n';
    (void)!write(from_child[1], &reply, 1);
    char byte;
    (void)!read(to_child[0], &byte, 1);
    tuning_db_close(mine);
    _exit(0); /* without releasing: as a tuner killed mid-trial */
  }
  char reply = 'n';
  (void)!read(from_child[0], &reply, 1);
  check_detail(reply == 'y', "process A claims a candidate", NULL);
  check_detail(tuning_db_claim(db, FINGERPRINT, &t, 3600) == 0, "process B cannot claim it while A lives", NULL);
  (void)!write(to_child[1], "x", 1);
  waitpid(a, NULL, 0); /* reaped: a zombie would still answer kill(pid, 0) */
  close(to_child[0]);
  close(to_child[1]);
  close(from_child[0]);
  close(from_child[1]);
  check_detail(tuning_db_claim(db, FINGERPRINT, &t, 3600) == 1, "after A died, B takes the claim over", fj_last_error());
  check_detail(tuning_db_claim(db, FINGERPRINT, &t, 3600) == 1, "claiming again what B holds is fine", NULL);
  tuning_db_release(db, FINGERPRINT, &t);
  check_detail(sql_int(path, "SELECT count(*) FROM claims") == 0, "release removes the claim", NULL);

  /* A claim of a live process on another host can only go stale. */
  sql_exec(path, "INSERT INTO claims VALUES('" FINGERPRINT "', '" KEY_BF16_11 "', 'attention_fwd_cpu', 'claimed',"
                 " 'cpu-wall', 1, 2048, 2048, 'x', 'y', 1, 1, 'elsewhere.example', strftime('%s','now'))");
  tuning_trial remote = t;
  remote.library_version = "x";
  remote.llvm_version = "y";
  check_detail(tuning_db_claim(db, FINGERPRINT, &remote, 3600) == 0, "a fresh claim from another host holds", NULL);
  sql_exec(path, "UPDATE claims SET claimed_at = claimed_at - 7200");
  check_detail(tuning_db_claim(db, FINGERPRINT, &remote, 3600) == 1, "a stale claim is taken over", NULL);
  record(db, t);
  check_detail(tuning_db_claim(db, FINGERPRINT, &t, 3600) == 0, "a trial already recorded cannot be claimed", NULL);
  tuning_db_close(db);
}

/* One handle shared by threads: calls serialize on the handle, nothing is lost. */
typedef struct thread_job {
  tuning_db *db;
  int which, errors;
} thread_job;

static void *thread_writer(void *arg) {
  thread_job *job = arg;
  for (int i = 0; i < 150; i++) {
    char config[48];
    snprintf(config, sizeof config, "thread=%d i=%d", job->which, i);
    tuning_trial t = make_trial(KEY_FP16_11, config, TRIAL_OK, 1 + i);
    job->errors += record(job->db, t) != 1;
    job->errors += tuning_db_has_trial(job->db, FINGERPRINT, &t) != 1;
    tuning_winner w;
    tuning_db_lookup_winner(job->db, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, &w);
  }
  return NULL;
}

static void check_threads(void) {
  char path[256];
  path_in_root(path, sizeof path, "threads.db");
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  pthread_t threads[3];
  thread_job jobs[3];
  for (int i = 0; i < 3; i++) {
    jobs[i] = (thread_job){.db = db, .which = i};
    pthread_create(&threads[i], NULL, thread_writer, &jobs[i]);
  }
  int errors = 0;
  for (int i = 0; i < 3; i++) {
    pthread_join(threads[i], NULL);
    errors += jobs[i].errors;
  }
  check_detail(errors == 0 && sql_int(path, "SELECT count(*) FROM trials") == 450,
        "three threads sharing one handle: 450 trials, no errors", fj_last_error());
  tuning_trial unmeasured = make_trial(KEY_FP16_11, "not measured yet", TRIAL_OK, 0);
  unmeasured.median_ms = NAN; /* a tuner claims before it measures: only the identity matters */
  check_detail(tuning_db_claim(db, FINGERPRINT, &unmeasured, 60) == 1 && tuning_db_has_trial(db, FINGERPRINT, &unmeasured) == 0,
        "claim and has_trial look only at a trial's identity", fj_last_error());
  tuning_db_release(db, FINGERPRINT, &unmeasured);
  tuning_db_close(db);
}

/* ---- export / import -------------------------------------------------------------------------- */

static char *export_text(tuning_db *db, int json) {
  char *text = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&text, &size);
  fj_status s = tuning_db_export(db, f, json);
  fclose(f);
  if (s != FJ_OK) {
    free(text);
    return NULL;
  }
  return text;
}

static void check_export_import(tuning_db *source, const char *source_path) {
  char *json = export_text(source, 1);
  check_detail(json && strstr(json, "\"format\":\"flashjit-tuning\"") && strstr(json, "\"winners\":["),
        "export JSON", fj_last_error());
  if (!json)
    return;
  json_value *tree = NULL;
  check_detail(json_parse(json, strlen(json), &tree) == FJ_OK, "the export is valid JSON for our own reader",
        fj_last_error());
  json_free(tree);
  long long trials = sql_int(source_path, "SELECT count(*) FROM trials");

  char path[256];
  path_in_root(path, sizeof path, "imported.db");
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  int imported = -1, skipped = -1, rejected = -1;
  fj_status s = tuning_db_import(db, json, NULL, &imported, &skipped, &rejected, NULL);
  char detail[160];
  snprintf(detail, sizeof detail, "%s; imported %d skipped %d rejected %d of %lld", fj_last_error(), imported,
           skipped, rejected, trials);
  check_detail(s == FJ_OK && imported == trials && rejected == 0 && skipped == 0, "import into a fresh db: every trial",
        detail);
  check_detail(sql_int(path, "SELECT count(*) FROM trials") == trials, "same trial count after import", NULL);
  check_detail(sql_int(path, "SELECT count(*) FROM trials WHERE rel_err > 1e308") == 1, "an infinite rel_err survives",
        NULL);
  tuning_winner w;
  check_detail(tuning_db_lookup_winner(db, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, &w) &&
            strcmp(w.config, "block_m=64 block_n=64") == 0,
        "winners recomputed on import", w.config);
  s = tuning_db_import(db, json, NULL, &imported, &skipped, &rejected, NULL);
  check_detail(s == FJ_OK && imported == 0 && skipped == trials, "importing again adds nothing", fj_last_error());
  tuning_db_clear(db);
  s = tuning_db_import(db, json, "cpu:someone-else", &imported, &skipped, &rejected, NULL);
  check_detail(s == FJ_OK && imported == 0 && skipped == trials, "only_fingerprint leaves other devices out", NULL);
  tuning_db_close(db);

  /* Truncated: malformed, nothing imported. */
  json[strlen(json) / 2] = '\0';
  path_in_root(path, sizeof path, "malformed.db");
  db = NULL;
  tuning_db_open(path, &db);
  s = tuning_db_import(db, json, NULL, &imported, &skipped, &rejected, NULL);
  check_detail(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "at byte") && imported == 0,
        "truncated JSON: an error naming the byte offset", fj_last_error());
  check_detail(sql_int(path, "SELECT count(*) FROM trials") == 0, "truncated JSON: nothing imported", NULL);
  free(json);

  static const struct {
    const char *text, *expect;
  } malformed[] = {
      {"{\"format\":\"flashjit-tuning\",\"schema\":2,\"trials\":[],}", "a string key expected at byte 51"},
      {"{\"a\":1,\"a\":2}", "duplicate key in an object at byte 7"},
      {"[\"\\ud800\"]", "surrogate at byte 2"},
      {"{\"a\":01}", "at byte 6"},
      {"{\"a\":\"x\ty\"}", "control character in a string at byte 7"},
      {"{\"a\":tru}", "a value expected at byte 5"},
      {"{\"a\":1} x", "trailing characters after the value at byte 8"},
      {"{\"format\":\"other\",\"trials\":[]}", "not a flashjit tuning export"},
      {"{\"format\":\"flashjit-tuning\",\"schema\":3,\"trials\":[]}", "reads up to 2"},
  };
  for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
    s = tuning_db_import(db, malformed[i].text, NULL, NULL, NULL, NULL, NULL);
    char name[160];
    snprintf(name, sizeof name, "malformed input %zu refused: %s", i, malformed[i].expect);
    check_detail(s != FJ_OK && strstr(fj_last_error(), malformed[i].expect), name, fj_last_error());
  }
  char deep[300];
  memset(deep, '[', 100);
  memset(deep + 100, ']', 100);
  deep[200] = '\0';
  check_detail(tuning_db_import(db, deep, NULL, NULL, NULL, NULL, NULL) == FJ_INVALID_ARGUMENT &&
            strstr(fj_last_error(), "deeper than 64 at byte 64"),
        "nesting past the depth limit is refused", fj_last_error());
  tuning_db_close(db);

  char *csv = export_text(source, 0);
  int lines = 0;
  for (const char *p = csv; p && *p; p++)
    lines += *p == '\n';
  check_detail(csv && strncmp(csv, "problem,device,backend,", 23) == 0 && lines == trials + 1,
        "CSV export: a header and one line per trial", csv ? csv : fj_last_error());
  free(csv);
}

static void check_bad_rows(void) {
  static const char text[] =
      "{\"format\":\"flashjit-tuning\",\"schema\":2,\"trials\":[\n"
      "{\"problem\":\"" KEY_BF16_11 "\",\"device\":{\"fingerprint\":\"" FINGERPRINT "\",\"backend\":\"cpu\","
      "\"name\":\"n\",\"arch\":\"a\",\"compute_units\":4,\"memory_bytes\":1024,\"driver_version\":\"none\"},"
      "\"family\":\"attention_fwd_cpu\",\"config\":\"good\",\"timing_method\":\"cpu-wall\","
      "\"sizes\":{\"batch\":1,\"seqlen_q\":2048,\"seqlen_kv\":2048},\"outcome\":\"ok\","
      "\"timings\":{\"median_ms\":1.5,\"min_ms\":1.25,\"max_ms\":2,\"repeats\":9},\"rel_err\":0.001,"
      "\"message\":\"caf\\u00e9 \\ud83d\\ude00\",\"library_version\":\"0.1.0\",\"llvm_version\":\"22.1.8\","
      "\"generator_version\":1},\n"
      "{\"problem\":\"" KEY_BF16_11 "\",\"device\":{\"fingerprint\":\"" FINGERPRINT "\",\"backend\":\"cpu\","
      "\"name\":\"n\",\"arch\":\"a\",\"compute_units\":4,\"memory_bytes\":1024,\"driver_version\":\"none\"},"
      "\"family\":\"attention_fwd_cpu\",\"timing_method\":\"cpu-wall\","
      "\"sizes\":{\"batch\":1,\"seqlen_q\":2048,\"seqlen_kv\":2048},\"outcome\":\"ok\","
      "\"timings\":{\"median_ms\":1.5,\"min_ms\":1.25,\"max_ms\":2,\"repeats\":9},"
      "\"library_version\":\"0.1.0\",\"llvm_version\":\"22.1.8\",\"generator_version\":1},\n"
      "{\"problem\":\"" KEY_BF16_11 "\",\"device\":{\"fingerprint\":\"" FINGERPRINT "\",\"backend\":\"cpu\","
      "\"name\":\"n\",\"arch\":\"a\",\"compute_units\":4,\"memory_bytes\":1024,\"driver_version\":\"none\"},"
      "\"family\":\"attention_fwd_cpu\",\"config\":\"unknown outcome\",\"timing_method\":\"cpu-wall\","
      "\"sizes\":{\"batch\":1,\"seqlen_q\":2048,\"seqlen_kv\":2048},\"outcome\":\"splendid\","
      "\"timings\":{\"median_ms\":1.5,\"min_ms\":1.25,\"max_ms\":2,\"repeats\":9},"
      "\"library_version\":\"0.1.0\",\"llvm_version\":\"22.1.8\",\"generator_version\":1},\n"
      "{\"problem\":\"" KEY_BF16_11 "\",\"device\":{\"fingerprint\":\"" FINGERPRINT "\",\"backend\":\"cpu\","
      "\"name\":\"n\",\"arch\":\"a\",\"compute_units\":4,\"memory_bytes\":1024,\"driver_version\":\"none\"},"
      "\"family\":\"attention_fwd_cpu\",\"config\":\"wrong type\",\"timing_method\":\"cpu-wall\","
      "\"sizes\":{\"batch\":\"1\",\"seqlen_q\":2048,\"seqlen_kv\":2048},\"outcome\":\"ok\","
      "\"timings\":{\"median_ms\":1.5,\"min_ms\":1.25,\"max_ms\":2,\"repeats\":9},"
      "\"library_version\":\"0.1.0\",\"llvm_version\":\"22.1.8\",\"generator_version\":1},\n"
      "42,\n"
      "{\"problem\":\"" KEY_BF16_11 "\",\"device\":{\"fingerprint\":\"" FINGERPRINT "\",\"backend\":\"cpu\","
      "\"name\":\"n\",\"arch\":\"a\",\"compute_units\":4,\"memory_bytes\":1024,\"driver_version\":\"none\"},"
      "\"family\":\"attention_fwd_cpu\",\"config\":\"failed\",\"timing_method\":\"cpu-wall\","
      "\"sizes\":{\"batch\":1,\"seqlen_q\":2048,\"seqlen_kv\":2048},\"outcome\":\"compile_error\","
      "\"timings\":{\"median_ms\":null,\"min_ms\":null,\"max_ms\":null,\"repeats\":0},\"rel_err\":null,"
      "\"message\":\"too big\",\"library_version\":\"0.1.0\",\"llvm_version\":\"22.1.8\",\"generator_version\":1}\n"
      "]}\n";
  char path[256];
  path_in_root(path, sizeof path, "badrows.db");
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  char *report_text = NULL;
  size_t report_size = 0;
  FILE *report = open_memstream(&report_text, &report_size);
  int imported = -1, skipped = -1, rejected = -1;
  fj_status s = tuning_db_import(db, text, NULL, &imported, &skipped, &rejected, report);
  fclose(report);
  char detail[128];
  snprintf(detail, sizeof detail, "%s; imported %d rejected %d", fj_last_error(), imported, rejected);
  check_detail(s == FJ_OK && imported == 2 && rejected == 4, "bad rows rejected, the good ones imported", detail);
  check_detail(report_text && strstr(report_text, "row 1 (" KEY_BF16_11 ") rejected: field 'config' is missing"),
        "missing config: the message names the row, the problem and the field", report_text);
  check_detail(report_text && strstr(report_text, "row 2") && strstr(report_text, "'outcome' has the unknown value 'splendid'"),
        "unknown outcome: the message names the row and the value", report_text);
  check_detail(report_text && strstr(report_text, "row 3") && strstr(report_text, "'sizes.batch' must be a number, not string"),
        "wrong type: the message names the row and the field", report_text);
  check_detail(report_text && strstr(report_text, "row 4 (no problem key) rejected: is a number, not an object"),
        "a row that is not an object", report_text);
  free(report_text);
  char message[64];
  tuning_sql_text(path, "SELECT message FROM trials WHERE config = 'good'", message, sizeof message);
  check_detail(strcmp(message, "caf\xc3\xa9 \xf0\x9f\x98\x80") == 0, "\\u escapes and surrogate pairs decode to UTF-8",
        message);
  tuning_db_close(db);
}

/* ---- prune, clear, listings ------------------------------------------------------------------- */

static void check_prune_and_clear(void) {
  char path[256];
  path_in_root(path, sizeof path, "prune.db");
  tuning_db *db = NULL;
  tuning_db_open(path, &db);
  int64_t long_ago = (int64_t)time(NULL) - 10 * 86400;
  tuning_trial t = make_trial(KEY_BF16_11, "old fast", TRIAL_OK, 1);
  t.created_at = long_ago;
  record(db, t); /* the winner: kept though old */
  t.config = "old slow";
  t.median_ms = t.max_ms = 5;
  record(db, t);
  t.config = "old failed";
  t.outcome = TRIAL_COMPILE_ERROR;
  t.median_ms = t.min_ms = t.max_ms = 0;
  record(db, t);
  record(db, make_trial(KEY_BF16_11, "new slow", TRIAL_OK, 3));
  tuning_trial other = make_trial(KEY_FP16_11, "other llvm", TRIAL_OK, 1);
  other.llvm_version = "21.1.0";
  record(db, other);
  tuning_db_update_winner(db, FINGERPRINT, KEY_BF16_11, FAMILY, TIMING, library_now(), llvm_now(), 1);
  int removed = -1;
  fj_status s = tuning_db_prune(db, 86400, 0, &removed);
  check_detail(s == FJ_OK && removed == 2, "prune by age removes the 2 old trials that are not winners", fj_last_error());
  check_detail(sql_int(path, "SELECT count(*) FROM trials WHERE config = 'old fast'") == 1, "prune keeps the winner's trial",
        NULL);
  s = tuning_db_prune(db, 0, 1, &removed);
  check_detail(s == FJ_OK && removed == 1 && sql_int(path, "SELECT count(*) FROM trials") == 2,
        "prune of other versions removes the other LLVM's trial", fj_last_error());
  check_detail(sql_int(path, "SELECT count(*) FROM problems") == 1, "problems left without trials go", NULL);

  char *listing = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&listing, &size);
  s = tuning_db_list(db, f);
  fclose(f);
  check_detail(s == FJ_OK && listing && strstr(listing, KEY_BF16_11) && strstr(listing, "old fast") &&
            strstr(listing, "2 trials"),
        "list shows the winner and the counts", listing);
  free(listing);
  listing = NULL;
  f = open_memstream(&listing, &size);
  s = tuning_db_show(db, "dtype=bf16", f);
  fclose(f);
  check_detail(s == FJ_OK && listing && strstr(listing, "new slow") && strstr(listing, "* ok"), "show lists the trials",
        listing);
  free(listing);

  check_detail(tuning_db_clear(db) == FJ_OK && sql_int(path, "SELECT count(*) FROM trials") == 0 &&
            sql_int(path, "SELECT count(*) FROM winners") == 0 && sql_int(path, "SELECT count(*) FROM devices") == 0,
        "clear empties every table", fj_last_error());
  check_detail(record(db, make_trial(KEY_BF16_11, "after clear", TRIAL_OK, 1)) == 1 &&
            sql_int(path, "PRAGMA user_version") == 2,
        "the cleared database still works", NULL);
  tuning_db_close(db);
}

int main(void) {
  if (!core_log_enabled(LOG_WARN)) /* the checks read warnings from the log */
    core_log_set_level(LOG_WARN);
  snprintf(root, sizeof root, "/tmp/test_tuning_db_XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  check_schema();
  char path[256];
  path_in_root(path, sizeof path, "main.db");
  tuning_db *db = NULL;
  check_detail(tuning_db_open(path, &db) == FJ_OK, "open the main test database", fj_last_error());
  if (db) {
    check_record(db, path);
    check_winner(db);
    check_confirmed_winner(db);
    check_lookup(db);
    check_versions(db);
    check_export_import(db, path);
  }
  tuning_db_close(db);
  check_migration();
  check_newer_schema();
  check_corruption();
  check_concurrent_writers();
  check_reader_during_writes();
  check_claims();
  check_threads();
  check_bad_rows();
  check_prune_and_clear();

  remove_tree(root);
  check_detail(!file_exists(root), "temporary folders removed", root);
  return check_summary();
}
