/* dtype.c: the element types flashjit takes and exact scalar conversions between them. The
 * conversions are done on bits rather than with compiler half types so that rounding (to nearest even,
 * subnormals included) is the same on every host and matches what the GPUs do. */
#include <ctype.h>
#include <math.h>
#include <string.h>
#include "core/dtype.h"

static const char *const core_dtype_names[DTYPE_KV_COUNT] = {"fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2"};

const char *core_dtype_name(dtype_id dtype) {
  return (unsigned)dtype < DTYPE_KV_COUNT ? core_dtype_names[dtype] : "unknown";
}

int core_dtype_size(dtype_id dtype) {
  switch (dtype) {
  case DTYPE_F32: return 4;
  case DTYPE_F16: return 2;
  case DTYPE_BF16: return 2;
  case DTYPE_E4M3: return 1;
  case DTYPE_E5M2: return 1;
  default: return 0;
  }
}

int core_dtype_is_fp8(dtype_id dtype) { return dtype == DTYPE_E4M3 || dtype == DTYPE_E5M2; }

static int core_dtype_name_is(const char *name, const char *candidate) {
  for (; *name && *candidate; name++, candidate++)
    if (tolower((unsigned char)*name) != *candidate) return 0;
  return *name == *candidate;
}

int core_dtype_parse(const char *name, dtype_id *out) {
  static const struct {
    const char *name;
    dtype_id dtype;
  } names[] = {
      {"fp32", DTYPE_F32},     {"f32", DTYPE_F32},  {"float32", DTYPE_F32}, {"float", DTYPE_F32},
      {"fp16", DTYPE_F16},     {"f16", DTYPE_F16},  {"float16", DTYPE_F16}, {"half", DTYPE_F16},
      {"bf16", DTYPE_BF16},    {"bfloat16", DTYPE_BF16},
  };
  if (name == NULL || out == NULL) return 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (core_dtype_name_is(name, names[i].name)) {
      *out = names[i].dtype;
      return 1;
    }
  }
  return 0;
}

int core_kv_dtype_parse(const char *name, dtype_id *out) {
  static const struct {
    const char *name;
    dtype_id dtype;
  } names[] = {
      {"fp8_e4m3", DTYPE_E4M3}, {"e4m3", DTYPE_E4M3}, {"float8_e4m3fn", DTYPE_E4M3}, {"fp8", DTYPE_E4M3},
      {"fp8_e5m2", DTYPE_E5M2}, {"e5m2", DTYPE_E5M2}, {"float8_e5m2", DTYPE_E5M2},
  };
  if (name == NULL || out == NULL) return 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (core_dtype_name_is(name, names[i].name)) {
      *out = names[i].dtype;
      return 1;
    }
  }
  return core_dtype_parse(name, out);
}

int core_kv_dtype_parse_for(const char *name, dtype_id dtype, dtype_id *out) {
  dtype_id kv;
  if (!core_kv_dtype_parse(name, &kv) || (kv != dtype && !core_dtype_is_fp8(kv))) return 0;
  *out = kv;
  return 1;
}

int core_kv_dtype_from_dlpack(DLDataType type, dtype_id *out) {
  if (type.lanes == 1 && type.bits == 8 && (type.code == FJ_DLPACK_FLOAT8_E4M3FN || type.code == FJ_DLPACK_FLOAT8_E5M2)) {
    if (out != NULL) *out = type.code == FJ_DLPACK_FLOAT8_E4M3FN ? DTYPE_E4M3 : DTYPE_E5M2;
    return 1;
  }
  return core_dtype_from_dlpack(type, out);
}

int core_dtype_from_dlpack(DLDataType type, dtype_id *out) {
  dtype_id found;
  if (type.lanes != 1) return 0;
  if (type.code == kDLFloat && type.bits == 32) found = DTYPE_F32;
  else if (type.code == kDLFloat && type.bits == 16) found = DTYPE_F16;
  else if (type.code == kDLBfloat && type.bits == 16) found = DTYPE_BF16;
  else return 0;
  if (out != NULL) *out = found;
  return 1;
}

DLDataType core_dtype_to_dlpack(dtype_id dtype) {
  DLDataType type = {kDLFloat, 32, 1};
  if (dtype == DTYPE_F16) type.bits = 16;
  if (dtype == DTYPE_BF16) {
    type.code = kDLBfloat;
    type.bits = 16;
  }
  if (core_dtype_is_fp8(dtype)) {
    type.code = dtype == DTYPE_E4M3 ? FJ_DLPACK_FLOAT8_E4M3FN : FJ_DLPACK_FLOAT8_E5M2;
    type.bits = 8;
  }
  return type;
}

double core_dtype_tolerance(dtype_id dtype) { return dtype == DTYPE_F32 ? 1e-4 : 1e-2; }

static uint32_t core_f32_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return x;
}

