/* merge.c: validation of fj_attention_merge's arguments, through the checks every call's tensors get
 * (tensor_arg.h). Only the descriptors are read, never the data, which may live on a device. */
#include "core/merge.h"

#include <inttypes.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor_arg.h"

/* The first version of fj_merge_args is the whole struct of this header. */
#define CORE_MERGE_ARGS_V1_SIZE (offsetof(fj_merge_args, stream) + sizeof(void *))

static fj_status merge_arg(core_arg *arg, const char *name, const DLTensor *t, int lse) {
  memset(arg, 0, sizeof *arg);
  arg->name = name;
  arg->t = t;
  fj_status s = core_check_present(name, t, lse ? 3 : 4, lse ? "[batch, heads, seqlen_q]" : "[batch, seqlen_q, heads, head_dim]");
  if (s == FJ_OK && lse && !(core_dtype_from_dlpack(t->dtype, &arg->dtype) && arg->dtype == DTYPE_F32)) {
    char text[48];
    core_format_dlpack_type(t->dtype, text, sizeof text);
    return core_error(FJ_INVALID_ARGUMENT, "%s.dtype is %s: an LSE is fp32 (float32x1)", name, text);
  }
  if (s == FJ_OK && !lse) s = core_check_dtype(arg, 0);
  if (s == FJ_OK) s = core_check_layout(arg);
  return s;
}

/* The same address and strides: the output is that input, merged in place. */
static int merge_same(const core_arg *a, const core_arg *b) {
  return a->first == b->first && memcmp(a->stride, b->stride, sizeof a->stride) == 0;
}

/* An output against an input: the very same tensor, or apart from it. */
static fj_status merge_check_output(const core_arg *out, const core_arg *in, int may_be_it) {
  if (may_be_it && merge_same(out, in)) return FJ_OK;
  return core_check_disjoint(out, in);
}

fj_status core_validate_merge(const fj_merge_args *args, merge_problem *out) {
  if (args == NULL) return core_error(FJ_INVALID_ARGUMENT, "args is NULL");
  if (out == NULL) return core_error(FJ_INVALID_ARGUMENT, "out is NULL");
  memset(out, 0, sizeof *out);
  if (args->struct_size < CORE_MERGE_ARGS_V1_SIZE)
    return core_error(FJ_INVALID_ARGUMENT, "args->struct_size=%u is too small (%zu); call fj_merge_args_init first",
                      args->struct_size, (size_t)CORE_MERGE_ARGS_V1_SIZE);
  core_arg o_a, o_b, o, lse_a, lse_b, lse;
  fj_status s;
  if ((s = merge_arg(&o_a, "o_a", args->o_a, 0)) != FJ_OK) return s;
  if ((s = merge_arg(&o_b, "o_b", args->o_b, 0)) != FJ_OK) return s;
  if ((s = merge_arg(&o, "o", args->o, 0)) != FJ_OK) return s;
  if ((s = merge_arg(&lse_a, "lse_a", args->lse_a, 1)) != FJ_OK) return s;
  if ((s = merge_arg(&lse_b, "lse_b", args->lse_b, 1)) != FJ_OK) return s;
  int with_lse = args->lse != NULL;
  if (with_lse && (s = merge_arg(&lse, "lse", args->lse, 1)) != FJ_OK) return s;

  const core_arg *results[2] = {&o_b, &o};
  for (int i = 0; i < 2; i++) {
    if (results[i]->dtype != o_a.dtype)
      return core_error(FJ_INVALID_ARGUMENT, "%s.dtype=%s but o_a.dtype=%s (the results and o share a dtype)",
                        results[i]->name, core_dtype_name(results[i]->dtype), core_dtype_name(o_a.dtype));
    static const char *const sizes[4] = {"batch", "seqlen_q", "heads", "head_dim"};
    for (int d = 0; d < 4; d++)
      if ((s = core_check_dim(results[i], d, &o_a, d, sizes[d])) != FJ_OK) return s;
  }
  const core_arg *lses[3] = {&lse_a, &lse_b, with_lse ? &lse : NULL};
  for (int i = 0; i < 3 && lses[i] != NULL; i++) {
    if ((s = core_check_dim(lses[i], 0, &o_a, 0, "batch")) != FJ_OK) return s;
    if ((s = core_check_dim(lses[i], 1, &o_a, 2, "heads")) != FJ_OK) return s;
    if ((s = core_check_dim(lses[i], 2, &o_a, 1, "seqlen_q")) != FJ_OK) return s;
  }
  const core_arg *all[6] = {&o_b, &o, &lse_a, &lse_b, with_lse ? &lse : NULL, NULL};
  for (int i = 0; all[i] != NULL; i++)
    if ((s = core_check_same_device(all[i], &o_a)) != FJ_OK) return s;

  if ((s = core_check_no_self_overlap(&o)) != FJ_OK) return s;
  if ((s = merge_check_output(&o, &o_a, 1)) != FJ_OK) return s;
  if ((s = merge_check_output(&o, &o_b, 1)) != FJ_OK) return s;
  if ((s = merge_check_output(&o, &lse_a, 0)) != FJ_OK) return s;
  if ((s = merge_check_output(&o, &lse_b, 0)) != FJ_OK) return s;
  if (with_lse) {
    if ((s = core_check_no_self_overlap(&lse)) != FJ_OK) return s;
    if ((s = merge_check_output(&lse, &lse_a, 1)) != FJ_OK) return s;
    if ((s = merge_check_output(&lse, &lse_b, 1)) != FJ_OK) return s;
    if ((s = merge_check_output(&lse, &o_a, 0)) != FJ_OK) return s;
    if ((s = merge_check_output(&lse, &o_b, 0)) != FJ_OK) return s;
    if ((s = merge_check_output(&lse, &o, 0)) != FJ_OK) return s;
  }

  out->dtype = o_a.dtype;
  out->batch = o_a.t->shape[0];
  out->seqlen = o_a.t->shape[1];
  out->heads = o_a.t->shape[2];
  out->head_dim = o_a.t->shape[3];
  core_fill_view(&out->o_a, &o_a);
  core_fill_view(&out->o_b, &o_b);
  core_fill_view(&out->o, &o);
  core_fill_view(&out->lse_a, &lse_a);
  core_fill_view(&out->lse_b, &lse_b);
  if (with_lse) core_fill_view(&out->lse, &lse);
  out->device = o_a.t->device;
  return FJ_OK;
}

int64_t core_merge_elements(const merge_problem *p) { return p->batch * p->seqlen * p->heads * p->head_dim; }
