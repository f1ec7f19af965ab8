/* tuning_db_trials.c: what a tuner and an inference process do with the database while it runs:
 * record trials (a trial's identity is a UNIQUE key, so a repeat is ignored rather than added), ask
 * whether one is recorded, claim candidates so that concurrent tuners split the work, recompute the
 * winner of a problem on a device, and look the winner up (exact key, else the nearest sequence-length
 * bucket, in one query). Every write is one IMMEDIATE transaction. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "core/error.h"
#include "core/log.h"

/* ---- rows ------------------------------------------------------------------------------------- */

/* The device's fields are only written the first time: a fingerprint names everything that makes
 * results transferable, so its other fields cannot differ. */
static const char sql_device_insert[] =
    "INSERT INTO devices(fingerprint, backend, name, arch, compute_units, memory_bytes, driver_version)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(fingerprint) DO NOTHING";
static const char sql_device_id[] = "SELECT id FROM devices WHERE fingerprint = ?1";
static const char sql_problem_insert[] =
    "INSERT INTO problems(key, base_key, kind, dtype, head_dim, heads, kv_heads, causal, lse, dcontig,"
    " seqlen_bucket) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT(key) DO NOTHING";
static const char sql_problem_id[] = "SELECT id FROM problems WHERE key = ?1";
/* ON CONFLICT DO NOTHING rather than INSERT OR IGNORE: OR IGNORE would also swallow a NOT NULL or
 * CHECK violation, losing a row without a word. */
static const char sql_trial_insert[] =
    "INSERT INTO trials(problem_id, device_id, family, config, timing_method, batch, seqlen_q, seqlen_kv,"
    " library_version, llvm_version, generator_version, outcome, median_ms, min_ms, max_ms, repeats, rel_err,"
    " message, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
    " ?18, ?19) ON CONFLICT DO NOTHING";
#define TUNING_DB_TRIAL_WHERE                                                                             \
  " FROM trials t JOIN problems p ON p.id = t.problem_id JOIN devices d ON d.id = t.device_id"           \
  " WHERE d.fingerprint = ?1 AND p.key = ?2 AND t.family = ?3 AND t.config = ?4 AND t.timing_method = ?5" \
  " AND t.batch = ?6 AND t.seqlen_q = ?7 AND t.seqlen_kv = ?8 AND t.library_version = ?9"               \
  " AND t.llvm_version = ?10 AND t.generator_version = ?11"
static const char sql_trial_exists[] = "SELECT 1" TUNING_DB_TRIAL_WHERE;
static const char sql_trial_median[] = "SELECT t.median_ms" TUNING_DB_TRIAL_WHERE " AND t.outcome = 'ok'";

/* Binds a trial's identity after its first two places (device and problem, as ids or as text). */
static void tuning_db_bind_identity(sqlite3_stmt *statement, const tuning_trial *trial) {
  tuning_db_bind_text(statement, 3, trial->family);
  tuning_db_bind_text(statement, 4, trial->config);
  tuning_db_bind_text(statement, 5, trial->timing_method);
  sqlite3_bind_int64(statement, 6, trial->batch);
  sqlite3_bind_int64(statement, 7, trial->seqlen_q);
  sqlite3_bind_int64(statement, 8, trial->seqlen_kv);
  tuning_db_bind_text(statement, 9, trial->library_version);
  tuning_db_bind_text(statement, 10, trial->llvm_version);
  sqlite3_bind_int(statement, 11, trial->generator_version);
}

/* Runs an id query bound at ?1 to text; *id 0 when there is no row. */
static fj_status tuning_db_find_id(tuning_db *db, const char *sql, const char *text, int64_t *id) {
  *id = 0;
  sqlite3_stmt *statement = tuning_db_statement(db, sql);
  if (!statement)
    return FJ_IO;
  tuning_db_bind_text(statement, 1, text);
  int rc = sqlite3_step(statement);
  fj_status status = FJ_OK;
  if (rc == SQLITE_ROW)
    *id = sqlite3_column_int64(statement, 0);
  else if (rc != SQLITE_DONE)
    status = tuning_db_fail(db, "looking up an id");
  tuning_db_statement_done(statement);
  return status;
}

