/* nvptx_emu_fiber.c: fibers for the emulator's GPU threads: ucontext stacks with guard pages and
 * explicit switches. Under AddressSanitizer every switch is bracketed by
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber (ASan otherwise believes the
 * thread is still on its old stack and reports false stack overflows or misses real errors), and a
 * restarted fiber's stack is unpoisoned, since a run abandoned mid-call leaves redzones behind.
 * With those annotations the switch calls glibc's swapcontext itself: ASan's interceptor of it clears
 * the shadow of the whole target stack on every call (48 KB of memset per switch here), which was 60%
 * of the emulator's time under ASan and tells ASan nothing the annotations have not. */
#include "nvptx_emu_fiber.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifndef EMU_ASAN
#define EMU_ASAN 0
#endif
#if EMU_ASAN
#include <dlfcn.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>

typedef int (*swapcontext_fn)(ucontext_t *, const ucontext_t *);
static swapcontext_fn libc_swapcontext;

/* glibc's own swapcontext (dlsym on libc's handle searches libc, not the interceptor before it);
 * the intercepted one where libc cannot be opened that way. */
static void find_libc_swapcontext(void) {
  void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  if (libc) libc_swapcontext = (swapcontext_fn)dlsym(libc, "swapcontext");
  if (!libc_swapcontext) libc_swapcontext = swapcontext;
}
#define emu_swapcontext libc_swapcontext
#else
#define emu_swapcontext swapcontext
#endif

int emu_fiber_init_thread(emu_fiber *fiber) {
  memset(fiber, 0, sizeof *fiber);
#if EMU_ASAN
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, find_libc_swapcontext);
#endif
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return -1;
  void *bottom = NULL;
  size_t size = 0;
  int rc = pthread_attr_getstack(&attr, &bottom, &size);
  pthread_attr_destroy(&attr);
  if (rc != 0) return -1;
  fiber->bottom = bottom;
  fiber->size = size;
  return 0;
}

int emu_fiber_alloc(emu_fiber *fiber, size_t bytes) {
  memset(fiber, 0, sizeof *fiber);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = (bytes + page - 1) / page * page;
  /* NORESERVE: a few hundred fibers of a few hundred KB each, of which only what the kernel's frames
   * touch is ever committed. */
  void *mapping = mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
  if (mapping == MAP_FAILED) return -1;
  if (mprotect(mapping, page, PROT_NONE) != 0) {
    munmap(mapping, size + page);
    return -1;
  }
  fiber->mapping = mapping;
  fiber->mapping_size = size + page;
  fiber->bottom = (char *)mapping + page;
  fiber->size = size;
  return 0;
}

void emu_fiber_free(emu_fiber *fiber) {
  if (fiber->mapping) munmap(fiber->mapping, fiber->mapping_size);
  memset(fiber, 0, sizeof *fiber);
}

void emu_fiber_start(emu_fiber *fiber, void (*entry)(void)) {
#if EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(fiber->bottom, fiber->size);
#endif
  getcontext(&fiber->context);
  fiber->context.uc_stack.ss_sp = (void *)fiber->bottom;
  fiber->context.uc_stack.ss_size = fiber->size;
  fiber->context.uc_link = NULL;
  fiber->fake_stack = NULL;
  makecontext(&fiber->context, entry, 0);
}

void emu_fiber_entered(void) {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

void emu_fiber_switch(emu_fiber *from, emu_fiber *to) {
#if EMU_ASAN
  __sanitizer_start_switch_fiber(&from->fake_stack, to->bottom, to->size);
#endif
  emu_swapcontext(&from->context, &to->context);
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(from->fake_stack, NULL, NULL);
#endif
}

void emu_fiber_exit_to(emu_fiber *from, emu_fiber *to) {
  (void)from;
#if EMU_ASAN
  /* NULL: this fiber's fake stack (if ASan made one) is released, it never resumes. */
  __sanitizer_start_switch_fiber(NULL, to->bottom, to->size);
#endif
  setcontext(&to->context);
  abort();  /* setcontext returns only on failure */
}
