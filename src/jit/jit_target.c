/* jit_target.c: describes targets to the rest of flashjit: the host CPU as LLVM sees it (name,
 * features, the vector width and register count kernels are tiled for), target machines for any
 * triple/cpu/features, and stamping a module with a target's triple and data layout. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include "core/error.h"
#include "jit/jit_internal.h"

/* Target machines are created per compile, not cached: creating one costs about 0.3 ms on this
 * project's reference host (znver5) against 25+ ms for O3 + codegen of even a tiny kernel, and a
 * TargetMachine may not be used by two threads at once, so a cache would need check-out/check-in
 * bookkeeping for a 1% gain. */
fj_status jit_create_target_machine(const jit_target *target, LLVMTargetMachineRef *out) {
  *out = NULL;
  LLVMTargetRef llvm_target = NULL;
  char *message = NULL;
  if (LLVMGetTargetFromTriple(target->triple, &llvm_target, &message)) {
    fj_status status = core_error(FJ_UNSUPPORTED, "jit: no LLVM target for triple '%s': %s",
                                  target->triple, message ? message : "(no message)");
    LLVMDisposeMessage(message);
    return status;
  }
  LLVMDisposeMessage(message);
  /* PIC: JITLink then reaches libc/libm through its GOT and stubs wherever they were mapped. */
  LLVMTargetMachineRef machine =
      LLVMCreateTargetMachine(llvm_target, target->triple, target->cpu, target->features,
                              LLVMCodeGenLevelAggressive, LLVMRelocPIC, LLVMCodeModelDefault);
  if (!machine)
    return core_error(FJ_INTERNAL, "jit: LLVM could not create a target machine for %s cpu=%s",
                      target->triple, target->cpu);
  *out = machine;
  return FJ_OK;
}

static fj_status jit_data_layout_of(const jit_target *target, char *buffer, size_t size) {
  LLVMTargetMachineRef machine = NULL;
  fj_status status = jit_create_target_machine(target, &machine);
  if (status != FJ_OK)
    return status;
  LLVMTargetDataRef data = LLVMCreateTargetDataLayout(machine);
  char *layout = LLVMCopyStringRepOfTargetData(data);
  int fits = layout && strlen(layout) < size;
  if (fits)
    strcpy(buffer, layout);
  else
    status = core_error(FJ_INTERNAL, "jit: data layout of %s is longer than %zu bytes: %s",
                        target->triple, size - 1, layout ? layout : "(none)");
  LLVMDisposeMessage(layout);
  LLVMDisposeTargetData(data);
  LLVMDisposeTargetMachine(machine);
  return status;
}

/* ---- host ------------------------------------------------------------------------------------- */

/* The host as LLVM reports it never changes within a process; only FLASHJIT_CPU_FEATURES is re-read
 * per call (tests flip it). */
static pthread_once_t jit_host_once = PTHREAD_ONCE_INIT;
static jit_target jit_host_base;
static fj_status jit_host_base_status;
static char jit_host_base_error[512];

static void jit_host_base_init(void) {
  jit_target *host = &jit_host_base;
  char *triple = LLVMGetDefaultTargetTriple();
  char *normalized = LLVMNormalizeTargetTriple(triple);
  char *cpu = LLVMGetHostCPUName();
  char *features = LLVMGetHostCPUFeatures();
  if (strlen(normalized) >= sizeof host->triple || strlen(cpu) >= sizeof host->cpu ||
      strlen(features) >= sizeof host->features) {
    jit_host_base_status = FJ_INTERNAL;
    snprintf(jit_host_base_error, sizeof jit_host_base_error,
             "jit: host description too long for jit_target (triple %zu, cpu %zu, features %zu bytes)",
             strlen(normalized), strlen(cpu), strlen(features));
  } else {
    strcpy(host->triple, normalized);
    strcpy(host->cpu, cpu);
    strcpy(host->features, features);
    jit_host_base_status = jit_data_layout_of(host, host->data_layout, sizeof host->data_layout);
    if (jit_host_base_status != FJ_OK)
      snprintf(jit_host_base_error, sizeof jit_host_base_error, "%s", fj_last_error());
  }
  LLVMDisposeMessage(features);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(normalized);
  LLVMDisposeMessage(triple);
}

/* The x86 features that decide vector width and FMA/F16C/BF16 use, with what each one implies as
 * LLVM's X86.td has it. LLVM applies a feature list left to right: "+x" turns x and everything it
 * implies on, "-x" turns x and everything that implies x off. Replaying the list the same way is what
 * makes "-avx512f" appended by FLASHJIT_CPU_FEATURES win over the host's "+avx512f", and "-avx"
 * take AVX2 and AVX-512 with it. */
enum {
  JIT_SSE, JIT_SSE2, JIT_SSE3, JIT_SSSE3, JIT_SSE41, JIT_SSE42, JIT_AVX, JIT_AVX2, JIT_FMA, JIT_F16C,
  JIT_AVX512F, JIT_AVX512BW, JIT_AVX512BF16, JIT_FEATURE_COUNT
};
static const struct {
  const char *name;
  int implies[3]; /* -1 terminated */
} jit_x86_features[JIT_FEATURE_COUNT] = {
    [JIT_SSE] = {"sse", {-1}},
    [JIT_SSE2] = {"sse2", {JIT_SSE, -1}},
    [JIT_SSE3] = {"sse3", {JIT_SSE2, -1}},
    [JIT_SSSE3] = {"ssse3", {JIT_SSE3, -1}},
    [JIT_SSE41] = {"sse4.1", {JIT_SSSE3, -1}},
    [JIT_SSE42] = {"sse4.2", {JIT_SSE41, -1}},
    [JIT_AVX] = {"avx", {JIT_SSE42, -1}},
    [JIT_AVX2] = {"avx2", {JIT_AVX, -1}},
    [JIT_FMA] = {"fma", {JIT_AVX, -1}},
    [JIT_F16C] = {"f16c", {JIT_AVX, -1}},
    [JIT_AVX512F] = {"avx512f", {JIT_AVX2, JIT_FMA, JIT_F16C}},
    [JIT_AVX512BW] = {"avx512bw", {JIT_AVX512F, -1}},
    [JIT_AVX512BF16] = {"avx512bf16", {JIT_AVX512BW, -1}},
};

