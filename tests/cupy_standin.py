"""A CuPy stand-in over NumPy, for proving the CuPy code path on machines without a GPU.

Installed as ``sys.modules["cupy"]`` (:func:`installed`), it is what ``import cupy`` gives, so
``cca_scale.core.backend.array_module("cupy")``, ``array_api_compat.array_namespace`` (through its
``array_api_compat.cupy`` wrapper), ``is_cupy_array``, ``to_host`` and ``synchronize`` take their
CuPy branches unchanged. Where it matters it behaves as CuPy does:

- :class:`ndarray` wraps a NumPy array ("device memory"). ``np.asarray(x)``, ``np.array(x)`` and
  ``x.__array__()`` raise ``TypeError`` ("Implicit conversion to a NumPy array is not allowed"),
  so a device array never turns into a host array without an explicit transfer.
- Mixing with NumPy arrays is refused: stand-in functions, operators, ``__array_ufunc__`` (NumPy
  ufuncs) and ``__array_function__`` (other NumPy functions) raise ``TypeError`` on a
  ``numpy.ndarray`` operand, ``out=`` or assigned value. Python and NumPy scalars are accepted.
  NumPy functions on stand-in arrays only dispatch to the stand-in, as with CuPy.
- Transfers are counted (:data:`COUNTS`): device-to-host by ``x.get()``, :func:`asnumpy`, and the
  implicit synchronising ones ``float(x)``, ``int(x)``, ``bool(x)``, ``complex(x)``,
  ``operator.index(x)``, ``x.item()``, ``x.tolist()``; host-to-device by :func:`asarray` /
  :func:`array` of host data. Each device-to-host transfer also records its call site
  (:data:`D2H_SITES`, ``file:line`` of the first frame outside this module).

Reductions and integer indexing give 0-d arrays (as CuPy does), never host scalars. Not modelled:
streams, asynchrony, memory limits, CuPy's differing dtype promotion in corner cases, and
indexing a stand-in array with NumPy index arrays is accepted (as CuPy does).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import functools
import os
import sys
import threading
import types

import numpy as np

_HERE = os.path.abspath(__file__)
_LOCK = threading.Lock()

#: Transfer counts by kind: ``'d2h'`` (all device-to-host), ``'h2d'``, and one key per way
#: (``'get'``, ``'asnumpy'``, ``'float'``, ``'int'``, ``'bool'``, ``'item'``, ...).
COUNTS: collections.Counter = collections.Counter()
#: Device-to-host transfers by call site, ``'path/file.py:line'`` -> count.
D2H_SITES: collections.Counter = collections.Counter()

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
             "construct a NumPy array explicitly.")


def reset_counts() -> None:
    """Zero :data:`COUNTS` and :data:`D2H_SITES`."""
    with _LOCK:
        COUNTS.clear()
        D2H_SITES.clear()


#: Helpers that only pass a transfer on: a site inside one also names its caller.
_PASS_ON = frozenset({"to_host", "_to_host"})


def _caller() -> str:
    """``file:line`` of the first frame outside this module (and its caller's, through a
    :data:`_PASS_ON` helper such as ``cca_scale.core.backend.to_host``)."""
    frame = sys._getframe(2)
    while frame is not None and os.path.abspath(frame.f_code.co_filename) == _HERE:
        frame = frame.f_back
    if frame is None:
        return "?"
    site = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    if frame.f_code.co_name in _PASS_ON and frame.f_back is not None:
        back = frame.f_back
        site = f"{back.f_code.co_filename}:{back.f_lineno} via {site}"
    return site


def _count_d2h(kind: str) -> None:
    site = _caller()
    with _LOCK:
        COUNTS["d2h"] += 1
        COUNTS[kind] += 1
        D2H_SITES[site] += 1


def _count_h2d() -> None:
    with _LOCK:
        COUNTS["h2d"] += 1


# -- wrapping and unwrapping ---------------------------------------------------------------------

def _refuse(what) -> TypeError:
    return TypeError(f"Unsupported type {type(what)} (a NumPy array mixed with device arrays; "
                     "move it with cupy.asarray first)")


def _unwrap(obj):
    """Device arrays to their NumPy data, recursively through lists and tuples; a NumPy array
    (not a NumPy scalar) is refused."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, np.ndarray):
        raise _refuse(obj)
    if type(obj) in (list, tuple):
        return type(obj)(_unwrap(o) for o in obj)
    return obj


