/* test_kernel_space.c: every value of every tuning parameter of the CPU forward family produces a
 * correct kernel, and the space's constraints say no exactly where they should. Each config that is
 * valid on this host is compiled and run on small odd-shaped problems (fresh random inputs, poisoned
 * outputs) and compared with the float64 reference; this is what the tuner relies on when it searches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/host_tensor.h"
#include "core/problem.h"
#include "core/reference.h"
#include "jit/jit.h"
#include <llvm-c/Disassembler.h>
#include <llvm-c/Object.h>
#include <llvm-c/Target.h>
#include "kernels/kernel_family.h"
#include "runtime/runtime.h"

static int passed, failed;

static void check(int ok, const char *what) {
  printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  if (ok) passed++; else failed++;
}

typedef struct problem_spec {
  dtype_id dtype;
  int batch, heads, kv_heads, seqlen_q, seqlen_kv, head_dim, causal;
} problem_spec;

/* Runs one problem with one config; returns the worse of the o and lse relative errors, or -1 when the
 * call itself failed. */
static double run_config(fj_context *context, const kernel_family *family, const kernel_config *config,
                         const problem_spec *p, uint64_t seed) {
  int64_t q_shape[4] = {p->batch, p->seqlen_q, p->heads, p->head_dim};
  int64_t kv_shape[4] = {p->batch, p->seqlen_kv, p->kv_heads, p->head_dim};
  int64_t lse_shape[3] = {p->batch, p->heads, p->seqlen_q};
  host_tensor q, k, v, o, lse;
  if (host_tensor_alloc(&q, p->dtype, 4, q_shape, NULL) || host_tensor_alloc(&k, p->dtype, 4, kv_shape, NULL) ||
      host_tensor_alloc(&v, p->dtype, 4, kv_shape, NULL) || host_tensor_alloc(&o, p->dtype, 4, q_shape, NULL) ||
      host_tensor_alloc(&lse, DTYPE_F32, 3, lse_shape, NULL)) {
    fprintf(stderr, "allocation failed\n");
    exit(1);
  }
  host_tensor_fill_random(&q, seed);
  host_tensor_fill_random(&k, seed + 1);
  host_tensor_fill_random(&v, seed + 2);
  host_tensor_poison(&o);
  host_tensor_poison(&lse);

  fj_attention_args args;
  fj_attention_args_init(&args);
  args.q = &q.t;
  args.k = &k.t;
  args.v = &v.t;
  args.o = &o.t;
  args.lse = &lse.t;
  args.causal = p->causal;
  attention_problem problem;
  double error = -1;
  runtime_kernel *kernel = NULL;
  if (core_validate_attention(&args, &problem) == FJ_OK &&
      runtime_get_kernel(context, &problem, config, &kernel) == FJ_OK &&
      runtime_launch_attention(context, kernel, &problem, NULL) == FJ_OK) {
    size_t n = (size_t)(p->batch * p->seqlen_q * p->heads * p->head_dim);
    double *ref_o = malloc(n * sizeof(double));
    double *ref_lse = malloc((size_t)(p->batch * p->heads * p->seqlen_q) * sizeof(double));
    if (!ref_o || !ref_lse || core_reference_attention(&problem, ref_o, ref_lse) != FJ_OK) exit(1);
    double e_o = core_relative_error_o(&problem, ref_o);
    double e_lse = core_relative_error_lse(&problem, ref_lse);
    error = e_o > e_lse ? e_o : e_lse;
    if (isnan(error)) error = INFINITY;
    free(ref_o);
    free(ref_lse);
  } else {
    printf("  call failed: %s\n", fj_last_error());
  }
  host_tensor_free(&q);
  host_tensor_free(&k);
  host_tensor_free(&v);
  host_tensor_free(&o);
  host_tensor_free(&lse);
  return error;
}

/* The instructions of the object code the family generates for key and config on target, read back
 * with LLVM's disassembler: how many, and how many of them multiply (the FMAs and bf16 pair dots).
 * 0 on success. */
typedef struct code_count {
  long instructions, products;
} code_count;

