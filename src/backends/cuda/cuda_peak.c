/* cuda_peak.c: the peak rates of an NVIDIA device, measured rather than looked up (clocks, power limits
 * and the memory actually fitted differ between boards of one name). Two kernels, built with this
 * backend's codegen hooks and run through its own table, as the attention kernels are:
 *  - mma: every warp keeps CUDA_PEAK_ACCUMULATORS independent chains of mma.sync m16n8k16 (fp16 in,
 *    fp32 accumulate) on register operands, no memory traffic; four blocks of 256 threads per SM, all
 *    resident at once, so that the grid is one wave and no SM idles at the tail;
 *  - copy: each thread copies 16 bytes per step through a grid-stride loop over 256 MiB (past any L2).
 * Each is timed with the backend's events, the best of several launches kept, and its result checked
 * (the mma sums exactly, the copy's first and last MiB) before the figure is believed: a kernel that did
 * not run gives no figure. */
#include "backends/cuda/cuda_peak.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_codegen.h"
#include "core/error.h"
#include "jit/jit.h"

#define PEAK_MMA_BLOCKS_PER_SM 4
#define PEAK_COPY_BLOCKS_PER_SM 8
#define PEAK_MMA_TARGET_MS 20.0
#define PEAK_MMA_CALIBRATION 256
#define PEAK_MMA_REPEATS 3
#define PEAK_COPY_BYTES (256u << 20)
#define PEAK_COPY_CHECK_BYTES (1u << 20)
#define PEAK_COPY_REPEATS 10
/* fp16 2^-10 in both halves of each operand register: every product 2^-20, every mma adds 16 of them */
#define PEAK_OPERAND_BITS 0x14001400u
#define PEAK_MMA_STEP (16.0 / 1048576.0)

/* ---- the kernels ------------------------------------------------------------------------------- */

/* Kernel `name(params byval [slots x i64] align 8)` for CUDA_PEAK_THREADS threads, the builder at its
 * entry; *params is the block's pointer. */
static LLVMValueRef peak_kernel(cuda_ir *ir, const char *name, unsigned slots, LLVMValueRef *params) {
  LLVMTypeRef ptr = LLVMPointerTypeInContext(ir->ctx, 0);
  LLVMValueRef fn = LLVMAddFunction(ir->module, name, LLVMFunctionType(LLVMVoidTypeInContext(ir->ctx), &ptr, 1, 0));
  cuda_ir_kernel(ir, fn, CUDA_PEAK_THREADS);
  LLVMTypeRef block = LLVMArrayType2(LLVMInt64TypeInContext(ir->ctx), slots);
  LLVMAddAttributeAtIndex(fn, 1, LLVMCreateTypeAttribute(ir->ctx, LLVMGetEnumAttributeKindForName("byval", 5), block));
  LLVMAddAttributeAtIndex(fn, 1, LLVMCreateEnumAttribute(ir->ctx, LLVMGetEnumAttributeKindForName("align", 5), 8));
  LLVMPositionBuilderAtEnd(ir->b, LLVMAppendBasicBlockInContext(ir->ctx, fn, "entry"));
  *params = LLVMGetParam(fn, 0);
  return fn;
}

static LLVMValueRef peak_param(cuda_ir *ir, LLVMValueRef params, unsigned slot) {
  LLVMTypeRef i64 = LLVMInt64TypeInContext(ir->ctx);
  LLVMValueRef index = LLVMConstInt(i64, slot, 0);
  LLVMValueRef at = LLVMBuildGEP2(ir->b, i64, params, &index, 1, "");
  LLVMValueRef value = LLVMBuildLoad2(ir->b, i64, at, "");
  LLVMSetAlignment(value, 8);
  return value;
}

static LLVMValueRef peak_global(cuda_ir *ir, LLVMValueRef address_i64) {
  return LLVMBuildIntToPtr(ir->b, address_i64, LLVMPointerTypeInContext(ir->ctx, CUDA_AS_GLOBAL), "");
}

/* block * CUDA_PEAK_THREADS + thread, i64 */
static LLVMValueRef peak_global_thread(cuda_ir *ir) {
  LLVMTypeRef i64 = LLVMInt64TypeInContext(ir->ctx);
  LLVMValueRef block = LLVMBuildZExt(ir->b, cuda_ir_block_index(ir), i64, "");
  LLVMValueRef thread = LLVMBuildZExt(ir->b, cuda_ir_thread_index(ir), i64, "");
  return LLVMBuildAdd(ir->b, LLVMBuildMul(ir->b, block, LLVMConstInt(i64, CUDA_PEAK_THREADS, 0), ""), thread, "");
}

