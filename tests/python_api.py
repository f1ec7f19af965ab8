"""python_api.py: the Python package (python/flashjit) on the CPU, as test_python_api runs it with the
build's python/ folder on PYTHONPATH: flashjit.attention on numpy arrays (and on PyTorch's CPU tensors
where torch imports) against a float64 reference written here in numpy, every keyword of the call at
least once, and the errors a caller gets for bad arguments; where FLASHJIT_CUDA_LIBRARY names the fake
CUDA driver (tests/fake_cuda), the GPU glue too (device, stream, refusals; no kernel runs there). Exit 0
when every check passes, 1 naming those that failed."""
import ctypes
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np

import flashjit

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def reference(q, k, v, causal=False, scale=None, window=None, lens=None, sinks=None, softcap=0.0, alibi=None,
              bias=None):
    """float64 o [b, sq, h, dv] and lse [b, h, sq]: the header's definitions, one score at a time in
    vectors (bottom-right aligned masks; a row with no key gives 0 and lse -inf, or sinks[h])."""
    b, sq, h, d = q.shape
    skv_all, hk, dv = k.shape[1], k.shape[2], v.shape[3]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    o = np.zeros((b, sq, h, dv))
    lse = np.full((b, h, sq), -np.inf)
    for bi in range(b):
        skv = skv_all if lens is None else int(lens[bi])
        for hi in range(h):
            kh = hi // (h // hk)
            s = scale * (q[bi, :, hi].astype(np.float64) @ k[bi, :skv, kh].astype(np.float64).T)  # [sq, skv]
            if softcap > 0.0:
                s = softcap * np.tanh(s / softcap)
            i = np.arange(sq)[:, None] + skv - sq
            j = np.arange(skv)[None, :]
            if alibi is not None:
                s = s - alibi[hi] * np.abs(i - j)
            if bias is not None:  # any shape that broadcasts to [b, h, sq, skv]
                s = s + np.broadcast_to(bias, (b, h, sq, skv_all))[bi, hi, :, :skv].astype(np.float64)
            keep = np.ones_like(s, dtype=bool)
            if causal:
                keep &= j <= i
            if window is not None:
                if window[0] >= 0:
                    keep &= j >= i - window[0]
                if window[1] >= 0:
                    keep &= j <= i + window[1]
            s = np.where(keep, s, -np.inf)
            terms = [s] + ([np.full((sq, 1), float(sinks[hi]))] if sinks is not None else [])
            full = np.concatenate(terms, axis=1) if terms[1:] else s
            m = np.max(full, axis=1, initial=-np.inf)
            base = np.where(np.isfinite(m), m, 0.0)
            total = np.exp(full - base[:, None]).sum(axis=1)
            with np.errstate(divide="ignore"):
                lse[bi, hi] = np.where(total > 0, base + np.log(total), -np.inf)
            p = np.exp(s - base[:, None]) / np.where(total > 0, total, 1.0)[:, None]
            o[bi, :, hi] = p @ v[bi, :skv, kh].astype(np.float64)
    return o, lse


def rel_err(x, ref):
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        return math.inf
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30))


def lse_err(x, ref):
    same_inf = np.array_equal(np.isneginf(x), np.isneginf(ref))
    finite = np.isfinite(ref)
    return rel_err(x[finite], ref[finite]) if same_inf else math.inf


def files_under(folder):
    return sorted(os.path.join(where, name) for where, _, names in os.walk(folder) for name in names)


rng = np.random.default_rng()


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def expect_error(kind, needle, call, what):
    try:
        call()
    except kind as error:
        check(needle in str(error), "%s: %s (%s)" % (what, type(error).__name__, error))
        return error
    except Exception as error:  # a wrong kind of error fails too
        check(False, "%s: expected %s, got %s: %s" % (what, kind.__name__, type(error).__name__, error))
        return None
    check(False, "%s: expected %s, nothing raised" % (what, kind.__name__))
    return None


