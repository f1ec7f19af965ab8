/* cmd_bench.c: `flashjit bench`: times the attention forward for one shape on one device (or, with
 * --grid, for every point of a grid: bench_grid.c). It builds the kernel first (reporting how: compiled
 * or loaded from the disk cache, and how long that took), makes the inputs on the host and copies them
 * to the device (on the CPU the host memory is used as it is), then times warmup + repeat calls, each
 * by the backend's timer (events around the launch on a GPU) or the wall clock, and reports the median
 * and the minimum; --check copies the output (and the LSE) back and compares it with the float64
 * reference, and times that naive reference too, as a sanity scale. Every flag is checked before
 * anything is allocated, so a bad invocation is one line on stderr, never a crash. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "bench/bench.h"
#include "bench/cli.h"
#include "bench/json.h"
#include "core/dtype.h"
#include "core/host_tensor.h"
#include "core/problem.h"
#include "core/reference.h"
#include "core/threadpool.h"
#include "flashjit.h"
#include "kernels/kernel_family.h"
#include "runtime/runtime.h"
#include "tuner/tune_device.h"

#define BENCH_MAX_HOST_BYTES (16.0 * 1024 * 1024 * 1024)
#define BENCH_GIB (1024.0 * 1024.0 * 1024.0)

void cmd_bench_help(FILE *out) {
  fprintf(out,
          "usage: flashjit bench [options]\n"
          "\n"
          "Times the attention forward o = softmax(q k^T / sqrt(d)) v for one shape on one device:\n"
          "the kernel is built first (compiled, or loaded from the disk cache), then timed over\n"
          "--warmup + --repeat calls; the median and the minimum are reported, and from the median\n"
          "GFLOP/s and GB/s (the bytes of q, k, v, o and the LSE, each moved once: the figure of a\n"
          "decode step, which reads a long K/V cache for a few queries).\n"
          "\n"
          "  --device NAME        auto (the best device found), cpu, cuda:N, hip:N; default\n"
          "                       FLASHJIT_DEVICE, else auto. all (every device found) or a comma\n"
          "                       list (cpu,cuda:0): the shape on each in turn, then a table of\n"
          "                       them side by side (--json: an array of their objects)\n"
          "  --batch N            default 1\n"
          "  --heads N            query heads, default 8\n"
          "  --kv-heads N         key/value heads (GQA/MQA), default = --heads; must divide --heads\n"
          "  --seqlen N           query length, default 2048\n"
          "  --seqlen-kv N        key/value length, default = --seqlen\n"
          "  --head-dim N         a multiple of 8 from 8 to 576, default 128\n"
          "  --head-dim-v N       v's and o's head dim, where it differs (DeepSeek's MLA prefill:\n"
          "                       --head-dim 192 --head-dim-v 128); default --head-dim's; no peer\n"
          "                       takes it\n"
          "  --page-size N        k and v as a paged cache (block_table): every sequence's\n"
          "                       ceil(seqlen-kv / N) pages of N keys, shuffled in one pool (peers\n"
          "                       run the same shape unpaged)\n"
          "  --dtype T            fp32, fp16 or bf16 (default)\n"
          "  --causal             causal mask aligned to the bottom-right corner\n"
          "  --window-left N      sliding window: each query sees its diagonal key and the N keys\n"
          "                       before it (a model's sliding_window - 1); -1 (default) no limit\n"
          "  --window-right N     and at most N keys after its diagonal; -1 (default) no limit\n"
          "                       (with --causal, 0); no peer takes a window\n"
          "  --varlen-q           the call gives cu_seqlens_q: the sequences' queries packed end to\n"
          "                       end (q and o [batch x seqlen, heads, head_dim]), as an engine's\n"
          "                       prefill step gives them; every sequence --seqlen of them; no peer\n"
          "                       takes them\n"
          "  --seqlens-q L        ragged queries of these lengths, e.g. 1024,256,512 (--varlen-q\n"
          "                       with the batch and the longest --seqlen from the list); without\n"
          "                       --seqlen-kv each sequence attends to as many keys as it has\n"
          "                       queries (a prefill of prompts of different lengths, seqlens_kv)\n"
          "  --packed-kv          the call gives cu_seqlens_k: the sequences' keys and values packed end\n"
          "                       to end (k and v [total_k, kv_heads, head_dim]), as\n"
          "                       flash_attn_varlen_func takes them: every sequence --seqlen-kv keys,\n"
          "                       or with --seqlens-q and no --seqlen-kv as many as its queries; not\n"
          "                       with --page-size; no peer takes them\n"
          "  --kv-dtype T         k and v as an fp8 KV cache: fp8_e4m3 or fp8_e5m2 (scales 1);\n"
          "                       default --dtype's; no peer takes it\n"
          "  --alibi              ALiBi (BLOOM, MPT) with BLOOM's slopes 2^(-8 (h + 1) / heads): each\n"
          "                       score less slope x its key's distance from the query's diagonal;\n"
          "                       no peer takes it\n"
          "  --attn-bias T        an additive bias of the scores (SDPA's attn_mask), [batch, 1, seqlen_q,\n"
          "                       seqlen_kv] (shared by the heads) of dtype T, fp32 or --dtype's: values\n"
          "                       from -2 to 2, and -inf for every key past a query's diagonal\n"
          "                       (a causal mask by bias); the peers get the same in q's dtype\n"
          "                       (SDPA's attn_mask; not the Triton kernel)\n"
          "  --sinks              attention sinks (gpt-oss): one logit per head in every row's\n"
          "                       softmax sum (from -1 to 1); no peer takes them\n"
          "  --softcap X          logit soft-capping (Gemma 2's 50): scores become X tanh(score / X);\n"
          "                       0 (default) none; no peer takes it\n"
          "  --check              compare o and the LSE with the float64 reference; exit 1 when the\n"
          "                       error is over the dtype's bound; also times the naive reference\n"
          "  --kv-split-keys N    cut each sequence's keys into parts of N whatever the batch (the\n"
          "                       results then batch-invariant); -1 never; 0 (default) the library's\n"
          "  --no-split-kv        give the calls no workspace: a GPU launch that would cut each\n"
          "                       sequence's keys over more blocks (a decode step) does not (the\n"
          "                       CPU still does, into memory of its own)\n"
          "  --json               one JSON object instead of text\n"
          "  --warmup N           untimed calls before timing, default 2\n"
          "  --repeat N           timed calls, default 10\n"
          "  --config \"K=V ...\"   run this kernel config instead of the tuned or default one,\n"
          "                       e.g. the config string a previous run printed\n"
          "  --threads N          CPU worker threads, default 0 = one per core\n"
          "  --cache-dir DIR      compiled kernels; default FLASHJIT_CACHE_DIR or ~/.cache/flashjit\n"
          "  --peers              also measure the peers in the same run with bench/peers/peers.py and\n"
          "                       give their time, rate and the ratio flashjit / peer (above 1:\n"
          "                       flashjit faster). On CUDA: PyTorch SDPA (flash, cuDNN,\n"
          "                       memory-efficient backends) and a Triton FlashAttention-2; on the CPU:\n"
          "                       PyTorch SDPA (torch >= 2.0), else PyTorch eager attention, on\n"
          "                       --threads threads. Without python3 or torch they say n/a and why\n"
          "  --peer-list NAMES    only these peers (implies --peers), e.g. sdpa-flash,sdpa-cudnn; of\n"
          "                       sdpa-flash, sdpa-cudnn, sdpa-efficient, triton-fa2 (CUDA), torch-sdpa,\n"
          "                       torch-eager (CPU)\n"
          "  --peers-script PATH  the peers script; default FLASHJIT_PEERS_SCRIPT, else found beside\n"
          "                       this program's build or install folder\n"
          "\n"
          "On a GPU the inputs are made on the host and copied to device memory, each call is timed\n"
          "with device events around the launch, and --check copies the output back.\n"
          "\n"
          "grid mode: flashjit bench --grid prefill [--peers] [--dtype fp16,bf16] [--json | --csv]\n"
          "  --grid prefill       every point of the prefill grid: dtypes fp16 and bf16, head dims 64\n"
          "                       and 128, causal and not, seqlen 512 ... 16384 with batch = tokens /\n"
          "                       seqlen and heads = width / head_dim; one table of TFLOP/s, where a\n"
          "                       forward counts 4*b*h*sq*skv*d FLOP, halved when causal (the\n"
          "                       FlashAttention convention, the peers' too)\n"
          "  --tokens N           batch * seqlen, default 16384 (seqlens above it are left out)\n"
          "  --width N            heads * head_dim, default 2048\n"
          "  --seqlens L          only these seqlens, e.g. 512,1024 (each must divide --tokens)\n"
          "  --head-dims L        only these head dims, e.g. 128\n"
          "  --dtype L            a comma list of dtypes, default fp16,bf16\n"
          "  --mask M             both (default), causal or none\n"
          "  --peers              the peers (as above) on every point, as TFLOP/s and ratio columns\n"
          "  --csv                one CSV row per point instead of the table\n"
          "  --baseline FILE      an earlier run's --json output (one device's grid, or the first of\n"
          "                       --device all's): each point's rate there and the ratio here / there\n"
          "                       beside flashjit's (another machine's GPU, or the last commit)\n"
          "  --plot FILE.svg      also draw the grid into an SVG file: a panel per dtype, head dim\n"
          "                       and mask (decode: and batch), rate against length, a line per\n"
          "                       device and peer\n"
          "  --device all|L       the grid on every device found, or on each of a comma list, then\n"
          "                       each point's rate on every device side by side, as a ratio to the\n"
          "                       first device's (--csv: device_id and device columns first; --json:\n"
          "                       an array of the devices' grids)\n"
          "  --grid decode        decode steps (one query per sequence) against a KV cache: batch 1, 8,\n"
          "                       32, 128 x cache length 1024 ... 65536, as far as batch * length <=\n"
          "                       --tokens (default 262144 here), heads = width / head_dim (--width\n"
          "                       default 4096 here: Llama-3-8B's 32 heads of 128) in KV heads of 4,\n"
          "                       bf16 unless --dtype; GB/s of q, k, v and o once beside TFLOP/s\n"
          "  --batches L          the decode grid's batches only, e.g. 1,64\n"
          "                       (--seqlens: its cache lengths, any)\n"
          "\n"
          "exit status: 0 done (and checked, with --check), 1 failed or over the error bound, 2 bad usage\n");
}

/* A problem's tensors and the path it runs through. */
typedef struct bench_run {
  fj_context *context;
  host_tensor q, k, v, o, lse;   /* the host side: inputs made here, outputs checked here */
  tune_mirror dq, dk, dv, dout, dlse;  /* their twins on the device (the same memory on the CPU) */
  host_tensor table, lens;       /* --page-size: the block table, and seqlens_kv where the pages
                                  * hold more keys than --seqlen-kv */
  tune_mirror dtable, dlens;
  host_tensor cu;                /* --varlen-q: cu_seqlens_q, and its device twin */
  tune_mirror dcu;
  host_tensor cu_k;              /* --packed-kv: cu_seqlens_k, and its device twin */
  tune_mirror dcu_k;
  host_tensor sinks;             /* --sinks: the heads' logits, and their device twin */
  tune_mirror dsinks;
  host_tensor slopes;            /* --alibi: the heads' slopes, and their device twin */
  tune_mirror dslopes;
  host_tensor bias;              /* --attn-bias: the additive bias, and its device twin */
  tune_mirror dbias;
  host_tensor work;              /* split-KV: the workspace (zeros), and its device twin as uint8 bytes */
  tune_mirror dwork;
  DLTensor workspace;
  int64_t workspace_shape[1];
  fj_attention_args args;        /* on the device tensors */
  attention_problem problem;     /* validated from args: what is launched */
  attention_problem host_problem;  /* the same call on the host tensors: what the check reads */
  const kernel_config *config;  /* NULL: the public fj_attention_forward path */
  runtime_kernel *kernel;
} bench_run;

