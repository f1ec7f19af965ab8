/* test_jit.c: checks src/jit end to end without a GPU: a module built by hand with the LLVM C API is
 * compiled for the host, loaded with ORC and run against C on fresh random inputs (including calls
 * into libc/libm); broken modules and missing symbols fail cleanly; the host description honours
 * FLASHJIT_CPU_FEATURES all the way into the machine code; a fatal LLVM error names the kernel being
 * compiled; and the same kind of kernel compiles to PTX that ptxas accepts for sm_90a. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <llvm-c/Core.h>
#include <llvm-c/Disassembler.h>
#include <llvm-c/Object.h>
#include <llvm-c/Target.h>
#include "core/error.h"
#include "core/log.h"
#include "jit/jit.h"
#include "check.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static uint64_t rng_state;
static float random_float(void) { /* uniform in [-1, 1) from xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  uint64_t r = rng_state * 0x2545F4914F6CDD1DULL;
  return (float)((double)(r >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ---- building modules ------------------------------------------------------------------------- */

typedef struct loop {
  LLVMBasicBlockRef entry, body, exit;
  LLVMValueRef n64, i, next;
} loop;

/* for (i = 0; i < n; i++) in a fresh function: leaves the builder in the body. */
static void loop_begin(LLVMBuilderRef b, LLVMContextRef c, LLVMValueRef fn, LLVMValueRef n, loop *l) {
  LLVMTypeRef i64 = LLVMInt64TypeInContext(c);
  l->entry = LLVMAppendBasicBlockInContext(c, fn, "entry");
  l->body = LLVMAppendBasicBlockInContext(c, fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(c, fn, "exit");
  LLVMPositionBuilderAtEnd(b, l->entry);
  l->n64 = LLVMBuildSExt(b, n, i64, "n64");
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSGT, l->n64, LLVMConstInt(i64, 0, 0), ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(b, l->body);
  l->i = LLVMBuildPhi(b, i64, "i");
}

static void loop_end(LLVMBuilderRef b, LLVMContextRef c, loop *l) {
  LLVMTypeRef i64 = LLVMInt64TypeInContext(c);
  l->next = LLVMBuildAdd(b, l->i, LLVMConstInt(i64, 1, 0), "next");
  LLVMValueRef values[] = {LLVMConstInt(i64, 0, 0), l->next};
  LLVMBasicBlockRef blocks[] = {l->entry, l->body};
  LLVMAddIncoming(l->i, values, blocks, 2);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, l->next, l->n64, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(b, l->exit);
}

/* void axpy(float *x, float *y, int n, float a): y = a*x + y (vectorized by O3);
 * void zero(float *x, int n): becomes a call to memset;
 * float sum_exp(const float *x, int n): calls expf from libm. */
static LLVMModuleRef build_host_module(LLVMContextRef c) {
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext("test_jit_host", c);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(c);
  LLVMTypeRef f32 = LLVMFloatTypeInContext(c), i32 = LLVMInt32TypeInContext(c);
  LLVMTypeRef ptr = LLVMPointerTypeInContext(c, 0), void_type = LLVMVoidTypeInContext(c);
  loop l;

  LLVMTypeRef axpy_params[] = {ptr, ptr, i32, f32};
  LLVMValueRef axpy = LLVMAddFunction(m, "axpy", LLVMFunctionType(void_type, axpy_params, 4, 0));
  loop_begin(b, c, axpy, LLVMGetParam(axpy, 2), &l);
  LLVMValueRef px = LLVMBuildGEP2(b, f32, LLVMGetParam(axpy, 0), &l.i, 1, "px");
  LLVMValueRef py = LLVMBuildGEP2(b, f32, LLVMGetParam(axpy, 1), &l.i, 1, "py");
  LLVMValueRef ax = LLVMBuildFMul(b, LLVMGetParam(axpy, 3), LLVMBuildLoad2(b, f32, px, "x"), "ax");
  LLVMBuildStore(b, LLVMBuildFAdd(b, ax, LLVMBuildLoad2(b, f32, py, "y"), "r"), py);
  loop_end(b, c, &l);
  LLVMBuildRetVoid(b);

  LLVMTypeRef zero_params[] = {ptr, i32};
  LLVMValueRef zero = LLVMAddFunction(m, "zero", LLVMFunctionType(void_type, zero_params, 2, 0));
  loop_begin(b, c, zero, LLVMGetParam(zero, 1), &l);
  LLVMBuildStore(b, LLVMConstReal(f32, 0.0), LLVMBuildGEP2(b, f32, LLVMGetParam(zero, 0), &l.i, 1, ""));
  loop_end(b, c, &l);
  LLVMBuildRetVoid(b);

  LLVMTypeRef expf_type = LLVMFunctionType(f32, &f32, 1, 0);
  LLVMValueRef expf_fn = LLVMAddFunction(m, "expf", expf_type);
  LLVMTypeRef sum_params[] = {ptr, i32};
  LLVMValueRef sum = LLVMAddFunction(m, "sum_exp", LLVMFunctionType(f32, sum_params, 2, 0));
  loop_begin(b, c, sum, LLVMGetParam(sum, 1), &l);
  LLVMValueRef acc = LLVMBuildPhi(b, f32, "acc");
  LLVMValueRef xi = LLVMBuildLoad2(b, f32, LLVMBuildGEP2(b, f32, LLVMGetParam(sum, 0), &l.i, 1, ""), "");
  LLVMValueRef e = LLVMBuildCall2(b, expf_type, expf_fn, &xi, 1, "e");
  LLVMValueRef acc_next = LLVMBuildFAdd(b, acc, e, "acc.next");
  LLVMBasicBlockRef body = l.body;
  loop_end(b, c, &l);
  LLVMValueRef acc_in[] = {LLVMConstReal(f32, 0.0), acc_next};
  LLVMBasicBlockRef acc_from[] = {l.entry, body};
  LLVMAddIncoming(acc, acc_in, acc_from, 2);
  LLVMValueRef result = LLVMBuildPhi(b, f32, "result");
  LLVMValueRef result_in[] = {LLVMConstReal(f32, 0.0), acc_next};
  LLVMAddIncoming(result, result_in, acc_from, 2);
  LLVMBuildRet(b, result);

  LLVMDisposeBuilder(b);
  return m;
}

/* A kernel with one thread per element: y[i] = a*x[i] + y[i] for i < n. */
static LLVMModuleRef build_nvptx_module(LLVMContextRef c) {
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext("test_jit_nvptx", c);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(c);
  LLVMTypeRef f32 = LLVMFloatTypeInContext(c), i32 = LLVMInt32TypeInContext(c);
  LLVMTypeRef global = LLVMPointerTypeInContext(c, 1);
  LLVMTypeRef params[] = {global, global, i32, f32};
  LLVMValueRef fn = LLVMAddFunction(m, "axpy_kernel", LLVMFunctionType(LLVMVoidTypeInContext(c), params, 4, 0));
  LLVMSetFunctionCallConv(fn, LLVMPTXKernelCallConv);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c, fn, "entry");
  LLVMBasicBlockRef work = LLVMAppendBasicBlockInContext(c, fn, "work");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c, fn, "done");
  LLVMPositionBuilderAtEnd(b, entry);
  LLVMValueRef sreg[3];
  const char *names[3] = {"llvm.nvvm.read.ptx.sreg.tid.x", "llvm.nvvm.read.ptx.sreg.ctaid.x",
                          "llvm.nvvm.read.ptx.sreg.ntid.x"};
  for (int k = 0; k < 3; k++) {
    unsigned id = LLVMLookupIntrinsicID(names[k], strlen(names[k]));
    LLVMValueRef decl = LLVMGetIntrinsicDeclaration(m, id, NULL, 0);
    sreg[k] = LLVMBuildCall2(b, LLVMIntrinsicGetType(c, id, NULL, 0), decl, NULL, 0, "");
  }
  LLVMValueRef i = LLVMBuildAdd(b, LLVMBuildMul(b, sreg[1], sreg[2], ""), sreg[0], "i");
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, i, LLVMGetParam(fn, 2), ""), work, done);
  LLVMPositionBuilderAtEnd(b, work);
  LLVMValueRef i64 = LLVMBuildSExt(b, i, LLVMInt64TypeInContext(c), "");
  LLVMValueRef px = LLVMBuildGEP2(b, f32, LLVMGetParam(fn, 0), &i64, 1, "");
  LLVMValueRef py = LLVMBuildGEP2(b, f32, LLVMGetParam(fn, 1), &i64, 1, "");
  LLVMValueRef ax = LLVMBuildFMul(b, LLVMGetParam(fn, 3), LLVMBuildLoad2(b, f32, px, ""), "");
  LLVMBuildStore(b, LLVMBuildFAdd(b, ax, LLVMBuildLoad2(b, f32, py, ""), ""), py);
  LLVMBuildBr(b, done);
  LLVMPositionBuilderAtEnd(b, done);
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  return m;
}