def main():
    print("flashjit", flashjit.version())
    tol = {np.float32: 1e-4, np.float16: 1e-2}

    # GQA, causal with fewer queries than keys, the LSE; o and lse made by the package.
    q, k, v = randn(2, 37, 8, 64), randn(2, 70, 2, 64), randn(2, 70, 2, 64)
    o, lse = flashjit.attention(q, k, v, causal=True, return_lse=True)
    ref_o, ref_lse = reference(q, k, v, causal=True)
    check(o.shape == (2, 37, 8, 64) and o.dtype == np.float32 and lse.shape == (2, 8, 37) and lse.dtype == np.float32,
          "fp32 gqa causal: o %s %s, lse %s %s" % (o.shape, o.dtype, lse.shape, lse.dtype))
    check(rel_err(o, ref_o) < tol[np.float32] and lse_err(lse, ref_lse) < 1e-5,
          "fp32 gqa causal sq<skv: err_o %.2e err_lse %.2e" % (rel_err(o, ref_o), lse_err(lse, ref_lse)))

    # fp16 in [b, h, s, d] storage seen as [b, s, h, d] (strides), not causal, a scale of its own, into out=.
    qt, kt, vt = (randn(1, 4, s, 80, dtype=np.float16) for s in (50, 61, 61))
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (qt, kt, vt))
    out = np.full((1, 50, 4, 80), np.nan, dtype=np.float16)
    got = flashjit.attention(q, k, v, softmax_scale=0.07, out=out)
    ref_o, _ = reference(q, k, v, scale=0.07)
    check(got is out and rel_err(out, ref_o) < tol[np.float16],
          "fp16 strided views, scale 0.07, out=: err %.2e" % rel_err(out, ref_o))

    # A KV cache filled to per-sequence lengths, seen through a window, with sinks, a soft cap and ALiBi.
    q, k, v = randn(3, 5, 4, 32), randn(3, 90, 4, 32), randn(3, 90, 4, 32)
    lens = np.array([90, 41, 0], dtype=np.int32)
    sinks = randn(4)
    slopes = np.array([0.5, 0.25, 0.125, 0.0625], dtype=np.float32)
    o, lse = flashjit.attention(q, k, v, causal=True, window=(20, -1), seqlens_kv=lens, sinks=sinks,
                                softcap=5.0, alibi_slopes=slopes, return_lse=True)
    ref_o, ref_lse = reference(q, k, v, causal=True, window=(20, -1), lens=lens, sinks=sinks, softcap=5.0,
                               alibi=slopes)
    check(rel_err(o, ref_o) < tol[np.float32] and lse_err(lse, ref_lse) < 1e-5,
          "seqlens_kv (one empty) + window + sinks + softcap + alibi: err_o %.2e err_lse %.2e"
          % (rel_err(o, ref_o), lse_err(lse, ref_lse)))

    # attn_mask as scaled_dot_product_attention takes it: a bool [seqlen_q, seqlen_kv] mask (True: seen)
    # beside causal, where query 1 sees no key (0, lse -inf); a float bias of q's dtype per sequence and
    # query; a bad shape is refused by name.
    q, k, v = randn(2, 6, 4, 32), randn(2, 9, 2, 32), randn(2, 9, 2, 32)
    mask = rng.random((6, 9)) > 0.4
    mask[1] = False
    o, lse = flashjit.attention(q, k, v, causal=True, attn_mask=mask, return_lse=True)
    ref_o, ref_lse = reference(q, k, v, causal=True, bias=np.where(mask, 0.0, -np.inf))
    check(rel_err(o, ref_o) < tol[np.float32] and lse_err(lse, ref_lse) < 1e-5 and np.all(o[:, 1] == 0)
          and np.all(np.isneginf(lse[:, :, 1])),
          "bool attn_mask [sq, skv] + causal, a row masked whole: err_o %.2e err_lse %.2e"
          % (rel_err(o, ref_o), lse_err(lse, ref_lse)))
    q16, k16, v16 = (x.astype(np.float16) for x in (q, k, v))
    bias = (rng.standard_normal((2, 1, 6, 9)) * 2).astype(np.float16)
    o = flashjit.attention(q16, k16, v16, attn_mask=bias)
    ref_o, _ = reference(q16, k16, v16, bias=bias)
    check(rel_err(o, ref_o) < tol[np.float16],
          "fp16 attn_mask [b, 1, sq, skv] of q's dtype: err %.2e" % rel_err(o, ref_o))
    expect_error(flashjit.Error,
                 "(attn_mask= is its attn_bias): invalid argument: attn_bias.shape[3]=8 but seqlen_kv",
                 lambda: flashjit.attention(q, k, v, attn_mask=np.zeros((6, 8), np.float32)), "attn_mask of 8 keys")
    expect_error(ValueError, "attn_mask: an array of 1 to 4 dimensions",
                 lambda: flashjit.attention(q, k, v, attn_mask=np.zeros((1, 1, 1, 6, 9), np.float32)),
                 "attn_mask of 5 dimensions")

    # A paged cache: pages of 16 keys in a shuffled pool, a block table per sequence.
    b, pages_each, page = 2, 4, 16
    pool_k, pool_v = randn(b * pages_each, page, 2, 64), randn(b * pages_each, page, 2, 64)
    table = rng.permutation(b * pages_each).astype(np.int32).reshape(b, pages_each)
    lens = np.array([64, 23], dtype=np.int32)
    q = randn(b, 1, 8, 64)
    o = flashjit.attention(q, pool_k, pool_v, causal=True, block_table=table, seqlens_kv=lens)
    k = np.stack([pool_k[table[i]].reshape(pages_each * page, 2, 64) for i in range(b)])
    v = np.stack([pool_v[table[i]].reshape(pages_each * page, 2, 64) for i in range(b)])
    ref_o, _ = reference(q, k, v, causal=True, lens=lens)
    check(rel_err(o, ref_o) < tol[np.float32], "paged decode step (block_table): err %.2e" % rel_err(o, ref_o))

    # Ragged prompts packed end to end (cu_seqlens_q, cu_seqlens_k); lse is [heads, total_q].
    counts = [7, 30, 1]
    cu = np.array([0] + list(np.cumsum(counts)), dtype=np.int32)
    q, k, v = randn(38, 4, 64), randn(38, 2, 64), randn(38, 2, 64)
    o, lse = flashjit.attention(q, k, v, causal=True, cu_seqlens_q=cu, max_seqlen_q=30, cu_seqlens_k=cu,
                                max_seqlen_k=30, return_lse=True)
    worst = 0.0
    for i, n in enumerate(counts):
        rows = slice(cu[i], cu[i + 1])
        ref_o, ref_lse = reference(q[None, rows], k[None, rows], v[None, rows], causal=True)
        worst = max(worst, rel_err(o[rows], ref_o[0]), lse_err(lse[:, rows], ref_lse[0]))
    check(o.shape == (38, 4, 64) and lse.shape == (4, 38) and worst < tol[np.float32],
          "ragged queries and packed keys: o %s lse %s worst err %.2e" % (o.shape, lse.shape, worst))

    # v with a head dim of its own (DeepSeek's MLA prefill, scaled down: q and k 48, v and o 32).
    q, k, v = randn(1, 40, 4, 48), randn(1, 40, 4, 48), randn(1, 40, 4, 32)
    o = flashjit.attention(q, k, v, causal=True)
    ref_o, _ = reference(q, k, v, causal=True)
    check(o.shape == (1, 40, 4, 32) and rel_err(o, ref_o) < tol[np.float32],
          "v's own head dim: o %s err %.2e" % (o.shape, rel_err(o, ref_o)))

    # DeepSeek's MLA decode in its absorbed form: q and k 576 (512 latent + 64 rotary), one KV head for
    # all 16 query heads, v the latent: the first 512 columns of k's own cache (a view, no copy).
    cache = randn(2, 300, 1, 576)
    q = randn(2, 1, 16, 576)
    o = flashjit.attention(q, cache, cache[..., :512], causal=True, softmax_scale=0.1)
    ref_o, _ = reference(q, cache, cache[..., :512], causal=True, scale=0.1)
    check(o.shape == (2, 1, 16, 512) and rel_err(o, ref_o) < tol[np.float32],
          "MLA absorbed decode (576/512, v a view of k): o %s err %.2e" % (o.shape, rel_err(o, ref_o)))

    # Two threads at once on the module's context (the call releases the GIL).
    q, k, v = randn(1, 64, 4, 64), randn(1, 64, 4, 64), randn(1, 64, 4, 64)
    ref_o, _ = reference(q, k, v, causal=True)
    results = [None, None]

    def worker(slot):
        results[slot] = flashjit.attention(q, k, v, causal=True)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(r is not None and rel_err(r, ref_o) < tol[np.float32] for r in results), "two threads at once")

    # A context of one's own: device name, no disk cache, workspace_size, close.
    with flashjit.Context("cpu", num_threads=1, disk_cache=False) as context:
        check(context.device_name.startswith("cpu"), "Context('cpu').device_name = %r" % context.device_name)
        o = context.attention(q, k, v, causal=True)
        check(rel_err(o, ref_o) < tol[np.float32], "Context.attention: err %.2e" % rel_err(o, ref_o))
        size = context.workspace_size(randn(1, 1, 32, 64), randn(1, 4096, 8, 64), randn(1, 4096, 8, 64))
        check(isinstance(size, int) and size >= 0, "Context.workspace_size of a decode step: %r bytes" % size)
    expect_error(ValueError, "closed", lambda: context.attention(q, k, v), "a closed context")

    # The library's messages to a handler, to Python's logging, and back to stderr.
    messages = []
    flashjit.set_log_level("info")
    flashjit.set_log_handler(lambda level, message: messages.append((level, message)))
    flashjit.Context("cpu", disk_cache=False).close()
    check(any(level == "info" and message.startswith("context on cpu:0 ") for level, message in messages) and
          not any(message.startswith("flashjit:") for _, message in messages),
          "set_log_handler: a context's creation reaches it at info, unprefixed: %r" % messages[:1])
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)
    logger = logging.getLogger("flashjit-test")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Keep())
    flashjit.log_to_logging(logger)
    flashjit.Context("cpu", disk_cache=False).close()
    check(any(r.levelno == logging.INFO and r.getMessage().startswith("context on cpu:0 ") for r in records),
          "log_to_logging: an INFO record on the given logger (%d records)" % len(records))

    raised = []

    def broken(level, message):
        raised.append(message)
        raise RuntimeError("a handler that fails")
    flashjit.set_log_handler(broken)
    with flashjit.Context("cpu", disk_cache=False) as context:  # logs at info
        o = context.attention(q, k, v, causal=True)
    check(len(raised) >= 1 and rel_err(o, ref_o) < tol[np.float32],
          "a handler that raises (%d times) breaks no call" % len(raised))
    flashjit.set_log_handler(None)
    count = len(messages)
    flashjit.set_log_level("off")
    flashjit.Context("cpu", disk_cache=False).close()
    check(len(messages) == count, "set_log_handler(None): the handler gets nothing more")
    flashjit.set_log_level("warn")
    expect_error(ValueError, "level='loud'", lambda: flashjit.set_log_level("loud"), "an unknown log level")
    expect_error(TypeError, "handler=5", lambda: flashjit.set_log_handler(5), "a handler that is not callable")

    # kv_split_keys: a sequence's decode step gives the same bits alone and in a batch (whose other
    # sequences are longer: k and v have room for them), the keys cut into parts of 512 either way.
    with flashjit.Context("cpu", num_threads=2, disk_cache=False) as context:
        qd, kd, vd = randn(3, 1, 8, 64), randn(3, 3000, 1, 64), randn(3, 3000, 1, 64)
        lens = np.array([1100, 3000, 2000], np.int32)
        alone = context.attention(qd[:1], kd[:1, :1100].copy(), vd[:1, :1100].copy(), kv_split_keys=512)
        batched = context.attention(qd, kd, vd, seqlens_kv=lens, kv_split_keys=512)
        ref_o, _ = reference(qd[:1], kd[:1, :1100], vd[:1, :1100])
        check(np.array_equal(alone[0], batched[0]) and rel_err(alone, ref_o) < tol[np.float32],
              "kv_split_keys=512: the same bits alone and batched, err %.2e" % rel_err(alone, ref_o))
    expect_error(flashjit.InvalidArgumentError, "kv_split_keys=-5",
                 lambda: flashjit.attention(qd, kd, vd, kv_split_keys=-5), "kv_split_keys=-5")

    # Merging: attention over keys split in two, merged by the LSEs, is attention over all of them (also
    # with a causal mask, which leaves some rows no key in the first half), into new arrays or in place.
    q, k, v = randn(2, 12, 4, 32), randn(2, 40, 4, 32), randn(2, 40, 4, 32)
    for causal in (False, True):
        whole, whole_lse = flashjit.attention(q, k, v, causal=causal, return_lse=True)
        first = flashjit.attention(q, k[:, :25].copy(), v[:, :25].copy(), return_lse=True)
        second = flashjit.attention(q, k[:, 25:].copy(), v[:, 25:].copy(), causal=causal, return_lse=True)
        merged, merged_lse = flashjit.merge(first[0], first[1], second[0], second[1])
        check(rel_err(merged, whole) < 1e-5 and float(np.abs(merged_lse - whole_lse).max()) < 1e-5,
              "merge of two halves = attention over all keys (%s): err %.2e"
              % ("causal" if causal else "full", rel_err(merged, whole)))
    again, again_lse = flashjit.merge(first[0], first[1], second[0], second[1], out=first[0], lse=first[1])
    check(again is first[0] and again_lse is first[1] and rel_err(first[0], whole) < 1e-5,
          "merge in place (out=o_a, lse=lse_a): err %.2e" % rel_err(first[0], whole))
    expect_error(flashjit.InvalidArgumentError, "o_b.shape[1]=3 but o_a.shape[1]=12",
                 lambda: flashjit.merge(first[0], first[1], second[0][:, :3], second[1]), "merge of mismatched results")
    expect_error(TypeError, "lse_b is None", lambda: flashjit.merge(first[0], first[1], second[0], None),
                 "merge without lse_b")
    expect_error(TypeError, "o_a: a list", lambda: flashjit.merge([1.0], first[1], second[0], second[1]),
                 "merge of a list")
    with flashjit.Context("cpu", disk_cache=False) as context:
        merged, _ = context.merge(second[0], second[1], second[0], second[1])
        check(rel_err(merged, second[0]) < 1e-6, "Context.merge of a result with itself gives it back: err %.2e"
              % rel_err(merged, second[0]))

    # Warming up: the shapes' kernels are built into the cache folder, and a call of one of them then
    # builds nothing more (a new kernel would add its binary there).
    folder = tempfile.mkdtemp()
    with flashjit.Context("cpu", cache_dir=folder) as context:
        decode = {"dtype": "fp32", "batch": 2, "seqlen_q": 1, "seqlen_kv": 100, "heads": 8, "kv_heads": 2,
                  "head_dim": 64, "causal": True, "varlen": True}
        loaded = context.warmup([decode, dict(decode, dtype=np.float16, head_dim=32, window=(31, 0))])
        built = files_under(folder)
        q, k, v = randn(2, 1, 8, 64), randn(2, 100, 2, 64), randn(2, 100, 2, 64)
        lens = np.array([100, 37], np.int32)
        o = context.attention(q, k, v, causal=True, seqlens_kv=lens)
        ref_o, _ = reference(q, k, v, causal=True, lens=lens)
        # the call notes its problem in the served file (warming up does not), and adds no kernel
        served = os.path.join(folder, "served-cpu-0.txt")
        after = [f for f in files_under(folder) if f != served]
        noted = [line for line in open(served) if not line.startswith("#")] if os.path.exists(served) else []
        check(loaded == 2 and len(built) == 2 and after == built and rel_err(o, ref_o) < tol[np.float32] and
              len(noted) == 1 and "seqlen_q=1 seqlen_kv=100" in noted[0] and " varlen" in noted[0],
              "warmup: %d loaded, %d files, the call added %d kernels and %d served line, err %.2e"
              % (loaded, len(built), len(after) - len(built), len(noted), rel_err(o, ref_o)))
        expect_error(flashjit.InvalidArgumentError, "shapes[1].head_dim=60",
                     lambda: context.warmup([decode, dict(decode, head_dim=60)]), "warmup of a bad head dim")
        expect_error(TypeError, "no field 'heads_kv'", lambda: context.warmup([{"heads_kv": 2}]), "a misspelt field")
        expect_error(ValueError, "shapes[0].heads=4294967304: out of the range of a 32-bit",
                     lambda: context.warmup([dict(decode, heads=2**32 + 8)]), "heads past an int (not wrapped to 8)")
        expect_error(ValueError, "dtype='fp64'", lambda: context.warmup([{"dtype": "fp64"}]), "a dtype it lacks")
    shutil.rmtree(folder)
    expect_error(ValueError, "device='gpu'", lambda: flashjit.warmup([decode], "gpu"), "warmup on no device")

    # A shape whose calls give a bias (attn_bias_dtype): warming it up builds the kernel a masked call uses.
    folder = tempfile.mkdtemp()
    with flashjit.Context("cpu", cache_dir=folder, served_log=False) as context:
        masked = {"dtype": "fp32", "seqlen_q": 16, "seqlen_kv": 16, "heads": 2, "kv_heads": 2, "head_dim": 32,
                  "attn_bias_dtype": "fp32"}
        loaded = context.warmup([masked])
        built = files_under(folder)
        q, k, v = randn(1, 16, 2, 32), randn(1, 16, 2, 32), randn(1, 16, 2, 32)
        mask = rng.random((16, 16)) > 0.5
        o = context.attention(q, k, v, attn_mask=np.where(mask, 0.0, -np.inf).astype(np.float32))
        ref_o, _ = reference(q, k, v, bias=np.where(mask, 0.0, -np.inf))
        check(loaded == 1 and files_under(folder) == built and rel_err(o, ref_o) < tol[np.float32],
              "warmup of an attn_bias_dtype shape: the masked call builds nothing more, err %.2e" % rel_err(o, ref_o))
        expect_error(flashjit.InvalidArgumentError, "shapes[0].attn_bias_dtype=fp16 with dtype fp32",
                     lambda: context.warmup([dict(masked, attn_bias_dtype="fp16")]), "a bias of another dtype")
    shutil.rmtree(folder)

    # Bad arguments: the library's message, a ValueError; nothing written to out.
    q, k, v = randn(1, 16, 4, 64), randn(1, 16, 4, 32), randn(1, 16, 4, 64)
    out = np.full((1, 16, 4, 64), np.nan, dtype=np.float32)
    error = expect_error(flashjit.InvalidArgumentError, "k.shape[3]=32",
                         lambda: flashjit.attention(q, k, v, out=out), "k's head dim differs from q's")
    check(error is not None and error.status == 1 and error.status_name == "invalid argument",
          "the error's status: %r %r" % (getattr(error, "status", None), getattr(error, "status_name", None)))
    check(bool(np.all(np.isnan(out))), "out untouched by the refused call")
    k = randn(1, 16, 4, 64)
    expect_error(flashjit.InvalidArgumentError, "o.shape",
                 lambda: flashjit.attention(q, k, v, out=np.zeros((1, 16, 4, 48), np.float32)), "out of the wrong shape")
    expect_error(flashjit.InvalidArgumentError, "dtype",
                 lambda: flashjit.attention(q, k.astype(np.float16), v), "k of another dtype")
    expect_error(flashjit.InvalidArgumentError, "seqlens_kv",
                 lambda: flashjit.attention(q, k, v, seqlens_kv=np.array([17], np.int32)), "a key count past k's")
    expect_error(TypeError, "q: a list", lambda: flashjit.attention([[1.0]], k, v), "q a list")
    expect_error(TypeError, "q is None", lambda: flashjit.attention(None, k, v), "q None")
    expect_error(TypeError, "v is None", lambda: flashjit.attention(q, k, None), "v None")
    readonly = k.copy()
    readonly.flags.writeable = False
    expect_error(TypeError, "k: ndarray.__dlpack__", lambda: flashjit.attention(q, readonly, v), "k read-only")
    expect_error(ValueError, "softmax_scale=0", lambda: flashjit.attention(q, k, v, softmax_scale=0), "scale 0")
    expect_error(TypeError, "window=", lambda: flashjit.attention(q, k, v, window=5), "window not a pair")
    expect_error(ValueError, "window[0]=%d: out of the range" % 10**30,
                 lambda: flashjit.attention(q, k, v, window=(10**30, 0)), "a window past int64 (not wrapped)")
    expect_error(flashjit.InvalidArgumentError, "window_left=-2",
                 lambda: flashjit.attention(q, k, v, window=(-2, 0)), "a window side under -1")
    expect_error(ValueError, "max_seqlen_q", lambda: flashjit.attention(
        q[0], k[0], v[0], cu_seqlens_q=np.array([0, 16], np.int32)), "cu_seqlens_q without max_seqlen_q")
    expect_error(ValueError, "softcap", lambda: flashjit.attention(q, k, v, softcap=-1.0), "negative softcap")
    expect_error(TypeError, "stream", lambda: flashjit.attention(q, k, v, stream="s"), "a stream that is not one")
    expect_error(flashjit.Error, "cuda:7", lambda: flashjit.Context("cuda:7"), "a device that is not there")
    expect_error(flashjit.Error, 'device "bogus" not found', lambda: flashjit.Context("bogus"), "a device name")

    # A library that is not where FLASHJIT_LIBRARY says: the first call says where it looked.
    env = dict(os.environ, FLASHJIT_LIBRARY="/nonexistent/libflashjit.so")
    run = subprocess.run([sys.executable, "-c", "import flashjit; flashjit.version()"], env=env,
                         capture_output=True, text=True)
    last = run.stderr.strip().splitlines()[-1:] or [""]
    check(run.returncode != 0 and "set FLASHJIT_LIBRARY" in last[0] and "/nonexistent/libflashjit.so (no such file)"
          in last[0], "no library: exit %d, %s" % (run.returncode, last[0]))

    if os.environ.get("FLASHJIT_CUDA_LIBRARY"):
        fake_gpu_cases(os.environ["FLASHJIT_CUDA_LIBRARY"])
    torch_cases()
    print("%d failed" % len(failures))
    return 1 if failures else 0


