/* cmd_info.c: `flashjit info`: what this machine offers flashjit: every backend and its devices (or why
 * it has none: "libcuda.so.1: cannot open shared object file", "cuInit: CUDA_ERROR_NO_DEVICE ..."), the
 * cache folder, the LLVM version, the host CPU as LLVM sees it, and the measured peak fp32 FMA rate of
 * each CPU device, the ceiling that bench figures are read against. GPUs are listed with their arch,
 * SM count, memory and driver version, and the peaks their backend measures (tensor-core TFLOP/s, a
 * device copy's GB/s). */
#include <string.h>

#include "backends/backend.h"
#include "backends/cpu/cpu_peak.h"
#include "bench/cli.h"
#include "bench/json.h"
#include "cache/binary_cache.h"
#include "core/threadpool.h"
#include "flashjit.h"
#include "jit/jit.h"
#include "runtime/runtime.h"

void cmd_info_help(FILE *out) {
  fprintf(out,
          "usage: flashjit info [--json]\n"
          "\n"
          "Lists the devices flashjit finds (and why a backend has none), the cache folder, the LLVM\n"
          "version, the host CPU's name and features, and the measured peak fp32 FMA rate of each CPU\n"
          "device on all its cores, and where it has AVX512-BF16 the peak of its bf16 pair dot, the\n"
          "instruction bf16 kernels run on there (takes about a second). Each GPU's peaks are measured\n"
          "too, with kernels of flashjit's own whose results are checked: its tensor cores' dense rate\n"
          "through mma.sync (the instruction the attention kernels use) and a device-memory copy's GB/s\n"
          "(bytes read + written); about a second per GPU.\n"
          "\n"
          "  --json   one JSON object instead of text\n");
}

typedef struct info_device {
  const fj_backend *backend;
  int index;
  backend_device_info info;
  fj_status info_status;
  char info_error[256];
  int is_cpu;
  int peak_threads;
  double peak_gflops;  /* 0 when not measured */
  char peak_detail[160];
  char peak_error[256];
  double bf16_peak_gflops;  /* 0 when the CPU has no bf16 pair dot */
  char bf16_peak_detail[160];
  int served;                /* problem lines in the device's served file; -1: no file */
  char served_path[4200];
  int has_device_peak;       /* the backend measured its own peaks (GPUs): device_peak below */
  backend_peak device_peak;
} info_device;

#define INFO_MAX_DEVICES 64

/* Everything info gathers before printing. Errors are kept as text at once: the thread-local message
 * is overwritten by the next call that fails. */
typedef struct info_report {
  char cache_dir[4096];
  fj_status cache_status;
  char cache_error[512];
  jit_target host;
  fj_status host_status;
  char host_error[512];
  info_device devices[INFO_MAX_DEVICES];
  int count;
} info_report;

static double info_gib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0 * 1024.0); }

/* All online cores at once: the figure a kernel using every core is read against. */
static void info_measure_peak(info_device *d) {
  d->peak_threads = core_online_cores();
  fj_status status = cpu_peak_gflops(d->peak_threads, &d->peak_gflops, d->peak_detail,
                                     sizeof d->peak_detail);
  if (status != FJ_OK) {
    d->peak_gflops = 0.0;
    snprintf(d->peak_error, sizeof d->peak_error, "%s: %s", fj_status_string(status), fj_last_error());
    /* LLVM's messages span lines; info prints one line per fact */
    for (char *c = d->peak_error; *c; c++)
      if (*c == '\n') *c = ' ';
  }
  if (cpu_peak_bf16_dot_gflops(d->peak_threads, &d->bf16_peak_gflops, d->bf16_peak_detail,
                               sizeof d->bf16_peak_detail) != FJ_OK)
    d->bf16_peak_gflops = 0.0;  /* no AVX512-BF16: nothing to say */
}

/* The problem lines of a device's served file (runtime_served_file), or -1 when there is none. */
static int info_served_count(const char *cache_dir, const char *backend, int index, char *path, size_t size) {
  runtime_served_file(cache_dir, backend, index, path, size);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  int count = 0, at_start = 1, c;
  while ((c = fgetc(f)) != EOF) {
    if (at_start && c != '#' && c != '\n') count++;
    at_start = c == '\n';
  }
  fclose(f);
  return count;
}

