/* presets.c: named problem lists for common models and the reader of shapes files. A preset is what an
 * operator tunes overnight without writing a file: each model's attention (heads, KV heads, head dim)
 * at the prefill lengths and the decode shape it serves. Shapes files say the same for a deployment's
 * own shapes, as text lines (the flags of `flashjit bench`, with or without dashes) or as JSON. */
#include "bench/presets.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "bench/cli.h"
#include "cache/binary_cache.h"
#include "cache/json_reader.h"
#include "core/problem.h"
#include "core/dtype.h"
#include "runtime/runtime.h"

/* One model's attention: query heads, KV heads, head dim, whether its calls give attention sinks, the
 * sliding window of its local layers (0: none; else those layers' shapes come too), its logit soft-cap
 * (0: none), v's head dim (0: head_dim's), and where its decode step differs (MLA's absorbed form), the
 * decode's KV heads and head dims (0: the prefill's). */
typedef struct preset_model {
  const char *name;
  const char *title;
  int heads, kv_heads, head_dim;
  int sinks;
  int sliding_window;  /* keys a local layer's query sees, its own included (window_left = this - 1) */
  float softcap;
  int head_dim_v;
  int decode_kv_heads, decode_head_dim, decode_head_dim_v;
} preset_model;

static const preset_model preset_models[] = {
    {"llama3-8b", "Llama-3-8B", 32, 8, 128, 0, 0, 0.0f, 0, 0, 0, 0},
    {"llama3-70b", "Llama-3-70B", 64, 8, 128, 0, 0, 0.0f, 0, 0, 0, 0},
    {"mistral-7b", "Mistral-7B", 32, 8, 128, 0, 0, 0.0f, 0, 0, 0, 0},
    {"qwen2.5-7b", "Qwen2.5-7B", 28, 4, 128, 0, 0, 0.0f, 0, 0, 0, 0},
    /* gpt-oss-20b and -120b (the same attention): layers alternate between full and 128-key banded
     * attention, each head with a learned sink */
    {"gpt-oss", "gpt-oss-20b/120b", 64, 8, 64, 1, 128, 0.0f, 0, 0, 0, 0},
    /* Gemma-2-9B: layers alternate between full and 4096-key windowed attention, logits capped at 50
     * (its query scale, 1/sqrt(256), is the default's) */
    {"gemma2-9b", "Gemma-2-9B", 16, 8, 256, 0, 4096, 50.0f, 0, 0, 0, 0},
    /* DeepSeek-V3 and R1 (MLA): prefill with q and k of 192 (128 + 64 rotary), v of 128, each head its
     * own KV head; decode in the absorbed form, every head on the one cached latent (q and k 576 = 512 +
     * 64, v the 512 latent). Their softmax scale is 1/sqrt(192) in both forms (the calls pass it). */
    {"deepseek-v3", "DeepSeek-V3/R1", 128, 128, 192, 0, 0, 0.0f, 128, 1, 576, 512},
};
#define PRESET_MODEL_COUNT ((int)(sizeof preset_models / sizeof preset_models[0]))

/* Prefill lengths: one per power-of-two bucket, so each is its own tuning key. */
static const int64_t preset_prefill_lengths[] = {512, 1024, 2048, 4096};
#define PRESET_PREFILL_COUNT ((int)(sizeof preset_prefill_lengths / sizeof preset_prefill_lengths[0]))
/* Decode: one query per sequence against a long cache. The key does not name the KV length, so one
 * representative length per model is all a tuner can use. */
#define PRESET_DECODE_KV 8192
#define PRESET_DECODE_BATCH 8

int presets_append(preset_shapes *list, const fj_problem_shape *shape, const char *label) {
  fj_problem_shape *shapes = realloc(list->shapes, (size_t)(list->count + 1) * sizeof *shapes);
  if (shapes == NULL) return -1;
  list->shapes = shapes;
  char (*labels)[96] = realloc(list->labels, (size_t)(list->count + 1) * sizeof *labels);
  if (labels == NULL) return -1;
  list->labels = labels;
  list->shapes[list->count] = *shape;
  snprintf(list->labels[list->count], sizeof list->labels[list->count], "%s", label ? label : "");
  list->count++;
  return 0;
}

