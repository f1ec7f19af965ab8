/* test_merge.c: fj_attention_merge. On the CPU, against a float64 merge of the same inputs for every dtype
 * (rows with no key on one side and on both, in place, strided, with and without the LSE), and against
 * what it is for: attention over all keys equals the merge of attention over two halves of them. The GPU
 * kernel (kernels/attention_merge_nvptx.c) runs on the NVPTX emulator against the same float64 merge and
 * assembles with ptxas for sm_80 and sm_90a without spills; its launch through the driver is
 * test_cuda_driver's. Bad arguments are refused naming them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/Core.h>

#include "check.h"
#include "core/dtype.h"
#include "core/host_tensor.h"
#include "flashjit.h"
#include "jit/jit.h"
#include "kernels/attention_merge_gpu_abi.h"
#include "kernels/attention_merge_nvptx.h"
#include "nvptx_emu.h"
#include "ptxas_tool.h"

enum { B = 2, S = 5, H = 3, D = 40 };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double uniform(void) {  /* [0, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

typedef struct merge_inputs {
  host_tensor o_a, o_b, lse_a, lse_b;
} merge_inputs;

static float lse_at(const host_tensor *t, int64_t b, int64_t h, int64_t s) {
  return ((const float *)t->t.data)[b * t->strides[0] + h * t->strides[1] + s * t->strides[2]];
}

/* Random results and LSEs; row (0, 0, 0) saw no key on side a, row (1, 2, 4) none on either side. */
static int inputs_make(merge_inputs *in, dtype_id dtype) {
  int64_t o_shape[4] = {B, S, H, D}, lse_shape[3] = {B, H, S};
  if (host_tensor_alloc(&in->o_a, dtype, 4, o_shape, NULL) || host_tensor_alloc(&in->o_b, dtype, 4, o_shape, NULL) ||
      host_tensor_alloc(&in->lse_a, DTYPE_F32, 3, lse_shape, NULL) ||
      host_tensor_alloc(&in->lse_b, DTYPE_F32, 3, lse_shape, NULL))
    return -1;
  for (int64_t i = 0; i < B * S * H * D; i++) {
    core_store_from_f32(in->o_a.t.data, dtype, i, (float)(uniform() * 2 - 1));
    core_store_from_f32(in->o_b.t.data, dtype, i, (float)(uniform() * 2 - 1));
  }
  for (int64_t i = 0; i < B * H * S; i++) {
    ((float *)in->lse_a.t.data)[i] = (float)(uniform() * 10 - 5);
    ((float *)in->lse_b.t.data)[i] = (float)(uniform() * 10 - 5);
  }
  ((float *)in->lse_a.t.data)[0] = -INFINITY;
  int64_t none = 1 * H * S + 2 * S + 4;
  ((float *)in->lse_a.t.data)[none] = ((float *)in->lse_b.t.data)[none] = -INFINITY;
  return 0;
}

static void inputs_free(merge_inputs *in) {
  host_tensor_free(&in->o_a);
  host_tensor_free(&in->o_b);
  host_tensor_free(&in->lse_a);
  host_tensor_free(&in->lse_b);
}

/* The float64 merge: o [B,S,H,D], lse [B,H,S]. */
static void merge_reference(const merge_inputs *in, dtype_id dtype, double *o, double *lse) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < H; h++) {
        double la = lse_at(&in->lse_a, b, h, s), lb = lse_at(&in->lse_b, b, h, s);
        double m = la > lb ? la : lb;
        double wa = m == -INFINITY ? 0 : exp(la - m), wb = m == -INFINITY ? 0 : exp(lb - m), sum = wa + wb;
        for (int64_t d = 0; d < D; d++) {
          int64_t i = ((b * S + s) * H + h) * D + d;
          double a = core_load_as_f32(in->o_a.t.data, dtype, i), x = core_load_as_f32(in->o_b.t.data, dtype, i);
          o[i] = sum > 0 ? (wa * a + wb * x) / sum : 0.0;
        }
        lse[(b * H + h) * S + s] = sum > 0 ? m + log(sum) : -INFINITY;
      }
}

/* Relative norm error of o (any strides) against ref, and the largest LSE difference (infinities must
 * match); 0 when both hold within tol. */
