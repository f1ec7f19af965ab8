/* dtype.h: the element types flashjit takes, their DLPack codes, and scalar conversions
 * (round-to-nearest-even for fp16 and bf16) used by the reference, the tests and the host tools. */
#ifndef FJ_CORE_DTYPE_H
#define FJ_CORE_DTYPE_H
#include <stdint.h>
#include <dlpack/dlpack.h>

typedef enum dtype_id { DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2, DTYPE_COUNT = 3 } dtype_id;

const char *core_dtype_name(dtype_id dtype);        /* "fp32", "fp16", "bf16" */
int core_dtype_size(dtype_id dtype);                /* bytes */
int core_dtype_parse(const char *name, dtype_id *out); /* 1 on success; takes fp32/f32/float32, ... */
/* 1 and *out when the DLPack type is one of ours (lanes must be 1). */
int core_dtype_from_dlpack(DLDataType type, dtype_id *out);
DLDataType core_dtype_to_dlpack(dtype_id dtype);
/* A relative-error bound for results in this dtype against a float64 reference. */
double core_dtype_tolerance(dtype_id dtype);

float core_f16_to_f32(uint16_t h);
uint16_t core_f32_to_f16(float f);
float core_bf16_to_f32(uint16_t b);
uint16_t core_f32_to_bf16(float f);
/* Reads / writes element i of a buffer of this dtype as float. */
float core_load_as_f32(const void *base, dtype_id dtype, int64_t index);
void core_store_from_f32(void *base, dtype_id dtype, int64_t index, float value);
#endif
