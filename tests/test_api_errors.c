/* test_api_errors.c: the public API's failure contract. Every bad argument must give its status and a
 * message naming the argument, write nothing (o and lse are filled with a pattern and compared), and
 * leave the context usable; device strings and cache folders that cannot work must fail cleanly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flashjit.h"
#include "backends/backend.h"
#include "core/host_tensor.h"
#include "check.h"

/* ---- a valid fp32 problem, copied into fresh DLTensors that a case may then break ---- */

#define B 1
#define S 16
#define H 2
#define D 64

static host_tensor q, k, v, o, lse;

typedef struct fixture {
  DLTensor q, k, v, o, lse;
  int64_t shape[5][4];
  int64_t strides[5][4];
  fj_attention_args args;
  /* seqlens_kv, given only by the cases that break it: one key count per sequence */
  int32_t lens[2];
  int64_t lens_shape[2];
  DLTensor seqlens;
  /* block_table, likewise: k and v read as one page of S keys, the table two entries (pages 0, 0) */
  int32_t table[2];
  int64_t table_shape[2];
  DLTensor block_table;
  /* workspace, likewise: 64 bytes of the fixture's own, 16-byte aligned */
  _Alignas(16) unsigned char work[64];
  int64_t work_shape[1], work_strides[1];
  DLTensor workspace;
  /* sinks, likewise: one logit per head */
  float sink_logits[H];
  int64_t sinks_shape[1];
  DLTensor sinks;
} fixture;

static void fixture_init(fixture *f) {
  const host_tensor *src[5] = {&q, &k, &v, &o, &lse};
  DLTensor *dst[5] = {&f->q, &f->k, &f->v, &f->o, &f->lse};
  for (int i = 0; i < 5; i++) {
    *dst[i] = src[i]->t;
    for (int d = 0; d < src[i]->t.ndim; d++) f->shape[i][d] = src[i]->t.shape[d];
    dst[i]->shape = f->shape[i];
    dst[i]->strides = NULL;
  }
  fj_attention_args_init(&f->args);
  f->args.q = &f->q;
  f->args.k = &f->k;
  f->args.v = &f->v;
  f->args.o = &f->o;
  f->args.lse = &f->lse;
  f->lens[0] = f->lens[1] = S;
  f->lens_shape[0] = B;
  f->seqlens = (DLTensor){.data = f->lens, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLInt, 32, 1},
                          .shape = f->lens_shape};
  f->table[0] = f->table[1] = 0;
  f->table_shape[0] = B;
  f->table_shape[1] = 2;
  f->block_table = (DLTensor){.data = f->table, .device = {kDLCPU, 0}, .ndim = 2, .dtype = {kDLInt, 32, 1},
                              .shape = f->table_shape};
  f->work_shape[0] = (int64_t)sizeof f->work;
  f->work_strides[0] = 1;
  f->workspace = (DLTensor){.data = f->work, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLUInt, 8, 1},
                            .shape = f->work_shape};
  for (int h = 0; h < H; h++) f->sink_logits[h] = 0.5f;
  f->sinks_shape[0] = H;
  f->sinks = (DLTensor){.data = f->sink_logits, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLFloat, 32, 1},
                        .shape = f->sinks_shape};
}

/* Row-major strides made explicit, so a case can change one of them. */
static void explicit_strides(DLTensor *t, int64_t *strides) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    strides[d] = s;
    s *= t->shape[d];
  }
  t->strides = strides;
}

typedef struct bad_case {
  const char *what;
  const char *expect;  /* a substring the message must contain: the argument's name */
} bad_case;

