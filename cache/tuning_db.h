/* tuning_db.h: the SQLite tuning database: devices (by fingerprint), problems (by key), every trial the
 * tuner ran, claims that keep concurrent tuners from repeating each other, and the winner per problem
 * and device. WAL mode with a busy timeout, so an inference process reads while a tuner writes. A file
 * that is not a flashjit database (or is corrupt) is moved aside with a warning and a fresh one made; a
 * file from a newer schema is refused untouched. Knows nothing of LLVM or kernels: configs, keys and
 * fingerprints are text. */
#ifndef FJ_CACHE_TUNING_DB_H
#define FJ_CACHE_TUNING_DB_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "flashjit.h"

#define TUNING_DB_SCHEMA_VERSION 2
#define TUNING_DB_FILE "tuning.db"  /* inside the cache directory */

typedef struct tuning_db tuning_db;

/* Opens (creating and migrating as needed) the database at path. FJ_UNSUPPORTED when its schema is
 * newer than TUNING_DB_SCHEMA_VERSION (the file is left as it is); FJ_IO when it cannot be created.
 * A handle may be shared by threads (calls are serialized); a forked child must open its own.
 * See docs/TUNING.md for the schema, the migrations and what happens to a corrupt or foreign file. */
fj_status tuning_db_open(const char *path, tuning_db **out);
void tuning_db_close(tuning_db *db);  /* NULL-safe */
int tuning_db_schema_version(tuning_db *db);

typedef struct tuning_device {
  const char *fingerprint;  /* unique: everything that makes results transferable */
  const char *backend, *name, *arch, *driver_version;
  int compute_units;
  uint64_t memory_bytes;
} tuning_device;

typedef enum trial_outcome {
  TRIAL_OK = 0,
  TRIAL_COMPILE_ERROR,
  TRIAL_LAUNCH_ERROR,
  TRIAL_TIMEOUT,
  TRIAL_WRONG_RESULT,
  TRIAL_CRASH,
  TRIAL_OUTCOME_COUNT
} trial_outcome;
const char *tuning_outcome_name(trial_outcome outcome);  /* "ok", "compile_error", ... */
int tuning_outcome_parse(const char *name, trial_outcome *out);  /* 1 on success */

typedef struct tuning_trial {
  const char *problem_key;   /* core_attention_key_string form */
  const char *family;        /* kernel family name */
  const char *config;        /* kernel_config_string form */
  const char *timing_method; /* "cpu-wall" (CPU), "cuda-events", "cuda-graph" */
  int64_t batch, seqlen_q, seqlen_kv;  /* the sizes measured */
  trial_outcome outcome;
  double median_ms, min_ms, max_ms;    /* ok trials only; 0 otherwise */
  int repeats;
  double rel_err;                      /* against the float64 reference; -1 when not checked */
  const char *message;                 /* why it failed, "" when ok */
  const char *library_version, *llvm_version;
  int generator_version;
  int64_t created_at;                  /* unix seconds; 0 = now */
} tuning_trial;

/* Records a trial of a device (created on first use). A trial with the same (problem, device, family,
 * config, timing method, sizes, library, llvm and generator versions) is not added twice: the call
 * succeeds and *inserted (may be NULL) says 0. */
fj_status tuning_db_record_trial(tuning_db *db, const tuning_device *device, const tuning_trial *trial,
                                 int *inserted);
/* 1 when a trial for exactly this (problem, device, family, config, timing method, sizes, versions) is
 * recorded: how a resumed or concurrent tuner skips work already done. */
int tuning_db_has_trial(tuning_db *db, const char *fingerprint, const tuning_trial *trial);
/* (has_trial gives 0 also when the database cannot be read; fj_last_error() then says why.) */
/* 1 and *median_ms when an ok trial of exactly this identity is recorded; else 0 (as has_trial). */
int tuning_db_trial_median(tuning_db *db, const char *fingerprint, const tuning_trial *trial, double *median_ms);

/* Claims a candidate for this process so that a concurrent tuner skips it. 1 when claimed, 0 when
 * another live claim holds it (a claim older than stale_seconds, or of a dead pid on this host, is
 * taken over). Claims are released with tuning_db_release. Also 0 when the trial is already recorded,
 * so that a tuner that lost the race to a finished trial does not repeat it; stale_seconds <= 0: a live
 * claim never goes stale by age. -1 (and fj_last_error()) when the database cannot be written. */
int tuning_db_claim(tuning_db *db, const char *fingerprint, const tuning_trial *trial, int stale_seconds);
void tuning_db_release(tuning_db *db, const char *fingerprint, const tuning_trial *trial);