static int count_code(const kernel_family *family, const attention_key *key, const jit_target *target,
                      const kernel_config *config, code_count *out) {
  memset(out, 0, sizeof *out);
  LLVMContextRef llvm = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("attention", llvm);
  jit_buffer object = {0};
  fj_status status = jit_module_set_target(module, target);
  if (status == FJ_OK) status = family->generate(module, key, target, config, "attention_fwd");
  if (status == FJ_OK) status = jit_compile_module(module, target, "same-kernel check", &object);
  LLVMDisposeModule(module);
  if (status != FJ_OK) {
    printf("  compile failed: %s\n", fj_last_error());
    LLVMContextDispose(llvm);
    return -1;
  }
  LLVMMemoryBufferRef buffer = LLVMCreateMemoryBufferWithMemoryRange(object.data, object.size, "object", 0);
  char *message = NULL;
  LLVMBinaryRef binary = LLVMCreateBinary(buffer, llvm, &message);
  LLVMDisasmContextRef disasm = LLVMCreateDisasmCPU(target->triple, target->cpu, NULL, 0, NULL, NULL);
  int found = 0;
  if (binary != NULL && disasm != NULL) {
    LLVMSectionIteratorRef section = LLVMObjectFileCopySectionIterator(binary);
    for (; !LLVMObjectFileIsSectionIteratorAtEnd(binary, section); LLVMMoveToNextSection(section)) {
      const char *name = LLVMGetSectionName(section);
      if (name == NULL || strncmp(name, ".text", 5) != 0) continue;
      found = 1;
      uint8_t *bytes = (uint8_t *)LLVMGetSectionContents(section);
      uint64_t size = LLVMGetSectionSize(section), at = 0;
      char text[128];
      while (at < size) {
        size_t length = LLVMDisasmInstruction(disasm, bytes + at, size - at, at, text, sizeof text);
        if (length == 0) break;
        at += length;
        out->instructions++;
        out->products += strstr(text, "vfmadd") != NULL || strstr(text, "vdpbf16ps") != NULL;
      }
    }
    LLVMDisposeSectionIterator(section);
  }
  if (binary == NULL || disasm == NULL || !found)
    printf("  cannot read the object back: %s\n", message ? message : disasm ? "no .text" : "no disassembler");
  LLVMDisposeMessage(message);
  if (disasm != NULL) LLVMDisasmDispose(disasm);
  if (binary != NULL) LLVMDisposeBinary(binary);
  LLVMDisposeMemoryBuffer(buffer);
  LLVMContextDispose(llvm);
  jit_buffer_free(&object);
  return binary != NULL && disasm != NULL && found && out->instructions > 0 ? 0 : -1;
}

/* The family leaves configs out of the tuner's space as "the same kernel as another"; that is a claim
 * about the code this host gets, checked here: twins have the same number of products and within 1% of
 * each other's instructions (a loop's exit test or an address's form may differ). unroll=1 once relied
 * on LLVM's unroller doing what unroll=2 does, true on znver5 but not on Emerald Rapids (fp32 d = 80 and
 * bf16 d = 256 rows below); the generator now steps d two at a time for it itself. */