static const bad_case bad_cases[] = {
    {"q is NULL", "args.q"},
    {"k is NULL", "args.k"},
    {"v is NULL", "args.v"},
    {"o is NULL", "args.o"},
    {"q.ndim=3", "q.ndim"},
    {"lse.ndim=4", "lse.ndim"},
    {"q.shape[1]=-1", "q.shape[1]"},
    {"k.dtype=fp16 with q fp32", "k.dtype"},
    {"all dtypes int32", "q.dtype"},
    {"q.dtype lanes=2", "q.dtype"},
    {"lse.dtype=fp16", "lse.dtype"},
    {"k.shape[3]=32 with q 64", "k.shape[3]"},
    {"head_dim=12 everywhere", "head_dim"},
    {"head_dim=584 everywhere", "head_dim"},
    {"batch=0", "q.shape[0]"},
    {"k.shape[0]=2 with q 1", "k.shape[0]"},
    {"v.shape[1]=15 with k 16", "v.shape[1]"},
    {"o.shape[1]=15 with q 16", "o.shape[1]"},
    {"heads=2 kv_heads=... 3 is no divisor", "kv_heads"},
    {"lse.shape[2]=15", "lse.shape"},
    {"o.data = q.data (overlap)", "o overlaps q"},
    {"lse inside o (overlap)", "lse"},
    {"o.strides[1]=0 (self overlap)", "o.strides"},
    {"q.strides[2]=-64", "q.strides"},
    {"k on (cuda,0), q on cpu", "k.device"},
    {"everything on (cuda,0)", "q.device"},
    {"softmax_scale=NaN", "softmax_scale"},
    {"softmax_scale=inf", "softmax_scale"},
    {"q.data=NULL", "q.data"},
    {"v.data misaligned by 2 bytes", "v.data"},
    {"args.struct_size=0", "struct_size"},
    {"seqlens_kv[0]=17 with seqlen_kv 16", "seqlens_kv[0]=17"},
    {"seqlens_kv[0]=-1", "seqlens_kv[0]=-1"},
    {"seqlens_kv.dtype=int64", "seqlens_kv.dtype"},
    {"seqlens_kv.shape[0]=2 with batch 1", "seqlens_kv.shape[0]"},
    {"seqlens_kv.ndim=2", "seqlens_kv.ndim"},
    {"seqlens_kv on (cuda,0), q on cpu", "seqlens_kv.device"},
    {"seqlens_kv inside o (overlap)", "o overlaps seqlens_kv"},
    {"block_table[0][1]=1 with one page", "block_table[0][1]=1"},
    {"block_table[0][0]=-1", "block_table[0][0]=-1"},
    {"block_table.dtype=int64", "block_table.dtype"},
    {"block_table.shape[0]=2 with batch 1", "block_table.shape[0]"},
    {"block_table.ndim=1", "block_table.ndim"},
    {"block_table.shape[1]=0", "block_table.shape[1]"},
    {"block_table on (cuda,0), q on cpu", "block_table.device"},
    {"block_table inside o (overlap)", "o overlaps block_table"},
    {"block_table with 2^27 pages of 16 keys", "more than 2^31 - 1 keys"},
    {"seqlens_kv[0]=33 with two pages of 16 keys", "block_table.shape[1] x k.shape[1]"},
    {"v.shape[0]=2 pages, k.shape[0]=1", "(pages must match)"},
    {"workspace.dtype=int32", "workspace.dtype is int32"},
    {"workspace.ndim=2", "workspace.ndim=2"},
    {"workspace 4 bytes off 16-byte alignment", "must be 16-byte aligned"},
    {"workspace on (cuda,0), q on cpu", "workspace.device"},
    {"workspace inside o (overlap)", "workspace overlaps o"},
    {"workspace.shape[0]=-1", "workspace.shape[0]=-1"},
    {"workspace.strides[0]=2", "workspace.strides[0]=2"},
    {"workspace.data NULL", "workspace.data is NULL"},
    {"window_left=-2", "window_left=-2"},
    {"window_right=-7", "window_right=-7"},
    {"causal with window_right=3", "window_right=3 with causal"},
    {"window_left=INT64_MIN", "window_left=-9223372036854775808"},
    {"cu_seqlens_q with a 4-d q", "q.ndim=4, expected 3 ([total_q, heads, head_dim] with cu_seqlens_q)"},
    {"cu_seqlens_q of one offset (no sequence) with 3-d q and o", "cu_seqlens_q.shape[0]=1: batch + 1 offsets"},
    {"sinks of one logit for 2 heads", "sinks.shape[0]=1 but heads=2"},
    {"sinks[1]=inf", "sinks[1]=inf: each must be finite"},
    {"fp16 sinks", "sinks.dtype is fp16; expected fp32"},
    {"softcap=-1", "softcap=-1: must be finite and not negative"},
    {"softcap=NaN", "softcap=nan: must be finite"},
    {"softcap=1e-35", "softcap=1e-35 with softmax_scale=0.125: softcap and softcap / softmax_scale must each be from"},
};

