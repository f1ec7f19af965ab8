/* merge.c: fj_attention_merge. The CPU's tensors are host memory, merged here in plain C; a GPU's merge
 * is its kernel family's merge kernel (kernels/attention_merge_nvptx.c), compiled once per o dtype and
 * context, kept in the disk cache like every kernel, and launched on the caller's stream. Both do the
 * same fp32 arithmetic: w = e^(lse - m) with m the larger LSE, o = (w_a o_a + w_b o_b) / (w_a + w_b). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/binary_cache.h"
#include "core/error.h"
#include "core/log.h"
#include "core/merge.h"
#include "kernels/attention_merge_gpu_abi.h"
#include "runtime/runtime_internal.h"

void fj_merge_args_init_size(fj_merge_args *args, size_t size) {
  if (args == NULL || size < sizeof(uint32_t)) return;
  fj_merge_args defaults;
  memset(&defaults, 0, sizeof defaults);
  if (size > sizeof defaults) size = sizeof defaults;
  defaults.struct_size = (uint32_t)size;
  memcpy(args, &defaults, size);
}

void(fj_merge_args_init)(fj_merge_args *args) { fj_merge_args_init_size(args, sizeof *args); }

static fj_status merge_check_device(const fj_context *context, const merge_problem *p) {
  const fj_backend *backend = context->backend;
  int type = (int)p->device.device_type;
  int same = type == backend->device_type && (backend->device_type == kDLCPU || p->device.device_id == context->device_index);
  if (same) return FJ_OK;
  return core_error(FJ_INVALID_ARGUMENT, "o_a.device=(%s,%d) but the context's device is %s:%d",
                    runtime_device_type_name(type), (int)p->device.device_id, backend->name, context->device_index);
}

/* ---- on the host ---- */

static void merge_on_host(const merge_problem *p) {
  for (int64_t b = 0; b < p->batch; b++)
    for (int64_t s = 0; s < p->seqlen; s++)
      for (int64_t h = 0; h < p->heads; h++) {
        int64_t l = b * p->lse_a.stride[0] + h * p->lse_a.stride[1] + s * p->lse_a.stride[2];
        float lse_a = ((const float *)(const void *)p->lse_a.data)[l];
        l = b * p->lse_b.stride[0] + h * p->lse_b.stride[1] + s * p->lse_b.stride[2];
        float lse_b = ((const float *)(const void *)p->lse_b.data)[l];
        float m = lse_b > lse_a ? lse_b : lse_a;
        float base = m == -INFINITY ? 0.0f : m;  /* no key on either side: both weigh 0 */
        float w_a = expf(lse_a - base), w_b = expf(lse_b - base), sum = w_a + w_b;
        float inverse = sum > 0.0f ? 1.0f / sum : 0.0f;
        for (int64_t d = 0; d < p->head_dim; d++) {
          int64_t ia = b * p->o_a.stride[0] + s * p->o_a.stride[1] + h * p->o_a.stride[2] + d * p->o_a.stride[3];
          int64_t ib = b * p->o_b.stride[0] + s * p->o_b.stride[1] + h * p->o_b.stride[2] + d * p->o_b.stride[3];
          int64_t io = b * p->o.stride[0] + s * p->o.stride[1] + h * p->o.stride[2] + d * p->o.stride[3];
          float a = core_load_as_f32(p->o_a.data, p->dtype, ia), x = core_load_as_f32(p->o_b.data, p->dtype, ib);
          core_store_from_f32(p->o.data, p->dtype, io, w_a * inverse * a + w_b * inverse * x);
        }
        if (p->lse.data != NULL)
          ((float *)(void *)p->lse.data)[b * p->lse.stride[0] + h * p->lse.stride[1] + s * p->lse.stride[2]] =
              sum > 0.0f ? base + logf(sum) : -INFINITY;
      }
}

/* ---- on a GPU ---- */

/* "fj1|merge|gen=<n>|abi=<bytes>|<dtype>|<triple>|<cpu>|<features>|llvm=<v>|driver=<v>": what changes the binary. */
static void merge_cache_key(const fj_context *context, dtype_id dtype, char *key, size_t size) {
  const jit_target *t = &context->target;
  snprintf(key, size, "fj1|merge|gen=%d|abi=%zu|%s|%s|%s|%s|llvm=%s|driver=%s", context->family->generator_version,
           sizeof(gpu_merge_params), core_dtype_name(dtype), t->triple, t->cpu, t->features, jit_llvm_version(),
           context->info.driver_version);
}

/* runtime_compile_binary's generator for the family's merge kernel of one dtype. */
typedef struct merge_generation {
  const kernel_family *family;
  dtype_id dtype;
} merge_generation;

static fj_status merge_generate(LLVMModuleRef module, const jit_target *target, const char *function_name,
                                const void *arg) {
  const merge_generation *g = arg;
  return g->family->generate_merge(module, g->dtype, target, function_name);
}

static fj_status merge_load(fj_context *context, const jit_buffer *binary, const char *name, void **module,
                            void **function) {
  fj_status status = context->backend->module_load(context->device, binary->data, binary->size, name, module);
  if (status != FJ_OK) return status;
  status = context->backend->module_function(*module, name, function);
  if (status != FJ_OK) context->backend->module_unload(*module);
  return status;
}

