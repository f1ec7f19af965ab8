/* jit.h: all LLVM plumbing behind one small interface: initialization, target descriptions (the host
 * CPU's name and features; later NVPTX / AMDGPU), verify + O3 + emission of a module, and loading an
 * emitted host object with ORC LLJIT. Kernel generators build an LLVMModuleRef and hand it here; they
 * never touch target machines or pass pipelines. */
#ifndef FJ_JIT_H
#define FJ_JIT_H
#include <stddef.h>
#include <llvm-c/Core.h>
#include "flashjit.h"

typedef struct jit_target {
  char triple[64];        /* "x86_64-pc-linux-gnu", "nvptx64-nvidia-cuda" */
  char cpu[64];           /* "znver5", "sm_90a" */
  char features[4096];    /* "+avx2,+avx512f,..." as LLVM spells them */
  char data_layout[256];  /* the target machine's data layout string */
  int vector_bits;        /* widest fast float vector: 512 (AVX-512), 256 (AVX2), 128 */
  int vector_registers;   /* architectural vector registers: 32 with AVX-512, else 16 */
  int has_fma;
  int has_f16c;           /* hardware fp16 <-> fp32 */
  int has_avx512bf16;
  /* AVX512-BF16's pair dot outruns two FMAs here, so bf16 kernels default to it: AMD's Zen cores (Zen 5:
   * 862 GFLOP/s of pair dots against 431 of FMAs on 2 threads), not Intel's (Emerald Rapids: 215
   * against 443, and bf16 prefill 1.5x slower in pairs; 2026-12-07). From the CPU's name. */
  int bf16_dot_fast;
} jit_target;

/* Initializes LLVM's targets (X86 always; NVPTX and AMDGPU registered too) and installs the fatal-error
 * handler, once and thread-safely. Every other jit_ function calls it. */
fj_status jit_init(void);
/* "22.1.8" */
const char *jit_llvm_version(void);
/* The host CPU as LLVM sees it (LLVMGetHostCPUName / LLVMGetHostCPUFeatures), with the derived fields.
 * FLASHJIT_CPU_FEATURES, when set, is appended to the features (e.g. "-avx512f" to test AVX2 code). */
fj_status jit_host_target(jit_target *out);

typedef struct jit_buffer {
  void *data;   /* malloc'd */
  size_t size;
} jit_buffer;
void jit_buffer_free(jit_buffer *buffer);  /* NULL-safe, resets the fields */

/* An NVPTX target for arch "sm_80", "sm_86", "sm_90a", ...: triple nvptx64-nvidia-cuda, that cpu, the
 * PTX ISA features the arch needs; vector fields describe a warp (jit_nvptx.c). FJ_INVALID_ARGUMENT
 * naming the arch when LLVM does not know it. */
fj_status jit_nvptx_target(const char *arch, jit_target *out);

/* Sets the module's triple and data layout for target (call before building IR that depends on it). */
fj_status jit_module_set_target(LLVMModuleRef module, const jit_target *target);
/* Verifies the module (a broken module is FJ_COMPILE_FAILED with LLVM's message, never a crash), runs
 * the O3 pipeline, and emits an object file (host) or assembly (PTX for NVPTX) into *out. `what` names
 * the kernel and config; the fatal-error handler logs it if LLVM aborts the process during this call.
 * Does not take ownership of the module. */
fj_status jit_compile_module(LLVMModuleRef module, const jit_target *target, const char *what,
                             jit_buffer *out);
/* The module as textual IR (for debugging and tests); malloc'd, free with free(). */
char *jit_module_ir(LLVMModuleRef module);

/* A host object loaded into this process with ORC LLJIT; symbols resolve against the process (libm,
 * libc) for the few calls generated code may make. */
typedef struct jit_object jit_object;
fj_status jit_object_load(const void *object, size_t size, const char *name, jit_object **out);
/* Address of a defined function; FJ_INTERNAL naming the symbol when absent. */
fj_status jit_object_symbol(jit_object *object, const char *symbol, void **address);
void jit_object_unload(jit_object *object);  /* NULL-safe */
#endif