static void break_fixture(fixture *f, int which) {
  switch (which) {
    case 0: f->args.q = NULL; break;
    case 1: f->args.k = NULL; break;
    case 2: f->args.v = NULL; break;
    case 3: f->args.o = NULL; break;
    case 4: f->q.ndim = 3; break;
    case 5: f->lse.ndim = 4; f->shape[4][3] = 1; break;
    case 6: f->shape[0][1] = -1; break;
    case 7: f->k.dtype.bits = 16; break;
    case 8:
      f->q.dtype.code = f->k.dtype.code = f->v.dtype.code = f->o.dtype.code = kDLInt;
      break;
    case 9: f->q.dtype.lanes = 2; break;
    case 10: f->lse.dtype.bits = 16; break;
    case 11: f->shape[1][3] = 32; break;
    case 12: f->shape[0][3] = f->shape[1][3] = f->shape[2][3] = f->shape[3][3] = 12; break;
    case 13: f->shape[0][3] = f->shape[1][3] = f->shape[2][3] = f->shape[3][3] = 584; break;
    case 14: f->shape[0][0] = f->shape[3][0] = 0; f->shape[4][0] = 0; break;
    case 15: f->shape[1][0] = 2; break;
    case 16: f->shape[2][1] = 15; break;
    case 17: f->shape[3][1] = 15; break;
    case 18: f->shape[1][2] = f->shape[2][2] = 3; break;  /* heads 2, kv_heads 3 */
    case 19: f->shape[4][2] = 15; break;
    case 20: f->o.data = f->q.data; break;
    case 21: f->lse.data = f->o.data; break;
    case 22: explicit_strides(&f->o, f->strides[3]); f->strides[3][1] = 0; break;
    case 23: explicit_strides(&f->q, f->strides[0]); f->strides[0][2] = -64; break;
    case 24: f->k.device.device_type = kDLCUDA; break;
    case 25:
      f->q.device.device_type = f->k.device.device_type = f->v.device.device_type = kDLCUDA;
      f->o.device.device_type = f->lse.device.device_type = kDLCUDA;
      break;
    case 26: f->args.softmax_scale = __builtin_nanf(""); break;
    case 27: f->args.softmax_scale = __builtin_inff(); break;
    case 28: f->q.data = NULL; break;
    case 29: f->v.data = (char *)f->v.data + 2; break;
    case 30: f->args.struct_size = 0; break;
    case 31: f->lens[0] = S + 1; f->args.seqlens_kv = &f->seqlens; break;
    case 32: f->lens[0] = -1; f->args.seqlens_kv = &f->seqlens; break;
    case 33: f->seqlens.dtype.bits = 64; f->args.seqlens_kv = &f->seqlens; break;
    case 34: f->lens_shape[0] = 2; f->args.seqlens_kv = &f->seqlens; break;
    case 35: f->seqlens.ndim = 2; f->args.seqlens_kv = &f->seqlens; break;
    case 36: f->seqlens.device.device_type = kDLCUDA; f->args.seqlens_kv = &f->seqlens; break;
    case 37: f->seqlens.data = f->o.data; f->args.seqlens_kv = &f->seqlens; break;
    case 38: f->table[1] = 1; f->args.block_table = &f->block_table; break;
    case 39: f->table[0] = -1; f->args.block_table = &f->block_table; break;
    case 40: f->block_table.dtype.bits = 64; f->args.block_table = &f->block_table; break;
    case 41: f->table_shape[0] = 2; f->args.block_table = &f->block_table; break;
    case 42: f->block_table.ndim = 1; f->args.block_table = &f->block_table; break;
    case 43: f->table_shape[1] = 0; f->args.block_table = &f->block_table; break;
    case 44: f->block_table.device.device_type = kDLCUDA; f->args.block_table = &f->block_table; break;
    case 45: f->block_table.data = f->o.data; f->args.block_table = &f->block_table; break;
    case 46: f->table_shape[1] = (int64_t)1 << 27; f->args.block_table = &f->block_table; break;
    case 47:
      f->lens[0] = 2 * S + 1;
      f->args.seqlens_kv = &f->seqlens;
      f->args.block_table = &f->block_table;
      break;
    case 48: f->shape[2][0] = 2; f->args.block_table = &f->block_table; break;
    case 49: f->workspace.dtype = (DLDataType){kDLInt, 32, 1}; f->args.workspace = &f->workspace; break;
    case 50: f->workspace.ndim = 2; f->args.workspace = &f->workspace; break;
    case 51: f->workspace.byte_offset = 4; f->args.workspace = &f->workspace; break;
    case 52: f->workspace.device.device_type = kDLCUDA; f->args.workspace = &f->workspace; break;
    case 53: f->workspace.data = f->o.data; f->args.workspace = &f->workspace; break;
    case 54: f->work_shape[0] = -1; f->args.workspace = &f->workspace; break;
    case 55:
      f->work_strides[0] = 2;
      f->workspace.strides = f->work_strides;
      f->args.workspace = &f->workspace;
      break;
    case 56: f->workspace.data = NULL; f->args.workspace = &f->workspace; break;
    case 57: f->args.windowed = 1; f->args.window_left = -2; break;
    case 58: f->args.windowed = 1; f->args.window_right = -7; break;
    case 59: f->args.windowed = 1; f->args.causal = 1; f->args.window_right = 3; break;
    case 60: f->args.windowed = 1; f->args.window_left = INT64_MIN; f->args.window_right = 0; break;
    case 61: f->args.cu_seqlens_q = &f->seqlens; break;
    case 62: /* q and o seen as [total_q, heads, head_dim] (their first three dimensions), no lse */
      f->q.ndim = f->o.ndim = 3;
      f->args.lse = NULL;
      f->args.cu_seqlens_q = &f->seqlens;
      f->args.max_seqlen_q = 1;
      break;
    case 63: f->sinks_shape[0] = 1; f->args.sinks = &f->sinks; break;
    case 64: f->sink_logits[1] = INFINITY; f->args.sinks = &f->sinks; break;
    case 65: f->sinks.dtype.bits = 16; f->args.sinks = &f->sinks; break;
    case 66: f->args.softcap = -1.0f; break;
    case 67: f->args.softcap = NAN; break;
    case 68: f->args.softcap = 1e-35f; break;
    default: break;
  }
}