/* ---- machine-code inspection ------------------------------------------------------------------ */

/* Counts instructions in the object's .text that name a zmm / ymm register, decoded with the host's
 * full feature set so AVX-512 encodings are recognized whatever the code was compiled for. */
static int count_vector_registers(const jit_buffer *object, const jit_target *host, int *zmm, int *ymm) {
  *zmm = *ymm = 0;
  LLVMMemoryBufferRef buffer =
      LLVMCreateMemoryBufferWithMemoryRangeCopy(object->data, object->size, "object");
  char *message = NULL;
  LLVMBinaryRef binary = LLVMCreateBinary(buffer, NULL, &message);
  if (!binary) {
    printf("  cannot parse object: %s\n", message ? message : "?");
    LLVMDisposeMessage(message);
    LLVMDisposeMemoryBuffer(buffer);
    return -1;
  }
  LLVMDisasmContextRef disasm =
      LLVMCreateDisasmCPUFeatures(host->triple, host->cpu, "+avx512f,+avx512bw,+avx512vl,+avx512dq",
                                  NULL, 0, NULL, NULL);
  LLVMSectionIteratorRef section = LLVMObjectFileCopySectionIterator(binary);
  for (; disasm && !LLVMObjectFileIsSectionIteratorAtEnd(binary, section); LLVMMoveToNextSection(section)) {
    const char *name = LLVMGetSectionName(section);
    if (!name || strncmp(name, ".text", 5) != 0)
      continue;
    const uint8_t *bytes = (const uint8_t *)LLVMGetSectionContents(section);
    uint64_t size = LLVMGetSectionSize(section), pc = 0;
    while (pc < size) {
      char text[256];
      size_t length = LLVMDisasmInstruction(disasm, (uint8_t *)(bytes + pc), size - pc, pc, text, sizeof text);
      if (length == 0) {
        pc++;
        continue;
      }
      *zmm += strstr(text, "zmm") != NULL;
      *ymm += strstr(text, "ymm") != NULL;
      pc += length;
    }
  }
  LLVMDisposeSectionIterator(section);
  if (disasm)
    LLVMDisasmDispose(disasm);
  LLVMDisposeBinary(binary);
  LLVMDisposeMemoryBuffer(buffer);
  return disasm ? 0 : -1;
}

