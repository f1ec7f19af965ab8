/* nvptx_emu_block.c: runs the blocks of an emulated kernel and gives the NVVM instructions their
 * effects. Each GPU thread of a block is a fiber; one OS thread runs them round-robin, each until it
 * blocks (at a barrier, at a warp collective, at exit), so runs are deterministic. A warp collective
 * (mma, ldmatrix, shfl) collects every lane's operands, and the last lane to arrive computes all the
 * lanes' results (nvptx_emu_warp.c) before any of them continues. cp.async is asynchronous as on
 * hardware: a copy only lands when its thread's wait_group retires its group, and until then any
 * access to its bytes is a hazard. Shared memory carries per-byte bookkeeping (in-flight copy, last
 * writer and reader and the barrier epoch they acted in) from which the emulator reports races a
 * missing or misplaced barrier would cause; global accesses are held to the buffers the test
 * registered. The first error ends the launch with a message naming block, thread and instruction. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "nvptx_emu_banks.h"
#include "nvptx_emu_fiber.h"
#include "nvptx_emu_internal.h"
#include "nvptx_emu_warp.h"

/* Large enough for the unrolled kernels' host frames (tens of KB at d = 256) with room to spare; the
 * guard page below each stack turns an overflow into a crash, never into corruption. */
#define EMU_STACK_BYTES (384 * 1024)

enum { EMU_RUNNABLE, EMU_AT_BARRIER, EMU_AT_WARP, EMU_EXITED };
enum { EMU_OP_MMA = 1, EMU_OP_LDMATRIX, EMU_OP_SHFL, EMU_OP_VOTE };

/* Who touched a shared byte: a thread (its index), a whole warp (an ldmatrix: every lane receives the
 * data), several agents in one epoch, or nobody. */
#define EMU_AGENT_WARP(w) ((uint16_t)(2048 + (w)))
#define EMU_AGENT_MULTI ((uint16_t)0xffff)
#define EMU_AGENT_NONE ((uint16_t)0xfffe)

typedef struct emu_copy {
  unsigned char *dst;
  const unsigned char *src;
  int src_size, thread, site;
  int64_t group;  /* the commit count of its thread when it was issued */
} emu_copy;

typedef struct emu_thread {
  emu_fiber fiber;
  int state, site;           /* where it waits */
  int64_t committed;         /* cp.async groups committed */
  size_t *pending;           /* its copies not yet landed, in issue order (indices into copies) */
  size_t pending_head, pending_count, pending_capacity;
} emu_thread;

typedef struct emu_warp_state {
  int op, site, arg, arrived;
  uint32_t a[EMU_WARP][4], b[EMU_WARP][2];
  float c[EMU_WARP][4], d[EMU_WARP][4];
  const unsigned char *rows[EMU_WARP];
  uint32_t fragments[EMU_WARP][4];
  uint32_t value[EMU_WARP], lane_b[EMU_WARP], lane_c[EMU_WARP], out[EMU_WARP];
} emu_warp_state;

typedef struct emu_block {
  emu_kernel *kernel;
  emu_fiber home;            /* the launching OS thread's context */
  emu_thread *threads;
  emu_warp_state *warps;
  int count, warp_count, current;
  int64_t index, grid;
  const void *params;
  int barrier_arrived, barrier_id;
  uint32_t epoch;            /* barriers completed in this block, plus 1 */
  /* per byte of shared memory */
  uint32_t *in_flight;       /* index + 1 of the copy that will write it, 0 if none */
  uint16_t *writer, *reader;
  uint32_t *write_epoch, *read_epoch;
  emu_copy *copies;
  size_t copy_count, copy_capacity;
  int failed;
  char error[2048];
  emu_stats stats;
} emu_block;

/* The block being run; the hooks act on its current thread. One launch at a time per process. */
static emu_block *emu_active;

static const char *emu_site_text(const emu_block *b, int site) {
  if (site >= 0 && site < b->kernel->site_count) return b->kernel->sites[site].text;
  return "(unknown instruction)";
}

