/* cuda_backend.c: NVIDIA GPUs as flashjit devices, through the driver API loaded by cuda_driver.c. It
 * is built to live inside someone else's process (PyTorch, an inference engine): it works in the
 * context already current on the calling thread when that context is on our device, else in the
 * device's primary context (the one the CUDA runtime and PyTorch use, so their pointers are valid
 * here), makes it current only for the length of each call and restores what the caller had, launches
 * on the caller's stream, and never synchronizes or allocates in a launch. PTX from LLVM becomes a
 * cubin through the driver's linker once (binary_finalize); the runtime stores that cubin on disk. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/cuda/cuda_driver.h"
#include "backends/cuda/cuda_peak.h"
#include "core/error.h"
#include "core/log.h"

/* The dynamic shared memory a function may use without opting in (CUDA's 48 KiB rule). */
#define CUDA_DEFAULT_DYNAMIC_SHARED (48 * 1024)
/* Linker logs: enough for every line ptxas prints for one kernel; a longer log is cut. */
#define CUDA_LINK_LOG_BYTES 8192

/* What is learned about each device once; it never changes while the process runs. */
typedef struct cuda_device_static {
  fj_status status;    /* FJ_OK when every attribute below was read */
  char error[256];
  CUdevice handle;
  backend_device_info info;
  int major, minor;
  int max_threads_per_block;
  int max_shared_optin;  /* the most dynamic + static shared memory a block may opt in to */
} cuda_device_static;

struct backend_device {
  const cuda_driver *driver;
  const cuda_device_static *about;
  int index;
  CUcontext context;
  int owns_primary;  /* 1: we retained the primary context and release it at close */
};

/* A loaded module and the functions handed out from it (freed with it). */
typedef struct cuda_function cuda_function;
typedef struct cuda_module {
  backend_device *device;
  CUmodule module;
  pthread_mutex_t lock;  /* guards functions */
  cuda_function *functions;
} cuda_module;

struct cuda_function {
  cuda_function *next;
  cuda_module *owner;
  CUfunction function;
  int static_shared;   /* CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES */
  /* The function's current CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES; raised (under lock, the
   * rare path) by a launch that needs more, never lowered, so concurrent launches of sizes below it
   * need no driver call. */
  atomic_int dynamic_shared_limit;
  pthread_mutex_t lock;
};

typedef struct cuda_timer {
  backend_device *device;
  CUstream stream;
  CUevent start, stop;
} cuda_timer;

/* ---- discovery ---- */

static pthread_once_t cuda_discover_once = PTHREAD_ONCE_INIT;
static cuda_device_static *cuda_devices;  /* [driver->device_count], never freed */
static int cuda_discovered_count;
static char cuda_discover_error[256];

static fj_status cuda_read_attribute(const cuda_driver *d, CUdevice device, CUdevice_attribute which,
                                     const char *name, int *value) {
  CUresult r = d->cuDeviceGetAttribute(value, which, device);
  if (r != CUDA_SUCCESS) {
    char what[96];
    snprintf(what, sizeof what, "cuDeviceGetAttribute(%s)", name);
    return cuda_fail(d, r, what);
  }
  return FJ_OK;
}

/* "13.0" from 13000. */
static void cuda_version_text(int version, char *buffer, size_t size) {
  if (version <= 0)
    snprintf(buffer, size, "unknown");
  else
    snprintf(buffer, size, "%d.%d", version / 1000, (version % 1000) / 10);
}

/* Hopper's wgmma and setmaxnreg exist only under the arch-specific target sm_90a, and code built for it
 * runs on cc 9.0 alone, which is exactly the device at hand; other arches have nothing the generator
 * uses behind an "a" target. */
static void cuda_arch_name(int major, int minor, char *buffer, size_t size) {
  snprintf(buffer, size, "sm_%d%d%s", major, minor, (major == 9 && minor == 0) ? "a" : "");
}

