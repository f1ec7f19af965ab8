/* test_cuda_driver.c: the CUDA backend's host paths without a GPU, against the fake driver in
 * tests/fake_cuda/ (its path comes from CMake). The driver is loaded once per process, so each
 * situation runs in a child process of this same program with its own environment: no library at all,
 * a library lacking a required symbol, cuInit failing, and a working fake with two devices. In the last
 * one the backend's slots are driven directly (discovery, fingerprint, contexts, PTX -> "cubin", module
 * load, launch geometry and parameter bytes, the shared-memory opt-in, memory, copies, events, driver
 * error text in fj_last_error, no synchronization in a launch, two threads launching at once), then the
 * public API on top (device selection, timing method, tensors on the wrong device, and, once the NVPTX
 * kernel family exists, a forward call compiled, linked, cached on disk and loaded again by a second
 * context without linking). */
#include <dlfcn.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/cuda/cuda_peak.h"
#include "kernels/attention_merge_gpu_abi.h"
#include "core/error.h"
#include "core/dtype.h"
#include "core/problem.h"
#include "fake_cuda/fake_cuda_state.h"
#include "kernels/attention_fwd_gpu_abi.h"
#include "kernels/kernel_family.h"
#include "runtime/runtime.h"
#include "check.h"

static int contains(const char *haystack, const char *needle) {
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* ---- scenarios without a usable driver ---- */

static void expect_no_devices(const char *needle) {
  const fj_backend *cuda = backend_find("cuda");
  check(cuda == &cuda_backend, "the registry lists the cuda backend");
  int n = cuda_backend.device_count();
  const char *why = cuda_backend.unavailable_reason();
  check(n == 0, "device_count = %d (want 0)", n);
  check(contains(why, needle), "unavailable_reason \"%s\" names \"%s\"", why, needle);

  const fj_backend *backend = NULL;
  int index = -1;
  fj_status s = backend_select("cuda:0", &backend, &index);
  check(s == FJ_NO_DEVICE && contains(fj_last_error(), "cuda: none (") && contains(fj_last_error(), needle),
        "cuda:0 -> %s: %s", fj_status_string(s), fj_last_error());
  s = backend_select("auto", &backend, &index);
  check(s == FJ_OK && backend == &cpu_backend, "auto falls back to the CPU (%s)", s == FJ_OK ? backend->name : "?");
  backend_device_info info;
  s = cuda_backend.device_info(0, &info);
  check(s == FJ_NO_DEVICE && contains(fj_last_error(), needle), "device_info(0) -> %s: %s", fj_status_string(s),
        fj_last_error());

  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cuda:0";
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  s = fj_context_create(&options, &context);
  check(s == FJ_NO_DEVICE && context == NULL, "fj_context_create(cuda:0) -> %s: %s", fj_status_string(s),
        fj_last_error());
}

/* `flashjit info` names the reason, in text and JSON. */
static void expect_info_reason(const char *needle) {
  char command[1024];
  snprintf(command, sizeof command, "'%s' info 2>&1", FJ_TEST_CLI);
  FILE *p = popen(command, "r");
  char out[16384];
  size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
  out[n] = '\0';
  int rc = p ? pclose(p) : -1;
  check(rc == 0 && contains(out, "cuda") && contains(out, "no devices") && contains(out, needle),
        "flashjit info says why cuda has no devices (\"%s\")", needle);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

/* ---- the working fake ---- */

static void *fake_handle;
static fake_cuda_counters *fake;

static int fake_depth(void) {
  fake_cuda_context_depth_fn depth = (fake_cuda_context_depth_fn)dlsym(fake_handle, "fake_cuda_context_depth");
  return depth ? depth() : -1;
}

static void test_discovery(void) {
  int n = cuda_backend.device_count();
  check(n == 2, "device_count = %d (want 2)", n);
  check(strcmp(cuda_backend.unavailable_reason(), "") == 0, "no unavailable_reason when devices exist");
  backend_device_info info;
  fj_status s = cuda_backend.device_info(0, &info);
  check(s == FJ_OK && strcmp(info.name, "Fake GPU 0") == 0 && strcmp(info.arch, "sm_90a") == 0 &&
            info.compute_units == 132 && info.memory_bytes == (80ull << 30) &&
            strcmp(info.driver_version, "13.0") == 0,
        "cuda:0: %s, %s, %d SMs, %llu bytes, driver %s", info.name, info.arch, info.compute_units,
        (unsigned long long)info.memory_bytes, info.driver_version);
  const char *want = "cuda|Fake GPU 0|sm_90a|sms=132|mem=85899345920|driver=13000|clock_khz=1755000|"
                     "mem_clock_khz=2619000|bus_bits=5120";
  check(strcmp(info.fingerprint, want) == 0, "fingerprint \"%s\"", info.fingerprint);
  s = cuda_backend.device_info(1, &info);
  check(s == FJ_OK && info.compute_units == 133, "cuda:1 has %d SMs", info.compute_units);
  s = cuda_backend.device_info(2, &info);
  check(s == FJ_NO_DEVICE && contains(fj_last_error(), "cuda:2"), "cuda:2 -> %s: %s", fj_status_string(s),
        fj_last_error());
  check(cuda_backend.device_score(0) > 1 && cuda_backend.device_score(1) > cuda_backend.device_score(0),
        "GPU scores above the CPU's, more SMs first (%d, %d)", cuda_backend.device_score(0),
        cuda_backend.device_score(1));
  check(strcmp(cuda_backend.binary_kind, "cubin") == 0 && strcmp(cuda_backend.timing_method, "cuda-event") == 0 &&
            cuda_backend.device_type == kDLCUDA,
        "binary kind cubin, timing cuda-event, tensors kDLCUDA");

  const fj_backend *backend = NULL;
  int index = -1;
  s = backend_select("auto", &backend, &index);
  check(s == FJ_OK && backend == &cuda_backend && index == 1, "auto -> %s:%d", backend ? backend->name : "?", index);
  s = backend_select("cuda:1", &backend, &index);
  check(s == FJ_OK && backend == &cuda_backend && index == 1, "cuda:1 -> %s:%d", backend ? backend->name : "?",
        index);
  s = backend_select("cuda:7", &backend, &index);
  check(s == FJ_NO_DEVICE && contains(fj_last_error(), "cuda:0, cuda:1"), "cuda:7 -> %s: %s",
        fj_status_string(s), fj_last_error());
  s = backend_select("cuda:x", &backend, &index);
  check(s == FJ_INVALID_ARGUMENT, "cuda:x -> %s: %s", fj_status_string(s), fj_last_error());
  s = backend_select("cuda", &backend, &index);
  check(s == FJ_OK && index == 0, "cuda -> cuda:%d", index);

  jit_target target;
  s = cuda_backend.codegen_target(0, &target);
  check(s == FJ_OK && strcmp(target.cpu, "sm_90a") == 0 && contains(target.triple, "nvptx64"),
        "codegen target %s %s (%s)", target.triple, target.cpu, s == FJ_OK ? "ok" : fj_last_error());
}

static const char fake_ptx[] =
    "//\n// fake PTX\n//\n.version 8.7\n.target sm_90a\n.address_size 64\n"
    ".visible .entry fj_test_kernel(.param .align 8 .b8 p[280])\n{\n ret;\n}\n";

static void *thread_function;  /* shared by the two-thread test */
static backend_device *thread_device;

static void *launch_many(void *arg) {
  long which = (long)arg;
  gpu_attention_params params;
  memset(&params, 0, sizeof params);
  params.batch = which;
  long failures = 0;
  for (int i = 0; i < 2000; i++) {
    backend_launch request = {.jobs = 4, .block_threads = 128,
                              .scratch_bytes = (size_t)(i % 2 ? 60000 : 70000) + (size_t)which * 1000,
                              .params = &params, .params_size = sizeof params};
    if (cuda_backend.launch(thread_device, thread_function, &request, (void *)(uintptr_t)(0x100 + which)) != FJ_OK)
      failures++;
  }
  return (void *)failures;
}

static void test_slots(void) {
  int retains = atomic_load(&fake->primary_retains);
  backend_device *device = NULL;
  fj_status s = cuda_backend.device_open(0, 0, &device);
  check(s == FJ_OK && device != NULL && atomic_load(&fake->primary_retains) == retains + 1 && fake_depth() == 0,
        "device_open retains the primary context and leaves nothing current (%s)",
        s == FJ_OK ? "ok" : fj_last_error());
  if (device == NULL) return;

  /* PTX -> "cubin" through the linker; LLVM's text has no terminator, the driver needs one */
  jit_buffer cubin = {0};
  s = cuda_backend.binary_finalize(device, fake_ptx, sizeof fake_ptx - 1, "fj_test_kernel", &cubin);
  check(s == FJ_OK && cubin.size == sizeof fake_ptx && memcmp(cubin.data, fake_ptx, sizeof fake_ptx) == 0 &&
            atomic_load(&fake->link_completes) == 1 && atomic_load(&fake->link_destroys) == 1 &&
            fake_depth() == 0,
        "binary_finalize: %zu bytes through cuLinkCreate/AddData/Complete/Destroy (%s)", cubin.size,
        s == FJ_OK ? "ok" : fj_last_error());
  setenv("FAKE_CUDA_FAIL", "cuLinkAddData_v2:218", 1);
  jit_buffer bad = {0};
  s = cuda_backend.binary_finalize(device, fake_ptx, sizeof fake_ptx - 1, "fj_test_kernel", &bad);
  check(s == FJ_COMPILE_FAILED && contains(fj_last_error(), "CUDA_ERROR_INVALID_PTX (a PTX JIT compilation failed)") &&
            contains(fj_last_error(), "fake syntax error in fj_test_kernel") && bad.data == NULL &&
            atomic_load(&fake->link_destroys) == 2 && fake_depth() == 0,
        "a PTX error gives the driver's name, text and the linker's log: %s", fj_last_error());
  unsetenv("FAKE_CUDA_FAIL");

  /* modules */
  void *module = NULL, *function = NULL;
  setenv("FAKE_CUDA_FAIL", "cuModuleLoadData:200", 1);
  s = cuda_backend.module_load(device, cubin.data, cubin.size, "test", &module);
  check(s == FJ_COMPILE_FAILED && module == NULL && contains(fj_last_error(), "cuModuleLoadData") &&
            contains(fj_last_error(), "CUDA_ERROR_INVALID_IMAGE (device kernel image is invalid)"),
        "module_load failure: %s", fj_last_error());
  unsetenv("FAKE_CUDA_FAIL");
  s = cuda_backend.module_load(device, cubin.data, cubin.size, "test", &module);
  check(s == FJ_OK && module != NULL && fake_depth() == 0, "module_load (%s)", s == FJ_OK ? "ok" : fj_last_error());
  if (module == NULL) goto close;
  s = cuda_backend.module_function(module, "no_such_kernel", &function);
  check(s != FJ_OK && function == NULL && contains(fj_last_error(), "CUDA_ERROR_NOT_FOUND"),
        "module_function of a missing name: %s", fj_last_error());
  s = cuda_backend.module_function(module, "fj_test_kernel", &function);
  check(s == FJ_OK && function != NULL, "module_function (%s)", s == FJ_OK ? "ok" : fj_last_error());
  if (function == NULL) goto unload;

  /* launch: geometry, shared memory, stream and the parameter bytes exactly; nothing synchronized */
  gpu_attention_params params;
  unsigned char *bytes = (unsigned char *)&params;
  for (size_t i = 0; i < sizeof params; i++) bytes[i] = (unsigned char)(i * 7 + 3);
  int syncs = atomic_load(&fake->stream_syncs) + atomic_load(&fake->context_syncs) + atomic_load(&fake->event_syncs);
  int pushes = atomic_load(&fake->pushes), sets = atomic_load(&fake->func_set_attributes);
  backend_launch request = {.jobs = 37, .block_threads = 128, .scratch_bytes = 1000, .params = &params,
                            .params_size = sizeof params};
  s = cuda_backend.launch(device, function, &request, (void *)0x1234);
  check(s == FJ_OK && atomic_load(&fake->launches) == 1 && fake->last_grid[0] == 37 && fake->last_grid[1] == 1 &&
            fake->last_grid[2] == 1 && fake->last_block[0] == 128 && fake->last_block[1] == 1 &&
            fake->last_block[2] == 1 && fake->last_shared == 1000 && fake->last_stream == (void *)0x1234 &&
            strcmp(fake->last_function, "fj_test_kernel") == 0,
        "launch: grid (%u,%u,%u) block (%u,%u,%u) shared %u stream %p (%s)", fake->last_grid[0],
        fake->last_grid[1], fake->last_grid[2], fake->last_block[0], fake->last_block[1], fake->last_block[2],
        fake->last_shared, fake->last_stream, s == FJ_OK ? "ok" : fj_last_error());
  check(memcmp(fake->last_params, &params, sizeof params) == 0, "launch passes the %zu parameter bytes by value",
        sizeof params);
  int syncs_after = atomic_load(&fake->stream_syncs) + atomic_load(&fake->context_syncs) +
                    atomic_load(&fake->event_syncs);
  check(syncs_after == syncs && fake_depth() == 0 && atomic_load(&fake->pushes) == pushes + 1 &&
            atomic_load(&fake->pops) == atomic_load(&fake->pushes) && atomic_load(&fake->func_set_attributes) == sets,
        "launch synchronizes nothing, pushes and pops the context once, sets no attribute under 48 KiB");

  /* above 48 KiB the function opts in, once per new maximum */
  size_t sizes[] = {100000, 100000, 90000, 150000};
  int want_sets[] = {1, 1, 1, 2};
  for (int i = 0; i < 4; i++) {
    request.scratch_bytes = sizes[i];
    s = cuda_backend.launch(device, function, &request, NULL);
    int now = atomic_load(&fake->func_set_attributes) - sets;
    check(s == FJ_OK && now == want_sets[i] && fake->last_shared == sizes[i],
          "shared %zu: %d attribute sets in all (want %d) (%s)", sizes[i], now, want_sets[i],
          s == FJ_OK ? "ok" : fj_last_error());
  }
  check(atomic_load(&fake->last_set_attribute_value) == 150000, "the limit was raised to 150000");
  request.scratch_bytes = 300000;
  s = cuda_backend.launch(device, function, &request, NULL);
  check(s == FJ_UNSUPPORTED && contains(fj_last_error(), "232448"), "300000 bytes of shared memory: %s",
        fj_last_error());
  request.scratch_bytes = 0;
  request.block_threads = 2048;
  s = cuda_backend.launch(device, function, &request, NULL);
  check(s != FJ_OK && contains(fj_last_error(), "1024"), "2048 threads per block: %s", fj_last_error());
  request.block_threads = 128;
  request.jobs = 0;
  int launches = atomic_load(&fake->launches);
  s = cuda_backend.launch(device, function, &request, NULL);
  check(s == FJ_OK && atomic_load(&fake->launches) == launches, "0 jobs launch nothing");
  request.jobs = 37;

  setenv("FAKE_CUDA_FAIL", "cuLaunchKernel:701", 1);
  s = cuda_backend.launch(device, function, &request, NULL);
  check(s == FJ_DRIVER && contains(fj_last_error(), "cuLaunchKernel") &&
            contains(fj_last_error(), "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (too many resources requested for launch)") &&
            fake_depth() == 0,
        "launch failure: %s", fj_last_error());
  setenv("FAKE_CUDA_FAIL", "cuLaunchKernel:12345", 1);
  s = cuda_backend.launch(device, function, &request, NULL);
  check(s == FJ_DRIVER && contains(fj_last_error(), "CUDA error 12345"), "a code the driver cannot name: %s",
        fj_last_error());
  unsetenv("FAKE_CUDA_FAIL");

  /* memory and copies */
  void *dptr = NULL;
  s = cuda_backend.memory_alloc(device, 4096, &dptr);
  check(s == FJ_OK && dptr != NULL, "memory_alloc 4096 (%s)", s == FJ_OK ? "ok" : fj_last_error());
  unsigned char in[4096], out[4096];
  for (int i = 0; i < 4096; i++) in[i] = (unsigned char)(i * 13);
  memset(out, 0, sizeof out);
  if (dptr != NULL) {
    fj_status a = cuda_backend.copy_to_device(device, dptr, in, sizeof in);
    fj_status b = cuda_backend.copy_to_host(device, out, dptr, sizeof out);
    check(a == FJ_OK && b == FJ_OK && memcmp(in, out, sizeof in) == 0 && fake_depth() == 0,
          "copy_to_device then copy_to_host round-trips 4096 bytes");
    int frees = atomic_load(&fake->frees);
    cuda_backend.memory_free(device, dptr);
    check(atomic_load(&fake->frees) == frees + 1, "memory_free");
  }
  cuda_backend.memory_free(device, NULL);
  s = cuda_backend.memory_alloc(device, 0, &dptr);
  check(s == FJ_OK && dptr == NULL, "memory_alloc 0 gives NULL");
  setenv("FAKE_CUDA_FAIL", "cuMemAlloc_v2:2", 1);
  s = cuda_backend.memory_alloc(device, 1 << 20, &dptr);
  check(s == FJ_OUT_OF_MEMORY && dptr == NULL && contains(fj_last_error(), "CUDA_ERROR_OUT_OF_MEMORY"),
        "allocation failure: %s", fj_last_error());
  setenv("FAKE_CUDA_FAIL", "cuMemcpyDtoH_v2:1", 1);
  s = cuda_backend.copy_to_host(device, out, in, 16);
  check(s == FJ_DRIVER && contains(fj_last_error(), "CUDA_ERROR_INVALID_VALUE"), "copy failure: %s",
        fj_last_error());
  unsetenv("FAKE_CUDA_FAIL");

  /* synchronize and the event timer */
  int stream_syncs = atomic_load(&fake->stream_syncs);
  s = cuda_backend.synchronize(device, (void *)0x1234);
  check(s == FJ_OK && atomic_load(&fake->stream_syncs) == stream_syncs + 1, "synchronize waits on the stream");
  setenv("FAKE_CUDA_FAIL", "cuStreamSynchronize:719", 1);
  s = cuda_backend.synchronize(device, NULL);
  check(s == FJ_DRIVER && contains(fj_last_error(), "CUDA_ERROR_LAUNCH_FAILED (unspecified launch failure)"),
        "a fault surfaces at synchronize: %s", fj_last_error());
  unsetenv("FAKE_CUDA_FAIL");
  void *timer = NULL;
  double ms = -1;
  s = cuda_backend.timer_start(device, NULL, &timer);
  fj_status s2 = s == FJ_OK ? cuda_backend.launch(device, function, &request, NULL) : s;
  fj_status s3 = s == FJ_OK ? cuda_backend.timer_stop(device, timer, &ms) : s;
  check(s == FJ_OK && s2 == FJ_OK && s3 == FJ_OK && ms > 1.2 && ms < 1.3 &&
            atomic_load(&fake->events_created) == atomic_load(&fake->events_destroyed) &&
            atomic_load(&fake->event_syncs) == 1,
        "timer: %.3f ms between two events (through cuEventElapsedTime_v2), events freed", ms);
  setenv("FAKE_CUDA_FAIL", "cuEventRecord:400", 1);
  s = cuda_backend.timer_start(device, NULL, &timer);
  check(s == FJ_DRIVER && timer == NULL && atomic_load(&fake->events_created) == atomic_load(&fake->events_destroyed),
        "timer_start failure frees its events: %s", fj_last_error());
  unsetenv("FAKE_CUDA_FAIL");

  /* two threads launching the same function at once, with shared sizes that need the opt-in */
  thread_device = device;
  thread_function = function;
  pthread_t threads[2];
  long failures = 0;
  for (long t = 0; t < 2; t++) pthread_create(&threads[t], NULL, launch_many, (void *)t);
  for (int t = 0; t < 2; t++) {
    void *r = NULL;
    pthread_join(threads[t], &r);
    failures += (long)r;
  }
  check(failures == 0 && fake_depth() == 0, "two threads x 2000 launches: %ld failures", failures);

unload:
  if (module != NULL) {
    int unloads = atomic_load(&fake->module_unloads);
    cuda_backend.module_unload(module);
    check(atomic_load(&fake->module_unloads) == unloads + 1, "module_unload");
  }
close:
  jit_buffer_free(&cubin);
  int releases = atomic_load(&fake->primary_releases);
  cuda_backend.device_close(device);
  check(atomic_load(&fake->primary_releases) == releases + 1, "device_close releases the primary context");
}

/* A caller that made its own context current: the backend works in it (no primary context), and a
 * caller whose current context is on another device gets it back after every call. */
static void test_caller_context(void) {
  fake_cuda_make_context_fn make = (fake_cuda_make_context_fn)dlsym(fake_handle, "fake_cuda_make_context");
  fake_cuda_push_fn push = (fake_cuda_push_fn)dlsym(fake_handle, "cuCtxPushCurrent_v2");
  fake_cuda_pop_fn pop = (fake_cuda_pop_fn)dlsym(fake_handle, "cuCtxPopCurrent_v2");
  if (make == NULL || push == NULL || pop == NULL) {
    check(0, "the fake exports its context helpers");
    return;
  }
  void *mine = make(0);
  push(mine);
  int retains = atomic_load(&fake->primary_retains), pushes = atomic_load(&fake->pushes);
  backend_device *device = NULL;
  fj_status s = cuda_backend.device_open(0, 0, &device);
  check(s == FJ_OK && atomic_load(&fake->primary_retains) == retains,
        "with a context current on cuda:0 the backend uses it, not the primary context");
  jit_buffer cubin = {0};
  void *module = NULL, *function = NULL;
  s = cuda_backend.binary_finalize(device, fake_ptx, sizeof fake_ptx - 1, "k", &cubin);
  if (s == FJ_OK) s = cuda_backend.module_load(device, cubin.data, cubin.size, "k", &module);
  if (s == FJ_OK) s = cuda_backend.module_function(module, "fj_test_kernel", &function);
  gpu_attention_params params;
  memset(&params, 0, sizeof params);
  backend_launch request = {.jobs = 1, .block_threads = 32, .params = &params, .params_size = sizeof params};
  if (s == FJ_OK) s = cuda_backend.launch(device, function, &request, NULL);
  check(s == FJ_OK && atomic_load(&fake->pushes) == pushes && fake_depth() == 1,
        "calls in the caller's current context push nothing (%s)", s == FJ_OK ? "ok" : fj_last_error());
  void *popped = NULL;
  pop(&popped);
  s = cuda_backend.launch(device, function, &request, NULL);
  check(s == FJ_OK && atomic_load(&fake->pushes) == pushes + 1 && fake_depth() == 0,
        "with nothing current, a launch pushes that context and pops it again (%s)",
        s == FJ_OK ? "ok" : fj_last_error());
  cuda_backend.module_unload(module);
  jit_buffer_free(&cubin);
  cuda_backend.device_close(device);

  /* a context on device 1 is current; cuda:0 uses its primary context and leaves device 1's in place */
  void *other = make(1);
  push(other);
  device = NULL;
  s = cuda_backend.device_open(0, 0, &device);
  check(s == FJ_OK && atomic_load(&fake->primary_retains) == retains + 1,
        "with another device's context current, cuda:0 retains its primary context");
  void *dptr = NULL;
  if (s == FJ_OK) s = cuda_backend.memory_alloc(device, 64, &dptr);
  cuda_backend.memory_free(device, dptr);
  check(s == FJ_OK && fake_depth() == 1, "the caller's device-1 context is current again after each call");
  cuda_backend.device_close(device);
  pop(&popped);
  check(popped == other, "the caller pops its own context");
  free(mine);
  free(other);
}

static void fill_tensor(DLTensor *t, void *data, int ndim, int64_t *shape, int device_type, int device_id,
                        dtype_id dtype) {
  memset(t, 0, sizeof *t);
  t->data = data;
  t->ndim = ndim;
  t->shape = shape;
  t->strides = NULL;
  t->dtype = core_dtype_to_dlpack(dtype);
  t->device.device_type = (DLDeviceType)device_type;
  t->device.device_id = device_id;
}

static int count_files(const char *dir, const char *suffix) {
  char command[1200];
  snprintf(command, sizeof command, "ls '%s/kernels' 2>/dev/null | grep -c '%s$'", dir, suffix);
  FILE *p = popen(command, "r");
  int n = 0;
  if (p != NULL) {
    if (fscanf(p, "%d", &n) != 1) n = 0;
    pclose(p);
  }
  return n;
}

/* The public API on the fake: tensors are host memory that says it is on cuda:0. */
static void test_public_api(void) {
  const char *cache_dir = getenv("FLASHJIT_CACHE_DIR");
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cuda:0";
  fj_context *context = NULL;
  fj_status s = fj_context_create(&options, &context);
  check(s == FJ_OK, "fj_context_create(cuda:0) on the fake (%s)", s == FJ_OK ? "ok" : fj_last_error());
  if (s != FJ_OK) return;
  check(strcmp(runtime_timing_method(context), "cuda-event") == 0, "timing method %s",
        runtime_timing_method(context));
  char name[256];
  fj_context_device_name(context, name, sizeof name);
  check(strcmp(name, "cuda: Fake GPU 0") == 0, "device name \"%s\"", name);

  int64_t b = 2, sq = 100, skv = 130, h = 4, hk = 2, d = 64;
  int64_t q_shape[4] = {b, sq, h, d}, kv_shape[4] = {b, skv, hk, d}, lse_shape[3] = {b, h, sq};
  uint16_t *q = calloc((size_t)(b * sq * h * d), 2), *k = calloc((size_t)(b * skv * hk * d), 2),
           *v = calloc((size_t)(b * skv * hk * d), 2), *o = calloc((size_t)(b * sq * h * d), 2);
  float *lse = calloc((size_t)(b * h * sq), 4);
  DLTensor tq, tk, tv, to, tlse;
  fill_tensor(&tq, q, 4, q_shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&tk, k, 4, kv_shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&tv, v, 4, kv_shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&to, o, 4, q_shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&tlse, lse, 3, lse_shape, kDLCUDA, 0, DTYPE_F32);
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &tq;
  args.k = &tk;
  args.v = &tv;
  args.o = &to;
  args.lse = &tlse;
  args.causal = 1;
  args.stream = (void *)0xbeef;

  /* tensors elsewhere are refused before anything runs */
  int launches = atomic_load(&fake->launches);
  DLTensor host[5] = {tq, tk, tv, to, tlse};
  for (int i = 0; i < 5; i++) host[i].device.device_type = kDLCPU;
  fj_attention_args wrong = args;
  wrong.q = &host[0], wrong.k = &host[1], wrong.v = &host[2], wrong.o = &host[3], wrong.lse = &host[4];
  s = fj_attention_forward(context, &wrong);
  check(s == FJ_INVALID_ARGUMENT && contains(fj_last_error(), "q.device=(cpu,0)") &&
            contains(fj_last_error(), "cuda:0"),
        "host tensors on a cuda context: %s", fj_last_error());
  for (int i = 0; i < 5; i++) host[i].device.device_type = kDLCUDA, host[i].device.device_id = 1;
  s = fj_attention_forward(context, &wrong);
  check(s == FJ_INVALID_ARGUMENT && contains(fj_last_error(), "q.device=(cuda,1)"),
        "cuda:1 tensors on a cuda:0 context: %s", fj_last_error());
  check(atomic_load(&fake->launches) == launches, "nothing launched for refused calls");

  const kernel_family *family = kernel_family_for_backend("cuda");
  int syncs = atomic_load(&fake->stream_syncs) + atomic_load(&fake->context_syncs);
  int links = atomic_load(&fake->link_completes);
  s = fj_attention_forward(context, &args);
  if (family == NULL) {
    check(s == FJ_UNSUPPORTED && contains(fj_last_error(), "no attention kernel family for the cuda backend"),
          "no NVPTX family linked in yet: %s: %s", fj_status_string(s), fj_last_error());
  } else {
    check(s == FJ_OK, "forward on the fake: %s %s", fj_status_string(s), s == FJ_OK ? "" : fj_last_error());
    attention_problem problem;
    runtime_kernel *kernel = NULL;
    fj_status v1 = core_validate_attention(&args, &problem);
    fj_status v2 = v1 == FJ_OK ? runtime_get_kernel(context, &problem, NULL, &kernel) : v1;
    if (s == FJ_OK && v2 == FJ_OK) {
      const gpu_attention_params *p = (const gpu_attention_params *)(const void *)fake->last_params;
      int64_t jobs = family->job_count(&problem, &kernel->config);
      size_t scratch = family->scratch_bytes(&problem.key, &kernel->config);
      int threads = family->block_threads ? family->block_threads(&problem.key, &kernel->config) : 1;
      check(atomic_load(&fake->launches) == launches + 1 && fake->last_grid[0] == (unsigned)jobs &&
                fake->last_block[0] == (unsigned)threads && fake->last_shared == (unsigned)scratch &&
                fake->last_stream == (void *)0xbeef,
            "one launch: grid %u (want %lld), block %u (want %d), shared %u (want %zu), caller's stream",
            fake->last_grid[0], (long long)jobs, fake->last_block[0], threads, fake->last_shared, scratch);
      check(p->q == (uint64_t)(uintptr_t)q && p->k == (uint64_t)(uintptr_t)k && p->v == (uint64_t)(uintptr_t)v &&
                p->o == (uint64_t)(uintptr_t)o && p->lse == (uint64_t)(uintptr_t)lse && p->batch == b &&
                p->seqlen_q == sq && p->seqlen_kv == skv && p->heads == h && p->kv_heads == hk &&
                p->q_stride[1] == h * d && p->k_stride[1] == hk * d && p->lse_stride[1] == sq &&
                p->q_tiles > 0 && p->scale_log2 > 0.18f && p->scale_log2 < 0.181f,
            "the parameter block carries the tensors' addresses, strides and sizes (q_tiles %lld)",
            (long long)p->q_tiles);
      check(atomic_load(&fake->link_completes) == links + 1 && count_files(cache_dir, ".cubin") >= 1,
            "the PTX was linked once and the cubin stored in the disk cache");
    }
    int now = atomic_load(&fake->stream_syncs) + atomic_load(&fake->context_syncs);
    check(now == syncs, "a forward call synchronizes nothing");

    /* a second context finds the cubin on disk and never links */
    fj_context *second = NULL;
    s = fj_context_create(&options, &second);
    int loads = atomic_load(&fake->module_loads);
    if (s == FJ_OK) s = fj_attention_forward(second, &args);
    check(s == FJ_OK && atomic_load(&fake->link_completes) == links + 1 &&
              atomic_load(&fake->module_loads) == loads + 1,
          "a second context loads the cached cubin without the driver's compiler (%s)",
          s == FJ_OK ? "ok" : fj_last_error());
    fj_context_destroy(second);

    /* Device addresses the host cannot read: validation (overlap, extents) and the launch work on the
     * descriptors alone, so a read of tensor memory would crash this child. */
    uintptr_t base = (uintptr_t)0x7e0000000000ull;
    size_t q_bytes = (size_t)(b * sq * h * d) * 2, kv_bytes = (size_t)(b * skv * hk * d) * 2;
    DLTensor uq = tq, uk = tk, uv = tv, uo = to, ul = tlse;
    uq.data = (void *)base;
    uk.data = (void *)(base + q_bytes);
    uv.data = (void *)(base + q_bytes + kv_bytes);
    uo.data = (void *)(base + q_bytes + 2 * kv_bytes);
    ul.data = (void *)(base + 2 * q_bytes + 2 * kv_bytes);
    fj_attention_args unmapped = args;
    unmapped.q = &uq, unmapped.k = &uk, unmapped.v = &uv, unmapped.o = &uo, unmapped.lse = &ul;
    launches = atomic_load(&fake->launches);
    s = fj_attention_forward(context, &unmapped);
    const gpu_attention_params *p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 && p->q == base &&
              p->lse == base + 2 * q_bytes + 2 * kv_bytes,
          "unreadable device addresses pass validation untouched and reach the kernel (%s)",
          s == FJ_OK ? "ok" : fj_last_error());
    /* an fp8 KV cache: a kernel of its own, k_scale in the scores' scale, v_scale in the block */
    DLTensor fk = uk, fv = uv, fq = uq, fo = uo;
    fk.dtype = fv.dtype = (DLDataType){FJ_DLPACK_FLOAT8_E4M3FN, 8, 1};
    fj_attention_args fp8 = unmapped;
    fp8.k = &fk, fp8.v = &fv;
    fp8.k_scale = 0.5f;
    fp8.v_scale = 3.0f;
    launches = atomic_load(&fake->launches);
    links = atomic_load(&fake->link_completes);
    s = fj_attention_forward(context, &fp8);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    double want_scale = 0.5 / sqrt((double)d) * 1.4426950408889634;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 && atomic_load(&fake->link_completes) == links + 1 &&
              p->v_scale == 3.0f && fabs(p->scale_log2 - want_scale) <= 1e-6 * want_scale,
          "an fp8 KV cache: a kernel of its own, v_scale %g, scale_log2 %g (want %g) (%s)", (double)p->v_scale,
          (double)p->scale_log2, want_scale, s == FJ_OK ? "ok" : fj_last_error());
    /* v and o with a head dim of their own (half of q's and k's): a kernel of its own, whose shared memory
     * holds V tiles half as wide as K's, and o's strides of v's head dim */
    {
      int64_t v_shape[4] = {b, skv, hk, d / 2}, o_shape[4] = {b, sq, h, d / 2};
      DLTensor nv = uv, no = uo;
      nv.shape = v_shape;
      no.shape = o_shape;
      fj_attention_args narrow_v = unmapped;
      narrow_v.v = &nv, narrow_v.o = &no;
      launches = atomic_load(&fake->launches);
      links = atomic_load(&fake->link_completes);
      s = fj_attention_forward(context, &narrow_v);
      p = (const gpu_attention_params *)(const void *)fake->last_params;
      attention_problem dv_problem;
      runtime_kernel *dv_kernel = NULL;
      fj_status dv_status = core_validate_attention(&narrow_v, &dv_problem);
      if (dv_status == FJ_OK) dv_status = runtime_get_kernel(context, &dv_problem, NULL, &dv_kernel);
      size_t dv_scratch = dv_status == FJ_OK ? family->scratch_bytes(&dv_problem.key, &dv_kernel->config) : 0;
      size_t same_config = dv_status == FJ_OK ? family->scratch_bytes(&problem.key, &dv_kernel->config) : 0;
      check(s == FJ_OK && dv_status == FJ_OK && atomic_load(&fake->launches) == launches + 1 &&
                atomic_load(&fake->link_completes) == links + 1 && dv_problem.key.head_dim_v == d / 2 &&
                fake->last_shared == (unsigned)dv_scratch && dv_scratch < same_config &&
                p->o_stride[1] == h * (d / 2) && p->v_stride[1] == hk * (d / 2),
            "v and o of head dim %lld beside %lld: a kernel of its own, %u bytes of shared memory (want %zu; %zu "
            "with one head dim), o's row stride %lld (%s)",
            (long long)(d / 2), (long long)d, fake->last_shared, dv_scratch, same_config, (long long)p->o_stride[1],
            s == FJ_OK ? "ok" : fj_last_error());
    }
    /* what the NVIDIA kernels do not take: fp32 tensors; refused before any compile */
    launches = atomic_load(&fake->launches);
    fq.dtype = fk.dtype = fv.dtype = fo.dtype = (DLDataType){kDLFloat, 32, 1};
    fq.data = (void *)(base + ((uintptr_t)1 << 28)), fk.data = (void *)(base + ((uintptr_t)2 << 28));
    fv.data = (void *)(base + ((uintptr_t)3 << 28)), fo.data = (void *)(base + ((uintptr_t)4 << 28));
    fj_attention_args fp32 = unmapped;
    fp32.q = &fq, fp32.k = &fk, fp32.v = &fv, fp32.o = &fo;
    s = fj_attention_forward(context, &fp32);
    check(s == FJ_UNSUPPORTED && contains(fj_last_error(), "dtype fp32") && atomic_load(&fake->launches) == launches,
          "fp32 on the GPU: %s (%s)", fj_status_string(s), fj_last_error());
    /* MLA's absorbed decode (q and k 576, v 512, one KV head): O's columns over two warps of each row
     * tile, 8 warps a block; a v past 256 columns that does not split into 64-column slices is refused */
    {
      int64_t mq[4] = {1, 1, 16, 576}, mk[4] = {1, 64, 1, 576}, mv[4] = {1, 64, 1, 512}, mo[4] = {1, 1, 16, 512};
      DLTensor wq = fq, wk = fk, wv = fv, wo = fo;
      wq.dtype = wk.dtype = wv.dtype = wo.dtype = (DLDataType){kDLBfloat, 16, 1};
      wq.shape = mq, wk.shape = mk, wv.shape = mv, wo.shape = mo;
      wq.strides = wk.strides = wv.strides = wo.strides = NULL;
      fj_attention_args wide = unmapped;
      wide.q = &wq, wide.k = &wk, wide.v = &wv, wide.o = &wo, wide.lse = NULL;
      wide.causal = 1;
      s = fj_attention_forward(context, &wide);
      p = (const gpu_attention_params *)(const void *)fake->last_params;
      check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 && fake->last_block[0] == 256 &&
                p->o_stride[2] == 512 && p->v_stride[1] == 512,
            "head dims 576 and 512 on the GPU: %s, %u threads a block (%s)", fj_status_string(s), fake->last_block[0],
            s == FJ_OK ? "ok" : fj_last_error());
      launches = atomic_load(&fake->launches);
      mq[3] = mk[3] = 320, mv[3] = mo[3] = 320;
      s = fj_attention_forward(context, &wide);
      check(s == FJ_UNSUPPORTED && contains(fj_last_error(), "v's head dim 320") &&
                contains(fj_last_error(), "multiple of 128") && atomic_load(&fake->launches) == launches,
            "v of 320 on the GPU: %s (%s)", fj_status_string(s), fj_last_error());
    }
    /* per-sequence key counts in device memory: not read by the call (the kernel clamps them), carried
     * to a varlen kernel of its own */
    int64_t lens_shape[1] = {b};
    DLTensor lens = {.data = (void *)(base + 2 * q_bytes + 2 * kv_bytes + 4096), .device = tq.device, .ndim = 1,
                     .dtype = {kDLInt, 32, 1}, .shape = lens_shape};
    fj_attention_args varlen = unmapped;
    varlen.seqlens_kv = &lens;
    launches = atomic_load(&fake->launches);
    links = atomic_load(&fake->link_completes);
    s = fj_attention_forward(context, &varlen);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 &&
              atomic_load(&fake->link_completes) == links + 1 && p->seqlens_kv == (uint64_t)(uintptr_t)lens.data &&
              p->seqlens_kv_stride == 1,
          "seqlens_kv on the device: unread, its address and stride reach a varlen kernel of its own (%s)",
          s == FJ_OK ? "ok" : fj_last_error());
    /* a block table in device memory: unread (the kernel clamps its entries); k and v read as b pages of
     * skv keys, two entries per sequence, and the kernel is one of its own (the page size is compiled in) */
    int64_t table_shape[2] = {b, 2};
    DLTensor table = {.data = (void *)(base + 2 * q_bytes + 2 * kv_bytes + 8192), .device = tq.device, .ndim = 2,
                      .dtype = {kDLInt, 32, 1}, .shape = table_shape};
    fj_attention_args paged = varlen;
    paged.block_table = &table;
    launches = atomic_load(&fake->launches);
    links = atomic_load(&fake->link_completes);
    s = fj_attention_forward(context, &paged);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 &&
              atomic_load(&fake->link_completes) == links + 1 && p->block_table == (uint64_t)(uintptr_t)table.data &&
              p->block_table_stride[0] == 2 && p->block_table_stride[1] == 1 && p->pages == b &&
              p->seqlen_kv == 2 * skv,
          "block_table on the device: unread, its address, strides and the pool's pages reach a paged kernel of its "
          "own, seqlen_kv = 2 pages x %lld (%s)", (long long)skv, s == FJ_OK ? "ok" : fj_last_error());
    /* Split-KV: a decode step (1 query, 4096 keys) of b x hk packed jobs leaves the 132 SMs idle; with
     * a workspace its keys are cut into parts (256 keys at least: 16) and the combine kernel runs after,
     * on the same stream; a smaller workspace gives fewer parts, none gives one launch. */
    int64_t dq_shape[4] = {b, 1, h, d}, dkv_shape[4] = {b, 4096, hk, d}, dlse_shape[3] = {b, h, 1};
    uintptr_t decode_base = base + ((uintptr_t)1 << 32);
    DLTensor dq = uq, dk = uk, dv = uv, dout = uo, dlse = ul;
    dq.shape = dq_shape, dout.shape = dq_shape, dk.shape = dkv_shape, dv.shape = dkv_shape, dlse.shape = dlse_shape;
    size_t kv4096 = (size_t)(b * 4096 * hk * d) * 2;
    dq.data = (void *)decode_base;
    dk.data = (void *)(decode_base + 4096);
    dv.data = (void *)(decode_base + 4096 + kv4096);
    dout.data = (void *)(decode_base + 4096 + 2 * kv4096);
    dlse.data = (void *)(decode_base + 8192 + 2 * kv4096);
    fj_attention_args decode = args;
    decode.q = &dq, decode.k = &dk, decode.v = &dv, decode.o = &dout, decode.lse = &dlse;
    size_t need = 0;
    s = fj_attention_workspace_size(context, &decode, &need);
    int64_t rows = b * h * 1, parts = 16;
    check(s == FJ_OK && need == (size_t)(parts * rows * (d + 1)) * sizeof(float),
          "fj_attention_workspace_size of a decode step: %zu bytes (%lld parts of %lld rows of %lld floats) (%s)", need,
          (long long)parts, (long long)rows, (long long)(d + 1), s == FJ_OK ? "ok" : fj_last_error());
    int64_t work_shape[1] = {(int64_t)need};
    DLTensor work = {.data = (void *)(decode_base + 16384 + 2 * kv4096), .device = tq.device, .ndim = 1,
                     .dtype = {kDLUInt, 8, 1}, .shape = work_shape};
    decode.workspace = &work;
    launches = atomic_load(&fake->launches);
    s = fj_attention_forward(context, &decode);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 2 && contains(fake->last_function, GPU_COMBINE_SUFFIX) &&
              fake->last_grid[0] == (unsigned)((rows + GPU_COMBINE_WARPS - 1) / GPU_COMBINE_WARPS) &&
              fake->last_block[0] == 32 * GPU_COMBINE_WARPS && fake->last_shared == 0 &&
              fake->last_stream == (void *)0xbeef && p->kv_splits == parts && p->kv_split_tiles * parts >= 4096 / 64 &&
              p->o_partial == (uint64_t)(uintptr_t)work.data &&
              p->lse_partial == p->o_partial + (uint64_t)(parts * rows * d) * sizeof(float) && p->o == (uint64_t)dout.data,
          "a decode step with a workspace: two launches, the combine (%s, grid %u, block %u) after the parts (%lld of "
          "%lld tiles) on the caller's stream (%s)", fake->last_function, fake->last_grid[0], fake->last_block[0],
          (long long)p->kv_splits, (long long)p->kv_split_tiles, s == FJ_OK ? "ok" : fj_last_error());
    work_shape[0] = (int64_t)(3 * rows * (d + 1)) * (int64_t)sizeof(float) + 100;
    launches = atomic_load(&fake->launches);
    s = fj_attention_forward(context, &decode);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 2 && p->kv_splits == 3,
          "a workspace for 3 parts gives 3 parts (%lld) (%s)", (long long)p->kv_splits, s == FJ_OK ? "ok" : fj_last_error());
    decode.workspace = NULL;
    launches = atomic_load(&fake->launches);
    s = fj_attention_forward(context, &decode);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 && p->kv_splits == 1 &&
              !contains(fake->last_function, GPU_COMBINE_SUFFIX),
          "no workspace: one launch, one part (%s)", s == FJ_OK ? "ok" : fj_last_error());
    /* kv_split_keys: parts of a fixed size, whatever the SMs and the batch (4096 keys in parts of 1024: 4 of 16
     * tiles of 64), a workspace too small for them refused; -1: never cut */
    decode.kv_split_keys = 1024;
    s = fj_attention_workspace_size(context, &decode, &need);
    check(s == FJ_OK && need == (size_t)(4 * rows * (d + 1)) * sizeof(float),
          "kv_split_keys=1024: fj_attention_workspace_size asks for 4 parts (%zu bytes)", need);
    work_shape[0] = (int64_t)need;
    decode.workspace = &work;
    launches = atomic_load(&fake->launches);
    s = fj_attention_forward(context, &decode);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 2 && p->kv_splits == 4 && p->kv_split_tiles == 16,
          "kv_split_keys=1024: 4 parts of 16 tiles (%lld of %lld) (%s)", (long long)p->kv_splits,
          (long long)p->kv_split_tiles, s == FJ_OK ? "ok" : fj_last_error());
    work_shape[0] = (int64_t)need - 1;
    s = fj_attention_forward(context, &decode);
    check(s == FJ_INVALID_ARGUMENT && contains(fj_last_error(), "kv_split_keys=1024: 4 parts need a workspace of"),
          "kv_split_keys=1024 with a workspace a byte short: %s", fj_last_error());
    decode.kv_split_keys = -1;
    work_shape[0] = (int64_t)need;
    launches = atomic_load(&fake->launches);
    s = fj_attention_forward(context, &decode);
    p = (const gpu_attention_params *)(const void *)fake->last_params;
    check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 && p->kv_splits == 1,
          "kv_split_keys=-1: one launch though a workspace is given (%s)", s == FJ_OK ? "ok" : fj_last_error());
    decode.kv_split_keys = 0;
    decode.workspace = NULL;
    s = fj_attention_workspace_size(context, &args, &need);
    check(s == FJ_OK && need == 0, "a prefill call needs no workspace (%zu bytes)", need);

    uo.data = (void *)(base + q_bytes / 2);  /* o overlapping q */
    s = fj_attention_forward(context, &unmapped);
    check(s == FJ_INVALID_ARGUMENT && contains(fj_last_error(), "overlap"),
          "o overlapping q on the device is refused from the descriptors: %s", fj_last_error());
  }
  fj_context_destroy(context);
  free(q);
  free(k);
  free(v);
  free(o);
  free(lse);
}

