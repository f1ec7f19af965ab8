/* test_cuda_peak.c: the CUDA backend's peak kernels (cuda_peak.c) without a GPU: both run on the NVPTX
 * emulator as production compiles them (the O3 pipeline first) and compute what the measurement checks
 * (the mma kernel's sums, the copy's bytes, nothing written outside its destination); both assemble with
 * ptxas for sm_80 and sm_90a without spills, the mma kernel in at most 64 registers a thread (its four
 * blocks of 256 threads must all be resident on an SM for one wave); and the FLOP count is the mma's.
 * The measurement's plumbing through the driver is test_cuda_driver's (on the fake, where no kernel
 * runs and so no figure may be given). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/Core.h>

#include "backends/cuda/cuda_peak.h"
#include "check.h"
#include "jit/jit.h"
#include "nvptx_emu.h"
#include "ptxas_tool.h"

static jit_target nvptx;

/* A module holding one of the kernels, for sm_80. */
static LLVMModuleRef peak_module(LLVMContextRef ctx, int mma) {
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("peak", ctx);
  jit_module_set_target(module, &nvptx);
  cuda_peak_build(module, mma, !mma);
  return module;
}

static void test_mma_on_emulator(void) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef module = peak_module(ctx, 1);
  emu_kernel *kernel = NULL;
  char why[512] = "";
  int rc = emu_kernel_build(module, &nvptx, CUDA_PEAK_MMA_SYMBOL, CUDA_PEAK_THREADS, 0, 1, &kernel, why, sizeof why);
  enum { BLOCKS = 2, THREADS = BLOCKS * CUDA_PEAK_THREADS };
  static float sums[THREADS];
  for (int iterations = 1; rc == 0 && iterations <= 3; iterations += 2) {
    for (int t = 0; t < THREADS; t++) sums[t] = -1.0f;
    emu_kernel_clear_regions(kernel);
    emu_kernel_add_region(kernel, sums, sizeof sums, 1);
    cuda_peak_mma_params params = {(uint64_t)(uintptr_t)sums, iterations};
    emu_stats stats;
    rc = emu_kernel_launch(kernel, BLOCKS, &params, sizeof params, &stats, why, sizeof why);
    double want = cuda_peak_mma_expected(iterations);
    int right = 0;
    for (int t = 0; t < THREADS; t++) right += sums[t] == (float)want;
    check(rc == 0 && right == THREADS && stats.warp_ops >= (int64_t)BLOCKS * 8 * iterations * CUDA_PEAK_UNROLL *
                                                             CUDA_PEAK_ACCUMULATORS,
          "the mma kernel, %d iteration%s on the emulator: %d of %d threads hold %g (thread 0: %g) %s", iterations,
          iterations == 1 ? "" : "s", right, THREADS, want, (double)sums[0], rc == 0 ? "" : why);
  }
  if (rc != 0 && kernel == NULL) check(0, "the mma kernel builds for the emulator: %s", why);
  emu_kernel_free(kernel);
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);

  /* 2 blocks of 8 warps, 3 iterations, 4 unrolled trips of 8 chains, 4096 FLOPs each */
  double flops = cuda_peak_mma_flops(2, 3);
  check(flops == 2.0 * 8 * 3 * CUDA_PEAK_UNROLL * CUDA_PEAK_ACCUMULATORS * 4096.0,
        "an mma.m16n8k16 counts 2*16*8*16 FLOPs: %.0f for 2 blocks, 3 iterations", flops);
}

static void test_copy_on_emulator(void) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef module = peak_module(ctx, 0);
  emu_kernel *kernel = NULL;
  char why[512] = "";
  int rc = emu_kernel_build(module, &nvptx, CUDA_PEAK_COPY_SYMBOL, CUDA_PEAK_THREADS, 0, 1, &kernel, why, sizeof why);
  /* 2 blocks: 512 threads over 1000 chunks, so that some threads take two and some one; the destination
   * is registered without its guard chunk, so a write past the end is the emulator's error */
  enum { CHUNKS = 1000, BLOCKS = 2 };
  static uint32_t src[CHUNKS * 4], dst[(CHUNKS + 1) * 4];
  for (int i = 0; i < CHUNKS * 4; i++) src[i] = (uint32_t)i * 2654435761u;
  memset(dst, 0xa5, sizeof dst);
  if (rc == 0) {
    emu_kernel_add_region(kernel, src, sizeof src, 0);
    emu_kernel_add_region(kernel, dst, CHUNKS * 16, 1);
    cuda_peak_copy_params params = {(uint64_t)(uintptr_t)src, (uint64_t)(uintptr_t)dst, CHUNKS,
                                    BLOCKS * CUDA_PEAK_THREADS};
    emu_stats stats;
    rc = emu_kernel_launch(kernel, BLOCKS, &params, sizeof params, &stats, why, sizeof why);
  }
  uint32_t guard;
  memset(&guard, 0xa5, sizeof guard);
  check(rc == 0 && memcmp(dst, src, sizeof src) == 0 && dst[CHUNKS * 4] == guard,
        "the copy kernel on the emulator: %d chunks of 16 bytes copied by %d threads, nothing past them %s", CHUNKS,
        BLOCKS * CUDA_PEAK_THREADS, rc == 0 ? "" : why);
  emu_kernel_free(kernel);
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);
}

static void test_ptxas(const char *ptxas, const char *arch) {
  jit_target target;
  fj_status status = jit_nvptx_target(arch, &target);
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("peak", ctx);
  jit_buffer ptx = {0};
  if (status == FJ_OK) status = jit_module_set_target(module, &target);
  if (status == FJ_OK) {
    cuda_peak_build(module, 1, 1);
    status = jit_compile_module(module, &target, "cuda peak kernels", &ptx);
  }
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);
  static char report[65536];
  report[0] = '\0';
  int rc = status == FJ_OK ? ptxas_assemble(ptxas, arch, ptx.data, ptx.size, report, sizeof report) : -1;
  const char *text = report;
  int mma_regs = ptxas_registers(text, CUDA_PEAK_MMA_SYMBOL), copy_regs = ptxas_registers(text, CUDA_PEAK_COPY_SYMBOL);
  int spills = ptxas_spills(text);
  check(status == FJ_OK && rc == 0 && mma_regs > 0 && mma_regs <= 64 && copy_regs > 0 && !spills,
        "ptxas -arch=%s: both peak kernels assemble without spills, the mma kernel in %d registers (at most 64), "
        "the copy kernel in %d %s", arch, mma_regs, copy_regs, status == FJ_OK ? (rc == 0 ? "" : text) : fj_last_error());
  jit_buffer_free(&ptx);
}

int main(void) {
  if (jit_nvptx_target("sm_80", &nvptx) != FJ_OK) {
    printf("FAIL no NVPTX target: %s\n", fj_last_error());
    return 1;
  }
  test_mma_on_emulator();
  test_copy_on_emulator();
  const char *ptxas = ptxas_find();
  if (ptxas == NULL) {
    printf("skip ptxas: none found (FJ_PTXAS, /usr/local/cuda/bin, PATH)\n");
  } else {
    test_ptxas(ptxas, "sm_80");
    test_ptxas(ptxas, "sm_90a");
  }
  return check_summary();
}
