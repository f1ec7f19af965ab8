/* tuning_db.c: opening the tuning database. Before anything is written the file is examined: one that
 * is not SQLite, is damaged, or is another application's database is moved aside with a warning and a
 * fresh one made; one from a newer schema is refused untouched. Then WAL mode, the busy timeout and the
 * migrations (all steps in one transaction) bring it to TUNING_DB_SCHEMA_VERSION. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "core/error.h"
#include "core/log.h"

/* ---- schema --------------------------------------------------------------------------------------
 * Version 1 (flashjit 0.0.x) had devices, problems (key text only), trials without a generator version
 * and winners. Version 2 parses the key into columns (base_key + seqlen_bucket make the nearest-bucket
 * lookup one indexed query), adds the generator version to a trial's identity, an outcome check, the
 * winners' update time, and the claims table. Both keep the flashjit_meta marker table. */

static const char tuning_db_schema_v2[] =
    "CREATE TABLE flashjit_meta("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL);"
    "CREATE TABLE devices("
    "  id INTEGER PRIMARY KEY,"
    "  fingerprint TEXT NOT NULL UNIQUE,"
    "  backend TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  arch TEXT NOT NULL,"
    "  compute_units INTEGER NOT NULL,"
    "  memory_bytes INTEGER NOT NULL,"
    "  driver_version TEXT NOT NULL);"
    "CREATE TABLE problems("
    "  id INTEGER PRIMARY KEY,"
    "  key TEXT NOT NULL UNIQUE,"
    "  base_key TEXT,"
    "  kind TEXT,"
    "  dtype TEXT,"
    "  head_dim INTEGER,"
    "  heads INTEGER,"
    "  kv_heads INTEGER,"
    "  causal INTEGER,"
    "  lse INTEGER,"
    "  dcontig INTEGER,"
    "  seqlen_bucket INTEGER);"
    "CREATE INDEX problems_by_base ON problems(base_key, seqlen_bucket);"
    "CREATE TABLE trials("
    "  id INTEGER PRIMARY KEY,"
    "  problem_id INTEGER NOT NULL REFERENCES problems(id),"
    "  device_id INTEGER NOT NULL REFERENCES devices(id),"
    "  family TEXT NOT NULL,"
    "  config TEXT NOT NULL,"
    "  timing_method TEXT NOT NULL,"
    "  batch INTEGER NOT NULL,"
    "  seqlen_q INTEGER NOT NULL,"
    "  seqlen_kv INTEGER NOT NULL,"
    "  outcome TEXT NOT NULL CHECK (outcome IN "
    "    ('ok','compile_error','launch_error','timeout','wrong_result','crash')),"
    "  median_ms REAL,"
    "  min_ms REAL,"
    "  max_ms REAL,"
    "  repeats INTEGER NOT NULL,"
    "  rel_err REAL,"
    "  message TEXT NOT NULL DEFAULT '',"
    "  library_version TEXT NOT NULL,"
    "  llvm_version TEXT NOT NULL,"
    "  generator_version INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  UNIQUE (problem_id, device_id, family, config, timing_method, batch, seqlen_q, seqlen_kv,"
    "          library_version, llvm_version, generator_version));"
    "CREATE TABLE winners("
    "  problem_id INTEGER NOT NULL REFERENCES problems(id),"
    "  device_id INTEGER NOT NULL REFERENCES devices(id),"
    "  family TEXT NOT NULL,"
    "  timing_method TEXT NOT NULL,"
    "  trial_id INTEGER NOT NULL REFERENCES trials(id),"
    "  updated_at INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (problem_id, device_id, family, timing_method));"
    "CREATE TABLE claims("
    "  fingerprint TEXT NOT NULL,"
    "  problem_key TEXT NOT NULL,"
    "  family TEXT NOT NULL,"
    "  config TEXT NOT NULL,"
    "  timing_method TEXT NOT NULL,"
    "  batch INTEGER NOT NULL,"
    "  seqlen_q INTEGER NOT NULL,"
    "  seqlen_kv INTEGER NOT NULL,"
    "  library_version TEXT NOT NULL,"
    "  llvm_version TEXT NOT NULL,"
    "  generator_version INTEGER NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  hostname TEXT NOT NULL,"
    "  claimed_at INTEGER NOT NULL,"
    "  UNIQUE (fingerprint, problem_key, family, config, timing_method, batch, seqlen_q, seqlen_kv,"
    "          library_version, llvm_version, generator_version));";

