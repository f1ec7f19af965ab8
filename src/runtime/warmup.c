/* warmup.c: getting a context ready before traffic arrives. A shape (sizes, no tensors) is turned into
 * the problem key a real call of that shape would derive, and its kernel is chosen (tuned winner or
 * default), compiled or loaded from the disk cache, and put into the context's table, so the first
 * real call finds it there. The same conversion serves `flashjit cache warm` and the tuner's inputs. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "runtime/runtime_internal.h"

/* The first version of fj_problem_shape ends after with_lse. */
#define RUNTIME_SHAPE_V1_SIZE (offsetof(fj_problem_shape, with_lse) + sizeof(int))

void fj_problem_shape_init_size(fj_problem_shape *shape, size_t size) {
  if (shape == NULL || size < sizeof(uint32_t)) return;
  fj_problem_shape defaults;
  memset(&defaults, 0, sizeof defaults);
  defaults.dtype = core_dtype_to_dlpack(DTYPE_BF16);
  defaults.batch = 1;
  defaults.seqlen_q = 2048;
  defaults.seqlen_kv = 2048;
  defaults.heads = 8;
  defaults.kv_heads = 8;
  defaults.head_dim = 128;
  defaults.window_left = defaults.window_right = -1;
  if (size > sizeof defaults) size = sizeof defaults;
  defaults.struct_size = (uint32_t)size;
  memcpy(shape, &defaults, size);
}

void(fj_problem_shape_init)(fj_problem_shape *shape) { fj_problem_shape_init_size(shape, sizeof *shape); }

void runtime_shape_kv_layout(const fj_problem_shape *shape, int *varlen, int *page_size) {
  /* only where the caller's struct has them: the first version stops after with_lse */
  int has_fields = shape->struct_size >= offsetof(fj_problem_shape, page_size) + sizeof(int);
  *varlen = has_fields && shape->varlen != 0;
  *page_size = has_fields ? shape->page_size : 0;
}

void runtime_shape_window(const fj_problem_shape *shape, int64_t *window_left, int64_t *window_right) {
  int windowed = shape->struct_size >= offsetof(fj_problem_shape, window_right) + sizeof(int64_t) && shape->windowed;
  *window_left = windowed ? shape->window_left : -1;
  *window_right = windowed ? shape->window_right : -1;
}

int runtime_shape_varlen_q(const fj_problem_shape *shape) {
  return shape->struct_size >= offsetof(fj_problem_shape, varlen_q) + sizeof(int) && shape->varlen_q != 0;
}

int runtime_shape_sinks(const fj_problem_shape *shape) {
  return shape->struct_size >= offsetof(fj_problem_shape, sinks) + sizeof(int) && shape->sinks != 0;
}

float runtime_shape_softcap(const fj_problem_shape *shape) {
  return shape->struct_size >= offsetof(fj_problem_shape, softcap) + sizeof(float) ? shape->softcap : 0.0f;
}

int runtime_shape_packed_k(const fj_problem_shape *shape) {
  return shape->struct_size >= offsetof(fj_problem_shape, packed_k) + sizeof(int) && shape->packed_k != 0;
}

int runtime_shape_alibi(const fj_problem_shape *shape) {
  return shape->struct_size >= offsetof(fj_problem_shape, alibi) + sizeof(int) && shape->alibi != 0;
}

fj_status runtime_shape_kv_fp8(const fj_problem_shape *shape, const char *what, int *kv_fp8) {
  *kv_fp8 = 0;
  if (shape->struct_size < offsetof(fj_problem_shape, kv_dtype) + sizeof(DLDataType)) return FJ_OK;
  DLDataType t = shape->kv_dtype;
  if (t.code == 0 && t.bits == 0 && t.lanes == 0) return FJ_OK;
  dtype_id kv, dtype;
  if (!core_kv_dtype_from_dlpack(t, &kv) ||
      (!core_dtype_is_fp8(kv) && !(core_dtype_from_dlpack(shape->dtype, &dtype) && kv == dtype)))
    return core_error(FJ_INVALID_ARGUMENT, "%s.kv_dtype=(code %d, bits %d, lanes %d): expected fp8_e4m3 (code %d) or "
                      "fp8_e5m2 (code %d), bits 8, lanes 1; or {0, 0, 0} for dtype's", what, (int)t.code, (int)t.bits,
                      (int)t.lanes, FJ_DLPACK_FLOAT8_E4M3FN, FJ_DLPACK_FLOAT8_E5M2);
  *kv_fp8 = core_dtype_is_fp8(kv) ? (int)kv : 0;
  return FJ_OK;
}

