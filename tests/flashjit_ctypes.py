"""flashjit_ctypes.py: flashjit's public structs for ctypes (Python callers such as tests/torch_interop.py)
and a check that they match the library's. Run as a script, python3 flashjit_ctypes.py <libflashjit.so>,
it checks that each struct's init function fills exactly the bytes declared here (a struct that lacks a
field the library has would be filled past its end by the plain init functions; the *_init_size ones,
which these bindings use, stop at the size given). Exit 0 when they match, 1 naming the one that does not."""
import ctypes
import sys


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
                ("disable_disk_cache", ctypes.c_int)]


class ProblemShape(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("dtype", DLDataType), ("batch", ctypes.c_int64),
                ("seqlen_q", ctypes.c_int64), ("seqlen_kv", ctypes.c_int64), ("heads", ctypes.c_int),
                ("kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int), ("causal", ctypes.c_int),
                ("with_lse", ctypes.c_int), ("varlen", ctypes.c_int), ("page_size", ctypes.c_int),
                ("windowed", ctypes.c_int), ("window_left", ctypes.c_int64), ("window_right", ctypes.c_int64),
                ("varlen_q", ctypes.c_int), ("sinks", ctypes.c_int), ("softcap", ctypes.c_float),
                ("kv_dtype", DLDataType), ("packed_k", ctypes.c_int), ("alibi", ctypes.c_int),
                ("head_dim_v", ctypes.c_int)]


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
                ("v_scale", ctypes.c_float)]


STRUCTS = [("fj_context_options", ContextOptions), ("fj_problem_shape", ProblemShape),
           ("fj_attention_args", AttentionArgs)]


def init(lib, name, struct):
    """A new struct filled by the library's defaults, through <name>_init_size (never past its end)."""
    value = struct()
    getattr(lib, name + "_init_size")(ctypes.byref(value), ctypes.c_size_t(ctypes.sizeof(struct)))
    return value


def check_layout(lib):
    """None when the library's structs are the size declared here, else what differs."""
    for name, struct in STRUCTS:
        # The plain init writes the library's whole struct: give it room, then read its struct_size.
        room = (ctypes.c_uint8 * 4096)()
        getattr(lib, name + "_init")(ctypes.byref(room))
        size = ctypes.c_uint32.from_buffer(room).value
        if size != ctypes.sizeof(struct):
            return "%s: the library's struct has %d bytes, flashjit_ctypes.py declares %d" % (
                name, size, ctypes.sizeof(struct))
    return None


def main():
    lib = ctypes.CDLL(sys.argv[1])
    problem = check_layout(lib)
    if problem:
        print("FAIL", problem)
        return 1
    print("ok   the ctypes structs match the library (%s)" % ", ".join(
        "%s %d bytes" % (name, ctypes.sizeof(struct)) for name, struct in STRUCTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