void presets_free(preset_shapes *list) {
  if (list == NULL) return;
  free(list->shapes);
  free(list->labels);
  memset(list, 0, sizeof *list);
}

/* A model's shape as its full layers call it, and where it has local layers, as those do (the same
 * with its window: a key of its own). */
static int preset_add_layers(preset_shapes *out, const preset_model *m, fj_problem_shape *s, const char *label) {
  int decode = s->seqlen_q == 1;
  s->heads = m->heads;
  s->kv_heads = decode && m->decode_kv_heads ? m->decode_kv_heads : m->kv_heads;
  s->head_dim = decode && m->decode_head_dim ? m->decode_head_dim : m->head_dim;
  s->head_dim_v = decode && m->decode_head_dim_v ? m->decode_head_dim_v : m->head_dim_v;
  s->causal = 1;
  s->sinks = m->sinks;
  s->softcap = m->softcap;
  if (presets_append(out, s, label) != 0) return -1;
  if (m->sliding_window == 0) return 0;
  char local[96];
  snprintf(local, sizeof local, "%.80s window%d", label, m->sliding_window);  /* labels hold 96 bytes */
  s->windowed = 1;
  s->window_left = m->sliding_window - 1;
  return presets_append(out, s, local);
}

static int preset_add_model(preset_shapes *out, const preset_model *m, int prefill, int decode) {
  char label[96];
  if (prefill)
    for (int i = 0; i < PRESET_PREFILL_COUNT; i++) {
      fj_problem_shape s;
      fj_problem_shape_init(&s);
      s.seqlen_q = s.seqlen_kv = preset_prefill_lengths[i];
      snprintf(label, sizeof label, "%s prefill s%" PRId64, m->name, s.seqlen_q);
      if (preset_add_layers(out, m, &s, label) != 0) return -1;
    }
  if (decode) {
    fj_problem_shape s;
    fj_problem_shape_init(&s);
    s.batch = PRESET_DECODE_BATCH;
    s.seqlen_q = 1;
    s.seqlen_kv = PRESET_DECODE_KV;
    snprintf(label, sizeof label, "%s decode kv%d", m->name, PRESET_DECODE_KV);
    if (preset_add_layers(out, m, &s, label) != 0) return -1;
  }
  return 0;
}

/* The distinct attention shapes of the models (Mistral-7B's equals Llama-3-8B's). */
static int preset_is_repeat(int index) {
  for (int j = 0; j < index; j++)
    if (preset_models[j].heads == preset_models[index].heads &&
        preset_models[j].kv_heads == preset_models[index].kv_heads &&
        preset_models[j].head_dim == preset_models[index].head_dim &&
        preset_models[j].sinks == preset_models[index].sinks &&
        preset_models[j].sliding_window == preset_models[index].sliding_window &&
        preset_models[j].softcap == preset_models[index].softcap &&
        preset_models[j].head_dim_v == preset_models[index].head_dim_v &&
        preset_models[j].decode_kv_heads == preset_models[index].decode_kv_heads &&
        preset_models[j].decode_head_dim == preset_models[index].decode_head_dim &&
        preset_models[j].decode_head_dim_v == preset_models[index].decode_head_dim_v)
      return 1;
  return 0;
}

