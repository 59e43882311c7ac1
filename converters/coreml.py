"""CoreML converter: the captured graph -> an .mlpackage (ML Program) through coremltools.

coremltools does the conversion; this module decides what it is given and cleans up
after it. It is given the capture's own core-ATen ExportedProgram, or, when the graph
was changed after capture (int8 quantize / dequantize ops, an image-input wrapper), a
re-export (`torch.export` + `run_decompositions({})`, which coremltools 9 requires),
with TorchScript tracing as the fallback. I/O stays float32 (coremltools would make it float16); `image_input`
declares an ImageType with the ModelCard's normalisation folded into its scale and
bias, as iOS apps feeding the Vision framework expect.

Precisions: fp32; fp16 (CoreML's default); int8-weights (the QuantPlan's per-channel int8
weights, fp16 compute); int8 W8A8, whose activation ranges and weight scales come
from the QuantPlan as quantize/dequantize ops placed in the graph before conversion
(coremltools' own activation calibration runs `MLModel.predict`, which exists only on
macOS, and would re-decide what the plan decided); biases sit on the plan's int32 grid
and the float parts compute in fp32, so the program reproduces the plan's simulation
(cosine 0.999 on MobileNetV2, as ONNX QDQ does). int8-weights takes the plan's weights the same
way, which coremltools stores as constexpr_affine_dequantize (iOS16+), so the three formats hold the
same integers; coremltools' own `linear_quantize_weights` re-decided the scales and left every weight
under 2048 elements (depthwise filters) in fp16, so the file missed the plan's simulation
(MobileNetV2-0.35 at 64 px: cosine 0.898 to it). Quantised programs are built
without the pass `common::int_op_canonicalization`, which turns
dequantize -> reshape -> quantize into an int8 reshape without checking that the two
scales match and so silently corrupts them (tests/test_coreml.py shows it).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConversionError, require
from ..graph import CapturedGraph, module_path
from ..runtime.manifest import manifest_path
from ..runtime.specs import TensorSpec
from .base import Artifact, prepare_output_dir, write_manifest
from .embedded_info import INFO_KEY, artifact_info

PRECISIONS = ("fp16", "fp32", "int8-weights", "int8")
# ML Programs start at iOS15 / macOS12; quantize / dequantize ops (W8A8) need iOS17 / macOS14.
MIN_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")
_INT8_MIN_TARGET = {"iOS": "iOS17", "macOS": "macOS14"}
# int8 weights are constexpr_affine_dequantize ops: iOS16 / macOS13.
_INT8_WEIGHTS_MIN_TARGET = {"iOS": "iOS16", "macOS": "macOS13"}
UNSAFE_QUANTIZED_PASSES = ("common::int_op_canonicalization",)
_NOTE = ("coremltools {ct} has not been tested with torch {torch}; its warnings are hidden and the "
         "program it writes is checked by parity instead (edge-sdk verify)")
_noted = False


def convert(
    graph: CapturedGraph,
    out_path: Path,
    *,
    precision: str = "fp16",
    min_target: str | None = None,
    image_input: bool = False,
    plan=None,
    quantization: dict | None = None,
) -> Artifact:
    """Write `graph` as an ML Program package; `min_target` defaults to the oldest OS that runs `precision`.

    The package's metadata (author, licence, version, description, and edge-sdk's info with the
    card, preprocessing and class names) comes from the card; `quantization` is the plan's summary.
    """
    torch = require("torch", extra="coreml", purpose="CoreML conversion")
    if precision not in PRECISIONS:
        raise ConversionError(f"coreml: precision {precision!r} is not available", f"choose one of: {', '.join(PRECISIONS)}")
    if precision.startswith("int8") and plan is None:
        raise ConversionError(f"coreml: {precision} needs a QuantPlan (its weight scales, and for int8 its activation ranges)",
                              f"pass plan=, or convert through edge_sdk.convert(..., precision='{precision}'), which quantises")
    if precision in ("fp16", "fp32") and plan is not None:
        raise ConversionError(f"coreml: {precision} takes no QuantPlan", "use precision='int8' or 'int8-weights' with a plan")
    min_target = _check_min_target(min_target, precision)
    out_path = Path(out_path)
    if len(graph.input_names) != 1 and image_input:
        raise ConversionError("coreml: image_input needs a model with exactly one input")
    start = time.perf_counter()
    info = artifact_info(graph.card, precision=precision, num_classes=graph.output_width, quantization=quantization)
    with _quiet() as last_op:
        ct = _coremltools()
        module = _with_plan(graph, plan) if plan is not None else graph.module
        if image_input:
            module, scale, bias = _image_preprocessing(graph, module, torch)
        program = _program(module, graph, torch, last_op)
        inputs = _input_types(ct, graph, image_input, scale if image_input else None, bias if image_input else None)
        labels = info["labels"] if image_input else None  # a Vision classifier: an image in, named classes out
        pipeline = ct.PassPipeline.DEFAULT  # a fresh pipeline object on every access
        if precision in ("int8", "int8-weights"):
            pipeline.remove_passes(list(UNSAFE_QUANTIZED_PASSES))
        convert = functools.partial(
            ct.convert,
            inputs=inputs,
            outputs=None if labels else [ct.TensorType(name=n, dtype=np.float32) for n in graph.output_names],
            classifier_config=ct.ClassifierConfig(labels) if labels else None,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32 if precision in ("fp32", "int8") else ct.precision.FLOAT16,
            minimum_deployment_target=getattr(ct.target, min_target),
            pass_pipeline=pipeline,
            skip_model_load=True,
        )
        try:
            mlmodel = convert(program)
        except Exception as exc:  # coremltools raises many types; all mean "this graph failed"
            error = _conversion_error(exc, graph, last_op)
            if isinstance(program, torch.jit.ScriptModule):
                raise error from exc
            try:  # coremltools' TorchScript frontend covers some ops its torch.export frontend lacks
                mlmodel = convert(torch.jit.trace(module, graph.example_inputs, check_trace=False))
            except Exception:
                raise error from exc
        _describe(mlmodel, info)
        with _atomic_folder(out_path) as tmp:
            mlmodel.save(str(tmp))
    _note_once(ct, torch)
    spec = mlmodel.get_spec()
    artifact = Artifact(
        path=out_path,
        target="coreml",
        precision=precision,
        size_bytes=sum(f.stat().st_size for f in out_path.rglob("*") if f.is_file()),
        inputs=[_spec(f, "NCHW") for f in spec.description.input],
        outputs=[_spec(f, "") for f in spec.description.output],
        seconds=time.perf_counter() - start,
        manifest_path=manifest_path(out_path),
        card=graph.card.to_dict() if graph.card is not None else None,
        options={"min_target": min_target, "image_input": image_input, "class_labels": bool(labels),
                 "labels_note": info["labels_note"],
                 "removed_passes": list(UNSAFE_QUANTIZED_PASSES) if precision.startswith("int8") else [],
                 **({"image_scale": scale, "image_bias": bias} if image_input else {})},
    )
    try:
        write_manifest(artifact, packages=("coremltools",),
                       preprocessing=graph.card.preprocessing.to_dict() if graph.card is not None else None)
    except BaseException:
        shutil.rmtree(out_path, ignore_errors=True)
        raise
    return artifact


def _check_min_target(min_target: str | None, precision: str) -> str:
    floors = {"int8": (_INT8_MIN_TARGET, "int8 activations (quantize / dequantize ops)", "or --int8-weights"),
              "int8-weights": (_INT8_WEIGHTS_MIN_TARGET, "int8 weights (constexpr_affine_dequantize)", "or --fp16")}
    floor = floors.get(precision)
    if min_target is None:
        return floor[0]["iOS"] if floor else "iOS15"
    if min_target not in MIN_TARGETS:
        raise ConversionError(f"coreml: unknown minimum deployment target {min_target!r}",
                              f"choose one of: {', '.join(MIN_TARGETS)}")
    family = "macOS" if min_target.startswith("macOS") else "iOS"
    if floor and int(min_target[len(family):]) < int(floor[0][family][len(family):]):
        needed, what, other = floor[0][family], floor[1], floor[2]
        raise ConversionError(f"coreml: {what} need {needed}, not {min_target}", f"pass --min-target {needed} or later, {other}")
    return min_target


def _coremltools():
    """Import coremltools (its import prints warnings about optional native libraries and versions)."""
    return require("coremltools", extra="coreml", purpose="CoreML conversion")


def _program(module, graph: CapturedGraph, torch, last_op):
    """What ct.convert takes: an ExportedProgram in core ATen, else (if export fails) a TorchScript trace.

    The capture's own program when the module is the captured graph, unedited; else a new export.
    """
    if module is graph.module and (program := graph.unchanged_program()) is not None:
        return program
    try:
        return torch.export.export(module, graph.example_inputs, strict=False).run_decompositions({})
    except Exception:  # a graph export cannot re-capture still traces
        try:
            return torch.jit.trace(module, graph.example_inputs, check_trace=False)
        except Exception as exc:
            raise _conversion_error(exc, graph, last_op) from exc


def _input_types(ct, graph: CapturedGraph, image_input: bool, scale, bias) -> list:
    shapes = [tuple(x.shape) for x in graph.example_inputs]
    names = ["input"] if len(shapes) == 1 else [f"input_{i}" for i in range(len(shapes))]
    if image_input:
        return [ct.ImageType(name=names[0], shape=shapes[0], scale=scale, bias=bias, color_layout=ct.colorlayout.RGB)]
    return [ct.TensorType(name=n, shape=s, dtype=np.float32) for n, s in zip(names, shapes)]


def _image_preprocessing(graph: CapturedGraph, module, torch):
    """The ImageType's scale and bias for the card's mean / std (pixels in 0..255).

    ImageType has one scale for all channels and a bias per channel. When the card's
    std differs between channels, the per-channel division goes into the graph instead
    (one multiply before the first layer) and the ImageType scale is 1 / 255.
    """
    card = graph.card
    if card is None or len(graph.example_inputs[0].shape) != 4 or graph.example_inputs[0].shape[1] not in (1, 3):
        raise ConversionError("coreml: image_input needs a model card with mean / std and a 1- or 3-channel NCHW input",
                              "convert without --image-input")
    mean, std = np.asarray(card.mean, np.float64), np.asarray(card.std, np.float64)
    if np.allclose(std, std[0]):
        return module, float(1 / (255 * std[0])), [float(b) for b in -mean / std]

    class Normalize(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.register_buffer("inv_std", torch.tensor(1 / std, dtype=torch.float32).reshape(1, -1, 1, 1))

        def forward(self, x):
            return self.inner(x * self.inv_std)

    return Normalize(module).eval(), 1 / 255, [float(b) for b in -mean]


def _describe(mlmodel, info: dict) -> None:
    """The metadata Xcode shows (author, licence, version, description) and edge-sdk's info for the runtime."""
    mlmodel.author = info["author"]
    mlmodel.license = info["license"]
    mlmodel.version = info["version"]
    mlmodel.short_description = info["description"]
    mlmodel.user_defined_metadata[INFO_KEY] = json.dumps(info)