static double bench_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int bench_compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* "--batch=1 --heads=8 ...": names every flag that sizes the problem, for messages about its size. */
static void bench_shape_flags(const bench_options *o, char *buffer, size_t size) {
  snprintf(buffer, size,
           "--batch=%" PRId64 " --heads=%" PRId64 " --kv-heads=%" PRId64 " --seqlen=%" PRId64
           " --seqlen-kv=%" PRId64 " --head-dim=%" PRId64 " --dtype=%s",
           o->batch, o->heads, o->kv_heads, o->seqlen, o->seqlen_kv, o->head_dim,
           core_dtype_name(o->dtype));
  size_t used = strlen(buffer);
  if (o->head_dim_v != o->head_dim && used < size)
    snprintf(buffer + used, size - used, " --head-dim-v=%" PRId64, o->head_dim_v);
  used = strlen(buffer);
  if (o->kv_dtype != o->dtype && used < size)
    snprintf(buffer + used, size - used, " --kv-dtype=%s", core_dtype_name(o->kv_dtype));
}

/* Host bytes the run needs: q, k, v, o (+ the LSE and the float64 reference with --check). In double
 * so that absurd sizes are compared, not overflowed. */
static double bench_host_bytes(const bench_options *o) {
  double elem = core_dtype_size(o->dtype);
  double d = (double)o->head_dim, dv = (double)o->head_dim_v;
  double q_rows = (double)o->batch * (double)o->seqlen * (double)o->heads;
  double kv_rows = (double)o->batch * (double)o->seqlen_kv * (double)o->kv_heads;
  double bytes = q_rows * (d + dv) * elem + kv_rows * (d + dv) * core_dtype_size(o->kv_dtype);
  if (o->check) bytes += q_rows * 4.0 + q_rows * dv * 8.0 + q_rows * 8.0;
  return bytes;
}

static double bench_memory_limit(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  double limit = BENCH_MAX_HOST_BYTES;
  if (pages > 0 && page > 0 && 0.75 * (double)pages * (double)page < limit)
    limit = 0.75 * (double)pages * (double)page;
  return limit;
}

/* --seqlens-q: the comma list into query_counts; batch, seqlen (the longest) and varlen_q follow. 0, or
 * -1 after the error. */
static int bench_parse_query_counts(bench_options *o) {
  const char *p = o->seqlens_q;
  int64_t total = 0;
  o->batch = 0;
  o->seqlen = 0;
  for (;;) {
    size_t n = strcspn(p, ",");
    char item[32];
    const char *why = "not an integer";
    int64_t value = 0;
    if (n == 0 || n >= sizeof item || o->batch >= BENCH_MAX_SEQUENCES) {
      cli_error(BENCH_COMMAND, "--seqlens-q=%s: %s", o->seqlens_q,
                o->batch >= BENCH_MAX_SEQUENCES ? "more than 4096 sequences" : "expected a comma list of integers");
      return -1;
    }
    memcpy(item, p, n);
    item[n] = '\0';
    if (cli_parse_int64(item, &value, &why) != 0 || value < 0 || value > INT32_MAX) {
      cli_error(BENCH_COMMAND, "--seqlens-q=%s: '%s': %s", o->seqlens_q, item,
                value < 0 || value > INT32_MAX ? "must be from 0 to 2147483647" : why);
      return -1;
    }
    o->query_counts[o->batch++] = (int32_t)value;
    total += value;
    if (value > o->seqlen) o->seqlen = value;
    p += n;
    if (*p == '\0') break;
    p++;
  }
  if (o->seqlen == 0 || total > INT32_MAX) {
    cli_error(BENCH_COMMAND, "--seqlens-q=%s: %s", o->seqlens_q,
              o->seqlen == 0 ? "no sequence has a query: nothing to time"
                             : "more than 2147483647 queries in all (cu_seqlens_q is int32)");
    return -1;
  }
  o->varlen_q = 1;
  return 0;
}

