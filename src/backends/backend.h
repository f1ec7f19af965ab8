/* backend.h: the table every device backend fills (cpu and cuda now; hip and NPUs later), in the style of
 * SQLite's sqlite3_io_methods: api_version first, optional slots marked with their default. Adding a
 * vendor means one folder under src/backends/ and one line in registry.c. */
#ifndef FJ_BACKEND_H
#define FJ_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#include "flashjit.h"
#include "jit/jit.h"

#define FJ_BACKEND_API_VERSION 1

typedef struct backend_device_info {
  char name[128];           /* "AMD EPYC 9B45" */
  char arch[64];            /* LLVM cpu name / "sm_90a" */
  int compute_units;        /* cores / SMs */
  uint64_t memory_bytes;
  char driver_version[64];  /* "" for the CPU */
  char fingerprint[512];    /* everything that makes a tuning result transferable: backend, name,
                               arch, units, features hash, driver */
} backend_device_info;

/* A device's peak rates as its backend measured them (device_peak): what a kernel's rate is read against. */
typedef struct backend_peak {
  double matrix_tflops;   /* its matrix instruction's dense rate; 0: not measured (matrix_note says why) */
  char matrix_note[256];  /* how it was measured, or why not */
  double copy_gbps;       /* a device-memory copy, bytes read + written; 0: not measured */
  char copy_note[256];
} backend_peak;

typedef struct backend_device backend_device;  /* an opened device: the backend's own state */

/* One launch of a generated kernel. */
typedef struct backend_launch {
  int64_t jobs;          /* CPU work items / GPU blocks (a 1-D grid) */
  int block_threads;     /* GPU threads per block (the family's block_threads); CPU: 1 */
  size_t scratch_bytes;  /* CPU: per-thread scratch; GPU: dynamic shared memory per block */
  const void *params;    /* the kernel's parameter block */
  size_t params_size;
} backend_launch;

typedef struct fj_backend {
  int api_version;            /* FJ_BACKEND_API_VERSION */
  const char *name;           /* "cpu", "cuda", "hip" */
  const char *binary_kind;    /* the disk cache's file kind for compiled kernels: "o", "cubin" */
  int device_type;            /* the DLDeviceType of tensors it takes (kDLCPU, kDLCUDA, ...) */

  /* Finds devices (dlopen the driver, ...), once; a missing driver is 0 devices and a reason. */
  int (*device_count)(void);
  /* (optional, NULL: "") Why there are no devices ("libcuda.so.1: not found"). */
  const char *(*unavailable_reason)(void);
  fj_status (*device_info)(int index, backend_device_info *out);
  /* (optional, NULL: 0) Preference for "auto": the highest score wins. */
  int (*device_score)(int index);
  /* The target kernels are generated for on this device. */
  fj_status (*codegen_target)(int index, jit_target *out);

  /* Opens device index for a context (threads for the CPU; a CUDA context for GPUs). */
  fj_status (*device_open)(int index, int num_threads, backend_device **out);
  void (*device_close)(backend_device *device);  /* NULL-safe */

  /* Loads a compiled binary (what binary_kind names); *module is the backend's handle. */
  fj_status (*module_load)(backend_device *device, const void *binary, size_t size, const char *name,
                           void **module);
  fj_status (*module_function)(void *module, const char *function_name, void **function);
  void (*module_unload)(void *module);  /* NULL-safe */

  /* Runs a kernel: launch->jobs independent work items (CPU: spread over the threads, each given
   * launch->scratch_bytes of 64-byte aligned per-thread scratch; GPU: a 1-D grid of launch->jobs
   * blocks of launch->block_threads threads with launch->scratch_bytes of dynamic shared memory).
   * launch->params is the kernel's parameter block (the CPU passes its address; a GPU passes it by
   * value as the kernel's one parameter). Returns when the work is done (CPU) or enqueued on stream
   * (GPU; NULL = the default stream); never synchronizes a GPU. */
  fj_status (*launch)(backend_device *device, void *function, const backend_launch *launch,
                      void *stream);

  /* (optional, NULL: the emitted code is the binary) Turns what jit_compile_module emitted (PTX)
   * into what module_load takes (a cubin through the driver's linker); *out malloc'd. This runs once
   * per kernel: the disk cache stores its result. */
  fj_status (*binary_finalize)(backend_device *device, const void *emitted, size_t size,
                               const char *name, jit_buffer *out);

  /* Device memory, for the command, the tuner and the tests (never in a call's hot path).
   * (optional, NULL: host memory, malloc/free/memcpy: the CPU) */
  fj_status (*memory_alloc)(backend_device *device, size_t bytes, void **out);
  void (*memory_free)(backend_device *device, void *pointer);  /* NULL-safe */
  fj_status (*copy_to_device)(backend_device *device, void *dst, const void *src, size_t bytes);
  fj_status (*copy_to_host)(backend_device *device, void *dst, const void *src, size_t bytes);
  /* (optional, NULL: nothing to wait for) Waits for the work enqueued on stream. */
  fj_status (*synchronize)(backend_device *device, void *stream);
  /* (optional, NULL: wall clock around a synchronous launch) Device-side timing: start records an
   * event on stream, stop records a second one, waits for it and returns the milliseconds between. */
  fj_status (*timer_start)(backend_device *device, void *stream, void **timer);
  fj_status (*timer_stop)(backend_device *device, void *timer, double *milliseconds);  /* frees it */
  /* (optional, NULL: "cpu-wall") How this backend's timings are taken ("cuda-event"): tuning results
   * are reused only under the method they were measured with. */
  const char *timing_method;
  /* (optional, NULL: none) Measures device index's peak rates with microkernels of the backend's own (a
   * second or so); FJ_OK when it could try, each figure then set or its note saying why not. */
  fj_status (*device_peak)(int index, backend_peak *out);
} fj_backend;

/* ---- registry (registry.c) ---- */
int backend_count(void);
const fj_backend *backend_get(int index);
const fj_backend *backend_find(const char *name);  /* NULL when no backend has that name */
/* Resolves "auto" / "cpu" / "cuda:1" / NULL (FLASHJIT_DEVICE, else auto) to a backend and device
 * index; FJ_NO_DEVICE naming the devices found when it matches none, FJ_INVALID_ARGUMENT when the
 * string is malformed. */
fj_status backend_select(const char *device, const fj_backend **backend, int *index);

/* ---- the backends ---- */
extern const fj_backend cpu_backend;   /* cpu/ */
extern const fj_backend cuda_backend;  /* cuda/: NVIDIA through libcuda.so.1, opened with dlopen */
#endif
