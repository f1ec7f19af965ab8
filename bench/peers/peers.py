#!/usr/bin/env python3
"""peers.py: the attention implementations flashjit is compared with, measured on one CUDA device or the CPU.

`flashjit bench --peers` (one shape, or `--grid prefill`) runs this script with the points as one JSON
object on stdin and reads one JSON object per line back; it also runs by hand (`--grid prefill` builds
the same grid here, `--self-test` only checks the peers against a reference). The peers on CUDA:

  sdpa-flash      torch.nn.functional.scaled_dot_product_attention, FLASH_ATTENTION backend forced
  sdpa-cudnn      the same, CUDNN_ATTENTION backend
  sdpa-efficient  the same, EFFICIENT_ATTENTION (memory-efficient) backend
  triton-fa2      a FlashAttention-2 forward written below in Triton, autotuned

and on the CPU (device "cpu"; torch.set_num_threads(the request's "threads", default every core)):

  torch-sdpa      scaled_dot_product_attention on CPU tensors (torch >= 2.0; its CPU flash path)
  torch-eager     where torch has no SDPA: q k^T * scale, the causal mask, softmax (in float32), @ v, in
                  the inputs' dtype, in chunks of query rows that keep the scores under 32 MiB

Inputs are [batch, seqlen, heads, head_dim] as flashjit takes them; SDPA gets the [b, h, s, d] views
(transpose(1, 2), last dimension still contiguous), the Triton kernel reads the [b, s, h, d] strides
directly. On CUDA each launch is timed on the device with CUDA events (warmup first, then the median and
the minimum of the timed runs), as flashjit times its own kernels; on the CPU each call is timed with
time.perf_counter, as flashjit's CPU calls are timed by the wall clock. A causal mask is aligned to the
bottom-right corner (row i sees keys j <= i + seqlen_kv - seqlen), as flashjit's.

A point with "attn_bias" (flashjit bench --attn-bias) gives the peers that take a mask the bias bench
makes: [batch, 1, seqlen, seqlen_kv], random values and -inf past each query's diagonal, in q's dtype
(SDPA takes a float mask of the query's dtype) as attn_mask; the Triton kernel here takes none.

Every peer is checked first on small ragged cases: on CUDA against PyTorch's math backend, per dtype and
head dim (Triton's kernel at one fixed config, so that no check autotunes), on the CPU against a float64
reference, per dtype. A failed or refused check makes that peer n/a for the points of that dtype (and
head dim) only, with the reason.

FLOP convention (the same in flashjit's table): 4 * batch * heads * seqlen_q * seqlen_kv * head_dim per
forward, halved when causal (the FlashAttention papers' convention; the exact count of visible pairs
would be (s + 1) / (2 s) of the full one, about the same for these lengths).

Without torch, Triton or a GPU every mode prints one {"kind": "skip", "reason": ...} line and exits 0,
so the command can say "n/a" and why.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

CUDA_PEERS = ("sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "triton-fa2")
CPU_PEERS = ("torch-sdpa", "torch-eager")
PEERS = CUDA_PEERS + CPU_PEERS
GRID_SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)


def emit(obj):
    """One JSON object per line on stdout, flushed so the reader sees progress as it happens."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def log(message):
    sys.stderr.write("peers: " + message + "\n")
    sys.stderr.flush()


def first_line(e):
    """The first line of an exception's message (its class name when it has none), at most 300 characters."""
    return ((str(e).splitlines() or [""])[0] or e.__class__.__name__)[:300]


def flops(point):
    f = 4.0 * point["batch"] * point["heads"] * point["seqlen"] * point["seqlen_kv"] * point["head_dim"]
    return f / 2.0 if point["causal"] else f


def prefill_grid(tokens=16384, width=2048, dtypes=("fp16", "bf16"), head_dims=(64, 128)):
    """The issue-4 grid: batch * seqlen = tokens, heads * head_dim = width, causal and not."""
    points = []
    for dtype in dtypes:
        for d in head_dims:
            for causal in (False, True):
                for s in GRID_SEQLENS:
                    if s > tokens or tokens % s:
                        continue
                    points.append({"id": len(points), "dtype": dtype, "batch": tokens // s, "heads": width // d,
                                   "kv_heads": width // d, "seqlen": s, "seqlen_kv": s, "head_dim": d,
                                   "causal": causal, "attn_bias": False})
    return points


# ---- the environment --------------------------------------------------------------------------------

def device_kind(device):
    """"cuda", "cpu", or None for a device the peers do not cover."""
    if device.startswith("cuda"):
        return "cuda"
    if device == "cpu" or device.startswith("cpu:"):
        return "cpu"
    return None


def load_torch(device):
    """(torch, None) when torch and the device (CUDA, or the CPU) are usable, else (None, why)."""
    kind = device_kind(device)
    if kind is None:
        return None, "peers are measured on CUDA devices and the CPU only (flashjit ran on %s)" % device
    try:
        import torch  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return None, "python3 cannot import torch (%s)" % e.__class__.__name__ + (": %s" % e if str(e) else "")
    if kind == "cpu":
        return torch, None
    if not torch.cuda.is_available():
        return None, "torch %s finds no CUDA device" % torch.__version__
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return None, "torch finds %d CUDA device(s), no %s" % (torch.cuda.device_count(), device)
    torch.cuda.set_device(index)
    return torch, None


