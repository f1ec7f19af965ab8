/* tune_space.c: the search space as the kernel family declares it: the cartesian product of its
 * parameters' values (optionally restricted to some values per parameter), filtered by the family's
 * own config_valid for the problem and target, less the points it compiles as another point
 * (same_kernel_as). Also the small text parsers the tuner's callers share
 * (strategy names, durations) and the default options. Nothing here knows what a parameter means. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tuner/tuner.h"

static const char *const tune_strategy_names[TUNE_STRATEGY_COUNT] = {"exhaustive", "random", "halving"};

const char *tune_strategy_name(tune_strategy strategy) {
  if ((int)strategy < 0 || strategy >= TUNE_STRATEGY_COUNT) return "unknown";
  return tune_strategy_names[strategy];
}

int tune_strategy_parse(const char *name, tune_strategy *out) {
  if (name == NULL) return 0;
  for (int i = 0; i < TUNE_STRATEGY_COUNT; i++)
    if (strcmp(name, tune_strategy_names[i]) == 0) {
      *out = (tune_strategy)i;
      return 1;
    }
  return 0;
}

int tune_parse_duration(const char *text, double *seconds) {
  if (text == NULL || *text == '\0') return -1;
  double total = 0.0;
  const char *p = text;
  int parts = 0;
  while (*p != '\0') {
    if (!isdigit((unsigned char)*p) && *p != '.') return -1;
    errno = 0;
    char *end = NULL;
    double value = strtod(p, &end);
    if (end == p || errno != 0 || !isfinite(value) || value < 0) return -1;
    double unit = 1.0;
    switch (*end) {
      case 'd': unit = 86400.0; end++; break;
      case 'h': unit = 3600.0; end++; break;
      case 'm': unit = 60.0; end++; break;
      case 's': unit = 1.0; end++; break;
      case '\0':
        /* a bare number is seconds, but only on its own: "1h30" is more likely a typo than 1h30s */
        if (parts > 0) return -1;
        break;
      default: return -1;
    }
    total += value * unit;
    parts++;
    p = end;
  }
  if (total <= 0.0 || total > 366.0 * 24 * 3600) return -1;
  *seconds = total;
  return 0;
}

void tune_options_init(tune_options *options) {
  memset(options, 0, sizeof *options);
  options->strategy = TUNE_EXHAUSTIVE;
  options->seed = 1;
  options->warmup = 1;
  options->repeats = 10;
  options->slow_factor = 1.1;
  options->overlap = -1;
  options->confirm = 3;
}

/* Per parameter: which of its values are allowed (restriction applied). */
typedef struct tune_allowed {
  int allowed[KERNEL_MAX_PARAMS][KERNEL_MAX_VALUES];
} tune_allowed;

static fj_status tune_parse_restriction(const kernel_family *family, const char *text, tune_allowed *out) {
  for (int p = 0; p < family->num_params; p++)
    for (int v = 0; v < KERNEL_MAX_VALUES; v++) out->allowed[p][v] = v < family->params[p].num_values;
  if (text == NULL) return FJ_OK;
  const char *s = text;
  for (;;) {
    while (*s == ' ' || *s == '\t' || *s == ';') s++;
    if (*s == '\0') break;
    size_t name_len = strcspn(s, "= \t;");
    if (s[name_len] != '=')
      return core_error(FJ_INVALID_ARGUMENT, "space \"%s\": \"%.*s\" is not name=v1,v2,...", text,
                        (int)(name_len > 60 ? 60 : name_len), s);
    int param = -1;
    for (int p = 0; p < family->num_params; p++)
      if (strlen(family->params[p].name) == name_len && strncmp(family->params[p].name, s, name_len) == 0)
        param = p;
    if (param < 0)
      return core_error(FJ_INVALID_ARGUMENT, "space \"%s\": %s has no parameter \"%.*s\"", text, family->name,
                        (int)(name_len > 60 ? 60 : name_len), s);
    const kernel_param *kp = &family->params[param];
    for (int v = 0; v < KERNEL_MAX_VALUES; v++) out->allowed[param][v] = 0;
    s += name_len + 1;
    for (;;) {
      char *end = NULL;
      errno = 0;
      long value = strtol(s, &end, 10);
      if (end == s || errno != 0)
        return core_error(FJ_INVALID_ARGUMENT, "space \"%s\": %s needs integer values", text, kp->name);
      int found = -1;
      for (int v = 0; v < kp->num_values; v++)
        if (kp->values[v] == value) found = v;
      if (found < 0) {
        char listed[160] = "";
        size_t used = 0;
        for (int v = 0; v < kp->num_values && used < sizeof listed; v++)
          used += (size_t)snprintf(listed + used, sizeof listed - used, "%s%d", v ? "," : "", kp->values[v]);
        return core_error(FJ_INVALID_ARGUMENT, "space \"%s\": %s=%ld is not one of its values (%s)", text,
                          kp->name, value, listed);
      }
      out->allowed[param][found] = 1;
      s = end;
      if (*s != ',') break;
      s++;
    }
    if (*s != '\0' && *s != ' ' && *s != '\t' && *s != ';')
      return core_error(FJ_INVALID_ARGUMENT, "space \"%s\": unexpected \"%c\" after %s's values", text, *s,
                        kp->name);
  }
  return FJ_OK;
}