static int merge_wrong(const host_tensor *o, const host_tensor *lse, dtype_id dtype, const double *ref_o,
                       const double *ref_lse, double tol, double *err) {
  double num = 0, den = 0, lse_err = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < H; h++) {
        for (int64_t d = 0; d < D; d++) {
          int64_t at = b * o->strides[0] + s * o->strides[1] + h * o->strides[2] + d * o->strides[3];
          double x = core_load_as_f32(o->t.data, dtype, at), r = ref_o[((b * S + s) * H + h) * D + d];
          num += (x - r) * (x - r);
          den += r * r;
        }
        if (lse != NULL) {
          double got = lse_at(lse, b, h, s), want = ref_lse[(b * H + h) * S + s];
          double e = isinf(want) ? (got == want ? 0 : INFINITY) : fabs(got - want);
          if (!(e <= lse_err)) lse_err = e;
        }
      }
  *err = sqrt(num / (den > 0 ? den : 1));
  return !(*err <= tol && lse_err <= 1e-5);
}

static fj_context *cpu_context(void) {
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) printf("FAIL a CPU context: %s\n", fj_last_error());
  return context;
}

static void test_cpu(fj_context *context) {
  for (int t = 0; t < 3; t++) {
    dtype_id dtype = (dtype_id)t;
    merge_inputs in;
    static double ref_o[B * S * H * D], ref_lse[B * H * S];
    if (inputs_make(&in, dtype) != 0) {
      check(0, "%s: inputs", core_dtype_name(dtype));
      continue;
    }
    merge_reference(&in, dtype, ref_o, ref_lse);
    double tol = dtype == DTYPE_F32 ? 1e-6 : core_dtype_tolerance(dtype);
    /* into new tensors, o strided (heads padded to 48 columns) */
    host_tensor o, lse;
    int64_t o_shape[4] = {B, S, H, D}, o_strides[4] = {S * H * 48, H * 48, 48, 1}, lse_shape[3] = {B, H, S};
    host_tensor_alloc(&o, dtype, 4, o_shape, o_strides);
    host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL);
    fj_merge_args args;
    fj_merge_args_init(&args);
    args.o_a = &in.o_a.t, args.o_b = &in.o_b.t, args.o = &o.t;
    args.lse_a = &in.lse_a.t, args.lse_b = &in.lse_b.t, args.lse = &lse.t;
    fj_status s = fj_attention_merge(context, &args);
    double err = 0;
    int wrong = s != FJ_OK || merge_wrong(&o, &lse, dtype, ref_o, ref_lse, tol, &err);
    check(!wrong,
          "%s: merged into a strided o and an LSE (rel err %.2e; rows without keys included) %s", core_dtype_name(dtype),
          err, s == FJ_OK ? "" : fj_last_error());
    /* in place: o is o_a, lse is lse_b, which the merge reads first */
    args.o = &in.o_a.t;
    args.lse = &in.lse_b.t;
    s = fj_attention_merge(context, &args);
    wrong = s != FJ_OK || merge_wrong(&in.o_a, &in.lse_b, dtype, ref_o, ref_lse, tol, &err);
    check(!wrong,
          "%s: in place (o = o_a, lse = lse_b) (rel err %.2e) %s", core_dtype_name(dtype), err,
          s == FJ_OK ? "" : fj_last_error());
    host_tensor_free(&o);
    host_tensor_free(&lse);
    inputs_free(&in);
  }
}

/* Attention over keys [0, n) equals the merge of attention over [0, n1) and [n1, n), with and without a
 * causal mask (whose second half some rows see nothing of: lse -inf there). */
