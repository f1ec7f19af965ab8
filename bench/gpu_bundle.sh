#!/bin/sh
# gpu_bundle.sh: takes flashjit to a GPU machine that has the CUDA driver but no LLVM 22 (the lent H100
# and H200 machines). `pack`, run where LLVM 22 is installed, builds with LLVM linked statically
# (-DFLASHJIT_STATIC_LLVM=ON) and packs the command, the shared library and the GPU tests, stripped, into
# .device/bundle.tar.xz (ignored by git; small enough to travel with the tree). `unpack`, run on the GPU
# machine from a copy of the tree, puts them back in build-gpu/ and makes the build's absolute paths
# (the tests call the command and find their scripts by the path they were built at) resolve there.
# `check` runs the GPU tests; what to run after that is in docs/PERF.md's NVIDIA section.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-gpu"
bundle="$root/.device/bundle.tar.xz"
programs="flashjit libflashjit.so test_attention_cuda test_tune_cuda test_torch_interop"

case "${1:-}" in
pack)
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFLASHJIT_STATIC_LLVM=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target flashjit_cli flashjit test_attention_cuda test_tune_cuda \
    test_torch_interop
  mkdir -p "$root/.device"
  printf '%s\n' "$root" >"$build/built-at"
  # Each program holds its own copy of LLVM (about 75 MB stripped); a dictionary larger than one of
  # them lets xz store the copies once: about 25 MB in all, in about 5 minutes on 2 cores.
  # shellcheck disable=SC2086
  (cd "$build" && strip $programs && tar -cf - $programs built-at | xz -6 --lzma2=dict=256MiB >"$bundle")
  ls -l "$bundle"
  ;;
unpack)
  mkdir -p "$build"
  tar -xJf "$bundle" -C "$build"
  built_at=$(cat "$build/built-at")
  if [ "$built_at" != "$root" ]; then
    if [ -e "$built_at" ] && [ ! -L "$built_at" ]; then
      echo "gpu_bundle: the bundle was built at $built_at, which exists here and is not this tree" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$built_at")"
    ln -sfn "$root" "$built_at"
  fi
  "$build/flashjit" info
  ;;
check)
  status=0
  for t in test_attention_cuda test_tune_cuda test_torch_interop; do
    echo "== $t"
    "$build/$t" || { rc=$?; [ $rc -eq 77 ] || status=1; echo "== $t: exit $rc"; }
  done
  exit $status
  ;;
*)
  echo "usage: bench/gpu_bundle.sh pack | unpack | check" >&2
  exit 2
  ;;
esac