def _with_plan(graph: CapturedGraph, plan):
    """A copy of the graph with the plan's int8 decisions as quantize / dequantize ops.

    Activations: a quantize_per_tensor / dequantize_per_tensor pair after every tensor the
    plan quantises, with its scale and zero point. Weights: int8 values with a
    dequantize_per_channel of the plan's scales, which coremltools stores as a constexpr
    dequantisation. Nothing is re-decided; a plan naming a tensor the graph lacks is an error.
    """
    import torch
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
    from torch import fx

    qd = torch.ops.quantized_decomposed
    gm = fx.GraphModule(graph.module, graph.module.graph.__deepcopy__())
    nodes = {n.name: n for n in gm.graph.nodes}
    missing = [n for n in list(plan.activations) + list(plan.weights) if n not in nodes]
    if missing:
        raise ConversionError(f"coreml int8: the graph lacks {len(missing)} tensors the plan quantises: {', '.join(missing[:5])}",
                              "the plan was made for another graph: quantise the same model you convert")
    done: dict[str, tuple] = {}  # weight -> its scales: a weight shared by several ops (Perceiver) is quantised once
    for name, w in plan.weights.items():
        if w.weight in done:
            if done[w.weight] != tuple(w.scales):
                raise ConversionError(f"coreml int8: the plan gives weight {w.weight} different scales at {name}",
                                      "the plan file was edited by hand: make it again with edge-sdk quantize")
        else:
            done[w.weight] = tuple(w.scales)
            _dequantize_weight(gm, qd, name, w)
        bias_node = next((n for n in nodes[name].all_input_nodes if n.op == "get_attr" and n.target == w.bias), None)
        if bias_node is not None and w.bias_scales is not None:  # the int32 bias, as float values on its grid
            steps = torch.tensor(w.bias_scales, dtype=torch.float32)
            bias = torch.clamp(torch.round(_get(gm, w.bias).detach().float() / steps), -(2**31 - 1), 2**31 - 1) * steps
            # a new buffer per op (a shared bias meets inputs of other scales): the captured graph stays untouched
            gm.register_buffer(f"{name}_bias_on_grid", bias)
            with gm.graph.inserting_before(nodes[name]):
                nodes[name].replace_input_with(bias_node, gm.graph.get_attr(f"{name}_bias_on_grid"))
            if not bias_node.users:
                gm.graph.erase_node(bias_node)
    for name, a in plan.activations.items():
        node = nodes[name]
        args = (float(np.float32(a.scale)), int(a.zero_point), -128, 127, torch.int8)
        with gm.graph.inserting_after(node):
            q = gm.graph.call_function(qd.quantize_per_tensor.default, (node, *args))
        with gm.graph.inserting_after(q):
            dq = gm.graph.call_function(qd.dequantize_per_tensor.default, (q, *args))
        node.replace_all_uses_with(dq, delete_user_cb=lambda user, q=q: user is not q)
    gm.graph.lint()
    gm.recompile()
    return gm