/* The initial value of accumulator register reg of chain k: all different, so that no two chains are
 * provably equal (LLVM would merge them into one) */
static double peak_init(int k, int reg) { return (double)(k * 4 + reg + 1) / 256.0; }

/* out[thread] = the sum over the chains of: acc = init; repeat iterations * UNROLL times: acc = a b + acc */
static void peak_build_mma(cuda_ir *ir) {
  LLVMContextRef ctx = ir->ctx;
  LLVMTypeRef i64 = LLVMInt64TypeInContext(ctx), i32 = LLVMInt32TypeInContext(ctx), f32 = LLVMFloatTypeInContext(ctx);
  LLVMValueRef params;
  LLVMValueRef fn = peak_kernel(ir, CUDA_PEAK_MMA_SYMBOL, 2, &params);
  LLVMBasicBlockRef entry = LLVMGetInsertBlock(ir->b);
  LLVMValueRef out = peak_global(ir, peak_param(ir, params, 0));
  LLVMValueRef iterations = peak_param(ir, params, 1);
  /* through a mov LLVM cannot see into: the operands are not constants it could fold */
  LLVMValueRef operand = cuda_ir_opaque(ir, LLVMConstInt(i32, PEAK_OPERAND_BITS, 0));
  LLVMValueRef a[4] = {operand, operand, operand, operand}, b[2] = {operand, operand};
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(ctx, fn, "loop");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");
  LLVMBuildBr(ir->b, loop);

  LLVMPositionBuilderAtEnd(ir->b, loop);
  LLVMValueRef i = LLVMBuildPhi(ir->b, i64, "i");
  LLVMValueRef phi[CUDA_PEAK_ACCUMULATORS][4], acc[CUDA_PEAK_ACCUMULATORS][4];
  for (int k = 0; k < CUDA_PEAK_ACCUMULATORS; k++)
    for (int r = 0; r < 4; r++) acc[k][r] = phi[k][r] = LLVMBuildPhi(ir->b, f32, "acc");
  for (int u = 0; u < CUDA_PEAK_UNROLL; u++)
    for (int k = 0; k < CUDA_PEAK_ACCUMULATORS; k++) {
      LLVMValueRef d[4];
      cuda_ir_mma_m16n8k16(ir, 0, a, b, acc[k], d);
      memcpy(acc[k], d, sizeof d);
    }
  LLVMValueRef next = LLVMBuildAdd(ir->b, i, LLVMConstInt(i64, 1, 0), "");
  LLVMBasicBlockRef loop_end = LLVMGetInsertBlock(ir->b);
  LLVMBuildCondBr(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, next, iterations, ""), loop, done);
  LLVMValueRef zero = LLVMConstInt(i64, 0, 0);
  LLVMAddIncoming(i, &zero, &entry, 1);
  LLVMAddIncoming(i, &next, &loop_end, 1);
  for (int k = 0; k < CUDA_PEAK_ACCUMULATORS; k++)
    for (int r = 0; r < 4; r++) {
      LLVMValueRef init = LLVMConstReal(f32, peak_init(k, r));
      LLVMAddIncoming(phi[k][r], &init, &entry, 1);
      LLVMAddIncoming(phi[k][r], &acc[k][r], &loop_end, 1);
    }

  LLVMPositionBuilderAtEnd(ir->b, done);
  LLVMValueRef sum = LLVMConstReal(f32, 0.0);
  for (int k = 0; k < CUDA_PEAK_ACCUMULATORS; k++)
    for (int r = 0; r < 4; r++) sum = LLVMBuildFAdd(ir->b, sum, acc[k][r], "");
  LLVMValueRef index = peak_global_thread(ir);
  LLVMValueRef at = LLVMBuildGEP2(ir->b, f32, out, &index, 1, "");
  LLVMSetAlignment(LLVMBuildStore(ir->b, sum, at), 4);
  LLVMBuildRetVoid(ir->b);
}

