"""The public Python API; the CLI calls exactly these functions.

    artifact = edge_sdk.convert("mobilenet_v2", target="onnx")
    report = edge_sdk.check_parity("mobilenet_v2", artifact)
"""

from __future__ import annotations

import importlib
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .converters import TARGETS, Artifact
from .converters.base import add_quantization, check_output_path, plan_path
from .errors import ConversionError, InputError
from .graph import CapturedGraph, capture
from .models import create_model, list_models, unsupported_reason
from .models.user import (
    DEFAULT_INPUT_SHAPE,
    is_user_reference,
    load_factory,
    load_program,
    program_input_shape,
    user_card,
)
from .progress import step

DEFAULT_OUT_DIR = Path("edge-sdk-out")
# Who writes the file: edge-sdk's own converter (None), or target -> module of an optional third-party converter.
BACKENDS = {"edge-sdk": None, "litert-torch": ("tflite", "tflite_litert_torch")}
QUANTIZED_PRECISIONS = ("int8", "int8-weights")
# Calibration samples the summary's per-layer sensitivity is measured on: one simulated forward per weighted
# layer each (53 for MobileNetV2), the largest cost of an int8 conversion; the ranking, not the dB, is what it is for.
SENSITIVITY_SAMPLES = 2


@dataclass
class ResolvedModel:
    """A model ready to capture: the module (or program), an example input and its card."""

    name: str
    model: object  # nn.Module or torch.export.ExportedProgram
    example_input: torch.Tensor
    card: object
    registered: bool
    graph: CapturedGraph | None = None  # a capture made earlier: each target converts it without capturing again

    @property
    def reference(self):
        """What parity compares against: the float PyTorch model itself."""
        return self.model.module() if isinstance(self.model, torch.export.ExportedProgram) else self.model


def resolve_model(
    model,
    *,
    example_input: torch.Tensor | None = None,
    input_shape: tuple[int, ...] | None = None,
    weights=None,
    num_classes: int | None = None,
) -> ResolvedModel:
    """Turn a registered name, `file.py:factory`, a `.pt2` path, an nn.Module or a CapturedGraph into a ResolvedModel."""
    if isinstance(model, CapturedGraph):
        if example_input is not None or input_shape is not None or weights is not None or num_classes is not None:
            raise InputError("a captured graph has its input shape, weights and classes already",
                             "pass the nn.Module (or model name) to change them")
        card = model.card or user_card("model", tuple(model.example_inputs[0].shape))
        return ResolvedModel(card.name, model.module, model.example_inputs[0], card, card.name in list_models(), graph=model)
    if isinstance(model, str) and not is_user_reference(model):
        module = create_model(model, num_classes=num_classes, weights=weights)
        shape = input_shape or (1, *module.card.input_size)
        return ResolvedModel(model, module, _example(example_input, shape), module.card, True)
    if isinstance(model, str) and model.endswith(".pt2"):
        program = load_program(model)
        shape = program_input_shape(program)
        return ResolvedModel(Path(model).stem, program, _example(example_input, shape), user_card(Path(model).stem, shape), False)
    if isinstance(model, str):
        module = load_factory(model, **({"num_classes": num_classes} if num_classes else {}))
        name = model.rpartition(":")[2]
    elif isinstance(model, torch.export.ExportedProgram):
        shape = program_input_shape(model)
        return ResolvedModel("model", model, _example(example_input, shape), user_card("model", shape), False)
    elif isinstance(model, nn.Module):
        module, name = model.eval(), type(model).__name__.lower()
    else:
        raise TypeError(f"model must be a model name, a path or an nn.Module, not {type(model).__name__}")
    if weights is not None:
        from .models.weights import load_weights

        load_weights(module, weights)
    card = getattr(module, "card", None)
    name = card.name if card is not None else name
    shape = input_shape or (tuple(example_input.shape) if example_input is not None else None)
    shape = shape or ((1, *card.input_size) if card is not None else DEFAULT_INPUT_SHAPE)
    return ResolvedModel(name, module, _example(example_input, shape), card or user_card(name, shape), False)


