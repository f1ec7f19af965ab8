/* test_ptxas.c: the NVIDIA forward kernels checked without a GPU. Every valid config of the family's
 * search space for head dims 64 and 128 (bf16; fp16 for the defaults, all of it with FJ_PTXAS_FULL=1), the
 * defaults of every other supported head dim, the causal / LSE / strided variants of the defaults, and
 * the space for a strided head dim at d = 128 on sm_90a (bf16; its own register rule) are generated,
 * emitted as PTX for sm_80 and sm_90a, and assembled by ptxas -v: each must assemble, use no local memory
 * (0 bytes stack frame, no spill stores or loads) and contain the instructions the kernel is built on
 * (mma.sync, ldmatrix, cp.async, ex2.approx). Skips (77) where no ptxas is found:
 * FJ_PTXAS, /usr/local/cuda/bin/ptxas, then PATH.
 * FJ_PTXAS_JOBS: parallel jobs (default 2). FJ_PTXAS_FULL=1: fp16 over the whole space too.
 * FJ_PTXAS_DIMS=80,96,256: the head dims whose whole space is assembled (default 64,128).
 * FJ_PTXAS_STRIDED=1: those spaces for a strided head dim (the synchronous load path).
 * FJ_PTXAS_VARLEN=1: those spaces for varlen keys (seqlens_kv: each sequence's key count read per block).
 * FJ_PTXAS_PAGE=n: those spaces for a paged cache of pages of n keys (block_table); with
 * FJ_PTXAS_VARLEN=1 varlen too. FJ_PTXAS_DECODE=1: those spaces for decode keys (one query), whose
 * split_kv=1 half adds the parts' loop range and epilogue and the combine kernel. FJ_PTXAS_WINDOW=1: those
 * spaces for causal sliding-window keys (the window's first tile and its lower-edge masks). FJ_PTXAS_RAGGED=1:
 * those spaces for causal ragged-query keys (cu_seqlens_q: each sequence's first row and query count read per block).
 * FJ_PTXAS_SINKS=1: those spaces for causal keys with attention sinks (each row's head's logit in its
 * running state). FJ_PTXAS_SOFTCAP=1: those spaces for causal soft-capped keys (tanh.approx per score).
 * FJ_PTXAS_PACKED_K=1: those spaces for causal packed keys (cu_seqlens_k: each sequence's first row of K
 * and V, and its key count, read per block). FJ_PTXAS_ALIBI=1: those spaces for causal ALiBi keys (each
 * row's slope and diagonal, a distance per score). FJ_PTXAS_FP8=1: those spaces for causal keys of an E4M3
 * KV cache (K and V staged raw by cp.async and widened in shared memory). FJ_PTXAS_DV=n:
 * those spaces for causal keys whose v has head dim n (K and V rings of their own widths, O as wide as V;
 * MLA's prefill is FJ_PTXAS_DIMS=192 FJ_PTXAS_DV=128, its absorbed decode FJ_PTXAS_DIMS=576 FJ_PTXAS_DV=512
 * FJ_PTXAS_DECODE=1).
 * FJ_PTXAS_DUMP=dir: keep each job's PTX and ptxas report there. FJ_PTXAS_ONLY=substring: only the
 * jobs whose name contains it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/problem.h"
#include "jit/jit.h"
#include "kernels/attention_fwd_gpu_abi.h"
#include "kernels/kernel_family.h"

typedef struct job {
  char name[400];
  char arch[16];
  attention_key key;
  kernel_config config;
  /* results */
  int ok, registers, spill_stores, spill_loads, stack;
  size_t shared;
  double seconds;
  char message[1024];
} job;

