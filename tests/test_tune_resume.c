/* test_tune_resume.c: `flashjit tune` killed with SIGKILL in the middle of an exhaustive run, then run
 * again with the same arguments: the rerun skips every recorded trial, runs the rest, and the database
 * ends with each config of the space exactly once (nothing repeated, nothing lost) and a winner. While
 * the first tuner runs, a second one on the same device is refused at once with a clear message, and
 * after the kill the lock is free (a flock dies with its process). */
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/json_reader.h"
#include "cache/tuning_db.h"
#include "core/dtype.h"
#include "runtime/runtime.h"
#include "tuner/tuner.h"
#include "check.h"
#include "cli_process.h"
#include "test_files.h"
#include "tuning_dump.h"

static char dir[256];

/* 48 valid configs of the smoke problem on an AVX-512 host, its default among them; enough that a
 * kill lands mid-run. */
#define SPACE "block_m=32,64 block_n=6,8,12,24 unroll=2,4 pv_rows=6 pv_vectors=2,4"

static pid_t spawn_tune(const char *out_name, const char *err_name) {
  char out_path[400], err_path[400];
  snprintf(out_path, sizeof out_path, "%s/%s", dir, out_name);
  snprintf(err_path, sizeof err_path, "%s/%s", dir, err_name);
  const char *args[] = {"tune", "--device", "cpu", "--preset", "smoke", "--strategy", "exhaustive",
                        "--space", SPACE, "--cache-dir", dir, "--repeat", "5", "--threads", "1", "--child-batch", "4",
                        "--json", "--quiet", NULL};
  pid_t pid = cli_spawn(args, out_path, err_path);
  if (pid < 0) {
    printf("FAIL cannot start %s: %s\n", FJ_TEST_CLI, strerror(errno));
    exit(1);
  }
  return pid;
}