class FakeCounters(ctypes.Structure):
    """The head of tests/fake_cuda/fake_cuda_state.h's fake_cuda_counters, as far as the last stream."""
    _fields_ = [(name, ctypes.c_int) for name in (
        "primary_retains", "primary_releases", "pushes", "pops", "link_creates", "link_completes",
        "link_destroys", "module_loads", "module_unloads", "func_set_attributes", "last_set_attribute_value",
        "launches", "allocs", "frees", "stream_syncs", "context_syncs", "event_syncs", "events_created",
        "events_destroyed")] + [("last_grid", ctypes.c_uint * 3), ("last_block", ctypes.c_uint * 3),
                                ("last_shared", ctypes.c_uint), ("last_stream", ctypes.c_void_p)]


class DeviceArray:
    """A producer of CUDA arrays through DLPack, as CuPy is one: device memory from the fake driver (no
    kernel runs there, so its contents do not matter), and the stream each __dlpack__ call was given."""

    def __init__(self, driver, shape, dtype=(2, 16)):  # fp16
        from flashjit._ffi import DLDataType, DLDevice, DLTensor
        self.shape = tuple(shape)
        count = 1
        for n in shape:
            count *= n
        pointer = ctypes.c_uint64(0)
        if driver.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(max(count, 1) * dtype[1] // 8)) != 0:
            raise RuntimeError("cuMemAlloc_v2 failed")
        self._sizes = (ctypes.c_int64 * len(shape))(*shape)

        class Managed(ctypes.Structure):
            _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]
        self._managed = Managed(DLTensor(pointer.value, DLDevice(2, 0), len(shape), DLDataType(dtype[0], dtype[1], 1),
                                         self._sizes, None, 0), None, None)
        self.streams = []

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self._managed), b"dltensor", None)


