/* test_validation.c: core_validate_attention, the library's front door. Every bad argument must come
 * back as a status with a message that names the argument and its values, and must leave every tensor
 * byte as it was; every valid layout (packed QKV, GQA/MQA, empty sequences, strided views, LSE) must be
 * accepted and described correctly in the problem. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "flashjit.h"
#include "core/error.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "check.h"

/* A valid call: q [B,SQ,H,D], k/v [B,SKV,HK,D], o like q, lse [B,H,SQ]. The DLTensors are copies with
 * their own shape and stride arrays, so a case can break one field without touching the memory. */
typedef struct fixture {
  host_tensor mem[5]; /* q k v o lse */
  DLTensor t[5];
  int64_t shape[5][4];
  int64_t strides[5][4];
  fj_attention_args args;
  unsigned char *snapshot[5];
} fixture;

enum { Q, K, V, O, L };
static const char *const names[5] = {"q", "k", "v", "o", "lse"};

static void fixture_init(fixture *f, dtype_id dtype, int64_t b, int64_t sq, int64_t skv, int64_t h,
                         int64_t hk, int64_t d) {
  memset(f, 0, sizeof *f);
  int64_t shapes[5][4] = {{b, sq, h, d}, {b, skv, hk, d}, {b, skv, hk, d}, {b, sq, h, d}, {b, h, sq, 1}};
  for (int i = 0; i < 5; i++) {
    int ndim = i == L ? 3 : 4;
    dtype_id dt = i == L ? DTYPE_F32 : dtype;
    if (host_tensor_alloc(&f->mem[i], dt, ndim, shapes[i], NULL) != 0) {
      printf("FAIL: fixture allocation\n");
      exit(1);
    }
    host_tensor_fill_random(&f->mem[i], (uint64_t)i + 1);
    f->t[i] = f->mem[i].t;
    memcpy(f->shape[i], f->mem[i].shape, sizeof f->shape[i]);
    memcpy(f->strides[i], f->mem[i].strides, sizeof f->strides[i]);
    f->t[i].shape = f->shape[i];
    f->t[i].strides = f->strides[i];
  }
  memset(&f->args, 0, sizeof f->args);
  f->args.struct_size = sizeof f->args;
  f->args.q = &f->t[Q];
  f->args.k = &f->t[K];
  f->args.v = &f->t[V];
  f->args.o = &f->t[O];
  f->args.lse = &f->t[L];
}

static void fixture_free(fixture *f) {
  for (int i = 0; i < 5; i++) {
    host_tensor_free(&f->mem[i]);
    free(f->snapshot[i]);
    f->snapshot[i] = NULL;
  }
}

static void fixture_snapshot(fixture *f) {
  for (int i = 0; i < 5; i++) {
    free(f->snapshot[i]);
    f->snapshot[i] = malloc(f->mem[i].allocation_bytes);
    memcpy(f->snapshot[i], f->mem[i].allocation, f->mem[i].allocation_bytes);
  }
}

static int fixture_untouched(const fixture *f) {
  for (int i = 0; i < 5; i++)
    if (memcmp(f->snapshot[i], f->mem[i].allocation, f->mem[i].allocation_bytes) != 0) return 0;
  return 1;
}

/* Calls the validator on f->args and checks: the status, every substring in the message, no tensor
 * byte changed, and the output struct untouched. The substring list ends with NULL. */
static void expect_fail(fixture *f, const char *what, fj_status want, ...) {
  attention_problem problem, before;
  memset(&problem, 0xab, sizeof problem);
  memcpy(&before, &problem, sizeof problem);
  /* o and lse hold a pattern: poison them (NaN bytes), then remember every byte of every tensor. */
  host_tensor_poison(&f->mem[O]);
  host_tensor_poison(&f->mem[L]);
  fixture_snapshot(f);
  core_error_clear();
  fj_status got = core_validate_attention(&f->args, &problem);
  const char *message = fj_last_error();
  int all_found = 1;
  va_list ap;
  va_start(ap, want);
  const char *missing = NULL;
  for (const char *part = va_arg(ap, const char *); part != NULL; part = va_arg(ap, const char *))
    if (strstr(message, part) == NULL) {
      all_found = 0;
      if (missing == NULL) missing = part;
    }
  va_end(ap);
  CHECK(got == want && all_found && fixture_untouched(f) && memcmp(&problem, &before, sizeof problem) == 0,
        "%s -> %s: \"%s\"%s%s%s", what, fj_status_string(got), message, missing ? " (missing \"" : "",
        missing ? missing : "", missing ? "\")" : "");
}

/* Valid: returns the status and fills *p; checks the tensors were not written. */
static fj_status expect_ok(fixture *f, const char *what, attention_problem *p) {
  fixture_snapshot(f);
  core_error_clear();
  fj_status got = core_validate_attention(&f->args, p);
  CHECK(got == FJ_OK && fixture_untouched(f), "%s is valid (%s%s%s)", what, fj_status_string(got),
        got == FJ_OK ? "" : ": ", fj_last_error());
  return got;
}

#define B 2
#define SQ 128
#define SKV 96
#define H 8
#define HK 8
#define D 128

static void fresh(fixture *f) {
  fixture_free(f);
  fixture_init(f, DTYPE_F16, B, SQ, SKV, H, HK, D);
}

static void test_pointers_and_struct(fixture *f) {
  attention_problem p;
  fresh(f);
  core_error_clear();
  CHECK(core_validate_attention(NULL, &p) == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "args is NULL"),
        "NULL args: \"%s\"", fj_last_error());
  CHECK(core_validate_attention(&f->args, NULL) == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "out is NULL"),
        "NULL out: \"%s\"", fj_last_error());
  f->args.struct_size = 0;
  expect_fail(f, "struct_size 0", FJ_INVALID_ARGUMENT, "args.struct_size=0", "fj_attention_args_init", NULL);
  f->args.struct_size = 8;
  expect_fail(f, "struct_size 8", FJ_INVALID_ARGUMENT, "args.struct_size=8", NULL);
  f->args.struct_size = (uint32_t)offsetof(fj_attention_args, stream);
  char text[64];
  snprintf(text, sizeof text, "args.struct_size=%u", (unsigned)offsetof(fj_attention_args, stream));
  expect_fail(f, "struct_size without the stream field", FJ_INVALID_ARGUMENT, text, NULL);
  f->args.struct_size = sizeof(fj_attention_args) + 64;
  expect_ok(f, "a larger struct_size (a newer caller)", &p);
  f->args.struct_size = sizeof(fj_attention_args);

  const DLTensor **inputs[3] = {&f->args.q, &f->args.k, &f->args.v};
  for (int i = 0; i < 3; i++) {
    const DLTensor *keep = *inputs[i];
    *inputs[i] = NULL;
    snprintf(text, sizeof text, "args.%s is NULL", names[i]);
    expect_fail(f, text, FJ_INVALID_ARGUMENT, text, NULL);
    *inputs[i] = keep;
  }
  f->args.o = NULL;
  expect_fail(f, "args.o is NULL", FJ_INVALID_ARGUMENT, "args.o is NULL", NULL);
  f->args.o = &f->t[O];

  f->t[Q].shape = NULL;
  expect_fail(f, "q.shape NULL", FJ_INVALID_ARGUMENT, "q.shape is NULL", NULL);
  f->t[Q].shape = f->shape[Q];
  f->t[L].shape = NULL;
  expect_fail(f, "lse.shape NULL", FJ_INVALID_ARGUMENT, "lse.shape is NULL", NULL);
  f->t[L].shape = f->shape[L];
}

static void test_ndim(fixture *f) {
  fresh(f);
  f->t[Q].ndim = 3;
  expect_fail(f, "q.ndim 3", FJ_INVALID_ARGUMENT, "q.ndim=3, expected 4 ([batch, seqlen_q, heads, head_dim])",
              NULL);
  f->t[Q].ndim = 4;
  f->t[K].ndim = 5;
  expect_fail(f, "k.ndim 5", FJ_INVALID_ARGUMENT, "k.ndim=5, expected 4 ([batch, seqlen_kv, kv_heads, head_dim])",
              NULL);
  f->t[K].ndim = 4;
  f->t[V].ndim = 0;
  expect_fail(f, "v.ndim 0", FJ_INVALID_ARGUMENT, "v.ndim=0, expected 4", NULL);
  f->t[V].ndim = 4;
  f->t[O].ndim = -1;
  expect_fail(f, "o.ndim -1", FJ_INVALID_ARGUMENT, "o.ndim=-1, expected 4", NULL);
  f->t[O].ndim = 4;
  f->t[L].ndim = 4;
  expect_fail(f, "lse.ndim 4", FJ_INVALID_ARGUMENT, "lse.ndim=4, expected 3 ([batch, heads, seqlen_q])", NULL);
  f->t[L].ndim = 3;
}

static void test_dtypes(fixture *f) {
  fresh(f);
  DLDataType i32 = {kDLInt, 32, 1}, f32x4 = {kDLFloat, 32, 4}, f64 = {kDLFloat, 64, 1}, u8 = {kDLUInt, 8, 1};
  DLDataType fp16 = {kDLFloat, 16, 1}, bf16 = {kDLBfloat, 16, 1}, fp32 = {kDLFloat, 32, 1};
  DLDataType weird = {77, 16, 1};
  f->t[Q].dtype = i32;
  expect_fail(f, "q int32", FJ_INVALID_ARGUMENT, "q.dtype is int32x1; expected fp32, fp16 or bf16", NULL);
  f->t[Q].dtype = f32x4;
  expect_fail(f, "q float32x4", FJ_INVALID_ARGUMENT, "q.dtype is float32x4", NULL);
  f->t[Q].dtype = fp16;
  f->t[K].dtype = f64;
  expect_fail(f, "k float64", FJ_INVALID_ARGUMENT, "k.dtype is float64x1", NULL);
  f->t[K].dtype = fp16;
  f->t[O].dtype = u8;
  expect_fail(f, "o uint8", FJ_INVALID_ARGUMENT, "o.dtype is uint8x1", NULL);
  f->t[O].dtype = weird;
  expect_fail(f, "o code 77", FJ_INVALID_ARGUMENT, "o.dtype is code77:16x1", NULL);
  f->t[O].dtype = fp16;

  /* mixed dtypes: the fixture's memory is fp16, but validation never reads it */
  f->t[Q].dtype = bf16;
  expect_fail(f, "k fp16 with q bf16", FJ_INVALID_ARGUMENT, "k.dtype=fp16 but q.dtype=bf16", NULL);
  f->t[K].dtype = bf16;
  expect_fail(f, "v fp16 with q and k bf16", FJ_INVALID_ARGUMENT, "v.dtype=fp16 but k.dtype=bf16", NULL);
  f->t[V].dtype = bf16;
  f->t[O].dtype = fp32;
  expect_fail(f, "o fp32 with q bf16", FJ_INVALID_ARGUMENT, "o.dtype=fp32 but q.dtype=bf16", NULL);
  f->t[Q].dtype = f->t[K].dtype = f->t[V].dtype = f->t[O].dtype = fp16;

  f->t[L].dtype = fp16;
  expect_fail(f, "lse fp16", FJ_INVALID_ARGUMENT, "lse.dtype must be fp32", "fp16", NULL);
  f->t[L].dtype = i32;
  expect_fail(f, "lse int32", FJ_INVALID_ARGUMENT, "lse.dtype must be fp32", "int32x1", NULL);
  f->t[L].dtype = fp32;
}