def _wrap(obj):
    """NumPy results to device arrays: arrays and NumPy scalars (as 0-d arrays, like CuPy's
    reductions), recursively through tuples, named tuples and lists."""
    if isinstance(obj, np.ndarray):
        return ndarray._of(obj)
    if isinstance(obj, np.generic):
        return ndarray._of(np.asarray(obj))
    if isinstance(obj, tuple):
        items = [_wrap(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _call(fn, args, kwargs):
    out = kwargs.get("out")
    args = _unwrap(args)
    kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
    result = fn(*args, **kwargs)
    if isinstance(out, ndarray):
        return out
    if type(out) is tuple and builtins.all(isinstance(o, ndarray) for o in out):
        return out if len(out) > 1 else out[0]
    return _wrap(result)


def _device_function(fn):
    @functools.wraps(fn)
    def device_fn(*args, **kwargs):
        return _call(fn, args, kwargs)

    return device_fn


class ufunc:
    """A NumPy ufunc on device arrays (call, ``reduce``, ``accumulate``, ``outer``, ``at``)."""

    def __init__(self, uf: np.ufunc):
        self._uf = uf
        self.__name__ = uf.__name__
        self.nin, self.nout, self.nargs = uf.nin, uf.nout, uf.nargs

    def __call__(self, *args, **kwargs):
        return _call(self._uf, args, kwargs)

    def __getattr__(self, name):
        if name in ("reduce", "accumulate", "outer", "at", "reduceat"):
            return _device_function(getattr(self._uf, name))
        raise AttributeError(name)

    def __repr__(self):
        return f"<standin ufunc {self.__name__!r}>"


# -- the array type ------------------------------------------------------------------------------

_METHODS = (
    "all", "any", "argmax", "argmin", "argsort", "astype", "clip", "conj", "conjugate", "copy",
    "cumprod", "cumsum", "diagonal", "dot", "fill", "flatten", "max", "mean", "min", "nonzero",
    "prod", "ravel", "repeat", "reshape", "round", "sort", "squeeze", "std", "sum", "swapaxes",
    "take", "trace", "transpose", "var", "view", "__copy__", "__deepcopy__",
)


def _binary(name):
    uf = getattr(np, name)

    def op(self, other):
        return _call(uf, (self, other), {})

    def rop(self, other):
        return _call(uf, (other, self), {})

    def iop(self, other):
        _call(uf, (self, other), {"out": self})
        return self

    return op, rop, iop


class ndarray:
    """A device array: a NumPy array that refuses implicit conversion and counts transfers.

    ``ndarray(shape, dtype=float)`` allocates an uninitialised array, as ``cupy.ndarray`` does.
    """

    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, shape, dtype=float, order="C"):
        self._a = np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a: np.ndarray) -> "ndarray":
        obj = object.__new__(cls)
        obj._a = a
        return obj

    # attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._of(self._a.T))
    mT = property(lambda self: ndarray._of(self._a.mT))
    device = property(lambda self: cuda.Device(0))

    def __getattr__(self, name):
        if name in _METHODS:
            return _device_function(getattr(self._a, name))
        raise AttributeError(f"'cupy.ndarray' stand-in has no attribute {name!r}")

    # explicit and implicit transfers
    def get(self, stream=None, order="C", out=None, blocking=True):
        """Device to host: a NumPy copy (counted)."""
        _count_d2h("get")
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, arr, stream=None):
        """Host to device, in place (counted)."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        _count_h2d()
        self._a[...] = arr

    def item(self, *args):
        _count_d2h("item")
        return self._a.item(*args)

    def tolist(self):
        _count_d2h("tolist")
        return self._a.tolist()

    def __float__(self):
        _count_d2h("float")
        return float(self._a)

    def __int__(self):
        _count_d2h("int")
        return int(self._a)

    def __index__(self):
        _count_d2h("index")
        return self._a.__index__()

    def __complex__(self):
        _count_d2h("complex")
        return complex(self._a)

    def __bool__(self):
        _count_d2h("bool")
        return builtins.bool(self._a)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        return _call(getattr(uf, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        module = sys.modules[__name__]
        for part in func.__module__.split(".")[1:]:
            module = getattr(module, part, None)
        mine = getattr(module, func.__name__, None) if module is not None else None
        if mine is None:
            return NotImplemented
        return mine(*args, **kwargs)

    def __array_namespace__(self, api_version=None):
        import array_api_compat.cupy

        return array_api_compat.cupy

    # container protocol
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value)

    def __repr__(self):
        return "standin_" + repr(self._a)

    __str__ = __repr__

    # operators
    __add__, __radd__, __iadd__ = _binary("add")
    __sub__, __rsub__, __isub__ = _binary("subtract")
    __mul__, __rmul__, __imul__ = _binary("multiply")
    __truediv__, __rtruediv__, __itruediv__ = _binary("true_divide")
    __floordiv__, __rfloordiv__, __ifloordiv__ = _binary("floor_divide")
    __mod__, __rmod__, __imod__ = _binary("remainder")
    __pow__, __rpow__, __ipow__ = _binary("power")
    __matmul__, __rmatmul__, __imatmul__ = _binary("matmul")
    __and__, __rand__, __iand__ = _binary("bitwise_and")
    __or__, __ror__, __ior__ = _binary("bitwise_or")
    __xor__, __rxor__, __ixor__ = _binary("bitwise_xor")
    __lt__ = _binary("less")[0]
    __le__ = _binary("less_equal")[0]
    __gt__ = _binary("greater")[0]
    __ge__ = _binary("greater_equal")[0]
    __eq__ = _binary("equal")[0]
    __ne__ = _binary("not_equal")[0]

    def __neg__(self):
        return _wrap(-self._a)

    def __pos__(self):
        return _wrap(+self._a)

    def __abs__(self):
        return _wrap(np.abs(self._a))

    def __invert__(self):
        return _wrap(~self._a)


def _index(key):
    """An index with device arrays unwrapped; NumPy index arrays are accepted, as CuPy does."""
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, tuple):
        return tuple(k._a if isinstance(k, ndarray) else k for k in key)
    return key


# -- creation and explicit transfers -------------------------------------------------------------

def _from_host(obj, dtype, copy, order):
    if isinstance(obj, ndarray):
        a = obj._a
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return ndarray._of(a.astype(dtype, order=order))
        return ndarray._of(np.array(a, order=order)) if copy else obj
    if type(obj) in (list, tuple) and builtins.any(isinstance(o, ndarray) for o in obj):
        # a sequence of device arrays is stacked on the device (as CuPy does); with host
        # arrays among them it is a mix
        return ndarray._of(np.array(_unwrap(obj), dtype=dtype, order=order))
    _count_h2d()
    return ndarray._of(np.array(obj, dtype=dtype, order=order, copy=True))


def asarray(a, dtype=None, order=None, *, blocking=False):
    """A device array of ``a``: no copy if it already is one, else a host-to-device copy."""
    return _from_host(a, dtype, False, order or "K")


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """A device array of ``obj`` (a copy unless ``copy=False`` allows none)."""
    out = _from_host(obj, dtype, builtins.bool(copy), order)
    if ndmin > out.ndim:
        out = ndarray._of(out._a.reshape((1,) * (ndmin - out.ndim) + out.shape))
    return out


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """A NumPy array of ``a``: a counted device-to-host copy for a device array."""
    if isinstance(a, ndarray):
        _count_d2h("asnumpy")
        if out is not None:
            out[...] = a._a
            return out
        return np.array(a._a, order=order)
    return np.asarray(a, order=order)


def get_array_module(*args):
    """This module if any argument is a device array, else NumPy."""
    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in args) else np


def fuse(*args, **kwargs):
    """``cupy.fuse``: the function itself (it runs on device arrays unchanged)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