static fj_status tuning_db_step_once(tuning_db *db, sqlite3_stmt *statement, const char *what) {
  int rc = sqlite3_step(statement);
  fj_status status = rc == SQLITE_DONE || rc == SQLITE_ROW ? FJ_OK : tuning_db_fail(db, what);
  tuning_db_statement_done(statement);
  return status;
}

static fj_status tuning_db_device_row(tuning_db *db, const tuning_device *device, int64_t *id) {
  sqlite3_stmt *statement = tuning_db_statement(db, sql_device_insert);
  if (!statement)
    return FJ_IO;
  tuning_db_bind_text(statement, 1, device->fingerprint);
  tuning_db_bind_text(statement, 2, device->backend);
  tuning_db_bind_text(statement, 3, device->name);
  tuning_db_bind_text(statement, 4, device->arch);
  sqlite3_bind_int(statement, 5, device->compute_units);
  sqlite3_bind_int64(statement, 6, device->memory_bytes > INT64_MAX ? INT64_MAX : (int64_t)device->memory_bytes);
  tuning_db_bind_text(statement, 7, device->driver_version);
  fj_status status = tuning_db_step_once(db, statement, "adding a device");
  if (status == FJ_OK)
    status = tuning_db_find_id(db, sql_device_id, device->fingerprint, id);
  if (status == FJ_OK && *id == 0)
    status = core_error(FJ_IO, "tuning database %s: device %s vanished while being added", db->path,
                        device->fingerprint);
  return status;
}

static fj_status tuning_db_problem_row(tuning_db *db, const char *problem_key, int64_t *id) {
  tuning_db_key key;
  if (tuning_db_parse_key(problem_key, &key) != 0)
    return core_error(FJ_INVALID_ARGUMENT, "tuning database: problem key '%.64s...' is blank or too long",
                      problem_key);
  sqlite3_stmt *statement = tuning_db_statement(db, sql_problem_insert);
  if (!statement)
    return FJ_IO;
  tuning_db_bind_text(statement, 1, problem_key);
  tuning_db_bind_key_columns(statement, &key);
  fj_status status = tuning_db_step_once(db, statement, "adding a problem");
  if (status == FJ_OK)
    status = tuning_db_find_id(db, sql_problem_id, problem_key, id);
  if (status == FJ_OK && *id == 0)
    status = core_error(FJ_IO, "tuning database %s: problem '%s' vanished while being added", db->path, problem_key);
  return status;
}

fj_status tuning_db_store_trial(tuning_db *db, const tuning_device *device, const tuning_trial *trial,
                                int *inserted) {
  *inserted = 0;
  int64_t device_id, problem_id;
  fj_status status = tuning_db_device_row(db, device, &device_id);
  if (status == FJ_OK)
    status = tuning_db_problem_row(db, trial->problem_key, &problem_id);
  if (status != FJ_OK)
    return status;
  sqlite3_stmt *statement = tuning_db_statement(db, sql_trial_insert);
  if (!statement)
    return FJ_IO;
  sqlite3_bind_int64(statement, 1, problem_id);
  sqlite3_bind_int64(statement, 2, device_id);
  tuning_db_bind_identity(statement, trial);
  tuning_db_bind_text(statement, 12, tuning_outcome_name(trial->outcome));
  sqlite3_bind_double(statement, 13, trial->median_ms);
  sqlite3_bind_double(statement, 14, trial->min_ms);
  sqlite3_bind_double(statement, 15, trial->max_ms);
  sqlite3_bind_int(statement, 16, trial->repeats);
  sqlite3_bind_double(statement, 17, trial->rel_err);
  tuning_db_bind_text(statement, 18, trial->message);
  sqlite3_bind_int64(statement, 19, trial->created_at > 0 ? trial->created_at : (int64_t)time(NULL));
  int rc = sqlite3_step(statement);
  if (rc == SQLITE_DONE)
    *inserted = sqlite3_changes(db->sqlite) > 0;
  else
    status = tuning_db_fail(db, "recording a trial");
  tuning_db_statement_done(statement);
  return status;
}