static void pattern_outputs(void) {
  memset(o.allocation, 0xA5, o.allocation_bytes);
  memset(lse.allocation, 0x5A, lse.allocation_bytes);
}

static int outputs_unchanged(void) {
  const unsigned char *a = o.allocation, *b = lse.allocation;
  for (size_t i = 0; i < o.allocation_bytes; i++)
    if (a[i] != 0xA5) return 0;
  for (size_t i = 0; i < lse.allocation_bytes; i++)
    if (b[i] != 0x5A) return 0;
  return 1;
}

static void test_bad_arguments(fj_context *context) {
  fixture f;
  fixture_init(&f);
  pattern_outputs();
  fj_status s = fj_attention_forward(NULL, &f.args);
  check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "context") != NULL && outputs_unchanged(),
        "forward(NULL context): %s \"%s\"", fj_status_string(s), fj_last_error());
  s = fj_attention_forward(context, NULL);
  check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "args") != NULL,
        "forward(NULL args): %s \"%s\"", fj_status_string(s), fj_last_error());

  for (int i = 0; i < (int)(sizeof bad_cases / sizeof bad_cases[0]); i++) {
    fixture_init(&f);
    break_fixture(&f, i);
    pattern_outputs();
    s = fj_attention_forward(context, &f.args);
    const char *message = fj_last_error();
    check(s == FJ_INVALID_ARGUMENT && strstr(message, bad_cases[i].expect) != NULL && outputs_unchanged(),
          "%s: %s \"%s\" (expects \"%s\"%s)", bad_cases[i].what, fj_status_string(s), message,
          bad_cases[i].expect, outputs_unchanged() ? "" : ", OUTPUT WRITTEN");
  }

  /* The context still works after all that, and success clears the message. */
  fixture_init(&f);
  s = fj_attention_forward(context, &f.args);
  check(s == FJ_OK && fj_last_error()[0] == '\0', "valid call after the errors: %s, last error \"%s\"",
        fj_status_string(s), fj_last_error());
  /* A paged call whose table repeats its one page, and whose unread entry is garbage, is valid. */
  fixture_init(&f);
  f.table[1] = -7;
  f.lens[0] = S;
  f.args.seqlens_kv = &f.seqlens;
  f.args.block_table = &f.block_table;
  s = fj_attention_forward(context, &f.args);
  check(s == FJ_OK, "paged call reading only block_table[0][0]: %s \"%s\"", fj_status_string(s), fj_last_error());
  /* A workspace is valid on the CPU (which splits into its own memory), and it asks for none. */
  fixture_init(&f);
  f.args.workspace = &f.workspace;
  s = fj_attention_forward(context, &f.args);
  size_t bytes = 1;
  fj_status size_status = fj_attention_workspace_size(context, &f.args, &bytes);
  check(s == FJ_OK && size_status == FJ_OK && bytes == 0, "a call with a workspace on the CPU: %s; it asks for %zu bytes",
        fj_status_string(s), bytes);
  size_status = fj_attention_workspace_size(context, &f.args, NULL);
  check(size_status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "bytes is NULL") != NULL,
        "fj_attention_workspace_size(bytes NULL): %s \"%s\"", fj_status_string(size_status), fj_last_error());
  f.workspace.byte_offset = 8;
  size_status = fj_attention_workspace_size(context, &f.args, &bytes);
  check(size_status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "16-byte aligned") != NULL,
        "fj_attention_workspace_size validates as the call does: %s \"%s\"", fj_status_string(size_status),
        fj_last_error());
}

