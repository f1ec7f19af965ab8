/* test_attention_nvptx_emu.c: the NVIDIA forward kernel's numbers checked without a GPU. Each case
 * generates the real kernel module for sm_80 exactly as production does (jit_nvptx_target, then the
 * family's generator, then the NVPTX O3 pipeline), runs it block by block in the warp-accurate CPU
 * emulator of tests/nvptx_emu.h (every GPU thread a fiber; mma.sync, ldmatrix, shfl.sync from the PTX
 * ISA's layouts; cp.async asynchronous, with hazards reported) on host tensors holding fresh random
 * inputs and poisoned outputs, with the parameter block a launch would pass (runtime_gpu_params), and
 * compares o and lse with the float64 reference (tests/attention_cases.h). The cases cover fp16 and
 * bf16, head dims 24 to 256 (8 mod 16 too), causal and not, seqlen_q != seqlen_kv both ways, lengths
 * no tile divides, GQA and MQA, LSE, a custom scale, packed QKV, a strided head dim and a misaligned
 * K (the synchronous copy paths chosen at generation and at run time), a strided lse,
 * seqlen_kv = 0 and packed GQA (decode steps, and packed prefill tiles on each copy path); each head
 * dim's default config and a spread of the family's space in which every
 * value of every parameter appears (checked). First, the emulator's own checks are shown to fire on
 * small hand-written kernels (a read of an unfinished cp.async, a missing barrier, an unknown
 * intrinsic). Last, 6 cases of random features together (layouts, GQA, paged caches, per-sequence key
 * counts, ragged queries, packed keys, windows, sinks, soft-capping, ALiBi, additive biases, fp8 caches, v's own head
 * dim, O split over warps), each with a random valid config of the whole space, split_kv ones in 2 to 4
 * parts: new ones every run, repeated by the seed. One line per case: config, case, errors, work, time.
 * FJ_EMU_ONLY=substring runs only the cases whose line contains it; FJ_EMU_NO_O3=1 emulates the
 * generator's IR before the NVPTX O3 pipeline; FJ_EMU_SWEEP=1 runs every valid config of the space
 * for both dtypes, causal and not, at head dims 24 to 256 on one small shape instead (minutes), a hunt
 * for bugs beyond the listed cases (FJ_EMU_SWEEP=misaligned or =d-stride-2: in that layout, through
 * the synchronous copy paths; the strided one over the strided space; =decode: a decode step's space,
 * split_kv configs in 3 parts; =fp8 and =decode-fp8: those over an fp8 cache, E4M3 beside bf16 and E5M2
 * beside fp16, its tiles staged and widened; =random: FJ_EMU_RANDOM (40) random cases, as above);
 * FJ_EMU_DUMP=dir keeps the
 * rewritten host modules. Under AddressSanitizer the fibers tell ASan about every switch
 * (tests/nvptx_emu_fiber.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>
#include <llvm-c/IRReader.h>

#include "attention_cases.h"
#include "check.h"
#include "kernels/attention_fwd_gpu_abi.h"
#include "kernels/kernel_family.h"
#include "nvptx_emu.h"
#include "runtime/runtime_internal.h"

static const kernel_family *family = &attention_fwd_nvptx_family;
static jit_target nvptx;
static uint64_t base_seed;
static int nvptx_o3 = 1;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the emulator's own checks --------------------------------------------------------------------- */

/* One warp copies 16 bytes per lane into shared memory with cp.async and reads them back with one
 * ldmatrix.x4 (lane l gives the row it copied). `between` is the IR between the commit and the
 * ldmatrix. */
static const char *self_test_ir =
    "target triple = \"nvptx64-nvidia-cuda\"\n"
    "@fj_dynamic_shared = external addrspace(3) global [0 x i8], align 16\n"
    "define ptx_kernel void @k(ptr byval([2 x i64]) align 8 %%p) {\n"
    "  %%t = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()\n"
    "  %%a = load i64, ptr %%p\n"
    "  %%g = inttoptr i64 %%a to ptr addrspace(1)\n"
    "  %%o = mul i32 %%t, 16\n"
    "  %%d = getelementptr i8, ptr addrspace(3) @fj_dynamic_shared, i32 %%o\n"
    "  %%s = getelementptr i8, ptr addrspace(1) %%g, i32 %%o\n"
    "  call void @llvm.nvvm.cp.async.cg.shared.global.16.s(ptr addrspace(3) %%d, ptr addrspace(1) %%s, i32 16)\n"
    "  call void @llvm.nvvm.cp.async.commit.group()\n"
    "%s"
    "  %%r = call {i32, i32, i32, i32} @llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16.p3(ptr addrspace(3) %%d)\n"
    "  call void @llvm.nvvm.cp.async.wait.group(i32 0)\n"
    "  %%r0 = extractvalue {i32, i32, i32, i32} %%r, 0\n"
    "  %%b = getelementptr i8, ptr %%p, i64 8\n"
    "  %%ob = load i64, ptr %%b\n"
    "  %%out = inttoptr i64 %%ob to ptr addrspace(1)\n"
    "  %%at = getelementptr i32, ptr addrspace(1) %%out, i32 %%t\n"
    "  store i32 %%r0, ptr addrspace(1) %%at\n"
    "  ret void\n"
    "}\n";

/* Builds kernel @k of the IR text for one warp and runs it once with params {source, out} (256
 * 16-bit source elements, 32 words of output); banks: the launch's bank conflicts (may be NULL). 0 or
 * -1 with the emulator's complaint in why. */
static int text_kernel_run(const char *text, size_t shared_bytes, uint32_t out[32], emu_bank_summary *banks,
                           char *why, size_t why_size) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMMemoryBufferRef buffer = LLVMCreateMemoryBufferWithMemoryRangeCopy(text, strlen(text), "self_test");
  LLVMModuleRef module = NULL;
  char *message = NULL;
  int rc = -1;
  if (LLVMParseIRInContext(ctx, buffer, &module, &message)) {
    snprintf(why, why_size, "the self-test IR does not parse: %s", message ? message : "?");
    LLVMDisposeMessage(message);
    LLVMContextDispose(ctx);
    return -1;
  }
  LLVMSetDataLayout(module, nvptx.data_layout);
  emu_kernel *kernel = NULL;
  if (emu_kernel_build(module, &nvptx, "k", 32, shared_bytes, 0, &kernel, why, why_size) == 0) {
    uint16_t source[256];
    for (int i = 0; i < 256; i++) source[i] = (uint16_t)i;
    uint64_t params[2] = {(uint64_t)(uintptr_t)source, (uint64_t)(uintptr_t)out};
    emu_kernel_add_region(kernel, source, sizeof source, 0);
    emu_kernel_add_region(kernel, out, 32 * sizeof *out, 1);
    emu_stats stats;
    rc = emu_kernel_launch(kernel, 1, params, sizeof params, &stats, why, why_size);
    if (banks) emu_kernel_banks(kernel, banks);
  }
  emu_kernel_free(kernel);
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);
  return rc;
}

/* 0 with the output in out[32], or -1 with the emulator's complaint in why. */
static int self_test_run(const char *between, uint32_t out[32], char *why, size_t why_size) {
  char text[4096];
  snprintf(text, sizeof text, self_test_ir, between);
  return text_kernel_run(text, 512, out, NULL, why, why_size);
}

/* The bank model on one warp's requests (nvptx_emu.h): the warp fills 4 KB of shared memory (8 stores
 * of 16 bytes a lane, conflict-free: 32 wavefronts), then each lane writes `type` at lane x stride
 * bytes, reads 4 bytes at lane x read_stride and gives one ldmatrix.x4 row address at lane x
 * row_stride (barriers between). */