/* Waits for pid up to seconds; its exit code, or -1 (killed by a signal or by us after the limit). */
static int wait_exit(pid_t pid, int seconds) {
  int status = 0;
  if (!cli_wait(pid, seconds, &status)) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Trials recorded so far, read the way another process would while the tuner writes (WAL). */
static int count_trials(void) {
  char path[400];
  snprintf(path, sizeof path, "%s/%s", dir, TUNING_DB_FILE);
  if (access(path, F_OK) != 0) return 0;
  sqlite3 *db = NULL;
  int n = 0;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM trials", -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
      n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return n;
}

static char *slurp(const char *name) {
  char path[400];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return read_text_file(path);
}

/* Runs the command with args (NULL-terminated) to completion; its exit code (-1: a signal), with
 * stdout and stderr in <dir>/cmd.out and cmd.err. */
static int run_cli(const char *const *args) {
  char out_path[400], err_path[400];
  snprintf(out_path, sizeof out_path, "%s/cmd.out", dir);
  snprintf(err_path, sizeof err_path, "%s/cmd.err", dir);
  pid_t pid = cli_spawn(args, out_path, err_path);
  return pid < 0 ? -1 : wait_exit(pid, 300);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/fj-test-resume-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }

  /* How many configs the space holds here (the host decides what is valid). */
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.cache_dir = dir;
  options.num_threads = 1;
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) {
    printf("FAIL context: %s\n", fj_last_error());
    return 1;
  }
  fj_problem_shape shape;
  fj_problem_shape_init(&shape);
  shape.dtype = core_dtype_to_dlpack(DTYPE_F32);
  shape.heads = shape.kv_heads = 2;
  shape.seqlen_q = shape.seqlen_kv = 256;
  shape.head_dim = 64;
  attention_problem problem;
  runtime_problem_from_shape(&shape, "smoke", &problem);
  tune_space space;
  if (tune_space_build(kernel_family_for_backend("cpu"), &problem.key, runtime_target(context), SPACE, &space) != FJ_OK) {
    printf("FAIL space: %s\n", fj_last_error());
    return 1;
  }
  int expected = (int)space.count;
  tune_space_free(&space);
  fj_context_destroy(context);
  check(expected >= 24, "the space holds %d configs here", expected);

  /* Run 1, killed once some trials are recorded. */
  pid_t first = spawn_tune("out1", "err1");
  int recorded = 0;
  double waited = 0.0;
  int second_refused = 0;
  char *second_err = NULL;
  while (waited < 120.0) {
    recorded = count_trials();
    if (recorded >= 3 && second_err == NULL) {
      /* A second tuner on the same device while the first works: refused at once. */
      pid_t second = spawn_tune("out2", "err2");
      int code = wait_exit(second, 30);
      second_err = slurp("err2");
      second_refused = code == 1 && strstr(second_err, "another tuner holds") != NULL;
    }
    if (recorded >= 10) break;
    if (waitpid(first, NULL, WNOHANG) == first) {
      first = -1;
      break;
    }
    struct timespec step = {0, 20000000};
    nanosleep(&step, NULL);
    waited += 0.02;
  }
  check(second_refused, "a second tuner is refused while the first runs: %s", second_err ? second_err : "(not run)");
  free(second_err);
  check(first > 0, "the first tuner was still running after %d trials", recorded);
  if (first > 0) {
    kill(first, SIGKILL);
    waitpid(first, NULL, 0);
  }
  struct timespec settle = {0, 200000000};
  nanosleep(&settle, NULL);  /* its children die with it (PDEATHSIG); give them a moment */
  int after_kill = count_trials();
  check(after_kill >= 10 && after_kill < expected, "killed with SIGKILL after %d of %d trials", after_kill, expected);

  /* Run 2, same arguments: resumes, finishes. */
  pid_t again = spawn_tune("out3", "err3");
  int code = wait_exit(again, 300);
  char *out = slurp("out3");
  check(code == 0, "the rerun exits 0");
  if (code != 0) {
    char *err = slurp("err3");
    printf("     stderr: %s\n", err);
    free(err);
  }
  json_value *json = NULL;
  int known = -1, fresh = -1, confirmed = -1;
  char winner[256] = "";  /* a copy: the parsed JSON is freed before the cache checks use it */
  if (json_parse(out, strlen(out), &json) == FJ_OK) {
    const json_value *problems = json_get(json, "problems");
    if (problems && problems->type == JSON_ARRAY && problems->count == 1) {
      const json_value *p = &problems->items[0];
      const json_value *v;
      if ((v = json_get(p, "known_trials")) && v->type == JSON_NUMBER) known = (int)v->number;
      if ((v = json_get(p, "new_trials")) && v->type == JSON_NUMBER) fresh = (int)v->number;
      if ((v = json_get(p, "confirmed")) && v->type == JSON_NUMBER) confirmed = (int)v->number;
      if ((v = json_get(p, "tuned_config")) && v->type == JSON_STRING)
        snprintf(winner, sizeof winner, "%s", v->string);
    }
  }
  check(known == after_kill, "the rerun skipped exactly the %d recorded trials (%d)", after_kill, known);
  check(fresh == expected - after_kill, "and ran the other %d (%d)", expected - after_kill, fresh);
  check(winner[0] != '\0', "a winner: %s", winner);

  /* The database: each config exactly once, all of them, and the confirmations of the best three (the
   * run that finished made them: the killed one never reached the end). */
  int rows = 0, distinct = 0, confirmations = 0;
  json_value *dump = tuning_dump_json(dir);
  const json_value *trials = dump ? json_get(dump, "trials") : NULL;
  int total = trials ? (int)trials->count : 0;
  for (int i = 0; i < total; i++) {
    const json_value *c = json_get(&trials->items[i], "config"), *t = json_get(&trials->items[i], "timing_method");
    if (t && strcmp(t->string, "cpu-wall" TUNING_CONFIRM_SUFFIX) == 0) {
      confirmations++;
      continue;
    }
    rows++;
    int seen_before = 0;
    for (int j = 0; j < i && c; j++) {
      const json_value *d = json_get(&trials->items[j], "config"), *u = json_get(&trials->items[j], "timing_method");
      seen_before |= d && strcmp(d->string, c->string) == 0 && u && strcmp(u->string, "cpu-wall") == 0;
    }
    distinct += c && !seen_before;
  }
  json_free(dump);
  check(rows == expected && distinct == expected, "the database holds %d trials of %d distinct configs (space %d)",
        rows, distinct, expected);
  check(confirmations == 3 && confirmed == 3, "and the rerun's 3 confirmations (%d recorded, %d reported)",
        confirmations, confirmed);
  json_free(json);
  free(out);

  /* The cache command around it: export, import into another cache, list, show, warm, prune, clear. */
  char export_path[400], other[400];
  snprintf(export_path, sizeof export_path, "%s/export.json", dir);
  snprintf(other, sizeof other, "%s/other", dir);
  mkdir(other, 0755);
  const char *export_args[] = {"cache", "export", "--format", "json", "--output", export_path, "--cache-dir", dir, NULL};
  check(run_cli(export_args) == 0 && access(export_path, F_OK) == 0, "cache export --output");
  const char *import_args[] = {"cache", "import", export_path, "--cache-dir", other, NULL};
  code = run_cli(import_args);
  char *text = slurp("cmd.out");
  char expect[64];
  snprintf(expect, sizeof expect, "imported %d trials", total);
  check(code == 0 && strstr(text, expect) != NULL, "cache import into another cache: %s", text);
  free(text);
  code = run_cli(import_args);
  text = slurp("cmd.out");
  check(code == 0 && strstr(text, "imported 0 trials") != NULL, "importing again adds nothing: %s", text);
  free(text);
  const char *list_args[] = {"cache", "list", "--cache-dir", other, NULL};
  code = run_cli(list_args);
  text = slurp("cmd.out");
  check(code == 0 && strstr(text, winner[0] ? "block_m=" : "?") != NULL, "cache list shows the imported winner");
  free(text);
  const char *show_args[] = {"cache", "show", "d=64", "--cache-dir", other, NULL};
  code = run_cli(show_args);
  text = slurp("cmd.out");
  int shown = 0;
  for (const char *p = text; (p = strstr(p, " ok ")) != NULL; p++) shown++;
  check(code == 0 && shown == total, "cache show lists %d ok trials (%d)", total, shown);
  free(text);
  const char *warm_args[] = {"cache", "warm", "--preset", "smoke", "--device", "cpu", "--cache-dir", other, NULL};
  code = run_cli(warm_args);
  text = slurp("cmd.out");
  check(code == 0 && strstr(text, "tuned") != NULL, "cache warm uses the tuned winner: %s", text);
  free(text);
  const char *csv_args[] = {"cache", "export", "--format", "csv", "--cache-dir", other, NULL};
  code = run_cli(csv_args);
  text = slurp("cmd.out");
  int lines = 0;
  for (const char *p = text; *p; p++) lines += *p == '\n';
  check(code == 0 && lines == total + 1, "cache export --format csv: a header and %d rows (%d lines)", total, lines);
  free(text);
  const char *prune_args[] = {"cache", "prune", "--cache-dir", other, NULL};
  check(run_cli(prune_args) == 2, "cache prune without a criterion is a usage error");
  const char *clear_args[] = {"cache", "clear", "--cache-dir", other, NULL};
  code = run_cli(clear_args);
  run_cli(csv_args);
  text = slurp("cmd.out");
  lines = 0;
  for (const char *p = text; *p; p++) lines += *p == '\n';
  check(code == 0 && lines == 1, "cache clear empties the database (%d lines left)", lines);
  free(text);
  const char *bad_args[] = {"cache", "frobnicate", NULL};
  check(run_cli(bad_args) == 2, "an unknown cache action is a usage error");

  remove_tree(dir);
  return check_summary();
}
