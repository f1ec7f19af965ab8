/* fake_libcuda.c: a stand-in for libcuda.so.1 so that CI, which has no GPU, runs the CUDA backend's
 * host paths (loading, discovery, contexts, linking, module loads, launches, memory, events, error
 * reporting). Its "device" is the host: device pointers are host pointers, a link returns its input
 * bytes as the "cubin", a module remembers that text and finds a function when the text names it, and
 * a launch only records what it was given. Tests steer it through the environment, read at every
 * call: FAKE_CUDA_DEVICES (default 1), FAKE_CUDA_CC (default 90), FAKE_CUDA_INIT_RESULT (cuInit's
 * answer), FAKE_CUDA_FAIL="cuLaunchKernel:701,cuModuleLoadData:200" (those calls fail with those
 * codes). Built twice: once whole, once without cuLaunchKernel (FAKE_CUDA_OMIT_LAUNCH) for the
 * missing-symbol test. fake_cuda_state() hands the test the counters. Only the tests load it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_cuda/fake_cuda_state.h"

/* The driver API's types as the backend declares them (ABI-identical: ints and opaque pointers). */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct fake_context *CUcontext;
typedef struct fake_module *CUmodule;
typedef struct fake_function *CUfunction;
typedef void *CUstream;
typedef struct fake_event *CUevent;
typedef struct fake_link *CUlinkState;

enum {
  OK = 0,
  ERR_INVALID_VALUE = 1,
  ERR_NOT_INITIALIZED = 3,
  ERR_INVALID_DEVICE = 101,
  ERR_INVALID_CONTEXT = 201,
  ERR_INVALID_HANDLE = 400,
  ERR_NOT_FOUND = 500,
};

#define FAKE_MAX_DEVICES 8
#define FAKE_STACK 32

struct fake_context {
  int device;
  int primary;
};
struct fake_module {
  struct fake_context *context;
  char *image;
};
struct fake_function {
  struct fake_function *next;
  struct fake_module *module;
  char name[128];
  int max_dynamic_shared;
};
struct fake_event {
  double at_ms;
  int recorded;
};
struct fake_link {
  struct fake_context *context;
  char *error_log;
  size_t error_log_size;
  char *data;
  size_t size;
};

static fake_cuda_counters counters;
static struct fake_context primary_contexts[FAKE_MAX_DEVICES];
static int initialized;
static pthread_mutex_t functions_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local struct fake_context *context_stack[FAKE_STACK];
static _Thread_local int context_depth;

fake_cuda_counters *fake_cuda_state(void) { return &counters; }

/* A context that is not the primary one, as a caller's own cuCtxCreate would give. */
CUcontext fake_cuda_make_context(int device) {
  struct fake_context *c = calloc(1, sizeof *c);
  if (c != NULL) c->device = device;
  return c;
}

int fake_cuda_context_depth(void) { return context_depth; }

static int env_int(const char *name, int fallback) {
  const char *v = getenv(name);
  return (v != NULL && v[0] != '\0') ? atoi(v) : fallback;
}

/* The code FAKE_CUDA_FAIL names for this entry point, else 0. */
static CUresult injected(const char *symbol) {
  const char *spec = getenv("FAKE_CUDA_FAIL");
  if (spec == NULL) return OK;
  size_t n = strlen(symbol);
  for (const char *p = spec; (p = strstr(p, symbol)) != NULL; p += n) {
    int starts = p == spec || p[-1] == ',';
    if (starts && p[n] == ':') return atoi(p + n + 1);
  }
  return OK;
}

static struct fake_context *current(void) {
  return context_depth > 0 ? context_stack[context_depth - 1] : NULL;
}