static void test_shapes(fixture *f) {
  fresh(f);
  f->shape[K][1] = -3;
  expect_fail(f, "negative seqlen_kv", FJ_INVALID_ARGUMENT, "k.shape[1]=-3 is negative", NULL);
  f->shape[K][1] = SKV;
  f->shape[L][2] = -1;
  expect_fail(f, "negative lse dim", FJ_INVALID_ARGUMENT, "lse.shape[2]=-1 is negative", NULL);
  f->shape[L][2] = SQ;

  f->shape[Q][0] = f->shape[O][0] = 0;
  expect_fail(f, "batch 0", FJ_INVALID_ARGUMENT, "q.shape[0]=0: batch must be at least 1", NULL);
  f->shape[Q][0] = f->shape[O][0] = B;
  f->shape[Q][2] = f->shape[O][2] = 0;
  expect_fail(f, "heads 0", FJ_INVALID_ARGUMENT, "q.shape[2]=0: heads must be", NULL);
  f->shape[Q][2] = f->shape[O][2] = (int64_t)1 << 33;
  expect_fail(f, "heads 2^33", FJ_INVALID_ARGUMENT, "q.shape[2]=8589934592: heads must be from 1 to 2147483647",
              NULL);
  f->shape[Q][2] = f->shape[O][2] = H;

  int64_t bad_d[] = {260, 580, 584, 0, 4, 12, 100, 255, 1024};
  for (size_t i = 0; i < sizeof bad_d / sizeof bad_d[0]; i++) {
    for (int t = 0; t < 4; t++) f->shape[t][3] = bad_d[i];
    char want[96], what[32];
    snprintf(want, sizeof want, "head_dim=%lld: must be a multiple of 8 from 8 to 576", (long long)bad_d[i]);
    snprintf(what, sizeof what, "head_dim %lld", (long long)bad_d[i]);
    expect_fail(f, what, FJ_INVALID_ARGUMENT, want, "q.shape[3]", NULL);
  }
  for (int t = 0; t < 4; t++) f->shape[t][3] = D;

  f->shape[K][3] = 96;
  expect_fail(f, "k head_dim 96", FJ_INVALID_ARGUMENT, "k.shape[3]=96 but q.shape[3]=128 (head_dim must match)",
              NULL);
  f->shape[K][3] = D;
  f->shape[K][0] = 3;
  expect_fail(f, "k batch 3", FJ_INVALID_ARGUMENT, "k.shape[0]=3 but q.shape[0]=2 (batch must match)", NULL);
  f->shape[K][0] = B;
  f->shape[K][2] = f->shape[V][2] = 0;
  expect_fail(f, "kv_heads 0", FJ_INVALID_ARGUMENT, "k.shape[2]=0: kv_heads must be", NULL);
  f->shape[K][2] = f->shape[V][2] = HK;
  f->shape[V][1] = 95;
  expect_fail(f, "v seqlen", FJ_INVALID_ARGUMENT, "v.shape[1]=95 but k.shape[1]=96 (seqlen_kv must match)", NULL);
  f->shape[V][1] = SKV;
  f->shape[V][2] = 4;
  expect_fail(f, "v kv_heads", FJ_INVALID_ARGUMENT, "v.shape[2]=4 but k.shape[2]=8 (kv_heads must match)", NULL);
  f->shape[V][2] = HK;
  /* v may have a head dim of its own, and o then has it */
  f->shape[V][3] = 64;
  expect_fail(f, "v head_dim alone", FJ_INVALID_ARGUMENT, "o.shape[3]=128 but v.shape[3]=64 (o has v's head dim)",
              NULL);
  int64_t bad_dv[] = {60, 0, 12, 584, 4};
  for (int i = 0; i < 5; i++) {
    f->shape[V][3] = f->shape[O][3] = bad_dv[i];
    char want[96], what[48];
    snprintf(want, sizeof want, "v.shape[3]=%lld: v's head dim must be a multiple of 8 from 8 to 576",
             (long long)bad_dv[i]);
    snprintf(what, sizeof what, "v and o head_dim %lld", (long long)bad_dv[i]);
    expect_fail(f, what, FJ_INVALID_ARGUMENT, want, NULL);
  }
  f->shape[V][3] = f->shape[O][3] = D;
  f->shape[V][0] = 1;
  expect_fail(f, "v batch", FJ_INVALID_ARGUMENT, "v.shape[0]=1 but k.shape[0]=2 (batch must match)", NULL);
  f->shape[V][0] = B;
  f->shape[O][1] = 127;
  expect_fail(f, "o seqlen", FJ_INVALID_ARGUMENT, "o.shape[1]=127 but q.shape[1]=128 (seqlen_q must match)", NULL);
  f->shape[O][1] = SQ;
  f->shape[O][2] = 16;
  expect_fail(f, "o heads", FJ_INVALID_ARGUMENT, "o.shape[2]=16 but q.shape[2]=8 (heads must match)", NULL);
  f->shape[O][2] = H;
  f->shape[O][3] = 64;
  expect_fail(f, "o head_dim", FJ_INVALID_ARGUMENT, "o.shape[3]=64 but v.shape[3]=128 (o has v's head dim)", NULL);
  f->shape[O][3] = D;
  f->shape[O][0] = 4;
  expect_fail(f, "o batch", FJ_INVALID_ARGUMENT, "o.shape[0]=4 but q.shape[0]=2 (batch must match)", NULL);
  f->shape[O][0] = B;

  /* heads 6 over kv_heads 4: shapes only, the memory is not read */
  f->shape[Q][2] = f->shape[O][2] = 6;
  f->shape[K][2] = f->shape[V][2] = 4;
  f->shape[L][1] = 6;
  expect_fail(f, "heads 6 kv 4", FJ_INVALID_ARGUMENT, "heads=6 is not a multiple of kv_heads=4", NULL);
  f->shape[Q][2] = f->shape[O][2] = H;
  f->shape[K][2] = f->shape[V][2] = HK;
  f->shape[L][1] = H;

  f->shape[L][2] = 100;
  expect_fail(f, "lse seqlen", FJ_INVALID_ARGUMENT, "lse.shape=[2,8,100], expected [2,8,128] ([batch, heads, seqlen_q])",
              NULL);
  f->shape[L][2] = SQ;
  f->shape[L][0] = 1;
  expect_fail(f, "lse batch", FJ_INVALID_ARGUMENT, "lse.shape=[1,8,128], expected [2,8,128]", NULL);
  f->shape[L][0] = B;
  f->shape[L][1] = 4;
  expect_fail(f, "lse heads", FJ_INVALID_ARGUMENT, "lse.shape=[2,4,128], expected [2,8,128]", NULL);
  f->shape[L][1] = H;
  /* [b, sq, h] (the transposed order some libraries use) is not ours */
  f->shape[L][1] = SQ;
  f->shape[L][2] = H;
  expect_fail(f, "lse [b, sq, h]", FJ_INVALID_ARGUMENT, "lse.shape=[2,128,8], expected [2,8,128]", NULL);
  f->shape[L][1] = H;
  f->shape[L][2] = SQ;
}

static void test_devices(fixture *f) {
  fresh(f);
  f->t[Q].device.device_type = kDLCUDA;
  expect_fail(f, "q on cuda, k on cpu", FJ_INVALID_ARGUMENT, "q.device=(cuda,0) but k.device=(cpu,0)", NULL);
  f->t[Q].device.device_type = kDLCPU;
  f->t[V].device.device_id = 1;
  expect_fail(f, "v on cpu 1", FJ_INVALID_ARGUMENT, "q.device=(cpu,0) but v.device=(cpu,1)", NULL);
  f->t[V].device.device_id = 0;
  f->t[O].device.device_type = kDLROCM;
  expect_fail(f, "o on rocm", FJ_INVALID_ARGUMENT, "q.device=(cpu,0) but o.device=(rocm,0)", NULL);
  f->t[O].device.device_type = kDLCPU;
  f->t[L].device.device_type = (DLDeviceType)99;
  expect_fail(f, "lse on device type 99", FJ_INVALID_ARGUMENT, "q.device=(cpu,0) but lse.device=(type99,0)", NULL);
  f->t[L].device.device_type = kDLCPU;
  attention_problem p;
  for (int i = 0; i < 5; i++) {
    f->t[i].device.device_type = kDLCUDA;
    f->t[i].device.device_id = 3;
  }
  /* All on one GPU: valid here (validation never reads the data); the device is recorded. */
  if (expect_ok(f, "everything on (cuda,3)", &p) == FJ_OK)
    CHECK(p.device.device_type == kDLCUDA && p.device.device_id == 3, "problem.device is (cuda,3)");
}

