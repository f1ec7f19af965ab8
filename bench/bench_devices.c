/* bench_devices.c: `flashjit bench --device all` (every device found) or --device with a comma list
 * ("cpu,cuda:0,cuda:1"): the same shape on each device in turn, each with the whole report one device
 * gets, then one table that sets them side by side, each device's throughput as a ratio to the first
 * measured one's: a CPU against its GPU, or one GPU against its neighbours in the same box, from one command.
 * With --json the reports are one array of the devices' objects. With --grid, the grid on each device and
 * then each point's rate side by side (engineers comparing machines). Every name is resolved before anything
 * runs, so a misspelt device costs no measurement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "bench/bench.h"
#include "bench/cli.h"
#include "bench/json.h"
#include "core/error.h"

#define BENCH_MAX_DEVICES 64

typedef struct bench_device_row {
  char id[64];        /* "cuda:1": the backend's name and the device's index */
  const fj_backend *backend;
  int code;           /* bench_device's exit code */
  char error[320];    /* the library's message when it failed, or "" */
  bench_result r;
} bench_device_row;

/* Adds the device name resolves to, unless it is there already; CLI_EXIT_OK or the exit code after the
 * error. */
static int bench_devices_add(const bench_options *o, const char *name, bench_device_row *rows, int *count) {
  if (name[0] == '\0' || strcmp(name, "auto") == 0 || strcmp(name, "all") == 0) {
    cli_error(BENCH_COMMAND, "%s: \"%s\" in a list: name each device (cpu, cuda:N), or give all alone",
              o->device_flag, name);
    return CLI_EXIT_USAGE;
  }
  const fj_backend *backend = NULL;
  int index = -1;
  fj_status status = backend_select(name, &backend, &index);
  if (status != FJ_OK) {
    cli_error(BENCH_COMMAND, "%s: %s", o->device_flag, fj_last_error());
    return status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
  }
  char id[64];
  snprintf(id, sizeof id, "%s:%d", backend->name, index);
  for (int i = 0; i < *count; i++)
    if (strcmp(rows[i].id, id) == 0) {
      cli_error(BENCH_COMMAND, "%s: %s is named twice", o->device_flag, id);
      return CLI_EXIT_USAGE;
    }
  if (*count == BENCH_MAX_DEVICES) {
    cli_error(BENCH_COMMAND, "%s: more than %d devices", o->device_flag, BENCH_MAX_DEVICES);
    return CLI_EXIT_USAGE;
  }
  snprintf(rows[*count].id, sizeof rows[*count].id, "%s", id);
  rows[*count].backend = backend;
  (*count)++;
  return CLI_EXIT_OK;
}

/* The devices of o->device_list, in its order ("all": every backend's devices in the registry's order). */
static int bench_devices_resolve(const bench_options *o, bench_device_row *rows, int *count) {
  *count = 0;
  if (strcmp(o->device_list, "all") == 0) {
    for (int b = 0; b < backend_count(); b++) {
      const fj_backend *backend = backend_get(b);
      int n = backend->device_count ? backend->device_count() : 0;
      for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s:%d", backend->name, i);
        int code = bench_devices_add(o, name, rows, count);
        if (code != CLI_EXIT_OK) return code;
      }
    }
    if (*count == 0) {
      cli_error(BENCH_COMMAND, "%s: no devices found", o->device_flag);
      return CLI_EXIT_FAILURE;
    }
  } else {
    const char *p = o->device_list;
    for (;;) {
      size_t n = strcspn(p, ",");
      char name[64];
      if (n >= sizeof name) {
        cli_error(BENCH_COMMAND, "%s: a device name of %zu characters", o->device_flag, n);
        return CLI_EXIT_USAGE;
      }
      memcpy(name, p, n);
      name[n] = '\0';
      int code = bench_devices_add(o, name, rows, count);
      if (code != CLI_EXIT_OK) return code;
      if (p[n] == '\0') break;
      p += n + 1;
    }
  }
  /* A config belongs to one backend's kernel family: it can run on several devices of that backend. */
  for (int i = 1; o->config != NULL && i < *count; i++)
    if (rows[i].backend != rows[0].backend) {
      cli_error(BENCH_COMMAND, "--config with %s: %s and %s are devices of different backends, and a config "
                "belongs to one backend's kernel family", o->device_flag, rows[0].id, rows[i].id);
      return CLI_EXIT_USAGE;
    }
  return CLI_EXIT_OK;
}