/* Records the first error and leaves the current fiber for good: the block is abandoned. */
static void emu_fail(emu_block *b, const char *format, ...) __attribute__((format(printf, 2, 3), noreturn));
static void emu_fail(emu_block *b, const char *format, ...) {
  if (!b->failed) {
    int n = snprintf(b->error, sizeof b->error, "block %lld thread %d (warp %d lane %d): ", (long long)b->index,
                     b->current, b->current / EMU_WARP, b->current % EMU_WARP);
    va_list ap;
    va_start(ap, format);
    if (n > 0 && (size_t)n < sizeof b->error) vsnprintf(b->error + n, sizeof b->error - (size_t)n, format, ap);
    va_end(ap);
    b->failed = 1;
  }
  emu_fiber_exit_to(&b->threads[b->current].fiber, &b->home);
}

/* A recording array of the cp.async bookkeeping, doubled (first: its first capacity). */
static void *emu_grow(emu_block *b, void *array, size_t *capacity, size_t item_bytes, size_t first) {
  size_t grown_capacity = *capacity ? 2 * *capacity : first;
  void *grown = realloc(array, grown_capacity * item_bytes);
  if (!grown) emu_fail(b, "out of memory recording cp.async copies");
  *capacity = grown_capacity;
  return grown;
}

/* ---- scheduling ---------------------------------------------------------------------------------- */

static void emu_describe_deadlock(emu_block *b) {
  int n = snprintf(b->error, sizeof b->error, "block %lld deadlocked: no thread can run;", (long long)b->index);
  for (int w = 0; w < b->warp_count && n > 0 && (size_t)n < sizeof b->error; w++) {
    int counts[4] = {0, 0, 0, 0}, site = -1;
    for (int l = 0; l < EMU_WARP; l++) {
      emu_thread *t = &b->threads[w * EMU_WARP + l];
      counts[t->state]++;
      if (t->state != EMU_EXITED) site = t->site;
    }
    n += snprintf(b->error + n, sizeof b->error - (size_t)n,
                  " warp %d: %d at a barrier, %d in a warp op, %d exited%s%s;", w, counts[EMU_AT_BARRIER],
                  counts[EMU_AT_WARP], counts[EMU_EXITED], site >= 0 ? " at " : "",
                  site >= 0 ? emu_site_text(b, site) : "");
  }
  b->failed = 1;
}

/* The current thread cannot go on (it waits or has exited): run the next runnable thread after it in
 * round-robin order, or go home when none is left. Returns when this thread is resumed. */
static void emu_run_next(emu_block *b, int exiting) {
  emu_thread *self = &b->threads[b->current];
  for (int i = 1; i <= b->count; i++) {
    int t = (b->current + i) % b->count;
    if (b->threads[t].state != EMU_RUNNABLE) continue;
    if (t == b->current) return;
    b->current = t;
    b->stats.switches++;
    if (exiting) emu_fiber_exit_to(&self->fiber, &b->threads[t].fiber);
    emu_fiber_switch(&self->fiber, &b->threads[t].fiber);
    return;
  }
  int all_exited = 1;
  for (int t = 0; t < b->count; t++) all_exited &= b->threads[t].state == EMU_EXITED;
  if (!all_exited) emu_describe_deadlock(b);
  emu_fiber_exit_to(&self->fiber, &b->home);
}

static void emu_thread_main(void) {
  emu_fiber_entered();
  emu_block *b = emu_active;
  b->kernel->entry((void *)b->params);
  emu_thread *self = &b->threads[b->current];
  if (self->pending_head < self->pending_count) {
    const emu_copy *copy = &b->copies[self->pending[self->pending_head]];
    emu_fail(b,
             "exits with %zu cp.async copies in flight (the oldest issued by %s, group %lld; %lld groups "
             "committed): a block must wait for all of its copies",
             self->pending_count - self->pending_head, emu_site_text(b, copy->site), (long long)copy->group,
             (long long)self->committed);
  }
  self->state = EMU_EXITED;
  emu_run_next(b, 1);
  abort();  /* an exited thread is never resumed */
}

