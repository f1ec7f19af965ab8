"""torch_interop.py: flashjit called from a PyTorch process through ctypes, on tensors PyTorch
allocated on cuda:0, as test_torch_interop runs it: python3 torch_interop.py <path to libflashjit.so>.

The tensors cross as DLTensor structs built from data_ptr() and stride() (strides in elements), the
call runs on a PyTorch stream, and o and lse are compared with a float64 reference computed by PyTorch
(and with scaled_dot_product_attention where its causal alignment matches ours). Then the Python
package (python/flashjit, on PYTHONPATH) is called the way an engine would: flashjit.attention on
torch's current stream, a decode step's workspace from torch's allocator, an fp8 cache. Exit 0 when
every case passes, 1 on a failure, 77 when the library has no CUDA kernels to run."""
import ctypes
import math
import os
import sys

import torch

os.environ["FLASHJIT_LIBRARY"] = sys.argv[1]  # the package loads the library under test, not another copy
import flashjit  # noqa: E402
from flashjit._ffi import (AttentionArgs, ContextOptions, DLDataType, DLDevice, DLTensor,  # noqa: E402
                           check_layout, init)

FJ_OK, FJ_UNSUPPORTED = 0, 2
KDL_CUDA = 2
KDL_UINT, KDL_FLOAT, KDL_BFLOAT = 1, 2, 4
KDL_FLOAT8_E4M3FN, KDL_FLOAT8_E5M2 = 10, 12


def dltensor(t, keep):
    """A DLTensor viewing torch tensor t; keep holds the shape/stride arrays alive."""
    shape = (ctypes.c_int64 * t.dim())(*t.shape)
    strides = (ctypes.c_int64 * t.dim())(*t.stride())
    keep += [shape, strides]
    codes = {torch.float16: (KDL_FLOAT, 16), torch.bfloat16: (KDL_BFLOAT, 16), torch.float32: (KDL_FLOAT, 32)}
    if hasattr(torch, "float8_e4m3fn"):   # DLPack 1.1's codes of the fp8 types (an fp8 KV cache)
        codes.update({torch.float8_e4m3fn: (KDL_FLOAT8_E4M3FN, 8), torch.float8_e5m2: (KDL_FLOAT8_E5M2, 8)})
    code, bits = codes[t.dtype]
    return DLTensor(ctypes.c_void_p(t.data_ptr()), DLDevice(KDL_CUDA, t.device.index or 0), t.dim(),
                    DLDataType(code, bits, 1), shape, strides, 0)


