/* cpu_peak.h: measures the host CPU's peak fp32 FMA rate with a JIT-compiled loop of independent
 * vector FMAs, so that `flashjit info` and bench reports can say how far a kernel is from the machine's
 * limit. The loop is built for jit_host_target(), so it uses the same vector width kernels get. */
#ifndef FJ_CPU_PEAK_H
#define FJ_CPU_PEAK_H
#include <stddef.h>
#include <stdint.h>
#include "flashjit.h"
#include "jit/jit.h"

/* The generated function's name in the object: float fn(int64_t iterations, float a, float b). */
#define CPU_PEAK_SYMBOL "fj_cpu_peak_fma"
typedef float (*cpu_peak_fn)(int64_t iterations, float a, float b);

/* Runs the loop on `threads` threads at once (1..1024) and writes the best observed rate in GFLOP/s
 * (an FMA counts 2) to *gflops. detail (may be NULL) gets how it was measured: "16 accumulators x 16
 * lanes, 2 threads, best of 5, 75 ms each". Takes about half a second. FJ_INVALID_ARGUMENT for bad
 * arguments; FJ_COMPILE_FAILED / FJ_OUT_OF_MEMORY from the JIT and the thread pool. */
fj_status cpu_peak_gflops(int threads, double *gflops, char *detail, size_t detail_size);

/* The object code of the loop for the host, for inspecting its assembly (tests): *lanes floats per
 * vector, *accumulators independent vectors. out is filled as jit_compile_module fills it. */
fj_status cpu_peak_object(jit_buffer *out, int *lanes, int *accumulators);
#endif
