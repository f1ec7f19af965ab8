#!/usr/bin/env bash
# sass_of_ptx.sh: disassembles a generated kernel (PTX, e.g. from FJ_PTXAS_DUMP) into SASS for
# bench/sass_fastpath.py.
#   bench/sass_of_ptx.sh kernel.ptx out.sass
# With CUDA's own nvdisasm beside ptxas (the GPU machine), the kernel is assembled for its own target.
# CUDA 13 on a developer machine ships ptxas without a disassembler; then the nvdisasm and ptxas of
# CUDA 11.8 are taken from Debian's non-free nvidia-cuda-toolkit package (downloaded once, unpacked
# under $FLASHJIT_SASS_TOOLS, default ~/.cache/flashjit-sass-tools, nothing installed) and the kernel
# is assembled for sm_90 as PTX 7.8: 11.8's nvdisasm cannot read CUDA 13 cubins. Its SASS is an older
# assembler's, close to but not the same as what the driver makes: compare kernels with one another
# through one assembler, not across them.
set -euo pipefail
ptx=${1:?usage: sass_of_ptx.sh kernel.ptx out.sass}
out=${2:?usage: sass_of_ptx.sh kernel.ptx out.sass}
cubin=$(mktemp --suffix=.cubin)
trap 'rm -f "$cubin" "$cubin.ptx"' EXIT

cuda=/usr/local/cuda/bin
if [ -x "$cuda/nvdisasm" ] && [ -x "$cuda/ptxas" ]; then
  arch=$(sed -n 's/^\.target[[:space:]]*\([a-z0-9_]*\).*/\1/p' "$ptx" | head -1)
  "$cuda/ptxas" -arch="$arch" -O3 "$ptx" -o "$cubin"
  "$cuda/nvdisasm" -c "$cubin" > "$out"
  exit 0
fi

tools=${FLASHJIT_SASS_TOOLS:-$HOME/.cache/flashjit-sass-tools}
if [ ! -x "$tools/usr/bin/nvdisasm" ]; then
  mkdir -p "$tools"
  list=$(mktemp)
  echo "deb http://deb.debian.org/debian bookworm non-free" > "$list"
  apt_options=(-o "Dir::Etc::sourcelist=$list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0)
  apt-get "${apt_options[@]}" update -qq
  (cd "$tools" && apt-get "${apt_options[@]}" download nvidia-cuda-toolkit 2>/dev/null)
  dpkg -x "$tools"/nvidia-cuda-toolkit_*.deb "$tools"
  rm -f "$list" "$tools"/nvidia-cuda-toolkit_*.deb
fi
sed -e 's/^\.version .*/.version 7.8/' -e 's/^\.target sm_90a/.target sm_90/' "$ptx" > "$cubin.ptx"
arch=$(sed -n 's/^\.target[[:space:]]*\([a-z0-9_]*\).*/\1/p' "$cubin.ptx" | head -1)
"$tools/usr/bin/ptxas" -arch="$arch" -O3 "$cubin.ptx" -o "$cubin"
"$tools/usr/bin/nvdisasm" -c "$cubin" > "$out"
