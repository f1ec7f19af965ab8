/* tuning_db_import.c: merging an export from another machine or cache. The whole text is parsed first
 * (malformed JSON imports nothing); then every row is type-checked and passed through the same checks as
 * a recorded trial, bad rows are reported by index, problem and field and skipped, and the rest is merged
 * in one transaction together with the winners it changes. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache/json_reader.h"
#include "cache/tuning_db.h"
#include "cache/tuning_db_internal.h"
#include "core/error.h"
#include "core/log.h"

/* ---- import ----------------------------------------------------------------------------------- */

/* One row's fields, read and type-checked; the first problem found goes to why. */
typedef struct tuning_db_import_row {
  const json_value *row;
  char why[320];
} tuning_db_import_row;

static int tuning_db_import_fail(tuning_db_import_row *r, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
static int tuning_db_import_fail(tuning_db_import_row *r, const char *format, ...) {
  if (r->why[0])
    return 0;
  va_list ap;
  va_start(ap, format);
  vsnprintf(r->why, sizeof r->why, format, ap);
  va_end(ap);
  return 0;
}

/* The member `name` of object `parent` (called `prefix` in messages), or NULL with why set. */
static const json_value *tuning_db_import_field(tuning_db_import_row *r, const json_value *parent,
                                                const char *prefix, const char *name, json_type type,
                                                int optional) {
  const json_value *value = json_get(parent, name);
  if (!value || (optional && value->type == JSON_NULL)) {
    if (!optional)
      tuning_db_import_fail(r, "field '%s%s' is missing", prefix, name);
    return NULL;
  }
  if (value->type != type) {
    tuning_db_import_fail(r, "field '%s%s' must be %s %s, not %s", prefix, name, type == JSON_OBJECT ? "an" : "a",
                          json_type_name(type), json_type_name(value->type));
    return NULL;
  }
  return value;
}

static const char *tuning_db_import_text(tuning_db_import_row *r, const json_value *parent, const char *prefix,
                                         const char *name, int optional) {
  const json_value *value = tuning_db_import_field(r, parent, prefix, name, JSON_STRING, optional);
  return value ? value->string : NULL;
}

static int tuning_db_import_integer(tuning_db_import_row *r, const json_value *parent, const char *prefix,
                                    const char *name, int64_t min, int64_t max, int64_t *out) {
  const json_value *value = tuning_db_import_field(r, parent, prefix, name, JSON_NUMBER, 0);
  if (!value)
    return 0;
  if (!value->is_integer || value->integer < min || value->integer > max)
    return tuning_db_import_fail(r, "field '%s%s' must be an integer in [%" PRId64 ", %" PRId64 "], not %.17g",
                                 prefix, name, min, max, value->number);
  *out = value->integer;
  return 1;
}

/* A number; null (and absence, when optional) gives fallback. */
static int tuning_db_import_real(tuning_db_import_row *r, const json_value *parent, const char *prefix,
                                 const char *name, int optional, double fallback, double *out) {
  const json_value *value = json_get(parent, name);
  if ((!value && optional) || (value && value->type == JSON_NULL)) {
    *out = fallback;
    return 1;
  }
  value = tuning_db_import_field(r, parent, prefix, name, JSON_NUMBER, 0);
  if (!value)
    return 0;
  *out = value->number;
  return 1;
}

/* Reads one row into device and trial (their strings point into the JSON tree); 0 with r->why set. */
static int tuning_db_import_read(tuning_db_import_row *r, tuning_device *device, tuning_trial *trial) {
  memset(device, 0, sizeof *device);
  memset(trial, 0, sizeof *trial);
  const json_value *row = r->row;
  if (row->type != JSON_OBJECT)
    return tuning_db_import_fail(r, "is %s %s, not an object", row->type == JSON_ARRAY ? "an" : "a",
                                 json_type_name(row->type));
  trial->problem_key = tuning_db_import_text(r, row, "", "problem", 0);
  const json_value *dev = tuning_db_import_field(r, row, "", "device", JSON_OBJECT, 0);
  int64_t units = 0, memory = 0, batch = 0, seqlen_q = 0, seqlen_kv = 0, repeats = 0, generator = 0, created = 0;
  if (dev) {
    device->fingerprint = tuning_db_import_text(r, dev, "device.", "fingerprint", 0);
    device->backend = tuning_db_import_text(r, dev, "device.", "backend", 0);
    device->name = tuning_db_import_text(r, dev, "device.", "name", 0);
    device->arch = tuning_db_import_text(r, dev, "device.", "arch", 0);
    device->driver_version = tuning_db_import_text(r, dev, "device.", "driver_version", 0);
    tuning_db_import_integer(r, dev, "device.", "compute_units", 0, INT32_MAX, &units);
    tuning_db_import_integer(r, dev, "device.", "memory_bytes", 0, INT64_MAX, &memory);
    device->compute_units = (int)units;
    device->memory_bytes = (uint64_t)memory;
  }
  trial->family = tuning_db_import_text(r, row, "", "family", 0);
  trial->config = tuning_db_import_text(r, row, "", "config", 0);
  trial->timing_method = tuning_db_import_text(r, row, "", "timing_method", 0);
  const json_value *sizes = tuning_db_import_field(r, row, "", "sizes", JSON_OBJECT, 0);
  if (sizes) {
    tuning_db_import_integer(r, sizes, "sizes.", "batch", 0, INT64_MAX, &batch);
    tuning_db_import_integer(r, sizes, "sizes.", "seqlen_q", 0, INT64_MAX, &seqlen_q);
    tuning_db_import_integer(r, sizes, "sizes.", "seqlen_kv", 0, INT64_MAX, &seqlen_kv);
  }
  const char *outcome = tuning_db_import_text(r, row, "", "outcome", 0);
  if (outcome && !tuning_outcome_parse(outcome, &trial->outcome))
    tuning_db_import_fail(r, "field 'outcome' has the unknown value '%.64s'", outcome);
  const json_value *timings = tuning_db_import_field(r, row, "", "timings", JSON_OBJECT, 0);
  if (timings) {
    /* A failed trial's times may be null; an ok trial's are checked below like a recorded one. */
    int required = !(outcome && trial->outcome != TRIAL_OK);
    tuning_db_import_real(r, timings, "timings.", "median_ms", !required, 0, &trial->median_ms);
    tuning_db_import_real(r, timings, "timings.", "min_ms", !required, 0, &trial->min_ms);
    tuning_db_import_real(r, timings, "timings.", "max_ms", !required, 0, &trial->max_ms);
    if (required && (!json_get(timings, "median_ms") || json_get(timings, "median_ms")->type == JSON_NULL))
      tuning_db_import_fail(r, "field 'timings.median_ms' is missing or null in an ok trial");
    tuning_db_import_integer(r, timings, "timings.", "repeats", 0, INT32_MAX, &repeats);
  }
  tuning_db_import_real(r, row, "", "rel_err", 1, -1, &trial->rel_err);
  trial->message = tuning_db_import_text(r, row, "", "message", 1);
  trial->library_version = tuning_db_import_text(r, row, "", "library_version", 0);
  trial->llvm_version = tuning_db_import_text(r, row, "", "llvm_version", 0);
  tuning_db_import_integer(r, row, "", "generator_version", INT32_MIN, INT32_MAX, &generator);
  if (json_get(row, "created_at"))
    tuning_db_import_integer(r, row, "", "created_at", 0, INT64_MAX, &created);
  trial->batch = batch;
  trial->seqlen_q = seqlen_q;
  trial->seqlen_kv = seqlen_kv;
  trial->repeats = (int)repeats;
  trial->generator_version = (int)generator;
  trial->created_at = created;
  if (!trial->message)
    trial->message = "";
  if (r->why[0])
    return 0;
  /* The same checks a recorded trial passes, so an import cannot store what record would refuse. */
  if (tuning_db_check_device(device, "device") != FJ_OK || tuning_db_check_trial(trial, "trial") != FJ_OK)
    return tuning_db_import_fail(r, "%s", fj_last_error());
  return 1;
}

static void tuning_db_import_report(FILE *report, size_t index, const json_value *row, const char *why) {
  const json_value *problem = json_get(row, "problem");
  const char *key = problem && problem->type == JSON_STRING ? problem->string : "no problem key";
  if (report)
    fprintf(report, "import: row %zu (%s) rejected: %s\n", index, key, why);
  else
    core_log(LOG_WARN, "tuning import: row %zu (%s) rejected: %s", index, key, why);
}

typedef struct tuning_db_group {
  int64_t problem_id, device_id;
  char *family, *timing_method;
} tuning_db_group;

static const char sql_max_trial_id[] = "SELECT coalesce(max(id), 0) FROM trials";
static const char sql_new_groups[] =
    "SELECT DISTINCT problem_id, device_id, family, timing_method FROM trials WHERE id > ?1";

/* Winners of every (problem, device, family, timing) that gained a trial: rows above the id that was
 * the maximum before the import are ours, since the write transaction keeps other writers out. */
static fj_status tuning_db_import_winners(tuning_db *db, int64_t first_new_id) {
  sqlite3_stmt *statement = tuning_db_statement(db, sql_new_groups);
  if (!statement)
    return FJ_IO;
  sqlite3_bind_int64(statement, 1, first_new_id);
  tuning_db_group *groups = NULL;
  size_t count = 0, capacity = 0;
  fj_status status = FJ_OK;
  int rc;
  while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
    if (count == capacity) {
      capacity = capacity ? capacity * 2 : 16;
      tuning_db_group *grown = realloc(groups, capacity * sizeof *groups);
      if (!grown) {
        status = core_error(FJ_OUT_OF_MEMORY, "tuning import: no memory for the winners to update");
        break;
      }
      groups = grown;
    }
    tuning_db_group *g = &groups[count];
    g->problem_id = sqlite3_column_int64(statement, 0);
    g->device_id = sqlite3_column_int64(statement, 1);
    g->family = strdup(tuning_db_column(statement, 2));
    g->timing_method = strdup(tuning_db_column(statement, 3));
    count++;
    if (!g->family || !g->timing_method) {
      status = core_error(FJ_OUT_OF_MEMORY, "tuning import: no memory for the winners to update");
      break;
    }
  }
  if (status == FJ_OK && rc != SQLITE_DONE)
    status = tuning_db_fail(db, "listing the winners to update");
  tuning_db_statement_done(statement);
  for (size_t i = 0; i < count && status == FJ_OK; i++)
    status = tuning_db_recompute_winner(db, groups[i].problem_id, groups[i].device_id, groups[i].family,
                                        groups[i].timing_method, NULL, NULL, 0);
  for (size_t i = 0; i < count; i++) {
    free(groups[i].family);
    free(groups[i].timing_method);
  }
  free(groups);
  return status;
}