/* 1 -> 2. (Its trials_v2 text repeats the current schema's trials table on purpose: a migration is a
 * frozen step that must keep producing version 2 whatever later versions do to the current schema.)
 * The trials table is rebuilt (SQLite cannot add a column to a UNIQUE constraint), keeping ids
 * so that winners still point at their trials; v1 trials get generator version 0, which no generator
 * has, so they are never mistaken for current ones. The key columns are filled from C afterwards. */
static const char tuning_db_migrate_1_to_2[] =
    "ALTER TABLE problems ADD COLUMN base_key TEXT;"
    "ALTER TABLE problems ADD COLUMN kind TEXT;"
    "ALTER TABLE problems ADD COLUMN dtype TEXT;"
    "ALTER TABLE problems ADD COLUMN head_dim INTEGER;"
    "ALTER TABLE problems ADD COLUMN heads INTEGER;"
    "ALTER TABLE problems ADD COLUMN kv_heads INTEGER;"
    "ALTER TABLE problems ADD COLUMN causal INTEGER;"
    "ALTER TABLE problems ADD COLUMN lse INTEGER;"
    "ALTER TABLE problems ADD COLUMN dcontig INTEGER;"
    "ALTER TABLE problems ADD COLUMN seqlen_bucket INTEGER;"
    "CREATE INDEX problems_by_base ON problems(base_key, seqlen_bucket);"
    "CREATE TABLE trials_v2("
    "  id INTEGER PRIMARY KEY,"
    "  problem_id INTEGER NOT NULL REFERENCES problems(id),"
    "  device_id INTEGER NOT NULL REFERENCES devices(id),"
    "  family TEXT NOT NULL,"
    "  config TEXT NOT NULL,"
    "  timing_method TEXT NOT NULL,"
    "  batch INTEGER NOT NULL,"
    "  seqlen_q INTEGER NOT NULL,"
    "  seqlen_kv INTEGER NOT NULL,"
    "  outcome TEXT NOT NULL CHECK (outcome IN "
    "    ('ok','compile_error','launch_error','timeout','wrong_result','crash')),"
    "  median_ms REAL,"
    "  min_ms REAL,"
    "  max_ms REAL,"
    "  repeats INTEGER NOT NULL,"
    "  rel_err REAL,"
    "  message TEXT NOT NULL DEFAULT '',"
    "  library_version TEXT NOT NULL,"
    "  llvm_version TEXT NOT NULL,"
    "  generator_version INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  UNIQUE (problem_id, device_id, family, config, timing_method, batch, seqlen_q, seqlen_kv,"
    "          library_version, llvm_version, generator_version));"
    "INSERT INTO trials_v2(id, problem_id, device_id, family, config, timing_method, batch, seqlen_q,"
    "  seqlen_kv, outcome, median_ms, min_ms, max_ms, repeats, rel_err, message, library_version,"
    "  llvm_version, generator_version, created_at)"
    "  SELECT id, problem_id, device_id, family, config, timing_method, batch, seqlen_q, seqlen_kv,"
    "    outcome, median_ms, min_ms, max_ms, repeats, rel_err, message, library_version, llvm_version, 0,"
    "    created_at FROM trials;"
    "DROP TABLE trials;"
    "ALTER TABLE trials_v2 RENAME TO trials;"
    "ALTER TABLE winners ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE claims("
    "  fingerprint TEXT NOT NULL,"
    "  problem_key TEXT NOT NULL,"
    "  family TEXT NOT NULL,"
    "  config TEXT NOT NULL,"
    "  timing_method TEXT NOT NULL,"
    "  batch INTEGER NOT NULL,"
    "  seqlen_q INTEGER NOT NULL,"
    "  seqlen_kv INTEGER NOT NULL,"
    "  library_version TEXT NOT NULL,"
    "  llvm_version TEXT NOT NULL,"
    "  generator_version INTEGER NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  hostname TEXT NOT NULL,"
    "  claimed_at INTEGER NOT NULL,"
    "  UNIQUE (fingerprint, problem_key, family, config, timing_method, batch, seqlen_q, seqlen_kv,"
    "          library_version, llvm_version, generator_version));";

