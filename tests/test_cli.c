/* test_cli.c: the `flashjit` command end to end, run as a child process the way a person or a script
 * runs it: help and version, `info --json` (parsed as JSON, a CPU device with a positive measured peak),
 * `bench --check --json` on small odd shapes of every dtype (exit 0, error under the dtype's bound),
 * the disk cache seen from the command, and a list of bad invocations that must each exit non-zero by
 * themselves (a signal is a failure) with exactly one line on stderr naming the flag. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/dtype.h"
#include "check.h"
#include "cli_process.h"
#include "test_files.h"

static char scratch[256];  /* this run's temporary folder */

/* ---- running the command ---------------------------------------------------------------------- */

typedef struct cli_result {
  int exited;      /* 1 when it exited by itself (not by a signal, not killed for a timeout) */
  int code;        /* exit code when exited */
  int signal;      /* the signal when it did not */
  char *out, *err; /* what it printed, NUL-terminated */
} cli_result;

/* Runs FJ_TEST_CLI with args (NULL-terminated), stdin from /dev/null, a 300 s limit. */
static cli_result run_cli(const char *const *args) {
  cli_result r = {0};
  char out_path[512], err_path[512];
  snprintf(out_path, sizeof out_path, "%s/stdout", scratch);
  snprintf(err_path, sizeof err_path, "%s/stderr", scratch);
  pid_t pid = cli_spawn(args, out_path, err_path);
  if (pid < 0) {
    r.out = strdup("");
    r.err = strdup(strerror(errno));
    return r;
  }
  int status = 0;
  int ended = cli_wait(pid, 300, &status);
  if (ended && WIFEXITED(status)) {
    r.exited = 1;
    r.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  r.out = read_text_file(out_path);
  r.err = read_text_file(err_path);
  return r;
}

static void cli_result_free(cli_result *r) {
  free(r->out);
  free(r->err);
}

static int count_lines(const char *text) {
  int n = 0;
  for (; *text; text++) n += *text == '\n';
  return n;
}

/* ---- a small JSON parser: enough to check the output is valid JSON and to read fields ------------- */

typedef enum jtype { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT } jtype;

typedef struct jvalue {
  jtype type;
  double number;           /* J_NUMBER, J_BOOL */
  char *string;            /* J_STRING */
  int count;               /* J_ARRAY, J_OBJECT */
  char **keys;             /* J_OBJECT */
  struct jvalue **items;   /* J_ARRAY, J_OBJECT */
} jvalue;

typedef struct jparser {
  const char *p;
  int error;
} jparser;

static void jfree(jvalue *v) {
  if (v == NULL) return;
  free(v->string);
  for (int i = 0; i < v->count; i++) {
    if (v->keys) free(v->keys[i]);
    jfree(v->items[i]);
  }
  free(v->keys);
  free(v->items);
  free(v);
}

static void jskip(jparser *j) {
  while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r') j->p++;
}

static jvalue *jparse_value(jparser *j, int depth);

static char *jparse_string(jparser *j) {
  if (*j->p != '"') {
    j->error = 1;
    return NULL;
  }
  j->p++;
  size_t cap = 64, len = 0;
  char *s = malloc(cap);
  while (s && *j->p != '"') {
    unsigned char c = (unsigned char)*j->p;
    if (c == '\0' || c < 0x20) {
      j->error = 1;
      break;
    }
    if (c == '\\') {
      j->p++;
      char e = *j->p;
      if (e == 'u') {
        for (int i = 1; i <= 4; i++)
          if (!strchr("0123456789abcdefABCDEF", j->p[i]) || j->p[i] == '\0') j->error = 1;
        if (j->error) break;
        c = '?';  /* the tests never look at escaped code points */
        j->p += 4;
      } else if (e && strchr("\"\\/bfnrt", e)) {
        c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : (unsigned char)e;
      } else {
        j->error = 1;
        break;
      }
    }
    if (len + 2 > cap) {
      char *grown = realloc(s, cap *= 2);
      if (grown == NULL) break;
      s = grown;
    }
    s[len++] = (char)c;
    j->p++;
  }
  if (s) s[len] = '\0';
  if (j->error || s == NULL) {
    free(s);
    j->error = 1;
    return NULL;
  }
  j->p++;
  return s;
}

static int jappend(jvalue *v, char *key, jvalue *item) {
  char **keys = v->type == J_OBJECT ? realloc(v->keys, (size_t)(v->count + 1) * sizeof *keys) : NULL;
  if (v->type == J_OBJECT) {
    if (keys == NULL) return -1;
    v->keys = keys;
    v->keys[v->count] = key;
  }
  jvalue **items = realloc(v->items, (size_t)(v->count + 1) * sizeof *items);
  if (items == NULL) return -1;
  v->items = items;
  v->items[v->count++] = item;
  return 0;
}

static jvalue *jparse_container(jparser *j, jvalue *v, int depth) {
  char close = v->type == J_OBJECT ? '}' : ']';
  j->p++;
  jskip(j);
  if (*j->p == close) {
    j->p++;
    return v;
  }
  for (;;) {
    char *key = NULL;
    jskip(j);
    if (v->type == J_OBJECT) {
      key = jparse_string(j);
      jskip(j);
      if (j->error || *j->p != ':') {
        free(key);
        j->error = 1;
        return v;
      }
      j->p++;
    }
    jvalue *item = jparse_value(j, depth + 1);
    if (j->error || jappend(v, key, item) != 0) {
      free(key);
      jfree(item);
      j->error = 1;
      return v;
    }
    jskip(j);
    if (*j->p == ',') {
      j->p++;
      continue;
    }
    if (*j->p == close) {
      j->p++;
      return v;
    }
    j->error = 1;
    return v;
  }
}

static jvalue *jparse_value(jparser *j, int depth) {
  jskip(j);
  jvalue *v = calloc(1, sizeof *v);
  if (v == NULL || depth > 64) {
    j->error = 1;
    return v;
  }
  const char *p = j->p;
  if (*p == '{' || *p == '[') {
    v->type = *p == '{' ? J_OBJECT : J_ARRAY;
    return jparse_container(j, v, depth);
  }
  if (*p == '"') {
    v->type = J_STRING;
    v->string = jparse_string(j);
    return v;
  }
  if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
    v->type = J_BOOL;
    v->number = *p == 't';
    j->p += *p == 't' ? 4 : 5;
    return v;
  }
  if (strncmp(p, "null", 4) == 0) {
    v->type = J_NULL;
    j->p += 4;
    return v;
  }
  /* JSON numbers: no leading '+', no "nan"/"inf", which strtod alone would take */
  if (*p == '-' || (*p >= '0' && *p <= '9')) {
    char *end = NULL;
    v->type = J_NUMBER;
    v->number = strtod(p, &end);
    if (end == p || !isfinite(v->number)) j->error = 1;
    j->p = end;
    return v;
  }
  j->error = 1;
  return v;
}

/* The whole text as one JSON value followed by nothing but whitespace; NULL when it is not JSON. */
static jvalue *jparse(const char *text) {
  jparser j = {text, 0};
  jvalue *v = jparse_value(&j, 0);
  jskip(&j);
  if (j.error || *j.p != '\0') {
    jfree(v);
    return NULL;
  }
  return v;
}

static const jvalue *jget(const jvalue *object, const char *key) {
  if (object == NULL || object->type != J_OBJECT) return NULL;
  for (int i = 0; i < object->count; i++)
    if (strcmp(object->keys[i], key) == 0) return object->items[i];
  return NULL;
}

static double jnumber(const jvalue *object, const char *key, double otherwise) {
  const jvalue *v = jget(object, key);
  return v && v->type == J_NUMBER ? v->number : otherwise;
}

static const char *jstring(const jvalue *object, const char *key) {
  const jvalue *v = jget(object, key);
  return v && v->type == J_STRING ? v->string : "";
}

/* ---- checks ------------------------------------------------------------------------------------- */

static void test_help_and_version(void) {
  cli_result r = run_cli((const char *[]){"--version", NULL});
  check(r.exited && r.code == 0 && strncmp(r.out, "flashjit ", 9) == 0 && strstr(r.out, "LLVM 22."),
        "--version: %s", r.out[0] ? strtok(r.out, "\n") : "(nothing)");
  cli_result_free(&r);

  r = run_cli((const char *[]){"--help", NULL});
  check(r.exited && r.code == 0 && strstr(r.out, "bench") && strstr(r.out, "info") && r.err[0] == '\0',
        "--help lists the commands");
  cli_result_free(&r);

  r = run_cli((const char *[]){"help", "bench", NULL});
  check(r.exited && r.code == 0 && strstr(r.out, "--head-dim") && strstr(r.out, "--check"),
        "help bench describes the flags");
  cli_result_free(&r);

  r = run_cli((const char *[]){"bench", "--help", NULL});
  check(r.exited && r.code == 0 && strstr(r.out, "--seqlen-kv"), "bench --help");
  cli_result_free(&r);
}

static void test_info(const char *cache_dir) {
  cli_result r = run_cli((const char *[]){"info", "--json", NULL});
  jvalue *doc = r.exited && r.code == 0 ? jparse(r.out) : NULL;
  check(doc != NULL && doc->type == J_OBJECT, "info --json exits 0 and prints one JSON object%s%s",
        r.err[0] ? "; stderr: " : "", r.err);
  const jvalue *devices = jget(doc, "devices");
  double peak = 0.0;
  const char *cpu_name = "";
  for (int i = 0; devices && devices->type == J_ARRAY && i < devices->count; i++) {
    const jvalue *d = devices->items[i];
    if (strcmp(jstring(d, "backend"), "cpu") == 0) {
      peak = jnumber(d, "peak_gflops", 0.0);
      cpu_name = jstring(d, "name");
    }
  }
  check(peak > 0.0, "info --json: a cpu device (%s) with peak_gflops %.1f > 0", cpu_name, peak);
  check(strncmp(jstring(doc, "llvm"), "22.", 3) == 0, "info --json: llvm %s", jstring(doc, "llvm"));
  check(strcmp(jstring(doc, "cache_dir"), cache_dir) == 0, "info --json: cache_dir follows FLASHJIT_CACHE_DIR");
  const jvalue *host = jget(doc, "host");
  check(jnumber(host, "vector_bits", 0) >= 128 && jstring(host, "cpu")[0] != '\0',
        "info --json: host %s with %.0f-bit vectors", jstring(host, "cpu"), jnumber(host, "vector_bits", 0));
  /* bf16's default product: pairs only with AVX512-BF16 (and there only on AMD's Zen) */
  const jvalue *pairs = jget(host, "bf16_dot_default"), *bf16 = jget(host, "avx512bf16");
  int has_bf16 = bf16 && bf16->type == J_BOOL && bf16->number != 0;
  check(pairs && pairs->type == J_BOOL && (has_bf16 || pairs->number == 0),
        "info --json: bf16_dot_default %s (avx512bf16 %d)", pairs && pairs->number ? "true" : "false", has_bf16);
  jfree(doc);
  cli_result_free(&r);

  r = run_cli((const char *[]){"info", NULL});
  check(r.exited && r.code == 0 && strstr(r.out, "GFLOP/s") && strstr(r.out, "cpu:0") &&
            (!has_bf16 || strstr(r.out, "bf16 default: ") != NULL),
        "info (text) shows cpu:0, its peak%s", has_bf16 ? " and bf16's default product" : "");
  cli_result_free(&r);
}