static const kernel_family *family;
static const char *ptxas;
static const char *dump_dir;
static job *jobs;
static int job_count_total, next_job;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char *find_ptxas(void) {
  static char path[4096];
  const char *env = getenv("FJ_PTXAS");
  if (env && *env) return access(env, X_OK) == 0 ? env : NULL;
  if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0) return "/usr/local/cuda/bin/ptxas";
  const char *p = getenv("PATH");
  while (p && *p) {
    size_t n = strcspn(p, ":");
    snprintf(path, sizeof path, "%.*s/ptxas", (int)n, p);
    if (n > 0 && access(path, X_OK) == 0) return path;
    p += n;
    if (*p == ':') p++;
  }
  return NULL;
}

static int varlen_spaces;  /* FJ_PTXAS_VARLEN */
static int page_spaces;    /* FJ_PTXAS_PAGE */
static int window_spaces;  /* FJ_PTXAS_WINDOW */
static int ragged_spaces;  /* FJ_PTXAS_RAGGED */
static int sinks_spaces;   /* FJ_PTXAS_SINKS */
static int softcap_spaces; /* FJ_PTXAS_SOFTCAP */

static attention_key make_key(dtype_id dtype, int head_dim, int causal, int lse, int d_contiguous) {
  attention_key key;
  memset(&key, 0, sizeof key);
  key.kind = PROBLEM_ATTENTION_FWD;
  key.dtype = dtype;
  key.head_dim = head_dim;
  key.heads = 16;
  key.kv_heads = 4;
  key.causal = causal;
  key.has_lse = lse;
  key.d_contiguous = d_contiguous;
  key.seqlen_bucket = 12;
  return key;
}

static void add_job(const char *arch, const attention_key *key, const kernel_config *config, const char *tag) {
  static int capacity;
  if (job_count_total == capacity) {
    capacity = capacity ? capacity * 2 : 256;
    jobs = realloc(jobs, (size_t)capacity * sizeof *jobs);
    if (!jobs) exit(1);
  }
  job *j = &jobs[job_count_total++];
  memset(j, 0, sizeof *j);
  char text[200];
  kernel_config_string(family, config, text, sizeof text);
  char extra[96];
  core_key_extra_text(key, extra, sizeof extra);
  snprintf(j->name, sizeof j->name, "%s %s d=%d%s%s%s%s%s%s%s%s %s [%s]", arch, core_dtype_name((dtype_id)key->dtype),
           key->head_dim, key->causal ? " causal" : "", key->window ? " window" : "", key->has_lse ? " lse" : "",
           key->d_contiguous ? "" : " strided-d", key->varlen ? " varlen" : "", key->varlen_q ? " ragged-q" : "", extra,
           key->seqlen_bucket == 0 ? " decode" : "", text, tag);
  snprintf(j->arch, sizeof j->arch, "%s", arch);
  j->key = *key;
  j->config = *config;
}

/* Reads an unsigned number after `label` in text (e.g. "Used " -> 128); -1 when absent. */
static int number_before(const char *text, const char *suffix) {
  const char *at = strstr(text, suffix);
  if (!at) return -1;
  const char *p = at;
  while (p > text && p[-1] == ' ') p--;
  while (p > text && p[-1] >= '0' && p[-1] <= '9') p--;
  return atoi(p);
}