/* for (c = global thread; c < chunks; c += stride) dst[c] = src[c], 16 bytes each */
static void peak_build_copy(cuda_ir *ir) {
  LLVMContextRef ctx = ir->ctx;
  LLVMTypeRef i64 = LLVMInt64TypeInContext(ctx);
  LLVMTypeRef chunk = LLVMVectorType(LLVMInt32TypeInContext(ctx), 4);
  LLVMValueRef params;
  LLVMValueRef fn = peak_kernel(ir, CUDA_PEAK_COPY_SYMBOL, 4, &params);
  LLVMBasicBlockRef entry = LLVMGetInsertBlock(ir->b);
  LLVMValueRef src = peak_global(ir, peak_param(ir, params, 0));
  LLVMValueRef dst = peak_global(ir, peak_param(ir, params, 1));
  LLVMValueRef chunks = peak_param(ir, params, 2), stride = peak_param(ir, params, 3);
  LLVMValueRef first = peak_global_thread(ir);
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(ctx, fn, "loop");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");
  LLVMBuildCondBr(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, first, chunks, ""), loop, done);

  LLVMPositionBuilderAtEnd(ir->b, loop);
  LLVMValueRef c = LLVMBuildPhi(ir->b, i64, "c");
  LLVMValueRef value = LLVMBuildLoad2(ir->b, chunk, LLVMBuildGEP2(ir->b, chunk, src, &c, 1, ""), "");
  LLVMSetAlignment(value, 16);
  LLVMSetAlignment(LLVMBuildStore(ir->b, value, LLVMBuildGEP2(ir->b, chunk, dst, &c, 1, "")), 16);
  LLVMValueRef next = LLVMBuildAdd(ir->b, c, stride, "");
  LLVMBuildCondBr(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, next, chunks, ""), loop, done);
  LLVMAddIncoming(c, &first, &entry, 1);
  LLVMAddIncoming(c, &next, &loop, 1);

  LLVMPositionBuilderAtEnd(ir->b, done);
  LLVMBuildRetVoid(ir->b);
}

void cuda_peak_build(LLVMModuleRef module, int with_mma, int with_copy) {
  cuda_ir ir = {LLVMGetModuleContext(module), module, NULL};
  ir.b = LLVMCreateBuilderInContext(ir.ctx);
  if (with_mma) peak_build_mma(&ir);
  if (with_copy) peak_build_copy(&ir);
  LLVMDisposeBuilder(ir.b);
}

double cuda_peak_mma_expected(int64_t iterations) {
  double sum = 0.0;
  for (int k = 0; k < CUDA_PEAK_ACCUMULATORS; k++)
    for (int r = 0; r < 4; r++) sum += peak_init(k, r) + (double)iterations * CUDA_PEAK_UNROLL * PEAK_MMA_STEP;
  return sum;
}

double cuda_peak_mma_flops(int64_t blocks, int64_t iterations) {
  /* per mma: 16 x 8 outputs, 16 multiply-adds each */
  return (double)blocks * (CUDA_PEAK_THREADS / 32) * (double)iterations * CUDA_PEAK_UNROLL * CUDA_PEAK_ACCUMULATORS *
         2.0 * 16 * 8 * 16;
}

/* ---- measuring ---------------------------------------------------------------------------------- */

typedef struct peak_run {
  const fj_backend *be;
  backend_device *device;
  void *module, *mma, *copy;
  int sms;
  uint64_t memory_bytes;
} peak_run;

/* One launch timed by the backend's events; its milliseconds into *ms. */
static fj_status peak_time(peak_run *run, void *function, int64_t blocks, const void *params, size_t size,
                           double *ms) {
  backend_launch launch = {.jobs = blocks, .block_threads = CUDA_PEAK_THREADS, .params = params,
                           .params_size = size};
  void *timer = NULL;
  fj_status status = run->be->timer_start(run->device, NULL, &timer);
  if (status != FJ_OK) return status;
  fj_status launched = run->be->launch(run->device, function, &launch, NULL);
  status = run->be->timer_stop(run->device, timer, ms);
  return launched != FJ_OK ? launched : status;
}

static void peak_note_error(char *note, size_t size, const char *what) {
  snprintf(note, size, "%s: %s", what, fj_last_error());
  for (char *c = note; *c; c++)
    if (*c == '\n') *c = ' ';
}