int presets_get(const char *name, preset_shapes *out) {
  memset(out, 0, sizeof *out);
  int rc = -1;
  for (int i = 0; i < PRESET_MODEL_COUNT; i++)
    if (strcmp(name, preset_models[i].name) == 0) rc = preset_add_model(out, &preset_models[i], 1, 1);
  if (strcmp(name, "prefill") == 0 || strcmp(name, "decode") == 0) {
    rc = 0;
    for (int i = 0; i < PRESET_MODEL_COUNT && rc == 0; i++)
      if (!preset_is_repeat(i))
        rc = preset_add_model(out, &preset_models[i], name[0] == 'p', name[0] == 'd');
  }
  if (strcmp(name, "prefill-grid") == 0) {
    /* What `flashjit bench --grid prefill` measures, so that a tune of this preset covers every row:
     * 16384 tokens (batch x seqlen), 2048 model width (heads x head dim). Each point has its own key
     * (dtype, head dim, causal and seqlen bucket all differ), so each gets its own winner. */
    static const int64_t lengths[] = {512, 1024, 2048, 4096, 8192, 16384};
    static const int dims[] = {64, 128};
    static const dtype_id dtypes[] = {DTYPE_F16, DTYPE_BF16};
    rc = 0;
    for (int t = 0; t < 2 && rc == 0; t++)
      for (int d = 0; d < 2 && rc == 0; d++)
        for (int c = 0; c < 2 && rc == 0; c++)
          for (int l = 0; l < 6 && rc == 0; l++) {
            fj_problem_shape s;
            fj_problem_shape_init(&s);
            s.dtype = core_dtype_to_dlpack(dtypes[t]);
            s.head_dim = dims[d];
            s.heads = s.kv_heads = 2048 / dims[d];
            s.seqlen_q = s.seqlen_kv = lengths[l];
            s.batch = 16384 / lengths[l];
            s.causal = c;
            char label[96];
            presets_describe(&s, label, sizeof label);
            rc = presets_append(out, &s, label);
          }
  }
  if (strcmp(name, "smoke") == 0) {
    fj_problem_shape s;
    fj_problem_shape_init(&s);
    s.dtype = core_dtype_to_dlpack(DTYPE_F32);
    s.heads = s.kv_heads = 2;
    s.seqlen_q = s.seqlen_kv = 256;
    s.head_dim = 64;
    rc = presets_append(out, &s, "smoke b1 h2 s256 d64 fp32");
  }
  if (rc != 0) presets_free(out);
  return rc;
}

void presets_print(FILE *out) {
  for (int i = 0; i < PRESET_MODEL_COUNT; i++) {
    const preset_model *m = &preset_models[i];
    fprintf(out, "  %-12s %s: %d heads, %d KV heads, head dim %d", m->name, m->title, m->heads, m->kv_heads,
            m->head_dim);
    if (m->head_dim_v) fprintf(out, " (v %d)", m->head_dim_v);
    if (m->decode_head_dim)
      fprintf(out, "; decode absorbed: %d KV head%s, head dim %d (v %d)", m->decode_kv_heads,
              m->decode_kv_heads == 1 ? "" : "s", m->decode_head_dim, m->decode_head_dim_v);
    fprintf(out, ", bf16, causal%s", m->sinks ? ", sinks" : "");
    if (m->softcap > 0.0f) fprintf(out, ", logits capped at %g", (double)m->softcap);
    if (m->sliding_window > 0) fprintf(out, ", and each shape again with a %d-key window", m->sliding_window);
    fprintf(out, "; prefill at");
    for (int j = 0; j < PRESET_PREFILL_COUNT; j++) fprintf(out, " %" PRId64, preset_prefill_lengths[j]);
    fprintf(out, ", decode (seqlen_q 1) against %d keys, batch %d\n", PRESET_DECODE_KV, PRESET_DECODE_BATCH);
  }
  fprintf(out, "  %-12s the prefill lengths of every distinct model shape above\n", "prefill");
  fprintf(out, "  %-12s the decode shape of every distinct model shape above\n", "decode");
  fprintf(out, "  %-12s the grid of flashjit bench --grid prefill: fp16 and bf16, head dims 64 and 128, causal\n"
          "  %-12s and not, seqlen 512 ... 16384 with batch x seqlen = 16384 and heads x head dim = 2048\n",
          "prefill-grid", "");
  fprintf(out, "  %-12s one tiny problem (b1 h2 s256 d64 fp32): checks that tuning works at all\n", "smoke");
}

