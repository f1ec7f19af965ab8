"""flashjit: flash attention JIT-compiled for the device the tensors are on, tuned per shape.

    import flashjit
    o = flashjit.attention(q, k, v, causal=True)          # q [b, sq, h, d]; k, v [b, skv, hk, d]
    o, lse = flashjit.attention(q, k, v, return_lse=True)  # lse [b, h, sq], float32

q, k and v are PyTorch tensors (cpu or cuda) or any array with __dlpack__ (numpy on the CPU, CuPy, JAX),
in any strides; o is made like q (or written into out=). A call runs on the tensors' device: with torch
on a GPU it launches on torch's current stream and returns without waiting for the device, as
PyTorch's own kernels do. The first call of a shape compiles a kernel (or loads it from the disk cache,
FLASHJIT_CACHE_DIR); the tuning database's winner is used where `flashjit tune` ran. Every argument of
the C call (include/flashjit.h, fj_attention_args) has a keyword here; bad ones raise
InvalidArgumentError (a ValueError) with the library's message naming the argument and its values.

The package calls libflashjit.so through ctypes: the one FLASHJIT_LIBRARY names where it is set, else
the copy the build puts beside it (build/python), else the one `cmake --install` puts three folders up,
else the loader's search path."""
import atexit
import ctypes
import math
import threading

from . import _ffi
from ._ffi import FJ_INVALID_ARGUMENT, KDL_CPU, KDL_CUDA, TENSOR_SLOTS, ContextOptions, MergeArgs, ProblemShape
from ._tensors import device_of, dltensor, empty_like, is_numpy, is_torch

__all__ = ["attention", "merge", "warmup", "Context", "Error", "InvalidArgumentError", "version", "set_log_level",
           "set_log_handler", "log_to_logging"]


class Error(RuntimeError):
    """A call failed; status is the library's fj_status code, status_name its text."""

    def __init__(self, status, status_name, message):
        super().__init__(message)
        self.status = status
        self.status_name = status_name


class InvalidArgumentError(Error, ValueError):
    """An argument the library cannot take (FJ_INVALID_ARGUMENT); the message names it."""


def _fail(lib, status, what):
    name = lib.fj_status_string(status).decode()
    message = "%s: %s: %s" % (what, name, lib.fj_last_error().decode(errors="replace"))
    raise (InvalidArgumentError if status == FJ_INVALID_ARGUMENT else Error)(status, name, message)