static fj_status cuda_describe(const cuda_driver *d, int index, cuda_device_static *out) {
  CUresult r = d->cuDeviceGet(&out->handle, index);
  if (r != CUDA_SUCCESS) return cuda_fail(d, r, "cuDeviceGet");
  backend_device_info *info = &out->info;
  memset(info, 0, sizeof *info);
  r = d->cuDeviceGetName(info->name, (int)sizeof info->name, out->handle);
  if (r != CUDA_SUCCESS) return cuda_fail(d, r, "cuDeviceGetName");
  info->name[sizeof info->name - 1] = '\0';
  fj_status s;
  int sms = 0;
  if ((s = cuda_read_attribute(d, out->handle, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                               "COMPUTE_CAPABILITY_MAJOR", &out->major)) != FJ_OK ||
      (s = cuda_read_attribute(d, out->handle, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                               "COMPUTE_CAPABILITY_MINOR", &out->minor)) != FJ_OK ||
      (s = cuda_read_attribute(d, out->handle, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                               "MULTIPROCESSOR_COUNT", &sms)) != FJ_OK ||
      (s = cuda_read_attribute(d, out->handle, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
                               "MAX_THREADS_PER_BLOCK", &out->max_threads_per_block)) != FJ_OK)
    return s;
  /* Older drivers and some virtual GPUs do not answer the opt-in query; the plain per-block limit is
   * then the truthful ceiling. */
  if (d->cuDeviceGetAttribute(&out->max_shared_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                              out->handle) != CUDA_SUCCESS ||
      out->max_shared_optin <= 0) {
    if ((s = cuda_read_attribute(d, out->handle, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK,
                                 "MAX_SHARED_MEMORY_PER_BLOCK", &out->max_shared_optin)) != FJ_OK)
      return s;
  }
  size_t memory = 0;
  r = d->cuDeviceTotalMem_v2(&memory, out->handle);
  if (r != CUDA_SUCCESS) return cuda_fail(d, r, "cuDeviceTotalMem_v2");
  /* Clocks "where readable": newer drivers may retire these attributes; they are then left out of the
   * fingerprint rather than failing discovery. */
  int clock_khz = 0, memory_clock_khz = 0, bus_bits = 0;
  if (d->cuDeviceGetAttribute(&clock_khz, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, out->handle) != CUDA_SUCCESS)
    clock_khz = 0;
  if (d->cuDeviceGetAttribute(&memory_clock_khz, CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, out->handle) !=
      CUDA_SUCCESS)
    memory_clock_khz = 0;
  if (d->cuDeviceGetAttribute(&bus_bits, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, out->handle) !=
      CUDA_SUCCESS)
    bus_bits = 0;

  cuda_arch_name(out->major, out->minor, info->arch, sizeof info->arch);
  info->compute_units = sms;
  info->memory_bytes = (uint64_t)memory;
  cuda_version_text(d->driver_version, info->driver_version, sizeof info->driver_version);
  /* Everything that makes a timing on this device transferable to another: the same model (name, cc,
   * SMs, memory size) at the same clocks under the same driver. Never the UUID or PCI address, so a
   * tuning result carries over to identical GPUs. */
  snprintf(info->fingerprint, sizeof info->fingerprint,
           "cuda|%s|%s|sms=%d|mem=%llu|driver=%d|clock_khz=%d|mem_clock_khz=%d|bus_bits=%d", info->name,
           info->arch, sms, (unsigned long long)memory, d->driver_version, clock_khz, memory_clock_khz,
           bus_bits);
  return FJ_OK;
}

static void cuda_discover(void) {
  const cuda_driver *d = cuda_driver_get(NULL);
  if (d == NULL) return;
  cuda_devices = calloc((size_t)d->device_count, sizeof *cuda_devices);
  if (cuda_devices == NULL) {
    snprintf(cuda_discover_error, sizeof cuda_discover_error, "no memory to describe %d devices",
             d->device_count);
    return;
  }
  for (int i = 0; i < d->device_count; i++) {
    cuda_device_static *dev = &cuda_devices[i];
    dev->status = cuda_describe(d, i, dev);
    if (dev->status != FJ_OK) {
      snprintf(dev->error, sizeof dev->error, "%s", fj_last_error());
      core_error_clear();
    }
  }
  cuda_discovered_count = d->device_count;
}

/* The driver and the description of device index, or an error naming what is missing. */
static fj_status cuda_lookup(int index, const cuda_driver **driver, const cuda_device_static **about) {
  const char *why = "";
  const cuda_driver *d = cuda_driver_get(&why);
  if (d == NULL) return core_error(FJ_NO_DEVICE, "cuda:%d: no CUDA devices (%s)", index, why);
  pthread_once(&cuda_discover_once, cuda_discover);
  if (cuda_devices == NULL)
    return core_error(FJ_OUT_OF_MEMORY, "cuda: %s", cuda_discover_error);
  if (index < 0 || index >= cuda_discovered_count)
    return core_error(FJ_NO_DEVICE, "cuda:%d does not exist; devices are cuda:0 to cuda:%d", index,
                      cuda_discovered_count - 1);
  const cuda_device_static *dev = &cuda_devices[index];
  if (dev->status != FJ_OK) return core_error(dev->status, "cuda:%d: %s", index, dev->error);
  if (driver != NULL) *driver = d;
  if (about != NULL) *about = dev;
  return FJ_OK;
}

