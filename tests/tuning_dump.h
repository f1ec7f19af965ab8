/* tuning_dump.h: a test's view of a tuning database: <dir>/tuning.db exported as the JSON `flashjit
 * cache export` writes (every trial) and parsed back, for tests to assert on rows, and one SQL answer
 * read on a connection of the test's own. Header-only. */
#ifndef FJ_TESTS_TUNING_DUMP_H
#define FJ_TESTS_TUNING_DUMP_H

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache/json_reader.h"
#include "cache/tuning_db.h"

/* The parsed export (json_free it), NULL when the database cannot be opened or read. */
static inline json_value *tuning_dump_json(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, TUNING_DB_FILE);
  tuning_db *db = NULL;
  if (tuning_db_open(path, &db) != FJ_OK) return NULL;
  char *text = NULL;
  size_t size = 0;
  FILE *memory = open_memstream(&text, &size);
  if (memory) {
    tuning_db_export(db, memory, 1);
    fclose(memory);
  }
  tuning_db_close(db);
  json_value *json = NULL;
  if (text == NULL || json_parse(text, size, &json) != FJ_OK) json = NULL;
  free(text);
  return json;
}
/* The first column of the first row of sql, as text, on a separate connection to the database file at
 * path; "" on any failure. */
static inline void tuning_sql_text(const char *path, const char *sql, char *out, size_t size) {
  sqlite3 *h = NULL;
  out[0] = '\0';
  if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
    sqlite3_busy_timeout(h, 10000);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
      snprintf(out, size, "%s", sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
    sqlite3_finalize(s);
  }
  sqlite3_close(h);
}
#endif