static void bench_devices_table(const bench_device_row *rows, int count) {
  const bench_device_row *base = &rows[0];  /* the first device measured */
  for (int i = count - 1; i >= 0; i--)
    if (rows[i].r.ms_median > 0.0) base = &rows[i];
  int width = 6;
  for (int i = 0; i < count; i++) {
    int n = (int)strlen(rows[i].r.device_name);
    if (rows[i].code == CLI_EXIT_OK && n > width) width = n > 40 ? 40 : n;
  }
  printf("\ndevices     the same problem on %d device%s; x = throughput / %s's\n", count, count == 1 ? "" : "s", base->id);
  printf("  %-8s %-*s %-14s %12s %12s %10s %9s  %s\n", "id", width, "device", "config", "median ms", "GFLOP/s",
         "GB/s", "x", "check");
  for (int i = 0; i < count; i++) {
    const bench_device_row *row = &rows[i];
    const bench_result *r = &row->r;
    if (r->ms_median <= 0.0) {
      printf("  %-8s failed (exit %d): %s\n", row->id, row->code,
             row->error[0] ? row->error : "the message above");
      continue;
    }
    char ratio[32] = "n/a";
    if (base->r.ms_median > 0.0) snprintf(ratio, sizeof ratio, "%.2fx", base->r.ms_median / r->ms_median);
    printf("  %-8s %-*.*s %-14s %12.3f %12.1f %10.1f %9s  %s\n", row->id, width, width, r->device_name,
           r->config_source[0] ? r->config_source : r->config_from, r->ms_median, r->gflops, r->gbps, ratio,
           !r->checked ? "-" : r->check_passed ? "ok" : "FAILED");
  }
}

/* --grid on each device in turn: each device's table as it is measured (CSV and JSON at the end: one
 * document), then the points side by side. Returns the worst exit code. */
static int bench_devices_grid(bench_options *o, bench_device_row *rows, int count) {
  bench_grid_device *grids = calloc((size_t)count, sizeof *grids);
  if (grids == NULL) {
    cli_error(BENCH_COMMAND, "no memory for %d devices' grids", count);
    return CLI_EXIT_FAILURE;
  }
  int worst = CLI_EXIT_OK, printed = 0;
  for (int i = 0; i < count; i++) {
    bench_grid_device *d = &grids[i];
    snprintf(d->device_id, sizeof d->device_id, "%s", rows[i].id);
    o->device = rows[i].id;
    snprintf(o->device_flag, sizeof o->device_flag, "--device=%s", rows[i].id);
    core_error_clear();
    fj_context *context = NULL;
    int code = bench_open(o, &context);
    if (code == CLI_EXIT_OK) {
      code = bench_grid_measure(context, o, d);
      fj_context_destroy(context);
    }
    if (d->points == NULL) {
      snprintf(d->error, sizeof d->error, "%s", fj_last_error());
    } else {
      if (!o->json && !o->csv) {
        if (printed++ > 0) printf("\n");
        bench_grid_report(o, d, NULL);
      }
      if (code == CLI_EXIT_OK) code = bench_grid_exit(o, d);
    }
    rows[i].code = code;
    if (code > worst) worst = code;
  }
  if (o->json) {
    json_writer w;
    json_init(&w, stdout);
    json_array_begin(&w);
    for (int i = 0; i < count; i++) {
      if (grids[i].points != NULL) {
        bench_grid_report(o, &grids[i], &w);
        continue;
      }
      json_object_begin(&w);
      json_kv_string(&w, "device_id", grids[i].device_id);
      json_kv_int(&w, "exit", rows[i].code);
      json_kv_string(&w, "error", grids[i].error[0] ? grids[i].error : "see stderr");
      json_object_end(&w);
    }
    json_array_end(&w);
    json_finish(&w);
  } else if (o->csv) {
    bench_grid_csv(o, grids, count, 1);
  } else {
    bench_grid_compare(o, grids, count);
  }
  if (o->plot != NULL) {
    int code = bench_plot_write(o, grids, count);
    if (code > worst) worst = code;
  }
  for (int i = 0; i < count; i++) bench_grid_device_free(&grids[i]);
  free(grids);
  return worst;
}

int bench_devices_run(bench_options *o) {
  bench_device_row *rows = calloc(BENCH_MAX_DEVICES, sizeof *rows);
  if (rows == NULL) {
    cli_error(BENCH_COMMAND, "no memory for %d devices' results", BENCH_MAX_DEVICES);
    return CLI_EXIT_FAILURE;
  }
  int count = 0;
  int worst = bench_devices_resolve(o, rows, &count);
  if (worst != CLI_EXIT_OK) {
    free(rows);
    return worst;
  }
  if (o->grid != NULL) {
    worst = bench_devices_grid(o, rows, count);
    free(rows);
    return worst;
  }
  json_writer w;
  if (o->json) {
    json_init(&w, stdout);
    json_array_begin(&w);
  }
  for (int i = 0; i < count; i++) {
    bench_device_row *row = &rows[i];
    o->device = row->id;
    snprintf(o->device_flag, sizeof o->device_flag, "--device=%s", row->id);
    if (!o->json && i > 0) printf("\n");
    core_error_clear();
    int objects = o->json ? w.count[w.depth] : 0;
    row->code = bench_device(o, &row->r, o->json ? &w : NULL);
    if (row->code != CLI_EXIT_OK) snprintf(row->error, sizeof row->error, "%s", fj_last_error());
    if (o->json && w.count[w.depth] == objects) {
      /* it failed before its report: an object that says so keeps the array one entry per device */
      json_object_begin(&w);
      json_kv_string(&w, "device_id", row->id);
      json_kv_int(&w, "exit", row->code);
      json_kv_string(&w, "error", row->error[0] ? row->error : "see stderr");
      json_object_end(&w);
    }
    if (row->code > worst) worst = row->code;
    fflush(stdout);
  }
  if (o->json) {
    json_array_end(&w);
    json_finish(&w);
  } else {
    bench_devices_table(rows, count);
  }
  free(rows);
  return worst;
}
