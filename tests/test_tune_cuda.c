/* test_tune_cuda.c: a tuning run on cuda:0 where one candidate faults on the GPU does not lose the run.
 * A first run (random strategy, fixed seed) learns which candidates the search measures; a second run
 * on a fresh cache makes one of them, measured mid-batch, launch with q at address 0x8
 * (FLASHJIT_TUNE_FAULT=fault:<its config>), which kills its child's CUDA context. The run must end
 * (exit 0), record that candidate as a launch error, measure the candidates after it in fresh children,
 * and keep a winner. Then a decode step's split_kv candidates are tuned: each must check right (the
 * tuner gives it the workspace its plan asks for, so its parts and the combine kernel run). Through the
 * `flashjit` command, because GPU tuning children exec it. Skips (77) where fj_context_create cannot
 * open cuda:0. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/json_reader.h"
#include "flashjit.h"
#include "check.h"
#include "cli_process.h"

static char scratch[256];

/* Runs a shell command line, returns its exit status and its stdout (malloc'd) in *out. */
static int run(const char *command, char **out) {
  printf("     $ %s\n", command);
  fflush(stdout);
  FILE *p = popen(command, "r");
  *out = read_stream(p);
  int status = p ? pclose(p) : -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *text_of(const json_value *object, const char *key) {
  const json_value *v = json_get(object, key);
  return v && v->type == JSON_STRING ? v->string : "";
}

static double number_of(const json_value *object, const char *key) {
  const json_value *v = json_get(object, key);
  return v && v->type == JSON_NUMBER ? v->number : -1.0;
}

/* The tune flags both runs share: a small problem, a random sample of 8 with a fixed seed, 4 per child
 * batch so the fault falls inside a batch. */
#define TUNE_FLAGS                                                                                         \
  "tune --device cuda:0 --heads 4 --seqlen 512 --head-dim 64 --dtype bf16 --strategy random --trials 8 " \
  "--seed 11 --child-batch 4 --repeat 3 --json --quiet"

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

int main(void) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cuda:0";
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) {
    printf("skip: no CUDA device: %s\n", fj_last_error());
    return 77;
  }
  char name[256];
  fj_context_device_name(context, name, sizeof name);
  printf("     device %s\n", name);
  fj_context_destroy(context);

  snprintf(scratch, sizeof scratch, "/tmp/fj-tune-cuda-XXXXXX");
  if (mkdtemp(scratch) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  char command[2048];
  char *out = NULL;

  /* 1: which candidates does this search measure? */
  snprintf(command, sizeof command, "%s " TUNE_FLAGS " --cache-dir %s/first && %s cache export --format json "
           "--cache-dir %s/first", FJ_TEST_CLI, scratch, FJ_TEST_CLI, scratch);
  int rc = run(command, &out);
  /* Two documents on stdout: the tune table, then the export. */
  char *second = strstr(out, "\n{");
  json_value *table = NULL, *export = NULL;
  if (second) {
    *second = '\0';
    json_parse(out, strlen(out), &table);
    json_parse(second + 1, strlen(second + 1), &export);
  }
  check(rc == 0 && table && export, "a clean tune on cuda:0 ends and exports (exit %d)", rc);
  const json_value *problems = json_get(table, "problems");
  const json_value *first = problems && problems->type == JSON_ARRAY && problems->count ? &problems->items[0] : NULL;
  const char *default_config = text_of(first, "default_config");
  const json_value *trials = json_get(export, "trials");
  char victim[256] = "";
  int ok_trials = 0;
  for (size_t i = 0; trials && trials->type == JSON_ARRAY && i < trials->count; i++) {
    const json_value *t = &trials->items[i];
    if (strcmp(text_of(t, "outcome"), "ok") != 0) continue;
    ok_trials++;
    /* Not the default (measured alone, first) and not the first of the search: one in mid-batch. */
    if (ok_trials == 3 && strcmp(text_of(t, "config"), default_config) != 0)
      snprintf(victim, sizeof victim, "%s", text_of(t, "config"));
  }
  check(ok_trials >= 3 && victim[0], "the clean run measured %d candidates ok; the fault goes to \"%s\"", ok_trials,
        victim);
  json_free(table);
  json_free(export);
  free(out);

  /* 2: the same search with that candidate faulting on the GPU. */
  if (victim[0]) {
    snprintf(command, sizeof command, "FLASHJIT_TUNE_FAULT='fault:%s' %s " TUNE_FLAGS " --cache-dir %s/second && "
             "%s cache export --format json --cache-dir %s/second", victim, FJ_TEST_CLI, scratch, FJ_TEST_CLI, scratch);
    rc = run(command, &out);
    second = strstr(out, "\n{");
    table = export = NULL;
    if (second) {
      *second = '\0';
      json_parse(out, strlen(out), &table);
      json_parse(second + 1, strlen(second + 1), &export);
    }
    check(rc == 0 && table && export, "the tune with a faulting candidate ends (exit %d)", rc);
    problems = json_get(table, "problems");
    first = problems && problems->type == JSON_ARRAY && problems->count ? &problems->items[0] : NULL;
    const json_value *outcomes = json_get(first, "outcomes");
    check(number_of(outcomes, "launch_error") >= 1.0, "its launch errors: %.0f", number_of(outcomes, "launch_error"));
    const char *winner = text_of(first, "tuned_config");
    check(winner[0] && strcmp(winner, victim) != 0, "a winner exists and is not the faulting one: %s", winner);
    trials = json_get(export, "trials");
    const char *victim_outcome = "";
    int after_ok = 0, seen_victim = 0;
    for (size_t i = 0; trials && trials->type == JSON_ARRAY && i < trials->count; i++) {
      const json_value *t = &trials->items[i];
      if (strcmp(text_of(t, "config"), victim) == 0) {
        victim_outcome = text_of(t, "outcome");
        seen_victim = 1;
      } else if (seen_victim && strcmp(text_of(t, "outcome"), "ok") == 0) {
        after_ok++;
      }
    }
    check(strcmp(victim_outcome, "launch_error") == 0, "the faulting candidate is recorded as %s",
          victim_outcome[0] ? victim_outcome : "(missing)");
    check(after_ok >= 1, "%d candidates after it were measured ok (in fresh children)", after_ok);
    json_free(table);
    json_free(export);
    free(out);
  }

  /* 3: a decode step's split_kv candidates, each given the workspace its plan asks for: all checked
   * right against the reference (their parts and the combine kernel ran) and one of them kept. */
  snprintf(command, sizeof command, "%s tune --device cuda:0 --batch 2 --heads 8 --kv-heads 2 --seqlen 1 "
           "--seqlen-kv 4096 --head-dim 128 --dtype bf16 --causal --strategy random --trials 4 --seed 5 "
           "--space 'split_kv=1' --repeat 3 --json --quiet --cache-dir %s/decode", FJ_TEST_CLI, scratch);
  rc = run(command, &out);
  table = NULL;
  json_parse(out, strlen(out), &table);
  problems = json_get(table, "problems");
  first = problems && problems->type == JSON_ARRAY && problems->count ? &problems->items[0] : NULL;
  const json_value *outcomes = json_get(first, "outcomes");
  const char *winner = text_of(first, "tuned_config");
  check(rc == 0 && number_of(outcomes, "ok") >= 2 && number_of(outcomes, "wrong_result") == 0 &&
            number_of(outcomes, "launch_error") == 0 && strstr(winner, "split_kv=1") != NULL,
        "a decode tune over split_kv=1 (exit %d): %.0f ok, %.0f wrong, %.0f launch errors; winner %s", rc,
        number_of(outcomes, "ok"), number_of(outcomes, "wrong_result"), number_of(outcomes, "launch_error"), winner);
  json_free(table);
  free(out);

  nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return check_summary();
}
