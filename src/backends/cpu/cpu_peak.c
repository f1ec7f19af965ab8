/* cpu_peak.c: the host's peak fp32 FMA rate, measured rather than looked up. A JIT-compiled loop keeps
 * one independent chain of vector FMAs per accumulator (enough chains to cover FMA latency times the
 * number of FMA pipes), all threads start together behind a spin barrier, and the best of several
 * ~75 ms repetitions is kept, so the figure is what this machine sustains now (clocks, SMT, VM). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>

#include "backends/cpu/cpu_peak.h"
#include "core/error.h"
#include "core/threadpool.h"

#define PEAK_MAX_THREADS 1024
#define PEAK_REPEATS 5
#define PEAK_TARGET_SECONDS 0.075
#define PEAK_CALIBRATION_ITERATIONS (1 << 18)

static double peak_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Chains in flight: 16 covers latency 4 x 2 pipes with room to spare, and 16 + the two operands fit
 * in 32 AVX-512 registers. With 16 registers (AVX2, SSE) four are kept free so nothing spills. */
static int peak_accumulators(const jit_target *target) {
  int regs = target->vector_registers >= 16 ? target->vector_registers : 16;
  return regs >= 32 ? 16 : regs - 4;
}

static int peak_lanes(const jit_target *target) {
  int bits = target->vector_bits >= 128 ? target->vector_bits : 128;
  return bits / 32;
}

/* The bf16 pair dot's operands: every lane's pair (x, -x) rounded to bf16, as <2 lanes x bfloat>. */
static LLVMValueRef peak_bf16_pairs(LLVMBuilderRef b, LLVMContextRef context, LLVMValueRef x, int lanes, int negate_odd) {
  LLVMTypeRef bf16 = LLVMBFloatTypeInContext(context);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(context);
  LLVMValueRef even = LLVMBuildFPTrunc(b, x, bf16, "");
  LLVMValueRef odd = LLVMBuildFPTrunc(b, negate_odd ? LLVMBuildFNeg(b, x, "") : x, bf16, "");
  LLVMTypeRef pair_type = LLVMVectorType(bf16, 2);
  LLVMValueRef pair = LLVMBuildInsertElement(b, LLVMGetPoison(pair_type), even, LLVMConstInt(i32, 0, 0), "");
  pair = LLVMBuildInsertElement(b, pair, odd, LLVMConstInt(i32, 1, 0), "");
  LLVMValueRef mask[32];
  for (int l = 0; l < 2 * lanes; l++) mask[l] = LLVMConstInt(i32, (unsigned)(l % 2), 0);
  return LLVMBuildShuffleVector(b, pair, LLVMGetPoison(pair_type), LLVMConstVector(mask, 2u * (unsigned)lanes), "");
}

/* Builds: float fj_cpu_peak_fma(i64 n, float a, float b) { acc[k] = init[k]; repeat n times:
 * acc[k] = fma(acc[k], a, b) for every k; return the sum of every lane of every acc; }.
 * The inits differ per accumulator and lane so that no two chains are provably equal (LLVM would merge
 * identical phis into one chain), and with a < 1 every chain converges to b / (1 - a): values stay
 * normal, never denormal or infinite, which would slow the FMA units and falsify the figure. For the
 * bf16 pair dot the step is acc[k] + a b - a b (pairs (a, -a) and (b, b), exact products), so the
 * chains stay near their inits. */