def _example(example_input, shape) -> torch.Tensor:
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor):
            raise InputError("example_input must be a torch.Tensor")
        return example_input
    if len(shape) < 1 or any(int(d) < 1 for d in shape):
        raise InputError(f"invalid input shape {shape}", "pass it as N,C,H,W, e.g. 1,3,224,224")
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def output_path(out, name: str, target: str) -> Path:
    """`out` may be None (edge-sdk-out/NAME.SUFFIX), a folder, or a file path."""
    suffix = TARGETS[target].suffix
    if out is None:
        return DEFAULT_OUT_DIR / f"{name}{suffix}"
    out = Path(out)
    if out.suffix.lower() == suffix:
        return out
    if out.suffix and not out.is_dir():
        raise ConversionError(f"output {out} does not end in {suffix}", f"name the file *{suffix} or pass a folder")
    return out / f"{name}{suffix}"


def capture_model(resolved: ResolvedModel, *, dynamic_batch: bool = False) -> CapturedGraph:
    """The resolved model's graph: its earlier capture when that has the batch handling asked for."""
    earlier = resolved.graph
    if earlier is not None and dynamic_batch == earlier.dynamic_batch:
        return replace(earlier, card=resolved.card)  # labels / publisher given to convert() go with this target only
    with step(f"Capturing {resolved.name} with torch.export"):
        return capture(resolved.model, (resolved.example_input,), card=resolved.card, dynamic_batch=dynamic_batch)


def convert(
    model,
    target: str = "onnx",
    *,
    example_input: torch.Tensor | None = None,
    input_shape: tuple[int, ...] | None = None,
    out=None,
    weights=None,
    num_classes: int | None = None,
    precision: str = "fp32",
    calibration=None,
    recipe=None,
    plan=None,
    max_accuracy_drop: float | None = None,
    labels=None,
    author: str | None = None,
    license: str | None = None,
    model_version: str | None = None,
    backend: str = "edge-sdk",
    **options,
) -> Artifact:
    """Convert `model` (registered name, `file.py:factory`, `.pt2`, nn.Module or CapturedGraph) to `target`.

    A CapturedGraph (`edge_sdk.capture`) is converted as it is, so several targets share one capture.

    precision `int8` / `int8-weights` quantises first (see `quantize_graph`): from
    `calibration` data with `recipe` (a QuantRecipe), or from a saved `plan` (path or
    QuantPlan) so several targets share one calibration. The plan is written beside
    the artifact and the simulation travels with it, so parity reports predicted
    next to measured agreement. `labels` (a text file with one class name per line, or
    a list of names) replaces the card's class names, which the artifact carries; `author`, `license`
    and `model_version` go into every format's metadata (default: edge-sdk, none, the precision).
    `backend="litert-torch"` (tflite only) converts with Google's optional litert-torch instead,
    its int8 quantiser calibrated on the same samples (no QuantPlan).
    """
    if backend not in BACKENDS:
        raise ConversionError(f"unknown backend {backend!r}", f"choose one of: {', '.join(BACKENDS)}")
    if BACKENDS[backend] is not None and target != BACKENDS[backend][0]:
        raise ConversionError(f"backend {backend} converts to {BACKENDS[backend][0]} only, not {target}", "drop the backend")
    if target not in TARGETS:
        raise ConversionError(f"unknown target {target!r}", f"choose one of: {', '.join(TARGETS)}")
    info = TARGETS[target]
    if precision not in info.precisions:
        raise ConversionError(f"{target}: precision {precision!r} is not available",
                              f"{target} offers: {', '.join(info.precisions)}")
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(
        model, example_input=example_input, input_shape=input_shape, weights=weights, num_classes=num_classes
    )
    if labels is not None:
        from .models.labels import read_labels

        resolved = replace(resolved, card=resolved.card.with_(labels=read_labels(labels, resolved.card.num_classes)))
    publisher = {k: v for k, v in (("author", author), ("license", license), ("version", model_version)) if v is not None}
    if publisher:
        resolved = replace(resolved, card=resolved.card.with_(**publisher))
    if resolved.registered:
        reason = unsupported_reason(resolved.name, target, precision)
        if reason:
            raise ConversionError(f"{resolved.name} cannot be converted to {target} ({precision}): {reason}")
    converter = importlib.import_module(f"edge_sdk.converters.{(BACKENDS[backend] or (target, info.module))[1]}")
    accepted = _converter_options(converter.convert)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConversionError(f"{target}: unknown options {', '.join(unknown)}",
                              f"{target} accepts: {', '.join(sorted(accepted)) or 'none'}")
    quantized_run = precision in QUANTIZED_PRECISIONS
    if not quantized_run and (calibration is not None or recipe is not None or plan is not None or max_accuracy_drop is not None):
        raise ConversionError(f"calibration, recipe, plan and max_accuracy_drop apply to int8 precisions, not {precision}",
                              f"pass precision='int8' or 'int8-weights' ({target} offers: {', '.join(info.precisions)})")
    path = output_path(out, _safe_name(resolved.name), target)
    check_output_path(path)  # fail before the slow capture, not after
    if BACKENDS[backend] is not None:  # a third-party converter exports the module itself: no capture, no QuantPlan
        if plan is not None or max_accuracy_drop is not None:
            raise ConversionError(f"plan and max_accuracy_drop are edge-sdk's own; {backend} calibrates its quantiser itself",
                                  "drop them, or drop the backend")
        with step(f"Converting to {target} ({precision}) with {backend}"):
            return converter.convert(resolved, path, precision=precision, calibration=calibration, recipe=recipe, **options)
    graph = capture_model(resolved, dynamic_batch=bool(options.get("dynamic_batch")))
    quantized = None
    if quantized_run:
        quantized = quantize_graph(graph, precision, calibration=calibration, recipe=recipe, plan=plan,
                                   max_accuracy_drop=max_accuracy_drop)
        options["plan"] = quantized.plan
        from .quantize import summarize

        summary = summarize(quantized).to_dict()
        if "quantization" in accepted:  # formats with room for it carry the summary inside the file
            options["quantization"] = summary
    with step(f"Converting to {target} ({precision})"):
        artifact = converter.convert(graph, path, precision=precision, **options)
    if quantized is not None:
        try:
            add_quantization(artifact, quantized.plan, summary)
        except BaseException:
            _remove_artifact(artifact)
            raise
        artifact.simulation = quantized
    return artifact


