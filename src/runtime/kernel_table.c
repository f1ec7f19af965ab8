/* kernel_table.c: the context's in-memory table of loaded kernels and the slow path that fills it:
 * choose a config (caller's, tuning database's, or the family's default), then take the compiled
 * binary from the disk cache or JIT it, and load it on the device. After the first call for a key,
 * a lookup is a hash of the key's integers and a short locked list walk: no text, no allocation, no
 * compile. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <llvm-c/Core.h>

#include "cache/binary_cache.h"
#include "cache/tuning_db.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "kernels/attention_fwd_gpu_abi.h"
#include "runtime/runtime_internal.h"

static double runtime_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The table key: the problem key, the family, and the caller's config or "auto" (the choice made for
 * "auto" may later come from the tuning database, so it is kept apart from explicit configs). */
_Static_assert(sizeof(runtime_lookup) == sizeof(const kernel_family *) + sizeof(attention_key) +
                                             sizeof(int) * (2 + KERNEL_MAX_PARAMS),
               "runtime_lookup must have no padding: it is hashed and compared as bytes");

static void runtime_lookup_key(const fj_context *context, const attention_problem *problem,
                               const kernel_config *config, runtime_lookup *lookup) {
  memset(lookup, 0, sizeof *lookup);
  lookup->family = context->family;
  lookup->problem = problem->key;
  lookup->given = config != NULL;
  for (int i = 0; config != NULL && i < context->family->num_params; i++) lookup->config[i] = config->values[i];
}

static runtime_entry *runtime_find_entry(fj_context *context, uint64_t hash, const runtime_lookup *lookup) {
  for (runtime_entry *e = context->buckets[hash % RUNTIME_TABLE_BUCKETS]; e != NULL; e = e->next)
    if (e->hash == hash && memcmp(&e->lookup, lookup, sizeof *lookup) == 0) return e;
  return NULL;
}

static void runtime_unlink_entry(fj_context *context, runtime_entry *entry) {
  runtime_entry **link = &context->buckets[entry->hash % RUNTIME_TABLE_BUCKETS];
  while (*link != NULL && *link != entry) link = &(*link)->next;
  if (*link == entry) *link = entry->next;
}

/* ---- choosing the config ---- */

/* The tuning database is opened on the first lookup that finds the file and kept for the context's
 * life; a missing file is looked for again at the next new key (a tuner may create it while we serve),
 * a file that fails to open is not. Lookups happen only when a key first enters the table, so the
 * per-call cost stays that of the in-memory table. Called without the table lock. */
static tuning_db *runtime_tuning_db(fj_context *context) {
  pthread_mutex_lock(&context->lock);
  if (context->tuning == NULL && !context->tuning_failed) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", context->cache_dir, TUNING_DB_FILE);
    if (access(path, F_OK) == 0) {
      if (tuning_db_open(path, &context->tuning) != FJ_OK) {
        core_log(LOG_WARN, "tuning database %s not used: %s", path, fj_last_error());
        core_error_clear();
        context->tuning = NULL;
        context->tuning_failed = 1;
      }
    }
  }
  tuning_db *db = context->tuning;
  pthread_mutex_unlock(&context->lock);
  return db;
}

/* The tuned winner for (key, device fingerprint, family, timing method): exact key first, then the
 * nearest sequence-length bucket. 1 and *out when one exists that parses and is valid here; *source
 * says which kind. Packed keys (varlen_k) take the winner of the same problem with seqlens_kv: the
 * kernels do the same work, only each sequence's first row of k and v differs; ALiBi keys and those of
 * an additive bias that of the problem without them (a few operations or a load per score; the tuner
 * times neither). An fp8 cache takes
 * its own problem's winner where it was tuned, else that of the problem with k and v in q's dtype (the
 * same tiles once converted, on the CPU as they are packed, on NVIDIA GPUs after staging), where the
 * fp8 kernel takes that config. */