def _integer(name, value, bits=64):
    """value as an int that fits a C field of that many bits (ctypes would wrap a larger one silently)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TypeError("%s=%r: an integer" % (name, value)) from None
    if not -(1 << (bits - 1)) <= number < (1 << (bits - 1)):
        raise ValueError("%s=%d: out of the range of a %d-bit integer" % (name, number, bits))
    return number


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return _ffi.library().fj_version_string().decode()


_LOG_LEVELS = {"off": -1, "error": 0, "warn": 1, "warning": 1, "info": 2, "debug": 3}
_LOG_NAMES = ("error", "warn", "info", "debug")
_log_lock = threading.Lock()
_log_callbacks = []  # every callback the library was given: a handler may replace itself while it runs


def set_log_level(level):
    """Which of the library's messages are made: "off", "error", "warn", "info" or "debug" (overrides
    FLASHJIT_LOG, whose default is "warn")."""
    number = _LOG_LEVELS.get(level) if isinstance(level, str) else None
    if number is None:
        raise ValueError("level=%r: one of %s" % (level, ", ".join(repr(n) for n in _LOG_LEVELS)))
    lib = _ffi.library()
    status = lib.fj_set_log_level(number)
    if status != _ffi.FJ_OK:
        _fail(lib, status, "set_log_level")


def set_log_handler(handler):
    """Sends the library's messages to handler(level, message) instead of stderr: level "error", "warn",
    "info" or "debug", message one line without the "flashjit: <level>: " prefix. It is called on the
    thread that logged (yours, or one of the library's worker or compile threads); what it raises is
    dropped, so that a log never breaks a call. None restores stderr."""
    if handler is not None and not callable(handler):
        raise TypeError("handler=%r: a callable (level, message), or None" % (handler,))
    lib = _ffi.library()

    def forward(level, message, user):
        try:
            name = _LOG_NAMES[level] if 0 <= level < len(_LOG_NAMES) else "debug"
            handler(name, message.decode(errors="replace"))
        except BaseException:  # noqa: B036 -- nothing may unwind into C
            pass

    with _log_lock:
        if handler is None:
            lib.fj_set_log_handler(ctypes.cast(None, _ffi.LOG_HANDLER), None)
            return
        callback = _ffi.LOG_HANDLER(forward)
        _log_callbacks.append(callback)
        lib.fj_set_log_handler(callback, None)


def log_to_logging(logger=None):
    """Sends the library's messages to a logging.Logger (default logging.getLogger("flashjit")) at the
    matching levels: error, warning, info, debug. The library still makes only the messages its level
    (set_log_level, FLASHJIT_LOG) allows."""
    import logging
    target = logger if logger is not None else logging.getLogger("flashjit")
    levels = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
    set_log_handler(lambda level, message: target.log(levels[level], "%s", message))


def _stop_logging_at_exit():
    # A Python callback must not run once the interpreter is going away.
    if _log_callbacks:
        try:
            _ffi.library().fj_set_log_handler(ctypes.cast(None, _ffi.LOG_HANDLER), None)
        except Exception:
            pass


atexit.register(_stop_logging_at_exit)


class Context:
    """A device and the kernels loaded on it (fj_context). device: "auto", "cpu" or "cuda:N";
    cache_dir: the compiled kernels and the tuning database (None: FLASHJIT_CACHE_DIR, else
    ~/.cache/flashjit); num_threads: the CPU's workers (0: one per core); disk_cache=False keeps
    every kernel in memory; served_log=False notes nothing in the cache's served file (by default the
    first call of each problem is noted there for `flashjit tune --served`). A context may be used
    from several threads at once."""

    def __init__(self, device="auto", cache_dir=None, num_threads=0, disk_cache=True, served_log=True):
        lib = _ffi.library()
        options = _ffi.init(lib, "fj_context_options", ContextOptions)
        options.device = device.encode() if device is not None else None
        options.cache_dir = str(cache_dir).encode() if cache_dir is not None else None
        options.num_threads = _integer("num_threads", num_threads, 32)
        options.disable_disk_cache = 0 if disk_cache else 1
        options.disable_served_log = 0 if served_log else 1
        handle = ctypes.c_void_p()
        status = lib.fj_context_create(ctypes.byref(options), ctypes.byref(handle))
        if status != _ffi.FJ_OK:
            _fail(lib, status, "Context(device=%r)" % (device,))
        self._lib = lib
        self._handle = handle

    @property
    def device_name(self):
        """The device, as the library names it ("cpu: AMD EPYC ...")."""
        buffer = ctypes.create_string_buffer(256)
        self._lib.fj_context_device_name(self._live(), buffer, len(buffer))
        return buffer.value.decode(errors="replace")

    def _live(self):
        if not self._handle:
            raise ValueError("this flashjit.Context is closed")
        return self._handle

    def close(self):
        """Destroys the context and its kernels (later calls on it raise ValueError)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.fj_context_destroy(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit the library may already be gone
            pass

    def attention(self, q, k, v, **options):
        """flashjit.attention on this context's device; the same arguments."""
        return _attention(self, q, k, v, **options)

    def merge(self, o_a, lse_a, o_b, lse_b, **options):
        """flashjit.merge on this context's device."""
        return _merge(self, o_a, lse_a, o_b, lse_b, **options)

    def warmup(self, shapes):
        """Compiles (or loads from the disk cache) the kernel each shape's calls will use, so that the
        first real call costs no compile; a call whose lengths fall in a warmed shape's power-of-two
        bucket reuses its kernel. shapes: dicts of fj_problem_shape's fields (see flashjit.warmup).
        Returns how many were loaded; raises at the first that fails, naming it."""
        shapes = list(shapes)
        array = (ProblemShape * max(len(shapes), 1))()
        for i, fields in enumerate(shapes):
            array[i] = _problem_shape(self._lib, fields, "shapes[%d]" % i)
        loaded = ctypes.c_size_t(0)
        status = self._lib.fj_context_warmup(self._live(), array, len(shapes), ctypes.byref(loaded))
        if status != _ffi.FJ_OK:
            _fail(self._lib, status, "warmup")
        return loaded.value

    def workspace_size(self, q, k, v, **options):
        """The bytes of workspace a call with these arguments would use (0: it would not split its
        keys); validates them as the call does and compiles its kernel, but launches nothing."""
        return _attention(self, q, k, v, _size_only=True, **options)


_DTYPES = {"fp32": (_ffi.KDL_FLOAT, 32), "float32": (_ffi.KDL_FLOAT, 32), "fp16": (_ffi.KDL_FLOAT, 16),
           "float16": (_ffi.KDL_FLOAT, 16), "bf16": (_ffi.KDL_BFLOAT, 16), "bfloat16": (_ffi.KDL_BFLOAT, 16),
           "fp8_e4m3": (_ffi.KDL_FLOAT8_E4M3FN, 8), "float8_e4m3fn": (_ffi.KDL_FLOAT8_E4M3FN, 8),
           "fp8_e5m2": (_ffi.KDL_FLOAT8_E5M2, 8), "float8_e5m2": (_ffi.KDL_FLOAT8_E5M2, 8)}
_SHAPE_FIELDS = ("batch", "seqlen_q", "seqlen_kv", "heads", "kv_heads", "head_dim", "head_dim_v", "causal",
                 "with_lse", "varlen", "page_size", "varlen_q", "sinks", "softcap", "packed_k", "alibi")


def _dtype_field(value, what):
    # "bf16", torch.bfloat16, numpy.float16 (a type) or numpy.dtype("float16")
    name = value if isinstance(value, str) else getattr(value, "__name__", str(value).replace("torch.", ""))
    if name not in _DTYPES:
        raise ValueError("%s=%r: one of %s" % (what, value, ", ".join(sorted(_DTYPES))))
    code, bits = _DTYPES[name]
    return _ffi.DLDataType(code, bits, 1)


def _problem_shape(lib, fields, what):
    if not isinstance(fields, dict):
        raise TypeError("%s: a dict of fj_problem_shape's fields, not a %s" % (what, type(fields).__name__))
    shape = _ffi.init(lib, "fj_problem_shape", ProblemShape)
    for name, value in fields.items():
        if name in ("dtype", "kv_dtype", "attn_bias_dtype"):
            setattr(shape, name, _dtype_field(value, "%s.%s" % (what, name)))
        elif name == "window":
            left, right = _window(value, "%s.window" % what)
            shape.windowed, shape.window_left, shape.window_right = 1, left, right
        elif name == "softcap":
            shape.softcap = float(value)
        elif name in _SHAPE_FIELDS:
            bits = 64 if name in ("batch", "seqlen_q", "seqlen_kv") else 32
            setattr(shape, name, _integer("%s.%s" % (what, name), value, bits))
        else:
            raise TypeError("%s: no field %r (fields: dtype, kv_dtype, attn_bias_dtype, window, %s)" % (
                what, name, ", ".join(_SHAPE_FIELDS)))
    return shape


_contexts = {}
_contexts_lock = threading.Lock()
_SLOT = {name: slot for slot, name in enumerate(TENSOR_SLOTS)}


def _context_for(q):
    kind, index = device_of(q)
    if kind == KDL_CPU:
        device = "cpu"
    elif kind == KDL_CUDA:
        device = "cuda:%d" % index
    else:
        raise ValueError("q: an array on DLPack device type %d; flashjit takes cpu and cuda ones" % kind)
    return _context_named(device)


def _context_named(device):
    context = _contexts.get(device)  # a dict read is atomic; only making one takes the lock
    if context is not None:
        return context
    with _contexts_lock:
        context = _contexts.get(device)
        if context is None:
            context = _contexts[device] = Context(device)
    return context


def warmup(shapes, device):
    """Loads, before traffic arrives, the kernels that flashjit.attention's calls on device ("cpu",
    "cuda:N") will use for these shapes: dicts of include/flashjit.h's fj_problem_shape fields, e.g.
    {"dtype": "bf16", "batch": 8, "seqlen_q": 1, "seqlen_kv": 8192, "heads": 32, "kv_heads": 8,
    "head_dim": 128, "causal": True, "varlen": True, "page_size": 16} (unnamed fields keep the
    library's defaults; window=(left, right) as in attention). Returns how many were loaded."""
    if device != "cpu" and not str(device).startswith("cuda:"):
        raise ValueError("device=%r: \"cpu\" or \"cuda:N\", the devices flashjit.attention's calls run on" % (device,))
    return _context_named(device).warmup(shapes)


def _stream_handle(q, stream):
    if stream is None:
        if is_torch(q) and q.is_cuda:
            import torch
            return torch.cuda.current_stream(q.device).cuda_stream
        return 0
    handle = getattr(stream, "cuda_stream", stream)  # a torch.cuda.Stream, or a CUstream as an int
    if not isinstance(handle, int) or handle < 0:
        raise TypeError("stream: %r is neither a CUDA stream handle (an int) nor an object with .cuda_stream"
                        % (stream,))
    return handle


def _window(window, name):
    try:
        left, right = window
    except (TypeError, ValueError):
        raise TypeError("%s=%r: a pair (left, right) of ints, -1 for an open side" % (name, window)) from None
    return _integer(name + "[0]", left), _integer(name + "[1]", right)


def _optional_scale(name, value):
    if value is None:
        return 0.0  # the library's default
    value = float(value)
    if value == 0.0:
        raise ValueError("%s=0: the library reads 0 as its default; pass None for that" % name)
    return value


def attention(q, k, v, **options):
    """o = softmax(softmax_scale * q k^T + masks) v for every batch and head, on q's device.

    q [batch, seqlen_q, heads, head_dim]; k [batch, seqlen_kv, kv_heads, head_dim]; v likewise with
    its own head dim (head_dim_v); heads a multiple of kv_heads (GQA, MQA). float32, float16 or bfloat16,
    all of one dtype, except that k and v may both be float8 (an fp8 KV cache; k_scale, v_scale).

    Keywords (all optional):
      causal            bool; query i sees key j <= i + seqlen_kv - seqlen_q (bottom-right aligned).
      softmax_scale     None: 1 / sqrt(head_dim).
      out               where o goes ([.., heads, head_dim_v], q's dtype); None: made like q.
      return_lse, lse   return (o, lse) with lse [batch, heads, seqlen_q] float32 (natural log; -inf for
                        a row with no key), made like q or written into lse=.
      window            (left, right): sliding-window attention, FlashAttention's window_size; -1 leaves
                        a side open.
      seqlens_kv        [batch] int32: each sequence's key count (a cache filled to different lengths).
      block_table       [batch, max_pages] int32: a paged cache; k and v are then page pools
                        [pages, page_size, kv_heads, head_dim].
      cu_seqlens_q, max_seqlen_q   ragged queries packed end to end (q and o [total_q, heads, head_dim],
                        lse [heads, total_q]); max_seqlen_q is required with them.
      cu_seqlens_k, max_seqlen_k   packed keys (k and v [total_k, kv_heads, head_dim]).
      sinks             [heads] float32: gpt-oss's attention sinks.
      softcap           > 0: scores become softcap * tanh(score / softcap) (Gemma 2).
      alibi_slopes      [heads] or [batch, heads] float32: ALiBi's linear biases.
      attn_mask         as scaled_dot_product_attention's: a float array is added to the scaled scores
                        (float32 or q's dtype; -inf masks a key), a bool one lets a query see a key where
                        True (made into such a bias of q's dtype). [batch, heads, seqlen_q, seqlen_kv], each
                        dimension of that size or 1 (broadcast), or fewer dimensions (the leading ones 1);
                        a query that sees no key gives 0 (SDPA gives NaN).
      k_scale, v_scale  an fp8 cache's per-tensor scales (None: 1).
      workspace         [bytes] uint8 scratch for split-KV decode steps on a GPU; None: for torch cuda
                        tensors asked for and allocated by torch when the call would split, else none;
                        False: none.
      stream            CUDA stream (a handle or a torch.cuda.Stream); None: torch's current stream for
                        torch tensors, else the default stream.
      kv_split_keys     0: the library cuts a decode step's keys as the batch suits; N > 0: into parts of
                        N keys whatever the batch (each row's result then depends on its own sequence
                        alone: batch-invariant); -1: never.

    Returns o, or (o, lse) when return_lse or lse= is given."""
    _require_inputs(q, k, v)
    return _attention(_context_for(q), q, k, v, **options)


def _require_inputs(q, k, v):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x is None:
            raise TypeError("%s is None: flashjit.attention needs the arrays q, k and v" % name)


def _attention(context, q, k, v, causal=False, softmax_scale=None, out=None, return_lse=False, lse=None,
               window=None, seqlens_kv=None, block_table=None, cu_seqlens_q=None, max_seqlen_q=None,
               cu_seqlens_k=None, max_seqlen_k=None, sinks=None, softcap=0.0, alibi_slopes=None,
               attn_mask=None, k_scale=None, v_scale=None, workspace=None, stream=None, kv_split_keys=0,
               _size_only=False):
    _require_inputs(q, k, v)
    lib = context._lib
    frame = _ffi.new_frame(lib)  # args (the library's defaults) and the tensors' DLTensors, in one block
    base = ctypes.addressof(frame)
    args = frame.args
    handle = _stream_handle(q, stream)
    args.stream = handle or None
    args.causal = 1 if causal else 0
    args.softmax_scale = _optional_scale("softmax_scale", softmax_scale)
    args.k_scale = _optional_scale("k_scale", k_scale)
    args.v_scale = _optional_scale("v_scale", v_scale)
    args.kv_split_keys = _integer("kv_split_keys", kv_split_keys)
    softcap = float(softcap) if softcap is not None else 0.0
    if not math.isfinite(softcap) or softcap < 0.0:
        raise ValueError("softcap=%r: must be finite and not negative (0: none)" % softcap)
    args.softcap = softcap
    if window is not None:
        args.windowed = 1
        args.window_left, args.window_right = _window(window, "window")
    if cu_seqlens_q is not None:
        if max_seqlen_q is None:
            raise ValueError("max_seqlen_q: needed with cu_seqlens_q (the longest sequence's query count)")
        args.max_seqlen_q = _integer("max_seqlen_q", max_seqlen_q)
    if cu_seqlens_k is not None:
        if max_seqlen_k is None:
            raise ValueError("max_seqlen_k: needed with cu_seqlens_k (the longest sequence's key count)")
        args.max_seqlen_k = _integer("max_seqlen_k", max_seqlen_k)

    keep = []  # whatever the DLTensors borrow, held until the call returns

    def tensor(x, name, field):
        return dltensor(x, name, keep, frame, base, _SLOT[field], handle)
    args.q = tensor(q, "q", "q")
    args.k = tensor(k, "k", "k")
    args.v = tensor(v, "v", "v")
    args.seqlens_kv = tensor(seqlens_kv, "seqlens_kv", "seqlens_kv")
    args.block_table = tensor(block_table, "block_table", "block_table")
    args.cu_seqlens_q = tensor(cu_seqlens_q, "cu_seqlens_q", "cu_seqlens_q")
    args.cu_seqlens_k = tensor(cu_seqlens_k, "cu_seqlens_k", "cu_seqlens_k")
    args.sinks = tensor(sinks, "sinks", "sinks")
    args.alibi_slopes = tensor(alibi_slopes, "alibi_slopes", "alibi_slopes")
    what = "flashjit.attention"
    if attn_mask is not None:
        what = "flashjit.attention (attn_mask= is its attn_bias)"  # the library names the tensor it was given
        bias = _bias_of_mask(attn_mask, q)
        keep.append(bias)
        args.attn_bias = tensor(bias, "attn_mask", "attn_bias")
    want_lse = bool(return_lse) or lse is not None
    if out is None:
        out = empty_like(q, tuple(q.shape[:-1]) + (v.shape[-1],), False, "out")
    if want_lse and lse is None:
        rows = (q.shape[1], q.shape[0]) if cu_seqlens_q is not None else (q.shape[0], q.shape[2], q.shape[1])
        lse = empty_like(q, rows, True, "lse")
    args.o = tensor(out, "out", "o")
    args.lse = tensor(lse, "lse", "lse") if want_lse else None

    if _size_only or (workspace is None and is_torch(q) and q.is_cuda):
        need = ctypes.c_size_t(0)
        status = lib.fj_attention_workspace_size(context._live(), base, ctypes.byref(need))
        if status != _ffi.FJ_OK:
            _fail(lib, status, what)
        if _size_only:
            return need.value
        if need.value > 0:
            import torch
            workspace = torch.empty(need.value, dtype=torch.uint8, device=q.device)
    if workspace is not None and workspace is not False:
        args.workspace = tensor(workspace, "workspace", "workspace")
    status = lib.fj_attention_forward(context._live(), base)
    if status != _ffi.FJ_OK:
        _fail(lib, status, what)
    return (out, lse) if want_lse else out


def _bias_of_mask(mask, q):
    """attn_mask as the library's attn_bias: 4 dimensions (leading ones of size 1 added), and a bool mask
    (True: the query sees the key) as 0 / -inf in q's dtype."""
    ndim = getattr(mask, "ndim", None)
    if ndim is None or not 1 <= ndim <= 4:
        raise ValueError("attn_mask: an array of 1 to 4 dimensions ([batch, heads, seqlen_q, seqlen_kv], "
                         "leading ones may be left out), not %r" % (type(mask).__name__ if ndim is None else ndim))
    while mask.ndim < 4:
        mask = mask[None]
    if is_torch(mask):
        import torch
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    elif is_numpy(mask):
        import numpy
        if mask.dtype == numpy.bool_:
            mask = numpy.where(mask, numpy.zeros((), q.dtype), numpy.full((), -numpy.inf, q.dtype))
    return mask


def merge(o_a, lse_a, o_b, lse_b, out=None, lse=None, stream=None):
    """Two attention results of the same queries over disjoint sets of keys (a prefix shared by many
    sequences and each one's own keys, two chunks of a long cache, two devices' halves), each with its
    LSE as flashjit.attention(..., return_lse=True) gives it, merged into the result over both sets:
    o = (e^lse_a o_a + e^lse_b o_b) / (e^lse_a + e^lse_b), lse = log(e^lse_a + e^lse_b), per row, in fp32.

    o_a, o_b [batch, seqlen_q, heads, head_dim] of one dtype; lse_a, lse_b [batch, heads, seqlen_q]
    float32 (ragged queries: add a batch dimension of 1 to both). out, lse: where they go (o_a and
    lse_a themselves merge in place); None: made like o_a. stream as for attention. Returns (o, lse)."""
    _require_merge_inputs(o_a, lse_a, o_b, lse_b)
    return _merge(_context_for(o_a), o_a, lse_a, o_b, lse_b, out, lse, stream)


def _require_merge_inputs(o_a, lse_a, o_b, lse_b):
    for name, x in (("o_a", o_a), ("lse_a", lse_a), ("o_b", o_b), ("lse_b", lse_b)):
        if x is None:
            raise TypeError("%s is None: flashjit.merge needs o_a, lse_a, o_b and lse_b" % name)


def _merge(context, o_a, lse_a, o_b, lse_b, out=None, lse=None, stream=None):
    _require_merge_inputs(o_a, lse_a, o_b, lse_b)
    lib = context._lib
    frame = _ffi.new_frame(lib)  # room for the DLTensors
    base = ctypes.addressof(frame)
    handle = _stream_handle(o_a, stream)
    keep = []
    args = _ffi.init(lib, "fj_merge_args", MergeArgs)
    # the inputs first (an array flashjit cannot read is named here), then the outputs made like them
    for field, x, slot in (("o_a", o_a, "q"), ("o_b", o_b, "k"), ("lse_a", lse_a, "v"), ("lse_b", lse_b, "o")):
        setattr(args, field, dltensor(x, field, keep, frame, base, _SLOT[slot], handle))
    if out is None:
        out = empty_like(o_a, tuple(o_a.shape), False, "out")
    if lse is None:
        lse = empty_like(o_a, tuple(lse_a.shape), True, "lse")
    args.o = dltensor(out, "out", keep, frame, base, _SLOT["lse"], handle)
    args.lse = dltensor(lse, "lse", keep, frame, base, _SLOT["seqlens_kv"], handle)
    args.stream = handle or None
    status = lib.fj_attention_merge(context._live(), ctypes.byref(args))
    if status != _ffi.FJ_OK:
        _fail(lib, status, "flashjit.merge")
    return out, lse
