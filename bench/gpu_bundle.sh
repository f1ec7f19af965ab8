#!/bin/sh
# gpu_bundle.sh: takes flashjit to a GPU machine that has the CUDA driver but no LLVM 22 (the lent H100
# and H200 machines). `pack`, run where LLVM 22 is installed, builds with LLVM linked statically
# (-DFLASHJIT_STATIC_LLVM=ON) and packs the command, the shared library and the GPU tests, stripped, into
# .device/bundle.tar.xz (ignored by git; small enough to travel with the tree). `unpack`, run on the GPU
# machine from a copy of the tree, puts them back in build-gpu/ and makes the build's absolute paths
# (the tests call the command and find their scripts by the path they were built at) resolve there.
# `check` runs the GPU tests. `measure` is what one device call should do (a session is lent about 15
# minutes of device time, one command at most 10): check, cold and warm start, the prefill grid beside
# PyTorch's SDPA backends, then the Triton peer and a short tune while time is left, each step under a
# deadline, everything written to $OUT as it goes (docs/PERF.md's NVIDIA section).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build-gpu"
bundle="$root/.device/bundle.tar.xz"
programs="flashjit test_attention_cuda test_tune_cuda test_torch_interop"

case "${1:-}" in
pack)
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFLASHJIT_STATIC_LLVM=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target flashjit_cli flashjit test_attention_cuda test_tune_cuda \
    test_torch_interop
  mkdir -p "$root/.device"
  printf '%s\n' "$root" >"$build/built-at"
  # Each program holds its own copy of LLVM (about 75 MB stripped); a dictionary larger than one of
  # them lets xz store the copies once: about 25 MB in all, in about 5 minutes on 2 cores.
  # The library is one file (libflashjit.so.X.Y.Z, stripped) and two links to it, its soname and the
  # link name, which tar keeps as links.
  # shellcheck disable=SC2086
  (cd "$build" && library=$(ls libflashjit.so.*.*.*) && soname=${library%.*.*} && strip $programs "$library" &&
    tar -cf - $programs "$library" "$soname" libflashjit.so built-at | xz -6 --lzma2=dict=256MiB >"$bundle")
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
measure)
  # Usage (on the GPU machine, from the tree): bench/gpu_bundle.sh measure [SECONDS], default 540:
  # the whole run stays inside that many seconds; each step gets at most its own share and is skipped
  # when too little is left. Logs: $OUT/run.log (all steps), grid.csv, grid.svg, triton.jsonl,
  # tune.json, decode.json, decode_grid.csv: 7 files, where at most 8 come back (a plot cut off mid-write
  # leaves a temporary file beside its name).
  out=${OUT:-$root/.device/out}
  mkdir -p "$out"
  deadline=$(($(date +%s) + ${2:-540}))
  log="$out/run.log"
  B="$build/flashjit"
  # step NAME MIN_SECONDS MAX_SECONDS command...: runs the command under timeout when at least MIN
  # seconds are left, for at most MAX (or what is left); its output goes to the log.
  step() {
    name=$1 least=$2 most=$3
    shift 3
    left=$((deadline - $(date +%s)))
    if [ "$left" -lt "$least" ]; then
      echo "== $name: skipped, ${left}s left (needs ${least}s)" >>"$log"
      return 0
    fi
    [ "$most" -lt "$left" ] || most=$left
    echo "== $name (at most ${most}s): $*" >>"$log"
    begin=$(date +%s)
    rc=0
    timeout -k 5 "$most" "$@" >>"$log" 2>&1 || rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - begin))s" >>"$log"
  }
  export PYTHONUNBUFFERED=1
  # The run's own cache, outside $OUT (8 files come back at most): each kernel's first build is cold.
  cache=$(mktemp -d /tmp/flashjit-measure-XXXXXX)
  step "unpack" 30 120 "$0" unpack
  step "nvidia-smi" 10 20 nvidia-smi
  step "test_attention_cuda" 120 240 "$build/test_attention_cuda"
  step "test_tune_cuda" 60 120 "$build/test_tune_cuda"
  step "test_torch_interop" 30 90 "$build/test_torch_interop"
  # Cold compile (an empty cache), then warm start (a second process loads the cached binary).
  for run in cold warm; do
    step "build $run d128 bf16" 20 60 "$B" bench --device cuda:0 --cache-dir "$cache" --batch 4 --heads 16 \
      --seqlen 4096 --head-dim 128 --dtype bf16 --warmup 5 --repeat 20
  done
  # The same shape's default config with unswizzled tiles, against the warm run above: swizzle=0 is half
  # the space, and the emulator counts 2-8x its ldmatrix bank conflicts; if it never wins, it goes.
  step "d128 bf16 unswizzled" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" --batch 4 --heads 16 \
    --seqlen 4096 --head-dim 128 --dtype bf16 --warmup 5 --repeat 20 \
    --config "block_m=128 block_n=64 warps=4 stages=2 q_in_regs=0 swizzle=0"
  step "grid with sdpa peers" 120 360 sh -c "\"$B\" bench --device cuda:0 --cache-dir \"$cache\" --grid prefill \
    --peer-list sdpa-flash,sdpa-cudnn,sdpa-efficient --csv --plot \"$out/grid.svg\" >\"$out/grid.csv\""
  # The rest of the issue's grid and goal come first: the Triton peer (it compiles 8 configs per dtype, head
  # dim and mask; what finishes is kept line by line), then a tune of the d128 point and the point again.
  step "triton-fa2 on the grid" 90 240 sh -c "python3 \"$root/bench/peers/peers.py\" --grid prefill \
    --peers triton-fa2 >\"$out/triton.jsonl\""
  step "tune d128 bf16 s4096" 60 120 sh -c "\"$B\" tune --device cuda:0 --cache-dir \"$cache\" --batch 4 \
    --heads 16 --seqlen 4096 --head-dim 128 --dtype bf16 --budget 90s --json --quiet >\"$out/tune.json\""
  step "tuned d128 bf16 s4096" 15 40 "$B" bench --device cuda:0 --cache-dir "$cache" --batch 4 --heads 16 \
    --seqlen 4096 --head-dim 128 --dtype bf16 --warmup 5 --repeat 20
  # Then each feature's own measurements, as long as time is left.
  # A decode step of Llama-3-8B (GB/s): the packed default (split-KV: bench gives it a workspace)
  # beside the SDPA peers, then unsplit, then unpacked; and batch 1 with a long cache, split and not.
  decode="--batch 8 --heads 32 --kv-heads 8 --seqlen 1 --seqlen-kv 8192 --head-dim 128 --dtype bf16 --causal"
  step "decode packed" 20 60 sh -c "\"$B\" bench --device cuda:0 --cache-dir \"$cache\" $decode --check \
    --peer-list sdpa-flash,sdpa-cudnn,sdpa-efficient --json >\"$out/decode.json\""
  step "decode packed unsplit" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $decode --check --no-split-kv
  decode1="--batch 1 --heads 32 --kv-heads 8 --seqlen 1 --seqlen-kv 32768 --head-dim 128 --dtype bf16 --causal"
  step "decode batch 1" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $decode1 --check
  step "decode batch 1 unsplit" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $decode1 --check --no-split-kv
  step "decode unpacked" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $decode --check \
    --config "block_m=64 block_n=64 warps=4 stages=3 q_in_regs=1 swizzle=1 pack_gqa=0"
  # The same step from a paged cache (pages of 16 keys shuffled in one pool, vLLM's layout).
  step "decode paged" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $decode --page-size 16 --check
  # The same paged step from an fp8 cache (vLLM's kv_cache_dtype=fp8): half the bytes, copied through
  # registers and converted; against "decode paged" above.
  step "decode paged fp8" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $decode --page-size 16 \
    --kv-dtype fp8_e4m3 --check
  # A sliding-window layer (4096 keys, Mistral's) on the batch-1 cache of 32768 keys: the window's tiles only.
  step "decode batch 1 window 4096" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $decode1 \
    --window-left 4095 --check
  # An engine's prefill of 8 prompts of different lengths packed end to end (cu_seqlens_q), against the
  # same prompts padded to the longest (batch 8 x 4096): what ragged queries save.
  step "prefill ragged 8 prompts" 15 40 "$B" bench --device cuda:0 --cache-dir "$cache" --heads 32 --kv-heads 8 \
    --head-dim 128 --causal --seqlens-q 4096,512,1024,3000,77,2048,1500,256 --check
  step "prefill padded 8 x 4096" 15 40 "$B" bench --device cuda:0 --cache-dir "$cache" --batch 8 --heads 32 \
    --kv-heads 8 --head-dim 128 --causal --seqlen 4096
  # gpt-oss's attention (64 heads, 8 KV heads, d = 64, a sink per head): a decode step of a full layer and
  # of a 128-key windowed one, and a 4096-token causal prefill, with sinks against the same without.
  oss="--heads 64 --kv-heads 8 --head-dim 64 --dtype bf16 --causal"
  step "gpt-oss decode sinks" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $oss --batch 8 --seqlen 1 \
    --seqlen-kv 8192 --sinks --check
  step "gpt-oss decode window 128 sinks" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $oss --batch 8 \
    --seqlen 1 --seqlen-kv 8192 --window-left 127 --sinks --check
  step "gpt-oss prefill sinks" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $oss --seqlen 4096 --sinks
  step "gpt-oss prefill" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $oss --seqlen 4096
  # Gemma 2's attention (16 heads, 8 KV heads, d = 256, logits soft-capped at 50): a 4096-token causal
  # prefill with the cap against the same without (the cost of tanh.approx per score).
  # Checked at 1024 tokens (the float64 reference of 4096 would take minutes), timed at 4096.
  gemma="--heads 16 --kv-heads 8 --head-dim 256 --dtype bf16 --causal"
  step "gemma2 prefill 1024 softcap check" 15 60 "$B" bench --device cuda:0 --cache-dir "$cache" $gemma --seqlen 1024 \
    --softcap 50 --check
  step "gemma2 prefill softcap" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $gemma --seqlen 4096 --softcap 50
  step "gemma2 prefill" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $gemma --seqlen 4096
  # An additive bias (SDPA's attn_mask: [batch, 1, sq, skv] bf16, -inf past each diagonal) on the shape of
  # the tuned point above (b4 h16 s4096 d128 bf16, not causal): what loading one element per score costs.
  bias="--batch 4 --heads 16 --head-dim 128 --dtype bf16 --attn-bias bf16"
  step "prefill bias 1024 check" 15 40 "$B" bench --device cuda:0 --cache-dir "$cache" $bias --seqlen 1024 --check
  step "prefill bias" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $bias --seqlen 4096
  step "prefill no bias" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" --batch 4 --heads 16 --head-dim 128 \
    --dtype bf16 --seqlen 4096
  # DeepSeek's MLA prefill (q and k 192, v 128): checked at 1024 tokens, timed at 4096 against the same
  # call with v padded to 192 (what an engine does with a kernel of one head dim).
  mla="--heads 16 --head-dim 192 --dtype bf16 --causal"
  step "mla prefill 1024 check" 15 60 "$B" bench --device cuda:0 --cache-dir "$cache" $mla --head-dim-v 128 \
    --seqlen 1024 --check
  step "mla prefill" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $mla --head-dim-v 128 --seqlen 4096
  step "mla prefill v padded" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $mla --seqlen 4096
  # Its decode in the absorbed form (q and k 576, v 512, 128 heads on one KV head; O split over warps):
  # checked, then timed at 4096 keys against the plain form (q and k 192, v 128, 128 KV heads).
  absorbed="--batch 8 --heads 128 --kv-heads 1 --seqlen 1 --head-dim 576 --head-dim-v 512 --dtype bf16 --causal"
  step "mla absorbed decode check" 15 60 "$B" bench --device cuda:0 --cache-dir "$cache" $absorbed --seqlen-kv 1024 \
    --check
  step "mla absorbed decode" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" $absorbed --seqlen-kv 4096
  step "mla plain decode" 15 30 "$B" bench --device cuda:0 --cache-dir "$cache" --batch 8 --heads 128 --seqlen 1 \
    --seqlen-kv 4096 --head-dim 192 --head-dim-v 128 --dtype bf16 --causal
  # The decode grid (Llama-3-8B's heads, batch 1 ... 128, caches of 1k ... 64k keys): GB/s beside SDPA's
  # (enable_gqa), with whatever time is left.
  step "decode grid with sdpa peers" 40 120 sh -c "\"$B\" bench --device cuda:0 --cache-dir \"$cache\" --grid decode \
    --peer-list sdpa-flash,sdpa-cudnn,sdpa-efficient --csv >\"$out/decode_grid.csv\""
  rm -rf "$cache"
  grep "^== " "$log"
  ;;
*)
  echo "usage: bench/gpu_bundle.sh pack | unpack | check | measure [SECONDS]" >&2
  exit 2
  ;;
esac
