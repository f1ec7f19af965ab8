/* test_peers_script.c: bench/peers/peers.py, the script `flashjit bench --peers` runs, is at least valid
 * Python and keeps its contract whether torch is there or not: --self-test exits 0 (with a skip message,
 * or having checked the peers where they exist) on CUDA and on the CPU, a request for the CPU answers
 * exit 0 and either one "skip" line (no torch) or an "info" line (torch measures it; the shape is tiny
 * and nothing is timed here), a device no peer covers answers one "skip" line, and a malformed request
 * answers a "skip" line naming it and exit 2. The peers' numbers themselves are `flashjit bench
 * --peers`'s. Skips (77) without python3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"

/* Runs a shell command line; its exit status, and the first line of its stdout in line. */
static int run(const char *command, char *line, size_t size) {
  line[0] = '\0';
  FILE *p = popen(command, "r");
  if (p == NULL) return -1;
  if (fgets(line, (int)size, p) == NULL) line[0] = '\0';
  char rest[4096];
  while (fgets(rest, sizeof rest, p) != NULL) {
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(void) {
  if (system("python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' >/dev/null 2>&1") != 0) {
    printf("skip: no python3 (3.8 or later) on PATH\n");
    return 77;
  }
  const char *script = FJ_TEST_SOURCE_DIR "/bench/peers/peers.py";
  char command[2048], line[4096];

  /* Compiled to a throwaway cache folder, so the source tree gains no __pycache__. */
  snprintf(command, sizeof command,
           "PYTHONPYCACHEPREFIX=\"${TMPDIR:-/tmp}/fj-peers-pycache-$$\" python3 -m py_compile '%s' 2>&1; rc=$?; "
           "rm -rf \"${TMPDIR:-/tmp}/fj-peers-pycache-$$\"; exit $rc", script);
  int rc = run(command, line, sizeof line);
  check(rc == 0, "python3 -m py_compile peers.py (exit %d%s%s)", rc, line[0] ? ": " : "", line);

  snprintf(command, sizeof command, "PYTHONDONTWRITEBYTECODE=1 python3 '%s' --self-test 2>/dev/null", script);
  rc = run(command, line, sizeof line);
  check(rc == 0, "peers.py --self-test exits 0 (first line: %s)", line[0] ? line : "(none)");

  snprintf(command, sizeof command,
           "echo '{\"device\": \"cpu:0\", \"points\": [{\"id\": 0, \"dtype\": \"bf16\", \"batch\": 1, \"heads\": 2, "
           "\"seqlen\": 64, \"head_dim\": 64, \"causal\": true}]}' | PYTHONDONTWRITEBYTECODE=1 python3 '%s' 2>/dev/null",
           script);
  rc = run(command, line, sizeof line);
  check(rc == 0 && ((strstr(line, "\"kind\": \"skip\"") && strstr(line, "torch")) ||
                    (strstr(line, "\"kind\": \"info\"") && strstr(line, "CPU"))),
        "a request for the CPU: a skip line naming torch, or torch's info line; exit 0 (%d: %s)", rc, line);

  /* a point with bench --attn-bias's bias: where torch runs, the CPU peer it has (torch-sdpa or torch-eager)
   * measures it: one result line for the point */
  snprintf(command, sizeof command,
           "out=$(echo '{\"device\": \"cpu:0\", \"warmup\": 0, \"repeat\": 1, \"points\": [{\"id\": 0, \"dtype\": "
           "\"fp32\", \"batch\": 1, \"heads\": 4, \"kv_heads\": 2, \"seqlen\": 40, \"seqlen_kv\": 70, "
           "\"head_dim\": 64, \"attn_bias\": true}]}' | PYTHONDONTWRITEBYTECODE=1 python3 '%s' 2>/dev/null); "
           "rc=$?; if echo \"$out\" | head -1 | grep -q '\"kind\": \"skip\"'; then echo skip; exit $rc; fi; "
           "echo \"$out\" | grep '\"id\": 0,' | grep -c '\"kind\": \"result\"'; exit $rc", script);
  rc = run(command, line, sizeof line);
  check(rc == 0 && (strncmp(line, "skip", 4) == 0 || atoi(line) == 1),
        "a CPU request with attn_bias: one peer result (or torch skipped), exit 0 (%d: %s)", rc, line);

  snprintf(command, sizeof command,
           "PYTHONDONTWRITEBYTECODE=1 python3 '%s' --self-test --device cpu 2>/dev/null", script);
  rc = run(command, line, sizeof line);
  check(rc == 0, "peers.py --self-test --device cpu exits 0 (first line: %s)", line[0] ? line : "(none)");

  snprintf(command, sizeof command,
           "echo '{\"device\": \"hip:0\", \"points\": []}' | PYTHONDONTWRITEBYTECODE=1 python3 '%s' 2>/dev/null",
           script);
  rc = run(command, line, sizeof line);
  check(rc == 0 && strstr(line, "\"kind\": \"skip\"") && strstr(line, "CUDA devices and the CPU"),
        "a request for a device no peer covers: one skip line, exit 0 (%d: %s)", rc, line);

  snprintf(command, sizeof command, "echo 'not json' | PYTHONDONTWRITEBYTECODE=1 python3 '%s' 2>/dev/null", script);
  rc = run(command, line, sizeof line);
  check(rc == 2 && strstr(line, "\"kind\": \"skip\"") && strstr(line, "bad request"),
        "a malformed request: a skip line that says so, exit 2 (%d: %s)", rc, line);

  snprintf(command, sizeof command,
           "echo '{\"points\": [{\"id\": 0, \"dtype\": \"int4\", \"batch\": 1, \"heads\": 2, \"seqlen\": 64, "
           "\"head_dim\": 64}]}' | PYTHONDONTWRITEBYTECODE=1 python3 '%s' 2>/dev/null", script);
  rc = run(command, line, sizeof line);
  check(rc == 2 && strstr(line, "dtype"), "a request with a bad dtype is refused (%d: %s)", rc, line);

  snprintf(command, sizeof command,
           "echo '{\"points\": [{\"id\": 0, \"dtype\": \"fp32\", \"batch\": 1, \"heads\": 3, \"kv_heads\": 2, "
           "\"seqlen\": 64, \"head_dim\": 64}]}' | PYTHONDONTWRITEBYTECODE=1 python3 '%s' 2>/dev/null", script);
  rc = run(command, line, sizeof line);
  check(rc == 2 && strstr(line, "kv_heads"), "a request whose kv_heads do not divide heads is refused (%d: %s)", rc,
        line);

  return check_summary();
}