static fj_status tuning_db_import_document(const json_value *root, const json_value **trials) {
  if (root->type != JSON_OBJECT)
    return core_error(FJ_INVALID_ARGUMENT, "import: the document is %s, not an object", json_type_name(root->type));
  const json_value *format = json_get(root, "format");
  if (!format || format->type != JSON_STRING || strcmp(format->string, TUNING_DB_FORMAT) != 0)
    return core_error(FJ_INVALID_ARGUMENT, "import: not a flashjit tuning export (\"format\" is not \"%s\")",
                      TUNING_DB_FORMAT);
  const json_value *schema = json_get(root, "schema");
  if (!schema || schema->type != JSON_NUMBER || !schema->is_integer)
    return core_error(FJ_INVALID_ARGUMENT, "import: \"schema\" is missing or not an integer");
  if (schema->integer < 1 || schema->integer > TUNING_DB_SCHEMA_VERSION)
    return core_error(FJ_UNSUPPORTED, "import: the export has schema %" PRId64 "; this flashjit (%s) reads up to %d",
                      schema->integer, fj_version_string(), TUNING_DB_SCHEMA_VERSION);
  *trials = json_get(root, "trials");
  if (!*trials || (*trials)->type != JSON_ARRAY)
    return core_error(FJ_INVALID_ARGUMENT, "import: \"trials\" is missing or not an array");
  return FJ_OK;
}

