/* bench_baseline.c: `flashjit bench --grid ... --baseline FILE`: an earlier run's `--json` output (one
 * device's grid, or the array `--device all` writes, whose first grid is taken) read back, so that each
 * point of this run gets that run's time beside its own and their ratio: one GPU against another that is
 * in a different machine, or this commit against the last. Points match when every shape field and the
 * dtype are equal; the file is read and checked before anything is measured. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench.h"
#include "bench/cli.h"
#include "cache/json_reader.h"

#define BASELINE_MAX_BYTES ((size_t)64 << 20)

typedef struct baseline_point {
  char dtype[16];
  int64_t head_dim, seqlen, seqlen_kv, batch, heads, kv_heads;
  int causal;
  double ms;
} baseline_point;

struct bench_baseline {
  char device[256], device_id[64];
  baseline_point *points;
  int count;
};

static int baseline_fail(const bench_options *o, const char *format, const char *detail) {
  char why[600];
  snprintf(why, sizeof why, format, detail);
  cli_error(BENCH_COMMAND, "--baseline=%s: %s", o->baseline, why);
  return CLI_EXIT_USAGE;
}

static char *baseline_read(const char *path, size_t *size, char *why, size_t why_size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(why, why_size, "cannot read: %s", strerror(errno));
    return NULL;
  }
  struct stat st;
  memset(&st, 0, sizeof st);
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > BASELINE_MAX_BYTES) {
    snprintf(why, why_size, "%s", S_ISDIR(st.st_mode) ? "a folder; give the JSON file" : !S_ISREG(st.st_mode)
                                                         ? "not a regular file" : "over 64 MiB");
    fclose(f);
    return NULL;
  }
  long length = (long)st.st_size;
  char *text = malloc((size_t)length + 1);
  *size = text ? fread(text, 1, (size_t)length, f) : 0;
  int failed = ferror(f) || *size != (size_t)length;
  fclose(f);
  if (text == NULL || failed) {
    snprintf(why, why_size, "%s", text == NULL ? "out of memory" : "a read error");
    free(text);
    return NULL;
  }
  return text;
}

static int64_t baseline_int(const json_value *point, const char *key, int *ok) {
  const json_value *v = json_get(point, key);
  if (v == NULL || v->type != JSON_NUMBER || !v->is_integer) {
    *ok = 0;
    return 0;
  }
  return v->integer;
}

/* The grid object to read: the document itself, or the first object of an array that has points. */
static const json_value *baseline_grid(const json_value *root) {
  if (root->type == JSON_OBJECT) return root;
  for (size_t i = 0; root->type == JSON_ARRAY && i < root->count; i++)
    if (json_get(&root->items[i], "points") != NULL) return &root->items[i];
  return NULL;
}

