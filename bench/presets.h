/* presets.h: the problems a deployment serves, as the `flashjit` command takes them: named presets for
 * common models and grids, shapes files (one problem per line, or JSON), or one problem given with the
 * same flags as `flashjit bench`. Also the subcommands built on them (tune, cache). */
#ifndef FJ_BENCH_PRESETS_H
#define FJ_BENCH_PRESETS_H
#include <stddef.h>
#include <stdio.h>
#include "flashjit.h"

/* A list of problems with a label each ("llama3-8b prefill s2048"); free with presets_free. */
typedef struct preset_shapes {
  fj_problem_shape *shapes;
  char (*labels)[96];
  int count;
} preset_shapes;

/* The preset called name: 0 and *out, or -1 (unknown name; presets_print lists them). */
int presets_get(const char *name, preset_shapes *out);
/* One line per preset: its name and what it holds. */
void presets_print(FILE *out);
/* Reads a shapes file (format in `flashjit help tune`). 0 and *out, or -1 with why ("line 3: ..."). */
int presets_read_file(const char *path, preset_shapes *out, char *why, size_t why_size);
/* The problems served on a device (runtime_served_file): the file of the device `device` names (NULL or
 * "auto": the one a context would pick) in cache_dir (NULL: the default folder), read, each labelled by
 * its sizes. 0 and *out; -1 with why (no such device, nothing served yet, an unreadable file). */
int presets_read_served(const char *device, const char *cache_dir, preset_shapes *out, char *why, size_t why_size);
/* Appends one shape (and its label) to a list; -1 when out of memory. */
int presets_append(preset_shapes *list, const fj_problem_shape *shape, const char *label);
void presets_free(preset_shapes *list);  /* NULL-safe */
/* "b1 h32/8 sq2048 skv2048 d128 bf16 causal" */
void presets_describe(const fj_problem_shape *shape, char *buffer, size_t size);
/* Text printed by `flashjit help tune` about shapes files and presets. */
void presets_help(FILE *out);

/* Subcommands (argv[0] is the subcommand's name); they return an exit code. */
int cmd_tune(int argc, char **argv);
void cmd_tune_help(FILE *out);
int cmd_cache(int argc, char **argv);
void cmd_cache_help(FILE *out);
#endif
