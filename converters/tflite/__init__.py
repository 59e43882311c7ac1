"""TFLite converter: the captured graph -> .tflite, written by our own flatbuffer emitter.

No TensorFlow, JAX or litert-torch: the schema's object API (shipped with
ai-edge-litert) is all it takes. Layouts are planned once (layout.py), each ATen op
is lowered by one function (ops.py), activations are fused into their producers
(fuse.py) and the builder (builder.py) packs the file. float32; float16 weights
expanded by DEQUANTIZE at load time (TFLite's float16 scheme); int8-weights, the same
with per-channel int8 filters; full-integer int8 (int8.py). Every file carries the
standard TFLite metadata and the class names (metadata.py); an NHWC image input takes
RGB pixels 0..255 and normalises them inside the file (image_input.py), as MediaPipe
Tasks and Android apps feed it.
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
            plan=None, io: str = "float32", quantization: dict | None = None) -> Artifact:
    """Write `graph` as a .tflite; `nhwc_input` makes 4-D inputs NHWC (no TRANSPOSE at the input),
    and an NHWC image input (one input with the card's channels) takes pixels 0..255.

    int8 is full-integer from `plan` (a QuantPlan); `io` is then the dtype of the graph's
    inputs and outputs: float32 (QUANTIZE / DEQUANTIZE inside the file), int8, or uint8.
    int8-weights takes the plan's per-channel filter scales and keeps activations float.
    `quantization` (the plan's QuantSummary) is embedded in the file's metadata.
    """
    require("ai_edge_litert", package="ai-edge-litert", extra="tflite", purpose="TFLite conversion")
    from . import layout
    from .fuse import fuse_activations
    from .image_input import take_pixels
    from .lowering import Emitter
    from .metadata import embed, pack_files

    if precision not in PRECISIONS:
        raise ConversionError(f"tflite: precision {precision!r} is not available", f"choose one of: {', '.join(PRECISIONS)}")
    if (precision in QUANTIZED) != (plan is not None):
        raise ConversionError(f"tflite: {precision} " + ("takes no QuantPlan" if plan is not None else "needs a QuantPlan"),
                              f"convert through edge_sdk.convert(..., precision='{precision}'), which calibrates")
    if io != "float32" and precision != "int8":
        raise ConversionError(f"tflite: --io {io} needs --int8", "drop --io, or add --int8")
    start = time.perf_counter()
    input_names = ["input"] if len(graph.input_names) == 1 else [f"input_{i}" for i in range(len(graph.input_names))]
    emitter = Emitter(graph.module, precision="fp16" if precision == "fp16" else "fp32", nhwc_input=nhwc_input,
                      int8_activations=precision == "int8")
    inputs, outputs = emitter.lower(input_names, graph.output_names)
    emitter.builder.remove_dead_ops()  # ops replaced by pattern matches still read what they would fuse with
    fuse_activations(emitter.builder)
    if precision == "int8":
        from .int8 import quantize_model

        quantize_model(emitter.builder, emitter.tensor_nodes, plan, io)
    elif precision == "int8-weights":
        from .int8 import quantize_weights

        quantize_weights(emitter.builder, plan)
    builder = emitter.builder
    pixel_input = nhwc_input and _image_input(graph, inputs)
    if pixel_input:
        take_pixels(builder, graph.card.mean, graph.card.std)
    embedded = embed(graph.card, precision=precision, pixel_input=pixel_input, quantization=quantization,
                     inputs=[(n, builder.tensors[t].shape, v.perm == layout.NHWC and len(v.shape) == 4)
                             for n, v, t in zip(input_names, inputs, builder.inputs)],
                     outputs=[(n, builder.tensors[t].shape, v.perm == layout.NHWC and len(v.shape) == 4)
                              for n, v, t in zip(graph.output_names, outputs, builder.outputs)])
    card = graph.card.to_dict() if graph.card is not None else None
    data = builder.finish(description=f"edge-sdk {card['name'] if card else 'model'} ({precision})",
                          signature=(input_names, graph.output_names), metadata=embedded.entries)
    data = pack_files(data, embedded.files)

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
        options={"nhwc_input": nhwc_input, "io": io, "pixel_input": pixel_input, "labels": bool(embedded.files),
                 **({"labels_note": embedded.labels_note} if embedded.labels_note else {})},
    )
    try:
        write_manifest(artifact, packages=("ai-edge-litert",),
                       preprocessing=graph.card.preprocessing.to_dict() if graph.card is not None else None)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return artifact


def _image_input(graph: CapturedGraph, inputs) -> bool:
    """One 4-D input whose channels are the card's image channels: what an app feeds pixels to."""
    if graph.card is None or len(inputs) != 1 or len(inputs[0].shape) != 4:
        return False
    return inputs[0].shape[1] == graph.card.input_size[0] and graph.card.input_size[0] in (1, 3)