def quantize_graph(graph: CapturedGraph, precision: str, *, calibration=None, recipe=None, plan=None,
                   max_accuracy_drop: float | None = None):
    """The QuantizedModel an int8 conversion emits from: a saved plan, or a new calibration."""
    from .quantize import QuantizedModel, QuantPlan, QuantRecipe, quantize
    from .quantize.plan import check_plan_matches

    if plan is not None:
        if calibration is not None or recipe is not None or max_accuracy_drop is not None:
            raise ConversionError("a saved plan already holds the calibration", "pass either plan= or calibration/recipe, not both")
        source = "the plan" if isinstance(plan, QuantPlan) else f"the plan {plan}"
        plan = plan if isinstance(plan, QuantPlan) else QuantPlan.load(plan)
        if plan.recipe.scheme != precision:
            raise ConversionError(f"{source} is a {plan.recipe.scheme} plan, but {precision} was asked for",
                                  f"convert with precision {plan.recipe.scheme}, or calibrate again")
        check_plan_matches(plan, graph.module, source)
        quantized = QuantizedModel(graph, plan)
        quantized.calibration = source
        return quantized
    recipe = recipe or QuantRecipe(scheme=precision)
    if recipe.scheme != precision:
        raise ConversionError(f"the recipe's scheme is {recipe.scheme}, but precision {precision} was asked for",
                              "make them the same")
    with step(f"Calibrating {precision} ({recipe.observer} observer)"):
        return quantize(graph, calibration, recipe, max_accuracy_drop=max_accuracy_drop,
                        sensitivity_samples=SENSITIVITY_SAMPLES)


def saved_simulation(artifact_path, resolved: ResolvedModel):
    """The int8 simulation of a converted file, rebuilt from the QuantPlan written beside it (None without one).

    `verify` judges a file later, apart from its conversion: with the simulation it reports predicted
    next to measured agreement, and judges a random-weight model against its plan as `convert` did.
    """
    from .quantize import QuantPlan

    path = plan_path(Path(artifact_path))
    if not path.is_file():
        return None
    plan = QuantPlan.load(path)
    with step(f"Rebuilding the int8 simulation from {path.name}"):
        return quantize_graph(capture_model(resolved), plan.recipe.scheme, plan=plan)


def _remove_artifact(artifact: Artifact) -> None:
    for p in (artifact.path, artifact.manifest_path, plan_path(artifact.path)):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _converter_options(fn) -> set[str]:
    import inspect

    params = inspect.signature(fn).parameters
    return {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "precision"}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
