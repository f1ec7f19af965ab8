#!/usr/bin/env python3
"""peers.py: the attention implementations flashjit is compared with, measured on one CUDA device.

`flashjit bench --grid prefill --peers` runs this script with the grid as one JSON object on stdin and
reads one JSON object per line back; it also runs by hand (`--grid prefill` builds the same grid here,
`--self-test` only checks the peers against PyTorch's math backend). The peers:

  sdpa-flash      torch.nn.functional.scaled_dot_product_attention, FLASH_ATTENTION backend forced
  sdpa-cudnn      the same, CUDNN_ATTENTION backend
  sdpa-efficient  the same, EFFICIENT_ATTENTION (memory-efficient) backend
  triton-fa2      a FlashAttention-2 forward written below in Triton, autotuned

Inputs are [batch, seqlen, heads, head_dim] as flashjit takes them; SDPA gets the [b, h, s, d] views
(transpose(1, 2), last dimension still contiguous), the Triton kernel reads the [b, s, h, d] strides
directly. Each launch is timed on the device with CUDA events (warmup first, then the median and the
minimum of the timed runs), as flashjit times its own kernels.

FLOP convention (the same in flashjit's table): 4 * batch * heads * seqlen_q * seqlen_kv * head_dim per
forward, halved when causal (the FlashAttention papers' convention; the exact count of visible pairs
would be (s + 1) / (2 s) of the full one, about the same for these lengths).

Without torch, Triton or a GPU every mode prints one {"kind": "skip", "reason": ...} line and exits 0,
so the command can say "n/a" and why.
"""

import argparse
import json
import math
import statistics
import sys

PEERS = ("sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "triton-fa2")
GRID_SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)


