/* tuning_db_export.c: the tuning database seen from outside: export (JSON or CSV; one read transaction,
 * so a tuner writing meanwhile never produces a half-updated file), the listings behind `flashjit cache
 * list|show`, pruning and clearing. The import of an export lives in tuning_db_import.c. */
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "core/error.h"

/* ---- export ----------------------------------------------------------------------------------- */

static const char sql_export_trials[] =
    "SELECT p.key, d.fingerprint, d.backend, d.name, d.arch, d.compute_units, d.memory_bytes, d.driver_version,"
    " t.family, t.config, t.timing_method, t.batch, t.seqlen_q, t.seqlen_kv, t.outcome, t.median_ms, t.min_ms,"
    " t.max_ms, t.repeats, t.rel_err, t.message, t.library_version, t.llvm_version, t.generator_version,"
    " t.created_at FROM trials t JOIN problems p ON p.id = t.problem_id JOIN devices d ON d.id = t.device_id"
    " ORDER BY t.id";
enum {
  COL_PROBLEM, COL_FINGERPRINT, COL_BACKEND, COL_NAME, COL_ARCH, COL_UNITS, COL_MEMORY, COL_DRIVER, COL_FAMILY,
  COL_CONFIG, COL_TIMING, COL_BATCH, COL_SEQLEN_Q, COL_SEQLEN_KV, COL_OUTCOME, COL_MEDIAN, COL_MIN, COL_MAX,
  COL_REPEATS, COL_REL_ERR, COL_MESSAGE, COL_LIBRARY, COL_LLVM, COL_GENERATOR, COL_CREATED, COL_COUNT
};
static const char *const tuning_db_csv_header[COL_COUNT] = {
    "problem", "device", "backend", "name", "arch", "compute_units", "memory_bytes", "driver_version", "family",
    "config", "timing_method", "batch", "seqlen_q", "seqlen_kv", "outcome", "median_ms", "min_ms", "max_ms",
    "repeats", "rel_err", "message", "library_version", "llvm_version", "generator_version", "created_at"};
static const char sql_export_winners[] =
    "SELECT p.key, d.fingerprint, w.family, w.timing_method, t.config, t.median_ms, t.library_version,"
    " t.llvm_version, t.generator_version FROM winners w JOIN problems p ON p.id = w.problem_id"
    " JOIN devices d ON d.id = w.device_id JOIN trials t ON t.id = w.trial_id ORDER BY d.fingerprint, p.key,"
    " w.family, w.timing_method";

static void tuning_db_json_string(FILE *out, const char *text) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", out); break;
    case '\\': fputs("\\\\", out); break;
    case '\n': fputs("\\n", out); break;
    case '\r': fputs("\\r", out); break;
    case '\t': fputs("\\t", out); break;
    default:
      if (*p < 0x20)
        fprintf(out, "\\u%04x", *p);
      else
        fputc(*p, out);
    }
  }
  fputc('"', out);
}

/* The shortest of %.15g / %.17g that reads back as the same double: 4.1, not 4.0999999999999996. */
static void tuning_db_write_real(FILE *out, double value) {
  char text[40];
  snprintf(text, sizeof text, "%.15g", value);
  if (strtod(text, NULL) != value)
    snprintf(text, sizeof text, "%.17g", value);
  fputs(text, out);
}

/* JSON has no infinity; 1e999 reads back as one in every strtod (an unmeasurable error is +inf). */
static void tuning_db_json_real(FILE *out, sqlite3_stmt *statement, int column) {
  if (sqlite3_column_type(statement, column) == SQLITE_NULL) {
    fputs("null", out);
    return;
  }
  double value = sqlite3_column_double(statement, column);
  if (isnan(value))
    fputs("null", out);
  else if (isinf(value))
    fputs(value > 0 ? "1e999" : "-1e999", out);
  else
    tuning_db_write_real(out, value);
}

