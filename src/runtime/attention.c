/* attention.c: the public forward call. It validates (nothing is written on bad input), checks that
 * the tensors live where the context's device can reach them, answers the empty cases without a
 * kernel, and otherwise finds the kernel (table -> disk cache -> JIT) and launches it. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "runtime/runtime_internal.h"

void fj_attention_args_init_size(fj_attention_args *args, size_t size) {
  if (args == NULL || size < sizeof(uint32_t)) return;
  fj_attention_args defaults;
  memset(&defaults, 0, sizeof defaults);  /* no tensors, scale 0 (1/sqrt(d)), not causal, NULL stream */
  defaults.window_left = defaults.window_right = -1;  /* no window */
  if (size > sizeof defaults) size = sizeof defaults;
  defaults.struct_size = (uint32_t)size;
  memcpy(args, &defaults, size);
}

void(fj_attention_args_init)(fj_attention_args *args) { fj_attention_args_init_size(args, sizeof *args); }

const char *runtime_device_type_name(int type) {
  switch (type) {
    case kDLCPU: return "cpu";
    case kDLCUDA: return "cuda";
    case kDLCUDAHost: return "cuda_host";
    case kDLOpenCL: return "opencl";
    case kDLVulkan: return "vulkan";
    case kDLMetal: return "metal";
    case kDLVPI: return "vpi";
    case kDLROCM: return "rocm";
    case kDLROCMHost: return "rocm_host";
    case kDLExtDev: return "ext_dev";
    case kDLCUDAManaged: return "cuda_managed";
    default: return "unknown";
  }
}

static fj_status runtime_check_device(const fj_context *context, const attention_problem *problem) {
  const fj_backend *backend = context->backend;
  int type = (int)problem->device.device_type;
  int same = type == backend->device_type;
  /* The CPU is one device whatever id a caller writes; a GPU's id must name the context's GPU. */
  if (same && backend->device_type != kDLCPU) same = problem->device.device_id == context->device_index;
  if (same) return FJ_OK;
  if (backend->device_type == kDLCPU)
    return core_error(FJ_INVALID_ARGUMENT, "q.device=(%s,%d) but the context's device is %s",
                      runtime_device_type_name(type), (int)problem->device.device_id, backend->name);
  return core_error(FJ_INVALID_ARGUMENT, "q.device=(%s,%d) but the context's device is %s:%d",
                    runtime_device_type_name(type), (int)problem->device.device_id, backend->name,
                    context->device_index);
}

/* seqlen_kv = 0 on the CPU: every row attends to nothing, so o is 0 and lse is -inf (or the head's
 * sink, the sum's one term), as the kernel would give; written here because no kernel needs compiling for it. GPU kernels get the launch: their
 * memory is not ours to write from the host, and an empty KV range is their fully masked row. */
static fj_status runtime_write_empty_result(const attention_problem *problem) {
  const tensor_view *o = &problem->o, *lse = &problem->lse;
  size_t element = (size_t)core_dtype_size((dtype_id)problem->key.dtype);
  for (int64_t b = 0; b < problem->batch; b++) {
    int64_t start, count;  /* with ragged queries, only this sequence's rows */
    core_sequence_queries(problem, b, &start, &count);
    for (int64_t s = start; s < start + count; s++)
      for (int64_t h = 0; h < problem->key.heads; h++) {
        for (int64_t d = 0; d < core_key_head_dim_v(&problem->key); d++) {
          int64_t offset = b * o->stride[0] + s * o->stride[1] + h * o->stride[2] + d * o->stride[3];
          memset(o->data + offset * (int64_t)element, 0, element);  /* +0.0 in every dtype */
        }
        if (lse->data != NULL)
          ((float *)(void *)lse->data)[b * lse->stride[0] + h * lse->stride[1] + s * lse->stride[2]] =
              problem->sinks != NULL ? problem->sinks[h * problem->sinks_stride] : -INFINITY;
      }
  }
  return FJ_OK;
}

/* What both public calls first do: the context and args present, every argument valid, the tensors on
 * the context's device. */
static fj_status runtime_validate_call(fj_context *context, const fj_attention_args *args, attention_problem *problem) {
  if (context == NULL) return core_error(FJ_INVALID_ARGUMENT, "context is NULL");
  if (args == NULL) return core_error(FJ_INVALID_ARGUMENT, "args is NULL");
  fj_status status = core_validate_attention(args, problem);
  if (status != FJ_OK) return status;
  return runtime_check_device(context, problem);
}

fj_status fj_attention_forward(fj_context *context, const fj_attention_args *args) {
  core_error_clear();
  attention_problem problem;
  fj_status status = runtime_validate_call(context, args, &problem);
  if (status != FJ_OK) return status;

  if (problem.batch * problem.key.heads * problem.seqlen_q == 0) return FJ_OK;
  if (problem.seqlen_kv == 0 && context->backend->device_type == kDLCPU)
    return runtime_write_empty_result(&problem);

  runtime_kernel *kernel = NULL;
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  if (status != FJ_OK) return status;
  /* the first call of a key in this context notes it for the operator's tuner; later calls read one flag */
  if (!atomic_load_explicit(&kernel->served_noted, memory_order_relaxed) &&
      !atomic_exchange_explicit(&kernel->served_noted, 1, memory_order_relaxed))
    runtime_note_served(context, &problem);
  return runtime_launch_attention(context, kernel, &problem, args->stream);
}

fj_status fj_attention_workspace_size(fj_context *context, const fj_attention_args *args, size_t *bytes) {
  core_error_clear();
  if (bytes == NULL) return core_error(FJ_INVALID_ARGUMENT, "bytes is NULL");
  *bytes = 0;
  attention_problem problem;
  fj_status status = runtime_validate_call(context, args, &problem);
  if (status != FJ_OK) return status;
  if (problem.batch * problem.key.heads * problem.seqlen_q == 0 || problem.seqlen_kv == 0) return FJ_OK;
  runtime_kernel *kernel = NULL;
  status = runtime_get_kernel(context, &problem, NULL, &kernel);
  if (status != FJ_OK) return status;
  int64_t splits = 1;
  runtime_split_plan(context, kernel, &problem, SIZE_MAX, &splits, bytes);
  return FJ_OK;
}