static void test_memory(fixture *f) {
  fresh(f);
  f->strides[Q][1] = -(H * D);
  expect_fail(f, "negative q stride", FJ_INVALID_ARGUMENT, "q.strides[1]=-1024 is negative", NULL);
  f->strides[Q][1] = H * D;
  f->strides[L][2] = -1;
  expect_fail(f, "negative lse stride", FJ_INVALID_ARGUMENT, "lse.strides[2]=-1 is negative", NULL);
  f->strides[L][2] = 1;

  void *keep = f->t[Q].data;
  f->t[Q].data = NULL;
  expect_fail(f, "q.data NULL", FJ_INVALID_ARGUMENT, "q.data is NULL", "262144 elements", NULL);
  f->t[Q].data = keep;
  keep = f->t[L].data;
  f->t[L].data = NULL;
  expect_fail(f, "lse.data NULL", FJ_INVALID_ARGUMENT, "lse.data is NULL", NULL);
  f->t[L].data = keep;

  /* extents that do not fit in int64 */
  f->shape[K][1] = f->shape[V][1] = (int64_t)1 << 55;
  f->t[K].strides = NULL;
  expect_fail(f, "row-major k of 2^55 rows", FJ_INVALID_ARGUMENT, "k: shape [2,36028797018963968,8,128]",
              "beyond 2^63 bytes", NULL);
  f->shape[K][1] = f->shape[V][1] = SKV;
  f->t[K].strides = f->strides[K];
  f->strides[V][0] = INT64_MAX;
  expect_fail(f, "v.strides[0]=INT64_MAX", FJ_INVALID_ARGUMENT,
              "v: shape [2,96,8,128] with strides [9223372036854775807,1024,", "beyond 2^63 bytes", NULL);
  f->strides[V][0] = INT64_MAX / 2 - 1000; /* the last element index fits; its byte does not */
  expect_fail(f, "v bytes just past int64", FJ_INVALID_ARGUMENT, "v: shape [2,96,8,128] with strides [4611686018427386903,",
              "beyond 2^63 bytes", NULL);
  f->strides[V][0] = SKV * HK * D;
  f->t[O].byte_offset = (uint64_t)1 << 63;
  expect_fail(f, "o.byte_offset 2^63", FJ_INVALID_ARGUMENT, "o.byte_offset=9223372036854775808 does not fit in int64",
              NULL);
  f->t[O].byte_offset = (uint64_t)INT64_MAX - 100;
  expect_fail(f, "o.byte_offset near 2^63", FJ_INVALID_ARGUMENT, "o: shape [2,128,8,128]", "byte_offset 9223372036854775707",
              "beyond 2^63 bytes", NULL);
  f->t[O].byte_offset = 0;
  keep = f->t[V].data;
  f->t[V].data = (void *)(UINTPTR_MAX - 4096);
  expect_fail(f, "v at the top of the address space", FJ_INVALID_ARGUMENT, "v: data=", "wraps around the address space",
              NULL);
  f->t[V].data = keep;
  f->t[K].byte_offset = 3;
  expect_fail(f, "k misaligned by 3 bytes", FJ_INVALID_ARGUMENT, "k.data + byte_offset", "+ 3 is not aligned to 2 bytes",
              NULL);
  f->t[K].byte_offset = 0;

  /* outputs overlapping inputs */
  f->t[O].data = f->t[Q].data;
  char want[160];
  uintptr_t q0 = (uintptr_t)f->t[Q].data, qend = q0 + (uintptr_t)B * SQ * H * D * 2;
  snprintf(want, sizeof want, "o overlaps q (bytes [0x%lx, 0x%lx) and [0x%lx, 0x%lx))", (unsigned long)q0,
           (unsigned long)qend, (unsigned long)q0, (unsigned long)qend);
  expect_fail(f, "o is q", FJ_INVALID_ARGUMENT, want, NULL);
  f->t[O].data = f->mem[O].t.data;
  /* v and o side by side in one buffer, so no other tensor is near */
  {
    size_t v_bytes = (size_t)B * SKV * HK * D * 2, o_bytes = (size_t)B * SQ * H * D * 2;
    char *both = aligned_alloc(64, (v_bytes + o_bytes + 63) / 64 * 64);
    attention_problem p;
    f->t[V].data = both;
    f->t[O].data = both + v_bytes - 2; /* o's first element is v's last */
    expect_fail(f, "o starts on v's last element", FJ_INVALID_ARGUMENT, "o overlaps v (bytes [", NULL);
    f->t[O].data = both + v_bytes;
    expect_ok(f, "o right after v", &p);
    f->t[V].data = f->mem[V].t.data;
    f->t[O].data = f->mem[O].t.data;
    free(both);
  }
  f->t[L].data = f->t[K].data;
  expect_fail(f, "lse is k", FJ_INVALID_ARGUMENT, "lse overlaps k (bytes [", NULL);
  f->t[L].data = f->mem[L].t.data;
  f->t[L].data = f->t[O].data;
  expect_fail(f, "lse is o", FJ_INVALID_ARGUMENT, "o overlaps lse (bytes [", NULL);
  f->t[L].data = f->mem[L].t.data;

  /* outputs overlapping themselves */
  f->strides[O][1] = 0;
  f->shape[Q][1] = f->shape[O][1] = 7;
  f->shape[L][2] = 7;
  expect_fail(f, "o.strides[1]=0", FJ_INVALID_ARGUMENT, "o.strides give overlapping elements (stride[1]=0 with shape[1]=7",
              NULL);
  f->shape[Q][1] = f->shape[O][1] = SQ;
  f->shape[L][2] = SQ;
  f->strides[O][1] = H * D;
  f->strides[O][2] = D / 2; /* heads half a row apart */
  expect_fail(f, "o heads overlap", FJ_INVALID_ARGUMENT, "o.strides give overlapping elements (stride[2]=64 with shape[2]=8",
              NULL);
  f->strides[O][2] = D;
  f->strides[O][0] = H * D; /* batch 1 lands on sequence position 1 */
  expect_fail(f, "o batch on top of seq", FJ_INVALID_ARGUMENT, "o.strides give overlapping elements",
              "strides [1024,1024,128,1]", NULL);
  f->strides[O][0] = SQ * H * D;
  f->strides[O][3] = 0;
  expect_fail(f, "o.strides[3]=0", FJ_INVALID_ARGUMENT, "o.strides give overlapping elements (stride[3]=0 with shape[3]=128",
              NULL);
  f->strides[O][3] = 1;
  f->strides[L][1] = 1; /* heads and seq both stride 1 */
  expect_fail(f, "lse strides overlap", FJ_INVALID_ARGUMENT, "lse.strides give overlapping elements", NULL);
  f->strides[L][1] = SQ;

  /* scale */
  f->args.softmax_scale = NAN;
  expect_fail(f, "scale NaN", FJ_INVALID_ARGUMENT, "softmax_scale=nan must be finite", NULL);
  f->args.softmax_scale = INFINITY;
  expect_fail(f, "scale inf", FJ_INVALID_ARGUMENT, "softmax_scale=inf must be finite", NULL);
  f->args.softmax_scale = -INFINITY;
  expect_fail(f, "scale -inf", FJ_INVALID_ARGUMENT, "softmax_scale=-inf must be finite", NULL);
  f->args.softmax_scale = 0;
}

/* ---- valid calls ---- */

static void test_valid_basic(fixture *f) {
  attention_problem p;
  fresh(f);
  f->args.causal = 5;
  if (expect_ok(f, "fp16 b2 sq128 skv96 h8 d128 with lse, causal", &p) != FJ_OK) return;
  CHECK(p.key.kind == PROBLEM_ATTENTION_FWD && p.key.dtype == DTYPE_F16 && p.key.head_dim == D &&
            p.key.heads == H && p.key.kv_heads == HK && p.key.causal == 1 && p.key.has_lse == 1 &&
            p.key.d_contiguous == 1 && p.key.seqlen_bucket == 7,
        "key: fp16 d128 h8 hk8 causal=1 lse=1 dcontig=1 bucket 7");
  CHECK(p.batch == B && p.seqlen_q == SQ && p.seqlen_kv == SKV, "sizes b=%lld sq=%lld skv=%lld",
        (long long)p.batch, (long long)p.seqlen_q, (long long)p.seqlen_kv);
  CHECK(fabsf(p.softmax_scale - 1.0f / sqrtf(128.0f)) < 1e-7f, "scale 0 resolves to 1/sqrt(128) = %g",
        (double)p.softmax_scale);
  CHECK(p.q.data == f->mem[Q].t.data && p.k.data == f->mem[K].t.data && p.v.data == f->mem[V].t.data &&
            p.o.data == f->mem[O].t.data && p.lse.data == f->mem[L].t.data,
        "view data pointers");
  CHECK(p.q.ndim == 4 && p.q.stride[0] == SQ * H * D && p.q.stride[1] == H * D && p.q.stride[2] == D &&
            p.q.stride[3] == 1 && p.k.stride[0] == SKV * HK * D && p.q.shape[1] == SQ && p.k.shape[1] == SKV,
        "q and k views: shapes and strides in elements");
  CHECK(p.lse.ndim == 3 && p.lse.shape[0] == B && p.lse.shape[1] == H && p.lse.shape[2] == SQ &&
            p.lse.shape[3] == 1 && p.lse.stride[0] == H * SQ && p.lse.stride[1] == SQ && p.lse.stride[2] == 1 &&
            p.lse.stride[3] == 0,
        "lse view [b,h,sq] with a unit fourth dimension");
  CHECK(p.device.device_type == kDLCPU && p.device.device_id == 0, "device (cpu,0)");

  f->args.softmax_scale = -0.25f;
  f->args.causal = 0;
  f->args.lse = NULL;
  if (expect_ok(f, "no lse, explicit negative scale", &p) == FJ_OK)
    CHECK(p.softmax_scale == -0.25f && p.key.has_lse == 0 && p.lse.data == NULL && p.key.causal == 0,
          "explicit scale kept, lse absent");

  /* Sliding windows: args zeroed by hand (this fixture's) have none; windowed reads both sides, a side
   * that reaches past every key bounds nothing, and causal is window_right = 0. */
  CHECK(p.key.window == 0 && p.key.causal == 0, "zeroed args: no window (window_left %lld in the struct)",
        (long long)f->args.window_left);
  f->args.windowed = 1;
  f->args.window_left = 3;
  f->args.window_right = -1;
  f->args.causal = 1;
  if (expect_ok(f, "window_left=3, causal", &p) == FJ_OK)
    CHECK(p.key.window == 1 && p.key.causal == 1 && p.window_left == 3 && p.window_right == 0,
          "window (3, 0): key window=1 causal=1, window %lld %lld", (long long)p.window_left, (long long)p.window_right);
  f->args.causal = 0;
  f->args.window_left = SKV;
  f->args.window_right = 2;
  if (expect_ok(f, "window_left=seqlen_kv, window_right=2", &p) == FJ_OK)
    CHECK(p.key.window == 0 && p.key.causal == 1 && p.window_right == 2,
          "a left side past every key is no window; the right side bounds (causal=%d, right %lld)", p.key.causal,
          (long long)p.window_right);
  f->args.window_right = SQ;
  if (expect_ok(f, "window_right=seqlen_q, not causal", &p) == FJ_OK)
    CHECK(p.key.window == 0 && p.key.causal == 0, "a right side past every key is no mask (causal=%d)", p.key.causal);
  f->args.windowed = 0;
  f->args.window_left = f->args.window_right = 0;

  /* NULL strides: row-major */
  f->args.lse = &f->t[L];
  for (int i = 0; i < 5; i++) f->t[i].strides = NULL;
  if (expect_ok(f, "NULL strides everywhere", &p) == FJ_OK)
    CHECK(p.o.stride[0] == SQ * H * D && p.o.stride[1] == H * D && p.o.stride[2] == D && p.o.stride[3] == 1 &&
              p.lse.stride[0] == H * SQ && p.lse.stride[2] == 1 && p.key.d_contiguous == 1,
          "NULL strides resolve to row-major");

  /* byte_offset moves the views */
  for (int i = 0; i < 5; i++) f->t[i].strides = f->strides[i];
  f->shape[Q][1] = f->shape[O][1] = SQ - 1;
  f->shape[L][2] = SQ - 1;
  f->t[Q].byte_offset = (uint64_t)H * D * 2; /* start at row 1 */
  f->t[O].byte_offset = 64;
  if (expect_ok(f, "byte offsets on q and o", &p) == FJ_OK)
    CHECK(p.q.data == (char *)f->mem[Q].t.data + H * D * 2 && p.o.data == (char *)f->mem[O].t.data + 64 &&
              p.seqlen_q == SQ - 1,
          "views include byte_offset");
}