static fj_status peak_build(LLVMContextRef context, LLVMModuleRef module, cpu_peak_op op, int lanes,
                            int accumulators) {
  LLVMTypeRef f32 = LLVMFloatTypeInContext(context);
  LLVMTypeRef i64 = LLVMInt64TypeInContext(context);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(context);
  LLVMTypeRef vec = LLVMVectorType(f32, (unsigned)lanes);
  LLVMTypeRef params[3] = {i64, f32, f32};
  LLVMTypeRef fn_type = LLVMFunctionType(f32, params, 3, 0);
  LLVMValueRef fn = LLVMAddFunction(module, CPU_PEAK_SYMBOL, fn_type);

  /* Without it, a target that prefers 256-bit vectors may legalize <16 x float> as two halves. */
  char width[16];
  snprintf(width, sizeof width, "%d", lanes * 32);
  LLVMAttributeRef legal = LLVMCreateStringAttribute(context, "min-legal-vector-width", 22, width,
                                                     (unsigned)strlen(width));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, legal);
  unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(context, nounwind, 0));

  const char *name = op == CPU_PEAK_FMA ? "llvm.fma" : "llvm.x86.avx512bf16.dpbf16ps.512";
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (id == 0) return core_error(FJ_INTERNAL, "cpu_peak: LLVM has no %s intrinsic", name);
  LLVMValueRef step = LLVMGetIntrinsicDeclaration(module, id, &vec, op == CPU_PEAK_FMA ? 1 : 0);
  LLVMTypeRef step_type = LLVMIntrinsicGetType(context, id, &vec, op == CPU_PEAK_FMA ? 1 : 0);

  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(context, fn, "entry");
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(context, fn, "loop");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(context, fn, "done");
  LLVMBuilderRef b = LLVMCreateBuilderInContext(context);

  LLVMPositionBuilderAtEnd(b, entry);
  LLVMValueRef n = LLVMGetParam(fn, 0);
  LLVMValueRef zero_mask = LLVMConstNull(LLVMVectorType(i32, (unsigned)lanes));
  LLVMValueRef poison = LLVMGetPoison(vec);
  LLVMValueRef a = LLVMBuildShuffleVector(
      b, LLVMBuildInsertElement(b, poison, LLVMGetParam(fn, 1), LLVMConstInt(i32, 0, 0), ""), poison,
      zero_mask, "a");
  LLVMValueRef addend = LLVMBuildShuffleVector(
      b, LLVMBuildInsertElement(b, poison, LLVMGetParam(fn, 2), LLVMConstInt(i32, 0, 0), ""), poison,
      zero_mask, "b");
  LLVMValueRef a_pairs = NULL, b_pairs = NULL;
  if (op == CPU_PEAK_BF16_DOT) {
    a_pairs = peak_bf16_pairs(b, context, LLVMGetParam(fn, 1), lanes, 1);
    b_pairs = peak_bf16_pairs(b, context, LLVMGetParam(fn, 2), lanes, 0);
  }
  LLVMValueRef init[16];
  for (int k = 0; k < accumulators; k++) {
    LLVMValueRef elems[16];
    for (int l = 0; l < lanes; l++) elems[l] = LLVMConstReal(f32, 1e-3 * (double)(k * lanes + l + 1));
    init[k] = LLVMConstVector(elems, (unsigned)lanes);
  }
  LLVMValueRef empty = LLVMBuildICmp(b, LLVMIntEQ, n, LLVMConstInt(i64, 0, 0), "empty");
  LLVMBuildCondBr(b, empty, done, loop);

  LLVMPositionBuilderAtEnd(b, loop);
  LLVMValueRef i = LLVMBuildPhi(b, i64, "i");
  LLVMValueRef acc[16], next[16];
  for (int k = 0; k < accumulators; k++) acc[k] = LLVMBuildPhi(b, vec, "acc");
  for (int k = 0; k < accumulators; k++) {
    LLVMValueRef fma_args[3] = {acc[k], a, addend}, dot_args[3] = {acc[k], a_pairs, b_pairs};
    next[k] = LLVMBuildCall2(b, step_type, step, op == CPU_PEAK_FMA ? fma_args : dot_args, 3, "");
  }
  LLVMValueRef i_next = LLVMBuildAdd(b, i, LLVMConstInt(i64, 1, 0), "i.next");
  LLVMValueRef more = LLVMBuildICmp(b, LLVMIntULT, i_next, n, "more");
  LLVMBuildCondBr(b, more, loop, done);
  LLVMValueRef zero64 = LLVMConstInt(i64, 0, 0);
  LLVMAddIncoming(i, &zero64, &entry, 1);
  LLVMAddIncoming(i, &i_next, &loop, 1);
  for (int k = 0; k < accumulators; k++) {
    LLVMAddIncoming(acc[k], &init[k], &entry, 1);
    LLVMAddIncoming(acc[k], &next[k], &loop, 1);
  }

  LLVMPositionBuilderAtEnd(b, done);
  LLVMValueRef out[16] = {NULL};
  for (int k = 0; k < accumulators; k++) {
    out[k] = LLVMBuildPhi(b, vec, "out");
    LLVMAddIncoming(out[k], &init[k], &entry, 1);
    LLVMAddIncoming(out[k], &next[k], &loop, 1);
  }
  LLVMValueRef total = out[0];
  for (int k = 1; k < accumulators; k++) total = LLVMBuildFAdd(b, total, out[k], "");
  LLVMValueRef sum = LLVMBuildExtractElement(b, total, LLVMConstInt(i32, 0, 0), "");
  for (int l = 1; l < lanes; l++)
    sum = LLVMBuildFAdd(b, sum, LLVMBuildExtractElement(b, total, LLVMConstInt(i32, (unsigned)l, 0), ""),
                        "");
  LLVMBuildRet(b, sum);
  LLVMDisposeBuilder(b);
  return FJ_OK;
}