static int runtime_tuned_config(fj_context *context, const attention_key *key, kernel_config *out,
                                const char **source, char *detail, size_t detail_size) {
  tuning_db *db = runtime_tuning_db(context);
  if (db == NULL) return 0;
  const kernel_family *family = context->family;
  char key_text[256], why[256] = "";
  attention_key tuned_as = *key;
  tuned_as.varlen_k = 0;
  tuned_as.alibi = 0;
  tuned_as.bias = 0;
  tuning_winner winner;
  memset(&winner, 0, sizeof winner);
  int found = 0, from_twin = 0;
  for (int twin = 0; twin <= (key->kv_fp8 != 0) && found != 1; twin++) {
    from_twin = twin;
    if (twin) tuned_as.kv_fp8 = 0;
    core_attention_key_string(&tuned_as, key_text, sizeof key_text);
    /* The handle serializes its own users; WAL lets this read while a tuner writes. */
    found = tuning_db_lookup_winner(db, context->info.fingerprint, key_text, family->name,
                                    runtime_timing_method(context), &winner);
  }
  if (found != 1) return 0;
  kernel_config config;
  if (kernel_config_parse(family, winner.config, &config, why, sizeof why) != 0 ||
      !family->config_valid(key, &context->target, &config, why, sizeof why)) {
    core_log(LOG_WARN, "tuned winner \"%s\" for %s is not usable (%s); using the default", winner.config,
             key_text, why);
    return 0;
  }
  *out = config;
  const char *bucket = strstr(winner.problem_key, "sq<=2^");
  *source = winner.exact ? "tuned" : "tuned-nearest";
  snprintf(detail, detail_size, "tuned winner (%s%.300s%s%s, %.3f ms)", winner.exact ? "exact" : "nearest bucket ",
           winner.exact ? "" : (bucket ? bucket : winner.problem_key),
           from_twin ? ", of k and v in q's dtype (the fp8 cache's own problem is not tuned)" : "",
           winner.current_versions ? "" : ", tuned under other versions", winner.median_ms);
  return 1;
}

static fj_status runtime_choose_config(fj_context *context, const attention_problem *problem,
                                       const kernel_config *given, kernel_config *out,
                                       char *config_source, size_t config_source_size) {
  const kernel_family *family = context->family;
  char why[256] = "", config_text[256], key_text[256], detail[640];
  const char *source;
  if (given != NULL) {
    *out = *given;
    source = "explicit";
    snprintf(detail, sizeof detail, "given by the caller");
  } else if (runtime_tuned_config(context, &problem->key, out, &source, detail, sizeof detail)) {
    /* source and detail set */
  } else {
    /* None valid makes the problem one this device cannot run, not the caller's mistake. */
    int nearest = kernel_config_default(family, &problem->key, &context->target, out, why, sizeof why);
    if (nearest < 0) {
      core_attention_key_string(&problem->key, key_text, sizeof key_text);
      return core_error(FJ_UNSUPPORTED, "no config of %s can run %s on %s (the default's reason: %s)", family->name,
                        key_text, context->target.cpu, why);
    }
    source = "default";
    if (nearest)
      snprintf(detail, sizeof detail, "the valid config nearest the default heuristic's (%.400s)", why);
    else
      snprintf(detail, sizeof detail, "default heuristic");
  }
  snprintf(config_source, config_source_size, "%s", source);
  kernel_config_string(family, out, config_text, sizeof config_text);
  core_attention_key_string(&problem->key, key_text, sizeof key_text);
  if (!family->config_valid(&problem->key, &context->target, out, why, sizeof why)) {
    if (given != NULL)
      return core_error(FJ_INVALID_ARGUMENT, "config \"%s\" cannot run %s on %s: %s", config_text,
                        key_text, context->target.cpu, why);
    /* A default or tuned config must always be valid: a broken heuristic is our bug, not the caller's. */
    return core_error(FJ_INTERNAL, "%s config \"%s\" of %s is invalid for %s: %s", source, config_text,
                      family->name, key_text, why);
  }
  core_log(LOG_DEBUG, "kernel for %s: %s: %s %s", key_text, detail, family->name, config_text);
  return FJ_OK;
}

/* "fj1|<family>|gen=<n>|abi=<bytes>|<codegen key>|<config>|<triple>|<cpu>|<features>|llvm=<version>": everything
 * that changes the binary, so that a stale file can never be loaded. Where the backend finalizes the
 * emitted code (PTX through the CUDA driver's compiler) the driver's version changes the binary too,
 * and "|driver=<version>" ends the key; CPU keys stay as they were. malloc'd. */