fj_status tuning_db_record_trial(tuning_db *db, const tuning_device *device, const tuning_trial *trial,
                                 int *inserted) {
  if (inserted)
    *inserted = 0;
  if (!db)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_record_trial: db is NULL");
  fj_status status = tuning_db_check_device(device, "tuning_db_record_trial");
  if (status == FJ_OK)
    status = tuning_db_check_trial(trial, "tuning_db_record_trial");
  if (status != FJ_OK)
    return status;
  int added = 0;
  tuning_db_lock(db);
  status = tuning_db_begin(db);
  if (status == FJ_OK)
    status = tuning_db_store_trial(db, device, trial, &added);
  if (status == FJ_OK)
    status = tuning_db_commit(db);
  else
    tuning_db_rollback(db);
  tuning_db_unlock(db);
  if (inserted && status == FJ_OK)
    *inserted = added;
  return status;
}

/* 1 recorded, 0 not, -1 error (message set). */
static int tuning_db_trial_exists(tuning_db *db, const char *fingerprint, const tuning_trial *trial) {
  sqlite3_stmt *statement = tuning_db_statement(db, sql_trial_exists);
  if (!statement)
    return -1;
  tuning_db_bind_text(statement, 1, fingerprint);
  tuning_db_bind_text(statement, 2, trial->problem_key);
  tuning_db_bind_identity(statement, trial);
  int rc = sqlite3_step(statement);
  int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
  if (found < 0)
    tuning_db_fail(db, "looking up a trial");
  tuning_db_statement_done(statement);
  return found;
}

int tuning_db_has_trial(tuning_db *db, const char *fingerprint, const tuning_trial *trial) {
  if (!db || !fingerprint || tuning_db_check_identity(trial, "tuning_db_has_trial") != FJ_OK)
    return 0;
  tuning_db_lock(db);
  int found = tuning_db_trial_exists(db, fingerprint, trial);
  tuning_db_unlock(db);
  return found > 0;
}

int tuning_db_trial_median(tuning_db *db, const char *fingerprint, const tuning_trial *trial, double *median_ms) {
  if (!db || !fingerprint || !median_ms || tuning_db_check_identity(trial, "tuning_db_trial_median") != FJ_OK)
    return 0;
  tuning_db_lock(db);
  int found = 0;
  sqlite3_stmt *statement = tuning_db_statement(db, sql_trial_median);
  if (statement) {
    tuning_db_bind_text(statement, 1, fingerprint);
    tuning_db_bind_text(statement, 2, trial->problem_key);
    tuning_db_bind_identity(statement, trial);
    int rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
      *median_ms = sqlite3_column_double(statement, 0);
      found = 1;
    } else if (rc != SQLITE_DONE) {
      tuning_db_fail(db, "reading a trial's median");
    }
    tuning_db_statement_done(statement);
  }
  tuning_db_unlock(db);
  return found;
}

/* ---- claims ----------------------------------------------------------------------------------- */

/* A claim's identity is text (fingerprint, problem key), not ids: claiming must not create device or
 * problem rows for a candidate that may never be measured. */
static const char sql_claim_insert[] =
    "INSERT INTO claims(fingerprint, problem_key, family, config, timing_method, batch, seqlen_q, seqlen_kv,"
    " library_version, llvm_version, generator_version, pid, hostname, claimed_at)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT DO NOTHING";
#define TUNING_DB_CLAIM_WHERE                                                                              \
  " WHERE fingerprint = ?1 AND problem_key = ?2 AND family = ?3 AND config = ?4 AND timing_method = ?5"  \
  " AND batch = ?6 AND seqlen_q = ?7 AND seqlen_kv = ?8 AND library_version = ?9 AND llvm_version = ?10" \
  " AND generator_version = ?11"
static const char sql_claim_holder[] = "SELECT pid, hostname, claimed_at FROM claims" TUNING_DB_CLAIM_WHERE;
static const char sql_claim_take[] =
    "UPDATE claims SET pid = ?12, hostname = ?13, claimed_at = ?14" TUNING_DB_CLAIM_WHERE;
