/* registry.c: the list of compiled-in backends and the parser that turns a device string ("auto",
 * "cpu", "cpu:0", "cuda:1", NULL -> FLASHJIT_DEVICE -> "auto") into a backend and a device index.
 * A backend whose driver is missing simply reports 0 devices, so every backend is always listed. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "core/error.h"
#include "core/log.h"

/* Order matters only for ties in device_score. GPU backends go here as they land (&hip_backend, then
 * NPU backends); a backend whose driver is absent costs one failed dlopen, at first use. */
static const fj_backend *const backend_table[] = {
    &cpu_backend,
    &cuda_backend,
};

#define BACKEND_TABLE_SIZE ((int)(sizeof backend_table / sizeof backend_table[0]))

int backend_count(void) { return BACKEND_TABLE_SIZE; }

const fj_backend *backend_get(int index) {
  if (index < 0 || index >= BACKEND_TABLE_SIZE) return NULL;
  return backend_table[index];
}

const fj_backend *backend_find(const char *name) {
  if (name == NULL) return NULL;
  for (int i = 0; i < BACKEND_TABLE_SIZE; i++)
    if (strcmp(backend_table[i]->name, name) == 0) return backend_table[i];
  return NULL;
}

static int backend_devices(const fj_backend *backend) {
  int n = backend->device_count ? backend->device_count() : 0;
  return n < 0 ? 0 : n;
}

static int backend_score(const fj_backend *backend, int index) {
  return backend->device_score ? backend->device_score(index) : 0;
}

/* Appends to a bounded buffer; once full, further text is dropped (the message is truncated). */
static void backend_append(char *buffer, size_t size, size_t *used, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
static void backend_append(char *buffer, size_t size, size_t *used, const char *format, ...) {
  if (*used + 1 >= size) return;
  va_list ap;
  va_start(ap, format);
  int w = vsnprintf(buffer + *used, size - *used, format, ap);
  va_end(ap);
  if (w > 0) *used = (*used + (size_t)w < size) ? *used + (size_t)w : size - 1;
}

/* "cpu:0, cuda: none (libcuda.so.1: not found)": what an error message shows so that the caller
 * sees both what exists and why an expected device is absent. */
static void backend_describe_devices(char *buffer, size_t size) {
  size_t used = 0;
  buffer[0] = '\0';
  for (int b = 0; b < BACKEND_TABLE_SIZE; b++) {
    const fj_backend *backend = backend_table[b];
    int n = backend_devices(backend);
    if (n == 0) {
      const char *why = backend->unavailable_reason ? backend->unavailable_reason() : "";
      if (why != NULL && why[0] != '\0')
        backend_append(buffer, size, &used, "%s%s: none (%s)", used ? ", " : "", backend->name, why);
      continue;
    }
    for (int i = 0; i < n; i++)
      backend_append(buffer, size, &used, "%s%s:%d", used ? ", " : "", backend->name, i);
  }
  if (used == 0) snprintf(buffer, size, "none");
}

static fj_status backend_no_device(const char *device) {
  char found[512];
  backend_describe_devices(found, sizeof found);
  return core_error(FJ_NO_DEVICE, "device \"%s\" not found; devices: %s", device, found);
}

static fj_status backend_select_auto(const fj_backend **out_backend, int *out_index) {
  const fj_backend *best = NULL;
  int best_index = -1, best_score = INT_MIN;
  for (int b = 0; b < BACKEND_TABLE_SIZE; b++) {
    int n = backend_devices(backend_table[b]);
    for (int i = 0; i < n; i++) {
      int score = backend_score(backend_table[b], i);
      if (best == NULL || score > best_score) {
        best = backend_table[b];
        best_index = i;
        best_score = score;
      }
    }
  }
  if (best == NULL) return backend_no_device("auto");
  *out_backend = best;
  *out_index = best_index;
  return FJ_OK;
}

fj_status backend_select(const char *device, const fj_backend **out_backend, int *out_index) {
  if (out_backend == NULL || out_index == NULL)
    return core_error(FJ_INVALID_ARGUMENT, "backend_select: NULL output");
  *out_backend = NULL;
  *out_index = -1;
  if (device == NULL) {
    device = getenv("FLASHJIT_DEVICE");
    if (device == NULL || device[0] == '\0') device = "auto";
  }
  if (strcmp(device, "auto") == 0) return backend_select_auto(out_backend, out_index);

  /* name[:index], the name in lowercase letters and digits, the index a plain decimal. */
  const char *colon = strchr(device, ':');
  size_t name_len = colon ? (size_t)(colon - device) : strlen(device);
  char name[32];
  if (name_len == 0 || name_len >= sizeof name)
    return core_error(FJ_INVALID_ARGUMENT,
                      "device=\"%s\" is malformed; expected \"auto\", \"cpu\" or \"<backend>:<index>\"",
                      device);
  for (size_t i = 0; i < name_len; i++) {
    char c = device[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return core_error(FJ_INVALID_ARGUMENT,
                        "device=\"%s\" is malformed; expected \"auto\", \"cpu\" or \"<backend>:<index>\"",
                        device);
  }
  memcpy(name, device, name_len);
  name[name_len] = '\0';

  long index = 0;
  if (colon != NULL) {
    const char *digits = colon + 1;
    char *end = NULL;
    if (digits[0] < '0' || digits[0] > '9')
      return core_error(FJ_INVALID_ARGUMENT,
                        "device=\"%s\" is malformed: the index after ':' must be a number", device);
    errno = 0;
    index = strtol(digits, &end, 10);
    if (errno != 0 || *end != '\0' || index > INT_MAX)
      return core_error(FJ_INVALID_ARGUMENT,
                        "device=\"%s\" is malformed: the index after ':' must be a number", device);
  }

  const fj_backend *backend = backend_find(name);
  if (backend == NULL) return backend_no_device(device);
  int n = backend_devices(backend);
  if (index >= n) return backend_no_device(device);
  *out_backend = backend;
  *out_index = (int)index;
  core_log(LOG_DEBUG, "device \"%s\" -> %s:%ld", device, backend->name, index);
  return FJ_OK;
}
