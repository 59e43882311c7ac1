"""A numpy reference interpreter for CoreML ML Programs (.mlpackage).

Hand-written because nothing else runs an ML Program off macOS: Apple's runtime
(`MLModel.predict`) exists only there, and coremltools on Linux can write a
package but not execute it. This interpreter executes the saved file itself (the
spec protobuf and `weights/weight.bin`), so what is proved is the program that
ships, not the PyTorch graph it came from. It proves the program, not Apple's
kernels: every op's result is rounded to the dtype the program declares for it
(an fp16 program computes in fp16 op by op), but accumulation order and the
kernels' own approximations are not Apple's.

Ops are those the zoo's programs contain (see `OPS`); any other op fails at load
time with its name. Constants and constexpr dequantisation run once at load.
The protobuf classes come from coremltools' generated `proto` modules, loaded
without importing coremltools itself (whose package import pulls in torch).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ArtifactError, MissingDependencyError

# MIL DataType enum -> numpy dtype (MIL.proto)
_MIL_DTYPES = {1: np.bool_, 10: np.float16, 11: np.float32, 12: np.float64, 21: np.int8, 22: np.int16, 23: np.int32,
               24: np.int64, 31: np.uint8, 32: np.uint16, 33: np.uint32, 34: np.uint64}
# weight.bin blob dtype codes (coremltools' MILBlob storage format)
_BLOB_DTYPES = {1: np.float16, 2: np.float32, 3: np.uint8, 4: np.int8, 6: np.int16, 7: np.uint16, 9: np.int32, 10: np.uint32}
_BLOB_SENTINEL = 0xDEADBEEF
_CAST_DTYPES = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8, "uint8": np.uint8,
                "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "int64": np.int64, "bool": np.bool_}


class UnsupportedOpError(ArtifactError):
    """The program uses an op this interpreter does not implement."""


def proto_modules():
    """coremltools' generated Model_pb2 / MIL_pb2, imported as a stand-alone package (no torch, no coremltools init)."""
    name = "_edge_sdk_coreml_proto"
    if name not in sys.modules:
        spec = importlib.util.find_spec("coremltools")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError("coremltools", "coreml", "Reading .mlpackage files")
        package = types.ModuleType(name)
        package.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "proto")]
        sys.modules[name] = package
    return importlib.import_module(f"{name}.Model_pb2"), importlib.import_module(f"{name}.MIL_pb2")


def read_spec(package: Path):
    """The Model protobuf of an .mlpackage and the folder its weights are relative to."""
    model_pb2, _ = proto_modules()
    manifest = package / "Manifest.json"
    try:
        info = json.loads(manifest.read_text())
        root = info["itemInfoEntries"][info["rootModelIdentifier"]]
        spec_path = package / "Data" / root["path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{package} is not an .mlpackage: cannot read {manifest.name} ({exc})",
                            "re-create it with `edge-sdk convert ... --target coreml`") from None
    spec = model_pb2.Model()
    try:
        spec.ParseFromString(spec_path.read_bytes())
    except (OSError, Exception) as exc:  # protobuf raises DecodeError, files raise OSError
        raise ArtifactError(f"{package}: cannot read the model spec {spec_path.name}: {exc}",
                            "re-create it with `edge-sdk convert ... --target coreml`") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise ArtifactError(f"{package} holds a {spec.WhichOneof('Type')} model, not an ML Program",
                            "convert with `--target coreml`, which writes ML Programs")
    return spec, spec_path.parent