static void run_job(job *j) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  jit_target target;
  if (jit_nvptx_target(j->arch, &target) != FJ_OK) {
    snprintf(j->message, sizeof j->message, "jit_nvptx_target: %s", fj_last_error());
    return;
  }
  char why[256];
  if (!family->config_valid(&j->key, &target, &j->config, why, sizeof why)) {
    snprintf(j->message, sizeof j->message, "config invalid: %s", why);
    return;
  }
  j->shared = family->scratch_bytes(&j->key, &j->config);
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("attention", ctx);
  jit_buffer ptx = {0};
  fj_status status = jit_module_set_target(module, &target);
  if (status == FJ_OK) status = family->generate(module, &j->key, &target, &j->config, "attention_fwd");
  if (status == FJ_OK) status = jit_compile_module(module, &target, j->name, &ptx);
  LLVMDisposeModule(module);
  LLVMContextDispose(ctx);
  if (status != FJ_OK) {
    snprintf(j->message, sizeof j->message, "generate/compile: %s", fj_last_error());
    return;
  }
  const char *needed[] = {"mma.sync.aligned.m16n8k16", "ldmatrix.sync.aligned", "cp.async.cg.shared.global",
                          "cp.async.wait_group", "ex2.approx", "shfl.sync.bfly", "bar.sync"};
  for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
    if (!strstr(ptx.data, needed[i]) && (j->key.d_contiguous || strncmp(needed[i], "cp.async", 8) != 0)) {
      snprintf(j->message, sizeof j->message, "PTX lacks %s", needed[i]);
      jit_buffer_free(&ptx);
      return;
    }
  char dir[512], ptx_path[700], report_path[700], command[2400];
  if (dump_dir) {
    snprintf(dir, sizeof dir, "%s", dump_dir);
  } else {
    snprintf(dir, sizeof dir, "/tmp/fj_ptxas_XXXXXX");
    if (!mkdtemp(dir)) {
      snprintf(j->message, sizeof j->message, "mkdtemp failed");
      jit_buffer_free(&ptx);
      return;
    }
  }
  int index = (int)(j - jobs);
  snprintf(ptx_path, sizeof ptx_path, "%s/job%04d.ptx", dir, index);
  snprintf(report_path, sizeof report_path, "%s/job%04d.txt", dir, index);
  FILE *f = fopen(ptx_path, "w");
  if (!f || fwrite(ptx.data, 1, ptx.size, f) != ptx.size) {
    snprintf(j->message, sizeof j->message, "cannot write %s", ptx_path);
    if (f) fclose(f);
    jit_buffer_free(&ptx);
    return;
  }
  fclose(f);
  jit_buffer_free(&ptx);
  snprintf(command, sizeof command, "'%s' -arch=%s -v -o /dev/null '%s' > '%s' 2>&1", ptxas, j->arch, ptx_path,
           report_path);
  int rc = system(command);
  char report[16384] = {0};
  (void)0;
  f = fopen(report_path, "r");
  if (f) {
    size_t n = fread(report, 1, sizeof report - 1, f);
    report[n] = '\0';
    fclose(f);
  }
  if (!dump_dir) {
    unlink(ptx_path);
    unlink(report_path);
    rmdir(dir);
  }
  if (rc != 0) {
    snprintf(j->message, sizeof j->message, "ptxas failed (%d): %.300s", rc, report);
    return;
  }
  /* One section per kernel of the module (a split_kv config's has its combine kernel too): none may use
   * local memory; the registers reported are the attention kernel's. */
  int kernels = 0, expected = family->splits_kv != NULL && family->splits_kv(&j->config) ? 2 : 1;
  const char *marker = "Compiling entry function '";
  for (char *at = strstr(report, marker); at != NULL; kernels++) {
    char *next = strstr(at + 1, marker);
    if (next) *next = '\0';  /* this section only */
    int registers = number_before(at, "registers"), spill_stores = number_before(at, "bytes spill stores");
    int spill_loads = number_before(at, "bytes spill loads"), stack = number_before(at, "bytes stack frame");
    int combine = strncmp(at + strlen(marker), "attention_fwd" GPU_COMBINE_SUFFIX, strlen("attention_fwd" GPU_COMBINE_SUFFIX)) == 0;
    if (registers < 0 || spill_stores != 0 || spill_loads != 0 || stack != 0) {
      snprintf(j->message, sizeof j->message, "local memory in the %s kernel: %d bytes stack, %d spill stores, %d spill loads (%d registers)",
               combine ? "combine" : "attention", stack, spill_stores, spill_loads, registers);
      return;
    }
    if (!combine) {
      j->registers = registers;
      j->spill_stores = spill_stores;
      j->spill_loads = spill_loads;
      j->stack = stack;
    }
    if (next) *next = marker[0];
    at = next;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  j->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (kernels != expected || j->registers <= 0) {
    snprintf(j->message, sizeof j->message, "ptxas reported %d kernels (expected %d) and %d registers: %.300s", kernels,
             expected, j->registers, report);
    return;
  }
  j->ok = 1;
}