/* Parses and checks every flag; CLI_EXIT_OK, or the exit code after printing the error (-1 for help). */
static int bench_parse(int argc, char **argv, bench_options *o) {
  memset(o, 0, sizeof *o);
  int seen_batch = 0, seen_heads = 0, seen_seqlen = 0, seen_head_dim = 0, seen_causal = 0, seen_page_size = 0;
  o->tokens = 16384;
  o->width = 2048;
  o->batch = 1;
  o->heads = 8;
  o->seqlen = 2048;
  o->head_dim = 128;
  o->dtype_name = "bf16";
  o->warmup = 2;
  o->repeat = 10;
  o->window_left = o->window_right = -1;
  int seen_window_left = 0, seen_window_right = 0, seen_varlen_q = 0, seen_head_dim_v = 0;
  const cli_option options[] = {
      {"--device", CLI_STRING, &o->device, 0, 0, NULL},
      {"--batch", CLI_INT, &o->batch, 1, INT32_MAX, &seen_batch},
      {"--heads", CLI_INT, &o->heads, 1, INT32_MAX, &seen_heads},
      {"--kv-heads", CLI_INT, &o->kv_heads, 1, INT32_MAX, &o->kv_heads_set},
      {"--seqlen", CLI_INT, &o->seqlen, 1, INT32_MAX, &seen_seqlen},
      {"--seqlen-kv", CLI_INT, &o->seqlen_kv, 0, INT32_MAX, &o->seqlen_kv_set},
      /* checked below, so that any out-of-range value gets the message that states the rule */
      {"--head-dim", CLI_INT, &o->head_dim, INT64_MIN, INT64_MAX, &seen_head_dim},
      {"--head-dim-v", CLI_INT, &o->head_dim_v, INT64_MIN, INT64_MAX, &seen_head_dim_v},
      {"--page-size", CLI_INT, &o->page_size, 1, INT32_MAX, &seen_page_size},
      {"--dtype", CLI_STRING, &o->dtype_name, 0, 0, &o->dtype_set},
      {"--causal", CLI_FLAG, &o->causal, 0, 0, &seen_causal},
      {"--window-left", CLI_INT, &o->window_left, -1, INT32_MAX, &seen_window_left},
      {"--window-right", CLI_INT, &o->window_right, -1, INT32_MAX, &seen_window_right},
      {"--varlen-q", CLI_FLAG, &o->varlen_q, 0, 0, &seen_varlen_q},
      {"--seqlens-q", CLI_STRING, &o->seqlens_q, 0, 0, NULL},
      {"--packed-kv", CLI_FLAG, &o->packed_kv, 0, 0, NULL},
      {"--sinks", CLI_FLAG, &o->sinks, 0, 0, NULL},
      {"--alibi", CLI_FLAG, &o->alibi, 0, 0, NULL},
      {"--attn-bias", CLI_STRING, &o->attn_bias_name, 0, 0, NULL},
      {"--kv-dtype", CLI_STRING, &o->kv_dtype_name, 0, 0, NULL},
      {"--softcap", CLI_FLOAT, &o->softcap, 0, INT32_MAX, NULL},
      {"--check", CLI_FLAG, &o->check, 0, 0, NULL},
      {"--no-split-kv", CLI_FLAG, &o->no_split_kv, 0, 0, NULL},
      {"--kv-split-keys", CLI_INT, &o->kv_split_keys, -1, INT32_MAX, NULL},
      {"--json", CLI_FLAG, &o->json, 0, 0, NULL},
      {"--warmup", CLI_INT, &o->warmup, 0, 1000000, &o->warmup_set},
      {"--repeat", CLI_INT, &o->repeat, 1, 1000000, &o->repeat_set},
      {"--grid", CLI_STRING, &o->grid, 0, 0, NULL},
      {"--tokens", CLI_INT, &o->tokens, 1, INT32_MAX, &o->tokens_set},
      {"--width", CLI_INT, &o->width, 1, 1 << 20, &o->width_set},
      {"--seqlens", CLI_STRING, &o->seqlens, 0, 0, NULL},
      {"--batches", CLI_STRING, &o->batches, 0, 0, NULL},
      {"--head-dims", CLI_STRING, &o->head_dims, 0, 0, NULL},
      {"--mask", CLI_STRING, &o->mask, 0, 0, NULL},
      {"--peers", CLI_FLAG, &o->peers, 0, 0, NULL},
      {"--peers-script", CLI_STRING, &o->peers_script, 0, 0, NULL},
      {"--peer-list", CLI_STRING, &o->peer_list, 0, 0, NULL},
      {"--csv", CLI_FLAG, &o->csv, 0, 0, NULL},
      {"--plot", CLI_STRING, &o->plot, 0, 0, NULL},
      {"--baseline", CLI_STRING, &o->baseline, 0, 0, NULL},
      {"--config", CLI_STRING, &o->config, 0, 0, &o->config_set},
      {"--threads", CLI_INT, &o->threads, 0, 4096, NULL},
      {"--cache-dir", CLI_STRING, &o->cache_dir, 0, 0, NULL},
  };
  switch (cli_parse(BENCH_COMMAND, argc, argv, options, (int)(sizeof options / sizeof options[0]))) {
    case CLI_PARSE_HELP: return -1;
    case CLI_PARSE_ERROR: return CLI_EXIT_USAGE;
    case CLI_PARSE_OK: break;
  }
  if (o->seqlens_q != NULL) {
    if (seen_batch || seen_seqlen) {
      cli_error(BENCH_COMMAND, "--seqlens-q=%s with %s: the list gives the batch and the longest sequence", o->seqlens_q,
                seen_batch ? "--batch" : "--seqlen");
      return CLI_EXIT_USAGE;
    }
    if (bench_parse_query_counts(o) != 0) return CLI_EXIT_USAGE;
    seen_varlen_q = 1;
  }
  if (!o->kv_heads_set) o->kv_heads = o->heads;
  if (!o->seqlen_kv_set) o->seqlen_kv = o->seqlen;
  o->shape_flags = seen_batch || seen_heads || seen_seqlen || seen_head_dim || seen_causal || o->kv_heads_set ||
                   o->seqlen_kv_set || seen_page_size || seen_window_left || seen_window_right || seen_varlen_q ||
                   o->sinks || o->softcap != 0.0f || o->packed_kv || o->alibi || o->attn_bias_name != NULL ||
                   o->kv_dtype_name != NULL ||
                   seen_head_dim_v;
  if (o->packed_kv && seen_page_size) {
    cli_error(BENCH_COMMAND, "--packed-kv with --page-size: packed keys are rows of k and v, a paged cache pages of "
              "them; give one");
    return CLI_EXIT_USAGE;
  }
  o->windowed = seen_window_left || seen_window_right;
  if (o->causal && o->window_right > 0) {
    cli_error(BENCH_COMMAND, "--window-right=%" PRId64 " with --causal: causal is --window-right=0", o->window_right);
    return CLI_EXIT_USAGE;
  }
  const char *env_device = getenv("FLASHJIT_DEVICE");
  if (o->device != NULL)
    snprintf(o->device_flag, sizeof o->device_flag, "--device=%s", o->device);
  else if (env_device != NULL && env_device[0] != '\0')
    snprintf(o->device_flag, sizeof o->device_flag, "FLASHJIT_DEVICE=%s", env_device);
  else
    snprintf(o->device_flag, sizeof o->device_flag, "--device=auto");
  o->device_auto = strcmp(o->device_flag + strcspn(o->device_flag, "=") + 1, "auto") == 0;
  if (o->device != NULL && o->device[0] == '\0') {
    cli_error(BENCH_COMMAND, "--device=: empty device name (auto, all, cpu, cuda:N, hip:N or a comma list)");
    return CLI_EXIT_USAGE;
  }
  {
    const char *spec = o->device != NULL ? o->device : env_device;
    if (spec != NULL && (strcmp(spec, "all") == 0 || strchr(spec, ',') != NULL)) {
      o->device_list = spec;
      o->device_auto = 0;
    }
  }
  if (o->cache_dir != NULL && o->cache_dir[0] == '\0') {
    cli_error(BENCH_COMMAND, "--cache-dir=: empty path");
    return CLI_EXIT_USAGE;
  }
  if (o->peer_list != NULL) {
    if (bench_peer_list_parse(o) != 0) return CLI_EXIT_USAGE;
    o->peers = 1;
  }
  if (o->peers && o->windowed) {
    cli_error(BENCH_COMMAND, "--peers with --window-left/--window-right: no peer takes a sliding window (PyTorch's "
              "SDPA backends and the Triton kernel here take none)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers && o->softcap != 0.0f) {
    cli_error(BENCH_COMMAND, "--peers with --softcap: no peer here takes logit soft-capping (PyTorch's SDPA backends "
              "and the Triton kernel here take none)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers && o->alibi) {
    cli_error(BENCH_COMMAND, "--peers with --alibi: no peer here takes ALiBi (PyTorch's SDPA backends and the Triton "
              "kernel here take none)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers && o->kv_dtype_name != NULL) {
    cli_error(BENCH_COMMAND, "--peers with --kv-dtype: no peer here takes an fp8 KV cache (PyTorch's SDPA backends and "
              "the Triton kernel here take q, k and v of one dtype)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers && seen_head_dim_v) {
    cli_error(BENCH_COMMAND, "--peers with --head-dim-v: no peer here takes v of its own head dim (the Triton kernel "
              "here and PyTorch's flash backend take one head dim)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers && o->sinks) {
    cli_error(BENCH_COMMAND, "--peers with --sinks: no peer here takes attention sinks (PyTorch's SDPA backends and "
              "the Triton kernel here take none)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers && o->packed_kv) {
    cli_error(BENCH_COMMAND, "--peers with --packed-kv: no peer here takes packed keys (PyTorch's SDPA takes "
              "padded batches; FlashAttention's varlen function is not installed)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers && o->varlen_q) {
    cli_error(BENCH_COMMAND, "--peers with --varlen-q: no peer here takes ragged queries (PyTorch's SDPA takes "
              "padded batches; FlashAttention's varlen function is not installed)");
    return CLI_EXIT_USAGE;
  }
  if (o->peers_script != NULL && !o->peers) {
    cli_error(BENCH_COMMAND, "--peers-script=%s: only with --peers", o->peers_script);
    return CLI_EXIT_USAGE;
  }
  if (o->peers_script != NULL && o->peers_script[0] == '\0') {
    cli_error(BENCH_COMMAND, "--peers-script=: empty path");
    return CLI_EXIT_USAGE;
  }
  if (o->grid != NULL) return bench_grid_parse(o);
  {
    /* The grid's own flags mean nothing for one shape: say so rather than ignore them. */
    const char *grid_only = o->seqlens ? "--seqlens" : o->head_dims ? "--head-dims" : o->mask ? "--mask"
                            : o->csv ? "--csv" : o->plot ? "--plot" : o->baseline ? "--baseline"
                            : o->batches ? "--batches" : o->tokens_set ? "--tokens"
                            : o->width_set ? "--width" : NULL;
    if (grid_only != NULL) {
      cli_error(BENCH_COMMAND, "%s: only with --grid (see flashjit help bench)", grid_only);
      return CLI_EXIT_USAGE;
    }
  }

  if (!core_dtype_parse(o->dtype_name, &o->dtype)) {
    cli_error(BENCH_COMMAND, "--dtype=%s: unknown dtype (fp32, fp16 or bf16)", o->dtype_name);
    return CLI_EXIT_USAGE;
  }
  o->kv_dtype = o->dtype;
  if (o->kv_dtype_name != NULL && !core_kv_dtype_parse_for(o->kv_dtype_name, o->dtype, &o->kv_dtype)) {
    cli_error(BENCH_COMMAND, "--kv-dtype=%s: fp8_e4m3 or fp8_e5m2 (an fp8 KV cache), or --dtype's %s", o->kv_dtype_name,
              core_dtype_name(o->dtype));
    return CLI_EXIT_USAGE;
  }
  o->attn_bias = o->attn_bias_name != NULL;
  if (o->attn_bias && (!core_dtype_parse(o->attn_bias_name, &o->attn_bias_dtype) ||
                       (o->attn_bias_dtype != DTYPE_F32 && o->attn_bias_dtype != o->dtype))) {
    cli_error(BENCH_COMMAND, "--attn-bias=%s: fp32 or --dtype's %s", o->attn_bias_name, core_dtype_name(o->dtype));
    return CLI_EXIT_USAGE;
  }
  if (!core_head_dim_valid(o->head_dim)) {
    cli_error(BENCH_COMMAND, "--head-dim=%" PRId64 ": must be a multiple of 8 from 8 to 576", o->head_dim);
    return CLI_EXIT_USAGE;
  }
  if (!seen_head_dim_v) o->head_dim_v = o->head_dim;
  if (!core_head_dim_valid(o->head_dim_v)) {
    cli_error(BENCH_COMMAND, "--head-dim-v=%" PRId64 ": must be a multiple of 8 from 8 to 576", o->head_dim_v);
    return CLI_EXIT_USAGE;
  }
  if (o->heads % o->kv_heads != 0) {
    cli_error(BENCH_COMMAND, "--heads=%" PRId64 " --kv-heads=%" PRId64 ": heads must be a multiple of kv-heads",
              o->heads, o->kv_heads);
    return CLI_EXIT_USAGE;
  }
  if (o->packed_kv && o->batch * o->seqlen_kv > INT32_MAX) {
    cli_error(BENCH_COMMAND, "--packed-kv: %" PRId64 " x %" PRId64 " keys; cu_seqlens_k's int32 offsets reach "
              "2147483647", o->batch, o->seqlen_kv);
    return CLI_EXIT_USAGE;
  }
  if (o->varlen_q && o->batch * o->seqlen > INT32_MAX) {
    cli_error(BENCH_COMMAND, "--varlen-q: %" PRId64 " x %" PRId64 " queries; cu_seqlens_q's int32 offsets reach "
              "2147483647", o->batch, o->seqlen);
    return CLI_EXIT_USAGE;
  }
  double bytes = bench_host_bytes(o), limit = bench_memory_limit();
  if (bytes > limit) {
    char shape[512];
    bench_shape_flags(o, shape, sizeof shape);
    cli_error(BENCH_COMMAND, "%s%s: needs %.1f GiB of host memory, over the limit of %.1f GiB", shape,
              o->check ? " --check" : "", bytes / BENCH_GIB, limit / BENCH_GIB);
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

/* One call of the kernel being measured. */
/* The call's scalars: --window-left / --window-right and --softcap */
static void bench_scalar_args(const bench_options *o, fj_attention_args *args) {
  args->windowed = o->windowed;
  args->window_left = o->window_left;
  args->window_right = o->window_right;
  args->softcap = o->softcap;
  args->kv_split_keys = o->kv_split_keys;
}

static fj_status bench_call(bench_run *run) {
  if (run->config == NULL) return fj_attention_forward(run->context, &run->args);
  return runtime_launch_attention(run->context, run->kernel, &run->problem, NULL);
}

/* Prints "flashjit bench: <what>: <status>: <fj_last_error()>". */
static int bench_fail(const char *what, fj_status status) {
  const char *detail = fj_last_error();
  cli_error(BENCH_COMMAND, "%s: %s%s%s", what, fj_status_string(status), detail[0] ? ": " : "", detail);
  return CLI_EXIT_FAILURE;
}

/* q, k, v allocated and filled from seed, o allocated and poisoned, all copied to the device. 0, or -1
 * after the error. */
/* --page-size: each sequence's pages, a shuffle of the pool, and where the pages hold more than
 * --seqlen-kv keys, seqlens_kv. */
static int bench_alloc_pages(const bench_options *o, bench_run *run) {
  int64_t per_sequence = (o->seqlen_kv + o->page_size - 1) / o->page_size;
  if (per_sequence < 1) per_sequence = 1;
  if (host_block_table_alloc(&run->table, o->batch, per_sequence) != 0) return -1;
  if (per_sequence * o->page_size == o->seqlen_kv) return 0;
  int64_t lens_shape[1] = {o->batch};
  if (host_tensor_alloc_int32(&run->lens, 1, lens_shape) != 0) return -1;
  int32_t *lens = run->lens.t.data;
  for (int64_t b = 0; b < o->batch; b++) lens[b] = (int32_t)o->seqlen_kv;
  return 0;
}

/* Points args (on the device twins, or on the host tensors) at the block table, the key counts and
 * the query offsets. */
static void bench_index_args(const bench_options *o, bench_run *run, fj_attention_args *args, int on_host) {
  if (run->cu.allocation != NULL) {
    args->cu_seqlens_q = on_host ? &run->cu.t : &run->dcu.t;
    args->max_seqlen_q = o->seqlen;
  }
  if (run->cu_k.allocation != NULL) {
    args->cu_seqlens_k = on_host ? &run->cu_k.t : &run->dcu_k.t;
    args->max_seqlen_k = o->seqlen_kv;
  }
  if (run->lens.allocation != NULL) args->seqlens_kv = on_host ? &run->lens.t : &run->dlens.t;
  if (run->table.allocation != NULL) args->block_table = on_host ? &run->table.t : &run->dtable.t;
  if (run->sinks.allocation != NULL) args->sinks = on_host ? &run->sinks.t : &run->dsinks.t;
  if (run->slopes.allocation != NULL) args->alibi_slopes = on_host ? &run->slopes.t : &run->dslopes.t;
  if (run->bias.allocation != NULL) args->attn_bias = on_host ? &run->bias.t : &run->dbias.t;
}

/* --attn-bias: [batch, 1, seqlen_q, seqlen_kv], values from -2 to 2 and -inf past each query's diagonal
 * (bottom-right aligned, as causal is), so that a row's keys are masked as a causal call's would be. */
/* The bias's keys: the call's seqlen_kv, which a paged cache rounds up to whole pages (bench_alloc's block table). */
static int64_t bench_bias_keys(const bench_options *o) {
  return o->page_size > 0 ? (o->seqlen_kv + o->page_size - 1) / o->page_size * o->page_size : o->seqlen_kv;
}

static int bench_bias_alloc(const bench_options *o, host_tensor *bias, uint64_t seed) {
  int64_t keys = bench_bias_keys(o);
  int64_t shape[4] = {o->batch, 1, o->seqlen, keys};
  if (host_tensor_alloc(bias, o->attn_bias_dtype, 4, shape, NULL) != 0) {
    cli_error(BENCH_COMMAND, "--attn-bias: cannot allocate attn_bias [%" PRId64 ", 1, %" PRId64 ", %" PRId64 "] of %s",
              o->batch, o->seqlen, keys, core_dtype_name(o->attn_bias_dtype));
    return -1;
  }
  host_tensor_fill_random(bias, seed ^ 0x5bd1e995u);
  for (int64_t b = 0; b < o->batch; b++)
    for (int64_t i = 0; i < o->seqlen; i++)
      for (int64_t j = i + keys - o->seqlen + 1; j < keys; j++)
        if (j >= 0) core_store_from_f32(bias->t.data, o->attn_bias_dtype, (b * o->seqlen + i) * keys + j, -INFINITY);
  return 0;
}

static int bench_alloc(const bench_options *o, bench_run *run, uint64_t seed) {
  int64_t q_shape[4] = {o->batch, o->seqlen, o->heads, o->head_dim};
  int q_dims = o->varlen_q ? 3 : 4;
  if (o->varlen_q) {  /* [total_q, heads, head_dim]: the sequences' queries end to end */
    int64_t cu_shape[1] = {o->batch + 1};
    if (host_tensor_alloc_int32(&run->cu, 1, cu_shape) != 0) {
      cli_error(BENCH_COMMAND, "--varlen-q: cannot allocate cu_seqlens_q [%" PRId64 "]", cu_shape[0]);
      return -1;
    }
    int32_t *cu = run->cu.t.data;
    cu[0] = 0;
    for (int64_t b = 0; b < o->batch; b++)
      cu[b + 1] = cu[b] + (o->seqlens_q != NULL ? o->query_counts[b] : (int32_t)o->seqlen);
    q_shape[0] = cu[o->batch];
    q_shape[1] = o->heads;
    q_shape[2] = o->head_dim;
    q_shape[3] = 1;
  }
  int64_t kv_shape[4] = {o->batch, o->seqlen_kv, o->kv_heads, o->head_dim};
  if (o->page_size > 0) {
    int64_t per_sequence = (o->seqlen_kv + o->page_size - 1) / o->page_size;
    kv_shape[0] = o->batch * (per_sequence > 0 ? per_sequence : 1);
    kv_shape[1] = o->page_size;
    if (bench_alloc_pages(o, run) != 0) {
      cli_error(BENCH_COMMAND, "--page-size=%" PRId64 ": cannot allocate the block table", o->page_size);
      return -1;
    }
  }
  int kv_dims = 4;
  int64_t v_shape[4], o_shape[4];  /* k's and q's with v's head dim last (set once they are final) */
  if (o->packed_kv) {  /* [total_k, kv_heads, head_dim]: the sequences' keys end to end */
    int64_t cu_shape[1] = {o->batch + 1};
    if (host_tensor_alloc_int32(&run->cu_k, 1, cu_shape) != 0) {
      cli_error(BENCH_COMMAND, "--packed-kv: cannot allocate cu_seqlens_k [%" PRId64 "]", cu_shape[0]);
      return -1;
    }
    int32_t *cu = run->cu_k.t.data;
    int own = o->seqlens_q != NULL && !o->seqlen_kv_set;  /* a prefill: each sequence's keys are its queries */
    cu[0] = 0;
    for (int64_t b = 0; b < o->batch; b++) cu[b + 1] = cu[b] + (own ? o->query_counts[b] : (int32_t)o->seqlen_kv);
    kv_shape[0] = cu[o->batch];
    kv_shape[1] = o->kv_heads;
    kv_shape[2] = o->head_dim;
    kv_dims = 3;
  }
  if (o->seqlens_q != NULL && !o->seqlen_kv_set && !o->packed_kv) {  /* a prefill: each sequence's keys are its queries */
    int64_t lens_shape[1] = {o->batch};
    if (run->lens.allocation == NULL && host_tensor_alloc_int32(&run->lens, 1, lens_shape) != 0) {
      cli_error(BENCH_COMMAND, "--seqlens-q: cannot allocate seqlens_kv [%" PRId64 "]", o->batch);
      return -1;
    }
    memcpy(run->lens.t.data, o->query_counts, (size_t)o->batch * sizeof(int32_t));
  }
  if (o->alibi) {  /* BLOOM's geometric slopes */
    int64_t slopes_shape[1] = {o->heads};
    if (host_tensor_alloc(&run->slopes, DTYPE_F32, 1, slopes_shape, NULL) != 0) {
      cli_error(BENCH_COMMAND, "--alibi: cannot allocate alibi_slopes [%" PRId64 "]", o->heads);
      return -1;
    }
    float *slopes = run->slopes.t.data;
    for (int64_t h = 0; h < o->heads; h++) slopes[h] = (float)pow(2.0, -8.0 * (double)(h + 1) / (double)o->heads);
  }
  if (o->attn_bias && bench_bias_alloc(o, &run->bias, seed) != 0) return -1;
  if (o->sinks && tune_sinks_alloc(&run->sinks, o->heads) != 0) {  /* the tuner's logits */
    cli_error(BENCH_COMMAND, "--sinks: cannot allocate sinks [%" PRId64 "]", o->heads);
    return -1;
  }
  memcpy(v_shape, kv_shape, sizeof v_shape);
  memcpy(o_shape, q_shape, sizeof o_shape);
  v_shape[kv_dims - 1] = o->head_dim_v;
  o_shape[q_dims - 1] = o->head_dim_v;
  struct {
    host_tensor *t;
    tune_mirror *d;
    const char *name;
    const int64_t *shape;
    int ndim;
  } tensors[] = {{&run->q, &run->dq, "q", q_shape, q_dims}, {&run->k, &run->dk, "k", kv_shape, kv_dims},
                 {&run->v, &run->dv, "v", v_shape, kv_dims}, {&run->o, &run->dout, "o", o_shape, q_dims}};
  for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
    dtype_id dtype = tensors[i].t == &run->k || tensors[i].t == &run->v ? o->kv_dtype : o->dtype;
    if (host_tensor_alloc(tensors[i].t, dtype, tensors[i].ndim, tensors[i].shape, NULL) != 0) {
      char shape[512];
      bench_shape_flags(o, shape, sizeof shape);
      char dims[96];
      int used = snprintf(dims, sizeof dims, "[%" PRId64, tensors[i].shape[0]);
      for (int d = 1; d < tensors[i].ndim && used > 0 && (size_t)used < sizeof dims; d++)
        used += snprintf(dims + used, sizeof dims - (size_t)used, ", %" PRId64, tensors[i].shape[d]);
      cli_error(BENCH_COMMAND, "%s: cannot allocate %s %s]", shape, tensors[i].name, dims);
      return -1;
    }
  }
  host_tensor_fill_random(&run->q, seed);
  host_tensor_fill_random(&run->k, seed + 1);
  host_tensor_fill_random(&run->v, seed + 2);
  host_tensor_poison(&run->o);
  for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
    fj_status status = tune_mirror_upload(run->context, tensors[i].t, tensors[i].name, tensors[i].d);
    if (status != FJ_OK) {
      char shape[512];
      bench_shape_flags(o, shape, sizeof shape);
      cli_error(BENCH_COMMAND, "%s: %s: %s", shape, fj_status_string(status), fj_last_error());
      return -1;
    }
  }
  struct {
    host_tensor *t;
    tune_mirror *d;
    const char *name;
  } index[] = {{&run->table, &run->dtable, "the block table"}, {&run->lens, &run->dlens, "seqlens_kv"},
               {&run->cu, &run->dcu, "cu_seqlens_q"}, {&run->sinks, &run->dsinks, "sinks"},
               {&run->cu_k, &run->dcu_k, "cu_seqlens_k"}, {&run->slopes, &run->dslopes, "alibi_slopes"},
               {&run->bias, &run->dbias, "attn_bias"}};
  for (size_t i = 0; i < sizeof index / sizeof index[0]; i++) {
    if (index[i].t->allocation == NULL) continue;
    fj_status status = tune_mirror_upload(run->context, index[i].t, index[i].name, index[i].d);
    if (status != FJ_OK) {
      cli_error(BENCH_COMMAND, "%s: %s: %s", index[i].name, fj_status_string(status), fj_last_error());
      return -1;
    }
  }
  fj_attention_args_init(&run->args);
  run->args.q = &run->dq.t;
  run->args.k = &run->dk.t;
  run->args.v = &run->dv.t;
  run->args.o = &run->dout.t;
  run->args.causal = o->causal;
  bench_scalar_args(o, &run->args);
  bench_index_args(o, run, &run->args, 0);
  return 0;
}

static void bench_free(bench_run *run) {
  tune_mirror *mirrors[] = {&run->dq,   &run->dk,     &run->dv,    &run->dout,  &run->dlse,
                            &run->dtable, &run->dlens, &run->dcu, &run->dsinks, &run->dwork, &run->dcu_k, &run->dslopes,
                            &run->dbias};
  for (size_t i = 0; i < sizeof mirrors / sizeof mirrors[0]; i++)
    if (run->context) tune_mirror_free(run->context, mirrors[i]);
  host_tensor_free(&run->q);
  host_tensor_free(&run->k);
  host_tensor_free(&run->v);
  host_tensor_free(&run->o);
  host_tensor_free(&run->lse);
  host_tensor_free(&run->table);
  host_tensor_free(&run->lens);
  host_tensor_free(&run->cu);
  host_tensor_free(&run->cu_k);
  host_tensor_free(&run->sinks);
  host_tensor_free(&run->slopes);
  host_tensor_free(&run->bias);
  host_tensor_free(&run->work);
}

/* Poisons o and the LSE, runs once, copies them back and measures both against the reference. */
static int bench_check(const bench_options *o, bench_run *run, bench_result *r) {
  int64_t lse_shape[3] = {o->batch, o->heads, o->seqlen};
  if (o->varlen_q) {  /* [heads, total_q] */
    lse_shape[0] = o->heads;
    lse_shape[1] = run->q.t.shape[0];
    lse_shape[2] = 1;
  }
  if (host_tensor_alloc(&run->lse, DTYPE_F32, o->varlen_q ? 2 : 3, lse_shape, NULL) != 0) {
    cli_error(BENCH_COMMAND, "--check: cannot allocate the LSE [%" PRId64 ", %" PRId64 ", %" PRId64 "]",
              lse_shape[0], lse_shape[1], lse_shape[2]);
    return CLI_EXIT_FAILURE;
  }
  fj_status status = tune_mirror_upload(run->context, &run->lse, "the LSE", &run->dlse);
  if (status != FJ_OK) return bench_fail("--check", status);
  size_t q_elems = (size_t)(o->batch * o->seqlen * o->heads * o->head_dim_v);  /* o's */
  size_t rows = (size_t)(o->batch * o->heads * o->seqlen);
  double *ref_o = malloc((q_elems ? q_elems : 1) * sizeof *ref_o);
  double *ref_lse = malloc((rows ? rows : 1) * sizeof *ref_lse);
  if (ref_o == NULL || ref_lse == NULL) {
    free(ref_o);
    free(ref_lse);
    cli_error(BENCH_COMMAND, "--check: cannot allocate the float64 reference (%.1f GiB)",
              (double)(q_elems + rows) * 8.0 / BENCH_GIB);
    return CLI_EXIT_FAILURE;
  }

  /* The run being timed (no LSE) is checked as it was timed; a second run with the LSE checks that
   * path too, with the same config when one was forced. The reference and the comparisons read the
   * host tensors; the runs use the device's. */
  int exit_code = CLI_EXIT_OK;
  fj_attention_args host_lse_args;
  fj_attention_args_init(&host_lse_args);
  host_lse_args.q = &run->q.t;
  host_lse_args.k = &run->k.t;
  host_lse_args.v = &run->v.t;
  host_lse_args.o = &run->o.t;
  host_lse_args.lse = &run->lse.t;
  host_lse_args.causal = o->causal;
  bench_scalar_args(o, &host_lse_args);
  bench_index_args(o, run, &host_lse_args, 1);
  fj_attention_args with_lse = run->args;
  with_lse.lse = &run->dlse.t;
  attention_problem host_lse, device_lse;
  status = core_validate_attention(&host_lse_args, &host_lse);
  if (status == FJ_OK) status = core_validate_attention(&with_lse, &device_lse);
  double t0 = bench_now_ms();
  if (status == FJ_OK) status = core_reference_attention(&host_lse, ref_o, ref_lse);
  r->reference_ms = bench_now_ms() - t0;
  if (status != FJ_OK) {
    exit_code = bench_fail("--check: reference", status);
    goto done;
  }

  host_tensor_poison(&run->o);
  status = tune_mirror_refresh(run->context, &run->dout);
  if (status == FJ_OK) status = bench_call(run);
  if (status == FJ_OK) status = tune_mirror_download(run->context, &run->dout);
  if (status != FJ_OK) {
    exit_code = bench_fail("--check: forward", status);
    goto done;
  }
  double err_o = core_relative_error_o(&run->host_problem, ref_o);

  host_tensor_poison(&run->o);
  host_tensor_poison(&run->lse);
  status = tune_mirror_refresh(run->context, &run->dout);
  if (status == FJ_OK) status = tune_mirror_refresh(run->context, &run->dlse);
  if (status == FJ_OK) {
    if (run->config == NULL) {
      status = fj_attention_forward(run->context, &with_lse);
    } else {
      runtime_kernel *kernel = NULL;
      status = runtime_get_kernel(run->context, &device_lse, run->config, &kernel);
      if (status == FJ_OK) status = runtime_launch_attention(run->context, kernel, &device_lse, NULL);
    }
  }
  if (status == FJ_OK) status = tune_mirror_download(run->context, &run->dout);
  if (status == FJ_OK) status = tune_mirror_download(run->context, &run->dlse);
  if (status != FJ_OK) {
    exit_code = bench_fail("--check: forward with LSE", status);
    goto done;
  }
  double err_o_lse = core_relative_error_o(&host_lse, ref_o);
  r->rel_err_lse = core_relative_error_lse(&host_lse, ref_lse);
  /* NaN-safe: a NaN error must read as a failure, and fmax would drop it */
  r->rel_err = (isnan(err_o) || err_o > err_o_lse) ? err_o : err_o_lse;
  r->tolerance = core_dtype_tolerance(o->dtype);
  r->checked = 1;
  r->check_passed = r->rel_err <= r->tolerance && r->rel_err_lse <= r->tolerance;

done:
  free(ref_o);
  free(ref_lse);
  return exit_code;
}

/* One shape's peers: the measured point handed to bench_peers_run (its flops, the exact count, serve
 * both sides), and what came back. */
typedef struct bench_peers {
  bench_grid_point point;
  bench_peers_status status;
  int shown[BENCH_PEER_COUNT];
  int shown_count;
} bench_peers;

static void bench_run_peers(const bench_options *o, const bench_result *r, bench_peers *peers) {
  memset(peers, 0, sizeof *peers);
  bench_grid_point *p = &peers->point;
  p->dtype = o->dtype;
  p->batch = o->batch;
  p->heads = o->heads;
  p->kv_heads = o->kv_heads;
  p->seqlen = o->seqlen;
  p->seqlen_kv = o->seqlen_kv;
  p->head_dim = o->head_dim;
  p->causal = o->causal;
  p->flops = r->flops;
  p->measured = 1;
  p->ms = r->ms_median;
  p->ms_min = r->ms_min;
  peers->shown_count = bench_peers_for_device(o, r->device_id, peers->shown);
  bench_peers_run(o, r->device_id, p, 1, o->warmup, o->repeat, &peers->status);
}

static double bench_gflops(double flops, double ms) { return ms > 0.0 ? flops / (ms * 1e-3) / 1e9 : 0.0; }

static void bench_print_text(const bench_options *o, const bench_result *r, const bench_peers *peers) {
  if (strcmp(r->backend, "cpu") == 0)
    printf("device      %s (%s, %d thread%s)%s\n", r->device_name, r->device_id, r->threads,
           r->threads == 1 ? "" : "s", o->device_auto ? ", chosen by auto: the best device found" : "");
  else
    printf("device      %s (%s)%s\n", r->device_name, r->device_id,
           o->device_auto ? ", chosen by auto: the best device found" : "");
  char paged[48] = "", window[64] = "";
  if (o->page_size > 0) snprintf(paged, sizeof paged, ", paged K/V (pages of %" PRId64 ")", o->page_size);
  char ragged[128] = "", head_dim_v[32] = "";
  if (o->head_dim_v != o->head_dim) snprintf(head_dim_v, sizeof head_dim_v, " (v %" PRId64 ")", o->head_dim_v);
  if (o->seqlens_q != NULL && strlen(o->seqlens_q) <= 60)
    snprintf(ragged, sizeof ragged, ", ragged queries %s (cu_seqlens_q)", o->seqlens_q);
  else if (o->varlen_q)
    snprintf(ragged, sizeof ragged, ", ragged queries (cu_seqlens_q)%s", o->seqlens_q ? ", of --seqlens-q" : "");
  if (o->windowed)
    snprintf(window, sizeof window, ", window (%" PRId64 ", %" PRId64 ")", o->window_left, o->window_right);
  printf("problem     batch %" PRId64 ", heads %" PRId64 " (kv %" PRId64 "), seqlen %" PRId64 " x %" PRId64
         ", head_dim %" PRId64 "%s, %s%s%s%s%s%s%s\n",
         o->batch, o->heads, o->kv_heads, o->seqlen, o->seqlen_kv, o->head_dim, head_dim_v, core_dtype_name(o->dtype),
         o->causal ? ", causal" : "", window, paged, ragged, o->packed_kv ? ", packed keys (cu_seqlens_k)" : "",
         o->sinks ? ", attention sinks" : "");
  if (o->kv_dtype != o->dtype) printf("kv cache    k and v %s (scales 1)\n", core_dtype_name(o->kv_dtype));
  if (o->alibi) printf("alibi       BLOOM's slopes 2^(-8 (h + 1) / %" PRId64 ")\n", o->heads);
  if (o->attn_bias)
    printf("attn_bias   %s [%" PRId64 ", 1, %" PRId64 ", %" PRId64 "], -inf past each query's diagonal\n",
           core_dtype_name(o->attn_bias_dtype), o->batch, o->seqlen, bench_bias_keys(o));
  if (o->softcap != 0.0f) printf("softcap     %g (scores become %g tanh(score / %g))\n", (double)o->softcap,
                                 (double)o->softcap, (double)o->softcap);
  printf("kernel      %s %s (%s)\n", r->family, r->config,
         o->config ? "from --config" : r->config_source[0] ? r->config_source : "the runtime's choice");
  printf("build       %s, %.1f ms; first call %.2f ms\n", r->kernel_source, r->compile_ms, r->first_call_ms);
  if (r->kv_splits > 1) {
    char where[64] = "no workspace: the call allocates its own";
    if (r->workspace_bytes > 0) snprintf(where, sizeof where, "%zu bytes of workspace", r->workspace_bytes);
    printf("split-KV    each job's keys in %" PRId64 " parts%s, merged %s (%s)\n", r->kv_splits,
           o->kv_split_keys > 0 ? " of --kv-split-keys" : "", strcmp(r->backend, "cpu") == 0 ? "after them" : "by the combine kernel", where);
  }
  printf("time        %.3f ms median, %.3f ms min, %.3f ms max (%" PRId64 " runs after %" PRId64
         " warmup, %s)\n", r->ms_median, r->ms_min, r->ms_max, o->repeat, o->warmup, r->timing);
  if (r->host_us_per_call > 0.0)
    printf("host        %.2f us per call (%s; calls enqueued back to back)\n", r->host_us_per_call,
           o->config ? "the launch of the --config kernel" : "fj_attention_forward's host side");
  printf("rate        %.1f GFLOP/s (%.4g FLOP per call), %.1f GB/s (%.4g bytes per call at least)\n",
         r->gflops, r->flops, r->gbps, r->bytes);
  if (r->checked) {
    printf("check       %s: rel_err %.3g, lse rel_err %.3g, bound %.3g (%s)\n",
           r->check_passed ? "ok" : "FAILED", r->rel_err, r->rel_err_lse, r->tolerance,
           core_dtype_name(o->dtype));
    printf("reference   %.1f ms (naive float64), speedup vs reference %.1fx\n", r->reference_ms,
           r->ms_median > 0.0 ? r->reference_ms / r->ms_median : 0.0);
  }
  if (peers == NULL) return;
  const bench_peers_status *st = &peers->status;
  if (!st->ran) {
    printf("peers       n/a: %s\n", st->note);
    return;
  }
  printf("peers       %s, measured by bench/peers/peers.py in the same run; ratio = flashjit / peer "
         "(throughput, above 1: flashjit faster)\n", st->info[0] ? st->info : "peers.py");
  for (int j = 0; j < peers->shown_count; j++) {
    int k = peers->shown[j];
    const bench_grid_point *p = &peers->point;
    if (p->peer_measured[k])
      printf("  %-13s %.3f ms median, %.3f ms min, %.1f GFLOP/s, %.1f GB/s, ratio %.2fx\n", bench_peer_names[k],
             p->peer_ms[k], p->peer_ms_min[k], bench_gflops(p->flops, p->peer_ms[k]),
             bench_gflops(r->bytes, p->peer_ms[k]), bench_peer_ratio(p, k));
    else
      printf("  %-13s %s: %s\n", bench_peer_names[k], bench_peer_word(p, k), bench_peer_why(st, p, k));
  }
}

/* One device's object into w (a document of its own, or an element of --device all's array). */
static void bench_json_object(json_writer *w, const bench_options *o, const bench_result *r,
                              const bench_peers *peers) {
  json_object_begin(w);
  json_kv_string(w, "device", r->device_name);
  json_kv_string(w, "device_id", r->device_id);
  json_kv_string(w, "backend", r->backend);
  json_kv_bool(w, "device_auto", o->device_auto);
  json_kv_string(w, "timing", r->timing);
  json_kv_int(w, "threads", r->threads);
  json_kv_string(w, "dtype", core_dtype_name(o->dtype));
  json_kv_int(w, "batch", o->batch);
  json_kv_int(w, "heads", o->heads);
  json_kv_int(w, "kv_heads", o->kv_heads);
  json_kv_int(w, "seqlen", o->seqlen);
  json_kv_int(w, "seqlen_kv", o->seqlen_kv);
  json_kv_int(w, "head_dim", o->head_dim);
  json_kv_int(w, "head_dim_v", o->head_dim_v);
  json_kv_bool(w, "causal", o->causal);
  json_kv_int(w, "window_left", o->window_left);
  json_kv_int(w, "window_right", o->causal && o->window_right < 0 ? 0 : o->window_right);
  json_kv_int(w, "page_size", o->page_size);
  json_kv_bool(w, "varlen_q", o->varlen_q);
  json_kv_string(w, "seqlens_q", o->seqlens_q ? o->seqlens_q : "");
  json_kv_bool(w, "packed_kv", o->packed_kv);
  json_kv_bool(w, "sinks", o->sinks);
  json_kv_bool(w, "alibi", o->alibi);
  json_kv_string(w, "attn_bias", o->attn_bias ? core_dtype_name(o->attn_bias_dtype) : "");
  json_kv_string(w, "kv_dtype", core_dtype_name(o->kv_dtype));
  json_kv_double(w, "softcap", o->softcap);
  json_kv_string(w, "family", r->family);
  json_kv_string(w, "config", r->config);
  json_kv_string(w, "config_from", r->config_from);
  json_kv_string(w, "config_source", r->config_source);
  json_kv_string(w, "kernel_source", r->kernel_source);
  json_kv_double(w, "compile_ms", r->compile_ms);
  json_kv_int(w, "kv_splits", r->kv_splits);
  json_kv_int(w, "kv_split_keys", o->kv_split_keys);
  json_kv_int(w, "workspace_bytes", (int64_t)r->workspace_bytes);
  json_kv_double(w, "get_kernel_ms", r->get_kernel_ms);
  json_kv_double(w, "first_call_ms", r->first_call_ms);
  json_kv_int(w, "warmup", o->warmup);
  json_kv_int(w, "repeat", o->repeat);
  json_kv_double(w, "ms", r->ms_median);
  json_kv_double(w, "ms_min", r->ms_min);
  json_kv_double(w, "ms_max", r->ms_max);
  json_kv_double(w, "host_us_per_call", r->host_us_per_call);
  json_kv_double(w, "flops", r->flops);
  json_kv_double(w, "gflops", r->gflops);
  json_kv_double(w, "bytes", r->bytes);
  json_kv_double(w, "gbps", r->gbps);
  json_kv_uint(w, "seed", r->seed);
  if (r->checked) {
    json_kv_double(w, "rel_err", r->rel_err);
    json_kv_double(w, "rel_err_lse", r->rel_err_lse);
    json_kv_double(w, "tolerance", r->tolerance);
    json_kv_string(w, "check", r->check_passed ? "pass" : "fail");
    json_kv_double(w, "reference_ms", r->reference_ms);
    json_kv_double(w, "speedup_vs_reference", r->ms_median > 0.0 ? r->reference_ms / r->ms_median : 0.0);
  }
  if (peers != NULL) {
    /* every peer of the device: its figures, or why it has none */
    const bench_grid_point *p = &peers->point;
    json_kv_string(w, "peers_info", peers->status.info);
    json_kv_string(w, "peers_note", peers->status.note);
    json_key(w, "peers");
    json_array_begin(w);
    for (int j = 0; j < peers->shown_count; j++) {
      int k = peers->shown[j];
      json_object_begin(w);
      json_kv_string(w, "peer", bench_peer_names[k]);
      json_kv_bool(w, "measured", p->peer_measured[k]);
      if (p->peer_measured[k]) {
        json_kv_double(w, "ms", p->peer_ms[k]);
        json_kv_double(w, "ms_min", p->peer_ms_min[k]);
        json_kv_double(w, "gflops", bench_gflops(p->flops, p->peer_ms[k]));
        json_kv_double(w, "gbps", bench_gflops(r->bytes, p->peer_ms[k]));
        json_kv_double(w, "ratio", bench_peer_ratio(p, k));
      } else {
        json_kv_string(w, strcmp(bench_peer_word(p, k), "error") == 0 ? "error" : "reason",
                       bench_peer_why(&peers->status, p, k));
      }
      json_object_end(w);
    }
    json_array_end(w);
  }
  json_object_end(w);
}

/* Opens the device the flags name; CLI_EXIT_OK or the exit code after the error. */
int bench_open(const bench_options *o, fj_context **context) {
  const fj_backend *backend = NULL;
  int index = 0;
  fj_status status = backend_select(o->device, &backend, &index);
  if (status != FJ_OK) {
    cli_error(BENCH_COMMAND, "%s: %s", o->device_flag, fj_last_error());
    return status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
  }
  fj_context_options options;
  fj_context_options_init(&options);
  options.disable_served_log = 1;  /* what runs here is not traffic */
  options.device = o->device;
  options.cache_dir = o->cache_dir;
  options.num_threads = (int)o->threads;
  status = fj_context_create(&options, context);
  if (status != FJ_OK) {
    char flag[4200];
    if (status == FJ_IO && o->cache_dir)
      snprintf(flag, sizeof flag, "--cache-dir=%s", o->cache_dir);
    else
      snprintf(flag, sizeof flag, "%s", o->device_flag);
    cli_error(BENCH_COMMAND, "%s: %s: %s", flag, fj_status_string(status), fj_last_error());
    return status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

/* Warmup, then repeat timed calls, each timed on its own (device events around it on a GPU, the wall
 * clock on the CPU); CLI_EXIT_OK or the exit code after the error. */
static int bench_time(const bench_options *o, bench_run *run, bench_result *r) {
  double t0 = bench_now_ms();
  fj_status status = bench_call(run);
  if (status == FJ_OK) status = tune_device_synchronize(run->context, NULL);
  r->first_call_ms = bench_now_ms() - t0;
  if (status != FJ_OK) return bench_fail("forward", status);
  /* a shape that takes seconds a call: say how long the rest will take before taking it */
  if (r->first_call_ms > 2000.0)
    fprintf(stderr, "flashjit bench: one call took %.1f s; %" PRId64 " warmup and %" PRId64
            " timed calls follow (about %.0f s)%s\n", r->first_call_ms / 1000.0, o->warmup, o->repeat,
            (double)(o->warmup + o->repeat) * r->first_call_ms / 1000.0,
            o->check ? ", then --check's float64 reference, on one thread" : "");
  for (int64_t i = 0; i < o->warmup && status == FJ_OK; i++) status = bench_call(run);
  if (status == FJ_OK) status = tune_device_synchronize(run->context, NULL);
  if (status != FJ_OK) return bench_fail("forward", status);
  double *times = malloc((size_t)o->repeat * sizeof *times);
  if (times == NULL) {
    cli_error(BENCH_COMMAND, "--repeat=%" PRId64 ": cannot allocate the timings", o->repeat);
    return CLI_EXIT_FAILURE;
  }
  for (int64_t i = 0; i < o->repeat; i++) {
    tune_timer timer;
    status = tune_timer_start(run->context, NULL, &timer);
    if (status == FJ_OK) {
      status = bench_call(run);
      fj_status stop = tune_timer_stop(run->context, NULL, &timer, &times[i]);
      if (status == FJ_OK) status = stop;
    }
    if (status != FJ_OK) {
      free(times);
      return bench_fail("forward", status);
    }
  }
  qsort(times, (size_t)o->repeat, sizeof *times, bench_compare_doubles);
  size_t n = (size_t)o->repeat;
  r->ms_median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  r->ms_min = times[0];
  r->ms_max = times[n - 1];
  free(times);
  if (strcmp(r->backend, "cpu") != 0) {
    /* What an engine's host thread pays per call (a decode step's launches are as short as the kernels):
     * calls enqueued back to back, at most 20 ms of device work and --repeat calls, so that the
     * stream's queue never fills and blocks them. */
    int64_t calls = r->ms_median > 0.0 ? (int64_t)(20.0 / r->ms_median) : o->repeat;
    if (calls > o->repeat) calls = o->repeat;
    if (calls < 1) calls = 1;
    t0 = bench_now_ms();
    for (int64_t i = 0; i < calls && status == FJ_OK; i++) status = bench_call(run);
    r->host_us_per_call = (bench_now_ms() - t0) * 1e3 / (double)calls;
    if (status == FJ_OK) status = tune_device_synchronize(run->context, NULL);
    if (status != FJ_OK) return bench_fail("forward", status);
  }
  /* from the host's copy of the call, whose seqlens_kv (with --page-size) can be read */
  r->flops = core_attention_flops(&run->host_problem);
  r->gflops = bench_gflops(r->flops, r->ms_median);
  r->bytes = core_attention_bytes(&run->host_problem);
  r->gbps = bench_gflops(r->bytes, r->ms_median);
  return CLI_EXIT_OK;
}

/* The family of the context's device, and the --config text parsed against it (before any tensor is
 * allocated, so a typo costs nothing). CLI_EXIT_OK or the exit code after the error. */
static int bench_family(const bench_options *o, fj_context *context, bench_result *r, kernel_config *forced,
                        const kernel_config **config) {
  const fj_backend *backend = runtime_backend(context);
  const kernel_family *family = kernel_family_for_backend(backend->name);
  *config = NULL;
  if (family == NULL) {
    cli_error(BENCH_COMMAND, "%s: no attention kernel family for the %s backend", o->device_flag,
              backend->name);
    return CLI_EXIT_FAILURE;
  }
  snprintf(r->family, sizeof r->family, "%s", family->name);
  if (o->config == NULL) return CLI_EXIT_OK;
  char why[256] = "";
  if (kernel_config_parse(family, o->config, forced, why, sizeof why) != 0) {
    cli_error(BENCH_COMMAND, "--config=\"%s\": %s", o->config, why);
    return CLI_EXIT_USAGE;
  }
  *config = forced;
  return CLI_EXIT_OK;
}

/* Resolves the kernel for the validated problem: the forced config (checked against this problem and
 * target) or the runtime's own choice, and records how it was obtained. */
static int bench_kernel(const bench_options *o, bench_run *run, bench_result *r) {
  if (run->config != NULL) {
    const kernel_family *family = kernel_family_for_backend(runtime_backend(run->context)->name);
    char why[256] = "";
    if (!family->config_valid(&run->problem.key, runtime_target(run->context), run->config, why,
                              sizeof why)) {
      cli_error(BENCH_COMMAND, "--config=\"%s\": not valid for this problem on %s: %s", o->config,
                r->device_id, why);
      return CLI_EXIT_USAGE;
    }
  }
  double t0 = bench_now_ms();
  fj_status status = runtime_get_kernel(run->context, &run->problem, run->config, &run->kernel);
  r->get_kernel_ms = bench_now_ms() - t0;
  if (status != FJ_OK) return bench_fail("building the kernel", status);
  kernel_config_string(run->kernel->family, &run->kernel->config, r->config, sizeof r->config);
  r->config_from = o->config ? "--config" : "runtime";
  snprintf(r->config_source, sizeof r->config_source, "%s", run->kernel->config_source);
  snprintf(r->kernel_source, sizeof r->kernel_source, "%s", run->kernel->source);
  r->compile_ms = run->kernel->compile_ms;
  return CLI_EXIT_OK;
}

/* Split-KV: the workspace the launch would split a call's keys into (none with --no-split-kv), given to
 * every call as an inference engine would give it. */
static int bench_workspace(const bench_options *o, bench_run *run, bench_result *r) {
  r->kv_splits = 1;
  r->workspace_bytes = 0;
  size_t bytes = 0;
  runtime_split_plan(run->context, run->kernel, &run->problem, SIZE_MAX, &r->kv_splits, &bytes);
  if (o->no_split_kv || bytes == 0) {
    if (strcmp(r->backend, "cpu") != 0) r->kv_splits = 1;  /* a GPU splits only into a workspace */
    return CLI_EXIT_OK;
  }
  void *data = NULL;
  fj_status status = tune_workspace_ensure(run->context, bytes, &run->work, &run->dwork, &data);
  if (status != FJ_OK) return bench_fail("split-KV workspace", status);
  run->workspace_shape[0] = (int64_t)bytes;
  run->workspace = (DLTensor){.data = data, .device = run->dwork.t.device, .ndim = 1, .dtype = {kDLUInt, 8, 1},
                              .shape = run->workspace_shape};
  run->args.workspace = &run->workspace;
  run->problem.workspace = data;
  run->problem.workspace_bytes = (int64_t)bytes;
  r->workspace_bytes = bytes;
  return CLI_EXIT_OK;
}

int bench_threads(const bench_options *o) { return o->threads > 0 ? (int)o->threads : core_online_cores(); }

int bench_measure(fj_context *context, const bench_options *o, const kernel_config *forced, bench_result *r) {
  bench_run run;
  memset(&run, 0, sizeof run);
  run.context = context;
  run.config = forced;
  fj_context_device_name(context, r->device_name, sizeof r->device_name);
  r->backend = runtime_backend(context)->name;
  r->timing = runtime_timing_method(context);
  snprintf(r->device_id, sizeof r->device_id, "%s:%d", r->backend, runtime_device_index(context));
  r->threads = bench_threads(o);

  /* Fresh inputs every run, as the tests do; the seed is reported so a failure can be replayed. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  r->seed = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  int code = CLI_EXIT_OK;
  if (bench_alloc(o, &run, r->seed) != 0) {
    code = CLI_EXIT_FAILURE;
    goto done;
  }
  fj_status status = core_validate_attention(&run.args, &run.problem);
  if (status == FJ_OK) {
    fj_attention_args host_args = run.args;
    host_args.q = &run.q.t;
    host_args.k = &run.k.t;
    host_args.v = &run.v.t;
    host_args.o = &run.o.t;
    bench_index_args(o, &run, &host_args, 1);
    status = core_validate_attention(&host_args, &run.host_problem);
  }
  if (status != FJ_OK) {
    cli_error(BENCH_COMMAND, "%s", fj_last_error());
    code = status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
    goto done;
  }
  code = bench_kernel(o, &run, r);
  if (code == CLI_EXIT_OK) code = bench_workspace(o, &run, r);
  if (code == CLI_EXIT_OK) code = bench_time(o, &run, r);
  if (code == CLI_EXIT_OK && o->check) code = bench_check(o, &run, r);

done:
  bench_free(&run);
  return code;
}

int bench_device(bench_options *o, bench_result *r, json_writer *json) {
  memset(r, 0, sizeof *r);
  fj_context *context = NULL;
  int code = bench_open(o, &context);
  if (code != CLI_EXIT_OK) return code;
  kernel_config forced;
  memset(&forced, 0, sizeof forced);
  const kernel_config *config = NULL;
  code = bench_family(o, context, r, &forced, &config);
  if (code == CLI_EXIT_OK) code = bench_measure(context, o, config, r);
  if (code == CLI_EXIT_OK) {
    bench_peers peers;
    if (o->peers) bench_run_peers(o, r, &peers);
    if (json != NULL)
      bench_json_object(json, o, r, o->peers ? &peers : NULL);
    else
      bench_print_text(o, r, o->peers ? &peers : NULL);
    if (r->checked && !r->check_passed) {
      cli_error(BENCH_COMMAND, "--check: rel_err %.3g, lse rel_err %.3g: over the %s bound %.3g on %s", r->rel_err,
                r->rel_err_lse, core_dtype_name(o->dtype), r->tolerance, r->device_id);
      code = CLI_EXIT_FAILURE;
    }
  }
  fj_context_destroy(context);
  return code;
}

int cmd_bench(int argc, char **argv) {
  bench_options o;
  int code = bench_parse(argc, argv, &o);
  if (code < 0) {
    cmd_bench_help(stdout);
    return CLI_EXIT_OK;
  }
  if (code != CLI_EXIT_OK) return code;
  if (o.device_list != NULL) {
    code = bench_devices_run(&o);
    bench_baseline_free(&o);
    return code;
  }

  if (o.grid != NULL) {
    fj_context *context = NULL;
    code = bench_open(&o, &context);
    if (code == CLI_EXIT_OK) code = bench_grid_run(context, &o);
    fj_context_destroy(context);
    bench_baseline_free(&o);
    return code;
  }
  bench_result r;
  if (!o.json) return bench_device(&o, &r, NULL);
  json_writer w;
  json_init(&w, stdout);
  code = bench_device(&o, &r, &w);
  if (w.count[0] > 0) json_finish(&w);
  return code;
}