/* ---- shared-memory bookkeeping --------------------------------------------------------------------- */

static size_t emu_shared_offset(emu_block *b, const void *address, int64_t bytes, const char *what, int site) {
  const unsigned char *p = address, *base = b->kernel->shared;
  if (p < base || bytes < 0 || (size_t)(p - base) + (size_t)bytes > b->kernel->shared_bytes)
    emu_fail(b, "%s of %lld bytes at shared offset %lld is outside the %zu bytes of dynamic shared memory (%s)", what,
             (long long)bytes, (long long)(p - base), b->kernel->shared_bytes, emu_site_text(b, site));
  return (size_t)(p - base);
}

static void emu_copy_text(const emu_block *b, uint32_t copy_plus_one, char *buffer, size_t size) {
  const emu_copy *copy = &b->copies[copy_plus_one - 1];
  snprintf(buffer, size, "cp.async #%u of thread %d (group %lld, %d source bytes, to shared offset %lld, by %s)",
           copy_plus_one - 1, copy->thread, (long long)copy->group, copy->src_size,
           (long long)(copy->dst - b->kernel->shared), emu_site_text(b, copy->site));
}

/* A write by thread `thread` to these bytes would race with a read: the last reader acted in this
 * epoch and is neither the thread itself nor its warp (an ldmatrix of its own warp has completed for
 * every lane before any lane goes on). */
static int emu_write_after_read(const emu_block *b, size_t at, int thread) {
  if (b->read_epoch[at] != b->epoch) return 0;
  uint16_t reader = b->reader[at];
  return reader != (uint16_t)thread && reader != EMU_AGENT_WARP(thread / EMU_WARP);
}

static void emu_note_read(emu_block *b, size_t at, uint16_t agent) {
  if (b->read_epoch[at] != b->epoch) {
    b->read_epoch[at] = b->epoch;
    b->reader[at] = agent;
  } else if (b->reader[at] != agent) {
    b->reader[at] = EMU_AGENT_MULTI;
  }
}

/* Checks and notes a read of bytes [at, at + bytes) by `agent`. strict: any write in this epoch is a
 * race (an ldmatrix hands the bytes to every lane); else only another thread's. */
static void emu_shared_read(emu_block *b, size_t at, size_t bytes, uint16_t agent, int strict, int site) {
  for (size_t i = at; i < at + bytes; i++) {
    if (b->in_flight[i]) {
      char copy[512];
      emu_copy_text(b, b->in_flight[i], copy, sizeof copy);
      emu_fail(b, "%s reads shared offset %zu while %s is still in flight (no wait_group + barrier retired it)",
               emu_site_text(b, site), i, copy);
    }
    if (b->write_epoch[i] == 0)
      emu_fail(b, "%s reads shared offset %zu, which nothing wrote in this block", emu_site_text(b, site), i);
    if (b->write_epoch[i] == b->epoch && (strict || b->writer[i] != agent))
      emu_fail(b, "%s reads shared offset %zu, written by thread %d since the last barrier (a race%s)",
               emu_site_text(b, site), i, b->writer[i],
               strict ? ": an ldmatrix hands the bytes to every lane of the warp" : "");
    emu_note_read(b, i, agent);
  }
}

static void emu_shared_write_check(emu_block *b, size_t at, size_t bytes, int thread, int site, const char *what) {
  for (size_t i = at; i < at + bytes; i++) {
    if (b->in_flight[i]) {
      char copy[512];
      emu_copy_text(b, b->in_flight[i], copy, sizeof copy);
      emu_fail(b, "%s (%s) writes shared offset %zu while %s is still in flight", what, emu_site_text(b, site), i,
               copy);
    }
    if (emu_write_after_read(b, i, thread)) {
      char reader[64];
      if (b->reader[i] == EMU_AGENT_MULTI)
        snprintf(reader, sizeof reader, "several threads or warps");
      else if (b->reader[i] >= EMU_AGENT_WARP(0))
        snprintf(reader, sizeof reader, "warp %d (ldmatrix)", b->reader[i] - EMU_AGENT_WARP(0));
      else
        snprintf(reader, sizeof reader, "thread %d", b->reader[i]);
      emu_fail(b, "%s (%s) writes shared offset %zu, read since the last barrier by %s (a race)", what,
               emu_site_text(b, site), i, reader);
    }
    if (b->write_epoch[i] == b->epoch && b->writer[i] != thread)
      emu_fail(b, "%s (%s) writes shared offset %zu, written by thread %d since the last barrier (a race)", what,
               emu_site_text(b, site), i, b->writer[i]);
  }
}