void presets_describe(const fj_problem_shape *s, char *buffer, size_t size) {
  dtype_id dtype = DTYPE_BF16;
  core_dtype_from_dlpack(s->dtype, &dtype);
  char page[24] = "", window[64] = "";
  if (s->page_size > 0) snprintf(page, sizeof page, " page=%d", s->page_size);
  if (s->windowed) snprintf(window, sizeof window, " window=(%" PRId64 ",%" PRId64 ")", s->window_left, s->window_right);
  char softcap[32] = "", kv[32] = "", dv[16] = "", bias[24] = "";
  dtype_id bias_dtype;
  if (s->attn_bias_dtype.bits != 0 && core_dtype_from_dlpack(s->attn_bias_dtype, &bias_dtype))
    snprintf(bias, sizeof bias, " bias=%s", core_dtype_name(bias_dtype));
  if (s->softcap > 0.0f) snprintf(softcap, sizeof softcap, " softcap=%g", (double)s->softcap);
  if (s->head_dim_v != 0 && s->head_dim_v != s->head_dim) snprintf(dv, sizeof dv, "/%d", s->head_dim_v);
  dtype_id kv_dtype;
  if (s->kv_dtype.bits != 0 && core_kv_dtype_from_dlpack(s->kv_dtype, &kv_dtype) && core_dtype_is_fp8(kv_dtype))
    snprintf(kv, sizeof kv, " kv=%s", core_dtype_name(kv_dtype));
  snprintf(buffer, size, "b%" PRId64 " h%d/%d sq%" PRId64 " skv%" PRId64 " d%d%s %s%s%s%s%s%s%s%s%s%s%s%s%s", s->batch,
           s->heads, s->kv_heads, s->seqlen_q, s->seqlen_kv, s->head_dim, dv, core_dtype_name(dtype),
           s->causal ? " causal" : "", window, s->with_lse ? " lse" : "", s->varlen ? " varlen" : "",
           s->varlen_q ? " varlen_q" : "", page, s->sinks ? " sinks" : "", softcap, kv,
           s->packed_k ? " packed_k" : "", s->alibi ? " alibi" : "", bias);
}

void presets_help(FILE *out) {
  fprintf(out,
          "shapes files:\n"
          "  One problem per line, written as name=value words (or the flags of flashjit bench,\n"
          "  with or without their dashes); '#' starts a comment; unnamed values take bench's\n"
          "  defaults (batch 1, heads 8, kv_heads = heads, seqlen 2048, head_dim 128, bf16):\n"
          "      # Llama-3-8B prefill and decode\n"
          "      heads=32 kv_heads=8 head_dim=128 seqlen=2048 dtype=bf16 causal\n"
          "      --batch 8 --heads 32 --kv-heads 8 --seqlen-q 1 --seqlen-kv 8192 --causal\n"
          "      preset=qwen2.5-7b\n"
          "  names: batch, heads, kv_heads, seqlen (q and kv), seqlen_q, seqlen_kv, head_dim,\n"
          "  head_dim_v (v's and o's head dim where it differs: MLA's 128 beside head_dim 192), dtype,\n"
          "  causal[=0|1], lse[=0|1], varlen[=0|1] (the calls give seqlens_kv), varlen_q[=0|1] (the\n"
          "  calls give cu_seqlens_q: ragged queries, seqlen_q their most), sinks[=0|1] (the calls\n"
          "  give attention sinks), softcap=X (logit soft-capping at X), kv_dtype=fp8_e4m3|fp8_e5m2\n"
          "  (the calls read an fp8 KV cache; tuned as it is), packed_k[=0|1] (the calls\n"
          "  give cu_seqlens_k; tuned as varlen), alibi[=0|1] (the calls give ALiBi slopes; tuned\n"
          "  without), attn_bias=fp32|DTYPE (the calls give an additive bias of that dtype; tuned\n"
          "  without), page_size (the calls read\n"
          "  a paged cache of pages of that many keys), window_left and window_right (a sliding\n"
          "  window, -1 for an open side: window_left=4095 causal is a 4096-key window), preset=NAME\n"
          "  (a whole preset, alone on its line).\n"
          "  Or JSON: an array of objects with the same names, or {\"problems\": [...]}:\n"
          "      [{\"heads\": 32, \"kv_heads\": 8, \"seqlen\": 2048, \"causal\": true}]\n"
          "\n"
          "presets:\n");
  presets_print(out);
}

