/* test_install.c: `cmake --install` of this build into a fresh prefix, then used the three ways a program
 * outside the source tree uses it: a C program compiled against the installed header and library (with
 * the flags pkg-config gives, where pkg-config is installed, and with plain -I/-L otherwise), a CMake
 * project through find_package(flashjit) and flashjit::flashjit, and Python through the installed
 * package (no FLASHJIT_LIBRARY: it must find the installed library itself). The C programs run a small
 * attention and compare it with a naive one computed in the program. The installed command must run and
 * find the peers script it was installed with. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cli_process.h"
#include "test_files.h"

static char prefix[256];

/* Runs a shell command; its output (stdout and stderr) into out; returns the exit status, -1 when it
 * did not exit. */
static int run(const char *command, char *out, size_t size) {
  FILE *p = popen(command, "r");
  if (p == NULL) {
    snprintf(out, size, "popen: %s", strerror(errno));
    return -1;
  }
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int exists(const char *relative) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", prefix, relative);
  struct stat st;
  return stat(path, &st) == 0 && st.st_size > 0;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f != NULL) {
    fputs(text, f);
    fclose(f);
  }
}

/* A program a user writes: causal attention of 2 queries against 3 keys, one head of 8, through the
 * installed library, against the same computed naively; prints "installed ok" when they agree. */
static const char *const user_program =
    "#include <flashjit.h>\n"
    "#include <math.h>\n"
    "#include <stdio.h>\n"
    "int main(void) {\n"
    "  float q[2][8], k[3][8], v[3][8], o[2][8];\n"
    "  for (int i = 0; i < 8; i++) {\n"
    "    for (int r = 0; r < 2; r++) q[r][i] = (float)sin(1.0 + r * 8 + i);\n"
    "    for (int r = 0; r < 3; r++) k[r][i] = (float)cos(2.0 + r * 8 + i), v[r][i] = (float)sin(3.0 + r * 5 + i);\n"
    "  }\n"
    "  int64_t qs[4] = {1, 2, 1, 8}, ks[4] = {1, 3, 1, 8};\n"
    "  DLTensor tq = {.data = q, .device = {kDLCPU, 0}, .ndim = 4, .dtype = {kDLFloat, 32, 1}, .shape = qs};\n"
    "  DLTensor tk = tq, tv = tq, to = tq;\n"
    "  tk.data = k, tk.shape = ks, tv.data = v, tv.shape = ks, to.data = o;\n"
    "  fj_context_options options;\n"
    "  fj_context_options_init(&options);\n"
    "  options.device = \"cpu\";\n"
    "  options.disable_disk_cache = 1;\n"
    "  fj_context *context = NULL;\n"
    "  fj_attention_args args;\n"
    "  fj_attention_args_init(&args);\n"
    "  args.q = &tq, args.k = &tk, args.v = &tv, args.o = &to, args.causal = 1;\n"
    "  if (fj_context_create(&options, &context) != FJ_OK || fj_attention_forward(context, &args) != FJ_OK) {\n"
    "    printf(\"failed: %s\\n\", fj_last_error());\n"
    "    return 1;\n"
    "  }\n"
    "  fj_context_destroy(context);\n"
    "  double worst = 0;\n"
    "  for (int r = 0; r < 2; r++) {\n"
    "    int keys = r + 2;  /* bottom-right causal: query r sees keys 0 .. r + 1 */\n"
    "    double s[3], top = -1e300, sum = 0;\n"
    "    for (int j = 0; j < keys; j++) {\n"
    "      s[j] = 0;\n"
    "      for (int i = 0; i < 8; i++) s[j] += (double)q[r][i] * k[j][i] / sqrt(8.0);\n"
    "      if (s[j] > top) top = s[j];\n"
    "    }\n"
    "    for (int j = 0; j < keys; j++) sum += exp(s[j] - top);\n"
    "    for (int i = 0; i < 8; i++) {\n"
    "      double want = 0;\n"
    "      for (int j = 0; j < keys; j++) want += exp(s[j] - top) / sum * v[j][i];\n"
    "      if (fabs(want - o[r][i]) > worst) worst = fabs(want - o[r][i]);\n"
    "    }\n"
    "  }\n"
    "  printf(\"%s %s %.2e\\n\", worst < 1e-5 ? \"installed ok\" : \"WRONG\", fj_version_string(), worst);\n"
    "  return worst < 1e-5 ? 0 : 1;\n"
    "}\n";