static void test_valid_layouts(fixture *f) {
  attention_problem p;
  /* packed QKV: [b, s, 3*h*d] memory, three strided views, as PyTorch's qkv.view(...).unbind gives */
  fixture_free(f);
  fixture_init(f, DTYPE_BF16, 2, 64, 64, 4, 4, 64);
  int64_t packed_shape[3] = {2, 64, 3 * 4 * 64};
  host_tensor qkv;
  host_tensor_alloc(&qkv, DTYPE_BF16, 3, packed_shape, NULL);
  int64_t view_strides[4] = {64 * 3 * 4 * 64, 3 * 4 * 64, 64, 1};
  for (int i = 0; i < 3; i++) {
    f->t[i].data = qkv.t.data;
    f->t[i].byte_offset = (uint64_t)i * 4 * 64 * 2;
    memcpy(f->strides[i], view_strides, sizeof view_strides);
  }
  if (expect_ok(f, "packed QKV views of one [2,64,768] bf16 buffer", &p) == FJ_OK)
    CHECK(p.q.data == (char *)qkv.t.data && p.k.data == (char *)qkv.t.data + 512 &&
              p.v.data == (char *)qkv.t.data + 1024 && p.k.stride[1] == 768 && p.key.d_contiguous == 1 &&
              p.key.dtype == DTYPE_BF16,
          "packed views: k 512 bytes in, v 1024, row stride 768");
  /* o may not live in the packed buffer's range, even between q's columns */
  f->t[O].data = qkv.t.data;
  f->t[O].byte_offset = 0;
  expect_fail(f, "o inside the packed QKV buffer", FJ_INVALID_ARGUMENT, "o overlaps q", NULL);
  f->t[O].data = f->mem[O].t.data;
  host_tensor_free(&qkv);

  /* [b, h, s, d] memory viewed as [b, s, h, d]; o with padded rows; head_dim strided */
  fixture_free(f);
  fixture_init(f, DTYPE_F32, 1, 33, 17, 2, 2, 8);
  f->strides[Q][0] = 2 * 33 * 8;
  f->strides[Q][1] = 8;
  f->strides[Q][2] = 33 * 8;
  f->strides[Q][3] = 1;
  if (expect_ok(f, "q in [b,h,s,d] memory", &p) == FJ_OK)
    CHECK(p.q.stride[1] == 8 && p.q.stride[2] == 264 && p.key.d_contiguous == 1, "transposed q strides kept");
  f->strides[K][3] = 2;
  f->strides[K][2] = 1;
  f->strides[K][1] = 16; /* k in [b, s, d, h] memory: head_dim is not contiguous */
  f->strides[K][0] = 17 * 16;
  if (expect_ok(f, "k with head_dim stride 2", &p) == FJ_OK)
    CHECK(p.key.d_contiguous == 0 && p.k.stride[3] == 2, "d_contiguous=0 when a head_dim stride is not 1");

  /* broadcast q (stride 0 over the sequence) is fine: it is only read */
  fixture_free(f);
  fixture_init(f, DTYPE_F16, 1, 16, 16, 2, 2, 16);
  f->strides[Q][1] = 0;
  expect_ok(f, "q broadcast along the sequence (stride 0)", &p);
  f->strides[Q][1] = 32;
  /* a size-1 dimension's stride does not matter, even 0 in o */
  f->strides[O][0] = 0;
  expect_ok(f, "o with stride 0 on its size-1 batch", &p);
  f->strides[O][0] = 16 * 2 * 16;

  /* GQA 8/2 and MQA 8/1 */
  fixture_free(f);
  fixture_init(f, DTYPE_F16, 2, 40, 50, 8, 2, 64);
  if (expect_ok(f, "GQA heads 8 kv_heads 2", &p) == FJ_OK)
    CHECK(p.key.heads == 8 && p.key.kv_heads == 2, "GQA key h=8 hk=2");
  fixture_free(f);
  fixture_init(f, DTYPE_F16, 1, 40, 50, 8, 1, 64);
  if (expect_ok(f, "MQA heads 8 kv_heads 1", &p) == FJ_OK)
    CHECK(p.key.heads == 8 && p.key.kv_heads == 1, "MQA key h=8 hk=1");

  /* head dims at the edges */
  int64_t dims[] = {8, 256, 80, 96, 576};
  for (int i = 0; i < 5; i++) {
    fixture_free(f);
    fixture_init(f, DTYPE_BF16, 1, 3, 3, 1, 1, dims[i]);
    char what[32];
    snprintf(what, sizeof what, "head_dim %lld", (long long)dims[i]);
    if (expect_ok(f, what, &p) == FJ_OK)
      CHECK(p.key.head_dim_v == 0, "one head dim: key.head_dim_v 0 (%d)", p.key.head_dim_v);
  }

  /* v and o with a head dim of their own (shrunk from the fixture's, so the memory holds them): MLA's
   * prefill (192 and 128), v wider than q and k (8 and 256), v narrower (256 and 8); the default scale is
   * q's head dim's */
  int64_t qk_v[4][2] = {{192, 128}, {8, 256}, {256, 8}, {576, 512}};  /* the last MLA's absorbed decode */
  for (int i = 0; i < 4; i++) {
    fixture_free(f);
    fixture_init(f, DTYPE_BF16, 2, 5, 7, 4, 2, 576);
    f->shape[Q][3] = f->shape[K][3] = qk_v[i][0];
    f->shape[V][3] = f->shape[O][3] = qk_v[i][1];
    char what[48];
    snprintf(what, sizeof what, "head_dim %lld, v's %lld", (long long)qk_v[i][0], (long long)qk_v[i][1]);
    if (expect_ok(f, what, &p) == FJ_OK)
      CHECK(p.key.head_dim == qk_v[i][0] && p.key.head_dim_v == qk_v[i][1] && core_key_head_dim_v(&p.key) == qk_v[i][1] &&
                fabsf(p.softmax_scale - 1.0f / sqrtf((float)qk_v[i][0])) < 1e-7f,
            "%s: key d=%d dv=%d, scale %g", what, p.key.head_dim, p.key.head_dim_v, (double)p.softmax_scale);
  }
}

static void test_valid_empty(fixture *f) {
  attention_problem p;
  /* seqlen_q = 0: q, o and lse have no elements; their data may be NULL */
  fixture_free(f);
  fixture_init(f, DTYPE_F16, 2, 0, 10, 4, 4, 32);
  f->t[Q].data = NULL;
  f->t[O].data = NULL;
  f->t[L].data = NULL;
  if (expect_ok(f, "seqlen_q 0 with NULL q, o and lse data", &p) == FJ_OK)
    CHECK(p.seqlen_q == 0 && p.seqlen_kv == 10 && p.key.seqlen_bucket == 0 && p.o.data == NULL,
          "empty problem: sq=0, bucket 0, o.data NULL");
  /* seqlen_kv = 0: valid, o gets zeros later; k and v may be NULL */
  fixture_free(f);
  fixture_init(f, DTYPE_F32, 1, 5, 0, 2, 1, 16);
  f->t[K].data = NULL;
  f->t[V].data = NULL;
  if (expect_ok(f, "seqlen_kv 0 with NULL k and v", &p) == FJ_OK)
    CHECK(p.seqlen_kv == 0 && p.key.kv_heads == 1, "sq=5 skv=0 accepted");
  /* empty outputs may alias anything: nothing is written */
  f->t[K].data = f->mem[K].t.data;
  f->t[V].data = f->mem[V].t.data;
  fixture_free(f);
  fixture_init(f, DTYPE_F32, 1, 0, 4, 2, 2, 16);
  f->t[O].data = f->t[Q].data = f->t[K].data;
  expect_ok(f, "an empty o on top of k", &p);
}

/* ---- ragged queries (cu_seqlens_q) ---- */

/* One validation of a call of the topic's ("ragged", "sinks"): the status and, on failure, a message
 * holding `part`. */
static void args_expect(const char *topic, const fj_attention_args *args, const char *what, fj_status want,
                        const char *part, attention_problem *p) {
  core_error_clear();
  fj_status got = core_validate_attention(args, p);
  const char *message = fj_last_error();
  CHECK(got == want && (part == NULL || strstr(message, part) != NULL), "%s: %s -> %s: \"%s\"%s%s%s", topic, what,
        fj_status_string(got), message, part ? " (want \"" : "", part ? part : "", part ? "\")" : "");
}
#define ragged_expect(...) args_expect("ragged", __VA_ARGS__)
#define sinks_expect(...) args_expect("sinks", __VA_ARGS__)

#define RB 3    /* sequences */
#define RT 20   /* total_q: the rows of q and o */
#define RMAX 9  /* max_seqlen_q */