typedef struct bench_case {
  const char *what;
  const char *dtype;
  const char *args[20];
} bench_case;

/* Runs bench --check --json with the case's flags; returns the parsed JSON (caller frees) or NULL. */
static jvalue *run_bench_case(const bench_case *c, const char *extra_flag, const char *extra_value) {
  const char *args[40];
  int n = 0;
  args[n++] = "bench";
  args[n++] = "--check";
  args[n++] = "--json";
  args[n++] = "--warmup";
  args[n++] = "1";
  args[n++] = "--repeat";
  args[n++] = "3";
  args[n++] = "--dtype";
  args[n++] = c->dtype;
  for (int i = 0; c->args[i]; i++) args[n++] = c->args[i];
  if (extra_flag) args[n++] = extra_flag;
  if (extra_value) args[n++] = extra_value;
  args[n] = NULL;
  cli_result r = run_cli(args);
  jvalue *doc = r.exited ? jparse(r.out) : NULL;
  dtype_id dtype = DTYPE_F32;
  core_dtype_parse(c->dtype, &dtype);
  double bound = core_dtype_tolerance(dtype);
  double err = jnumber(doc, "rel_err", NAN), err_lse = jnumber(doc, "rel_err_lse", NAN);
  int ok = r.exited && r.code == 0 && doc != NULL;
  ok = ok && err <= bound && err_lse <= bound;
  ok = ok && jnumber(doc, "ms", -1) >= 0 && jnumber(doc, "ms_min", -1) >= 0 && jnumber(doc, "gflops", -1) >= 0;
  /* GB/s is the least bytes a call moves over the median time: both figures from the same median */
  ok = ok && jnumber(doc, "bytes", -1) > 0 &&
       fabs(jnumber(doc, "gbps", -1) * jnumber(doc, "ms", 0) * 1e-3 * 1e9 - jnumber(doc, "bytes", 0)) <=
           1e-6 * jnumber(doc, "bytes", 0);
  {
    double b = jnumber(doc, "batch", 0), d = jnumber(doc, "head_dim", 0);
    double queries = b * jnumber(doc, "seqlen", 0), keys = b * jnumber(doc, "seqlen_kv", 0);
    const char *lengths = jstring(doc, "seqlens_q");
    if (lengths[0]) /* --seqlens-q: each sequence's queries, and as many keys (the cases give no --seqlen-kv) */
      for (queries = keys = 0; *lengths; lengths += *lengths == ',') {
        char *end;
        double count = strtod(lengths, &end);
        queries += count;
        keys += count;
        lengths = end;
      }
    double q_rows = queries * jnumber(doc, "heads", 0);
    double kv_rows = keys * jnumber(doc, "kv_heads", 0);
    dtype_id kv_dtype = dtype;  /* an fp8 cache's k and v: one byte an element */
    core_kv_dtype_parse(jstring(doc, "kv_dtype"), &kv_dtype);
    /* q and k rows of head_dim, v and o rows of head_dim_v */
    double dv = jnumber(doc, "head_dim_v", 0);
    double tensors = (q_rows * core_dtype_size(dtype) + kv_rows * core_dtype_size(kv_dtype)) * (d + dv);
    double bytes = jnumber(doc, "bytes", 0);
    ok = ok && (bytes == tensors || bytes == tensors + 4 * q_rows);  /* with or without the LSE */
  }
  ok = ok && strcmp(jstring(doc, "dtype"), core_dtype_name(dtype)) == 0 && jstring(doc, "config")[0];
  ok = ok && jstring(doc, "device")[0] && jstring(doc, "kernel_source")[0];
  ok = ok && jnumber(doc, "reference_ms", -1) >= 0 && jnumber(doc, "compile_ms", -1) >= 0;
  check(ok, "bench %s%s%s: exit %d, rel_err %.3g, lse %.3g (bound %.3g), %.3f ms, config %s%s%s",
        c->what, extra_flag ? " " : "", extra_flag ? extra_flag : "", r.exited ? r.code : -r.signal, err,
        err_lse, bound, jnumber(doc, "ms", NAN), jstring(doc, "config"), r.err[0] ? "; stderr: " : "", r.err);
  check(r.err[0] == '\0', "bench %s: nothing on stderr", c->what);
  cli_result_free(&r);
  if (!ok) {
    jfree(doc);
    return NULL;
  }
  return doc;
}

