/* cpu_backend.c: the host CPU as a flashjit device. One device; kernels are host objects emitted by
 * LLVM and loaded with ORC; a launch spreads the kernel's jobs over the context's thread pool and
 * hands each worker its own 64-byte aligned scratch, grown on demand and kept for later launches. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/threadpool.h"
#include "kernels/attention_fwd_cpu_abi.h"

#define CPU_SCRATCH_ALIGN 64
/* Far above any real core count; a larger request is a bug in the caller, not a wish to honour. */
#define CPU_MAX_THREADS 4096

struct backend_device {
  core_pool *pool;
  int threads;
  /* Held for a whole launch: scratch is per worker index, and worker 0 is whichever thread called,
   * so two launches must never overlap even if the pool allowed it. */
  pthread_mutex_t launch_lock;
  void **scratch;          /* [threads], grown lazily by the worker that uses it */
  size_t *scratch_size;    /* [threads] */
};

/* ---- discovery: computed once, the answers never change while the process runs ---- */

static pthread_once_t cpu_info_once = PTHREAD_ONCE_INIT;
static backend_device_info cpu_info;
static jit_target cpu_target;
static fj_status cpu_info_status = FJ_INTERNAL;
static char cpu_info_error[256];

/* /proc/cpuinfo's "model name" (x86) or a fallback, so the device always has a readable name. */
static void cpu_model_name(char *out, size_t size, const char *fallback) {
  snprintf(out, size, "%s", fallback);
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f == NULL) return;
  char line[512];
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "model name", 10) != 0) continue;
    const char *colon = strchr(line, ':');
    if (colon == NULL) continue;
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    size_t n = strcspn(value, "\n");
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) n--;
    if (n == 0) continue;
    if (n >= size) n = size - 1;
    memcpy(out, value, n);
    out[n] = '\0';
    break;
  }
  fclose(f);
}

static void cpu_discover(void) {
  fj_status status = jit_host_target(&cpu_target);
  if (status != FJ_OK) {
    snprintf(cpu_info_error, sizeof cpu_info_error, "%s", fj_last_error());
    cpu_info_status = status;
    return;
  }
  memset(&cpu_info, 0, sizeof cpu_info);
  cpu_model_name(cpu_info.name, sizeof cpu_info.name, cpu_target.cpu);
  snprintf(cpu_info.arch, sizeof cpu_info.arch, "%s", cpu_target.cpu);
  cpu_info.compute_units = core_online_cores();
  long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  cpu_info.memory_bytes = (pages > 0 && page_size > 0) ? (uint64_t)pages * (uint64_t)page_size : 0;
  cpu_info.driver_version[0] = '\0';
  /* The features string is long and its exact text matters (a -avx512f override changes the code),
   * so the fingerprint carries its hash rather than the text. */
  char features_hash[17];
  core_hash64_hex(core_hash64(cpu_target.features, strlen(cpu_target.features)), features_hash);
  snprintf(cpu_info.fingerprint, sizeof cpu_info.fingerprint, "cpu|%s|%s|%d|%s", cpu_info.name,
           cpu_target.cpu, cpu_info.compute_units, features_hash);
  cpu_info_status = FJ_OK;
}

static fj_status cpu_ready(void) {
  pthread_once(&cpu_info_once, cpu_discover);
  if (cpu_info_status != FJ_OK)
    return core_error(cpu_info_status, "cpu: cannot describe the host target: %s", cpu_info_error);
  return FJ_OK;
}

static int cpu_device_count(void) { return 1; }

static fj_status cpu_check_index(int index) {
  if (index != 0)
    return core_error(FJ_NO_DEVICE, "cpu:%d does not exist; the only CPU device is cpu:0", index);
  return FJ_OK;
}

static fj_status cpu_device_info(int index, backend_device_info *out) {
  fj_status status = cpu_check_index(index);
  if (status == FJ_OK) status = cpu_ready();
  if (status != FJ_OK) return status;
  *out = cpu_info;
  return FJ_OK;
}

/* Lowest of all devices: any accelerator that is present is preferred for "auto". */
static int cpu_device_score(int index) { return 1; }

static fj_status cpu_codegen_target(int index, jit_target *out) {
  fj_status status = cpu_check_index(index);
  if (status == FJ_OK) status = cpu_ready();
  if (status != FJ_OK) return status;
  *out = cpu_target;
  return FJ_OK;
}

/* ---- an opened device ---- */

static void cpu_device_close(backend_device *device) {
  if (device == NULL) return;
  core_pool_destroy(device->pool);
  if (device->scratch != NULL)
    for (int i = 0; i < device->threads; i++) free(device->scratch[i]);
  free(device->scratch);
  free(device->scratch_size);
  pthread_mutex_destroy(&device->launch_lock);
  free(device);
}

