"""TFLite converter: the captured graph -> .tflite, written by our own flatbuffer emitter.

No TensorFlow, JAX or litert-torch: the schema's object API (shipped with
ai-edge-litert) is all it takes. Layouts are planned once (layout.py), each ATen op
is lowered by one function (ops.py), activations are fused into their producers
(fuse.py) and the builder (builder.py) packs the file. float32; float16 weights
expanded by DEQUANTIZE at load time (TFLite's float16 scheme); int8-weights, the same
with per-channel int8 filters; full-integer int8 (int8.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from ...errors import ConversionError, require
from ...graph import CapturedGraph
from ...runtime.specs import Quantization, TensorSpec
from ..base import Artifact, atomic_output, write_manifest

PRECISIONS = ("fp32", "fp16", "int8-weights", "int8")
QUANTIZED = ("int8", "int8-weights")


def convert(graph: CapturedGraph, out_path: Path, *, precision: str = "fp32", nhwc_input: bool = False,
            plan=None, io: str = "float32") -> Artifact:
    """Write `graph` as a .tflite; `nhwc_input` makes 4-D inputs NHWC (no TRANSPOSE at the input).

    int8 is full-integer from `plan` (a QuantPlan); `io` is then the dtype of the graph's
    inputs and outputs: float32 (QUANTIZE / DEQUANTIZE inside the file), int8, or uint8.
    int8-weights takes the plan's per-channel filter scales and keeps activations float.
    """
    require("ai_edge_litert", package="ai-edge-litert", extra="tflite", purpose="TFLite conversion")
    from . import layout
    from .fuse import fuse_activations
    from .lowering import Emitter

    if precision not in PRECISIONS:
        raise ConversionError(f"tflite: precision {precision!r} is not available", f"choose one of: {', '.join(PRECISIONS)}")
    if (precision in QUANTIZED) != (plan is not None):
        raise ConversionError(f"tflite: {precision} " + ("takes no QuantPlan" if plan is not None else "needs a QuantPlan"),
                              f"convert through edge_sdk.convert(..., precision='{precision}'), which calibrates")
    if io != "float32" and precision != "int8":
        raise ConversionError(f"tflite: --io {io} needs --int8", "drop --io, or add --int8")
    start = time.perf_counter()
    input_names = ["input"] if len(graph.input_names) == 1 else [f"input_{i}" for i in range(len(graph.input_names))]
    emitter = Emitter(graph.module, precision="fp16" if precision == "fp16" else "fp32", nhwc_input=nhwc_input)
    inputs, outputs = emitter.lower(input_names, graph.output_names)
    emitter.builder.remove_dead_ops()  # ops replaced by pattern matches still read what they would fuse with
    fuse_activations(emitter.builder)
    if precision == "int8":
        from .int8 import quantize_model

        quantize_model(emitter.builder, emitter.tensor_nodes, plan, io)
    elif precision == "int8-weights":
        from .int8 import quantize_weights

        quantize_weights(emitter.builder, plan)
    card = graph.card.to_dict() if graph.card is not None else None
    data = emitter.builder.finish(description=f"edge-sdk {card['name'] if card else 'model'} ({precision})",
                                  signature=(input_names, graph.output_names))

    def spec(name, value, tensor):
        rank4 = len(value.shape) == 4
        t = emitter.builder.tensors[tensor]
        quant = Quantization(tuple(t.quant.scale.tolist()), tuple(t.quant.zero_point.tolist()), None) if t.quant is not None else None
        return TensorSpec(name, tuple(t.shape), t.dtype.name, ("NHWC" if value.perm == layout.NHWC else "NCHW") if rank4 else "",
                          quant)

    with atomic_output(out_path) as tmp:
        tmp.write_bytes(data)
    artifact = Artifact(
        path=out_path,
        target="tflite",
        precision=precision,
        size_bytes=out_path.stat().st_size,
        inputs=[spec(n, v, t) for n, v, t in zip(input_names, inputs, emitter.builder.inputs)],
        outputs=[spec(n, v, t) for n, v, t in zip(graph.output_names, outputs, emitter.builder.outputs)],
        seconds=time.perf_counter() - start,
        manifest_path=out_path.with_name(out_path.name + ".json"),
        card=card,
        options={"nhwc_input": nhwc_input, "io": io},
    )
    try:
        write_manifest(artifact, packages=("ai-edge-litert",),
                       preprocessing=graph.card.preprocessing.to_dict() if graph.card is not None else None)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return artifact