static void check_same_kernels(const kernel_family *family, const jit_target *target) {
  const struct {
    dtype_id dtype;
    int head_dim;
    const char *config;
  } twins[] = {
      {DTYPE_F32, 64, "block_m=64 block_n=24 unroll=1 vector=16 pv_rows=6 pv_vectors=4"},
      {DTYPE_F32, 80, "block_m=16 block_n=8 unroll=1 vector=8 pv_rows=2 pv_vectors=2"},
      {DTYPE_BF16, 256, "block_m=48 block_n=28 unroll=1 vector=16 pv_rows=8 pv_vectors=1"},
      {DTYPE_BF16, 128, "block_m=64 block_n=24 unroll=1 vector=16 pv_rows=6 pv_vectors=4 bf16_dot=1"},
      {DTYPE_F32, 32, "block_m=32 block_n=12 unroll=2 vector=16 pv_rows=6 pv_vectors=4"},
  };
  LLVMInitializeX86Disassembler();  /* the library itself never reads code back */
  for (size_t i = 0; i < sizeof twins / sizeof twins[0]; i++) {
    attention_key key = {.kind = PROBLEM_ATTENTION_FWD, .dtype = twins[i].dtype, .head_dim = twins[i].head_dim,
                         .heads = 2, .kv_heads = 2, .seqlen_bucket = 10};
    kernel_config config, twin;
    char why[256] = "", label[512], twin_text[256] = "";
    if (kernel_config_parse(family, twins[i].config, &config, why, sizeof why) != 0 ||
        !family->config_valid(&key, target, &config, why, sizeof why)) {
      printf("  skip %s d=%d: %s\n", twins[i].config, twins[i].head_dim, why);
      continue;
    }
    int same = family->same_kernel_as(&key, target, &config, &twin, why, sizeof why);
    kernel_config_string(family, &twin, twin_text, sizeof twin_text);
    code_count a = {0}, b = {0};
    int read = same && count_code(family, &key, target, &config, &a) == 0 &&
               count_code(family, &key, target, &twin, &b) == 0;
    long gap = a.instructions > b.instructions ? a.instructions - b.instructions : b.instructions - a.instructions;
    snprintf(label, sizeof label, "%s d=%d %s: %ld instructions, %ld products; its twin %s: %ld, %ld (%s)",
             core_dtype_name(twins[i].dtype), twins[i].head_dim, twins[i].config, a.instructions, a.products,
             twin_text, b.instructions, b.products, why);
    check(read && a.products > 0 && a.products == b.products && gap * 100 <= a.instructions, label);
  }
}