#define FAIL_IF_INJECTED(symbol)        \
  do {                                  \
    CUresult r_ = injected(#symbol);    \
    if (r_ != OK) return r_;            \
  } while (0)
/* A CUDA graph capture in progress in this process (FAKE_CUDA_CAPTURING=1, the default global mode): as
 * the driver does, a "potentially unsafe" call, one that is not stream work (the primary context,
 * linking, modules, function attributes, memory, synchronization), fails with
 * CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED unless the calling thread relaxed its capture mode first. */
static _Thread_local int thread_capture_mode;  /* 0 global, 1 thread-local, 2 relaxed */
int fake_cuda_capture_mode(void) { return thread_capture_mode; }

CUresult cuThreadExchangeStreamCaptureMode(int *mode) {
  if (mode == NULL || *mode < 0 || *mode > 2) return ERR_INVALID_VALUE;
  int previous = thread_capture_mode;
  thread_capture_mode = *mode;
  *mode = previous;
  atomic_fetch_add(&counters.capture_mode_exchanges, 1);
  return OK;
}

#define UNSAFE_WHILE_CAPTURING()                                                    \
  do {                                                                              \
    if (env_int("FAKE_CUDA_CAPTURING", 0) && thread_capture_mode != 2) {            \
      atomic_fetch_add(&counters.capture_refusals, 1);                              \
      return 900;                                                                   \
    }                                                                               \
  } while (0)
#define NEED_INIT()                              \
  do {                                           \
    if (!initialized) return ERR_NOT_INITIALIZED; \
  } while (0)

CUresult cuInit(unsigned int flags) {
  int result = env_int("FAKE_CUDA_INIT_RESULT", 0);
  if (result != 0) return result;
  if (flags != 0) return ERR_INVALID_VALUE;
  initialized = 1;
  return OK;
}

CUresult cuDriverGetVersion(int *version) {
  *version = 13000;
  return OK;
}

static const struct {
  int code;
  const char *name, *text;
} error_table[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

CUresult cuGetErrorName(CUresult error, const char **name) {
  for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
    if (error_table[i].code == error) {
      *name = error_table[i].name;
      return OK;
    }
  *name = NULL;
  return ERR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char **text) {
  for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
    if (error_table[i].code == error) {
      *text = error_table[i].text;
      return OK;
    }
  *text = NULL;
  return ERR_INVALID_VALUE;
}

static int device_count(void) {
  int n = env_int("FAKE_CUDA_DEVICES", 1);
  return n < 0 ? 0 : (n > FAKE_MAX_DEVICES ? FAKE_MAX_DEVICES : n);
}

CUresult cuDeviceGetCount(int *count) {
  NEED_INIT();
  *count = device_count();
  return OK;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  NEED_INIT();
  if (ordinal < 0 || ordinal >= device_count()) return ERR_INVALID_DEVICE;
  *device = ordinal;
  return OK;
}

CUresult cuDeviceGetName(char *name, int length, CUdevice device) {
  NEED_INIT();
  FAIL_IF_INJECTED(cuDeviceGetName);
  snprintf(name, (size_t)length, "Fake GPU %d", device);
  return OK;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device) {
  NEED_INIT();
  int cc = env_int("FAKE_CUDA_CC", 90);
  switch (attribute) {
    case 1: *value = 1024; return OK;                 /* max threads per block */
    case 8: *value = 48 * 1024; return OK;            /* shared per block */
    case 13: *value = 1755000; return OK;             /* clock, kHz */
    case 16: *value = 132 + device; return OK;        /* SMs */
    case 36: *value = 2619000; return OK;             /* memory clock, kHz */
    case 37: *value = 5120; return OK;                /* bus width */
    case 75: *value = cc / 10; return OK;
    case 76: *value = cc % 10; return OK;
    case 97: *value = 227 * 1024; return OK;          /* opt-in shared per block */
    default: return ERR_INVALID_VALUE;
  }
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice device) {
  NEED_INIT();
  *bytes = (size_t)80 << 30;
  return OK;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device) {
  UNSAFE_WHILE_CAPTURING();
  NEED_INIT();
  FAIL_IF_INJECTED(cuDevicePrimaryCtxRetain);
  if (device < 0 || device >= device_count()) return ERR_INVALID_DEVICE;
  primary_contexts[device].device = device;
  primary_contexts[device].primary = 1;
  *context = &primary_contexts[device];
  atomic_fetch_add(&counters.primary_retains, 1);
  return OK;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  UNSAFE_WHILE_CAPTURING();
  atomic_fetch_add(&counters.primary_releases, 1);
  return OK;
}

CUresult cuCtxGetCurrent(CUcontext *context) {
  NEED_INIT();
  *context = current();
  return OK;
}

CUresult cuCtxGetDevice(CUdevice *device) {
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  *device = current()->device;
  return OK;
}

CUresult cuCtxPushCurrent_v2(CUcontext context) {
  if (context == NULL || context_depth == FAKE_STACK) return ERR_INVALID_VALUE;
  context_stack[context_depth++] = context;
  atomic_fetch_add(&counters.pushes, 1);
  return OK;
}

CUresult cuCtxPopCurrent_v2(CUcontext *context) {
  if (context_depth == 0) return ERR_INVALID_CONTEXT;
  struct fake_context *c = context_stack[--context_depth];
  if (context != NULL) *context = c;
  atomic_fetch_add(&counters.pops, 1);
  return OK;
}

CUresult cuLinkCreate_v2(unsigned int num_options, int *options, void **values, CUlinkState *state) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuLinkCreate_v2);
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  struct fake_link *link = calloc(1, sizeof *link);
  if (link == NULL) return 2;
  link->context = current();
  for (unsigned int i = 0; i < num_options; i++) {
    if (options[i] == 5) link->error_log = values[i];
    if (options[i] == 6) link->error_log_size = (size_t)(uintptr_t)values[i];
  }
  *state = link;
  atomic_fetch_add(&counters.link_creates, 1);
  return OK;
}