/* ---- checks ----------------------------------------------------------------------------------- */

typedef void (*axpy_fn)(float *x, float *y, int n, float a);
typedef void (*zero_fn)(float *x, int n);
typedef float (*sum_exp_fn)(const float *x, int n);

static void check_host_target(jit_target *host) {
  char detail[256];
  fj_status status = jit_host_target(host);
  check_detail(status == FJ_OK, "jit_host_target succeeds", fj_last_error());
  printf("  host: triple=%s cpu=%s vector_bits=%d registers=%d fma=%d f16c=%d avx512bf16=%d\n",
         host->triple, host->cpu, host->vector_bits, host->vector_registers, host->has_fma,
         host->has_f16c, host->has_avx512bf16);
  printf("  data layout: %s\n", host->data_layout);
  check_detail(host->triple[0] && host->cpu[0] && host->data_layout[0] && host->features[0],
        "host triple, cpu, features and data layout are filled", NULL);
  snprintf(detail, sizeof detail, "vector_bits=%d registers=%d", host->vector_bits, host->vector_registers);
  check_detail((host->vector_bits == 128 || host->vector_bits == 256 || host->vector_bits == 512) &&
            host->vector_registers == (host->vector_bits == 512 ? 32 : 16),
        "host vector_bits is 128/256/512 and registers match", detail);
  check_detail(strncmp(jit_llvm_version(), "22.", 3) == 0, "jit_llvm_version is 22.x", jit_llvm_version());
}