static void test_ragged(void) {
  dtype_id dt = DTYPE_BF16;
  host_tensor q, k, v, o, lse, cu, lens, q4;
  int64_t q_shape[3] = {RT, 4, 64}, kv_shape[4] = {RB, 50, 2, 64}, lse_shape[2] = {4, RT}, cu_shape[1] = {RB + 1};
  int64_t lens_shape[1] = {RB}, q4_shape[4] = {RB, RMAX, 4, 64};
  int ok = host_tensor_alloc(&q, dt, 3, q_shape, NULL) == 0 && host_tensor_alloc(&k, dt, 4, kv_shape, NULL) == 0 &&
           host_tensor_alloc(&v, dt, 4, kv_shape, NULL) == 0 && host_tensor_alloc(&o, dt, 3, q_shape, NULL) == 0 &&
           host_tensor_alloc(&lse, DTYPE_F32, 2, lse_shape, NULL) == 0 &&
           host_tensor_alloc_int32(&cu, 1, cu_shape) == 0 && host_tensor_alloc_int32(&lens, 1, lens_shape) == 0 &&
           host_tensor_alloc(&q4, dt, 4, q4_shape, NULL) == 0;
  CHECK(ok, "ragged: fixture allocation");
  if (!ok) return;
  int32_t *offsets = cu.t.data;
  const int32_t good[RB + 1] = {2, 11, 11, 19};  /* 9, 0 and 8 queries between spare rows */
  memcpy(offsets, good, sizeof good);
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.lse = &lse.t;
  args.causal = 1;
  args.cu_seqlens_q = &cu.t;
  args.max_seqlen_q = RMAX;
  attention_problem p;
  ragged_expect(&args, "3 sequences of 9, 0 and 8 queries in 20 rows", FJ_OK, NULL, &p);
  int64_t start[RB], count[RB];
  for (int b = 0; b < RB; b++) core_sequence_queries(&p, b, &start[b], &count[b]);
  CHECK(p.key.varlen_q == 1 && p.batch == RB && p.seqlen_q == RMAX && p.total_q == RT && p.key.seqlen_bucket == 4 &&
            p.cu_seqlens_q == offsets && p.cu_seqlens_q_stride == 1,
        "ragged problem: varlen_q=%d batch %lld seqlen_q %lld total_q %lld bucket %d", p.key.varlen_q,
        (long long)p.batch, (long long)p.seqlen_q, (long long)p.total_q, p.key.seqlen_bucket);
  CHECK(p.q.ndim == 4 && p.q.shape[0] == RB && p.q.shape[1] == RMAX && p.q.stride[0] == 0 && p.q.stride[1] == 4 * 64 &&
            p.q.stride[2] == 64 && p.q.stride[3] == 1 && p.o.stride[0] == 0 && p.lse.ndim == 3 &&
            p.lse.stride[0] == 0 && p.lse.stride[1] == RT && p.lse.stride[2] == 1 && p.lse.shape[2] == RMAX,
        "ragged views: q [b, max, h, d] strides (%lld, %lld, %lld, %lld), lse strides (%lld, %lld, %lld)",
        (long long)p.q.stride[0], (long long)p.q.stride[1], (long long)p.q.stride[2], (long long)p.q.stride[3],
        (long long)p.lse.stride[0], (long long)p.lse.stride[1], (long long)p.lse.stride[2]);
  CHECK(start[0] == 2 && count[0] == 9 && start[1] == 11 && count[1] == 0 && start[2] == 11 && count[2] == 8,
        "sequence queries (2, 9) (11, 0) (11, 8): got (%lld, %lld) (%lld, %lld) (%lld, %lld)", (long long)start[0],
        (long long)count[0], (long long)start[1], (long long)count[1], (long long)start[2], (long long)count[2]);
  /* FLOPs per sequence's own queries: causal 9 and 8 queries against 50 keys see every key they reach */
  double pairs = 0;
  for (int b = 0; b < RB; b++)
    for (int64_t i = 0; i < count[b]; i++) pairs += (double)(i + 50 - count[b] + 1);
  CHECK(core_attention_flops(&p) == 4.0 * 4 * 64 * pairs, "ragged FLOPs count each sequence's queries (%.0f, want %.0f)",
        core_attention_flops(&p), 4.0 * 4 * 64 * pairs);

  /* bad calls: each names the argument and the values */
  args.q = &q4.t;
  ragged_expect(&args, "4-d q", FJ_INVALID_ARGUMENT, "q.ndim=4, expected 3 ([total_q, heads, head_dim] with cu_seqlens_q)", &p);
  args.q = &q.t;
  cu.t.shape[0] = 1;
  ragged_expect(&args, "one offset", FJ_INVALID_ARGUMENT, "cu_seqlens_q.shape[0]=1: batch + 1 offsets", &p);
  cu.t.shape[0] = RB;
  ragged_expect(&args, "k's batch of 3 against 2 sequences", FJ_INVALID_ARGUMENT,
                "k.shape[0]=3 but cu_seqlens_q.shape[0] - 1=2", &p);
  cu.t.shape[0] = RB + 1;
  args.max_seqlen_q = RT + 1;
  ragged_expect(&args, "max_seqlen_q past total_q", FJ_INVALID_ARGUMENT, "max_seqlen_q=21: must be from 0 to total_q=20", &p);
  args.max_seqlen_q = -1;
  ragged_expect(&args, "max_seqlen_q -1", FJ_INVALID_ARGUMENT, "max_seqlen_q=-1", &p);
  args.max_seqlen_q = 8;
  ragged_expect(&args, "a sequence longer than max_seqlen_q", FJ_INVALID_ARGUMENT,
                "cu_seqlens_q[1] - cu_seqlens_q[0]=9 queries, more than max_seqlen_q=8", &p);
  args.max_seqlen_q = RMAX;
  offsets[2] = 10;
  ragged_expect(&args, "decreasing offsets", FJ_INVALID_ARGUMENT,
                "cu_seqlens_q[2]=10 after cu_seqlens_q[1]=11: offsets must not decrease", &p);
  offsets[2] = 11;
  offsets[3] = 21;
  ragged_expect(&args, "offsets past total_q", FJ_INVALID_ARGUMENT, "cu_seqlens_q[3]=21 after cu_seqlens_q[2]=11", &p);
  offsets[3] = 19;
  offsets[0] = -1;
  ragged_expect(&args, "a negative first offset", FJ_INVALID_ARGUMENT, "cu_seqlens_q[0]=-1: must be from 0 to total_q=20",
                &p);
  offsets[0] = 2;
  cu.t.dtype.bits = 64;
  ragged_expect(&args, "int64 offsets", FJ_INVALID_ARGUMENT, "cu_seqlens_q.dtype is int64", &p);
  cu.t.dtype.bits = 32;
  lse.t.shape[1] = RT - 1;
  ragged_expect(&args, "lse of 19 rows", FJ_INVALID_ARGUMENT, "lse.shape=[4,19], expected [4,20] ([heads, total_q]", &p);
  lse.t.shape[1] = RT;
  args.lse = &o.t;
  ragged_expect(&args, "3-d lse", FJ_INVALID_ARGUMENT, "lse.ndim=3, expected 2 ([heads, total_q] with cu_seqlens_q)", &p);
  args.lse = &lse.t;
  DLTensor inside_o = cu.t;
  inside_o.data = o.t.data;
  args.cu_seqlens_q = &inside_o;
  ragged_expect(&args, "offsets inside o", FJ_INVALID_ARGUMENT, "o overlaps cu_seqlens_q", &p);
  args.cu_seqlens_q = &cu.t;
  lens.t.shape[0] = RB + 1;
  args.seqlens_kv = &lens.t;
  ragged_expect(&args, "seqlens_kv of 4 for 3 sequences", FJ_INVALID_ARGUMENT,
                "seqlens_kv.shape[0]=4 but cu_seqlens_q.shape[0] - 1=3", &p);
  args.seqlens_kv = NULL;
  /* a caller built against the header before cu_seqlens_q: the field is not read */
  args.struct_size = (uint32_t)offsetof(fj_attention_args, cu_seqlens_q);
  ragged_expect(&args, "an older struct_size", FJ_INVALID_ARGUMENT, "q.ndim=3, expected 4", &p);
  args.struct_size = sizeof args;
  ragged_expect(&args, "the good call again", FJ_OK, NULL, &p);
  host_tensor *all[] = {&q, &k, &v, &o, &lse, &cu, &lens, &q4};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_tensor_free(all[i]);
}

/* ---- packed keys (cu_seqlens_k) ---- */
#define packed_expect(...) args_expect("packed", __VA_ARGS__)

#define PB 3    /* sequences */
#define PT 30   /* total_k: the rows of k and v */
#define PMAX 16 /* max_seqlen_k */

static void test_packed_keys(void) {
  dtype_id dt = DTYPE_F16;
  host_tensor q, k, v, o, cu, lens, table, k4;
  int64_t q_shape[4] = {PB, 5, 4, 64}, kv_shape[3] = {PT, 2, 64}, cu_shape[1] = {PB + 1}, lens_shape[1] = {PB};
  int64_t table_shape[2] = {PB, 2}, k4_shape[4] = {PB, PMAX, 2, 64};
  int ok = host_tensor_alloc(&q, dt, 4, q_shape, NULL) == 0 && host_tensor_alloc(&k, dt, 3, kv_shape, NULL) == 0 &&
           host_tensor_alloc(&v, dt, 3, kv_shape, NULL) == 0 && host_tensor_alloc(&o, dt, 4, q_shape, NULL) == 0 &&
           host_tensor_alloc_int32(&cu, 1, cu_shape) == 0 && host_tensor_alloc_int32(&lens, 1, lens_shape) == 0 &&
           host_tensor_alloc_int32(&table, 2, table_shape) == 0 && host_tensor_alloc(&k4, dt, 4, k4_shape, NULL) == 0;
  CHECK(ok, "packed: fixture allocation");
  if (!ok) return;
  int32_t *offsets = cu.t.data;
  const int32_t good[PB + 1] = {1, 17, 17, 29};  /* 16, 0 and 12 keys between spare rows */
  memcpy(offsets, good, sizeof good);
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.causal = 1;
  args.cu_seqlens_k = &cu.t;
  args.max_seqlen_k = PMAX;
  attention_problem p;
  packed_expect(&args, "3 sequences of 16, 0 and 12 keys in 30 rows", FJ_OK, NULL, &p);
  int64_t keys[PB], outer[PB], row[PB];
  for (int b = 0; b < PB; b++) {
    keys[b] = core_sequence_keys(&p, b);
    core_key_place(&p, b, 3, &outer[b], &row[b]);
  }
  char key_text[256];
  core_attention_key_string(&p.key, key_text, sizeof key_text);
  CHECK(p.key.varlen_k == 1 && p.key.varlen == 1 && p.key.kv_heads == 2 && p.seqlen_kv == PMAX && p.total_k == PT &&
            p.cu_seqlens_k == offsets && p.cu_seqlens_k_stride == 1 && strstr(key_text, " varlen=1 varlen_k=1") != NULL,
        "packed problem: varlen_k=%d kv_heads %d seqlen_kv %lld total_k %lld, key \"%s\"", p.key.varlen_k, p.key.kv_heads,
        (long long)p.seqlen_kv, (long long)p.total_k, key_text);
  CHECK(p.k.ndim == 4 && p.k.shape[0] == PB && p.k.shape[1] == PMAX && p.k.stride[0] == 0 && p.k.stride[1] == 2 * 64 &&
            p.v.stride[0] == 0 && p.v.stride[2] == 64,
        "packed views: k [b, max, hk, d] strides (%lld, %lld, %lld, %lld)", (long long)p.k.stride[0],
        (long long)p.k.stride[1], (long long)p.k.stride[2], (long long)p.k.stride[3]);
  CHECK(keys[0] == 16 && keys[1] == 0 && keys[2] == 12 && row[0] == 4 && row[2] == 20,
        "sequence keys 16, 0, 12 (got %lld, %lld, %lld); key 3 of sequences 0 and 2 at rows 4 and 20 (got %lld, %lld)",
        (long long)keys[0], (long long)keys[1], (long long)keys[2], (long long)row[0], (long long)row[2]);
  /* FLOPs count each sequence's own keys: causal, 5 queries aligned to each sequence's last key */
  double pairs = 0;
  for (int b = 0; b < PB; b++)
    for (int64_t i = 0; i < 5; i++) {
      int64_t seen = i + keys[b] - 5 + 1;
      pairs += (double)(seen < 0 ? 0 : seen);
    }
  CHECK(core_attention_flops(&p) == 4.0 * 4 * 64 * pairs, "packed FLOPs count each sequence's keys (%.0f, want %.0f)",
        core_attention_flops(&p), 4.0 * 4 * 64 * pairs);

  /* bad calls: each names the argument and the values */
  args.k = &k4.t;
  packed_expect(&args, "4-d k", FJ_INVALID_ARGUMENT, "k.ndim=4, expected 3 ([total_k, kv_heads, head_dim] with cu_seqlens_k)",
                &p);
  args.k = &k.t;
  v.t.shape[1] = 4;
  packed_expect(&args, "v of 4 heads", FJ_INVALID_ARGUMENT, "v.shape[1]=4", &p);
  v.t.shape[1] = 2;
  cu.t.shape[0] = PB;
  packed_expect(&args, "offsets for 2 sequences", FJ_INVALID_ARGUMENT, "cu_seqlens_k.shape[0]=3, expected q.shape[0] + 1 = 4", &p);
  cu.t.shape[0] = PB + 1;
  args.max_seqlen_k = PT + 1;
  packed_expect(&args, "max_seqlen_k past total_k", FJ_INVALID_ARGUMENT, "max_seqlen_k=31: must be from 0 to total_k=30",
                &p);
  args.max_seqlen_k = 15;
  packed_expect(&args, "a sequence longer than max_seqlen_k", FJ_INVALID_ARGUMENT,
                "cu_seqlens_k[1] - cu_seqlens_k[0]=16 keys, more than max_seqlen_k=15", &p);
  args.max_seqlen_k = PMAX;
  offsets[2] = 16;
  packed_expect(&args, "decreasing offsets", FJ_INVALID_ARGUMENT,
                "cu_seqlens_k[2]=16 after cu_seqlens_k[1]=17: offsets must not decrease", &p);
  offsets[2] = 17;
  offsets[3] = 31;
  packed_expect(&args, "offsets past total_k", FJ_INVALID_ARGUMENT,
                "cu_seqlens_k[3]=31 after cu_seqlens_k[2]=17: offsets must not decrease and must end by total_k=30", &p);
  offsets[3] = 29;
  offsets[0] = -2;
  packed_expect(&args, "a negative first offset", FJ_INVALID_ARGUMENT, "cu_seqlens_k[0]=-2: must be from 0 to total_k=30",
                &p);
  offsets[0] = 1;
  cu.t.dtype.code = kDLUInt;
  packed_expect(&args, "uint32 offsets", FJ_INVALID_ARGUMENT, "cu_seqlens_k.dtype is uint32", &p);
  cu.t.dtype.code = kDLInt;
  DLTensor inside_o = cu.t;
  inside_o.data = o.t.data;
  args.cu_seqlens_k = &inside_o;
  packed_expect(&args, "offsets inside o", FJ_INVALID_ARGUMENT, "o overlaps cu_seqlens_k", &p);
  args.cu_seqlens_k = &cu.t;
  args.seqlens_kv = &lens.t;
  packed_expect(&args, "with seqlens_kv", FJ_INVALID_ARGUMENT, "cu_seqlens_k with seqlens_kv", &p);
  args.seqlens_kv = NULL;
  args.block_table = &table.t;
  packed_expect(&args, "with a block table", FJ_INVALID_ARGUMENT, "cu_seqlens_k with block_table", &p);
  args.block_table = NULL;
  /* a caller built against the header before cu_seqlens_k: the field is not read */
  args.struct_size = (uint32_t)offsetof(fj_attention_args, cu_seqlens_k);
  packed_expect(&args, "an older struct_size", FJ_INVALID_ARGUMENT, "k.ndim=3, expected 4", &p);
  args.struct_size = sizeof args;
  packed_expect(&args, "the good call again", FJ_OK, NULL, &p);
  host_tensor *all[] = {&q, &k, &v, &o, &cu, &lens, &table, &k4};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_tensor_free(all[i]);
}