static void emu_note_write(emu_block *b, size_t at, size_t bytes, int thread) {
  for (size_t i = at; i < at + bytes; i++) {
    b->writer[i] = (uint16_t)thread;
    b->write_epoch[i] = b->epoch;
  }
}

/* ---- the hooks ------------------------------------------------------------------------------------- */

uint32_t emu_hook_sreg(int32_t which) {
  emu_block *b = emu_active;
  switch (which) {
    case EMU_SREG_TID_X: return (uint32_t)b->current;
    case EMU_SREG_NTID_X: return (uint32_t)b->count;
    case EMU_SREG_CTAID_X: return (uint32_t)b->index;
    case EMU_SREG_NCTAID_X: return (uint32_t)b->grid;
    case EMU_SREG_LANEID: return (uint32_t)(b->current % EMU_WARP);
    case EMU_SREG_WARPSIZE: return EMU_WARP;
    case EMU_SREG_NTID_Y: case EMU_SREG_NTID_Z: case EMU_SREG_NCTAID_Y: case EMU_SREG_NCTAID_Z: return 1;
    default: return 0;  /* tid.y/z, ctaid.y/z of a 1-D launch */
  }
}

void emu_hook_barrier(int32_t site, int32_t barrier) {
  emu_block *b = emu_active;
  emu_thread *self = &b->threads[b->current];
  if (b->barrier_arrived == 0)
    b->barrier_id = barrier;
  else if (barrier != b->barrier_id)
    emu_fail(b, "%s waits at barrier %d while other threads wait at barrier %d", emu_site_text(b, site), barrier,
             b->barrier_id);
  self->state = EMU_AT_BARRIER;
  self->site = site;
  if (++b->barrier_arrived < b->count) {
    emu_run_next(b, 0);
    return;
  }
  /* .aligned: every thread of a warp at the same barrier instruction. */
  for (int t = 0; t < b->count; t++)
    if (b->threads[t].site != b->threads[t - t % EMU_WARP].site)
      emu_fail(b, "warp %d diverged at a barrier: lane %d at %s, lane 0 at %s", t / EMU_WARP, t % EMU_WARP,
               emu_site_text(b, b->threads[t].site), emu_site_text(b, b->threads[t - t % EMU_WARP].site));
  b->barrier_arrived = 0;
  emu_banks_flush(b->kernel->banks);  /* every access before the barrier has been made */
  b->epoch++;
  b->stats.barriers++;
  for (int t = 0; t < b->count; t++) b->threads[t].state = EMU_RUNNABLE;
}

/* The current lane joins its warp's collective op; all lanes must be at the same instruction. */
static emu_warp_state *emu_warp_join(emu_block *b, int op, int site, int arg) {
  emu_warp_state *ws = &b->warps[b->current / EMU_WARP];
  if (ws->arrived == 0) {
    ws->op = op;
    ws->site = site;
    ws->arg = arg;
  } else if (ws->op != op || ws->site != site || ws->arg != arg) {
    emu_fail(b, "warp diverged: this lane is at %s while %d lanes wait at %s", emu_site_text(b, site), ws->arrived,
             emu_site_text(b, ws->site));
  }
  return ws;
}

/* After the lane deposited its operands: 1 for the last lane (which then computes every lane's result
 * before going on), 0 for the others, which return once that is done. */
