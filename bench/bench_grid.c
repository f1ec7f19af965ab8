/* bench_grid.c: `flashjit bench --grid prefill`: the prefill grid of issue 4 (fp16 and bf16, head dims
 * 64 and 128, causal and not, seqlen 512 ... 16384 with batch * seqlen = tokens and heads * head_dim =
 * width), each point measured as `flashjit bench` measures one shape, optionally beside the peers that
 * bench/peers/peers.py measures, printed as one table (or JSON, or CSV) of TFLOP/s and flashjit/peer
 * ratios. One FLOP convention for every column: 4*b*h*sq*skv*d per forward, halved when causal, the
 * FlashAttention papers' and peers.py's; all rates are computed here from the reported milliseconds.
 * `--grid decode`: decode steps (one query per sequence, GQA groups of 4) over batches and cache
 * lengths, where the bytes of the cache, not the FLOPs, set the time: GB/s of q, k, v and o once
 * (core_attention_bytes) beside TFLOP/s. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/cli.h"
#include "bench/json.h"
#include "runtime/runtime.h"

#define GRID_MAX_POINTS 512
#define GRID_MAX_LIST 16

static const int64_t grid_prefill_seqlens[] = {512, 1024, 2048, 4096, 8192, 16384};
static const int64_t grid_prefill_head_dims[] = {64, 128};
/* The decode grid: Llama-3-8B's attention (32 heads of 128 in KV heads of 4) by default, caches of up to
 * 2^18 tokens in all (batch x length; 2 x 8 KV heads x 128 x 2 bytes x 2^18 = 2 GiB of bf16 cache). */
static const int64_t grid_decode_batches[] = {1, 8, 32, 128};
static const int64_t grid_decode_seqlens[] = {1024, 4096, 16384, 65536};
#define GRID_DECODE_TOKENS 262144
#define GRID_DECODE_WIDTH 4096
#define GRID_DECODE_GROUP 4

typedef struct grid_spec {
  int decode;  /* --grid decode: seqlens are cache lengths, one query per sequence */
  int64_t batches[GRID_MAX_LIST];
  int batch_count;
  dtype_id dtypes[GRID_MAX_LIST];
  int dtype_count;
  int64_t seqlens[GRID_MAX_LIST];
  int seqlen_count;
  int64_t head_dims[GRID_MAX_LIST];
  int head_dim_count;
  int causal_modes[2];
  int causal_count;
} grid_spec;

/* Splits a comma list of integers; 0, or -1 after naming the flag and the bad item. */
static int grid_int_list(const char *flag, const char *text, int64_t *out, int *count) {
  *count = 0;
  const char *p = text;
  for (;;) {
    size_t n = strcspn(p, ",");
    char item[32];
    const char *why = "not an integer";
    int64_t value = 0;
    if (n == 0 || n >= sizeof item || *count >= GRID_MAX_LIST) {
      cli_error(BENCH_COMMAND, "%s=%s: %s", flag, text,
                *count >= GRID_MAX_LIST ? "too many values" : "expected a comma list of integers");
      return -1;
    }
    memcpy(item, p, n);
    item[n] = '\0';
    if (cli_parse_int64(item, &value, &why) != 0) {
      cli_error(BENCH_COMMAND, "%s=%s: '%s': %s", flag, text, item, why);
      return -1;
    }
    if (value < 1) {
      cli_error(BENCH_COMMAND, "%s=%s: '%s': must be at least 1", flag, text, item);
      return -1;
    }
    out[(*count)++] = value;
    p += n;
    if (*p == '\0') return 0;
    p++;
  }
}

/* The --dtype comma list into g; 0, or -1 after the error. */
static int grid_dtype_list(const char *dtypes, grid_spec *g) {
  for (const char *p = dtypes;;) {
    size_t n = strcspn(p, ",");
    char item[16];
    if (n == 0 || n >= sizeof item || g->dtype_count >= GRID_MAX_LIST) {
      cli_error(BENCH_COMMAND, "--dtype=%s: expected a comma list of fp32, fp16, bf16", dtypes);
      return -1;
    }
    memcpy(item, p, n);
    item[n] = '\0';
    if (!core_dtype_parse(item, &g->dtypes[g->dtype_count])) {
      cli_error(BENCH_COMMAND, "--dtype=%s: unknown dtype '%s' (fp32, fp16 or bf16)", dtypes, item);
      return -1;
    }
    g->dtype_count++;
    p += n;
    if (*p == '\0') return 0;
    p++;
  }
}