/* A trial under "<method>" TUNING_CONFIRM_SUFFIX times again a config that has a trial under <method>
 * (same problem, device, family, sizes and versions): the tuner's last round re-times its few best
 * configs in turn, so that one of them cannot win by one lucky measurement. */
#define TUNING_CONFIRM_SUFFIX "-confirm"

/* Recomputes the winner of (problem, device, family, timing method) from the ok trials of the current
 * library / llvm / generator versions: among the configs with an ok confirmation (above), the lowest
 * confirmed median; where none has one, the lowest median. FJ_OK also when there is none. Only trials
 * of the versions given compete; when none of them is ok, a winner of other versions is left in place
 * (looked up with current_versions = 0). The winner is always the trial under the method itself. */
fj_status tuning_db_update_winner(tuning_db *db, const char *fingerprint, const char *problem_key,
                                  const char *family, const char *timing_method, const char *library_version,
                                  const char *llvm_version, int generator_version);

typedef struct tuning_winner {
  char problem_key[512];
  char config[256];
  double median_ms;
  int exact;             /* 1: this very key; 0: the nearest sequence-length bucket of the same key */
  int current_versions;  /* 0 when tuned under another library/llvm/generator version */
  /* The versions the winner was measured under, and its key's bucket (-1 when the key has none). */
  char library_version[64];
  char llvm_version[64];
  int generator_version;
  int seqlen_bucket;
} tuning_winner;

/* The winner for a device and problem: the exact key first, then the key with the nearest seqlen
 * bucket (all other key fields equal; the bucket is the text after "sq<=2^" in the key; equally near
 * buckets: the longer one). Winners of other versions are returned with current_versions = 0 (the
 * caller decides; see docs/TUNING.md). 1 found, 0 none. This call compares the winner's library and
 * LLVM versions with this build's (fj_version_string() and the LLVM flashjit was built against) and
 * leaves the generator version to the caller (out->generator_version); tuning_db_lookup_winner_at
 * compares all three with the versions given. 0 also when the database cannot be read: fj_last_error()
 * says why and a warning is logged, so that inference falls back to the default heuristic. */
int tuning_db_lookup_winner(tuning_db *db, const char *fingerprint, const char *problem_key,
                            const char *family, const char *timing_method, tuning_winner *out);
/* As tuning_db_lookup_winner, with current_versions = 1 only when the winner's versions equal these
 * (generator_version < 0: the generator version is not compared). */
int tuning_db_lookup_winner_at(tuning_db *db, const char *fingerprint, const char *problem_key,
                               const char *family, const char *timing_method, const char *library_version,
                               const char *llvm_version, int generator_version, tuning_winner *out);

/* Export every trial (and winners) as JSON ({"schema":N,"trials":[{problem, device:{...}, family,
 * config, timing_method, sizes, timings, outcome, ...}], "winners":[...]}) or CSV (one trial a row). */
fj_status tuning_db_export(tuning_db *db, FILE *out, int json);
/* Merges an export: each well-formed trial is recorded (duplicates skipped), each bad row rejected
 * with a message on `report` naming the row and the problem; winners recomputed for what changed.
 * Only trials whose device fingerprint equals `only_fingerprint` are taken when it is not NULL.
 * *skipped counts duplicates and other devices' rows; report NULL sends the messages to the log (warn).
 * Malformed JSON (the message names the byte offset), a foreign document or a newer export schema is
 * an error (FJ_INVALID_ARGUMENT / FJ_UNSUPPORTED) and nothing is imported; a database failure rolls
 * the whole import back (FJ_IO). The counters may be NULL. */
fj_status tuning_db_import(tuning_db *db, const char *json_text, const char *only_fingerprint,
                           int *imported, int *skipped, int *rejected, FILE *report);

/* Listing for `flashjit cache list|show`. */
fj_status tuning_db_list(tuning_db *db, FILE *out);
fj_status tuning_db_show(tuning_db *db, const char *problem_key_substring, FILE *out);
/* Deletes trials older than max_age_seconds (<= 0: no age limit) or of other library/llvm versions
 * (when older_versions), keeping winners' trials; returns how many went (removed may be NULL). Claims
 * older than max_age_seconds and problems and devices left without trials go too. */
fj_status tuning_db_prune(tuning_db *db, int64_t max_age_seconds, int older_versions, int *removed);
/* Deletes every device, problem, trial, claim and winner (the file and its schema stay). */
fj_status tuning_db_clear(tuning_db *db);
#endif