class WeightFile:
    """`weights/weight.bin`: a 64-byte header, then per blob a 64-byte record and 64-byte-aligned data."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise ArtifactError(f"the weight file {path} is missing or unreadable: {exc.strerror}",
                                "re-create the package; an .mlpackage must be copied as a whole folder") from None

    def blob(self, offset: int, shape: tuple[int, ...], declared) -> np.ndarray:
        header = self.data[offset : offset + 64]
        if len(header) < 24:
            raise ArtifactError(f"{self.path} is truncated: no blob record at offset {offset}", "re-create the package")
        sentinel, code = header[:8].view(np.uint32)
        size, start = header[8:24].view(np.uint64)
        if sentinel != _BLOB_SENTINEL or int(code) not in _BLOB_DTYPES:
            raise ArtifactError(f"{self.path} is corrupt: no valid blob record at offset {offset}", "re-create the package")
        dtype = np.dtype(_BLOB_DTYPES[int(code)])
        raw = self.data[int(start) : int(start) + int(size)]
        if len(raw) != int(size):
            raise ArtifactError(f"{self.path} is truncated: blob at offset {offset} needs {int(size)} bytes, {len(raw)} left",
                                "re-create the package")
        values = raw.view(dtype)
        if declared is not None and np.dtype(declared) != dtype and np.dtype(declared).itemsize == dtype.itemsize:
            values = values.view(declared)  # e.g. int8 data declared as such, stored under the uint8 code
        return values.reshape(shape)


@dataclass
class _Op:
    type: str
    name: str
    fn: Callable
    inputs: dict  # input name -> ("var", name) | ("vars", [names]) | ("value", array)
    outputs: list[str]
    dtypes: list  # declared numpy dtype per output (None: not a tensor)


class Program:
    """A loaded ML Program: `run({input name: array}) -> {output name: value}`."""

    def __init__(self, package: str | Path):
        self.path = Path(package)
        spec, self._spec_dir = read_spec(self.path)
        self.spec = spec
        self._weights: WeightFile | None = None
        function = spec.mlProgram.functions["main"]
        block = function.block_specializations[function.opset]
        self.opset = function.opset
        self.input_names = [i.name for i in function.inputs]
        self.input_dtypes = {i.name: _MIL_DTYPES[i.type.tensorType.dataType] for i in function.inputs}
        self.output_names = list(block.outputs)
        self._consts: dict[str, np.ndarray] = {}
        self._ops: list[_Op] = []
        unknown = sorted({op.type for op in block.operations if op.type not in OPS and op.type not in CONSTEXPR_OPS
                          and op.type != "const"})
        if unknown:
            first = next(op for op in block.operations if op.type == unknown[0])
            raise UnsupportedOpError(
                f"{self.path.name}: the CoreML reference interpreter does not implement op {unknown[0]!r}"
                f" (first used by {_op_name(first)!r}; all unknown ops: {', '.join(unknown)})",
                "run it on macOS (MLModel.predict), or add the op to edge_sdk/runtime/mil_interpreter.py",
            )
        for op in block.operations:
            self._load_op(op)

    # -- loading ---------------------------------------------------------------------------------
    def _value(self, value, where: str):
        """A protobuf Value (immediate or in weight.bin) as a numpy array (or str / list of str)."""
        t = value.type.tensorType
        dtype = _MIL_DTYPES.get(t.dataType)
        shape = tuple(d.constant.size for d in t.dimensions)
        if value.HasField("blobFileValue"):
            if self._weights is None:
                self._weights = WeightFile(self._spec_dir / "weights" / "weight.bin")
            return self._weights.blob(value.blobFileValue.offset, shape, dtype)
        if value.immediateValue.WhichOneof("value") == "list":  # e.g. a classifier's labels
            return [self._value(v, where) for v in value.immediateValue.list.values]
        tensor = value.immediateValue.tensor
        kind = tensor.WhichOneof("value")
        if t.dataType == 2:  # STRING
            strings = list(tensor.strings.values)
            return strings[0] if not shape and len(strings) == 1 else strings
        if kind == "bytes":
            return np.frombuffer(tensor.bytes.values, dtype=dtype).reshape(shape).copy()
        if kind is None:
            return np.zeros(shape, dtype)
        return np.asarray(list(getattr(tensor, kind).values), dtype=dtype).reshape(shape)

    def _load_op(self, op) -> None:
        name = _op_name(op)
        if op.type == "const":
            self._consts[op.outputs[0].name] = _f(self._value(op.attributes["val"], name))
            return
        inputs = {}
        for key, arg in op.inputs.items():
            refs = [("var", b.name) if b.name else ("value", self._value(b.value, name)) for b in arg.arguments]
            inputs[key] = refs[0] if len(refs) == 1 and key != "values" else ("list", refs)
        if op.type in CONSTEXPR_OPS:
            args = {k: self._resolve(v) for k, v in inputs.items()}
            args.update({k: self._value(v, name) for k, v in op.attributes.items() if k != "name"})
            out = op.outputs[0]
            self._consts[out.name] = _round(CONSTEXPR_OPS[op.type](**args), _MIL_DTYPES.get(out.type.tensorType.dataType))
            return
        # inputs that are constants are resolved now; float16 constants feed float32 arithmetic exactly
        resolved = {}
        for key, ref in inputs.items():
            if ref[0] == "var" and ref[1] in self._consts:
                resolved[key] = ("value", self._consts[ref[1]])
            elif ref[0] == "list":
                resolved[key] = ("list", [("value", self._consts[r[1]]) if r[0] == "var" and r[1] in self._consts else r
                                          for r in ref[1]])
            else:
                resolved[key] = ref
        dtypes = [_MIL_DTYPES.get(o.type.tensorType.dataType) if o.type.WhichOneof("type") == "tensorType" else None
                  for o in op.outputs]
        self._ops.append(_Op(op.type, name, OPS[op.type], resolved, [o.name for o in op.outputs], dtypes))

    def _resolve(self, ref, env=None):
        kind, what = ref
        if kind == "value":
            return what
        if kind == "list":
            return [self._resolve(r, env) for r in what]
        if env is not None and what in env:
            return env[what]
        if what in self._consts:
            return self._consts[what]
        raise ArtifactError(f"{self.path.name}: the program reads {what!r} before any op writes it", "re-create the package")

    # -- running ---------------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> dict:
        env: dict = {n: _round(np.asarray(feeds[n], np.float32), self.input_dtypes[n]) for n in self.input_names}
        for op in self._ops:
            args = {k: self._resolve(v, env) for k, v in op.inputs.items()}
            try:
                with np.errstate(over="ignore"):  # exp overflow in sigmoid / silu gives the right limit
                    result = op.fn(**args)
            except (ValueError, TypeError, IndexError) as exc:
                raise ArtifactError(f"{self.path.name}: op {op.name!r} ({op.type}) failed: {exc}") from exc
            results = result if isinstance(result, tuple) else (result,)
            for out, dtype, value in zip(op.outputs, op.dtypes, results):
                env[out] = _round(value, dtype)
        return {n: env[n] if n in env else self._consts[n] for n in self.output_names}

    @property
    def op_types(self) -> list[str]:
        return sorted({op.type for op in self._ops})


def class_labels(spec) -> list[str]:
    """The labels of a classifier program (the `classes` of its `classify` op), else []."""
    if not spec.description.predictedProbabilitiesName:
        return []
    function = spec.mlProgram.functions["main"]
    operations = function.block_specializations[function.opset].operations
    consts = {o.outputs[0].name: o.attributes["val"] for o in operations if o.type == "const"}
    for op in operations:
        if op.type == "classify":
            arg = op.inputs["classes"].arguments[0]
            value = (consts[arg.name] if arg.name else arg.value).immediateValue
            items = [v.immediateValue.tensor for v in value.list.values] if value.WhichOneof("value") == "list" else [value.tensor]
            return [str(x) for t in items for x in getattr(t, t.WhichOneof("value")).values]
    return []


def _op_name(op) -> str:
    if "name" in op.attributes:
        strings = op.attributes["name"].immediateValue.tensor.strings.values
        if strings:
            return strings[0]
    return op.outputs[0].name if op.outputs else op.type


def _round(value, dtype):
    """A result as the program declares it. float16 values are held as float32 rounded to float16
    (exactly the same numbers; numpy's float16 arithmetic and conversions are many times slower)."""
    if dtype is None or not isinstance(value, (np.ndarray, np.generic, float, int)):
        return value
    value = np.asarray(value)
    if dtype is np.float16:
        return round_to_fp16(value)
    return value.astype(dtype, copy=False)


_FP16_SMALLEST_NORMAL = 0x38800000  # 2**-14 as float32 bits
_FP16_LARGEST_FINITE = 0x477FEFFF  # the last float32 that rounds to 65504, not to inf


def round_to_fp16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to the nearest float16 (ties to even), returned as float32.

    Normal numbers are rounded on their bits (drop 13 mantissa bits); the few
    subnormals take numpy's exact conversion, as does a tensor that overflows.
    """
    x = np.array(x, dtype=np.float32)  # a fresh array: rounded in place
    if x.size == 0:
        return x
    bits = x.view(np.uint32)
    magnitude = bits & np.uint32(0x7FFFFFFF)
    if magnitude.max() > _FP16_LARGEST_FINITE:
        return x.astype(np.float16).astype(np.float32)
    magnitude -= np.uint32(1)  # zero wraps around and is not flagged
    subnormal = np.flatnonzero(magnitude < _FP16_SMALLEST_NORMAL - 1)
    if subnormal.size:
        flat = x.reshape(-1)
        flat[subnormal] = flat[subnormal].astype(np.float16).astype(np.float32)  # exact in fp16: the bits below stay
    carry = bits >> np.uint32(13)
    carry &= np.uint32(1)
    carry += np.uint32(0x0FFF)
    bits += carry
    bits &= np.uint32(0xFFFFE000)
    return x


def _f(x) -> np.ndarray:
    """An arithmetic operand as float32 when it is float16 (constants are widened at load already)."""
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).ravel()]


# -- spatial ops ---------------------------------------------------------------------------------
def _pads(pad_type: str, pad, size: tuple[int, int], kernel, strides, dilations, ceil_mode=False) -> list[int]:
    """[top, bottom, left, right] for MIL's pad types (and ceil_mode's extra bottom / right rows)."""
    pad_type = str(pad_type)
    if pad_type == "custom":
        pads = _ints(pad) if pad is not None else [0, 0, 0, 0]
    elif pad_type == "valid":
        pads = [0, 0, 0, 0]
    elif pad_type in ("same", "same_lower"):
        pads = []
        for n, k, s, d in zip(size, kernel, strides, dilations):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, big = total // 2, total - total // 2
            pads += [small, big] if pad_type == "same" else [big, small]
    else:
        raise ValueError(f"pad_type {pad_type!r} is not supported")
    if ceil_mode:
        for i, (n, k, s) in enumerate(zip(size, kernel, strides)):
            span = n + pads[2 * i] + pads[2 * i + 1] - k
            if span % s:
                pads[2 * i + 1] += s - span % s
    return pads


def _windows(x: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """[N, C, Ho, Wo, kh, kw] view of the (already padded) NCHW input."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    view = sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, w = _f(x), _f(weight)
    if x.ndim != 4:
        raise ValueError(f"conv on rank-{x.ndim} input is not supported (2-D convolutions only)")
    cout, cin_g, kh, kw = w.shape
    strides = _ints(strides) if strides is not None else [1, 1]
    dilations = _ints(dilations) if dilations is not None else [1, 1]
    groups = int(groups)
    pads = _pads(pad_type, pad, x.shape[2:], (kh, kw), strides, dilations)
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), tuple(pads[:2]), tuple(pads[2:])))
    n, c = x.shape[:2]
    if kh == kw == 1 and groups == 1:
        xs = x[:, :, :: strides[0], :: strides[1]]
        ho, wo = xs.shape[2:]
        w2 = w.reshape(cout, cin_g)  # one 2-D matmul per image: numpy's batched matmul is several times slower
        y = np.stack([w2 @ xs[i].reshape(c, ho * wo) for i in range(n)]).reshape(n, cout, ho, wo)
    elif groups == c == cout and cin_g == 1:  # depthwise: one multiply-add per kernel tap
        win = _windows(x, (kh, kw), strides, dilations)
        ho, wo = win.shape[2:4]
        y = np.zeros((n, c, ho, wo), np.result_type(x, w))
        for i in range(kh):
            for j in range(kw):
                y += win[:, :, :, :, i, j] * w[None, :, 0, i, j, None, None]
    else:  # im2col per group, one matmul each
        win = _windows(x, (kh, kw), strides, dilations)
        ho, wo = win.shape[2:4]
        cols = win.reshape(n, groups, cin_g, ho, wo, kh, kw).transpose(0, 1, 3, 4, 2, 5, 6)
        cols = cols.reshape(n, groups, ho * wo, cin_g * kh * kw)
        wg = w.reshape(groups, cout // groups, cin_g * kh * kw)
        y = np.stack([np.stack([wg[g] @ cols[i, g].T for g in range(groups)]) for i in range(n)]).reshape(n, cout, ho, wo)
    if bias is not None:
        y = y + _f(bias)[None, :, None, None]
    return y


def _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, fill):
    x = _f(x)
    kernel = _ints(kernel_sizes)
    strides = _ints(strides) if strides is not None else [1, 1]
    pads = _pads(pad_type, pad, x.shape[2:], kernel, strides, [1, 1], bool(ceil_mode))
    padded = np.pad(x, ((0, 0), (0, 0), tuple(pads[:2]), tuple(pads[2:])), constant_values=fill) if any(pads) else x
    return padded, tuple(pads), kernel, strides