/* --head-dims (or the default list) into g, each valid and dividing width; 0, or -1 after the error. */
static int grid_head_dim_list(const bench_options *o, const int64_t *defaults, int default_count, int64_t width,
                              grid_spec *g) {
  if (o->head_dims != NULL) {
    if (grid_int_list("--head-dims", o->head_dims, g->head_dims, &g->head_dim_count) != 0) return -1;
  } else {
    g->head_dim_count = default_count;
    memcpy(g->head_dims, defaults, (size_t)default_count * sizeof *defaults);
  }
  for (int i = 0; i < g->head_dim_count; i++) {
    int64_t d = g->head_dims[i];
    if (!core_head_dim_valid(d)) {
      cli_error(BENCH_COMMAND, "--head-dims: %" PRId64 ": must be a multiple of 8 from 8 to 576", d);
      return -1;
    }
    if (width % d != 0) {
      cli_error(BENCH_COMMAND, "--width=%" PRId64 " --head-dims: head dim %" PRId64
                " must divide the width (heads = width / head_dim)", width, d);
      return -1;
    }
  }
  return 0;
}

/* The decode grid: bf16 unless --dtype, head dim 128 unless --head-dims, every listed batch and cache
 * length whose product stays within the tokens (a point is left out, not refused, so that the default
 * lists make a triangle); heads = width / head_dim in KV heads of GRID_DECODE_GROUP. */
static int grid_decode_spec_build(const bench_options *o, grid_spec *g) {
  if (o->mask != NULL) {
    cli_error(BENCH_COMMAND, "--mask=%s: not with --grid decode (one query sees every key of its cache either way)",
              o->mask);
    return CLI_EXIT_USAGE;
  }
  if (grid_dtype_list(o->dtype_set ? o->dtype_name : "bf16", g) != 0) return CLI_EXIT_USAGE;
  if (o->batches != NULL) {
    if (grid_int_list("--batches", o->batches, g->batches, &g->batch_count) != 0) return CLI_EXIT_USAGE;
  } else {
    g->batch_count = (int)(sizeof grid_decode_batches / sizeof grid_decode_batches[0]);
    memcpy(g->batches, grid_decode_batches, sizeof grid_decode_batches);
  }
  if (o->seqlens != NULL) {
    if (grid_int_list("--seqlens", o->seqlens, g->seqlens, &g->seqlen_count) != 0) return CLI_EXIT_USAGE;
  } else {
    g->seqlen_count = (int)(sizeof grid_decode_seqlens / sizeof grid_decode_seqlens[0]);
    memcpy(g->seqlens, grid_decode_seqlens, sizeof grid_decode_seqlens);
  }
  static const int64_t head_dims[] = {128};
  int64_t width = o->width_set ? o->width : GRID_DECODE_WIDTH;
  if (grid_head_dim_list(o, head_dims, 1, width, g) != 0) return CLI_EXIT_USAGE;
  for (int i = 0; i < g->head_dim_count; i++)
    if ((width / g->head_dims[i]) % GRID_DECODE_GROUP != 0) {
      cli_error(BENCH_COMMAND, "--width=%" PRId64 " --head-dims: %" PRId64 " heads of %" PRId64
                " do not make KV heads of %d query heads each", width, width / g->head_dims[i], g->head_dims[i],
                GRID_DECODE_GROUP);
      return CLI_EXIT_USAGE;
    }
  int64_t tokens = o->tokens_set ? o->tokens : GRID_DECODE_TOKENS;
  int any = 0;
  for (int b = 0; b < g->batch_count; b++)
    for (int s = 0; s < g->seqlen_count; s++) any |= g->batches[b] * g->seqlens[s] <= tokens;
  if (!any) {
    cli_error(BENCH_COMMAND, "--tokens=%" PRId64 ": no batch x cache length of the grid fits in it", tokens);
    return CLI_EXIT_USAGE;
  }
  g->causal_modes[0] = 0;  /* one query per sequence, bottom-right aligned: causal changes nothing */
  g->causal_count = 1;
  return CLI_EXIT_OK;
}

