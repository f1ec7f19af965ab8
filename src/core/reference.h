/* reference.h: the float64 attention forward every kernel is checked against (tests, bench --check,
 * the tuner's candidate check), and the relative-norm error between an output and it. Slow on purpose:
 * a plain loop nest with nothing clever to get wrong. */
#ifndef FJ_CORE_REFERENCE_H
#define FJ_CORE_REFERENCE_H
#include "core/problem.h"

/* Computes the output of a validated problem in float64 into out_o ([b][sq][h][dv], packed; dv v's head dim) and, when
 * out_lse is not NULL, the LSE ([b][h][sq], packed); with ragged queries sequence b's query i at sq
 * index i (the rows past its count are not written). Reads q, k, v through the problem's views (host
 * memory). Fully masked rows give 0 and LSE -inf. Returns FJ_OUT_OF_MEMORY or FJ_OK. */
fj_status core_reference_attention(const attention_problem *problem, double *out_o, double *out_lse);

/* ||o - ref|| / max(||ref||, tiny) over all elements of the problem's o view (read as its dtype).
 * +inf (never NaN, which would pass `err > tol`) when the output holds a NaN or an infinity. */
double core_relative_error_o(const attention_problem *problem, const double *ref_o);
/* Same for lse (finite entries; a -inf in one and not the other counts as an error of 1; a NaN gives
 * +inf). 0 when the problem has no lse. */
double core_relative_error_lse(const attention_problem *problem, const double *ref_lse);
#endif
