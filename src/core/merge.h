/* merge.h: fj_attention_merge's arguments after validation: the two results, their LSEs and the outputs
 * as views of one shape and dtype. */
#ifndef FJ_CORE_MERGE_H
#define FJ_CORE_MERGE_H
#include <stdint.h>
#include "flashjit.h"
#include "core/dtype.h"
#include "core/problem.h"

typedef struct merge_problem {
  dtype_id dtype;                          /* o_a's, o_b's and o's */
  int64_t batch, seqlen, heads, head_dim;
  tensor_view o_a, o_b, o;                 /* [batch, seqlen, heads, head_dim] */
  tensor_view lse_a, lse_b, lse;           /* fp32 [batch, heads, seqlen]; lse.data NULL when not asked */
  DLDevice device;                         /* where they all live */
} merge_problem;

/* Checks every argument (rank, dtype, shapes against o_a's, layouts, one device, outputs overlapping
 * nothing but the input they replace) and fills *out; FJ_INVALID_ARGUMENT naming the argument otherwise. */
fj_status core_validate_merge(const fj_merge_args *args, merge_problem *out);
/* Elements of each of o_a, o_b and o. */
int64_t core_merge_elements(const merge_problem *p);
#endif