# -- the namespace: NumPy's, on device arrays ----------------------------------------------------

_SKIP = {"asarray", "array", "asanyarray", "ndarray", "ufunc", "get_array_module", "fuse",
         "asarray_chkfinite", "frombuffer", "fromfile", "fromiter", "load", "loadtxt", "save",
         "savez", "savez_compressed", "savetxt", "genfromtxt", "memmap", "info", "test",
         "show_config", "set_printoptions", "get_printoptions", "printoptions"}


def _fill(namespace: dict, source, skip=frozenset()) -> list[str]:
    """Device versions of ``source``'s public functions, ufuncs, types and constants."""
    names = []
    for name in dir(source):
        if name.startswith("_") or name in skip:
            continue
        value = getattr(source, name)
        if isinstance(value, types.ModuleType):
            continue
        if isinstance(value, np.ufunc):
            value = ufunc(value)
        elif isinstance(value, type):
            pass  # dtypes, finfo, iinfo... as CuPy re-exports them
        elif callable(value):
            value = _device_function(value)
        namespace[name] = value
        names.append(name)
    return names


__all__ = _fill(globals(), np, _SKIP) + [
    "asarray", "array", "asanyarray", "asnumpy", "ndarray", "ufunc", "get_array_module", "fuse",
]


def _submodule(name: str, source=None, **extra) -> types.ModuleType:
    mod = types.ModuleType(f"{__name__}.{name}")
    names = _fill(mod.__dict__, source) if source is not None else []
    mod.__dict__.update(extra)
    mod.__all__ = names + list(extra)
    return mod