static int emu_warp_arrive(emu_block *b, emu_warp_state *ws) {
  if (++ws->arrived == EMU_WARP) {
    ws->arrived = 0;
    int first = b->current - b->current % EMU_WARP;
    for (int l = 0; l < EMU_WARP; l++)
      if (b->threads[first + l].state == EMU_AT_WARP) b->threads[first + l].state = EMU_RUNNABLE;
    b->stats.warp_ops++;
    return 1;
  }
  b->threads[b->current].state = EMU_AT_WARP;
  b->threads[b->current].site = ws->site;
  emu_run_next(b, 0);
  return 0;
}

/* Shuffles and votes name their member lanes; the emulator runs only whole-warp ones. */
static void emu_require_whole_warp(emu_block *b, int32_t site, uint32_t member_mask) {
  if (member_mask != 0xffffffffu)
    emu_fail(b, "%s with member mask 0x%08x: only whole-warp collectives are emulated", emu_site_text(b, site),
             member_mask);
}

uint32_t emu_hook_shfl_bfly(int32_t site, uint32_t member_mask, uint32_t value, uint32_t lane_b, uint32_t lane_c) {
  emu_block *b = emu_active;
  emu_require_whole_warp(b, site, member_mask);
  emu_warp_state *ws = emu_warp_join(b, EMU_OP_SHFL, site, 0);
  int lane = b->current % EMU_WARP;
  ws->value[lane] = value;
  ws->lane_b[lane] = lane_b;
  ws->lane_c[lane] = lane_c;
  if (emu_warp_arrive(b, ws)) emu_warp_shfl_bfly(ws->value, ws->lane_b, ws->lane_c, ws->out);
  return ws->out[lane];
}

uint32_t emu_hook_vote_any(int32_t site, uint32_t member_mask, uint32_t predicate) {
  emu_block *b = emu_active;
  emu_require_whole_warp(b, site, member_mask);
  emu_warp_state *ws = emu_warp_join(b, EMU_OP_VOTE, site, 0);
  int lane = b->current % EMU_WARP;
  ws->value[lane] = predicate;
  if (emu_warp_arrive(b, ws)) emu_warp_vote_any(ws->value, ws->out);
  return ws->out[lane];
}

static float emu_flush_subnormal(float x) { return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x; }

float emu_hook_ex2_approx_ftz(float x) { return emu_flush_subnormal(exp2f(emu_flush_subnormal(x))); }
float emu_hook_lg2_approx(float x) { return log2f(x); }
/* tanh.approx.f32 is within 2^-11 relative of tanh (PTX ISA); exact here, as ex2 and lg2 are. */
float emu_hook_tanh_approx(float x) { return tanhf(x); }
float emu_hook_lg2_approx_ftz(float x) { return log2f(emu_flush_subnormal(x)); }

void emu_hook_mma_m16n8k16(int32_t site, int32_t bf16, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                           uint32_t b0, uint32_t b1, float c0, float c1, float c2, float c3, float *d) {
  emu_block *b = emu_active;
  emu_warp_state *ws = emu_warp_join(b, EMU_OP_MMA, site, bf16);
  int lane = b->current % EMU_WARP;
  uint32_t a[4] = {a0, a1, a2, a3}, bb[2] = {b0, b1};
  float c[4] = {c0, c1, c2, c3};
  memcpy(ws->a[lane], a, sizeof a);
  memcpy(ws->b[lane], bb, sizeof bb);
  memcpy(ws->c[lane], c, sizeof c);
  if (emu_warp_arrive(b, ws)) emu_warp_mma_m16n8k16(bf16, (const uint32_t(*)[4])ws->a, (const uint32_t(*)[2])ws->b,
                                                    (const float(*)[4])ws->c, ws->d);
  memcpy(d, ws->d[lane], sizeof ws->d[lane]);
}

