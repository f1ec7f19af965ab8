/* fake_cuda_state.h: what the fake driver (fake_libcuda.c) records, read by test_cuda_driver.c through
 * dlsym("fake_cuda_state") on the library the backend loaded. Counters only grow. */
#ifndef FJ_FAKE_CUDA_STATE_H
#define FJ_FAKE_CUDA_STATE_H
#include <stdatomic.h>
#include "kernels/attention_fwd_gpu_abi.h"

/* Bytes of the parameter block a recorded launch copies. */
#define FAKE_CUDA_PARAM_BYTES sizeof(gpu_attention_params)

typedef struct fake_cuda_counters {
  atomic_int primary_retains, primary_releases;
  atomic_int pushes, pops;
  atomic_int link_creates, link_completes, link_destroys;
  atomic_int module_loads, module_unloads;
  atomic_int func_set_attributes, last_set_attribute_value;
  atomic_int launches;
  atomic_int allocs, frees;
  atomic_int stream_syncs, context_syncs, event_syncs;
  atomic_int events_created, events_destroyed;
  /* the last launch */
  unsigned int last_grid[3], last_block[3], last_shared;
  void *last_stream;
  char last_function[128];
  unsigned char last_params[FAKE_CUDA_PARAM_BYTES];
  /* cuThreadExchangeStreamCaptureMode calls; unsafe calls refused while FAKE_CUDA_CAPTURING (after the
   * head that tests/python_api.py mirrors) */
  atomic_int capture_mode_exchanges, capture_refusals;
} fake_cuda_counters;

typedef fake_cuda_counters *(*fake_cuda_state_fn)(void);
typedef void *(*fake_cuda_make_context_fn)(int device);
typedef int (*fake_cuda_context_depth_fn)(void);
/* The calling thread's capture mode (0 global, 2 relaxed), which a call must leave as it found it. */
typedef int (*fake_cuda_capture_mode_fn)(void);
/* The fake's own entry points the test calls to play a caller that made a context current. */
typedef int (*fake_cuda_push_fn)(void *context);
typedef int (*fake_cuda_pop_fn)(void **context);
#endif