static void *worker(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&lock);
    int i = next_job < job_count_total ? next_job++ : -1;
    pthread_mutex_unlock(&lock);
    if (i < 0) return NULL;
    run_job(&jobs[i]);
    pthread_mutex_lock(&lock);
    printf("%s: %s", jobs[i].ok ? "ok" : "FAIL", jobs[i].name);
    if (jobs[i].ok)
      printf(" (%d registers, %zu B shared, %.1f s)\n", jobs[i].registers, jobs[i].shared, jobs[i].seconds);
    else
      printf("\n  %s\n", jobs[i].message);
    fflush(stdout);
    pthread_mutex_unlock(&lock);
  }
}

/* Every point of the space valid for key on arch; `slice` keeps only swizzled configs. fp16 and bf16
 * kernels differ only in the mma and cvt type names, so fp16 runs its defaults unless FJ_PTXAS_FULL. */
static int add_space(const char *arch, const attention_key *key, int slice) {
  jit_target target;
  if (jit_nvptx_target(arch, &target) != FJ_OK) return 0;
  int added = 0, index[KERNEL_MAX_PARAMS] = {0};
  for (;;) {
    kernel_config config;
    memset(&config, 0, sizeof config);
    for (int p = 0; p < family->num_params; p++) config.values[p] = family->params[p].values[index[p]];
    char why[256];
    int keep = family->config_valid(key, &target, &config, why, sizeof why);
    if (keep && slice) {
      for (int p = 0; p < family->num_params; p++)
        if (strcmp(family->params[p].name, "swizzle") == 0 && config.values[p] == 0) keep = 0;
    }
    if (keep) {
      add_job(arch, key, &config, "space");
      added++;
    }
    int p = 0;
    while (p < family->num_params && ++index[p] == family->params[p].num_values) index[p++] = 0;
    if (p == family->num_params) break;
  }
  return added;
}

static void add_default(const char *arch, const attention_key *key) {
  jit_target target;
  if (jit_nvptx_target(arch, &target) != FJ_OK) return;
  kernel_config config;
  family->default_config(key, &target, &config);
  add_job(arch, key, &config, "default");
}

