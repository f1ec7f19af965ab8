"""_ffi.py: libflashjit through ctypes. Where the shared library is found, the public structs of
include/flashjit.h declared field for field, the prototypes of the functions the package calls, and a
check that the structs declared here are the library's.

main([_, <libflashjit.so>]) (test_python_api runs it) checks that each struct's plain init function
fills exactly the bytes declared here (a struct that lacks a field the library has would be filled past
its end by the plain init functions; the *_init_size ones, which this package uses, stop at the size
given). Exit 0 when they match, 1 naming the one that does not."""
import ctypes
import ctypes.util
import os
import threading

# DLPack's device types and type codes that flashjit reads (dlpack.h; the fp8 codes are DLPack 1.1's).
KDL_CPU, KDL_CUDA = 1, 2
KDL_INT, KDL_UINT, KDL_FLOAT, KDL_BFLOAT = 0, 1, 2, 4
KDL_FLOAT8_E4M3FN, KDL_FLOAT8_E5M2 = 10, 12

FJ_OK, FJ_INVALID_ARGUMENT = 0, 1


# fj_log_handler: (level, message, user)
LOG_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class ContextOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device", ctypes.c_char_p),
                ("cache_dir", ctypes.c_char_p), ("num_threads", ctypes.c_int),
                ("disable_disk_cache", ctypes.c_int), ("disable_served_log", ctypes.c_int)]