/* 1 when each of config's values is one the restriction allows. */
static int tune_config_allowed(const kernel_family *family, const tune_allowed *allowed, const kernel_config *config) {
  for (int p = 0; p < family->num_params; p++) {
    int ok = 0;
    for (int v = 0; v < family->params[p].num_values; v++)
      if (family->params[p].values[v] == config->values[p]) ok = allowed->allowed[p][v];
    if (!ok) return 0;
  }
  return 1;
}

fj_status tune_space_build(const kernel_family *family, const attention_key *key, const jit_target *target,
                           const char *restriction, tune_space *out) {
  memset(out, 0, sizeof *out);
  tune_allowed allowed;
  fj_status status = tune_parse_restriction(family, restriction, &allowed);
  if (status != FJ_OK) return status;
  int counts[KERNEL_MAX_PARAMS], index[KERNEL_MAX_PARAMS];
  int lists[KERNEL_MAX_PARAMS][KERNEL_MAX_VALUES];
  int64_t total = 1;
  for (int p = 0; p < family->num_params; p++) {
    counts[p] = 0;
    for (int v = 0; v < family->params[p].num_values; v++)
      if (allowed.allowed[p][v]) lists[p][counts[p]++] = family->params[p].values[v];
    total *= counts[p];
    index[p] = 0;
  }
  out->total = total;
  if (total == 0) return FJ_OK;
  out->configs = malloc((size_t)total * sizeof *out->configs);
  if (out->configs == NULL) return core_error(FJ_OUT_OF_MEMORY, "no memory for %lld configs", (long long)total);
  /* Odometer order with the last parameter fastest: neighbours in the list differ in the innermost
   * parameters, which is also the order a person reading a dump expects. */
  for (int64_t n = 0; n < total; n++) {
    kernel_config config;
    memset(&config, 0, sizeof config);
    for (int p = 0; p < family->num_params; p++) config.values[p] = lists[p][index[p]];
    char why[256] = "";
    kernel_config twin;
    if (!family->config_valid(key, target, &config, why, sizeof why)) {
      if (out->example_reason[0] == '\0') snprintf(out->example_reason, sizeof out->example_reason, "%s", why);
      out->pruned++;
    } else if (family->same_kernel_as && family->same_kernel_as(key, target, &config, &twin, why, sizeof why) &&
               tune_config_allowed(family, &allowed, &twin)) {
      /* its twin is in the space too (a restriction that leaves the twin out keeps this one) */
      if (out->duplicate_reason[0] == '\0') snprintf(out->duplicate_reason, sizeof out->duplicate_reason, "%s", why);
      out->duplicates++;
    } else {
      out->configs[out->count++] = config;
    }
    for (int p = family->num_params - 1; p >= 0; p--) {
      if (++index[p] < counts[p]) break;
      index[p] = 0;
    }
  }
  return FJ_OK;
}

void tune_space_free(tune_space *space) {
  if (space == NULL) return;
  free(space->configs);
  memset(space, 0, sizeof *space);
}