static const char sql_claim_release[] = "DELETE FROM claims" TUNING_DB_CLAIM_WHERE " AND pid = ?12 AND hostname = ?13";

static void tuning_db_bind_claim(tuning_db *db, sqlite3_stmt *statement, const char *fingerprint,
                                 const tuning_trial *trial, int64_t now) {
  tuning_db_bind_text(statement, 1, fingerprint);
  tuning_db_bind_text(statement, 2, trial->problem_key);
  tuning_db_bind_identity(statement, trial);
  sqlite3_bind_int64(statement, 12, (int64_t)getpid());
  tuning_db_bind_text(statement, 13, db->hostname);
  if (now >= 0)
    sqlite3_bind_int64(statement, 14, now);
}

/* Whether the holder of a claim may be overtaken. A pid is only meaningful on its own host, and a zombie
 * still answers kill(), so a holder is dead only when kill says ESRCH. */
static int tuning_db_claim_takeable(tuning_db *db, int64_t pid, const char *hostname, int64_t claimed_at,
                                    int64_t now, int stale_seconds, const char **why) {
  int same_host = strcmp(hostname, db->hostname) == 0;
  if (same_host && pid == (int64_t)getpid()) {
    *why = "ours already";
    return 1;
  }
  if (stale_seconds > 0 && now - claimed_at >= stale_seconds) {
    *why = "stale";
    return 1;
  }
  if (same_host && pid > 0 && pid <= INT32_MAX && kill((pid_t)pid, 0) == -1 && errno == ESRCH) {
    *why = "its process is gone";
    return 1;
  }
  return 0;
}

static int tuning_db_claim_locked(tuning_db *db, const char *fingerprint, const tuning_trial *trial,
                                  int stale_seconds) {
  int64_t now = (int64_t)time(NULL);
  int exists = tuning_db_trial_exists(db, fingerprint, trial);
  if (exists != 0)
    return exists > 0 ? 0 : -1;
  sqlite3_stmt *insert = tuning_db_statement(db, sql_claim_insert);
  if (!insert)
    return -1;
  tuning_db_bind_claim(db, insert, fingerprint, trial, now);
  int rc = sqlite3_step(insert);
  int changed = sqlite3_changes(db->sqlite);
  if (rc != SQLITE_DONE)
    tuning_db_fail(db, "claiming a candidate");
  tuning_db_statement_done(insert);
  if (rc != SQLITE_DONE)
    return -1;
  if (changed > 0)
    return 1;

  sqlite3_stmt *holder = tuning_db_statement(db, sql_claim_holder);
  if (!holder)
    return -1;
  tuning_db_bind_claim(db, holder, fingerprint, trial, -1);
  rc = sqlite3_step(holder);
  if (rc != SQLITE_ROW) {
    /* The row exists: we hold the write lock since the failed insert, so nobody removed it. */
    tuning_db_fail(db, "reading a claim");
    tuning_db_statement_done(holder);
    return -1;
  }
  int64_t pid = sqlite3_column_int64(holder, 0);
  char hostname[256];
  const unsigned char *host = sqlite3_column_text(holder, 1);
  snprintf(hostname, sizeof hostname, "%s", host ? (const char *)host : "");
  int64_t claimed_at = sqlite3_column_int64(holder, 2);
  tuning_db_statement_done(holder);

  const char *why = "";
  if (!tuning_db_claim_takeable(db, pid, hostname, claimed_at, now, stale_seconds, &why))
    return 0;
  sqlite3_stmt *take = tuning_db_statement(db, sql_claim_take);
  if (!take)
    return -1;
  tuning_db_bind_claim(db, take, fingerprint, trial, now);
  if (tuning_db_step_once(db, take, "taking over a claim") != FJ_OK)
    return -1;
  if (strcmp(why, "ours already") != 0)
    core_log(LOG_INFO, "tuning database: took over the claim of pid %lld on %s (%s) for %s %s", (long long)pid,
             hostname, why, trial->problem_key, trial->config);
  return 1;
}

