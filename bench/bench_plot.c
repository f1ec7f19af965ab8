/* bench_plot.c: `flashjit bench --grid ... --plot FILE.svg`: the grid drawn as one SVG file, a panel per
 * dtype, head dim and mask (decode: per dtype, head dim and batch), the sequence length on a log2 axis
 * across and the rate up (TFLOP/s, or GB/s for decode steps), one line per series: flashjit on each
 * device, solid, and each peer that measured something, dashed. Plain SVG 1.1 written here, so that a
 * browser shows it and nothing has to be installed. The file is written beside its final name and
 * renamed into place, so a failed write never leaves half a picture over an earlier one. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/cli.h"

#define PLOT_PANEL_W 360
#define PLOT_PANEL_H 260
#define PLOT_LEFT 58    /* room for the rate's tick labels */
#define PLOT_RIGHT 14
#define PLOT_TOP 30     /* the panel's title */
#define PLOT_BOTTOM 42  /* the length's tick labels and the axis name */
#define PLOT_COLUMNS 4
#define PLOT_LEGEND_W 210
#define PLOT_MAX_SERIES 64

static const char *const plot_colors[] = {"#1b5e9f", "#d2691e", "#2e8b57", "#b22222", "#6a3d9a",
                                          "#8b6914", "#c71585", "#555555", "#008b8b", "#7f7f00"};

typedef struct plot_series {
  const bench_grid_device *device;
  int peer;  /* -1: flashjit, -2: --baseline's run, else the peer's index in bench_peer_names */
  char label[160];
} plot_series;

typedef struct plot {
  const bench_options *o;
  int decode;
  const bench_grid_device *devices;
  int device_count;
  const bench_grid_device *layout;  /* a measured device: every device has the same points in this order */
  plot_series series[PLOT_MAX_SERIES];
  int series_count;
} plot;

/* A point's rate in series s, or a negative number where it has none. */
static double plot_value(const plot *pl, const plot_series *s, int point) {
  const bench_grid_point *p = &s->device->points[point];
  double ms = s->peer == -2 ? p->baseline_ms
               : s->peer < 0 ? (p->measured ? p->ms : 0.0)
                             : (p->peer_measured[s->peer] ? p->peer_ms[s->peer] : 0.0);
  if (ms <= 0.0) return -1.0;
  return pl->decode ? p->bytes / (ms * 1e-3) / 1e9 : p->flops / (ms * 1e-3) / 1e12;
}

static int64_t plot_x(const plot *pl, const bench_grid_point *p) { return pl->decode ? p->seqlen_kv : p->seqlen; }

/* Two points share a panel when they differ only in their length. */
static int plot_same_panel(const plot *pl, const bench_grid_point *a, const bench_grid_point *b) {
  return a->dtype == b->dtype && a->head_dim == b->head_dim &&
         (pl->decode ? a->batch == b->batch : a->causal == b->causal);
}

static void plot_add_series(plot *pl, const bench_grid_device *d, int peer) {
  if (pl->series_count == PLOT_MAX_SERIES) return;
  plot_series *s = &pl->series[pl->series_count];
  s->device = d;
  s->peer = peer;
  int any = 0;
  for (int j = 0; j < d->count && !any; j++) any = plot_value(pl, s, j) >= 0.0;
  if (!any) return;
  const char *who = peer == -2 ? "baseline" : peer < 0 ? "flashjit" : bench_peer_names[peer];
  if (peer == -2)
    snprintf(s->label, sizeof s->label, "baseline: %s %s", bench_baseline_device(pl->o, 1),
             bench_baseline_device(pl->o, 0));
  else if (pl->device_count > 1)
    snprintf(s->label, sizeof s->label, "%s on %s", who, d->device_id);
  else
    snprintf(s->label, sizeof s->label, "%s", who);
  pl->series_count++;
}

