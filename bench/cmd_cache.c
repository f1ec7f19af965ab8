/* cmd_cache.c: `flashjit cache`: the operator's view of what the tuner left behind: list and show the
 * tuning database, export it (JSON or CSV) and import exports from other machines of the same device,
 * prune and clear it, and warm the disk cache for a list of problems before a server starts (the same
 * work fj_context_warmup does in the server's own process). The database's own code does the queries;
 * this file parses flags, picks the file and reports. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/cli.h"
#include "bench/presets.h"
#include "cache/binary_cache.h"
#include "cache/tuning_db.h"
#include "core/dtype.h"
#include "runtime/runtime.h"
#include "tuner/tuner.h"

void cmd_cache_help(FILE *out) {
  fprintf(out,
          "usage: flashjit cache <action> [options]\n"
          "\n"
          "The tuning database (<cache>/tuning.db) and the compiled kernels (<cache>/kernels/).\n"
          "\n"
          "actions:\n"
          "  list                       devices, problems and their winners\n"
          "  show [PATTERN]             every trial of the problems whose key contains PATTERN\n"
          "  export [--format json|csv] [--output FILE]\n"
          "                             every trial (JSON: {\"trials\": [{problem, device, config,\n"
          "                             timing_method, sizes, timings, outcome, ...}], \"winners\": [...]})\n"
          "  import FILE [--all-devices] merge an export from another machine: only trials of this\n"
          "                             device's fingerprint unless --all-devices; duplicates skipped,\n"
          "                             winners recomputed\n"
          "  prune [--older-than T] [--other-versions]\n"
          "                             delete trials older than T (30d, 12h) and/or of other flashjit or\n"
          "                             LLVM versions; winners' trials stay\n"
          "  clear [--kernels]          delete every trial and winner (--kernels: the compiled kernels too)\n"
          "  warm (--shapes FILE | --preset NAME | --served | problem flags)\n"
          "                             compile (or load) the kernel every listed problem will use, tuned\n"
          "                             winner or default, so that serving starts without compiles\n"
          "                             (--served: the problems the device served, as tune --served)\n"
          "\n"
          "options:\n"
          "  --cache-dir DIR            default FLASHJIT_CACHE_DIR or ~/.cache/flashjit\n"
          "  --device NAME              the device (import's fingerprint, warm); default auto\n"
          "  --threads N                warm: CPU threads of the context, default every core\n"
          "  problem flags (warm)       --batch --heads --kv-heads --seqlen --seqlen-kv --head-dim --dtype\n"
          "                             --causal, as flashjit bench takes them; --varlen, --varlen-q,\n"
          "                             --sinks, --softcap X and --page-size N as flashjit tune\n"
          "                             takes them; --kv-dtype fp8_e4m3|fp8_e5m2 (an fp8 KV cache),\n"
          "                             --packed-kv, --alibi, --attn-bias T and --head-dim-v N (v's own\n"
          "                             head dim) as flashjit bench takes them\n"
          "\n"
          "exit status: 0 done, 1 failed, 2 bad usage\n");
}

typedef struct cache_cli {
  char command[32];          /* "cache list" */
  const char *positional;
  const char *cache_dir, *device, *format, *output, *older_than, *shapes, *preset, *dtype_name, *kv_dtype_name;
  const char *attn_bias_name;
  int all_devices, other_versions, kernels;
  int64_t threads, batch, heads, kv_heads, seqlen, seqlen_kv, head_dim, head_dim_v;
  int causal, problem_flags, kv_heads_set, seqlen_kv_set, varlen, varlen_q, sinks, packed_k, alibi;
  int served;  /* warm --served */
  float softcap;
  int64_t page_size;
  char dir[PATH_MAX];
  char db_path[PATH_MAX + 32];
} cache_cli;