static void expect_info_devices(void) {
  char command[1024];
  snprintf(command, sizeof command, "'%s' info --json 2>&1", FJ_TEST_CLI);
  FILE *p = popen(command, "r");
  char out[65536];
  size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
  out[n] = '\0';
  int rc = p ? pclose(p) : -1;
  check(rc == 0 && contains(out, "\"cuda:1\"") && contains(out, "Fake GPU 1") && contains(out, "sm_90a") &&
            contains(out, "\"sm_count\":133"),
        "flashjit info --json lists the fake's devices");
  snprintf(command, sizeof command, "'%s' info 2>&1", FJ_TEST_CLI);
  p = popen(command, "r");
  n = p ? fread(out, 1, sizeof out - 1, p) : 0;
  out[n] = '\0';
  rc = p ? pclose(p) : -1;
  check(rc == 0 && contains(out, "Fake GPU 0 (sm_90a, 132 SMs, 80.0 GiB, driver 13.0)"),
        "flashjit info lists cuda:0 with arch, SMs, memory and driver");
  /* the fake runs no kernel: the peak kernels' results are wrong, and info gives no figure, saying why */
  const char *gpu0 = strstr(out, "Fake GPU 0");
  check(gpu0 && contains(gpu0, "\n           peak unmeasured (the mma kernel's sums are wrong in 135168 of 135168 threads") &&
            contains(gpu0, "\n           copy unmeasured (the copy kernel's first and last MiB differ from its source"),
        "flashjit info on the fake: no peak figures, since its kernels compute nothing");
  if (!gpu0 || !contains(gpu0, "peak unmeasured")) printf("     %.2000s\n", out);
}