/* The merge kernel for dtype: loaded from the disk cache, else compiled (and stored), as every kernel is
 * (a cached binary that does not load is compiled again). */
static fj_status merge_build(fj_context *context, dtype_id dtype, void **module, void **function) {
  const fj_backend *backend = context->backend;
  char name[64], key[6000];
  snprintf(name, sizeof name, "fj_attention_merge_%s", core_dtype_name(dtype));
  merge_cache_key(context, dtype, key, sizeof key);
  jit_buffer binary = {0};
  if (context->disk_cache && bincache_load(context->cache_dir, key, backend->binary_kind, &binary.data, &binary.size)) {
    fj_status status = merge_load(context, &binary, name, module, function);
    jit_buffer_free(&binary);
    if (status == FJ_OK) return FJ_OK;
    core_log(LOG_WARN, "cached kernel %s did not load (%s); recompiling", name, fj_last_error());
    core_error_clear();
  }
  merge_generation generation = {context->family, dtype};
  fj_status status = runtime_compile_binary(context, merge_generate, &generation, name, name, key, &binary);
  if (status != FJ_OK) return status;  /* its message names the kernel */
  status = merge_load(context, &binary, name, module, function);
  if (status != FJ_OK) core_error_prefix("%s: ", name);
  jit_buffer_free(&binary);
  return status;
}

static fj_status merge_kernel(fj_context *context, dtype_id dtype, void **function) {
  pthread_mutex_lock(&context->lock);
  *function = context->merge_function[dtype];
  pthread_mutex_unlock(&context->lock);
  if (*function != NULL) return FJ_OK;
  void *module = NULL, *built = NULL;
  fj_status status = merge_build(context, dtype, &module, &built);  /* outside the lock: it may compile */
  if (status != FJ_OK) return status;
  pthread_mutex_lock(&context->lock);
  if (context->merge_function[dtype] == NULL) {
    context->merge_module[dtype] = module;
    context->merge_function[dtype] = built;
    module = NULL;
  }
  *function = context->merge_function[dtype];
  pthread_mutex_unlock(&context->lock);
  if (module != NULL) context->backend->module_unload(module);  /* another thread's came first */
  return FJ_OK;
}

static void merge_strides(int64_t *out, const tensor_view *view, int n) {
  for (int i = 0; i < n; i++) out[i] = view->stride[i];
}

static fj_status merge_on_device(fj_context *context, const merge_problem *p, void *stream) {
  void *function = NULL;
  fj_status status = merge_kernel(context, p->dtype, &function);
  if (status != FJ_OK) return status;
  gpu_merge_params params;
  memset(&params, 0, sizeof params);
  params.o_a = (uint64_t)(uintptr_t)p->o_a.data;
  params.o_b = (uint64_t)(uintptr_t)p->o_b.data;
  params.o = (uint64_t)(uintptr_t)p->o.data;
  params.lse_a = (uint64_t)(uintptr_t)p->lse_a.data;
  params.lse_b = (uint64_t)(uintptr_t)p->lse_b.data;
  params.lse = (uint64_t)(uintptr_t)p->lse.data;
  merge_strides(params.o_a_stride, &p->o_a, 4);
  merge_strides(params.o_b_stride, &p->o_b, 4);
  merge_strides(params.o_stride, &p->o, 4);
  merge_strides(params.lse_a_stride, &p->lse_a, 3);
  merge_strides(params.lse_b_stride, &p->lse_b, 3);
  merge_strides(params.lse_stride, &p->lse, 3);
  params.batch = p->batch;
  params.seqlen = p->seqlen;
  params.heads = p->heads;
  params.head_dim = p->head_dim;
  int64_t rows = p->batch * p->seqlen * p->heads;
  backend_launch launch = {.jobs = (rows + GPU_MERGE_WARPS - 1) / GPU_MERGE_WARPS,
                           .block_threads = 32 * GPU_MERGE_WARPS,
                           .params = &params,
                           .params_size = sizeof params};
  return context->backend->launch(context->device, function, &launch, stream);
}

void runtime_merge_destroy(fj_context *context) {
  for (int i = 0; i < DTYPE_COUNT; i++)
    if (context->merge_module[i] != NULL) {
      context->backend->module_unload(context->merge_module[i]);
      context->merge_module[i] = context->merge_function[i] = NULL;
    }
}

fj_status fj_attention_merge(fj_context *context, const fj_merge_args *args) {
  core_error_clear();
  if (context == NULL) return core_error(FJ_INVALID_ARGUMENT, "context is NULL");
  merge_problem p;
  fj_status status = core_validate_merge(args, &p);
  if (status != FJ_OK) return status;
  if ((status = merge_check_device(context, &p)) != FJ_OK) return status;
  if (core_merge_elements(&p) == 0) return FJ_OK;
  if (context->backend->device_type == kDLCPU) {
    merge_on_host(&p);
    return FJ_OK;
  }
  if (context->family == NULL || context->family->generate_merge == NULL)
    return core_error(FJ_UNSUPPORTED, "fj_attention_merge: no merge kernel for the %s backend yet", context->backend->name);
  return merge_on_device(context, &p, args->stream);
}