/* The grid the flags describe; CLI_EXIT_OK or the exit code after the error. */
static int grid_spec_build(const bench_options *o, grid_spec *g) {
  memset(g, 0, sizeof *g);
  g->decode = strcmp(o->grid, "decode") == 0;
  if (g->decode) return grid_decode_spec_build(o, g);
  if (o->batches != NULL) {
    cli_error(BENCH_COMMAND, "--batches: only with --grid decode (the prefill grid's batch is tokens / seqlen)");
    return CLI_EXIT_USAGE;
  }
  if (grid_dtype_list(o->dtype_set ? o->dtype_name : "fp16,bf16", g) != 0) return CLI_EXIT_USAGE;

  if (o->seqlens != NULL) {
    if (grid_int_list("--seqlens", o->seqlens, g->seqlens, &g->seqlen_count) != 0) return CLI_EXIT_USAGE;
  } else {
    for (size_t i = 0; i < sizeof grid_prefill_seqlens / sizeof grid_prefill_seqlens[0]; i++)
      if (grid_prefill_seqlens[i] <= o->tokens && o->tokens % grid_prefill_seqlens[i] == 0)
        g->seqlens[g->seqlen_count++] = grid_prefill_seqlens[i];
    if (g->seqlen_count == 0) {
      cli_error(BENCH_COMMAND, "--tokens=%" PRId64 ": no grid seqlen (512, 1024, ..., 16384) divides it; "
                "give --seqlens", o->tokens);
      return CLI_EXIT_USAGE;
    }
  }
  for (int i = 0; i < g->seqlen_count; i++)
    if (g->seqlens[i] > o->tokens || o->tokens % g->seqlens[i] != 0) {
      cli_error(BENCH_COMMAND, "--seqlens=%s --tokens=%" PRId64 ": seqlen %" PRId64
                " must divide the tokens (batch = tokens / seqlen)", o->seqlens, o->tokens, g->seqlens[i]);
      return CLI_EXIT_USAGE;
    }

  if (grid_head_dim_list(o, grid_prefill_head_dims, 2, o->width, g) != 0) return CLI_EXIT_USAGE;

  const char *mask = o->mask ? o->mask : "both";
  if (strcmp(mask, "both") == 0) {
    g->causal_modes[0] = 0;
    g->causal_modes[1] = 1;
    g->causal_count = 2;
  } else if (strcmp(mask, "causal") == 0 || strcmp(mask, "none") == 0) {
    g->causal_modes[0] = strcmp(mask, "causal") == 0;
    g->causal_count = 1;
  } else {
    cli_error(BENCH_COMMAND, "--mask=%s: expected both, causal or none", mask);
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

int bench_grid_parse(bench_options *o) {
  if (strcmp(o->grid, "prefill") != 0 && strcmp(o->grid, "decode") != 0) {
    cli_error(BENCH_COMMAND, "--grid=%s: unknown grid (prefill, decode)", o->grid);
    return CLI_EXIT_USAGE;
  }
  if (o->shape_flags) {
    cli_error(BENCH_COMMAND, "--grid=%s: the grid sets batch, heads, seqlen, head dim and mask; use --tokens, "
              "--width, --seqlens, --head-dims, --mask (--batches for decode)", o->grid);
    return CLI_EXIT_USAGE;
  }
  if (o->check || o->config) {
    cli_error(BENCH_COMMAND, "%s: not with --grid (check or force a config on single shapes)",
              o->check ? "--check" : "--config");
    return CLI_EXIT_USAGE;
  }
  if (o->json && o->csv) {
    cli_error(BENCH_COMMAND, "--json with --csv: choose one");
    return CLI_EXIT_USAGE;
  }
  if (o->plot != NULL) {
    int plot_code = bench_plot_check(o);
    if (plot_code != CLI_EXIT_OK) return plot_code;
  }
  grid_spec g;
  int code = grid_spec_build(o, &g);
  if (code != CLI_EXIT_OK) return code;
  if (o->baseline != NULL && (code = bench_baseline_load(o)) != CLI_EXIT_OK) return code;
  /* The grid's defaults are those of a benchmark worth recording: more runs than one shape's. */
  if (!o->warmup_set) o->warmup = 5;
  if (!o->repeat_set) o->repeat = 20;
  return CLI_EXIT_OK;
}

static const char *grid_source_word(const bench_grid_point *p) {
  return p->config_source[0] ? p->config_source : "?";
}

static double grid_tflops(double flops, double ms) { return ms > 0.0 ? flops / (ms * 1e-3) / 1e12 : 0.0; }
static double grid_gbps(double bytes, double ms) { return ms > 0.0 ? bytes / (ms * 1e-3) / 1e9 : 0.0; }

/* A point's rate as the grid's tables compare it: GB/s for a decode step, TFLOP/s for a prefill. */
static double grid_rate(const bench_grid_point *p, double ms, int decode) {
  return decode ? grid_gbps(p->bytes, ms) : grid_tflops(p->flops, ms);
}

/* The shape columns every grid table starts with, and one point's. */
static void grid_print_shape_header(int decode) {
  if (decode)
    printf("%-5s %4s %5s %6s %5s %3s", "dtype", "d", "batch", "kv_len", "heads", "kv");
  else
    printf("%-5s %4s %-6s %6s %5s %5s", "dtype", "d", "mask", "seqlen", "batch", "heads");
}

static void grid_print_shape(const bench_grid_point *p, int decode) {
  if (decode)
    printf("%-5s %4" PRId64 " %5" PRId64 " %6" PRId64 " %5" PRId64 " %3" PRId64, core_dtype_name(p->dtype), p->head_dim,
           p->batch, p->seqlen_kv, p->heads, p->kv_heads);
  else
    printf("%-5s %4" PRId64 " %-6s %6" PRId64 " %5" PRId64 " %5" PRId64, core_dtype_name(p->dtype), p->head_dim,
           p->causal ? "causal" : "full", p->seqlen, p->batch, p->heads);
}

static void grid_print_table(const bench_options *o, const bench_grid_device *d) {
  const bench_grid_point *points = d->points;
  const bench_peers_status *peers = &d->peers;
  int decode = strcmp(o->grid, "decode") == 0;
  printf("flashjit bench --grid %s on %s (%s), %s timing, warmup %" PRId64 ", median of %" PRId64 "\n", o->grid,
         d->device, d->device_id, d->timing, o->warmup, o->repeat);
  printf("TFLOP/s = 4*b*h*sq*skv*d / median time, halved when causal (FlashAttention convention, also the peers')\n");
  int shown[BENCH_PEER_COUNT];
  int shown_count = o->peers ? bench_peers_for_device(o, d->device_id, shown) : 0;
  if (o->peers) {
    if (peers->ran)
      printf("peers: %s, measured by bench/peers/peers.py in the same run; ratio = flashjit / peer\n",
             peers->info[0] ? peers->info : "peers.py");
    else
      printf("peers: n/a: %s\n", peers->note);
    for (int j = 0; j < shown_count; j++)
      if (peers->ran && peers->unavailable[shown[j]][0])
        printf("  %s: n/a: %s\n", bench_peer_names[shown[j]], peers->unavailable[shown[j]]);
  }
  if (o->baseline)
    printf("baseline: %s (%s) in %s; x = its time / flashjit's here\n", bench_baseline_device(o, 0),
           bench_baseline_device(o, 1), o->baseline);
  if (decode)
    printf("GB/s = the bytes of q, k, v and o once / median time (the KV cache's read sets a decode step's time); "
           "peers' columns in GB/s\n\n");
  else
    printf("\n");
  grid_print_shape_header(decode);
  if (decode)
    printf(" | %9s %8s %8s %-13s", "ms", "GB/s", "TFLOP/s", "config");
  else
    printf(" | %9s %8s %-13s", "ms", "TFLOP/s", "config");
  if (o->baseline) printf(" | %-14s %6s", "baseline", "x");
  for (int j = 0; j < shown_count; j++) printf(" | %-14s %6s", bench_peer_names[shown[j]], "ratio");
  printf("\n");
  for (int i = 0; i < d->count; i++) {
    const bench_grid_point *p = &points[i];
    grid_print_shape(p, decode);
    printf(" | ");
    double mine = p->measured ? grid_tflops(p->flops, p->ms) : 0.0;
    if (p->measured && decode)
      printf("%9.3f %8.1f %8.3f %-13s", p->ms, grid_gbps(p->bytes, p->ms), mine, grid_source_word(p));
    else if (p->measured)
      printf("%9.3f %8.2f %-13s", p->ms, mine, grid_source_word(p));
    else if (decode)
      printf("%9s %8s %8s %-13s", "failed", "-", "-", "-");
    else
      printf("%9s %8s %-13s", "failed", "-", "-");
    if (o->baseline && p->baseline_ms > 0.0) {
      char ratio[16] = "-";
      if (p->measured) snprintf(ratio, sizeof ratio, "%.2fx", p->baseline_ms / p->ms);
      printf(" | %-14.2f %6s", grid_rate(p, p->baseline_ms, decode), ratio);
    } else if (o->baseline) {
      printf(" | %-14s %6s", "n/a", "");
    }
    for (int j = 0; j < shown_count; j++) {
      int k = shown[j];
      if (!p->peer_measured[k]) {
        printf(" | %-14s %6s", bench_peer_word(p, k), "");
        continue;
      }
      char ratio[16] = "-";
      if (bench_peer_ratio(p, k) > 0.0) snprintf(ratio, sizeof ratio, "%.2fx", bench_peer_ratio(p, k));
      printf(" | %-14.2f %6s", decode ? grid_gbps(p->bytes, p->peer_ms[k]) : grid_tflops(p->flops, p->peer_ms[k]),
             ratio);
    }
    printf("\n");
  }
  fflush(stdout);
}

void bench_grid_compare(const bench_options *o, const bench_grid_device *devices, int count) {
  int decode = strcmp(o->grid, "decode") == 0;
  const bench_grid_device *base = NULL;  /* the first device with a measured point */
  for (int i = 0; i < count && base == NULL; i++)
    for (int j = 0; j < devices[i].count && base == NULL; j++)
      if (devices[i].points[j].measured) base = &devices[i];
  char base_name[80] = "the first measured device's";
  if (base != NULL) snprintf(base_name, sizeof base_name, "%s's", base->device_id);
  printf("\ndevices     the grid on %d device%s, %s; x = the rate / %s at the same point\n", count,
         count == 1 ? "" : "s", decode ? "GB/s" : "TFLOP/s", base_name);
  for (int i = 0; i < count; i++)
    if (devices[i].points != NULL)
      printf("  %-8s %s\n", devices[i].device_id, devices[i].device);
    else
      printf("  %-8s failed: %s\n", devices[i].device_id, devices[i].error[0] ? devices[i].error : "the message above");
  const bench_grid_device *rows = NULL;  /* any device measured: its points are every device's */
  for (int i = 0; i < count && rows == NULL; i++)
    if (devices[i].points != NULL) rows = &devices[i];
  if (rows == NULL) {
    fflush(stdout);
    return;
  }
  printf("\n");
  grid_print_shape_header(decode);
  for (int i = 0; i < count; i++) printf(" | %10s %7s", devices[i].device_id, "x");
  printf("\n");
  for (int j = 0; j < rows->count; j++) {
    grid_print_shape(&rows->points[j], decode);
    const bench_grid_point *b = base != NULL ? &base->points[j] : NULL;
    for (int i = 0; i < count; i++) {
      const bench_grid_point *p = devices[i].points != NULL ? &devices[i].points[j] : NULL;
      if (p == NULL || !p->measured) {
        printf(" | %10s %7s", "failed", "");
        continue;
      }
      char ratio[16] = "n/a";
      if (b != NULL && b->measured) snprintf(ratio, sizeof ratio, "%.2fx", b->ms / p->ms);
      printf(" | %10.*f %7s", decode ? 1 : 2, grid_rate(p, p->ms, decode), ratio);
    }
    printf("\n");
  }
  fflush(stdout);
}

void bench_grid_csv(const bench_options *o, const bench_grid_device *devices, int count, int device_columns) {
  int decode = strcmp(o->grid, "decode") == 0;
  /* the peer columns: every peer shown on any of the devices, in the peers' order */
  int wanted[BENCH_PEER_COUNT] = {0}, shown[BENCH_PEER_COUNT], shown_count = 0;
  for (int i = 0; o->peers && i < count; i++) {
    int mine[BENCH_PEER_COUNT];
    int n = devices[i].points != NULL ? bench_peers_for_device(o, devices[i].device_id, mine) : 0;
    for (int j = 0; j < n; j++) wanted[mine[j]] = 1;
  }
  for (int k = 0; k < BENCH_PEER_COUNT; k++)
    if (wanted[k]) shown[shown_count++] = k;
  if (device_columns) printf("device_id,device,");
  if (decode)
    printf("dtype,head_dim,batch,seqlen_kv,heads,kv_heads,bytes,flops,flashjit_ms,flashjit_ms_min,flashjit_gbps,"
           "flashjit_tflops,config_source,config");
  else
    printf("dtype,head_dim,causal,seqlen,batch,heads,flops,flashjit_ms,flashjit_ms_min,flashjit_tflops,config_source,"
           "config");
  if (o->baseline) printf(",baseline_ms,baseline_%s,ratio_vs_baseline", decode ? "gbps" : "tflops");
  for (int j = 0; j < shown_count; j++)
    printf(",%s_ms,%s_%s,ratio_vs_%s", bench_peer_names[shown[j]], bench_peer_names[shown[j]],
           decode ? "gbps" : "tflops", bench_peer_names[shown[j]]);
  printf("\n");
  for (int i = 0; i < count; i++)
    for (int j = 0; j < devices[i].count; j++) {
      const bench_grid_point *p = &devices[i].points[j];
      if (device_columns) {
        printf("%s,", devices[i].device_id);
        json_write_escaped(stdout, devices[i].device);  /* a CSV field in quotes: a CPU's name has commas */
        printf(",");
      }
      if (decode)
        printf("%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%.6g,%.6g,", core_dtype_name(p->dtype),
               p->head_dim, p->batch, p->seqlen_kv, p->heads, p->kv_heads, p->bytes, p->flops);
      else
        printf("%s,%" PRId64 ",%d,%" PRId64 ",%" PRId64 ",%" PRId64 ",%.6g,", core_dtype_name(p->dtype), p->head_dim,
               p->causal, p->seqlen, p->batch, p->heads, p->flops);
      if (p->measured && decode)
        printf("%.6g,%.6g,%.6g,%.6g,%s,\"%s\"", p->ms, p->ms_min, grid_gbps(p->bytes, p->ms),
               grid_tflops(p->flops, p->ms), grid_source_word(p), p->config);
      else if (p->measured)
        printf("%.6g,%.6g,%.6g,%s,\"%s\"", p->ms, p->ms_min, grid_tflops(p->flops, p->ms), grid_source_word(p),
               p->config);
      else
        printf(decode ? ",,,,," : ",,,,");
      if (o->baseline && p->baseline_ms > 0.0) {
        printf(",%.6g,%.6g,", p->baseline_ms, grid_rate(p, p->baseline_ms, decode));
        if (p->measured) printf("%.4g", p->baseline_ms / p->ms);
      } else if (o->baseline) {
        printf(",,,");
      }
      for (int s = 0; s < shown_count; s++) {
        int k = shown[s];
        if (!p->peer_measured[k]) {
          printf(",,,");
          continue;
        }
        printf(",%.6g,%.6g,", p->peer_ms[k], grid_rate(p, p->peer_ms[k], decode));
        if (bench_peer_ratio(p, k) > 0.0) printf("%.4g", bench_peer_ratio(p, k));
      }
      printf("\n");
    }
  fflush(stdout);
}

/* One device's grid as one JSON object into w. */
static void grid_print_json(const bench_options *o, const bench_grid_device *d, json_writer *w) {
  const bench_grid_point *points = d->points;
  const bench_peers_status *peers = &d->peers;
  int count = d->count;
  json_object_begin(w);
  json_kv_string(w, "grid", o->grid);
  json_kv_string(w, "device", d->device);
  json_kv_string(w, "device_id", d->device_id);
  json_kv_bool(w, "device_auto", o->device_auto);
  json_kv_string(w, "timing", d->timing);
  json_kv_string(w, "flops_convention", "4*b*h*sq*skv*d, halved when causal");
  json_kv_int(w, "warmup", o->warmup);
  json_kv_int(w, "repeat", o->repeat);
  if (o->baseline) {
    json_key(w, "baseline");
    json_object_begin(w);
    json_kv_string(w, "file", o->baseline);
    json_kv_string(w, "device", bench_baseline_device(o, 0));
    json_kv_string(w, "device_id", bench_baseline_device(o, 1));
    json_object_end(w);
  }
  if (o->peers) {
    json_key(w, "peers");
    json_object_begin(w);
    json_kv_bool(w, "ran", peers->ran);
    json_kv_string(w, "note", peers->note);
    json_kv_string(w, "info", peers->info);
    json_key(w, "unavailable");
    json_object_begin(w);
    for (int k = 0; k < BENCH_PEER_COUNT; k++)
      if (peers->unavailable[k][0]) json_kv_string(w, bench_peer_names[k], peers->unavailable[k]);
    json_object_end(w);
    json_object_end(w);
  }
  json_key(w, "points");
  json_array_begin(w);
  for (int i = 0; i < count; i++) {
    const bench_grid_point *p = &points[i];
    json_object_begin(w);
    json_kv_string(w, "dtype", core_dtype_name(p->dtype));
    json_kv_int(w, "head_dim", p->head_dim);
    json_kv_bool(w, "causal", p->causal);
    json_kv_int(w, "seqlen", p->seqlen);
    json_kv_int(w, "seqlen_kv", p->seqlen_kv);
    json_kv_int(w, "batch", p->batch);
    json_kv_int(w, "heads", p->heads);
    json_kv_int(w, "kv_heads", p->kv_heads);
    json_kv_double(w, "flops", p->flops);
    json_kv_double(w, "bytes", p->bytes);
    json_kv_bool(w, "measured", p->measured);
    if (p->measured) {
      json_kv_double(w, "ms", p->ms);
      json_kv_double(w, "ms_min", p->ms_min);
      json_kv_double(w, "tflops", grid_tflops(p->flops, p->ms));
      json_kv_double(w, "gbps", grid_gbps(p->bytes, p->ms));
      json_kv_string(w, "config_source", p->config_source);
      json_kv_string(w, "config", p->config);
    }
    if (o->baseline && p->baseline_ms > 0.0) {
      json_key(w, "baseline");
      json_object_begin(w);
      json_kv_double(w, "ms", p->baseline_ms);
      json_kv_double(w, "tflops", grid_tflops(p->flops, p->baseline_ms));
      json_kv_double(w, "gbps", grid_gbps(p->bytes, p->baseline_ms));
      if (p->measured) json_kv_double(w, "ratio", p->baseline_ms / p->ms);
      json_object_end(w);
    }
    if (o->peers) {
      json_key(w, "peers");
      json_object_begin(w);
      for (int k = 0; k < BENCH_PEER_COUNT; k++) {
        if (!p->peer_measured[k] && !p->peer_error[k][0]) continue;
        json_key(w, bench_peer_names[k]);
        json_object_begin(w);
        if (p->peer_measured[k]) {
          json_kv_double(w, "ms", p->peer_ms[k]);
          json_kv_double(w, "ms_min", p->peer_ms_min[k]);
          json_kv_double(w, "tflops", grid_tflops(p->flops, p->peer_ms[k]));
          json_kv_double(w, "gbps", grid_gbps(p->bytes, p->peer_ms[k]));
          if (bench_peer_ratio(p, k) > 0.0) json_kv_double(w, "ratio", bench_peer_ratio(p, k));
        } else {
          json_kv_string(w, p->peer_unavailable[k] ? "unavailable" : "error", p->peer_error[k]);
        }
        json_object_end(w);
      }
      json_object_end(w);
    }
    json_object_end(w);
  }
  json_array_end(w);
  json_object_end(w);
}

static int grid_prefill_points(const bench_options *o, const grid_spec *g, bench_grid_point *points) {
  int count = 0;
  for (int t = 0; t < g->dtype_count; t++)
    for (int d = 0; d < g->head_dim_count; d++)
      for (int c = 0; c < g->causal_count; c++)
        for (int s = 0; s < g->seqlen_count && count < GRID_MAX_POINTS; s++) {
          bench_grid_point *p = &points[count++];
          p->dtype = g->dtypes[t];
          p->head_dim = g->head_dims[d];
          p->causal = g->causal_modes[c];
          p->seqlen = p->seqlen_kv = g->seqlens[s];
          p->batch = o->tokens / p->seqlen;
          p->heads = p->kv_heads = o->width / p->head_dim;
          p->flops = 4.0 * (double)p->batch * (double)p->heads * (double)p->seqlen * (double)p->seqlen *
                     (double)p->head_dim * (p->causal ? 0.5 : 1.0);
        }
  return count;
}

static int grid_decode_points(const bench_options *o, const grid_spec *g, bench_grid_point *points) {
  int64_t width = o->width_set ? o->width : GRID_DECODE_WIDTH;
  int64_t tokens = o->tokens_set ? o->tokens : GRID_DECODE_TOKENS;
  int count = 0;
  for (int t = 0; t < g->dtype_count; t++)
    for (int d = 0; d < g->head_dim_count; d++)
      for (int b = 0; b < g->batch_count; b++)
        for (int s = 0; s < g->seqlen_count && count < GRID_MAX_POINTS; s++) {
          if (g->batches[b] * g->seqlens[s] > tokens) continue;
          bench_grid_point *p = &points[count++];
          p->dtype = g->dtypes[t];
          p->head_dim = g->head_dims[d];
          p->causal = 0;
          p->seqlen = 1;
          p->seqlen_kv = g->seqlens[s];
          p->batch = g->batches[b];
          p->heads = width / p->head_dim;
          p->kv_heads = p->heads / GRID_DECODE_GROUP;
          p->flops = 4.0 * (double)p->batch * (double)p->heads * (double)p->seqlen_kv * (double)p->head_dim;
        }
  return count;
}

int bench_grid_measure(fj_context *context, const bench_options *o, bench_grid_device *d) {
  grid_spec g;
  int code = grid_spec_build(o, &g);
  if (code != CLI_EXIT_OK) return code;
  d->points = calloc(GRID_MAX_POINTS, sizeof *d->points);
  if (d->points == NULL) {
    cli_error(BENCH_COMMAND, "out of memory");
    return CLI_EXIT_FAILURE;
  }
  bench_grid_point *points = d->points;
  int count = d->count = g.decode ? grid_decode_points(o, &g, points) : grid_prefill_points(o, &g, points);
  d->failures = 0;

  fj_context_device_name(context, d->device, sizeof d->device);
  snprintf(d->device_id, sizeof d->device_id, "%s:%d", runtime_backend(context)->name, runtime_device_index(context));
  d->timing = runtime_timing_method(context);
  fprintf(stderr, "flashjit bench: grid %s, %d points on %s (%s)%s\n", o->grid, count, d->device, d->device_id,
          o->device_auto ? ", chosen by auto: the best device found" : "");

  for (int i = 0; i < count; i++) {
    bench_grid_point *p = &points[i];
    bench_options one = *o;
    one.grid = NULL;
    one.batch = p->batch;
    one.heads = p->heads;
    one.kv_heads = p->kv_heads;
    one.seqlen = p->seqlen;
    one.seqlen_kv = p->seqlen_kv;
    one.head_dim = one.head_dim_v = p->head_dim;
    one.dtype = one.kv_dtype = p->dtype;
    one.causal = p->causal;
    one.check = 0;
    one.config = NULL;
    bench_result r;
    memset(&r, 0, sizeof r);
    int rc = bench_measure(context, &one, NULL, &r);
    if (rc == CLI_EXIT_OK) {
      p->measured = 1;
      p->ms = r.ms_median;
      p->ms_min = r.ms_min;
      p->bytes = r.bytes;
      snprintf(p->config, sizeof p->config, "%s", r.config);
      snprintf(p->config_source, sizeof p->config_source, "%s", r.config_source);
    } else {
      d->failures++;
    }
    if (g.decode)
      fprintf(stderr, "flashjit bench: [%d/%d] %s d%" PRId64 " decode b%" PRId64 " kv%" PRId64 " h%" PRId64 "/%" PRId64
              ": ", i + 1, count, core_dtype_name(p->dtype), p->head_dim, p->batch, p->seqlen_kv, p->heads, p->kv_heads);
    else
      fprintf(stderr, "flashjit bench: [%d/%d] %s d%" PRId64 " %s s%" PRId64 " b%" PRId64 " h%" PRId64 ": ", i + 1,
              count, core_dtype_name(p->dtype), p->head_dim, p->causal ? "causal" : "full", p->seqlen, p->batch,
              p->heads);
    if (p->measured)
      fprintf(stderr, "%.3f ms, %.2f TFLOP/s, %.1f GB/s (%s)\n", p->ms, grid_tflops(p->flops, p->ms),
              grid_gbps(p->bytes, p->ms), p->config_source);
    else
      fprintf(stderr, "failed\n");
  }

  memset(&d->peers, 0, sizeof d->peers);
  if (o->peers) bench_peers_run(o, d->device_id, points, count, o->warmup, o->repeat, &d->peers);
  if (o->baseline != NULL && bench_baseline_apply(o, points, count) == 0)
    fprintf(stderr, "flashjit bench: --baseline=%s: no point of it matches one of this grid's\n", o->baseline);
  return CLI_EXIT_OK;
}

void bench_grid_report(const bench_options *o, const bench_grid_device *d, json_writer *json) {
  if (json != NULL)
    grid_print_json(o, d, json);
  else if (o->csv)
    bench_grid_csv(o, d, 1, 0);
  else
    grid_print_table(o, d);
}

int bench_grid_exit(const bench_options *o, const bench_grid_device *d) {
  if (d->failures == 0) return CLI_EXIT_OK;
  cli_error(BENCH_COMMAND, "--grid=%s: %d of %d points failed on %s (their errors are above)", o->grid, d->failures,
            d->count, d->device_id);
  return CLI_EXIT_FAILURE;
}

void bench_grid_device_free(bench_grid_device *d) {
  free(d->points);
  d->points = NULL;
  d->count = 0;
}

int bench_grid_run(fj_context *context, bench_options *o) {
  bench_grid_device d;
  memset(&d, 0, sizeof d);
  int code = bench_grid_measure(context, o, &d);
  if (code == CLI_EXIT_OK) {
    if (o->json) {
      json_writer w;
      json_init(&w, stdout);
      bench_grid_report(o, &d, &w);
      json_finish(&w);
    } else {
      bench_grid_report(o, &d, NULL);
    }
    code = bench_grid_exit(o, &d);
    if (o->plot != NULL) {
      int plot_code = bench_plot_write(o, &d, 1);
      if (plot_code > code) code = plot_code;
    }
  }
  bench_grid_device_free(&d);
  return code;
}