/* ---- reading shapes files ----------------------------------------------------------------------- */

static int preset_fail(char *why, size_t why_size, const char *format, ...) __attribute__((format(printf, 3, 4)));
static int preset_fail(char *why, size_t why_size, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  vsnprintf(why, why_size, format, ap);
  va_end(ap);
  return -1;
}

static int preset_parse_int(const char *text, int64_t min, int64_t max, int64_t *out) {
  if (text == NULL || *text == '\0') return -1;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return -1;
  *out = (int64_t)v;
  return 0;
}

static int preset_parse_bool(const char *text, int *out) {
  if (text == NULL || strcmp(text, "1") == 0 || strcmp(text, "true") == 0 || strcmp(text, "yes") == 0) {
    *out = 1;
    return 0;
  }
  if (strcmp(text, "0") == 0 || strcmp(text, "false") == 0 || strcmp(text, "no") == 0) {
    *out = 0;
    return 0;
  }
  return -1;
}

/* The names that may stand alone (as 1), in preset_apply's order. */
static const char *const preset_flag_names[] = {"causal", "lse", "varlen", "varlen_q", "sinks", "packed_k", "alibi"};

static int preset_is_flag(const char *name) {
  for (size_t i = 0; i < sizeof preset_flag_names / sizeof preset_flag_names[0]; i++) {
    const char *a = name, *b = preset_flag_names[i];
    while (*a && (*a == *b || (*a == '-' && *b == '_'))) a++, b++;
    if (*a == '\0' && *b == '\0') return 1;
  }
  return 0;
}

/* Applies name=value (value NULL for a bare flag) to a shape; *kv_set / *seqlen_kv_set track whether
 * kv_heads and seqlen_kv were named (else they follow heads and seqlen). */
