/* cpu_peak.h: measures the host CPU's peak fp32 FMA rate with a JIT-compiled loop of independent
 * vector FMAs, so that `flashjit info` and bench reports can say how far a kernel is from the machine's
 * limit, and where the CPU has AVX512-BF16 the peak of its bf16 pair dot (the instruction bf16 kernels
 * then run on). The loop is built for jit_host_target(), so it uses the same vector width kernels get. */
#ifndef FJ_CPU_PEAK_H
#define FJ_CPU_PEAK_H
#include <stddef.h>
#include <stdint.h>
#include "flashjit.h"
#include "jit/jit.h"

/* Which instruction the loop repeats: a vector FMA (2 flops per lane), or AVX512-BF16's pair dot (two
 * products and two sums per fp32 lane: 4 flops). */
typedef enum cpu_peak_op { CPU_PEAK_FMA, CPU_PEAK_BF16_DOT } cpu_peak_op;

/* The generated function's name in the object: float fn(int64_t iterations, float a, float b). */
#define CPU_PEAK_SYMBOL "fj_cpu_peak_fma"
typedef float (*cpu_peak_fn)(int64_t iterations, float a, float b);

/* Runs the loop on `threads` threads at once (1..1024) and writes the best observed rate in GFLOP/s
 * (an FMA counts 2) to *gflops. detail (may be NULL) gets how it was measured: "16 accumulators x 16
 * lanes, 2 threads, best of 5, 75 ms each". Takes about half a second. FJ_INVALID_ARGUMENT for bad
 * arguments; FJ_COMPILE_FAILED / FJ_OUT_OF_MEMORY from the JIT and the thread pool. */
fj_status cpu_peak_gflops(int threads, double *gflops, char *detail, size_t detail_size);
/* The same for the bf16 pair dot; FJ_UNSUPPORTED (with the reason) on a CPU without AVX512-BF16 or
 * 512-bit vectors. */
fj_status cpu_peak_bf16_dot_gflops(int threads, double *gflops, char *detail, size_t detail_size);

/* The object code of the loop for the host, for inspecting its assembly (tests): *lanes floats per
 * vector, *accumulators independent vectors. out is filled as jit_compile_module fills it. */
fj_status cpu_peak_object(cpu_peak_op op, jit_buffer *out, int *lanes, int *accumulators);
#endif