fj_status tuning_db_import(tuning_db *db, const char *json_text, const char *only_fingerprint, int *imported,
                           int *skipped, int *rejected, FILE *report) {
  int counts[3] = {0, 0, 0}; /* imported, skipped, rejected */
  if (imported)
    *imported = 0;
  if (skipped)
    *skipped = 0;
  if (rejected)
    *rejected = 0;
  if (!db || !json_text)
    return core_error(FJ_INVALID_ARGUMENT, "tuning_db_import: %s is NULL", !db ? "db" : "json_text");
  json_value *root = NULL;
  fj_status status = json_parse(json_text, strlen(json_text), &root);
  if (status != FJ_OK) {
    core_error_prefix("import: ");
    return status;
  }
  const json_value *trials = NULL;
  status = tuning_db_import_document(root, &trials);
  if (status != FJ_OK) {
    json_free(root);
    return status;
  }

  tuning_db_lock(db);
  status = tuning_db_begin(db);
  int64_t first_new_id = 0;
  if (status == FJ_OK) {
    sqlite3_stmt *statement = tuning_db_statement(db, sql_max_trial_id);
    if (!statement) {
      status = FJ_IO;
    } else {
      if (sqlite3_step(statement) == SQLITE_ROW)
        first_new_id = sqlite3_column_int64(statement, 0);
      else
        status = tuning_db_fail(db, "reading the last trial id");
      tuning_db_statement_done(statement);
    }
  }
  for (size_t i = 0; i < trials->count && status == FJ_OK; i++) {
    tuning_db_import_row r = {.row = &trials->items[i]};
    tuning_device device;
    tuning_trial trial;
    if (!tuning_db_import_read(&r, &device, &trial)) {
      counts[2]++;
      tuning_db_import_report(report, i, r.row, r.why);
      continue;
    }
    if (only_fingerprint && strcmp(device.fingerprint, only_fingerprint) != 0) {
      counts[1]++;
      continue;
    }
    int inserted = 0;
    status = tuning_db_store_trial(db, &device, &trial, &inserted);
    counts[inserted ? 0 : 1]++;
  }
  if (status == FJ_OK)
    status = tuning_db_import_winners(db, first_new_id);
  if (status == FJ_OK)
    status = tuning_db_commit(db);
  else
    tuning_db_rollback(db);
  tuning_db_unlock(db);
  json_free(root);
  if (status != FJ_OK) {
    core_error_prefix("import rolled back, nothing imported: ");
    return status;
  }
  if (imported)
    *imported = counts[0];
  if (skipped)
    *skipped = counts[1];
  if (rejected)
    *rejected = counts[2];
  return FJ_OK;
}