/* Compiles the loop for the host into an object. */
static fj_status peak_compile(cpu_peak_op op, jit_buffer *out, int *lanes_out, int *accumulators_out) {
  fj_status status = jit_init();
  if (status != FJ_OK) return status;
  jit_target target;
  status = jit_host_target(&target);
  if (status != FJ_OK) return status;
  int lanes = peak_lanes(&target);
  int accumulators = peak_accumulators(&target);
  if (lanes > 16) lanes = 16;  /* no host has vectors wider than 512 bits */
  if (op == CPU_PEAK_BF16_DOT && !(target.has_avx512bf16 && lanes == 16))
    return core_error(FJ_UNSUPPORTED, "cpu_peak: %s has no AVX512-BF16 at 512 bits: no bf16 pair dot", target.cpu);

  LLVMContextRef context = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("fj_cpu_peak", context);
  status = jit_module_set_target(module, &target);
  if (status == FJ_OK) status = peak_build(context, module, op, lanes, accumulators);
  if (status == FJ_OK) status = jit_compile_module(module, &target, "cpu_peak loop", out);
  LLVMDisposeModule(module);
  LLVMContextDispose(context);
  if (status != FJ_OK) return status;
  *lanes_out = lanes;
  *accumulators_out = accumulators;
  return FJ_OK;
}

fj_status cpu_peak_object(cpu_peak_op op, jit_buffer *out, int *lanes, int *accumulators) {
  if (out == NULL || lanes == NULL || accumulators == NULL)
    return core_error(FJ_INVALID_ARGUMENT, "cpu_peak_object: NULL argument");
  return peak_compile(op, out, lanes, accumulators);
}

/* One repetition's shared state. The barrier makes every thread start its loop at the same moment:
 * the pool hands out jobs dynamically, and without it a thread that wakes late would make the run
 * look slower (or a fast thread could take two jobs one after the other). */
typedef struct peak_run {
  cpu_peak_fn fn;
  int64_t iterations;
  int threads;
  atomic_int arrived;
  double start[PEAK_MAX_THREADS];
  double end[PEAK_MAX_THREADS];
  volatile float sink[PEAK_MAX_THREADS];
} peak_run;

static void peak_job(void *user, int64_t job, int worker) {
  peak_run *run = user;
  atomic_fetch_add(&run->arrived, 1);
  /* Bounded wait: a pool with fewer threads than jobs must not deadlock, only measure low. */
  double give_up = peak_now() + 2.0;
  while (atomic_load(&run->arrived) < run->threads && peak_now() < give_up) {
  }
  run->start[job] = peak_now();
  run->sink[job] = run->fn(run->iterations, 0.9999f, 1e-4f * (float)(job + 1));
  run->end[job] = peak_now();
}

/* Seconds from the first thread's start to the last thread's end. */
static double peak_repeat(core_pool *pool, peak_run *run) {
  atomic_store(&run->arrived, 0);
  core_pool_run(pool, run->threads, peak_job, run);
  double first = run->start[0], last = run->end[0];
  for (int t = 1; t < run->threads; t++) {
    if (run->start[t] < first) first = run->start[t];
    if (run->end[t] > last) last = run->end[t];
  }
  return last - first;
}

