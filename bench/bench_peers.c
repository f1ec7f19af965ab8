/* bench_peers.c: the peers' side of `flashjit bench --peers` (one shape or a grid). It finds
 * bench/peers/peers.py, starts python3 on it with the points as one JSON object on stdin, and reads one
 * JSON object per line back: results, errors, check verdicts, or one "skip" line when torch, Triton or a
 * GPU is missing. A missing interpreter, a missing script or a crashed script never fails the command:
 * the peer columns then say n/a and the note says why, because the flashjit figures are worth printing
 * regardless. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/cli.h"
#include "cache/json_reader.h"

extern char **environ;

const char *const bench_peer_names[BENCH_PEER_COUNT] = {"sdpa-flash", "sdpa-cudnn", "sdpa-efficient",
                                                        "triton-fa2", "torch-sdpa", "torch-eager"};
#define BENCH_FIRST_CPU_PEER 4

static int bench_peer_index(const char *name) {
  for (int i = 0; i < BENCH_PEER_COUNT; i++)
    if (name != NULL && strcmp(bench_peer_names[i], name) == 0) return i;
  return -1;
}

int bench_peers_for_device(const bench_options *o, const char *device_id, int *peers) {
  int cpu = strncmp(device_id, "cpu", 3) == 0, n = 0;
  for (int k = 0; k < BENCH_PEER_COUNT; k++)
    if ((k >= BENCH_FIRST_CPU_PEER) == cpu && (o->peer_list == NULL || o->peer_chosen[k])) peers[n++] = k;
  return n;
}

int bench_peer_list_parse(bench_options *o) {
  memset(o->peer_chosen, 0, sizeof o->peer_chosen);
  if (o->peer_list == NULL) return 0;
  char known[256] = "";
  for (int k = 0; k < BENCH_PEER_COUNT; k++)
    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k ? ", " : "", bench_peer_names[k]);
  const char *p = o->peer_list;
  for (;;) {
    size_t length = strcspn(p, ",");
    char name[64];
    if (length == 0 || length >= sizeof name) {
      cli_error(BENCH_COMMAND, "--peer-list=%s: expected peer names separated by commas (%s)", o->peer_list, known);
      return -1;
    }
    memcpy(name, p, length);
    name[length] = '\0';
    int k = bench_peer_index(name);
    if (k < 0) {
      cli_error(BENCH_COMMAND, "--peer-list=%s: unknown peer '%s' (known: %s)", o->peer_list, name, known);
      return -1;
    }
    o->peer_chosen[k] = 1;
    if (p[length] == '\0') return 0;
    p += length + 1;
  }
}

const char *bench_peer_word(const bench_grid_point *p, int k) {
  return p->peer_error[k][0] && !p->peer_unavailable[k] ? "error" : "n/a";
}

const char *bench_peer_why(const bench_peers_status *st, const bench_grid_point *p, int k) {
  if (p->peer_measured[k]) return "";
  if (p->peer_error[k][0]) return p->peer_error[k];
  if (!st->ran) return st->note;
  return st->unavailable[k][0] ? st->unavailable[k] : "not measured";
}

double bench_peer_ratio(const bench_grid_point *p, int k) {
  /* The same FLOP count on both sides: the throughput ratio is the inverse ratio of the times. */
  return p->measured && p->peer_measured[k] && p->ms > 0.0 ? p->peer_ms[k] / p->ms : 0.0;
}

/* The script: --peers-script, FLASHJIT_PEERS_SCRIPT, else beside this program: a build folder inside
 * the source tree (<src>/build/flashjit -> <src>/bench/peers/peers.py) or an install prefix
 * (<prefix>/bin/flashjit -> <prefix>/share/flashjit/peers.py). 0 and path, or -1 and why. */
static int bench_peers_script(const bench_options *o, char *path, size_t size, char *why, size_t why_size) {
  const char *given = o->peers_script ? o->peers_script : getenv("FLASHJIT_PEERS_SCRIPT");
  if (given != NULL && given[0] != '\0') {
    if (access(given, R_OK) != 0) {
      snprintf(why, why_size, "%s %.300s: %s", o->peers_script ? "--peers-script" : "FLASHJIT_PEERS_SCRIPT", given,
               strerror(errno));
      return -1;
    }
    snprintf(path, size, "%s", given);
    return 0;
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    snprintf(why, why_size, "cannot find this program (/proc/self/exe) to look for peers.py beside it; "
             "give --peers-script");
    return -1;
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash) *slash = '\0';
  static const char *const relative[] = {"../bench/peers/peers.py", "../share/flashjit/peers.py",
                                         "bench/peers/peers.py"};
  for (size_t i = 0; i < sizeof relative / sizeof relative[0]; i++) {
    snprintf(path, size, "%s/%s", self, relative[i]);
    if (access(path, R_OK) == 0) return 0;
  }
  snprintf(why, why_size, "no peers.py in %.200s/../bench/peers or %.200s/../share/flashjit; give --peers-script",
           self, self);
  return -1;
}