def fake_gpu_cases(path):
    """Where the test runs the library on the fake CUDA driver (FLASHJIT_CUDA_LIBRARY): the package's
    GPU glue. Arrays on a CUDA device go to a cuda:0 context, the stream reaches the launch (and the
    producers' __dlpack__, by the protocol's numbers), and what the GPU does not take is refused."""
    driver = ctypes.CDLL(path)  # the same library the backend opened: the same counters
    driver.fake_cuda_state.restype = ctypes.POINTER(FakeCounters)
    counters = driver.fake_cuda_state().contents
    # A context current on this thread, as a caller's runtime makes one (device memory needs it).
    make = driver.fake_cuda_make_context
    make.restype = ctypes.c_void_p
    driver.cuCtxPushCurrent_v2.argtypes = [ctypes.c_void_p]
    driver.cuCtxPushCurrent_v2(make(0))
    q, k, v, o = (DeviceArray(driver, s) for s in ((2, 64, 8, 64), (2, 64, 2, 64), (2, 64, 2, 64), (2, 64, 8, 64)))
    before = counters.launches
    flashjit.attention(q, k, v, causal=True, out=o, stream=0x5eed)
    check(counters.launches == before + 1 and counters.last_stream == 0x5eed and q.streams[-1] == 0x5eed,
          "a CUDA array's call launches on cuda:0 on the stream given (launches +%d, stream %#x, __dlpack__ got %r)"
          % (counters.launches - before, counters.last_stream or 0, q.streams[-1]))
    flashjit.attention(q, k, v, out=o)
    check(counters.launches == before + 2 and not counters.last_stream and q.streams[-1] == 1,
          "no stream: the default stream (NULL at the launch, 1 to __dlpack__ as DLPack names it): %r, %r"
          % (counters.last_stream, q.streams[-1]))
    expect_error(TypeError, "pass out=", lambda: flashjit.attention(q, k, v), "no out= for a CuPy-like array")
    expect_error(flashjit.InvalidArgumentError, "cpu",
                 lambda: flashjit.attention(q, randn(2, 64, 2, 64, dtype=np.float16), v, out=o),
                 "k on the host beside q on the device")
    wide = [DeviceArray(driver, s) for s in ((1, 1, 16, 576), (1, 64, 1, 576), (1, 64, 1, 512), (1, 1, 16, 512))]
    before = counters.launches
    flashjit.attention(*wide[:3], out=wide[3], causal=True)
    check(counters.launches == before + 1 and counters.last_block[0] == 256,
          "MLA's absorbed decode (576/512) launches on the GPU, %d threads a block" % counters.last_block[0])
    odd = [DeviceArray(driver, s) for s in ((1, 1, 16, 320), (1, 64, 1, 320), (1, 64, 1, 320), (1, 1, 16, 320))]
    error = expect_error(flashjit.Error, "v's head dim 320",
                         lambda: flashjit.attention(*odd[:3], out=odd[3]), "a v of 320 on the GPU")
    check(error is not None and error.status_name == "unsupported", "its status: %r" % getattr(error, "status_name", None))
    loaded = flashjit.warmup([{"dtype": "fp16", "batch": 2, "seqlen_q": 64, "seqlen_kv": 64, "heads": 8, "kv_heads": 2,
                               "head_dim": 64, "causal": True}], "cuda:0")
    check(loaded == 1, "warmup on cuda:0: %d loaded" % loaded)