/* fj_attention_merge on a GPU: its kernel compiled once per dtype, linked, stored in the disk cache and
 * launched on the caller's stream with a warp per row; a second context loads it from the disk; tensors
 * of another device are refused naming it. */
static void test_merge_launch(void) {
  char dir[] = "/tmp/fj_merge_cache_XXXXXX";
  if (mkdtemp(dir) == NULL) return;
  static uint16_t o_a[2 * 3 * 4 * 64], o_b[2 * 3 * 4 * 64], o[2 * 3 * 4 * 64];
  static float lse_a[24], lse_b[24], lse[24];
  int64_t o_shape[4] = {2, 3, 4, 64}, lse_shape[3] = {2, 4, 3};
  DLTensor t_oa, t_ob, t_o, t_la, t_lb, t_l;
  fill_tensor(&t_oa, o_a, 4, o_shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&t_ob, o_b, 4, o_shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&t_o, o, 4, o_shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&t_la, lse_a, 3, lse_shape, kDLCUDA, 0, DTYPE_F32);
  fill_tensor(&t_lb, lse_b, 3, lse_shape, kDLCUDA, 0, DTYPE_F32);
  fill_tensor(&t_l, lse, 3, lse_shape, kDLCUDA, 0, DTYPE_F32);
  fj_merge_args args;
  fj_merge_args_init(&args);
  args.o_a = &t_oa, args.o_b = &t_ob, args.o = &t_o, args.lse_a = &t_la, args.lse_b = &t_lb, args.lse = &t_l;
  args.stream = (void *)0x5678;
  for (int round = 0; round < 2; round++) {
    fj_context_options options;
    fj_context_options_init(&options);
    options.device = "cuda:0";
    options.cache_dir = dir;
    fj_context *context = NULL;
    if (fj_context_create(&options, &context) != FJ_OK) {
      check(0, "a context on the fake's cuda:0: %s", fj_last_error());
      break;
    }
    int launches = atomic_load(&fake->launches), loads = atomic_load(&fake->module_loads);
    int links = atomic_load(&fake->link_completes);
    fj_status s = fj_attention_merge(context, &args);
    fj_status again = s == FJ_OK ? fj_attention_merge(context, &args) : s;
    check(s == FJ_OK && again == FJ_OK && atomic_load(&fake->launches) == launches + 2 &&
              strcmp(fake->last_function, "fj_attention_merge_bf16") == 0 && fake->last_grid[0] == 6 &&
              fake->last_block[0] == 32 * GPU_MERGE_WARPS && fake->last_stream == (void *)0x5678 &&
              atomic_load(&fake->module_loads) == loads + 1 && atomic_load(&fake->link_completes) == links + !round,
          "merge on cuda:0, %s: 2 launches of %s on %u blocks of %u, the module loaded once, %s (%s)",
          round ? "a second context" : "first", fake->last_function, fake->last_grid[0], fake->last_block[0],
          round ? "from the disk cache (no link)" : "linked once", s == FJ_OK ? "ok" : fj_last_error());
    DLTensor elsewhere = t_ob;
    elsewhere.device.device_id = 1;
    fj_merge_args moved = args;
    moved.o_b = &elsewhere;
    s = fj_attention_merge(context, &moved);
    check(s == FJ_INVALID_ARGUMENT && contains(fj_last_error(), "o_b.device=(cuda,1)"),
          "merge with o_b on another GPU: %s", fj_last_error());
    DLTensor host_a = t_oa;
    host_a.device.device_type = kDLCPU;
    fj_merge_args on_host = args;
    on_host.o_a = &host_a, on_host.o_b = &host_a, on_host.o = &host_a;
    DLTensor host_la = t_la, host_lb = t_lb;
    host_la.device.device_type = host_lb.device.device_type = kDLCPU;
    on_host.lse_a = &host_la, on_host.lse_b = &host_lb, on_host.lse = NULL;
    s = fj_attention_merge(context, &on_host);
    check(s == FJ_INVALID_ARGUMENT && contains(fj_last_error(), "o_a.device=(cpu,0) but the context's device is cuda:0"),
          "merge of host tensors on a cuda context: %s", fj_last_error());
    fj_context_destroy(context);
  }
  char command[256];
  snprintf(command, sizeof command, "rm -rf '%s'", dir);
  if (system(command) != 0) printf("     could not remove %s\n", dir);
}

