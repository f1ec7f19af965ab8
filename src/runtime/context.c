/* context.c: creating and destroying an fj_context: pick the device, learn its codegen target, make
 * the disk cache's folder usable, open the device (threads for the CPU), and set up the empty kernel
 * table. Everything a call later needs is resolved here once, so the call path stays short. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/binary_cache.h"
#include "core/error.h"
#include "core/log.h"
#include "core/threadpool.h"
#include "runtime/runtime_internal.h"

/* The first version of the options struct ends after disable_disk_cache; callers built against a
 * newer header may pass a larger struct_size, of which we read only what we know. */
#define RUNTIME_OPTIONS_V1_SIZE \
  (offsetof(fj_context_options, disable_disk_cache) + sizeof(int))

void fj_context_options_init_size(fj_context_options *options, size_t size) {
  if (options == NULL || size < sizeof(uint32_t)) return;
  fj_context_options defaults;
  memset(&defaults, 0, sizeof defaults);  /* auto device, default cache folder, a thread per core */
  if (size > sizeof defaults) size = sizeof defaults;
  defaults.struct_size = (uint32_t)size;
  memcpy(options, &defaults, size);
}

void(fj_context_options_init)(fj_context_options *options) { fj_context_options_init_size(options, sizeof *options); }

fj_status fj_context_destroy(fj_context *context) {
  if (context == NULL) return FJ_OK;
  runtime_table_destroy(context);
  runtime_merge_destroy(context);
  if (context->backend != NULL && context->backend->device_close != NULL)
    context->backend->device_close(context->device);
  pthread_cond_destroy(&context->built);
  pthread_mutex_destroy(&context->lock);
  free(context);
  return FJ_OK;
}

fj_status fj_context_create(const fj_context_options *options, fj_context **out) {
  core_error_clear();
  if (out == NULL) return core_error(FJ_INVALID_ARGUMENT, "out is NULL");
  *out = NULL;
  fj_context_options defaults;
  if (options == NULL) {
    fj_context_options_init(&defaults);
    options = &defaults;
  }
  if (options->struct_size < RUNTIME_OPTIONS_V1_SIZE)
    return core_error(FJ_INVALID_ARGUMENT,
                      "options->struct_size=%u is too small (%zu); call fj_context_options_init first",
                      options->struct_size, (size_t)RUNTIME_OPTIONS_V1_SIZE);
  if (options->num_threads < 0)
    return core_error(FJ_INVALID_ARGUMENT, "options->num_threads=%d must be >= 0 (0 = one per core)",
                      options->num_threads);
  if (options->cache_dir != NULL && options->cache_dir[0] == '\0')
    return core_error(FJ_INVALID_ARGUMENT, "options->cache_dir is \"\"; pass NULL for the default");

  const fj_backend *backend = NULL;
  int index = -1;
  fj_status status = backend_select(options->device, &backend, &index);
  if (status != FJ_OK) return status;

  fj_context *context = calloc(1, sizeof *context);
  if (context == NULL) return core_error(FJ_OUT_OF_MEMORY, "no memory for a context");
  if (pthread_mutex_init(&context->lock, NULL) != 0) {
    free(context);
    return core_error(FJ_INTERNAL, "pthread_mutex_init failed");
  }
  if (pthread_cond_init(&context->built, NULL) != 0) {
    pthread_mutex_destroy(&context->lock);
    free(context);
    return core_error(FJ_INTERNAL, "pthread_cond_init failed");
  }
  context->backend = backend;
  context->device_index = index;
  context->family = kernel_family_for_backend(backend->name);
  context->disk_cache = !options->disable_disk_cache;
  /* a struct of an older header ends before disable_served_log: the default, noting */
  context->note_served = !(options->struct_size >= offsetof(fj_context_options, disable_served_log) + sizeof(int) &&
                           options->disable_served_log);

  status = backend->device_info(index, &context->info);
  if (status == FJ_OK) status = backend->codegen_target(index, &context->target);
  if (status != FJ_OK) goto fail;

  if (options->cache_dir != NULL) {
    if (strlen(options->cache_dir) >= sizeof context->cache_dir) {
      status = core_error(FJ_INVALID_ARGUMENT, "options->cache_dir is longer than %zu bytes",
                          sizeof context->cache_dir - 1);
      goto fail;
    }
    snprintf(context->cache_dir, sizeof context->cache_dir, "%s", options->cache_dir);
  } else {
    status = bincache_default_dir(context->cache_dir, sizeof context->cache_dir);
    if (status != FJ_OK) goto fail;
  }
  if (context->disk_cache) {
    status = bincache_prepare(context->cache_dir);
    if (status != FJ_OK) {
      status = FJ_IO;  /* the public contract: an unusable cache folder is FJ_IO, whatever the cause */
      core_error_prefix("cache_dir: ");
      goto fail;
    }
  }

  status = backend->device_open(index, options->num_threads, &context->device);
  if (status != FJ_OK) goto fail;
  context->workers = options->num_threads > 0 ? options->num_threads : core_online_cores();
  if (context->workers < 1) context->workers = 1;

  core_log(LOG_INFO, "context on %s:%d (%s, %s), cache %s%s", backend->name, index, context->info.name,
           context->target.cpu, context->cache_dir, context->disk_cache ? "" : " (disabled)");
  *out = context;
  return FJ_OK;

fail:
  fj_context_destroy(context);
  return status;
}

fj_status fj_context_device_name(const fj_context *context, char *buffer, size_t size) {
  core_error_clear();
  if (context == NULL) return core_error(FJ_INVALID_ARGUMENT, "context is NULL");
  if (buffer == NULL || size == 0)
    return core_error(FJ_INVALID_ARGUMENT, "buffer is NULL or size is 0");
  snprintf(buffer, size, "%s: %s", context->backend->name, context->info.name);
  return FJ_OK;
}

const fj_backend *runtime_backend(const fj_context *context) { return context->backend; }
backend_device *runtime_device(const fj_context *context) { return context->device; }
int runtime_device_index(const fj_context *context) { return context->device_index; }
const jit_target *runtime_target(const fj_context *context) { return &context->target; }
const char *runtime_cache_dir(const fj_context *context) { return context->cache_dir; }

const char *runtime_timing_method(const fj_context *context) {
  /* One method per backend: a winner timed by wall clock on the host is not comparable with one timed
   * by device events, so the method is part of every tuning lookup. */
  const char *method = context->backend->timing_method;
  return method != NULL ? method : "cpu-wall";
}