static char *runtime_cache_key(const fj_context *context, const attention_problem *problem,
                               const kernel_config *config) {
  const kernel_family *family = context->family;
  const jit_target *target = &context->target;
  char codegen[512], config_text[256];
  family->codegen_key(&problem->key, codegen, sizeof codegen);
  kernel_config_string(family, config, config_text, sizeof config_text);
  char driver[80] = "";
  if (context->backend->binary_finalize != NULL)
    snprintf(driver, sizeof driver, "|driver=%s", context->info.driver_version);
  const char *format = "fj1|%s|gen=%d|abi=%zu|%s|%s|%s|%s|%s|llvm=%s%s";
  int n = snprintf(NULL, 0, format, family->name, family->generator_version, family->params_bytes, codegen,
                   config_text, target->triple, target->cpu, target->features, jit_llvm_version(), driver);
  if (n < 0) return NULL;
  char *key = malloc((size_t)n + 1);
  if (key == NULL) return NULL;
  snprintf(key, (size_t)n + 1, format, family->name, family->generator_version, family->params_bytes, codegen,
           config_text, target->triple, target->cpu, target->features, jit_llvm_version(), driver);
  return key;
}

/* ---- getting a binary and loading it ---- */

static fj_status runtime_load_binary(fj_context *context, const kernel_config *config, const void *binary,
                                     size_t size, const char *function_name, const char *cache_key,
                                     runtime_module *out) {
  void **module = &out->module, **function = &out->function;
  /* A unique name per load: the same binary may be loaded by several contexts in one process. */
  static atomic_uint_fast64_t load_counter;
  char name[128], hash_hex[17];
  core_hash64_hex(core_hash64(cache_key, strlen(cache_key)), hash_hex);
  snprintf(name, sizeof name, "%s.%s.%llu", function_name, hash_hex,
           (unsigned long long)atomic_fetch_add(&load_counter, 1));
  const fj_backend *backend = context->backend;
  *module = NULL;
  *function = NULL;
  fj_status status = backend->module_load(context->device, binary, size, name, module);
  if (status != FJ_OK) return status;
  status = backend->module_function(*module, function_name, function);
  out->combine_function = NULL;
  if (status == FJ_OK && context->family->splits_kv != NULL && context->family->splits_kv(config)) {
    char combine[160];
    snprintf(combine, sizeof combine, "%s%s", function_name, GPU_COMBINE_SUFFIX);
    status = backend->module_function(*module, combine, &out->combine_function);
  }
  if (status != FJ_OK) {
    backend->module_unload(*module);
    *module = NULL;
  }
  return status;
}

fj_status runtime_compile_binary(fj_context *context, runtime_generator generate, const void *arg,
                                 const char *function_name, const char *what, const char *cache_key, jit_buffer *out) {
  const fj_backend *backend = context->backend;
  /* A context per compile: LLVM contexts are not thread-safe, and compiles on several threads at once
   * (different keys) must not share one. */
  LLVMContextRef llvm = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext(function_name, llvm);
  jit_buffer object = {0};
  fj_status status = jit_module_set_target(module, &context->target);
  if (status == FJ_OK) status = generate(module, &context->target, function_name, arg);
  if (status == FJ_OK) status = jit_compile_module(module, &context->target, what, &object);
  LLVMDisposeModule(module);
  LLVMContextDispose(llvm);
  if (status == FJ_OK && backend->binary_finalize != NULL) {
    /* What LLVM emitted (PTX) becomes what the device loads (a cubin) here, before the store, so a
     * later process finds the finished binary and never runs the driver's compiler for it again. */
    jit_buffer binary = {0};
    status = backend->binary_finalize(context->device, object.data, object.size, function_name, &binary);
    jit_buffer_free(&object);
    object = binary;
  }
  if (status != FJ_OK) {
    jit_buffer_free(&object);
    core_error_prefix("%s: ", what);
    return status;
  }
  if (context->disk_cache &&
      bincache_store(context->cache_dir, cache_key, backend->binary_kind, object.data, object.size) != FJ_OK) {
    core_log(LOG_WARN, "kernel %s not stored in the disk cache: %s", what, fj_last_error());
    core_error_clear();
  }
  *out = object;
  return FJ_OK;
}

/* runtime_compile_binary's generator for the family's attention kernel (and its combine kernel). */
typedef struct runtime_attention_generation {
  const kernel_family *family;
  const attention_problem *problem;
  const kernel_config *config;
} runtime_attention_generation;