CUresult cuLinkAddData_v2(CUlinkState state, int type, void *data, size_t size, const char *name,
                          unsigned int num_options, int *options, void **values) {
  UNSAFE_WHILE_CAPTURING();
  CUresult r = injected("cuLinkAddData_v2");
  if (r != OK) {
    if (state->error_log != NULL && state->error_log_size > 0)
      snprintf(state->error_log, state->error_log_size,
               "ptxas application ptx input, line 7; error   : fake syntax error in %s\n"
               "ptxas fatal   : Ptx assembly aborted due to errors\n",
               name ? name : "?");
    return r;
  }
  if (type != 1 || data == NULL || size == 0) return ERR_INVALID_VALUE;
  /* The driver reads PTX as a C string: the backend must hand over the terminator. */
  if (((const char *)data)[size - 1] != '\0') return 218;
  char *copy = realloc(state->data, state->size + size);
  if (copy == NULL) return 2;
  memcpy(copy + state->size, data, size);
  state->data = copy;
  state->size += size;
  return OK;
}

CUresult cuLinkComplete(CUlinkState state, void **cubin, size_t *size) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuLinkComplete);
  if (state->data == NULL) return ERR_INVALID_VALUE;
  *cubin = state->data;
  *size = state->size;
  atomic_fetch_add(&counters.link_completes, 1);
  return OK;
}

CUresult cuLinkDestroy(CUlinkState state) {
  free(state->data);
  free(state);
  atomic_fetch_add(&counters.link_destroys, 1);
  return OK;
}

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuModuleLoadData);
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  struct fake_module *m = calloc(1, sizeof *m);
  if (m == NULL) return 2;
  m->context = current();
  m->image = strdup(image);
  *module = m;
  atomic_fetch_add(&counters.module_loads, 1);
  return OK;
}

static struct fake_function *all_functions;

CUresult cuModuleUnload(CUmodule module) {
  UNSAFE_WHILE_CAPTURING();
  if (module == NULL) return ERR_INVALID_HANDLE;
  pthread_mutex_lock(&functions_lock);
  struct fake_function **link = &all_functions;
  while (*link != NULL) {
    if ((*link)->module == module) {
      struct fake_function *dead = *link;
      *link = dead->next;
      free(dead);
    } else {
      link = &(*link)->next;
    }
  }
  pthread_mutex_unlock(&functions_lock);
  free(module->image);
  free(module);
  atomic_fetch_add(&counters.module_unloads, 1);
  return OK;
}

CUresult cuModuleGetFunction(CUfunction *function, CUmodule module, const char *name) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuModuleGetFunction);
  if (module == NULL) return ERR_INVALID_HANDLE;
  if (strstr(module->image, name) == NULL) return ERR_NOT_FOUND;
  struct fake_function *f = calloc(1, sizeof *f);
  if (f == NULL) return 2;
  f->module = module;
  snprintf(f->name, sizeof f->name, "%s", name);
  f->max_dynamic_shared = 48 * 1024;
  pthread_mutex_lock(&functions_lock);
  f->next = all_functions;
  all_functions = f;
  pthread_mutex_unlock(&functions_lock);
  *function = f;
  return OK;
}

CUresult cuFuncGetAttribute(int *value, int attribute, CUfunction f) {
  if (attribute == 1) {
    *value = 0;
    return OK;
  }
  if (attribute == 8) {
    *value = f->max_dynamic_shared;
    return OK;
  }
  return ERR_INVALID_VALUE;
}

CUresult cuFuncSetAttribute(CUfunction f, int attribute, int value) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuFuncSetAttribute);
  if (attribute != 8 || value < 0 || value > 227 * 1024) return ERR_INVALID_VALUE;
  f->max_dynamic_shared = value;
  atomic_fetch_add(&counters.func_set_attributes, 1);
  atomic_store(&counters.last_set_attribute_value, value);
  return OK;
}

