/* tensor_arg.h: the checks every call's tensor arguments go through (problem.c), shared with the other
 * calls that take tensors (merge.c): present with the right rank, a dtype flashjit takes, a layout whose
 * extent fits the address space, outputs that alias neither themselves nor other arguments, one device. Each
 * refusal is an FJ_INVALID_ARGUMENT whose message names the argument and the values. */
#ifndef FJ_CORE_TENSOR_ARG_H
#define FJ_CORE_TENSOR_ARG_H
#include <stdint.h>
#include "flashjit.h"
#include "core/dtype.h"
#include "core/problem.h"

/* What validation learns about one tensor argument, before the problem is filled. */
typedef struct core_arg {
  const char *name;     /* "q" */
  const DLTensor *t;
  dtype_id dtype;
  int64_t stride[4];    /* resolved: row-major when t->strides is NULL */
  int64_t elements;     /* 0 when some dimension is 0 */
  uintptr_t first;      /* address of element [0,...]: data + byte_offset */
  uintptr_t end;        /* one past the last byte any element reaches; == first when empty */
} core_arg;

/* t present (name "args.<name>" when NULL), of rank ndim (dims names them for the message), no negative size. */
fj_status core_check_present(const char *name, const DLTensor *t, int ndim, const char *dims);
/* arg->dtype from the tensor's: fp32, fp16 or bf16 (kv: or an fp8, a KV cache). */
fj_status core_check_dtype(core_arg *arg, int kv);
/* Resolves arg's strides, elements and byte range (arg->dtype set first). */
fj_status core_check_layout(core_arg *arg);
/* An output whose index tuples never share an element. */
fj_status core_check_no_self_overlap(const core_arg *arg);
/* An output and another argument apart in memory. */
fj_status core_check_disjoint(const core_arg *out, const core_arg *in);
fj_status core_check_same_device(const core_arg *arg, const core_arg *ref);
/* dim of arg equal to ref_dim of ref; `what` names the size. */
fj_status core_check_dim(const core_arg *arg, int dim, const core_arg *ref, int ref_dim, const char *what);
/* "float64x1", "bfloat16x1": a DLPack dtype for a message. */
void core_format_dlpack_type(DLDataType type, char *buffer, size_t size);
/* The view kernels read (a 3-d tensor gets a unit fourth dimension). */
void core_fill_view(tensor_view *view, const core_arg *arg);
#endif