static const char *bank_test_ir =
    "target triple = \"nvptx64-nvidia-cuda\"\n"
    "@fj_dynamic_shared = external addrspace(3) global [0 x i8], align 16\n"
    "define ptx_kernel void @k(ptr byval([2 x i64]) align 8 %%p) {\n"
    "  %%t = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()\n"
    "  %%f = mul i32 %%t, 16\n"
    "  br label %%fill\n"
    "fill:\n"
    "  %%i = phi i32 [ 0, %%0 ], [ %%next, %%fill ]\n"
    "  %%fo = add i32 %%f, %%i\n"
    "  %%fd = getelementptr i8, ptr addrspace(3) @fj_dynamic_shared, i32 %%fo\n"
    "  store <4 x i32> zeroinitializer, ptr addrspace(3) %%fd, align 16\n"
    "  %%next = add i32 %%i, 512\n"
    "  %%more = icmp ult i32 %%next, 4096\n"
    "  br i1 %%more, label %%fill, label %%filled\n"
    "filled:\n"
    "  call void @llvm.nvvm.barrier.cta.sync.aligned.all(i32 0)\n"
    "  %%o = mul i32 %%t, %d\n"
    "  %%d = getelementptr i8, ptr addrspace(3) @fj_dynamic_shared, i32 %%o\n"
    "  store %s zeroinitializer, ptr addrspace(3) %%d, align %d\n"
    "  call void @llvm.nvvm.barrier.cta.sync.aligned.all(i32 0)\n"
    "  %%ro = mul i32 %%t, %d\n"
    "  %%rd = getelementptr i8, ptr addrspace(3) @fj_dynamic_shared, i32 %%ro\n"
    "  %%x = load i32, ptr addrspace(3) %%rd, align 4\n"
    "  %%mo = mul i32 %%t, %d\n"
    "  %%md = getelementptr i8, ptr addrspace(3) @fj_dynamic_shared, i32 %%mo\n"
    "  %%r = call {i32, i32, i32, i32} @llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16.p3(ptr addrspace(3) %%md)\n"
    "  ret void\n"
    "}\n";

static void bank_self_test(const char *type, int bytes, int stride, int read_stride, int row_stride,
                           int64_t store_wavefronts, int64_t load_wavefronts, int64_t ldmatrix_wavefronts) {
  char text[4096], why[2048] = "";
  snprintf(text, sizeof text, bank_test_ir, stride, type, bytes, read_stride, row_stride);
  uint32_t out[32];
  emu_bank_summary banks[EMU_BANKS_KINDS];
  memset(banks, 0, sizeof banks);
  int rc = text_kernel_run(text, 4096, out, banks, why, sizeof why);
  const emu_bank_summary *st = &banks[EMU_BANKS_STORE], *ld = &banks[EMU_BANKS_LOAD], *lm = &banks[EMU_BANKS_LDMATRIX];
  /* the ideal: as many wavefronts as phases (16 bytes: 4, 8 bytes: 2, else 1); the fill's 8 requests
   * took their ideal, 32 */
  int64_t phases = bytes == 16 ? 4 : bytes == 8 ? 2 : 1;
  check(rc == 0 && st->requests == 9 && st->wavefronts - 32 == store_wavefronts && st->ideal - 32 == phases &&
            ld->wavefronts == load_wavefronts && ld->ideal == 1 && lm->wavefronts == ldmatrix_wavefronts && lm->ideal == 4,
        "emulator's bank model: %s stores %d bytes apart take %lld wavefronts (%lld expected, ideal %lld), 4-byte loads "
        "%d apart %lld (%lld), ldmatrix rows %d apart %lld (%lld)%s%s",
        type, stride, (long long)st->wavefronts - 32, (long long)store_wavefronts, (long long)st->ideal - 32, read_stride,
        (long long)ld->wavefronts, (long long)load_wavefronts, row_stride, (long long)lm->wavefronts,
        (long long)ldmatrix_wavefronts, rc ? ": " : "", rc ? why : "");
}

static void self_tests(void) {
  char why[2048];
  uint32_t out[32];
  int rc = self_test_run("  call void @llvm.nvvm.cp.async.wait.group(i32 0)\n"
                         "  call void @llvm.nvvm.barrier.cta.sync.aligned.all(i32 0)\n",
                         out, why, sizeof why);
  /* Matrix 0 is rows 0..7 = elements 0..63 in order: lane t gets elements 8 (t / 4) + 2 (t % 4), + 1. */
  int layout_ok = rc == 0;
  for (int t = 0; t < 32 && layout_ok; t++) {
    uint32_t lo = (uint32_t)(8 * (t / 4) + 2 * (t % 4));
    layout_ok = out[t] == (lo | (lo + 1) << 16);
  }
  check(layout_ok, "emulator: cp.async, wait_group, barrier, ldmatrix read back what was copied%s%s",
        rc ? ": " : "", rc ? why : "");
  rc = self_test_run("", out, why, sizeof why);
  check(rc != 0 && strstr(why, "in flight") != NULL,
        "emulator: an ldmatrix of bytes a cp.async has not landed is reported (%s)", rc ? why : "not reported");
  rc = self_test_run("  call void @llvm.nvvm.cp.async.wait.group(i32 0)\n", out, why, sizeof why);
  check(rc != 0 && strstr(why, "race") != NULL,
        "emulator: an ldmatrix of other lanes' copies without a barrier is reported (%s)", rc ? why : "not reported");
  rc = self_test_run("  call void @llvm.nvvm.barrier.cta.sync.aligned.all(i32 0)\n", out, why, sizeof why);
  check(rc != 0 && strstr(why, "in flight") != NULL,
        "emulator: a barrier before the wait_group does not make the copies land (%s)", rc ? why : "not reported");
  rc = self_test_run("  call void @llvm.nvvm.membar.cta()\n", out, why, sizeof why);
  check(rc != 0 && strstr(why, "llvm.nvvm.membar.cta") != NULL,
        "emulator: an intrinsic it does not know is refused by name (%s)", rc ? why : "accepted");
  /* conflict-free, broadcast (one word for all), and every lane on one bank; 8 and 16 bytes a lane in
   * their phases; ldmatrix rows of one phase in one bank group (8 rows: 8 wavefronts a matrix) */
  bank_self_test("i32", 4, 4, 4, 16, 1, 1, 4);
  bank_self_test("i32", 4, 128, 0, 128, 32, 1, 32);
  bank_self_test("<2 x i32>", 8, 8, 8, 16, 2, 2, 4);
  bank_self_test("<2 x i32>", 8, 16, 12, 32, 4, 1, 8);
  bank_self_test("<4 x i32>", 16, 16, 4, 64, 4, 1, 16);
  bank_self_test("<4 x i32>", 16, 32, 4, 16, 8, 1, 4);
}

/* ---- the attention cases ----------------------------------------------------------------------------- */

/* block_m, block_n, warps, stages, q_in_regs, swizzle, pack_gqa, split_kv; all 0: the family's default
 * for the key. */
typedef struct config_spec {
  int values[9];
} config_spec;
#define DEFAULT {{0, 0, 0, 0, 0, 0, 0, 0, 0}}
#define CONFIG(bm, bn, w, st, q, sw) {{bm, bn, w, st, q, sw, 0, 0, 1}}
#define CONFIG_PACKED(bm, bn, w, st, q, sw) {{bm, bn, w, st, q, sw, 1, 0, 1}}
#define CONFIG_SPLIT(bm, bn, w, st, q, sw, pack) {{bm, bn, w, st, q, sw, pack, 1, 1}}
/* v wider than a warp's O: its columns over o_split warps (Q from shared memory, swizzled tiles) */
#define CONFIG_WIDE(bm, bn, w, st, pack, split, o) {{bm, bn, w, st, 0, 1, pack, split, o}}