#ifndef FAKE_CUDA_OMIT_LAUNCH
CUresult cuLaunchKernel(CUfunction f, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,
                        unsigned int block_x, unsigned int block_y, unsigned int block_z,
                        unsigned int shared_bytes, CUstream stream, void **params, void **extra) {
  FAIL_IF_INJECTED(cuLaunchKernel);
  if (f == NULL) return ERR_INVALID_HANDLE;
  /* As on a real device, a function runs only in the context its module was loaded into. */
  if (current() == NULL || current() != f->module->context) return ERR_INVALID_CONTEXT;
  if ((int)shared_bytes > f->max_dynamic_shared) return ERR_INVALID_VALUE;
  if (params == NULL || params[0] == NULL || extra != NULL) return ERR_INVALID_VALUE;
  pthread_mutex_lock(&functions_lock);
  counters.last_grid[0] = grid_x;
  counters.last_grid[1] = grid_y;
  counters.last_grid[2] = grid_z;
  counters.last_block[0] = block_x;
  counters.last_block[1] = block_y;
  counters.last_block[2] = block_z;
  counters.last_shared = shared_bytes;
  counters.last_stream = stream;
  snprintf(counters.last_function, sizeof counters.last_function, "%s", f->name);
  /* The kernels here take one parameter block of FAKE_CUDA_PARAM_BYTES; the test checks its bytes. The
   * backend's peak and merge kernels take smaller ones, which a driver reads by the kernel's own
   * declaration: their bytes are not copied. */
  if (strncmp(f->name, "fj_cuda_peak_", 13) != 0 && strncmp(f->name, "fj_attention_merge_", 19) != 0)
    memcpy(counters.last_params, params[0], FAKE_CUDA_PARAM_BYTES);
  pthread_mutex_unlock(&functions_lock);
  atomic_fetch_add(&counters.launches, 1);
  return OK;
}
#endif

CUresult cuMemAlloc_v2(CUdeviceptr *pointer, size_t bytes) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuMemAlloc_v2);
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  if (bytes == 0) return ERR_INVALID_VALUE;
  void *p = malloc(bytes);
  if (p == NULL) return 2;
  *pointer = (CUdeviceptr)(uintptr_t)p;
  atomic_fetch_add(&counters.allocs, 1);
  return OK;
}

CUresult cuMemFree_v2(CUdeviceptr pointer) {
  UNSAFE_WHILE_CAPTURING();
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  free((void *)(uintptr_t)pointer);
  atomic_fetch_add(&counters.frees, 1);
  return OK;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuMemcpyHtoD_v2);
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  memcpy((void *)(uintptr_t)dst, src, bytes);
  return OK;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuMemcpyDtoH_v2);
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  memcpy(dst, (const void *)(uintptr_t)src, bytes);
  return OK;
}

CUresult cuStreamSynchronize(CUstream stream) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuStreamSynchronize);
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  atomic_fetch_add(&counters.stream_syncs, 1);
  return OK;
}

/* A stream is only a distinct handle here: launches record it, nothing runs on it. */
CUresult cuStreamCreate(CUstream *stream, unsigned int flags) {
  if (current() == NULL) return ERR_INVALID_CONTEXT;
  *stream = malloc(1);
  return *stream != NULL ? OK : 2;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
  free(stream);
  return OK;
}

/* Present so that a backend calling it would be counted as synchronizing the device. */
CUresult cuCtxSynchronize(void) {
  UNSAFE_WHILE_CAPTURING();
  atomic_fetch_add(&counters.context_syncs, 1);
  return OK;
}

CUresult cuEventCreate(CUevent *event, unsigned int flags) {
  FAIL_IF_INJECTED(cuEventCreate);
  struct fake_event *e = calloc(1, sizeof *e);
  if (e == NULL) return 2;
  *event = e;
  atomic_fetch_add(&counters.events_created, 1);
  return OK;
}

/* Each record is 1.25 ms after the previous one, so an interval is a known non-zero number. */
static atomic_int event_clock;

CUresult cuEventRecord(CUevent event, CUstream stream) {
  FAIL_IF_INJECTED(cuEventRecord);
  event->at_ms = 1.25 * (double)atomic_fetch_add(&event_clock, 1);
  event->recorded = 1;
  return OK;
}

CUresult cuEventSynchronize(CUevent event) {
  UNSAFE_WHILE_CAPTURING();
  FAIL_IF_INJECTED(cuEventSynchronize);
  atomic_fetch_add(&counters.event_syncs, 1);
  return event->recorded ? OK : ERR_INVALID_HANDLE;
}

CUresult cuEventElapsedTime_v2(float *milliseconds, CUevent start, CUevent end) {
  if (!start->recorded || !end->recorded) return ERR_INVALID_HANDLE;
  *milliseconds = (float)(end->at_ms - start->at_ms);
  return OK;
}

CUresult cuEventDestroy_v2(CUevent event) {
  free(event);
  atomic_fetch_add(&counters.events_destroyed, 1);
  return OK;
}