static void check_run_host(LLVMContextRef c, const jit_target *host, jit_buffer *object_out) {
  char detail[512];
  LLVMModuleRef m = build_host_module(c);
  check_detail(jit_module_set_target(m, host) == FJ_OK, "jit_module_set_target on the host", fj_last_error());
  jit_buffer object = {0};
  double start = now_ms();
  fj_status status = jit_compile_module(m, host, "test_jit host module", &object);
  double compile_ms = now_ms() - start;
  check_detail(status == FJ_OK && object.data && object.size > 0, "compile the host module", fj_last_error());
  printf("  compile (verify + O3 + object) of the host module: %.1f ms, %zu bytes\n", compile_ms, object.size);
  LLVMDisposeModule(m);
  /* The first compile pays LLVM's one-time pass and target setup; the second is what a kernel costs. */
  m = build_host_module(c);
  jit_module_set_target(m, host);
  jit_buffer again = {0};
  start = now_ms();
  fj_status again_status = jit_compile_module(m, host, "test_jit host module (again)", &again);
  printf("  second compile of the same module: %.1f ms\n", now_ms() - start);
  check_detail(again_status == FJ_OK && again.size == object.size && memcmp(again.data, object.data, again.size) == 0,
        "compiling the same module twice gives the same object", fj_last_error());
  jit_buffer_free(&again);
  LLVMDisposeModule(m);
  if (status != FJ_OK)
    return;

  jit_object *loaded = NULL;
  status = jit_object_load(object.data, object.size, "test_jit host module", &loaded);
  check_detail(status == FJ_OK && loaded, "jit_object_load", fj_last_error());
  if (status != FJ_OK) {
    jit_buffer_free(&object);
    return;
  }
  void *axpy_address = NULL, *zero_address = NULL, *sum_address = NULL;
  check_detail(jit_object_symbol(loaded, "axpy", &axpy_address) == FJ_OK && axpy_address, "symbol axpy",
        fj_last_error());
  check_detail(jit_object_symbol(loaded, "zero", &zero_address) == FJ_OK && zero_address, "symbol zero",
        fj_last_error());
  check_detail(jit_object_symbol(loaded, "sum_exp", &sum_address) == FJ_OK && sum_address, "symbol sum_exp",
        fj_last_error());

  void *missing = (void *)1;
  status = jit_object_symbol(loaded, "no_such_kernel", &missing);
  snprintf(detail, sizeof detail, "status %d, address %p, message '%s'", status, missing, fj_last_error());
  check_detail(status != FJ_OK && missing == NULL && strstr(fj_last_error(), "no_such_kernel"),
        "a missing symbol is an error naming it", detail);

  if (axpy_address && zero_address && sum_address) {
    /* Odd sizes so the vector loops' remainders run too. */
    const int sizes[] = {1, 7, 64, 1037, 4099};
    int axpy_ok = 1, zero_ok = 1, sum_ok = 1;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      int n = sizes[s];
      float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
      float *want = malloc(sizeof(float) * (size_t)n);
      float a = random_float() * 4.0f;
      for (int i = 0; i < n; i++) {
        x[i] = random_float();
        y[i] = random_float();
        want[i] = a * x[i] + y[i];
      }
      ((axpy_fn)axpy_address)(x, y, n, a);
      for (int i = 0; i < n; i++)
        if (fabsf(y[i] - want[i]) > 1e-6f * (1.0f + fabsf(want[i]))) {
          if (axpy_ok)
            printf("  axpy n=%d: y[%d]=%.9g, C gives %.9g\n", n, i, y[i], want[i]);
          axpy_ok = 0;
        }
      double want_sum = 0.0;
      for (int i = 0; i < n; i++)
        want_sum += expf(x[i]);
      float got_sum = ((sum_exp_fn)sum_address)(x, n);
      if (fabs(got_sum - want_sum) > 1e-5 * fabs(want_sum)) {
        printf("  sum_exp n=%d: %.9g, C gives %.9g\n", n, got_sum, want_sum);
        sum_ok = 0;
      }
      ((zero_fn)zero_address)(y, n);
      for (int i = 0; i < n; i++)
        zero_ok &= y[i] == 0.0f;
      free(x);
      free(y);
      free(want);
    }
    check_detail(axpy_ok, "axpy matches C on random inputs (n = 1, 7, 64, 1037, 4099)", NULL);
    check_detail(sum_ok, "sum_exp (calls libm expf) matches C", NULL);
    check_detail(zero_ok, "zero (a loop O3 turns into memset) zeroes", NULL);
  }
  jit_object_unload(loaded);
  jit_object_unload(NULL);
  *object_out = object;
}

