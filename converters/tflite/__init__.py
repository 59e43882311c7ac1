"""TFLite converter: the captured graph -> .tflite, written by our own flatbuffer emitter.

No TensorFlow, JAX or litert-torch: the schema's object API (shipped with
ai-edge-litert) is all it takes. Layouts are planned once (layout.py), each ATen op
is lowered by one function (ops.py), activations are fused into their producers
(fuse.py) and the builder (builder.py) packs the file. float32, or float16 weights
expanded by DEQUANTIZE at load time (TFLite's float16 scheme).
"""

from __future__ import annotations

import time
from pathlib import Path

from ...errors import ConversionError, require
from ...graph import CapturedGraph
from ...runtime.specs import TensorSpec
from ..base import Artifact, atomic_output, write_manifest

PRECISIONS = ("fp32", "fp16")


def convert(graph: CapturedGraph, out_path: Path, *, precision: str = "fp32", nhwc_input: bool = False) -> Artifact:
    """Write `graph` as a .tflite; `nhwc_input` makes 4-D inputs NHWC (no TRANSPOSE at the input)."""
    require("ai_edge_litert", package="ai-edge-litert", extra="tflite", purpose="TFLite conversion")
    from . import layout
    from .fuse import fuse_activations
    from .lowering import Emitter

    if precision not in PRECISIONS:
        raise ConversionError(f"tflite: precision {precision!r} is not available", f"choose one of: {', '.join(PRECISIONS)}")
    start = time.perf_counter()
    input_names = ["input"] if len(graph.input_names) == 1 else [f"input_{i}" for i in range(len(graph.input_names))]
    emitter = Emitter(graph.module, precision=precision, nhwc_input=nhwc_input)
    inputs, outputs = emitter.lower(input_names, graph.output_names)
    emitter.builder.remove_dead_ops()  # ops replaced by pattern matches still read what they would fuse with
    fuse_activations(emitter.builder)
    card = graph.card.to_dict() if graph.card is not None else None
    data = emitter.builder.finish(description=f"edge-sdk {card['name'] if card else 'model'} ({precision})",
                                  signature=(input_names, graph.output_names))

    def spec(name, value):
        rank4 = len(value.shape) == 4
        return TensorSpec(name, tuple(emitter.builder.tensors[value.tensor].shape), "float32",
                          ("NHWC" if value.perm == layout.NHWC else "NCHW") if rank4 else "")

    with atomic_output(out_path) as tmp:
        tmp.write_bytes(data)
    artifact = Artifact(
        path=out_path,
        target="tflite",
        precision=precision,
        size_bytes=out_path.stat().st_size,
        inputs=[spec(n, v) for n, v in zip(input_names, inputs)],
        outputs=[spec(n, v) for n, v in zip(graph.output_names, outputs)],
        seconds=time.perf_counter() - start,
        manifest_path=out_path.with_name(out_path.name + ".json"),
        card=card,
        options={"nhwc_input": nhwc_input},
    )
    try:
        write_manifest(artifact, packages=("ai-edge-litert",),
                       preprocessing=graph.card.preprocessing.to_dict() if graph.card is not None else None)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return artifact
