/* threadpool.h: a fixed pool of worker threads that runs `jobs` calls of one function, handing out job
 * indices dynamically; the calling thread works too. One run at a time per pool (runs are serialized). */
#ifndef FJ_CORE_THREADPOOL_H
#define FJ_CORE_THREADPOOL_H
#include <stdint.h>
#include "flashjit.h"

typedef struct core_pool core_pool;
/* worker is 0..threads-1 (the caller is 0); use it to index per-thread scratch. */
typedef void (*core_pool_fn)(void *user, int64_t job, int worker);

/* threads >= 1 (1 = caller only, no threads started). */
fj_status core_pool_create(int threads, core_pool **out);
void core_pool_destroy(core_pool *pool);   /* NULL-safe */
int core_pool_threads(const core_pool *pool);
/* Runs fn(user, j, worker) for j in [0, jobs); returns when all are done (jobs <= 0: nothing). Callers
 * on other threads wait their turn; fn must not call core_pool_run on the same pool (it would wait on
 * itself). */
void core_pool_run(core_pool *pool, int64_t jobs, core_pool_fn fn, void *user);
/* Online cores of this process (sched_getaffinity), at least 1. */
int core_online_cores(void);
#endif