int bench_baseline_load(bench_options *o) {
  if (o->baseline[0] == '\0') {
    cli_error(BENCH_COMMAND, "--baseline=: empty path");
    return CLI_EXIT_USAGE;
  }
  char why[300];
  size_t size = 0;
  char *text = baseline_read(o->baseline, &size, why, sizeof why);
  if (text == NULL) return baseline_fail(o, "%s", why);
  json_value *root = NULL;
  fj_status status = json_parse(text, size, &root);
  free(text);
  if (status != FJ_OK) return baseline_fail(o, "%s", fj_last_error());
  const json_value *grid = baseline_grid(root);
  const json_value *points = grid ? json_get(grid, "points") : NULL;
  const json_value *name = grid ? json_get(grid, "grid") : NULL;
  int code = CLI_EXIT_OK;
  if (points == NULL || points->type != JSON_ARRAY || name == NULL || name->type != JSON_STRING)
    code = baseline_fail(o, "%s", "not what flashjit bench --grid --json writes (no grid with \"points\")");
  else if (strcmp(name->string, o->grid) != 0) {
    cli_error(BENCH_COMMAND, "--baseline=%s: a --grid %.32s run, and this is --grid %s", o->baseline, name->string,
              o->grid);
    code = CLI_EXIT_USAGE;
  }
  struct bench_baseline *b = code == CLI_EXIT_OK ? calloc(1, sizeof *b) : NULL;
  if (code == CLI_EXIT_OK && b != NULL) b->points = calloc(points->count ? points->count : 1, sizeof *b->points);
  if (code == CLI_EXIT_OK && (b == NULL || b->points == NULL)) {
    cli_error(BENCH_COMMAND, "--baseline=%s: out of memory", o->baseline);
    code = CLI_EXIT_FAILURE;
  }
  for (size_t i = 0; code == CLI_EXIT_OK && i < points->count; i++) {
    const json_value *p = &points->items[i];
    const json_value *measured = json_get(p, "measured"), *ms = json_get(p, "ms"), *dtype = json_get(p, "dtype");
    const json_value *causal = json_get(p, "causal");
    if (measured == NULL || measured->type != JSON_TRUE) continue;  /* a point that failed there */
    baseline_point *q = &b->points[b->count];
    int ok = ms && ms->type == JSON_NUMBER && ms->number > 0.0 && dtype && dtype->type == JSON_STRING &&
             dtype->length < sizeof q->dtype && causal && (causal->type == JSON_TRUE || causal->type == JSON_FALSE);
    q->head_dim = baseline_int(p, "head_dim", &ok);
    q->seqlen = baseline_int(p, "seqlen", &ok);
    q->seqlen_kv = baseline_int(p, "seqlen_kv", &ok);
    q->batch = baseline_int(p, "batch", &ok);
    q->heads = baseline_int(p, "heads", &ok);
    q->kv_heads = baseline_int(p, "kv_heads", &ok);
    if (!ok) {
      char where[64];
      snprintf(where, sizeof where, "points[%zu]", i);
      code = baseline_fail(o, "%s: a field is missing or not a number (dtype, head_dim, causal, seqlen, seqlen_kv, "
                           "batch, heads, kv_heads, ms)", where);
      break;
    }
    snprintf(q->dtype, sizeof q->dtype, "%s", dtype->string);
    q->causal = causal->type == JSON_TRUE;
    q->ms = ms->number;
    b->count++;
  }
  if (code == CLI_EXIT_OK) {
    const json_value *device = json_get(grid, "device"), *device_id = json_get(grid, "device_id");
    snprintf(b->device, sizeof b->device, "%s", device && device->type == JSON_STRING ? device->string : "?");
    snprintf(b->device_id, sizeof b->device_id, "%s",
             device_id && device_id->type == JSON_STRING ? device_id->string : "?");
    o->baseline_data = b;
  } else if (b != NULL) {
    free(b->points);
    free(b);
  }
  json_free(root);
  return code;
}

int bench_baseline_apply(const bench_options *o, bench_grid_point *points, int count) {
  const struct bench_baseline *b = o->baseline_data;
  int matched = 0;
  for (int i = 0; b != NULL && i < count; i++) {
    bench_grid_point *p = &points[i];
    p->baseline_ms = 0.0;
    for (int j = 0; j < b->count; j++) {
      const baseline_point *q = &b->points[j];
      if (strcmp(q->dtype, core_dtype_name(p->dtype)) == 0 && q->head_dim == p->head_dim && q->causal == p->causal &&
          q->seqlen == p->seqlen && q->seqlen_kv == p->seqlen_kv && q->batch == p->batch && q->heads == p->heads &&
          q->kv_heads == p->kv_heads) {
        p->baseline_ms = q->ms;
        matched++;
        break;
      }
    }
  }
  return matched;
}

const char *bench_baseline_device(const bench_options *o, int id) {
  const struct bench_baseline *b = o->baseline_data;
  return b == NULL ? "" : id ? b->device_id : b->device;
}

void bench_baseline_free(bench_options *o) {
  struct bench_baseline *b = o->baseline_data;
  if (b != NULL) {
    free(b->points);
    free(b);
  }
  o->baseline_data = NULL;
}