static fj_status runtime_generate_attention(LLVMModuleRef module, const jit_target *target, const char *function_name,
                                            const void *arg) {
  const runtime_attention_generation *g = arg;
  return g->family->generate(module, &g->problem->key, target, g->config, function_name);
}

/* Takes the kernel from the disk cache when a valid entry loads, else compiles it (and stores it). */
static fj_status runtime_obtain_module(fj_context *context, const attention_problem *problem,
                                       const kernel_config *config, const char *cache_key,
                                       runtime_module *out) {
  const fj_backend *backend = context->backend;
  char function_name[96];
  snprintf(function_name, sizeof function_name, "fj_%s", context->family->name);
  char what[768], key_text[256], config_text[256];
  core_attention_key_string(&problem->key, key_text, sizeof key_text);
  kernel_config_string(context->family, config, config_text, sizeof config_text);
  snprintf(what, sizeof what, "%s %s for %s", context->family->name, config_text, key_text);
  double start = runtime_now_ms();

  if (context->disk_cache) {
    void *data = NULL;
    size_t size = 0;
    if (bincache_load(context->cache_dir, cache_key, backend->binary_kind, &data, &size)) {
      fj_status status = runtime_load_binary(context, config, data, size, function_name, cache_key, out);
      free(data);
      if (status == FJ_OK) {
        out->compile_ms = runtime_now_ms() - start;
        snprintf(out->source, sizeof out->source, "disk");
        core_log(LOG_DEBUG, "kernel %s loaded from disk cache in %.1f ms", what, out->compile_ms);
        return FJ_OK;
      }
      char path[PATH_MAX + 64] = "?";
      bincache_path(context->cache_dir, cache_key, backend->binary_kind, path, sizeof path);
      core_log(LOG_WARN, "cached kernel %s did not load (%s); recompiling", path, fj_last_error());
      core_error_clear();
    }
  }

  jit_buffer object = {0};
  runtime_attention_generation generation = {context->family, problem, config};
  fj_status status = runtime_compile_binary(context, runtime_generate_attention, &generation, function_name, what,
                                            cache_key, &object);
  if (status != FJ_OK) return status;
  double compiled = runtime_now_ms();
  status = runtime_load_binary(context, config, object.data, object.size, function_name, cache_key, out);
  jit_buffer_free(&object);
  if (status != FJ_OK) return status;
  out->compile_ms = runtime_now_ms() - start;
  snprintf(out->source, sizeof out->source, "jit");
  core_log(LOG_DEBUG, "kernel %s compiled in %.1f ms (%.1f ms including store and load)", what,
           compiled - start, out->compile_ms);
  return FJ_OK;
}

/* Builds the kernel for a table entry, outside the table's lock (compiles of different keys run in
 * parallel); the module list is shared under the lock, insert-if-absent. */
static fj_status runtime_build(fj_context *context, const attention_problem *problem,
                               const kernel_config *given, runtime_kernel *kernel) {
  kernel_config config;
  fj_status status = runtime_choose_config(context, problem, given, &config, kernel->config_source,
                                           sizeof kernel->config_source);
  if (status != FJ_OK) return status;
  kernel->family = context->family;
  kernel->config = config;

  char *cache_key = runtime_cache_key(context, problem, &config);
  if (cache_key == NULL) return core_error(FJ_OUT_OF_MEMORY, "no memory for a cache key");

  pthread_mutex_lock(&context->lock);
  runtime_module *found = NULL;
  for (runtime_module *m = context->modules; m != NULL && found == NULL; m = m->next)
    if (strcmp(m->cache_key, cache_key) == 0) found = m;
  pthread_mutex_unlock(&context->lock);
  int shared = found != NULL;  /* another key's kernel compiled to the very same binary */

  if (found == NULL) {
    runtime_module built = {0};
    status = runtime_obtain_module(context, problem, &config, cache_key, &built);
    if (status != FJ_OK) {
      free(cache_key);
      return status;
    }
    pthread_mutex_lock(&context->lock);
    for (runtime_module *m = context->modules; m != NULL && found == NULL; m = m->next)
      if (strcmp(m->cache_key, cache_key) == 0) found = m;
    if (found == NULL) {
      runtime_module *m = malloc(sizeof *m);
      if (m != NULL) {
        *m = built;
        m->cache_key = cache_key;
        cache_key = NULL;
        m->next = context->modules;
        context->modules = m;
        found = m;
      }
    }
    pthread_mutex_unlock(&context->lock);
    if (found == NULL || found->module != built.module) {
      /* Another thread loaded the same binary first (or no memory to record ours): keep one. */
      context->backend->module_unload(built.module);
      if (found == NULL) {
        free(cache_key);
        return core_error(FJ_OUT_OF_MEMORY, "no memory for a kernel table entry");
      }
    }
  }
  free(cache_key);
  /* Entries share the module; the module list owns it. */
  kernel->module = found->module;
  kernel->function = found->function;
  kernel->combine_function = found->combine_function;
  if (shared) {
    snprintf(kernel->source, sizeof kernel->source, "memory");
    kernel->compile_ms = 0.0;
  } else {
    snprintf(kernel->source, sizeof kernel->source, "%s", found->source);
    kernel->compile_ms = found->compile_ms;
  }
  return FJ_OK;
}