static int cache_parse(int argc, char **argv, cache_cli *c, int positional_allowed) {
  c->batch = 1;
  c->heads = 8;
  c->seqlen = 2048;
  c->head_dim = 128;
  c->dtype_name = "bf16";
  /* argv[0] is "cache", argv[1] the action; a positional argument may follow the action. */
  int first = 1;
  if (positional_allowed && argc > 2 && strncmp(argv[2], "--", 2) != 0) {
    c->positional = argv[2];
    first = 2;
  }
  int seen[18] = {0};
  const cli_option options[] = {
      {"--cache-dir", CLI_STRING, &c->cache_dir, 0, 0, NULL},
      {"--device", CLI_STRING, &c->device, 0, 0, NULL},
      {"--format", CLI_STRING, &c->format, 0, 0, NULL},
      {"--output", CLI_STRING, &c->output, 0, 0, NULL},
      {"--all-devices", CLI_FLAG, &c->all_devices, 0, 0, NULL},
      {"--older-than", CLI_STRING, &c->older_than, 0, 0, NULL},
      {"--other-versions", CLI_FLAG, &c->other_versions, 0, 0, NULL},
      {"--kernels", CLI_FLAG, &c->kernels, 0, 0, NULL},
      {"--shapes", CLI_STRING, &c->shapes, 0, 0, NULL},
      {"--preset", CLI_STRING, &c->preset, 0, 0, NULL},
      {"--served", CLI_FLAG, &c->served, 0, 0, NULL},
      {"--threads", CLI_INT, &c->threads, 0, 4096, NULL},
      {"--batch", CLI_INT, &c->batch, 1, INT32_MAX, &seen[0]},
      {"--heads", CLI_INT, &c->heads, 1, 65536, &seen[1]},
      {"--kv-heads", CLI_INT, &c->kv_heads, 1, 65536, &seen[2]},
      {"--seqlen", CLI_INT, &c->seqlen, 1, INT32_MAX, &seen[3]},
      {"--seqlen-kv", CLI_INT, &c->seqlen_kv, 1, INT32_MAX, &seen[4]},
      {"--head-dim", CLI_INT, &c->head_dim, 8, CORE_HEAD_DIM_MAX, &seen[5]},
      {"--dtype", CLI_STRING, &c->dtype_name, 0, 0, &seen[6]},
      {"--causal", CLI_FLAG, &c->causal, 0, 0, &seen[7]},
      {"--varlen", CLI_FLAG, &c->varlen, 0, 0, &seen[8]},
      {"--page-size", CLI_INT, &c->page_size, 1, INT32_MAX, &seen[9]},
      {"--varlen-q", CLI_FLAG, &c->varlen_q, 0, 0, &seen[10]},
      {"--sinks", CLI_FLAG, &c->sinks, 0, 0, &seen[11]},
      {"--softcap", CLI_FLOAT, &c->softcap, 0, INT32_MAX, &seen[12]},
      {"--kv-dtype", CLI_STRING, &c->kv_dtype_name, 0, 0, &seen[13]},
      {"--packed-kv", CLI_FLAG, &c->packed_k, 0, 0, &seen[14]},
      {"--alibi", CLI_FLAG, &c->alibi, 0, 0, &seen[15]},
      {"--head-dim-v", CLI_INT, &c->head_dim_v, 8, CORE_HEAD_DIM_MAX, &seen[16]},
      {"--attn-bias", CLI_STRING, &c->attn_bias_name, 0, 0, &seen[17]},
  };
  switch (cli_parse(c->command, argc - first, argv + first, options, (int)(sizeof options / sizeof options[0]))) {
    case CLI_PARSE_HELP: return -1;
    case CLI_PARSE_ERROR: return CLI_EXIT_USAGE;
    case CLI_PARSE_OK: break;
  }
  for (int i = 0; i < 18; i++) c->problem_flags |= seen[i];
  c->kv_heads_set = seen[2];
  c->seqlen_kv_set = seen[4];
  if (!c->kv_heads_set) c->kv_heads = c->heads;
  if (!c->seqlen_kv_set) c->seqlen_kv = c->seqlen;
  if (c->cache_dir != NULL) {
    if (c->cache_dir[0] == '\0') {
      cli_error(c->command, "--cache-dir=: empty path");
      return CLI_EXIT_USAGE;
    }
    snprintf(c->dir, sizeof c->dir, "%s", c->cache_dir);
  } else if (bincache_default_dir(c->dir, sizeof c->dir) != FJ_OK) {
    cli_error(c->command, "cannot tell the cache folder: %s", fj_last_error());
    return CLI_EXIT_FAILURE;
  }
  snprintf(c->db_path, sizeof c->db_path, "%s/%s", c->dir, TUNING_DB_FILE);
  return CLI_EXIT_OK;
}