/* The request: the device, flashjit's thread count (the CPU peers use as many) and the points, as
 * peers.py reads them. */
static int bench_peers_request(FILE *f, const bench_options *o, const char *device_id, int threads,
                               const bench_grid_point *points, int count, int64_t warmup, int64_t repeat) {
  fprintf(f, "{\"device\": \"%s\", \"threads\": %d, \"warmup\": %" PRId64 ", \"repeat\": %" PRId64, device_id,
          threads, warmup, repeat);
  if (o->peer_list != NULL) {
    int shown[BENCH_PEER_COUNT], n = bench_peers_for_device(o, device_id, shown);
    fprintf(f, ", \"peers\": [");
    for (int j = 0; j < n; j++) fprintf(f, "%s\"%s\"", j ? ", " : "", bench_peer_names[shown[j]]);
    fprintf(f, "]");
  }
  fprintf(f, ", \"points\": [");
  for (int i = 0; i < count; i++) {
    const bench_grid_point *p = &points[i];
    fprintf(f,
            "%s\n {\"id\": %d, \"dtype\": \"%s\", \"batch\": %" PRId64 ", \"heads\": %" PRId64
            ", \"kv_heads\": %" PRId64 ", \"seqlen\": %" PRId64 ", \"seqlen_kv\": %" PRId64 ", \"head_dim\": %" PRId64
            ", \"causal\": %s, \"attn_bias\": %s}",
            i ? "," : "", i, core_dtype_name(p->dtype), p->batch, p->heads, p->kv_heads, p->seqlen, p->seqlen_kv,
            p->head_dim, p->causal ? "true" : "false", o->attn_bias ? "true" : "false");
  }
  fprintf(f, "\n]}\n");
  return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

/* Takes one line of the script's output into the points and the status. */
static void bench_peers_line(const char *line, size_t length, bench_grid_point *points, int count,
                             bench_peers_status *st, int *results) {
  json_value *v = NULL;
  if (json_parse(line, length, &v) != FJ_OK || v->type != JSON_OBJECT) {
    json_free(v);
    return;  /* not ours (a library printing to stdout): ignored */
  }
  const json_value *kind = json_get(v, "kind"), *peer = json_get(v, "peer"), *id = json_get(v, "id");
  const char *k = kind && kind->type == JSON_STRING ? kind->string : "";
  int pi = bench_peer_index(peer && peer->type == JSON_STRING ? peer->string : NULL);
  int point = id && id->type == JSON_NUMBER && id->is_integer && id->integer >= 0 && id->integer < count
                  ? (int)id->integer : -1;
  if (strcmp(k, "skip") == 0) {
    const json_value *reason = json_get(v, "reason");
    snprintf(st->note, sizeof st->note, "%s", reason && reason->type == JSON_STRING ? reason->string : "skipped");
  } else if (strcmp(k, "info") == 0) {
    const json_value *torch = json_get(v, "torch"), *device = json_get(v, "device");
    snprintf(st->info, sizeof st->info, "torch %s on %s", torch && torch->type == JSON_STRING ? torch->string : "?",
             device && device->type == JSON_STRING ? device->string : "?");
  } else if (strcmp(k, "unavailable") == 0 && pi >= 0) {
    /* with an id: this point only (a dtype torch has no CPU kernel for); without: the whole peer */
    const json_value *reason = json_get(v, "reason");
    const char *why = reason && reason->type == JSON_STRING ? reason->string : "unavailable";
    if (point >= 0) {
      points[point].peer_unavailable[pi] = 1;
      snprintf(points[point].peer_error[pi], sizeof points[point].peer_error[pi], "%s", why);
    } else if (id == NULL) {
      snprintf(st->unavailable[pi], sizeof st->unavailable[pi], "%s", why);
    }
  } else if (strcmp(k, "check") == 0 && pi >= 0) {
    /* A failed check with a scope ("dtype" on the CPU, "dtype+head_dim" on CUDA) costs those points
     * only: they come back as "unavailable" lines with an id. Without one it costs the whole peer. */
    const json_value *ok = json_get(v, "ok"), *err = json_get(v, "rel_err"), *error = json_get(v, "error");
    const json_value *scope = json_get(v, "scope");
    int partial = scope && scope->type == JSON_STRING &&
                  (strcmp(scope->string, "dtype") == 0 || strcmp(scope->string, "dtype+head_dim") == 0);
    if (ok && ok->type == JSON_FALSE && !partial && st->unavailable[pi][0] == '\0') {
      if (error && error->type == JSON_STRING)
        snprintf(st->unavailable[pi], sizeof st->unavailable[pi], "failed its check: %s", error->string);
      else
        snprintf(st->unavailable[pi], sizeof st->unavailable[pi], "failed its check against SDPA math: rel_err %.3g",
                 err && err->type == JSON_NUMBER ? err->number : -1.0);
    }
  } else if (strcmp(k, "result") == 0 && pi >= 0 && point >= 0) {
    const json_value *ms = json_get(v, "ms"), *ms_min = json_get(v, "ms_min");
    if (ms && ms->type == JSON_NUMBER && ms->number > 0.0) {
      points[point].peer_measured[pi] = 1;
      points[point].peer_ms[pi] = ms->number;
      points[point].peer_ms_min[pi] = ms_min && ms_min->type == JSON_NUMBER ? ms_min->number : ms->number;
      (*results)++;
    }
  } else if (strcmp(k, "error") == 0 && pi >= 0 && point >= 0) {
    const json_value *error = json_get(v, "error");
    snprintf(points[point].peer_error[pi], sizeof points[point].peer_error[pi], "%s",
             error && error->type == JSON_STRING ? error->string : "error");
  }
  json_free(v);
}

static void bench_peers_spawn(const bench_options *o, const char *device_id, bench_grid_point *points, int count,
                              int64_t warmup, int64_t repeat, bench_peers_status *st) {
  char script[PATH_MAX + 64];
  if (bench_peers_script(o, script, sizeof script, st->note, sizeof st->note) != 0) return;

  /* The request goes through an unlinked temporary file on stdin: no pipe to keep fed while the
   * script may be busy compiling Triton kernels. */
  const char *tmp = getenv("TMPDIR");
  char request_path[PATH_MAX];
  snprintf(request_path, sizeof request_path, "%s/flashjit-peers-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  int request_fd = mkstemp(request_path);
  if (request_fd < 0) {
    snprintf(st->note, sizeof st->note, "cannot write the request (%.300s): %s", request_path, strerror(errno));
    return;
  }
  unlink(request_path);
  FILE *request = fdopen(request_fd, "w+");
  if (request == NULL ||
      bench_peers_request(request, o, device_id, bench_threads(o), points, count, warmup, repeat) != 0) {
    snprintf(st->note, sizeof st->note, "cannot write the request: %s", strerror(errno));
    if (request) fclose(request); else close(request_fd);
    return;
  }
  rewind(request);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    snprintf(st->note, sizeof st->note, "pipe: %s", strerror(errno));
    fclose(request);
    return;
  }
  const char *python = getenv("FLASHJIT_PYTHON");
  if (python == NULL || python[0] == '\0') python = "python3";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fileno(request), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  char *argv[] = {(char *)python, script, NULL};
  pid_t pid = 0;
  fflush(NULL);
  int rc = posix_spawnp(&pid, python, &actions, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  fclose(request);
  if (rc != 0) {
    snprintf(st->note, sizeof st->note, "cannot run %.200s: %s%s", python, strerror(rc),
             rc == ENOENT ? " (set FLASHJIT_PYTHON, or install python3 with torch and triton)" : "");
    close(out[0]);
    return;
  }

  /* Lines as they come; the script's stderr is ours, so its progress and tracebacks show. */
  FILE *in = fdopen(out[0], "r");
  char *line = NULL;
  size_t capacity = 0;
  ssize_t length;
  int results = 0;
  while (in != NULL && (length = getline(&line, &capacity, in)) >= 0)
    bench_peers_line(line, (size_t)length, points, count, st, &results);
  free(line);
  if (in) fclose(in); else close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (st->note[0] != '\0') return;  /* the script said why it skipped */
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFSIGNALED(status))
      snprintf(st->note, sizeof st->note, "%.100s %.300s was killed by signal %d", python, script, WTERMSIG(status));
    else
      snprintf(st->note, sizeof st->note, "%.100s %.300s exited with status %d (its stderr above says why)", python, script,
               WEXITSTATUS(status));
    if (results == 0) return;
  }
  st->ran = 1;
}

void bench_peers_run(const bench_options *o, const char *device_id, bench_grid_point *points, int count,
                     int64_t warmup, int64_t repeat, bench_peers_status *st) {
  memset(st, 0, sizeof *st);
  int shown[BENCH_PEER_COUNT];
  if (bench_peers_for_device(o, device_id, shown) == 0) {
    snprintf(st->note, sizeof st->note, "--peer-list=%.200s names no peer that runs on %.60s", o->peer_list, device_id);
    fprintf(stderr, "flashjit bench: peers n/a: %s\n", st->note);
    return;
  }
  fprintf(stderr, "flashjit bench: measuring the peers\n");
  bench_peers_spawn(o, device_id, points, count, warmup, repeat, st);
  if (!st->ran) fprintf(stderr, "flashjit bench: peers n/a: %s\n", st->note);
}
