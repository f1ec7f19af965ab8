/* tuning_db_util.c: the small pieces every tuning_db_*.c file uses: the prepared-statement cache (one
 * statement per SQL text, prepared once per handle), errors that carry SQLite's own message, write
 * transactions, outcome names, the parser that takes a problem key apart into columns, and the argument
 * checks shared by recording and importing, so that an import cannot store what a record would refuse. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "core/error.h"

#ifndef FJ_VERSION_STRING
#define FJ_VERSION_STRING "unknown"
#endif
#ifndef FJ_LLVM_VERSION_STRING
#define FJ_LLVM_VERSION_STRING "unknown"
#endif

/* ---- shared helpers --------------------------------------------------------------------------- */

const char *tuning_db_library_version(void) { return FJ_VERSION_STRING; }
const char *tuning_db_llvm_version(void) { return FJ_LLVM_VERSION_STRING; }

static const char *const tuning_db_outcome_names[TRIAL_OUTCOME_COUNT] = {
    "ok", "compile_error", "launch_error", "timeout", "wrong_result", "crash"};

const char *tuning_outcome_name(trial_outcome outcome) {
  if ((int)outcome < 0 || outcome >= TRIAL_OUTCOME_COUNT)
    return "unknown";
  return tuning_db_outcome_names[outcome];
}

int tuning_outcome_parse(const char *name, trial_outcome *out) {
  if (!name)
    return 0;
  for (int i = 0; i < TRIAL_OUTCOME_COUNT; i++) {
    if (strcmp(name, tuning_db_outcome_names[i]) == 0) {
      if (out)
        *out = (trial_outcome)i;
      return 1;
    }
  }
  return 0;
}

void tuning_db_lock(tuning_db *db) { pthread_mutex_lock(&db->mutex); }
void tuning_db_unlock(tuning_db *db) { pthread_mutex_unlock(&db->mutex); }

fj_status tuning_db_fail(tuning_db *db, const char *what) {
  return core_error(FJ_IO, "tuning database %s: %s: %s (SQLite code %d)", db->path, what,
                    sqlite3_errmsg(db->sqlite), sqlite3_extended_errcode(db->sqlite));
}

sqlite3_stmt *tuning_db_statement(tuning_db *db, const char *sql) {
  for (int i = 0; i < db->statement_count; i++)
    if (db->statements[i].sql == sql)
      return db->statements[i].statement;
  if (db->statement_count == TUNING_DB_MAX_STATEMENTS) {
    core_error(FJ_INTERNAL, "tuning database: more than %d distinct statements; raise TUNING_DB_MAX_STATEMENTS",
               TUNING_DB_MAX_STATEMENTS);
    return NULL;
  }
  sqlite3_stmt *statement = NULL;
  if (sqlite3_prepare_v3(db->sqlite, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, NULL) != SQLITE_OK) {
    tuning_db_fail(db, "preparing a statement");
    return NULL;
  }
  db->statements[db->statement_count].sql = sql;
  db->statements[db->statement_count].statement = statement;
  db->statement_count++;
  return statement;
}

void tuning_db_statement_done(sqlite3_stmt *statement) {
  if (statement) {
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
  }
}

const char *tuning_db_column(sqlite3_stmt *statement, int column) {
  const unsigned char *text = sqlite3_column_text(statement, column);
  return text ? (const char *)text : "";
}

int tuning_db_bind_text(sqlite3_stmt *statement, int index, const char *text) {
  return sqlite3_bind_text(statement, index, text ? text : "", -1, SQLITE_STATIC);
}

fj_status tuning_db_exec(tuning_db *db, const char *sql, const char *what) {
  if (sqlite3_exec(db->sqlite, sql, NULL, NULL, NULL) != SQLITE_OK)
    return tuning_db_fail(db, what);
  return FJ_OK;
}

fj_status tuning_db_begin(tuning_db *db) {
  return tuning_db_exec(db, "BEGIN IMMEDIATE", "starting a write transaction");
}

fj_status tuning_db_commit(tuning_db *db) {
  fj_status status = tuning_db_exec(db, "COMMIT", "committing");
  if (status != FJ_OK)
    tuning_db_rollback(db);
  return status;
}