static void info_gather(info_report *r) {
  memset(r, 0, sizeof *r);
  r->cache_status = bincache_default_dir(r->cache_dir, sizeof r->cache_dir);
  if (r->cache_status != FJ_OK) snprintf(r->cache_error, sizeof r->cache_error, "%s", fj_last_error());
  r->host_status = jit_host_target(&r->host);
  if (r->host_status != FJ_OK) snprintf(r->host_error, sizeof r->host_error, "%s", fj_last_error());

  for (int b = 0; b < backend_count(); b++) {
    const fj_backend *backend = backend_get(b);
    if (backend == NULL) continue;
    int n = backend->device_count();
    for (int i = 0; i < n && r->count < INFO_MAX_DEVICES; i++) {
      info_device *d = &r->devices[r->count++];
      d->backend = backend;
      d->index = i;
      d->info_status = backend->device_info(i, &d->info);
      if (d->info_status != FJ_OK) snprintf(d->info_error, sizeof d->info_error, "%s", fj_last_error());
      d->is_cpu = backend->device_type == kDLCPU;
      d->served = r->cache_status == FJ_OK ? info_served_count(r->cache_dir, backend->name, i, d->served_path,
                                                               sizeof d->served_path)
                                           : -1;
      if (d->is_cpu) info_measure_peak(d);
      if (!d->is_cpu && backend->device_peak != NULL && d->info_status == FJ_OK) {
        d->has_device_peak = 1;
        if (backend->device_peak(i, &d->device_peak) != FJ_OK)
          snprintf(d->device_peak.matrix_note, sizeof d->device_peak.matrix_note, "%s", fj_last_error());
      }
    }
  }
}

static const char *info_unavailable(const fj_backend *backend) {
  const char *why = backend->unavailable_reason ? backend->unavailable_reason() : NULL;
  return why ? why : "";
}

/* What a device's compute units are called where they are listed. */
static const char *info_unit_name(const info_device *d) {
  if (d->is_cpu) return "cores";
  if (strcmp(d->backend->name, "cuda") == 0) return "SMs";
  return "compute units";
}

static void info_print_text(const info_report *r) {
  const jit_target *host = &r->host;
  printf("flashjit   %s\n", fj_version_string());
  printf("llvm       %s\n", jit_llvm_version());
  if (r->cache_status == FJ_OK)
    printf("cache      %s\n", r->cache_dir);
  else
    printf("cache      unavailable (%s)\n", r->cache_error);
  if (r->host_status == FJ_OK)
    printf("host       %s, %s, %d-bit vectors, %d vector registers%s%s%s\n", host->cpu, host->triple,
           host->vector_bits, host->vector_registers, host->has_fma ? ", fma" : "",
           host->has_f16c ? ", f16c" : "", host->has_avx512bf16 ? ", avx512bf16" : "");
  else
    printf("host       unknown (%s)\n", r->host_error);

  printf("devices\n");
  for (int i = 0; i < r->count; i++) {
    const info_device *d = &r->devices[i];
    char id[48];
    snprintf(id, sizeof id, "%s:%d", d->backend->name, d->index);
    if (d->info_status != FJ_OK) {
      printf("  %-8s unreadable (%s)\n", id, d->info_error);
      continue;
    }
    printf("  %-8s %s (%s, %d %s, %.1f GiB%s%s)\n", id, d->info.name, d->info.arch,
           d->info.compute_units, info_unit_name(d), info_gib(d->info.memory_bytes),
           d->info.driver_version[0] ? ", driver " : "", d->info.driver_version);
    if (d->is_cpu && d->peak_gflops > 0.0)
      printf("           peak %.1f GFLOP/s fp32 FMA (%s)\n", d->peak_gflops, d->peak_detail);
    if (d->is_cpu && d->bf16_peak_gflops > 0.0) {
      printf("           peak %.1f GFLOP/s bf16 pair dot (%s)\n", d->bf16_peak_gflops, d->bf16_peak_detail);
      /* the default's product for bf16 comes from the CPU's name (jit_target.bf16_dot_fast); say where
       * the peaks just measured disagree with it */
      int pairs = host->bf16_dot_fast, pairs_faster = d->bf16_peak_gflops > d->peak_gflops;
      printf("           bf16 default: %s%s\n", pairs ? "pairs (bf16_dot=1)" : "fp32 tiles (bf16_dot=0)",
             d->peak_gflops > 0.0 && pairs != pairs_faster ? "; the peaks say the other is faster here: tune bf16 shapes"
                                                           : "");
    } else if (d->is_cpu)
      printf("           peak unmeasured (%s)\n", d->peak_error);
    if (d->served >= 0)
      printf("           served %d problem%s noted in %s (flashjit tune --served)\n", d->served,
             d->served == 1 ? "" : "s", d->served_path);
    if (d->has_device_peak) {
      const backend_peak *p = &d->device_peak;
      if (p->matrix_tflops > 0.0)
        printf("           peak %.1f TFLOP/s (%s)\n", p->matrix_tflops, p->matrix_note);
      else
        printf("           peak unmeasured (%s)\n", p->matrix_note);
      if (p->copy_gbps > 0.0)
        printf("           copy %.0f GB/s (%s)\n", p->copy_gbps, p->copy_note);
      else if (p->copy_note[0])
        printf("           copy unmeasured (%s)\n", p->copy_note);
    }
  }
  if (r->count == 0) printf("  none\n");
  for (int b = 0; b < backend_count(); b++) {
    const fj_backend *backend = backend_get(b);
    if (backend == NULL || backend->device_count() > 0) continue;
    const char *why = info_unavailable(backend);
    printf("  %-8s no devices%s%s\n", backend->name, why[0] ? ": " : "", why);
  }
}