/* The line's look: flashjit's solid and wide, a peer's dashed, the baseline's dotted. */
static void plot_stroke(FILE *f, const plot_series *s, int index) {
  fprintf(f, " stroke=\"%s\" stroke-width=\"%s\"%s", plot_colors[index % (int)(sizeof plot_colors / sizeof plot_colors[0])],
          s->peer == -1 ? "2.5" : "1.5",
          s->peer == -1 ? "" : s->peer == -2 ? " stroke-dasharray=\"2 3\"" : " stroke-dasharray=\"6 3\"");
}

/* Writes text with XML's five special characters escaped. */
static void plot_text(FILE *f, const char *text) {
  for (const char *c = text; *c; c++) switch (*c) {
      case '&': fputs("&amp;", f); break;
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&apos;", f); break;
      default: fputc(*c, f);
    }
}

/* 1, 2 or 5 times a power of ten, at least v: the rate axis ends there. */
static double plot_nice_ceiling(double v) {
  if (!(v > 0.0)) return 1.0;
  double step = pow(10.0, floor(log10(v)));
  for (;;) {
    if (v <= step) return step;
    if (v <= 2 * step) return 2 * step;
    if (v <= 5 * step) return 5 * step;
    step *= 10;
  }
}

/* A length as the axis labels it: 512, 4k, 64k. */
static void plot_length_label(char *out, size_t size, int64_t n) {
  if (n >= 1024 && n % 1024 == 0)
    snprintf(out, size, "%" PRId64 "k", n / 1024);
  else
    snprintf(out, size, "%" PRId64, n);
}

/* One panel at (x0, y0): the points in `members` (sorted by length), every series' line through them. */
static void plot_panel(FILE *f, const plot *pl, const int *members, int count, int x0, int y0) {
  const bench_grid_point *first = &pl->layout->points[members[0]];
  char title[96];
  if (pl->decode)
    snprintf(title, sizeof title, "%s d%" PRId64 ", batch %" PRId64 ", %" PRId64 "/%" PRId64 " heads",
             core_dtype_name(first->dtype), first->head_dim, first->batch, first->heads, first->kv_heads);
  else
    snprintf(title, sizeof title, "%s d%" PRId64 ", %s", core_dtype_name(first->dtype), first->head_dim,
             first->causal ? "causal" : "not causal");
  int left = x0 + PLOT_LEFT, right = x0 + PLOT_PANEL_W - PLOT_RIGHT;
  int top = y0 + PLOT_TOP, bottom = y0 + PLOT_PANEL_H - PLOT_BOTTOM;
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\">", (left + right) / 2, y0 + 18);
  plot_text(f, title);
  fprintf(f, "</text>\n");

  double most = 0.0;
  for (int s = 0; s < pl->series_count; s++)
    for (int i = 0; i < count; i++) {
      double v = plot_value(pl, &pl->series[s], members[i]);
      if (v > most) most = v;
    }
  double ceiling = plot_nice_ceiling(most);
  double lo = log2((double)plot_x(pl, first)), hi = log2((double)plot_x(pl, &pl->layout->points[members[count - 1]]));
  double pad = hi > lo ? (hi - lo) * 0.05 : 1.0;
  lo -= pad;
  hi += pad;