/* ---- fp8 KV caches (k and v float8, k_scale, v_scale) ---- */
#define fp8_expect(...) args_expect("fp8 cache", __VA_ARGS__)

static void test_fp8_cache(void) {
  host_tensor q, k, v, o, k5, kb, vb;
  int64_t q_shape[4] = {2, 5, 4, 64}, kv_shape[4] = {2, 9, 2, 64};
  int ok = host_tensor_alloc(&q, DTYPE_BF16, 4, q_shape, NULL) == 0 && host_tensor_alloc(&k, DTYPE_E4M3, 4, kv_shape, NULL) == 0 &&
           host_tensor_alloc(&v, DTYPE_E4M3, 4, kv_shape, NULL) == 0 && host_tensor_alloc(&o, DTYPE_BF16, 4, q_shape, NULL) == 0 &&
           host_tensor_alloc(&k5, DTYPE_E5M2, 4, kv_shape, NULL) == 0 &&
           host_tensor_alloc(&kb, DTYPE_BF16, 4, kv_shape, NULL) == 0 && host_tensor_alloc(&vb, DTYPE_BF16, 4, kv_shape, NULL) == 0;
  CHECK(ok, "fp8 cache: fixture allocation");
  if (!ok) return;
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  attention_problem p;
  char key_text[256];
  fp8_expect(&args, "E4M3 k and v beside bf16 q, scales 0 (1)", FJ_OK, NULL, &p);
  core_attention_key_string(&p.key, key_text, sizeof key_text);
  CHECK(p.key.kv_fp8 == DTYPE_E4M3 && p.k_scale == 1.0f && p.v_scale == 1.0f && strstr(key_text, " kv=fp8_e4m3") != NULL &&
            p.k.stride[1] == 2 * 64,
        "fp8 problem: kv_fp8=%d scales %g %g, key \"%s\", k's row stride %lld elements", p.key.kv_fp8, (double)p.k_scale,
        (double)p.v_scale, key_text, (long long)p.k.stride[1]);
  args.k_scale = 0.5f;
  args.v_scale = 3.0f;
  fp8_expect(&args, "scales 0.5 and 3", FJ_OK, NULL, &p);
  CHECK(p.k_scale == 0.5f && p.v_scale == 3.0f, "scales kept: %g %g", (double)p.k_scale, (double)p.v_scale);
  args.k_scale = -1.0f;
  fp8_expect(&args, "a negative k_scale", FJ_INVALID_ARGUMENT, "k_scale=-1: must be finite and not negative", &p);
  args.k_scale = INFINITY;
  fp8_expect(&args, "an infinite k_scale", FJ_INVALID_ARGUMENT, "k_scale=inf", &p);
  args.k_scale = 1e38f;
  args.softmax_scale = 100.0f;
  fp8_expect(&args, "k_scale x softmax_scale past a float", FJ_INVALID_ARGUMENT,
             "k_scale=1e+38 with softmax_scale=100: their product must be a finite float", &p);
  args.softmax_scale = 0.0f;
  args.k_scale = 1.0f;
  args.v_scale = NAN;
  fp8_expect(&args, "a NaN v_scale", FJ_INVALID_ARGUMENT, "v_scale=nan", &p);
  args.v_scale = 1.0f;
  args.v = &k5.t;
  fp8_expect(&args, "k E4M3, v E5M2", FJ_INVALID_ARGUMENT, "v.dtype=fp8_e5m2 but k.dtype=fp8_e4m3", &p);
  args.v = &o.t;
  fp8_expect(&args, "k E4M3, v bf16", FJ_INVALID_ARGUMENT, "v.dtype=bf16 but k.dtype=fp8_e4m3", &p);
  args.v = &v.t;
  args.q = &k.t;
  fp8_expect(&args, "q E4M3", FJ_INVALID_ARGUMENT, "q.dtype is fp8_e4m3; expected fp32, fp16 or bf16", &p);
  args.q = &q.t;
  args.o = &v.t;
  fp8_expect(&args, "o E4M3", FJ_INVALID_ARGUMENT, "o.dtype is fp8_e4m3; expected fp32, fp16 or bf16", &p);
  args.o = &o.t;
  DLTensor pairs = k.t;
  pairs.dtype.lanes = 2;
  args.k = &pairs;
  fp8_expect(&args, "k of fp8 pairs", FJ_INVALID_ARGUMENT, "k.dtype is code10:8x2", &p);
  args.k = &k.t;
  /* o inside the cache: the extents count one byte an element */
  DLTensor inside = o.t;
  inside.data = (char *)k.t.data + 2 * 9 * 2 * 64 - 64;
  args.o = &inside;
  fp8_expect(&args, "o over the cache's last row", FJ_INVALID_ARGUMENT, "o overlaps k", &p);
  inside.data = (char *)k.t.data + 2 * 9 * 2 * 64;
  args.v = &k.t;  /* keep v away from o for this one */
  fp8_expect(&args, "o just past k", FJ_OK, NULL, &p);
  args.v = &v.t;
  args.o = &o.t;
  /* not fp8: the scales are not read */
  args.k = &kb.t;
  args.v = &vb.t;
  args.k_scale = -1.0f;
  fp8_expect(&args, "bf16 k and v with k_scale=-1 (not read)", FJ_OK, NULL, &p);
  CHECK(p.key.kv_fp8 == 0 && p.k_scale == 1.0f, "bf16 k and v: no fp8 cache, scale 1 (kv_fp8=%d, %g)", p.key.kv_fp8,
        (double)p.k_scale);
  args.k = &k.t;
  args.v = &v.t;
  /* a caller built against the header before k_scale: 1 and 1 */
  args.struct_size = (uint32_t)offsetof(fj_attention_args, k_scale);
  fp8_expect(&args, "an older struct_size", FJ_OK, NULL, &p);
  CHECK(p.key.kv_fp8 == DTYPE_E4M3 && p.k_scale == 1.0f && p.v_scale == 1.0f,
        "an older caller's fp8 cache has scales 1 (%g, %g)", (double)p.k_scale, (double)p.v_scale);
  host_tensor_free(&q);
  host_tensor_free(&k);
  host_tensor_free(&v);
  host_tensor_free(&o);
  host_tensor_free(&k5);
  host_tensor_free(&kb);
  host_tensor_free(&vb);
}

/* ---- ALiBi (alibi_slopes) ---- */
#define alibi_expect(...) args_expect("alibi", __VA_ARGS__)

