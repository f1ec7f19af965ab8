/* test_python_api.c: the Python package (python/flashjit, copied with the library into build/python by
 * the build) as a Python caller imports it. Wherever python3 is, its ctypes structs are checked against
 * the library's (a binding whose struct lacks a field would be read, and with the plain init written,
 * past its end); where a python3 with numpy is found (python3, else Debian's /usr/bin/python3, which
 * .ci/run gives python3-numpy), tests/python_api.py runs flashjit.attention on the CPU against its own
 * float64 reference, tries the bad arguments, and drives the GPU glue on the fake CUDA driver. Skipped
 * (77) under AddressSanitizer, whose runtime python3 cannot load after the fact, and where no python3 is
 * found. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static int run(const char *command) {
  fflush(stdout);
  int rc = system(command);
  return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

int main(void) {
#if defined(__SANITIZE_ADDRESS__)
  printf("skipped: built with AddressSanitizer, which python3 cannot load; the plain build runs this\n");
  return 77;
#endif
  if (run("python3 -c pass >/dev/null 2>&1") != 0) {
    printf("skipped: no python3 here\n");
    return 77;
  }
  char command[4096];
  snprintf(command, sizeof command,
           "PYTHONPATH='%s' PYTHONDONTWRITEBYTECODE=1 python3 -c "
           "'import sys; from flashjit import _ffi; sys.exit(_ffi.main(sys.argv))' '%s'", FJ_TEST_PYTHON_DIR,
           FJ_TEST_LIBFLASHJIT);
  int rc = run(command);
  if (rc != 0) {
    printf("FAIL: %s (exit %d)\n", command, rc);
    return 1;
  }
  const char *pythons[] = {"python3", "/usr/bin/python3"};
  const char *python = NULL;
  for (size_t i = 0; i < sizeof pythons / sizeof pythons[0] && python == NULL; i++) {
    snprintf(command, sizeof command, "%s -c 'import numpy' >/dev/null 2>&1", pythons[i]);
    if (run(command) == 0) python = pythons[i];
  }
  if (python == NULL) {
    printf("skipped: no python3 with numpy (apt-get install python3-numpy) for the calls\n");
    return 77;
  }
  /* The library is the one beside the package (FLASHJIT_LIBRARY unset), the cache a fresh folder, the
   * CUDA driver the fake one (tests/fake_cuda: no kernel runs), for the package's GPU glue. */
  snprintf(command, sizeof command,
           "cache=$(mktemp -d) && env -u FLASHJIT_LIBRARY PYTHONPATH='%s' PYTHONDONTWRITEBYTECODE=1 "
           "FLASHJIT_CACHE_DIR=\"$cache\" FLASHJIT_CUDA_LIBRARY='%s' %s '%s/tests/python_api.py'; rc=$?; "
           "rm -rf \"$cache\"; exit $rc",
           FJ_TEST_PYTHON_DIR, FJ_TEST_FAKE_CUDA, python, FJ_TEST_SOURCE_DIR);
  rc = run(command);
  if (rc != 0) printf("FAIL: tests/python_api.py with %s (exit %d)\n", python, rc);
  return rc == 0 ? 0 : 1;
}