def load_triton():
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as e:
        return None, "python3 cannot import triton (%s)" % e
    return triton, None


TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


# ---- the Triton FlashAttention-2 forward -------------------------------------------------------------

def build_triton_fa2(triton):
    """The kernel is defined inside a function so that the module imports without Triton. Returns
    run(q, k, v, causal), autotuned, with run.fixed: the same kernel at one config, no autotuning (the
    correctness checks use it: a check of 300 rows would otherwise autotune a shape nobody measures)."""
    import triton.language as tl

    def padded_dim(head_dim):
        # tl.arange needs a power of two and tl.dot at least 16: the head dim is padded (and masked)
        return max(16, triton.next_power_of_2(head_dim))

    def prune(configs, named_args, **kwargs):
        # K and V tiles of every pipeline stage plus the Q tile must fit in shared memory (about 227 KB
        # on an H100); configs past that would only fail to compile.
        head_dim = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM") if isinstance(named_args, dict) else None)
        if head_dim is None:
            return configs
        d = padded_dim(head_dim)
        kept = [c for c in configs
                if c.num_stages * 2 * c.kwargs["BLOCK_N"] * d * 2 + c.kwargs["BLOCK_M"] * d * 2 <= 200 * 1024]
        return kept or configs

    # A small space in the spirit of Triton's own attention tutorial: each config compiles once per
    # (dtype, head dim, causal), and the first run of a grid must fit in one device call. The
    # autotuner's cache key also holds the tensors' dtypes, so fp16 and bf16 are tuned apart.
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
               for bm, bn, w, st in ((128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 2),
                                     (128, 32, 4, 4), (64, 64, 4, 3), (64, 32, 4, 4), (128, 128, 8, 2))]

    @triton.jit
    def fa2_fwd(Q, K, V, O, scale_log2,
                stride_qb, stride_qs, stride_qh, stride_qd,
                stride_kb, stride_ks, stride_kh, stride_kd,
                stride_vb, stride_vs, stride_vh, stride_vd,
                stride_ob, stride_os, stride_oh, stride_od,
                H, SEQ_Q, SEQ_KV,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, PAD_D: tl.constexpr, CAUSAL: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        # One program: BLOCK_M query rows of one (batch, head). FA2's loop order: Q stays in registers,
        # K/V tiles stream past it, and the softmax is kept online (running max m, running sum l,
        # unnormalised accumulator), rescaled whenever the max grows, normalised once at the end.
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = (pid_bh // H).to(tl.int64)  # 64-bit offsets: a large batch passes 2^31 elements
        h = (pid_bh % H).to(tl.int64)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        # Row masks; with PAD_D (a head dim that is not a power of two, padded to BLOCK_D) the columns past
        # the head dim are masked too: they read as 0 and are never stored. Without it the masks stay
        # row-only, so the loads keep their full width.
        q_rows = offs_m[:, None] < SEQ_Q
        if PAD_D:
            q_rows = q_rows & (offs_d[None, :] < HEAD_DIM)
        q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd,
                    mask=q_rows, other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        k_base = K + b * stride_kb + h * stride_kh
        v_base = V + b * stride_vb + h * stride_vh
        # Causal (aligned to the bottom-right corner, as flashjit's; the same as top-left when
        # SEQ_Q == SEQ_KV): row i sees keys j <= i + SEQ_KV - SEQ_Q, so the K/V blocks past the last
        # row's limit are skipped outright. The blocks before n_full are seen whole by every row and
        # run unmasked; only the rest (crossing the first row's limit or the sequence's end) are masked.
        # Two loops, as in FA2 and Triton's tutorial: a branch inside one loop can keep Triton from
        # pipelining the dots.
        if CAUSAL:
            hi = tl.minimum((pid_m + 1) * BLOCK_M + SEQ_KV - SEQ_Q, SEQ_KV)
            mask_from = tl.minimum(pid_m * BLOCK_M + SEQ_KV - SEQ_Q + 1, SEQ_KV)
        else:
            hi = SEQ_KV
            mask_from = SEQ_KV
        n_full = tl.maximum(mask_from, 0) // BLOCK_N * BLOCK_N
        for phase in tl.static_range(2):
            if phase == 0:
                lo, end = 0, n_full
            else:
                lo, end = n_full, hi
            for start_n in range(lo, end, BLOCK_N):
                start_n = tl.multiple_of(start_n, BLOCK_N)
                cols = start_n + offs_n
                k_cols = cols[None, :] < SEQ_KV
                v_rows = cols[:, None] < SEQ_KV
                if PAD_D:
                    k_cols = k_cols & (offs_d[:, None] < HEAD_DIM)
                    v_rows = v_rows & (offs_d[None, :] < HEAD_DIM)
                k = tl.load(k_base + cols[None, :] * stride_ks + offs_d[:, None] * stride_kd, mask=k_cols, other=0.0)
                # Base-2 softmax with the scale folded in: exp(x * scale) = exp2(x * scale * log2(e)).
                s = tl.dot(q, k) * scale_log2
                if phase == 1:
                    visible = cols[None, :] < SEQ_KV
                    if CAUSAL:
                        visible = visible & (cols[None, :] <= offs_m[:, None] + (SEQ_KV - SEQ_Q))
                    s = tl.where(visible, s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                # A row with nothing visible yet keeps max -inf; subtracting 0 instead keeps it NaN-free.
                m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
                p = tl.math.exp2(s - m_use[:, None])
                alpha = tl.math.exp2(m_i - m_use)
                l_i = l_i * alpha + tl.sum(p, 1)
                v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :] * stride_vd, mask=v_rows, other=0.0)
                acc = acc * alpha[:, None]
                acc = tl.dot(p.to(v.dtype), v, acc=acc)
                m_i = m_new
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # fully masked rows give 0, not NaN
        acc = acc / l_safe[:, None]
        tl.store(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :] * stride_od,
                 acc.to(O.dtype.element_ty), mask=q_rows)

    fa2_tuned = triton.autotune(configs=configs, key=["SEQ_Q", "SEQ_KV", "HEAD_DIM", "CAUSAL"],
                                prune_configs_by={"early_config_prune": prune})(fa2_fwd)

    def launch(kernel, q, k, v, causal, **fixed):
        """q, k, v: [b, s, h, d]; returns o like q."""
        batch, seq_q, heads, d = q.shape
        seq_kv = k.shape[1]
        o = q.new_empty(q.shape)
        scale_log2 = (1.0 / math.sqrt(d)) * 1.4426950408889634
        grid = lambda meta: (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads)  # noqa: E731
        kernel[grid](q, k, v, o, scale_log2,
                     q.stride(0), q.stride(1), q.stride(2), q.stride(3),
                     k.stride(0), k.stride(1), k.stride(2), k.stride(3),
                     v.stride(0), v.stride(1), v.stride(2), v.stride(3),
                     o.stride(0), o.stride(1), o.stride(2), o.stride(3),
                     heads, seq_q, seq_kv,
                     HEAD_DIM=d, BLOCK_D=padded_dim(d), PAD_D=padded_dim(d) != d, CAUSAL=bool(causal), **fixed)
        return o

    def run(q, k, v, causal):
        return launch(fa2_tuned, q, k, v, causal)

    def run_fixed(q, k, v, causal):
        return launch(fa2_fwd, q, k, v, causal, BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=2)

    run.fixed = run_fixed
    return run