/* The tuner compiles candidates on several threads at once: each thread has its own LLVM context and
 * module, and nothing in src/jit may be shared unsafely between them. */
typedef struct worker {
  const jit_target *host;
  int index;
  int ok;
  char error[256];
} worker;

static void *compile_worker(void *argument) {
  worker *w = argument;
  LLVMContextRef c = LLVMContextCreate();
  for (int round = 0; round < 3; round++) {
    LLVMModuleRef m = build_host_module(c);
    jit_module_set_target(m, w->host);
    char what[64];
    snprintf(what, sizeof what, "worker %d round %d", w->index, round);
    jit_buffer object = {0};
    jit_object *loaded = NULL;
    void *address = NULL;
    if (jit_compile_module(m, w->host, what, &object) != FJ_OK ||
        jit_object_load(object.data, object.size, what, &loaded) != FJ_OK ||
        jit_object_symbol(loaded, "axpy", &address) != FJ_OK) {
      snprintf(w->error, sizeof w->error, "%s: %s", what, fj_last_error());
      w->ok = 0;
    } else {
      float x[37], y[37];
      for (int i = 0; i < 37; i++) {
        x[i] = (float)(i + w->index);
        y[i] = (float)round;
      }
      ((axpy_fn)address)(x, y, 37, 0.5f);
      for (int i = 0; i < 37; i++)
        if (y[i] != 0.5f * (float)(i + w->index) + (float)round) {
          snprintf(w->error, sizeof w->error, "%s: y[%d] = %g", what, i, y[i]);
          w->ok = 0;
        }
    }
    jit_object_unload(loaded);
    jit_buffer_free(&object);
    LLVMDisposeModule(m);
  }
  LLVMContextDispose(c);
  return NULL;
}

static void check_concurrent_compiles(const jit_target *host) {
  enum { THREADS = 4 };
  pthread_t threads[THREADS];
  worker workers[THREADS];
  double start = now_ms();
  for (int k = 0; k < THREADS; k++) {
    workers[k] = (worker){.host = host, .index = k, .ok = 1};
    if (pthread_create(&threads[k], NULL, compile_worker, &workers[k]) != 0) {
      workers[k].ok = 0;
      snprintf(workers[k].error, sizeof workers[k].error, "pthread_create failed");
      threads[k] = 0;
    }
  }
  int ok = 1;
  const char *error = NULL;
  for (int k = 0; k < THREADS; k++) {
    if (threads[k])
      pthread_join(threads[k], NULL);
    if (!workers[k].ok) {
      ok = 0;
      error = workers[k].error;
    }
  }
  printf("  4 threads x 3 compile+load+run: %.1f ms\n", now_ms() - start);
  check_detail(ok, "4 threads compile, load and run their own modules at once", error);
}

static void check_load_timing(const jit_buffer *object) {
  double times[20];
  int ok = 1;
  for (int k = 0; k < 20; k++) {
    jit_object *loaded = NULL;
    void *address = NULL;
    double start = now_ms();
    ok &= jit_object_load(object->data, object->size, "timed", &loaded) == FJ_OK &&
          jit_object_symbol(loaded, "axpy", &address) == FJ_OK;
    times[k] = now_ms() - start;
    jit_object_unload(loaded);
  }
  qsort(times, 20, sizeof times[0], compare_doubles);
  check_detail(ok, "20 loads of the same object", fj_last_error());
  printf("  cached-object load + lookup: median %.3f ms (min %.3f, max %.3f) over 20 loads\n",
         (times[9] + times[10]) / 2, times[0], times[19]);
}