/* ---- examining a file ------------------------------------------------------------------------- */

typedef enum tuning_db_verdict { TUNING_DB_USABLE, TUNING_DB_FOREIGN, TUNING_DB_NEWER } tuning_db_verdict;

static int tuning_db_is_damage(int code) {
  int primary = code & 0xFF;
  return primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT;
}

/* Runs a one-row query and copies its first column as text; SQLite's result code. */
static int tuning_db_query_text(sqlite3 *handle, const char *sql, char *out, size_t size) {
  sqlite3_stmt *statement = NULL;
  int rc = sqlite3_prepare_v2(handle, sql, -1, &statement, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
      const unsigned char *text = sqlite3_column_text(statement, 0);
      snprintf(out, size, "%s", text ? (const char *)text : "");
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      out[0] = '\0';
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(statement);
  return rc;
}

/* Decides, reading only, whether the open file is ours. FJ_IO for trouble that says nothing about the
 * file's contents (locked past the timeout, unreadable): such a file must never be moved aside. */
static fj_status tuning_db_examine(sqlite3 *handle, const char *path, tuning_db_verdict *verdict, int *version,
                                   char *reason, size_t reason_size) {
  char text[256];
  *verdict = TUNING_DB_USABLE;
  *version = 0;
  int rc = tuning_db_query_text(
      handle, "SELECT count(*) || ' ' || count(CASE WHEN name = 'flashjit_meta' THEN 1 END) FROM sqlite_master",
      text, sizeof text);
  if (rc != SQLITE_OK) {
    if (tuning_db_is_damage(rc)) {
      *verdict = TUNING_DB_FOREIGN;
      snprintf(reason, reason_size, "%s", sqlite3_errstr(rc));
      return FJ_OK;
    }
    return core_error(FJ_IO, "tuning database %s: cannot read it: %s (SQLite code %d)", path,
                      sqlite3_errmsg(handle), rc);
  }
  long objects = 0, markers = 0;
  sscanf(text, "%ld %ld", &objects, &markers);
  rc = tuning_db_query_text(handle, "PRAGMA user_version", text, sizeof text);
  if (rc != SQLITE_OK)
    return core_error(FJ_IO, "tuning database %s: cannot read its schema version: %s", path, sqlite3_errmsg(handle));
  *version = atoi(text);
  if (objects == 0 && *version == 0)
    return FJ_OK; /* new or empty: ours to create */
  if (markers == 0) {
    *verdict = TUNING_DB_FOREIGN;
    snprintf(reason, reason_size, "an SQLite database of another application: %ld tables or indexes, none of them flashjit_meta",
             objects);
    return FJ_OK;
  }
  rc = tuning_db_query_text(handle, "SELECT value FROM flashjit_meta WHERE key = 'format'", text, sizeof text);
  if (rc != SQLITE_OK && !tuning_db_is_damage(rc))
    return core_error(FJ_IO, "tuning database %s: cannot read flashjit_meta: %s", path, sqlite3_errmsg(handle));
  if (rc != SQLITE_OK || strcmp(text, TUNING_DB_FORMAT) != 0 || *version <= 0) {
    *verdict = TUNING_DB_FOREIGN;
    snprintf(reason, reason_size, "flashjit_meta without the '%s' marker or without a schema version",
             TUNING_DB_FORMAT);
    return FJ_OK;
  }
  if (*version > TUNING_DB_SCHEMA_VERSION) {
    *verdict = TUNING_DB_NEWER;
    return FJ_OK; /* not checked further: a newer schema is not ours to judge */
  }
  rc = tuning_db_query_text(handle, "PRAGMA quick_check", text, sizeof text);
  if (rc != SQLITE_OK && !tuning_db_is_damage(rc))
    return core_error(FJ_IO, "tuning database %s: cannot check it: %s", path, sqlite3_errmsg(handle));
  if (rc != SQLITE_OK || strcmp(text, "ok") != 0) {
    *verdict = TUNING_DB_FOREIGN;
    snprintf(reason, reason_size, "damaged: %s", rc != SQLITE_OK ? sqlite3_errstr(rc) : text);
  }
  return FJ_OK;
}

static int tuning_db_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Renames the file (and its -wal/-shm/-journal) to "<path>.corrupt-<unix time>". When the path no
 * longer names the file that was examined, another process has already moved it and made a fresh one:
 * nothing to do but open that. */
static fj_status tuning_db_move_aside(const char *path, const struct stat *examined, const char *reason) {
  struct stat now;
  if (stat(path, &now) != 0 || now.st_dev != examined->st_dev || now.st_ino != examined->st_ino)
    return FJ_OK;
  char aside[4096];
  long long when = (long long)time(NULL);
  int n = snprintf(aside, sizeof aside, "%s.corrupt-%lld", path, when);
  for (int attempt = 2; n > 0 && (size_t)n < sizeof aside && tuning_db_exists(aside) && attempt < 100; attempt++)
    n = snprintf(aside, sizeof aside, "%s.corrupt-%lld-%d", path, when, attempt);
  if (n < 0 || (size_t)n + 16 >= sizeof aside)
    return core_error(FJ_IO, "tuning database %s is unusable (%s) and its path is too long to move it aside", path,
                      reason);
  if (rename(path, aside) != 0) {
    int code = errno;
    return core_error(FJ_IO, "tuning database %s is unusable (%s) and cannot be moved to %s: %s", path, reason,
                      aside, strerror(code));
  }
  static const char *const suffixes[] = {"-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s%s", path, suffixes[i]);
    snprintf(to, sizeof to, "%s%s", aside, suffixes[i]);
    if (rename(from, to) != 0 && errno != ENOENT)
      core_log(LOG_WARN, "tuning database: cannot move %s to %s: %s", from, to, strerror(errno));
  }
  core_log(LOG_WARN, "tuning database %s is not a usable flashjit database (%s); moved it to %s and created a "
                     "fresh one",
           path, reason, aside);
  return FJ_OK;
}