static void test_halves(fj_context *context) {
  enum { HB = 2, HS = 24, HKV = 61, HH = 4, HD = 32, SPLIT = 37 };
  for (int causal = 0; causal < 2; causal++) {
    host_tensor q, k, v, o_all, lse_all, o_halves[2], lse_halves[2];
    int64_t q_shape[4] = {HB, HS, HH, HD}, kv_shape[4] = {HB, HKV, HH, HD}, lse_shape[3] = {HB, HH, HS};
    host_tensor_alloc(&q, DTYPE_F32, 4, q_shape, NULL);
    host_tensor_alloc(&k, DTYPE_F32, 4, kv_shape, NULL);
    host_tensor_alloc(&v, DTYPE_F32, 4, kv_shape, NULL);
    host_tensor_alloc(&o_all, DTYPE_F32, 4, q_shape, NULL);
    host_tensor_alloc(&lse_all, DTYPE_F32, 3, lse_shape, NULL);
    for (int64_t i = 0; i < HB * HS * HH * HD; i++) ((float *)q.t.data)[i] = (float)(uniform() * 2 - 1);
    for (int64_t i = 0; i < HB * HKV * HH * HD; i++) {
      ((float *)k.t.data)[i] = (float)(uniform() * 2 - 1);
      ((float *)v.t.data)[i] = (float)(uniform() * 2 - 1);
    }
    fj_attention_args args;
    fj_attention_args_init(&args);
    args.q = &q.t, args.k = &k.t, args.v = &v.t, args.o = &o_all.t, args.lse = &lse_all.t;
    args.causal = causal;
    fj_status s = fj_attention_forward(context, &args);
    /* the halves: k and v viewed over [0, SPLIT) and [SPLIT, HKV); causal aligns each query to the last key
     * of all, so the first half is not causal for any query here and the second is, shifted */
    for (int half = 0; half < 2 && s == FJ_OK; half++) {
      int64_t keys = half ? HKV - SPLIT : SPLIT, part_shape[4] = {HB, keys, HH, HD};
      host_tensor k_part, v_part;
      host_tensor_view(&k_part, &k, DTYPE_F32, 4, part_shape, k.strides, half ? SPLIT * HH * HD : 0);
      host_tensor_view(&v_part, &v, DTYPE_F32, 4, part_shape, v.strides, half ? SPLIT * HH * HD : 0);
      host_tensor_alloc(&o_halves[half], DTYPE_F32, 4, q_shape, NULL);
      host_tensor_alloc(&lse_halves[half], DTYPE_F32, 3, lse_shape, NULL);
      fj_attention_args part = args;
      part.k = &k_part.t, part.v = &v_part.t, part.o = &o_halves[half].t, part.lse = &lse_halves[half].t;
      part.causal = causal && half == 1;
      s = fj_attention_forward(context, &part);
    }
    fj_merge_args merge;
    fj_merge_args_init(&merge);
    merge.o_a = &o_halves[0].t, merge.o_b = &o_halves[1].t, merge.o = &o_halves[0].t;
    merge.lse_a = &lse_halves[0].t, merge.lse_b = &lse_halves[1].t, merge.lse = &lse_halves[0].t;
    if (s == FJ_OK) s = fj_attention_merge(context, &merge);
    double worst = 0, worst_lse = 0;
    for (int64_t i = 0; s == FJ_OK && i < HB * HS * HH * HD; i++)
      worst = fmax(worst, fabs(((float *)o_halves[0].t.data)[i] - ((float *)o_all.t.data)[i]));
    for (int64_t i = 0; s == FJ_OK && i < HB * HH * HS; i++)
      worst_lse = fmax(worst_lse, fabs(((float *)lse_halves[0].t.data)[i] - ((float *)lse_all.t.data)[i]));
    check(s == FJ_OK && worst < 1e-5 && worst_lse < 1e-5,
          "%s attention over %d keys = the merge of attention over %d and %d of them (max diff %.1e, lse %.1e) %s",
          causal ? "causal" : "full", HKV, SPLIT, HKV - SPLIT, worst, worst_lse, s == FJ_OK ? "" : fj_last_error());
    host_tensor_free(&q);
    host_tensor_free(&k);
    host_tensor_free(&v);
    host_tensor_free(&o_all);
    host_tensor_free(&lse_all);
    for (int half = 0; half < 2; half++) {
      host_tensor_free(&o_halves[half]);
      host_tensor_free(&lse_halves[half]);
    }
  }
}