fj_status runtime_shape_bias(const fj_problem_shape *shape, const char *what, int *bias) {
  *bias = 0;
  if (shape->struct_size < offsetof(fj_problem_shape, attn_bias_dtype) + sizeof(DLDataType)) return FJ_OK;
  DLDataType t = shape->attn_bias_dtype;
  if (t.code == 0 && t.bits == 0 && t.lanes == 0) return FJ_OK;
  dtype_id given, dtype;
  int known = core_dtype_from_dlpack(shape->dtype, &dtype);
  if (!core_dtype_from_dlpack(t, &given))
    return core_error(FJ_INVALID_ARGUMENT, "%s.attn_bias_dtype=(code %d, bits %d, lanes %d): expected fp32 or the "
                      "shape's dtype; or {0, 0, 0} for no bias", what, (int)t.code, (int)t.bits, (int)t.lanes);
  if (given != DTYPE_F32 && !(known && given == dtype))
    return core_error(FJ_INVALID_ARGUMENT, "%s.attn_bias_dtype=%s with dtype %s: expected fp32 or the shape's dtype",
                      what, core_dtype_name(given), known ? core_dtype_name(dtype) : "?");
  *bias = given == DTYPE_F32 ? KEY_BIAS_F32 : KEY_BIAS_DTYPE;
  return FJ_OK;
}

int runtime_shape_head_dim_v(const fj_problem_shape *shape) {
  int given = shape->struct_size >= offsetof(fj_problem_shape, head_dim_v) + sizeof(int) ? shape->head_dim_v : 0;
  return given != 0 ? given : shape->head_dim;
}