/* ---- creating and migrating ------------------------------------------------------------------- */

static const char tuning_db_sql_problem_keys[] = "SELECT id, key FROM problems ORDER BY id";
static const char tuning_db_sql_problem_columns[] =
    "UPDATE problems SET base_key = ?2, kind = ?3, dtype = ?4, head_dim = ?5, heads = ?6, kv_heads = ?7,"
    " causal = ?8, lse = ?9, dcontig = ?10, seqlen_bucket = ?11 WHERE id = ?1";
static const char tuning_db_sql_meta_put[] =
    "INSERT INTO flashjit_meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
static const char tuning_db_sql_version[] = "PRAGMA user_version";

static void tuning_db_bind_int_or_null(sqlite3_stmt *statement, int index, int value) {
  if (value < 0)
    sqlite3_bind_null(statement, index);
  else
    sqlite3_bind_int(statement, index, value);
}

void tuning_db_bind_key_columns(sqlite3_stmt *statement, const tuning_db_key *key) {
  if (key->bucket >= 0)
    tuning_db_bind_text(statement, 2, key->base);
  else
    sqlite3_bind_null(statement, 2);
  tuning_db_bind_text(statement, 3, key->kind);
  if (key->dtype[0])
    tuning_db_bind_text(statement, 4, key->dtype);
  else
    sqlite3_bind_null(statement, 4);
  tuning_db_bind_int_or_null(statement, 5, key->head_dim);
  tuning_db_bind_int_or_null(statement, 6, key->heads);
  tuning_db_bind_int_or_null(statement, 7, key->kv_heads);
  tuning_db_bind_int_or_null(statement, 8, key->causal);
  tuning_db_bind_int_or_null(statement, 9, key->lse);
  tuning_db_bind_int_or_null(statement, 10, key->dcontig);
  tuning_db_bind_int_or_null(statement, 11, key->bucket);
}