def torch_cases():
    """The same call on PyTorch's CPU tensors (described from data_ptr and strides, not DLPack), where
    torch imports: bf16, a packed QKV view, LSE."""
    try:
        import torch
    except ImportError:
        print("skip: no torch for this python (the PyTorch CPU cases)")
        return
    qkv = torch.randn(2, 45, 6 + 2 + 2, 64, dtype=torch.bfloat16)
    q, k, v = qkv[:, :, :6], qkv[:, :, 6:8], qkv[:, :, 8:]
    o, lse = flashjit.attention(q, k, v, causal=True, return_lse=True)
    ref_o, ref_lse = reference(*(x.float().numpy() for x in (q, k, v)), causal=True)
    err_o, err_l = rel_err(o.float().numpy(), ref_o), lse_err(lse.numpy(), ref_lse)
    check(o.dtype == torch.bfloat16 and o.shape == (2, 45, 6, 64) and lse.dtype == torch.float32
          and err_o < 1e-2 and err_l < 1e-3,
          "torch bf16 packed qkv view, causal: err_o %.2e err_lse %.2e" % (err_o, err_l))
    expect_error(TypeError, "dtype torch.float64", lambda: flashjit.attention(q.double(), k, v), "torch float64")

    # Every tensor argument a torch tensor (each written into its own slot of the call's frame): a
    # paged cache filled to per-sequence lengths with sinks and ALiBi, into out= and lse=; ragged queries
    # and packed keys.
    rng = np.random.default_rng(7)
    b, pages_each, page = 2, 4, 16
    pool_k, pool_v = (torch.randn(b * pages_each, page, 2, 64) for _ in range(2))
    table = torch.from_numpy(rng.permutation(b * pages_each).astype(np.int32).reshape(b, pages_each))
    lens = torch.tensor([64, 23], dtype=torch.int32)
    sinks, slopes = torch.randn(8), torch.tensor([0.5 ** i for i in range(1, 9)], dtype=torch.float32)
    q = torch.randn(b, 3, 8, 64)
    out, lse = torch.full((b, 3, 8, 64), float("nan")), torch.full((b, 8, 3), float("nan"))
    got = flashjit.attention(q, pool_k, pool_v, causal=True, block_table=table, seqlens_kv=lens, sinks=sinks,
                             alibi_slopes=slopes, out=out, lse=lse)
    k = np.stack([pool_k.numpy()[table.numpy()[i]].reshape(pages_each * page, 2, 64) for i in range(b)])
    v = np.stack([pool_v.numpy()[table.numpy()[i]].reshape(pages_each * page, 2, 64) for i in range(b)])
    ref_o, ref_lse = reference(q.numpy(), k, v, causal=True, lens=lens.numpy(), sinks=sinks.numpy(), alibi=slopes.numpy())
    check(got[0] is out and got[1] is lse and rel_err(out.numpy(), ref_o) < 1e-4 and lse_err(lse.numpy(), ref_lse) < 1e-5,
          "torch: paged cache, seqlens_kv, sinks, ALiBi into out= and lse=: err_o %.2e err_lse %.2e"
          % (rel_err(out.numpy(), ref_o), lse_err(lse.numpy(), ref_lse)))
    counts = [7, 30, 1]
    cu = torch.tensor([0] + list(np.cumsum(counts)), dtype=torch.int32)
    q, k, v = torch.randn(38, 4, 64), torch.randn(38, 2, 64), torch.randn(38, 2, 64)
    o = flashjit.attention(q, k, v, causal=True, cu_seqlens_q=cu, max_seqlen_q=30, cu_seqlens_k=cu, max_seqlen_k=30)
    worst = 0.0
    for i in range(len(counts)):
        rows = slice(int(cu[i]), int(cu[i + 1]))
        ref_o, _ = reference(q[None, rows].numpy(), k[None, rows].numpy(), v[None, rows].numpy(), causal=True)
        worst = max(worst, rel_err(o[rows].numpy(), ref_o[0]))
    check(worst < 1e-4, "torch: ragged queries and packed keys: worst err %.2e" % worst)
    # attn_mask on torch tensors, bf16: a bool padding mask [b, 1, 1, skv] and a float bias [h, sq, skv];
    # beside PyTorch's own scaled_dot_product_attention too where this torch has it (layout [b, h, s, d])
    q, k, v = (torch.randn(2, s, 4, 64, dtype=torch.bfloat16) for s in (7, 20, 20))
    keep = torch.ones(2, 1, 1, 20, dtype=torch.bool)
    keep[1, :, :, 13:] = False
    bias = torch.randn(4, 7, 20, dtype=torch.bfloat16)
    sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    for mask, what in ((keep, "bool padding mask [b, 1, 1, skv]"), (bias, "bf16 bias [h, sq, skv]")):
        got = flashjit.attention(q, k, v, attn_mask=mask).float().numpy()
        additive = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else mask.float()
        ref_o, _ = reference(*(x.float().numpy() for x in (q, k, v)), bias=additive.numpy())
        err = rel_err(got, ref_o)
        if sdpa is not None:
            want = sdpa(*(x.transpose(1, 2).float() for x in (q, k, v)), attn_mask=additive)
            err = max(err, rel_err(got, want.transpose(1, 2).double().numpy()))
        check(err < 1e-2, "torch: attn_mask %s%s: err %.2e" % (what, "" if sdpa is None else ", and torch's SDPA", err))
    expect_error(ValueError, "9 dimensions", lambda: flashjit.attention(torch.zeros([1] * 9), k, v),
                 "a torch q of 9 dimensions")


if __name__ == "__main__":
    sys.exit(main())