# ---- the peers as callables --------------------------------------------------------------------------

def make_peers(torch, wanted):
    """{name: fn(q, k, v, causal) -> o} for the peers that can be built, and {name: why} for the rest."""
    peers, missing = {}, {}
    import torch.nn.functional as F
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception as e:
        SDPBackend = sdpa_kernel = None
        sdpa_why = "torch %s has no torch.nn.attention.sdpa_kernel (%s)" % (torch.__version__, e)

    def sdpa(backend):
        def fn(q, k, v, causal, bias=None):
            with sdpa_kernel([backend]):
                o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                   **mask_kwargs(causal, bias), **gqa_kwargs(q, k))
            return o.transpose(1, 2)
        return fn

    for name, attr in (("sdpa-flash", "FLASH_ATTENTION"), ("sdpa-cudnn", "CUDNN_ATTENTION"),
                       ("sdpa-efficient", "EFFICIENT_ATTENTION")):
        if name not in wanted:
            continue
        if sdpa_kernel is None:
            missing[name] = sdpa_why
        elif not hasattr(SDPBackend, attr):
            missing[name] = "torch %s has no SDPBackend.%s" % (torch.__version__, attr)
        else:
            peers[name] = sdpa(getattr(SDPBackend, attr))
    if "triton-fa2" in wanted:
        triton, why = load_triton()
        if triton is None:
            missing["triton-fa2"] = why
        else:
            try:
                peers["triton-fa2"] = build_triton_fa2(triton)
            except Exception as e:
                missing["triton-fa2"] = "building the Triton kernel failed: %s" % e
    return peers, missing


def mask_kwargs(causal, bias):
    """SDPA's mask keywords: the bias as attn_mask (it carries the causal mask: -inf past each diagonal),
    else is_causal."""
    return {"attn_mask": bias} if bias is not None else {"is_causal": bool(causal)}


def additive_bias(torch, batch, seq_q, seq_kv, tdtype, device, seed):
    """flashjit bench --attn-bias's bias: [batch, 1, seq_q, seq_kv], random values and -inf past each
    query's diagonal (bottom-right aligned), here in q's dtype."""
    generator = torch.Generator().manual_seed(seed)
    bias = torch.randn(batch, 1, seq_q, seq_kv, generator=generator)
    bias = bias.masked_fill(~causal_visible(torch, seq_q, seq_kv), float("-inf"))
    return bias.to(device=device, dtype=tdtype)


def gqa_kwargs(q, k):
    """SDPA's keyword for k and v with fewer heads than q ([b, s, h, d] inputs): enable_gqa (torch 2.5)."""
    return {"enable_gqa": True} if k.shape[2] != q.shape[2] else {}