static fj_status tuning_db_meta_put(tuning_db *db, const char *key, const char *value) {
  sqlite3_stmt *statement = tuning_db_statement(db, tuning_db_sql_meta_put);
  if (!statement)
    return FJ_IO;
  tuning_db_bind_text(statement, 1, key);
  tuning_db_bind_text(statement, 2, value);
  int rc = sqlite3_step(statement);
  fj_status status = rc == SQLITE_DONE ? FJ_OK : tuning_db_fail(db, "writing flashjit_meta");
  tuning_db_statement_done(statement);
  return status;
}

static fj_status tuning_db_read_version(tuning_db *db, int *version) {
  sqlite3_stmt *statement = tuning_db_statement(db, tuning_db_sql_version);
  if (!statement)
    return FJ_IO;
  int rc = sqlite3_step(statement);
  fj_status status = FJ_OK;
  if (rc == SQLITE_ROW)
    *version = sqlite3_column_int(statement, 0);
  else
    status = tuning_db_fail(db, "reading the schema version");
  tuning_db_statement_done(statement);
  return status;
}

/* The v1 keys were text only: parse each into the new columns. Ids first, then updates, so that no
 * statement writes the table another is still reading. */
static fj_status tuning_db_fill_key_columns(tuning_db *db) {
  sqlite3_stmt *select = tuning_db_statement(db, tuning_db_sql_problem_keys);
  sqlite3_stmt *update = tuning_db_statement(db, tuning_db_sql_problem_columns);
  if (!select || !update)
    return FJ_IO;
  size_t count = 0, capacity = 0;
  struct row {
    int64_t id;
    char *key;
  } *rows = NULL;
  fj_status status = FJ_OK;
  int rc;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    if (count == capacity) {
      capacity = capacity ? capacity * 2 : 64;
      struct row *grown = realloc(rows, capacity * sizeof *rows);
      if (!grown) {
        status = core_error(FJ_OUT_OF_MEMORY, "tuning database %s: no memory to migrate problem keys", db->path);
        break;
      }
      rows = grown;
    }
    const unsigned char *key = sqlite3_column_text(select, 1);
    rows[count].id = sqlite3_column_int64(select, 0);
    rows[count].key = strdup(key ? (const char *)key : "");
    if (!rows[count].key) {
      status = core_error(FJ_OUT_OF_MEMORY, "tuning database %s: no memory to migrate problem keys", db->path);
      break;
    }
    count++;
  }
  if (status == FJ_OK && rc != SQLITE_DONE)
    status = tuning_db_fail(db, "reading problem keys to migrate");
  tuning_db_statement_done(select);
  for (size_t i = 0; i < count && status == FJ_OK; i++) {
    tuning_db_key key;
    tuning_db_parse_key(rows[i].key, &key); /* an odd key keeps NULL columns and is found by its text */
    sqlite3_bind_int64(update, 1, rows[i].id);
    tuning_db_bind_key_columns(update, &key);
    if (sqlite3_step(update) != SQLITE_DONE)
      status = tuning_db_fail(db, "filling the parsed key columns");
    tuning_db_statement_done(update);
  }
  for (size_t i = 0; i < count; i++)
    free(rows[i].key);
  free(rows);
  return status;
}

static fj_status tuning_db_check_foreign_keys(tuning_db *db) {
  char text[256];
  int rc = tuning_db_query_text(db->sqlite, "PRAGMA foreign_key_check", text, sizeof text);
  if (rc != SQLITE_OK)
    return tuning_db_fail(db, "checking references after migrating");
  if (text[0])
    return core_error(FJ_IO, "tuning database %s: migrating would leave a dangling reference (table %s); the file "
                             "was left as it was",
                      db->path, text);
  return FJ_OK;
}

