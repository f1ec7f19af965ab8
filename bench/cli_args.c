/* cli_args.c: option parsing and error reporting for the `flashjit` command. Every value is checked in
 * full (strtoll with its end pointer and errno, then the option's bounds) so that "12x", "", "-3" or a
 * number past int64 is a usage error that names the flag, never a silent zero or a wrapped size. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench/cli.h"

void cli_error(const char *command, const char *format, ...) {
  char message[2048];
  va_list ap;
  va_start(ap, format);
  vsnprintf(message, sizeof message, format, ap);
  va_end(ap);
  for (char *c = message; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  size_t n = strlen(message);
  while (n > 0 && message[n - 1] == ' ') message[--n] = '\0';
  fprintf(stderr, "flashjit%s%s: %s\n", command ? " " : "", command ? command : "", message);
  fflush(stderr);
}

int cli_parse_int64(const char *text, int64_t *out, const char **why) {
  const char *p = text;
  if (*p == '+' || *p == '-') p++;
  /* strtoll alone would take leading spaces, an empty string (as 0) and trailing junk. */
  if (*p < '0' || *p > '9') {
    *why = "not an integer";
    return -1;
  }
  errno = 0;
  char *end = NULL;
  long long value = strtoll(text, &end, 10);
  if (end == NULL || *end != '\0') {
    *why = "not an integer";
    return -1;
  }
  if (errno == ERANGE) {
    *why = "out of range";
    return -1;
  }
  *out = (int64_t)value;
  return 0;
}

int cli_parse_float(const char *text, float *out, const char **why) {
  char *end = NULL;
  errno = 0;
  double number = *text ? strtod(text, &end) : 0.0;
  if (*text == '\0' || *end != '\0' || errno == ERANGE || !isfinite((float)number)) {
    *why = "not a finite number";
    return -1;
  }
  *out = (float)number;
  return 0;
}

static const cli_option *cli_find(const cli_option *options, int count, const char *name, size_t length) {
  for (int i = 0; i < count; i++)
    if (strlen(options[i].name) == length && strncmp(options[i].name, name, length) == 0)
      return &options[i];
  return NULL;
}

/* Applies one value to its option; 0 or -1 after printing the error. */
static int cli_apply(const char *command, const cli_option *option, const char *value) {
  if (option->kind == CLI_STRING) {
    *(const char **)option->value = value;
  } else if (option->kind == CLI_FLOAT) {
    float number = 0.0f;
    const char *why = NULL;
    if (cli_parse_float(value, &number, &why) != 0) {
      cli_error(command, "%s=%s: %s", option->name, value, why);
      return -1;
    }
    if (number < (double)option->min || number > (double)option->max) {
      cli_error(command, "%s=%s: must be from %" PRId64 " to %" PRId64, option->name, value, option->min, option->max);
      return -1;
    }
    *(float *)option->value = number;
  } else {
    int64_t number = 0;
    const char *why = NULL;
    if (cli_parse_int64(value, &number, &why) != 0) {
      cli_error(command, "%s=%s: %s", option->name, value, why);
      return -1;
    }
    if (number < option->min || number > option->max) {
      if (option->max == INT64_MAX)
        cli_error(command, "%s=%s: must be at least %" PRId64, option->name, value, option->min);
      else
        cli_error(command, "%s=%s: must be from %" PRId64 " to %" PRId64, option->name, value,
                  option->min, option->max);
      return -1;
    }
    *(int64_t *)option->value = number;
  }
  if (option->seen) *option->seen = 1;
  return 0;
}

cli_parse_result cli_parse(const char *command, int argc, char **argv, const cli_option *options,
                           int count) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) return CLI_PARSE_HELP;
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
      cli_error(command, "unexpected argument '%s' (see flashjit help %s)", arg, command);
      return CLI_PARSE_ERROR;
    }
    const char *equals = strchr(arg, '=');
    size_t length = equals ? (size_t)(equals - arg) : strlen(arg);
    const cli_option *option = cli_find(options, count, arg, length);
    if (option == NULL) {
      cli_error(command, "unknown flag %.*s (see flashjit help %s)", (int)length, arg, command);
      return CLI_PARSE_ERROR;
    }
    if (option->kind == CLI_FLAG) {
      if (equals) {
        cli_error(command, "%s takes no value (got '%s')", option->name, equals + 1);
        return CLI_PARSE_ERROR;
      }
      *(int *)option->value = 1;
      if (option->seen) *option->seen = 1;
      continue;
    }
    const char *value;
    if (equals) {
      value = equals + 1;
    } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
      /* A following flag is never a value: "--batch --heads 8" means --batch lost its value. */
      value = argv[++i];
    } else {
      cli_error(command, "%s: missing value", option->name);
      return CLI_PARSE_ERROR;
    }
    if (cli_apply(command, option, value) != 0) return CLI_PARSE_ERROR;
  }
  return CLI_PARSE_OK;
}
