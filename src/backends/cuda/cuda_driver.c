/* cuda_driver.c: finds and opens libcuda.so.1 at run time, resolves every entry point of the symbol
 * list in cuda_driver.h into one struct, and initializes the driver, once per process. Whatever goes
 * wrong (no library, a library without a required symbol, cuInit failing on a machine with no GPU) is
 * kept as one line of text: the backend then reports 0 devices and `flashjit info` shows that line. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_driver.h"
#include "core/error.h"
#include "core/log.h"

/* Tried in order when FLASHJIT_CUDA_LIBRARY is not set. The soname first: the dynamic loader knows the
 * machine's layout better than we do; the full paths catch processes whose loader path was narrowed
 * (containers that mount the driver under /usr/local/nvidia, WSL). Never the unversioned development
 * symlink alone: on a machine with only the toolkit it is the stub that fails every call. */
static const char *const cuda_library_paths[] = {
    "libcuda.so.1",
    "libcuda.so",
    "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
    "/usr/lib/aarch64-linux-gnu/libcuda.so.1",
    "/usr/lib64/libcuda.so.1",
    "/usr/local/nvidia/lib64/libcuda.so.1",
    "/usr/lib/wsl/lib/libcuda.so.1",
};

static pthread_once_t cuda_driver_once = PTHREAD_ONCE_INIT;
static cuda_driver cuda_loaded;
static int cuda_usable;
static char cuda_reason[512];

static void *cuda_open_library(char *first_error, size_t size) {
  const char *forced = getenv("FLASHJIT_CUDA_LIBRARY");
  first_error[0] = '\0';
  if (forced != NULL && forced[0] != '\0') {
    void *handle = dlopen(forced, RTLD_NOW | RTLD_LOCAL);
    if (handle != NULL) {
      snprintf(cuda_loaded.library, sizeof cuda_loaded.library, "%s", forced);
      return handle;
    }
    const char *e = dlerror();
    snprintf(first_error, size, "%s (FLASHJIT_CUDA_LIBRARY)", e ? e : forced);
    return NULL;
  }
  for (size_t i = 0; i < sizeof cuda_library_paths / sizeof cuda_library_paths[0]; i++) {
    void *handle = dlopen(cuda_library_paths[i], RTLD_NOW | RTLD_LOCAL);
    if (handle != NULL) {
      snprintf(cuda_loaded.library, sizeof cuda_loaded.library, "%s", cuda_library_paths[i]);
      return handle;
    }
    /* The first failure is the telling one ("libcuda.so.1: cannot open shared object file"); the
     * fallbacks' messages only repeat it with other paths. */
    const char *e = dlerror();
    if (first_error[0] == '\0') snprintf(first_error, size, "%s", e ? e : cuda_library_paths[i]);
  }
  return NULL;
}

/* A library that is not a usable driver is closed again, and no pointer into it is kept. */
static void cuda_driver_drop(void *handle) {
#define CUDA_DRIVER_CLEAR_(required, name, ret, params) cuda_loaded.name = NULL;
  CUDA_DRIVER_SYMBOLS(CUDA_DRIVER_CLEAR_)
#undef CUDA_DRIVER_CLEAR_
  cuda_loaded.event_elapsed = NULL;
  dlclose(handle);
}