/* Opens the database; when `create` is 0 and there is none, says so and gives *db NULL with exit 0. */
static int cache_open(cache_cli *c, int create, tuning_db **db) {
  *db = NULL;
  if (!create && access(c->db_path, F_OK) != 0) {
    fprintf(stderr, "flashjit %s: no tuning database at %s (nothing tuned yet)\n", c->command, c->db_path);
    return CLI_EXIT_OK;
  }
  if (create && bincache_prepare(c->dir) != FJ_OK) {
    cli_error(c->command, "--cache-dir=%s: %s", c->dir, fj_last_error());
    return CLI_EXIT_FAILURE;
  }
  fj_status status = tuning_db_open(c->db_path, db);
  if (status != FJ_OK) {
    cli_error(c->command, "%s: %s: %s", c->db_path, fj_status_string(status), fj_last_error());
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

static int cache_fail(cache_cli *c, const char *what, fj_status status) {
  cli_error(c->command, "%s: %s: %s", what, fj_status_string(status), fj_last_error());
  return CLI_EXIT_FAILURE;
}

static int cache_list_show(cache_cli *c, int show) {
  tuning_db *db = NULL;
  int code = cache_open(c, 0, &db);
  if (db == NULL) return code;
  fj_status status = show ? tuning_db_show(db, c->positional ? c->positional : "", stdout) : tuning_db_list(db, stdout);
  tuning_db_close(db);
  return status == FJ_OK ? CLI_EXIT_OK : cache_fail(c, c->db_path, status);
}

static int cache_export(cache_cli *c) {
  int json = 1;
  if (c->format != NULL) {
    if (strcmp(c->format, "csv") == 0) {
      json = 0;
    } else if (strcmp(c->format, "json") != 0) {
      cli_error(c->command, "--format=%s: expected json or csv", c->format);
      return CLI_EXIT_USAGE;
    }
  }
  tuning_db *db = NULL;
  int code = cache_open(c, 1, &db);
  if (db == NULL) return code;
  FILE *out = stdout;
  char temporary[PATH_MAX + 16] = "";
  if (c->output != NULL) {
    /* Written beside the target and renamed: a reader never sees half an export. */
    snprintf(temporary, sizeof temporary, "%s.tmp%ld", c->output, (long)getpid());
    out = fopen(temporary, "w");
    if (out == NULL) {
      tuning_db_close(db);
      cli_error(c->command, "--output=%s: %s", c->output, strerror(errno));
      return CLI_EXIT_FAILURE;
    }
  }
  fj_status status = tuning_db_export(db, out, json);
  tuning_db_close(db);
  if (out != stdout) {
    int failed = fclose(out) != 0;
    if (status == FJ_OK && (failed || rename(temporary, c->output) != 0)) {
      cli_error(c->command, "--output=%s: %s", c->output, strerror(errno));
      unlink(temporary);
      return CLI_EXIT_FAILURE;
    }
    if (status != FJ_OK) unlink(temporary);
  } else {
    fflush(stdout);
  }
  return status == FJ_OK ? CLI_EXIT_OK : cache_fail(c, "export", status);
}

static char *cache_read_text(const char *path, size_t *size_out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t size = 0, capacity = 1 << 16;
  char *text = malloc(capacity);
  size_t n;
  while (text != NULL && (n = fread(text + size, 1, capacity - size - 1, f)) > 0) {
    size += n;
    if (capacity - size < 2) {
      char *grown = realloc(text, capacity * 2);
      if (grown == NULL) {
        free(text);
        text = NULL;
        break;
      }
      text = grown;
      capacity *= 2;
    }
  }
  if (text != NULL && ferror(f)) {
    free(text);
    text = NULL;
  }
  fclose(f);
  if (text != NULL) text[size] = '\0';
  *size_out = size;
  return text;
}

static int cache_import(cache_cli *c) {
  if (c->positional == NULL) {
    cli_error(c->command, "which file? flashjit cache import FILE");
    return CLI_EXIT_USAGE;
  }
  size_t size = 0;
  char *text = cache_read_text(c->positional, &size);
  if (text == NULL) {
    cli_error(c->command, "%s: %s", c->positional, errno ? strerror(errno) : "cannot read");
    return CLI_EXIT_FAILURE;
  }
  /* Results transfer only between machines with the same device fingerprint. */
  char fingerprint[sizeof(((backend_device_info *)0)->fingerprint)] = "";
  if (!c->all_devices) {
    const fj_backend *backend = NULL;
    int index = 0;
    backend_device_info info;
    fj_status status = backend_select(c->device, &backend, &index);
    if (status == FJ_OK) status = backend->device_info(index, &info);
    if (status != FJ_OK) {
      free(text);
      cli_error(c->command, "--device=%s: %s", c->device ? c->device : "auto", fj_last_error());
      return CLI_EXIT_FAILURE;
    }
    snprintf(fingerprint, sizeof fingerprint, "%s", info.fingerprint);
  }
  tuning_db *db = NULL;
  int code = cache_open(c, 1, &db);
  if (db == NULL) {
    free(text);
    return code;
  }
  int imported = 0, skipped = 0, rejected = 0;
  fj_status status = tuning_db_import(db, text, c->all_devices ? NULL : fingerprint, &imported, &skipped, &rejected,
                                      stderr);
  tuning_db_close(db);
  free(text);
  if (status != FJ_OK) return cache_fail(c, c->positional, status);
  printf("imported %d trials, skipped %d (already present%s), rejected %d\n", imported, skipped,
         c->all_devices ? "" : " or of another device", rejected);
  return CLI_EXIT_OK;
}

static int cache_prune(cache_cli *c) {
  double seconds = 0.0;
  if (c->older_than == NULL && !c->other_versions) {
    cli_error(c->command, "say what to prune: --older-than T and/or --other-versions");
    return CLI_EXIT_USAGE;
  }
  if (c->older_than != NULL && tune_parse_duration(c->older_than, &seconds) != 0) {
    cli_error(c->command, "--older-than=%s: expected a duration such as 30d, 12h or 90m", c->older_than);
    return CLI_EXIT_USAGE;
  }
  tuning_db *db = NULL;
  int code = cache_open(c, 0, &db);
  if (db == NULL) return code;
  int removed = 0;
  /* 0 = no age limit: only --other-versions applies */
  fj_status status = tuning_db_prune(db, c->older_than ? (int64_t)seconds : 0, c->other_versions, &removed);
  tuning_db_close(db);
  if (status != FJ_OK) return cache_fail(c, "prune", status);
  printf("pruned %d trials\n", removed);
  return CLI_EXIT_OK;
}

static int cache_clear(cache_cli *c) {
  tuning_db *db = NULL;
  int code = CLI_EXIT_OK;
  if (access(c->db_path, F_OK) == 0) {
    code = cache_open(c, 0, &db);
    if (db == NULL) return code;
    fj_status status = tuning_db_clear(db);
    tuning_db_close(db);
    if (status != FJ_OK) return cache_fail(c, "clear", status);
    printf("cleared %s\n", c->db_path);
  }
  if (c->kernels) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/kernels", c->dir);
    DIR *dir = opendir(path);
    int removed = 0;
    if (dir != NULL) {
      struct dirent *entry;
      while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char file[PATH_MAX * 2];
        snprintf(file, sizeof file, "%s/%s", path, entry->d_name);
        struct stat st;
        if (lstat(file, &st) == 0 && S_ISREG(st.st_mode) && unlink(file) == 0) removed++;
      }
      closedir(dir);
    }
    printf("removed %d compiled kernels from %s\n", removed, path);
  }
  return code;
}