static int preset_apply(fj_problem_shape *s, const char *name, const char *value, int *kv_set, int *skv_set,
                        char *why, size_t why_size) {
  char key[32];
  snprintf(key, sizeof key, "%s", name);
  for (char *c = key; *c; c++)
    if (*c == '-') *c = '_';
  int64_t v = 0;
  int *flags[] = {&s->causal, &s->with_lse, &s->varlen, &s->varlen_q, &s->sinks, &s->packed_k, &s->alibi};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    if (strcmp(key, preset_flag_names[i]) != 0) continue;
    if (preset_parse_bool(value, flags[i]) != 0)
      return preset_fail(why, why_size, "%s=%s: expected 0 or 1", name, value);
    return 0;
  }
  if (value == NULL) return preset_fail(why, why_size, "%s needs a value", name);
  if (strcmp(key, "softcap") == 0) {
    const char *problem = NULL;
    if (cli_parse_float(value, &s->softcap, &problem) != 0 || s->softcap < 0.0f)
      return preset_fail(why, why_size, "softcap=%s: expected a finite number, at least 0", value);
    return 0;
  }
  if (strcmp(key, "dtype") == 0) {
    dtype_id dtype;
    if (!core_dtype_parse(value, &dtype))
      return preset_fail(why, why_size, "dtype=%s: expected fp32, fp16 or bf16", value);
    s->dtype = core_dtype_to_dlpack(dtype);
    return 0;
  }
  if (strcmp(key, "attn_bias") == 0) {  /* the calls give an additive bias of this dtype (checked against dtype later) */
    dtype_id bias;
    if (!core_dtype_parse(value, &bias))
      return preset_fail(why, why_size, "attn_bias=%s: expected fp32 or the dtype (fp16, bf16)", value);
    s->attn_bias_dtype = core_dtype_to_dlpack(bias);
    return 0;
  }
  if (strcmp(key, "kv_dtype") == 0) {  /* an fp8 cache (or dtype's own name: none) */
    dtype_id dtype = DTYPE_BF16, kv;
    core_dtype_from_dlpack(s->dtype, &dtype);
    if (!core_kv_dtype_parse_for(value, dtype, &kv))
      return preset_fail(why, why_size, "kv_dtype=%s: expected fp8_e4m3 or fp8_e5m2 (an fp8 cache), or dtype's", value);
    s->kv_dtype = core_dtype_is_fp8(kv) ? core_dtype_to_dlpack(kv) : (DLDataType){0, 0, 0};
    return 0;
  }
  struct {
    const char *name;
    int64_t min, max;
  } ints[] = {{"batch", 1, INT32_MAX},      {"heads", 1, 65536},          {"kv_heads", 1, 65536},
              {"seqlen", 1, INT32_MAX},     {"seqlen_q", 1, INT32_MAX},   {"seqlen_kv", 0, INT32_MAX},
              {"head_dim", 8, CORE_HEAD_DIM_MAX},         {"page_size", 1, INT32_MAX},  {"window_left", -1, INT32_MAX},
              {"window_right", -1, INT32_MAX}, {"head_dim_v", 8, CORE_HEAD_DIM_MAX}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    if (strcmp(key, ints[i].name) != 0) continue;
    if (preset_parse_int(value, ints[i].min, ints[i].max, &v) != 0)
      return preset_fail(why, why_size, "%s=%s: expected an integer from %" PRId64 " to %" PRId64, name, value,
                         ints[i].min, ints[i].max);
    switch (i) {
      case 0: s->batch = v; break;
      case 1: s->heads = (int)v; break;
      case 2: s->kv_heads = (int)v; *kv_set = 1; break;
      case 3: s->seqlen_q = v; if (!*skv_set) s->seqlen_kv = v; break;
      case 4: s->seqlen_q = v; break;
      case 5: s->seqlen_kv = v; *skv_set = 1; break;
      case 6: s->head_dim = (int)v; break;
      case 7: s->page_size = (int)v; break;
      case 8: s->window_left = v; s->windowed = 1; break;
      case 9: s->window_right = v; s->windowed = 1; break;
      case 10: s->head_dim_v = (int)v; break;
    }
    return 0;
  }
  return preset_fail(why, why_size, "unknown name \"%s\" (batch, heads, kv_heads, seqlen, seqlen_q, seqlen_kv, "
                     "head_dim, head_dim_v, dtype, kv_dtype, causal, lse, varlen, varlen_q, packed_k, alibi, attn_bias, sinks, softcap, "
                     "page_size, window_left, window_right, preset)",
                     name);
}

static int preset_finish(fj_problem_shape *s, int kv_set, char *why, size_t why_size) {
  if (!kv_set) s->kv_heads = s->heads;
  if (s->head_dim % 8 != 0) return preset_fail(why, why_size, "head_dim=%d is not a multiple of 8", s->head_dim);
  if (s->head_dim_v % 8 != 0) return preset_fail(why, why_size, "head_dim_v=%d is not a multiple of 8", s->head_dim_v);
  if (s->head_dim_v == s->head_dim) s->head_dim_v = 0;  /* one form per problem */
  if (s->heads % s->kv_heads != 0)
    return preset_fail(why, why_size, "heads=%d is not a multiple of kv_heads=%d", s->heads, s->kv_heads);
  if (s->seqlen_kv == 0) return preset_fail(why, why_size, "seqlen_kv=0: no kernel runs, nothing to tune");
  return 0;
}

