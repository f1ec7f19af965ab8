/* tune_device.c: the measuring side of the backend table with its defaults filled in (see
 * tune_device.h). On the CPU every slot is NULL, so memory is the host's, copies are memcpy, and a
 * launch is timed by the wall clock because it returns when the work is done; on a GPU the backend's own
 * slots allocate device memory and time launches with events on the stream. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "core/error.h"
#include "runtime/runtime.h"
#include "tuner/tune_device.h"

int tune_device_is_host(const fj_context *context) {
  const fj_backend *backend = runtime_backend(context);
  return backend->memory_alloc == NULL;
}

fj_status tune_device_alloc(fj_context *context, size_t bytes, void **out) {
  const fj_backend *backend = runtime_backend(context);
  if (backend->memory_alloc != NULL) return backend->memory_alloc(runtime_device(context), bytes, out);
  *out = malloc(bytes ? bytes : 1);
  if (*out == NULL) return core_error(FJ_OUT_OF_MEMORY, "no host memory for %zu bytes", bytes);
  return FJ_OK;
}

void tune_device_free(fj_context *context, void *pointer) {
  if (pointer == NULL) return;
  const fj_backend *backend = runtime_backend(context);
  if (backend->memory_alloc != NULL) {
    if (backend->memory_free != NULL) backend->memory_free(runtime_device(context), pointer);
    return;
  }
  free(pointer);
}

fj_status tune_copy_to_device(fj_context *context, void *dst, const void *src, size_t bytes) {
  const fj_backend *backend = runtime_backend(context);
  if (backend->copy_to_device != NULL) return backend->copy_to_device(runtime_device(context), dst, src, bytes);
  if (bytes) memcpy(dst, src, bytes);
  return FJ_OK;
}

fj_status tune_copy_to_host(fj_context *context, void *dst, const void *src, size_t bytes) {
  const fj_backend *backend = runtime_backend(context);
  if (backend->copy_to_host != NULL) return backend->copy_to_host(runtime_device(context), dst, src, bytes);
  if (bytes) memcpy(dst, src, bytes);
  return FJ_OK;
}

fj_status tune_device_synchronize(fj_context *context, void *stream) {
  const fj_backend *backend = runtime_backend(context);
  if (backend->synchronize == NULL) return FJ_OK;
  return backend->synchronize(runtime_device(context), stream);
}

/* ---- mirrors ---------------------------------------------------------------------------------------- */

fj_status tune_mirror_upload(fj_context *context, const host_tensor *host, const char *what, tune_mirror *out) {
  memset(out, 0, sizeof *out);
  out->host = host;
  out->t = host->t;
  memcpy(out->shape, host->shape, sizeof out->shape);
  memcpy(out->strides, host->strides, sizeof out->strides);
  out->t.shape = out->shape;
  out->t.strides = out->strides;
  if (tune_device_is_host(context)) return FJ_OK;  /* the host memory is the device's */

  const fj_backend *backend = runtime_backend(context);
  out->bytes = host->allocation_bytes;
  fj_status status = tune_device_alloc(context, out->bytes, &out->allocation);
  if (status != FJ_OK) {
    out->allocation = NULL;
    core_error_prefix("allocating %s on the device: ", what);
    return status;
  }
  /* The view keeps its offset into the allocation, so strided and offset views mirror exactly. */
  size_t offset = (size_t)((const char *)host->t.data - (const char *)host->allocation);
  out->t.data = (char *)out->allocation + offset;
  out->t.byte_offset = host->t.byte_offset;
  out->t.device.device_type = (DLDeviceType)backend->device_type;
  out->t.device.device_id = runtime_device_index(context);
  status = tune_mirror_refresh(context, out);
  if (status != FJ_OK) {
    core_error_prefix("copying %s to the device: ", what);
    tune_mirror_free(context, out);
  }
  return status;
}

fj_status tune_mirror_refresh(fj_context *context, tune_mirror *mirror) {
  if (mirror->allocation == NULL) return FJ_OK;
  return tune_copy_to_device(context, mirror->allocation, mirror->host->allocation, mirror->bytes);
}