fj_status runtime_get_kernel(fj_context *context, const attention_problem *problem,
                             const kernel_config *config, runtime_kernel **out) {
  if (out != NULL) *out = NULL;
  if (context == NULL || problem == NULL || out == NULL)
    return core_error(FJ_INVALID_ARGUMENT, "runtime_get_kernel: NULL context, problem or out");
  if (context->family == NULL)
    return core_error(FJ_UNSUPPORTED, "no attention kernel family for the %s backend yet",
                      context->backend->name);

  char why[256] = "";
  if (context->family->problem_supported != NULL &&
      !context->family->problem_supported(&problem->key, why, sizeof why))
    return core_error(FJ_UNSUPPORTED, "%s: %s", context->backend->name, why);

  runtime_lookup lookup;
  runtime_lookup_key(context, problem, config, &lookup);
  uint64_t hash = core_hash64(&lookup, sizeof lookup);

  pthread_mutex_lock(&context->lock);
  runtime_entry *entry;
  while ((entry = runtime_find_entry(context, hash, &lookup)) != NULL && entry->state != RUNTIME_READY)
    pthread_cond_wait(&context->built, &context->lock);  /* another thread is building this key */
  if (entry != NULL) {
    pthread_mutex_unlock(&context->lock);
    *out = &entry->kernel;
    return FJ_OK;
  }
  entry = calloc(1, sizeof *entry);
  if (entry == NULL) {
    pthread_mutex_unlock(&context->lock);
    return core_error(FJ_OUT_OF_MEMORY, "no memory for a kernel table entry");
  }
  entry->hash = hash;
  entry->lookup = lookup;
  entry->state = RUNTIME_BUILDING;
  entry->next = context->buckets[hash % RUNTIME_TABLE_BUCKETS];
  context->buckets[hash % RUNTIME_TABLE_BUCKETS] = entry;
  pthread_mutex_unlock(&context->lock);

  fj_status status = runtime_build(context, problem, config, &entry->kernel);

  pthread_mutex_lock(&context->lock);
  if (status == FJ_OK) {
    entry->state = RUNTIME_READY;
  } else {
    /* Waiters wake, find no entry and try for themselves (each gets its own error message). */
    runtime_unlink_entry(context, entry);
  }
  pthread_cond_broadcast(&context->built);
  pthread_mutex_unlock(&context->lock);
  if (status != FJ_OK) {
    free(entry);
    return status;
  }
  *out = &entry->kernel;
  return FJ_OK;
}

void runtime_table_destroy(fj_context *context) {
  for (int b = 0; b < RUNTIME_TABLE_BUCKETS; b++) {
    runtime_entry *e = context->buckets[b];
    while (e != NULL) {
      runtime_entry *next = e->next;
      free(e);
      e = next;
    }
    context->buckets[b] = NULL;
  }
  runtime_module *m = context->modules;
  while (m != NULL) {
    runtime_module *next = m->next;
    if (context->backend->module_unload != NULL) context->backend->module_unload(m->module);
    free(m->cache_key);
    free(m);
    m = next;
  }
  context->modules = NULL;
  tuning_db_close(context->tuning);
  context->tuning = NULL;
}