/* ---- contexts ---- */

static void expect_create(const char *label, const fj_context_options *options, fj_status expected,
                          const char *expect1, const char *expect2) {
  fj_context *context = (fj_context *)(uintptr_t)1;  /* must be overwritten with NULL on failure */
  fj_status s = fj_context_create(options, &context);
  const char *message = fj_last_error();
  int ok = s == expected;
  if (expected != FJ_OK) {
    ok = ok && context == NULL && message[0] != '\0';
    if (expect1) ok = ok && strstr(message, expect1) != NULL;
    if (expect2) ok = ok && strstr(message, expect2) != NULL;
  }
  check(ok, "%s: %s \"%s\"", label, fj_status_string(s), message);
  if (s == FJ_OK) fj_context_destroy(context);
}

static void test_contexts(const char *scratch_dir) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.disable_disk_cache = 1;

  static const struct {
    const char *device;
    fj_status expected;
    const char *expect1, *expect2;
  } devices[] = {
      {"cuda:0", FJ_NO_DEVICE, "cuda:0", "cpu:0"},
      {"hip:1", FJ_NO_DEVICE, "hip:1", "cpu:0"},
      {"nonsense", FJ_NO_DEVICE, "nonsense", "cpu:0"},
      {"cpu:1", FJ_NO_DEVICE, "cpu:1", "cpu:0"},
      {"nonsense:x", FJ_INVALID_ARGUMENT, "nonsense:x", NULL},
      {"cpu:x", FJ_INVALID_ARGUMENT, "cpu:x", NULL},
      {"cpu:", FJ_INVALID_ARGUMENT, "cpu:", NULL},
      {"cpu:-1", FJ_INVALID_ARGUMENT, "cpu:-1", NULL},
      {"", FJ_INVALID_ARGUMENT, "device", NULL},
      {":0", FJ_INVALID_ARGUMENT, ":0", NULL},
      {"cpu", FJ_OK, NULL, NULL},
      {"cpu:0", FJ_OK, NULL, NULL},
      {"auto", FJ_OK, NULL, NULL},
  };
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
    char label[96];
    snprintf(label, sizeof label, "fj_context_create(device=\"%s\")", devices[i].device);
    options.device = devices[i].device;
    expect_create(label, &options, devices[i].expected, devices[i].expect1, devices[i].expect2);
  }

  /* NULL device reads FLASHJIT_DEVICE. */
  options.device = NULL;
  const char *saved = getenv("FLASHJIT_DEVICE");
  char *saved_copy = saved ? strdup(saved) : NULL;
  setenv("FLASHJIT_DEVICE", "cuda:3", 1);
  expect_create("FLASHJIT_DEVICE=cuda:3, device=NULL", &options, FJ_NO_DEVICE, "cuda:3", "cpu:0");
  setenv("FLASHJIT_DEVICE", "cpu", 1);
  expect_create("FLASHJIT_DEVICE=cpu, device=NULL", &options, FJ_OK, NULL, NULL);
  if (saved_copy) {
    setenv("FLASHJIT_DEVICE", saved_copy, 1);
    free(saved_copy);
  } else {
    unsetenv("FLASHJIT_DEVICE");
  }

  /* A cache folder that cannot exist: below a regular file. */
  char file_path[4096], cache_path[4200];
  snprintf(file_path, sizeof file_path, "%s/regular-file", scratch_dir);
  FILE *file = fopen(file_path, "w");
  if (file) fclose(file);
  snprintf(cache_path, sizeof cache_path, "%s/cache", file_path);
  fj_context_options io_options;
  fj_context_options_init(&io_options);
  io_options.device = "cpu";
  io_options.cache_dir = cache_path;
  expect_create("cache_dir below a regular file", &io_options, FJ_IO, "regular-file", NULL);
  io_options.cache_dir = file_path;
  expect_create("cache_dir is a regular file", &io_options, FJ_IO, "regular-file", NULL);
  io_options.disable_disk_cache = 1;
  expect_create("cache_dir unusable but disable_disk_cache=1", &io_options, FJ_OK, NULL, NULL);
  unlink(file_path);

  fj_context_options bad;
  fj_context_options_init(&bad);
  bad.disable_disk_cache = 1;
  bad.num_threads = -1;
  expect_create("num_threads=-1", &bad, FJ_INVALID_ARGUMENT, "num_threads", NULL);
  bad.num_threads = 1 << 20;
  expect_create("num_threads=2^20", &bad, FJ_INVALID_ARGUMENT, "num_threads", NULL);
  fj_context_options_init(&bad);
  bad.struct_size = 0;
  expect_create("options.struct_size=0", &bad, FJ_INVALID_ARGUMENT, "struct_size", NULL);

  fj_status s = fj_context_create(&options, NULL);
  check(s == FJ_INVALID_ARGUMENT, "fj_context_create(out=NULL): %s \"%s\"", fj_status_string(s),
        fj_last_error());
  s = fj_context_destroy(NULL);
  check(s == FJ_OK, "fj_context_destroy(NULL): %s", fj_status_string(s));

  char name[8];
  s = fj_context_device_name(NULL, name, sizeof name);
  check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "context") != NULL,
        "fj_context_device_name(NULL context): %s \"%s\"", fj_status_string(s), fj_last_error());
}