class ProblemShape(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("dtype", DLDataType), ("batch", ctypes.c_int64),
                ("seqlen_q", ctypes.c_int64), ("seqlen_kv", ctypes.c_int64), ("heads", ctypes.c_int),
                ("kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int), ("causal", ctypes.c_int),
                ("with_lse", ctypes.c_int), ("varlen", ctypes.c_int), ("page_size", ctypes.c_int),
                ("windowed", ctypes.c_int), ("window_left", ctypes.c_int64), ("window_right", ctypes.c_int64),
                ("varlen_q", ctypes.c_int), ("sinks", ctypes.c_int), ("softcap", ctypes.c_float),
                ("kv_dtype", DLDataType), ("packed_k", ctypes.c_int), ("alibi", ctypes.c_int),
                ("head_dim_v", ctypes.c_int), ("attn_bias_dtype", DLDataType)]


class AttentionArgs(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("q", ctypes.POINTER(DLTensor)),
                ("k", ctypes.POINTER(DLTensor)), ("v", ctypes.POINTER(DLTensor)),
                ("o", ctypes.POINTER(DLTensor)), ("lse", ctypes.POINTER(DLTensor)),
                ("softmax_scale", ctypes.c_float), ("causal", ctypes.c_int),
                ("stream", ctypes.c_void_p), ("seqlens_kv", ctypes.POINTER(DLTensor)),
                ("block_table", ctypes.POINTER(DLTensor)), ("workspace", ctypes.POINTER(DLTensor)),
                ("windowed", ctypes.c_int), ("window_left", ctypes.c_int64), ("window_right", ctypes.c_int64),
                ("cu_seqlens_q", ctypes.POINTER(DLTensor)), ("max_seqlen_q", ctypes.c_int64),
                ("sinks", ctypes.POINTER(DLTensor)), ("softcap", ctypes.c_float),
                ("cu_seqlens_k", ctypes.POINTER(DLTensor)), ("max_seqlen_k", ctypes.c_int64),
                ("alibi_slopes", ctypes.POINTER(DLTensor)), ("k_scale", ctypes.c_float),
                ("v_scale", ctypes.c_float), ("kv_split_keys", ctypes.c_int64),
                ("attn_bias", ctypes.POINTER(DLTensor))]


class MergeArgs(ctypes.Structure):
    # the tensors and the stream as addresses (ints), as the package fills them
    _fields_ = [("struct_size", ctypes.c_uint32), ("o_a", ctypes.c_void_p), ("o_b", ctypes.c_void_p),
                ("o", ctypes.c_void_p), ("lse_a", ctypes.c_void_p), ("lse_b", ctypes.c_void_p),
                ("lse", ctypes.c_void_p), ("stream", ctypes.c_void_p)]


STRUCTS = [("fj_context_options", ContextOptions), ("fj_problem_shape", ProblemShape),
           ("fj_attention_args", AttentionArgs), ("fj_merge_args", MergeArgs)]


def _with_addresses(struct):
    """struct's layout with every pointer field an address (an int): setting one costs no ctypes object."""
    fields = [(name, ctypes.c_void_p if issubclass(kind, ctypes._Pointer) else kind) for name, kind in struct._fields_]
    return type(struct.__name__ + "Addresses", (ctypes.Structure,), {"_fields_": fields})


AttentionArgsAddresses = _with_addresses(AttentionArgs)

# The tensors of a call, each a slot of a CallFrame (its DLTensor, and room for 8 dims of shape and strides).
TENSOR_SLOTS = ("q", "k", "v", "o", "lse", "seqlens_kv", "block_table", "workspace", "cu_seqlens_q", "sinks",
                "cu_seqlens_k", "alibi_slopes", "attn_bias")
MAX_NDIM = 8


class CallFrame(ctypes.Structure):
    """One call's fj_attention_args and the DLTensors it points at, with their shapes and strides, in one
    block the package fills in place (struct.pack_into at these offsets): a call makes no other ctypes
    object. args is at offset 0, so the frame's address is the args pointer."""
    _fields_ = [("args", AttentionArgsAddresses), ("tensors", DLTensor * len(TENSOR_SLOTS)),
                ("dims", ctypes.c_int64 * (2 * MAX_NDIM * len(TENSOR_SLOTS)))]


_frames = {}


def new_frame(lib):
    """A CallFrame whose args hold the library's defaults (fj_attention_args_init_size, once per library)."""
    prototype = _frames.get(id(lib))
    if prototype is None:
        prototype = CallFrame()
        lib.fj_attention_args_init_size(ctypes.addressof(prototype), ctypes.c_size_t(ctypes.sizeof(AttentionArgs)))
        _frames[id(lib)] = prototype
    return CallFrame.from_buffer_copy(prototype)


def init(lib, name, struct):
    """A new struct filled by the library's defaults, through <name>_init_size (never past its end)."""
    value = struct()
    getattr(lib, name + "_init_size")(ctypes.byref(value), ctypes.c_size_t(ctypes.sizeof(struct)))
    return value


def check_layout(lib, exact=True):
    """None when the library's structs are the size declared here, else what differs. With exact=False
    a struct declared shorter than the library's passes (an older binding: the library reads it only as
    far as its struct_size); one declared longer never does (its extra fields would be ignored)."""
    for name, struct in STRUCTS:
        # The plain init writes the library's whole struct: give it room, then read its struct_size.
        room = (ctypes.c_uint8 * 4096)()
        getattr(lib, name + "_init")(ctypes.byref(room))
        size = ctypes.c_uint32.from_buffer(room).value
        declared = ctypes.sizeof(struct)
        if size != declared and (exact or declared > size):
            return "%s: the library's struct has %d bytes, flashjit/_ffi.py declares %d" % (name, size, declared)
    # Sizes miss a field lost in padding: the documented defaults must land in the fields named here.
    shape, args = init(lib, "fj_problem_shape", ProblemShape), init(lib, "fj_attention_args", AttentionArgs)
    seen = {"fj_problem_shape": (shape.batch, shape.seqlen_q, shape.seqlen_kv, shape.heads, shape.kv_heads,
                                 shape.head_dim, shape.window_left, shape.window_right),
            "fj_attention_args": (args.window_left, args.window_right)}
    documented = {"fj_problem_shape": (1, 2048, 2048, 8, 8, 128, -1, -1), "fj_attention_args": (-1, -1)}
    for name in seen:
        if seen[name] != documented[name]:
            return "%s: the library's defaults read %s through flashjit/_ffi.py's fields, not %s" % (
                name, seen[name], documented[name])
    return None


def _declare(lib):
    c_void_p, c_size_t = ctypes.c_void_p, ctypes.c_size_t
    lib.fj_last_error.restype = ctypes.c_char_p
    lib.fj_last_error.argtypes = []
    lib.fj_status_string.restype = ctypes.c_char_p
    lib.fj_status_string.argtypes = [ctypes.c_int]
    lib.fj_version_string.restype = ctypes.c_char_p
    lib.fj_version_string.argtypes = []
    lib.fj_set_log_handler.argtypes = [LOG_HANDLER, c_void_p]
    lib.fj_set_log_level.argtypes = [ctypes.c_int]
    lib.fj_context_create.argtypes = [ctypes.POINTER(ContextOptions), ctypes.POINTER(c_void_p)]
    lib.fj_context_destroy.argtypes = [c_void_p]
    lib.fj_context_device_name.argtypes = [c_void_p, ctypes.c_char_p, c_size_t]
    lib.fj_context_warmup.argtypes = [c_void_p, ctypes.POINTER(ProblemShape), c_size_t, ctypes.POINTER(c_size_t)]
    # args by address: a CallFrame's (its args first)
    lib.fj_attention_forward.argtypes = [c_void_p, c_void_p]
    lib.fj_attention_workspace_size.argtypes = [c_void_p, c_void_p, ctypes.POINTER(c_size_t)]
    lib.fj_attention_merge.argtypes = [c_void_p, ctypes.POINTER(MergeArgs)]
    for name, _ in STRUCTS:
        getattr(lib, name + "_init_size").argtypes = [c_void_p, c_size_t]
        getattr(lib, name + "_init_size").restype = None


def library_candidates():
    """Where the library is looked for, in order: FLASHJIT_LIBRARY, beside this package (where the
    build puts a copy: build/python/flashjit), three folders up (where `cmake --install` puts it:
    <libdir>/flashjit/python/flashjit -> <libdir>), then the loader's search path."""
    named = os.environ.get("FLASHJIT_LIBRARY")
    if named:
        return [named]
    package = os.path.dirname(os.path.abspath(__file__))
    here = os.path.join(package, "libflashjit.so")
    installed = os.path.normpath(os.path.join(package, "..", "..", "..", "libflashjit.so"))
    found = ctypes.util.find_library("flashjit")
    # libflashjit.so.0: the soname, all a runtime-only install (without the link name) has
    return [here, installed] + ([found] if found else []) + ["libflashjit.so", "libflashjit.so.0"]


_lib = None
_lock = threading.Lock()


def library():
    """The loaded library (loaded, declared and checked on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            tried = []
            for path in library_candidates():
                if os.sep in path and not os.path.exists(path):
                    tried.append("%s (no such file)" % path)
                    continue
                try:
                    lib = ctypes.CDLL(path)
                except OSError as error:
                    tried.append("%s (%s)" % (path, error))
                    continue
                _declare(lib)
                problem = check_layout(lib, exact=False)
                if problem:
                    raise ImportError("flashjit: %s is another version than this package: %s" % (path, problem))
                _lib = lib
                break
            if _lib is None:
                raise ImportError("flashjit: libflashjit.so not found; set FLASHJIT_LIBRARY to its path. Tried: "
                                  + "; ".join(tried))
    return _lib


def main(argv):
    if len(argv) != 2:
        print("usage: python3 -m flashjit._ffi <libflashjit.so>")
        return 2
    lib = ctypes.CDLL(argv[1])
    problem = check_layout(lib)
    if problem:
        print("FAIL", problem)
        return 1
    print("ok   the ctypes structs match the library (%s)" % ", ".join(
        "%s %d bytes" % (name, ctypes.sizeof(struct)) for name, struct in STRUCTS))
    return 0

