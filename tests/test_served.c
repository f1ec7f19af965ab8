/* test_served.c: the served file (src/runtime/served.c). Calls of every feature a problem key can have
 * are noted once each, as shapes-file lines that read back (bench/presets.c, what `tune --served` and
 * `cache warm --served` use) to the very key their call had; a second context (another process, for the
 * file) adds nothing; a context told not to, a call strided along the head dim (which the format cannot
 * say), and a folder where the file cannot be made leave no line and fail no call; and `flashjit cache
 * warm --served` readies exactly the noted problems. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attention_cases.h"
#include "bench/presets.h"
#include "check.h"
#include "runtime/runtime.h"

static char scratch[] = "/tmp/fj_test_served_XXXXXX";

/* One case of each feature a key names; seqlen_kv a multiple of the page size where paged. */
static int served_cases(test_case *cases) {
  test_case base;
  memset(&base, 0, sizeof base);
  base.dtype = DTYPE_BF16;
  base.batch = 2, base.heads = 4, base.kv_heads = 2, base.seqlen_q = 33, base.seqlen_kv = 64, base.head_dim = 64;
  base.window_left = base.window_right = -1;
  int n = 0;
  cases[n++] = base;
  cases[n] = base, cases[n].dtype = DTYPE_F32, cases[n++].causal = 1;
  cases[n] = base, cases[n].seqlen_q = 1, cases[n++].lse = 1;
  cases[n] = base, cases[n].causal = 1, cases[n++].window_left = 15;
  /* a window's sizes are not in the key (the window flags are): another head dim makes it a key of its own */
  cases[n] = base, cases[n].head_dim = 32, cases[n].window_left = 8, cases[n++].window_right = 4;
  cases[n] = base, cases[n++].sinks = 1;
  cases[n] = base, cases[n++].softcap = 30.0f;
  cases[n] = base, cases[n++].page_size = 16;
  cases[n] = base, cases[n++].varlen = 1;
  cases[n] = base, cases[n++].ragged_q = 1;
  cases[n] = base, cases[n++].packed_k = 1;
  cases[n] = base, cases[n++].alibi = 1;
  cases[n] = base, cases[n++].bias = CASE_BIAS_FULL;
  cases[n] = base, cases[n].causal = 1, cases[n++].bias = CASE_BIAS_DTYPE;
  cases[n] = base, cases[n++].kv_fp8 = DTYPE_E4M3;
  cases[n] = base, cases[n].dtype = DTYPE_F16, cases[n++].head_dim_v = 32;
  return n;
}

static fj_context *open_cpu(const char *cache_dir, int no_notes) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.cache_dir = cache_dir;
  options.num_threads = 1;
  options.disable_served_log = no_notes;
  fj_context *context = NULL;
  fj_status s = fj_context_create(&options, &context);
  if (s != FJ_OK) printf("FAIL a CPU context in %s: %s\n", cache_dir, fj_last_error());
  return context;
}

/* Runs every case on context; the number of calls that succeeded. */
static int call_all(fj_context *context, const test_case *cases, int count) {
  int good = 0;
  for (int i = 0; i < count; i++) {
    case_tensors t;
    if (!case_tensors_create(&cases[i], (uint64_t)i + 1, &t)) continue;
    fj_attention_args args;
    case_host_args(&cases[i], &t, &args);
    fj_status s = fj_attention_forward(context, &args);
    if (s == FJ_OK)
      good++;
    else
      printf("     case %d: %s\n", i, fj_last_error());
    case_tensors_free(&cases[i], &t);
  }
  return good;
}

/* The served file's problem lines. */
static int served_lines(const char *path, char lines[][1200], int most) {
  FILE *f = fopen(path, "r");
  int n = 0;
  char line[1200];
  while (f && fgets(line, sizeof line, f) != NULL)
    if (line[0] != '#' && n < most) snprintf(lines[n++], sizeof lines[0], "%s", line);
  if (f) fclose(f);
  return n;
}