typedef struct emu_case {
  test_case c;
  config_spec config;
  /* split_kv configs: the parts a launch asks for (runtime_gpu_split_params may cut fewer); 0: one
   * part, the kernel's unsplit path */
  int splits;
} emu_case;

/* dtype, batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim, causal, lse, layout, scale, varlen,
 * page_size, window_left, window_right, ragged_q, sinks, softcap, packed_k, alibi, kv_fp8, head_dim_v, bias; config;
 * parts */
static const emu_case cases[] = {
    /* each head dim's default config: 64, 72 (8 mod 16), 80, 96, 128, 256 */
    {{F16, 1, 4, 2, 130, 130, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 4, 2, 130, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 2, 2, 70, 37, 72, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 33, 17, 80, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 70, 90, 96, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 2, 2, 1, 37, 100, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 2, 100, 37, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 65, 80, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 1, 1, 40, 130, 256, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    /* length 1 (and one query against many keys), no keys at all, MQA, a custom scale, batch 2 */
    {{F16, 1, 2, 2, 1, 1, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 2, 1, 1, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 2, 90, 120, 64, 1, 1, CONTIG, 0.3f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 2, 2, 1, 130, 300, 128, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 2, 2, 65, 0, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 65, 0, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 4, 1, 37, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    /* a negative scale: the scaled row maximum is the raw minimum, masked scores are +inf, and rows
     * that see no key (causal, sq > skv) still end as zeros */
    {{F16, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 2, 70, 130, 128, 0, 1, CONTIG, -0.1f, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 32, 4, 2, 0, 1), 0},
    /* many K/V tiles through the ring; query tiles that see no key at all (causal, sq >> skv) */
    {{F16, 1, 1, 1, 200, 1000, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 1, 1, 300, 37, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 16, 4, 2, 0, 1), 0},
    /* layouts: packed QKV, head-dim stride 2 (the synchronous copy path chosen at generation), K's
     * rows off 16-byte alignment (that path chosen at run time for K, cp.async for Q and V), lse
     * stored [b, s, h] */
    {{F16, 1, 4, 2, 77, 77, 64, 1, 1, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 60, 90, 128, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 70, 90, 72, 1, 1, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 2, 2, 2, 65, 130, 64, 0, 1, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 3, 1, 0), 0},
    {{BF16, 1, 2, 1, 50, 60, 40, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 64, 4, 2, 1, 1), 0},
    {{F16, 1, 2, 2, 65, 65, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    /* the space: every value of every parameter somewhere */
    {{F16, 1, 2, 1, 130, 100, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 16, 4, 2, 0, 0), 0},
    {{BF16, 1, 2, 2, 100, 130, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 3, 1, 1), 0},
    {{F16, 1, 2, 1, 130, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 64, 4, 3, 0, 0), 0},
    {{BF16, 1, 2, 2, 130, 77, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 16, 4, 2, 1, 0), 0},
    {{F16, 1, 2, 1, 37, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 32, 8, 3, 1, 1), 0},
    {{BF16, 1, 2, 2, 130, 200, 32, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 128, 8, 2, 0, 1), 0},
    {{F16, 1, 2, 1, 100, 140, 24, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 128, 4, 3, 0, 0), 0},
    {{BF16, 1, 4, 2, 70, 70, 40, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 64, 4, 2, 1, 1), 0},
    {{F16, 1, 4, 1, 130, 100, 64, 0, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 32, 4, 3, 0, 1), 0},
    {{BF16, 1, 2, 1, 70, 50, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 16, 4, 3, 0, 0), 0},
    {{F16, 1, 2, 1, 200, 300, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 64, 4, 3, 0, 1), 0},
    {{F16, 1, 2, 2, 70, 90, 96, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 3, 1, 0), 0},
    {{BF16, 1, 2, 1, 150, 70, 80, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 64, 8, 3, 0, 0), 0},
    {{F16, 1, 2, 1, 70, 100, 64, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 3, 0, 1), 0},
    {{BF16, 1, 4, 2, 130, 130, 128, 0, 1, PACKED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(128, 32, 8, 2, 0, 0), 0},
    /* pack_gqa: decode steps by default (groups 4, 8 and 3; rows past a short cache's diagonal fully
     * masked; a strided LSE), and packed prefill tiles through every copy path (cp.async chunks, a
     * strided head dim, K misaligned) with 4 and 8 warps */
    {{BF16, 2, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 8, 1, 3, 130, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 6, 2, 5, 3, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 4, 2, 70, 90, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    {{BF16, 1, 4, 1, 20, 50, 64, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 1, 1), 0},
    {{F16, 1, 6, 2, 30, 77, 72, 0, 1, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 64, 4, 3, 0, 0), 0},
    {{F16, 1, 8, 2, 40, 100, 128, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(128, 64, 8, 2, 0, 0), 0},
    /* seqlens_kv (varlen kernels): each sequence its own key count (all, none, spread), decode packed
     * by default, causal prefill tiles aligned to each sequence's last key, a strided head dim */
    {{BF16, 4, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 3, 4, 1, 3, 130, 64, 1, 1, LSESTRIDED, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 4, 2, 2, 70, 90, 64, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 3, 2, 1, 50, 77, 96, 0, 1, DSTRIDE2, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 2, 1, 1), 0},
    /* paged K/V (block_table; pages shuffled in a pool, entries past a sequence's keys -1): decode
     * packed by default with seqlens_kv, pages of 16 (tiles span pages) and 5 (no tile size divides
     * it), causal prefill, a strided head dim (the synchronous copy), pages of 1 and 128 */
    {{BF16, 4, 8, 2, 1, 320, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 2, 4, 1, 3, 135, 64, 1, 1, LSESTRIDED, 0, 1, 5, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 2, 2, 2, 70, 96, 64, 1, 1, CONTIG, 0, 0, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 2, 2, 1, 50, 40, 96, 0, 1, DSTRIDE2, 0, 1, 1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 2, 1, 1), 0},
    {{F16, 1, 4, 2, 100, 256, 128, 1, 1, CONTIG, 0, 0, 128, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 64, 4, 3, 0, 1), 0},
    /* split-KV (decode defaults have split_kv=1; the cases above run them unsplit): parts merged by
     * the combine kernel, packed and not, causal, d = 72/80 (the combine's lanes past the head dim),
     * 256, sequences whose keys end before the last parts (varlen: those parts see nothing; the
     * sequence with no keys at all ends as zeros), paged, parts of one tile, a strided LSE, a strided
     * head dim (o's too: the combine stores through o's strides) and a misaligned K */
    {{BF16, 2, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 1, 8, 1, 3, 130, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{BF16, 2, 4, 4, 1, 500, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 4},
    {{F16, 1, 4, 2, 2, 200, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 5},
    {{BF16, 2, 4, 1, 1, 250, 80, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 1, 2, 1, 4, 150, 72, 1, 0, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 2},
    {{BF16, 4, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 4},
    {{BF16, 4, 8, 2, 1, 320, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 2, 4, 1, 3, 135, 64, 1, 1, LSESTRIDED, 0, 1, 5, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 2},
    {{F16, 1, 4, 2, 16, 333, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG_SPLIT(64, 32, 4, 2, 0, 1, 0), 6},
    {{BF16, 2, 4, 1, 1, 200, 64, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 1, 6, 2, 2, 260, 72, 0, 1, MISALIGNED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 4},
    /* sliding windows (window_left, window_right): causal local attention on the defaults (blocks start
     * at their first query's window tile; tiles crossing the window's lower edge masked), windows
     * shorter than a key tile, of the diagonal key alone, on both sides and on the right only without
     * causal; packed decode and prefill, varlen, paged, split (parts over the window's tiles), a
     * negative scale, a strided head dim */
    {{BF16, 1, 4, 2, 300, 300, 64, 1, 1, CONTIG, 0, 0, 0, 100, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 2, 1, 130, 257, 128, 1, 1, LSESTRIDED, 0, 0, 0, 37, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 1, 1, 300, 300, 64, 1, 1, CONTIG, 0, 0, 0, 7, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 16, 4, 2, 0, 0), 0},
    {{BF16, 1, 2, 1, 70, 90, 128, 1, 1, CONTIG, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 2, 130, 200, 64, 0, 1, CONTIG, 0, 0, 0, 31, 17, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 2, 0, 1), 0},
    {{F16, 1, 2, 2, 90, 70, 96, 0, 1, CONTIG, 0, 0, 0, -1, 5, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 2, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 0, 0, 50, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 4, 2, 70, 90, 64, 1, 1, CONTIG, 0, 0, 0, 10, -1, 0, 0, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    {{BF16, 4, 8, 2, 2, 300, 128, 1, 1, CONTIG, 0, 1, 0, 70, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 4, 8, 2, 1, 320, 128, 1, 1, CONTIG, 0, 1, 16, 100, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 2, 8, 2, 1, 600, 128, 1, 1, CONTIG, 0, 0, 0, 300, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 3, 4, 1, 3, 500, 64, 1, 1, CONTIG, 0, 1, 0, 150, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 1, 2, 1, 100, 37, 64, 1, 1, CONTIG, -0.2f, 0, 0, 5, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 60, 90, 128, 1, 1, DSTRIDE2, 0, 0, 0, 20, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    /* ragged queries (cu_seqlens_q; the longest sequence, one of no queries, one between; spare rows
     * around them no block may write): causal prefill of fewer queries than keys, not causal with a
     * strided LSE, packed prefill, packed decode over a paged varlen cache, split decode packed and not
     * (the parts keep seqlen_q rows per sequence, the combine writes each sequence's own), a window,
     * a strided head dim */
    {{F16, 3, 4, 2, 70, 100, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 2, 2, 1, 90, 60, 128, 0, 1, LSESTRIDED, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 3, 4, 2, 40, 90, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    {{BF16, 4, 8, 2, 1, 320, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 4, 8, 2, 2, 300, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 3, 4, 4, 3, 200, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 2},
    {{BF16, 3, 2, 1, 80, 120, 64, 1, 1, CONTIG, 0, 1, 0, 20, -1, 1, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 3, 2, 1, 50, 77, 96, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0}, CONFIG(64, 32, 4, 2, 1, 1), 0},
    /* attention sinks (a per-head term of every row's sum; case_sink): causal prefill, rows past a short
     * cache's diagonal (0, LSE the sink), no keys at all, a packed prefill tile (each row its own head),
     * packed decode over a varlen cache unsplit (the split kernel's whole path) and in parts (the first
     * part holds the sink, the combine counts it once), ragged queries in parts with a strided LSE */
    {{F16, 1, 4, 2, 130, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 2, 100, 37, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 2, 2, 65, 0, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 4, 2, 70, 90, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    {{BF16, 4, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 4, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 1, 0, 0, 0, 0, 0, 0}, DEFAULT, 4},
    {{F16, 3, 4, 4, 3, 200, 64, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 1, 1, 0, 0, 0, 0, 0, 0}, DEFAULT, 2},
    /* logit soft-capping (tanh.approx, exact here): causal prefill, a negative scale with rows past a
     * short cache's diagonal, packed decode in 3 parts with sinks, a packed prefill tile with a window */
    {{F16, 1, 4, 2, 130, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 1, 2, 1, 100, 37, 128, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 1.5f, 0, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 4, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 1, 2.0f, 0, 0, 0, 0, 0}, DEFAULT, 3},
    {{F16, 1, 4, 2, 70, 90, 64, 1, 1, CONTIG, 0, 0, 0, 20, -1, 0, 0, 1.0f, 0, 0, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    /* packed keys (cu_seqlens_k; the longest sequence, one of no keys, others between, NaN rows around
     * them no block may read): flash_attn_varlen_func's causal prefill with ragged queries, and packed
     * GQA; padded queries, not causal, a strided head dim; decode unsplit and in 3 parts with ragged
     * queries */
    {{F16, 3, 4, 2, 70, 100, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0}, DEFAULT, 0},
    {{F16, 3, 4, 2, 40, 90, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    {{BF16, 3, 2, 1, 60, 90, 128, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 4, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 1, 0, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 4, 8, 2, 2, 300, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 1, 0, 0, 0, 0}, DEFAULT, 3},
    /* ALiBi (BLOOM's slopes; [batch, heads] ones differ by sequence): causal prefill; not causal with
     * fewer queries than keys; a packed prefill tile (each row its own head's slope) with a negative
     * scale and a soft cap; a split decode step over a varlen cache; ragged queries and packed keys
     * with a window */
    {{F16, 1, 4, 2, 130, 130, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 1, 0, 0, 0}, DEFAULT, 0},
    {{BF16, 2, 2, 1, 70, 100, 128, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 2, 0, 0, 0}, DEFAULT, 0},
    {{F16, 1, 4, 2, 70, 90, 64, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 1.5f, 0, 1, 0, 0, 0}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    {{BF16, 4, 8, 2, 1, 300, 128, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 2, 0, 0, 0}, DEFAULT, 3},
    {{F16, 3, 4, 2, 40, 90, 64, 1, 1, CONTIG, 0, 0, 0, 20, -1, 1, 0, 0, 1, 1, 0, 0, 0}, DEFAULT, 0},
    /* An additive bias (case_bias_value: -inf keys, a row masked whole; a padding mask broadcast over heads and
     * queries; one of q's dtype expanded over the batch): causal and not at each kind; a packed prefill tile
     * (each row its own head's bias) with a negative scale and a soft cap; a split decode step over a paged
     * varlen cache; ragged queries and packed keys with a window; an fp8 cache and a strided head dim;
     * 8-warp tiles at d = 256 */
    {{F16, 2, 4, 2, 70, 90, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL}, DEFAULT, 0},
    {{BF16, 2, 4, 2, 97, 97, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_DTYPE}, DEFAULT, 0},
    {{BF16, 3, 4, 1, 60, 130, 128, 1, 1, LSESTRIDED, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_PADDING}, DEFAULT, 0},
    {{F16, 1, 4, 2, 70, 90, 64, 1, 1, CONTIG, -0.2f, 0, 0, -1, -1, 0, 0, 1.5f, 0, 0, 0, 0, CASE_BIAS_FULL}, CONFIG_PACKED(64, 32, 4, 2, 0, 1), 0},
    {{BF16, 3, 8, 2, 1, 704, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_DTYPE}, DEFAULT, 3},
    {{F16, 3, 8, 2, 3, 300, 64, 1, 1, CONTIG, 0, 1, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_PADDING}, DEFAULT, 2},
    {{BF16, 4, 4, 2, 40, 50, 64, 1, 1, CONTIG, 0, 0, 0, 20, -1, 1, 0, 0, 1, 0, 0, 0, CASE_BIAS_FULL}, DEFAULT, 0},
    {{BF16, 2, 4, 2, 60, 80, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 1, 0, 0, 2, E4M3, 0, CASE_BIAS_DTYPE}, DEFAULT, 0},
    {{F16, 2, 2, 2, 30, 50, 80, 0, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL}, DEFAULT, 0},
    {{BF16, 1, 2, 2, 50, 70, 256, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, CASE_BIAS_FULL}, DEFAULT, 0},
    /* fp8 KV caches (E4M3, E5M2 with case_k_scale, case_v_scale; staged raw by cp.async, widened in shared
     * memory): causal bf16 prefill; fp16 not causal with fewer queries than keys; a paged varlen decode
     * step in 3 parts; a strided head dim (staged by byte loads); ragged queries and packed keys with
     * sinks and a soft cap (whose factors carry k_scale); d = 72 (8 mod 16) with rows of 144 bytes (the
     * cp.async of each row's last 16 carries 8) and of 72 (not 16-byte aligned: staged by byte loads); a
     * paged varlen decode step at d = 256 in 2 parts (its split decode tile, which the register copies
     * had left out) */
    {{BF16, 1, 4, 2, 130, 130, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0}, DEFAULT, 0},
    {{F16, 2, 2, 1, 70, 100, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0}, DEFAULT, 0},
    {{F16, 3, 8, 2, 1, 304, 128, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0}, DEFAULT, 3},
    {{BF16, 1, 2, 1, 60, 90, 64, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0}, DEFAULT, 0},
    {{BF16, 3, 4, 2, 40, 90, 64, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 1, 1.5f, 1, 0, E4M3, 0, 0}, DEFAULT, 0},
    {{F16, 1, 4, 2, 50, 77, 72, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0}, DEFAULT, 0},
    {{BF16, 2, 3, 1, 1, 150, 72, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0}, DEFAULT, 2},
    {{BF16, 2, 4, 1, 1, 112, 256, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0}, DEFAULT, 2},
    /* v with a head dim of its own (the K and V rings of different widths, O as wide as V): DeepSeek's
     * MLA prefill (192 and 128), causal, on its default; v wider than k through a packed tile of 8 warps;
     * head dims of 8 mod 16 (24 and 40) with a strided head dim; a packed decode step over a paged varlen
     * cache in 3 parts (the parts and the combine as wide as V); an fp8 cache with ragged queries */
    {{BF16, 1, 2, 2, 130, 130, 192, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 128, 0}, DEFAULT, 0},
    {{F16, 1, 8, 2, 40, 100, 64, 0, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 128, 0}, CONFIG_PACKED(128, 32, 8, 2, 0, 1), 0},
    {{BF16, 1, 2, 1, 70, 90, 24, 1, 1, DSTRIDE2, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 40, 0}, DEFAULT, 0},
    {{F16, 3, 8, 2, 1, 304, 192, 1, 1, LSESTRIDED, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 128, 0}, DEFAULT, 3},
    {{BF16, 3, 4, 2, 40, 90, 128, 1, 1, CONTIG, 0, 0, 0, -1, -1, 1, 0, 0, 0, 0, E5M2, 64, 0}, DEFAULT, 0},
    /* MLA's absorbed decode (q and k 576, v 512, every query head on one KV head): O's columns over 2
     * warps on its default, over 4 with a causal prefill of ragged length, and a decode step over a
     * paged varlen cache in 2 parts (the parts and the combine 512 wide) */
    {{BF16, 2, 16, 1, 1, 100, 576, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 512, 0}, DEFAULT, 0},
    {{F16, 1, 4, 1, 21, 40, 576, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 512, 0}, CONFIG_WIDE(64, 16, 8, 2, 1, 0, 4), 0},
    {{BF16, 2, 16, 1, 1, 192, 576, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 512, 0}, DEFAULT, 2},
    /* and with an additive bias (every warp of a row tile adds it to its own full rows of scores) */
    {{F16, 1, 4, 1, 21, 40, 576, 1, 1, CONTIG, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 512, CASE_BIAS_FULL}, CONFIG_WIDE(64, 16, 8, 2, 1, 0, 4), 0},
    {{BF16, 2, 16, 1, 1, 192, 576, 1, 1, CONTIG, 0, 1, 16, -1, -1, 0, 0, 0, 0, 0, 0, 512, CASE_BIAS_PADDING}, DEFAULT, 2},
};
#define NUM_CASES ((int)(sizeof cases / sizeof cases[0]))

/* A built kernel, kept for the cases that share its generated code (not in a sweep, where no two
 * cases do). */
typedef struct built {
  char key[600];
  emu_kernel *kernel;
  double seconds;
} built;
static built builds[2 * NUM_CASES];
static int build_count, sweeping;
static double sweep_build_seconds;

/* Which values of each parameter the cases ran with: every one must appear somewhere. */
static int covered[KERNEL_MAX_PARAMS][KERNEL_MAX_VALUES];

static void note_coverage(const kernel_config *config) {
  for (int p = 0; p < family->num_params; p++)
    for (int v = 0; v < family->params[p].num_values; v++)
      if (family->params[p].values[v] == config->values[p]) covered[p][v] = 1;
}

static void check_coverage(void) {
  char missing[512] = "";
  size_t used = 0;
  for (int p = 0; p < family->num_params; p++)
    for (int v = 0; v < family->params[p].num_values; v++)
      if (!covered[p][v] && used < sizeof missing)
        used += (size_t)snprintf(missing + used, sizeof missing - used, " %s=%d", family->params[p].name,
                                 family->params[p].values[v]);
  check(missing[0] == '\0', "the cases' configs take every value of every parameter of %s%s%s", family->name,
        missing[0] ? "; never:" : "", missing);
}

/* The kernel the runtime calls (suffix ""), or its module's combine kernel (GPU_COMBINE_SUFFIX). */
static emu_kernel *kernel_for(const attention_key *key, const kernel_config *config, const char *suffix,
                              double *build_seconds, char *why, size_t why_size) {
  char codegen[256], config_text[256], lookup[sizeof builds[0].key];
  family->codegen_key(key, codegen, sizeof codegen);
  kernel_config_string(family, config, config_text, sizeof config_text);
  snprintf(lookup, sizeof lookup, "%s|%s|%s", codegen, config_text, suffix);
  /* a sweep's (and the random cases') kernels are their own, freed after the case: never one of builds[] */
  for (int i = 0; i < build_count && !sweeping; i++)
    if (strcmp(builds[i].key, lookup) == 0) {
      *build_seconds = 0;
      return builds[i].kernel;
    }
  double start = now_s();
  char name[96];
  snprintf(name, sizeof name, "fj_%s", family->name);  /* the runtime's kernel name */
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext(name, ctx);
  emu_kernel *kernel = NULL;
  fj_status status = jit_module_set_target(module, &nvptx);
  if (status == FJ_OK) status = family->generate(module, key, &nvptx, config, name);
  int combine = suffix[0] != '\0';
  char function[128];
  snprintf(function, sizeof function, "%s%s", name, suffix);
  if (status != FJ_OK)
    snprintf(why, why_size, "generate: %s", fj_last_error());
  else
    emu_kernel_build(module, &nvptx, function, combine ? 32 * GPU_COMBINE_WARPS : family->block_threads(key, config),
                     combine ? 0 : family->scratch_bytes(key, config), nvptx_o3, &kernel, why, why_size);
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);
  *build_seconds = now_s() - start;
  if (sweeping) sweep_build_seconds += *build_seconds;
  if (kernel && !sweeping && build_count < 2 * NUM_CASES) {
    snprintf(builds[build_count].key, sizeof builds[0].key, "%s", lookup);
    builds[build_count].kernel = kernel;
    builds[build_count++].seconds = *build_seconds;
  }
  return kernel;
}

/* The bytes from a view's first element to the end of its last: all the kernel may touch of it (the
 * allocation may be larger: rounded up, or shared by q, k and v). */
static void add_region(emu_kernel *kernel, const host_tensor *t, int writable) {
  int64_t last = 0;
  for (int i = 0; i < t->t.ndim; i++) {
    if (t->t.shape[i] == 0) return;
    last += (t->t.shape[i] - 1) * t->t.strides[i];
  }
  emu_kernel_add_region(kernel, t->t.data, (size_t)(last + 1) * (size_t)(t->t.dtype.bits / 8), writable);
}

/* The attention kernel's shared-memory requests, as wavefronts over the conflict-free ideal, by kind. */
static void bank_summary_text(const emu_bank_summary banks[EMU_BANKS_KINDS], char *text, size_t size) {
  static const char *names[EMU_BANKS_KINDS] = {"ldmatrix", "cp.async", "ld.shared", "st.shared"};
  int n = snprintf(text, size, "banks:");
  for (int k = 0; k < EMU_BANKS_KINDS && n > 0 && (size_t)n < size; k++) {
    if (banks[k].requests == 0) continue;
    n += snprintf(text + n, size - (size_t)n, " %s %.2fx", names[k], (double)banks[k].wavefronts / (double)banks[k].ideal);
    if (banks[k].worst > 1.0 && n > 0 && (size_t)n < size)
      n += snprintf(text + n, size - (size_t)n, " (worst %.1fx: %s)", banks[k].worst, banks[k].worst_site);
  }
}

/* The kinds of shared-memory request the kernel's layouts promise to make without bank conflicts:
 * cp.async always (consecutive threads fill consecutive 16 bytes of a tile), the fp8 staging's stores
 * and the widening's loads and stores too (on unswizzled tiles as well: in order), the synchronous
 * copies' stores (a strided head dim, misaligned rows) where rows are whole groups of 8 chunks; ldmatrix
 * on swizzled tiles unless a tile's padded rows are 6 mod 8 chunks (head dims 40, 104, ...: two rows of
 * a phase share a bank group, tile_gpu_swizzle_chunk). */
static int banks_promised(int kind, const test_case *c, const attention_key *key, const kernel_config *config) {
  int swizzled = 0;
  for (int p = 0; p < family->num_params; p++)
    if (strcmp(family->params[p].name, "swizzle") == 0) swizzled = config->values[p];
  int chunks = (key->head_dim + 15) / 16 * 2, chunks_v = (core_key_head_dim_v(key) + 15) / 16 * 2;
  switch (kind) {
    case EMU_BANKS_LDMATRIX: return swizzled;
    case EMU_BANKS_STORE: return (c->layout != DSTRIDE2 && c->layout != MISALIGNED) || (chunks % 8 == 0 && chunks_v % 8 == 0);
    default: return 1;
  }
}

/* ---- FJ_EMU_SWEEP=random: cases of random features, each with a random valid config ---------------- */

#define RANDOM_CONFIG (-1) /* config_spec.values[0]: run_case draws a valid config of the whole space */

static uint64_t splitmix(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static int64_t draw(uint64_t *state, int64_t lo, int64_t hi) {
  return lo + (int64_t)(splitmix(state) % (uint64_t)(hi - lo + 1));
}

/* One config drawn uniformly from the valid ones of the key's space; returns the parts to split a
 * split_kv config's keys into (2 to 4), else 0; -1 when no config is valid (a call reports
 * FJ_UNSUPPORTED: test_kernel_space, test_cuda_driver). */
static int random_valid_config(const attention_key *key, uint64_t seed, kernel_config *out) {
  int64_t total = kernel_space_points(family), valid = 0, pick = -1;
  /* two passes: count the valid configs, then take the pick-th */
  for (int pass = 0; pass < 2; pass++) {
    int64_t seen = 0;
    for (int64_t n = 0; n < total; n++) {
      kernel_config config;
      kernel_space_point(family, n, &config);
      char why[256];
      if (!family->config_valid(key, &nvptx, &config, why, sizeof why)) continue;
      if (pass == 1 && seen == pick) {
        *out = config;
        return family->splits_kv(&config) ? (int)draw(&seed, 2, 4) : 0;
      }
      seen++;
    }
    valid = seen;
    if (valid == 0) break;
    pick = draw(&seed, 0, valid - 1);
  }
  return -1;
}

/* A case of random features that case_tensors_create can lay out (its comments say which layouts each
 * feature takes), small enough to emulate in a few seconds. */
static test_case random_case(uint64_t seed) {
  static const int dims[] = {16, 24, 32, 40, 48, 64, 72, 80, 96, 112, 128, 160, 192, 256};
  static const layout layouts[] = {CONTIG, CONTIG, CONTIG, DSTRIDE2, LSESTRIDED, PACKED, MISALIGNED};
  test_case c;
  memset(&c, 0, sizeof c);
  c.dtype = draw(&seed, 0, 1) ? BF16 : F16;
  c.layout = layouts[draw(&seed, 0, 6)];
  int shared = layout_shares_allocation(c.layout);
  c.head_dim = dims[draw(&seed, 0, 13)];
  c.head_dim_v = !shared && draw(&seed, 0, 5) == 0 ? dims[draw(&seed, 0, 13)] : 0;
  if (c.head_dim_v == c.head_dim) c.head_dim_v = 0;
  c.batch = draw(&seed, 1, 3);
  c.kv_heads = draw(&seed, 1, 2);
  c.heads = c.kv_heads * draw(&seed, 1, 4);
  int decode = draw(&seed, 0, 3) == 0;
  c.seqlen_q = decode ? draw(&seed, 1, 4) : draw(&seed, 1, 150);
  c.seqlen_kv = draw(&seed, 0, 4) == 0 ? draw(&seed, 0, 20) : draw(&seed, 1, 260);
  if (c.layout == PACKED) c.seqlen_kv = c.seqlen_q;
  c.causal = (int)draw(&seed, 0, 1);
  c.lse = draw(&seed, 0, 3) != 0;
  c.scale = draw(&seed, 0, 4) == 0 ? 0.05f + 0.01f * (float)draw(&seed, 0, 40) : 0.0f;
  c.window_left = c.window_right = -1;
  if (draw(&seed, 0, 4) == 0) {
    c.window_left = draw(&seed, 0, 2) == 0 ? -1 : (int)draw(&seed, 0, 100);
    c.window_right = c.causal ? -1 : draw(&seed, 0, 2) == 0 ? -1 : (int)draw(&seed, 0, 40);
  }
  int plain = c.layout == CONTIG || c.layout == DSTRIDE2;
  int kv_form = (int)draw(&seed, 0, 5); /* 0 paged, 1 packed keys, else k and v [b, skv, hk, d] */
  if (kv_form == 0 && !shared) {
    static const int pages[] = {1, 8, 16, 32, 64};
    c.page_size = pages[draw(&seed, 0, 4)];
    c.seqlen_kv = c.page_size * draw(&seed, 1, (260 + c.page_size - 1) / c.page_size);
  }
  c.packed_k = kv_form == 1 && plain;
  c.varlen = !c.packed_k && draw(&seed, 0, c.page_size ? 1 : 3) == 0;
  c.ragged_q = !shared && draw(&seed, 0, 4) == 0;
  c.sinks = draw(&seed, 0, 5) == 0;
  c.softcap = draw(&seed, 0, 5) == 0 ? 5.0f + (float)draw(&seed, 0, 45) : 0.0f;
  c.alibi = draw(&seed, 0, 5) == 0 ? (int)draw(&seed, 1, 2) : 0;
  c.bias = draw(&seed, 0, 5) == 0 ? (int)draw(&seed, CASE_BIAS_FULL, CASE_BIAS_DTYPE) : CASE_BIAS_NONE;
  c.kv_fp8 = !shared && draw(&seed, 0, 5) == 0 ? (draw(&seed, 0, 1) ? DTYPE_E4M3 : DTYPE_E5M2) : 0;
  if (!shared && draw(&seed, 0, 15) == 0) { /* v wider than 256 (MLA's absorbed decode): O split over warps */
    c.head_dim = draw(&seed, 0, 1) ? 576 : 256;
    c.head_dim_v = draw(&seed, 0, 1) ? 512 : 384;
    c.kv_heads = 1;
    c.heads = draw(&seed, 1, 16);
    c.seqlen_q = draw(&seed, 1, 24);
  }
  return c;
}

static void run_case(int index, const emu_case *e);

/* FJ_EMU_RANDOM (default: the count given) such cases; their kernels are not kept. */
static void random_cases(int default_count) {
  const char *count_text = getenv("FJ_EMU_RANDOM");
  int count = count_text && *count_text ? atoi(count_text) : default_count;
  int was_sweeping = sweeping;
  sweeping = 1;
  for (int i = 0; i < count; i++) {
    emu_case e = {random_case(base_seed + 104729u * (uint64_t)i), {{RANDOM_CONFIG}}, 0};
    run_case(NUM_CASES + i, &e);
  }
  printf("random: %d cases, %.1f s building\n", count, sweep_build_seconds);
  sweeping = was_sweeping;
}

/* Set: the case is one of the fp8 code cases (case_fill_fp8_codes makes its inputs, case_fp8_codes_wrong
 * checks its outputs exactly). */
static int fp8_codes;

static void run_case(int index, const emu_case *e) {
  const test_case *c = &e->c;
  char name[256], config_text[256] = "?", why[2048] = "";
  describe(c, name, sizeof name);
  if (fp8_codes) strncat(name, " every fp8 code", sizeof name - strlen(name) - 1);
  case_tensors t;
  if (!case_tensors_create(c, base_seed + 1000003u * (uint64_t)index, &t)) {
    check(0, "%s: host allocation failed", name);
    case_tensors_free(c, &t);
    return;
  }
  if (fp8_codes) case_fill_fp8_codes(c, &t);
  fj_attention_args args;
  case_host_args(c, &t, &args);
  attention_problem problem;
  if (core_validate_attention(&args, &problem) != FJ_OK) {
    check(0, "%s: the case does not validate: %s", name, fj_last_error());
    case_tensors_free(c, &t);
    return;
  }
  runtime_kernel rk;
  memset(&rk, 0, sizeof rk);
  rk.family = family;
  int splits = e->splits;
  if (e->config.values[0] == 0)
    family->default_config(&problem.key, &nvptx, &rk.config);
  else if (e->config.values[0] == RANDOM_CONFIG) {
    splits = random_valid_config(&problem.key, base_seed + 7919u * (uint64_t)index, &rk.config);
    if (splits < 0) {
      printf("skip %s: no config of the space can run it\n", name);
      case_tensors_free(c, &t);
      return;
    }
  } else
    for (int p = 0; p < family->num_params; p++) rk.config.values[p] = e->config.values[p];
  kernel_config_string(family, &rk.config, config_text, sizeof config_text);
  char line[600], split_text[32] = "";
  if (splits > 0) snprintf(split_text, sizeof split_text, ", %d parts", splits);
  snprintf(line, sizeof line, "[%s%s%s] %s", config_text, e->config.values[0] == 0 ? " (default)" : "", split_text,
           name);
  const char *only = getenv("FJ_EMU_ONLY");
  if (only && *only && !strstr(line, only)) {
    case_tensors_free(c, &t);
    return;
  }
  if (!family->config_valid(&problem.key, &nvptx, &rk.config, why, sizeof why)) {
    check(0, "%s: the case's config is not valid: %s", line, why);
    case_tensors_free(c, &t);
    return;
  }

  note_coverage(&rk.config);
  double build_seconds = 0, start = 0, run_seconds = 0;
  emu_stats stats;
  memset(&stats, 0, sizeof stats);
  gpu_attention_params params;
  void *workspace = NULL;
  size_t workspace_bytes = 0;
  emu_kernel *kernel = kernel_for(&problem.key, &rk.config, "", &build_seconds, why, sizeof why), *combine = NULL;
  if (!kernel) {
    check(0, "%s: building the emulated kernel failed: %s", line, why);
    goto done;
  }
  if (runtime_gpu_params(&rk, &problem, &params) != FJ_OK) {
    check(0, "%s: runtime_gpu_params: %s", line, fj_last_error());
    goto done;
  }
  /* A split launch, as runtime_launch_attention makes it: the parts into a poisoned workspace, o
   * read-only for the first kernel (the parts must not write it), then the combine kernel. */
  int64_t parts = 1;
  int block_n = rk.config.values[1];
  if (splits > 0) parts = runtime_gpu_split_params(&problem, block_n, splits, 0, &params);
  /* a random case with too few keys to split runs in one part (params unchanged), as the runtime's */
  if (splits > 0 && parts < 2 && e->config.values[0] == RANDOM_CONFIG) {
    splits = 0;
    strncat(line, " (in 1 part: too few keys)", sizeof line - strlen(line) - 1);
  }
  if (splits > 0) {
    workspace_bytes = runtime_split_bytes(&problem, parts);
    workspace = malloc(workspace_bytes);
    double combine_seconds = 0;
    combine = kernel_for(&problem.key, &rk.config, GPU_COMBINE_SUFFIX, &combine_seconds, why, sizeof why);
    build_seconds += combine_seconds;
    if (workspace == NULL || combine == NULL || parts < 2) {
      check(0, "%s: split into %d parts: %lld parts, %s", line, splits, (long long)parts,
            combine == NULL ? why : "or no memory for the workspace");
      goto done;
    }
    memset(workspace, 0xff, workspace_bytes);  /* NaN in every float */
    runtime_gpu_split_params(&problem, block_n, splits, (uint64_t)(uintptr_t)workspace, &params);
  }
  emu_kernel *launches[2] = {kernel, combine};
  int64_t grids[2] = {family->job_count(&problem, &rk.config) * parts, runtime_gpu_combine_blocks(&problem)};
  start = now_s();
  for (int l = 0; l < (parts > 1 ? 2 : 1); l++) {
    emu_kernel *run = launches[l];
    emu_kernel_clear_regions(run);
    add_region(run, &t.q, 0);
    add_region(run, &t.k, 0);
    add_region(run, &t.v, 0);
    add_region(run, &t.o, parts == 1 || l == 1);
    if (c->lse) add_region(run, &t.lse, parts == 1 || l == 1);
    if (c->varlen) emu_kernel_add_region(run, t.seqlens, (size_t)c->batch * sizeof *t.seqlens, 0);
    if (c->ragged_q) emu_kernel_add_region(run, t.cu, (size_t)(c->batch + 1) * sizeof *t.cu, 0);
    if (c->packed_k) emu_kernel_add_region(run, t.cu_k, (size_t)(c->batch + 1) * sizeof *t.cu_k, 0);
    if (c->alibi)
      emu_kernel_add_region(run, t.slopes, (size_t)((c->alibi == 2 ? c->batch : 1) * c->heads) * sizeof *t.slopes, 0);
    if (c->page_size > 0)
      emu_kernel_add_region(run, t.table, (size_t)(c->batch * case_table_width(c)) * sizeof *t.table, 0);
    if (c->sinks) emu_kernel_add_region(run, t.sinks, (size_t)c->heads * sizeof *t.sinks, 0);
    if (c->bias) emu_kernel_add_region(run, t.bias, case_bias_bytes(c), 0);
    if (workspace != NULL) emu_kernel_add_region(run, workspace, workspace_bytes, 1);
    emu_stats one;
    memset(&one, 0, sizeof one);
    emu_kernel_banks_reset(run);
    int rc = emu_kernel_launch(run, grids[l], &params, sizeof params, &one, why, sizeof why);
    stats.blocks += one.blocks;
    stats.copies += one.copies;
    stats.warp_ops += one.warp_ops;
    if (rc != 0) {
      check(0, "%s: the emulator stopped the %s kernel: %s", line, l == 0 ? "attention" : "combine", why);
      goto done;
    }
  }
  run_seconds = now_s() - start;
  emu_bank_summary banks[EMU_BANKS_KINDS];
  emu_kernel_banks(kernel, banks);
  char bank_text[512];
  bank_summary_text(banks, bank_text, sizeof bank_text);
  int conflicts = 0;
  for (int k = 0; k < EMU_BANKS_KINDS; k++)
    if (banks[k].wavefronts != banks[k].ideal && banks_promised(k, c, &problem.key, &rk.config)) conflicts = 1;
  if (fp8_codes) {
    int first, wrong = case_fp8_codes_wrong(c, &t, &first);
    check(wrong == 0, "%s: %d codes wrong (first 0x%02x)", line, wrong, first < 0 ? 0 : first);
    goto done;
  }
  case_result r;
  if (!case_compare(c, &t, 1e-3, &r)) {
    check(0, "%s: reference failed (%s)", line, fj_last_error());
    goto done;
  }
  check(case_result_ok(&r) && !conflicts,
        "%s: err_o=%.2e err_lse=%.2e (tol %.0e, %.0e)%s%s%s%s; %lld blocks, %lld cp.async, %lld warp ops, %.1f s build, "
        "%.1f s run; %s",
        line, r.err_o, r.err_lse, r.tol, r.tol_lse, r.masked_ok ? "" : " MASKED ROW NOT EXACT (or NaN)",
        r.outside_o ? "" : " WROTE OUTSIDE o's ELEMENTS", r.outside_lse ? "" : " WROTE OUTSIDE lse's ELEMENTS",
        conflicts ? " BANK CONFLICTS WHERE THE LAYOUT PROMISES NONE" : "", (long long)stats.blocks,
        (long long)stats.copies, (long long)stats.warp_ops, build_seconds, run_seconds, bank_text);
done:
  free(workspace);
  if (sweeping) { /* not kept in builds[]: this case's own */
    emu_kernel_free(kernel);
    emu_kernel_free(combine);
  }
  case_tensors_free(c, &t);
}

/* FJ_EMU_SWEEP: the whole space on one shape per (dtype, head dim, causal), in one layout. */
/* decode: a decode step's space instead (3 queries of 4 heads against 300 keys of 2), split_kv configs
 * launched in 3 parts. fp8: k and v an fp8 cache (E4M3 beside bf16, E5M2 beside fp16). */
static void sweep(layout in, int decode, int fp8) {
  static const int dims[] = {24, 40, 64, 72, 80, 96, 128, 256};
  int index = NUM_CASES;
  sweeping = 1;
  for (int dtype = DTYPE_F16; dtype <= DTYPE_BF16; dtype++)
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
      for (int causal = 0; causal < 2; causal++) {
        emu_case e = {{(dtype_id)dtype, 1, 2, 1, 70, 90, dims[d], causal, 1, in, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0}, DEFAULT, 0};
        if (decode) e.c = (test_case){(dtype_id)dtype, 1, 4, 2, 3, 300, dims[d], causal, 1, in, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        if (fp8) e.c.kv_fp8 = dtype == DTYPE_BF16 ? DTYPE_E4M3 : DTYPE_E5M2;
        attention_key key;
        memset(&key, 0, sizeof key);
        key.dtype = dtype;
        key.head_dim = dims[d];
        key.heads = (int)e.c.heads;
        key.kv_heads = (int)e.c.kv_heads;
        key.seqlen_bucket = core_seqlen_bucket(e.c.seqlen_q);
        key.causal = causal;
        key.has_lse = 1;
        key.d_contiguous = in != DSTRIDE2;
        key.kv_fp8 = e.c.kv_fp8;
        int at[KERNEL_MAX_PARAMS] = {0};
        for (;;) {
          kernel_config config;
          memset(&config, 0, sizeof config);
          for (int p = 0; p < family->num_params; p++) config.values[p] = family->params[p].values[at[p]];
          char why[256];
          if (family->config_valid(&key, &nvptx, &config, why, sizeof why)) {
            for (int p = 0; p < family->num_params; p++) e.config.values[p] = config.values[p];
            e.splits = family->splits_kv(&config) ? 3 : 0;
            run_case(index++, &e);
          }
          int p = 0;
          while (p < family->num_params && ++at[p] == family->params[p].num_values) at[p++] = 0;
          if (p == family->num_params) break;
        }
      }
  printf("sweep: %d cases, %.1f s building\n", index - NUM_CASES, sweep_build_seconds);
}

int main(int argc, char **argv) {
  if (jit_nvptx_target("sm_80", &nvptx) != FJ_OK) {
    printf("FAIL jit_nvptx_target(sm_80): %s\n", fj_last_error());
    return 1;
  }
  const char *no_o3 = getenv("FJ_EMU_NO_O3");
  nvptx_o3 = !(no_o3 && *no_o3 && strcmp(no_o3, "0") != 0);
  base_seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
  if (argc > 1) base_seed = strtoull(argv[1], NULL, 0);
  printf("seed %llu (rerun with: %s %llu); emulating the module %s the NVPTX O3 pipeline\n",
         (unsigned long long)base_seed, argv[0], (unsigned long long)base_seed, nvptx_o3 ? "after" : "before");
  double start = now_s();
  self_tests();
  const char *only = getenv("FJ_EMU_ONLY"), *sweep_env = getenv("FJ_EMU_SWEEP");
  if (sweep_env && strcmp(sweep_env, "random") == 0) {
    sweeping = 1;
    random_cases(40);
  } else if (sweep_env && *sweep_env && strcmp(sweep_env, "0") != 0) {
    sweep(strcmp(sweep_env, "misaligned") == 0 ? MISALIGNED : strcmp(sweep_env, "d-stride-2") == 0 ? DSTRIDE2 : CONTIG,
          strcmp(sweep_env, "decode") == 0 || strcmp(sweep_env, "decode-fp8") == 0,
          strcmp(sweep_env, "fp8") == 0 || strcmp(sweep_env, "decode-fp8") == 0);
  } else {
    for (int i = 0; i < NUM_CASES; i++) run_case(i, &cases[i]);
    if (!(only && *only)) check_coverage();
    /* every code of both fp8 formats through the kernel's conversion, into fp16 and into bf16 operands */
    static const emu_case codes[] = {
        {{F16, 256, 1, 1, 1, 1, 16, 0, 1, CONTIG, 1.0f, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0}, DEFAULT, 0},
        {{BF16, 256, 1, 1, 1, 1, 16, 0, 1, CONTIG, 1.0f, 0, 0, -1, -1, 0, 0, 0, 0, 0, E4M3, 0, 0}, DEFAULT, 0},
        {{F16, 256, 1, 1, 1, 1, 16, 0, 1, CONTIG, 1.0f, 0, 0, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0}, DEFAULT, 0},
        {{BF16, 256, 1, 1, 1, 1, 16, 0, 1, CONTIG, 1.0f, 0, 0, -1, -1, 0, 0, 0, 0, 0, E5M2, 0, 0}, DEFAULT, 0},
    };
    fp8_codes = 1;
    for (int i = 0; i < (int)(sizeof codes / sizeof codes[0]); i++) run_case(NUM_CASES + i, &codes[i]);
    fp8_codes = 0;
    /* and a few cases of random features and configs, new ones every run (the seed above repeats them) */
    if (!(only && *only)) random_cases(6);
  }
  double build_total = 0;
  for (int i = 0; i < build_count; i++) {
    build_total += builds[i].seconds;
    emu_kernel_free(builds[i].kernel);
  }
  if (!sweeping) printf("%d kernels built in %.1f s; ", build_count, build_total);
  printf("%.1f s in all\n", now_s() - start);
  return check_summary();
}