int main(void) {
  uint64_t seed = (uint64_t)time(NULL);
  printf("seed %llu\n", (unsigned long long)seed);
  fj_context_options options;
  fj_context_options_init(&options);
  options.device = "cpu";
  options.disable_disk_cache = 1;
  fj_context *context = NULL;
  if (fj_context_create(&options, &context) != FJ_OK) {
    printf("FAIL: context: %s\n", fj_last_error());
    return 1;
  }
  const kernel_family *family = kernel_family_for_backend("cpu");
  check(family != NULL, "the cpu backend has a forward family");
  if (!family) return 1;
  const jit_target *target = runtime_target(context);

  /* The default config is valid for every head dim the API takes. */
  int defaults_valid = 1;
  for (int d = 8; d <= CORE_HEAD_DIM_MAX; d += 8)
    for (int dtype = DTYPE_F32; dtype <= DTYPE_BF16; dtype++) {
      attention_key key = {.kind = PROBLEM_ATTENTION_FWD, .dtype = dtype, .head_dim = d, .heads = 1, .kv_heads = 1};
      kernel_config config;
      char why[256];
      family->default_config(&key, target, &config);
      if (!family->config_valid(&key, target, &config, why, sizeof why)) {
        printf("  default for d=%d %s invalid: %s\n", d, core_dtype_name((dtype_id)dtype), why);
        defaults_valid = 0;
      }
    }
  check(defaults_valid, "the default config is valid for head dims 8..576 (CORE_HEAD_DIM_MAX), fp32, fp16 and bf16");

  /* The NVIDIA family's too, wherever it takes the problem (generated here, assembled by test_ptxas):
   * q's and k's head dim, v's the same, 128 or 512, prefill and decode, packed heads or not, sm_80 and
   * sm_90a. */
  {
    const kernel_family *cuda = kernel_family_for_backend("cuda");
    const char *archs[] = {"sm_80", "sm_90a"};
    int supported = 0, invalid = 0;
    for (int a = 0; cuda && a < 2; a++) {
      jit_target nvptx;
      if (jit_nvptx_target(archs[a], &nvptx) != FJ_OK) continue;
      for (int d = 8; d <= CORE_HEAD_DIM_MAX; d += 8)
        for (int v = 0; v < 3; v++)
          for (int decode = 0; decode < 2; decode++)
            for (int packed = 0; packed < 2; packed++) {
              attention_key key = {.kind = PROBLEM_ATTENTION_FWD, .dtype = DTYPE_BF16, .head_dim = d, .heads = 16,
                                   .kv_heads = packed ? 1 : 16, .causal = 1, .d_contiguous = 1,
                                   .seqlen_bucket = decode ? 0 : 12};
              int dv = v == 0 ? d : v == 1 ? 128 : 512;
              key.head_dim_v = dv == d ? 0 : dv;
              char why[256];
              if (!cuda->problem_supported(&key, why, sizeof why)) continue;
              supported++;
              kernel_config config;
              cuda->default_config(&key, &nvptx, &config);
              if (!cuda->config_valid(&key, &nvptx, &config, why, sizeof why)) {
                if (invalid++ < 5) printf("  %s d=%d dv=%d %s%s: %s\n", archs[a], d, dv, decode ? "decode" : "prefill",
                                          packed ? " packed" : "", why);
              }
            }
    }
    check(cuda != NULL && supported > 0 && invalid == 0,
          "the NVIDIA default config is valid wherever the family takes the problem (head dims to 576, v's to 512)");
    if (invalid) printf("  %d of %d supported keys have no valid default\n", invalid, supported);
  }

  /* Where the NVIDIA default cannot run a problem (a strided head dim's copies at d > 512, a wide head
   * dim in sm_86's 99 KB of shared memory), a call takes the valid config nearest it: it is valid, it is
   * the default itself wherever that is valid, and it is missing only where no config of the space is
   * valid (checked one by one), which a call reports as FJ_UNSUPPORTED. */
  {
    const kernel_family *cuda = kernel_family_for_backend("cuda");
    const char *archs[] = {"sm_80", "sm_86", "sm_90a"};
    int keys = 0, fell_back = 0, none = 0, wrong = 0;
    int64_t total = cuda ? kernel_space_points(cuda) : 0;
    for (int a = 0; cuda && a < 3; a++) {
      jit_target nvptx;
      if (jit_nvptx_target(archs[a], &nvptx) != FJ_OK) continue;
      for (int d = 8; d <= CORE_HEAD_DIM_MAX; d += 8)
        for (int v = 0; v < 3; v++)
          for (int form = 0; form < 8; form++) {
            attention_key key = {.kind = PROBLEM_ATTENTION_FWD, .dtype = DTYPE_F16, .head_dim = d, .heads = 8,
                                 .kv_heads = 2, .causal = 1, .has_lse = 1, .d_contiguous = !(form & 1),
                                 .seqlen_bucket = (form & 2) ? 0 : 12, .kv_fp8 = (form & 4) ? DTYPE_E5M2 : 0};
            int dv = v == 0 ? d : v == 1 ? 128 : 512;
            key.head_dim_v = dv == d ? 0 : dv;
            char why[256];
            if (!cuda->problem_supported(&key, why, sizeof why)) continue;
            keys++;
            kernel_config preferred, nearest;
            cuda->default_config(&key, &nvptx, &preferred);
            int default_valid = cuda->config_valid(&key, &nvptx, &preferred, why, sizeof why);
            int found = kernel_config_nearest_valid(cuda, &key, &nvptx, &preferred, &nearest);
            int any = default_valid;
            for (int64_t n = 0; n < total && !any; n++) {
              kernel_config config;
              kernel_space_point(cuda, n, &config);
              any = cuda->config_valid(&key, &nvptx, &config, why, sizeof why);
            }
            int ok = found == any && (!found || cuda->config_valid(&key, &nvptx, &nearest, why, sizeof why)) &&
                     (!default_valid || memcmp(&nearest, &preferred, sizeof nearest) == 0);
            if (!ok && wrong++ < 5)
              printf("  %s d=%d dv=%d form %d: default valid %d, nearest found %d, any valid %d\n", archs[a], d, dv,
                     form, default_valid, found, any);
            fell_back += !default_valid && found;
            none += !any;
          }
    }
    char what[400];
    snprintf(what, sizeof what,
             "kernel_config_nearest_valid over %d NVIDIA keys (sm_80, sm_86, sm_90a; head dims 8..576, v's d, 128 "
             "and 512; strided head dims, decode, fp8): valid where any config is, the default where it is valid "
             "(%d take another config than the default, %d have none)",
             keys, fell_back, none);
    check(cuda != NULL && keys > 0 && wrong == 0, what);
  }

  /* A register tile that cannot fit is refused with a reason that names the registers. */
  {
    attention_key key = {.kind = PROBLEM_ATTENTION_FWD, .dtype = DTYPE_F32, .head_dim = 64, .heads = 1, .kv_heads = 1};
    kernel_config config;
    family->default_config(&key, target, &config);
    char text[256], why[256] = "";
    kernel_config_string(family, &config, text, sizeof text);
    kernel_config big;
    char parse_why[256];
    /* eight vectors of queries: their scores for even the fewest keys a chunk takes do not fit */
    char big_text[128];
    snprintf(big_text, sizeof big_text, "block_m=64 block_n=28 unroll=1 vector=8 pv_rows=6 pv_vectors=4");
    int parsed = kernel_config_parse(family, big_text, &big, parse_why, sizeof parse_why) == 0;
    check(parsed && !family->config_valid(&key, target, &big, why, sizeof why) && strstr(why, "registers"),
          "an oversized register tile is refused, naming registers");
    printf("  (%s)\n", why);
  }

  check_same_kernels(family, target);

  /* Each value of each parameter at least once, around the default; shapes with ragged edges. */
  const problem_spec problems[] = {
      {DTYPE_F32, 1, 2, 1, 37, 45, 64, 1},
      {DTYPE_BF16, 2, 2, 2, 29, 17, 24, 0},
      /* decode-like: a few queries of 4 grouped heads, causal against a longer cache */
      {DTYPE_BF16, 2, 8, 2, 3, 41, 64, 1},
  };
  attention_key probe_key = {.kind = PROBLEM_ATTENTION_FWD, .dtype = DTYPE_F32, .head_dim = 64, .heads = 2, .kv_heads = 1};
  kernel_config base;
  family->default_config(&probe_key, target, &base);
  int tried = 0, refused = 0;
  int block_n = -1;
  for (int param = 0; param < family->num_params; param++)
    if (strcmp(family->params[param].name, "block_n") == 0) block_n = param;
  check(block_n >= 0, "the family has a block_n parameter");
  if (block_n < 0) return 1;
  for (int param = 0; param < family->num_params; param++) {
    for (int i = 0; i < family->params[param].num_values; i++) {
      kernel_config config = base;
      config.values[param] = family->params[param].values[i];
      char why[256], text[256], label[512];
      for (int p = 0; p < (int)(sizeof problems / sizeof problems[0]); p++) {
        attention_key key = probe_key;
        key.dtype = problems[p].dtype;
        key.head_dim = problems[p].head_dim;
        key.heads = problems[p].heads;
        key.kv_heads = problems[p].kv_heads;
        kernel_config c = config;
        /* keep the register tile feasible when varying block_m: shrink block_n until it fits */
        for (int j = family->params[block_n].num_values - 1;
             j > 0 && !family->config_valid(&key, target, &c, why, sizeof why) && strstr(why, "registers"); j--)
          c.values[block_n] = family->params[block_n].values[j - 1];
        kernel_config_string(family, &c, text, sizeof text);
        if (!family->config_valid(&key, target, &c, why, sizeof why)) {
          refused++;
          continue;
        }
        tried++;
        double error = run_config(context, family, &c, &problems[p], seed + (uint64_t)(tried * 7));
        double bound = core_dtype_tolerance(problems[p].dtype);
        snprintf(label, sizeof label, "%s on %s d=%d sq=%d skv=%d causal=%d: rel err %.2e (bound %.0e)", text,
                 core_dtype_name(problems[p].dtype), problems[p].head_dim, problems[p].seqlen_q,
                 problems[p].seqlen_kv, problems[p].causal, error, bound);
        check(error >= 0 && error < bound, label);
      }
    }
  }
  printf("configs run: %d, refused by constraints: %d\n", tried, refused);
  check(tried >= 10, "at least 10 configs ran");
  fj_context_destroy(context);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