static void check_bad_inputs(LLVMContextRef c, const jit_target *host) {
  char detail[1200];
  /* A function returning float whose body returns nothing: the verifier must catch it. */
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext("broken", c);
  LLVMTypeRef f32 = LLVMFloatTypeInContext(c);
  LLVMValueRef fn = LLVMAddFunction(m, "broken", LLVMFunctionType(f32, NULL, 0, 0));
  LLVMBuilderRef b = LLVMCreateBuilderInContext(c);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(c, fn, "entry"));
  LLVMBuildRetVoid(b);
  LLVMDisposeBuilder(b);
  jit_buffer out = {(void *)1, 1};
  fj_status status = jit_compile_module(m, host, "broken-kernel cfg=1", &out);
  snprintf(detail, sizeof detail, "status %d, message '%s'", status, fj_last_error());
  check_detail(status == FJ_COMPILE_FAILED && out.data == NULL && out.size == 0 && strlen(fj_last_error()) > 20 &&
            strstr(fj_last_error(), "broken-kernel cfg=1"),
        "a module that fails verification is FJ_COMPILE_FAILED with LLVM's message", detail);
  printf("  message: %s\n", fj_last_error());
  LLVMDisposeModule(m);

  static const char garbage[] = "this is not an object file";
  jit_object *loaded = (jit_object *)1;
  status = jit_object_load(garbage, sizeof garbage, "garbage", &loaded);
  snprintf(detail, sizeof detail, "status %d, message '%s'", status, fj_last_error());
  check_detail(status != FJ_OK && loaded == NULL && strstr(fj_last_error(), "garbage"),
        "loading bytes that are no object fails cleanly", detail);

  check_detail(jit_compile_module(NULL, host, "x", &out) == FJ_INVALID_ARGUMENT &&
            jit_object_load(NULL, 0, "x", &loaded) == FJ_INVALID_ARGUMENT &&
            jit_host_target(NULL) == FJ_INVALID_ARGUMENT,
        "NULL arguments are FJ_INVALID_ARGUMENT", fj_last_error());
  jit_buffer_free(NULL);
}

static void check_cpu_features_env(LLVMContextRef c, const jit_target *host) {
  char detail[256];
  jit_target t;
  setenv("FLASHJIT_CPU_FEATURES", "avx2", 1);
  fj_status status = jit_host_target(&t);
  check_detail(status == FJ_INVALID_ARGUMENT && strstr(fj_last_error(), "FLASHJIT_CPU_FEATURES"),
        "FLASHJIT_CPU_FEATURES item without +/- is refused", fj_last_error());

  setenv("FLASHJIT_CPU_FEATURES", "-avx", 1);
  status = jit_host_target(&t);
  snprintf(detail, sizeof detail, "status %d vector_bits %d fma %d", status, t.vector_bits, t.has_fma);
  check_detail(status == FJ_OK && t.vector_bits == 128 && !t.has_fma && !t.has_f16c,
        "FLASHJIT_CPU_FEATURES=-avx takes AVX, AVX2, FMA, AVX-512 with it (128 bits)", detail);

  if (host->vector_bits != 512) {
    printf("skip FLASHJIT_CPU_FEATURES=-avx512f checks: this host has no AVX-512\n");
    unsetenv("FLASHJIT_CPU_FEATURES");
    return;
  }
  setenv("FLASHJIT_CPU_FEATURES", "-avx512f", 1);
  status = jit_host_target(&t);
  size_t length = strlen(t.features);
  snprintf(detail, sizeof detail, "status %d vector_bits %d registers %d bf16 %d", status, t.vector_bits,
           t.vector_registers, t.has_avx512bf16);
  check_detail(status == FJ_OK && t.vector_bits == 256 && t.vector_registers == 16 && !t.has_avx512bf16 &&
            !t.bf16_dot_fast && t.has_fma && length > 9 && strcmp(t.features + length - 9, ",-avx512f") == 0,
        "FLASHJIT_CPU_FEATURES=-avx512f on an AVX-512 host gives 256 bits, 16 registers, no pair dots", detail);
  /* the default's pair dots: only with AVX512-BF16, and only where the CPU runs them fast (AMD's Zen) */
  int zen = strncmp(host->cpu, "znver", 5) == 0;
  check(host->bf16_dot_fast == (host->has_avx512bf16 && zen),
        "bf16 pair dots by default: %d on %s (avx512bf16 %d)", host->bf16_dot_fast, host->cpu, host->has_avx512bf16);
  unsetenv("FLASHJIT_CPU_FEATURES");

  /* The features must reach the code generator, not only the derived fields. */
  int counts[2][2] = {{-1, -1}, {-1, -1}};
  const jit_target *targets[2] = {host, &t};
  for (int k = 0; k < 2; k++) {
    LLVMModuleRef m = build_host_module(c);
    jit_module_set_target(m, targets[k]);
    jit_buffer object = {0};
    if (jit_compile_module(m, targets[k], k ? "axpy -avx512f" : "axpy host", &object) == FJ_OK)
      count_vector_registers(&object, host, &counts[k][0], &counts[k][1]);
    jit_buffer_free(&object);
    LLVMDisposeModule(m);
  }
  printf("  instructions naming zmm/ymm: host %d/%d, -avx512f %d/%d\n", counts[0][0], counts[0][1],
         counts[1][0], counts[1][1]);
  snprintf(detail, sizeof detail, "-avx512f code: %d zmm, %d ymm instructions", counts[1][0], counts[1][1]);
  check_detail(counts[1][0] == 0 && counts[1][1] > 0, "code compiled with -avx512f uses ymm and never zmm", detail);
}