def _dequantize_weight(gm, qd, name: str, w) -> None:
    """Swap the weight's get_attr for int8 values + a per-channel dequantise, which coremltools stores as
    a constexpr dequantisation."""
    import torch

    attr = next((n for n in gm.graph.nodes if n.op == "get_attr" and n.target == w.weight), None)
    if attr is None:
        raise ConversionError(f"coreml int8: weight {w.weight} of {name} is not in the graph")
    values = _get(gm, w.weight).detach().float()
    scales = torch.tensor(w.scales, dtype=torch.float32)
    shape = [-1 if d == w.axis else 1 for d in range(values.dim())]
    q = torch.clamp(torch.round(values / scales.reshape(shape)), -127, 127).to(torch.int8)
    base = w.weight.replace(".", "_")
    gm.register_buffer(f"{base}_int8", q)
    gm.register_buffer(f"{base}_scales", scales)
    # int8 like the values: an int64 zero point makes coremltools cast it to int8, which iOS16 lacks
    gm.register_buffer(f"{base}_zero_points", torch.zeros(len(w.scales), dtype=torch.int8))
    with gm.graph.inserting_before(attr):
        q_node, s_node, z_node = (gm.graph.get_attr(f"{base}_{suffix}") for suffix in ("int8", "scales", "zero_points"))
        dq = gm.graph.call_function(qd.dequantize_per_channel.default, (q_node, s_node, z_node, w.axis, -127, 127, torch.int8))
    attr.replace_all_uses_with(dq)
    gm.graph.erase_node(attr)


