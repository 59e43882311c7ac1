"""An NHWC image input that takes pixels: the model card's normalisation moves into the file.

MediaPipe Tasks feed a uint8 input raw RGB pixels 0..255, and a float32 input pixels mapped
through NormalizationOptions with one mean and one std for all channels (it refuses
per-channel values). ImageNet's per-channel mean / std fits neither, nor one uint8 scale and
zero point. So the file takes pixels, and its first operator, a 1x1 DEPTHWISE_CONV_2D,
computes (pixel / 255 - mean[c]) / std[c].

That operator runs in float even in an int8 file (DEQUANTIZE pixels, normalise, QUANTIZE to
the plan's input qparams): TFLite's int8 requantisation rounds twice, and with the small
accumulators of a 1x1 filter on pixels an int8 version put 0.5 % of MobileNetV2's int8
inputs one step away from the simulation's (measured, builtin kernels); the float one gives
exactly the int8 input the simulation quantises.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .builder import ModelBuilder, Op, QuantParams

B = schema.BuiltinOperator
INT8_PIXELS = QuantParams(np.array([1.0], np.float32), np.array([-128], np.int64))  # int8 q = pixel - 128
UINT8_PIXELS = QuantParams(np.array([1.0], np.float32), np.array([0], np.int64))


def take_pixels(builder: ModelBuilder, mean, std) -> None:
    """Make the builder's single NHWC input take pixels 0..255, whatever the body (float, or int8 with any I/O dtype)."""
    (x,) = builder.inputs
    shape, name = builder.tensors[x].shape, builder.tensors[x].name
    mean, std = (np.asarray(v[: shape[-1]], np.float64) for v in (mean, std))
    float32, int8 = np.dtype(np.float32), np.dtype(np.int8)
    head = next((i for i, op in enumerate(builder.ops)
                 if op.code == B.QUANTIZE and op.inputs == [x] and builder.tensors[op.outputs[0]].dtype == int8), None)
    if builder.tensors[x].dtype == int8:  # --io int8: int8 pixels in front of the plan's int8 input
        target, source, at = x, _replace_input(builder, x, int8, INT8_PIXELS), 0
    elif head is not None:  # float32 / uint8 I/O around an int8 body: the input's QUANTIZE is replaced
        target, source, at = builder.ops.pop(head).outputs[0], x, head
        if builder.tensors[x].dtype == np.dtype(np.uint8):
            builder.tensors[x].quant = UINT8_PIXELS
    else:  # a float body
        target, source, at = x, _replace_input(builder, x, float32), 0
    ops = []
    pixels = source
    if builder.tensors[source].dtype != float32:
        pixels = builder.tensor(f"{name}/pixels", shape)
        ops.append(Op(B.DEQUANTIZE, [source], [pixels]))
    normalised = target if builder.tensors[target].dtype == float32 else builder.tensor(f"{name}/normalised_float", shape)
    scale = builder.constant(f"{name}/scale", (1.0 / (255.0 * std)).astype(np.float32).reshape(1, 1, 1, -1))
    shift = builder.constant(f"{name}/shift", (-mean / std).astype(np.float32))
    options = schema.DepthwiseConv2DOptionsT(padding=schema.Padding.VALID, strideW=1, strideH=1, depthMultiplier=1)
    ops.append(Op(B.DEPTHWISE_CONV_2D, [pixels, scale, shift], [normalised], options, origin="normalise pixels"))
    if normalised != target:
        ops.append(Op(B.QUANTIZE, [normalised], [target]))
    builder.ops[at:at] = ops


def _replace_input(builder: ModelBuilder, old: int, dtype, quant: QuantParams | None = None) -> int:
    """A new graph input in place of `old`, taking its name (the signature and the manifest refer to it by name)."""
    t = builder.tensors[old]
    new = builder.tensor(t.name, t.shape, dtype)
    builder.tensors[new].quant = quant
    t.name = f"{t.name}/normalised"
    builder.inputs = [new]
    return new