/* Brings the file to TUNING_DB_SCHEMA_VERSION in one transaction: a crash or an error leaves it as it
 * was. Concurrent openers serialize on BEGIN IMMEDIATE and re-read the version inside. */
static fj_status tuning_db_migrate(tuning_db *db) {
  /* Table rebuilds need foreign keys off, and the pragma is a no-op inside a transaction. */
  fj_status status = tuning_db_exec(db, "PRAGMA foreign_keys = OFF", "preparing to migrate");
  if (status == FJ_OK)
    status = tuning_db_begin(db);
  if (status != FJ_OK)
    return status;
  int version = 0;
  status = tuning_db_read_version(db, &version);
  int from = version;
  char now[32];
  snprintf(now, sizeof now, "%lld", (long long)time(NULL));
  if (status == FJ_OK && version > TUNING_DB_SCHEMA_VERSION)
    status = core_error(FJ_UNSUPPORTED,
                        "tuning database %s has schema version %d; this flashjit (%s) reads up to %d: upgrade "
                        "flashjit or use another FLASHJIT_CACHE_DIR",
                        db->path, version, fj_version_string(), TUNING_DB_SCHEMA_VERSION);
  if (status == FJ_OK && version == 0) {
    status = tuning_db_exec(db, tuning_db_schema_v2, "creating the schema");
    if (status == FJ_OK)
      status = tuning_db_meta_put(db, "format", TUNING_DB_FORMAT);
    if (status == FJ_OK)
      status = tuning_db_meta_put(db, "created_by", fj_version_string());
    if (status == FJ_OK)
      status = tuning_db_meta_put(db, "created_at", now);
    version = TUNING_DB_SCHEMA_VERSION;
  }
  if (status == FJ_OK && version == 1) {
    status = tuning_db_exec(db, tuning_db_migrate_1_to_2, "migrating schema 1 to 2");
    if (status == FJ_OK)
      status = tuning_db_fill_key_columns(db);
    if (status == FJ_OK)
      status = tuning_db_meta_put(db, "migrated_1_to_2", now);
    version = 2;
  }
  if (status == FJ_OK && from != version) {
    status = tuning_db_check_foreign_keys(db);
    /* A pragma takes no bound value; the assertion keeps the literal honest. */
    _Static_assert(TUNING_DB_SCHEMA_VERSION == 2, "update the user_version literal and add a migration");
    if (status == FJ_OK)
      status = tuning_db_exec(db, "PRAGMA user_version = 2", "setting the schema version");
  }
  if (status == FJ_OK)
    status = tuning_db_commit(db);
  else
    tuning_db_rollback(db);
  if (status == FJ_OK && from != 0 && from != version)
    core_log(LOG_INFO, "tuning database %s: migrated schema %d to %d", db->path, from, version);
  fj_status keys = tuning_db_exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys");
  if (status == FJ_OK)
    status = keys;
  if (status == FJ_OK)
    db->schema_version = version;
  return status;
}

/* WAL lets readers run beside a writer; NORMAL sync is safe with WAL (a power cut may lose the last
 * commits, never consistency); the busy timeout turns lock waits into waits, not errors. */