def reference(q, k, v, causal, scale):
    """float64 o [b, sq, h, d] and lse [b, h, sq] with bottom-right causal alignment; rows with no
    visible key give 0 and -inf."""
    b, sq, h, d = q.shape
    skv, hk = k.shape[1], k.shape[2]
    qd, kd, vd = (x.double().transpose(1, 2) for x in (q, k, v))   # [b, h, s, d]
    kd = kd.repeat_interleave(h // hk, dim=1)
    vd = vd.repeat_interleave(h // hk, dim=1)
    s = (qd @ kd.transpose(-1, -2)) * scale
    if causal:
        i = torch.arange(sq, device=q.device)[:, None]
        j = torch.arange(skv, device=q.device)[None, :]
        s = s.masked_fill(j > i + skv - sq, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)                                  # -inf on empty rows
    p = torch.exp(s - lse[..., None].masked_fill(torch.isinf(lse)[..., None], 0.0))
    p = torch.nan_to_num(p, nan=0.0)
    o = (p @ vd).transpose(1, 2)                                      # [b, sq, h, d]
    return o, lse


def rel_err(x, ref):
    x, ref = x.double(), ref.double()
    if not torch.isfinite(x).all():
        return math.inf
    return (x - ref).norm().item() / max(ref.norm().item(), 1e-30)


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.fj_last_error.restype = ctypes.c_char_p
    lib.fj_status_string.restype = ctypes.c_char_p
    lib.fj_context_create.argtypes = [ctypes.POINTER(ContextOptions), ctypes.POINTER(ctypes.c_void_p)]
    lib.fj_context_destroy.argtypes = [ctypes.c_void_p]
    lib.fj_attention_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(AttentionArgs)]
    lib.fj_attention_workspace_size.argtypes = [ctypes.c_void_p, ctypes.POINTER(AttentionArgs),
                                                ctypes.POINTER(ctypes.c_size_t)]

    torch.manual_seed(int.from_bytes(__import__("os").urandom(4), "little"))
    dev = torch.device("cuda:0")
    torch.zeros(1, device=dev)   # PyTorch's primary context is now current on this thread

    problem = check_layout(lib)
    if problem:
        print("FAIL", problem)
        return 1
    options = init(lib, "fj_context_options", ContextOptions)
    options.device = b"cuda:0"
    options.disable_disk_cache = 1
    ctx = ctypes.c_void_p()
    status = lib.fj_context_create(ctypes.byref(options), ctypes.byref(ctx))
    if status != FJ_OK:
        print("FAIL fj_context_create(cuda:0):", lib.fj_last_error().decode())
        return 1

    failures = 0
    stream = torch.cuda.Stream(device=dev)
    # name, dtype, b, sq, skv, h, hk, d, causal, layout
    cases = [
        ("bf16 gqa causal", torch.bfloat16, 2, 300, 300, 8, 2, 128, 1, "plain"),
        ("fp16 mha", torch.float16, 1, 257, 257, 4, 4, 64, 0, "plain"),
        ("fp16 packed qkv causal", torch.float16, 2, 200, 200, 4, 4, 64, 1, "packed"),
        ("bf16 bhsd transposed", torch.bfloat16, 1, 130, 130, 8, 8, 128, 0, "transposed"),
        ("fp16 sq<skv causal", torch.float16, 1, 7, 1000, 4, 1, 64, 1, "plain"),
        ("bf16 sq>skv causal (masked rows)", torch.bfloat16, 1, 100, 40, 2, 2, 96, 1, "plain"),
        # a decode step given the workspace it asks for, from PyTorch's allocator: split-KV
        ("bf16 decode split-KV", torch.bfloat16, 2, 1, 4000, 32, 8, 128, 1, "plain"),
        # DeepSeek's MLA prefill: q and k of 192, v of 128 sliced out of a projection beside k's part (a
        # row stride of 256), o of 128
        ("bf16 mla prefill causal (v 128 of a split projection)", torch.bfloat16, 2, 300, 300, 8, 8, 192, 1, "mla"),
    ]
    if hasattr(torch, "float8_e4m3fn"):
        # an fp8 KV cache made by PyTorch (vLLM's kv_cache_dtype="fp8"), read with k_scale and v_scale
        cases += [("bf16 q, fp8_e4m3 cache, causal", torch.bfloat16, 2, 200, 300, 8, 2, 128, 1, "fp8_e4m3"),
                  ("fp16 q, fp8_e5m2 cache, decode", torch.float16, 2, 1, 2000, 32, 8, 128, 1, "fp8_e5m2")]
    else:
        print("skip: this PyTorch has no float8 dtypes (the fp8 cache cases)")
    for name, dtype, b, sq, skv, h, hk, d, causal, layout in cases:
        k_scale = v_scale = 1.0
        if layout.startswith("fp8"):
            q = torch.randn(b, sq, h, d, device=dev, dtype=dtype)
            fp8 = torch.float8_e4m3fn if layout == "fp8_e4m3" else torch.float8_e5m2
            k_scale, v_scale = 0.5, 2.0
            k = (torch.randn(b, skv, hk, d, device=dev) / k_scale).to(fp8)
            v = (torch.randn(b, skv, hk, d, device=dev) / v_scale).to(fp8)
        elif layout == "mla":
            q = torch.randn(b, sq, h, d, device=dev, dtype=dtype)
            k = torch.randn(b, skv, hk, d, device=dev, dtype=dtype)
            v = torch.randn(b, skv, hk, 256, device=dev, dtype=dtype)[..., 128:]
        elif layout == "packed":
            qkv = torch.randn(b, sq, h + 2 * hk, d, device=dev, dtype=dtype)
            q, k, v = qkv[:, :, :h], qkv[:, :, h:h + hk], qkv[:, :, h + hk:]
        elif layout == "transposed":
            q = torch.randn(b, h, sq, d, device=dev, dtype=dtype).transpose(1, 2)
            k = torch.randn(b, hk, skv, d, device=dev, dtype=dtype).transpose(1, 2)
            v = torch.randn(b, hk, skv, d, device=dev, dtype=dtype).transpose(1, 2)
        else:
            q = torch.randn(b, sq, h, d, device=dev, dtype=dtype)
            k = torch.randn(b, skv, hk, d, device=dev, dtype=dtype)
            v = torch.randn(b, skv, hk, d, device=dev, dtype=dtype)
        o = torch.full((b, sq, h, v.shape[3]), float("nan"), device=dev, dtype=dtype)
        lse = torch.full((b, h, sq), float("nan"), device=dev, dtype=torch.float32)
        keep = []
        tq, tk, tv, to, tl = (dltensor(x, keep) for x in (q, k, v, o, lse))
        args = init(lib, "fj_attention_args", AttentionArgs)
        args.q, args.k, args.v = ctypes.pointer(tq), ctypes.pointer(tk), ctypes.pointer(tv)
        args.o, args.lse = ctypes.pointer(to), ctypes.pointer(tl)
        args.causal = causal
        args.k_scale, args.v_scale = k_scale, v_scale
        # The inputs were written on the current stream; the call runs on ours.
        stream.wait_stream(torch.cuda.current_stream(dev))
        args.stream = ctypes.c_void_p(stream.cuda_stream)
        if "split-KV" in name:
            need = ctypes.c_size_t(0)
            status = lib.fj_attention_workspace_size(ctx, ctypes.byref(args), ctypes.byref(need))
            if status != FJ_OK or need.value == 0:
                print("FAIL %s: fj_attention_workspace_size: %d bytes, %s" % (name, need.value,
                                                                          lib.fj_last_error().decode()))
                failures += 1
                continue
            work = torch.empty(need.value, device=dev, dtype=torch.uint8)
            shape = (ctypes.c_int64 * 1)(need.value)
            keep += [work, shape]
            tw = DLTensor(ctypes.c_void_p(work.data_ptr()), DLDevice(KDL_CUDA, dev.index or 0), 1,
                          DLDataType(KDL_UINT, 8, 1), shape, None, 0)
            keep.append(tw)
            args.workspace = ctypes.pointer(tw)
            name += " (%d bytes)" % need.value
        status = lib.fj_attention_forward(ctx, ctypes.byref(args))
        if status == FJ_UNSUPPORTED and b"no attention kernel family" in lib.fj_last_error():
            print("skipped:", lib.fj_last_error().decode())
            lib.fj_context_destroy(ctx)
            return 77
        if status != FJ_OK:
            print("FAIL %s: %s: %s" % (name, lib.fj_status_string(status).decode(),
                                       lib.fj_last_error().decode()))
            failures += 1
            continue
        stream.synchronize()
        scale = 1.0 / math.sqrt(d)
        ref_o, ref_lse = reference(q, k.double() * k_scale, v.double() * v_scale, causal, scale)
        err_o = rel_err(o, ref_o)
        finite = torch.isfinite(ref_lse)
        lse_ok = bool(torch.equal(torch.isinf(lse) & (lse < 0), ~finite))
        err_lse = rel_err(lse[finite], ref_lse[finite]) if finite.any() else 0.0
        line = "%s: err_o=%.2e err_lse=%.2e" % (name, err_o, err_lse)
        if (sq == skv or not causal) and not layout.startswith("fp8") and layout != "mla":
            sdpa = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(h // hk, dim=1),
                v.transpose(1, 2).repeat_interleave(h // hk, dim=1), is_causal=bool(causal)).transpose(1, 2)
            err_sdpa = rel_err(o, sdpa)
            line += " vs sdpa %.2e" % err_sdpa
        else:
            err_sdpa = 0.0
        ok = err_o < 1e-2 and err_lse < 1e-3 and lse_ok and err_sdpa < 2e-2
        print(("ok   " if ok else "FAIL ") + line + ("" if lse_ok else " LSE -inf ROWS WRONG"))
        failures += 0 if ok else 1
    lib.fj_context_destroy(ctx)
    failures += package_cases(dev)
    failures += merge_case(dev)
    failures += graph_case(dev)
    print("%d failed" % failures)
    return 1 if failures else 0


def package_cases(dev):
    """flashjit.attention on PyTorch's tensors: o and lse made by torch, the launch on torch's current
    stream (the default one, then a side stream), a decode step that asks for its workspace, an fp8
    cache. Returns the number of failures."""
    failures = 0
    side = torch.cuda.Stream(device=dev)
    cases = [("package: bf16 gqa causal, lse", torch.bfloat16, 2, 300, 300, 8, 2, 128, None),
             ("package: fp16 on a side stream", torch.float16, 1, 257, 257, 4, 4, 64, side),
             ("package: bf16 decode (workspace from torch)", torch.bfloat16, 2, 1, 4000, 32, 8, 128, None)]
    if hasattr(torch, "float8_e4m3fn"):
        cases.append(("package: bf16 q, fp8_e4m3 cache", torch.bfloat16, 2, 1, 2000, 32, 8, 128, None))
    for name, dtype, b, sq, skv, h, hk, d, stream in cases:
        q = torch.randn(b, sq, h, d, device=dev, dtype=dtype)
        k = torch.randn(b, skv, hk, d, device=dev, dtype=dtype)
        v = torch.randn(b, skv, hk, d, device=dev, dtype=dtype)
        scales = {}
        if "fp8" in name:
            k, v = (k / 0.5).to(torch.float8_e4m3fn), (v / 2.0).to(torch.float8_e4m3fn)
            scales = {"k_scale": 0.5, "v_scale": 2.0}
        try:
            if stream is not None:
                stream.wait_stream(torch.cuda.current_stream(dev))
                with torch.cuda.stream(stream):
                    o, lse = flashjit.attention(q, k, v, causal=True, return_lse=True, **scales)
                stream.synchronize()
            else:
                o, lse = flashjit.attention(q, k, v, causal=True, return_lse=True, **scales)
                torch.cuda.synchronize(dev)
        except flashjit.Error as error:
            print("FAIL %s: %s" % (name, error))
            failures += 1
            continue
        ref_o, ref_lse = reference(q, k.double() * scales.get("k_scale", 1.0), v.double() * scales.get("v_scale", 1.0),
                                   1, 1.0 / math.sqrt(d))
        finite = torch.isfinite(ref_lse)
        err_o, err_lse = rel_err(o, ref_o), rel_err(lse[finite], ref_lse[finite])
        ok = o.dtype == dtype and o.shape == q.shape and err_o < 1e-2 and err_lse < 1e-3
        print(("ok   " if ok else "FAIL ") + "%s: err_o=%.2e err_lse=%.2e" % (name, err_o, err_lse))
        failures += 0 if ok else 1
    return failures


def merge_case(dev):
    """flashjit.merge on the GPU (its merge kernel): causal attention over 3000 keys split at 1800, each part
    with its LSE, merged in place, against the float64 reference over all keys. Returns the failures."""
    b, sq, skv, h, d, split = 2, 200, 3000, 8, 128, 1800
    q = torch.randn(b, sq, h, d, device=dev, dtype=torch.bfloat16)
    k = torch.randn(b, skv, h, d, device=dev, dtype=torch.bfloat16)
    v = torch.randn(b, skv, h, d, device=dev, dtype=torch.bfloat16)
    try:
        o_a, lse_a = flashjit.attention(q, k[:, :split], v[:, :split], return_lse=True)
        o_b, lse_b = flashjit.attention(q, k[:, split:], v[:, split:], causal=True, return_lse=True)
        o, lse = flashjit.merge(o_a, lse_a, o_b, lse_b, out=o_a, lse=lse_a)
        torch.cuda.synchronize(dev)
    except flashjit.Error as error:
        print("FAIL merge on the GPU: %s" % error)
        return 1
    ref_o, ref_lse = reference(q, k.double(), v.double(), 1, 1.0 / math.sqrt(d))
    err_o, err_lse = rel_err(o, ref_o), rel_err(lse, ref_lse)
    ok = o is o_a and err_o < 1e-2 and err_lse < 1e-3
    print(("ok   " if ok else "FAIL ") + "merge on the GPU: halves of a causal cache, in place: err_o=%.2e err_lse=%.2e"
          % (err_o, err_lse))
    return 0 if ok else 1


def graph_case(dev):
    """An engine's decode step captured into a CUDA graph (torch.cuda.graph, the driver's default global
    capture mode) with everything of flashjit's first done inside the capture: a new context, the
    kernel's compile and module load, the workspace from torch's graph pool. Then replays with new
    queries and new per-sequence key counts, which the kernel reads from the same memory each time.
    Returns the number of failures."""
    import tempfile
    b, h, hk, d, skv = 4, 32, 8, 128, 3000
    q = torch.randn(b, 1, h, d, device=dev, dtype=torch.bfloat16)
    k = torch.randn(b, skv, hk, d, device=dev, dtype=torch.bfloat16)
    v = torch.randn(b, skv, hk, d, device=dev, dtype=torch.bfloat16)
    lens = torch.full((b,), skv, device=dev, dtype=torch.int32)
    o = torch.empty_like(q)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream(device=dev)
    stream.wait_stream(torch.cuda.current_stream(dev))
    with tempfile.TemporaryDirectory() as cache_dir:
        try:
            with torch.cuda.graph(graph, stream=stream):
                context = flashjit.Context("cuda:%d" % (dev.index or 0), cache_dir=cache_dir)
                context.attention(q, k, v, causal=True, seqlens_kv=lens, out=o)
        except (flashjit.Error, RuntimeError) as error:
            print("FAIL graph: a decode step captured with its first call inside the capture: %s" % error)
            return 1
        failures = 0
        for counts in ([3000, 1, 1500, 2999], [17, 2048, 0, 3000]):
            q.copy_(torch.randn_like(q))
            lens.copy_(torch.tensor(counts, dtype=torch.int32))
            graph.replay()
            torch.cuda.synchronize(dev)
            worst = 0.0
            for i, n in enumerate(counts):
                if n == 0:
                    worst = max(worst, math.inf if o[i].abs().max().item() != 0 else 0.0)
                    continue
                ref_o, _ = reference(q[i:i + 1], k[i:i + 1, :n], v[i:i + 1, :n], 1, 1.0 / math.sqrt(d))
                worst = max(worst, rel_err(o[i:i + 1], ref_o))
            ok = worst < 1e-2
            print(("ok   " if ok else "FAIL ") + "graph: replay with key counts %s: worst err_o=%.2e" % (counts, worst))
            failures += 0 if ok else 1
        graph.reset()  # the graph holds the context's kernel: gone before the context is
        context.close()
    return failures


if __name__ == "__main__":
    sys.exit(main())