static void test_alibi(void) {
  dtype_id dt = DTYPE_BF16;
  host_tensor q, k, v, o, lse, slopes, per_sequence, slopes_f16, slopes_3d;
  int64_t q_shape[4] = {2, 5, 4, 64}, kv_shape[4] = {2, 9, 2, 64}, lse_shape[3] = {2, 4, 5}, slopes_shape[1] = {4};
  int64_t per_sequence_shape[2] = {2, 4}, three_d[3] = {1, 2, 4};
  int ok = host_tensor_alloc(&q, dt, 4, q_shape, NULL) == 0 && host_tensor_alloc(&k, dt, 4, kv_shape, NULL) == 0 &&
           host_tensor_alloc(&v, dt, 4, kv_shape, NULL) == 0 && host_tensor_alloc(&o, dt, 4, q_shape, NULL) == 0 &&
           host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL) == 0 &&
           host_tensor_alloc(&slopes, DTYPE_F32, 1, slopes_shape, NULL) == 0 &&
           host_tensor_alloc(&per_sequence, DTYPE_F32, 2, per_sequence_shape, NULL) == 0 &&
           host_tensor_alloc(&slopes_f16, DTYPE_F16, 1, slopes_shape, NULL) == 0 &&
           host_tensor_alloc(&slopes_3d, DTYPE_F32, 3, three_d, NULL) == 0;
  CHECK(ok, "alibi: fixture allocation");
  if (!ok) return;
  float *values = slopes.t.data, *rows = per_sequence.t.data;
  for (int h = 0; h < 4; h++) values[h] = 0.5f / (float)(h + 1);
  for (int i = 0; i < 8; i++) rows[i] = 0.25f * (float)(i + 1);
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.lse = &lse.t;
  args.causal = 1;
  args.alibi_slopes = &slopes.t;
  attention_problem p;
  alibi_expect(&args, "4 heads' slopes", FJ_OK, NULL, &p);
  char key_text[256];
  core_attention_key_string(&p.key, key_text, sizeof key_text);
  CHECK(p.key.alibi == 1 && p.alibi == values && p.alibi_stride[0] == 0 && p.alibi_stride[1] == 1 &&
            strstr(key_text, " alibi=1") != NULL,
        "alibi problem: key.alibi=%d strides (%lld, %lld), key \"%s\"", p.key.alibi, (long long)p.alibi_stride[0],
        (long long)p.alibi_stride[1], key_text);
  args.alibi_slopes = &per_sequence.t;
  alibi_expect(&args, "[batch, heads] slopes", FJ_OK, NULL, &p);
  CHECK(p.alibi == rows && p.alibi_stride[0] == 4 && p.alibi_stride[1] == 1,
        "per-sequence slopes: strides (%lld, %lld)", (long long)p.alibi_stride[0], (long long)p.alibi_stride[1]);

  /* bad calls: each names the argument and the values */
  per_sequence.t.shape[0] = 3;
  alibi_expect(&args, "slopes of 3 sequences", FJ_INVALID_ARGUMENT,
               "alibi_slopes.shape=[3, 4], expected [4] or [2, 4] (heads; q.shape[0], heads)", &p);
  per_sequence.t.shape[0] = 2;
  args.alibi_slopes = &slopes.t;
  slopes.t.shape[0] = 3;
  alibi_expect(&args, "3 slopes for 4 heads", FJ_INVALID_ARGUMENT, "alibi_slopes.shape=[3], expected [4] or [2, 4]", &p);
  slopes.t.shape[0] = 4;
  args.alibi_slopes = &slopes_3d.t;
  alibi_expect(&args, "a 3-d tensor", FJ_INVALID_ARGUMENT, "alibi_slopes.ndim=3, expected 1 ([heads]) or 2", &p);
  args.alibi_slopes = &slopes_f16.t;
  alibi_expect(&args, "fp16 slopes", FJ_INVALID_ARGUMENT, "alibi_slopes.dtype is fp16; expected fp32", &p);
  args.alibi_slopes = &slopes.t;
  values[2] = INFINITY;
  alibi_expect(&args, "an infinite slope", FJ_INVALID_ARGUMENT, "alibi_slopes[2]=inf: each must be finite", &p);
  values[2] = 0.25f;
  args.alibi_slopes = &per_sequence.t;
  rows[5] = NAN;
  alibi_expect(&args, "a NaN slope", FJ_INVALID_ARGUMENT, "alibi_slopes[1][1]=nan: each must be finite", &p);
  rows[5] = 1.0f;
  args.alibi_slopes = &slopes.t;
  slopes.t.device = (DLDevice){kDLCUDA, 0};
  alibi_expect(&args, "on another device", FJ_INVALID_ARGUMENT, "q.device=(cpu,0) but alibi_slopes.device=(cuda,0)", &p);
  slopes.t.device = (DLDevice){kDLCPU, 0};
  DLTensor inside_o = slopes.t;
  inside_o.data = o.t.data;
  args.alibi_slopes = &inside_o;
  alibi_expect(&args, "inside o", FJ_INVALID_ARGUMENT, "o overlaps alibi_slopes", &p);
  args.alibi_slopes = &slopes.t;
  /* a caller built against the header before alibi_slopes: the field is not read */
  args.struct_size = (uint32_t)offsetof(fj_attention_args, alibi_slopes);
  args.alibi_slopes = &slopes_3d.t;
  alibi_expect(&args, "an older struct_size", FJ_OK, NULL, &p);
  CHECK(p.key.alibi == 0 && p.alibi == NULL, "an older caller's call has no ALiBi (key.alibi=%d)", p.key.alibi);
  args.struct_size = sizeof args;
  args.alibi_slopes = &slopes.t;
  alibi_expect(&args, "the good call again", FJ_OK, NULL, &p);
  host_tensor *all[] = {&q, &k, &v, &o, &lse, &slopes, &per_sequence, &slopes_f16, &slopes_3d};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_tensor_free(all[i]);
}

/* ---- an additive bias (attn_bias) ---- */
#define bias_expect(...) args_expect("attn_bias", __VA_ARGS__)

static void test_attn_bias(void) {
  dtype_id dt = DTYPE_BF16;
  host_tensor q, k, v, o, lse, bias, bias_bf16, bias_f16, bias_3d, padding;
  int64_t q_shape[4] = {2, 5, 4, 64}, kv_shape[4] = {2, 9, 2, 64}, lse_shape[3] = {2, 4, 5};
  int64_t bias_shape[4] = {2, 4, 5, 9}, three_d[3] = {4, 5, 9}, padding_shape[4] = {2, 1, 1, 9};
  int ok = host_tensor_alloc(&q, dt, 4, q_shape, NULL) == 0 && host_tensor_alloc(&k, dt, 4, kv_shape, NULL) == 0 &&
           host_tensor_alloc(&v, dt, 4, kv_shape, NULL) == 0 && host_tensor_alloc(&o, dt, 4, q_shape, NULL) == 0 &&
           host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL) == 0 &&
           host_tensor_alloc(&bias, DTYPE_F32, 4, bias_shape, NULL) == 0 &&
           host_tensor_alloc(&bias_bf16, DTYPE_BF16, 4, bias_shape, NULL) == 0 &&
           host_tensor_alloc(&bias_f16, DTYPE_F16, 4, bias_shape, NULL) == 0 &&
           host_tensor_alloc(&bias_3d, DTYPE_F32, 3, three_d, NULL) == 0 &&
           host_tensor_alloc(&padding, DTYPE_F32, 4, padding_shape, NULL) == 0;
  CHECK(ok, "attn_bias: fixture allocation");
  if (!ok) return;
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.lse = &lse.t;
  args.causal = 1;
  args.attn_bias = &bias.t;
  attention_problem p;
  bias_expect(&args, "a full fp32 bias", FJ_OK, NULL, &p);
  char key_text[256];
  core_attention_key_string(&p.key, key_text, sizeof key_text);
  CHECK(p.key.bias == KEY_BIAS_F32 && p.attn_bias == bias.t.data && p.attn_bias_stride[0] == 180 &&
            p.attn_bias_stride[1] == 45 && p.attn_bias_stride[2] == 9 && p.attn_bias_stride[3] == 1 &&
            strstr(key_text, " bias=fp32") != NULL,
        "bias problem: key.bias=%d strides (%lld, %lld, %lld, %lld), key \"%s\"", p.key.bias,
        (long long)p.attn_bias_stride[0], (long long)p.attn_bias_stride[1], (long long)p.attn_bias_stride[2],
        (long long)p.attn_bias_stride[3], key_text);
  args.attn_bias = &bias_bf16.t;
  bias_expect(&args, "a bias of q's dtype", FJ_OK, NULL, &p);
  core_attention_key_string(&p.key, key_text, sizeof key_text);
  CHECK(p.key.bias == KEY_BIAS_DTYPE && strstr(key_text, " bias=bf16") != NULL, "bf16 bias: key \"%s\"", key_text);
  /* broadcast: a padding mask [batch, 1, 1, keys] whose size-1 dimensions' strides are anything */
  padding.t.strides[1] = 77;
  padding.t.strides[2] = 3;
  args.attn_bias = &padding.t;
  bias_expect(&args, "a padding mask [2, 1, 1, 9]", FJ_OK, NULL, &p);
  CHECK(p.attn_bias_stride[0] == 9 && p.attn_bias_stride[1] == 0 && p.attn_bias_stride[2] == 0 &&
            p.attn_bias_stride[3] == 1,
        "padding mask strides (%lld, %lld, %lld, %lld): 0 where broadcast", (long long)p.attn_bias_stride[0],
        (long long)p.attn_bias_stride[1], (long long)p.attn_bias_stride[2], (long long)p.attn_bias_stride[3]);
  /* and a stride of 0 over a full dimension (torch's expand) */
  int64_t expanded[4] = {0, 45, 9, 1};
  DLTensor over_batch = bias.t;
  over_batch.strides = expanded;
  args.attn_bias = &over_batch;
  bias_expect(&args, "one sequence's bias expanded over the batch", FJ_OK, NULL, &p);
  CHECK(p.attn_bias_stride[0] == 0 && p.attn_bias_stride[1] == 45, "expanded bias strides (%lld, %lld)",
        (long long)p.attn_bias_stride[0], (long long)p.attn_bias_stride[1]);
  /* keys that are not consecutive elements (a [.., keys, queries] buffer seen transposed): a kernel of their own */
  int64_t transposed[4] = {180, 45, 1, 5};
  DLTensor keys_strided = bias.t;
  keys_strided.strides = transposed;
  args.attn_bias = &keys_strided;
  bias_expect(&args, "a bias transposed in its last two dimensions", FJ_OK, NULL, &p);
  core_attention_key_string(&p.key, key_text, sizeof key_text);
  CHECK(p.key.bias == (KEY_BIAS_F32 | KEY_BIAS_STRIDED_KEYS) && p.attn_bias_stride[3] == 5 &&
            strstr(key_text, " bias=fp32/strided") != NULL,
        "strided keys: key.bias=%d, key \"%s\"", p.key.bias, key_text);
  CHECK(core_key_bias_dtype(&p.key) == DTYPE_F32, "strided keys: the bias's dtype is still fp32");

  /* bad calls: each names the argument and the values */
  args.attn_bias = &bias.t;
  bias.t.shape[3] = 8;
  bias_expect(&args, "8 keys of 9", FJ_INVALID_ARGUMENT,
              "attn_bias.shape[3]=8 but seqlen_kv (k.shape[1])=9 (each dimension of [batch, heads, seqlen_q, seqlen_kv] "
              "must be its size or 1)", &p);
  bias.t.shape[3] = 9;
  bias.t.shape[1] = 2;
  bias_expect(&args, "2 heads of 4", FJ_INVALID_ARGUMENT, "attn_bias.shape[1]=2 but heads (q.shape[2])=4", &p);
  bias.t.shape[1] = 4;
  bias.t.shape[2] = 6;
  bias_expect(&args, "6 queries of 5", FJ_INVALID_ARGUMENT, "attn_bias.shape[2]=6 but seqlen_q (q.shape[1])=5", &p);
  bias.t.shape[2] = 5;
  bias.t.shape[0] = 3;
  bias_expect(&args, "3 sequences of 2", FJ_INVALID_ARGUMENT, "attn_bias.shape[0]=3 but q.shape[0]=2", &p);
  bias.t.shape[0] = 2;
  args.attn_bias = &bias_3d.t;
  bias_expect(&args, "a 3-d bias", FJ_INVALID_ARGUMENT, "attn_bias.ndim=3, expected 4", &p);
  args.attn_bias = &bias_f16.t;
  bias_expect(&args, "an fp16 bias beside bf16 q", FJ_INVALID_ARGUMENT,
              "attn_bias.dtype is fp16; expected fp32 or q's dtype (bf16)", &p);
  args.attn_bias = &bias.t;
  bias.t.device = (DLDevice){kDLCUDA, 0};
  bias_expect(&args, "on another device", FJ_INVALID_ARGUMENT, "q.device=(cpu,0) but attn_bias.device=(cuda,0)", &p);
  bias.t.device = (DLDevice){kDLCPU, 0};
  DLTensor inside_o = padding.t;
  inside_o.data = o.t.data;
  args.attn_bias = &inside_o;
  bias_expect(&args, "inside o", FJ_INVALID_ARGUMENT, "o overlaps attn_bias", &p);
  DLTensor inside_lse = padding.t;
  inside_lse.data = lse.t.data;
  args.attn_bias = &inside_lse;
  bias_expect(&args, "inside lse", FJ_INVALID_ARGUMENT, "lse overlaps attn_bias", &p);
  DLTensor no_data = bias.t;
  no_data.data = NULL;
  args.attn_bias = &no_data;
  bias_expect(&args, "no data", FJ_INVALID_ARGUMENT, "attn_bias.data is NULL", &p);
  int64_t negative[4] = {180, -45, 9, 1};
  DLTensor backwards = bias.t;
  backwards.strides = negative;
  args.attn_bias = &backwards;
  bias_expect(&args, "a negative stride", FJ_INVALID_ARGUMENT, "attn_bias.strides[1]=-45 is negative", &p);
  /* a caller built against the header before attn_bias: the field is not read */
  args.struct_size = (uint32_t)offsetof(fj_attention_args, attn_bias);
  args.attn_bias = &bias_3d.t;
  bias_expect(&args, "an older struct_size", FJ_OK, NULL, &p);
  CHECK(p.key.bias == 0 && p.attn_bias == NULL, "an older caller's call has no bias (key.bias=%d)", p.key.bias);
  args.struct_size = sizeof args;
  args.attn_bias = &bias.t;
  bias_expect(&args, "the good call again", FJ_OK, NULL, &p);
  host_tensor *all[] = {&q, &k, &v, &o, &lse, &bias, &bias_bf16, &bias_f16, &bias_3d, &padding};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_tensor_free(all[i]);
}

