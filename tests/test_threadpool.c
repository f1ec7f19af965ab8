/* test_threadpool.c: the CPU workers. Every job must run exactly once whatever the job and thread
 * counts, worker indices must stay in range (they index per-thread scratch), back-to-back runs must not
 * leak jobs into each other, and pools must start and stop cleanly many times over. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "flashjit.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "check.h"

typedef struct counting {
  atomic_int *counts;
  atomic_int bad_worker;
  atomic_int per_worker[8];
  int threads;
  int64_t generation; /* counts[j] must end at this value */
} counting;

static void count_job(void *user, int64_t job, int worker) {
  counting *c = user;
  atomic_fetch_add(&c->counts[job], 1);
  if (worker < 0 || worker >= c->threads) atomic_fetch_add(&c->bad_worker, 1);
  else if (worker < 8) atomic_fetch_add(&c->per_worker[worker], 1);
}

static void test_exactly_once(void) {
  int thread_counts[] = {1, 2, 4};
  int64_t job_counts[] = {0, 1, 7, 10000};
  for (int t = 0; t < 3; t++) {
    core_pool *pool = NULL;
    fj_status s = core_pool_create(thread_counts[t], &pool);
    CHECK(s == FJ_OK && pool != NULL && core_pool_threads(pool) == thread_counts[t], "pool of %d threads",
          thread_counts[t]);
    if (pool == NULL) continue;
    for (int j = 0; j < 4; j++) {
      int64_t jobs = job_counts[j];
      counting c;
      memset(&c, 0, sizeof c);
      c.threads = thread_counts[t];
      c.counts = calloc((size_t)jobs + 1, sizeof(atomic_int));
      core_pool_run(pool, jobs, count_job, &c);
      int wrong = 0;
      for (int64_t i = 0; i < jobs; i++) wrong += atomic_load(&c.counts[i]) != 1;
      int total = 0;
      for (int w = 0; w < 8; w++) total += atomic_load(&c.per_worker[w]);
      CHECK(wrong == 0 && atomic_load(&c.counts[jobs]) == 0 && total == jobs,
            "%d threads, %lld jobs: each ran once (%d wrong), none past the end", thread_counts[t],
            (long long)jobs, wrong);
      CHECK(atomic_load(&c.bad_worker) == 0, "%d threads, %lld jobs: worker indices within [0, %d)",
            thread_counts[t], (long long)jobs, thread_counts[t]);
      free(c.counts);
    }
    core_pool_destroy(pool);
  }
}

static void test_many_runs(void) {
  core_pool *pool = NULL;
  core_pool_create(4, &pool);
  int64_t jobs = 37;
  counting c;
  memset(&c, 0, sizeof c);
  c.threads = 4;
  c.counts = calloc((size_t)jobs, sizeof(atomic_int));
  int runs = 2000;
  for (int r = 0; r < runs; r++) core_pool_run(pool, jobs, count_job, &c);
  int wrong = 0;
  for (int64_t i = 0; i < jobs; i++) wrong += atomic_load(&c.counts[i]) != runs;
  CHECK(wrong == 0 && atomic_load(&c.bad_worker) == 0, "%d back-to-back runs of %lld jobs: each job ran %d times",
        runs, (long long)jobs, runs);
  /* alternating sizes, including 0 and 1 which take the inline path */
  memset(c.counts, 0, (size_t)jobs * sizeof(atomic_int));
  int64_t expected[37] = {0};
  for (int r = 0; r < 500; r++) {
    int64_t n = r % 5 == 0 ? 0 : r % 5 == 1 ? 1 : (r * 7) % 38;
    if (n > jobs) n = jobs;
    core_pool_run(pool, n, count_job, &c);
    for (int64_t i = 0; i < n; i++) expected[i]++;
  }
  wrong = 0;
  for (int64_t i = 0; i < jobs; i++) wrong += atomic_load(&c.counts[i]) != expected[i];
  CHECK(wrong == 0, "500 runs of varying sizes (0, 1, ... 37 jobs): counts exact");
  free(c.counts);
  core_pool_destroy(pool);
}

typedef struct shared_run {
  core_pool *pool;
  counting *c;
  int runs;
} shared_run;

static void *run_from_thread(void *raw) {
  shared_run *r = raw;
  for (int i = 0; i < r->runs; i++) core_pool_run(r->pool, 100, count_job, r->c);
  return NULL;
}

static void test_concurrent_callers(void) {
  /* Two threads sharing a pool: runs are serialized, so neither loses jobs. */
  core_pool *pool = NULL;
  core_pool_create(3, &pool);
  counting c1, c2;
  memset(&c1, 0, sizeof c1);
  memset(&c2, 0, sizeof c2);
  c1.threads = c2.threads = 3;
  c1.counts = calloc(100, sizeof(atomic_int));
  c2.counts = calloc(100, sizeof(atomic_int));
  shared_run r1 = {pool, &c1, 300}, r2 = {pool, &c2, 300};
  pthread_t t1, t2;
  pthread_create(&t1, NULL, run_from_thread, &r1);
  pthread_create(&t2, NULL, run_from_thread, &r2);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  int wrong = 0;
  for (int i = 0; i < 100; i++) wrong += atomic_load(&c1.counts[i]) != 300 || atomic_load(&c2.counts[i]) != 300;
  CHECK(wrong == 0 && atomic_load(&c1.bad_worker) == 0 && atomic_load(&c2.bad_worker) == 0,
        "two threads running 300 times each on one pool: every count is 300");
  free(c1.counts);
  free(c2.counts);
  core_pool_destroy(pool);
}

typedef struct slow_state {
  atomic_int done;
} slow_state;

static void slow_job(void *user, int64_t job, int worker) {
  slow_state *s = user;
  /* uneven jobs: a few are much longer, which dynamic handout must absorb */
  volatile double x = 0;
  int64_t n = job % 13 == 0 ? 200000 : 1000;
  for (int64_t i = 0; i < n; i++) x += (double)i;
  if (x >= 0) atomic_fetch_add(&s->done, 1);
}

static void test_create_destroy(void) {
  int ok = 1;
  for (int i = 0; i < 200; i++) {
    core_pool *pool = NULL;
    if (core_pool_create(1 + i % 4, &pool) != FJ_OK) ok = 0;
    if (i % 2 == 0) {
      slow_state s;
      atomic_init(&s.done, 0);
      core_pool_run(pool, 26, slow_job, &s);
      if (atomic_load(&s.done) != 26) ok = 0;
    }
    core_pool_destroy(pool);
  }
  CHECK(ok, "200 pools of 1-4 threads created, half of them run, destroyed");
  core_pool_destroy(NULL);
  CHECK(1, "core_pool_destroy(NULL) does nothing");

  core_pool *pool = (core_pool *)&ok;
  core_error_clear();
  CHECK(core_pool_create(0, &pool) == FJ_INVALID_ARGUMENT && pool == NULL && strstr(fj_last_error(), "threads=0"),
        "0 threads refused: \"%s\"", fj_last_error());
  CHECK(core_pool_create(-3, &pool) == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "threads=-3"),
        "-3 threads refused: \"%s\"", fj_last_error());
  CHECK(core_pool_create(2, NULL) == FJ_INVALID_ARGUMENT, "NULL out refused");
  CHECK(core_pool_threads(NULL) == 0, "core_pool_threads(NULL) is 0");
  int cores = core_online_cores();
  CHECK(cores >= 1, "core_online_cores() = %d", cores);
}

int main(void) {
  test_exactly_once();
  test_many_runs();
  test_concurrent_callers();
  test_create_destroy();
  return check_summary();
}