static void peak_measure_mma(peak_run *run, backend_peak *out) {
  int64_t blocks = (int64_t)run->sms * PEAK_MMA_BLOCKS_PER_SM;
  size_t bytes = (size_t)blocks * CUDA_PEAK_THREADS * sizeof(float);
  float *host = malloc(bytes);
  void *sums = NULL;
  fj_status status = host ? run->be->memory_alloc(run->device, bytes, &sums)
                          : core_error(FJ_OUT_OF_MEMORY, "no memory for %zu bytes", bytes);
  /* poisoned first: a launch that does nothing leaves NaN, not an old right answer */
  if (status == FJ_OK) memset(host, 0xff, bytes);
  if (status == FJ_OK) status = run->be->copy_to_device(run->device, sums, host, bytes);
  cuda_peak_mma_params params = {(uint64_t)(uintptr_t)sums, PEAK_MMA_CALIBRATION};
  double ms = 0.0, best = 0.0;
  if (status == FJ_OK) status = peak_time(run, run->mma, blocks, &params, sizeof params, &ms);
  if (status == FJ_OK && ms > 0.0) {
    double scaled = PEAK_MMA_CALIBRATION * PEAK_MMA_TARGET_MS / ms;
    params.iterations = scaled < PEAK_MMA_CALIBRATION ? PEAK_MMA_CALIBRATION : scaled > (1 << 24) ? (1 << 24) : (int64_t)scaled;
  }
  for (int i = 0; i < PEAK_MMA_REPEATS && status == FJ_OK; i++) {
    status = peak_time(run, run->mma, blocks, &params, sizeof params, &ms);
    if (status == FJ_OK && ms > 0.0 && (best == 0.0 || ms < best)) best = ms;
  }
  if (status == FJ_OK) status = run->be->copy_to_host(run->device, host, sums, bytes);
  if (status != FJ_OK) {
    peak_note_error(out->matrix_note, sizeof out->matrix_note, "the mma kernel");
  } else {
    double want = cuda_peak_mma_expected(params.iterations);
    size_t wrong = 0, threads = bytes / sizeof(float);
    for (size_t t = 0; t < threads; t++) wrong += !(fabs(host[t] - want) <= 1e-5 * want);
    if (wrong > 0 || best <= 0.0)
      snprintf(out->matrix_note, sizeof out->matrix_note,
               "the mma kernel's sums are wrong in %zu of %zu threads (thread 0: %g, expected %g): no figure",
               wrong, threads, (double)host[0], want);
    else {
      out->matrix_tflops = cuda_peak_mma_flops(blocks, params.iterations) / (best * 1e-3) / 1e12;
      snprintf(out->matrix_note, sizeof out->matrix_note,
               "fp16 mma.sync m16n8k16, fp32 accumulate, %d chains a warp, %lld blocks of %d, best of %d, "
               "%.1f ms each", CUDA_PEAK_ACCUMULATORS, (long long)blocks, CUDA_PEAK_THREADS, PEAK_MMA_REPEATS, best);
    }
  }
  run->be->memory_free(run->device, sums);
  free(host);
}