void emu_hook_ldmatrix_x4(int32_t site, int32_t transpose, const void *address, uint32_t *out) {
  emu_block *b = emu_active;
  emu_warp_state *ws = emu_warp_join(b, EMU_OP_LDMATRIX, site, transpose);
  int lane = b->current % EMU_WARP;
  ws->rows[lane] = address;
  if (emu_warp_arrive(b, ws)) {
    int first = b->current - lane;
    uint32_t offsets[EMU_WARP];
    for (int l = 0; l < EMU_WARP; l++) {
      /* Errors name the lane that gave the address: it is the current thread for the message. */
      int saved = b->current;
      b->current = first + l;
      size_t at = emu_shared_offset(b, ws->rows[l], 16, "an ldmatrix row", site);
      if (at % 16 != 0)
        emu_fail(b, "%s: row address at shared offset %zu is not 16-byte aligned", emu_site_text(b, site), at);
      emu_shared_read(b, at, 16, EMU_AGENT_WARP(first / EMU_WARP), 1, site);
      b->current = saved;
      offsets[l] = (uint32_t)at;
    }
    emu_banks_ldmatrix(b->kernel->banks, site, offsets);
    emu_warp_ldmatrix_x4(transpose, ws->rows, ws->fragments);
  }
  memcpy(out, ws->fragments[lane], sizeof ws->fragments[lane]);
}

static const emu_region *emu_find_region(emu_block *b, const void *address, int64_t bytes) {
  const unsigned char *p = address;
  for (int i = 0; i < b->kernel->region_count; i++) {
    const emu_region *r = &b->kernel->regions[i];
    if (p >= r->base && bytes >= 0 && (size_t)(p - r->base) + (size_t)bytes <= r->bytes) return r;
  }
  return NULL;
}

void emu_hook_cp_async_16(int32_t site, void *shared_dst, const void *global_src, int32_t src_size) {
  emu_block *b = emu_active;
  int thread = b->current;
  size_t at = emu_shared_offset(b, shared_dst, 16, "a cp.async destination", site);
  if (at % 16 != 0 || (uintptr_t)global_src % 16 != 0)
    emu_fail(b, "%s: cp.async.cg 16 needs 16-byte aligned addresses (shared offset %zu, global %p)",
             emu_site_text(b, site), at, global_src);
  if (src_size < 0 || src_size > 16)
    emu_fail(b, "%s: src_size %d outside 0..16", emu_site_text(b, site), src_size);
  if (src_size > 0 && !emu_find_region(b, global_src, src_size))
    emu_fail(b, "%s reads %d bytes at %p, outside every buffer the test registered", emu_site_text(b, site), src_size,
             global_src);
  emu_shared_write_check(b, at, 16, thread, site, "cp.async");
  emu_banks_thread_access(b->kernel->banks, thread, site, EMU_BANKS_CP_ASYNC, (uint32_t)at, 16);
  if (b->copy_count == b->copy_capacity)
    b->copies = emu_grow(b, b->copies, &b->copy_capacity, sizeof *b->copies, 4096);
  emu_thread *self = &b->threads[thread];
  if (self->pending_count == self->pending_capacity)
    self->pending = emu_grow(b, self->pending, &self->pending_capacity, sizeof *self->pending, 64);
  size_t index = b->copy_count++;
  b->copies[index] = (emu_copy){shared_dst, global_src, src_size, thread, site, self->committed};
  self->pending[self->pending_count++] = index;
  for (size_t i = at; i < at + 16; i++) b->in_flight[i] = (uint32_t)(index + 1);
  b->stats.copies++;
}

void emu_hook_cp_async_commit(int32_t site) {
  (void)site;
  emu_active->threads[emu_active->current].committed++;
}

/* Lands every copy of the current thread from a group older than `before`. */
static void emu_land_groups(emu_block *b, int64_t before) {
  emu_thread *self = &b->threads[b->current];
  while (self->pending_head < self->pending_count && b->copies[self->pending[self->pending_head]].group < before) {
    const emu_copy *copy = &b->copies[self->pending[self->pending_head++]];
    memcpy(copy->dst, copy->src, (size_t)copy->src_size);
    memset(copy->dst + copy->src_size, 0, 16 - (size_t)copy->src_size);
    size_t at = (size_t)(copy->dst - b->kernel->shared);
    for (size_t i = at; i < at + 16; i++) b->in_flight[i] = 0;
    emu_note_write(b, at, 16, copy->thread);
  }
  if (self->pending_head == self->pending_count) self->pending_head = self->pending_count = 0;
}

