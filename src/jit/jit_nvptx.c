/* jit_nvptx.c: describes an NVIDIA GPU as an LLVM NVPTX target: the triple, the sm_ name as the cpu,
 * the PTX ISA version that arch needs as a feature, and the data layout of the target machine. The
 * vector fields describe a warp (32 fp32 lanes, 255 registers per thread) for code that sizes tiles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include "core/error.h"
#include "jit/jit_internal.h"

/* The lowest PTX ISA version that knows each arch (PTX ISA "Release notes" table), raised to 7.8 for
 * Ampere so that every sm_8x kernel reads the same; 7.8 needs a CUDA 11.8 driver, which any machine
 * that runs sm_80 code today has. LLVM checks nothing here: a .target the ISA version does not know
 * only fails later, in ptxas or the driver, so the table is the check. Arch names LLVM 22 knows but
 * this table does not are refused rather than guessed. */
static const struct {
  const char *arch;
  int ptx;  /* 78 -> "+ptx78" */
} jit_nvptx_archs[] = {
    {"sm_80", 78},   {"sm_86", 78},   {"sm_87", 78},   {"sm_89", 78},   {"sm_90", 80},
    {"sm_90a", 80},  {"sm_100", 86},  {"sm_100a", 86}, {"sm_101", 86},  {"sm_101a", 86},
    {"sm_103", 88},  {"sm_103a", 88}, {"sm_120", 87},  {"sm_120a", 87}, {"sm_121", 88},
    {"sm_121a", 88},
};

fj_status jit_nvptx_target(const char *arch, jit_target *out) {
  if (!arch || !out)
    return core_error(FJ_INVALID_ARGUMENT, "jit_nvptx_target: %s is NULL", !arch ? "arch" : "out");
  int ptx = 0;
  for (size_t i = 0; i < sizeof jit_nvptx_archs / sizeof jit_nvptx_archs[0]; i++)
    if (strcmp(jit_nvptx_archs[i].arch, arch) == 0)
      ptx = jit_nvptx_archs[i].ptx;
  if (!ptx)
    return core_error(FJ_INVALID_ARGUMENT,
                      "jit_nvptx_target: arch '%s' is not one flashjit generates for (sm_80, sm_86, "
                      "sm_87, sm_89, sm_90, sm_90a, sm_100[a], sm_101[a], sm_103[a], sm_120[a], "
                      "sm_121[a])",
                      arch);
  fj_status status = jit_init();
  if (status != FJ_OK)
    return status;
  jit_target target;
  memset(&target, 0, sizeof target);
  snprintf(target.triple, sizeof target.triple, "nvptx64-nvidia-cuda");
  snprintf(target.cpu, sizeof target.cpu, "%s", arch);
  snprintf(target.features, sizeof target.features, "+ptx%d", ptx);
  target.vector_bits = 32 * 32;
  target.vector_registers = 255;
  target.has_fma = 1;
  target.has_f16c = 1;
  target.has_avx512bf16 = 0;

  LLVMTargetMachineRef machine = NULL;
  status = jit_create_target_machine(&target, &machine);
  if (status != FJ_OK)
    return status;
  LLVMTargetDataRef data = LLVMCreateTargetDataLayout(machine);
  char *layout = LLVMCopyStringRepOfTargetData(data);
  if (layout && strlen(layout) < sizeof target.data_layout)
    strcpy(target.data_layout, layout);
  else
    status = core_error(FJ_INTERNAL, "jit_nvptx_target: the data layout of %s is missing or too long",
                        arch);
  LLVMDisposeMessage(layout);
  LLVMDisposeTargetData(data);
  LLVMDisposeTargetMachine(machine);
  if (status == FJ_OK)
    *out = target;
  return status;
}
