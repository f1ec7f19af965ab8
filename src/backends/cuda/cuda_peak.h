/* cuda_peak.h: an NVIDIA device's peak rates, measured with two microkernels of this backend's own, so
 * that `flashjit info` can say how far a kernel's TFLOP/s or GB/s are from what the device sustains: the
 * tensor cores through the instruction the attention kernels use (mma.sync m16n8k16, fp16 in, fp32
 * accumulate), and device memory through a 16-byte-per-thread copy. Each kernel's result is checked
 * before its time is believed. */
#ifndef FJ_CUDA_PEAK_H
#define FJ_CUDA_PEAK_H
#include <stdint.h>
#include <llvm-c/Core.h>
#include "backends/backend.h"

#define CUDA_PEAK_MMA_SYMBOL "fj_cuda_peak_mma"
#define CUDA_PEAK_COPY_SYMBOL "fj_cuda_peak_copy"
#define CUDA_PEAK_THREADS 256      /* per block, both kernels */
#define CUDA_PEAK_ACCUMULATORS 8   /* independent mma chains per warp: enough to cover the latency */
#define CUDA_PEAK_UNROLL 4         /* trips of all chains per loop iteration */

/* The kernels' by-value parameter blocks. */
typedef struct cuda_peak_mma_params {
  uint64_t out;        /* float per thread: the sum of its accumulators at the end */
  int64_t iterations;  /* at least 1 */
} cuda_peak_mma_params;

typedef struct cuda_peak_copy_params {
  uint64_t src, dst;   /* 16-byte aligned */
  int64_t chunks;      /* 16-byte chunks to copy */
  int64_t stride;      /* threads in the grid: blocks * CUDA_PEAK_THREADS */
} cuda_peak_copy_params;

/* Adds kernel CUDA_PEAK_MMA_SYMBOL (with_mma) and/or CUDA_PEAK_COPY_SYMBOL to module, an NVPTX module
 * whose target is already set. */
void cuda_peak_build(LLVMModuleRef module, int with_mma, int with_copy);
/* What every thread of the mma kernel stores after `iterations` iterations. */
double cuda_peak_mma_expected(int64_t iterations);
/* FLOPs of one mma kernel launch of `blocks` blocks. */
double cuda_peak_mma_flops(int64_t blocks, int64_t iterations);

/* The backend's device_peak slot: compiles both kernels for device `index`, runs them on its primary
 * context and fills out (a figure, or why there is none, for each). FJ_OK when it could try; an error
 * status (with the message) when the device could not be opened or the kernels not be built. */
fj_status cuda_peak_measure(int index, backend_peak *out);
#endif