int main(void) {
  if (mkdtemp(scratch) == NULL) return 1;
  char cache[256], path[512];
  snprintf(cache, sizeof cache, "%s/cache", scratch);
  test_case cases[32];
  int count = served_cases(cases);

  fj_context *context = open_cpu(cache, 0);
  int good = context ? call_all(context, cases, count) : 0;
  runtime_served_file(cache, "cpu", 0, path, sizeof path);
  static char lines[64][1200];
  int noted = served_lines(path, lines, 64);
  check(good == count && noted == count, "%d calls of as many problem keys: %d lines in %s", good, noted, path);
  if (noted != count) for (int i = 0; i < noted; i++) printf("     %s", lines[i]);

  /* each line reads back to its call's key: the comment the call wrote */
  int same = 0;
  for (int i = 0; i < noted; i++) {
    char file[600], why[256];
    snprintf(file, sizeof file, "%s/one.txt", scratch);
    FILE *f = fopen(file, "w");
    if (f) {
      fputs(lines[i], f);
      fclose(f);
    }
    preset_shapes shapes;
    attention_problem problem;
    char key[512] = "";
    if (presets_read_file(file, &shapes, why, sizeof why) == 0) {
      if (shapes.count == 1 && runtime_problem_from_shape(&shapes.shapes[0], "line", &problem) == FJ_OK)
        core_attention_key_string(&problem.key, key, sizeof key);
      presets_free(&shapes);
    }
    const char *comment = strstr(lines[i], "  # ");
    int match = key[0] && comment && strncmp(comment + 4, key, strlen(key)) == 0 && comment[4 + strlen(key)] == '\n';
    if (!match) printf("     line %d: %s     reads back as: %s %s\n", i, lines[i], key, key[0] ? "" : why);
    same += match;
  }
  check(same == noted && noted > 0, "every noted line reads back to its call's key (%d of %d)", same, noted);

  /* a second context (as another process would) notes nothing new; one told not to notes nothing */
  fj_context_destroy(context);
  context = open_cpu(cache, 0);
  good = context ? call_all(context, cases, count) : 0;
  check(good == count && served_lines(path, lines, 64) == count, "a second context's same calls add no line");
  fj_context_destroy(context);
  test_case other = cases[0];
  other.head_dim = 48;
  context = open_cpu(cache, 1);
  good = context ? call_all(context, &other, 1) : 0;
  check(good == 1 && served_lines(path, lines, 64) == count, "disable_served_log: a new key's call adds no line");
  fj_context_destroy(context);

  /* strided along the head dim: a key the format cannot say, left out */
  other = cases[0];
  other.layout = LAYOUT_D_STRIDE2;
  context = open_cpu(cache, 0);
  good = context ? call_all(context, &other, 1) : 0;
  check(good == 1 && served_lines(path, lines, 64) == count, "a call strided along the head dim is not noted");
  fj_context_destroy(context);
  /* nor one whose bias has strided keys (tensors of the lse-strided layout: attention_cases.h) */
  other = cases[0];
  other.layout = LAYOUT_LSE_STRIDED;
  other.bias = CASE_BIAS_FULL;
  context = open_cpu(cache, 0);
  good = context ? call_all(context, &other, 1) : 0;
  check(good == 1 && served_lines(path, lines, 64) == count, "a call whose bias has strided keys is not noted");
  fj_context_destroy(context);

  /* where the file cannot be made (a folder in its place) the calls go on */
  char blocked[256], blocked_path[512];
  snprintf(blocked, sizeof blocked, "%s/blocked", scratch);
  mkdir(blocked, 0755);
  runtime_served_file(blocked, "cpu", 0, blocked_path, sizeof blocked_path);
  mkdir(blocked_path, 0755);
  context = open_cpu(blocked, 0);
  good = context ? call_all(context, cases, 3) : 0;
  struct stat st;
  check(good == 3 && stat(blocked_path, &st) == 0 && S_ISDIR(st.st_mode),
        "a served file that cannot be opened fails no call (%d of 3)", good);
  fj_context_destroy(context);

  /* the command readies exactly the noted problems */
  char command[1200];
  snprintf(command, sizeof command, "'%s' cache warm --served --device cpu --cache-dir '%s' 2>&1", FJ_TEST_CLI, cache);
  FILE *p = popen(command, "r");
  char out[16384];
  size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
  out[n] = '\0';
  int rc = p ? pclose(p) : -1;
  int warmed = 0;
  for (const char *c = out; *c; c++) warmed += *c == '\n';
  check(rc == 0 && warmed == count && strstr(out, "b2 h4/2 sq1 skv64 d64 bf16 lse"),
        "cache warm --served: the %d noted problems, each labelled by its sizes (%d lines, status %d)", count, warmed,
        rc);
  if (rc != 0 || warmed != count) printf("%s", out);

  /* and info counts them under the device */
  snprintf(command, sizeof command, "FLASHJIT_CACHE_DIR='%s' '%s' info 2>&1", cache, FJ_TEST_CLI);
  p = popen(command, "r");
  n = p ? fread(out, 1, sizeof out - 1, p) : 0;
  out[n] = '\0';
  rc = p ? pclose(p) : -1;
  char want[700];
  snprintf(want, sizeof want, "served %d problems noted in %s (flashjit tune --served)", count, path);
  check(rc == 0 && strstr(out, want) != NULL, "flashjit info: \"%s\"", want);

  snprintf(command, sizeof command, "rm -rf '%s'", scratch);
  if (system(command) != 0) printf("     could not remove %s\n", scratch);
  return check_summary();
}