def emit(obj):
    """One JSON object per line on stdout, flushed so the reader sees progress as it happens."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def log(message):
    sys.stderr.write("peers: " + message + "\n")
    sys.stderr.flush()


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
                                   "seqlen": s, "seqlen_kv": s, "head_dim": d, "causal": causal})
    return points


# ---- the environment --------------------------------------------------------------------------------

def load_torch(device):
    """(torch, None) when torch and a CUDA device are usable, else (None, why)."""
    if not device.startswith("cuda"):
        return None, "peers are measured on CUDA devices only (flashjit ran on %s)" % device
    try:
        import torch  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return None, "python3 cannot import torch (%s)" % e.__class__.__name__ + (": %s" % e if str(e) else "")
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
    """The kernel is defined inside a function so that the module imports without Triton."""
    import triton.language as tl

    def prune(configs, named_args, **kwargs):
        # K and V tiles of every pipeline stage plus the Q tile must fit in shared memory (about 227 KB
        # on an H100); configs past that would only fail to compile.
        head_dim = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM") if isinstance(named_args, dict) else None)
        if head_dim is None:
            return configs
        kept = []
        for c in configs:
            bm, bn = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]
            smem = c.num_stages * 2 * bn * head_dim * 2 + bm * head_dim * 2
            if smem <= 200 * 1024:
                kept.append(c)
        return kept or configs

    # The autotuner's cache key also holds the tensors' dtypes, so fp16 and bf16 are tuned apart.
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
               for bm in (64, 128) for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4)]

    @triton.autotune(configs=configs, key=["SEQ_Q", "SEQ_KV", "HEAD_DIM", "CAUSAL"],
                     prune_configs_by={"early_config_prune": prune})
    @triton.jit
    def fa2_fwd(Q, K, V, O, scale_log2,
                stride_qb, stride_qs, stride_qh, stride_qd,
                stride_kb, stride_ks, stride_kh, stride_kd,
                stride_vb, stride_vs, stride_vh, stride_vd,
                stride_ob, stride_os, stride_oh, stride_od,
                H, SEQ_Q, SEQ_KV,
                HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        # One program: BLOCK_M query rows of one (batch, head). FA2's loop order: Q stays in registers,
        # K/V tiles stream past it, and the softmax is kept online (running max m, running sum l,
        # unnormalised accumulator), rescaled whenever the max grows, normalised once at the end.
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = pid_bh // H
        h = pid_bh % H
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd,
                    mask=offs_m[:, None] < SEQ_Q, other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        k_base = K + b * stride_kb + h * stride_kh
        v_base = V + b * stride_vb + h * stride_vh
        # Causal (aligned to the bottom-right corner, as flashjit's; the same as top-left when
        # SEQ_Q == SEQ_KV): row i sees keys j <= i + SEQ_KV - SEQ_Q, so the K/V blocks past the last
        # row's limit are skipped outright instead of being masked.
        if CAUSAL:
            hi = tl.minimum((pid_m + 1) * BLOCK_M + SEQ_KV - SEQ_Q, SEQ_KV)
        else:
            hi = SEQ_KV
        for start_n in range(0, hi, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            cols = start_n + offs_n
            k = tl.load(k_base + cols[None, :] * stride_ks + offs_d[:, None] * stride_kd,
                        mask=cols[None, :] < SEQ_KV, other=0.0)
            # Base-2 softmax with the scale folded in: exp(x * scale) = exp2(x * scale * log2(e)).
            s = tl.dot(q, k) * scale_log2
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
            v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                        mask=cols[:, None] < SEQ_KV, other=0.0)
            acc = acc * alpha[:, None]
            acc = tl.dot(p.to(v.dtype), v, acc=acc)
            m_i = m_new
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # fully masked rows give 0, not NaN
        acc = acc / l_safe[:, None]
        tl.store(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :] * stride_od,
                 acc.to(O.dtype.element_ty), mask=offs_m[:, None] < SEQ_Q)

    def run(q, k, v, causal):
        """q, k, v: [b, s, h, d]; returns o like q."""
        batch, seq_q, heads, d = q.shape
        seq_kv = k.shape[1]
        o = q.new_empty(q.shape)
        scale_log2 = (1.0 / math.sqrt(d)) * 1.4426950408889634
        grid = lambda meta: (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads)  # noqa: E731
        fa2_fwd[grid](q, k, v, o, scale_log2,
                      q.stride(0), q.stride(1), q.stride(2), q.stride(3),
                      k.stride(0), k.stride(1), k.stride(2), k.stride(3),
                      v.stride(0), v.stride(1), v.stride(2), v.stride(3),
                      o.stride(0), o.stride(1), o.stride(2), o.stride(3),
                      heads, seq_q, seq_kv,
                      HEAD_DIM=d, CAUSAL=bool(causal))
        return o

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
        def fn(q, k, v, causal):
            with sdpa_kernel([backend]):
                o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                   is_causal=bool(causal))
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


def math_reference(torch, q, k, v, causal):
    """SDPA's math backend on fp32 copies: the yardstick every peer is checked against."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.MATH]):
        o = F.scaled_dot_product_attention(q.float().transpose(1, 2), k.float().transpose(1, 2),
                                           v.float().transpose(1, 2), is_causal=bool(causal))
    return o.transpose(1, 2)


def check_peers(torch, peers, dtypes, head_dims):
    """Runs each peer on small ragged cases and compares with the math backend by relative norm error;
    a peer that fails or errors is dropped (reported with the reason). Returns the peers kept."""
    kept = dict(peers)
    for name in list(peers):
        for dtype in dtypes:
            for d in head_dims:
                for causal in (False, True):
                    if name not in kept:
                        continue
                    torch.manual_seed(1234)
                    tdtype = getattr(torch, TORCH_DTYPES[dtype])
                    q, k, v = (torch.randn(2, 300, 4, d, device="cuda", dtype=tdtype) for _ in range(3))
                    case = {"dtype": dtype, "head_dim": d, "causal": causal, "batch": 2, "seqlen": 300, "heads": 4}
                    try:
                        o = peers[name](q, k, v, causal)
                        torch.cuda.synchronize()
                    except Exception as e:
                        emit(dict(case, kind="check", peer=name, ok=False, error=str(e).splitlines()[0][:300]))
                        del kept[name]
                        continue
                    ref = math_reference(torch, q, k, v, causal)
                    err = float((o.float() - ref).norm() / ref.norm().clamp_min(1e-30))
                    ok = math.isfinite(err) and err < 2e-2
                    emit(dict(case, kind="check", peer=name, ok=ok, rel_err=err))
                    if not ok:
                        del kept[name]
    return kept


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


