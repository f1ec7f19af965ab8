/* cuda_driver.h: the CUDA driver API as this backend sees it: the few vendor types, enums and constants
 * it uses (declared here with the numeric values the driver API documents, so building needs no CUDA
 * SDK), one X-macro list of the entry points, and the loader that opens libcuda.so.1 with dlopen once
 * and fills a struct of function pointers from that list. Nothing outside src/backends/cuda/ includes
 * this file. */
#ifndef FJ_CUDA_DRIVER_H
#define FJ_CUDA_DRIVER_H
#include <stddef.h>
#include "flashjit.h"

/* ---- vendor types: opaque handles are pointers to undeclared structs, as in the driver API ---- */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;  /* 64-bit on every platform this library supports */
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUlinkState_st *CUlinkState;
typedef int CUdevice_attribute;
typedef int CUfunction_attribute;
typedef int CUjit_option;
typedef int CUjitInputType;
typedef int CUstreamCaptureMode;

/* CUresult values this backend tells apart; every other code is reported through cuGetErrorName. */
#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NOT_INITIALIZED 3
#define CUDA_ERROR_STUB_LIBRARY 34
#define CUDA_ERROR_INSUFFICIENT_DRIVER 35
#define CUDA_ERROR_NO_DEVICE 100
#define CUDA_ERROR_INVALID_DEVICE 101
#define CUDA_ERROR_INVALID_IMAGE 200
#define CUDA_ERROR_INVALID_CONTEXT 201
#define CUDA_ERROR_INVALID_PTX 218
#define CUDA_ERROR_INVALID_HANDLE 400
#define CUDA_ERROR_NOT_FOUND 500
#define CUDA_ERROR_LAUNCH_FAILED 719
#define CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED 900
#define CUDA_ERROR_STREAM_CAPTURE_INVALIDATED 901

/* CUdevice_attribute */
#define CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK 1
#define CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK 8
#define CU_DEVICE_ATTRIBUTE_CLOCK_RATE 13           /* kHz */
#define CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE 36    /* kHz */
#define CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH 37
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97

/* CUfunction_attribute */
#define CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES 1
#define CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8

/* CUjit_option */
#define CU_JIT_WALL_TIME 2
#define CU_JIT_INFO_LOG_BUFFER 3
#define CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES 4
#define CU_JIT_ERROR_LOG_BUFFER 5
#define CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES 6
#define CU_JIT_LOG_VERBOSE 12

/* CUjitInputType */
#define CU_JIT_INPUT_CUBIN 0
#define CU_JIT_INPUT_PTX 1

/* cuEventCreate flags */
#define CU_EVENT_DEFAULT 0
/* cuStreamCreate flags: no implicit synchronization with the legacy default stream */
#define CU_STREAM_NON_BLOCKING 1

/* A thread's stream capture mode (cuThreadExchangeStreamCaptureMode); RELAXED allows the calls a
 * capture in progress otherwise forbids */
#define CU_STREAM_CAPTURE_MODE_GLOBAL 0
#define CU_STREAM_CAPTURE_MODE_RELAXED 2

/* ---- the entry points: X(required, name, return, parameters) ----
 * Versioned names are asked for explicitly: the plain names are the pre-v2 ABI (32-bit sizes and
 * device pointers on old drivers) that the SDK headers rename with #define. Required symbols exist in
 * every driver that can run sm_80; a missing one means the library is not a usable libcuda, and its
 * name is the reason. Optional ones are NULL when absent and their callers fall back. */
