/* tune_device.h: device memory, copies, waiting and timing for the tuner and the `flashjit` command,
 * with the backend table's optional slots filled by their written defaults (host memory and memcpy, nothing
 * to wait for, the wall clock around a synchronous launch), so that measuring code reads the same on the
 * CPU and on a GPU. It lives in tuner/ because the tuner's children need it inside the core library; the
 * command (bench/) links that library and uses the same helpers rather than a second copy. */
#ifndef FJ_TUNE_DEVICE_H
#define FJ_TUNE_DEVICE_H
#include <stddef.h>
#include <dlpack/dlpack.h>
#include "core/host_tensor.h"
#include "core/problem.h"
#include "flashjit.h"

/* 1 when the context's tensors are host memory (the backend has no memory slots): device mirrors are
 * then the host tensors themselves, with no copy. */
int tune_device_is_host(const fj_context *context);

fj_status tune_device_alloc(fj_context *context, size_t bytes, void **out);
void tune_device_free(fj_context *context, void *pointer);  /* NULL-safe */
fj_status tune_copy_to_device(fj_context *context, void *dst, const void *src, size_t bytes);
fj_status tune_copy_to_host(fj_context *context, void *dst, const void *src, size_t bytes);
/* Waits for the work enqueued on stream (NULL: the default stream). */
fj_status tune_device_synchronize(fj_context *context, void *stream);

/* A host tensor's twin on the context's device: same shape, strides and dtype; data is device memory
 * holding a copy of the host allocation (or the host memory itself, see tune_device_is_host). Like
 * host_tensor, t.shape and t.strides point into the struct: never copy it by value. */
typedef struct tune_mirror {
  DLTensor t;
  int64_t shape[4];
  int64_t strides[4];
  void *allocation;      /* device memory to free; NULL when t.data is the host's own memory */
  size_t bytes;
  const host_tensor *host;
} tune_mirror;

/* Allocates the twin and copies the host tensor's whole allocation into it (device_index: the DLPack
 * device id the tensors name). FJ_OUT_OF_MEMORY or the backend's status, naming `what`. */
fj_status tune_mirror_upload(fj_context *context, const host_tensor *host, const char *what, tune_mirror *out);
/* Copies the host tensor into an existing twin again (after poisoning the host copy, say). */
fj_status tune_mirror_refresh(fj_context *context, tune_mirror *mirror);
/* Copies the twin back into its host tensor (waits for the default stream first). */
fj_status tune_mirror_download(fj_context *context, tune_mirror *mirror);
void tune_mirror_free(fj_context *context, tune_mirror *mirror);  /* NULL-safe, idempotent */
/* A split-KV workspace of at least `bytes` on the context's device: host zeros (*host) and their twin
 * (*mirror), kept when already that large, else made anew; *data is where it starts on the device.
 * FJ_OUT_OF_MEMORY or the upload's status. */
fj_status tune_workspace_ensure(fj_context *context, size_t bytes, host_tensor *host, tune_mirror *mirror,
                                void **data);

/* One launch timed on stream: the backend's timer (device events) when it has one, else the wall clock
 * around the launch followed by a synchronize. */
typedef struct tune_timer {
  void *backend_timer;
  double wall_start_ms;
} tune_timer;
fj_status tune_timer_start(fj_context *context, void *stream, tune_timer *timer);
/* Ends the interval, waits for it, and gives its milliseconds. */
fj_status tune_timer_stop(fj_context *context, void *stream, tune_timer *timer, double *milliseconds);

/* Validates the attention call on the mirrors of q, k, v, o (and lse, the block table, seqlens_kv,
 * cu_seqlens_q and sinks where not NULL) with host's masks (causal and sliding window), softcap and
 * max_seqlen_q into *out:
 * a problem whose views point at device memory, for launches; checks still read the host problem. */
/* The heads' sink logits the tuner and bench give a shape with sinks: [heads] fp32 from -1 to 1, of the
 * order of the scores, so that a sink's term is neither all of a row's sum nor nothing. 0, or -1 when
 * out of memory. */
int tune_sinks_alloc(host_tensor *sinks, int64_t heads);

fj_status tune_device_problem(const tune_mirror *q, const tune_mirror *k, const tune_mirror *v,
                              tune_mirror *o, tune_mirror *lse, const tune_mirror *table, const tune_mirror *lens,
                              const tune_mirror *cu, const tune_mirror *sinks, const attention_problem *host,
                              attention_problem *out);
#endif