int tuning_db_claim(tuning_db *db, const char *fingerprint, const tuning_trial *trial, int stale_seconds) {
  if (!db || !fingerprint || !*fingerprint) {
    core_error(FJ_INVALID_ARGUMENT, "tuning_db_claim: %s is NULL%s", !db ? "db" : "fingerprint", !db ? "" : " or empty");
    return -1;
  }
  if (tuning_db_check_identity(trial, "tuning_db_claim") != FJ_OK)
    return -1;
  tuning_db_lock(db);
  int claimed = -1;
  if (tuning_db_begin(db) == FJ_OK) {
    claimed = tuning_db_claim_locked(db, fingerprint, trial, stale_seconds);
    if (claimed >= 0 && tuning_db_commit(db) != FJ_OK)
      claimed = -1;
    if (claimed < 0)
      tuning_db_rollback(db);
  }
  tuning_db_unlock(db);
  return claimed;
}

void tuning_db_release(tuning_db *db, const char *fingerprint, const tuning_trial *trial) {
  if (!db || !fingerprint || tuning_db_check_identity(trial, "tuning_db_release") != FJ_OK)
    return;
  tuning_db_lock(db);
  sqlite3_stmt *statement = tuning_db_statement(db, sql_claim_release);
  /* A claim left behind only delays others until it goes stale or its pid dies: a warning is enough. */
  if (statement) {
    tuning_db_bind_claim(db, statement, fingerprint, trial, -1);
    if (tuning_db_step_once(db, statement, "releasing a claim") != FJ_OK)
      core_log(LOG_WARN, "%s", fj_last_error());
  }
  tuning_db_unlock(db);
}

/* ---- winners ---------------------------------------------------------------------------------- */

#define TUNING_DB_GROUP \
  " WHERE problem_id = ?1 AND device_id = ?2 AND family = ?3 AND timing_method = ?4 AND outcome = 'ok'"
/* Confirmed configs first (a confirmation is a fair comparison; the first measurements of the best few
 * are biased low by being picked as the best), by their confirmed medians. */
static const char sql_best_of_versions[] =
    "SELECT t.id FROM trials t LEFT JOIN trials c ON c.problem_id = t.problem_id AND c.device_id = t.device_id"
    " AND c.family = t.family AND c.config = t.config AND c.timing_method = t.timing_method || '"
    TUNING_CONFIRM_SUFFIX "' AND c.outcome = 'ok' AND c.batch = t.batch AND c.seqlen_q = t.seqlen_q"
    " AND c.seqlen_kv = t.seqlen_kv AND c.library_version = t.library_version"
    " AND c.llvm_version = t.llvm_version AND c.generator_version = t.generator_version"
    " WHERE t.problem_id = ?1 AND t.device_id = ?2 AND t.family = ?3 AND t.timing_method = ?4 AND t.outcome = 'ok'"
    " AND t.library_version = ?5 AND t.llvm_version = ?6 AND t.generator_version = ?7"
    " ORDER BY c.id IS NULL, coalesce(c.median_ms, t.median_ms), t.median_ms, t.min_ms, t.id LIMIT 1";
static const char sql_choose_versions[] =
    "SELECT library_version, llvm_version, generator_version FROM trials" TUNING_DB_GROUP
    " ORDER BY (library_version = ?5 AND llvm_version = ?6) DESC, generator_version DESC, created_at DESC, id DESC"
    " LIMIT 1";
static const char sql_winner_put[] =
    "INSERT INTO winners(problem_id, device_id, family, timing_method, trial_id, updated_at)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(problem_id, device_id, family, timing_method)"
    " DO UPDATE SET trial_id = excluded.trial_id, updated_at = excluded.updated_at";

static void tuning_db_bind_group(sqlite3_stmt *statement, int64_t problem_id, int64_t device_id, const char *family,
                                 const char *timing_method) {
  sqlite3_bind_int64(statement, 1, problem_id);
  sqlite3_bind_int64(statement, 2, device_id);
  tuning_db_bind_text(statement, 3, family);
  tuning_db_bind_text(statement, 4, timing_method);
}