static void test_bad_arguments(fj_context *context) {
  merge_inputs in;
  if (inputs_make(&in, DTYPE_BF16) != 0) return;
  host_tensor o, fp16, lse16, short_lse;
  int64_t o_shape[4] = {B, S, H, D}, lse_shape[3] = {B, H, S}, wrong_lse[3] = {B, S, H};
  host_tensor_alloc(&o, DTYPE_BF16, 4, o_shape, NULL);
  host_tensor_alloc(&fp16, DTYPE_F16, 4, o_shape, NULL);
  host_tensor_alloc(&lse16, DTYPE_F16, 3, lse_shape, NULL);
  host_tensor_alloc(&short_lse, DTYPE_F32, 3, wrong_lse, NULL);
  host_tensor overlapping, lse_in_o_a;  /* o shifted one element into o_a: neither o_a itself nor apart */
  host_tensor_view(&overlapping, &in.o_a, DTYPE_BF16, 4, o_shape, NULL, 1);
  host_tensor_view(&lse_in_o_a, &in.o_a, DTYPE_F32, 3, lse_shape, NULL, 0);
  fj_merge_args good;
  fj_merge_args_init(&good);
  good.o_a = &in.o_a.t, good.o_b = &in.o_b.t, good.o = &o.t, good.lse_a = &in.lse_a.t, good.lse_b = &in.lse_b.t;
  struct {
    const char *what, *want;
    fj_merge_args args;
  } cases[9];
  int n = 0;
  cases[n].what = "o_b NULL", cases[n].want = "args.o_b is NULL", cases[n].args = good, cases[n++].args.o_b = NULL;
  cases[n].what = "o_b fp16", cases[n].want = "o_b.dtype=fp16 but o_a.dtype=bf16", cases[n].args = good,
  cases[n++].args.o_b = &fp16.t;
  cases[n].what = "lse_a fp16", cases[n].want = "lse_a.dtype is fp16: an LSE is fp32", cases[n].args = good,
  cases[n++].args.lse_a = &lse16.t;
  cases[n].what = "lse_b [B,S,H]", cases[n].want = "lse_b.shape[1]=5 but o_a.shape[2]=3 (heads must match)",
  cases[n].args = good, cases[n++].args.lse_b = &short_lse.t;
  cases[n].what = "o overlapping o_a", cases[n].want = "o overlaps o_a", cases[n].args = good,
  cases[n++].args.o = &overlapping.t;
  cases[n].what = "lse is o_a's memory", cases[n].want = "lse overlaps o_a", cases[n].args = good,
  cases[n++].args.lse = &lse_in_o_a.t;
  cases[n].what = "struct_size 4", cases[n].want = "struct_size=4 is too small", cases[n].args = good,
  cases[n++].args.struct_size = 4;
  for (int i = 0; i < n; i++) {
    fj_status s = fj_attention_merge(context, &cases[i].args);
    check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), cases[i].want) != NULL, "%s: %s \"%s\"", cases[i].what,
          fj_status_string(s), fj_last_error());
  }
  fj_status s = fj_attention_merge(context, NULL);
  check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "args is NULL"), "args NULL: \"%s\"", fj_last_error());
  s = fj_attention_merge(NULL, &good);
  check(s == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "context is NULL"), "context NULL: \"%s\"", fj_last_error());
  host_tensor_free(&o);
  host_tensor_free(&fp16);
  host_tensor_free(&lse16);
  host_tensor_free(&short_lse);
  inputs_free(&in);
}

/* ---- the GPU kernel, without a GPU ---- */

/* The kernel for dtype on the emulator, as production compiles it (O3 first), into o (and lse unless
 * NULL); 0, or -1 with why. */
static int emulate(dtype_id dtype, const merge_inputs *in, const host_tensor *o, const host_tensor *lse, char *why,
                   size_t why_size) {
  jit_target nvptx;
  if (jit_nvptx_target("sm_80", &nvptx) != FJ_OK) {
    snprintf(why, why_size, "%s", fj_last_error());
    return -1;
  }
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("merge", ctx);
  jit_module_set_target(module, &nvptx);
  attention_merge_nvptx_generate(module, dtype, &nvptx, "merge");
  emu_kernel *kernel = NULL;
  int rc = emu_kernel_build(module, &nvptx, "merge", 32 * GPU_MERGE_WARPS, 0, 1, &kernel, why, why_size);
  if (rc == 0) {
    const host_tensor *read[4] = {&in->o_a, &in->o_b, &in->lse_a, &in->lse_b};
    for (int i = 0; i < 4; i++) emu_kernel_add_region(kernel, read[i]->t.data, read[i]->allocation_bytes, read[i] == &o[0]);
    emu_kernel_add_region(kernel, o->t.data, o->allocation_bytes, 1);
    if (lse) emu_kernel_add_region(kernel, lse->t.data, lse->allocation_bytes, 1);
    gpu_merge_params p;
    memset(&p, 0, sizeof p);
    p.o_a = (uint64_t)(uintptr_t)in->o_a.t.data, p.o_b = (uint64_t)(uintptr_t)in->o_b.t.data;
    p.o = (uint64_t)(uintptr_t)o->t.data;
    p.lse_a = (uint64_t)(uintptr_t)in->lse_a.t.data, p.lse_b = (uint64_t)(uintptr_t)in->lse_b.t.data;
    p.lse = lse ? (uint64_t)(uintptr_t)lse->t.data : 0;
    for (int i = 0; i < 4; i++) {
      p.o_a_stride[i] = in->o_a.strides[i], p.o_b_stride[i] = in->o_b.strides[i], p.o_stride[i] = o->strides[i];
      if (i < 3) {
        p.lse_a_stride[i] = in->lse_a.strides[i], p.lse_b_stride[i] = in->lse_b.strides[i];
        p.lse_stride[i] = lse ? lse->strides[i] : 0;
      }
    }
    p.batch = B, p.seqlen = S, p.heads = H, p.head_dim = D;
    emu_stats stats;
    rc = emu_kernel_launch(kernel, (B * S * H + GPU_MERGE_WARPS - 1) / GPU_MERGE_WARPS, &p, sizeof p, &stats, why,
                           why_size);
  }
  emu_kernel_free(kernel);
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);
  return rc;
}

