/* host_tensor.h: host-memory DLTensors for the tools, the tuner and the tests: allocate with a shape,
 * dtype and optional strides, fill with seeded random values, poison, free. */
#ifndef FJ_CORE_HOST_TENSOR_H
#define FJ_CORE_HOST_TENSOR_H
#include <stdint.h>
#include <dlpack/dlpack.h>
#include "core/dtype.h"

/* t.shape and t.strides point into the struct itself: pass host_tensor by pointer, never copy it by
 * value (a copy's t.shape would still point into the original). */
typedef struct host_tensor {
  DLTensor t;          /* t.shape and t.strides point into the arrays below (strides always set) */
  int64_t shape[4];
  int64_t strides[4];
  void *allocation;    /* what to free; t.data points into it */
  size_t allocation_bytes;
} host_tensor;

/* Allocates a tensor of ndim dims; strides NULL means row-major. The allocation covers every element
 * the strides reach (64-byte aligned). Returns 0 on success, -1 on bad sizes or no memory. */
int host_tensor_alloc(host_tensor *out, dtype_id dtype, int ndim, const int64_t *shape,
                      const int64_t *strides);
/* An int32 tensor (seqlens_kv, a block table), row-major and zeroed: host_tensor knows the attention
 * dtypes only, so it is allocated as fp32 (the same 4 bytes) and re-typed. 0 or -1 as above. */
int host_tensor_alloc_int32(host_tensor *out, int ndim, const int64_t *shape);
/* A block table for a paged cache whose pool holds every sequence's pages: [batch, pages_per_sequence]
 * int32, each page of the pool once, shuffled (multiples of a number prime to the pool's size, so that
 * a sequence's neighbouring pages lie far apart, as in a long-running server's cache). 0 or -1. */
int host_block_table_alloc(host_tensor *out, int64_t batch, int64_t pages_per_sequence);
/* Makes a view of base's memory with its own shape/strides (NULL: row-major) and an offset in elements
 * of dtype (for packed QKV); t.data already includes the offset, t.byte_offset is 0. */
void host_tensor_view(host_tensor *out, const host_tensor *base, dtype_id dtype, int ndim,
                      const int64_t *shape, const int64_t *strides, int64_t element_offset);
/* Fills every reachable element with uniform values in [-1, 1) from a splitmix64 stream at seed (a
 * row-major tensor of 16M elements or more: one stream per 1M-element chunk, filled by up to 16
 * threads; the values still depend on the seed alone). */
void host_tensor_fill_random(host_tensor *t, uint64_t seed);
/* Fills the whole allocation with a NaN pattern so unwritten outputs show. */
void host_tensor_poison(host_tensor *t);
void host_tensor_free(host_tensor *t);  /* NULL-safe; views free nothing */
#endif