static float core_bits_f32(uint32_t x) {
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

float core_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0) {
    /* Zero or subnormal: mantissa * 2^-24 is exact in fp32. */
    float magnitude = (float)mantissa * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return core_bits_f32(sign | 0x7f800000u | (mantissa << 13));
  return core_bits_f32(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t core_f32_to_f16(float f) {
  uint32_t x = core_f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) /* NaN: keep it quiet and keep the top payload bits */
    return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
  /* 65520 is halfway between 65504 (odd mantissa) and 2^16, so it and above round to infinity. */
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);
  if (ax >= 0x38800000u) { /* an fp16 normal: rebias the exponent, drop 13 mantissa bits */
    uint32_t rebased = ax - ((uint32_t)(127 - 15) << 23);
    uint32_t h = rebased >> 13;
    uint32_t rest = rebased & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
  }
  /* An fp16 subnormal (or zero): the result counts units of 2^-24. */
  uint32_t exponent = ax >> 23;
  if (exponent < 102) return sign; /* below 2^-25: rounds to zero (2^-25 itself ties to 0 below) */
  uint32_t mantissa = (ax & 0x7fffff) | 0x800000;
  uint32_t shift = 126 - exponent; /* 14..24 */
  uint32_t h = mantissa >> shift;
  uint32_t rest = mantissa & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

float core_bf16_to_f32(uint16_t b) { return core_bits_f32((uint32_t)b << 16); }

uint16_t core_f32_to_bf16(float f) {
  uint32_t x = core_f32_bits(f);
  /* Rounding could carry a NaN with a low payload into infinity; force a quiet NaN instead. */
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040);
  x += 0x7fffu + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

/* E4M3 ("fn"): sign, 4 exponent bits of bias 7, 3 mantissa bits; no infinities, S.1111.111 is NaN. */
float core_e4m3_to_f32(uint8_t x) {
  uint32_t sign = (uint32_t)(x & 0x80) << 24, exponent = (x >> 3) & 0xf, mantissa = x & 7;
  if (exponent == 15 && mantissa == 7) return core_bits_f32(sign | 0x7fc00000u);
  if (exponent == 0) {  /* zero or subnormal: mantissa * 2^-9 */
    float magnitude = (float)mantissa * 0x1p-9f;
    return sign ? -magnitude : magnitude;
  }
  return core_bits_f32(sign | ((exponent + 127 - 7) << 23) | (mantissa << 20));
}

/* E5M2 is the high byte of an fp16 (the same exponent, two mantissa bits). */
float core_e5m2_to_f32(uint8_t x) { return core_f16_to_f32((uint16_t)((unsigned)x << 8)); }

/* Rounds |f| to nearest even on a grid of mantissa_bits bits with exponent bias `bias` (subnormals
 * below 2^(1 - bias)) and encodes it; saturates at max_code; NaN gives nan_code. */
static uint8_t core_f32_to_fp8(float f, int mantissa_bits, int bias, uint8_t max_code, uint8_t nan_code,
                               float (*decode)(uint8_t)) {
  uint8_t sign = signbit(f) ? 0x80 : 0;
  if (isnan(f)) return (uint8_t)(sign | nan_code);
  float a = fabsf(f), max = decode(max_code);
  if (a >= max) return (uint8_t)(sign | max_code);
  int exponent;
  frexpf(a, &exponent);  /* a = fraction x 2^exponent, fraction in [0.5, 1) */
  int quantum = (exponent - 1 < 1 - bias ? 1 - bias : exponent - 1) - mantissa_bits;
  float rounded = ldexpf(rintf(ldexpf(a, -quantum)), quantum);  /* exact scalings; rint ties to even */
  if (rounded == 0.0f) return sign;
  if (rounded > max) return (uint8_t)(sign | max_code);
  frexpf(rounded, &exponent);
  if (exponent - 1 < 1 - bias)  /* subnormal: units of 2^(1 - bias - mantissa_bits) */
    return (uint8_t)(sign | (int)ldexpf(rounded, mantissa_bits + bias - 1));
  int mantissa = (int)ldexpf(rounded, mantissa_bits - (exponent - 1)) - (1 << mantissa_bits);
  return (uint8_t)(sign | ((exponent - 1 + bias) << mantissa_bits) | mantissa);
}

uint8_t core_f32_to_e4m3(float f) { return core_f32_to_fp8(f, 3, 7, 0x7e, 0x7f, core_e4m3_to_f32); }
uint8_t core_f32_to_e5m2(float f) { return core_f32_to_fp8(f, 2, 15, 0x7b, 0x7e, core_e5m2_to_f32); }

float core_load_as_f32(const void *base, dtype_id dtype, int64_t index) {
  switch (dtype) {
  case DTYPE_F16: return core_f16_to_f32(((const uint16_t *)base)[index]);
  case DTYPE_BF16: return core_bf16_to_f32(((const uint16_t *)base)[index]);
  case DTYPE_E4M3: return core_e4m3_to_f32(((const uint8_t *)base)[index]);
  case DTYPE_E5M2: return core_e5m2_to_f32(((const uint8_t *)base)[index]);
  default: return ((const float *)base)[index];
  }
}

void core_store_from_f32(void *base, dtype_id dtype, int64_t index, float value) {
  switch (dtype) {
  case DTYPE_F16: ((uint16_t *)base)[index] = core_f32_to_f16(value); break;
  case DTYPE_BF16: ((uint16_t *)base)[index] = core_f32_to_bf16(value); break;
  case DTYPE_E4M3: ((uint8_t *)base)[index] = core_f32_to_e4m3(value); break;
  case DTYPE_E5M2: ((uint8_t *)base)[index] = core_f32_to_e5m2(value); break;
  default: ((float *)base)[index] = value; break;
  }
}