def math_reference(torch, q, k, v, causal, bias=None):
    """SDPA's math backend on fp32 copies: the yardstick every peer is checked against."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.MATH]):
        o = F.scaled_dot_product_attention(q.float().transpose(1, 2), k.float().transpose(1, 2),
                                           v.float().transpose(1, 2),
                                           **mask_kwargs(causal, None if bias is None else bias.float()),
                                           **gqa_kwargs(q, k))
    return o.transpose(1, 2)


def judge(case, name, o, ref):
    """Relative norm error of o against ref (in ref's precision), under 2e-2 or not; emits the verdict."""
    err = float((o.to(ref.dtype) - ref).norm() / ref.norm().clamp_min(1e-30))
    ok = math.isfinite(err) and err < 2e-2
    emit(dict(case, kind="check", peer=name, ok=ok, rel_err=err if math.isfinite(err) else None))
    return ok, err


def check_peers(torch, peers, dtypes, head_dims):
    """Runs each peer on small ragged cases per (dtype, head dim) and compares with the math backend by
    relative norm error. Returns ({name: {(dtype, head_dim): why}}, the peers that failed a check): a
    failure or error makes that peer n/a for the points of that dtype and head dim only; a backend
    that says it has no kernel for the case ("No available kernel") is n/a there without failing."""
    na = {name: {} for name in peers}
    failed = set()
    for name in peers:
        fn = getattr(peers[name], "fixed", peers[name])
        for dtype in dtypes:
            for d in head_dims:
                for causal in (False, True):
                    if (dtype, d) in na[name]:
                        continue
                    torch.manual_seed(1234)
                    tdtype = getattr(torch, TORCH_DTYPES[dtype])
                    q, k, v = (torch.randn(2, 300, 4, d, device="cuda", dtype=tdtype) for _ in range(3))
                    case = {"dtype": dtype, "head_dim": d, "causal": causal, "batch": 2, "seqlen": 300, "heads": 4,
                            "scope": "dtype+head_dim"}
                    check_case(torch, name, fn, q, k, v, case, (dtype, d), "", na, failed)
                if name.startswith("sdpa-") and gqa_supported(torch) and (dtype, d) not in na[name]:
                    check_gqa_decode(torch, name, fn, dtype, d, na, failed)
                if name.startswith("sdpa-") and (dtype, d) not in na[name]:
                    check_bias(torch, name, fn, dtype, d, na, failed)
    return na, failed


def gqa_supported(torch):
    return torch_version_at_least(torch, 2, 5)


def check_gqa_decode(torch, name, fn, dtype, d, na, failed):
    """A decode step with KV heads of 2 query heads each (what --grid decode measures), against the math
    backend; a failure makes the peer n/a for GQA points of that dtype and head dim ("gqa" in na's key)."""
    torch.manual_seed(4321)
    tdtype = getattr(torch, TORCH_DTYPES[dtype])
    q = torch.randn(2, 1, 4, d, device="cuda", dtype=tdtype)
    k, v = (torch.randn(2, 300, 2, d, device="cuda", dtype=tdtype) for _ in range(2))
    case = {"dtype": dtype, "head_dim": d, "causal": False, "batch": 2, "seqlen": 1, "seqlen_kv": 300, "heads": 4,
            "kv_heads": 2, "scope": "dtype+head_dim+gqa"}
    check_case(torch, name, fn, q, k, v, case, (dtype, d, "gqa"), "GQA ", na, failed)


def check_bias(torch, name, fn, dtype, d, na, failed):
    """A prefill with bench --attn-bias's bias (more keys than queries), against the math backend; a failure
    makes the peer n/a for biased points of that dtype and head dim ("bias" in na's key). SDPA's flash
    backend has no kernel for a mask: n/a there without failing."""
    torch.manual_seed(2468)
    tdtype = getattr(torch, TORCH_DTYPES[dtype])
    q = torch.randn(2, 100, 4, d, device="cuda", dtype=tdtype)
    k, v = (torch.randn(2, 300, 4, d, device="cuda", dtype=tdtype) for _ in range(2))
    bias = additive_bias(torch, 2, 100, 300, tdtype, "cuda", 2468)
    case = {"dtype": dtype, "head_dim": d, "causal": False, "batch": 2, "seqlen": 100, "seqlen_kv": 300, "heads": 4,
            "attn_bias": True, "scope": "dtype+head_dim+bias"}
    check_case(torch, name, fn, q, k, v, case, (dtype, d, "bias"), "biased ", na, failed, bias)


def check_case(torch, name, fn, q, k, v, case, key, what, na, failed, bias=None):
    """Runs peer name on one check case and judges it against the math backend; on an error or a wrong
    result na[name][key] says why (and the peer joins failed, unless the backend only has no kernel)."""
    dtype, d = case["dtype"], case["head_dim"]
    try:
        o = fn(q, k, v, case["causal"]) if bias is None else fn(q, k, v, case["causal"], bias)
        torch.cuda.synchronize()
    except Exception as e:
        error = first_line(e)
        emit(dict(case, kind="check", peer=name, ok=False, error=error))
        na[name][key] = "fails on %s%s d=%d: %s" % (what, dtype, d, error)
        if "No available kernel" not in str(e):
            failed.add(name)
        return
    ok, err = judge(case, name, o, math_reference(torch, q, k, v, case["causal"], bias))
    if not ok:
        na[name][key] = "failed its %scheck against the math backend on %s d=%d: rel_err %.3g" % (
            what, dtype, d, err)
        failed.add(name)


def time_launches(torch, fn, warmup, repeat):
    """Median and minimum milliseconds of single launches, each between two CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]
    for i in range(repeat):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return statistics.median(times), min(times)


def report(point, name, run):
    """Emits the result of run() -> (median ms, min ms) for peer name at point, or its error."""
    try:
        ms, ms_min = run()
    except Exception as e:
        emit({"kind": "error", "id": point["id"], "peer": name, "error": first_line(e)})
        return
    emit({"kind": "result", "id": point["id"], "peer": name, "ms": ms, "ms_min": ms_min,
          "tflops": flops(point) / (ms * 1e-3) / 1e12})


def cuda_unsupported(torch, point, name):
    """Why peer name cannot run this point on CUDA as flashjit does, or None. The prefill grid's points
    always run; the decode grid's GQA runs on SDPA where torch has enable_gqa."""
    if point["attn_bias"] and not name.startswith("sdpa-"):
        return "the Triton kernel here takes no bias"
    if point["kv_heads"] != point["heads"]:
        if not name.startswith("sdpa-"):
            return "the Triton kernel here takes kv_heads == heads (got %d and %d)" % (point["kv_heads"], point["heads"])
        if not gqa_supported(torch):
            return "torch %s's SDPA has no enable_gqa (2.5 or later) for kv_heads %d < heads %d" % (
                torch.__version__, point["kv_heads"], point["heads"])
    if name.startswith("sdpa-") and point["causal"] and point["seqlen"] != point["seqlen_kv"] and not point["attn_bias"]:
        return "SDPA's is_causal aligns the mask to the top-left corner, flashjit's to the bottom-right"
    return None


def measure(torch, peers, na, points, warmup, repeat):
    for point in points:
        gqa = point["kv_heads"] != point["heads"]
        unsupported = {name: cuda_unsupported(torch, point, name) or na[name].get((point["dtype"], point["head_dim"]))
                       or (na[name].get((point["dtype"], point["head_dim"], "gqa")) if gqa else None)
                       or (na[name].get((point["dtype"], point["head_dim"], "bias")) if point["attn_bias"] else None)
                       for name in peers}
        for name, why in unsupported.items():
            if why:
                emit({"kind": "unavailable", "id": point["id"], "peer": name, "reason": why})
        if all(unsupported.values()):
            continue
        tdtype = getattr(torch, TORCH_DTYPES[point["dtype"]])
        shape_q = (point["batch"], point["seqlen"], point["heads"], point["head_dim"])
        shape_kv = (point["batch"], point["seqlen_kv"], point["kv_heads"], point["head_dim"])
        torch.manual_seed(point["id"])
        q = torch.randn(shape_q, device="cuda", dtype=tdtype)
        k = torch.randn(shape_kv, device="cuda", dtype=tdtype)
        v = torch.randn(shape_kv, device="cuda", dtype=tdtype)
        masked = {}
        if point["attn_bias"]:
            masked["bias"] = additive_bias(torch, point["batch"], point["seqlen"], point["seqlen_kv"], tdtype, "cuda",
                                           point["id"])
        for name, fn in peers.items():
            if unsupported[name]:
                continue
            def run(fn=fn):
                # The first call compiles (Triton) and autotunes; it is not timed.
                fn(q, k, v, point["causal"], **masked)
                torch.cuda.synchronize()
                return time_launches(torch, lambda: fn(q, k, v, point["causal"], **masked), warmup, repeat)
            report(point, name, run)
        del q, k, v, masked


# ---- the CPU peers -----------------------------------------------------------------------------------

CPU_CHUNK_BYTES = 32 << 20  # scores + float32 softmax per chunk of query rows: reused heap, not fresh pages


def cpu_threads(given):
    """flashjit's thread count as the request gives it; 0 or none means one per core, as flashjit's."""
    if isinstance(given, int) and given > 0:
        return given
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def causal_visible(torch, seq_q, seq_kv):
    """[seq_q, seq_kv] bool: row i sees key j when j <= i + seq_kv - seq_q (bottom-right aligned)."""
    rows = torch.arange(seq_q).unsqueeze(1)
    cols = torch.arange(seq_kv).unsqueeze(0)
    return cols <= rows + (seq_kv - seq_q)


def float64_reference(torch, q, k, v, causal, bias=None):
    """o = softmax(q k^T / sqrt(d) + bias + mask) v in float64 for [b, s, h, d] inputs (GQA: k, v with fewer
    heads); a row with no visible key gives 0, as flashjit's."""
    qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))
    group = qd.shape[1] // kd.shape[1]
    kd, vd = kd.repeat_interleave(group, 1), vd.repeat_interleave(group, 1)
    s = qd @ kd.transpose(-1, -2) / math.sqrt(qd.shape[-1])
    if bias is not None:
        s = s + bias.double()
    if causal:
        s = s.masked_fill(~causal_visible(torch, qd.shape[2], kd.shape[2]), float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return (p @ vd).transpose(1, 2)


def eager_attention(torch, q, k, v, causal, bias=None):
    """The attention a PyTorch user writes without SDPA, on [b, s, h, d] inputs in their dtype (bias:
    [b, 1, s, skv], added to the scaled scores). The
    query heads that share a KV head are stacked as rows ([b, kv_heads, group * rows, d]), so K and V
    are never copied per query head; query rows go in chunks that keep the scores under
    CPU_CHUNK_BYTES."""
    batch, seq_q, heads, d = q.shape
    seq_kv, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    kt = k.permute(0, 2, 3, 1)  # [b, hkv, d, skv]
    vt = v.permute(0, 2, 1, 3)  # [b, hkv, skv, d]
    scale = 1.0 / math.sqrt(d)
    visible = causal_visible(torch, seq_q, seq_kv) if causal else None
    out = torch.empty_like(q)
    rows = max(1, min(seq_q, CPU_CHUNK_BYTES // (batch * heads * seq_kv * 8)))
    for r0 in range(0, seq_q, rows):
        c = min(rows, seq_q - r0)
        qc = q[:, r0:r0 + c].reshape(batch, c, kv_heads, group, d).permute(0, 2, 3, 1, 4)
        qc = qc.reshape(batch, kv_heads, group * c, d) * scale  # a copy, never a view of q
        s = torch.matmul(qc, kt)
        if bias is not None:  # the group's query heads share the bias of their rows
            s = s.view(batch, kv_heads, group, c, seq_kv).add_(bias[:, :, None, r0:r0 + c])
            s = s.view(batch, kv_heads, group * c, seq_kv)
        if causal:
            s = s.view(batch, kv_heads, group, c, seq_kv).masked_fill_(~visible[r0:r0 + c], float("-inf"))
            s = s.view(batch, kv_heads, group * c, seq_kv)
        p = torch.softmax(s, dim=-1, dtype=torch.float32)
        if bias is not None or (causal and seq_q > seq_kv):
            p = p.nan_to_num_(0.0)  # the rows that see no key at all
        o = torch.matmul(p.to(q.dtype), vt)
        out[:, r0:r0 + c].view(batch, c, kv_heads, group, d).copy_(
            o.view(batch, kv_heads, group, c, d).permute(0, 3, 1, 2, 4))
    return out


def torch_version_at_least(torch, major, minor):
    try:
        parts = torch.__version__.split("+")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def make_cpu_peers(torch, wanted):
    """{name: fn(q, k, v, causal) -> o} and {name: why} for the CPU peers: torch-sdpa where torch has
    SDPA, else torch-eager."""
    import torch.nn.functional as F
    peers, missing = {}, {}
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    native_gqa = torch_version_at_least(torch, 2, 5)  # enable_gqa=True

    def sdpa(q, k, v, causal, bias=None):
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        kwargs = {}
        if kt.shape[1] != qt.shape[1]:
            if native_gqa:
                kwargs["enable_gqa"] = True
            else:  # the copy an older torch needs, timed as a user pays it
                group = qt.shape[1] // kt.shape[1]
                kt, vt = kt.repeat_interleave(group, 1), vt.repeat_interleave(group, 1)
        if bias is not None:  # it carries the causal mask too (-inf past each diagonal)
            kwargs["attn_mask"] = bias
        elif causal and qt.shape[2] != kt.shape[2]:  # is_causal is top-left aligned: give the mask
            kwargs["attn_mask"] = causal_visible(torch, qt.shape[2], kt.shape[2])
        else:
            kwargs["is_causal"] = bool(causal)
        return F.scaled_dot_product_attention(qt, kt, vt, **kwargs).transpose(1, 2)

    if "torch-sdpa" in wanted:
        if has_sdpa:
            peers["torch-sdpa"] = sdpa
        else:
            missing["torch-sdpa"] = ("torch %s has no scaled_dot_product_attention (2.0 or later): "
                                     "torch-eager is measured instead" % torch.__version__)
    if "torch-eager" in wanted:
        if has_sdpa and "torch-sdpa" in wanted:
            missing["torch-eager"] = ("torch %s has scaled_dot_product_attention: torch-sdpa is measured "
                                      "instead" % torch.__version__)
        else:
            peers["torch-eager"] = lambda q, k, v, causal, bias=None: eager_attention(torch, q, k, v, causal, bias)
    return peers, missing


def cpu_inputs(torch, dtype, shape_q, shape_kv, seed):
    """q, k, v in the dtype, drawn in float32 (some torch versions draw no fp16 on the CPU)."""
    torch.manual_seed(seed)
    tdtype = getattr(torch, TORCH_DTYPES[dtype])
    return (torch.randn(shape_q).to(tdtype), torch.randn(shape_kv).to(tdtype), torch.randn(shape_kv).to(tdtype))


def check_cpu_peers(torch, peers, dtypes, head_dims):
    """Each peer on small ragged cases (GQA, seqlen_kv longer than seqlen too) against the float64
    reference, per dtype. Returns {name: {dtype: why it is n/a}} for the dtypes a peer failed."""
    failed = {name: {} for name in peers}
    cases = ((2, 300, 300, 4, 2), (1, 100, 300, 4, 4))  # batch, seqlen, seqlen_kv, heads, kv_heads
    for name in peers:
        for dtype in dtypes:
            for d in head_dims:
                for batch, seq_q, seq_kv, heads, kv_heads in cases:
                    for causal in (False, True):
                        if dtype in failed[name]:
                            continue
                        case = {"dtype": dtype, "head_dim": d, "causal": causal, "batch": batch, "seqlen": seq_q,
                                "seqlen_kv": seq_kv, "heads": heads, "kv_heads": kv_heads, "scope": "dtype"}
                        q, k, v = cpu_inputs(torch, dtype, (batch, seq_q, heads, d), (batch, seq_kv, kv_heads, d),
                                             1234)
                        try:
                            o = peers[name](q, k, v, causal)
                        except Exception as e:
                            error = first_line(e)
                            emit(dict(case, kind="check", peer=name, ok=False, error=error))
                            failed[name][dtype] = "torch %s on the CPU fails on %s: %s" % (torch.__version__, dtype,
                                                                                          error)
                            continue
                        ok, err = judge(case, name, o, float64_reference(torch, q, k, v, causal))
                        if not ok:
                            failed[name][dtype] = "failed its check against the float64 reference on %s: " \
                                                  "rel_err %.3g" % (dtype, err)
                if dtype not in failed[name]:
                    check_cpu_bias(torch, name, peers[name], dtype, head_dims[0], failed)
    return failed


def check_cpu_bias(torch, name, fn, dtype, d, failed):
    """A GQA prefill with bench --attn-bias's bias (more keys than queries) against the float64 reference;
    a failure makes the peer n/a for that dtype."""
    q, k, v = cpu_inputs(torch, dtype, (2, 100, 4, d), (2, 300, 2, d), 2468)
    bias = additive_bias(torch, 2, 100, 300, q.dtype, "cpu", 2468)
    case = {"dtype": dtype, "head_dim": d, "causal": False, "batch": 2, "seqlen": 100, "seqlen_kv": 300, "heads": 4,
            "kv_heads": 2, "attn_bias": True, "scope": "dtype"}
    try:
        o = fn(q, k, v, False, bias)
    except Exception as e:
        error = first_line(e)
        emit(dict(case, kind="check", peer=name, ok=False, error=error))
        failed[name][dtype] = "torch %s on the CPU fails on %s with a bias: %s" % (torch.__version__, dtype, error)
        return
    ok, err = judge(case, name, o, float64_reference(torch, q, k, v, False, bias))
    if not ok:
        failed[name][dtype] = "failed its biased check against the float64 reference on %s: rel_err %.3g" % (dtype, err)


def time_calls(fn, warmup, repeat):
    """Median and minimum milliseconds of single calls, each between two perf_counter readings."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def measure_cpu(torch, peers, failed, points, warmup, repeat):
    for point in points:
        shape_q = (point["batch"], point["seqlen"], point["heads"], point["head_dim"])
        shape_kv = (point["batch"], point["seqlen_kv"], point["kv_heads"], point["head_dim"])
        q, k, v = cpu_inputs(torch, point["dtype"], shape_q, shape_kv, point["id"])
        masked = {}
        if point["attn_bias"]:
            masked["bias"] = additive_bias(torch, point["batch"], point["seqlen"], point["seqlen_kv"], q.dtype, "cpu",
                                           point["id"])
        for name, fn in peers.items():
            why = failed[name].get(point["dtype"])
            if why:
                emit({"kind": "unavailable", "id": point["id"], "peer": name, "reason": why})
                continue
            def run(fn=fn):
                fn(q, k, v, point["causal"], **masked)  # the first call (allocator, thread pool) is not timed
                return time_calls(lambda: fn(q, k, v, point["causal"], **masked), warmup, repeat)
            report(point, name, run)
        del q, k, v, masked


def blas_library():
    """The BLAS this process loaded, as "openblas-pthread/libopenblasp-r0.3.21.so", or None: torch's
    float32 matmul on the CPU runs in it where torch was built with a generic BLAS (Debian's), and the
    reference BLAS is some 20x slower than OpenBLAS, so a figure without it means little."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "blas" in line or "mkl" in line}
    except OSError:
        return None
    for prefix in ("libmkl", "libopenblas", "libblis", "libblas"):
        for path in sorted(paths):
            if os.path.basename(path).startswith(prefix):
                return "%s/%s" % (os.path.basename(os.path.dirname(path)), os.path.basename(path))
    return None


def run_cpu(torch, wanted, points, threads, warmup, repeat, self_test):
    """The CPU side of main: the peers built, checked and measured on threads threads."""
    torch.set_num_threads(threads)
    blas = blas_library()
    emit({"kind": "info", "torch": torch.__version__, "device": "CPU, %d thread%s%s" % (
        threads, "" if threads == 1 else "s", ", BLAS " + blas if blas else "")})
    peers, missing = make_cpu_peers(torch, wanted)
    for name, reason in missing.items():
        emit({"kind": "unavailable", "peer": name, "reason": reason})
    dtypes = sorted({p["dtype"] for p in points}) or ["bf16", "fp16", "fp32"]
    head_dims = sorted({p["head_dim"] for p in points}) or [64, 128]
    with torch.no_grad():
        failed = check_cpu_peers(torch, peers, dtypes, head_dims)
        if self_test:
            na = ["%s %s" % (n, dtype) for n, f in failed.items() for dtype, why in sorted(f.items())
                  if not why.startswith("failed")]
            wrong = ["%s %s" % (n, dtype) for n, f in failed.items() for dtype, why in sorted(f.items())
                     if why.startswith("failed")]
            print("peers.py self-test: %d CPU peer(s) checked, %s%s" % (
                len(peers), "failed: " + ", ".join(wrong) if wrong else "all within 2e-2",
                "; n/a (no CPU kernel in this torch): " + ", ".join(na) if na else ""), file=sys.stderr)
            return 1 if wrong else 0
        measure_cpu(torch, peers, failed, points, warmup, repeat)
    return 0


# ---- the modes ---------------------------------------------------------------------------------------

def read_request(stream):
    request = json.load(stream)
    if not isinstance(request, dict) or not isinstance(request.get("points"), list):
        raise ValueError("expected an object with a \"points\" array")
    for p in request["points"]:
        for field in ("id", "batch", "heads", "seqlen", "head_dim"):
            if not isinstance(p.get(field), int) or p[field] < (0 if field == "id" else 1):
                raise ValueError("point %r: %s must be a positive integer" % (p, field))
        if p.get("dtype") not in TORCH_DTYPES:
            raise ValueError("point %r: dtype must be one of %s" % (p, ", ".join(TORCH_DTYPES)))
        p.setdefault("seqlen_kv", p["seqlen"])
        p.setdefault("kv_heads", p["heads"])
        for field in ("seqlen_kv", "kv_heads"):
            if not isinstance(p[field], int) or p[field] < 1:
                raise ValueError("point %r: %s must be a positive integer" % (p, field))
        if p["heads"] % p["kv_heads"]:
            raise ValueError("point %r: kv_heads must divide heads" % (p,))
        p["causal"] = bool(p.get("causal", False))
        p["attn_bias"] = bool(p.get("attn_bias", False))
    return request


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true",
                        help="only check the peers against their reference on small cases")
    parser.add_argument("--grid", choices=["prefill"], help="measure this grid instead of reading one on stdin")
    parser.add_argument("--tokens", type=int, default=16384, help="--grid: batch * seqlen (default 16384)")
    parser.add_argument("--width", type=int, default=2048, help="--grid: heads * head_dim (default 2048)")
    parser.add_argument("--device", default=None,
                        help="cuda:N or cpu (default: the request's, else cuda:0)")
    parser.add_argument("--peers", default=None,
                        help="comma list of peers (default: all of the device's: %s on CUDA, %s on the CPU)"
                        % (", ".join(CUDA_PEERS), ", ".join(CPU_PEERS)))
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU: torch threads (default: the request's \"threads\", else one per core)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed launches per point (default 5)")
    parser.add_argument("--repeat", type=int, default=None, help="timed launches per point (default 20)")
    args = parser.parse_args(argv)

    wanted = [p for p in args.peers.split(",") if p] if args.peers is not None else None
    unknown = [p for p in wanted or () if p not in PEERS]
    if unknown:
        parser.error("unknown peer(s) %s (known: %s)" % (", ".join(unknown), ", ".join(PEERS)))

    if args.self_test:
        request = {"points": [], "device": args.device or "cuda:0"}
    elif args.grid:
        request = {"points": prefill_grid(args.tokens, args.width), "device": args.device or "cuda:0"}
    else:
        try:
            request = read_request(sys.stdin)
        except (ValueError, json.JSONDecodeError) as e:
            emit({"kind": "skip", "reason": "bad request on stdin: %s" % e})
            return 2
    if wanted is None and isinstance(request.get("peers"), list):
        # flashjit bench --peer-list: the peers it names, as it checked them
        wanted = [p for p in request["peers"] if p in PEERS]
    device = args.device or request.get("device") or "cuda:0"
    warmup = args.warmup if args.warmup is not None else int(request.get("warmup", 5))
    repeat = args.repeat if args.repeat is not None else int(request.get("repeat", 20))

    torch, why = load_torch(device)
    if torch is None:
        emit({"kind": "skip", "reason": why})
        if args.self_test:
            print("peers.py self-test skipped: %s" % why, file=sys.stderr)
        return 0
    if device_kind(device) == "cpu":
        wanted = list(CPU_PEERS) if wanted is None else wanted
        for name in wanted:
            if name not in CPU_PEERS:
                emit({"kind": "unavailable", "peer": name, "reason": "a CUDA peer; flashjit ran on the CPU"})
        threads = cpu_threads(args.threads if args.threads is not None else request.get("threads"))
        return run_cpu(torch, wanted, request["points"], threads, warmup, repeat, args.self_test)
    if wanted is None:
        wanted = list(CUDA_PEERS)
    for name in [n for n in wanted if n not in CUDA_PEERS]:
        emit({"kind": "unavailable", "peer": name, "reason": "a CPU peer; flashjit ran on %s" % device})
        wanted.remove(name)
    emit({"kind": "info", "torch": torch.__version__, "device": torch.cuda.get_device_name(),
          "capability": "%d.%d" % torch.cuda.get_device_capability()})
    peers, missing = make_peers(torch, wanted)
    for name, reason in missing.items():
        emit({"kind": "unavailable", "peer": name, "reason": reason})

    points = request["points"]
    dtypes = sorted({p["dtype"] for p in points}) or ["fp16", "bf16"]
    head_dims = sorted({p["head_dim"] for p in points}) or [64, 128]
    na, failed = check_peers(torch, peers, dtypes, head_dims)
    if args.self_test:
        print("peers.py self-test: %d peer(s) checked, %s" % (len(peers), "failed: " + ", ".join(sorted(failed))
                                                             if failed else "all within 2e-2"), file=sys.stderr)
        return 1 if failed else 0
    measure(torch, peers, na, points, warmup, repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