static void test_bench(void) {
  static const bench_case cases[] = {
      {"fp32 causal GQA, odd lengths", "fp32",
       {"--batch", "2", "--heads", "4", "--kv-heads", "2", "--seqlen", "77", "--seqlen-kv", "93",
        "--head-dim", "64", "--causal", NULL}},
      {"bf16 d=128", "bf16", {"--heads", "2", "--seqlen", "128", "--head-dim", "128", NULL}},
      {"fp16 causal MQA d=80, seqlen_kv > seqlen", "fp16",
       {"--heads", "3", "--kv-heads", "1", "--seqlen", "33", "--seqlen-kv", "65", "--head-dim", "80",
        "--causal", NULL}},
      {"fp32 one query, one key, d=8", "fp32",
       {"--heads", "1", "--seqlen", "1", "--head-dim", "8", NULL}},
      {"bf16 causal with fully masked rows (seqlen 100 > seqlen_kv 37), d=96", "bf16",
       {"--heads", "2", "--seqlen", "100", "--seqlen-kv", "37", "--head-dim", "96", "--causal", NULL}},
      {"fp16 GQA d=256 on one thread", "fp16",
       {"--heads", "4", "--kv-heads", "2", "--seqlen", "45", "--head-dim", "256", "--threads", "1", NULL}},
      /* paged K/V: a decode step whose last page is part full (seqlens_kv), and prefill on pages of 5 */
      {"bf16 paged decode, pages of 16, 200 keys", "bf16",
       {"--batch", "3", "--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "200", "--causal",
        "--page-size", "16", NULL}},
      {"fp32 paged causal prefill, pages of 5", "fp32",
       {"--batch", "2", "--heads", "2", "--seqlen", "60", "--seqlen-kv", "95", "--head-dim", "64", "--causal",
        "--page-size", "5", NULL}},
      /* split-KV on 8 threads: a decode step of 2 jobs cut into parts in the workspace bench gives it,
       * then without one (the CPU's own memory) */
      {"bf16 split decode", "bf16",
       {"--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "3000", "--threads", "8", NULL}},
      {"bf16 split decode --no-split-kv", "bf16",
       {"--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "3000", "--threads", "8",
        "--no-split-kv", NULL}},
      /* sliding windows: causal local attention, and both sides without causal (checked against the
       * reference like every case here) */
      {"fp16 causal window 40", "fp16",
       {"--heads", "4", "--kv-heads", "2", "--seqlen", "150", "--head-dim", "64", "--causal", "--window-left", "40",
        NULL}},
      {"fp32 window (20, 7)", "fp32",
       {"--heads", "2", "--seqlen", "90", "--seqlen-kv", "120", "--head-dim", "64", "--window-left", "20",
        "--window-right", "7", NULL}},
      /* ragged queries: three prompts packed end to end, causal against longer caches (chunked prefill) */
      {"bf16 varlen_q causal prefill", "bf16",
       {"--batch", "3", "--heads", "4", "--kv-heads", "2", "--seqlen", "70", "--seqlen-kv", "110", "--head-dim",
        "64", "--causal", "--varlen-q", NULL}},
      /* prompts of different lengths (one of none), each attending to its own keys */
      {"fp16 varlen_q --seqlens-q prefill", "fp16",
       {"--seqlens-q", "90,0,33,61", "--heads", "4", "--kv-heads", "1", "--head-dim", "80", "--causal", NULL}},
      /* packed keys (cu_seqlens_k): prompts packed end to end with their keys (flash_attn_varlen_func's
       * layout), and a split decode step over packed caches */
      {"fp16 packed_kv --seqlens-q prefill", "fp16",
       {"--seqlens-q", "90,0,33,61", "--heads", "4", "--kv-heads", "1", "--head-dim", "80", "--causal", "--packed-kv",
        NULL}},
      {"bf16 packed_kv split decode", "bf16",
       {"--batch", "2", "--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "3000", "--causal",
        "--threads", "8", "--packed-kv", NULL}},
      /* ALiBi with BLOOM's slopes: causal GQA prefill */
      {"fp32 alibi causal", "fp32",
       {"--heads", "4", "--kv-heads", "2", "--seqlen", "130", "--head-dim", "64", "--causal", "--alibi", NULL}},
      /* an additive bias: a causal mask given as a bf16 bias (-inf past each diagonal), not causal itself;
       * an fp32 one on a paged decode step */
      {"bf16 attn_bias bf16 prefill", "bf16",
       {"--heads", "4", "--kv-heads", "2", "--seqlen", "130", "--head-dim", "64", "--attn-bias", "bf16", NULL}},
      {"fp16 attn_bias fp32 paged decode", "fp16",
       {"--batch", "2", "--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "700", "--causal",
        "--page-size", "16", "--attn-bias", "fp32", NULL}},
      /* attention sinks: a split decode step of a windowed layer (gpt-oss's), the sinks added once */
      {"bf16 sinks decode in parts, windowed", "bf16",
       {"--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "3000", "--head-dim", "64", "--causal",
        "--window-left", "1500", "--threads", "8", "--sinks", NULL}},
      /* logit soft-capping at 1.5 (scores of order 1 bend), causal GQA prefill */
      {"fp32 softcap 1.5 causal", "fp32",
       {"--heads", "4", "--kv-heads", "2", "--seqlen", "130", "--head-dim", "64", "--causal", "--softcap", "1.5", NULL}},
      /* fp8 KV caches: a paged E4M3 decode step, an E5M2 prefill beside fp16 queries */
      {"bf16 kv_dtype fp8_e4m3 paged decode", "bf16",
       {"--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "700", "--causal", "--page-size", "16",
        "--kv-dtype", "fp8_e4m3", NULL}},
      {"fp16 kv_dtype fp8_e5m2 prefill", "fp16",
       {"--heads", "4", "--kv-heads", "2", "--seqlen", "130", "--head-dim", "64", "--kv-dtype", "e5m2", NULL}},
      /* v with a head dim of its own: DeepSeek's MLA prefill (192 and 128), and a decode step in parts with v
       * wider than q and k (the parts' rows and the workspace as wide as v) */
      {"bf16 head_dim_v 128 causal prefill (MLA)", "bf16",
       {"--heads", "4", "--seqlen", "130", "--head-dim", "192", "--head-dim-v", "128", "--causal", NULL}},
      {"fp32 head_dim_v 128 decode in parts", "fp32",
       {"--heads", "8", "--kv-heads", "2", "--seqlen", "1", "--seqlen-kv", "3000", "--head-dim", "64",
        "--head-dim-v", "128", "--threads", "8", NULL}},
  };
  char first_config[256] = "";
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    jvalue *doc = run_bench_case(&cases[i], NULL, NULL);
    if (doc && i == 0) snprintf(first_config, sizeof first_config, "%s", jstring(doc, "config"));
    if (doc && strstr(cases[i].what, "paged"))
      check(jnumber(doc, "page_size", 0) == (strstr(cases[i].what, "pages of 5") ? 5 : 16),
            "bench %s: page_size %g in the JSON", cases[i].what, jnumber(doc, "page_size", 0));
    if (doc)
      check(jget(doc, "alibi") && jget(doc, "alibi")->type == J_BOOL &&
                jget(doc, "alibi")->number == (strstr(cases[i].what, "alibi") != NULL),
            "bench %s: alibi %s in the JSON", cases[i].what, strstr(cases[i].what, "alibi") ? "true" : "false");
    if (doc) {
      const char *bias = strstr(cases[i].what, "attn_bias fp32") ? "fp32" : strstr(cases[i].what, "attn_bias bf16") ? "bf16" : "";
      check(strcmp(jstring(doc, "attn_bias"), bias) == 0, "bench %s: attn_bias \"%s\" in the JSON", cases[i].what,
            jstring(doc, "attn_bias"));
    }
    if (doc) {
      const char *kv = strstr(cases[i].what, "fp8_e4m3") ? "fp8_e4m3" : strstr(cases[i].what, "fp8_e5m2") ? "fp8_e5m2"
                                                                                                       : cases[i].dtype;
      check(strcmp(jstring(doc, "kv_dtype"), kv) == 0, "bench %s: kv_dtype %s in the JSON", cases[i].what,
            jstring(doc, "kv_dtype"));
    }
    if (doc) {
      double d = jnumber(doc, "head_dim", 0), dv = jnumber(doc, "head_dim_v", 0);
      int own = strstr(cases[i].what, "head_dim_v") != NULL;
      check(own ? dv == 128 && d != dv : dv == d, "bench %s: head_dim %g, head_dim_v %g in the JSON", cases[i].what,
            d, dv);
    }
    if (doc && strstr(cases[i].what, "head_dim_v 128 decode in parts")) {
      double parts = jnumber(doc, "kv_splits", 0), bytes = jnumber(doc, "workspace_bytes", -1);
      check(parts > 1 && bytes == parts * 8 * 129 * 4, "bench %s: %g parts, %g bytes of workspace (v's 128 + 1 floats "
            "a row)", cases[i].what, parts, bytes);
    }
    if (doc && strstr(cases[i].what, "packed_kv"))
      check(jget(doc, "packed_kv") && jget(doc, "packed_kv")->type == J_BOOL && jget(doc, "packed_kv")->number == 1,
            "bench %s: packed_kv true in the JSON", cases[i].what);
    if (doc && strstr(cases[i].what, "varlen_q"))
      check(jget(doc, "varlen_q") && jget(doc, "varlen_q")->type == J_BOOL && jget(doc, "varlen_q")->number == 1 &&
                (strstr(cases[i].what, "--seqlens-q") == NULL ||
                 (strcmp(jstring(doc, "seqlens_q"), "90,0,33,61") == 0 && jnumber(doc, "batch", 0) == 4 &&
                  jnumber(doc, "seqlen", 0) == 90)),
            "bench %s: varlen_q true in the JSON (seqlens_q \"%s\", batch %g, seqlen %g)", cases[i].what,
            jstring(doc, "seqlens_q"), jnumber(doc, "batch", 0), jnumber(doc, "seqlen", 0));
    if (doc)
      check(jget(doc, "sinks") && jget(doc, "sinks")->type == J_BOOL &&
                jget(doc, "sinks")->number == (strstr(cases[i].what, "sinks") != NULL),
            "bench %s: sinks %s in the JSON", cases[i].what, strstr(cases[i].what, "sinks") ? "true" : "false");
    if (doc && strstr(cases[i].what, "sinks"))
      check(jnumber(doc, "kv_splits", 0) > 1, "bench %s: %g parts", cases[i].what, jnumber(doc, "kv_splits", 0));
    if (doc)
      check(jnumber(doc, "softcap", -1) == (strstr(cases[i].what, "softcap") ? 1.5 : 0.0), "bench %s: softcap %g in the JSON",
            cases[i].what, jnumber(doc, "softcap", -1));
    if (doc && strstr(cases[i].what, "window") && !strstr(cases[i].what, "sinks"))
      check(jnumber(doc, "window_left", 0) == (strstr(cases[i].what, "causal") ? 40 : 20) &&
                jnumber(doc, "window_right", -2) == (strstr(cases[i].what, "causal") ? 0 : 7),
            "bench %s: window (%g, %g) in the JSON", cases[i].what, jnumber(doc, "window_left", 0),
            jnumber(doc, "window_right", -2));
    if (doc && strstr(cases[i].what, "split decode")) {
      int given = strstr(cases[i].what, "--no-split-kv") == NULL;
      double parts = jnumber(doc, "kv_splits", 0), bytes = jnumber(doc, "workspace_bytes", -1);
      /* parts x rows (batch x 8 heads x 1 query) x (head dim + 1) floats */
      check(parts > 1 && bytes == (given ? parts * jnumber(doc, "batch", 0) * 8 * 129 * 4 : 0),
            "bench %s: %g parts, %g bytes of workspace in the JSON", cases[i].what, parts, bytes);
    }
    jfree(doc);
  }

  /* The config a run reports can be given back with --config and is then what runs. */
  if (first_config[0]) {
    jvalue *doc = run_bench_case(&cases[0], "--config", first_config);
    check(doc && strcmp(jstring(doc, "config"), first_config) == 0 &&
              strcmp(jstring(doc, "config_from"), "--config") == 0,
          "bench --config \"%s\" runs that config", first_config);
    jfree(doc);
  }

  /* A fresh cache folder: the first run compiles, the second loads what the first stored. */
  char cache[512];
  snprintf(cache, sizeof cache, "%s/cache-bench", scratch);
  const char *args[] = {"bench", "--json", "--dtype", "fp32", "--seqlen", "40", "--head-dim", "48",
                        "--heads", "2", "--warmup", "0", "--repeat", "1", "--cache-dir", cache, NULL};
  cli_result r1 = run_cli(args), r2 = run_cli(args);
  jvalue *d1 = jparse(r1.out), *d2 = jparse(r2.out);
  check(r1.exited && r1.code == 0 && r2.exited && r2.code == 0 &&
            strcmp(jstring(d1, "kernel_source"), "jit") == 0 && strcmp(jstring(d2, "kernel_source"), "disk") == 0,
        "--cache-dir: first run %s, second run %s", jstring(d1, "kernel_source"), jstring(d2, "kernel_source"));
  jfree(d1);
  jfree(d2);
  cli_result_free(&r1);
  cli_result_free(&r2);

  /* Text mode is for people: aligned labels and the check verdict. */
  const char *text_args[] = {"bench", "--check", "--dtype", "bf16", "--seqlen", "20", "--head-dim", "32",
                             "--heads", "2", "--warmup", "0", "--repeat", "2", NULL};
  cli_result r = run_cli(text_args);
  check(r.exited && r.code == 0 && strstr(r.out, "GFLOP/s") && strstr(r.out, "check       ok") &&
            strstr(r.out, "speedup vs reference"),
        "bench text output has the rate, the check and the reference speedup");
  cli_result_free(&r);
}

typedef struct bad_case {
  const char *args[12];
  const char *names;  /* what the one stderr line must contain */
  int code;           /* the exit code, or -1 for any non-zero */
} bad_case;

static void test_bad_invocations(void) {
  static const bad_case cases[] = {
      {{NULL}, "no command", 2},
      {{"frobnicate", NULL}, "frobnicate", 2},
      {{"help", "frobnicate", NULL}, "frobnicate", 2},
      {{"info", "--bogus", NULL}, "--bogus", 2},
      {{"info", "--json=1", NULL}, "--json", 2},
      {{"bench", "--frobnicate", NULL}, "--frobnicate", 2},
      {{"bench", "--batch", NULL}, "--batch", 2},
      {{"bench", "--batch", "--heads", "8", NULL}, "--batch", 2},
      {{"bench", "--batch", "abc", NULL}, "--batch=abc", 2},
      {{"bench", "--batch", "", NULL}, "--batch", 2},
      {{"bench", "--batch", "12x", NULL}, "--batch=12x", 2},
      {{"bench", "--batch", " 12", NULL}, "--batch", 2},
      {{"bench", "--batch", "-3", NULL}, "--batch=-3", 2},
      {{"bench", "--batch", "0", NULL}, "--batch=0", 2},
      {{"bench", "--batch", "99999999999999999999999", NULL}, "--batch=99999999999999999999999", 2},
      {{"bench", "--seqlen", "1e3", NULL}, "--seqlen=1e3", 2},
      {{"bench", "--seqlen", "-1", NULL}, "--seqlen=-1", 2},
      {{"bench", "--seqlen-kv", "-1", NULL}, "--seqlen-kv=-1", 2},
      {{"bench", "--page-size", "0", NULL}, "--page-size=0", 2},
      {{"bench", "--window-left", "-2", NULL}, "--window-left=-2", 2},
      {{"bench", "--causal", "--window-right", "3", NULL}, "--window-right=3 with --causal", 2},
      {{"bench", "--window-left", "8", "--peers", NULL}, "no peer takes a sliding window", 2},
      {{"bench", "--varlen-q", "--peers", NULL}, "--peers with --varlen-q", 2},
      {{"bench", "--packed-kv", "--peers", NULL}, "--peers with --packed-kv", 2},
      {{"bench", "--alibi", "--peers", NULL}, "--peers with --alibi", 2},
      {{"bench", "--attn-bias", "fp16", NULL}, "--attn-bias=fp16: fp32 or --dtype's bf16", 2},
      {{"bench", "--attn-bias", "int8", NULL}, "--attn-bias=int8: fp32 or --dtype's bf16", 2},
      {{"bench", "--kv-dtype", "fp8_e4m3", "--peers", NULL}, "--peers with --kv-dtype", 2},
      {{"bench", "--kv-dtype", "int8", NULL}, "--kv-dtype=int8: fp8_e4m3 or fp8_e5m2", 2},
      {{"bench", "--head-dim-v", "100", NULL}, "--head-dim-v=100: must be a multiple of 8 from 8 to 576", 2},
      {{"bench", "--head-dim-v", "584", NULL}, "--head-dim-v=584: must be a multiple of 8 from 8 to 576", 2},
      {{"bench", "--head-dim-v", "64", "--peers", NULL}, "--peers with --head-dim-v", 2},
      {{"bench", "--head-dim-v", "64", "--grid", "prefill", NULL}, "--grid=prefill: the grid sets", 2},
      {{"bench", "--dtype", "fp16", "--kv-dtype", "bf16", NULL}, "--kv-dtype=bf16", 2},
      {{"bench", "--packed-kv", "--page-size", "16", NULL}, "--packed-kv with --page-size", 2},
      {{"bench", "--sinks", "--peers", NULL}, "--peers with --sinks", 2},
      {{"bench", "--softcap", "30", "--peers", NULL}, "--peers with --softcap", 2},
      {{"bench", "--softcap", "-1", NULL}, "--softcap=-1: must be from 0", 2},
      {{"bench", "--softcap", "1e40", NULL}, "--softcap=1e40: not a finite number", 2},
      {{"bench", "--softcap", "x", NULL}, "--softcap=x: not a finite number", 2},
      {{"bench", "--sinks", "--grid", "prefill", NULL}, "--grid=prefill: the grid sets", 2},
      {{"bench", "--seqlens-q", "5,-1", NULL}, "--seqlens-q=5,-1: '-1': must be from 0", 2},
      {{"bench", "--seqlens-q", "0,0", NULL}, "--seqlens-q=0,0: no sequence has a query", 2},
      {{"bench", "--seqlens-q", "5", "--batch", "2", NULL}, "--seqlens-q=5 with --batch", 2},
      {{"bench", "--varlen-q", "--batch", "100000", "--seqlen", "100000", NULL}, "--varlen-q: 100000 x 100000", 2},
      {{"bench", "--heads", "9223372036854775807", NULL}, "--heads", 2},
      {{"bench", "--head-dim", "260", NULL}, "--head-dim=260", 2},
      {{"bench", "--head-dim", "12", NULL}, "--head-dim=12", 2},
      {{"bench", "--head-dim", "0", NULL}, "--head-dim=0", 2},
      {{"bench", "--head-dim", "-128", NULL}, "--head-dim=-128", 2},
      {{"bench", "--dtype", "fp8", NULL}, "--dtype=fp8", 2},
      {{"bench", "--dtype", NULL}, "--dtype", 2},
      {{"bench", "--device", "nosuch", NULL}, "--device=nosuch", -1},
      {{"bench", "--device", "cuda:99", NULL}, "--device=cuda:99", -1},
      {{"bench", "--device", "cpu:7", NULL}, "--device=cpu:7", -1},
      {{"bench", "--device", "", NULL}, "--device", 2},
      {{"bench", "--heads", "8", "--kv-heads", "3", NULL}, "--kv-heads=3", 2},
      {{"bench", "--heads", "2", "--kv-heads", "4", NULL}, "--kv-heads=4", 2},
      {{"bench", "--warmup", "-1", NULL}, "--warmup=-1", 2},
      {{"bench", "--repeat", "0", NULL}, "--repeat=0", 2},
      {{"bench", "--threads", "-2", NULL}, "--threads=-2", 2},
      {{"bench", "--causal=yes", NULL}, "--causal", 2},
      {{"bench", "stray", NULL}, "stray", 2},
      {{"bench", "--batch", "100000", "--seqlen", "100000", NULL}, "--seqlen=100000", 2},
      {{"bench", "--seqlen", "2000000000", "--head-dim", "256", NULL}, "--seqlen=2000000000", 2},
      {{"bench", "--config", "block_m=banana", NULL}, "--config", 2},
      {{"bench", "--config", "", NULL}, "--config", 2},
      {{"bench", "--seqlen", "16", "--cache-dir", "/proc/flashjit-no-such-dir", NULL}, "--cache-dir", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const bad_case *c = &cases[i];
    char shown[256] = "";
    size_t used = 0;
    for (int a = 0; c->args[a] && used < sizeof shown - 1; a++)
      used += (size_t)snprintf(shown + used, sizeof shown - used, "%s'%s'", a ? " " : "", c->args[a]);
    if (used >= sizeof shown) used = sizeof shown - 1;
    cli_result r = run_cli(c->args);
    int lines = count_lines(r.err);
    size_t len = strlen(r.err);
    int ok = r.exited && r.code != 0 && (c->code < 0 || r.code == c->code);
    ok = ok && lines == 1 && len > 0 && r.err[len - 1] == '\n' && strstr(r.err, c->names) != NULL;
    ok = ok && r.out[0] == '\0';
    if (len > 0 && r.err[len - 1] == '\n') r.err[len - 1] = '\0';
    check(ok, "flashjit %s: %s %d, %d stderr line%s: %s", shown, r.exited ? "exit" : "SIGNAL",
          r.exited ? r.code : r.signal, lines, lines == 1 ? "" : "s", r.err);
    cli_result_free(&r);
  }
}

/* bench without --device takes FLASHJIT_DEVICE, as the library does, and names it when it is wrong. */
static void test_device_environment(void) {
  setenv("FLASHJIT_DEVICE", "nosuch", 1);
  cli_result r = run_cli((const char *[]){"bench", "--seqlen", "16", NULL});
  check(r.exited && r.code != 0 && count_lines(r.err) == 1 && strstr(r.err, "FLASHJIT_DEVICE=nosuch"),
        "FLASHJIT_DEVICE=nosuch: exit %d: %s", r.code, r.err);
  cli_result_free(&r);
  setenv("FLASHJIT_DEVICE", "cpu", 1);
  r = run_cli((const char *[]){"bench", "--seqlen", "16", "--head-dim", "16", "--repeat", "1", "--json", NULL});
  jvalue *doc = jparse(r.out);
  check(r.exited && r.code == 0 && strcmp(jstring(doc, "backend"), "cpu") == 0,
        "FLASHJIT_DEVICE=cpu: bench runs on %s", jstring(doc, "device_id"));
  jfree(doc);
  cli_result_free(&r);
  unsetenv("FLASHJIT_DEVICE");
}

/* --device all and comma lists: each device's report, then the table; every name resolved first. */
static void test_device_lists(void) {
  cli_result r = run_cli((const char *[]){"bench", "--device", "all", "--seqlen", "64", "--heads", "2", "--head-dim",
                                          "64", "--warmup", "0", "--repeat", "2", "--check", NULL});
  /* the table's cpu:0 row: its median is the one the cpu's own report printed, its ratio to itself 1 */
  const char *time_line = strstr(r.out, "\ntime        "), *row = strstr(r.out, "\n  cpu:0    ");
  double report_ms = time_line ? strtod(time_line + strlen("\ntime        "), NULL) : -1.0;
  /* "  cpu:0    cpu: <name> default  0.069  30.6  1.0  1.00x  ok": the last six fields, read from the end */
  char line[512] = "", *field[6] = {NULL};
  if (row) sscanf(row + 1, "%511[^\n]", line);
  for (int f = 5; f >= 0; f--) {
    char *space = strrchr(line, ' ');
    if (space == NULL) break;
    field[f] = space + 1;
    *space = '\0';
    while (space > line && space[-1] == ' ') *--space = '\0';
  }
  double row_ms = field[1] ? strtod(field[1], NULL) : -2.0, row_gflops = field[2] ? strtod(field[2], NULL) : -1.0;
  const char *ratio = field[4] ? field[4] : "", *verdict = field[5] ? field[5] : "";
  check(r.exited && r.code == 0 && strstr(r.out, "\ndevices     the same problem on ") && row_ms == report_ms &&
            row_gflops > 0 && strcmp(ratio, "1.00x") == 0 && strcmp(verdict, "ok") == 0,
        "bench --device all: the table's cpu:0 row (%.3f ms, %s, check %s) repeats its report's %.3f ms (exit %d)%s%s",
        row_ms, ratio, verdict, report_ms, r.code, r.err[0] ? ": " : "", r.err);
  cli_result_free(&r);

  setenv("FLASHJIT_DEVICE", "all", 1);
  r = run_cli((const char *[]){"bench", "--seqlen", "32", "--head-dim", "16", "--repeat", "1", "--json", NULL});
  unsetenv("FLASHJIT_DEVICE");
  jvalue *doc = r.exited && r.code == 0 ? jparse(r.out) : NULL;
  int cpus = 0, good = doc != NULL && doc->type == J_ARRAY && doc->count >= 1;
  for (int i = 0; good && i < doc->count; i++) {
    good = jnumber(doc->items[i], "ms", 0) > 0 && jnumber(doc->items[i], "head_dim", 0) == 16;
    cpus += strcmp(jstring(doc->items[i], "device_id"), "cpu:0") == 0;
  }
  check(good && cpus == 1, "FLASHJIT_DEVICE=all bench --json: an array of measured devices, cpu:0 once (exit %d)",
        r.code);
  jfree(doc);
  cli_result_free(&r);

  const struct {
    const char *device, *extra, *want;
    int code;
  } bad[] = {
      {"cpu,cpu:0", NULL, "cpu:0 is named twice", 2},
      {"cpu,", NULL, "\"\" in a list", 2},
      {"auto,cpu", NULL, "\"auto\" in a list", 2},
      {"cpu,nosuch", NULL, "device \"nosuch\" not found", 1},
      {"all", "--grid", "--grid=prefill: the grid sets", 2},  /* the grid's flags checked before any device */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r = run_cli((const char *[]){"bench", "--device", bad[i].device, "--seqlen", "16", bad[i].extra,
                                 bad[i].extra ? "prefill" : NULL, NULL});
    check(r.exited && r.code == bad[i].code && count_lines(r.err) == 1 && strstr(r.err, bad[i].want) &&
              r.out[0] == '\0',
          "bench --device %s%s%s: exit %d, nothing measured: %s", bad[i].device, bad[i].extra ? " " : "",
          bad[i].extra ? bad[i].extra : "", r.code, r.err);
    cli_result_free(&r);
  }
}

/* ---- the grid, the peers and exec'd tuner children (on the CPU, small) ----------------------------- */

#define GRID_SMALL "--device", "cpu", "--grid", "prefill", "--tokens", "1024", "--width", "128", "--seqlens", \
                   "512,1024", "--head-dims", "64", "--dtype", "fp32", "--warmup", "0", "--repeat", "2"

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static void test_grid(void) {
  /* The whole small grid: 2 seqlens x 2 masks, batch = tokens / seqlen, heads = width / d, and rates in
   * the halved-when-causal convention. */
  const char *args[] = {"bench", GRID_SMALL, "--json", NULL};
  cli_result r = run_cli(args);
  jvalue *doc = jparse(r.out);
  const jvalue *points = jget(doc, "points");
  int good = r.exited && r.code == 0 && points && points->type == J_ARRAY && points->count == 4 &&
             strstr(jstring(doc, "flops_convention"), "halved when causal") != NULL;
  for (int i = 0; good && i < points->count; i++) {
    const jvalue *p = points->items[i];
    double b = jnumber(p, "batch", 0), h = jnumber(p, "heads", 0), s = jnumber(p, "seqlen", 0);
    const jvalue *causal = jget(p, "causal");
    int is_causal = causal && causal->type == J_BOOL && causal->number != 0;
    double flops = 4.0 * b * h * s * s * 64.0 * (is_causal ? 0.5 : 1.0);
    double tflops = flops / (jnumber(p, "ms", 0) * 1e-3) / 1e12;
    good = b * s == 1024 && h == 2 && fabs(jnumber(p, "flops", 0) - flops) < 1 &&
           fabs(jnumber(p, "tflops", 0) - tflops) <= 1e-6 * tflops && jstring(p, "config_source")[0] != '\0';
  }
  check(good, "bench --grid prefill --json: 4 points, batch*seqlen = tokens, FLOPs halved when causal (exit %d)",
        r.code);
  jfree(doc);
  cli_result_free(&r);

  /* The grid's own dtypes, fp16 and bf16 (the NVIDIA issue's): every point measured, k and v in the
   * point's dtype (an fp8 session's kv_dtype once stayed fp32 here, and every such point failed). */
  const char *half_grid[] = {"bench", "--device", "cpu", "--grid", "prefill", "--tokens", "512", "--width", "128",
                             "--seqlens", "256", "--head-dims", "64", "--dtype", "fp16,bf16", "--mask", "causal",
                             "--warmup", "0", "--repeat", "1", "--json", NULL};
  r = run_cli(half_grid);
  doc = jparse(r.out);
  points = jget(doc, "points");
  good = r.exited && r.code == 0 && points && points->type == J_ARRAY && points->count == 2;
  for (int i = 0; good && i < points->count; i++) good = jnumber(points->items[i], "ms", 0) > 0;
  check(good, "bench --grid prefill --dtype fp16,bf16: both points measured (exit %d): %s", r.code, r.err);
  jfree(doc);
  cli_result_free(&r);

  /* The decode grid: one query per sequence, KV heads of 4 query heads, the listed batches and cache
   * lengths whose product fits in --tokens (2 x 128 is left out), GB/s of q, k, v and o once. */
  const char *decode_grid[] = {"bench", "--device", "cpu", "--grid", "decode", "--batches", "1,2", "--seqlens",
                               "64,128", "--width", "256", "--head-dims", "64", "--tokens", "200", "--dtype", "fp32",
                               "--warmup", "0", "--repeat", "1", "--json", NULL};
  r = run_cli(decode_grid);
  doc = jparse(r.out);
  points = jget(doc, "points");
  good = r.exited && r.code == 0 && points && points->type == J_ARRAY && points->count == 3 &&
         strcmp(jstring(doc, "grid"), "decode") == 0;
  for (int i = 0; good && i < points->count; i++) {
    const jvalue *p = points->items[i];
    double b = jnumber(p, "batch", 0), skv = jnumber(p, "seqlen_kv", 0), ms = jnumber(p, "ms", 0);
    double bytes = (b * 4 * 64 * 2 + b * skv * 1 * 64 * 2) * 4.0;  /* q and o, k and v; fp32 */
    good = jnumber(p, "seqlen", 0) == 1 && jnumber(p, "heads", 0) == 4 && jnumber(p, "kv_heads", 0) == 1 &&
           b * skv <= 200 && fabs(jnumber(p, "bytes", 0) - bytes) < 1 && ms > 0 &&
           fabs(jnumber(p, "gbps", 0) - bytes / (ms * 1e-3) / 1e9) <= 1e-6 * jnumber(p, "gbps", 0) &&
           fabs(jnumber(p, "flops", 0) - 4.0 * b * 4 * skv * 64) < 1;
  }
  check(good, "bench --grid decode --json: 3 points of one query, KV heads of 4, bytes and GB/s (exit %d): %s", r.code,
        r.err);
  jfree(doc);
  cli_result_free(&r);

  /* The grid on every device found (here the CPU; on a GPU machine its GPUs too, the CPU first): each
   * device's table, then every point's rate side by side; --csv starts each row with the device, --json is
   * an array of the devices' grids. */
  const char *grid_all[] = {"bench", "--device", "all", "--grid", "decode", "--batches", "1,2", "--seqlens", "64,128",
                            "--width", "256", "--head-dims", "64", "--tokens", "200", "--dtype", "fp32", "--warmup",
                            "0", "--repeat", "1", NULL, NULL};
  r = run_cli(grid_all);
  const char *side = strstr(r.out, "\ndevices     the grid on ");
  const char *header = side ? strstr(side, "\ndtype ") : NULL;
  int rows = 0, based = 0;
  for (const char *line = header ? strchr(header + 1, '\n') : NULL; line && line[1]; line = strchr(line + 1, '\n')) {
    rows++;
    const char *end = strchr(line + 1, '\n');
    const char *cpu = strstr(line, " | ");  /* the first device's column: the CPU, the ratios' base */
    based += cpu && (!end || cpu < end) && strncmp(line + 1, "fp32", 4) == 0 && strstr(cpu, "  1.00x") &&
             (!end || strstr(cpu, "  1.00x") < end);
  }
  check(r.exited && r.code == 0 && strstr(r.out, "--grid decode on cpu") && side && strstr(side, "\n  cpu:0    ") &&
            header && strstr(header, " |      cpu:0       x") && rows == 3 && based == 3,
        "bench --device all --grid decode: the CPU's table, then 3 points side by side at 1.00x of cpu:0 (exit %d): %s",
        r.code, r.err);
  if (rows != 3 || based != 3) printf("     %s\n", r.out);
  cli_result_free(&r);

  grid_all[21] = "--csv";
  r = run_cli(grid_all);
  int cpu_rows = 0, other = 0;
  for (const char *line = strchr(r.out, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
    if (strncmp(line + 1, "cpu:0,\"cpu: ", 12) == 0 && strstr(line, "\",fp32,64,"))
      cpu_rows++;
    else if (strncmp(line + 1, "cuda:", 5) != 0)
      other++;
  }
  check(r.exited && r.code == 0 && strncmp(r.out, "device_id,device,dtype,head_dim,batch,seqlen_kv,", 48) == 0 &&
            cpu_rows == 3 && other == 0,
        "bench --device all --grid decode --csv: device_id and device first, 3 rows of cpu:0 (exit %d): %s", r.code,
        r.out);
  cli_result_free(&r);

  grid_all[21] = "--json";
  r = run_cli(grid_all);
  doc = jparse(r.out);
  const jvalue *grid0 = doc && doc->type == J_ARRAY && doc->count >= 1 ? doc->items[0] : NULL;
  points = grid0 ? jget(grid0, "points") : NULL;
  check(r.exited && r.code == 0 && grid0 && strcmp(jstring(grid0, "device_id"), "cpu:0") == 0 && points &&
            points->type == J_ARRAY && points->count == 3 && jnumber(points->items[2], "ms", 0) > 0,
        "bench --device all --grid decode --json: an array, cpu:0's grid first with its 3 points (exit %d)", r.code);
  jfree(doc);
  cli_result_free(&r);
  const struct {
    const char *args[16], *want;
  } bad_grids[] = {
      {{"bench", "--grid", "decode", "--mask", "causal", NULL}, "not with --grid decode"},
      {{"bench", "--grid", "prefill", "--batches", "1", NULL}, "--batches: only with --grid decode"},
      {{"bench", "--batches", "1", NULL}, "--batches: only with --grid"},
      {{"bench", "--tokens", "4096", NULL}, "--tokens: only with --grid"},
      {{"bench", "--width", "1024", NULL}, "--width: only with --grid"},
      {{"bench", "--grid", "decode", "--width", "384", NULL}, "do not make KV heads of 4"},
      {{"bench", "--grid", "decode", "--tokens", "10", NULL}, "no batch x cache length"},
      {{"bench", "--grid", "decode", "--batches", "1,x", NULL}, "--batches=1,x"},
  };
  /* --baseline's file is read and checked before the grid runs */
  char bad_json[512], decode_json[512], bare_point[512];
  snprintf(bad_json, sizeof bad_json, "%s/bad.json", scratch);
  snprintf(decode_json, sizeof decode_json, "%s/decode.json", scratch);
  snprintf(bare_point, sizeof bare_point, "%s/bare.json", scratch);
  write_text(bad_json, "{\"grid\": \"prefill\", \"points\": [");
  write_text(decode_json, "{\"grid\": \"decode\", \"points\": []}");
  write_text(bare_point, "{\"grid\": \"prefill\", \"points\": [{\"measured\": true, \"ms\": 1}]}");
  const struct {
    const char *path, *want;
    int grid;
  } bad_baselines[] = {
      {"/nonexistent/base.json", "cannot read: No such file", 1},
      {bad_json, "JSON: ", 1},
      {decode_json, "a --grid decode run, and this is --grid prefill", 1},
      {bare_point, "points[0]: a field is missing", 1},
      {"", "--baseline=: empty path", 1},
      {bad_json, "--baseline: only with --grid", 0},
  };
  for (size_t i = 0; i < sizeof bad_baselines / sizeof bad_baselines[0]; i++) {
    r = run_cli(bad_baselines[i].grid
                    ? (const char *[]){"bench", "--grid", "prefill", "--baseline", bad_baselines[i].path, NULL}
                    : (const char *[]){"bench", "--baseline", bad_baselines[i].path, NULL});
    check(r.exited && r.code == 2 && count_lines(r.err) == 1 && strstr(r.err, bad_baselines[i].want) &&
              r.out[0] == '\0',
          "bench%s --baseline '%s': exit %d, nothing measured: %s", bad_baselines[i].grid ? " --grid prefill" : "",
          bad_baselines[i].path, r.code, r.err);
    cli_result_free(&r);
  }
  /* --plot's path is checked before the grid runs: an hour of measuring must not end in a lost picture */
  char missing_folder[512], in_missing[600];
  snprintf(missing_folder, sizeof missing_folder, "%s/no/such/folder", scratch);
  snprintf(in_missing, sizeof in_missing, "%s/grid.svg", missing_folder);
  const struct {
    const char *path, *want;
    int grid;
  } bad_plots[] = {
      {in_missing, "cannot write in", 1},
      {scratch, "a folder; give the SVG file's path", 1},
      {"", "--plot=: empty path", 1},
      {"x.svg", "--plot: only with --grid", 0},
  };
  for (size_t i = 0; i < sizeof bad_plots / sizeof bad_plots[0]; i++) {
    r = run_cli(bad_plots[i].grid ? (const char *[]){"bench", "--grid", "prefill", "--plot", bad_plots[i].path, NULL}
                                  : (const char *[]){"bench", "--plot", bad_plots[i].path, NULL});
    check(r.exited && r.code == 2 && count_lines(r.err) == 1 && strstr(r.err, bad_plots[i].want) && r.out[0] == '\0',
          "bench%s --plot '%s': exit %d, nothing measured: %s", bad_plots[i].grid ? " --grid prefill" : "",
          bad_plots[i].path, r.code, r.err);
    cli_result_free(&r);
  }
  for (size_t i = 0; i < sizeof bad_grids / sizeof bad_grids[0]; i++) {
    r = run_cli(bad_grids[i].args);
    check(r.exited && r.code == 2 && strstr(r.err, bad_grids[i].want) != NULL, "bench %s %s ...: exit %d, %s",
          bad_grids[i].args[1], bad_grids[i].args[2], r.code, r.err);
    cli_result_free(&r);
  }

  /* --peers with the real script on the CPU: its columns are the CPU peers'; without torch they say n/a
   * and one line says why, with torch (a tiny grid, nothing asserted about time) they are measured.
   * Either way exit 0. */
  const char *peers_args[] = {"bench", GRID_SMALL, "--peers", NULL};
  r = run_cli(peers_args);
  check(r.exited && r.code == 0 && (strstr(r.out, "peers: n/a: ") || strstr(r.out, "in the same run")) &&
            strstr(r.out, "torch-sdpa") && strstr(r.out, "torch-eager") && !strstr(r.out, "triton-fa2"),
        "bench --grid --peers on the CPU: the CPU peers' columns, measured or n/a with the reason, exit %d", r.code);
  cli_result_free(&r);
  setenv("FLASHJIT_PYTHON", "/nonexistent/python3", 1);
  r = run_cli(peers_args);
  check(r.exited && r.code == 0 && strstr(r.out, "peers: n/a: cannot run /nonexistent/python3"),
        "bench --grid --peers without python: n/a, exit %d", r.code);
  unsetenv("FLASHJIT_PYTHON");
  cli_result_free(&r);

  /* A stand-in peers script, as the CPU peers answer: its lines land in the right columns, the ratio is
   * flashjit / peer, a failed check of a scope (per dtype, or per dtype and head dim as on CUDA) costs
   * those points only (they say n/a; its rel_err may be null), and the
   * request carries flashjit's thread count and each point's kv heads and KV length. */
  char fake[512];
  snprintf(fake, sizeof fake, "%s/fake_peers.py", scratch);
  write_text(fake,
             "import json, sys\n"
             "req = json.load(sys.stdin)\n"
             "p0 = req['points'][0]\n"
             "print('a line that is not JSON')\n"
             "print(json.dumps({'kind': 'info', 'torch': 'stand-in', 'device': '%s, %d threads, kv %d, skv %d, "
             "asked for %s' % (req['device'], req['threads'], p0['kv_heads'], p0['seqlen_kv'], "
             "','.join(req.get('peers', ['all'])))}))\n"
             "print(json.dumps({'kind': 'unavailable', 'peer': 'torch-sdpa', 'reason': 'no SDPA here'}))\n"
             "print(json.dumps({'kind': 'check', 'peer': 'torch-eager', 'ok': False, 'scope': 'dtype', "
             "'dtype': 'fp16', 'error': 'no Half'}))\n"
             "print(json.dumps({'kind': 'check', 'peer': 'torch-eager', 'ok': False, 'scope': 'dtype+head_dim', "
             "'dtype': 'fp16', 'head_dim': 64, 'rel_err': None}))\n"
             "for p in req['points']:\n"
             "    if p['dtype'] == 'fp16':\n"
             "        print(json.dumps({'kind': 'unavailable', 'id': p['id'], 'peer': 'torch-eager', "
             "'reason': 'no Half kernel'}))\n"
             "    elif p['id'] == 0:\n"
             "        print(json.dumps({'kind': 'result', 'id': p['id'], 'peer': 'torch-eager', 'ms': 2.0}))\n"
             "    else:\n"
             "        print(json.dumps({'kind': 'error', 'id': p['id'], 'peer': 'torch-eager', 'error': 'boom'}))\n");
  if (system("python3 -c '' >/dev/null 2>&1") == 0) {
    const char *fake_args[] = {"bench", GRID_SMALL, "--peers", "--peers-script", fake, "--json", NULL};
    r = run_cli(fake_args);
    doc = jparse(r.out);
    points = jget(doc, "points");
    const jvalue *first = points && points->type == J_ARRAY && points->count > 1 ? points->items[0] : NULL;
    const jvalue *eager = jget(jget(first, "peers"), "torch-eager");
    double ratio = jnumber(first, "tflops", 0) / jnumber(eager, "tflops", -1);
    check(r.exited && r.code == 0 && eager && fabs(jnumber(eager, "ms", 0) - 2.0) < 1e-9 &&
              fabs(jnumber(eager, "ratio", 0) - ratio) <= 1e-6 * ratio &&
              strcmp(jstring(jget(jget(points->items[1], "peers"), "torch-eager"), "error"), "boom") == 0 &&
              strcmp(jstring(jget(jget(doc, "peers"), "unavailable"), "torch-sdpa"), "no SDPA here") == 0 &&
              !jget(jget(jget(doc, "peers"), "unavailable"), "torch-eager"),
          "bench --grid --peers with a stand-in script: results, errors and ratios in place (exit %d)", r.code);
    jfree(doc);
    cli_result_free(&r);

    /* --baseline: an earlier run's JSON read back; every point gets its time there and the ratio */
    char base_path[512], base_array[512];
    snprintf(base_path, sizeof base_path, "%s/base.json", scratch);
    snprintf(base_array, sizeof base_array, "%s/base_array.json", scratch);
    const char *base_args[] = {"bench", GRID_SMALL, "--json", NULL};
    r = run_cli(base_args);
    write_text(base_path, r.out);
    char *wrapped = malloc(strlen(r.out) + 3);
    if (wrapped) {
      sprintf(wrapped, "[%s]", r.out);
      write_text(base_array, wrapped);
      free(wrapped);
    }
    doc = jparse(r.out);
    const jvalue *before = jget(doc, "points");
    for (int form = 0; form < 2; form++) {
      const char *against[] = {"bench", GRID_SMALL, "--json", "--baseline", form ? base_array : base_path, NULL};
      cli_result now = run_cli(against);
      jvalue *later = jparse(now.out);
      const jvalue *after = jget(later, "points");
      int right = 0;
      for (int i = 0; before && after && i < after->count && i < before->count; i++) {
        const jvalue *b = jget(after->items[i], "baseline");
        double then = jnumber(before->items[i], "ms", -1), here = jnumber(after->items[i], "ms", -2);
        right += b && jnumber(b, "ms", 0) == then && fabs(jnumber(b, "ratio", 0) - then / here) <= 1e-6 * then / here;
      }
      check(now.exited && now.code == 0 && after && after->count == 4 && right == 4 &&
                strcmp(jstring(jget(later, "baseline"), "device_id"), "cpu:0") == 0,
            "bench --grid --baseline (%s): every point with its time there and the ratio (%d of 4, exit %d) %s",
            form ? "an array, as --device all writes" : "one grid", right, now.code, now.err);
      jfree(later);
      cli_result_free(&now);
    }
    jfree(doc);
    cli_result_free(&r);
    const char *base_csv[] = {"bench", GRID_SMALL, "--csv", "--baseline", base_path, NULL};
    r = run_cli(base_csv);
    check(r.exited && r.code == 0 && strstr(r.out, ",config,baseline_ms,baseline_tflops,ratio_vs_baseline\n"),
          "bench --grid --csv --baseline: its three columns after flashjit's (exit %d)", r.code);
    cli_result_free(&r);

    /* --plot: the same grid drawn, a panel per mask, the sequence lengths across, flashjit's line solid and
     * the peer's dashed, broken where the peer has no figure; each marker where its rate puts it (the
     * panel's rate axis ends at 1, 2 or 5 times a power of ten at least its largest rate) */
    char svg_path[512];
    snprintf(svg_path, sizeof svg_path, "%s/grid.svg", scratch);
    const char *plot_args[] = {"bench", GRID_SMALL, "--peers", "--peers-script", fake, "--json", "--plot", svg_path,
                               NULL};
    r = run_cli(plot_args);
    doc = jparse(r.out);
    points = jget(doc, "points");
    char *svg = read_text_file(svg_path);
    int series = 0, markers_found = 0, dashed_alone = 0;
    for (const char *x = svg; x && (x = strstr(x, "class=\"series\"")) != NULL; x++) series++;
    if (svg && points && points->type == J_ARRAY && points->count == 4) {
      /* the first panel (not causal: points 0 and 1), its plot area from y 94 to 282 (one legend row) */
      double t0 = jnumber(points->items[0], "tflops", 0), t1 = jnumber(points->items[1], "tflops", 0);
      double peer_rate = jnumber(points->items[0], "flops", 0) / 2e-3 / 1e12;
      double most = fmax(fmax(t0, t1), peer_rate), ceiling = pow(10.0, floor(log10(most)));
      while (ceiling < most) ceiling = ceiling * 2 < most ? (ceiling * 5 < most ? ceiling * 10 : ceiling * 5) : ceiling * 2;
      double want[3] = {282 - 188 * t0 / ceiling, 282 - 188 * t1 / ceiling, 282 - 188 * peer_rate / ceiling};
      for (int i = 0; i < 3; i++)
        for (const char *x = svg; (x = strstr(x, " cy=\"")) != NULL; x++)
          if (fabs(strtod(x + 5, NULL) - want[i]) < 0.06) {
            markers_found++;
            break;
          }
      const char *second = strstr(svg, "class=\"series\"");
      second = second ? strstr(second + 1, "class=\"series\"") : NULL;
      const char *d = second ? strstr(second, " d=\" M") : NULL;
      dashed_alone = second && strstr(second, "stroke-dasharray") < d && d && strchr(d + 5, '"') &&
                     !memchr(d + 5, 'L', (size_t)(strchr(d + 5, '"') - (d + 5)));
    }
    check(r.exited && r.code == 0 && svg && strncmp(svg, "<?xml", 5) == 0 && strstr(svg, "<svg ") &&
              strstr(svg, "</svg>\n") && strstr(svg, ">fp32 d64, not causal<") && strstr(svg, ">fp32 d64, causal<") &&
              strstr(svg, ">512<") && strstr(svg, ">1k<") && strstr(svg, ">torch-eager<") && series == 4 &&
              markers_found == 3 && dashed_alone,
          "bench --grid --plot: 2 panels x 2 lines, the markers at their rates, the peer's dashed line broken where it "
          "failed (exit %d, %d lines, %d of 3 markers)", r.code, series, markers_found);
    free(svg);
    jfree(doc);
    cli_result_free(&r);

    /* One shape: a peers array with each CPU peer's figures or reason, rates from the same FLOP count. */
    const char *one_args[] = {"bench", "--device", "cpu", "--heads", "2", "--kv-heads", "1", "--seqlen", "64",
                              "--seqlen-kv", "96", "--head-dim", "64", "--dtype", "fp32", "--causal", "--warmup",
                              "0", "--repeat", "2", "--threads", "1", "--peers", "--peers-script", fake, "--json",
                              NULL};
    r = run_cli(one_args);
    doc = jparse(r.out);
    const jvalue *list = jget(doc, "peers");
    const jvalue *sdpa = list && list->type == J_ARRAY && list->count == 2 ? list->items[0] : NULL;
    eager = sdpa ? list->items[1] : NULL;
    double gflops = jnumber(doc, "flops", 0) / 2e-3 / 1e9;
    check(r.exited && r.code == 0 && strcmp(jstring(sdpa, "peer"), "torch-sdpa") == 0 &&
              strcmp(jstring(sdpa, "reason"), "no SDPA here") == 0 && strcmp(jstring(eager, "peer"), "torch-eager") == 0 &&
              fabs(jnumber(eager, "gflops", 0) - gflops) <= 1e-6 * gflops &&
              fabs(jnumber(eager, "ratio", 0) - jnumber(doc, "gflops", 0) / gflops) <= 1e-6 * jnumber(eager, "ratio", 0) &&
              strstr(jstring(doc, "peers_info"), "cpu:0, 1 threads, kv 1, skv 96"),
          "bench --peers --json (one shape) with a stand-in script: a peers array, ratio = flashjit / peer (exit %d: %s)",
          r.code, jstring(doc, "peers_info"));
    jfree(doc);
    cli_result_free(&r);

    /* --peer-list: the request names the chosen peers, and only their columns are shown. */
    const char *list_args[] = {"bench", "--device", "cpu", "--heads", "2", "--seqlen", "64", "--head-dim", "64",
                               "--dtype", "fp32", "--warmup", "0", "--repeat", "2", "--threads", "1",
                               "--peer-list", "torch-eager", "--peers-script", fake, "--json", NULL};
    r = run_cli(list_args);
    doc = jparse(r.out);
    list = jget(doc, "peers");
    check(r.exited && r.code == 0 && list && list->type == J_ARRAY && list->count == 1 &&
              strcmp(jstring(list->items[0], "peer"), "torch-eager") == 0 &&
              strstr(jstring(doc, "peers_info"), "asked for torch-eager") &&
              strstr(jstring(doc, "peers_info"), "asked for torch-eager,") == NULL,
          "bench --peer-list torch-eager: the request asks for that peer alone, one column (exit %d: %s)", r.code,
          jstring(doc, "peers_info"));
    jfree(doc);
    cli_result_free(&r);

    const char *half_args[] = {"bench", "--device", "cpu", "--heads", "2", "--seqlen", "64", "--head-dim", "64",
                               "--dtype", "fp16", "--warmup", "0", "--repeat", "2", "--peers", "--peers-script", fake,
                               NULL};
    r = run_cli(half_args);
    check(r.exited && r.code == 0 && strstr(r.out, "torch-sdpa    n/a: no SDPA here") &&
              strstr(r.out, "torch-eager   n/a: no Half kernel"),
          "bench --peers (one shape, text): a dtype the peer lacks says n/a and why (exit %d)", r.code);
    cli_result_free(&r);
  } else {
    printf("     (no python3: the stand-in peers script is not run)\n");
  }

  /* One shape with the real script on the CPU: measured (torch here; a tiny shape, no time asserted) or
   * n/a with the reason (no python3 or torch), exit 0 either way. */
  const char *real_args[] = {"bench", "--device", "cpu", "--heads", "2", "--seqlen", "64", "--head-dim", "64",
                             "--dtype", "fp32", "--warmup", "0", "--repeat", "2", "--peers", NULL};
  r = run_cli(real_args);
  check(r.exited && r.code == 0 &&
            (strstr(r.out, "\npeers       n/a: ") || (strstr(r.out, "in the same run") && strstr(r.out, "torch-sdpa") &&
                                                     strstr(r.out, "torch-eager"))),
        "bench --peers (one shape) with the real script on the CPU: measured or n/a with the reason, exit %d", r.code);
  cli_result_free(&r);

  static const bad_case bad[] = {
      {{"bench", "--grid", "nonsense", NULL}, "--grid=nonsense", 2},
      {{"bench", "--grid", "prefill", "--batch", "2", NULL}, "--grid=prefill", 2},
      {{"bench", "--grid", "prefill", "--tokens", "100", NULL}, "--tokens=100", 2},
      {{"bench", "--grid", "prefill", "--seqlens", "512,x", NULL}, "--seqlens=512,x", 2},
      {{"bench", "--grid", "prefill", "--head-dims", "96", NULL}, "--width=2048", 2},
      {{"bench", "--grid", "prefill", "--dtype", "fp16,int8", NULL}, "int8", 2},
      {{"bench", "--grid", "prefill", "--mask", "sometimes", NULL}, "--mask=sometimes", 2},
      {{"bench", "--grid", "prefill", "--check", NULL}, "--check", 2},
      {{"bench", "--grid", "prefill", "--json", "--csv", NULL}, "--json with --csv", 2},
      {{"bench", "--peers-script", "x.py", NULL}, "--peers-script=x.py", 2},
      {{"bench", "--csv", NULL}, "--csv", 2},
      {{"bench", "--peer-list", "sdpa-flash,nope", NULL}, "--peer-list=sdpa-flash,nope", 2},
      {{"bench", "--peer-list", "sdpa-flash,", NULL}, "--peer-list=sdpa-flash,", 2},
      {{"bench", "--grid", "prefill", "--peers-script", "x.py", NULL}, "--peers-script=x.py", 2},
      {{"bench", "--device", "cuda:3", NULL}, "cuda:3", 1},
      {{"tune", "--isolation", "sideways", NULL}, "--isolation=sideways", 2},
      {{"tune", "--confirm", "9", NULL}, "--confirm=9", 2},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r = run_cli(bad[i].args);
    check(r.exited && r.code == bad[i].code && count_lines(r.err) == 1 && strstr(r.err, bad[i].names),
          "%s %s %s: exit %d, one line naming %s", bad[i].args[0], bad[i].args[1], bad[i].args[2] ? bad[i].args[2] : "",
          r.code, bad[i].names);
    cli_result_free(&r);
  }
}

/* The first problem of a `tune --json` report, or NULL. */
static const jvalue *first_problem(const jvalue *doc) {
  const jvalue *problems = jget(doc, "problems");
  return problems && problems->type == J_ARRAY && problems->count ? problems->items[0] : NULL;
}

/* Tuner children that exec the command (as on a GPU) on the CPU: a candidate that faults (SIGSEGV
 * here) and one that reports a device fault and leaves cost themselves only. */
static void test_tune_exec_isolation(void) {
  char cache[512];
  snprintf(cache, sizeof cache, "%s/cache-tune-exec", scratch);
  setenv("FLASHJIT_TUNE_FAULT", "fault:block_m=16 block_n=8;lost:block_m=32 block_n=8", 1);
  const char *args[] = {"tune", "--device", "cpu", "--isolation", "exec", "--heads", "2", "--seqlen", "128",
                        "--head-dim", "64", "--dtype", "fp32", "--strategy", "exhaustive", "--space",
                        "block_m=16,32 block_n=8,12 unroll=2 pv_rows=6 pv_vectors=2,4", "--threads", "1",
                        "--repeat", "2", "--json", "--quiet", "--cache-dir", cache, NULL};
  cli_result r = run_cli(args);
  unsetenv("FLASHJIT_TUNE_FAULT");
  jvalue *doc = jparse(r.out);
  const jvalue *p = first_problem(doc);
  const jvalue *outcomes = jget(p, "outcomes");
  const char *winner = jstring(p, "tuned_config");
  check(r.exited && r.code == 0 && jnumber(outcomes, "crash", 0) >= 1 && jnumber(outcomes, "launch_error", 0) >= 1 &&
            jnumber(outcomes, "ok", 0) >= 1 && winner[0] && strstr(winner, "block_n=8") == NULL,
        "tune --isolation exec: faults recorded (crash %.0f, launch_error %.0f), %.0f ok, winner %s (exit %d)",
        jnumber(outcomes, "crash", -1), jnumber(outcomes, "launch_error", -1), jnumber(outcomes, "ok", -1), winner,
        r.code);
  jfree(doc);
  cli_result_free(&r);
}

/* A shape whose calls give more than tensors (a paged cache, a window, ragged queries): tuned in exec'd
 * children, which rebuild its tensors from the shape alone, under a key holding key_part, with two
 * candidates or more and none checking wrong against the reference; then warmed from a shapes file of
 * shape_line (the tuned kernel, filed under that key); a shapes file of bad_line is refused naming
 * bad_part. problem: tune's problem flags, NULL-terminated. */
static void check_shape_tune_and_warm(const char *name, const char *const *problem, const char *space,
                                      const char *key_part, const char *shape_line, const char *bad_line,
                                      const char *bad_part) {
  char cache[512], shapes[600], bad[600];
  snprintf(cache, sizeof cache, "%s/cache-%s", scratch, name);
  const char *args[64] = {"tune", "--device", "cpu", "--isolation", "exec"};
  int n = 5;
  for (int i = 0; problem[i] != NULL && n < 48; i++) args[n++] = problem[i];
  const char *rest[] = {"--strategy", "exhaustive", "--space", space, "--threads", "1", "--repeat", "2", "--json",
                        "--quiet", "--cache-dir", cache, NULL};
  for (int i = 0; rest[i] != NULL; i++) args[n++] = rest[i];
  args[n] = NULL;
  cli_result r = run_cli(args);
  jvalue *doc = jparse(r.out);
  const jvalue *p = first_problem(doc);
  const jvalue *outcomes = jget(p, "outcomes");
  check(r.exited && r.code == 0 && strstr(jstring(p, "problem"), key_part) != NULL && jnumber(outcomes, "ok", 0) >= 2 &&
            jnumber(outcomes, "wrong_result", -1) == 0 && jstring(p, "tuned_config")[0],
        "tune of a %s shape (exec children): key \"%s\", %.0f ok, %.0f wrong, winner %s (exit %d)", name,
        jstring(p, "problem"), jnumber(outcomes, "ok", -1), jnumber(outcomes, "wrong_result", -1),
        jstring(p, "tuned_config"), r.code);
  jfree(doc);
  cli_result_free(&r);

  snprintf(shapes, sizeof shapes, "%s/%s.shapes", scratch, name);
  write_text(shapes, shape_line);
  const char *warm[] = {"cache", "warm", "--device", "cpu", "--shapes", shapes, "--cache-dir", cache, NULL};
  r = run_cli(warm);
  check(r.exited && r.code == 0 && strstr(r.out, "tuned") != NULL,
        "cache warm of a shapes file of the %s shape: the tuned kernel (exit %d): %s", name, r.code, r.out);
  cli_result_free(&r);
  snprintf(bad, sizeof bad, "%s/bad-%s.shapes", scratch, name);
  write_text(bad, bad_line);
  const char *warm_bad[] = {"cache", "warm", "--device", "cpu", "--shapes", bad, "--cache-dir", cache, NULL};
  r = run_cli(warm_bad);
  check(r.exited && r.code == 2 && strstr(r.err, bad_part) != NULL, "%s in a shapes file: exit %d, %s", bad_part,
        r.code, r.err);
  cli_result_free(&r);
}

/* A paged varlen decode step (the block table rebuilt from the shape; the same shape unpaged has no
 * winner, so "tuned" means the paged key's), a causal sliding window, ragged queries (the packed
 * queries and their offsets rebuilt from the shape), and a decode step with sinks (their logits too). */
static void test_shapes_of_their_own(void) {
  check_shape_tune_and_warm("paged",
                            (const char *const[]){"--batch", "2", "--heads", "4", "--kv-heads", "2", "--seqlen", "1",
                                                  "--seqlen-kv", "97", "--head-dim", "64", "--dtype", "fp32",
                                                  "--causal", "--varlen", "--page-size", "16", NULL},
                            "block_m=16 block_n=6,8 unroll=2 pv_rows=4 pv_vectors=4", " varlen=1 page=16 ",
                            "# a paged decode step\nbatch=2 heads=4 kv_heads=2 seqlen_q=1 seqlen_kv=97 head_dim=64 "
                            "dtype=fp32 causal varlen page_size=16\n",
                            "heads=4 page_size=0\n", "page_size=0");
  check_shape_tune_and_warm("head-dim-v",
                            (const char *const[]){"--heads", "2", "--seqlen", "70", "--head-dim", "48", "--head-dim-v",
                                                  "24", "--dtype", "fp32", "--causal", NULL},
                            "block_m=16,32 block_n=6 unroll=2 pv_rows=4 pv_vectors=4", " dv=24 ",
                            "# an MLA-like prefill, v narrower than q and k\nheads=2 seqlen=70 head_dim=48 head_dim_v=24 "
                            "dtype=fp32 causal\n",
                            "heads=2 head_dim_v=20\n", "head_dim_v=20 is not a multiple of 8");
  check_shape_tune_and_warm("window",
                            (const char *const[]){"--heads", "2", "--seqlen", "150", "--head-dim", "64", "--dtype",
                                                  "fp32", "--causal", "--window-left", "20", NULL},
                            "block_m=16,32 block_n=6 unroll=2 pv_rows=4 pv_vectors=4", " causal=1 window=1 ",
                            "# a local layer\nheads=2 seqlen=150 head_dim=64 dtype=fp32 causal window_left=20\n",
                            "heads=4 window_left=-5\n", "window_left=-5");
  check_shape_tune_and_warm("ragged",
                            (const char *const[]){"--batch", "3", "--heads", "4", "--kv-heads", "2", "--seqlen", "70",
                                                  "--seqlen-kv", "100", "--head-dim", "64", "--dtype", "fp32",
                                                  "--causal", "--varlen-q", NULL},
                            "block_m=16,32 block_n=6 unroll=2 pv_rows=4 pv_vectors=4", " varlen_q=1 ",
                            "# a prefill of prompts packed end to end\nbatch=3 heads=4 kv_heads=2 seqlen_q=70 "
                            "seqlen_kv=100 head_dim=64 dtype=fp32 causal varlen_q\n",
                            "heads=4 varlen_q=2\n", "varlen_q=2");
  check_shape_tune_and_warm("sinks",
                            (const char *const[]){"--batch", "2", "--heads", "8", "--kv-heads", "2", "--seqlen", "1",
                                                  "--seqlen-kv", "300", "--head-dim", "64", "--dtype", "fp32",
                                                  "--causal", "--sinks", NULL},
                            "block_m=16 block_n=6,8 unroll=2 pv_rows=4 pv_vectors=4", " sinks=1 ",
                            "# a gpt-oss decode step\nbatch=2 heads=8 kv_heads=2 seqlen_q=1 seqlen_kv=300 head_dim=64 "
                            "dtype=fp32 causal sinks\n",
                            "heads=4 sinks=2\n", "sinks=2");
  check_shape_tune_and_warm("softcap",
                            (const char *const[]){"--heads", "4", "--kv-heads", "2", "--seqlen", "150", "--head-dim",
                                                  "64", "--dtype", "fp32", "--causal", "--window-left", "20",
                                                  "--softcap", "2", NULL},
                            "block_m=16,32 block_n=6 unroll=2 pv_rows=4 pv_vectors=4", " softcap=1 ",
                            "# a Gemma 2 local layer\nheads=4 kv_heads=2 seqlen=150 head_dim=64 dtype=fp32 causal "
                            "window_left=20 softcap=2\n",
                            "heads=4 softcap=-3\n", "softcap=-3: expected a finite number, at least 0");
}

/* An fp8 cache's kernel (and one with packed keys and ALiBi) warmed from the flags and from a shapes
 * file, then loaded by bench from the disk (no compile); bad fp8 names refused by name. */
static void test_fp8_warm(void) {
  char cache[512], shapes[600], bad[600];
  snprintf(cache, sizeof cache, "%s/cache-fp8", scratch);
  const char *warm[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--heads", "2", "--seqlen", "64",
                        "--head-dim", "64", "--kv-dtype", "fp8_e4m3", NULL};
  cli_result r = run_cli(warm);
  check(r.exited && r.code == 0 && strstr(r.out, "kv=fp8_e4m3") != NULL && strstr(r.out, "jit") != NULL,
        "cache warm --kv-dtype fp8_e4m3: compiled (exit %d): %s", r.code, r.out);
  cli_result_free(&r);
  const char *bench[] = {"bench", "--device", "cpu", "--cache-dir", cache, "--heads", "2", "--seqlen", "64",
                         "--head-dim", "64", "--kv-dtype", "fp8_e4m3", "--repeat", "1", "--json", NULL};
  r = run_cli(bench);
  jvalue *doc = jparse(r.out);
  check(r.exited && r.code == 0 && strcmp(jstring(doc, "kernel_source"), "disk") == 0,
        "bench of the warmed fp8 shape loads its kernel from the disk: %s (exit %d)", jstring(doc, "kernel_source"),
        r.code);
  jfree(doc);
  cli_result_free(&r);
  snprintf(shapes, sizeof shapes, "%s/fp8.shapes", scratch);
  write_text(shapes, "# a decode step over an E5M2 cache\nheads=4 kv_heads=2 seqlen_q=1 seqlen_kv=300 head_dim=64 "
                     "causal kv_dtype=fp8_e5m2\n");
  const char *warm_file[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--shapes", shapes, NULL};
  r = run_cli(warm_file);
  check(r.exited && r.code == 0 && strstr(r.out, "jit") != NULL, "cache warm of a shapes file with kv_dtype=fp8_e5m2 "
        "(exit %d): %s", r.code, r.out);
  cli_result_free(&r);
  snprintf(bad, sizeof bad, "%s/bad-fp8.shapes", scratch);
  write_text(bad, "heads=4 kv_dtype=fp4\n");
  const char *warm_bad[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--shapes", bad, NULL};
  r = run_cli(warm_bad);
  check(r.exited && r.code == 2 && strstr(r.err, "kv_dtype=fp4: expected fp8_e4m3 or fp8_e5m2") != NULL,
        "kv_dtype=fp4 in a shapes file: exit %d, %s", r.code, r.err);
  cli_result_free(&r);
  /* DeepSeek's preset: its prefill (q and k 192, v 128) and its absorbed decode (576 / 512, one KV head) */
  const char *warm_deepseek[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--preset", "deepseek-v3", NULL};
  r = run_cli(warm_deepseek);
  check(r.exited && r.code == 0 && strstr(r.out, "deepseek-v3 prefill s4096") != NULL &&
            strstr(r.out, "deepseek-v3 decode kv8192") != NULL && strstr(r.out, "pack_gqa=1") != NULL,
        "cache warm --preset deepseek-v3 (exit %d): %s", r.code, r.out);
  cli_result_free(&r);
  const char *list_presets[] = {"tune", "--list-presets", NULL};
  r = run_cli(list_presets);
  check(r.exited && r.code == 0 && strstr(r.out, "head dim 192 (v 128); decode absorbed: 1 KV head, head dim 576 (v 512)"),
        "tune --list-presets describes DeepSeek's two forms (exit %d)", r.code);
  cli_result_free(&r);
  const char *warm_more[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--heads", "4", "--kv-heads", "2",
                             "--seqlen", "64", "--head-dim", "64", "--causal", "--packed-kv", "--alibi", NULL};
  r = run_cli(warm_more);
  check(r.exited && r.code == 0 && strstr(r.out, "packed_k alibi") != NULL, "cache warm --packed-kv --alibi (exit %d): %s",
        r.code, r.out);
  cli_result_free(&r);
  const char *bench_more[] = {"bench", "--device", "cpu", "--cache-dir", cache, "--heads", "4", "--kv-heads", "2",
                              "--seqlen", "64", "--head-dim", "64", "--causal", "--packed-kv", "--alibi", "--repeat", "1",
                              "--json", NULL};
  r = run_cli(bench_more);
  doc = jparse(r.out);
  check(r.exited && r.code == 0 && strcmp(jstring(doc, "kernel_source"), "disk") == 0,
        "bench of the warmed packed-keys ALiBi shape loads its kernel from the disk: %s (exit %d)",
        jstring(doc, "kernel_source"), r.code);
  jfree(doc);
  cli_result_free(&r);
  const char *warm_bias[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--heads", "4", "--seqlen", "64",
                             "--head-dim", "64", "--causal", "--attn-bias", "fp32", NULL};
  r = run_cli(warm_bias);
  check(r.exited && r.code == 0 && strstr(r.out, "bias=fp32") != NULL, "cache warm --attn-bias fp32 (exit %d): %s",
        r.code, r.out);
  cli_result_free(&r);
  const char *bench_bias[] = {"bench", "--device", "cpu", "--cache-dir", cache, "--heads", "4", "--seqlen", "64",
                              "--head-dim", "64", "--causal", "--attn-bias", "fp32", "--repeat", "1", "--json", NULL};
  r = run_cli(bench_bias);
  doc = jparse(r.out);
  check(r.exited && r.code == 0 && strcmp(jstring(doc, "kernel_source"), "disk") == 0,
        "bench of the warmed attn_bias shape loads its kernel from the disk: %s (exit %d)", jstring(doc, "kernel_source"),
        r.code);
  jfree(doc);
  cli_result_free(&r);
  const char *warm_bias_bad[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--attn-bias", "fp16", NULL};
  r = run_cli(warm_bias_bad);
  check(r.exited && r.code == 2 && strstr(r.err, "--attn-bias=fp16: fp32 or --dtype's bf16") != NULL,
        "cache warm --attn-bias fp16 beside bf16: exit %d, %s", r.code, r.err);
  cli_result_free(&r);
  const char *warm_flag_bad[] = {"cache", "warm", "--device", "cpu", "--cache-dir", cache, "--kv-dtype", "fp16", NULL};
  r = run_cli(warm_flag_bad);
  check(r.exited && r.code == 2 && strstr(r.err, "--kv-dtype=fp16") != NULL, "cache warm --kv-dtype fp16 beside bf16: "
        "exit %d, %s", r.code, r.err);
  cli_result_free(&r);
}

int main(void) {
  snprintf(scratch, sizeof scratch, "/tmp/fj_test_cli_XXXXXX");
  if (mkdtemp(scratch) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  char cache_dir[512];
  snprintf(cache_dir, sizeof cache_dir, "%s/cache", scratch);
  /* The command must not depend on (or write into) the user's environment. */
  setenv("FLASHJIT_CACHE_DIR", cache_dir, 1);
  unsetenv("FLASHJIT_DEVICE");
  unsetenv("FLASHJIT_LOG");
  unsetenv("FLASHJIT_CPU_FEATURES");
  printf("     command: %s\n", FJ_TEST_CLI);

  test_help_and_version();
  test_info(cache_dir);
  test_bench();
  test_bad_invocations();
  test_device_environment();
  test_device_lists();
  test_grid();
  test_tune_exec_isolation();
  test_shapes_of_their_own();
  test_fp8_warm();

  remove_tree(scratch);
  return check_summary();
}