static int cuda_device_count(void) {
  const cuda_driver *d = cuda_driver_get(NULL);
  return d != NULL ? d->device_count : 0;
}

static const char *cuda_unavailable_reason(void) {
  const char *why = "";
  cuda_driver_get(&why);
  return why;
}

static fj_status cuda_device_info(int index, backend_device_info *out) {
  const cuda_device_static *about = NULL;
  fj_status status = cuda_lookup(index, NULL, &about);
  if (status != FJ_OK) return status;
  *out = about->info;
  return FJ_OK;
}

/* Any GPU over the CPU's 1; among GPUs the one with more SMs, then the lower index (ties keep the
 * first), which is what "auto" should mean on a mixed machine. */
static int cuda_device_score(int index) {
  const cuda_device_static *about = NULL;
  if (cuda_lookup(index, NULL, &about) != FJ_OK) {
    core_error_clear();
    return 0;
  }
  return 1000 + about->info.compute_units;
}

static fj_status cuda_codegen_target(int index, jit_target *out) {
  const cuda_device_static *about = NULL;
  fj_status status = cuda_lookup(index, NULL, &about);
  if (status != FJ_OK) return status;
  status = jit_nvptx_target(about->info.arch, out);
  if (status != FJ_OK) core_error_prefix("cuda:%d: ", index);
  return status;
}

/* ---- the context around each call ---- */

/* Makes the device's context current unless it already is; *pushed says whether cuda_leave must pop.
 * The caller's own current context (another device's, or none) is restored by that pop. */
static fj_status cuda_enter(backend_device *device, int *pushed) {
  const cuda_driver *d = device->driver;
  *pushed = 0;
  CUcontext current = NULL;
  CUresult r = d->cuCtxGetCurrent(&current);
  if (r != CUDA_SUCCESS) return cuda_fail(d, r, "cuCtxGetCurrent");
  if (current == device->context) return FJ_OK;
  r = d->cuCtxPushCurrent_v2(device->context);
  if (r != CUDA_SUCCESS) return cuda_fail(d, r, "cuCtxPushCurrent_v2");
  *pushed = 1;
  return FJ_OK;
}

static void cuda_leave(backend_device *device, int pushed) {
  if (!pushed) return;
  CUcontext popped = NULL;
  CUresult r = device->driver->cuCtxPopCurrent_v2(&popped);
  if (r != CUDA_SUCCESS) {
    char text[256];
    core_log(LOG_WARN, "cuda: cuCtxPopCurrent_v2: %s",
             cuda_result_text(device->driver, r, text, sizeof text));
  }
}

/* Setting up (the primary context, linking, loading a module, a function's attributes) is not stream
 * work, and while a CUDA graph is being captured (an engine capturing its decode step: on this thread,
 * or on any thread in the default global mode) the driver refuses such "potentially unsafe" calls and
 * invalidates the capture. So the first call of a shape made inside a capture would break it. Around
 * the setup the thread's capture mode is relaxed, as the driver documents for code that initializes
 * lazily, and restored after; the launches themselves are never inside it. */
typedef struct cuda_setup {
  int pushed;                /* cuda_enter's */
  int relaxed;               /* the mode was exchanged: restore it */
  CUstreamCaptureMode mode;  /* the thread's mode before */
} cuda_setup;

static void cuda_relax_capture(const cuda_driver *d, cuda_setup *setup) {
  setup->relaxed = 0;
  if (d->cuThreadExchangeStreamCaptureMode == NULL) return;
  setup->mode = CU_STREAM_CAPTURE_MODE_RELAXED;
  setup->relaxed = d->cuThreadExchangeStreamCaptureMode(&setup->mode) == CUDA_SUCCESS;
}

static void cuda_restore_capture(const cuda_driver *d, cuda_setup *setup) {
  if (!setup->relaxed) return;
  CUresult r = d->cuThreadExchangeStreamCaptureMode(&setup->mode);
  if (r != CUDA_SUCCESS) {
    char text[256];
    core_log(LOG_WARN, "cuda: cuThreadExchangeStreamCaptureMode (restoring the thread's mode): %s",
             cuda_result_text(d, r, text, sizeof text));
  }
  setup->relaxed = 0;
}