def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    """MIL batch_norm over axis 1 (channels), inference form."""
    x = _f(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = 1 / np.sqrt(_f(variance) + _f(epsilon))
    if gamma is not None:
        scale = scale * _f(gamma)
    out = (x - _f(mean).reshape(shape)) * scale.reshape(shape)
    return out + _f(beta).reshape(shape) if beta is not None else out


def pad(x, pad, mode="constant", constant_val=0.0):
    """MIL pad: `pad` holds (before, after) pairs for the last len(pad) / 2 axes."""
    x = _f(x)
    pairs = np.asarray(_ints(pad)).reshape(-1, 2)
    widths = [(0, 0)] * (x.ndim - len(pairs)) + [tuple(p) for p in pairs]
    if mode == "constant":
        return np.pad(x, widths, constant_values=_f(constant_val))
    if mode in ("reflect", "replicate"):
        return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    raise UnsupportedOpError(f"pad mode {mode!r} is not implemented")


def max_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    padded, _, kernel, strides = _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, -np.inf)
    return _windows(padded, kernel, strides, (1, 1)).max(axis=(4, 5))


def avg_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, exclude_padding_from_average=False, ceil_mode=False):
    padded, pads, kernel, strides = _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0)
    total = _windows(padded, kernel, strides, (1, 1)).sum(axis=(4, 5))
    if exclude_padding_from_average and any(pads):
        ones = np.pad(np.ones((1, 1, *np.shape(x)[2:]), np.float32), ((0, 0), (0, 0), pads[:2], pads[2:]))
        return total / _windows(ones, kernel, strides, (1, 1)).sum(axis=(4, 5))
    return total / (kernel[0] * kernel[1])