void emu_hook_cp_async_wait(int32_t site, int32_t pending) {
  emu_block *b = emu_active;
  if (pending < 0) emu_fail(b, "%s: wait_group %d", emu_site_text(b, site), pending);
  emu_land_groups(b, b->threads[b->current].committed - pending);
}

void emu_hook_cp_async_wait_all(int32_t site) {
  emu_hook_cp_async_commit(site);
  emu_hook_cp_async_wait(site, 0);
}

static void emu_check_alignment(emu_block *b, int site, const void *address, int64_t bytes, int32_t is_store,
                                int32_t align) {
  if (align > 1 && (uintptr_t)address % (uintptr_t)align != 0)
    emu_fail(b, "%s of %lld bytes at %p (%s) promises %d-byte alignment and does not have it (a GPU faults: "
                "misaligned address)",
             is_store ? "a store" : "a load", (long long)bytes, address, emu_site_text(b, site), align);
}

void emu_hook_shared_access(int32_t site, const void *address, int64_t bytes, int32_t is_store, int32_t align) {
  emu_block *b = emu_active;
  size_t at = emu_shared_offset(b, address, bytes, is_store ? "a store" : "a load", site);
  emu_check_alignment(b, site, address, bytes, is_store, align);
  emu_banks_thread_access(b->kernel->banks, b->current, site, is_store ? EMU_BANKS_STORE : EMU_BANKS_LOAD,
                          (uint32_t)at, (int)bytes);
  if (is_store) {
    emu_shared_write_check(b, at, (size_t)bytes, b->current, site, "a store");
    emu_note_write(b, at, (size_t)bytes, b->current);
  } else {
    emu_shared_read(b, at, (size_t)bytes, (uint16_t)b->current, 0, site);
  }
}

void emu_hook_global_access(int32_t site, const void *address, int64_t bytes, int32_t is_store, int32_t align) {
  emu_block *b = emu_active;
  emu_check_alignment(b, site, address, bytes, is_store, align);
  const emu_region *region = emu_find_region(b, address, bytes);
  if (!region)
    emu_fail(b, "%s of %lld bytes at %p (%s) is outside every buffer the test registered",
             is_store ? "a store" : "a load", (long long)bytes, address, emu_site_text(b, site));
  if (is_store && !region->writable)
    emu_fail(b, "a store of %lld bytes at %p (%s) writes into a read-only input buffer", (long long)bytes, address,
             emu_site_text(b, site));
}