/* The init functions write only the caller's own bytes: a binding (or a program built against an older
 * header) whose struct stops before today's last field passes its size, and its calls read that far. */
static void test_struct_sizes(fj_context *context) {
  union {
    fj_attention_args args;
    unsigned char bytes[sizeof(fj_attention_args) + 32];
  } buffer;
  const size_t old_size = offsetof(fj_attention_args, stream) + sizeof(void *);  /* before seqlens_kv */
  memset(buffer.bytes, 0xAB, sizeof buffer.bytes);
  fj_attention_args_init_size(&buffer.args, old_size);
  int untouched = 1;
  for (size_t i = old_size; i < sizeof buffer.bytes; i++) untouched &= buffer.bytes[i] == 0xAB;
  check(buffer.args.struct_size == old_size && untouched,
        "fj_attention_args_init_size(%zu): struct_size %u, the %zu bytes after it untouched: %d", old_size,
        buffer.args.struct_size, sizeof buffer.bytes - old_size, untouched);
  fixture f;
  fixture_init(&f);
  buffer.args.q = &f.q, buffer.args.k = &f.k, buffer.args.v = &f.v, buffer.args.o = &f.o, buffer.args.lse = &f.lse;
  fj_status s = fj_attention_forward(context, &buffer.args);  /* the garbage after it is never read */
  check(s == FJ_OK, "a call with args of the first layout (%zu bytes; 0xAB after them): %s \"%s\"", old_size,
        fj_status_string(s), fj_last_error());
  fj_attention_args_init_size(&buffer.args, sizeof buffer.bytes);
  check(buffer.args.struct_size == sizeof(fj_attention_args) && buffer.bytes[sizeof(fj_attention_args)] == 0xAB,
        "a larger struct (a newer header's) gets this version's size (%u) and nothing past it",
        buffer.args.struct_size);
  fj_attention_args tiny;
  memset(&tiny, 0xCD, sizeof tiny);
  fj_attention_args_init_size(&tiny, 2);
  check(tiny.struct_size == 0xCDCDCDCDu, "a size under 4 bytes writes nothing");

  union {
    fj_problem_shape shape;
    unsigned char bytes[sizeof(fj_problem_shape) + 16];
  } shape_buffer;
  const size_t shape_old = offsetof(fj_problem_shape, varlen);
  memset(shape_buffer.bytes, 0xAB, sizeof shape_buffer.bytes);
  fj_problem_shape_init_size(&shape_buffer.shape, shape_old);
  untouched = 1;
  for (size_t i = shape_old; i < sizeof shape_buffer.bytes; i++) untouched &= shape_buffer.bytes[i] == 0xAB;
  check(shape_buffer.shape.struct_size == shape_old && shape_buffer.shape.head_dim == 128 && untouched,
        "fj_problem_shape_init_size(%zu): defaults up to there (head_dim %d), nothing after: %d", shape_old,
        shape_buffer.shape.head_dim, untouched);
  union {
    fj_context_options options;
    unsigned char bytes[sizeof(fj_context_options) + 16];
  } options_buffer;
  memset(options_buffer.bytes, 0xAB, sizeof options_buffer.bytes);
  fj_context_options_init(&options_buffer.options);
  check(options_buffer.options.struct_size == sizeof(fj_context_options) && options_buffer.options.device == NULL &&
            options_buffer.bytes[sizeof(fj_context_options)] == 0xAB,
        "fj_context_options_init (the macro: the caller's sizeof) fills its struct and stops there");
}