static void cuda_driver_load(void) {
  memset(&cuda_loaded, 0, sizeof cuda_loaded);
  char error[400];
  void *handle = cuda_open_library(error, sizeof error);
  if (handle == NULL) {
    snprintf(cuda_reason, sizeof cuda_reason, "%s", error);
    core_log(LOG_DEBUG, "cuda: no driver: %s", cuda_reason);
    return;
  }
  /* The library stays open for the life of the process: modules, contexts and callers' pointers may
   * outlive any point at which closing it would be safe. */
  void *symbol;
#define CUDA_DRIVER_RESOLVE_(required, name, ret, params)                                          \
  symbol = dlsym(handle, #name);                                                                   \
  if (symbol == NULL && (required)) {                                                              \
    snprintf(cuda_reason, sizeof cuda_reason, "%s lacks the required symbol %s (not a usable CUDA " \
             "driver)", cuda_loaded.library, #name);                                               \
    cuda_driver_drop(handle);                                                                      \
    return;                                                                                        \
  }                                                                                                \
  /* dlsym hands out functions as void *; POSIX guarantees this conversion. */                     \
  memcpy(&cuda_loaded.name, &symbol, sizeof symbol);
  CUDA_DRIVER_SYMBOLS(CUDA_DRIVER_RESOLVE_)
#undef CUDA_DRIVER_RESOLVE_
  cuda_loaded.event_elapsed =
      cuda_loaded.cuEventElapsedTime_v2 ? cuda_loaded.cuEventElapsedTime_v2 : cuda_loaded.cuEventElapsedTime;
  if (cuda_loaded.event_elapsed == NULL) {
    snprintf(cuda_reason, sizeof cuda_reason,
             "%s lacks the required symbol cuEventElapsedTime (nor cuEventElapsedTime_v2)",
             cuda_loaded.library);
    cuda_driver_drop(handle);
    return;
  }

  char text[256];
  CUresult result = cuda_loaded.cuInit(0);
  if (result != CUDA_SUCCESS) {
    snprintf(cuda_reason, sizeof cuda_reason, "cuInit: %s",
             cuda_result_text(&cuda_loaded, result, text, sizeof text));
    core_log(LOG_DEBUG, "cuda: %s: %s", cuda_loaded.library, cuda_reason);
    return;
  }
  result = cuda_loaded.cuDriverGetVersion(&cuda_loaded.driver_version);
  if (result != CUDA_SUCCESS) cuda_loaded.driver_version = 0;
  int count = 0;
  result = cuda_loaded.cuDeviceGetCount(&count);
  if (result != CUDA_SUCCESS) {
    snprintf(cuda_reason, sizeof cuda_reason, "cuDeviceGetCount: %s",
             cuda_result_text(&cuda_loaded, result, text, sizeof text));
    return;
  }
  if (count <= 0) {
    snprintf(cuda_reason, sizeof cuda_reason, "the driver (%s) reports no devices", cuda_loaded.library);
    return;
  }
  cuda_loaded.device_count = count;
  cuda_usable = 1;
  core_log(LOG_DEBUG, "cuda: %s, driver %d, %d device(s)", cuda_loaded.library,
           cuda_loaded.driver_version, count);
}

const cuda_driver *cuda_driver_get(const char **why) {
  pthread_once(&cuda_driver_once, cuda_driver_load);
  if (why != NULL) *why = cuda_usable ? "" : cuda_reason;
  return cuda_usable ? &cuda_loaded : NULL;
}

const char *cuda_result_text(const cuda_driver *driver, CUresult result, char *buffer, size_t size) {
  const char *name = NULL, *text = NULL;
  /* The driver answers CUDA_ERROR_INVALID_VALUE and leaves the pointer NULL for a code it does not
   * know (or one from a newer driver than the message tables), so both lookups may fail. */
  if (driver != NULL && driver->cuGetErrorName != NULL &&
      driver->cuGetErrorName(result, &name) != CUDA_SUCCESS)
    name = NULL;
  if (driver != NULL && driver->cuGetErrorString != NULL &&
      driver->cuGetErrorString(result, &text) != CUDA_SUCCESS)
    text = NULL;
  if (name != NULL && text != NULL)
    snprintf(buffer, size, "%s (%s)", name, text);
  else if (name != NULL)
    snprintf(buffer, size, "%s (code %d)", name, (int)result);
  else if (result == CUDA_ERROR_STUB_LIBRARY)
    /* The toolkit's stub answers every call, cuGetErrorName included, with this code. */
    snprintf(buffer, size, "CUDA_ERROR_STUB_LIBRARY (code 34: the CUDA toolkit's stub libcuda was loaded, "
             "not a driver)");
  else
    snprintf(buffer, size, "CUDA error %d", (int)result);
  return buffer;
}

fj_status cuda_fail(const cuda_driver *driver, CUresult result, const char *what) {
  char text[256];
  cuda_result_text(driver, result, text, sizeof text);
  fj_status status = FJ_DRIVER;
  if (result == CUDA_ERROR_OUT_OF_MEMORY) status = FJ_OUT_OF_MEMORY;
  if (result == CUDA_ERROR_INVALID_PTX || result == CUDA_ERROR_INVALID_IMAGE) status = FJ_COMPILE_FAILED;
  if (result == CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED || result == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED)
    return core_error(status, "cuda: %s: %s; a CUDA graph capture is in progress: make the calls of each shape "
                      "once (or fj_context_warmup) before capturing", what, text);
  return core_error(status, "cuda: %s: %s", what, text);
}
