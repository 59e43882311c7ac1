"""ONNX converter: the captured graph -> .onnx through torch.onnx's dynamo exporter.

The dynamo exporter names ONNX values after the graph's FX nodes and records each
node's torch module path in `metadata_props`, which is what lets quantisation
place QDQ pairs from a QuantPlan later. Weights stay inside the file unless the
model passes protobuf's 2 GB limit.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

from ..errors import ConversionError, require
from ..graph import CapturedGraph
from ..runtime.manifest import manifest_path
from ..runtime.specs import TensorSpec
from .base import Artifact, atomic_output, write_manifest
from .embedded_info import INFO_KEY, artifact_info

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 23, 18
PRECISIONS = ("fp32", "int8", "int8-weights")
_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 3: "int8", 2: "uint8", 6: "int32", 7: "int64", 9: "bool"}


def convert(
    graph: CapturedGraph,
    out_path: Path,
    *,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    plan=None,
    quantization: dict | None = None,
) -> Artifact:
    """Write `graph` as .onnx; int8 precisions place QDQ from `plan`, and `quantization` (its summary)
    goes into the file's metadata_props with the card, preprocessing and class names."""
    torch = require("torch", extra="onnx", purpose="ONNX conversion")
    onnx = require("onnx", extra="onnx", purpose="ONNX conversion")
    require("onnxscript", extra="onnx", purpose="ONNX conversion (torch's dynamo exporter)")
    if precision not in PRECISIONS:
        raise ConversionError(f"onnx: precision {precision!r} is not available", f"choose one of: {', '.join(PRECISIONS)}")
    if (precision != "fp32") != (plan is not None):
        raise ConversionError(f"onnx: {precision} " + ("takes no QuantPlan" if plan is not None else "needs a QuantPlan"),
                              "convert through edge_sdk.convert(..., precision=...), which calibrates")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConversionError(f"onnx: opset {opset} is outside the supported {MIN_OPSET}..{MAX_OPSET}",
                              f"pass --opset between {MIN_OPSET} and {MAX_OPSET}")
    start = time.perf_counter()
    info = artifact_info(graph.card, precision=precision, num_classes=graph.output_width, quantization=quantization)
    input_names = ["input"] if len(graph.input_names) == 1 else [f"input_{i}" for i in range(len(graph.input_names))]
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=65536)
        dynamic_shapes = tuple({0: batch} for _ in graph.input_names)
    with atomic_output(out_path) as tmp, _quiet():
        try:
            program = torch.onnx.export(
                graph.module,
                graph.example_inputs,
                dynamo=True,
                opset_version=opset,
                input_names=input_names,
                output_names=graph.output_names,
                dynamic_shapes=dynamic_shapes,
                optimize=plan is None,
                verbose=False,
                report=False,
            )
        except Exception as exc:  # the exporter raises many types; all mean "this graph failed"
            raise ConversionError(f"onnx: torch.onnx.export failed: {_first_line(exc)}") from exc
        if plan is not None:
            _fold_constants_only(program.model)
        _describe(program.model, info)
        _save(program, tmp, out_path)
        if plan is not None:  # int8 / int8-weights: QDQ placed from the QuantPlan on the float export
            from .onnx_qdq import quantize_onnx

            onnx.save(quantize_onnx(onnx.load(str(tmp)), plan, graph), str(tmp))
        model = onnx.load(str(tmp), load_external_data=False)
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            raise ConversionError(f"onnx: the exported model does not pass onnx.checker: {_first_line(exc)}") from exc
        inputs = [_spec(v, "NCHW") for v in model.graph.input]
        outputs = [_spec(v, "") for v in model.graph.output]
    size = out_path.stat().st_size
    artifact = Artifact(
        path=out_path,
        target="onnx",
        precision=precision,
        size_bytes=size,
        inputs=inputs,
        outputs=outputs,
        seconds=time.perf_counter() - start,
        manifest_path=manifest_path(out_path),
        card=graph.card.to_dict() if graph.card is not None else None,
        options={"opset": opset, "dynamic_batch": dynamic_batch,
                 **({"labels_note": info["labels_note"]} if info["labels_note"] else {})},
    )
    try:
        write_manifest(
            artifact,
            packages=("onnx", "onnxscript", "onnxruntime"),
            preprocessing=graph.card.preprocessing.to_dict() if graph.card is not None else None,
        )
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return artifact


def _fold_constants_only(model) -> None:
    """The exporter's optimisation without its pattern rewrites, for int8 files.

    Its rewrites merge ops and drop their FX names (view -> mm -> view becomes one 3-D
    MatMul named after the last view), and the QuantPlan finds its tensors by those names:
    so only constants are folded (transposed weights become initializers) and unused
    nodes removed. onnxruntime fuses what it needs when it loads the file.
    """
    import onnx_ir as ir
    import onnxscript.optimizer
    from onnx_ir.passes import common

    onnxscript.optimizer.fold_constants_ir(model)
    ir.passes.Sequential(common.RemoveUnusedNodesPass(),
                         common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
                         common.RemoveUnusedNodesPass())(model)


def _describe(model, info: dict) -> None:
    """metadata_props (on the exporter's in-memory model, before its one save): edge-sdk's info as one
    JSON entry (what the runtime reads), and the fields tools such as Netron show on their own; the
    description becomes the model's doc_string. The int8 rewrite keeps both."""
    flat = {"author": info["author"], "license": info["license"], "version": info["version"],
            "edge_sdk_version": info["sdk_version"], INFO_KEY: json.dumps(info)}
    model.metadata_props.update({key: value for key, value in flat.items() if value})
    model.doc_string = info["description"]


def _save(program, tmp: Path, final: Path) -> None:
    """Save into `tmp` (moved to `final` by the caller). Models over protobuf's 2 GB limit get
    their weights in `final.data` beside the file, the only case with a side file."""
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}.") as staging:
        staged = Path(staging) / final.name
        program.save(str(staged))
        data = staged.with_name(final.name + ".data")
        if data.exists():
            os.replace(data, final.with_name(data.name))
        os.replace(staged, tmp)


def _spec(value, layout: str) -> TensorSpec:
    t = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return TensorSpec(value.name, shape, _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), layout if len(shape) == 4 else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:400]


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints and warnings; errors still propagate."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