/* LLVM ends the process on a fatal error; the handler must first log which kernel was compiling.
 * Selecting an AVX-512 intrinsic for a CPU without AVX-512 is such an error ("Cannot select"). */
/* LLVM calls exit() right after the handler, so the child's log goes straight into a pipe. */
static int fatal_fd = -1;
static void fatal_sink(log_level level, const char *line, void *user) {
  (void)level;
  (void)user;
  dprintf(fatal_fd, "%s\n", line);
}

static void check_fatal_handler(LLVMContextRef c, const jit_target *host) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    check_detail(0, "fatal-error handler names the kernel", "pipe failed");
    return;
  }
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    close(pipe_fds[0]);
    fatal_fd = pipe_fds[1];
    core_log_set_sink(fatal_sink, NULL);
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("fatal", c);
    LLVMTypeRef v16 = LLVMVectorType(LLVMFloatTypeInContext(c), 16);
    LLVMTypeRef i16 = LLVMInt16TypeInContext(c), ptr = LLVMPointerTypeInContext(c, 0);
    LLVMTypeRef rcp_params[] = {v16, v16, i16};
    LLVMTypeRef rcp_type = LLVMFunctionType(v16, rcp_params, 3, 0);
    LLVMValueRef rcp = LLVMAddFunction(m, "llvm.x86.avx512.rcp14.ps.512", rcp_type);
    LLVMValueRef fn = LLVMAddFunction(m, "f", LLVMFunctionType(LLVMVoidTypeInContext(c), &ptr, 1, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(c);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(c, fn, "entry"));
    LLVMValueRef v = LLVMBuildLoad2(b, v16, LLVMGetParam(fn, 0), "");
    LLVMValueRef args[] = {v, v, LLVMConstInt(i16, 0xffff, 0)};
    LLVMBuildStore(b, LLVMBuildCall2(b, rcp_type, rcp, args, 3, ""), LLVMGetParam(fn, 0));
    LLVMBuildRetVoid(b);
    jit_target t = *host;
    snprintf(t.features, sizeof t.features, "-avx512f,-avx");
    jit_module_set_target(m, &t);
    jit_buffer out = {0};
    fj_status status = jit_compile_module(m, &t, "fatal-test-kernel cfg=42", &out);
    /* Reaching here means LLVM did not treat it as fatal: report that to the parent. */
    dprintf(pipe_fds[1], "NOT FATAL status=%d %s\n", status, fj_last_error());
    _exit(0);
  }
  close(pipe_fds[1]);
  char got[4096] = "";
  size_t used = 0;
  ssize_t n;
  while (used + 1 < sizeof got && (n = read(pipe_fds[0], got + used, sizeof got - 1 - used)) > 0)
    used += (size_t)n;
  got[used] = '\0';
  close(pipe_fds[0]);
  int wstatus = 0;
  waitpid(child, &wstatus, 0);
  if (WIFSIGNALED(wstatus))
    printf("  child killed by signal %d; its log: %s", WTERMSIG(wstatus), got);
  else
    printf("  child exit status %d; its log: %s", WEXITSTATUS(wstatus), got);
  check_detail(strstr(got, "fatal-test-kernel cfg=42") != NULL && strstr(got, "NOT FATAL") == NULL,
        "an LLVM fatal error logs the kernel and config being compiled", got);
}