def measure(torch, peers, points, warmup, repeat):
    for point in points:
        tdtype = getattr(torch, TORCH_DTYPES[point["dtype"]])
        shape_q = (point["batch"], point["seqlen"], point["heads"], point["head_dim"])
        shape_kv = (point["batch"], point["seqlen_kv"], point["heads"], point["head_dim"])
        torch.manual_seed(point["id"])
        q = torch.randn(shape_q, device="cuda", dtype=tdtype)
        k = torch.randn(shape_kv, device="cuda", dtype=tdtype)
        v = torch.randn(shape_kv, device="cuda", dtype=tdtype)
        for name, fn in peers.items():
            try:
                # The first call compiles (Triton) and autotunes; it is not timed.
                fn(q, k, v, point["causal"])
                torch.cuda.synchronize()
                ms, ms_min = time_launches(torch, lambda: fn(q, k, v, point["causal"]), warmup, repeat)
            except Exception as e:
                emit({"kind": "error", "id": point["id"], "peer": name, "error": str(e).splitlines()[0][:300]})
                continue
            emit({"kind": "result", "id": point["id"], "peer": name, "ms": ms, "ms_min": ms_min,
                  "tflops": flops(point) / (ms * 1e-3) / 1e12})
        del q, k, v


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
        p["causal"] = bool(p.get("causal", False))
    return request


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true",
                        help="only check the peers against the math backend on small cases")
    parser.add_argument("--grid", choices=["prefill"], help="measure this grid instead of reading one on stdin")
    parser.add_argument("--tokens", type=int, default=16384, help="--grid: batch * seqlen (default 16384)")
    parser.add_argument("--width", type=int, default=2048, help="--grid: heads * head_dim (default 2048)")
    parser.add_argument("--device", default=None, help="the CUDA device (default: the request's, else cuda:0)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma list of peers (default: all)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed launches per point (default 5)")
    parser.add_argument("--repeat", type=int, default=None, help="timed launches per point (default 20)")
    args = parser.parse_args(argv)

    wanted = [p for p in args.peers.split(",") if p]
    unknown = [p for p in wanted if p not in PEERS]
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
    device = args.device or request.get("device") or "cuda:0"
    warmup = args.warmup if args.warmup is not None else int(request.get("warmup", 5))
    repeat = args.repeat if args.repeat is not None else int(request.get("repeat", 20))

    torch, why = load_torch(device)
    if torch is None:
        emit({"kind": "skip", "reason": why})
        if args.self_test:
            print("peers.py self-test skipped: %s" % why, file=sys.stderr)
        return 0
    emit({"kind": "info", "torch": torch.__version__, "device": torch.cuda.get_device_name(),
          "capability": "%d.%d" % torch.cuda.get_device_capability()})
    peers, missing = make_peers(torch, wanted)
    for name, reason in missing.items():
        emit({"kind": "unavailable", "peer": name, "reason": reason})

    points = request["points"]
    dtypes = sorted({p["dtype"] for p in points}) or ["fp16", "bf16"]
    head_dims = sorted({p["head_dim"] for p in points}) or [64, 128]
    peers = check_peers(torch, peers, dtypes, head_dims)
    if args.self_test:
        failed = [n for n in wanted if n not in peers and n not in missing]
        print("peers.py self-test: %d peer(s) checked, %s" % (len(peers), "failed: " + ", ".join(failed)
                                                             if failed else "all within 2e-2"), file=sys.stderr)
        return 1 if failed else 0
    measure(torch, peers, points, warmup, repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
