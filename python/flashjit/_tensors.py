"""_tensors.py: the caller's arrays as DLTensors, borrowed for one call, and outputs made like them.

PyTorch tensors are described from data_ptr(), shape and stride() directly, written into the call's
CallFrame (_ffi.py) by struct.pack_into: that is cheaper than a DLPack capsule, or ctypes objects, per
tensor per call, and it takes the fp8 dtypes, which some PyTorch versions do not export through DLPack.
Anything else (numpy, CuPy, JAX arrays) goes through the DLPack protocol: its __dlpack__ capsule is
read, not consumed, so the producer keeps its memory and frees it when the capsule goes (it is held
until the call returns), and the call points at the producer's own DLTensor."""
import ctypes
import struct
import sys

from ._ffi import (KDL_BFLOAT, KDL_CPU, KDL_CUDA, KDL_FLOAT, KDL_FLOAT8_E4M3FN, KDL_FLOAT8_E5M2, KDL_INT, KDL_UINT,
                   MAX_NDIM, CallFrame, DLTensor)

# A DLTensor (dlpack.h) field by field: data, device (type, id), ndim, dtype (code, bits, lanes), shape,
# strides, byte_offset; and a tensor's shape then strides, per ndim.
_TENSOR = struct.Struct("<QiiiBBHQQQ")
_DIMS = [struct.Struct("<%dq" % (2 * n)) for n in range(MAX_NDIM + 1)]
_TENSORS_AT, _DIMS_AT = CallFrame.tensors.offset, CallFrame.dims.offset
assert (_TENSOR.size == ctypes.sizeof(DLTensor) and DLTensor.shape.offset == 24 and DLTensor.dtype.offset == 20
        and DLTensor.byte_offset.offset == 40), "DLTensor's layout is not the one _TENSOR packs"

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]


def is_torch(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_numpy(x):
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(x, numpy.ndarray)


_torch_codes = None


def _torch_dtype_code(torch, dtype, name):
    global _torch_codes
    if _torch_codes is None:
        codes = {torch.float32: (KDL_FLOAT, 32), torch.float16: (KDL_FLOAT, 16), torch.bfloat16: (KDL_BFLOAT, 16),
                 torch.int32: (KDL_INT, 32), torch.int64: (KDL_INT, 64), torch.uint8: (KDL_UINT, 8)}
        for attr, code in (("float8_e4m3fn", KDL_FLOAT8_E4M3FN), ("float8_e5m2", KDL_FLOAT8_E5M2)):
            if hasattr(torch, attr):
                codes[getattr(torch, attr)] = (code, 8)
        _torch_codes = codes
    if dtype not in _torch_codes:
        raise TypeError("%s: dtype %s is not one flashjit reads (float32, float16, bfloat16, float8_e4m3fn, "
                        "float8_e5m2; int32 for lengths, offsets and block tables)" % (name, dtype))
    return _torch_codes[dtype]


def _from_torch(x, name, keep, frame, base, slot):
    torch = sys.modules["torch"]
    code, bits = _torch_dtype_code(torch, x.dtype, name)
    kind, index = device_of(x)
    if kind not in (KDL_CPU, KDL_CUDA):
        raise TypeError("%s: a tensor on %s; flashjit takes cpu and cuda tensors" % (name, x.device))
    ndim = x.dim()
    if ndim > MAX_NDIM:
        raise ValueError("%s: %d dimensions; flashjit's tensors have at most 4" % (name, ndim))
    dims = _DIMS_AT + slot * 2 * MAX_NDIM * 8
    _DIMS[ndim].pack_into(frame, dims, *x.shape, *x.stride())
    at = _TENSORS_AT + slot * _TENSOR.size
    _TENSOR.pack_into(frame, at, x.data_ptr(), kind, index, ndim, code, bits, 1, base + dims, base + dims + 8 * ndim, 0)
    keep.append(x)
    return base + at


def _from_dlpack(x, name, keep, stream):
    export = getattr(x, "__dlpack__", None)
    if export is None:
        raise TypeError("%s: a %s is not an array flashjit can read: it takes torch tensors and objects with "
                        "__dlpack__ (numpy arrays, CuPy, JAX)" % (name, type(x).__name__))
    device_type = KDL_CPU
    where = getattr(x, "__dlpack_device__", None)
    if where is not None:
        device_type = int(where()[0])
    try:
        # DLPack's stream argument is for device arrays only (the producer orders its work before it):
        # 1 names CUDA's legacy default stream, which a handle of 0 is.
        capsule = export() if device_type == KDL_CPU else export(stream=stream if stream else 1)
    except (BufferError, TypeError, ValueError, RuntimeError) as error:
        raise TypeError("%s: %s.__dlpack__ refused to share its memory: %s" % (name, type(x).__name__, error)) from None
    if not _capsule_is_valid(capsule, b"dltensor"):
        raise TypeError("%s: %s.__dlpack__ gave no unused DLPack capsule" % (name, type(x).__name__))
    keep.append(capsule)  # the capsule owns the DLManagedTensor, whose first member is the DLTensor
    return _capsule_pointer(capsule, b"dltensor")


def dltensor(x, name, keep, frame, base, slot, stream=0):
    """The address of a DLTensor viewing x for the length of one call, or None for None: a torch
    tensor's written into slot `slot` of frame (a CallFrame at address base), another array's its
    producer's own; keep holds what the call borrows."""
    if x is None:
        return None
    if is_torch(x):
        return _from_torch(x, name, keep, frame, base, slot)
    return _from_dlpack(x, name, keep, stream)


def device_of(x):
    """(DLPack device type, index) of an array."""
    if is_torch(x):
        if x.is_cuda:
            return KDL_CUDA, x.get_device()
        # is_cpu: torch 1.10 and later (device.type costs a device object per call)
        return (KDL_CPU, 0) if getattr(x, "is_cpu", False) or x.device.type == "cpu" else (-1, 0)
    where = getattr(x, "__dlpack_device__", None)
    if where is None:
        return KDL_CPU, 0
    kind, index = where()
    return int(kind), int(index)


def empty_like(x, shape, float32, name):
    """A new uninitialised array of shape on x's device: x's dtype, or float32."""
    if is_torch(x):
        return x.new_empty(shape, dtype=sys.modules["torch"].float32) if float32 else x.new_empty(shape)
    if is_numpy(x):
        numpy = sys.modules["numpy"]
        return numpy.empty(shape, dtype=numpy.float32 if float32 else x.dtype)
    raise TypeError("%s: flashjit makes outputs for torch tensors and numpy arrays only; pass %s= for a %s"
                    % (name, name, type(x).__name__))