def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=False, half_pixel_centers=None):
    """Bilinear resize; half_pixel_centers defaults to `not align_corners` (MIL iOS16+ semantics)."""
    x = _f(x)
    h, w = x.shape[-2:]
    ho, wo = int(math.floor(h * float(scale_factor_height))), int(math.floor(w * float(scale_factor_width)))
    half = (not align_corners) if half_pixel_centers is None else bool(half_pixel_centers)

    def coords(n_out, n_in, scale):
        o = np.arange(n_out, dtype=np.float64)
        if align_corners:
            src = o * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros_like(o)
        elif half:
            src = np.maximum((o + 0.5) / scale - 0.5, 0.0)
        else:
            src = o / scale
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo).astype(np.float32)

    y0, y1, fy = coords(ho, h, float(scale_factor_height))
    x0, x1, fx = coords(wo, w, float(scale_factor_width))
    top = x[..., y0, :] * (1 - fy)[:, None] + x[..., y1, :] * fy[:, None]
    return top[..., x0] * (1 - fx) + top[..., x1] * fx


# -- elementwise and tensor ops ------------------------------------------------------------------
def _erf(x: np.ndarray) -> np.ndarray:
    """erf to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26): numpy has no erf and the runtime takes no scipy."""
    x64 = x.astype(np.float64)
    s, a = np.sign(x64), np.abs(x64)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    y = 1.0 - poly * np.exp(-a * a)
    return (s * y).astype(np.float32)