static fj_status tuning_db_configure(tuning_db *db) {
  char mode[32] = "";
  int rc = SQLITE_BUSY;
  /* Switching a new file to WAL needs a lock that the busy handler does not always wait for. */
  for (int attempt = 0; attempt < 200 && (rc & 0xFF) == SQLITE_BUSY; attempt++) {
    rc = tuning_db_query_text(db->sqlite, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if ((rc & 0xFF) == SQLITE_BUSY)
      usleep(50 * 1000);
  }
  if (rc != SQLITE_OK)
    return tuning_db_fail(db, "switching to WAL mode");
  if (strcmp(mode, "wal") != 0)
    core_log(LOG_WARN, "tuning database %s: journal mode is '%s', not WAL (a file system without shared memory?): "
                       "readers will wait for writers",
             db->path, mode);
  fj_status status = tuning_db_exec(db, "PRAGMA synchronous = NORMAL", "setting synchronous mode");
  if (status == FJ_OK)
    status = tuning_db_exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys");
  return status;
}

/* ---- open / close ----------------------------------------------------------------------------- */

static void tuning_db_free(tuning_db *db) {
  if (!db)
    return;
  for (int i = 0; i < db->statement_count; i++)
    sqlite3_finalize(db->statements[i].statement);
  sqlite3_close(db->sqlite);
  pthread_mutex_destroy(&db->mutex);
  free(db->path);
  free(db);
}

static fj_status tuning_db_open_handle(const char *path, sqlite3 **handle) {
  *handle = NULL;
  int rc = sqlite3_open_v2(path, handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    fj_status status = core_error(FJ_IO, "tuning database %s: cannot open or create it: %s", path,
                                  *handle ? sqlite3_errmsg(*handle) : sqlite3_errstr(rc));
    sqlite3_close(*handle);
    *handle = NULL;
    return status;
  }
  sqlite3_extended_result_codes(*handle, 1);
  sqlite3_busy_timeout(*handle, TUNING_DB_BUSY_TIMEOUT_MS);
  return FJ_OK;
}

fj_status tuning_db_open(const char *path, tuning_db **out) {
  if (out)
    *out = NULL;
  if (!path || !*path || !out)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_open: %s is NULL%s", !out ? "out" : "path",
                      !out ? "" : " or empty");
  /* The file, the fresh one made after moving it aside, and one more round in case another process
   * moved or replaced it at the same moment. */
  for (int round = 0; round < 3; round++) {
    struct stat examined;
    int existed = stat(path, &examined) == 0;
    sqlite3 *handle;
    fj_status status = tuning_db_open_handle(path, &handle);
    if (status != FJ_OK)
      return status;
    tuning_db_verdict verdict;
    int version = 0;
    char reason[512] = "";
    status = tuning_db_examine(handle, path, &verdict, &version, reason, sizeof reason);
    if (status == FJ_OK && verdict == TUNING_DB_NEWER)
      status = core_error(FJ_UNSUPPORTED,
                          "tuning database %s has schema version %d; this flashjit (%s) reads up to %d: upgrade "
                          "flashjit or use another FLASHJIT_CACHE_DIR",
                          path, version, fj_version_string(), TUNING_DB_SCHEMA_VERSION);
    if (status != FJ_OK || verdict == TUNING_DB_FOREIGN) {
      sqlite3_close(handle); /* before renaming, so that SQLite holds no lock or -wal on it */
      if (status != FJ_OK)
        return status;
      if (!existed) /* made by another process since our stat: examine again */
        continue;
      status = tuning_db_move_aside(path, &examined, reason);
      if (status != FJ_OK)
        return status;
      continue;
    }

    tuning_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
      free(db);
      sqlite3_close(handle);
      return core_error(FJ_OUT_OF_MEMORY, "tuning database %s: no memory for the handle", path);
    }
    db->sqlite = handle;
    pthread_mutex_init(&db->mutex, NULL);
    if (gethostname(db->hostname, sizeof db->hostname - 1) != 0)
      snprintf(db->hostname, sizeof db->hostname, "unknown");
    status = tuning_db_configure(db);
    if (status == FJ_OK)
      status = tuning_db_migrate(db);
    if (status != FJ_OK) {
      tuning_db_free(db);
      return status;
    }
    *out = db;
    return FJ_OK;
  }
  return core_error(FJ_IO, "tuning database %s: still unusable after moving it aside; is another program "
                           "writing that path?",
                    path);
}

void tuning_db_close(tuning_db *db) { tuning_db_free(db); }

int tuning_db_schema_version(tuning_db *db) { return db ? db->schema_version : 0; }