fj_status tune_mirror_download(fj_context *context, tune_mirror *mirror) {
  if (mirror->allocation == NULL) return FJ_OK;
  fj_status status = tune_device_synchronize(context, NULL);
  if (status != FJ_OK) return status;
  return tune_copy_to_host(context, mirror->host->allocation, mirror->allocation, mirror->bytes);
}

void tune_mirror_free(fj_context *context, tune_mirror *mirror) {
  if (mirror == NULL || mirror->allocation == NULL) return;
  tune_device_free(context, mirror->allocation);
  mirror->allocation = NULL;
  mirror->t.data = NULL;
}

fj_status tune_workspace_ensure(fj_context *context, size_t bytes, host_tensor *host, tune_mirror *mirror,
                                void **data) {
  /* the host tensor's size, not the mirror's: on the CPU the mirror is the host memory itself */
  if (host->allocation == NULL || host->allocation_bytes < bytes) {
    tune_mirror_free(context, mirror);
    host_tensor_free(host);
    int64_t floats[1] = {(int64_t)((bytes + sizeof(float) - 1) / sizeof(float))};
    if (host_tensor_alloc(host, DTYPE_F32, 1, floats, NULL) != 0)
      return core_error(FJ_OUT_OF_MEMORY, "no host memory for a split-KV workspace of %zu bytes", bytes);
    fj_status status = tune_mirror_upload(context, host, "the split-KV workspace", mirror);
    if (status != FJ_OK) return status;
  }
  *data = (char *)mirror->t.data + mirror->t.byte_offset;
  return FJ_OK;
}

/* ---- timing ----------------------------------------------------------------------------------------- */

static double tune_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

fj_status tune_timer_start(fj_context *context, void *stream, tune_timer *timer) {
  const fj_backend *backend = runtime_backend(context);
  memset(timer, 0, sizeof *timer);
  if (backend->timer_start != NULL && backend->timer_stop != NULL)
    return backend->timer_start(runtime_device(context), stream, &timer->backend_timer);
  timer->wall_start_ms = tune_wall_ms();
  return FJ_OK;
}

fj_status tune_timer_stop(fj_context *context, void *stream, tune_timer *timer, double *milliseconds) {
  const fj_backend *backend = runtime_backend(context);
  *milliseconds = 0.0;
  if (timer->backend_timer != NULL) {
    void *t = timer->backend_timer;
    timer->backend_timer = NULL;
    return backend->timer_stop(runtime_device(context), t, milliseconds);
  }
  /* A backend without a timer but with a queue: the launch only counts once the queue has drained. */
  fj_status status = tune_device_synchronize(context, stream);
  *milliseconds = tune_wall_ms() - timer->wall_start_ms;
  return status;
}

int tune_sinks_alloc(host_tensor *sinks, int64_t heads) {
  int64_t shape[1] = {heads};
  if (host_tensor_alloc(sinks, DTYPE_F32, 1, shape, NULL) != 0) return -1;
  for (int64_t h = 0; h < heads; h++) ((float *)sinks->t.data)[h] = 0.5f * (float)(h % 5) - 1.0f;
  return 0;
}

fj_status tune_device_problem(const tune_mirror *q, const tune_mirror *k, const tune_mirror *v,
                              tune_mirror *o, tune_mirror *lse, const tune_mirror *table, const tune_mirror *lens,
                              const tune_mirror *cu, const tune_mirror *sinks, const attention_problem *host,
                              attention_problem *out) {
  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q->t;
  args.k = &k->t;
  args.v = &v->t;
  args.o = &o->t;
  args.lse = lse ? &lse->t : NULL;
  /* the host problem's masks as a window: each side where it is bounded (causal is its right side at 0) */
  args.windowed = 1;
  args.window_left = host->key.window ? host->window_left : -1;
  args.window_right = host->key.causal ? host->window_right : -1;
  args.block_table = table ? &table->t : NULL;
  args.seqlens_kv = lens ? &lens->t : NULL;
  args.cu_seqlens_q = cu ? &cu->t : NULL;
  args.max_seqlen_q = host->seqlen_q;
  args.sinks = sinks ? &sinks->t : NULL;
  args.softcap = host->softcap;
  return core_validate_attention(&args, out);
}