static void test_files_installed(void) {
  static const char *const files[] = {
      "bin/flashjit", "include/flashjit.h", FJ_TEST_LIBDIR "/libflashjit.so", FJ_TEST_LIBDIR "/libflashjit.so.0",
      FJ_TEST_LIBDIR "/libflashjit.so." FJ_TEST_VERSION, FJ_TEST_LIBDIR "/pkgconfig/flashjit.pc",
      FJ_TEST_LIBDIR "/cmake/flashjit/flashjit-config.cmake", FJ_TEST_LIBDIR "/cmake/flashjit/flashjit-targets.cmake",
      "share/flashjit/peers.py", FJ_TEST_PYTHONDIR "/flashjit/__init__.py", FJ_TEST_PYTHONDIR "/flashjit/_ffi.py",
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    if (files[i][0] == '/') continue;  /* an absolute FLASHJIT_INSTALL_PYTHONDIR: outside the prefix */
    check(exists(files[i]), "installed: %s", files[i]);
  }
}

static void test_installed_command(void) {
  char command[1024], out[8192];
  snprintf(command, sizeof command, "'%s/bin/flashjit' --version 2>&1", prefix);
  int rc = run(command, out, sizeof out);
  check(rc == 0 && strstr(out, FJ_TEST_VERSION) != NULL, "the installed command runs: exit %d, %s", rc, out);
  /* It finds share/flashjit/peers.py: with no python the peers are n/a for that reason, not for a missing script. */
  snprintf(command, sizeof command, "FLASHJIT_PYTHON=/nonexistent/python3 FLASHJIT_CACHE_DIR='%s/cache' "
           "'%s/bin/flashjit' bench --device cpu --seqlen 16 --head-dim 16 --warmup 0 --repeat 1 --peers 2>&1",
           prefix, prefix);
  rc = run(command, out, sizeof out);
  check(rc == 0 && strstr(out, "cannot run /nonexistent/python3") != NULL && strstr(out, "no peers.py") == NULL,
        "the installed command finds the installed peers script (exit %d)", rc);
  if (rc != 0 || strstr(out, "cannot run /nonexistent/python3") == NULL) printf("     %.1500s\n", out);
}

static void test_c_program(const char *dir) {
  char source[512], command[2048], out[8192];
  snprintf(source, sizeof source, "%s/user.c", dir);
  write_file(source, user_program);
  /* plain flags */
  snprintf(command, sizeof command, "'%s' %s -std=c11 '%s' -I'%s/include' -L'%s/%s' -lflashjit -lm "
           "-Wl,-rpath,'%s/%s' -o '%s/user' 2>&1 && '%s/user' 2>&1", FJ_TEST_CC, FJ_TEST_SANITIZE_FLAGS, source, prefix,
           prefix, FJ_TEST_LIBDIR, prefix, FJ_TEST_LIBDIR, dir, dir);
  int rc = run(command, out, sizeof out);
  check(rc == 0 && strncmp(out, "installed ok " FJ_TEST_VERSION, 13 + strlen(FJ_TEST_VERSION)) == 0,
        "a C program built against the installed header and library computes attention: %s", out);
  /* it records the soname, libflashjit.so.0: a later 0.x library serves it, a 1.x one is not taken for it */
  snprintf(command, sizeof command, "readelf -d '%s/user' 2>&1 | grep NEEDED | grep -c 'libflashjit.so.0]'", dir);
  rc = run(command, out, sizeof out);
  check(rc == 0 && atoi(out) == 1, "the program needs libflashjit.so.0 (the soname), not the link name: %s", out);
  /* pkg-config's flags, where it is installed: the .pc file finds its prefix from its own folder */
  if (run("command -v pkg-config >/dev/null 2>&1", out, sizeof out) != 0) {
    printf("skip pkg-config (not installed)\n");
    return;
  }
  snprintf(command, sizeof command, "PKG_CONFIG_PATH='%s/%s/pkgconfig' pkg-config --modversion --cflags --libs "
           "flashjit 2>&1", prefix, FJ_TEST_LIBDIR);
  rc = run(command, out, sizeof out);
  check(rc == 0 && strncmp(out, FJ_TEST_VERSION "\n", strlen(FJ_TEST_VERSION) + 1) == 0,
        "pkg-config --modversion flashjit: %s", out);
  snprintf(command, sizeof command, "'%s' %s -std=c11 '%s' $(PKG_CONFIG_PATH='%s/%s/pkgconfig' pkg-config --cflags "
           "--libs flashjit) -lm -Wl,-rpath,'%s/%s' -o '%s/user_pc' 2>&1 && '%s/user_pc' 2>&1", FJ_TEST_CC,
           FJ_TEST_SANITIZE_FLAGS, source, prefix, FJ_TEST_LIBDIR, prefix, FJ_TEST_LIBDIR, dir, dir);
  rc = run(command, out, sizeof out);
  check(rc == 0 && strncmp(out, "installed ok", 12) == 0, "the same program with pkg-config's flags: %s", out);
}