/* The peak measurement's plumbing (cuda_peak.c): both kernels compiled, linked and loaded, launched on
 * the grids it sizes from the SM count, timed by events, every allocation and the module given back, and
 * no figure where the results are not what the kernels compute (the fake computes nothing). */
static void test_peak(void) {
  int launches = atomic_load(&fake->launches), allocs = atomic_load(&fake->allocs);
  int frees = atomic_load(&fake->frees), loads = atomic_load(&fake->module_loads);
  int unloads = atomic_load(&fake->module_unloads);
  backend_peak peak;
  fj_status s = cuda_backend.device_peak(1, &peak);
  /* mma: one calibration + 3 timed; copy: one warmup + 10 timed; cuda:1 has 133 SMs */
  check(s == FJ_OK && atomic_load(&fake->launches) - launches == 4 + 11 &&
            strcmp(fake->last_function, CUDA_PEAK_COPY_SYMBOL) == 0 && fake->last_grid[0] == 133 * 8 &&
            fake->last_block[0] == CUDA_PEAK_THREADS,
        "device_peak on the fake's cuda:1: %d launches, the last the copy's on %u blocks of %u (%s)",
        atomic_load(&fake->launches) - launches, fake->last_grid[0], fake->last_block[0],
        s == FJ_OK ? "ok" : fj_last_error());
  check(atomic_load(&fake->allocs) - allocs == 3 && atomic_load(&fake->frees) - frees == 3 &&
            atomic_load(&fake->module_loads) - loads == 1 && atomic_load(&fake->module_unloads) - unloads == 1,
        "device_peak gives back its 3 buffers and its module");
  check(peak.matrix_tflops == 0.0 && contains(peak.matrix_note, "136192 of 136192 threads") &&
            contains(peak.matrix_note, "expected 10.0625") && peak.copy_gbps == 0.0 &&
            contains(peak.copy_note, "differ from its source"),
        "no figures where the kernels computed nothing: \"%s\", \"%s\"", peak.matrix_note, peak.copy_note);

  /* a failing launch is the note, not a crash or a figure */
  setenv("FAKE_CUDA_FAIL", "cuLaunchKernel:719", 1);
  s = cuda_backend.device_peak(0, &peak);
  unsetenv("FAKE_CUDA_FAIL");
  check(s == FJ_OK && peak.matrix_tflops == 0.0 && contains(peak.matrix_note, "the mma kernel: cuda: cuLaunchKernel") &&
            contains(peak.copy_note, "the copy kernel: cuda: cuLaunchKernel"),
        "device_peak with failing launches: each note names the kernel and the driver's error: \"%s\"",
        peak.matrix_note);
}