void tuning_db_rollback(tuning_db *db) {
  if (!sqlite3_get_autocommit(db->sqlite))
    sqlite3_exec(db->sqlite, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- problem keys ----------------------------------------------------------------------------- */

static int tuning_db_parse_int(const char *text, int *out) {
  if (!*text)
    return 0;
  char *end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (*end || errno || value < -1000000000L || value > 1000000000L)
    return 0;
  *out = (int)value;
  return 1;
}

int tuning_db_parse_key(const char *key, tuning_db_key *out) {
  memset(out, 0, sizeof *out);
  out->head_dim = out->heads = out->kv_heads = out->causal = out->lse = out->dcontig = out->bucket = -1;
  size_t length = key ? strlen(key) : 0;
  if (length == 0 || length >= TUNING_DB_KEY_MAX)
    return -1;
  char copy[TUNING_DB_KEY_MAX];
  memcpy(copy, key, length + 1);
  size_t base_length = 0;
  int first = 1;
  char *save = NULL;
  for (char *token = strtok_r(copy, " ", &save); token; token = strtok_r(NULL, " ", &save)) {
    int value;
    if (strncmp(token, "sq<=2^", 6) == 0 && tuning_db_parse_int(token + 6, &value) && value >= 0 &&
        value < 64 && out->bucket < 0) {
      out->bucket = value;
      continue; /* the one token left out of base */
    }
    if (first) {
      snprintf(out->kind, sizeof out->kind, "%s", token);
    } else {
      char *equals = strchr(token, '=');
      if (equals) {
        *equals = '\0';
        const char *name = token, *text = equals + 1;
        if (strcmp(name, "dtype") == 0)
          snprintf(out->dtype, sizeof out->dtype, "%s", text);
        else if (strcmp(name, "d") == 0 && tuning_db_parse_int(text, &value))
          out->head_dim = value;
        else if (strcmp(name, "h") == 0 && tuning_db_parse_int(text, &value))
          out->heads = value;
        else if (strcmp(name, "hk") == 0 && tuning_db_parse_int(text, &value))
          out->kv_heads = value;
        else if (strcmp(name, "causal") == 0 && tuning_db_parse_int(text, &value))
          out->causal = value;
        else if (strcmp(name, "lse") == 0 && tuning_db_parse_int(text, &value))
          out->lse = value;
        else if (strcmp(name, "dcontig") == 0 && tuning_db_parse_int(text, &value))
          out->dcontig = value;
        *equals = '=';
      }
    }
    first = 0;
    /* Tokens rejoined with single spaces: fits, since base is never longer than the key. */
    size_t n = strlen(token);
    if (base_length)
      out->base[base_length++] = ' ';
    memcpy(out->base + base_length, token, n);
    base_length += n;
    out->base[base_length] = '\0';
  }
  return first && out->bucket < 0 ? -1 : 0; /* all spaces */
}

/* ---- argument checks -------------------------------------------------------------------------- */

static int tuning_db_text_ok(const char *text) { return text && *text; }

fj_status tuning_db_check_device(const tuning_device *device, const char *who) {
  if (!device)
    return core_error(FJ_INVALID_ARGUMENT, "%s: device is NULL", who);
  if (!tuning_db_text_ok(device->fingerprint))
    return core_error(FJ_INVALID_ARGUMENT, "%s: device.fingerprint is NULL or empty", who);
  return FJ_OK;
}

fj_status tuning_db_check_identity(const tuning_trial *trial, const char *who) {
  if (!trial)
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial is NULL", who);
  const char *missing = !tuning_db_text_ok(trial->problem_key)       ? "problem_key"
                        : !tuning_db_text_ok(trial->family)          ? "family"
                        : !tuning_db_text_ok(trial->config)          ? "config"
                        : !tuning_db_text_ok(trial->timing_method)   ? "timing_method"
                        : !tuning_db_text_ok(trial->library_version) ? "library_version"
                        : !tuning_db_text_ok(trial->llvm_version)    ? "llvm_version"
                                                                     : NULL;
  if (missing)
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial.%s is NULL or empty", who, missing);
  tuning_db_key key;
  if (tuning_db_parse_key(trial->problem_key, &key) != 0)
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial.problem_key of %zu bytes is blank or over %d bytes", who,
                      strlen(trial->problem_key), TUNING_DB_KEY_MAX - 1);
  if (strlen(trial->config) >= TUNING_DB_CONFIG_MAX)
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial.config of %zu bytes is over %d bytes", who,
                      strlen(trial->config), TUNING_DB_CONFIG_MAX - 1);
  if (trial->batch < 0 || trial->seqlen_q < 0 || trial->seqlen_kv < 0)
    return core_error(FJ_INVALID_ARGUMENT,
                      "%s: trial sizes must be >= 0 (batch=%" PRId64 " seqlen_q=%" PRId64 " seqlen_kv=%" PRId64 ")",
                      who, trial->batch, trial->seqlen_q, trial->seqlen_kv);
  return FJ_OK;
}

fj_status tuning_db_check_trial(const tuning_trial *trial, const char *who) {
  fj_status status = tuning_db_check_identity(trial, who);
  if (status != FJ_OK)
    return status;
  if ((int)trial->outcome < 0 || trial->outcome >= TRIAL_OUTCOME_COUNT)
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial.outcome=%d is not a trial_outcome", who, (int)trial->outcome);
  if (trial->repeats < 0)
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial.repeats=%d must be >= 0", who, trial->repeats);
  if (!(isfinite(trial->median_ms) && trial->median_ms >= 0) || !(isfinite(trial->min_ms) && trial->min_ms >= 0) ||
      !(isfinite(trial->max_ms) && trial->max_ms >= 0))
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial times must be finite and >= 0 (median=%g min=%g max=%g)", who,
                      trial->median_ms, trial->min_ms, trial->max_ms);
  if (trial->outcome == TRIAL_OK && !(trial->min_ms <= trial->median_ms && trial->median_ms <= trial->max_ms))
    return core_error(FJ_INVALID_ARGUMENT, "%s: an ok trial needs min <= median <= max (median=%g min=%g max=%g)",
                      who, trial->median_ms, trial->min_ms, trial->max_ms);
  if (trial->rel_err != trial->rel_err)
    return core_error(FJ_INVALID_ARGUMENT, "%s: trial.rel_err is NaN (use -1 for not checked, inf for a NaN output)",
                      who);
  return FJ_OK;
}