static int cache_warm(cache_cli *c) {
  preset_shapes problems;
  char why[512];
  if ((c->shapes != NULL) + (c->preset != NULL) + (c->problem_flags != 0) + (c->served != 0) > 1) {
    cli_error(c->command, "give one of --shapes, --preset, --served or problem flags");
    return CLI_EXIT_USAGE;
  }
  if (c->served) {
    if (presets_read_served(c->device, c->cache_dir, &problems, why, sizeof why) != 0) {
      cli_error(c->command, "--served: %s", why);
      return CLI_EXIT_FAILURE;
    }
  } else if (c->shapes != NULL) {
    if (presets_read_file(c->shapes, &problems, why, sizeof why) != 0) {
      cli_error(c->command, "--shapes=%s: %s", c->shapes, why);
      return CLI_EXIT_USAGE;
    }
  } else if (c->preset != NULL) {
    if (presets_get(c->preset, &problems) != 0) {
      cli_error(c->command, "--preset=%s: unknown preset (flashjit tune --list-presets)", c->preset);
      return CLI_EXIT_USAGE;
    }
  } else {
    memset(&problems, 0, sizeof problems);
    fj_problem_shape s;
    fj_problem_shape_init(&s);
    dtype_id dtype;
    if (!core_dtype_parse(c->dtype_name, &dtype)) {
      cli_error(c->command, "--dtype=%s: unknown dtype (fp32, fp16 or bf16)", c->dtype_name);
      return CLI_EXIT_USAGE;
    }
    s.dtype = core_dtype_to_dlpack(dtype);
    s.batch = c->batch;
    s.heads = (int)c->heads;
    s.kv_heads = (int)c->kv_heads;
    s.seqlen_q = c->seqlen;
    s.seqlen_kv = c->seqlen_kv;
    s.head_dim = (int)c->head_dim;
    s.head_dim_v = (int)c->head_dim_v;  /* 0 when not given; head_dim's own is the plain problem */
    s.causal = c->causal;
    s.varlen = c->varlen;
    s.varlen_q = c->varlen_q;
    s.sinks = c->sinks;
    s.packed_k = c->packed_k;
    s.alibi = c->alibi;
    s.softcap = c->softcap;
    s.page_size = (int)c->page_size;
    if (c->kv_dtype_name != NULL) {
      dtype_id kv;
      if (!core_kv_dtype_parse_for(c->kv_dtype_name, dtype, &kv)) {
        cli_error(c->command, "--kv-dtype=%s: fp8_e4m3 or fp8_e5m2 (an fp8 KV cache), or --dtype's %s",
                  c->kv_dtype_name, core_dtype_name(dtype));
        return CLI_EXIT_USAGE;
      }
      if (kv != dtype) s.kv_dtype = core_dtype_to_dlpack(kv);
    }
    if (c->attn_bias_name != NULL) {
      dtype_id bias;
      if (!core_dtype_parse(c->attn_bias_name, &bias) || (bias != DTYPE_F32 && bias != dtype)) {
        cli_error(c->command, "--attn-bias=%s: fp32 or --dtype's %s", c->attn_bias_name, core_dtype_name(dtype));
        return CLI_EXIT_USAGE;
      }
      s.attn_bias_dtype = core_dtype_to_dlpack(bias);
    }
    char label[96];
    presets_describe(&s, label, sizeof label);
    if (presets_append(&problems, &s, label) != 0) {
      cli_error(c->command, "out of memory");
      return CLI_EXIT_FAILURE;
    }
  }
  fj_context_options options;
  fj_context_options_init(&options);
  options.disable_served_log = 1;  /* what runs here is not traffic */
  options.device = c->device;
  options.cache_dir = c->dir;
  options.num_threads = (int)c->threads;
  fj_context *context = NULL;
  fj_status status = fj_context_create(&options, &context);
  if (status != FJ_OK) {
    presets_free(&problems);
    cli_error(c->command, "--device=%s: %s: %s", c->device ? c->device : "auto", fj_status_string(status),
              fj_last_error());
    return status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
  }
  int code = CLI_EXIT_OK;
  for (int i = 0; i < problems.count && code == CLI_EXIT_OK; i++) {
    status = fj_context_warmup(context, &problems.shapes[i], 1, NULL);
    attention_problem problem;
    runtime_kernel *kernel = NULL;
    /* The kernel is in the table now: this second lookup only reads what warmup chose. */
    if (status == FJ_OK) status = runtime_problem_from_shape(&problems.shapes[i], "shape", &problem);
    if (status == FJ_OK) status = runtime_get_kernel(context, &problem, NULL, &kernel);
    if (status != FJ_OK) {
      cli_error(c->command, "%s: %s: %s", problems.labels[i], fj_status_string(status), fj_last_error());
      code = status == FJ_INVALID_ARGUMENT ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
      break;
    }
    char config[256];
    kernel_config_string(kernel->family, &kernel->config, config, sizeof config);
    printf("%-28s %-13s %-5s %8.1f ms  %s\n", problems.labels[i], kernel->config_source, kernel->source,
           kernel->compile_ms, config);
  }
  fflush(stdout);
  fj_context_destroy(context);
  presets_free(&problems);
  return code;
}