#define CUDA_DRIVER_SYMBOLS(X)                                                                        \
  X(1, cuInit, CUresult, (unsigned int flags))                                                        \
  X(1, cuDriverGetVersion, CUresult, (int *version))                                                  \
  X(1, cuGetErrorName, CUresult, (CUresult error, const char **name))                                 \
  X(1, cuGetErrorString, CUresult, (CUresult error, const char **text))                               \
  X(1, cuDeviceGetCount, CUresult, (int *count))                                                      \
  X(1, cuDeviceGet, CUresult, (CUdevice * device, int ordinal))                                      \
  X(1, cuDeviceGetName, CUresult, (char *name, int length, CUdevice device))                          \
  X(1, cuDeviceGetAttribute, CUresult, (int *value, CUdevice_attribute attribute, CUdevice device))   \
  X(1, cuDeviceTotalMem_v2, CUresult, (size_t * bytes, CUdevice device))                              \
  X(1, cuDevicePrimaryCtxRetain, CUresult, (CUcontext * context, CUdevice device))                    \
  X(1, cuDevicePrimaryCtxRelease_v2, CUresult, (CUdevice device))                                     \
  X(1, cuCtxGetCurrent, CUresult, (CUcontext * context))                                              \
  X(1, cuCtxGetDevice, CUresult, (CUdevice * device))                                                 \
  X(1, cuCtxPushCurrent_v2, CUresult, (CUcontext context))                                            \
  X(1, cuCtxPopCurrent_v2, CUresult, (CUcontext * context))                                           \
  X(1, cuLinkCreate_v2, CUresult,                                                                     \
    (unsigned int num_options, CUjit_option *options, void **values, CUlinkState *state))             \
  X(1, cuLinkAddData_v2, CUresult,                                                                    \
    (CUlinkState state, CUjitInputType type, void *data, size_t size, const char *name,               \
     unsigned int num_options, CUjit_option *options, void **values))                                 \
  X(1, cuLinkComplete, CUresult, (CUlinkState state, void **cubin, size_t *size))                     \
  X(1, cuLinkDestroy, CUresult, (CUlinkState state))                                                  \
  X(1, cuModuleLoadData, CUresult, (CUmodule * module, const void *image))                            \
  X(1, cuModuleUnload, CUresult, (CUmodule module))                                                   \
  X(1, cuModuleGetFunction, CUresult, (CUfunction * function, CUmodule module, const char *name))     \
  X(1, cuFuncGetAttribute, CUresult, (int *value, CUfunction_attribute attribute, CUfunction f))      \
  X(1, cuFuncSetAttribute, CUresult, (CUfunction f, CUfunction_attribute attribute, int value))       \
  X(1, cuLaunchKernel, CUresult,                                                                      \
    (CUfunction f, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,                     \
     unsigned int block_x, unsigned int block_y, unsigned int block_z, unsigned int shared_bytes,     \
     CUstream stream, void **params, void **extra))                                                   \
  X(1, cuMemAlloc_v2, CUresult, (CUdeviceptr * pointer, size_t bytes))                                \
  X(1, cuMemFree_v2, CUresult, (CUdeviceptr pointer))                                                 \
  X(1, cuMemcpyHtoD_v2, CUresult, (CUdeviceptr dst, const void *src, size_t bytes))                   \
  X(1, cuMemcpyDtoH_v2, CUresult, (void *dst, CUdeviceptr src, size_t bytes))                         \
  X(1, cuStreamSynchronize, CUresult, (CUstream stream))                                              \
  /* CUDA 10.1; without it (older drivers) setting up inside a graph capture is not made possible */  \
  X(0, cuThreadExchangeStreamCaptureMode, CUresult, (CUstreamCaptureMode * mode))                     \
  /* streams are the caller's; these serve only the tests and tools that need their own */           \
  X(0, cuStreamCreate, CUresult, (CUstream * stream, unsigned int flags))                             \
  X(0, cuStreamDestroy_v2, CUresult, (CUstream stream))                                               \
  X(1, cuEventCreate, CUresult, (CUevent * event, unsigned int flags))                                \
  X(1, cuEventRecord, CUresult, (CUevent event, CUstream stream))                                     \
  X(1, cuEventSynchronize, CUresult, (CUevent event))                                                 \
  X(1, cuEventDestroy_v2, CUresult, (CUevent event))                                                  \
  /* 12.8 added _v2 and newer SDK headers map the plain name to it; either serves, one must exist */  \
  X(0, cuEventElapsedTime_v2, CUresult, (float *milliseconds, CUevent start, CUevent end))            \
  X(0, cuEventElapsedTime, CUresult, (float *milliseconds, CUevent start, CUevent end))

/* The loaded driver: one pointer per entry of the list, named as the driver names it, inside the
 * struct (never globals named like the vendor's functions). */
typedef struct cuda_driver {
#define CUDA_DRIVER_FIELD_(required, name, ret, params) ret(*name) params;
  CUDA_DRIVER_SYMBOLS(CUDA_DRIVER_FIELD_)
#undef CUDA_DRIVER_FIELD_
  /* cuEventElapsedTime_v2 when present, else cuEventElapsedTime */
  CUresult (*event_elapsed)(float *milliseconds, CUevent start, CUevent end);
  int driver_version;  /* cuDriverGetVersion: 12040 for 12.4 */
  int device_count;    /* after cuInit; 0 when cuInit failed */
  char library[256];   /* the path or name dlopen succeeded with */
} cuda_driver;

/* Opens the driver and runs cuInit(0), once for the process and thread-safely. The search list is
 * FLASHJIT_CUDA_LIBRARY when set (and only it: a test or an operator naming a library means that
 * one), else libcuda.so.1, libcuda.so, then the usual driver folders. Returns the driver when it
 * loaded and initialized with at least one device, else NULL with the reason in *why ("libcuda.so.1:
 * cannot open shared object file", "libcuda.so.1 lacks cuLaunchKernel", "cuInit: CUDA_ERROR_NO_DEVICE
 * (no CUDA-capable device is detected)"). *why may be NULL. */
const cuda_driver *cuda_driver_get(const char **why);

/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)", from the driver's own tables; a number when the driver
 * does not know the code. Writes into buffer and returns it. */
const char *cuda_result_text(const cuda_driver *driver, CUresult result, char *buffer, size_t size);

/* The usual failure: records "cuda: <what>: <cuda_result_text>" for this thread and returns the
 * matching status (FJ_OUT_OF_MEMORY for CUDA_ERROR_OUT_OF_MEMORY, FJ_COMPILE_FAILED for PTX and image
 * errors, FJ_DRIVER otherwise). */
fj_status cuda_fail(const cuda_driver *driver, CUresult result, const char *what);
#endif