static void info_print_json(const info_report *r) {
  const jit_target *host = &r->host;
  json_writer w;
  json_init(&w, stdout);
  json_object_begin(&w);
  json_kv_string(&w, "version", fj_version_string());
  json_kv_string(&w, "llvm", jit_llvm_version());
  json_kv_string(&w, "cache_dir", r->cache_status == FJ_OK ? r->cache_dir : NULL);
  if (r->cache_status != FJ_OK) json_kv_string(&w, "cache_error", r->cache_error);

  json_key(&w, "devices");
  json_array_begin(&w);
  for (int i = 0; i < r->count; i++) {
    const info_device *d = &r->devices[i];
    char id[48];
    snprintf(id, sizeof id, "%s:%d", d->backend->name, d->index);
    json_object_begin(&w);
    json_kv_string(&w, "id", id);
    json_kv_string(&w, "backend", d->backend->name);
    if (d->info_status == FJ_OK) {
      json_kv_string(&w, "name", d->info.name);
      json_kv_string(&w, "arch", d->info.arch);
      json_kv_int(&w, "compute_units", d->info.compute_units);
      if (strcmp(d->backend->name, "cuda") == 0) json_kv_int(&w, "sm_count", d->info.compute_units);
      json_kv_uint(&w, "memory_bytes", d->info.memory_bytes);
      json_kv_string(&w, "driver_version", d->info.driver_version);
      json_kv_string(&w, "fingerprint", d->info.fingerprint);
    } else {
      json_kv_string(&w, "error", d->info_error);
    }
    if (d->is_cpu) {
      json_key(&w, "peak_gflops");
      if (d->peak_gflops > 0.0)
        json_double(&w, d->peak_gflops);
      else
        json_null(&w);
      json_kv_int(&w, "peak_threads", d->peak_threads);
      if (d->peak_gflops > 0.0)
        json_kv_string(&w, "peak_detail", d->peak_detail);
      else
        json_kv_string(&w, "peak_error", d->peak_error);
      json_key(&w, "peak_bf16_dot_gflops");
      if (d->bf16_peak_gflops > 0.0)
        json_double(&w, d->bf16_peak_gflops);
      else
        json_null(&w);
    }
    if (d->served >= 0) {
      json_kv_int(&w, "served_problems", d->served);
      json_kv_string(&w, "served_file", d->served_path);
    }
    if (d->has_device_peak) {
      const backend_peak *p = &d->device_peak;
      json_key(&w, "peak_tflops");
      if (p->matrix_tflops > 0.0)
        json_double(&w, p->matrix_tflops);
      else
        json_null(&w);
      json_kv_string(&w, p->matrix_tflops > 0.0 ? "peak_detail" : "peak_error", p->matrix_note);
      json_key(&w, "copy_gbps");
      if (p->copy_gbps > 0.0)
        json_double(&w, p->copy_gbps);
      else
        json_null(&w);
      json_kv_string(&w, p->copy_gbps > 0.0 ? "copy_detail" : "copy_error", p->copy_note);
    }
    json_object_end(&w);
  }
  json_array_end(&w);

  json_key(&w, "backends");
  json_array_begin(&w);
  for (int b = 0; b < backend_count(); b++) {
    const fj_backend *backend = backend_get(b);
    if (backend == NULL) continue;
    int n = backend->device_count();
    json_object_begin(&w);
    json_kv_string(&w, "name", backend->name);
    json_kv_int(&w, "devices", n > 0 ? n : 0);
    if (n <= 0) json_kv_string(&w, "unavailable", info_unavailable(backend));
    json_object_end(&w);
  }
  json_array_end(&w);

  json_key(&w, "host");
  json_object_begin(&w);
  if (r->host_status == FJ_OK) {
    json_kv_string(&w, "cpu", host->cpu);
    json_kv_string(&w, "triple", host->triple);
    json_kv_int(&w, "vector_bits", host->vector_bits);
    json_kv_int(&w, "vector_registers", host->vector_registers);
    json_kv_bool(&w, "fma", host->has_fma);
    json_kv_bool(&w, "f16c", host->has_f16c);
    json_kv_bool(&w, "avx512bf16", host->has_avx512bf16);
    json_kv_bool(&w, "bf16_dot_default", host->bf16_dot_fast);
    json_kv_int(&w, "online_cores", core_online_cores());
    json_kv_string(&w, "features", host->features);
  } else {
    json_kv_string(&w, "error", r->host_error);
  }
  json_object_end(&w);
  json_object_end(&w);
  json_finish(&w);
}

int cmd_info(int argc, char **argv) {
  int as_json = 0;
  const cli_option options[] = {{"--json", CLI_FLAG, &as_json, 0, 0, NULL}};
  switch (cli_parse("info", argc, argv, options, (int)(sizeof options / sizeof options[0]))) {
    case CLI_PARSE_HELP: cmd_info_help(stdout); return CLI_EXIT_OK;
    case CLI_PARSE_ERROR: return CLI_EXIT_USAGE;
    case CLI_PARSE_OK: break;
  }
  /* static: 64 device records are too much for a stack frame */
  static info_report report;
  info_gather(&report);
  if (as_json)
    info_print_json(&report);
  else
    info_print_text(&report);
  return CLI_EXIT_OK;
}