static void test_strings(fj_context *context) {
  static const struct {
    fj_status status;
    const char *text;
  } codes[] = {
#define FJ_TEST_STATUS_(name, value, text) {FJ_##name, text},
      FJ_STATUS_MAP(FJ_TEST_STATUS_)
#undef FJ_TEST_STATUS_
  };
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    const char *got = fj_status_string(codes[i].status);
    check(got != NULL && strcmp(got, codes[i].text) == 0, "fj_status_string(%d) = \"%s\"",
          (int)codes[i].status, got ? got : "(null)");
  }
  const char *unknown = fj_status_string((fj_status)12345);
  check(unknown != NULL && strcmp(unknown, "unknown status") == 0, "fj_status_string(12345) = \"%s\"",
        unknown ? unknown : "(null)");
  unknown = fj_status_string((fj_status)-1);
  check(unknown != NULL && strcmp(unknown, "unknown status") == 0, "fj_status_string(-1) = \"%s\"",
        unknown ? unknown : "(null)");
  const char *version = fj_version_string();
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", FJ_VERSION_MAJOR, FJ_VERSION_MINOR, FJ_VERSION_PATCH);
  check(version != NULL && strcmp(version, expected) == 0, "fj_version_string() = \"%s\"",
        version ? version : "(null)");

  char name[256], small[4];
  fj_status s = fj_context_device_name(context, name, sizeof name);
  check(s == FJ_OK && strncmp(name, "cpu: ", 5) == 0 && strlen(name) > 5, "device name \"%s\"", name);
  s = fj_context_device_name(context, small, sizeof small);
  check(s == FJ_OK && strcmp(small, "cpu") == 0, "device name into 4 bytes: \"%s\"", small);
  check(fj_last_error() != NULL, "fj_last_error() is never NULL");
}

/* fj_set_log_handler / fj_set_log_level: what a caller that keeps its own log gets. */
typedef struct log_capture {
  int count, prefixed, nested_status, nested_seen, reenter;
  fj_log_level level;
  char first[256];
} log_capture;

static void capture_log(fj_log_level level, const char *message, void *user) {
  log_capture *c = user;
  if (c->count++ == 0) {
    c->level = level;
    snprintf(c->first, sizeof c->first, "%s", message);
  }
  c->prefixed += strncmp(message, "flashjit:", 9) == 0;
  c->nested_seen += strstr(message, "level=42") != NULL;
  if (c->reenter) {
    /* a flashjit call that logs (its error, at the debug level) from inside the handler */
    c->reenter = 0;
    c->nested_status = fj_set_log_level(42);
  }
}

static fj_status create_and_destroy(void) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  fj_status s = fj_context_create(&options, &context);
  fj_context_destroy(context);
  return s;
}

static void test_log_handler(void) {
  log_capture c;
  memset(&c, 0, sizeof c);
  check(fj_set_log_handler(capture_log, &c) == FJ_OK && fj_set_log_level(FJ_LOG_INFO) == FJ_OK, "a handler at info");
  fj_status s = create_and_destroy();
  check(s == FJ_OK && c.count >= 1 && c.level == FJ_LOG_INFO && strncmp(c.first, "context on cpu:0 ", 17) == 0 &&
            c.prefixed == 0,
        "a context's creation reaches the handler at info, without the stderr prefix: %d message(s), level %d, "
        "\"%s\"", c.count, (int)c.level, c.first);

  memset(&c, 0, sizeof c);
  fj_set_log_level(FJ_LOG_WARN);
  s = create_and_destroy();
  check(s == FJ_OK && c.count == 0, "at warn the info message is not made: %d message(s)", c.count);
  fj_set_log_level(FJ_LOG_OFF);
  s = create_and_destroy();
  check(s == FJ_OK && c.count == 0, "off: %d message(s)", c.count);

  /* The handler calls into flashjit, which logs: that message goes to stderr, the call returns. */
  memset(&c, 0, sizeof c);
  c.reenter = 1;
  fj_set_log_level(FJ_LOG_DEBUG);
  s = create_and_destroy();
  check(s == FJ_OK && c.count >= 1 && c.nested_status == FJ_INVALID_ARGUMENT && c.nested_seen == 0,
        "a handler's own flashjit call logs to stderr, not back into it (no deadlock): status %d, %d nested",
        (int)c.nested_status, c.nested_seen);

  const int bad[] = {-2, 4, 42};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[32];
    snprintf(want, sizeof want, "level=%d:", bad[i]);
    s = fj_set_log_level(bad[i]);
    check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), want) != NULL, "fj_set_log_level(%d): %s", bad[i],
          fj_last_error());
  }
  /* a refused level changed nothing: still debug */
  memset(&c, 0, sizeof c);
  s = create_and_destroy();
  check(s == FJ_OK && c.count >= 1, "the level stays debug after the refusals: %d message(s)", c.count);

  memset(&c, 0, sizeof c);
  check(fj_set_log_handler(NULL, NULL) == FJ_OK, "the handler removed");
  fj_set_log_level(FJ_LOG_OFF);  /* nothing on stderr either */
  s = create_and_destroy();
  check(s == FJ_OK && c.count == 0, "a removed handler gets nothing: %d message(s)", c.count);
  fj_set_log_level(FJ_LOG_WARN);
}

