/* host_tensor.c: host-memory DLTensors for tests, tools and the tuner. Allocations cover exactly the
 * elements the strides reach (rounded up to 64 bytes), so a kernel that writes past a padded or strided
 * layout is caught by AddressSanitizer; random fills are seeded so a failure can be replayed. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/host_tensor.h"

static void core_row_major(int ndim, const int64_t *shape, int64_t *strides) {
  int64_t running = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    strides[i] = running;
    running *= shape[i] > 0 ? shape[i] : 1;
  }
}

/* Largest element index reached, -1 when there are no elements, -2 on overflow or bad values. */
static int64_t core_last_index(int ndim, const int64_t *shape, const int64_t *strides) {
  int64_t last = 0;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || strides[i] < 0) return -2;
    if (shape[i] == 0) return -1;
  }
  for (int i = 0; i < ndim; i++) {
    int64_t reach;
    if (__builtin_mul_overflow(shape[i] - 1, strides[i], &reach) ||
        __builtin_add_overflow(last, reach, &last))
      return -2;
  }
  return last;
}

int host_tensor_alloc(host_tensor *out, dtype_id dtype, int ndim, const int64_t *shape,
                      const int64_t *strides) {
  if (out == NULL) return -1;
  memset(out, 0, sizeof *out);
  int elem = core_dtype_size(dtype);
  if (elem == 0 || ndim < 1 || ndim > 4 || shape == NULL) return -1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return -1;
    out->shape[i] = shape[i];
  }
  if (strides != NULL) memcpy(out->strides, strides, (size_t)ndim * sizeof(int64_t));
  else {
    /* Row-major strides of a huge shape must not overflow silently: check the product first. */
    int64_t total = 1;
    for (int i = 0; i < ndim; i++)
      if (__builtin_mul_overflow(total, shape[i] > 0 ? shape[i] : 1, &total)) return -1;
    core_row_major(ndim, shape, out->strides);
  }
  int64_t last = core_last_index(ndim, out->shape, out->strides);
  if (last == -2) return -1;
  int64_t bytes;
  if (__builtin_mul_overflow(last + 1, (int64_t)elem, &bytes) || bytes > INT64_MAX - 64) return -1;
  /* aligned_alloc wants a multiple of the alignment; an empty tensor still gets a real pointer. */
  size_t rounded = ((size_t)bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void *memory = aligned_alloc(64, rounded);
  if (memory == NULL) return -1;
  out->allocation = memory;
  out->allocation_bytes = rounded;
  out->t.data = memory;
  out->t.device.device_type = kDLCPU;
  out->t.device.device_id = 0;
  out->t.ndim = ndim;
  out->t.dtype = core_dtype_to_dlpack(dtype);
  out->t.shape = out->shape;
  out->t.strides = out->strides;
  out->t.byte_offset = 0;
  return 0;
}

int host_tensor_alloc_int32(host_tensor *out, int ndim, const int64_t *shape) {
  if (host_tensor_alloc(out, DTYPE_F32, ndim, shape, NULL) != 0) return -1;
  out->t.dtype = (DLDataType){kDLInt, 32, 1};
  memset(out->allocation, 0, out->allocation_bytes);
  return 0;
}

int host_block_table_alloc(host_tensor *out, int64_t batch, int64_t pages_per_sequence) {
  int64_t shape[2] = {batch, pages_per_sequence};
  if (batch < 1 || pages_per_sequence < 1 || batch > INT32_MAX / pages_per_sequence) return -1;
  if (host_tensor_alloc_int32(out, 2, shape) != 0) return -1;
  int64_t pool = batch * pages_per_sequence, multiplier = 7919;
  while (pool % multiplier == 0) multiplier += 2;
  int32_t *entries = out->t.data;
  for (int64_t i = 0; i < pool; i++) entries[i] = (int32_t)((i * multiplier) % pool);
  return 0;
}

void host_tensor_view(host_tensor *out, const host_tensor *base, dtype_id dtype, int ndim,
                      const int64_t *shape, const int64_t *strides, int64_t element_offset) {
  memset(out, 0, sizeof *out);
  if (ndim < 0) ndim = 0;
  if (ndim > 4) ndim = 4;
  for (int i = 0; i < ndim; i++) out->shape[i] = shape[i];
  if (strides != NULL) memcpy(out->strides, strides, (size_t)ndim * sizeof(int64_t));
  else core_row_major(ndim, shape, out->strides);
  out->t.data = (char *)base->t.data + base->t.byte_offset + element_offset * core_dtype_size(dtype);
  out->t.device = base->t.device;
  out->t.ndim = ndim;
  out->t.dtype = core_dtype_to_dlpack(dtype);
  out->t.shape = out->shape;
  out->t.strides = out->strides;
}

/* Calls fn on the element index of every index tuple, in row-major order of the tuples. */
static void core_for_each_element(const host_tensor *t, void (*fn)(void *state, int64_t index),
                                  void *state) {
  int ndim = t->t.ndim;
  int64_t shape[4] = {1, 1, 1, 1}, stride[4] = {0, 0, 0, 0};
  for (int i = 0; i < ndim; i++) {
    shape[4 - ndim + i] = t->t.shape[i];
    stride[4 - ndim + i] = t->t.strides != NULL ? t->t.strides[i] : t->strides[i];
  }
  for (int64_t a = 0; a < shape[0]; a++)
    for (int64_t b = 0; b < shape[1]; b++)
      for (int64_t c = 0; c < shape[2]; c++)
        for (int64_t d = 0; d < shape[3]; d++)
          fn(state, a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3]);
}