fj_status tuning_db_recompute_winner(tuning_db *db, int64_t problem_id, int64_t device_id, const char *family,
                                     const char *timing_method, const char *library_version,
                                     const char *llvm_version, int generator_version) {
  char library[128], llvm[128];
  if (!library_version) {
    sqlite3_stmt *choose = tuning_db_statement(db, sql_choose_versions);
    if (!choose)
      return FJ_IO;
    tuning_db_bind_group(choose, problem_id, device_id, family, timing_method);
    tuning_db_bind_text(choose, 5, tuning_db_library_version());
    tuning_db_bind_text(choose, 6, tuning_db_llvm_version());
    int rc = sqlite3_step(choose);
    if (rc == SQLITE_ROW) {
      snprintf(library, sizeof library, "%s", (const char *)sqlite3_column_text(choose, 0));
      snprintf(llvm, sizeof llvm, "%s", (const char *)sqlite3_column_text(choose, 1));
      generator_version = sqlite3_column_int(choose, 2);
    }
    fj_status status = rc == SQLITE_ROW || rc == SQLITE_DONE ? FJ_OK : tuning_db_fail(db, "choosing versions");
    tuning_db_statement_done(choose);
    if (rc != SQLITE_ROW)
      return status; /* no ok trial at all: nothing to choose */
    library_version = library;
    llvm_version = llvm;
  }
  sqlite3_stmt *best = tuning_db_statement(db, sql_best_of_versions);
  if (!best)
    return FJ_IO;
  tuning_db_bind_group(best, problem_id, device_id, family, timing_method);
  tuning_db_bind_text(best, 5, library_version);
  tuning_db_bind_text(best, 6, llvm_version);
  sqlite3_bind_int(best, 7, generator_version);
  int rc = sqlite3_step(best);
  int64_t trial_id = rc == SQLITE_ROW ? sqlite3_column_int64(best, 0) : 0;
  fj_status status = rc == SQLITE_ROW || rc == SQLITE_DONE ? FJ_OK : tuning_db_fail(db, "finding the best trial");
  tuning_db_statement_done(best);
  if (status != FJ_OK || trial_id == 0)
    return status; /* an older winner stays: a hint from another version beats none */
  sqlite3_stmt *put = tuning_db_statement(db, sql_winner_put);
  if (!put)
    return FJ_IO;
  tuning_db_bind_group(put, problem_id, device_id, family, timing_method);
  sqlite3_bind_int64(put, 5, trial_id);
  sqlite3_bind_int64(put, 6, (int64_t)time(NULL));
  return tuning_db_step_once(db, put, "writing a winner");
}

fj_status tuning_db_update_winner(tuning_db *db, const char *fingerprint, const char *problem_key,
                                  const char *family, const char *timing_method, const char *library_version,
                                  const char *llvm_version, int generator_version) {
  const char *missing = !db ? "db" : !fingerprint ? "fingerprint" : !problem_key ? "problem_key"
                        : !family ? "family" : !timing_method ? "timing_method" : !library_version ? "library_version"
                        : !llvm_version ? "llvm_version" : NULL;
  if (missing)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_update_winner: %s is NULL", missing);
  tuning_db_lock(db);
  int64_t device_id = 0, problem_id = 0;
  fj_status status = tuning_db_begin(db);
  if (status == FJ_OK)
    status = tuning_db_find_id(db, sql_device_id, fingerprint, &device_id);
  if (status == FJ_OK)
    status = tuning_db_find_id(db, sql_problem_id, problem_key, &problem_id);
  if (status == FJ_OK && device_id && problem_id)
    status = tuning_db_recompute_winner(db, problem_id, device_id, family, timing_method, library_version,
                                        llvm_version, generator_version);
  if (status == FJ_OK)
    status = tuning_db_commit(db);
  else
    tuning_db_rollback(db);
  tuning_db_unlock(db);
  return status;
}

/* ---- lookup ----------------------------------------------------------------------------------- */

