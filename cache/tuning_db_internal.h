/* tuning_db_internal.h: what the tuning database's source files share and nothing else includes: the
 * handle, the prepared-statement cache, error and transaction helpers, the parsed problem key, and the
 * row-level steps (store a trial, recompute a winner) that both the public calls and the import use.
 * Every function here that takes the handle, except lock and unlock, expects its mutex to be held. */
#ifndef FJ_CACHE_TUNING_DB_INTERNAL_H
#define FJ_CACHE_TUNING_DB_INTERNAL_H
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include "cache/tuning_db.h"

#define TUNING_DB_MAX_STATEMENTS 64
#define TUNING_DB_KEY_MAX 512     /* bytes of a problem key with its NUL (tuning_winner.problem_key) */
#define TUNING_DB_CONFIG_MAX 256  /* bytes of a config with its NUL (tuning_winner.config) */
#define TUNING_DB_BUSY_TIMEOUT_MS 10000
/* The marker that tells our file (and our exports) from any other; never changed by a later schema. */
#define TUNING_DB_FORMAT "flashjit-tuning"

struct tuning_db {
  sqlite3 *sqlite;
  char *path;
  int schema_version;
  /* One connection and its cached statements are shared by every thread using the handle. */
  pthread_mutex_t mutex;
  char hostname[256];  /* for claims: a pid means something only on its own host */
  int statement_count;
  struct {
    const char *sql;  /* identity is the pointer: each SQL text is one file-scope array */
    sqlite3_stmt *statement;
  } statements[TUNING_DB_MAX_STATEMENTS];
};

/* The statement for sql, prepared on first use and kept; NULL (and the error set) on failure. Callers
 * pass a file-scope `static const char x[]` so that the pointer identifies the statement. */
sqlite3_stmt *tuning_db_statement(tuning_db *db, const char *sql);
/* Resets a cached statement for its next use and drops its bindings (which may point at caller text). */
void tuning_db_statement_done(sqlite3_stmt *statement);
/* FJ_IO naming the file, what was being done, and SQLite's own message and code. */
fj_status tuning_db_fail(tuning_db *db, const char *what);
/* Runs fixed SQL text (never text with values in it). */
fj_status tuning_db_exec(tuning_db *db, const char *sql, const char *what);
/* Write transactions start IMMEDIATE: a deferred one that reads and then writes can fail with BUSY
 * in WAL mode without waiting, when another writer committed since its read. */
fj_status tuning_db_begin(tuning_db *db);
fj_status tuning_db_commit(tuning_db *db);
void tuning_db_rollback(tuning_db *db);  /* no-op outside a transaction; keeps the error message */
/* Binds text, NULL as "" (the columns are NOT NULL). The text must outlive the statement's step. */
int tuning_db_bind_text(sqlite3_stmt *statement, int index, const char *text);
/* A text column of the current row, "" for NULL; valid until the statement steps or resets. */
const char *tuning_db_column(sqlite3_stmt *statement, int column);
void tuning_db_lock(tuning_db *db);
void tuning_db_unlock(tuning_db *db);

/* The library and LLVM versions this build reports as "current" for winners and pruning. */
const char *tuning_db_library_version(void);
const char *tuning_db_llvm_version(void);

/* A problem key taken apart into the columns of the problems table. Integers are -1 when the key
 * lacks the field (a later kind of key); base is the key without its "sq<=2^N" token, so that keys
 * differing only in the bucket share it and the nearest-bucket lookup is one indexed query. */
typedef struct tuning_db_key {
  char base[TUNING_DB_KEY_MAX];
  char kind[64];
  char dtype[16];
  int head_dim, heads, kv_heads, causal, lse, dcontig;
  int bucket;
} tuning_db_key;
/* 0 on success; -1 when the key is empty or longer than TUNING_DB_KEY_MAX - 1 bytes. */
int tuning_db_parse_key(const char *key, tuning_db_key *out);

/* Binds the parsed columns of key at ?2..?11, as the problems INSERT and the v1 migration number them:
 * base_key (NULL without a bucket), kind, dtype, head_dim, heads, kv_heads, causal, lse, dcontig,
 * seqlen_bucket; absent fields bind NULL. */
void tuning_db_bind_key_columns(sqlite3_stmt *statement, const tuning_db_key *key);

/* FJ_INVALID_ARGUMENT naming the first bad field of a device or trial (`who` prefixes the message).
 * check_identity looks only at what identifies a trial (what has_trial and claims need, before any
 * measurement); check_trial also at the outcome and the measurements. */
fj_status tuning_db_check_device(const tuning_device *device, const char *who);
fj_status tuning_db_check_identity(const tuning_trial *trial, const char *who);
fj_status tuning_db_check_trial(const tuning_trial *trial, const char *who);

/* Inside a write transaction: creates the device and problem rows if needed and adds the trial unless
 * an identical one exists (*inserted 0). Arguments already checked. */
fj_status tuning_db_store_trial(tuning_db *db, const tuning_device *device, const tuning_trial *trial,
                                int *inserted);
/* Inside a write transaction: makes the winner of a (problem, device, family, timing method) the ok
 * trial with the lowest median among the trials of the given versions; library_version NULL means
 * "choose": the versions of this build's library and LLVM first, then the highest generator version,
 * then the most recent. Leaves the winner as it is when no ok trial qualifies. */
fj_status tuning_db_recompute_winner(tuning_db *db, int64_t problem_id, int64_t device_id, const char *family,
                                     const char *timing_method, const char *library_version,
                                     const char *llvm_version, int generator_version);
#endif