static fj_status peak_measure(cpu_peak_op op, int threads, double *gflops, char *detail, size_t detail_size) {
  if (gflops == NULL) return core_error(FJ_INVALID_ARGUMENT, "cpu_peak_gflops: gflops is NULL");
  *gflops = 0.0;
  if (detail != NULL && detail_size > 0) detail[0] = '\0';
  if (threads < 1 || threads > PEAK_MAX_THREADS)
    return core_error(FJ_INVALID_ARGUMENT, "cpu_peak_gflops: threads=%d: must be from 1 to %d", threads,
                      PEAK_MAX_THREADS);

  jit_buffer object = {0};
  int lanes = 0, accumulators = 0;
  fj_status status = peak_compile(op, &object, &lanes, &accumulators);
  if (status != FJ_OK) return status;
  jit_object *loaded = NULL;
  status = jit_object_load(object.data, object.size, "cpu_peak", &loaded);
  jit_buffer_free(&object);
  if (status != FJ_OK) return status;
  void *address = NULL;
  status = jit_object_symbol(loaded, CPU_PEAK_SYMBOL, &address);
  if (status != FJ_OK) {
    jit_object_unload(loaded);
    return status;
  }

  core_pool *pool = NULL;
  status = core_pool_create(threads, &pool);
  peak_run *run = status == FJ_OK ? calloc(1, sizeof *run) : NULL;
  if (status == FJ_OK && run == NULL) status = core_error(FJ_OUT_OF_MEMORY, "cpu_peak_gflops: no memory");
  if (status != FJ_OK) {
    core_pool_destroy(pool);
    jit_object_unload(loaded);
    return status;
  }
  /* ISO C has no cast from an object pointer to a function pointer; memcpy is the portable way. */
  memcpy(&run->fn, &address, sizeof run->fn);
  run->threads = threads;

  /* Calibrate on all threads at once so that the iteration count reflects the clock they share, after
   * a first run that wakes the cores up from idle frequencies. */
  run->iterations = PEAK_CALIBRATION_ITERATIONS;
  double seconds = 0.0;
  for (int pass = 0; pass < 3; pass++) {
    seconds = peak_repeat(pool, run);
    if (seconds >= 0.01) break;
    run->iterations *= 8;
  }
  double scale = seconds > 0.0 ? PEAK_TARGET_SECONDS / seconds : 1.0;
  double iterations = (double)run->iterations * scale;
  if (iterations < 1000.0) iterations = 1000.0;
  if (iterations > 1e10) iterations = 1e10;
  run->iterations = (int64_t)iterations;

  double best = HUGE_VAL;
  for (int r = 0; r < PEAK_REPEATS; r++) {
    double s = peak_repeat(pool, run);
    if (s > 0.0 && s < best) best = s;
  }
  core_pool_destroy(pool);
  jit_object_unload(loaded);

  double flops = (op == CPU_PEAK_FMA ? 2.0 : 4.0) * lanes * accumulators * (double)run->iterations * threads;
  int64_t iterations_done = run->iterations;
  free(run);
  if (!(best > 0.0 && best < HUGE_VAL))
    return core_error(FJ_INTERNAL, "cpu_peak_gflops: the clock did not advance over %lld iterations",
                      (long long)iterations_done);
  *gflops = flops / best / 1e9;
  if (detail != NULL && detail_size > 0)
    snprintf(detail, detail_size, "%d accumulators x %d lanes, %d thread%s, best of %d, %.0f ms each",
             accumulators, lanes, threads, threads == 1 ? "" : "s", PEAK_REPEATS, best * 1e3);
  return FJ_OK;
}

fj_status cpu_peak_gflops(int threads, double *gflops, char *detail, size_t detail_size) {
  return peak_measure(CPU_PEAK_FMA, threads, gflops, detail, detail_size);
}

fj_status cpu_peak_bf16_dot_gflops(int threads, double *gflops, char *detail, size_t detail_size) {
  return peak_measure(CPU_PEAK_BF16_DOT, threads, gflops, detail, detail_size);
}
