/* nvptx_emu_fiber.h: the emulator's GPU threads as fibers on one OS thread (ucontext), switched
 * explicitly and deterministically by the block scheduler, with the AddressSanitizer annotations that
 * keep ASan's view of the current stack right across switches. */
#ifndef FJ_TESTS_NVPTX_EMU_FIBER_H
#define FJ_TESTS_NVPTX_EMU_FIBER_H
#include <stddef.h>
#include <ucontext.h>

typedef struct emu_fiber {
  ucontext_t context;
  void *mapping;       /* guard page + stack (NULL for the OS thread's own stack) */
  size_t mapping_size;
  const void *bottom;  /* lowest address of the usable stack, and its size: what ASan is told */
  size_t size;
  void *fake_stack;    /* ASan's fake stack of this fiber while it is switched out */
} emu_fiber;

/* The OS thread's own context, to come back to (its stack bounds, for ASan). 0, or -1. */
int emu_fiber_init_thread(emu_fiber *fiber);
/* A stack of `bytes` (rounded up to pages) with a PROT_NONE guard page below it, so an overflow is a
 * crash rather than silent corruption of the next fiber's stack. 0, or -1. */
int emu_fiber_alloc(emu_fiber *fiber, size_t bytes);
void emu_fiber_free(emu_fiber *fiber);
/* Prepares fiber to run entry() from the top of its stack at the next switch to it (reusable: a fiber
 * may be started again once its previous run is abandoned or done). entry must begin with
 * emu_fiber_entered() and must never return: it ends with emu_fiber_exit_to(). */
void emu_fiber_start(emu_fiber *fiber, void (*entry)(void));
void emu_fiber_entered(void);
/* Suspends from (the running fiber) and resumes to; returns when something switches back to from. */
void emu_fiber_switch(emu_fiber *from, emu_fiber *to);
/* Leaves from for good (its stack is not used again until the next emu_fiber_start). */
void emu_fiber_exit_to(emu_fiber *from, emu_fiber *to) __attribute__((noreturn));
#endif