/* cuda_enter, with the capture mode relaxed until cuda_setup_end. */
static fj_status cuda_setup_begin(backend_device *device, cuda_setup *setup) {
  cuda_relax_capture(device->driver, setup);
  fj_status status = cuda_enter(device, &setup->pushed);
  if (status != FJ_OK) cuda_restore_capture(device->driver, setup);
  return status;
}

static void cuda_setup_end(backend_device *device, cuda_setup *setup) {
  cuda_leave(device, setup->pushed);
  cuda_restore_capture(device->driver, setup);
}

static void cuda_device_close(backend_device *device) {
  if (device == NULL) return;
  if (device->owns_primary) {
    cuda_setup setup;
    cuda_relax_capture(device->driver, &setup);
    CUresult r = device->driver->cuDevicePrimaryCtxRelease_v2(device->about->handle);
    cuda_restore_capture(device->driver, &setup);
    if (r != CUDA_SUCCESS) {
      char text[256];
      core_log(LOG_WARN, "cuda:%d: cuDevicePrimaryCtxRelease_v2: %s", device->index,
               cuda_result_text(device->driver, r, text, sizeof text));
    }
  }
  free(device);
}

static fj_status cuda_device_open(int index, int num_threads, backend_device **out) {
  *out = NULL;
  const cuda_driver *d = NULL;
  const cuda_device_static *about = NULL;
  fj_status status = cuda_lookup(index, &d, &about);
  if (status != FJ_OK) return status;
  backend_device *device = calloc(1, sizeof *device);
  if (device == NULL) return core_error(FJ_OUT_OF_MEMORY, "cuda: no memory for a device");
  device->driver = d;
  device->about = about;
  device->index = index;

  /* The caller's current context, when it is on this device, is what their pointers and streams
   * belong to (a context they created themselves); then we borrow it and they keep it alive for as
   * long as our context exists. Otherwise the primary context, shared with the CUDA runtime. */
  CUcontext current = NULL;
  CUresult r = d->cuCtxGetCurrent(&current);
  if (r != CUDA_SUCCESS) {
    free(device);
    return cuda_fail(d, r, "cuCtxGetCurrent");
  }
  CUdevice current_device = -1;
  if (current != NULL && d->cuCtxGetDevice(&current_device) == CUDA_SUCCESS &&
      current_device == about->handle) {
    device->context = current;
    core_log(LOG_DEBUG, "cuda:%d: using the calling thread's current context", index);
  } else {
    cuda_setup setup;
    cuda_relax_capture(d, &setup);
    r = d->cuDevicePrimaryCtxRetain(&device->context, about->handle);
    cuda_restore_capture(d, &setup);
    if (r != CUDA_SUCCESS) {
      free(device);
      status = cuda_fail(d, r, "cuDevicePrimaryCtxRetain");
      core_error_prefix("cuda:%d: ", index);
      return status;
    }
    device->owns_primary = 1;
    core_log(LOG_DEBUG, "cuda:%d: using the device's primary context", index);
  }
  *out = device;
  return FJ_OK;
}

/* ---- PTX -> cubin through the driver's linker ---- */

/* Copies a linker log into a one-line message tail: the thread's message buffer is short and line
 * based output reads badly in it. */
static void cuda_flatten_log(const char *log, size_t capacity, char *out, size_t size) {
  size_t n = strnlen(log, capacity), w = 0;
  for (size_t i = 0; i < n && w + 1 < size; i++) out[w++] = (log[i] == '\n' || log[i] == '\r') ? ' ' : log[i];
  while (w > 0 && out[w - 1] == ' ') w--;
  out[w] = '\0';
}