static fj_status cpu_device_open(int index, int num_threads, backend_device **out) {
  *out = NULL;
  fj_status status = cpu_check_index(index);
  if (status != FJ_OK) return status;
  if (num_threads < 0 || num_threads > CPU_MAX_THREADS)
    return core_error(FJ_INVALID_ARGUMENT, "num_threads=%d must be from 0 (one per core) to %d",
                      num_threads, CPU_MAX_THREADS);
  int threads = num_threads == 0 ? core_online_cores() : num_threads;
  if (threads < 1) threads = 1;

  backend_device *device = calloc(1, sizeof *device);
  if (device == NULL) return core_error(FJ_OUT_OF_MEMORY, "cpu: no memory for the device");
  if (pthread_mutex_init(&device->launch_lock, NULL) != 0) {
    free(device);
    return core_error(FJ_INTERNAL, "cpu: pthread_mutex_init failed");
  }
  device->threads = threads;
  device->scratch = calloc((size_t)threads, sizeof *device->scratch);
  device->scratch_size = calloc((size_t)threads, sizeof *device->scratch_size);
  if (device->scratch == NULL || device->scratch_size == NULL) {
    cpu_device_close(device);
    return core_error(FJ_OUT_OF_MEMORY, "cpu: no memory for %d scratch slots", threads);
  }
  status = core_pool_create(threads, &device->pool);
  if (status != FJ_OK) {
    core_error_prefix("cpu: starting %d worker threads: ", threads);
    cpu_device_close(device);
    return status;
  }
  core_log(LOG_DEBUG, "cpu: opened with %d threads", threads);
  *out = device;
  return FJ_OK;
}

/* ---- modules ---- */

static fj_status cpu_module_load(backend_device *device, const void *binary, size_t size,
                                 const char *name, void **module) {
  jit_object *object = NULL;
  fj_status status = jit_object_load(binary, size, name, &object);
  *module = object;
  return status;
}

static fj_status cpu_module_function(void *module, const char *function_name, void **function) {
  return jit_object_symbol((jit_object *)module, function_name, function);
}

static void cpu_module_unload(void *module) { jit_object_unload((jit_object *)module); }

/* ---- launch ---- */

typedef struct cpu_launch {
  backend_device *device;
  cpu_attention_fn fn;
  const cpu_attention_params *params;
  size_t scratch_bytes;
  int out_of_memory;  /* set by a worker that could not grow its scratch; the launch then fails */
} cpu_launch;

static void cpu_run_job(void *user, int64_t job, int worker) {
  cpu_launch *launch = user;
  backend_device *device = launch->device;
  if (device->scratch_size[worker] < launch->scratch_bytes) {
    /* Only this worker touches its slot during a run, and runs are serialized by launch_lock, so
     * growing here needs no further locking and spares idle workers the memory. */
    size_t bytes = (launch->scratch_bytes + CPU_SCRATCH_ALIGN - 1) / CPU_SCRATCH_ALIGN * CPU_SCRATCH_ALIGN;
    void *grown = aligned_alloc(CPU_SCRATCH_ALIGN, bytes);
    if (grown == NULL) {
      __atomic_store_n(&launch->out_of_memory, 1, __ATOMIC_RELAXED);
      return;
    }
    free(device->scratch[worker]);
    device->scratch[worker] = grown;
    device->scratch_size[worker] = bytes;
  }
  launch->fn(launch->params, job, (float *)device->scratch[worker]);
}

static fj_status cpu_launch_kernel(backend_device *device, void *function,
                                   const backend_launch *request, void *stream) {
  if (device == NULL || function == NULL || request == NULL || request->params == NULL)
    return core_error(FJ_INTERNAL, "cpu: launch with a NULL device, function or parameter block");
  int64_t jobs = request->jobs;
  const void *params = request->params;
  size_t scratch_bytes = request->scratch_bytes;
  if (jobs <= 0) return FJ_OK;
  cpu_launch launch = {
      .device = device,
      /* An object-to-function pointer cast is how every JIT hands out code; POSIX guarantees it. */
      .fn = (cpu_attention_fn)function,
      .params = params,
      /* Always some scratch, so a kernel never receives NULL even when it asked for none. */
      .scratch_bytes = scratch_bytes ? scratch_bytes : CPU_SCRATCH_ALIGN,
      .out_of_memory = 0,
  };
  pthread_mutex_lock(&device->launch_lock);
  core_pool_run(device->pool, jobs, cpu_run_job, &launch);
  pthread_mutex_unlock(&device->launch_lock);
  if (launch.out_of_memory)
    return core_error(FJ_OUT_OF_MEMORY, "cpu: no memory for %zu bytes of per-thread scratch",
                      scratch_bytes);
  return FJ_OK;
}

const fj_backend cpu_backend = {
    .api_version = FJ_BACKEND_API_VERSION,
    .name = "cpu",
    .binary_kind = "o",
    .device_type = kDLCPU,
    .device_count = cpu_device_count,
    .unavailable_reason = NULL,
    .device_info = cpu_device_info,
    .device_score = cpu_device_score,
    .codegen_target = cpu_codegen_target,
    .device_open = cpu_device_open,
    .device_close = cpu_device_close,
    .module_load = cpu_module_load,
    .module_function = cpu_module_function,
    .module_unload = cpu_module_unload,
    .launch = cpu_launch_kernel,
};