linalg = _submodule("linalg", np.linalg)
fft = _submodule("fft", np.fft)


# -- cupy.cuda: one device, a null stream ---------------------------------------------------------

class Device:
    """``cupy.cuda.Device``: device 0 only; a context manager that does nothing."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(getattr(device, "id", device))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("Device", self.id))

    def __repr__(self):
        return f"<CUDA Device {self.id} (stand-in)>"

    def synchronize(self):
        with _LOCK:
            COUNTS["synchronize"] += 1


class Stream:
    """``cupy.cuda.Stream``: ``synchronize()`` is counted (a wait, not a transfer)."""

    null: "Stream"

    def __init__(self, null=False, non_blocking=False, ptds=False):
        pass

    def synchronize(self):
        with _LOCK:
            COUNTS["synchronize"] += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


Stream.null = Stream(null=True)


def _device_properties(device):
    return {"name": b"CuPy stand-in (NumPy)", "totalGlobalMem": 0, "multiProcessorCount": 1}


runtime = _submodule("cuda.runtime", getDeviceCount=lambda: 1,
                     getDeviceProperties=_device_properties,
                     runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000)
_device_module = _submodule("cuda.device", Device=Device)
cuda = _submodule("cuda", Device=Device, Stream=Stream, ExternalStream=Stream,
                  runtime=runtime, device=_device_module, is_available=lambda: True)

__version__ = "14.0.0+standin"


def modules() -> dict[str, types.ModuleType]:
    """Everything :func:`installed` puts in ``sys.modules``, by name."""
    me = sys.modules[__name__]
    return {"cupy": me, "cupy.linalg": linalg, "cupy.fft": fft, "cupy.cuda": cuda,
            "cupy.cuda.runtime": runtime, "cupy.cuda.device": _device_module}


@contextlib.contextmanager
def installed():
    """Make ``import cupy`` give this stand-in inside the block, with ``array_api_compat``'s CuPy
    wrapper re-imported over it and its class caches cleared; the counts start at zero. Whatever
    was there before (a real CuPy, its wrapper) is put back afterwards. Yields the module."""
    import array_api_compat

    wrapper = "array_api_compat.cupy"
    saved = {name: mod for name, mod in sys.modules.items()
             if name.split(".")[0] == "cupy" or name.startswith(wrapper)}
    saved_attr = array_api_compat.__dict__.get("cupy")
    for name in saved:
        del sys.modules[name]
    array_api_compat.__dict__.pop("cupy", None)
    sys.modules.update(modules())
    clear_caches()
    reset_counts()
    try:
        yield sys.modules[__name__]
    finally:
        for name in [n for n in sys.modules
                     if n.split(".")[0] == "cupy" or n.startswith(wrapper)]:
            del sys.modules[name]
        sys.modules.update(saved)
        array_api_compat.__dict__.pop("cupy", None)
        if saved_attr is not None:
            array_api_compat.cupy = saved_attr
        clear_caches()


def clear_caches() -> None:
    """Clear ``array_api_compat``'s ``lru_cache``-d helpers (they remember class -> module)."""
    from array_api_compat.common import _helpers

    for value in vars(_helpers).values():
        if hasattr(value, "cache_clear"):
            value.cache_clear()