static void test_gpu_kernel(void) {
  for (int t = 0; t < 3; t++) {
    dtype_id dtype = (dtype_id)t;
    merge_inputs in;
    static double ref_o[B * S * H * D], ref_lse[B * H * S];
    if (inputs_make(&in, dtype) != 0) continue;
    merge_reference(&in, dtype, ref_o, ref_lse);
    double tol = dtype == DTYPE_F32 ? 1e-6 : core_dtype_tolerance(dtype), err = 0;
    host_tensor o, lse;
    int64_t o_shape[4] = {B, S, H, D}, o_strides[4] = {S * H * 48, H * 48, 48, 1}, lse_shape[3] = {B, H, S};
    host_tensor_alloc(&o, dtype, 4, o_shape, o_strides);
    host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL);
    char why[512] = "";
    int rc = emulate(dtype, &in, &o, &lse, why, sizeof why);
    int wrong = rc != 0 || merge_wrong(&o, &lse, dtype, ref_o, ref_lse, tol, &err);
    check(!wrong,
          "the %s merge kernel on the emulator: a strided o and the LSE (rel err %.2e) %s", core_dtype_name(dtype), err,
          rc == 0 ? "" : why);
    /* in place, without an LSE: o is o_a (each lane reads its columns before writing them) */
    rc = emulate(dtype, &in, &in.o_a, NULL, why, sizeof why);
    wrong = rc != 0 || merge_wrong(&in.o_a, NULL, dtype, ref_o, ref_lse, tol, &err);
    check(!wrong, "the %s merge kernel on the emulator: in place, no LSE (rel err %.2e) %s", core_dtype_name(dtype), err,
          rc == 0 ? "" : why);
    host_tensor_free(&o);
    host_tensor_free(&lse);
    inputs_free(&in);
  }

  const char *ptxas = ptxas_find();
  if (ptxas == NULL) {
    printf("skip ptxas: none found (FJ_PTXAS, /usr/local/cuda/bin, PATH)\n");
    return;
  }
  static const char *const arches[2] = {"sm_80", "sm_90a"};
  for (int a = 0; a < 2; a++)
    for (int t = 0; t < 3; t++) {
      jit_target target;
      fj_status s = jit_nvptx_target(arches[a], &target);
      LLVMContextRef ctx = LLVMContextCreate();
      LLVMModuleRef module = LLVMModuleCreateWithNameInContext("merge", ctx);
      jit_buffer ptx = {0};
      if (s == FJ_OK) s = jit_module_set_target(module, &target);
      if (s == FJ_OK) s = attention_merge_nvptx_generate(module, (dtype_id)t, &target, "merge");
      if (s == FJ_OK) s = jit_compile_module(module, &target, "merge", &ptx);
      LLVMDisposeModule(module);
      LLVMContextDispose(ctx);
      char report[8192] = "";
      int rc = s == FJ_OK ? ptxas_assemble(ptxas, arches[a], ptx.data, ptx.size, report, sizeof report) : -1;
      int spills = ptxas_spills(report);
      check(s == FJ_OK && rc == 0 && !spills, "ptxas -arch=%s: the %s merge kernel assembles without spills %s",
            arches[a], core_dtype_name((dtype_id)t), rc == 0 ? "" : report);
      jit_buffer_free(&ptx);
    }
}

int main(void) {
  fj_context *context = cpu_context();
  if (context == NULL) return 1;
  test_cpu(context);
  test_halves(context);
  test_bad_arguments(context);
  fj_context_destroy(context);
  test_gpu_kernel();
  return check_summary();
}