static void jit_feature_set(int *on, int feature, int value) {
  on[feature] = value;
  for (int other = 0; other < JIT_FEATURE_COUNT; other++) {
    for (int k = 0; k < 3 && jit_x86_features[other].implies[k] >= 0; k++) {
      int implied = jit_x86_features[other].implies[k];
      if (value && other == feature && !on[implied])
        jit_feature_set(on, implied, 1);
      if (!value && implied == feature && on[other])
        jit_feature_set(on, other, 0);
    }
  }
}

static void jit_derive_fields(jit_target *target) {
  int on[JIT_FEATURE_COUNT] = {0};
  const char *p = target->features;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t length = end ? (size_t)(end - p) : strlen(p);
    if (length > 1 && (p[0] == '+' || p[0] == '-')) {
      for (int f = 0; f < JIT_FEATURE_COUNT; f++) {
        const char *name = jit_x86_features[f].name;
        if (strlen(name) == length - 1 && memcmp(name, p + 1, length - 1) == 0)
          jit_feature_set(on, f, p[0] == '+');
      }
    }
    p += length;
    if (*p == ',')
      p++;
  }
  target->vector_bits = on[JIT_AVX512F] ? 512 : (on[JIT_AVX2] || on[JIT_AVX]) ? 256 : 128;
  target->vector_registers = on[JIT_AVX512F] ? 32 : 16;
  target->has_fma = on[JIT_FMA];
  target->has_f16c = on[JIT_F16C];
  target->has_avx512bf16 = on[JIT_AVX512BF16];
  target->bf16_dot_fast = target->has_avx512bf16 && strncmp(target->cpu, "znver", 5) == 0;
}

/* Appends the comma-separated "+x"/"-x" items of extra to features (spaces ignored), refusing anything
 * LLVM would only warn about on stderr. */
static fj_status jit_append_features(char *features, size_t size, const char *extra) {
  size_t used = strlen(features);
  const char *p = extra;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p))
      p++;
    const char *start = p;
    while (*p && *p != ',' && !isspace((unsigned char)*p))
      p++;
    size_t length = (size_t)(p - start);
    if (length == 0)
      continue;
    int valid = length > 1 && (start[0] == '+' || start[0] == '-');
    for (size_t i = 1; valid && i < length; i++)
      valid = isalnum((unsigned char)start[i]) || start[i] == '.' || start[i] == '-' || start[i] == '_';
    if (!valid)
      return core_error(FJ_INVALID_ARGUMENT,
                        "FLASHJIT_CPU_FEATURES='%s': item '%.*s' is not '+feature' or '-feature'",
                        extra, (int)length, start);
    if (used + 1 + length >= size)
      return core_error(FJ_INVALID_ARGUMENT,
                        "FLASHJIT_CPU_FEATURES='%s' makes the feature string longer than %zu bytes",
                        extra, size - 1);
    if (used > 0)
      features[used++] = ',';
    memcpy(features + used, start, length);
    used += length;
    features[used] = '\0';
  }
  return FJ_OK;
}

fj_status jit_host_target(jit_target *out) {
  if (!out)
    return core_error(FJ_INVALID_ARGUMENT, "jit_host_target: out is NULL");
  fj_status status = jit_init();
  if (status != FJ_OK)
    return status;
  pthread_once(&jit_host_once, jit_host_base_init);
  if (jit_host_base_status != FJ_OK)
    return core_error(jit_host_base_status, "%s", jit_host_base_error);
  jit_target host = jit_host_base;
  const char *extra = getenv("FLASHJIT_CPU_FEATURES");
  if (extra && *extra) {
    status = jit_append_features(host.features, sizeof host.features, extra);
    if (status != FJ_OK)
      return status;
  }
  jit_derive_fields(&host);
  *out = host;
  return FJ_OK;
}

/* ---- modules ---------------------------------------------------------------------------------- */

fj_status jit_module_set_target(LLVMModuleRef module, const jit_target *target) {
  if (!module || !target)
    return core_error(FJ_INVALID_ARGUMENT, "jit_module_set_target: %s is NULL",
                      !module ? "module" : "target");
  if (!target->triple[0])
    return core_error(FJ_INVALID_ARGUMENT, "jit_module_set_target: target has an empty triple");
  fj_status status = jit_init();
  if (status != FJ_OK)
    return status;
  /* A target described by hand (a GPU backend's) may leave the layout to us. */
  char layout[sizeof target->data_layout];
  if (target->data_layout[0]) {
    memcpy(layout, target->data_layout, sizeof layout);
  } else {
    status = jit_data_layout_of(target, layout, sizeof layout);
    if (status != FJ_OK)
      return status;
  }
  LLVMSetTarget(module, target->triple);
  LLVMSetDataLayout(module, layout);
  return FJ_OK;
}