/* ---- attention sinks ---- */

static void test_sinks(void) {
  dtype_id dt = DTYPE_F16;
  host_tensor q, k, v, o, lse, sinks, sinks2d, sinks_f16;
  int64_t q_shape[4] = {2, 5, 6, 64}, kv_shape[4] = {2, 9, 2, 64}, lse_shape[3] = {2, 6, 5}, sinks_shape[1] = {6};
  int64_t sinks2d_shape[2] = {1, 6};
  int ok = host_tensor_alloc(&q, dt, 4, q_shape, NULL) == 0 && host_tensor_alloc(&k, dt, 4, kv_shape, NULL) == 0 &&
           host_tensor_alloc(&v, dt, 4, kv_shape, NULL) == 0 && host_tensor_alloc(&o, dt, 4, q_shape, NULL) == 0 &&
           host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL) == 0 &&
           host_tensor_alloc(&sinks, DTYPE_F32, 1, sinks_shape, NULL) == 0 &&
           host_tensor_alloc(&sinks2d, DTYPE_F32, 2, sinks2d_shape, NULL) == 0 &&
           host_tensor_alloc(&sinks_f16, DTYPE_F16, 1, sinks_shape, NULL) == 0;
  CHECK(ok, "sinks: fixture allocation");
  if (!ok) return;
  float *values = sinks.t.data;
  for (int h = 0; h < 6; h++) values[h] = 0.25f * (float)h - 1.0f;
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.lse = &lse.t;
  args.sinks = &sinks.t;
  attention_problem p;
  sinks_expect(&args, "6 heads' logits", FJ_OK, NULL, &p);
  char key[256];
  core_attention_key_string(&p.key, key, sizeof key);
  CHECK(p.key.sinks == 1 && p.sinks == values && p.sinks_stride == 1 && strstr(key, " sinks=1 ") != NULL,
        "sinks problem: key.sinks=%d, stride %lld, key \"%s\"", p.key.sinks, (long long)p.sinks_stride, key);
  /* every other element of a longer array: the stride is kept */
  int64_t every_other[1] = {2};
  int64_t three[1] = {3};
  sinks.t.strides = every_other;
  sinks.t.shape = three;
  q.t.shape[2] = o.t.shape[2] = lse.t.shape[1] = 3;
  k.t.shape[2] = v.t.shape[2] = 1;
  sinks_expect(&args, "3 heads' logits, stride 2", FJ_OK, NULL, &p);
  CHECK(p.sinks_stride == 2, "sinks stride 2 kept (%lld)", (long long)p.sinks_stride);
  sinks.t.strides = NULL;
  sinks.t.shape = sinks_shape;
  q.t.shape[2] = o.t.shape[2] = lse.t.shape[1] = 6;
  k.t.shape[2] = v.t.shape[2] = 2;

  /* bad calls: each names the argument and the values */
  sinks_shape[0] = 5;
  sinks_expect(&args, "5 logits for 6 heads", FJ_INVALID_ARGUMENT, "sinks.shape[0]=5 but heads=6 (one logit per query head)",
               &p);
  sinks_shape[0] = 6;
  args.sinks = &sinks2d.t;
  sinks_expect(&args, "a 2-d tensor", FJ_INVALID_ARGUMENT, "sinks.ndim=2, expected 1 ([heads])", &p);
  args.sinks = &sinks_f16.t;
  sinks_expect(&args, "fp16 logits", FJ_INVALID_ARGUMENT, "sinks.dtype is fp16; expected fp32", &p);
  args.sinks = &sinks.t;
  values[4] = NAN;
  sinks_expect(&args, "a NaN", FJ_INVALID_ARGUMENT, "sinks[4]=nan: each must be finite", &p);
  values[4] = -INFINITY;
  sinks_expect(&args, "-inf", FJ_INVALID_ARGUMENT, "sinks[4]=-inf: each must be finite", &p);
  values[4] = 0.0f;
  sinks.t.device = (DLDevice){kDLCUDA, 0};
  sinks_expect(&args, "on another device", FJ_INVALID_ARGUMENT, "q.device=(cpu,0) but sinks.device=(cuda,0)", &p);
  sinks.t.device = (DLDevice){kDLCPU, 0};
  DLTensor inside_lse = sinks.t;
  inside_lse.data = lse.t.data;
  args.sinks = &inside_lse;
  sinks_expect(&args, "inside lse", FJ_INVALID_ARGUMENT, "lse overlaps sinks", &p);
  inside_lse.data = NULL;
  sinks_expect(&args, "no data", FJ_INVALID_ARGUMENT, "sinks.data is NULL", &p);
  args.sinks = &sinks.t;
  /* a caller built against the header before sinks: the field is not read */
  args.struct_size = (uint32_t)offsetof(fj_attention_args, sinks);
  args.sinks = &sinks2d.t;
  sinks_expect(&args, "an older struct_size", FJ_OK, NULL, &p);
  CHECK(p.key.sinks == 0 && p.sinks == NULL, "an older caller's call has no sinks (key.sinks=%d)", p.key.sinks);
  args.struct_size = sizeof args;
  args.sinks = &sinks.t;
  sinks_expect(&args, "the good call again", FJ_OK, NULL, &p);

  /* soft-capping: a value, a flag of the key */
  args.softcap = 50.0f;
  sinks_expect(&args, "softcap 50", FJ_OK, NULL, &p);
  core_attention_key_string(&p.key, key, sizeof key);
  CHECK(p.key.softcap == 1 && p.softcap == 50.0f && strstr(key, " sinks=1 softcap=1 ") != NULL,
        "softcap problem: key.softcap=%d, softcap %g, key \"%s\"", p.key.softcap, (double)p.softcap, key);
  args.softcap = -0.5f;
  sinks_expect(&args, "softcap -0.5", FJ_INVALID_ARGUMENT, "softcap=-0.5: must be finite and not negative", &p);
  args.softcap = INFINITY;
  sinks_expect(&args, "softcap inf", FJ_INVALID_ARGUMENT, "softcap=inf: must be finite", &p);
  args.softcap = 1e31f;
  sinks_expect(&args, "softcap 1e31", FJ_INVALID_ARGUMENT, "softcap=1e+31 with softmax_scale=0.125", &p);
  args.softmax_scale = 1e-20f;
  args.softcap = 1e20f;
  sinks_expect(&args, "softcap 1e20 over a scale of 1e-20", FJ_INVALID_ARGUMENT,
               "softcap and softcap / softmax_scale must each be from 1e-30 to 1e30", &p);
  args.softmax_scale = 0.0f;
  args.softcap = -1.0f;
  args.struct_size = (uint32_t)offsetof(fj_attention_args, softcap);
  sinks_expect(&args, "an older struct_size (softcap not read)", FJ_OK, NULL, &p);
  CHECK(p.key.softcap == 0 && p.softcap == 0.0f, "an older caller's call has no softcap (key.softcap=%d)", p.key.softcap);
  args.struct_size = sizeof args;
  args.softcap = 0.0f;
  sinks_expect(&args, "softcap 0 (none)", FJ_OK, NULL, &p);
  CHECK(p.key.softcap == 0, "softcap 0: key.softcap=%d", p.key.softcap);
  host_tensor *all[] = {&q, &k, &v, &o, &lse, &sinks, &sinks2d, &sinks_f16};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_tensor_free(all[i]);
}

int main(void) {
  fixture f;
  memset(&f, 0, sizeof f);
  test_pointers_and_struct(&f);
  test_ndim(&f);
  test_dtypes(&f);
  test_shapes(&f);
  test_devices(&f);
  test_memory(&f);
  test_valid_basic(&f);
  test_valid_layouts(&f);
  test_valid_empty(&f);
  test_ragged();
  test_packed_keys();
  test_alibi();
  test_attn_bias();
  test_fp8_cache();
  test_sinks();
  fixture_free(&f);
  return check_summary();
}