static void test_cmake_project(const char *dir) {
  char path[512], command[4096], out[16384];
  snprintf(path, sizeof path, "%s/project", dir);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/project/user.c", dir);
  write_file(path, user_program);
  snprintf(path, sizeof path, "%s/project/CMakeLists.txt", dir);
  write_file(path, "cmake_minimum_required(VERSION 3.22)\n"
                   "project(user C)\n"
                   "find_package(flashjit " FJ_TEST_VERSION " CONFIG REQUIRED)\n"
                   "add_executable(user user.c)\n"
                   "target_link_libraries(user PRIVATE flashjit::flashjit m)\n");
  snprintf(command, sizeof command, "'%s' -S '%s/project' -B '%s/project/build' -DCMAKE_PREFIX_PATH='%s' "
           "-DCMAKE_C_COMPILER='%s' -DCMAKE_C_FLAGS='%s' -DCMAKE_EXE_LINKER_FLAGS='%s' >/dev/null 2>&1 || echo configure "
           "failed; '%s' --build '%s/project/build' 2>&1 | tail -5 && '%s/project/build/user' 2>&1",
           FJ_TEST_CMAKE, dir, dir, prefix, FJ_TEST_CC, FJ_TEST_SANITIZE_FLAGS, FJ_TEST_SANITIZE_FLAGS, FJ_TEST_CMAKE, dir,
           dir);
  int rc = run(command, out, sizeof out);
  check(rc == 0 && strstr(out, "installed ok " FJ_TEST_VERSION) != NULL,
        "a CMake project with find_package(flashjit) and flashjit::flashjit computes attention (exit %d)", rc);
  if (rc != 0 || strstr(out, "installed ok") == NULL) printf("     %.3000s\n", out);
}

static void test_python_package(void) {
#if defined(__SANITIZE_ADDRESS__)
  printf("skip the Python package: this build's library needs AddressSanitizer's runtime loaded first\n");
#else
  char command[1024], out[8192];
  if (FJ_TEST_PYTHONDIR[0] == '/') {
    printf("skip the Python package: FLASHJIT_INSTALL_PYTHONDIR=%s is outside the prefix\n", FJ_TEST_PYTHONDIR);
    return;
  }
  if (run("command -v python3 >/dev/null 2>&1", out, sizeof out) != 0) {
    printf("skip the Python package: no python3\n");
    return;
  }
  snprintf(command, sizeof command, "cd / && env -u FLASHJIT_LIBRARY PYTHONPATH='%s/%s' python3 -c "
           "'import flashjit, flashjit._ffi as f; flashjit.version(); print(f._lib._name, flashjit.version())' 2>&1",
           prefix, FJ_TEST_PYTHONDIR);
  int rc = run(command, out, sizeof out);
  char want[600];
  snprintf(want, sizeof want, "%s/%s/libflashjit.so " FJ_TEST_VERSION "\n", prefix, FJ_TEST_LIBDIR);
  check(rc == 0 && strcmp(out, want) == 0, "the installed Python package loads the installed library: %s", out);
#endif
}

int main(void) {
  snprintf(prefix, sizeof prefix, "/tmp/fj_test_install_XXXXXX");
  if (mkdtemp(prefix) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  char command[1024], out[16384];
  snprintf(command, sizeof command, "'%s' --install '%s' --prefix '%s' 2>&1", FJ_TEST_CMAKE, FJ_TEST_BINARY_DIR,
           prefix);
  int rc = run(command, out, sizeof out);
  check(rc == 0, "cmake --install into %s: exit %d", prefix, rc);
  if (rc != 0) printf("     %.3000s\n", out);
  char work[300];
  snprintf(work, sizeof work, "%s/work", prefix);
  mkdir(work, 0700);
  if (rc == 0) {
    test_files_installed();
    test_installed_command();
    test_c_program(work);
    test_cmake_project(work);
    test_python_package();
  }
  remove_tree(prefix);
  return check_summary();
}