#define TUNING_DB_WINNER_SELECT                                                                          \
  "SELECT p.key, t.config, t.median_ms, t.library_version, t.llvm_version, t.generator_version,"         \
  " p.seqlen_bucket FROM winners w JOIN problems p ON p.id = w.problem_id"                                \
  " JOIN devices d ON d.id = w.device_id JOIN trials t ON t.id = w.trial_id"
static const char sql_winner_exact[] = TUNING_DB_WINNER_SELECT
    " WHERE d.fingerprint = ?1 AND p.key = ?2 AND w.family = ?3 AND w.timing_method = ?4";
/* Equal distance: the longer bucket, whose tiles were measured on more work per launch. */
static const char sql_winner_nearest[] = TUNING_DB_WINNER_SELECT
    " WHERE d.fingerprint = ?1 AND p.base_key = ?2 AND w.family = ?3 AND w.timing_method = ?4"
    " AND p.seqlen_bucket IS NOT NULL ORDER BY abs(p.seqlen_bucket - ?5), p.seqlen_bucket DESC LIMIT 1";

int tuning_db_lookup_winner_at(tuning_db *db, const char *fingerprint, const char *problem_key,
                               const char *family, const char *timing_method, const char *library_version,
                               const char *llvm_version, int generator_version, tuning_winner *out) {
  if (out)
    memset(out, 0, sizeof *out);
  if (!db || !fingerprint || !problem_key || !family || !timing_method || !out) {
    core_error(FJ_INVALID_ARGUMENT, "tuning_db_lookup_winner: an argument is NULL");
    return 0;
  }
  tuning_db_key key;
  if (tuning_db_parse_key(problem_key, &key) != 0)
    return 0;
  tuning_db_lock(db);
  sqlite3_stmt *statement = tuning_db_statement(db, key.bucket >= 0 ? sql_winner_nearest : sql_winner_exact);
  int found = 0;
  if (statement) {
    tuning_db_bind_text(statement, 1, fingerprint);
    tuning_db_bind_text(statement, 2, key.bucket >= 0 ? key.base : problem_key);
    tuning_db_bind_text(statement, 3, family);
    tuning_db_bind_text(statement, 4, timing_method);
    if (key.bucket >= 0)
      sqlite3_bind_int(statement, 5, key.bucket);
    int rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
      found = 1;
      snprintf(out->problem_key, sizeof out->problem_key, "%s", (const char *)sqlite3_column_text(statement, 0));
      snprintf(out->config, sizeof out->config, "%s", (const char *)sqlite3_column_text(statement, 1));
      out->median_ms = sqlite3_column_double(statement, 2);
      snprintf(out->library_version, sizeof out->library_version, "%s",
               (const char *)sqlite3_column_text(statement, 3));
      snprintf(out->llvm_version, sizeof out->llvm_version, "%s", (const char *)sqlite3_column_text(statement, 4));
      out->generator_version = sqlite3_column_int(statement, 5);
      out->seqlen_bucket = sqlite3_column_type(statement, 6) == SQLITE_NULL ? -1 : sqlite3_column_int(statement, 6);
      out->exact = key.bucket < 0 || out->seqlen_bucket == key.bucket;
      out->current_versions = strcmp(out->library_version, library_version ? library_version : "") == 0 &&
                              strcmp(out->llvm_version, llvm_version ? llvm_version : "") == 0 &&
                              (generator_version < 0 || generator_version == out->generator_version);
    } else if (rc != SQLITE_DONE) {
      tuning_db_fail(db, "looking up a winner");
      core_log(LOG_WARN, "%s; using the default configuration", fj_last_error());
    }
    tuning_db_statement_done(statement);
  } else {
    core_log(LOG_WARN, "%s; using the default configuration", fj_last_error());
  }
  tuning_db_unlock(db);
  return found;
}

int tuning_db_lookup_winner(tuning_db *db, const char *fingerprint, const char *problem_key,
                            const char *family, const char *timing_method, tuning_winner *out) {
  return tuning_db_lookup_winner_at(db, fingerprint, problem_key, family, timing_method,
                                    tuning_db_library_version(), tuning_db_llvm_version(), -1, out);
}