int main(void) {
  ptxas = find_ptxas();
  if (!ptxas) {
    printf("SKIP: no ptxas (set FJ_PTXAS, install CUDA at /usr/local/cuda, or put ptxas on PATH)\n");
    return 77;
  }
  family = kernel_family_for_backend("cuda");
  if (!family) {
    printf("FAIL: no kernel family for backend cuda\n");
    return 1;
  }
  dump_dir = getenv("FJ_PTXAS_DUMP");
  int full = getenv("FJ_PTXAS_FULL") && atoi(getenv("FJ_PTXAS_FULL"));
  /* the head dims whose whole space is assembled: 64 and 128, or FJ_PTXAS_DIMS (e.g. "80,96,256") */
  int space_dims[16] = {64, 128}, space_dim_count = 2;
  const char *dims_env = getenv("FJ_PTXAS_DIMS");
  if (dims_env && *dims_env) {
    space_dim_count = 0;
    for (const char *p = dims_env; *p && space_dim_count < 16;) {
      char *end;
      long d = strtol(p, &end, 10);
      if (end == p || d < 8 || d > CORE_HEAD_DIM_MAX) {
        printf("FAIL: FJ_PTXAS_DIMS='%s': expected head dims in [8, %d] separated by commas\n", dims_env, CORE_HEAD_DIM_MAX);
        return 1;
      }
      space_dims[space_dim_count++] = (int)d;
      p = *end == ',' ? end + 1 : end;
    }
  }
  /* FJ_PTXAS_STRIDED=1: the spaces for tensors whose head dim is strided (the synchronous load path) */
  int strided = getenv("FJ_PTXAS_STRIDED") && atoi(getenv("FJ_PTXAS_STRIDED"));
  varlen_spaces = getenv("FJ_PTXAS_VARLEN") && atoi(getenv("FJ_PTXAS_VARLEN"));
  page_spaces = getenv("FJ_PTXAS_PAGE") ? atoi(getenv("FJ_PTXAS_PAGE")) : 0;
  window_spaces = getenv("FJ_PTXAS_WINDOW") && atoi(getenv("FJ_PTXAS_WINDOW"));
  ragged_spaces = getenv("FJ_PTXAS_RAGGED") && atoi(getenv("FJ_PTXAS_RAGGED"));
  sinks_spaces = getenv("FJ_PTXAS_SINKS") && atoi(getenv("FJ_PTXAS_SINKS"));
  softcap_spaces = getenv("FJ_PTXAS_SOFTCAP") && atoi(getenv("FJ_PTXAS_SOFTCAP"));
  int packed_k_spaces = getenv("FJ_PTXAS_PACKED_K") && atoi(getenv("FJ_PTXAS_PACKED_K"));
  int alibi_spaces = getenv("FJ_PTXAS_ALIBI") && atoi(getenv("FJ_PTXAS_ALIBI"));
  /* 1: an fp32 additive bias, 2: one of the dtype; plus 4: its keys strided */
  int bias_spaces = getenv("FJ_PTXAS_BIAS") ? atoi(getenv("FJ_PTXAS_BIAS")) : 0;
  int fp8_spaces = getenv("FJ_PTXAS_FP8") && atoi(getenv("FJ_PTXAS_FP8"));
  int decode_spaces = getenv("FJ_PTXAS_DECODE") && atoi(getenv("FJ_PTXAS_DECODE"));
  int dv_spaces = getenv("FJ_PTXAS_DV") ? atoi(getenv("FJ_PTXAS_DV")) : 0;
  if (page_spaces < 0) page_spaces = 0;
  if (dv_spaces != 0 && !core_head_dim_valid(dv_spaces)) {
    printf("FAIL: FJ_PTXAS_DV=%d: expected a multiple of 8 in [8, %d]\n", dv_spaces, CORE_HEAD_DIM_MAX);
    return 1;
  }
  const char *archs[] = {"sm_80", "sm_90a"};
  int space = 0;
  for (int a = 0; a < 2; a++) {
    for (int i = 0; i < space_dim_count; i++) {
      attention_key bf16 = make_key(DTYPE_BF16, space_dims[i], 0, 0, !strided);
      attention_key fp16 = make_key(DTYPE_F16, space_dims[i], 0, 0, !strided);
      bf16.varlen = fp16.varlen = varlen_spaces;
      bf16.page_size = fp16.page_size = page_spaces;
      if (decode_spaces) bf16.seqlen_bucket = fp16.seqlen_bucket = 0;
      if (window_spaces) bf16.window = fp16.window = bf16.causal = fp16.causal = 1;
      if (ragged_spaces) bf16.varlen_q = fp16.varlen_q = bf16.causal = fp16.causal = 1;
      if (sinks_spaces) bf16.sinks = fp16.sinks = bf16.causal = fp16.causal = 1;
      if (softcap_spaces) bf16.softcap = fp16.softcap = bf16.causal = fp16.causal = 1;
      if (packed_k_spaces) bf16.varlen = fp16.varlen = bf16.varlen_k = fp16.varlen_k = bf16.causal = fp16.causal = 1;
      if (alibi_spaces) bf16.alibi = fp16.alibi = bf16.causal = fp16.causal = 1;
      if (bias_spaces & KEY_BIAS_DTYPE_MASK)
        bf16.bias = fp16.bias = bias_spaces, bf16.causal = fp16.causal = 1;
      if (fp8_spaces) bf16.causal = fp16.causal = 1, bf16.kv_fp8 = fp16.kv_fp8 = DTYPE_E4M3;
      if (dv_spaces && dv_spaces != space_dims[i]) {
        bf16.causal = fp16.causal = 1;
        bf16.head_dim_v = fp16.head_dim_v = dv_spaces;
      }
      space += add_space(archs[a], &bf16, 0);
      if (full) space += add_space(archs[a], &fp16, 0);
    }
    if (!strided && strcmp(archs[a], "sm_90a") == 0) {
      attention_key strided_d128 = make_key(DTYPE_BF16, 128, 0, 0, 0);
      space += add_space(archs[a], &strided_d128, 0);
    }
    int dims[] = {64, 80, 96, 128, 256, 72};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
      for (int dtype = DTYPE_F16; dtype <= DTYPE_BF16; dtype++) {
        attention_key key = make_key((dtype_id)dtype, dims[i], 0, 0, 1);
        add_default(archs[a], &key);
        if (dims[i] == 64 || dims[i] == 128 || dims[i] == 256) {
          key = make_key((dtype_id)dtype, dims[i], 1, 0, 1);
          add_default(archs[a], &key);
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          add_default(archs[a], &key);
          key = make_key((dtype_id)dtype, dims[i], 0, 1, 0);
          add_default(archs[a], &key);
          /* a decode step (split_kv: its module holds the combine kernel too) */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.seqlen_bucket = 0;
          add_default(archs[a], &key);
          /* varlen (seqlens_kv): causal prefill and decode */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.varlen = 1;
          add_default(archs[a], &key);
          key.seqlen_bucket = 0;
          add_default(archs[a], &key);
          /* a paged cache (block_table, pages of 16 keys): decode, then causal prefill, with
           * seqlens_kv and without */
          key.page_size = 16;
          add_default(archs[a], &key);
          key.seqlen_bucket = 12;
          add_default(archs[a], &key);
          key.varlen = 0;
          add_default(archs[a], &key);
          /* a sliding window (causal): prefill, and a decode step over a paged varlen cache */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.window = 1;
          add_default(archs[a], &key);
          key.seqlen_bucket = 0;
          key.varlen = 1;
          key.page_size = 16;
          add_default(archs[a], &key);
          /* ragged queries (cu_seqlens_q): causal prefill, and an engine's decode step over a paged
           * varlen cache */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.varlen_q = 1;
          add_default(archs[a], &key);
          key.seqlen_bucket = 0;
          key.varlen = 1;
          key.page_size = 16;
          add_default(archs[a], &key);
          /* attention sinks (gpt-oss): causal prefill, and a decode step of a windowed layer over a
           * paged varlen cache (split: the combine kernel adds the sinks) */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.sinks = 1;
          add_default(archs[a], &key);
          key.seqlen_bucket = 0;
          key.window = 1;
          key.varlen = 1;
          key.page_size = 16;
          add_default(archs[a], &key);
          /* packed keys (cu_seqlens_k): flash_attn_varlen_func's causal prefill with ragged queries, and
           * a decode step (split) */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.varlen = key.varlen_k = key.varlen_q = 1;
          add_default(archs[a], &key);
          key.varlen_q = 0;
          key.seqlen_bucket = 0;
          add_default(archs[a], &key);
          /* ALiBi (BLOOM, MPT): causal prefill, and a decode step over a varlen cache (split) */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.alibi = 1;
          add_default(archs[a], &key);
          key.seqlen_bucket = 0;
          key.varlen = 1;
          add_default(archs[a], &key);
          /* an additive bias (SDPA's attn_mask): an fp32 one in a causal prefill (and with strided keys), and one
           * of the dtype in a decode step over a paged varlen cache (split) */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.bias = KEY_BIAS_F32;
          add_default(archs[a], &key);
          key.bias = KEY_BIAS_F32 | KEY_BIAS_STRIDED_KEYS;  /* keys not consecutive: no constant offsets */
          add_default(archs[a], &key);
          key.bias = KEY_BIAS_DTYPE;
          key.seqlen_bucket = 0;
          key.varlen = 1;
          key.page_size = 16;
          add_default(archs[a], &key);
          /* logit soft-capping (Gemma 2): causal prefill, and a decode step of a windowed layer (split) */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.softcap = 1;
          add_default(archs[a], &key);
          key.seqlen_bucket = 0;
          key.window = 1;
          add_default(archs[a], &key);
          /* fp8 KV caches (E4M3 and E5M2, converted as the tiles are copied): causal prefill, and a decode
           * step over a paged varlen cache (split) */
          key = make_key((dtype_id)dtype, dims[i], 1, 1, 1);
          key.kv_fp8 = DTYPE_E4M3;
          add_default(archs[a], &key);
          key.kv_fp8 = DTYPE_E5M2;
          key.seqlen_bucket = 0;
          key.varlen = 1;
          key.page_size = 16;
          add_default(archs[a], &key);
        }
      }
    /* v with a head dim of its own: DeepSeek's MLA prefill (q and k 192, v 128) causal with the LSE and
     * not causal, and a decode step over a paged varlen cache (split: the parts and the combine as wide
     * as V); v wider than k (64 and 128), causal */
    for (int dtype = DTYPE_F16; dtype <= DTYPE_BF16; dtype++) {
      attention_key key = make_key((dtype_id)dtype, 192, 1, 1, 1);
      key.head_dim_v = 128;
      add_default(archs[a], &key);
      key.causal = key.has_lse = 0;
      add_default(archs[a], &key);
      key.causal = key.has_lse = key.varlen = 1;
      key.seqlen_bucket = 0;
      key.page_size = 16;
      add_default(archs[a], &key);
      key = make_key((dtype_id)dtype, 64, 1, 1, 1);
      key.head_dim_v = 128;
      add_default(archs[a], &key);
      /* MLA's absorbed decode (q and k 576, v 512, every query head on one KV head: O's columns split
       * over warps, o_split): a decode step over a paged varlen cache (split, the combine 512 wide),
       * and a causal prefill of the same heads */
      key = make_key((dtype_id)dtype, 576, 1, 1, 1);
      key.head_dim_v = 512;
      key.heads = 128;
      key.kv_heads = 1;
      key.seqlen_bucket = 0;
      key.varlen = 1;
      key.page_size = 64;
      add_default(archs[a], &key);
      key.bias = KEY_BIAS_DTYPE;  /* and with a bias (a padding mask) beside its 512-wide O */
      add_default(archs[a], &key);
      key.bias = 0;
      key.seqlen_bucket = 12;
      key.varlen = 0;
      key.page_size = 0;
      add_default(archs[a], &key);
    }
  }
  const char *only = getenv("FJ_PTXAS_ONLY");
  if (only && *only) {
    int kept = 0;
    for (int i = 0; i < job_count_total; i++)
      if (strstr(jobs[i].name, only)) jobs[kept++] = jobs[i];
    job_count_total = kept;
  }
  int threads = getenv("FJ_PTXAS_JOBS") ? atoi(getenv("FJ_PTXAS_JOBS")) : 2;
  if (threads < 1) threads = 1;
  if (threads > 16) threads = 16;
  printf("ptxas: %s; %d jobs (%d from the search space), %d at a time\n", ptxas, job_count_total, space, threads);
  fflush(stdout);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pthread_t tid[16];
  for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, worker, NULL);
  for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  int failed = 0, max_registers = 0;
  for (int i = 0; i < job_count_total; i++) {
    if (!jobs[i].ok) failed++;
    if (jobs[i].registers > max_registers) max_registers = jobs[i].registers;
  }
  printf("%d of %d jobs passed; most registers %d; %.1f s\n", job_count_total - failed, job_count_total,
         max_registers, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  free(jobs);
  return failed ? 1 : 0;
}
