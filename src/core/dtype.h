/* dtype.h: the element types flashjit takes, their DLPack codes, and scalar conversions
 * (round-to-nearest-even) used by the reference, the tests and the host tools. */
#ifndef FJ_CORE_DTYPE_H
#define FJ_CORE_DTYPE_H
#include <stdint.h>
#include <dlpack/dlpack.h>
#include "flashjit.h"  /* FJ_DLPACK_FLOAT8_*: DLPack 1.1's fp8 codes */

/* The first DTYPE_COUNT are the attention dtypes (q, o, and k, v alike); the fp8 ones are only ever k's
 * and v's: an fp8 KV cache (OCP's E4M3 without infinities, "fn", and E5M2), read with a scale. */
typedef enum dtype_id {
  DTYPE_F32 = 0,
  DTYPE_F16 = 1,
  DTYPE_BF16 = 2,
  DTYPE_COUNT = 3,
  DTYPE_E4M3 = 3,
  DTYPE_E5M2 = 4,
  DTYPE_KV_COUNT = 5
} dtype_id;

const char *core_dtype_name(dtype_id dtype);        /* "fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2" */
int core_dtype_size(dtype_id dtype);                /* bytes */
int core_dtype_is_fp8(dtype_id dtype);
int core_dtype_parse(const char *name, dtype_id *out); /* 1 on success; takes fp32/f32/float32, ... */
/* The same for a K/V dtype: an attention dtype or fp8_e4m3 / fp8_e5m2 (e4m3, float8_e4m3fn, ...). */
int core_kv_dtype_parse(const char *name, dtype_id *out);
/* 1 and *out when name is what k and v may be beside q of `dtype`: an fp8 (a cache's) or dtype itself. */
int core_kv_dtype_parse_for(const char *name, dtype_id dtype, dtype_id *out);
/* 1 and *out when the DLPack type is one of the attention dtypes (lanes must be 1). */
int core_dtype_from_dlpack(DLDataType type, dtype_id *out);
/* The same, fp8 included (k and v). */
int core_kv_dtype_from_dlpack(DLDataType type, dtype_id *out);
DLDataType core_dtype_to_dlpack(dtype_id dtype);
/* A relative-error bound for results in this dtype against a float64 reference. */
double core_dtype_tolerance(dtype_id dtype);

float core_f16_to_f32(uint16_t h);
uint16_t core_f32_to_f16(float f);
float core_bf16_to_f32(uint16_t b);
uint16_t core_f32_to_bf16(float f);
/* fp8: exact to fp32 (E4M3's 0x7f / 0xff are NaN); from fp32 round-to-nearest-even, saturating to the
 * largest finite value (448 for E4M3, 57344 for E5M2) as a cache's quantizer does; NaN stays NaN. */
float core_e4m3_to_f32(uint8_t x);
float core_e5m2_to_f32(uint8_t x);
uint8_t core_f32_to_e4m3(float f);
uint8_t core_f32_to_e5m2(float f);
/* Reads / writes element i of a buffer of this dtype as float. */
float core_load_as_f32(const void *base, dtype_id dtype, int64_t index);
void core_store_from_f32(void *base, dtype_id dtype, int64_t index, float value);
#endif