/* An engine capturing its decode step into a CUDA graph (FAKE_CUDA_CAPTURING: the fake refuses every
 * call that is not stream work, as the driver does in the default global mode) makes its first call of
 * a shape inside the capture: the context, the link, the module, the function and its shared memory
 * limit are set up with the thread's capture mode relaxed, and the mode is given back as it was; a
 * warmed call changes no mode at all, and a refused call says what to do. */
static void test_graph_capture(void) {
  fake_cuda_capture_mode_fn mode = (fake_cuda_capture_mode_fn)dlsym(fake_handle, "fake_cuda_capture_mode");
  char cache_dir[] = "/tmp/fj_test_capture_XXXXXX";
  if (mode == NULL || mkdtemp(cache_dir) == NULL) {
    check(0, "the fake's capture mode is reachable and a cache folder made");
    return;
  }
  int refusals = atomic_load(&fake->capture_refusals), links = atomic_load(&fake->link_completes);
  int raises = atomic_load(&fake->func_set_attributes), launches = atomic_load(&fake->launches);
  setenv("FAKE_CUDA_CAPTURING", "1", 1);
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cuda:0";
  options.cache_dir = cache_dir;  /* empty: the call must link and load */
  fj_context *context = NULL;
  fj_status s = fj_context_create(&options, &context);
  check(s == FJ_OK, "a context made during a capture (%s)", s == FJ_OK ? "ok" : fj_last_error());
  /* d = 128 prefill: its default tile needs more than 48 KB of shared memory, so the first launch raises
   * the function's limit (cuFuncSetAttribute) too */
  int64_t b = 1, sq = 256, h = 4, d = 128, shape[4] = {b, sq, h, d};
  uint16_t *q = calloc((size_t)(b * sq * h * d), 2), *k = calloc((size_t)(b * sq * h * d), 2),
           *v = calloc((size_t)(b * sq * h * d), 2), *o = calloc((size_t)(b * sq * h * d), 2);
  DLTensor tq, tk, tv, to;
  fill_tensor(&tq, q, 4, shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&tk, k, 4, shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&tv, v, 4, shape, kDLCUDA, 0, DTYPE_BF16);
  fill_tensor(&to, o, 4, shape, kDLCUDA, 0, DTYPE_BF16);
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.causal = 1;
  args.stream = (void *)0xcafe;
  if (s == FJ_OK) s = fj_attention_forward(context, &args);
  check(s == FJ_OK && atomic_load(&fake->launches) == launches + 1 && atomic_load(&fake->link_completes) == links + 1 &&
            atomic_load(&fake->func_set_attributes) == raises + 1,
        "a shape's first call inside a capture links, loads, raises the shared memory limit and launches (%s)",
        s == FJ_OK ? "ok" : fj_last_error());
  check(atomic_load(&fake->capture_refusals) == refusals, "no call was refused: %d", atomic_load(&fake->capture_refusals) - refusals);
  check(mode() == 0 /* global */, "the thread's capture mode is given back (%d)", mode());
  int exchanges = atomic_load(&fake->capture_mode_exchanges);
  if (s == FJ_OK) s = fj_attention_forward(context, &args);
  check(s == FJ_OK && atomic_load(&fake->launches) == launches + 2 &&
            atomic_load(&fake->capture_mode_exchanges) == exchanges,
        "a warmed call inside a capture only launches (mode exchanges %d)",
        atomic_load(&fake->capture_mode_exchanges) - exchanges);
  /* what is not setup (a tool's allocation) is refused by the driver: the message says what to do */
  backend_device *device = NULL;
  void *dptr = NULL;
  fj_status opened = cuda_backend.device_open(0, 0, &device);
  s = opened == FJ_OK ? cuda_backend.memory_alloc(device, 4096, &dptr) : opened;
  check(s == FJ_DRIVER && contains(fj_last_error(), "CUDA graph capture is in progress") &&
            atomic_load(&fake->capture_refusals) == refusals + 1,
        "an allocation during a capture is refused with a hint: %s", fj_last_error());
  unsetenv("FAKE_CUDA_CAPTURING");
  if (opened == FJ_OK) cuda_backend.device_close(device);
  fj_context_destroy(context);
  free(q), free(k), free(v), free(o);
  nftw(cache_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The bench commands the GPU machine's measuring run makes (bench/gpu_bundle.sh measure, at small sizes),
 * on the fake: each must get as far as its launches and timing, so that a lent GPU's few minutes are not
 * spent finding a flag or a tensor the CLI gets wrong (a --grid of fp16/bf16 once failed on every point:
 * k and v were allocated fp32). The fake runs no kernel, so nothing is --check'ed and the times are its
 * events' 1.25 ms. */
static void test_bench_commands(void) {
  static const struct {
    const char *what, *args, *want;  /* want: a fragment of the JSON (or text, for the grid) */
  } runs[] = {
      {"the prefill grid of fp16 and bf16", "--grid prefill --tokens 1024 --width 128 --seqlens 512 --head-dims 64,128 "
       "--dtype fp16,bf16", "bf16   128 causal"},
      {"the decode grid", "--grid decode --batches 1,8 --seqlens 256,1024 --width 512 --head-dims 128", "kv_len"},
      {"a packed decode step, split", "--batch 8 --heads 32 --kv-heads 8 --seqlen 1 --seqlen-kv 4096 --causal --json",
       "\"kv_splits\":3"},
      {"the same unsplit", "--batch 8 --heads 32 --kv-heads 8 --seqlen 1 --seqlen-kv 4096 --causal --no-split-kv --json",
       "\"kv_splits\":1,"},
      {"the same unpacked (a forced config)", "--batch 8 --heads 32 --kv-heads 8 --seqlen 1 --seqlen-kv 4096 --causal "
       "--config 'block_m=64 block_n=64 warps=4 stages=3 q_in_regs=1 swizzle=1 pack_gqa=0' --json",
       "\"config_from\":\"--config\""},
      {"a paged decode step over an fp8 cache", "--batch 8 --heads 32 --kv-heads 8 --seqlen 1 --seqlen-kv 4096 --causal "
       "--page-size 16 --kv-dtype fp8_e4m3 --json", "\"kv_dtype\":\"fp8_e4m3\""},
      {"a windowed decode step", "--heads 32 --kv-heads 8 --seqlen 1 --seqlen-kv 8192 --causal --window-left 4095 --json",
       "\"window_left\":4095"},
      {"ragged prompts", "--heads 32 --kv-heads 8 --causal --seqlens-q 512,77,256 --json", "\"varlen_q\":true"},
      {"packed keys", "--heads 8 --kv-heads 2 --causal --seqlens-q 90,0,33 --packed-kv --json", "\"packed_kv\":true"},
      {"gpt-oss's decode with sinks", "--heads 64 --kv-heads 8 --head-dim 64 --batch 8 --seqlen 1 --seqlen-kv 4096 "
       "--causal --window-left 127 --sinks --json", "\"sinks\":true"},
      {"Gemma 2's soft-capped prefill", "--heads 16 --kv-heads 8 --head-dim 256 --seqlen 512 --causal --softcap 50 --json",
       "\"softcap\":50"},
      {"ALiBi", "--heads 8 --seqlen 300 --causal --alibi --json", "\"alibi\":true"},
      {"a causal mask as a bias", "--heads 8 --seqlen 300 --attn-bias bf16 --json", "\"attn_bias\":\"bf16\""},
      {"DeepSeek's MLA prefill", "--heads 16 --seqlen 512 --head-dim 192 --head-dim-v 128 --causal --json",
       "\"head_dim_v\":128"},
      {"its absorbed decode", "--batch 8 --heads 128 --kv-heads 1 --seqlen 1 --seqlen-kv 4096 --head-dim 576 "
       "--head-dim-v 512 --causal --json", "o_split=2"},
      /* 128 KV heads: 1024 keys, not the GPU run's 4096, whose k and v take 2.7 GB on the host and as much
       * again in the fake's "device" memory */
      {"its plain decode", "--batch 8 --heads 128 --seqlen 1 --seqlen-kv 1024 --head-dim 192 --head-dim-v 128 --causal "
       "--json", "\"head_dim_v\":128"},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
    char command[1024];
    snprintf(command, sizeof command, "'%s' bench --device cuda:0 --warmup 0 --repeat 2 %s 2>&1", FJ_TEST_CLI,
             runs[i].args);  /* bench's default dtype: bf16 */
    FILE *p = popen(command, "r");
    char out[16384];
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    int rc = p ? pclose(p) : -1;
    check(rc == 0 && contains(out, runs[i].want) && !contains(out, "failed"),
          "flashjit bench on the fake GPU, %s: exit %d, %s%s", runs[i].what, rc, contains(out, runs[i].want) ? "has " : "LACKS ",
          runs[i].want);
    if (rc != 0 || !contains(out, runs[i].want)) printf("     %s\n     %.2000s\n", command, out);
    const char *host = strstr(out, "\"host_us_per_call\":");
    if (i == 2)  /* a GPU call's host side is measured (calls enqueued back to back) */
      check(host != NULL && strtod(host + strlen("\"host_us_per_call\":"), NULL) > 0.0,
            "bench on the fake GPU reports the host's microseconds per call (%.40s)", host ? host : "absent");
  }
  /* the run's tune: each candidate compiled, launched, timed and compared with the reference; the fake
   * computes nothing, so every one is a wrong result, none a launch error or a crash */
  char command[1024];
  snprintf(command, sizeof command, "'%s' tune --device cuda:0 --batch 1 --heads 8 --seqlen 300 --head-dim 64 "
           "--dtype bf16 --causal --strategy random --trials 3 --json --quiet 2>&1", FJ_TEST_CLI);
  FILE *p = popen(command, "r");
  char out[16384];
  size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
  out[n] = '\0';
  int rc = p ? pclose(p) : -1;
  check(contains(out, "\"new_trials\":3") && contains(out, "\"wrong_result\":3") &&
            contains(out, "\"launch_error\":0") && contains(out, "\"crash\":0"),
        "flashjit tune on the fake GPU: 3 candidates measured and judged (all wrong: the fake computes nothing), "
        "exit %d", rc);
  if (!contains(out, "\"wrong_result\":3")) printf("     %.2000s\n", out);
}

/* Runs a shell command; its output (stdout, and stderr where the command redirects it) in out, its wait
 * status returned. */
static int run_command(const char *command, char *out, size_t size) {
  FILE *p = popen(command, "r");
  size_t n = p ? fread(out, 1, size - 1, p) : 0;
  out[n] = '\0';
  return p ? pclose(p) : -1;
}

/* bench --device all on the fake's two GPUs and the CPU: one report each, in the registry's order; a GPU whose
 * launches fail is a failed row, the others still measured, and the exit status says so. */
static void test_device_list_bench(void) {
  const char *shape = "--seqlen 64 --heads 2 --head-dim 64 --warmup 0 --repeat 2";
  char command[1024], out[65536];
  snprintf(command, sizeof command, "'%s' bench --device all %s --json 2>&1", FJ_TEST_CLI, shape);
  int rc = run_command(command, out, sizeof out);
  const char *cpu = strstr(out, "\"device_id\":\"cpu:0\""), *gpu0 = strstr(out, "\"device_id\":\"cuda:0\""),
             *gpu1 = strstr(out, "\"device_id\":\"cuda:1\"");
  check(rc == 0 && out[0] == '[' && cpu && gpu0 && gpu1 && cpu < gpu0 && gpu0 < gpu1 &&
            contains(gpu0, "\"ms\":1.25,") && contains(gpu1, "\"ms\":1.25,") && !contains(out, "\"error\""),
        "bench --device all --json on the fake: cpu:0, cuda:0, cuda:1 in turn, the GPUs at the fake's 1.25 ms (exit %d)",
        rc);
  if (rc != 0 || !gpu1) printf("     %.2000s\n", out);

  snprintf(command, sizeof command, "FAKE_CUDA_FAIL=cuLaunchKernel:701 '%s' bench --device cuda:1,cpu %s 2>&1",
           FJ_TEST_CLI, shape);
  rc = run_command(command, out, sizeof out);
  const char *table = strstr(out, "\ndevices     the same problem on 2 devices; x = throughput / cpu:0's");
  check(WIFEXITED(rc) && WEXITSTATUS(rc) == 1 && table &&
            contains(table, "\n  cuda:1   failed (exit 1): cuda: cuLaunchKernel") && contains(table, "\n  cpu:0    ") &&
            contains(table, " 1.00x  -"),
        "bench --device cuda:1,cpu with failing launches: cuda:1 a failed row, cpu:0 measured and the ratios' base, "
        "exit %d", WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
  if (!table) printf("     %.2000s\n", out);

  /* The decode grid on every device: the GPUs' columns at the fake's 1.25 ms (a point's GB/s is its bytes over
   * that), each as a ratio to the CPU's rate, the first device's */
  const char *grid = "--grid decode --batches 1,2 --seqlens 4096 --tokens 8192 --width 512 --warmup 0 --repeat 1";
  snprintf(command, sizeof command, "'%s' bench --device all %s 2>&1", FJ_TEST_CLI, grid);
  rc = run_command(command, out, sizeof out);
  table = strstr(out, "\ndevices     the grid on 3 devices, GB/s; x = the rate / cpu:0's at the same point");
  const char *header = table ? strstr(table, "|      cpu:0       x |     cuda:0       x |     cuda:1       x\n") : NULL;
  /* bf16, 4 heads of 128 in 1 KV head, 4096 keys: q and o 2 x b*4*128*2 bytes, k and v 2 x b*4096*128*2; in
   * each row, after the CPU's column (the base, 1.00x), both GPUs' GB/s as the fake's 1.25 ms makes them */
  double bytes = 2.0 * 4 * 128 * 2 + 2.0 * 4096 * 128 * 2;
  char rate1[64], rate2[64], line1[256] = "", line2[256] = "";
  snprintf(rate1, sizeof rate1, " | %10.1f ", bytes / 1.25e-3 / 1e9);
  snprintf(rate2, sizeof rate2, " | %10.1f ", 2 * bytes / 1.25e-3 / 1e9);
  const char *at1 = header ? strstr(header, "\nbf16   128     1   4096     4   1 | ") : NULL;
  const char *at2 = header ? strstr(header, "\nbf16   128     2   4096     4   1 | ") : NULL;
  if (at1) snprintf(line1, sizeof line1, "%.*s", (int)strcspn(at1 + 1, "\n"), at1 + 1);
  if (at2) snprintf(line2, sizeof line2, "%.*s", (int)strcspn(at2 + 1, "\n"), at2 + 1);
  const char *after1 = strstr(line1, "   1.00x"), *after2 = strstr(line2, "   1.00x");
  int gpus1 = 0, gpus2 = 0;
  for (const char *x = after1; x && (x = strstr(x, rate1)) != NULL; x++) gpus1++;
  for (const char *x = after2; x && (x = strstr(x, rate2)) != NULL; x++) gpus2++;
  check(rc == 0 && header && at1 && at2 && gpus1 == 2 && gpus2 == 2,
        "bench --device all --grid decode on the fake: cpu:0, cuda:0, cuda:1 side by side, the GPUs at the fake's "
        "1.25 ms (exit %d)", rc);
  if (gpus1 != 2 || gpus2 != 2) printf("     %.3000s\n", out);

  /* a device that cannot be opened: its entry says why, the other is measured, the exit status says so */
  snprintf(command, sizeof command, "FAKE_CUDA_FAIL=cuDevicePrimaryCtxRetain:2 '%s' bench --device cuda:0,cpu %s --json",
           FJ_TEST_CLI, grid);
  rc = run_command(command, out, sizeof out);
  check(WIFEXITED(rc) && WEXITSTATUS(rc) == 1 &&
            strncmp(out, "[{\"device_id\":\"cuda:0\",\"exit\":1,\"error\":\"cuda:0: cuda: cuDevicePrimaryCtxRetain", 68) == 0 &&
            contains(out, "},{\"grid\":\"decode\",\"device\":\"cpu: ") && contains(out, "\"measured\":true"),
        "bench --device cuda:0,cpu --grid --json with cuda:0 failing to open: its error object, then cpu:0's grid, "
        "exit %d", WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
  if (!contains(out, "\"grid\"")) printf("     %.2000s\n", out);
}

static int run_scenario(const char *scenario) {
  if (strcmp(scenario, "nolib") == 0) {
    expect_no_devices("cannot open shared object file");
    expect_no_devices("/nonexistent/libcuda.so.1");
    expect_info_reason("cannot open shared object file");
  } else if (strcmp(scenario, "nosym") == 0) {
    expect_no_devices("lacks the required symbol cuLaunchKernel");
  } else if (strcmp(scenario, "initfail") == 0) {
    expect_no_devices("cuInit: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)");
    expect_info_reason("cuInit: CUDA_ERROR_NO_DEVICE");
  } else if (strcmp(scenario, "sm86") == 0) {
    backend_device_info info;
    fj_status s = cuda_backend.device_info(0, &info);
    check(s == FJ_OK && strcmp(info.arch, "sm_86") == 0, "cc 8.6 is %s (no arch-specific suffix)", info.arch);
    /* MLA's absorbed decode (q and k 576, v 512) fits no config in sm_86's 99 KB of shared memory: the call
     * says so (FJ_UNSUPPORTED, naming the device), where it once blamed the default heuristic (FJ_INTERNAL) */
    fj_context_options options;
    fj_context_options_init(&options);
    options.device = "cuda:0";
    options.disable_disk_cache = 1;
    fj_context *context = NULL;
    s = fj_context_create(&options, &context);
    check(s == FJ_OK, "a context on the cc 8.6 fake: %s", s == FJ_OK ? "" : fj_last_error());
    if (s == FJ_OK) {
      int64_t q_shape[4] = {1, 1, 16, 576}, k_shape[4] = {1, 64, 1, 576}, v_shape[4] = {1, 64, 1, 512},
              o_shape[4] = {1, 1, 16, 512};
      static uint16_t q[16 * 576], k[64 * 576], v[64 * 512], o[16 * 512];
      DLTensor tq, tk, tv, to;
      fill_tensor(&tq, q, 4, q_shape, kDLCUDA, 0, DTYPE_BF16);
      fill_tensor(&tk, k, 4, k_shape, kDLCUDA, 0, DTYPE_BF16);
      fill_tensor(&tv, v, 4, v_shape, kDLCUDA, 0, DTYPE_BF16);
      fill_tensor(&to, o, 4, o_shape, kDLCUDA, 0, DTYPE_BF16);
      fj_attention_args args;
      fj_attention_args_init(&args);
      args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to;
      s = fj_attention_forward(context, &args);
      check(s == FJ_UNSUPPORTED && contains(fj_last_error(), "no config of attention_fwd_nvptx can run") &&
                contains(fj_last_error(), "sm_86"),
            "d=576 dv=512 on sm_86 -> %s: \"%s\"", fj_status_string(s), fj_last_error());
      fj_context_destroy(context);
    }
    /* and a tune run skips it (one such shape in an operator's list must not stop the others) */
    char command[1024], out[8192];
    snprintf(command, sizeof command, "'%s' tune --device cuda:0 --batch 1 --heads 16 --kv-heads 1 --seqlen 1 "
             "--seqlen-kv 1024 --head-dim 576 --head-dim-v 512 --json 2>&1", FJ_TEST_CLI);
    FILE *p = popen(command, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    int rc = p ? pclose(p) : -1;
    check(rc == 0 && contains(out, "\"stopped\":\"unsupported\"") && contains(out, "no config of attention_fwd_nvptx"),
          "flashjit tune of it on sm_86: exit %d, skipped as unsupported%s%.1500s", rc, rc == 0 ? "" : ": ", rc == 0 ? "" : out);
  } else if (strcmp(scenario, "fake") == 0) {
    /* The same library the backend opened: dlopen of one path gives one handle. */
    check(cuda_backend.device_count() == 2, "the fake loads");
    fake_handle = dlopen(FJ_TEST_FAKE_CUDA, RTLD_NOW | RTLD_NOLOAD);
    fake_cuda_state_fn state = fake_handle ? (fake_cuda_state_fn)dlsym(fake_handle, "fake_cuda_state") : NULL;
    fake = state ? state() : NULL;
    if (fake == NULL) {
      check(0, "the fake's counters are reachable (%s)", dlerror());
    } else {
      test_discovery();
      test_slots();
      test_caller_context();
      test_public_api();
      test_graph_capture();
      check(atomic_load(&fake->context_syncs) == 0, "nothing ever synchronized a whole context");
      expect_info_devices();
      test_peak();
      test_merge_launch();
      test_bench_commands();
      test_device_list_bench();
    }
  } else {
    printf("unknown scenario %s\n", scenario);
    return 2;
  }
  printf("%s: %d passed, %d failed\n", scenario, passed, failed);
  return failed ? 1 : 0;
}

/* ---- the parent: one child per scenario ---- */


static void spawn(const char *self, const char *scenario, const char *const *env) {
  printf("--- %s\n", scenario);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    unsetenv("FAKE_CUDA_FAIL");
    unsetenv("FLASHJIT_DEVICE");
    for (int i = 0; env[i] != NULL; i += 2) setenv(env[i], env[i + 1], 1);
    execl(self, self, scenario, (char *)NULL);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "scenario %s (exit %d%s)", scenario,
        WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? ", killed by a signal" : "");
}

int main(int argc, char **argv) {
  if (argc > 1) return run_scenario(argv[1]);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    printf("cannot find /proc/self/exe\n");
    return 1;
  }
  self[n] = '\0';
  char cache_dir[] = "/tmp/fj_test_cuda_driver_XXXXXX";
  if (mkdtemp(cache_dir) == NULL) {
    printf("mkdtemp failed\n");
    return 1;
  }
  const char *nolib[] = {"FLASHJIT_CUDA_LIBRARY", "/nonexistent/libcuda.so.1", "FLASHJIT_CACHE_DIR", cache_dir,
                         NULL};
  const char *nosym[] = {"FLASHJIT_CUDA_LIBRARY", FJ_TEST_FAKE_CUDA_NOLAUNCH, "FLASHJIT_CACHE_DIR", cache_dir,
                         NULL};
  const char *initfail[] = {"FLASHJIT_CUDA_LIBRARY", FJ_TEST_FAKE_CUDA, "FAKE_CUDA_INIT_RESULT", "100",
                            "FLASHJIT_CACHE_DIR", cache_dir, NULL};
  const char *sm86[] = {"FLASHJIT_CUDA_LIBRARY", FJ_TEST_FAKE_CUDA, "FAKE_CUDA_CC", "86", "FLASHJIT_CACHE_DIR", cache_dir,
                        NULL};
  const char *fake_env[] = {"FLASHJIT_CUDA_LIBRARY", FJ_TEST_FAKE_CUDA, "FAKE_CUDA_DEVICES", "2",
                            "FLASHJIT_CACHE_DIR", cache_dir, NULL};
  spawn(self, "nolib", nolib);
  spawn(self, "nosym", nosym);
  spawn(self, "initfail", initfail);
  spawn(self, "sm86", sm86);
  spawn(self, "fake", fake_env);
  nftw(cache_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return check_summary();
}