#define PLOT_X(len) (left + (right - left) * ((log2((double)(len)) - lo) / (hi - lo)))
#define PLOT_Y(v) (bottom - (bottom - top) * ((v) / ceiling))

  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", left, top,
          right - left, bottom - top);
  for (int t = 0; t <= 5; t++) {
    double v = ceiling * t / 5.0;
    double y = PLOT_Y(v);
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", left, y, right, y);
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", left - 5, y + 4, v);
  }
  for (int i = 0; i < count; i++) {
    int64_t len = plot_x(pl, &pl->layout->points[members[i]]);
    if (i > 0 && len == plot_x(pl, &pl->layout->points[members[i - 1]])) continue;
    char label[32];
    plot_length_label(label, sizeof label, len);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", PLOT_X(len), bottom + 16, label);
  }
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", (left + right) / 2, bottom + 34,
          pl->decode ? "cache length (keys)" : "sequence length");
  fprintf(f, "<text transform=\"translate(%d %d) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", x0 + 14,
          (top + bottom) / 2, pl->decode ? "GB/s" : "TFLOP/s");

  for (int s = 0; s < pl->series_count; s++) {
    const plot_series *series = &pl->series[s];
    const char *color = plot_colors[s % (int)(sizeof plot_colors / sizeof plot_colors[0])];
    /* a point without a figure breaks the line: a failed run is not drawn as a slope */
    fprintf(f, "<path class=\"series\" fill=\"none\"");
    plot_stroke(f, series, s);
    fprintf(f, " d=\"");
    int pen_down = 0;
    for (int i = 0; i < count; i++) {
      double v = plot_value(pl, series, members[i]);
      if (v < 0.0) {
        pen_down = 0;
        continue;
      }
      fprintf(f, "%s%.1f %.1f", pen_down ? " L" : " M", PLOT_X(plot_x(pl, &pl->layout->points[members[i]])),
              PLOT_Y(v));
      pen_down = 1;
    }
    fprintf(f, "\"/>\n");
    for (int i = 0; i < count; i++) {
      double v = plot_value(pl, series, members[i]);
      if (v >= 0.0)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                PLOT_X(plot_x(pl, &pl->layout->points[members[i]])), PLOT_Y(v), color);
    }
  }
#undef PLOT_X
#undef PLOT_Y
}

/* The whole picture into f. */
static void plot_write(FILE *f, plot *pl) {
  const bench_grid_device *layout = pl->layout;
  /* panels: the points grouped by all but their length, in the order the grid lists them */
  int *panel_of = calloc((size_t)layout->count, sizeof *panel_of);
  int *members = calloc((size_t)layout->count, sizeof *members);
  int panels = 0;
  for (int j = 0; panel_of && j < layout->count; j++) {
    panel_of[j] = -1;
    for (int k = 0; k < j && panel_of[j] < 0; k++)
      if (plot_same_panel(pl, &layout->points[j], &layout->points[k])) panel_of[j] = panel_of[k];
    if (panel_of[j] < 0) panel_of[j] = panels++;
  }
  int columns = panels < PLOT_COLUMNS ? panels : PLOT_COLUMNS;
  if (columns < 1) columns = 1;
  int width = columns * PLOT_PANEL_W;
  int per_row = width / PLOT_LEGEND_W > 0 ? width / PLOT_LEGEND_W : 1;
  int legend_rows = (pl->series_count + per_row - 1) / per_row;
  int measured = 0;  /* one line each under the title */
  for (int i = 0; i < pl->device_count; i++) measured += pl->devices[i].points != NULL;
  int header = 28 + 16 * measured + 20 * legend_rows;
  int rows = (panels + columns - 1) / columns;
  int height = header + rows * PLOT_PANEL_H;

  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", width, height, width, height);
  fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
  fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">flashjit bench --grid %s: %s",
          pl->o->grid, pl->decode ? "GB/s (q, k, v and o once / median time)"
                                  : "TFLOP/s (4*b*h*sq*skv*d / median time, halved when causal)");
  fprintf(f, "</text>\n");
  int line = 0;
  for (int i = 0; i < pl->device_count; i++) {
    if (pl->devices[i].points == NULL) continue;
    fprintf(f, "<text x=\"10\" y=\"%d\">%s: ", 36 + 16 * line++, pl->devices[i].device_id);
    plot_text(f, pl->devices[i].device);
    fprintf(f, ", %s timing, warmup %" PRId64 ", median of %" PRId64 "</text>\n", pl->devices[i].timing,
            pl->o->warmup, pl->o->repeat);
  }
  for (int s = 0; s < pl->series_count; s++) {
    int lx = 10 + (s % per_row) * PLOT_LEGEND_W, ly = 40 + 16 * measured + (s / per_row) * 20;
    const plot_series *series = &pl->series[s];
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"", lx, ly - 4, lx + 26, ly - 4);
    plot_stroke(f, series, s);
    fprintf(f, "/>\n");
    fprintf(f, "<text x=\"%d\" y=\"%d\">", lx + 32, ly);
    plot_text(f, series->label);
    fprintf(f, "</text>\n");
  }
  for (int panel = 0; panel_of && members && panel < panels; panel++) {
    int count = 0;
    for (int j = 0; j < layout->count; j++)
      if (panel_of[j] == panel) {
        /* insertion by length: --seqlens may list them in any order */
        int at = count++;
        int64_t len = plot_x(pl, &layout->points[j]);
        while (at > 0 && plot_x(pl, &layout->points[members[at - 1]]) > len) {
          members[at] = members[at - 1];
          at--;
        }
        members[at] = j;
      }
    plot_panel(f, pl, members, count, (panel % columns) * PLOT_PANEL_W, header + (panel / columns) * PLOT_PANEL_H);
  }
  fprintf(f, "</svg>\n");
  free(panel_of);
  free(members);
}

