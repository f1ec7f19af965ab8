/* dtype.c: the three element types flashjit takes and exact scalar conversions between them. The
 * conversions are done on bits rather than with compiler half types so that rounding (to nearest even,
 * subnormals included) is the same on every host and matches what the GPUs do. */
#include <ctype.h>
#include <string.h>
#include "core/dtype.h"

static const char *const core_dtype_names[DTYPE_COUNT] = {"fp32", "fp16", "bf16"};

const char *core_dtype_name(dtype_id dtype) {
  return (unsigned)dtype < DTYPE_COUNT ? core_dtype_names[dtype] : "unknown";
}

int core_dtype_size(dtype_id dtype) {
  switch (dtype) {
  case DTYPE_F32: return 4;
  case DTYPE_F16: return 2;
  case DTYPE_BF16: return 2;
  default: return 0;
  }
}

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

float core_load_as_f32(const void *base, dtype_id dtype, int64_t index) {
  switch (dtype) {
  case DTYPE_F16: return core_f16_to_f32(((const uint16_t *)base)[index]);
  case DTYPE_BF16: return core_bf16_to_f32(((const uint16_t *)base)[index]);
  default: return ((const float *)base)[index];
  }
}

void core_store_from_f32(void *base, dtype_id dtype, int64_t index, float value) {
  switch (dtype) {
  case DTYPE_F16: ((uint16_t *)base)[index] = core_f32_to_f16(value); break;
  case DTYPE_BF16: ((uint16_t *)base)[index] = core_f32_to_bf16(value); break;
  default: ((float *)base)[index] = value; break;
  }
}