typedef struct core_fill_state {
  char *data;
  dtype_id dtype;
  uint64_t state;
} core_fill_state;

static uint64_t core_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* 24 random bits give every value exactly representable in fp32, uniform on [-1, 1). */
static float core_random_unit(uint64_t *state) { return (float)(core_splitmix64(state) >> 40) * 0x1p-23f - 1.0f; }

static void core_fill_one(void *state, int64_t index) {
  core_fill_state *s = state;
  core_store_from_f32(s->data, s->dtype, index, core_random_unit(&s->state));
}

static int core_host_dtype(const host_tensor *t, dtype_id *dtype) {
  return t != NULL && t->t.data != NULL && core_kv_dtype_from_dlpack(t->t.dtype, dtype);
}

/* Tensors of at least this many elements, row-major, are filled by several threads, each chunk of
 * CORE_FILL_CHUNK elements from its own stream (seed and chunk number), so the values depend on the
 * seed alone, not on the thread count. The benchmark grids fill 100 million elements a point; the
 * tests' tensors stay far below and keep their one stream. */
#define CORE_FILL_PARALLEL (1LL << 24)
#define CORE_FILL_CHUNK (1LL << 20)
#define CORE_FILL_MAX_THREADS 16

typedef struct core_fill_job {
  char *data;
  dtype_id dtype;
  int64_t count;
  uint64_t seed;
  int64_t first_chunk, chunk_step;
} core_fill_job;

static void *core_fill_chunks(void *argument) {
  core_fill_job *job = argument;
  for (int64_t chunk = job->first_chunk; chunk * CORE_FILL_CHUNK < job->count; chunk += job->chunk_step) {
    uint64_t state = job->seed ^ ((uint64_t)(chunk + 1) * 0xd1b54a32d192ed03ULL);
    int64_t end = (chunk + 1) * CORE_FILL_CHUNK < job->count ? (chunk + 1) * CORE_FILL_CHUNK : job->count;
    for (int64_t i = chunk * CORE_FILL_CHUNK; i < end; i++)
      core_store_from_f32(job->data, job->dtype, i, core_random_unit(&state));
  }
  return NULL;
}

/* The element count of a tensor whose strides are row-major (elements data[0 .. count)), else -1. */
static int64_t core_row_major_count(const host_tensor *t) {
  int64_t expected = 1;
  for (int i = t->t.ndim - 1; i >= 0; i--) {
    int64_t stride = t->t.strides != NULL ? t->t.strides[i] : t->strides[i];
    if (t->t.shape[i] != 1 && stride != expected) return -1;
    expected *= t->t.shape[i];
  }
  return expected;
}

void host_tensor_fill_random(host_tensor *t, uint64_t seed) {
  core_fill_state s;
  if (!core_host_dtype(t, &s.dtype)) return;
  s.data = (char *)t->t.data + t->t.byte_offset;
  s.state = seed;
  int64_t count = core_row_major_count(t);
  if (count < CORE_FILL_PARALLEL) {
    core_for_each_element(t, core_fill_one, &s);
    return;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = cores < 1 ? 1 : cores > CORE_FILL_MAX_THREADS ? CORE_FILL_MAX_THREADS : (int)cores;
  core_fill_job jobs[CORE_FILL_MAX_THREADS];
  pthread_t ids[CORE_FILL_MAX_THREADS];
  int started[CORE_FILL_MAX_THREADS] = {0};
  for (int i = 0; i < threads; i++) {
    jobs[i] = (core_fill_job){s.data, s.dtype, count, seed, i, threads};
    started[i] = i > 0 && pthread_create(&ids[i], NULL, core_fill_chunks, &jobs[i]) == 0;
  }
  /* This thread takes the first share, and any share whose thread did not start. */
  for (int i = 0; i < threads; i++)
    if (!started[i]) core_fill_chunks(&jobs[i]);
  for (int i = 1; i < threads; i++)
    if (started[i]) pthread_join(ids[i], NULL);
}

typedef struct core_poison_state {
  char *data;
  int elem;
} core_poison_state;

static void core_poison_one(void *state, int64_t index) {
  core_poison_state *s = state;
  memset(s->data + index * s->elem, 0xff, (size_t)s->elem);
}

void host_tensor_poison(host_tensor *t) {
  if (t == NULL) return;
  if (t->allocation != NULL) {
    /* All ones is a NaN in fp32, fp16 and bf16 alike. */
    memset(t->allocation, 0xff, t->allocation_bytes);
    return;
  }
  /* A view owns no allocation: poison only what it reaches, leaving its neighbours alone. */
  core_poison_state s;
  dtype_id dtype;
  if (!core_host_dtype(t, &dtype)) return;
  s.data = (char *)t->t.data + t->t.byte_offset;
  s.elem = core_dtype_size(dtype);
  core_for_each_element(t, core_poison_one, &s);
}

void host_tensor_free(host_tensor *t) {
  if (t == NULL) return;
  free(t->allocation);
  memset(t, 0, sizeof *t);
}