int bench_plot_check(const bench_options *o) {
  const char *path = o->plot;
  if (path[0] == '\0') {
    cli_error(BENCH_COMMAND, "--plot=: empty path");
    return CLI_EXIT_USAGE;
  }
  if (strlen(path) > 4000) {
    cli_error(BENCH_COMMAND, "--plot: a path of %zu characters", strlen(path));
    return CLI_EXIT_USAGE;
  }
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    cli_error(BENCH_COMMAND, "--plot=%s: a folder; give the SVG file's path", path);
    return CLI_EXIT_USAGE;
  }
  /* the folder must take the file now: the grid can take an hour, and a plot lost at its end is that hour */
  char folder[4096];
  snprintf(folder, sizeof folder, "%s", path);
  char *slash = strrchr(folder, '/');
  if (slash == NULL)
    snprintf(folder, sizeof folder, ".");
  else if (slash == folder)
    folder[1] = '\0';
  else
    *slash = '\0';
  if (access(folder, W_OK | X_OK) != 0) {
    cli_error(BENCH_COMMAND, "--plot=%s: cannot write in %s: %s", path, folder, strerror(errno));
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

int bench_plot_write(const bench_options *o, const bench_grid_device *devices, int count) {
  plot *pl = calloc(1, sizeof *pl);
  if (pl == NULL) {
    cli_error(BENCH_COMMAND, "--plot=%s: out of memory", o->plot);
    return CLI_EXIT_FAILURE;
  }
  pl->o = o;
  pl->decode = strcmp(o->grid, "decode") == 0;
  pl->devices = devices;
  pl->device_count = count;
  for (int i = 0; i < count && pl->layout == NULL; i++)
    if (devices[i].points != NULL && devices[i].count > 0) pl->layout = &devices[i];
  if (pl->layout == NULL) {
    free(pl);
    cli_error(BENCH_COMMAND, "--plot=%s: no device was measured: nothing to draw", o->plot);
    return CLI_EXIT_FAILURE;
  }
  for (int i = 0; i < count; i++) {
    if (devices[i].points == NULL) continue;
    plot_add_series(pl, &devices[i], -1);
    for (int k = 0; k < BENCH_PEER_COUNT; k++) plot_add_series(pl, &devices[i], k);
  }
  if (o->baseline != NULL) plot_add_series(pl, pl->layout, -2);  /* the same on every device's points */
  char temporary[4200];
  snprintf(temporary, sizeof temporary, "%s.%ld.tmp", o->plot, (long)getpid());
  FILE *f = fopen(temporary, "w");
  if (f == NULL) {
    cli_error(BENCH_COMMAND, "--plot=%s: cannot write %s: %s", o->plot, temporary, strerror(errno));
    free(pl);
    return CLI_EXIT_FAILURE;
  }
  plot_write(f, pl);
  int failed = ferror(f);
  failed |= fclose(f) != 0;
  if (!failed) failed = rename(temporary, o->plot) != 0;
  int code = CLI_EXIT_OK;
  if (failed) {
    cli_error(BENCH_COMMAND, "--plot=%s: writing it failed: %s", o->plot, strerror(errno));
    remove(temporary);
    code = CLI_EXIT_FAILURE;
  } else {
    fprintf(stderr, "flashjit bench: the plot is in %s (%d series)\n", o->plot, pl->series_count);
  }
  free(pl);
  return code;
}