fj_status runtime_problem_from_shape(const fj_problem_shape *shape, const char *what,
                                     attention_problem *out) {
  if (what == NULL) what = "shape";
  if (shape == NULL || out == NULL)
    return core_error(FJ_INVALID_ARGUMENT, "%s: NULL shape or output", what);
  if (shape->struct_size < RUNTIME_SHAPE_V1_SIZE)
    return core_error(FJ_INVALID_ARGUMENT,
                      "%s.struct_size=%" PRIu32 " is too small (%zu); call fj_problem_shape_init first",
                      what, shape->struct_size, (size_t)RUNTIME_SHAPE_V1_SIZE);
  dtype_id dtype;
  if (!core_dtype_from_dlpack(shape->dtype, &dtype))
    return core_error(FJ_INVALID_ARGUMENT, "%s.dtype=(code %d, bits %d, lanes %d) is not fp32, fp16 or bf16",
                      what, (int)shape->dtype.code, (int)shape->dtype.bits, (int)shape->dtype.lanes);
  if (shape->batch < 1)
    return core_error(FJ_INVALID_ARGUMENT, "%s.batch=%" PRId64 " must be at least 1", what, shape->batch);
  if (shape->seqlen_q < 1)
    return core_error(FJ_INVALID_ARGUMENT, "%s.seqlen_q=%" PRId64 " must be at least 1", what,
                      shape->seqlen_q);
  if (shape->seqlen_kv < 0)
    return core_error(FJ_INVALID_ARGUMENT, "%s.seqlen_kv=%" PRId64 " must be at least 0", what,
                      shape->seqlen_kv);
  if (shape->heads < 1 || shape->kv_heads < 1)
    return core_error(FJ_INVALID_ARGUMENT, "%s.heads=%d, kv_heads=%d: both must be at least 1", what,
                      shape->heads, shape->kv_heads);
  if (shape->heads % shape->kv_heads != 0)
    return core_error(FJ_INVALID_ARGUMENT, "%s.heads=%d is not a multiple of kv_heads=%d", what,
                      shape->heads, shape->kv_heads);
  if (!core_head_dim_valid(shape->head_dim))
    return core_error(FJ_INVALID_ARGUMENT, "%s.head_dim=%d must be a multiple of 8 from 8 to 576", what,
                      shape->head_dim);
  int head_dim_v = runtime_shape_head_dim_v(shape);
  if (!core_head_dim_valid(head_dim_v))
    return core_error(FJ_INVALID_ARGUMENT, "%s.head_dim_v=%d must be 0 (head_dim's) or a multiple of 8 from 8 to 576",
                      what, head_dim_v);
  int varlen, page_size, kv_fp8;
  runtime_shape_kv_layout(shape, &varlen, &page_size);
  if (page_size < 0)
    return core_error(FJ_INVALID_ARGUMENT, "%s.page_size=%d must be at least 0 (0: not paged)", what, page_size);
  fj_status status = runtime_shape_kv_fp8(shape, what, &kv_fp8);
  if (status != FJ_OK) return status;
  int bias;
  if ((status = runtime_shape_bias(shape, what, &bias)) != FJ_OK) return status;
  int packed_k = runtime_shape_packed_k(shape);
  if (packed_k && page_size > 0)
    return core_error(FJ_INVALID_ARGUMENT, "%s.packed_k with page_size=%d: packed keys are rows of k and v, a paged "
                      "cache pages of them; give one", what, page_size);
  memset(out, 0, sizeof *out);
  out->key.kv_fp8 = kv_fp8;
  out->key.varlen_k = packed_k;
  if (packed_k) varlen = 1;  /* each sequence its own key count, as with seqlens_kv */
  out->key.alibi = runtime_shape_alibi(shape);
  out->key.bias = bias;
  out->k_scale = out->v_scale = 1.0f;
  out->key.kind = PROBLEM_ATTENTION_FWD;
  out->key.varlen = varlen;
  out->key.varlen_q = runtime_shape_varlen_q(shape);
  out->key.sinks = runtime_shape_sinks(shape);
  out->key.page_size = page_size;
  out->key.dtype = (int)dtype;
  out->key.head_dim = shape->head_dim;
  out->key.head_dim_v = head_dim_v != shape->head_dim ? head_dim_v : 0;
  out->key.heads = shape->heads;
  out->key.kv_heads = shape->kv_heads;
  int64_t window_left, window_right;
  runtime_shape_window(shape, &window_left, &window_right);
  char prefix[64];
  snprintf(prefix, sizeof prefix, "%s.", what);
  status = core_resolve_window(prefix, shape->causal != 0, window_left, window_right, shape->seqlen_q,
                               shape->seqlen_kv, out);
  if (status != FJ_OK) return status;
  out->key.has_lse = shape->with_lse != 0;
  out->key.d_contiguous = 1;  /* packed tensors, as the shape says */
  out->key.seqlen_bucket = core_seqlen_bucket(shape->seqlen_q);
  out->batch = shape->batch;
  out->seqlen_q = shape->seqlen_q;
  out->seqlen_kv = shape->seqlen_kv;
  out->softmax_scale = (float)(1.0 / sqrt((double)shape->head_dim));
  float softcap = runtime_shape_softcap(shape);
  if ((status = core_check_softcap(prefix, softcap, out->softmax_scale)) != FJ_OK) return status;
  out->key.softcap = softcap > 0.0f;
  out->softcap = softcap;
  out->device.device_type = kDLCPU;
  return FJ_OK;
}

fj_status fj_context_warmup(fj_context *context, const fj_problem_shape *shapes, size_t count,
                            size_t *loaded) {
  core_error_clear();
  if (loaded != NULL) *loaded = 0;
  if (context == NULL) return core_error(FJ_INVALID_ARGUMENT, "context is NULL");
  if (shapes == NULL && count > 0)
    return core_error(FJ_INVALID_ARGUMENT, "shapes is NULL but count=%zu", count);
  for (size_t i = 0; i < count; i++) {
    char what[48];
    snprintf(what, sizeof what, "shapes[%zu]", i);
    attention_problem problem;
    fj_status status = runtime_problem_from_shape(&shapes[i], what, &problem);
    if (status != FJ_OK) return status;
    runtime_kernel *kernel = NULL;
    status = runtime_get_kernel(context, &problem, NULL, &kernel);
    if (status != FJ_OK) {
      core_error_prefix("%s: ", what);
      return status;
    }
    if (core_log_enabled(LOG_INFO)) {
      char key[256], config[256];
      core_attention_key_string(&problem.key, key, sizeof key);
      kernel_config_string(kernel->family, &kernel->config, config, sizeof config);
      core_log(LOG_INFO, "warmup: %s: %s (%s config, %s, %.1f ms)", key, config, kernel->config_source,
               kernel->source, kernel->compile_ms);
    }
    if (loaded != NULL) *loaded = i + 1;
  }
  return FJ_OK;
}
