/* threadpool.c: the CPU backend's workers. Threads are started once and sleep on a condition variable
 * between runs; within a run, job indices are handed out by an atomic counter so uneven jobs (causal
 * tiles) balance themselves. The caller works as worker 0 instead of waiting idle, and a run returns
 * only after every worker has left it, so fn and user never outlive the call. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/error.h"
#include "core/threadpool.h"

/* More threads than this is a caller's mistake, not a machine. */
#define CORE_POOL_MAX_THREADS 4096

struct core_pool {
  int threads;
  pthread_t *workers;      /* threads - 1 of them */
  pthread_mutex_t run_lock; /* serializes core_pool_run */
  pthread_mutex_t lock;     /* guards everything below */
  pthread_cond_t wake;      /* workers: a new run or stop */
  pthread_cond_t done;      /* caller: the last worker left the run */
  uint64_t generation;      /* bumped per run; a worker runs each generation once */
  int stop;
  int busy;                 /* workers that have not yet left the current run */
  core_pool_fn fn;
  void *user;
  int64_t jobs;
  atomic_int_least64_t next; /* the next job index to hand out */
};

typedef struct core_worker_arg {
  core_pool *pool;
  int index;
} core_worker_arg;

static void core_pool_work(core_pool *pool, core_pool_fn fn, void *user, int64_t jobs, int worker) {
  for (;;) {
    int64_t job = atomic_fetch_add_explicit(&pool->next, 1, memory_order_relaxed);
    if (job >= jobs) return;
    fn(user, job, worker);
  }
}

static void *core_pool_worker(void *raw) {
  core_worker_arg arg = *(core_worker_arg *)raw;
  free(raw);
  core_pool *pool = arg.pool;
  uint64_t seen = 0;
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    while (!pool->stop && pool->generation == seen) pthread_cond_wait(&pool->wake, &pool->lock);
    if (pool->stop) break;
    seen = pool->generation;
    core_pool_fn fn = pool->fn;
    void *user = pool->user;
    int64_t jobs = pool->jobs;
    pthread_mutex_unlock(&pool->lock);
    core_pool_work(pool, fn, user, jobs, arg.index);
    pthread_mutex_lock(&pool->lock);
    if (--pool->busy == 0) pthread_cond_signal(&pool->done);
  }
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

/* Stops and joins the first `started` workers and frees the pool. */
static void core_pool_teardown(core_pool *pool, int started) {
  pthread_mutex_lock(&pool->lock);
  pool->stop = 1;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  for (int i = 0; i < started; i++) pthread_join(pool->workers[i], NULL);
  pthread_cond_destroy(&pool->done);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->lock);
  pthread_mutex_destroy(&pool->run_lock);
  free(pool->workers);
  free(pool);
}

fj_status core_pool_create(int threads, core_pool **out) {
  if (out == NULL) return core_error(FJ_INVALID_ARGUMENT, "core_pool_create: out is NULL");
  *out = NULL;
  if (threads < 1 || threads > CORE_POOL_MAX_THREADS)
    return core_error(FJ_INVALID_ARGUMENT, "threads=%d must be from 1 to %d", threads,
                      CORE_POOL_MAX_THREADS);
  core_pool *pool = calloc(1, sizeof *pool);
  if (pool == NULL) return core_error(FJ_OUT_OF_MEMORY, "no memory for a pool of %d threads", threads);
  pool->threads = threads;
  atomic_init(&pool->next, 0);
  pool->workers = calloc((size_t)threads, sizeof *pool->workers);
  if (pool->workers == NULL) {
    free(pool);
    return core_error(FJ_OUT_OF_MEMORY, "no memory for a pool of %d threads", threads);
  }
  if (pthread_mutex_init(&pool->run_lock, NULL) != 0) goto no_sync;
  if (pthread_mutex_init(&pool->lock, NULL) != 0) {
    pthread_mutex_destroy(&pool->run_lock);
    goto no_sync;
  }
  if (pthread_cond_init(&pool->wake, NULL) != 0) {
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    goto no_sync;
  }
  if (pthread_cond_init(&pool->done, NULL) != 0) {
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    goto no_sync;
  }
  for (int i = 1; i < threads; i++) {
    core_worker_arg *arg = malloc(sizeof *arg);
    int rc = arg == NULL ? -1 : 0;
    if (arg != NULL) {
      arg->pool = pool;
      arg->index = i;
      rc = pthread_create(&pool->workers[i - 1], NULL, core_pool_worker, arg);
      if (rc != 0) free(arg);
    }
    if (rc != 0) {
      core_pool_teardown(pool, i - 1);
      return core_error(FJ_OUT_OF_MEMORY, "could not start worker thread %d of %d (%s)", i, threads,
                        rc == -1 ? "no memory" : strerror(rc));
    }
  }
  *out = pool;
  return FJ_OK;
no_sync:
  free(pool->workers);
  free(pool);
  return core_error(FJ_INTERNAL, "pthread mutex or condition variable initialization failed");
}

void core_pool_destroy(core_pool *pool) {
  if (pool == NULL) return;
  core_pool_teardown(pool, pool->threads - 1);
}

int core_pool_threads(const core_pool *pool) { return pool == NULL ? 0 : pool->threads; }

void core_pool_run(core_pool *pool, int64_t jobs, core_pool_fn fn, void *user) {
  if (pool == NULL || fn == NULL || jobs <= 0) return;
  pthread_mutex_lock(&pool->run_lock);
  if (pool->threads == 1 || jobs == 1) {
    /* Waking workers costs more than one job; run it here. */
    for (int64_t j = 0; j < jobs; j++) fn(user, j, 0);
    pthread_mutex_unlock(&pool->run_lock);
    return;
  }
  pthread_mutex_lock(&pool->lock);
  pool->fn = fn;
  pool->user = user;
  pool->jobs = jobs;
  atomic_store_explicit(&pool->next, 0, memory_order_relaxed);
  pool->busy = pool->threads - 1;
  pool->generation++;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);

  core_pool_work(pool, fn, user, jobs, 0);

  pthread_mutex_lock(&pool->lock);
  while (pool->busy > 0) pthread_cond_wait(&pool->done, &pool->lock);
  pthread_mutex_unlock(&pool->lock);
  pthread_mutex_unlock(&pool->run_lock);
}

int core_online_cores(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)(n > CORE_POOL_MAX_THREADS ? CORE_POOL_MAX_THREADS : n) : 1;
}