static int preset_read_line(char *line, int number, preset_shapes *out, char *why, size_t why_size) {
  char *hash = strchr(line, '#');
  if (hash) *hash = '\0';
  char *words[64];
  int n = 0;
  for (char *w = strtok(line, " \t\r\n"); w != NULL; w = strtok(NULL, " \t\r\n")) {
    if (n == 64) return preset_fail(why, why_size, "line %d: too many words", number);
    words[n++] = w;
  }
  if (n == 0) return 0;
  fj_problem_shape s;
  fj_problem_shape_init(&s);
  int kv_set = 0, skv_set = 0;
  char detail[200];
  for (int i = 0; i < n; i++) {
    char *name = words[i];
    while (*name == '-') name++;
    char *value = strchr(name, '=');
    if (value) {
      *value++ = '\0';
    } else if (!preset_is_flag(name) && i + 1 < n &&
               words[i + 1][0] != '-' &&
               strchr(words[i + 1], '=') == NULL) {
      value = words[++i];  /* "--heads 32" */
    }
    if (strcmp(name, "preset") == 0) {
      /* a whole preset: "preset=NAME" or "--preset NAME", and nothing else on the line */
      preset_shapes p;
      if (value == NULL || i != n - 1 || n > 2)
        return preset_fail(why, why_size, "line %d: preset=NAME stands alone on its line", number);
      if (presets_get(value, &p) != 0) return preset_fail(why, why_size, "line %d: unknown preset \"%s\"", number, value);
      for (int k = 0; k < p.count; k++)
        if (presets_append(out, &p.shapes[k], p.labels[k]) != 0) {
          presets_free(&p);
          return preset_fail(why, why_size, "out of memory");
        }
      presets_free(&p);
      return 0;
    }
    if (preset_apply(&s, name, value, &kv_set, &skv_set, detail, sizeof detail) != 0)
      return preset_fail(why, why_size, "line %d: %s", number, detail);
  }
  if (preset_finish(&s, kv_set, detail, sizeof detail) != 0)
    return preset_fail(why, why_size, "line %d: %s", number, detail);
  char label[96];
  snprintf(label, sizeof label, "line %d", number);
  return presets_append(out, &s, label) == 0 ? 0 : preset_fail(why, why_size, "out of memory");
}

static int preset_read_json(const char *text, size_t size, preset_shapes *out, char *why, size_t why_size) {
  json_value *root = NULL;
  if (json_parse(text, size, &root) != FJ_OK) return preset_fail(why, why_size, "%s", fj_last_error());
  const json_value *list = root->type == JSON_OBJECT ? json_get(root, "problems") : root;
  int rc = 0;
  if (list == NULL || list->type != JSON_ARRAY) {
    rc = preset_fail(why, why_size, "JSON: expected an array of problems or {\"problems\": [...]}");
  }
  for (size_t i = 0; rc == 0 && i < list->count; i++) {
    const json_value *item = &list->items[i];
    char detail[200];
    if (item->type != JSON_OBJECT) {
      rc = preset_fail(why, why_size, "problems[%zu]: expected an object, got %s", i, json_type_name(item->type));
      break;
    }
    fj_problem_shape s;
    fj_problem_shape_init(&s);
    int kv_set = 0, skv_set = 0;
    /* seqlen first, so that an explicit seqlen_kv wins whatever the member order */
    for (int pass = 0; pass < 2 && rc == 0; pass++)
      for (size_t m = 0; m < item->count && rc == 0; m++) {
        const char *name = item->keys[m];
        const json_value *v = &item->items[m];
        if ((strcmp(name, "seqlen") == 0) != (pass == 0)) continue;
        if (strcmp(name, "label") == 0 || strcmp(name, "name") == 0) continue;
        char value[64];
        if (v->type == JSON_STRING)
          snprintf(value, sizeof value, "%s", v->string);
        else if (v->type == JSON_NUMBER && v->is_integer)
          snprintf(value, sizeof value, "%" PRId64, v->integer);
        else if (v->type == JSON_NUMBER)  /* softcap's; an integer name refuses it by name */
          snprintf(value, sizeof value, "%.9g", v->number);
        else if (v->type == JSON_TRUE || v->type == JSON_FALSE)
          snprintf(value, sizeof value, "%d", v->type == JSON_TRUE);
        else {
          rc = preset_fail(why, why_size, "problems[%zu].%s: expected a number, a string or a boolean", i, name);
          break;
        }
        if (preset_apply(&s, name, value, &kv_set, &skv_set, detail, sizeof detail) != 0)
          rc = preset_fail(why, why_size, "problems[%zu]: %s", i, detail);
      }
    if (rc == 0 && preset_finish(&s, kv_set, detail, sizeof detail) != 0)
      rc = preset_fail(why, why_size, "problems[%zu]: %s", i, detail);
    const json_value *label = json_get(item, "label");
    char text_label[96];
    snprintf(text_label, sizeof text_label, "%s", label && label->type == JSON_STRING ? label->string : "");
    if (rc == 0 && presets_append(out, &s, text_label) != 0) rc = preset_fail(why, why_size, "out of memory");
  }
  json_free(root);
  return rc;
}