static void peak_measure_copy(peak_run *run, backend_peak *out) {
  size_t bytes = PEAK_COPY_BYTES;
  while (bytes > 4 * PEAK_COPY_CHECK_BYTES && (uint64_t)bytes * 8 > run->memory_bytes) bytes /= 2;
  int64_t blocks = (int64_t)run->sms * PEAK_COPY_BLOCKS_PER_SM;
  unsigned char *pattern = malloc(2 * PEAK_COPY_CHECK_BYTES), *back = malloc(2 * PEAK_COPY_CHECK_BYTES);
  void *src = NULL, *dst = NULL;
  fj_status status = pattern && back ? FJ_OK : core_error(FJ_OUT_OF_MEMORY, "no memory for the check");
  if (status == FJ_OK) status = run->be->memory_alloc(run->device, bytes, &src);
  if (status == FJ_OK) status = run->be->memory_alloc(run->device, bytes, &dst);
  /* the first and last MiB of src get a pattern, of dst poison: what is checked after the copies */
  size_t tail = bytes - PEAK_COPY_CHECK_BYTES;
  if (status == FJ_OK) {
    for (size_t i = 0; i < 2 * PEAK_COPY_CHECK_BYTES; i++) pattern[i] = (unsigned char)((i * 2654435761u) >> 13);
    memset(back, 0xa5, 2 * PEAK_COPY_CHECK_BYTES);
    status = run->be->copy_to_device(run->device, src, pattern, PEAK_COPY_CHECK_BYTES);
  }
  if (status == FJ_OK)
    status = run->be->copy_to_device(run->device, (char *)src + tail, pattern + PEAK_COPY_CHECK_BYTES,
                                     PEAK_COPY_CHECK_BYTES);
  if (status == FJ_OK) status = run->be->copy_to_device(run->device, dst, back, PEAK_COPY_CHECK_BYTES);
  if (status == FJ_OK) status = run->be->copy_to_device(run->device, (char *)dst + tail, back, PEAK_COPY_CHECK_BYTES);
  cuda_peak_copy_params params = {(uint64_t)(uintptr_t)src, (uint64_t)(uintptr_t)dst, (int64_t)(bytes / 16),
                                  blocks * CUDA_PEAK_THREADS};
  double ms = 0.0, best = 0.0;
  for (int i = 0; i <= PEAK_COPY_REPEATS && status == FJ_OK; i++) {  /* the first warms up */
    status = peak_time(run, run->copy, blocks, &params, sizeof params, &ms);
    if (status == FJ_OK && i > 0 && ms > 0.0 && (best == 0.0 || ms < best)) best = ms;
  }
  if (status == FJ_OK) status = run->be->copy_to_host(run->device, back, dst, PEAK_COPY_CHECK_BYTES);
  if (status == FJ_OK)
    status = run->be->copy_to_host(run->device, back + PEAK_COPY_CHECK_BYTES, (char *)dst + tail, PEAK_COPY_CHECK_BYTES);
  if (status != FJ_OK)
    peak_note_error(out->copy_note, sizeof out->copy_note, "the copy kernel");
  else if (memcmp(back, pattern, 2 * PEAK_COPY_CHECK_BYTES) != 0 || best <= 0.0)
    snprintf(out->copy_note, sizeof out->copy_note, "the copy kernel's first and last MiB differ from its source: no figure");
  else {
    out->copy_gbps = 2.0 * (double)bytes / (best * 1e-3) / 1e9;
    snprintf(out->copy_note, sizeof out->copy_note, "16 bytes a thread, %zu MiB read and written, best of %d, %.3f ms",
             bytes >> 20, PEAK_COPY_REPEATS, best);
  }
  run->be->memory_free(run->device, src);
  run->be->memory_free(run->device, dst);
  free(pattern);
  free(back);
}

/* Both kernels compiled for the device, through the driver's linker as every kernel is. */
static fj_status peak_load(peak_run *run, int index) {
  jit_target target;
  fj_status status = run->be->codegen_target(index, &target);
  if (status != FJ_OK) return status;
  status = jit_init();
  if (status != FJ_OK) return status;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("fj_cuda_peak", ctx);
  jit_buffer ptx = {0}, cubin = {0};
  status = jit_module_set_target(module, &target);
  if (status == FJ_OK) {
    cuda_peak_build(module, 1, 1);
    status = jit_compile_module(module, &target, "cuda peak kernels", &ptx);
  }
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);
  if (status == FJ_OK) status = run->be->binary_finalize(run->device, ptx.data, ptx.size, "fj_cuda_peak", &cubin);
  if (status == FJ_OK) status = run->be->module_load(run->device, cubin.data, cubin.size, "fj_cuda_peak", &run->module);
  if (status == FJ_OK) status = run->be->module_function(run->module, CUDA_PEAK_MMA_SYMBOL, &run->mma);
  if (status == FJ_OK) status = run->be->module_function(run->module, CUDA_PEAK_COPY_SYMBOL, &run->copy);
  jit_buffer_free(&ptx);
  jit_buffer_free(&cubin);
  return status;
}

fj_status cuda_peak_measure(int index, backend_peak *out) {
  if (out == NULL) return core_error(FJ_INVALID_ARGUMENT, "cuda_peak_measure: out is NULL");
  memset(out, 0, sizeof *out);
  peak_run run = {.be = &cuda_backend};
  backend_device_info info;
  fj_status status = run.be->device_info(index, &info);
  if (status != FJ_OK) return status;
  run.sms = info.compute_units > 0 ? info.compute_units : 1;
  run.memory_bytes = info.memory_bytes;
  status = run.be->device_open(index, 0, &run.device);
  if (status == FJ_OK) status = peak_load(&run, index);
  if (status == FJ_OK) {
    peak_measure_mma(&run, out);
    peak_measure_copy(&run, out);
  }
  if (run.module != NULL) run.be->module_unload(run.module);
  run.be->device_close(run.device);
  return status;
}