static float emu_bits_as_float(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
float emu_libcall_truncsfhf2(float x) { return emu_bits_as_float(core_f32_to_f16(x)); }
float emu_libcall_truncsfbf2(float x) { return emu_bits_as_float(core_f32_to_bf16(x)); }

/* ---- launching -------------------------------------------------------------------------------------- */

static void emu_block_free(emu_block *b) {
  if (!b) return;
  for (int t = 0; t < b->count; t++) {
    emu_fiber_free(&b->threads[t].fiber);
    free(b->threads[t].pending);
  }
  free(b->threads);
  free(b->warps);
  free(b->in_flight);
  free(b->writer);
  free(b->reader);
  free(b->write_epoch);
  free(b->read_epoch);
  free(b->copies);
  free(b);
}

static emu_block *emu_block_create(emu_kernel *kernel) {
  emu_block *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  size_t n = kernel->shared_bytes ? kernel->shared_bytes : 1;
  b->kernel = kernel;
  b->count = kernel->block_threads;
  b->warp_count = kernel->block_threads / EMU_WARP;
  b->threads = calloc((size_t)b->count, sizeof *b->threads);
  b->warps = calloc((size_t)b->warp_count, sizeof *b->warps);
  b->in_flight = calloc(n, sizeof *b->in_flight);
  b->writer = calloc(n, sizeof *b->writer);
  b->reader = calloc(n, sizeof *b->reader);
  b->write_epoch = calloc(n, sizeof *b->write_epoch);
  b->read_epoch = calloc(n, sizeof *b->read_epoch);
  int ok = b->threads && b->warps && b->in_flight && b->writer && b->reader && b->write_epoch && b->read_epoch &&
           emu_fiber_init_thread(&b->home) == 0;
  for (int t = 0; ok && t < b->count; t++) {
    ok = emu_fiber_alloc(&b->threads[t].fiber, EMU_STACK_BYTES) == 0;
    if (!ok) b->count = t;  /* free only what was made */
  }
  if (!ok) {
    emu_block_free(b);
    return NULL;
  }
  return b;
}

/* Runs one block to its end (or its first error). */
static void emu_block_run(emu_block *b, int64_t index) {
  emu_kernel *k = b->kernel;
  size_t n = k->shared_bytes;
  b->index = index;
  b->current = 0;
  b->barrier_arrived = 0;
  b->epoch = 1;
  b->copy_count = 0;
  /* Shared memory starts as NaN in fp16 and bf16 alike (0xffff), so a read of stale bytes shows. */
  memset(k->shared, 0xff, n);
  memset(b->in_flight, 0, n * sizeof *b->in_flight);
  memset(b->write_epoch, 0, n * sizeof *b->write_epoch);
  memset(b->read_epoch, 0, n * sizeof *b->read_epoch);
  for (size_t i = 0; i < n; i++) b->writer[i] = b->reader[i] = EMU_AGENT_NONE;
  for (int w = 0; w < b->warp_count; w++) b->warps[w].arrived = 0;
  for (int t = 0; t < b->count; t++) {
    emu_thread *thread = &b->threads[t];
    thread->state = EMU_RUNNABLE;
    thread->site = -1;
    thread->committed = 0;
    thread->pending_head = thread->pending_count = 0;
    emu_fiber_start(&thread->fiber, emu_thread_main);
  }
  b->stats.switches++;
  emu_fiber_switch(&b->home, &b->threads[0].fiber);
  emu_banks_flush(k->banks);
  b->stats.blocks++;
}

int emu_kernel_launch(emu_kernel *kernel, int64_t grid, const void *params, size_t params_size, emu_stats *stats,
                      char *why, size_t why_size) {
  if (stats) memset(stats, 0, sizeof *stats);
  if (params_size != kernel->param_bytes) {
    snprintf(why, why_size, "a parameter block of %zu bytes for a kernel that takes %zu", params_size,
             kernel->param_bytes);
    return -1;
  }
  if (kernel->block_threads < EMU_WARP || kernel->block_threads % EMU_WARP != 0 || kernel->block_threads > 1024) {
    snprintf(why, why_size, "blocks of %d threads: the emulator runs whole warps, up to 1024 threads",
             kernel->block_threads);
    return -1;
  }
  if (!kernel->banks && !(kernel->banks = emu_banks_create(kernel->block_threads, kernel->site_count))) {
    snprintf(why, why_size, "no memory to count bank conflicts over %d instructions", kernel->site_count);
    return -1;
  }
  /* Fibers and bookkeeping live for one launch: a test holding many built kernels then holds no stacks. */
  emu_block *b = emu_block_create(kernel);
  if (!b) {
    snprintf(why, why_size, "no memory for %d fibers of %d KB", kernel->block_threads, EMU_STACK_BYTES / 1024);
    return -1;
  }
  b->grid = grid;
  b->params = params;
  emu_active = b;
  for (int64_t block = 0; block < grid && !b->failed; block++) emu_block_run(b, block);
  emu_active = NULL;
  if (stats) *stats = b->stats;
  int failed = b->failed;
  if (failed) snprintf(why, why_size, "%s", b->error);
  emu_block_free(b);
  return failed ? -1 : 0;
}