static void tuning_db_json_trial(FILE *out, sqlite3_stmt *s) {
  fputs("{\"problem\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_PROBLEM));
  fputs(",\"device\":{\"fingerprint\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_FINGERPRINT));
  fputs(",\"backend\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_BACKEND));
  fputs(",\"name\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_NAME));
  fputs(",\"arch\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_ARCH));
  fprintf(out, ",\"compute_units\":%d,\"memory_bytes\":%" PRId64 ",\"driver_version\":",
          sqlite3_column_int(s, COL_UNITS), (int64_t)sqlite3_column_int64(s, COL_MEMORY));
  tuning_db_json_string(out, tuning_db_column(s, COL_DRIVER));
  fputs("},\"family\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_FAMILY));
  fputs(",\"config\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_CONFIG));
  fputs(",\"timing_method\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_TIMING));
  fprintf(out, ",\"sizes\":{\"batch\":%" PRId64 ",\"seqlen_q\":%" PRId64 ",\"seqlen_kv\":%" PRId64 "}",
          (int64_t)sqlite3_column_int64(s, COL_BATCH), (int64_t)sqlite3_column_int64(s, COL_SEQLEN_Q),
          (int64_t)sqlite3_column_int64(s, COL_SEQLEN_KV));
  fputs(",\"outcome\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_OUTCOME));
  fputs(",\"timings\":{\"median_ms\":", out);
  tuning_db_json_real(out, s, COL_MEDIAN);
  fputs(",\"min_ms\":", out);
  tuning_db_json_real(out, s, COL_MIN);
  fputs(",\"max_ms\":", out);
  tuning_db_json_real(out, s, COL_MAX);
  fprintf(out, ",\"repeats\":%d},\"rel_err\":", sqlite3_column_int(s, COL_REPEATS));
  tuning_db_json_real(out, s, COL_REL_ERR);
  fputs(",\"message\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_MESSAGE));
  fputs(",\"library_version\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_LIBRARY));
  fputs(",\"llvm_version\":", out);
  tuning_db_json_string(out, tuning_db_column(s, COL_LLVM));
  fprintf(out, ",\"generator_version\":%d,\"created_at\":%" PRId64 "}", sqlite3_column_int(s, COL_GENERATOR),
          (int64_t)sqlite3_column_int64(s, COL_CREATED));
}

static void tuning_db_csv_field(FILE *out, const char *text) {
  if (!strpbrk(text, ",\"\n\r")) {
    fputs(text, out);
    return;
  }
  fputc('"', out);
  for (const char *p = text; *p; p++) {
    if (*p == '"')
      fputc('"', out);
    fputc(*p, out);
  }
  fputc('"', out);
}

static void tuning_db_csv_trial(FILE *out, sqlite3_stmt *s) {
  for (int column = 0; column < COL_COUNT; column++) {
    if (column)
      fputc(',', out);
    int type = sqlite3_column_type(s, column);
    if (type == SQLITE_FLOAT) {
      double value = sqlite3_column_double(s, column);
      if (isinf(value))
        fputs(value > 0 ? "inf" : "-inf", out);
      else
        tuning_db_write_real(out, value);
    } else if (type != SQLITE_NULL) {
      tuning_db_csv_field(out, tuning_db_column(s, column));
    }
  }
  fputc('\n', out);
}

static void tuning_db_json_winner(FILE *out, sqlite3_stmt *s) {
  fputs("{\"problem\":", out);
  tuning_db_json_string(out, tuning_db_column(s, 0));
  fputs(",\"device\":", out);
  tuning_db_json_string(out, tuning_db_column(s, 1));
  fputs(",\"family\":", out);
  tuning_db_json_string(out, tuning_db_column(s, 2));
  fputs(",\"timing_method\":", out);
  tuning_db_json_string(out, tuning_db_column(s, 3));
  fputs(",\"config\":", out);
  tuning_db_json_string(out, tuning_db_column(s, 4));
  fputs(",\"median_ms\":", out);
  tuning_db_json_real(out, s, 5);
  fputs(",\"library_version\":", out);
  tuning_db_json_string(out, tuning_db_column(s, 6));
  fputs(",\"llvm_version\":", out);
  tuning_db_json_string(out, tuning_db_column(s, 7));
  fprintf(out, ",\"generator_version\":%d}", sqlite3_column_int(s, 8));
}

/* Steps a statement, calling write for each row with a separator between rows. */
static fj_status tuning_db_export_rows(tuning_db *db, FILE *out, const char *sql, int json,
                                       void (*write)(FILE *, sqlite3_stmt *)) {
  sqlite3_stmt *statement = tuning_db_statement(db, sql);
  if (!statement)
    return FJ_IO;
  int rc, rows = 0;
  while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
    if (json)
      fputs(rows ? ",\n" : "\n", out);
    write(out, statement);
    rows++;
  }
  fj_status status = rc == SQLITE_DONE ? FJ_OK : tuning_db_fail(db, "reading rows to export");
  tuning_db_statement_done(statement);
  if (json && rows)
    fputc('\n', out);
  return status;
}

fj_status tuning_db_export(tuning_db *db, FILE *out, int json) {
  if (!db || !out)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_export: %s is NULL", !db ? "db" : "out");
  /* %g follows LC_NUMERIC: a host program with a comma locale would otherwise write "0,5". */
  locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (!c_locale)
    return core_error(FJ_OUT_OF_MEMORY, "tuning_db_export: cannot create the C locale");
  locale_t previous = uselocale(c_locale);
  tuning_db_lock(db);
  fj_status status = tuning_db_exec(db, "BEGIN", "starting the export's snapshot");
  if (status == FJ_OK) {
    if (json) {
      fprintf(out, "{\"format\":\"%s\",\"schema\":%d,\"exported_by\":", TUNING_DB_FORMAT,
              TUNING_DB_SCHEMA_VERSION);
      tuning_db_json_string(out, fj_version_string());
      fprintf(out, ",\"exported_at\":%lld,\n\"trials\":[", (long long)time(NULL));
      status = tuning_db_export_rows(db, out, sql_export_trials, 1, tuning_db_json_trial);
      fputs("],\n\"winners\":[", out);
      if (status == FJ_OK)
        status = tuning_db_export_rows(db, out, sql_export_winners, 1, tuning_db_json_winner);
      fputs("]}\n", out);
    } else {
      for (int column = 0; column < COL_COUNT; column++)
        fprintf(out, "%s%s", column ? "," : "", tuning_db_csv_header[column]);
      fputc('\n', out);
      status = tuning_db_export_rows(db, out, sql_export_trials, 0, tuning_db_csv_trial);
    }
    tuning_db_rollback(db); /* a read: nothing to commit */
  }
  tuning_db_unlock(db);
  uselocale(previous);
  freelocale(c_locale);
  if (status == FJ_OK && (fflush(out) != 0 || ferror(out)))
    status = core_error(FJ_IO, "tuning database %s: writing the export failed", db->path);
  return status;
}

/* ---- list / show ------------------------------------------------------------------------------ */

static const char sql_counts[] =
    "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM problems), (SELECT count(*) FROM trials),"
    " (SELECT count(*) FROM trials WHERE outcome = 'ok'), (SELECT count(*) FROM winners),"
    " (SELECT count(*) FROM claims)";
static const char sql_list_winners[] =
    "SELECT d.fingerprint, d.backend, d.name, d.arch, p.key, w.family, w.timing_method, t.config, t.median_ms,"
    " t.library_version, t.llvm_version, t.generator_version,"
    " (SELECT count(*) FROM trials x WHERE x.problem_id = w.problem_id AND x.device_id = w.device_id"
    "  AND x.family = w.family AND x.timing_method = w.timing_method),"
    /* the winner's confirmation (the tuner's last round), NULL without one */
    " (SELECT c.median_ms FROM trials c WHERE c.problem_id = t.problem_id AND c.device_id = t.device_id"
    "  AND c.family = t.family AND c.config = t.config AND c.timing_method = t.timing_method || '"
    TUNING_CONFIRM_SUFFIX "' AND c.outcome = 'ok' AND c.batch = t.batch AND c.seqlen_q = t.seqlen_q"
    "  AND c.seqlen_kv = t.seqlen_kv AND c.library_version = t.library_version"
    "  AND c.llvm_version = t.llvm_version AND c.generator_version = t.generator_version)"
    " FROM winners w JOIN problems p ON p.id = w.problem_id JOIN devices d ON d.id = w.device_id"
    " JOIN trials t ON t.id = w.trial_id ORDER BY d.fingerprint, p.base_key, p.seqlen_bucket, p.key, w.family,"
    " w.timing_method";
static const char sql_show[] =
    "SELECT p.key, d.fingerprint, t.family, t.timing_method, t.config, t.outcome, t.median_ms, t.min_ms, t.max_ms,"
    " t.repeats, t.rel_err, t.batch, t.seqlen_q, t.seqlen_kv, t.library_version, t.llvm_version,"
    " t.generator_version, t.message, EXISTS (SELECT 1 FROM winners w WHERE w.trial_id = t.id)"
    " FROM trials t JOIN problems p ON p.id = t.problem_id JOIN devices d ON d.id = t.device_id"
    " WHERE instr(p.key, ?1) > 0 ORDER BY d.fingerprint, p.key, t.family, t.timing_method, t.outcome <> 'ok',"
    " t.median_ms, t.id";

static int tuning_db_is_current(const char *library, const char *llvm) {
  return strcmp(library, tuning_db_library_version()) == 0 && strcmp(llvm, tuning_db_llvm_version()) == 0;
}

fj_status tuning_db_list(tuning_db *db, FILE *out) {
  if (!db || !out)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_list: %s is NULL", !db ? "db" : "out");
  tuning_db_lock(db);
  fj_status status = tuning_db_exec(db, "BEGIN", "starting a read");
  sqlite3_stmt *counts = status == FJ_OK ? tuning_db_statement(db, sql_counts) : NULL;
  if (counts) {
    if (sqlite3_step(counts) == SQLITE_ROW)
      fprintf(out, "tuning database %s (schema %d): %d devices, %d problems, %d trials (%d ok), %d winners, %d claims\n",
              db->path, db->schema_version, sqlite3_column_int(counts, 0), sqlite3_column_int(counts, 1),
              sqlite3_column_int(counts, 2), sqlite3_column_int(counts, 3), sqlite3_column_int(counts, 4),
              sqlite3_column_int(counts, 5));
    else
      status = tuning_db_fail(db, "counting rows");
    tuning_db_statement_done(counts);
  } else if (status == FJ_OK) {
    status = FJ_IO;
  }
  sqlite3_stmt *s = status == FJ_OK ? tuning_db_statement(db, sql_list_winners) : NULL;
  if (s) {
    char device[512] = "";
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (strcmp(device, tuning_db_column(s, 0)) != 0) {
        snprintf(device, sizeof device, "%s", tuning_db_column(s, 0));
        fprintf(out, "device %s: %s %s (%s)\n", device, tuning_db_column(s, 1), tuning_db_column(s, 2),
                tuning_db_column(s, 3));
      }
      const char *library = tuning_db_column(s, 9), *llvm = tuning_db_column(s, 10);
      char confirmed[48] = "";
      if (sqlite3_column_type(s, 13) != SQLITE_NULL)
        snprintf(confirmed, sizeof confirmed, ", confirmed %.4f ms", sqlite3_column_double(s, 13));
      fprintf(out, "  %s\n    %s %s: %s  %.4f ms%s  (of %d trials; flashjit %s, LLVM %s, generator %d)%s\n",
              tuning_db_column(s, 4), tuning_db_column(s, 5), tuning_db_column(s, 6), tuning_db_column(s, 7),
              sqlite3_column_double(s, 8), confirmed, sqlite3_column_int(s, 12), library, llvm,
              sqlite3_column_int(s, 11), tuning_db_is_current(library, llvm) ? "" : "  [other versions: re-tune]");
    }
    if (rc != SQLITE_DONE)
      status = tuning_db_fail(db, "listing winners");
    tuning_db_statement_done(s);
  } else if (status == FJ_OK) {
    status = FJ_IO;
  }
  tuning_db_rollback(db);
  tuning_db_unlock(db);
  if (status == FJ_OK && ferror(out))
    status = core_error(FJ_IO, "tuning database %s: writing the listing failed", db->path);
  return status;
}

fj_status tuning_db_show(tuning_db *db, const char *problem_key_substring, FILE *out) {
  if (!db || !out)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_show: %s is NULL", !db ? "db" : "out");
  const char *pattern = problem_key_substring ? problem_key_substring : "";
  tuning_db_lock(db);
  sqlite3_stmt *s = tuning_db_statement(db, sql_show);
  fj_status status = s ? FJ_OK : FJ_IO;
  if (s) {
    tuning_db_bind_text(s, 1, pattern);
    char heading[1024] = "";
    int rc, rows = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      char current[1024];
      snprintf(current, sizeof current, "%s on %s", tuning_db_column(s, 0), tuning_db_column(s, 1));
      if (strcmp(current, heading) != 0) {
        snprintf(heading, sizeof heading, "%s", current);
        fprintf(out, "%s\n", heading);
      }
      fprintf(out, "  %s %-13s %-40s", sqlite3_column_int(s, 18) ? "*" : " ", tuning_db_column(s, 5),
              tuning_db_column(s, 4));
      if (strcmp(tuning_db_column(s, 5), "ok") == 0)
        fprintf(out, " median %.4f ms (min %.4f, max %.4f, %d repeats)", sqlite3_column_double(s, 6),
                sqlite3_column_double(s, 7), sqlite3_column_double(s, 8), sqlite3_column_int(s, 9));
      char rel_err[32] = "unchecked";
      if (sqlite3_column_type(s, 10) != SQLITE_NULL && sqlite3_column_double(s, 10) >= 0)
        snprintf(rel_err, sizeof rel_err, "%.3g", sqlite3_column_double(s, 10));
      fprintf(out, " %s %s b=%lld sq=%lld skv=%lld rel_err=%s flashjit %s LLVM %s gen %d", tuning_db_column(s, 2),
              tuning_db_column(s, 3), (long long)sqlite3_column_int64(s, 11), (long long)sqlite3_column_int64(s, 12),
              (long long)sqlite3_column_int64(s, 13), rel_err, tuning_db_column(s, 14), tuning_db_column(s, 15),
              sqlite3_column_int(s, 16));
      if (*tuning_db_column(s, 17))
        fprintf(out, ": %s", tuning_db_column(s, 17));
      fputc('\n', out);
      rows++;
    }
    if (rc != SQLITE_DONE)
      status = tuning_db_fail(db, "showing trials");
    else if (rows == 0)
      fprintf(out, "no problem key contains '%s'\n", pattern);
    tuning_db_statement_done(s);
  }
  tuning_db_unlock(db);
  if (status == FJ_OK && ferror(out))
    status = core_error(FJ_IO, "tuning database %s: writing the listing failed", db->path);
  return status;
}

/* ---- prune / clear ---------------------------------------------------------------------------- */

static const char sql_prune_trials[] =
    "DELETE FROM trials WHERE id NOT IN (SELECT trial_id FROM winners)"
    " AND ((?1 > 0 AND created_at < ?2) OR (?3 AND (library_version <> ?4 OR llvm_version <> ?5)))";
static const char sql_prune_claims[] = "DELETE FROM claims WHERE ?1 > 0 AND claimed_at < ?2";
static const char sql_prune_problems[] =
    "DELETE FROM problems WHERE id NOT IN (SELECT problem_id FROM trials)"
    " AND id NOT IN (SELECT problem_id FROM winners)";
static const char sql_prune_devices[] =
    "DELETE FROM devices WHERE id NOT IN (SELECT device_id FROM trials) AND id NOT IN (SELECT device_id FROM winners)";

static fj_status tuning_db_prune_step(tuning_db *db, const char *sql, int64_t max_age, int64_t cutoff, int older,
                                      int *changed) {
  sqlite3_stmt *s = tuning_db_statement(db, sql);
  if (!s)
    return FJ_IO;
  int parameters = sqlite3_bind_parameter_count(s);
  if (parameters >= 2) {
    sqlite3_bind_int64(s, 1, max_age);
    sqlite3_bind_int64(s, 2, cutoff);
  }
  if (parameters >= 5) {
    sqlite3_bind_int(s, 3, older != 0);
    tuning_db_bind_text(s, 4, tuning_db_library_version());
    tuning_db_bind_text(s, 5, tuning_db_llvm_version());
  }
  int rc = sqlite3_step(s);
  if (changed)
    *changed = rc == SQLITE_DONE ? sqlite3_changes(db->sqlite) : 0;
  fj_status status = rc == SQLITE_DONE ? FJ_OK : tuning_db_fail(db, "pruning");
  tuning_db_statement_done(s);
  return status;
}

fj_status tuning_db_prune(tuning_db *db, int64_t max_age_seconds, int older_versions, int *removed) {
  if (removed)
    *removed = 0;
  if (!db)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_prune: db is NULL");
  int64_t cutoff = (int64_t)time(NULL) - (max_age_seconds > 0 ? max_age_seconds : 0);
  int count = 0;
  tuning_db_lock(db);
  fj_status status = tuning_db_begin(db);
  if (status == FJ_OK)
    status = tuning_db_prune_step(db, sql_prune_trials, max_age_seconds, cutoff, older_versions, &count);
  if (status == FJ_OK)
    status = tuning_db_prune_step(db, sql_prune_claims, max_age_seconds, cutoff, 0, NULL);
  if (status == FJ_OK)
    status = tuning_db_prune_step(db, sql_prune_problems, 0, 0, 0, NULL);
  if (status == FJ_OK)
    status = tuning_db_prune_step(db, sql_prune_devices, 0, 0, 0, NULL);
  if (status == FJ_OK)
    status = tuning_db_commit(db);
  else
    tuning_db_rollback(db);
  tuning_db_unlock(db);
  if (status == FJ_OK && removed)
    *removed = count;
  return status;
}

fj_status tuning_db_clear(tuning_db *db) {
  if (!db)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_clear: db is NULL");
  tuning_db_lock(db);
  fj_status status = tuning_db_begin(db);
  if (status == FJ_OK)
    status = tuning_db_exec(db,
                            "DELETE FROM winners; DELETE FROM claims; DELETE FROM trials; DELETE FROM problems;"
                            " DELETE FROM devices;",
                            "clearing");
  if (status == FJ_OK)
    status = tuning_db_commit(db);
  else
    tuning_db_rollback(db);
  tuning_db_unlock(db);
  return status;
}
