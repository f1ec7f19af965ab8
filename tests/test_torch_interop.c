/* test_torch_interop.c: flashjit inside a PyTorch process, the way an inference engine uses it. Where
 * `python3 -c "import torch; assert torch.cuda.is_available()"` succeeds, it runs tests/torch_interop.py
 * on the shared library just built (path from CMake): tensors allocated by PyTorch on cuda:0 (packed,
 * transposed and GQA layouts) go to fj_attention_forward through ctypes as DLTensors built from
 * data_ptr() and stride(), on a PyTorch stream, and the output is compared with PyTorch's own
 * attention; then the same through the Python package (flashjit.attention on torch's current stream,
 * its workspace from torch's allocator). Anywhere else it is skipped (exit 77) with the reason
 * (test_python_api checks the package's structs and runs it on the CPU). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

int main(void) {
#if defined(__SANITIZE_ADDRESS__)
  /* python3 cannot dlopen a library built with AddressSanitizer (its runtime must come first). */
  printf("skipped: built with AddressSanitizer, which python3 cannot load; the plain build runs this\n");
  return 77;
#endif
  if (system("python3 -c pass >/dev/null 2>&1") != 0) {
    printf("skipped: no python3 here (the PyTorch run needs it)\n");
    return 77;
  }
  int rc = system("python3 -c \"import torch; assert torch.cuda.is_available()\" >/dev/null 2>&1");
  if (rc != 0) {
    printf("skipped: python3 with a CUDA-enabled torch and a visible GPU is not available here\n");
    return 77;
  }
  char command[4096];
  snprintf(command, sizeof command, "PYTHONPATH='%s/python' python3 '%s/tests/torch_interop.py' '%s'",
           FJ_TEST_SOURCE_DIR, FJ_TEST_SOURCE_DIR, FJ_TEST_LIBFLASHJIT);
  fflush(stdout);
  rc = system(command);
  if (rc == -1 || !WIFEXITED(rc)) {
    printf("FAIL: %s did not exit by itself\n", command);
    return 1;
  }
  return WEXITSTATUS(rc);  /* 0, 1, or 77 when the library has no CUDA kernel family yet */
}