def gelu(x, mode="EXACT"):
    x = _f(x)
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1 + np.exp(-np.float32(1.702) * x))
    return 0.5 * x * (1 + _erf(x / np.float32(math.sqrt(2))))


def softmax(x, axis=-1):
    x = _f(x)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    x = _f(x)
    axes = tuple(_ints(axes)) if axes is not None else tuple(range(x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = np.square(x - mean).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.float32(epsilon))
    if gamma is not None:
        y = y * _f(gamma)
    if beta is not None:
        y = y + _f(beta)
    return y


def _reduce(fn):
    def reduce(x, axes=None, keep_dims=False):
        axes = tuple(_ints(axes)) if axes is not None else None
        return fn(_f(x), axis=axes, keepdims=bool(keep_dims))
    return reduce


def reshape(x, shape):
    shape = _ints(shape)
    shape = [np.shape(x)[i] if d == 0 else d for i, d in enumerate(shape)]
    return np.reshape(x, shape)


def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = np.asarray(x)
    begin, end = _ints(begin), _ints(end)
    stride = _ints(stride) if stride is not None else [1] * x.ndim
    begin_mask = [bool(v) for v in np.ravel(begin_mask)] if begin_mask is not None else [False] * x.ndim
    end_mask = [bool(v) for v in np.ravel(end_mask)] if end_mask is not None else [False] * x.ndim
    squeeze = [bool(v) for v in np.ravel(squeeze_mask)] if squeeze_mask is not None else [False] * x.ndim
    index = []
    for i in range(x.ndim):
        if squeeze[i]:
            index.append(begin[i])
            continue
        index.append(slice(None if begin_mask[i] else begin[i], None if end_mask[i] else end[i], stride[i]))
    return x[tuple(index)]


def concat(values, axis, interleave=False):
    if interleave:
        raise ValueError("concat with interleave is not supported")
    dtype = np.result_type(*values)
    return np.concatenate([np.asarray(v, dtype) for v in values], axis=int(axis))


def split(x, axis, num_splits=None, split_sizes=None):
    if split_sizes is not None:
        return tuple(np.split(x, np.cumsum(_ints(split_sizes))[:-1], axis=int(axis)))
    return tuple(np.split(x, int(num_splits), axis=int(axis)))


def linear(x, weight, bias=None):
    y = np.matmul(_f(x), _f(weight).T)
    return y + _f(bias) if bias is not None else y


def matmul(x, y, transpose_x=False, transpose_y=False):
    a, b = _f(x), _f(y)
    if transpose_x:
        a = np.swapaxes(a, -1, -2)
    if transpose_y:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


def _axis_shape(ndim: int, axis, size: int) -> list[int]:
    shape = [1] * ndim
    shape[int(axis) % ndim] = size
    return shape


def _qparams(x: np.ndarray, scale, zero_point, axis):
    scale = np.asarray(scale, np.float32)
    zero = np.asarray(zero_point if zero_point is not None else 0, np.float32)
    if axis is not None and scale.ndim == 1:
        scale = scale.reshape(_axis_shape(x.ndim, axis, scale.size))
        zero = zero.reshape(_axis_shape(x.ndim, axis, zero.size)) if zero.ndim == 1 else zero
    return scale, zero


def quantize(input, scale, output_dtype, zero_point=None, axis=None):
    x = _f(input).astype(np.float32)
    scale, zero = _qparams(x, scale, zero_point, axis)
    info = np.iinfo(_CAST_DTYPES[str(output_dtype)])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(_CAST_DTYPES[str(output_dtype)])


def dequantize(input, scale, zero_point=None, axis=None):
    x = np.asarray(input)
    scale, zero = _qparams(x, scale, zero_point, axis)
    return (x.astype(np.float32) - zero) * scale


def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    q = np.asarray(quantized_data)
    scale, zero = np.asarray(scale), np.asarray(zero_point)
    shape = _axis_shape(q.ndim, axis, -1)
    s = scale.reshape(shape) if scale.ndim else scale
    z = zero.reshape(shape) if zero.ndim else zero
    return ((q.astype(np.float32) - z.astype(np.float32)) * s.astype(np.float32)).astype(scale.dtype)


def constexpr_blockwise_shift_scale(data, scale, offset=None):
    """Each block of `data` (block size = data dim / scale dim) shares one scale (and offset)."""
    q = np.asarray(data).astype(np.float32)
    scale = np.asarray(scale)
    if offset is not None:
        q = q - _expand_blocks(np.asarray(offset).astype(np.float32), q.shape)
    return (q * _expand_blocks(scale.astype(np.float32), q.shape)).astype(scale.dtype)


def _expand_blocks(p: np.ndarray, shape) -> np.ndarray:
    for axis, (n, m) in enumerate(zip(shape, p.shape)):
        if m != n:
            p = np.repeat(p, n // m, axis=axis)
    return p


def classify(probabilities, classes):
    """The classifier head: (top label, {label: score}) over the program's class labels."""
    p = np.asarray(probabilities, np.float32).reshape(-1)
    labels = list(classes)
    return labels[int(np.argmax(p))], dict(zip(labels, p.tolist()))


def _cast(x, dtype):
    return np.asarray(x).astype(_CAST_DTYPES[str(dtype)])


def _binary(fn):
    return lambda x, y: fn(_f(x), _f(y))


def _unary(fn):
    return lambda x: fn(_f(x))


OPS: dict[str, Callable] = {
    "conv": conv,
    "linear": linear,
    "matmul": matmul,
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _binary(np.divide),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "pow": _binary(np.power),
    "clip": lambda x, alpha, beta: np.clip(_f(x), _f(alpha), _f(beta)),
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "relu6": _unary(lambda x: np.clip(x, 0, 6)),
    "sigmoid": _unary(lambda x: 1 / (1 + np.exp(-x))),
    "sigmoid_hard": lambda x, alpha=0.2, beta=0.5: np.clip(_f(alpha) * _f(x) + _f(beta), 0, 1),
    "thresholded_relu": lambda x, alpha=1.0: np.where(_f(x) > _f(alpha), _f(x), 0).astype(_f(x).dtype),
    "leaky_relu": lambda x, alpha=0.01: np.where(_f(x) >= 0, _f(x), _f(alpha) * _f(x)),
    "silu": _unary(lambda x: x / (1 + np.exp(-x))),
    "tanh": _unary(np.tanh),
    "exp": _unary(np.exp),
    "sqrt": _unary(np.sqrt),
    "rsqrt": lambda x, epsilon=1e-12: 1 / np.sqrt(_f(x) + _f(epsilon)),
    "inverse": lambda x, epsilon=1e-4: 1 / (_f(x) + _f(epsilon)),
    "erf": _unary(_erf),
    "gelu": gelu,
    "softmax": softmax,
    "layer_norm": layer_norm,
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "avg_pool": avg_pool,
    "max_pool": max_pool,
    "pad": pad,
    "batch_norm": batch_norm,
    "reshape": reshape,
    "transpose": lambda x, perm: np.transpose(x, _ints(perm)),
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(_ints(axes))),
    "tile": lambda x, reps: np.tile(x, _ints(reps)),
    "squeeze": lambda x, axes=None: np.squeeze(x, tuple(_ints(axes)) if axes is not None else None),
    "slice_by_index": slice_by_index,
    "concat": concat,
    "split": split,
    "upsample_bilinear": upsample_bilinear,
    "cast": _cast,
    "quantize": quantize,
    "dequantize": dequantize,
    "classify": classify,
}
CONSTEXPR_OPS: dict[str, Callable] = {
    "constexpr_affine_dequantize": constexpr_affine_dequantize,
    "constexpr_blockwise_shift_scale": constexpr_blockwise_shift_scale,
}