static fj_status cuda_binary_finalize(backend_device *device, const void *emitted, size_t size,
                                      const char *name, jit_buffer *out) {
  out->data = NULL;
  out->size = 0;
  if (device == NULL || emitted == NULL || size == 0)
    return core_error(FJ_INTERNAL, "cuda: binary_finalize of %s with no PTX", name ? name : "?");
  const cuda_driver *d = device->driver;
  /* The linker reads PTX as a C string; LLVM's output is text without a guaranteed terminator. */
  char *ptx = malloc(size + 1);
  if (ptx == NULL) return core_error(FJ_OUT_OF_MEMORY, "cuda: no memory for %zu bytes of PTX", size);
  memcpy(ptx, emitted, size);
  ptx[size] = '\0';

  char info_log[CUDA_LINK_LOG_BYTES] = "", error_log[CUDA_LINK_LOG_BYTES] = "";
  CUjit_option options[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  /* The driver takes option values as void * holding either a pointer or a number. */
  void *values[] = {info_log, (void *)(uintptr_t)sizeof info_log, error_log,
                    (void *)(uintptr_t)sizeof error_log};
  unsigned int num_options = (unsigned int)(sizeof options / sizeof options[0]);

  cuda_setup setup;
  fj_status status = cuda_setup_begin(device, &setup);
  if (status != FJ_OK) {
    free(ptx);
    return status;
  }
  CUlinkState link = NULL;
  const char *step = "cuLinkCreate_v2";
  CUresult r = d->cuLinkCreate_v2(num_options, options, values, &link);
  if (r == CUDA_SUCCESS) {
    step = "cuLinkAddData_v2";
    r = d->cuLinkAddData_v2(link, CU_JIT_INPUT_PTX, ptx, size + 1, name, 0, NULL, NULL);
  }
  void *cubin = NULL;
  size_t cubin_size = 0;
  if (r == CUDA_SUCCESS) {
    step = "cuLinkComplete";
    r = d->cuLinkComplete(link, &cubin, &cubin_size);
  }
  if (r == CUDA_SUCCESS) {
    /* The cubin belongs to the link state and dies with it. */
    out->data = malloc(cubin_size ? cubin_size : 1);
    if (out->data == NULL) {
      status = core_error(FJ_OUT_OF_MEMORY, "cuda: no memory for a %zu-byte cubin", cubin_size);
    } else {
      memcpy(out->data, cubin, cubin_size);
      out->size = cubin_size;
    }
  } else {
    char what[160], flat[640];
    snprintf(what, sizeof what, "%s (PTX of %s for %s)", step, name ? name : "?", device->about->info.arch);
    status = cuda_fail(d, r, what);
    cuda_flatten_log(error_log, sizeof error_log, flat, sizeof flat);
    if (flat[0] != '\0') {
      char message[1024];
      snprintf(message, sizeof message, "%s; linker log: %s", fj_last_error(), flat);
      core_error(status, "%s", message);
    }
  }
  if (info_log[0] != '\0' && core_log_enabled(LOG_DEBUG)) {
    char flat[1024];
    cuda_flatten_log(info_log, sizeof info_log, flat, sizeof flat);
    core_log(LOG_DEBUG, "cuda: linker on %s: %s", name ? name : "?", flat);
  }
  if (link != NULL) d->cuLinkDestroy(link);
  cuda_setup_end(device, &setup);
  free(ptx);
  return status;
}

/* ---- modules ---- */

static fj_status cuda_module_load(backend_device *device, const void *binary, size_t size,
                                  const char *name, void **module) {
  *module = NULL;
  if (device == NULL || binary == NULL || size == 0)
    return core_error(FJ_INTERNAL, "cuda: module_load of %s with no binary", name ? name : "?");
  cuda_module *m = calloc(1, sizeof *m);
  if (m == NULL) return core_error(FJ_OUT_OF_MEMORY, "cuda: no memory for a module");
  if (pthread_mutex_init(&m->lock, NULL) != 0) {
    free(m);
    return core_error(FJ_INTERNAL, "cuda: pthread_mutex_init failed");
  }
  m->device = device;
  cuda_setup setup;
  fj_status status = cuda_setup_begin(device, &setup);
  if (status == FJ_OK) {
    CUresult r = device->driver->cuModuleLoadData(&m->module, binary);
    cuda_setup_end(device, &setup);
    if (r != CUDA_SUCCESS) {
      char what[160];
      snprintf(what, sizeof what, "cuModuleLoadData (%s, %zu bytes, on %s)", name ? name : "?", size,
               device->about->info.arch);
      status = cuda_fail(device->driver, r, what);
    }
  }
  if (status != FJ_OK) {
    pthread_mutex_destroy(&m->lock);
    free(m);
    return status;
  }
  *module = m;
  return FJ_OK;
}

static fj_status cuda_module_function(void *module, const char *function_name, void **function) {
  *function = NULL;
  cuda_module *m = module;
  if (m == NULL || function_name == NULL)
    return core_error(FJ_INTERNAL, "cuda: module_function with a NULL module or name");
  backend_device *device = m->device;
  const cuda_driver *d = device->driver;
  cuda_function *f = calloc(1, sizeof *f);
  if (f == NULL) return core_error(FJ_OUT_OF_MEMORY, "cuda: no memory for a function");
  if (pthread_mutex_init(&f->lock, NULL) != 0) {
    free(f);
    return core_error(FJ_INTERNAL, "cuda: pthread_mutex_init failed");
  }
  f->owner = m;
  cuda_setup setup;
  fj_status status = cuda_setup_begin(device, &setup);
  if (status == FJ_OK) {
    CUresult r = d->cuModuleGetFunction(&f->function, m->module, function_name);
    int dynamic_limit = 0;
    if (r == CUDA_SUCCESS) {
      if (d->cuFuncGetAttribute(&f->static_shared, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f->function) !=
          CUDA_SUCCESS)
        f->static_shared = 0;
      /* Without this answer, assume the documented default and raise from there when asked. */
      if (d->cuFuncGetAttribute(&dynamic_limit, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                f->function) != CUDA_SUCCESS)
        dynamic_limit = CUDA_DEFAULT_DYNAMIC_SHARED - f->static_shared;
    }
    cuda_setup_end(device, &setup);
    if (r != CUDA_SUCCESS) {
      char what[160];
      snprintf(what, sizeof what, "cuModuleGetFunction(\"%s\")", function_name);
      status = cuda_fail(d, r, what);
      if (r == CUDA_ERROR_NOT_FOUND) status = FJ_INTERNAL;  /* the generator named it otherwise */
    }
    atomic_init(&f->dynamic_shared_limit, dynamic_limit);
  }
  if (status != FJ_OK) {
    pthread_mutex_destroy(&f->lock);
    free(f);
    return status;
  }
  pthread_mutex_lock(&m->lock);
  f->next = m->functions;
  m->functions = f;
  pthread_mutex_unlock(&m->lock);
  *function = f;
  return FJ_OK;
}

static void cuda_module_unload(void *module) {
  cuda_module *m = module;
  if (m == NULL) return;
  backend_device *device = m->device;
  cuda_setup setup;
  if (cuda_setup_begin(device, &setup) == FJ_OK) {
    CUresult r = device->driver->cuModuleUnload(m->module);
    cuda_setup_end(device, &setup);
    if (r != CUDA_SUCCESS) {
      char text[256];
      core_log(LOG_WARN, "cuda: cuModuleUnload: %s", cuda_result_text(device->driver, r, text, sizeof text));
    }
  } else {
    core_log(LOG_WARN, "cuda: module not unloaded: %s", fj_last_error());
    core_error_clear();
  }
  cuda_function *f = m->functions;
  while (f != NULL) {
    cuda_function *next = f->next;
    pthread_mutex_destroy(&f->lock);
    free(f);
    f = next;
  }
  pthread_mutex_destroy(&m->lock);
  free(m);
}

/* ---- launch: checks, the rare attribute raise, one driver call; no allocation, no synchronization ---- */

/* Raises the function's dynamic shared memory limit to at least bytes. Called with the context current. */
static fj_status cuda_raise_shared_limit(cuda_function *f, int bytes) {
  const cuda_driver *d = f->owner->device->driver;
  fj_status status = FJ_OK;
  pthread_mutex_lock(&f->lock);
  if (atomic_load(&f->dynamic_shared_limit) < bytes) {
    cuda_setup setup;
    cuda_relax_capture(d, &setup);
    CUresult r = d->cuFuncSetAttribute(f->function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
    cuda_restore_capture(d, &setup);
    if (r == CUDA_SUCCESS) {
      atomic_store(&f->dynamic_shared_limit, bytes);
    } else {
      char what[128];
      snprintf(what, sizeof what, "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES=%d)", bytes);
      status = cuda_fail(d, r, what);
    }
  }
  pthread_mutex_unlock(&f->lock);
  return status;
}

static fj_status cuda_launch(backend_device *device, void *function, const backend_launch *request,
                             void *stream) {
  if (device == NULL || function == NULL || request == NULL || request->params == NULL)
    return core_error(FJ_INTERNAL, "cuda: launch with a NULL device, function or parameter block");
  cuda_function *f = function;
  const cuda_device_static *about = device->about;
  if (request->jobs <= 0) return FJ_OK;
  /* gridDim.x's limit on every sm_30+ device. */
  if (request->jobs > INT32_MAX)
    return core_error(FJ_UNSUPPORTED, "cuda: %lld blocks exceed the 1-D grid limit of %d",
                      (long long)request->jobs, INT32_MAX);
  int threads = request->block_threads > 0 ? request->block_threads : 1;
  if (threads > about->max_threads_per_block)
    return core_error(FJ_INTERNAL, "cuda: a block of %d threads exceeds %s's limit of %d", threads,
                      about->info.name, about->max_threads_per_block);
  if (request->scratch_bytes > (size_t)about->max_shared_optin ||
      (int)request->scratch_bytes + f->static_shared > about->max_shared_optin)
    return core_error(FJ_UNSUPPORTED,
                      "cuda: the kernel needs %zu bytes of dynamic shared memory (+%d static) but %s "
                      "allows %d per block",
                      request->scratch_bytes, f->static_shared, about->info.name, about->max_shared_optin);
  int shared = (int)request->scratch_bytes;

  int pushed = 0;
  fj_status status = cuda_enter(device, &pushed);
  if (status != FJ_OK) return status;
  if (shared > atomic_load_explicit(&f->dynamic_shared_limit, memory_order_acquire))
    status = cuda_raise_shared_limit(f, shared);
  if (status == FJ_OK) {
    /* The kernel's single parameter is the block itself, passed by value: kernelParams holds its
     * address, and the driver copies params_size bytes (the size the kernel declares). */
    void *args[1] = {(void *)(uintptr_t)request->params};
    CUresult r = device->driver->cuLaunchKernel(f->function, (unsigned int)request->jobs, 1, 1,
                                                (unsigned int)threads, 1, 1, (unsigned int)shared,
                                                (CUstream)stream, args, NULL);
    if (r != CUDA_SUCCESS) {
      char what[160];
      snprintf(what, sizeof what, "cuLaunchKernel(grid %lld, block %d, shared %d bytes)",
               (long long)request->jobs, threads, shared);
      status = cuda_fail(device->driver, r, what);
    }
  }
  cuda_leave(device, pushed);
  return status;
}

/* ---- memory, copies, synchronization, timing (tools, tuner and tests; never a call's hot path) ---- */

static fj_status cuda_memory_alloc(backend_device *device, size_t bytes, void **out) {
  *out = NULL;
  if (bytes == 0) return FJ_OK;
  int pushed = 0;
  fj_status status = cuda_enter(device, &pushed);
  if (status != FJ_OK) return status;
  CUdeviceptr pointer = 0;
  CUresult r = device->driver->cuMemAlloc_v2(&pointer, bytes);
  cuda_leave(device, pushed);
  if (r != CUDA_SUCCESS) {
    char what[96];
    snprintf(what, sizeof what, "cuMemAlloc_v2(%zu bytes)", bytes);
    return cuda_fail(device->driver, r, what);
  }
  *out = (void *)(uintptr_t)pointer;
  return FJ_OK;
}

static void cuda_memory_free(backend_device *device, void *pointer) {
  if (device == NULL || pointer == NULL) return;
  int pushed = 0;
  if (cuda_enter(device, &pushed) != FJ_OK) {
    core_log(LOG_WARN, "cuda: memory not freed: %s", fj_last_error());
    return;
  }
  CUresult r = device->driver->cuMemFree_v2((CUdeviceptr)(uintptr_t)pointer);
  cuda_leave(device, pushed);
  if (r != CUDA_SUCCESS) {
    char text[256];
    core_log(LOG_WARN, "cuda: cuMemFree_v2: %s", cuda_result_text(device->driver, r, text, sizeof text));
  }
}

/* Synchronous copies on the legacy default stream: they wait for earlier work there, but not for
 * work on a non-blocking stream, so a caller copying results back first synchronizes its stream. */
static fj_status cuda_copy_to_device(backend_device *device, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return FJ_OK;
  int pushed = 0;
  fj_status status = cuda_enter(device, &pushed);
  if (status != FJ_OK) return status;
  CUresult r = device->driver->cuMemcpyHtoD_v2((CUdeviceptr)(uintptr_t)dst, src, bytes);
  cuda_leave(device, pushed);
  if (r != CUDA_SUCCESS) {
    char what[96];
    snprintf(what, sizeof what, "cuMemcpyHtoD_v2(%zu bytes)", bytes);
    return cuda_fail(device->driver, r, what);
  }
  return FJ_OK;
}

static fj_status cuda_copy_to_host(backend_device *device, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return FJ_OK;
  int pushed = 0;
  fj_status status = cuda_enter(device, &pushed);
  if (status != FJ_OK) return status;
  CUresult r = device->driver->cuMemcpyDtoH_v2(dst, (CUdeviceptr)(uintptr_t)src, bytes);
  cuda_leave(device, pushed);
  if (r != CUDA_SUCCESS) {
    char what[96];
    snprintf(what, sizeof what, "cuMemcpyDtoH_v2(%zu bytes)", bytes);
    return cuda_fail(device->driver, r, what);
  }
  return FJ_OK;
}

static fj_status cuda_synchronize(backend_device *device, void *stream) {
  int pushed = 0;
  fj_status status = cuda_enter(device, &pushed);
  if (status != FJ_OK) return status;
  CUresult r = device->driver->cuStreamSynchronize((CUstream)stream);
  cuda_leave(device, pushed);
  /* An asynchronous kernel fault surfaces here first: the driver's name for it is the whole story. */
  if (r != CUDA_SUCCESS) return cuda_fail(device->driver, r, "cuStreamSynchronize");
  return FJ_OK;
}

static void cuda_timer_destroy(cuda_timer *t) {
  const cuda_driver *d = t->device->driver;
  if (t->start != NULL) d->cuEventDestroy_v2(t->start);
  if (t->stop != NULL) d->cuEventDestroy_v2(t->stop);
  free(t);
}

static fj_status cuda_timer_start(backend_device *device, void *stream, void **timer) {
  *timer = NULL;
  cuda_timer *t = calloc(1, sizeof *t);
  if (t == NULL) return core_error(FJ_OUT_OF_MEMORY, "cuda: no memory for a timer");
  t->device = device;
  t->stream = (CUstream)stream;
  const cuda_driver *d = device->driver;
  int pushed = 0;
  fj_status status = cuda_enter(device, &pushed);
  if (status != FJ_OK) {
    free(t);
    return status;
  }
  CUresult r = d->cuEventCreate(&t->start, CU_EVENT_DEFAULT);
  const char *step = "cuEventCreate";
  if (r == CUDA_SUCCESS) r = d->cuEventCreate(&t->stop, CU_EVENT_DEFAULT);
  if (r == CUDA_SUCCESS) {
    step = "cuEventRecord";
    r = d->cuEventRecord(t->start, t->stream);
  }
  if (r != CUDA_SUCCESS) {
    status = cuda_fail(d, r, step);
    cuda_timer_destroy(t);
    t = NULL;
  }
  cuda_leave(device, pushed);
  *timer = t;
  return status;
}

static fj_status cuda_timer_stop(backend_device *device, void *timer, double *milliseconds) {
  *milliseconds = 0.0;
  cuda_timer *t = timer;
  if (t == NULL) return core_error(FJ_INTERNAL, "cuda: timer_stop with no timer");
  const cuda_driver *d = device->driver;
  int pushed = 0;
  fj_status status = cuda_enter(device, &pushed);
  if (status != FJ_OK) {
    cuda_timer_destroy(t);
    return status;
  }
  const char *step = "cuEventRecord";
  CUresult r = d->cuEventRecord(t->stop, t->stream);
  if (r == CUDA_SUCCESS) {
    step = "cuEventSynchronize";
    r = d->cuEventSynchronize(t->stop);
  }
  float ms = 0.0f;
  if (r == CUDA_SUCCESS) {
    step = "cuEventElapsedTime";
    r = d->event_elapsed(&ms, t->start, t->stop);
  }
  if (r != CUDA_SUCCESS)
    status = cuda_fail(d, r, step);
  else
    *milliseconds = (double)ms;
  cuda_timer_destroy(t);
  cuda_leave(device, pushed);
  return status;
}

const fj_backend cuda_backend = {
    .api_version = FJ_BACKEND_API_VERSION,
    .name = "cuda",
    .binary_kind = "cubin",
    .device_type = kDLCUDA,
    .device_count = cuda_device_count,
    .unavailable_reason = cuda_unavailable_reason,
    .device_info = cuda_device_info,
    .device_score = cuda_device_score,
    .codegen_target = cuda_codegen_target,
    .device_open = cuda_device_open,
    .device_close = cuda_device_close,
    .module_load = cuda_module_load,
    .module_function = cuda_module_function,
    .module_unload = cuda_module_unload,
    .launch = cuda_launch,
    .binary_finalize = cuda_binary_finalize,
    .memory_alloc = cuda_memory_alloc,
    .memory_free = cuda_memory_free,
    .copy_to_device = cuda_copy_to_device,
    .copy_to_host = cuda_copy_to_host,
    .synchronize = cuda_synchronize,
    .timer_start = cuda_timer_start,
    .timer_stop = cuda_timer_stop,
    .timing_method = "cuda-event",
    .device_peak = cuda_peak_measure,
};
