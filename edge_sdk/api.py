"""The public Python API; the CLI calls exactly these functions.

    artifact = edge_sdk.convert("mobilenet_v2", target="onnx")
    report = edge_sdk.check_parity("mobilenet_v2", artifact)
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .converters import TARGETS, Artifact
from .converters.base import check_output_path
from .errors import ConversionError, InputError
from .graph import CapturedGraph, capture
from .models import create_model, unsupported_reason
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


@dataclass
class ResolvedModel:
    """A model ready to capture: the module (or program), an example input and its card."""

    name: str
    model: object  # nn.Module or torch.export.ExportedProgram
    example_input: torch.Tensor
    card: object
    registered: bool

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
    """Turn a registered name, `file.py:factory`, a `.pt2` path or an nn.Module into a ResolvedModel."""
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
    **options,
) -> Artifact:
    """Convert `model` (registered name, `file.py:factory`, `.pt2` or nn.Module) to `target`."""
    if target not in TARGETS:
        raise ConversionError(f"unknown target {target!r}", f"choose one of: {', '.join(TARGETS)}")
    info = TARGETS[target]
    if precision not in info.precisions:
        raise ConversionError(f"{target}: precision {precision!r} is not available",
                              f"{target} offers: {', '.join(info.precisions)}")
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(
        model, example_input=example_input, input_shape=input_shape, weights=weights, num_classes=num_classes
    )
    if resolved.registered:
        reason = unsupported_reason(resolved.name, target, precision)
        if reason:
            raise ConversionError(f"{resolved.name} cannot be converted to {target} ({precision}): {reason}")
    converter = importlib.import_module(f"edge_sdk.converters.{info.module}")
    accepted = _converter_options(converter.convert)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConversionError(f"{target}: unknown options {', '.join(unknown)}",
                              f"{target} accepts: {', '.join(sorted(accepted)) or 'none'}")
    path = output_path(out, _safe_name(resolved.name), target)
    check_output_path(path)  # fail before the slow capture, not after
    graph = capture_model(resolved, dynamic_batch=bool(options.get("dynamic_batch")))
    with step(f"Converting to {target} ({precision})"):
        return converter.convert(graph, path, precision=precision, **options)


def _converter_options(fn) -> set[str]:
    import inspect

    params = inspect.signature(fn).parameters
    return {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "precision"}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
