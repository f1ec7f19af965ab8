/* ptxas_tool.h: what the tests that assemble one small generated module share (test_cuda_peak,
 * test_merge; test_ptxas has its own parallel machinery): finding CUDA's ptxas, running `ptxas -v` on
 * emitted PTX, and reading its report. Header-only, like check.h. */
#ifndef FJ_TESTS_PTXAS_TOOL_H
#define FJ_TESTS_PTXAS_TOOL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* FJ_PTXAS, /usr/local/cuda/bin/ptxas, else ptxas on PATH; NULL when none. */
static inline const char *ptxas_find(void) {
  const char *env = getenv("FJ_PTXAS");
  if (env && access(env, X_OK) == 0) return env;
  if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0) return "/usr/local/cuda/bin/ptxas";
  return system("command -v ptxas > /dev/null 2>&1") == 0 ? "ptxas" : NULL;
}

/* `ptxas -arch=<arch> -v` of ptx (size bytes, NUL or not); its report (stdout and stderr) into report;
 * returns its exit status, -1 when it could not run. */
static inline int ptxas_assemble(const char *ptxas, const char *arch, const char *ptx, size_t size, char *report,
                                 size_t report_size) {
  char path[] = "/tmp/fj_ptxas_tool_XXXXXX", command[700];
  report[0] = '\0';
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  FILE *f = fdopen(fd, "w");
  if (f == NULL) {
    close(fd);
    remove(path);
    return -1;
  }
  fwrite(ptx, 1, strnlen(ptx, size), f);
  fclose(f);
  snprintf(command, sizeof command, "'%s' -arch=%s -v -o /dev/null '%s' 2>&1", ptxas, arch, path);
  FILE *p = popen(command, "r");
  size_t n = p ? fread(report, 1, report_size - 1, p) : 0;
  report[n] = '\0';
  int rc = p ? pclose(p) : -1;
  remove(path);
  return rc;
}

/* The registers ptxas -v reports for entry function name, or -1. */
static inline int ptxas_registers(const char *report, const char *name) {
  char entry[160];
  snprintf(entry, sizeof entry, "entry function '%s'", name);
  const char *at = strstr(report, entry);
  const char *used = at ? strstr(at, "Used ") : NULL;
  return used ? atoi(used + 5) : -1;
}

/* 1 when the report shows a spill ("N bytes spill stores" or "... loads" with N > 0) or no spill line. */
static inline int ptxas_spills(const char *report) {
  int lines = 0, any = 0;
  for (const char *x = report; (x = strstr(x, " bytes spill ")) != NULL; x++) {
    const char *digits = x;
    while (digits > report && digits[-1] >= '0' && digits[-1] <= '9') digits--;
    any |= atoi(digits) != 0;
    lines++;
  }
  return any || lines == 0;
}
#endif
