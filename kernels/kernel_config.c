/* kernel_config.c: the text form of a kernel config ("block_m=32 block_n=12 unroll=2 vector=16"), used
 * in logs, cache keys, the tuning database and `--config` options, and the table that maps a backend
 * to its kernel family. The text names every parameter, so a stored config stays readable and a
 * reordered parameter list cannot silently reinterpret it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernel_family.h"

/* Forward attention families, one per backend; cuda/hip families are added here as they land. */
static const kernel_family *const kernel_forward_families[] = {
    &attention_fwd_cpu_family,
    &attention_fwd_nvptx_family,
};

const kernel_family *kernel_family_for_backend(const char *backend) {
  if (backend == NULL) return NULL;
  for (size_t i = 0; i < sizeof kernel_forward_families / sizeof kernel_forward_families[0]; i++)
    if (strcmp(kernel_forward_families[i]->backend, backend) == 0) return kernel_forward_families[i];
  return NULL;
}

void kernel_config_string(const kernel_family *family, const kernel_config *config, char *buffer,
                          size_t size) {
  if (buffer == NULL || size == 0) return;
  buffer[0] = '\0';
  size_t used = 0;
  for (int i = 0; i < family->num_params && i < KERNEL_MAX_PARAMS; i++) {
    int w = snprintf(buffer + used, size - used, "%s%s=%d", i ? " " : "", family->params[i].name,
                     config->values[i]);
    if (w < 0 || (size_t)w >= size - used) return;  /* truncated, still NUL-terminated */
    used += (size_t)w;
  }
}

int64_t kernel_slot_rows(const attention_problem *problem, int pack_gqa) {
  return problem->seqlen_q * (pack_gqa ? problem->key.heads / problem->key.kv_heads : 1);
}

int64_t kernel_row_tile_jobs(const attention_problem *problem, int block_m, int pack_gqa) {
  int64_t slots = pack_gqa ? problem->key.kv_heads : problem->key.heads;
  return problem->batch * slots * ((kernel_slot_rows(problem, pack_gqa) + block_m - 1) / block_m);
}

static int kernel_config_fail(char *why, size_t why_size, const char *format, const char *a,
                              const char *b) {
  if (why != NULL && why_size > 0) snprintf(why, why_size, format, a, b);
  return -1;
}

int kernel_config_parse(const kernel_family *family, const char *text, kernel_config *out, char *why,
                        size_t why_size) {
  if (family == NULL || text == NULL || out == NULL)
    return kernel_config_fail(why, why_size, "%s%s", "NULL family, text or output", "");
  kernel_config parsed;
  memset(&parsed, 0, sizeof parsed);
  int seen[KERNEL_MAX_PARAMS] = {0};
  const char *p = text;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    if (*p == '\0') break;
    const char *name = p;
    size_t name_len = strcspn(p, "= \t,");
    if (p[name_len] != '=') {
      char item[64];
      snprintf(item, sizeof item, "%.*s", (int)(name_len < 60 ? name_len : 60), name);
      return kernel_config_fail(why, why_size, "\"%s\" is not name=value%s", item, "");
    }
    int index = -1;
    for (int i = 0; i < family->num_params; i++)
      if (strlen(family->params[i].name) == name_len &&
          strncmp(family->params[i].name, name, name_len) == 0)
        index = i;
    char name_text[64];
    snprintf(name_text, sizeof name_text, "%.*s", (int)(name_len < 60 ? name_len : 60), name);
    if (index < 0)
      return kernel_config_fail(why, why_size, "unknown parameter \"%s\" for %s", name_text,
                                family->name);
    if (seen[index])
      return kernel_config_fail(why, why_size, "parameter \"%s\" given twice%s", name_text, "");
    const char *value = p + name_len + 1;
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (end == value || errno != 0 || v < INT_MIN || v > INT_MAX ||
        (*end != '\0' && *end != ' ' && *end != '\t' && *end != ','))
      return kernel_config_fail(why, why_size, "parameter \"%s\" needs an integer value%s", name_text,
                                "");
    /* Only the values the family declares: its constraints and generator are written for those (an
     * unlisted pack_gqa=2 once reached a launch that read it as 0 and a kernel that read it as 1). */
    const kernel_param *param = &family->params[index];
    int listed = 0;
    char values[160] = "";
    size_t used = 0;
    for (int i = 0; i < param->num_values; i++) {
      if (param->values[i] == v) listed = 1;
      if (used < sizeof values)
        used += (size_t)snprintf(values + used, sizeof values - used, "%s%d", i ? "," : "", param->values[i]);
    }
    if (!listed) {
      char message[256];
      snprintf(message, sizeof message, "=%ld is not one of its values (%s)", v, values);
      return kernel_config_fail(why, why_size, "parameter \"%s\"%s", name_text, message);
    }
    parsed.values[index] = (int)v;
    seen[index] = 1;
    p = end;
  }
  for (int i = 0; i < family->num_params; i++)
    if (!seen[i] && family->params[i].optional)
      parsed.values[i] = family->params[i].values[0];
    else if (!seen[i])
      return kernel_config_fail(why, why_size, "parameter \"%s\" is missing (%s needs all of them)",
                                family->params[i].name, family->name);
  *out = parsed;
  if (why != NULL && why_size > 0) why[0] = '\0';
  return 0;
}

int64_t kernel_space_points(const kernel_family *family) {
  int64_t total = 1;
  for (int p = 0; p < family->num_params; p++) total *= family->params[p].num_values;
  return total;
}

void kernel_space_point(const kernel_family *family, int64_t n, kernel_config *out) {
  memset(out, 0, sizeof *out);
  for (int p = family->num_params - 1; p >= 0; p--) {
    out->values[p] = family->params[p].values[n % family->params[p].num_values];
    n /= family->params[p].num_values;
  }
}

int kernel_config_nearest_valid(const kernel_family *family, const attention_key *key, const jit_target *target,
                                const kernel_config *preferred, kernel_config *out) {
  int best_distance = family->num_params + 1;
  for (int64_t n = 0, total = kernel_space_points(family); n < total; n++) {
    kernel_config config;
    kernel_space_point(family, n, &config);
    int distance = 0;
    for (int p = 0; p < family->num_params; p++) distance += config.values[p] != preferred->values[p];
    char why[256];
    if (distance >= best_distance || !family->config_valid(key, target, &config, why, sizeof why)) continue;
    best_distance = distance;
    *out = config;
  }
  return best_distance <= family->num_params;
}

int kernel_config_default(const kernel_family *family, const attention_key *key, const jit_target *target,
                          kernel_config *out, char *why, size_t why_size) {
  family->default_config(key, target, out);
  if (family->config_valid(key, target, out, why, why_size)) return 0;
  kernel_config preferred = *out;
  return kernel_config_nearest_valid(family, key, target, &preferred, out) ? 1 : -1;
}