int cmd_cache(int argc, char **argv) {
  static const char *const actions[] = {"list", "show", "export", "import", "prune", "clear", "warm"};
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    if (argc < 2) {
      cli_error("cache", "which action? list, show, export, import, prune, clear or warm");
      return CLI_EXIT_USAGE;
    }
    cmd_cache_help(stdout);
    return CLI_EXIT_OK;
  }
  int action = -1;
  for (int i = 0; i < (int)(sizeof actions / sizeof actions[0]); i++)
    if (strcmp(argv[1], actions[i]) == 0) action = i;
  if (action < 0) {
    cli_error("cache", "unknown action '%s' (list, show, export, import, prune, clear, warm)", argv[1]);
    return CLI_EXIT_USAGE;
  }
  cache_cli c;
  memset(&c, 0, sizeof c);
  snprintf(c.command, sizeof c.command, "cache %s", argv[1]);
  int code = cache_parse(argc, argv, &c, action == 1 || action == 3);
  if (code < 0) {
    cmd_cache_help(stdout);
    return CLI_EXIT_OK;
  }
  if (code != CLI_EXIT_OK) return code;
  /* warm's problem flags mean nothing to the other actions: say so rather than ignore them */
  const char *warm_only = c.shapes ? "--shapes" : c.preset ? "--preset" : c.served ? "--served"
                          : c.problem_flags ? "problem flags" : NULL;
  if (action != 6 && warm_only != NULL) {
    cli_error(c.command, "%s: only with cache warm", warm_only);
    return CLI_EXIT_USAGE;
  }
  switch (action) {
    case 0: return cache_list_show(&c, 0);
    case 1: return cache_list_show(&c, 1);
    case 2: return cache_export(&c);
    case 3: return cache_import(&c);
    case 4: return cache_prune(&c);
    case 5: return cache_clear(&c);
    default: return cache_warm(&c);
  }
}