/* The registry and the CPU backend's description, seen from inside (not public, but what every
 * context relies on). */
static void test_backends(void) {
  check(backend_count() >= 1 && backend_get(0) != NULL && backend_get(-1) == NULL &&
            backend_get(backend_count()) == NULL,
        "registry lists %d backend(s)", backend_count());
  const fj_backend *cpu = backend_find("cpu");
  check(cpu == &cpu_backend && backend_find("nonsense") == NULL && backend_find(NULL) == NULL,
        "backend_find(\"cpu\") is the CPU backend");
  check(cpu->api_version == FJ_BACKEND_API_VERSION && strcmp(cpu->binary_kind, "o") == 0 &&
            cpu->device_type == kDLCPU && cpu->device_count() == 1,
        "cpu backend: api %d, kind \"%s\", device type %d, %d device(s)", cpu->api_version,
        cpu->binary_kind, cpu->device_type, cpu->device_count());
  backend_device_info info;
  fj_status s = cpu->device_info(0, &info);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "cpu|%s|%s|%d|", info.name, info.arch, info.compute_units);
  check(s == FJ_OK && info.name[0] && info.arch[0] && info.compute_units >= 1 && info.memory_bytes > 0 &&
            strncmp(info.fingerprint, prefix, strlen(prefix)) == 0 &&
            strlen(info.fingerprint) == strlen(prefix) + 16,
        "cpu:0 \"%s\" arch %s, %d cores, %.1f GiB, fingerprint \"%s\"", info.name, info.arch,
        info.compute_units, (double)info.memory_bytes / (1 << 30), info.fingerprint);
  s = cpu->device_info(1, &info);
  check(s == FJ_NO_DEVICE, "cpu device_info(1): %s \"%s\"", fj_status_string(s), fj_last_error());
  const fj_backend *selected = NULL;
  int index = -1;
  s = backend_select("auto", &selected, &index);
  check(s == FJ_OK && selected == cpu && index == 0, "backend_select(\"auto\") -> %s:%d",
        selected ? selected->name : "none", index);
}

int main(void) {
  char scratch_dir[] = "/tmp/fj-test-api-XXXXXX";
  if (mkdtemp(scratch_dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  int64_t q_shape[4] = {B, S, H, D}, lse_shape[3] = {B, H, S};
  if (host_tensor_alloc(&q, DTYPE_F32, 4, q_shape, NULL) || host_tensor_alloc(&k, DTYPE_F32, 4, q_shape, NULL) ||
      host_tensor_alloc(&v, DTYPE_F32, 4, q_shape, NULL) || host_tensor_alloc(&o, DTYPE_F32, 4, q_shape, NULL) ||
      host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL)) {
    printf("allocation failed\n0 passed, 1 failed\n");
    return 1;
  }
  host_tensor_fill_random(&q, 1);
  host_tensor_fill_random(&k, 2);
  host_tensor_fill_random(&v, 3);

  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.num_threads = 2;
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  fj_status s = fj_context_create(&options, &context);
  check(s == FJ_OK, "fj_context_create(cpu): %s %s", fj_status_string(s), fj_last_error());
  if (s == FJ_OK) {
    test_bad_arguments(context);
    test_struct_sizes(context);
    test_strings(context);
  }
  test_contexts(scratch_dir);
  test_backends();
  test_log_handler();
  fj_context_destroy(context);
  rmdir(scratch_dir);

  host_tensor_free(&q);
  host_tensor_free(&k);
  host_tensor_free(&v);
  host_tensor_free(&o);
  host_tensor_free(&lse);
  return check_summary();
}