int presets_read_file(const char *path, preset_shapes *out, char *why, size_t why_size) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (f == NULL) return preset_fail(why, why_size, "cannot open: %s", strerror(errno));
  char *text = NULL;
  size_t size = 0, capacity = 0;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (size + n + 1 > capacity) {
      capacity = (size + n + 1) * 2;
      if (capacity > ((size_t)64 << 20)) {
        fclose(f);
        free(text);
        return preset_fail(why, why_size, "larger than 64 MiB; not a shapes file");
      }
      char *grown = realloc(text, capacity);
      if (grown == NULL) {
        fclose(f);
        free(text);
        return preset_fail(why, why_size, "out of memory");
      }
      text = grown;
    }
    memcpy(text + size, chunk, n);
    size += n;
  }
  int read_error = ferror(f);
  fclose(f);
  if (read_error) {
    free(text);
    return preset_fail(why, why_size, "read error");
  }
  if (text == NULL) return preset_fail(why, why_size, "empty: no problems");
  text[size] = '\0';
  const char *first = text;
  while (*first && isspace((unsigned char)*first)) first++;
  int rc;
  if (*first == '[' || *first == '{') {
    rc = preset_read_json(text, size, out, why, why_size);
  } else {
    rc = 0;
    int number = 0;
    for (char *line = text; line != NULL && rc == 0;) {
      char *next = strchr(line, '\n');
      if (next) *next++ = '\0';
      number++;
      rc = preset_read_line(line, number, out, why, why_size);
      line = next;
    }
  }
  free(text);
  if (rc == 0 && out->count == 0) rc = preset_fail(why, why_size, "no problems in the file");
  if (rc != 0) presets_free(out);
  return rc;
}

int presets_read_served(const char *device, const char *cache_dir, preset_shapes *out, char *why, size_t why_size) {
  memset(out, 0, sizeof *out);
  const fj_backend *backend = NULL;
  int index = 0;
  if (backend_select(device, &backend, &index) != FJ_OK)
    return preset_fail(why, why_size, "%s", fj_last_error());
  char folder[4096];
  if (cache_dir != NULL)
    snprintf(folder, sizeof folder, "%s", cache_dir);
  else if (bincache_default_dir(folder, sizeof folder) != FJ_OK)
    return preset_fail(why, why_size, "%s", fj_last_error());
  char path[4200];
  runtime_served_file(folder, backend->name, index, path, sizeof path);
  if (access(path, F_OK) != 0)
    return preset_fail(why, why_size, "nothing served on %s:%d yet: no %s (a context notes the first call of each "
                       "problem there, unless its disk cache is off or it was told not to)", backend->name, index, path);
  char inner[400];
  if (presets_read_file(path, out, inner, sizeof inner) != 0)
    return preset_fail(why, why_size, "%s: %s", path, inner);
  for (int i = 0; i < out->count; i++) presets_describe(&out->shapes[i], out->labels[i], sizeof out->labels[i]);
  return 0;
}