static void check_nvptx(LLVMContextRef c) {
  char detail[512];
  jit_target t;
  memset(&t, 0, sizeof t);
  snprintf(t.triple, sizeof t.triple, "nvptx64-nvidia-cuda");
  snprintf(t.cpu, sizeof t.cpu, "sm_90a");
  snprintf(t.features, sizeof t.features, "+ptx80");
  LLVMModuleRef m = build_nvptx_module(c);
  /* data_layout left empty: jit_module_set_target derives it. */
  fj_status status = jit_module_set_target(m, &t);
  check_detail(status == FJ_OK && strlen(LLVMGetDataLayoutStr(m)) > 0, "jit_module_set_target derives an NVPTX layout",
        fj_last_error());
  jit_buffer ptx = {0};
  double start = now_ms();
  status = jit_compile_module(m, &t, "test_jit nvptx axpy", &ptx);
  double ms = now_ms() - start;
  LLVMDisposeModule(m);
  check_detail(status == FJ_OK && ptx.data && ((char *)ptx.data)[ptx.size] == '\0', "compile for nvptx64 sm_90a",
        fj_last_error());
  if (status != FJ_OK)
    return;
  printf("  compile to PTX: %.1f ms, %zu bytes\n", ms, ptx.size);
  const char *text = ptx.data;
  check_detail(strstr(text, ".target sm_90a") && strstr(text, ".version 8.0") && strstr(text, ".entry axpy_kernel"),
        "PTX names .version 8.0, .target sm_90a and the .entry", text);

  const char *ptxas = "/usr/local/cuda/bin/ptxas";
  if (access(ptxas, X_OK) != 0) {
    printf("skip ptxas check: %s not found\n", ptxas);
    jit_buffer_free(&ptx);
    return;
  }
  char path[] = "/tmp/test_jit_XXXXXX.ptx";
  int fd = mkstemps(path, 4);
  if (fd < 0 || write(fd, ptx.data, ptx.size) != (ssize_t)ptx.size) {
    check_detail(0, "write PTX to a temp file", path);
    if (fd >= 0)
      close(fd);
    jit_buffer_free(&ptx);
    return;
  }
  close(fd);
  char command[512];
  snprintf(command, sizeof command, "%s -arch=sm_90a -v -o /dev/null %s 2>&1", ptxas, path);
  FILE *pipe_in = popen(command, "r");
  char line[512];
  while (pipe_in && fgets(line, sizeof line, pipe_in))
    printf("  ptxas: %s", line);
  int rc = pipe_in ? pclose(pipe_in) : -1;
  snprintf(detail, sizeof detail, "ptxas exit status %d", WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
  check_detail(rc == 0, "ptxas -arch=sm_90a accepts the PTX", detail);
  unlink(path);
  jit_buffer_free(&ptx);
}

int main(void) {
  rng_state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
  if (!rng_state)
    rng_state = 1;
  printf("seed %llu\n", (unsigned long long)rng_state);
  if (!core_log_enabled(LOG_WARN)) /* the checks read warnings and errors from the log */
    core_log_set_level(LOG_WARN);
  unsetenv("FLASHJIT_CPU_FEATURES");
  check_detail(jit_init() == FJ_OK && jit_init() == FJ_OK, "jit_init (twice)", fj_last_error());
  LLVMInitializeX86Disassembler(); /* only the test disassembles */

  LLVMContextRef c = LLVMContextCreate();
  jit_target host;
  check_host_target(&host);
  jit_buffer object = {0};
  check_run_host(c, &host, &object);
  if (object.data)
    check_load_timing(&object);
  jit_buffer_free(&object);
  check_concurrent_compiles(&host);
  check_bad_inputs(c, &host);
  check_cpu_features_env(c, &host);
  check_fatal_handler(c, &host);
  check_nvptx(c);
  LLVMContextDispose(c);

  return check_summary();
}