def _get(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _spec(feature, layout: str) -> TensorSpec:
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        shape = tuple(int(d) for d in feature.type.multiArrayType.shape)
        return TensorSpec(feature.name, shape, "float32", layout if len(shape) == 4 else "")
    if kind == "imageType":
        image = feature.type.imageType
        channels = 1 if image.colorSpace == 10 else 3  # GRAYSCALE = 10
        return TensorSpec(feature.name, (1, channels, int(image.height), int(image.width)), "float32", layout)
    return TensorSpec(feature.name, (), {"stringType": "str", "dictionaryType": "dict"}.get(kind, kind), "")


def _conversion_error(exc: BaseException, graph: CapturedGraph, last_op: dict) -> ConversionError:
    """Name the ATen op and the torch module coremltools failed on (it logs the node it was converting)."""
    text = str(exc).strip()
    reason = (text.splitlines()[0] if text else type(exc).__name__)[:300]
    node_name, kind = last_op.get("node"), last_op.get("kind")
    unsupported = re.search(r"fx node (\S+?), kind (\S+)", text)  # raised while building its graph, before any op
    if unsupported:
        node_name, kind = unsupported.groups()
    node = next((n for n in graph.module.graph.nodes if n.name == node_name), None) if node_name else None
    where = f" at op {kind} (node {node_name}" + (f", module {module_path(node) or '<root>'})" if node is not None else ")")
    return ConversionError(f"coreml: coremltools failed{where if kind else ''}: {reason}",
                           "the op may be unsupported by coremltools; try another target, or replace that layer")


class _LastOp(logging.Handler):
    """Remembers the node coremltools' torch frontend was converting (it logs each one at INFO)."""

    def __init__(self, record: dict):
        super().__init__(logging.INFO)
        self.record = record

    def emit(self, rec: logging.LogRecord) -> None:
        msg = rec.getMessage()
        if msg.startswith("Converting op "):
            name, _, kind = msg[len("Converting op "):].partition(" : ")
            self.record.update(node=name.strip(), kind=kind.strip())


@contextlib.contextmanager
def _quiet() -> Iterator[dict]:
    """Hide coremltools' import messages, version warnings and progress bars; yield the last-op record."""
    logger = logging.getLogger("coremltools")
    saved = (logger.level, logger.handlers[:], logger.propagate)
    record: dict = {}
    logger.handlers[:] = [_LastOp(record)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield record
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


def _note_once(ct, torch) -> None:
    """The one line that replaces coremltools' warnings, printed once per process when progress is shown."""
    global _noted
    from ..progress import console, progress_enabled

    if _noted or not progress_enabled():
        return
    _noted = True
    console().print(f"[dim]note: {_NOTE.format(ct=ct.__version__, torch=torch.__version__.split('+')[0])}[/dim]")


@contextlib.contextmanager
def _atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a path inside a temporary folder beside `path`; it replaces `path` only if the block succeeds.

    An .mlpackage is a folder, so os.replace cannot swap it over an old one in one step:
    the old package is moved aside, the new one renamed in, then the old one deleted.
    """
    prepare_output_dir(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        built = staging / path.name
        yield built
        if path.exists():
            old = staging / "previous"
            os.replace(path, old)
        os.replace(built, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
