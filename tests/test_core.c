/* test_core.c: the core helpers everything else leans on: status strings from the X-macro list, the
 * thread-local last error, fp16/bf16 conversions (exhaustive where the space allows), the FNV-1a hash
 * that cache keys store on disk, problem keys, buckets and FLOP counts, logging, host tensors. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "flashjit.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/host_tensor.h"
#include "core/log.h"
#include "core/problem.h"
#include "core/threadpool.h"
#include "check.h"

static float bits_f32(uint32_t x) {
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

static uint32_t f32_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return x;
}

/* ---- status, version, errors ---- */

static void test_status(void) {
#define EXPECT_STATUS_(name, value, text)                                                         \
  CHECK(strcmp(fj_status_string(FJ_##name), text) == 0 && (int)FJ_##name == value,               \
        "fj_status_string(FJ_%s=%d) is \"%s\"", #name, value, fj_status_string(FJ_##name));
  FJ_STATUS_MAP(EXPECT_STATUS_)
#undef EXPECT_STATUS_
  CHECK(strcmp(fj_status_string((fj_status)99), "unknown status") == 0, "status 99 is \"%s\"",
        fj_status_string((fj_status)99));
  CHECK(strcmp(fj_status_string((fj_status)-1), "unknown status") == 0, "status -1 is \"%s\"",
        fj_status_string((fj_status)-1));
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", FJ_VERSION_MAJOR, FJ_VERSION_MINOR, FJ_VERSION_PATCH);
  CHECK(strcmp(fj_version_string(), expected) == 0, "fj_version_string()=\"%s\" matches the header's %s",
        fj_version_string(), expected);
}

typedef struct thread_result {
  char initial[64];
  char own[64];
} thread_result;

static void *error_thread(void *raw) {
  thread_result *r = raw;
  snprintf(r->initial, sizeof r->initial, "%s", fj_last_error());
  core_error(FJ_IO, "thread message %d", 7);
  snprintf(r->own, sizeof r->own, "%s", fj_last_error());
  return NULL;
}

static void test_errors(void) {
  core_error_clear();
  CHECK(strcmp(fj_last_error(), "") == 0, "cleared message is \"\"");
  fj_status s = core_error(FJ_INVALID_ARGUMENT, "k.shape[3]=%d but q.shape[3]=%d", 96, 128);
  CHECK(s == FJ_INVALID_ARGUMENT, "core_error returns its status");
  CHECK(strcmp(fj_last_error(), "k.shape[3]=96 but q.shape[3]=128") == 0, "message recorded: \"%s\"",
        fj_last_error());
  pthread_t thread;
  thread_result r;
  memset(&r, 0, sizeof r);
  pthread_create(&thread, NULL, error_thread, &r);
  pthread_join(thread, NULL);
  CHECK(strcmp(r.initial, "") == 0, "a new thread starts with \"\" (got \"%s\")", r.initial);
  CHECK(strcmp(r.own, "thread message 7") == 0, "the thread sees its own message (\"%s\")", r.own);
  CHECK(strcmp(fj_last_error(), "k.shape[3]=96 but q.shape[3]=128") == 0,
        "the main thread's message is untouched by the other thread (\"%s\")", fj_last_error());
  core_error_prefix("compiling %s: ", "attention_fwd_cpu");
  CHECK(strcmp(fj_last_error(), "compiling attention_fwd_cpu: k.shape[3]=96 but q.shape[3]=128") == 0,
        "prefix prepends: \"%s\"", fj_last_error());
  core_error(FJ_DRIVER, "wrapped: %s", fj_last_error());
  CHECK(strcmp(fj_last_error(), "wrapped: compiling attention_fwd_cpu: k.shape[3]=96 but q.shape[3]=128") == 0,
        "the message may be an argument of the next one: \"%s\"", fj_last_error());
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  core_error(FJ_IO, "%s", big);
  CHECK(strlen(fj_last_error()) == 1023, "a long message is cut to 1023 chars (got %zu)",
        strlen(fj_last_error()));
  core_error_prefix("prefix: ");
  CHECK(strlen(fj_last_error()) == 1023 && strncmp(fj_last_error(), "prefix: xxx", 11) == 0,
        "prefixing a full message keeps the prefix and 1023 chars");
  core_error_clear();
  CHECK(fj_last_error()[0] == '\0', "clear empties it again");
}

/* ---- dtypes ---- */

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

/* An independent decoding of fp16 bits by the formula, to check core_f16_to_f32. */
static double f16_formula(uint16_t h) {
  int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
  return sign ? -v : v;
}

static void test_f16(void) {
  int roundtrip_bad = 0, decode_bad = 0, nan_bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = core_f16_to_f32((uint16_t)h);
    uint16_t back = core_f32_to_f16(f);
    if (f16_is_nan((uint16_t)h)) {
      if (!isnan(f) || !f16_is_nan(back) || (back & 0x8000) != (h & 0x8000)) nan_bad++;
      continue;
    }
    if (back != h) roundtrip_bad++;
    if ((h & 0x7c00) != 0x7c00 && (double)f != f16_formula((uint16_t)h)) decode_bad++;
  }
  CHECK(roundtrip_bad == 0, "fp16 -> fp32 -> fp16 is the identity on all 63488 non-NaN patterns (%d bad)",
        roundtrip_bad);
  CHECK(decode_bad == 0, "fp16 -> fp32 matches the formula on every finite pattern (%d bad)", decode_bad);
  CHECK(nan_bad == 0, "every fp16 NaN stays a NaN with its sign (%d bad)", nan_bad);

  /* Every midpoint between neighbours rounds to the even one; a hair either side goes to the
   * nearer one. The midpoints are exact in fp32. */
  int tie_bad = 0, near_bad = 0;
  for (uint32_t h = 0; h < 0x7bff; h++) {
    for (int sign = 0; sign < 2; sign++) {
      uint16_t lo = (uint16_t)(h | (sign << 15)), hi = (uint16_t)((h + 1) | (sign << 15));
      float mid = (core_f16_to_f32(lo) + core_f16_to_f32(hi)) / 2;
      uint16_t even = (lo & 1) ? hi : lo;
      if (core_f32_to_f16(mid) != even) tie_bad++;
      float toward_lo = nextafterf(mid, core_f16_to_f32(lo));
      float toward_hi = nextafterf(mid, core_f16_to_f32(hi));
      if (core_f32_to_f16(toward_lo) != lo || core_f32_to_f16(toward_hi) != hi) near_bad++;
    }
  }
  CHECK(tie_bad == 0, "fp32 -> fp16: all 2x31743 midpoints round to even (%d bad)", tie_bad);
  CHECK(near_bad == 0, "fp32 -> fp16: values just off a midpoint round to the nearer (%d bad)", near_bad);

  /* Random fp32 values within fp16's range: the result is never farther than a neighbour. */
  uint64_t state = 12345;
  int nearest_bad = 0;
  for (int i = 0; i < 1000000; i++) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    uint32_t r = (uint32_t)(state >> 32);
    /* exponents 2^-27 .. 2^15: through the subnormals up to just below fp16's largest binade's end */
    uint32_t bits = (r & 0x807fffffu) | ((100 + (r >> 23) % 43) << 23);
    float f = bits_f32(bits);
    if (fabsf(f) >= 65504.0f) continue;
    uint16_t h = core_f32_to_f16(f);
    double err = fabs((double)f - f16_formula(h));
    uint16_t mag = h & 0x7fff;
    if (mag < 0x7bff && fabs((double)f - f16_formula((uint16_t)(h + 1))) < err) nearest_bad++;
    if (mag > 0 && fabs((double)f - f16_formula((uint16_t)(h - 1))) < err) nearest_bad++;
  }
  CHECK(nearest_bad == 0, "fp32 -> fp16 picks the nearest value for 1e6 random small floats (%d bad)",
        nearest_bad);

  struct {
    float in;
    uint16_t out;
    const char *what;
  } cases[] = {
      {0.0f, 0x0000, "0"},
      {-0.0f, 0x8000, "-0"},
      {1.0f, 0x3c00, "1"},
      {65504.0f, 0x7bff, "max 65504"},
      {65519.99f, 0x7bff, "65519.99 -> 65504"},
      {65520.0f, 0x7c00, "65520 ties to infinity"},
      {1e10f, 0x7c00, "1e10 -> inf"},
      {-1e10f, 0xfc00, "-1e10 -> -inf"},
      {INFINITY, 0x7c00, "inf"},
      {-INFINITY, 0xfc00, "-inf"},
      {0x1p-24f, 0x0001, "2^-24 smallest subnormal"},
      {0x1p-25f, 0x0000, "2^-25 ties to 0"},
      {0x1.000002p-25f, 0x0001, "just above 2^-25 -> 2^-24"},
      {0x1.8p-24f, 0x0002, "1.5 * 2^-24 ties to 2 units"},
      {0x1p-14f, 0x0400, "smallest normal"},
      {0x1.ff8p-15f, 0x03ff, "largest subnormal"},
      {0x1.ffcp-15f, 0x0400, "largest subnormal + half a unit ties up to the smallest normal"},
      {1e-30f, 0x0000, "1e-30 -> 0"},
      {bits_f32(0x00000001), 0x0000, "fp32 subnormal -> 0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t got = core_f32_to_f16(cases[i].in);
    CHECK(got == cases[i].out, "fp32 -> fp16 %s: 0x%04x (want 0x%04x)", cases[i].what, got, cases[i].out);
  }
  CHECK(f16_is_nan(core_f32_to_f16(NAN)), "fp32 NaN -> fp16 NaN");
  CHECK(f16_is_nan(core_f32_to_f16(bits_f32(0x7f800001))), "a NaN with only the lowest payload bit stays NaN");
  CHECK(isinf(core_f16_to_f32(0x7c00)) && core_f16_to_f32(0xfc00) < 0, "fp16 +-inf decode");
}

static int bf16_is_nan(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; }

static void test_bf16(void) {
  int bad = 0;
  for (uint32_t b = 0; b < 65536; b++) {
    float f = core_bf16_to_f32((uint16_t)b);
    if (f32_bits(f) != b << 16) bad++;
    uint16_t back = core_f32_to_bf16(f);
    if (bf16_is_nan((uint16_t)b) ? !bf16_is_nan(back) : back != b) bad++;
  }
  CHECK(bad == 0, "bf16 -> fp32 -> bf16 on all 65536 patterns (%d bad)", bad);
  struct {
    uint32_t in;
    uint16_t out;
    const char *what;
  } cases[] = {
      {0x3f800000, 0x3f80, "1.0"},
      {0x3f808000, 0x3f80, "tie with even below stays"},
      {0x3f818000, 0x3f82, "tie with odd below rounds up"},
      {0x3f808001, 0x3f81, "above the tie rounds up"},
      {0x3f807fff, 0x3f80, "below the tie rounds down"},
      {0xbf818000, 0xbf82, "negative tie to even"},
      {0x7f800000, 0x7f80, "inf"},
      {0xff800000, 0xff80, "-inf"},
      {0x7f7fffff, 0x7f80, "FLT_MAX rounds to inf"},
      {0x7f7f7fff, 0x7f7f, "just below the top tie"},
      {0x80000000, 0x8000, "-0"},
      {0x00000001, 0x0000, "tiny subnormal -> 0"},
      {0x00008000, 0x0000, "subnormal tie to even 0"},
      {0x00018000, 0x0002, "subnormal tie to even 2"},
      {0x40490fdb, 0x4049, "pi"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t got = core_f32_to_bf16(bits_f32(cases[i].in));
    CHECK(got == cases[i].out, "fp32 0x%08x -> bf16 (%s): 0x%04x (want 0x%04x)", cases[i].in,
          cases[i].what, got, cases[i].out);
  }
  uint32_t nans[] = {0x7f800001, 0x7fc00000, 0xff800001, 0x7fffffff, 0x7f80ffff};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
    uint16_t got = core_f32_to_bf16(bits_f32(nans[i]));
    CHECK(bf16_is_nan(got) && (got & 0x8000) == ((nans[i] >> 16) & 0x8000),
          "NaN 0x%08x stays NaN in bf16 (0x%04x)", nans[i], got);
  }
}

/* fp8 against the formats' definitions, computed here another way (sign x mantissa x a power of two):
 * E4M3 "fn" (bias 7, subnormals at exponent 0, no infinities, S.1111.111 NaN) and E5M2 (bias 15, IEEE-
 * like: exponent 31 is infinity or NaN). Then every code back through the rounding conversion, the
 * points halfway between neighbours (ties to the even code), and saturation. */
static double fp8_definition(unsigned code, int exponent_bits, int mantissa_bits, int bias, int has_inf) {
  int sign = code >> 7 & 1, exponent = (int)(code >> mantissa_bits) & ((1 << exponent_bits) - 1);
  int mantissa = (int)code & ((1 << mantissa_bits) - 1), top = (1 << exponent_bits) - 1;
  double s = sign ? -1.0 : 1.0;
  if (has_inf && exponent == top) return mantissa ? NAN : s * INFINITY;
  if (!has_inf && exponent == top && mantissa == (1 << mantissa_bits) - 1) return NAN;
  if (exponent == 0) return s * ldexp((double)mantissa, 1 - bias - mantissa_bits);
  return s * ldexp((double)((1 << mantissa_bits) + mantissa), exponent - bias - mantissa_bits);
}

static void test_fp8(void) {
  int wrong[2] = {0, 0}, back[2] = {0, 0}, ties[2] = {0, 0}, first = -1;
  for (int f = 0; f < 2; f++) {
    for (unsigned code = 0; code < 256; code++) {
      double want = f == 0 ? fp8_definition(code, 4, 3, 7, 0) : fp8_definition(code, 5, 2, 15, 1);
      float got = f == 0 ? core_e4m3_to_f32((uint8_t)code) : core_e5m2_to_f32((uint8_t)code);
      if (!(((double)got == want && !signbit(got) == !signbit(want)) || (isnan(got) && isnan(want)))) {
        wrong[f]++;
        if (first < 0) first = (int)code;
      }
      uint8_t again = f == 0 ? core_f32_to_e4m3(got) : core_f32_to_e5m2(got);
      /* every finite code comes back as itself; NaN as a NaN code, E5M2's infinities saturate */
      float again_value = f == 0 ? core_e4m3_to_f32(again) : core_e5m2_to_f32(again);
      int ok = isnan(got) ? isnan(again_value) : isinf(got) ? again_value == copysignf(57344.0f, got) : again == code;
      back[f] += !ok;
      /* halfway to the next code up in magnitude: to the even one of the two */
      unsigned next = code + 1;
      float next_value = f == 0 ? core_e4m3_to_f32((uint8_t)next) : core_e5m2_to_f32((uint8_t)next);
      if ((code & 0x7f) < 0x7f && isfinite(got) && isfinite(next_value)) {
        float mid = (float)(((double)got + (double)next_value) / 2);
        uint8_t rounded = f == 0 ? core_f32_to_e4m3(mid) : core_f32_to_e5m2(mid);
        ties[f] += rounded != ((code & 1) == 0 ? code : next);
      }
    }
  }
  CHECK(wrong[0] == 0 && wrong[1] == 0, "every E4M3 and E5M2 code decodes as its definition (wrong %d, %d; first 0x%02x)",
        wrong[0], wrong[1], first < 0 ? 0 : first);
  CHECK(back[0] == 0 && back[1] == 0, "every code rounds back to itself (wrong %d, %d)", back[0], back[1]);
  CHECK(ties[0] == 0 && ties[1] == 0, "halfway values round to the even code (wrong %d, %d)", ties[0], ties[1]);
  CHECK(core_e4m3_to_f32(0x7e) == 448.0f && core_e4m3_to_f32(0x01) == 0x1p-9f && isnan(core_e4m3_to_f32(0xff)) &&
            core_e5m2_to_f32(0x7b) == 57344.0f && isinf(core_e5m2_to_f32(0xfc)) && core_e5m2_to_f32(0x01) == 0x1p-16f,
        "E4M3 448 and 2^-9, E5M2 57344, -inf and 2^-16");
  CHECK(core_f32_to_e4m3(1000.0f) == 0x7e && core_f32_to_e4m3(-INFINITY) == 0xfe && core_f32_to_e5m2(1e6f) == 0x7b &&
            core_f32_to_e4m3(0x1p-11f) == 0x00 && core_f32_to_e4m3(0x1.8p-10f) == 0x01 && core_f32_to_e4m3(NAN) == 0x7f &&
            core_f32_to_e4m3(-0.0f) == 0x80,
        "saturation at 448 and 57344, 2^-11 to 0 (a tie to even), 1.5 x 2^-10 up to 2^-9, NaN, -0");
  CHECK(strcmp(core_dtype_name(DTYPE_E4M3), "fp8_e4m3") == 0 && core_dtype_size(DTYPE_E5M2) == 1 &&
            core_dtype_is_fp8(DTYPE_E5M2) && !core_dtype_is_fp8(DTYPE_BF16),
        "fp8 names, sizes");
  dtype_id d;
  DLDataType e4m3 = {FJ_DLPACK_FLOAT8_E4M3FN, 8, 1}, e5m2 = {FJ_DLPACK_FLOAT8_E5M2, 8, 1}, wide = {FJ_DLPACK_FLOAT8_E5M2, 16, 1};
  CHECK(core_kv_dtype_from_dlpack(e4m3, &d) && d == DTYPE_E4M3 && core_kv_dtype_from_dlpack(e5m2, &d) && d == DTYPE_E5M2 &&
            !core_dtype_from_dlpack(e4m3, &d) && !core_kv_dtype_from_dlpack(wide, &d) &&
            core_dtype_to_dlpack(DTYPE_E4M3).code == FJ_DLPACK_FLOAT8_E4M3FN && core_dtype_to_dlpack(DTYPE_E5M2).bits == 8,
        "fp8 <-> DLPack 1.1's codes 10 and 12, for k and v only");
  CHECK(core_kv_dtype_parse("fp8_e4m3", &d) && d == DTYPE_E4M3 && core_kv_dtype_parse("E5M2", &d) && d == DTYPE_E5M2 &&
            core_kv_dtype_parse("bf16", &d) && d == DTYPE_BF16 && !core_dtype_parse("fp8_e4m3", &d) &&
            !core_kv_dtype_parse("fp8_e3m4", &d),
        "K/V dtype names");
}

static void test_dtype_table(void) {
  CHECK(strcmp(core_dtype_name(DTYPE_F32), "fp32") == 0 && strcmp(core_dtype_name(DTYPE_F16), "fp16") == 0 &&
            strcmp(core_dtype_name(DTYPE_BF16), "bf16") == 0,
        "dtype names fp32 fp16 bf16");
  CHECK(core_dtype_size(DTYPE_F32) == 4 && core_dtype_size(DTYPE_F16) == 2 && core_dtype_size(DTYPE_BF16) == 2,
        "dtype sizes 4 2 2");
  const char *names[] = {"fp32", "f32", "float32", "FP16", "half", "bf16", "bfloat16"};
  dtype_id want[] = {DTYPE_F32, DTYPE_F32, DTYPE_F32, DTYPE_F16, DTYPE_F16, DTYPE_BF16, DTYPE_BF16};
  for (int i = 0; i < 7; i++) {
    dtype_id d = DTYPE_COUNT;
    CHECK(core_dtype_parse(names[i], &d) == 1 && d == want[i], "parse \"%s\" -> %s", names[i],
          core_dtype_name(d));
  }
  dtype_id d;
  CHECK(core_dtype_parse("int8", &d) == 0 && core_dtype_parse("", &d) == 0 && core_dtype_parse(NULL, &d) == 0,
        "parse rejects int8, \"\" and NULL");
  for (int i = 0; i < DTYPE_COUNT; i++) {
    DLDataType t = core_dtype_to_dlpack((dtype_id)i);
    dtype_id back;
    CHECK(core_dtype_from_dlpack(t, &back) == 1 && back == (dtype_id)i && t.lanes == 1 &&
              t.bits == core_dtype_size((dtype_id)i) * 8 && t.code == (i == DTYPE_BF16 ? kDLBfloat : kDLFloat),
          "%s <-> DLPack (code %u bits %u lanes %u)", core_dtype_name((dtype_id)i), t.code, t.bits, t.lanes);
  }
  DLDataType lanes4 = {kDLFloat, 32, 4}, f64 = {kDLFloat, 64, 1}, i32 = {kDLInt, 32, 1}, bf32 = {kDLBfloat, 32, 1};
  CHECK(!core_dtype_from_dlpack(lanes4, &d) && !core_dtype_from_dlpack(f64, &d) &&
            !core_dtype_from_dlpack(i32, &d) && !core_dtype_from_dlpack(bf32, &d),
        "DLPack float32x4, float64, int32, bfloat32 are not ours");
  CHECK(core_dtype_tolerance(DTYPE_F32) == 1e-4 && core_dtype_tolerance(DTYPE_F16) == 1e-2 &&
            core_dtype_tolerance(DTYPE_BF16) == 1e-2,
        "tolerances 1e-4, 1e-2, 1e-2");
  uint16_t buf16[2];
  float buf32[2];
  core_store_from_f32(buf16, DTYPE_F16, 1, 1.5f);
  core_store_from_f32(buf32, DTYPE_F32, 1, 0.1f);
  CHECK(buf16[1] == 0x3e00 && core_load_as_f32(buf16, DTYPE_F16, 1) == 1.5f, "store/load fp16 at index 1");
  CHECK(core_load_as_f32(buf32, DTYPE_F32, 1) == 0.1f, "store/load fp32 at index 1");
  core_store_from_f32(buf16, DTYPE_BF16, 0, -2.0f);
  CHECK(buf16[0] == 0xc000 && core_load_as_f32(buf16, DTYPE_BF16, 0) == -2.0f, "store/load bf16");
}

/* ---- hash ---- */

static void test_hash(void) {
  char hex[17];
  core_hash64_hex(core_hash64("", 0), hex);
  CHECK(strcmp(hex, "cbf29ce484222325") == 0, "FNV-1a 64 of \"\" is %s", hex);
  core_hash64_hex(core_hash64("a", 1), hex);
  CHECK(strcmp(hex, "af63dc4c8601ec8c") == 0, "FNV-1a 64 of \"a\" is %s", hex);
  core_hash64_hex(core_hash64("foobar", 6), hex);
  CHECK(strcmp(hex, "85944171f73967e8") == 0, "FNV-1a 64 of \"foobar\" is %s", hex);
  CHECK(core_hash64_update(core_hash64("foo", 3), "bar", 3) == core_hash64("foobar", 6),
        "update continues a hash");
  core_hash64_hex(0x1ULL, hex);
  CHECK(strcmp(hex, "0000000000000001") == 0, "hex pads to 16 digits (%s)", hex);
}

/* ---- problem key, bucket, flops ---- */

static void test_problem_helpers(void) {
  int64_t lens[] = {0, 1, 2, 3, 4, 5, 2048, 2049, 4097, (int64_t)1 << 40};
  int want[] = {0, 0, 1, 2, 2, 3, 11, 12, 13, 40};
  for (int i = 0; i < 10; i++)
    CHECK(core_seqlen_bucket(lens[i]) == want[i], "seqlen bucket of %lld is %d (want %d)",
          (long long)lens[i], core_seqlen_bucket(lens[i]), want[i]);
  attention_key key = {PROBLEM_ATTENTION_FWD, DTYPE_BF16, 128, 8, 8, 0, 0, 1, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  char text[256];
  core_attention_key_string(&key, text, sizeof text);
  CHECK(strcmp(text, "attention_fwd dtype=bf16 d=128 h=8 hk=8 causal=0 lse=0 dcontig=1 sq<=2^11") == 0,
        "key string \"%s\"", text);
  attention_key key2 = {PROBLEM_ATTENTION_FWD, DTYPE_F16, 64, 32, 4, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  core_attention_key_string(&key2, text, sizeof text);
  CHECK(strcmp(text, "attention_fwd dtype=fp16 d=64 h=32 hk=4 causal=1 lse=1 dcontig=0 sq<=2^0") == 0,
        "key string \"%s\"", text);
  /* paged (and varlen): named only when set, before the bucket */
  attention_key paged = key2;
  paged.varlen = 1;
  paged.varlen_q = 1;
  paged.page_size = 16;
  core_attention_key_string(&paged, text, sizeof text);
  CHECK(strcmp(text, "attention_fwd dtype=fp16 d=64 h=32 hk=4 causal=1 lse=1 dcontig=0 varlen=1 varlen_q=1 page=16 sq<=2^0") == 0,
        "key string \"%s\"", text);
  attention_key with_sinks = paged;
  with_sinks.sinks = 1;
  core_attention_key_string(&with_sinks, text, sizeof text);
  CHECK(strcmp(text, "attention_fwd dtype=fp16 d=64 h=32 hk=4 causal=1 lse=1 dcontig=0 varlen=1 varlen_q=1 page=16 sinks=1 sq<=2^0") == 0,
        "key string \"%s\"", text);
  with_sinks.softcap = 1;
  with_sinks.page_size = 2147483647;
  core_attention_key_string(&with_sinks, text, sizeof text);
  CHECK(strcmp(text, "attention_fwd dtype=fp16 d=64 h=32 hk=4 causal=1 lse=1 dcontig=0 varlen=1 varlen_q=1 "
                     "page=2147483647 sinks=1 softcap=1 sq<=2^0") == 0,
        "key string \"%s\"", text);
  /* packed keys, ALiBi, an fp8 cache: the longest key, every flag set (the buffers it goes through hold
   * 256 bytes) */
  with_sinks.varlen_k = 1;
  with_sinks.alibi = 1;
  with_sinks.kv_fp8 = DTYPE_E4M3;
  with_sinks.window = 1;
  with_sinks.head_dim_v = 256;
  with_sinks.bias = KEY_BIAS_DTYPE;
  core_attention_key_string(&with_sinks, text, sizeof text);
  CHECK(strcmp(text, "attention_fwd dtype=fp16 d=64 h=32 hk=4 causal=1 window=1 lse=1 dcontig=0 varlen=1 varlen_q=1 "
                     "page=2147483647 sinks=1 softcap=1 varlen_k=1 alibi=1 kv=fp8_e4m3 dv=256 bias=fp16 sq<=2^0") == 0,
        "key string \"%s\"", text);
  CHECK(core_key_bias_dtype(&with_sinks) == DTYPE_F16, "a bias of q's dtype");
  with_sinks.bias = KEY_BIAS_F32;
  core_attention_key_string(&with_sinks, text, sizeof text);
  CHECK(strstr(text, " dv=256 bias=fp32 sq<=2^0") != NULL && core_key_bias_dtype(&with_sinks) == DTYPE_F32,
        "an fp32 bias: \"%s\"", text);
  with_sinks.bias = KEY_BIAS_DTYPE | KEY_BIAS_STRIDED_KEYS;
  core_attention_key_string(&with_sinks, text, sizeof text);
  CHECK(strstr(text, " dv=256 bias=fp16/strided sq<=2^0") != NULL && core_key_bias_dtype(&with_sinks) == DTYPE_F16,
        "a bias of q's dtype with strided keys: \"%s\"", text);
  with_sinks.bias = 0;
  CHECK(core_key_kv_dtype(&with_sinks) == DTYPE_E4M3 && core_key_kv_dtype(&key2) == DTYPE_F16,
        "k's dtype: the fp8 of a cache, else q's");
  CHECK(core_key_head_dim_v(&with_sinks) == 256 && core_key_head_dim_v(&key2) == 64,
        "v's head dim: its own where set, else q's (%d, %d)", core_key_head_dim_v(&with_sinks),
        core_key_head_dim_v(&key2));
  attention_key windowed = key2;
  windowed.window = 1;
  core_attention_key_string(&windowed, text, sizeof text);
  CHECK(strcmp(text, "attention_fwd dtype=fp16 d=64 h=32 hk=4 causal=1 window=1 lse=1 dcontig=0 sq<=2^0") == 0,
        "key string \"%s\"", text);
  char tiny[10];
  core_attention_key_string(&key, tiny, sizeof tiny);
  CHECK(strcmp(tiny, "attention") == 0, "key string truncates to the buffer (\"%s\")", tiny);

  attention_problem p;
  memset(&p, 0, sizeof p);
  p.key.heads = 3;
  p.key.head_dim = 64;
  p.batch = 2;
  p.seqlen_q = 100;
  p.seqlen_kv = 300;
  CHECK(core_attention_flops(&p) == 4.0 * 2 * 3 * 100 * 300 * 64, "non-causal flops 4*b*h*sq*skv*d");
  int flops_bad = 0;
  p.key.causal = 1;
  for (int64_t sq = 0; sq <= 12; sq++)
    for (int64_t skv = 0; skv <= 12; skv++) {
      p.seqlen_q = sq;
      p.seqlen_kv = skv;
      double pairs = 0;
      for (int64_t i = 0; i < sq; i++)
        for (int64_t j = 0; j < skv; j++) pairs += j <= i + skv - sq;
      if (core_attention_flops(&p) != 4.0 * 2 * 3 * 64 * pairs) flops_bad++;
    }
  CHECK(flops_bad == 0, "causal flops count exactly the visible pairs for sq, skv in 0..12 (%d bad)",
        flops_bad);
  p.seqlen_q = p.seqlen_kv = 4096;
  CHECK(core_attention_flops(&p) == 4.0 * 2 * 3 * 64 * (4096.0 * 4097 / 2), "causal 4096x4096 is n(n+1)/2 pairs");
  p.key.head_dim_v = 32;  /* q.k 2 d and p.v 2 dv per pair */
  CHECK(core_attention_flops(&p) == 2.0 * 2 * 3 * (64 + 32) * (4096.0 * 4097 / 2),
        "v's own head dim: 2 b h pairs (d + dv) (%g)", core_attention_flops(&p));
  p.key.head_dim_v = 0;
  /* sliding windows: query i sees j in [i + skv - sq - left, i + skv - sq + right], each side only where
   * bounded; core_visible_keys and the flops agree with the pairs counted one by one */
  int window_bad = 0;
  const int64_t lefts[] = {-1, 0, 1, 3}, rights[] = {-1, 0, 2};
  for (int l = 0; l < 4; l++)
    for (int r = 0; r < 3; r++)
      for (int64_t sq = 0; sq <= 9; sq++)
        for (int64_t skv = 0; skv <= 9; skv++) {
          p.key.window = lefts[l] >= 0;
          p.key.causal = rights[r] >= 0;
          p.window_left = lefts[l];
          p.window_right = rights[r];
          p.seqlen_q = sq;
          p.seqlen_kv = skv;
          double pairs = 0;
          for (int64_t i = 0; i < sq; i++) {
            int64_t first, end, seen_first = -1, seen_end = -1;
            for (int64_t j = 0; j < skv; j++) {
              int seen = (lefts[l] < 0 || j >= i + skv - sq - lefts[l]) && (rights[r] < 0 || j <= i + skv - sq + rights[r]);
              if (seen && seen_first < 0) seen_first = j;
              if (seen) seen_end = j + 1;
              pairs += seen;
            }
            core_visible_keys(&p, i, sq, skv, &first, &end);
            if (seen_first < 0 ? first != end : first != seen_first || end != seen_end) window_bad++;
          }
          if (core_attention_flops(&p) != 4.0 * 2 * 3 * 64 * pairs) window_bad++;
        }
  CHECK(window_bad == 0, "sliding-window visible keys and flops match the pairs counted one by one (%d bad)",
        window_bad);
  p.key.window = 0;
  p.key.causal = 1;
  p.window_left = p.window_right = 0;

  /* Bytes: q and o of b*sq*h*d, k and v of b*skv*hkv*d elements, and 4 per LSE value when there is one. */
  p.key.dtype = DTYPE_BF16;
  p.key.kv_heads = 1;
  p.seqlen_q = 1;
  p.seqlen_kv = 8192;
  CHECK(core_attention_bytes(&p) == (2.0 * 2 * 1 * 3 * 64 + 2.0 * 2 * 8192 * 1 * 64) * 2,
        "decode bytes: q, o once and k, v once, in bf16 (%.0f)", core_attention_bytes(&p));
  p.key.kv_fp8 = DTYPE_E4M3;
  CHECK(core_attention_bytes(&p) == (2.0 * 2 * 1 * 3 * 64) * 2 + (2.0 * 2 * 8192 * 1 * 64) * 1,
        "decode bytes of an fp8 cache: k and v one byte an element (%.0f)", core_attention_bytes(&p));
  p.key.kv_fp8 = 0;
  p.key.head_dim_v = 16;  /* q and k rows of 64, v and o rows of 16 */
  CHECK(core_attention_bytes(&p) == (2.0 * 1 * 3 * (64 + 16) + 2.0 * 8192 * 1 * (64 + 16)) * 2,
        "decode bytes with v's own head dim (%.0f)", core_attention_bytes(&p));
  p.key.head_dim_v = 0;
  float lse_value = 0.0f;
  p.lse.data = (char *)&lse_value;
  p.key.dtype = DTYPE_F32;
  CHECK(core_attention_bytes(&p) == (2.0 * 2 * 1 * 3 * 64 + 2.0 * 2 * 8192 * 1 * 64) * 4 + 2.0 * 3 * 1 * 4,
        "fp32 bytes with the LSE (%.0f)", core_attention_bytes(&p));

  /* seqlens_kv in host memory: each sequence's own keys (100 and 0 of 8192); on a device, where they
   * cannot be read, seqlen_kv */
  int32_t key_counts[2] = {100, 0};
  p.lse.data = NULL;
  p.seqlens_kv = key_counts;
  p.seqlens_kv_stride = 1;
  p.device.device_type = kDLCPU;
  CHECK(core_attention_bytes(&p) == (2.0 * 2 * 1 * 3 * 64 + 2.0 * 100 * 1 * 64) * 4,
        "bytes count each sequence's keys (%.0f)", core_attention_bytes(&p));
  CHECK(core_attention_flops(&p) == 4.0 * 3 * 64 * 100, "causal decode flops: one query against 100 keys (%.0f)",
        core_attention_flops(&p));
  p.device.device_type = kDLCUDA;
  CHECK(core_attention_bytes(&p) == (2.0 * 2 * 1 * 3 * 64 + 2.0 * 2 * 8192 * 1 * 64) * 4,
        "device seqlens_kv: bytes of seqlen_kv keys (%.0f)", core_attention_bytes(&p));
}

/* ---- logging ---- */

typedef struct captured {
  int count;
  char last[256];
  size_t length;
  log_level level;
} captured;

static void capture_sink(log_level level, const char *line, void *user) {
  captured *c = user;
  c->count++;
  c->level = level;
  c->length = strlen(line);
  snprintf(c->last, sizeof c->last, "%s", line);
}

static void test_log(void) {
  captured c;
  memset(&c, 0, sizeof c);
  core_log_set_sink(capture_sink, &c);
  core_log_set_level(LOG_WARN);
  core_log(LOG_WARN, "hello %d", 42);
  CHECK(c.count == 1 && strcmp(c.last, "flashjit: warn: hello 42") == 0, "warn line \"%s\"", c.last);
  core_log(LOG_INFO, "not shown");
  CHECK(c.count == 1, "info is filtered at warn");
  core_log(LOG_ERROR, "bad");
  CHECK(c.count == 2 && strcmp(c.last, "flashjit: error: bad") == 0, "error line \"%s\"", c.last);
  core_log_set_level(LOG_DEBUG);
  core_log(LOG_DEBUG, "dbg");
  CHECK(c.count == 3 && strcmp(c.last, "flashjit: debug: dbg") == 0 && core_log_enabled(LOG_DEBUG),
        "debug line at debug level \"%s\"", c.last);
  core_log(LOG_INFO, "inf");
  CHECK(strcmp(c.last, "flashjit: info: inf") == 0, "info line \"%s\"", c.last);
  char big[3000];
  memset(big, 'y', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  core_log_set_sink(NULL, NULL);
  memset(&c, 0, sizeof c);
  core_log_set_sink(capture_sink, &c);
  core_log(LOG_ERROR, "%s", big);
  CHECK(c.count == 1 && c.length == strlen("flashjit: error: ") + 2999 &&
            strncmp(c.last, "flashjit: error: yyy", 20) == 0,
        "a 2999-char message is passed whole (%zu chars)", c.length);

  struct {
    const char *env;
    int enabled_level;
  } envs[] = {{"error", LOG_ERROR}, {"warn", LOG_WARN}, {"INFO", LOG_INFO}, {"debug", LOG_DEBUG},
              {"0", LOG_ERROR},     {"2", LOG_INFO},    {"9", LOG_DEBUG},   {"bogus", LOG_WARN},
              {"", LOG_WARN}};
  for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
    setenv("FLASHJIT_LOG", envs[i].env, 1);
    core_log_set_level(-1);
    int level = core_log_enabled(LOG_DEBUG) ? 3 : core_log_enabled(LOG_INFO) ? 2 : core_log_enabled(LOG_WARN) ? 1 : 0;
    CHECK(level == envs[i].enabled_level, "FLASHJIT_LOG=\"%s\" gives level %d", envs[i].env, level);
  }
  setenv("FLASHJIT_LOG", "off", 1);
  core_log_set_level(-1);
  CHECK(!core_log_enabled(LOG_ERROR), "FLASHJIT_LOG=off prints nothing");
  unsetenv("FLASHJIT_LOG");
  core_log_set_level(-1);
  CHECK(core_log_enabled(LOG_WARN) && !core_log_enabled(LOG_INFO), "unset FLASHJIT_LOG is warn");
  core_log_set_sink(NULL, NULL);
}

/* ---- host tensors ---- */

static void test_host_tensor(void) {
  host_tensor t;
  int64_t shape[4] = {2, 3, 4, 8};
  CHECK(host_tensor_alloc(&t, DTYPE_F16, 4, shape, NULL) == 0, "alloc [2,3,4,8] fp16");
  CHECK(t.allocation_bytes == 384 && ((uintptr_t)t.t.data % 64) == 0, "384 bytes, 64-byte aligned (%zu)",
        t.allocation_bytes);
  CHECK(t.t.strides == t.strides && t.strides[0] == 96 && t.strides[1] == 32 && t.strides[2] == 8 &&
            t.strides[3] == 1,
        "row-major strides 96 32 8 1");
  CHECK(t.t.shape == t.shape && t.t.ndim == 4 && t.t.device.device_type == kDLCPU && t.t.dtype.bits == 16,
        "DLTensor fields point into the host_tensor");
  host_tensor_fill_random(&t, 42);
  int in_range = 1;
  double sum = 0;
  for (int i = 0; i < 192; i++) {
    float v = core_load_as_f32(t.t.data, DTYPE_F16, i);
    if (!(v >= -1.0f && v <= 1.0f)) in_range = 0;
    sum += v;
  }
  CHECK(in_range && fabs(sum / 192) < 0.2, "random values in [-1, 1], mean %.3f", sum / 192);
  host_tensor u;
  host_tensor_alloc(&u, DTYPE_F16, 4, shape, NULL);
  host_tensor_fill_random(&u, 42);
  CHECK(memcmp(t.t.data, u.t.data, 384) == 0, "same seed, same values");
  host_tensor_fill_random(&u, 43);
  CHECK(memcmp(t.t.data, u.t.data, 384) != 0, "another seed, other values");
  host_tensor_poison(&u);
  int all_nan = 1;
  for (int i = 0; i < 192; i++) all_nan &= isnan(core_load_as_f32(u.t.data, DTYPE_F16, i));
  CHECK(all_nan, "poison makes every element NaN");
  host_tensor_free(&u);
  host_tensor_free(&t);
  host_tensor_free(&t);
  host_tensor_free(NULL);
  CHECK(t.allocation == NULL, "free clears and is NULL-safe and repeatable");

  /* A benchmark-sized tensor (16M + 3 elements: the threaded fill, a partial last chunk): the same
   * values for the same seed, uniform on [-1, 1) (mean 0, variance 1/3), no chunk repeating another. */
  {
    int64_t large[2] = {(1LL << 24) + 3, 1};
    host_tensor a, b;
    int made = host_tensor_alloc(&a, DTYPE_BF16, 2, large, NULL) == 0 && host_tensor_alloc(&b, DTYPE_BF16, 2, large, NULL) == 0;
    CHECK(made, "alloc two [2^24 + 3, 1] bf16 tensors");
    if (made) {
      host_tensor_poison(&a);
      host_tensor_fill_random(&a, 7);
      host_tensor_fill_random(&b, 7);
      size_t bytes = (size_t)large[0] * 2;
      CHECK(memcmp(a.t.data, b.t.data, bytes) == 0, "large: same seed, same values");
      double mean = 0, square = 0;
      int bounded = 1;
      for (int64_t i = 0; i < large[0]; i++) {
        float v = core_load_as_f32(a.t.data, DTYPE_BF16, i);
        bounded &= v >= -1.0f && v <= 1.0f;
        mean += v;
        square += (double)v * v;
      }
      mean /= (double)large[0];
      square /= (double)large[0];
      CHECK(bounded && fabs(mean) < 1e-3 && fabs(square - 1.0 / 3.0) < 1e-3,
            "large: values in [-1, 1], mean %.2e, mean square %.4f (1/3)", mean, square);
      const uint16_t *h = a.t.data;
      CHECK(memcmp(h, h + (1 << 20), 1 << 12) != 0 && memcmp(h + (1 << 20), h + (2 << 20), 1 << 12) != 0,
            "large: the chunks' streams differ");
      CHECK(h[large[0] - 1] != 0xffff && h[large[0] - 3] != 0xffff, "large: the partial last chunk is filled (not NaN)");
      host_tensor_fill_random(&b, 8);
      CHECK(memcmp(a.t.data, b.t.data, bytes) != 0, "large: another seed, other values");
    }
    host_tensor_free(&a);
    host_tensor_free(&b);
  }

  /* padded strides: [2, 5] with row stride 8 reaches index 1*8+4 = 12 -> 13 floats -> 64 bytes */
  int64_t s2[2] = {2, 5}, st2[2] = {8, 1};
  CHECK(host_tensor_alloc(&t, DTYPE_F32, 2, s2, st2) == 0 && t.allocation_bytes == 64,
        "strided allocation covers the reach (%zu bytes)", t.allocation_bytes);
  host_tensor_poison(&t);
  host_tensor_fill_random(&t, 1);
  float *f = t.t.data;
  CHECK(isnan(f[5]) && isnan(f[6]) && isnan(f[7]) && !isnan(f[8]) && !isnan(f[12]),
        "fill_random writes only reachable elements (the padding stays poisoned)");
  host_tensor_free(&t);

  int64_t big[4] = {1LL << 40, 1LL << 40, 1, 8}, neg[2] = {2, -1}, nst[2] = {-1, 1};
  CHECK(host_tensor_alloc(&t, DTYPE_F32, 4, big, NULL) == -1, "a shape whose size overflows is refused");
  CHECK(host_tensor_alloc(&t, DTYPE_F32, 2, neg, NULL) == -1, "a negative shape is refused");
  CHECK(host_tensor_alloc(&t, DTYPE_F32, 2, s2, nst) == -1, "a negative stride is refused");
  CHECK(host_tensor_alloc(&t, DTYPE_F32, 5, big, NULL) == -1 && host_tensor_alloc(&t, DTYPE_F32, 0, big, NULL) == -1,
        "ndim 5 and 0 are refused");
  CHECK(host_tensor_alloc(&t, DTYPE_KV_COUNT, 2, s2, NULL) == -1, "an unknown dtype is refused");
  int64_t empty[2] = {0, 5};
  CHECK(host_tensor_alloc(&t, DTYPE_F32, 2, empty, NULL) == 0 && t.t.data != NULL, "an empty tensor still gets memory");
  host_tensor_free(&t);

  /* packed QKV: [1, 4, 3*2*8] viewed as three [1, 4, 2, 8] tensors */
  int64_t packed[3] = {1, 4, 48};
  host_tensor base, kview;
  host_tensor_alloc(&base, DTYPE_BF16, 3, packed, NULL);
  host_tensor_poison(&base);
  int64_t vshape[4] = {1, 4, 2, 8}, vstride[4] = {192, 48, 8, 1};
  host_tensor_view(&kview, &base, DTYPE_BF16, 4, vshape, vstride, 16);
  CHECK(kview.allocation == NULL && (char *)kview.t.data == (char *)base.t.data + 32,
        "view starts 16 elements (32 bytes) in");
  host_tensor_fill_random(&kview, 5);
  uint16_t *raw = base.t.data;
  int only_k = 1;
  for (int s = 0; s < 4; s++)
    for (int c = 0; c < 48; c++) {
      int is_k = c >= 16 && c < 32;
      if (is_k == bf16_is_nan(raw[s * 48 + c])) only_k = 0;
    }
  CHECK(only_k, "filling the K view writes exactly K's columns");
  host_tensor_poison(&kview);
  int all = 1;
  for (int i = 0; i < 192; i++) all &= bf16_is_nan(raw[i]);
  CHECK(all, "poisoning the view reaches only what it covers (everything is NaN again)");
  host_tensor_free(&kview);
  CHECK(base.allocation != NULL, "freeing a view frees nothing");
  host_tensor_free(&base);
}

static void test_cores(void) {
  int n = core_online_cores();
  CHECK(n >= 1, "core_online_cores()=%d", n);
}

int main(void) {
  test_status();
  test_errors();
  test_f16();
  test_bf16();
  test_dtype_table();
  test_fp8();
  test_hash();
  test_problem_helpers();
  test_log();
  test_host_tensor();
  test_cores();
  return check_summary();
}
